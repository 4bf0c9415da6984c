//! Links libgcc's unwinder statically into libcapsule.so. The shim never unwinds
//! (panic = "abort") but std still references the unwinder; resolving it from
//! `libgcc_eh.a` spares every program of a capsule loading `libgcc_s.so.1`, which is
//! measurable in process start time (scripts/bench/run). Without a static libgcc_eh
//! (another C toolchain), the shim links libgcc_s as usual.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let Ok(out) = Command::new(compiler)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let archive = std::path::Path::new(&path);
    if archive.is_absolute() && archive.is_file() {
        if let Some(dir) = archive.parent() {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=gcc_eh");
        }
    }
}
