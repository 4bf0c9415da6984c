//! Finding `libcapsule.so` and putting it in a program's `LD_PRELOAD`.
//!
//! Order: `$CAPSULE_SHIM` (must exist); `libcapsule.so` beside the running `capsule`
//! executable (a cargo build puts both in `target/<profile>/`); then
//! `../lib/capsule/libcapsule.so` relative to it (an installed layout such as
//! `/usr/local/bin/capsule` + `/usr/local/lib/capsule/libcapsule.so`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The environment variable that names the shim explicitly.
pub const SHIM_VAR: &str = "CAPSULE_SHIM";
/// The shim's file name.
pub const SHIM_FILE: &str = "libcapsule.so";
/// The environment variable that names the musl shim explicitly.
pub const MUSL_SHIM_VAR: &str = "CAPSULE_SHIM_MUSL";
/// The musl shim's file name (beside `libcapsule.so`, built by the same `cargo build`).
pub const MUSL_SHIM_FILE: &str = "libcapsule-musl.so";

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{SHIM_VAR}={}: no such file", .0.display())]
    Missing(PathBuf),
    #[error("{SHIM_VAR}={}: not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error("cannot find {SHIM_FILE} next to {}; set {SHIM_VAR}", .0.display())]
    NotFound(PathBuf),
    #[error("cannot find {SHIM_FILE}: the path of the capsule executable is unknown ({0}); set {SHIM_VAR}")]
    NoExe(String),
    #[error("{}: a musl program, and {} is missing (build with musl-tools installed and `rustup target add x86_64-unknown-linux-musl`, or set {MUSL_SHIM_VAR})", .program.display(), .shim.display())]
    NoMuslShim { program: PathBuf, shim: PathBuf },
    #[error("{}: LD_PRELOAD cannot carry a path containing a space or a colon; install the shim elsewhere", .0.display())]
    Unpreloadable(PathBuf),
}

/// Locates the shim. `explicit` is `$CAPSULE_SHIM` (empty counts as unset), `exe` the
/// running executable, `cwd` makes a relative `$CAPSULE_SHIM` absolute.
pub fn locate(
    explicit: Option<&OsStr>,
    exe: Result<PathBuf, String>,
    cwd: Option<&Path>,
) -> Result<PathBuf, ShimError> {
    let found = match explicit.filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = absolute(Path::new(path), cwd);
            match std::fs::metadata(&path) {
                Err(_) => return Err(ShimError::Missing(path)),
                Ok(m) if !m.is_file() => return Err(ShimError::NotAFile(path)),
                Ok(_) => path,
            }
        }
        None => {
            let exe = exe.map_err(ShimError::NoExe)?;
            let dir = exe.parent().unwrap_or(Path::new("/"));
            let candidates = [
                dir.join(SHIM_FILE),
                dir.join("../lib/capsule").join(SHIM_FILE),
            ];
            candidates
                .into_iter()
                .find(|c| c.is_file())
                .ok_or(ShimError::NotFound(exe))?
        }
    };
    if found
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b' ' | b':'))
    {
        return Err(ShimError::Unpreloadable(found));
    }
    Ok(found)
}

/// The shim for the host program file `executable`: the musl shim
/// (`$CAPSULE_SHIM_MUSL`, else `libcapsule-musl.so` beside `glibc`) when its
/// `PT_INTERP` (or its `#!` interpreter's) is musl's loader, else `glibc`. A static
/// program gets `glibc`, which its kernel-started process never loads.
pub fn for_program(
    glibc: &Path,
    explicit_musl: Option<&OsStr>,
    executable: &Path,
) -> Result<PathBuf, ShimError> {
    if !is_musl_program(executable) {
        return Ok(glibc.to_path_buf());
    }
    let musl = match explicit_musl.filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => glibc.with_file_name(MUSL_SHIM_FILE),
    };
    if !musl.is_file() {
        return Err(ShimError::NoMuslShim {
            program: executable.to_path_buf(),
            shim: musl,
        });
    }
    Ok(musl)
}

/// Whether `executable` runs with musl's dynamic loader.
pub fn is_musl_program(executable: &Path) -> bool {
    let interp = crate::landlock::interpreter_of(executable).or_else(|| {
        crate::landlock::script_interpreter(executable)
            .and_then(|s| crate::landlock::interpreter_of(&s))
    });
    interp
        .as_deref()
        .and_then(Path::file_name)
        .is_some_and(|n| n.as_bytes().starts_with(b"ld-musl"))
}

fn absolute(path: &Path, cwd: Option<&Path>) -> PathBuf {
    match cwd {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    }
}

/// `LD_PRELOAD` for the program: the shim first, then what was already there (the shim
/// itself dropped from the rest, so it is never listed twice).
pub fn preload_value(shim: &Path, existing: Option<&OsStr>) -> OsString {
    let shim = shim.as_os_str();
    let mut value = shim.to_os_string();
    if let Some(existing) = existing {
        for entry in existing
            .as_bytes()
            .split(|b| matches!(b, b' ' | b':'))
            .filter(|e| !e.is_empty() && *e != shim.as_bytes())
        {
            value.push(":");
            value.push(OsStr::from_bytes(entry));
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_puts_the_shim_first_once() {
        let shim = Path::new("/opt/libcapsule.so");
        assert_eq!(preload_value(shim, None), "/opt/libcapsule.so");
        assert_eq!(preload_value(shim, Some("".as_ref())), "/opt/libcapsule.so");
        assert_eq!(
            preload_value(shim, Some("/a.so /b.so:/opt/libcapsule.so".as_ref())),
            "/opt/libcapsule.so:/a.so:/b.so"
        );
        assert_eq!(
            preload_value(shim, Some("/opt/libcapsule.so".as_ref())),
            "/opt/libcapsule.so"
        );
    }

    #[test]
    fn explicit_shim_must_exist() {
        let err = locate(Some("/nonexistent/lib.so".as_ref()), Err("x".into()), None);
        assert!(matches!(err, Err(ShimError::Missing(_))));
        let err = locate(Some("/".as_ref()), Err("x".into()), None);
        assert!(matches!(err, Err(ShimError::NotAFile(_))));
    }

    #[test]
    fn finds_the_shim_beside_the_executable_or_in_lib() {
        let root = std::env::temp_dir().join(format!("capsule-shim-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("lib/capsule")).unwrap();
        let exe = root.join("bin/capsule");

        let err = locate(None, Ok(exe.clone()), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot find libcapsule.so next to {}; set CAPSULE_SHIM",
                exe.display()
            )
        );

        std::fs::write(root.join("lib/capsule/libcapsule.so"), b"").unwrap();
        let found = locate(Some("".as_ref()), Ok(exe.clone()), None).unwrap();
        assert_eq!(found, root.join("bin/../lib/capsule/libcapsule.so"));

        std::fs::write(root.join("bin/libcapsule.so"), b"").unwrap();
        let found = locate(None, Ok(exe.clone()), None).unwrap();
        assert_eq!(found, root.join("bin/libcapsule.so"));

        let found = locate(
            Some("libcapsule.so".as_ref()),
            Err("x".into()),
            Some(&root.join("bin")),
        )
        .unwrap();
        assert_eq!(found, root.join("bin/libcapsule.so"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
