//! The scenarios. Each returns `Ok(detail)` or `Err(why)`; the runner
//! prints one line per scenario and a closing count.
//!
//! Non-vacuity: before guard starts, `control` performs every access the
//! suite later expects guard to deny and requires the kernel to ALLOW it
//! (files are 0666 and directories 0777, so DAC never says no). A denial
//! seen later can therefore only come from guard.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::env::*;

type Outcome = Result<String, String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if $cond {
        } else {
            return Err(format!($($fmt)*));
        }
    };
}

pub fn main(args: &[String]) -> i32 {
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(String::from).collect());
    let want = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));

    setup_world();
    let _stats = hold_bpf_stats();
    let mut results: Vec<(String, Outcome, Duration)> = Vec::new();
    let mut run = |name: &str, f: &dyn Fn() -> Outcome| {
        if !want(name) {
            return;
        }
        let t = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))));
        let d = t.elapsed();
        match &r {
            Ok(detail) => println!("SCENARIO {name}: PASS ({:.1} s) {detail}", d.as_secs_f64()),
            Err(why) => {
                println!("SCENARIO {name}: FAIL ({:.1} s) {why}", d.as_secs_f64());
                // The first failure's view of the agent, before later
                // scenarios restart it (xtask's failure digest shows these).
                if results.iter().all(|r| r.1.is_ok()) {
                    let log = std::fs::read_to_string(GUARD_LOG).unwrap_or_default();
                    let lines: Vec<&str> = log.lines().collect();
                    for l in &lines[lines.len().saturating_sub(15)..] {
                        println!("  guard.log| {l}");
                    }
                }
            }
        }
        results.push((name.to_string(), r, d));
    };

    // Before any agent runs.
    run("control", &control);
    run("9-bad-policy-set-changes-nothing", &bad_policy_set);

    // Every hook in the form this kernel's BTF gives it: a guard that picked
    // the wrong program for a hook's shape is refused by its own preflight.
    let agent = match std::panic::catch_unwind(|| start_agent("/tmp/policies", &[])) {
        Ok(agent) => {
            let log = std::fs::read_to_string(GUARD_LOG).unwrap_or_default();
            let shapes: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("takes") && l.contains("parameters here"))
                .collect();
            println!("SCENARIO 0-guard-attaches-on-this-kernel: PASS guard attached in {} ms; {shapes:?}", agent.started_ms);
            agent
        }
        Err(p) => {
            println!(
                "SCENARIO 0-guard-attaches-on-this-kernel: FAIL {}",
                panic_text(&p)
            );
            println!(
                "vm-tests: {} passed, {} failed",
                results.iter().filter(|r| r.1.is_ok()).count(),
                1 + results.iter().filter(|r| r.1.is_err()).count()
            );
            return 1;
        }
    };
    // Scenario 18 replaces the agent (kill -9, then a restart that adopts).
    let agent = std::cell::RefCell::new(Some(agent));
    run("1-owner-allowed", &owner_allowed);
    run("2-login-user-denied", &login_user_denied);
    run("3-same-uid-other-cgroup-denied", &same_uid_other_cgroup);
    run("4-root-outside-unit-denied", &root_outside);
    run("5-unit-cgroup-wrong-uid-denied", &unit_cgroup_wrong_uid);
    run("6-rename-hardlink-bindmount-denied", &rename_link_bind);
    run("7-new-file-in-protected-dir", &new_file_in_dir);
    run("8-unrelated-unaffected-and-audit-recorded", &unrelated_and_audit);
    run("10-alteration-by-outsider-denied", &alteration);
    run("11-fd-passing-denied", &fd_passing);
    run("12-memory-read-of-unit-denied", &memory_read);
    run("13-unit-restart-rearmed", &unit_restart);
    run("14-feed-schema-and-metrics", &feed_schema_and_metrics);
    run("15-subscribers-misbehaving", &subscribers);
    run("18-agent-killed-enforcement-stays-and-is-adopted", &|| agent_killed(&agent));
    run("19-root-cannot-touch-guard", &|| tamper(agent.borrow().as_ref().expect("agent")));
    run("20-rules-outlive-inode-eviction", &eviction);
    run("22-root-cannot-become-the-unit", &become_unit);
    run("23-upgrade-replaces-instance-with-no-gap", &|| upgrade(&agent));
    run("16-flood-accounting", &|| flood(agent.borrow().as_ref().expect("agent")));
    run("24-flood-1000-openers", &|| flood_many(agent.borrow().as_ref().expect("agent")));
    run("25-memory-doors-closed", &memory_doors);
    run("27-unit-core-kept-for-the-unit", &cores_kept);
    run("26-swap-area-closed", &swap_closed);
    // A scenario that failed to restart the agent left none: 17 fails, and
    // the run goes on to print the guard log.
    let stopped = agent.borrow_mut().take().map(Agent::stop);
    run("17-sigterm-keeps-enforcing", &move || match stopped {
        Some(status) => sigterm_keeps_enforcing(status),
        None => Err("no agent was running to be sent SIGTERM (an earlier scenario failed to restart it)".into()),
    });
    run("21-unload-is-the-off-switch", &unload);

    let failed = results.iter().filter(|r| r.1.is_err()).count();
    println!("vm-tests: {} passed, {} failed", results.len() - failed, failed);
    if failed > 0 {
        println!("--- guard log ---\n{}", std::fs::read_to_string(GUARD_LOG).unwrap_or_default());
        1
    } else {
        0
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

fn setup_world() {
    loopback_up();
    // Yama's default scope 1 would refuse a unit's process reading its own
    // sibling; guard's ptrace rule is what this suite tests.
    let _ = std::fs::write("/proc/sys/kernel/yama/ptrace_scope", "0");
    for cg in [UNIT, OTHER, SESSION, AUDITED_UNIT, FLOOD_UNIT, CORES_UNIT] {
        mkcg(cg);
    }
    // A credentials mount as systemd makes one (tmpfs at /run/credentials/<unit>).
    mount_tmpfs(CRED_DIR);
    write_file(KEY, "demo-key-material", 0o666);
    for d in ["/srv", "/srv/demo", SECRETS, "/srv/audited", "/srv/flood"] {
        std::fs::create_dir_all(d).unwrap();
        chmod(d, 0o777);
    }
    chmod(CRED_DIR, 0o777);
    write_file(DB_PASSWORD, "hunter2", 0o666);
    write_file(PUBLIC, "hello", 0o666);
    write_file(AUDITED_FILE, "token", 0o666);
    write_file(FLOOD_FILE, "flood", 0o666);
    mount_ext4();
    for copy in [INTRUDER, UNIT_APP] {
        std::fs::copy(SELF, copy).expect("copying the probe binary");
        chmod(copy, 0o755);
    }
    write_file(STOPPED_FILE, "stopped-secret", 0o666);
    for d in [EXT4_SECRETS, EXT4_PUBLIC] {
        std::fs::create_dir_all(d).unwrap();
        chmod(d, 0o777);
    }
    write_file(EXT4_SECRET, "on-disk-secret", 0o666);
    write_file(EXT4_DOOMED, "to-be-deleted", 0o666);
    write_file(
        "/tmp/policies/demo.toml",
        &format!(
            "unit = \"demo.service\"\nmode = \"enforce\"\nallow_users = [\"svc\"]\nprotect = [\"{CRED_DIR}\", \"{SECRETS}\", \"{EXT4_SECRETS}\"]\n\n[alerts]\nrate_per_sec = 10000\nburst = 10000\n"
        ),
        0o644,
    );
    write_file(
        "/tmp/policies/stopped.toml",
        &format!("unit = \"stopped.service\"\nmode = \"enforce\"\nallow_users = [{SVC}]\nprotect = [\"{STOPPED_FILE}\"]\n"),
        0o644,
    );
    write_file(
        "/tmp/policies/audited.toml",
        &format!("unit = \"audited.service\"\nmode = \"audit\"\nallow_users = [{SVC}]\nprotect = [\"{AUDITED_FILE}\"]\n"),
        0o644,
    );
    write_file(CORES_FILE, "cores-secret", 0o666);
    write_file(
        "/tmp/policies/cores.toml",
        &format!("unit = \"cores.service\"\nmode = \"enforce\"\nallow_users = [{SVC}]\nprotect = [\"{CORES_FILE}\"]\ncore_dumps = \"keep\"\n"),
        0o644,
    );
    write_file(
        "/tmp/policies/flood.toml",
        &format!(
            "unit = \"flood.service\"\nmode = \"enforce\"\nallow_users = [{SVC}]\nprotect = [\"{FLOOD_FILE}\"]\n\n[alerts]\nrate_per_sec = 1000000\nburst = 1000000\n"
        ),
        0o644,
    );
}

/// Every access the suite expects guard to deny, done with no guard: all allowed.
fn control() -> Outcome {
    // Every check below counts one access done with no guard.
    let mut checked = 0u32;
    let cases: [(&str, u32, &str, &str); 7] = [
        (SESSION, ALICE, "open", KEY),
        (OTHER, SVC, "open", KEY),
        (HOST, ROOT, "open", KEY),
        (UNIT, BOB, "open", KEY),
        (SESSION, ALICE, "open", DB_PASSWORD),
        (SESSION, ALICE, "open", FLOOD_FILE),
        (SESSION, ALICE, "open-write", KEY),
    ];
    for (cg, uid, op, path) in cases {
        let p = probe(cg, uid, op, &[path]);
        checked += 1;
        ensure!(p.ok(), "without guard, uid {uid} in {cg} {op} {path}: {} (expected allowed)", p.describe());
    }
    // Alteration and fd passing, on scratch copies.
    write_file("/srv/demo/secrets/scratch", "x", 0o666);
    let p = probe(SESSION, ALICE, "truncate", &["/srv/demo/secrets/scratch"]);
    checked += 1;
    ensure!(p.ok(), "without guard, truncate: {}", p.describe());
    let p = probe(SESSION, ALICE, "unlink", &["/srv/demo/secrets/scratch"]);
    checked += 1;
    ensure!(p.ok(), "without guard, unlink: {}", p.describe());
    let rx = background(SESSION, ALICE, "recv-fd", &["/tmp/ctl.sock"]);
    let tx = probe(UNIT, SVC, "send-fd", &[KEY, "/tmp/ctl.sock"]);
    let got = rx.finish();
    checked += 1;
    ensure!(tx.ok() && got.ok(), "without guard, fd passing: send {} / receive {}", tx.describe(), got.describe());
    let hold = background(UNIT, SVC, "exec", &[UNIT_APP, "probe", "hold", KEY]);
    let (pid, addr) = hold_target(&hold);
    let p = probe(HOST, ROOT, "vm-read", &[&pid, &addr]);
    checked += 1;
    ensure!(p.ok(), "without guard, process_vm_readv of a unit process: {}", p.describe());
    for f in ["environ", "maps", "smaps", "pagemap", "auxv", "coredump_filter"] {
        let p = probe(HOST, ROOT, "open", &[&format!("/proc/{pid}/{f}")]);
        checked += 1;
        ensure!(p.ok(), "without guard, root opening /proc/<unit pid>/{f}: {}", p.describe());
    }
    for link in held_links(&hold, &pid) {
        let p = probe(HOST, ROOT, "read", &[&link]);
        checked += 1;
        ensure!(p.ok(), "without guard, root reading the unit's memfd through {link}: {}", p.describe());
    }
    // The memory doors of scenario 25, without guard.
    for (op, args) in [
        ("open", vec!["/proc/kcore".to_string()]),
        ("bpf-load", vec!["socket_filter".to_string()]),
        ("bpf-load", vec!["raw_tracepoint".to_string()]),
        ("perf", vec![pid.clone(), "sample".to_string()]),
        ("perf", vec!["-1".to_string(), "sample".to_string()]),
        ("prlimit", vec![pid.clone()]),
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = probe(HOST, ROOT, op, &a);
        checked += 1;
        ensure!(p.ok(), "without guard, root {op} {args:?}: {}", p.describe());
    }
    // kexec_file_load of a file that is no kernel: the image parser's
    // ENOEXEC, not a refusal.
    let p = probe(HOST, ROOT, "kexec-file", &[SELF]);
    checked += 1;
    ensure!(p.errno == Some(libc::ENOEXEC), "without guard, root's kexec_file_load of a non-kernel: {} (expected ENOEXEC)", p.describe());
    let (dumped, _) = crash_in(UNIT)?;
    checked += 1;
    ensure!(dumped, "without guard, a unit process's SIGABRT wrote no core (core_pattern {})", CORE_PATTERN);
    let victim = background(UNIT, SVC, "exec", &[UNIT_APP, "probe", "hold", KEY]);
    let (vpid, _) = hold_target(&victim);
    let p = probe(HOST, ROOT, "kill", &[&vpid, "6"]);
    checked += 1;
    let gone = victim.child_gone_within(Duration::from_secs(5));
    ensure!(p.ok() && gone, "without guard, root's SIGABRT to a unit process: {} (gone: {gone})", p.describe());
    let p = probe_bin(INTRUDER, HOST, ROOT, "traced-exec", &[GUARD, "--version"]);
    checked += 1;
    ensure!(p.ok(), "without guard, a traced process running {GUARD}: {}", p.describe());
    // What scenarios 18-20 expect guard to refuse, without guard: the
    // kernel itself says yes, or fails for another reason than EPERM.
    let p = probe(HOST, ROOT, "pidfd-getfd", &[&pid]);
    checked += 1;
    ensure!(p.ok(), "without guard, pidfd_getfd of a process: {}", p.describe());
    let p = probe(HOST, ROOT, "vm-read", &[&pid, "0"]);
    checked += 1;
    ensure!(p.errno.is_some_and(|e| e != libc::EPERM), "without guard, process_vm_readv at address 0: {} (expected EFAULT)", p.describe());
    kill(hold);
    let p = probe(HOST, ROOT, "bpf-own-map-fd", &[]);
    checked += 1;
    ensure!(p.ok(), "without guard, root getting a map fd by id: {}", p.describe());
    for kind in ["lsm", "fmod_ret", "ext"] {
        let p = probe(HOST, ROOT, "bpf-load", &[kind]);
        checked += 1;
        ensure!(p.errno.is_some_and(|e| e != libc::EPERM), "without guard, loading a {kind} program: {} (expected EINVAL)", p.describe());
    }
    for attach in ["26", "27"] {
        let p = probe(HOST, ROOT, "bpf-link-create", &[attach]);
        checked += 1;
        ensure!(p.errno.is_some_and(|e| e != libc::EPERM), "without guard, BPF_LINK_CREATE type {attach}: {} (expected EBADF)", p.describe());
    }
    let p = probe(HOST, ROOT, "bpf-rawtp-null", &[]);
    checked += 1;
    ensure!(p.errno.is_some_and(|e| e != libc::EPERM), "without guard, BPF_RAW_TRACEPOINT_OPEN: {}", p.describe());
    let p = probe(HOST, ROOT, "open-write", &[GUARD]);
    checked += 1;
    ensure!(p.ok(), "without guard, root opening {GUARD} for writing: {}", p.describe());
    std::fs::create_dir_all("/tmp/bpf-scratch").unwrap();
    let r = std::process::Command::new("mount").args(["-t", "bpf", "bpf", "/tmp/bpf-scratch"]).status();
    checked += 1;
    ensure!(r.is_ok_and(|s| s.success()), "mounting a scratch bpffs failed");
    let p = probe(HOST, ROOT, "umount", &["/tmp/bpf-scratch"]);
    checked += 1;
    ensure!(p.ok(), "without guard, unmounting a bpffs: {}", p.describe());
    for f in [EXT4_SECRET, EXT4_DOOMED] {
        let p = probe(SESSION, ALICE, "open", &[f]);
        checked += 1;
        ensure!(p.ok(), "without guard, {f} on ext4: {}", p.describe());
    }
    // Becoming the unit, as root's own program: all possible without guard.
    let p = probe_bin(INTRUDER, HOST, ROOT, "join", &[UNIT, "procs"]);
    checked += 1;
    ensure!(p.ok(), "without guard, root joining {UNIT} through cgroup.procs: {}", p.describe());
    // A domain cgroup takes no single threads: the kernel answers EOPNOTSUPP
    // at write(2), after the open that guard judges.
    let p = probe_bin(INTRUDER, HOST, ROOT, "join", &[UNIT, "threads"]);
    checked += 1;
    ensure!(p.ok() || p.errno == Some(libc::EOPNOTSUPP), "without guard, root writing {UNIT}'s cgroup.threads: {}", p.describe());
    let sub = format!("{CGROOT}{UNIT}/ctl-sub");
    let p = probe_bin(INTRUDER, HOST, ROOT, "mkdir", &[&sub]);
    checked += 1;
    ensure!(p.ok(), "without guard, root creating {sub}: {}", p.describe());
    let _ = std::fs::remove_dir(&sub);
    let p = probe_bin(INTRUDER, HOST, ROOT, "clone-into", &[UNIT, &SVC.to_string(), KEY]);
    checked += 1;
    ensure!(p.ok(), "without guard, a child cloned into {UNIT} as svc opening the key: {}", p.describe());
    let stopped = format!("{CGROOT}/system.slice/stopped.service");
    let p = probe_bin(INTRUDER, HOST, ROOT, "mkdir", &[&stopped]);
    checked += 1;
    ensure!(p.ok(), "without guard, root creating {stopped}: {}", p.describe());
    let _ = std::fs::remove_dir(&stopped);
    checked += swap_control()?;
    Ok(format!("all {checked} accesses allowed (or failed for a reason other than EPERM/EACCES) without guard"))
}

fn hold_target(b: &Background) -> (String, String) {
    (hold_field(b, "pid="), hold_field(b, "addr="))
}

/// A field of the holder's `HOLD` line (`memfd=`, `map=`, ...).
fn hold_field(b: &Background, key: &str) -> String {
    b.first_line.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap_or("0").to_string()
}

/// `/proc/<pid>/fd/<memfd>` and `/proc/<pid>/map_files/<range>` of a
/// holder: the links that reopen the copy it keeps in a memfd.
fn held_links(b: &Background, pid: &str) -> [String; 2] {
    [format!("/proc/{pid}/fd/{}", hold_field(b, "memfd=")), format!("/proc/{pid}/map_files/{}", hold_field(b, "map="))]
}

fn kill(b: Background) {
    let mut child = b.child;
    let _ = child.kill();
    let _ = child.wait();
}

fn bad_policy_set() -> Outcome {
    write_file(
        "/tmp/bad-policies/a-good.toml",
        "unit = \"demo.service\"\nmode = \"enforce\"\nallow_users = [1002]\nprotect = [\"/srv/demo/secrets\"]\n",
        0o644,
    );
    write_file(
        "/tmp/bad-policies/b-bad.toml",
        "unit = \"other.service\"\nmode = \"enforcing\"\nallow_users = [1002]\nprotect = [\"/srv/public.txt\"]\n",
        0o644,
    );
    let before = bpf_prog_ids();
    let out = std::process::Command::new(GUARD)
        .args(["run", "--policy-dir", "/tmp/bad-policies", "--no-socket", "--events-file", "/tmp/bad-events"])
        .output()
        .map_err(|e| e.to_string())?;
    let after = bpf_prog_ids();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2), "exit status {:?}, expected 2; stderr:\n{stderr}", out.status.code());
    ensure!(
        stderr.contains("b-bad.toml:2:") && stderr.contains("mode"),
        "error does not name file b-bad.toml, line 2 and field mode:\n{stderr}"
    );
    ensure!(before == after, "BPF programs changed: before {before:?}, after {after:?}");
    let p = probe(SESSION, ALICE, "open", &[DB_PASSWORD]);
    ensure!(p.ok(), "after the refused set, a file of the good policy is enforced: {}", p.describe());
    Ok(format!("exit 2, error names b-bad.toml:2 mode; {} BPF programs before and after", before.len()))
}

