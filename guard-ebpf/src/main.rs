//! guard's kernel side: BPF LSM programs that confine protected files to
//! their owning systemd unit's cgroup and allowed UIDs, and keep guard
//! itself out of everyone else's reach.
//!
//! Every hook here is a thin `#[lsm]` wrapper: it passes an earlier LSM's
//! non-zero verdict through untouched, picks its arguments, and calls into
//! one module:
//!
//! - `decide`: the decision for a protected inode (cgroup AND UID), failing
//!   closed on internal errors;
//! - `report`: the record of a refusal, never waiting;
//! - `self_protect`: guard's maps, programs, pins, binary and process;
//! - `evict`: rules that outlive the inode cache;
//! - `cgroup`: only systemd puts processes into a protected unit's cgroup;
//! - `systemd`: systemd's setup of a unit, the unit's own user, and its
//!   credentials from the instant they are created;
//! - `maps`, `layout`: the maps and the kernel struct offsets.
//!
//! The hot path (`file_open` of a file no policy names) is one typed load of
//! `file->f_inode` and one inode-storage lookup that misses: no string work,
//! no other map, flat in the number of protected files.
#![no_std]
#![no_main]
// BPF inline asm (one atomic add in `report`); aya-ebpf enables it too.
#![feature(asm_experimental_arch)]

mod cgroup;
mod decide;
mod evict;
mod floor;
mod layout;
mod maps;
mod memory;
mod procfs;
mod report;
mod self_protect;
mod swap;
mod systemd;
mod unit;

use aya_ebpf::{bindings::inode, macros::lsm, programs::LsmContext};
use guard_common::*;

use crate::{
    decide::{decide, judge, judge_inode},
    layout::{current_task, is_dir, load_ptr, load_u32, off, read_u32, read_u64, sb_magic_t, task_cgroup_id_t},
    maps::{active_gen, count, policy_stats, INODE_RULES, UNIT_CGROUPS},
    report::Subject,
    unit::unit_policy,
};

/// `PTRACE_MODE_ATTACH` from `include/linux/ptrace.h`.
const PTRACE_MODE_ATTACH: u32 = 0x02;

// ------------------------------------------------------------- file hooks

/// The file hooks' shared path. For an unprotected file this is the whole
/// cost: one typed load of `file->f_inode` and one inode-storage lookup.
/// Directories are not judged (see `RULE_F_DIR`).
#[inline(always)]
unsafe fn judge_file(file: *const u8, hook: u32) -> i32 {
    unsafe {
        let inode: *mut inode = load_ptr(file, off!(file_f_inode));
        let rule = INODE_RULES.get_ptr_mut(inode);
        if rule.is_null() {
            // One load and a compare: only a block device node goes on.
            return swap::judge_node(file, inode, hook);
        }
        // Protected in the policy set in force? (A reload switches sets.)
        let Some((policy_id, flags)) = (*rule).slot(active_gen()) else { return 0 };
        if flags & RULE_F_DIR != 0 {
            if flags & RULE_F_ANCHOR != 0 && hook == HOOK_FILE_OPEN {
                self_protect::anchor(file);
            }
            return 0;
        }
        let fmode = read_u32(file, off!(file_f_mode));
        let mut access = 0;
        if fmode & FMODE_READ != 0 {
            access |= ACCESS_READ;
        }
        if fmode & FMODE_WRITE != 0 {
            access |= ACCESS_WRITE;
        }
        // d_path only where the kernel allows it (file_open).
        let path_from = if hook == HOOK_FILE_OPEN { file } else { core::ptr::null() };
        judge(inode, policy_id, flags, &Subject { file: path_from, ..Subject::new(hook, access) })
    }
}

/// `file_open(struct file *file)`: every open through the VFS, including
/// `open_by_handle_at`, `/proc/<pid>/fd/N` re-opens and io_uring opens.
#[lsm(hook = "file_open")]
pub fn guard_file_open(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    unsafe { judge_file(ctx.arg(0), HOOK_FILE_OPEN) }
}

/// `file_receive(struct file *file)`: an fd arriving over `SCM_RIGHTS` or
/// `pidfd_getfd`. A protected file may not travel out of its unit.
#[lsm(hook = "file_receive")]
pub fn guard_file_receive(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    unsafe { judge_file(ctx.arg(0), HOOK_FILE_RECEIVE) }
}

