//! Turns a validated policy set into the kernel's maps, and keeps them
//! current as units start, stop and restart.
//!
//! - `install` writes every policy entry and allowed UID, tags every
//!   protected path that exists, and resolves each unit's cgroup. Any error
//!   aborts the whole install (the caller drops the `Kernel`, which frees
//!   the maps: nothing of a partial set ever reaches an attached program).
//! - `reconcile` runs on every cgroup tree change and periodically: a unit
//!   that (re)started gets its new cgroup id and its paths re-tagged (systemd
//!   creates a fresh credentials mount, with fresh inodes, on every start);
//!   a unit that stopped gets cgroup id 0, which no opener can match, so its
//!   files are closed to everyone until it runs again (fail closed).

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use guard_common::*;

use crate::{
    kernel::Kernel,
    policy::{Mode, Policy, PolicySet},
    units::{self, UnitCgroup},
};

/// Upper bound on inodes one agent tags (a mistaken `protect = ["/usr"]`
/// should fail loudly, not spend minutes).
pub const MAX_TAGGED: usize = 2_000_000;

/// Where systemd puts a unit's credentials.
pub fn credentials_dir(unit: &str) -> PathBuf {
    Path::new("/run/credentials").join(unit)
}

/// A unit name as `PolicyEntry::unit` holds it (NUL-padded, truncated).
pub fn unit_bytes(unit: &str) -> [u8; UNIT_NAME_LEN] {
    let mut out = [0u8; UNIT_NAME_LEN];
    let n = unit.len().min(UNIT_NAME_LEN);
    out[..n].copy_from_slice(&unit.as_bytes()[..n]);
    out
}

/// The fingerprint of a policy set: an agent may adopt a running instance
/// only if it enforces exactly this set (and trusts the same executables).
pub fn policy_hash(set: &PolicySet, trust: &[u8]) -> u64 {
    let text = format!("{:?}", set.policies);
    crate::kernel::fnv64(&[text.as_bytes(), trust])
}

/// Identity of a file as userspace sees it: (major, minor, inode).
pub type FileId = (u32, u32, u64);

pub fn file_id(meta: &std::fs::Metadata) -> FileId {
    let dev = meta.dev();
    (libc::major(dev), libc::minor(dev), meta.ino())
}

/// The same identity from a kernel `dev_t` (`MAJOR << 20 | MINOR`).
pub fn file_id_from_kernel(dev: u32, ino: u64) -> FileId {
    (dev >> 20, dev & 0xfffff, ino)
}

#[derive(Debug, Default, Clone)]
pub struct PolicyState {
    pub cgroup: Option<UnitCgroup>,
    /// Protected paths that did not exist at the last attempt.
    pub pending: Vec<PathBuf>,
    /// The identity each protected path had when it was tagged. A path whose
    /// identity changes (a new credentials mount over the old mountpoint, a
    /// file replaced by rename) is tagged again on the next reconcile.
    pub roots: HashMap<PathBuf, FileId>,
    /// Inodes this instance's agents newly tagged (kept in the kernel's
    /// `PolicyEntry::agent_tagged`, so a restarted agent continues the count).
    pub tagged: usize,
    /// Each of `executables` with the identity bound in `EXE_BINDINGS`
    /// (`None`: the file does not exist now).
    pub bound: HashMap<PathBuf, Option<FileKey>>,
}

pub struct Enforcer {
    /// The policy generation this set is (see `MAP_ACTIVE`): its policies'
    /// ids are in bank `gen & 1`, and every rule it writes is in that slot.
    pub gen: u32,
    pub policies: Vec<Policy>,
    pub state: Vec<PolicyState>,
    /// The previous generation's policies, to name records that were
    /// decided under it and read after a reload.
    retired: Vec<Policy>,
    cgroup_root: PathBuf,
    /// What the agent tagged, for naming files in events.
    files: HashMap<FileId, (u32, PathBuf)>,
}

/// What changed in one reconcile, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Started { unit: String, cgroup: String, id: u64, tagged: usize },
    Stopped { unit: String },
    Tagged { unit: String, path: PathBuf, count: usize },
    /// An executable of the policy was replaced; the new file is bound.
    Rebound { unit: String, path: PathBuf },
}

