//! The agent's handle on the kernel side: loading the object with the
//! running kernel's struct layout, the typed maps, attaching and detaching.
//!
//! Order matters for all-or-nothing: `Kernel::load` creates maps and loads
//! (verifies) every program but attaches nothing; the caller fills the maps
//! and only then calls `attach_enforcing`. Dropping a `Kernel` at any point
//! detaches everything and frees every map, so an error before attach leaves
//! the kernel exactly as it was.

pub mod btf;
pub mod preflight;

use std::os::fd::AsFd;

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, HashMap, InodeStorage, MapData, PerCpuArray, RingBuf},
    programs::{lsm::LsmLinkId, Lsm},
    Ebpf, EbpfLoader,
};
use guard_common::*;

/// The eBPF object, built by `guard/build.rs` from `guard-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-ebpf"));

/// Every map the agent writes or reads, taken out of the `Ebpf` object.
pub struct Maps {
    pub rules: InodeStorage<MapData, InodeRule>,
    pub policies: Array<MapData, PolicyEntry>,
    pub uids: HashMap<MapData, UidKey, u32>,
    pub unit_cgroups: HashMap<MapData, u64, u32>,
    pub counters: PerCpuArray<MapData, u64>,
}

pub struct Kernel {
    ebpf: Ebpf,
    pub maps: Maps,
    /// Taken by the event reader.
    pub events: Option<RingBuf<MapData>>,
    links: Vec<(&'static str, LsmLinkId)>,
    /// Kernel-side diagnostics (aya-log); taken by the agent, which drains it.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

/// Kernel counters summed over CPUs, indexed by `CNT_*`.
pub type Counters = [u64; CNT_MAX as usize];

impl Kernel {
    /// Creates the maps and loads (verifies) every program; attaches nothing.
    pub fn load(layout: &KernelLayout, ringbuf_bytes: u32) -> Result<Self> {
        let btf = aya::Btf::from_sys_fs().context("reading kernel BTF from /sys/kernel/btf/vmlinux")?;
        let mut loader = EbpfLoader::new();
        loader.btf(Some(&btf));
        loader.override_global(GLOBAL_LAYOUT, layout, true);
        loader.map_max_entries(MAP_EVENTS, ringbuf_bytes);
        let mut ebpf = loader.load(OBJECT).map_err(|e| explain_load_error(anyhow!(e)))?;
        // Must be taken before the programs load (it holds the log map's fd).
        let logger = aya_log::EbpfLogger::init(&mut ebpf).map_err(|e| anyhow!("kernel-side logger: {e}"))?;

        let names: Vec<(&'static str, &'static str)> =
            ENFORCING_PROGRAMS.iter().copied().chain([(PROG_EMPTY, "file_open")]).collect();
        for (name, hook) in names {
            let prog: &mut Lsm = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the eBPF object"))?
                .try_into()
                .with_context(|| format!("program {name} is not an LSM program"))?;
            prog.load(hook, &btf)
                .map_err(|e| explain_load_error(anyhow!(e)))
                .with_context(|| format!("the kernel refused program {name} (LSM hook {hook})"))?;
        }

        let mut take = |name: &str| {
            ebpf.take_map(name).with_context(|| format!("map {name} missing from the eBPF object"))
        };
        let maps = Maps {
            rules: InodeStorage::try_from(take(MAP_INODE_RULES)?)?,
            policies: Array::try_from(take(MAP_POLICIES)?)?,
            uids: HashMap::try_from(take(MAP_ALLOWED_UIDS)?)?,
            unit_cgroups: HashMap::try_from(take(MAP_UNIT_CGROUPS)?)?,
            counters: PerCpuArray::try_from(take(MAP_COUNTERS)?)?,
        };
        let events = Some(RingBuf::try_from(take(MAP_EVENTS)?)?);
        Ok(Self { ebpf, maps, events, links: Vec::new(), logger: Some(logger) })
    }

    /// Attaches every enforcing program. On error, whatever was attached is
    /// detached again before returning.
    pub fn attach_enforcing(&mut self) -> Result<()> {
        for (name, hook) in ENFORCING_PROGRAMS {
            if let Err(e) = self.attach(name) {
                self.detach_all();
                return Err(e.context(format!("attaching {name} to LSM hook {hook}")));
            }
        }
        Ok(())
    }

    pub fn attach(&mut self, name: &'static str) -> Result<()> {
        let prog: &mut Lsm = self.ebpf.program_mut(name).context("program missing")?.try_into()?;
        let id = prog.attach().map_err(|e| explain_load_error(anyhow!(e)))?;
        self.links.push((name, id));
        Ok(())
    }

    pub fn detach(&mut self, name: &str) -> Result<()> {
        while let Some(pos) = self.links.iter().position(|(n, _)| *n == name) {
            let (n, id) = self.links.remove(pos);
            let prog: &mut Lsm = self.ebpf.program_mut(n).context("program missing")?.try_into()?;
            prog.detach(id)?;
        }
        Ok(())
    }

    pub fn detach_all(&mut self) {
        let names: Vec<&'static str> = self.links.iter().map(|(n, _)| *n).collect();
        for n in names {
            if let Err(e) = self.detach(n) {
                log::warn!("detaching {n}: {e:#}");
            }
        }
    }

    pub fn attached(&self) -> Vec<&'static str> {
        self.links.iter().map(|(n, _)| *n).collect()
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

    /// The kernel's own run-time statistics for a program: (run count, total ns).
    /// Only advance while `enable_runtime_stats()`'s fd is held.
    pub fn prog_stats(&self, name: &str) -> Result<(u64, u64)> {
        let prog: &Lsm = self.ebpf.program(name).context("program missing")?.try_into()?;
        let info = prog.info()?;
        Ok((info.run_count(), info.run_time().as_nanos() as u64))
    }

    /// Writes the map update for one inode, addressed by an fd of it.
    pub fn tag_inode(&mut self, fd: &impl AsFd, rule: InodeRule) -> Result<()> {
        let raw = fd.as_fd();
        self.maps.rules.insert(&raw, rule, 0).map_err(|e| anyhow!(e))
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// Turns `bpf_prog_run` statistics on for as long as the fd lives.
pub fn enable_runtime_stats() -> Result<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| anyhow!("enabling BPF run-time statistics (BPF_ENABLE_STATS): {e}"))
}

/// Adds a remedy to the errors people actually hit when loading.
fn explain_load_error(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("Operation not permitted") || text.contains("EPERM") {
        e.context(
            "the kernel refused a BPF operation with EPERM. guard must run as root (CAP_BPF, \
             CAP_PERFMON and CAP_MAC_ADMIN/CAP_SYS_ADMIN); inside containers or with kernel \
             lockdown in `confidentiality` mode BPF LSM loads are refused",
        )
    } else if text.contains("Argument list too long") || text.contains("E2BIG") {
        e.context("the verifier rejected a program as too large for this kernel")
    } else {
        e
    }
}
