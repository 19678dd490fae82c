//! Builds `guard-ebpf` for `bpfel-unknown-none` and puts the object in
//! OUT_DIR, so `cargo build -p guard` is all anyone has to type.
//!
//! Toolchain (see README "Toolchain"): Debian's `rustc-web` at /usr/bin/rustc
//! ships a prebuilt `core` for the BPF target, and bpf-linker 0.13 built
//! against LLVM 22. `cargo xtask setup` installs both.
//! Set GUARD_EBPF_OBJECT=/path/to/object to use a prebuilt object instead,
//! or GUARD_EBPF_WORKSPACE=/path to build guard-ebpf from another workspace
//! (`cargo xtask mutants` builds deliberately broken copies this way, so
//! this file stays the one place that knows how the object is built).

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const BPF_RUSTC: &str = "/usr/bin/rustc";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = match env::var_os("GUARD_EBPF_WORKSPACE") {
        Some(ws) => PathBuf::from(ws),
        None => manifest.parent().unwrap().to_path_buf(),
    };
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("guard-ebpf");
    for p in ["guard-ebpf/src", "guard-ebpf/Cargo.toml", "guard-common/src", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=GUARD_EBPF_OBJECT");
    println!("cargo:rerun-if-env-changed=GUARD_EBPF_WORKSPACE");

    if let Ok(prebuilt) = env::var("GUARD_EBPF_OBJECT") {
        std::fs::copy(&prebuilt, &out)
            .unwrap_or_else(|e| panic!("copying GUARD_EBPF_OBJECT={prebuilt}: {e}"));
        return;
    }

    let linker = find_bpf_linker();
    if !Path::new(BPF_RUSTC).exists() || linker.is_none() {
        panic!(
            "\n\nguard's eBPF side needs Debian's rustc with the BPF core library and bpf-linker:\n  \
             {BPF_RUSTC}: {}\n  bpf-linker: {}\n\
             Install them with `cargo xtask setup` (as root), or by hand:\n  \
             apt-get install -y rustc-web libstd-rust-web-dev-bpf llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev\n  \
             LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22\n\n",
            if Path::new(BPF_RUSTC).exists() { "found" } else { "MISSING" },
            linker.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "MISSING".into()),
        );
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = root.join("target/bpf");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", "bpfel-unknown-none", "-p", "guard-ebpf"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC", BPF_RUSTC)
        // aya-ebpf 0.2.1 uses `asm_experimental_arch`.
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", linker.unwrap())
        .env("CARGO_ENCODED_RUSTFLAGS", "-C\x1fdebuginfo=2\x1f-C\x1flink-arg=--btf");
    for var in ["RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for guard-ebpf");
    assert!(status.success(), "building guard-ebpf failed ({status}); see the errors above");
    let built = target_dir.join("bpfel-unknown-none/release/guard-ebpf");
    std::fs::copy(&built, &out).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
}

fn find_bpf_linker() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("bpf-linker")).find(|p| p.exists())
}
