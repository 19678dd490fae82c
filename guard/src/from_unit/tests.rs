//! Tests of `guard policy from-unit`: systemd's output as systemd 252 and
//! 257 print it for the units of the systemd VM suite (`xtask/src/guest.rs`),
//! the policies written from it (each must pass guard's own loader), the
//! refusals, and writing without overwriting.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

// ---------------------------------------------------------------- fixtures

/// The guest's passwd: Debian's base accounts plus the suite's (guest.rs).
const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
alice:x:1000:1000:login user:/tmp:/bin/sh
svc:x:1002:1002:demo service:/nonexistent:/usr/sbin/nologin
svc2:x:1003:1003:twin services:/nonexistent:/usr/sbin/nologin
";

/// `ExecStart=` as `systemctl show` prints a command of a unit that is not running.
fn exec_start(path: &str, argv: &str) -> String {
    format!(
        "ExecStart={{ path={path} ; argv[]={argv} ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }}"
    )
}

/// `systemctl show UNIT --property=...` of systemd 252 (no ImportCredential=,
/// which 252 does not have: it prints nothing for it) or 257 (prints it,
/// empty). Properties come in the order of the bus, not of --property.
fn show(version: u32, id: &str, service: &[&str]) -> String {
    let mut lines = vec![
        format!("Id={id}"),
        "LoadState=loaded".to_string(),
        format!("FragmentPath=/etc/systemd/system/{id}"),
        exec_start("/bin/sh", "/bin/sh -c ..."),
    ];
    let mut user = "User=".to_string();
    let mut dynamic = "DynamicUser=no".to_string();
    let mut runtime = "RuntimeDirectory=".to_string();
    let mut state = "StateDirectory=".to_string();
    for setting in service {
        let key = setting.split('=').next().unwrap();
        match key {
            "User" => user = setting.to_string(),
            "DynamicUser" => dynamic = setting.to_string(),
            "RuntimeDirectory" => runtime = setting.to_string(),
            "StateDirectory" => state = setting.to_string(),
            other => panic!("fixture: {other}"),
        }
    }
    lines.extend([user, dynamic, runtime, state, "ConfigurationDirectory=".to_string()]);
    if version >= 257 {
        lines.push("ImportCredential=".to_string());
    }
    lines.join("\n") + "\n"
}

