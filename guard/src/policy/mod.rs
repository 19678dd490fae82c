//! Policies: which systemd unit owns which secret files.
//!
//! One TOML file per unit in a directory (see `policies/README.md` for the
//! format). [`load`] reads them all and returns either every policy or every
//! problem found, never a part: a daemon must not run with half a policy.
//!
//! - `types.rs`: the files as written, with the span of every value;
//! - `validate.rs`: what the values mean, one file at a time;
//! - `error.rs`: diagnostics and their `file:line:col` form;
//! - `passwd.rs`: user names;
//! - here: reading the directory and the checks across files.

mod error;
mod passwd;
mod types;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

// `Severity` is part of the module's API (Diagnostic::severity); the binary itself only prints it.
#[allow(unused_imports)]
pub use error::{Diagnostic, PolicyErrors, Severity};
pub use passwd::Passwd;
pub use validate::with_unit_suffix;
/// For `guard policy from-unit`, which writes what these accept.
pub(crate) use validate::{check_protect_path, check_unit, UNIT_USER};

use error::Source;
/// For `guard policy suggest`, which edits policy files by the spans of their values.
pub(crate) use types::Document;
use types::RawPolicy;
use validate::{Users, Validated};

/// Most policies one directory may hold (the size of the kernel-side tables).
pub const MAX_POLICIES: usize = guard_common::POLICIES_PER_BANK as usize;
/// Default `alerts.rate_per_sec`.
pub const DEFAULT_RATE_PER_SEC: u32 = 200;
/// Default `alerts.burst`.
pub const DEFAULT_RATE_BURST: u32 = 1000;
/// Upper bound of `alerts.rate_per_sec` and `alerts.burst`.
pub const MAX_RATE: u32 = 1_000_000;

/// What happens when a process outside the unit opens a protected file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny with EACCES (and record).
    Enforce,
    /// Allow, and record.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated policy file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Policy {
    /// Index of the file in name order.
    pub id: u32,
    /// File stem: `demo` for `demo.toml`.
    pub name: String,
    pub source: PathBuf,
    pub unit: String,
    /// Cgroup path below the cgroup2 root; `None`: find it by unit name.
    pub cgroup: Option<String>,
    pub mode: Mode,
    /// Resolved UIDs, in file order.
    pub allow_uids: Vec<u32>,
    /// `allow_users` as written ("myapp", "0" or "@unit").
    pub allow_users: Vec<String>,
    /// `"@unit"` is allowed: the UID systemd runs the unit as.
    pub unit_user: bool,
    pub protect: Vec<PathBuf>,
    /// Files only systemd's setup of the unit (of every unit for `unit = "*"`) may open.
    pub setup_only: Vec<PathBuf>,
    /// If not empty, openers must also run one of these (by file identity).
    pub executables: Vec<PathBuf>,
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    /// `core_dumps = "keep"`: a crash of the unit's process leaves a core
    /// when `core_pattern` is a file, protected as a file of the unit.
    pub keep_cores: bool,
}

impl Policy {
    /// `unit = "*"`: systemd's setup of every unit (the credential host key).
    pub fn any_unit(&self) -> bool {
        self.unit == validate::ANY_UNIT
    }
}

/// Every policy of a directory, with the warnings found while loading.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
    pub warnings: Vec<Diagnostic>,
}

impl PolicySet {
    /// Number of protected paths (`protect` and `setup_only`) over all policies.
    pub fn path_count(&self) -> usize {
        self.policies.iter().map(|p| p.protect.len() + p.setup_only.len()).sum()
    }

    /// Protected paths that do not exist (yet), checked now.
    pub fn absent_paths(&self) -> Vec<&Path> {
        self.policies
            .iter()
            .flat_map(|p| p.protect.iter().chain(&p.setup_only))
            .filter(|p| matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound))
            .map(PathBuf::as_path)
            .collect()
    }
}

