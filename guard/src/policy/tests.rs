//! Tests of policy loading: one negative test per rule (file, line, field
//! and message are checked), plus the shipped example policies.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::error::Source;
use super::types::{Document, Node};
use super::*;

// ---------------------------------------------------------------- fixtures

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
myapp:x:1002:1002:My App:/var/lib/myapp:/usr/sbin/nologin
+nisuser::::::
broken line without fields
nouid:x:abc:1::/:/bin/sh
other:x:1003:1003::/home/other:/bin/sh
twin:x:1004:1004::/:/bin/sh
twin:x:1005:1005::/:/bin/sh
";

/// A valid policy; tests replace one line of it.
const GOOD: &str = r#"unit = "myapp.service"
mode = "enforce"
allow_users = ["myapp", 0]
protect = ["/etc/myapp/tls.key"]
"#;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("guard-policy-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Policy files in `<tmp>/policies/`, the test passwd in `<tmp>/passwd`.
struct Fixture {
    tmp: TempDir,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let tmp = TempDir::new();
        tmp.write("passwd", PASSWD);
        fs::create_dir_all(tmp.0.join("policies")).unwrap();
        for (name, text) in files {
            tmp.write(&format!("policies/{name}"), text);
        }
        Fixture { tmp }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.0.join("policies")
    }

    fn passwd(&self) -> PathBuf {
        self.tmp.0.join("passwd")
    }

    fn load(&self) -> Result<PolicySet, PolicyErrors> {
        load(&self.dir(), &self.passwd())
    }
}

fn load_ok(files: &[(&str, &str)]) -> PolicySet {
    match Fixture::new(files).load() {
        Ok(set) => set,
        Err(e) => panic!("expected the policies to load, got:\n{e}"),
    }
}

fn load_err(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    match Fixture::new(files).load() {
        Ok(set) => panic!(
            "expected errors, but {} policies loaded",
            set.policies.len()
        ),
        Err(e) => {
            assert!(
                e.diagnostics.iter().all(Diagnostic::is_error),
                "PolicyErrors holds only errors"
            );
            e.diagnostics
        }
    }
}

/// GOOD with the line starting with `key =` replaced (or appended if new).
fn good_with(key: &str, line: &str) -> String {
    let mut found = false;
    let mut lines: Vec<String> = GOOD
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} =")) {
                found = true;
                line.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        lines.push(line.to_string());
    }
    lines.join("\n") + "\n"
}

fn file_name(d: &Diagnostic) -> String {
    d.file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("  {d}\n")).collect()
}

/// The diagnostic in `file` at `line` about `field` whose message contains
/// `fragment`; panics, listing all of them, if there is none.
#[track_caller]
fn find<'a>(
    diags: &'a [Diagnostic],
    file: &str,
    line: usize,
    field: &str,
    fragment: &str,
) -> &'a Diagnostic {
    diags
        .iter()
        .find(|d| {
            file_name(d) == file
                && d.line == line
                && d.field == field
                && d.message.contains(fragment)
        })
        .unwrap_or_else(|| {
            panic!(
                "no diagnostic {file}:{line}: {field}: ...{fragment}... among:\n{}",
                list(diags)
            )
        })
}

/// Exactly one error, and it matches.
#[track_caller]
fn only<'a>(
    diags: &'a [Diagnostic],
    file: &str,
    line: usize,
    field: &str,
    fragment: &str,
) -> &'a Diagnostic {
    assert_eq!(
        diags.len(),
        1,
        "expected exactly one error, got:\n{}",
        list(diags)
    );
    find(diags, file, line, field, fragment)
}

#[track_caller]
fn fix_of(d: &Diagnostic) -> &str {
    d.fix
        .as_deref()
        .unwrap_or_else(|| panic!("error without a fix: {d}"))
}

/// The single error of one file `p.toml` that is GOOD with `key`'s line replaced.
#[track_caller]
fn single(key: &str, line: &str, at_line: usize, field: &str, fragment: &str) -> Diagnostic {
    let text = good_with(key, line);
    let diags = load_err(&[("p.toml", &text)]);
    only(&diags, "p.toml", at_line, field, fragment).clone()
}

// ---------------------------------------------------- the shipped examples

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn shipped_policies_load() {
    let fixture = Fixture::new(&[]);
    let set = match load(&shipped_dir(), &fixture.passwd()) {
        Ok(set) => set,
        Err(e) => panic!("shipped policies must load:\n{e}"),
    };
    let names: Vec<&str> = set.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["audit-rollout", "credential-host-key", "demo", "myapp", "tls-key"],
        "sorted by file name"
    );
    for (i, p) in set.policies.iter().enumerate() {
        assert_eq!(p.id as usize, i, "id is the index in name order");
        assert_eq!(
            p.source.file_name().unwrap().to_str().unwrap(),
            format!("{}.toml", p.name)
        );
    }
    // No warnings other than "does not exist (yet)".
    for w in &set.warnings {
        assert!(
            w.message.contains("does not exist (yet)"),
            "unexpected warning: {w}"
        );
    }

    let audit = &set.policies[0];
    assert_eq!(audit.unit, "backup.service");
    assert_eq!(audit.mode, Mode::Audit);
    assert_eq!(audit.allow_uids, [0]);
    assert_eq!(audit.allow_users, ["0"]);
    assert_eq!(audit.protect, [PathBuf::from("/etc/backup/credentials")]);
    assert_eq!(audit.cgroup, None);
    assert_eq!((audit.rate_per_sec, audit.rate_burst), (500, 2000));

    let key = &set.policies[1];
    assert!(key.any_unit());
    assert_eq!(key.setup_only, [PathBuf::from("/var/lib/systemd/credential.secret")]);
    assert!(key.protect.is_empty() && key.allow_uids.is_empty());

    let demo = &set.policies[2];
    assert_eq!(demo.unit, "demo.service");
    assert_eq!(demo.mode, Mode::Enforce);
    assert_eq!(demo.allow_uids, [1002]);
    assert_eq!(demo.allow_users, ["1002"]);
    assert_eq!(
        demo.protect,
        [PathBuf::from("/run/credentials/demo.service")]
    );
    assert_eq!(demo.cgroup, None);
    assert_eq!(
        (demo.rate_per_sec, demo.rate_burst),
        (DEFAULT_RATE_PER_SEC, DEFAULT_RATE_BURST)
    );

    let myapp = &set.policies[3];
    assert_eq!(myapp.unit, "myapp.service");
    assert!(myapp.unit_user);
    assert!(myapp.allow_uids.is_empty());
    assert_eq!(myapp.protect, [PathBuf::from("/var/lib/private/myapp")]);
    assert_eq!(myapp.setup_only, [PathBuf::from("/etc/credstore.encrypted/api_key.cred")]);

    let tls = &set.policies[4];
    assert_eq!(tls.unit, "nginx.service");
    assert_eq!(tls.mode, Mode::Enforce);
    assert_eq!(tls.allow_users, ["www-data", "root"]);
    assert_eq!(tls.allow_uids, [33, 0], "resolved through the passwd file");
    assert_eq!(tls.protect, [PathBuf::from("/etc/ssl/private/site.key")]);
    assert_eq!(tls.cgroup.as_deref(), Some("/system.slice/nginx.service"));
    assert_eq!((tls.rate_per_sec, tls.rate_burst), (200, 1000));

    assert_eq!(set.path_count(), 7);
}

