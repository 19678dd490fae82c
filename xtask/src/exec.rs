//! Running external commands with useful error messages.
//!
//! Every command is echoed as `==> <cmdline>` on stderr before it runs, and a
//! failure names the full command line and its exit status.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// Quote one word for display the way a POSIX shell would need it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command as a copy-pasteable shell line: `[cd DIR &&] [VAR=value ...] prog args...`.
pub fn cmdline(cmd: &Command) -> String {
    let mut parts = Vec::new();
    if let Some(dir) = cmd.get_current_dir() {
        parts.push(format!("cd {} &&", shell_quote(&dir.to_string_lossy())));
    }
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!(
                "{}={}",
                key.to_string_lossy(),
                shell_quote(&value.to_string_lossy())
            ));
        }
    }
    parts.push(shell_quote(&cmd.get_program().to_string_lossy()));
    parts.extend(cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// Run `cmd` with inherited stdio; error if it cannot be spawned or exits non-zero.
pub fn exec(cmd: &mut Command) -> Result<()> {
    let line = cmdline(cmd);
    eprintln!("==> {line}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !status.success() {
        bail!("command `{line}` failed: {status}");
    }
    Ok(())
}

/// Run `cmd` and return its stdout (stderr is inherited); error as [`exec`].
pub fn exec_output(cmd: &mut Command) -> Result<String> {
    let line = cmdline(cmd);
    eprintln!("==> {line}");
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !output.status.success() {
        bail!("command `{line}` failed: {}", output.status);
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{line}` printed non-UTF-8 output"))
}

/// The one `.deb` that `apt-get download` left in `work`, unpacked into
/// `work/x` with `dpkg-deb -x`: returns (the .deb, the unpacked tree).
pub fn unpack_downloaded_deb(work: &Path) -> Result<(PathBuf, PathBuf)> {
    let deb = std::fs::read_dir(work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", work.display()))?;
    let extract = work.join("x");
    exec(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extract))?;
    Ok((deb, extract))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_quotes() {
        let mut c = Command::new("echo");
        c.arg("a b").arg("it's").arg("plain-1.0").env("X", "y z");
        assert_eq!(cmdline(&c), r"X='y z' echo 'a b' 'it'\''s' plain-1.0");
    }

    #[test]
    fn exec_reports_failure() {
        let err = exec(&mut Command::new("false")).unwrap_err().to_string();
        assert!(
            err.contains("`false`") && err.contains("exit status: 1"),
            "{err}"
        );
        assert_eq!(exec_output(Command::new("echo").arg("hi")).unwrap(), "hi\n");
        let err = exec_output(Command::new("sh").args(["-c", "exit 4"])).unwrap_err();
        assert!(err.to_string().contains("exit status: 4"), "{err}");
    }
}
