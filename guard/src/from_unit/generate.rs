//! Turns what systemd knows of a unit ([`UnitProps`]) into the text of a
//! policy file: every setting with the comment that says where it came from.
//!
//! Pure except for `Options::probe`, which says what is at a path (the
//! credential sources and stores); the command passes the real filesystem.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::props::{LoadCredential, UnitProps};
use crate::policy::{check_protect_path, check_unit, Mode, Passwd, UNIT_USER};

/// systemd's credential host key: in `policies/credential-host-key.toml`
/// (`unit = "*"`), never in one unit's policy.
pub const HOST_KEY: &str = "/var/lib/systemd/credential.secret";
/// Where systemd looks for `LoadCredential=ID` without an absolute path,
/// after the system's own credentials (systemd 252 and 257).
const CREDSTORES: &[&str] = &["/etc/credstore", "/run/credstore", "/usr/local/lib/credstore", "/usr/lib/credstore"];
/// ... and, for `LoadCredentialEncrypted=`, first these.
const CREDSTORES_ENCRYPTED: &[&str] = &[
    "/etc/credstore.encrypted",
    "/run/credstore.encrypted",
    "/usr/local/lib/credstore.encrypted",
    "/usr/lib/credstore.encrypted",
];

/// What is at a path, as far as a credential source goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    File,
    Directory,
    Socket,
    /// A device, a FIFO, or a path that cannot be checked.
    Other,
}

/// What is at `path` on this machine (following symlinks, as systemd does).
pub fn probe(path: &Path) -> Kind {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Kind::File,
        Ok(m) if m.is_dir() => Kind::Directory,
        Ok(m) if m.file_type().is_socket() => Kind::Socket,
        Ok(_) => Kind::Other,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kind::Missing,
        Err(_) => Kind::Other,
    }
}

pub struct Options<'a> {
    pub mode: Mode,
    /// The passwd file `guard check` will use, and its path (for messages).
    pub passwd: Option<&'a Passwd>,
    pub passwd_path: &'a Path,
    pub probe: &'a dyn Fn(&Path) -> Kind,
}

/// A generated policy and what the user should hear about it.
#[derive(Debug)]
pub struct Generated {
    pub text: String,
    /// For stderr: choices a reviewer must look at.
    pub warnings: Vec<String>,
}

/// The policy text for a loaded unit. Refuses units that are not loaded.
/// `SetCredential=` keeps the secret in plain text where any local user can
/// read it: in the unit file (usually world-readable: `systemctl cat`) and
/// in the unit's `SetCredential` property over D-Bus. guard protects the
/// credential systemd writes, not those copies.
pub fn set_credential_warning(props: &UnitProps) -> Option<String> {
    if props.credentials.set.is_empty() {
        return None;
    }
    let file = if props.fragment_path.is_empty() { "the unit file".to_string() } else { props.fragment_path.clone() };
    Some(format!(
        "{}: SetCredential={} keeps the secret in plain text in {file} (world-readable: `systemctl cat {}`) and in the unit's          SetCredential D-Bus property, where guard cannot protect it; use SetCredentialEncrypted= (`systemd-creds encrypt`)          or LoadCredential=ID:/etc/credstore/ID with that file in this policy's setup_only",
        props.id,
        props.credentials.set.join(", SetCredential="),
        props.id
    ))
}

pub fn generate(props: &UnitProps, opts: &Options<'_>) -> Result<Generated> {
    check_loaded(props)?;
    let mut out = Writer::default();
    header(props, &mut out);
    out.block(&[format!("Id={}", props.id)], "unit", &toml_str(&props.id));
    mode(opts.mode, &mut out);
    users(props, opts, &mut out);
    credentials_note(props, &mut out);
    protect(props, &mut out);
    setup_only(props, opts, &mut out);
    notes(props, &mut out);
    if let Some(w) = set_credential_warning(props) {
        out.warnings.push(w);
    }
    Ok(Generated {
        text: out.text,
        warnings: out.warnings,
    })
}

/// A unit systemd could not load has no settings to read.
pub fn check_loaded(props: &UnitProps) -> Result<()> {
    let unit = &props.id;
    match props.load_state.as_str() {
        "loaded" => {}
        "not-found" => bail!(
            "unit {unit} not found (LoadState=not-found): systemd has no unit file for it; \
             check the name (`systemctl list-unit-files`), or install the unit and run `systemctl daemon-reload`"
        ),
        "masked" => bail!(
            "unit {unit} is masked (LoadState=masked): systemd shows no settings for a masked unit; \
             `systemctl unmask {unit}` first, or write the policy by hand"
        ),
        other => bail!(
            "unit {unit} is not loaded (LoadState={other}): systemd could not read its settings; \
             see `systemctl status {unit}`, fix the unit file and run `systemctl daemon-reload`"
        ),
    }
    if let Err((message, fix)) = check_unit(unit) {
        bail!("unit \"{unit}\" {message}; {fix}");
    }
    if !unit.ends_with(".service") {
        bail!("{unit} is not a .service: only a service has the settings (User=, credentials, StateDirectory=) this command reads; write its policy by hand");
    }
    Ok(())
}

