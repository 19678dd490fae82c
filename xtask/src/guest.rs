//! The two guest images the VM tasks boot.
//!
//! - `busybox_image`: busybox, guard and vm-tests; `/init` runs one command.
//!   Reaches the command in ~5 s. Used by the scenario suite and the bench.
//! - `systemd_image`: a debootstrapped Debian (bookworm's systemd 252 for the
//!   6.1 kernel, trixie's 257 for 6.12) with guard.service enforcing the
//!   repo's `policies/` plus `vm-tests/policies/`, the units those protect
//!   (the demo, and the seed setups of the systemd suite), and a oneshot that
//!   runs `vm-tests <command>` and powers off.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::{
    initramfs::Initramfs,
    rootfs::{install_unit, systemd_initramfs},
    vm::guest_init_script,
};

pub struct Binaries<'a> {
    pub guard: &'a Path,
    pub vm_tests: &'a Path,
}

/// Where the busybox guest finds the kernel's loop driver.
pub const LOOP_MODULE: &str = "/lib/modules/loop.ko";

pub fn busybox_image(bins: &Binaries<'_>, loop_ko: &Path, command: &str, out: &Path) -> Result<()> {
    let mut ir = Initramfs::new();
    ir.busybox_base()?;
    ir.file_from_host("/bin/guard", bins.guard, 0o755)?;
    ir.file_from_host("/bin/vm-tests", bins.vm_tests, 0o755)?;
    ir.dir("/lib/modules", 0o755);
    ir.file_from_host(LOOP_MODULE, loop_ko, 0o644)?;
    ir.file_bytes("/init", guest_init_script(command).into_bytes(), 0o755);
    ir.write(out)
}

const GUARD_UNIT: &str = "[Unit]
Description=guard: kernel-enforced secret confinement (BPF LSM)
Before=demo.service
After=guard-seed.service

[Service]
ExecStartPre=/bin/rm -f /tmp/guard.ready
# systemd (PID 1, systemd-executor) may put processes into protected units'
# cgroups; so may the test harness, which places its probes into units.
ExecStart=/usr/bin/guard run --policy-dir /etc/guard/policies --events-file /tmp/events.jsonl --ready-file /tmp/guard.ready --reconcile-ms 250 --cgroup-writer /usr/bin/vm-tests
# The unit is started once the hooks are attached.
ExecStartPost=/bin/sh -c 'for i in $(seq 1 1200); do [ -e /tmp/guard.ready ] && exit 0; sleep 0.1; done; exit 1'
StandardOutput=append:/tmp/guard.log
StandardError=append:/tmp/guard.log

[Install]
WantedBy=multi-user.target
";

const DEMO_UNIT: &str = "[Unit]
Description=guard demo: a service holding a credential
Wants=guard.service
After=guard.service

[Service]
User=svc
RuntimeDirectory=demo
# Not SetCredential=: that keeps the secret in plain text in this file and in
# the unit's D-Bus properties, readable by every local user. The source file
# is root's (0600) and in the demo policy's setup_only: only systemd's
# credential setup for demo.service may read it.
LoadCredential=api-token:/etc/credstore/demo-api-token
ExecStart=/bin/sh -c 'if cat \"$CREDENTIALS_DIRECTORY/api-token\" >/dev/null; then echo \"read ok\"; else echo \"read FAILED\"; fi > /run/demo/start.log; exec sleep infinity'

[Install]
WantedBy=multi-user.target
";

