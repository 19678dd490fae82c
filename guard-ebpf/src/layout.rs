//! Kernel struct offsets and the small readers built on them.
//!
//! Rust eBPF has no CO-RE relocations: the agent reads the offsets from the
//! running kernel's BTF and writes them into `.rodata` before load. `.rodata`
//! is frozen, so the verifier sees constants and typed pointer walks stay
//! typed and checked.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::inode,
    helpers::{bpf_probe_read_kernel, generated::bpf_get_current_task_btf},
};
use guard_common::*;

/// Kernel struct offsets, written by the agent from the running kernel's BTF.
/// The non-zero `magic` keeps the object in `.rodata`.
#[unsafe(no_mangle)]
pub static LAYOUT: KernelLayout = KernelLayout {
    file_f_inode: 0,
    file_f_path: 0,
    file_f_mode: 0,
    inode_i_ino: 0,
    inode_i_mode: 0,
    inode_i_sb: 0,
    super_block_s_dev: 0,
    dentry_d_parent: 0,
    dentry_d_inode: 0,
    path_dentry: 0,
    task_cred: 0,
    task_mm: 0,
    task_cgroups: 0,
    task_tgid: 0,
    cred_uid: 0,
    cred_gid: 0,
    cred_euid: 0,
    mm_exe_file: 0,
    css_set_dfl_cgrp: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
    inode_i_generation: 0,
    inode_i_nlink: 0,
    super_block_s_magic: 0,
    path_mnt: 0,
    mount_mnt: 0,
    mount_mnt_parent: 0,
    bpf_map_id: 0,
    bpf_prog_aux: 0,
    bpf_prog_aux_id: 0,
    inode_i_private: 0,
    kernfs_node_parent: 0,
    kernfs_node_name: 0,
    dentry_d_name: 0,
    qstr_name: 0,
    task_ptrace: 0,
    linux_binprm_file: 0,
    task_group_leader: 0,
    task_start_boottime: 0,
    vfsmount_mnt_sb: 0,
    task_real_parent: 0,
    proc_inode_vfs_inode: 0,
    proc_inode_pid: 0,
    pid_tasks: 0,
    task_pid_links: 0,
    task_flags: 0,
    perf_event_attr: 0,
    perf_event_hw: 0,
    hw_perf_event_target: 0,
    inode_i_rdev: 0,
    inode_i_flags: 0,
    kernfs_node_flags: 0,
    kernfs_node_dir_root: 0,
    magic: LAYOUT_UNFILLED,
};

/// Reads one layout field; volatile so LLVM cannot fold the placeholder zero.
macro_rules! off {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        let v = unsafe { core::ptr::read_volatile(core::ptr::addr_of!($crate::layout::LAYOUT.$field)) };
        v as usize
    }};
}
pub(crate) use off;

/// Whether the agent filled the layout in (anything else fails closed).
#[inline(always)]
pub fn layout_ok() -> bool {
    unsafe { read_volatile(addr_of!(LAYOUT.magic)) == LAYOUT_MAGIC }
}

/// A typed pointer load (`(*base).field`) at a verifier-constant offset. The
/// result keeps its BTF type, so it can be handed to helpers that need one.
#[inline(always)]
pub unsafe fn load_ptr<T>(base: *const u8, offset: usize) -> *mut T {
    unsafe { *(base.add(offset) as *const *mut T) }
}

/// An untyped read of a value field; never faults (0 on error).
#[inline(always)]
pub unsafe fn read_u64(base: *const u8, offset: usize) -> u64 {
    unsafe { bpf_probe_read_kernel(base.add(offset) as *const u64).unwrap_or(0) }
}

#[inline(always)]
pub unsafe fn read_u32(base: *const u8, offset: usize) -> u32 {
    unsafe { bpf_probe_read_kernel(base.add(offset) as *const u32).unwrap_or(0) }
}

#[inline(always)]
pub unsafe fn read_u16(base: *const u8, offset: usize) -> u16 {
    unsafe { bpf_probe_read_kernel(base.add(offset) as *const u16).unwrap_or(0) }
}

/// `inode->i_sb->s_magic` (0 if unreadable): which filesystem the inode is on.
#[inline(always)]
pub unsafe fn sb_magic(inode: *const u8) -> u64 {
    unsafe {
        let sb = read_u64(inode, off!(inode_i_sb)) as *const u8;
        if sb.is_null() { 0 } else { read_u64(sb, off!(super_block_s_magic)) }
    }
}

/// The identity of an inode that survives eviction: (sb dev, generation, ino).
#[inline(always)]
pub unsafe fn file_key(inode: *const u8) -> FileKey {
    unsafe {
        let sb = read_u64(inode, off!(inode_i_sb)) as *const u8;
        FileKey {
            dev: if sb.is_null() { 0 } else { read_u32(sb, off!(super_block_s_dev)) },
            generation: read_u32(inode, off!(inode_i_generation)),
            ino: read_u64(inode, off!(inode_i_ino)),
        }
    }
}