/// Accumulates the text: comment blocks, each ending in one setting.
#[derive(Default)]
struct Writer {
    text: String,
    warnings: Vec<String>,
}

impl Writer {
    fn comment(&mut self, lines: &[String]) {
        for line in lines {
            self.text.push_str("# ");
            self.text.push_str(&one_line(line));
            self.text.push('\n');
        }
    }

    fn blank(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// A comment block then `key = value`, set off by blank lines.
    fn block(&mut self, why: &[String], key: &str, value: &str) {
        self.blank();
        self.comment(why);
        self.text.push_str(&format!("{key} = {value}\n"));
    }

    /// A comment block with no setting.
    fn note(&mut self, lines: &[String]) {
        self.blank();
        self.comment(lines);
    }
}

/// Values from systemd go into comments: no line breaks or control characters.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A TOML string (basic or literal, as `toml` picks; unit names with `\xNN` stay intact).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_array(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", items.join(", "))
}

fn header(props: &UnitProps, out: &mut Writer) {
    let mut lines = vec![
        format!("Policy for {}, written by `guard policy from-unit` from what systemd reports", props.id),
        "for the unit (`systemctl show`, and `busctl` for its credential settings).".to_string(),
    ];
    if !props.fragment_path.is_empty() {
        lines.push(format!("Unit file: {} (FragmentPath=).", props.fragment_path));
    }
    lines.push("Review it, check it with `guard check`, then install it in guard's policy directory.".to_string());
    out.comment(&lines);
}

fn mode(mode: Mode, out: &mut Writer) {
    let why = match mode {
        Mode::Enforce => vec!["enforce: opens from outside the unit, or by users not allowed below, are refused".to_string(),
            "(EACCES) and recorded. Roll out with `--mode audit` first to see what would be refused.".to_string()],
        Mode::Audit => vec![
            "audit (--mode audit): nothing is refused; every open from outside the unit is only".to_string(),
            "recorded. Watch the records (`guard events --follow`) for a while, then switch to".to_string(),
            "mode = \"enforce\" (see policies/audit-rollout.toml).".to_string(),
        ],
    };
    out.block(&why, "mode", &toml_str(mode.as_str()));
}

fn users(props: &UnitProps, opts: &Options<'_>, out: &mut Writer) {
    let passwd = opts.passwd_path.display();
    let (why, value) = if props.dynamic_user {
        let mut why = vec![
            "DynamicUser=yes: systemd picks the unit's UID (61184-65519) at each start;".to_string(),
            format!("\"{UNIT_USER}\" is that UID, learned by the kernel when systemd switches to it."),
        ];
        if !props.user.is_empty() {
            why.push(format!("(User={} only names the dynamic user.)", props.user));
        }
        (why, toml_array(&[UNIT_USER.to_string()]))
    } else if props.user.is_empty() {
        let why = vec![
            "No User=: the unit runs as root. Only root inside the unit may open the files".to_string(),
            "(a root shell elsewhere is still refused). A root service can run systemd's".to_string(),
            "executor itself: see \"A root service is its own setup's peer\" in README.md, Limits.".to_string(),
        ];
        let root = match opts.passwd.and_then(|p| p.uid("root")) {
            Some(_) => toml_str("root"),
            None => "0".to_string(),
        };
        (why, format!("[{root}]"))
    } else if let Ok(uid) = props.user.parse::<u32>() {
        (vec![format!("User={uid}: a numeric UID.")], format!("[{uid}]"))
    } else if opts.passwd.and_then(|p| p.uid(&props.user)).is_some() {
        (vec![format!("User={}: the unit's static user (found in {passwd}).", props.user)], toml_array(std::slice::from_ref(&props.user)))
    } else {
        out.warnings.push(format!(
            "User={} is not in {passwd} (created at the unit's first start, by sysusers or DynamicUser=?): \
             allowing \"{UNIT_USER}\", the UID systemd runs the unit as; write the user's name or UID instead once it exists",
            props.user
        ));
        let why = vec![
            format!("User={}: not in {passwd} (yet), so its name cannot be checked now.", props.user),
            format!("\"{UNIT_USER}\" is the UID systemd runs the unit as, whatever it turns out to be."),
            "Write the name or UID instead once the user exists.".to_string(),
        ];
        (why, toml_array(&[UNIT_USER.to_string()]))
    };
    out.block(&why, "allow_users", &value);
}

