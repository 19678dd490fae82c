//! Test kernels: Debian cloud kernels for bookworm (6.1), trixie (6.12) and
//! forky (7.x, testing), fetched with apt and cached as
//! `<cache_root>/kernels/<name>/vmlinuz` (+ a `version` file holding the
//! Debian package name).
//!
//! No mirror host is ever written down: the archive URI is read at run time
//! from the host's apt configuration ([`host_debian_mirror`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::exec::{cmdline, exec, exec_output};

#[derive(Debug, Clone)]
pub struct Kernel {
    /// "bookworm-6.1", "trixie-6.12" or "forky-7.2".
    pub name: String,
    pub vmlinuz: PathBuf,
    /// Debian package the image came from, e.g. `linux-image-6.1.0-50-cloud-amd64`.
    pub package: String,
    /// The loop block driver of the same package, decompressed (the cloud
    /// kernels build it as a module): the guest mounts an ext4 image with it.
    pub loop_ko: PathBuf,
}

pub const BOOKWORM: &str = "bookworm-6.1";
pub const TRIXIE: &str = "trixie-6.12";
pub const FORKY: &str = "forky-7.2";

pub fn kernel_names() -> [&'static str; 3] {
    [BOOKWORM, TRIXIE, FORKY]
}

/// How a test kernel is found in the archive.
struct Spec {
    /// The suite of a private apt state; `None`: the host's own apt lists.
    suite: Option<&'static str>,
    /// Package-name regex (POSIX ERE, for `apt-cache search --names-only`).
    regex: &'static str,
    /// The prefix [`newest_package`] keeps.
    prefix: &'static str,
}

fn spec(name: &str) -> Result<Spec> {
    Ok(match name {
        // Only the 6.1 ABI packages; bookworm also carries 6.12 backports.
        BOOKWORM => Spec {
            suite: None,
            regex: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
            prefix: "linux-image-6.1.0-",
        },
        TRIXIE => Spec {
            suite: Some("trixie"),
            regex: r"^linux-image-6\.12[.0-9]*[^ ]*-cloud-amd64$",
            prefix: "linux-image-6.12",
        },
        // Testing: the newest 7.x (7.2.12+deb14 when this was written).
        FORKY => Spec {
            suite: Some("forky"),
            regex: r"^linux-image-7\.[0-9][.0-9]*[^ ]*-cloud-amd64$",
            prefix: "linux-image-7.",
        },
        other => bail!("unknown kernel {other:?} (known: {:?})", kernel_names()),
    })
}

/// Where kernels are cached: `<cache_root>/kernels` (cache_root is e.g. `target/vm`).
pub fn kernels_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("kernels")
}

/// All test kernels, in [`kernel_names`] order; downloads any that is not
/// cached under `<cache_root>/kernels/<name>/`.
pub fn ensure_kernels(cache_root: &Path) -> Result<Vec<Kernel>> {
    kernel_names()
        .iter()
        .map(|name| ensure_kernel(cache_root, name))
        .collect()
}

/// One test kernel by name (see [`kernel_names`]).
pub fn ensure_kernel(cache_root: &Path, name: &str) -> Result<Kernel> {
    let spec = spec(name)?;
    let dir = kernels_dir(cache_root).join(name);
    if let Some(k) = cached(&dir, name) {
        eprintln!(
            "kernels: {name}: cached {} ({})",
            k.vmlinuz.display(),
            k.package
        );
        return Ok(k);
    }
    eprintln!("kernels: {name}: not cached, downloading");
    let started = std::time::Instant::now();
    let apt = match spec.suite {
        None => AptState::Host,
        Some(suite) => AptState::private(&kernels_dir(cache_root), suite)?,
    };
    let package = resolve_package(&apt, &spec)?;
    download_kernel(&apt, &package, &dir, name)
        .with_context(|| format!("fetching kernel {name} ({package})"))?;
    eprintln!(
        "kernels: {name}: {package} fetched in {:.1?}",
        started.elapsed()
    );
    cached(&dir, name)
        .with_context(|| format!("kernel cache {} incomplete after download", dir.display()))
}

