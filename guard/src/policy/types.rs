//! Policy files as written: the TOML document with the byte span of every key
//! and value, and [`RawPolicy`], the fields of a policy file with their spans.
//!
//! Decoding never stops at the first problem: an unknown field, a value of
//! the wrong type or a missing required field becomes a [`Diagnostic`] and
//! decoding goes on, so `guard check` can report every problem in one run.
//! (A `#[derive(Deserialize)]` struct with `deny_unknown_fields` would stop
//! at the first one.) What the values mean is checked in `validate.rs`.

use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::error::{closest, Diagnostic, Source};

/// Fields of a policy file, in the order the schema lists them.
pub const FIELDS: &[&str] = &["unit", "mode", "allow_users", "protect", "executables", "setup_only", "cgroup", "core_dumps", "alerts"];
/// Fields of the `[alerts]` table.
pub const ALERT_FIELDS: &[&str] = &["rate_per_sec", "burst"];

/// A policy file as written. Required fields are `Option` here so that a
/// missing or mistyped one can be reported and the rest still checked; a
/// field is `Some` only if it has the right TOML type.
#[derive(Debug, Clone, Default)]
pub struct RawPolicy {
    pub unit: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    /// Entries keep their index in the file; a wrongly typed one is `None`.
    pub allow_users: Option<Spanned<Vec<Option<Spanned<RawUser>>>>>,
    pub protect: Option<Spanned<Vec<Option<Spanned<String>>>>>,
    pub executables: Option<Spanned<Vec<Option<Spanned<String>>>>>,
    pub setup_only: Option<Spanned<Vec<Option<Spanned<String>>>>>,
    pub cgroup: Option<Spanned<String>>,
    pub core_dumps: Option<Spanned<String>>,
    pub alerts: Option<Spanned<RawAlerts>>,
}

/// The `[alerts]` table as written.
#[derive(Debug, Clone, Default)]
pub struct RawAlerts {
    pub rate_per_sec: Option<Spanned<i64>>,
    pub burst: Option<Spanned<i64>>,
}

/// One entry of `allow_users`: a user name or a numeric UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawUser {
    Name(String),
    Uid(i64),
}

/// Any TOML value, with spans on every nested value and key.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<Spanned<Node>>),
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl Node {
    /// "a string", "an integer", ... for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::String(_) => "a string",
            Node::Integer(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Boolean(_) => "a boolean",
            Node::Datetime(_) => "a date-time",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

/// The top-level table of a policy file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document(pub Vec<(Spanned<String>, Spanned<Node>)>);

impl Document {
    /// Parses TOML text. The only errors are TOML syntax errors (including
    /// duplicate keys); any well-formed document decodes.
    pub fn parse(text: &str) -> Result<Document, toml::de::Error> {
        toml::from_str(text)
    }
}

impl<'de> serde::Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let root = PlainNode { fallback: 0..0 }.deserialize(deserializer)?;
        match root.into_inner() {
            Node::Table(entries) => Ok(Document(entries)),
            _ => Ok(Document(Vec::new())),
        }
    }
}

