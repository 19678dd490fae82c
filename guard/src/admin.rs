//! `guard status` and `guard unload`: what the kernel enforces now, read
//! from the pinned instance itself (no agent needed), and the one way to
//! stop it.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use guard_common::*;
use serde_json::json;

use crate::{
    feed::record::rfc3339,
    kernel::{pins, trust::Exe, Kernel},
    protected, units,
};

/// Who unloaded, for the agent's `unloaded` record.
pub const UNLOAD_NOTE: &str = "/run/guard/last-unload";

fn cstr_field(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Everything `guard status` reports about one instance. `paths`: each
/// unit's `protect` and `setup_only` paths, from the policy directory.
fn instance_status(dir: &Path, cgroup_root: &Path, paths: &BTreeMap<String, Vec<PathBuf>>) -> Result<serde_json::Value> {
    let k = Kernel::adopt(dir).with_context(|| format!("reading instance {}", dir.display()))?;
    let evicted_rules = protected::evicted_rules(&k);
    let st = k.maps.self_state.get(&0, 0)?;
    let counters = k.counters()?;
    let mut uids: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
    for key in k.maps.uids.keys() {
        let key = key?;
        uids.entry(key.policy_id).or_default().push(key.uid);
    }
    let mut policies = Vec::new();
    for id in 0..MAX_POLICIES {
        let Ok(p) = k.maps.policies.get(&id, 0) else { continue };
        if p.mode == MODE_UNUSED {
            continue;
        }
        let s = k.policy_stats(id)?;
        let mut u = uids.remove(&id).unwrap_or_default();
        u.sort_unstable();
        let protected = (p.agent_tagged + s.inherited + s.credentials).saturating_sub(s.deleted);
        let unit = cstr_field(&p.unit);
        let roots = protected::roots(&unit, paths.get(&unit).map_or(&[][..], Vec::as_slice));
        let counted = protected::count_in(&k, &roots, id, &evicted_rules);
        let owner = if p.flags & POLICY_F_UNIT_USER != 0 && p.cgroup_id != 0 { k.maps.unit_owners.get(&p.cgroup_id, 0).ok() } else { None };
        policies.push(json!({
            "policy_id": id,
            "unit": unit,
            "any_unit": unit == "*",
            "protected_files": counted.files,
            "protected_directories": counted.directories,
            "protected_files_evicted": counted.evicted,
            "protected_walk_truncated": counted.truncated,
            "protected_looked_up_under": roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>(),
            "unit_user": p.flags & POLICY_F_UNIT_USER != 0,
            "unit_uid_now": owner,
            "executables_bound": p.flags & POLICY_F_EXE_BOUND != 0,
            "credentials_tagged_by_kernel": s.credentials,
            "mode": if p.mode == MODE_AUDIT { "audit" } else { "enforce" },
            "cgroup_id": p.cgroup_id,
            "cgroup": if p.cgroup_id == 0 { None } else { units::path_of_id(cgroup_root, p.cgroup_id) },
            "running": p.cgroup_id != 0,
            "allowed_uids": u,
            "protected_inodes": protected,
            "evicted_now": s.evicted.saturating_sub(s.restored),
            "tagged_by_agent": p.agent_tagged,
            "inherited": s.inherited,
            "deleted": s.deleted,
            "allowed": s.allowed,
            "denied": s.denied,
            "join_refused": s.join_refused,
        }));
    }
    let mut trusted = Vec::new();
    for item in k.maps.trusted.iter() {
        let (key, kind) = item?;
        trusted.push(json!({
            "dev": format!("{}:{}", key.dev >> 20, key.dev & 0xfffff),
            "ino": key.ino,
            "as": match kind {
                TRUST_GUARD => "guard",
                TRUST_BPF_TOOL => "bpf-tool",
                TRUST_SYSTEMD => "systemd",
                _ => "cgroup-writer",
            },
        }));
    }
    let mut objects: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for key in k.maps.objects.keys() {
        let key = key?;
        let kind = match key.kind {
            OBJ_MAP => "maps",
            OBJ_PROG => "programs",
            _ => "links",
        };
        objects.entry(kind).or_default().push(key.id);
    }
    let evicted_entries = k.maps.evicted.keys().count();
    let counters: serde_json::Map<String, serde_json::Value> =
        COUNTER_NAMES.iter().zip(counters).map(|(n, v)| (n.to_string(), json!(v))).collect();
    Ok(json!({
        "instance": dir.display().to_string(),
        "hooks": pins::link_names(dir),
        "object_hash": format!("{:016x}", st.object_hash),
        "policy_hash": format!("{:016x}", st.policy_hash),
        "policy_generation": k.active_gen(),
        "pin_mount_anchored": st.pin_mnt != 0,
        "trusted_executables": trusted,
        "objects": objects,
        "evicted_rules_kept": evicted_entries,
        "counters": counters,
        "policies": policies,
    }))
}

/// Each unit's `protect` and `setup_only` paths in `policy_dir` (empty,
/// with a warning, if it does not load: only credentials are counted then).
fn policy_paths(policy_dir: &Path, passwd: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    match crate::policy::load(policy_dir, passwd) {
        Ok(set) => set.policies.into_iter().map(|p| (p.unit, p.protect.into_iter().chain(p.setup_only).collect())).collect(),
        Err(e) => {
            eprintln!(
                "warning: {}: policies do not load ({} error(s)); protected files are counted in credentials directories only (give --policy-dir)",
                policy_dir.display(),
                e.diagnostics.len()
            );
            BTreeMap::new()
        }
    }
}

/// `guard status`: exit 0 while an instance enforces, 4 when none does.
pub fn status(root: &Path, cgroup_root: &Path, policy_dir: &Path, as_json: bool) -> ExitCode {
    let dirs = pins::instances(root);
    let paths = if dirs.is_empty() { BTreeMap::new() } else { policy_paths(policy_dir, Path::new("/etc/passwd")) };
    let mut out = Vec::new();
    for d in &dirs {
        match instance_status(d, cgroup_root, &paths) {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let agent = std::fs::read_to_string(crate::run::DEFAULT_PID_FILE)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists());
    if as_json {
        println!("{}", json!({ "enforcing": !out.is_empty(), "agent_pid": agent, "instances": out }));
    } else {
        print!("{}", human(&out, agent));
    }
    if out.is_empty() { ExitCode::from(4) } else { ExitCode::SUCCESS }
}

fn human(instances: &[serde_json::Value], agent: Option<u32>) -> String {
    let mut s = String::new();
    if instances.is_empty() {
        let _ = writeln!(s, "guard: not enforcing (no instance pinned)");
        return s;
    }
    let _ = writeln!(
        s,
        "guard: enforcing; agent {}",
        agent.map_or("not running (the kernel enforces on its own)".to_string(), |p| format!("running, pid {p}"))
    );
    for i in instances {
        let hooks = i["hooks"].as_array().map_or(0, |h| h.len());
        let _ = writeln!(
            s,
            "instance {} ({hooks} hooks attached, pin mount anchored: {}; policy generation {})",
            i["instance"].as_str().unwrap_or(""),
            i["pin_mount_anchored"],
            i["policy_generation"]
        );
        let c = &i["counters"];
        let _ = writeln!(
            s,
            "  counters: allowed {} denied {} audited {} tamper_denied {} records sent {} dropped {}+{} internal_errors {} evicted_rule_lost {}",
            c["allowed"], c["denied"], c["audited"], c["tamper_denied"], c["events_sent"], c["dropped_ringbuf_full"], c["dropped_rate_limited"], c["internal_errors"], c["evicted_rule_lost"]
        );
        for p in i["policies"].as_array().into_iter().flatten() {
            let files = format!(
                "{} protected file{}{}{}",
                p["protected_files"],
                if p["protected_files"] == 1 { "" } else { "s" },
                match p["protected_files_evicted"].as_u64() {
                    Some(n) if n > 0 => format!(" ({n} evicted from the cache, rules kept)"),
                    _ => String::new(),
                },
                if p["protected_walk_truncated"] == true { " (at least: the walk stopped)" } else { "" }
            );
            if p["any_unit"] == true {
                let _ = writeln!(
                    s,
                    "  * (every unit) [{}]: only systemd's credential setup of any unit may open its setup_only files; {files}; allowed {} denied {}",
                    p["mode"].as_str().unwrap_or(""),
                    p["allowed"],
                    p["denied"],
                );
                continue;
            }
            let _ = writeln!(
                s,
                "  {} [{}]: {}; uids {}; {files}; allowed {} denied {} joins refused {}",
                p["unit"].as_str().unwrap_or(""),
                p["mode"].as_str().unwrap_or(""),
                if p["running"] == true {
                    format!("cgroup {} (id {})", p["cgroup"].as_str().unwrap_or("?"), p["cgroup_id"])
                } else {
                    "not running (its files are closed to all until it starts)".to_string()
                },
                match (p["unit_user"] == true, p["unit_uid_now"].as_u64()) {
                    (true, Some(u)) => format!("{} + @unit (uid {u} now)", p["allowed_uids"]),
                    (true, None) => format!("{} + @unit", p["allowed_uids"]),
                    _ => p["allowed_uids"].to_string(),
                },
                p["allowed"],
                p["denied"],
                p["join_refused"],
            );
        }
    }
    s
}

/// `guard unload`: removes every pinned instance (its programs detach as
/// their last link pin goes), tells a running agent, and records who did it.
pub fn unload(root: &Path, pid_file: &Path) -> ExitCode {
    let dirs = pins::instances(root);
    let me = Exe::current().map(|e| e.path.display().to_string()).unwrap_or_default();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let note = format!("by pid {} uid {uid} exe {me} at {}", std::process::id(), rfc3339(std::time::SystemTime::now()));
    if dirs.is_empty() {
        eprintln!("guard: nothing to unload (no instance pinned under {})", root.display());
        return ExitCode::SUCCESS;
    }
    let _ = std::fs::create_dir_all("/run/guard");
    let _ = std::fs::write(UNLOAD_NOTE, &note);
    let mut failed = Vec::new();
    for d in &dirs {
        if let Err(e) = pins::retire(d) {
            failed.push((d.clone(), e));
        }
    }
    if failed.is_empty() {
        let _ = std::fs::remove_dir(root);
    }
    signal_agent(pid_file);
    println!(
        "{}",
        json!({"schema": crate::feed::record::SCHEMA, "kind": "admin", "time": rfc3339(std::time::SystemTime::now()),
               "action": "unloaded", "instance": dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(","),
               "detail": note, "pid": std::process::id()})
    );
    if failed.is_empty() {
        eprintln!("guard: unloaded {} instance(s); protected files are governed by file permissions alone again", dirs.len());
        ExitCode::SUCCESS
    } else {
        for (d, e) in failed {
            eprintln!(
                "error: {}: {e:#}\n  only the guard binary an instance trusts may unload it; run `guard status` \
                 and `guard unload` with that binary",
                d.display()
            );
        }
        ExitCode::FAILURE
    }
}

/// The pid in `pid_file`, if that process is a running guard agent;
/// otherwise what is wrong (for `guard reload` to print).
fn agent_pid(pid_file: &Path) -> Result<i32, String> {
    let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok()) else {
        return Err(format!("no running agent: cannot read a pid from {}. Start it with `guard run` (or `systemctl start guard`)", pid_file.display()));
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "guard" {
        return Err(format!("pid {pid} from {} is not a running guard agent (stale pid file?)", pid_file.display()));
    }
    Ok(pid)
}

fn signal_agent(pid_file: &Path) {
    if let Ok(pid) = agent_pid(pid_file) {
        // SAFETY: plain kill(2) of a pid we just checked.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

/// `guard reload`: asks the running agent (SIGHUP) to read its policy
/// directory again and switch to it in one step, then reports what the
/// agent did. Exit 0: the new set is in force; 2: the set has an error and
/// the old one stays in force; 1: no agent, no answer, or another failure.
pub fn reload(pid_file: &Path, timeout: std::time::Duration) -> ExitCode {
    let pid = match agent_pid(pid_file) {
        Ok(pid) => pid,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::FAILURE;
        }
    };
    let read = || -> Option<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(crate::run::RELOAD_RESULT).ok()?).ok()?;
        (v["pid"].as_i64() == Some(i64::from(pid))).then_some(v)
    };
    let before = read().and_then(|v| v["seq"].as_u64()).unwrap_or(0);
    // SAFETY: plain kill(2) of the pid we just checked.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        eprintln!("error: signalling the agent (pid {pid}): {}", std::io::Error::last_os_error());
        return ExitCode::FAILURE;
    }
    let t = std::time::Instant::now();
    while t.elapsed() < timeout {
        if let Some(v) = read().filter(|v| v["seq"].as_u64().unwrap_or(0) > before) {
            let message = v["message"].as_str().unwrap_or("");
            if v["ok"].as_bool() == Some(true) {
                println!("guard: reloaded: {message}");
                return ExitCode::SUCCESS;
            }
            eprintln!("{message}");
            eprintln!("guard: reload failed");
            return ExitCode::from(v["exit_code"].as_u64().and_then(|c| u8::try_from(c).ok()).filter(|c| *c != 0).unwrap_or(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("error: the agent (pid {pid}) did not report a reload within {} s; see its log", timeout.as_secs());
    ExitCode::FAILURE
}