/// Asserts exactly one record for a denied probe, with the right fields.
fn one_record(p: &Probe, uid: u32, cgroup: &str, path: &str, policy: &str, decision: &str) -> Outcome {
    let recs = records_for(p.pid);
    ensure!(recs.len() == 1, "expected exactly 1 record for pid {}, got {}: {recs:?}", p.pid, recs.len());
    let r = &recs[0];
    let expect = |v: &Value, want: &str, what: &str| -> Result<(), String> {
        if v.as_str() == Some(want) { Ok(()) } else { Err(format!("record {what} = {v}, expected {want}: {r}")) }
    };
    expect(&r["decision"], decision, "decision")?;
    expect(&r["policy"], policy, "policy")?;
    expect(&r["file"]["path"], path, "file.path")?;
    expect(&r["process"]["cgroup"], cgroup, "process.cgroup")?;
    ensure!(r["process"]["uid"].as_u64() == Some(uid as u64), "record uid {} != {uid}", r["process"]["uid"]);
    ensure!(
        r["process"]["cgroup_id"].as_u64() == Some(cgroup_id(cgroup)),
        "record cgroup_id {} != {}",
        r["process"]["cgroup_id"],
        cgroup_id(cgroup)
    );
    Ok(format!("1 record (pid {}, uid {uid}, {cgroup}, {path}, {policy})", p.pid))
}

fn expect_denied(cg: &str, uid: u32, op: &str, args: &[&str], path: &str) -> Outcome {
    let p = probe(cg, uid, op, args);
    ensure!(p.errno == Some(libc::EACCES), "uid {uid} in {cg} {op} {args:?}: {} (expected EACCES)", p.describe());
    one_record(&p, uid, cg, path, "demo", "denied")
}

fn owner_allowed() -> Outcome {
    for path in [KEY, DB_PASSWORD] {
        let p = probe(UNIT, SVC, "read", &[path]);
        ensure!(p.ok(), "the unit (svc in {UNIT}) reading {path}: {}", p.describe());
        ensure!(records_settled(p.pid).is_empty(), "an allowed open produced a record");
    }
    Ok("svc in demo.service read key and db-password; no records".into())
}

fn login_user_denied() -> Outcome {
    expect_denied(SESSION, ALICE, "open", &[KEY], KEY)
}

fn same_uid_other_cgroup() -> Outcome {
    expect_denied(OTHER, SVC, "open", &[KEY], KEY)
}

fn root_outside() -> Outcome {
    expect_denied(HOST, ROOT, "open", &[KEY], KEY)
}

fn unit_cgroup_wrong_uid() -> Outcome {
    expect_denied(UNIT, BOB, "open", &[KEY], KEY)
}

fn rename_link_bind() -> Outcome {
    // Renamed (by the owner, which may) to a path outside the protected dir.
    let p = probe(UNIT, SVC, "rename", &[DB_PASSWORD, "/srv/moved-password"]);
    ensure!(p.ok(), "owner renaming its file: {}", p.describe());
    let r1 = expect_denied(SESSION, ALICE, "open", &["/srv/moved-password"], "/srv/moved-password")?;
    let p = probe(UNIT, SVC, "rename", &["/srv/moved-password", DB_PASSWORD]);
    ensure!(p.ok(), "owner renaming back: {}", p.describe());
    // Hard link (link(2) itself is not an access to the contents).
    let p = probe(HOST, ROOT, "link", &[DB_PASSWORD, "/srv/hardlink"]);
    ensure!(p.ok(), "root creating a hard link: {}", p.describe());
    let r2 = expect_denied(SESSION, ALICE, "open", &["/srv/hardlink"], "/srv/hardlink")?;
    let p = probe(UNIT, SVC, "open", &["/srv/hardlink"]);
    ensure!(p.ok(), "owner through the hard link: {}", p.describe());
    // Bind mount of the credential elsewhere.
    bind_mount(KEY, "/srv/bound-key");
    let r3 = expect_denied(HOST, ROOT, "open", &["/srv/bound-key"], "/srv/bound-key")?;
    let p = probe(UNIT, SVC, "open", &["/srv/bound-key"]);
    umount("/srv/bound-key");
    ensure!(p.ok(), "owner through the bind mount: {}", p.describe());
    Ok(format!("renamed: {r1}; hard link: {r2}; bind mount: {r3}"))
}