impl RawPolicy {
    /// Picks the known fields out of a parsed document, reporting unknown
    /// fields, wrongly typed values and missing required fields.
    pub fn decode(doc: Document, src: &Source, diags: &mut Vec<Diagnostic>) -> RawPolicy {
        let mut raw = RawPolicy::default();
        let mut seen = Vec::new();
        for (key, value) in doc.0 {
            let span = value.span();
            seen.push(key.get_ref().clone());
            match key.get_ref().as_str() {
                "unit" => raw.unit = string(src, "unit", value, diags),
                "mode" => raw.mode = string(src, "mode", value, diags),
                "cgroup" => raw.cgroup = string(src, "cgroup", value, diags),
                "core_dumps" => raw.core_dumps = string(src, "core_dumps", value, diags),
                "allow_users" => {
                    raw.allow_users = array(src, "allow_users", value, diags).map(|items| {
                        let users = items
                            .into_iter()
                            .enumerate()
                            .map(|(i, item)| user(src, &format!("allow_users[{i}]"), item, diags))
                            .collect();
                        Spanned::new(span, users)
                    })
                }
                "protect" => raw.protect = strings(src, "protect", value, diags),
                "executables" => raw.executables = strings(src, "executables", value, diags),
                "setup_only" => raw.setup_only = strings(src, "setup_only", value, diags),
                "alerts" => raw.alerts = alerts(src, value, diags),
                _ => diags.push(unknown_field(src, &key, "", FIELDS)),
            }
        }
        // `unit = "*"` (systemd's setup of every unit) has no processes of
        // its own to allow and only `setup_only` files.
        let any_unit = raw.unit.as_ref().is_some_and(|u| u.get_ref() == "*");
        for (present, field, fix) in [
            (raw.unit.is_some(), "unit", "add the owning systemd unit, e.g. unit = \"myapp.service\""),
            (raw.mode.is_some(), "mode", "add mode = \"enforce\" (deny with EACCES) or mode = \"audit\" (allow and record)"),
            (
                raw.allow_users.is_some() || any_unit,
                "allow_users",
                "add the users that may open the files, e.g. allow_users = [\"myapp\"] (names or numeric UIDs)",
            ),
            (raw.protect.is_some() || any_unit, "protect", "add the files or directories to confine, e.g. protect = [\"/etc/myapp/tls.key\"]"),
        ] {
            // A field that is present but has the wrong type was reported already.
            if !present && !seen.iter().any(|k| k == field) {
                diags.push(src.error(&(0..0), field, "required field is missing", fix));
            }
        }
        raw
    }
}

/// An array of strings (paths), each entry kept with its index.
fn strings(
    src: &Source,
    field: &str,
    value: Spanned<Node>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Spanned<Vec<Option<Spanned<String>>>>> {
    let span = value.span();
    array(src, field, value, diags).map(|items| {
        let paths = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| string(src, &format!("{field}[{i}]"), item, diags))
            .collect();
        Spanned::new(span, paths)
    })
}

fn unknown_field(src: &Source, key: &Spanned<String>, prefix: &str, valid: &[&str]) -> Diagnostic {
    let name = key.get_ref();
    let message = format!(
        "unknown field `{name}`; valid fields here are: {}",
        valid.join(", ")
    );
    let fix = match closest(name, valid.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? Rename it (field names are case-sensitive)"),
        None => format!(
            "remove `{name}` or rename it to one of: {}",
            valid.join(", ")
        ),
    };
    src.error(&key.span(), format!("{prefix}{name}"), message, fix)
}

/// "an integer (3)": the kind of a value and, for short scalars, its text.
fn found(src: &Source, value: &Spanned<Node>) -> String {
    let text = src.snippet(&value.span()).trim();
    match value.get_ref() {
        Node::Array(_) | Node::Table(_) => value.get_ref().kind().to_string(),
        _ if text.is_empty() || text.chars().count() > 40 || text.contains('\n') => {
            value.get_ref().kind().to_string()
        }
        _ => format!("{} ({text})", value.get_ref().kind()),
    }
}

/// Example of a correct value for a field, for "how to fix it".
fn example(field: &str) -> &'static str {
    let base = field.split('[').next().unwrap_or(field);
    match (base, field.contains('[')) {
        ("unit", _) => "unit = \"myapp.service\"",
        ("mode", _) => "mode = \"enforce\" or mode = \"audit\"",
        ("cgroup", _) => "cgroup = \"/system.slice/myapp.service\"",
        ("core_dumps", _) => "core_dumps = \"refuse\" or core_dumps = \"keep\"",
        ("allow_users", false) => "allow_users = [\"myapp\", 0]",
        ("allow_users", true) => {
            "a user name in quotes (\"myapp\") or a numeric UID without quotes (1002)"
        }
        ("protect", false) => "protect = [\"/etc/myapp/tls.key\"]",
        ("protect", true) => "an absolute path in quotes, e.g. \"/etc/myapp/tls.key\"",
        ("executables", false) => "executables = [\"/usr/bin/myapp\"]",
        ("executables", true) => "an absolute path in quotes, e.g. \"/usr/bin/myapp\"",
        ("setup_only", false) => "setup_only = [\"/etc/credstore.encrypted/api_key.cred\"]",
        ("setup_only", true) => "an absolute path in quotes, e.g. \"/etc/credstore.encrypted/api_key.cred\"",
        ("alerts", _) => "a table: a line [alerts] followed by rate_per_sec = 200 and burst = 1000",
        ("alerts.rate_per_sec", _) => "rate_per_sec = 200",
        ("alerts.burst", _) => "burst = 1000",
        _ => "see policies/README.md",
    }
}