impl Enforcer {
    /// The set as generation `gen` (policy `i` gets id `bank * POLICIES_PER_BANK + i`).
    pub fn new(set: &PolicySet, cgroup_root: &Path, gen: u32) -> Self {
        let base = bank(gen) as u32 * POLICIES_PER_BANK;
        let policies = set.policies.iter().enumerate().map(|(i, p)| Policy { id: base + i as u32, ..p.clone() }).collect();
        Self {
            gen,
            policies,
            state: vec![PolicyState::default(); set.policies.len()],
            retired: Vec::new(),
            cgroup_root: cgroup_root.to_path_buf(),
            files: HashMap::new(),
        }
    }

    /// Makes this generation the one in force: a single write of `ACTIVE`,
    /// after a grace period. A decision reads an inode's rule (or a unit's
    /// entry) first and the generation in force second. Writing this
    /// generation's slots replaced those entries (RCU: a new element; the
    /// old one stays readable to decisions already holding it), so a
    /// decision that fetched an entry before the write and read `ACTIVE`
    /// after the switch would find no slot for this generation and let the
    /// open through. The grace period ends every such decision before the
    /// switch. (The explanation found for one read by root in 481,856 opens
    /// during 50 reloads, seen once on 6.12.)
    pub fn activate(&self, kernel: &mut Kernel) -> Result<()> {
        crate::kernel::wait_for_decisions();
        match &kernel.maps.active_mmap {
            Some(m) => {
                m.store(self.gen);
                Ok(())
            }
            None => {
                log::warn!("ACTIVE could not be mapped (an instance made by an older guard?); switching it with a map update");
                kernel.maps.active.set(0, self.gen, 0).context("switching the policy generation (ACTIVE)")
            }
        }
    }

    /// Writes `set` as the next generation beside this one, which stays in
    /// force. On error, what was written is removed again and this one is
    /// untouched: the caller still has a working enforcer.
    pub fn prepare_next(&self, set: &PolicySet, kernel: &mut Kernel) -> Result<Enforcer> {
        let mut next = Enforcer::new(set, &self.cgroup_root, self.gen + 1);
        next.retired = self.policies.clone();
        // Leftovers of generation gen-1 (same bank) are cleared after every
        // switch; clear again in case an earlier switch was interrupted.
        next.clear(kernel);
        if let Err(e) = next.install(kernel) {
            next.clear(kernel);
            return Err(e);
        }
        Ok(next)
    }

    /// Removes this generation's entries from the kernel's maps: its
    /// policies, UIDs and bindings, and its slot in unit names and cgroups.
    /// Rule slots on inodes stay: they name this generation, which is never
    /// active again, so they no longer count. Call only when this generation
    /// is not in force and no decision can still be reading it.
    pub fn clear(&self, kernel: &mut Kernel) {
        let lo = bank(self.gen) as u32 * POLICIES_PER_BANK;
        let mine = |id: u32| (lo..lo + POLICIES_PER_BANK).contains(&id);
        for id in lo..lo + POLICIES_PER_BANK {
            if kernel.maps.policies.get(&id, 0).is_ok_and(|e| e.mode != MODE_UNUSED) {
                let _ = kernel.maps.policies.set(id, PolicyEntry::default(), 0);
            }
        }
        let uids: Vec<UidKey> = kernel.maps.uids.keys().flatten().filter(|k| mine(k.policy_id)).collect();
        for k in uids {
            let _ = kernel.maps.uids.remove(&k);
        }
        let bindings: Vec<ExeBinding> = kernel.maps.exe_bindings.keys().flatten().filter(|k| mine(k.policy_id)).collect();
        for k in bindings {
            let _ = kernel.maps.exe_bindings.remove(&k);
        }
        // This bank's slot, whichever generation wrote it (an interrupted
        // switch may have left an older one).
        let b = bank(self.gen);
        let names: Vec<(UnitName, u32)> = kernel.maps.unit_names.iter().flatten().filter(|(_, v)| v.gen[b] != 0).map(|(k, v)| (k, v.gen[b])).collect();
        for (n, g) in names {
            let _ = kernel.set_unit_name(n, g, None);
        }
        let cgroups: Vec<(u64, u32)> = kernel.maps.unit_cgroups.iter().flatten().filter(|(_, v)| v.gen[b] != 0).map(|(k, v)| (k, v.gen[b])).collect();
        for (c, g) in cgroups {
            let _ = kernel.set_unit_cgroup(c, g, None);
        }
    }

