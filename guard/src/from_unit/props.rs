//! What systemd reports about a unit, parsed from its own tools' output.
//!
//! Two sources, because `systemctl show` cannot print every property:
//! - `systemctl show UNIT --property=...` prints strings, booleans and string
//!   arrays (`StateDirectory=a b`, shell-quoted where needed) as `Name=value`
//!   lines, and `ExecStart=` as one `{ path=... ; argv[]=... }` line per command;
//! - the credential settings are arrays of structures (`LoadCredential=` is
//!   `a(ss)`, `SetCredential=` is `a(say)`), which `systemctl show` of systemd
//!   252 and 257 prints as `LoadCredential=[unprintable]`. They are read with
//!   `busctl --json=short get-property`, one JSON line per property, in the
//!   order asked.

use anyhow::{bail, Context, Result};

/// Properties asked of `systemctl show`.
pub const SHOW_PROPERTIES: &[&str] = &[
    "Id",
    "LoadState",
    "FragmentPath",
    "User",
    "DynamicUser",
    "StateDirectory",
    "ConfigurationDirectory",
    "RuntimeDirectory",
    "ImportCredential",
    "ExecStart",
];

/// Properties asked of `busctl get-property`, in this order (all exist
/// since systemd 250 on the `org.freedesktop.systemd1.Service` interface).
pub const BUS_PROPERTIES: &[&str] = &[
    "LoadCredential",
    "LoadCredentialEncrypted",
    "SetCredential",
    "SetCredentialEncrypted",
];

/// One `LoadCredential=ID:PATH` (or `LoadCredentialEncrypted=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadCredential {
    pub id: String,
    /// As configured: absolute, relative (a credential name) or empty.
    pub path: String,
    pub encrypted: bool,
}

impl LoadCredential {
    /// The setting as a unit file would spell it.
    pub fn setting(&self) -> String {
        let key = if self.encrypted { "LoadCredentialEncrypted" } else { "LoadCredential" };
        if self.path.is_empty() {
            format!("{key}={}", self.id)
        } else {
            format!("{key}={}:{}", self.id, self.path)
        }
    }
}

/// The credential settings (from the bus).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `LoadCredential=` then `LoadCredentialEncrypted=`, in unit order.
    pub load: Vec<LoadCredential>,
    /// IDs of `SetCredential=`.
    pub set: Vec<String>,
    /// IDs of `SetCredentialEncrypted=`.
    pub set_encrypted: Vec<String>,
}

/// What systemd knows of a unit, as far as a policy needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitProps {
    pub id: String,
    /// `loaded`, `not-found`, `masked`, `bad-setting`, `error`, ...
    pub load_state: String,
    pub fragment_path: String,
    /// Empty: no `User=` (root, unless `DynamicUser=yes`).
    pub user: String,
    pub dynamic_user: bool,
    pub state_directory: Vec<String>,
    pub configuration_directory: Vec<String>,
    pub runtime_directory: Vec<String>,
    /// `ImportCredential=` globs (systemd 254 and later).
    pub import_credential: Vec<String>,
    /// The program of each `ExecStart=` command.
    pub exec_start: Vec<String>,
    pub credentials: Credentials,
}

impl UnitProps {
    /// Parses `systemctl show` output. Unknown properties are ignored, a
    /// property left out (one this systemd does not have) stays empty.
    pub fn parse(show: &str) -> Result<UnitProps> {
        let mut props = UnitProps::default();
        for line in show.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "Id" => props.id = value.to_string(),
                "LoadState" => props.load_state = value.to_string(),
                "FragmentPath" => props.fragment_path = value.to_string(),
                "User" => props.user = value.to_string(),
                "DynamicUser" => props.dynamic_user = value == "yes",
                "StateDirectory" => props.state_directory = split_strv(value),
                "ConfigurationDirectory" => props.configuration_directory = split_strv(value),
                "RuntimeDirectory" => props.runtime_directory = split_strv(value),
                "ImportCredential" => props.import_credential = split_strv(value),
                "ExecStart" => props.exec_start.extend(exec_path(value)),
                _ => {}
            }
        }
        if props.id.is_empty() || props.load_state.is_empty() {
            bail!("systemctl show printed no Id= or LoadState= line; got:\n{show}");
        }
        Ok(props)
    }
}

