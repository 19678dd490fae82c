//! `guard bench-host`: what guard costs every process on the host, one
//! hooked operation at a time (`ops`), not only `open()`.
//!
//! Variants, attached one at a time, in a rotated order every round:
//! - `baseline`: nothing attached;
//! - `floor`: a program that returns 0 on every hook guard attaches
//!   (`guard-ebpf/src/floor.rs`): what any BPF LSM pays there;
//! - `guard-N`: guard's programs on every hook, N protected files in a
//!   unit cgroup the worker is not in, guard's own executable trusted;
//! - `kernel-only`: `guard-1` with nobody reading its ring buffer, as when
//!   the agent is stopped and its pins keep enforcing;
//! - `prog-stats`: `guard-1` with the kernel's BPF run-time statistics on
//!   (`BPF_ENABLE_STATS`, what `guard run --prog-stats` holds for the
//!   per-hook metrics): two clock reads around every program run. Opt-in,
//!   so not judged against the budget; shown so that its price is known.
//!
//! The operations run in a worker (`bench-host-worker`): a copy of guard's
//! executable (another inode, so not trusted), in a cgroup of its own: a
//! bystander. Each sample is the fastest of `WINDOWS` back-to-back windows
//! of `iters / WINDOWS` calls: under TCG both vCPUs share one host thread,
//! so anything the other vCPU runs meanwhile (a kworker, an RCU callback,
//! the timer) stretches a window by its whole length; the fastest window is
//! the one it spared. Every figure is a median over rounds with a 95%
//! confidence interval from order statistics, and ratios are taken within
//! a round (the variants of one round ran back to back), then summarized
//! the same way.
//!
//! After the rounds, one pass with the kernel's BPF statistics on
//! attributes each operation to hooks (`run_cnt`, `run_time_ns` of every
//! program), and checks at run time that the bystander paths are the ones
//! taken: guard's counters and the policy's statistics do not move while
//! the worker runs every operation (no decision, tag, inheritance, record
//! or internal error), while each hook the workload reaches runs.

mod ops;
pub mod stats;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use aya::{
    programs::Lsm,
    Ebpf, EbpfLoader,
};
use clap::Args;
use guard_common::*;
use serde::{Deserialize, Serialize};

use crate::{
    bench::{self, BenchCgroups},
    kernel::{self, pathcount, trust::Exe, Kernel},
};
use stats::{Ci, Verdict};

pub use ops::OPS;

/// Windows per sample (see the module's documentation).
const WINDOWS: usize = 3;

#[derive(Args, Debug, Clone)]
pub struct HostArgs {
    /// Protected-file counts of the guard variants.
    #[arg(long, value_delimiter = ',', default_value = "1,100000")]
    pub files: Vec<usize>,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 15)]
    pub rounds: usize,
    /// Multiplies every operation's calls per measurement.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Only these operations (default: all).
    #[arg(long, value_delimiter = ',')]
    pub ops: Vec<String>,
    /// A quick run proving the benchmark and the bystander check work (3
    /// rounds, a twentieth of the calls, guard-1 only; timings are noise).
    #[arg(long)]
    pub short: bool,
    #[arg(long)]
    pub json: bool,
    /// Scratch directory (tmpfs).
    #[arg(long, default_value = "/tmp/guard-bench-host")]
    pub dir: PathBuf,
    /// A directory on a disk-backed filesystem, for the eviction operation
    /// (without it, `evict` is reported unavailable).
    #[arg(long)]
    pub disk_dir: Option<PathBuf>,
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub disk_dir: Option<PathBuf>,
    /// cgroup directory to join before anything else.
    #[arg(long)]
    pub cgroup: PathBuf,
    #[arg(long)]
    pub cpu: usize,
}