fn cached(dir: &Path, name: &str) -> Option<Kernel> {
    let vmlinuz = dir.join("vmlinuz");
    let package = fs::read_to_string(dir.join("version"))
        .ok()?
        .trim()
        .to_string();
    let loop_ko = dir.join("loop.ko");
    (vmlinuz.is_file() && loop_ko.is_file() && !package.is_empty()).then(|| Kernel {
        name: name.to_string(),
        vmlinuz,
        package,
        loop_ko,
    })
}

/// The host's Debian archive keyring (what a private apt state tries first).
const HOST_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Suites that get a private apt state, oldest first. A suite whose
/// signatures the host's keyring cannot check takes the newer
/// `debian-archive-keyring` of the suite before it (whose lists the host
/// *can* check), see [`AptState::private`].
const PRIVATE_SUITES: [&str; 2] = ["trixie", "forky"];

/// `<kernels_dir>/.apt-<suite>`: a private apt state (sources, lists, cache).
fn private_dir(kernels_dir: &Path, suite: &str) -> PathBuf {
    kernels_dir.join(format!(".apt-{suite}"))
}

/// A Debian archive keyring for `suite` newer than the host's, if a private
/// apt state had to take one (see [`AptState::private`]): debootstrap of
/// that suite must verify with it too (`--keyring`).
pub fn suite_keyring(cache_root: &Path, suite: &str) -> Option<PathBuf> {
    let k =
        private_dir(&kernels_dir(cache_root), suite).join("keyrings/debian-archive-keyring.gpg");
    k.is_file().then_some(k)
}

/// Which apt state to use: the host's, or a private one (only extra `-o` options differ).
enum AptState {
    Host,
    Private {
        options: Vec<String>,
        /// The keyring its lists were verified with; `None`: `Trusted: yes`.
        keyring: Option<PathBuf>,
    },
}

/// The outcome of one `apt-get update` of a private state.
enum Update {
    Done,
    /// Failed on signatures (unknown or expired key): try another keyring.
    KeyProblem,
}

impl AptState {
    /// A private apt state for `suite` in `<kernels_dir>/.apt-<suite>`, so
    /// the host's lists are untouched. Its lists are verified with, in turn:
    /// the host's keyring; a keyring taken before (see [`suite_keyring`]);
    /// the `debian-archive-keyring` package of the previous entry of
    /// [`PRIVATE_SUITES`], downloaded through that suite's verified state.
    /// Only trixie keeps the old last resort, `Trusted: yes`.
    fn private(kernels_dir: &Path, suite: &str) -> Result<AptState> {
        let dir = private_dir(kernels_dir, suite);
        fs::create_dir_all(dir.join("sources.list.d"))?;
        fs::create_dir_all(dir.join("lists/partial"))?;
        fs::create_dir_all(dir.join("cache/archives/partial"))?;
        let dir = dir.canonicalize()?;
        let options = vec![
            "Dir::Etc::sourcelist=/dev/null".to_string(),
            format!(
                "Dir::Etc::sourceparts={}",
                dir.join("sources.list.d").display()
            ),
            format!("Dir::State::Lists={}", dir.join("lists").display()),
            format!("Dir::Cache={}", dir.join("cache").display()),
        ];
        let uri = host_debian_mirror()?;
        let sources = dir.join(format!("sources.list.d/{suite}.sources"));
        let own = dir.join("keyrings/debian-archive-keyring.gpg");
        let state = |keyring: Option<PathBuf>| AptState::Private {
            options: options.clone(),
            keyring,
        };
        // Preferred: the host's Debian archive keyring (bookworm's
        // debian-archive-keyring 2023.3+deb12u2 already carries trixie's
        // keys, and forky is signed with the bookworm and trixie keys).
        for keyring in [PathBuf::from(HOST_KEYRING), own.clone()] {
            if keyring.is_file() {
                let s = state(Some(keyring.clone()));
                if let Update::Done = s.update_private(&sources, &uri, suite)? {
                    return Ok(s);
                }
            }
        }
        // A newer keyring, from the suite before this one, through apt's own
        // checks (signed lists, hashed .deb).
        let previous = PRIVATE_SUITES
            .iter()
            .position(|s| *s == suite)
            .and_then(|i| i.checked_sub(1))
            .map(|i| PRIVATE_SUITES[i]);
        let mut tried = HOST_KEYRING.to_string();
        if let Some(prev) = previous {
            eprintln!(
                "kernels: the host's keyring cannot verify {suite}; \
                 taking debian-archive-keyring from {prev}"
            );
            let prev_state = AptState::private(kernels_dir, prev)?;
            if let AptState::Private {
                keyring: Some(_), ..
            } = prev_state
            {
                fetch_archive_keyring(&prev_state, &dir, &own)?;
                let s = state(Some(own.clone()));
                if let Update::Done = s.update_private(&sources, &uri, suite)? {
                    return Ok(s);
                }
                tried += &format!(", {prev}'s debian-archive-keyring");
            } else {
                tried += &format!("; {prev}'s own lists could not be verified either");
            }
        }
        if suite != "trixie" {
            bail!(
                "no keyring verifies the {suite} archive (tried {tried}); \
                 install a newer debian-archive-keyring on the host"
            );
        }
        // Documented fallback: a host keyring too old to know trixie's key.
        // The .debs are only unpacked for their vmlinuz, which boots in a
        // throw-away QEMU guest, never on the host.
        eprintln!(
            "kernels: WARNING: falling back to `Trusted: yes` for the private {suite} apt source"
        );
        write_sources(&sources, &uri, suite, "Trusted: yes")?;
        let s = state(None);
        exec(&mut s.apt_get(&["update"]))?;
        Ok(s)
    }

