//! Swap areas (the kernel side is `guard-ebpf/src/swap.rs`): the agent
//! reads `/proc/swaps` at start and whenever it changes (the file is
//! pollable: `POLLERR|POLLPRI` on every `swapon`/`swapoff`), keeps
//! `SWAP_DEVS` (the active swap block devices, by kernel `dev_t`: the
//! kernel judges every block node by it) current, and tags swap files (and
//! the node each area is named by) `RULE_F_SWAP`.
//!
//! It also tells, at start, how each area is kept at rest: zram (memory),
//! dm-crypt, or plaintext on a disk (a warning with the remedy).

use std::{
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use guard_common::*;

use super::{open_o_path, Kernel};

pub const PROC_SWAPS: &str = "/proc/swaps";

/// One line of `/proc/swaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapArea {
    pub path: PathBuf,
    /// `file` (a swap file) or `partition` (a block device).
    pub file: bool,
}

/// How an area's pages are kept when they are not in RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtRest {
    /// Compressed in RAM; `backing` is zram's writeback device, if any.
    Zram { backing: Option<String> },
    /// dm-crypt, on the area itself or below it (`via`: the crypt device).
    Encrypted { via: String },
    /// Plaintext on a device.
    Plain { device: String },
    /// Could not tell.
    Unknown(String),
}

/// `/proc/swaps`'s lines (the header skipped; `\040`-style escapes undone).
pub fn parse(text: &str) -> Vec<SwapArea> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let path = unescape(f.next()?);
            let kind = f.next()?;
            Some(SwapArea { path: PathBuf::from(path), file: kind == "file" })
        })
        .collect()
}

/// seq_file's `mangle_path` escapes: `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The kernel's `dev_t` encoding (`MAJOR << 20 | MINOR`) of a userspace one.
pub fn kernel_dev(rdev: u64) -> u32 {
    (libc::major(rdev) << 20) | libc::minor(rdev)
}

/// The areas in `/proc/swaps` now (none if it cannot be read: no swap support).
pub fn active() -> Vec<SwapArea> {
    std::fs::read_to_string(PROC_SWAPS).map(|t| parse(&t)).unwrap_or_default()
}

/// The rule every swap candidate carries (see `RULE_F_SWAP`).
fn rule() -> InodeRule {
    InodeRule::any(SELF_POLICY_ID, RULE_F_SELF | RULE_F_SWAP)
}

/// Tags the inode behind `fd` unless it already carries a rule.
fn tag_if_untagged(k: &mut Kernel, fd: &std::fs::File) -> Result<()> {
    use std::os::fd::AsFd;
    match k.maps.rules.insert(&fd.as_fd(), rule(), super::BPF_NOEXIST) {
        Ok(()) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(e)),
    }
}

/// Makes the kernel's view match `areas`: `SWAP_DEVS` holds exactly their
/// block devices; their nodes and swap files carry `RULE_F_SWAP`.
pub fn sync(k: &mut Kernel, areas: &[SwapArea]) -> Result<()> {
    let mut want = Vec::new();
    for a in areas {
        let meta = match std::fs::metadata(&a.path) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("swap: cannot stat active swap area {}: {e}", a.path.display());
                continue;
            }
        };
        if meta.file_type().is_block_device() {
            want.push(kernel_dev(meta.rdev()));
        }
        // The node named in /proc/swaps (wherever it is), or the swap file.
        match open_o_path(&a.path, 0) {
            Ok(fd) => tag_if_untagged(k, &fd).with_context(|| format!("tagging swap area {}", a.path.display()))?,
            Err(e) => log::warn!("swap: cannot open {} (O_PATH) to tag it: {e}", a.path.display()),
        }
    }
    let have: Vec<u32> = k.maps.swap_devs.keys().filter_map(|r| r.ok()).collect();
    for dev in &want {
        k.maps.swap_devs.insert(dev, 1, 0).map_err(|e| anyhow::anyhow!(e)).context("writing SWAP_DEVS")?;
    }
    for dev in have.iter().filter(|d| !want.contains(d)) {
        let _ = k.maps.swap_devs.remove(dev);
    }
    Ok(())
}

