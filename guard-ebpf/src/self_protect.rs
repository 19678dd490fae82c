//! Keeping guard itself out of reach of everyone but guard.
//!
//! "guard" is any process whose executable is, by identity (superblock and
//! inode number), one that the agent wrote into `TRUSTED` as
//! `TRUST_GUARD`: the agent's own binary, write-protected by a `RULE_F_SELF`
//! rule so it cannot be changed in place. A pid or a name proves nothing;
//! an inode cannot be impersonated without the kernel's help.
//!
//! What is refused to everyone else, each as a tamper record:
//! - an fd of guard's maps and programs (`bpf_map`, `bpf_prog`: every way
//!   to get one, by id, by pin, by creation, ends there), and of its links
//!   by id;
//! - unlinking or renaming guard's pins or their directory, writing or
//!   truncating guard's binary (`RULE_F_SELF` inode rules);
//! - unmounting the bpffs its pins live on, or any mount above it;
//! - ptrace, `/proc/<pid>/mem`, `process_vm_*` and `pidfd_getfd` on guard;
//! - loading or attaching a program that could override guard's verdicts:
//!   BPF LSM programs, `fmod_ret` tracing programs (which may rewrite any
//!   `security_*` function's result) and `freplace` extensions, unless the
//!   caller's executable is an allowed BPF tool (`TRUST_BPF_TOOL`).

use aya_ebpf::bindings::inode;
use guard_common::*;

use crate::{
    layout::{current_task, exe_inode, exe_key, off, read_u32, read_u64},
    maps::{active_gen, count, GUARD_OBJECTS, INODE_RULES, SELF, TOOL_MAPS, TRUSTED},
    report::{report, Rate, Subject},
};

pub const EPERM: i32 = 1;

/// Tamper records share one token bucket per opener cgroup.
const TAMPER_RATE: Rate = Rate { per_sec: 1000, burst: 1000 };

/// The `TRUSTED` key of an executable: (dev, 0, ino). The generation is
/// left out (userspace cannot read it on tmpfs); instead the entry is
/// removed when the trusted file is deleted (`evict::on_free`), so its inode
/// number cannot pass trust on.
#[inline(always)]
pub fn trust_key(mut key: FileKey) -> FileKey {
    key.generation = 0;
    key
}

/// The `TRUST_*` of `task`'s executable (0: none).
#[inline(always)]
pub unsafe fn task_trust(task: *const u8) -> u32 {
    trust_of(task)
}

#[inline(always)]
fn trust_of(task: *const u8) -> u32 {
    match unsafe { exe_key(task) } {
        Some(key) => unsafe { TRUSTED.get(trust_key(key)) }.copied().unwrap_or(0),
        None => 0,
    }
}

/// The `TRUST_*` of executable inode `exe` (0: none).
#[inline(always)]
pub unsafe fn inode_trust(exe: *const u8) -> u32 {
    unsafe { TRUSTED.get(trust_key(crate::layout::file_key(exe))) }.copied().unwrap_or(0)
}

/// The `TRUST_*` of a BTF-typed task's executable (0: none): the current
/// task, or a hook's task argument. Every trusted executable carries an
/// inode rule (`pins::arm` and the agent's handover tag it
/// `RULE_F_SELF_EXEC`, and nothing removes a rule from a live inode), so
/// an executable without one, nearly every process's, is answered by one
/// inode-storage lookup and the identity lookup is left for the rest.
#[inline(always)]
pub unsafe fn typed_task_trust(task: *const u8) -> u32 {
    let exe = unsafe { exe_inode(task) };
    if exe.is_null() || unsafe { INODE_RULES.get_ptr_mut(exe) }.is_null() {
        return 0;
    }
    trust_of(task)
}

/// The `TRUST_*` of the current task's executable (0: none).
#[inline(always)]
pub fn current_trust() -> u32 {
    unsafe { typed_task_trust(current_task()) }
}

#[inline(always)]
pub fn current_is_guard() -> bool {
    current_trust() == TRUST_GUARD
}

/// Refuses an attempt on guard: counted, reported, `-EPERM`.
#[inline(always)]
pub fn tamper(inode: *mut inode, subject: &Subject) -> i32 {
    count(CNT_TAMPER);
    count(CNT_DENIED);
    report(inode, SELF_POLICY_ID, TAMPER_RATE, DECISION_DENIED, subject);
    -EPERM
}

#[inline(always)]
fn only_guard(inode: *mut inode, subject: &Subject) -> i32 {
    if current_is_guard() { 0 } else { tamper(inode, subject) }
}

