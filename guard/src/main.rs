//! guard: kernel-enforced confinement of a systemd unit's secrets.
//!
//! `guard check` validates policies, `guard policy from-unit` writes one
//! from what systemd knows of a unit, `guard run` enforces them, `guard
//! events --follow` tails the denial feed of a running agent, and `guard
//! bench` measures what the hook costs each `open()`. `guard completions`
//! and the hidden `guard manpages` generate shell completions and man pages
//! from this clap definition (`cli_docs.rs`).

mod admin;
mod bench;
mod bench_host;
mod bench_peers;
mod cli_docs;
mod enforce;
mod exposure;
mod feed;
mod from_unit;
mod kernel;
mod policy;
mod protected;
mod run;
mod suggest;
mod units;

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode};

pub use admin::UNLOAD_NOTE;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "guard",
    version,
    about = "Kernel-enforced secret confinement for systemd units (BPF LSM)",
    after_long_help = "Examples:
  guard check /etc/guard/policies                  validate, without touching the kernel
  sudo guard run --policy-dir /etc/guard/policies  enforce (the kernel keeps enforcing after the agent stops)
  sudo guard status                                what the kernel enforces now
  sudo guard events --unit myapp                   tail the denial feed of a running agent

Exit codes: 0 ok, 1 other error, 2 invalid policy, 3 kernel lacks a feature, 4 not enforcing (status)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate policies without touching the kernel.
    Check {
        /// A policy directory (*.toml) or a single policy file.
        path: PathBuf,
        /// Where user names are looked up.
        #[arg(long, default_value = "/etc/passwd")]
        passwd: PathBuf,
    },
    /// Write policies.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Load policies and enforce. The kernel keeps enforcing after the agent
    /// stops; a restarted agent adopts what is already enforcing.
    Run(run::RunArgs),
    /// What the kernel enforces now, per unit, read from the kernel (works
    /// with no agent running). Exit 0 while enforcing, 4 when not.
    Status {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = kernel::pins::PIN_ROOT)]
        pin_root: PathBuf,
        #[arg(long, default_value = "/sys/fs/cgroup")]
        cgroup_root: PathBuf,
        /// The policy directory in force: protected files are counted under
        /// its paths (and each unit's /run/credentials/<unit>/).
        #[arg(long, default_value = "/etc/guard/policies")]
        policy_dir: PathBuf,
    },
    /// Stop enforcing: remove guard's pinned programs and maps (root, with
    /// the guard binary the instance trusts). Recorded on the feed.
    Unload {
        #[arg(long, default_value = kernel::pins::PIN_ROOT)]
        pin_root: PathBuf,
        #[arg(long, default_value = run::DEFAULT_PID_FILE)]
        pid_file: PathBuf,
    },
    /// Make the running agent read its policy directory again and switch to
    /// it atomically (as SIGHUP does). Exit 0: in force; 2: the set has an
    /// error (every one is printed) and the old set stays in force.
    Reload {
        #[arg(long, default_value = run::DEFAULT_PID_FILE)]
        pid_file: PathBuf,
        /// How long to wait for the agent's answer, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Tail the denial feed of a running agent: one human line per record on
    /// a terminal, the agent's JSON lines otherwise.
    ///
    /// Filters: each given filter must match, any of its values may. `gap`
    /// records (lost records) always pass; `admin` records only when no
    /// filter is given; `tamper` records have no unit.
    Events {
        /// Keep following (the only mode; accepted for clarity).
        #[arg(long, short)]
        follow: bool,
        /// The agent's feed socket (`guard run --socket`).
        #[arg(long, default_value = feed::socket::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Only records of this protected unit ("myapp" means "myapp.service"). Repeatable.
        #[arg(long, value_name = "UNIT")]
        unit: Vec<String>,
        /// Only records with this decision. Repeatable.
        #[arg(long, value_enum)]
        decision: Vec<feed::events::Decision>,
        /// JSON lines, even on a terminal.
        #[arg(long, conflicts_with = "human")]
        json: bool,
        /// Human lines, even when not a terminal.
        #[arg(long)]
        human: bool,
    },
    /// Measure the per-open cost of guard on this kernel (root, BPF LSM).
    Bench(bench::BenchArgs),
    /// Compare guard with systemd's RestrictFileSystems=, Landlock and AppArmor
    /// (root, in a machine with a real systemd), and count the loaded programs' paths.
    BenchPeers(bench_peers::PeersArgs),
    /// Measure what guard costs every process on the host: each hooked
    /// operation (fork, exec, create, rename, mount, kill, ...) against no
    /// program and against empty programs on the same hooks (root, BPF LSM).
    BenchHost(bench_host::HostArgs),
    /// Print the completion script for SHELL to stdout, e.g.
    /// `guard completions bash > /usr/share/bash-completion/completions/guard`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write guard.1 and a man page per subcommand into DIR (for packaging).
    #[command(hide = true)]
    Manpages { dir: PathBuf },
    /// One measurement of `bench-peers` (spawned under each peer's confinement).
    #[command(hide = true)]
    BenchWorker(bench_peers::WorkerArgs),
    /// The bystander process of `bench-host` (a copy of guard's executable).
    #[command(hide = true)]
    BenchHostWorker(bench_host::WorkerArgs),
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Write a policy for a unit from what systemd knows of it (`systemctl
    /// show`): its credentials, their sources, StateDirectory=, User= or
    /// DynamicUser=, each line explained in a comment. The text passes
    /// `guard check` (exit 2 and nothing written if not); stdout unless
    /// --output.
    FromUnit(from_unit::FromUnitArgs),
    /// Suggest the policy change that would allow what guard recorded
    /// (audit or enforce records, from the journal or --events-file):
    /// openers grouped by executable, unit and UID, with counts and times;
    /// what looks like an attack (root shells, processes outside any unit,
    /// tamper records) is flagged and left out. Prints a commented policy
    /// (or --diff) that passes `guard check`; never applies it.
    Suggest(suggest::SuggestArgs),
}

