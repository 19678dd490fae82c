//! Test kernels: Debian cloud kernels for bookworm (6.1) and trixie (6.12),
//! fetched with apt and cached as `<cache_root>/kernels/<name>/vmlinuz`
//! (+ a `version` file holding the Debian package name).
//!
//! No mirror host is ever written down: the archive URI is read at run time
//! from the host's apt configuration ([`host_debian_mirror`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::exec::{cmdline, exec, exec_output, unpack_downloaded_deb};

#[derive(Debug, Clone)]
pub struct Kernel {
    /// "bookworm-6.1" or "trixie-6.12".
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

pub fn kernel_names() -> [&'static str; 2] {
    [BOOKWORM, TRIXIE]
}

/// Where kernels are cached: `<cache_root>/kernels` (cache_root is e.g. `target/vm`).
pub fn kernels_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("kernels")
}

/// Both test kernels, bookworm-6.1 first, trixie-6.12 second; downloads any
/// that is not cached under `<cache_root>/kernels/<name>/`.
pub fn ensure_kernels(cache_root: &Path) -> Result<Vec<Kernel>> {
    kernel_names()
        .iter()
        .map(|name| ensure_kernel(cache_root, name))
        .collect()
}

/// One test kernel by name (see [`kernel_names`]).
pub fn ensure_kernel(cache_root: &Path, name: &str) -> Result<Kernel> {
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
    let apt = match name {
        BOOKWORM => AptState::Host,
        TRIXIE => AptState::private_trixie(&kernels_dir(cache_root).join(".apt-trixie"))?,
        other => bail!("unknown kernel {other:?} (known: {:?})", kernel_names()),
    };
    let package = resolve_package(&apt, name)?;
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

/// Which apt state to use: the host's, or a private one (only extra `-o` options differ).
enum AptState {
    Host,
    Private { options: Vec<String> },
}

impl AptState {
    fn private_trixie(dir: &Path) -> Result<AptState> {
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
        let sources = dir.join("sources.list.d/trixie.sources");
        let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
        let state = AptState::Private { options };
        // Preferred: verify with the host's Debian archive keyring (bookworm's
        // debian-archive-keyring 2023.3+deb12u2 already carries trixie's keys).
        if keyring.is_file() {
            write_trixie_sources(&sources, &uri, &format!("Signed-By: {}", keyring.display()))?;
            let mut update = state.apt_get(&["update"]);
            eprintln!("==> {}", cmdline(&update));
            let out = update.output().context("running apt-get update")?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprint!("{text}");
            if out.status.success() {
                return Ok(state);
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
                bail!("private trixie `apt-get update` failed: {}", out.status);
            }
        }
        // Documented fallback: a host keyring too old to know trixie's key.
        // The .debs are only unpacked for their vmlinuz, which boots in a
        // throw-away QEMU guest, never on the host.
        eprintln!(
            "kernels: WARNING: falling back to `Trusted: yes` for the private trixie apt source"
        );
        write_trixie_sources(&sources, &uri, "Trusted: yes")?;
        exec(&mut state.apt_get(&["update"]))?;
        Ok(state)
    }

    fn options(&self) -> &[String] {
        match self {
            AptState::Host => &[],
            AptState::Private { options } => options,
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

fn write_trixie_sources(path: &Path, uri: &str, trust_line: &str) -> Result<()> {
    let text = format!(
        "# Private apt source used by xtask only to download trixie kernels.\n\
         Types: deb\nURIs: {uri}\nSuites: trixie\nComponents: main\n{trust_line}\n"
    );
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Package-name regex (POSIX ERE, for `apt-cache search --names-only`) per kernel.
fn package_regex(name: &str) -> &'static str {
    match name {
        // Only the 6.1 ABI packages; bookworm also carries 6.12 backports.
        BOOKWORM => r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
        _ => r"^linux-image-6\.12[.0-9]*[^ ]*-cloud-amd64$",
    }
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

fn resolve_package(apt: &AptState, name: &str) -> Result<String> {
    let prefix = match name {
        BOOKWORM => "linux-image-6.1.0-",
        _ => "linux-image-6.12",
    };
    let search = |apt: &AptState| -> Result<Option<String>> {
        let out =
            exec_output(&mut apt.apt_cache(&["search", "--names-only", package_regex(name)]))?;
        Ok(newest_package(&out, prefix))
    };
    if let Some(p) = search(apt)? {
        return Ok(p);
    }
    if let AptState::Host = apt {
        eprintln!("kernels: no {name} kernel in the host's apt lists; running apt-get update");
        exec(&mut apt.apt_get(&["update"]))?;
        if let Some(p) = search(apt)? {
            return Ok(p);
        }
    }
    bail!(
        "no package matching {} found by apt-cache",
        package_regex(name)
    )
}

fn download_kernel(apt: &AptState, package: &str, dir: &Path, name: &str) -> Result<()> {
    let work = dir.with_file_name(format!(".{name}.download"));
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let mut download = apt.apt_get(&["download", package]);
    download.current_dir(&work);
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
    let (deb, extract) = unpack_downloaded_deb(&work)?;
    let vmlinuz = fs::read_dir(extract.join("boot"))
        .with_context(|| format!("{} has no boot/ directory", deb.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{} has no boot/vmlinuz-*", deb.display()))?;
    fs::create_dir_all(dir)?;
    // bookworm ships /lib/modules, trixie (merged /usr) /usr/lib/modules.
    let module = ["lib/modules", "usr/lib/modules"]
        .iter()
        .find_map(|d| find_file(&extract.join(d), &["loop.ko", "loop.ko.xz", "loop.ko.zst"]))
        .with_context(|| format!("{} has no loop.ko module", deb.display()))?;
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

/// The first file below `root` whose name is one of `names`.
fn find_file(root: &Path, names: &[&str]) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| names.contains(&n)) {
                return Some(p);
            }
        }
    }
    None
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
