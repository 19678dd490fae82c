//! Where a systemd unit lives in the cgroup v2 tree, and its id.
//!
//! A cgroup's id (what `bpf_get_current_cgroup_id()` returns) is the inode
//! number of its directory in cgroupfs. systemd creates the directory anew on
//! every start, so the id changes on every restart: the agent re-resolves it
//! whenever the tree changes (see `watch`) and on a periodic reconcile.

use std::{
    collections::VecDeque,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCgroup {
    /// Path below the cgroup root, e.g. `/system.slice/demo.service`.
    pub rel: String,
    pub id: u64,
    /// Depth below the root: `/system.slice/demo.service` is 2.
    pub level: u32,
}

/// Deepest level searched for a unit by name (user services sit at
/// `/user.slice/user-1000.slice/user@1000.service/app.slice/x.service`).
const MAX_SEARCH_DEPTH: usize = 6;

/// Finds the unit's cgroup: `explicit` if the policy names one, otherwise a
/// directory named like the unit below a `*.slice` (or `user@*.service`).
pub fn resolve(cgroup_root: &Path, unit: &str, explicit: Option<&str>) -> Option<UnitCgroup> {
    let dir = match explicit {
        Some(rel) => cgroup_root.join(rel.trim_start_matches('/')),
        None => search(cgroup_root, unit)?,
    };
    let meta = std::fs::metadata(&dir).ok()?;
    if !meta.is_dir() {
        return None;
    }
    let rel_path = dir.strip_prefix(cgroup_root).ok()?;
    let level = rel_path.components().count() as u32;
    Some(UnitCgroup { rel: format!("/{}", rel_path.display()), id: meta.ino(), level })
}

/// The real UID of the first non-root process in cgroup directory `dir`
/// (read from `cgroup.procs` and `/proc/<pid>/status`), if there is one.
pub fn running_uid(dir: &Path) -> Option<u32> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()).find_map(|pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse::<u32>().ok()?;
        (uid != 0).then_some(uid)
    })
}

fn search(root: &Path, unit: &str) -> Option<PathBuf> {
    let mut queue = VecDeque::from([(root.to_path_buf(), 0usize)]);
    while let Some((dir, depth)) = queue.pop_front() {
        let candidate = dir.join(unit);
        if candidate.is_dir() {
            return Some(candidate);
        }
        if depth >= MAX_SEARCH_DEPTH {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let descend = name.ends_with(".slice") || (name.starts_with("user@") && name.ends_with(".service"));
            if descend && entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                queue.push_back((entry.path(), depth + 1));
            }
        }
    }
    None
}

/// Maps a cgroup id back to its path, for naming openers in events.
/// Searches the whole tree (bounded), so callers cache the answer.
pub fn path_of_id(cgroup_root: &Path, id: u64) -> Option<String> {
    let mut queue = VecDeque::from([(cgroup_root.to_path_buf(), 0usize)]);
    let mut visited = 0;
    while let Some((dir, depth)) = queue.pop_front() {
        visited += 1;
        if visited > 20_000 {
            return None;
        }
        if std::fs::metadata(&dir).map(|m| m.ino()).ok() == Some(id) {
            let rel = dir.strip_prefix(cgroup_root).ok()?;
            return Some(format!("/{}", rel.display()));
        }
        if depth >= 12 {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                queue.push_back((entry.path(), depth + 1));
            }
        }
    }
    None
}

/// The unit a cgroup path belongs to: its last `*.service`/`*.scope` component.
pub fn unit_of_cgroup(rel: &str) -> Option<&str> {
    rel.rsplit('/').find(|c| c.ends_with(".service") || c.ends_with(".scope"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_units_below_slices_only() {
        let root = std::env::temp_dir().join(format!("guard-units-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("system.slice/demo.service")).unwrap();
        std::fs::create_dir_all(root.join("user.slice/user-1000.slice/user@1000.service/app.slice/x.service")).unwrap();
        std::fs::create_dir_all(root.join("not-a-slice/hidden.service")).unwrap();

        let demo = resolve(&root, "demo.service", None).unwrap();
        assert_eq!(demo.rel, "/system.slice/demo.service");
        assert_eq!(demo.level, 2);
        assert_eq!(demo.id, std::fs::metadata(root.join("system.slice/demo.service")).unwrap().ino());

        let x = resolve(&root, "x.service", None).unwrap();
        assert_eq!(x.level, 5);
        assert!(resolve(&root, "hidden.service", None).is_none());
        assert_eq!(resolve(&root, "whatever", Some("/not-a-slice/hidden.service")).unwrap().level, 2);
        assert_eq!(path_of_id(&root, demo.id).as_deref(), Some("/system.slice/demo.service"));
        assert_eq!(unit_of_cgroup("/system.slice/demo.service"), Some("demo.service"));
        assert_eq!(unit_of_cgroup("/user.slice"), None);
    }
}
