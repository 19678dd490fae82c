//! Counting a policy's protected files for `guard status`.
//!
//! The kernel's inode storage cannot be listed from user space, but it can
//! be looked up by an fd of a file (an `O_PATH` fd is enough, and opens
//! nothing). So the count is of what guard can look up: every file under
//! the policy's `protect` and `setup_only` paths and under the unit's
//! credentials directory `/run/credentials/<unit>/`, whose rule names the
//! policy in the generation in force. A file whose inode the kernel evicted
//! from its cache (its rule is kept in `EVICTED` until it is read again) is
//! looked up there by (device, inode). Files are counted once, directories
//! separately.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use guard_common::InodeRule;

use crate::kernel::{trust::kernel_dev, Kernel};

/// Most inodes looked at per policy (a `protect` of a huge tree stays quick).
pub const WALK_LIMIT: usize = 100_000;

/// What a walk found for one policy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counted {
    /// Non-directories whose rule names the policy.
    pub files: u64,
    pub directories: u64,
    /// Of those, found only in the evicted-rules map.
    pub evicted: u64,
    /// The walk stopped at `WALK_LIMIT`.
    pub truncated: bool,
}

/// Where the files of a policy for `unit` can be: its paths and its
/// credentials directory.
pub fn roots(unit: &str, paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut r: Vec<PathBuf> = paths.to_vec();
    if unit != "*" && !unit.is_empty() {
        let cred = PathBuf::from(format!("/run/credentials/{unit}"));
        if !r.iter().any(|p| cred.starts_with(p)) {
            r.push(cred);
        }
    }
    r
}

/// Counts the inodes under `roots` whose rule (in `gen`) names `policy_id`.
/// `lookup` returns the rule of an inode by an fd of it, `evicted` the
/// kept rules by (kernel dev, inode).
pub fn count(
    roots: &[PathBuf],
    gen: u32,
    policy_id: u32,
    lookup: &mut dyn FnMut(&std::fs::File) -> Option<InodeRule>,
    evicted: &HashMap<(u32, u64), InodeRule>,
) -> Counted {
    let mut c = Counted::default();
    let mut seen = HashSet::new();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(path) = stack.pop() {
        if seen.len() >= WALK_LIMIT {
            c.truncated = true;
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if !seen.insert((meta.dev(), meta.ino())) || meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&path) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
        let rule = open_path(&path).and_then(|f| lookup(&f));
        let (rule, from_evicted) = match rule {
            Some(r) => (Some(r), false),
            None => (evicted.get(&(kernel_dev(meta.dev()), meta.ino())).copied(), true),
        };
        if rule.and_then(|r| r.slot(gen)).is_some_and(|(id, _)| id == policy_id) {
            if meta.is_dir() {
                c.directories += 1;
            } else {
                c.files += 1;
            }
            if from_evicted {
                c.evicted += 1;
            }
        }
    }
    c
}

/// An `O_PATH` fd: no open of the file itself (no LSM file_open, no record).
fn open_path(path: &Path) -> Option<std::fs::File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path).ok()
}

/// `count` against a pinned instance.
pub fn count_in(k: &Kernel, roots: &[PathBuf], policy_id: u32, evicted: &HashMap<(u32, u64), InodeRule>) -> Counted {
    let gen = k.active_gen();
    count(roots, gen, policy_id, &mut |f| k.maps.rules.get(f, 0).ok(), evicted)
}

/// The evicted-rules map, by (kernel dev, inode).
pub fn evicted_rules(k: &Kernel) -> HashMap<(u32, u64), InodeRule> {
    k.maps.evicted.iter().flatten().map(|(key, rule)| ((key.dev, key.ino), rule)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_whose_rule_names_the_policy_in_force() {
        let dir = std::env::temp_dir().join(format!("guard-protected-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in ["a", "b", "sub/c", "other"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        std::os::unix::fs::symlink(dir.join("a"), dir.join("link")).unwrap();
        let ino = |p: &str| std::fs::metadata(dir.join(p)).unwrap().ino();
        let mut rule = InodeRule::default();
        rule.set(3, 7, 0);
        let mut stale = InodeRule::default();
        stale.set(2, 7, 0);
        let tagged: HashMap<u64, InodeRule> =
            [(ino("a"), rule), (ino("sub/c"), rule), (ino("sub"), rule), (ino("other"), stale)].into_iter().collect();
        // "b" is in the cache no more: its rule waits in EVICTED.
        let dev = kernel_dev(std::fs::metadata(dir.join("b")).unwrap().dev());
        let evicted: HashMap<(u32, u64), InodeRule> = [((dev, ino("b")), rule)].into_iter().collect();
        let mut lookup = |f: &std::fs::File| tagged.get(&f.metadata().unwrap().ino()).copied();
        let c = count(&[dir.clone(), dir.join("sub")], 3, 7, &mut lookup, &evicted);
        assert_eq!(c, Counted { files: 3, directories: 1, evicted: 1, truncated: false }, "the other generation's rule and the symlink do not count");
        assert_eq!(count(&[dir.clone()], 3, 8, &mut lookup, &evicted).files, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn credentials_directory_is_a_root() {
        assert_eq!(roots("demo.service", &[]), vec![PathBuf::from("/run/credentials/demo.service")]);
        assert_eq!(roots("demo.service", &[PathBuf::from("/run/credentials")]), vec![PathBuf::from("/run/credentials")]);
        assert!(roots("*", &[PathBuf::from("/k")]) == vec![PathBuf::from("/k")]);
    }
}