/// Loads policies. `path` is a directory of *.toml files or a single .toml
/// file; user names are looked up in `passwd`.
///
/// In a directory only `*.toml` files are read (not hidden ones,
/// such as an editor's `.#x.toml`), sorted by name; a policy's id is its
/// index in that order. Either every file is valid, or the result lists
/// every error in every file.
pub fn load(path: &Path, passwd: &Path) -> Result<PolicySet, PolicyErrors> {
    let files = list_files(path).map_err(|d| PolicyErrors {
        diagnostics: vec![d],
    })?;
    let mut diags = Vec::new();
    if files.len() > MAX_POLICIES {
        diags.push(Diagnostic::file_error(
            path,
            format!(
                "holds {} policy files; at most {MAX_POLICIES} are supported",
                files.len()
            ),
            "merge or remove policies, one file per unit",
        ));
    }

    let passwd_file = Passwd::read(passwd).map_err(|e| e.to_string());
    let users = Users {
        path: passwd,
        passwd: passwd_file.as_ref().map_err(String::as_str),
    };

    let mut checked: Vec<(Source, Validated)> = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let Some(src) = read_source(file, &mut diags) else {
            continue;
        };
        let doc = match Document::parse(&src.text) {
            Ok(doc) => doc,
            Err(e) => {
                diags.push(syntax_error(&src, &e));
                continue;
            }
        };
        let raw = RawPolicy::decode(doc, &src, &mut diags);
        let name = file.file_stem().unwrap_or_default().to_string_lossy();
        let id = u32::try_from(index).unwrap_or(u32::MAX);
        let validated = validate::validate(raw, id, &name, &users, &src, &mut diags);
        checked.push((src, validated));
    }
    check_across_files(&checked, &mut diags);

    // Report in file order, then by position.
    let order: HashMap<&Path, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_path(), i + 1))
        .collect();
    diags.sort_by_key(|d| {
        (
            order.get(d.file.as_path()).copied().unwrap_or(0),
            d.line,
            d.column,
        )
    });

    let (errors, warnings): (Vec<_>, Vec<_>) = diags.into_iter().partition(Diagnostic::is_error);
    if !errors.is_empty() {
        return Err(PolicyErrors {
            diagnostics: errors,
        });
    }
    let policies = checked.into_iter().filter_map(|(_, v)| v.policy).collect();
    Ok(PolicySet { policies, warnings })
}

/// The policy files named by `path`, sorted by file name.
fn list_files(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let usage = "pass a directory of *.toml policy files or a single .toml file";
    let meta = std::fs::metadata(path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist".to_string()
        } else {
            format!("cannot be read: {e}")
        };
        Diagnostic::file_error(path, message, usage)
    })?;
    if meta.is_file() {
        if path.extension().is_some_and(|e| e == "toml") {
            return Ok(vec![path.to_path_buf()]);
        }
        return Err(Diagnostic::file_error(path, "is not a .toml file", usage));
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| Diagnostic::file_error(path, format!("cannot be read: {e}"), usage))?;
    let mut files: Vec<(OsString, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| Diagnostic::file_error(path, format!("cannot be read: {e}"), usage))?;
        let name = entry.file_name();
        let file = entry.path();
        let hidden = name.to_string_lossy().starts_with('.');
        if hidden || file.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        files.push((name, file));
    }
    if files.is_empty() {
        return Err(Diagnostic::file_error(
            path,
            "holds no policy files (*.toml)",
            "add one file per unit, such as myapp.toml (see policies/README.md), or pass the right directory",
        ));
    }
    files.sort();
    Ok(files.into_iter().map(|(_, f)| f).collect())
}

fn read_source(file: &Path, diags: &mut Vec<Diagnostic>) -> Option<Source> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            let fix = if e.kind() == std::io::ErrorKind::IsADirectory {
                "rename the directory so that its name does not end in .toml"
            } else {
                "make the file readable by the user running guard"
            };
            diags.push(Diagnostic::file_error(
                file,
                format!("cannot be read: {e}"),
                fix,
            ));
            return None;
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Some(Source::new(file.to_path_buf(), text)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bad = e.as_bytes()[valid];
            let text = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let src = Source::new(file.to_path_buf(), text);
            diags.push(src.error(
                &(valid..valid),
                "",
                format!("is not valid UTF-8 (byte 0x{bad:02x}); TOML files must be UTF-8"),
                "save the file as UTF-8",
            ));
            None
        }
    }
}

