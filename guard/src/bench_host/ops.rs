//! The operations `guard bench-host` times: each one reaches one or more of
//! the hooks guard attaches, done the way any process on the host does it.
//! They run in the worker (`guard bench-host-worker`), a copy of guard's
//! executable in a cgroup no policy names: a bystander in every respect.
//!
//! Every operation leaves the machine as it found it, so it can run again.

use std::{
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::bench::cstr;

/// One operation: its name, what it does, and the base number of calls of
/// one measurement (scaled by `--scale`).
pub struct Op {
    pub name: &'static str,
    pub what: &'static str,
    pub iters: usize,
}

/// Every operation, in the order of the report.
pub const OPS: &[Op] = &[
    Op { name: "open_close", what: "open()+close() of an unprotected file on tmpfs", iters: 4000 },
    Op { name: "create_unlink", what: "creat()+close()+unlink() on tmpfs", iters: 1500 },
    Op { name: "link_unlink", what: "link()+unlink() of a second name on tmpfs", iters: 1500 },
    Op { name: "mkdir_rmdir", what: "mkdir()+rmdir() on tmpfs", iters: 1500 },
    Op { name: "cgroup_mkdir", what: "mkdir()+rmdir() of a cgroup in its own cgroup (cgroup2)", iters: 150 },
    Op { name: "rename", what: "rename() there and back (2 renames) on tmpfs", iters: 1500 },
    Op { name: "truncate", what: "truncate() by path on tmpfs", iters: 3000 },
    Op { name: "lookup_miss", what: "stat() of a missing name (a real lookup each time on tmpfs)", iters: 3000 },
    Op { name: "follow_link", what: "stat() through a symlink on tmpfs (one link followed)", iters: 3000 },
    Op { name: "proc_fd", what: "stat() of /proc/self/fd/N (two procfs links followed: self, then the fd)", iters: 3000 },
    Op { name: "evict", what: "stat() of a file on ext4 read back from disk, then its eviction by drop_caches (per file)", iters: 400 },
    Op { name: "create_unlink_par", what: "create_unlink on every CPU at once (one thread per CPU, own names; per op)", iters: 1500 },
    Op { name: "fork_exit", what: "fork(), child _exit(), waitpid()", iters: 300 },
    Op { name: "fork_exit_par", what: "fork_exit on every CPU at once (one thread per CPU; per op)", iters: 300 },
    Op { name: "thread", what: "pthread create + join", iters: 500 },
    Op { name: "exec", what: "fork() + execve(/bin/true) + waitpid()", iters: 60 },
    Op { name: "fd_pass", what: "an fd sent and received over SCM_RIGHTS, then closed", iters: 1500 },
    Op { name: "proc_read", what: "open+read+close of /proc/<another pid>/stat", iters: 1500 },
    Op { name: "kill", what: "kill() of itself with an ignored signal (SIGURG)", iters: 5000 },
    Op { name: "ioctl", what: "ioctl(FIONREAD) of a pipe", iters: 5000 },
    Op { name: "sigio", what: "a write to an O_ASYNC pipe (SIGIO to its owner) + read", iters: 3000 },
    Op { name: "setrlimit", what: "prlimit() of its own RLIMIT_NOFILE", iters: 5000 },
    Op { name: "setuid", what: "setuid(0) as root (prepares and commits new credentials)", iters: 3000 },
    Op { name: "perf_open", what: "perf_event_open() of a software event on itself + close", iters: 1000 },
    Op { name: "bpf_lookup", what: "bpf(BPF_MAP_LOOKUP_ELEM) on its own array map", iters: 5000 },
    Op { name: "bpf_fd", what: "bpf(BPF_MAP_GET_FD_BY_ID) of its own map + close", iters: 3000 },
    Op { name: "mount_umount", what: "mount() of a tmpfs + umount()", iters: 150 },
    Op { name: "mount_move", what: "mount() of a tmpfs, MS_MOVE elsewhere, umount()", iters: 150 },
    Op {
        name: "unpack_tree",
        what: "macro: a tarball's worth unpacked and removed on tmpfs (8 directories x 32 files of 4 KiB: mkdir, create, write, \
               chmod, stat, read back, unlink, rmdir; per tree)",
        iters: 12,
    },
];

/// What the operations work on, made once per worker.
pub struct Scratch {
    dir: PathBuf,
    file: CString,
    a: CString,
    b: CString,
    trunc: CString,
    miss: CString,
    mnt_a: CString,
    mnt_b: CString,
    /// ext4 files read back from disk by `evict` (none: the op is unavailable).
    disk_files: Vec<CString>,
    /// A child asleep, whose /proc/<pid>/stat `proc_read` reads.
    sleeper: libc::pid_t,
    proc_stat: CString,
    /// follow_link: a symlink to `file`; proc_fd: `/proc/self/fd/<carried>`.
    sym: CString,
    self_fd: CString,
    /// fd_pass: a datagram socket pair and the fd it carries.
    pair: (OwnedFd, OwnedFd),
    carried: OwnedFd,
    /// sigio: the pipe whose read end is O_ASYNC, owned by this process.
    pipe: (OwnedFd, OwnedFd),
    map_fd: Option<OwnedFd>,
    map_id: u32,
    /// cgroup_mkdir: a cgroup below the worker's own.
    sub_cgroup: CString,
}

fn check(rc: i64, what: &str) -> Result<i64> {
    if rc < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(rc)
}

impl Scratch {
    /// `dir` must be on tmpfs; `disk_dir`, if any, on a disk-backed
    /// filesystem; `cgroup` is the worker's own cgroup2 directory.
    pub fn new(dir: &Path, disk_dir: Option<&Path>, cgroup: &Path) -> Result<Self> {
        let sub_cgroup = cgroup.join("bench-sub");
        let _ = std::fs::remove_dir(&sub_cgroup);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let p = |n: &str| cstr(&dir.join(n));
        std::fs::write(dir.join("file"), b"x")?;
        std::fs::write(dir.join("a"), b"x")?;
        let _ = std::fs::remove_file(dir.join("b"));
        let _ = std::fs::remove_dir_all(dir.join("tree"));
        std::fs::write(dir.join("trunc"), b"")?;
        let _ = std::fs::remove_file(dir.join("sym"));
        std::os::unix::fs::symlink(dir.join("file"), dir.join("sym")).context("creating the bench's symlink")?;
        for m in ["mnt-a", "mnt-b"] {
            std::fs::create_dir_all(dir.join(m))?;
        }
        let mut disk_files = Vec::new();
        if let Some(d) = disk_dir {
            let d = d.join("guard-bench-host");
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            for i in 0..OPS.iter().find(|o| o.name == "evict").map_or(0, |o| o.iters) {
                let f = d.join(format!("f{i}"));
                if !f.exists() {
                    std::fs::write(&f, b"x")?;
                }
                disk_files.push(cstr(&f));
            }
        }
        // SAFETY: plain syscalls; every fd returned is owned right away.
        unsafe {
            let sleeper = check(libc::fork() as i64, "fork")? as libc::pid_t;
            if sleeper == 0 {
                loop {
                    libc::pause();
                }
            }
            let mut sv = [0; 2];
            check(libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) as i64, "socketpair")?;
            let pair = (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1]));
            let carried = check(libc::open(p("file").as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) as i64, "open")? as i32;
            let mut pf = [0; 2];
            check(libc::pipe2(pf.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) as i64, "pipe2")?;
            let pipe = (OwnedFd::from_raw_fd(pf[0]), OwnedFd::from_raw_fd(pf[1]));
            libc::signal(libc::SIGIO, libc::SIG_IGN);
            libc::signal(libc::SIGURG, libc::SIG_IGN);
            check(libc::fcntl(pf[0], libc::F_SETOWN, libc::getpid()) as i64, "F_SETOWN")?;
            check(libc::fcntl(pf[0], libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK) as i64, "F_SETFL O_ASYNC")?;
            let (map_fd, map_id) = match bpf_array_map() {
                Ok((fd, id)) => (Some(fd), id),
                Err(e) => {
                    eprintln!("bench-host-worker: no BPF map of its own ({e:#}); the bpf operations are unavailable");
                    (None, 0)
                }
            };
            Ok(Self {
                file: p("file"),
                a: p("a"),
                b: p("b"),
                trunc: p("trunc"),
                miss: p("missing"),
                mnt_a: p("mnt-a"),
                mnt_b: p("mnt-b"),
                proc_stat: CString::new(format!("/proc/{sleeper}/stat")).unwrap(),
                sym: p("sym"),
                self_fd: CString::new(format!("/proc/self/fd/{carried}")).unwrap(),
                dir: dir.to_path_buf(),
                disk_files,
                sleeper,
                pair,
                carried: OwnedFd::from_raw_fd(carried),
                pipe,
                map_fd,
                map_id,
                sub_cgroup: cstr(&sub_cgroup),
            })
        }
    }

    /// Why `op` cannot run here, if it cannot.
    pub fn unavailable(&self, op: &str) -> Option<String> {
        match op {
            "evict" if self.disk_files.is_empty() => Some("no disk-backed directory (--disk-dir)".into()),
            "bpf_lookup" | "bpf_fd" if self.map_fd.is_none() => Some("could not create a BPF map".into()),
            _ => None,
        }
    }

    /// Runs `op` `iters` times; ns per operation.
    pub fn time(&mut self, op: &str, iters: usize) -> Result<f64> {
        if let Some(why) = self.unavailable(op) {
            bail!("{op} is unavailable: {why}");
        }
        let t = Instant::now();
        // SAFETY: plain syscalls on paths and fds this struct owns; results
        // checked where a failure would make the timing meaningless.
        unsafe {
            match op {
                "open_close" => {
                    for _ in 0..iters {
                        let fd = check(libc::open(self.file.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) as i64, "open")?;
                        libc::close(fd as i32);
                    }
                }
                "create_unlink" => {
                    for _ in 0..iters {
                        let fd = check(libc::open(self.b.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC, 0o600) as i64, "creat")?;
                        libc::close(fd as i32);
                        check(libc::unlink(self.b.as_ptr()) as i64, "unlink")?;
                    }
                }
                "link_unlink" => {
                    for _ in 0..iters {
                        check(libc::link(self.a.as_ptr(), self.b.as_ptr()) as i64, "link")?;
                        check(libc::unlink(self.b.as_ptr()) as i64, "unlink")?;
                    }
                }
                "mkdir_rmdir" => {
                    for _ in 0..iters {
                        check(libc::mkdir(self.b.as_ptr(), 0o700) as i64, "mkdir")?;
                        check(libc::rmdir(self.b.as_ptr()) as i64, "rmdir")?;
                    }
                }
                "cgroup_mkdir" => {
                    for _ in 0..iters {
                        check(libc::mkdir(self.sub_cgroup.as_ptr(), 0o755) as i64, "mkdir of a cgroup")?;
                        check(libc::rmdir(self.sub_cgroup.as_ptr()) as i64, "rmdir of a cgroup")?;
                    }
                }
                "rename" => {
                    for _ in 0..iters {
                        check(libc::rename(self.a.as_ptr(), self.b.as_ptr()) as i64, "rename")?;
                        check(libc::rename(self.b.as_ptr(), self.a.as_ptr()) as i64, "rename back")?;
                    }
                }
                "truncate" => {
                    for _ in 0..iters {
                        check(libc::truncate(self.trunc.as_ptr(), 0) as i64, "truncate")?;
                    }
                }
                "lookup_miss" => {
                    let mut st: libc::stat = std::mem::zeroed();
                    for _ in 0..iters {
                        if libc::stat(self.miss.as_ptr(), &mut st) == 0 {
                            bail!("{} exists", self.dir.join("missing").display());
                        }
                    }
                }
                "ioctl" => {
                    let mut n: libc::c_int = 0;
                    for _ in 0..iters {
                        check(libc::ioctl(self.pipe.0.as_raw_fd(), libc::FIONREAD, &mut n) as i64, "ioctl FIONREAD")?;
                    }
                }
                "follow_link" | "proc_fd" => {
                    let path = if op == "follow_link" { &self.sym } else { &self.self_fd };
                    let mut st: libc::stat = std::mem::zeroed();
                    for _ in 0..iters {
                        check(libc::stat(path.as_ptr(), &mut st) as i64, "stat")?;
                    }
                }
                "evict" => {
                    let t = Instant::now();
                    let mut st: libc::stat = std::mem::zeroed();
                    let mut done = 0;
                    while done < iters {
                        for f in self.disk_files.iter().take(iters - done) {
                            check(libc::stat(f.as_ptr(), &mut st) as i64, "stat")?;
                            done += 1;
                        }
                        drop_caches()?;
                    }
                    return Ok(t.elapsed().as_nanos() as f64 / iters as f64);
                }
                "create_unlink_par" | "fork_exit_par" => {
                    let serial = op.trim_end_matches("_par");
                    let cpus = online_cpus();
                    let per = iters.div_ceil(cpus);
                    let dir = self.dir.clone();
                    let t = Instant::now();
                    let threads: Vec<_> = (0..cpus)
                        .map(|cpu| {
                            let (dir, serial) = (dir.clone(), serial.to_string());
                            std::thread::spawn(move || -> Result<()> { par_loop(&serial, cpu, &dir, per) })
                        })
                        .collect();
                    for th in threads {
                        th.join().map_err(|_| anyhow::anyhow!("a {op} thread panicked"))??;
                    }
                    return Ok(t.elapsed().as_nanos() as f64 / (per * cpus) as f64);
                }
                "fork_exit" => {
                    for _ in 0..iters {
                        let pid = check(libc::fork() as i64, "fork")? as libc::pid_t;
                        if pid == 0 {
                            libc::_exit(0);
                        }
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                    }
                }
                "thread" => {
                    for _ in 0..iters {
                        std::thread::spawn(|| {}).join().ok();
                    }
                }
                "exec" => {
                    let prog = c"/bin/true";
                    let argv = [prog.as_ptr(), std::ptr::null()];
                    let envp = [std::ptr::null()];
                    for _ in 0..iters {
                        let pid = check(libc::fork() as i64, "fork")? as libc::pid_t;
                        if pid == 0 {
                            libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
                            libc::_exit(127);
                        }
                        let mut status = 0;
                        libc::waitpid(pid, &mut status, 0);
                        if status != 0 {
                            bail!("/bin/true exited with status {status}");
                        }
                    }
                }
                "fd_pass" => {
                    for _ in 0..iters {
                        send_fd(self.pair.0.as_raw_fd(), self.carried.as_raw_fd())?;
                        let fd = recv_fd(self.pair.1.as_raw_fd())?;
                        libc::close(fd);
                    }
                }
                "proc_read" => {
                    let mut buf = [0u8; 512];
                    for _ in 0..iters {
                        let fd = check(libc::open(self.proc_stat.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) as i64, "open /proc/<pid>/stat")?;
                        libc::read(fd as i32, buf.as_mut_ptr().cast(), buf.len());
                        libc::close(fd as i32);
                    }
                }
                "kill" => {
                    let me = libc::getpid();
                    for _ in 0..iters {
                        check(libc::kill(me, libc::SIGURG) as i64, "kill")?;
                    }
                }
                "sigio" => {
                    let (r, w) = (self.pipe.0.as_raw_fd(), self.pipe.1.as_raw_fd());
                    let mut b = [0u8; 1];
                    for _ in 0..iters {
                        check(libc::write(w, b"x".as_ptr().cast(), 1) as i64, "write")?;
                        libc::read(r, b.as_mut_ptr().cast(), 1);
                    }
                }
                "setrlimit" => {
                    let mut rl: libc::rlimit = std::mem::zeroed();
                    check(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) as i64, "getrlimit")?;
                    for _ in 0..iters {
                        check(libc::prlimit(0, libc::RLIMIT_NOFILE, &rl, std::ptr::null_mut()) as i64, "prlimit")?;
                    }
                }
                "setuid" => {
                    for _ in 0..iters {
                        check(libc::setuid(0) as i64, "setuid")?;
                    }
                }
                "perf_open" => {
                    let mut attr = [0u64; 16];
                    // type PERF_TYPE_SOFTWARE (1), size 128, config PERF_COUNT_SW_DUMMY (9).
                    attr[0] = 1 | (128u64 << 32);
                    attr[1] = 9;
                    for _ in 0..iters {
                        let fd = check(libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 8u64 /* PERF_FLAG_FD_CLOEXEC */), "perf_event_open")?;
                        libc::close(fd as i32);
                    }
                }
                "bpf_lookup" => {
                    let fd = self.map_fd.as_ref().unwrap().as_raw_fd();
                    let key = 0u32;
                    let mut value = 0u64;
                    let mut attr = [0u64; 4];
                    attr[0] = fd as u64;
                    attr[1] = &key as *const u32 as u64;
                    attr[2] = &mut value as *mut u64 as u64;
                    for _ in 0..iters {
                        check(bpf(1, attr.as_mut_ptr().cast(), 32), "BPF_MAP_LOOKUP_ELEM")?;
                    }
                }
                "bpf_fd" => {
                    let mut attr = [0u64; 2];
                    attr[0] = self.map_id as u64;
                    for _ in 0..iters {
                        let fd = check(bpf(14, attr.as_mut_ptr().cast(), 16), "BPF_MAP_GET_FD_BY_ID")?;
                        libc::close(fd as i32);
                    }
                }
                "mount_umount" => {
                    for _ in 0..iters {
                        check(libc::mount(c"none".as_ptr(), self.mnt_a.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) as i64, "mount")?;
                        check(libc::umount2(self.mnt_a.as_ptr(), 0) as i64, "umount")?;
                    }
                }
                "mount_move" => {
                    for _ in 0..iters {
                        check(libc::mount(c"none".as_ptr(), self.mnt_a.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) as i64, "mount")?;
                        let moved = libc::mount(self.mnt_a.as_ptr(), self.mnt_b.as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null());
                        if moved != 0 {
                            let e = std::io::Error::last_os_error();
                            libc::umount2(self.mnt_a.as_ptr(), 0);
                            bail!("MS_MOVE: {e}");
                        }
                        check(libc::umount2(self.mnt_b.as_ptr(), 0) as i64, "umount")?;
                    }
                }
                "unpack_tree" => {
                    for _ in 0..iters {
                        unpack_tree(&self.dir.join("tree"))?;
                    }
                }
                other => bail!("unknown operation {other}"),
            }
        }
        Ok(t.elapsed().as_nanos() as f64 / iters as f64)
    }
}

