//! Man pages and shell completion scripts, generated from the clap
//! definition, so they never disagree with `--help`.
//!
//! `guard completions SHELL` prints a script; the hidden `guard manpages
//! DIR` writes `guard.1` and one page per visible subcommand
//! (`guard-run.1`, ...). Packaging ships both:
//! `/usr/share/man/man1/*.1.gz`, `/usr/share/bash-completion/completions/guard`,
//! `/usr/share/zsh/vendor-completions/_guard`,
//! `/usr/share/fish/vendor_completions.d/guard.fish`.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use clap::Command;
use clap_complete::Shell;

/// Writes `shell`'s completion script for `cmd` to `out`, without its
/// hidden subcommands.
pub fn completions(cmd: Command, shell: Shell, out: &mut dyn Write) {
    let mut cmd = without_hidden(cmd);
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// `cmd` without its hidden subcommands, at any depth. clap_complete
/// completes hidden subcommands (clap-rs/clap#1335) and clap has no way to
/// remove one, so a command that has any is assembled again from its own
/// parts (what completions use: name, texts, arguments, groups) and its
/// visible subcommands.
fn without_hidden(cmd: Command) -> Command {
    if !cmd.get_subcommands().any(|s| s.is_hide_set() || s.has_subcommands()) {
        return cmd;
    }
    let subcommands: Vec<Command> =
        cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned().map(without_hidden).collect();
    // Names and versions are `&'static str` without clap's `string` feature;
    // this runs once per process.
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let mut out = Command::new(leak(cmd.get_name()))
        .args(cmd.get_arguments().cloned())
        .groups(cmd.get_groups().cloned())
        .subcommands(subcommands)
        .hide(cmd.is_hide_set());
    if let Some(version) = cmd.get_version() {
        out = out.version(leak(version));
    }
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(about) = cmd.get_long_about() {
        out = out.long_about(about.clone());
    }
    out
}

/// Writes `<cmd>.1` and a page per subcommand that is not hidden, at any
/// depth, into `dir` (created if missing); returns the files written.
pub fn manpages(cmd: Command, dir: &Path) -> Result<Vec<PathBuf>> {
    fn write(cmd: Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), dir, written)?;
        }
        let page = clap_mangen::Man::new(cmd);
        let path = page.generate_to(dir).with_context(|| format!("writing {}", dir.join(page.get_filename()).display()))?;
        written.push(path);
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Built once at the top, so that subcommands are named `guard-run`.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write(cmd, dir, &mut written)?;
    Ok(written)
}
