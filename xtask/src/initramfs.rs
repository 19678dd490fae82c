//! A tiny writer for uncompressed `newc` cpio archives (the Linux initramfs
//! format), written from scratch so no external `cpio` is needed.
//!
//! Entries are kept by guest path (a later entry replaces an earlier one at
//! the same path); host file contents are only read while [`Initramfs::write`]
//! streams the archive, so multi-hundred-MB trees are cheap in memory.
//!
//! On write, entries are emitted parents-first, missing parent directories
//! are created (mode 0755), and paths whose parent runs through a symlink in
//! the archive (e.g. `bin/x` with `bin -> usr/bin` on merged-/usr systems)
//! are rewritten to the real location, because the kernel unpacks entries in
//! order and does not create parents.

#![allow(dead_code)] // Not every helper is used by every xtask command.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

#[derive(Debug, Clone)]
enum Data {
    None,
    Bytes(Vec<u8>),
    Host(PathBuf),
}

#[derive(Debug, Clone)]
struct Entry {
    /// Type bits | permission bits.
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u32,
    rdev: (u32, u32),
    data: Data,
    /// Insertion order, to let later additions win after path rewriting.
    seq: u64,
}

impl Entry {
    fn is_dir(&self) -> bool {
        self.mode & 0o170000 == S_IFDIR
    }
    fn symlink_target(&self) -> Option<&str> {
        match (&self.data, self.mode & 0o170000 == S_IFLNK) {
            (Data::Bytes(b), true) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Initramfs {
    /// Normalized guest path (no leading '/', e.g. `bin/busybox`) -> entry.
    entries: BTreeMap<String, Entry>,
    seq: u64,
}

/// Normalize a guest path: drop leading `/`, `.` components and `//`.
fn norm(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    fn put(&mut self, guest_path: &str, mode: u32, data: Data) -> &mut Entry {
        let path = norm(guest_path);
        self.seq += 1;
        let entry = Entry {
            mode,
            uid: 0,
            gid: 0,
            mtime: now(),
            rdev: (0, 0),
            data,
            seq: self.seq,
        };
        match self.entries.entry(path) {
            std::collections::btree_map::Entry::Occupied(mut o) => {
                o.insert(entry);
                o.into_mut()
            }
            std::collections::btree_map::Entry::Vacant(v) => v.insert(entry),
        }
    }

    /// A directory (mode = permission bits, e.g. 0o755).
    pub fn dir(&mut self, guest_path: &str, mode: u32) {
        self.put(guest_path, S_IFDIR | (mode & 0o7777), Data::None);
    }

    /// A regular file whose content is read from `host` when the archive is written.
    pub fn file_from_host(&mut self, guest_path: &str, host: &Path, mode: u32) -> Result<()> {
        let md = fs::metadata(host)
            .with_context(|| format!("initramfs: cannot add {}", host.display()))?;
        if !md.is_file() {
            bail!("initramfs: {} is not a regular file", host.display());
        }
        let host = host.canonicalize()?;
        self.put(guest_path, S_IFREG | (mode & 0o7777), Data::Host(host));
        Ok(())
    }

    /// A regular file with the given content.
    pub fn file_bytes(&mut self, guest_path: &str, data: Vec<u8>, mode: u32) {
        self.put(guest_path, S_IFREG | (mode & 0o7777), Data::Bytes(data));
    }

    /// A symlink `guest_path -> target`.
    pub fn symlink(&mut self, guest_path: &str, target: &str) {
        self.put(
            guest_path,
            S_IFLNK | 0o777,
            Data::Bytes(target.as_bytes().to_vec()),
        );
    }

    /// A character device node (e.g. `/dev/console` 5,1; `/dev/null` 1,3).
    pub fn char_dev(&mut self, guest_path: &str, major: u32, minor: u32, mode: u32) {
        self.put(guest_path, S_IFCHR | (mode & 0o7777), Data::None)
            .rdev = (major, minor);
    }

    /// Change the owner of an entry already added.
    pub fn set_owner(&mut self, guest_path: &str, uid: u32, gid: u32) -> Result<()> {
        let e = self
            .entries
            .get_mut(&norm(guest_path))
            .with_context(|| format!("initramfs: no entry {guest_path}"))?;
        e.uid = uid;
        e.gid = gid;
        Ok(())
    }

    /// Remove an entry (not its children) if present.
    pub fn remove(&mut self, guest_path: &str) {
        self.entries.remove(&norm(guest_path));
    }

    /// Remove an entry and everything below it, if present.
    pub fn remove_tree(&mut self, guest_path: &str) {
        let path = norm(guest_path);
        let below = format!("{path}/");
        self.entries
            .retain(|k, _| k != &path && !k.starts_with(&below));
    }

    pub fn contains(&self, guest_path: &str) -> bool {
        self.entries.contains_key(&norm(guest_path))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add a whole host directory tree under `guest_root`, preserving modes,
    /// uid/gid, mtimes and symlinks. Sockets, FIFOs and device nodes are
    /// skipped (add the ones you need with [`Initramfs::char_dev`]).
    pub fn add_host_tree(&mut self, host_root: &Path, guest_root: &str) -> Result<()> {
        let root_md = fs::symlink_metadata(host_root)
            .with_context(|| format!("initramfs: cannot read {}", host_root.display()))?;
        if !root_md.is_dir() {
            bail!("initramfs: {} is not a directory", host_root.display());
        }
        let guest_root = norm(guest_root);
        if !guest_root.is_empty() {
            self.add_host_entry(&guest_root, host_root, &root_md)?;
        }
        let mut stack: Vec<(PathBuf, String)> = vec![(host_root.to_path_buf(), guest_root)];
        while let Some((host_dir, guest_dir)) = stack.pop() {
            let mut children: Vec<_> = fs::read_dir(&host_dir)
                .with_context(|| format!("initramfs: cannot list {}", host_dir.display()))?
                .collect::<io::Result<_>>()?;
            children.sort_by_key(|e| e.file_name());
            for child in children {
                let name = child.file_name();
                let Some(name) = name.to_str() else {
                    bail!("initramfs: non-UTF-8 file name in {}", host_dir.display());
                };
                let guest = if guest_dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{guest_dir}/{name}")
                };
                let host = child.path();
                let md = fs::symlink_metadata(&host)?;
                if self.add_host_entry(&guest, &host, &md)? && md.is_dir() {
                    stack.push((host, guest));
                }
            }
        }
        Ok(())
    }

    /// Returns false if the entry was skipped.
    fn add_host_entry(&mut self, guest: &str, host: &Path, md: &fs::Metadata) -> Result<bool> {
        let ft = md.file_type();
        let perm = md.mode() & 0o7777;
        let entry = if ft.is_dir() {
            self.put(guest, S_IFDIR | perm, Data::None)
        } else if ft.is_file() {
            self.put(guest, S_IFREG | perm, Data::Host(host.to_path_buf()))
        } else if ft.is_symlink() {
            let target = fs::read_link(host)?;
            let Some(target) = target.to_str() else {
                bail!("initramfs: non-UTF-8 symlink target at {}", host.display());
            };
            self.put(
                guest,
                S_IFLNK | 0o777,
                Data::Bytes(target.as_bytes().to_vec()),
            )
        } else {
            // Sockets, FIFOs, char/block devices (and anything else).
            return Ok(false);
        };
        entry.uid = md.uid();
        entry.gid = md.gid();
        entry.mtime = md.mtime().clamp(0, u32::MAX as i64) as u32;
        Ok(true)
    }

    /// Resolve symlinks (from the archive itself) in the *parent* part of `path`.
    fn resolve_parent(&self, path: &str) -> String {
        let mut path = path.to_string();
        for _ in 0..40 {
            let comps: Vec<&str> = path.split('/').collect();
            let mut changed = None;
            for i in 1..comps.len() {
                let prefix = comps[..i].join("/");
                if let Some(target) = self.entries.get(&prefix).and_then(|e| e.symlink_target()) {
                    let base = if target.starts_with('/') {
                        String::new()
                    } else {
                        comps[..i - 1].join("/")
                    };
                    let rest = comps[i..].join("/");
                    changed = Some(norm(&format!("{base}/{target}/{rest}")));
                    break;
                }
            }
            match changed {
                Some(p) => path = p,
                None => return path,
            }
        }
        path
    }

    /// The final, ordered entry list: symlinked parents resolved, missing parents added.
    fn layout(&self) -> BTreeMap<String, Entry> {
        let mut out: BTreeMap<String, Entry> = BTreeMap::new();
        for (path, entry) in &self.entries {
            let real = self.resolve_parent(path);
            match out.get(&real) {
                Some(existing) if existing.seq > entry.seq => {}
                _ => {
                    out.insert(real, entry.clone());
                }
            }
        }
        let mut missing = Vec::new();
        for path in out.keys() {
            let mut p = path.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                if !out.contains_key(parent) {
                    missing.push(parent.to_string());
                }
                p = parent;
            }
        }
        for m in missing {
            out.entry(m).or_insert(Entry {
                mode: S_IFDIR | 0o755,
                uid: 0,
                gid: 0,
                mtime: now(),
                rdev: (0, 0),
                data: Data::None,
                seq: 0,
            });
        }
        out
    }

    /// Write the archive to `out` (via a temporary file, then renamed).
    /// Returns nothing; the size is that of the file.
    pub fn write(&self, out: &Path) -> Result<()> {
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = out.with_extension("cpio.tmp");
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        self.write_to(&mut w)
            .with_context(|| format!("writing initramfs {}", out.display()))?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, out)?;
        Ok(())
    }

    /// Stream the archive into any writer.
    pub fn write_to(&self, w: &mut impl Write) -> Result<()> {
        let mut ino: u32 = 1;
        for (path, e) in &self.layout() {
            ino += 1;
            let nlink = if e.is_dir() { 2 } else { 1 };
            match &e.data {
                Data::None => {
                    write_header(w, path, ino, e, nlink, 0)?;
                }
                Data::Bytes(b) => {
                    write_header(w, path, ino, e, nlink, b.len() as u64)?;
                    w.write_all(b)?;
                    pad(w, b.len() as u64)?;
                }
                Data::Host(host) => {
                    let f =
                        File::open(host).with_context(|| format!("opening {}", host.display()))?;
                    let size = f.metadata()?.len();
                    write_header(w, path, ino, e, nlink, size)?;
                    let copied = io::copy(&mut f.take(size), w)?;
                    if copied != size {
                        bail!("{} shrank while being archived", host.display());
                    }
                    pad(w, size)?;
                }
            }
        }
        let trailer = Entry {
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            rdev: (0, 0),
            data: Data::None,
            seq: 0,
        };
        write_header(w, "TRAILER!!!", 0, &trailer, 1, 0)?;
        Ok(())
    }

    /// Add `/bin/busybox` (from the host's busybox-static) with applet
    /// symlinks, the usual mount-point directories, `/dev/console` and
    /// `/dev/null`, and `/etc/passwd` + `/etc/group` with the test users
    /// root(0), alice(1000), bob(1001), svc(1002) and nobody(65534).
    pub fn busybox_base(&mut self) -> Result<()> {
        let busybox = Path::new("/bin/busybox");
        self.file_from_host("/bin/busybox", busybox, 0o755)
            .context("busybox_base needs the busybox-static package")?;
        let mut applets: Vec<String> = BUSYBOX_APPLETS.iter().map(|s| s.to_string()).collect();
        // Every applet this busybox has (the static binary runs on the host).
        if let Ok(out) = std::process::Command::new(busybox).arg("--list").output() {
            if out.status.success() {
                applets.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(|l| l.trim().to_string()),
                );
            }
        }
        for a in applets {
            if !a.is_empty() && a != "busybox" && !a.contains('/') {
                self.symlink(&format!("/bin/{a}"), "busybox");
            }
        }
        self.symlink("/sbin", "bin");
        self.symlink("/usr/bin", "../bin");
        self.symlink("/usr/sbin", "../bin");
        for d in [
            "/proc",
            "/sys",
            "/dev",
            "/run",
            "/etc",
            "/sys/fs/cgroup",
            "/home",
            "/var",
        ] {
            self.dir(d, 0o755);
        }
        self.dir("/tmp", 0o1777);
        self.dir("/root", 0o700);
        self.char_dev("/dev/console", 5, 1, 0o600);
        self.char_dev("/dev/null", 1, 3, 0o666);
        let users = [
            ("root", 0, "/root", "/bin/sh"),
            ("alice", 1000, "/home/alice", "/bin/sh"),
            ("bob", 1001, "/home/bob", "/bin/sh"),
            ("svc", 1002, "/home/svc", "/bin/sh"),
            ("nobody", 65534, "/nonexistent", "/bin/false"),
        ];
        let mut passwd = String::new();
        let mut group = String::new();
        for (name, id, home, shell) in users {
            passwd.push_str(&format!("{name}:x:{id}:{id}:{name}:{home}:{shell}\n"));
            let gname = if id == 65534 { "nogroup" } else { name };
            group.push_str(&format!("{gname}:x:{id}:\n"));
            if home.starts_with("/home/") {
                self.dir(home, 0o755);
                self.set_owner(home, id, id)?;
            }
        }
        self.file_bytes("/etc/passwd", passwd.into_bytes(), 0o644);
        self.file_bytes("/etc/group", group.into_bytes(), 0o644);
        Ok(())
    }
}

