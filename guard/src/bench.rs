//! `guard bench`: what guard costs each `open()`, measured side by side.
//!
//! Variants, all loaded at once and attached one at a time:
//! - `baseline`: no LSM program attached;
//! - `empty`: a `file_open` program that only passes the verdict on (the floor);
//! - `guard-N`: guard's `file_open` with N protected files (separate maps each).
//!
//! Operations: `unprotected` (the hot path: a file no policy names),
//! `allowed` (the owner opens a protected file), `denied` (an outsider does;
//! the record goes to the ring buffer, which is drained between passes).
//!
//! Each round visits every variant in a rotated order (A/B/C, B/C/A, ...)
//! so drift in the machine hits all of them alike. End-to-end timings run
//! with the kernel's BPF statistics off (they add two clock reads per call);
//! the program's own time per call comes from a second pass with them on.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::{bail, Context, Result};
use clap::Args;
use guard_common::*;
use serde::Serialize;

use crate::{
    enforce::Enforcer,
    kernel::{self, Kernel},
    policy::{Mode, Policy, PolicySet},
};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Protected-file counts to compare.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,100000")]
    pub files: Vec<usize>,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 15)]
    pub rounds: usize,
    /// open()+close() calls per measurement.
    #[arg(long, default_value_t = 20_000)]
    pub iters: usize,
    /// A quick run proving the benchmark works end to end (timings meaningless).
    #[arg(long)]
    pub short: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where to create the benchmark's files (a tmpfs is best).
    #[arg(long, default_value = "/tmp/guard-bench")]
    pub dir: PathBuf,
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
}

const OPS: [&str; 3] = ["unprotected", "allowed", "denied"];

#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub(crate) fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        Some(Self { median: q(0.5), p25: q(0.25), p75: q(0.75), min: s[0], max: s[s.len() - 1] })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub variant: String,
    pub op: &'static str,
    /// ns per open()+close() (open() alone when denied).
    pub e2e_ns: Spread,
    pub e2e_vs_baseline: f64,
    pub e2e_vs_empty: f64,
    /// The program's own ns per call (kernel run-time stats); none for baseline.
    pub prog_ns: Option<Spread>,
    pub prog_vs_empty: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub line: String,
    pub value: f64,
    pub limit: f64,
    pub holds: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel: String,
    pub rounds: usize,
    pub iters: usize,
    pub files: Vec<usize>,
    pub rows: Vec<Row>,
    pub budget: Vec<Budget>,
}

