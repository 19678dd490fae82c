//! Scenarios against a real systemd booted in the VM (Debian bookworm's 252
//! on 6.1, trixie's 257 on 6.12): `demo.service` gets a credential with
//! `LoadCredential=` from /etc/credstore/demo-api-token (in its policy's
//! `setup_only`), systemd mounts it under /run/credentials/demo.service,
//! and `guard.service` protects it. `vm-tests demo` narrates the same steps
//! that `vm-tests systemd` asserts.
//!
//! Then the seed setups (`seed_scenarios`), each its own SCENARIO line:
//! `myapp.service` (DynamicUser=, PrivateMounts=, LoadCredentialEncrypted=,
//! StateDirectory=), `twin-a`/`twin-b` (one static User=), `bound.service`
//! (a shell starting the service binary; executable binding),
//! `plain.service` (no policy; an encrypted credential), and 20 restarts of
//! myapp while root opens its credential in a tight loop.
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

pub(crate) const CRED: &str = "/run/credentials/demo.service/api-token";

pub(crate) fn systemctl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("systemctl").args(args).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("systemctl {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn unit_cgroup() -> Result<String, String> {
    systemctl(&["show", "-P", "ControlGroup", "demo.service"])
}

pub(crate) fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<Duration, String> {
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
        // (The file is the new start's: a restart stops the unit, and with it
        // its credentials, before it returns. Its dev:ino may repeat: tmpfs
        // numbers inodes per superblock, and anonymous devs are reused.)
        probe(HOST, ROOT, "open", &[CRED]).denied() && probe(&cg2, SVC, "read", &[CRED]).ok()
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

/// A file's "dev:ino", for the narration.
fn inode(p: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| format!("{}:{}", m.dev(), m.ino())).unwrap_or_default()
}

