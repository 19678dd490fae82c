//! systemd's own part in a unit's start: who is "systemd's setup" of a
//! unit, which UID the unit runs as, and its credentials from their first
//! instant.
//!
//! - **Lineage.** PID 1 running systemd's executable (`TRUST_SYSTEMD`), and
//!   every task forked from a lineage task, are systemd's lineage until they
//!   execute anything that is not systemd's own (`systemd-executor` keeps
//!   it; a unit's `ExecStart=` binary, a shell, anything else ends it, for
//!   good). root outside cannot enter it: its own shell's ancestry ran other
//!   programs, and running `systemd-executor` itself (with `LD_PRELOAD`, say)
//!   starts from outside the lineage. ptrace of systemd's executables in
//!   attach mode is refused (`self_protect`).
//! - **Setup.** A lineage task, running systemd's executable, as UID 0
//!   (real and effective): the exec child before it drops privileges and
//!   the `(sd-mkdcreds)` helper that reads and decrypts credentials. In a
//!   protected unit's cgroup it is that unit's setup; only it may open the
//!   unit's `RULE_F_SETUP_ONLY` files (and the host key, for any unit).
//! - **The unit's own user.** When setup in a protected unit's current
//!   cgroup switches to a non-zero UID (`task_fix_setuid`), that UID is the
//!   unit's for this activation (`UNIT_OWNERS`, by cgroup id: each start
//!   has a new cgroup, and `DynamicUser=` may pick a new UID each time).
//! - **Credentials.** systemd builds a unit's credentials on a filesystem
//!   of their own: a ramfs or tmpfs that setup mounts in a private namespace
//!   and moves to `/run/credentials/<unit>` (v252 to v258, files written as
//!   `.#cred<random>` and renamed), or a detached `fsmount` written through
//!   its fd, files created under their final names, and attached with
//!   `move_mount` (v259 on). Either way setup creates that superblock
//!   (`sb_alloc_security`) from the unit's cgroup, so it is recorded for the
//!   unit (`SETUP_SBS`), and every regular file setup creates on it is the
//!   unit's from its first instant (`d_instantiate`), before a byte is
//!   written and before any path to it exists outside systemd's fds. No
//!   name is read.
//! - **Refresh.** From v260 a reload with `RefreshOnReload=credentials`
//!   builds the new set in `(sd-refresh-creds)`, a fork of PID 1 in
//!   `init.scope`: its filesystem is *pending* (its files are closed to
//!   everyone but systemd's setup) until `move_mount` attaches it to a
//!   unit's credentials directory, which names the unit (or a unit with no
//!   policy, which releases it).
//! - **Fail closed.** A superblock that cannot be recorded is refused
//!   (the unit fails to start); a file that cannot be tagged marks its
//!   filesystem, which may then be neither renamed into place (v252 to
//!   v258) nor attached (v259 on).

use aya_ebpf::{
    bindings::inode,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_uid_gid},
};
use guard_common::*;

use crate::{
    layout::{current_euid, current_task, is_dir, is_reg, load_u32, off, read_u32, read_u64, task_cgroup_id},
    maps::{add_mark, clear_mark, count, current_marks, marks, policy_stats, INODE_RULES, SETUP_SBS, UNIT_NAMES, UNIT_OWNERS},
    self_protect::{current_trust, inode_trust},
    unit::{current_unit, name_at, unit_policy, EACCES},
};

const ENOMEM: i32 = 12;

#[inline(always)]
unsafe fn is_pid1(task: *const u8) -> bool {
    unsafe { read_u32(task, off!(task_tgid)) == 1 }
}

/// The current task is PID 1 (a typed load).
#[inline(always)]
fn current_is_pid1() -> bool {
    unsafe { load_u32(current_task(), off!(task_tgid)) == 1 }
}

/// PID 1 itself, running systemd's executable (the root of the lineage;
/// it also removes a stopped unit's credentials).
#[inline(always)]
pub fn current_is_pid1_systemd() -> bool {
    current_is_pid1() && current_trust() == TRUST_SYSTEMD
}