// ------------------------------------------------- inode identity hooks

/// `d_instantiate(struct dentry *dentry, struct inode *inode)`: a name is
/// bound to an inode (creation, lookup of an uncached inode, link, open by
/// handle). An evicted protected inode gets its rule back; a new inode in a
/// protected directory inherits the directory's rule. Never denies.
#[lsm(hook = "d_instantiate")]
pub fn guard_d_instantiate(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(0);
    let new_inode: *mut inode = ctx.arg(1);
    if new_inode.is_null() {
        return 0;
    }
    unsafe {
        // The filesystem decides which of the rest can apply, read once by
        // typed loads. Pipes, sockets and anonymous inodes (epoll, eventfd,
        // BPF objects' fds) are nothing of guard's.
        let magic = sb_magic_t(new_inode as *const u8);
        if matches!(magic, PIPEFS_MAGIC | SOCKFS_MAGIC | ANON_INODE_FS_MAGIC) {
            return 0;
        }
        // A core a unit's process is dumping: for everyone else, the
        // current task (a helper call before 6.10), one typed load and a compare.
        if load_u32(current_task(), off!(task_flags)) & memory::PF_DUMPCORE != 0
            && INODE_RULES.get_ptr_mut(new_inode).is_null()
            && memory::on_core_created(new_inode)
        {
            return 0;
        }
        // Credentials exist only on tmpfs/ramfs, rules kept at eviction only
        // on disk-backed filesystems: a bystander pays one lookup on either.
        if magic == TMPFS_MAGIC || magic == RAMFS_MAGIC {
            instantiate_in_memory(dentry, new_inode);
            return 0;
        }
        if !INODE_RULES.get_ptr_mut(new_inode).is_null() || evict::restore(new_inode, magic) {
            return 0;
        }
        // A filesystem's root is its own parent, with nothing to inherit.
        let parent: *const u8 = load_ptr(dentry, off!(dentry_d_parent));
        if !parent.is_null() && parent != dentry {
            let dir_inode: *mut inode = load_ptr(parent, off!(dentry_d_inode));
            inherit(INODE_RULES.get_ptr_mut(dir_inode), new_inode, 0);
        }
        match magic {
            CGROUP2_SUPER_MAGIC => cgroup::on_instantiate(new_inode),
            PROC_SUPER_MAGIC => procfs::on_instantiate(dentry, new_inode),
            _ => {}
        }
    }
    0
}

/// `d_instantiate` on tmpfs and ramfs (`/tmp`, `/run`, `/dev/shm`, memfds).
/// A name whose directory carries no rule needs nothing: nothing there is
/// protected, passes protection on, or is a filesystem systemd's setup is
/// writing credentials to (`RULE_F_SETUP_FS`), so a bystander's whole cost
/// is that directory's inode-storage lookup.
#[inline(always)]
unsafe fn instantiate_in_memory(dentry: *const u8, new_inode: *mut inode) {
    unsafe {
        let parent: *const u8 = load_ptr(dentry, off!(dentry_d_parent));
        if parent == dentry {
            // A filesystem's root (made in its mount), or a pseudo file.
            systemd::on_fs_root(new_inode);
            return;
        }
        if parent.is_null() {
            return;
        }
        let dir_inode: *mut inode = load_ptr(parent, off!(dentry_d_inode));
        let dir_rule = INODE_RULES.get_ptr_mut(dir_inode);
        if dir_rule.is_null() || !INODE_RULES.get_ptr_mut(new_inode).is_null() {
            return;
        }
        let mut setup_dir = 0;
        if (*dir_rule).raw_flags() & RULE_F_SETUP_FS != 0 {
            if systemd::on_instantiate(new_inode) {
                return;
            }
            if is_dir(new_inode) {
                setup_dir = RULE_F_SETUP_FS;
            }
        }
        inherit(dir_rule, new_inode, setup_dir);
    }
}

/// `inode_free_security(struct inode *inode)`: the inode leaves memory.
#[lsm(hook = "inode_free_security")]
pub fn guard_inode_free_security(ctx: LsmContext) -> i32 {
    unsafe { evict::on_free(ctx.arg(0)) };
    0
}