/// `vm-tests systemd`: the assertions, one SCENARIO line each.
pub fn test_main() -> i32 {
    // How long the guest took to get here (kernel + systemd boot to this
    // unit), for the record.
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let systemd = Command::new("systemctl").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string()).unwrap_or_default();
    println!("SYSTEMD-BOOT: test unit started {} s after the kernel booted; {systemd}", uptime.split_whitespace().next().unwrap_or("?"));
    mkcg(SESSION);
    mkcg(OUTSIDE);
    mkcg(OTHER_UNIT);
    let (mut passed, mut failed) = (0, 0);
    match scenario(&|_| {}) {
        Ok(names) => {
            for p in &names {
                println!("SCENARIO systemd-{p}: PASS");
            }
            passed += names.len();
        }
        Err(e) => {
            println!("SCENARIO systemd: FAIL {e}");
            failed += 1;
        }
    }
    type Seed = (&'static str, fn() -> Result<String, String>);
    let seeds: [Seed; 10] = [
        ("status-counts-credentials", status_counts_credentials),
        ("seed-dynamicuser-encrypted-state", seed_myapp),
        ("seed-same-static-user-units-isolated", seed_twins),
        ("seed-exe-binding-shell-refused", seed_bound),
        ("seed-creds-decrypt-with-confined-host-key", seed_host_key),
        ("seed-restart-race-20", seed_restart_race),
        ("seed-loadcredential-refresh-race", seed_loader_race),
        ("reload-50-under-load-one-bad-set", reload_under_load),
        ("suggest-audit-to-enforce", suggest_round_trip),
        ("memory-routes-refused", memory_routes),
    ];
    for (name, f) in seeds {
        let t = Instant::now();
        match f() {
            Ok(detail) => {
                println!("SCENARIO systemd-{name}: PASS ({:.1} s) {detail}", t.elapsed().as_secs_f64());
                passed += 1;
            }
            Err(e) => {
                println!("SCENARIO systemd-{name}: FAIL {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        println!("--- guard log ---\n{}", std::fs::read_to_string(GUARD_LOG).unwrap_or_default());
    }
    println!("vm-tests: {passed} passed, {failed} failed");
    i32::from(failed > 0)
}

// ------------------------------------------------------------ seed setups

/// Root's shell outside every protected unit.
pub(crate) const OUTSIDE: &str = "/system.slice/guard-test.service";
/// Another unit, for "the same UID from another unit".
const OTHER_UNIT: &str = "/system.slice/other.service";
const MYAPP_CRED: &str = "/run/credentials/myapp.service/api_key";
const LOADER_CRED: &str = "/run/credentials/loader.service/token";
const MYAPP_STATE: &str = "/var/lib/private/myapp/secret";
const MYAPP_SOURCE: &str = "/etc/credstore.encrypted/api_key.cred";
const MYAPP_LOG: &str = "/run/myapp-log/start.log";
const HOST_KEY: &str = "/var/lib/systemd/credential.secret";
const DYNAMIC_UIDS: std::ops::RangeInclusive<u32> = 61184..=65519;

fn active(unit: &str) -> Result<(), String> {
    wait_for(&format!("{unit} to run"), Duration::from_secs(60), || systemctl(&["is-active", unit]).is_ok()).map(|_| ())
}

fn cgroup_of(unit: &str) -> Result<String, String> {
    systemctl(&["show", "-P", "ControlGroup", unit])
}

/// The real UID of the unit's main process.
fn uid_of(unit: &str) -> Result<u32, String> {
    let pid = systemctl(&["show", "-P", "MainPID", unit])?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("{unit} main pid {pid}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| format!("{unit}: no Uid in /proc/{pid}/status"))
}

/// Waits until `file` holds at least `lines` lines; returns them.
fn log_lines(file: &str, lines: usize) -> Result<Vec<String>, String> {
    let mut got = Vec::new();
    wait_for(&format!("{lines} lines in {file}"), Duration::from_secs(30), || {
        got = std::fs::read_to_string(file).unwrap_or_default().lines().map(String::from).collect();
        got.len() >= lines
    })
    .map_err(|e| format!("{e}; it holds {got:?}"))?;
    Ok(got)
}

/// `who` opening `file` is refused by guard: EACCES and exactly one record.
fn refused(who: &str, cgroup: &str, uid: u32, file: &str) -> Result<(), String> {
    let p = probe(cgroup, uid, "open", &[file]);
    if p.errno != Some(libc::EACCES) {
        return Err(format!("{who} (uid {uid} in {cgroup}) opening {file}: {} (expected EACCES)", p.describe()));
    }
    let recs = records_for(p.pid);
    if recs.len() != 1 || recs[0]["file"]["path"] != file {
        return Err(format!("{who} opening {file}: expected 1 record naming it, got {recs:?}"));
    }
    Ok(())
}

fn allowed(who: &str, cgroup: &str, uid: u32, file: &str) -> Result<(), String> {
    let p = probe(cgroup, uid, "read", &[file]);
    if !p.ok() {
        return Err(format!("{who} (uid {uid} in {cgroup}) reading {file}: {} (expected to read it)", p.describe()));
    }
    Ok(())
}

/// 1. DynamicUser=, PrivateMounts=, LoadCredentialEncrypted=, StateDirectory=.
fn seed_myapp() -> Result<String, String> {
    active("myapp.service")?;
    let lines = log_lines(MYAPP_LOG, 2)?;
    if lines[..2] != ["cred-ok", "state-ok"] {
        return Err(format!("myapp.service's own reads at start: {lines:?} (expected cred-ok, state-ok)"));
    }
    let uid = uid_of("myapp.service")?;
    if !DYNAMIC_UIDS.contains(&uid) {
        return Err(format!("myapp.service runs as {uid}, not a DynamicUser= UID"));
    }
    let cg = cgroup_of("myapp.service")?;
    allowed("myapp's own process", &cg, uid, MYAPP_CRED)?;
    for file in [MYAPP_CRED, MYAPP_STATE, MYAPP_SOURCE, HOST_KEY] {
        refused("root outside the unit", OUTSIDE, ROOT, file)?;
    }
    refused("root in a login session", SESSION, ROOT, MYAPP_CRED)?;
    // A login user: file permissions already refuse alice (0400, ACL or
    // owner for the unit's UID only): EACCES, whoever said it.
    let p = probe(SESSION, ALICE, "open", &[MYAPP_CRED]);
    if p.errno != Some(libc::EACCES) {
        return Err(format!("alice opening {MYAPP_CRED}: {} (expected EACCES)", p.describe()));
    }
    refused("the unit's UID in another unit", OTHER_UNIT, uid, MYAPP_CRED)?;
    refused("the unit's UID in a login session", SESSION, uid, MYAPP_CRED)?;
    refused("myapp itself, for its .cred source (setup only)", &cg, uid, MYAPP_SOURCE)?;
    Ok(format!("dynamic uid {uid}; own reads ok; 4 files refused to root outside, cred refused to a root login, uid {uid} elsewhere, .cred refused to the unit"))
}

/// 2. Two units with the same static User=: neither reads the other's.
fn seed_twins() -> Result<String, String> {
    const SVC2: u32 = 1003;
    for t in ["twin-a", "twin-b"] {
        active(&format!("{t}.service"))?;
        let lines = log_lines(&format!("/run/{t}/start.log"), 1)?;
        if lines[0] != "own-ok" {
            return Err(format!("{t}.service reading its own credential and file at start: {lines:?}"));
        }
    }
    let (a, b) = (cgroup_of("twin-a.service")?, cgroup_of("twin-b.service")?);
    for (me, my_cg, other) in [("twin-a", &a, "twin-b"), ("twin-b", &b, "twin-a")] {
        allowed(&format!("{me} (svc2)"), my_cg, SVC2, &format!("/etc/{me}/secret"))?;
        allowed(&format!("{me} (svc2)"), my_cg, SVC2, &format!("/run/credentials/{me}.service/token"))?;
        refused(&format!("{me} (svc2)"), my_cg, SVC2, &format!("/run/credentials/{other}.service/token"))?;
        refused(&format!("{me} (svc2)"), my_cg, SVC2, &format!("/etc/{other}/secret"))?;
    }
    // A login user the file's permissions let through (0644): guard refuses.
    refused("alice, a login user", SESSION, ALICE, "/etc/twin-a/secret")?;
    Ok("each twin reads its own credential and file; 4 cross reads and a login user refused, 1 record each".into())
}

/// 3. ExecStart= is a shell that starts the service binary: only the binary reads.
fn seed_bound() -> Result<String, String> {
    active("bound.service")?;
    let lines = log_lines("/run/bound/start.log", 2)?;
    if lines[..2] != ["shell-denied", "app-ok"] {
        return Err(format!("bound.service at start: {lines:?} (expected shell-denied, then app-ok)"));
    }
    let cg = cgroup_of("bound.service")?;
    let cred = "/run/credentials/bound.service/token";
    // The harness (systemd's stand-in) places a process in the unit, which
    // then becomes the service binary, as systemd execs ExecStart=.
    let p = probe(&cg, SVC, "exec", &["/usr/bin/bound-app", "probe", "read", cred]);
    if !p.ok() {
        return Err(format!("the service binary in the unit reading {cred}: {}", p.describe()));
    }
    refused("another program in the unit, as its user", &cg, SVC, cred)?;
    // A package upgrade: a new binary renamed over the bound one. guard binds
    // the new file (within --reconcile-ms); the restarted unit reads again.
    let old = inode("/usr/bin/bound-app");
    std::fs::copy("/usr/bin/bound-app", "/usr/bin/.bound-app.dpkg-new").map_err(|e| format!("copying bound-app: {e}"))?;
    std::fs::rename("/usr/bin/.bound-app.dpkg-new", "/usr/bin/bound-app").map_err(|e| format!("renaming bound-app: {e}"))?;
    wait_for("guard to bind the upgraded binary", Duration::from_secs(10), || {
        std::fs::read_to_string(GUARD_LOG).unwrap_or_default().contains("/usr/bin/bound-app was replaced; the new file is bound")
    })?;
    let _ = std::fs::remove_file("/run/bound/start.log");
    systemctl(&["restart", "bound.service"])?;
    let lines = log_lines("/run/bound/start.log", 2)?;
    if lines[..2] != ["shell-denied", "app-ok"] {
        return Err(format!("bound.service after its binary was upgraded ({old} -> {}): {lines:?}", inode("/usr/bin/bound-app")));
    }
    Ok(format!(
        "the shell's own open refused at start, the bound binary read; another program in the unit refused; \
         after an upgrade of the binary ({old} -> {}) the restarted unit read again",
        inode("/usr/bin/bound-app")
    ))
}

/// 5. Decryption keeps working for every unit while the host key is confined.
fn seed_host_key() -> Result<String, String> {
    active("plain.service")?;
    let _ = std::fs::remove_file("/run/plain/start.log");
    systemctl(&["restart", "plain.service"])?;
    let lines = log_lines("/run/plain/start.log", 1)?;
    if lines[0] != "cred-ok" {
        return Err(format!("plain.service (no policy) decrypting its credential: {lines:?}"));
    }
    refused("root outside", OUTSIDE, ROOT, HOST_KEY)?;
    let out = Command::new("systemd-creds")
        .args(["decrypt", "/etc/credstore.encrypted/plain.cred", "-"])
        .output()
        .map_err(|e| format!("running systemd-creds: {e}"))?;
    if out.status.success() {
        return Err("root ran `systemd-creds decrypt` outside any unit and it worked: the host key is not confined".into());
    }
    Ok(format!(
        "plain.service (no policy) decrypted at restart; root's `systemd-creds decrypt` failed: {}",
        String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("").trim()
    ))
}

/// Seed 4: 20 restarts and 5 reloads of myapp (`DynamicUser=`,
/// `PrivateMounts=`, `LoadCredentialEncrypted=`) while root opens its
/// credential in a tight loop.
fn seed_restart_race() -> Result<String, String> {
    race(&Race {
        unit: "myapp.service",
        cred: MYAPP_CRED,
        log_dir: "/run/myapp-log",
        lines_per_start: 2,
        restarts: 20,
        reloads: 5,
    })
}

/// Seed 7: the same for loader.service (`LoadCredential=` from a file,
/// `PrivateMounts=`, `RefreshOnReload=credentials`, where systemd 260 and
/// later build a new set of credentials at every reload, in a helper of
/// PID 1 outside the unit).
fn seed_loader_race() -> Result<String, String> {
    race(&Race {
        unit: "loader.service",
        cred: LOADER_CRED,
        log_dir: "/run/loader-log",
        lines_per_start: 1,
        restarts: 20,
        reloads: 10,
    })
}

struct Race {
    unit: &'static str,
    cred: &'static str,
    /// Where the unit appends what its own reads at each start found
    /// (`start.log`, `lines_per_start` lines ending in `-ok`).
    log_dir: &'static str,
    lines_per_start: usize,
    restarts: usize,
    reloads: usize,
}

/// `restarts` restarts, then `reloads` reloads, while root outside the unit
/// opens its credential in a tight loop: root never reads it. The unit
/// reads it first thing at every start; during the reloads a process of the
/// unit (its cgroup, its UID) opens it in a tight loop too and is never
/// refused.
fn race(r: &Race) -> Result<String, String> {
    active(r.unit)?;
    let start_log = format!("{}/start.log", r.log_dir);
    let stop = "/tmp/hammer.stop";
    let _ = std::fs::remove_file(stop);
    let before = log_lines(&start_log, r.lines_per_start)?.len();
    let outsider = background(OUTSIDE, ROOT, "hammer", &[r.cred, stop]);
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..r.restarts {
        let t = Instant::now();
        systemctl(&["restart", r.unit])?;
        log_lines(&start_log, before + r.lines_per_start * (i + 1))?;
        slowest = slowest.max(t.elapsed());
    }
    let restarts_took = t.elapsed();
    // The reloads: the unit's own process hammers too (a reload keeps the
    // cgroup, so it lives through them).
    let (cg, uid) = (cgroup_of(r.unit)?, uid_of(r.unit)?);
    let owner_stop = "/tmp/owner-hammer.stop";
    let _ = std::fs::remove_file(owner_stop);
    let owner = background(&cg, uid, "hammer", &[r.cred, owner_stop]);
    let mut refreshed = 0;
    for _ in 0..r.reloads {
        let ino = inode(r.cred);
        systemctl(&["reload", r.unit])?;
        if inode(r.cred) != ino {
            refreshed += 1;
        }
    }
    std::fs::write(owner_stop, b"").map_err(|e| format!("{owner_stop}: {e}"))?;
    std::fs::write(stop, b"").map_err(|e| format!("{stop}: {e}"))?;
    let own = hammer_counts(&owner.finish())?;
    let Hammer {
        opens,
        read,
        eacces,
        enoent,
    } = hammer_counts(&outsider.finish())?;
    let lines = log_lines(&start_log, before + r.lines_per_start * r.restarts)?;
    let failed: Vec<&String> = lines[before..]
        .iter()
        .filter(|l| !l.ends_with("-ok"))
        .collect();
    let what = format!(
        "{} ({} restarts, {} reloads)",
        r.unit, r.restarts, r.reloads
    );
    if read != 0 || !failed.is_empty() || eacces == 0 || own.eacces != 0 || own.read == 0 {
        return Err(format!(
            "{what}: outsider opens={opens} read={read} eacces={eacces} enoent={enoent}; the unit's reads that failed at start {failed:?}; \
             the unit's process during the reloads: opens={} read={} eacces={} enoent={}",
            own.opens, own.read, own.eacces, own.enoent
        ));
    }
    Ok(format!(
        "{what}: restarts in {:.1} s (slowest {} ms); outsider {opens} opens, 0 reads ({eacces} EACCES, {enoent} ENOENT between \
         mounts); the unit read its credential at all {} starts, and its process {} times in {} opens during the reloads, \
         0 refused; {refreshed} of {} reloads built new credentials",
        restarts_took.as_secs_f64(),
        slowest.as_millis(),
        r.restarts,
        own.read,
        own.opens,
        r.reloads
    ))
}

/// `vm-tests demo`: the same steps, told to a person.
pub fn demo_main() -> i32 {
    mkcg(SESSION);
    mkcg(OUTSIDE);
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

/// Admin records with `action` in the agent's feed.
fn admin_records(action: &str) -> usize {
    std::fs::read_to_string(EVENTS)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "admin" && v["action"] == action)
        .count()
}

/// What a `hammer` probe reported (see probe.rs).
pub(crate) struct Hammer {
    pub opens: u64,
    pub read: u64,
    pub eacces: u64,
    pub enoent: u64,
}

pub(crate) fn hammer_counts(out: &Probe) -> Result<Hammer, String> {
    let line = out.raw.lines().find(|l| l.starts_with("HAMMER ")).unwrap_or("").to_string();
    let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse::<u64>().ok());
    match (field("opens="), field("read="), field("eacces="), field("enoent=")) {
        (Some(opens), Some(read), Some(eacces), Some(enoent)) => Ok(Hammer { opens, read, eacces, enoent }),
        _ => Err(format!("a hammer reported nothing: {:?}", out.raw)),
    }
}

/// Test 6 of issue 8: 50 reloads (`guard reload`: SIGHUP and the agent's
/// answer), one of them of a set with an error, while the unit and an
/// outsider open the unit's credential in tight loops: the unit is never
/// refused, the outsider never reads, the bad set changes nothing and is
/// reported.
fn reload_under_load() -> Result<String, String> {
    const RELOADS: usize = 50;
    const BAD_AT: usize = 25;
    const EXTRA: &str = "/etc/guard/policies/zz-reload.toml";
    active("demo.service")?;
    let cg = unit_cgroup()?;
    let (ok_before, failed_before) = (admin_records("reloaded"), admin_records("reload-failed"));
    let stop = "/tmp/reload.stop";
    let _ = std::fs::remove_file(stop);
    let owner = background(&cg, SVC, "hammer", &[CRED, stop]);
    let outsider = background(OUTSIDE, ROOT, "hammer", &[CRED, stop]);
    let t = Instant::now();
    let (mut slowest, mut bad_report) = (Duration::ZERO, String::new());
    for i in 0..RELOADS {
        // Each set differs from the last: a policy comes and goes, with
        // another alert rate each time.
        let text = if i == BAD_AT {
            "unit = \"reload-test.service\"\nmode = \"enforcing\"\nallow_users = [0]\nprotect = [\"/etc/reload-test\"]\n".to_string()
        } else if i % 2 == 0 {
            format!("unit = \"reload-test.service\"\nmode = \"audit\"\nallow_users = [0]\nprotect = [\"/etc/reload-test\"]\n[alerts]\nrate_per_sec = {}\n", 100 + i)
        } else {
            String::new()
        };
        if text.is_empty() {
            let _ = std::fs::remove_file(EXTRA);
        } else {
            std::fs::write(EXTRA, text).map_err(|e| format!("{EXTRA}: {e}"))?;
        }
        let r = Instant::now();
        let out = Command::new("/usr/bin/guard").arg("reload").output().map_err(|e| format!("guard reload: {e}"))?;
        slowest = slowest.max(r.elapsed());
        let code = out.status.code();
        if i == BAD_AT {
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            if code != Some(2) || !err.contains("zz-reload.toml:2:8: mode") {
                return Err(format!("reload of a bad set: exit {code:?}, stderr {err:?} (expected exit 2 naming zz-reload.toml:2:8 mode)"));
            }
            bad_report = err.lines().next().unwrap_or("").to_string();
        } else if code != Some(0) {
            return Err(format!("reload {i}: exit {code:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
        }
    }
    let took = t.elapsed();
    let _ = std::fs::remove_file(EXTRA);
    std::fs::write(stop, b"").map_err(|e| format!("{stop}: {e}"))?;
    let Hammer { opens: o_opens, read: o_read, eacces: o_eacces, .. } = hammer_counts(&owner.finish())?;
    let Hammer { opens: x_opens, read: x_read, eacces: x_eacces, .. } = hammer_counts(&outsider.finish())?;
    if o_eacces != 0 || o_read != o_opens || o_opens == 0 {
        return Err(format!("the unit during reloads: opens={o_opens} read={o_read} eacces={o_eacces} (expected every open to read)"));
    }
    if x_read != 0 || x_eacces != x_opens || x_opens == 0 {
        return Err(format!("root outside during reloads: opens={x_opens} read={x_read} eacces={x_eacces} (expected every open refused)"));
    }
    let (ok, failed) = (admin_records("reloaded") - ok_before, admin_records("reload-failed") - failed_before);
    if ok != RELOADS - 1 || failed != 1 {
        return Err(format!("feed: {ok} `reloaded` and {failed} `reload-failed` records (expected {} and 1)", RELOADS - 1));
    }
    // The bad set left the set before it in force, and the last one is in force now.
    if !probe(OUTSIDE, ROOT, "open", &[CRED]).denied() || !probe(&cg, SVC, "read", &[CRED]).ok() {
        return Err("after the reloads: root not denied or the unit refused".into());
    }
    Ok(format!(
        "{RELOADS} reloads in {:.1} s (slowest {} ms); the unit {o_opens} opens, all read; root outside {x_opens} opens, all EACCES; \
         bad set refused (exit 2: {bad_report}); feed: {ok} reloaded, {failed} reload-failed",
        took.as_secs_f64(),
        slowest.as_millis()
    ))
}

// ------------------------------------------------- status and suggestions

/// `guard`'s CLI, failing with what it said.
fn guard_ok(args: &[&str]) -> Result<(String, String), String> {
    let (code, out, err) = guard_cli(args);
    if code != Some(0) {
        return Err(format!("guard {args:?} exited {code:?}: {out}{err}"));
    }
    Ok((out, err))
}

/// Files (not directories) in a directory tree.
fn files_under(dir: &str) -> u64 {
    let mut n = 0;
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}

/// `guard status` counts the credentials the kernel tagged at creation
/// (looked up file by file), through an agent restart and dropped caches;
/// `unit = "*"` reads as a policy for every unit's credential setup.
fn status_counts_credentials() -> Result<String, String> {
    let creds = files_under("/run/credentials/demo.service");
    if creds == 0 {
        return Err("demo.service has no credential files".into());
    }
    // Its credential's source (setup_only) is one more protected file.
    let in_creds_dir = creds;
    let creds = creds + u64::from(std::path::Path::new(DEMO_SOURCE).exists());
    refused("root outside the unit", OUTSIDE, ROOT, DEMO_SOURCE)?;
    let count = |when: &str| -> Result<u64, String> {
        let p = policy_status("demo.service")?;
        let n = p["protected_files"].as_u64().ok_or_else(|| format!("{when}: no protected_files in {p}"))?;
        if n != creds {
            return Err(format!("{when}: guard status counts {n} protected files of demo.service, /run/credentials/demo.service holds {creds} with the source: {p}"));
        }
        Ok(n)
    };
    count("at first")?;
    let (human, _) = guard_ok(&["status"])?;
    let demo_line = human.lines().find(|l| l.trim_start().starts_with("demo.service [")).unwrap_or("").trim().to_string();
    if !demo_line.contains(&format!("{creds} protected file")) {
        return Err(format!("the human status line does not count {creds} files: {demo_line}"));
    }
    let star = human.lines().find(|l| l.trim_start().starts_with("* (every unit)")).unwrap_or("").trim().to_string();
    if !star.contains("only systemd's credential setup of any unit") || star.contains("not running") || human.lines().any(|l| l.trim_start().starts_with("* [")) {
        return Err(format!("the unit = \"*\" policy does not read as what it is:\n{human}"));
    }
    let host_key = policy_status("*")?["protected_files"].as_u64().unwrap_or(0);
    if host_key != 1 {
        return Err(format!("the host-key policy counts {host_key} protected files (expected the key: 1)"));
    }
    drop_caches();
    count("after drop_caches")?;
    let _ = std::fs::remove_file("/tmp/guard.ready");
    systemctl(&["restart", "guard.service"])?;
    wait_for("guard.service to come back", Duration::from_secs(120), || std::path::Path::new("/tmp/guard.ready").exists())?;
    count("after the agent's restart")?;
    Ok(format!(
        "{creds} protected files of demo.service ({in_creds_dir} in /run/credentials/demo.service, tagged by the kernel, and the source {DEMO_SOURCE}) \
         counted at first, after drop_caches and after an agent restart; {demo_line}; {star}"
    ))
}

const DEMO_SOURCE: &str = "/etc/credstore/demo-api-token";
const ROLLOUT_SECRET: &str = "/etc/rollout/secret";
const ROLLOUT_POLICY: &str = "/etc/guard/policies/rollout.toml";
const ROLLOUT_LOG: &str = "/run/rollout/start.log";
const SUGGESTED: &str = "/tmp/rollout-suggested.toml";

fn guard_reload() -> Result<(), String> {
    guard_ok(&["reload"]).map(|_| ())
}

/// The rollout: rollout.service (DynamicUser=, a root ExecStartPre=+) under
/// a policy in audit mode that allows neither, while an attacker (root
/// outside the unit, a root shell, a process outside any unit) reads the
/// secret too; `guard policy suggest` from the journal; the suggestion,
/// enforced, lets the unit start and read and refuses the attacker.
fn suggest_round_trip() -> Result<String, String> {
    let since = Command::new("date").arg("+%Y-%m-%d %H:%M:%S").output().map_err(|e| e.to_string())?;
    let since = String::from_utf8_lossy(&since.stdout).trim().to_string();
    std::fs::write(
        ROLLOUT_POLICY,
        "# Rolling out rollout.service: audit first.\nunit = \"rollout.service\"\nmode = \"audit\"\nallow_users = [\"nobody\"]\nprotect = [\"/etc/rollout\"]\n",
    )
    .map_err(|e| e.to_string())?;
    guard_reload()?;
    systemctl(&["start", "rollout.service"])?;
    log_lines(ROLLOUT_LOG, 1)?;
    // The attacker, during the audit run.
    mkcg(OUTSIDE);
    let p = probe(OUTSIDE, ROOT, "read", &[ROLLOUT_SECRET]);
    if !p.ok() {
        return Err(format!("audit mode: root outside the unit was refused: {}", p.describe()));
    }
    let shell = Command::new("/bin/sh").args(["-c", &format!(": < {ROLLOUT_SECRET}")]).status().map_err(|e| e.to_string())?;
    if !shell.success() {
        return Err("audit mode: a root shell could not read the secret".into());
    }
    let p = probe(HOST, ROOT, "read", &[ROLLOUT_SECRET]);
    if !p.ok() {
        return Err(format!("audit mode: root outside any unit was refused: {}", p.describe()));
    }
    // A second activation: a new dynamic UID may come, still "@unit".
    systemctl(&["restart", "rollout.service"])?;
    log_lines(ROLLOUT_LOG, 2)?;
    // Suggest from the journal, once the records are there. (head, from
    // ExecStartPre=, is short-lived: guard may name it by comm only.)
    let mut said = String::new();
    wait_for("the audit records in the journal", Duration::from_secs(30), || {
        match guard_cli(&["policy", "suggest", "--since", &since, "--unit", "rollout", "--mode", "enforce", "--output", SUGGESTED, "--force"]) {
            (Some(0), _, err) => {
                said = err;
                let text = std::fs::read_to_string(SUGGESTED).unwrap_or_default();
                text.contains("ATTACK? a process outside any unit") && text.contains("head") && text.contains("ATTACK? a root shell")
            }
            (_, out, err) => {
                said = format!("{out}{err}");
                false
            }
        }
    })
    .map_err(|e| format!("{e}; guard policy suggest said: {said}; suggestion:\n{}", std::fs::read_to_string(SUGGESTED).unwrap_or_default()))?;
    let text = std::fs::read_to_string(SUGGESTED).map_err(|e| e.to_string())?;
    let allow = text.lines().find(|l| l.starts_with("allow_users")).unwrap_or("").to_string();
    if allow != "allow_users = [\"nobody\", \"@unit\", \"root\"]" || !text.contains("mode = \"enforce\"") {
        return Err(format!("unexpected suggestion ({allow}):\n{text}"));
    }
    for flagged in ["ATTACK? a root shell", "ATTACK? a process outside any unit", "another unit's process"] {
        if !text.contains(flagged) {
            return Err(format!("the suggestion does not flag \"{flagged}\":\n{text}"));
        }
    }
    guard_ok(&["check", SUGGESTED])?;
    let (diff, _) = guard_ok(&["policy", "suggest", "--since", &since, "--unit", "rollout", "--mode", "enforce", "--diff"])?;
    if !diff.contains("+allow_users = [\"nobody\", \"@unit\", \"root\"]") {
        return Err(format!("the diff does not add the users:\n{diff}"));
    }
    // The admin reviewed it: enforce.
    std::fs::copy(SUGGESTED, ROLLOUT_POLICY).map_err(|e| e.to_string())?;
    guard_reload()?;
    systemctl(&["restart", "rollout.service"])?;
    let lines = log_lines(ROLLOUT_LOG, 3)?;
    if lines.iter().any(|l| l != "read-ok") {
        return Err(format!("rollout.service's own reads: {lines:?}"));
    }
    let cg = cgroup_of("rollout.service")?;
    let uid = uid_of("rollout.service")?;
    allowed("rollout's own process", &cg, uid, ROLLOUT_SECRET)?;
    allowed("rollout's root helper", &cg, ROOT, ROLLOUT_SECRET)?;
    refused("root outside the unit", OUTSIDE, ROOT, ROLLOUT_SECRET)?;
    refused("root outside any unit", HOST, ROOT, ROLLOUT_SECRET)?;
    if Command::new("/bin/sh").args(["-c", &format!(": < {ROLLOUT_SECRET}")]).status().map_err(|e| e.to_string())?.success() {
        return Err("enforced: the root shell still reads the secret".into());
    }
    let (human, _) = guard_ok(&["status"])?;
    let line = human.lines().find(|l| l.contains("rollout.service [enforce]")).unwrap_or("").trim().to_string();
    let _ = systemctl(&["stop", "rollout.service"]);
    let _ = std::fs::remove_file(ROLLOUT_POLICY);
    guard_reload()?;
    Ok(format!("{}; suggested {allow}; enforced: the unit started and read (uid {uid} and root), root outside the unit, the root shell and root outside any unit refused; {line}", said.trim().replace('\n', "; ")))
}

/// Issue 18 under a real systemd: root outside demo.service reads none of
/// its secret without opening the file. Kernel memory, a foreign BPF
/// program, perf sampling of the unit, its memory through /proc, a
/// core-dumping signal, and a crash of the unit (systemd's own signal, so
/// the dump is refused at the dump itself): each refused, each recorded.
fn memory_routes() -> Result<String, String> {
    active("demo.service")?;
    let main = systemctl(&["show", "-p", "MainPID", "--value", "demo.service"])?.trim().to_string();
    let pid: u32 = main.parse().map_err(|_| format!("demo.service's MainPID: {main:?}"))?;
    let mut said = Vec::new();
    let p = probe(OUTSIDE, ROOT, "open", &["/proc/kcore"]);
    if p.errno != Some(libc::EPERM) || tamper_records_for(p.pid).is_empty() {
        return Err(format!("root opening /proc/kcore: {} (expected EPERM and a tamper record)", p.describe()));
    }
    said.push("kcore EPERM");
    let p = probe(OUTSIDE, ROOT, "bpf-load", &["raw_tracepoint"]);
    if p.errno != Some(libc::EPERM) || tamper_records_for(p.pid).is_empty() {
        return Err(format!("root loading a raw_tracepoint program: {} (expected EPERM and a tamper record)", p.describe()));
    }
    said.push("raw_tracepoint load EPERM");
    let p = probe(OUTSIDE, ROOT, "perf", &[&main, "sample"]);
    if !p.denied() {
        return Err(format!("root sampling demo.service's main process with perf: {} (expected denied)", p.describe()));
    }
    said.push("perf sampling of the unit denied");
    for f in ["environ", "maps", "mem"] {
        let path = format!("/proc/{pid}/{f}");
        let p = probe(OUTSIDE, ROOT, "open", &[&path]);
        if !p.denied() {
            return Err(format!("root opening {path}: {} (expected denied)", p.describe()));
        }
    }
    said.push("/proc/<main>/{environ,maps,mem} denied");
    let p = probe(OUTSIDE, ROOT, "kill", &[&main, &libc::SIGABRT.to_string()]);
    if !p.denied() || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(format!("root's SIGABRT to demo.service's main process: {} (expected denied, the process alive)", p.describe()));
    }
    said.push("root's SIGABRT denied");
    // systemd itself sends SIGSEGV: allowed; the dump is refused at
    // prepare_creds, before any destination (file, pipe helper,
    // systemd-coredump) sees a byte.
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default().trim().to_string();
    systemctl(&["kill", "-s", "SEGV", "demo.service"])?;
    wait_for("demo.service's main process to die", Duration::from_secs(20), || !std::path::Path::new(&format!("/proc/{pid}")).exists())?;
    let recs = records_for(pid);
    let dump = recs.iter().find(|r| r["hook"] == "coredump").ok_or_else(|| format!("no coredump record for demo.service's crashed pid {pid}: {recs:?}"))?;
    if dump["decision"] != "denied" || dump["policy"] != "demo" {
        return Err(format!("the crash's coredump record: {dump} (expected denied, policy demo)"));
    }
    if !pattern.starts_with('|') && !pattern.starts_with('@') {
        let core = std::path::Path::new("/").join(pattern.replace("%p", &main).replace("%e", "sleep"));
        if core.exists() {
            return Err(format!("demo.service's crash left a core at {}", core.display()));
        }
    }
    said.push("systemd's SIGSEGV killed the unit with no core and a denied coredump record");
    let _ = systemctl(&["reset-failed", "demo.service"]);
    systemctl(&["restart", "demo.service"])?;
    wait_for("guard to re-arm after the crash", Duration::from_secs(20), || probe(OUTSIDE, ROOT, "open", &[CRED]).denied() && probe(&unit_cgroup().unwrap_or_default(), SVC, "read", &[CRED]).ok())?;
    Ok(format!("{} (core_pattern {pattern:?}); restarted and re-armed", said.join("; ")))
}
