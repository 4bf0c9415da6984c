//! The layer of a COPY, ADD or WORKDIR step, made in a staging directory as the
//! image would show it: the destination found through the image's own symbolic links
//! (`/bin` → `usr/bin` lands in `usr/bin`), directories that already exist in the
//! image kept with their owner, mode and times, new ones `0755 root:root`, copied
//! files with their source's mode and times (or `--chmod`) and root or `--chown` as
//! owner (or their own, from another stage or an archive).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::image::owners::{self, Owners};
use crate::image::unpack;

/// Who owns what a step copies.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    To(u32, u32),
    /// As in the source (another stage's root, an archive's entries).
    Keep,
}

/// A layer being made: `tree` (an existing empty directory) over the image's merged
/// root `lower`.
pub struct Layer<'a> {
    pub lower: &'a Path,
    pub tree: &'a Path,
    pub owners: Owners,
    /// Directories made here and their times, set last (deepest first), since
    /// filling a directory changes its times.
    dir_times: Vec<(PathBuf, i64, i64)>,
}

fn context(path: &Path) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{}: {}", path.display(), crate::describe_io(&e))
}

/// `path` (absolute, in the image) as a path relative to the root, with the image's
/// symbolic links followed inside it (the last one only if `follow_last`).
pub fn resolve(lower: &Path, path: &Path, follow_last: bool) -> Result<PathBuf, String> {
    let mut todo: Vec<OsString> = components(path);
    todo.reverse();
    let mut out = PathBuf::new();
    let mut hops = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            out.pop();
            continue;
        }
        let candidate = out.join(&name);
        let last = todo.is_empty();
        match fs::symlink_metadata(lower.join(&candidate)) {
            Ok(meta) if meta.file_type().is_symlink() && (!last || follow_last) => {
                hops += 1;
                if hops > 40 {
                    return Err(format!(
                        "{}: too many levels of symbolic links",
                        path.display()
                    ));
                }
                let target = fs::read_link(lower.join(&candidate)).map_err(context(path))?;
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            }
            _ => out = candidate,
        }
    }
    Ok(out)
}

fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

