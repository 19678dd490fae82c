//! Every map of guard's kernel side. Names are the `MAP_*` constants of
//! guard-common (the static's name is the map's name).

use aya_ebpf::{
    bindings::{bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE, task_struct, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE},
    helpers::generated::bpf_task_storage_get,
    btf_maps::{Array, HashMap, InodeStorage, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use guard_common::*;

/// The rule on each protected inode. Identity is the inode itself.
#[btf_map]
pub static INODE_RULES: InodeStorage<InodeRule> = InodeStorage::new();

#[btf_map]
pub static POLICIES: Array<PolicyEntry, { MAX_POLICIES as usize }> = Array::new();

#[btf_map]
pub static ALLOWED_UIDS: HashMap<UidKey, u32, { MAX_ALLOWED_UIDS as usize }> = HashMap::new();

/// The policy generation in force (see `MAP_ACTIVE`; mmapable so that the
/// agent can switch it with one atomic store).
#[btf_map]
pub static ACTIVE: Array<u32, 1, BPF_F_MMAPABLE> = Array::new();

/// cgroup id -> the unit's policies: each protected unit's cgroup and its subcgroups.
#[btf_map]
pub static UNIT_CGROUPS: HashMap<u64, UnitPolicy, { MAX_UNIT_CGROUPS as usize }> = HashMap::new();

#[btf_map]
pub static UNIT_NAMES: HashMap<UnitName, UnitPolicy, { MAX_POLICIES as usize }> = HashMap::new();

#[btf_map]
pub static CGROUP_PARENTS: HashMap<u64, u32, { MAX_POLICIES as usize }> = HashMap::new();

/// Each task's marks (`MARK_TAINTED`: see `cgroup.rs`; `MARK_LINEAGE`:
/// systemd's lineage, see `systemd.rs`).
#[btf_map]
pub static TASK_MARKS: TaskStorage<u32> = TaskStorage::new();

/// Filesystems systemd's setup created (see `systemd.rs`), by `super_block` address.
#[btf_map]
pub static SETUP_SBS: HashMap<u64, SetupSb, { MAX_SETUP_SBS as usize }> = HashMap::new();

/// What guard refuses of kernel memory (see `memory.rs`).
#[btf_map]
pub static DOORS: Array<MemoryDoors, 1> = Array::new();

/// BPF maps an allowed BPF tool or systemd holds (see `self_protect.rs`).
#[btf_map]
pub static TOOL_MAPS: LruHashMap<u32, u32, { MAX_TOOL_MAPS as usize }> = LruHashMap::new();

/// Active swap block devices by kernel `dev_t` (see `swap.rs`).
#[btf_map]
pub static SWAP_DEVS: HashMap<u32, u32, { MAX_SWAP_DEVS as usize }> = HashMap::new();

#[btf_map]
pub static UNIT_OWNERS: LruHashMap<u64, u32, { MAX_UNIT_OWNERS as usize }> = LruHashMap::new();

#[btf_map]
pub static EXE_BINDINGS: HashMap<ExeBinding, u32, { MAX_EXE_BINDINGS as usize }> = HashMap::new();

#[btf_map]
pub static EVENTS: RingBuf<Event, { DEFAULT_RINGBUF_BYTES as usize }> = RingBuf::new();

/// Denied (or audited) decisions per (opener process, object, decision);
/// sized at load (`guard run --max-openers`).
#[btf_map]
pub static BURSTS: HashMap<BurstKey, BurstState, { DEFAULT_MAX_BURSTS as usize }> = HashMap::new();

#[btf_map]
pub static COUNTERS: PerCpuArray<u64, { CNT_MAX as usize }> = PerCpuArray::new();

#[btf_map]
pub static RATE: LruHashMap<RateKey, RateState, { RATE_ENTRIES as usize }> = LruHashMap::new();

/// Rules of protected inodes evicted from the cache (see `evict.rs`).
#[btf_map]
pub static EVICTED: HashMap<FileKey, InodeRule, { MAX_EVICTED as usize }, { BPF_F_NO_PREALLOC as usize }> =
    HashMap::new();

/// Executables trusted by identity (see `self_protect.rs`).
#[btf_map]
pub static TRUSTED: HashMap<FileKey, u32, { MAX_TRUSTED as usize }> = HashMap::new();

/// guard's own maps, programs and links, by kernel id.
#[btf_map]
pub static GUARD_OBJECTS: HashMap<ObjKey, u32, { MAX_GUARD_OBJECTS as usize }> = HashMap::new();

#[btf_map]
pub static SELF: Array<SelfState, 1> = Array::new();

#[btf_map]
pub static POLICY_STATS: PerCpuArray<PolicyStats, { MAX_POLICIES as usize }> = PerCpuArray::new();

/// `BPF_MAP_TYPE_TASK_STORAGE` (aya-ebpf has no such map type): laid out
/// as aya's BTF map definitions are, so any loader reads it.
#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: placeholder pointers the loader patches, never dereferenced.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    pub const fn new() -> Self {
        Self {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    #[inline(always)]
    fn get_ptr(&self, task: *const u8, value: *mut T, flags: u64) -> *mut T {
        let map = core::ptr::from_ref(self).cast_mut().cast();
        unsafe { bpf_task_storage_get(map, task as *mut task_struct, value.cast(), flags) }.cast()
    }

    /// `task`'s value (NULL: none). `task` must be a BTF-typed task pointer.
    #[inline(always)]
    pub fn get(&self, task: *const u8) -> *mut T {
        self.get_ptr(task, core::ptr::null_mut(), 0)
    }

    /// `task`'s value, created as `init` if it has none (NULL: no memory).
    #[inline(always)]
    pub fn get_or_insert(&self, task: *const u8, init: &mut T) -> *mut T {
        self.get_ptr(task, init, BPF_LOCAL_STORAGE_GET_F_CREATE as u64)
    }
}

/// The current task's marks (`MARK_*`; 0 for nearly every task, which has
/// no storage at all).
#[inline(always)]
pub fn current_marks() -> u32 {
    marks(crate::layout::current_task())
}

/// `task`'s marks (a BTF-typed task pointer).
#[inline(always)]
pub fn marks(task: *const u8) -> u32 {
    let p = TASK_MARKS.get(task);
    if p.is_null() { 0 } else { unsafe { *p } }
}

/// Adds `mark` to `task`'s marks. `false` if its storage cannot be made.
#[inline(always)]
pub fn add_mark(task: *const u8, mark: u32) -> bool {
    let mut init = 0u32;
    let p = TASK_MARKS.get_or_insert(task, &mut init);
    if p.is_null() {
        return false;
    }
    unsafe { *p |= mark };
    true
}

/// Takes `mark` off `task`'s marks (the storage stays until the task goes).
#[inline(always)]
pub fn clear_mark(task: *const u8, mark: u32) {
    let p = TASK_MARKS.get(task);
    if !p.is_null() {
        unsafe { *p &= !mark };
    }
}

/// The policy generation in force (0 before the agent set one: nothing is
/// protected by a policy then; guard's own objects always are).
#[inline(always)]
pub fn active_gen() -> u32 {
    ACTIVE.get(0).copied().unwrap_or(0)
}

#[inline(always)]
pub fn count(idx: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(idx) {
        unsafe { *p += 1 };
    }
}

/// Per-policy statistics of this CPU (`None` for guard's own objects).
#[inline(always)]
pub fn policy_stats(policy_id: u32) -> Option<&'static mut PolicyStats> {
    if policy_id >= MAX_POLICIES {
        return None;
    }
    POLICY_STATS.get_ptr_mut(policy_id).map(|p| unsafe { &mut *p })
}
