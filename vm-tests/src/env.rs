//! The guest world the suite builds: cgroups standing for units, a
//! credentials mount like systemd's, the guard agent as a child process,
//! and helpers to run probes and read the feed.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const GUARD: &str = "/bin/guard";
pub const SELF: &str = "/bin/vm-tests";
/// A copy of this binary with its own inode: root's own program, which
/// guard does not take for the harness that plays systemd's part here.
pub const INTRUDER: &str = "/bin/intruder";
/// Another copy: the unit's own program. The harness places a probe in the
/// unit and execs this, as systemd execs a service's binary.
pub const UNIT_APP: &str = "/bin/unit-app";
pub const CGROOT: &str = "/sys/fs/cgroup";
pub const EVENTS: &str = "/tmp/events.jsonl";
pub const GUARD_LOG: &str = "/tmp/guard.log";
pub const METRICS: &str = "127.0.0.1:9464";

/// Users in the guest's /etc/passwd (written by the VM image builder).
pub const ROOT: u32 = 0;
pub const ALICE: u32 = 1000; // a login user
pub const BOB: u32 = 1001; // a user the unit's policy does not allow
pub const SVC: u32 = 1002; // the unit's user

pub const UNIT: &str = "/system.slice/demo.service";
pub const OTHER: &str = "/system.slice/other.service";
pub const SESSION: &str = "/user.slice/user-1000.slice/session-1.scope";
pub const AUDITED_UNIT: &str = "/system.slice/audited.service";
pub const FLOOD_UNIT: &str = "/system.slice/flood.service";
pub const HOST: &str = "/"; // root's own cgroup: "the rest of the host"

pub const CRED_DIR: &str = "/run/credentials/demo.service";
pub const KEY: &str = "/run/credentials/demo.service/key";
pub const SECRETS: &str = "/srv/demo/secrets";
pub const DB_PASSWORD: &str = "/srv/demo/secrets/db-password";
pub const PUBLIC: &str = "/srv/public.txt";
pub const AUDITED_FILE: &str = "/srv/audited/token";
pub const FLOOD_FILE: &str = "/srv/flood/secret";
pub const STOPPED_FILE: &str = "/srv/stopped/token";
/// A disk-backed filesystem (ext4 on a loop device) for the eviction tests.
pub const EXT4_DIR: &str = "/mnt/ext4";
pub const EXT4_SECRETS: &str = "/mnt/ext4/secrets";
pub const EXT4_SECRET: &str = "/mnt/ext4/secrets/token";
pub const EXT4_DOOMED: &str = "/mnt/ext4/secrets/doomed";
pub const EXT4_PUBLIC: &str = "/mnt/ext4/public";
pub const PIN_ROOT: &str = "/sys/fs/bpf/guard";

