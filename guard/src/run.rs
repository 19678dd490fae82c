//! `guard run`: the agent.
//!
//! 1. Validate every policy (nothing touches the kernel if one is wrong).
//! 2. Check the kernel: BPF LSM active, BTF, cgroup v2.
//! 3. Adopt the pinned instance if it already enforces this very object and
//!    policy set (nothing reloaded, nothing re-attached). Otherwise load the
//!    object with this kernel's struct layout, fill the maps, tag the
//!    protected inodes, and only then arm it: attach every hook and pin it.
//!    An older instance is retired after the new one enforces: no gap.
//! 4. Print a one-line summary, then serve: the feed, subscribers, metrics,
//!    and unit restarts, until SIGINT/SIGTERM. Stopping the agent does NOT
//!    stop enforcement: the pinned instance keeps deciding. `guard unload`
//!    is the one way to stop it.

use std::{
    io::IsTerminal,
    net::SocketAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use libsystemd::daemon::NotifyState;
use guard_common::DEFAULT_RINGBUF_BYTES;
use tokio::{io::unix::AsyncFd, signal::unix::{signal, SignalKind}};

use crate::{
    enforce::{self, Change, Enforcer},
    exit,
    feed::{self, record::{Admin, Namer}, Hub},
    kernel::{self, pins, preflight, trust::{Exe, Trust}, Kernel},
    policy,
};

/// Where `guard run` writes its pid (for `guard unload` and `guard reload`).
pub const DEFAULT_PID_FILE: &str = "/run/guard/guard.pid";
/// Where the agent writes the outcome of each reload (JSON), for `guard reload`.
pub const RELOAD_RESULT: &str = "/run/guard/reload-result";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Directory of policy files (*.toml), or one policy file.
    #[arg(long)]
    pub policy_dir: PathBuf,
    /// Write the feed (JSON lines) here instead of stdout.
    #[arg(long)]
    pub events_file: Option<PathBuf>,
    /// Unix socket for `guard events --follow` subscribers (root-only).
    #[arg(long, default_value = feed::socket::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Do not open the subscriber socket.
    #[arg(long)]
    pub no_socket: bool,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_parser = crate::parse_addr)]
    pub metrics: Option<SocketAddr>,
    /// Keep the kernel's BPF run-time statistics on, for the per-hook run
    /// counts and times in --metrics. Off by default: while on, every BPF
    /// program on the host (guard's hooks on every process's path, and any
    /// other tool's) pays two clock reads per run.
    #[arg(long)]
    pub prog_stats: bool,
    /// Also send every feed record to the systemd journal (structured, with
    /// a stable MESSAGE_ID per kind). `auto`: when started by systemd.
    #[arg(long, value_enum, default_value_t = feed::journal::JournalMode::Auto)]
    pub journal: feed::journal::JournalMode,
    /// journald's rate limit for this unit, in entries per
    /// --journal-rate-interval: journald.conf's RateLimitBurst= (10000 by
    /// default) or the unit's LogRateLimitBurst=. guard's records use at
    /// most 80% of it and the rest are withheld, counted
    /// (guard_journal_withheld_total) and told in a gap entry, instead of
    /// being dropped by journald unseen. 0: no limit.
    #[arg(long, default_value_t = 10000, value_name = "ENTRIES")]
    pub journal_rate_burst: u32,
    /// journald's RateLimitIntervalSec= (or the unit's LogRateLimitIntervalSec=), in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub journal_rate_interval: u64,
    /// Create this file once the hooks are attached (for supervisors and tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    #[arg(long, default_value = "/etc/passwd")]
    pub passwd: PathBuf,
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// Ring buffer size in bytes (a power of two, at least a page).
    #[arg(long, default_value_t = DEFAULT_RINGBUF_BYTES)]
    pub ringbuf_bytes: u32,
    /// Opener processes whose denials are counted (and coalesced) one by one
    /// at once: (process, file, decision) keys in the kernel's table. A
    /// decision that finds no room is reported on its own (counted as
    /// `untracked`, and as `lost` if that record is dropped too).
    #[arg(long, default_value_t = guard_common::DEFAULT_MAX_BURSTS, value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub max_openers: u32,
    /// Re-check units at least this often, in addition to cgroup tree events.
    #[arg(long, default_value_t = 1000)]
    pub reconcile_ms: u64,
    /// Another BPF security tool (by path; trusted by the file's identity)
    /// allowed to load and attach LSM and fmod_ret programs while guard
    /// enforces. It can never reach guard's own maps, programs or pins.
    #[arg(long, value_name = "PATH")]
    pub allow_bpf_exe: Vec<PathBuf>,
    /// Another executable (by file identity) that may put processes into
    /// protected units' cgroups, besides systemd (PID 1's executable and
    /// systemd-executor, always trusted unless --no-systemd-cgroup-writer).
    #[arg(long, value_name = "PATH")]
    pub cgroup_writer: Vec<PathBuf>,
    /// Do not trust PID 1's executable (for hosts whose PID 1 is not systemd).
    #[arg(long)]
    pub no_systemd_cgroup_writer: bool,
    /// bpffs directory holding guard's pinned instances.
    #[arg(long, default_value = pins::PIN_ROOT)]
    pub pin_root: PathBuf,
    #[arg(long, default_value = DEFAULT_PID_FILE)]
    pub pid_file: PathBuf,
}

