//! The capsule's file system as the loader sees it, from the host, before the program
//! starts: `--root`, the private upper layer and `-v` volumes.
//!
//! With `--root DIR` the capsule's `/` is `DIR` (the read-only lower layer), overlaid by
//! the capsule's private upper layer (`$CAPSULE_HOME/capsules/NAME/upper`), with each
//! volume's host file or directory bound at its capsule path. The shim applies that
//! view to the running program; the loader needs it earlier, to find the program and
//! the working directory inside the capsule and to start the program by their host
//! paths.
//!
//! A capsule path is resolved component by component, as the kernel would inside a
//! `chroot`: each name is looked for in the volume bound at or above it (the longest
//! such volume path), else in the upper layer, else in the root; symbolic links are
//! followed inside the capsule (an absolute target starts again from the capsule's
//! `/`, `..` never climbs above it), at most [`MAX_SYMLINKS`] of them.
//!
//! Not modelled yet: deletions recorded in the upper layer (the shim's format for them
//! is still to come), and mount-point directories that exist neither in the root nor
//! in the upper layer.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use capsule_config::{config_value, keys, UserDb, Volume};

use crate::describe_io;
use crate::given::Given;

/// How many symbolic links one resolution follows before giving up (`ELOOP`), as Linux.
pub const MAX_SYMLINKS: usize = 40;

/// Why `--root DIR` cannot be the capsule's `/`.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{}: no such directory", .0.display())]
    Missing(PathBuf),
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: {}", .path.display(), describe_io(.error))]
    Inaccessible { path: PathBuf, error: io::Error },
    /// The directory exists but its absolute path cannot go into the config file.
    #[error("{}: {reason}", .path.display())]
    Unusable { path: PathBuf, reason: String },
}

/// Why a `-v HOST:PATH[:ro]` cannot be bound. Every message starts with the spec as
/// given.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Not `HOST:PATH[:ro|:rw]` with absolute paths.
    #[error("{spec}: {reason}")]
    Syntax { spec: String, reason: String },
    #[error("{spec}: {host}: no such file or directory")]
    HostMissing { spec: String, host: String },
    #[error("{spec}: {host}: {}", describe_io(.error))]
    HostInaccessible {
        spec: String,
        host: String,
        error: io::Error,
    },
    #[error("{spec}: a volume cannot be bound at the capsule's / (use --root)")]
    OverRoot { spec: String },
    #[error("{spec}: {path} is already bound by {first}")]
    Duplicate {
        spec: String,
        path: String,
        first: String,
    },
    /// The host path resolves to one the config file cannot carry.
    #[error("{spec}: {host}: {reason}")]
    Unusable {
        spec: String,
        host: String,
        reason: String,
    },
}

/// Checks `--root DIR`: an existing directory. Returns its canonical absolute path
/// (symbolic links resolved), taking a relative `DIR` from `cwd`.
pub fn check_root(dir: &Path, cwd: Option<&Path>) -> Result<PathBuf, RootError> {
    let absolute = match cwd {
        Some(cwd) if dir.is_relative() => cwd.join(dir),
        _ => dir.to_path_buf(),
    };
    match fs::metadata(&absolute) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(RootError::NotADirectory(dir.to_path_buf())),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Err(RootError::Missing(dir.to_path_buf()))
        }
        Err(error) => {
            return Err(RootError::Inaccessible {
                path: dir.to_path_buf(),
                error,
            })
        }
    }
    let canonical = fs::canonicalize(&absolute).map_err(|error| RootError::Inaccessible {
        path: dir.to_path_buf(),
        error,
    })?;
    config_value(keys::ROOT, canonical.as_os_str()).map_err(|e| RootError::Unusable {
        path: dir.to_path_buf(),
        reason: e.reason,
    })?;
    Ok(canonical)
}

/// Checks parsed `-v` specs in order and together: each is `HOST:PATH[:ro|:rw]` with
/// absolute paths, HOST exists (a file or a directory; kept canonical), PATH is not
/// `/` and is bound at most once.
pub fn check_volumes(specs: &[Given<Volume>]) -> Result<Vec<Volume>, VolumeError> {
    let mut volumes: Vec<(Volume, &str)> = Vec::new();
    for given in specs {
        let spec = given.text();
        let volume = check_volume(given)?;
        if let Some((_, first)) = volumes.iter().find(|(v, _)| v.path == volume.path) {
            return Err(VolumeError::Duplicate {
                spec: spec.to_string(),
                path: volume.path,
                first: first.to_string(),
            });
        }
        volumes.push((volume, spec));
    }
    Ok(volumes.into_iter().map(|(v, _)| v).collect())
}

