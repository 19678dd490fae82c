//! Scenarios against a real systemd (252, Debian bookworm) booted in the VM:
//! `demo.service` gets a credential with `SetCredential=`/`LoadCredential=`,
//! systemd mounts it under /run/credentials/demo.service, and `guard.service`
//! protects it. `vm-tests demo` narrates the same steps that `vm-tests
//! systemd` asserts.
//!
//! Units (written by `cargo xtask` into the image, see xtask/src/guest.rs):
//! - guard.service: `guard run --policy-dir /etc/guard/policies ...`, ready
//!   when /tmp/guard.ready exists (ExecStartPost waits for it);
//! - demo.service: User=svc (1002), reads its credential at start and
//!   records the result in /run/demo/start.log, then sleeps.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use crate::env::*;

const CRED: &str = "/run/credentials/demo.service/api-token";

fn systemctl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("systemctl").args(args).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("systemctl {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn unit_cgroup() -> Result<String, String> {
    systemctl(&["show", "-P", "ControlGroup", "demo.service"])
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<Duration, String> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Ok(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("timed out after {} s waiting for {what}", limit.as_secs()))
}

/// What the demo shows and the test asserts, step by step. `say` narrates.
fn scenario(say: &dyn Fn(&str)) -> Result<Vec<String>, String> {
    let mut passed = Vec::new();
    wait_for("guard.service to attach", Duration::from_secs(120), || std::path::Path::new("/tmp/guard.ready").exists())?;
    wait_for("demo.service to run", Duration::from_secs(60), || systemctl(&["is-active", "demo.service"]).is_ok())?;
    let cg = unit_cgroup()?;
    let log = std::fs::read_to_string(GUARD_LOG).unwrap_or_default();
    say(&format!("guard.service: {}", log.lines().find(|l| l.starts_with("guard: protecting")).unwrap_or("(no summary)")));
    say(&format!("demo.service runs in cgroup {cg} (id {}) as user svc (uid {SVC})", cgroup_id(&cg)));
    say(&format!("systemd mounted its credential at {CRED}"));

    // 1. The unit itself read the credential at start.
    wait_for("demo.service's own read", Duration::from_secs(10), || {
        std::fs::read_to_string("/run/demo/start.log").map(|s| s.contains("read ok")).unwrap_or(false)
    })?;
    say("ALLOWED  demo.service read its own credential at start (see /run/demo/start.log)");
    // 2. Another process of the unit (its cgroup, its uid).
    wait_for("guard to tag the credential", Duration::from_secs(10), || probe(HOST, ROOT, "open", &[CRED]).denied())?;
    let p = probe(&cg, SVC, "read", &[CRED]);
    if !p.ok() {
        return Err(format!("a process in {cg} as svc reading the credential: {}", p.describe()));
    }
    say(&format!("ALLOWED  pid {} in {cg}, uid {SVC} (svc): read {CRED}", p.pid));
    passed.push("unit-reads-own-credential".to_string());

    // 3. Root outside the unit.
    let p = probe("/system.slice/guard-test.service", ROOT, "open", &[CRED]);
    if p.errno != Some(libc::EACCES) {
        return Err(format!("root outside the unit opening the credential: {} (expected EACCES)", p.describe()));
    }
    say(&format!("DENIED   pid {} as root (uid 0) in /system.slice/guard-test.service: open {CRED}: Permission denied", p.pid));
    let recs = records_for(p.pid);
    if recs.len() != 1 {
        return Err(format!("expected 1 denial record for pid {}, got {}", p.pid, recs.len()));
    }
    say(&format!("         denial record:\n{}", serde_json::to_string_pretty(&recs[0]).unwrap_or_default()));
    if recs[0]["policy"] != "demo" || recs[0]["file"]["path"] != CRED || recs[0]["process"]["uid"] != 0 {
        return Err(format!("denial record does not match: {}", recs[0]));
    }
    passed.push("root-outside-denied-and-recorded".to_string());

    // 4. The unit's own UID from a login session.
    let p = probe(SESSION, SVC, "open", &[CRED]);
    if p.errno != Some(libc::EACCES) {
        return Err(format!("svc outside the unit: {} (expected EACCES)", p.describe()));
    }
    say(&format!("DENIED   pid {} as svc (the unit's own uid) in {SESSION}: Permission denied", p.pid));
    passed.push("same-uid-outside-denied".to_string());

    // 4b. Root's own program cannot become the unit by joining its cgroup.
    let p = probe_bin("/usr/bin/intruder", HOST, ROOT, "join", &[&cg, "procs"]);
    if p.errno != Some(libc::EACCES) {
        return Err(format!("root's program writing itself into {cg}/cgroup.procs: {} (expected EACCES)", p.describe()));
    }
    say(&format!("DENIED   pid {} as root: joining {cg} (cgroup.procs): only systemd puts processes into the unit", p.pid));
    passed.push("root-cannot-join-unit".to_string());

    // 4c. The agent killed: the kernel keeps enforcing; a restart adopts.
    let progs = bpf_prog_ids();
    systemctl(&["kill", "-s", "KILL", "guard.service"])?;
    wait_for("guard.service to die", Duration::from_secs(20), || systemctl(&["is-active", "guard.service"]).is_err())?;
    let p = probe(HOST, ROOT, "open", &[CRED]);
    if p.errno != Some(libc::EACCES) {
        return Err(format!("with guard.service killed, root opening the credential: {} (expected EACCES)", p.describe()));
    }
    if !probe(&cg, SVC, "read", &[CRED]).ok() {
        return Err("with guard.service killed, the unit could not read its credential".into());
    }
    say(&format!("KILLED   systemctl kill -s KILL guard.service: pid {} as root still denied; the unit still reads", p.pid));
    let _ = std::fs::remove_file("/tmp/guard.ready");
    systemctl(&["start", "guard.service"])?;
    wait_for("guard.service to come back", Duration::from_secs(120), || std::path::Path::new("/tmp/guard.ready").exists())?;
    let log = std::fs::read_to_string(GUARD_LOG).unwrap_or_default();
    let adopted = log.lines().rev().find(|l| l.starts_with("guard: protecting")).unwrap_or("");
    if !adopted.contains("adopted instance") {
        return Err(format!("the restarted agent did not adopt the running instance: {adopted}"));
    }
    if bpf_prog_ids() != progs {
        return Err("programs changed across the agent's restart (a second load or attach)".into());
    }
    if !probe(HOST, ROOT, "open", &[CRED]).denied() || !probe(&cg, SVC, "read", &[CRED]).ok() {
        return Err("after the agent's restart: root not denied or the unit refused".into());
    }
    say("RESTART  systemctl start guard.service: adopted the running instance (same programs, no re-attach)");
    passed.push("agent-killed-enforcement-stays-restart-adopts".to_string());

    // 5. A real restart: new cgroup, new credentials mount, new inodes.
    let old_id = cgroup_id(&cg);
    let old_ino = inode(CRED);
    let _ = std::fs::remove_file("/run/demo/start.log");
    let t = Instant::now();
    systemctl(&["restart", "demo.service"])?;
    let cg2 = unit_cgroup()?;
    let new_id = cgroup_id(&cg2);
    let rearmed = wait_for("guard to re-arm after the restart", Duration::from_secs(10), || {
        inode(CRED) != old_ino && probe(HOST, ROOT, "open", &[CRED]).denied() && probe(&cg2, SVC, "read", &[CRED]).ok()
    })?;
    if new_id == old_id {
        return Err("the restarted unit kept its cgroup id".into());
    }
    wait_for("demo.service's own read after restart", Duration::from_secs(10), || {
        std::fs::read_to_string("/run/demo/start.log").map(|s| s.contains("read ok")).unwrap_or(false)
    })?;
    say(&format!(
        "RESTART  systemctl restart demo.service ({} ms): cgroup id {old_id} -> {new_id}, credential inode {old_ino} -> {}; \
         guard re-armed {} ms after it returned (root denied, unit allowed)",
        (t.elapsed() - rearmed).as_millis(),
        inode(CRED),
        rearmed.as_millis()
    ));
    passed.push("restart-rearmed".to_string());

    // 6. Stopped: nobody, not even a process in a re-created cgroup of that name.
    systemctl(&["stop", "demo.service"])?;
    wait_for("credentials to go away", Duration::from_secs(10), || !std::path::Path::new(CRED).exists())?;
    say("STOPPED  systemctl stop demo.service: systemd unmounted the credentials");
    systemctl(&["start", "demo.service"])?;
    let cg3 = unit_cgroup()?;
    wait_for("guard to re-arm after start", Duration::from_secs(10), || {
        probe(HOST, ROOT, "open", &[CRED]).denied() && probe(&cg3, SVC, "read", &[CRED]).ok()
    })?;
    say("STARTED  systemctl start demo.service: protected again, owner allowed");
    passed.push("stop-start-rearmed".to_string());
    Ok(passed)
}

