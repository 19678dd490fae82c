//! The doors to a protected unit's secret that do not open its files:
//! kernel memory, the unit's processes' memory through signals that dump
//! core, resource limits and perf, and other BPF programs.
//!
//! While guard protects anything (a policy set is in force):
//! - `locked_down`: the lockdown reasons the agent wrote into `DOORS`
//!   (every one but `LOCKDOWN_XFRM_SECRET`, by name from BTF) are refused
//!   to everyone but guard; an allowed BPF tool keeps the tracing ones and
//!   systemd its programs' kernel reads. Lockdown refuses for everyone or
//!   no one; this refuses per caller.
//! - `kernel_read_file`: kexec images (`kexec_file_load`, signed or not).
//! - `cred_prepare` of a process that a signal is killing (`PF_SIGNALED`)
//!   in a protected unit's cgroup: the kernel's core dump prepares its
//!   credentials first, so refusing them ends the dump before a byte of
//!   memory goes to a file, a pipe helper, a socket or systemd-coredump,
//!   whatever made it crash. The process still dies of the signal.
//!   A policy with `core_dumps = "keep"` (`POLICY_F_KEEP_CORES`) lets the
//!   dump go on when the kernel's `core_pattern` is, at that moment, a
//!   plain file path (read at the address the agent found in kallsyms; not
//!   a `|` pipe helper, not a `@` socket; unknown or unreadable: refused).
//!   The dumping task creates the core itself, so `d_instantiate` tags it
//!   for the unit before its name is visible (`on_core_created`): only the
//!   unit's processes and allowed users open it. Kept or refused, a record.
//! - `task_kill`, `file_send_sigiotask`: a signal that dumps core, sent to a
//!   protected unit's process by anyone outside the unit but systemd.
//! - `task_setrlimit`: another's limits of a unit's process (CPU and file
//!   size limits kill with core-dumping signals).
//! - `perf_event_alloc`: a perf event on a unit's process (or systemd's, or
//!   guard's) by an outsider; a CPU-wide event that samples user memory,
//!   user registers or sends SIGTRAP.
//!
//! Each refusal is a record: `tamper` for what concerns every unit, an
//! access denial of the unit's policy for one unit's process. A bystander's
//! path is one load and a compare (`cred_prepare`, `task_kill`) or one map
//! lookup (the others).

use guard_common::*;

use aya_ebpf::{bindings::inode, helpers::bpf_probe_read_kernel};

use crate::{
    layout::{current_task, is_reg, load_u32, off, read_u32, read_u64, task_cgroup_id, task_cgroup_id_t},
    maps::{active_gen, count, policy_stats, DOORS, INODE_RULES, POLICIES, UNIT_CGROUPS},
    report::{report, Rate, Subject},
    self_protect::{current_trust, task_trust, tamper},
    unit::{cgroup_matches, current_unit, unit_policy},
};

pub const EPERM: i32 = 1;

/// `PF_SIGNALED` (`include/linux/sched.h`): killed by a signal.
const PF_SIGNALED: u32 = 0x0000_0400;
/// `PF_DUMPCORE`: dumping core (set in `zap_threads`, before the core file
/// is created).
pub const PF_DUMPCORE: u32 = 0x0000_0200;

/// SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU,
/// SIGXFSZ, SIGSYS: the signals whose default action dumps core.
const DUMPING_SIGNALS: u64 = 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 11 | 1 << 24 | 1 << 25 | 1 << 31;

/// `perf_event_attr.sample_type` bits that copy user memory or registers.
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_SAMPLE_REGS_USER: u64 = 1 << 12;
const PERF_SAMPLE_STACK_USER: u64 = 1 << 13;
const PERF_SAMPLE_REGS_INTR: u64 = 1 << 18;
const USER_DATA_SAMPLES: u64 = PERF_SAMPLE_RAW | PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER | PERF_SAMPLE_REGS_INTR;
/// UAPI `struct perf_event_attr` (stable): `sample_type` and the flag word.
const ATTR_SAMPLE_TYPE: usize = 24;
const ATTR_FLAGS: usize = 40;
const ATTR_F_SIGTRAP: u64 = 1 << 37;

/// guard protects something now (a policy set is in force).
#[inline(always)]
fn protecting() -> bool {
    active_gen() != 0
}

