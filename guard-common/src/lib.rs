//! The kernel/user contract of guard: every type that crosses between the eBPF
//! program (`guard-ebpf`) and the agent (`guard`) lives here, and nowhere else.
//!
//! Rules for this file:
//! - every type is `#[repr(C)]`, padded explicitly (`_pad*` fields), and has
//!   a size asserted at compile time so a change on one side cannot drift;
//! - no `bool` and no Rust enums: flags and kinds are plain integers with
//!   named constants below;
//! - map names are constants here, so a rename breaks the build, not a load.
#![no_std]

// ---------------------------------------------------------------- map names

/// `BPF_MAP_TYPE_INODE_STORAGE`: `InodeRule` attached to each protected inode.
pub const MAP_INODE_RULES: &str = "INODE_RULES";
/// `BPF_MAP_TYPE_ARRAY` of one `u32`: the policy generation in force (0:
/// none yet). A reload writes generation N+1 into the other bank (policy
/// ids, rule slots), then switches this one value: every decision reads it
/// once, so it is judged wholly by the old set or wholly by the new one.
/// Created `BPF_F_MMAPABLE`: the agent switches it with one atomic 4-byte
/// store through a shared mapping. (`BPF_MAP_UPDATE_ELEM` copies the value
/// with `memcpy`, which may store byte by byte: a decision could read a torn
/// generation, 0x1ff or 0 between 255 and 256, and find no slot.)
pub const MAP_ACTIVE: &str = "ACTIVE";
/// `BPF_F_MMAPABLE` (`include/uapi/linux/bpf.h`).
pub const BPF_F_MMAPABLE: usize = 1 << 10;
/// `BPF_MAP_TYPE_ARRAY` of `PolicyEntry`, indexed by policy id.
pub const MAP_POLICIES: &str = "POLICIES";
/// `BPF_MAP_TYPE_HASH`: `UidKey` -> `u32` (1): which UIDs a policy allows.
pub const MAP_ALLOWED_UIDS: &str = "ALLOWED_UIDS";
/// `BPF_MAP_TYPE_HASH`: a protected unit's cgroup id (and its subcgroups')
/// -> `UnitPolicy`.
pub const MAP_UNIT_CGROUPS: &str = "UNIT_CGROUPS";
/// `BPF_MAP_TYPE_RINGBUF` of `Event`.
pub const MAP_EVENTS: &str = "EVENTS";
/// `BPF_MAP_TYPE_PERCPU_ARRAY` of `u64` counters, indexed by `CNT_*`.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// `BPF_MAP_TYPE_LRU_HASH`: `RateKey` -> `RateState`.
pub const MAP_RATE: &str = "RATE";
/// `BPF_MAP_TYPE_HASH` (no prealloc): `FileKey` -> `InodeRule` for protected
/// inodes that were evicted from the inode cache while their file still
/// exists. `d_instantiate` gives the rule back when the inode is read again.
pub const MAP_EVICTED: &str = "EVICTED";
/// `BPF_MAP_TYPE_HASH`: `FileKey` of an executable -> `TRUST_*`.
pub const MAP_TRUSTED: &str = "TRUSTED";
/// `BPF_MAP_TYPE_HASH`: `ObjKey` -> 1 for every map, program and link of
/// this guard instance: no one but guard itself may get an fd of them.
pub const MAP_GUARD_OBJECTS: &str = "GUARD_OBJECTS";
/// `BPF_MAP_TYPE_ARRAY` of one `SelfState`.
pub const MAP_SELF: &str = "SELF";
/// `BPF_MAP_TYPE_PERCPU_ARRAY` of `PolicyStats`, indexed by policy id.
pub const MAP_POLICY_STATS: &str = "POLICY_STATS";
/// `BPF_MAP_TYPE_HASH`: `UnitName` (a protected unit's cgroup directory
/// name) -> `UnitPolicy`.
pub const MAP_UNIT_NAMES: &str = "UNIT_NAMES";
/// `BPF_MAP_TYPE_HASH`: cgroup id of a slice that holds protected units ->
/// that slice's depth below the root.
pub const MAP_CGROUP_PARENTS: &str = "CGROUP_PARENTS";
/// `BPF_MAP_TYPE_TASK_STORAGE`: a task's marks (`MARK_*`, a u32). Task
/// storage lives and dies with the task: no hook at exit, no capacity to
/// fill, and a task with no marks has no storage at all, so asking about a
/// bystander is a pointer test.
pub const MAP_TASK_MARKS: &str = "TASK_MARKS";
/// A task started into a cgroup by `clone3(CLONE_INTO_CGROUP)` from a
/// process that is not systemd, and its descendants: an outsider to every unit.
pub const MARK_TAINTED: u32 = 1 << 0;
/// systemd itself or a process systemd forked for a unit that has not yet
/// run anything but systemd's own executables. Together with the
/// executable's identity (`TRUST_SYSTEMD`) and UID 0 this is "systemd's
/// setup" of a unit: the only opener of `RULE_F_SETUP_ONLY` files.
pub const MARK_LINEAGE: u32 = 1 << 1;
/// `BPF_MAP_TYPE_HASH`: `ExeBinding` -> 1: the executables a policy with
/// `POLICY_F_EXE_BOUND` lets open its files.
pub const MAP_EXE_BINDINGS: &str = "EXE_BINDINGS";
/// `BPF_MAP_TYPE_LRU_HASH`: a protected unit's cgroup id -> the UID systemd
/// switched that activation to (`task_fix_setuid`): "the unit's own user"
/// (`POLICY_F_UNIT_USER`). Written by the kernel; by the agent only for a
/// unit that was already running when guard started.
pub const MAP_UNIT_OWNERS: &str = "UNIT_OWNERS";
/// `BPF_MAP_TYPE_HASH`: `BurstKey` -> `BurstState`: how many denied (or
/// audited) decisions each opener process had on each protected object, so
/// that repeated decisions become one record with a count (see `Event`).
pub const MAP_BURSTS: &str = "BURSTS";
/// `BPF_MAP_TYPE_HASH`: address of a `super_block` that systemd's setup
/// created -> `SetupSb`. systemd builds each unit's credentials on a
/// filesystem of their own (ramfs or tmpfs, mounted in a private namespace
/// up to v258, a detached `fsmount` from v259), so the regular files setup
/// creates on it are the unit's credentials from their first instant,
/// whatever their names. The entry goes with the superblock.
pub const MAP_SETUP_SBS: &str = "SETUP_SBS";
/// `BPF_MAP_TYPE_ARRAY`, one `MemoryDoors`: which lockdown reasons and
/// kernel file reads guard refuses while it protects anything (bit N is
/// the enum's value N, read from the running kernel's BTF by name).
pub const MAP_DOORS: &str = "DOORS";
/// `BPF_MAP_TYPE_LRU_HASH`: id of a BPF map an allowed BPF tool or systemd
/// holds -> 1. Nobody else may get an fd of it.
pub const MAP_TOOL_MAPS: &str = "TOOL_MAPS";
/// `BPF_MAP_TYPE_HASH`: kernel `dev_t` (`MAJOR << 20 | MINOR`) of each
/// active swap block device -> 1, kept current by the agent from
/// `/proc/swaps`. A block device node (`RULE_F_SWAP`) whose `i_rdev` is
/// here opens for reading to guard alone while guard protects anything.
pub const MAP_SWAP_DEVS: &str = "SWAP_DEVS";
/// Capacity of `SWAP_DEVS` (the kernel allows 32 swap areas at most).
pub const MAX_SWAP_DEVS: u32 = 64;