/// Exit codes, documented in the README.
pub mod exit {
    pub const POLICY_INVALID: u8 = 2;
    pub const KERNEL_UNSUPPORTED: u8 = 3;
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { path, passwd } => check(&path, &passwd),
        Command::Policy { cmd: PolicyCmd::FromUnit(args) } => from_unit::main(args),
        Command::Policy { cmd: PolicyCmd::Suggest(args) } => suggest::main(args),
        Command::Run(args) => run::main(args),
        Command::Events { follow: _, socket, unit, decision, json, human } => {
            use feed::events::{Filter, Format, View};
            let human = human || (!json && std::io::stdout().is_terminal());
            let view = View::new(Filter::new(&unit, &decision), if human { Format::Human } else { Format::Json });
            block_on(feed::socket::follow(socket, view))
        }
        Command::Completions { shell } => {
            cli_docs::completions(Cli::command(), shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Manpages { dir } => match cli_docs::manpages(Cli::command(), &dir) {
            Ok(written) => {
                eprintln!("wrote {} man pages into {}", written.len(), dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => bench::main(args),
        Command::BenchPeers(args) => bench_peers::main(args),
        Command::BenchWorker(args) => bench_peers::worker(args),
        Command::BenchHost(args) => bench_host::main(args),
        Command::BenchHostWorker(args) => bench_host::worker(args),
        Command::Status { json, pin_root, cgroup_root, policy_dir } => admin::status(&pin_root, &cgroup_root, &policy_dir, json),
        Command::Unload { pin_root, pid_file } => admin::unload(&pin_root, &pid_file),
        Command::Reload { pid_file, timeout } => admin::reload(&pid_file, std::time::Duration::from_secs(timeout)),
    }
}

fn check(path: &std::path::Path, passwd: &std::path::Path) -> ExitCode {
    match policy::load(path, passwd) {
        Ok(set) => {
            for w in &set.warnings {
                eprintln!("{w}");
            }
            for w in exposure::for_policies(&set.policies) {
                eprintln!("warning: {w}");
            }
            println!(
                "ok: {} policies, {} paths ({} not present yet)",
                set.policies.len(),
                set.path_count(),
                set.absent_paths().len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(exit::POLICY_INVALID)
        }
    }
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `--metrics` values.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("{s}: {e} (expected e.g. 127.0.0.1:9464)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_from_unit_command_line() {
        let ok = Cli::try_parse_from(["guard", "policy", "from-unit", "myapp", "--mode", "audit", "--output", "x.toml"]);
        assert!(ok.is_ok());
        let bad = Cli::try_parse_from(["guard", "policy", "from-unit", "myapp", "--mode", "enforcing"]);
        let err = bad.err().expect("a bad --mode is refused").to_string();
        assert!(err.contains("unknown mode \"enforcing\""), "{err}");
    }
}
