//! One feed record: the kernel's `Event`, decoded and named.
//!
//! The JSON form is versioned (`"schema": "guard.event/v2"`) and described
//! by `schema/event-v2.json`; tests check every emitted record against it.
//! v2 is v1 plus `count`, `first_time`, `opener_total` and `origin`: one
//! access record may stand for many decisions (see `bursts.rs`).

use std::{collections::HashMap, path::Path, time::{Duration, SystemTime}};

use guard_common::*;
use serde::Serialize;

use super::bursts::Share;
use crate::{enforce::{file_id_from_kernel, Enforcer}, policy::{Mode, Passwd}, units};

pub const SCHEMA: &str = "guard.event/v2";

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub schema: &'static str,
    pub kind: &'static str,
    /// RFC 3339, UTC, nanoseconds: the last decision the record stands for.
    pub time: String,
    /// The first decision the record stands for (== `time` when `count` is 1).
    pub first_time: String,
    /// Decisions the record stands for: same opener process, object and
    /// decision, between `first_time` and `time`.
    pub count: u64,
    /// The opener's decisions on this object so far, this record included
    /// (null: the kernel had no room to track the opener).
    pub opener_total: Option<u64>,
    /// `kernel`: written by the kernel as it decided; `table`: the remainder
    /// of a burst, flushed by the agent from the kernel's counts once quiet.
    pub origin: &'static str,
    pub decision: &'static str,
    pub hook: &'static str,
    pub access: Vec<&'static str>,
    pub policy: String,
    pub unit: String,
    pub mode: &'static str,
    pub file: FileInfo,
    pub process: ProcessInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    /// Tamper records: what was attempted, in words; a `coredump` access
    /// record of a core the policy keeps (`core_dumps = "keep"`) says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An administrative event: an agent started or stopped, the instance was
/// unloaded, trust was handed to an upgraded binary.
#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub schema: &'static str,
    pub kind: &'static str,
    pub time: String,
    /// `agent-started`, `agent-stopped`, `unloaded`, `handover`, `replaced`,
    /// `reloaded`, `reload-failed`.
    pub action: &'static str,
    /// The pin directory of the instance concerned.
    pub instance: String,
    pub detail: String,
    /// The agent's pid.
    pub pid: u32,
}

impl Admin {
    pub fn new(action: &'static str, instance: &Path, detail: &str) -> Self {
        Self {
            schema: SCHEMA,
            kind: "admin",
            time: rfc3339(SystemTime::now()),
            action,
            instance: instance.display().to_string(),
            detail: detail.to_string(),
            pid: std::process::id(),
        }
    }
}

/// The id of the cgroup a new cgroup was refused in: a `HOOK_KERNFS_MKDIR`
/// record has no inode, and carries it as `target_tgid << 32 | detail`.
fn kernfs_dir_id(ev: &Event) -> u64 {
    (ev.target_tgid as u64) << 32 | ev.detail as u64
}