/// Loads the loop driver the image carries, makes an ext4 filesystem in a
/// file and mounts it through a loop device. Panics with the reason if any
/// step fails (the eviction tests need a real disk-backed filesystem).
pub fn mount_ext4() {
    let run = |cmd: &str, args: &[&str]| {
        let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(out.status.success(), "{cmd} {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    };
    if !Path::new("/sys/module/loop").exists() {
        run("insmod", &["/lib/modules/loop.ko"]);
    }
    // 8 MiB of 1 KiB blocks is one block group: a freed inode number is the
    // next one handed out, so the reuse test below can reuse it.
    run("dd", &["if=/dev/zero", "of=/tmp/ext4.img", "bs=1M", "count=8"]);
    run("mke2fs", &["-q", "-F", "-b", "1024", "/tmp/ext4.img"]);
    std::fs::create_dir_all(EXT4_DIR).unwrap();
    run("mount", &["-t", "ext4", "-o", "loop", "/tmp/ext4.img", EXT4_DIR]);
}

/// Turns the kernel's BPF run-time statistics on for as long as the fd
/// lives (`BPF_ENABLE_STATS`). Every agent turns them on too (`--prog-stats`);
/// holding one more reference for the whole suite keeps the static key
/// behind them from flipping when an agent stops or starts. Flipping it
/// patches kernel text (int3 + cross-CPU sync), and QEMU's multi-threaded
/// TCG does not reliably emulate that while the other CPU runs through the
/// patched code: one 6.12 run oopsed on the int3 in `__bpf_prog_enter`
/// during scenario 23. Real CPUs do not have that problem; this keeps the
/// emulator out of the results.
pub fn hold_bpf_stats() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let attr = [0u32; 4]; // enable_stats.type = BPF_STATS_RUN_TIME (0)
    // SAFETY: bpf(BPF_ENABLE_STATS) with a zeroed attr; the fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 32, attr.as_ptr(), std::mem::size_of_val(&attr)) };
    assert!(fd >= 0, "BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

/// Writes back and drops the page, dentry and inode caches.
pub fn drop_caches() {
    // SAFETY: plain syscall.
    unsafe { libc::sync() };
    for _ in 0..2 {
        std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop_caches");
    }
}

pub fn ino(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).map(|m| m.ino()).unwrap_or(0)
}

/// Runs `guard ARGS` as root in the root cgroup: (exit code, stdout, stderr).
pub fn guard_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(GUARD).args(args).output().expect("running guard");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `guard status --json`.
pub fn guard_status() -> Result<serde_json::Value, String> {
    let (code, out, err) = guard_cli(&["status", "--json"]);
    serde_json::from_str(&out).map_err(|e| format!("guard status (exit {code:?}) printed no JSON ({e}): {out}{err}"))
}

/// One policy's entry of `guard status --json`, by unit.
pub fn policy_status(unit: &str) -> Result<serde_json::Value, String> {
    let st = guard_status()?;
    st["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["policies"].as_array().cloned().unwrap_or_default())
        .find(|p| p["unit"] == unit)
        .ok_or_else(|| format!("guard status has no policy for {unit}: {st}"))
}

/// Records of one kind (`tamper`, `admin`, ...) so far.
pub fn records_of_kind(kind: &str) -> Vec<serde_json::Value> {
    records_where(&format!("\"kind\":\"{kind}\""), |r| r["kind"] == kind)
}

/// The tamper records whose process had `pid`, waiting up to 5 s for one.
pub fn tamper_records_for(pid: u32) -> Vec<serde_json::Value> {
    let t = Instant::now();
    loop {
        let found = records_where(&format!("\"pid\":{pid},"), |r| r["kind"] == "tamper" && r["process"]["pid"].as_u64() == Some(pid as u64));
        if !found.is_empty() || t.elapsed() > Duration::from_secs(5) {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn mkcg(rel: &str) {
    std::fs::create_dir_all(Path::new(CGROOT).join(rel.trim_start_matches('/'))).unwrap_or_else(|e| panic!("mkdir cgroup {rel}: {e}"));
}

pub fn cgroup_id(rel: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(Path::new(CGROOT).join(rel.trim_start_matches('/'))).map(|m| m.ino()).unwrap_or(0)
}

pub fn write_file(path: &str, data: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = Path::new(path).parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chmod(path: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("chmod {path}: {e}"));
}

pub fn mount_tmpfs(dir: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    // SAFETY: valid C strings.
    let r = unsafe { libc::mount(c("tmpfs").as_ptr(), c(dir).as_ptr(), c("tmpfs").as_ptr(), 0, c("mode=0777").as_ptr().cast()) };
    assert_eq!(r, 0, "mount tmpfs {dir}: {}", std::io::Error::last_os_error());
}

pub fn umount(dir: &str) {
    let c = std::ffi::CString::new(dir).unwrap();
    // SAFETY: valid C string.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

pub fn move_mount(src: &str, dst: &str) {
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    // SAFETY: valid C strings.
    let r = unsafe { libc::mount(c(src).as_ptr(), c(dst).as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null()) };
    assert_eq!(r, 0, "move mount {src} -> {dst}: {}", std::io::Error::last_os_error());
}

pub fn bind_mount(src: &str, dst: &str) {
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    if !Path::new(dst).exists() {
        std::fs::write(dst, b"").unwrap();
    }
    // SAFETY: valid C strings.
    let r = unsafe { libc::mount(c(src).as_ptr(), c(dst).as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    assert_eq!(r, 0, "bind mount {src} -> {dst}: {}", std::io::Error::last_os_error());
}

/// Brings `lo` up (busybox init does not), for the metrics endpoint.
pub fn loopback_up() {
    // SAFETY: ioctl on a datagram socket with a properly sized ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr);
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        libc::close(s);
    }
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub pid: u32,
    pub errno: Option<i32>,
    pub raw: String,
}

impl Probe {
    pub fn ok(&self) -> bool {
        self.errno.is_none() && !self.raw.contains("setup-error")
    }
    pub fn denied(&self) -> bool {
        self.errno == Some(libc::EACCES) || self.errno == Some(libc::EPERM)
    }
    pub fn describe(&self) -> String {
        match self.errno {
            None if self.ok() => "allowed".into(),
            None => format!("probe failed: {}", self.raw.trim()),
            Some(e) => format!("errno {e} ({})", std::io::Error::from_raw_os_error(e)),
        }
    }
}

fn parse_probe(out: &str) -> Probe {
    let line = out.lines().find(|l| l.starts_with("PROBE ")).unwrap_or("").to_string();
    let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).map(String::from);
    Probe {
        pid: field("pid=").and_then(|p| p.parse().ok()).unwrap_or(0),
        errno: field("result=errno=").and_then(|e| e.parse().ok()),
        raw: out.to_string(),
    }
}

/// Runs one access as a fresh process in `cgroup` with `uid`.
pub fn probe(cgroup: &str, uid: u32, op: &str, args: &[&str]) -> Probe {
    probe_bin(SELF, cgroup, uid, op, args)
}

/// The same, run by executable `bin` (`INTRUDER` for root's own program).
pub fn probe_bin(bin: &str, cgroup: &str, uid: u32, op: &str, args: &[&str]) -> Probe {
    let out = Command::new(bin)
        .args(["probe", "--cgroup", cgroup, "--uid", &uid.to_string(), op])
        .args(args)
        .output()
        .expect("spawning probe");
    parse_probe(&String::from_utf8_lossy(&out.stdout))
}

/// A probe left running in the background (hold, recv-fd).
pub struct Background {
    pub child: Child,
    pub first_line: String,
    rest: Option<std::thread::JoinHandle<String>>,
}

pub fn background(cgroup: &str, uid: u32, op: &str, args: &[&str]) -> Background {
    background_bin(SELF, cgroup, uid, op, args)
}

/// The same, run by executable `bin`.
pub fn background_bin(bin: &str, cgroup: &str, uid: u32, op: &str, args: &[&str]) -> Background {
    let mut cmd = Command::new(bin);
    cmd.args(["probe", "--cgroup", cgroup, "--uid", &uid.to_string(), op]).args(args);
    background_of(cmd)
}

/// A unit's process started as systemd starts one: the harness (systemd's
/// stand-in) creates it straight in the unit's cgroup (`clone3` with
/// `CLONE_INTO_CGROUP`), switches it to `uid` and execs `UNIT_APP probe OP
/// ARGS`, so that the service's own program starts inside the unit. (The
/// harness, a Rust program, reads its own `/proc/self/maps` at startup,
/// before any join: a process it moved would keep that procfs entry from
/// before it was the unit's.)
pub fn background_in_unit(cgroup: &str, uid: u32, op: &str, args: &[&str]) -> Background {
    let mut cmd = Command::new(SELF);
    cmd.args(["probe", "spawn-in", cgroup, &uid.to_string(), op]).args(args);
    background_of(cmd)
}

fn background_of(mut cmd: Command) -> Background {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawning background probe");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first_line = String::new();
    reader.read_line(&mut first_line).unwrap();
    // Keep the rest of its output, read as it comes so the child never blocks.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = reader.read_to_string(&mut s);
        s
    });
    Background { child, first_line, rest: Some(rest) }
}

impl Background {
    /// Waits for the probe and returns what it reported after its first line.
    /// Whether the probe process ended within `limit` (killed by a signal, say).
    pub fn child_gone_within(mut self, limit: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    pub fn finish(mut self) -> Probe {
        let _ = self.child.wait();
        let out = self.rest.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        parse_probe(&out)
    }
}

pub struct Agent {
    pub child: Child,
    pub started_ms: u128,
}

/// Starts `guard run` and waits for it to attach.
pub fn start_agent(policy_dir: &str, extra: &[&str]) -> Agent {
    let _ = std::fs::remove_file("/tmp/guard.ready");
    let log = std::fs::File::create(GUARD_LOG).unwrap();
    let t = Instant::now();
    let child = Command::new(GUARD)
        .args(["run", "--policy-dir", policy_dir, "--events-file", EVENTS, "--ready-file", "/tmp/guard.ready", "--metrics", METRICS, "--prog-stats", "--reconcile-ms", "200"])
        // This guest has no systemd: the harness (this binary) plays its part
        // of putting processes into units' cgroups.
        .args(["--no-systemd-cgroup-writer", "--cgroup-writer", SELF])
        // Small on purpose: the floods (scenarios 16 and 24) overflow both.
        .args(["--ringbuf-bytes", "65536", "--max-openers", "512"])
        .args(extra)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawning guard");
    let mut agent = Agent { child, started_ms: 0 };
    while !Path::new("/tmp/guard.ready").exists() {
        if let Ok(Some(st)) = agent.child.try_wait() {
            panic!("guard exited before attaching ({st}):\n{}", std::fs::read_to_string(GUARD_LOG).unwrap_or_default());
        }
        if t.elapsed() > Duration::from_secs(120) {
            panic!("guard did not attach within 120 s:\n{}", std::fs::read_to_string(GUARD_LOG).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.started_ms = t.elapsed().as_millis();
    agent
}

impl Agent {
    /// SIGKILL, as an attacker (or the OOM killer) would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }

    pub fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// Every record of the feed so far.
pub fn records() -> Vec<serde_json::Value> {
    records_where("", |_| true)
}

/// The records whose JSON line contains `needle` and that pass `keep`,
/// streamed: the feed file holds a million-record flood by the end of the
/// suite, so it is never parsed (or held) whole.
pub fn records_where(needle: &str, keep: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
    let Ok(f) = std::fs::File::open(EVENTS) else { return Vec::new() };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains(needle))
        .filter_map(|l| serde_json::from_str(&l).ok())
        .filter(|r| keep(r))
        .collect()
}

fn access_records_of(pid: u32) -> Vec<serde_json::Value> {
    records_where(&format!("\"pid\":{pid},"), |r| r["kind"] == "access" && r["process"]["pid"].as_u64() == Some(pid as u64))
}

/// The access records whose opener had `pid`, waiting up to 5 s for the first.
pub fn records_for(pid: u32) -> Vec<serde_json::Value> {
    let t = Instant::now();
    loop {
        if !access_records_of(pid).is_empty() || t.elapsed() > Duration::from_secs(5) {
            // A moment more, to catch a (wrong) duplicate.
            std::thread::sleep(Duration::from_millis(300));
            return access_records_of(pid);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The access records of `pid` after a short settle, for opens that must
/// produce none.
pub fn records_settled(pid: u32) -> Vec<serde_json::Value> {
    std::thread::sleep(Duration::from_millis(400));
    access_records_of(pid)
}

/// GET /metrics from the agent.
pub fn scrape() -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(METRICS)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Ids of every loaded BPF program (BPF_PROG_GET_NEXT_ID).
pub fn bpf_prog_ids() -> Vec<u32> {
    let mut ids = Vec::new();
    let mut attr = [0u32; 4];
    loop {
        // SAFETY: bpf(BPF_PROG_GET_NEXT_ID) reads start_id and writes next_id.
        let r = unsafe { libc::syscall(libc::SYS_bpf, 11, attr.as_mut_ptr(), 16usize) };
        if r != 0 {
            return ids;
        }
        ids.push(attr[1]);
        attr[0] = attr[1];
    }
}