/// One hook's share of one operation (from the statistics pass).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookCost {
    pub hook: String,
    /// Program runs per operation.
    pub calls_per_op: f64,
    /// guard's program: ns per run (kernel statistics).
    pub guard_ns: f64,
    /// The floor program on the same hook: ns per run.
    pub floor_ns: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantRow {
    pub variant: String,
    /// ns per operation: median and its 95% interval over rounds.
    pub ns: Ci,
    /// Within-round ratio to `baseline`.
    pub x_base: Ci,
    /// Within-round ratio to `floor`.
    pub x_floor: Ci,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpRow {
    pub op: String,
    pub what: String,
    pub iters: usize,
    pub unavailable: Option<String>,
    pub variants: Vec<VariantRow>,
    pub hooks: Vec<HookCost>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Budget {
    pub op: String,
    pub line: String,
    pub ratio: Ci,
    pub limit: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BystanderCheck {
    pub held: bool,
    pub detail: String,
    /// Hooks that ran during the workload (guard-1's programs).
    pub hooks_reached: Vec<String>,
}

/// One hook's bystander path, counted on the loaded program's translated
/// instructions (`pathcount::count_bystander`): every lookup misses, the
/// previous verdict is 0, the program returns 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BystanderPath {
    pub hook: String,
    pub program: String,
    pub xlated_insns: usize,
    pub insns_min: usize,
    pub insns_max: usize,
    pub helpers_min: usize,
    pub helpers_max: usize,
    pub helpers: Vec<String>,
    pub budget_insns: usize,
    pub budget_helpers: usize,
    pub holds: bool,
    /// Why the walk failed, if it did (the check fails then too).
    pub error: Option<String>,
}

/// Per hook: the most instructions and helper calls its bystander path
/// may take, on any kernel of the matrix (the maximum over every path on
/// which all lookups miss and the hook lets the caller through; a path
/// that writes a record is not a bystander's). A bystander's path is what
/// every process on the host pays. The goal is one lookup or none with no
/// string work; the hooks that meet it today have budgets at that level
/// (`file_open`, `file_receive`, `inode_unlink`, `path_truncate`,
/// `inode_free_security`, `file_ioctl`, `file_ioctl_compat`,
/// `inode_follow_link`, and with no helper call at all `locked_down`,
/// `kernel_read_file`). The others are ceilings about 1.2
/// times the longest path the walk found on 6.1 and 7.2 after the task
/// storage and typed-load work (BENCHMARKS.md has the counts per kernel):
/// they stop a regression. What is left on them is mostly the paths of
/// the few processes they must look at closer (a task in a unit's cgroup,
/// a file on a filesystem that keeps rules, a `/proc` entry of a unit's
/// process), which the walk counts because it cannot know who calls.
pub const BYSTANDER_BUDGETS: [(&str, usize, usize); 29] = [
    ("bpf", 66, 3),
    ("bprm_check_security", 105, 9),
    ("task_fix_setuid", 21, 2),
    ("bpf_map", 84, 5),
    ("bpf_prog", 49, 1),
    ("sb_umount", 890, 36),
    ("task_alloc", 72, 6),
    ("sb_free_security", 10, 1),
    ("sb_alloc_security", 300, 23),
    ("move_mount", 46, 4),
    ("locked_down", 60, 0),
    ("kernel_read_file", 58, 0),
    ("cred_prepare", 33, 4),
    ("task_kill", 60, 2),
    ("file_send_sigiotask", 60, 2),
    ("task_setrlimit", 51, 3),
    ("perf_event_alloc", 212, 17),
    ("inode_free_security", 14, 1),
    ("d_instantiate", 352, 28),
    ("inode_rename", 219, 14),
    ("inode_unlink", 30, 1),
    ("path_truncate", 34, 1),
    ("ptrace_access_check", 84, 4),
    ("file_receive", 32, 1),
    ("file_open", 32, 1),
    // One compare of the ioctl number, the previous verdict passed on.
    ("file_ioctl", 8, 0),
    ("file_ioctl_compat", 8, 0),
    // The filesystem's magic (9 instructions), and on procfs one
    // inode-storage lookup (28 on 6.1).
    ("inode_follow_link", 34, 1),
    // A kernfs node that is a file: one typed load and a compare (9). A
    // directory (a new cgroup, a sysfs directory): the parent's id and two
    // hash lookups that miss (45 on 6.1 and 7.2).
    ("kernfs_init_security", 64, 3),
];

/// Arguments a bystander's call is known to have, by hook: (hook, argument
/// index, value). Its ioctl is not the one guard refuses (`DM_TABLE_STATUS`,
/// whose branch reads the caller's request): `TCGETS`, as a terminal's.
pub const BYSTANDER_ARGS: [(&str, usize, u64); 2] = [("file_ioctl", 1, 0x5401), ("file_ioctl_compat", 1, 0x5401)];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub kernel: String,
    pub cpus: usize,
    pub rounds: usize,
    pub scale: f64,
    pub variants: Vec<String>,
    pub ops: Vec<OpRow>,
    pub budget: Vec<Budget>,
    pub bystander: BystanderCheck,
    pub paths: Vec<BystanderPath>,
}

pub fn main(mut args: HostArgs) -> ExitCode {
    if args.short {
        args.rounds = args.rounds.min(3);
        args.scale = args.scale.min(0.05);
        args.files = vec![1];
    }
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap());
            } else {
                print!("{}", table(&report));
            }
            let over: Vec<&BystanderPath> = report.paths.iter().filter(|p| !p.holds).collect();
            for p in &over {
                eprintln!(
                    "bench-host: {}'s bystander path is over budget: {}..{} instructions (budget {}), {}..{} helper calls (budget {}) {}",
                    p.hook, p.insns_min, p.insns_max, p.budget_insns, p.helpers_min, p.helpers_max, p.budget_helpers,
                    p.error.as_deref().unwrap_or("")
                );
            }
            if !report.bystander.held {
                eprintln!("bench-host: the bystander check failed: {}", report.bystander.detail);
            }
            if report.bystander.held && over.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------ the worker

