//! `guard bench-peers`: guard side by side with what users already have,
//! measured the same way, in a real-systemd machine.
//!
//! Variants (each round visits all of them in a rotated order):
//! - `baseline`: no extra LSM program or ruleset;
//! - `empty`: guard's empty `file_open` program (the floor of a BPF LSM program);
//! - `guard-1`: guard's `file_open` protecting one file;
//! - `systemd`: a transient service with `RestrictFileSystems=~ramfs`
//!   (systemd's own BPF LSM program, `restrict_filesystems`, keyed by cgroup);
//! - `systemd-unit`: the same transient service without it (a control);
//! - `landlock`: a Landlock ruleset handling file reads, allowing them below a
//!   few directories only;
//! - `apparmor`: an AppArmor profile allowing every file but denying a directory.
//!
//! Every variant's measurement is the same code ([`worker`], `guard
//! bench-worker`: [`bench::time_opens`] on each operation's file), spawned
//! as a child under the variant's confinement; it prints JSON. The three
//! operations, per variant (what "unprotected", "allowed" and "denied" mean):
//! - guard-1 (and baseline, empty): `unprotected` = a file no policy names
//!   (outsider cgroup); `allowed` = the protected file opened from the
//!   owner cgroup; `denied` = the same file from the outsider cgroup (EACCES);
//! - systemd: the worker runs inside the unit; `unprotected` and `allowed`
//!   = files on tmpfs (not in the deny list: the program still looks the
//!   fs up), `denied` = a file on a ramfs mount (EPERM);
//! - landlock, apparmor: every open of a confined task is checked, so
//!   `unprotected` and `allowed` = files below the allowed directory,
//!   `denied` = a file in the directory the ruleset/profile does not grant (EACCES).
//!
//! After the runs, the loaded programs' translated instructions are walked
//! ([`kernel::pathcount`]): guard's, the empty one and systemd's. The run
//! fails if guard's unprotected path is anything but exactly one helper
//! call, a lookup.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{bail, Context, Result};
use clap::Args;
use guard_common::*;
use serde::{Deserialize, Serialize};

use crate::{
    bench::{self, BenchCgroups, Spread},
    kernel::{self, pathcount},
};

