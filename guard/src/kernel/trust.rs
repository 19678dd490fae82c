//! Executable identity: how the kernel side tells guard from everyone else.
//!
//! A process is guard when its executable's inode is one the agent wrote
//! into `TRUSTED` (keyed by superblock dev and inode number; the entry goes
//! when that file is deleted). The binary itself carries a `RULE_F_SELF_EXEC`
//! rule, so nobody but guard can change it in place. Other BPF security
//! tools the admin names with `--allow-bpf-exe` are trusted to load LSM and
//! `fmod_ret` programs, never to touch guard's own objects.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use guard_common::*;

/// An executable and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exe {
    pub path: PathBuf,
    pub key: FileKey,
}

/// Kernel `dev_t` (`MAJOR << 20 | MINOR`) from a userspace `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    (libc::major(st_dev) << 20) | libc::minor(st_dev)
}

/// The `TRUSTED` key of a file (generation 0, see guard-ebpf's `trust_key`).
pub fn exe_key(meta: &std::fs::Metadata) -> FileKey {
    FileKey { dev: kernel_dev(meta.dev()), generation: 0, ino: meta.ino() }
}

impl Exe {
    pub fn of(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
        anyhow::ensure!(meta.is_file(), "{} is not a regular file", path.display());
        Ok(Self { path: path.to_path_buf(), key: exe_key(&meta) })
    }

    /// The running binary (by `/proc/self/exe`, which follows the inode even
    /// after the path was replaced).
    pub fn current() -> Result<Self> {
        let meta = std::fs::metadata("/proc/self/exe").context("stat /proc/self/exe")?;
        let path = std::fs::read_link("/proc/self/exe").context("readlink /proc/self/exe")?;
        let path = PathBuf::from(path.to_string_lossy().trim_end_matches(" (deleted)"));
        Ok(Self { path, key: exe_key(&meta) })
    }

    /// An `O_PATH` fd of the file, for tagging it.
    pub fn open_path(&self) -> Result<std::fs::File> {
        let p = if self.path.as_os_str().is_empty() { Path::new("/proc/self/exe") } else { &self.path };
        super::open_o_path(p, 0).with_context(|| format!("opening {} (O_PATH)", p.display()))
    }
}

/// Whether the ELF file at `path` has no program interpreter (`PT_INTERP`):
/// a static binary runs no dynamic loader, so `LD_PRELOAD`, `LD_AUDIT` and
/// `LD_LIBRARY_PATH` cannot put foreign code into it.
pub fn is_static_elf(path: &Path) -> Result<bool> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| data.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| data.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    anyhow::ensure!(data.starts_with(b"\x7fELF") && data.get(4) == Some(&2), "{} is not a 64-bit ELF file", path.display());
    let phoff = u64_at(0x20).context("truncated ELF header")? as usize;
    let phentsize = u16_at(0x36).context("truncated ELF header")? as usize;
    let phnum = u16_at(0x38).context("truncated ELF header")? as usize;
    for i in 0..phnum {
        const PT_INTERP: u32 = 3;
        if u32_at(phoff + i * phentsize).context("truncated program headers")? == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// PID 1's executable (systemd), by `/proc/1/exe`.
pub fn pid1_exe() -> Result<Exe> {
    let meta = std::fs::metadata("/proc/1/exe").context("stat /proc/1/exe")?;
    let path = std::fs::read_link("/proc/1/exe").context("readlink /proc/1/exe")?;
    let path = PathBuf::from(path.to_string_lossy().trim_end_matches(" (deleted)"));
    Ok(Exe { path, key: exe_key(&meta) })
}

/// Where systemd 255+ keeps the binary that sets up each unit's process.
pub const EXECUTOR_PATHS: [&str; 2] = ["/usr/lib/systemd/systemd-executor", "/lib/systemd/systemd-executor"];

/// What an instance trusts.
#[derive(Debug, Clone)]
pub struct Trust {
    pub guard: Exe,
    pub tools: Vec<Exe>,
    /// systemd as it runs here: PID 1's executable and `systemd-executor`
    /// (`TRUST_SYSTEMD`: a cgroup writer, and the setup of units).
    pub systemd: Vec<Exe>,
    /// Other executables that may put processes into protected units'
    /// cgroups (`--cgroup-writer`).
    pub cgroup_writers: Vec<Exe>,
}

impl Trust {
    /// Cgroup writers: `writer_paths`, plus, with `systemd`, systemd as it
    /// runs here (PID 1's executable and `systemd-executor` where it exists).
    pub fn new(tool_paths: &[PathBuf], writer_paths: &[PathBuf], systemd: bool) -> Result<Self> {
        let guard = Exe::current()?;
        let tools = tool_paths
            .iter()
            .map(|p| Exe::of(p).with_context(|| format!("--allow-bpf-exe {}", p.display())))
            .collect::<Result<Vec<_>>>()?;
        let add = |list: &mut Vec<Exe>, e: Exe| {
            if !list.iter().any(|w| w.key == e.key) {
                list.push(e);
            }
        };
        let mut systemd_exes: Vec<Exe> = Vec::new();
        if systemd {
            add(&mut systemd_exes, pid1_exe()?);
            for p in EXECUTOR_PATHS {
                if let Ok(e) = Exe::of(Path::new(p)) {
                    add(&mut systemd_exes, e);
                }
            }
        }
        let mut cgroup_writers: Vec<Exe> = Vec::new();
        for p in writer_paths {
            let e = Exe::of(p).with_context(|| format!("--cgroup-writer {}", p.display()))?;
            if !systemd_exes.iter().any(|s| s.key == e.key) {
                add(&mut cgroup_writers, e);
            }
        }
        Ok(Self { guard, tools, systemd: systemd_exes, cgroup_writers })
    }

    /// Bytes that change whenever what is trusted changes (part of the
    /// policy fingerprint: a different trust set means a new instance).
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in std::iter::once(&self.guard).chain(&self.tools).chain(&self.systemd).chain(&self.cgroup_writers) {
            out.extend_from_slice(&e.key.dev.to_le_bytes());
            out.extend_from_slice(&e.key.ino.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic_elf() {
        // The test binary itself is dynamically linked (cargo's default);
        // build a minimal static ELF header to check the other answer.
        assert!(!is_static_elf(Path::new("/proc/self/exe")).unwrap(), "the test binary has PT_INTERP");
        let mut elf = vec![0u8; 0x40 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let p = std::env::temp_dir().join(format!("guard-static-elf-{}", std::process::id()));
        std::fs::write(&p, &elf).unwrap();
        assert!(is_static_elf(&p).unwrap());
        elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        std::fs::write(&p, &elf).unwrap();
        assert!(!is_static_elf(&p).unwrap());
        let _ = std::fs::remove_file(&p);
        assert!(is_static_elf(Path::new("/etc/hostname")).is_err());
    }
}