fn inode(p: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| m.ino()).unwrap_or(0)
}

/// `vm-tests systemd`: the assertions, one SCENARIO line each.
pub fn test_main() -> i32 {
    mkcg(SESSION);
    mkcg("/system.slice/guard-test.service");
    match scenario(&|_| {}) {
        Ok(passed) => {
            for p in &passed {
                println!("SCENARIO systemd-{p}: PASS");
            }
            println!("vm-tests: {} passed, 0 failed", passed.len());
            0
        }
        Err(e) => {
            println!("SCENARIO systemd: FAIL {e}");
            println!("--- guard log ---\n{}", std::fs::read_to_string(GUARD_LOG).unwrap_or_default());
            println!("vm-tests: 0 passed, 1 failed");
            1
        }
    }
}

/// `vm-tests demo`: the same steps, told to a person.
pub fn demo_main() -> i32 {
    mkcg(SESSION);
    mkcg("/system.slice/guard-test.service");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let systemd = Command::new("systemctl").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string()).unwrap_or_default();
    println!("\n==== guard demo: kernel {}, {} ====", kernel.trim(), systemd);
    let say = |s: &str| println!("{s}");
    match scenario(&say) {
        Ok(_) => {
            let out = Command::new("/usr/bin/guard").arg("status").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            println!("STATUS   guard status (read from the kernel's pinned maps):\n{out}");
            println!("==== demo complete: the credential was readable only by its unit ====\n");
            0
        }
        Err(e) => {
            println!("DEMO FAILED: {e}\n--- guard log ---\n{}", std::fs::read_to_string(GUARD_LOG).unwrap_or_default());
            1
        }
    }
}
