//! `guard policy suggest`: the policy change that would allow what guard
//! recorded (audit-mode and enforce-mode records), for review. It never
//! applies anything: it prints a commented policy or a diff, checked by
//! guard's own loader first.
//!
//! - `read.rs`: records from the journal or an events file;
//! - `group.rs`: openers (executable, unit, UID), flags, the proposal;
//! - `render.rs`: the proposal as a commented policy file;
//! - `diff.rs`: a unified diff against the current file;
//! - here: the command.

mod diff;
mod group;
mod read;
mod render;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::from_unit::{parse_mode, unit_name, validate, write_policy, Overwrite};
use crate::policy::{self, Mode, Passwd};

#[derive(clap::Args, Debug)]
pub struct SuggestArgs {
    /// Read the records from this events file (JSON lines, as `guard run
    /// --events-file` writes) instead of the systemd journal.
    #[arg(long, value_name = "FILE")]
    events_file: Option<PathBuf>,
    /// Journal only: records since this time (as `journalctl --since`, e.g. "-7d" or "2026-12-01").
    #[arg(long, conflicts_with = "events_file")]
    since: Option<String>,
    /// The policy directory in force; the suggestion extends the unit's file there.
    #[arg(long, default_value = "/etc/guard/policies")]
    policy_dir: PathBuf,
    /// The unit to suggest for (`myapp` means `myapp.service`); needed when the records name several.
    #[arg(long)]
    unit: Option<String>,
    /// Allow a flagged opener of the unit anyway (a root shell the unit
    /// itself runs): its executable's path or file name, or uid:N. Repeatable.
    #[arg(long, value_name = "OPENER")]
    include: Vec<String>,
    /// Print a unified diff against the current policy file instead of the whole suggested file.
    #[arg(long)]
    diff: bool,
    /// The suggested policy's mode (default: the current one's; "audit" for a new policy).
    #[arg(long, value_parser = parse_mode)]
    mode: Option<Mode>,
    /// Write the suggestion to FILE instead of stdout (never into the policy directory).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Overwrite FILE.
    #[arg(long)]
    force: bool,
    /// The passwd file user names are looked up in.
    #[arg(long, default_value = "/etc/passwd")]
    passwd: PathBuf,
}

pub fn main(args: SuggestArgs) -> ExitCode {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `out` would land in the policy directory (where the agent's next
/// reload would pick it up: that would be applying it).
fn inside(out: &Path, dir: &Path) -> bool {
    let abs = |p: &Path| {
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        parent.canonicalize().map(|d| d.join(p.file_name().unwrap_or_default())).unwrap_or_else(|_| p.to_path_buf())
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    abs(out).starts_with(&dir) || abs(out) == dir
}

fn run(args: &SuggestArgs) -> Result<ExitCode> {
    if let Some(out) = &args.output {
        if inside(out, &args.policy_dir) {
            bail!(
                "--output {} is in the policy directory {}: guard's next reload would apply it unreviewed. Write it elsewhere, review it, then copy it in",
                out.display(),
                args.policy_dir.display()
            );
        }
    }
    let seen = match &args.events_file {
        Some(f) => read::events_file(f)?,
        None => read::journal(args.since.as_deref())?,
    };
    let from = args.events_file.as_ref().map_or("the journal".to_string(), |f| f.display().to_string());
    let groups = group::group(&seen);
    let tamper = groups.get("");
    let units: Vec<&String> = match &args.unit {
        Some(u) => {
            let u = unit_name(u);
            match groups.keys().find(|k| **k == u) {
                Some(k) => vec![k],
                None => {
                    eprintln!("no access records of {u} in {from}: nothing to suggest");
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        None => groups.keys().filter(|k| !k.is_empty()).collect(),
    };
    if units.is_empty() {
        eprintln!("no access records in {from}: nothing to suggest");
        return Ok(ExitCode::SUCCESS);
    }
    if units.len() > 1 && !args.diff {
        bail!(
            "the records name {} units ({}): pass --unit UNIT for one file, or --diff for a diff of each",
            units.len(),
            units.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let set = if args.policy_dir.exists() {
        match policy::load(&args.policy_dir, &args.passwd) {
            Ok(set) => Some(set),
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("error: the policy directory has errors; fix them first (`guard check {}`)", args.policy_dir.display());
                return Ok(ExitCode::from(crate::exit::POLICY_INVALID));
            }
        }
    } else {
        eprintln!("note: {} does not exist; suggesting new policies", args.policy_dir.display());
        None
    };
    let passwd = Passwd::read(&args.passwd).ok();
    let mut out = String::new();
    for unit in units {
        let g = &groups[unit];
        let current = set.as_ref().and_then(|s| s.policies.iter().find(|p| p.unit == *unit));
        let text = match current {
            Some(p) => Some(std::fs::read_to_string(&p.source).with_context(|| format!("reading {}", p.source.display()))?),
            None => None,
        };
        let proposal = group::propose(g, current, &args.include, passwd.as_ref());
        let suggested = render::render(g, &proposal, current.zip(text.as_deref()), args.mode, tamper)?;
        if let Err(errors) = validate(&suggested, unit, &args.passwd)? {
            eprintln!("{suggested}\n{errors}");
            bail!("the suggestion for {unit} does not pass `guard check` (a bug in guard: please report it); nothing was written");
        }
        let attacks = proposal.left_out.iter().filter(|(_, f)| f.attack()).count();
        eprintln!(
            "{unit}: {} openers allowed, {} left out ({attacks} look like attacks){}",
            proposal.allowed.len(),
            proposal.left_out.len(),
            if proposal.changes() { "" } else { "; no change needed" }
        );
        if args.diff {
            let old_name = current.map_or("/dev/null".to_string(), |p| p.source.display().to_string());
            out += &diff::unified(&old_name, text.as_deref().unwrap_or(""), &format!("{old_name} (suggested)"), &suggested);
        } else {
            out += &suggested;
        }
    }
    match &args.output {
        None => print!("{out}"),
        Some(path) => {
            write_policy(path, &out, if args.force { Overwrite::Yes } else { Overwrite::No })?;
            eprintln!("wrote {} (not applied)", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