/// Program names (the Rust function names in guard-ebpf).
pub const PROG_FILE_OPEN: &str = "guard_file_open";
pub const PROG_FILE_RECEIVE: &str = "guard_file_receive";
pub const PROG_D_INSTANTIATE: &str = "guard_d_instantiate";
pub const PROG_INODE_RENAME: &str = "guard_inode_rename";
pub const PROG_INODE_UNLINK: &str = "guard_inode_unlink";
pub const PROG_PATH_TRUNCATE: &str = "guard_path_truncate";
pub const PROG_PTRACE: &str = "guard_ptrace_access_check";
pub const PROG_INODE_FREE: &str = "guard_inode_free_security";
pub const PROG_BPF: &str = "guard_bpf";
pub const PROG_BPF_MAP: &str = "guard_bpf_map";
pub const PROG_BPF_PROG: &str = "guard_bpf_prog";
pub const PROG_SB_UMOUNT: &str = "guard_sb_umount";
pub const PROG_KERNFS_MKDIR: &str = "guard_kernfs_init_security";
pub const PROG_TASK_ALLOC: &str = "guard_task_alloc";
pub const PROG_BPRM_CHECK: &str = "guard_bprm_check_security";
pub const PROG_TASK_FIX_SETUID: &str = "guard_task_fix_setuid";
pub const PROG_SB_ALLOC: &str = "guard_sb_alloc_security";
pub const PROG_SB_FREE: &str = "guard_sb_free_security";
pub const PROG_MOVE_MOUNT: &str = "guard_move_mount";
pub const PROG_LOCKED_DOWN: &str = "guard_locked_down";
pub const PROG_CRED_PREPARE: &str = "guard_cred_prepare";
pub const PROG_TASK_KILL: &str = "guard_task_kill";
pub const PROG_SIGIOTASK: &str = "guard_file_send_sigiotask";
pub const PROG_SETRLIMIT: &str = "guard_task_setrlimit";
pub const PROG_PERF_ALLOC: &str = "guard_perf_event_alloc";
pub const PROG_KERNEL_READ_FILE: &str = "guard_kernel_read_file";
pub const PROG_FILE_IOCTL: &str = "guard_file_ioctl";
pub const PROG_INODE_FOLLOW_LINK: &str = "guard_inode_follow_link";
pub const PROG_FILE_IOCTL_COMPAT: &str = "guard_file_ioctl_compat";
/// A `file_open` program that does nothing: the floor any BPF LSM pays (bench).
pub const PROG_EMPTY: &str = "guard_empty_file_open";
/// `bpf` as Linux 6.15 and later declare it, with a fourth `bool kernel`
/// parameter (loaded instead of `PROG_BPF` where the kernel's BTF says so).
pub const PROG_BPF_KFLAG: &str = "guard_bpf_kflag";

/// The floor program of a hook (`guard-ebpf/src/floor.rs`): attached by
/// `guard bench host` only, it returns 0 and reads nothing. Its name is
/// this prefix and the hook's name.
pub const FLOOR_PREFIX: &str = "guard_floor_";

/// Every program in the object, as (the enforcing program it stands for,
/// the ELF program, the number of parameters of the hook it reads, without
/// the LSM's return value). An LSM program's arguments are slots of its
/// context, and the previous verdict is the slot after the last parameter:
/// CO-RE does not relocate them, so a hook whose parameter list changed
/// between kernels has one program per shape. The agent loads the one whose
/// count equals the BTF prototype of `bpf_lsm_<hook>` on the running
/// kernel, and refuses to run where none does.
pub const PROGRAM_VARIANTS: [(&str, &str, usize); 30] = [
    (PROG_BPF, PROG_BPF, 3),
    (PROG_BPF, PROG_BPF_KFLAG, 4),
    (PROG_BPRM_CHECK, PROG_BPRM_CHECK, 1),
    (PROG_TASK_FIX_SETUID, PROG_TASK_FIX_SETUID, 3),
    (PROG_BPF_MAP, PROG_BPF_MAP, 2),
    (PROG_BPF_PROG, PROG_BPF_PROG, 1),
    (PROG_SB_UMOUNT, PROG_SB_UMOUNT, 2),
    (PROG_TASK_ALLOC, PROG_TASK_ALLOC, 2),
    (PROG_KERNFS_MKDIR, PROG_KERNFS_MKDIR, 2),
    (PROG_SB_FREE, PROG_SB_FREE, 1),
    (PROG_SB_ALLOC, PROG_SB_ALLOC, 1),
    (PROG_MOVE_MOUNT, PROG_MOVE_MOUNT, 2),
    (PROG_LOCKED_DOWN, PROG_LOCKED_DOWN, 1),
    (PROG_KERNEL_READ_FILE, PROG_KERNEL_READ_FILE, 3),
    (PROG_CRED_PREPARE, PROG_CRED_PREPARE, 3),
    (PROG_TASK_KILL, PROG_TASK_KILL, 4),
    (PROG_SIGIOTASK, PROG_SIGIOTASK, 3),
    (PROG_SETRLIMIT, PROG_SETRLIMIT, 3),
    (PROG_PERF_ALLOC, PROG_PERF_ALLOC, 1),
    (PROG_FILE_IOCTL, PROG_FILE_IOCTL, 3),
    (PROG_FILE_IOCTL_COMPAT, PROG_FILE_IOCTL_COMPAT, 3),
    (PROG_INODE_FOLLOW_LINK, PROG_INODE_FOLLOW_LINK, 3),
    (PROG_INODE_FREE, PROG_INODE_FREE, 1),
    (PROG_D_INSTANTIATE, PROG_D_INSTANTIATE, 2),
    (PROG_INODE_RENAME, PROG_INODE_RENAME, 4),
    (PROG_INODE_UNLINK, PROG_INODE_UNLINK, 2),
    (PROG_PATH_TRUNCATE, PROG_PATH_TRUNCATE, 1),
    (PROG_PTRACE, PROG_PTRACE, 2),
    (PROG_FILE_RECEIVE, PROG_FILE_RECEIVE, 1),
    (PROG_FILE_OPEN, PROG_FILE_OPEN, 1),
];

