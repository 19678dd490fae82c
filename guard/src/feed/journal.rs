//! The feed in the systemd journal: one structured entry per record, sent
//! with the journal's native protocol (the `libsystemd` crate, pure Rust, so
//! the static build stays static).
//!
//! Each kind of record has its own stable `MESSAGE_ID` (below, and in the
//! README), and every entry carries the record's fields as `GUARD_*` journal
//! fields, so `journalctl MESSAGE_ID=<denied>` or `journalctl -u guard
//! GUARD_UNIT=myapp.service` find guard's alerts, and the usual forwarders
//! (systemd-journal-upload, Vector, Fluent Bit) carry them as they are.
//!
//! Like every other consumer of the feed the journal writer runs on its own
//! thread: a slow journald can only make it lag (counted in
//! `guard_journal_missed_total`, and told in a `gap` entry), never the reader.

use std::{
    path::Path,
    sync::{atomic::Ordering, Arc},
};

use libsystemd::logging::{journal_send, Priority};
use serde_json::Value;
use tokio::sync::broadcast;

use super::{record::Record, FeedStats, Hub, Item};

/// `MESSAGE_ID` of a denied open (or other access), `decision=denied`.
pub const MSG_DENIED: &str = "f4983fa14bcf4870b407d5673355915d";
/// `MESSAGE_ID` of an access a policy in audit mode let through.
pub const MSG_AUDITED: &str = "d0c62977fceb4c70b09b9f1b6f8454b7";
/// `MESSAGE_ID` of an attempt on guard itself (its maps, programs, pins,
/// binary or process), always denied.
pub const MSG_TAMPER: &str = "28e0838f7c1e41f08e2a37707fe2d4e5";
/// `MESSAGE_ID` of records lost on the way (a consumer lagged).
pub const MSG_GAP: &str = "fa2b2e0f55084c41a7cc5e3d688b548c";
/// `MESSAGE_ID` of the agent's administrative events (`GUARD_ACTION`).
pub const MSG_ADMIN: &str = "6e3ad2cd7c9c4176bd9bbc9f2cce1218";

/// Where journald listens for native-protocol entries.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// `--journal`: whether the feed also goes to the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalMode {
    /// When systemd started guard (`$INVOCATION_ID` is set) and journald's
    /// socket exists.
    Auto,
    Always,
    Never,
}

impl JournalMode {
    pub fn wanted(self) -> bool {
        match self {
            JournalMode::Always => true,
            JournalMode::Never => false,
            JournalMode::Auto => std::env::var_os("INVOCATION_ID").is_some() && Path::new(JOURNAL_SOCKET).exists(),
        }
    }
}