/// What a tamper record's hook and detail mean, in words.
fn tamper_detail(ev: &Event) -> String {
    match ev.hook {
        HOOK_BPF => {
            let cmd = match ev.detail {
                BPF_PROG_LOAD => "BPF_PROG_LOAD of an LSM, fmod_ret or freplace program".to_string(),
                d if d & 0xffff == BPF_PROG_LOAD => format!(
                    "BPF_PROG_LOAD of a program of type {} (any program loaded with CAP_PERFMON can read user memory)",
                    d >> 16
                ),
                BPF_LINK_CREATE => "BPF_LINK_CREATE attaching an LSM or fmod_ret program".to_string(),
                BPF_RAW_TRACEPOINT_OPEN => "BPF_RAW_TRACEPOINT_OPEN attaching a tracing/LSM program".to_string(),
                BPF_LINK_GET_FD_BY_ID => "BPF_LINK_GET_FD_BY_ID of one of guard's links".to_string(),
                other => format!("bpf command {other}"),
            };
            format!("bpf(2): {cmd}")
        }
        HOOK_BPF_MAP => format!("an fd of map id {} (guard's, or an allowed BPF tool's)", ev.detail),
        HOOK_BPF_PROG => format!("an fd of program id {} (guard's, or any while guard protects something)", ev.detail),
        HOOK_LOCKED_DOWN => format!("lockdown reason {} ({})", ev.detail, crate::kernel::doors::reason_name(ev.detail)),
        HOOK_KERNEL_READ_FILE => format!("kernel_read_file of kind {} (a kexec image)", ev.detail),
        HOOK_PERF => format!(
            "perf_event_open {}",
            if ev.target_tgid != 0 { format!("on process {}", ev.target_tgid) } else { "CPU-wide, sampling user memory or registers".to_string() }
        ),
        HOOK_SB_UMOUNT => "unmounting the bpffs holding guard's pins, or a mount above it".to_string(),
        HOOK_PTRACE => format!("ptrace-class access to guard's process {}", ev.target_tgid),
        HOOK_INODE_UNLINK | HOOK_INODE_RENAME => "removing or renaming one of guard's pins".to_string(),
        HOOK_FILE_OPEN | HOOK_FILE_RECEIVE if ev.detail == 1 => {
            "reading an active swap area (swapped-out memory, in plaintext)".to_string()
        }
        HOOK_FILE_IOCTL | HOOK_FILE_IOCTL_COMPAT => "DM_TABLE_STATUS of a device-mapper table (dm-crypt keys; `dmsetup table`)".to_string(),
        HOOK_FILE_OPEN | HOOK_PATH_TRUNCATE => "writing guard's binary or opening its pins".to_string(),
        _ => "an attempt on guard".to_string(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    /// The path the opener used (`bpf_d_path`), or the path guard tagged.
    pub path: Option<String>,
    /// `major:minor`
    pub dev: String,
    pub ino: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub exe_dev: String,
    pub exe_ino: u64,
    pub uid: u32,
    pub user: Option<String>,
    pub euid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub cgroup: Option<String>,
    pub unit: Option<String>,
}

/// A gap: records that a consumer did not get, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub schema: &'static str,
    pub kind: &'static str,
    pub time: String,
    pub missed: u64,
    pub reason: &'static str,
}

impl Gap {
    pub fn new(missed: u64, reason: &'static str) -> Self {
        Self { schema: SCHEMA, kind: "gap", time: rfc3339(SystemTime::now()), missed, reason }
    }
}

/// Decodes a ring buffer item. `None` if it has the wrong size.
pub fn decode(bytes: &[u8]) -> Option<Event> {
    if bytes.len() < std::mem::size_of::<Event>() {
        return None;
    }
    // SAFETY: Event is repr(C), plain integers, and the length is checked.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const Event) })
}

/// Names things in records: users, cgroups, files. Caches cgroup paths.
pub struct Namer {
    passwd: Option<Passwd>,
    cgroup_root: std::path::PathBuf,
    cgroups: HashMap<u64, Option<String>>,
    /// The last process's executable path: floods come from one process.
    last_exe: Option<((u32, u64), Option<String>)>,
    /// Paths of executables seen running, by (kernel dev, inode): names the
    /// executable of an opener that exited before its record was read.
    exes: HashMap<(u32, u64), String>,
    boot_offset: Duration,
}

impl Namer {
    pub fn new(passwd_path: &Path, cgroup_root: &Path) -> Self {
        Self {
            passwd: Passwd::read(passwd_path).ok(),
            cgroup_root: cgroup_root.to_path_buf(),
            cgroups: HashMap::new(),
            last_exe: None,
            exes: HashMap::new(),
            boot_offset: boot_offset(),
        }
    }

    fn cgroup(&mut self, id: u64) -> Option<String> {
        if let Some(hit) = self.cgroups.get(&id) {
            return hit.clone();
        }
        let path = units::path_of_id(&self.cgroup_root, id);
        if self.cgroups.len() > 4096 {
            self.cgroups.clear();
        }
        self.cgroups.insert(id, path.clone());
        path
    }

    /// The opener's executable path. Keyed by (tgid, executable inode), so
    /// a reused pid cannot inherit a name: `/proc/<tgid>/exe` counts only if
    /// it is the executable the kernel recorded (`exe_dev`, `exe_ino`). If
    /// the process is gone, the path that executable had when guard last
    /// saw it run; `None` if it never did (the record still carries the
    /// executable's dev and inode).
    fn exe(&mut self, tgid: u32, exe_dev: u32, exe_ino: u64) -> Option<String> {
        if let Some((key, exe)) = &self.last_exe {
            if *key == (tgid, exe_ino) {
                return exe.clone();
            }
        }
        let link = format!("/proc/{tgid}/exe");
        let live = std::fs::read_link(&link).ok().filter(|_| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&link).is_ok_and(|m| {
                let dev = m.dev();
                (libc::major(dev), libc::minor(dev), m.ino()) == (exe_dev >> 20, exe_dev & 0xfffff, exe_ino)
            })
        });
        let exe = match live {
            Some(p) => {
                let p = p.display().to_string();
                if self.exes.len() >= 4096 {
                    self.exes.clear();
                }
                self.exes.insert((exe_dev, exe_ino), p.clone());
                Some(p)
            }
            None => self.exes.get(&(exe_dev, exe_ino)).cloned(),
        };
        self.last_exe = Some(((tgid, exe_ino), exe.clone()));
        exe
    }

    pub fn record(&mut self, ev: &Event, share: &Share, origin: &'static str, enforcer: &Enforcer) -> Record {
        let tamper = ev.policy_id == SELF_POLICY_ID;
        let policy = if tamper { None } else { enforcer.policy(ev.policy_id) };
        // A refused cgroup has no inode: its cgroup's id stands in for one.
        let ino = if ev.hook == HOOK_KERNFS_MKDIR { kernfs_dir_id(ev) } else { ev.ino };
        let file_path = if ev.path_len > 1 {
            let end = ev.path.iter().position(|&b| b == 0).unwrap_or(ev.path.len());
            Some(String::from_utf8_lossy(&ev.path[..end]).into_owned())
        } else if ev.hook == HOOK_KERNFS_MKDIR {
            self.cgroup(ino).map(|rel| format!("{}{rel}", self.cgroup_root.display()))
        } else {
            enforcer
                .file(&file_id_from_kernel(ev.dev, ev.ino))
                .map(|(_, p)| p.display().to_string())
        };
        let comm_end = ev.comm.iter().position(|&b| b == 0).unwrap_or(ev.comm.len());
        let cgroup = self.cgroup(ev.cgroup_id);
        let wall = |ns: u64| SystemTime::UNIX_EPOCH + self.boot_offset + Duration::from_nanos(ns);
        let mut access = Vec::new();
        if ev.access & ACCESS_READ != 0 {
            access.push("read");
        }
        if ev.access & ACCESS_WRITE != 0 {
            access.push("write");
        }
        if ev.access & ACCESS_ALTER != 0 {
            access.push("alter");
        }
        Record {
            schema: SCHEMA,
            kind: if tamper { "tamper" } else { "access" },
            time: rfc3339(wall(ev.ts_boot_ns)),
            first_time: rfc3339(wall(share.first_ns.min(ev.ts_boot_ns))),
            count: share.count,
            opener_total: share.total,
            origin,
            decision: if ev.decision == DECISION_AUDITED { "audited" } else { "denied" },
            hook: HOOK_NAMES.get(ev.hook as usize).copied().unwrap_or("unknown"),
            access,
            policy: if tamper { "guard".into() } else { policy.map_or_else(|| format!("#{}", ev.policy_id), |p| p.name.clone()) },
            unit: policy.map_or_else(String::new, |p| p.unit.clone()),
            mode: match policy.map(|p| p.mode) {
                Some(Mode::Audit) => "audit",
                _ => "enforce",
            },
            file: FileInfo {
                path: file_path,
                dev: format!("{}:{}", ev.dev >> 20, ev.dev & 0xfffff),
                ino,
            },
            process: ProcessInfo {
                pid: ev.tgid,
                tid: ev.pid,
                comm: String::from_utf8_lossy(&ev.comm[..comm_end]).into_owned(),
                exe: self.exe(ev.tgid, ev.exe_dev, ev.exe_ino),
                exe_dev: format!("{}:{}", ev.exe_dev >> 20, ev.exe_dev & 0xfffff),
                exe_ino: ev.exe_ino,
                uid: ev.uid,
                user: self.passwd.as_ref().and_then(|p| p.name(ev.uid)).map(String::from),
                euid: ev.euid,
                gid: ev.gid,
                cgroup_id: ev.cgroup_id,
                unit: cgroup.as_deref().and_then(units::unit_of_cgroup).map(String::from),
                cgroup,
            },
            target_pid: (matches!(ev.hook, HOOK_PTRACE | HOOK_TASK_KILL | HOOK_SIGIOTASK | HOOK_SETRLIMIT | HOOK_PERF | HOOK_COREDUMP | HOOK_FOLLOW_LINK)
                && ev.target_tgid != 0)
                .then_some(ev.target_tgid),
            detail: if tamper {
                Some(tamper_detail(ev))
            } else if ev.hook == HOOK_COREDUMP && ev.detail == COREDUMP_KEPT {
                // Allowed by `core_dumps = "keep"`: an alert feed sees every core.
                Some("core dump kept: core_pattern names a file; the core is protected as a file of the unit".into())
            } else if ev.hook == HOOK_FOLLOW_LINK {
                Some(format!("following a /proc/{}/fd or map_files link: a reopen of what the unit's process holds", ev.target_tgid))
            } else {
                None
            },
        }
    }
}