/// Every enforcing program with the LSM hook it attaches to, in attach
/// order. The self-protection hooks come first, so that by the time the
/// file hooks enforce, guard's own objects are already out of reach.
pub const ENFORCING_PROGRAMS: [(&str, &str); 29] = [
    (PROG_BPF, "bpf"),
    (PROG_BPRM_CHECK, "bprm_check_security"),
    (PROG_TASK_FIX_SETUID, "task_fix_setuid"),
    (PROG_BPF_MAP, "bpf_map"),
    (PROG_BPF_PROG, "bpf_prog"),
    (PROG_SB_UMOUNT, "sb_umount"),
    (PROG_TASK_ALLOC, "task_alloc"),
    (PROG_KERNFS_MKDIR, "kernfs_init_security"),
    (PROG_SB_FREE, "sb_free_security"),
    (PROG_SB_ALLOC, "sb_alloc_security"),
    (PROG_MOVE_MOUNT, "move_mount"),
    (PROG_LOCKED_DOWN, "locked_down"),
    (PROG_KERNEL_READ_FILE, "kernel_read_file"),
    (PROG_CRED_PREPARE, "cred_prepare"),
    (PROG_TASK_KILL, "task_kill"),
    (PROG_SIGIOTASK, "file_send_sigiotask"),
    (PROG_SETRLIMIT, "task_setrlimit"),
    (PROG_PERF_ALLOC, "perf_event_alloc"),
    (PROG_FILE_IOCTL, "file_ioctl"),
    (PROG_FILE_IOCTL_COMPAT, "file_ioctl_compat"),
    (PROG_INODE_FOLLOW_LINK, "inode_follow_link"),
    (PROG_INODE_FREE, "inode_free_security"),
    (PROG_D_INSTANTIATE, "d_instantiate"),
    (PROG_INODE_RENAME, "inode_rename"),
    (PROG_INODE_UNLINK, "inode_unlink"),
    (PROG_PATH_TRUNCATE, "path_truncate"),
    (PROG_PTRACE, "ptrace_access_check"),
    (PROG_FILE_RECEIVE, "file_receive"),
    (PROG_FILE_OPEN, "file_open"),
];

/// Name of the `.rodata` global holding `KernelLayout`.
pub const GLOBAL_LAYOUT: &str = "LAYOUT";

// ------------------------------------------------------------------ sizes

/// Policies are indexed 0..MAX_POLICIES in `POLICIES`: two banks of
/// `POLICIES_PER_BANK`, bank `gen & 1` holding generation `gen`'s set.
pub const MAX_POLICIES: u32 = 1024;
/// Most policies in one set.
pub const POLICIES_PER_BANK: u32 = MAX_POLICIES / 2;
/// Upper bound on (policy, uid) pairs across all policies.
pub const MAX_ALLOWED_UIDS: u32 = 16 * 1024;
/// Bytes of path carried in an event (NUL-terminated, truncated beyond).
pub const EVENT_PATH_LEN: usize = 256;
/// Length of `task->comm`.
pub const COMM_LEN: usize = 16;
/// Default ring buffer size in bytes (power of two, multiple of page size).
pub const DEFAULT_RINGBUF_BYTES: u32 = 1 << 22;
/// Entries in the rate-limit LRU.
pub const RATE_ENTRIES: u32 = 16 * 1024;
/// Evicted protected inodes remembered at once (allocated on use).
pub const MAX_EVICTED: u32 = 1 << 20;
/// Trusted executables (guard itself, plus `--allow-bpf-exe` tools).
pub const MAX_TRUSTED: u32 = 256;
/// guard's own maps, programs and links.
pub const MAX_GUARD_OBJECTS: u32 = 128;
/// Bytes of a unit name kept in `PolicyEntry` (for `guard status`).
pub const UNIT_NAME_LEN: usize = 64;
/// The policy id of guard's own objects in rules and records.
pub const SELF_POLICY_ID: u32 = u32::MAX;
/// Cgroups (a unit's own and its subcgroups) guard knows by id.
pub const MAX_UNIT_CGROUPS: u32 = 16 * 1024;
/// (policy, executable) pairs over all policies.
pub const MAX_EXE_BINDINGS: u32 = 4096;
/// Activations whose UID is remembered at once (`UNIT_OWNERS`; LRU).
pub const MAX_UNIT_OWNERS: u32 = 16 * 1024;
/// Superblocks systemd's setup made that are alive at once (a few per
/// running unit with credentials or a private /dev, /tmp, ...).
pub const MAX_SETUP_SBS: u32 = 16 * 1024;
/// BPF maps of allowed tools and systemd remembered at once (LRU).
pub const MAX_TOOL_MAPS: u32 = 16 * 1024;
/// Default size of `BURSTS`: (opener process, object, decision) keys tracked
/// at once (`guard run --max-openers` sets it at load). A decision whose key
/// finds no room is `CNT_UNTRACKED`: reported on its own, as before.
pub const DEFAULT_MAX_BURSTS: u32 = 16 * 1024;
/// Repeated decisions with the same `BurstKey` within this window of the
/// key's last record are folded into the next record (`CNT_COALESCED`). The
/// first decision after a quiet window is reported at once.
pub const BURST_WINDOW_NS: u64 = 1_000_000_000;

// --------------------------------------------------- inode storage value

/// The rule stored on a protected inode: one slot per bank, so that a new
/// policy set can be written beside the one in force and replace it in one
/// step (see `MAP_ACTIVE`).
///
/// Slot `b` belongs to generation `gen[b]` (whose bank, `gen & 1`, is `b`):
/// it counts only while that generation is the active one. 0 is an empty
/// slot; `GEN_ANY` counts in every generation (guard's own objects).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeRule {
    pub gen: [u32; 2],
    /// Index into `POLICIES` (within the slot's bank).
    pub policy_id: [u32; 2],
    /// `RULE_F_*` bits.
    pub flags: [u32; 2],
}

/// A slot valid in every generation.
pub const GEN_ANY: u32 = u32::MAX;

#[inline(always)]
unsafe fn vread(p: &u32) -> u32 {
    // SAFETY: `p` is a valid reference.
    unsafe { core::ptr::read_volatile(p) }
}

/// The bank of a generation.
#[inline(always)]
pub const fn bank(gen: u32) -> usize {
    (gen & 1) as usize
}

impl InodeRule {
    /// The same rule in every generation (guard's own objects).
    pub const fn any(policy_id: u32, flags: u32) -> Self {
        Self { gen: [GEN_ANY; 2], policy_id: [policy_id; 2], flags: [flags; 2] }
    }

    /// The rule of a unit's file in every generation the unit is known in.
    #[inline(always)]
    pub fn for_unit(unit: &UnitPolicy, flags: u32) -> Self {
        Self { gen: unit.gen, policy_id: unit.policy_id, flags: [flags; 2] }
    }