/// Every credential ID the unit gets, by setting.
fn credential_ids(props: &UnitProps) -> Vec<String> {
    let c = &props.credentials;
    let mut ids: Vec<String> = Vec::new();
    let mut add = |id: String| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    for l in &c.load {
        add(l.id.clone());
    }
    for id in c.set.iter().chain(&c.set_encrypted) {
        add(id.clone());
    }
    ids
}

fn credentials_note(props: &UnitProps, out: &mut Writer) {
    let ids = credential_ids(props);
    let mut lines = Vec::new();
    if ids.is_empty() && props.credentials == Default::default() && props.import_credential.is_empty() {
        lines.push("The unit has no credentials (no LoadCredential=, SetCredential= or ImportCredential=).".to_string());
    } else {
        let mut settings = Vec::new();
        let c = &props.credentials;
        if c.load.iter().any(|l| !l.encrypted) {
            settings.push("LoadCredential=");
        }
        if c.load.iter().any(|l| l.encrypted) {
            settings.push("LoadCredentialEncrypted=");
        }
        if !c.set.is_empty() {
            settings.push("SetCredential=");
        }
        if !c.set_encrypted.is_empty() {
            settings.push("SetCredentialEncrypted=");
        }
        if !props.import_credential.is_empty() {
            settings.push("ImportCredential=");
        }
        let listed = if ids.is_empty() { String::new() } else { format!(": {}", ids.join(", ")) };
        lines.push(format!("Credentials ({}) in /run/credentials/{}/{listed}.", settings.join(", "), props.id));
        lines.push("They need no line: guard protects every credential systemd writes for a unit".to_string());
        lines.push("that has a policy, from the instant systemd creates it.".to_string());
        if !props.import_credential.is_empty() {
            lines.push(format!(
                "ImportCredential={} imports system credentials and credential-store files by glob;",
                props.import_credential.join(" ")
            ));
            lines.push("their sources are not confined here (a glob can match credentials other units use).".to_string());
        }
    }
    out.note(&lines);
}

fn protect(props: &UnitProps, out: &mut Writer) {
    let mut why = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for name in &props.state_directory {
        let path = if props.dynamic_user {
            format!("/var/lib/private/{name}")
        } else {
            format!("/var/lib/{name}")
        };
        if let Err((message, _)) = check_protect_path(&path) {
            out.warnings.push(format!("StateDirectory={name}: \"{path}\" {message}; left out"));
            continue;
        }
        if props.dynamic_user {
            why.push(format!("StateDirectory={name} with DynamicUser=yes: systemd keeps it in {path}"));
            why.push(format!("  (/var/lib/{name} is a symlink to it)."));
        } else {
            why.push(format!("StateDirectory={name}: {path}, the unit's state."));
        }
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        let path = format!("/run/credentials/{}", props.id);
        why.push("No StateDirectory=, and protect must not be empty: the unit's credentials directory".to_string());
        why.push(format!("{path} (protected anyway; it exists only while the unit runs, so"));
        why.push("`guard check` warns that it does not exist yet). Add the files of the unit's other secrets.".to_string());
        if credential_ids(props).is_empty() && props.import_credential.is_empty() {
            out.warnings.push(format!(
                "{} has no credentials and no StateDirectory=: the policy protects only {path}; add the files that hold its secrets to protect",
                props.id
            ));
        }
        paths.push(path);
    }
    out.block(&why, "protect", &toml_array(&paths));
}

fn setup_only(props: &UnitProps, opts: &Options<'_>, out: &mut Writer) {
    let mut why = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    for cred in &props.credentials.load {
        if Path::new(&cred.path).is_absolute() {
            absolute_source(cred, opts, &mut why, &mut paths, &mut notes);
        } else {
            store_sources(cred, opts, &mut why, &mut paths, &mut notes);
        }
    }
    if !paths.is_empty() {
        out.block(&why, "setup_only", &toml_array(&paths));
    }
    if !notes.is_empty() {
        out.note(&notes);
    }
    let encrypted = props.credentials.load.iter().any(|l| l.encrypted) || !props.credentials.set_encrypted.is_empty();
    if encrypted {
        out.note(&[
            format!("Encrypted credentials are decrypted with systemd's host key {HOST_KEY}"),
            "(or the TPM). Every unit shares that key, so it is not in this unit's policy:".to_string(),
            "policies/credential-host-key.toml (unit = \"*\") confines it to systemd's credential".to_string(),
            "setup of any unit. Install that file once, beside this one.".to_string(),
        ]);
    }
}

