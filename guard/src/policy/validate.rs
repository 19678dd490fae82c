//! What the values of one policy file mean: unit name syntax, mode, users,
//! paths, alert limits. Turns a [`RawPolicy`] into a [`Policy`], reporting
//! every problem as a [`Diagnostic`]. Checks across files are in `mod.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{closest, Diagnostic, Source};
use super::passwd::Passwd;
use super::types::{RawAlerts, RawPolicy, RawUser};
use super::{Mode, Policy, DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SEC, MAX_RATE};

/// Largest valid UID: 4294967295 is (uid_t)-1, "no user".
pub const MAX_UID: i64 = u32::MAX as i64 - 1;
/// Longest path the kernel accepts (PATH_MAX, less the terminating NUL).
const MAX_PATH_LEN: usize = 4095;
/// Longest unit name systemd accepts (UNIT_NAME_MAX less the NUL).
const MAX_UNIT_LEN: usize = 255;
/// Unit types whose processes guard can tell apart by cgroup.
const UNIT_SUFFIXES: &[&str] = &[".service", ".scope"];
/// The other unit types, which run no processes of their own.
const OTHER_UNIT_TYPES: &[&str] = &[
    "socket",
    "timer",
    "target",
    "path",
    "mount",
    "automount",
    "swap",
    "device",
    "slice",
];
/// Pseudo filesystems: what is below them is made up by the kernel.
const PSEUDO_FS: &[(&str, &str)] = &[("/proc", "procfs"), ("/sys", "sysfs"), ("/dev", "devtmpfs")];
/// `unit = "*"`: a policy for systemd's setup of every unit.
pub const ANY_UNIT: &str = "*";
/// `allow_users` entry for the UID systemd runs the unit as (any `User=`,
/// `DynamicUser=`'s pick of the moment).
pub const UNIT_USER: &str = "@unit";
/// UIDs systemd hands to DynamicUser= units at run time.
const DYNAMIC_UIDS: std::ops::RangeInclusive<u32> = 61184..=65519;

/// Where user names are looked up.
pub(crate) struct Users<'a> {
    pub path: &'a Path,
    /// The parsed file, or why it could not be read.
    pub passwd: Result<&'a Passwd, &'a str>,
}

/// The outcome for one file: the policy if every field is valid, and the
/// valid parts that checks across files need even when others are not.
pub(crate) struct Validated {
    pub policy: Option<Policy>,
    pub unit: Option<Spanned<String>>,
    /// Valid `protect` entries with their index in the file.
    pub protect: Vec<(usize, Spanned<PathBuf>)>,
}