/// A TOML syntax error, with the key on the offending line if there is one.
fn syntax_error(src: &Source, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim().replace('\n', "; ");
    let field = key_at(src, span.start).unwrap_or_default();
    let fix = if message.contains("duplicate key") {
        "set each key once: remove the repeated one or merge the two"
    } else {
        "correct the TOML syntax here: strings need quotes (mode = \"enforce\"), arrays brackets \
         (protect = [\"/etc/x\"]), tables a [name] line; see https://toml.io"
    };
    src.error(&span, field, format!("invalid TOML: {message}"), fix)
}

/// Best effort: the dotted name of the key assigned on the line holding
/// `offset`, for syntax errors (where no parsed document exists).
fn key_at(src: &Source, offset: usize) -> Option<String> {
    let (line, _) = src.position(offset);
    let lines: Vec<&str> = src.text.lines().collect();
    let bare = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    };
    let key = lines.get(line - 1)?.split_once('=')?.0.trim();
    if !bare(key) {
        return None;
    }
    // The nearest table header above, if any; give up on array-of-tables
    // and quoted headers.
    let header = lines[..line - 1]
        .iter()
        .map(|l| l.trim())
        .rev()
        .find(|l| l.starts_with('['));
    let table = match header {
        None => None,
        Some(h) => {
            let name = h.strip_prefix('[')?.split(']').next()?.trim();
            Some(name).filter(|n| bare(n))?;
            Some(name)
        }
    };
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
}

/// Units and paths claimed by two files.
fn check_across_files(checked: &[(Source, Validated)], diags: &mut Vec<Diagnostic>) {
    let at = |src: &Source, span: &std::ops::Range<usize>| {
        let (line, column) = src.position(span.start);
        format!("{}:{line}:{column}", src.path.display())
    };
    for (i, (src, this)) in checked.iter().enumerate() {
        let earlier = &checked[..i];
        if let Some(unit) = &this.unit {
            let first = earlier.iter().find_map(|(s, v)| {
                v.unit
                    .as_ref()
                    .filter(|u| u.get_ref() == unit.get_ref())
                    .map(|u| (s, u))
            });
            if let Some((other_src, other)) = first {
                diags.push(src.error(
                    &unit.span(),
                    "unit",
                    format!(
                        "unit \"{}\" already has a policy: {}",
                        unit.get_ref(),
                        at(other_src, &other.span())
                    ),
                    format!(
                        "one file per unit: merge {} and {} into one policy",
                        other_src.path.display(),
                        src.path.display()
                    ),
                ));
            }
        }
        for (index, path) in &this.protect {
            let clash = earlier.iter().find_map(|(s, v)| {
                v.protect
                    .iter()
                    .map(|(_, p)| p)
                    .find(|p| {
                        path.get_ref().starts_with(p.get_ref())
                            || p.get_ref().starts_with(path.get_ref())
                    })
                    .map(|p| (s, v, p))
            });
            let Some((other_src, other, theirs)) = clash else {
                continue;
            };
            let (mine, their) = (path.get_ref().display(), theirs.get_ref().display());
            let relation = if path.get_ref() == theirs.get_ref() {
                format!("\"{mine}\" is also protected by")
            } else if path.get_ref().starts_with(theirs.get_ref()) {
                format!("\"{mine}\" is inside \"{their}\", which is protected by")
            } else {
                format!("\"{mine}\" contains \"{their}\", which is protected by")
            };
            let owner = match &other.unit {
                Some(u) => format!(" (unit {})", u.get_ref()),
                None => String::new(),
            };
            diags.push(src.error(
                &path.span(),
                format!("protect[{index}]"),
                format!("{relation} {}{owner}", at(other_src, &theirs.span())),
                format!(
                    "a file can be confined to one unit only: remove it from {} or from {}",
                    other_src.path.display(),
                    src.path.display()
                ),
            ));
        }
    }
}
