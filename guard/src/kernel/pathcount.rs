//! Static path counts of a BPF program: for each outcome of an LSM hook,
//! how many instructions and helper calls the program executes.
//!
//! The walk runs on raw instructions: the ELF's (host tests) or, in the
//! VM, the *translated* instructions of a loaded program as the kernel
//! gives them back (`BPF_OBJ_GET_INFO_BY_FD`, `xlated_prog_insns`: calls
//! carry the kernel's own `imm`, some map lookups are inlined). Values the
//! walk cannot know (the file, map contents, most helper results) stay
//! unknown and a branch on one is explored both ways, so each outcome gets
//! the MIN and MAX over every path that ends in it. States are memoized on
//! (pc, abstract registers, stack), so shared tails are walked once; each
//! BPF function the program calls is summarized once per set of constant
//! arguments (a compiler's `memset` loops up to its length) and added to
//! its callers.
//! A loop is walked iteration by iteration, so it must be bounded by values
//! the walk knows (a counter); meeting the same state again on one path is
//! an error, and so is a path beyond `MAX_DEPTH` instructions.
//!
//! Outcomes, with the previous LSM's verdict (`ctx` arg 1) fixed at 0:
//! - **unprotected**: the program's first lookup (a helper whose name says
//!   `map_lookup_elem` or `storage_get`) returns NULL, or there is none
//!   (the empty program), and the verdict is 0;
//! - **allowed**: the first lookup hits and the verdict is 0;
//! - **denied**: the first lookup hits and the verdict is negative;
//! - **other**: anything else (an unknown verdict, a non-zero verdict after a miss).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{bail, Result};
use serde::Serialize;

/// `S_IFMT` and `S_IFBLK`, as the walk's values.
const IFMT: u64 = guard_common::S_IFMT as u64;
const IFBLK: u64 = guard_common::S_IFBLK as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

pub fn parse(bytes: &[u8]) -> Vec<Insn> {
    bytes
        .chunks_exact(8)
        .map(|i| Insn {
            code: i[0],
            dst: i[1] & 0xf,
            src: i[1] >> 4,
            off: i16::from_le_bytes([i[2], i[3]]),
            imm: i32::from_le_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum V {
    Known(u64),
    /// The program's context (`r1` at entry): an array of u64 arguments.
    Ctx,
    /// A frame pointer plus an offset.
    Stack(i64),
    /// A pointer known not to be NULL (a lookup that hit, a map).
    NonNull,
    /// An unknown value masked with `S_IFMT`: a file type. The walked
    /// caller touches no block device node (every open of one is judged as
    /// a possible swap area, see guard-ebpf's `swap::judge_node`), so it is
    /// never `S_IFBLK`; any other type is unknown.
    FileType,
    Unknown,
}

impl V {
    fn non_null(self) -> bool {
        matches!(self, V::Ctx | V::Stack(_) | V::NonNull)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Unprotected,
    Allowed,
    Denied,
    Other,
}


impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Unprotected => "unprotected",
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Other => "other",
        }
    }
}

/// Every path that ends in one outcome, summarized.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathStats {
    /// Distinct paths (saturating).
    pub paths: u64,
    pub insns_min: usize,
    pub insns_max: usize,
    pub helpers_min: usize,
    pub helpers_max: usize,
    /// The helper `imm`s called on any of these paths.
    pub helper_ids: BTreeSet<i32>,
    /// The verdicts these paths return, where known (as i32).
    pub verdicts: BTreeSet<i32>,
}

impl PathStats {
    fn shifted(&self, insns: usize, helper: Option<i32>) -> Self {
        let mut s = self.clone();
        s.insns_min += insns;
        s.insns_max += insns;
        if let Some(h) = helper {
            s.helpers_min += 1;
            s.helpers_max += 1;
            s.helper_ids.insert(h);
        }
        s
    }
    /// These paths followed by a call through every path of `sub`.
    fn then(&self, sub: &Self) -> Self {
        let mut s = self.clone();
        s.paths = s.paths.saturating_mul(sub.paths);
        s.insns_min += sub.insns_min;
        s.insns_max += sub.insns_max;
        s.helpers_min += sub.helpers_min;
        s.helpers_max += sub.helpers_max;
        s.helper_ids.extend(sub.helper_ids.iter().copied());
        s
    }
    fn merge(&mut self, o: &Self) {
        self.paths = self.paths.saturating_add(o.paths);
        self.insns_min = self.insns_min.min(o.insns_min);
        self.insns_max = self.insns_max.max(o.insns_max);
        self.helpers_min = self.helpers_min.min(o.helpers_min);
        self.helpers_max = self.helpers_max.max(o.helpers_max);
        self.helper_ids.extend(o.helper_ids.iter().copied());
        self.verdicts.extend(o.verdicts.iter().copied());
    }
}

pub type Summary = BTreeMap<Outcome, PathStats>;

fn merge_into(a: &mut Summary, b: &Summary) {
    for (k, v) in b {
        match a.get_mut(k) {
            Some(x) => x.merge(v),
            None => {
                a.insert(*k, v.clone());
            }
        }
    }
}