/// Tags `child` with the rule of its directory's `dir_rule` (may be null)
/// if that directory passes its rule on, and with `extra` (raw flags of
/// both slots, `RULE_F_SETUP_FS`) if that is not 0.
#[inline(always)]
unsafe fn inherit(dir_rule: *mut InodeRule, child: *mut inode, extra: u32) {
    if dir_rule.is_null() || child.is_null() {
        return;
    }
    unsafe {
        if (*dir_rule).any_flags() & RULE_F_INHERIT == 0 && extra == 0 {
            return;
        }
        // Each generation's slot passes on what it protects. guard's own pin
        // directory passes `RULE_F_SELF` on, so a pin is protected from the
        // instant it exists; a setup-only directory (`/etc/credstore.encrypted`)
        // passes `RULE_F_SETUP_ONLY` on.
        let dir_flags = if is_dir(child) { RULE_F_INHERIT | RULE_F_DIR } else { 0 };
        let mut rule = InodeRule::default();
        // Constant indices only (see `InodeRule::slot`).
        macro_rules! pass_on {
            ($b:literal) => {
                if (*dir_rule).gen[$b] != 0 && (*dir_rule).flags[$b] & RULE_F_INHERIT != 0 {
                    rule.gen[$b] = (*dir_rule).gen[$b];
                    rule.policy_id[$b] = (*dir_rule).policy_id[$b];
                    rule.flags[$b] = (*dir_rule).flags[$b] & (RULE_F_SELF | RULE_F_SETUP_ONLY) | dir_flags;
                }
            };
        }
        pass_on!(0);
        pass_on!(1);
        rule.flags[0] |= extra;
        rule.flags[1] |= extra;
        let slot = INODE_RULES.get_or_insert_ptr_mut(child, Some(&mut rule));
        if slot.is_null() {
            // Out of memory for inode storage: the new inode is NOT protected.
            if extra != 0 {
                // Nor would setup's files in it be: its filesystem stays detached.
                systemd::untagged(child);
            }
            aya_log_ebpf::warn!(&(), "could not protect a new inode under a protected directory");
            return;
        }
        *slot = rule;
        if rule.any_flags() == 0 {
            return;
        }
        count(CNT_INHERITED);
        if let Some((policy_id, _)) = rule.slot(active_gen()) {
            if let Some(s) = policy_stats(policy_id) {
                s.inherited += 1;
            }
        }
    }
}

// ------------------------------------------------------ alteration hooks

/// `inode_rename(old_dir, old_dentry, new_dir, new_dentry)`: an outsider may
/// not move a protected file, nor replace one; a file moved into a protected
/// directory becomes protected.
#[lsm(hook = "inode_rename")]
pub fn guard_inode_rename(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(4);
    if ret != 0 {
        return ret;
    }
    let old_dentry: *const u8 = ctx.arg(1);
    let new_dentry: *const u8 = ctx.arg(3);
    let subject = Subject::new(HOOK_INODE_RENAME, ACCESS_ALTER);
    unsafe {
        let verdict = cgroup::on_rename(old_dentry, ctx.arg(2), new_dentry);
        if verdict != 0 {
            return verdict;
        }
        let moved: *mut inode = load_ptr(old_dentry, off!(dentry_d_inode));
        let verdict = systemd::on_rename(moved);
        if verdict != 0 {
            return verdict;
        }
        let verdict = judge_inode(moved, &subject);
        if verdict != 0 {
            return verdict;
        }
        let replaced: *mut inode = load_ptr(new_dentry, off!(dentry_d_inode));
        if !replaced.is_null() {
            let verdict = judge_inode(replaced, &subject);
            if verdict != 0 {
                return verdict;
            }
        }
        if INODE_RULES.get_ptr_mut(moved).is_null() {
            let new_dir: *mut inode = ctx.arg(2);
            inherit(INODE_RULES.get_ptr_mut(new_dir), moved, 0);
        }
    }
    0
}

