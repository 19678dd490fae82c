//! `guard manpages DIR` and `guard completions SHELL`, run as packaging
//! runs them: the pages and scripts exist and name what they should.

use std::{fs, path::PathBuf, process::Command};

fn guard(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_guard")).args(args).output().expect("run guard");
    assert!(
        out.status.success(),
        "guard {args:?}: {}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn manpages_for_guard_and_each_visible_subcommand() {
    let dir: PathBuf = std::env::temp_dir().join(format!("guard-manpages-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    guard(&["manpages", dir.to_str().unwrap()]);
    // roff escapes '-' as '\-'.
    let page = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")).replace("\\-", "-");
    for name in ["guard.1", "guard-run.1"] {
        assert!(page(name).contains("--policy-dir"), "{name} does not mention --policy-dir:\n{}", page(name));
    }
    for name in ["guard-check.1", "guard-status.1", "guard-events.1", "guard-completions.1"] {
        assert!(dir.join(name).exists(), "{name} missing");
    }
    assert!(page("guard-events.1").contains("--decision"));
    assert!(page("guard-policy-suggest.1").contains("--events-file"), "{}", page("guard-policy-suggest.1"));
    // Hidden subcommands get no page; neither does `help`.
    for name in ["guard-manpages.1", "guard-bench-worker.1", "guard-help.1"] {
        assert!(!dir.join(name).exists(), "{name} written");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn completion_scripts_name_the_subcommands() {
    let bash = String::from_utf8(guard(&["completions", "bash"]).stdout).unwrap();
    for word in ["run", "check", "events", "--policy-dir", "--decision"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = String::from_utf8(guard(&["completions", shell]).stdout).unwrap();
        assert!(script.contains("policy-dir"), "{shell} completion lacks --policy-dir");
        for hidden in ["bench-worker", "manpages"] {
            assert!(!script.contains(hidden), "{shell} completion offers the hidden {hidden}");
        }
    }
}