pub fn main(mut args: BenchArgs) -> ExitCode {
    if args.short {
        args.rounds = args.rounds.min(3);
        args.iters = args.iters.min(2000);
        args.files.retain(|&n| n <= 1000);
        if args.files.is_empty() {
            args.files = vec![1];
        }
    }
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap());
            } else {
                print!("{}", table(&report));
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
    name: String,
    /// (kernel, program attached for this variant)
    kernel: Option<(usize, &'static str)>,
    secret: Option<CString>,
}

/// The benchmark's own cgroups; removed again on drop.
pub(crate) struct BenchCgroups {
    pub(crate) root: PathBuf,
    original: PathBuf,
}

impl BenchCgroups {
    pub(crate) fn new(cgroup_root: &Path) -> Result<Self> {
        let root = cgroup_root.join("guard-bench");
        for sub in ["owner", "outsider"] {
            std::fs::create_dir_all(root.join(sub)).with_context(|| format!("creating {}/{sub}", root.display()))?;
        }
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let rel = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim().to_string();
        Ok(Self { original: cgroup_root.join(rel.trim_start_matches('/')), root })
    }

    pub(crate) fn enter(&self, sub: &str) -> Result<()> {
        let procs = self.root.join(sub).join("cgroup.procs");
        std::fs::write(&procs, std::process::id().to_string()).with_context(|| format!("joining {}", procs.display()))
    }
}

impl Drop for BenchCgroups {
    fn drop(&mut self) {
        let _ = std::fs::write(self.original.join("cgroup.procs"), std::process::id().to_string());
        for sub in ["owner", "outsider"] {
            let _ = std::fs::remove_dir(self.root.join(sub));
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// A benchmark's preconditions: root, and every kernel feature guard needs
/// (each missing one named with its remedy).
pub fn preflight(command: &str, cgroup_root: &Path) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("guard {command} loads BPF LSM programs: run it as root");
    }
    if let Err(missing) = kernel::preflight::check(&kernel::preflight::SysPaths { cgroup_root: cgroup_root.to_path_buf(), ..Default::default() }) {
        bail!("{}", missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n"));
    }
    Ok(())
}

fn run(args: &BenchArgs) -> Result<Report> {
    preflight("bench", &args.cgroup_root)?;
    pin_to_current_cpu();
    let cgroups = BenchCgroups::new(&args.cgroup_root)?;
    let target = kernel::Target::running()?;

    std::fs::create_dir_all(&args.dir)?;
    let unprotected = args.dir.join("unprotected");
    std::fs::write(&unprotected, b"x")?;
    let unprotected = cstr(&unprotected);

    // One Kernel (own maps) per protected-file count, plus one for `empty`.
    let mut kernels = Vec::new();
    let mut variants = vec![Variant {
        name: "baseline".into(),
        kernel: None,
        secret: None,
    }];
    let mut floor = Kernel::load(&target, 1 << 16, DEFAULT_MAX_BURSTS, true)?;
    floor.events = None;
    kernels.push(floor);
    variants.push(Variant { name: "empty".into(), kernel: Some((0, PROG_EMPTY)), secret: None });
    for &n in &args.files {
        let paths = protected_files(&args.dir, n)?;
        let t = Instant::now();
        let (k, tagged) = guard_kernel(&target, &args.cgroup_root, n, paths.clone())?;
        eprintln!(
            "bench: guard-{n}: {tagged} files tagged in {} ms",
            t.elapsed().as_millis()
        );
        kernels.push(k);
        variants.push(Variant {
            name: format!("guard-{n}"),
            kernel: Some((kernels.len() - 1, PROG_FILE_OPEN)),
            secret: Some(cstr(&paths[0])),
        });
    }
    let any_secret = variants.iter().find_map(|v| v.secret.clone()).context("no protected files")?;

    // samples[variant][op] -> (e2e ns/call, prog ns/call)
    let mut e2e = vec![vec![Vec::new(); OPS.len()]; variants.len()];
    let mut prog = vec![vec![Vec::new(); OPS.len()]; variants.len()];
    for round in 0..args.rounds {
        for j in 0..variants.len() {
            let vi = (j + round) % variants.len();
            let v = &variants[vi];
            let secret = v.secret.as_ref().unwrap_or(&any_secret);
            for (oi, op) in OPS.iter().enumerate() {
                let (path, who) = match *op {
                    "unprotected" => (&unprotected, "outsider"),
                    "allowed" => (secret, "owner"),
                    _ => (secret, "outsider"),
                };
                cgroups.enter(who)?;
                // Pass 1: end to end, statistics off.
                if let Some((ki, name)) = v.kernel {
                    kernels[ki].attach(name)?;
                }
                let ns = time_opens(path, args.iters);
                // Pass 2: the program's own time, statistics on.
                if let Some((ki, name)) = v.kernel {
                    let stats = kernel::enable_runtime_stats()?;
                    let (c0, t0) = kernels[ki].prog_stats(name)?;
                    time_opens(path, args.iters);
                    let (c1, t1) = kernels[ki].prog_stats(name)?;
                    drop(stats);
                    kernels[ki].detach(name)?;
                    if c1 > c0 {
                        prog[vi][oi].push((t1 - t0) as f64 / (c1 - c0) as f64);
                    }
                    drain(&mut kernels[ki]);
                }
                e2e[vi][oi].push(ns);
            }
        }
    }
    cgroups.enter("outsider")?;
    drop(cgroups);

    let med = |v: &Vec<f64>| Spread::of(v).map(|s| s.median).unwrap_or(f64::NAN);
    let mut rows = Vec::new();
    for (vi, v) in variants.iter().enumerate() {
        for (oi, op) in OPS.iter().enumerate() {
            let e = Spread::of(&e2e[vi][oi]).context("no samples")?;
            let p = Spread::of(&prog[vi][oi]);
            rows.push(Row {
                variant: v.name.clone(),
                op,
                e2e_vs_baseline: e.median / med(&e2e[0][oi]),
                e2e_vs_empty: e.median / med(&e2e[1][oi]),
                prog_vs_empty: p.as_ref().map(|p| p.median / med(&prog[1][oi])),
                e2e_ns: e,
                prog_ns: p,
            });
        }
    }
    let mut budget = Vec::new();
    for &n in &args.files {
        let name = format!("guard-{n}");
        if let Some(r) = rows.iter().find(|r| r.variant == name && r.op == "unprotected") {
            if let Some(ratio) = r.prog_vs_empty {
                budget.push(Budget {
                    line: format!("hot path, program time vs empty program, {n} protected files"),
                    value: ratio,
                    limit: 1.5,
                    holds: ratio <= 1.5,
                });
            }
            if n == *args.files.iter().max().unwrap() {
                budget.push(Budget {
                    line: format!("hot path, open()+close() vs baseline, {n} protected files"),
                    value: r.e2e_vs_baseline,
                    limit: 1.03,
                    holds: r.e2e_vs_baseline <= 1.03,
                });
            }
        }
    }
    Ok(Report {
        kernel: uname_r(),
        rounds: args.rounds,
        iters: args.iters,
        files: args.files.clone(),
        rows,
        budget,
    })
}

/// `n` files for guard-`n` to protect, made once under `dir/protected-n`.
pub fn protected_files(dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let dir = dir.join(format!("protected-{n}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let p = dir.join(format!("f{i}"));
        if !p.exists() {
            std::fs::write(&p, b"secret")?;
        }
        paths.push(p);
    }
    Ok(paths)
}

/// A guard `Kernel` (own maps) protecting `paths` for root in the
/// `guard-bench/owner` cgroup: everyone else is an outsider. Returns it with
/// the number of files tagged.
pub(crate) fn guard_kernel(
    target: &kernel::Target,
    cgroup_root: &Path,
    n: usize,
    paths: Vec<PathBuf>,
) -> Result<(Kernel, usize)> {
    let mut k = Kernel::load(target, 1 << 22, DEFAULT_MAX_BURSTS, true)?;
    let policy = Policy {
        id: 0,
        name: format!("bench-{n}"),
        source: PathBuf::from("<bench>"),
        unit: "guard-bench.scope".into(),
        cgroup: Some("/guard-bench/owner".into()),
        mode: Mode::Enforce,
        allow_uids: vec![0],
        allow_users: vec!["0".into()],
        unit_user: false,
        protect: paths,
        setup_only: Vec::new(),
        executables: Vec::new(),
        rate_per_sec: 1_000_000,
        rate_burst: 1_000_000,
        keep_cores: false,
    };
    let set = PolicySet { policies: vec![policy], warnings: vec![] };
    let mut enforcer = Enforcer::new(&set, cgroup_root, 1);
    enforcer.install(&mut k)?;
    enforcer.activate(&mut k)?;
    Ok((k, enforcer.tagged_total()))
}

/// Keeps the benchmark on one CPU: migrations between CPUs (and, in a VM,
/// between vCPU threads) are noise that hits variants unevenly.
pub(crate) fn pin_to_current_cpu() {
    // SAFETY: plain syscalls on our own thread with a zeroed cpu_set_t.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu >= 0 {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// Mean ns per open()+close() over `iters` calls.
pub(crate) fn time_opens(path: &CString, iters: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        // SAFETY: valid NUL-terminated path; fd closed right away.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            unsafe { libc::close(fd) };
        }
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// Empties a guard variant's ring buffer so the next denied pass has room.
pub(crate) fn drain(k: &mut Kernel) {
    if let Some(ring) = k.events.as_mut() {
        while ring.next().is_some() {}
    }
}

pub(crate) fn cstr(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

pub(crate) fn uname_r() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "kernel {} — {} interleaved rounds × {} calls per measurement", r.kernel, r.rounds, r.iters);
    let _ = writeln!(
        out,
        "{:<14} {:<12} {:>10} {:>21} {:>8} {:>8} {:>10} {:>8}",
        "variant", "op", "e2e ns", "p25..p75", "×base", "×empty", "prog ns", "×empty"
    );
    for row in &r.rows {
        let (pn, pr) = match (&row.prog_ns, row.prog_vs_empty) {
            (Some(p), Some(x)) => (format!("{:.1}", p.median), format!("{x:.2}")),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:<14} {:<12} {:>10.0} {:>21} {:>8.3} {:>8.3} {:>10} {:>8}",
            row.variant,
            row.op,
            row.e2e_ns.median,
            format!("{:.0}..{:.0}", row.e2e_ns.p25, row.e2e_ns.p75),
            row.e2e_vs_baseline,
            row.e2e_vs_empty,
            pn,
            pr
        );
    }
    let _ = writeln!(out, "budget:");
    for b in &r.budget {
        let _ = writeln!(
            out,
            "  [{}] {}: {:.3} (limit {:.2})",
            if b.holds { "holds" } else { "MISSED" },
            b.line,
            b.value,
            b.limit
        );
    }
    out
}
