//! What the kernel must offer before guard loads anything, each missing
//! piece with its own error and remedy.

use std::{fmt, path::{Path, PathBuf}};

/// Where the checks look; a fake root makes them testable.
#[derive(Debug, Clone)]
pub struct SysPaths {
    pub lsm: PathBuf,
    pub btf: PathBuf,
    pub cgroup_root: PathBuf,
}

impl Default for SysPaths {
    fn default() -> Self {
        Self {
            lsm: "/sys/kernel/security/lsm".into(),
            btf: "/sys/kernel/btf/vmlinux".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// securityfs is not mounted, so the LSM list cannot be read.
    SecurityFs(PathBuf),
    /// The BPF LSM is not in the active LSM list.
    BpfLsm { active: String },
    /// No kernel BTF.
    Btf(PathBuf),
    /// No unified cgroup v2 hierarchy at the cgroup root.
    CgroupV2(PathBuf),
    /// A BPF LSM hook guard attaches to is missing, or has another form
    /// than guard reads: the promise it keeps cannot be kept here.
    Hook {
        hook: &'static str,
        found: Option<usize>,
        supported: Vec<usize>,
        promise: &'static str,
    },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::SecurityFs(p) => write!(
                f,
                "cannot read the active LSM list: {} does not exist.\n  \
                 fix: mount securityfs: `mount -t securityfs securityfs /sys/kernel/security`",
                p.display()
            ),
            Missing::BpfLsm { active } => write!(
                f,
                "the BPF LSM is not active (active LSMs: {active}).\n  \
                 fix: the kernel needs CONFIG_BPF_LSM=y (Debian 11+ and most distributions have it); \
                 add `bpf` to the LSM list on the kernel command line, keeping the others: \
                 `lsm={active},bpf` (e.g. in GRUB_CMDLINE_LINUX of /etc/default/grub, then \
                 `update-grub` and reboot). Check with `cat /sys/kernel/security/lsm`."
            ),
            Missing::Btf(p) => write!(
                f,
                "the kernel has no BTF type information ({} does not exist).\n  \
                 fix: guard needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, \
                 Fedora and RHEL kernels from 5.10 on have it); install such a kernel.",
                p.display()
            ),
            Missing::Hook { hook, found: None, promise, .. } => write!(
                f,
                "this kernel has no BPF LSM hook `{hook}` (no bpf_lsm_{hook} in its BTF), so guard cannot keep \
                 this promise: {promise}.\n  fix: run guard on a kernel that has it (guard is tested on Debian's \
                 6.1, 6.12 and 7.2); nothing was loaded"
            ),
            Missing::Hook { hook, found: Some(n), supported, promise } => write!(
                f,
                "this kernel's BPF LSM hook `{hook}` takes {n} arguments; this guard build has programs for the {} \
                 form of it only, and would misread the verdict. Promise that cannot be kept: {promise}.\n  \
                 fix: run a guard release that knows this kernel's form of `{hook}` (guard is tested on Debian's \
                 6.1, 6.12 and 7.2 kernels); nothing was loaded",
                supported.iter().map(|p| format!("{p}-argument")).collect::<Vec<_>>().join(" and ")
            ),
            Missing::CgroupV2(p) => write!(
                f,
                "no unified cgroup v2 hierarchy at {} (guard matches openers by their cgroup v2 id).\n  \
                 fix: boot with `systemd.unified_cgroup_hierarchy=1` (the default since systemd 247) \
                 or mount cgroup2 there: `mount -t cgroup2 none {}`",
                p.display(),
                p.display()
            ),
        }
    }
}

/// The active LSMs, or what is missing.
pub fn check(paths: &SysPaths) -> Result<Vec<String>, Vec<Missing>> {
    let mut missing = Vec::new();
    let mut active = Vec::new();
    match std::fs::read_to_string(&paths.lsm) {
        Ok(list) => {
            active = list.trim().split(',').filter(|s| !s.is_empty()).map(String::from).collect();
            if !active.iter().any(|l| l == "bpf") {
                missing.push(Missing::BpfLsm { active: active.join(",") });
            }
        }
        Err(_) => missing.push(Missing::SecurityFs(paths.lsm.clone())),
    }
    if !paths.btf.exists() {
        missing.push(Missing::Btf(paths.btf.clone()));
    }
    if !is_cgroup2_root(&paths.cgroup_root) {
        missing.push(Missing::CgroupV2(paths.cgroup_root.clone()));
    }
    if missing.is_empty() { Ok(active) } else { Err(missing) }
}