fn type_error(
    src: &Source,
    field: &str,
    expected: &str,
    value: &Spanned<Node>,
    fix: String,
) -> Diagnostic {
    let message = format!("expected {expected}, found {}", found(src, value));
    src.error(&value.span(), field, message, fix)
}

fn string(
    src: &Source,
    field: &str,
    value: Spanned<Node>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Spanned<String>> {
    let span = value.span();
    match value.into_inner() {
        Node::String(s) => Some(Spanned::new(span, s)),
        other => {
            let value = Spanned::new(span, other);
            let fix = match value.get_ref() {
                Node::Array(_) if !field.contains('[') => {
                    format!("give a single string, not a list: {}", example(field))
                }
                _ => format!("write it as {}", example(field)),
            };
            diags.push(type_error(src, field, "a string", &value, fix));
            None
        }
    }
}

fn array(
    src: &Source,
    field: &str,
    value: Spanned<Node>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Spanned<Node>>> {
    let span = value.span();
    match value.into_inner() {
        Node::Array(items) => Some(items),
        other => {
            let value = Spanned::new(span, other);
            let fix = match value.get_ref() {
                Node::String(_) | Node::Integer(_) => {
                    format!(
                        "make it an array: {field} = [{}]",
                        src.snippet(&value.span()).trim()
                    )
                }
                _ => format!("write it as {}", example(field)),
            };
            diags.push(type_error(src, field, "an array", &value, fix));
            None
        }
    }
}

fn user(
    src: &Source,
    field: &str,
    value: Spanned<Node>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Spanned<RawUser>> {
    let span = value.span();
    match value.into_inner() {
        Node::String(s) => Some(Spanned::new(span, RawUser::Name(s))),
        Node::Integer(i) => Some(Spanned::new(span, RawUser::Uid(i))),
        other => {
            let value = Spanned::new(span, other);
            let fix = format!("write {}", example(field));
            diags.push(type_error(
                src,
                field,
                "a user name (string) or a UID (integer)",
                &value,
                fix,
            ));
            None
        }
    }
}

fn integer(
    src: &Source,
    field: &str,
    value: Spanned<Node>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Spanned<i64>> {
    let span = value.span();
    match value.into_inner() {
        Node::Integer(i) => Some(Spanned::new(span, i)),
        other => {
            let value = Spanned::new(span, other);
            let fix = match value.get_ref() {
                Node::String(s) if s.trim().parse::<i64>().is_ok() => {
                    let key = field.rsplit('.').next().unwrap_or(field);
                    format!("remove the quotes: {key} = {}", s.trim())
                }
                Node::Float(_) => format!("use a whole number: {}", example(field)),
                _ => format!("write it as {}", example(field)),
            };
            diags.push(type_error(src, field, "an integer", &value, fix));
            None
        }
    }
}

fn alerts(
    src: &Source,
    value: Spanned<Node>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Spanned<RawAlerts>> {
    let span = value.span();
    match value.into_inner() {
        Node::Table(entries) => {
            let mut alerts = RawAlerts::default();
            for (key, value) in entries {
                match key.get_ref().as_str() {
                    "rate_per_sec" => {
                        alerts.rate_per_sec = integer(src, "alerts.rate_per_sec", value, diags)
                    }
                    "burst" => alerts.burst = integer(src, "alerts.burst", value, diags),
                    _ => diags.push(unknown_field(src, &key, "alerts.", ALERT_FIELDS)),
                }
            }
            Some(Spanned::new(span, alerts))
        }
        other => {
            let value = Spanned::new(span, other);
            let fix = format!("make it {}", example("alerts"));
            diags.push(type_error(src, "alerts", "a table", &value, fix));
            None
        }
    }
}

// ---------------------------------------------------------------------------
// Deserializing a TOML document into `Node`s with spans.
//
// `toml` hands out spans through the `serde_spanned` protocol: a value is
// asked for as a struct with these private names, and the deserializer
// answers with a map of start, end and value. `toml::Spanned<T>` speaks the
// protocol but fails outright where `toml` has no span to give (date-times
// and their private marker key); these seeds fall back to the nearest known
// span instead, so every well-formed document decodes.
// The names are those of serde_spanned 0.6, which toml 0.8 uses; the test
// `spans_are_reported` fails if they ever stop working.

const SPANNED: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];
/// The key under which `toml` hands out a date-time as a one-entry map.
const DATETIME_KEY: &str = "$__toml_private_datetime";

/// A value, asking for its span.
struct SpannedNode {
    fallback: Range<usize>,
}

impl<'de> DeserializeSeed<'de> for SpannedNode {
    type Value = Spanned<Node>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_struct(
            SPANNED,
            SPANNED_FIELDS,
            NodeVisitor {
                fallback: self.fallback,
                spanned: true,
            },
        )
    }
}

/// A value whose span is already known (the inside of a spanned wrapper).
struct PlainNode {
    fallback: Range<usize>,
}

impl<'de> DeserializeSeed<'de> for PlainNode {
    type Value = Spanned<Node>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(NodeVisitor {
            fallback: self.fallback,
            spanned: false,
        })
    }
}

struct NodeVisitor {
    fallback: Range<usize>,
    /// Whether a map may be the spanned protocol's start/end/value map.
    spanned: bool,
}

impl NodeVisitor {
    fn wrap(self, node: Node) -> Spanned<Node> {
        Spanned::new(self.fallback, node)
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Spanned<Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.wrap(Node::Boolean(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.wrap(Node::Integer(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.wrap(Node::Integer(i64::try_from(v).unwrap_or(i64::MAX))))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self.wrap(Node::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.wrap(Node::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(self.wrap(Node::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(SpannedNode {
            fallback: self.fallback.clone(),
        })? {
            items.push(item);
        }
        Ok(self.wrap(Node::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(first) = map.next_key_seed(KeySeed {
            fallback: self.fallback.clone(),
        })?
        else {
            return Ok(self.wrap(Node::Table(Vec::new())));
        };
        if self.spanned && first.get_ref() == SPANNED_START {
            let start: usize = map.next_value()?;
            let _: Option<String> = map.next_key()?;
            let end: usize = map.next_value()?;
            let _: Option<String> = map.next_key()?;
            let node = map.next_value_seed(PlainNode {
                fallback: start..end,
            })?;
            return Ok(Spanned::new(start..end, node.into_inner()));
        }
        if first.get_ref() == DATETIME_KEY {
            let text: String = map.next_value()?;
            return Ok(self.wrap(Node::Datetime(text)));
        }
        let mut entries = Vec::new();
        let mut key = Some(first);
        while let Some(k) = key {
            let value = map.next_value_seed(SpannedNode { fallback: k.span() })?;
            entries.push((k, value));
            key = map.next_key_seed(KeySeed {
                fallback: self.fallback.clone(),
            })?;
        }
        Ok(self.wrap(Node::Table(entries)))
    }
}

/// A table key, asking for its span.
struct KeySeed {
    fallback: Range<usize>,
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Spanned<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_struct(
            SPANNED,
            SPANNED_FIELDS,
            KeyVisitor {
                fallback: self.fallback,
            },
        )
    }
}

struct KeyVisitor {
    fallback: Range<usize>,
}

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Spanned<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Spanned::new(self.fallback, v.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let _: Option<String> = map.next_key()?;
        let start: usize = map.next_value()?;
        let _: Option<String> = map.next_key()?;
        let end: usize = map.next_value()?;
        let _: Option<String> = map.next_key()?;
        let key: String = map.next_value()?;
        Ok(Spanned::new(start..end, key))
    }
}
