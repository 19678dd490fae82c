//! Prometheus text metrics on an opt-in TCP address (`--metrics ADDR`).
//! A minimal HTTP/1.0 responder: any request gets the current metrics.
//!
//! A scrape is collected first (`collect`, which reads the kernel) and then
//! written as text (`text`, a pure function, tested on a sample). Names
//! follow Prometheus' conventions as `promtool check metrics` checks them
//! (`cargo xtask check-metrics SCRAPE`, `xtask/src/promtool.rs`):
//! base units (seconds), `_total` on counters and only there, HELP and TYPE
//! on every family. Ratios of exported counters are left to the query
//! (`rate(guard_hook_run_seconds_total[5m]) / rate(guard_hook_runs_total[5m])`
//! is the mean cost of one call).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use guard_common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::{FeedStats, Hub};
use crate::kernel::{Counters, Kernel};

/// `prog_stats`: the agent holds the kernel's BPF run-time statistics on
/// (`--prog-stats`), so the per-hook families have samples; without it they
/// have none (a count the kernel does not keep would read as a stalled 0).
pub async fn serve(addr: SocketAddr, kernel: Arc<Mutex<Kernel>>, hub: Hub, prog_stats: bool) -> Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding metrics address {addr}"))?;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let body = render(&kernel, &hub, prog_stats);
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            // Read the request line (whatever it is); don't wait for long.
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut req)).await;
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
                stream.shutdown().await
            })
            .await;
        });
    }
}

