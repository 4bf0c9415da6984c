//! Writing a directory as a layer tar: a capsule's upper layer for `capsule commit`
//! (its whiteout markers are already OCI's), or an unpacked store layer for
//! `capsule image export`. Entries are sorted, so the same tree gives the same bytes;
//! owners and device nodes are read as [`super::owners`] keeps them, and names that
//! share an inode become hard links.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::owners::{self, Owners};

/// Names the shim uses for a copy-up in progress: never part of a layer.
const COPYUP_PREFIX: &str = ".capsule-copyup-";

/// Writes `dir`'s contents (not `dir` itself) as a tar stream to `out`.
pub fn pack<W: Write>(dir: &Path, out: W, owners: Owners) -> io::Result<W> {
    pack_except(dir, out, owners, &BTreeSet::new())
}

/// [`pack`], leaving out the entries (and what is below them) whose paths relative to
/// `dir` are in `skip`.
pub fn pack_except<W: Write>(
    dir: &Path,
    out: W,
    owners: Owners,
    skip: &BTreeSet<PathBuf>,
) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk(dir, Path::new(""), &mut builder, owners, &mut links, skip)?;
    builder.into_inner()
}

fn context(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| {
        io::Error::new(
            e.kind(),
            format!("{}: {}", path.display(), crate::describe_io(&e)),
        )
    }
}

fn walk<W: Write>(
    top: &Path,
    rel: &Path,
    builder: &mut tar::Builder<W>,
    owners: Owners,
    links: &mut HashMap<(u64, u64), PathBuf>,
    skip: &BTreeSet<PathBuf>,
) -> io::Result<()> {
    let dir = top.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(context(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(context(&dir))?;
    names.sort();
    for name in names {
        if name.to_string_lossy().starts_with(COPYUP_PREFIX) {
            continue;
        }
        let child = rel.join(&name);
        if skip.contains(&child) {
            continue;
        }
        let path = top.join(&child);
        let meta = fs::symlink_metadata(&path).map_err(context(&path))?;
        let (uid, gid) = owners.get(&path, &meta);
        let shares_inode =
            meta.nlink() > 1 && !meta.is_dir() && links.contains_key(&(meta.dev(), meta.ino()));
        if !shares_inode {
            let attrs = owners::xattrs(&path).map_err(context(&path))?;
            if !attrs.is_empty() {
                let pax: Vec<(String, Vec<u8>)> = attrs
                    .into_iter()
                    .map(|(name, value)| (format!("SCHILY.xattr.{name}"), value))
                    .collect();
                builder
                    .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                    .map_err(context(&path))?;
            }
        }
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_size(0);
        let ft = meta.file_type();
        if ft.is_dir() {
            header.set_entry_type(EntryType::Directory);
            let mut name = child.clone().into_os_string();
            name.push("/");
            builder
                .append_data(&mut header, Path::new(&name), io::empty())
                .map_err(context(&path))?;
            walk(top, &child, builder, owners, links, skip)?;
            continue;
        }
        if ft.is_symlink() {
            header.set_entry_type(EntryType::Symlink);
            let target = fs::read_link(&path).map_err(context(&path))?;
            builder
                .append_link(&mut header, &child, &target)
                .map_err(context(&path))?;
            continue;
        }
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                header.set_entry_type(EntryType::Link);
                builder
                    .append_link(&mut header, &child, first)
                    .map_err(context(&path))?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), child.clone());
        }
        if let Some(dev) = owners.device(&path, &meta) {
            header.set_entry_type(if dev.block {
                EntryType::Block
            } else {
                EntryType::Char
            });
            header.set_device_major(dev.major)?;
            header.set_device_minor(dev.minor)?;
            builder
                .append_data(&mut header, &child, io::empty())
                .map_err(context(&path))?;
        } else if ft.is_fifo() {
            header.set_entry_type(EntryType::Fifo);
            builder
                .append_data(&mut header, &child, io::empty())
                .map_err(context(&path))?;
        } else if ft.is_file() {
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.len());
            let file = File::open(&path).map_err(context(&path))?;
            builder
                .append_data(&mut header, &child, file)
                .map_err(context(&path))?;
        }
        // A socket is left by a process that ran, and is no content: docker skips it too.
    }
    Ok(())
}
