//! Diagnostics: what is wrong, where (file:line:column, field), and how to fix it.
//!
//! Everything else in `policy` reports problems through [`Source::error`] and
//! [`Source::warning`], which turn the byte spans that `toml` gives us into
//! 1-based line and column numbers.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a [`Diagnostic`] is. Any error means nothing is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one policy file.
///
/// `line` and `column` are 1-based (the column counts characters, not bytes).
/// They are 0 for problems that belong to no position in a file: a missing
/// directory, an unreadable file, too many policies.
/// `field` is a dotted path (`alerts.burst`, `allow_users[1]`); it is empty
/// when the problem is not about one field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
    pub fix: Option<String>,
    pub severity: Severity,
}

impl Diagnostic {
    /// An error about a whole file or directory, with no position in it.
    pub(crate) fn file_error(
        file: &Path,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: message.into(),
            fix: Some(fix.into()),
            severity: Severity::Error,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `error: <file>:<line>:<col>: <field>: <message>` and, on the next line,
/// `  fix: <how to fix it>`; warnings start with `warning:` and have no fix line.
/// The position is left out when `line` is 0 and the field when it is empty.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

/// Why a policy set was refused: every error found in every file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors {
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyErrors {
    /// Number of distinct files (or directories) the errors are in.
    pub fn file_count(&self) -> usize {
        self.diagnostics
            .iter()
            .map(|d| &d.file)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        let errors = self.diagnostics.iter().filter(|d| d.is_error()).count();
        let files = self.file_count();
        write!(
            f,
            "{errors} {} in {files} {}; nothing was loaded",
            plural(errors, "error", "errors"),
            plural(files, "file", "files"),
        )
    }
}

impl std::error::Error for PolicyErrors {}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// The text of one policy file, for turning byte spans into line:column.
pub(crate) struct Source {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset at which each line starts.
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based (line, column) of a byte offset; the column counts characters.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line, column)
    }

    /// The source text of a span (empty if the span is out of range).
    pub fn snippet(&self, span: &Range<usize>) -> &str {
        self.text.get(span.clone()).unwrap_or("")
    }

    pub fn error(
        &self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Diagnostic {
        self.diagnostic(
            span,
            field.into(),
            message.into(),
            Some(fix.into()),
            Severity::Error,
        )
    }

    pub fn warning(
        &self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        self.diagnostic(span, field.into(), message.into(), None, Severity::Warning)
    }

    fn diagnostic(
        &self,
        span: &Range<usize>,
        field: String,
        message: String,
        fix: Option<String>,
        severity: Severity,
    ) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            file: self.path.clone(),
            line,
            column,
            field,
            message,
            fix,
            severity,
        }
    }
}

/// The candidate closest to `input`, if it is close enough to be a likely typo
/// (same letters in another case, or a small edit distance).
pub(crate) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = input.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let candidate_lower = candidate.to_lowercase();
        let distance = if candidate_lower == lower {
            0
        } else if lower.len() >= 3
            && (candidate_lower.starts_with(&lower) || lower.starts_with(&candidate_lower))
        {
            1
        } else if common_prefix(&lower, &candidate_lower) >= 4 {
            2
        } else {
            edit_distance(&lower, &candidate_lower)
        };
        let limit = (candidate.chars().count() / 3).max(2);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}
