//! The hot path, counted from the object itself: a walk of `guard_file_open`
//! as built (the very bytes `guard run` loads) for an `open()` of a file no
//! policy protects. The previous LSM's verdict is 0 and the inode-storage
//! lookup misses; every register the walk cannot know (the file pointer, the
//! struct offsets filled in at load) stays unknown, and a branch that
//! depended on one would fail the walk: the path must be decided by those
//! two facts alone. The test fails if the path makes any helper call but
//! that one lookup, or grows beyond `MAX_INSNS`.

#![cfg(test)]

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol};

/// `BPF_FUNC_inode_storage_get`.
const HELPER_INODE_STORAGE_GET: i32 = 145;
/// Instructions the unprotected path may execute (it takes 21 today).
const MAX_INSNS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq)]
enum V {
    Known(u64),
    /// The program's context (`r1` at entry): an array of u64 arguments.
    Ctx,
    /// The frame pointer plus an offset.
    Stack(i64),
    Unknown,
}

struct Walk {
    insns: usize,
    helpers: Vec<i32>,
    verdict: V,
}

/// Walks `prog` (raw BPF instructions) from `start` with the context's
/// arguments `args` (None: unknown) and helper `returns`.
fn walk(prog: &[u8], start: usize, args: &[Option<u64>], returns: &HashMap<i32, u64>) -> Result<Walk, String> {
    let mut r = [V::Unknown; 11];
    r[1] = V::Ctx;
    r[10] = V::Stack(0);
    let mut stack: HashMap<i64, V> = HashMap::new();
    let (mut pc, mut insns, mut helpers) = (start, 0usize, Vec::new());
    loop {
        if insns > 10_000 || pc * 8 + 8 > prog.len() {
            return Err(format!("ran off the program at insn {pc}"));
        }
        let i = &prog[pc * 8..pc * 8 + 8];
        let (op, dst, src) = (i[0], (i[1] & 0xf) as usize, (i[1] >> 4) as usize);
        let off = i16::from_le_bytes([i[2], i[3]]) as i64;
        let imm = i32::from_le_bytes([i[4], i[5], i[6], i[7]]);
        insns += 1;
        let class = op & 0x07;
        let operand = |r: &[V; 11]| if op & 0x08 != 0 { r[src] } else { V::Known(imm as i64 as u64) };
        match class {
            // ld_imm64 (a map, a global): its value is never known here.
            0x00 if op == 0x18 => {
                r[dst] = V::Unknown;
                pc += 2;
                continue;
            }
            // Loads.
            0x01 => {
                let size = op & 0x18;
                r[dst] = match r[src] {
                    V::Ctx if size == 0x18 && off % 8 == 0 => {
                        args.get((off / 8) as usize).copied().flatten().map_or(V::Unknown, V::Known)
                    }
                    V::Stack(base) => stack.get(&(base + off)).copied().unwrap_or(V::Unknown),
                    _ => V::Unknown,
                };
            }
            // Stores of a register (STX) or an immediate (ST) to the stack.
            0x02 | 0x03 => {
                if let V::Stack(base) = r[dst] {
                    let v = if class == 0x03 { r[src] } else { V::Known(imm as i64 as u64) };
                    stack.insert(base + off, if op & 0x18 == 0x18 { v } else { V::Unknown });
                }
            }
            // ALU (32-bit) and ALU64.
            0x04 | 0x07 => {
                let b = operand(&r);
                let a = r[dst];
                let wide = class == 0x07;
                r[dst] = match (op & 0xf0, a, b) {
                    (0xb0, _, v) => v, // mov
                    (0x00, V::Stack(s), V::Known(k)) if wide => V::Stack(s + k as i64),
                    (code, V::Known(x), V::Known(y)) => {
                        let v = match code {
                            0x00 => x.wrapping_add(y),
                            0x10 => x.wrapping_sub(y),
                            0x20 => x.wrapping_mul(y),
                            0x40 => x | y,
                            0x50 => x & y,
                            0x60 => x.wrapping_shl(y as u32),
                            0x70 => x.wrapping_shr(y as u32),
                            0x80 => x.wrapping_neg(),
                            0xa0 => x ^ y,
                            0xc0 => ((x as i64).wrapping_shr(y as u32)) as u64,
                            _ => return Err(format!("ALU op {op:#x} at insn {pc}")),
                        };
                        V::Known(if wide { v } else { v & 0xffff_ffff })
                    }
                    _ => V::Unknown,
                };
            }
            // Jumps.
            0x05 | 0x06 => match op & 0xf0 {
                0x00 => {
                    pc = (pc as i64 + 1 + off) as usize;
                    continue;
                }
                0x80 => {
                    if src != 0 {
                        return Err(format!("a call into another BPF function at insn {pc}"));
                    }
                    helpers.push(imm);
                    let ret = returns.get(&imm).ok_or_else(|| format!("helper {imm} called at insn {pc}"))?;
                    r[0] = V::Known(*ret);
                    for reg in r.iter_mut().take(6).skip(1) {
                        *reg = V::Unknown;
                    }
                }
                0x90 => return Ok(Walk { insns, helpers, verdict: r[0] }),
                code => {
                    let (V::Known(mut x), V::Known(mut y)) = (r[dst], operand(&r)) else {
                        return Err(format!("the branch at insn {pc} (op {op:#x}) depends on a value the unprotected path does not fix"));
                    };
                    if class == 0x06 {
                        x &= 0xffff_ffff;
                        y &= 0xffff_ffff;
                    }
                    let taken = match code {
                        0x10 => x == y,
                        0x20 => x > y,
                        0x30 => x >= y,
                        0x40 => x & y != 0,
                        0x50 => x != y,
                        0x60 => (x as i64) > (y as i64),
                        0x70 => (x as i64) >= (y as i64),
                        0xa0 => x < y,
                        0xb0 => x <= y,
                        0xc0 => (x as i64) < (y as i64),
                        0xd0 => (x as i64) <= (y as i64),
                        _ => return Err(format!("jump op {op:#x} at insn {pc}")),
                    };
                    if taken {
                        pc = (pc as i64 + 1 + off) as usize;
                        continue;
                    }
                }
            },
            _ => return Err(format!("instruction {op:#x} at insn {pc}")),
        }
        pc += 1;
    }
}

