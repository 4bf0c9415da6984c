//! Unpacking one layer tar into a directory of the store, refusing what could reach
//! outside it: absolute names, `..`, hard links to names outside the layer, symbolic
//! links whose relative target climbs above the layer's root, and entries under a
//! symbolic link. Owners, modes, times, device nodes and hard links come from the tar
//! headers ([`super::owners`] says how owners are kept). Whiteout markers
//! (`.wh.NAME`, `.wh..wh..opq`) are kept as the empty files they are: merging layers
//! into an image root applies them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::owners::{self, Device, Owners};

/// A tar entry's name checked to stay inside the layer: `None` is the layer's root.
pub fn safe_relative(raw: &[u8]) -> Result<Option<PathBuf>, String> {
    let path = Path::new(OsStr::from_bytes(raw));
    let only_root = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir));
    if only_root {
        // "/" or "./": some tools name the layer's root itself so.
        return Ok(None);
    }
    if raw.starts_with(b"/") {
        return Err("absolute path".into());
    }
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err("'..' in the path".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Checks a layer entry whose name is a layer marker: `.wh..wh..opq` (the directory is
/// opaque) or `.wh.NAME` (NAME is deleted from the layers below). Each must be a
/// regular file, and `.wh.NAME` must name one entry of its directory: not `.wh.`
/// (which would delete the directory itself), `.wh..`, `.wh...` (the directory above),
/// nor another marker (`.wh..wh.*` is reserved by the OCI specification).
pub fn check_marker(name: &[u8], regular: bool) -> Result<(), String> {
    let Some(hidden) = name.strip_prefix(b".wh.") else {
        return Ok(());
    };
    if !regular {
        return Err("a whiteout must be a regular file".into());
    }
    if name == b".wh..wh..opq" {
        return Ok(());
    }
    match hidden {
        b"" => Err("malformed whiteout: names no entry (it would delete its own directory)".into()),
        b"." | b".." => Err(format!(
            "malformed whiteout: names {:?}, which is not an entry",
            String::from_utf8_lossy(hidden)
        )),
        h if h.starts_with(b".wh.") => Err(
            "malformed whiteout: .wh..wh.* names are reserved (only .wh..wh..opq is defined)"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Whether a relative symbolic link target, followed from the directory of `entry`,
/// climbs above the layer's root.
fn link_escapes(entry: &Path, target: &[u8]) -> bool {
    if target.starts_with(b"/") {
        // Absolute targets are capsule paths: the shim resolves them inside the capsule.
        return false;
    }
    let mut depth = entry.components().count() as i64 - 1;
    for component in Path::new(OsStr::from_bytes(target)).components() {
        match component {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

/// What unpacking found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unpacked {
    pub entries: u64,
}

struct Unpacker<'a> {
    dest: &'a Path,
    owners: Owners,
    /// Directories (relative) known to be real directories made by this unpacking.
    dirs: BTreeSet<PathBuf>,
    /// Directory modes and times, set at the end (deepest first) so that a read-only
    /// directory can still be filled and its time is not changed by its entries.
    deferred: BTreeMap<PathBuf, (u32, i64)>,
    /// File data passes through here: in large writes, not `io::copy`'s 8 KiB ones.
    buf: Vec<u8>,
}

/// Copies `reader` to `writer` through `buf`; the bytes copied.
fn copy_data(
    reader: &mut impl Read,
    writer: &mut impl io::Write,
    buf: &mut [u8],
) -> io::Result<u64> {
    let mut total = 0;
    loop {
        // Fill the buffer as far as the reader gives, so that each write is large.
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(total);
        }
        writer.write_all(&buf[..filled])?;
        total += filled as u64;
    }
}

/// Unpacks the tar stream `reader` into the existing empty directory `dest`.
/// Errors are one phrase naming the entry at fault.
pub fn unpack<R: Read>(reader: R, dest: &Path, owners: Owners) -> Result<Unpacked, String> {
    let mut archive = tar::Archive::new(reader);
    let mut unpacker = Unpacker {
        dest,
        owners,
        dirs: BTreeSet::new(),
        deferred: BTreeMap::new(),
        buf: vec![0; 1 << 18],
    };
    let mut stats = Unpacked::default();
    let entries = archive.entries().map_err(|e| read_error(&e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(&e))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        unpacker
            .entry(&mut entry, &raw)
            .map_err(|reason| format!("entry {name:?}: {reason}"))?;
        stats.entries += 1;
    }
    unpacker.finish().map_err(|e| crate::describe_io(&e))?;
    Ok(stats)
}

/// The extended attributes a PAX header gives the entry (`SCHILY.xattr.NAME`).
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(extensions)) = entry.pax_extensions() else {
        return Vec::new();
    };
    extensions
        .filter_map(Result::ok)
        .filter_map(|ext| {
            let name = ext.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
            Some((name, ext.value_bytes().to_vec()))
        })
        .collect()
}

fn read_error(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof || e.to_string().contains("unexpected EOF") {
        "truncated archive (unexpected end of data)".into()
    } else {
        format!("not a valid tar archive: {}", crate::describe_io(e))
    }
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>, raw: &[u8]) -> Result<(), String> {
        let header = entry.header().clone();
        let kind = header.entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let rel = safe_relative(raw)?;
        let io = |e: io::Error| crate::describe_io(&e);
        let xattrs = pax_xattrs(entry);
        let mode = header.mode().map_err(io)? & 0o7777;
        let uid = u32::try_from(header.uid().map_err(io)?).map_err(|_| "uid out of range")?;
        let gid = u32::try_from(header.gid().map_err(io)?).map_err(|_| "gid out of range")?;
        let mtime = i64::try_from(header.mtime().map_err(io)?).unwrap_or(0);

        let Some(rel) = rel else {
            // "./": the layer root's own metadata.
            if kind == EntryType::Directory {
                self.deferred.insert(PathBuf::new(), (mode, mtime));
                self.owners
                    .set(
                        self.dest,
                        uid,
                        gid,
                        &fs::symlink_metadata(self.dest).map_err(io)?,
                    )
                    .map_err(io)?;
                return Ok(());
            }
            return Err("names the layer's root but is not a directory".into());
        };
        if let Some(name) = rel.file_name() {
            let regular = matches!(kind, EntryType::Regular | EntryType::Continuous);
            check_marker(name.as_bytes(), regular)?;
        }
        self.ensure_parents(&rel)?;
        let path = self.dest.join(&rel);

        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&path).map_err(io)?;
                        fs::create_dir(&path).map_err(io)?;
                    }
                    Err(_) => fs::create_dir(&path).map_err(io)?,
                }
                self.dirs.insert(rel.clone());
                self.deferred.insert(rel, (mode, mtime));
                let meta = fs::symlink_metadata(&path).map_err(io)?;
                self.owners.set(&path, uid, gid, &meta).map_err(io)?;
                self.owners.set_xattrs(&path, &xattrs).map_err(io)?;
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous => {
                self.clear(&rel, &path)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io)?;
                let copied =
                    copy_data(entry, &mut file, &mut self.buf).map_err(|e| read_error(&e))?;
                if copied != entry.size() {
                    return Err("truncated archive (the entry's data ends early)".into());
                }
                drop(file);
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or("symbolic link without a target")?
                    .into_owned();
                if link_escapes(&rel, &target) {
                    return Err(format!(
                        "symbolic link to {:?} leads outside the layer",
                        String::from_utf8_lossy(&target)
                    ));
                }
                self.clear(&rel, &path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(io)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or("hard link without a target")?
                    .into_owned();
                let shown = String::from_utf8_lossy(&target).into_owned();
                let target = safe_relative(&target)
                    .map_err(|why| format!("hard link to {shown:?}: {why}"))?
                    .ok_or_else(|| format!("hard link to {shown:?}: the layer's root"))?;
                self.check_parents(&target)
                    .map_err(|_| format!("hard link to {shown:?} leads outside the layer"))?;
                let source = self.dest.join(&target);
                match fs::symlink_metadata(&source) {
                    Ok(m) if !m.is_dir() => {}
                    Ok(_) => return Err(format!("hard link to the directory {shown:?}")),
                    Err(_) => {
                        return Err(format!(
                            "hard link to {shown:?}, which is not earlier in the layer"
                        ))
                    }
                }
                if source != path {
                    self.clear(&rel, &path)?;
                    fs::hard_link(&source, &path).map_err(io)?;
                }
                // A hard link shares its target's inode: owner, mode and times included.
                return Ok(());
            }
            EntryType::Char | EntryType::Block => {
                let major = header.device_major().map_err(io)?.unwrap_or(0);
                let minor = header.device_minor().map_err(io)?.unwrap_or(0);
                self.clear(&rel, &path)?;
                let dev = Device {
                    block: kind == EntryType::Block,
                    major,
                    minor,
                };
                self.owners.make_device(&path, dev, mode).map_err(io)?;
            }
            EntryType::Fifo => {
                self.clear(&rel, &path)?;
                let c = std::ffi::CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| "NUL byte in the name")?;
                // SAFETY: a NUL-terminated path.
                if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                    return Err(io(io::Error::last_os_error()));
                }
            }
            other => {
                return Err(format!(
                    "unsupported entry type {:?}",
                    other.as_byte() as char
                ))
            }
        }
        let meta = fs::symlink_metadata(&path).map_err(io)?;
        self.owners.set(&path, uid, gid, &meta).map_err(io)?;
        if !meta.file_type().is_symlink() {
            // After the owner: chown clears setuid and setgid bits (and capabilities).
            owners::set_mode(&path, mode).map_err(io)?;
        }
        self.owners.set_xattrs(&path, &xattrs).map_err(io)?;
        owners::set_times(&path, mtime, 0).map_err(io)
    }

    /// Makes the entry's missing parent directories; refuses a parent that is not a
    /// real directory of this layer (a symbolic link could lead anywhere).
    fn ensure_parents(&mut self, rel: &Path) -> Result<(), String> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        if parent.as_os_str().is_empty() || self.dirs.contains(parent) {
            return Ok(());
        }
        let mut partial = PathBuf::new();
        for component in parent.components() {
            partial.push(component);
            if self.dirs.contains(&partial) {
                continue;
            }
            let path = self.dest.join(&partial);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "goes through the symbolic link {:?}",
                        partial.display().to_string()
                    ))
                }
                Ok(_) => {
                    return Err(format!(
                        "goes through {:?}, which is not a directory",
                        partial.display().to_string()
                    ))
                }
                Err(_) => {
                    fs::create_dir(&path).map_err(|e| crate::describe_io(&e))?;
                    let _ = owners::set_mode(&path, 0o755);
                }
            }
            self.dirs.insert(partial.clone());
        }
        Ok(())
    }

    /// Checks, without creating anything, that every parent of `rel` is a real
    /// directory.
    fn check_parents(&self, rel: &Path) -> Result<(), ()> {
        let mut partial = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for component in parent.components() {
                partial.push(component);
                if self.dirs.contains(&partial) {
                    continue;
                }
                match fs::symlink_metadata(self.dest.join(&partial)) {
                    Ok(m) if m.is_dir() => {}
                    _ => return Err(()),
                }
            }
        }
        Ok(())
    }

    /// A later entry of the same name replaces an earlier one.
    fn clear(&mut self, rel: &Path, path: &Path) -> Result<(), String> {
        if fs::symlink_metadata(path).is_ok() {
            owners::remove_any(path).map_err(|e| crate::describe_io(&e))?;
            let gone: Vec<PathBuf> = self
                .dirs
                .range(rel.to_path_buf()..)
                .take_while(|d| d.starts_with(rel))
                .cloned()
                .collect();
            for dir in gone {
                self.dirs.remove(&dir);
                self.deferred.remove(&dir);
            }
        }
        Ok(())
    }

    fn finish(self) -> io::Result<()> {
        for (rel, (mode, mtime)) in self.deferred.iter().rev() {
            let path = self.dest.join(rel);
            owners::set_mode(&path, *mode)?;
            owners::set_times(&path, *mtime, 0)?;
        }
        Ok(())
    }
}

