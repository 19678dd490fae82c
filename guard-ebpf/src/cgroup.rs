//! Only systemd puts processes into a protected unit's cgroup.
//!
//! Cgroup membership is half of guard's decision, and root can otherwise
//! choose it: write a pid into the unit's `cgroup.procs`, create a
//! subcgroup in it and join that, start a child straight into it with
//! `clone3(CLONE_INTO_CGROUP)`, or create the unit's cgroup while the unit
//! is stopped. So, kernel-side and from the first instant:
//!
//! - The agent registers each slice holding protected units
//!   (`CGROUP_PARENTS`) and the units' names (`UNIT_NAMES`). When a cgroup
//!   directory's inode is bound (`d_instantiate`: every lookup, including an
//!   `open_by_handle_at` on cgroupfs, since the test is on the kernfs node,
//!   not the dentry) and its node's name is a protected unit's under a
//!   registered slice, it is that unit's cgroup: its id goes into
//!   `UNIT_CGROUPS` and the policy's `cgroup_id`. Its subcgroups follow.
//! - `cgroup.procs` and `cgroup.threads` in those cgroups carry
//!   `RULE_F_CGROUP_PROCS`: opening one for writing is for systemd (by
//!   executable identity, `TRUST_SYSTEMD` or `TRUST_CGROUP_WRITER`) and for
//!   the unit itself.
//! - a new cgroup with a protected unit's name under its slice, or any
//!   new cgroup inside a unit's cgroup (judged as kernfs makes the
//!   directory, `kernfs_init_security`, which no other mkdir reaches), and
//!   `rename` onto such a name, likewise.
//! - A task created with `CLONE_INTO_CGROUP` by anyone else is tainted,
//!   and so are its descendants: `decide` treats a tainted task as an
//!   outsider wherever it sits. (The hook cannot see which cgroup the clone
//!   targets, so every such task is marked; the mark only ever matters when
//!   it touches a protected file or process.)

use aya_ebpf::bindings::inode;
use guard_common::*;

use crate::{
    layout::{current_task, is_dir, load_u16, off, read_u64, task_cgroup_kn_t},
    maps::{add_mark, count, current_marks, policy_stats, CGROUP_PARENTS, INODE_RULES, POLICIES, UNIT_CGROUPS, UNIT_NAMES},
    report::{report, Rate, Subject},
    self_protect::current_trust,
    unit::{in_unit, name_at, unit_policy, EACCES},
};

/// Is the current task planted by a non-systemd `CLONE_INTO_CGROUP`?
#[inline(always)]
pub fn current_tainted() -> bool {
    current_marks() & MARK_TAINTED != 0
}

/// The kernfs node of a cgroupfs inode (`inode->i_private`).
#[inline(always)]
unsafe fn kn_of(i: *const u8) -> *const u8 {
    unsafe { read_u64(i, off!(inode_i_private)) as *const u8 }
}

#[inline(always)]
unsafe fn kn_id(kn: *const u8) -> u64 {
    unsafe { read_u64(kn, off!(kernfs_node_id)) }
}

#[inline(always)]
fn is_procs_file(name: &UnitName) -> bool {
    let n = &name.name;
    n.starts_with(b"cgroup.procs\0") || n.starts_with(b"cgroup.threads\0")
}

