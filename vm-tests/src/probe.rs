//! `vm-tests probe ...`: one access, done by a fresh process that first
//! joins a cgroup and drops to a UID (in that order: only root may move
//! itself between cgroups), then reports what the kernel answered on stdout
//! as `PROBE pid=<pid> result=ok|errno=<n>`.

use std::{ffi::CString, io::Write, os::unix::ffi::OsStrExt, path::Path};

pub fn main(args: &[String]) -> i32 {
    let mut cgroup = None;
    let mut uid: Option<u32> = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cgroup" => cgroup = it.next().cloned(),
            "--uid" => uid = it.next().and_then(|s| s.parse().ok()),
            _ => rest.push(a.clone()),
        }
    }
    if let Some(cg) = cgroup {
        let procs = Path::new("/sys/fs/cgroup").join(cg.trim_start_matches('/')).join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, std::process::id().to_string()) {
            println!("PROBE pid={} setup-error=joining {}: {e}", std::process::id(), procs.display());
            return 2;
        }
    }
    if let Some(uid) = uid {
        // SAFETY: plain syscalls; gid first, while we still may.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setresgid(uid, uid, uid) != 0 || libc::setresuid(uid, uid, uid) != 0 {
                println!("PROBE pid={} setup-error=setuid {uid}: {}", std::process::id(), std::io::Error::last_os_error());
                return 2;
            }
            // Changing credentials made us non-dumpable; a service started
            // as that user directly would be dumpable, so be like it.
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        }
    }
    let res = match rest.first().map(String::as_str) {
        Some("open") => op_open(&rest[1], false),
        Some("open-write") => op_open(&rest[1], true),
        Some("read") => std::fs::read(&rest[1]).map(|_| ()),
        Some("readlink") => std::fs::read_link(&rest[1]).map(|_| ()),
        Some("mkdir") => std::fs::create_dir(&rest[1]),
        Some("create") => std::fs::write(&rest[1], b"new").map(|_| ()),
        Some("unlink") => std::fs::remove_file(&rest[1]),
        Some("rename") => std::fs::rename(&rest[1], &rest[2]),
        Some("link") => std::fs::hard_link(&rest[1], &rest[2]),
        Some("truncate") => op_truncate(&rest[1]),
        Some("vm-read") => op_vm_read(rest[1].parse().unwrap_or(0), rest[2].parse().unwrap_or(0)),
        Some("recv-fd") => op_recv_fd(&rest[1]),
        Some("send-fd") => op_send_fd(&rest[1], &rest[2]),
        Some("hold") => op_hold(&rest[1], rest.get(2).map(String::as_str)),
        Some("flood") => op_flood(&rest[1], rest[2].parse().unwrap_or(0)),
        Some("hammer") => op_hammer(&rest[1], &rest[2]),
        Some("flood-many") => op_flood_many(&rest[1], rest[2].parse().unwrap_or(0), rest[3].parse().unwrap_or(0)),
        Some("bpf-map-fd") => bpf::fd_by_id(bpf::MAP_GET_FD_BY_ID, rest[1].parse().unwrap_or(0)),
        Some("bpf-prog-fd") => bpf::fd_by_id(bpf::PROG_GET_FD_BY_ID, rest[1].parse().unwrap_or(0)),
        Some("bpf-link-fd") => bpf::fd_by_id(bpf::LINK_GET_FD_BY_ID, rest[1].parse().unwrap_or(0)),
        Some("bpf-own-map-fd") => bpf::own_map_by_id(),
        Some("bpf-obj-get") => bpf::obj_get(&rest[1]),
        Some("bpf-load") => bpf::load(&rest[1]),
        Some("bpf-load-pin") => bpf::load_pin(&rest[1], &rest[2]),
        Some("perf") => op_perf(rest[1].parse().unwrap_or(-1), &rest[2]),
        Some("kill") => op_kill(rest[1].parse().unwrap_or(0), rest[2].parse().unwrap_or(0)),
        Some("prlimit") => op_prlimit(rest[1].parse().unwrap_or(0)),
        Some("sigio") => op_sigio(rest[1].parse().unwrap_or(0), rest[2].parse().unwrap_or(0)),
        Some("crash") => op_crash(),
        Some("touch-mapped") => op_touch_mapped(&rest[1]),
        Some("bpf-link-create") => bpf::link_create(rest[1].parse().unwrap_or(0)),
        Some("bpf-rawtp-null") => bpf::raw_tp_null(),
        Some("dm-table") => op_dm_table(),
        Some("dm-table-compat") => op_dm_table_compat(),
        Some("kexec-file") => op_kexec_file(&rest[1]),
        Some("umount") => op_umount(&rest[1], rest.get(2).map(String::as_str) == Some("lazy")),
        Some("pidfd-getfd") => op_pidfd_getfd(rest[1].parse().unwrap_or(0)),
        Some("rmdir") => std::fs::remove_dir(&rest[1]),
        Some("join") => op_join(&rest[1], &rest[2]),
        Some("exec") => {
            // Join and setuid done: become another program (as systemd
            // execs a service's binary once it is in place).
            use std::os::unix::process::CommandExt;
            Err(std::process::Command::new(&rest[1]).args(&rest[2..]).exec())
        }
        Some("traced-exec") => op_traced_exec(&rest[1..]),
        Some("clone-into") => op_clone_into(&rest[1], rest[2].parse().unwrap_or(0), &rest[3]),
        Some("spawn-in") => op_spawn_in(&rest[1], rest[2].parse().unwrap_or(0), &rest[3..]),
        other => {
            println!("PROBE pid={} setup-error=unknown op {other:?}", std::process::id());
            return 2;
        }
    };
    report(res)
}

