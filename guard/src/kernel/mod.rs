//! The agent's handle on the kernel side: loading the object with the
//! running kernel's struct layout, or adopting an instance that is already
//! enforcing; the typed maps; attaching, pinning and retiring.
//!
//! An *instance* is one loaded copy of guard's programs and maps. It is
//! pinned under `PIN_ROOT/<id>/` (links and maps), so it enforces whether or
//! not an agent runs: killing the agent changes no decision. A restarted
//! agent adopts the instance (no second attach) when it runs the same
//! object with the same policy set; otherwise it arms a new instance and
//! only then retires the old one, so enforcement never has a gap.
//!
//! Order matters for all-or-nothing: `Kernel::load` creates maps and loads
//! (verifies) every program but attaches nothing; the caller fills the maps
//! and only then calls `arm` (or, for the bench, `attach`). Dropping a
//! `Kernel` that was never armed detaches everything and frees every map,
//! so an error before that leaves the kernel exactly as it was.

pub mod btf;
pub mod doors;
mod hotpath;
pub mod pathcount;
pub mod pins;
pub mod preflight;
pub mod swap;
pub mod trust;

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, HashMap, InodeStorage, Map, MapData, PerCpuArray, RingBuf},
    programs::{lsm::LsmLinkId, Lsm},
    Ebpf, EbpfLoader,
};
use guard_common::*;

/// The eBPF object, built by `guard/build.rs` from `guard-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-ebpf"));

/// An `O_PATH` fd of `path` (plus `extra` open flags such as `O_NOFOLLOW`):
/// the inode without opening the file, so it never passes through
/// `file_open` (guard's own included). What the agent tags is addressed so.
pub fn open_o_path(path: &Path, extra: i32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_CLOEXEC | extra).open(path)
}

/// `BPF_NOEXIST`: insert only if absent.
const BPF_NOEXIST: u64 = 1;

/// Every map the agent writes or reads.
pub struct Maps {
    pub rules: InodeStorage<MapData, InodeRule>,
    pub policies: Array<MapData, PolicyEntry>,
    pub uids: HashMap<MapData, UidKey, u32>,
    pub unit_cgroups: HashMap<MapData, u64, UnitPolicy>,
    pub counters: PerCpuArray<MapData, u64>,
    pub trusted: HashMap<MapData, FileKey, u32>,
    pub objects: HashMap<MapData, ObjKey, u32>,
    pub self_state: Array<MapData, SelfState>,
    pub stats: PerCpuArray<MapData, PolicyStats>,
    pub evicted: HashMap<MapData, FileKey, InodeRule>,
    pub unit_names: HashMap<MapData, UnitName, UnitPolicy>,
    pub cgroup_parents: HashMap<MapData, u64, u32>,
    pub exe_bindings: HashMap<MapData, ExeBinding, u32>,
    pub unit_owners: HashMap<MapData, u64, u32>,
    /// Active swap block devices (`MAP_SWAP_DEVS`, see `swap.rs`).
    pub swap_devs: HashMap<MapData, u32, u32>,
    pub active: Array<MapData, u32>,
    /// `ACTIVE` mapped shared (`None` for an instance made before it was
    /// mmapable: then the switch goes through `BPF_MAP_UPDATE_ELEM`).
    pub active_mmap: Option<ActiveMmap>,
}

/// The `ACTIVE` map's value, mapped into the agent: the one place the
/// generation in force is switched, by an atomic 4-byte store (see
/// `MAP_ACTIVE`: the map update syscall may copy byte by byte).
pub struct ActiveMmap {
    ptr: std::ptr::NonNull<std::sync::atomic::AtomicU32>,
    len: usize,
}

// SAFETY: the mapping is process-wide and only reached through atomics.
unsafe impl Send for ActiveMmap {}

