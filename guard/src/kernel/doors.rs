//! What guard refuses of kernel memory while it protects anything (the
//! kernel side is `guard-ebpf/src/memory.rs`): lockdown reasons and kernel
//! file reads, as bit masks over the running kernel's own enum values,
//! which are not stable between kernels and are read from BTF by name.

use std::sync::OnceLock;

use anyhow::{bail, Result};
use guard_common::MemoryDoors;

use super::btf::Btf;

/// Every lockdown reason but these is refused to everyone but guard.
/// `LOCKDOWN_XFRM_SECRET` shows IPsec keys, not a process's memory; the
/// other two are markers, not reasons.
pub const LOCKDOWN_LEFT_OPEN: [&str; 4] =
    ["LOCKDOWN_NONE", "LOCKDOWN_XFRM_SECRET", "LOCKDOWN_INTEGRITY_MAX", "LOCKDOWN_CONFIDENTIALITY_MAX"];

/// What an allowed BPF tool (`--allow-bpf-exe`) still passes: its programs
/// read kernel memory, attach kprobes, open perf events and use tracefs.
pub const LOCKDOWN_FOR_TOOLS: [&str; 4] =
    ["LOCKDOWN_BPF_READ_KERNEL", "LOCKDOWN_KPROBES", "LOCKDOWN_PERF", "LOCKDOWN_TRACEFS"];

/// What systemd still passes: its own programs (`RestrictFileSystems=`)
/// read kernel structures.
pub const LOCKDOWN_FOR_SYSTEMD: [&str; 1] = ["LOCKDOWN_BPF_READ_KERNEL"];

/// `enum kernel_read_file_id` values refused: kexec images and initramfs
/// (`kexec_file_load`; `kexec_load` is `LOCKDOWN_KEXEC`).
pub const READ_FILE_REFUSED: [&str; 2] = ["READING_KEXEC_IMAGE", "READING_KEXEC_INITRAMFS"];

static REASONS: OnceLock<Vec<(u32, String)>> = OnceLock::new();

/// The masks for this kernel; remembers the reasons' names for records.
pub fn doors(btf: &Btf) -> Result<MemoryDoors> {
    let reasons = btf.enum_values("lockdown_reason");
    if reasons.is_empty() {
        bail!("this kernel's BTF has no enum lockdown_reason, so guard cannot tell its lockdown reasons apart");
    }
    let mut d = MemoryDoors::default();
    let bit = |v: i64| if (0..64).contains(&v) { 1u64 << v } else { 0 };
    for (name, &v) in &reasons {
        if !LOCKDOWN_LEFT_OPEN.contains(&name.as_str()) {
            d.lockdown_refused |= bit(v);
        }
    }
    for name in LOCKDOWN_FOR_TOOLS {
        d.lockdown_tools |= reasons.get(name).map_or(0, |&v| bit(v));
    }
    for name in LOCKDOWN_FOR_SYSTEMD {
        d.lockdown_systemd |= reasons.get(name).map_or(0, |&v| bit(v));
    }
    let ids = btf.enum_values("kernel_read_file_id");
    for name in READ_FILE_REFUSED {
        d.read_file_refused |= ids.get(name).map_or(0, |&v| bit(v));
    }
    let _ = REASONS.set(reasons.into_iter().map(|(n, v)| (v as u32, n)).collect());
    d.core_pattern = std::fs::read_to_string("/proc/kallsyms").ok().and_then(|k| symbol(&k, "core_pattern")).unwrap_or(0);
    Ok(d)
}