fn shift(s: &Summary, insns: usize, helper: Option<i32>) -> Summary {
    s.iter().map(|(k, v)| (*k, v.shifted(insns, helper))).collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    pc: usize,
    r: [V; 11],
    stack: BTreeMap<i64, V>,
    /// None: no lookup yet; Some(hit).
    lookup: Option<bool>,
}

const MAX_STATES: usize = 2_000_000;
const MAX_DEPTH: usize = 100_000;

struct Walker<'a> {
    prog: &'a [Insn],
    args: &'a [Option<u64>],
    is_lookup: &'a (dyn Fn(i32) -> bool + Sync),
    /// Follow BPF-to-BPF calls (translated code). In an ELF object their
    /// targets are relocations: there a call is opaque (its result unknown,
    /// its instructions not counted).
    follow_calls: bool,
    /// The bystander walk: every lookup misses (see [`count_bystander`]).
    all_miss: bool,
    /// In the bystander walk: a call that writes a record or a log line
    /// (no bystander path does) ends the path as `Other`.
    is_record: &'a (dyn Fn(i32) -> bool + Sync),
    memo: HashMap<State, Summary>,
    /// BPF functions summarized so far, by first instruction and the
    /// arguments the walk knows (see [`Walker::subprogram`]).
    subs: HashMap<(usize, [V; 5]), Vec<(V, PathStats)>>,
    /// BPF functions being summarized (a call back into one is recursion).
    entered: std::collections::HashSet<usize>,
    /// States on the current path: meeting one again is a loop the walk cannot bound.
    open: std::collections::HashSet<State>,
}

/// Summarizes every path of `prog` from instruction `start`. `args`: the
/// context's arguments (None: unknown); `is_lookup`: whether a call's
/// `imm` is the lookup that decides "unprotected"; `follow_calls`: see [`Walker`].
pub fn count(prog: &[Insn], start: usize, args: &[Option<u64>], is_lookup: &(dyn Fn(i32) -> bool + Sync), follow_calls: bool) -> Result<Summary> {
    walk_from(prog, start, args, is_lookup, &|_| false, follow_calls, false)
}

/// The bystander's paths: every map lookup and storage get the program
/// makes misses (nothing in guard's maps names the caller, its cgroup, its
/// executable, the inode or the filesystem it touches), the previous
/// verdict is 0 and everything else is unknown. Their summary is the
/// `Unprotected` outcome (a verdict of 0); any other outcome means a
/// bystander could be refused.
///
/// A path that writes a record or a log line (`is_record`: the ring buffer
/// helpers) is no bystander's: it ends there, as `Other`.
pub fn count_bystander(
    prog: &[Insn],
    args: &[Option<u64>],
    is_lookup: &(dyn Fn(i32) -> bool + Sync),
    is_record: &(dyn Fn(i32) -> bool + Sync),
) -> Result<Summary> {
    walk_from(prog, 0, args, is_lookup, is_record, true, true)
}

fn walk_from(
    prog: &[Insn],
    start: usize,
    args: &[Option<u64>],
    is_lookup: &(dyn Fn(i32) -> bool + Sync),
    is_record: &(dyn Fn(i32) -> bool + Sync),
    follow_calls: bool,
    all_miss: bool,
) -> Result<Summary> {
    let mut w = Walker { prog, args, is_lookup, is_record, follow_calls, all_miss, memo: HashMap::new(), subs: HashMap::new(), entered: Default::default(), open: Default::default() };
    let mut r = [V::Unknown; 11];
    r[1] = V::Ctx;
    r[10] = V::Stack(0);
    let s = State { pc: start, r, stack: BTreeMap::new(), lookup: None };
    // Paths can be long: walk on a thread with a generous stack.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn_scoped(scope, || w.walk(s))
            .expect("spawning the path walk")
            .join()
            .unwrap_or_else(|_| bail!("the path walk panicked"))
    })
}