impl<'a> Layer<'a> {
    pub fn new(lower: &'a Path, tree: &'a Path, owners: Owners) -> Layer<'a> {
        Layer {
            lower,
            tree,
            owners,
            dir_times: Vec::new(),
        }
    }

    /// Whether `rel` (resolved) is a directory in the image or already in this layer.
    pub fn is_dir(&self, rel: &Path) -> bool {
        self.tree.join(rel).is_dir() || self.lower.join(rel).is_dir()
    }

    /// Makes directory `rel` (relative, resolved) and its parents in the layer, each as
    /// the image has it, or new (`mode`, `owner`, times now).
    pub fn ensure_dir(&mut self, rel: &Path, mode: u32, owner: (u32, u32)) -> Result<(), String> {
        let mut at = PathBuf::new();
        for part in rel.components() {
            at.push(part);
            let path = self.tree.join(&at);
            if path.is_dir() {
                continue;
            }
            fs::create_dir(&path).map_err(context(&path))?;
            let meta = fs::symlink_metadata(&path).map_err(context(&path))?;
            let existing = self.lower.join(&at);
            let (mode, (uid, gid), times) = match fs::symlink_metadata(&existing) {
                Ok(m) if m.is_dir() => (
                    m.mode() & 0o7777,
                    self.owners.get(&existing, &m),
                    Some((m.mtime(), m.mtime_nsec())),
                ),
                _ => (mode, owner, None),
            };
            self.owners
                .set(&path, uid, gid, &meta)
                .map_err(context(&path))?;
            owners::set_mode(&path, mode).map_err(context(&path))?;
            let (s, ns) = times.unwrap_or_else(now);
            self.dir_times.push((at.clone(), s, ns));
        }
        Ok(())
    }

    /// Copies `from` (a file, directory or symbolic link, as `lstat` sees it) to
    /// `dest` (an absolute path in the image): a directory's contents go into
    /// `dest` (made if missing); `entries` lists what is under it, relative to `from`,
    /// parents first (the context's ignore rules already applied).
    pub fn copy(
        &mut self,
        from: &Path,
        entries: &[PathBuf],
        dest: &Path,
        owner: Owner,
        chmod: Option<u32>,
    ) -> Result<(), String> {
        for sub in entries {
            // `join("")` would add a `/`, which a file does not take.
            let (source, target) = if sub.as_os_str().is_empty() {
                (from.to_path_buf(), dest.to_path_buf())
            } else {
                (from.join(sub), dest.join(sub))
            };
            self.copy_one(&source, &target, owner, chmod)?;
        }
        Ok(())
    }

    fn copy_one(
        &mut self,
        source: &Path,
        target: &Path,
        owner: Owner,
        chmod: Option<u32>,
    ) -> Result<(), String> {
        let meta = fs::symlink_metadata(source).map_err(context(source))?;
        let (uid, gid) = match owner {
            Owner::To(u, g) => (u, g),
            Owner::Keep => self.owners.get(source, &meta),
        };
        let parent = target.parent().unwrap_or(Path::new("/"));
        let parent = resolve(self.lower, parent, true)?;
        self.ensure_dir(&parent, 0o755, (0, 0))?;
        let Some(name) = target.file_name() else {
            // The destination is the root itself: only its contents are copied.
            return Ok(());
        };
        let rel = parent.join(name);
        let path = self.tree.join(&rel);
        let kind = meta.file_type();
        if kind.is_dir() {
            // A directory that the image has through a symbolic link is filled there.
            let rel = resolve(self.lower, &Path::new("/").join(&rel), true)?;
            let path = self.tree.join(&rel);
            let mode = chmod.unwrap_or(meta.mode() & 0o7777);
            if !path.is_dir() {
                self.ensure_dir(&rel, mode, (uid, gid))?;
            }
            let made = self.dir_times.iter_mut().find(|(p, _, _)| *p == rel);
            if let Some(entry) = made {
                if !self.lower.join(&rel).is_dir() {
                    (entry.1, entry.2) = (meta.mtime(), meta.mtime_nsec());
                }
            }
            return Ok(());
        }
        if let Ok(old) = fs::symlink_metadata(&path) {
            if old.is_dir() {
                return Err(format!(
                    "{}: cannot copy a file over a directory",
                    Path::new("/").join(&rel).display()
                ));
            }
            fs::remove_file(&path).map_err(context(&path))?;
        }
        if kind.is_symlink() {
            let link = fs::read_link(source).map_err(context(source))?;
            std::os::unix::fs::symlink(&link, &path).map_err(context(&path))?;
            let made = fs::symlink_metadata(&path).map_err(context(&path))?;
            self.owners
                .set(&path, uid, gid, &made)
                .map_err(context(&path))?;
            return Ok(());
        }
        if !kind.is_file() {
            return Err(format!(
                "{}: not a regular file, directory or symbolic link",
                source.display()
            ));
        }
        fs::copy(source, &path).map_err(context(source))?;
        let made = fs::symlink_metadata(&path).map_err(context(&path))?;
        self.owners
            .set(&path, uid, gid, &made)
            .map_err(context(&path))?;
        owners::set_mode(&path, chmod.unwrap_or(meta.mode() & 0o7777)).map_err(context(&path))?;
        owners::set_times(&path, meta.mtime(), meta.mtime_nsec()).map_err(context(&path))?;
        Ok(())
    }

    /// Sets the directories' times, deepest first.
    pub fn finish(mut self) -> Result<(), String> {
        self.dir_times
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (rel, s, ns) in &self.dir_times {
            let path = self.tree.join(rel);
            owners::set_times(&path, *s, *ns).map_err(context(&path))?;
        }
        Ok(())
    }
}

fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

/// What ADD unpacks: a local tar archive, plain, gzip or zstd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    Tar,
    Gzip,
    Zstd,
}

/// Whether the file at `path` is an archive ADD unpacks (bzip2 and xz are refused).
pub fn archive_kind(path: &Path) -> Result<Option<Archive>, String> {
    let mut head = [0u8; 512];
    let mut file = File::open(path).map_err(context(path))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).map_err(context(path))? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Some(Archive::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Archive::Zstd)
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(format!(
            "{}: bzip2 and xz archives are not supported by ADD here (use tar, gzip or zstd)",
            path.display()
        ));
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Archive::Tar)
    } else {
        None
    })
}