/// The sysfs directory of block device `rdev` (`/sys/dev/block/M:m`, resolved).
fn sysfs_of(rdev: u64) -> Option<PathBuf> {
    std::fs::canonicalize(format!("/sys/dev/block/{}:{}", libc::major(rdev), libc::minor(rdev))).ok()
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn dev_name(sys: &Path) -> String {
    let name = sys.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match read_trim(&sys.join("dm/name")) {
        Some(dm) if !dm.is_empty() => format!("/dev/{name} (/dev/mapper/{dm})"),
        _ => format!("/dev/{name}"),
    }
}

/// The first dm-crypt device at or below `sys` (its `slaves`, depth first).
fn crypt_below(sys: &Path, depth: usize) -> Option<String> {
    if read_trim(&sys.join("dm/uuid")).is_some_and(|u| u.starts_with("CRYPT-")) {
        return Some(dev_name(sys));
    }
    // A partition's parent is its disk; a disk's slaves are what it is built on.
    let slaves = std::fs::read_dir(sys.join("slaves")).ok()?;
    if depth > 8 {
        return None;
    }
    for s in slaves.flatten() {
        if let Some(c) = std::fs::canonicalize(s.path()).ok().and_then(|p| crypt_below(&p, depth + 1)) {
            return Some(c);
        }
    }
    None
}

/// How the block device `rdev` keeps what is written to it.
fn at_rest_of_dev(rdev: u64) -> AtRest {
    let Some(sys) = sysfs_of(rdev) else {
        return AtRest::Unknown(format!("no /sys/dev/block/{}:{}", libc::major(rdev), libc::minor(rdev)));
    };
    let name = sys.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.starts_with("zram") {
        let backing = read_trim(&sys.join("backing_dev")).filter(|b| !b.is_empty() && b != "none");
        return AtRest::Zram { backing };
    }
    match crypt_below(&sys, 0) {
        Some(via) => AtRest::Encrypted { via },
        None => AtRest::Plain { device: dev_name(&sys) },
    }
}

/// How `area` keeps a unit's swapped-out pages.
pub fn at_rest(area: &SwapArea) -> AtRest {
    match std::fs::metadata(&area.path) {
        Ok(m) if m.file_type().is_block_device() => at_rest_of_dev(m.rdev()),
        // A swap file: its filesystem's device.
        Ok(m) => match at_rest_of_dev(m.dev()) {
            AtRest::Zram { .. } => AtRest::Plain { device: format!("the filesystem of {}", area.path.display()) },
            other => other,
        },
        Err(e) => AtRest::Unknown(format!("{}: {e}", area.path.display())),
    }
}

/// The start report's line, and one warning per area whose pages may
/// reach a disk in plaintext.
pub fn report(areas: &[SwapArea]) -> (String, Vec<String>) {
    if areas.is_empty() {
        return ("swap: none active".to_string(), Vec::new());
    }
    let mut parts = Vec::new();
    let mut warnings = Vec::new();
    const REMEDY: &str = "use encrypted swap (dm-crypt, e.g. a crypttab entry with a random key and `swap`) or zram, \
                          or keep the protected units out of swap with `MemorySwapMax=0`";
    for a in areas {
        let p = a.path.display();
        let state = at_rest(a);
        parts.push(match &state {
            AtRest::Zram { backing: None } => format!("{p} (zram)"),
            AtRest::Zram { backing: Some(b) } => format!("{p} (zram, writeback to {b})"),
            AtRest::Encrypted { via } => format!("{p} (dm-crypt: {via})"),
            AtRest::Plain { .. } => format!("{p} (UNENCRYPTED)"),
            AtRest::Unknown(_) => format!("{p} (unknown)"),
        });
        match state {
            AtRest::Plain { device } => warnings.push(format!(
                "swap area {p} is not encrypted ({device}): a protected unit's memory (its heap, a secret it read) may \
                 be written to disk in plaintext and stay there after it is freed or the machine is off. While it \
                 protects anything guard refuses reads of the active area itself, not of the disk underneath. Remedy: \
                 {REMEDY}"
            )),
            AtRest::Zram { backing: Some(b) } => warnings.push(format!(
                "zram swap {p} writes idle pages back to {b} in plaintext: a protected unit's memory may reach that disk. \
                 Remedy: drop the writeback device, or {REMEDY}"
            )),
            AtRest::Unknown(why) => warnings.push(format!(
                "cannot tell whether swap area {p} is encrypted ({why}); a protected unit's memory may reach a disk in \
                 plaintext. Remedy: {REMEDY}"
            )),
            _ => {}
        }
        if a.file {
            warnings.push(format!(
                "swap file {p}: guard refuses opening the file for reading, but its blocks are readable through its \
                 filesystem's block device; prefer a swap device of its own (dm-crypt or zram), or `MemorySwapMax=0`"
            ));
        }
    }
    (
        format!(
            "swap: {}; while guard protects anything only guard may read an active swap area, and device-mapper tables \
             (dm-crypt's key) are refused",
            parts.join(", ")
        ),
        warnings,
    )
}

/// At start: brings `SWAP_DEVS` up to date and returns the areas.
pub fn start(k: &mut Kernel) -> Result<Vec<SwapArea>> {
    let areas = active();
    sync(k, &areas)?;
    Ok(areas)
}

/// Follows `/proc/swaps` for as long as the agent runs: waits for its
/// `POLLPRI` (a `swapon`/`swapoff`), or 5 s, and syncs when it changed.
pub fn spawn_watcher(kernel: Arc<Mutex<Kernel>>, mut last: Vec<SwapArea>) {
    std::thread::Builder::new()
        .name("swap-watch".into())
        .spawn(move || {
            let file = std::fs::File::open(PROC_SWAPS).ok();
            loop {
                match &file {
                    Some(f) => {
                        use std::os::fd::AsRawFd;
                        let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLPRI | libc::POLLERR, revents: 0 };
                        // SAFETY: one valid pollfd.
                        let _ = unsafe { libc::poll(&mut pfd, 1, 5000) };
                    }
                    None => std::thread::sleep(Duration::from_secs(5)),
                }
                let now = active();
                if now == last {
                    continue;
                }
                let mut k = kernel.lock().unwrap();
                match sync(&mut k, &now) {
                    Ok(()) => {
                        let (line, warnings) = report(&now);
                        log::info!("{line}");
                        for w in warnings {
                            log::warn!("{w}");
                        }
                        last = now;
                    }
                    Err(e) => log::error!("swap: updating the kernel's view of the active swap areas: {e:#}"),
                }
            }
        })
        .expect("spawning the swap watcher");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_swaps() {
        let t = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                 /dev/zram0                              partition\t1048572\t\t0\t\t100\n\
                 /var/swap\\040file                       file\t\t65532\t\t0\t\t-2\n";
        let a = parse(t);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], SwapArea { path: "/dev/zram0".into(), file: false });
        assert_eq!(a[1], SwapArea { path: "/var/swap file".into(), file: true });
        assert!(parse("Filename Type Size Used Priority\n").is_empty());
    }

    #[test]
    fn kernel_dev_encoding() {
        assert_eq!(kernel_dev(libc::makedev(253, 1)), 253 << 20 | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 300)), 259 << 20 | 300);
    }

    #[test]
    fn report_warns_for_plaintext_only() {
        assert_eq!(report(&[]).0, "swap: none active");
        let (line, w) = report(&[SwapArea { path: "/nonexistent/swap".into(), file: false }]);
        assert!(line.contains("/nonexistent/swap (unknown)"), "{line}");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("MemorySwapMax=0"), "{}", w[0]);
    }
}