    /// (policy id, flags) in generation `gen`, if the inode is protected then.
    ///
    /// Written with constant indices and volatile reads on purpose: for
    /// `x[gen & 1]` LLVM computes the field's address as `base | (b << 2)`,
    /// and the BPF verifier refuses bitwise arithmetic on pointers.
    #[inline(always)]
    pub fn slot(&self, gen: u32) -> Option<(u32, u32)> {
        let valid = |g: u32| g != 0 && (g == gen || g == GEN_ANY);
        // SAFETY: reads of fields of a valid reference.
        unsafe {
            if valid(vread(&self.gen[0])) {
                return Some((vread(&self.policy_id[0]), vread(&self.flags[0])));
            }
            if valid(vread(&self.gen[1])) {
                return Some((vread(&self.policy_id[1]), vread(&self.flags[1])));
            }
        }
        None
    }

    /// Sets generation `gen`'s slot.
    #[inline(always)]
    pub fn set(&mut self, gen: u32, policy_id: u32, flags: u32) {
        let b = bank(gen);
        self.gen[b] = gen;
        self.policy_id[b] = policy_id;
        self.flags[b] = flags;
    }

    /// Sets generation `gen`'s slot as `set` does, keeping the kernel's
    /// marks that belong to the inode rather than to a policy
    /// (`RULE_F_SETUP_FS`): the agent's writes never take them away.
    #[inline(always)]
    pub fn set_keeping_marks(&mut self, gen: u32, policy_id: u32, flags: u32) {
        let marks = self.raw_flags() & RULE_F_SETUP_FS;
        self.set(gen, policy_id, flags | marks);
    }

    /// The flags of both slots, in use or not, OR'ed (`RULE_F_SETUP_FS`).
    #[inline(always)]
    pub fn raw_flags(&self) -> u32 {
        self.flags[0] | self.flags[1]
    }

    /// The flags of every slot that is in use, OR'ed.
    #[inline(always)]
    pub fn any_flags(&self) -> u32 {
        (if self.gen[0] != 0 { self.flags[0] } else { 0 }) | (if self.gen[1] != 0 { self.flags[1] } else { 0 })
    }
}

/// Value of `DOORS` (see `MAP_DOORS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryDoors {
    /// `enum lockdown_reason` values refused to everyone but guard.
    pub lockdown_refused: u64,
    /// Of those, the ones an allowed BPF tool may still pass (its programs
    /// read kernel memory, attach kprobes, open perf events, use tracefs).
    pub lockdown_tools: u64,
    /// Of those, the ones systemd may pass (its programs read kernel memory).
    pub lockdown_systemd: u64,
    /// `enum kernel_read_file_id` values refused (kexec images).
    pub read_file_refused: u64,
    /// Kernel address of `core_pattern` (from `/proc/kallsyms`), read when a
    /// unit that keeps cores (`POLICY_F_KEEP_CORES`) dumps one; 0: unknown,
    /// every core of a protected unit is refused.
    pub core_pattern: u64,
}

/// Value of `SETUP_SBS`: whose filesystem it is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupSb {
    /// The unit (`SETUP_SB_UNIT`), as `UNIT_CGROUPS` had it.
    pub unit: UnitPolicy,
    /// `SETUP_SB_*`.
    pub state: u32,
    /// `SETUP_SB_F_*`.
    pub flags: u32,
}

/// Made by setup in a protected unit's cgroup: its files are that unit's.
pub const SETUP_SB_UNIT: u32 = 1;
/// Made by systemd outside every unit (PID 1's `(sd-refresh-creds)`), not
/// attached yet: its files are closed to everyone.
pub const SETUP_SB_PENDING: u32 = 2;
/// Attached to the credentials directory of a unit with no policy.
pub const SETUP_SB_UNPROTECTED: u32 = 3;
/// A file on it could not be tagged: it may not be attached (the unit fails
/// to start or refresh; closed).
pub const SETUP_SB_F_UNTAGGED: u32 = 1;

/// Value of `UNIT_NAMES` and `UNIT_CGROUPS`: the unit's policy id in each
/// generation it has a policy in (0 in `gen`: none in that bank).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitPolicy {
    pub gen: [u32; 2],
    pub policy_id: [u32; 2],
}

impl UnitPolicy {
    /// See `InodeRule::slot` for why it reads this way.
    #[inline(always)]
    pub fn id(&self, gen: u32) -> Option<u32> {
        if gen == 0 {
            return None;
        }
        // SAFETY: reads of fields of a valid reference.
        unsafe {
            if vread(&self.gen[0]) == gen {
                return Some(vread(&self.policy_id[0]));
            }
            if vread(&self.gen[1]) == gen {
                return Some(vread(&self.policy_id[1]));
            }
        }
        None
    }
}

/// Inodes created in (or renamed into) this directory inherit the rule.
pub const RULE_F_INHERIT: u32 = 1 << 0;
/// This inode is a directory. Opening it (listing names) is not judged:
/// the secret is file contents, and every file opened in it is judged on
/// its own. Alterations (rename, unlink of entries' inodes) still are.
pub const RULE_F_DIR: u32 = 1 << 1;
/// One of guard's own objects (a pin, the pin directory, guard's binary):
/// judged by "is the caller guard" rather than by a policy; refusals are
/// tamper records. `policy_id` is `SELF_POLICY_ID`.
pub const RULE_F_SELF: u32 = 1 << 2;
/// With `RULE_F_SELF`: guard's executable. Anyone may run it (read-only
/// opens); only guard may write or truncate it in place. Unlink and rename
/// stay allowed (a package upgrade renames a new binary over it; the new
/// inode is not trusted until guard hands trust over, see the README).
pub const RULE_F_SELF_EXEC: u32 = 1 << 3;
/// With `RULE_F_SELF`: the pin directory. When guard itself opens it, the
/// program records the mount it lives on, so that unmounting that mount,
/// or any mount above it, can be refused.
pub const RULE_F_ANCHOR: u32 = 1 << 4;
/// A protected unit's (or its subcgroup's) `cgroup.procs` or
/// `cgroup.threads`: opening it for writing (joining the cgroup) is for
/// systemd and for the unit itself, nobody else.
pub const RULE_F_CGROUP_PROCS: u32 = 1 << 5;
/// Only systemd's setup of the policy's unit (or of any unit, with
/// `POLICY_F_ANY_UNIT`) may open it: an encrypted credential's `.cred`
/// source, the host key `/var/lib/systemd/credential.secret`. Not the
/// service itself, not root elsewhere.
pub const RULE_F_SETUP_ONLY: u32 = 1 << 6;
/// A credential file systemd's setup created for a protected unit, tagged
/// by the kernel the instant it was created: a regular file that setup
/// makes on a filesystem setup itself created (`SETUP_SBS`). Judged like
/// any protected file.
pub const RULE_F_CREDENTIAL: u32 = 1 << 7;
/// With `RULE_F_CREDENTIAL`: the file's unit is its superblock's
/// (`SETUP_SBS`), learned only when systemd attaches that filesystem to a
/// unit's credentials directory (a credentials refresh by a helper of PID 1,
/// outside every unit). Until then nobody may open it; attached to a unit
/// with no policy, it is not judged.
pub const RULE_F_SB_OWNED: u32 = 1 << 8;
/// A file under `/proc/<pid>/` that shows a protected unit's process's
/// memory (`environ`, `maps`, `pagemap`, ...) or changes what its core
/// holds (`coredump_filter`), tagged by the kernel when procfs instantiates
/// it. Judged like any of the unit's files. (From Linux 6.15, CAP_PERFMON
/// passes the read-mode `ptrace_access_check` of these without asking
/// the LSM, so the check moves to the open.) Also the process's
/// `fd/<N>` and `map_files/<range>` links, judged when they are followed
/// (`inode_follow_link`): following one reopens what the process holds.
pub const RULE_F_PROC: u32 = 1 << 9;
/// With `RULE_F_SELF` (`GEN_ANY`): a block device node, or a swap file,
/// that may be an active swap area. Judged by what it is at open: a block
/// node whose `i_rdev` is in `SWAP_DEVS`, a file with `S_SWAPFILE`; while
/// guard protects anything, only guard and the kernel's own `swapon(2)` /
/// `swapoff(2)` may open it for reading (swapped-out memory of the units
/// reads back in plaintext there, dm-crypt and zram included). The kernel
/// tags every block node when it is instantiated (so a node made with
/// `mknod` is one), the agent the nodes under `/dev` and the swap files.
pub const RULE_F_SWAP: u32 = 1 << 10;
/// A directory of a filesystem systemd's setup created (`SETUP_SBS`): its
/// root, tagged by the kernel when the filesystem instantiates it, and
/// every directory made below it. Carried in the raw `flags` of both slots
/// with or without a generation (it protects nothing by itself), it is what
/// sends a new name in the directory through the credential check
/// (`systemd::on_instantiate`): on tmpfs and ramfs, `d_instantiate` asks
/// nothing more of a name whose directory has no rule at all.
pub const RULE_F_SETUP_FS: u32 = 1 << 11;