impl Credentials {
    /// Parses `busctl --json=short get-property ... LoadCredential
    /// LoadCredentialEncrypted SetCredential SetCredentialEncrypted`: one
    /// `{"type":...,"data":...}` line per property, in [`BUS_PROPERTIES`] order.
    pub fn parse_busctl(json: &str) -> Result<Credentials> {
        let values: Vec<serde_json::Value> = json
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("busctl printed a line that is not JSON: {l}")))
            .collect::<Result<_>>()?;
        if values.len() != BUS_PROPERTIES.len() {
            bail!(
                "busctl printed {} values for the {} properties {}",
                values.len(),
                BUS_PROPERTIES.len(),
                BUS_PROPERTIES.join(", ")
            );
        }
        let mut creds = Credentials::default();
        for (name, value) in BUS_PROPERTIES.iter().zip(&values) {
            let entries = entries(name, value)?;
            match *name {
                "LoadCredential" | "LoadCredentialEncrypted" => {
                    for entry in entries {
                        let id = entry.first().and_then(|v| v.as_str());
                        let path = entry.get(1).and_then(|v| v.as_str());
                        let (Some(id), Some(path)) = (id, path) else {
                            bail!("busctl: {name}: expected [id, path] pairs, got {entry:?}");
                        };
                        creds.load.push(LoadCredential {
                            id: id.to_string(),
                            path: path.to_string(),
                            encrypted: *name == "LoadCredentialEncrypted",
                        });
                    }
                }
                _ => {
                    let ids = entries.iter().map(|e| match e.first().and_then(|v| v.as_str()) {
                        Some(id) => Ok(id.to_string()),
                        None => bail!("busctl: {name}: expected [id, data] pairs, got {e:?}"),
                    });
                    let ids = ids.collect::<Result<Vec<_>>>()?;
                    if *name == "SetCredential" {
                        creds.set = ids;
                    } else {
                        creds.set_encrypted = ids;
                    }
                }
            }
        }
        Ok(creds)
    }
}

/// The entries of an array-of-structures value: `{"type":"a(ss)","data":[[..],..]}`.
fn entries<'a>(name: &str, value: &'a serde_json::Value) -> Result<Vec<&'a Vec<serde_json::Value>>> {
    let Some(data) = value.get("data").and_then(|d| d.as_array()) else {
        bail!("busctl: {name}: no \"data\" array in {value}");
    };
    data.iter()
        .map(|e| e.as_array().with_context(|| format!("busctl: {name}: expected a structure, got {e}")))
        .collect()
}

/// Splits a string array as `systemctl show` prints it: space separated,
/// an entry with special characters in double quotes (shell style).
pub fn split_strv(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, ' ') => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('"'), '\\') | (None, '\\') => word.extend(chars.next()),
                _ => word.push(c),
            }
        }
        out.push(word);
    }
}

/// The program of one `ExecStart={ path=/bin/sh ; argv[]=... ; ... }` line.
fn exec_path(value: &str) -> Option<String> {
    let rest = value.split_once("path=")?.1;
    let path = rest.split(" ;").next()?.trim();
    (!path.is_empty()).then(|| path.to_string())
}

/// A unit's D-Bus object path: `/org/freedesktop/systemd1/unit/` and the
/// name with every byte but ASCII letters (and digits after the first)
/// written as `_xx` (systemd's `bus_label_escape`).
pub fn unit_object_path(unit: &str) -> String {
    let mut label = String::new();
    for (i, b) in unit.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            label.push(char::from(b));
        } else {
            label.push_str(&format!("_{b:02x}"));
        }
    }
    if label.is_empty() {
        label.push('_');
    }
    format!("/org/freedesktop/systemd1/unit/{label}")
}