#[derive(Args, Debug, Clone)]
pub struct PeersArgs {
    /// Interleaved rounds.
    #[arg(long, default_value_t = 15)]
    pub rounds: usize,
    /// open() calls per measurement (each is a fresh worker process, so
    /// fewer than `guard bench`'s: the spawns, not the calls, bound the run).
    #[arg(long, default_value_t = 10_000)]
    pub iters: usize,
    /// A quick run proving every peer works (timings meaningless).
    #[arg(long)]
    pub short: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where to create the files (below /tmp: tmpfs in the test VM).
    #[arg(long, default_value = "/tmp/guard-peers")]
    pub dir: PathBuf,
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// Skip a peer that cannot run here instead of failing (never in CI).
    #[arg(long)]
    pub allow_missing: bool,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[arg(long)]
    pub iters: usize,
    /// `NAME=PATH` or `NAME=PATH@CGROUP_DIR` (join that cgroup first). Repeated.
    #[arg(long = "op")]
    pub ops: Vec<String>,
    /// Restrict reads to below these directories with Landlock first.
    #[arg(long, value_delimiter = ',')]
    pub landlock: Vec<PathBuf>,
    /// Switch to this AppArmor profile first.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Pin to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerOut {
    pub ops: Vec<WorkerOp>,
    /// How the confinement took (Landlock's status, the AppArmor label).
    pub confinement: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerOp {
    pub op: String,
    pub ns: f64,
    /// errno of the first open (0: it opened).
    pub errno: i32,
}

/// `guard bench-worker`: confine, then time each operation; JSON on stdout.
pub fn worker(args: WorkerArgs) -> ExitCode {
    match run_worker(&args) {
        Ok(out) => {
            println!("{}", serde_json::to_string(&out).unwrap());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-worker: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_worker(args: &WorkerArgs) -> Result<WorkerOut> {
    if let Some(cpu) = args.cpu {
        // SAFETY: a zeroed cpu_set_t for our own thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    let mut ops = Vec::new();
    for spec in &args.ops {
        let (name, rest) = spec.split_once('=').with_context(|| format!("--op {spec}: expected NAME=PATH[@CGROUP]"))?;
        let (path, cgroup) = match rest.split_once('@') {
            Some((p, c)) => (p, Some(PathBuf::from(c))),
            None => (rest, None),
        };
        ops.push((name.to_string(), bench::cstr(Path::new(path)), cgroup));
    }
    let mut confinement = "none".to_string();
    if !args.landlock.is_empty() {
        use landlock::{path_beneath_rules, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI};
        let abi = ABI::V1;
        let status = Ruleset::default()
            .handle_access(AccessFs::from_read(abi))
            .context("Landlock: handling file reads")?
            .create()
            .context("Landlock: creating the ruleset (is `landlock` in /sys/kernel/security/lsm?)")?
            .add_rules(path_beneath_rules(&args.landlock, AccessFs::from_read(abi)))
            .context("Landlock: adding the allowed directories")?
            .restrict_self()
            .context("Landlock: restricting the worker")?;
        if status.ruleset == RulesetStatus::NotEnforced {
            bail!("Landlock: the ruleset is not enforced on this kernel (is `landlock` in /sys/kernel/security/lsm?)");
        }
        confinement = format!("landlock {:?}", status.ruleset);
    }
    if let Some(profile) = &args.apparmor {
        let cmd = format!("changeprofile {profile}");
        let attr = ["/proc/self/attr/apparmor/current", "/proc/self/attr/current"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context("AppArmor: no /proc/self/attr/current")?;
        std::fs::write(attr, &cmd).with_context(|| format!("AppArmor: writing `{cmd}` to {attr} (is the profile loaded?)"))?;
        confinement = format!("apparmor {}", std::fs::read_to_string(attr).unwrap_or_default().trim());
    }
    let mut out = Vec::new();
    for (name, path, cgroup) in &ops {
        if let Some(cg) = cgroup {
            let procs = cg.join("cgroup.procs");
            std::fs::write(&procs, std::process::id().to_string()).with_context(|| format!("joining {}", procs.display()))?;
        }
        // SAFETY: a valid path; the fd is closed right away.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        let errno = if fd >= 0 {
            unsafe { libc::close(fd) };
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        };
        let ns = bench::time_opens(path, args.iters);
        out.push(WorkerOp { op: name.clone(), ns, errno });
    }
    Ok(WorkerOut { ops: out, confinement })
}

const OPS: [&str; 3] = ["unprotected", "allowed", "denied"];
const RAMFS: &str = "/run/guard-peers-ramfs";
const AA_PROFILE: &str = "guard-bench-peer";

#[derive(Debug, Clone, Serialize)]
pub struct PeerRow {
    pub variant: String,
    pub op: &'static str,
    pub e2e_ns: Spread,
    pub e2e_vs_baseline: f64,
    pub e2e_vs_empty: f64,
    /// errno every measurement's first open gave (0: opened).
    pub errno: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    pub kernel: String,
    pub lsm: String,
    pub systemd: String,
    pub rounds: usize,
    pub iters: usize,
    pub rows: Vec<PeerRow>,
    /// What each variant's operations open.
    pub definitions: Vec<(String, String)>,
    pub confinement: Vec<(String, String)>,
    pub paths: Vec<pathcount::ProgramPaths>,
    /// Peers that could not run (only with --allow-missing).
    pub missing: Vec<String>,
    /// Programs already on `file_open` before any variant (in every variant).
    pub always_attached: Vec<String>,
    pub hot_path_check: String,
}

pub fn main(mut args: PeersArgs) -> ExitCode {
    if args.short {
        args.rounds = args.rounds.min(3);
        args.iters = args.iters.min(2000);
    }
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap());
            } else {
                print!("{}", table(&report));
            }
            if report.hot_path_check.starts_with("FAILED") {
                eprintln!("error: {}", report.hot_path_check);
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Variant {
    name: &'static str,
    /// (kernel index, program) attached while it runs.
    attach: Option<(usize, &'static str)>,
    /// Per op: the worker's `--op` value, the bench cgroup to run it from
    /// (entered before the program is attached: guard guards its owner
    /// cgroup's `cgroup.procs`) and the errno the open must give.
    ops: [(String, &'static str, i32); 3],
    /// How the worker is started.
    wrap: Wrap,
}

enum Wrap {
    Plain,
    /// A transient unit; with `RestrictFileSystems=~ramfs` when true.
    Systemd(bool),
    Landlock(Vec<PathBuf>),
    AppArmor,
}

fn run(args: &PeersArgs) -> Result<PeerReport> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("guard bench-peers loads BPF LSM programs and starts units: run it as root");
    }
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").context("reading /sys/kernel/security/lsm (securityfs not mounted?)")?;
    let lsm = lsm.trim().to_string();
    let has = |m: &str| lsm.split(',').any(|x| x == m);
    if !has("bpf") {
        bail!("`bpf` is not in the active LSMs ({lsm}): boot with lsm=...,bpf");
    }
    let mut missing = Vec::new();
    let mut need = |peer: &str, why: String| -> Result<()> {
        if args.allow_missing {
            eprintln!("bench-peers: skipping {peer}: {why}");
            missing.push(format!("{peer}: {why}"));
            Ok(())
        } else {
            bail!("{peer} cannot run: {why}")
        }
    };
    let systemctl = Command::new("systemctl").arg("--version").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    let systemd_version = systemctl.lines().next().unwrap_or("no systemctl").to_string();
    let systemd_ok = systemctl.contains("+BPF_FRAMEWORK");
    if !systemd_ok {
        need("systemd", format!("RestrictFileSystems= needs systemd built with +BPF_FRAMEWORK; this one is `{systemd_version}`"))?;
    }
    let landlock_ok = has("landlock");
    if !landlock_ok {
        need("landlock", format!("`landlock` is not in the active LSMs ({lsm})"))?;
    }
    let apparmor_ok = has("apparmor") && Path::new("/sys/kernel/security/apparmor/.load").exists();
    if !apparmor_ok {
        need("apparmor", format!("AppArmor is not active (LSMs: {lsm}) or securityfs lacks apparmor/.load"))?;
    }

    bench::pin_to_current_cpu();
    // SAFETY: plain syscall.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    let cgroups = BenchCgroups::new(&args.cgroup_root)?;
    let target = kernel::Target::running()?;

    let d = &args.dir;
    for sub in ["open", "closed"] {
        std::fs::create_dir_all(d.join(sub)).with_context(|| format!("creating {}/{sub}", d.display()))?;
    }
    let unprotected = d.join("open/unprotected");
    let secret = d.join("open/secret");
    let closed = d.join("closed/secret");
    for f in [&unprotected, &secret, &closed] {
        std::fs::write(f, b"secret").with_context(|| format!("writing {}", f.display()))?;
    }
    let ramfs_secret = Path::new(RAMFS).join("secret");
    if systemd_ok {
        std::fs::create_dir_all(RAMFS)?;
        mount_ramfs(Path::new(RAMFS))?;
        std::fs::write(&ramfs_secret, b"secret")?;
    }
    if apparmor_ok {
        load_profile(&d.join("closed"))?;
    }

    let mut kernels = Vec::new();
    let mut floor = kernel::Kernel::load(&target, 1 << 16, guard_common::DEFAULT_MAX_BURSTS, true)?;
    floor.events = None;
    kernels.push(floor);
    let (k, _) = bench::guard_kernel(&target, &args.cgroup_root, 1, vec![secret.clone()])?;
    kernels.push(k);
    let always_attached = attached_file_open_programs();

    let p = |f: &Path| f.display().to_string();
    let guard_ops = |denied_errno: i32| -> [(String, &'static str, i32); 3] {
        [
            (format!("unprotected={}", p(&unprotected)), "outsider", 0),
            (format!("allowed={}", p(&secret)), "owner", 0),
            (format!("denied={}", p(&secret)), "outsider", denied_errno),
        ]
    };
    let confined_ops = |denied: &Path, errno: i32| -> [(String, &'static str, i32); 3] {
        [
            (format!("unprotected={}", p(&unprotected)), "outsider", 0),
            (format!("allowed={}", p(&secret)), "outsider", 0),
            (format!("denied={}", p(denied)), "outsider", errno),
        ]
    };
    let mut variants = vec![
        Variant { name: "baseline", attach: None, ops: guard_ops(0), wrap: Wrap::Plain },
        Variant { name: "empty", attach: Some((0, PROG_EMPTY)), ops: guard_ops(0), wrap: Wrap::Plain },
        Variant { name: "guard-1", attach: Some((1, PROG_FILE_OPEN)), ops: guard_ops(libc::EACCES), wrap: Wrap::Plain },
    ];
    let mut definitions = vec![
        ("baseline, empty, guard-1".to_string(), format!(
            "unprotected = {} from an outsider cgroup; allowed = {} (guard-1 protects it) from the owner cgroup; denied = the same file from the outsider cgroup (guard-1: EACCES; baseline and empty open it)",
            p(&unprotected), p(&secret)
        )),
    ];
    if systemd_ok {
        // The same transient unit without the property: what running in a
        // unit costs by itself, so `systemd` can be read against it.
        variants.push(Variant { name: "systemd-unit", attach: None, ops: confined_ops(&ramfs_secret, 0), wrap: Wrap::Systemd(false) });
        variants.push(Variant { name: "systemd", attach: None, ops: confined_ops(&ramfs_secret, libc::EPERM), wrap: Wrap::Systemd(true) });
        definitions.push(("systemd".into(), format!(
            "the worker runs in a transient service with RestrictFileSystems=~ramfs; unprotected = {}, allowed = {} (tmpfs: not denied, but the program looks the filesystem up for every open of the unit); denied = {} (ramfs: EPERM)",
            p(&unprotected), p(&secret), p(&ramfs_secret)
        )));
        definitions.push(("systemd-unit".into(), "the same transient service and files without RestrictFileSystems= (a control: the cost of running in a unit at all; its denied open succeeds)".into()));
    }
    if landlock_ok {
        let allow = vec![d.join("open"), PathBuf::from("/usr"), PathBuf::from("/etc"), PathBuf::from("/proc")];
        definitions.push(("landlock".into(), format!(
            "the worker restricts itself (Landlock ABI 1 best effort, reads handled) to reading below {}; unprotected = {}, allowed = {} (Landlock checks every open of the task); denied = {} (EACCES)",
            allow.iter().map(|a| p(a)).collect::<Vec<_>>().join(", "), p(&unprotected), p(&secret), p(&closed)
        )));
        variants.push(Variant { name: "landlock", attach: None, ops: confined_ops(&closed, libc::EACCES), wrap: Wrap::Landlock(allow) });
    }
    if apparmor_ok {
        definitions.push(("apparmor".into(), format!(
            "the worker changes to profile {AA_PROFILE} (`file,` and `deny {}/** r,`); unprotected = {}, allowed = {} (AppArmor checks every open of a confined task); denied = {} (EACCES)",
            p(&d.join("closed")), p(&unprotected), p(&secret), p(&closed)
        )));
        variants.push(Variant { name: "apparmor", attach: None, ops: confined_ops(&closed, libc::EACCES), wrap: Wrap::AppArmor });
    }

    let exe = std::env::current_exe().context("finding guard's own executable")?;
    let mut samples = vec![vec![Vec::new(); OPS.len()]; variants.len()];
    let mut confinement: Vec<(String, String)> = Vec::new();
    for round in 0..args.rounds {
        for j in 0..variants.len() {
            let vi = (j + round) % variants.len();
            let v = &variants[vi];
            // One worker per operation, for every variant alike.
            for (oi, op) in OPS.iter().enumerate() {
                let (spec, who, errno) = &v.ops[oi];
                cgroups.enter(who)?;
                if let Some((ki, prog)) = v.attach {
                    kernels[ki].attach(prog)?;
                }
                let out = spawn_worker(&exe, v, spec, args.iters, cpu);
                if let Some((ki, prog)) = v.attach {
                    kernels[ki].detach(prog)?;
                    bench::drain(&mut kernels[ki]);
                }
                let out = out.with_context(|| format!("variant {} {op} (round {round})", v.name))?;
                if !confinement.iter().any(|(n, _)| n == v.name) {
                    confinement.push((v.name.to_string(), out.confinement.clone()));
                }
                let m = out.ops.iter().find(|o| o.op == *op).with_context(|| format!("variant {}: the worker gave no {op}", v.name))?;
                if m.errno != *errno {
                    bail!(
                        "variant {}: the {op} open gave errno {} ({}), expected {errno} — the peer is not confining as set up",
                        v.name,
                        m.errno,
                        std::io::Error::from_raw_os_error(m.errno),
                    );
                }
                samples[vi][oi].push(m.ns);
            }
        }
    }
    cgroups.enter("outsider")?;

    // Static path counts from the loaded programs.
    let names = pathcount::HelperNames::from_kallsyms();
    let mut paths = Vec::new();
    let mut hot_path_check = String::from("FAILED: guard_file_open not found among the loaded programs");
    for (label, prog) in [(PROG_FILE_OPEN, PROG_FILE_OPEN), (PROG_EMPTY, PROG_EMPTY), ("systemd restrict_filesystems", "restrict_filesystems")] {
        let loaded = pathcount::loaded_programs(prog)?;
        let Some(l) = loaded.first() else {
            if prog == "restrict_filesystems" && !systemd_ok {
                continue;
            }
            bail!("no loaded program named {prog} (the kernel truncates names to 15 bytes)");
        };
        let pp = pathcount::loaded_paths(label, l, &names)?;
        if prog == PROG_FILE_OPEN {
            hot_path_check = check_hot_path(&pp);
        }
        paths.push(pp);
    }
    drop(cgroups);
    if systemd_ok {
        // SAFETY: unmounting our own mount.
        unsafe { libc::umount2(bench::cstr(Path::new(RAMFS)).as_ptr(), libc::MNT_DETACH) };
    }

    let med = |v: &Vec<f64>| Spread::of(v).map(|s| s.median).unwrap_or(f64::NAN);
    let mut rows = Vec::new();
    for (vi, v) in variants.iter().enumerate() {
        for (oi, op) in OPS.iter().enumerate() {
            let e = Spread::of(&samples[vi][oi]).context("no samples")?;
            rows.push(PeerRow {
                variant: v.name.to_string(),
                op,
                e2e_vs_baseline: e.median / med(&samples[0][oi]),
                e2e_vs_empty: e.median / med(&samples[1][oi]),
                e2e_ns: e,
                errno: v.ops[oi].2,
            });
        }
    }
    Ok(PeerReport {
        kernel: bench::uname_r(),
        lsm,
        systemd: systemd_version,
        rounds: args.rounds,
        iters: args.iters,
        rows,
        definitions,
        confinement,
        paths,
        missing,
        always_attached,
        hot_path_check,
    })
}

/// The unprotected path of the loaded `guard_file_open` must be exactly
/// one helper call, a lookup.
fn check_hot_path(pp: &pathcount::ProgramPaths) -> String {
    let Some(u) = pp.paths.iter().find(|r| r.outcome == pathcount::Outcome::Unprotected) else {
        return format!("FAILED: the loaded {} has no unprotected path", pp.program);
    };
    let lookup = u.helpers.len() == 1 && (u.helpers[0].contains("storage_get") || u.helpers[0].contains("map_lookup_elem"));
    // A walk that lost its way (e.g. a subprogram call followed to the
    // wrong place) shows as a denied path that never reaches the feed.
    let reports = pp
        .paths
        .iter()
        .find(|r| r.outcome == pathcount::Outcome::Denied)
        .is_some_and(|d| d.helpers.iter().any(|h| h.contains("ringbuf_reserve")));
    if !reports {
        return format!("FAILED: the walk of the loaded {} finds no denied path that reserves a record (bpf_ringbuf_reserve)", pp.program);
    }
    if u.helpers_min == 1 && u.helpers_max == 1 && lookup {
        format!("holds: the loaded {}'s unprotected path is {}..{} instructions and one helper call ({})", pp.program, u.insns_min, u.insns_max, u.helpers[0])
    } else {
        format!(
            "FAILED: the loaded {}'s unprotected path makes {}..{} helper calls ({}); it must be exactly one lookup",
            pp.program,
            u.helpers_min,
            u.helpers_max,
            u.helpers.join(", ")
        )
    }
}

fn spawn_worker(exe: &Path, v: &Variant, op: &str, iters: usize, cpu: usize) -> Result<WorkerOut> {
    let mut worker_args: Vec<String> = vec!["bench-worker".into(), "--iters".into(), iters.to_string(), "--cpu".into(), cpu.to_string(), "--op".into(), op.into()];
    let mut cmd = match &v.wrap {
        Wrap::Systemd(restrict) => {
            let mut c = Command::new("systemd-run");
            c.args(["--wait", "--pipe", "--quiet", "--collect"]);
            if *restrict {
                c.args(["-p", "RestrictFileSystems=~ramfs"]);
            }
            c.arg("--").arg(exe);
            c
        }
        _ => Command::new(exe),
    };
    if let Wrap::Landlock(allow) = &v.wrap {
        worker_args.push("--landlock".into());
        worker_args.push(allow.iter().map(|a| a.display().to_string()).collect::<Vec<_>>().join(","));
    }
    if let Wrap::AppArmor = v.wrap {
        worker_args.push("--apparmor".into());
        worker_args.push(AA_PROFILE.into());
    }
    let out = cmd.args(&worker_args).stdin(Stdio::null()).output().with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("the worker failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).with_context(|| format!("no JSON from the worker: {text:?}"))?;
    serde_json::from_str(line).with_context(|| format!("parsing the worker's JSON {line:?}"))
}

fn mount_ramfs(at: &Path) -> Result<()> {
    let src = CString::new("ramfs").unwrap();
    let target = bench::cstr(at);
    // SAFETY: valid C strings; no data.
    let r = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        bail!("mounting a ramfs on {}: {}", at.display(), std::io::Error::last_os_error());
    }
    Ok(())
}

/// Loads the AppArmor profile: every file allowed, reads below `closed` denied.
fn load_profile(closed: &Path) -> Result<()> {
    let text = format!(
        "profile {AA_PROFILE} flags=(attach_disconnected) {{\n  file,\n  capability,\n  deny {}/** r,\n}}\n",
        closed.display()
    );
    let file = std::env::temp_dir().join(format!("{AA_PROFILE}.profile"));
    std::fs::write(&file, text)?;
    let out = Command::new("apparmor_parser")
        .arg("-r")
        .arg(&file)
        .output()
        .context("running apparmor_parser (Debian package `apparmor`; xtask's rootfs includes it)")?;
    if !out.status.success() {
        bail!("apparmor_parser -r {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// systemd's `restrict_filesystems` programs loaded now, and whether a BPF
/// link attaches each: what every variant, baseline included, runs anyway.
fn attached_file_open_programs() -> Vec<String> {
    let linked = pathcount::linked_program_ids().unwrap_or_default();
    pathcount::loaded_programs("restrict_filesystems")
        .map(|v| {
            v.into_iter()
                .map(|p| format!("{} (id {}, {})", p.name, p.id, if linked.contains(&p.id) { "attached by a link" } else { "loaded, not attached" }))
                .collect()
        })
        .unwrap_or_default()
}

pub fn table(r: &PeerReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "kernel {} — LSMs {} — {} rounds × {} calls", r.kernel, r.lsm, r.rounds, r.iters);
    for row in &r.rows {
        let _ = writeln!(
            out,
            "{:<10} {:<12} {:>10.0} {:>8.3} {:>8.3}",
            row.variant, row.op, row.e2e_ns.median, row.e2e_vs_baseline, row.e2e_vs_empty
        );
    }
    for p in &r.paths {
        for row in &p.paths {
            let _ = writeln!(
                out,
                "{:<30} {:<12} insns {}..{} helpers {}..{} [{}]",
                p.program,
                row.outcome.name(),
                row.insns_min,
                row.insns_max,
                row.helpers_min,
                row.helpers_max,
                row.helpers.join(", ")
            );
        }
    }
    let _ = writeln!(out, "{}", r.hot_path_check);
    out
}
