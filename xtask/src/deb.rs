//! `cargo xtask deb`: guard's Debian package.
//!
//! cargo-deb does the packaging from `[package.metadata.deb]` in
//! guard/Cargo.toml (the shipped `guard.service` and maintainer scripts are
//! in guard/debian/). This task only provides what cargo-deb cannot make:
//! the static binary (the same build the VMs boot) and the files generated
//! from the CLI definition with that binary (`guard manpages`,
//! `guard completions`) in target/deb-assets/.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::exec::{exec, exec_output};

/// The versions the package suite installs, then upgrades to (the same
/// build, packaged twice).
pub const TEST_VERSIONS: [&str; 2] = ["0.1.0-1", "0.1.0-2"];

/// Shells whose completion files the package installs, and the file each
/// goes to in target/deb-assets/completions (see guard/Cargo.toml).
const COMPLETIONS: &[(&str, &str)] = &[("bash", "guard.bash"), ("zsh", "_guard"), ("fish", "guard.fish")];

/// Writes target/deb-assets/{man,completions} with `guard` (the binary to
/// package: its CLI is what the pages describe).
pub fn generate_assets(guard: &Path, assets: &Path) -> Result<()> {
    if assets.exists() {
        fs::remove_dir_all(assets).with_context(|| format!("removing {}", assets.display()))?;
    }
    let man = assets.join("man");
    exec(Command::new(guard).arg("manpages").arg(&man))?;
    let mut pages = 0;
    for e in fs::read_dir(&man)? {
        let p = e?.path();
        // -n: no name or time stamp in the header, so the same page gives the same bytes.
        exec(Command::new("gzip").args(["-9n", "-f"]).arg(&p))?;
        pages += 1;
    }
    if pages == 0 {
        bail!("`{} manpages` wrote no pages into {}", guard.display(), man.display());
    }
    let comp = assets.join("completions");
    fs::create_dir_all(&comp)?;
    for (shell, file) in COMPLETIONS {
        let text = exec_output(Command::new(guard).args(["completions", shell]))?;
        if text.is_empty() {
            bail!("`{} completions {shell}` printed nothing", guard.display());
        }
        fs::write(comp.join(file), text)?;
    }
    eprintln!("deb: {pages} man pages and {} completion files in {}", COMPLETIONS.len(), assets.display());
    Ok(())
}

/// Builds `target/deb/guard_<version>_amd64.deb` of the workspace `root`
/// from the static build already in `target_dir` (see `build_into`);
/// `version` overrides the
/// package version (with its revision), as an upgrade test needs.
pub fn package(root: &Path, target_dir: &Path, host_target: &str, guard: &Path, version: Option<&str>) -> Result<PathBuf> {
    let cargo_deb = crate::setup::ensure_cargo_deb()?;
    generate_assets(guard, &root.join("target/deb-assets"))?;
    let out = root.join("target/deb");
    fs::create_dir_all(&out)?;
    let mut cmd = Command::new(&cargo_deb);
    cmd.current_dir(root)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["deb", "-p", "guard", "--no-build", "--locked", "--target", host_target, "--fast"])
        .arg("-o")
        .arg(&out);
    if let Some(v) = version {
        cmd.args(["--deb-version", v]);
    }
    let printed = exec_output(&mut cmd)?;
    let deb = printed
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo-deb printed no .deb path: {printed:?}"))?;
    let deb = if deb.is_absolute() { deb } else { root.join(deb) };
    if !deb.is_file() {
        bail!("cargo-deb reported {}, which does not exist", deb.display());
    }
    Ok(deb)
}

/// The package's file list, as `dpkg-deb -c` prints it (for the record).
pub fn contents(deb: &Path) -> Result<String> {
    exec_output(Command::new("dpkg-deb").arg("-c").arg(deb))
}

/// The maintainer scripts as packaged: each parses (`sh -n`), and each of
/// cargo-deb's generated sections starts a line (cargo-deb fills in every
/// `#DEBHELPER#`, even one in a comment, where its code would be dead).
pub fn check_scripts(deb: &Path, work: &Path) -> Result<()> {
    if work.exists() {
        fs::remove_dir_all(work)?;
    }
    exec(Command::new("dpkg-deb").arg("-e").arg(deb).arg(work))?;
    for name in ["postinst", "prerm", "postrm"] {
        let p = work.join(name);
        let text = fs::read_to_string(&p).with_context(|| format!("{} has no {name}", deb.display()))?;
        exec(Command::new("sh").arg("-n").arg(&p))?;
        if text.contains("#DEBHELPER#") {
            bail!("{name}: #DEBHELPER# was left unreplaced");
        }
        if let Some(l) = text.lines().find(|l| l.contains("Automatically added by") && !l.starts_with("# Automatically added by")) {
            bail!("{name}: a generated section starts inside a line (a #DEBHELPER# in a comment?): {l:?}");
        }
        if !text.contains("# Automatically added by") {
            bail!("{name}: no generated systemd section (is systemd-units set in [package.metadata.deb]?)");
        }
    }
    Ok(())
}

/// What a package must hold (checked on the host after every build; the VM
/// suite checks what dpkg installs).
pub const REQUIRED: &[&str] = &[
    "./usr/bin/guard",
    "./usr/lib/systemd/system/guard.service",
    "./etc/guard/policies/README.md",
    "./etc/guard/policies/examples/demo.toml",
    "./etc/guard/policies/examples/README.md",
    "./usr/share/man/man1/guard.1.gz",
    "./usr/share/man/man1/guard-run.1.gz",
    "./usr/share/man/man1/guard-policy-from-unit.1.gz",
    "./usr/share/man/man1/guard-policy-suggest.1.gz",
    "./usr/share/guard/prometheus/guard-alerts.yml",
    "./usr/share/guard/prometheus/guard-alerts.test.yml",
    "./usr/share/bash-completion/completions/guard",
    "./usr/share/zsh/vendor-completions/_guard",
    "./usr/share/fish/vendor_completions.d/guard.fish",
    "./usr/share/doc/guard/README.md",
];

/// Paths in `dpkg-deb -c` output that the package must hold but does not,
/// and any policy it would enable (a `*.toml` directly in
/// /etc/guard/policies: installing must never start enforcing).
pub fn missing_or_wrong(listing: &str) -> Vec<String> {
    let paths: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().nth(5)).collect();
    let mut bad: Vec<String> = REQUIRED.iter().filter(|r| !paths.contains(r)).map(|r| format!("missing {r}")).collect();
    bad.extend(
        paths
            .iter()
            .filter(|p| p.strip_prefix("./etc/guard/policies/").is_some_and(|f| !f.contains('/') && f.ends_with(".toml")))
            .map(|p| format!("{p} would be enforced as soon as the package is installed")),
    );
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_checks() {
        let line = |p: &str| format!("-rw-r--r-- root/root 10 2026-01-01 00:00 {p}\n");
        let full: String = REQUIRED.iter().map(|p| line(p)).collect();
        assert!(missing_or_wrong(&full).is_empty(), "{:?}", missing_or_wrong(&full));
        let without_unit: String = REQUIRED.iter().filter(|p| !p.ends_with(".service")).map(|p| line(p)).collect();
        assert_eq!(missing_or_wrong(&without_unit), vec!["missing ./usr/lib/systemd/system/guard.service".to_string()]);
        let enabled = full + &line("./etc/guard/policies/demo.toml");
        assert_eq!(missing_or_wrong(&enabled).len(), 1, "{:?}", missing_or_wrong(&enabled));
    }
}