/// `guard bench-host-worker`: joins its cgroup, makes its scratch, then
/// answers `OP ITERS` lines with `ns` (or `error: ...`) until stdin closes.
pub fn worker(args: WorkerArgs) -> ExitCode {
    let res = (|| -> Result<()> {
        std::fs::write(args.cgroup.join("cgroup.procs"), std::process::id().to_string())
            .with_context(|| format!("joining {}", args.cgroup.display()))?;
        pin(args.cpu);
        let mut scratch = ops::Scratch::new(&args.dir, args.disk_dir.as_deref(), &args.cgroup)?;
        let unavailable: Vec<(String, String)> =
            OPS.iter().filter_map(|o| scratch.unavailable(o.name).map(|w| (o.name.to_string(), w))).collect();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string(&unavailable)?)?;
        out.flush()?;
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let (op, iters) = line.split_once(' ').context("expected OP ITERS")?;
            match scratch.time(op, iters.parse()?) {
                Ok(ns) => writeln!(out, "{ns}")?,
                Err(e) => writeln!(out, "error: {e:#}")?,
            }
            out.flush()?;
        }
        Ok(())
    })();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-host-worker: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t for our own thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    unavailable: Vec<(String, String)>,
}

impl Worker {
    fn spawn(exe: &Path, args: &HostArgs, cgroup: &Path) -> Result<Self> {
        // SAFETY: reads this thread's CPU.
        let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
        let mut cmd = Command::new(exe);
        cmd.arg("bench-host-worker")
            .arg("--dir")
            .arg(args.dir.join("work"))
            .arg("--cgroup")
            .arg(cgroup)
            .arg("--cpu")
            .arg(cpu.to_string());
        if let Some(d) = &args.disk_dir {
            cmd.arg("--disk-dir").arg(d);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        let unavailable = serde_json::from_str(first.trim()).with_context(|| format!("the worker did not start (said {first:?})"))?;
        Ok(Self { child, stdin, stdout, unavailable })
    }

    /// ns per call: the fastest of `WINDOWS` windows of `iters / WINDOWS`
    /// calls each (see the module's documentation).
    fn fastest(&mut self, op: &str, iters: usize) -> Result<f64> {
        let per = iters.div_ceil(WINDOWS).max(1);
        let mut best = f64::INFINITY;
        for _ in 0..WINDOWS {
            best = best.min(self.time(op, per)?);
        }
        Ok(best)
    }

    fn time(&mut self, op: &str, iters: usize) -> Result<f64> {
        writeln!(self.stdin, "{op} {iters}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let line = line.trim();
        if let Some(e) = line.strip_prefix("error: ") {
            bail!("{op}: {e}");
        }
        line.parse().with_context(|| format!("{op}: the worker said {line:?}"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ the variants

/// The floor programs, one per hook guard attaches, loaded from guard's object.
struct Floor {
    ebpf: Ebpf,
    /// (hook, ELF program, program id)
    progs: Vec<(&'static str, String, u32)>,
    links: Vec<(String, aya::programs::lsm::LsmLinkId)>,
}

impl Floor {
    fn load(target: &kernel::Target) -> Result<Self> {
        let btf = aya::Btf::from_sys_fs().context("reading kernel BTF")?;
        let mut loader = EbpfLoader::new();
        // TASK_MARKS is task storage, which aya creates but has no type for.
        loader.allow_unsupported_maps();
        loader.btf(Some(&btf));
        loader.override_global(GLOBAL_LAYOUT, &target.layout, true);
        loader.map_max_entries(MAP_EVENTS, 1 << 16);
        let mut ebpf = loader.load(kernel::OBJECT).context("loading guard's object for the floor programs")?;
        let mut progs = Vec::new();
        for (_, hook) in ENFORCING_PROGRAMS {
            let elf = format!("{FLOOR_PREFIX}{hook}");
            let prog: &mut Lsm = ebpf
                .program_mut(&elf)
                .with_context(|| format!("floor program {elf} missing from the object"))?
                .try_into()?;
            prog.load(hook, &btf).with_context(|| format!("loading {elf}"))?;
            progs.push((hook, elf, prog.info()?.id()));
        }
        Ok(Self { ebpf, progs, links: Vec::new() })
    }

    fn attach(&mut self) -> Result<()> {
        for (_, elf, _) in &self.progs {
            let prog: &mut Lsm = self.ebpf.program_mut(elf).context("floor program")?.try_into()?;
            self.links.push((elf.clone(), prog.attach()?));
        }
        Ok(())
    }

    fn detach(&mut self) -> Result<()> {
        for (elf, id) in std::mem::take(&mut self.links) {
            let prog: &mut Lsm = self.ebpf.program_mut(&elf).context("floor program")?.try_into()?;
            prog.detach(id)?;
        }
        Ok(())
    }
}

enum Attach {
    None,
    Floor,
    /// Index into the guard kernels; whether a reader drains its ring buffer.
    Guard(usize, bool),
}

struct Variant {
    name: String,
    attach: Attach,
    /// The kernel's BPF run-time statistics on while it is timed.
    stats: bool,
}

/// (hook, program id) of every program a variant attaches.
fn program_ids(v: &Variant, floor: &Floor, guards: &[Kernel]) -> Vec<(String, u32)> {
    match v.attach {
        Attach::None => Vec::new(),
        Attach::Floor => floor.progs.iter().map(|(h, _, id)| (h.to_string(), *id)).collect(),
        Attach::Guard(ki, _) => ENFORCING_PROGRAMS
            .iter()
            .filter_map(|(name, hook)| guards[ki].programs.iter().find(|(n, _)| n == name).map(|(_, id)| (hook.to_string(), *id)))
            .collect(),
    }
}

/// (run count, run ns) of each program id.
fn snapshot(ids: &[(String, u32)]) -> Vec<(u64, u64)> {
    let infos: Vec<_> = aya::programs::loaded_programs().filter_map(|p| p.ok()).collect();
    ids.iter()
        .map(|(_, id)| {
            infos
                .iter()
                .find(|p| p.id() == *id)
                .map_or((0, 0), |p| (p.run_count(), p.run_time().as_nanos() as u64))
        })
        .collect()
}

fn run(args: &HostArgs) -> Result<Report> {
    bench::preflight("bench-host", &args.cgroup_root)?;
    let ops: Vec<&ops::Op> = OPS.iter().filter(|o| args.ops.is_empty() || args.ops.iter().any(|n| n == o.name)).collect();
    if ops.is_empty() {
        bail!("--ops: none of {:?} is an operation (known: {})", args.ops, OPS.iter().map(|o| o.name).collect::<Vec<_>>().join(", "));
    }
    bench::pin_to_current_cpu();
    let cgroups = BenchCgroups::new(&args.cgroup_root)?;
    let target = kernel::Target::running()?;
    std::fs::create_dir_all(&args.dir)?;

    // The worker: guard's executable under another inode.
    let me = std::env::current_exe().context("finding guard's own executable")?;
    let worker_exe = args.dir.join("bench-host-worker");
    let _ = std::fs::remove_file(&worker_exe);
    std::fs::copy(&me, &worker_exe).with_context(|| format!("copying {} to {}", me.display(), worker_exe.display()))?;
    let mut worker = Worker::spawn(&worker_exe, args, &cgroups.root.join("outsider"))?;

    let mut floor = Floor::load(&target)?;
    let guard_exe = Exe::of(&me)?;
    let mut guards = Vec::new();
    let mut variants = vec![
        Variant { name: "baseline".into(), attach: Attach::None, stats: false },
        Variant { name: "floor".into(), attach: Attach::Floor, stats: false },
    ];
    for &n in &args.files {
        let paths = bench::protected_files(&args.dir, n)?;
        let t = Instant::now();
        let (mut k, tagged) = bench::guard_kernel(&target, &args.cgroup_root, n, paths)?;
        // This process attaches, detaches and reads statistics while guard's
        // `bpf` hooks run: it is guard, as the agent is.
        k.trust_exe(&guard_exe, TRUST_GUARD)?;
        eprintln!("bench-host: guard-{n}: {tagged} files tagged in {} ms", t.elapsed().as_millis());
        guards.push(k);
        variants.push(Variant { name: format!("guard-{n}"), attach: Attach::Guard(guards.len() - 1, true), stats: false });
        if n == 1 {
            variants.push(Variant { name: "kernel-only".into(), attach: Attach::Guard(guards.len() - 1, false), stats: false });
            variants.push(Variant { name: "prog-stats".into(), attach: Attach::Guard(guards.len() - 1, true), stats: true });
        }
    }
    let guard1 = variants.iter().position(|v| matches!(v.attach, Attach::Guard(_, true))).context("no guard variant")?;
    let paths = bystander_paths(&guards[0]);

    let iters = |o: &ops::Op| ((o.iters as f64 * args.scale).round() as usize).max(1);
    let unavailable = |o: &ops::Op| worker.unavailable.iter().find(|(n, _)| n == o.name).map(|(_, w)| w.clone());
    let unavail: Vec<Option<String>> = ops.iter().map(|o| unavailable(o)).collect();
    // samples[variant][op][round]
    let mut samples = vec![vec![vec![f64::NAN; args.rounds]; ops.len()]; variants.len()];
    let started = Instant::now();
    for round in 0..args.rounds {
        for j in 0..variants.len() {
            let vi = (j + round) % variants.len();
            let stats = variants[vi].stats.then(kernel::enable_runtime_stats).transpose()?;
            attach(&variants[vi], &mut floor, &mut guards)?;
            for (oi, o) in ops.iter().enumerate() {
                if unavail[oi].is_some() {
                    continue;
                }
                let ns = worker.fastest(o.name, iters(o));
                if let Attach::Guard(ki, true) = variants[vi].attach {
                    bench::drain(&mut guards[ki]);
                }
                match ns {
                    Ok(ns) => samples[vi][oi][round] = ns,
                    Err(e) => {
                        detach(&variants[vi], &mut floor, &mut guards)?;
                        return Err(e.context(format!("variant {}", variants[vi].name)));
                    }
                }
            }
            detach(&variants[vi], &mut floor, &mut guards)?;
            drop(stats);
        }
        eprintln!("bench-host: round {}/{} done ({:.0} s)", round + 1, args.rounds, started.elapsed().as_secs_f64());
    }

    // Attribution and the bystander check: one pass per variant with programs, statistics on.
    let stats_fd = kernel::enable_runtime_stats()?;
    let mut per_hook: Vec<Vec<(String, f64, f64, f64)>> = vec![Vec::new(); ops.len()];
    let (floor_v, guard_v) = (1, guard1);
    let mut attributed: [Vec<Vec<(String, f64, f64)>>; 2] = [vec![Vec::new(); ops.len()], vec![Vec::new(); ops.len()]];
    let mut bystander = BystanderCheck { held: true, detail: String::new(), hooks_reached: Vec::new() };
    for (slot, vi) in [floor_v, guard_v].into_iter().enumerate() {
        let v = &variants[vi];
        let ids = program_ids(v, &floor, &guards);
        let ki = match v.attach {
            Attach::Guard(ki, _) => Some(ki),
            _ => None,
        };
        let before = ki.map(|ki| guard_state(&guards[ki])).transpose()?;
        attach(v, &mut floor, &mut guards)?;
        // What reading the statistics itself costs the programs (this
        // process's own bpf() calls), taken off every operation's share.
        let c0 = snapshot(&ids);
        let c1 = snapshot(&ids);
        let own: Vec<u64> = c0.iter().zip(&c1).map(|(a, b)| b.0 - a.0).collect();
        for (oi, o) in ops.iter().enumerate() {
            if unavail[oi].is_some() {
                continue;
            }
            let n = iters(o);
            let s0 = snapshot(&ids);
            worker.time(o.name, n)?;
            let s1 = snapshot(&ids);
            for (i, (hook, _)) in ids.iter().enumerate() {
                let (dc, dt) = (s1[i].0 - s0[i].0, s1[i].1 - s0[i].1);
                // (The time of the snapshot's own runs stays in: it is small
                // beside the operation's, and cannot be told apart.)
                let dc = dc.saturating_sub(own[i]);
                if dc > 0 {
                    attributed[slot][oi].push((hook.clone(), dc as f64 / n as f64, dt as f64 / dc as f64));
                }
            }
        }
        detach(v, &mut floor, &mut guards)?;
        if let (Some(ki), Some(before)) = (ki, before) {
            let after = guard_state(&guards[ki])?;
            let moved: Vec<String> = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| b.1 != a.1)
                .map(|(b, a)| format!("{} {} -> {}", b.0, b.1, a.1))
                .collect();
            if !moved.is_empty() {
                bystander.held = false;
                bystander.detail = format!("guard's state moved while only a bystander ran: {}", moved.join(", "));
            }
        }
    }
    drop(stats_fd);
    for (oi, hooks) in attributed[1].iter().enumerate() {
        for (hook, calls, ns) in hooks {
            let floor_ns = attributed[0][oi].iter().find(|(h, _, _)| h == hook).map_or(f64::NAN, |(_, _, ns)| *ns);
            per_hook[oi].push((hook.clone(), *calls, *ns, floor_ns));
            if !bystander.hooks_reached.contains(hook) {
                bystander.hooks_reached.push(hook.clone());
            }
        }
    }
    if bystander.held {
        bystander.detail = format!(
            "{} of guard's {} hooks ran during the workload; no counter, statistic or record of guard moved",
            bystander.hooks_reached.len(),
            ENFORCING_PROGRAMS.len()
        );
    }
    drop(worker);
    cgroups.enter("outsider")?;
    drop(cgroups);

    let mut rows = Vec::new();
    let mut budget = Vec::new();
    for (oi, o) in ops.iter().enumerate() {
        let mut vrows = Vec::new();
        if unavail[oi].is_none() {
            for (vi, v) in variants.iter().enumerate() {
                let s = &samples[vi][oi];
                let ratio = |base: usize| -> Vec<f64> { s.iter().zip(&samples[base][oi]).map(|(a, b)| a / b).collect() };
                vrows.push(VariantRow { variant: v.name.clone(), ns: Ci::of(s), x_base: Ci::of(&ratio(0)), x_floor: Ci::of(&ratio(1)) });
            }
            for v in vrows.iter().filter(|v| v.variant.starts_with("guard-") || v.variant == "kernel-only") {
                for (against, ratio, limit) in [("floor", &v.x_floor, 1.05), ("baseline", &v.x_base, 1.15)] {
                    budget.push(Budget {
                        op: o.name.into(),
                        line: format!("{} vs {against}", v.variant),
                        ratio: ratio.clone(),
                        limit,
                        verdict: Verdict::judge(ratio, limit),
                    });
                }
            }
        }
        rows.push(OpRow {
            op: o.name.into(),
            what: o.what.into(),
            iters: iters(o),
            unavailable: unavail[oi].clone(),
            variants: vrows,
            hooks: per_hook[oi]
                .iter()
                .map(|(hook, calls, g, f)| HookCost { hook: hook.clone(), calls_per_op: *calls, guard_ns: *g, floor_ns: *f })
                .collect(),
        });
    }
    Ok(Report {
        kernel: bench::uname_r(),
        cpus: ops::online_cpus(),
        rounds: args.rounds,
        scale: args.scale,
        variants: variants.iter().map(|v| v.name.clone()).collect(),
        ops: rows,
        budget,
        bystander,
        paths,
    })
}

/// Every enforcing program's bystander path as loaded in `k`, against its budget.
fn bystander_paths(k: &Kernel) -> Vec<BystanderPath> {
    let names = pathcount::HelperNames::from_kallsyms();
    ENFORCING_PROGRAMS
        .iter()
        .map(|(name, hook)| {
            let (budget_insns, budget_helpers) =
                BYSTANDER_BUDGETS.iter().find(|(h, _, _)| h == hook).map_or((0, 0), |(_, i, h)| (*i, *h));
            let mut p = BystanderPath {
                hook: hook.to_string(),
                program: name.to_string(),
                xlated_insns: 0,
                insns_min: 0,
                insns_max: 0,
                helpers_min: 0,
                helpers_max: 0,
                helpers: Vec::new(),
                budget_insns,
                budget_helpers,
                holds: false,
                error: None,
            };
            let res = (|| -> Result<()> {
                let elf = k.elf_of(name)?;
                let params = PROGRAM_VARIANTS.iter().find(|(_, e, _)| *e == elf).map(|(_, _, n)| *n).context("no parameter count")?;
                let id = k.programs.iter().find(|(n, _)| n == name).map(|(_, id)| *id).context("not loaded")?;
                let l = pathcount::loaded_program(id)?;
                p.xlated_insns = l.xlated.len();
                let mut args = vec![None; params];
                for &(_, i, v) in BYSTANDER_ARGS.iter().filter(|(h, _, _)| h == hook) {
                    args[i] = Some(v);
                }
                args.push(Some(0));
                let is_record = |imm: i32| names.name(imm).is_some_and(|n| n.contains("ringbuf") || n.contains("perf_event_output"));
                let s = pathcount::count_bystander(&l.xlated, &args, &|imm| names.is_lookup(imm), &is_record)?;
                let u = s.get(&pathcount::Outcome::Unprotected).context("no path on which a bystander is let through")?;
                p.insns_min = u.insns_min;
                p.insns_max = u.insns_max;
                p.helpers_min = u.helpers_min;
                p.helpers_max = u.helpers_max;
                p.helpers = u.helper_ids.iter().map(|&h| names.label(h)).collect();
                Ok(())
            })();
            match res {
                Ok(()) => p.holds = p.insns_max <= p.budget_insns && p.helpers_max <= p.budget_helpers,
                // A walk that cannot finish is a failed check, on every
                // hook: a path no one can count has no bound.
                Err(e) => p.error = Some(format!("{e:#}")),
            }
            p
        })
        .collect()
}

/// guard's counters and policy 0's statistics, named.
fn guard_state(k: &Kernel) -> Result<Vec<(String, u64)>> {
    let mut out: Vec<(String, u64)> = k.counters()?.iter().enumerate().map(|(i, c)| (format!("counter {i}"), *c)).collect();
    let s = k.policy_stats(0)?;
    for (name, v) in [
        ("inherited", s.inherited),
        ("deleted", s.deleted),
        ("evicted", s.evicted),
        ("restored", s.restored),
        ("allowed", s.allowed),
        ("denied", s.denied),
        ("join_refused", s.join_refused),
        ("credentials", s.credentials),
    ] {
        out.push((format!("policy {name}"), v));
    }
    Ok(out)
}

fn attach(v: &Variant, floor: &mut Floor, guards: &mut [Kernel]) -> Result<()> {
    match v.attach {
        Attach::None => Ok(()),
        Attach::Floor => floor.attach(),
        Attach::Guard(ki, _) => {
            for (name, hook) in ENFORCING_PROGRAMS {
                if let Err(e) = guards[ki].attach(name) {
                    guards[ki].detach_all();
                    return Err(e.context(format!("attaching {name} to {hook}")));
                }
            }
            Ok(())
        }
    }
}

fn detach(v: &Variant, floor: &mut Floor, guards: &mut [Kernel]) -> Result<()> {
    match v.attach {
        Attach::None => Ok(()),
        Attach::Floor => floor.detach(),
        Attach::Guard(ki, _) => {
            guards[ki].detach_all();
            Ok(())
        }
    }
}

pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kernel {} — {} CPUs, {} interleaved rounds, calls × {}; medians [95% interval]",
        r.kernel, r.cpus, r.rounds, r.scale
    );
    for o in &r.ops {
        if let Some(why) = &o.unavailable {
            let _ = writeln!(out, "{}: unavailable ({why})", o.op);
            continue;
        }
        let _ = writeln!(out, "{} — {} ({} calls)", o.op, o.what, o.iters);
        for v in &o.variants {
            let _ = writeln!(out, "  {:<13} {:>10.0} ns  ×base {}  ×floor {}", v.variant, v.ns.median, v.x_base, v.x_floor);
        }
        let hooks: Vec<String> = o
            .hooks
            .iter()
            .map(|h| format!("{} ×{:.2} ({:.0} ns; floor {:.0})", h.hook, h.calls_per_op, h.guard_ns, h.floor_ns))
            .collect();
        let _ = writeln!(out, "  hooks: {}", if hooks.is_empty() { "none".into() } else { hooks.join(", ") });
    }
    let _ = writeln!(out, "bystander check: {} — {}", if r.bystander.held { "held" } else { "FAILED" }, r.bystander.detail);
    let _ = writeln!(out, "bystander paths (loaded programs; every lookup misses, verdict 0):");
    for p in &r.paths {
        let _ = writeln!(
            out,
            "  [{}] {:<20} {}..{} insns (budget {}), {}..{} helpers (budget {}): {}{}",
            if p.holds { "holds" } else { "OVER" },
            p.hook,
            p.insns_min,
            p.insns_max,
            p.budget_insns,
            p.helpers_min,
            p.helpers_max,
            p.budget_helpers,
            p.helpers.join(", "),
            p.error.as_deref().map(|e| format!(" (walk failed: {e})")).unwrap_or_default()
        );
    }
    let _ = writeln!(out, "budget (judged on the interval):");
    for b in &r.budget {
        let _ = writeln!(out, "  [{}] {} {}: {} (limit {:.2})", b.verdict.name(), b.op, b.line, b.ratio, b.limit);
    }
    out
}
