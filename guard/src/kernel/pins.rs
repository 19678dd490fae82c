//! Where an instance lives in bpffs, and its lifecycle there.
//!
//! ```text
//! /sys/fs/bpf/guard/               RULE_F_SELF | DIR | INHERIT
//!   <instance id>/                 ... | ANCHOR (guard records its mount)
//!     links/<program>              one pinned LSM link per hook
//!     maps/<MAP>                   the maps (rules, policies, feed, ...)
//! ```
//!
//! Pins inherit `RULE_F_SELF` the instant they are created, so only guard
//! may unlink or rename them; the mount they live on (and every mount above
//! it) can only be unmounted by guard. A link pin is what keeps a program
//! attached: `guard unload` removes them, nothing else can.

use std::{
    ffi::CString,
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{Array, Map, MapData},
    programs::{links::FdLink, Lsm},
};
use guard_common::*;

use super::{trust::{Exe, Trust}, Kernel, PINNED_MAPS};

/// Where bpffs is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// guard's directory in it.
pub const PIN_ROOT: &str = "/sys/fs/bpf/guard";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BPF_OBJ_PIN: i64 = 6;

pub fn map_pin(dir: &Path, name: &str) -> PathBuf {
    dir.join("maps").join(name)
}

pub fn link_pin(dir: &Path, name: &str) -> PathBuf {
    dir.join("links").join(name)
}