fn new_file_in_dir() -> Outcome {
    let p = probe(UNIT, SVC, "create", &["/srv/demo/secrets/new-token"]);
    ensure!(p.ok(), "owner creating a file in its protected dir: {}", p.describe());
    let p = probe(UNIT, SVC, "open", &["/srv/demo/secrets/new-token"]);
    ensure!(p.ok(), "owner opening its new file: {}", p.describe());
    let r1 = expect_denied(SESSION, ALICE, "open", &["/srv/demo/secrets/new-token"], "/srv/demo/secrets/new-token")?;
    // And deeper: a new subdirectory and a file in it.
    let p = probe(UNIT, SVC, "mkdir", &["/srv/demo/secrets/sub"]);
    ensure!(p.ok(), "owner mkdir: {}", p.describe());
    let p = probe(UNIT, SVC, "create", &["/srv/demo/secrets/sub/deep"]);
    ensure!(p.ok(), "owner creating sub/deep: {}", p.describe());
    let r2 = expect_denied(HOST, ROOT, "open", &["/srv/demo/secrets/sub/deep"], "/srv/demo/secrets/sub/deep")?;
    // Listing a protected directory is not judged (names are not contents).
    let p = probe(SESSION, ALICE, "open", &["/srv/demo/secrets/sub"]);
    ensure!(p.ok(), "an outsider listing a protected directory: {}", p.describe());
    Ok(format!("new file: {r1}; new subdir file: {r2}; directory listing allowed"))
}

fn unrelated_and_audit() -> Outcome {
    for (cg, uid) in [(SESSION, ALICE), (HOST, ROOT), (UNIT, SVC)] {
        let p = probe(cg, uid, "open", &[PUBLIC]);
        ensure!(p.ok(), "unrelated file by uid {uid}: {}", p.describe());
        ensure!(records_settled(p.pid).is_empty(), "unrelated open produced a record");
    }
    let p = probe(SESSION, ALICE, "open", &[AUDITED_FILE]);
    ensure!(p.ok(), "audit mode must allow: {}", p.describe());
    one_record(&p, ALICE, SESSION, AUDITED_FILE, "audited", "audited").map(|r| format!("unrelated: 3 opens, no records; audit: {r}"))
}

fn alteration() -> Outcome {
    let p = probe(SESSION, ALICE, "unlink", &[DB_PASSWORD]);
    ensure!(p.errno == Some(libc::EACCES), "outsider unlink: {}", p.describe());
    let p = probe(SESSION, ALICE, "truncate", &[DB_PASSWORD]);
    ensure!(p.errno == Some(libc::EACCES), "outsider truncate: {}", p.describe());
    let p = probe(HOST, ROOT, "rename", &[KEY, "/run/credentials/demo.service/stolen"]);
    ensure!(p.errno == Some(libc::EACCES), "root renaming the credential: {}", p.describe());
    let p = probe(SESSION, ALICE, "open-write", &[KEY]);
    ensure!(p.errno == Some(libc::EACCES), "outsider opening for write: {}", p.describe());
    ensure!(std::fs::metadata(DB_PASSWORD).map(|m| m.len()).unwrap_or(0) == 7, "db-password was altered");
    Ok("unlink, truncate, rename, open-for-write by outsiders: EACCES; contents intact".into())
}

fn fd_passing() -> Outcome {
    let rx = background(SESSION, ALICE, "recv-fd", &["/tmp/pass.sock"]);
    let tx = probe(UNIT, SVC, "send-fd", &[KEY, "/tmp/pass.sock"]);
    let got = rx.finish();
    ensure!(tx.ok(), "the unit sending its fd: {}", tx.describe());
    ensure!(got.errno == Some(libc::EACCES), "outsider receiving the unit's fd: {} (expected refused)", got.describe());
    Ok("SCM_RIGHTS fd of the key to a login user: not installed".into())
}

fn memory_read() -> Outcome {
    let hold = background_in_unit(UNIT, SVC, "hold", &[KEY]);
    let (pid, addr) = hold_target(&hold);
    let p = probe(HOST, ROOT, "vm-read", &[&pid, &addr]);
    let same_unit = probe(UNIT, SVC, "exec", &[UNIT_APP, "probe", "vm-read", &pid, &addr]);
    // /proc files that show memory: refused to root outside (from Linux
    // 6.15 CAP_PERFMON passes their read-mode ptrace check without the LSM,
    // so guard judges the open); the unit reads its own; ps's files stay open.
    // Every outcome first, then the verdict (the holder must go either way).
    // Opening is what is judged (reading all of `pagemap` would take
    // gigabytes).
    let memory_files = ["environ", "maps", "smaps", "pagemap", "auxv", "coredump_filter"];
    let mut wrong = Vec::new();
    for f in memory_files {
        let path = format!("/proc/{pid}/{f}");
        let r = probe(HOST, ROOT, "open", &[&path]);
        if !r.denied() {
            wrong.push(format!("root opening {path}: {} (expected denied)", r.describe()));
        }
        let own = probe(UNIT, SVC, "open", &[&path]);
        if !own.ok() {
            wrong.push(format!("the unit opening its own {path}: {}", own.describe()));
        }
    }
    for f in ["stat", "status", "cmdline", "comm"] {
        let path = format!("/proc/{pid}/{f}");
        let r = probe(HOST, ROOT, "read", &[&path]);
        if !r.ok() {
            wrong.push(format!("root reading {path} (what ps reads): {} (expected allowed)", r.describe()));
        }
    }
    // Reopening what the process holds (its memfd copy of the key) through
    // its fd/ and map_files/ links: refused to root outside, with a record;
    // readlink (lsof, journald) and the unit's own reopen stay open.
    let mut follow_records = 0;
    for link in held_links(&hold, &pid) {
        let r = probe(HOST, ROOT, "read", &[&link]);
        if !r.denied() {
            wrong.push(format!("root reading {link}: {} (expected denied)", r.describe()));
        } else {
            let recs = records_settled(r.pid);
            if recs.iter().any(|x| x["hook"] == "inode_follow_link" && x["target_pid"].as_u64().map(|t| t.to_string()) == Some(pid.clone())) {
                follow_records += 1;
            } else {
                wrong.push(format!("root reading {link}: denied, but no inode_follow_link record naming {pid}: {recs:?}"));
            }
        }
        // (map_files/ needs CAP_SYS_ADMIN of everyone: only fd/ for these.)
        if link.contains("/fd/") {
            let r = probe(HOST, ROOT, "readlink", &[&link]);
            if !r.ok() {
                wrong.push(format!("root readlink of {link} (what lsof does): {} (expected allowed)", r.describe()));
            }
            let own = probe(UNIT, SVC, "read", &[&link]);
            if !own.ok() {
                wrong.push(format!("the unit reading its own {link}: {}", own.describe()));
            }
        }
    }
    kill(hold);
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    let refused = memory_files;
    ensure!(p.denied(), "root process_vm_readv of the unit: {} (expected denied)", p.describe());
    ensure!(same_unit.ok(), "the unit reading its own memory: {}", same_unit.describe());
    Ok(format!(
        "root: process_vm_readv {}, /proc/<pid>/{{{}}} refused, the memfd copy through fd/ and map_files/ refused \
         ({follow_records} inode_follow_link records), readlink, stat/status/cmdline/comm readable; the unit itself: allowed",
        p.describe(),
        refused.join(",")
    ))
}

/// Where the suite's cores go (a file pattern: the simplest destination).
const CORE_PATTERN: &str = "/tmp/cores/core.%p";
/// The directory of `CORE_PATTERN`.
const CORE_DIR: &str = "/tmp/cores";

/// A process of the unit at `cgroup` that aborts itself with no core
/// limit: (whether the kernel wrote a core, its pid).
fn crash_in(cgroup: &str) -> Result<(bool, u32), String> {
    crash_with(cgroup, CORE_PATTERN, CORE_DIR)
}