/// Whether the current task is systemd's lineage (see the module docs).
#[inline(always)]
fn current_in_lineage() -> bool {
    current_marks() & MARK_LINEAGE != 0 || current_is_pid1_systemd()
}

/// systemd's setup: lineage, systemd's executable, UID 0 (real and effective).
#[inline(always)]
pub fn current_is_setup() -> bool {
    // Cheapest first: a bystander has no lineage mark and is not PID 1.
    let task = current_task();
    if marks(task) & MARK_LINEAGE == 0 && !current_is_pid1() {
        return false;
    }
    if bpf_get_current_uid_gid() as u32 != 0 || unsafe { current_euid() } != Some(0) {
        return false;
    }
    current_trust() == TRUST_SYSTEMD
}

/// `task_alloc`: a child of systemd's lineage is of it. If the mark cannot
/// be recorded the child is simply not setup (a protected unit's setup is
/// then refused its credentials: closed, and logged).
#[inline(always)]
pub fn on_task_alloc(task: *const u8, parent_marks: u32) {
    if parent_marks & MARK_LINEAGE == 0 && !current_is_pid1_systemd() {
        return;
    }
    if !add_mark(task, MARK_LINEAGE) {
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "could not mark a task systemd forked; it is not trusted as its setup");
    }
}

/// `bprm_check_security`: running anything but systemd's own executables
/// leaves the lineage (scripts are checked per interpreter step; a failed
/// exec leaves it too, which only ever takes trust away).
#[inline(always)]
pub unsafe fn on_exec(exe_inode: *const u8) {
    if current_marks() & MARK_LINEAGE == 0 {
        return;
    }
    if unsafe { inode_trust(exe_inode) } != TRUST_SYSTEMD {
        clear_mark(current_task(), MARK_LINEAGE);
    }
}

/// `task_fix_setuid(new, old, flags)`: setup in a protected unit's cgroup
/// takes a non-zero UID: that is the unit's own user in this activation.
#[inline(always)]
pub unsafe fn on_setuid(new_cred: *const u8) {
    let Some((cg, _)) = current_unit() else { return };
    let uid = unsafe { read_u32(new_cred, off!(cred_uid)) };
    if uid == 0 || !current_is_setup() {
        return;
    }
    if UNIT_OWNERS.insert(cg, uid, 0).is_err() {
        // "@unit" then matches nobody in this activation: closed, and logged.
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "could not record the UID of a protected unit (cgroup {})", cg);
    }
}

/// `sb_alloc_security(sb)`: a filesystem systemd's setup creates, from a
/// protected unit's cgroup (its credentials, a private /tmp or /dev) or from
/// PID 1's lineage outside every unit (a credentials refresh). Bystanders
/// pay one cgroup-id lookup; a mount is never a hot path.
#[inline(always)]
pub fn on_sb_alloc(sb: u64) -> i32 {
    let entry = match current_unit() {
        Some((_, unit)) => SetupSb {
            unit,
            state: SETUP_SB_UNIT,
            flags: 0,
        },
        // A helper PID 1 forked in its own cgroup (`(sd-refresh-creds)`);
        // not PID 1 itself, which mounts for the whole system, nor setup in
        // an unprotected unit's cgroup.
        None if unsafe { is_pid1_helper() } => SetupSb {
            unit: UnitPolicy::default(),
            state: SETUP_SB_PENDING,
            flags: 0,
        },
        None => return 0,
    };
    if !current_is_setup() {
        return 0;
    }
    if SETUP_SBS.insert(sb, entry, 0).is_err() {
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "could not record a filesystem systemd's setup creates; refusing it (the unit fails to start)");
        return -ENOMEM;
    }
    0
}

/// A child of PID 1 in PID 1's own cgroup.
#[inline(always)]
unsafe fn is_pid1_helper() -> bool {
    unsafe {
        let parent = read_u64(current_task(), off!(task_real_parent)) as *const u8;
        !parent.is_null()
            && is_pid1(parent)
            && task_cgroup_id(parent) == bpf_get_current_cgroup_id()
    }
}

