//! `promtool check metrics` on guard's Prometheus metrics (the lint
//! Prometheus itself applies: base units, `_total` on counters only, HELP
//! on every family, valid text format).
//!
//! promtool comes from Debian's `prometheus` package, as CI gets it:
//! `apt-get download` (no install, no root needed) and `dpkg-deb -x`, once,
//! into a cache directory (e.g. `target/tools/prometheus`).

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::exec::{cmdline, exec, exec_output, unpack_downloaded_deb};

/// Debian's package that ships `/usr/bin/promtool`.
const PACKAGE: &str = "prometheus";

/// The cached promtool below `cache_dir`, downloaded and extracted first if
/// it is not there yet.
pub fn ensure_promtool(cache_dir: &Path) -> Result<PathBuf> {
    let promtool = cache_dir.join("usr/bin/promtool");
    if promtool.is_file() {
        return Ok(promtool);
    }
    eprintln!("promtool: not cached in {}; fetching Debian's {PACKAGE} package", cache_dir.display());
    fs::create_dir_all(cache_dir).with_context(|| format!("creating {}", cache_dir.display()))?;
    let cache_dir = cache_dir.canonicalize()?;
    let work = cache_dir.join(".download");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;
    let download = || {
        let mut c = Command::new("apt-get");
        c.args(["download", PACKAGE]).current_dir(&work);
        c
    };
    if let Err(e) = exec(&mut download()) {
        // Stale or missing apt lists (a fresh image): refresh them once.
        eprintln!("promtool: download failed ({e:#}); running apt-get update and retrying");
        exec(Command::new("apt-get").arg("update")).context("apt-get update (needs root)")?;
        exec(&mut download()).context("downloading promtool's package")?;
    }
    let (deb, extract) = unpack_downloaded_deb(&work)?;
    let extracted = extract.join("usr/bin/promtool");
    if !extracted.is_file() {
        bail!("{} has no usr/bin/promtool", deb.display());
    }
    // Only the tool is kept (the package also holds the server).
    fs::create_dir_all(promtool.parent().unwrap())?;
    fs::rename(&extracted, &promtool).with_context(|| format!("moving promtool to {}", promtool.display()))?;
    fs::remove_dir_all(&work)?;
    let version = exec_output(Command::new(&promtool).arg("--version"))?;
    eprintln!("promtool: {}", version.lines().next().unwrap_or("?"));
    Ok(promtool)
}

/// Runs `promtool check metrics` on `text` (a scrape); fails with what
/// promtool said if it finds any problem (it exits non-zero then).
pub fn check_metrics(promtool: &Path, text: &str) -> Result<()> {
    let mut cmd = Command::new(promtool);
    cmd.args(["check", "metrics"]);
    let line = cmdline(&cmd);
    eprintln!("==> {line} < scrape ({} lines)", text.lines().count());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start `{line}`"))?;
    // Written from a thread: promtool may answer before it has read it all.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().with_context(|| format!("waiting for `{line}`"))?;
    // A broken pipe only means promtool stopped reading: its verdict counts.
    let _ = writer.join();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("`{line}` found problems in the metrics ({}):\n{}", out.status, said.trim_end());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in promtool (a shell script) in a fresh directory.
    fn fake_promtool(tag: &str, script: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-promtool-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("usr/bin")).unwrap();
        let tool = dir.join("usr/bin/promtool");
        fs::write(&tool, format!("#!/bin/sh\n{script}\n")).unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        tool
    }

    #[test]
    fn check_metrics_passes_clean_text_and_reports_complaints() {
        let clean = fake_promtool("clean", r#"[ "$1 $2" = "check metrics" ] || exit 9; cat >/dev/null"#);
        check_metrics(&clean, "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n").unwrap();
        let lint = fake_promtool("lint", "cat >/dev/null; echo 'x_ns metric names should not contain abbreviated units'; exit 3");
        let err = check_metrics(&lint, "x_ns 1\n").unwrap_err().to_string();
        assert!(err.contains("abbreviated units") && err.contains("exit status: 3"), "{err}");
        for tool in [clean, lint] {
            fs::remove_dir_all(tool.ancestors().nth(3).unwrap()).unwrap();
        }
    }

    #[test]
    fn ensure_promtool_uses_the_cache() {
        let tool = fake_promtool("cached", "exit 0");
        let cache = tool.ancestors().nth(3).unwrap().to_path_buf();
        assert_eq!(ensure_promtool(&cache).unwrap(), tool);
        fs::remove_dir_all(cache).unwrap();
    }
}