/// `d_instantiate` of a cgroupfs inode: recognise a protected unit's cgroup,
/// its subcgroups and their `cgroup.procs`/`cgroup.threads`.
#[inline(always)]
/// (The caller checked the superblock's magic.)
pub unsafe fn on_instantiate(child: *mut inode) {
    let i = child as *const u8;
    let kn = unsafe { kn_of(i) };
    if kn.is_null() {
        return;
    }
    let parent = unsafe { read_u64(kn, off!(kernfs_node_parent)) } as *const u8;
    if parent.is_null() {
        return;
    }
    let parent_id = unsafe { kn_id(parent) };
    let name_p = unsafe { read_u64(kn, off!(kernfs_node_name)) } as *const u8;
    let in_unit_policy = unsafe { UNIT_CGROUPS.get(parent_id) }.copied();
    if unsafe { is_dir(child) } {
        let id = unsafe { kn_id(kn) };
        if let Some(unit) = in_unit_policy {
            let _ = UNIT_CGROUPS.insert(id, unit, 0);
            return;
        }
        let Some(level) = (unsafe { CGROUP_PARENTS.get(parent_id) }).copied() else { return };
        let name = unsafe { name_at(name_p) };
        let Some(unit) = (unsafe { UNIT_NAMES.get(name) }).copied() else { return };
        if UNIT_CGROUPS.insert(id, unit, 0).is_err() {
            count(CNT_INTERNAL_ERRORS);
            aya_log_ebpf::error!(&(), "a protected unit's new cgroup (id {}) could not be recorded", id);
        }
        // The new cgroup counts from its first instant, in every policy
        // generation the unit has (a reload may be switching sets).
        // Constant indices only (see `InodeRule::slot`).
        for (gen, policy_id) in [(unit.gen[0], unit.policy_id[0]), (unit.gen[1], unit.policy_id[1])] {
            if gen == 0 {
                continue;
            }
            if let Some(p) = POLICIES.get_ptr_mut(policy_id) {
                unsafe {
                    (*p).cgroup_id = id;
                    (*p).cgroup_level = level + 1;
                }
            }
        }
        return;
    }
    let Some(unit) = in_unit_policy else { return };
    if !is_procs_file(&unsafe { name_at(name_p) }) {
        return;
    }
    let mut rule = InodeRule::for_unit(&unit, RULE_F_CGROUP_PROCS);
    let slot = unsafe { INODE_RULES.get_or_insert_ptr_mut(child, Some(&mut rule)) };
    if slot.is_null() {
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "could not protect a unit's cgroup.procs");
        return;
    }
    unsafe { *slot = rule };
}

/// systemd, or another executable the admin trusted to place processes.
#[inline(always)]
fn is_cgroup_writer() -> bool {
    let t = current_trust();
    t == TRUST_SYSTEMD || t == TRUST_CGROUP_WRITER
}

/// Whether the current task may put processes into (or create cgroups in)
/// the cgroup of `policy_id`: systemd, or the unit itself.
#[inline(always)]
fn may_join(policy_id: u32) -> bool {
    is_cgroup_writer() || (!current_tainted() && in_unit(policy_id))
}

#[inline(always)]
fn refuse_join(inode: *mut inode, policy_id: u32, subject: &Subject) -> i32 {
    count(CNT_DENIED);
    if let Some(s) = policy_stats(policy_id) {
        s.join_refused += 1;
    }
    let rate = POLICIES.get(policy_id).map_or(Rate { per_sec: 1000, burst: 1000 }, |p| Rate { per_sec: p.rate_per_sec, burst: p.rate_burst });
    report(inode, policy_id, rate, DECISION_DENIED, subject);
    -EACCES
}

/// An open of a unit's `cgroup.procs`/`cgroup.threads` (`RULE_F_CGROUP_PROCS`).
#[inline(always)]
pub fn judge_procs_open(inode: *mut inode, policy_id: u32, subject: &Subject) -> i32 {
    if subject.access & ACCESS_WRITE == 0 || may_join(policy_id) {
        return 0;
    }
    refuse_join(inode, policy_id, subject)
}

/// `kernfs_init_security(kn_dir, kn)`: kernfs makes `kn` in `kn_dir`. What
/// a bystander pays: one typed load and a compare for a file (every
/// cgroup's interface files, sysfs attributes); for a directory, the
/// parent's id and two hash lookups that miss. Only on a hit does it ask
/// whether `kn_dir` is in cgroup2 at all (sysfs numbers its nodes from 1
/// too). Cgroup directories are made only by `mkdir(2)`, whose caller sees
/// `ENOMEM` for a refusal, not `EACCES`: kernfs reports any refusal of this
/// hook so.
#[inline(always)]
pub unsafe fn on_kernfs_node(kn_dir: *const u8, kn: *const u8) -> i32 {
    if kn_dir.is_null() || kn.is_null() || unsafe { load_u16(kn, off!(kernfs_node_flags)) } & KERNFS_DIR == 0 {
        return 0;
    }
    let id = unsafe { kn_id(kn_dir) };
    let unit = unsafe { UNIT_CGROUPS.get(id) }.and_then(unit_policy);
    if (unit.is_none() && unsafe { CGROUP_PARENTS.get(id) }.is_none()) || !unsafe { in_cgroup2(kn_dir) } {
        return 0;
    }
    // No inode: the record carries the cgroup's id in place of a target.
    let subject = Subject { target_tgid: (id >> 32) as u32, detail: id as u32, ..Subject::new(HOOK_KERNFS_MKDIR, ACCESS_ALTER) };
    match unit {
        // Inside a protected unit's cgroup.
        Some(policy_id) if may_join(policy_id) => 0,
        Some(policy_id) => refuse_join(core::ptr::null_mut(), policy_id, &subject),
        // In a slice holding protected units.
        None => {
            let name_p = unsafe { read_u64(kn, off!(kernfs_node_name)) } as *const u8;
            unsafe { refuse_unit_name(core::ptr::null_mut(), name_p, &subject) }
        }
    }
}

