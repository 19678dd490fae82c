//! The denial feed: kernel records in, JSON lines out, to any number of
//! consumers, none of which can slow the reader (or, therefore, the kernel).
//!
//! ```text
//! ring buffer ──reader──> broadcast (bounded) ──> output sink (stdout / --events-file)
//!                                              ├─> each socket subscriber
//!                                              └─> the systemd journal (`--journal`)
//! ```
//! A consumer that falls behind the broadcast's capacity loses the oldest
//! records and is sent a `gap` record saying how many; a subscriber whose
//! socket stays unwritable is cut off. The reader never waits on either.

pub mod bursts;
pub mod events;
pub mod human;
pub mod journal;
pub mod metrics;
pub mod record;
pub mod socket;

use std::{
    collections::BTreeMap,
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use anyhow::Result;
use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use guard_common::{BurstKey, BurstState, Event};
use bytes::Bytes;
use tokio::{io::unix::AsyncFd, sync::broadcast};

use crate::enforce::Enforcer;
use bursts::{Share, Tally};
use record::{Admin, Gap, Namer, Record};

/// How many records a consumer may fall behind before it starts losing them.
pub const FEED_CAPACITY: usize = 16 * 1024;

pub struct Item {
    pub record: Option<Record>,
    /// One JSON line, newline included.
    pub json: Bytes,
}

#[derive(Default)]
pub struct FeedStats {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    pub subscribers: AtomicU64,
    pub subscribers_total: AtomicU64,
    pub subscribers_cut_off: AtomicU64,
    pub subscriber_missed: AtomicU64,
    pub output_missed: AtomicU64,
    /// Kernel records whose decisions a flush of the table had told already.
    pub superseded: AtomicU64,
    /// Records written from the kernel's burst table (remainders of bursts).
    pub flushed: AtomicU64,
    /// Keys in the kernel's burst table at the last flush.
    pub burst_keys: AtomicU64,
    /// Keys the agent remembers (live and recently retired): its memory bound.
    pub burst_keys_told: AtomicU64,
    /// Keys deleted from it because their processes exited.
    pub burst_keys_retired: AtomicU64,
    /// Journal entries sent, lost by the journal writer lagging, and sends
    /// that failed (journald gone or refusing).
    pub journal_sent: AtomicU64,
    pub journal_missed: AtomicU64,
    pub journal_errors: AtomicU64,
    pub journal_skipped: AtomicU64,
    /// Records kept out of the journal to stay under journald's rate limit
    /// (told in a gap entry as soon as the budget allows).
    pub journal_withheld: AtomicU64,
    /// (policy, unit, decision) -> decisions the feed's records stand for.
    pub by_policy: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    /// 1 while the instance this agent serves is pinned and attached (the
    /// kernel enforces it with or without the agent); 0 once it was unloaded.
    pub enforcing: AtomicU64,
    /// Admin records published, by action.
    pub admin_actions: Mutex<BTreeMap<&'static str, u64>>,
}

/// Every admin action (`GUARD_ACTION`): each is a metric sample from the
/// start, at 0, so alerting rules can name them before the first happens.
pub const ADMIN_ACTIONS: &[&str] = &["agent-started", "agent-stopped", "handover", "reload-failed", "reloaded", "replaced", "unloaded"];

#[derive(Clone)]
pub struct Hub {
    pub tx: broadcast::Sender<Arc<Item>>,
    pub stats: Arc<FeedStats>,
}

impl Hub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(FEED_CAPACITY);
        Self { tx, stats: Arc::new(FeedStats::default()) }
    }

    /// An admin record goes to every consumer like any other line.
    pub fn publish_admin(&self, admin: &Admin) {
        *self.stats.admin_actions.lock().unwrap().entry(admin.action).or_default() += 1;
        if admin.action == "unloaded" {
            self.stats.enforcing.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        self.publish_line(serde_json::to_vec(admin).unwrap_or_default(), None);
    }

    pub fn publish_line(&self, json: Vec<u8>, record: Option<Record>) {
        let mut json = json;
        json.push(b'\n');
        // No receivers is fine: the feed is also counted in metrics.
        let _ = self.tx.send(Arc::new(Item { record, json: Bytes::from(json) }));
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

/// How often the kernel's burst table is read for quiet remainders.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Drains the ring buffer for as long as the agent runs, turning each
/// record's running total into its count, and flushes the remainders of
/// bursts that went quiet from the kernel's table (`bursts`, when this agent
/// holds it).
pub async fn read_ring(
    ring: RingBuf<MapData>,
    mut bursts: Option<BpfHashMap<MapData, BurstKey, BurstState>>,
    hub: Hub,
    enforcer: Arc<Mutex<Enforcer>>,
    mut namer: Namer,
) -> Result<()> {
    // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd
    // owns it, and nothing else registers it.
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("registering the ring buffer: {e}"))?;
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ready = fd.readable_mut() => {
                let mut guard = ready?;
                let drained = drain(guard.get_inner_mut(), &mut tally, &hub, &enforcer, &mut namer);
                if drained {
                    guard.clear_ready();
                } else {
                    // Under a flood the ring never empties: give the other
                    // tasks (metrics, subscribers) their turn.
                    drop(guard);
                    tokio::task::yield_now().await;
                }
            }
            _ = tick.tick() => {
                let Some(table) = bursts.as_mut() else { continue };
                // Kernel records first: they carry exact times and paths.
                drain(fd.get_mut(), &mut tally, &hub, &enforcer, &mut namer);
                let flushed = tally.flush(table, bursts::boot_now_ns());
                hub.stats.burst_keys.store(flushed.keys as u64, Ordering::Relaxed);
                hub.stats.burst_keys_told.store(tally.len() as u64, Ordering::Relaxed);
                hub.stats.burst_keys_retired.fetch_add(flushed.retired as u64, Ordering::Relaxed);
                for (ev, share) in flushed.records {
                    hub.stats.flushed.fetch_add(1, Ordering::Relaxed);
                    publish(&ev, &share, "table", &hub, &enforcer, &mut namer);
                }
            }
        }
    }
}

