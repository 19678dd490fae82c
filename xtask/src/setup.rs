//! Checking for (and installing) the host tools that building and VM-testing need.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Result};

use crate::exec::{cmdline, exec};

/// Debian packages always needed: the BPF-capable rustc, LLVM 22 for
/// bpf-linker, qemu and a static busybox for the test VMs.
pub const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "qemu-system-x86",
    "cpio",
    "busybox-static",
    "xz-utils",
];

/// Extra package for building the systemd root filesystem.
pub const APT_PACKAGES_SYSTEMD: &[&str] = &["debootstrap"];

pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// cargo-deb builds guard's Debian package (`cargo xtask deb`).
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Is a Debian package installed (`dpkg-query -W -f='${Status}'`)?
pub fn package_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "install ok installed")
        .unwrap_or(false)
}

fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home).join("bin"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"))
}

fn version_ok(bin: &Path, version: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version))
        .unwrap_or(false)
}

/// Path of the program `name` at `version`, found in PATH or ~/.cargo/bin.
fn cargo_tool_path(name: &str, version: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    if let Some(dir) = cargo_bin_dir() {
        candidates.push(dir.join(name));
    }
    candidates.into_iter().find(|c| c.is_file() && version_ok(c, version))
}

/// Path of a `bpf-linker` of the pinned version, found in PATH or ~/.cargo/bin.
pub fn bpf_linker_path() -> Option<PathBuf> {
    cargo_tool_path("bpf-linker", BPF_LINKER_VERSION)
}

/// `cargo-deb` of the pinned version, installed with `cargo install --locked`
/// (into ~/.cargo/bin, no root needed) if it is missing.
pub fn ensure_cargo_deb() -> Result<PathBuf> {
    if let Some(p) = cargo_tool_path("cargo-deb", CARGO_DEB_VERSION) {
        return Ok(p);
    }
    eprintln!("setup: cargo-deb {CARGO_DEB_VERSION} not found in PATH or ~/.cargo/bin; installing it (about a minute)");
    exec(Command::new(cargo_program()).args(["install", "cargo-deb", "--version", CARGO_DEB_VERSION, "--locked"]))?;
    cargo_tool_path("cargo-deb", CARGO_DEB_VERSION).ok_or_else(|| {
        anyhow::anyhow!(
            "cargo-deb {CARGO_DEB_VERSION} still not found after installing; is {} in PATH?",
            cargo_bin_dir().unwrap_or_default().display()
        )
    })
}

fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

fn apt(args: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
    c
}

fn bpf_linker_install_cmd() -> Command {
    let mut c = Command::new(cargo_program());
    c.env("LLVM_PREFIX", "/usr/lib/llvm-22").args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
        "llvm-22",
    ]);
    c
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Make sure every needed tool is installed, installing what is missing
/// (needs root; otherwise prints the commands to run and fails).
pub fn ensure_tools(need_systemd_rootfs: bool) -> Result<()> {
    let mut wanted: Vec<&str> = APT_PACKAGES.to_vec();
    if need_systemd_rootfs {
        wanted.extend_from_slice(APT_PACKAGES_SYSTEMD);
    }
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|p| !package_installed(p))
        .collect();
    let need_linker = bpf_linker_path().is_none();
    if missing.is_empty() && !need_linker {
        eprintln!("setup: all required tools are installed");
        return Ok(());
    }

    let mut install_args = vec!["install", "-y", "--no-install-recommends"];
    install_args.extend(missing.iter().copied());
    let mut plan: Vec<Command> = Vec::new();
    if !missing.is_empty() {
        eprintln!("setup: missing Debian packages: {}", missing.join(" "));
        plan.push(apt(&["update"]));
        plan.push(apt(&install_args));
    }
    if need_linker {
        eprintln!("setup: bpf-linker {BPF_LINKER_VERSION} not found in PATH or ~/.cargo/bin");
        plan.push(bpf_linker_install_cmd());
    }

    if !is_root() {
        eprintln!("setup: not running as root, so not installing anything. Run these commands:");
        for c in &plan {
            let line = cmdline(c);
            // Only apt needs root; cargo install goes to the user's ~/.cargo.
            if c.get_program() == "apt-get" {
                eprintln!("    sudo env {line}");
            } else {
                eprintln!("    {line}");
            }
        }
        bail!("required tools are missing (see the commands above)");
    }

    eprintln!("setup: installing the missing tools");
    for mut c in plan {
        exec(&mut c)?;
    }
    if bpf_linker_path().is_none() {
        bail!(
            "bpf-linker {BPF_LINKER_VERSION} still not found after installing; \
             is {} in PATH?",
            cargo_bin_dir().unwrap_or_default().display()
        );
    }
    eprintln!("setup: done");
    Ok(())
}