pub fn main(args: RunArgs) -> ExitCode {
    // 1. Policies.
    let set = match policy::load(&args.policy_dir, &args.passwd) {
        Ok(set) => set,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("guard: nothing was loaded; the kernel is unchanged");
            return ExitCode::from(exit::POLICY_INVALID);
        }
    };
    for w in &set.warnings {
        eprintln!("{w}");
    }
    // Secrets already out (SetCredential=, Environment=): asked of systemd
    // on the side, so that a slow D-Bus never delays enforcement.
    let policies = set.policies.clone();
    std::thread::spawn(move || {
        for w in crate::exposure::for_policies(&policies) {
            eprintln!("warning: {w}");
        }
    });
    // 2. Kernel features.
    let sys = preflight::SysPaths { cgroup_root: args.cgroup_root.clone(), ..Default::default() };
    if let Err(missing) = preflight::check(&sys) {
        for m in &missing {
            eprintln!("error: {m}");
        }
        eprintln!("guard: this kernel cannot run guard; nothing was loaded");
        return ExitCode::from(exit::KERNEL_UNSUPPORTED);
    }
    // Parsed once: for the hooks here, for the struct layout in `serve`.
    let (btf, programs) = match kernel::btf::Btf::from_file(Path::new("/sys/kernel/btf/vmlinux"))
        .map_err(|e| vec![e.to_string()])
        .and_then(|btf| match preflight::check_hooks(&btf) {
            Ok(programs) => Ok((btf, programs)),
            Err(m) => Err(m.iter().map(|x| x.to_string()).collect()),
        }) {
        Ok(found) => found,
        Err(missing) => {
            for m in &missing {
                eprintln!("error: {m}");
            }
            eprintln!("guard: this kernel cannot run guard; nothing was loaded");
            return ExitCode::from(exit::KERNEL_UNSUPPORTED);
        }
    };
    if !args.ringbuf_bytes.is_power_of_two() || args.ringbuf_bytes < 4096 {
        eprintln!("error: --ringbuf-bytes {}: must be a power of two, at least 4096", args.ringbuf_bytes);
        return ExitCode::FAILURE;
    }
    // 3 and 4.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(serve(args, set, btf, programs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    args: RunArgs,
    set: policy::PolicySet,
    btf: kernel::btf::Btf,
    programs: preflight::Programs,
) -> Result<()> {
    let t0 = Instant::now();
    let target = kernel::Target::with_programs(&btf, programs)?;
    for c in &target.programs.0 {
        if guard_common::PROGRAM_VARIANTS
            .iter()
            .filter(|v| v.0 == c.name)
            .count()
            > 1
        {
            eprintln!(
                "guard: LSM hook `{}` takes {} parameters here: loading {}",
                c.hook, c.params, c.elf
            );
        }
    }
    pins::ensure_bpffs()?;
    for gap in preflight::hardening_gaps() {
        log::warn!("host hardening: {gap}");
    }
    // A dynamically linked guard could be made to run root's code
    // (LD_PRELOAD) with guard's trust: it is never trusted.
    if !kernel::trust::is_static_elf(Path::new("/proc/self/exe"))? {
        anyhow::bail!(
            "this guard binary is dynamically linked, so root could load its own code into it (LD_PRELOAD) and act \
             with guard's trust; guard only trusts static binaries. Build it with \
             `RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --target x86_64-unknown-linux-gnu -p guard` \
             (what `cargo xtask build` does). Nothing was loaded"
        );
    }
    let trust = Trust::new(
        &args.allow_bpf_exe,
        &args.cgroup_writer,
        !args.no_systemd_cgroup_writer,
    )?;
    let Started {
        mut k,
        enforcer,
        how,
        replaced,
    } = start_instance(&args, &set, &trust, &target)?;
    let ours = k.instance.clone().context("no instance")?;
    // Swap: the areas' devices and files are judged before readiness.
    let swap_areas = kernel::swap::start(&mut k).context("bringing the kernel's view of the swap areas up to date")?;
    let ring = k.events.take().context("ring buffer already taken")?;
    let bursts = k.bursts.take();
    let klog = k.logger.take();
    let stats_fd = if args.prog_stats {
        Some(kernel::enable_runtime_stats()?)
    } else {
        None
    };
    eprintln!(
        "{} [{how}; hooks: {}] ({} ms)",
        enforcer.summary(),
        k.attached().join(","),
        t0.elapsed().as_millis()
    );
    let (swap_line, swap_warnings) = kernel::swap::report(&swap_areas);
    eprintln!("{swap_line}");
    for w in swap_warnings {
        log::warn!("host hardening: {w}");
    }
    if let Some(dir) = args.pid_file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&args.pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing --pid-file {}", args.pid_file.display()))?;

    let kernel = Arc::new(Mutex::new(k));
    kernel::swap::spawn_watcher(kernel.clone(), swap_areas);
    let enforcer = Arc::new(Mutex::new(enforcer));
    let hub = Hub::new();
    let journal = spawn_consumers(&args, &kernel, &hub, klog)?;
    let namer = Namer::new(&args.passwd, &args.cgroup_root);
    let mut reader = tokio::spawn(feed::read_ring(
        ring,
        bursts,
        hub.clone(),
        enforcer.clone(),
        namer,
    ));
    let mut watcher = tokio::spawn(watch_units(
        kernel.clone(),
        enforcer.clone(),
        Duration::from_millis(args.reconcile_ms),
    ));

    // This start's admin records go out before readiness is told.
    hub.stats.enforcing.store(1, std::sync::atomic::Ordering::Relaxed);
    hub.publish_admin(&Admin::new("agent-started", &ours, &how));
    for r in &replaced {
        hub.publish_admin(&Admin::new("replaced", &ours, r));
    }
    // Ready: every hook is attached and every consumer of the feed runs.
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing --ready-file {}", path.display()))?;
    }
    let status = format!(
        "enforcing: {}{}",
        enforcer.lock().unwrap().summary(),
        if journal { "; feed to the journal" } else { "" }
    );
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut reloads = 0u64;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                reloads += 1;
                let ctx = ReloadCtx { args: &args, trust: &trust, kernel: &kernel, enforcer: &enforcer, hub: &hub, instance: &ours };
                tokio::task::block_in_place(|| reload(&ctx, reloads));
                continue;
            }
            _ = term.recv() => log::info!("SIGTERM"),
            _ = int.recv() => log::info!("SIGINT"),
            r = &mut reader => log::error!("feed reader stopped: {r:?}"),
            r = &mut watcher => log::error!("unit watcher stopped: {r:?}"),
        }
        break;
    }
    stop(&args, &kernel, &trust, &hub, &ours).await;
    drop(stats_fd);
    Ok(())
}