/// An access to one of guard's own inodes (`RULE_F_SELF`).
#[inline(always)]
pub fn judge_self_object(inode: *mut inode, flags: u32, subject: &Subject) -> i32 {
    if flags & RULE_F_SWAP != 0 {
        return unsafe { crate::swap::judge(inode, subject) };
    }
    if flags & RULE_F_SELF_EXEC != 0 {
        // The binary: anyone may run it and read it; only guard may change
        // it in place. Replacing it by rename is allowed (the new inode is
        // not trusted).
        let read_only = subject.access & (ACCESS_WRITE | ACCESS_ALTER) == 0;
        let replaced = subject.hook == HOOK_INODE_UNLINK || subject.hook == HOOK_INODE_RENAME;
        if read_only || replaced || subject.hook == HOOK_FILE_RECEIVE {
            return 0;
        }
    }
    only_guard(inode, subject)
}

/// guard opened its pin directory: remember the mount it lives on.
#[inline(always)]
pub unsafe fn anchor(file: *const u8) {
    if !current_is_guard() {
        return;
    }
    let mnt = unsafe { read_u64(file, off!(file_f_path) + off!(path_mnt)) };
    if let Some(state) = SELF.get_ptr_mut(0) {
        unsafe { (*state).pin_mnt = mnt };
    }
}

/// `bpf(2)`: refuses what could override guard's verdicts, guard's links
/// by id, and, while guard protects anything, every program load by
/// anyone but guard, an allowed BPF tool and systemd: any program type
/// loaded with CAP_PERFMON may read user memory (`bpf_probe_read_user`),
/// some need no attach at all, so the load is the one choke point. An
/// allowed tool's load is recorded (a `tamper` record, decision `audited`).
#[inline(always)]
pub unsafe fn on_bpf(cmd: u32, attr: *const u8) -> i32 {
    let dangerous = match cmd {
        BPF_PROG_LOAD => {
            let prog_type = unsafe { read_u32(attr, ATTR_PROG_TYPE) };
            let attach = unsafe { read_u32(attr, ATTR_EXPECTED_ATTACH_TYPE) };
            let overrides = prog_type == BPF_PROG_TYPE_LSM
                || prog_type == BPF_PROG_TYPE_EXT
                || (prog_type == BPF_PROG_TYPE_TRACING && attach == BPF_MODIFY_RETURN);
            if !overrides {
                return unsafe { on_prog_load(prog_type) };
            }
            true
        }
        BPF_LINK_CREATE => {
            let attach = unsafe { read_u32(attr, ATTR_LINK_CREATE_ATTACH_TYPE) };
            attach == BPF_LSM_MAC || attach == BPF_MODIFY_RETURN || attach == BPF_LSM_CGROUP
        }
        // With no tracepoint name, this attaches a tracing/LSM program
        // (the pre-link API for fentry, fmod_ret and LSM).
        BPF_RAW_TRACEPOINT_OPEN => (unsafe { read_u64(attr, ATTR_RAW_TP_NAME) }) == 0,
        BPF_LINK_GET_FD_BY_ID => {
            let id = unsafe { read_u32(attr, ATTR_GET_ID) };
            if unsafe { GUARD_OBJECTS.get(ObjKey { kind: OBJ_LINK, id }) }.is_some() {
                return only_guard(core::ptr::null_mut(), &bpf_subject(HOOK_BPF, cmd));
            }
            false
        }
        _ => false,
    };
    if !dangerous {
        return 0;
    }
    let trust = current_trust();
    if trust == TRUST_GUARD || trust == TRUST_BPF_TOOL {
        return 0;
    }
    tamper(core::ptr::null_mut(), &bpf_subject(HOOK_BPF, cmd))
}

/// `BPF_PROG_LOAD` of a program that cannot override guard (see `on_bpf`).
#[inline(always)]
unsafe fn on_prog_load(prog_type: u32) -> i32 {
    if active_gen() == 0 {
        return 0;
    }
    let trust = current_trust();
    if trust == TRUST_GUARD || trust == TRUST_SYSTEMD {
        return 0;
    }
    // detail: the command, and the program type above bit 16.
    let subject = Subject { detail: BPF_PROG_LOAD | prog_type << 16, ..Subject::new(HOOK_BPF, ACCESS_ALTER) };
    if trust == TRUST_BPF_TOOL {
        // Allowed, and recorded: the program may read any process's memory.
        report(core::ptr::null_mut(), SELF_POLICY_ID, TAMPER_RATE, DECISION_AUDITED, &subject);
        return 0;
    }
    tamper(core::ptr::null_mut(), &subject)
}