/// Applets linked even if `busybox --list` cannot be run.
const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "mount", "mkdir", "cat", "ls", "echo", "poweroff", "sleep", "rm", "mv", "ln", "id",
    "chmod", "chown", "grep", "head", "tail", "touch", "sync", "stat", "env", "true", "false",
    "umount", "ps", "kill", "uname", "dmesg", "setpriv", "su", "wc", "sed", "cut", "test", "[",
    "printf", "cp", "readlink", "find", "xargs", "tr", "seq", "dd", "mknod", "timeout", "sort",
    "uniq", "basename", "dirname",
];

fn pad(w: &mut impl Write, len: u64) -> io::Result<()> {
    let n = ((4 - (len % 4)) % 4) as usize;
    w.write_all(&[0u8; 3][..n])
}

fn write_header(
    w: &mut impl Write,
    name: &str,
    ino: u32,
    e: &Entry,
    nlink: u32,
    size: u64,
) -> Result<()> {
    if size > u32::MAX as u64 {
        bail!("{name}: file too large for newc cpio ({size} bytes)");
    }
    let namesize = name.len() + 1;
    let header = format!(
        "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        ino,
        e.mode,
        e.uid,
        e.gid,
        nlink,
        e.mtime,
        size as u32,
        0,
        0,
        e.rdev.0,
        e.rdev.1,
        namesize,
        0
    );
    debug_assert_eq!(header.len(), 110);
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, (110 + namesize) as u64)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
    use std::process::{Command, Stdio};

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let d = std::env::temp_dir().join(format!(
            "xtask-initramfs-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// Minimal newc reader: (name, mode, uid, rdevmajor, rdevminor, data).
    fn parse(buf: &[u8]) -> Vec<(String, u32, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0;
        let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap();
        loop {
            let h = &buf[off..off + 110];
            assert_eq!(&h[..6], b"070701");
            let field = |i: usize| hex(&h[6 + i * 8..14 + i * 8]);
            let (mode, uid, size, rmaj, rmin, namesize) =
                (field(1), field(2), field(6), field(9), field(10), field(11));
            let name =
                String::from_utf8(buf[off + 110..off + 110 + namesize as usize - 1].to_vec())
                    .unwrap();
            assert_eq!(buf[off + 110 + namesize as usize - 1], 0);
            off = (off + 110 + namesize as usize + 3) & !3;
            let data = buf[off..off + size as usize].to_vec();
            off = (off + size as usize + 3) & !3;
            if name == "TRAILER!!!" {
                assert_eq!(off, buf.len());
                return out;
            }
            out.push((name, mode, uid, rmaj, rmin, data));
        }
    }

    fn sample(host: &Path) -> Initramfs {
        fs::create_dir_all(host.join("tree/sub/deeper")).unwrap();
        fs::write(host.join("tree/a.txt"), b"hello").unwrap();
        fs::write(host.join("tree/sub/deeper/b.bin"), vec![7u8; 4097]).unwrap();
        fs::set_permissions(
            host.join("tree/sub/deeper/b.bin"),
            fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        symlink("../a.txt", host.join("tree/sub/link")).unwrap();
        fs::write(host.join("loose"), b"xyz").unwrap();

        let mut ir = Initramfs::new();
        ir.add_host_tree(&host.join("tree"), "/").unwrap();
        ir.file_bytes("/etc/deep/auto/parents.conf", b"k=v\n".to_vec(), 0o600);
        ir.file_from_host("/opt/loose", &host.join("loose"), 0o700)
            .unwrap();
        ir.symlink("/lib", "usr/lib");
        ir.dir("/usr/lib", 0o755);
        // Parent runs through the `lib` symlink: must land in usr/lib.
        ir.file_bytes("/lib/through-link", b"L".to_vec(), 0o644);
        ir.char_dev("/dev/null", 1, 3, 0o666);
        ir.file_bytes("/a.txt", b"replaced".to_vec(), 0o644); // later entry wins
        ir.file_bytes("/gone/x", b"x".to_vec(), 0o644);
        ir.dir("/gone2", 0o755);
        ir.remove_tree("/gone");
        assert!(!ir.contains("gone/x") && !ir.contains("gone") && ir.contains("gone2"));
        ir
    }

    #[test]
    fn newc_layout_roundtrip() {
        let host = temp_dir("parse");
        let ir = sample(&host);
        let mut buf = Vec::new();
        ir.write_to(&mut buf).unwrap();
        let entries = parse(&buf);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        // Parents come before children and were auto-created.
        for (i, n) in names.iter().enumerate() {
            if let Some((parent, _)) = n.rsplit_once('/') {
                let p = names
                    .iter()
                    .position(|x| *x == parent)
                    .unwrap_or_else(|| panic!("no parent for {n}"));
                assert!(p < i, "{parent} after {n}");
            }
        }
        let get = |n: &str| {
            entries
                .iter()
                .find(|e| e.0 == n)
                .unwrap_or_else(|| panic!("missing {n}"))
        };
        assert_eq!(get("a.txt").5, b"replaced");
        assert_eq!(get("sub/deeper/b.bin").1, S_IFREG | 0o751);
        assert_eq!(get("sub/deeper/b.bin").5.len(), 4097);
        assert_eq!(get("sub/link").5, b"../a.txt");
        assert_eq!(get("sub/link").1, S_IFLNK | 0o777);
        assert_eq!(get("etc/deep").1, S_IFDIR | 0o755);
        assert_eq!(get("etc/deep/auto/parents.conf").1, S_IFREG | 0o600);
        assert_eq!(get("usr/lib/through-link").5, b"L");
        assert!(!names.contains(&"lib/through-link"));
        let null = get("dev/null");
        assert_eq!((null.1, null.3, null.4), (S_IFCHR | 0o666, 1, 3));
        fs::remove_dir_all(&host).unwrap();
    }

    #[test]
    fn extracts_with_cpio() {
        if Command::new("cpio")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("cpio not installed; skipping");
            return;
        }
        let host = temp_dir("cpio");
        let ir = sample(&host);
        let archive = host.join("out/initrd.cpio");
        ir.write(&archive).unwrap();
        let dest = host.join("x");
        fs::create_dir_all(&dest).unwrap();
        let status = Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames"])
            .current_dir(&dest)
            .stdin(File::open(&archive).unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(fs::read(dest.join("a.txt")).unwrap(), b"replaced");
        assert_eq!(
            fs::read(dest.join("sub/deeper/b.bin")).unwrap(),
            vec![7u8; 4097]
        );
        assert_eq!(
            fs::metadata(dest.join("sub/deeper/b.bin")).unwrap().mode() & 0o7777,
            0o751
        );
        assert_eq!(
            fs::read_link(dest.join("sub/link")).unwrap(),
            Path::new("../a.txt")
        );
        assert_eq!(fs::read(dest.join("sub/link")).unwrap(), b"replaced");
        assert_eq!(fs::read(dest.join("opt/loose")).unwrap(), b"xyz");
        assert_eq!(
            fs::metadata(dest.join("opt/loose")).unwrap().mode() & 0o7777,
            0o700
        );
        assert_eq!(
            fs::read(dest.join("etc/deep/auto/parents.conf")).unwrap(),
            b"k=v\n"
        );
        assert_eq!(fs::read(dest.join("lib/through-link")).unwrap(), b"L");
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let md = fs::metadata(dest.join("dev/null")).unwrap();
            assert!(md.file_type().is_char_device());
            assert_eq!(md.rdev(), libc::makedev(1, 3));
        }
        fs::remove_dir_all(&host).unwrap();
    }

    #[test]
    fn busybox_base_has_users() {
        if !Path::new("/bin/busybox").is_file() {
            return;
        }
        let mut ir = Initramfs::new();
        ir.busybox_base().unwrap();
        let mut buf = Vec::new();
        ir.write_to(&mut buf).unwrap();
        let entries = parse(&buf);
        let passwd = &entries.iter().find(|e| e.0 == "etc/passwd").unwrap().5;
        let passwd = String::from_utf8_lossy(passwd);
        for u in [
            "root:x:0:0",
            "alice:x:1000:1000",
            "bob:x:1001:1001",
            "svc:x:1002:1002",
            "nobody:x:65534:65534",
        ] {
            assert!(passwd.contains(u), "{passwd}");
        }
        for n in [
            "bin/sh",
            "bin/poweroff",
            "bin/mount",
            "dev/console",
            "sys/fs/cgroup",
            "tmp",
        ] {
            assert!(entries.iter().any(|e| e.0 == n), "missing {n}");
        }
        assert_eq!(
            entries.iter().find(|e| e.0 == "home/alice").unwrap().2,
            1000
        );
    }
}