// --------------------------------------------------------- policy table

/// One policy's view in the kernel.
///
/// `mode == MODE_UNUSED` (an all-zero slot) or `cgroup_id == 0` (unit not
/// running) can never match an opener: such a policy denies everyone.
/// That is the safe direction: a stopped unit's files stay closed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyEntry {
    /// cgroup v2 id (cgroupfs directory inode) of the unit's cgroup; 0 while it is not running.
    pub cgroup_id: u64,
    /// Depth of that cgroup below the root (`/` = 0, `/system.slice/x.service` = 2).
    pub cgroup_level: u32,
    /// `MODE_*`.
    pub mode: u32,
    /// Records per second allowed per (policy, opener cgroup); 0 = no records at all.
    pub rate_per_sec: u32,
    /// Records allowed in one burst above that rate.
    pub rate_burst: u32,
    /// Inodes the agent tagged for this policy (the kernel adds what it
    /// inherits and subtracts what is deleted, in `PolicyStats`).
    pub agent_tagged: u64,
    /// The unit's name, NUL-padded (truncated beyond `UNIT_NAME_LEN`), so
    /// that `guard status` can name what the kernel enforces with no agent.
    pub unit: [u8; UNIT_NAME_LEN],
    /// `POLICY_F_*`.
    pub flags: u32,
    pub _pad: u32,
}

impl Default for PolicyEntry {
    fn default() -> Self {
        Self {
            cgroup_id: 0,
            cgroup_level: 0,
            mode: MODE_UNUSED,
            rate_per_sec: 0,
            rate_burst: 0,
            agent_tagged: 0,
            unit: [0; UNIT_NAME_LEN],
            flags: 0,
            _pad: 0,
        }
    }
}

/// The unit's own user (`allow_users = ["@unit"]`): whatever UID systemd
/// picked for this activation (`DynamicUser=`) or `User=` names.
pub const POLICY_F_UNIT_USER: u32 = 1 << 0;
/// Openers must also run one of the policy's executables (`EXE_BINDINGS`).
pub const POLICY_F_EXE_BOUND: u32 = 1 << 1;
/// `unit = "*"`: the policy's `RULE_F_SETUP_ONLY` files are for systemd's
/// setup of every unit (the credential host key).
pub const POLICY_F_ANY_UNIT: u32 = 1 << 2;
/// `core_dumps = "keep"`: a core dump of the unit's process is allowed when
/// `core_pattern` is a plain file, and the core is tagged for the unit as
/// it is created.
pub const POLICY_F_KEEP_CORES: u32 = 1 << 3;

/// Key of `EXE_BINDINGS`: a policy and an executable's identity (generation
/// left out, as for `TRUSTED`; the agent re-binds when the path changes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExeBinding {
    pub policy_id: u32,
    pub dev: u32,
    pub ino: u64,
}

pub const MODE_UNUSED: u32 = 0;
pub const MODE_ENFORCE: u32 = 1;
pub const MODE_AUDIT: u32 = 2;

/// Key of `ALLOWED_UIDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UidKey {
    pub policy_id: u32,
    pub uid: u32,
}

// -------------------------------------------------------- rate limiting

/// Key of `RATE`: one token bucket per (policy, opener cgroup).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateKey {
    pub cgroup_id: u64,
    pub policy_id: u32,
    pub _pad: u32,
}

/// Token bucket state. Tokens are scaled by `RATE_SCALE` for sub-token precision.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    pub last_ns: u64,
    pub tokens: u64,
}

pub const RATE_SCALE: u64 = 1000;

// ------------------------------------------------------- self-protection

/// Identity of a file that survives inode eviction: the superblock's
/// `dev_t`, the inode's generation and number. The generation changes when
/// an inode number is reused (ext4, xfs, btrfs, tmpfs), so a deleted file's
/// rule never passes to an unrelated new file with the same number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Kernel `dev_t` (`MAJOR << 20 | MINOR`).
    pub dev: u32,
    pub generation: u32,
    pub ino: u64,
}

/// `TRUSTED` values.
/// guard's own binary: may reach guard's maps, programs and pins.
pub const TRUST_GUARD: u32 = 1;
/// A BPF security tool the admin allowed (`--allow-bpf-exe`): may load and
/// attach LSM and `fmod_ret` programs, but not touch guard's objects.
pub const TRUST_BPF_TOOL: u32 = 2;
/// systemd (PID 1's executable, `systemd-executor`; `--cgroup-writer`): may
/// put processes into protected units' cgroups and create them.
pub const TRUST_CGROUP_WRITER: u32 = 3;
/// systemd itself (PID 1's executable, `systemd-executor`): a cgroup writer,
/// and, in its own lineage, as UID 0, in a unit's cgroup, that unit's setup.
pub const TRUST_SYSTEMD: u32 = 4;

/// Key of `UNIT_NAMES`: a cgroup directory name, NUL-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnitName {
    pub name: [u8; UNIT_NAME_LEN],
}

/// `clone3`'s `CLONE_INTO_CGROUP` (include/uapi/linux/sched.h).
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `s_magic` of cgroup2.
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// Key of `GUARD_OBJECTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ObjKey {
    /// `OBJ_*`.
    pub kind: u32,
    /// The kernel's id of the map, program or link.
    pub id: u32,
}