impl ActiveMmap {
    fn new(fd: BorrowedFd<'_>) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let len = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a fresh shared mapping of the map's value area (one page
        // holds ACTIVE's single u32 at offset 0); checked for MAP_FAILED.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast()).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len })
    }

    /// Switches the generation in force: one aligned 4-byte atomic store.
    pub fn store(&self, gen: u32) {
        // SAFETY: the mapping lives as long as self; the value is a
        // page-aligned u32, so an AtomicU32 at that address is valid.
        unsafe { self.ptr.as_ref() }.store(gen, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for ActiveMmap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The maps guard pins, by name (the ring buffer too: a restarted agent
/// reads what the kernel wrote while no agent ran).
pub const PINNED_MAPS: [&str; 19] = [
    MAP_ACTIVE,
    MAP_UNIT_NAMES,
    MAP_UNIT_OWNERS,
    MAP_TASK_MARKS,
    MAP_EXE_BINDINGS,
    MAP_CGROUP_PARENTS,
    MAP_INODE_RULES,
    MAP_POLICIES,
    MAP_ALLOWED_UIDS,
    MAP_UNIT_CGROUPS,
    MAP_COUNTERS,
    MAP_TRUSTED,
    MAP_GUARD_OBJECTS,
    MAP_SELF,
    MAP_POLICY_STATS,
    MAP_EVICTED,
    MAP_EVENTS,
    MAP_BURSTS,
    MAP_SWAP_DEVS,
];

pub struct Kernel {
    /// The loaded object, for a fresh load (`None` once adopted from pins).
    ebpf: Option<Ebpf>,
    pub maps: Maps,
    /// Taken by the event reader.
    pub events: Option<RingBuf<MapData>>,
    /// The per-opener counts behind coalesced records; taken by the event reader.
    pub bursts: Option<HashMap<MapData, BurstKey, BurstState>>,
    /// Attached but not pinned (the bench; an instance before `arm` pins it),
    /// by enforcing program name.
    links: Vec<(&'static str, LsmLinkId)>,
    /// The ELF program loaded for each enforcing program (fresh loads).
    pub(crate) chosen: Vec<(&'static str, &'static str)>,
    /// Kernel-side diagnostics (aya-log); taken by the agent, which drains it.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The pin directory of this instance, once armed or adopted.
    pub instance: Option<PathBuf>,
    /// (program name, kernel id) of this instance's programs.
    pub programs: Vec<(String, u32)>,
    /// Duplicated fds of the maps to pin, for `arm` (fresh loads only).
    map_fds: Vec<(&'static str, std::os::fd::OwnedFd)>,
}

/// What a load needs from the running kernel: its struct layout, and the
/// program built for each hook's shape there.
pub struct Target {
    pub layout: KernelLayout,
    pub programs: preflight::Programs,
    /// What is refused of kernel memory (`MAP_DOORS`).
    pub doors: MemoryDoors,
}

impl Target {
    /// From the running kernel's BTF, checked (every hook, every field).
    pub fn running() -> Result<Self> {
        let btf = btf::Btf::from_file(Path::new("/sys/kernel/btf/vmlinux"))?;
        Self::of(&btf)
    }

    pub fn of(btf: &btf::Btf) -> Result<Self> {
        let programs = preflight::check_hooks(btf).map_err(|m| {
            anyhow!(
                "{}",
                m.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        Self::with_programs(btf, programs)
    }

    /// With the programs a preflight already chose (`preflight::check_hooks`).
    pub fn with_programs(btf: &btf::Btf, programs: preflight::Programs) -> Result<Self> {
        let layout =
            btf::kernel_layout(btf).context("this kernel's structs lack a field guard reads")?;
        Ok(Self { layout, programs, doors: doors::doors(btf)? })
    }

    /// The fingerprint of the eBPF object, the layout it is loaded with and
    /// the program variants chosen for this kernel.
    pub fn object_hash(&self) -> u64 {
        // SAFETY: KernelLayout is repr(C) plain u32s with no padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &self.layout as *const KernelLayout as *const u8,
                std::mem::size_of::<KernelLayout>(),
            )
        };
        let elves: Vec<&[u8]> = self.programs.0.iter().map(|c| c.elf.as_bytes()).collect();
        fnv64(&[&[OBJECT, bytes][..], &elves[..]].concat())
    }
}

/// Kernel counters summed over CPUs, indexed by `CNT_*`.
pub type Counters = [u64; CNT_MAX as usize];

impl Kernel {
    /// Creates the maps and loads (verifies) every enforcing program, each
    /// in the variant `programs` chose for this kernel's hook (and, for the
    /// bench, the empty one); attaches nothing.
    pub fn load(
        target: &Target,
        ringbuf_bytes: u32,
        max_openers: u32,
        with_empty: bool,
    ) -> Result<Self> {
        let (layout, programs) = (&target.layout, &target.programs);
        let btf =
            aya::Btf::from_sys_fs().context("reading kernel BTF from /sys/kernel/btf/vmlinux")?;
        let mut loader = EbpfLoader::new();
        // TASK_MARKS is task storage, which aya creates but has no type for.
        loader.allow_unsupported_maps();
        loader.btf(Some(&btf));
        loader.override_global(GLOBAL_LAYOUT, layout, true);
        loader.map_max_entries(MAP_EVENTS, ringbuf_bytes);
        loader.map_max_entries(MAP_BURSTS, max_openers);
        // A debugging knob: the verifier's full log in a load error.
        if std::env::var_os("GUARD_VERIFIER_LOG").is_some_and(|v| v == "verbose") {
            loader.verifier_log_level(aya::VerifierLogLevel::VERBOSE | aya::VerifierLogLevel::STATS);
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| explain_load_error(anyhow!(e)))?;
        // Must be taken before the programs load (it holds the log map's fd).
        let logger = aya_log::EbpfLogger::init(&mut ebpf).map_err(|e| anyhow!("kernel-side logger: {e}"))?;

        let mut chosen: Vec<(&'static str, &'static str, &'static str)> = Vec::new();
        for (name, hook) in ENFORCING_PROGRAMS {
            let c = programs
                .get(name)
                .with_context(|| format!("no program chosen for {name} (LSM hook {hook})"))?;
            chosen.push((name, c.elf, hook));
        }
        if with_empty {
            chosen.push((PROG_EMPTY, PROG_EMPTY, "file_open"));
        }
        let mut loaded = Vec::new();
        for &(name, elf, hook) in &chosen {
            let prog: &mut Lsm = ebpf
                .program_mut(elf)
                .with_context(|| format!("program {elf} missing from the eBPF object"))?
                .try_into()
                .with_context(|| format!("program {elf} is not an LSM program"))?;
            prog.load(hook, &btf)
                .map_err(|e| explain_load_error(anyhow!(e)))
                .with_context(|| format!("the kernel refused program {elf} (LSM hook {hook})"))?;
            loaded.push((name.to_string(), prog.info()?.id()));
        }
        let chosen = chosen
            .into_iter()
            .map(|(name, elf, _)| (name, elf))
            .collect();

        let map_fds = pins::map_fds(&ebpf)?;
        let mut take = |name: &str| ebpf.take_map(name).with_context(|| format!("map {name} missing from the eBPF object"));
        let mut maps = Maps::from_taken(&mut take)?;
        let events = Some(RingBuf::try_from(take(MAP_EVENTS)?)?);
        let bursts = Some(HashMap::try_from(take(MAP_BURSTS)?)?);
        maps.probe_inode_storage()?;
        let mut doors: Array<MapData, MemoryDoors> = Array::try_from(take(MAP_DOORS)?)?;
        doors.set(0, target.doors, 0).map_err(|e| anyhow!(e)).context("writing DOORS")?;
        Ok(Self {
            ebpf: Some(ebpf),
            maps,
            events,
            bursts,
            links: Vec::new(),
            chosen,
            logger: Some(logger),
            instance: None,
            programs: loaded,
            map_fds,
        })
    }

    /// Opens an instance that is already enforcing, from its pins. Nothing
    /// is loaded or attached: the kernel's decisions do not change.
    pub fn adopt(dir: &Path) -> Result<Self> {
        let mut take = |name: &str| -> Result<Map> {
            let path = pins::map_pin(dir, name);
            let data = MapData::from_pin(&path).map_err(|e| {
                anyhow!(e).context(format!(
                    "opening pinned map {} (guard only lets its own binary open its maps; \
                     is this the binary that loaded it?)",
                    path.display()
                ))
            })?;
            Map::from_map_data(data).map_err(|e| anyhow!(e))
        };
        let maps = Maps::from_taken(&mut take)?;
        let events = Some(RingBuf::try_from(take(MAP_EVENTS)?)?);
        let bursts = Some(HashMap::try_from(take(MAP_BURSTS)?)?);
        let mut programs = Vec::new();
        for key in maps.objects.keys() {
            let key = key?;
            if key.kind == OBJ_PROG {
                let name = aya::programs::loaded_programs()
                    .filter_map(|p| p.ok())
                    .find(|p| p.id() == key.id)
                    .and_then(|p| p.name_as_str().map(String::from))
                    .unwrap_or_default();
                programs.push((full_program_name(&name), key.id));
            }
        }
        let logger = programs
            .iter()
            .find(|(n, _)| n == PROG_FILE_OPEN)
            .and_then(|(_, id)| aya_log::EbpfLogger::init_from_id(*id).ok());
        Ok(Self {
            ebpf: None,
            maps,
            events,
            bursts,
            links: Vec::new(),
            chosen: Vec::new(),
            logger,
            instance: Some(dir.to_path_buf()),
            programs,
            map_fds: Vec::new(),
        })
    }

    /// The ELF program loaded for enforcing program `name`.
    pub(crate) fn elf_of(&self, name: &str) -> Result<&'static str> {
        self.chosen
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, elf)| *elf)
            .with_context(|| format!("program {name} was not loaded"))
    }

    /// Attaches one program of a fresh load (unpinned: it lives as long as this `Kernel`).
    pub fn attach(&mut self, name: &'static str) -> Result<()> {
        let elf = self.elf_of(name)?;
        let ebpf = self
            .ebpf
            .as_mut()
            .context("an adopted instance has no programs to attach")?;
        let prog: &mut Lsm = ebpf
            .program_mut(elf)
            .context("program missing")?
            .try_into()?;
        let id = prog.attach().map_err(|e| explain_load_error(anyhow!(e)))?;
        self.links.push((name, id));
        Ok(())
    }

    pub fn detach(&mut self, name: &str) -> Result<()> {
        if self.ebpf.is_none() {
            return Ok(());
        }
        while let Some(pos) = self.links.iter().position(|(n, _)| *n == name) {
            let (n, id) = self.links.remove(pos);
            let elf = self.elf_of(n)?;
            let ebpf = self.ebpf.as_mut().context("not a fresh load")?;
            let prog: &mut Lsm = ebpf
                .program_mut(elf)
                .context("program missing")?
                .try_into()?;
            prog.detach(id)?;
        }
        Ok(())
    }

    /// Detaches what this `Kernel` attached and did not pin.
    pub fn detach_all(&mut self) {
        let names: Vec<&'static str> = self.links.iter().map(|(n, _)| *n).collect();
        for n in names {
            if let Err(e) = self.detach(n) {
                log::warn!("detaching {n}: {e:#}");
            }
        }
    }

    /// The enforcing programs this instance has attached (pinned or not).
    pub fn attached(&self) -> Vec<String> {
        if let Some(dir) = &self.instance {
            return pins::link_names(dir);
        }
        self.links.iter().map(|(n, _)| n.to_string()).collect()
    }

    /// Kernel counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let mut out = [0u64; CNT_MAX as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = self.maps.counters.get(&(i as u32), 0)?;
            *slot = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// Per-policy kernel statistics, summed over CPUs.
    pub fn policy_stats(&self, policy_id: u32) -> Result<PolicyStats> {
        let per_cpu = self.maps.stats.get(&policy_id, 0)?;
        let mut s = PolicyStats::default();
        for c in per_cpu.iter() {
            s.inherited += c.inherited;
            s.deleted += c.deleted;
            s.evicted += c.evicted;
            s.restored += c.restored;
            s.allowed += c.allowed;
            s.denied += c.denied;
            s.join_refused += c.join_refused;
            s.credentials += c.credentials;
        }
        Ok(s)
    }

    /// The kernel's own run-time statistics for a program: (run count, total ns).
    /// Only advance while `enable_runtime_stats()`'s fd is held.
    pub fn prog_stats(&self, name: &str) -> Result<(u64, u64)> {
        let id = self.programs.iter().find(|(n, _)| n == name).map(|(_, id)| *id).context("program missing")?;
        let info = aya::programs::loaded_programs()
            .filter_map(|p| p.ok())
            .find(|p| p.id() == id)
            .with_context(|| format!("program {name} (id {id}) is no longer loaded"))?;
        Ok((info.run_count(), info.run_time().as_nanos() as u64))
    }

    /// Tags one inode, addressed by an fd of it. Returns whether it was newly
    /// tagged (false: it already carried a rule, now replaced by `rule`).
    /// Sets generation `gen`'s slot of the inode's rule (the other slot,
    /// the set in force or being prepared, is kept). `true` if the inode
    /// was not protected in `gen` before.
    pub fn tag_slot(&mut self, fd: &impl AsFd, gen: u32, policy_id: u32, flags: u32) -> Result<bool> {
        let raw = fd.as_fd();
        let mut rule = self.maps.rules.get(&raw, 0).unwrap_or_default();
        let new = rule.slot(gen).is_none();
        rule.set_keeping_marks(gen, policy_id, flags);
        self.maps.rules.insert(&raw, rule, 0).map_err(|e| anyhow!(e))?;
        Ok(new)
    }

    /// The policy generation in force (0: none set yet).
    pub fn active_gen(&self) -> u32 {
        self.maps.active.get(&0, 0).unwrap_or(0)
    }

    /// Sets (or, with `None`, clears) generation `gen`'s policy of the unit
    /// whose cgroup has id `cgroup_id`; an entry left with no policy goes.
    pub fn set_unit_cgroup(&mut self, cgroup_id: u64, gen: u32, policy_id: Option<u32>) -> Result<()> {
        set_unit_entry(&mut self.maps.unit_cgroups, cgroup_id, gen, policy_id).context("writing UNIT_CGROUPS")
    }

    /// As `set_unit_cgroup`, for a unit's cgroup directory name.
    pub fn set_unit_name(&mut self, name: UnitName, gen: u32, policy_id: Option<u32>) -> Result<()> {
        set_unit_entry(&mut self.maps.unit_names, name, gen, policy_id).context("writing UNIT_NAMES")
    }

    pub fn tag_inode(&mut self, fd: &impl AsFd, rule: InodeRule) -> Result<bool> {
        let raw = fd.as_fd();
        match self.maps.rules.insert(&raw, rule, BPF_NOEXIST) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
                self.maps.rules.insert(&raw, rule, 0).map_err(|e| anyhow!(e))?;
                Ok(false)
            }
            Err(e) => Err(anyhow!(e)),
        }
    }
}

impl Kernel {
    /// Marks what the kernel would have marked had it seen `dir` (a unit's
    /// cgroup that existed before guard) appear: every subcgroup in
    /// `UNIT_CGROUPS`, every `cgroup.procs`/`cgroup.threads` with
    /// `RULE_F_CGROUP_PROCS`. New ones the kernel marks itself.
    pub fn mark_unit_cgroup(&mut self, dir: &Path, gen: u32, policy_id: u32) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let mut stack = vec![(dir.to_path_buf(), 0usize)];
        while let Some((d, depth)) = stack.pop() {
            // A cgroup removed meanwhile (the unit stopped) needs nothing.
            let meta = match std::fs::metadata(&d) {
                Err(e) if gone(&e) => continue,
                r => r.with_context(|| format!("stat {}", d.display()))?,
            };
            self.set_unit_cgroup(meta.ino(), gen, Some(policy_id))?;
            for name in ["cgroup.procs", "cgroup.threads"] {
                let f = d.join(name);
                let fd = match open_o_path(&f, 0) {
                    Err(e) if gone(&e) => continue,
                    r => r.with_context(|| format!("opening {} (O_PATH)", f.display()))?,
                };
                self.tag_slot(&fd, gen, policy_id, RULE_F_CGROUP_PROCS)?;
            }
            if depth < 16 {
                let Ok(rd) = std::fs::read_dir(&d) else { continue };
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push((e.path(), depth + 1));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Maps {
    /// Whether this kernel can attach inode storage at all: a rule that
    /// protects nothing (no generation) set on `/` and removed again. From
    /// Linux 6.18 BPF local storage is allocated with `kmalloc_nolock`,
    /// which fails on every call on a CPU without `cmpxchg16b`.
    fn probe_inode_storage(&mut self) -> Result<()> {
        let fd = open_o_path(Path::new("/"), 0).context("opening / (O_PATH) to test inode storage")?;
        let had = self.rules.get(&fd.as_fd(), 0).ok();
        let r = self.rules.insert(&fd.as_fd(), had.unwrap_or_default(), 0);
        if had.is_none() {
            let _ = self.rules.remove(&fd.as_fd());
        }
        match r {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOMEM) => Err(anyhow!(
                "this kernel cannot attach BPF inode storage to a file (ENOMEM for a {}-byte value), so guard cannot \
                 mark any file as protected. On Linux 6.18 and later the kernel allocates BPF local storage with \
                 kmalloc_nolock, which needs the CPU's 16-byte compare-and-exchange: `grep -w cx16 /proc/cpuinfo` \
                 must find it (a virtual machine started with `-cpu ...,-cx16` lacks it). Nothing was attached.\n  \
                 fix: run on a CPU (or a VM CPU model) with cx16",
                std::mem::size_of::<InodeRule>()
            )),
            Err(e) => Err(anyhow!(e).context("testing inode storage on / (nothing was attached)")),
        }
    }

    fn from_taken(take: &mut dyn FnMut(&str) -> Result<Map>) -> Result<Self> {
        let active = take(MAP_ACTIVE)?;
        Ok(Self {
            rules: InodeStorage::try_from(take(MAP_INODE_RULES)?)?,
            policies: Array::try_from(take(MAP_POLICIES)?)?,
            uids: HashMap::try_from(take(MAP_ALLOWED_UIDS)?)?,
            unit_cgroups: HashMap::try_from(take(MAP_UNIT_CGROUPS)?)?,
            counters: PerCpuArray::try_from(take(MAP_COUNTERS)?)?,
            trusted: HashMap::try_from(take(MAP_TRUSTED)?)?,
            objects: HashMap::try_from(take(MAP_GUARD_OBJECTS)?)?,
            self_state: Array::try_from(take(MAP_SELF)?)?,
            stats: PerCpuArray::try_from(take(MAP_POLICY_STATS)?)?,
            evicted: HashMap::try_from(take(MAP_EVICTED)?)?,
            unit_names: HashMap::try_from(take(MAP_UNIT_NAMES)?)?,
            cgroup_parents: HashMap::try_from(take(MAP_CGROUP_PARENTS)?)?,
            exe_bindings: HashMap::try_from(take(MAP_EXE_BINDINGS)?)?,
            unit_owners: HashMap::try_from(take(MAP_UNIT_OWNERS)?)?,
            swap_devs: HashMap::try_from(take(MAP_SWAP_DEVS)?)?,
            active_mmap: match &active {
                Map::Array(data) => ActiveMmap::new(data.fd().as_fd()).ok(),
                _ => None,
            },
            active: Array::try_from(active)?,
        })
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// Returns once no BPF program can still be running a decision that began
/// before the call: `membarrier(MEMBARRIER_CMD_GLOBAL)` waits for an RCU
/// grace period, and BPF LSM programs run inside RCU read-side sections.
/// If the kernel refuses it, waits a generous second instead.
pub fn wait_for_decisions() {
    const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
    // SAFETY: plain syscall with no pointers.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0 as libc::c_long, 0 as libc::c_long) };
    if r != 0 {
        log::warn!("membarrier(GLOBAL) failed ({}); waiting 1 s for decisions in flight", std::io::Error::last_os_error());
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Read-modify-write of one `UnitPolicy` entry (only the agent writes an
/// existing entry; the kernel only inserts new cgroups').
fn set_unit_entry<K: aya::Pod>(map: &mut HashMap<MapData, K, UnitPolicy>, key: K, gen: u32, policy_id: Option<u32>) -> Result<()> {
    let mut v = map.get(&key, 0).unwrap_or_default();
    set_unit_slot(&mut v, gen, policy_id);
    if v.gen == [0, 0] {
        let _ = map.remove(&key);
        return Ok(());
    }
    map.insert(key, v, 0).map_err(|e| anyhow!(e))
}

fn set_unit_slot(v: &mut UnitPolicy, gen: u32, policy_id: Option<u32>) {
    let b = bank(gen);
    match policy_id {
        Some(id) => {
            v.gen[b] = gen;
            v.policy_id[b] = id;
        }
        None => {
            if v.gen[b] == gen {
                v.gen[b] = 0;
                v.policy_id[b] = 0;
            }
        }
    }
}

/// The kernel truncates program names to 15 bytes; map one back to the
/// enforcing program it stands for.
fn full_program_name(short: &str) -> String {
    preflight::Programs::name_of_elf(short)
        .or_else(|| (!short.is_empty() && PROG_EMPTY.starts_with(short)).then_some(PROG_EMPTY))
        .unwrap_or(short)
        .to_string()
}

/// FNV-1a, for the instance fingerprints (not a security boundary).
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Turns `bpf_prog_run` statistics on for as long as the fd lives.
pub fn enable_runtime_stats() -> Result<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| anyhow!("enabling BPF run-time statistics (BPF_ENABLE_STATS): {e}"))
}

/// Adds a remedy to the errors people actually hit when loading.
pub fn explain_load_error(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("Operation not permitted") || text.contains("EPERM") {
        e.context(
            "the kernel refused a BPF operation with EPERM. guard must run as root (CAP_BPF, \
             CAP_PERFMON and CAP_MAC_ADMIN/CAP_SYS_ADMIN); inside containers or with kernel \
             lockdown in `confidentiality` mode BPF LSM loads are refused; and while a guard \
             instance enforces, only guard's own binary may load LSM programs (see `guard status`)",
        )
    } else if text.contains("Argument list too long") || text.contains("E2BIG") {
        e.context("the verifier rejected a program as too large for this kernel")
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use guard_common::*;

    /// The kernel's `RULE_F_SETUP_FS` mark on a setup filesystem's directory
    /// survives the agent's slot writes, in both banks and across
    /// generations (it sends new names there through setup's own tag).
    #[test]
    fn slot_writes_keep_the_setup_fs_mark() {
        let mut rule = InodeRule { flags: [RULE_F_SETUP_FS; 2], ..InodeRule::default() };
        assert_eq!(rule.slot(3), None, "the mark alone protects nothing");
        for gen in [3, 4, 5, 6] {
            rule.set_keeping_marks(gen, 7, RULE_F_CREDENTIAL | RULE_F_INHERIT | RULE_F_DIR);
            assert_ne!(rule.raw_flags() & RULE_F_SETUP_FS, 0, "mark lost after generation {gen}");
            let (policy_id, flags) = rule.slot(gen).expect("the written slot is in use");
            assert_eq!(policy_id, 7);
            assert_eq!(flags & RULE_F_CREDENTIAL, RULE_F_CREDENTIAL);
        }
        // Without a mark, nothing is added.
        let mut plain = InodeRule::default();
        plain.set_keeping_marks(3, 1, RULE_F_DIR);
        assert_eq!(plain.raw_flags(), RULE_F_DIR);
    }
}
