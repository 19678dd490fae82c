//! Every map of guard's kernel side. Names are the `MAP_*` constants of
//! guard-common (the static's name is the map's name).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
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

#[btf_map]
pub static TAINTED: HashMap<u64, u32, { MAX_TAINTED as usize }> = HashMap::new();

/// systemd's lineage (see `systemd.rs`), by `task_struct` address.
#[btf_map]
pub static LINEAGE: HashMap<u64, u32, { MAX_LINEAGE as usize }> = HashMap::new();

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