/// The instance this agent serves, and what happened to get it.
struct Started {
    k: Kernel,
    enforcer: Enforcer,
    how: String,
    /// One line per older instance retired.
    replaced: Vec<String>,
}

/// Adopts the pinned instance if it already enforces this very object and
/// policy set; otherwise loads, fills and arms a new one. Older instances
/// are retired only once this one enforces (no gap).
fn start_instance(
    args: &RunArgs,
    set: &policy::PolicySet,
    trust: &Trust,
    target: &kernel::Target,
) -> Result<Started> {
    let policy_hash = enforce::policy_hash(set, &trust.fingerprint());
    let object_hash = target.object_hash();
    let existing = pins::instances(&args.pin_root);
    // Adopt only a complete instance of this very object and policy set
    // (an arm interrupted between pins leaves one with links missing).
    let all_hooks: Vec<String> = {
        let mut v: Vec<String> = guard_common::ENFORCING_PROGRAMS.iter().map(|(n, _)| n.to_string()).collect();
        v.sort();
        v
    };
    let adoptable = existing.iter().find(|d| {
        pins::read_state(d).is_ok_and(|st| st.policy_hash == policy_hash && st.object_hash == object_hash)
            && pins::link_names(d) == all_hooks
    });
    let (k, enforcer, how) = match adoptable {
        Some(dir) => {
            let mut k = Kernel::adopt(dir)?;
            // The generation in force goes on: same ids, same slots.
            let mut enforcer = Enforcer::new(set, &args.cgroup_root, k.active_gen().max(1));
            enforcer
                .install(&mut k)
                .context("bringing the adopted instance up to date")?;
            enforcer.activate(&mut k)?;
            (k, enforcer, format!("adopted instance {} (no reload, no re-attach)", dir.display()))
        }
        None => {
            let mut k = Kernel::load(target, args.ringbuf_bytes, args.max_openers, false)?;
            let mut enforcer = Enforcer::new(set, &args.cgroup_root, 1);
            enforcer
                .install(&mut k)
                .context("installing policies (nothing was attached)")?;
            enforcer.activate(&mut k)?;
            let dir = k.arm(&args.pin_root, trust, policy_hash, object_hash)?;
            (k, enforcer, format!("armed instance {}", dir.display()))
        }
    };
    let ours = k.instance.clone().context("no instance")?;
    let mut replaced = Vec::new();
    for old in existing.iter().filter(|d| **d != ours) {
        let was = pins::read_state(old).map(|st| format!("policy {:016x} object {:016x}", st.policy_hash, st.object_hash)).unwrap_or_default();
        match pins::retire(old) {
            Ok(()) => {
                log::info!("retired the older instance {}", old.display());
                replaced.push(format!(
                    "{} ({was}) replaced by {} (policy {policy_hash:016x} object {object_hash:016x}, policies from {})",
                    old.display(),
                    ours.display(),
                    args.policy_dir.display()
                ));
            }
            Err(e) => log::warn!(
                "could not retire the older instance {} ({e:#}); it keeps enforcing beside this one \
                 (both must allow, so this is stricter, never weaker). Remove it with the guard \
                 binary that loaded it: `guard unload`",
                old.display()
            ),
        }
    }
    Ok(Started {
        k,
        enforcer,
        how,
        replaced,
    })
}