/// `locked_down(what)`.
#[inline(always)]
pub fn on_locked_down(what: u32) -> i32 {
    if what >= 64 || !protecting() {
        return 0;
    }
    let Some(doors) = DOORS.get(0) else { return 0 };
    let bit = 1u64 << what;
    if doors.lockdown_refused & bit == 0 {
        return 0;
    }
    let trust = current_trust();
    if trust == TRUST_GUARD
        || (trust == TRUST_BPF_TOOL && doors.lockdown_tools & bit != 0)
        || (trust == TRUST_SYSTEMD && doors.lockdown_systemd & bit != 0)
    {
        return 0;
    }
    tamper(core::ptr::null_mut(), &Subject { detail: what, ..Subject::new(HOOK_LOCKED_DOWN, ACCESS_READ) })
}

/// `kernel_read_file(file, id, contents)`: kexec images.
#[inline(always)]
pub fn on_kernel_read_file(id: u32) -> i32 {
    if id >= 64 || !protecting() {
        return 0;
    }
    let Some(doors) = DOORS.get(0) else { return 0 };
    if doors.read_file_refused & (1u64 << id) == 0 || current_trust() == TRUST_GUARD {
        return 0;
    }
    tamper(core::ptr::null_mut(), &Subject { detail: id, ..Subject::new(HOOK_KERNEL_READ_FILE, ACCESS_ALTER) })
}

/// The policy in force of the protected unit whose cgroup `task` is in.
#[inline(always)]
unsafe fn unit_of(task: *const u8) -> Option<u32> {
    unsafe { UNIT_CGROUPS.get(task_cgroup_id(task)) }.and_then(unit_policy)
}

/// [`unit_of`] a BTF-typed task (a hook's argument), by typed loads.
#[inline(always)]
unsafe fn unit_of_t(task: *const u8) -> Option<u32> {
    unsafe { UNIT_CGROUPS.get(task_cgroup_id_t(task)) }.and_then(unit_policy)
}

/// Refuses an outsider's attempt on a process of `policy_id`'s unit: an
/// access denial of that policy (audit mode: recorded, allowed).
#[inline(always)]
fn refuse(policy_id: u32, subject: &Subject) -> i32 {
    let Some(policy) = POLICIES.get(policy_id) else { return -EPERM };
    let audit = policy.mode == MODE_AUDIT;
    count(if audit { CNT_AUDITED } else { CNT_DENIED });
    if let Some(s) = policy_stats(policy_id) {
        s.denied += 1;
    }
    let rate = Rate { per_sec: policy.rate_per_sec, burst: policy.rate_burst };
    report(core::ptr::null_mut(), policy_id, rate, if audit { DECISION_AUDITED } else { DECISION_DENIED }, subject);
    if audit { 0 } else { -EPERM }
}

/// An outsider acting on `target` (a hook's BTF-typed task argument):
/// someone not in its unit, not systemd.
#[inline(always)]
unsafe fn outsider_on(target: *const u8, hook: u32, detail: u32) -> i32 {
    let Some(policy_id) = (unsafe { unit_of_t(target) }) else { return 0 };
    unsafe { outsider_on_unit(target, policy_id, hook, detail) }
}

/// [`outsider_on`] once `target`'s unit is known.
#[inline(always)]
unsafe fn outsider_on_unit(target: *const u8, policy_id: u32, hook: u32, detail: u32) -> i32 {
    if POLICIES.get(policy_id).is_some_and(cgroup_matches) || current_trust() == TRUST_SYSTEMD {
        return 0;
    }
    let target_tgid = unsafe { read_u32(target, off!(task_tgid)) };
    refuse(policy_id, &Subject { target_tgid, detail, ..Subject::new(hook, ACCESS_READ) })
}

/// `cred_prepare(new, old, gfp)`: the first step of a core dump of a
/// process a signal is killing.
#[inline(always)]
pub fn on_cred_prepare() -> i32 {
    let flags = unsafe { load_u32(current_task(), off!(task_flags)) };
    if flags & PF_SIGNALED == 0 {
        return 0;
    }
    let Some((_, unit)) = current_unit() else { return 0 };
    let Some(policy_id) = unit_policy(&unit) else { return 0 };
    let tgid = unsafe { read_u32(current_task(), off!(task_tgid)) };
    let subject = Subject { target_tgid: tgid, ..Subject::new(HOOK_COREDUMP, ACCESS_READ) };
    if let Some(policy) = POLICIES.get(policy_id) {
        if policy.flags & POLICY_F_KEEP_CORES != 0 && core_pattern_is_file() {
            // Kept: allowed, recorded (`d_instantiate` tags the core).
            count(CNT_ALLOWED);
            let rate = Rate { per_sec: policy.rate_per_sec, burst: policy.rate_burst };
            report(core::ptr::null_mut(), policy_id, rate, DECISION_AUDITED, &Subject { detail: COREDUMP_KEPT, ..subject });
            return 0;
        }
    }
    refuse(policy_id, &subject)
}

