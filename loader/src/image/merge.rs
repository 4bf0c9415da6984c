//! An image's root: its layers merged, bottom first, into one directory of hard links
//! to the unpacked layer files. Directories are recreated (owner, mode and times of
//! the topmost layer that has them), `.wh.NAME` removes NAME from the layers below,
//! `.wh..wh..opq` empties a directory of what the layers below put there. Hard links
//! within a layer stay one inode, symbolic links stay links. The shim's single lower
//! layer is then this directory: a capsule from an image starts without copying
//! anything and reads its files as fast as a `--root` directory's. Capsules never
//! write their lower layer (copy-on-write), so sharing inodes with the layers is safe.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::owners::{self, Owners};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Builds `root` (an existing empty directory) from `layers`, bottom first.
pub fn merge(layers: &[PathBuf], root: &Path, owners: Owners) -> io::Result<()> {
    let mut merger = Merger {
        root,
        owners,
        dirs: BTreeMap::new(),
    };
    for (n, layer) in layers.iter().enumerate() {
        merger.directory(layer, Path::new(""), n == 0)?;
    }
    merger.finish()
}

struct Merger<'a> {
    root: &'a Path,
    owners: Owners,
    /// Each directory's mode and times (from the topmost layer having it), set at the
    /// end, deepest first, so that linking entries into it changes neither.
    dirs: BTreeMap<PathBuf, (u32, i64, i64)>,
}

fn context(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| {
        io::Error::new(
            e.kind(),
            format!("{}: {}", path.display(), crate::describe_io(&e)),
        )
    }
}

impl Merger<'_> {
    /// Merges the layer's directory `layer/rel` into `root/rel`, which exists; `fresh`
    /// says it was made by this layer with nothing from below in it.
    fn directory(&mut self, layer: &Path, rel: &Path, fresh: bool) -> io::Result<()> {
        let from = layer.join(rel);
        let into = self.root.join(rel);
        let from_meta = fs::symlink_metadata(&from).map_err(context(&from))?;
        self.owners
            .copy(&from, &from_meta, &into)
            .map_err(context(&into))?;
        let attrs = owners::xattrs(&from).map_err(context(&from))?;
        self.owners
            .set_xattrs(&into, &attrs)
            .map_err(context(&into))?;
        self.dirs.insert(
            rel.to_path_buf(),
            (from_meta.mode(), from_meta.mtime(), from_meta.mtime_nsec()),
        );

        let mut names: Vec<(std::ffi::OsString, fs::FileType)> = Vec::new();
        for entry in fs::read_dir(&from).map_err(context(&from))? {
            let entry = entry.map_err(context(&from))?;
            names.push((
                entry.file_name(),
                entry.file_type().map_err(context(&from))?,
            ));
        }
        // Deletions first: they concern the layers below, not this one's entries.
        let mut fresh = fresh;
        for (name, _) in &names {
            let Some(text) = name.to_str() else { continue };
            if fresh {
                break;
            }
            if text == OPAQUE {
                for entry in fs::read_dir(&into).map_err(context(&into))? {
                    let path = entry.map_err(context(&into))?.path();
                    owners::remove_any(&path).map_err(context(&path))?;
                }
                self.forget_below(rel);
                fresh = true;
                break;
            }
        }
        for (name, kind) in &names {
            // Layers were checked when unpacked; checked again so that no marker can
            // name its own directory or the one above.
            super::unpack::check_marker(name.as_bytes(), kind.is_file()).map_err(|why| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {why}", rel.join(name).display()),
                )
            })?;
        }
        for (name, _) in &names {
            let Some(text) = name.to_str() else { continue };
            if let Some(hidden) = text.strip_prefix(WHITEOUT) {
                if text != OPAQUE && !fresh {
                    let path = into.join(hidden);
                    owners::remove_any(&path).map_err(context(&path))?;
                    self.forget_below(&rel.join(hidden));
                }
            }
        }
        for (name, kind) in names {
            if name.to_str().is_some_and(|t| t.starts_with(WHITEOUT)) {
                continue;
            }
            let child = rel.join(&name);
            let target = self.root.join(&child);
            let existing = if fresh {
                None
            } else {
                fs::symlink_metadata(&target).ok()
            };
            if kind.is_dir() {
                let child_fresh = match existing {
                    Some(m) if m.is_dir() => false,
                    Some(_) => {
                        fs::remove_file(&target).map_err(context(&target))?;
                        fs::create_dir(&target).map_err(context(&target))?;
                        true
                    }
                    None => {
                        fs::create_dir(&target).map_err(context(&target))?;
                        true
                    }
                };
                self.directory(layer, &child, child_fresh)?;
            } else {
                if existing.is_some() {
                    owners::remove_any(&target).map_err(context(&target))?;
                    self.forget_below(&child);
                }
                let source = layer.join(&child);
                fs::hard_link(&source, &target).map_err(context(&target))?;
            }
        }
        Ok(())
    }

    /// A removed directory's pending metadata goes with it.
    fn forget_below(&mut self, rel: &Path) {
        let gone: Vec<PathBuf> = self
            .dirs
            .range(rel.to_path_buf()..)
            .map(|(d, _)| d)
            .take_while(|d| d.starts_with(rel))
            .cloned()
            .collect();
        for dir in gone {
            self.dirs.remove(&dir);
        }
    }

    fn finish(self) -> io::Result<()> {
        for (rel, (mode, mtime, nsec)) in self.dirs.iter().rev() {
            let path = self.root.join(rel);
            owners::set_mode(&path, *mode).map_err(context(&path))?;
            owners::set_times(&path, *mtime, *nsec).map_err(context(&path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_and_opaque_directories_apply_to_lower_layers() {
        let scratch = std::env::temp_dir().join(format!("capsule-merge-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        let (l1, l2, root) = (scratch.join("l1"), scratch.join("l2"), scratch.join("root"));
        for d in ["etc/keep", "etc/gone", "opq", "same"] {
            fs::create_dir_all(l1.join(d)).unwrap();
        }
        fs::write(l1.join("etc/keep/a"), "1").unwrap();
        fs::write(l1.join("etc/gone/b"), "1").unwrap();
        fs::write(l1.join("opq/old"), "1").unwrap();
        fs::write(l1.join("same/f"), "old").unwrap();
        fs::hard_link(l1.join("same/f"), l1.join("same/g")).unwrap();
        for d in ["etc", "opq", "same"] {
            fs::create_dir_all(l2.join(d)).unwrap();
        }
        fs::write(l2.join("etc/.wh.gone"), "").unwrap();
        fs::write(l2.join("opq/.wh..wh..opq"), "").unwrap();
        fs::write(l2.join("opq/new"), "2").unwrap();
        fs::write(l2.join("same/f"), "new").unwrap();
        fs::create_dir(&root).unwrap();
        merge(&[l1.clone(), l2.clone()], &root, Owners::current()).unwrap();
        assert!(root.join("etc/keep/a").exists());
        assert!(!root.join("etc/gone").exists());
        assert!(!root.join("etc/.wh.gone").exists());
        assert!(!root.join("opq/old").exists());
        assert!(root.join("opq/new").exists());
        assert!(!root.join("opq/.wh..wh..opq").exists());
        assert_eq!(fs::read_to_string(root.join("same/f")).unwrap(), "new");
        assert_eq!(fs::read_to_string(root.join("same/g")).unwrap(), "old");
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&root.join("same/g")), ino(&l1.join("same/g")));
        fs::remove_dir_all(&scratch).unwrap();
    }
}
