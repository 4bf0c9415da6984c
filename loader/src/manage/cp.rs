//! `capsule cp`: files between the host and a capsule, through the capsule's view, as
//! `docker cp` copies them.
//!
//! Reading (`NAME:PATH` → host) sees what the capsule's programs see: a volume's file,
//! else the upper layer's, else the lower layer's unless a whiteout (`.wh.NAME`) or an
//! opaque directory above it hides it; a directory lists both layers merged, without
//! the markers. Writing (host → `NAME:PATH`) goes where a program's write would: into
//! a writable volume, else into the private upper layer, its directories made there
//! first with the lower layer's modes (a copy-up) and a whiteout of the name removed;
//! the lower layer is never written. Each file is written under a copy-up temporary
//! name and renamed into place, so a capsule never sees half of it.
//!
//! Paths follow `docker cp`: a destination that is a directory receives the source by
//! its name (`SRC/.` copies a directory's contents); otherwise the destination names
//! the copy, and its parent must exist. Symbolic links are copied as links.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use capsule_config::Volume;

use crate::inspect::{existing_dir, read_config, InspectError};
use crate::state::{Home, COPY_UP_PREFIX};
use crate::view::View;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("{name}:{}: {}", .path.display(), crate::describe_io(.error))]
    Capsule {
        name: String,
        path: PathBuf,
        error: io::Error,
    },
    #[error("{}: {}", .path.display(), crate::describe_io(.error))]
    Host { path: PathBuf, error: io::Error },
    #[error("{name}:{}: {reason}", .path.display())]
    Refused {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{}: {reason}", .path.display())]
    HostRefused { path: PathBuf, reason: String },
}

/// A capsule's file system as `cp` needs it.
struct Capsule {
    name: String,
    root: PathBuf,
    upper: PathBuf,
    volumes: Vec<Volume>,
    read_only: bool,
    view: View,
}

impl Capsule {
    fn open(home: &Home, name: &str) -> Result<Capsule, CopyError> {
        let dir = existing_dir(home, name)?;
        let config = read_config(&dir)?;
        let root = PathBuf::from(config.fs.root.as_deref().unwrap_or("/"));
        let upper = config
            .fs
            .upper
            .map_or_else(|| home.upper_dir(name), PathBuf::from);
        let volumes = config.fs.volumes;
        Ok(Capsule {
            name: name.to_string(),
            view: View::new(root.clone(), upper.clone(), volumes.clone()),
            root,
            upper,
            volumes,
            read_only: config.fs.read_only,
        })
    }

    fn error(&self, path: &Path, error: io::Error) -> CopyError {
        CopyError::Capsule {
            name: self.name.clone(),
            path: path.to_path_buf(),
            error,
        }
    }