/// The same with `core_pattern` = `pattern`; a core is looked for as
/// `dir/core.<pid>`.
fn crash_with(cgroup: &str, pattern: &str, dir: &str) -> Result<(bool, u32), String> {
    use std::os::unix::process::ExitStatusExt;
    arm_cores(pattern, dir)?;
    // (The harness joins the unit, as systemd's stand-in may.)
    let child = std::process::Command::new(SELF)
        .args(["probe", "--cgroup", cgroup, "--uid", &SVC.to_string(), "crash"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    ensure!(out.status.signal() == Some(libc::SIGABRT), "the crashing probe ended with {:?}, not SIGABRT", out.status);
    Ok((dumped(&out.status, dir, pid), pid))
}

/// `core_pattern` = `pattern`, and `dir` (where its cores go) writable by all.
fn arm_cores(pattern: &str, dir: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    chmod(dir, 0o1777);
    std::fs::write("/proc/sys/kernel/core_pattern", pattern).map_err(|e| format!("core_pattern: {e}"))
}

/// Whether the kernel wrote a core for `pid`, which ended with `status`:
/// it says so, or `dir/core.<pid>` exists.
fn dumped(status: &std::process::ExitStatus, dir: &str, pid: u32) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.core_dumped() || std::path::Path::new(dir).join(format!("core.{pid}")).exists()
}

/// A process of the unit at `cgroup` that maps a file root then truncates:
/// (the signal it died of, whether the kernel wrote a core, its pid).
fn truncated_under(cgroup: &str) -> Result<(Option<i32>, bool, u32), String> {
    use std::{io::BufRead, os::unix::process::ExitStatusExt};
    arm_cores(CORE_PATTERN, CORE_DIR)?;
    let mapped = "/tmp/mapped-by-unit";
    write_file(mapped, &"x".repeat(4096), 0o644);
    let mut child = std::process::Command::new(SELF)
        .args(["probe", "--cgroup", cgroup, "--uid", &SVC.to_string(), "touch-mapped", mapped])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let mut line = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
    ensure!(line.starts_with("TOUCHING"), "the mapping probe did not start: {line:?}");
    let p = probe(HOST, ROOT, "truncate", &[mapped]);
    ensure!(p.ok(), "root truncating {mapped}: {}", p.describe());
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the mapping probe lived on 10 s after its file was truncated".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((status.signal(), dumped(&status, CORE_DIR, pid), pid))
}

/// A unit whose policy keeps cores (`core_dumps = "keep"`).
const CORES_UNIT: &str = "/system.slice/cores.service";
const CORES_FILE: &str = "/srv/cores/token";
const KEPT_CORES: &str = "/tmp/guard-cores";

/// Scenario 27: `core_dumps = "keep"`. A crash of the unit's own process
/// with a file `core_pattern` leaves a core that only the unit (and its
/// allowed users) may open, root outside gets EACCES from the kernel, and
/// the feed has a `coredump` record saying it was kept. With a pipe
/// pattern the dump is refused (no core), recorded. The default policy
/// (`refuse`) is scenario 25's.
fn cores_kept() -> Outcome {
    let mut said = Vec::new();
    let pattern = format!("{KEPT_CORES}/core.%p");
    let (dumped, pid) = crash_with(CORES_UNIT, &pattern, KEPT_CORES)?;
    let core = format!("{KEPT_CORES}/core.{pid}");
    ensure!(dumped && std::path::Path::new(&core).exists(), "the unit's own SIGABRT left no core at {core} (policy keeps cores, core_pattern {pattern})");
    let size = std::fs::metadata(&core).map(|m| m.len()).unwrap_or(0);
    let recs = records_for(pid);
    ensure!(
        recs.iter().any(|r| r["hook"] == "coredump" && r["decision"] == "audited" && r["detail"].as_str().is_some_and(|d| d.contains("kept"))),
        "no coredump record saying the core of {pid} was kept: {recs:?}"
    );
    said.push(format!("SIGABRT in the unit: core.{pid} kept ({size} bytes), a coredump record (audited, kept)"));
    // Root outside the unit: the kernel (DAC lets root through) and guard say no.
    let p = probe(HOST, ROOT, "read", &[&core]);
    ensure!(p.errno == Some(libc::EACCES), "root outside the unit reading the kept core: {} (expected EACCES)", p.describe());
    let p2 = probe(SESSION, SVC, "read", &[&core]);
    ensure!(p2.errno == Some(libc::EACCES), "the unit's UID outside the unit reading the core: {} (expected EACCES)", p2.describe());
    let own = probe(CORES_UNIT, SVC, "read", &[&core]);
    ensure!(own.ok(), "the unit's own process reading its core: {} (expected allowed)", own.describe());
    said.push("root outside: EACCES, the unit's UID outside: EACCES, the unit's own process: read".into());
    // A pipe helper runs outside the unit: refused, no core, a record.
    let (dumped, ppid) = crash_with(CORES_UNIT, "|/bin/cat", KEPT_CORES)?;
    ensure!(!dumped, "with core_pattern |/bin/cat the unit's crash was dumped");
    let recs = records_for(ppid);
    ensure!(
        recs.iter().any(|r| r["hook"] == "coredump" && r["decision"] == "denied"),
        "no refused coredump record for {ppid} under a pipe core_pattern: {recs:?}"
    );
    said.push("core_pattern |/bin/cat: refused (not dumped), a denied coredump record".into());
    let _ = std::fs::write("/proc/sys/kernel/core_pattern", CORE_PATTERN);
    Ok(said.join("; "))
}

/// Scenario 25: reading a unit's secret without opening its files (kernel
/// memory, a foreign BPF program, perf, a core dump, and the signals and
/// limits that force one). Every door is refused to root outside, each
/// with a record; what stays open stays open.
fn memory_doors() -> Outcome {
    let hold = background_in_unit(UNIT, SVC, "hold", &[KEY]);
    let (pid, _) = hold_target(&hold);
    let mut said = Vec::new();
    // Kernel memory: /proc/kcore (LOCKDOWN_KCORE), a tamper record.
    let p = probe(HOST, ROOT, "open", &["/proc/kcore"]);
    ensure!(p.errno == Some(libc::EPERM), "root opening /proc/kcore: {} (expected EPERM)", p.describe());
    let t = tamper_records_for(p.pid);
    ensure!(t.iter().any(|r| r["hook"] == "locked_down" && r["detail"].as_str().is_some_and(|d| d.contains("LOCKDOWN_KCORE"))), "no locked_down tamper record naming LOCKDOWN_KCORE: {t:?}");
    said.push("kcore EPERM (LOCKDOWN_KCORE)".to_string());
    // kexec_file_load (a signed image too): the kernel's read of the image
    // is refused before a byte is read.
    let p = probe(HOST, ROOT, "kexec-file", &[SELF]);
    ensure!(p.errno == Some(libc::EPERM), "root's kexec_file_load: {} (expected EPERM)", p.describe());
    let t = tamper_records_for(p.pid);
    ensure!(t.iter().any(|r| r["hook"] == "kernel_read_file"), "no kernel_read_file tamper record for kexec_file_load: {t:?}");
    said.push("kexec_file_load EPERM (kernel_read_file)".to_string());
    // Foreign BPF programs: any type, by root; an allowed tool's load is recorded.
    for kind in ["socket_filter", "raw_tracepoint"] {
        let p = probe(HOST, ROOT, "bpf-load", &[kind]);
        ensure!(p.errno == Some(libc::EPERM), "root loading a {kind} program: {} (expected EPERM)", p.describe());
        ensure!(!tamper_records_for(p.pid).is_empty(), "no tamper record for root's {kind} load");
    }
    let tool = probe_bin("/bin/bpf-tool", HOST, ROOT, "bpf-load-pin", &["socket_filter", "/sys/fs/bpf/tool-prog"]);
    ensure!(tool.ok(), "the allowed BPF tool loading and pinning a socket filter: {}", tool.describe());
    let allowed: Vec<_> = tamper_records_for(tool.pid).into_iter().filter(|r| r["decision"] == "audited").collect();
    ensure!(!allowed.is_empty(), "the allowed tool's load was not recorded");
    let p = probe(HOST, ROOT, "bpf-obj-get", &["/sys/fs/bpf/tool-prog"]);
    ensure!(p.errno == Some(libc::EPERM), "root getting the allowed tool's program by its pin: {} (expected EPERM)", p.describe());
    let _ = std::fs::remove_file("/sys/fs/bpf/tool-prog");
    said.push("socket_filter and raw_tracepoint loads EPERM; the allowed tool's load recorded (audited), its pinned program refused to root".into());
    // perf: sampling the unit's process, or every CPU's user stacks.
    let p = probe(HOST, ROOT, "perf", &[&pid, "sample"]);
    ensure!(p.denied(), "root sampling a unit process with perf: {} (expected denied)", p.describe());
    ensure!(records_for(p.pid).iter().any(|r| r["hook"] == "perf_event_alloc"), "no perf_event_alloc record for the unit");
    let p = probe(HOST, ROOT, "perf", &["-1", "sample"]);
    ensure!(p.denied(), "root sampling user stacks CPU-wide: {} (expected denied)", p.describe());
    let p = probe(HOST, ROOT, "perf", &["-1", "count"]);
    ensure!(p.ok(), "root counting CPU-wide (nothing sampled): {} (expected allowed)", p.describe());
    said.push("perf on the unit and CPU-wide user sampling denied, CPU-wide counting allowed".into());
    // Forced core dumps: a signal, SIGIO, a limit.
    let p = probe(HOST, ROOT, "kill", &[&pid, &libc::SIGABRT.to_string()]);
    ensure!(p.denied(), "root's SIGABRT to a unit process: {} (expected denied)", p.describe());
    let p2 = probe(HOST, ROOT, "sigio", &[&pid, &libc::SIGSEGV.to_string()]);
    ensure!(p2.ok(), "root's F_SETOWN/F_SETSIG pipe: {}", p2.describe());
    let p3 = probe(HOST, ROOT, "prlimit", &[&pid]);
    ensure!(p3.denied(), "root's prlimit on a unit process: {} (expected denied)", p3.describe());
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    ensure!(alive, "the unit process died: a signal reached it");
    let p4 = probe(HOST, ROOT, "kill", &[&pid, &libc::SIGTERM.to_string()]);
    ensure!(p4.ok(), "root's SIGTERM (no core) to a unit process: {} (expected allowed)", p4.describe());
    said.push("SIGABRT and prlimit denied, SIGSEGV by F_SETSIG not delivered, SIGTERM allowed".into());
    kill(hold);
    // A crash of the unit's own process: no core, a record.
    let (dumped, cpid) = crash_in(UNIT)?;
    ensure!(!dumped, "a unit process's crash wrote a core with guard enforcing");
    ensure!(records_for(cpid).iter().any(|r| r["hook"] == "coredump"), "no coredump record for the crashing unit process {cpid}");
    // A SIGBUS forced from outside: root truncates a file the unit maps.
    let (signal, dumped, bpid) = truncated_under(UNIT)?;
    ensure!(signal == Some(libc::SIGBUS), "the unit process whose mapped file root truncated ended with signal {signal:?}, not SIGBUS");
    ensure!(!dumped, "root truncating a file the unit maps forced a core of the unit");
    ensure!(records_for(bpid).iter().any(|r| r["hook"] == "coredump"), "no coredump record for the unit process {bpid} killed by SIGBUS");
    said.push("root truncating a file the unit maps: SIGBUS, no core, a record".into());
    // Outside any unit, cores still work.
    let (dumped, _) = crash_in(HOST)?;
    ensure!(dumped, "a crash outside every unit wrote no core: guard refused too much");
    said.push("a unit process's crash: no core, a record; outside the unit: a core".into());
    Ok(said.join("; "))
}

/// The swap image (a loop device over it is the swap area) and two more
/// nodes for the loop device's `dev_t`: one made when the device is (before
/// guard starts if the control pass runs), one before `swapon`, one after.
const SWAP_IMG: &str = "/tmp/swap.img";
const SWAP_NODE_EARLY: &str = "/tmp/swap-node-early";
const SWAP_NODE_MID: &str = "/tmp/swap-node-mid";
/// On a disk filesystem, made with the device: its dentry stays cached.
const SWAP_NODE_DISK: &str = "/mnt/ext4/swap-node-disk";
const SWAP_NODE_LATE: &str = "/tmp/swap-node-late";

/// A loop device over a fresh swap image (not active yet): its path and
/// `dev_t`, or why this kernel cannot have one.
fn swap_device() -> Result<(String, u64), String> {
    use std::os::unix::fs::MetadataExt;
    if !std::path::Path::new("/proc/swaps").exists() {
        return Err("no /proc/swaps: this kernel has no swap (CONFIG_SWAP)".into());
    }
    static DEV: std::sync::OnceLock<Result<(String, u64), String>> = std::sync::OnceLock::new();
    DEV.get_or_init(|| {
        // mkswap by hand: version 1, last page, SWAPSPACE2 at the end of page 0.
        let pages = 256u32;
        let mut img = vec![0u8; pages as usize * 4096];
        img[1024..1028].copy_from_slice(&1u32.to_le_bytes());
        img[1028..1032].copy_from_slice(&(pages - 1).to_le_bytes());
        img[4096 - 10..4096].copy_from_slice(b"SWAPSPACE2");
        std::fs::write(SWAP_IMG, &img).map_err(|e| format!("writing {SWAP_IMG}: {e}"))?;
        let free = std::process::Command::new("losetup").arg("-f").output().map_err(|e| format!("losetup -f: {e}"))?;
        let dev = String::from_utf8_lossy(&free.stdout).trim().to_string();
        ensure!(dev.starts_with("/dev/loop"), "losetup -f found no free loop device: {:?}", String::from_utf8_lossy(&free.stderr));
        let st = std::process::Command::new("losetup").args([&dev, SWAP_IMG]).status().map_err(|e| format!("losetup: {e}"))?;
        ensure!(st.success(), "losetup {dev} {SWAP_IMG} failed");
        let rdev = std::fs::metadata(&dev).map_err(|e| format!("stat {dev}: {e}"))?.rdev();
        mknod_blk(SWAP_NODE_EARLY, rdev)?;
        mknod_blk(SWAP_NODE_DISK, rdev)?;
        Ok((dev, rdev))
    })
    .clone()
}

fn mknod_blk(path: &str, rdev: u64) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: valid path.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, rdev) };
    ensure!(r == 0, "mknod {path}: {}", std::io::Error::last_os_error());
    Ok(())
}

/// `swapon(2)` / `swapoff(2)` of `dev`, as this (root, outside every unit) process.
fn swap_on(dev: &str, on: bool) -> Result<(), String> {
    let c = std::ffi::CString::new(dev).unwrap();
    // SAFETY: valid path.
    let r = unsafe { if on { libc::swapon(c.as_ptr(), 0) } else { libc::swapoff(c.as_ptr()) } };
    ensure!(r == 0, "{} {dev}: {}", if on { "swapon" } else { "swapoff" }, std::io::Error::last_os_error());
    Ok(())
}