impl Walker<'_> {
    fn walk(&mut self, s: State) -> Result<Summary> {
        if let Some(m) = self.memo.get(&s) {
            return Ok(m.clone());
        }
        if self.memo.len() > MAX_STATES {
            bail!("more than {MAX_STATES} distinct states: the program is too branchy to walk");
        }
        if self.open.len() > MAX_DEPTH {
            bail!("a path longer than {MAX_DEPTH} instructions at insn {}", s.pc);
        }
        if !self.open.insert(s.clone()) {
            bail!("a loop at insn {} whose bound the walk cannot know (the same state comes back)", s.pc);
        }
        let out = self.step(&s);
        self.open.remove(&s);
        let out = out?;
        self.memo.insert(s, out.clone());
        Ok(out)
    }

    /// Every path through the BPF function at `start` to its exit, as
    /// what it returns: (`Known(0)`, the paths that return 0) and
    /// (`Unknown`, every other path), each summarized (its verdict is not
    /// the program's). A caller that passes a function's verdict on (a
    /// thin hook around a `try_` function) keeps the 0 it returns.
    ///
    /// `args` are the caller's `r1`..`r5`. The function sees the constants
    /// among them (a `memset` the compiler emits loops up to its length
    /// argument, which only the caller knows) and a pointer as a non-NULL
    /// value (not into its own frame); it is summarized once per such set.
    fn subprogram(&mut self, start: usize, args: &[V]) -> Result<Vec<(V, PathStats)>> {
        let mut known = [V::Unknown; 5];
        for (k, a) in known.iter_mut().zip(args) {
            *k = match a {
                V::Known(x) => V::Known(*x),
                a if a.non_null() => V::NonNull,
                _ => V::Unknown,
            };
        }
        if let Some(s) = self.subs.get(&(start, known)) {
            return Ok(s.clone());
        }
        if !self.entered.insert(start) {
            bail!("a recursive BPF-to-BPF call into insn {start}");
        }
        let mut r = [V::Unknown; 11];
        r[1..6].copy_from_slice(&known);
        r[10] = V::Stack(0);
        // `lookup: Some(..)`: no lookup in here decides the program's outcome.
        let state = State { pc: start, r, stack: BTreeMap::new(), lookup: Some(true) };
        let all = self.walk(state)?;
        self.entered.remove(&start);
        if all.is_empty() {
            bail!("the BPF function at insn {start} never returns");
        }
        let mut zero: Option<PathStats> = None;
        let mut other: Option<PathStats> = None;
        for (o, st) in &all {
            let mut st = st.clone();
            let returns_zero = matches!(o, Outcome::Allowed | Outcome::Unprotected) && st.verdicts == BTreeSet::from([0]);
            st.verdicts.clear();
            let slot = if returns_zero { &mut zero } else { &mut other };
            match slot {
                Some(x) => x.merge(&st),
                None => *slot = Some(st),
            }
        }
        let out: Vec<(V, PathStats)> =
            [(V::Known(0), zero), (V::Unknown, other)].into_iter().filter_map(|(v, s)| s.map(|s| (v, s))).collect();
        self.subs.insert((start, known), out.clone());
        Ok(out)
    }

    fn jump(&self, pc: usize, off: i16) -> Result<usize> {
        let t = pc as i64 + 1 + off as i64;
        if t < 0 || t as usize >= self.prog.len() {
            bail!("a jump out of the program at insn {pc}");
        }
        Ok(t as usize)
    }

    fn step(&mut self, s: &State) -> Result<Summary> {
        let pc = s.pc;
        let Some(&i) = self.prog.get(pc) else { bail!("ran off the program at insn {pc}") };
        let (dst, src) = (i.dst as usize, i.src as usize);
        if dst > 10 || src > 10 {
            bail!("bad register at insn {pc}");
        }
        let off = i.off as i64;
        let class = i.code & 0x07;
        let mut n = s.clone();
        n.pc = pc + 1;
        let operand = |r: &[V; 11]| if i.code & 0x08 != 0 { r[src] } else { V::Known(i.imm as i64 as u64) };
        match class {
            // ld_imm64: a constant, or a map / map value (never NULL).
            0x00 if i.code == 0x18 => {
                let hi = self.prog.get(pc + 1).map_or(0, |x| x.imm as u32 as u64);
                n.r[dst] = if i.src == 0 { V::Known(hi << 32 | i.imm as u32 as u64) } else { V::NonNull };
                n.pc = pc + 2;
            }
            0x00 => n.r[0] = V::Unknown, // legacy packet loads
            0x01 => {
                n.r[dst] = match s.r[src] {
                    V::Ctx if i.code & 0x18 == 0x18 && off % 8 == 0 && off >= 0 => {
                        self.args.get((off / 8) as usize).copied().flatten().map_or(V::Unknown, V::Known)
                    }
                    V::Stack(base) if i.code & 0x18 == 0x18 => s.stack.get(&(base + off)).copied().unwrap_or(V::Unknown),
                    _ => V::Unknown,
                };
            }
            0x02 | 0x03 => {
                let mode = i.code & 0xe0;
                if let V::Stack(base) = s.r[dst] {
                    let size = i.code & 0x18;
                    if mode == 0x60 {
                        let v = if class == 0x03 { s.r[src] } else { V::Known(i.imm as i64 as u64) };
                        // Any other store overlapping this slot clobbers it.
                        n.stack.retain(|k, _| *k + 8 <= base + off || *k >= base + off + 8);
                        n.stack.insert(base + off, if size == 0x18 { v } else { V::Unknown });
                    } else {
                        // Atomics on the stack: the slot becomes unknown.
                        n.stack.remove(&(base + off));
                    }
                }
                // An atomic fetch writes its result to src (cmpxchg: r0).
                if class == 0x03 && mode == 0xc0 {
                    if i.imm == 0xf1 {
                        n.r[0] = V::Unknown;
                    } else if i.imm & 0x01 != 0 {
                        n.r[src] = V::Unknown;
                    }
                }
            }
            0x04 | 0x07 => {
                let b = operand(&s.r);
                let a = s.r[dst];
                let wide = class == 0x07;
                n.r[dst] = match (i.code & 0xf0, a, b) {
                    (0xb0, _, v) if wide => v,
                    (0xb0, _, V::Known(k)) => V::Known(k & 0xffff_ffff),
                    (0x00, V::Stack(s0), V::Known(k)) if wide => V::Stack(s0 + k as i64),
                    (0x10, V::Stack(s0), V::Known(k)) if wide => V::Stack(s0 - k as i64),
                    (0x00, V::NonNull, V::Known(_)) if wide => V::NonNull,
                    (0x00, V::Known(x), V::Known(y)) => k(wide, x.wrapping_add(y)),
                    (0x10, V::Known(x), V::Known(y)) => k(wide, x.wrapping_sub(y)),
                    (0x20, V::Known(x), V::Known(y)) => k(wide, x.wrapping_mul(y)),
                    (0x40, V::Known(x), V::Known(y)) => k(wide, x | y),
                    (0x50, V::Known(x), V::Known(y)) => k(wide, x & y),
                    (0x50, V::Unknown, V::Known(IFMT)) => V::FileType,
                    (0x60, V::Known(x), V::Known(y)) => k(wide, x.wrapping_shl(y as u32)),
                    (0x70, V::Known(x), V::Known(y)) => {
                        k(wide, if wide { x.wrapping_shr(y as u32) } else { (x as u32).wrapping_shr(y as u32) as u64 })
                    }
                    (0x80, V::Known(x), _) => k(wide, x.wrapping_neg()),
                    (0xa0, V::Known(x), V::Known(y)) => k(wide, x ^ y),
                    (0xc0, V::Known(x), V::Known(y)) => {
                        k(wide, if wide { (x as i64).wrapping_shr(y as u32) as u64 } else { (x as i32).wrapping_shr(y as u32) as u32 as u64 })
                    }
                    _ => V::Unknown,
                };
            }
            0x05 | 0x06 => match i.code & 0xf0 {
                0x00 if class == 0x05 => n.pc = self.jump(pc, i.off)?,
                0x80 if class == 0x05 => {
                    if i.src == 1 && !self.follow_calls {
                        for reg in n.r.iter_mut().take(6) {
                            *reg = V::Unknown;
                        }
                        return Ok(shift(&self.walk(n)?, 1, None));
                    }
                    if i.src == 1 {
                        // A call into another BPF function of the program:
                        // summarized once per set of constant arguments
                        // (every path through it), then added to each
                        // caller's paths. Its result is unknown to the caller;
                        // the caller's stack is assumed unchanged by it (its
                        // pointers reach guard's subprograms only to be read,
                        // or zeroed by a `memset`).
                        let target = (pc as i64 + 1 + i.imm as i64) as usize;
                        if target >= self.prog.len() {
                            bail!("a BPF-to-BPF call out of the program at insn {pc}");
                        }
                        let subs = self.subprogram(target, &s.r[1..6])?;
                        for reg in n.r.iter_mut().take(6) {
                            *reg = V::Unknown;
                        }
                        let mut out = Summary::new();
                        for (ret, sub) in subs {
                            let mut m = n.clone();
                            m.r[0] = ret;
                            let rest = self.walk(m)?;
                            let part: Summary = rest.iter().map(|(k, v)| (*k, v.then(&sub).shifted(1, None))).collect();
                            merge_into(&mut out, &part);
                        }
                        return Ok(out);
                    }
                    for reg in n.r.iter_mut().take(6).skip(1) {
                        *reg = V::Unknown;
                    }
                    if self.all_miss && (self.is_record)(i.imm) {
                        let stats = PathStats { paths: 1, insns_min: 1, insns_max: 1, helpers_min: 1, helpers_max: 1, helper_ids: BTreeSet::from([i.imm]), verdicts: BTreeSet::new() };
                        return Ok(BTreeMap::from([(Outcome::Other, stats)]));
                    }
                    if self.all_miss && (self.is_lookup)(i.imm) {
                        n.r[0] = V::Known(0);
                        n.lookup = Some(false);
                        return Ok(shift(&self.walk(n)?, 1, Some(i.imm)));
                    }
                    if s.lookup.is_none() && (self.is_lookup)(i.imm) {
                        let mut miss = n.clone();
                        miss.r[0] = V::Known(0);
                        miss.lookup = Some(false);
                        n.r[0] = V::NonNull;
                        n.lookup = Some(true);
                        let mut out = self.walk(miss)?;
                        merge_into(&mut out, &self.walk(n)?);
                        return Ok(shift(&out, 1, Some(i.imm)));
                    }
                    n.r[0] = V::Unknown;
                    return Ok(shift(&self.walk(n)?, 1, Some(i.imm)));
                }
                0x90 if class == 0x05 => {
                    let outcome = match (s.lookup, s.r[0]) {
                        (None | Some(false), V::Known(0)) => Outcome::Unprotected,
                        (Some(true), V::Known(0)) => Outcome::Allowed,
                        (Some(true), V::Known(x)) if (x as i32) < 0 => Outcome::Denied,
                        _ => Outcome::Other,
                    };
                    let verdicts = match s.r[0] {
                        V::Known(x) => BTreeSet::from([x as i32]),
                        _ => BTreeSet::new(),
                    };
                    let stats = PathStats { paths: 1, insns_min: 1, insns_max: 1, helpers_min: 0, helpers_max: 0, helper_ids: BTreeSet::new(), verdicts };
                    return Ok(BTreeMap::from([(outcome, stats)]));
                }
                code => {
                    let target = self.jump(pc, i.off)?;
                    let (a, b) = (s.r[dst], operand(&s.r));
                    let taken = match (a, b) {
                        (V::Known(mut x), V::Known(mut y)) => {
                            if class == 0x06 {
                                // JMP32: the low halves, sign-extended for the signed compares.
                                let signed = matches!(code, 0x60 | 0x70 | 0xc0 | 0xd0);
                                let ext = |v: u64| if signed { v as u32 as i32 as i64 as u64 } else { v & 0xffff_ffff };
                                x = ext(x);
                                y = ext(y);
                            }
                            Some(match code {
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
                                _ => bail!("jump op {:#x} at insn {pc}", i.code),
                            })
                        }
                        // A file type against S_IFBLK: never a block device.
                        (V::FileType, V::Known(IFBLK)) => match code {
                            0x10 => Some(false),
                            0x50 => Some(true),
                            _ => None,
                        },
                        // A pointer known not to be NULL against 0.
                        (p, V::Known(0)) if p.non_null() && class == 0x05 => match code {
                            0x10 => Some(false),
                            0x50 => Some(true),
                            _ => None,
                        },
                        _ => None,
                    };
                    let out = match taken {
                        Some(true) => {
                            n.pc = target;
                            self.walk(n)?
                        }
                        Some(false) => self.walk(n)?,
                        None => {
                            let mut t = n.clone();
                            t.pc = target;
                            // An unknown register compared (64-bit) for
                            // equality with a constant is that constant on
                            // the side where they are equal (a verdict from a
                            // BPF function, checked against 0 and returned).
                            // (A 32-bit compare with 0 likewise: an i32 verdict.)
                            if a == V::Unknown && (class == 0x05 || b == V::Known(0)) {
                                if let V::Known(y) = b {
                                    match code {
                                        0x10 => t.r[dst] = V::Known(y),
                                        0x50 => n.r[dst] = V::Known(y),
                                        _ => {}
                                    }
                                }
                            }
                            let mut out = self.walk(t)?;
                            merge_into(&mut out, &self.walk(n)?);
                            out
                        }
                    };
                    return Ok(shift(&out, 1, None));
                }
            },
            _ => bail!("instruction {:#x} at insn {pc}", i.code),
        }
        Ok(shift(&self.walk(n)?, 1, None))
    }
}