    /// Writes the sources file for this state's keyring and runs `apt-get update`.
    fn update_private(&self, sources: &Path, uri: &str, suite: &str) -> Result<Update> {
        let AptState::Private {
            keyring: Some(keyring),
            ..
        } = self
        else {
            bail!("update_private needs a private state with a keyring");
        };
        write_sources(
            sources,
            uri,
            suite,
            &format!("Signed-By: {}", keyring.display()),
        )?;
        let mut update = self.apt_get(&["update"]);
        eprintln!("==> {}", cmdline(&update));
        let out = update.output().context("running apt-get update")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{text}");
        if out.status.success() {
            return Ok(Update::Done);
        }
        let key_problem = [
            "NO_PUBKEY",
            "EXPKEYSIG",
            "not signed",
            "signatures couldn't be verified",
        ]
        .iter()
        .any(|m| text.contains(m));
        if !key_problem {
            bail!("private {suite} `apt-get update` failed: {}", out.status);
        }
        Ok(Update::KeyProblem)
    }

    fn options(&self) -> &[String] {
        match self {
            AptState::Host => &[],
            AptState::Private { options, .. } => options,
        }
    }

    fn with_options(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.env("DEBIAN_FRONTEND", "noninteractive");
        for o in self.options() {
            c.arg("-o").arg(o);
        }
        c.args(args);
        c
    }

    fn apt_get(&self, args: &[&str]) -> Command {
        self.with_options("apt-get", args)
    }

    fn apt_cache(&self, args: &[&str]) -> Command {
        self.with_options("apt-cache", args)
    }
}

