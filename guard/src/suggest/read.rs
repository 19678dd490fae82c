//! Reading guard's records back: from the systemd journal (by `MESSAGE_ID`,
//! `journalctl -o json`) or from an events file (`guard run --events-file`,
//! JSON lines). Both become [`Seen`]: the fields a suggestion needs, from
//! access (denied or audited) and tamper records; other kinds are skipped.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::feed::journal::{MSG_AUDITED, MSG_DENIED, MSG_TAMPER};

/// One access or tamper record, as a suggestion sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// "access" or "tamper".
    pub kind: String,
    /// "denied" or "audited".
    pub decision: String,
    /// The protected unit (the policy's `unit`); empty for tamper records.
    pub unit: String,
    pub mode: String,
    pub path: String,
    /// The opener's executable; empty if guard never learned it.
    pub exe: String,
    pub comm: String,
    pub uid: u32,
    pub user: String,
    /// The opener's unit; empty: outside any unit.
    pub opener_unit: String,
    pub cgroup: String,
    pub count: u64,
    pub first_time: String,
    pub time: String,
}

/// Where one record came from, for error messages.
fn at(origin: &str, line: usize) -> String {
    format!("{origin}:{line}")
}

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k)).filter(|v| !v.is_null())
}

/// A record of the JSON feed (`guard.event/v1` or `/v2`); `Ok(None)` for
/// kinds a suggestion does not use (admin, gap).
pub fn from_event(v: &Value, origin: &str, line: usize) -> Result<Option<Seen>> {
    let Some(kind) = v.get("kind").and_then(Value::as_str) else {
        bail!("{}: field \"kind\" is missing: not a guard feed record (give the file `guard run --events-file` writes)", at(origin, line));
    };
    if kind != "access" && kind != "tamper" {
        return Ok(None);
    }
    let s = |path: &[&str]| field(v, path).and_then(Value::as_str).unwrap_or("").to_string();
    let need = |path: &[&str]| -> Result<&Value> {
        field(v, path).with_context(|| {
            format!("{}: field \"{}\" is missing from a {kind} record: the line is cut or edited; remove it or give the file guard wrote", at(origin, line), path.join("."))
        })
    };
    let uid = need(&["process", "uid"])?;
    let uid = uid.as_u64().and_then(|u| u32::try_from(u).ok()).with_context(|| {
        format!("{}: field \"process.uid\" is {uid}, not a UID (0 to 4294967295): the line is edited; remove it", at(origin, line))
    })?;
    let count = match field(v, &["count"]) {
        None => 1,
        Some(c) => c.as_u64().with_context(|| format!("{}: field \"count\" is {c}, not a count: remove the line", at(origin, line)))?,
    };
    let time = need(&["time"])?.as_str().unwrap_or("").to_string();
    let first = field(v, &["first_time"]).and_then(Value::as_str).map_or_else(|| time.clone(), str::to_string);
    Ok(Some(Seen {
        kind: kind.to_string(),
        decision: s(&["decision"]),
        unit: s(&["unit"]),
        mode: s(&["mode"]),
        path: s(&["file", "path"]),
        exe: s(&["process", "exe"]),
        comm: s(&["process", "comm"]),
        uid,
        user: s(&["process", "user"]),
        opener_unit: s(&["process", "unit"]),
        cgroup: s(&["process", "cgroup"]),
        count,
        first_time: first,
        time,
    }))
}

/// An events file: one JSON record per line (blank lines skipped).
pub fn events_file(path: &Path) -> Result<Vec<Seen>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let origin = path.display().to_string();
    parse_lines(&String::from_utf8_lossy(&text), &origin)
}

pub fn parse_lines(text: &str, origin: &str) -> Result<Vec<Seen>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!("{}: not a JSON record ({e}): give the file `guard run --events-file` writes (JSON lines), or remove the line", at(origin, i + 1))
        })?;
        out.extend(from_event(&v, origin, i + 1)?);
    }
    Ok(out)
}

/// A journal field of `journalctl -o json`: a string, or an array of bytes
/// when the value is not printable UTF-8 (decoded lossily), or an array of
/// those when the field is repeated (the first one).
fn journal_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = items.iter().filter_map(Value::as_u64).map(|b| b as u8).collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Value::Array(items) => items.first().and_then(journal_str),
        _ => None,
    }
}

/// One journal entry (`journalctl -o json`) of guard's: its `GUARD_*`
/// fields as the feed record they came from.
pub fn from_journal(entry: &Value, origin: &str, line: usize) -> Result<Option<Seen>> {
    let get = |k: &str| entry.get(k).and_then(journal_str).unwrap_or_default();
    let kind = get("GUARD_KIND");
    if kind != "access" && kind != "tamper" {
        return Ok(None);
    }
    let num = |k: &str| -> Result<u64> {
        let raw = get(k);
        raw.parse().with_context(|| {
            format!("{}: journal field {k} is \"{raw}\", not a number (entry {}): not an entry guard wrote", at(origin, line), get("__CURSOR"))
        })
    };
    let uid = u32::try_from(num("GUARD_UID")?).context("GUARD_UID out of range")?;
    let time = get("GUARD_TIME");
    let first = match get("GUARD_FIRST_TIME") {
        t if t.is_empty() => time.clone(),
        t => t,
    };
    Ok(Some(Seen {
        kind,
        decision: get("GUARD_DECISION"),
        unit: get("GUARD_UNIT"),
        mode: get("GUARD_MODE"),
        path: get("GUARD_PATH"),
        exe: get("GUARD_EXE"),
        comm: get("GUARD_COMM"),
        uid,
        user: get("GUARD_USER"),
        opener_unit: get("GUARD_OPENER_UNIT"),
        cgroup: get("GUARD_CGROUP"),
        count: if get("GUARD_COUNT").is_empty() { 1 } else { num("GUARD_COUNT")? },
        first_time: first,
        time,
    }))
}

/// guard's denied, audited and tamper entries from the journal (`since`:
/// journalctl's `--since`).
pub fn journal(since: Option<&str>) -> Result<Vec<Seen>> {
    let mut cmd = Command::new("journalctl");
    cmd.args(["--no-pager", "--quiet", "-o", "json"]);
    if let Some(s) = since {
        cmd.args(["--since", s]);
    }
    // The same field given twice matches either value.
    for id in [MSG_DENIED, MSG_AUDITED, MSG_TAMPER] {
        cmd.arg(format!("MESSAGE_ID={id}"));
    }
    let out = cmd.env("LC_ALL", "C").output().map_err(|e| {
        anyhow::anyhow!("cannot run journalctl: {e}; read the records from a file instead with --events-file FILE")
    })?;
    if !out.status.success() {
        bail!("journalctl failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut seen = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // ("-- No entries --" where a journalctl prints it despite --quiet.)
        if line.trim().is_empty() || line.starts_with("-- ") {
            continue;
        }
        let v: Value = serde_json::from_str(line).with_context(|| format!("journalctl -o json: line {} is not JSON", i + 1))?;
        seen.extend(from_journal(&v, "journal", i + 1)?);
    }
    Ok(seen)
}