/// Checks one parsed `-v` spec (see [`check_volumes`]).
pub fn check_volume(given: &Given<Volume>) -> Result<Volume, VolumeError> {
    let spec = given.text();
    let mut volume = given
        .value()
        .map_err(|reason| VolumeError::Syntax {
            spec: spec.to_string(),
            reason: reason.to_string(),
        })?
        .clone();
    if volume.path == "/" {
        return Err(VolumeError::OverRoot {
            spec: spec.to_string(),
        });
    }
    let host = volume.host.clone();
    let canonical = match fs::canonicalize(&host) {
        Ok(path) => path,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(VolumeError::HostMissing {
                spec: spec.to_string(),
                host,
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(VolumeError::HostMissing {
                spec: spec.to_string(),
                host,
            })
        }
        Err(error) => {
            return Err(VolumeError::HostInaccessible {
                spec: spec.to_string(),
                host,
                error,
            })
        }
    };
    let unusable = |reason: String| VolumeError::Unusable {
        spec: spec.to_string(),
        host: host.clone(),
        reason,
    };
    let text =
        config_value(keys::VOLUMES, canonical.as_os_str()).map_err(|e| unusable(e.reason))?;
    if text.contains([':', ';']) {
        return Err(unusable(format!(
            "resolves to {text}, and a volume's path cannot contain ':' or ';'"
        )));
    }
    volume.host = text;
    Ok(volume)
}

/// A capsule path resolved to the host file that backs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The capsule path, absolute, without `.`, `..` or symbolic links.
    pub capsule: PathBuf,
    /// The host file or directory (in a volume, the upper layer or the root).
    pub host: PathBuf,
    pub is_dir: bool,
}

/// The capsule's file system: a root, the upper layer over it, volumes bound into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    root: PathBuf,
    upper: PathBuf,
    volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    Symlink,
    Other,
}

/// One step of a path still to resolve.
enum Step {
    Name(OsString),
    Up,
}

impl View {
    /// `root` and `upper` are absolute host directories (`upper` need not exist yet);
    /// volume hosts are absolute host paths, volume paths absolute capsule paths.
    pub fn new(root: impl Into<PathBuf>, upper: impl Into<PathBuf>, volumes: Vec<Volume>) -> View {
        View {
            root: root.into(),
            upper: upper.into(),
            volumes,
        }
    }

    /// The host directory that is the capsule's `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn upper(&self) -> &Path {
        &self.upper
    }

    /// Resolves the capsule path `path` (relative paths are taken from the capsule's
    /// `/`), following every symbolic link, the last one included. Errors are the
    /// kernel's: `ENOENT`, `ENOTDIR`, `ELOOP`, or what examining a host file gave.
    pub fn resolve(&self, path: &Path) -> io::Result<Resolved> {
        let mut done = PathBuf::from("/");
        let mut pending = Vec::new();
        push_steps(&mut pending, path);
        let must_be_dir = path.as_os_str().as_bytes().ends_with(b"/");
        let mut links = 0;
        // The host entry of `done`, when the last step found it.
        let mut found: Option<(PathBuf, Kind)> = None;
        while let Some(step) = pending.pop() {
            let name = match step {
                Step::Up => {
                    done.pop();
                    found = None;
                    continue;
                }
                Step::Name(name) => name,
            };
            let capsule = done.join(&name);
            let (host, kind) = self.lookup(&capsule)?;
            match kind {
                Kind::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = fs::read_link(&host)?;
                    if target.is_absolute() {
                        done = PathBuf::from("/");
                        found = None;
                    }
                    push_steps(&mut pending, &target);
                }
                Kind::Other if !pending.is_empty() => {
                    return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                }
                Kind::Directory | Kind::Other => {
                    done = capsule;
                    found = Some((host, kind));
                }
            }
        }
        let (host, kind) = match found {
            Some(entry) => entry,
            None if done == Path::new("/") => (self.root.clone(), Kind::Directory),
            None => self.lookup(&done)?,
        };
        if must_be_dir && kind != Kind::Directory {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(Resolved {
            capsule: done,
            host,
            is_dir: kind == Kind::Directory,
        })
    }

    /// The users and groups of the capsule: its `/etc/passwd` and `/etc/group`
    /// (missing files read as empty).
    pub fn user_db(&self) -> UserDb {
        let read = |file: &str| {
            self.resolve(Path::new(file))
                .ok()
                .and_then(|found| fs::read_to_string(found.host).ok())
                .unwrap_or_default()
        };
        UserDb {
            passwd: read("/etc/passwd"),
            group: read("/etc/group"),
        }
    }

    /// The host entry backing `capsule` (absolute, without `.`, `..` or symbolic links
    /// before its last component), without following a last symbolic link.
    fn lookup(&self, capsule: &Path) -> io::Result<(PathBuf, Kind)> {
        let volume = self
            .volumes
            .iter()
            .filter(|v| capsule.starts_with(&v.path))
            .max_by_key(|v| v.path.len());
        if let Some(volume) = volume {
            let rest = capsule.strip_prefix(&volume.path).unwrap_or(Path::new(""));
            return if rest.as_os_str().is_empty() {
                // The mount point itself: a bind mount of whatever HOST names.
                let host = PathBuf::from(&volume.host);
                let kind = kind(&fs::metadata(&host)?);
                Ok((host, kind))
            } else {
                let host = Path::new(&volume.host).join(rest);
                let kind = kind(&fs::symlink_metadata(&host)?);
                Ok((host, kind))
            };
        }
        let upper = below(&self.upper, capsule);
        match fs::symlink_metadata(&upper) {
            Ok(meta) => return Ok((upper, kind(&meta))),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(e) => return Err(e),
        }
        let lower = below(&self.root, capsule);
        let meta = fs::symlink_metadata(&lower)?;
        Ok((lower, kind(&meta)))
    }
}

