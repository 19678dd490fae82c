//! `cargo xtask <task>`: guard's build, VM, test and bench tasks.
//!
//! Every task installs what it is missing first (as root; otherwise it prints
//! the commands), and says what it is doing. Kernel-side behaviour is only
//! ever verified in QEMU (TCG) guests booting Debian's own kernels: the
//! machines this is developed on refuse BPF LSM loads on the host.

mod deb;
mod exec;
mod guest;
mod initramfs;
mod kernels;
mod promtool;
mod rootfs;
mod setup;
mod vm;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use exec::exec;
use kernels::Kernel;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "guard's build, VM, test and benchmark tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (apt packages, bpf-linker).
    Setup,
    /// Build the eBPF object and static guard and vm-tests binaries.
    Build,
    /// Build the Debian package (cargo-deb) into target/deb: the static
    /// guard, guard.service, man pages and completions, example policies.
    Deb {
        /// The package version with its revision (default: the crate's, -1).
        #[arg(long)]
        deb_version: Option<String>,
    },
    /// Boot real systemd in a VM: guard protects a unit's credential; shows an
    /// allowed open, a denied open and its denial record, and a restart.
    Demo {
        #[arg(long, default_value = kernels::BOOKWORM)]
        kernel: String,
    },
    /// Every test: host unit tests, then on each kernel the scenario suite,
    /// the systemd suite and a short benchmark run.
    Test {
        /// Only this kernel (bookworm-6.1, trixie-6.12 or forky-7.2).
        #[arg(long)]
        kernel: Option<String>,
        /// Skip the host unit tests.
        #[arg(long)]
        skip_host: bool,
        /// Only these suite scenarios (comma-separated), e.g. 2-login-user-denied;
        /// or `systemd` / `package`: only that suite.
        #[arg(long)]
        only: Option<String>,
    },
    /// `guard bench` (busybox guest) and `guard bench-peers` (systemd guest)
    /// on each kernel. Without --short, writes BENCHMARKS.md.
    Bench {
        #[arg(long)]
        short: bool,
        #[arg(long)]
        kernel: Option<String>,
    },
    /// `guard bench-host` (busybox guest, an ext4 loop filesystem for the
    /// eviction operation) on each kernel; writes its section of BENCHMARKS.md.
    BenchHost {
        #[arg(long)]
        kernel: Option<String>,
        /// Interleaved rounds.
        #[arg(long, default_value_t = 15)]
        rounds: usize,
        /// Calls per measurement, as a multiple of each operation's base count.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
    /// Write BENCHMARKS.md again from the last bench run's reports
    /// (target/vm/bench-reports.json), without running anything.
    #[command(hide = true)]
    BenchMd,
    /// `promtool check metrics` on a saved scrape of `guard run --metrics`
    /// (promtool fetched once into target/tools/prometheus).
    #[command(hide = true)]
    CheckMetrics {
        /// The scrape: the body of GET /metrics.
        scrape: PathBuf,
    },
    /// Boot a busybox guest on one kernel and run a shell command in it
    /// (guard and vm-tests in /bin); prints the console log (development).
    #[command(hide = true)]
    Vm {
        #[arg(long, default_value = kernels::BOOKWORM)]
        kernel: String,
        /// The shell command; its exit status is the guest's.
        command: String,
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
    /// Build deliberately broken variants of the eBPF program and check that
    /// the suite catches each one (a test that cannot fail is a defect).
    Mutants {
        #[arg(long, default_value = kernels::BOOKWORM)]
        kernel: String,
        /// Only these mutants (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.task {
        Task::Setup => setup::ensure_tools(true),
        Task::Build => build().map(|_| ()),
        Task::Deb { deb_version } => build().and_then(|b| deb(&b, deb_version.as_deref())).map(|_| ()),
        Task::Demo { kernel } => demo(&kernel),
        Task::Test { kernel, skip_host, only } => test(kernel.as_deref(), skip_host, only.as_deref()),
        Task::Bench { short, kernel } => bench(short, kernel.as_deref()).map(|_| ()),
        Task::BenchMd => bench_md(),
        Task::BenchHost { kernel, rounds, scale } => bench_host(kernel.as_deref(), rounds, scale),
        Task::Mutants { kernel, only } => mutants(&kernel, &only),
        Task::CheckMetrics { scrape } => check_metrics(&scrape),
        Task::Vm { kernel, command, timeout_secs } => vm_command(&kernel, &command, timeout_secs),
    };
    if let Err(e) = res {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn vm_command(kernel: &str, command: &str, timeout_secs: u64) -> Result<()> {
    let b = build()?;
    let k = select_kernels(Some(kernel))?.pop().with_context(|| format!("no kernel {kernel}"))?;
    let out = run_busybox(&k, &b, "vm", command, Duration::from_secs(timeout_secs))?;
    println!("{}", out.log);
    match out.exit_code {
        Some(0) => Ok(()),
        _ => bail!("the guest command failed: {}", out.describe()),
    }
}

fn check_metrics(scrape: &Path) -> Result<()> {
    let text = std::fs::read_to_string(scrape).with_context(|| format!("reading {}", scrape.display()))?;
    let promtool = promtool::ensure_promtool(&root().join("target/tools/prometheus"))?;
    promtool::check_metrics(&promtool, &text)?;
    eprintln!("promtool: {} passes `promtool check metrics`", scrape.display());
    Ok(())
}

/// `cargo xtask deb`: the package from the static build `b`, its contents
/// printed and checked.
fn deb(b: &Built, version: Option<&str>) -> Result<PathBuf> {
    deb_of(&root(), &root().join("target"), b, version)
}

/// The package of workspace `workspace` (the repository, or a mutant's
/// patched copy), built into `target_dir`.
fn deb_of(workspace: &Path, target_dir: &Path, b: &Built, version: Option<&str>) -> Result<PathBuf> {
    step("building the Debian package (cargo-deb; man pages and completions from the built guard)");
    let deb = deb::package(workspace, target_dir, HOST_TARGET, &b.guard, version)?;
    let listing = deb::contents(&deb)?;
    eprintln!("{listing}");
    deb::check_scripts(&deb, &workspace.join("target/deb/control"))?;
    let bad = deb::missing_or_wrong(&listing);
    if !bad.is_empty() {
        bail!("{} is not what guard ships:\n  {}", deb.display(), bad.join("\n  "));
    }
    eprintln!("deb: {} ({} files)", deb.display(), listing.lines().filter(|l| !l.starts_with('d')).count());
    Ok(deb)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn vm_dir() -> PathBuf {
    root().join("target/vm")
}

pub struct Built {
    guard: PathBuf,
    vm_tests: PathBuf,
}

const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Static (no shared libraries) guard and vm-tests for the initramfs, from
/// the workspace at `workspace` (the repository, or a mutant's patched copy).
/// The eBPF object is built by guard/build.rs from the same workspace.
fn build_into(target_dir: &Path, workspace: &Path) -> Result<Built> {
    step(&format!("building the eBPF object and static guard + vm-tests from {} (target dir {})", workspace.display(), target_dir.display()));
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", HOST_TARGET, "-p", "guard", "-p", "vm-tests"])
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    cmd.env_remove("GUARD_EBPF_OBJECT").env_remove("GUARD_EBPF_WORKSPACE");
    exec(&mut cmd)?;
    let dir = target_dir.join(HOST_TARGET).join("release");
    Ok(Built { guard: dir.join("guard"), vm_tests: dir.join("vm-tests") })
}

fn build() -> Result<Built> {
    setup::ensure_tools(false)?;
    build_into(&root().join("target"), &root())
}

fn step(what: &str) {
    eprintln!("\n==> xtask: {what}");
}

fn select_kernels(only: Option<&str>) -> Result<Vec<Kernel>> {
    step("fetching Debian test kernels (cached in target/vm/kernels)");
    let all = kernels::ensure_kernels(&vm_dir())?;
    let picked: Vec<Kernel> = all.into_iter().filter(|k| only.is_none_or(|o| o == k.name)).collect();
    if picked.is_empty() {
        bail!("no kernel named {:?}; choose from {:?}", only.unwrap_or(""), kernels::kernel_names());
    }
    Ok(picked)
}

fn bins(b: &Built) -> guest::Binaries<'_> {
    guest::Binaries { guard: &b.guard, vm_tests: &b.vm_tests }
}

/// Boots a busybox guest running `command`; returns the outcome.
fn run_busybox(k: &Kernel, b: &Built, tag: &str, command: &str, timeout: Duration) -> Result<vm::VmOutcome> {
    let img = vm_dir().join(format!("{tag}-{}.cpio", k.name));
    guest::busybox_image(&bins(b), &k.loop_ko, command, &img)?;
    let log = vm_dir().join(format!("{tag}-{}.log", k.name));
    step(&format!("booting {} ({}) for {tag}; console log {}", k.name, k.package, log.display()));
    vm::run_vm(k, &img, "quiet", timeout, &log, true)
}

fn run_systemd(k: &Kernel, b: &Built, command: &str, timeout: Duration) -> Result<vm::VmOutcome> {
    run_systemd_tagged(k, b, command, command, timeout)
}

/// `tag` names the image and the console log (`systemd-<tag>-<kernel>`).
fn run_systemd_tagged(k: &Kernel, b: &Built, command: &str, tag: &str, timeout: Duration) -> Result<vm::VmOutcome> {
    let suite = rootfs::suite_for(&k.name);
    step(&format!("preparing the systemd (debootstrap {suite}) root filesystem (cached in target/vm)"));
    let rootfs = rootfs::ensure_systemd_rootfs(&vm_dir(), suite)?;
    let img = vm_dir().join(format!("systemd-{tag}-{}.cpio", k.name));
    guest::systemd_image(&rootfs, &bins(b), &root().join("policies"), &root().join("vm-tests/policies"), command, &img)?;
    let log = vm_dir().join(format!("systemd-{tag}-{}.log", k.name));
    step(&format!("booting {} with systemd for `{command}`; console log {}", k.name, log.display()));
    vm::run_vm_with_mem(k, &img, &format!("{} quiet", rootfs::SYSTEMD_APPEND), timeout, &log, true, rootfs::SYSTEMD_MEM_MB)
}

/// The package suite's two packages (`deb::TEST_VERSIONS`) of `workspace`.
fn test_debs(workspace: &Path, target_dir: &Path, b: &Built) -> Result<[PathBuf; 2]> {
    let [v1, v2] = deb::TEST_VERSIONS;
    Ok([deb_of(workspace, target_dir, b, Some(v1))?, deb_of(workspace, target_dir, b, Some(v2))?])
}

/// Boots the package suite (`vm-tests package`) on `k`, with the kernel's
/// own Debian release and the two packages `debs` (`deb::TEST_VERSIONS`).
fn run_package(k: &Kernel, b: &Built, debs: &[PathBuf; 2], tag: &str, timeout: Duration) -> Result<vm::VmOutcome> {
    let suite = rootfs::suite_for(&k.name);
    step(&format!("preparing the systemd (debootstrap {suite}) root filesystem (cached in target/vm)"));
    let rootfs = rootfs::ensure_systemd_rootfs(&vm_dir(), suite)?;
    let img = vm_dir().join(format!("systemd-{tag}-{}.cpio", k.name));
    guest::package_image(&rootfs, &b.vm_tests, debs, &img)?;
    let log = vm_dir().join(format!("systemd-{tag}-{}.log", k.name));
    step(&format!("booting {} with systemd for `vm-tests package` (dpkg -i, upgrade, remove); console log {}", k.name, log.display()));
    vm::run_vm_with_mem(k, &img, &format!("{} quiet", rootfs::SYSTEMD_APPEND), timeout, &log, true, rootfs::SYSTEMD_MEM_MB)
}

/// The text between two marker lines of a guest log.
fn between<'a>(log: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = log.find(begin)? + begin.len();
    let stop = log[start..].find(end)? + start;
    Some(log[start..stop].trim_start_matches(['\r', '\n']))
}

/// `promtool check metrics` on the scrape the package suite printed.
fn promtool_on_scrape(log: &str, save_as: &Path) -> Result<String> {
    let text = between(log, "GUARD-METRICS-BEGIN", "GUARD-METRICS-END").context("the guest printed no metrics scrape")?;
    // The serial console turns \n into \r\n.
    let text = text.replace("\r\n", "\n");
    std::fs::write(save_as, &text)?;
    let promtool = promtool::ensure_promtool(&root().join("target/tools/prometheus"))?;
    promtool::check_metrics(&promtool, &text)?;
    // The shipped alerting rules: their fixtures, and every metric they
    // name present in this real scrape.
    let dir = root().join("guard/prometheus");
    let tested = promtool::test_rules(&promtool, &dir.join("guard-alerts.yml"), &dir.join("guard-alerts.test.yml"))?;
    let rules = std::fs::read_to_string(dir.join("guard-alerts.yml"))?;
    let refs = promtool::rules_against_scrape(&rules, &text)?;
    Ok(format!(
        "promtool check metrics: {} ({} lines) passes; {tested}; the rules' {refs} metric references all in the scrape",
        save_as.display(),
        text.lines().count()
    ))
}

/// The Debian release whose systemd runs the peer benchmark on every kernel:
/// bookworm's systemd 252 is built without BPF_FRAMEWORK (`systemd --version`
/// says `-BPF_FRAMEWORK`), so it cannot apply `RestrictFileSystems=`.
const PEERS_SUITE: &str = "trixie";

/// Boots the peer benchmark (`guard bench-peers`) on `k` with a real systemd.
fn run_peers(k: &Kernel, b: &Built, short: bool, timeout: Duration) -> Result<vm::VmOutcome> {
    step(&format!("preparing the systemd (debootstrap {PEERS_SUITE}) root filesystem (cached in target/vm)"));
    let rootfs = rootfs::ensure_systemd_rootfs(&vm_dir(), PEERS_SUITE)?;
    let tag = if short { "peers-short" } else { "peers" };
    let img = vm_dir().join(format!("systemd-{tag}-{}.cpio", k.name));
    let args = if short { "bench-peers --json --short" } else { "bench-peers --json" };
    guest::systemd_bench_image(&rootfs, &bins(b), args, &img)?;
    let log = vm_dir().join(format!("systemd-{tag}-{}.log", k.name));
    step(&format!("booting {} with {PEERS_SUITE}'s systemd for `guard {args}`; console log {}", k.name, log.display()));
    vm::run_vm_with_mem(k, &img, &format!("{} quiet", rootfs::SYSTEMD_APPEND), timeout, &log, true, rootfs::SYSTEMD_MEM_MB)
}

/// Every peer measured with every operation, and the loaded hot path checked.
fn complete_peers(r: &serde_json::Value) -> Result<usize> {
    let rows = r["rows"].as_array().cloned().unwrap_or_default();
    let variants: std::collections::BTreeSet<String> = rows.iter().filter_map(|x| x["variant"].as_str().map(String::from)).collect();
    for v in ["baseline", "empty", "guard-1", "systemd-unit", "systemd", "landlock", "apparmor"] {
        if !variants.contains(v) {
            bail!("the peer table has no `{v}` rows (missing: {})", r["missing"]);
        }
    }
    if rows.len() != variants.len() * 3 || !rows.iter().all(|x| x["e2e_ns"]["median"].as_f64().is_some_and(|v| v > 0.0)) {
        bail!("the peer table is incomplete");
    }
    let check = r["hot_path_check"].as_str().unwrap_or("");
    if !check.starts_with("holds") {
        bail!("hot-path check on the loaded program: {check}");
    }
    for prog in ["guard_file_open", "systemd restrict_filesystems"] {
        if !r["paths"].as_array().into_iter().flatten().any(|p| p["program"] == prog) {
            bail!("no static path counts for {prog}");
        }
    }
    Ok(rows.len())
}

fn demo(kernel: &str) -> Result<()> {
    setup::ensure_tools(true)?;
    let b = build_into(&root().join("target"), &root())?;
    let k = select_kernels(Some(kernel))?.remove(0);
    let out = run_systemd(&k, &b, "demo", Duration::from_secs(600))?;
    match out.exit_code {
        Some(0) => {
            eprintln!("\nxtask: demo finished in {:.0} s ({})", out.elapsed.as_secs_f64(), out.describe());
            Ok(())
        }
        _ => bail!("demo failed: {}", out.describe()),
    }
}

/// One line of the final report.
struct Step {
    kernel: String,
    name: String,
    ok: bool,
    passed: usize,
    failed: usize,
    secs: f64,
    detail: String,
    /// For a failed VM step: what the guest said of it (see [`failure_digest`]).
    why: Vec<String>,
}

/// What a failed VM step's console says of the failure: its failing
/// scenarios (with the guard log's tail at the first), panic, OOM, oops
/// and kernel warning lines, and the tail of the guard log the suite prints at
/// its end (each line cut to 400 characters; at most 80 lines).
fn failure_digest(log: &str) -> Vec<String> {
    let cut = |l: &str| l.chars().take(400).collect::<String>();
    let mut out: Vec<String> = log
        .lines()
        .filter(|l| {
            ["guard.log| ", "panicked", "Kernel panic", "Out of memory", "segfault", "BUG:", "WARNING:", "Oops", "general protection"].iter().any(|m| l.contains(m))
                || (l.contains("SCENARIO ") && l.contains(": FAIL"))
        })
        .take(40)
        .map(cut)
        .collect();
    if let Some(at) = log.find("--- guard log ---") {
        let tail: Vec<&str> = log[at..].lines().collect();
        out.extend(tail[tail.len().saturating_sub(40)..].iter().map(|l| cut(l)));
    } else {
        let tail: Vec<&str> = log.lines().collect();
        out.extend(tail[tail.len().saturating_sub(20)..].iter().map(|l| cut(l)));
    }
    out
}

/// Counts `SCENARIO ...: PASS|FAIL` lines in a guest log.
fn scenario_counts(log: &str) -> (usize, usize) {
    let pass = log.lines().filter(|l| l.contains("SCENARIO ") && l.contains(": PASS")).count();
    let fail = log.lines().filter(|l| l.contains("SCENARIO ") && l.contains(": FAIL")).count();
    (pass, fail)
}

fn test(kernel: Option<&str>, skip_host: bool, only: Option<&str>) -> Result<()> {
    let t_all = Instant::now();
    let mut steps: Vec<Step> = Vec::new();
    let t = Instant::now();
    setup::ensure_tools(true)?;
    steps.push(Step { kernel: "-".into(), name: "setup".into(), ok: true, passed: 0, failed: 0, secs: t.elapsed().as_secs_f64(), detail: String::new(), why: Vec::new() });

    // The kernels and the systemd root filesystems are downloads and
    // debootstrap, mostly waiting on the network: fetched beside the host
    // tests and the build, which keep the CPUs busy.
    let fetch = {
        let kernel = kernel.map(String::from);
        std::thread::spawn(move || -> Result<Vec<Kernel>> {
            let ks = select_kernels(kernel.as_deref())?;
            for k in &ks {
                let _ = rootfs::ensure_systemd_rootfs(&vm_dir(), rootfs::suite_for(&k.name))?;
            }
            Ok(ks)
        })
    };

    if !skip_host {
        step("host unit and integration tests (cargo test --workspace)");
        let t = Instant::now();
        let out = Command::new(env!("CARGO"))
            .current_dir(root())
            .args(["test", "--workspace", "--exclude", "guard-ebpf", "--no-fail-fast"])
            .output()
            .context("running cargo test")?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        print!("{text}");
        let (mut passed, mut failed) = (0, 0);
        for l in text.lines().filter(|l| l.starts_with("test result:")) {
            let num = |key: &str| l.split(';').find_map(|p| p.trim().strip_suffix(key)?.trim().rsplit(' ').next()?.parse::<usize>().ok()).unwrap_or(0);
            passed += num("passed");
            failed += num("failed");
        }
        steps.push(Step {
            kernel: "host".into(),
            name: "cargo test".into(),
            ok: out.status.success(),
            passed,
            failed,
            secs: t.elapsed().as_secs_f64(),
            detail: String::new(),
            why: Vec::new(),
        });
    }

    let t = Instant::now();
    let b = build_into(&root().join("target"), &root())?;
    steps.push(Step { kernel: "-".into(), name: "build (eBPF + static)".into(), ok: true, passed: 0, failed: 0, secs: t.elapsed().as_secs_f64(), detail: String::new(), why: Vec::new() });
    // The package twice (the same build, two versions): the package suite
    // installs the first and upgrades to the second.
    let wants_package = matches!(only, None | Some("package"));
    let t = Instant::now();
    let debs = if wants_package {
        let debs = test_debs(&root(), &root().join("target"), &b)?;
        steps.push(Step { kernel: "-".into(), name: "deb (cargo-deb) x2".into(), ok: true, passed: 1, failed: 0, secs: t.elapsed().as_secs_f64(), detail: "contents checked".into(), why: Vec::new() });
        Some(debs)
    } else {
        None
    };
    let t = Instant::now();
    let ks = fetch.join().map_err(|_| anyhow::anyhow!("fetching the kernels and root filesystems panicked"))??;
    steps.push(Step {
        kernel: "-".into(),
        name: "kernels + systemd rootfs".into(),
        ok: true,
        passed: 0,
        failed: 0,
        secs: t.elapsed().as_secs_f64(),
        detail: "fetched beside the host tests and the build; seconds waited after them".into(),
        why: Vec::new(),
    });

    let suite_cmd = match only {
        Some(o) => format!("/bin/vm-tests suite --only {o}"),
        None => "/bin/vm-tests suite".to_string(),
    };
    // The VM steps (5 per kernel) run from one queue, `GUARD_VM_JOBS`
    // (default 2) at once, longest first: each TCG guest is one host
    // thread, so two use both cores. Every check is within one guest (the
    // benches compare interleaved variants inside one VM), so a neighbour
    // guest changes no verdict, only the wall time.
    let jobs = std::env::var("GUARD_VM_JOBS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(2).max(1);
    if wants_package {
        // Fetched once, before the steps that check a scrape with it.
        promtool::ensure_promtool(&root().join("target/tools/prometheus"))?;
    }
    let queue: std::sync::Mutex<Vec<(&Kernel, &str)>> = std::sync::Mutex::new(
        VM_STEPS.iter().rev().flat_map(|step| ks.iter().rev().map(move |k| (k, *step))).collect(),
    );
    let done: Vec<Result<Vec<Step>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                let (queue, b, debs, suite_cmd) = (&queue, &b, &debs, &suite_cmd);
                scope.spawn(move || -> Result<Vec<Step>> {
                    let mut out = Vec::new();
                    loop {
                        // The guard must go before the step runs: a `while let`
                        // on the lock would hold it for the whole step (its
                        // temporaries live through the body), and the workers
                        // would take turns instead of running side by side.
                        let next = queue.lock().unwrap().pop();
                        let Some((k, step)) = next else { break };
                        out.extend(kernel_steps(k, b, debs.as_ref(), suite_cmd, only, step)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a VM worker panicked")))).collect()
    });
    for d in done {
        steps.extend(d?);
    }
    // Report in the matrix's order.
    let order = |name: &str| ks.iter().position(|k| k.name == name).unwrap_or(usize::MAX);
    let step_order = |name: &str| VM_STEPS.iter().position(|s| *s == name).unwrap_or(usize::MAX);
    steps.sort_by_key(|s| if s.kernel == "-" || s.kernel == "host" { (0, 0) } else { (1 + order(&s.kernel), step_order(&s.name)) });

    let mut report = String::new();
    let _ = writeln!(report, "\n{:<14} {:<26} {:>6} {:>6} {:>8}  result", "kernel", "step", "passed", "failed", "seconds");
    for s in &steps {
        let _ = writeln!(
            report,
            "{:<14} {:<26} {:>6} {:>6} {:>8.1}  {}{}",
            s.kernel,
            s.name,
            s.passed,
            s.failed,
            s.secs,
            if s.ok { "ok" } else { "FAILED" },
            if s.detail.is_empty() { String::new() } else { format!(" — {}", s.detail) }
        );
    }
    let passed: usize = steps.iter().map(|s| s.passed).sum();
    let failed: usize = steps.iter().map(|s| s.failed).sum();
    let _ = writeln!(report, "total wall time {:.0} s", t_all.elapsed().as_secs_f64());
    // Last, so that a CI log's tail shows why a step failed.
    for s in steps.iter().filter(|s| !s.why.is_empty()) {
        let _ = writeln!(report, "\n--- why {} {} failed (its console log is in target/vm) ---", s.kernel, s.name);
        for l in &s.why {
            let _ = writeln!(report, "{l}");
        }
    }
    print!("{report}");
    let _ = std::fs::write(vm_dir().join("test-summary.txt"), &report);
    println!("xtask: {passed} passed, {failed} failed");
    if steps.iter().any(|s| !s.ok) {
        bail!("some steps failed (see the table above and the console logs in target/vm)");
    }
    Ok(())
}

/// The VM steps of every kernel, longest first (the queue's order).
const VM_STEPS: [&str; 5] = ["systemd suite", "package suite", "scenario suite", "bench peers --short", "bench --short"];

/// VM step `pick` on kernel `k` (one of `VM_STEPS`: the scenario suite, the
/// systemd suite, the package suite, the short bench and the short peer
/// bench), if `only` wants it.
fn kernel_steps(k: &Kernel, b: &Built, debs: Option<&[PathBuf; 2]>, suite_cmd: &str, only: Option<&str>, pick: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    type VmStep<'a> = (&'a str, Box<dyn Fn() -> Result<vm::VmOutcome> + 'a>);
    let vm_steps: [VmStep<'_>; 5] = [
        ("scenario suite", Box::new(|| run_busybox(k, b, "suite", suite_cmd, Duration::from_secs(1200)))),
        ("systemd suite", Box::new(|| run_systemd(k, b, "systemd", Duration::from_secs(900)))),
        ("package suite", Box::new(|| run_package(k, b, debs.expect("built above"), "package", Duration::from_secs(900)))),
        ("bench --short", Box::new(|| run_busybox(k, b, "bench-short", &bench_command(true), Duration::from_secs(900)))),
        ("bench peers --short", Box::new(|| run_peers(k, b, true, Duration::from_secs(900)))),
    ];
    for (name, run) in vm_steps {
        // `--only systemd`: the systemd suite alone; other names pick suite scenarios.
        let wanted = match only {
            None => true,
            Some("systemd") => name == "systemd suite",
            Some("package") => name == "package suite",
            Some(_) => name == "scenario suite",
        };
        if !wanted || name != pick {
            continue;
        }
        let t = Instant::now();
        let out = run()?;
        let (mut passed, mut failed) = scenario_counts(&out.log);
        let mut detail = out.describe();
        if name == "bench peers --short" {
            // Every peer ran, and the loaded hot path is one lookup.
            match bench_report(&out.log).and_then(|r| complete_peers(&r).map(|n| (r, n))) {
                Ok((r, n)) => {
                    passed += 1;
                    detail = format!("{n} rows; {}", r["hot_path_check"].as_str().unwrap_or(""));
                }
                Err(e) => {
                    failed += 1;
                    detail = format!("{e:#}");
                }
            }
        }
        if name == "package suite" {
            // CI's promtool check of a scrape taken in the VM.
            match promtool_on_scrape(&out.log, &vm_dir().join(format!("metrics-{}.txt", k.name))) {
                Ok(d) => {
                    passed += 1;
                    detail = d;
                }
                Err(e) => {
                    failed += 1;
                    detail = format!("{e:#}");
                }
            }
        }
        if name == "bench --short" {
            // Proves the benchmark works end to end: a complete table.
            match bench_report(&out.log) {
                Ok(report) if complete_table(&report) => {
                    passed += 1;
                    detail = format!("complete table ({} rows)", report["rows"].as_array().map_or(0, |r| r.len()));
                }
                Ok(_) => {
                    failed += 1;
                    detail = "bench table incomplete".into();
                }
                Err(e) => {
                    failed += 1;
                    detail = format!("no bench report: {e:#}");
                }
            }
            // The host bench: every operation measured, the bystander check
            // held at run time, and every hook's bystander path within budget.
            match report_between(&out.log, "GUARD-HOSTBENCH-JSON").map(|r| host_bench_checks(&r)) {
                Ok(checks) => {
                    for (good, what) in checks {
                        if good {
                            passed += 1;
                        } else {
                            failed += 1;
                            detail = format!("{detail}; {what}");
                        }
                    }
                    detail = format!("{detail}; host bench checked");
                }
                Err(e) => {
                    failed += 1;
                    detail = format!("{detail}; no host bench report: {e:#}");
                }
            }
        }
        let ok = out.exit_code == Some(0) && failed == 0 && passed > 0;
        if !ok && failed == 0 {
            failed = 1;
        }
        let why = if ok { Vec::new() } else { failure_digest(&out.log) };
        steps.push(Step { kernel: k.name.clone(), name: name.into(), ok, passed, failed, secs: t.elapsed().as_secs_f64(), detail, why });
    }
    Ok(steps)
}

/// `guard bench`, then `guard bench-host` with an ext4 filesystem on a
/// loop device for its eviction operation, in one boot.
fn bench_command(short: bool) -> String {
    let args = if short { "--short" } else { "" };
    format!(
        "echo GUARD-BENCH-JSON-BEGIN; /bin/guard bench --json {args} --dir /tmp/guard-bench; rc=$?; echo GUARD-BENCH-JSON-END; \
         {HOST_DISK_SETUP}; \
         echo GUARD-HOSTBENCH-JSON-BEGIN; /bin/guard bench-host --json {args} --dir /tmp/guard-bench-host --disk-dir /mnt/bench; rc2=$?; echo GUARD-HOSTBENCH-JSON-END; \
         [ $rc = 0 ] && exit $rc2; exit $rc"
    )
}

/// An ext4 filesystem on a loop device at /mnt/bench (the loop driver the image carries).
const HOST_DISK_SETUP: &str = "{ [ -d /sys/module/loop ] || insmod /lib/modules/loop.ko; } && dd if=/dev/zero of=/tmp/bench-ext4.img bs=1M count=16 2>/dev/null \
     && mke2fs -q -F /tmp/bench-ext4.img && mkdir -p /mnt/bench && mount -t ext4 -o loop /tmp/bench-ext4.img /mnt/bench";

/// The JSON the guest printed between the `GUARD-BENCH-JSON` markers.
fn bench_report(log: &str) -> Result<serde_json::Value> {
    report_between(log, "GUARD-BENCH-JSON")
}

/// The JSON the guest printed between `<marker>-BEGIN` and `<marker>-END`.
fn report_between(log: &str, marker: &str) -> Result<serde_json::Value> {
    let begin = log.find(&format!("{marker}-BEGIN")).with_context(|| format!("no {marker}-BEGIN in the log"))?;
    let end = log.find(&format!("{marker}-END")).with_context(|| format!("no {marker}-END in the log"))?;
    let body = &log[begin..end];
    let start = body.find('{').context("no JSON between the markers")?;
    let stop = body.rfind('}').context("no JSON between the markers")?;
    // Strip kernel console lines (`[   12.345678] ...`) that interleaved;
    // JSON lines that merely start with `[` stay.
    let json: String = body[start..=stop].lines().filter(|l| !is_kernel_line(l)).collect::<Vec<_>>().join("\n");
    serde_json::from_str(&json).context("parsing the bench JSON")
}

fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix('[') else { return false };
    let Some((stamp, _)) = rest.split_once(']') else { return false };
    let stamp = stamp.trim();
    !stamp.is_empty() && stamp.contains('.') && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// `guard bench-host`'s report, as checks: (passed, what it says).
fn host_bench_checks(r: &serde_json::Value) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let ops = r["ops"].as_array().cloned().unwrap_or_default();
    let measured = ops.iter().filter(|o| o["unavailable"].is_null()).count();
    let all = !ops.is_empty() && ops.iter().all(|o| o["unavailable"].is_null() && o["variants"].as_array().is_some_and(|v| v.iter().all(|v| v["ns"]["median"].as_f64().is_some_and(|x| x > 0.0))));
    out.push((all, format!("host bench: {measured} of {} operations measured", ops.len())));
    out.push((r["bystander"]["held"] == true, format!("host bench bystander check: {}", r["bystander"]["detail"].as_str().unwrap_or("?"))));
    for p in r["paths"].as_array().cloned().unwrap_or_default() {
        let hook = p["hook"].as_str().unwrap_or("?").to_string();
        eprintln!(
            "xtask: bystander path of {hook}: {}..{} insns (budget {}), {}..{} helpers (budget {}){}",
            p["insns_min"], p["insns_max"], p["budget_insns"], p["helpers_min"], p["helpers_max"], p["budget_helpers"],
            p["error"].as_str().map(|e| format!(" — walk failed: {e}")).unwrap_or_default()
        );
        out.push((p["holds"] == true, format!("bystander path of {hook} over budget: {p}")));
    }
    out
}

/// Every variant has every operation, with numbers.
fn complete_table(r: &serde_json::Value) -> bool {
    let rows = r["rows"].as_array().cloned().unwrap_or_default();
    let variants: std::collections::BTreeSet<String> = rows.iter().filter_map(|x| x["variant"].as_str().map(String::from)).collect();
    variants.len() >= 3
        && rows.len() == variants.len() * 3
        && rows.iter().all(|x| x["e2e_ns"]["median"].as_f64().is_some_and(|v| v > 0.0))
        && rows.iter().filter(|x| x["variant"] != "baseline").all(|x| x["prog_ns"]["median"].as_f64().is_some())
}

/// Per kernel: its name, `guard bench`'s report and `guard bench-peers`'s.
type BenchReports = Vec<(String, serde_json::Value, serde_json::Value)>;

fn bench(short: bool, kernel: Option<&str>) -> Result<BenchReports> {
    setup::ensure_tools(false)?;
    let b = build_into(&root().join("target"), &root())?;
    let ks = select_kernels(kernel)?;
    let mut reports = Vec::new();
    for k in &ks {
        let t = Instant::now();
        let out = run_busybox(k, &b, if short { "bench-short" } else { "bench" }, &bench_command(short), Duration::from_secs(3600))?;
        if out.exit_code != Some(0) {
            bail!("bench on {} failed: {}", k.name, out.describe());
        }
        let guard = bench_report(&out.log)?;
        eprintln!("xtask: bench on {} took {:.0} s", k.name, t.elapsed().as_secs_f64());
        let t = Instant::now();
        let out = run_peers(k, &b, short, Duration::from_secs(3600))?;
        let peers = bench_report(&out.log).with_context(|| format!("peer bench on {}: {}", k.name, out.describe()))?;
        if out.exit_code != Some(0) {
            bail!("peer bench on {} failed: {} ({})", k.name, out.describe(), peers["hot_path_check"]);
        }
        complete_peers(&peers).with_context(|| format!("peer bench on {}", k.name))?;
        eprintln!("xtask: peer bench on {} took {:.0} s; {}", k.name, t.elapsed().as_secs_f64(), peers["hot_path_check"].as_str().unwrap_or(""));
        reports.push((k.name.clone(), guard, peers));
    }
    let saved = vm_dir().join("bench-reports.json");
    std::fs::write(&saved, serde_json::to_string(&reports)?).with_context(|| format!("writing {}", saved.display()))?;
    if !short {
        let md = with_host_section(benchmarks_md(&reports));
        std::fs::write(root().join("BENCHMARKS.md"), md)?;
        eprintln!("xtask: wrote BENCHMARKS.md");
    }
    Ok(reports)
}

/// Where BENCHMARKS.md's host section starts and ends.
const HOST_BEGIN: &str = "<!-- bench-host: begin -->";
const HOST_END: &str = "<!-- bench-host: end -->";

fn bench_host(kernel: Option<&str>, rounds: usize, scale: f64) -> Result<()> {
    let b = build()?;
    let ks = select_kernels(kernel)?;
    let (mut reports, mut failed) = (Vec::new(), Vec::new());
    for k in &ks {
        let t = Instant::now();
        let cmd = format!(
            "{HOST_DISK_SETUP}; echo GUARD-HOSTBENCH-JSON-BEGIN; /bin/guard bench-host --json --rounds {rounds} --scale {scale} \
             --dir /tmp/guard-bench-host --disk-dir /mnt/bench; rc=$?; echo GUARD-HOSTBENCH-JSON-END; exit $rc"
        );
        let out = run_busybox(k, &b, "bench-host", &cmd, Duration::from_secs(5400))?;
        // One kernel's failure does not throw the others' figures away: they
        // are written, and the command fails at the end.
        match report_between(&out.log, "GUARD-HOSTBENCH-JSON") {
            Ok(r) if out.exit_code == Some(0) => {
                eprintln!("xtask: host bench on {} took {:.0} s", k.name, t.elapsed().as_secs_f64());
                reports.push((k.name.clone(), r));
            }
            Ok(_) => failed.push(format!("host bench on {} failed: {}", k.name, out.describe())),
            Err(e) => failed.push(format!("host bench on {}: {}: {e:#}", k.name, out.describe())),
        }
    }
    let saved = vm_dir().join("bench-host-reports.json");
    std::fs::write(&saved, serde_json::to_string(&reports)?)?;
    let path = root().join("BENCHMARKS.md");
    let md = std::fs::read_to_string(&path).unwrap_or_default();
    let section = host_md(&reports);
    let new = match (md.find(HOST_BEGIN), md.find(HOST_END)) {
        (Some(a), Some(z)) => format!("{}{section}{}", &md[..a], &md[z + HOST_END.len()..]),
        _ => format!("{md}\n{section}\n"),
    };
    std::fs::write(&path, new)?;
    eprintln!("xtask: wrote the host section of BENCHMARKS.md ({} of {} kernels)", reports.len(), ks.len());
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

/// `md` with the host section of the current BENCHMARKS.md kept (its own run writes it).
fn with_host_section(md: String) -> String {
    let old = std::fs::read_to_string(root().join("BENCHMARKS.md")).unwrap_or_default();
    match (old.find(HOST_BEGIN), old.find(HOST_END)) {
        (Some(a), Some(z)) => format!("{md}\n{}\n", &old[a..z + HOST_END.len()]),
        _ => md,
    }
}

/// BENCHMARKS.md's host section, between its markers.
fn host_md(reports: &[(String, serde_json::Value)]) -> String {
    let mut md = format!("{HOST_BEGIN}\n## What guard costs the whole host (`guard bench-host`)\n\n");
    md.push_str(
        "Generated by `cargo xtask bench-host` (do not edit by hand). Every operation below reaches one or more hooks guard \
         attaches; it runs in a bystander (a copy of guard's executable, so not trusted, in a cgroup no policy names), as any \
         process on the host would. Variants, attached one at a time in an order rotated every round: **baseline** (no program), \
         **floor** (a program that returns 0 on every hook guard attaches: what any BPF LSM pays there; on 6.1 an unattached BPF \
         hook already costs a call, on kernels with static LSM calls nothing), **guard-N** (guard's programs on every hook, N \
         protected files), **kernel-only** (guard-1 with nobody reading its ring buffer, as with the agent stopped), \
         **prog-stats** (guard-1 with the kernel's BPF run-time statistics on, as `guard run --prog-stats` holds them for the \
         per-hook metrics: two clock reads around every BPF program run on the host; opt-in, so no budget applies). \
         A sample is the fastest of 3 back-to-back windows of a third of the calls each (under TCG both vCPUs share one host \
         thread, so whatever the other vCPU runs stretches a window by its whole length; the fastest window is the one it \
         spared). Ratios are taken within a round and summarized as the median with a 95% interval from order statistics; a budget \
         *holds* when the whole interval is within it, is *MISSED* when the whole interval is above it, and is *unresolved* \
         otherwise. TCG inflates absolute times several-fold and unevenly (helper calls and memory barriers more than plain \
         instructions), so only ratios within one run mean anything, and a native run would show smaller program shares. \
         With static LSM calls (6.12, 7.2) attaching a hook adds a call into a BPF trampoline that an unattached hook skips \
         (each kernel's section says what the floor cost open()+close() in its run), so guard's own share of an operation is \
         its ×floor column.\n\n\
         **hooks** is the kernel's own attribution (`run_cnt`, `run_time_ns` of every program, a pass with statistics on): \
         runs per operation, guard's ns per run and the floor's on the same hook.\n\n",
    );
    for (name, r) in reports {
        md.push_str(&format!(
            "### {name} (kernel {}, {} CPUs, {} rounds, calls × {})\n\n",
            r["kernel"].as_str().unwrap_or("?"),
            r["cpus"],
            r["rounds"],
            r["scale"]
        ));
        let ci = |c: &serde_json::Value| match (c["median"].as_f64(), c["lo"].as_f64(), c["hi"].as_f64()) {
            (Some(m), Some(l), Some(h)) => format!("{m:.2} [{l:.2}..{h:.2}]"),
            _ => "-".into(),
        };
        let open_floor = r["ops"]
            .as_array()
            .and_then(|ops| ops.iter().find(|o| o["op"] == "open_close"))
            .and_then(|o| o["variants"].as_array()?.iter().find(|v| v["variant"] == "floor").cloned());
        if let Some(f) = open_floor {
            md.push_str(&format!("In this run open()+close() with the floor took {} times the baseline's time.\n\n", ci(&f["x_base"])));
        }
        let variants: Vec<String> = r["variants"].as_array().cloned().unwrap_or_default().iter().filter_map(|v| v.as_str().map(String::from)).collect();
        let shown: Vec<&String> = variants.iter().filter(|v| *v != "baseline").collect();
        md.push_str("| operation | baseline ns |");
        for v in &shown {
            md.push_str(&format!(" {v} ×base | {v} ×floor |"));
        }
        md.push_str(" hooks (runs/op: guard ns, floor ns) |\n|---|---:|");
        for _ in &shown {
            md.push_str("---:|---:|");
        }
        md.push_str("---|\n");
        for o in r["ops"].as_array().cloned().unwrap_or_default() {
            let op = o["op"].as_str().unwrap_or("?");
            if let Some(why) = o["unavailable"].as_str() {
                md.push_str(&format!("| {op} | unavailable: {why} |\n"));
                continue;
            }
            let vs = o["variants"].as_array().cloned().unwrap_or_default();
            let find = |n: &str| vs.iter().find(|v| v["variant"] == n).cloned().unwrap_or_default();
            md.push_str(&format!("| {op} | {:.0} |", find("baseline")["ns"]["median"].as_f64().unwrap_or(f64::NAN)));
            for v in &shown {
                let row = find(v);
                md.push_str(&format!(" {} | {} |", ci(&row["x_base"]), ci(&row["x_floor"])));
            }
            let hooks: Vec<String> = o["hooks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|h| format!("{} ×{:.2}: {:.0}, {:.0}", h["hook"].as_str().unwrap_or("?"), h["calls_per_op"].as_f64().unwrap_or(0.0), h["guard_ns"].as_f64().unwrap_or(f64::NAN), h["floor_ns"].as_f64().unwrap_or(f64::NAN)))
                .collect();
            md.push_str(&format!(" {} |\n", if hooks.is_empty() { "none of guard's".into() } else { hooks.join("; ") }));
        }
        md.push_str("\nOperations: ");
        let whats: Vec<String> = r["ops"].as_array().cloned().unwrap_or_default().iter().map(|o| format!("**{}** {}", o["op"].as_str().unwrap_or("?"), o["what"].as_str().unwrap_or(""))).collect();
        md.push_str(&whats.join("; "));
        md.push_str(&format!("\n\nBystander check at run time: {}.\n\n", r["bystander"]["detail"].as_str().unwrap_or("?")));
        md.push_str("Bystander paths of the loaded programs (every lookup misses, verdict 0; min..max over such paths):\n\n| hook | instructions | helper calls | budget (insns / helpers) | helpers on the path |\n|---|---:|---:|---:|---|\n");
        for p in r["paths"].as_array().cloned().unwrap_or_default() {
            md.push_str(&format!(
                "| {} | {}..{} | {}..{} | {} / {} | {} |\n",
                p["hook"].as_str().unwrap_or("?"),
                p["insns_min"], p["insns_max"], p["helpers_min"], p["helpers_max"], p["budget_insns"], p["budget_helpers"],
                p["helpers"].as_array().map(|h| h.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()
            ));
        }
        md.push('\n');
    }
    md.push_str(HOST_END);
    md
}

fn bench_md() -> Result<()> {
    let saved = vm_dir().join("bench-reports.json");
    let text = std::fs::read_to_string(&saved).with_context(|| format!("reading {} (run `cargo xtask bench` first)", saved.display()))?;
    let reports: BenchReports = serde_json::from_str(&text).with_context(|| format!("parsing {}", saved.display()))?;
    std::fs::write(root().join("BENCHMARKS.md"), with_host_section(benchmarks_md(&reports)))?;
    eprintln!("xtask: wrote BENCHMARKS.md from {}", saved.display());
    Ok(())
}

fn benchmarks_md(reports: &[(String, serde_json::Value, serde_json::Value)]) -> String {
    let mut md = String::from(
        "# guard benchmarks\n\n\
         Generated by `cargo xtask bench` (do not edit by hand): `guard bench --json` inside a QEMU/TCG guest \
         on each kernel of the test matrix. TCG inflates absolute times several-fold and is noisy; \
         only the ratios within one run mean anything. Variants are interleaved (rotated order every round) \
         and each figure is the median over rounds.\n\n\
         - **e2e ns**: one `open()`+`close()` (just `open()` when denied), measured with BPF statistics off.\n\
         - **prog ns**: the program's own time per call, from the kernel's BPF run-time statistics (a second pass with them on).\n\
         - **×base / ×empty**: ratio of medians to the no-program baseline / to the empty `file_open` program.\n\n\
         Each kernel's second table puts guard beside systemd's `RestrictFileSystems=`, Landlock and AppArmor \
         (`guard bench-peers`, in a guest with a real systemd), followed by the static path counts of the loaded programs.\n\n",
    );
    for (name, r, peers) in reports {
        let _ = writeln!(
            md,
            "## {name} (kernel {}, {} rounds × {} calls)\n",
            r["kernel"].as_str().unwrap_or("?"),
            r["rounds"],
            r["iters"]
        );
        let _ = writeln!(md, "| variant | op | e2e ns (median) | p25..p75 | ×base | ×empty | prog ns | prog ×empty |\n|---|---|---:|---:|---:|---:|---:|---:|");
        for row in r["rows"].as_array().into_iter().flatten() {
            let f = |v: &serde_json::Value| v.as_f64().map(|x| format!("{x:.3}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.0}..{:.0} | {} | {} | {} | {} |",
                row["variant"].as_str().unwrap_or(""),
                row["op"].as_str().unwrap_or(""),
                row["e2e_ns"]["median"].as_f64().unwrap_or(0.0),
                row["e2e_ns"]["p25"].as_f64().unwrap_or(0.0),
                row["e2e_ns"]["p75"].as_f64().unwrap_or(0.0),
                f(&row["e2e_vs_baseline"]),
                f(&row["e2e_vs_empty"]),
                row["prog_ns"]["median"].as_f64().map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into()),
                f(&row["prog_vs_empty"]),
            );
        }
        let _ = writeln!(md, "\nBudget:\n");
        for b in r["budget"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "- {} {}: {:.3} (limit {:.2})",
                if b["holds"].as_bool() == Some(true) { "holds —" } else { "**MISSED** —" },
                b["line"].as_str().unwrap_or(""),
                b["value"].as_f64().unwrap_or(f64::NAN),
                b["limit"].as_f64().unwrap_or(f64::NAN)
            );
        }
        md.push('\n');
        peers_md(&mut md, name, peers);
    }
    md.push_str("Regenerate with `cargo xtask bench` (about 10 minutes per kernel under TCG).\n");
    md
}

/// The peer table, the static path table and the ordering, for one kernel.
fn peers_md(md: &mut String, name: &str, r: &serde_json::Value) {
    let _ = writeln!(
        md,
        "### {name}: guard and its peers (real systemd: {}; LSMs `{}`; {} rounds × {} calls)\n",
        r["systemd"].as_str().unwrap_or("?"),
        r["lsm"].as_str().unwrap_or("?"),
        r["rounds"],
        r["iters"]
    );
    md.push_str(
        "`guard bench-peers` in a systemd guest: every variant runs the same measurement (`guard bench-worker`: \
         the same `open()`+`close()` loop over the same three operations), spawned under the variant's confinement, \
         interleaved and rotated every round; medians over rounds. What each operation opens:\n\n",
    );
    for d in r["definitions"].as_array().into_iter().flatten() {
        let _ = writeln!(md, "- **{}**: {}", d[0].as_str().unwrap_or(""), d[1].as_str().unwrap_or(""));
    }
    let always: Vec<&str> = r["always_attached"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
    if !always.is_empty() {
        let _ = writeln!(
            md,
            "\nsystemd's program as found before any variant ran (systemd sets it up at boot): {}. Attached, it runs in *every* variant, baseline included; outside a restricted unit it takes its unprotected path (the cgroup is not in its map).",
            always.join(", ")
        );
    }
    for m in r["missing"].as_array().into_iter().flatten() {
        let _ = writeln!(md, "- not measured: {}", m.as_str().unwrap_or(""));
    }
    let _ = writeln!(md, "\n| variant | op | e2e ns (median) | p25..p75 | ×base | ×empty |\n|---|---|---:|---:|---:|---:|");
    let rows = r["rows"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0}..{:.0} | {:.3} | {:.3} |",
            row["variant"].as_str().unwrap_or(""),
            row["op"].as_str().unwrap_or(""),
            row["e2e_ns"]["median"].as_f64().unwrap_or(0.0),
            row["e2e_ns"]["p25"].as_f64().unwrap_or(0.0),
            row["e2e_ns"]["p75"].as_f64().unwrap_or(0.0),
            row["e2e_vs_baseline"].as_f64().unwrap_or(f64::NAN),
            row["e2e_vs_empty"].as_f64().unwrap_or(f64::NAN),
        );
    }
    md.push_str("\nWho wins where (from this run's medians; cheapest first, ×base in brackets; \"overlaps\" when the cheapest one's p75 reaches past the next one's p25, i.e. the difference is within the noise):\n\n");
    for op in ["unprotected", "allowed", "denied"] {
        let mut v: Vec<&serde_json::Value> =
            rows.iter().filter(|x| x["op"] == op && !["baseline", "empty", "systemd-unit"].contains(&x["variant"].as_str().unwrap_or(""))).collect();
        v.sort_by(|a, b| a["e2e_ns"]["median"].as_f64().unwrap_or(f64::MAX).total_cmp(&b["e2e_ns"]["median"].as_f64().unwrap_or(f64::MAX)));
        let order: Vec<String> = v
            .iter()
            .map(|x| format!("{} ({:.2})", x["variant"].as_str().unwrap_or(""), x["e2e_vs_baseline"].as_f64().unwrap_or(f64::NAN)))
            .collect();
        let noise = match (v.first(), v.get(1)) {
            (Some(a), Some(b)) if a["e2e_ns"]["p75"].as_f64() >= b["e2e_ns"]["p25"].as_f64() => " — overlaps",
            _ => "",
        };
        let _ = writeln!(md, "- {op}: {}{noise}", order.join(" < "));
    }
    let med = |v: &str, op: &str| rows.iter().find(|x| x["variant"] == v && x["op"] == op).and_then(|x| x["e2e_ns"]["median"].as_f64());
    let ratios: Vec<String> = ["unprotected", "allowed", "denied"]
        .iter()
        .filter_map(|op| Some(format!("{op} {:.2}", med("systemd", op)? / med("systemd-unit", op)?)))
        .collect();
    if !ratios.is_empty() {
        let _ = writeln!(md, "- systemd against its own control (`systemd` ÷ `systemd-unit`, the program's share): {}", ratios.join(", "));
    }
    let _ = writeln!(
        md,
        "\nStatic path counts, from each loaded program's translated instructions (`BPF_OBJ_GET_INFO_BY_FD`), walked with the previous LSM's verdict 0 and everything else unknown; \
         both ways at every branch on an unknown, min..max over all paths ending in that outcome. \
         unprotected = the program's first lookup misses (or it has none) and it returns 0; allowed = it hits and returns 0; denied = it hits and returns an error; other = an unknown verdict. \
         Helpers are named from /proc/kallsyms (inlined map lookups call the map's own function).\n"
    );
    let _ = writeln!(md, "| program (insns loaded) | path | paths (saturating) | insns min..max | helper calls min..max | helpers | verdicts |\n|---|---|---:|---:|---:|---|---|");
    for p in r["paths"].as_array().into_iter().flatten() {
        for row in p["paths"].as_array().into_iter().flatten() {
            let helpers: Vec<&str> = row["helpers"].as_array().into_iter().flatten().filter_map(|h| h.as_str()).collect();
            let _ = writeln!(
                md,
                "| {} ({}) | {} | {} | {}..{} | {}..{} | {} | {} |",
                p["program"].as_str().unwrap_or(""),
                p["xlated_insns"],
                row["outcome"].as_str().unwrap_or(""),
                match row["paths"].as_u64() {
                    Some(n) if n >= 1_000_000_000 => format!("{n:.1e}"),
                    Some(n) => n.to_string(),
                    None => "?".into(),
                },
                row["insns_min"],
                row["insns_max"],
                row["helpers_min"],
                row["helpers_max"],
                if helpers.is_empty() { "-".to_string() } else { helpers.join(", ") },
                row["verdicts"].as_array().into_iter().flatten().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let _ = writeln!(md, "\nHot-path check (CI fails otherwise): {}\n", r["hot_path_check"].as_str().unwrap_or("?"));
}

/// One deliberate breakage of the eBPF program, and the scenarios that must catch it.
struct Mutant {
    name: &'static str,
    /// File to patch, relative to the workspace root (the eBPF program, or
    /// the agent for what only the agent does).
    file: &'static str,
    from: &'static str,
    to: &'static str,
    caught_by: &'static [&'static str],
}

const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "always-allow",
        file: "guard-ebpf/src/decide.rs",
        from: "if decision == DECISION_AUDITED { 0 } else { -EACCES }\n}\n\n/// Fail closed",
        to: "let _ = decision; 0\n}\n\n/// Fail closed",
        caught_by: &["2-login-user-denied", "4-root-outside-unit-denied", "7-new-file-in-protected-dir"],
    },
    Mutant {
        name: "ignore-cgroup",
        file: "guard-ebpf/src/decide.rs",
        from: "        let own = cgroup_ok\n",
        to: "        let own = (cgroup_ok || true)\n",
        caught_by: &["3-same-uid-other-cgroup-denied"],
    },
    Mutant {
        name: "ignore-uid",
        file: "guard-ebpf/src/decide.rs",
        from: "            && uid_allowed(policy, policy_id, uid)\n            && (euid == uid || uid_allowed(policy, policy_id, euid))\n",
        to: "            && (true || uid_allowed(policy, policy_id, uid))\n            && (true || euid == uid || uid_allowed(policy, policy_id, euid))\n",
        caught_by: &["5-unit-cgroup-wrong-uid-denied"],
    },
    Mutant {
        name: "no-inheritance",
        file: "guard-ebpf/src/main.rs",
        from: "        if (*dir_rule).any_flags() & RULE_F_INHERIT == 0 && extra == 0 {",
        to: "        if true || (*dir_rule).any_flags() & RULE_F_INHERIT == 0 && extra == 0 {",
        caught_by: &["7-new-file-in-protected-dir"],
    },
    Mutant {
        name: "no-records",
        file: "guard-ebpf/src/report.rs",
        from: "    entry.submit(0);\n    count(CNT_EVENTS_SENT);",
        to: "    entry.discard(0);\n    count(CNT_EVENTS_SENT);",
        caught_by: &["2-login-user-denied", "8-unrelated-unaffected-and-audit-recorded"],
    },
    Mutant {
        name: "records-carry-no-total",
        file: "guard-ebpf/src/report.rs",
        from: "        (*ev).total = total;",
        to: "        (*ev).total = 0;",
        caught_by: &["16-flood-accounting"],
    },
    Mutant {
        name: "first-denial-waits",
        file: "guard-ebpf/src/report.rs",
        from: "        if st.sent_ns != 0 && now.saturating_sub(st.sent_ns) < BURST_WINDOW_NS {",
        to: "        if (st.sent_ns != 0 && now.saturating_sub(st.sent_ns) < BURST_WINDOW_NS) || total < 100 {",
        caught_by: &["16-flood-accounting"],
    },
    Mutant {
        name: "table-never-flushed",
        file: "guard/src/feed/mod.rs",
        from: "                let flushed = tally.flush(table, bursts::boot_now_ns());",
        to: "                let _ = &table;\n                let flushed = bursts::Flushed::default();",
        caught_by: &["16-flood-accounting", "24-flood-1000-openers"],
    },
    Mutant {
        name: "no-fd-receive-check",
        file: "guard-ebpf/src/main.rs",
        from: "unsafe { judge_file(ctx.arg(0), HOOK_FILE_RECEIVE) }",
        to: "0",
        caught_by: &["11-fd-passing-denied"],
    },
    Mutant {
        name: "no-ptrace-check",
        file: "guard-ebpf/src/main.rs",
        from: "decide(core::ptr::null_mut(), policy_id, 0, &Subject { target_tgid, ..Subject::new(HOOK_PTRACE, ACCESS_ALTER) })",
        to: "{ let _ = (policy_id, target_tgid); 0 }",
        caught_by: &["12-memory-read-of-unit-denied"],
    },
    Mutant {
        name: "no-unlink-check",
        file: "guard-ebpf/src/main.rs",
        from: "        let victim: *mut inode = load_ptr(dentry, off!(dentry_d_inode));\n        judge_inode(victim, &subject)\n    }\n}\n\n/// `path_truncate",
        to: "        let _ = (dentry, subject); 0\n    }\n}\n\n/// `path_truncate",
        caught_by: &["10-alteration-by-outsider-denied"],
    },
    // Self-protection and eviction (issue 7).
    Mutant {
        name: "guard-objects-reachable",
        file: "guard-ebpf/src/self_protect.rs",
        from: "    if unsafe { GUARD_OBJECTS.get(ObjKey { kind, id }) }.is_some() {\n        return only_guard(",
        to: "    if false && unsafe { GUARD_OBJECTS.get(ObjKey { kind, id }) }.is_some() {\n        return only_guard(",
        caught_by: &["19-root-cannot-touch-guard"],
    },
    Mutant {
        name: "foreign-lsm-loads-allowed",
        file: "guard-ebpf/src/self_protect.rs",
        from: "    if !dangerous {\n        return 0;",
        to: "    if true || !dangerous {\n        return 0;",
        caught_by: &["19-root-cannot-touch-guard"],
    },
    Mutant {
        name: "pins-and-binary-unprotected",
        file: "guard-ebpf/src/self_protect.rs",
        from: "    only_guard(inode, subject)\n}\n\n/// guard opened its pin directory",
        to: "    let _ = (inode, subject); 0\n}\n\n/// guard opened its pin directory",
        caught_by: &["18-agent-killed-enforcement-stays-and-is-adopted", "19-root-cannot-touch-guard"],
    },
    Mutant {
        name: "pin-mount-unmountable",
        file: "guard-ebpf/src/self_protect.rs",
        from: "    let pin = state.pin_mnt;\n    if pin == 0 {",
        to: "    let pin = state.pin_mnt;\n    if true || pin == 0 {",
        caught_by: &["19-root-cannot-touch-guard"],
    },
    Mutant {
        name: "agent-ptraceable",
        file: "guard-ebpf/src/self_protect.rs",
        from: "    if trust == 0 || (trust != TRUST_GUARD && !attach) {\n        return None;",
        to: "    if true || trust == 0 || (trust != TRUST_GUARD && !attach) {\n        return None;",
        caught_by: &["19-root-cannot-touch-guard"],
    },
    Mutant {
        name: "traced-exec-of-trusted-binary",
        file: "guard-ebpf/src/self_protect.rs",
        from: "    let traced = unsafe { crate::layout::load_u32(current_task(), off!(task_ptrace)) } != 0;\n    if !traced {",
        to: "    let traced = unsafe { crate::layout::load_u32(current_task(), off!(task_ptrace)) } != 0;\n    if true || !traced {",
        caught_by: &["19-root-cannot-touch-guard"],
    },
    Mutant {
        name: "links-not-pinned",
        file: "guard/src/kernel/pins.rs",
        from: "            link.pin(link_pin(&dir, name)).map_err(|e| anyhow!(e)).with_context(|| format!(\"pinning the link of {name}\"))?;",
        to: "            drop(link);",
        caught_by: &["18-agent-killed-enforcement-stays-and-is-adopted"],
    },
    Mutant {
        name: "retire-before-arm",
        file: "guard/src/run.rs",
        from: "            let mut k = Kernel::load(target, args.ringbuf_bytes, args.max_openers, false)?;",
        to: "            for old in &existing {\n                let _ = pins::retire(old);\n            }\n            let mut k = Kernel::load(target, args.ringbuf_bytes, args.max_openers, false)?;",
        caught_by: &["23-upgrade-replaces-instance-with-no-gap"],
    },
    Mutant {
        name: "cgroup-procs-open-to-all",
        file: "guard-ebpf/src/cgroup.rs",
        from: "    if subject.access & ACCESS_WRITE == 0 || may_join(policy_id) {",
        to: "    if true || subject.access & ACCESS_WRITE == 0 || may_join(policy_id) {",
        caught_by: &["22-root-cannot-become-the-unit"],
    },
    Mutant {
        name: "cgroup-mkdir-unjudged",
        file: "guard-ebpf/src/cgroup.rs",
        from: "        root == 0 || cgroup2 == 0 || root == cgroup2",
        to: "        root == 0 || cgroup2 == 0 || root != cgroup2",
        caught_by: &["22-root-cannot-become-the-unit"],
    },
    Mutant {
        name: "planted-child-is-an-insider",
        file: "guard-ebpf/src/decide.rs",
        from: "(cgroup_matches(policy) && !cgroup::current_tainted())",
        to: "cgroup_matches(policy)",
        caught_by: &["22-root-cannot-become-the-unit"],
    },
    Mutant {
        name: "rules-lost-on-eviction",
        file: "guard-ebpf/src/evict.rs",
        from: "    let Some(kept) = (unsafe { EVICTED.get(key) }) else {\n        return false;",
        to: "    let Some(kept) = (unsafe { EVICTED.get(key) }) else {\n        return false;\n    };\n    if true {\n        let _ = kept;\n        return false;",
        caught_by: &["20-rules-outlive-inode-eviction"],
    },
    // Issue 17: one build for every kernel's hook shapes.
    Mutant {
        name: "wrong-hook-variant",
        file: "guard/src/kernel/preflight.rs",
        // Always the last program built for a hook: the 4-argument `bpf`
        // on 6.1 and 6.12, where it would read `size` as the verdict.
        from: "let pick = guard_common::PROGRAM_VARIANTS.iter().find(|&&(n, _, p)| n == name && Some(p) == found);",
        to: "let pick = guard_common::PROGRAM_VARIANTS.iter().filter(|&&(n, _, _)| n == name).last();",
        caught_by: &["0-guard-attaches-on-this-kernel"],
    },
    Mutant {
        name: "proc-memory-files-open",
        file: "guard-ebpf/src/procfs.rs",
        from: "} else { unsafe { is_memory_file(dentry) } };",
        to: "} else { false };",
        caught_by: &["12-memory-read-of-unit-denied"],
    },
    Mutant {
        name: "proc-links-followed",
        file: "guard-ebpf/src/procfs.rs",
        // Every follower treated as the process itself.
        from: "    if target_tgid != 0 && target_tgid == (bpf_get_current_pid_tgid() >> 32) as u32 {",
        to: "    if true || target_tgid == (bpf_get_current_pid_tgid() >> 32) as u32 {",
        caught_by: &["12-memory-read-of-unit-denied"],
    },
    // Issue 18: the memory doors.
    Mutant {
        name: "lockdown-reasons-open",
        file: "guard-ebpf/src/memory.rs",
        from: "    if doors.lockdown_refused & bit == 0 {",
        to: "    if true || doors.lockdown_refused & bit == 0 {",
        caught_by: &["25-memory-doors-closed"],
    },
    Mutant {
        name: "foreign-bpf-loads-allowed",
        file: "guard-ebpf/src/self_protect.rs",
        from: "unsafe fn on_prog_load(prog_type: u32) -> i32 {\n    if active_gen() == 0 {",
        to: "unsafe fn on_prog_load(prog_type: u32) -> i32 {\n    if true || active_gen() == 0 {",
        caught_by: &["25-memory-doors-closed"],
    },
    Mutant {
        name: "perf-open-to-outsiders",
        file: "guard-ebpf/src/memory.rs",
        from: "    if trust == TRUST_GUARD || trust == TRUST_BPF_TOOL || trust == TRUST_SYSTEMD {\n        return 0;\n    }\n    let target",
        to: "    if true || trust == TRUST_GUARD || trust == TRUST_BPF_TOOL || trust == TRUST_SYSTEMD {\n        return 0;\n    }\n    let target",
        caught_by: &["25-memory-doors-closed"],
    },
    Mutant {
        name: "unit-cores-dumped",
        file: "guard-ebpf/src/memory.rs",
        from: "    if flags & PF_SIGNALED == 0 {",
        to: "    if true || flags & PF_SIGNALED == 0 {",
        caught_by: &["25-memory-doors-closed"],
    },
    Mutant {
        name: "unit-core-untagged",
        file: "guard-ebpf/src/memory.rs",
        // A core kept by `core_dumps = "keep"` is left as an ordinary file.
        from: "    if unit_policy(&unit).is_none() || !unsafe { is_reg(new_inode) } {",
        to: "    if true || unit_policy(&unit).is_none() || !unsafe { is_reg(new_inode) } {",
        caught_by: &["27-unit-core-kept-for-the-unit"],
    },
    Mutant {
        name: "dumping-signals-allowed",
        file: "guard-ebpf/src/memory.rs",
        from: "pub unsafe fn on_task_kill(target: *const u8, sig: u32) -> i32 {\n    if sig >= 64",
        to: "pub unsafe fn on_task_kill(target: *const u8, sig: u32) -> i32 {\n    if true || sig >= 64",
        caught_by: &["25-memory-doors-closed"],
    },
    Mutant {
        name: "swap-area-open",
        file: "guard-ebpf/src/swap.rs",
        // An active swap area reads for everyone, by any node.
        from: "    if active_gen() == 0 || !unsafe { active_swap(inode) } {",
        to: "    if true || active_gen() == 0 || !unsafe { active_swap(inode) } {",
        caught_by: &["26-swap-area-closed"],
    },
    Mutant {
        name: "kexec-image-read",
        file: "guard-ebpf/src/memory.rs",
        // kexec_file_load: the image read goes through.
        from: "    if doors.read_file_refused & (1u64 << id) == 0 || current_trust() == TRUST_GUARD {",
        to: "    if true || doors.read_file_refused & (1u64 << id) == 0 || current_trust() == TRUST_GUARD {",
        caught_by: &["25-memory-doors-closed"],
    },
    Mutant {
        name: "dm-table-compat-open",
        file: "guard-ebpf/src/main.rs",
        // A 32-bit dmsetup: the compat hook passes every command.
        from: "    ioctl_hook(&ctx, HOOK_FILE_IOCTL_COMPAT)",
        to: "    ctx.arg(3)",
        caught_by: &["26-swap-area-closed"],
    },
    Mutant {
        name: "dm-table-open",
        file: "guard-ebpf/src/swap.rs",
        // dmsetup table --showkeys: dm-crypt's key for everyone.
        from: "    if flags & DM_STATUS_TABLE_FLAG == 0 || current_trust() == TRUST_GUARD {",
        to: "    if true || flags & DM_STATUS_TABLE_FLAG == 0 || current_trust() == TRUST_GUARD {",
        caught_by: &["26-swap-area-closed"],
    },
    // Issue 8: systemd's lifecycle (caught by the systemd suite).
    Mutant {
        name: "setup-root-unmarked",
        file: "guard-ebpf/src/systemd.rs",
        // The root of setup's filesystem is not marked: on tmpfs/ramfs a
        // name in a directory with no rule is not looked at, so setup's
        // credentials are left to the agent's tag after the mount appears.
        from: "    let Some(e) = (unsafe { setup_sb_of(root as *const u8) }) else {\n        return;\n    };",
        to: "    let Some(e) = (unsafe { setup_sb_of(root as *const u8) }) else {\n        return;\n    };\n    if true {\n        let _ = e;\n        return;\n    }",
        caught_by: &["systemd-seed-restart-race-20"],
    },
    Mutant {
        name: "credentials-tagged-late",
        file: "guard-ebpf/src/systemd.rs",
        // Not tagged at creation (whatever writer systemd uses): the
        // agent's tag after the mount appears is all that is left.
        from: "    if !unsafe { is_reg(child) } {\n        return false;\n    }\n    let (state, unit)",
        to: "    if true || !unsafe { is_reg(child) } {\n        return false;\n    }\n    let (state, unit)",
        caught_by: &["systemd-seed-restart-race-20"],
    },
    Mutant {
        name: "refresh-never-bound",
        file: "guard-ebpf/src/systemd.rs",
        // A refreshed set (systemd 260 on) stays pending when attached: its
        // files stay closed to the unit itself. Run it on forky-7.2.
        from: "    if unsafe { (*e).state } != SETUP_SB_PENDING {\n        return 0;\n    }",
        to: "    if true || unsafe { (*e).state } != SETUP_SB_PENDING {\n        return 0;\n    }",
        caught_by: &["systemd-seed-loadcredential-refresh-race"],
    },
    Mutant {
        name: "unit-user-ignored",
        file: "guard-ebpf/src/decide.rs",
        from: "        || (policy.flags & POLICY_F_UNIT_USER != 0\n",
        to: "        || (policy.flags & POLICY_F_UNIT_USER != 0 && false\n",
        caught_by: &["systemd-seed-dynamicuser-encrypted-state"],
    },
    Mutant {
        name: "exe-binding-ignored",
        file: "guard-ebpf/src/decide.rs",
        from: "    if policy.flags & POLICY_F_EXE_BOUND == 0 {",
        to: "    if true || policy.flags & POLICY_F_EXE_BOUND == 0 {",
        caught_by: &["systemd-seed-exe-binding-shell-refused"],
    },
    Mutant {
        name: "setup-only-open-to-the-unit",
        file: "guard-ebpf/src/decide.rs",
        from: "        cgroup_ok && systemd::current_is_setup()\n    } else {",
        to: "        cgroup_ok\n    } else {",
        caught_by: &["systemd-seed-dynamicuser-encrypted-state", "systemd-seed-creds-decrypt-with-confined-host-key"],
    },
    Mutant {
        name: "reload-clears-before-switch",
        file: "guard/src/run.rs",
        from: "                Ok(next) => match next.activate(&mut k) {",
        to: "                Ok(next) => match { enf.clear(&mut k); next.activate(&mut k) } {",
        caught_by: &["systemd-reload-50-under-load-one-bad-set"],
    },
    // Issue 9: the package (caught by the package suite).
    Mutant {
        name: "unit-type-simple",
        file: "guard/debian/guard.service",
        from: "Type=notify\n",
        to: "Type=simple\n",
        caught_by: &["package-start-ready-after-hooks"],
    },
    Mutant {
        name: "unit-own-mount-namespace",
        file: "guard/debian/guard.service",
        from: "ProtectClock=yes\n",
        to: "ProtectClock=yes\nProtectSystem=strict\nReadWritePaths=/sys/fs/bpf\n",
        caught_by: &["package-start-ready-after-hooks"],
    },
    Mutant {
        name: "unit-retries-invalid-policy",
        file: "guard/debian/guard.service",
        from: "RestartPreventExitStatus=2 3\n",
        to: "",
        caught_by: &["package-failure-restart-and-exit-2"],
    },
    Mutant {
        name: "journald-lookups-journaled",
        file: "guard/src/feed/journal.rs",
        from: "Ok(item) if item.record.as_ref().is_some_and(journald_self_lookup) => {",
        to: "Ok(item) if false && item.record.as_ref().is_some_and(journald_self_lookup) => {",
        caught_by: &["package-metrics-scrape"],
    },
    Mutant {
        name: "status-counts-kernel-stats",
        file: "guard/src/admin.rs",
        from: "\"protected_files\": counted.files,",
        to: "\"protected_files\": protected,",
        caught_by: &["systemd-status-counts-credentials"],
    },
    Mutant {
        name: "suggest-root-shell-not-flagged",
        file: "guard/src/suggest/group.rs",
        from: "} else if is_root_shell(s) {",
        to: "} else if false && is_root_shell(s) {",
        caught_by: &["systemd-suggest-audit-to-enforce"],
    },
    Mutant {
        name: "journal-budget-off",
        file: "guard/src/run.rs",
        from: "let limit = (args.journal_rate_burst > 0).then(",
        to: "let limit = (args.journal_rate_burst > u32::MAX).then(",
        caught_by: &["package-journal-flood-counted"],
    },
    Mutant {
        name: "prerm-keeps-enforcing",
        file: "guard/debian/prerm",
        from: "if ! /usr/bin/guard unload; then",
        to: "if ! true; then",
        caught_by: &["package-remove-unloads-purge-cleans"],
    },
];

/// The suite scenarios a mutant run needs (the fast ones, plus whatever the
/// chosen mutants' catchers are).
fn mutant_scenarios(chosen: &[&Mutant]) -> String {
    let mut names: Vec<&str> = vec![
        "control", "1-owner-allowed", "2-login-user-denied", "3-same-uid-other-cgroup-denied",
        "4-root-outside-unit-denied", "5-unit-cgroup-wrong-uid-denied", "7-new-file-in-protected-dir",
        "8-unrelated-unaffected-and-audit-recorded", "10-alteration-by-outsider-denied", "11-fd-passing-denied",
        "12-memory-read-of-unit-denied",
    ];
    for m in chosen {
        for c in m.caught_by {
            // 25 uses the allowed BPF tool the agent of 23 trusts.
            if *c == "25-memory-doors-closed" && !names.contains(&"23-upgrade-replaces-instance-with-no-gap") {
                names.push("23-upgrade-replaces-instance-with-no-gap");
            }
            if !names.contains(c) {
                names.push(c);
            }
        }
    }
    names.join(",")
}

fn mutants(kernel: &str, names: &[String]) -> Result<()> {
    setup::ensure_tools(false)?;
    let k = select_kernels(Some(kernel))?.remove(0);
    if let Some(unknown) = names.iter().find(|n| !MUTANTS.iter().any(|m| m.name == n.as_str())) {
        bail!("no mutant named {unknown}; choose from {:?}", MUTANTS.iter().map(|m| m.name).collect::<Vec<_>>());
    }
    let chosen: Vec<&Mutant> = MUTANTS.iter().filter(|m| names.is_empty() || names.iter().any(|n| n == m.name)).collect();
    let only = mutant_scenarios(&chosen);
    let mut summary = Vec::new();
    for m in chosen {
        let original = std::fs::read_to_string(root().join(m.file))?;
        if original.matches(m.from).count() != 1 {
            bail!("mutant {}: its pattern no longer matches {} exactly once; update MUTANTS", m.name, m.file);
        }
        step(&format!("mutant {}: building a broken guard ({})", m.name, m.file));
        // A private copy of the workspace's sources, patched.
        let work = vm_dir().join("mutants").join(m.name);
        let _ = std::fs::remove_dir_all(&work);
        for dir in ["guard-common", "guard-ebpf", "guard", "vm-tests", "xtask", "schema", ".cargo", "policies"] {
            copy_tree(&root().join(dir), &work.join(dir))?;
        }
        for file in ["Cargo.toml", "Cargo.lock", "README.md"] {
            std::fs::copy(root().join(file), work.join(file))?;
        }
        std::fs::write(work.join(m.file), original.replacen(m.from, m.to, 1))?;
        let target = root().join("target/mutant-build");
        let b = build_into(&target, &work)?;
        // Mutants of what only real systemd exercises run the systemd suite;
        // those of the package (unit, scripts, journal) the package suite.
        let out = if m.caught_by.iter().all(|c| c.starts_with("package-")) {
            let debs = test_debs(&work, &target, &b)?;
            run_package(&k, &b, &debs, &format!("mutant-{}", m.name), Duration::from_secs(900))?
        } else if m.caught_by.iter().all(|c| c.starts_with("systemd-")) {
            run_systemd_tagged(&k, &b, "systemd", &format!("mutant-{}", m.name), Duration::from_secs(900))?
        } else {
            run_busybox(&k, &b, &format!("mutant-{}", m.name), &format!("/bin/vm-tests suite --only {only}"), Duration::from_secs(900))?
        };
        let failed: Vec<&str> = m
            .caught_by
            .iter()
            .copied()
            .filter(|s| out.log.lines().any(|l| l.contains(&format!("SCENARIO {s}: FAIL"))))
            .collect();
        let caught = failed.len() == m.caught_by.len();
        summary.push(format!(
            "mutant {:<28} {}: failing scenarios {:?} (expected {:?})",
            m.name,
            if caught { "CAUGHT" } else { "NOT CAUGHT" },
            failed,
            m.caught_by
        ));
    }
    println!("\n{}", summary.join("\n"));
    if summary.iter().any(|s| s.contains("NOT CAUGHT")) {
        bail!("the suite missed a mutant");
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_pattern_matches_exactly_once() {
        for m in MUTANTS {
            let text = std::fs::read_to_string(root().join(m.file)).unwrap();
            assert_eq!(text.matches(m.from).count(), 1, "mutant {} no longer matches {}", m.name, m.file);
            assert!(!m.caught_by.is_empty(), "mutant {} names no scenario that must catch it", m.name);
        }
    }

    #[test]
    fn bench_report_strips_only_kernel_lines() {
        let log = "GUARD-BENCH-JSON-BEGIN\n{\n  \"m\": [\n    [1, 2]\n  ],\n[   12.345678] random: crng init done\n  \"k\": 1\n}\nGUARD-BENCH-JSON-END\n";
        let v = bench_report(log).unwrap();
        assert_eq!(v["m"][0][1], 2);
        assert_eq!(v["k"], 1);
        assert!(is_kernel_line("[    0.000000] Linux version"));
        assert!(!is_kernel_line("    [1, 2]"));
    }
}