/// `busctl --json=short get-property ... LoadCredential LoadCredentialEncrypted
/// SetCredential SetCredentialEncrypted`.
fn busctl(load: &[(&str, &str)], load_encrypted: &[(&str, &str)], set: &[(&str, &str)]) -> String {
    let pairs = |v: &[(&str, &str)]| {
        let items: Vec<String> = v.iter().map(|(id, p)| format!("[\"{id}\",\"{p}\"]")).collect();
        format!("[{}]", items.join(","))
    };
    let bytes = |v: &[(&str, &str)]| {
        let items: Vec<String> = v
            .iter()
            .map(|(id, data)| {
                let b: Vec<String> = data.bytes().map(|b| b.to_string()).collect();
                format!("[\"{id}\",[{}]]", b.join(","))
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    format!(
        "{{\"type\":\"a(ss)\",\"data\":{}}}\n{{\"type\":\"a(ss)\",\"data\":{}}}\n{{\"type\":\"a(say)\",\"data\":{}}}\n{{\"type\":\"a(say)\",\"data\":[]}}\n",
        pairs(load),
        pairs(load_encrypted),
        bytes(set)
    )
}

/// The suite's units, as systemd reports them.
fn unit(version: u32, name: &str) -> UnitProps {
    let (show_text, bus) = match name {
        "demo.service" => (
            show(version, name, &["User=svc", "RuntimeDirectory=demo"]),
            busctl(&[], &[], &[("api-token", "demo-secret-123")]),
        ),
        "myapp.service" => (
            show(version, name, &["DynamicUser=yes", "StateDirectory=myapp", "RuntimeDirectory=myapp-log"]),
            busctl(&[], &[("api_key", "/etc/credstore.encrypted/api_key.cred")], &[]),
        ),
        "twin-a.service" => (
            show(version, name, &["User=svc2", "RuntimeDirectory=twin-a"]),
            busctl(&[], &[], &[("token", "twin-a-secret")]),
        ),
        "bound.service" => (
            show(version, name, &["User=svc", "RuntimeDirectory=bound"]),
            busctl(&[], &[], &[("token", "bound-secret")]),
        ),
        "plain.service" => (
            show(version, name, &["RuntimeDirectory=plain"]),
            busctl(&[], &[("plain", "/etc/credstore.encrypted/plain.cred")], &[]),
        ),
        other => panic!("no fixture for {other}"),
    };
    let mut props = UnitProps::parse(&show_text).expect("parse systemctl show");
    props.credentials = Credentials::parse_busctl(&bus).expect("parse busctl");
    props
}

const UNITS: &[&str] = &["demo.service", "myapp.service", "twin-a.service", "bound.service", "plain.service"];

/// The guest's files: the two `.cred` sources exist, nothing else does.
fn guest_fs(path: &Path) -> Kind {
    match path.to_str() {
        Some("/etc/credstore.encrypted/api_key.cred" | "/etc/credstore.encrypted/plain.cred") => Kind::File,
        _ => Kind::Missing,
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("guard-from-unit-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn passwd() -> Passwd {
    Passwd::parse(PASSWD)
}

fn gen_with(props: &UnitProps, mode: Mode, probe: &dyn Fn(&Path) -> Kind) -> Generated {
    let passwd = passwd();
    let opts = Options {
        mode,
        passwd: Some(&passwd),
        passwd_path: Path::new("/etc/passwd"),
        probe,
    };
    generate(props, &opts).expect("generate")
}

fn gen(props: &UnitProps) -> Generated {
    gen_with(props, Mode::Enforce, &guest_fs)
}

/// Loads `text` as `guard check DIR --passwd PASSWD` would, with other
/// files beside it; panics with the errors if it does not pass.
fn load_with(text: &str, others: &[(&str, &str)]) -> policy::PolicySet {
    let dir = TempDir::new();
    let passwd = dir.write("passwd", PASSWD);
    let policies = dir.0.join("policies");
    fs::create_dir(&policies).unwrap();
    fs::write(policies.join("generated.toml"), text).unwrap();
    for (name, other) in others {
        fs::write(policies.join(name), other).unwrap();
    }
    match policy::load(&policies, &passwd) {
        Ok(set) => set,
        Err(e) => panic!("generated policy does not load:\n{text}\n{e}"),
    }
}

fn load(text: &str) -> policy::Policy {
    load_with(text, &[]).policies.remove(0)
}

// ---------------------------------------------------------------- parsing

#[test]
fn parses_systemctl_show_of_252_and_257() {
    for version in [252, 257] {
        let props = unit(version, "myapp.service");
        assert_eq!(props.id, "myapp.service");
        assert_eq!(props.load_state, "loaded");
        assert_eq!(props.fragment_path, "/etc/systemd/system/myapp.service");
        assert!(props.dynamic_user);
        assert_eq!(props.user, "");
        assert_eq!(props.state_directory, ["myapp"]);
        assert_eq!(props.runtime_directory, ["myapp-log"]);
        assert!(props.import_credential.is_empty());
        assert_eq!(props.exec_start, ["/bin/sh"]);
        let demo = unit(version, "demo.service");
        assert_eq!(demo.user, "svc");
        assert!(!demo.dynamic_user);
    }
}

#[test]
fn parses_string_arrays_as_systemctl_quotes_them() {
    let props = UnitProps::parse(
        "Id=x.service\nLoadState=loaded\nStateDirectory=a b/c \"with space\"\nImportCredential=\"tls.*\" db\n",
    )
    .unwrap();
    assert_eq!(props.state_directory, ["a", "b/c", "with space"]);
    assert_eq!(props.import_credential, ["tls.*", "db"]);
    assert!(UnitProps::parse("LoadState=loaded\n").is_err(), "no Id=");
}

#[test]
fn parses_several_exec_start_lines() {
    let text = format!("Id=x.service\nLoadState=loaded\n{}\n{}\n", exec_start("/usr/bin/a", "a"), exec_start("/usr/bin/b", "b -x"));
    assert_eq!(UnitProps::parse(&text).unwrap().exec_start, ["/usr/bin/a", "/usr/bin/b"]);
}

#[test]
fn parses_busctl_credentials() {
    let creds = Credentials::parse_busctl(&busctl(
        &[("tls", "/etc/ssl/private/x.key"), ("db", "")],
        &[("api_key", "/etc/credstore.encrypted/api_key.cred")],
        &[("token", "s3cret")],
    ))
    .unwrap();
    assert_eq!(creds.load.len(), 3);
    assert_eq!(creds.load[0].setting(), "LoadCredential=tls:/etc/ssl/private/x.key");
    assert_eq!(creds.load[1].setting(), "LoadCredential=db");
    assert_eq!(creds.load[2].setting(), "LoadCredentialEncrypted=api_key:/etc/credstore.encrypted/api_key.cred");
    assert_eq!(creds.set, ["token"]);
    assert!(creds.set_encrypted.is_empty());
    let err = Credentials::parse_busctl("{\"type\":\"a(ss)\",\"data\":[]}\n").unwrap_err();
    assert!(err.to_string().contains("1 values for the 4 properties"), "{err}");
}

#[test]
fn object_paths_are_escaped_as_systemd_does() {
    assert_eq!(unit_object_path("myapp.service"), "/org/freedesktop/systemd1/unit/myapp_2eservice");
    assert_eq!(unit_object_path("twin-a.service"), "/org/freedesktop/systemd1/unit/twin_2da_2eservice");
    assert_eq!(unit_object_path("0x@1.service"), "/org/freedesktop/systemd1/unit/_30x_401_2eservice");
}

#[test]
fn unit_names_get_service_like_systemctl() {
    assert_eq!(unit_name("myapp"), "myapp.service");
    assert_eq!(unit_name("myapp.service"), "myapp.service");
    assert_eq!(unit_name("getty@tty1"), "getty@tty1.service");
    assert_eq!(unit_name("my.app"), "my.app.service");
    assert_eq!(unit_name("x.socket"), "x.socket");
}

// ---------------------------------------------------------------- generated policies

#[test]
fn every_suite_unit_gives_a_policy_that_passes_guard_check() {
    for version in [252, 257] {
        for name in UNITS {
            let g = gen(&unit(version, name));
            let p = load(&g.text);
            assert_eq!(p.unit, *name);
            assert_eq!(p.mode, Mode::Enforce);
        }
    }
}

#[test]
fn myapp_dynamic_user_encrypted_credential_and_state() {
    let g = gen(&unit(257, "myapp.service"));
    let p = load(&g.text);
    assert!(p.unit_user);
    assert_eq!(p.allow_users, ["@unit"]);
    assert_eq!(p.protect, [PathBuf::from("/var/lib/private/myapp")]);
    assert_eq!(p.setup_only, [PathBuf::from("/etc/credstore.encrypted/api_key.cred")]);
    assert!(g.text.contains("api_key"), "credential IDs are listed");
    assert!(g.text.contains("policies/credential-host-key.toml"));
    assert!(!g.text.lines().any(|l| !l.starts_with('#') && l.contains("credential.secret")), "no host key line");
    assert!(g.text.contains("RuntimeDirectory=myapp-log"), "runtime directory noted");
    assert!(g.text.contains("Requires=guard.service and After=guard.service"));
    assert!(g.warnings.is_empty(), "{:?}", g.warnings);
}

#[test]
fn myapp_policy_loads_beside_the_shipped_host_key_policy() {
    let host_key = include_str!("../../../policies/credential-host-key.toml");
    let set = load_with(&gen(&unit(252, "myapp.service")).text, &[("credential-host-key.toml", host_key)]);
    assert_eq!(set.policies.len(), 2);
}

#[test]
fn static_users_are_named_and_credentials_need_no_line() {
    let demo = load(&gen(&unit(252, "demo.service")).text);
    assert_eq!(demo.allow_users, ["svc"]);
    assert_eq!(demo.allow_uids, [1002]);
    assert_eq!(demo.protect, [PathBuf::from("/run/credentials/demo.service")]);
    assert!(demo.setup_only.is_empty());
    let twin = load(&gen(&unit(257, "twin-a.service")).text);
    assert_eq!(twin.allow_uids, [1003]);
}

#[test]
fn a_unit_without_user_runs_as_root() {
    let g = gen(&unit(257, "plain.service"));
    assert!(g.text.contains("No User=: the unit runs as root"));
    let p = load(&g.text);
    assert_eq!(p.allow_uids, [0]);
    assert_eq!(p.setup_only, [PathBuf::from("/etc/credstore.encrypted/plain.cred")]);
}

#[test]
fn a_user_missing_from_passwd_becomes_the_units_own_user() {
    let mut props = unit(257, "demo.service");
    props.user = "newsvc".to_string();
    let g = gen(&props);
    assert!(g.warnings.iter().any(|w| w.contains("User=newsvc is not in /etc/passwd")), "{:?}", g.warnings);
    assert!(g.text.contains("User=newsvc: not in /etc/passwd"));
    assert_eq!(load(&g.text).allow_users, ["@unit"]);
    props.user = "1234".to_string();
    assert_eq!(load(&gen(&props).text).allow_uids, [1234]);
}

#[test]
fn static_state_directory_is_under_var_lib() {
    let mut props = unit(252, "demo.service");
    props.state_directory = vec!["demo".to_string(), "demo/keys".to_string()];
    let p = load(&gen(&props).text);
    assert_eq!(p.protect, [PathBuf::from("/var/lib/demo"), PathBuf::from("/var/lib/demo/keys")]);
}

#[test]
fn credential_store_sources_are_found_or_explained() {
    let mut props = unit(257, "demo.service");
    props.credentials.load = vec![
        props::LoadCredential { id: "tls".into(), path: String::new(), encrypted: false },
        props::LoadCredential { id: "db".into(), path: "db-password".into(), encrypted: true },
        props::LoadCredential { id: "gone".into(), path: String::new(), encrypted: true },
    ];
    let fs = |p: &Path| match p.to_str() {
        Some("/etc/credstore/tls" | "/run/credstore.encrypted/db-password" | "/usr/lib/credstore/db-password") => Kind::File,
        _ => Kind::Missing,
    };
    let g = gen_with(&props, Mode::Enforce, &fs);
    let p = load(&g.text);
    assert_eq!(
        p.setup_only,
        [
            PathBuf::from("/etc/credstore/tls"),
            PathBuf::from("/run/credstore.encrypted/db-password"),
            PathBuf::from("/usr/lib/credstore/db-password"),
        ]
    );
    assert!(g.text.contains("LoadCredentialEncrypted=gone: systemd takes it from the system's credentials"));
    assert!(g.text.contains("none of these files exists now"));
}

#[test]
fn socket_sources_and_directories() {
    let mut props = unit(257, "demo.service");
    props.credentials.load = vec![
        props::LoadCredential { id: "live".into(), path: "/run/keyd.sock".into(), encrypted: false },
        props::LoadCredential { id: "dir".into(), path: "/etc/myapp/creds".into(), encrypted: false },
    ];
    let fs = |p: &Path| match p.to_str() {
        Some("/run/keyd.sock") => Kind::Socket,
        Some("/etc/myapp/creds") => Kind::Directory,
        _ => Kind::Missing,
    };
    let g = gen_with(&props, Mode::Enforce, &fs);
    assert!(g.text.contains("LoadCredential=live:/run/keyd.sock: an AF_UNIX socket"));
    assert_eq!(load(&g.text).setup_only, [PathBuf::from("/etc/myapp/creds")]);
}

#[test]
fn audit_mode_explains_the_rollout() {
    let g = gen_with(&unit(252, "myapp.service"), Mode::Audit, &guest_fs);
    assert!(g.text.contains("policies/audit-rollout.toml"));
    assert_eq!(load(&g.text).mode, Mode::Audit);
}

#[test]
fn every_setting_is_preceded_by_a_comment() {
    for version in [252, 257] {
        for name in UNITS {
            for mode in [Mode::Enforce, Mode::Audit] {
                let text = gen_with(&unit(version, name), mode, &guest_fs).text;
                let lines: Vec<&str> = text.lines().collect();
                for (i, line) in lines.iter().enumerate() {
                    if line.trim().is_empty() || line.starts_with('#') {
                        continue;
                    }
                    assert!(i > 0 && lines[i - 1].starts_with('#'), "{name}: line {} has no comment above:\n{text}", i + 1);
                }
            }
        }
    }
}

#[test]
fn values_from_systemd_cannot_break_out_of_a_comment() {
    let mut props = unit(252, "demo.service");
    props.fragment_path = "/etc/x\nprotect = [\"/\"]".to_string();
    let text = gen(&props).text;
    assert!(!text.lines().any(|l| l.starts_with("protect = [\"/\"]")), "{text}");
    load(&text);
}

// ---------------------------------------------------------------- refusals

#[test]
fn refuses_a_unit_systemd_does_not_know() {
    let props = UnitProps::parse("Id=nosuch.service\nLoadState=not-found\nUser=\nDynamicUser=no\n").unwrap();
    let passwd = passwd();
    let opts = Options { mode: Mode::Enforce, passwd: Some(&passwd), passwd_path: Path::new("/etc/passwd"), probe: &guest_fs };
    let err = generate(&props, &opts).unwrap_err().to_string();
    assert!(err.contains("nosuch.service not found"), "{err}");
    assert!(err.contains("systemctl daemon-reload"), "{err}");
}

#[test]
fn refuses_a_masked_unit() {
    let props = UnitProps::parse("Id=myapp.service\nLoadState=masked\nFragmentPath=/dev/null\n").unwrap();
    let err = generate::check_loaded(&props).unwrap_err().to_string();
    assert!(err.contains("myapp.service is masked"), "{err}");
    assert!(err.contains("systemctl unmask myapp.service"), "{err}");
}

#[test]
fn refuses_other_unit_types() {
    let props = UnitProps::parse("Id=myapp.socket\nLoadState=loaded\n").unwrap();
    let err = generate::check_loaded(&props).unwrap_err().to_string();
    assert!(err.contains(".socket unit"), "{err}");
}

#[test]
fn refuses_a_bad_mode() {
    assert_eq!(parse_mode("audit"), Ok(Mode::Audit));
    let err = parse_mode("enforcing").unwrap_err();
    assert!(err.contains("\"enforce\"") && err.contains("\"audit\""), "{err}");
    assert!(parse_mode("Enforce").is_err());
}

#[test]
fn validate_reports_an_invalid_text() {
    let dir = TempDir::new();
    let passwd = dir.write("passwd", PASSWD);
    let bad = "unit = \"x.service\"\nmode = \"enforce\"\nallow_users = [\"nosuchuser\"]\nprotect = [\"/etc/x\"]\n";
    let errors = validate(bad, "x.service", &passwd).unwrap().unwrap_err();
    assert!(errors.to_string().contains("nosuchuser"), "{errors}");
    let good = gen(&unit(252, "myapp.service")).text;
    assert!(validate(&good, "myapp.service", &passwd).unwrap().is_ok());
}

// ---------------------------------------------------------------- writing

#[test]
fn writes_a_new_file_and_leaves_no_temporary() {
    let dir = TempDir::new();
    let path = dir.0.join("myapp.toml");
    write_policy(&path, "x = 1\n", Overwrite::No).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "x = 1\n");
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1, "only the file itself");
}

#[test]
fn refuses_to_overwrite_without_a_terminal() {
    let dir = TempDir::new();
    let path = dir.write("myapp.toml", "old\n");
    let err = write_policy(&path, "new\n", Overwrite::No).unwrap_err().to_string();
    assert!(err.contains("--force"), "{err}");
    assert!(err.contains("myapp.toml exists"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
}

#[test]
fn asks_before_overwriting_and_no_is_the_default() {
    let dir = TempDir::new();
    let path = dir.write("myapp.toml", "old\n");
    let mut asked = Vec::new();
    let mut no = |q: &str| {
        asked.push(q.to_string());
        Ok(false)
    };
    assert!(write_policy(&path, "new\n", Overwrite::Ask(&mut no)).is_err());
    assert_eq!(asked, [format!("overwrite {}? [y/N] ", path.display())]);
    assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
    let mut yes = |_: &str| Ok(true);
    write_policy(&path, "new\n", Overwrite::Ask(&mut yes)).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
}

#[test]
fn force_overwrites() {
    let dir = TempDir::new();
    let path = dir.write("myapp.toml", "old\n");
    write_policy(&path, "new\n", Overwrite::Yes).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
}

#[test]
fn readme_example_is_what_the_command_writes() {
    let readme = include_str!("../../../README.md");
    let text = gen(&unit(257, "myapp.service")).text;
    assert!(readme.contains(&format!("```toml\n{text}```")), "README's myapp.service example differs from:\n{text}");
}

#[test]
fn set_credential_is_named_with_the_better_ways() {
    let g = gen(&unit(257, "demo.service"));
    let w = g.warnings.iter().find(|w| w.contains("SetCredential=api-token")).unwrap_or_else(|| panic!("{:?}", g.warnings));
    assert!(w.contains("plain text") && w.contains("systemctl cat demo.service"), "{w}");
    assert!(w.contains("SetCredentialEncrypted=") && w.contains("LoadCredential="), "{w}");
    assert!(!gen(&unit(257, "myapp.service")).warnings.iter().any(|w| w.contains("SetCredential")));
}