/// `sb_free_security(sb)`: the address may be reused.
#[inline(always)]
pub fn on_sb_free(sb: u64) {
    let _ = SETUP_SBS.remove(sb);
}

#[inline(always)]
unsafe fn setup_sb_of(i: *const u8) -> Option<*mut SetupSb> {
    let magic = unsafe { sb_magic_of(i) };
    if magic != TMPFS_MAGIC && magic != RAMFS_MAGIC {
        return None;
    }
    let sb = unsafe { crate::layout::load_ptr::<u8>(i, off!(inode_i_sb)) } as u64;
    SETUP_SBS.get_ptr_mut(sb)
}

#[inline(always)]
unsafe fn sb_magic_of(i: *const u8) -> u64 {
    // Every caller passes a BTF-typed, non-NULL inode.
    unsafe { crate::layout::sb_magic_t(i) }
}

/// Who a `RULE_F_SB_OWNED` credential belongs to.
pub enum SbOwner {
    Unit(UnitPolicy),
    Unprotected,
    Pending,
}

/// The owner of credential `inode`, from its filesystem's `SETUP_SBS` entry
/// (none: pending, closed).
#[inline(always)]
pub unsafe fn sb_owner(inode: *mut inode) -> SbOwner {
    // (A typed `dentry->d_inode` may be null to the verifier of 6.15 and
    // later, which refuses arithmetic on it before this check.)
    if inode.is_null() {
        return SbOwner::Pending;
    }
    match unsafe { setup_sb_of(inode as *const u8) } {
        Some(e) => match unsafe { (*e).state } {
            SETUP_SB_UNIT => SbOwner::Unit(unsafe { (*e).unit }),
            SETUP_SB_UNPROTECTED => SbOwner::Unprotected,
            _ => SbOwner::Pending,
        },
        None => SbOwner::Pending,
    }
}

/// `d_instantiate` of the root of a tmpfs or ramfs (instantiated while its
/// superblock is filled, after `sb_alloc_security`): on a filesystem setup
/// created, it gets `RULE_F_SETUP_FS`, which sends every name made in it
/// through `on_instantiate`. Pseudo files (memfds, SysV shm) are their own
/// parent too; they are not directories.
#[inline(always)]
pub unsafe fn on_fs_root(root: *mut inode) {
    if !unsafe { is_dir(root) } {
        return;
    }
    let Some(e) = (unsafe { setup_sb_of(root as *const u8) }) else {
        return;
    };
    let mut marker = InodeRule { flags: [RULE_F_SETUP_FS; 2], ..InodeRule::default() };
    let slot = unsafe { INODE_RULES.get_or_insert_ptr_mut(root, Some(&mut marker)) };
    if slot.is_null() {
        // Nothing setup writes here would be tagged: as for an untagged file.
        unsafe { refuse_attach(e) };
        aya_log_ebpf::error!(&(), "could not mark the root of a filesystem systemd's setup creates; it will not be attached");
        return;
    }
    unsafe {
        (*slot).flags[0] |= RULE_F_SETUP_FS;
        (*slot).flags[1] |= RULE_F_SETUP_FS;
    }
}

/// A directory of a setup filesystem could not get `RULE_F_SETUP_FS`.
#[inline(always)]
pub unsafe fn untagged(dir: *mut inode) {
    if let Some(e) = unsafe { setup_sb_of(dir as *const u8) } {
        unsafe { refuse_attach(e) };
    }
}

/// Something setup made on filesystem `e` could not be tagged: that
/// filesystem may be neither renamed into place (`on_rename`) nor attached
/// (`on_move_mount`).
#[inline(always)]
unsafe fn refuse_attach(e: *mut SetupSb) {
    unsafe { (*e).flags |= SETUP_SB_F_UNTAGGED };
    count(CNT_INTERNAL_ERRORS);
}