/// `inode_unlink(dir, dentry)`: an outsider may not delete a protected file.
#[lsm(hook = "inode_unlink")]
pub fn guard_inode_unlink(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(2);
    if ret != 0 {
        return ret;
    }
    let dentry: *const u8 = ctx.arg(1);
    let subject = Subject::new(HOOK_INODE_UNLINK, ACCESS_ALTER);
    unsafe {
        let victim: *mut inode = load_ptr(dentry, off!(dentry_d_inode));
        judge_inode(victim, &subject)
    }
}

/// `path_truncate(const struct path *path)`: truncate(2) by path does not
/// open the file, so it is judged here.
#[lsm(hook = "path_truncate")]
pub fn guard_path_truncate(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    let p: *const u8 = ctx.arg(0);
    let subject = Subject::new(HOOK_PATH_TRUNCATE, ACCESS_ALTER | ACCESS_WRITE);
    unsafe {
        let dentry: *const u8 = load_ptr(p, off!(path_dentry));
        let victim: *mut inode = load_ptr(dentry, off!(dentry_d_inode));
        judge_inode(victim, &subject)
    }
}

/// `kernfs_init_security(kn_dir, kn)`: a kernfs node is made; a new cgroup
/// of (or in) a protected unit is refused here (see `cgroup`). Not
/// `inode_mkdir`: every mkdir on the host would pay for that one.
#[lsm(hook = "kernfs_init_security")]
pub fn guard_kernfs_init_security(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(2);
    if ret != 0 {
        return ret;
    }
    unsafe { cgroup::on_kernfs_node(ctx.arg(0), ctx.arg(1)) }
}

// --------------------------------------------------------- process hooks

/// `task_alloc(struct task_struct *task, unsigned long clone_flags)`.
#[lsm(hook = "task_alloc")]
pub fn guard_task_alloc(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(2);
    if ret != 0 {
        return ret;
    }
    let task: *const u8 = ctx.arg(0);
    // The parent's marks, read once: a bystander has no task storage, and
    // this is one pointer test (no hook at exit: the storage goes with the task).
    let marks = maps::current_marks();
    let verdict = unsafe { cgroup::on_task_alloc(task, marks, ctx.arg(1)) };
    if verdict == 0 {
        systemd::on_task_alloc(task, marks);
    }
    verdict
}

/// `task_fix_setuid(struct cred *new, const struct cred *old, int flags)`:
/// records the UID systemd gives a protected unit (never denies).
#[lsm(hook = "task_fix_setuid")]
pub fn guard_task_fix_setuid(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(3);
    if ret != 0 {
        return ret;
    }
    unsafe { systemd::on_setuid(ctx.arg(0)) };
    0
}

/// `ptrace_access_check(struct task_struct *child, unsigned int mode)`:
/// ptrace attach, `/proc/<pid>/mem`, `process_vm_readv` and `pidfd_getfd`
/// of a process in a protected unit's cgroup are kept to the unit itself,
/// and of guard's own processes to guard. Read-only inspection (`ps`,
/// `/proc/<pid>/stat`) is left alone.
#[lsm(hook = "ptrace_access_check")]
pub fn guard_ptrace_access_check(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(2);
    if ret != 0 {
        return ret;
    }
    let mode: u32 = ctx.arg(1);
    let attach = mode & PTRACE_MODE_ATTACH != 0;
    let child: *const u8 = ctx.arg(0);
    unsafe {
        let target_tgid = read_u32(child, off!(task_tgid));
        if let Some(verdict) = self_protect::on_ptrace_of(child, target_tgid, attach) {
            return verdict;
        }
        if !attach {
            return 0;
        }
        let target_cgroup = task_cgroup_id_t(child);
        if target_cgroup == 0 {
            return 0;
        }
        let Some(policy_id) = UNIT_CGROUPS.get(target_cgroup).and_then(unit_policy) else {
            return 0;
        };
        decide(core::ptr::null_mut(), policy_id, 0, &Subject { target_tgid, ..Subject::new(HOOK_PTRACE, ACCESS_ALTER) })
    }
}

// ------------------------------------------------- self-protection hooks

