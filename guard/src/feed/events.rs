//! `guard events`: which of the feed's lines to show, and in which form.
//!
//! [`View::line`] is the whole decision, a pure function of one line (plus
//! a warn-once flag), so it is tested without an agent or a socket.
//!
//! Filters (`--unit`, `--decision`): each given filter must match (AND),
//! any of a filter's values may (OR). A record matches `--unit U` when its
//! top-level `unit` (the protected unit) is U, where "myapp" means
//! "myapp.service" as with systemctl; `--decision D` when its `decision` is
//! D. So:
//! - `gap` records (a consumer lost records) always pass: a filter never
//!   hides data loss;
//! - `tamper` records have no unit (`""`): they pass `--decision` alone;
//! - `admin` records have neither field: they pass only when no filter is
//!   given (as does any kind this version does not know, unless it has
//!   matching `unit` and `decision` fields);
//! - a line that is not JSON cannot be filtered and always passes.
//!
//! Lines are parsed as plain JSON values, not as guard's record types, so
//! records from an agent of another version (fields added or missing) are
//! filtered and shown all the same. JSON output is the agent's line byte for
//! byte; the human form is `human.rs`'s. A line that is not JSON is shown as
//! it came, with one warning on stderr for the whole run.

use std::borrow::Cow;

use clap::ValueEnum;
use serde_json::Value;

use super::human;
use crate::policy::with_unit_suffix;

/// `--decision` values: a record's `decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Decision {
    Denied,
    Audited,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Denied => "denied",
            Decision::Audited => "audited",
        }
    }
}

/// What `guard events` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The agent's JSON lines, unchanged.
    Json,
    /// One human line per record.
    Human,
}

/// `--unit` and `--decision`; empty lists: no filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// With their type suffix (`myapp.service`).
    units: Vec<String>,
    decisions: Vec<Decision>,
}

impl Filter {
    pub fn new(units: &[String], decisions: &[Decision]) -> Self {
        Self { units: units.iter().map(|u| with_unit_suffix(u)).collect(), decisions: decisions.to_vec() }
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.decisions.is_empty()
    }

    /// Whether a parsed line passes (see the module documentation).
    pub fn passes(&self, v: &Value) -> bool {
        let field = |key: &str| v.get(key).and_then(Value::as_str);
        if field("kind") == Some("gap") {
            return true;
        }
        let unit = self.units.is_empty() || field("unit").is_some_and(|u| self.units.iter().any(|f| f == u));
        let decision =
            self.decisions.is_empty() || field("decision").is_some_and(|d| self.decisions.iter().any(|f| f.as_str() == d));
        unit && decision
    }
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub struct Shown<'a> {
    /// What to write to stdout (newline included); `None`: filtered out.
    pub out: Option<Cow<'a, [u8]>>,
    /// What to print on stderr first.
    pub warning: Option<&'static str>,
}

pub const NOT_JSON_WARNING: &str =
    "warning: the agent sent a line that is not JSON: shown as it came, unfiltered (warned once)";

pub struct View {
    filter: Filter,
    format: Format,
    warned: bool,
}

impl View {
    pub fn new(filter: Filter, format: Format) -> Self {
        Self { filter, format, warned: false }
    }

    /// Decides about one line of the feed, as read (its newline included,
    /// if it has one).
    pub fn line<'a>(&mut self, line: &'a [u8]) -> Shown<'a> {
        if self.format == Format::Json && self.filter.is_empty() {
            // Nothing to look at: copy.
            return Shown { out: Some(Cow::Borrowed(line)), warning: None };
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            let warning = (!std::mem::replace(&mut self.warned, true)).then_some(NOT_JSON_WARNING);
            let out = match self.format {
                Format::Json => Cow::Borrowed(line),
                Format::Human => terminated(line),
            };
            return Shown { out: Some(out), warning };
        };
        if !self.filter.passes(&v) {
            return Shown { out: None, warning: None };
        }
        let out = match (self.format, human::line(&v)) {
            (Format::Json, _) => Cow::Borrowed(line),
            (Format::Human, Some(human)) => Cow::Owned(format!("{human}\n").into_bytes()),
            // A kind this version does not know: its JSON is the best form.
            (Format::Human, None) => terminated(line),
        };
        Shown { out: Some(out), warning: None }
    }
}