/// Each hook guard attaches to, and the promise it keeps. The shapes of
/// the hook that guard has a program for are in
/// `guard_common::PROGRAM_VARIANTS`.
pub const HOOKS: [(&str, &str); 29] = [
    ("bprm_check_security", "a traced process cannot run guard's or systemd's binary and so take their trust; a unit's own program is never systemd's setup"),
    ("task_fix_setuid", "\"the unit's own user\" (@unit, DynamicUser=) is the UID systemd switched the unit to"),
    ("file_open", "a protected file opens only for its unit and allowed UIDs"),
    ("file_receive", "a protected file's fd cannot be passed out of its unit (SCM_RIGHTS, pidfd_getfd)"),
    ("d_instantiate", "new files inherit protection; rules come back after inode eviction; units' cgroups are recognised as they appear; a unit's credentials are protected as systemd creates them"),
    ("inode_rename", "protected files cannot be renamed or replaced by outsiders; guard's pins cannot be moved"),
    ("inode_unlink", "protected files and guard's pins cannot be deleted by outsiders"),
    ("path_truncate", "protected files and guard's binary cannot be truncated by outsiders"),
    ("ptrace_access_check", "the unit's and guard's memory cannot be read by others"),
    ("bpf", "nobody else can load or attach a program that overrides guard, or reach its links"),
    ("bpf_map", "nobody else can get an fd of guard's maps"),
    ("bpf_prog", "nobody else can get an fd of guard's programs"),
    ("sb_umount", "the bpffs holding guard's pins cannot be unmounted"),
    ("task_alloc", "a child planted into a unit's cgroup with CLONE_INTO_CGROUP is an outsider; systemd's setup is told apart by its lineage (task storage, freed with the task)"),
    ("kernfs_init_security", "only systemd creates a protected unit's cgroup or cgroups inside it"),
    ("inode_free_security", "rules outlive the inode cache"),
    ("sb_alloc_security", "a unit's credentials are protected from the instant systemd creates them, on the filesystem systemd builds for them"),
    ("sb_free_security", "a unit's credentials are protected from the instant systemd creates them, on the filesystem systemd builds for them"),
    ("move_mount", "a refreshed set of credentials belongs to its unit; a set with a file guard could not protect is never attached"),
    ("locked_down", "kernel memory (/proc/kcore, kprobes, BPF and perf kernel reads, tracefs, debugfs, hibernation) and the integrity routes to it (unsigned modules, kexec, /dev/mem, MSR, PCI, ACPI tables) are refused to all but guard"),
    ("kernel_read_file", "no kexec image is loaded while guard protects anything"),
    ("cred_prepare", "a protected unit's process never dumps core, whatever crashes it and wherever core_pattern points"),
    ("task_kill", "nobody outside a unit but systemd sends its processes a signal that dumps core"),
    ("file_send_sigiotask", "no F_SETOWN/F_SETSIG signal that dumps core reaches a protected unit's process"),
    ("task_setrlimit", "nobody outside a unit changes its processes' resource limits"),
    ("perf_event_alloc", "no perf event samples a protected unit's processes (or systemd's, or guard's) for an outsider, nor user memory CPU-wide"),
    ("file_ioctl", "no one but guard reads a device-mapper table (dm-crypt's key, the way into an encrypted swap) while guard protects anything"),
    ("file_ioctl_compat", "a 32-bit dmsetup cannot read a device-mapper table either"),
    ("inode_follow_link", "nobody outside a unit reopens what its processes hold (a memfd, a pipe, a deleted file) through /proc/<pid>/fd or map_files"),
];

