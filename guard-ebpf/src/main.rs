//! guard's kernel side: BPF LSM programs that confine protected files to
//! their owning systemd unit's cgroup and allowed UIDs.
//!
//! Every hook is a thin `#[lsm]` wrapper around one decision, `judge()`:
//!
//! - An earlier LSM's non-zero verdict is returned untouched.
//! - The hot path (a file no policy names) is one typed load of
//!   `file->f_inode` and one inode-storage lookup that misses: no string
//!   work, no other map, flat in the number of protected files.
//! - A protected inode is allowed only when the opener's cgroup is the unit's
//!   cgroup (or below it) AND both its real and effective UID are allowed.
//! - Internal errors (a policy slot that is empty, a kernel layout the agent
//!   never filled in) DENY, in enforce and audit mode alike, and are counted
//!   in `CNT_INTERNAL_ERRORS`: guard fails closed.
//! - Reporting never waits: a full ring buffer or an exceeded rate limit
//!   drops the record and counts it; the verdict is the same either way.
#![no_std]
#![no_main]

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::{inode, path},
    btf_maps::{Array, HashMap, InodeStorage, LruHashMap, PerCpuArray, RingBuf},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel,
        generated::{
            bpf_d_path, bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id,
            bpf_get_current_task_btf, bpf_ktime_get_boot_ns,
        },
    },
    macros::{btf_map, lsm},
    programs::LsmContext,
};
use guard_common::*;

const EACCES: i32 = 13;
/// `PTRACE_MODE_ATTACH` from `include/linux/ptrace.h`.
const PTRACE_MODE_ATTACH: u32 = 0x02;

// ------------------------------------------------------------------- maps

#[btf_map]
static INODE_RULES: InodeStorage<InodeRule> = InodeStorage::new();

#[btf_map]
static POLICIES: Array<PolicyEntry, { MAX_POLICIES as usize }> = Array::new();

#[btf_map]
static ALLOWED_UIDS: HashMap<UidKey, u32, { MAX_ALLOWED_UIDS as usize }> = HashMap::new();

#[btf_map]
static UNIT_CGROUPS: HashMap<u64, u32, { MAX_POLICIES as usize }> = HashMap::new();

#[btf_map]
static EVENTS: RingBuf<Event, { DEFAULT_RINGBUF_BYTES as usize }> = RingBuf::new();

#[btf_map]
static COUNTERS: PerCpuArray<u64, { CNT_MAX as usize }> = PerCpuArray::new();

#[btf_map]
static RATE: LruHashMap<RateKey, RateState, { RATE_ENTRIES as usize }> = LruHashMap::new();

/// Kernel struct offsets, written by the agent from the running kernel's BTF.
/// `.rodata` is frozen before verification, so the verifier treats every
/// field as a constant. The non-zero `magic` keeps the object in `.rodata`.
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout {
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
        magic: LAYOUT_UNFILLED,
};

/// Reads one layout field; volatile so LLVM cannot fold the placeholder zero.
macro_rules! off {
    ($field:ident) => {
        {
            #[allow(unused_unsafe)]
            let v = unsafe { read_volatile(addr_of!(LAYOUT.$field)) };
            v as usize
        }
    };
}

// ---------------------------------------------------------------- helpers

#[inline(always)]
fn count(idx: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(idx) {
        unsafe { *p += 1 };
    }
}

/// A typed pointer load (`(*base).field`) at a verifier-constant offset. The
/// result keeps its BTF type, so it can be handed to helpers that need one.
#[inline(always)]
unsafe fn load_ptr<T>(base: *const u8, offset: usize) -> *mut T {
    unsafe { *(base.add(offset) as *const *mut T) }
}

/// An untyped read of a value field; never faults (0 on error).
#[inline(always)]
unsafe fn read_u64(base: *const u8, offset: usize) -> u64 {
    unsafe { bpf_probe_read_kernel(base.add(offset) as *const u64).unwrap_or(0) }
}

#[inline(always)]
unsafe fn read_u32(base: *const u8, offset: usize) -> u32 {
    unsafe { bpf_probe_read_kernel(base.add(offset) as *const u32).unwrap_or(0) }
}