/// Without guard: an active swap area reads, through any node, and
/// device-mapper tables are asked for.
fn swap_control() -> Result<u32, String> {
    let (dev, _) = match swap_device() {
        Ok(d) => d,
        Err(why) => {
            println!("vm-tests: SKIPPED the swap control checks: {why}");
            return Ok(0);
        }
    };
    swap_on(&dev, true)?;
    let mut checked = 0;
    for node in [dev.as_str(), SWAP_NODE_EARLY] {
        let p = probe(HOST, ROOT, "open", &[node]);
        checked += 1;
        ensure!(p.ok(), "without guard, root reading the active swap area {node}: {}", p.describe());
    }
    swap_on(&dev, false)?;
    let p = probe(HOST, ROOT, "dm-table", &[]);
    checked += 1;
    ensure!(p.errno.is_some_and(|e| e != libc::EPERM && e != libc::EACCES), "without guard, DM_TABLE_STATUS: {} (expected ENOTTY or a device-mapper error)", p.describe());
    let p = probe(HOST, ROOT, "dm-table-compat", &[]);
    if !p.raw.contains("no ia32 entry") {
        checked += 1;
        ensure!(
            p.errno.is_some_and(|e| e != libc::EPERM && e != libc::EACCES),
            "without guard, a 32-bit DM_TABLE_STATUS: {} (expected ENOTTY or a device-mapper error)",
            p.describe()
        );
    }
    Ok(checked)
}

/// Swap (issue 18): root outside every unit cannot read an active swap
/// area, by its node or by another node made for its `dev_t` (before or
/// after `swapon`), nor read a device-mapper table (dm-crypt's key);
/// `swapon` and `swapoff` keep working; after `swapoff` the device reads.
fn swap_closed() -> Outcome {
    let (dev, rdev) = match swap_device() {
        Ok(d) => d,
        Err(why) => {
            println!("vm-tests: SKIPPED 26-swap-area-closed: {why}");
            return Ok(format!("SKIPPED: {why}"));
        }
    };
    let mut said = Vec::new();
    let p = probe(HOST, ROOT, "open", &[&dev]);
    ensure!(p.ok(), "root reading {dev} before it is swap: {} (expected allowed)", p.describe());
    mknod_blk(SWAP_NODE_MID, rdev)?;
    swap_on(&dev, true)?;
    // The agent follows /proc/swaps (POLLPRI on swapon): refused within a few seconds.
    let t = Instant::now();
    let mut p = probe(HOST, ROOT, "open", &[&dev]);
    while p.ok() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        p = probe(HOST, ROOT, "open", &[&dev]);
    }
    let took = t.elapsed();
    ensure!(p.errno == Some(libc::EPERM) || p.errno == Some(libc::EACCES), "root reading the active swap area {dev}: {} (expected EPERM)", p.describe());
    let t = tamper_records_for(p.pid);
    ensure!(t.iter().any(|r| r["hook"] == "file_open"), "no file_open tamper record for root reading {dev}: {t:?}");
    said.push(format!("{dev} refused {} ms after swapon, a tamper record", took.as_millis()));
    for node in [SWAP_NODE_EARLY, SWAP_NODE_DISK, SWAP_NODE_MID, SWAP_NODE_LATE] {
        if node == SWAP_NODE_LATE {
            mknod_blk(node, rdev)?;
        }
        let p = probe(HOST, ROOT, "open", &[node]);
        ensure!(p.errno == Some(libc::EPERM) || p.errno == Some(libc::EACCES), "root reading the active swap area through {node} (mknod, same dev_t): {} (expected EPERM)", p.describe());
        ensure!(!tamper_records_for(p.pid).is_empty(), "no tamper record for {node}");
    }
    said.push("nodes made with mknod before guard started (tmpfs and ext4), before swapon and after it refused".into());
    let p = probe(HOST, ROOT, "open-write", &[&dev]);
    ensure!(p.ok(), "root opening the swap area write-only: {} (expected allowed: only reads are refused)", p.describe());
    let p = probe(HOST, ROOT, "dm-table", &[]);
    ensure!(p.errno == Some(libc::EPERM), "root's DM_TABLE_STATUS with the table flag: {} (expected EPERM)", p.describe());
    let t = tamper_records_for(p.pid);
    ensure!(t.iter().any(|r| r["hook"] == "file_ioctl"), "no file_ioctl tamper record for DM_TABLE_STATUS: {t:?}");
    said.push("DM_TABLE_STATUS (dmsetup table --showkeys) EPERM, a tamper record".into());
    // The same request from a 32-bit process reaches file_ioctl_compat.
    let p = probe(HOST, ROOT, "dm-table-compat", &[]);
    if p.raw.contains("no ia32 entry") {
        println!("SKIP 26-swap-area-closed: the 32-bit DM_TABLE_STATUS: this kernel has no ia32 system call entry");
        said.push("32-bit DM_TABLE_STATUS SKIPPED (no ia32 entry on this kernel)".into());
    } else {
        ensure!(p.errno == Some(libc::EPERM), "root's 32-bit DM_TABLE_STATUS with the table flag: {} (expected EPERM)", p.describe());
        let t = tamper_records_for(p.pid);
        ensure!(t.iter().any(|r| r["hook"] == "file_ioctl_compat"), "no file_ioctl_compat tamper record for a 32-bit DM_TABLE_STATUS: {t:?}");
        said.push("the same from a 32-bit process (int 0x80) EPERM, a file_ioctl_compat record".into());
    }
    swap_on(&dev, false).map_err(|e| format!("swapoff refused with guard enforcing: {e}"))?;
    let t = Instant::now();
    let mut p = probe(HOST, ROOT, "open", &[&dev]);
    while !p.ok() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        p = probe(HOST, ROOT, "open", &[&dev]);
    }
    ensure!(p.ok(), "root reading {dev} after swapoff: {} (expected allowed)", p.describe());
    let p = probe(HOST, ROOT, "open", &[SWAP_NODE_LATE]);
    ensure!(p.ok(), "root reading {SWAP_NODE_LATE} after swapoff: {} (expected allowed)", p.describe());
    said.push(format!("swapoff works; reads again {} ms after it", t.elapsed().as_millis()));
    // swapon while guard enforces, straight after a swapoff (the agent may
    // not have caught up): the kernel's own open is never refused.
    swap_on(&dev, true).map_err(|e| format!("swapon refused with guard enforcing: {e}"))?;
    swap_on(&dev, false).map_err(|e| format!("swapoff refused with guard enforcing: {e}"))?;
    said.push("swapon/swapoff again at once: both work".into());
    // A swap file on ext4 (judged by the kernel's S_SWAPFILE).
    said.push(match swap_file_closed() {
        Ok(s) => s,
        Err(e) if e.starts_with("SKIPPED") => {
            println!("vm-tests: {e}");
            e
        }
        Err(e) => return Err(e),
    });
    Ok(said.join("; "))
}

/// A swap file: refused while active, readable again after `swapoff`.
fn swap_file_closed() -> Result<String, String> {
    let f = "/mnt/ext4/swapfile";
    let pages = 64u32;
    let mut img = vec![0u8; pages as usize * 4096];
    img[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    img[1028..1032].copy_from_slice(&(pages - 1).to_le_bytes());
    img[4096 - 10..4096].copy_from_slice(b"SWAPSPACE2");
    std::fs::write(f, &img).map_err(|e| format!("writing {f}: {e}"))?;
    chmod(f, 0o600);
    let _ = std::process::Command::new("sync").status();
    if let Err(e) = swap_on(f, true) {
        return Err(format!("SKIPPED the swap file check: this kernel refused a swap file on the test's ext4 ({e})"));
    }
    let t = Instant::now();
    let mut p = probe(HOST, ROOT, "open", &[f]);
    while p.ok() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        p = probe(HOST, ROOT, "open", &[f]);
    }
    let took = t.elapsed();
    let off = swap_on(f, false);
    ensure!(p.errno == Some(libc::EPERM) || p.errno == Some(libc::EACCES), "root reading the active swap file {f}: {} (expected EPERM)", p.describe());
    ensure!(!tamper_records_for(p.pid).is_empty(), "no tamper record for root reading the swap file");
    off.map_err(|e| format!("swapoff of the swap file with guard enforcing: {e}"))?;
    let p = probe(HOST, ROOT, "open", &[f]);
    ensure!(p.ok(), "root reading {f} after swapoff: {} (expected allowed at once: S_SWAPFILE is gone)", p.describe());
    let _ = std::fs::remove_file(f);
    Ok(format!("swap file {f} refused {} ms after swapon, reads at once after swapoff", took.as_millis()))
}

