//! Links an unwinder statically into the shim, and binds the shim's calls of its own
//! exported functions at link time. The shim never unwinds
//! (panic = "abort") but std still references the unwinder.
//!
//! - glibc (`libcapsule.so`): libgcc's `libgcc_eh.a`, which spares every program of a
//!   capsule loading `libgcc_s.so.1` (measurable in process start time,
//!   scripts/bench/run). Without a static libgcc_eh (another C toolchain), the shim
//!   links libgcc_s as usual.
//! - musl (`libcapsule-musl.so`): Debian's libgcc_eh is built against glibc (it calls
//!   `_dl_find_object`) and Alpine roots have no libgcc_s, so the shim takes the LLVM
//!   libunwind that rustup ships for the musl target (`self-contained/libunwind.a`).
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl") {
        musl_unwinder();
    } else {
        gnu_unwinder();
    }
    // The shim's own calls of the functions it exports (std's `open64`, `statx`…,
    // the hooks calling one another) bind inside the shim at link time: otherwise
    // each is a symbol the dynamic loader looks up at every program start (about
    // 100 of them, ~57,000 instructions), only to find the shim's own definition.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
}

fn gnu_unwinder() {
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

fn musl_unwinder() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let target = std::env::var("TARGET").unwrap_or_default();
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dir: PathBuf = [&sysroot, "lib", "rustlib", &target, "lib", "self-contained"]
        .iter()
        .collect();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    // Copied into OUT_DIR rather than searching self-contained/, whose static libc.a
    // would then be linked in place of the system's ld-musl.
    // std's unwind crate still asks for `-lgcc_s` when the target is not crt-static;
    // musl-gcc cannot find the glibc libgcc_s.so.1 and nothing would be taken from it
    // (libunwind.a defines every `_Unwind_*`): an empty archive of that name, found
    // first, satisfies the flag without a run-time dependency.
    if std::fs::copy(dir.join("libunwind.a"), out.join("libunwind.a")).is_ok()
        && std::fs::write(out.join("libgcc_s.a"), b"!<arch>\n").is_ok()
    {
        println!("cargo:rustc-link-search=native={}", out.display());
        // Last on the link line, after std's rlibs that reference it (a `-l` placed
        // before them would leave `_Unwind_*` undefined).
        println!(
            "cargo:rustc-cdylib-link-arg={}",
            out.join("libunwind.a").display()
        );
    } else {
        println!(
            "cargo:warning=no {} (rustup target add {target}): the musl shim needs libgcc_s at run time",
            dir.join("libunwind.a").display()
        );
    }
}