/// `LoadCredential=ID:/abs/path`: the file (or directory) itself.
fn absolute_source(cred: &LoadCredential, opts: &Options<'_>, why: &mut Vec<String>, paths: &mut Vec<String>, notes: &mut Vec<String>) {
    let setting = cred.setting();
    if cred.path == HOST_KEY {
        notes.push(format!("{setting}: the host key belongs in policies/credential-host-key.toml; not listed here."));
        return;
    }
    if let Err((message, _)) = check_protect_path(&cred.path) {
        notes.push(format!("{setting}: not listed: \"{}\" {message}.", cred.path));
        return;
    }
    match (opts.probe)(Path::new(&cred.path)) {
        Kind::Socket => {
            notes.push(format!("{setting}: an AF_UNIX socket; systemd connects to it at each start"));
            notes.push("and reads the credential from the service behind it: nothing to confine here.".to_string());
            return;
        }
        Kind::Directory => why.push(format!("{setting}: a directory (each file in it is a credential);")),
        Kind::Missing => why.push(format!("{setting}: does not exist yet (`guard check` warns);")),
        Kind::File | Kind::Other => why.push(format!("{setting}:")),
    }
    why.push(format!("  only systemd's credential setup for this unit may read {}.", cred.path));
    push_unique(paths, &cred.path);
}

/// `LoadCredential=ID` or `ID:name`: systemd searches the system's
/// credentials, then the credential stores.
fn store_sources(cred: &LoadCredential, opts: &Options<'_>, why: &mut Vec<String>, paths: &mut Vec<String>, notes: &mut Vec<String>) {
    let setting = cred.setting();
    let name = if cred.path.is_empty() { &cred.id } else { &cred.path };
    if name.contains('/') || name == "." || name == ".." {
        notes.push(format!("{setting}: \"{name}\" is neither an absolute path nor a credential name; not listed."));
        return;
    }
    let dirs: Vec<&str> = if cred.encrypted {
        CREDSTORES_ENCRYPTED.iter().chain(CREDSTORES).copied().collect()
    } else {
        CREDSTORES.to_vec()
    };
    let candidates: Vec<PathBuf> = dirs.iter().map(|d| Path::new(d).join(name)).collect();
    let found: Vec<&PathBuf> = candidates
        .iter()
        .filter(|p| matches!((opts.probe)(p), Kind::File | Kind::Directory))
        .collect();
    if found.is_empty() {
        notes.push(format!("{setting}: systemd takes it from the system's credentials (/run/credentials/@system/{name}),"));
        notes.push(format!("or else from {name} in {}:", dirs.join(", ")));
        notes.push("none of these files exists now, so nothing is listed. Run this again once it does.".to_string());
        return;
    }
    why.push(format!("{setting}: systemd searches the credential stores for {name}"));
    why.push("  (after the system's own credentials); found, readable only by systemd's setup for this unit:".to_string());
    for path in found {
        let path = path.display().to_string();
        why.push(format!("  {path}"));
        push_unique(paths, &path);
    }
    why.push("  A unit without a policy that loads the same name from the store would be refused it.".to_string());
}

fn push_unique(paths: &mut Vec<String>, path: &str) {
    if !paths.iter().any(|p| p == path) {
        paths.push(path.to_string());
    }
}

fn notes(props: &UnitProps, out: &mut Writer) {
    let mut lines = Vec::new();
    for name in &props.configuration_directory {
        lines.push(format!("ConfigurationDirectory={name}: /etc/{name} is not protected; add it to protect if it holds secrets."));
    }
    for name in &props.runtime_directory {
        lines.push(format!("RuntimeDirectory={name}: /run/{name} is not protected; add it to protect if it holds secrets."));
    }
    if let Some(program) = props.exec_start.first() {
        lines.push(format!("ExecStart= runs {program}. To refuse other programs started inside the unit (a shell,"));
        lines.push("a helper), add executables = [\"/path/of/the/service/binary\"] (see policies/README.md).".to_string());
    }
    lines.push("Start order: give the unit Requires=guard.service and After=guard.service, so that".to_string());
    lines.push("it never starts unprotected. (Requires= also restarts it with guard.service; the kernel".to_string());
    lines.push("keeps enforcing while guard's agent is down, so Wants= is enough once guard runs.)".to_string());
    out.note(&lines);
}