    fn refuse(&self, path: &Path, reason: impl Into<String>) -> CopyError {
        CopyError::Refused {
            name: self.name.clone(),
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The volume `capsule` (absolute, canonical) is in, by the longest mount path.
    fn volume_of(&self, capsule: &Path) -> Option<&Volume> {
        self.volumes
            .iter()
            .filter(|v| capsule.starts_with(&v.path))
            .max_by_key(|v| v.path.len())
    }

    /// The host file backing the canonical capsule path `capsule`, not following a
    /// last symbolic link; `ENOENT` when a whiteout or an opaque directory hides it.
    fn lookup(&self, capsule: &Path) -> io::Result<PathBuf> {
        if let Some(volume) = self.volume_of(capsule) {
            let rest = capsule.strip_prefix(&volume.path).unwrap_or(Path::new(""));
            let host = Path::new(&volume.host).join(rest);
            fs::symlink_metadata(&host)?;
            return Ok(host);
        }
        let rel = relative(capsule);
        let hidden = self.lower_hidden(rel, false)?;
        let upper = self.upper.join(rel);
        if fs::symlink_metadata(&upper).is_ok() {
            return Ok(upper);
        }
        if hidden {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let lower = self.root.join(rel);
        fs::symlink_metadata(&lower)?;
        Ok(lower)
    }

    /// Whether the upper layer hides the lower layer's `rel` (its directories above it,
    /// and with `itself` the directory `rel` too, being opaque or files); `ENOENT`
    /// when a whiteout deletes `rel` or a directory above it.
    fn lower_hidden(&self, rel: &Path, itself: bool) -> io::Result<bool> {
        let mut hidden = false;
        let mut prefix = PathBuf::new();
        for part in rel.components() {
            let Component::Normal(part) = part else {
                continue;
            };
            let mut marker = OsString::from(WHITEOUT);
            marker.push(part);
            if self.upper.join(&prefix).join(&marker).exists() {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            prefix.push(part);
            let last = prefix.as_path() == rel;
            match fs::symlink_metadata(self.upper.join(&prefix)) {
                Ok(meta) if meta.is_dir() => {
                    if !last || itself {
                        hidden |= self.upper.join(&prefix).join(OPAQUE).exists();
                    }
                }
                // A file of the upper layer hides what the lower has below its name.
                Ok(_) => hidden |= !last || itself,
                Err(_) => {}
            }
        }
        Ok(hidden)
    }

    /// The names in the capsule directory `capsule`, both layers merged.
    fn list(&self, capsule: &Path) -> io::Result<BTreeSet<OsString>> {
        let mut names = BTreeSet::new();
        let mount_names = |names: &mut BTreeSet<OsString>| {
            for volume in &self.volumes {
                let path = Path::new(&volume.path);
                if path.parent() == Some(capsule) {
                    if let Some(name) = path.file_name() {
                        names.insert(name.to_os_string());
                    }
                }
            }
        };
        if let Some(volume) = self.volume_of(capsule) {
            let rest = capsule.strip_prefix(&volume.path).unwrap_or(Path::new(""));
            for entry in fs::read_dir(Path::new(&volume.host).join(rest))? {
                names.insert(entry?.file_name());
            }
            mount_names(&mut names);
            return Ok(names);
        }
        let rel = relative(capsule);
        let mut deleted = BTreeSet::new();
        let mut opaque = false;
        let upper = self.upper.join(rel);
        if upper.is_dir() {
            for entry in fs::read_dir(&upper)? {
                let name = entry?.file_name();
                let bytes = name.as_bytes();
                if bytes == OPAQUE.as_bytes() {
                    opaque = true;
                } else if let Some(hidden) = bytes.strip_prefix(WHITEOUT.as_bytes()) {
                    deleted.insert(OsString::from(std::ffi::OsStr::from_bytes(hidden)));
                } else if !bytes.starts_with(COPY_UP_PREFIX.as_bytes()) {
                    names.insert(name);
                }
            }
        }
        // The lower directory shows through unless the upper layer hides it.
        let lower_visible = !opaque && !self.lower_hidden(rel, true)?;
        let lower = self.root.join(rel);
        if lower_visible && lower.is_dir() {
            for entry in fs::read_dir(&lower)? {
                let name = entry?.file_name();
                let bytes = name.as_bytes();
                if !deleted.contains(&name)
                    && !bytes.starts_with(WHITEOUT.as_bytes())
                    && !bytes.starts_with(COPY_UP_PREFIX.as_bytes())
                {
                    names.insert(name);
                }
            }
        }
        mount_names(&mut names);
        Ok(names)
    }

    /// `path` made absolute and canonical inside the capsule: its parent resolved
    /// (symbolic links followed inside the capsule), its last name kept.
    fn place(&self, path: &Path) -> Result<PathBuf, CopyError> {
        let absolute = Path::new("/").join(path);
        let name = match absolute.file_name() {
            Some(name)
                if !matches!(
                    absolute.components().next_back(),
                    Some(Component::ParentDir)
                ) =>
            {
                name.to_os_string()
            }
            // `/`, or ending in `..`: the directory itself.
            _ => {
                let found = self
                    .view
                    .resolve(&absolute)
                    .map_err(|e| self.error(path, e))?;
                return Ok(found.capsule);
            }
        };
        let parent = absolute.parent().unwrap_or(Path::new("/"));
        // Errors name the path as given: its parent is part of it.
        let found = self.view.resolve(parent).map_err(|e| self.error(path, e))?;
        if !found.is_dir {
            return Err(self.error(path, io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        // The view follows links without whiteouts: a deleted directory is gone.
        self.lookup(&found.capsule)
            .map_err(|e| self.error(path, e))?;
        Ok(found.capsule.join(name))
    }
}

/// `capsule` (absolute) relative to the capsule's `/`.
fn relative(capsule: &Path) -> &Path {
    capsule.strip_prefix("/").unwrap_or(capsule)
}

/// Whether `path` was written with a trailing `/.` (copy the directory's contents).
fn contents_only(path: &Path) -> bool {
    path.as_os_str().as_bytes().ends_with(b"/.")
}

/// `capsule cp NAME:SRC DEST`: copies out of the capsule.
pub fn copy_out(home: &Home, name: &str, src: &Path, dest: &Path) -> Result<(), CopyError> {
    let capsule = Capsule::open(home, name)?;
    let from = capsule.place(src)?;
    let host = capsule.lookup(&from).map_err(|e| capsule.error(src, e))?;
    let meta = fs::symlink_metadata(&host).map_err(|e| capsule.error(src, e))?;
    let target = host_target(dest, &from, meta.is_dir(), contents_only(src))?;
    copy_from_capsule(&capsule, &from, &target)
}

/// Where a copy to the host path `dest` goes, as `docker cp` decides it.
fn host_target(
    dest: &Path,
    from: &Path,
    is_dir: bool,
    contents: bool,
) -> Result<PathBuf, CopyError> {
    let trailing_slash = dest.as_os_str().as_bytes().ends_with(b"/");
    match fs::metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            if is_dir && contents {
                Ok(dest.to_path_buf())
            } else {
                Ok(dest.join(from.file_name().unwrap_or(from.as_os_str())))
            }
        }
        Ok(_) if is_dir => Err(CopyError::HostRefused {
            path: dest.to_path_buf(),
            reason: "cannot copy a directory over a file".into(),
        }),
        Ok(_) => Ok(dest.to_path_buf()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if trailing_slash && !is_dir {
                return Err(CopyError::HostRefused {
                    path: dest.to_path_buf(),
                    reason: "no such directory".into(),
                });
            }
            let parent = dest.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(parent) = parent {
                if !parent.is_dir() {
                    return Err(CopyError::HostRefused {
                        path: parent.to_path_buf(),
                        reason: "no such directory".into(),
                    });
                }
            }
            Ok(dest.to_path_buf())
        }
        Err(error) => Err(CopyError::Host {
            path: dest.to_path_buf(),
            error,
        }),
    }
}

fn copy_from_capsule(capsule: &Capsule, from: &Path, to: &Path) -> Result<(), CopyError> {
    let host = capsule.lookup(from).map_err(|e| capsule.error(from, e))?;
    let meta = fs::symlink_metadata(&host).map_err(|e| capsule.error(from, e))?;
    let host_err = |error: io::Error| CopyError::Host {
        path: to.to_path_buf(),
        error,
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        match fs::symlink_metadata(to) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(CopyError::HostRefused {
                    path: to.to_path_buf(),
                    reason: "cannot copy a directory over a file".into(),
                })
            }
            Err(_) => fs::DirBuilder::new()
                .mode(meta.mode() & 0o7777 | 0o700)
                .create(to)
                .map_err(host_err)?,
        }
        for name in capsule.list(from).map_err(|e| capsule.error(from, e))? {
            copy_from_capsule(capsule, &from.join(&name), &to.join(&name))?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(host_err)?;
        Ok(())
    } else if kind.is_symlink() {
        let target = fs::read_link(&host).map_err(|e| capsule.error(from, e))?;
        replace_with(to, |temp| std::os::unix::fs::symlink(&target, temp)).map_err(host_err)
    } else if kind.is_file() {
        replace_with(to, |temp| copy_file(&host, temp, &meta)).map_err(host_err)
    } else {
        Err(capsule.refuse(from, "not a regular file, directory or symbolic link"))
    }
}

/// Makes `to` with `make` under a copy-up temporary name beside it, then renames it
/// into place: nobody sees a partial file. A directory in the way is refused.
fn replace_with(to: &Path, make: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    if fs::symlink_metadata(to).is_ok_and(|m| m.is_dir()) {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    let parent = to.parent().unwrap_or(Path::new("."));
    let temp = parent.join(format!(
        "{COPY_UP_PREFIX}cp.{}.{}",
        std::process::id(),
        crate::run::now_ns()
    ));
    match make(&temp).and_then(|()| fs::rename(&temp, to)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Copies a regular file's content, mode and modification time.
fn copy_file(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<()> {
    fs::copy(from, to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    let times = fs::FileTimes::new().set_modified(meta.modified()?);
    fs::OpenOptions::new()
        .write(true)
        .open(to)?
        .set_times(times)
}

/// Tells the capsule's running processes that the upper layer's directories changed
/// (they cache what they learnt of them per generation of the shared state file),
/// as a process of the capsule does after a change. Nothing to do when no process
/// ever mapped the file.
fn bump_generation(state_dir: &Path) {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicU64, Ordering};
    let path = state_dir.join(capsule_config::layout::SHARED_FILE);
    let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(&path) else {
        return;
    };
    let offset = capsule_config::SHARED_FS_GENERATION_OFFSET;
    let size = offset + 8;
    if file.metadata().map_or(true, |m| (m.len() as usize) < size) {
        return;
    }
    // SAFETY: a shared mapping of `size` bytes of a file at least that long, unmapped
    // below; the counter is 8-aligned in a page-aligned mapping and is only ever
    // accessed atomically, by the shim as by this function.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if map == libc::MAP_FAILED {
            return;
        }
        let magic = &*map.cast::<AtomicU64>();
        if magic.load(Ordering::Acquire) == capsule_config::SHARED_MAGIC {
            let generation = &*map.cast::<u8>().add(offset).cast::<AtomicU64>();
            generation.fetch_add(1, Ordering::AcqRel);
        }
        libc::munmap(map, size);
    }
}

/// `capsule cp SRC NAME:DEST`: copies into the capsule.
pub fn copy_in(home: &Home, src: &Path, name: &str, dest: &Path) -> Result<(), CopyError> {
    let capsule = Capsule::open(home, name)?;
    copy_in_to(&capsule, src, dest, &home.capsule_dir(name))
}

fn copy_in_to(
    capsule: &Capsule,
    src: &Path,
    dest: &Path,
    state_dir: &Path,
) -> Result<(), CopyError> {
    let meta = fs::symlink_metadata(src).map_err(|error| CopyError::Host {
        path: src.to_path_buf(),
        error,
    })?;
    let is_dir = meta.is_dir();
    let placed = capsule.place(dest)?;
    let trailing_slash = dest.as_os_str().as_bytes().ends_with(b"/");
    let existing = capsule
        .view
        .resolve(&placed)
        .ok()
        .filter(|_| capsule.lookup(&placed).is_ok());
    let target = match existing {
        Some(found) if found.is_dir => {
            if is_dir && contents_only(src) {
                found.capsule
            } else {
                let base = fs::canonicalize(src)
                    .ok()
                    .and_then(|p| p.file_name().map(OsString::from))
                    .or_else(|| src.file_name().map(OsString::from))
                    .unwrap_or_default();
                found.capsule.join(base)
            }
        }
        Some(_) if is_dir => {
            return Err(capsule.refuse(dest, "cannot copy a directory over a file"));
        }
        Some(found) => found.capsule,
        None if trailing_slash && !is_dir => {
            return Err(capsule.error(dest, io::Error::from_raw_os_error(libc::ENOENT)));
        }
        None => placed,
    };
    let result = copy_into_capsule(capsule, src, &target);
    // Also after a failure part way: some directories may have been made.
    bump_generation(state_dir);
    result
}

impl Capsule {
    /// The host path a write of the capsule path `capsule` goes to: in its volume,
    /// else in the upper layer, whose directories down to it are made (copied up from
    /// the lower layer's) and whose whiteout of the name is removed.
    fn writable(&self, capsule: &Path) -> Result<PathBuf, CopyError> {
        if let Some(volume) = self.volume_of(capsule) {
            if volume.read_only {
                return Err(self.refuse(capsule, "read-only volume"));
            }
            let rest = capsule.strip_prefix(&volume.path).unwrap_or(Path::new(""));
            return Ok(Path::new(&volume.host).join(rest));
        }
        if self.read_only {
            return Err(self.refuse(
                capsule,
                "the capsule's file system is read-only (--read-only): only its volumes are writable",
            ));
        }
        let rel = relative(capsule);
        let mut done = PathBuf::from("/");
        let parts: Vec<_> = rel.components().collect();
        for (i, part) in parts.iter().enumerate() {
            let Component::Normal(part) = part else {
                continue;
            };
            let upper_parent = self.upper.join(relative(&done));
            let mut marker = OsString::from(WHITEOUT);
            marker.push(part);
            let whiteout = upper_parent.join(&marker);
            let last = i + 1 == parts.len();
            if last {
                if whiteout.exists() {
                    fs::remove_file(&whiteout).map_err(|e| self.error(capsule, e))?;
                }
                return Ok(upper_parent.join(part));
            }
            let next = done.join(part);
            let upper = self.upper.join(relative(&next));
            if !upper.is_dir() {
                // The directory exists in the capsule's view (its parent was resolved):
                // copy it up, with the mode and times the capsule sees.
                let seen = self.lookup(&next).map_err(|e| self.error(&next, e))?;
                let meta = fs::metadata(&seen).map_err(|e| self.error(&next, e))?;
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&upper)
                    .map_err(|e| self.error(&next, e))?;
                fs::set_permissions(&upper, fs::Permissions::from_mode(meta.mode() & 0o7777))
                    .map_err(|e| self.error(&next, e))?;
                if whiteout.exists() {
                    fs::remove_file(&whiteout).map_err(|e| self.error(capsule, e))?;
                }
            }
            done = next;
        }
        Err(self.refuse(capsule, "cannot replace the capsule's /"))
    }
}

fn copy_into_capsule(capsule: &Capsule, from: &Path, to: &Path) -> Result<(), CopyError> {
    let meta = fs::symlink_metadata(from).map_err(|error| CopyError::Host {
        path: from.to_path_buf(),
        error,
    })?;
    let host_err = |error: io::Error| CopyError::Host {
        path: from.to_path_buf(),
        error,
    };
    let kind = meta.file_type();
    // Before `writable` removes a whiteout of the name.
    let seen_dir = capsule
        .lookup(to)
        .ok()
        .and_then(|h| fs::symlink_metadata(h).ok())
        .is_some_and(|m| m.is_dir());
    let dest = capsule.writable(to)?;
    if kind.is_dir() {
        let exists = fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir());
        if !exists {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&dest)
                .map_err(|e| capsule.error(to, e))?;
            if !seen_dir {
                // A new directory where the lower layer has none (or a deleted one):
                // nothing of the lower layer shows through it.
                if capsule.root.join(relative(to)).exists() {
                    fs::write(dest.join(OPAQUE), b"").map_err(|e| capsule.error(to, e))?;
                }
            }
        }
        for entry in fs::read_dir(from).map_err(host_err)? {
            let name = entry.map_err(host_err)?.file_name();
            copy_into_capsule(capsule, &from.join(&name), &to.join(&name))?;
        }
        fs::set_permissions(&dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| capsule.error(to, e))?;
        Ok(())
    } else if kind.is_symlink() {
        let target = fs::read_link(from).map_err(host_err)?;
        replace_with(&dest, |temp| std::os::unix::fs::symlink(&target, temp))
            .map_err(|e| capsule.error(to, e))
    } else if kind.is_file() {
        replace_with(&dest, |temp| copy_file(from, temp, &meta)).map_err(|e| capsule.error(to, e))
    } else {
        Err(CopyError::HostRefused {
            path: from.to_path_buf(),
            reason: "not a regular file, directory or symbolic link".into(),
        })
    }
}