fn write_sources(path: &Path, uri: &str, suite: &str, trust_line: &str) -> Result<()> {
    let text = format!(
        "# Private apt source used by xtask only to download {suite} kernels.\n\
         Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main\n{trust_line}\n"
    );
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Downloads `debian-archive-keyring` with `apt` (a verified state) and
/// installs its binary keyring as `dest`.
fn fetch_archive_keyring(apt: &AptState, dir: &Path, dest: &Path) -> Result<()> {
    let work = dir.join("keyring.download");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    exec(
        apt.apt_get(&["download", "debian-archive-keyring"])
            .current_dir(&work),
    )?;
    let tree = unpack_debs(&work)?;
    // A regular file (an absolute symlink would point into the host).
    let found = ["debian-archive-keyring.pgp", "debian-archive-keyring.gpg"]
        .iter()
        .map(|n| tree.join("usr/share/keyrings").join(n))
        .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .context(
            "debian-archive-keyring has no usr/share/keyrings/debian-archive-keyring.{pgp,gpg}",
        )?;
    fs::create_dir_all(dest.parent().context("keyring path has no parent")?)?;
    fs::copy(&found, dest)?;
    fs::remove_dir_all(&work)?;
    eprintln!(
        "kernels: keyring {} installed as {}",
        found.display(),
        dest.display()
    );
    Ok(())
}

/// Numeric sort key of a kernel package: all digit runs between
/// `linux-image-` and `-cloud-amd64` (`6.1.0-50` -> [6,1,0,50]).
/// Meta-packages such as `linux-image-6.12-cloud-amd64` (two numbers) are rejected.
fn version_key(pkg: &str) -> Option<Vec<u64>> {
    let mid = pkg
        .strip_prefix("linux-image-")?
        .strip_suffix("-cloud-amd64")?;
    let nums: Vec<u64> = mid
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    (nums.len() >= 3).then_some(nums)
}

/// Newest package name from `apt-cache search` output lines.
fn newest_package(search_output: &str, prefix: &str) -> Option<String> {
    search_output
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| p.starts_with(prefix))
        .filter_map(|p| version_key(p).map(|k| (k, p.to_string())))
        .max()
        .map(|(_, p)| p)
}

fn resolve_package(apt: &AptState, spec: &Spec) -> Result<String> {
    let search = |apt: &AptState| -> Result<Option<String>> {
        let out = exec_output(&mut apt.apt_cache(&["search", "--names-only", spec.regex]))?;
        Ok(newest_package(&out, spec.prefix))
    };
    if let Some(p) = search(apt)? {
        return Ok(p);
    }
    if let AptState::Host = apt {
        eprintln!("kernels: no matching kernel in the host's apt lists; running apt-get update");
        exec(&mut apt.apt_get(&["update"]))?;
        if let Some(p) = search(apt)? {
            return Ok(p);
        }
    }
    bail!("no package matching {} found by apt-cache", spec.regex)
}

/// The packages to download for the image package `package`: itself and,
/// transitively, every dependency pinned to its exact version (`(= V)`), i.e.
/// the rest of the same kernel build. From 7.x `linux-image-<ver>` holds no
/// files and depends on `linux-binary-<ver>` (vmlinuz), `linux-modules-<ver>`
/// and `linux-base-<ver>`; the 6.1 and 6.12 images have no such dependency.
fn kernel_packages(apt: &AptState, package: &str) -> Result<Vec<String>> {
    let mut all = vec![package.to_string()];
    let mut i = 0;
    while i < all.len() {
        let stanza = exec_output(&mut apt.apt_cache(&["show", "--no-all-versions", &all[i]]))?;
        for dep in same_build_deps(&stanza) {
            if !all.contains(&dep) {
                all.push(dep);
            }
        }
        i += 1;
    }
    Ok(all)
}

