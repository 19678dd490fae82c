//! guard's in-VM test runner. Runs as root inside a QEMU guest booted by
//! `cargo xtask test` on each kernel of the matrix; every "allowed" and
//! "denied" it asserts is what that real kernel answered.
//!
//! - `vm-tests suite`: the enforcement and feed scenarios.
//! - `vm-tests systemd`: the same core promises against real systemd units.
//! - `vm-tests demo`: the built-in demo, narrated (real systemd).
//! - `vm-tests package`: the Debian package installed, upgraded and removed
//!   with dpkg under real systemd (package.rs).
//! - `vm-tests probe ...`: one access by a fresh process in a given cgroup
//!   and UID (used by the suite; see probe.rs).
//! - `vm-tests app FILE LOG`: a service's own program (executable binding).
//!
//! Output: one `SCENARIO <name>: PASS|FAIL ...` line per scenario and a
//! closing `vm-tests: N passed, M failed` line; exit 0 only if none failed.

mod env;
mod package;
mod probe;
mod suite;
mod systemd;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("probe") => probe::main(&args[2..]),
        Some("app") => probe::app_main(&args[2..]),
        Some("suite") => suite::main(&args[2..]),
        Some("systemd") => systemd::test_main(),
        Some("demo") => systemd::demo_main(),
        Some("package") => package::main(),
        _ => {
            eprintln!("usage: vm-tests suite [--only NAME,...] | systemd | demo | package | app FILE LOG | probe [--cgroup C] [--uid U] OP ARGS...");
            2
        }
    };
    std::process::exit(code);
}