impl Record {
    /// The one-line human form used when stdout is a terminal (`human.rs`).
    pub fn human(&self) -> String {
        human_of(self)
    }
}

impl Gap {
    pub fn human(&self) -> String {
        human_of(self)
    }
}

/// Every kind goes through the one formatter, over its JSON form (admin
/// records, which the agent keeps only as JSON, go there directly).
fn human_of(record: &impl Serialize) -> String {
    let v = serde_json::to_value(record).unwrap_or_default();
    super::human::line(&v).unwrap_or_else(|| v.to_string())
}

/// CLOCK_REALTIME - CLOCK_BOOTTIME, to turn `bpf_ktime_get_boot_ns` into wall time.
fn boot_offset() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let boot = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().saturating_sub(boot)
}

/// RFC 3339 in UTC with nanoseconds, without a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_795_000_000, 5);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.000000005Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }

    #[test]
    fn human_forms() {
        let mut r = samples::access("demo.service", "denied");
        assert_eq!(
            r.human(),
            "2026-11-22T01:17:01.123456789Z DENIED read /run/credentials/demo.service/api-token by pid 412 (cat) \
             uid 0 (root) cgroup /system.slice/cron.service [policy demo / file_open]"
        );
        r.count = 3;
        r.process.user = None;
        assert_eq!(
            r.human(),
            "2026-11-22T01:17:01.123456789Z DENIED x3 since 2026-11-22T01:17:00.000000000Z read /run/credentials/demo.service/api-token \
             by pid 412 (cat) uid 0 cgroup /system.slice/cron.service [policy demo / file_open]"
        );
        assert_eq!(
            samples::tamper("denied").human(),
            "2026-11-22T01:17:01.123456789Z TAMPER DENIED bpf(2): BPF_PROG_LOAD of an LSM, fmod_ret or freplace program \
             by pid 412 (cat) uid 0 (root) cgroup /system.slice/cron.service [bpf]"
        );
        let mut admin = Admin::new("reloaded", Path::new("/sys/fs/bpf/guard"), "2 policies");
        admin.time = "T".into();
        admin.pid = 300;
        assert_eq!(human_of(&admin), "T ADMIN reloaded /sys/fs/bpf/guard by pid 300: 2 policies");
        admin.detail.clear();
        assert_eq!(human_of(&admin), "T ADMIN reloaded /sys/fs/bpf/guard by pid 300");
        let mut gap = Gap::new(1200, "subscriber lagged");
        gap.time = "T".into();
        assert_eq!(gap.human(), "T GAP 1200 records missed (subscriber lagged)");
    }

    #[test]
    fn decode_rejects_short_items() {
        assert!(decode(&[0u8; 8]).is_none());
        let bytes = vec![0u8; std::mem::size_of::<Event>()];
        assert_eq!(decode(&bytes).unwrap().pid, 0);
    }
}