fn k(wide: bool, v: u64) -> V {
    V::Known(if wide { v } else { v & 0xffff_ffff })
}

// ------------------------------------------------------------ loaded programs

/// A program loaded in this kernel, with its translated instructions.
pub struct Loaded {
    pub id: u32,
    pub name: String,
    pub xlated: Vec<Insn>,
}

fn sys_bpf(cmd: u32, attr: &mut [u8]) -> std::io::Result<i64> {
    // SAFETY: `attr` is a zeroed buffer laid out as the command expects.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr.as_mut_ptr(), attr.len() as libc::c_long) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

const BPF_PROG_GET_NEXT_ID: u32 = 11;
const BPF_PROG_GET_FD_BY_ID: u32 = 13;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;

fn prog_info(fd: i32, info: &mut [u8; 256]) -> std::io::Result<()> {
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&(fd as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(|_| ())
}

/// Every loaded program whose (kernel-truncated, 15-byte) name starts
/// `name` truncated likewise, with its translated instructions. Root only.
pub fn loaded_programs(name: &str) -> Result<Vec<Loaded>> {
    let want = &name[..name.len().min(15)];
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        let mut attr = [0u8; 12];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        match sys_bpf(BPF_PROG_GET_NEXT_ID, &mut attr) {
            Ok(_) => id = u32::from_ne_bytes(attr[4..8].try_into().unwrap()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => bail!("BPF_PROG_GET_NEXT_ID: {e} (run as root)"),
        }
        let mut attr = [0u8; 12];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        let fd = match sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
            Ok(fd) => fd as i32,
            Err(_) => continue, // unloaded meanwhile
        };
        // SAFETY: a fresh fd we own.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        if let Some(loaded) = read_loaded(fd, id, Some(want))? {
            out.push(loaded);
        }
        drop(owned);
    }
    Ok(out)
}

