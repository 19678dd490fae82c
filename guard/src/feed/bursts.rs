//! The agent's half of coalescing. The kernel counts every denied (or
//! audited) decision per `BurstKey` (opener process, object, decision) in
//! `BURSTS` and writes a record for the first decision of a burst and at
//! most one per `BURST_WINDOW_NS` after it, each carrying the key's running
//! `total`. Here each record becomes `count = total - (total already told)`,
//! so a record the ring buffer dropped costs no count: the next one carries
//! it. A burst that ends between two records leaves a remainder in the
//! table; [`Tally::flush`] tells it once the key has been quiet for a window,
//! and forgets the keys of processes that have exited.
//!
//! Exact by construction: the kernel's `total` is an atomic count, and the
//! feed's counts for a key are differences of its totals, so they add up to
//! the last total told. What bounds it: `BURSTS` has `--max-openers` keys;
//! a decision whose key finds no room is reported alone (`total` 0, count 1)
//! and, if that record is also dropped, counted in `CNT_LOST`.

use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, MapData};
use guard_common::*;

/// A retired key (its process exited) is remembered this long, so that a
/// record of it still in the ring buffer is not told twice.
const RETIRED_KEEP_NS: u64 = 30 * 1_000_000_000;

#[derive(Debug, Default, Clone)]
struct Told {
    /// The key's total as of the last record told.
    total: u64,
    /// The last decision told (boot ns).
    last_ns: u64,
    /// When the key was deleted from `BURSTS` (boot ns), if it was.
    retired_ns: u64,
    /// The path the opener used, from the key's last kernel record (the
    /// table has none, and a file the kernel tagged is not in the agent's).
    path: Option<Box<[u8]>>,
}

#[derive(Default)]
pub struct Tally {
    told: HashMap<BurstKey, Told>,
}

/// What a record adds to the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Decisions the record stands for (0: nothing new; don't publish).
    pub count: u64,
    /// The key's total after it (None: an untracked decision).
    pub total: Option<u64>,
    /// The first decision it stands for (boot ns).
    pub first_ns: u64,
}

/// The `BurstKey` of a kernel record (the same rule `report.rs` applies).
pub fn key_of(ev: &Event) -> BurstKey {
    BurstKey {
        ino: if ev.dev == 0 { (ev.target_tgid as u64) << 32 | ev.detail as u64 } else { ev.ino },
        start_ns: ev.start_ns,
        dev: ev.dev,
        tgid: ev.tgid,
        policy_id: ev.policy_id,
        hook: ev.hook,
        access: ev.access,
        decision: ev.decision,
    }
}

impl Tally {
    /// The share of a record with `key`, kernel `total` (0: untracked),
    /// first decision `first_ns` and last `last_ns`.
    pub fn take(&mut self, key: &BurstKey, total: u64, first_ns: u64, last_ns: u64) -> Share {
        if total == 0 {
            return Share { count: 1, total: None, first_ns };
        }
        let told = self.told.entry(*key).or_default();
        if total <= told.total {
            return Share { count: 0, total: Some(told.total), first_ns };
        }
        let count = total - told.total;
        // The first decision told here came after the last one told before.
        let first_ns = if told.total > 0 && first_ns <= told.last_ns { told.last_ns + 1 } else { first_ns };
        told.total = total;
        told.last_ns = told.last_ns.max(last_ns);
        Share { count, total: Some(total), first_ns: first_ns.min(last_ns) }
    }

    /// Remembers the path of a kernel record for the remainders of its key.
    pub fn remember_path(&mut self, ev: &Event) {
        if ev.total == 0 || ev.path_len <= 1 {
            return;
        }
        if let Some(t) = self.told.get_mut(&key_of(ev)) {
            let end = ev.path.iter().position(|&b| b == 0).unwrap_or(ev.path.len());
            if t.path.as_deref() != Some(&ev.path[..end]) {
                t.path = Some(ev.path[..end].into());
            }
        }
    }

    /// Keys tracked (live and retired).
    pub fn len(&self) -> usize {
        self.told.len()
    }

    /// Reads `BURSTS`: returns the remainder of each key quiet for a window
    /// (as an `Event` built from the table, with its share), and deletes the
    /// keys of exited processes once fully told. `now_ns` is CLOCK_BOOTTIME.
    pub fn flush(&mut self, table: &mut BpfHashMap<MapData, BurstKey, BurstState>, now_ns: u64) -> Flushed {
        let mut out = Flushed::default();
        let keys: Vec<BurstKey> = table.keys().filter_map(|k| k.ok()).collect();
        out.keys = keys.len();
        for key in keys {
            let Ok(st) = table.get(&key, 0) else { continue };
            let quiet = now_ns.saturating_sub(st.last_ns) >= BURST_WINDOW_NS;
            if !quiet {
                continue;
            }
            let told = self.told.get(&key).map_or(0, |t| t.total);
            if st.total > told {
                let mut ev = event_of(&key, &st);
                if let Some(p) = self.told.get(&key).and_then(|t| t.path.as_deref()) {
                    let n = p.len().min(EVENT_PATH_LEN - 1);
                    ev.path[..n].copy_from_slice(&p[..n]);
                    ev.path_len = n as i32 + 1;
                }
                let share = self.take(&key, st.total, st.first_ns, st.last_ns);
                out.records.push((ev, share));
            }
            if !process_alive(key.tgid, key.start_ns) {
                // An exited process adds nothing more: its total is final,
                // and was just told.
                if table.remove(&key).is_ok() {
                    out.retired += 1;
                    if let Some(t) = self.told.get_mut(&key) {
                        t.retired_ns = now_ns;
                    }
                }
            }
        }
        self.told.retain(|_, t| t.retired_ns == 0 || now_ns.saturating_sub(t.retired_ns) < RETIRED_KEEP_NS);
        out
    }
}