/// Records as the agent makes them, for tests of their consumers.
#[cfg(test)]
pub mod samples {
    use super::*;

    /// An access record (`unit`: the protected unit).
    pub fn access(unit: &str, decision: &'static str) -> Record {
        Record {
            schema: SCHEMA,
            kind: "access",
            time: "2026-11-22T01:17:01.123456789Z".into(),
            first_time: "2026-11-22T01:17:00.000000000Z".into(),
            count: 1,
            opener_total: Some(1),
            origin: "kernel",
            decision,
            hook: "file_open",
            access: vec!["read"],
            policy: "demo".into(),
            unit: unit.into(),
            mode: if decision == "audited" { "audit" } else { "enforce" },
            file: FileInfo { path: Some(format!("/run/credentials/{unit}/api-token")), dev: "0:52".into(), ino: 3 },
            process: ProcessInfo {
                pid: 412,
                tid: 412,
                comm: "cat".into(),
                exe: Some("/usr/bin/cat".into()),
                exe_dev: "0:1".into(),
                exe_ino: 5861,
                uid: 0,
                user: Some("root".into()),
                euid: 0,
                gid: 0,
                cgroup_id: 1234,
                cgroup: Some("/system.slice/cron.service".into()),
                unit: Some("cron.service".into()),
            },
            target_pid: None,
            detail: None,
        }
    }

    /// A tamper record: no unit, `policy` "guard".
    pub fn tamper(decision: &'static str) -> Record {
        Record {
            kind: "tamper",
            hook: "bpf",
            access: vec![],
            policy: "guard".into(),
            unit: String::new(),
            file: FileInfo { path: None, dev: "0:0".into(), ino: 0 },
            detail: Some("bpf(2): BPF_PROG_LOAD of an LSM, fmod_ret or freplace program".into()),
            ..access("", decision)
        }
    }
}