/// The loaded program with kernel id `id`, with its translated instructions.
pub fn loaded_program(id: u32) -> Result<Loaded> {
    let mut attr = [0u8; 12];
    attr[0..4].copy_from_slice(&id.to_ne_bytes());
    let fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).map_err(|e| anyhow::anyhow!("BPF_PROG_GET_FD_BY_ID {id}: {e}"))? as i32;
    // SAFETY: a fresh fd we own.
    let _owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok(read_loaded(fd, id, None)?.expect("no name filter"))
}

/// Program `id` (open as `fd`), if its name is `want` (or any, for None).
fn read_loaded(fd: i32, id: u32, want: Option<&str>) -> Result<Option<Loaded>> {
        let mut info = [0u8; 256];
        prog_info(fd, &mut info).map_err(|e| anyhow::anyhow!("BPF_OBJ_GET_INFO_BY_FD on program {id}: {e}"))?;
        let pname: String = info[64..80].iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
        if want.is_some_and(|w| w != pname) {
            return Ok(None);
        }
        let len = u32::from_ne_bytes(info[20..24].try_into().unwrap()) as usize;
        if len == 0 {
            bail!("program {id} ({pname}): the kernel gives no translated instructions (kernel.kptr_restrict or bpf_jit_harden?)");
        }
        let mut buf = vec![0u8; len];
        let mut info = [0u8; 256];
        info[20..24].copy_from_slice(&(len as u32).to_ne_bytes());
        info[32..40].copy_from_slice(&(buf.as_mut_ptr() as u64).to_ne_bytes());
        prog_info(fd, &mut info).map_err(|e| anyhow::anyhow!("reading program {id}'s translated instructions: {e}"))?;
        // A JITed program's translated calls into its own subprograms keep
        // the relative target in `off` and the subprogram's index in `imm`
        // (`jit_subprogs`); put the target back where the walk reads it.
        let jited = u32::from_ne_bytes(info[16..20].try_into().unwrap()) != 0;
        Ok(Some(Loaded { id, name: pname, xlated: normalize_calls(parse(&buf), jited) }))
}