pub const OBJ_MAP: u32 = 1;
pub const OBJ_PROG: u32 = 2;
pub const OBJ_LINK: u32 = 3;

/// The one entry of `SELF`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelfState {
    /// Kernel address of the `struct vfsmount` the pins live on, recorded
    /// by the program when guard opens its pin directory (0: not yet).
    /// Only ever compared, never dereferenced by userspace.
    pub pin_mnt: u64,
    /// Hash of the policy set (and trusted executables) this instance
    /// enforces, so a restarted agent knows whether it can adopt it as it is.
    pub policy_hash: u64,
    /// Hash of the eBPF object and kernel layout this instance runs.
    pub object_hash: u64,
}

/// Per policy, per CPU: what the kernel did to the set of protected inodes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// New inodes that inherited protection from a protected directory.
    pub inherited: u64,
    /// Protected inodes whose file was deleted (or whose in-memory
    /// filesystem went away): no longer protected, nothing to protect.
    pub deleted: u64,
    /// Protected inodes evicted from the cache whose rule was kept in `EVICTED`.
    pub evicted: u64,
    /// Evicted inodes read back in and given their rule again.
    pub restored: u64,
    /// Decisions on this policy's files (and unit), by outcome.
    pub allowed: u64,
    pub denied: u64,
    /// Attempts to join the unit's cgroup refused (cgroup.procs, mkdir,
    /// or a task planted with `CLONE_INTO_CGROUP` judged as an outsider).
    pub join_refused: u64,
    /// Credential files systemd's setup created for the unit, tagged by the
    /// kernel as they were created (`RULE_F_CREDENTIAL`).
    pub credentials: u64,
}

// -------------------------------------------------------------- counters

/// Indices into the per-CPU `COUNTERS` array. The agent sums over CPUs.
///
/// Invariant, exact by construction (each denied or audited decision
/// increments exactly one of the four right-hand counters):
/// `CNT_DENIED + CNT_AUDITED == CNT_EVENTS_SENT + CNT_COALESCED + CNT_DROP_RINGBUF + CNT_DROP_RATELIMIT`.
///
/// Per opener: a decision whose `BurstKey` is in `BURSTS` is counted in its
/// `BurstState::total`, so a dropped record loses no count: the next record
/// for the key, or the agent's flush of the table, carries it. Only
/// `CNT_LOST` decisions (untracked *and* dropped) are missing from the feed's
/// per-opener totals.
pub const CNT_PROTECTED_HITS: u32 = 0;
pub const CNT_ALLOWED: u32 = 1;
pub const CNT_DENIED: u32 = 2;
pub const CNT_AUDITED: u32 = 3;
pub const CNT_EVENTS_SENT: u32 = 4;
pub const CNT_DROP_RINGBUF: u32 = 5;
pub const CNT_DROP_RATELIMIT: u32 = 6;
/// A protected inode named a policy slot that was empty, or a read failed: denied.
pub const CNT_INTERNAL_ERRORS: u32 = 7;
/// New inodes tagged because they were created in / renamed into a protected directory.
pub const CNT_INHERITED: u32 = 8;
/// An earlier LSM had already denied; its verdict was passed through.
pub const CNT_PASSED_THROUGH: u32 = 9;
/// Attempts on guard itself (its maps, programs, pins, binary, process, or
/// a foreign LSM / fmod_ret program) refused. Also counted in `CNT_DENIED`.
pub const CNT_TAMPER: u32 = 10;
/// A protected inode was evicted but its rule could not be remembered
/// (`EVICTED` full): that file is no longer protected. Must stay 0.
pub const CNT_EVICT_LOST: u32 = 11;
/// Decisions folded into a later record of the same `BurstKey` (within
/// `BURST_WINDOW_NS` of the key's last record).
pub const CNT_COALESCED: u32 = 12;
/// Decisions whose `BurstKey` found no room in `BURSTS` (reported one by one).
pub const CNT_UNTRACKED: u32 = 13;
/// Untracked decisions whose record was also dropped: absent from every
/// per-opener total of the feed (still in `CNT_DENIED`/`CNT_AUDITED`).
pub const CNT_LOST: u32 = 14;
pub const CNT_MAX: u32 = 15;

pub const COUNTER_NAMES: [&str; CNT_MAX as usize] = [
    "protected_hits",
    "allowed",
    "denied",
    "audited",
    "events_sent",
    "dropped_ringbuf_full",
    "dropped_rate_limited",
    "internal_errors",
    "inherited",
    "passed_through",
    "tamper_denied",
    "evicted_rule_lost",
    "coalesced",
    "untracked",
    "lost",
];

// ------------------------------------------------------------ coalescing

/// Key of `BURSTS`: one opener process, one protected object, one decision.
/// The process is (tgid, its leader's `start_boottime`), so a reused pid is
/// a new key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BurstKey {
    /// The file's inode number; for routes without a file, `target_tgid << 32 | detail`.
    pub ino: u64,
    /// `task->group_leader->start_boottime` of the opener (ns since boot).
    pub start_ns: u64,
    pub dev: u32,
    pub tgid: u32,
    pub policy_id: u32,
    pub hook: u32,
    pub access: u32,
    pub decision: u32,
}

/// Value of `BURSTS`. `total` is exact (atomic add); the times are kept by
/// whichever thread of the process decided last.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BurstState {
    /// Decisions with this key since it was created.
    pub total: u64,
    /// `total` as of the last record the kernel submitted for the key.
    pub sent_total: u64,
    /// When the kernel last submitted a record for the key (0: never).
    pub sent_ns: u64,
    /// The first decision not yet in a submitted record, or after a quiet
    /// window (boot ns).
    pub first_ns: u64,
    /// The latest decision (boot ns).
    pub last_ns: u64,
    /// The opener as of its first decision with this key (for the records
    /// the agent writes from the table when no kernel record carried them).
    pub cgroup_id: u64,
    pub exe_ino: u64,
    pub exe_dev: u32,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub target_tgid: u32,
    pub detail: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}

// ----------------------------------------------------------------- events

