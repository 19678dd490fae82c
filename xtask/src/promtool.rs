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

/// Runs `promtool check rules` on the alerting rules and `promtool test
/// rules` on their fixtures (each alert fires on its case).
pub fn test_rules(promtool: &Path, rules: &Path, tests: &Path) -> Result<String> {
    let mut check = Command::new(promtool);
    check.args(["check", "rules"]).arg(rules);
    let checked = exec_output(&mut check).with_context(|| format!("`promtool check rules {}`", rules.display()))?;
    let mut test = Command::new(promtool);
    // Relative rule_files: paths are resolved from the test file's directory.
    test.args(["test", "rules"]).arg(tests.file_name().context("test file name")?);
    test.current_dir(tests.parent().context("test file directory")?);
    let tested = exec_output(&mut test).with_context(|| format!("`promtool test rules {}`", tests.display()))?;
    let rules_found = checked.lines().find(|l| l.contains("rules found")).unwrap_or("").trim().to_string();
    Ok(format!("promtool check rules: {rules_found}; promtool test rules: {}", tested.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim()))
}

/// One metric reference of a rule expression: `name` and its exact
/// (`=`) or alternation (`=~"a|b"`) label matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRef {
    pub name: String,
    pub matchers: Vec<(String, Vec<String>)>,
}

/// guard's metrics the `expr:` of each rule names (`guard_*`; `up` is
/// Prometheus' own), with their label matchers.
pub fn rule_metrics(rules_yaml: &str) -> Vec<MetricRef> {
    // The expressions: an `expr:` line and the lines indented below it.
    let mut exprs = Vec::new();
    let mut lines = rules_yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(at) = line.find("expr:") else { continue };
        let indent = line.len() - line.trim_start().len();
        let mut e = line[at + 5..].trim().trim_start_matches(['>', '|']).to_string();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() <= indent {
                break;
            }
            e.push(' ');
            e.push_str(next.trim());
            lines.next();
        }
        exprs.push(e);
    }
    let mut refs = Vec::new();
    for e in exprs {
        let b = e.as_bytes();
        let mut i = 0;
        while let Some(off) = e[i..].find("guard_") {
            let start = i + off;
            let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
            if start > 0 && (word(b[start - 1]) || b[start - 1] == b'"') {
                i = start + 6;
                continue;
            }
            let mut end = start;
            while end < b.len() && word(b[end]) {
                end += 1;
            }
            let mut r = MetricRef { name: e[start..end].to_string(), matchers: Vec::new() };
            if b.get(end) == Some(&b'{') {
                let close = e[end..].find('}').map_or(e.len(), |c| end + c);
                for m in e[end + 1..close].split(',') {
                    let (key, value, alternation) = match (m.split_once("=~"), m.split_once("!="), m.split_once('=')) {
                        (Some((k, v)), _, _) => (k, v, true),
                        (None, Some(_), _) => continue,
                        (None, None, Some((k, v))) => (k, v, false),
                        _ => continue,
                    };
                    let value = value.trim().trim_matches('"');
                    let values = if alternation { value.split('|').map(str::to_string).collect() } else { vec![value.to_string()] };
                    r.matchers.push((key.trim().to_string(), values));
                }
                end = close;
            }
            refs.push(r);
            i = end.max(start + 6);
        }
    }
    refs
}

/// Every metric (and every label value) the rules name appears in `scrape`;
/// otherwise the list of what is missing (a renamed metric or label value).
pub fn rules_against_scrape(rules_yaml: &str, scrape: &str) -> Result<usize> {
    let refs = rule_metrics(rules_yaml);
    if refs.is_empty() {
        bail!("the alerting rules name no guard_ metric (is the file empty?)");
    }
    let samples: Vec<&str> = scrape.lines().filter(|l| !l.starts_with('#')).collect();
    let mut missing = Vec::new();
    for r in &refs {
        let of_name: Vec<&str> = samples
            .iter()
            .copied()
            .filter(|l| l.strip_prefix(r.name.as_str()).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
            .collect();
        if of_name.is_empty() {
            missing.push(r.name.clone());
            continue;
        }
        for (label, values) in &r.matchers {
            for v in values {
                let want = format!("{label}=\"{v}\"");
                if !of_name.iter().any(|l| l.contains(&want)) {
                    missing.push(format!("{}{{{want}}}", r.name));
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!("the alerting rules name metrics the agent's scrape does not have: {} (renamed? update guard/prometheus/guard-alerts.yml)", missing.join(", "));
    }
    Ok(refs.len())
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
    fn the_shipped_rules_name_metrics_and_labels() {
        let rules = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../guard/prometheus/guard-alerts.yml")).unwrap();
        let refs = rule_metrics(&rules);
        let names: std::collections::BTreeSet<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        for n in ["guard_decisions_total", "guard_kernel_total", "guard_enforcing", "guard_admin_actions_total", "guard_journal_missed_total"] {
            assert!(names.contains(n), "{n} not found in {names:?}");
        }
        let dropped = refs.iter().find(|r| r.matchers.iter().any(|(_, v)| v.contains(&"lost".to_string()))).unwrap();
        assert_eq!(dropped.matchers, vec![("counter".to_string(), vec!["dropped_ringbuf_full".to_string(), "lost".to_string()])]);
    }

    #[test]
    fn a_renamed_metric_or_label_value_fails() {
        let rules = "groups:\n- rules:\n  - alert: A\n    expr: >\n      increase(guard_x_total{counter=\"a\"}[5m])\n      + guard_y > 0\n    labels: {}\n";
        let scrape = "# HELP guard_x_total X.\nguard_x_total{counter=\"a\"} 1\nguard_y 0\n";
        assert_eq!(rules_against_scrape(rules, scrape).unwrap(), 2);
        let renamed = scrape.replace("guard_y", "guard_z");
        let err = rules_against_scrape(rules, &renamed).unwrap_err().to_string();
        assert!(err.contains("guard_y") && !err.contains("guard_x_total"), "{err}");
        let relabelled = scrape.replace("counter=\"a\"", "counter=\"b\"");
        let err = rules_against_scrape(rules, &relabelled).unwrap_err().to_string();
        assert!(err.contains("guard_x_total{counter=\"a\"}"), "{err}");
    }

    #[test]
    fn ensure_promtool_uses_the_cache() {
        let tool = fake_promtool("cached", "exit 0");
        let cache = tool.ancestors().nth(3).unwrap().to_path_buf();
        assert_eq!(ensure_promtool(&cache).unwrap(), tool);
        fs::remove_dir_all(cache).unwrap();
    }
}