/// What the route being judged can tell the report.
struct Subject {
    hook: u32,
    access: u32,
    /// `struct file *` when the route has one (d_path is taken from it).
    file: *const u8,
    target_tgid: u32,
}

/// The current task's effective UID, or `None` if it cannot be read.
#[inline(always)]
unsafe fn current_euid() -> Option<u32> {
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    let cred = unsafe { read_u64(task, off!(task_cred)) } as *const u8;
    if cred.is_null() {
        return None;
    }
    unsafe { bpf_probe_read_kernel(cred.add(off!(cred_euid)) as *const u32).ok() }
}

#[inline(always)]
fn uid_allowed(policy_id: u32, uid: u32) -> bool {
    unsafe { ALLOWED_UIDS.get(UidKey { policy_id, uid }) }.is_some()
}

/// The decision for an access to `inode` by the current task, for hooks
/// other than `file_open` (which looks the rule up itself, once).
#[inline(always)]
unsafe fn judge_inode(inode: *mut inode, subject: &Subject) -> i32 {
    let rule = unsafe { INODE_RULES.get_ptr_mut(inode) };
    if rule.is_null() {
        return 0;
    }
    unsafe { judge(inode, rule, subject) }
}

/// The decision for an access to protected `inode` (whose rule is `rule`)
/// by the current task. Returns 0 (allow) or `-EACCES`.
#[inline(always)]
unsafe fn judge(inode: *mut inode, rule: *const InodeRule, subject: &Subject) -> i32 {
    count(CNT_PROTECTED_HITS);
    decide(inode, unsafe { (*rule).policy_id }, subject)
}

/// Allowed if and only if the current task is in the policy's unit cgroup
/// (or below it) and its real UID, and its effective UID when different,
/// are allowed. Otherwise: counted, reported, and `-EACCES` in enforce mode.
#[inline(always)]
fn decide(inode: *mut inode, policy_id: u32, subject: &Subject) -> i32 {
    let Some(policy) = POLICIES.get(policy_id) else {
        return internal_error(inode, policy_id, subject);
    };
    if policy.mode == MODE_UNUSED || unsafe { read_volatile(addr_of!(LAYOUT.magic)) } != LAYOUT_MAGIC {
        return internal_error(inode, policy_id, subject);
    }
    let uid = bpf_get_current_uid_gid() as u32;
    let Some(euid) = (unsafe { current_euid() }) else {
        return internal_error(inode, policy_id, subject);
    };
    let cgroup_ok = policy.cgroup_id != 0
        && unsafe { bpf_get_current_ancestor_cgroup_id(policy.cgroup_level as i32) }
            == policy.cgroup_id;
    let uid_ok = uid_allowed(policy_id, uid) && (euid == uid || uid_allowed(policy_id, euid));
    if cgroup_ok && uid_ok {
        count(CNT_ALLOWED);
        return 0;
    }
    let decision = if policy.mode == MODE_AUDIT { DECISION_AUDITED } else { DECISION_DENIED };
    count(if decision == DECISION_AUDITED { CNT_AUDITED } else { CNT_DENIED });
    report(inode, policy_id, policy, decision, subject);
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
    let fallback = PolicyEntry { rate_per_sec: 1000, rate_burst: 1000, ..PolicyEntry::default() };
    report(inode, policy_id, &fallback, DECISION_DENIED, subject);
    -EACCES
}

/// Token bucket per (policy, opener cgroup). Approximate under concurrency
/// (two CPUs may both take the last token); exactness is not needed here
/// because every decision is still counted in exactly one outcome counter.
#[inline(always)]
fn rate_allows(policy_id: u32, cgroup_id: u64, policy: &PolicyEntry, now: u64) -> bool {
    if policy.rate_per_sec == 0 {
        return false;
    }
    let key = RateKey { cgroup_id, policy_id, _pad: 0 };
    let full = policy.rate_burst as u64 * RATE_SCALE;
    let Some(state) = RATE.get_ptr_mut(&key) else {
        let fresh = RateState { last_ns: now, tokens: full - RATE_SCALE };
        // If the insert fails (LRU contention), still allow: the record is
        // the rare case here, and the ring buffer bounds it anyway.
        let _ = RATE.insert(&key, &fresh, 0);
        return true;
    };
    let state = unsafe { &mut *state };
    let elapsed = now.saturating_sub(state.last_ns);
    let mut tokens = if elapsed >= 1_000_000_000 {
        full
    } else {
        // elapsed < 1e9 and rate <= u32::MAX: no overflow.
        state.tokens + elapsed * policy.rate_per_sec as u64 / 1_000_000
    };
    if tokens > full {
        tokens = full;
    }
    state.last_ns = now;
    if tokens < RATE_SCALE {
        state.tokens = tokens;
        return false;
    }
    state.tokens = tokens - RATE_SCALE;
    true
}