/// See [`loaded_programs`]: BPF-to-BPF calls of a JITed program, with
/// their target moved from `off` to `imm` as in an unJITed one.
fn normalize_calls(mut insns: Vec<Insn>, jited: bool) -> Vec<Insn> {
    if jited {
        for i in insns.iter_mut().filter(|i| i.code == 0x85 && i.src == 1) {
            i.imm = i.off as i32;
        }
    }
    insns
}

const BPF_LINK_GET_NEXT_ID: u32 = 31;
const BPF_LINK_GET_FD_BY_ID: u32 = 30;

/// The ids of the programs behind every BPF link in the kernel (an attached
/// LSM program has one). Root only.
pub fn linked_program_ids() -> Result<Vec<u32>> {
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        let mut attr = [0u8; 12];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        match sys_bpf(BPF_LINK_GET_NEXT_ID, &mut attr) {
            Ok(_) => id = u32::from_ne_bytes(attr[4..8].try_into().unwrap()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => bail!("BPF_LINK_GET_NEXT_ID: {e} (run as root)"),
        }
        let mut attr = [0u8; 12];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        let Ok(fd) = sys_bpf(BPF_LINK_GET_FD_BY_ID, &mut attr) else { continue };
        // SAFETY: a fresh fd we own.
        let _owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        // struct bpf_link_info { u32 type; u32 id; u32 prog_id; ... }
        let mut info = [0u8; 256];
        prog_info(fd as i32, &mut info).map_err(|e| anyhow::anyhow!("BPF_OBJ_GET_INFO_BY_FD on link {id}: {e}"))?;
        out.push(u32::from_ne_bytes(info[8..12].try_into().unwrap()));
    }
    Ok(out)
}

/// Names the kernel functions behind translated helper calls: a call's
/// `imm` is the function's address minus `__bpf_call_base` (what bpftool
/// does with /proc/kallsyms). Empty if kallsyms hides addresses.
pub struct HelperNames {
    base: Option<u64>,
    by_addr: HashMap<u64, String>,
}

impl HelperNames {
    pub fn from_kallsyms() -> Self {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let mut by_addr = HashMap::new();
        let mut base = None;
        for l in text.lines() {
            let mut it = l.split_whitespace();
            let (Some(a), Some(_t), Some(name)) = (it.next(), it.next(), it.next()) else { continue };
            let Ok(addr) = u64::from_str_radix(a, 16) else { continue };
            if addr == 0 {
                continue;
            }
            if name == "__bpf_call_base" {
                base = Some(addr);
            }
            by_addr.entry(addr).or_insert_with(|| name.to_string());
        }
        Self { base, by_addr }
    }

    pub fn name(&self, imm: i32) -> Option<&str> {
        let base = self.base?;
        self.by_addr.get(&base.wrapping_add(imm as i64 as u64)).map(|s| s.as_str())
    }

    /// A lookup that decides "unprotected": a map lookup or a local-storage get.
    pub fn is_lookup(&self, imm: i32) -> bool {
        self.name(imm).is_some_and(|n| n.contains("map_lookup_elem") || n.contains("storage_get"))
    }

    pub fn label(&self, imm: i32) -> String {
        self.name(imm).map(String::from).unwrap_or_else(|| format!("helper@{imm}"))
    }
}

/// One program's path table, ready to print.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramPaths {
    pub program: String,
    pub id: u32,
    pub xlated_insns: usize,
    pub paths: Vec<PathRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PathRow {
    pub outcome: Outcome,
    pub paths: u64,
    pub insns_min: usize,
    pub insns_max: usize,
    pub helpers_min: usize,
    pub helpers_max: usize,
    pub helpers: Vec<String>,
    /// Known verdicts (errnos negative).
    pub verdicts: Vec<i32>,
}

