//! Builds the musl shim, `libcapsule-musl.so`, beside `capsule` and `libcapsule.so`:
//! the same shim sources compiled for `x86_64-unknown-linux-musl` (a cdylib against
//! musl's `ld-musl-x86_64.so.1`, linked by musl-gcc, not crt-static), in a target
//! directory of its own (`target/musl-shim`) so that it never waits on the outer
//! build's lock. Without musl-gcc or the rustup target the build goes on with a
//! warning, and `capsule` refuses musl programs with a line saying what to install.
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-musl";
const LINKER_VAR: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER";
const RUSTFLAGS_VAR: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest.parent().unwrap_or(Path::new("..")).to_path_buf();
    for watched in ["shim/src", "shim/build.rs", "shim/Cargo.toml", "config/src"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed={LINKER_VAR}");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64")
        || std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
    {
        return;
    }
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out.
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let Some(profile_dir) = out.ancestors().nth(3).map(Path::to_path_buf) else {
        return;
    };
    // The directory that holds <profile> (absolute, unlike a relative
    // CARGO_TARGET_DIR): target/musl-shim in a plain build.
    let target_root = profile_dir.parent().unwrap_or(&profile_dir).to_path_buf();
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let linker = std::env::var(LINKER_VAR).unwrap_or_else(|_| "musl-gcc".to_string());
    if Command::new(&linker).arg("--version").output().is_err() {
        warn(&format!(
            "{linker} not found: libcapsule-musl.so not built (install musl-tools)"
        ));
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "capsule-shim",
        "--lib",
        "--target",
        TARGET,
    ])
    .arg("--manifest-path")
    .arg(workspace.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target_root.join("musl-shim"))
    .env(LINKER_VAR, &linker)
    .env(RUSTFLAGS_VAR, "-C target-feature=-crt-static")
    // The outer build's flags and wrappers (clippy's, RUSTFLAGS) are for the host
    // target; they would override the target's flags above.
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .env_remove("RUSTFLAGS")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env_remove("CARGO_TARGET_DIR");
    if release {
        cmd.arg("--release");
    }
    let built = match cmd.output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr);
            for line in text.lines().filter(|l| !l.trim().is_empty()).take(20) {
                warn(line);
            }
            if text.contains("target may not be installed") || text.contains("can't find crate") {
                warn(&format!("run `rustup target add {TARGET}`"));
            }
            false
        }
        Err(e) => {
            warn(&format!("cannot run cargo for the musl shim: {e}"));
            false
        }
    };
    let product = target_root
        .join("musl-shim")
        .join(TARGET)
        .join(if release { "release" } else { "debug" })
        .join("libcapsule.so");
    let dest = profile_dir.join("libcapsule-musl.so");
    if !built {
        warn("libcapsule-musl.so not built: capsule refuses musl programs");
        let _ = std::fs::remove_file(&dest);
        return;
    }
    // Through a temporary name: a running capsule may have the old one mapped.
    let tmp = profile_dir.join(".libcapsule-musl.so.tmp");
    if let Err(e) = std::fs::copy(&product, &tmp).and_then(|_| std::fs::rename(&tmp, &dest)) {
        warn(&format!(
            "cannot copy {} to {}: {e}",
            product.display(),
            dest.display()
        ));
    }
}

fn warn(line: &str) {
    println!("cargo:warning={line}");
}