    pub fn install(&mut self, kernel: &mut Kernel) -> Result<()> {
        if self.policies.len() > POLICIES_PER_BANK as usize {
            bail!("{} policies; at most {POLICIES_PER_BANK} are supported", self.policies.len());
        }
        for i in 0..self.policies.len() {
            let p = &self.policies[i];
            // An adopted instance already counts what earlier agents tagged.
            if let Ok(prev) = kernel.maps.policies.get(&p.id, 0) {
                if prev.mode != MODE_UNUSED && prev.unit == unit_bytes(&p.unit) {
                    self.state[i].tagged = prev.agent_tagged as usize;
                }
            }
            if p.any_unit() {
                // systemd's setup of every unit: no unit, no cgroup.
                self.state[i].pending = p.setup_only.clone();
                self.write_policy(kernel, i, None)?;
                self.tag_pending(kernel, i)?;
                continue;
            }
            self.bind_executables(kernel, i)?;
            let p = &self.policies[i];
            for uid in &p.allow_uids {
                kernel
                    .maps
                    .uids
                    .insert(UidKey { policy_id: p.id, uid: *uid }, 1, 0)
                    .with_context(|| format!("{}: writing allowed uid {uid}", p.source.display()))?;
            }
            let cgroup = units::resolve(&self.cgroup_root, &p.unit, p.cgroup.as_deref());
            let mut pending: Vec<PathBuf> = p.protect.iter().chain(&p.setup_only).cloned().collect();
            // The unit's credentials, which the kernel protects as systemd
            // writes them; tagged here too for a unit that was already
            // running when this generation (or instance) began.
            let creds = credentials_dir(&p.unit);
            if !p.protect.iter().any(|x| creds.starts_with(x)) {
                pending.push(creds);
            }
            self.register_unit(kernel, i, cgroup.as_ref())?;
            self.write_policy(kernel, i, cgroup)?;
            self.state[i].pending = pending;
            self.tag_pending(kernel, i)?;
        }
        Ok(())
    }

