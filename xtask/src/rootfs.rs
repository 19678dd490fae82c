//! A Debian root filesystem with a real systemd, for tests that need
//! systemd (units, `/run/credentials/<unit>/`, ...). It is packed whole into
//! the initramfs (the cloud kernels build virtio-blk as a module, so the
//! initramfs *is* the root filesystem) and booted with the kernel command
//! line (pass as `extra_append` to [`crate::vm::run_vm_with_mem`], ~2048 MB):
//!
//! `rdinit=/lib/systemd/systemd systemd.unit=multi-user.target` ([`SYSTEMD_APPEND`])
//!
//! With systemd, the console is `/dev/ttyS0`: a test unit must write its
//! `GUARD-VM-EXIT: <n>` line to `/dev/ttyS0` directly, then `systemctl poweroff`.

#![allow(dead_code)] // Not every helper is used by every xtask command.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::exec::exec;
use crate::initramfs::Initramfs;
use crate::kernels::{host_debian_mirror, suite_keyring};

/// Extra kernel command line for booting [`systemd_initramfs`] images.
pub const SYSTEMD_APPEND: &str = "rdinit=/lib/systemd/systemd systemd.unit=multi-user.target";
/// Memory the systemd image needs (the ~260 MB initramfs lives in RAM twice while unpacking).
pub const SYSTEMD_MEM_MB: u32 = 2048;
/// The Debian release whose systemd each test kernel is paired with: each
/// kernel generation boots its own distribution's systemd (systemd's
/// credential code differs between them: filesystem, ACLs, executor).
pub fn suite_for(kernel: &str) -> &'static str {
    if kernel.starts_with("forky") {
        "forky"
    } else if kernel.starts_with("trixie") {
        "trixie"
    } else {
        "bookworm"
    }
}
/// The same list resolves on bookworm, trixie and forky (checked against
/// forky's systemd 262-1, udev 262-1, libbpf1 1:1.7.0-1, apparmor 4.1.8).
/// `libbpf1`: systemd (built with BPF_FRAMEWORK, trixie on) dlopens it for
/// `RestrictFileSystems=`; `apparmor`: `apparmor_parser` for the AppArmor
/// peer in `guard bench-peers`. The `.complete` marker records this list, so
/// changing it rebuilds a cached rootfs.
pub const INCLUDE: &str = "systemd,systemd-sysv,dbus,udev,acl,libbpf1,apparmor,systemd-journal-remote";
const MARKER: &str = ".complete";

/// Units masked so that boot is quick and nothing waits for a network or a tty.
/// Entries with `*` are globs over the unit files present in the rootfs.
pub const MASKED_UNITS: &[&str] = &[
    "systemd-networkd-wait-online.service",
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "systemd-timesyncd.service",
    "apt-daily*.timer",
    "e2scrub*",
    "fstrim.timer",
    "systemd-journald-audit.socket",
    // Profiles are loaded by hand where a test wants one (bench-peers).
    "apparmor.service",
];

/// `<cache_root>/rootfs-<suite>-systemd`, debootstrapped once (minbase +
/// systemd, systemd-sysv, dbus, udev, acl) from the host's configured
/// Debian mirror; rebuilt if its `.complete` marker is missing. Needs root.
/// A suite the host's debootstrap has no script for (forky on bookworm) is
/// built with the `sid` script.
pub fn ensure_systemd_rootfs(cache_root: &Path, suite: &str) -> Result<PathBuf> {
    fs::create_dir_all(cache_root)?;
    let dir = cache_root.canonicalize()?.join(format!("rootfs-{suite}-systemd"));
    let marker = format!("include={INCLUDE}\n");
    if fs::read_to_string(dir.join(MARKER)).is_ok_and(|m| m == marker) {
        eprintln!("rootfs: cached {}", dir.display());
    } else {
        if dir.exists() {
            eprintln!("rootfs: {} is incomplete or was built with another package list; rebuilding", dir.display());
            remove_rootfs(&dir)?;
        }
        let mirror = host_debian_mirror()?;
        let started = Instant::now();
        let mut cmd = Command::new("debootstrap");
        cmd.arg("--variant=minbase")
            .arg(format!("--include={INCLUDE}"));
        // A newer archive keyring than the host's, where the kernel's private
        // apt state needed one for this suite.
        if let Some(keyring) = suite_keyring(cache_root, suite) {
            cmd.arg(format!("--keyring={}", keyring.display()));
        }
        cmd.arg(suite).arg(&dir).arg(&mirror);
        if let Some(script) = debootstrap_script(Path::new(SCRIPTS), suite) {
            cmd.arg(script);
        }
        exec(&mut cmd).with_context(|| format!("debootstrap into {} failed", dir.display()))?;
        eprintln!("rootfs: debootstrap {suite} took {:.1?}", started.elapsed());
        // Downloaded .debs are not needed in the image.
        if let Ok(rd) = fs::read_dir(dir.join("var/cache/apt/archives")) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "deb") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
    configure(&dir)?;
    fs::write(dir.join(MARKER), marker)?;
    Ok(dir)
}

/// debootstrap's suite scripts.
const SCRIPTS: &str = "/usr/share/debootstrap/scripts";

/// The script to name on debootstrap's command line: none where
/// `<scripts>/<suite>` exists; `sid`'s for a suite newer than the host's
/// debootstrap (bookworm's has none for forky; Debian's scripts for trixie,
/// forky and sid are one and the same).
fn debootstrap_script(scripts: &Path, suite: &str) -> Option<PathBuf> {
    (!scripts.join(suite).exists()).then(|| scripts.join("sid"))
}