#[test]
fn shipped_readme_lists_every_policy() {
    let readme = fs::read_to_string(shipped_dir().join("README.md")).expect("policies/README.md");
    for entry in fs::read_dir(shipped_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") {
            assert!(
                readme.contains(&format!("`{name}`")),
                "policies/README.md does not list {name}"
            );
        }
    }
}

#[test]
fn good_policy_loads_with_defaults() {
    let set = load_ok(&[("myapp.toml", GOOD)]);
    assert_eq!(set.policies.len(), 1);
    let p = &set.policies[0];
    assert_eq!(p.id, 0);
    assert_eq!(p.name, "myapp");
    assert_eq!(p.unit, "myapp.service");
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.allow_uids, [1002, 0]);
    assert_eq!(p.allow_users, ["myapp", "0"]);
    assert_eq!(p.protect, [PathBuf::from("/etc/myapp/tls.key")]);
    assert_eq!(p.cgroup, None);
    assert_eq!((p.rate_per_sec, p.rate_burst), (200, 1000));
}

#[test]
fn policy_serializes_mode_lowercase() {
    let set = load_ok(&[("myapp.toml", &good_with("mode", "mode = \"audit\""))]);
    let json = serde_json::to_value(&set.policies[0]).unwrap();
    assert_eq!(json["mode"], "audit");
    assert_eq!(json["unit"], "myapp.service");
    assert_eq!(json["allow_uids"], serde_json::json!([1002, 0]));
    assert_eq!(Mode::Enforce.to_string(), "enforce");
}

#[test]
fn all_fields_and_alerts_table() {
    let text = r#"
unit = "app@inst-1.service"
mode = "audit"
allow_users = ["www-data", 1003, 4294967294]
protect = ["/etc/app", "/var/lib/app/key"]
cgroup = "/system.slice/app@inst-1.service"

[alerts]
rate_per_sec = 0
burst = 1
"#;
    let set = load_ok(&[("app.toml", text)]);
    let p = &set.policies[0];
    assert_eq!(p.allow_uids, [33, 1003, 4_294_967_294]);
    assert_eq!((p.rate_per_sec, p.rate_burst), (0, 1));
    assert_eq!(
        p.cgroup.as_deref(),
        Some("/system.slice/app@inst-1.service")
    );
}

#[test]
fn inline_alerts_table_and_max_values() {
    let text = good_with(
        "alerts",
        "alerts = { rate_per_sec = 1000000, burst = 1000000 }",
    );
    let set = load_ok(&[("p.toml", &text)]);
    assert_eq!(
        (set.policies[0].rate_per_sec, set.policies[0].rate_burst),
        (1_000_000, 1_000_000)
    );
}

#[test]
fn scope_units_are_accepted() {
    let set = load_ok(&[("s.toml", &good_with("unit", "unit = \"session-4.scope\""))]);
    assert_eq!(set.policies[0].unit, "session-4.scope");
}

#[test]
fn ids_follow_file_name_order_and_other_files_are_ignored() {
    let b = good_with("unit", "unit = \"b.service\"").replace("/etc/myapp/tls.key", "/etc/b");
    let a = good_with("unit", "unit = \"a.service\"").replace("/etc/myapp/tls.key", "/etc/a");
    let c = good_with("unit", "unit = \"c.service\"").replace("/etc/myapp/tls.key", "/etc/c");
    let set = load_ok(&[
        ("b.toml", &b),
        ("a.toml", &a),
        ("c.toml", &c),
        ("README.md", "not toml = = ["),
        ("notes.toml.bak", "garbage ["),
        (".#a.toml", "editor lock file ["),
    ]);
    let units: Vec<(u32, &str)> = set
        .policies
        .iter()
        .map(|p| (p.id, p.unit.as_str()))
        .collect();
    assert_eq!(
        units,
        [(0, "a.service"), (1, "b.service"), (2, "c.service")]
    );
}

#[test]
fn a_single_file_can_be_loaded() {
    let fixture = Fixture::new(&[("one.toml", GOOD), ("bad.toml", "mode = 3")]);
    let set = load(&fixture.dir().join("one.toml"), &fixture.passwd()).expect("single file loads");
    assert_eq!(set.policies.len(), 1);
    assert_eq!(set.policies[0].name, "one");
}

// ------------------------------------------------- directory-level errors

#[test]
fn missing_path_is_an_error() {
    let fixture = Fixture::new(&[]);
    let missing = fixture.dir().join("nope");
    let e = load(&missing, &fixture.passwd()).unwrap_err();
    assert_eq!(e.diagnostics.len(), 1);
    let d = &e.diagnostics[0];
    assert_eq!(
        (d.file.as_path(), d.line, d.field.as_str()),
        (missing.as_path(), 0, "")
    );
    assert!(d.message.contains("does not exist"), "{d}");
}

