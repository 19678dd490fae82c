use serde_json::json;

use super::group::{group, propose, Flag, UserEntry};
use super::read::{from_journal, parse_lines, Seen};
use super::{diff, render};
use crate::policy::{self, Passwd};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nbackup:x:34:34:backup:/var/backups:/usr/sbin/nologin\n";

fn record(unit: &str, exe: &str, opener_unit: Option<&str>, uid: u32, count: u64, time: &str) -> String {
    json!({"schema":"guard.event/v2","kind":"access","time":time,"first_time":time,"count":count,"origin":"kernel",
           "decision":"audited","hook":"file_open","access":["read"],"policy":"rollout","unit":unit,"mode":"audit",
           "file":{"path":"/etc/rollout/secret","dev":"254:1","ino":12},
           "process":{"pid":7,"tid":7,"comm":exe.rsplit('/').next().unwrap(),"exe":exe,"exe_dev":"254:1","exe_ino":99,
                      "uid":uid,"user":null,"euid":uid,"gid":uid,"cgroup_id":5,"cgroup":"/x","unit":opener_unit}})
    .to_string()
}

/// An audit run: the unit's own reader (DynamicUser), a root helper of the
/// unit, a root shell inside it, root `cat` from a login session, a process
/// outside any unit, a tamper attempt, and an admin record.
fn audit_run() -> String {
    let u = "rollout.service";
    [
        record(u, "/usr/bin/cat", Some(u), 61500, 3, "2026-12-07T01:00:02.000000000Z"),
        record(u, "/usr/bin/cat", Some(u), 62001, 2, "2026-12-07T01:00:01.000000000Z"),
        record(u, "/usr/bin/head", Some(u), 0, 1, "2026-12-07T01:00:03.000000000Z"),
        record(u, "/usr/bin/dash", Some(u), 0, 1, "2026-12-07T01:00:04.000000000Z"),
        record(u, "/usr/bin/cat", Some("session-1.scope"), 0, 4, "2026-12-07T01:00:05.000000000Z"),
        record(u, "/usr/bin/python3.11", None, 0, 1, "2026-12-07T01:00:06.000000000Z"),
        json!({"schema":"guard.event/v2","kind":"tamper","time":"2026-12-07T01:00:07.000000000Z","count":1,"decision":"denied",
               "policy":"","unit":"","mode":"enforce","file":{"path":"/sys/fs/bpf/guard","dev":"0:1","ino":1},
               "process":{"pid":9,"tid":9,"comm":"bpftool","exe":"/usr/sbin/bpftool","exe_dev":"0:1","exe_ino":2,"uid":0,"euid":0,"gid":0,"cgroup_id":1,"unit":"session-1.scope"}})
        .to_string(),
        json!({"schema":"guard.event/v2","kind":"admin","time":"2026-12-07T01:00:00Z","action":"agent-started"}).to_string(),
    ]
    .join("\n")
}

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("guard-suggest-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(d.join("passwd"), PASSWD).unwrap();
    d
}

const AUDIT_POLICY: &str = "# Rolling out.\nunit = \"rollout.service\"\nmode = \"audit\"\nallow_users = [\"backup\"]\nprotect = [\"/etc/rollout/secret\"]\n";

#[test]
fn groups_openers_and_flags_attacks() {
    let seen = parse_lines(&audit_run(), "events.json").unwrap();
    assert_eq!(seen.len(), 7, "the admin record is skipped");
    let groups = group(&seen);
    let g = &groups["rollout.service"];
    assert_eq!(g.records, 6);
    // Two activations' dynamic UIDs stay two openers, but both become "@unit".
    let cat = g.openers.iter().find(|o| o.key.uid == 61500).unwrap();
    assert_eq!((cat.count, cat.flag.clone()), (3, None));
    let shell = g.openers.iter().find(|o| o.key.exe == "/usr/bin/dash").unwrap();
    assert_eq!(shell.flag, Some(Flag::RootShell));
    let session = g.openers.iter().find(|o| o.key.opener_unit == "session-1.scope").unwrap();
    assert_eq!(session.flag, Some(Flag::OtherUnit));
    let outside = g.openers.iter().find(|o| o.key.opener_unit.is_empty()).unwrap();
    assert_eq!(outside.flag, Some(Flag::OutsideAnyUnit));
    assert_eq!(groups[""].openers[0].flag, Some(Flag::Tamper));
}