    /// Tells the kernel how to recognise this unit's cgroup the instant
    /// systemd creates it: its directory name under its slice.
    fn register_unit(&self, kernel: &mut Kernel, i: usize, now: Option<&UnitCgroup>) -> Result<()> {
        let p = &self.policies[i];
        let rel = match (&p.cgroup, now) {
            (Some(explicit), _) => explicit.clone(),
            (None, Some(c)) => c.rel.clone(),
            (None, None) => format!("/system.slice/{}", p.unit),
        };
        let rel = Path::new(&rel);
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new("/"));
        kernel.set_unit_name(UnitName { name: unit_bytes(&name) }, self.gen, Some(p.id))?;
        let parent_dir = self.cgroup_root.join(parent.strip_prefix("/").unwrap_or(parent));
        match std::fs::metadata(&parent_dir) {
            Ok(meta) => {
                let level = parent.components().filter(|c| matches!(c, std::path::Component::Normal(_))).count() as u32;
                kernel.maps.cgroup_parents.insert(meta.ino(), level, 0).context("writing CGROUP_PARENTS")?;
            }
            Err(e) => log::warn!(
                "{}: the cgroup {} that will hold {} does not exist ({e}); its cgroup is protected once guard sees it",
                p.source.display(),
                parent_dir.display(),
                p.unit
            ),
        }
        Ok(())
    }

    /// Binds policy `i`'s executables by their current identity. A path
    /// whose file was replaced (a package upgrade renames a new binary over
    /// it) is bound anew and the old identity unbound: processes still
    /// running the old binary lose access (closed) until restarted, and a
    /// reused inode number can never inherit the binding.
    fn bind_executables(&mut self, kernel: &mut Kernel, i: usize) -> Result<Vec<PathBuf>> {
        let p = &self.policies[i];
        let mut rebound = Vec::new();
        for path in &p.executables {
            let now = crate::kernel::trust::Exe::of(path).ok().map(|e| e.key);
            let before = self.state[i].bound.get(path).copied().flatten();
            if self.state[i].bound.contains_key(path) && now == before {
                continue;
            }
            let key = |k: FileKey| ExeBinding { policy_id: p.id, dev: k.dev, ino: k.ino };
            if let Some(k) = now {
                kernel.maps.exe_bindings.insert(key(k), 1, 0).with_context(|| format!("{}: binding {}", p.source.display(), path.display()))?;
            }
            if let Some(old) = before {
                let _ = kernel.maps.exe_bindings.remove(&key(old));
            }
            if self.state[i].bound.insert(path.clone(), now).is_some() {
                rebound.push(path.clone());
            }
        }
        Ok(rebound)
    }

    /// "The unit's own user" of a unit that was already running when this
    /// agent started (the kernel learns it at the unit's start, from then
    /// on): the real UID of one of its non-root processes. Never overwrites
    /// what the kernel recorded.
    fn fill_owner(&self, kernel: &mut Kernel, i: usize) {
        let (p, Some(c)) = (&self.policies[i], &self.state[i].cgroup) else { return };
        if !p.unit_user || kernel.maps.unit_owners.get(&c.id, 0).is_ok() {
            return;
        }
        let dir = self.cgroup_root.join(c.rel.trim_start_matches('/'));
        if let Some(uid) = units::running_uid(&dir) {
            const BPF_NOEXIST: u64 = 1;
            if kernel.maps.unit_owners.insert(c.id, uid, BPF_NOEXIST).is_ok() {
                log::info!("{}: already running as UID {uid} (\"@unit\")", p.unit);
            }
        }
    }

    fn write_policy(&mut self, kernel: &mut Kernel, i: usize, cgroup: Option<UnitCgroup>) -> Result<()> {
        let p = &self.policies[i];
        let mut flags = 0;
        if p.unit_user {
            flags |= POLICY_F_UNIT_USER;
        }
        if !p.executables.is_empty() {
            flags |= POLICY_F_EXE_BOUND;
        }
        if p.any_unit() {
            flags |= POLICY_F_ANY_UNIT;
        }
        if p.keep_cores {
            flags |= POLICY_F_KEEP_CORES;
        }
        let entry = PolicyEntry {
            cgroup_id: cgroup.as_ref().map_or(0, |c| c.id),
            cgroup_level: cgroup.as_ref().map_or(0, |c| c.level),
            mode: match p.mode {
                Mode::Enforce => MODE_ENFORCE,
                Mode::Audit => MODE_AUDIT,
            },
            rate_per_sec: p.rate_per_sec,
            rate_burst: p.rate_burst.max(1),
            agent_tagged: self.state[i].tagged as u64,
            unit: unit_bytes(&p.unit),
            flags,
            _pad: 0,
        };
        if let Some(old) = &self.state[i].cgroup {
            let _ = kernel.set_unit_cgroup(old.id, self.gen, None);
        }
        if let Some(c) = &cgroup {
            let dir = self.cgroup_root.join(c.rel.trim_start_matches('/'));
            kernel.mark_unit_cgroup(&dir, self.gen, p.id).with_context(|| format!("protecting {}'s cgroup", p.unit))?;
        }
        kernel.maps.policies.set(p.id, entry, 0).with_context(|| format!("writing policy {}", p.name))?;
        self.state[i].cgroup = cgroup;
        self.fill_owner(kernel, i);
        Ok(())
    }

    /// The `RULE_F_*` a protected path of policy `i` is tagged with.
    fn base_flags(&self, i: usize, root: &Path) -> u32 {
        let p = &self.policies[i];
        if p.setup_only.iter().any(|x| x == root) {
            RULE_F_SETUP_ONLY
        } else if !p.any_unit() && root == credentials_dir(&p.unit) {
            RULE_F_CREDENTIAL
        } else {
            0
        }
    }

    /// Tags every pending path of policy `i` that exists now. A path that
    /// fails stays pending (and is retried on the next reconcile); the first
    /// error is returned after every other path had its turn.
    fn tag_pending(&mut self, kernel: &mut Kernel, i: usize) -> Result<Vec<(PathBuf, usize)>> {
        let pending = std::mem::take(&mut self.state[i].pending);
        let mut done = Vec::new();
        let mut first_err = None;
        for path in pending {
            let res = std::fs::metadata(&path).map_err(anyhow::Error::from).and_then(|meta| {
                let n = self.tag_tree(kernel, i, &path)?;
                Ok((meta, n))
            });
            match res {
                Ok((meta, n)) => {
                    self.state[i].roots.insert(path.clone(), file_id(&meta));
                    done.push((path, n));
                }
                Err(e) => {
                    let not_found = e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound);
                    if !not_found && first_err.is_none() {
                        first_err = Some(e.context(format!("protecting {}", path.display())));
                    }
                    self.state[i].pending.push(path);
                }
            }
        }
        // `PolicyEntry::agent_tagged` is brought up to date with the next
        // whole-entry write (install, or a cgroup the kernel did not see):
        // a read-modify-write here could undo the kernel's own update of
        // the entry (a restarting unit's new cgroup id) in between.
        match first_err {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Tags `root` (following a symlink there) and, if it is a directory,
    /// everything below it, without following symlinks inside.
    fn tag_tree(&mut self, kernel: &mut Kernel, i: usize, root: &Path) -> Result<usize> {
        let policy_id = self.policies[i].id;
        let base = self.base_flags(i, root);
        let mut stack = vec![(root.to_path_buf(), true)];
        let mut count = 0;
        while let Some((path, follow)) = stack.pop() {
            let fd = match crate::kernel::open_o_path(&path, if follow { 0 } else { libc::O_NOFOLLOW }) {
                Ok(fd) => fd,
                // Raced with a deletion: nothing left to protect.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("opening {} (O_PATH)", path.display())),
            };
            let meta = fd.metadata().with_context(|| format!("stat {}", path.display()))?;
            if meta.file_type().is_symlink() {
                continue; // a link inside a protected dir: its target is not ours to claim
            }
            // Tag a directory before listing it: what is created in it from
            // then on inherits this generation's slot; what was there before
            // is listed. (Opening a protected directory is not judged.)
            let flags = base | if meta.is_dir() { RULE_F_INHERIT | RULE_F_DIR } else { 0 };
            let new = kernel
                .tag_slot(&fd, self.gen, policy_id, flags)
                .with_context(|| format!("tagging {}", path.display()))?;
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))? {
                    stack.push((entry?.path(), false));
                }
            }
            if new {
                self.state[i].tagged += 1;
            }
            self.files.insert(file_id(&meta), (policy_id, path.clone()));
            count += 1;
            if self.files.len() > MAX_TAGGED {
                bail!(
                    "more than {MAX_TAGGED} files under the protected paths of {}; \
                     protect narrower paths",
                    self.policies[i].source.display()
                );
            }
        }
        Ok(count)
    }

    /// Brings the kernel's view up to date with the cgroup tree and the
    /// protected paths. Errors are per policy and do not stop the others.
    ///
    /// Paths whose identity did not change keep their tags (inode storage
    /// lives as long as the inode); only new or replaced ones are walked.
    pub fn reconcile(&mut self, kernel: &mut Kernel) -> Vec<Result<Change>> {
        let mut out = Vec::new();
        for i in 0..self.policies.len() {
            let p = &self.policies[i];
            let unit = p.unit.clone();
            match self.bind_executables(kernel, i) {
                Ok(rebound) => out.extend(rebound.into_iter().map(|path| Ok(Change::Rebound { unit: unit.clone(), path }))),
                Err(e) => out.push(Err(e)),
            }
            let p = &self.policies[i];
            let now = if p.any_unit() { None } else { units::resolve(&self.cgroup_root, &p.unit, p.cgroup.as_deref()) };
            let changed = now.as_ref().map(|c| c.id) != self.state[i].cgroup.as_ref().map(|c| c.id);
            if changed {
                // Usually the kernel recognised the new cgroup already, at
                // its mkdir: then the entry is left alone (a whole-entry
                // write could race with the kernel's own update of it).
                let kernel_has = now.as_ref().is_some_and(|c| kernel.maps.policies.get(&p.id, 0).is_ok_and(|e| e.cgroup_id == c.id));
                let res = if kernel_has {
                    self.state[i].cgroup = now.clone();
                    self.fill_owner(kernel, i);
                    Ok(())
                } else {
                    self.register_unit(kernel, i, now.as_ref()).and_then(|()| self.write_policy(kernel, i, now.clone()))
                };
                if let Err(e) = res {
                    out.push(Err(e));
                    continue;
                }
            }
            self.requeue_replaced(i);
            let tagged = if self.state[i].pending.is_empty() {
                Vec::new()
            } else {
                match self.tag_pending(kernel, i) {
                    Ok(done) => done,
                    Err(e) => {
                        out.push(Err(e));
                        Vec::new()
                    }
                }
            };
            match (changed, now) {
                (true, Some(c)) => out.push(Ok(Change::Started {
                    unit,
                    cgroup: c.rel,
                    id: c.id,
                    tagged: tagged.iter().map(|(_, n)| n).sum(),
                })),
                (true, None) => out.push(Ok(Change::Stopped { unit })),
                (false, _) => out.extend(
                    tagged.into_iter().map(|(path, count)| Ok(Change::Tagged { unit: unit.clone(), path, count })),
                ),
            }
        }
        out
    }

    /// Moves protected paths whose identity changed (or that vanished) back
    /// to pending, so the next tagging pass covers the new inode.
    fn requeue_replaced(&mut self, i: usize) {
        let state = &mut self.state[i];
        let mut moved = Vec::new();
        for (path, id) in &state.roots {
            match std::fs::metadata(path) {
                Ok(meta) if file_id(&meta) == *id => {}
                _ => moved.push(path.clone()),
            }
        }
        for path in moved {
            state.roots.remove(&path);
            state.pending.push(path);
        }
    }

    pub fn file(&self, id: &FileId) -> Option<&(u32, PathBuf)> {
        self.files.get(id)
    }

    pub fn tagged_total(&self) -> usize {
        self.state.iter().map(|s| s.tagged).sum()
    }

    pub fn policy(&self, id: u32) -> Option<&Policy> {
        self.policies.iter().chain(&self.retired).find(|p| p.id == id)
    }

    /// The cgroup directories to watch for unit (re)starts.
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.cgroup_root.clone()];
        for (p, s) in self.policies.iter().zip(&self.state) {
            let rel = s.cgroup.as_ref().map(|c| c.rel.clone()).or_else(|| p.cgroup.clone());
            if let Some(rel) = rel {
                if let Some(parent) = Path::new(&rel).parent() {
                    dirs.push(self.cgroup_root.join(parent.strip_prefix("/").unwrap_or(parent)));
                }
            } else {
                dirs.push(self.cgroup_root.join("system.slice"));
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The one-line summary `guard run` prints once attached.
    pub fn summary(&self) -> String {
        let running: Vec<String> = self
            .policies
            .iter()
            .zip(&self.state)
            .map(|(p, s)| match &s.cgroup {
                _ if p.any_unit() => "* (systemd's credential setup of every unit)".to_string(),
                Some(c) => format!("{} (cgroup {} id {})", p.unit, c.rel, c.id),
                None => format!("{} (not running: closed to all until it starts)", p.unit),
            })
            .collect();
        let pending: usize = self.state.iter().map(|s| s.pending.len()).sum();
        format!(
            "guard: protecting {} inodes for {} policies [{}]; {} path(s) not present yet",
            self.tagged_total(),
            self.policies.len(),
            running.join(", "),
            pending
        )
    }
}
