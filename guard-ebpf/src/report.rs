//! Records of denied (or audited) accesses, written into the `EVENTS` ring
//! buffer, coalesced per (opener process, object, decision): the first
//! decision of a burst is written at once; repeats within `BURST_WINDOW_NS`
//! of the key's last record are counted in `BURSTS` and carried by its next
//! record (or flushed by the agent from the table once the key is quiet).
//! Reporting never waits: a full ring buffer or an exceeded rate limit drops
//! the record and counts it; the verdict is the same, and a tracked key's
//! count survives the drop. None of this is on the hot path: only denials
//! (and audits) get here.

use core::ptr::{addr_of, addr_of_mut, read_volatile};

use aya_ebpf::{
    bindings::{inode, path, BPF_NOEXIST},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_d_path, bpf_get_current_comm as gen_get_comm, bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    },
};
use guard_common::*;

use crate::{
    layout::{current_euid, current_task, exe_key, file_key, off, read_u64},
    maps::{count, BURSTS, EVENTS, RATE},
};

/// What the route being judged can tell the report.
pub struct Subject {
    pub hook: u32,
    pub access: u32,
    /// `struct file *` when the route has one (d_path is taken from it).
    pub file: *const u8,
    pub target_tgid: u32,
    /// `Event::detail`.
    pub detail: u32,
}

impl Subject {
    #[inline(always)]
    pub const fn new(hook: u32, access: u32) -> Self {
        Self { hook, access, file: core::ptr::null(), target_tgid: 0, detail: 0 }
    }
}

/// Records per second, and burst, for one (policy, opener cgroup).
#[derive(Clone, Copy)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

/// Token bucket per (policy, opener cgroup). Approximate under concurrency
/// (two CPUs may both take the last token); exactness is not needed here
/// because every decision is still counted in exactly one outcome counter.
#[inline(always)]
fn rate_allows(policy_id: u32, cgroup_id: u64, rate: Rate, now: u64) -> bool {
    if rate.per_sec == 0 {
        return false;
    }
    let key = RateKey { cgroup_id, policy_id, _pad: 0 };
    let full = rate.burst.max(1) as u64 * RATE_SCALE;
    let Some(state) = RATE.get_ptr_mut(&key) else {
        let fresh = RateState { last_ns: now, tokens: full - RATE_SCALE };
        // If the insert fails (LRU contention), still allow: the record is
        // the rare case here, and the ring buffer bounds it anyway.
        let _ = RATE.insert(&key, &fresh, 0);
        return true;
    };
    let state = unsafe { &mut *state };
    let elapsed = now.saturating_sub(state.last_ns);
    let mut tokens = if elapsed >= 1_000_000_000 {
        full
    } else {
        // elapsed < 1e9 and rate <= u32::MAX: no overflow.
        state.tokens + elapsed * rate.per_sec as u64 / 1_000_000
    };
    if tokens > full {
        tokens = full;
    }
    state.last_ns = now;
    if tokens < RATE_SCALE {
        state.tokens = tokens;
        return false;
    }
    state.tokens = tokens - RATE_SCALE;
    true
}

/// The identity of the current process that survives pid reuse:
/// `current->group_leader->start_boottime` (0 if unreadable).
#[inline(always)]
fn process_start_ns() -> u64 {
    unsafe {
        let leader = read_u64(current_task(), off!(task_group_leader)) as *const u8;
        if leader.is_null() { 0 } else { read_u64(leader, off!(task_start_boottime)) }
    }
}

/// `*p += 1` as one BPF atomic add (`BPF_ATOMIC | BPF_ADD` without fetch,
/// which every kernel guard supports, whatever the CPU version).
#[inline(always)]
unsafe fn atomic_inc(p: *mut u64) {
    unsafe { core::arch::asm!("lock *(u64 *)({p} + 0) += {one}", p = in(reg) p, one = in(reg) 1u64) }
}

/// A new key's value before its opener is filled in (from `.rodata`, not
/// the stack: every byte of stack counts against the 512 shared with the
/// hook that called `report`).
static FRESH_BURST: BurstState = BurstState {
    total: 0,
    sent_total: 0,
    sent_ns: 0,
    first_ns: 0,
    last_ns: 0,
    cgroup_id: 0,
    exe_ino: 0,
    exe_dev: 0,
    pid: 0,
    uid: 0,
    gid: 0,
    euid: 0,
    target_tgid: 0,
    detail: 0,
    _pad: 0,
    comm: [0; COMM_LEN],
};

/// Counts one decision for `key` in `BURSTS` (creating the key with the
/// opener's snapshot on its first decision). `None`: no room (untracked).
#[inline(always)]
fn track(key: &BurstKey, now: u64, cgroup_id: u64, subject: &Subject) -> Option<&'static mut BurstState> {
    let st = match BURSTS.get_ptr_mut(key) {
        Some(st) => unsafe { &mut *st },
        None => {
            // BPF_NOEXIST: if another thread of the process created the key
            // first, its entry stands and this decision is counted in it.
            let created = BURSTS.insert(key, &FRESH_BURST, BPF_NOEXIST as u64).is_ok();
            let st = unsafe { &mut *BURSTS.get_ptr_mut(key)? };
            if created {
                let pid_tgid = bpf_get_current_pid_tgid();
                let uid_gid = bpf_get_current_uid_gid();
                let exe = unsafe { exe_key(current_task()) }.unwrap_or_default();
                st.first_ns = now;
                st.last_ns = now;
                st.cgroup_id = cgroup_id;
                st.exe_ino = exe.ino;
                st.exe_dev = exe.dev;
                st.pid = pid_tgid as u32;
                st.uid = uid_gid as u32;
                st.gid = (uid_gid >> 32) as u32;
                st.euid = unsafe { current_euid() }.unwrap_or(u32::MAX);
                st.target_tgid = subject.target_tgid;
                st.detail = subject.detail;
                // Straight into the entry (a copy would be a memcpy call:
                // one more frame of stack).
                unsafe { gen_get_comm(st.comm.as_mut_ptr() as *mut _, COMM_LEN as u32) };
            }
            st
        }
    };
    // Exact under concurrency: threads of one process share the key.
    unsafe { atomic_inc(addr_of_mut!(st.total)) };
    Some(st)
}

