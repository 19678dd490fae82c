//! Booting a test kernel + initramfs in QEMU (TCG only; KVM hangs on this
//! host) and watching its serial console.
//!
//! The guest reports its result with a console line `GUARD-VM-EXIT: <n>`.

#![allow(dead_code)] // Not every helper is used by every xtask command.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::exec::cmdline;
use crate::kernels::Kernel;

pub const SENTINEL: &str = "GUARD-VM-EXIT:";
pub const BOOTED: &str = "GUARD-VM-BOOTED";
/// Guest memory for the busybox VMs: the initramfs, tmpfs scratch and
/// `guard bench-host`'s 100,000 protected files with three guard instances
/// loaded (1 GiB ran out on 7.2).
pub const DEFAULT_MEM_MB: u32 = 2048;
/// Kernel command line always passed (before `extra_append`).
pub const BASE_APPEND: &str =
    "console=ttyS0 panic=-1 lsm=lockdown,capability,landlock,yama,apparmor,bpf";
/// QEMU CPU model. Not plain `max`: QEMU 7.2's TCG (bookworm's qemu) mis-emulates
/// `cmpxchg16b` as the 6.12 kernel's SLUB fast path uses it (`%gs:`-relative,
/// result taken from flags), corrupting EFLAGS; trixie-6.12 guests then die
/// at random (double fault / GPF in `__kmalloc_noprof`, `exc_debug_kernel`
/// warnings) in ~4 of 7 boots of the systemd image, also with `-cpu qemu64`
/// and `thread=single`. Without CX16 the kernel uses its software fallback:
/// 0 failures in 9 boots, no measurable slowdown. Override with `GUARD_VM_CPU`.
pub const QEMU_CPU: &str = "max,-cx16";
/// QEMU CPU model for kernels that need `cmpxchg16b`: from Linux 6.18 BPF
/// local storage (guard's inode storage) is allocated with `kmalloc_nolock`,
/// which always fails without it (`mm/slub.c`: "not supported on
/// architectures that don't implement cmpxchg16b"), so on 7.x every tag is
/// refused with ENOMEM. Every real x86-64 CPU guard targets has it.
pub const QEMU_CPU_CX16: &str = "max";

/// The CPU model to boot `kernel` (a `kernels::Kernel::name`) with.
pub fn qemu_cpu(kernel: &str) -> &'static str {
    if kernel == crate::kernels::FORKY { QEMU_CPU_CX16 } else { QEMU_CPU }
}
/// QEMU accelerator. TCG, since KVM hangs on these hosts; single-threaded
/// (both vCPUs on one host thread, interleaved). Multi-threaded TCG does not
/// reliably emulate x86 cross-modifying code: when the kernel live-patches
/// text with `text_poke_bp` (int3 first, then an IPI to sync the other CPU)
/// while the other vCPU runs through that code, the other vCPU can execute
/// a stale translation holding the int3 after the patch is done, and the
/// guest dies with `Oops: int3`. That happened when a static key flipped
/// (`__bpf_prog_enter`) and, in one CI run in 30, on `bpf_lsm_file_open`'s
/// trampoline call being re-pointed while scenario 23 swapped instances
/// under load. Real CPUs do not do this. Override with `GUARD_VM_ACCEL`.
pub const QEMU_ACCEL: &str = "tcg,thread=single";
/// Console substrings that mean the guest kernel is broken.
pub const PANIC_MARKERS: &[&str] = &[
    "Kernel panic",
    "BUG: ",
    "Oops:",
    "general protection fault",
    "---[ end trace",
];
/// How long qemu may take to exit after the sentinel before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How much more console output to collect after a panic marker (the trace).
const PANIC_GRACE: Duration = Duration::from_secs(3);

/// Why the VM run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEnd {
    /// `GUARD-VM-EXIT: <n>` was seen.
    Sentinel,
    /// A panic marker was seen; the line that matched.
    Panic(String),
    /// The timeout expired.
    Timeout,
    /// qemu exited without printing the sentinel.
    QemuExited(String),
}

#[derive(Debug, Clone)]
pub struct VmOutcome {
    /// `Some(n)` from `GUARD-VM-EXIT: <n>`; `None` on panic, timeout or early qemu exit.
    pub exit_code: Option<i32>,
    /// The whole console (qemu stdout), plus qemu's stderr lines prefixed `qemu: `.
    pub log: String,
    /// From qemu start to the sentinel (or to the end of the run).
    pub elapsed: Duration,
    pub end: VmEnd,
}