#[test]
fn proposes_unit_users_and_leaves_attacks_out() {
    let d = dir("propose");
    std::fs::write(d.join("policies/rollout.toml"), AUDIT_POLICY).unwrap();
    let set = policy::load(&d.join("policies"), &d.join("passwd")).unwrap();
    let pol = &set.policies[0];
    let seen = parse_lines(&audit_run(), "events.json").unwrap();
    let groups = group(&seen);
    let g = &groups["rollout.service"];
    let pw = Passwd::parse(PASSWD);
    let p = propose(g, Some(pol), &[], Some(&pw));
    let users: Vec<_> = p.users.keys().cloned().collect();
    assert_eq!(users, vec![UserEntry::Unit, UserEntry::Name("root".into())], "{p:?}");
    assert_eq!(p.left_out.len(), 3);
    assert!(p.left_out.iter().all(|(o, _)| o.key.exe != "/usr/bin/head"));

    let text = render::render(g, &p, Some((pol, AUDIT_POLICY)), Some(policy::Mode::Enforce), groups.get("")).unwrap();
    assert!(text.contains("allow_users = [\"backup\", \"@unit\", \"root\"]"), "{text}");
    assert!(text.contains("mode = \"enforce\""), "{text}");
    assert!(text.contains("ATTACK? a root shell"), "{text}");
    assert!(text.contains("ATTACK? a process outside any unit"), "{text}");
    assert!(text.contains("/usr/sbin/bpftool"), "tamper records are listed: {text}");
    assert!(text.contains("2026-12-07T01:00:01.000000000Z .. 2026-12-07T01:00:02.000000000Z") || text.contains("01:00:02"), "{text}");
    let checked = crate::from_unit::validate(&text, "rollout.service", &d.join("passwd")).unwrap().expect("passes guard check");
    assert_eq!(checked.policies[0].allow_uids, vec![34, 0]);
    assert!(checked.policies[0].unit_user);

    // Naming the shell includes it (it runs as root, already proposed).
    let named = propose(g, Some(pol), &["dash".into()], Some(&pw));
    assert_eq!(named.left_out.len(), 2);
    // Nothing changes in audit mode unless asked.
    let same_mode = render::render(g, &p, Some((pol, AUDIT_POLICY)), None, None).unwrap();
    assert!(same_mode.contains("mode = \"audit\""), "{same_mode}");

    let patch = diff::unified("rollout.toml", AUDIT_POLICY, "rollout.toml (suggested)", &text);
    assert!(patch.starts_with("--- rollout.toml\n+++ rollout.toml (suggested)\n@@ -1,5 +1,"), "{patch}");
    assert!(patch.contains("\n-mode = \"audit\"\n-allow_users = [\"backup\"]\n+mode = \"enforce\"\n"), "{patch}");
    assert!(patch.contains("\n+allow_users = [\"backup\", \"@unit\", \"root\"]\n protect = "), "{patch}");
    assert_eq!(diff::unified("a", AUDIT_POLICY, "b", AUDIT_POLICY), "");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn executables_are_extended_only_where_listed() {
    let d = dir("exes");
    let text = format!("{AUDIT_POLICY}executables = [\n  \"/usr/bin/cat\",\n]\n");
    std::fs::write(d.join("policies/rollout.toml"), &text).unwrap();
    let set = policy::load(&d.join("policies"), &d.join("passwd")).unwrap();
    let seen = parse_lines(&audit_run(), "events.json").unwrap();
    let groups = group(&seen);
    let p = propose(&groups["rollout.service"], Some(&set.policies[0]), &[], None);
    assert_eq!(p.executables.iter().collect::<Vec<_>>(), vec!["/usr/bin/head"]);
    assert_eq!(p.users.get(&UserEntry::Uid(0)).map(Vec::len), Some(1), "no passwd: the number");
    let out = render::edit(&text, &p, None).unwrap();
    assert!(out.contains("executables = [\n  \"/usr/bin/cat\",\"/usr/bin/head\"\n]") || out.contains("\"/usr/bin/cat\",\"/usr/bin/head\""), "{out}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_new_policy_when_none_exists() {
    let seen = parse_lines(&audit_run(), "events.json").unwrap();
    let groups = group(&seen);
    let g = &groups["rollout.service"];
    let p = propose(g, None, &[], None);
    let text = render::render(g, &p, None, None, None).unwrap();
    assert!(text.contains("mode = \"audit\"") && text.contains("protect = [\"/etc/rollout/secret\"]"), "{text}");
    let d = dir("new");
    crate::from_unit::validate(&text, "rollout.service", &d.join("passwd")).unwrap().expect("passes guard check");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn bad_lines_name_file_line_and_field() {
    let err = parse_lines("\n{\"kind\":\"access\"\n", "ev.json").unwrap_err().to_string();
    assert!(err.starts_with("ev.json:2: not a JSON record"), "{err}");
    let cut = r#"{"kind":"access","time":"t","process":{"pid":1}}"#;
    let err = parse_lines(cut, "ev.json").unwrap_err().to_string();
    assert!(err.contains("ev.json:1: field \"process.uid\" is missing"), "{err}");
    let err = parse_lines(r#"{"time":"t"}"#, "ev.json").unwrap_err().to_string();
    assert!(err.contains("ev.json:1: field \"kind\" is missing"), "{err}");
}

#[test]
fn journal_entries_with_odd_bytes() {
    // journalctl -o json writes a value that is not valid UTF-8 as an array of bytes.
    let entry = json!({"MESSAGE_ID":"d0c62977fceb4c70b09b9f1b6f8454b7","GUARD_KIND":"access","GUARD_DECISION":"audited",
        "GUARD_UNIT":"rollout.service","GUARD_MODE":"audit","GUARD_PATH":[47,116,255,120],"GUARD_EXE":"/usr/bin/cat",
        "GUARD_COMM":"cat","GUARD_UID":"61500","GUARD_OPENER_UNIT":"rollout.service","GUARD_COUNT":"4",
        "GUARD_TIME":"2026-12-07T01:00:02Z","GUARD_FIRST_TIME":"2026-12-07T01:00:01Z"});
    let s: Seen = from_journal(&entry, "journal", 1).unwrap().unwrap();
    assert_eq!((s.uid, s.count, s.path.as_str()), (61500, 4, "/t\u{fffd}x"));
    let bad = json!({"GUARD_KIND":"access","GUARD_UID":"x","__CURSOR":"c1"});
    let err = from_journal(&bad, "journal", 3).unwrap_err().to_string();
    assert!(err.contains("journal field GUARD_UID is \"x\"") && err.contains("c1"), "{err}");
    assert!(from_journal(&json!({"GUARD_KIND":"admin"}), "journal", 1).unwrap().is_none());
}

#[test]
fn output_into_the_policy_directory_is_refused() {
    let d = dir("inside");
    assert!(super::inside(&d.join("policies/x.toml"), &d.join("policies")));
    assert!(!super::inside(&d.join("x.toml"), &d.join("policies")));
    std::fs::remove_dir_all(d).unwrap();
}