/// A new fd of a map (`bpf_map`) or program (`bpf_prog`) with kernel id
/// `id`: guard's own only for guard; while guard protects anything, any
/// program only for guard, allowed BPF tools and systemd (`BPF_PROG_GET_FD_BY_ID`
/// and `BPF_OBJ_GET` hand out programs already loaded), and a map that an
/// allowed tool or systemd holds only for them (its maps steer what its
/// programs read).
#[inline(always)]
pub fn on_object_fd(kind: u32, id: u32) -> i32 {
    let hook = if kind == OBJ_MAP { HOOK_BPF_MAP } else { HOOK_BPF_PROG };
    if unsafe { GUARD_OBJECTS.get(ObjKey { kind, id }) }.is_some() {
        return only_guard(core::ptr::null_mut(), &bpf_subject(hook, id));
    }
    if active_gen() == 0 {
        return 0;
    }
    let trust = current_trust();
    let trusted = trust == TRUST_GUARD || trust == TRUST_BPF_TOOL || trust == TRUST_SYSTEMD;
    if kind == OBJ_MAP {
        if trusted {
            if trust != TRUST_GUARD {
                let _ = TOOL_MAPS.insert(id, 1, 0);
            }
            return 0;
        }
        if unsafe { TOOL_MAPS.get(id) }.is_none() {
            return 0;
        }
    } else if trusted {
        return 0;
    }
    tamper(core::ptr::null_mut(), &bpf_subject(hook, id))
}

#[inline(always)]
fn bpf_subject(hook: u32, detail: u32) -> Subject {
    Subject { detail, ..Subject::new(hook, ACCESS_ALTER) }
}

/// `sb_umount(mnt)`: refused if `mnt` is the mount guard's pins live on,
/// or any mount above it (a lazy unmount of a parent drops it too).
#[inline(always)]
pub unsafe fn on_umount(target: u64) -> i32 {
    let Some(state) = SELF.get(0) else { return 0 };
    let pin = state.pin_mnt;
    if pin == 0 {
        return 0;
    }
    let mnt_off = off!(mount_mnt) as u64;
    let mut m = pin.wrapping_sub(mnt_off); // container_of(pin, struct mount, mnt)
    for _ in 0..32 {
        if m.wrapping_add(mnt_off) == target {
            return only_guard(core::ptr::null_mut(), &Subject::new(HOOK_SB_UMOUNT, ACCESS_ALTER));
        }
        let parent = unsafe { read_u64(m as *const u8, off!(mount_mnt_parent)) };
        if parent == 0 || parent == m {
            break;
        }
        m = parent;
    }
    0
}

/// ptrace-class access to a process running a trusted executable: only
/// guard may. Whoever controls such a process has its trust (guard's maps;
/// systemd's right to put processes into units), so for guard every mode is
/// refused (even reading `/proc/<pid>/fd`), for the others attach mode.
#[inline(always)]
pub unsafe fn on_ptrace_of(child: *const u8, target_tgid: u32, attach: bool) -> Option<i32> {
    let trust = unsafe { typed_task_trust(child) };
    if trust == 0 || (trust != TRUST_GUARD && !attach) {
        return None;
    }
    // Read mode (`/proc/<pid>/exe`, `/proc/<pid>/fd/N`, environ) is told
    // apart from attach mode (ptrace, mem) in the record: the journal's own
    // lookup of guard's executable is a read, and is not an alarm (see the
    // agent's journal writer).
    let access = if attach { ACCESS_ALTER } else { ACCESS_READ };
    let subject = Subject { target_tgid, ..Subject::new(HOOK_PTRACE, access) };
    Some(only_guard(core::ptr::null_mut(), &subject))
}

/// `bprm_check_security`, for executable inode `exe`: a traced process may
/// not run a trusted executable (the tracer would drive a trusted process).
#[inline(always)]
pub unsafe fn on_exec(exe: *const u8) -> i32 {
    let traced = unsafe { crate::layout::load_u32(current_task(), off!(task_ptrace)) } != 0;
    if !traced {
        return 0;
    }
    if unsafe { inode_trust(exe) } == 0 {
        return 0;
    }
    only_guard(exe as *mut inode, &Subject::new(HOOK_BPRM_CHECK, ACCESS_ALTER))
}