/// The identity of a task's executable (`task->mm->exe_file->f_inode`);
/// `None` for kernel threads and tasks without an executable.
#[inline(always)]
pub unsafe fn exe_key(task: *const u8) -> Option<FileKey> {
    unsafe {
        let mm = read_u64(task, off!(task_mm)) as *const u8;
        if mm.is_null() {
            return None;
        }
        let exe = read_u64(mm, off!(mm_exe_file)) as *const u8;
        if exe.is_null() {
            return None;
        }
        let ino = read_u64(exe, off!(file_f_inode)) as *const u8;
        if ino.is_null() {
            return None;
        }
        Some(file_key(ino))
    }
}

/// The inode of `task`'s executable (`task->mm->exe_file->f_inode`) by
/// typed loads, so it can be handed to inode storage: `task` must be a
/// BTF-typed task pointer (the current task, a hook's task argument).
/// NULL if any link is missing (a kernel thread has no `mm`).
#[inline(always)]
pub unsafe fn exe_inode(task: *const u8) -> *mut inode {
    unsafe {
        let mm: *const u8 = load_ptr(task, off!(task_mm));
        if mm.is_null() {
            return core::ptr::null_mut();
        }
        let exe: *const u8 = load_ptr(mm, off!(mm_exe_file));
        if exe.is_null() {
            return core::ptr::null_mut();
        }
        load_ptr(exe, off!(file_f_inode))
    }
}

/// A 32-bit field of a BTF-typed pointer by a typed load (no helper call;
/// the verifier checks the field's type and turns a fault into 0).
#[inline(always)]
pub unsafe fn load_u32(base: *const u8, offset: usize) -> u32 {
    unsafe { core::ptr::read_volatile(base.add(offset) as *const u32) }
}

/// A 16-bit field of a BTF-typed pointer (see [`load_u32`]).
#[inline(always)]
pub unsafe fn load_u16(base: *const u8, offset: usize) -> u16 {
    unsafe { core::ptr::read_volatile(base.add(offset) as *const u16) }
}

/// A 64-bit field of a BTF-typed pointer (see [`load_u32`]).
#[inline(always)]
pub unsafe fn load_u64(base: *const u8, offset: usize) -> u64 {
    unsafe { core::ptr::read_volatile(base.add(offset) as *const u64) }
}

/// [`sb_magic`] of a BTF-typed, non-NULL inode, by typed loads: the
/// bystander paths' form (no helper call).
#[inline(always)]
pub unsafe fn sb_magic_t(inode: *const u8) -> u64 {
    unsafe {
        let sb: *const u8 = load_ptr(inode, off!(inode_i_sb));
        if sb.is_null() { 0 } else { load_u64(sb, off!(super_block_s_magic)) }
    }
}

/// The kernfs node of a BTF-typed task's cgroup2 cgroup
/// (`task->cgroups->dfl_cgrp->kn`), by typed loads; NULL if a link is missing.
#[inline(always)]
pub unsafe fn task_cgroup_kn_t(task: *const u8) -> *const u8 {
    unsafe {
        let cset: *const u8 = load_ptr(task, off!(task_cgroups));
        if cset.is_null() {
            return core::ptr::null();
        }
        let cgrp: *const u8 = load_ptr(cset, off!(css_set_dfl_cgrp));
        if cgrp.is_null() {
            return core::ptr::null();
        }
        load_ptr(cgrp, off!(cgroup_kn))
    }
}

/// [`task_cgroup_id`] of a BTF-typed task, by typed loads.
#[inline(always)]
pub unsafe fn task_cgroup_id_t(task: *const u8) -> u64 {
    unsafe {
        let kn = task_cgroup_kn_t(task);
        if kn.is_null() { 0 } else { load_u64(kn, off!(kernfs_node_id)) }
    }
}

/// The current task (typed, from `bpf_get_current_task_btf`).
#[inline(always)]
pub fn current_task() -> *const u8 {
    unsafe { bpf_get_current_task_btf() as *const u8 }
}

/// The current task's effective UID, or `None` if it cannot be read.
#[inline(always)]
pub unsafe fn current_euid() -> Option<u32> {
    let cred = unsafe { read_u64(current_task(), off!(task_cred)) } as *const u8;
    if cred.is_null() {
        return None;
    }
    unsafe { bpf_probe_read_kernel(cred.add(off!(cred_euid)) as *const u32).ok() }
}

/// The cgroup-v2 id of `task` (`task->cgroups->dfl_cgrp->kn->id`; 0 if
/// any link is missing).
#[inline(always)]
pub unsafe fn task_cgroup_id(task: *const u8) -> u64 {
    unsafe {
        let cset = read_u64(task, off!(task_cgroups)) as *const u8;
        if cset.is_null() {
            return 0;
        }
        let cgrp = read_u64(cset, off!(css_set_dfl_cgrp)) as *const u8;
        if cgrp.is_null() {
            return 0;
        }
        let kn = read_u64(cgrp, off!(cgroup_kn)) as *const u8;
        if kn.is_null() {
            return 0;
        }
        read_u64(kn, off!(kernfs_node_id))
    }
}

/// `inode->i_mode` is a regular file.
#[inline(always)]
pub unsafe fn is_reg(i: *mut inode) -> bool {
    unsafe { read_u16(i as *const u8, off!(inode_i_mode)) & S_IFMT == S_IFREG }
}

/// `inode->i_mode` is a directory.
#[inline(always)]
pub unsafe fn is_dir(i: *mut inode) -> bool {
    unsafe { read_u16(i as *const u8, off!(inode_i_mode)) & S_IFMT == S_IFDIR }
}