/// The promise the enforcing program on `hook` keeps.
fn promise_of(hook: &str) -> &'static str {
    HOOKS
        .iter()
        .find(|(h, _)| *h == hook)
        .map_or("(unlisted hook)", |(_, p)| p)
}

/// The parameter counts of `hook` that guard has a program for.
fn shapes_of(name: &str) -> Vec<usize> {
    guard_common::PROGRAM_VARIANTS
        .iter()
        .filter(|(n, _, _)| *n == name)
        .map(|(_, _, p)| *p)
        .collect()
}

/// The program chosen for one enforcing program on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    /// The enforcing program (`guard_common::ENFORCING_PROGRAMS`): the name
    /// its link is pinned and reported under.
    pub name: &'static str,
    /// The ELF program loaded for it.
    pub elf: &'static str,
    pub hook: &'static str,
    /// The hook's parameter count that program reads.
    pub params: usize,
}

/// One program per enforcing program, each built for the shape its hook
/// has on the running kernel (see `guard_common::PROGRAM_VARIANTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs(pub Vec<Chosen>);

impl Programs {
    /// The program loaded for enforcing program `name`.
    pub fn get(&self, name: &str) -> Option<&Chosen> {
        self.0.iter().find(|c| c.name == name)
    }

    /// The enforcing program an ELF program (or its name as the kernel
    /// truncates it, 15 bytes) stands for.
    pub fn name_of_elf(short: &str) -> Option<&'static str> {
        guard_common::PROGRAM_VARIANTS
            .iter()
            .find(|(_, elf, _)| !short.is_empty() && elf.starts_with(short))
            .map(|(name, _, _)| *name)
    }
}

/// Picks, for each enforcing program, the variant whose parameter count is
/// the one `params_of(hook)` reports (the BTF prototype of `bpf_lsm_<hook>`),
/// never a kernel version. A hook that is missing, or has a shape guard was
/// not built for, is a `Missing::Hook` naming the promise lost.
pub fn select(params_of: impl Fn(&str) -> Option<usize>) -> Result<Programs, Vec<Missing>> {
    let mut chosen = Vec::new();
    let mut missing = Vec::new();
    for (name, hook) in guard_common::ENFORCING_PROGRAMS {
        let found = params_of(hook);
        let pick = guard_common::PROGRAM_VARIANTS.iter().find(|&&(n, _, p)| n == name && Some(p) == found);
        match pick {
            Some(&(_, elf, params)) => chosen.push(Chosen {
                name,
                elf,
                hook,
                params,
            }),
            None => missing.push(Missing::Hook {
                hook,
                found,
                supported: shapes_of(name),
                promise: promise_of(hook),
            }),
        }
    }
    if missing.is_empty() {
        Ok(Programs(chosen))
    } else {
        Err(missing)
    }
}

