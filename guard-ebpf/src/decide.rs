//! The decision for a protected inode: allow if and only if the opener is in
//! the policy's unit cgroup (or below it) and its real UID, and its
//! effective UID when different, are allowed.
//!
//! Internal errors (an empty policy slot, a kernel layout the agent never
//! filled in) DENY, in enforce and audit mode alike, and are counted in
//! `CNT_INTERNAL_ERRORS`: guard fails closed.

use aya_ebpf::{
    bindings::inode,
    helpers::{bpf_get_current_uid_gid, generated::bpf_get_current_ancestor_cgroup_id},
};
use guard_common::*;

use crate::{
    cgroup,
    layout::{current_euid, layout_ok},
    maps::{count, policy_stats, ALLOWED_UIDS, INODE_RULES, POLICIES},
    report::{report, Rate, Subject},
    self_protect,
};

pub const EACCES: i32 = 13;

#[inline(always)]
fn uid_allowed(policy_id: u32, uid: u32) -> bool {
    unsafe { ALLOWED_UIDS.get(UidKey { policy_id, uid }) }.is_some()
}

/// The decision for an access to `inode` by the current task, for hooks
/// other than `file_open` (which looks the rule up itself, once).
#[inline(always)]
pub unsafe fn judge_inode(inode: *mut inode, subject: &Subject) -> i32 {
    let rule = unsafe { INODE_RULES.get_ptr_mut(inode) };
    if rule.is_null() {
        return 0;
    }
    unsafe { judge(inode, rule, subject) }
}

/// The decision for an access to protected `inode` (whose rule is `rule`).
/// guard's own objects are judged by `self_protect`; everything else by its policy.
#[inline(always)]
pub unsafe fn judge(inode: *mut inode, rule: *const InodeRule, subject: &Subject) -> i32 {
    let (policy_id, flags) = unsafe { ((*rule).policy_id, (*rule).flags) };
    if flags & RULE_F_SELF != 0 {
        return self_protect::judge_self_object(inode, flags, subject);
    }
    if flags & RULE_F_CGROUP_PROCS != 0 {
        return cgroup::judge_procs_open(inode, policy_id, subject);
    }
    count(CNT_PROTECTED_HITS);
    decide(inode, policy_id, subject)
}

/// Allowed if and only if the current task is in the policy's unit cgroup
/// (or below it) and its real UID, and its effective UID when different,
/// are allowed. Otherwise: counted, reported, and `-EACCES` in enforce mode.
#[inline(always)]
pub fn decide(inode: *mut inode, policy_id: u32, subject: &Subject) -> i32 {
    let Some(policy) = POLICIES.get(policy_id) else {
        return internal_error(inode, policy_id, subject);
    };
    if policy.mode == MODE_UNUSED || !layout_ok() {
        return internal_error(inode, policy_id, subject);
    }
    let uid = bpf_get_current_uid_gid() as u32;
    let Some(euid) = (unsafe { current_euid() }) else {
        return internal_error(inode, policy_id, subject);
    };
    // A task planted with CLONE_INTO_CGROUP by anyone but systemd is an
    // outsider wherever it sits.
    let cgroup_ok = cgroup_matches(policy) && !cgroup::current_tainted();
    let uid_ok = uid_allowed(policy_id, uid) && (euid == uid || uid_allowed(policy_id, euid));
    let stats = policy_stats(policy_id);
    if cgroup_ok && uid_ok {
        count(CNT_ALLOWED);
        if let Some(s) = stats {
            s.allowed += 1;
        }
        return 0;
    }
    let decision = if policy.mode == MODE_AUDIT { DECISION_AUDITED } else { DECISION_DENIED };
    count(if decision == DECISION_AUDITED { CNT_AUDITED } else { CNT_DENIED });
    if let Some(s) = stats {
        s.denied += 1;
    }
    report(inode, policy_id, Rate { per_sec: policy.rate_per_sec, burst: policy.rate_burst }, decision, subject);
    if decision == DECISION_AUDITED { 0 } else { -EACCES }
}

#[inline(always)]
fn cgroup_matches(policy: &PolicyEntry) -> bool {
    policy.cgroup_id != 0
        && unsafe { bpf_get_current_ancestor_cgroup_id(policy.cgroup_level as i32) } == policy.cgroup_id
}

/// Whether the current task is in the unit's cgroup (or below it).
#[inline(always)]
pub fn in_unit(policy_id: u32) -> bool {
    POLICIES.get(policy_id).is_some_and(cgroup_matches)
}

/// Fail closed: deny, count, log (aya-log; never reached on the hot path)
/// and report as a denial.
#[inline(always)]
fn internal_error(inode: *mut inode, policy_id: u32, subject: &Subject) -> i32 {
    aya_log_ebpf::error!(
        &(),
        "internal error on a protected inode (policy {}, hook {}): no policy entry or no kernel layout; denied",
        policy_id,
        subject.hook
    );
    count(CNT_INTERNAL_ERRORS);
    count(CNT_DENIED);
    report(inode, policy_id, Rate { per_sec: 1000, burst: 1000 }, DECISION_DENIED, subject);
    -EACCES
}