/// Opens a layer's file for reading, refusing a symbolic link that leads out of
/// `within` (legacy `docker save` archives link duplicate layers to each other).
pub fn open_inside(within: &Path, rel: &str) -> Result<File, String> {
    let checked = safe_relative(rel.as_bytes())
        .map_err(|why| format!("{rel:?}: {why}"))?
        .ok_or_else(|| format!("{rel:?}: not a file"))?;
    let path = within.join(checked);
    let real =
        fs::canonicalize(&path).map_err(|e| format!("{rel:?}: {}", crate::describe_io(&e)))?;
    let base = fs::canonicalize(within)
        .map_err(|e| format!("{}: {}", within.display(), crate::describe_io(&e)))?;
    if !real.starts_with(&base) {
        return Err(format!("{rel:?} leads outside the archive"));
    }
    File::open(&real).map_err(|e| format!("{rel:?}: {}", crate::describe_io(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside() {
        assert_eq!(safe_relative(b"./a/b").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative(b"./").unwrap(), None);
        assert!(safe_relative(b"/etc/passwd").is_err());
        assert_eq!(safe_relative(b"/").unwrap(), None);
        assert!(safe_relative(b"a/../../b").is_err());
        assert!(!link_escapes(Path::new("usr/lib/x"), b"../../bin/sh"));
        assert!(link_escapes(Path::new("usr/lib/x"), b"../../../etc/shadow"));
        assert!(!link_escapes(Path::new("bin"), b"/usr/bin"));
    }

    #[test]
    fn only_well_formed_markers() {
        assert!(check_marker(b"passwd", false).is_ok());
        assert!(check_marker(b".wh.passwd", true).is_ok());
        assert!(check_marker(b".wh..wh..opq", true).is_ok());
        assert!(check_marker(b".wh..profile", true).is_ok());
        for bad in [
            &b".wh."[..],
            b".wh..",
            b".wh...",
            b".wh..wh.x",
            b".wh..wh..plnk",
        ] {
            assert!(check_marker(bad, true).is_err(), "{bad:?}");
        }
        assert!(check_marker(b".wh.x", false).is_err());
        assert!(check_marker(b".wh..wh..opq", false).is_err());
    }
}
