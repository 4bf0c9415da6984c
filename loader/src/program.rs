//! Finding the program to run before anything is created, the way a shell does.
//!
//! A name containing `/` is a path (relative to the program's working directory); one
//! without is searched in the `PATH` of the program's own environment (an empty entry
//! meaning the working directory; glibc's `/bin:/usr/bin` when `PATH` is unset).
//! Inside a capsule with its own root ([`find_program_in`]) the same search runs on
//! capsule paths, through the capsule's file-system [`View`].
//!
//! A shell exits 127 for a program that is not there and 126 for one that is there but
//! cannot be executed; the loader's `main` does the same with these errors.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::describe_io;
use crate::view::View;

/// What `execvp` uses when `PATH` is unset.
pub const DEFAULT_PATH: &str = "/bin:/usr/bin";

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// A path (with `/`) that does not exist: exit 127.
    #[error("{}: no such file or directory", .0.to_string_lossy())]
    NoSuchFile(OsString),
    /// A name (without `/`) found nowhere in `PATH`: exit 127.
    #[error("{}: command not found", .0.to_string_lossy())]
    CommandNotFound(OsString),
    /// Exists but is not executable (or not a regular file): exit 126.
    #[error("{}: permission denied", .0.to_string_lossy())]
    PermissionDenied(OsString),
    /// A directory: exit 126.
    #[error("{}: is a directory", .0.to_string_lossy())]
    IsADirectory(OsString),
    /// Cannot be examined (a loop of symbolic links, an unreadable directory…): exit 126.
    #[error("{}: {}", .program.to_string_lossy(), describe_io(.error))]
    Inaccessible { program: OsString, error: io::Error },
}

impl LookupError {
    /// True when the program does not exist at all (a shell's 127), false when it
    /// exists but cannot be run (126).
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            LookupError::NoSuchFile(_) | LookupError::CommandNotFound(_)
        )
    }
}

/// Finds `program`; `path_var` is the `PATH` of the program's environment and `cwd` the
/// directory it starts in (absolute). Returns an absolute path to execute.
pub fn find_program(
    program: &OsStr,
    path_var: Option<&OsStr>,
    cwd: &Path,
) -> Result<PathBuf, LookupError> {
    search(program, path_var, cwd, |path| {
        (check(path), path.to_path_buf())
    })
}

/// Finds `program` inside a capsule whose file system is `view` (`--root`): `cwd`, the
/// `PATH` entries and a program path are capsule paths, each candidate is looked for
/// in the capsule's volumes, then its upper layer, then its root (see [`View`]).
/// Returns the host path of the file found, which is what gets executed.
pub fn find_program_in(
    program: &OsStr,
    path_var: Option<&OsStr>,
    cwd: &Path,
    view: &View,
) -> Result<PathBuf, LookupError> {
    search(program, path_var, cwd, |path| match view.resolve(path) {
        Ok(found) => (check(&found.host), found.host),
        Err(e) => (classify(e), PathBuf::new()),
    })
}

/// The search itself: `probe` examines the candidate at a path (from `cwd`) and says
/// which file would be executed.
fn search(
    program: &OsStr,
    path_var: Option<&OsStr>,
    cwd: &Path,
    probe: impl Fn(&Path) -> (Candidate, PathBuf),
) -> Result<PathBuf, LookupError> {
    let name = program.to_os_string();
    if program.as_bytes().contains(&b'/') {
        let (candidate, file) = probe(&cwd.join(program));
        return match candidate {
            Candidate::Executable => Ok(file),
            Candidate::Missing => Err(LookupError::NoSuchFile(name)),
            Candidate::Directory => Err(LookupError::IsADirectory(name)),
            Candidate::NotExecutable => Err(LookupError::PermissionDenied(name)),
            Candidate::Error(error) => Err(LookupError::Inaccessible {
                program: name,
                error,
            }),
        };
    }
    if program.is_empty() {
        return Err(LookupError::CommandNotFound(name));
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut denied = false;
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            cwd.to_path_buf()
        } else {
            cwd.join(OsStr::from_bytes(dir))
        };
        match probe(&dir.join(program)) {
            (Candidate::Executable, file) => return Ok(file),
            // Like execvp and bash: a file that is there but not executable is reported
            // only if nothing later in PATH can run.
            (Candidate::NotExecutable, _) => denied = true,
            (Candidate::Missing | Candidate::Directory | Candidate::Error(_), _) => {}
        }
    }
    if denied {
        Err(LookupError::PermissionDenied(name))
    } else {
        Err(LookupError::CommandNotFound(name))
    }
}

enum Candidate {
    Executable,
    Missing,
    Directory,
    NotExecutable,
    Error(io::Error),
}

fn check(path: &Path) -> Candidate {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => return classify(e),
    };
    if meta.is_dir() {
        Candidate::Directory
    } else if meta.is_file() && executable(path) {
        Candidate::Executable
    } else {
        Candidate::NotExecutable
    }
}

/// What a failure to examine a candidate means for the search.
fn classify(error: io::Error) -> Candidate {
    if error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ENOTDIR) {
        Candidate::Missing
    } else if error.kind() == io::ErrorKind::PermissionDenied {
        Candidate::NotExecutable
    } else {
        Candidate::Error(error)
    }
}

