//! Prometheus text metrics on an opt-in TCP address (`--metrics ADDR`).
//! A minimal HTTP/1.0 responder: any request gets the current metrics.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use guard_common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::Hub;
use crate::kernel::Kernel;

pub async fn serve(addr: SocketAddr, kernel: Arc<Mutex<Kernel>>, hub: Hub) -> Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding metrics address {addr}"))?;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let body = render(&kernel, &hub);
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

pub fn render(kernel: &Arc<Mutex<Kernel>>, hub: &Hub) -> String {
    let mut out = String::new();
    let k = kernel.lock().unwrap();
    if let Ok(c) = k.counters() {
        let _ = writeln!(out, "# HELP guard_kernel_total Decisions and record outcomes counted by the kernel program.");
        let _ = writeln!(out, "# TYPE guard_kernel_total counter");
        for (i, name) in COUNTER_NAMES.iter().enumerate() {
            let _ = writeln!(out, "guard_kernel_total{{counter=\"{name}\"}} {}", c[i]);
        }
    }
    let _ = writeln!(out, "# HELP guard_hook_runs_total Program invocations (kernel BPF run-time stats; needs --prog-stats).");
    let _ = writeln!(out, "# TYPE guard_hook_runs_total counter");
    let mut stats = Vec::new();
    for (name, hook) in ENFORCING_PROGRAMS {
        if let Ok((runs, ns)) = k.prog_stats(name) {
            stats.push((hook, runs, ns));
        }
    }
    drop(k);
    for (hook, runs, _) in &stats {
        let _ = writeln!(out, "guard_hook_runs_total{{hook=\"{hook}\"}} {runs}");
    }
    let _ = writeln!(out, "# HELP guard_hook_run_time_ns_total Kernel time spent in each program, nanoseconds.");
    let _ = writeln!(out, "# TYPE guard_hook_run_time_ns_total counter");
    for (hook, _, ns) in &stats {
        let _ = writeln!(out, "guard_hook_run_time_ns_total{{hook=\"{hook}\"}} {ns}");
    }
    let _ = writeln!(out, "# HELP guard_hook_ns_per_call Mean kernel time per program call since the agent started.");
    let _ = writeln!(out, "# TYPE guard_hook_ns_per_call gauge");
    for (hook, runs, ns) in &stats {
        let per = if *runs == 0 { 0.0 } else { *ns as f64 / *runs as f64 };
        let _ = writeln!(out, "guard_hook_ns_per_call{{hook=\"{hook}\"}} {per:.1}");
    }

    let s = &hub.stats;
    let _ = writeln!(out, "# HELP guard_decisions_total Decisions the feed's records stand for (the sum of their counts), by policy, unit and decision.");
    let _ = writeln!(out, "# TYPE guard_decisions_total counter");
    for ((policy, unit, decision), n) in s.by_policy.lock().unwrap().iter() {
        let _ = writeln!(out, "guard_decisions_total{{policy=\"{policy}\",unit=\"{unit}\",decision=\"{decision}\"}} {n}");
    }
    let simple = [
        ("guard_feed_received_total", "counter", "Records read from the ring buffer.", s.received.load(Ordering::Relaxed)),
        ("guard_feed_flushed_total", "counter", "Records written from the kernel's burst table (remainders of quiet bursts).", s.flushed.load(Ordering::Relaxed)),
        ("guard_feed_superseded_total", "counter", "Kernel records whose decisions a table flush had already told.", s.superseded.load(Ordering::Relaxed)),
        ("guard_burst_keys", "gauge", "(opener, object, decision) keys in the kernel's burst table at the last flush.", s.burst_keys.load(Ordering::Relaxed)),
        ("guard_burst_keys_told", "gauge", "Keys the agent remembers totals for (live and recently retired).", s.burst_keys_told.load(Ordering::Relaxed)),
        ("guard_burst_keys_retired_total", "counter", "Keys deleted from the burst table because their process exited.", s.burst_keys_retired.load(Ordering::Relaxed)),
        ("guard_feed_malformed_total", "counter", "Ring buffer items that did not decode.", s.malformed.load(Ordering::Relaxed)),
        ("guard_subscribers", "gauge", "Connected feed subscribers.", s.subscribers.load(Ordering::Relaxed)),
        ("guard_subscribers_total", "counter", "Subscribers ever connected.", s.subscribers_total.load(Ordering::Relaxed)),
        ("guard_subscribers_cut_off_total", "counter", "Subscribers disconnected for not reading.", s.subscribers_cut_off.load(Ordering::Relaxed)),
        ("guard_subscriber_missed_total", "counter", "Records subscribers missed by lagging (sent as gap records).", s.subscriber_missed.load(Ordering::Relaxed)),
        ("guard_journal_entries_total", "counter", "Feed records sent to the systemd journal.", s.journal_sent.load(Ordering::Relaxed)),
        ("guard_journal_missed_total", "counter", "Records the journal writer missed by lagging (told in a gap entry).", s.journal_missed.load(Ordering::Relaxed)),
        ("guard_journal_errors_total", "counter", "Journal entries that could not be sent.", s.journal_errors.load(Ordering::Relaxed)),
        ("guard_output_missed_total", "counter", "Records the stdout/file output missed by lagging.", s.output_missed.load(Ordering::Relaxed)),
    ];
    for (name, kind, help, v) in simple {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    out
}