/// Starts every consumer of the feed (output, subscribers, metrics, the
/// kernel-side log, the journal), so the first record has somewhere to go.
/// Returns whether the feed goes to the journal.
fn spawn_consumers(
    args: &RunArgs,
    kernel: &Arc<Mutex<Kernel>>,
    hub: &Hub,
    klog: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
) -> Result<bool> {
    let output: Box<dyn std::io::Write + Send> = match &args.events_file {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening --events-file {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let human = args.events_file.is_none() && std::io::stdout().is_terminal();
    let journal = args.journal.wanted();
    // Under systemd, stdout is itself the journal: writing the JSON lines
    // there as well would put every record in twice (once structured, once
    // as an opaque MESSAGE). An --events-file or a terminal still gets them.
    if args.events_file.is_some() || human || !journal {
        feed::spawn_output(hub, output, human);
    }
    if !args.no_socket {
        let listener = feed::socket::bind(&args.socket)?;
        tokio::spawn(feed::socket::serve(listener, hub.clone()));
    }
    if let Some(addr) = args.metrics {
        let (kernel, hub, prog_stats) = (kernel.clone(), hub.clone(), args.prog_stats);
        tokio::spawn(async move {
            if let Err(e) = feed::metrics::serve(addr, kernel, hub, prog_stats).await {
                log::error!("metrics: {e:#}");
            }
        });
    }
    if let Some(klog) = klog {
        tokio::spawn(async move {
            if let Err(e) = drain_kernel_log(klog).await {
                log::error!("kernel-side log (aya-log) stopped; program diagnostics are lost from here on: {e:#}");
            }
        });
    }
    if journal {
        let limit = (args.journal_rate_burst > 0).then(|| feed::journal::RateLimit {
            burst: args.journal_rate_burst,
            interval: Duration::from_secs(args.journal_rate_interval),
        });
        feed::journal::spawn(hub, limit);
    }
    Ok(journal)
}

/// The agent stops; the kernel keeps enforcing unless the instance was
/// unloaded. Says which, on the feed and the console.
async fn stop(args: &RunArgs, kernel: &Arc<Mutex<Kernel>>, trust: &Trust, hub: &Hub, ours: &Path) {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping the agent; the kernel keeps enforcing".into()),
    ]);
    // Let the feed drain what the kernel already wrote.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if ours.exists() {
        handover_if_replaced(kernel, &trust.guard, hub, ours);
        hub.publish_admin(&Admin::new(
            "agent-stopped",
            ours,
            "the agent stopped; the kernel keeps enforcing this instance (`guard unload` stops it)",
        ));
        eprintln!("guard: agent stopping; instance {} keeps enforcing", ours.display());
    } else {
        let by = std::fs::read_to_string(crate::UNLOAD_NOTE).unwrap_or_default();
        hub.publish_admin(&Admin::new("unloaded", ours, by.trim()));
        eprintln!("guard: the instance was unloaded (`guard unload`); exiting");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    if !args.no_socket {
        let _ = std::fs::remove_file(&args.socket);
    }
    let _ = std::fs::remove_file(&args.pid_file);
}