impl VmOutcome {
    /// A one-line description of how the run ended.
    pub fn describe(&self) -> String {
        match &self.end {
            VmEnd::Sentinel => format!(
                "guest exited with {} after {:.1?}",
                self.exit_code.unwrap_or(-1),
                self.elapsed
            ),
            VmEnd::Panic(l) => format!("guest kernel panicked after {:.1?}: {l}", self.elapsed),
            VmEnd::Timeout => format!("timed out after {:.1?} without {SENTINEL}", self.elapsed),
            VmEnd::QemuExited(s) => format!(
                "qemu exited ({s}) after {:.1?} without {SENTINEL}",
                self.elapsed
            ),
        }
    }
}

/// Kills (and reaps) qemu when dropped, whatever path we leave by.
struct QemuGuard(Child);

impl QemuGuard {
    /// Wait up to `grace` for qemu to exit by itself, then kill it.
    fn finish(&mut self, grace: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + grace;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < until => thread::sleep(Duration::from_millis(50)),
                _ => break,
            }
        }
        let _ = self.0.kill();
        self.0.wait().ok()
    }
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Parse `GUARD-VM-EXIT: <n>` anywhere in a line.
pub fn parse_sentinel(line: &str) -> Option<i32> {
    let rest = line[line.find(SENTINEL)? + SENTINEL.len()..].trim_start();
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn panic_marker(line: &str) -> bool {
    PANIC_MARKERS.iter().any(|m| line.contains(m))
}

fn spawn_line_reader(
    stream: impl Read + Send + 'static,
    prefix: &'static str,
    tx: mpsc::Sender<String>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    let line = format!("{prefix}{}", String::from_utf8_lossy(&buf));
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Boot `kernel` with `initrd` (1024 MB RAM); see [`run_vm_with_mem`].
pub fn run_vm(
    kernel: &Kernel,
    initrd: &Path,
    extra_append: &str,
    timeout: Duration,
    log_path: &Path,
    echo: bool,
) -> Result<VmOutcome> {
    run_vm_with_mem(
        kernel,
        initrd,
        extra_append,
        timeout,
        log_path,
        echo,
        DEFAULT_MEM_MB,
    )
}

/// Boot `kernel` with `initrd` under `qemu-system-x86_64 -accel tcg -cpu max,-cx16` (`max` for 7.x)
/// (see [`QEMU_CPU`]), with
/// `console=ttyS0 panic=-1 lsm=...,bpf <extra_append>`, no network device.
/// Every console line goes to `log_path` (and to stdout as `[<kernel>] line`
/// if `echo`). Ends on `GUARD-VM-EXIT: <n>` (then gives qemu 10 s to power
/// off), on a kernel panic/oops marker, on timeout, or when qemu exits.
/// Only failing to run qemu or to write the log is an `Err`; guest failures
/// are an `Ok` outcome with `exit_code: None`.
pub fn run_vm_with_mem(
    kernel: &Kernel,
    initrd: &Path,
    extra_append: &str,
    timeout: Duration,
    log_path: &Path,
    echo: bool,
    mem_mb: u32,
) -> Result<VmOutcome> {
    let ctx = || {
        format!(
            "VM on kernel {} ({}), log {}",
            kernel.name,
            kernel.package,
            log_path.display()
        )
    };
    for (what, path) in [
        ("kernel image", &kernel.vmlinuz),
        ("initramfs", &initrd.to_path_buf()),
    ] {
        if !path.is_file() {
            anyhow::bail!("{what} {} does not exist ({})", path.display(), ctx());
        }
    }
    let append = format!("{BASE_APPEND} {extra_append}")
        .trim_end()
        .to_string();
    let mut cmd = Command::new("qemu-system-x86_64");
    let cpu = std::env::var("GUARD_VM_CPU").unwrap_or_else(|_| qemu_cpu(&kernel.name).to_string());
    let accel = std::env::var("GUARD_VM_ACCEL").unwrap_or_else(|_| QEMU_ACCEL.to_string());
    cmd.args([
        "-accel",
        &accel,
        "-cpu",
        &cpu,
        "-m",
        &mem_mb.to_string(),
        "-smp",
        "2",
    ])
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .arg("-kernel")
    .arg(&kernel.vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(&append)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let line = cmdline(&cmd);

    if let Some(parent) = log_path.parent() {
        fs::create_dir_all(parent).with_context(ctx)?;
    }
    let mut log_file = BufWriter::new(File::create(log_path).with_context(ctx)?);
    writeln!(log_file, "# {line}").with_context(ctx)?;
    eprintln!("==> {line}");
    eprintln!("    [{}] console log: {}", kernel.name, log_path.display());

    let start = Instant::now();
    let mut qemu = QemuGuard(
        cmd.spawn()
            .with_context(|| format!("failed to start qemu-system-x86_64 ({})", ctx()))?,
    );
    let (tx, rx) = mpsc::channel();
    spawn_line_reader(qemu.0.stdout.take().expect("piped"), "", tx.clone());
    spawn_line_reader(qemu.0.stderr.take().expect("piped"), "qemu: ", tx);

    let mut log = String::new();
    let mut exit_code = None;
    let mut end: Option<VmEnd> = None;
    let mut elapsed = None;
    // Once `end` is decided we keep draining output until `grace_until`.
    let mut grace_until = start + timeout;
    loop {
        let now = Instant::now();
        if now >= grace_until {
            if end.is_none() {
                end = Some(VmEnd::Timeout);
            }
            break;
        }
        match rx.recv_timeout(grace_until - now) {
            Ok(l) => {
                log.push_str(&l);
                log.push('\n');
                writeln!(log_file, "{l}").with_context(ctx)?;
                log_file.flush().with_context(ctx)?;
                if echo {
                    println!("[{}] {l}", kernel.name);
                }
                if end.is_none() {
                    if let Some(code) = parse_sentinel(&l) {
                        exit_code = Some(code);
                        end = Some(VmEnd::Sentinel);
                        elapsed = Some(start.elapsed());
                        grace_until = Instant::now() + EXIT_GRACE;
                    } else if panic_marker(&l) {
                        end = Some(VmEnd::Panic(l.clone()));
                        elapsed = Some(start.elapsed());
                        grace_until = Instant::now() + PANIC_GRACE;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break, // qemu closed stdout+stderr
        }
    }
    let status = qemu.finish(Duration::from_millis(
        if matches!(end, Some(VmEnd::Sentinel)) {
            2000
        } else {
            0
        },
    ));
    let end = end.unwrap_or_else(|| {
        VmEnd::QemuExited(
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown status".to_string()),
        )
    });
    let outcome = VmOutcome {
        exit_code,
        log,
        elapsed: elapsed.unwrap_or_else(|| start.elapsed()),
        end,
    };
    writeln!(log_file, "# xtask: {}", outcome.describe()).with_context(ctx)?;
    log_file.flush().with_context(ctx)?;
    eprintln!("    [{}] {}", kernel.name, outcome.describe());
    Ok(outcome)
}

/// A busybox `/init` that mounts proc, sysfs, devtmpfs, cgroup2, tmpfs
/// (/tmp, /run), bpffs and securityfs, prints `GUARD-VM-BOOTED` and the
/// active LSM list, runs `command` (in a subshell, so `exit` in it is fine)
/// with output on the console, prints `GUARD-VM-EXIT: $?` and powers off.
pub fn guest_init_script(command: &str) -> String {
    format!(
        r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /sys/fs/cgroup /sys/fs/bpf /tmp /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mount -t bpf bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
exec </dev/console >/dev/console 2>&1
echo {BOOTED}
echo "GUARD-VM-LSM: $(cat /sys/kernel/security/lsm 2>/dev/null)"
echo "GUARD-VM-KERNEL: $(uname -r)"
(
{command}
)
echo "{SENTINEL} $?"
sync
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_parsing() {
        assert_eq!(parse_sentinel("GUARD-VM-EXIT: 3"), Some(3));
        assert_eq!(parse_sentinel("[  5.1] x GUARD-VM-EXIT: 0\r"), Some(0));
        assert_eq!(parse_sentinel("GUARD-VM-EXIT: -1 tail"), Some(-1));
        assert_eq!(parse_sentinel("GUARD-VM-EXIT: $?"), None);
        assert_eq!(parse_sentinel("nothing"), None);
        assert!(panic_marker("[ 1.0] Kernel panic - not syncing"));
        assert!(!panic_marker("all good"));
    }

    #[test]
    fn init_script_runs_command_in_subshell() {
        let s = guest_init_script("exit 3");
        assert!(s.contains("(\nexit 3\n)\necho \"GUARD-VM-EXIT: $?\""));
        assert!(s.starts_with("#!/bin/sh\n"));
    }
}