/// Reports one denied (or audited) decision: counted per opener, folded
/// into the key's next record while its last record is younger than
/// `BURST_WINDOW_NS`, else written at once. A record that cannot be written
/// (rate limit, full ring buffer) is counted and its decisions ride on the
/// key's next record or the agent's flush. Never blocks.
///
/// One BPF subprogram per program (not inlined at each caller): reporting
/// is off the hot path, and a copy per call site would triple the size of
/// every hook. A subprogram takes at most five arguments, hence the packing.
#[inline(always)]
pub fn report(inode: *mut inode, policy_id: u32, rate: Rate, decision: u32, subject: &Subject) {
    report_call(
        inode,
        (policy_id as u64) << 32 | decision as u64,
        (rate.per_sec as u64) << 32 | rate.burst as u64,
        subject,
    )
}

#[inline(never)]
fn report_call(inode: *mut inode, ids: u64, rate: u64, subject: &Subject) {
    let (policy_id, decision) = ((ids >> 32) as u32, ids as u32);
    let rate = Rate { per_sec: (rate >> 32) as u32, burst: rate as u32 };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let file = if inode.is_null() { FileKey::default() } else { unsafe { file_key(inode as *const u8) } };
    let start_ns = process_start_ns();
    let key = BurstKey {
        // Routes without a file (dev 0) key on their target and detail.
        ino: if file.dev == 0 { (subject.target_tgid as u64) << 32 | subject.detail as u64 } else { file.ino },
        start_ns,
        dev: file.dev,
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        policy_id,
        hook: subject.hook,
        access: subject.access,
        decision,
    };
    let mut burst = track(&key, now, cgroup_id, subject);
    let (total, first) = match burst {
        Some(ref st) => {
            let total = unsafe { read_volatile(addr_of!(st.total)) };
            // A new burst: everything before this decision was sent, or the
            // key was quiet for a window (the agent flushes quiet keys).
            let first = if st.sent_total + 1 >= total || now.saturating_sub(st.last_ns) >= BURST_WINDOW_NS { now } else { st.first_ns };
            (total, first)
        }
        None => {
            count(CNT_UNTRACKED);
            (0, now)
        }
    };
    if let Some(st) = burst.as_mut() {
        st.first_ns = first;
        st.last_ns = now;
        if st.sent_ns != 0 && now.saturating_sub(st.sent_ns) < BURST_WINDOW_NS {
            count(CNT_COALESCED);
            return;
        }
    }
    let sent = send(policy_id, rate, decision, subject, now, cgroup_id, file, start_ns, total, first);
    match burst {
        Some(st) if sent => {
            st.sent_total = total;
            st.sent_ns = now;
        }
        None if !sent => count(CNT_LOST),
        _ => {}
    }
}

/// Writes one record, or counts why it could not (and returns false).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn send(
    policy_id: u32,
    rate: Rate,
    decision: u32,
    subject: &Subject,
    now: u64,
    cgroup_id: u64,
    file: FileKey,
    start_ns: u64,
    total: u64,
    first_ns: u64,
) -> bool {
    if !rate_allows(policy_id, cgroup_id, rate, now) {
        count(CNT_DROP_RATELIMIT);
        return false;
    }
    let Some(mut entry) = EVENTS.reserve(0) else {
        count(CNT_DROP_RINGBUF);
        return false;
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    unsafe {
        (*ev).ts_boot_ns = now;
        (*ev).total = total;
        (*ev).first_ns = first_ns;
        (*ev).start_ns = start_ns;
        (*ev).cgroup_id = cgroup_id;
        (*ev).pid = pid_tgid as u32;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev).euid = current_euid().unwrap_or(u32::MAX);
        (*ev).policy_id = policy_id;
        (*ev).access = subject.access;
        (*ev).decision = decision;
        (*ev).hook = subject.hook;
        (*ev).target_tgid = subject.target_tgid;
        (*ev).detail = subject.detail;
        gen_get_comm((*ev).comm.as_mut_ptr() as *mut _, COMM_LEN as u32);
        (*ev).ino = file.ino;
        (*ev).dev = file.dev;

        // The executable's identity: current->mm->exe_file->f_inode.
        let exe = exe_key(current_task()).unwrap_or_default();
        (*ev).exe_ino = exe.ino;
        (*ev).exe_dev = exe.dev;

        (*ev).path[0] = 0;
        (*ev).path_len = 0;
        if !subject.file.is_null() {
            // &file->f_path: typed arithmetic, as `bpf_d_path` wants it.
            let fpath = subject.file.add(off!(file_f_path)) as *mut path;
            (*ev).path_len = bpf_d_path(fpath, (*ev).path.as_mut_ptr() as *mut _, EVENT_PATH_LEN as u32) as i32;
        }
    }
    entry.submit(0);
    count(CNT_EVENTS_SENT);
    true
}
