//! The decision for a protected inode: allow if and only if the opener is in
//! the policy's unit cgroup (or below it), its real UID, and its effective
//! UID when different, are allowed (listed, or the unit's own user), and,
//! for a policy bound to executables, it runs one of them.
//!
//! systemd's setup of the unit (see `systemd.rs`) may open the unit's files
//! too (it writes the credentials, chowns the state directory), and it
//! alone may open `RULE_F_SETUP_ONLY` files (a `.cred` source; the host key,
//! for every unit). PID 1 may remove credentials (`RULE_F_CREDENTIAL`) when
//! the unit stops.
//!
//! Internal errors (an empty policy slot, a kernel layout the agent never
//! filled in) DENY, in enforce and audit mode alike, and are counted in
//! `CNT_INTERNAL_ERRORS`: guard fails closed.

use aya_ebpf::{bindings::inode, helpers::bpf_get_current_uid_gid};
use guard_common::*;

use crate::{
    cgroup,
    layout::{current_euid, current_task, exe_key, layout_ok},
    maps::{active_gen, count, policy_stats, ALLOWED_UIDS, EXE_BINDINGS, INODE_RULES, POLICIES, UNIT_OWNERS},
    report::{report, Rate, Subject},
    self_protect,
    systemd::{self, SbOwner},
    unit::{cgroup_matches, unit_policy, EACCES},
};

#[inline(always)]
fn uid_allowed(policy: &PolicyEntry, policy_id: u32, uid: u32) -> bool {
    unsafe { ALLOWED_UIDS.get(UidKey { policy_id, uid }) }.is_some()
        || (policy.flags & POLICY_F_UNIT_USER != 0
            && unsafe { UNIT_OWNERS.get(policy.cgroup_id) }.is_some_and(|owner| *owner == uid))
}

/// For a policy bound to executables: the current task runs one of them.
#[inline(always)]
fn exe_allowed(policy: &PolicyEntry, policy_id: u32) -> bool {
    if policy.flags & POLICY_F_EXE_BOUND == 0 {
        return true;
    }
    match unsafe { exe_key(current_task()) } {
        Some(k) => unsafe { EXE_BINDINGS.get(ExeBinding { policy_id, dev: k.dev, ino: k.ino }) }.is_some(),
        None => false,
    }
}

/// The decision for an access to `inode` by the current task, for hooks
/// other than `file_open` (which looks the rule up itself, once).
#[inline(always)]
pub unsafe fn judge_inode(inode: *mut inode, subject: &Subject) -> i32 {
    let rule = unsafe { INODE_RULES.get_ptr_mut(inode) };
    if rule.is_null() {
        return 0;
    }
    let Some((policy_id, flags)) = (unsafe { (*rule).slot(active_gen()) }) else { return 0 };
    judge(inode, policy_id, flags, subject)
}

/// The decision for an access to protected `inode`, whose rule in the
/// generation in force is (`policy_id`, `flags`). guard's own objects are
/// judged by `self_protect`; everything else by its policy.
#[inline(always)]
pub fn judge(inode: *mut inode, policy_id: u32, flags: u32, subject: &Subject) -> i32 {
    if flags & RULE_F_SELF != 0 {
        return self_protect::judge_self_object(inode, flags, subject);
    }
    if flags & RULE_F_CGROUP_PROCS != 0 {
        return cgroup::judge_procs_open(inode, policy_id, subject);
    }
    if flags & RULE_F_SB_OWNED != 0 {
        // A credential of a refresh: its unit is its filesystem's.
        return match unsafe { systemd::sb_owner(inode) } {
            SbOwner::Unit(unit) => match unit_policy(&unit) {
                Some(id) => {
                    count(CNT_PROTECTED_HITS);
                    decide(inode, id, flags, subject)
                }
                None => 0,
            },
            SbOwner::Unprotected => 0,
            SbOwner::Pending if systemd::current_is_setup() => 0,
            SbOwner::Pending => self_protect::tamper(inode, subject),
        };
    }
    count(CNT_PROTECTED_HITS);
    decide(inode, policy_id, flags, subject)
}

/// The decision on `policy_id`'s file `inode` (rule flags `flags`; a null
/// inode and 0 for a process of the unit). Allowed as the module docs say;
/// otherwise counted, reported, and `-EACCES` in enforce mode.
#[inline(always)]
pub fn decide(inode: *mut inode, policy_id: u32, flags: u32, subject: &Subject) -> i32 {
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
    let cgroup_ok = policy.flags & POLICY_F_ANY_UNIT != 0 || (cgroup_matches(policy) && !cgroup::current_tainted());
    let allowed = if flags & RULE_F_SETUP_ONLY != 0 {
        cgroup_ok && systemd::current_is_setup()
    } else {
        let own = cgroup_ok
            && uid_allowed(policy, policy_id, uid)
            && (euid == uid || uid_allowed(policy, policy_id, euid))
            && exe_allowed(policy, policy_id);
        // systemd's setup works on the unit's files for it (writes its
        // credentials, chowns its state directory); PID 1 removes a stopped
        // unit's credentials.
        own || (cgroup_ok && systemd::current_is_setup())
            || (flags & RULE_F_CREDENTIAL != 0 && subject.access == ACCESS_ALTER && systemd::current_is_pid1_systemd())
    };
    let stats = policy_stats(policy_id);
    if allowed {
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