/// What unpacking a tarball and removing the tree again does to the
/// filesystem, file by file, with std's calls (as `tar`, `dpkg` and `rm -r`
/// make them): every hook on the create, lookup and unlink paths runs.
fn unpack_tree(root: &Path) -> Result<()> {
    use std::{io::Write, os::unix::fs::PermissionsExt};
    let data = [0x5au8; 4096];
    let mut buf = Vec::with_capacity(4096);
    std::fs::create_dir(root).with_context(|| format!("mkdir {}", root.display()))?;
    for d in 0..8 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir(&dir)?;
        for f in 0..32 {
            let p = dir.join(format!("f{f}"));
            let mut file = std::fs::File::create_new(&p)?;
            file.write_all(&data)?;
            drop(file);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    for d in 0..8 {
        let dir = root.join(format!("d{d}"));
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            std::fs::symlink_metadata(&p)?;
            buf.clear();
            std::io::Read::read_to_end(&mut std::fs::File::open(&p)?, &mut buf)?;
            if buf.len() != data.len() {
                bail!("{}: read back {} bytes", p.display(), buf.len());
            }
        }
    }
    std::fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))
}

/// CPUs online (not this thread's affinity, which the benchmark narrows to one).
pub fn online_cpus() -> usize {
    // SAFETY: a plain query.
    (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).max(1) as usize
}