/// Names of the programs whose links are pinned in `dir`.
pub fn link_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("links"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The instance directories under `root`, oldest first.
pub fn instances(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// The `SELF` entry of a pinned instance (needs to be guard to read it).
pub fn read_state(dir: &Path) -> Result<SelfState> {
    let data = MapData::from_pin(map_pin(dir, MAP_SELF)).map_err(|e| anyhow!(e))?;
    let arr: Array<MapData, SelfState> = Array::try_from(Map::from_map_data(data).map_err(|e| anyhow!(e))?)?;
    Ok(arr.get(&0, 0)?)
}

/// Mounts bpffs at `BPFFS` if it is not mounted there (systemd mounts it at
/// boot; a bare initramfs does not).
pub fn ensure_bpffs() -> Result<()> {
    let c = CString::new(BPFFS).unwrap();
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    std::fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    let fstype = CString::new("bpf").unwrap();
    let opts = CString::new("mode=0700").unwrap();
    // SAFETY: valid C strings.
    let r = unsafe { libc::mount(fstype.as_ptr(), c.as_ptr(), fstype.as_ptr(), 0, opts.as_ptr().cast()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("mounting bpffs at {BPFFS}"));
    }
    Ok(())
}

fn open_dir(p: &Path) -> Result<std::fs::File> {
    super::open_o_path(p, libc::O_NOFOLLOW | libc::O_DIRECTORY).with_context(|| format!("opening {} (O_PATH)", p.display()))
}

/// `bpf(BPF_OBJ_PIN)` of an fd at `path`.
fn pin_fd(fd: &impl AsFd, path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let attr = Attr { pathname: c.as_ptr() as u64, bpf_fd: fd.as_fd().as_raw_fd() as u32, file_flags: 0 };
    // SAFETY: a valid bpf_attr prefix for BPF_OBJ_PIN and its size.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_PIN, &attr as *const Attr, std::mem::size_of::<Attr>()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("pinning at {}", path.display()));
    }
    Ok(())
}

/// The rule of one of guard's own inodes (pins, their directories, trusted binaries).
/// Records the fingerprint of the policy set the instance now enforces (so
/// that a restarted agent with the same files adopts it).
pub fn set_policy_hash(k: &mut Kernel, policy_hash: u64) -> Result<()> {
    let mut st = k.maps.self_state.get(&0, 0)?;
    st.policy_hash = policy_hash;
    k.maps.self_state.set(0, st, 0)?;
    Ok(())
}

pub fn self_rule(flags: u32) -> InodeRule {
    InodeRule::any(SELF_POLICY_ID, RULE_F_SELF | flags)
}

impl Kernel {
    /// Trusts executable `exe` at `level` (a `TRUST_*`): its identity in
    /// `TRUSTED`, and the `RULE_F_SELF_EXEC` inode rule that write-protects
    /// it and that the kernel's trust test looks for first (an executable
    /// without an inode rule is never asked about, see guard-ebpf's
    /// `typed_task_trust`). The two always go together.
    pub fn trust_exe(&mut self, exe: &Exe, level: u32) -> Result<()> {
        self.maps.trusted.insert(exe.key, level, 0)?;
        let fd = exe.open_path()?;
        self.tag_inode(&fd, self_rule(RULE_F_SELF_EXEC)).with_context(|| format!("write-protecting {}", exe.path.display()))?;
        Ok(())
    }

    /// Makes a freshly loaded, filled instance enforce, for good:
    /// records what it trusts and what it is made of, write-protects the
    /// trusted binaries, attaches every program (self-protection first),
    /// then pins links and maps under a new directory of `root`. On error
    /// before the first pin, everything attached is detached again.
    pub fn arm(&mut self, root: &Path, trust: &Trust, policy_hash: u64, object_hash: u64) -> Result<PathBuf> {
        let ebpf = self.ebpf.as_ref().context("arm: not a fresh load")?;
        // What this instance is made of: no one else may get an fd of it.
        let mut map_ids = Vec::new();
        // Only the programs loaded for this kernel's hook shapes have an id
        // (not the other shape's, nor the bench-only one).
        for (_, elf) in &self.chosen {
            let info = ebpf.program(elf).context("program missing")?.info()?;
            self.maps.objects.insert(ObjKey { kind: OBJ_PROG, id: info.id() }, 1, 0)?;
            map_ids.extend(info.map_ids()?.unwrap_or_default());
        }
        map_ids.sort_unstable();
        map_ids.dedup();
        for id in map_ids {
            self.maps.objects.insert(ObjKey { kind: OBJ_MAP, id }, 1, 0)?;
        }
        self.trust_exe(&trust.guard, TRUST_GUARD)?;
        for t in &trust.tools {
            self.trust_exe(t, TRUST_BPF_TOOL)?;
        }
        for w in &trust.systemd {
            self.trust_exe(w, TRUST_SYSTEMD)?;
        }
        for w in &trust.cgroup_writers {
            self.trust_exe(w, TRUST_CGROUP_WRITER)?;
        }
        self.maps.self_state.set(0, SelfState { pin_mnt: 0, policy_hash, object_hash }, 0)?;

        for (name, hook) in ENFORCING_PROGRAMS {
            if let Err(e) = self.attach(name) {
                self.detach_all();
                return Err(e.context(format!("attaching {name} to LSM hook {hook}")));
            }
        }

        // The pin tree. The root passes RULE_F_SELF on to what is created in it.
        if !root.exists() {
            std::fs::create_dir(root).with_context(|| format!("creating {}", root.display()))?;
        }
        self.tag_inode(&open_dir(root)?, self_rule(RULE_F_DIR | RULE_F_INHERIT))?;
        let id = format!("{:016x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64);
        let dir = root.join(id);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.tag_inode(&open_dir(&dir)?, self_rule(RULE_F_DIR | RULE_F_INHERIT | RULE_F_ANCHOR))?;
        std::fs::create_dir(dir.join("maps"))?;
        std::fs::create_dir(dir.join("links"))?;
        // Opening it (not O_PATH) lets the program record the mount it is on.
        std::fs::File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;

        for (name, fd) in std::mem::take(&mut self.map_fds) {
            pin_fd(&fd, &map_pin(&dir, name))?;
        }
        for (name, id) in std::mem::take(&mut self.links) {
            let elf = self.elf_of(name)?;
            let ebpf = self.ebpf.as_mut().context("arm: not a fresh load")?;
            let prog: &mut Lsm = ebpf
                .program_mut(elf)
                .context("program missing")?
                .try_into()?;
            let link: FdLink = prog.take_link(id)?.into();
            let link_id = link.info()?.id();
            self.maps.objects.insert(ObjKey { kind: OBJ_LINK, id: link_id }, 1, 0)?;
            // Dropping the PinnedLink closes our fd; the pin holds the link.
            link.pin(link_pin(&dir, name)).map_err(|e| anyhow!(e)).with_context(|| format!("pinning the link of {name}"))?;
        }
        self.instance = Some(dir.clone());
        Ok(dir)
    }
}

/// Duplicates the fds of the maps to pin, before they are turned into typed maps.
pub fn map_fds(ebpf: &aya::Ebpf) -> Result<Vec<(&'static str, OwnedFd)>> {
    PINNED_MAPS
        .iter()
        .map(|name| {
            let map = ebpf.map(name).with_context(|| format!("map {name} missing"))?;
            let data = match map {
                Map::Array(d) | Map::HashMap(d) | Map::InodeStorage(d) | Map::PerCpuArray(d) | Map::RingBuf(d) | Map::LruHashMap(d) => d,
                // Task storage (`TASK_MARKS`): aya has no type for it.
                Map::Unsupported(d) if *name == MAP_TASK_MARKS => d,
                _ => bail!("map {name} has a type guard does not pin"),
            };
            Ok((*name, data.fd().as_fd().try_clone_to_owned()?))
        })
        .collect()
}

/// Removes an instance: its link pins first (each program detaches as its
/// last reference goes), then its map pins and directories. Only guard may.
pub fn retire(dir: &Path) -> Result<()> {
    for sub in ["links", "maps"] {
        let d = dir.join(sub);
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e?.path();
            std::fs::remove_file(&p).with_context(|| format!("removing pin {}", p.display()))?;
        }
        std::fs::remove_dir(&d).with_context(|| format!("removing {}", d.display()))?;
    }
    std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}
