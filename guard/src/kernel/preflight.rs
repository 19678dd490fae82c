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