/// Tells systemd (`Type=notify`) how the agent is doing; a no-op when
/// systemd did not start it.
fn notify(state: &[NotifyState]) {
    if let Err(e) = libsystemd::daemon::notify(false, state) {
        log::warn!("sd_notify: {e}");
    }
}

struct ReloadCtx<'a> {
    args: &'a RunArgs,
    trust: &'a Trust,
    kernel: &'a Arc<Mutex<Kernel>>,
    enforcer: &'a Arc<Mutex<Enforcer>>,
    hub: &'a Hub,
    instance: &'a Path,
}

/// SIGHUP: reads the policy directory again and, if every file is valid,
/// switches to the new set in one step (see `Enforcer::prepare_next`): each
/// decision is made wholly under the old set or wholly under the new one.
/// A set with an error changes nothing. The outcome goes to the log, the
/// feed (`reloaded` / `reload-failed`) and `RELOAD_RESULT`.
fn reload(c: &ReloadCtx<'_>, seq: u64) {
    let t = Instant::now();
    let outcome: Result<(u32, String), (u8, String)> = match policy::load(&c.args.policy_dir, &c.args.passwd) {
        Err(errors) => Err((exit::POLICY_INVALID, errors.to_string())),
        Ok(set) => {
            let hash = enforce::policy_hash(&set, &c.trust.fingerprint());
            let mut enf = c.enforcer.lock().unwrap();
            let mut k = c.kernel.lock().unwrap();
            match enf.prepare_next(&set, &mut k) {
                Err(e) => Err((1, format!("{e:#}"))),
                Ok(next) => match next.activate(&mut k) {
                    Err(e) => {
                        next.clear(&mut k);
                        Err((1, format!("{e:#}")))
                    }
                    Ok(()) => {
                        // The old generation is out of force; once no decision
                        // can still be reading it, it goes.
                        kernel::wait_for_decisions();
                        enf.clear(&mut k);
                        if let Err(e) = pins::set_policy_hash(&mut k, hash) {
                            log::warn!("recording the new policy fingerprint: {e:#}");
                        }
                        let gen = next.gen;
                        *enf = next;
                        Ok((gen, format!(
                            "generation {gen} in force: {} policies from {} (policy {hash:016x}) in {} ms; {}",
                            set.policies.len(),
                            c.args.policy_dir.display(),
                            t.elapsed().as_millis(),
                            enf.summary()
                        )))
                    }
                },
            }
        }
    };
    let (ok, code, generation, message) = match &outcome {
        Ok((gen, m)) => (true, 0, *gen, m.clone()),
        Err((code, m)) => (false, *code, c.enforcer.lock().unwrap().gen, format!("{m}\nguard: the policies in force are unchanged")),
    };
    notify(&[NotifyState::Status(if ok { format!("enforcing: generation {generation} in force") } else { format!("enforcing generation {generation}; the last reload failed") })]);
    if ok {
        log::info!("reload: {message}");
        c.hub.publish_admin(&Admin::new("reloaded", c.instance, &message));
    } else {
        log::error!("reload failed: {message}");
        c.hub.publish_admin(&Admin::new("reload-failed", c.instance, &message));
    }
    let result = serde_json::json!({
        "pid": std::process::id(),
        "seq": seq,
        "ok": ok,
        "exit_code": code,
        "generation": generation,
        "message": message,
    });
    let tmp = format!("{RELOAD_RESULT}.tmp");
    if let Err(e) = std::fs::write(&tmp, format!("{result}\n")).and_then(|()| std::fs::rename(&tmp, RELOAD_RESULT)) {
        log::warn!("writing {RELOAD_RESULT}: {e}");
    }
}