/// Encrypts the seed setups' credentials with the host key (made on first
/// use), before guard confines it: `systemd-creds encrypt` needs the key.
/// The `.cred` files (and their directory, 0000 from systemd 254's tmpfiles)
/// are made world-readable (they are useless without the key) so that file
/// permissions do not hide what guard does with them.
const SEED_CREDS_UNIT: &str = "[Unit]
Description=encrypt the test credentials (systemd-creds, host key)
Before=guard.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mkdir -p /etc/credstore.encrypted && printf myapp-api-key-42 | systemd-creds encrypt --with-key=host --name=api_key - /etc/credstore.encrypted/api_key.cred && printf plain-secret-7 | systemd-creds encrypt --with-key=host --name=plain - /etc/credstore.encrypted/plain.cred && chmod 0755 /etc/credstore.encrypted && chmod 0644 /etc/credstore.encrypted/*.cred'

[Install]
WantedBy=multi-user.target
";

/// The seed setup of issue 8: DynamicUser=, PrivateMounts=, an encrypted
/// credential, a secret under StateDirectory=. Reads both first thing and
/// appends the outcome of every start to /run/myapp-log/start.log.
const MYAPP_UNIT: &str = "[Unit]
Description=seed setup: DynamicUser, PrivateMounts, LoadCredentialEncrypted, StateDirectory
Wants=guard.service
After=guard.service guard-seed.service
# The suite restarts it 20 times in a row.
StartLimitIntervalSec=0

[Service]
DynamicUser=yes
PrivateMounts=yes
LoadCredentialEncrypted=api_key:/etc/credstore.encrypted/api_key.cred
StateDirectory=myapp
RuntimeDirectory=myapp-log
RuntimeDirectoryPreserve=yes
ExecStart=/bin/sh -c '{ if cat \"$CREDENTIALS_DIRECTORY/api_key\" >/dev/null; then echo cred-ok; else echo cred-FAIL; fi; if cat /var/lib/myapp/secret >/dev/null; then echo state-ok; else echo state-FAIL; fi; } >> /run/myapp-log/start.log 2>&1; exec sleep infinity'
ExecReload=/bin/true

[Install]
WantedBy=multi-user.target
";

/// LoadCredential= from a plain file, PrivateMounts=, a static User=, and
/// RefreshOnReload=credentials (systemd 260 on; older ones ignore the
/// line): each start reads the credential as the unit's user and appends
/// the outcome to /run/loader-log/start.log.
const LOADER_UNIT: &str = "[Unit]
Description=seed setup: LoadCredential from a file, PrivateMounts, refresh on reload
Wants=guard.service
After=guard.service
StartLimitIntervalSec=0

[Service]
User=svc
PrivateMounts=yes
LoadCredential=token:/etc/loader/token
RefreshOnReload=credentials
RuntimeDirectory=loader-log
RuntimeDirectoryPreserve=yes
ExecStart=/bin/sh -c 'if cat \"$CREDENTIALS_DIRECTORY/token\" >/dev/null; then echo start-ok; else echo start-FAIL; fi >> /run/loader-log/start.log 2>&1; exec sleep infinity'
ExecReload=/bin/true

[Install]
WantedBy=multi-user.target
";

/// Two units with the same static User=svc2, each with its own secrets.
fn twin_unit(name: &str) -> String {
    format!(
        "[Unit]
Description=seed setup: static User= shared with another unit ({name})
Wants=guard.service
After=guard.service

[Service]
User=svc2
RuntimeDirectory={name}
SetCredential=token:{name}-secret
ExecStart=/bin/sh -c '{{ if cat \"$CREDENTIALS_DIRECTORY/token\" /etc/{name}/secret >/dev/null; then echo own-ok; else echo own-FAIL; fi; }} > /run/{name}/start.log 2>&1; exec sleep infinity'

[Install]
WantedBy=multi-user.target
"
    )
}

/// A unit whose ExecStart= is a shell that starts the service's binary.
/// The shell tries its credential itself first: its own open, in a
/// subshell (`(exec 3< file)`: a failed redirection of a special builtin
/// ends a POSIX shell, which must not take the unit down).
const BOUND_UNIT: &str = "[Unit]
Description=seed setup: a shell starting the service binary (executable binding)
Wants=guard.service
After=guard.service

[Service]
User=svc
RuntimeDirectory=bound
SetCredential=token:bound-secret
ExecStart=/bin/sh -c 'if (exec 3< \"$CREDENTIALS_DIRECTORY/token\") 2>/dev/null; then echo shell-READ; else echo shell-denied; fi > /run/bound/start.log 2>&1; /usr/bin/bound-app app \"$CREDENTIALS_DIRECTORY/token\" /run/bound/start.log; exec sleep infinity'

[Install]
WantedBy=multi-user.target
";

/// A unit guard has no policy for, with an encrypted credential: systemd
/// must still decrypt it while guard confines the host key.
const PLAIN_UNIT: &str = "[Unit]
Description=an unprotected unit with an encrypted credential
After=guard.service guard-seed.service

[Service]
LoadCredentialEncrypted=plain:/etc/credstore.encrypted/plain.cred
RuntimeDirectory=plain
ExecStart=/bin/sh -c 'if cat \"$CREDENTIALS_DIRECTORY/plain\" >/dev/null; then echo cred-ok; else echo cred-FAIL; fi > /run/plain/start.log 2>&1; exec sleep infinity'

[Install]
WantedBy=multi-user.target
";

/// A service rolled out with a policy in audit mode (`guard policy
/// suggest`): DynamicUser=, and a helper run as root in the unit
/// (ExecStartPre=+). Not enabled: the systemd suite starts it.
const ROLLOUT_UNIT: &str = "[Unit]
Description=seed setup: a service rolled out in audit mode
After=guard.service

[Service]
DynamicUser=yes
RuntimeDirectory=rollout
RuntimeDirectoryPreserve=yes
ExecStartPre=+/usr/bin/head -c 1 /etc/rollout/secret
ExecStart=/bin/sh -c 'if cat /etc/rollout/secret >/dev/null; then echo read-ok; else echo read-FAIL; fi >> /run/rollout/start.log 2>&1; exec sleep infinity'
";

/// demo.service's credential source (`LoadCredential=`), root's only.
fn demo_credential_source(ir: &mut Initramfs) {
    ir.dir("/etc/credstore", 0o700);
    ir.file_bytes("/etc/credstore/demo-api-token", b"demo-secret-123".to_vec(), 0o600);
}

fn test_unit(command: &str) -> String {
    format!(
        "[Unit]
Description=guard in-VM checks ({command})
After=guard.service demo.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c '/usr/bin/vm-tests {command} > /dev/ttyS0 2>&1; echo \"GUARD-VM-EXIT: $?\" > /dev/ttyS0; systemctl poweroff --no-block'

[Install]
WantedBy=multi-user.target
"
    )
}

/// The test accounts, added to the rootfs's own passwd and group files.
fn add_test_users(ir: &mut Initramfs, passwd: &str, group: &str) {
    ir.remove("/etc/passwd");
    ir.remove("/etc/group");
    ir.file_bytes(
        "/etc/passwd",
        format!(
            "{passwd}alice:x:1000:1000:login user:/tmp:/bin/sh\nsvc:x:1002:1002:demo service:/nonexistent:/usr/sbin/nologin\n\
             svc2:x:1003:1003:twin services:/nonexistent:/usr/sbin/nologin\n"
        )
        .into_bytes(),
        0o644,
    );
    ir.file_bytes("/etc/group", format!("{group}alice:x:1000:\nsvc:x:1002:\nsvc2:x:1003:\n").into_bytes(), 0o644);
}

/// Tries the demo credential as root the moment systemd starts it: ordered
/// `Requires=`/`After=guard.service`, it must find it refused, which holds
/// only if guard.service's readiness (Type=notify) comes once guard enforces.
const AFTER_GUARD_UNIT: &str = "[Unit]
Description=starts after guard.service is ready (package test)
Requires=guard.service
After=guard.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'if cat /run/credentials/demo.service/api-token >/dev/null 2>&1; then echo READ; else echo refused; fi > /run/after-guard.log'
";

/// The package suite's image (`vm-tests package`): the rootfs with no guard
/// installed and no policy; the two packages in /root (`debs`, of
/// `deb::TEST_VERSIONS`); demo.service running with its credential;
/// myapp.service installed but never started (for `from-unit`);
/// after-guard.service (not enabled).
pub fn package_image(rootfs: &Path, vm_tests: &Path, debs: &[PathBuf; 2], out: &Path) -> Result<()> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd"))?;
    let group = std::fs::read_to_string(rootfs.join("etc/group"))?;
    systemd_initramfs(
        rootfs,
        |ir| {
            ir.file_from_host("/usr/bin/vm-tests", vm_tests, 0o755)?;
            add_test_users(ir, &passwd, &group);
            demo_credential_source(ir);
            for (deb, version) in debs.iter().zip(crate::deb::TEST_VERSIONS) {
                ir.file_from_host(&format!("/root/guard_{version}_amd64.deb"), deb, 0o644)?;
            }
            // The shipped guard.service lets no one but systemd place a
            // process into a protected unit, so the unit's own load comes
            // from the unit: `systemctl reload demo` runs a hammer there.
            let demo = DEMO_UNIT.replace(
                "[Service]\n",
                "[Service]\nExecReload=/bin/sh -c 'exec /usr/bin/vm-tests probe hammer /run/credentials/demo.service/api-token /tmp/upgrade.stop > /run/demo/hammer.log 2>&1'\nTimeoutSec=300\n",
            );
            install_unit(ir, "demo.service", &demo, "multi-user.target");
            ir.file_bytes("/etc/systemd/system/myapp.service", MYAPP_UNIT.as_bytes().to_vec(), 0o644);
            ir.file_bytes("/etc/systemd/system/after-guard.service", AFTER_GUARD_UNIT.as_bytes().to_vec(), 0o644);
            install_unit(ir, "guard-test.service", &test_unit("package"), "multi-user.target");
            Ok(())
        },
        out,
    )
}

/// `command` is `systemd` (assertions) or `demo` (narration).
/// `policies` are the repo's shipped ones; `test_policies` those only the
/// systemd suite uses (`vm-tests/policies`).
pub fn systemd_image(rootfs: &Path, bins: &Binaries<'_>, policies: &Path, test_policies: &Path, command: &str, out: &Path) -> Result<()> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd"))?;
    let group = std::fs::read_to_string(rootfs.join("etc/group"))?;
    systemd_initramfs(
        rootfs,
        |ir| {
            ir.file_from_host("/usr/bin/guard", bins.guard, 0o755)?;
            ir.file_from_host("/usr/bin/vm-tests", bins.vm_tests, 0o755)?;
            // Root's own program (not the harness): see the systemd suite.
            ir.file_from_host("/usr/bin/intruder", bins.vm_tests, 0o755)?;
            // bound.service's own binary (a copy with an inode of its own).
            ir.file_from_host("/usr/bin/bound-app", bins.vm_tests, 0o755)?;
            add_test_users(ir, &passwd, &group);
            demo_credential_source(ir);
            // Secrets of the seed setups: myapp's state (systemd chowns it to
            // the dynamic UID at start), each twin's own file.
            ir.dir("/var/lib/private", 0o700);
            ir.dir("/var/lib/private/myapp", 0o700);
            ir.file_bytes(
                "/var/lib/private/myapp/secret",
                b"myapp-state-secret".to_vec(),
                0o600,
            );
            ir.dir("/etc/loader", 0o755);
            ir.file_bytes("/etc/loader/token", b"loader-token-secret".to_vec(), 0o600);
            for twin in ["twin-a", "twin-b"] {
                ir.dir(&format!("/etc/{twin}"), 0o755);
                ir.file_bytes(&format!("/etc/{twin}/secret"), format!("{twin}-file-secret").into_bytes(), 0o644);
            }
            ir.dir("/etc/rollout", 0o755);
            ir.file_bytes("/etc/rollout/secret", b"rollout-secret".to_vec(), 0o644);
            ir.file_bytes("/etc/systemd/system/rollout.service", ROLLOUT_UNIT.as_bytes().to_vec(), 0o644);
            ir.dir("/etc/guard", 0o755);
            ir.dir("/etc/guard/policies", 0o755);
            for dir in [policies, test_policies] {
                for entry in std::fs::read_dir(dir)? {
                    let p = entry?.path();
                    if let Some(name) = p.file_name().and_then(|n| n.to_str()).filter(|n| n.ends_with(".toml")) {
                        ir.file_from_host(&format!("/etc/guard/policies/{name}"), &p, 0o644)?;
                    }
                }
            }
            install_unit(ir, "guard.service", GUARD_UNIT, "multi-user.target");
            install_unit(ir, "demo.service", DEMO_UNIT, "multi-user.target");
            install_unit(ir, "guard-seed.service", SEED_CREDS_UNIT, "multi-user.target");
            install_unit(ir, "myapp.service", MYAPP_UNIT, "multi-user.target");
            install_unit(ir, "twin-a.service", &twin_unit("twin-a"), "multi-user.target");
            install_unit(ir, "twin-b.service", &twin_unit("twin-b"), "multi-user.target");
            install_unit(ir, "bound.service", BOUND_UNIT, "multi-user.target");
            install_unit(ir, "plain.service", PLAIN_UNIT, "multi-user.target");
            install_unit(ir, "loader.service", LOADER_UNIT, "multi-user.target");
            install_unit(
                ir,
                "guard-test.service",
                &test_unit(command),
                "multi-user.target",
            );
            Ok(())
        },
        out,
    )
}

/// The peer benchmark's systemd image: the rootfs, guard, and one oneshot
/// unit running `guard <args>` (nothing of guard's own runs: no agent, no
/// seed units, so the baseline has no guard program attached). Its stdout
/// goes to the console between the bench markers.
pub fn systemd_bench_image(rootfs: &Path, bins: &Binaries<'_>, guard_args: &str, out: &Path) -> Result<()> {
    systemd_initramfs(
        rootfs,
        |ir| {
            ir.file_from_host("/usr/bin/guard", bins.guard, 0o755)?;
            let unit = format!(
                "[Unit]
Description=guard peer benchmark

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'exec > /dev/ttyS0 2>&1; echo GUARD-BENCH-JSON-BEGIN; /usr/bin/guard {guard_args}; rc=$?; echo GUARD-BENCH-JSON-END; echo \"GUARD-VM-EXIT: $rc\"; systemctl poweroff --no-block'

[Install]
WantedBy=multi-user.target
"
            );
            install_unit(ir, "guard-peers.service", &unit, "multi-user.target");
            Ok(())
        },
        out,
    )
}
