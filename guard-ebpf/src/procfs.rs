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
//! The `fd/<N>` and `map_files/<range>` links of a protected unit's
//! process are tagged too (`RULE_F_PROC`), and judged when a path walk
//! follows them (`inode_follow_link`): following one reopens what the
//! process holds, and for a memfd, a pipe or a deleted file that is an
//! object no other rule names (the read-mode ptrace check it passes is
//! the one `readlink` passes too, so it cannot be refused there without
//! blinding `lsof` and journald). `readlink` stays open; a process may
//! always follow its own links (`/proc/self/fd/N`, a shell's `/dev/fd/N`),
//! as the kernel lets a process ptrace-read itself. `exe`, `cwd`, `root`
//! and the `ns/` links stay open: they lead to files judged by their own
//! rules (a credential through `root/` is still the credential's inode).
//!
//! A bystander pays the superblock-magic test on every instantiated
//! dentry and followed link; procfs files and links cost a few loads and
//! one lookup of the process's cgroup or executable (a followed procfs
//! link, such as `/proc/self`, one inode-storage lookup); names are read
//! only for protected processes.

use aya_ebpf::{
    bindings::inode,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes},
};
use guard_common::*;

use crate::{
    decide::judge,
    layout::{off, read_u16, read_u32, read_u64, task_cgroup_id},
    maps::{active_gen, count, INODE_RULES, UNIT_CGROUPS},
    report::Subject,
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

/// Directories whose links reopen what the process holds.
const HELD_LINK_DIRS: [&[u8]; 2] = [b"fd\0", b"map_files\0"];

/// `dentry`'s name, NUL-padded (all zero if unreadable).
#[inline(always)]
unsafe fn name_of(dentry: *const u8) -> [u8; 16] {
    let mut name = [0u8; 16];
    let name_p = unsafe { read_u64(dentry, off!(dentry_d_name) + off!(qstr_name)) } as *const u8;
    if !name_p.is_null() && unsafe { bpf_probe_read_kernel_str_bytes(name_p, &mut name) }.is_err() {
        name = [0u8; 16];
    }
    name
}

#[inline(always)]
unsafe fn is_memory_file(dentry: *const u8) -> bool {
    let name = unsafe { name_of(dentry) };
    MEMORY_FILES.iter().any(|m| name.starts_with(m))
}

/// A link in `/proc/<pid>/fd/` or `map_files/` (or a thread's).
#[inline(always)]
unsafe fn is_held_link(dentry: *const u8) -> bool {
    let parent = unsafe { read_u64(dentry, off!(dentry_d_parent)) } as *const u8;
    if parent.is_null() {
        return false;
    }
    let name = unsafe { name_of(parent) };
    HELD_LINK_DIRS.iter().any(|d| name.starts_with(d))
}

/// `d_instantiate` of a procfs inode (`magic` already read).
#[inline(always)]
pub unsafe fn on_instantiate(dentry: *const u8, child: *mut inode) {
    let mode = unsafe { read_u16(child as *const u8, off!(inode_i_mode)) } & S_IFMT;
    if mode != S_IFREG && mode != S_IFLNK {
        return;
    }
    let task = unsafe { proc_task(child as *const u8) };
    if task.is_null() {
        return;
    }
    let mut rule = if unsafe { task_trust(task) } == TRUST_GUARD {
        // guard's links need no tag: its processes refuse every
        // ptrace-class check, read mode included, to everyone else.
        if mode == S_IFLNK {
            return;
        }
        InodeRule::any(SELF_POLICY_ID, RULE_F_SELF)
    } else {
        match unsafe { UNIT_CGROUPS.get(task_cgroup_id(task)) } {
            Some(unit) => InodeRule::for_unit(unit, RULE_F_PROC),
            None => return,
        }
    };
    let tagged = if mode == S_IFLNK { unsafe { is_held_link(dentry) } } else { unsafe { is_memory_file(dentry) } };
    if !tagged {
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

/// `inode_follow_link` of a procfs link (`magic` already read): a tagged
/// `fd/` or `map_files/` link of a protected unit's process is judged like
/// the unit's files, unless the process follows its own.
#[inline(always)]
pub unsafe fn on_follow_link(link: *mut inode) -> i32 {
    let rule = unsafe { INODE_RULES.get_ptr_mut(link) };
    if rule.is_null() {
        return 0;
    }
    let Some((policy_id, flags)) = (unsafe { (*rule).slot(active_gen()) }) else { return 0 };
    let task = unsafe { proc_task(link as *const u8) };
    let target_tgid = if task.is_null() { 0 } else { unsafe { read_u32(task, off!(task_tgid)) } };
    if target_tgid != 0 && target_tgid == (bpf_get_current_pid_tgid() >> 32) as u32 {
        return 0;
    }
    judge(link, policy_id, flags, &Subject { target_tgid, ..Subject::new(HOOK_FOLLOW_LINK, ACCESS_READ) })
}