pub(crate) fn validate(
    raw: RawPolicy,
    id: u32,
    name: &str,
    users: &Users<'_>,
    src: &Source,
    diags: &mut Vec<Diagnostic>,
) -> Validated {
    let errors_before = diags.iter().filter(|d| d.is_error()).count();

    let any_unit = raw.unit.as_ref().is_some_and(|u| u.get_ref() == ANY_UNIT);
    let unit = raw.unit.filter(|unit| match if any_unit { Ok(()) } else { check_unit(unit.get_ref()) } {
        Ok(()) => true,
        Err((message, fix)) => {
            diags.push(src.error(&unit.span(), "unit", message, fix));
            false
        }
    });

    let mode = raw.mode.and_then(|mode| match mode.get_ref().as_str() {
        "enforce" => Some(Mode::Enforce),
        "audit" => Some(Mode::Audit),
        other => {
            let message = format!(
                "unknown mode \"{other}\"; the modes are \"enforce\" (deny with EACCES) and \"audit\" (allow and record)"
            );
            let fix = did_you_mean(other, ["enforce", "audit"], "modes", "write mode = \"enforce\" or mode = \"audit\"");
            diags.push(src.error(&mode.span(), "mode", message, fix));
            None
        }
    });

    let keep_cores = match raw.core_dumps.as_ref().map(|c| (c, c.get_ref().as_str())) {
        None | Some((_, "refuse")) => Some(false),
        Some((c, "keep")) if any_unit => {
            diags.push(src.error(
                &c.span(),
                "core_dumps",
                format!("a policy for every unit (unit = \"{ANY_UNIT}\") has no processes whose cores it could keep"),
                "remove `core_dumps`, or name one unit (unit = \"myapp.service\") to keep its cores",
            ));
            None
        }
        Some((_, "keep")) => Some(true),
        Some((c, other)) => {
            let message = format!(
                "unknown value \"{other}\"; core_dumps is \"refuse\" (the default: a crash of the unit's process leaves no core) or \"keep\" (a core written to a file core_pattern names, readable only by the unit and its allowed users)"
            );
            let fix = did_you_mean(other, ["refuse", "keep"], "values", "write core_dumps = \"refuse\" or core_dumps = \"keep\"");
            diags.push(src.error(&c.span(), "core_dumps", message, fix));
            None
        }
    };

    let allowed = raw
        .allow_users
        .as_ref()
        .and_then(|list| check_users(list, users, src, diags));

    let protect: Vec<(usize, Spanned<PathBuf>)> = match &raw.protect {
        Some(list) => check_protect(list, "protect", src, diags),
        None => Vec::new(),
    };
    let setup_only: Vec<(usize, Spanned<PathBuf>)> = match &raw.setup_only {
        Some(list) => check_protect(list, "setup_only", src, diags),
        None => Vec::new(),
    };
    let executables = match &raw.executables {
        Some(list) => check_executables(list, src, diags),
        None => Vec::new(),
    };
    if any_unit {
        // Only systemd's setup of every unit: nothing else belongs here.
        for (present, field, span) in [
            (raw.allow_users.is_some(), "allow_users", raw.allow_users.as_ref().map(|x| x.span())),
            (raw.protect.is_some(), "protect", raw.protect.as_ref().map(|x| x.span())),
            (raw.executables.is_some(), "executables", raw.executables.as_ref().map(|x| x.span())),
            (raw.cgroup.is_some(), "cgroup", raw.cgroup.as_ref().map(|x| x.span())),
        ] {
            if present {
                diags.push(src.error(
                    &span.unwrap_or(0..0),
                    field,
                    format!("a policy for every unit (unit = \"{ANY_UNIT}\") has only setup_only files, which systemd's setup of any unit may read and nothing else may"),
                    format!("remove `{field}`, or name one unit (unit = \"myapp.service\") to confine files to its processes"),
                ));
            }
        }
        if raw.setup_only.is_none() {
            diags.push(src.error(
                &(0..0),
                "setup_only",
                format!("required field is missing: unit = \"{ANY_UNIT}\" confines files to systemd's credential setup"),
                "add setup_only = [\"/var/lib/systemd/credential.secret\"] (the host key)",
            ));
        }
    }

    let cgroup = raw
        .cgroup
        .filter(|cgroup| match check_cgroup(cgroup.get_ref()) {
            Ok(()) => true,
            Err((message, fix)) => {
                diags.push(src.error(&cgroup.span(), "cgroup", message, fix));
                false
            }
        });
    if let (Some(cgroup), Some(unit)) = (&cgroup, &unit) {
        if !cgroup.get_ref().split('/').any(|c| c == unit.get_ref()) {
            diags.push(src.warning(
                &cgroup.span(),
                "cgroup",
                format!(
                    "\"{}\" does not contain the unit name \"{}\"; a unit's cgroup normally ends in it (e.g. /system.slice/{})",
                    cgroup.get_ref(),
                    unit.get_ref(),
                    unit.get_ref()
                ),
            ));
        }
    }

    let (rate_per_sec, rate_burst) = check_alerts(raw.alerts.as_ref(), src, diags);

    let errors_now = diags.iter().filter(|d| d.is_error()).count();
    let allowed = if any_unit { Some((Vec::new(), Vec::new(), false)) } else { allowed };
    let protect_present = raw.protect.is_some() || any_unit;
    let policy = match (&unit, mode, allowed, keep_cores) {
        (Some(unit), Some(mode), Some((allow_uids, allow_users, unit_user)), Some(keep_cores))
            if errors_now == errors_before && protect_present =>
        {
            Some(Policy {
                id,
                name: name.to_string(),
                source: src.path.clone(),
                unit: unit.get_ref().clone(),
                cgroup: cgroup.map(Spanned::into_inner),
                mode,
                allow_uids,
                allow_users,
                unit_user,
                protect: protect.iter().map(|(_, p)| p.get_ref().clone()).collect(),
                setup_only: setup_only.iter().map(|(_, p)| p.get_ref().clone()).collect(),
                executables,
                rate_per_sec,
                rate_burst,
                keep_cores,
            })
        }
        _ => None,
    };
    Validated {
        policy,
        unit,
        protect,
    }
}