/// The kernel's `core_pattern` now names a file: its first byte is known
/// and is neither `|` (a pipe helper, run outside the unit) nor `@` (a
/// socket), nor the end of an empty pattern.
#[inline(always)]
fn core_pattern_is_file() -> bool {
    let Some(doors) = DOORS.get(0) else { return false };
    if doors.core_pattern == 0 {
        return false;
    }
    match unsafe { bpf_probe_read_kernel(doors.core_pattern as *const u8) } {
        Ok(first) => first != 0 && first != b'|' && first != b'@',
        Err(_) => false,
    }
}

/// `d_instantiate` of `new_inode` by a task that is dumping core
/// (`PF_DUMPCORE`, tested by the caller): a regular file made in a
/// protected unit's cgroup is its core, tagged for the unit at once. Any
/// protected unit's, whatever its policy says now: only a kept dump gets
/// here, and a core is never left open. `true` when tagged.
#[inline(always)]
pub unsafe fn on_core_created(new_inode: *mut inode) -> bool {
    let Some((_, unit)) = current_unit() else { return false };
    if unit_policy(&unit).is_none() || !unsafe { is_reg(new_inode) } {
        return false;
    }
    let mut rule = InodeRule::for_unit(&unit, 0);
    let slot = unsafe { INODE_RULES.get_or_insert_ptr_mut(new_inode, Some(&mut rule)) };
    if slot.is_null() {
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "could not protect the core file a unit's process is dumping");
        return false;
    }
    unsafe { *slot = rule };
    true
}

/// `task_kill(p, info, sig, cred)`.
#[inline(always)]
pub unsafe fn on_task_kill(target: *const u8, sig: u32) -> i32 {
    if sig >= 64 || DUMPING_SIGNALS & (1u64 << sig) == 0 {
        return 0;
    }
    unsafe { outsider_on(target, HOOK_TASK_KILL, sig) }
}

/// `file_send_sigiotask(tsk, fown, sig)`: `F_SETOWN` + `F_SETSIG`.
#[inline(always)]
pub unsafe fn on_sigiotask(target: *const u8, sig: u32) -> i32 {
    if sig >= 64 || DUMPING_SIGNALS & (1u64 << sig) == 0 {
        return 0;
    }
    // Sent on behalf of whoever set the owner: no insider is sending it.
    let Some(policy_id) = (unsafe { unit_of_t(target) }) else { return 0 };
    let target_tgid = unsafe { read_u32(target, off!(task_tgid)) };
    refuse(policy_id, &Subject { target_tgid, detail: sig, ..Subject::new(HOOK_SIGIOTASK, ACCESS_ALTER) })
}

/// `task_setrlimit(p, resource, new_rlim)`.
#[inline(always)]
pub unsafe fn on_setrlimit(target: *const u8, resource: u32) -> i32 {
    if target == current_task() {
        return 0;
    }
    unsafe { outsider_on(target, HOOK_SETRLIMIT, resource) }
}

/// `perf_event_alloc(event)`.
#[inline(always)]
pub unsafe fn on_perf_event_alloc(event: *const u8) -> i32 {
    let trust = current_trust();
    if trust == TRUST_GUARD || trust == TRUST_BPF_TOOL || trust == TRUST_SYSTEMD {
        return 0;
    }
    let target = unsafe { read_u64(event, off!(perf_event_hw) + off!(hw_perf_event_target)) } as *const u8;
    if !target.is_null() {
        let t = unsafe { task_trust(target) };
        if t == TRUST_GUARD || t == TRUST_SYSTEMD {
            let target_tgid = unsafe { read_u32(target, off!(task_tgid)) };
            return tamper(core::ptr::null_mut(), &Subject { target_tgid, ..Subject::new(HOOK_PERF, ACCESS_READ) });
        }
        // (`target` was read, not loaded: it is not typed.)
        let Some(policy_id) = (unsafe { unit_of(target) }) else { return 0 };
        return unsafe { outsider_on_unit(target, policy_id, HOOK_PERF, 0) };
    }
    // CPU-wide: every task that runs there, the units' included.
    if !protecting() {
        return 0;
    }
    let attr = unsafe { (event as *const u8).add(off!(perf_event_attr)) };
    let sample_type = unsafe { read_u64(attr, ATTR_SAMPLE_TYPE) };
    let flags = unsafe { read_u64(attr, ATTR_FLAGS) };
    if sample_type & USER_DATA_SAMPLES == 0 && flags & ATTR_F_SIGTRAP == 0 {
        return 0;
    }
    tamper(core::ptr::null_mut(), &Subject { detail: 1, ..Subject::new(HOOK_PERF, ACCESS_READ) })
}