/// Writes one record, or counts why it could not. Never blocks.
#[inline(always)]
fn report(inode: *mut inode, policy_id: u32, policy: &PolicyEntry, decision: u32, subject: &Subject) {
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if !rate_allows(policy_id, cgroup_id, policy, now) {
        count(CNT_DROP_RATELIMIT);
        return;
    }
    let Some(mut entry) = EVENTS.reserve(0) else {
        count(CNT_DROP_RINGBUF);
        return;
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    unsafe {
        (*ev).ts_boot_ns = now;
        (*ev).cgroup_id = cgroup_id;
        (*ev).pid = pid_tgid as u32;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev).euid = current_euid().unwrap_or(u32::MAX);
        (*ev).policy_id = policy_id;
        (*ev).access = subject.access;
        (*ev).decision = decision;
        (*ev).hook = subject.hook;
        (*ev).target_tgid = subject.target_tgid;
        (*ev)._pad = 0;
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);

        let ino_p = inode as *const u8;
        if ino_p.is_null() {
            (*ev).ino = 0;
            (*ev).dev = 0;
        } else {
            (*ev).ino = read_u64(ino_p, off!(inode_i_ino));
            let sb = read_u64(ino_p, off!(inode_i_sb)) as *const u8;
            (*ev).dev = if sb.is_null() { 0 } else { read_u32(sb, off!(super_block_s_dev)) };
        }

        // The executable's identity: current->mm->exe_file->f_inode.
        (*ev).exe_ino = 0;
        (*ev).exe_dev = 0;
        let task = bpf_get_current_task_btf() as *const u8;
        let mm = read_u64(task, off!(task_mm)) as *const u8;
        if !mm.is_null() {
            let exe = read_u64(mm, off!(mm_exe_file)) as *const u8;
            if !exe.is_null() {
                let exe_inode = read_u64(exe, off!(file_f_inode)) as *const u8;
                if !exe_inode.is_null() {
                    (*ev).exe_ino = read_u64(exe_inode, off!(inode_i_ino));
                    let sb = read_u64(exe_inode, off!(inode_i_sb)) as *const u8;
                    if !sb.is_null() {
                        (*ev).exe_dev = read_u32(sb, off!(super_block_s_dev));
                    }
                }
            }
        }

        (*ev).path[0] = 0;
        (*ev).path_len = 0;
        if !subject.file.is_null() {
            // &file->f_path: typed arithmetic, as `bpf_d_path` wants it.
            let fpath = subject.file.add(off!(file_f_path)) as *mut path;
            (*ev).path_len = bpf_d_path(
                fpath,
                (*ev).path.as_mut_ptr() as *mut _,
                EVENT_PATH_LEN as u32,
            ) as i32;
        }
    }
    entry.submit(0);
    count(CNT_EVENTS_SENT);
}

// ------------------------------------------------------------------- hooks