/// A unit name as `systemctl` reads its arguments: a name without a unit
/// type suffix ("myapp") means the service ("myapp.service").
pub fn with_unit_suffix(name: &str) -> String {
    let typed = name.rsplit_once('.').is_some_and(|(base, suffix)| {
        !base.is_empty() && (UNIT_SUFFIXES.contains(&format!(".{suffix}").as_str()) || OTHER_UNIT_TYPES.contains(&suffix))
    });
    if typed {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

/// Checks a unit name; on error returns (what is wrong, how to fix it).
pub(crate) fn check_unit(name: &str) -> Result<(), (String, String)> {
    let guess = guess_unit(name);
    let did_you_mean = || {
        match &guess {
        Some(g) if g.contains('\\') => format!(
            "did you mean '{g}'? systemd escapes other characters as \\xNN (see systemd-escape(1)); \
             write it as a TOML 'literal string' so that the backslash stays"
        ),
        Some(g) => format!("did you mean \"{g}\"?"),
        None => "name the systemd unit whose processes may open the files, e.g. unit = \"myapp.service\"".to_string(),
    }
    };
    if name.is_empty() {
        return Err(("is empty".to_string(), did_you_mean()));
    }
    let bad: Vec<String> = dedup(
        name.chars()
            .filter(|&c| !unit_char(c))
            .map(|c| format!("{c:?}")),
    );
    if !bad.is_empty() {
        return Err((
            format!(
                "contains {} not allowed in unit names (allowed: A-Z a-z 0-9 : _ . \\ @ -)",
                bad.join(", ")
            ),
            did_you_mean(),
        ));
    }
    if name.starts_with('.') {
        return Err(("starts with '.'".to_string(), did_you_mean()));
    }
    if name.len() > MAX_UNIT_LEN {
        return Err((
            format!(
                "is {} bytes long; systemd unit names are at most {MAX_UNIT_LEN}",
                name.len()
            ),
            "use the unit's real (shorter) name, as `systemctl list-units` shows it".to_string(),
        ));
    }
    if UNIT_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Ok(());
    }
    let suffix = name.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
    if UNIT_SUFFIXES
        .iter()
        .any(|s| s[1..] == suffix.to_lowercase())
    {
        return Err((
            format!("unit type \".{suffix}\" must be lowercase"),
            did_you_mean(),
        ));
    }
    if OTHER_UNIT_TYPES.contains(&suffix) {
        return Err((
            format!(
                "names a .{suffix} unit; guard confines files to the processes of one .service or .scope unit, and a .{suffix} unit runs none of its own"
            ),
            format!("name the unit that runs the processes: {}", did_you_mean()),
        ));
    }
    Err((
        "does not end in \".service\" or \".scope\"".to_string(),
        did_you_mean(),
    ))
}

fn unit_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ":_.\\@-".contains(c)
}

