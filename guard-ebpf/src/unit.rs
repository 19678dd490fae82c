//! What the decision, the cgroup guard and systemd's setup all ask about
//! protected units: which policy a unit has in the generation in force, and
//! whether the current task is in a unit's cgroup. It imports none of them.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_probe_read_kernel_str_bytes,
    generated::bpf_get_current_ancestor_cgroup_id,
};
use guard_common::*;

use crate::maps::{active_gen, POLICIES, UNIT_CGROUPS};

pub const EACCES: i32 = 13;

/// The policy of a unit in the generation in force.
#[inline(always)]
pub fn unit_policy(unit: &UnitPolicy) -> Option<u32> {
    unit.id(active_gen())
}

/// Whether the current task is in the policy's unit cgroup (or below it).
#[inline(always)]
pub fn cgroup_matches(policy: &PolicyEntry) -> bool {
    policy.cgroup_id != 0
        && unsafe { bpf_get_current_ancestor_cgroup_id(policy.cgroup_level as i32) }
            == policy.cgroup_id
}

/// Whether the current task is in the unit's cgroup of `policy_id` (or below it).
#[inline(always)]
pub fn in_unit(policy_id: u32) -> bool {
    POLICIES.get(policy_id).is_some_and(cgroup_matches)
}

/// The protected unit whose cgroup (or subcgroup) the current task is in,
/// with that cgroup's id.
#[inline(always)]
pub fn current_unit() -> Option<(u64, UnitPolicy)> {
    let cg = unsafe { bpf_get_current_cgroup_id() };
    unsafe { UNIT_CGROUPS.get(cg) }.map(|p| (cg, *p))
}

/// A NUL-padded copy of the C string at `p` (at most `UNIT_NAME_LEN - 1`
/// bytes): a `UNIT_NAMES` key. Only on rare paths (cgroup and mount events).
#[inline(always)]
pub unsafe fn name_at(p: *const u8) -> UnitName {
    let mut key = UnitName {
        name: [0; UNIT_NAME_LEN],
    };
    if !p.is_null() {
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(p, &mut key.name) };
    }
    key
}