/// A package upgrade renames a new binary over guard's. The running agent
/// is the only process that can vouch for it: on its way out it adds the
/// new file's identity to what the instance trusts, so the upgraded agent
/// can adopt (or replace) the instance with no gap. Recorded on the feed,
/// since whoever can replace guard's binary and restart it can change guard
/// (as `guard unload` can stop it): an admin act, never a silent one.
fn handover_if_replaced(kernel: &Arc<Mutex<Kernel>>, current: &Exe, hub: &Hub, instance: &Path) {
    let Ok(now) = Exe::of(&current.path) else { return };
    if now.key == current.key {
        return;
    }
    let mut k = kernel.lock().unwrap();
    let res = k.trust_exe(&now, guard_common::TRUST_GUARD);
    let detail = match res {
        Ok(_) => format!("{} was replaced (now dev {}:{} ino {}); trust handed over to it", now.path.display(), now.key.dev >> 20, now.key.dev & 0xfffff, now.key.ino),
        Err(e) => format!("{} was replaced, but handing trust over failed: {e:#}", now.path.display()),
    };
    log::warn!("{detail}");
    hub.publish_admin(&Admin::new("handover", instance, &detail));
}

/// Re-resolves units and protected paths on every change in the watched
/// cgroup directories (inotify: systemd mkdirs/rmdirs a unit's cgroup on
/// start/stop), on every change of the mount table (systemd moves a fresh
/// credentials mount into place on each start), and at least every `period`.
async fn watch_units(kernel: Arc<Mutex<Kernel>>, enforcer: Arc<Mutex<Enforcer>>, period: Duration) -> Result<()> {
    let inotify = Inotify::new()?;
    let mut watched = Vec::new();
    let mut interval = tokio::time::interval(period);
    // SAFETY: the inotify fd is owned by the AsyncFd for its whole life.
    let afd = unsafe { AsyncFd::register(inotify) }.map_err(|e| anyhow::anyhow!("registering inotify: {e}"))?;
    // /proc/self/mountinfo signals POLLPRI whenever the mount table changes.
    let mounts = std::fs::File::open("/proc/self/mountinfo").context("opening /proc/self/mountinfo")?;
    // SAFETY: the file is owned by the AsyncFd for its whole life.
    let mounts = unsafe { AsyncFd::register_with_interest(mounts, tokio::io::Interest::PRIORITY) }
        .map_err(|e| anyhow::anyhow!("watching /proc/self/mountinfo: {e}"))?;
    loop {
        {
            let mut enf = enforcer.lock().unwrap();
            let mut k = kernel.lock().unwrap();
            for change in enf.reconcile(&mut k) {
                match change {
                    Ok(Change::Started { unit, cgroup, id, tagged }) => {
                        log::info!("{unit} started: cgroup {cgroup} (id {id}); {tagged} inodes tagged")
                    }
                    Ok(Change::Stopped { unit }) => log::info!("{unit} stopped: its files are closed to all"),
                    Ok(Change::Rebound { unit, path }) => {
                        log::warn!("{unit}: {} was replaced; the new file is bound, the old one no longer opens the unit's files", path.display())
                    }
                    Ok(Change::Tagged { unit, path, count }) => {
                        log::info!("{unit}: {} appeared; {count} inodes tagged", path.display())
                    }
                    Err(e) => log::error!("reconcile: {e:#}"),
                }
            }
            for dir in enf.watch_dirs() {
                if !watched.contains(&dir) && afd.get_ref().add(&dir).is_ok() {
                    watched.push(dir);
                }
            }
        }
        tokio::select! {
            r = afd.readable() => {
                let mut g = r?;
                afd.get_ref().drain();
                g.clear_ready();
            }
            r = mounts.ready(tokio::io::Interest::PRIORITY) => {
                r?.clear_ready();
            }
            _ = interval.tick() => {}
        }
    }
}

/// Forwards the programs' aya-log records (internal errors, failed
/// inheritance) to the agent's log as they arrive.
async fn drain_kernel_log(logger: aya_log::EbpfLogger<&'static dyn log::Log>) -> Result<()> {
    // SAFETY: the logger owns its ring buffer fd for the AsyncFd's whole life.
    let mut afd = unsafe { AsyncFd::register(logger) }.map_err(|e| anyhow::anyhow!("registering the kernel log: {e}"))?;
    loop {
        let mut g = afd.readable_mut().await?;
        g.get_inner_mut().flush();
        g.clear_ready();
    }
}

/// A minimal inotify handle: directory create/delete events only.
struct Inotify(OwnedFd);

impl Inotify {
    fn new() -> Result<Self> {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("inotify_init1");
        }
        // SAFETY: fd is a fresh, valid descriptor we own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, dir: &Path) -> Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
        let mask = libc::IN_CREATE | libc::IN_DELETE | libc::IN_DELETE_SELF | libc::IN_MOVED_TO;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.0.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("watching {}", dir.display()));
        }
        Ok(())
    }

    fn drain(&self) {
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a valid buffer of the given length.
        while unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

impl AsRawFd for Inotify {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}