/// From one `apt-cache show` stanza: the (Pre-)Depends alternatives pinned
/// with `(= <this package's Version>)`.
fn same_build_deps(stanza: &str) -> Vec<String> {
    let field = |name: &str| {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
    };
    let Some(version) = field("Version") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for deps in [field("Pre-Depends"), field("Depends")]
        .into_iter()
        .flatten()
    {
        for alt in deps.split([',', '|']) {
            let alt = alt.trim();
            let (name, rest) = alt.split_once(' ').unwrap_or((alt, ""));
            let pinned = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.trim().strip_prefix('='))
                .is_some_and(|v| v.trim() == version);
            let name = name.split(':').next().unwrap_or(name);
            if pinned && !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// `dpkg-deb -x` of every `.deb` in `work` into `work/x`; returns `work/x`.
fn unpack_debs(work: &Path) -> Result<PathBuf> {
    let mut debs: Vec<PathBuf> = fs::read_dir(work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    if debs.is_empty() {
        bail!("apt-get download left no .deb in {}", work.display());
    }
    debs.sort();
    let extract = work.join("x");
    for deb in &debs {
        exec(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&extract))?;
    }
    Ok(extract)
}

fn download_kernel(apt: &AptState, package: &str, dir: &Path, name: &str) -> Result<()> {
    let work = dir.with_file_name(format!(".{name}.download"));
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let packages = kernel_packages(apt, package)?;
    let mut download = apt.apt_get(&["download"]);
    download.args(&packages).current_dir(&work);
    if let Err(e) = exec(&mut download) {
        // Host lists may be stale (old ABI packages vanish from the archive).
        if let AptState::Host = apt {
            eprintln!("kernels: download failed ({e:#}); running apt-get update and retrying");
            exec(&mut apt.apt_get(&["update"]))?;
            exec(&mut download)?;
        } else {
            return Err(e);
        }
    }
    let extract = unpack_debs(&work)?;
    let what = packages.join(", ");
    // Found by content, not by package: bookworm and trixie ship
    // boot/vmlinuz-<ver>, 7.x usr/lib/modules/<ver>/vmlinuz (linux-binary-*).
    let vmlinuz = find_one(&extract, |n| n == "vmlinuz" || n.starts_with("vmlinuz-"))
        .with_context(|| format!("looking for vmlinuz* in {what}"))?;
    // bookworm ships /lib/modules, trixie (merged /usr) /usr/lib/modules; 7.x
    // in linux-modules-*.
    let module = find_one(&extract, |n| {
        ["loop.ko", "loop.ko.xz", "loop.ko.zst"].contains(&n)
    })
    .with_context(|| format!("looking for loop.ko in {what}"))?;
    eprintln!(
        "kernels: {name}: {} and {}",
        vmlinuz.strip_prefix(&extract).unwrap_or(&vmlinuz).display(),
        module.strip_prefix(&extract).unwrap_or(&module).display()
    );
    fs::create_dir_all(dir)?;
    if module.extension().is_some_and(|x| x == "ko") {
        fs::copy(&module, dir.join("loop.ko"))?;
    } else {
        let ext = module.extension().and_then(|x| x.to_str()).unwrap_or("xz").to_string();
        let packed = dir.join(format!("loop.ko.{ext}"));
        fs::copy(&module, &packed)?;
        let tool = if ext == "xz" { "xz" } else { "zstd" };
        exec(Command::new(tool).args(["-d", "-f"]).arg(&packed))?;
        let _ = fs::remove_file(&packed);
    }
    fs::copy(&vmlinuz, dir.join("vmlinuz.tmp"))?;
    fs::rename(dir.join("vmlinuz.tmp"), dir.join("vmlinuz"))?;
    fs::write(dir.join("version"), format!("{package}\n"))?;
    fs::remove_dir_all(&work)?;
    Ok(())
}

/// The one regular file below `root` whose name satisfies `wanted`
/// (symlinks are neither followed nor returned); an error if none or several.
fn find_one(root: &Path, wanted: impl Fn(&str) -> bool) -> Result<PathBuf> {
    let found = find_files(root, &wanted)?;
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no such file below {}", root.display()),
        many => bail!("several candidates: {many:?}"),
    }
}

fn find_files(root: &Path, wanted: &impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && e.file_name().to_str().is_some_and(wanted) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One apt source entry (one URI/suite pair) of the host's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AptSource {
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
}

fn host_codename() -> String {
    fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("VERSION_CODENAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "bookworm".to_string())
}

/// All `deb` entries of the host's apt configuration
/// (/etc/apt/sources.list, sources.list.d/*.list and deb822 *.sources).
pub fn host_apt_sources() -> Vec<AptSource> {
    let mut out = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        out.extend(parse_one_line_sources(&t));
    }
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(t) = fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("list") => out.extend(parse_one_line_sources(&t)),
            Some("sources") => out.extend(parse_deb822_sources(&t)),
            _ => {}
        }
    }
    out
}