/// Reads up to 256 records; true if the ring is empty.
fn drain(ring: &mut RingBuf<MapData>, tally: &mut Tally, hub: &Hub, enforcer: &Arc<Mutex<Enforcer>>, namer: &mut Namer) -> bool {
    for _ in 0..256 {
        let Some(item) = ring.next() else { return true };
        hub.stats.received.fetch_add(1, Ordering::Relaxed);
        let Some(ev) = record::decode(&item) else {
            hub.stats.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        drop(item);
        let share = tally.take(&bursts::key_of(&ev), ev.total, ev.first_ns, ev.ts_boot_ns);
        tally.remember_path(&ev);
        if share.count == 0 {
            // Its decisions were told already (by a flush of the table).
            hub.stats.superseded.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        publish(&ev, &share, "kernel", hub, enforcer, namer);
    }
    false
}

fn publish(ev: &Event, share: &Share, origin: &'static str, hub: &Hub, enforcer: &Arc<Mutex<Enforcer>>, namer: &mut Namer) {
    let rec = {
        let enf = enforcer.lock().unwrap();
        namer.record(ev, share, origin, &enf)
    };
    *hub.stats.by_policy.lock().unwrap().entry((rec.policy.clone(), rec.unit.clone(), rec.decision)).or_default() += share.count;
    match serde_json::to_vec(&rec) {
        Ok(json) => hub.publish_line(json, Some(rec)),
        Err(_) => {
            hub.stats.malformed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes the feed to stdout or a file: JSON lines, or one human line per
/// record (`human.rs`) when `human` (stdout is a terminal). Runs on its own thread so a
/// blocked stdout can only make this sink lag (and say so), nothing else.
pub fn spawn_output(hub: &Hub, out: Box<dyn Write + Send>, human: bool) -> std::thread::JoinHandle<()> {
    let mut rx = hub.tx.subscribe();
    let stats = hub.stats.clone();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    std::thread::spawn(move || loop {
        // Block for one record, then take whatever else is already queued,
        // and flush once per batch rather than once per record.
        let mut next = rx.blocking_recv().map_err(Some);
        loop {
            let res = match next {
                Ok(item) => match (&item.record, human) {
                    (Some(r), true) => writeln!(out, "{}", r.human()),
                    // Admin records: JSON only (rare, so parsing them back is fine).
                    (None, true) => match serde_json::from_slice(&item.json).ok().as_ref().and_then(human::line) {
                        Some(line) => writeln!(out, "{line}"),
                        None => out.write_all(&item.json),
                    },
                    (_, false) => out.write_all(&item.json),
                },
                Err(Some(broadcast::error::RecvError::Lagged(n))) => {
                    stats.output_missed.fetch_add(n, Ordering::Relaxed);
                    let gap = Gap::new(n, "output lagged");
                    if human {
                        writeln!(out, "{}", gap.human())
                    } else {
                        writeln!(out, "{}", serde_json::to_string(&gap).unwrap_or_default())
                    }
                }
                Err(Some(broadcast::error::RecvError::Closed)) => {
                    let _ = out.flush();
                    return;
                }
                Err(None) => break,
            };
            if res.is_err() {
                return;
            }
            next = match rx.try_recv() {
                Ok(item) => Ok(item),
                Err(broadcast::error::TryRecvError::Empty) => Err(None),
                Err(broadcast::error::TryRecvError::Lagged(n)) => Err(Some(broadcast::error::RecvError::Lagged(n))),
                Err(broadcast::error::TryRecvError::Closed) => Err(Some(broadcast::error::RecvError::Closed)),
            };
        }
        if out.flush().is_err() {
            return;
        }
    })
}