/// A restart as systemd does it: the cgroup and the credentials mount go
/// away and come back with new ids and new inodes.
fn unit_restart() -> Outcome {
    let old_id = cgroup_id(UNIT);
    umount(CRED_DIR);
    std::fs::remove_dir(format!("{CGROOT}{UNIT}")).map_err(|e| format!("rmdir unit cgroup: {e}"))?;
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    // systemd's order: the unit's cgroup, then (in the exec child) the
    // credentials written into a fresh mount elsewhere, moved into place.
    mkcg(UNIT);
    mount_tmpfs("/run/cred-staging");
    write_file("/run/cred-staging/key", "rotated-key", 0o666);
    move_mount("/run/cred-staging", CRED_DIR);
    let new_id = cgroup_id(UNIT);
    ensure!(new_id != old_id, "cgroup id did not change");
    // The new owner is allowed once guard has re-armed...
    let mut rearm = None;
    while t.elapsed() < Duration::from_secs(10) {
        if probe(UNIT, SVC, "open", &[KEY]).ok() && probe(SESSION, ALICE, "open", &[KEY]).denied() {
            rearm = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rearm = rearm.ok_or("guard did not re-arm within 10 s (owner not allowed or outsider not denied)")?;
    // ...and outsiders are denied on the new inode.
    let p = probe(HOST, ROOT, "open", &[KEY]);
    ensure!(p.errno == Some(libc::EACCES), "root on the new credential: {}", p.describe());
    Ok(format!("cgroup id {old_id} -> {new_id}; re-armed {} ms after the restart", rearm.as_millis()))
}

/// Every record emitted so far validates against the published schema,
/// and metrics count what the kernel did.
fn feed_schema_and_metrics() -> Outcome {
    let schema: Value = serde_json::from_str(include_str!("../../schema/event-v2.json")).map_err(|e| e.to_string())?;
    let recs = records();
    ensure!(!recs.is_empty(), "no records at all");
    for r in &recs {
        schema_check(&schema, &schema, r, "$")?;
    }
    let m = scrape().map_err(|e| format!("metrics scrape: {e}"))?;
    let denied = metric(&m, "guard_kernel_total{counter=\"denied\"}").ok_or("no denied counter")?;
    let count = |policy: &str| recs.iter().filter(|r| r["decision"] == "denied" && r["policy"] == policy).count() as f64;
    let seen = count("demo") + count("flood");
    ensure!(count("demo") >= 1.0, "no demo denial records to compare with");
    ensure!(denied >= seen, "kernel denied counter {denied} is lower than the {seen} denial records received");
    let per_policy = metric(&m, "guard_decisions_total{policy=\"demo\",unit=\"demo.service\",decision=\"denied\"}").unwrap_or(0.0);
    ensure!(per_policy >= count("demo"), "metrics count {per_policy} demo denials, the feed has {}:\n{m}", count("demo"));
    let runs = metric(&m, "guard_hook_runs_total{hook=\"file_open\"}").unwrap_or(0.0);
    ensure!(runs > 0.0, "no file_open run count from the kernel's BPF stats");
    Ok(format!("{} records valid against schema/event-v2.json; metrics: {denied} denied, file_open runs {runs}", recs.len()))
}

/// A subset of JSON Schema, enough for schema/event-v2.json: type, enum,
/// const, minimum, required, properties, additionalProperties=false, items,
/// oneOf, $ref.
fn schema_check(root: &Value, s: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return schema_check(root, &root["$defs"][name], v, at);
    }
    if let Some(options) = s.get("oneOf").and_then(Value::as_array) {
        let ok = options.iter().filter(|o| schema_check(root, o, v, at).is_ok()).count();
        return if ok == 1 { Ok(()) } else { Err(format!("{at}: matches {ok} of oneOf: {v}")) };
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(xs) => xs.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {v} is not of type {types:?}"));
        }
    }
    if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if x < min {
            return Err(format!("{at}: {v} < minimum {min}"));
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return Err(format!("{at}: {v} != const {c}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let (Some(obj), true) = (v.as_object(), s.get("properties").is_some() || s.get("required").is_some()) {
        for req in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            let k = req.as_str().unwrap_or("");
            if !obj.contains_key(k) {
                return Err(format!("{at}: missing required {k}"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => schema_check(root, ps, val, &format!("{at}.{k}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: property {k} not in schema"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            schema_check(root, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn subscribers() -> Outcome {
    use std::{io::{BufRead, Write}, os::unix::net::UnixStream};
    let sock = "/run/guard/events.sock";
    let meta = std::fs::metadata(sock).map_err(|e| format!("{sock}: {e}"))?;
    use std::os::unix::fs::PermissionsExt;
    ensure!(meta.permissions().mode() & 0o077 == 0, "socket mode {:o} is not root-only", meta.permissions().mode());
    // A login user may not subscribe.
    let p = probe(SESSION, ALICE, "open", &[sock]);
    ensure!(!p.ok(), "a login user could open the socket path");
    // Misbehaving clients: one that never reads, one killed, one sending garbage.
    let never_reads = UnixStream::connect(sock).map_err(|e| e.to_string())?;
    {
        let killed = UnixStream::connect(sock).map_err(|e| e.to_string())?;
        drop(killed);
    }
    let mut garbage = UnixStream::connect(sock).map_err(|e| e.to_string())?;
    let _ = garbage.write_all(&[0xff; 4096]);
    // A good subscriber still gets the next record.
    let good = UnixStream::connect(sock).map_err(|e| e.to_string())?;
    good.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let p = probe(SESSION, ALICE, "open", &[KEY]);
    ensure!(p.errno == Some(libc::EACCES), "denial during subscriber test: {}", p.describe());
    let mut reader = std::io::BufReader::new(good);
    let mut line = String::new();
    let want = format!("\"pid\":{}", p.pid);
    let t = Instant::now();
    while !line.contains(&want) {
        line.clear();
        reader.read_line(&mut line).map_err(|e| format!("good subscriber read: {e}"))?;
        ensure!(t.elapsed() < Duration::from_secs(10), "good subscriber did not get the record");
    }
    drop(never_reads);
    Ok("root-only socket; never-reading, killed and garbage-sending clients did not stop a good subscriber".into())
}

/// What the feed told of one opener.
#[derive(Default, Clone, Copy, Debug)]
struct Told {
    /// Sum of `count`.
    count: u64,
    records: u64,
    /// Records with a null `opener_total` (untracked decisions).
    untracked: u64,
    /// Sum of `count` over tracked records, and the largest `opener_total`:
    /// equal when no tracked decision went missing.
    tracked: u64,
    max_total: u64,
}

/// Per opener pid, what the access records on `path` after the first
/// `skip` lines of the feed file told.
fn opener_counts(skip: usize, path: &str) -> std::collections::HashMap<u64, Told> {
    use std::io::BufRead;
    let mut out: std::collections::HashMap<u64, Told> = std::collections::HashMap::new();
    let Ok(f) = std::fs::File::open(EVENTS) else { return out };
    let needle = format!("\"path\":\"{path}\"");
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok).skip(skip) {
        if !line.contains(&needle) {
            continue;
        }
        let Ok(r) = serde_json::from_str::<Value>(&line) else { continue };
        if r["kind"] != "access" {
            continue;
        }
        let e = out.entry(r["process"]["pid"].as_u64().unwrap_or(0)).or_default();
        let n = r["count"].as_u64().unwrap_or(0);
        e.count += n;
        e.records += 1;
        match r["opener_total"].as_u64() {
            Some(total) => {
                e.tracked += n;
                e.max_total = e.max_total.max(total);
            }
            None => e.untracked += 1,
        }
    }
    out
}

/// `FLOOD pid=.. opens=.. failed=..` lines: pid -> failed opens.
fn flood_results(out: &str) -> Vec<(u64, u64)> {
    out.lines()
        .filter(|l| l.starts_with("FLOOD "))
        .filter_map(|l| {
            let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|n| n.parse::<u64>().ok());
            Some((field("pid=")?, field("failed=")?))
        })
        .collect()
}

/// The kernel's and the agent's counters over a flood: deltas between two
/// scrapes (the kernel's counters belong to the instance, which an earlier
/// agent may have started).
struct Books {
    denied: u64,
    sent: u64,
    coalesced: u64,
    drop_rb: u64,
    drop_rl: u64,
    untracked: u64,
    lost: u64,
    received: u64,
    flushed: u64,
    missed: u64,
}

impl Books {
    fn between(before: &str, after: &str) -> Self {
        let m = |text: &str, name: &str| metric(text, name).unwrap_or(0.0) as u64;
        let d = |name: &str| m(after, name) - m(before, name);
        let k = |c: &str| d(&format!("guard_kernel_total{{counter=\"{c}\"}}"));
        Self {
            denied: k("denied") + k("audited"),
            sent: k("events_sent"),
            coalesced: k("coalesced"),
            drop_rb: k("dropped_ringbuf_full"),
            drop_rl: k("dropped_rate_limited"),
            untracked: k("untracked"),
            lost: k("lost"),
            received: d("guard_feed_received_total"),
            flushed: d("guard_feed_flushed_total"),
            missed: d("guard_output_missed_total"),
        }
    }

    /// The kernel counted each of the `failed` opens once, in exactly one
    /// outcome, and the events file missed no record.
    fn check(&self, failed: u64) -> Result<(), String> {
        let Books { denied, sent, coalesced, drop_rb, drop_rl, missed, .. } = *self;
        ensure!(denied == failed, "kernel counted {denied} denials for {failed} denied opens");
        ensure!(
            sent + coalesced + drop_rb + drop_rl == denied,
            "kernel books: sent {sent} + coalesced {coalesced} + ringbuf {drop_rb} + ratelimit {drop_rl} != denials {denied}"
        );
        ensure!(missed == 0, "the events file missed {missed} records");
        Ok(())
    }
}

/// Waits for the feed to go quiet (no record received for a flush window
/// and a half), then returns the last scrape.
fn settled_scrape() -> Result<String, String> {
    let mut before = scrape().map_err(|e| e.to_string())?;
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = scrape().map_err(|e| e.to_string())?;
        let same = |m: &str| metric(&now, m) == metric(&before, m);
        if same("guard_feed_received_total") && same("guard_feed_flushed_total") {
            return Ok(now);
        }
        ensure!(t.elapsed() < Duration::from_secs(120), "the feed did not go quiet within 120 s");
        before = now;
    }
}

/// Two processes flood denied opens while a subscriber reads slowly. The
/// kernel coalesces: each opener's records add up exactly to the denials
/// it got, the kernel's books balance, and the agent stays bounded.
fn flood(agent: &Agent) -> Outcome {
    use std::io::{BufRead, BufReader};
    let per_proc: u64 = std::env::var("GUARD_FLOOD_OPENS").ok().and_then(|s| s.parse().ok()).unwrap_or(500_000);
    // Start from a quiet feed: earlier scenarios' records may still be
    // draining (scenario 23 ends with an outsider's burst of denials).
    let before = settled_scrape()?;
    let lines_before = std::fs::read_to_string(EVENTS).unwrap_or_default().lines().count();

    // A slow subscriber: reads one line every 10 ms.
    let slow = std::os::unix::net::UnixStream::connect("/run/guard/events.sock").map_err(|e| e.to_string())?;
    let slow_reader = std::thread::spawn(move || {
        let mut r = BufReader::new(slow);
        let mut l = String::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(600) {
            l.clear();
            match r.read_line(&mut l) {
                Ok(0) | Err(_) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });

    let t = Instant::now();
    let floods: Vec<_> = (0..2)
        .map(|_| background(SESSION, ALICE, "flood", &[FLOOD_FILE, &per_proc.to_string()]))
        .collect();
    // Scrape during the flood.
    std::thread::sleep(Duration::from_millis(500));
    let during = scrape().map_err(|e| format!("metrics scrape during the flood failed: {e}"))?;
    ensure!(during.contains("guard_kernel_total"), "metrics scrape during flood returned no metrics");
    let mut openers = Vec::new();
    for f in floods {
        openers.extend(flood_results(&f.finish().raw));
    }
    let flood_secs = t.elapsed().as_secs_f64();
    let failed: u64 = openers.iter().map(|o| o.1).sum();
    ensure!(openers.len() == 2 && failed == 2 * per_proc, "{failed} of {} flood opens were denied (expected all): {openers:?}", 2 * per_proc);
    let after = settled_scrape()?;
    let b = Books::between(&before, &after);
    b.check(failed)?;
    ensure!(b.received == b.sent, "agent received {} records, kernel sent {}", b.received, b.sent);
    let Books { denied, sent, coalesced, drop_rb, drop_rl, lost, .. } = b;
    ensure!(lost == 0, "{lost} decisions lost with two openers");
    let counts = opener_counts(lines_before, FLOOD_FILE);
    // The first denial of each burst is a record of its own, written by the
    // kernel at once (an alert never waits for the window).
    for (pid, _) in &openers {
        let first = records_where(&format!("\"pid\":{pid},"), |r| r["kind"] == "access" && r["process"]["pid"].as_u64() == Some(*pid))
            .into_iter()
            .next()
            .ok_or_else(|| format!("opener {pid}: no record"))?;
        ensure!(
            first["count"] == 1 && first["origin"] == "kernel" && first["first_time"] == first["time"],
            "opener {pid}: the burst's first record is not its first denial alone, written by the kernel: {first}"
        );
    }
    let mut records = 0;
    for (pid, want) in &openers {
        let c = counts.get(pid).copied().unwrap_or_default();
        ensure!(c.count == *want, "opener {pid}: the feed's counts add up to {}, the kernel denied it {want} times ({c:?})", c.count);
        ensure!(c.untracked == 0 && c.max_total == *want, "opener {pid}: untracked records or a kernel total short of {want}: {c:?}");
        records += c.records;
    }
    ensure!(records < 2 * per_proc / 100, "{records} records for {} denials: not coalesced", 2 * per_proc);
    let peak = agent.peak_rss_kb();
    ensure!(peak > 0 && peak < 256 * 1024, "agent peak RSS {peak} kB");
    let sub_missed = metric(&after, "guard_subscriber_missed_total").unwrap_or(0.0) as u64;
    drop(slow_reader);
    Ok(format!(
        "{} denied opens from 2 openers in {flood_secs:.1} s ({:.0}/s); per-opener feed totals {:?} == kernel denials exactly, in {records} records; \
         kernel: sent {sent}, coalesced {coalesced}, ringbuf-full {drop_rb}, rate-limited {drop_rl} (sum == {denied}); slow subscriber missed {sub_missed}; agent peak RSS {peak} kB",
        2 * per_proc,
        2.0 * per_proc as f64 / flood_secs,
        openers.iter().map(|o| o.1).collect::<Vec<_>>(),
    ))
}

/// 1,000 processes flood at once: more openers than the kernel's table
/// holds (the suite's agent runs with `--max-openers 512`) and more first
/// records than its ring buffer (64 KiB). Every decision is either in an
/// opener's exact total or counted as lost; tracked openers' totals match.
fn flood_many(agent: &Agent) -> Outcome {
    const PROCS: usize = 1000;
    const OPENS: u64 = 200;
    let before = settled_scrape()?;
    let lines_before = std::fs::read_to_string(EVENTS).unwrap_or_default().lines().count();
    let t = Instant::now();
    let out = background(SESSION, ALICE, "flood-many", &[FLOOD_FILE, &PROCS.to_string(), &OPENS.to_string()]).finish().raw;
    let flood_secs = t.elapsed().as_secs_f64();
    let openers = flood_results(&out);
    let failed: u64 = openers.iter().map(|o| o.1).sum();
    ensure!(openers.len() == PROCS, "{} of {PROCS} flooding processes reported", openers.len());
    ensure!(failed == PROCS as u64 * OPENS, "{failed} of {} opens denied", PROCS as u64 * OPENS);
    let t_settle = Instant::now();
    let after = settled_scrape()?;
    let settle_secs = t_settle.elapsed().as_secs_f64();
    let b = Books::between(&before, &after);
    b.check(failed)?;
    let Books { denied, sent, coalesced, drop_rb, drop_rl, untracked, lost, received, flushed, .. } = b;
    ensure!(untracked > 0, "1,000 openers fit a 512-opener table? untracked 0 (is --max-openers applied?)");
    let counts = opener_counts(lines_before, FLOOD_FILE);
    let (mut told, mut exact) = (0u64, 0usize);
    for (pid, want) in &openers {
        let c = counts.get(pid).copied().unwrap_or_default();
        told += c.count;
        // The kernel's running total for the opener is all told, whatever
        // the ring buffer dropped.
        ensure!(c.tracked == c.max_total, "opener {pid}: tracked records add up to {}, the kernel's total says {} ({c:?})", c.tracked, c.max_total);
        ensure!(c.count <= *want, "opener {pid}: the feed counts {} > {want} denials", c.count);
        exact += (c.count == *want) as usize;
    }
    let partial = PROCS - exact;
    ensure!(told + lost == denied, "feed totals {told} + lost {lost} != kernel denials {denied}");
    let peak = agent.peak_rss_kb();
    ensure!(peak > 0 && peak < 256 * 1024, "agent peak RSS {peak} kB");
    Ok(format!(
        "{PROCS} openers x {OPENS} denied opens in {flood_secs:.1} s; feed settled {settle_secs:.1} s later; {exact} openers exact, {partial} partly untracked; \
         feed totals {told} + lost {lost} == {denied} denials; kernel: sent {sent}, coalesced {coalesced}, ringbuf-full {drop_rb}, rate-limited {drop_rl}, untracked {untracked}; \
         agent received {received} records ({:.0}/s over the flood and settle), {flushed} flushed from the table; agent peak RSS {peak} kB",
        received as f64 / (flood_secs + settle_secs),
    ))
}

/// Root's own program cannot put itself (or a child) into a protected
/// unit's cgroup, create a cgroup in it, or create the cgroup of a stopped
/// protected unit; systemd's part (here: the harness) still can.
fn become_unit() -> Outcome {
    let refused = |p: &Probe, what: &str| -> Result<(), String> {
        if p.errno == Some(libc::EACCES) || p.raw.contains("errno=13") {
            Ok(())
        } else {
            Err(format!("root's program {what}: {} (expected EACCES)", p.describe()))
        }
    };
    let procs = format!("{CGROOT}{UNIT}/cgroup.procs");
    let p = probe_bin(INTRUDER, HOST, ROOT, "join", &[UNIT, "procs"]);
    refused(&p, "joining the unit through cgroup.procs")?;
    let rec = records_for(p.pid);
    ensure!(rec.len() == 1 && rec[0]["file"]["path"] == procs.as_str() && rec[0]["policy"] == "demo", "records for the join: {rec:?}");
    let p = probe_bin(INTRUDER, HOST, ROOT, "join", &[UNIT, "threads"]);
    refused(&p, "joining the unit through cgroup.threads")?;
    // A new cgroup is judged as kernfs makes it (`kernfs_init_security`),
    // whose refusals kernfs reports as ENOMEM; the record says what it was.
    let refused_mkdir = |p: &Probe, what: &str, parent: &str| -> Result<(), String> {
        ensure!(p.errno == Some(libc::ENOMEM), "root's program {what}: {} (expected ENOMEM from kernfs)", p.describe());
        let rec = records_for(p.pid);
        ensure!(
            rec.len() == 1 && rec[0]["hook"] == "kernfs_init_security" && rec[0]["file"]["path"] == parent && rec[0]["decision"] == "denied",
            "records for {what} (expected 1 from kernfs_init_security naming {parent}): {rec:?}"
        );
        Ok(())
    };
    let p = probe_bin(INTRUDER, HOST, ROOT, "mkdir", &[&format!("{CGROOT}{UNIT}/intruder-sub")]);
    refused_mkdir(&p, "creating a subcgroup in the unit", &format!("{CGROOT}{UNIT}"))?;
    ensure!(!std::path::Path::new(&format!("{CGROOT}{UNIT}/intruder-sub")).exists(), "the refused subcgroup exists");
    // A child started straight into the unit is an outsider there.
    let p = probe_bin(INTRUDER, HOST, ROOT, "clone-into", &[UNIT, &SVC.to_string(), KEY]);
    refused(&p, "cloning a child into the unit that opens the key as svc")?;
    let child: u32 = p.raw.lines().find_map(|l| l.strip_prefix("CLONED child=")).and_then(|v| v.trim().parse().ok()).ok_or("no child pid")?;
    let rec = records_for(child);
    ensure!(rec.len() == 1 && rec[0]["process"]["cgroup"] == UNIT, "records for the planted child {child} (expected 1, in {UNIT}): {rec:?}");
    // A stopped unit's cgroup cannot be made by root, nor renamed into place.
    let stopped = format!("{CGROOT}/system.slice/stopped.service");
    let p = probe_bin(INTRUDER, HOST, ROOT, "mkdir", &[&stopped]);
    refused_mkdir(&p, "creating the stopped unit's cgroup", &format!("{CGROOT}/system.slice"))?;
    ensure!(!std::path::Path::new(&stopped).exists(), "the refused cgroup {stopped} exists");
    let p = probe_bin(INTRUDER, HOST, ROOT, "rename", &[&format!("{CGROOT}{OTHER}"), &stopped]);
    refused(&p, "renaming another cgroup onto the stopped unit's name")?;
    let p = probe_bin(INTRUDER, HOST, ROOT, "open", &[STOPPED_FILE]);
    ensure!(p.errno == Some(libc::EACCES), "root opening the stopped unit's file: {}", p.describe());
    // systemd's part still works: a delegated subcgroup, joined by the
    // harness, reads; root's program cannot join that subcgroup either.
    let sub = format!("{UNIT}/delegated");
    mkcg(&sub);
    let p = probe(&sub, SVC, "read", &[KEY]);
    ensure!(p.ok(), "the unit's own process in {sub}: {}", p.describe());
    let p = probe_bin(INTRUDER, HOST, ROOT, "join", &[&sub, "procs"]);
    refused(&p, "joining the unit's subcgroup")?;
    let _ = std::fs::remove_dir(format!("{CGROOT}{sub}"));
    let st = policy_status("demo.service")?;
    Ok(format!(
        "cgroup.procs/threads, mkdir, CLONE_INTO_CGROUP (child {child} in {UNIT} denied, 1 record), stopped unit's cgroup by mkdir and rename: \
         all refused; the harness (systemd's part) joins a delegated subcgroup; join_refused {}",
        st["join_refused"]
    ))
}

/// A package upgrade: a new guard binary is renamed over the old one and
/// guard restarts with new options. The old agent hands trust over on its
/// way out; the new one arms a new instance and only then retires the old.
/// An outsider and the owner open the key all along: not one outsider open
/// succeeds, not one owner open fails.
fn upgrade(agent: &std::cell::RefCell<Option<Agent>>) -> Outcome {
    let old = guard_status()?;
    let old_dir = old["instances"][0]["instance"].as_str().unwrap_or("").to_string();
    let old_progs: Vec<u64> = old["instances"][0]["objects"]["programs"].as_array().cloned().unwrap_or_default().iter().filter_map(|v| v.as_u64()).collect();
    // The new package's binary, renamed over the running one (as dpkg does).
    std::fs::copy(GUARD, "/bin/guard.dpkg-new").map_err(|e| format!("copying the new binary: {e}"))?;
    chmod("/bin/guard.dpkg-new", 0o755);
    std::fs::rename("/bin/guard.dpkg-new", GUARD).map_err(|e| format!("renaming the new binary over {GUARD}: {e}"))?;
    std::fs::copy(SELF, "/bin/bpf-tool").map_err(|e| e.to_string())?;
    chmod("/bin/bpf-tool", 0o755);

    let outsider = background(SESSION, ALICE, "flood", &[KEY, "400000"]);
    let owner = background(UNIT, SVC, "flood", &[KEY, "200000"]);
    std::thread::sleep(Duration::from_millis(300));
    let status = agent.borrow_mut().take().expect("agent").stop();
    ensure!(status.success(), "the old agent exited with {status}");
    let handover = records_of_kind("admin").into_iter().any(|r| r["action"] == "handover");
    ensure!(handover, "the old agent recorded no `handover` for the replaced binary");
    let new = start_agent("/tmp/policies", &["--allow-bpf-exe", "/bin/bpf-tool"]);
    *agent.borrow_mut() = Some(new);
    let count = |b: Background| -> (u64, u64) {
        let raw = b.finish().raw;
        let line = raw.lines().find(|l| l.starts_with("FLOOD ")).unwrap_or("").to_string();
        let f = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
        (f("opens="), f("failed="))
    };
    let (o_opens, o_failed) = count(outsider);
    let (w_opens, w_failed) = count(owner);
    ensure!(o_failed == o_opens, "an outsider opened the key {} times during the upgrade", o_opens.saturating_sub(o_failed));
    ensure!(w_failed == 0, "the owner was refused {w_failed} times during the upgrade");
    let log = std::fs::read_to_string(GUARD_LOG).unwrap_or_default();
    ensure!(log.contains("armed instance") && log.contains("retired the older instance"), "the new agent did not arm and retire:\n{log}");
    // The feed is written by its own thread: give it up to 5 s.
    let replaced = || records_of_kind("admin").into_iter().filter(|r| r["action"] == "replaced").count();
    let t = Instant::now();
    while replaced() == 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(replaced() == 1, "{} `replaced` admin records (expected 1)", replaced());
    let now = guard_status()?;
    let instances = now["instances"].as_array().map_or(0, |a| a.len());
    ensure!(instances == 1 && now["instances"][0]["instance"] != old_dir.as_str(), "after the upgrade: {instances} instances: {now}");
    let t = Instant::now();
    while bpf_prog_ids().iter().any(|id| old_progs.contains(&u64::from(*id))) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(!bpf_prog_ids().iter().any(|id| old_progs.contains(&u64::from(*id))), "the old instance's programs are still loaded");
    // The allowed BPF tool may load LSM programs (the kernel, not guard,
    // turns this one down), and still cannot reach guard's maps.
    let p = probe_bin("/bin/bpf-tool", HOST, ROOT, "bpf-load", &["lsm"]);
    ensure!(p.errno.is_some_and(|e| e != libc::EPERM), "--allow-bpf-exe tool loading an LSM program: {} (expected the kernel's EINVAL)", p.describe());
    let map = now["instances"][0]["objects"]["maps"][0].as_u64().unwrap_or(0).to_string();
    let p = probe_bin("/bin/bpf-tool", HOST, ROOT, "bpf-map-fd", &[&map]);
    ensure!(p.errno == Some(libc::EPERM), "--allow-bpf-exe tool getting guard's map {map}: {}", p.describe());
    let p = probe_bin(INTRUDER, HOST, ROOT, "bpf-load", &["lsm"]);
    ensure!(p.errno == Some(libc::EPERM), "root's other program loading an LSM program: {}", p.describe());
    Ok(format!(
        "binary renamed over, `handover` recorded, new instance armed and {old_dir} retired; during it the outsider \
         {o_failed}/{o_opens} opens refused, the owner {w_opens} opens with {w_failed} refused; allowed BPF tool loads \
         (EINVAL from the kernel) but cannot reach guard's maps"
    ))
}

/// SIGTERM stops the agent, not enforcement.
fn sigterm_keeps_enforcing(status: std::process::ExitStatus) -> Outcome {
    ensure!(status.success(), "guard exited with {status} on SIGTERM");
    let p = probe(SESSION, ALICE, "open", &[KEY]);
    ensure!(p.errno == Some(libc::EACCES), "after SIGTERM, a login user opening the key: {} (expected still denied)", p.describe());
    let owner = probe(UNIT, SVC, "read", &[KEY]);
    ensure!(owner.ok(), "after SIGTERM, the unit reading its key: {}", owner.describe());
    let stopped = records_of_kind("admin").iter().any(|r| r["action"] == "agent-stopped");
    ensure!(stopped, "no admin record `agent-stopped` on the feed");
    Ok("exit 0; outsider still EACCES, owner allowed; `agent-stopped` admin record".into())
}

/// `guard unload` is the one way to stop enforcing.
fn unload() -> Outcome {
    let st = guard_status()?;
    let progs: Vec<u64> = st["instances"][0]["objects"]["programs"].as_array().cloned().unwrap_or_default().iter().filter_map(|v| v.as_u64()).collect();
    ensure!(!progs.is_empty(), "guard status lists no programs: {st}");
    let (code, out, err) = guard_cli(&["unload"]);
    ensure!(code == Some(0), "guard unload exited {code:?}: {out}{err}");
    let rec: serde_json::Value = serde_json::from_str(out.trim()).map_err(|e| format!("guard unload printed no record ({e}): {out}"))?;
    ensure!(rec["kind"] == "admin" && rec["action"] == "unloaded", "unload record: {rec}");
    let p = probe(SESSION, ALICE, "open", &[KEY]);
    ensure!(p.ok(), "after guard unload the key is still denied: {}", p.describe());
    // Detached at once (above); freed a moment later (6.12 releases links
    // and their programs from deferred work).
    let t = Instant::now();
    let mut left: Vec<u64>;
    loop {
        left = bpf_prog_ids().into_iter().map(u64::from).filter(|id| progs.contains(id)).collect();
        if left.is_empty() || t.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(left.is_empty(), "guard programs {left:?} still loaded 10 s after unload");
    let (code, out, _) = guard_cli(&["status"]);
    ensure!(code == Some(4), "guard status after unload: exit {code:?} (expected 4): {out}");
    Ok(format!("exit 0 with an `unloaded` record; key open to DAC again; {} guard programs gone; status exit 4", progs.len()))
}

/// SIGKILL the agent: nothing changes in the kernel; a new agent adopts
/// the pinned instance (no reload, no re-attach) and reads what the kernel
/// recorded while no agent ran.
fn agent_killed(agent: &std::cell::RefCell<Option<Agent>>) -> Outcome {
    let progs_before = bpf_prog_ids();
    agent.borrow_mut().take().expect("agent").kill9();
    let p = probe(HOST, ROOT, "open", &[KEY]);
    ensure!(p.errno == Some(libc::EACCES), "with the agent killed, root outside opening the key: {} (expected EACCES)", p.describe());
    let owner = probe(UNIT, SVC, "read", &[KEY]);
    ensure!(owner.ok(), "with the agent killed, the unit reading its key: {}", owner.describe());
    let st = guard_status()?;
    ensure!(st["enforcing"] == true && st["agent_pid"].is_null(), "guard status with no agent: {st}");
    // With no guard process running, the binary is not busy: only guard's
    // own rule keeps root from rewriting it in place.
    let w = probe(HOST, ROOT, "open-write", &[GUARD]);
    ensure!(w.errno == Some(libc::EPERM), "root opening {GUARD} for writing: {} (expected EPERM)", w.describe());
    let t = probe(HOST, ROOT, "truncate", &[GUARD]);
    ensure!(t.errno == Some(libc::EPERM), "root truncating {GUARD}: {} (expected EPERM)", t.describe());

    let new = start_agent("/tmp/policies", &[]);
    let log = std::fs::read_to_string(GUARD_LOG).unwrap_or_default();
    *agent.borrow_mut() = Some(new);
    ensure!(log.contains("adopted instance"), "the restarted agent did not adopt the instance:\n{log}");
    let progs_after = bpf_prog_ids();
    ensure!(progs_after == progs_before, "programs changed across the restart: {progs_before:?} -> {progs_after:?} (a second load or attach)");
    let backlog = records_for(p.pid);
    ensure!(backlog.len() == 1, "the denial made while no agent ran: {} records after the restart (expected 1)", backlog.len());
    let tw = tamper_records_for(w.pid);
    ensure!(tw.len() == 1 && tw[0]["hook"] == "file_open", "tamper records for the write attempt: {tw:?}");
    let p2 = probe(HOST, ROOT, "open", &[KEY]);
    ensure!(p2.errno == Some(libc::EACCES), "after the restart: {}", p2.describe());
    Ok(format!(
        "SIGKILL: root still EACCES, owner allowed, status `enforcing` with no agent, binary write/truncate EPERM; \
         restart adopted ({} programs unchanged), backlog record delivered",
        progs_after.len()
    ))
}

/// Root tries every route to guard's objects; each is refused with EPERM
/// and a tamper record, and enforcement is unchanged afterwards.
fn tamper(agent: &Agent) -> Outcome {
    let st = guard_status()?;
    let inst = &st["instances"][0];
    let ids = |k: &str| -> Vec<String> {
        inst["objects"][k].as_array().cloned().unwrap_or_default().iter().filter_map(|v| v.as_u64()).map(|v| v.to_string()).collect()
    };
    let (maps, progs, links) = (ids("maps"), ids("programs"), ids("links"));
    ensure!(!maps.is_empty() && !progs.is_empty() && !links.is_empty(), "guard status lists no objects: {inst}");
    let dir = inst["instance"].as_str().unwrap_or("").to_string();
    let pid = agent.child.id().to_string();
    let mut attempts: Vec<(String, Vec<String>)> = Vec::new();
    for id in &maps {
        attempts.push(("bpf-map-fd".into(), vec![id.clone()]));
    }
    for id in &progs {
        attempts.push(("bpf-prog-fd".into(), vec![id.clone()]));
    }
    for id in &links {
        attempts.push(("bpf-link-fd".into(), vec![id.clone()]));
    }
    let pin = |p: &str| format!("{dir}/{p}");
    for (op, args) in [
        ("bpf-obj-get", vec![pin("maps/POLICIES")]),
        ("bpf-obj-get", vec![pin("maps/INODE_RULES")]),
        ("unlink", vec![pin("links/guard_file_open")]),
        ("unlink", vec![pin("maps/POLICIES")]),
        ("rename", vec![pin("links/guard_bpf"), "/sys/fs/bpf/stolen".into()]),
        ("rename", vec![dir.clone(), "/sys/fs/bpf/moved".into()]),
        ("rename", vec![PIN_ROOT.into(), "/sys/fs/bpf/moved-root".into()]),
        ("umount", vec!["/sys/fs/bpf".into()]),
        ("umount", vec!["/sys/fs/bpf".into(), "lazy".into()]),
        ("umount", vec!["/sys".into(), "lazy".into()]),
        ("bpf-load", vec!["lsm".into()]),
        ("bpf-load", vec!["fmod_ret".into()]),
        ("bpf-load", vec!["ext".into()]),
        ("bpf-link-create", vec!["27".into()]),
        ("bpf-link-create", vec!["26".into()]),
        ("bpf-rawtp-null", vec![]),
        ("vm-read", vec![pid.clone(), "0".into()]),
        ("pidfd-getfd", vec![pid.clone()]),
        // Re-opening the agent's fds, or reading its environment, is refused
        // too (ptrace read mode, which guard refuses for its own processes).
        ("open", vec![format!("/proc/{pid}/fd/1")]),
        ("open", vec![format!("/proc/{pid}/environ")]),
        // A traced process may not run guard's binary (its tracer would
        // drive a trusted process), nor the harness that plays systemd here.
        ("traced-exec", vec![GUARD.into(), "status".into()]),
        ("traced-exec", vec![SELF.into(), "probe".into(), "open".into(), "/".into()]),
    ] {
        attempts.push((op.into(), args));
    }
    let mut refused = 0;
    for (op, args) in &attempts {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = probe(HOST, ROOT, op, &a);
        ensure!(p.denied(), "root {op} {args:?}: {} (expected EPERM from guard)", p.describe());
        // A traced exec is refused in the forked child.
        let who = p.raw.lines().find_map(|l| l.strip_prefix("CLONED child=")).and_then(|v| v.trim().parse().ok()).unwrap_or(p.pid);
        let recs = tamper_records_for(who);
        ensure!(recs.len() == 1, "root {op} {args:?}: {} tamper records (expected 1): {recs:?}", recs.len());
        refused += 1;
    }
    // Still enforcing, still whole.
    let p = probe(HOST, ROOT, "open", &[KEY]);
    ensure!(p.errno == Some(libc::EACCES), "after the attempts, root opening the key: {}", p.describe());
    let again = guard_status()?;
    ensure!(again["instances"][0]["hooks"] == inst["hooks"], "hooks changed: {} -> {}", inst["hooks"], again["instances"][0]["hooks"]);
    let m = scrape().map_err(|e| e.to_string())?;
    let tampers = metric(&m, "guard_kernel_total{counter=\"tamper_denied\"}").unwrap_or(0.0);
    ensure!(tampers >= refused as f64, "kernel tamper counter {tampers} < {refused} refusals");
    Ok(format!(
        "{refused} attempts by root refused with EPERM, one tamper record each ({} map, {} program, {} link ids; pins; 3 unmounts; \
         LSM/fmod_ret/freplace loads; 3 attach routes; ptrace-class, pidfd_getfd and /proc/<pid>/fd on the agent; \
         exec of trusted binaries under a tracer); still enforcing",
        maps.len(),
        progs.len(),
        links.len()
    ))
}

/// Protected inodes on ext4 keep their rules when evicted from the cache.
fn eviction() -> Outcome {
    expect_denied(SESSION, ALICE, "open", &[EXT4_SECRET], EXT4_SECRET)?;
    let before = policy_status("demo.service")?;
    drop_caches();
    let mid = policy_status("demo.service")?;
    let evicted = mid["evicted_now"].as_u64().unwrap_or(0);
    ensure!(evicted >= 2, "drop_caches evicted {evicted} protected inodes (expected the ext4 files and directory): {mid}");
    let r1 = expect_denied(SESSION, ALICE, "open", &[EXT4_SECRET], EXT4_SECRET)?;
    let p = probe(UNIT, SVC, "read", &[EXT4_SECRET]);
    ensure!(p.ok(), "the unit reading its ext4 secret after eviction: {}", p.describe());
    // A file created in the protected directory (inherited), then evicted.
    let newf = format!("{EXT4_SECRETS}/created-later");
    let p = probe(UNIT, SVC, "create", &[&newf]);
    ensure!(p.ok(), "the unit creating {newf}: {}", p.describe());
    drop_caches();
    let r2 = expect_denied(HOST, ROOT, "open", &[&newf], &newf)?;
    // A deleted file's rule does not pass to a new file reusing its inode.
    let old = ino(EXT4_DOOMED);
    let p = probe(UNIT, SVC, "unlink", &[EXT4_DOOMED]);
    ensure!(p.ok(), "the unit deleting its file: {}", p.describe());
    // Let the deleted inode be freed now, not whenever the kernel gets to
    // it (on 6.12 a new file sometimes came before the old number was free).
    drop_caches();
    let mut reused = None;
    for n in 0..64 {
        let f = format!("{EXT4_PUBLIC}/f{n}");
        write_file(&f, "public", 0o666);
        if ino(&f) == old {
            reused = Some(f);
            break;
        }
    }
    let reused = reused.ok_or_else(|| format!("ext4 did not reuse inode {old} within 64 new files"))?;
    drop_caches();
    let p = probe(SESSION, ALICE, "open", &[&reused]);
    ensure!(p.ok(), "{reused} reuses the deleted secret's inode {old} and was denied: {}", p.describe());
    ensure!(records_settled(p.pid).is_empty(), "the open of {reused} produced a record");
    let after = policy_status("demo.service")?;
    Ok(format!(
        "evicted {evicted} protected inodes; after eviction: {r1}; inherited file after eviction: {r2}; \
         inode {old} reused by {reused}: allowed, no record; stats before {} / after {}",
        before["protected_inodes"], after
    ))
}