/// One record in the `EVENTS` ring buffer: a denied (or audited) access,
/// standing for every decision of its `BurstKey` since the key's previous
/// record (see `total`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// `bpf_ktime_get_boot_ns()` (CLOCK_BOOTTIME).
    pub ts_boot_ns: u64,
    /// The opener's cgroup v2 id.
    pub cgroup_id: u64,
    /// Inode number of the protected file.
    pub ino: u64,
    /// Inode number of the opener's executable (0 if unknown).
    pub exe_ino: u64,
    /// `BurstState::total` after this decision: the record stands for
    /// `total` minus the total of the key's previous record. 0: the key was
    /// untracked (`CNT_UNTRACKED`); the record stands for this decision alone.
    pub total: u64,
    /// The first decision this record stands for (boot ns).
    pub first_ns: u64,
    /// `BurstKey::start_ns` of the opener.
    pub start_ns: u64,
    /// Kernel `dev_t` of the file's superblock (`MAJOR << 20 | MINOR`).
    pub dev: u32,
    /// Kernel `dev_t` of the executable's superblock.
    pub exe_dev: u32,
    /// Thread id (kernel pid).
    pub pid: u32,
    /// Process id (kernel tgid).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub policy_id: u32,
    /// `ACCESS_*` bits.
    pub access: u32,
    /// `DECISION_*`.
    pub decision: u32,
    /// `HOOK_*`: which route was judged.
    pub hook: u32,
    /// Bytes written into `path` by `bpf_d_path` including the NUL, or a negative errno
    /// (0: the hook has no path to give; the agent fills it from what it tagged).
    pub path_len: i32,
    /// For `HOOK_PTRACE`: the tgid of the process that was to be accessed; else 0.
    pub target_tgid: u32,
    /// Hook-specific detail: for `HOOK_BPF` the `bpf(2)` command, for
    /// `HOOK_BPF_MAP`/`HOOK_BPF_PROG` the object's id, else 0.
    pub detail: u32,
    pub comm: [u8; COMM_LEN],
    pub path: [u8; EVENT_PATH_LEN],
}

pub const ACCESS_READ: u32 = 1 << 0;
pub const ACCESS_WRITE: u32 = 1 << 1;
/// Not an open: an alteration (unlink, rename, truncate) or a process access (ptrace).
pub const ACCESS_ALTER: u32 = 1 << 2;

pub const DECISION_DENIED: u32 = 1;
pub const DECISION_AUDITED: u32 = 2;

pub const HOOK_FILE_OPEN: u32 = 1;
pub const HOOK_FILE_RECEIVE: u32 = 2;
pub const HOOK_INODE_UNLINK: u32 = 3;
pub const HOOK_INODE_RENAME: u32 = 4;
pub const HOOK_PATH_TRUNCATE: u32 = 5;
pub const HOOK_PTRACE: u32 = 6;
pub const HOOK_BPF: u32 = 7;
pub const HOOK_BPF_MAP: u32 = 8;
pub const HOOK_BPF_PROG: u32 = 9;
pub const HOOK_SB_UMOUNT: u32 = 10;
/// `inode_mkdir` in cgroupfs: where earlier versions judged what
/// `HOOK_KERNFS_MKDIR` now does. Kept, so that older records still decode.
pub const HOOK_INODE_MKDIR: u32 = 11;
pub const HOOK_BPRM_CHECK: u32 = 12;

pub const HOOK_LOCKED_DOWN: u32 = 13;
/// A core dump of a protected unit's process (judged at `cred_prepare`):
/// `detail` is `COREDUMP_KEPT` for a core the policy keeps (decision
/// audited: allowed, recorded), else 0 (refused).
pub const HOOK_COREDUMP: u32 = 14;
/// `Event::detail` of a `HOOK_COREDUMP` record: the core goes to a file,
/// tagged for the unit.
pub const COREDUMP_KEPT: u32 = 1;
pub const HOOK_TASK_KILL: u32 = 15;
pub const HOOK_SIGIOTASK: u32 = 16;
pub const HOOK_SETRLIMIT: u32 = 17;
pub const HOOK_PERF: u32 = 18;
pub const HOOK_KERNEL_READ_FILE: u32 = 19;
/// `file_ioctl`: `DM_TABLE_STATUS` with `DM_STATUS_TABLE_FLAG` (a device
/// mapper table: dm-crypt's key).
pub const HOOK_FILE_IOCTL: u32 = 20;
/// `inode_follow_link`: a `/proc/<pid>/fd/N` or `map_files/` link of a
/// protected unit's process followed from outside it (a reopen of what
/// the process holds: a memfd, a pipe, a deleted file).
pub const HOOK_FOLLOW_LINK: u32 = 21;
/// `file_ioctl_compat`: the same request from a 32-bit process (from
/// Linux 6.8, and in Debian's 6.1 by backport, compat ioctls reach this
/// hook instead of `file_ioctl`).
pub const HOOK_FILE_IOCTL_COMPAT: u32 = 22;
/// `kernfs_init_security`: a new cgroup directory, made by `mkdir(2)` in a
/// protected unit's cgroup or with a protected unit's name under its slice.
/// The event has no inode: `target_tgid << 32 | detail` is the id of the
/// cgroup it was to be made in (the record's `ino`, `dev` 0). The caller sees
/// `ENOMEM`: kernfs turns any refusal of this hook into that.
pub const HOOK_KERNFS_MKDIR: u32 = 23;

pub const HOOK_NAMES: [&str; 24] = [
    "unknown",
    "file_open",
    "file_receive",
    "inode_unlink",
    "inode_rename",
    "path_truncate",
    "ptrace_access_check",
    "bpf",
    "bpf_map",
    "bpf_prog",
    "sb_umount",
    "inode_mkdir",
    "bprm_check_security",
    "locked_down",
    "coredump",
    "task_kill",
    "file_send_sigiotask",
    "task_setrlimit",
    "perf_event_alloc",
    "kernel_read_file",
    "file_ioctl",
    "inode_follow_link",
    "file_ioctl_compat",
    "kernfs_init_security",
];

/// `DM_TABLE_STATUS`: `_IOWR(0xfd, 12, struct dm_ioctl)` (312 bytes), the
/// ioctl behind `dmsetup table` and `dmsetup status`
/// (`include/uapi/linux/dm-ioctl.h`).
pub const DM_TABLE_STATUS: u32 = 0xc138_fd0c;
/// Offset of `flags` in `struct dm_ioctl`.
pub const DM_IOCTL_FLAGS: usize = 28;
/// `DM_STATUS_TABLE_FLAG`: return the table (dm-crypt prints its key in
/// it; `dmsetup` blanks it unless `--showkeys`, the kernel never does).
pub const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;

// ------------------------------------------------------------- bpf(2) ABI
// Stable UAPI values from include/uapi/linux/bpf.h, used by the `bpf` hook.

pub const BPF_PROG_LOAD: u32 = 5;
pub const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;
pub const BPF_LINK_CREATE: u32 = 28;
pub const BPF_LINK_GET_FD_BY_ID: u32 = 30;
pub const BPF_PROG_TYPE_TRACING: u32 = 26;
pub const BPF_PROG_TYPE_EXT: u32 = 28;
pub const BPF_PROG_TYPE_LSM: u32 = 29;
pub const BPF_MODIFY_RETURN: u32 = 26;
pub const BPF_LSM_MAC: u32 = 27;
pub const BPF_LSM_CGROUP: u32 = 43;
/// Offsets in `union bpf_attr`: `prog_type` and `expected_attach_type` of
/// `BPF_PROG_LOAD`; `link_create.attach_type`; `raw_tracepoint.name`;
/// the id of `BPF_*_GET_FD_BY_ID`.
pub const ATTR_PROG_TYPE: usize = 0;
pub const ATTR_EXPECTED_ATTACH_TYPE: usize = 68;
pub const ATTR_LINK_CREATE_ATTACH_TYPE: usize = 8;
pub const ATTR_RAW_TP_NAME: usize = 0;
pub const ATTR_GET_ID: usize = 0;