/// The closest valid unit name to what was written, if there is one.
fn guess_unit(name: &str) -> Option<String> {
    let trimmed = name.trim().trim_start_matches('.');
    let mut escaped = String::new();
    for c in trimmed.chars() {
        if unit_char(c) {
            escaped.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                escaped.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    let (base, suffix) = match escaped.rsplit_once('.') {
        Some((base, suffix)) => match suffix.to_lowercase().as_str() {
            "scope" => (base, "scope"),
            s if s == "service" || OTHER_UNIT_TYPES.contains(&s) => (base, "service"),
            _ => (escaped.as_str(), "service"),
        },
        None => (escaped.as_str(), "service"),
    };
    let guess = format!("{base}.{suffix}");
    let plausible = !base.is_empty() && guess.len() <= MAX_UNIT_LEN && guess != name;
    plausible.then_some(guess)
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Resolves `allow_users`; returns (uids, entries as written, whether
/// `"@unit"` is among them) if all are valid.
fn check_users(
    list: &Spanned<Vec<Option<Spanned<RawUser>>>>,
    users: &Users<'_>,
    src: &Source,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Vec<u32>, Vec<String>, bool)> {
    if list.get_ref().is_empty() {
        diags.push(src.error(
            &list.span(),
            "allow_users",
            "is empty: nobody could open the protected files",
            "list the users that may open them, e.g. allow_users = [\"myapp\"] (names or numeric UIDs)",
        ));
        return None;
    }
    let mut ok = true;
    let mut uids = Vec::new();
    let mut written = Vec::new();
    // uid -> (index, as written), to report duplicates.
    let mut seen: HashMap<u32, (usize, String)> = HashMap::new();
    let mut unit_user: Option<usize> = None;
    for (i, entry) in list.get_ref().iter().enumerate() {
        let Some(entry) = entry else {
            ok = false; // wrong type, reported while decoding
            continue;
        };
        let field = format!("allow_users[{i}]");
        if let RawUser::Name(name) = entry.get_ref() {
            if name == UNIT_USER {
                if let Some(j) = unit_user {
                    diags.push(src.error(&entry.span(), &field, format!("duplicate: \"{UNIT_USER}\" is already allowed by allow_users[{j}]"), "remove one of the two entries"));
                    ok = false;
                }
                unit_user = Some(i);
                written.push(name.clone());
                continue;
            }
            if name.starts_with('@') {
                diags.push(src.error(
                    &entry.span(),
                    &field,
                    format!("\"{name}\" is not a user name, and the only special entry is \"{UNIT_USER}\" (the UID systemd runs the unit as, DynamicUser= included)"),
                    format!("write \"{UNIT_USER}\", a user name without '@', or a numeric UID"),
                ));
                ok = false;
                continue;
            }
        }
        let (uid, shown) = match entry.get_ref() {
            RawUser::Uid(n) => match u32::try_from(*n).ok().filter(|&u| i64::from(u) <= MAX_UID) {
                Some(uid) => (uid, n.to_string()),
                None => {
                    diags.push(src.error(
                        &entry.span(),
                        &field,
                        format!("UID {n} is out of range"),
                        format!(
                            "UIDs are 0 to {MAX_UID} ({} is (uid_t)-1, which means \"no user\")",
                            u32::MAX
                        ),
                    ));
                    ok = false;
                    continue;
                }
            },
            RawUser::Name(name) => match resolve(name, users) {
                Ok(uid) => (uid, format!("\"{name}\"")),
                Err((message, fix)) => {
                    diags.push(src.error(&entry.span(), &field, message, fix));
                    ok = false;
                    continue;
                }
            },
        };
        if let Some((j, first)) = seen.get(&uid) {
            let what = if shown == uid.to_string() {
                format!("UID {uid}")
            } else {
                format!("{shown} (UID {uid})")
            };
            diags.push(src.error(
                &entry.span(),
                &field,
                format!("duplicate: {what} is already allowed by allow_users[{j}] ({first})"),
                "remove one of the two entries",
            ));
            ok = false;
            continue;
        }
        if DYNAMIC_UIDS.contains(&uid) {
            diags.push(src.warning(
                &entry.span(),
                &field,
                format!(
                    "UID {uid} is in the range systemd gives DynamicUser= units at run time ({}-{}); such a UID changes between runs: allow \"{UNIT_USER}\" instead",
                    DYNAMIC_UIDS.start(),
                    DYNAMIC_UIDS.end()
                ),
            ));
        }
        seen.insert(uid, (i, shown));
        uids.push(uid);
        written.push(match entry.get_ref() {
            RawUser::Name(name) => name.clone(),
            RawUser::Uid(n) => n.to_string(),
        });
    }
    ok.then_some((uids, written, unit_user.is_some()))
}

/// Checks `executables`: absolute, normalised paths of regular files.
/// Missing ones are a warning (the package may be installed later; until
/// then nothing opens the policy's files, which is the safe side).
fn check_executables(
    list: &Spanned<Vec<Option<Spanned<String>>>>,
    src: &Source,
    diags: &mut Vec<Diagnostic>,
) -> Vec<PathBuf> {
    if list.get_ref().is_empty() {
        diags.push(src.error(
            &list.span(),
            "executables",
            "is empty: no program could open the protected files",
            "list the service's own binaries, e.g. executables = [\"/usr/bin/myapp\"], or remove the field to allow any program of the unit",
        ));
        return Vec::new();
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for (i, entry) in list.get_ref().iter().enumerate() {
        let Some(entry) = entry else { continue };
        let field = format!("executables[{i}]");
        if let Err((message, fix)) = check_path_shape(entry.get_ref(), "/usr/bin/myapp") {
            diags.push(src.error(&entry.span(), &field, message, fix));
            continue;
        }
        let path = PathBuf::from(entry.get_ref());
        if out.contains(&path) {
            diags.push(src.error(&entry.span(), &field, format!("duplicate: \"{}\" is listed twice", path.display()), "remove one of the two entries"));
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if !m.is_file() => {
                diags.push(src.error(
                    &entry.span(),
                    &field,
                    format!("\"{}\" is not a regular file", path.display()),
                    "name the program file itself (what the unit's ExecStart= runs), not its directory",
                ));
                continue;
            }
            Ok(_) => {}
            Err(e) => diags.push(src.warning(
                &entry.span(),
                &field,
                format!("\"{}\" cannot be read now ({e}); until it exists, no program may open this policy's files", path.display()),
            )),
        }
        out.push(path);
    }
    out
}

fn resolve(name: &str, users: &Users<'_>) -> Result<u32, (String, String)> {
    if name.is_empty() {
        return Err((
            "is an empty user name".to_string(),
            "write a user name (\"myapp\") or a numeric UID without quotes (1002)".to_string(),
        ));
    }
    let passwd = match users.passwd {
        Ok(passwd) => passwd,
        Err(why) => {
            return Err((
                format!(
                    "cannot look up user \"{name}\": cannot read {}: {why}",
                    users.path.display()
                ),
                "write the numeric UID instead, or pass the right passwd file with --passwd"
                    .to_string(),
            ))
        }
    };
    if let Some(uid) = passwd.uid(name) {
        return Ok(uid);
    }
    let message = format!("user \"{name}\" does not exist in {}", users.path.display());
    let fix = if let Ok(uid) = name.trim().parse::<u32>() {
        format!("to allow UID {uid}, write it as a number without quotes: {uid}")
    } else if let Some(c) = closest(name, passwd.names()) {
        format!("did you mean \"{c}\"?")
    } else {
        "create the user first, write its numeric UID instead, or pass the passwd file that has it with --passwd"
            .to_string()
    };
    Err((message, fix))
}

/// Checks `protect`; returns the valid paths (even if others are not).
fn check_protect(
    list: &Spanned<Vec<Option<Spanned<String>>>>,
    name: &str,
    src: &Source,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(usize, Spanned<PathBuf>)> {
    if list.get_ref().is_empty() {
        diags.push(src.error(
            &list.span(),
            name,
            "is empty: the policy would protect nothing",
            format!("list the files or directories to confine, e.g. {name} = [\"/etc/myapp/tls.key\"]"),
        ));
        return Vec::new();
    }
    let mut valid: Vec<(usize, Spanned<PathBuf>)> = Vec::new();
    for (i, entry) in list.get_ref().iter().enumerate() {
        let Some(entry) = entry else { continue };
        let field = format!("{name}[{i}]");
        if let Err((message, fix)) = check_protect_path(entry.get_ref()) {
            diags.push(src.error(&entry.span(), &field, message, fix));
            continue;
        }
        let path = PathBuf::from(entry.get_ref());
        if let Some((j, _)) = valid.iter().find(|(_, p)| *p.get_ref() == path) {
            diags.push(src.error(
                &entry.span(),
                &field,
                format!(
                    "duplicate: \"{}\" is already listed as {name}[{j}]",
                    path.display()
                ),
                "remove one of the two entries",
            ));
            continue;
        }
        if let Some((j, outer)) = valid.iter().find(|(_, p)| path.starts_with(p.get_ref())) {
            diags.push(src.warning(
                &entry.span(),
                &field,
                format!(
                    "\"{}\" is inside {name}[{j}] (\"{}\"), which already covers it; the entry is redundant",
                    path.display(),
                    outer.get_ref().display()
                ),
            ));
        }
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => diags.push(src.warning(
                &entry.span(),
                &field,
                format!(
                    "\"{}\" does not exist (yet); fine if it is created later, as /run/credentials/UNIT is when the unit starts",
                    path.display()
                ),
            )),
            Err(e) => diags.push(src.warning(
                &entry.span(),
                &field,
                format!("cannot check whether \"{}\" exists: {e}", path.display()),
            )),
        }
        valid.push((i, Spanned::new(entry.span(), path)));
    }
    valid
}

pub(crate) fn check_protect_path(path: &str) -> Result<(), (String, String)> {
    check_path_shape(path, "/etc/myapp/tls.key")?;
    if path == "/" {
        return Err((
            "is the root directory: every file on the system would be confined to one unit"
                .to_string(),
            "list the specific files or directories that hold the secrets".to_string(),
        ));
    }
    for (root, fs) in PSEUDO_FS {
        if Path::new(path).starts_with(root) {
            return Err((
                format!(
                    "is under {root}, a pseudo filesystem ({fs}): its entries are made up by the kernel on the fly, not stored files, so they cannot be confined reliably, and confining them could break the system"
                ),
                "protect the file where the secret is stored (e.g. below /etc, /var/lib or /run)".to_string(),
            ));
        }
    }
    Ok(())
}

fn check_cgroup(path: &str) -> Result<(), (String, String)> {
    check_path_shape(path, "/system.slice/myapp.service")?;
    if path == "/" {
        return Err((
            "is the root cgroup, which holds every process".to_string(),
            "give the unit's own cgroup, e.g. cgroup = \"/system.slice/myapp.service\", or leave cgroup out".to_string(),
        ));
    }
    if let Some(rest) = path.strip_prefix("/sys/fs/cgroup/") {
        return Err((
            "includes the cgroup2 mount point; the path is relative to the cgroup2 root"
                .to_string(),
            format!("did you mean \"/{rest}\"?"),
        ));
    }
    Ok(())
}

/// Absolute and normalised: starts with '/', no '.' or '..' components,
/// no '//', no trailing '/'.
fn check_path_shape(path: &str, example: &str) -> Result<(), (String, String)> {
    if path.is_empty() {
        return Err((
            "is empty".to_string(),
            format!("give an absolute path, e.g. \"{example}\""),
        ));
    }
    if path.contains('\0') {
        return Err((
            "contains a NUL character".to_string(),
            "remove the \\u0000 from the path".to_string(),
        ));
    }
    if !path.starts_with('/') {
        return Err((
            "is not absolute (it must start with '/')".to_string(),
            format!("did you mean \"{}\"?", normalise(&format!("/{path}"))),
        ));
    }
    let mut problems = Vec::new();
    if path.len() > 1 && path.ends_with('/') {
        problems.push("ends with '/'");
    }
    if path.contains("//") {
        problems.push("contains '//'");
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.contains(&".") {
        problems.push("has a '.' component");
    }
    if parts.contains(&"..") {
        problems.push("has a '..' component");
    }
    if !problems.is_empty() {
        let normal = normalise(path);
        let caveat = if parts.contains(&"..") {
            " (check it: '..' after a symbolic link leads somewhere else)"
        } else {
            ""
        };
        return Err((
            format!("is not normalised: it {}", problems.join(" and ")),
            format!("write it as \"{normal}\"{caveat}"),
        ));
    }
    if path.len() > MAX_PATH_LEN {
        return Err((
            format!(
                "is {} bytes long; the kernel's limit is {MAX_PATH_LEN}",
                path.len()
            ),
            "use a shorter path".to_string(),
        ));
    }
    Ok(())
}

/// Lexical normalisation: drops empty and '.' components, applies '..'.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `[alerts]` limits, with defaults.
fn check_alerts(
    alerts: Option<&Spanned<RawAlerts>>,
    src: &Source,
    diags: &mut Vec<Diagnostic>,
) -> (u32, u32) {
    let alerts = alerts.map(|a| a.get_ref());
    let rate = alerts.and_then(|a| a.rate_per_sec.as_ref());
    let burst = alerts.and_then(|a| a.burst.as_ref());
    let mut get = |value: Option<&Spanned<i64>>, field: &str, min: i64, default: u32, fix: &str| {
        match value {
            None => default,
            Some(v) if (min..=i64::from(MAX_RATE)).contains(v.get_ref()) => *v.get_ref() as u32,
            Some(v) => {
                diags.push(src.error(
                    &v.span(),
                    field,
                    format!("must be between {min} and {MAX_RATE}, got {}", v.get_ref()),
                    fix,
                ));
                default
            }
        }
    };
    let rate = get(
        rate,
        "alerts.rate_per_sec",
        0,
        DEFAULT_RATE_PER_SEC,
        "records per second per (policy, opener cgroup), 0 to 1000000; the default is rate_per_sec = 200",
    );
    let burst = get(
        burst,
        "alerts.burst",
        1,
        DEFAULT_RATE_BURST,
        "the number of records allowed at once, 1 to 1000000; the default is burst = 1000",
    );
    (rate, burst)
}

/// The fix for an unknown choice `other` among `choices` (`kind`: what they
/// are called, for the lowercase hint): the closest one, or `otherwise`.
fn did_you_mean<const N: usize>(other: &str, choices: [&str; N], kind: &str, otherwise: &str) -> String {
    match closest(other.trim(), choices) {
        Some(c) if c == other.to_lowercase() => format!("did you mean \"{c}\"? ({kind} are lowercase)"),
        Some(c) => format!("did you mean \"{c}\"?"),
        None => otherwise.to_string(),
    }
}