/// Counts the paths of a loaded program (prev verdict 0, file unknown).
pub fn loaded_paths(label: &str, p: &Loaded, names: &HelperNames) -> Result<ProgramPaths> {
    let summary = count(&p.xlated, 0, &[None, Some(0)], &|imm| names.is_lookup(imm), true)
        .map_err(|e| anyhow::anyhow!("walking {label} (program {} {}): {e:#}", p.id, p.name))?;
    Ok(ProgramPaths {
        program: label.to_string(),
        id: p.id,
        xlated_insns: p.xlated.len(),
        paths: summary
            .iter()
            .map(|(o, s)| PathRow {
                outcome: *o,
                paths: s.paths,
                insns_min: s.insns_min,
                insns_max: s.insns_max,
                helpers_min: s.helpers_min,
                helpers_max: s.helpers_max,
                helpers: s.helper_ids.iter().map(|&h| names.label(h)).collect(),
                verdicts: s.verdicts.iter().copied().collect(),
            })
            .collect(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object::{Object, ObjectSection, ObjectSymbol};

    /// `BPF_FUNC_inode_storage_get` (the ELF carries helper ids).
    pub(crate) const HELPER_INODE_STORAGE_GET: i32 = 145;

    /// `symbol`'s section in the embedded object, parsed, and its first instruction.
    pub(crate) fn elf_prog(symbol: &str) -> (Vec<Insn>, usize) {
        let obj = object::File::parse(super::super::OBJECT).expect("the embedded eBPF object parses");
        let sec = obj.section_by_name("lsm/file_open").expect("an lsm/file_open section");
        let sym = obj
            .symbols()
            .find(|s| s.name() == Ok(symbol) && s.section_index() == Some(sec.index()))
            .unwrap_or_else(|| panic!("no symbol {symbol}"));
        (parse(sec.data().unwrap()), (sym.address() - sec.address()) as usize / 8)
    }

    #[test]
    fn guard_file_open_paths_from_the_object() {
        let (prog, start) = elf_prog(guard_common::PROG_FILE_OPEN);
        let s = count(&prog, start, &[None, Some(0)], &|imm| imm == HELPER_INODE_STORAGE_GET, false).unwrap();
        for (o, st) in &s {
            println!("{o:?}: {st:?}");
        }
        let u = &s[&Outcome::Unprotected];
        assert_eq!((u.helpers_min, u.helpers_max), (1, 1), "the unprotected path is one lookup: {u:?}");
        assert_eq!(u.helper_ids, BTreeSet::from([HELPER_INODE_STORAGE_GET]));
        assert_eq!(u.insns_min, u.insns_max, "the unprotected path is a single path: {u:?}");
        assert!(s.contains_key(&Outcome::Allowed), "some path allows a protected open: {s:?}");
        assert!(s.contains_key(&Outcome::Denied), "some path denies a protected open: {s:?}");
        let d = &s[&Outcome::Denied];
        assert!(d.insns_min > u.insns_max, "denying costs more than the hot path");
    }

    #[test]
    fn a_jited_programs_subprogram_call_targets_its_offset() {
        // call pc+2 (JITed: off = 2, imm = subprogram index 1); exit; r0 = 5; exit... as xlated.
        let call = Insn { code: 0x85, dst: 0, src: 1, off: 2, imm: 1 };
        let exit = Insn { code: 0x95, dst: 0, src: 0, off: 0, imm: 0 };
        let fixed = normalize_calls(vec![call, exit], true);
        assert_eq!(fixed[0].imm, 2);
        assert_eq!(normalize_calls(vec![call, exit], false)[0].imm, 1);
        assert_eq!(normalize_calls(vec![exit], true)[0], exit);
    }

    #[test]
    fn a_subprogram_is_summarized_once_and_added_to_every_caller_path() {
        // 0 call 7 (lookup); 1 if r0 == 0 goto 5; 2 call pc+4 (the sub at 7... see below)
        let raw: Vec<(u8, u8, i16, i32)> = vec![
            (0x85, 0x00, 0, 7),   // 0 call 7 (the lookup)
            (0x15, 0x00, 3, 0),   // 1 if r0 == 0 goto 5
            (0x85, 0x10, 0, 4),   // 2 call sub at 7
            (0xb7, 0x00, 0, -13), // 3 r0 = -13
            (0x95, 0x00, 0, 0),   // 4 exit
            (0xb7, 0x00, 0, 0),   // 5 r0 = 0
            (0x95, 0x00, 0, 0),   // 6 exit
            (0x85, 0x00, 0, 131), // 7 sub: call 131 (ringbuf_reserve's id)
            (0x15, 0x00, 1, 0),   // 8 if r0 == 0 goto 10
            (0x85, 0x00, 0, 132), // 9 call 132
            (0x95, 0x00, 0, 0),   // 10 exit
        ];
        let prog: Vec<Insn> = raw.iter().map(|&(code, regs, off, imm)| Insn { code, dst: regs & 0xf, src: regs >> 4, off, imm }).collect();
        let s = count(&prog, 0, &[], &|imm| imm == 7, true).unwrap();
        let d = &s[&Outcome::Denied];
        // 0,1,2 + sub (7,8,10 | 7,8,9,10) + 3,4
        assert_eq!((d.insns_min, d.insns_max), (8, 9));
        assert_eq!((d.helpers_min, d.helpers_max), (2, 3));
        assert_eq!(d.helper_ids, BTreeSet::from([7, 131, 132]));
        assert_eq!(d.paths, 2);
        assert_eq!(s[&Outcome::Unprotected].insns_max, 4);
    }

    #[test]
    fn a_subprogram_loop_is_bounded_by_its_callers_constant() {
        // A compiler's memset(r1, 0, r3 = 16): the loop's bound is the
        // caller's constant, so the walk finishes and counts 16 rounds.
        let prog: Vec<Insn> = [
            (0xbf, 0xa1, 0, 0),  // 0 r1 = r10
            (0x07, 0x01, 0, -16), // 1 r1 += -16
            (0xb7, 0x03, 0, 16), // 2 r3 = 16
            (0x85, 0x10, 0, 2),  // 3 call sub at 6
            (0xb7, 0x00, 0, 0),  // 4 r0 = 0
            (0x95, 0x00, 0, 0),  // 5 exit
            (0xb7, 0x00, 0, 0),  // 6 sub: r0 = 0
            (0x3d, 0x30, 2, 0),  // 7 if r0 >= r3 goto 10
            (0x07, 0x00, 0, 1),  // 8 r0 += 1
            (0x05, 0x00, -3, 0), // 9 goto 7
            (0x95, 0x00, 0, 0),  // 10 exit
        ]
        .iter()
        .map(|&(code, regs, off, imm)| Insn { code, dst: regs & 0xf, src: regs >> 4, off, imm })
        .collect();
        let s = count(&prog, 0, &[], &|_| false, true).unwrap();
        // 0..3, the sub (6, 16 x 7..9, 7, 10), then 4, 5.
        assert_eq!(s[&Outcome::Unprotected].insns_max, 4 + 1 + 16 * 3 + 2 + 2);
    }

    #[test]
    fn a_walked_file_is_never_a_block_device() {
        // r0 = lookup(); if r0 != 0 goto 7; r1 = *(u16 *)(r6 + 0); r1 &= S_IFMT;
        // if r1 != S_IFBLK goto 7; call 1 (the block device's extra lookup); 7: r0 = 0; exit
        let raw: Vec<(u8, u8, i16, i32)> = vec![
            (0x85, 0x00, 0, 7),           // 0 call 7
            (0x55, 0x00, 5, 0),           // 1 if r0 != 0 goto 7
            (0x69, 0x61, 0, 0),           // 2 r1 = *(u16 *)(r6 + 0)
            (0x57, 0x01, 0, 0xf000),      // 3 r1 &= S_IFMT
            (0x55, 0x01, 2, 0x6000),      // 4 if r1 != S_IFBLK goto 7
            (0x85, 0x00, 0, 1),           // 5 call 1
            (0x05, 0x00, 0, 0),           // 6 goto 7
            (0xb7, 0x00, 0, 0),           // 7 r0 = 0
            (0x95, 0x00, 0, 0),           // 8 exit
        ];
        let prog: Vec<Insn> = raw.iter().map(|&(code, regs, off, imm)| Insn { code, dst: regs & 0xf, src: regs >> 4, off, imm }).collect();
        let s = count(&prog, 0, &[], &|imm| imm == 7, true).unwrap();
        let u = &s[&Outcome::Unprotected];
        assert_eq!((u.paths, u.insns_max, u.helpers_max), (1, 7, 1), "the miss, the mode test, nothing else: {u:?}");
        // Against any other type the branch stays unknown: both ways walked.
        let mut dir = prog.clone();
        dir[4].imm = 0x4000;
        let u = &count(&dir, 0, &[], &|imm| imm == 7, true).unwrap()[&Outcome::Unprotected];
        assert_eq!((u.paths, u.helpers_max), (2, 2));
    }

    #[test]
    fn branches_on_unknowns_give_min_and_max() {
        // r0 = lookup(); if r0 == 0 goto miss; r2 = *(r0); if r2 == 0 goto allow; r0 = -13; exit; allow: r0 = 0; exit; miss: r0 = 0; exit
        let raw: Vec<(u8, u8, i16, i32)> = vec![
            (0x85, 0x00, 0, 7),   // 0 call 7
            (0x15, 0x00, 5, 0),   // 1 if r0 == 0 goto 7
            (0x79, 0x02, 0, 0),   // 2 r2 = *(u64 *)(r0 + 0)
            (0x15, 0x02, 2, 0),   // 3 if r2 == 0 goto 6
            (0xb7, 0x00, 0, -13), // 4 r0 = -13
            (0x95, 0x00, 0, 0),   // 5 exit
            (0x05, 0x00, 0, 0),   // 6 goto 7 (falls to 7)
            (0xb7, 0x00, 0, 0),   // 7 r0 = 0
            (0x95, 0x00, 0, 0),   // 8 exit
        ];
        let prog: Vec<Insn> = raw.iter().map(|&(code, regs, off, imm)| Insn { code, dst: regs & 0xf, src: regs >> 4, off, imm }).collect();
        let s = count(&prog, 0, &[], &|imm| imm == 7, true).unwrap();
        assert_eq!((s[&Outcome::Unprotected].insns_min, s[&Outcome::Unprotected].insns_max), (4, 4));
        assert_eq!((s[&Outcome::Denied].insns_min, s[&Outcome::Denied].insns_max), (6, 6));
        assert_eq!((s[&Outcome::Allowed].insns_min, s[&Outcome::Allowed].insns_max), (7, 7));
        // A loop the walk cannot bound is refused.
        let mut looped = prog.clone();
        looped[6].off = -4;
        assert!(count(&looped, 0, &[], &|imm| imm == 7, true).is_err());
    }
}