/// `d_instantiate` of a new inode in a `RULE_F_SETUP_FS` directory: a
/// regular file systemd's setup creates on a filesystem setup created is a
/// credential from this instant.
#[inline(always)]
pub unsafe fn on_instantiate(child: *mut inode) -> bool {
    // Only setup creates credentials.
    if !current_is_setup() {
        return false;
    }
    let Some(e) = (unsafe { setup_sb_of(child as *const u8) }) else {
        return false;
    };
    if !unsafe { is_reg(child) } {
        return false;
    }
    let (state, unit) = unsafe { ((*e).state, (*e).unit) };
    let mut rule = match state {
        SETUP_SB_UNIT => InodeRule::for_unit(&unit, RULE_F_CREDENTIAL),
        SETUP_SB_PENDING => InodeRule::any(0, RULE_F_CREDENTIAL | RULE_F_SB_OWNED),
        _ => return false,
    };
    let slot = unsafe { INODE_RULES.get_or_insert_ptr_mut(child, Some(&mut rule)) };
    if slot.is_null() {
        // This hook cannot refuse: the filesystem is marked, and may be
        // neither renamed into place nor attached (`on_rename`, `on_move_mount`).
        unsafe { refuse_attach(e) };
        aya_log_ebpf::error!(&(), "could not protect a credential systemd is writing; its filesystem will not be attached");
        return false;
    }
    unsafe { *slot = rule };
    if let Some(s) = unit_policy(&unit).and_then(policy_stats) {
        s.credentials += 1;
    }
    true
}

/// `inode_rename` (v252 to v258 rename each credential into place, then
/// move the filesystem): refused on a filesystem with an untagged file.
#[inline(always)]
pub unsafe fn on_rename(moved: *mut inode) -> i32 {
    if moved.is_null() {
        return 0;
    }
    match unsafe { setup_sb_of(moved as *const u8) } {
        Some(e) if unsafe { (*e).flags } & SETUP_SB_F_UNTAGGED != 0 => -EACCES,
        _ => 0,
    }
}

/// `move_mount(from, to)` (v259 on): attaching a filesystem systemd's setup
/// made. One with an untagged file is refused; a pending one (a refresh)
/// takes the unit whose credentials directory it goes to: the unit of the
/// filesystem it goes beneath, or the directory's name.
#[inline(always)]
pub unsafe fn on_move_mount(from_path: *const u8, to_path: *const u8) -> i32 {
    let from_sb = unsafe { path_sb(from_path) };
    let Some(e) = SETUP_SBS.get_ptr_mut(from_sb) else {
        return 0;
    };
    if unsafe { (*e).flags } & SETUP_SB_F_UNTAGGED != 0 {
        count(CNT_INTERNAL_ERRORS);
        return -EACCES;
    }
    if unsafe { (*e).state } != SETUP_SB_PENDING {
        return 0;
    }
    let to_sb = unsafe { path_sb(to_path) };
    let owner = match unsafe { SETUP_SBS.get(to_sb) } {
        Some(top) if top.state == SETUP_SB_UNIT || top.state == SETUP_SB_UNPROTECTED => Some(*top),
        _ => None,
    };
    let owner = owner.unwrap_or_else(|| {
        let dentry = unsafe { read_u64(to_path, off!(path_dentry)) } as *const u8;
        let name_p =
            unsafe { read_u64(dentry, off!(dentry_d_name) + off!(qstr_name)) } as *const u8;
        match unsafe { UNIT_NAMES.get(name_at(name_p)) } {
            Some(unit) => SetupSb {
                unit: *unit,
                state: SETUP_SB_UNIT,
                flags: 0,
            },
            None => SetupSb {
                unit: UnitPolicy::default(),
                state: SETUP_SB_UNPROTECTED,
                flags: 0,
            },
        }
    });
    unsafe {
        (*e).unit = owner.unit;
        (*e).state = owner.state;
    }
    0
}

/// The superblock of `struct path *p` (`p->mnt->mnt_sb`).
#[inline(always)]
unsafe fn path_sb(p: *const u8) -> u64 {
    unsafe {
        let mnt = read_u64(p, off!(path_mnt)) as *const u8;
        if mnt.is_null() {
            0
        } else {
            read_u64(mnt, off!(vfsmount_mnt_sb))
        }
    }
}