/// Whether this process may execute `path` (the kernel's own check: mode bits, ACLs,
/// `noexec` mounts; root still needs one execute bit).
fn executable(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call;
    // faccessat only reads it.
    unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::X_OK,
            libc::AT_EACCESS,
        ) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("capsule-program-test-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("bin")).unwrap();
            fs::create_dir_all(dir.join("other")).unwrap();
            Scratch(dir)
        }

        fn file(&self, rel: &str, mode: u32) -> PathBuf {
            let path = self.0.join(rel);
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn find(program: &str, path: Option<&str>, cwd: &Path) -> Result<PathBuf, LookupError> {
        find_program(program.as_ref(), path.map(OsStr::new), cwd)
    }

    #[test]
    fn paths_with_a_slash() {
        let s = Scratch::new("slash");
        let tool = s.file("bin/tool", 0o755);
        s.file("bin/data", 0o644);
        assert_eq!(
            find("./bin/tool", None, &s.0).unwrap(),
            s.0.join("./bin/tool")
        );
        assert_eq!(
            find(tool.to_str().unwrap(), None, Path::new("/")).unwrap(),
            tool
        );
        let err = find("./bin/missing", None, &s.0).unwrap_err();
        assert!(matches!(err, LookupError::NoSuchFile(_)) && err.is_missing());
        assert_eq!(err.to_string(), "./bin/missing: no such file or directory");
        let err = find("./bin/data", None, &s.0).unwrap_err();
        assert_eq!(err.to_string(), "./bin/data: permission denied");
        assert!(!err.is_missing());
        let err = find("./bin", None, &s.0).unwrap_err();
        assert_eq!(err.to_string(), "./bin: is a directory");
        let err = find("./bin/data/x", None, &s.0).unwrap_err();
        assert!(err.is_missing());
    }

    #[test]
    fn names_search_path() {
        let s = Scratch::new("path");
        s.file("bin/tool", 0o755);
        s.file("other/tool", 0o755);
        s.file("other/data", 0o644);
        let path = format!("{0}/nonexistent:{0}/bin:{0}/other", s.0.display());
        assert_eq!(
            find("tool", Some(&path), &s.0).unwrap(),
            s.0.join("bin/tool")
        );
        // Relative entries are taken from the program's working directory.
        assert_eq!(
            find("tool", Some("other"), &s.0).unwrap(),
            s.0.join("other/tool")
        );
        assert_eq!(
            find("tool", Some("/nonexistent::x"), &s.0.join("bin")).unwrap(),
            s.0.join("bin/tool")
        );
        let err = find("nope", Some(&path), &s.0).unwrap_err();
        assert_eq!(err.to_string(), "nope: command not found");
        assert!(err.is_missing());
        let err = find("data", Some(&path), &s.0).unwrap_err();
        assert_eq!(err.to_string(), "data: permission denied");
        // A directory named like the program is skipped.
        let err = find("bin", Some(&s.0.display().to_string()), &s.0).unwrap_err();
        assert!(matches!(err, LookupError::CommandNotFound(_)));
        assert!(find("", Some(&path), &s.0).unwrap_err().is_missing());
    }

    #[test]
    fn inside_a_capsule_upper_then_root() {
        let s = Scratch::new("capsule");
        for dir in ["root/bin", "root/usr/bin", "root/srv", "upper/bin", "vol"] {
            fs::create_dir_all(s.0.join(dir)).unwrap();
        }
        let view = View::new(
            s.0.join("root"),
            s.0.join("upper"),
            vec![
                capsule_config::Volume::parse(&format!("{}:/opt", s.0.join("vol").display()))
                    .unwrap(),
            ],
        );
        let find = |program: &str, path: Option<&str>, cwd: &str| {
            find_program_in(
                program.as_ref(),
                path.map(OsStr::new),
                Path::new(cwd),
                &view,
            )
        };
        let lower = s.file("root/bin/prog", 0o755);
        assert_eq!(find("/bin/prog", None, "/").unwrap(), lower);
        assert_eq!(find("prog", Some("/usr/bin:/bin"), "/").unwrap(), lower);
        // Relative paths and PATH entries are capsule paths from the capsule's cwd.
        assert_eq!(find("../bin/prog", None, "/srv").unwrap(), lower);
        assert_eq!(find("prog", Some("../bin"), "/srv").unwrap(), lower);
        assert_eq!(find("./prog", None, "/bin").unwrap(), lower);
        // The upper layer shadows the root.
        let upper = s.file("upper/bin/prog", 0o755);
        assert_eq!(find("/bin/prog", None, "/").unwrap(), upper);
        assert_eq!(find("prog", None, "/").unwrap(), upper);
        // A later PATH entry of the root is found after an earlier one of either layer.
        let usr = s.file("root/usr/bin/only-usr", 0o755);
        assert_eq!(find("only-usr", Some("/bin:/usr/bin"), "/").unwrap(), usr);
        // Volumes are part of the capsule.
        let tool = s.file("vol/tool", 0o755);
        assert_eq!(find("tool", Some("/bin:/opt"), "/").unwrap(), tool);
        // The host's programs are not the capsule's.
        let err = find("/bin/sh", None, "/").unwrap_err();
        assert_eq!(err.to_string(), "/bin/sh: no such file or directory");
        let err = find("sh", Some("/bin:/usr/bin"), "/").unwrap_err();
        assert_eq!(err.to_string(), "sh: command not found");
        assert!(err.is_missing());
        // 126 cases.
        s.file("upper/bin/data", 0o644);
        let err = find("/bin/data", None, "/").unwrap_err();
        assert_eq!(err.to_string(), "/bin/data: permission denied");
        assert!(!err.is_missing());
        let err = find("/usr/bin", None, "/").unwrap_err();
        assert_eq!(err.to_string(), "/usr/bin: is a directory");
        // A symbolic link is followed inside the capsule.
        std::os::unix::fs::symlink("/bin/prog", s.0.join("root/usr/bin/alias")).unwrap();
        assert_eq!(find("alias", Some("/usr/bin"), "/").unwrap(), upper);
    }

    #[test]
    fn default_path_when_unset() {
        assert!(find("sh", None, Path::new("/")).is_ok());
    }
}