fn kind(meta: &fs::Metadata) -> Kind {
    let kind = meta.file_type();
    if kind.is_symlink() {
        Kind::Symlink
    } else if kind.is_dir() {
        Kind::Directory
    } else {
        Kind::Other
    }
}

/// `base` followed by the absolute capsule path `capsule` (`/` adds nothing).
fn below(base: &Path, capsule: &Path) -> PathBuf {
    match capsule.strip_prefix("/") {
        Ok(rest) if !rest.as_os_str().is_empty() => base.join(rest),
        _ => base.to_path_buf(),
    }
}

/// Pushes the steps of `path` so that its first component is popped first.
fn push_steps(pending: &mut Vec<Step>, path: &Path) {
    let steps: Vec<Step> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(Step::Name(name.to_os_string())),
            Component::ParentDir => Some(Step::Up),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(steps.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A root, an upper layer and a volume directory under one scratch directory.
    struct Layers(PathBuf);

    impl Layers {
        fn new(tag: &str) -> Layers {
            let dir = std::env::temp_dir()
                .join(format!("capsule-view-test-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            for sub in ["root/bin", "root/usr/bin", "root/etc", "upper", "vol"] {
                fs::create_dir_all(dir.join(sub)).unwrap();
            }
            Layers(fs::canonicalize(&dir).unwrap())
        }

        fn file(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            path
        }

        fn view(&self, volumes: &[&str]) -> View {
            View::new(
                self.0.join("root"),
                self.0.join("upper"),
                volumes.iter().map(|v| Volume::parse(v).unwrap()).collect(),
            )
        }
    }

    impl Drop for Layers {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn errno(result: io::Result<Resolved>) -> Option<i32> {
        result.unwrap_err().raw_os_error()
    }

    #[test]
    fn upper_shadows_root() {
        let l = Layers::new("shadow");
        let lower = l.file("root/bin/tool", "lower");
        let view = l.view(&[]);
        let found = view.resolve(Path::new("/bin/tool")).unwrap();
        assert_eq!(found.host, lower);
        assert_eq!(found.capsule, Path::new("/bin/tool"));
        assert!(!found.is_dir);
        let upper = l.file("upper/bin/tool", "upper");
        assert_eq!(view.resolve(Path::new("/bin/tool")).unwrap().host, upper);
        // A file only in the upper layer, in a directory only in the root.
        let only = l.file("upper/usr/bin/new", "");
        assert_eq!(view.resolve(Path::new("/usr/bin/new")).unwrap().host, only);
        let root = view.resolve(Path::new("/")).unwrap();
        assert_eq!((root.host, root.is_dir), (l.0.join("root"), true));
        assert_eq!(
            view.resolve(Path::new("/bin/nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_capsule() {
        let l = Layers::new("links");
        let sh = l.file("root/usr/bin/sh", "");
        // Absolute targets start again from the capsule's /, never the host's.
        symlink("/usr/bin/sh", l.0.join("root/bin/sh")).unwrap();
        symlink("../usr/bin", l.0.join("root/ubin")).unwrap();
        symlink("/../../../../usr", l.0.join("root/up")).unwrap();
        let view = l.view(&[]);
        let found = view.resolve(Path::new("/bin/sh")).unwrap();
        assert_eq!(
            (found.capsule.as_path(), found.host.as_path()),
            (Path::new("/usr/bin/sh"), sh.as_path())
        );
        assert_eq!(view.resolve(Path::new("/ubin/sh")).unwrap().host, sh);
        assert_eq!(view.resolve(Path::new("/up/bin/sh")).unwrap().host, sh);
        assert_eq!(
            view.resolve(Path::new("/../../usr/./bin//sh"))
                .unwrap()
                .host,
            sh
        );
        // `..` after a symbolic link climbs from where the link points.
        assert_eq!(
            view.resolve(Path::new("/ubin/../bin/sh")).unwrap().capsule,
            Path::new("/usr/bin/sh")
        );
        // The host's own /etc/passwd is not reachable through the root.
        symlink("/etc/passwd", l.0.join("root/etc/users")).unwrap();
        assert_eq!(
            view.resolve(Path::new("/etc/users")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        symlink("loop2", l.0.join("root/loop1")).unwrap();
        symlink("loop1", l.0.join("root/loop2")).unwrap();
        assert_eq!(errno(view.resolve(Path::new("/loop1"))), Some(libc::ELOOP));
        assert_eq!(
            errno(view.resolve(Path::new("/usr/bin/sh/x"))),
            Some(libc::ENOTDIR)
        );
        assert_eq!(
            errno(view.resolve(Path::new("/usr/bin/sh/"))),
            Some(libc::ENOTDIR)
        );
        assert!(view.resolve(Path::new("/usr/bin/")).unwrap().is_dir);
    }

    #[test]
    fn volumes_win_over_the_layers() {
        let l = Layers::new("volumes");
        l.file("root/data/tool", "root");
        let tool = l.file("vol/tool", "volume");
        let inner = l.file("vol2/tool", "inner");
        let vol = l.0.join("vol").display().to_string();
        let vol2 = l.0.join("vol2").display().to_string();
        let view = l.view(&[&format!("{vol}:/data"), &format!("{vol2}:/data/sub:ro")]);
        assert_eq!(view.resolve(Path::new("/data/tool")).unwrap().host, tool);
        assert_eq!(
            view.resolve(Path::new("/data/sub/tool")).unwrap().host,
            inner
        );
        let mount = view.resolve(Path::new("/data")).unwrap();
        assert_eq!((mount.host, mount.is_dir), (l.0.join("vol"), true));
        // A file bound at a capsule path.
        let view = l.view(&[&format!("{}:/opt/run", tool.display())]);
        l.file("root/opt/.keep", "");
        assert_eq!(view.resolve(Path::new("/opt/run")).unwrap().host, tool);
    }

    #[test]
    fn user_db_reads_the_capsules_files() {
        let l = Layers::new("users");
        l.file("root/etc/passwd", "app:x:4242:4243::/home/app:/bin/sh\n");
        l.file("root/etc/group", "app:x:4243:\n");
        let db = l.view(&[]).user_db();
        let id = db.resolve("app").unwrap();
        assert_eq!((id.uid, id.gid), ([4242; 3], [4243; 3]));
        l.file("upper/etc/passwd", "app:x:7:7::/:/bin/sh\n");
        assert_eq!(l.view(&[]).user_db().resolve("app").unwrap().uid, [7; 3]);
    }

    #[test]
    fn root_must_be_an_existing_directory() {
        let l = Layers::new("root");
        l.file("root/file", "");
        assert_eq!(
            check_root(Path::new("root"), Some(&l.0)).unwrap(),
            l.0.join("root")
        );
        assert_eq!(
            check_root(Path::new("./root/../root/"), Some(&l.0)).unwrap(),
            l.0.join("root")
        );
        let missing = l.0.join("nope");
        assert_eq!(
            check_root(&missing, None).unwrap_err().to_string(),
            format!("{}: no such directory", missing.display())
        );
        let file = l.0.join("root/file");
        assert_eq!(
            check_root(&file, None).unwrap_err().to_string(),
            format!("{}: not a directory", file.display())
        );
    }

    #[test]
    fn volume_specs_are_checked() {
        let l = Layers::new("specs");
        let vol = l.0.join("vol").display().to_string();
        let given = |specs: &[String]| -> Vec<Given<Volume>> {
            specs.iter().map(|s| Given::from(s.as_str())).collect()
        };
        let ok = check_volumes(&given(&[
            format!("{vol}/:/data:ro"),
            format!("{vol}/../vol:/other"),
        ]))
        .unwrap();
        assert_eq!(
            ok[0],
            Volume {
                host: vol.clone(),
                path: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(ok[1].host, vol);
        for (spec, message) in [
            ("/a".to_string(), "/a: expected HOST:PATH[:ro]".to_string()),
            (
                format!("{vol}:data"),
                format!("{vol}:data: 'data' is not an absolute path"),
            ),
            (
                format!("{vol}:/d:rx"),
                format!("{vol}:/d:rx: unknown volume mode 'rx' (ro or rw)"),
            ),
            (
                format!("{vol}:/"),
                format!("{vol}:/: a volume cannot be bound at the capsule's / (use --root)"),
            ),
            (
                "/no/such:/d".to_string(),
                "/no/such:/d: /no/such: no such file or directory".to_string(),
            ),
        ] {
            let err = check_volumes(&given(&[spec])).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        let err =
            check_volumes(&given(&[format!("{vol}:/d"), "/tmp:/d/".to_string()])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("/tmp:/d/: /d is already bound by {vol}:/d")
        );
    }
}
