//! Swap: a protected unit's memory that went to swap reads back in
//! plaintext from the swap area while the system runs, dm-crypt and zram
//! included (they protect a disk at rest, not against live root).
//!
//! While guard protects anything (a policy set is in force):
//! - opening an active swap area for reading is refused to everyone but
//!   guard and the kernel's own `swapon(2)` and `swapoff(2)` (both open the
//!   path they are given `O_RDWR`; the file never reaches their caller).
//!   Areas are told by what they are, not by their path: a block device
//!   node by its `i_rdev` (the agent keeps `SWAP_DEVS` current from
//!   `/proc/swaps`), a swap file by the kernel's own `S_SWAPFILE`. Every
//!   block device node is tagged `RULE_F_SWAP` when it is instantiated
//!   (`on_instantiate`), so a second node made with `mknod`, before or after
//!   `swapon`, is judged like `/dev/<name>`; the agent tags the nodes under
//!   `/dev` that predate it and the swap files.
//! - `DM_TABLE_STATUS` with the table flag (`dmsetup table`, with or
//!   without `--showkeys`: dm-crypt puts its key in the table and `dmsetup`
//!   only blanks it on output) is refused to everyone but guard: the key
//!   plus the underlying device is the plaintext too.
//!
//! Each refusal is a `tamper` record. The `open()` hot path is untouched:
//! an unprotected file still misses in `INODE_RULES`; only block device
//! nodes and swap files carry a rule, and judging them costs a mode read
//! and one lookup. `file_ioctl`'s bystander path is one compare of `cmd`.

use aya_ebpf::{
    bindings::{inode, task_struct},
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_task_pt_regs},
};
use guard_common::*;

use crate::{
    layout::{current_task, off, read_u16, read_u32},
    maps::{active_gen, count, INODE_RULES, SWAP_DEVS},
    report::Subject,
    self_protect::{current_trust, tamper},
};

/// x86_64 system call numbers (`arch/x86/entry/syscalls/syscall_64.tbl`).
const NR_SWAPON: u64 = 167;
const NR_SWAPOFF: u64 = 168;
/// Offset of `orig_ax` (the system call number) in x86_64 `struct pt_regs`.
const PT_REGS_ORIG_AX: usize = 15 * 8;

/// The current task is inside `swapon(2)` or `swapoff(2)`: the open is
/// the kernel's own, of the path the call names.
#[inline(always)]
fn in_swap_syscall() -> bool {
    let regs = unsafe { bpf_task_pt_regs(current_task() as *mut task_struct) } as *const u8;
    if regs.is_null() {
        return false;
    }
    let nr = unsafe { bpf_probe_read_kernel(regs.add(PT_REGS_ORIG_AX) as *const u64) }.unwrap_or(u64::MAX);
    nr == NR_SWAPON || nr == NR_SWAPOFF
}

/// `inode` (tagged `RULE_F_SWAP`) is an active swap area now.
#[inline(always)]
unsafe fn active_swap(inode: *mut inode) -> bool {
    let i = inode as *const u8;
    let mode = unsafe { read_u16(i, off!(inode_i_mode)) };
    if mode & S_IFMT == S_IFBLK {
        let rdev = unsafe { read_u32(i, off!(inode_i_rdev)) };
        return unsafe { SWAP_DEVS.get(rdev) }.is_some();
    }
    let flags = unsafe { read_u32(i, off!(inode_i_flags)) };
    flags & S_SWAPFILE != 0
}

/// An access to a `RULE_F_SWAP` inode: a read open (or a received fd open
/// for reading) of an active swap area by anyone but guard and
/// `swapon`/`swapoff` is refused. Everything else passes.
#[inline(always)]
pub unsafe fn judge(inode: *mut inode, subject: &Subject) -> i32 {
    if subject.access & ACCESS_READ == 0 || (subject.hook != HOOK_FILE_OPEN && subject.hook != HOOK_FILE_RECEIVE) {
        return 0;
    }
    if active_gen() == 0 || !unsafe { active_swap(inode) } {
        return 0;
    }
    if current_trust() == TRUST_GUARD || in_swap_syscall() {
        return 0;
    }
    tamper(inode, &Subject { detail: 1, file: subject.file, ..Subject::new(subject.hook, subject.access) })
}

/// `d_instantiate` of `child`: a block device node is tagged `RULE_F_SWAP`
/// (whatever its device: it may become swap later).
#[inline(always)]
pub unsafe fn on_instantiate(child: *mut inode) {
    let mode = unsafe { crate::layout::load_u16(child as *const u8, off!(inode_i_mode)) };
    if mode & S_IFMT != S_IFBLK {
        return;
    }
    let mut rule = InodeRule::any(SELF_POLICY_ID, RULE_F_SELF | RULE_F_SWAP);
    // An inode that already has a rule (inherited from a protected
    // directory) keeps it.
    if unsafe { INODE_RULES.get_or_insert_ptr_mut(child, Some(&mut rule)) }.is_null() {
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "could not tag a new block device node; if it becomes swap, it is not judged");
    }
}

/// `file_ioctl(file, DM_TABLE_STATUS, arg)`: a device-mapper table.
///
/// The flags are read from the caller's memory before the kernel copies
/// them: a second thread that sets the flag in between wins the race (see
/// the README's limits).
#[inline(always)]
pub unsafe fn on_dm_table_status(arg: u64) -> i32 {
    if active_gen() == 0 {
        return 0;
    }
    // Unreadable: taken as a table request (the kernel's copy fails too).
    let flags = unsafe { bpf_probe_read_user((arg as usize + DM_IOCTL_FLAGS) as *const u32) }.unwrap_or(DM_STATUS_TABLE_FLAG);
    if flags & DM_STATUS_TABLE_FLAG == 0 || current_trust() == TRUST_GUARD {
        return 0;
    }
    tamper(core::ptr::null_mut(), &Subject { detail: DM_TABLE_STATUS, ..Subject::new(HOOK_FILE_IOCTL, ACCESS_READ) })
}