/// One thread of a `_par` operation, pinned to `cpu`.
fn par_loop(op: &str, cpu: usize, dir: &Path, iters: usize) -> Result<()> {
    // SAFETY: plain syscalls on this thread's own affinity, names and children.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        let name = cstr(&dir.join(format!("par-{cpu}")));
        for _ in 0..iters {
            if op == "fork_exit" {
                let pid = check(libc::fork() as i64, "fork")? as libc::pid_t;
                if pid == 0 {
                    libc::_exit(0);
                }
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            } else {
                let fd = check(libc::open(name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC, 0o600) as i64, "creat")?;
                libc::close(fd as i32);
                check(libc::unlink(name.as_ptr()) as i64, "unlink")?;
            }
        }
    }
    Ok(())
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: our own child.
        unsafe {
            libc::kill(self.sleeper, libc::SIGKILL);
            libc::waitpid(self.sleeper, std::ptr::null_mut(), 0);
        }
    }
}

fn drop_caches() -> Result<()> {
    // SAFETY: syncfs is not needed: the files are clean after the first pass.
    std::fs::write("/proc/sys/vm/drop_caches", b"2").context("writing /proc/sys/vm/drop_caches")
}

fn bpf(cmd: i64, attr: *mut u8, size: u32) -> i64 {
    // SAFETY: `attr` points at `size` bytes the caller owns.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) }
}

