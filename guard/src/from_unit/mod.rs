//! `guard policy from-unit UNIT`: a policy written from what systemd knows
//! of the unit, checked by guard's own loader before anything is written.
//!
//! - `props.rs`: systemd's view (`systemctl show`, `busctl`), parsed;
//! - `generate.rs`: that view as a commented policy text;
//! - here: running systemd's tools, validating, and writing the file
//!   (never over an existing one without asking).

mod generate;
mod props;

#[cfg(test)]
mod tests;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use crate::policy::{self, Mode, Passwd};
pub use generate::{generate, probe, Options};
#[cfg(test)]
use generate::{Generated, Kind};
pub use props::{unit_object_path, Credentials, UnitProps, BUS_PROPERTIES, SHOW_PROPERTIES};

#[derive(clap::Args, Debug)]
pub struct FromUnitArgs {
    /// The unit (`myapp` means `myapp.service`, as with systemctl).
    unit: String,
    /// Write the policy to FILE instead of stdout (asks before overwriting).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Overwrite FILE without asking.
    #[arg(long)]
    force: bool,
    /// "enforce" (refuse and record) or "audit" (only record, to roll out).
    #[arg(long, default_value = "enforce", value_parser = parse_mode)]
    mode: Mode,
    /// The passwd file user names are checked against (as `guard check --passwd`).
    #[arg(long, default_value = "/etc/passwd")]
    passwd: PathBuf,
}

/// `--mode`: the policy file's own spelling.
pub fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "enforce" => Ok(Mode::Enforce),
        "audit" => Ok(Mode::Audit),
        other => Err(format!("unknown mode \"{other}\": use \"enforce\" (refuse and record) or \"audit\" (only record)")),
    }
}

/// Adds `.service` to a name without a unit type, as systemctl does.
pub fn unit_name(name: &str) -> String {
    const TYPES: &[&str] = &[
        "service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope",
    ];
    match name.rsplit_once('.') {
        Some((base, suffix)) if !base.is_empty() && TYPES.contains(&suffix) => name.to_string(),
        _ => format!("{name}.service"),
    }
}

pub fn main(args: FromUnitArgs) -> ExitCode {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &FromUnitArgs) -> Result<ExitCode> {
    let unit = unit_name(&args.unit);
    let mut props = UnitProps::parse(&systemctl_show(&unit)?)?;
    generate::check_loaded(&props)?;
    if props.id != unit {
        eprintln!("note: {unit} is {}; the policy names {}", props.id, props.id);
    }
    props.credentials = Credentials::parse_busctl(&busctl_credentials(&props.id)?)?;

    let passwd = Passwd::read(&args.passwd);
    if let Err(e) = &passwd {
        eprintln!("warning: cannot read {}: {e}; user names are not checked", args.passwd.display());
    }
    let opts = Options {
        mode: args.mode,
        passwd: passwd.as_ref().ok(),
        passwd_path: &args.passwd,
        probe: &probe,
    };
    let generated = generate(&props, &opts)?;
    for w in &generated.warnings {
        eprintln!("warning: {w}");
    }
    // Environment= and EnvironmentFile= (SetCredential= is among the warnings above).
    if let Some(mut view) = crate::exposure::view(&props.id) {
        view.set_credentials.clear();
        for w in crate::exposure::warnings(&props.id, &view) {
            eprintln!("warning: {w}");
        }
    }
    if let Err(errors) = validate(&generated.text, &props.id, &args.passwd)? {
        eprintln!("{}", generated.text);
        eprintln!("{errors}");
        eprintln!("error: the generated policy does not pass `guard check`; nothing was written");
        return Ok(ExitCode::from(crate::exit::POLICY_INVALID));
    }
    match &args.output {
        None => print!("{}", generated.text),
        Some(path) => {
            let overwrite = if args.force {
                Overwrite::Yes
            } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
                Overwrite::Ask(&mut ask_tty)
            } else {
                Overwrite::No
            };
            write_policy(path, &generated.text, overwrite)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `systemctl show UNIT --property=...`: systemd's own view, which loads a
/// unit that is not running.
fn systemctl_show(unit: &str) -> Result<String> {
    let mut cmd = Command::new("systemctl");
    cmd.args(["show", "--no-pager", unit, &format!("--property={}", SHOW_PROPERTIES.join(","))]);
    run_tool(cmd, "systemctl show")
}

/// The credential settings, which `systemctl show` prints as `[unprintable]`.
fn busctl_credentials(unit: &str) -> Result<String> {
    let mut cmd = Command::new("busctl");
    cmd.args(["--json=short", "get-property", "org.freedesktop.systemd1"])
        .arg(unit_object_path(unit))
        .arg("org.freedesktop.systemd1.Service")
        .args(BUS_PROPERTIES);
    run_tool(cmd, "busctl get-property")
}

fn run_tool(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.env("LC_ALL", "C").output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run {what}: {e}; `guard policy from-unit` reads systemd's view of the unit: run it on the machine (or in the container) that runs the unit"
        )
    })?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).with_context(|| format!("{what} printed text that is not UTF-8"))
}

/// Loads `text` as the single policy file `<unit>.toml` with guard's own
/// loader, as `guard check FILE --passwd PASSWD` would. `Ok(Err(..))`: invalid.
pub fn validate(text: &str, unit: &str, passwd: &Path) -> Result<Result<policy::PolicySet, policy::PolicyErrors>> {
    let dir = std::env::temp_dir().join(format!("guard-from-unit-{}-{}", std::process::id(), unique()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("{}.toml", unit.trim_end_matches(".service")));
    let result = std::fs::write(&file, text)
        .with_context(|| format!("writing {}", file.display()))
        .map(|()| policy::load(&file, passwd));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// What to do when the output file exists.
pub enum Overwrite<'a> {
    /// `--force`.
    Yes,
    /// Not on a terminal: refuse.
    No,
    /// Ask; the function gets the question and answers it.
    Ask(&'a mut dyn FnMut(&str) -> Result<bool>),
}

/// Writes `text` to `path` through a temporary file in the same directory:
/// renamed over an existing file only if allowed, linked into place (which
/// fails if a file appeared meanwhile) otherwise.
pub fn write_policy(path: &Path, text: &str, overwrite: Overwrite<'_>) -> Result<()> {
    let exists = std::fs::symlink_metadata(path).is_ok();
    let replace = exists
        && match overwrite {
            Overwrite::Yes => true,
            Overwrite::No => bail!(
                "{} exists; not overwritten (no terminal to ask on): pass --force to overwrite it, or choose another --output",
                path.display()
            ),
            Overwrite::Ask(ask) => {
                if !ask(&format!("overwrite {}? [y/N] ", path.display()))? {
                    bail!("{} exists; not overwritten", path.display());
                }
                true
            }
        };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}-{}", name.to_string_lossy(), std::process::id(), unique()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    let placed = if replace {
        std::fs::rename(&tmp, path)
    } else {
        std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
    };
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            bail!("{} appeared while writing; not overwritten: pass --force to overwrite it", path.display());
        }
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Asks on the terminal; anything but y or yes is no.
fn ask_tty(question: &str) -> Result<bool> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}
