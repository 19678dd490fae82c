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
//! - **Credentials.** systemd writes every credential as `.#cred<random>`
//!   and renames it into place, from setup in the unit's cgroup, in a mount
//!   namespace of its own and before the mount is moved to
//!   `/run/credentials/<unit>` (v252 to v258). Such a file is tagged for
//!   the unit as it is created (`d_instantiate`), so no path to it, the
//!   private workspace included, is ever open to anyone else.

use aya_ebpf::{
    bindings::inode,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_uid_gid, bpf_probe_read_kernel_str_bytes},
};
use guard_common::*;

use crate::{
    layout::{current_euid, current_task, off, read_u32, read_u64},
    maps::{count, policy_stats, INODE_RULES, LINEAGE, UNIT_CGROUPS, UNIT_OWNERS},
    self_protect::{current_trust, inode_trust},
};

/// The name prefix systemd gives a credential while it writes it.
const CRED_TEMP_PREFIX: &[u8] = b".#cred";

#[inline(always)]
unsafe fn is_pid1(task: *const u8) -> bool {
    unsafe { read_u32(task, off!(task_tgid)) == 1 }
}

/// PID 1 itself, running systemd's executable (the root of the lineage;
/// it also removes a stopped unit's credentials).
#[inline(always)]
pub fn current_is_pid1_systemd() -> bool {
    (unsafe { is_pid1(current_task()) }) && current_trust() == TRUST_SYSTEMD
}

/// Whether the current task is systemd's lineage (see the module docs).
#[inline(always)]
fn current_in_lineage() -> bool {
    unsafe { LINEAGE.get(current_task() as u64) }.is_some() || current_is_pid1_systemd()
}

/// systemd's setup: lineage, systemd's executable, UID 0 (real and effective).
#[inline(always)]
pub fn current_is_setup() -> bool {
    if bpf_get_current_uid_gid() as u32 != 0 || unsafe { current_euid() } != Some(0) {
        return false;
    }
    // The executable is checked once: lineage is then the map or being PID 1.
    let task = current_task();
    current_trust() == TRUST_SYSTEMD && (unsafe { LINEAGE.get(task as u64) }.is_some() || unsafe { is_pid1(task) })
}

/// The protected unit whose cgroup the current task is in, if any.
#[inline(always)]
fn current_unit() -> Option<(u64, UnitPolicy)> {
    let cg = unsafe { bpf_get_current_cgroup_id() };
    unsafe { UNIT_CGROUPS.get(cg) }.map(|p| (cg, *p))
}

/// `task_alloc`: a child of systemd's lineage is of it. If the mark cannot
/// be recorded the child is simply not setup (a protected unit's setup is
/// then refused its credentials: closed, and logged).
#[inline(always)]
pub fn on_task_alloc(task: u64) {
    if !current_in_lineage() {
        return;
    }
    if LINEAGE.insert(task, 1, 0).is_err() {
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "systemd's lineage is full; a task systemd forked is not trusted as its setup");
    }
}

#[inline(always)]
pub fn on_task_free(task: u64) {
    let _ = LINEAGE.remove(task);
}

/// `bprm_check_security`: running anything but systemd's own executables
/// leaves the lineage (scripts are checked per interpreter step; a failed
/// exec leaves it too, which only ever takes trust away).
#[inline(always)]
pub unsafe fn on_exec(exe_inode: *const u8) {
    let task = current_task() as u64;
    if unsafe { LINEAGE.get(task) }.is_none() {
        return;
    }
    if unsafe { inode_trust(exe_inode) } != TRUST_SYSTEMD {
        let _ = LINEAGE.remove(task);
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

#[inline(always)]
unsafe fn is_cred_temp(dentry: *const u8) -> bool {
    let name_p = unsafe { read_u64(dentry, off!(dentry_d_name) + off!(qstr_name)) } as *const u8;
    if name_p.is_null() {
        return false;
    }
    let mut name = [0u8; 8];
    unsafe { bpf_probe_read_kernel_str_bytes(name_p, &mut name) }.is_ok() && name.starts_with(CRED_TEMP_PREFIX)
}

/// `inode_rename` by setup in a protected unit's cgroup of a credential
/// it wrote: refused if the kernel could not tag it (see `on_instantiate`),
/// so an unprotected credential never takes its place.
#[inline(always)]
pub unsafe fn on_rename(old_dentry: *const u8, moved: *mut inode) -> i32 {
    if moved.is_null() || !unsafe { is_cred_temp(old_dentry) } || !unsafe { INODE_RULES.get_ptr_mut(moved) }.is_null() {
        return 0;
    }
    if current_unit().is_none() || !current_is_setup() {
        return 0;
    }
    // Counted as an internal error when tagging failed; not a decision.
    -crate::decide::EACCES
}

/// `d_instantiate` of a new inode: a credential being written by setup in a
/// protected unit's cgroup is the unit's from this instant.
#[inline(always)]
pub unsafe fn on_instantiate(dentry: *const u8, child: *mut inode) -> bool {
    if !unsafe { is_cred_temp(dentry) } {
        return false;
    }
    let Some((_, unit)) = current_unit() else { return false };
    if !current_is_setup() {
        return false;
    }
    let mut rule = InodeRule::for_unit(&unit, RULE_F_CREDENTIAL);
    let slot = unsafe { INODE_RULES.get_or_insert_ptr_mut(child, Some(&mut rule)) };
    if slot.is_null() {
        // This hook cannot refuse; `on_rename` refuses to put the
        // unprotected file in place, so the unit fails to start (closed).
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "could not protect a credential systemd is writing");
        return false;
    }
    unsafe { *slot = rule };
    if let Some(s) = crate::decide::unit_policy(&unit).and_then(policy_stats) {
        s.credentials += 1;
    }
    true
}
