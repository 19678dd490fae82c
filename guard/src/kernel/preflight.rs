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
    Hook { hook: &'static str, found: Option<usize>, want: usize, promise: &'static str },
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
                 6.1 and 6.12); nothing was loaded"
            ),
            Missing::Hook { hook, found: Some(n), want, promise } => write!(
                f,
                "this kernel's BPF LSM hook `{hook}` takes {n} arguments; this guard build reads the {want}-argument \
                 form of Linux 6.1 to 6.12, and would misread the verdict. Promise that cannot be kept: {promise}.\n  \
                 fix: run a guard release built for this kernel, or a 6.1 to 6.12 kernel; nothing was loaded"
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

/// Each hook guard attaches to, its parameter count (without the LSM's
/// return value) as guard reads it, and the promise it keeps.
pub const HOOKS: [(&str, usize, &str); 17] = [
    ("bprm_check_security", 1, "a traced process cannot run guard's or systemd's binary and so take their trust; a unit's own program is never systemd's setup"),
    ("task_fix_setuid", 3, "\"the unit's own user\" (@unit, DynamicUser=) is the UID systemd switched the unit to"),
    ("file_open", 1, "a protected file opens only for its unit and allowed UIDs"),
    ("file_receive", 1, "a protected file's fd cannot be passed out of its unit (SCM_RIGHTS, pidfd_getfd)"),
    ("d_instantiate", 2, "new files inherit protection; rules come back after inode eviction; units' cgroups are recognised as they appear; a unit's credentials are protected as systemd creates them"),
    ("inode_rename", 4, "protected files cannot be renamed or replaced by outsiders; guard's pins cannot be moved"),
    ("inode_unlink", 2, "protected files and guard's pins cannot be deleted by outsiders"),
    ("path_truncate", 1, "protected files and guard's binary cannot be truncated by outsiders"),
    ("ptrace_access_check", 2, "the unit's and guard's memory cannot be read by others"),
    ("bpf", 3, "nobody else can load or attach a program that overrides guard, or reach its links"),
    ("bpf_map", 2, "nobody else can get an fd of guard's maps"),
    ("bpf_prog", 1, "nobody else can get an fd of guard's programs"),
    ("sb_umount", 2, "the bpffs holding guard's pins cannot be unmounted"),
    ("task_alloc", 2, "a child planted into a unit's cgroup with CLONE_INTO_CGROUP is an outsider"),
    ("task_free", 1, "a child planted into a unit's cgroup with CLONE_INTO_CGROUP is an outsider"),
    ("inode_mkdir", 3, "only systemd creates a protected unit's cgroup or cgroups inside it"),
    ("inode_free_security", 1, "rules outlive the inode cache"),
];

/// Every hook guard needs, with the form guard reads, from the kernel's BTF.
pub fn check_hooks(btf: &super::btf::Btf) -> Result<(), Vec<Missing>> {
    let missing: Vec<Missing> = HOOKS
        .iter()
        .filter_map(|&(hook, want, promise)| {
            let found = btf.func_params(&format!("bpf_lsm_{hook}"));
            (found != Some(want)).then_some(Missing::Hook { hook, found, want, promise })
        })
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(missing) }
}

/// The host hardening guard's threat model relies on, and what is missing
/// of it here (for a warning at start: guard still runs).
pub fn hardening_gaps() -> Vec<String> {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).ok();
    let mut gaps = Vec::new();
    match read("/sys/kernel/security/lockdown") {
        Some(l) if l.contains("[none]") => gaps.push(
            "kernel lockdown is off: root can load unsigned modules, use kexec or /dev/mem, each of which can remove \
             guard. Boot with `lockdown=integrity` (and Secure Boot) to close them"
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

    #[test]
    fn the_hook_list_matches_what_is_attached() {
        for (_, hook) in guard_common::ENFORCING_PROGRAMS {
            assert!(HOOKS.iter().any(|(h, _, _)| *h == hook), "{hook} has no preflight entry");
        }
        assert_eq!(HOOKS.len(), guard_common::ENFORCING_PROGRAMS.len());
    }

    #[test]
    fn host_kernel_hooks() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("SKIPPED: {} not present on this host", path.display());
            return;
        }
        let btf = crate::kernel::btf::Btf::from_file(path).unwrap();
        match check_hooks(&btf) {
            Ok(()) => {}
            // A newer host kernel may have the 4-argument bpf hook: then the
            // message must say so and name the promise.
            Err(m) => {
                for x in &m {
                    let t = x.to_string();
                    assert!(t.to_lowercase().contains("promise"), "{t}");
                }
            }
        }
        assert!(btf.func_params("bpf_lsm_file_open").is_some());
    }

    #[test]
    fn a_missing_or_reshaped_hook_names_the_lost_promise() {
        let gone = Missing::Hook { hook: "bpf", found: None, want: 3, promise: "p1" };
        assert!(gone.to_string().contains("no BPF LSM hook `bpf`") && gone.to_string().contains("p1"));
        let reshaped = Missing::Hook { hook: "bpf", found: Some(4), want: 3, promise: "p2" };
        let t = reshaped.to_string();
        assert!(t.contains("takes 4 arguments") && t.contains("p2") && t.contains("nothing was loaded"), "{t}");
    }
}