/// A one-entry `BPF_MAP_TYPE_ARRAY` of u64 and its id.
fn bpf_array_map() -> Result<(OwnedFd, u32)> {
    // map_type 2 (array), key_size 4, value_size 8, max_entries 1.
    let mut attr = [0u32; 16];
    attr[0] = 2;
    attr[1] = 4;
    attr[2] = 8;
    attr[3] = 1;
    let fd = check(bpf(0, attr.as_mut_ptr().cast(), 64), "BPF_MAP_CREATE")? as i32;
    // SAFETY: a new fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // bpf_map_info: type u32, id u32, ...
    let mut info = [0u32; 32];
    let mut attr = [0u64; 2];
    attr[0] = fd.as_raw_fd() as u64 | ((info.len() as u64 * 4) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    check(bpf(15, attr.as_mut_ptr().cast(), 16), "BPF_OBJ_GET_INFO_BY_FD")?;
    Ok((fd, info[1]))
}

/// A one-byte message with room for one fd's control data, over `byte`,
/// `iov` and `cbuf`, which must outlive its use.
fn fd_msghdr(byte: &mut [u8; 1], iov: &mut libc::iovec, cbuf: &mut [u64; 4]) -> libc::msghdr {
    *iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: msghdr is plain data; all-zero is its empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(cbuf) as _;
    msg
}

fn send_fd(sock: i32, fd: i32) -> Result<()> {
    let (mut byte, mut cbuf) = ([0u8; 1], [0u64; 4]);
    let mut iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
    let mut msg = fd_msghdr(&mut byte, &mut iov, &mut cbuf);
    // SAFETY: the msghdr's buffers outlive the call.
    unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd);
        check(libc::sendmsg(sock, &msg, 0) as i64, "sendmsg SCM_RIGHTS")?;
    }
    Ok(())
}

fn recv_fd(sock: i32) -> Result<i32> {
    let (mut byte, mut cbuf) = ([0u8; 1], [0u64; 4]);
    let mut iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
    let mut msg = fd_msghdr(&mut byte, &mut iov, &mut cbuf);
    // SAFETY: as in `send_fd`.
    unsafe {
        check(libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) as i64, "recvmsg SCM_RIGHTS")?;
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            bail!("recvmsg: no fd arrived (refused by an LSM?)");
        }
        Ok(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()))
    }
}