/// Idempotent tweaks for a fast, quiet boot.
fn configure(dir: &Path) -> Result<()> {
    let unit_dirs = [
        "usr/lib/systemd/system",
        "lib/systemd/system",
        "etc/systemd/system",
    ];
    let mut present: Vec<String> = Vec::new();
    for d in unit_dirs {
        if let Ok(rd) = fs::read_dir(dir.join(d)) {
            present.extend(
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().map(String::from)),
            );
        }
    }
    let etc_units = dir.join("etc/systemd/system");
    fs::create_dir_all(&etc_units)?;
    for pattern in MASKED_UNITS {
        let names: Vec<String> = if pattern.contains('*') {
            present
                .iter()
                .filter(|n| glob_match(pattern, n))
                .cloned()
                .collect()
        } else {
            // `foo@bar.service` exists if its template `foo@.service` does.
            let template = match pattern.split_once('@') {
                Some((base, rest)) => rest
                    .rsplit_once('.')
                    .map(|(_, ext)| format!("{base}@.{ext}")),
                None => None,
            };
            let exists = present
                .iter()
                .any(|n| n == pattern || Some(n) == template.as_ref());
            if exists {
                vec![pattern.to_string()]
            } else {
                Vec::new()
            }
        };
        for name in names {
            let link = etc_units.join(&name);
            if fs::read_link(&link).is_ok_and(|t| t == Path::new("/dev/null")) {
                continue;
            }
            if fs::symlink_metadata(&link).is_ok() {
                fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?;
            }
            symlink("/dev/null", &link).with_context(|| format!("masking {name}"))?;
        }
    }
    fs::write(dir.join("etc/hostname"), "guard-vm\n")?;
    Ok(())
}

/// `*` only glob.
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first)
        || !name[first.len()..].ends_with(last)
        || name.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// Delete a (half-built) rootfs, first unmounting anything debootstrap may
/// have left mounted inside it (proc, sys, bind-mounted /dev...), so the host
/// is never touched through a leftover mount.
fn remove_rootfs(dir: &Path) -> Result<()> {
    let mounts_under = || -> Result<Vec<String>> {
        let prefix = format!("{}/", dir.display());
        let text = fs::read_to_string("/proc/self/mounts")?;
        let mut m: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|p| p.replace("\\040", " "))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        m.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Ok(m)
    };
    for m in mounts_under()? {
        exec(Command::new("umount").arg("-l").arg(&m))?;
    }
    let left = mounts_under()?;
    if !left.is_empty() {
        bail!(
            "refusing to delete {}: still mounted: {left:?}",
            dir.display()
        );
    }
    fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// Trees left out of the image (left empty): docs, man pages, locales and
/// apt lists are ~100 of the rootfs's ~226 MB, and every MB costs unpack
/// time and guest RAM at each boot.
pub const IMAGE_EXCLUDES: &[&str] = &[
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/locale",
    "/var/lib/apt/lists",
    "/var/cache/apt",
];

/// Pack `rootfs` into an initramfs at `out` (all but [`IMAGE_EXCLUDES`]), with
/// `/dev/console` and `/dev/null` nodes; `extra` adds the test's own files
/// (binaries, units...; see [`install_unit`]).
/// Boot it with [`SYSTEMD_APPEND`] (`rdinit=/lib/systemd/systemd
/// systemd.unit=multi-user.target`) and [`SYSTEMD_MEM_MB`].
pub fn systemd_initramfs(
    rootfs: &Path,
    extra: impl FnOnce(&mut Initramfs) -> Result<()>,
    out: &Path,
) -> Result<()> {
    let mut ir = Initramfs::new();
    ir.add_host_tree(rootfs, "/")?;
    ir.remove(MARKER);
    for dir in IMAGE_EXCLUDES {
        ir.remove_tree(dir);
        ir.dir(dir, 0o755);
    }
    ir.char_dev("/dev/console", 5, 1, 0o600);
    ir.char_dev("/dev/null", 1, 3, 0o666);
    extra(&mut ir)?;
    ir.write(out)
}

/// Add a unit file `/etc/systemd/system/<name>` and enable it for `wanted_by`
/// (e.g. `multi-user.target`) via a `.wants/` symlink.
pub fn install_unit(ir: &mut Initramfs, name: &str, text: &str, wanted_by: &str) {
    ir.file_bytes(
        &format!("/etc/systemd/system/{name}"),
        text.as_bytes().to_vec(),
        0o644,
    );
    ir.symlink(
        &format!("/etc/systemd/system/{wanted_by}.wants/{name}"),
        &format!("/etc/systemd/system/{name}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites() {
        assert_eq!(suite_for(crate::kernels::BOOKWORM), "bookworm");
        assert_eq!(suite_for(crate::kernels::TRIXIE), "trixie");
        assert_eq!(suite_for(crate::kernels::FORKY), "forky");
        let scripts = std::env::temp_dir().join(format!("xtask-scripts-{}", std::process::id()));
        fs::create_dir_all(&scripts).unwrap();
        fs::write(scripts.join("sid"), "").unwrap();
        symlink("sid", scripts.join("trixie")).unwrap();
        assert_eq!(debootstrap_script(&scripts, "trixie"), None);
        assert_eq!(
            debootstrap_script(&scripts, "forky"),
            Some(scripts.join("sid"))
        );
        fs::remove_dir_all(&scripts).unwrap();
    }

    #[test]
    fn globs() {
        assert!(glob_match("apt-daily*.timer", "apt-daily-upgrade.timer"));
        assert!(glob_match("apt-daily*.timer", "apt-daily.timer"));
        assert!(!glob_match("apt-daily*.timer", "apt-daily.service"));
        assert!(glob_match("e2scrub*", "e2scrub_all.timer"));
        assert!(!glob_match("e2scrub*", "fstrim.timer"));
    }
}
