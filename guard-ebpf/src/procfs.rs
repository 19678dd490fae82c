//! `/proc/<pid>/` files that read a process's memory, kept to the process's
//! own unit (and guard's to guard).
//!
//! `ptrace_access_check` judges `/proc/<pid>/mem` and the other
//! ptrace-class accesses, but from Linux 6.15 `mm_access` lets CAP_PERFMON
//! read any process's `environ`, `auxv`, `maps`, `smaps`, `pagemap` and
//! `numa_maps` in read mode without asking the LSM (`may_access_mm`). So
//! when procfs instantiates one of these files (or `coredump_filter`, which
//! widens what a core holds) for a process of a protected unit, the inode
//! is tagged for the unit (`RULE_F_PROC`); for one of guard's processes, as
//! guard's own (`RULE_F_SELF`). The open is then judged like any protected
//! file, on every kernel. `stat`, `status`, `cmdline`, `comm`, `cgroup` and
//! the `exe` link stay open: `ps`, `systemctl status` and journald's `_EXE`
//! read them, and they do not show memory (a command line is the
//! exception the kernel makes public).
//!
//! A bystander pays the superblock-magic test on every instantiated
//! dentry; procfs files cost a few loads and one lookup of the process's
//! cgroup or executable; names are read only for protected processes.

use aya_ebpf::{bindings::inode, helpers::bpf_probe_read_kernel_str_bytes};
use guard_common::*;

use crate::{
    layout::{is_reg, off, read_u64, task_cgroup_id},
    maps::{count, INODE_RULES, UNIT_CGROUPS},
    self_protect::task_trust,
};

/// Names (NUL-padded, as read) of the files that are tagged.
const MEMORY_FILES: [&[u8]; 11] = [
    b"environ\0",
    b"auxv\0",
    b"maps\0",
    b"smaps\0",
    b"smaps_rollup\0",
    b"pagemap\0",
    b"numa_maps\0",
    b"mem\0",
    b"stack\0",
    b"syscall\0",
    b"coredump_filter\0",
];

/// The task a procfs inode belongs to (`PROC_I(inode)->pid`, its PID task).
#[inline(always)]
unsafe fn proc_task(i: *const u8) -> *const u8 {
    unsafe {
        let proc_inode = (i as u64).wrapping_sub(off!(proc_inode_vfs_inode) as u64) as *const u8;
        let pid = read_u64(proc_inode, off!(proc_inode_pid)) as *const u8;
        if pid.is_null() {
            return core::ptr::null();
        }
        // pid->tasks[PIDTYPE_PID].first, a node of task->pid_links[PIDTYPE_PID].
        let first = read_u64(pid, off!(pid_tasks));
        if first == 0 {
            return core::ptr::null();
        }
        first.wrapping_sub(off!(task_pid_links) as u64) as *const u8
    }
}

#[inline(always)]
unsafe fn is_memory_file(dentry: *const u8) -> bool {
    let name_p = unsafe { read_u64(dentry, off!(dentry_d_name) + off!(qstr_name)) } as *const u8;
    if name_p.is_null() {
        return false;
    }
    let mut name = [0u8; 16];
    if unsafe { bpf_probe_read_kernel_str_bytes(name_p, &mut name) }.is_err() {
        return false;
    }
    MEMORY_FILES.iter().any(|m| name.starts_with(m))
}

/// `d_instantiate` of a procfs inode (`magic` already read).
#[inline(always)]
pub unsafe fn on_instantiate(dentry: *const u8, child: *mut inode) {
    if !unsafe { is_reg(child) } {
        return;
    }
    let task = unsafe { proc_task(child as *const u8) };
    if task.is_null() {
        return;
    }
    let mut rule = if unsafe { task_trust(task) } == TRUST_GUARD {
        InodeRule::any(SELF_POLICY_ID, RULE_F_SELF)
    } else {
        match unsafe { UNIT_CGROUPS.get(task_cgroup_id(task)) } {
            Some(unit) => InodeRule::for_unit(unit, RULE_F_PROC),
            None => return,
        }
    };
    if !unsafe { is_memory_file(dentry) } {
        return;
    }
    let slot = unsafe { INODE_RULES.get_or_insert_ptr_mut(child, Some(&mut rule)) };
    if slot.is_null() {
        count(CNT_INTERNAL_ERRORS);
        aya_log_ebpf::error!(&(), "could not protect a protected process's /proc memory file");
        return;
    }
    unsafe { *slot = rule };
}
