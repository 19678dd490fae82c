//! The hot path, counted from the object itself: a walk of `guard_file_open`
//! as built (the very bytes `guard run` loads) for an `open()` of a file no
//! policy protects, with [`super::pathcount`]. The previous LSM's verdict is
//! 0 and the inode-storage lookup misses; everything else stays unknown and
//! both ways of a branch on it are walked. The test fails if that outcome
//! has more than one path, makes any helper call but that one lookup, or
//! grows beyond `MAX_INSNS`. (In the VM, `guard bench-peers` checks the
//! same on the *loaded* program's translated instructions.)

#![cfg(test)]

use std::collections::BTreeSet;

use super::pathcount::{
    count,
    tests::{elf_prog, HELPER_INODE_STORAGE_GET},
    Outcome,
};

/// Instructions the unprotected path may execute (27 today: the lookup, then
/// the mode test that sends block device nodes to the swap check).
const MAX_INSNS: usize = 32;

#[test]
fn unprotected_open_is_one_lookup() {
    let (prog, start) = elf_prog(guard_common::PROG_FILE_OPEN);
    // arg0: the file (unknown), arg1: the previous LSM's verdict (0).
    let s = count(&prog, start, &[None, Some(0)], &|imm| imm == HELPER_INODE_STORAGE_GET, false)
        .unwrap_or_else(|e| panic!("walking guard_file_open: {e}"));
    let u = s.get(&Outcome::Unprotected).unwrap_or_else(|| panic!("no unprotected path: {s:?}"));
    println!("unprotected file_open: {u:?}");
    assert_eq!(u.paths, 1, "the unprotected path is decided by the miss alone");
    assert_eq!((u.helpers_min, u.helpers_max), (1, 1));
    assert_eq!(u.helper_ids, BTreeSet::from([HELPER_INODE_STORAGE_GET]), "the unprotected path calls exactly one helper, the inode-storage lookup");
    assert_eq!(u.verdicts, BTreeSet::from([0]), "an unprotected open is allowed");
    assert!(u.insns_max <= MAX_INSNS, "the unprotected path grew to {} instructions (limit {MAX_INSNS})", u.insns_max);
}

#[test]
fn an_earlier_lsm_verdict_passes_through_untouched() {
    let (prog, start) = elf_prog(guard_common::PROG_FILE_OPEN);
    let s = count(&prog, start, &[None, Some(13u64.wrapping_neg())], &|imm| imm == HELPER_INODE_STORAGE_GET, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.len(), 1, "one outcome: {s:?}");
    let o = &s[&Outcome::Other];
    assert_eq!((o.paths, o.helpers_max), (1, 0), "no helper before passing an earlier verdict on: {o:?}");
    assert_eq!(o.verdicts, BTreeSet::from([-13]));
}

/// `file_ioctl` runs on every ioctl (`file_ioctl_compat` on every 32-bit
/// one): a bystander's command (here `TCGETS`) is one compare, no helper,
/// the previous verdict passed on.
#[test]
fn bystander_ioctl_is_one_compare() {
    use object::{Object, ObjectSection, ObjectSymbol};
    let obj = object::File::parse(super::OBJECT).expect("the embedded eBPF object parses");
    for (name, hook) in [(guard_common::PROG_FILE_IOCTL, "file_ioctl"), (guard_common::PROG_FILE_IOCTL_COMPAT, "file_ioctl_compat")] {
        let sec = obj.section_by_name(&format!("lsm/{hook}")).unwrap_or_else(|| panic!("an lsm/{hook} section"));
        let sym = obj
            .symbols()
            .find(|s| s.name() == Ok(name) && s.section_index() == Some(sec.index()))
            .unwrap_or_else(|| panic!("the {name} symbol"));
        let prog = super::pathcount::parse(sec.data().unwrap());
        let start = (sym.address() - sec.address()) as usize / 8;
        for prev in [0u64, 13u64.wrapping_neg()] {
            let s = count(&prog, start, &[None, Some(0x5401), None, Some(prev)], &|imm| imm == HELPER_INODE_STORAGE_GET, false)
                .unwrap_or_else(|e| panic!("walking {name}: {e}"));
            assert_eq!(s.len(), 1, "one outcome: {s:?}");
            let o = s.values().next().unwrap();
            println!("bystander {hook}: {o:?}");
            assert_eq!((o.paths, o.helpers_max), (1, 0), "a bystander ioctl is decided by its command alone: {o:?}");
            assert_eq!(o.verdicts, BTreeSet::from([prev as i32]), "the previous verdict passes on");
            assert!(o.insns_max <= 8, "the bystander {hook} path grew to {} instructions", o.insns_max);
        }
    }
}