fn report(res: std::io::Result<()>) -> i32 {
    let pid = std::process::id();
    match res {
        Ok(()) => println!("PROBE pid={pid} result=ok"),
        Err(e) => println!("PROBE pid={pid} result=errno={}", e.raw_os_error().unwrap_or(-1)),
    }
    let _ = std::io::stdout().flush();
    0
}

fn cstr(p: &str) -> CString {
    CString::new(Path::new(p).as_os_str().as_bytes()).unwrap()
}

fn op_open(path: &str, write: bool) -> std::io::Result<()> {
    let flags = if write { libc::O_WRONLY } else { libc::O_RDONLY };
    // SAFETY: valid path; fd closed below.
    let fd = unsafe { libc::open(cstr(path).as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    unsafe { libc::close(fd) };
    Ok(())
}

fn op_truncate(path: &str) -> std::io::Result<()> {
    // SAFETY: valid path.
    if unsafe { libc::truncate(cstr(path).as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// process_vm_readv of `len` bytes at `addr` in `pid`.
fn op_vm_read(pid: i32, addr: usize) -> std::io::Result<()> {
    let mut buf = [0u8; 16];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut _, iov_len: buf.len() };
    // SAFETY: iovecs point at valid local memory / a remote address the kernel checks.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opens `file`, prints the address of a buffer holding its first bytes,
/// then sleeps until killed (a stand-in for a service holding its secret).
fn op_hold(file: &str, ready: Option<&str>) -> std::io::Result<()> {
    let data = std::fs::read(file)?;
    // A copy in a memfd, mapped shared, as a service keeps a secret off
    // disk: /proc/<pid>/fd/<memfd> and map_files/<range> reopen it.
    // SAFETY: plain syscalls on an fd this process owns and keeps.
    let (memfd, map) = unsafe {
        let fd = libc::memfd_create(c"held-secret".as_ptr(), 0);
        if fd < 0 || libc::write(fd, data.as_ptr().cast(), data.len()) != data.len() as isize {
            return Err(std::io::Error::last_os_error());
        }
        let len = data.len().max(1);
        let m = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        if m == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        (fd, format!("{:x}-{:x}", m as usize, m as usize + len.next_multiple_of(4096)))
    };
    let boxed = data.into_boxed_slice();
    println!("HOLD pid={} addr={} memfd={memfd} map={map}", std::process::id(), boxed.as_ptr() as usize);
    let _ = std::io::stdout().flush();
    if let Some(r) = ready {
        std::fs::write(r, format!("{} {}", std::process::id(), boxed.as_ptr() as usize))?;
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        std::hint::black_box(&boxed);
    }
}

/// `perf_event_open` of a software cpu-clock event on process `pid` (or
/// CPU 0 for every task, with pid -1), `sample` (user stack and registers,
/// what a memory reader wants) or `count` (a counter, nothing sampled).
fn op_perf(pid: i32, how: &str) -> std::io::Result<()> {
    // UAPI struct perf_event_attr (PERF_ATTR_SIZE_VER8 is 136 bytes).
    let mut attr = [0u64; 17];
    attr[0] = 1 | (136u64 << 32); // type PERF_TYPE_SOFTWARE, size
    attr[1] = 0; // PERF_COUNT_SW_CPU_CLOCK
    if how == "sample" {
        attr[2] = 100_000; // sample_period
        attr[3] = 1 << 12 | 1 << 13; // PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER
        attr[5] = 1 << 0; // disabled
        attr[10] = 0xff; // sample_regs_user (attr word 10: offset 80)
        attr[11] = 4096; // sample_stack_user (offset 88, u32)
    } else {
        attr[5] = 1 << 0;
    }
    let cpu = if pid == -1 { 0 } else { -1 };
    // SAFETY: a valid attr for the syscall's duration.
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), pid, cpu, -1, 0u64) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: our own fd.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

fn op_kill(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: plain syscall.
    if unsafe { libc::kill(pid, sig) } != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// `prlimit` of another process: its core size limit to unlimited.
fn op_prlimit(pid: i32) -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid pointers for the call.
    if unsafe { libc::prlimit(pid, libc::RLIMIT_CORE, &lim, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A pipe whose SIGIO goes to `pid` as signal `sig` (`F_SETOWN` + `F_SETSIG`),
/// then a write that raises it. The kernel sends it asynchronously: the
/// caller checks whether `pid` survived.
fn op_sigio(pid: i32, sig: i32) -> std::io::Result<()> {
    const F_SETSIG: i32 = 10;
    let mut fds = [0i32; 2];
    // SAFETY: plain syscalls on our own fds.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0
            || libc::fcntl(fds[0], libc::F_SETOWN, pid) != 0
            || libc::fcntl(fds[0], F_SETSIG, sig) != 0
            || libc::fcntl(fds[0], libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK) != 0
            || libc::write(fds[1], b"x".as_ptr().cast(), 1) != 1
        {
            return Err(std::io::Error::last_os_error());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    Ok(())
}

/// Dumps core: no core size limit, dumpable, SIGABRT to itself. The parent
/// sees whether a core was written (`WCOREDUMP`).
fn op_crash() -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscalls; the default SIGABRT action ends the process.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &lim);
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        libc::signal(libc::SIGABRT, libc::SIG_DFL);
        libc::raise(libc::SIGABRT);
    }
    Err(std::io::Error::other("still alive after SIGABRT"))
}

/// Maps the first page of `file` shared and reads it every 20 ms, with no
/// core limit: when someone truncates the file, the next read is a SIGBUS,
/// a signal that dumps core. Prints `TOUCHING pid=<pid>` once mapped.
fn op_touch_mapped(file: &str) -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscalls; the mapping stays for the life of the process.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &lim);
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        let fd = libc::open(cstr(file).as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let m = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
        if m == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        println!("TOUCHING pid={}", std::process::id());
        let _ = std::io::stdout().flush();
        loop {
            std::ptr::read_volatile(m as *const u8);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A msghdr carrying one data byte and a control buffer of `controllen` bytes.
fn one_byte_msg(iov: &mut libc::iovec, cmsg: &mut [u64; 8], controllen: usize) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = controllen as _;
    msg
}

/// Opens `file` and sends the fd over the Unix socket at `sock` (SCM_RIGHTS).
fn op_send_fd(file: &str, sock: &str) -> std::io::Result<()> {
    use std::os::{fd::AsRawFd, unix::net::UnixStream};
    let f = std::fs::File::open(file)?;
    let s = UnixStream::connect(sock)?;
    let fd = f.as_raw_fd();
    let mut byte = [b'x'];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut cmsg = [0u64; 8];
    // SAFETY: building a standard SCM_RIGHTS control message in a large enough buffer.
    unsafe {
        let msg = one_byte_msg(&mut iov, &mut cmsg, libc::CMSG_SPACE(4) as usize);
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut i32, fd);
        if libc::sendmsg(s.as_raw_fd(), &msg, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Accepts one connection on `sock` and receives an fd; Ok only if an fd
/// actually arrived (the kernel drops it and sets MSG_CTRUNC when denied).
fn op_recv_fd(sock: &str) -> std::io::Result<()> {
    use std::os::{fd::AsRawFd, unix::net::UnixListener};
    let _ = std::fs::remove_file(sock);
    // SAFETY: plain syscall. Lets a sender of another uid connect.
    unsafe { libc::umask(0) };
    let l = UnixListener::bind(sock)?;
    println!("LISTENING");
    let _ = std::io::stdout().flush();
    let (s, _) = l.accept()?;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut cmsg = [0u64; 8];
    // SAFETY: standard recvmsg with a large enough control buffer.
    unsafe {
        let len = std::mem::size_of_val(&cmsg);
        let mut msg = one_byte_msg(&mut iov, &mut cmsg, len);
        if libc::recvmsg(s.as_raw_fd(), &mut msg, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            // The fd was refused by file_receive.
            return Err(std::io::Error::from_raw_os_error(libc::EACCES));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
        libc::close(fd);
    }
    Ok(())
}

/// `n` denied-or-not opens as fast as possible; prints how many failed.
fn op_flood(path: &str, n: u64) -> std::io::Result<()> {
    let c = cstr(path);
    let mut failed = 0u64;
    println!("FLOOD-START pid={}", std::process::id());
    let _ = std::io::stdout().flush();
    for _ in 0..n {
        // SAFETY: valid path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            failed += 1;
        } else {
            unsafe { libc::close(fd) };
        }
    }
    println!("FLOOD pid={} opens={n} failed={failed}", std::process::id());
    Ok(())
}

/// `procs` processes (forked, so all in this probe's cgroup and UID) each
/// open `path` `n` times, all starting together; prints one
/// `FLOOD pid=<child> opens=<n> failed=<k>` line per child, then
/// `FLOOD-MANY procs=<procs> secs=<wall time of the flood>`.
fn op_flood_many(path: &str, procs: usize, n: u64) -> std::io::Result<()> {
    let c = cstr(path);
    let mut go = [0i32; 2];
    let mut results = [0i32; 2];
    // SAFETY: plain syscalls on arrays of two fds.
    if unsafe { libc::pipe(go.as_mut_ptr()) } != 0 || unsafe { libc::pipe(results.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    println!("FLOOD-START pid={}", std::process::id());
    let _ = std::io::stdout().flush();
    let mut children = 0;
    for _ in 0..procs {
        // SAFETY: this probe is single-threaded; the child only makes
        // syscalls and formats into a stack buffer before _exit.
        match unsafe { libc::fork() } {
            -1 => break,
            0 => unsafe {
                libc::close(go[1]);
                let mut b = [0u8; 1];
                // Wait for the start: the parent closes its end.
                libc::read(go[0], b.as_mut_ptr() as *mut _, 1);
                let mut failed = 0u64;
                for _ in 0..n {
                    let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        failed += 1;
                    } else {
                        libc::close(fd);
                    }
                }
                let mut line = [0u8; 96];
                let mut w = &mut line[..];
                let _ = writeln!(w, "FLOOD pid={} opens={n} failed={failed}", libc::getpid());
                let len = 96 - w.len();
                // One write under PIPE_BUF: atomic among the children's.
                libc::write(results[1], line.as_ptr() as *const _, len);
                libc::_exit(0);
            },
            _ => children += 1,
        }
    }
    unsafe {
        libc::close(go[0]);
        libc::close(results[1]);
    }
    let t = std::time::Instant::now();
    unsafe { libc::close(go[1]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let r = unsafe { libc::read(results[0], buf.as_mut_ptr() as *mut _, buf.len()) };
        if r <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..r as usize]);
    }
    for _ in 0..children {
        unsafe { libc::wait(std::ptr::null_mut()) };
    }
    print!("{}", String::from_utf8_lossy(&out));
    println!("FLOOD-MANY procs={children} secs={:.2}", t.elapsed().as_secs_f64());
    Ok(())
}

/// Opens `path` (and reads it) in a tight loop until the file `stop`
/// exists, then reports how often each outcome happened:
/// `HAMMER pid=.. opens=.. read=.. eacces=.. enoent=.. other=..`.
/// `read` counts opens that succeeded and returned at least one byte.
fn op_hammer(path: &str, stop: &str) -> std::io::Result<()> {
    let c = cstr(path);
    let (mut opens, mut read, mut eacces, mut enoent, mut other) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut buf = [0u8; 64];
    println!("HAMMER-START pid={}", std::process::id());
    let _ = std::io::stdout().flush();
    loop {
        for _ in 0..64 {
            opens += 1;
            // SAFETY: valid path and buffer; fd closed below.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EACCES) => eacces += 1,
                    Some(libc::ENOENT) => enoent += 1,
                    _ => other += 1,
                }
                continue;
            }
            // SAFETY: fd is open; buf is valid for its length.
            if unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {
                read += 1;
            }
            unsafe { libc::close(fd) };
        }
        if Path::new(stop).exists() {
            break;
        }
    }
    println!("HAMMER pid={} opens={opens} read={read} eacces={eacces} enoent={enoent} other={other}", std::process::id());
    Ok(())
}

/// `vm-tests app <file> <log>`: a service's own program. Reads `file` and
/// appends `app-ok` or `app-FAIL errno=<n>` to `log`.
pub fn app_main(args: &[String]) -> i32 {
    let (Some(file), Some(log)) = (args.first(), args.get(1)) else {
        eprintln!("usage: vm-tests app FILE LOG");
        return 2;
    };
    let line = match std::fs::read(file) {
        Ok(_) => "app-ok\n".to_string(),
        Err(e) => format!("app-FAIL errno={}\n", e.raw_os_error().unwrap_or(-1)),
    };
    let res = std::fs::OpenOptions::new().create(true).append(true).open(log).and_then(|mut f| f.write_all(line.as_bytes()));
    if res.is_err() { 1 } else { 0 }
}

/// `_IOWR(0xfd, 12, struct dm_ioctl)`, the command `dmsetup table` sends.
const DM_TABLE_STATUS: u32 = 0xc138_fd0c;
/// `struct dm_ioctl` is 312 bytes.
const DM_IOCTL_WORDS: usize = 78;

/// `/dev/mapper/control` opened read-write, or without device-mapper
/// `/dev/null` (the LSM hook sees the command before any driver does).
fn dm_control() -> std::io::Result<libc::c_int> {
    let path = if Path::new("/dev/mapper/control").exists() { "/dev/mapper/control" } else { "/dev/null" };
    // SAFETY: valid path; the caller closes the fd.
    let fd = unsafe { libc::open(cstr(path).as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 { Err(std::io::Error::last_os_error()) } else { Ok(fd) }
}

/// A `struct dm_ioctl` asking for the table: version 4.0.0, data_size,
/// `DM_STATUS_TABLE_FLAG` in the flags at byte 28.
fn table_request(buf: &mut [u32; DM_IOCTL_WORDS]) {
    buf[0] = 4;
    buf[3] = 312;
    buf[7] = 1 << 4;
}

/// `DM_TABLE_STATUS` with `DM_STATUS_TABLE_FLAG` (what `dmsetup table
/// --showkeys` asks; dm-crypt answers with its key) on `/dev/mapper/control`,
/// or, without device-mapper, on `/dev/null` (the LSM hook sees the command
/// before any driver does; the driver would answer ENOTTY).
fn op_dm_table() -> std::io::Result<()> {
    let fd = dm_control()?;
    let mut buf = [0u32; DM_IOCTL_WORDS];
    table_request(&mut buf);
    // SAFETY: a buffer of the size the command names.
    let r = unsafe { libc::ioctl(fd, DM_TABLE_STATUS as libc::c_ulong, buf.as_mut_ptr()) };
    let err = std::io::Error::last_os_error();
    unsafe { libc::close(fd) };
    if r < 0 { Err(err) } else { Ok(()) }
}

/// The same request as a 32-bit `dmsetup` makes it: `ioctl` through the
/// ia32 system call entry (`int 0x80`, number 54), which reaches
/// `file_ioctl_compat` instead of `file_ioctl`; the request sits below
/// 4 GiB. A kernel without that entry kills the caller with SIGSEGV, so a
/// child tries a harmless one first (`setup-error=no ia32 entry`).
fn op_dm_table_compat() -> std::io::Result<()> {
    const IA32_GETPID: u32 = 20;
    const IA32_IOCTL: u32 = 54;
    /// An ia32 system call with up to three arguments.
    ///
    /// # Safety
    /// The arguments must be valid for `nr`.
    unsafe fn ia32(nr: u32, a: u32, b: u32, c: u32) -> i32 {
        let ret: i32;
        // SAFETY: the caller's; rbx is LLVM's, so it is swapped in and out
        // around the call, and the entry zeroes r8 to r11.
        unsafe {
            std::arch::asm!(
                "xchg {a}, rbx",
                "int 0x80",
                "xchg {a}, rbx",
                a = inout(reg) a as u64 => _,
                inlateout("eax") nr as i32 => ret,
                in("ecx") b,
                in("edx") c,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            );
        }
        ret
    }
    // SAFETY: plain syscalls; the child only calls getpid and _exit.
    unsafe {
        let child = libc::fork();
        if child == 0 {
            libc::_exit(if ia32(IA32_GETPID, 0, 0, 0) == libc::getpid() { 0 } else { 1 });
        }
        let mut st = 0;
        libc::waitpid(child, &mut st, 0);
        if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
            println!("PROBE pid={} setup-error=no ia32 entry (status {st:#x})", std::process::id());
            return Ok(());
        }
    }
    let fd = dm_control()?;
    // SAFETY: fd closed below; the buffer is a fresh zeroed mapping below
    // 4 GiB, larger than the request the command names.
    unsafe {
        let m = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT, -1, 0);
        if m == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(err);
        }
        table_request(&mut *(m as *mut [u32; DM_IOCTL_WORDS]));
        let r = ia32(IA32_IOCTL, fd as u32, DM_TABLE_STATUS, m as usize as u32);
        libc::close(fd);
        if r < 0 { Err(std::io::Error::from_raw_os_error(-r)) } else { Ok(()) }
    }
}

/// `kexec_file_load` of `path` as the next kernel (no initramfs, an empty
/// command line): the kernel reads the image through `kernel_read_file`
/// before it looks at it, so a file that is no kernel is refused there
/// first, or answered ENOEXEC by the image parser.
fn op_kexec_file(path: &str) -> std::io::Result<()> {
    const KEXEC_FILE_NO_INITRAMFS: libc::c_ulong = 4;
    // SAFETY: valid path and command line; fd closed below.
    unsafe {
        let fd = libc::open(cstr(path).as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let r = libc::syscall(libc::SYS_kexec_file_load, fd, -1i32, 1 as libc::c_ulong, c"".as_ptr(), KEXEC_FILE_NO_INITRAMFS);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 { Err(err) } else { Ok(()) }
    }
}

fn op_umount(path: &str, lazy: bool) -> std::io::Result<()> {
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: valid path.
    if unsafe { libc::umount2(cstr(path).as_ptr(), flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// pidfd_open + pidfd_getfd of fd 1 of `pid` (any fd: the access check comes first).
fn op_pidfd_getfd(pid: i32) -> std::io::Result<()> {
    // SAFETY: plain syscalls; fds closed below.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if pidfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd as i32, 1, 0);
        let err = std::io::Error::last_os_error();
        libc::close(pidfd as i32);
        if fd < 0 {
            return Err(err);
        }
        libc::close(fd as i32);
    }
    Ok(())
}

/// Raw bpf(2) calls an attacker with root would make.
mod bpf {
    use std::io;

    pub const MAP_CREATE: i64 = 0;
    pub const PROG_LOAD: i64 = 5;
    pub const OBJ_PIN: i64 = 6;
    pub const OBJ_GET: i64 = 7;
    pub const PROG_GET_FD_BY_ID: i64 = 13;
    pub const MAP_GET_FD_BY_ID: i64 = 14;
    pub const OBJ_GET_INFO_BY_FD: i64 = 15;
    pub const RAW_TRACEPOINT_OPEN: i64 = 17;
    pub const LINK_CREATE: i64 = 28;
    pub const LINK_GET_FD_BY_ID: i64 = 30;

    fn sys(cmd: i64, attr: &mut [u8; 128]) -> io::Result<i64> {
        // SAFETY: a zeroed, large enough bpf_attr.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
    }

    fn put32(a: &mut [u8; 128], off: usize, v: u32) {
        a[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put64(a: &mut [u8; 128], off: usize, v: u64) {
        a[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn close(fd: i64) {
        // SAFETY: closing an fd we own.
        unsafe { libc::close(fd as i32) };
    }

    pub fn fd_by_id(cmd: i64, id: u32) -> io::Result<()> {
        let mut a = [0u8; 128];
        put32(&mut a, 0, id);
        close(sys(cmd, &mut a)?);
        Ok(())
    }

    /// Control: a map of our own, then an fd of it by id (root may, guard or not).
    pub fn own_map_by_id() -> io::Result<()> {
        let mut a = [0u8; 128];
        put32(&mut a, 0, 2); // BPF_MAP_TYPE_ARRAY
        put32(&mut a, 4, 4);
        put32(&mut a, 8, 4);
        put32(&mut a, 12, 1);
        let fd = sys(MAP_CREATE, &mut a)?;
        let mut info = [0u8; 128];
        let mut b = [0u8; 128];
        put32(&mut b, 0, fd as u32);
        put32(&mut b, 4, 128);
        put64(&mut b, 8, info.as_mut_ptr() as u64);
        sys(OBJ_GET_INFO_BY_FD, &mut b)?;
        let id = u32::from_le_bytes(info[4..8].try_into().unwrap());
        let res = fd_by_id(MAP_GET_FD_BY_ID, id);
        close(fd);
        res
    }

    pub fn obj_get(path: &str) -> io::Result<()> {
        let c = std::ffi::CString::new(path).unwrap();
        let mut a = [0u8; 128];
        put64(&mut a, 0, c.as_ptr() as u64);
        close(sys(OBJ_GET, &mut a)?);
        Ok(())
    }

    /// BPF_PROG_LOAD of `r0 = 0; exit` as `kind`: lsm, fmod_ret or ext (the
    /// attach target is left unset, so the kernel itself refuses the load
    /// with EINVAL; a refusal with EPERM can only come from an LSM), or
    /// socket_filter / raw_tracepoint (which load: any program loaded with
    /// CAP_PERFMON may read user memory).
    pub fn load(kind: &str) -> io::Result<()> {
        close(load_fd(kind)?);
        Ok(())
    }

    /// Loads a `kind` program and pins it at `path` (an allowed tool's program
    /// that outlives it, for others to try `BPF_OBJ_GET` on).
    pub fn load_pin(kind: &str, path: &str) -> io::Result<()> {
        let fd = load_fd(kind)?;
        let c = std::ffi::CString::new(path).unwrap();
        let mut a = [0u8; 128];
        put64(&mut a, 0, c.as_ptr() as u64);
        put32(&mut a, 8, fd as u32);
        let r = sys(OBJ_PIN, &mut a);
        close(fd);
        r.map(|_| ())
    }

    fn load_fd(kind: &str) -> io::Result<i64> {
        let (prog_type, attach) = match kind {
            "lsm" => (29, 27),
            "fmod_ret" => (26, 26),
            "ext" => (28, 0),
            "socket_filter" => (1, 0),
            "raw_tracepoint" => (17, 0),
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        // mov64 r0, 0; exit
        let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
        let license = b"GPL\0";
        let mut a = [0u8; 128];
        put32(&mut a, 0, prog_type);
        put32(&mut a, 4, 2);
        put64(&mut a, 8, insns.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        put32(&mut a, 68, attach);
        sys(PROG_LOAD, &mut a)
    }

    /// BPF_LINK_CREATE of an LSM attachment with a bogus program fd: EBADF
    /// from the kernel, EPERM from guard.
    pub fn link_create(attach_type: u32) -> io::Result<()> {
        let mut a = [0u8; 128];
        put32(&mut a, 0, 9999);
        put32(&mut a, 8, attach_type);
        close(sys(LINK_CREATE, &mut a)?);
        Ok(())
    }

    /// BPF_RAW_TRACEPOINT_OPEN with no name (tracing/LSM attach) and a bogus fd.
    pub fn raw_tp_null() -> io::Result<()> {
        let mut a = [0u8; 128];
        put32(&mut a, 8, 9999);
        close(sys(RAW_TRACEPOINT_OPEN, &mut a)?);
        Ok(())
    }
}

/// Writes our own pid into `cgroup`'s `cgroup.procs` or `cgroup.threads`.
fn op_join(cgroup: &str, which: &str) -> std::io::Result<()> {
    let file = Path::new("/sys/fs/cgroup").join(cgroup.trim_start_matches('/')).join(format!("cgroup.{which}"));
    let id = if which == "threads" {
        // SAFETY: plain syscall.
        unsafe { libc::syscall(libc::SYS_gettid) }.to_string()
    } else {
        std::process::id().to_string()
    };
    std::fs::write(file, id)
}

/// `clone3(CLONE_INTO_CGROUP)` with fork semantics: a child created straight
/// in `cgroup` that takes `uid` and then runs `child` (raw syscalls only:
/// everything it uses is prepared before), which must end the process
/// (exec or `_exit`). Returns the child's pid.
fn fork_into_cgroup(cgroup: &str, uid: u32, child: impl FnOnce()) -> std::io::Result<i32> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let dir = cstr(&format!("/sys/fs/cgroup/{}", cgroup.trim_start_matches('/')));
    // SAFETY: O_PATH open of a directory; closed below.
    let dirfd = unsafe { libc::open(dir.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if dirfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let args = CloneArgs { flags: CLONE_INTO_CGROUP, exit_signal: libc::SIGCHLD as u64, cgroup: dirfd as u64, ..Default::default() };
    let _ = std::io::stdout().flush();
    // SAFETY: clone3 with fork semantics (no new stack); this process is
    // single-threaded, and the child only makes raw syscalls.
    let pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if pid == 0 {
        // SAFETY: raw syscalls in the child.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setresgid(uid, uid, uid) != 0 || libc::setresuid(uid, uid, uid) != 0 {
                libc::_exit(200);
            }
        }
        child();
        // SAFETY: a child that fell through ends here.
        unsafe { libc::_exit(202) };
    }
    let err = std::io::Error::last_os_error();
    // SAFETY: closing our fd.
    unsafe { libc::close(dirfd) };
    if pid < 0 {
        return Err(err);
    }
    Ok(pid as i32)
}

/// `UNIT_APP probe ARGS` created straight in `cgroup` as `uid`, the way
/// systemd starts a service; it dies with this process (which waits for it
/// and passes its output through).
fn op_spawn_in(cgroup: &str, uid: u32, args: &[String]) -> std::io::Result<()> {
    let app = cstr(crate::env::UNIT_APP);
    let mut argv_c: Vec<std::ffi::CString> = vec![cstr("unit-app"), cstr("probe")];
    argv_c.extend(args.iter().map(|a| cstr(a)));
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY (child): raw syscalls, then exec or _exit.
    let pid = fork_into_cgroup(cgroup, uid, || unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        libc::execv(app.as_ptr(), argv.as_ptr());
        libc::_exit(201);
    })?;
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    std::process::exit(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) });
}

/// A child created straight in `cgroup` that takes `uid` and opens `file`.
/// Ok if the child's open succeeded; the child's pid is printed as
/// `CLONED child=N`.
fn op_clone_into(cgroup: &str, uid: u32, file: &str) -> std::io::Result<()> {
    let path = cstr(file);
    // SAFETY (child): raw syscalls, then _exit.
    let pid = fork_into_cgroup(cgroup, uid, || unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        libc::_exit(if fd < 0 { *libc::__errno_location() } else { 0 });
    })?;
    println!("CLONED child={pid}");
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        200 => Err(std::io::Error::other("child could not take the uid")),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// Forks a child that asks to be traced (PTRACE_TRACEME) and execs `argv`;
/// Ok if the exec went through (the child then stops at it and is killed).
fn op_traced_exec(argv: &[String]) -> std::io::Result<()> {
    let prog = cstr(&argv[0]);
    let args: Vec<CString> = argv.iter().map(|a| cstr(a)).collect();
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: fork in a single-threaded process; the child makes raw
    // syscalls only, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::execv(prog.as_ptr(), ptrs.as_ptr());
            libc::_exit(*libc::__errno_location());
        }
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    println!("CLONED child={pid}");
    let mut status = 0;
    // SAFETY: waiting for / killing our own child.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        if libc::WIFSTOPPED(status) {
            // Stopped at a successful exec: the tracer holds a trusted process.
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, &mut status, 0);
            return Ok(());
        }
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}
