//! Records: one per denied (or audited) access, written into the `EVENTS`
//! ring buffer. Reporting never waits: a full ring buffer or an exceeded
//! rate limit drops the record and counts it; the verdict is the same.

use aya_ebpf::{
    bindings::{inode, path},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_d_path, bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    },
};
use guard_common::*;

use crate::{
    layout::{current_euid, current_task, exe_key, file_key, off},
    maps::{count, EVENTS, RATE},
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

/// Writes one record, or counts why it could not. Never blocks.
#[inline(always)]
pub fn report(inode: *mut inode, policy_id: u32, rate: Rate, decision: u32, subject: &Subject) {
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if !rate_allows(policy_id, cgroup_id, rate, now) {
        count(CNT_DROP_RATELIMIT);
        return;
    }
    let Some(mut entry) = EVENTS.reserve(0) else {
        count(CNT_DROP_RINGBUF);
        return;
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    unsafe {
        (*ev).ts_boot_ns = now;
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
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);

        let file = if inode.is_null() { FileKey::default() } else { file_key(inode as *const u8) };
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
}