/// Unpacks the archive at `path` into the empty directory `into` (entries checked as
/// a layer's are, owners kept as the archive gives them).
pub fn unpack_archive(
    path: &Path,
    kind: Archive,
    into: &Path,
    owners: Owners,
) -> Result<(), String> {
    let file = BufReader::new(File::open(path).map_err(context(path))?);
    let reader: Box<dyn Read> = match kind {
        Archive::Tar => Box::new(file),
        Archive::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Archive::Zstd => Box::new(zstd::stream::read::Decoder::new(file).map_err(context(path))?),
    };
    unpack::unpack(reader, into, owners)
        .map(drop)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Every entry under `dir` relative to it (itself first, as ""), parents first.
pub fn entries_of(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = vec![PathBuf::new()];
    let mut at = 0;
    while at < out.len() {
        let path = dir.join(&out[at]);
        if fs::symlink_metadata(&path)
            .map_err(context(&path))?
            .is_dir()
        {
            let mut names: Vec<_> = fs::read_dir(&path)
                .map_err(context(&path))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            names.sort();
            let base = out[at].clone();
            out.splice(at + 1..at + 1, names.into_iter().map(|n| base.join(n)));
        }
        at += 1;
    }
    Ok(out)
}

/// The numeric owner `--chown=SPEC` names, looked up in the image's `/etc/passwd` and
/// `/etc/group`; a user alone gives the same number as the group, as Docker does.
pub fn chown_owner(lower: &Path, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = lookup(lower, "etc/passwd", user)?;
    let gid = match group {
        Some(g) => lookup(lower, "etc/group", g)?,
        None => uid,
    };
    Ok((uid, gid))
}

fn lookup(lower: &Path, file: &str, name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let text = fs::read(lower.join(file)).unwrap_or_default();
    for line in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if fields.len() >= 3 && fields[0] == name.as_bytes() {
            if let Some(n) = std::str::from_utf8(fields[2])
                .ok()
                .and_then(|s| s.parse().ok())
            {
                return Ok(n);
            }
        }
    }
    Err(format!("--chown: {name}: not in the image's /{file}"))
}

/// Whether a path's text ends with `/` (COPY's "the destination is a directory").
pub fn ends_with_slash(path: &str) -> bool {
    path.as_bytes().last() == Some(&b'/') || path.ends_with("/.")
}

/// `mode` bits a COPY gives a file: `--chmod`, else the source's.
pub fn source_mode(meta: &fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

/// Bytes of a path, for messages that must stay one line.
pub fn shown(path: &Path) -> String {
    String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("capsule-copy-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_images_links_are_followed_inside_it() {
        let lower = temp("resolve");
        fs::create_dir_all(lower.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", lower.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr", lower.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", lower.join("usr/bin/up")).unwrap();
        assert_eq!(
            resolve(&lower, Path::new("/bin/x"), true).unwrap(),
            Path::new("usr/bin/x")
        );
        assert_eq!(
            resolve(&lower, Path::new("/abs/bin"), true).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            resolve(&lower, Path::new("/bin"), false).unwrap(),
            Path::new("bin")
        );
        // A link cannot lead out of the root.
        assert_eq!(
            resolve(&lower, Path::new("/bin/up/etc"), true).unwrap(),
            Path::new("etc")
        );
        fs::remove_dir_all(&lower).unwrap();
    }

    #[test]
    fn copies_land_where_the_image_shows_them() {
        let base = temp("layer");
        let (lower, tree, src) = (base.join("lower"), base.join("tree"), base.join("src"));
        fs::create_dir_all(lower.join("usr/bin")).unwrap();
        fs::set_permissions(lower.join("usr"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("usr/bin", lower.join("bin")).unwrap();
        fs::create_dir_all(src.join("d/e")).unwrap();
        fs::create_dir(&tree).unwrap();
        fs::write(src.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("tool"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(src.join("d/e/f"), "f").unwrap();
        let owners = Owners::current();
        let mut layer = Layer::new(&lower, &tree, owners);
        layer
            .copy(
                &src.join("tool"),
                &[PathBuf::new()],
                Path::new("/bin/tool"),
                Owner::To(0, 0),
                None,
            )
            .unwrap();
        let entries = entries_of(&src.join("d")).unwrap();
        layer
            .copy(
                &src.join("d"),
                &entries,
                Path::new("/opt/app"),
                Owner::To(0, 0),
                Some(0o700),
            )
            .unwrap();
        layer.finish().unwrap();
        let tool = fs::metadata(tree.join("usr/bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o750);
        assert!(!tree.join("bin").exists(), "the image's /bin link is kept");
        assert_eq!(
            fs::metadata(tree.join("usr")).unwrap().mode() & 0o7777,
            0o751
        );
        assert_eq!(
            fs::metadata(tree.join("opt")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(fs::read(tree.join("opt/app/e/f")).unwrap(), b"f");
        assert_eq!(
            fs::metadata(tree.join("opt/app/e/f")).unwrap().mode() & 0o7777,
            0o700
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn chown_names_come_from_the_image() {
        let lower = temp("chown");
        fs::create_dir(lower.join("etc")).unwrap();
        fs::write(
            lower.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/:/bin/sh\n",
        )
        .unwrap();
        fs::write(lower.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(chown_owner(&lower, "app:staff").unwrap(), (1001, 50));
        assert_eq!(chown_owner(&lower, "app").unwrap(), (1001, 1001));
        assert_eq!(chown_owner(&lower, "7:8").unwrap(), (7, 8));
        assert!(chown_owner(&lower, "nobody")
            .unwrap_err()
            .contains("/etc/passwd"));
        fs::remove_dir_all(&lower).unwrap();
    }
}