/// The address of data symbol `name` in `/proc/kallsyms` text: one symbol
/// of the kernel proper (no module), at a non-zero address (kallsyms shows
/// zeros to those it hides them from), inside the kernel's writable data
/// (`_sdata`..`_edata`) or its bss (`__bss_start`..`__bss_stop`). The
/// address decides, not the type letter: 7.x kernels print `t` for static
/// data such as `core_pattern`. Anything else is `None`: a core of a unit
/// that keeps cores is then refused.
pub fn symbol(kallsyms: &str, name: &str) -> Option<u64> {
    let mut found = None;
    let (mut sdata, mut edata, mut sbss, mut ebss) = (None, None, None, None);
    for line in kallsyms.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(addr), Some(_kind), Some(sym), None) = (f.next(), f.next(), f.next(), f.next()) else { continue };
        let at = || u64::from_str_radix(addr, 16).ok().filter(|&a| a != 0);
        match sym {
            "_sdata" => sdata = at(),
            "_edata" => edata = at(),
            "__bss_start" => sbss = at(),
            "__bss_stop" => ebss = at(),
            _ if sym == name => {
                if found.is_some() {
                    return None;
                }
                found = Some(at()?);
            }
            _ => {}
        }
    }
    let a = found?;
    let within = |lo: Option<u64>, hi: Option<u64>| lo.zip(hi).is_some_and(|(lo, hi)| lo <= a && a < hi);
    (within(sdata, edata) || within(sbss, ebss)).then_some(a)
}

/// The name of lockdown reason `value` on this kernel (for records).
pub fn reason_name(value: u32) -> String {
    REASONS
        .get()
        .and_then(|r| r.iter().find(|(v, _)| *v == value).map(|(_, n)| n.clone()))
        .unwrap_or_else(|| format!("reason {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's own BTF: every name guard refers to exists.
    #[test]
    fn host_kernel_enums() {
        let path = std::path::Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("SKIPPED: {} not present on this host", path.display());
            return;
        }
        let btf = Btf::from_file(path).unwrap();
        let d = doors(&btf).unwrap();
        let reasons = btf.enum_values("lockdown_reason");
        for name in LOCKDOWN_FOR_TOOLS.iter().chain(&LOCKDOWN_FOR_SYSTEMD).chain(&["LOCKDOWN_KCORE", "LOCKDOWN_KEXEC"]) {
            let v = reasons[*name];
            assert!(d.lockdown_refused & (1 << v) != 0, "{name} not refused");
        }
        assert_eq!(d.lockdown_refused & (1 << reasons["LOCKDOWN_XFRM_SECRET"]), 0);
        assert_eq!(d.lockdown_refused & 1, 0, "LOCKDOWN_NONE is refused");
        assert_eq!(d.lockdown_tools & !d.lockdown_refused, 0);
        assert_eq!(d.read_file_refused.count_ones(), 2);
        assert_eq!(reason_name(reasons["LOCKDOWN_KCORE"] as u32), "LOCKDOWN_KCORE");
    }

    #[test]
    fn core_pattern_symbol() {
        let sections = "ffffffff81000000 T _stext\nffffffff82000000 T _sdata\nffffffff82b00000 D _edata\n\
                        ffffffff83000000 B __bss_start\nffffffff83400000 B __bss_stop\n";
        let k = format!("{sections}ffffffff82a3c0e0 d core_pattern\nffffffffc0001000 t foo\t[loop]\n");
        assert_eq!(symbol(&k, "core_pattern"), Some(0xffffffff82a3c0e0));
        // 7.x prints static data as `t`: the address decides.
        assert_eq!(symbol(&format!("{sections}ffffffff82a3c0e0 t core_pattern\n"), "core_pattern"), Some(0xffffffff82a3c0e0));
        assert_eq!(symbol(&format!("{sections}ffffffff83100000 b core_pattern\n"), "core_pattern"), Some(0xffffffff83100000));
        // Hidden addresses (kptr_restrict), text, duplicates, module symbols, no sections: unknown.
        assert_eq!(symbol(&format!("{sections}0000000000000000 d core_pattern\n"), "core_pattern"), None);
        assert_eq!(symbol(&format!("{sections}ffffffff81a3c0e0 t core_pattern\n"), "core_pattern"), None);
        assert_eq!(symbol(&format!("{sections}ffffffff82a3c0e0 d core_pattern\nffffffff82a3c1e0 d core_pattern\n"), "core_pattern"), None);
        assert_eq!(symbol(&format!("{sections}ffffffffc0001000 d core_pattern\t[mod]\n"), "core_pattern"), None);
        assert_eq!(symbol(&format!("{sections}ffffffff82a3c0e0 d core_pattern_x\n"), "core_pattern"), None);
        assert_eq!(symbol("ffffffff82a3c0e0 d core_pattern\n", "core_pattern"), None);
    }
}