/// `bprm_check_security(struct linux_binprm *bprm)`.
#[lsm(hook = "bprm_check_security")]
pub fn guard_bprm_check_security(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    let bprm: *const u8 = ctx.arg(0);
    unsafe {
        let file: *const u8 = load_ptr(bprm, off!(linux_binprm_file));
        let exe: *const u8 = if file.is_null() { core::ptr::null() } else { load_ptr(file, off!(file_f_inode)) };
        if exe.is_null() {
            return 0;
        }
        systemd::on_exec(exe);
        self_protect::on_exec(exe)
    }
}

/// `bpf(int cmd, union bpf_attr *attr, unsigned int size)`: the form up to
/// Linux 6.14 (the previous verdict is slot 3).
#[lsm(hook = "bpf")]
pub fn guard_bpf(ctx: LsmContext) -> i32 {
    bpf_hook(&ctx, 3)
}

/// `bpf(int cmd, union bpf_attr *attr, unsigned int size, bool kernel)`:
/// the form from Linux 6.15 (the previous verdict is slot 4). `kernel` is
/// not read: commands a `BPF_PROG_TYPE_SYSCALL` program issues carry it
/// too, so it proves nothing about who asks.
#[lsm(hook = "bpf")]
pub fn guard_bpf_kflag(ctx: LsmContext) -> i32 {
    bpf_hook(&ctx, 4)
}

/// Both shapes of `bpf`: `verdict_slot` is the previous verdict's slot, the
/// only thing that differs between them.
#[inline(always)]
fn bpf_hook(ctx: &LsmContext, verdict_slot: usize) -> i32 {
    let ret: i32 = ctx.arg(verdict_slot);
    if ret != 0 {
        return ret;
    }
    let cmd: u32 = ctx.arg(0);
    unsafe { self_protect::on_bpf(cmd, ctx.arg(1)) }
}

/// `bpf_map(struct bpf_map *map, fmode_t fmode)`: every new fd of a map.
#[lsm(hook = "bpf_map")]
pub fn guard_bpf_map(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(2);
    if ret != 0 {
        return ret;
    }
    // Typed loads (no helper call): the hook's arguments are BTF pointers.
    let map: *const u8 = ctx.arg(0);
    let id = unsafe { load_u32(map, off!(bpf_map_id)) };
    self_protect::on_object_fd(OBJ_MAP, id)
}

/// `bpf_prog(struct bpf_prog *prog)`: every new fd of a program.
#[lsm(hook = "bpf_prog")]
pub fn guard_bpf_prog(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    let prog: *const u8 = ctx.arg(0);
    let id = unsafe {
        let aux: *const u8 = load_ptr(prog, off!(bpf_prog_aux));
        if aux.is_null() { 0 } else { load_u32(aux, off!(bpf_prog_aux_id)) }
    };
    self_protect::on_object_fd(OBJ_PROG, id)
}

/// `sb_alloc_security(struct super_block *sb)`: a filesystem is created
/// (systemd's setup building a unit's credentials; see `systemd`).
#[lsm(hook = "sb_alloc_security")]
pub fn guard_sb_alloc_security(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    systemd::on_sb_alloc(ctx.arg(0))
}

/// `sb_free_security(struct super_block *sb)`.
#[lsm(hook = "sb_free_security")]
pub fn guard_sb_free_security(ctx: LsmContext) -> i32 {
    systemd::on_sb_free(ctx.arg(0));
    0
}

/// `move_mount(const struct path *from_path, const struct path *to_path)`:
/// systemd attaching a unit's credentials (v259 on; see `systemd`).
#[lsm(hook = "move_mount")]
pub fn guard_move_mount(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(2);
    if ret != 0 {
        return ret;
    }
    unsafe { systemd::on_move_mount(ctx.arg(0), ctx.arg(1)) }
}

// ------------------------------------------------------ memory doors

/// `locked_down(enum lockdown_reason what)`.
#[lsm(hook = "locked_down")]
pub fn guard_locked_down(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    memory::on_locked_down(ctx.arg(0))
}

/// `kernel_read_file(struct file *file, enum kernel_read_file_id id, bool contents)`.
#[lsm(hook = "kernel_read_file")]
pub fn guard_kernel_read_file(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(3);
    if ret != 0 {
        return ret;
    }
    memory::on_kernel_read_file(ctx.arg(1))
}

