//! `guard check <PATH> [--passwd FILE]` run as a user would: the shipped
//! policies pass, a directory with a bad file fails with the file, line and
//! field of the problem on stderr.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn guard_check(args: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_guard"));
    cmd.arg("check").args(args);
    cmd.output().expect("run guard check")
}

fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("guard-policy-check-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn shipped_policies_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    // The shipped policies are valid against a stock Debian /etc/passwd.
    let out = guard_check(&[&dir]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok: 5 policies, 7 paths ("),
        "{}",
        show(&out)
    );
}

#[test]
fn bad_file_fails_with_file_line_and_field() {
    let tmp = TempDir::new("bad");
    let passwd = tmp.0.join("passwd");
    fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/sh\nmyapp:x:1002:1002::/:/bin/sh\n",
    )
    .unwrap();
    let dir = tmp.0.join("policies");
    fs::create_dir(&dir).unwrap();
    fs::write(
        dir.join("good.toml"),
        "unit = \"good.service\"\nmode = \"enforce\"\nallow_users = [\"myapp\"]\nprotect = [\"/etc/guard-check-test/good\"]\n",
    )
    .unwrap();
    fs::write(
        dir.join("bad.toml"),
        "unit = \"bad.service\"\nmode = \"Enforce\"\nallow_users = [0]\nprotect = [\"/etc/guard-check-test/bad\"]\n",
    )
    .unwrap();

    let out = guard_check(&[&dir, Path::new("--passwd"), &passwd]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:2:8: mode: "), "{}", show(&out));
    assert!(
        stderr.contains("did you mean \"enforce\"?"),
        "{}",
        show(&out)
    );
    assert!(
        !stderr.contains("good.toml:"),
        "only the bad file is blamed\n{}",
        show(&out)
    );
    assert!(
        stderr.contains("1 error in 1 file; nothing was loaded"),
        "{}",
        show(&out)
    );

    // Fixed, the same directory passes.
    fs::write(
        dir.join("bad.toml"),
        "unit = \"bad.service\"\nmode = \"enforce\"\nallow_users = [0]\nprotect = [\"/etc/guard-check-test/bad\"]\n",
    )
    .unwrap();
    let out = guard_check(&[&dir, Path::new("--passwd"), &passwd]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok: 2 policies, 2 paths (2 not present yet)"),
        "{}",
        show(&out)
    );
}