/// `s_magic` of filesystems whose inodes are never evicted while the file
/// exists: an inode freed there is a file that is gone.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;
pub const PROC_SUPER_MAGIC: u64 = 0x9fa0;
pub const RAMFS_MAGIC: u64 = 0x8584_58f6;
pub const SOCKFS_MAGIC: u64 = 0x534f_434b;
pub const PIPEFS_MAGIC: u64 = 0x5049_5045;
pub const ANON_INODE_FS_MAGIC: u64 = 0x0904_1934;

// ----------------------------------------------------- kernel struct layout

/// Byte offsets of the kernel struct fields guard reads, taken by the agent
/// from the running kernel's BTF (`/sys/kernel/btf/vmlinux`) and written into
/// the program's `.rodata` before load.
///
/// Rust eBPF has no CO-RE relocations; because `.rodata` is frozen before
/// the program is verified, the verifier sees these as constants, so typed
/// pointer walks (`file->f_inode`) stay typed and checked.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    pub file_f_inode: u32,
    pub file_f_path: u32,
    pub file_f_mode: u32,
    pub inode_i_ino: u32,
    pub inode_i_mode: u32,
    pub inode_i_sb: u32,
    pub super_block_s_dev: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_inode: u32,
    pub path_dentry: u32,
    pub task_cred: u32,
    pub task_mm: u32,
    pub task_cgroups: u32,
    pub task_tgid: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub mm_exe_file: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    pub inode_i_generation: u32,
    pub inode_i_nlink: u32,
    pub super_block_s_magic: u32,
    pub path_mnt: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub bpf_map_id: u32,
    pub bpf_prog_aux: u32,
    pub bpf_prog_aux_id: u32,
    pub inode_i_private: u32,
    pub kernfs_node_parent: u32,
    pub kernfs_node_name: u32,
    pub dentry_d_name: u32,
    pub qstr_name: u32,
    pub task_ptrace: u32,
    pub linux_binprm_file: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub vfsmount_mnt_sb: u32,
    pub task_real_parent: u32,
    pub proc_inode_vfs_inode: u32,
    pub proc_inode_pid: u32,
    pub pid_tasks: u32,
    pub task_pid_links: u32,
    pub task_flags: u32,
    pub perf_event_attr: u32,
    pub perf_event_hw: u32,
    pub hw_perf_event_target: u32,
    pub inode_i_rdev: u32,
    pub inode_i_flags: u32,
    pub kernfs_node_flags: u32,
    /// `kernfs_node.dir.root`: the hierarchy a directory node belongs to.
    pub kernfs_node_dir_root: u32,
    /// `LAYOUT_MAGIC` once filled in by the agent. Anything else makes every
    /// protected access an internal error (denied), never a wild read.
    pub magic: u32,
}

/// `KernelLayout::magic` of a layout the agent filled in.
pub const LAYOUT_MAGIC: u32 = 0x6775_6172;
/// `KernelLayout::magic` as compiled into the object (non-zero keeps it in `.rodata`).
pub const LAYOUT_UNFILLED: u32 = 0xffff_ffff;

/// `S_IFMT` / `S_IFDIR` / `S_IFREG` / `S_IFLNK` (stable ABI).
pub const S_IFMT: u16 = 0o170000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFLNK: u16 = 0o120000;
pub const S_IFBLK: u16 = 0o060000;
/// `KERNFS_DIR` in `kernfs_node->flags` (`enum kernfs_node_type`, 0x1 since
/// kernfs began in 3.14).
pub const KERNFS_DIR: u16 = 0x0001;
/// `S_SWAPFILE` in `inode->i_flags` (`include/linux/fs.h`, 256 from 2.6 to
/// 7.x): the inode is an active swap file (for a block device, the bdev
/// inode carries it, not the node).
pub const S_SWAPFILE: u32 = 1 << 8;

/// `FMODE_READ` / `FMODE_WRITE` from `include/linux/fs.h` (stable ABI since 2.6).
pub const FMODE_READ: u32 = 0x1;
pub const FMODE_WRITE: u32 = 0x2;

// ------------------------------------------------------ layout assertions

const _: () = {
    assert!(core::mem::size_of::<InodeRule>() == 24);
    assert!(core::mem::size_of::<UnitPolicy>() == 16);
    assert!(core::mem::size_of::<PolicyEntry>() == 40 + UNIT_NAME_LEN);
    assert!(core::mem::size_of::<ExeBinding>() == 16);
    assert!(core::mem::size_of::<FileKey>() == 16);
    assert!(core::mem::size_of::<ObjKey>() == 8);
    assert!(core::mem::size_of::<SelfState>() == 24);
    assert!(core::mem::size_of::<PolicyStats>() == 64);
    assert!(core::mem::size_of::<UnitName>() == UNIT_NAME_LEN);
    assert!(core::mem::size_of::<UidKey>() == 8);
    assert!(core::mem::size_of::<RateKey>() == 16);
    assert!(core::mem::size_of::<RateState>() == 16);
    assert!(core::mem::size_of::<KernelLayout>() == 216);
    assert!(core::mem::size_of::<SetupSb>() == 24);
    assert!(core::mem::size_of::<MemoryDoors>() == 40);
    assert!(core::mem::size_of::<BurstKey>() == 40);
    assert!(core::mem::size_of::<BurstState>() == 88 + COMM_LEN);
    assert!(core::mem::size_of::<Event>() == 112 + COMM_LEN + EVENT_PATH_LEN);
    assert!(core::mem::size_of::<Event>().is_multiple_of(8));
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), contain only integers and integer
    // arrays, and have no implicit padding (sizes asserted above).
    unsafe impl aya::Pod for super::InodeRule {}
    unsafe impl aya::Pod for super::PolicyEntry {}
    unsafe impl aya::Pod for super::UidKey {}
    unsafe impl aya::Pod for super::RateKey {}
    unsafe impl aya::Pod for super::RateState {}
    unsafe impl aya::Pod for super::KernelLayout {}
    unsafe impl aya::Pod for super::SetupSb {}
    unsafe impl aya::Pod for super::MemoryDoors {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::FileKey {}
    unsafe impl aya::Pod for super::ObjKey {}
    unsafe impl aya::Pod for super::SelfState {}
    unsafe impl aya::Pod for super::PolicyStats {}
    unsafe impl aya::Pod for super::UnitName {}
    unsafe impl aya::Pod for super::ExeBinding {}
    unsafe impl aya::Pod for super::UnitPolicy {}
    unsafe impl aya::Pod for super::BurstKey {}
    unsafe impl aya::Pod for super::BurstState {}
}