#[derive(Default)]
pub struct Flushed {
    pub records: Vec<(Event, Share)>,
    /// Keys in the table when read.
    pub keys: usize,
    /// Keys deleted (their processes exited).
    pub retired: usize,
}

/// A record for the remainder of `key`, from what the table kept of the
/// opener at its first decision. No path: the agent names the file from
/// what it tagged.
fn event_of(key: &BurstKey, st: &BurstState) -> Event {
    let mut ev: Event = unsafe { std::mem::zeroed() };
    ev.ts_boot_ns = st.last_ns;
    ev.cgroup_id = st.cgroup_id;
    // A key without a file (dev 0) holds the target and detail in `ino`.
    ev.ino = if key.dev == 0 { 0 } else { key.ino };
    ev.dev = key.dev;
    ev.exe_ino = st.exe_ino;
    ev.exe_dev = st.exe_dev;
    ev.total = st.total;
    ev.first_ns = st.first_ns;
    ev.start_ns = key.start_ns;
    ev.pid = st.pid;
    ev.tgid = key.tgid;
    ev.uid = st.uid;
    ev.gid = st.gid;
    ev.euid = st.euid;
    ev.policy_id = key.policy_id;
    ev.access = key.access;
    ev.decision = key.decision;
    ev.hook = key.hook;
    ev.target_tgid = st.target_tgid;
    ev.detail = st.detail;
    ev.comm = st.comm;
    ev
}

/// Whether process `tgid` is still the one that started at `start_ns` (boot
/// ns): `/proc/<tgid>/stat`'s start time is the same instant in clock ticks.
fn process_alive(tgid: u32, start_ns: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{tgid}/stat")) else { return false };
    // Field 22, counted after the command name's closing parenthesis.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return true };
    let Some(ticks) = rest.split_whitespace().nth(19).and_then(|f| f.parse::<u64>().ok()) else { return true };
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks == start_ns / (1_000_000_000 / hz)
}

/// CLOCK_BOOTTIME in ns (the clock of the kernel's records).
pub fn boot_now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tgid: u32) -> BurstKey {
        BurstKey { ino: 7, start_ns: 99, dev: 1, tgid, policy_id: 0, hook: HOOK_FILE_OPEN, access: ACCESS_READ, decision: DECISION_DENIED }
    }

    #[test]
    fn counts_are_differences_of_totals() {
        let mut t = Tally::default();
        let k = key(1);
        assert_eq!(t.take(&k, 1, 10, 10).count, 1);
        // Records with totals 2..=40 were dropped; the next carries them.
        let s = t.take(&k, 41, 11, 50);
        assert_eq!((s.count, s.total), (40, Some(41)));
        // A record overtaken by a flush adds nothing.
        assert_eq!(t.take(&k, 30, 20, 30).count, 0);
        assert_eq!(t.take(&k, 45, 51, 60).count, 4);
        // Another opener is its own key.
        assert_eq!(t.take(&key(2), 3, 5, 6).count, 3);
    }

    #[test]
    fn untracked_records_stand_for_themselves() {
        let mut t = Tally::default();
        let s = t.take(&key(1), 0, 5, 5);
        assert_eq!((s.count, s.total), (1, None));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn first_time_never_overlaps_what_was_told() {
        let mut t = Tally::default();
        let k = key(1);
        t.take(&k, 5, 10, 20);
        // The kernel's first_ns predates a flush the agent did: clamp.
        let s = t.take(&k, 8, 15, 30);
        assert_eq!(s.first_ns, 21);
    }

    #[test]
    fn a_kernel_records_path_is_kept_for_the_keys_remainders() {
        let mut t = Tally::default();
        let mut ev: Event = unsafe { std::mem::zeroed() };
        (ev.dev, ev.ino, ev.tgid, ev.start_ns, ev.hook, ev.access, ev.decision) = (1, 7, 1, 99, HOOK_FILE_OPEN, ACCESS_READ, DECISION_DENIED);
        ev.total = 1;
        ev.path[..4].copy_from_slice(b"/a/b");
        ev.path_len = 5;
        t.take(&key_of(&ev), 1, 0, 0);
        t.remember_path(&ev);
        assert_eq!(t.told[&key(1)].path.as_deref(), Some(&b"/a/b"[..]));
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_is_not() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let rest = stat.rsplit_once(')').unwrap().1;
        let ticks: u64 = rest.split_whitespace().nth(19).unwrap().parse().unwrap();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let start_ns = ticks * (1_000_000_000 / hz) + 3;
        assert!(process_alive(std::process::id(), start_ns));
        assert!(!process_alive(std::process::id(), start_ns + 2_000_000_000));
        assert!(!process_alive(u32::MAX - 1, start_ns));
    }
}