fn parse_one_line_sources(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words: Vec<&str> = Vec::new();
        // Drop the "[ option=value ... ]" block.
        let mut in_opts = false;
        for w in line.split_whitespace() {
            if in_opts || w.starts_with('[') {
                in_opts = !w.ends_with(']');
            } else {
                words.push(w);
            }
        }
        if words.len() >= 3 && words[0] == "deb" {
            out.push(AptSource {
                uri: words[1].to_string(),
                suite: words[2].to_string(),
                components: words[3..].iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    out
}

fn parse_deb822_sources(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
        } else if line.starts_with([' ', '\t']) {
            if let Some(last) = stanzas.last_mut().and_then(|s| s.last_mut()) {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            stanzas
                .last_mut()
                .unwrap()
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    for st in stanzas {
        let get = |k: &str| {
            st.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        if !get("types").split_whitespace().any(|t| t == "deb")
            || get("enabled").eq_ignore_ascii_case("no")
        {
            continue;
        }
        let comps: Vec<String> = get("components")
            .split_whitespace()
            .map(String::from)
            .collect();
        for uri in get("uris").split_whitespace() {
            for suite in get("suites").split_whitespace() {
                out.push(AptSource {
                    uri: uri.to_string(),
                    suite: suite.to_string(),
                    components: comps.clone(),
                });
            }
        }
    }
    out
}

/// The Debian archive URI of the host's main-suite source (the entry whose
/// suite is exactly the host's codename, e.g. `bookworm`, with `main`).
pub fn host_debian_mirror() -> Result<String> {
    pick_mirror(&host_apt_sources(), &host_codename()).with_context(|| {
        format!(
            "no `deb` source for suite {:?} with component main found in /etc/apt/sources.list{{,.d/*.list,.d/*.sources}}",
            host_codename()
        )
    })
}

fn pick_mirror(sources: &[AptSource], codename: &str) -> Option<String> {
    let usable = |s: &&AptSource| {
        s.suite == codename
            && s.components.iter().any(|c| c == "main")
            && (s.uri.starts_with("http://") || s.uri.starts_with("https://"))
    };
    sources
        .iter()
        .find(usable)
        .map(|s| s.uri.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_newest_kernel() {
        let out = "linux-image-6.1.0-47-cloud-amd64 - Linux 6.1\n\
                   linux-image-6.1.0-9-cloud-amd64 - Linux 6.1\n\
                   linux-image-6.1.0-50-cloud-amd64 - Linux 6.1\n\
                   linux-image-6.12-cloud-amd64 - meta\n\
                   linux-image-6.12.9+deb13-cloud-amd64 - x\n\
                   linux-image-6.12.57+deb13-cloud-amd64 - x\n";
        assert_eq!(
            newest_package(out, "linux-image-6.1.0-").unwrap(),
            "linux-image-6.1.0-50-cloud-amd64"
        );
        assert_eq!(
            newest_package(out, "linux-image-6.12").unwrap(),
            "linux-image-6.12.57+deb13-cloud-amd64"
        );
    }

    #[test]
    fn picks_newest_forky_kernel() {
        let out = "linux-image-7.2-cloud-amd64 - meta\n\
                   linux-image-7.2.9+deb14-cloud-amd64 - x\n\
                   linux-image-7.2.12+deb14-cloud-amd64 - x\n\
                   linux-image-7.10.1+deb14-cloud-amd64 - x\n\
                   linux-image-6.12.57+deb13-cloud-amd64 - x\n";
        let forky = spec(FORKY).unwrap();
        assert_eq!(forky.suite, Some("forky"));
        assert_eq!(
            newest_package(out, forky.prefix).unwrap(),
            "linux-image-7.10.1+deb14-cloud-amd64"
        );
        assert_eq!(spec(TRIXIE).unwrap().suite, Some("trixie"));
        assert_eq!(spec(BOOKWORM).unwrap().suite, None);
        assert!(spec("sid-7.3").is_err());
        for name in kernel_names() {
            assert!(spec(name).is_ok(), "{name}");
            let suite = spec(name).unwrap().suite;
            assert!(suite.is_none_or(|s| PRIVATE_SUITES.contains(&s)), "{name}");
        }
    }

    #[test]
    fn same_build_dependencies() {
        // forky's 7.x image: a metapackage over the same build's parts.
        let forky = "Package: linux-image-7.2.12+deb14-cloud-amd64\n\
                     Source: linux-signed-amd64 (7.2.12+1)\n\
                     Version: 7.2.12-1\n\
                     Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.12+deb14-cloud-amd64 (= 7.2.12-1), linux-binary-7.2.12+deb14-cloud-amd64 (= 7.2.12-1), linux-modules-7.2.12+deb14-cloud-amd64 (= 7.2.12-1)\n\
                     Pre-Depends: linux-base (>= 4.17~)\n\
                     Recommends: apparmor\n";
        assert_eq!(
            same_build_deps(forky),
            vec![
                "linux-base-7.2.12+deb14-cloud-amd64",
                "linux-binary-7.2.12+deb14-cloud-amd64",
                "linux-modules-7.2.12+deb14-cloud-amd64"
            ]
        );
        let modules = "Package: linux-modules-7.2.12+deb14-cloud-amd64\n\
                       Version: 7.2.12-1\n\
                       Depends: kmod, linux-base-7.2.12+deb14-cloud-amd64 (= 7.2.12-1)\n";
        assert_eq!(
            same_build_deps(modules),
            vec!["linux-base-7.2.12+deb14-cloud-amd64"]
        );
        // 6.12 and 6.1: one self-contained package.
        let trixie = "Package: linux-image-6.12.117+deb13-cloud-amd64\n\
                      Version: 6.12.117-1\n\
                      Depends: kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\n\
                      Pre-Depends: linux-base (>= 4.12~)\n";
        assert!(same_build_deps(trixie).is_empty());
        // Another version pinned: not the same build.
        let other = "Version: 1-1\nDepends: a (= 1-2), b:any (= 1-1)\n";
        assert_eq!(same_build_deps(other), vec!["b"]);
    }

    #[test]
    fn finds_files_by_content() {
        let root = std::env::temp_dir().join(format!("xtask-find-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let deep = root.join("usr/lib/modules/7.2.12+deb14-cloud-amd64/kernel/drivers/block");
        fs::create_dir_all(&deep).unwrap();
        fs::write(
            root.join("usr/lib/modules/7.2.12+deb14-cloud-amd64/vmlinuz"),
            b"k",
        )
        .unwrap();
        fs::write(deep.join("loop.ko.xz"), b"m").unwrap();
        std::os::unix::fs::symlink("/boot/vmlinuz-host", root.join("vmlinuz-link")).unwrap();
        let vmlinuz = find_one(&root, |n| n == "vmlinuz" || n.starts_with("vmlinuz-")).unwrap();
        assert!(
            vmlinuz.ends_with("7.2.12+deb14-cloud-amd64/vmlinuz"),
            "{vmlinuz:?}"
        );
        assert!(find_one(&root, |n| n == "loop.ko.xz").is_ok());
        assert!(find_one(&root, |n| n == "loop.ko").is_err());
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::write(root.join("boot/vmlinuz-7.2"), b"k").unwrap();
        assert!(
            find_one(&root, |n| n.starts_with("vmlinuz")).is_err(),
            "two candidates"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn parses_sources() {
        let deb822 = "Types: deb\n# comment\nURIs: http://a.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://a.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let s = parse_deb822_sources(deb822);
        assert_eq!(s.len(), 3);
        assert_eq!(
            pick_mirror(&s, "bookworm").unwrap(),
            "http://a.example/debian"
        );
        let one = "deb [arch=amd64 signed-by=/x.gpg] http://b.example/debian/ bookworm main contrib # c\n# deb http://c/ bookworm main\n";
        let s = parse_one_line_sources(one);
        assert_eq!(
            s,
            vec![AptSource {
                uri: "http://b.example/debian/".into(),
                suite: "bookworm".into(),
                components: vec!["main".into(), "contrib".into()]
            }]
        );
        assert_eq!(
            pick_mirror(&s, "bookworm").unwrap(),
            "http://b.example/debian"
        );
    }
}