/// `line`, ending in a newline.
fn terminated(line: &[u8]) -> Cow<'_, [u8]> {
    if line.ends_with(b"\n") {
        Cow::Borrowed(line)
    } else {
        let mut owned = line.to_vec();
        owned.push(b'\n');
        Cow::Owned(owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::record::{samples, Admin, Gap};

    fn json_line(record: &impl serde::Serialize) -> Vec<u8> {
        let mut line = serde_json::to_vec(record).unwrap();
        line.push(b'\n');
        line
    }

    fn view(units: &[&str], decisions: &[Decision], format: Format) -> View {
        let units: Vec<String> = units.iter().map(|u| u.to_string()).collect();
        View::new(Filter::new(&units, decisions), format)
    }

    /// Which of the sample lines `view` lets through, by index.
    fn passing(mut view: View, lines: &[Vec<u8>]) -> Vec<usize> {
        lines.iter().enumerate().filter(|(_, l)| view.line(l).out.is_some()).map(|(i, _)| i).collect()
    }

    /// 0: myapp denied, 1: myapp audited, 2: other denied, 3: tamper denied,
    /// 4: tamper audited, 5: admin, 6: gap.
    fn feed() -> Vec<Vec<u8>> {
        vec![
            json_line(&samples::access("myapp.service", "denied")),
            json_line(&samples::access("myapp.service", "audited")),
            json_line(&samples::access("other.service", "denied")),
            json_line(&samples::tamper("denied")),
            json_line(&samples::tamper("audited")),
            json_line(&Admin::new("reloaded", std::path::Path::new("/sys/fs/bpf/guard"), "")),
            json_line(&Gap::new(7, "subscriber lagged")),
        ]
    }

    #[test]
    fn no_filter_passes_everything() {
        assert_eq!(passing(view(&[], &[], Format::Json), &feed()), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(passing(view(&[], &[], Format::Human), &feed()), [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn unit_filter_with_or_without_suffix() {
        assert_eq!(passing(view(&["myapp.service"], &[], Format::Json), &feed()), [0, 1, 6]);
        assert_eq!(passing(view(&["myapp"], &[], Format::Json), &feed()), [0, 1, 6]);
        // Another unit type is not taken for a service.
        assert_eq!(passing(view(&["myapp.scope"], &[], Format::Json), &feed()), [6]);
    }

    #[test]
    fn several_units_are_ored() {
        assert_eq!(passing(view(&["myapp", "other.service"], &[], Format::Json), &feed()), [0, 1, 2, 6]);
    }

    #[test]
    fn decision_filter_keeps_tamper_records_of_that_decision() {
        assert_eq!(passing(view(&[], &[Decision::Denied], Format::Json), &feed()), [0, 2, 3, 6]);
        assert_eq!(passing(view(&[], &[Decision::Audited], Format::Json), &feed()), [1, 4, 6]);
        assert_eq!(passing(view(&[], &[Decision::Denied, Decision::Audited], Format::Json), &feed()), [0, 1, 2, 3, 4, 6]);
    }

    #[test]
    fn unit_and_decision_are_anded() {
        assert_eq!(passing(view(&["myapp"], &[Decision::Audited], Format::Json), &feed()), [1, 6]);
        assert_eq!(passing(view(&["myapp", "other"], &[Decision::Denied], Format::Human), &feed()), [0, 2, 6]);
    }

    #[test]
    fn gap_always_passes_admin_only_unfiltered() {
        let feed = feed();
        let (admin, gap) = (&feed[5..6], &feed[6..7]);
        for v in [view(&["nothing-matches"], &[], Format::Json), view(&[], &[Decision::Audited], Format::Human)] {
            assert_eq!(passing(v, gap), [0]);
        }
        assert_eq!(passing(view(&["myapp"], &[], Format::Json), admin), Vec::<usize>::new());
        assert_eq!(passing(view(&[], &[Decision::Denied], Format::Json), admin), Vec::<usize>::new());
        assert_eq!(passing(view(&[], &[], Format::Human), admin), [0]);
    }

    #[test]
    fn tamper_records_never_pass_a_unit_filter() {
        // Their unit is "": not even "--unit ''" (".service") matches it.
        assert_eq!(passing(view(&[""], &[], Format::Json), &feed()[3..5]), Vec::<usize>::new());
    }

    #[test]
    fn json_output_is_the_line_byte_for_byte() {
        // Unusual spacing and a field this version does not know.
        let line = b"{ \"kind\":\"access\",  \"unit\":\"myapp.service\",\"decision\":\"denied\",\"new\":[1] }\n";
        let mut filtered = view(&["myapp"], &[], Format::Json);
        assert_eq!(filtered.line(line).out.as_deref(), Some(&line[..]));
        let mut plain = view(&[], &[], Format::Json);
        assert_eq!(plain.line(line).out.as_deref(), Some(&line[..]));
        // The last line of a closed feed may lack its newline: kept as is.
        assert_eq!(plain.line(&line[..line.len() - 1]).out.as_deref(), Some(&line[..line.len() - 1]));
    }

    #[test]
    fn human_output_uses_the_records_human_form() {
        let record = samples::access("myapp.service", "denied");
        let mut human = view(&[], &[], Format::Human);
        let shown = |view: &mut View, line: Vec<u8>| String::from_utf8(view.line(&line).out.unwrap().into_owned()).unwrap();
        assert_eq!(shown(&mut human, json_line(&record)), format!("{}\n", record.human()));
        let gap = Gap::new(7, "subscriber lagged");
        assert_eq!(shown(&mut human, json_line(&gap)), format!("{}\n", gap.human()));
        // A kind this version does not know: its JSON as it came.
        let future = b"{\"kind\":\"telemetry\",\"x\":1}";
        assert_eq!(human.line(future).out.as_deref(), Some(&b"{\"kind\":\"telemetry\",\"x\":1}\n"[..]));
    }

    #[test]
    fn a_line_that_is_not_json_passes_with_one_warning() {
        for format in [Format::Human, Format::Json] {
            let mut v = view(&["myapp"], &[Decision::Denied], format);
            let first = v.line(b"not json\n");
            assert_eq!(first, Shown { out: Some(Cow::Borrowed(&b"not json\n"[..])), warning: Some(NOT_JSON_WARNING) });
            let second = v.line(b"{truncated\n");
            assert_eq!(second, Shown { out: Some(Cow::Borrowed(&b"{truncated\n"[..])), warning: None });
        }
        // Human form: the line still ends the line.
        let mut v = view(&[], &[], Format::Human);
        assert_eq!(v.line(b"partial").out.as_deref(), Some(&b"partial\n"[..]));
    }
}