/// The check before anything loads: each chosen program reads exactly the
/// parameters the running kernel's hook has. Independent of `select`, so a
/// wrong pick (a program that would read a parameter as the verdict) is
/// refused here.
pub fn verify(
    programs: &Programs,
    params_of: impl Fn(&str) -> Option<usize>,
) -> Result<(), Vec<Missing>> {
    let mut missing = Vec::new();
    for (name, hook) in guard_common::ENFORCING_PROGRAMS {
        let found = params_of(hook);
        let ok = programs
            .get(name)
            .is_some_and(|c| c.hook == hook && Some(c.params) == found);
        if !ok {
            missing.push(Missing::Hook {
                hook,
                found,
                supported: shapes_of(name),
                promise: promise_of(hook),
            });
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Every hook guard needs, and the program for the form this kernel's BTF
/// gives it: selected, then verified.
pub fn check_hooks(btf: &super::btf::Btf) -> Result<Programs, Vec<Missing>> {
    let params_of = |hook: &str| btf.func_params(&format!("bpf_lsm_{hook}"));
    let programs = select(params_of)?;
    verify(&programs, params_of)?;
    Ok(programs)
}

/// The host hardening guard's threat model relies on, and what is missing
/// of it here (for a warning at start: guard still runs).
pub fn hardening_gaps() -> Vec<String> {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).ok();
    let mut gaps = Vec::new();
    match read("/sys/kernel/security/lockdown") {
        Some(l) if l.contains("[none]") => gaps.push(
            "kernel lockdown is off. While it protects anything, guard itself refuses every lockdown reason but \
             LOCKDOWN_XFRM_SECRET to everyone but guard (/proc/kcore, kprobes and BPF kernel reads, perf, tracefs, \
             debugfs, unsigned modules, kexec, /dev/mem, MSR, PCI, ACPI tables, hibernation); what no hook sees \
             (a reboot into another command line, firmware) needs Secure Boot and `lockdown=integrity`"
                .to_string(),
        ),
        None => gaps.push("cannot read /sys/kernel/security/lockdown: lockdown state unknown".to_string()),
        _ => {}
    }
    if read("/proc/sys/kernel/modules_disabled").as_deref() == Some("0") {
        gaps.push(
            "kernel module loading is enabled: a module loaded by root runs below guard. Set \
             `kernel.modules_disabled=1` once boot has loaded what it needs, or rely on lockdown with module signing"
                .to_string(),
        );
    }
    if read("/sys/kernel/kexec_crash_loaded").as_deref() == Some("1") {
        gaps.push(
            "a crash kernel is loaded (kdump): after a panic, which root can cause, it reads all of memory, the \
             units' secrets included. guard refuses new kexec loads while it protects anything, not one already \
             loaded: unload it with `kexec -p -u` (or drop crashkernel= from the kernel command line)"
                .to_string(),
        );
    }
    if read("/proc/sys/kernel/kexec_load_disabled").as_deref() == Some("0") {
        gaps.push("kexec is enabled: root can boot another kernel without guard. Set `kernel.kexec_load_disabled=1`".to_string());
    }
    gaps
}

/// `cgroup.controllers` only exists at the root of a cgroup v2 hierarchy.
fn is_cgroup2_root(root: &Path) -> bool {
    root.join("cgroup.controllers").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("guard-preflight-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cgroup")).unwrap();
        dir
    }

    fn paths(root: &Path) -> SysPaths {
        SysPaths { lsm: root.join("lsm"), btf: root.join("vmlinux"), cgroup_root: root.join("cgroup") }
    }

    #[test]
    fn all_present() {
        let root = fake_root("ok");
        std::fs::write(root.join("lsm"), "lockdown,capability,yama,bpf\n").unwrap();
        std::fs::write(root.join("vmlinux"), b"x").unwrap();
        std::fs::write(root.join("cgroup/cgroup.controllers"), b"cpu io\n").unwrap();
        let active = check(&paths(&root)).unwrap();
        assert_eq!(active, ["lockdown", "capability", "yama", "bpf"]);
    }

    #[test]
    fn each_missing_feature_has_its_own_error_and_remedy() {
        let root = fake_root("none");
        std::fs::write(root.join("lsm"), "lockdown,capability,apparmor\n").unwrap();
        let errs = check(&paths(&root)).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(text[0].contains("BPF LSM is not active"), "{}", text[0]);
        assert!(text[0].contains("lsm=lockdown,capability,apparmor,bpf"), "{}", text[0]);
        assert!(text[1].contains("CONFIG_DEBUG_INFO_BTF=y"), "{}", text[1]);
        assert!(text[2].contains("systemd.unified_cgroup_hierarchy=1"), "{}", text[2]);
    }

    #[test]
    fn unreadable_lsm_list_says_mount_securityfs() {
        let root = fake_root("nosecfs");
        std::fs::write(root.join("vmlinux"), b"x").unwrap();
        std::fs::write(root.join("cgroup/cgroup.controllers"), b"").unwrap();
        let errs = check(&paths(&root)).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("mount -t securityfs"));
    }
}

#[cfg(test)]
mod hook_tests {
    use super::*;