#[test]
fn empty_directory_is_an_error() {
    let fixture = Fixture::new(&[("README.md", "# only docs")]);
    let e = fixture.load().unwrap_err();
    assert_eq!(e.diagnostics.len(), 1);
    let d = &e.diagnostics[0];
    assert_eq!(
        (d.file.clone(), d.line, d.field.as_str()),
        (fixture.dir(), 0, "")
    );
    assert!(d.message.contains("no policy files (*.toml)"), "{d}");
    assert!(fix_of(d).contains("one file per unit"));
}

#[test]
fn a_single_file_must_be_toml() {
    let fixture = Fixture::new(&[("policy.txt", GOOD)]);
    let file = fixture.dir().join("policy.txt");
    let e = load(&file, &fixture.passwd()).unwrap_err();
    assert_eq!(
        (e.diagnostics[0].file.clone(), e.diagnostics[0].line),
        (file, 0)
    );
    assert!(e.diagnostics[0].message.contains("is not a .toml file"));
}

#[test]
fn more_than_512_policies_is_an_error() {
    let mut files = Vec::new();
    for i in 0..=MAX_POLICIES {
        let text = format!(
            "unit = \"u{i}.service\"\nmode = \"audit\"\nallow_users = [0]\nprotect = [\"/etc/guard-test/{i}\"]\n"
        );
        files.push((format!("p{i:04}.toml"), text));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let fixture = Fixture::new(&borrowed);
    let e = fixture.load().unwrap_err();
    assert_eq!(e.diagnostics.len(), 1, "{e}");
    let d = &e.diagnostics[0];
    assert_eq!(
        (d.file.clone(), d.line, d.field.as_str()),
        (fixture.dir(), 0, "")
    );
    assert!(
        d.message.contains("holds 513 policy files; at most 512"),
        "{d}"
    );

    // Exactly 512 is fine.
    fs::remove_file(fixture.dir().join("p0512.toml")).unwrap();
    assert_eq!(
        fixture.load().expect("512 policies load").policies.len(),
        512
    );
}

// ------------------------------------------------------------ TOML syntax

#[test]
fn invalid_toml_reports_the_toml_message() {
    let d = single("mode", "mode = enforce", 2, "mode", "invalid TOML");
    assert_eq!(d.column, 8);
    assert!(
        d.message.contains("string"),
        "toml's own message is kept: {d}"
    );
    assert!(fix_of(&d).contains("quotes"));
}

#[test]
fn invalid_toml_in_a_table_names_the_dotted_field() {
    let text = format!("{GOOD}[alerts]\nburst = 10 10\n");
    let diags = load_err(&[("p.toml", &text)]);
    only(&diags, "p.toml", 6, "alerts.burst", "invalid TOML");
}

#[test]
fn duplicate_toml_keys_are_an_error() {
    let text = format!("{GOOD}mode = \"audit\"\n");
    let diags = load_err(&[("p.toml", &text)]);
    let d = only(&diags, "p.toml", 5, "mode", "duplicate key");
    assert!(fix_of(d).contains("set each key once"));
}

#[test]
fn non_utf8_file_is_an_error() {
    let fixture = Fixture::new(&[]);
    fs::write(
        fixture.dir().join("p.toml"),
        b"unit = \"a.service\"\nmode = \"\xff\"\n",
    )
    .unwrap();
    let e = fixture.load().unwrap_err();
    let d = only(&e.diagnostics, "p.toml", 2, "", "not valid UTF-8");
    assert_eq!(d.column, 9);
}

// -------------------------------------------------------------- structure

#[test]
fn unknown_field_is_an_error_listing_valid_fields() {
    let d = single(
        "allow_user",
        "allow_user = [\"myapp\"]",
        5,
        "allow_user",
        "unknown field `allow_user`",
    );
    assert!(
        d.message
            .contains("unit, mode, allow_users, protect, executables, setup_only, cgroup, core_dumps, alerts"),
        "{d}"
    );
    assert!(fix_of(&d).contains("did you mean `allow_users`?"), "{d}");
    assert_eq!(d.column, 1);
}

#[test]
fn unknown_alerts_field_is_an_error() {
    let text = format!("{GOOD}\n[alerts]\nrate = 5\n");
    let diags = load_err(&[("p.toml", &text)]);
    let d = only(&diags, "p.toml", 7, "alerts.rate", "unknown field `rate`");
    assert!(d.message.contains("rate_per_sec, burst"));
    assert!(fix_of(d).contains("`rate_per_sec`"));
}

#[test]
fn unknown_sub_table_is_an_error() {
    let text = format!("{GOOD}[alerts.extra]\nx = 1\n");
    let diags = load_err(&[("p.toml", &text)]);
    only(&diags, "p.toml", 5, "alerts.extra", "unknown field `extra`");
}

#[test]
fn every_unknown_field_is_reported() {
    let text = format!("{GOOD}colour = \"red\"\n[alert]\nburst = 5\n");
    let diags = load_err(&[("p.toml", &text)]);
    assert_eq!(diags.len(), 2, "{}", list(&diags));
    find(&diags, "p.toml", 5, "colour", "unknown field");
    let d = find(&diags, "p.toml", 6, "alert", "unknown field");
    assert!(fix_of(d).contains("did you mean `alerts`?"));
}

#[test]
fn missing_required_fields_are_each_reported() {
    let diags = load_err(&[("empty.toml", "")]);
    assert_eq!(diags.len(), 4, "{}", list(&diags));
    for field in ["unit", "mode", "allow_users", "protect"] {
        let d = find(&diags, "empty.toml", 1, field, "required field is missing");
        assert!(fix_of(d).contains(&format!("{field} =")), "{d}");
    }
}

#[test]
fn type_error_names_the_field() {
    let d = single(
        "mode",
        "mode = 3",
        2,
        "mode",
        "expected a string, found an integer (3)",
    );
    assert!(fix_of(&d).contains("mode = \"enforce\""));
}

#[test]
fn type_error_unit_array() {
    let d = single(
        "unit",
        "unit = [\"a.service\"]",
        1,
        "unit",
        "expected a string, found an array",
    );
    assert!(fix_of(&d).contains("not a list"));
}

#[test]
fn type_error_date_time() {
    single(
        "cgroup",
        "cgroup = 1979-05-27",
        5,
        "cgroup",
        "found a date-time (1979-05-27)",
    );
}

#[test]
fn type_error_allow_users_not_an_array() {
    let d = single(
        "allow_users",
        "allow_users = \"myapp\"",
        3,
        "allow_users",
        "expected an array, found a string",
    );
    assert!(fix_of(&d).contains("allow_users = [\"myapp\"]"), "{d}");
}

#[test]
fn type_error_allow_users_element() {
    let d = single(
        "allow_users",
        "allow_users = [\"myapp\", true]",
        3,
        "allow_users[1]",
        "found a boolean (true)",
    );
    assert_eq!(d.column, 25);
}

#[test]
fn type_error_protect_element() {
    let diags = load_err(&[(
        "p.toml",
        &good_with("protect", "protect = [\"/etc/a\", 7, \"/etc/b\"]"),
    )]);
    only(
        &diags,
        "p.toml",
        4,
        "protect[1]",
        "expected a string, found an integer (7)",
    );
}

#[test]
fn type_error_protect_not_an_array() {
    let d = single(
        "protect",
        "protect = \"/etc/x\"",
        4,
        "protect",
        "expected an array",
    );
    assert!(fix_of(&d).contains("protect = [\"/etc/x\"]"));
}

#[test]
fn type_error_alerts_not_a_table() {
    single(
        "alerts",
        "alerts = 5",
        5,
        "alerts",
        "expected a table, found an integer (5)",
    );
}

#[test]
fn type_error_alerts_value_quoted() {
    let text = format!("{GOOD}[alerts]\nburst = \"10\"\n");
    let diags = load_err(&[("p.toml", &text)]);
    let d = only(
        &diags,
        "p.toml",
        6,
        "alerts.burst",
        "expected an integer, found a string (\"10\")",
    );
    assert_eq!(fix_of(d), "remove the quotes: burst = 10");
}

#[test]
fn type_error_alerts_value_float() {
    let text = format!("{GOOD}[alerts]\nrate_per_sec = 2.5\n");
    let diags = load_err(&[("p.toml", &text)]);
    let d = only(
        &diags,
        "p.toml",
        6,
        "alerts.rate_per_sec",
        "found a float (2.5)",
    );
    assert!(fix_of(d).contains("whole number"));
}

// ------------------------------------------------------------------- unit

#[test]
fn unit_without_suffix() {
    let d = single(
        "unit",
        "unit = \"myapp\"",
        1,
        "unit",
        "does not end in \".service\" or \".scope\"",
    );
    assert_eq!(d.column, 8);
    assert_eq!(fix_of(&d), "did you mean \"myapp.service\"?");
}

#[test]
fn unit_of_another_type() {
    let d = single(
        "unit",
        "unit = \"myapp.socket\"",
        1,
        "unit",
        "names a .socket unit",
    );
    assert!(fix_of(&d).contains("\"myapp.service\""));
}

#[test]
fn unit_type_in_wrong_case() {
    let d = single(
        "unit",
        "unit = \"myapp.Service\"",
        1,
        "unit",
        "must be lowercase",
    );
    assert_eq!(fix_of(&d), "did you mean \"myapp.service\"?");
}

#[test]
fn unit_with_invalid_characters() {
    let d = single(
        "unit",
        "unit = \"my app.service\"",
        1,
        "unit",
        "contains ' ' not allowed in unit names",
    );
    assert!(fix_of(&d).contains(r"'my\x20app.service'"), "{d}");
    // The suggestion, written as suggested, is valid.
    load_ok(&[("p.toml", &good_with("unit", r"unit = 'my\x20app.service'"))]);
}

#[test]
fn unit_with_leading_dot() {
    let d = single(
        "unit",
        "unit = \".myapp.service\"",
        1,
        "unit",
        "starts with '.'",
    );
    assert_eq!(fix_of(&d), "did you mean \"myapp.service\"?");
}

#[test]
fn unit_too_long() {
    let long = format!("unit = \"{}.service\"", "a".repeat(248));
    single(
        "unit",
        &long,
        1,
        "unit",
        "is 256 bytes long; systemd unit names are at most 255",
    );
    let max = format!("unit = \"{}.service\"", "a".repeat(247));
    load_ok(&[("p.toml", &good_with("unit", &max))]);
}

#[test]
fn unit_empty() {
    single("unit", "unit = \"\"", 1, "unit", "is empty");
}

// ------------------------------------------------------------------- mode

#[test]
fn mode_in_wrong_case() {
    let d = single(
        "mode",
        "mode = \"Enforce\"",
        2,
        "mode",
        "unknown mode \"Enforce\"",
    );
    assert_eq!(
        fix_of(&d),
        "did you mean \"enforce\"? (modes are lowercase)"
    );
}

#[test]
fn mode_unknown() {
    let d = single(
        "mode",
        "mode = \"enforcing\"",
        2,
        "mode",
        "the modes are \"enforce\"",
    );
    assert_eq!(fix_of(&d), "did you mean \"enforce\"?");
    let d = single(
        "mode",
        "mode = \"block\"",
        2,
        "mode",
        "unknown mode \"block\"",
    );
    assert!(fix_of(&d).contains("mode = \"audit\""));
}

// ------------------------------------------------------------ allow_users

#[test]
fn allow_users_empty() {
    single(
        "allow_users",
        "allow_users = []",
        3,
        "allow_users",
        "is empty",
    );
}

#[test]
fn allow_users_uid_out_of_range() {
    let diags = load_err(&[(
        "p.toml",
        &good_with("allow_users", "allow_users = [4294967295, -1, 5]"),
    )]);
    assert_eq!(diags.len(), 2, "{}", list(&diags));
    let d = find(
        &diags,
        "p.toml",
        3,
        "allow_users[0]",
        "UID 4294967295 is out of range",
    );
    assert!(fix_of(d).contains("0 to 4294967294"));
    find(
        &diags,
        "p.toml",
        3,
        "allow_users[1]",
        "UID -1 is out of range",
    );
}

#[test]
fn allow_users_unknown_name() {
    let d = single(
        "allow_users",
        "allow_users = [\"nosuch\"]",
        3,
        "allow_users[0]",
        "user \"nosuch\" does not exist",
    );
    assert!(d.message.contains("passwd"), "names the passwd file: {d}");
    assert!(fix_of(&d).contains("numeric UID"));
}

#[test]
fn allow_users_misspelt_name() {
    let d = single(
        "allow_users",
        "allow_users = [\"myap\"]",
        3,
        "allow_users[0]",
        "does not exist",
    );
    assert_eq!(fix_of(&d), "did you mean \"myapp\"?");
}

#[test]
fn allow_users_quoted_number() {
    let d = single(
        "allow_users",
        "allow_users = [\"1002\"]",
        3,
        "allow_users[0]",
        "user \"1002\" does not exist",
    );
    assert_eq!(
        fix_of(&d),
        "to allow UID 1002, write it as a number without quotes: 1002"
    );
}

#[test]
fn allow_users_duplicate_after_resolution() {
    let d = single(
        "allow_users",
        "allow_users = [\"myapp\", 0, 1002]",
        3,
        "allow_users[2]",
        "duplicate: UID 1002 is already allowed by allow_users[0] (\"myapp\")",
    );
    assert_eq!(d.column, 28);
    single(
        "allow_users",
        "allow_users = [0, \"root\"]",
        3,
        "allow_users[1]",
        "\"root\" (UID 0) is already allowed by allow_users[0] (0)",
    );
}

#[test]
fn allow_users_without_passwd_file() {
    let fixture = Fixture::new(&[("p.toml", GOOD)]);
    let e = load(&fixture.dir(), &fixture.dir().join("no-passwd")).unwrap_err();
    let d = only(
        &e.diagnostics,
        "p.toml",
        3,
        "allow_users[0]",
        "cannot look up user \"myapp\": cannot read",
    );
    assert!(fix_of(d).contains("--passwd"));
    // Numeric UIDs need no passwd file.
    fs::write(
        fixture.dir().join("p.toml"),
        good_with("allow_users", "allow_users = [1002]"),
    )
    .unwrap();
    load(&fixture.dir(), &fixture.dir().join("no-passwd")).expect("numeric UIDs only");
}

#[test]
fn dynamic_user_range_is_a_warning() {
    let set = load_ok(&[("p.toml", &good_with("allow_users", "allow_users = [61184]"))]);
    let w = find(&set.warnings, "p.toml", 3, "allow_users[0]", "DynamicUser=");
    assert_eq!(w.severity, Severity::Warning);
}

// ---------------------------------------------------------------- protect

#[test]
fn protect_empty() {
    single("protect", "protect = []", 4, "protect", "is empty");
}

#[test]
fn protect_relative() {
    let d = single(
        "protect",
        "protect = [\"etc/myapp/key\"]",
        4,
        "protect[0]",
        "is not absolute",
    );
    assert_eq!(fix_of(&d), "did you mean \"/etc/myapp/key\"?");
}

#[test]
fn protect_not_normalised() {
    let line = r#"protect = ["/etc/./a", "/etc/x/../b", "/etc//c", "/etc/d/", "/etc/ok"]"#;
    let diags = load_err(&[("p.toml", &good_with("protect", line))]);
    assert_eq!(diags.len(), 4, "{}", list(&diags));
    let d = find(
        &diags,
        "p.toml",
        4,
        "protect[0]",
        "is not normalised: it has a '.' component",
    );
    assert_eq!(fix_of(d), "write it as \"/etc/a\"");
    let d = find(&diags, "p.toml", 4, "protect[1]", "has a '..' component");
    assert!(fix_of(d).starts_with("write it as \"/etc/b\""));
    find(&diags, "p.toml", 4, "protect[2]", "contains '//'");
    find(&diags, "p.toml", 4, "protect[3]", "ends with '/'");
}

#[test]
fn protect_root() {
    single(
        "protect",
        "protect = [\"/\"]",
        4,
        "protect[0]",
        "is the root directory",
    );
}

#[test]
fn protect_pseudo_filesystems() {
    let line = r#"protect = ["/proc/1/environ", "/sys/kernel", "/dev/shm/key", "/dev"]"#;
    let diags = load_err(&[("p.toml", &good_with("protect", line))]);
    assert_eq!(diags.len(), 4, "{}", list(&diags));
    let d = find(
        &diags,
        "p.toml",
        4,
        "protect[0]",
        "is under /proc, a pseudo filesystem (procfs)",
    );
    assert!(
        d.message.contains("made up by the kernel"),
        "explains why: {d}"
    );
    find(
        &diags,
        "p.toml",
        4,
        "protect[1]",
        "is under /sys, a pseudo filesystem (sysfs)",
    );
    find(&diags, "p.toml", 4, "protect[2]", "is under /dev");
    find(&diags, "p.toml", 4, "protect[3]", "is under /dev");
    // Only whole components count.
    load_ok(&[(
        "p.toml",
        &good_with(
            "protect",
            r#"protect = ["/devices/key", "/process", "/system/x"]"#,
        ),
    )]);
}

#[test]
fn protect_duplicate_in_one_file() {
    let d = single(
        "protect",
        r#"protect = ["/etc/a", "/etc/b", "/etc/a"]"#,
        4,
        "protect[2]",
        "duplicate: \"/etc/a\" is already listed as protect[0]",
    );
    assert_eq!(d.column, 32);
}

#[test]
fn protect_nested_in_one_file_is_a_warning() {
    let set = load_ok(&[(
        "p.toml",
        &good_with("protect", r#"protect = ["/etc/a", "/etc/a/b"]"#),
    )]);
    find(
        &set.warnings,
        "p.toml",
        4,
        "protect[1]",
        "is inside protect[0]",
    );
}

#[test]
fn protect_missing_path_is_a_warning() {
    let set = load_ok(&[(
        "p.toml",
        &good_with("protect", r#"protect = ["/nonexistent/guard-test/key"]"#),
    )]);
    let w = find(
        &set.warnings,
        "p.toml",
        4,
        "protect[0]",
        "does not exist (yet)",
    );
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(
        set.absent_paths(),
        [Path::new("/nonexistent/guard-test/key")]
    );
    // An existing path gives no warning.
    let tmp = TempDir::new();
    let key = tmp.write("key", "secret");
    let set = load_ok(&[(
        "p.toml",
        &good_with("protect", &format!("protect = [\"{}\"]", key.display())),
    )]);
    assert!(set.warnings.is_empty(), "{}", list(&set.warnings));
    assert!(set.absent_paths().is_empty());
}

// ----------------------------------------------------------------- cgroup

#[test]
fn cgroup_must_be_absolute_and_normalised() {
    let d = single(
        "cgroup",
        "cgroup = \"system.slice/myapp.service\"",
        5,
        "cgroup",
        "is not absolute",
    );
    assert_eq!(fix_of(&d), "did you mean \"/system.slice/myapp.service\"?");
    single(
        "cgroup",
        "cgroup = \"/system.slice/../myapp.service\"",
        5,
        "cgroup",
        "has a '..' component",
    );
    single(
        "cgroup",
        "cgroup = \"/system.slice/myapp.service/\"",
        5,
        "cgroup",
        "ends with '/'",
    );
    single(
        "cgroup",
        "cgroup = \"/system.slice//myapp.service\"",
        5,
        "cgroup",
        "contains '//'",
    );
}

#[test]
fn cgroup_root_and_mount_point() {
    single(
        "cgroup",
        "cgroup = \"/\"",
        5,
        "cgroup",
        "is the root cgroup",
    );
    let d = single(
        "cgroup",
        "cgroup = \"/sys/fs/cgroup/system.slice/myapp.service\"",
        5,
        "cgroup",
        "cgroup2 mount point",
    );
    assert_eq!(fix_of(&d), "did you mean \"/system.slice/myapp.service\"?");
}

#[test]
fn cgroup_of_another_unit_is_a_warning() {
    let set = load_ok(&[(
        "p.toml",
        &good_with("cgroup", "cgroup = \"/system.slice/other.service\""),
    )]);
    find(
        &set.warnings,
        "p.toml",
        5,
        "cgroup",
        "does not contain the unit name \"myapp.service\"",
    );
}

// ----------------------------------------------------------------- alerts

#[test]
fn alerts_out_of_range() {
    let text = format!("{GOOD}[alerts]\nrate_per_sec = 1000001\nburst = 0\n");
    let diags = load_err(&[("p.toml", &text)]);
    assert_eq!(diags.len(), 2, "{}", list(&diags));
    let d = find(
        &diags,
        "p.toml",
        6,
        "alerts.rate_per_sec",
        "must be between 0 and 1000000, got 1000001",
    );
    assert_eq!(d.column, 16);
    find(
        &diags,
        "p.toml",
        7,
        "alerts.burst",
        "must be between 1 and 1000000, got 0",
    );

    let text = format!("{GOOD}[alerts]\nrate_per_sec = -1\nburst = 1000001\n");
    let diags = load_err(&[("p.toml", &text)]);
    find(&diags, "p.toml", 6, "alerts.rate_per_sec", "got -1");
    find(&diags, "p.toml", 7, "alerts.burst", "got 1000001");
}

// -------------------------------------------------------- across files

#[test]
fn same_unit_in_two_files() {
    let other = GOOD.replace("/etc/myapp/tls.key", "/etc/other");
    let diags = load_err(&[("a.toml", GOOD), ("b.toml", &other)]);
    let d = only(
        &diags,
        "b.toml",
        1,
        "unit",
        "unit \"myapp.service\" already has a policy",
    );
    assert!(
        d.message.contains("a.toml:1:8"),
        "names the other file: {d}"
    );
    assert!(fix_of(d).contains("a.toml") && fix_of(d).contains("b.toml"));
}

#[test]
fn same_path_in_two_files() {
    let other = good_with("unit", "unit = \"other.service\"");
    let diags = load_err(&[("a.toml", GOOD), ("b.toml", &other)]);
    let d = only(
        &diags,
        "b.toml",
        4,
        "protect[0]",
        "\"/etc/myapp/tls.key\" is also protected by",
    );
    assert!(
        d.message.contains("a.toml:4:12 (unit myapp.service)"),
        "{d}"
    );
    assert!(fix_of(d).contains("a.toml"));
}

#[test]
fn nested_paths_in_two_files() {
    let outer = good_with("protect", "protect = [\"/etc/myapp\"]")
        .replace("myapp.service", "outer.service");
    // b.toml's path is inside a.toml's.
    let diags = load_err(&[("a.toml", &outer), ("b.toml", GOOD)]);
    let d = only(
        &diags,
        "b.toml",
        4,
        "protect[0]",
        "\"/etc/myapp/tls.key\" is inside \"/etc/myapp\"",
    );
    assert!(
        d.message.contains("a.toml:4:12 (unit outer.service)"),
        "{d}"
    );
    // b.toml's path contains a.toml's.
    let outer = good_with("protect", "protect = [\"/etc/x\", \"/etc/myapp\"]")
        .replace("myapp.service", "outer.service");
    let diags = load_err(&[("a.toml", GOOD), ("b.toml", &outer)]);
    let d = only(
        &diags,
        "b.toml",
        4,
        "protect[1]",
        "\"/etc/myapp\" contains \"/etc/myapp/tls.key\"",
    );
    assert!(
        d.message.contains("a.toml:4:12 (unit myapp.service)"),
        "{d}"
    );
    // A shared prefix that is not a whole component is no overlap.
    let sibling = good_with("protect", "protect = [\"/etc/myapp.d/key\"]")
        .replace("myapp.service", "b.service");
    let outer = good_with("protect", "protect = [\"/etc/myapp\"]");
    load_ok(&[("a.toml", &outer), ("b.toml", &sibling)]);
}

#[test]
fn errors_in_every_file_are_collected() {
    let a = good_with("mode", "mode = \"Audit\"");
    let b = good_with("unit", "unit = \"b\"").replace("/etc/myapp/tls.key", "/etc/b");
    let c = "unit = \"c.service\"\nmode = \"enforce\"\nallow_users = [0]\nprotect = [\"/proc/x\"]\ncolour = 1\n";
    let fixture = Fixture::new(&[("a.toml", &a), ("b.toml", &b), ("c.toml", c)]);
    let e = fixture.load().unwrap_err();
    let diags = &e.diagnostics;
    assert_eq!(diags.len(), 4, "{e}");
    find(diags, "a.toml", 2, "mode", "unknown mode");
    find(diags, "b.toml", 1, "unit", "does not end in");
    find(diags, "c.toml", 4, "protect[0]", "pseudo filesystem");
    find(diags, "c.toml", 5, "colour", "unknown field");
    // In file order, then by position.
    let order: Vec<String> = diags
        .iter()
        .map(|d| format!("{}:{}", file_name(d), d.line))
        .collect();
    assert_eq!(order, ["a.toml:2", "b.toml:1", "c.toml:4", "c.toml:5"]);
    assert!(
        e.to_string()
            .ends_with("\n4 errors in 3 files; nothing was loaded"),
        "{e}"
    );
}

#[test]
fn a_file_with_a_syntax_error_does_not_hide_the_others() {
    let diags = load_err(&[
        ("a.toml", "unit = \"a.service"),
        ("b.toml", &good_with("mode", "mode = \"x\"")),
    ]);
    assert_eq!(diags.len(), 2, "{}", list(&diags));
    find(&diags, "a.toml", 1, "unit", "invalid TOML");
    find(&diags, "b.toml", 2, "mode", "unknown mode");
}

// ------------------------------------------------------------- formatting

#[test]
fn diagnostic_display_format() {
    let d = single("mode", "mode = 3", 2, "mode", "expected a string");
    let file = d.file.display().to_string();
    assert_eq!(
        d.to_string(),
        format!(
            "error: {file}:2:8: mode: expected a string, found an integer (3)\n  fix: write it as mode = \"enforce\" or mode = \"audit\""
        )
    );
    let w = Diagnostic {
        file: PathBuf::from("p.toml"),
        line: 4,
        column: 12,
        field: "protect[0]".into(),
        message: "gone".into(),
        fix: None,
        severity: Severity::Warning,
    };
    assert_eq!(w.to_string(), "warning: p.toml:4:12: protect[0]: gone");
    let dir = Diagnostic::file_error(Path::new("/x"), "does not exist", "pass a directory");
    assert_eq!(
        dir.to_string(),
        "error: /x: does not exist\n  fix: pass a directory"
    );
}

#[test]
fn policy_errors_display_summary() {
    let diags = load_err(&[("a.toml", "mode = 3\n")]);
    let e = PolicyErrors { diagnostics: diags };
    let text = e.to_string();
    assert!(
        text.ends_with("\n4 errors in 1 file; nothing was loaded"),
        "{text}"
    );
    assert_eq!(text.matches("error: ").count(), 4);
    let one = PolicyErrors {
        diagnostics: e.diagnostics[..1].to_vec(),
    };
    assert!(one
        .to_string()
        .ends_with("\n1 error in 1 file; nothing was loaded"));
    let _: &dyn std::error::Error = &one;
}

#[test]
fn line_and_column_count_characters() {
    let src = Source::new(PathBuf::from("x"), "a = 1\n# é ü\nb = \"ß\"\n".to_string());
    assert_eq!(src.position(0), (1, 1));
    assert_eq!(src.position(4), (1, 5));
    assert_eq!(src.position(6), (2, 1));
    let b = src.text.find('b').unwrap();
    assert_eq!(src.position(b + 4), (3, 5));
    assert_eq!(src.position(src.text.len()), (4, 1));
    assert_eq!(src.position(usize::MAX), (4, 1), "clamped");
}

#[test]
fn columns_after_multibyte_characters() {
    // "ü" is two bytes; the column still counts it as one.
    let text = "# ü\nunit = \"myapp.service\" # ü\nmode = \"ü\"\nallow_users = [0]\nprotect = [\"/etc/x\"]\n";
    let diags = load_err(&[("p.toml", text)]);
    let d = only(&diags, "p.toml", 3, "mode", "unknown mode \"ü\"");
    assert_eq!(d.column, 8);
}

// ------------------------------------------------------- spans and passwd

#[test]
fn spans_are_reported() {
    // Canary for the serde_spanned protocol names used in types.rs.
    let text = "a = 1\n[t]\nb = [\"x\", 2]\nd = 1979-05-27\n";
    let doc = Document::parse(text).unwrap();
    let (key, value) = &doc.0[0];
    assert_eq!((key.get_ref().as_str(), key.span()), ("a", 0..1));
    assert_eq!((value.get_ref(), value.span()), (&Node::Integer(1), 4..5));
    let Node::Table(t) = doc.0[1].1.get_ref() else {
        panic!("table")
    };
    assert_eq!(t[0].0.get_ref(), "b");
    assert_eq!(&text[t[0].0.span()], "b");
    let Node::Array(items) = t[0].1.get_ref() else {
        panic!("array")
    };
    assert_eq!(&text[items[0].span()], "\"x\"");
    assert_eq!(&text[items[1].span()], "2");
    assert_eq!(t[1].1.get_ref(), &Node::Datetime("1979-05-27".into()));
    assert_eq!(&text[t[1].1.span()], "1979-05-27");
}

#[test]
fn passwd_lookup() {
    let p = Passwd::parse(PASSWD);
    assert_eq!(p.uid("root"), Some(0));
    assert_eq!(p.uid("www-data"), Some(33));
    assert_eq!(p.uid("myapp"), Some(1002));
    assert_eq!(p.name(1002), Some("myapp"));
    assert_eq!(p.name(0), Some("root"));
    assert_eq!(p.uid("twin"), Some(1004), "first entry wins");
    assert_eq!(p.name(1005), Some("twin"));
    assert_eq!(p.uid("+nisuser"), None);
    assert_eq!(p.uid("nouid"), None);
    assert_eq!(p.uid("broken line without fields"), None);
    assert_eq!(p.name(4242), None);
    let tmp = TempDir::new();
    let file = tmp.write("passwd", "a:x:7:7::/:/bin/sh\n");
    assert_eq!(Passwd::read(&file).unwrap().uid("a"), Some(7));
    assert!(Passwd::read(&tmp.0.join("missing")).is_err());
}

// ------------------------------------- systemd seeds: @unit, exe, setup

#[test]
fn unit_user_is_allowed_by_name_at_and_mixes_with_uids() {
    let set = load_ok(&[("p.toml", &good_with("allow_users", "allow_users = [\"@unit\", 0]"))]);
    let p = &set.policies[0];
    assert!(p.unit_user);
    assert_eq!(p.allow_uids, vec![0]);
    assert_eq!(p.allow_users, vec!["@unit".to_string(), "0".to_string()]);
}

#[test]
fn unknown_special_user_is_an_error() {
    let d = single("allow_users", "allow_users = [\"@self\"]", 3, "allow_users[0]", "the only special entry is \"@unit\"");
    assert!(fix_of(&d).contains("@unit"), "{d}");
}

#[test]
fn duplicate_unit_user_is_an_error() {
    single("allow_users", "allow_users = [\"@unit\", \"@unit\"]", 3, "allow_users[1]", "duplicate");
}

#[test]
fn dynamic_uid_warning_suggests_unit_user() {
    let set = load_ok(&[("p.toml", &good_with("allow_users", "allow_users = [61190]"))]);
    assert!(set.warnings.iter().any(|w| w.message.contains("@unit")), "{:?}", set.warnings);
}

#[test]
fn executables_and_setup_only_load() {
    let text = good_with("executables", "executables = [\"/bin/sh\"]") + "setup_only = [\"/etc/credstore.encrypted/api_key.cred\"]\n";
    let set = load_ok(&[("p.toml", &text)]);
    let p = &set.policies[0];
    assert_eq!(p.executables, vec![PathBuf::from("/bin/sh")]);
    assert_eq!(p.setup_only, vec![PathBuf::from("/etc/credstore.encrypted/api_key.cred")]);
}

#[test]
fn executables_errors_name_the_entry() {
    single("executables", "executables = []", 5, "executables", "is empty");
    single("executables", "executables = [\"usr/bin/x\"]", 5, "executables[0]", "not absolute");
    single("executables", "executables = [\"/tmp\"]", 5, "executables[0]", "not a regular file");
    single("executables", "executables = [\"/bin/sh\", \"/bin/sh\"]", 5, "executables[1]", "duplicate");
    single("executables", "executables = \"/bin/sh\"", 5, "executables", "expected an array");
}

#[test]
fn setup_only_errors_name_the_entry() {
    single("setup_only", "setup_only = []", 5, "setup_only", "is empty");
    single("setup_only", "setup_only = [\"/proc/x\"]", 5, "setup_only[0]", "pseudo filesystem");
}

#[test]
fn every_unit_policy_has_only_setup_only() {
    let text = "unit = \"*\"\nmode = \"enforce\"\nsetup_only = [\"/var/lib/systemd/credential.secret\"]\n";
    let set = load_ok(&[("host-key.toml", text)]);
    let p = &set.policies[0];
    assert!(p.any_unit());
    assert!(p.allow_uids.is_empty() && p.protect.is_empty());
    let bad = "unit = \"*\"\nmode = \"enforce\"\nallow_users = [0]\nsetup_only = [\"/k\"]\n";
    let diags = load_err(&[("p.toml", bad)]);
    only(&diags, "p.toml", 3, "allow_users", "only setup_only files");
    let missing = "unit = \"*\"\nmode = \"enforce\"\n";
    let diags = load_err(&[("p.toml", missing)]);
    only(&diags, "p.toml", 1, "setup_only", "required field is missing");
}

#[test]
fn unit_arguments_read_as_systemctl_does() {
    use super::with_unit_suffix;
    assert_eq!(with_unit_suffix("myapp"), "myapp.service");
    assert_eq!(with_unit_suffix("myapp.service"), "myapp.service");
    assert_eq!(with_unit_suffix("session-3.scope"), "session-3.scope");
    assert_eq!(with_unit_suffix("cups.socket"), "cups.socket");
    assert_eq!(with_unit_suffix("my.app"), "my.app.service");
    assert_eq!(with_unit_suffix("getty@tty1"), "getty@tty1.service");
}

// ------------------------------------------------------------- core_dumps

#[test]
fn core_dumps_default_refuse_and_keep() {
    let set = load_ok(&[("p.toml", GOOD)]);
    assert!(!set.policies[0].keep_cores, "a core is refused unless the policy keeps it");
    let set = load_ok(&[("p.toml", &good_with("core_dumps", "core_dumps = \"refuse\""))]);
    assert!(!set.policies[0].keep_cores);
    let set = load_ok(&[("p.toml", &good_with("core_dumps", "core_dumps = \"keep\""))]);
    assert!(set.policies[0].keep_cores);
}

#[test]
fn core_dumps_unknown_value() {
    let d = single("core_dumps", "core_dumps = \"Keep\"", 5, "core_dumps", "unknown value \"Keep\"");
    assert_eq!(fix_of(&d), "did you mean \"keep\"? (values are lowercase)");
    let d = single("core_dumps", "core_dumps = \"refused\"", 5, "core_dumps", "core_dumps is \"refuse\"");
    assert_eq!(fix_of(&d), "did you mean \"refuse\"?");
    let d = single("core_dumps", "core_dumps = \"systemd-coredump\"", 5, "core_dumps", "unknown value");
    assert!(fix_of(&d).contains("core_dumps = \"keep\""), "{d}");
}

#[test]
fn core_dumps_wrong_type() {
    let d = single("core_dumps", "core_dumps = true", 5, "core_dumps", "expected a string, found a boolean (true)");
    assert!(fix_of(&d).contains("core_dumps = \"keep\""), "{d}");
    let d = single("core_dumps", "core_dumps = [\"keep\"]", 5, "core_dumps", "expected a string");
    assert!(fix_of(&d).contains("not a list"), "{d}");
}

#[test]
fn core_dumps_misspelt_field() {
    let d = single("core_dump", "core_dump = \"keep\"", 5, "core_dump", "unknown field `core_dump`");
    assert!(fix_of(&d).contains("did you mean `core_dumps`?"), "{d}");
}

#[test]
fn core_dumps_not_for_every_unit() {
    let bad = "unit = \"*\"\nmode = \"enforce\"\nsetup_only = [\"/k\"]\ncore_dumps = \"keep\"\n";
    let diags = load_err(&[("p.toml", bad)]);
    only(&diags, "p.toml", 4, "core_dumps", "no processes whose cores");
    let ok = "unit = \"*\"\nmode = \"enforce\"\nsetup_only = [\"/k\"]\ncore_dumps = \"refuse\"\n";
    load_ok(&[("p.toml", ok)]);
}
