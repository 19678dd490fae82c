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
//!   `/proc/swaps`), a swap file by the kernel's own `S_SWAPFILE`. A block
//!   node without a rule is judged at open by its device (`judge_node`:
//!   after the `INODE_RULES` miss every open pays one load and a compare of
//!   the mode), so any node made with `mknod`, anywhere, at any time, is
//!   judged like `/dev/<name>`; the agent tags swap files `RULE_F_SWAP`.
//! - `DM_TABLE_STATUS` with the table flag (`dmsetup table`, with or
//!   without `--showkeys`: dm-crypt puts its key in the table and `dmsetup`
//!   only blanks it on output) is refused to everyone but guard: the key
//!   plus the underlying device is the plaintext too.
//!
//! Each refusal is a `tamper` record. The `open()` hot path keeps its one
//! lookup: an unprotected file misses in `INODE_RULES`, then its mode is
//! compared (no helper call); only a block device node opened for reading
//! costs a `SWAP_DEVS` lookup more. `file_ioctl`'s bystander path is one
//! compare of `cmd`.

use aya_ebpf::{
    bindings::{inode, task_struct},
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_task_pt_regs},
};
use guard_common::*;

use crate::{
    layout::{current_task, load_u16, load_u32, off, read_u16, read_u32},
    maps::{active_gen, SWAP_DEVS},
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

/// An open (or received fd) of an inode without a rule: a block device
/// node is judged by its device, wherever the node is and whenever it was
/// made (`mknod` before guard, before or after `swapon`, in any mount
/// namespace); anything else passes after one load and a compare.
#[inline(always)]
pub unsafe fn judge_node(file: *const u8, inode: *mut inode, hook: u32) -> i32 {
    let mode = unsafe { load_u16(inode as *const u8, off!(inode_i_mode)) };
    if mode & S_IFMT != S_IFBLK {
        return 0;
    }
    let fmode = unsafe { load_u32(file, off!(file_f_mode)) };
    if fmode & FMODE_READ == 0 {
        return 0;
    }
    let path_from = if hook == HOOK_FILE_OPEN { file } else { core::ptr::null() };
    unsafe { judge(inode, &Subject { file: path_from, ..Subject::new(hook, ACCESS_READ) }) }
}

/// `file_ioctl` or `file_ioctl_compat` (`hook`) of `DM_TABLE_STATUS`: a
/// device-mapper table.
///
/// The flags are read from the caller's memory before the kernel copies
/// them: a second thread that sets the flag in between wins the race (see
/// the README's limits).
#[inline(always)]
pub unsafe fn on_dm_table_status(arg: u64, hook: u32) -> i32 {
    if active_gen() == 0 {
        return 0;
    }
    // Unreadable: taken as a table request (the kernel's copy fails too).
    let flags = unsafe { bpf_probe_read_user((arg as usize + DM_IOCTL_FLAGS) as *const u32) }.unwrap_or(DM_STATUS_TABLE_FLAG);
    if flags & DM_STATUS_TABLE_FLAG == 0 || current_trust() == TRUST_GUARD {
        return 0;
    }
    tamper(core::ptr::null_mut(), &Subject { detail: DM_TABLE_STATUS, ..Subject::new(hook, ACCESS_READ) })
}