/// A new name (`name_p`) in a cgroup directory of `CGROUP_PARENTS` (a
/// slice holding protected units): a protected unit's name there may only
/// be made by systemd.
#[inline(always)]
unsafe fn refuse_unit_name(dir: *mut inode, name_p: *const u8, subject: &Subject) -> i32 {
    let Some(policy_id) = (unsafe { UNIT_NAMES.get(name_at(name_p)) }).and_then(unit_policy) else { return 0 };
    if is_cgroup_writer() {
        return 0;
    }
    refuse_join(dir, policy_id, subject)
}

/// Is the kernfs directory `kn_dir` in the cgroup2 hierarchy, the one the
/// current task's own cgroup (`task->cgroups->dfl_cgrp->kn`) is in? Asked
/// only of a directory whose id names a protected unit's cgroup or slice;
/// if either hierarchy cannot be read, the answer is yes (the mkdir is
/// judged: fail closed).
#[inline(always)]
unsafe fn in_cgroup2(kn_dir: *const u8) -> bool {
    unsafe {
        let own = task_cgroup_kn_t(current_task());
        if own.is_null() {
            return true;
        }
        let (root, cgroup2) = (read_u64(kn_dir, off!(kernfs_node_dir_root)), read_u64(own, off!(kernfs_node_dir_root)));
        root == 0 || cgroup2 == 0 || root == cgroup2
    }
}

/// `inode_rename` in cgroupfs: a unit's cgroup may not be renamed, nor
/// another cgroup renamed onto a protected unit's name, except by systemd.
#[inline(always)]
pub unsafe fn on_rename(old_dentry: *const u8, new_dir: *mut inode, new_dentry: *const u8) -> i32 {
    let nd = new_dir as *const u8;
    if unsafe { crate::layout::sb_magic_t(nd) } != CGROUP2_SUPER_MAGIC {
        return 0;
    }
    let subject = Subject::new(HOOK_INODE_RENAME, ACCESS_ALTER);
    let moved = unsafe { read_u64(old_dentry, off!(dentry_d_inode)) } as *const u8;
    if !moved.is_null() {
        let kn = unsafe { kn_of(moved) };
        if !kn.is_null() {
            if let Some(policy_id) = unsafe { UNIT_CGROUPS.get(kn_id(kn)) }.and_then(unit_policy) {
                if !is_cgroup_writer() {
                    return refuse_join(moved as *mut inode, policy_id, &subject);
                }
            }
        }
    }
    let kn = unsafe { kn_of(nd) };
    if kn.is_null() {
        return 0;
    }
    if unsafe { CGROUP_PARENTS.get(kn_id(kn)) }.is_none() {
        return 0;
    }
    let name_p = unsafe { read_u64(new_dentry, off!(dentry_d_name) + off!(qstr_name)) } as *const u8;
    unsafe { refuse_unit_name(new_dir, name_p, &subject) }
}

/// `task_alloc(task, clone_flags)`: marks a task planted into a cgroup by
/// a non-systemd `CLONE_INTO_CGROUP`, and the children of marked tasks.
/// If the mark cannot be recorded, the clone is refused (fail closed).
#[inline(always)]
pub unsafe fn on_task_alloc(task: *const u8, marks: u32, clone_flags: u64) -> i32 {
    let inherited = marks & MARK_TAINTED != 0;
    if !inherited && (clone_flags & CLONE_INTO_CGROUP == 0 || is_cgroup_writer()) {
        return 0;
    }
    if !add_mark(task, MARK_TAINTED) {
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "could not mark a task cloned into a cgroup; refusing the clone");
        return -EAGAIN;
    }
    0
}

const EAGAIN: i32 = 11;

