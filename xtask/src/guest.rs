//! The two guest images the VM tasks boot.
//!
//! - `busybox_image`: busybox, guard and vm-tests; `/init` runs one command.
//!   Reaches the command in ~5 s. Used by the scenario suite and the bench.
//! - `systemd_image`: a debootstrapped bookworm (systemd 252) with guard.service
//!   protecting demo.service's credential under the repo's `policies/`, and a
//!   oneshot that runs `vm-tests <command>` and powers off.

use std::path::Path;

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
SetCredential=api-token:demo-secret-123
ExecStart=/bin/sh -c 'if cat \"$CREDENTIALS_DIRECTORY/api-token\" >/dev/null; then echo \"read ok\"; else echo \"read FAILED\"; fi > /run/demo/start.log; exec sleep infinity'

[Install]
WantedBy=multi-user.target
";

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

/// `command` is `systemd` (assertions) or `demo` (narration).
pub fn systemd_image(rootfs: &Path, bins: &Binaries<'_>, policies: &Path, command: &str, out: &Path) -> Result<()> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd"))?;
    let group = std::fs::read_to_string(rootfs.join("etc/group"))?;
    systemd_initramfs(
        rootfs,
        |ir| {
            ir.file_from_host("/usr/bin/guard", bins.guard, 0o755)?;
            ir.file_from_host("/usr/bin/vm-tests", bins.vm_tests, 0o755)?;
            // Root's own program (not the harness): see the systemd suite.
            ir.file_from_host("/usr/bin/intruder", bins.vm_tests, 0o755)?;
            ir.remove("/etc/passwd");
            ir.remove("/etc/group");
            ir.file_bytes(
                "/etc/passwd",
                format!("{passwd}alice:x:1000:1000:login user:/tmp:/bin/sh\nsvc:x:1002:1002:demo service:/nonexistent:/usr/sbin/nologin\n").into_bytes(),
                0o644,
            );
            ir.file_bytes("/etc/group", format!("{group}alice:x:1000:\nsvc:x:1002:\n").into_bytes(), 0o644);
            ir.dir("/etc/guard", 0o755);
            ir.dir("/etc/guard/policies", 0o755);
            for entry in std::fs::read_dir(policies)? {
                let p = entry?.path();
                if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                    ir.file_from_host(&format!("/etc/guard/policies/{name}"), &p, 0o644)?;
                }
            }
            install_unit(ir, "guard.service", GUARD_UNIT, "multi-user.target");
            install_unit(ir, "demo.service", DEMO_UNIT, "multi-user.target");
            install_unit(ir, "guard-test.service", &test_unit(command), "multi-user.target");
            Ok(())
        },
        out,
    )
}