/// The file hooks' shared path. For an unprotected file this is the whole
/// cost: one typed load of `file->f_inode` and one inode-storage lookup.
/// Directories are not judged (see `RULE_F_DIR`).
#[inline(always)]
unsafe fn judge_file(file: *const u8, hook: u32) -> i32 {
    unsafe {
        let inode: *mut inode = load_ptr(file, off!(file_f_inode));
        let rule = INODE_RULES.get_ptr_mut(inode);
        if rule.is_null() || (*rule).flags & RULE_F_DIR != 0 {
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
        judge(inode, rule, &Subject { hook, access, file: path_from, target_tgid: 0 })
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

/// `d_instantiate(struct dentry *dentry, struct inode *inode)`: a name is
/// bound to an inode (creation, mkdir, link). If the parent directory is a
/// protected directory, the new inode inherits its rule. Never denies.
#[lsm(hook = "d_instantiate")]
pub fn guard_d_instantiate(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(0);
    let new_inode: *mut inode = ctx.arg(1);
    unsafe {
        let parent: *const u8 = load_ptr(dentry, off!(dentry_d_parent));
        inherit(parent, new_inode);
    }
    0
}

/// Tags `child` with the rule of directory dentry `dir_dentry` if that
/// directory passes its rule on.
#[inline(always)]
unsafe fn inherit(dir_dentry: *const u8, child: *mut inode) {
    if dir_dentry.is_null() || child.is_null() {
        return;
    }
    unsafe {
        let dir_inode: *mut inode = load_ptr(dir_dentry, off!(dentry_d_inode));
        let dir_rule = INODE_RULES.get_ptr_mut(dir_inode);
        if dir_rule.is_null() || (*dir_rule).flags & RULE_F_INHERIT == 0 {
            return;
        }
        let mode = bpf_probe_read_kernel(((child as *const u8).add(off!(inode_i_mode))) as *const u16).unwrap_or(0);
        let flags = if mode & S_IFMT == S_IFDIR { RULE_F_INHERIT | RULE_F_DIR } else { 0 };
        let mut rule = InodeRule { policy_id: (*dir_rule).policy_id, flags };
        let slot = INODE_RULES.get_or_insert_ptr_mut(child, Some(&mut rule));
        if slot.is_null() {
            // Out of memory for inode storage: the new inode is NOT protected.
            aya_log_ebpf::warn!(&(), "could not protect a new inode under a protected directory (policy {})", rule.policy_id);
            return;
        }
        *slot = rule;
        count(CNT_INHERITED);
    }
}

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
    let subject = Subject { hook: HOOK_INODE_RENAME, access: ACCESS_ALTER, file: core::ptr::null(), target_tgid: 0 };
    unsafe {
        let moved: *mut inode = load_ptr(old_dentry, off!(dentry_d_inode));
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
        let new_parent: *const u8 = load_ptr(new_dentry, off!(dentry_d_parent));
        inherit(new_parent, moved);
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
    let subject = Subject { hook: HOOK_INODE_UNLINK, access: ACCESS_ALTER, file: core::ptr::null(), target_tgid: 0 };
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
    let subject = Subject { hook: HOOK_PATH_TRUNCATE, access: ACCESS_ALTER | ACCESS_WRITE, file: core::ptr::null(), target_tgid: 0 };
    unsafe {
        let dentry: *const u8 = load_ptr(p, off!(path_dentry));
        let victim: *mut inode = load_ptr(dentry, off!(dentry_d_inode));
        judge_inode(victim, &subject)
    }
}

/// `ptrace_access_check(struct task_struct *child, unsigned int mode)`:
/// ptrace attach, `/proc/<pid>/mem`, `process_vm_readv` and `pidfd_getfd`
/// of a process in a protected unit's cgroup are kept to the unit itself,
/// so the secret cannot be read out of the service's memory instead.
/// Read-only inspection (`ps`, `/proc/<pid>/stat`) is left alone.
#[lsm(hook = "ptrace_access_check")]
pub fn guard_ptrace_access_check(ctx: LsmContext) -> i32 {
    let ret: i32 = ctx.arg(2);
    if ret != 0 {
        return ret;
    }
    let mode: u32 = ctx.arg(1);
    if mode & PTRACE_MODE_ATTACH == 0 {
        return 0;
    }
    let child: *const u8 = ctx.arg(0);
    unsafe {
        // child->cgroups->dfl_cgrp->kn->id
        let cset = read_u64(child, off!(task_cgroups)) as *const u8;
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
        let target_cgroup = read_u64(kn, off!(kernfs_node_id));
        let Some(policy_id) = UNIT_CGROUPS.get(target_cgroup).copied() else {
            return 0;
        };
        decide(core::ptr::null_mut(), policy_id, &ptrace_subject(child))
    }
}

#[inline(always)]
unsafe fn ptrace_subject(child: *const u8) -> Subject {
    let target_tgid = unsafe { read_u32(child, off!(task_tgid)) };
    Subject { hook: HOOK_PTRACE, access: ACCESS_ALTER, file: core::ptr::null(), target_tgid }
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
