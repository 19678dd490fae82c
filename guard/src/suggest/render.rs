//! A proposal as policy text: the current policy file with its
//! `allow_users` (and `executables`) extended, each addition explained in a
//! comment, under a header that lists every opener seen, allowed or left
//! out. With no current policy, a new file.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::group::{Group, Opener, Proposal, DYNAMIC_UIDS};
use crate::policy::{Document, Mode, Policy};

fn opener_line(o: &Opener) -> String {
    let unit = if o.key.opener_unit.is_empty() { "no unit".to_string() } else { format!("unit {}", o.key.opener_unit) };
    let user = if DYNAMIC_UIDS.contains(&o.key.uid) && !o.key.opener_unit.is_empty() {
        format!("uid {} (DynamicUser, @unit)", o.key.uid)
    } else if o.user.is_empty() {
        format!("uid {}", o.key.uid)
    } else {
        format!("uid {} ({})", o.key.uid, o.user)
    };
    format!(
        "{} | {unit} | {user} | {} {} ({}) | {} .. {}",
        o.exe_label(),
        o.count,
        if o.count == 1 { "open" } else { "opens" },
        o.decisions.iter().cloned().collect::<Vec<_>>().join("/"),
        o.first,
        o.last
    )
}

/// The comment block at the top: what was seen and what was done with it.
pub fn header(g: &Group, p: &Proposal, tamper: Option<&Group>) -> String {
    let mut s = String::new();
    let first = g.openers.iter().map(|o| o.first.as_str()).min().unwrap_or("");
    let last = g.openers.iter().map(|o| o.last.as_str()).max().unwrap_or("");
    let _ = writeln!(s, "# Suggested by `guard policy suggest` for {} from {} records ({first} .. {last}).", g.unit, g.records);
    let _ = writeln!(s, "# NOT applied. Review it, check it (`guard check`), install it, then `guard reload`.");
    let _ = writeln!(s, "#");
    let _ = writeln!(s, "# Openers this suggestion allows (executable | unit | user | opens | first .. last):");
    if p.allowed.is_empty() {
        let _ = writeln!(s, "#   none");
    }
    for o in &p.allowed {
        let _ = writeln!(s, "#   {}", opener_line(o));
    }
    let _ = writeln!(s, "# Left out (still refused once enforced):");
    if p.left_out.is_empty() {
        let _ = writeln!(s, "#   none");
    }
    for (o, f) in &p.left_out {
        let _ = writeln!(s, "#   {}\n#     {}", opener_line(o), f.says());
    }
    if let Some(t) = tamper.filter(|t| !t.openers.is_empty()) {
        let _ = writeln!(s, "# Tamper records in the same period (attempts on guard itself, always refused):");
        for o in &t.openers {
            let _ = writeln!(s, "#   {}", opener_line(o));
        }
    }
    if !p.seen_executables.is_empty() && p.executables.is_empty() {
        let _ = writeln!(
            s,
            "# Executables seen inside the unit: {}. To refuse any other program started in it,\n# add executables = [...] with them (see policies/README.md).",
            p.seen_executables.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(s, "#");
    s
}

/// Inserts `items` before the closing `]` of the array text `value`.
fn extend_array(value: &str, items: &[String]) -> String {
    let close = value.rfind(']').unwrap_or(value.len());
    let before = value[..close].trim_end();
    let sep = if before.ends_with('[') || before.ends_with(',') { "" } else { ", " };
    format!("{before}{sep}{}{}", items.join(", "), &value[before.len()..])
}

/// Byte offset of the start of the line holding `offset`.
fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

/// The current policy text with the proposal applied (as text only).
pub fn edit(text: &str, p: &Proposal, mode: Option<Mode>) -> Result<String> {
    let doc = match Document::parse(text) {
        Ok(d) => d,
        Err(e) => bail!("the current policy is not valid TOML ({e}); fix it with `guard check` first"),
    };
    // (span start, span end, replacement), applied from the end.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (key, value) in &doc.0 {
        let span = value.span();
        let (insert, comment): (Vec<String>, Vec<String>) = match key.get_ref().as_str() {
            "allow_users" => p
                .users
                .iter()
                .map(|(u, who)| (u.toml(), format!("# suggest: {} for {}", u.toml(), who.join(", "))))
                .unzip(),
            "executables" => p.executables.iter().map(|e| (format!("\"{e}\""), format!("# suggest: \"{e}\", seen opening inside the unit"))).unzip(),
            "mode" => {
                if let Some(m) = mode {
                    edits.push((span.start, span.end, format!("\"{m}\"")));
                }
                continue;
            }
            _ => continue,
        };
        if insert.is_empty() {
            continue;
        }
        edits.push((span.start, span.end, extend_array(&text[span.clone()], &insert)));
        let at = line_start(text, key.span().start);
        edits.push((at, at, comment.iter().map(|c| format!("{c}\n")).collect()));
    }
    let mut out = text.to_string();
    edits.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    for (start, end, with) in edits {
        out.replace_range(start..end, &with);
    }
    Ok(out)
}

/// A new policy for a unit that has none.
pub fn new_policy(g: &Group, p: &Proposal, mode: Mode) -> Result<String> {
    if p.users.is_empty() {
        bail!(
            "no opener of {} itself can be allowed from these records, so there is no allow_users to suggest: write the policy with `guard policy from-unit {}` instead",
            g.unit,
            g.unit
        );
    }
    let mut s = String::new();
    let _ = writeln!(s, "unit = \"{}\"", g.unit);
    let _ = writeln!(s, "mode = \"{mode}\"");
    for (u, who) in &p.users {
        let _ = writeln!(s, "# suggest: {} for {}", u.toml(), who.join(", "));
    }
    let _ = writeln!(s, "allow_users = [{}]", p.users.keys().map(|u| u.toml()).collect::<Vec<_>>().join(", "));
    let mut protect: Vec<String> = p.protect.iter().map(|x| format!("\"{x}\"")).collect();
    if protect.is_empty() {
        protect.push(format!("\"/run/credentials/{}\"", g.unit));
    }
    let _ = writeln!(s, "protect = [{}]", protect.join(", "));
    Ok(s)
}

/// The whole suggested file: header, then the edited or new policy.
pub fn render(g: &Group, p: &Proposal, current: Option<(&Policy, &str)>, mode: Option<Mode>, tamper: Option<&Group>) -> Result<String> {
    let body = match current {
        Some((_, text)) => edit(text, p, mode)?,
        None => {
            let m = mode.unwrap_or(if g.modes.contains("enforce") { Mode::Enforce } else { Mode::Audit });
            new_policy(g, p, m)?
        }
    };
    Ok(format!("{}{body}", header(g, p, tamper)))
}