/// One journal entry: priority, `MESSAGE` and the other fields.
#[derive(Debug, PartialEq)]
pub struct Entry {
    /// syslog priority: 2 critical, 3 error, 4 warning, 5 notice, 6 info.
    pub priority: u8,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// The journal entry for one feed line. `record` is the decoded access or
/// tamper record when there is one; other lines (admin, gap) are read from
/// their JSON.
pub fn entry(item: &Item) -> Option<Entry> {
    match &item.record {
        Some(r) => Some(record_entry(r)),
        None => {
            let v: Value = serde_json::from_slice(&item.json).ok()?;
            match v.get("kind")?.as_str()? {
                "gap" => Some(gap_entry(v.get("missed").and_then(Value::as_u64).unwrap_or(0), v.get("reason").and_then(Value::as_str).unwrap_or(""))),
                "admin" => Some(admin_entry(&v)),
                _ => None,
            }
        }
    }
}

fn record_entry(r: &Record) -> Entry {
    let (id, priority) = match (r.kind, r.decision) {
        // An allowed BPF tool's program load: recorded, not an alarm.
        ("tamper", "audited") => (MSG_TAMPER, 5),
        ("tamper", _) => (MSG_TAMPER, 2),
        (_, "audited") => (MSG_AUDITED, 5),
        _ => (MSG_DENIED, 4),
    };
    let p = &r.process;
    let mut fields = vec![
        ("MESSAGE_ID", id.to_string()),
        ("GUARD_KIND", r.kind.to_string()),
        ("GUARD_DECISION", r.decision.to_string()),
        ("GUARD_UNIT", r.unit.clone()),
        ("GUARD_POLICY", r.policy.clone()),
        ("GUARD_MODE", r.mode.to_string()),
        ("GUARD_HOOK", r.hook.to_string()),
        ("GUARD_ACCESS", r.access.join(",")),
        ("GUARD_PATH", r.file.path.clone().unwrap_or_default()),
        ("GUARD_DEV", r.file.dev.clone()),
        ("GUARD_INO", r.file.ino.to_string()),
        ("GUARD_PID", p.pid.to_string()),
        ("GUARD_TID", p.tid.to_string()),
        ("GUARD_COMM", p.comm.clone()),
        ("GUARD_EXE", p.exe.clone().unwrap_or_default()),
        ("GUARD_EXE_DEV", p.exe_dev.clone()),
        ("GUARD_EXE_INO", p.exe_ino.to_string()),
        ("GUARD_UID", p.uid.to_string()),
        ("GUARD_USER", p.user.clone().unwrap_or_default()),
        ("GUARD_EUID", p.euid.to_string()),
        ("GUARD_GID", p.gid.to_string()),
        ("GUARD_CGROUP", p.cgroup.clone().unwrap_or_default()),
        ("GUARD_CGROUP_ID", p.cgroup_id.to_string()),
        ("GUARD_OPENER_UNIT", p.unit.clone().unwrap_or_default()),
        ("GUARD_COUNT", r.count.to_string()),
        ("GUARD_TIME", r.time.clone()),
        ("GUARD_FIRST_TIME", r.first_time.clone()),
        ("GUARD_ORIGIN", r.origin.to_string()),
    ];
    if let Some(t) = r.opener_total {
        fields.push(("GUARD_OPENER_TOTAL", t.to_string()));
    }
    if let Some(t) = r.target_pid {
        fields.push(("GUARD_TARGET_PID", t.to_string()));
    }
    if let Some(d) = &r.detail {
        fields.push(("GUARD_DETAIL", d.clone()));
    }
    Entry { priority, message: r.human(), fields: owned(fields) }
}

fn gap_entry(missed: u64, reason: &str) -> Entry {
    Entry {
        priority: 3,
        message: format!("{missed} feed records were lost ({reason})"),
        fields: owned(vec![
            ("MESSAGE_ID", MSG_GAP.to_string()),
            ("GUARD_KIND", "gap".to_string()),
            ("GUARD_MISSED", missed.to_string()),
            ("GUARD_REASON", reason.to_string()),
        ]),
    }
}

fn admin_entry(v: &Value) -> Entry {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let action = s("action");
    let priority = match action.as_str() {
        // Enforcement stopped, or a policy set was refused.
        "unloaded" | "reload-failed" => 3,
        "handover" | "replaced" => 5,
        _ => 6,
    };
    Entry {
        priority,
        message: format!("{action}: {}", s("detail")),
        fields: owned(vec![
            ("MESSAGE_ID", MSG_ADMIN.to_string()),
            ("GUARD_KIND", "admin".to_string()),
            ("GUARD_ACTION", action.clone()),
            ("GUARD_INSTANCE", s("instance")),
            ("GUARD_DETAIL", s("detail")),
        ]),
    }
}

fn owned(fields: Vec<(&str, String)>) -> Vec<(String, String)> {
    fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// journald's own cgroup.
const JOURNALD_CGROUP: &str = "/system.slice/systemd-journald.service";

/// journald looking up guard's process for the entry guard just sent: it
/// reads `/proc/<guard>/exe` for `_EXE`, which the kernel refuses (every
/// ptrace-class access to guard's processes is refused, read mode
/// included). Such a record is kept in the feed and counted
/// (`guard_journal_skipped_total`) but not written to the journal: each
/// entry would make journald look again, an endless trickle of false
/// critical alarms. Only a read-mode access from journald's cgroup
/// qualifies; an attach (ptrace, `/proc/<pid>/mem`) from there is still an
/// alarm.
pub fn journald_self_lookup(r: &Record) -> bool {
    r.kind == "tamper" && r.hook == "ptrace_access_check" && r.access == ["read"] && r.process.cgroup.as_deref() == Some(JOURNALD_CGROUP)
}

/// Sends one entry; `SYSLOG_IDENTIFIER=guard`.
pub fn send(e: &Entry) -> Result<(), libsystemd::errors::SdError> {
    let ident = [("SYSLOG_IDENTIFIER".to_string(), "guard".to_string())];
    let priority = match e.priority {
        0 => Priority::Emergency,
        1 => Priority::Alert,
        2 => Priority::Critical,
        3 => Priority::Error,
        4 => Priority::Warning,
        5 => Priority::Notice,
        6 => Priority::Info,
        _ => Priority::Debug,
    };
    journal_send(priority, &e.message, e.fields.iter().chain(ident.iter()).map(|(k, v)| (k.as_str(), v.as_str())))
}

/// journald's rate limit for guard's unit: at most `burst` entries per
/// `interval` (journald.conf `RateLimitBurst=`/`RateLimitIntervalSec=`, or
/// the unit's `LogRateLimitBurst=`/`LogRateLimitIntervalSec=`). Past it,
/// journald drops entries and guard would never know; so guard keeps under
/// it on its own and counts what it withholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub interval: std::time::Duration,
}

/// The share of journald's burst guard's records may use: the rest is left
/// for guard's own log lines (stderr goes to the same unit's stream).
const SHARE: f64 = 0.8;

/// A token bucket that keeps guard's records under journald's window
/// whatever its alignment: half the share as capacity, the other half
/// refilled over one interval, so no window of `interval` ever gets more
/// than `SHARE * burst` entries.
#[derive(Debug)]
pub struct Budget {
    tokens: f64,
    cap: f64,
    per_sec: f64,
    last: std::time::Instant,
    /// Records withheld since the last gap entry told them.
    pub withheld: u64,
}

impl Budget {
    pub fn new(l: RateLimit, now: std::time::Instant) -> Self {
        let cap = (f64::from(l.burst) * SHARE / 2.0).max(1.0);
        let secs = l.interval.as_secs_f64().max(0.001);
        Budget { tokens: cap, cap, per_sec: cap / secs, last: now, withheld: 0 }
    }