/// The instructions of `section` and the offset (in instructions) of `symbol` in it.
fn program<'a>(obj: &'a object::File<'a>, section: &str, symbol: &str) -> (Vec<u8>, usize) {
    let sec = obj.section_by_name(section).unwrap_or_else(|| panic!("no section {section} in the eBPF object"));
    let sym = obj
        .symbols()
        .find(|s| s.name() == Ok(symbol) && s.section_index() == Some(sec.index()))
        .unwrap_or_else(|| panic!("no symbol {symbol} in {section}"));
    (sec.data().expect("section data").to_vec(), (sym.address() - sec.address()) as usize / 8)
}

#[test]
fn unprotected_open_is_one_lookup() {
    let obj = object::File::parse(super::OBJECT).expect("the embedded eBPF object parses");
    let (prog, start) = program(&obj, "lsm/file_open", guard_common::PROG_FILE_OPEN);
    // arg0: the file (unknown), arg1: the previous LSM's verdict (0).
    let returns = HashMap::from([(HELPER_INODE_STORAGE_GET, 0)]);
    let w = walk(&prog, start, &[None, Some(0)], &returns).unwrap_or_else(|e| panic!("walking guard_file_open: {e}"));
    println!("unprotected file_open: {} instructions, helpers {:?}, verdict {:?}", w.insns, w.helpers, w.verdict);
    assert_eq!(w.helpers, [HELPER_INODE_STORAGE_GET], "the unprotected path calls exactly one helper, the inode-storage lookup");
    assert_eq!(w.verdict, V::Known(0), "an unprotected open is allowed");
    assert!(w.insns <= MAX_INSNS, "the unprotected path grew to {} instructions (limit {MAX_INSNS})", w.insns);
}

#[test]
fn an_earlier_lsm_verdict_passes_through_untouched() {
    let obj = object::File::parse(super::OBJECT).expect("the embedded eBPF object parses");
    let (prog, start) = program(&obj, "lsm/file_open", guard_common::PROG_FILE_OPEN);
    let w = walk(&prog, start, &[None, Some(13u64.wrapping_neg())], &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(w.helpers.is_empty(), "no helper before passing an earlier verdict on: {:?}", w.helpers);
    assert_eq!(w.verdict, V::Known(13u64.wrapping_neg()));
}
