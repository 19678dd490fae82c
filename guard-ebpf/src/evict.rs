//! Rules that outlive the inode cache.
//!
//! Inode storage dies with the in-memory inode. On a disk-backed filesystem
//! (ext4, xfs, btrfs) an unused inode is evicted by memory pressure or
//! `drop_caches`, and the next lookup reads a fresh inode with no storage.
//! So when a protected inode is freed while its file still exists, its rule
//! moves to `EVICTED`, keyed by (sb dev, generation, ino); when an inode is
//! bound to a dentry again (`d_instantiate`: every lookup, `open_by_handle_at`,
//! NFS export) the rule moves back before anything can open it.
//!
//! A file that is deleted (`i_nlink == 0`), or that lived on tmpfs/ramfs
//! (freed only when it is gone), leaves nothing behind; and the generation
//! in the key keeps a reused inode number from inheriting a stale rule.
//! The `open()` hot path is untouched: all of this runs at lookup and free.

use aya_ebpf::bindings::inode;
use guard_common::*;

use crate::{
    layout::{file_key, off, read_u32, sb_magic},
    maps::{active_gen, count, policy_stats, EVICTED, INODE_RULES, TRUSTED},
    self_protect::trust_key,
};

/// Whether a protected inode of a filesystem with magic `magic` can be
/// evicted while its file lives on: only then is its rule kept (and looked
/// for again at `d_instantiate`). tmpfs and ramfs free an inode only when
/// the file is gone; procfs and cgroupfs rules are derived again whenever
/// the inode comes back; sockets, pipes and anonymous inodes have no name
/// to come back by.
#[inline(always)]
pub fn keeps_rules(magic: u64) -> bool {
    !matches!(
        magic,
        TMPFS_MAGIC | RAMFS_MAGIC | PROC_SUPER_MAGIC | CGROUP2_SUPER_MAGIC | SOCKFS_MAGIC | PIPEFS_MAGIC | ANON_INODE_FS_MAGIC
    )
}

/// `inode_free_security(inode)`.
#[inline(always)]
pub unsafe fn on_free(inode: *mut inode) {
    let rule = unsafe { INODE_RULES.get_ptr_mut(inode) };
    if rule.is_null() {
        return;
    }
    let rule = unsafe { *rule };
    let flags = rule.any_flags();
    if flags & (RULE_F_CGROUP_PROCS | RULE_F_SWAP) != 0 {
        // Re-derived from the parent cgroup whenever the inode comes back
        // (a block node is tagged again at `d_instantiate`).
        return;
    }
    let stats = rule.slot(active_gen()).and_then(|(policy_id, _)| policy_stats(policy_id));
    let p = inode as *const u8;
    let nlink = unsafe { read_u32(p, off!(inode_i_nlink)) };
    let magic = unsafe { sb_magic(p) };
    if nlink == 0 || !keeps_rules(magic) {
        if flags & RULE_F_SELF_EXEC != 0 {
            // A trusted executable is gone: its inode number must not pass trust on.
            let _ = TRUSTED.remove(trust_key(unsafe { file_key(p) }));
        }
        if let Some(s) = stats {
            s.deleted += 1;
        }
        return;
    }
    let key = unsafe { file_key(p) };
    if EVICTED.insert(&key, &rule, 0).is_err() {
        // Fails open for this one file: loud, counted, never expected.
        count(CNT_EVICT_LOST);
        aya_log_ebpf::error!(&(), "a protected inode was evicted and its rule could not be kept (ino {}); it is unprotected until the agent re-tags it", key.ino);
        return;
    }
    if let Some(s) = stats {
        s.evicted += 1;
    }
}

/// Gives an inode read back from disk the rule it had when it was evicted
/// (`magic`: its filesystem's; see [`keeps_rules`]).
#[inline(always)]
pub unsafe fn restore(child: *mut inode, magic: u64) -> bool {
    if !keeps_rules(magic) {
        return false;
    }
    let key = unsafe { file_key(child as *const u8) };
    let Some(kept) = (unsafe { EVICTED.get(key) }) else {
        return false;
    };
    let mut rule = *kept;
    let slot = unsafe { INODE_RULES.get_or_insert_ptr_mut(child, Some(&mut rule)) };
    if slot.is_null() {
        count(CNT_EVICT_LOST);
        aya_log_ebpf::error!(&(), "an evicted protected inode came back but could not be re-tagged (ino {})", key.ino);
        return false;
    }
    unsafe { *slot = rule };
    let _ = EVICTED.remove(&key);
    if let Some(s) = rule.slot(active_gen()).and_then(|(policy_id, _)| policy_stats(policy_id)) {
        s.restored += 1;
    }
    true
}
