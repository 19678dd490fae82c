//! Where a protected unit's secret is already out: `SetCredential=` (plain
//! text in the unit file, usually world-readable, and in the unit's
//! `SetCredential` D-Bus property), `Environment=` lines that look like
//! secrets (any local user reads them with `systemctl show`), and
//! world-readable `EnvironmentFile=`s holding such variables. guard
//! protects the copies systemd makes for the unit, not these. Named by
//! `guard check`, `guard policy from-unit` and `guard run`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::from_unit::{unit_object_path, Credentials};

/// Variable names that look like they hold a secret.
const SECRET_WORDS: &[&str] = &["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "PRIVATE_KEY", "CREDENTIAL", "AUTH"];

pub fn looks_secret(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| up.contains(w))
}

/// Names of `NAME=value` words that look like secrets.
pub fn secret_names(assignments: &str) -> Vec<String> {
    assignments
        .split_whitespace()
        .filter_map(|w| w.trim_matches('"').split_once('=').map(|(n, _)| n.to_string()))
        .filter(|n| looks_secret(n))
        .collect()
}

/// What systemd says of `unit`, for these checks.
#[derive(Debug, Default, Clone)]
pub struct UnitView {
    pub fragment_path: String,
    pub environment: String,
    /// Paths of `EnvironmentFile=`.
    pub environment_files: Vec<String>,
    pub set_credentials: Vec<String>,
}

/// The warnings for one protected unit.
pub fn warnings(unit: &str, v: &UnitView) -> Vec<String> {
    let mut out = Vec::new();
    let file = if v.fragment_path.is_empty() { "the unit file".to_string() } else { v.fragment_path.clone() };
    if !v.set_credentials.is_empty() {
        out.push(format!(
            "{unit}: SetCredential={} keeps the secret in plain text in {file} (world-readable: `systemctl cat {unit}`) and in the unit's \
             SetCredential D-Bus property, where guard cannot protect it; use SetCredentialEncrypted= (`systemd-creds encrypt`) \
             or LoadCredential=ID:/etc/credstore/ID with that file in the policy's setup_only",
            v.set_credentials.join(", SetCredential="),
        ));
    }
    let names = secret_names(&v.environment);
    if !names.is_empty() {
        out.push(format!(
            "{unit}: Environment= sets {} in {file}, readable by every local user (`systemctl show -p Environment {unit}`); \
             pass the secret as a credential instead (LoadCredential= from a file guard protects)",
            names.join(", ")
        ));
    }
    for f in &v.environment_files {
        let Ok(meta) = std::fs::metadata(f) else { continue };
        if meta.permissions().mode() & 0o004 == 0 {
            continue;
        }
        let names = secret_names(&std::fs::read_to_string(f).unwrap_or_default());
        if !names.is_empty() {
            out.push(format!(
                "{unit}: EnvironmentFile={f} is world-readable and sets {}; chmod 0600 it and protect it in the policy, \
                 or pass the secret as a credential (LoadCredential=)",
                names.join(", ")
            ));
        }
    }
    out
}

/// Asks systemd (`systemctl show`, `busctl`); `None` where there is no
/// systemd to ask (a build host): nothing to say then.
pub fn view(unit: &str) -> Option<UnitView> {
    let out = Command::new("systemctl")
        .args(["show", "--no-pager", unit, "--property=LoadState,FragmentPath,Environment,EnvironmentFiles"])
        .env("LC_ALL", "C")
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut v = UnitView::default();
    let mut loaded = false;
    for line in text.lines() {
        let Some((k, val)) = line.split_once('=') else { continue };
        match k {
            "LoadState" => loaded = val == "loaded",
            "FragmentPath" => v.fragment_path = val.to_string(),
            "Environment" => v.environment = val.to_string(),
            // "EnvironmentFiles=/etc/x (ignore_errors=no)", one per line.
            "EnvironmentFiles" => v.environment_files.extend(val.split(" (").next().filter(|p| !p.is_empty()).map(str::to_string)),
            _ => {}
        }
    }
    if !loaded {
        return None;
    }
    let bus = Command::new("busctl")
        .args(["--json=short", "get-property", "org.freedesktop.systemd1"])
        .arg(unit_object_path(unit))
        .args(["org.freedesktop.systemd1.Service", "LoadCredential", "LoadCredentialEncrypted", "SetCredential", "SetCredentialEncrypted"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(c) = bus.and_then(|o| Credentials::parse_busctl(&String::from_utf8_lossy(&o.stdout)).ok()) {
        v.set_credentials = c.set;
    }
    Some(v)
}

/// The warnings for every unit of `policies` systemd knows.
pub fn for_policies(policies: &[crate::policy::Policy]) -> Vec<String> {
    policies.iter().filter(|p| !p.any_unit()).filter_map(|p| view(&p.unit).map(|v| warnings(&p.unit, &v))).flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_set_credentials_and_secret_looking_environment() {
        let dir = std::env::temp_dir().join(format!("guard-exposure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = dir.join("open.env");
        std::fs::write(&open, "DB_PASSWORD=x\nLOG_LEVEL=debug\n").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let closed = dir.join("closed.env");
        std::fs::write(&closed, "DB_PASSWORD=x\n").unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o600)).unwrap();
        let v = UnitView {
            fragment_path: "/etc/systemd/system/demo.service".into(),
            environment: "LANG=C API_TOKEN=abc \"MY_SECRET=a b\"".into(),
            environment_files: vec![open.display().to_string(), closed.display().to_string()],
            set_credentials: vec!["api-token".into()],
        };
        let w = warnings("demo.service", &v);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w[0].contains("SetCredential=api-token") && w[0].contains("/etc/systemd/system/demo.service") && w[0].contains("SetCredentialEncrypted="));
        assert!(w[1].contains("API_TOKEN, MY_SECRET") && !w[1].contains("LANG"), "{}", w[1]);
        assert!(w[2].contains("open.env") && w[2].contains("DB_PASSWORD") && !w[2].contains("LOG_LEVEL"), "{}", w[2]);
        assert!(warnings("x.service", &UnitView::default()).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