    fn refill(&mut self, now: std::time::Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.cap);
        self.last = now;
    }

    /// Whether one entry may go now (and takes its token).
    pub fn take(&mut self, now: std::time::Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Spends a token the entry needs regardless (admin entries).
    pub fn spend(&mut self, now: std::time::Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// What the writer does with one entry under the budget.
fn withheld_reason(l: RateLimit) -> String {
    format!("withheld to stay under journald's rate limit ({} entries per {} s)", l.burst, l.interval.as_secs())
}

/// The journal writer: a thread fed by the hub; `limit` is journald's rate
/// limit (`None`: no budget).
pub fn spawn(hub: &Hub, limit: Option<RateLimit>) -> std::thread::JoinHandle<()> {
    let mut rx = hub.tx.subscribe();
    let stats: Arc<FeedStats> = hub.stats.clone();
    std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || {
            let mut budget = limit.map(|l| Budget::new(l, std::time::Instant::now()));
            let sent = |e: &Entry| match send(e) {
                Ok(()) => stats.journal_sent.fetch_add(1, Ordering::Relaxed),
                Err(_) => stats.journal_errors.fetch_add(1, Ordering::Relaxed),
            };
            loop {
                // Withheld records are told in a gap entry as soon as a
                // token is back, even if no other record comes.
                let next = match budget.as_mut().filter(|b| b.withheld > 0) {
                    Some(b) => {
                        if b.take(std::time::Instant::now()) {
                            let n = std::mem::take(&mut b.withheld);
                            sent(&gap_entry(n, &withheld_reason(limit.unwrap())));
                            continue;
                        }
                        match rx.try_recv() {
                            Err(broadcast::error::TryRecvError::Empty) => {
                                std::thread::sleep(std::time::Duration::from_millis(50));
                                continue;
                            }
                            Ok(item) => Ok(item),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(broadcast::error::RecvError::Lagged(n)),
                            Err(broadcast::error::TryRecvError::Closed) => Err(broadcast::error::RecvError::Closed),
                        }
                    }
                    None => rx.blocking_recv(),
                };
                let (e, admin) = match next {
                    Ok(item) if item.record.as_ref().is_some_and(journald_self_lookup) => {
                        // journald's own lookups of guard's process: told in
                        // the JSON feed only (each entry would cause another).
                        stats.journal_skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok(item) => match entry(&item) {
                        Some(e) => {
                            let admin = item.record.is_none() && e.fields.iter().any(|(k, v)| k == "MESSAGE_ID" && v == MSG_ADMIN);
                            (e, admin)
                        }
                        None => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        stats.journal_missed.fetch_add(n, Ordering::Relaxed);
                        (gap_entry(n, "journal writer lagged"), false)
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if let Some(b) = budget.as_mut() {
                    let now = std::time::Instant::now();
                    if admin {
                        // Rare, and what an admin must see: always sent.
                        b.spend(now);
                    } else if !b.take(now) {
                        b.withheld += 1;
                        stats.journal_withheld.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                sent(&e);
            }
        })
        .expect("spawning the journal writer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::record::{samples, Admin, Gap};
    use bytes::Bytes;

    fn item_of(json: Vec<u8>, record: Option<Record>) -> Item {
        Item { record, json: Bytes::from(json) }
    }

    /// The feed's sample access record (`record::samples`), of `kind`,
    /// standing for 3 decisions of an opener that made 7.
    fn denial(decision: &'static str, kind: &'static str) -> Record {
        let mut r = samples::access("demo.service", decision);
        r.kind = kind;
        r.count = 3;
        r.opener_total = Some(7);
        r
    }

    fn field<'a>(e: &'a Entry, k: &str) -> Option<&'a str> {
        e.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_budget_keeps_every_window_under_the_share() {
        use std::time::{Duration, Instant};
        let l = RateLimit { burst: 100, interval: Duration::from_secs(30) };
        let t0 = Instant::now();
        let mut b = Budget::new(l, t0);
        // A flood at 1000 entries/s for 90 s: every 30 s window, wherever it
        // starts, gets at most 80 (the share), and the rest is withheld.
        let mut sent_at = Vec::new();
        for ms in 0..90_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if b.take(now) {
                sent_at.push(ms);
            }
        }
        for start in (0..60_000u64).step_by(500) {
            let n = sent_at.iter().filter(|&&t| t >= start && t < start + 30_000).count();
            assert!(n <= 80, "{n} entries in the window from {start} ms");
        }
        assert!(sent_at.len() >= 150, "the budget is used: {}", sent_at.len());
        assert_eq!(withheld_reason(l), "withheld to stay under journald's rate limit (100 entries per 30 s)");
    }

    #[test]
    fn a_denial_is_a_warning_with_every_field() {
        let r = denial("denied", "access");
        let e = entry(&item_of(serde_json::to_vec(&r).unwrap(), Some(r))).unwrap();
        assert_eq!(e.priority, 4);
        assert_eq!(field(&e, "MESSAGE_ID"), Some(MSG_DENIED));
        for (k, v) in [
            ("GUARD_UNIT", "demo.service"),
            ("GUARD_PATH", "/run/credentials/demo.service/api-token"),
            ("GUARD_PID", "412"),
            ("GUARD_UID", "0"),
            ("GUARD_CGROUP", "/system.slice/cron.service"),
            ("GUARD_EXE", "/usr/bin/cat"),
            ("GUARD_DECISION", "denied"),
            ("GUARD_COUNT", "3"),
            ("GUARD_OPENER_TOTAL", "7"),
        ] {
            assert_eq!(field(&e, k), Some(v), "{k}");
        }
        assert!(e.message.contains("DENIED"), "{}", e.message);
        // Journal field names: uppercase letters, digits, underscores; no leading underscore.
        for (k, _) in &e.fields {
            assert!(k.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') && !k.starts_with('_'), "{k}");
        }
    }

    #[test]
    fn audited_tamper_gap_and_admin_have_their_own_ids_and_priorities() {
        let a = denial("audited", "access");
        let e = entry(&item_of(Vec::new(), Some(a))).unwrap();
        assert_eq!((field(&e, "MESSAGE_ID"), e.priority), (Some(MSG_AUDITED), 5));
        let t = denial("denied", "tamper");
        let e = entry(&item_of(Vec::new(), Some(t))).unwrap();
        assert_eq!((field(&e, "MESSAGE_ID"), e.priority), (Some(MSG_TAMPER), 2));
        let g = serde_json::to_vec(&Gap::new(5, "subscriber lagged")).unwrap();
        let e = entry(&item_of(g, None)).unwrap();
        assert_eq!((field(&e, "MESSAGE_ID"), field(&e, "GUARD_MISSED"), e.priority), (Some(MSG_GAP), Some("5"), 3));
        let u = serde_json::to_vec(&Admin::new("unloaded", Path::new("/sys/fs/bpf/guard/x"), "by root")).unwrap();
        let e = entry(&item_of(u, None)).unwrap();
        assert_eq!((field(&e, "MESSAGE_ID"), field(&e, "GUARD_ACTION"), e.priority), (Some(MSG_ADMIN), Some("unloaded"), 3));
        let s = serde_json::to_vec(&Admin::new("agent-started", Path::new("/x"), "armed")).unwrap();
        assert_eq!(entry(&item_of(s, None)).unwrap().priority, 6);
    }

    #[test]
    fn only_journalds_read_of_guard_is_kept_out_of_the_journal() {
        let mut r = denial("denied", "tamper");
        r.hook = "ptrace_access_check";
        r.process.cgroup = Some(JOURNALD_CGROUP.into());
        assert!(journald_self_lookup(&r));
        // An attach from journald's cgroup, a read from anywhere else, and a
        // denied open by journald are alarms.
        let mut attach = denial("denied", "tamper");
        attach.hook = "ptrace_access_check";
        attach.access = vec!["alter"];
        attach.process.cgroup = Some(JOURNALD_CGROUP.into());
        assert!(!journald_self_lookup(&attach));
        let mut elsewhere = denial("denied", "tamper");
        elsewhere.hook = "ptrace_access_check";
        elsewhere.process.cgroup = Some("/system.slice/journald-lookalike.service".into());
        assert!(!journald_self_lookup(&elsewhere));
        let mut open = denial("denied", "access");
        open.process.cgroup = Some(JOURNALD_CGROUP.into());
        assert!(!journald_self_lookup(&open));
    }

    #[test]
    fn message_ids_are_distinct_128_bit_hex() {
        let ids = [MSG_DENIED, MSG_AUDITED, MSG_TAMPER, MSG_GAP, MSG_ADMIN];
        for id in ids {
            assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
        }
        let mut sorted = ids.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
    }
}