    /// The parameter counts of Debian's 6.1 and 6.12 kernels (`bpf` has 3)
    /// and of 6.15 and later (`bpf` has 4), as their BTF gives them.
    fn shape(bpf: usize) -> impl Fn(&str) -> Option<usize> {
        move |hook: &str| {
            if hook == "bpf" {
                return Some(bpf);
            }
            let (name, _) = guard_common::ENFORCING_PROGRAMS
                .iter()
                .find(|(_, h)| *h == hook)?;
            guard_common::PROGRAM_VARIANTS
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|v| v.2)
        }
    }

    #[test]
    fn the_hook_list_matches_what_is_attached() {
        for (name, hook) in guard_common::ENFORCING_PROGRAMS {
            assert!(
                HOOKS.iter().any(|(h, _)| *h == hook),
                "{hook} has no preflight entry"
            );
            assert!(
                !shapes_of(name).is_empty(),
                "{name} has no program in PROGRAM_VARIANTS"
            );
        }
        assert_eq!(HOOKS.len(), guard_common::ENFORCING_PROGRAMS.len());
        for (name, _, _) in guard_common::PROGRAM_VARIANTS {
            assert!(
                guard_common::ENFORCING_PROGRAMS
                    .iter()
                    .any(|(n, _)| *n == name),
                "{name} is not an enforcing program"
            );
        }
    }

    #[test]
    fn each_bpf_shape_gets_its_own_program() {
        let old = select(shape(3)).unwrap();
        assert_eq!(
            old.get(guard_common::PROG_BPF).unwrap().elf,
            guard_common::PROG_BPF
        );
        let new = select(shape(4)).unwrap();
        assert_eq!(
            new.get(guard_common::PROG_BPF).unwrap().elf,
            guard_common::PROG_BPF_KFLAG
        );
        assert_eq!(new.0.len(), guard_common::ENFORCING_PROGRAMS.len());
        verify(&old, shape(3)).unwrap();
        verify(&new, shape(4)).unwrap();
    }

    #[test]
    fn a_wrong_variant_is_refused_before_anything_loads() {
        let old = select(shape(3)).unwrap();
        let errs = verify(&old, shape(4)).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        let t = errs[0].to_string();
        assert!(
            t.contains("hook `bpf` takes 4 arguments") && t.contains("nothing was loaded"),
            "{t}"
        );
    }

    #[test]
    fn an_unknown_shape_names_the_forms_guard_has() {
        let errs = select(shape(5)).unwrap_err();
        assert_eq!(errs.len(), 1);
        let t = errs[0].to_string();
        assert!(
            t.contains("takes 5 arguments") && t.contains("3-argument and 4-argument"),
            "{t}"
        );
        assert!(
            t.contains("Promise that cannot be kept: nobody else can load or attach"),
            "{t}"
        );
    }

    #[test]
    fn names_the_kernel_truncates_map_back() {
        assert_eq!(
            Programs::name_of_elf("guard_bpf_kflag"),
            Some(guard_common::PROG_BPF)
        );
        assert_eq!(
            Programs::name_of_elf(&guard_common::PROG_BPF_KFLAG[..15]),
            Some(guard_common::PROG_BPF)
        );
        assert_eq!(
            Programs::name_of_elf(&guard_common::PROG_FILE_OPEN[..15]),
            Some(guard_common::PROG_FILE_OPEN)
        );
    }

    #[test]
    fn host_kernel_hooks() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("SKIPPED: {} not present on this host", path.display());
            return;
        }
        let btf = crate::kernel::btf::Btf::from_file(path).unwrap();
        // Every Debian kernel from 6.1 on has a program of guard's for each hook.
        let programs = check_hooks(&btf).unwrap_or_else(|m| {
            panic!(
                "{}",
                m.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert_eq!(programs.0.len(), guard_common::ENFORCING_PROGRAMS.len());
        assert!(btf.func_params("bpf_lsm_file_open").is_some());
    }

    #[test]
    fn a_missing_hook_names_the_lost_promise() {
        let gone = Missing::Hook {
            hook: "bpf",
            found: None,
            supported: vec![3, 4],
            promise: "p1",
        };
        assert!(
            gone.to_string().contains("no BPF LSM hook `bpf`") && gone.to_string().contains("p1")
        );
    }
}