/// `cred_prepare(struct cred *new, const struct cred *old, gfp_t gfp)`.
#[lsm(hook = "cred_prepare")]
pub fn guard_cred_prepare(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(3);
    if ret != 0 {
        return ret;
    }
    memory::on_cred_prepare()
}

/// `task_kill(struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *cred)`.
#[lsm(hook = "task_kill")]
pub fn guard_task_kill(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(4);
    if ret != 0 {
        return ret;
    }
    unsafe { memory::on_task_kill(ctx.arg(0), ctx.arg(2)) }
}

/// `file_send_sigiotask(struct task_struct *tsk, struct fown_struct *fown, int sig)`.
#[lsm(hook = "file_send_sigiotask")]
pub fn guard_file_send_sigiotask(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(3);
    if ret != 0 {
        return ret;
    }
    unsafe { memory::on_sigiotask(ctx.arg(0), ctx.arg(2)) }
}

/// `task_setrlimit(struct task_struct *p, unsigned int resource, struct rlimit *new_rlim)`.
#[lsm(hook = "task_setrlimit")]
pub fn guard_task_setrlimit(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(3);
    if ret != 0 {
        return ret;
    }
    unsafe { memory::on_setrlimit(ctx.arg(0), ctx.arg(1)) }
}

/// `perf_event_alloc(struct perf_event *event)`.
#[lsm(hook = "perf_event_alloc")]
pub fn guard_perf_event_alloc(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    if ret != 0 {
        return ret;
    }
    unsafe { memory::on_perf_event_alloc(ctx.arg(0)) }
}

/// `file_ioctl(struct file *file, unsigned int cmd, unsigned long arg)`:
/// every ioctl; a bystander's path is one compare of `cmd`.
#[lsm(hook = "file_ioctl")]
pub fn guard_file_ioctl(ctx: LsmContext) -> i32 {
    ioctl_hook(&ctx, HOOK_FILE_IOCTL)
}

/// `file_ioctl_compat(struct file *file, unsigned int cmd, unsigned long arg)`:
/// the ioctls of 32-bit processes, which no longer reach `file_ioctl`
/// (Linux 6.8, and Debian's 6.1 by backport); `dm_ioctl` has the same
/// layout, so the same command and check.
#[lsm(hook = "file_ioctl_compat")]
pub fn guard_file_ioctl_compat(ctx: LsmContext) -> i32 {
    ioctl_hook(&ctx, HOOK_FILE_IOCTL_COMPAT)
}

/// Both ioctl hooks: a bystander's command passes the previous verdict on
/// after one compare.
#[inline(always)]
fn ioctl_hook(ctx: &LsmContext, hook: u32) -> i32 {
    let cmd: u32 = ctx.arg(1);
    if cmd != DM_TABLE_STATUS {
        return ctx.arg(3);
    }
    let ret: i32 = ctx.arg(3);
    if ret != 0 {
        return ret;
    }
    unsafe { swap::on_dm_table_status(ctx.arg(2), hook) }
}

/// `inode_follow_link(struct dentry *dentry, struct inode *inode, bool rcu)`:
/// every link a path walk follows. A bystander's path is the filesystem's
/// magic (typed loads and a compare); a procfs link costs one
/// inode-storage lookup, and a protected unit's process's `fd/` and
/// `map_files/` links are judged (see `procfs`).
#[lsm(hook = "inode_follow_link")]
pub fn guard_inode_follow_link(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(3);
    if ret != 0 {
        return ret;
    }
    let link: *mut inode = ctx.arg(1);
    unsafe {
        if link.is_null() || sb_magic_t(link as *const u8) != PROC_SUPER_MAGIC {
            return 0;
        }
        procfs::on_follow_link(link)
    }
}

/// `sb_umount(struct vfsmount *mnt, int flags)`.
#[lsm(hook = "sb_umount")]
pub fn guard_sb_umount(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(2);
    if ret != 0 {
        return ret;
    }
    let mnt: u64 = ctx.arg(0);
    unsafe { self_protect::on_umount(mnt) }
}

/// An LSM `file_open` program that does nothing but pass the previous
/// verdict on: the floor any BPF LSM guard pays. Used by `guard bench`.
#[lsm(hook = "file_open")]
pub fn guard_empty_file_open(ctx: LsmContext) -> i32 {
    ctx.arg(1)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