/// What one scrape shows, read once.
#[derive(Debug, Default)]
pub struct Scrape {
    /// The kernel's counters, in `COUNTER_NAMES` order (`None`: unreadable).
    pub kernel: Option<Counters>,
    /// The kernel's BPF run-time statistics, per hook (`--prog-stats`).
    pub hooks: Vec<HookRuns>,
    /// (policy, unit, decision) -> decisions the feed's records stand for.
    pub decisions: BTreeMap<(String, String, &'static str), u64>,
    pub feed: FeedCounts,
    /// `FeedStats::enforcing`.
    pub enforcing: u64,
    /// Admin records by action (every one of `ADMIN_ACTIONS`, 0 if none yet).
    pub admin: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct HookRuns {
    pub hook: &'static str,
    pub runs: u64,
    pub run_time: Duration,
}

/// `FeedStats`' plain counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct FeedCounts {
    pub received: u64,
    pub flushed: u64,
    pub superseded: u64,
    pub burst_keys: u64,
    pub burst_keys_told: u64,
    pub burst_keys_retired: u64,
    pub malformed: u64,
    pub subscribers: u64,
    pub subscribers_total: u64,
    pub subscribers_cut_off: u64,
    pub subscriber_missed: u64,
    pub output_missed: u64,
    pub journal_sent: u64,
    pub journal_missed: u64,
    pub journal_errors: u64,
    pub journal_skipped: u64,
    pub journal_withheld: u64,
}

impl FeedCounts {
    fn of(s: &FeedStats) -> Self {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Self {
            received: get(&s.received),
            flushed: get(&s.flushed),
            superseded: get(&s.superseded),
            burst_keys: get(&s.burst_keys),
            burst_keys_told: get(&s.burst_keys_told),
            burst_keys_retired: get(&s.burst_keys_retired),
            malformed: get(&s.malformed),
            subscribers: get(&s.subscribers),
            subscribers_total: get(&s.subscribers_total),
            subscribers_cut_off: get(&s.subscribers_cut_off),
            subscriber_missed: get(&s.subscriber_missed),
            output_missed: get(&s.output_missed),
            journal_sent: get(&s.journal_sent),
            journal_missed: get(&s.journal_missed),
            journal_errors: get(&s.journal_errors),
            journal_skipped: get(&s.journal_skipped),
            journal_withheld: get(&s.journal_withheld),
        }
    }
}

pub fn render(kernel: &Arc<Mutex<Kernel>>, hub: &Hub, prog_stats: bool) -> String {
    text(&collect(kernel, hub, prog_stats))
}

fn collect(kernel: &Arc<Mutex<Kernel>>, hub: &Hub, prog_stats: bool) -> Scrape {
    let k = kernel.lock().unwrap();
    let hooks = if prog_stats {
        ENFORCING_PROGRAMS
            .iter()
            .filter_map(|&(name, hook)| {
                let (runs, ns) = k.prog_stats(name).ok()?;
                Some(HookRuns { hook, runs, run_time: Duration::from_nanos(ns) })
            })
            .collect()
    } else {
        Vec::new()
    };
    let kernel = k.counters().ok();
    drop(k);
    let mut admin: BTreeMap<&'static str, u64> = super::ADMIN_ACTIONS.iter().map(|a| (*a, 0)).collect();
    admin.extend(hub.stats.admin_actions.lock().unwrap().iter().map(|(a, n)| (*a, *n)));
    Scrape {
        kernel,
        hooks,
        decisions: hub.stats.by_policy.lock().unwrap().clone(),
        feed: FeedCounts::of(&hub.stats),
        enforcing: hub.stats.enforcing.load(Ordering::Relaxed),
        admin,
    }
}

/// One scrape in the Prometheus text format (version 0.0.4).
pub fn text(s: &Scrape) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &mut dyn Iterator<Item = (String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let counters = s.kernel.iter().flat_map(|c| COUNTER_NAMES.iter().zip(c.iter()));
    family(
        "guard_kernel_total",
        "counter",
        "Decisions and record outcomes counted by the kernel program.",
        &mut counters.map(|(name, v)| (labels(&[("counter", name)]), v.to_string())),
    );
    family(
        "guard_hook_runs_total",
        "counter",
        "Program invocations (kernel BPF run-time stats; only with --prog-stats).",
        &mut s.hooks.iter().map(|h| (labels(&[("hook", h.hook)]), h.runs.to_string())),
    );
    family(
        "guard_hook_run_seconds_total",
        "counter",
        "Kernel time spent in each program, in seconds (kernel BPF run-time stats).",
        &mut s.hooks.iter().map(|h| (labels(&[("hook", h.hook)]), h.run_time.as_secs_f64().to_string())),
    );
    family(
        "guard_decisions_total",
        "counter",
        "Decisions the feed's records stand for (the sum of their counts), by policy, unit and decision.",
        &mut s.decisions.iter().map(|((policy, unit, decision), n)| {
            (labels(&[("policy", policy), ("unit", unit), ("decision", decision)]), n.to_string())
        }),
    );
    family(
        "guard_admin_actions_total",
        "counter",
        "Admin records published (GUARD_ACTION: agent-started, reloaded, reload-failed, unloaded, ...), by action.",
        &mut s.admin.iter().map(|(action, n)| (labels(&[("action", action)]), n.to_string())),
    );
    let f = &s.feed;
    let simple = [
        (
            "guard_enforcing",
            "gauge",
            "1 while the instance this agent serves is pinned and attached: the kernel enforces it, with or without the agent, until `guard unload` (0 after it).",
            s.enforcing,
        ),
        ("guard_feed_received_total", "counter", "Records read from the ring buffer.", f.received),
        ("guard_feed_flushed_total", "counter", "Records written from the kernel's burst table (remainders of quiet bursts).", f.flushed),
        ("guard_feed_superseded_total", "counter", "Kernel records whose decisions a table flush had already told.", f.superseded),
        ("guard_burst_keys", "gauge", "(opener, object, decision) keys in the kernel's burst table at the last flush.", f.burst_keys),
        ("guard_burst_keys_told", "gauge", "Keys the agent remembers totals for (live and recently retired).", f.burst_keys_told),
        ("guard_burst_keys_retired_total", "counter", "Keys deleted from the burst table because their process exited.", f.burst_keys_retired),
        ("guard_feed_malformed_total", "counter", "Ring buffer items that did not decode.", f.malformed),
        ("guard_subscribers", "gauge", "Connected feed subscribers.", f.subscribers),
        ("guard_subscribers_total", "counter", "Subscribers ever connected.", f.subscribers_total),
        ("guard_subscribers_cut_off_total", "counter", "Subscribers disconnected for not reading.", f.subscribers_cut_off),
        ("guard_subscriber_missed_total", "counter", "Records subscribers missed by lagging (sent as gap records).", f.subscriber_missed),
        ("guard_output_missed_total", "counter", "Records the stdout/file output missed by lagging.", f.output_missed),
        ("guard_journal_entries_total", "counter", "Feed records sent to the systemd journal.", f.journal_sent),
        ("guard_journal_missed_total", "counter", "Records the journal writer missed by lagging (told in a gap entry).", f.journal_missed),
        ("guard_journal_errors_total", "counter", "Journal entries that could not be sent.", f.journal_errors),
        (
            "guard_journal_skipped_total",
            "counter",
            "Refused lookups of guard's process by journald itself, kept out of the journal (each entry would cause another).",
            f.journal_skipped,
        ),
        (
            "guard_journal_withheld_total",
            "counter",
            "Records kept out of the journal to stay under journald's rate limit (told in a gap entry; still in the JSON feed and these metrics).",
            f.journal_withheld,
        ),
    ];
    for (name, kind, help, v) in simple {
        family(name, kind, help, &mut std::iter::once((String::new(), v.to_string())));
    }
    out
}

/// `{a="x",b="y"}`, values escaped as the text format wants (unit names
/// can hold backslashes: systemd escapes as `\x2d`).
fn labels(pairs: &[(&str, &str)]) -> String {
    let escaped: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", escaped.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scrape with every family present: what `cargo xtask`'s promtool
    /// check would see from a busy agent (print it with --nocapture).
    pub fn sample() -> Scrape {
        let mut kernel = Counters::default();
        for (i, c) in kernel.iter_mut().enumerate() {
            *c = 1000 + i as u64;
        }
        let mut decisions = BTreeMap::new();
        decisions.insert(("demo".to_string(), "demo.service".to_string(), "denied"), 12);
        decisions.insert(("esc".to_string(), r"foo\x2dbar.service".to_string(), "audited"), 3);
        Scrape {
            kernel: Some(kernel),
            hooks: vec![
                HookRuns { hook: "file_open", runs: 4_000_000, run_time: Duration::from_nanos(1_234_567_891) },
                HookRuns { hook: "bpf", runs: 7, run_time: Duration::from_nanos(700) },
            ],
            decisions,
            feed: FeedCounts {
                received: 1,
                flushed: 2,
                superseded: 3,
                burst_keys: 4,
                burst_keys_told: 5,
                burst_keys_retired: 6,
                malformed: 7,
                subscribers: 8,
                subscribers_total: 9,
                subscribers_cut_off: 10,
                subscriber_missed: 11,
                output_missed: 12,
                journal_sent: 13,
                journal_missed: 14,
                journal_errors: 15,
                journal_skipped: 16,
                journal_withheld: 17,
            },
            enforcing: 1,
            admin: [("reloaded", 2), ("reload-failed", 1)].into_iter().collect(),
        }
    }

    #[test]
    fn every_family_has_help_type_and_samples() {
        let text = text(&sample());
        println!("{text}");
        let families: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        assert_eq!(families.len(), 23, "{families:?}");
        for family in families {
            let (name, kind) = family.split_once(' ').unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: no HELP");
            assert!(text.lines().any(|l| l.starts_with(name) && !l.starts_with('#')), "{name}: no sample");
            // Counters, and only counters, end in _total.
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name} is a {kind}");
        }
    }

    #[test]
    fn seconds_and_escaped_labels() {
        let text = text(&sample());
        assert!(text.contains("guard_hook_run_seconds_total{hook=\"file_open\"} 1.234567891\n"), "{text}");
        assert!(text.contains("guard_hook_run_seconds_total{hook=\"bpf\"} 0.0000007\n"), "{text}");
        assert!(text.contains("guard_kernel_total{counter=\"denied\"} "), "{text}");
        assert!(text.contains(r#"unit="foo\\x2dbar.service""#), "{text}");
        assert_eq!(labels(&[("a", "q\"n\nb\\")]), r#"{a="q\"n\nb\\"}"#);
        // Unreadable kernel counters: the family stays, without samples.
        let bare = super::text(&Scrape::default());
        assert!(bare.contains("# TYPE guard_kernel_total counter") && !bare.contains("guard_kernel_total{"), "{bare}");
    }
}
