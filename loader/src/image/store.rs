//! The content-addressed image store, `$CAPSULE_HOME/images/`:
//!
//! ```text
//! blobs/sha256/<hex>   image configurations (an image's id is its config's digest),
//!                      the layer blobs as pulled or imported (`push` sends them), and
//!                      the manifests and indexes images were pulled with
//! layers/<hex>/        each layer unpacked once, named by its diff id
//! roots/<hex>/         each stack of layers merged once, named by its chain id:
//!                      hard links to the layer files (see merge.rs)
//! index.json           images (their layers, creation time), references, layer sizes
//! tmp/                 imports in progress; nothing there is visible
//! downloads/<hex>      blobs a pull is downloading (what an interrupted pull got,
//!                      resumed by the next one); removed once unpacked
//! lock                 flock(2) serialising changes to the store
//! ```
//!
//! Changes happen in `tmp/` first and are renamed into place under the lock, then
//! `index.json` is replaced atomically: readers never see a half-made image, and what
//! an interrupted change left behind is collected by the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::owners;
use super::ImageError;

/// An image as the index records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// Diff ids (hex) of its layers, bottom first.
    pub layers: Vec<String>,
    /// Chain id (hex) of those layers: the name of its root.
    pub root: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Bytes on disk of the unpacked layer.
    pub size: u64,
    pub entries: u64,
}

/// A layer's blob as the registry or archive had it (compressed or not), kept in
/// `blobs/sha256/` so that a push sends the layer with the digest it came with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobRecord {
    /// `sha256:…`
    pub digest: String,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreIndex {
    /// By id (config digest hex).
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
    /// Reference → image id hex.
    #[serde(default)]
    pub refs: BTreeMap<String, String>,
    /// By diff id hex.
    #[serde(default)]
    pub layers: BTreeMap<String, LayerRecord>,
    /// Root (chain id hex) → its layers' diff ids hex, bottom first.
    #[serde(default)]
    pub roots: BTreeMap<String, Vec<String>>,
    /// By diff id hex: the layer's original blob (layers committed or built have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blobs: BTreeMap<String, BlobRecord>,
    /// By image id hex: the manifest it was pulled with (its bytes are a blob), so
    /// that a push sends the same document and the registry gets the same digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub manifests: BTreeMap<String, DocumentRecord>,
    /// By reference: the multi-platform index `pull --all-platforms` stored under it
    /// (its bytes are a blob); the reference itself names one of its images.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub indexes: BTreeMap<String, IndexRecord>,
}

/// A manifest or index as a registry served it: the bytes are `blobs/sha256/<hex>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DocumentRecord {
    /// `sha256:…`
    pub digest: String,
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// A multi-platform index of the store: the document, and the image each of its
/// entries was pulled as, in the index's order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexRecord {
    #[serde(flatten)]
    pub document: DocumentRecord,
    pub images: Vec<IndexEntry>,
    /// Entries not pulled (attestations, platform `unknown/unknown`): the index cannot
    /// be pushed as it was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexEntry {
    pub platform: super::spec::Platform,
    /// Image id hex.
    pub id: String,
}

impl StoreIndex {
    /// The index stored under `reference` (in any of its spellings).
    pub fn index_of(&self, reference: &str) -> Option<(&String, &IndexRecord)> {
        let normal = normalize_reference(reference);
        self.indexes
            .iter()
            .find(|(r, _)| r.as_str() == reference || normalize_reference(r) == normal)
    }

    /// Image ids some index of the store holds.
    pub fn indexed_ids(&self) -> BTreeSet<String> {
        self.indexes
            .values()
            .flat_map(|i| i.images.iter().map(|e| e.id.clone()))
            .collect()
    }
}

/// The store of one `$CAPSULE_HOME`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    capsules: PathBuf,
}

/// Holds the store's lock while alive.
pub struct Lock {
    _file: File,
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> ImageError + '_ {
    move |error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    }
}

impl Store {
    pub fn new(home: &Path) -> Store {
        Store {
            dir: home.join("images"),
            capsules: home.join("capsules"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    pub fn layer_path(&self, diff_id_hex: &str) -> PathBuf {
        self.dir.join("layers").join(diff_id_hex)
    }

    pub fn root_path(&self, chain_hex: &str) -> PathBuf {
        self.dir.join("roots").join(chain_hex)
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    /// Creates the store's directories (for a change).
    pub fn create(&self) -> Result<(), ImageError> {
        for sub in ["blobs/sha256", "layers", "roots", "tmp"] {
            let path = self.dir.join(sub);
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        Ok(())
    }

    /// Takes the store's lock (blocking while another change runs).
    pub fn lock(&self) -> Result<Lock, ImageError> {
        self.create()?;
        let path = self.dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        // SAFETY: a descriptor owned by `file`, which outlives the lock.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(ImageError::Io {
                path,
                error: io::Error::last_os_error(),
            });
        }
        Ok(Lock { _file: file })
    }

    /// A new private directory under `tmp/` for one change; named after this
    /// process, so that a later change can tell a dead one's leftovers.
    pub fn staging(&self) -> Result<Staging, ImageError> {
        self.create()?;
        let mut n = 0u32;
        loop {
            let path = self
                .dir
                .join("tmp")
                .join(format!("{}-{}", std::process::id(), n));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Staging { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
    }

    /// The index; an empty one when nothing was imported yet.
    pub fn read_index(&self) -> Result<StoreIndex, ImageError> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ImageError::Invalid(format!("{}: corrupt store index: {e}", path.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StoreIndex::default()),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Replaces the index atomically (call with the lock held).
    pub fn write_index(&self, index: &StoreIndex, _lock: &Lock) -> Result<(), ImageError> {
        let path = self.index_path();
        // In tmp/, named for this process: a crash leaves it to the next collection.
        let temp = self
            .dir
            .join(format!("tmp/{}-index.json", std::process::id()));
        let text =
            serde_json::to_vec_pretty(index).map_err(|e| ImageError::Invalid(e.to_string()))?;
        let write = || -> io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&temp, &path)
        };
        write().map_err(io_error(&path))
    }

    /// Finds an image: a reference (`name:tag`; `:latest` if no tag is given), or an
    /// id or unique id prefix (with or without `sha256:`).
    pub fn resolve(
        &self,
        index: &StoreIndex,
        reference: &str,
    ) -> Result<(String, ImageRecord), ImageError> {
        let normal = normalize_reference(reference);
        // References stored before they were kept in the familiar form (a docker
        // archive's `docker.io/library/hello:1`) are found by theirs.
        if let Some(id) = index
            .refs
            .get(reference)
            .or_else(|| index.refs.get(&normal))
            .or_else(|| {
                index
                    .refs
                    .iter()
                    .find(|(r, _)| normalize_reference(r) == normal)
                    .map(|(_, id)| id)
            })
        {
            if let Some(record) = index.images.get(id) {
                return Ok((id.clone(), record.clone()));
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<_> = index
                .images
                .iter()
                .filter(|(id, _)| id.starts_with(hex))
                .collect();
            if let [(id, record)] = found.as_slice() {
                return Ok(((*id).clone(), (*record).clone()));
            }
            if found.len() > 1 {
                return Err(ImageError::Invalid(format!(
                    "{reference}: names more than one image"
                )));
            }
        }
        Err(ImageError::NotFound(reference.to_string()))
    }

    /// As [`Store::resolve`], but when `platform` is given and `reference` names a
    /// multi-platform index, its image for that platform; `None` when that index has
    /// none (a pull may find it).
    pub fn resolve_for(
        &self,
        index: &StoreIndex,
        reference: &str,
        platform: Option<&super::spec::Platform>,
    ) -> Result<Option<(String, ImageRecord)>, ImageError> {
        if let (Some(wanted), Some((_, record))) = (platform, index.index_of(reference)) {
            let Some(entry) = record.images.iter().find(|e| e.platform.matches(wanted)) else {
                return Ok(None);
            };
            return match index.images.get(&entry.id) {
                Some(image) => Ok(Some((entry.id.clone(), image.clone()))),
                None => Ok(None),
            };
        }
        self.resolve(index, reference).map(Some)
    }

    /// The manifest image `id` was pulled with, when the store still has it and every
    /// blob it names (of the size it says): its bytes, media type and document.
    pub fn pulled_manifest(
        &self,
        index: &StoreIndex,
        id: &str,
    ) -> Option<(Vec<u8>, String, super::spec::Manifest)> {
        let doc = index.manifests.get(id)?;
        let digest = Digest::parse(&doc.digest).ok()?;
        let bytes = fs::read(self.blob_path(&digest)).ok()?;
        if Digest::of(&bytes) != digest {
            return None;
        }
        let manifest: super::spec::Manifest = serde_json::from_slice(&bytes).ok()?;
        if manifest.config.digest != format!("sha256:{id}") {
            return None;
        }
        for desc in manifest.layers.iter().chain([&manifest.config]) {
            let blob = Digest::parse(&desc.digest).ok()?;
            let size = fs::metadata(self.blob_path(&blob)).ok()?.len();
            if Some(size) != u64::try_from(desc.size).ok() {
                return None;
            }
        }
        Some((bytes, doc.media_type.clone(), manifest))
    }

    /// The blob kept for layer `diff_id_hex` and its record, if the file is there.
    pub fn kept_blob(
        &self,
        index: &StoreIndex,
        diff_id_hex: &str,
    ) -> Option<(BlobRecord, PathBuf)> {
        let blob = index.blobs.get(diff_id_hex)?;
        let digest = Digest::parse(&blob.digest).ok()?;
        let path = self.blob_path(&digest);
        path.is_file().then(|| (blob.clone(), path))
    }

    /// Writes `bytes` as a blob named by their digest (call with the lock held).
    pub fn write_document(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        let path = self.blob_path(&digest);
        if !path.is_file() {
            let temp = self
                .dir
                .join(format!("tmp/{}-{}", std::process::id(), digest.hex()));
            fs::write(&temp, bytes)
                .and_then(|()| fs::rename(&temp, &path))
                .map_err(io_error(&path))?;
        }
        Ok(digest)
    }

    /// Where `capsule build` keeps its step cache: one file per step key, holding the
    /// id of the image that step made.
    pub fn build_cache_dir(&self) -> PathBuf {
        self.dir.join("build-cache")
    }

    /// The images of the build cache (intermediate images of `capsule build`).
    pub fn build_cache_ids(&self) -> BTreeSet<String> {
        let Ok(entries) = fs::read_dir(self.build_cache_dir()) else {
            return BTreeSet::new();
        };
        entries
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .map(|id| id.trim().to_string())
            .collect()
    }

    /// The image configuration (the bytes whose digest is the id).
    pub fn config_bytes(&self, id_hex: &str) -> Result<Vec<u8>, ImageError> {
        let digest = Digest::from_hex(id_hex)
            .ok_or_else(|| ImageError::Invalid(format!("{id_hex}: not an image id")))?;
        let path = self.blob_path(&digest);
        fs::read(&path).map_err(io_error(&path))
    }

    /// Roots (chain id hex) that capsules of this home use as their lower layer.
    pub fn roots_in_use(&self) -> BTreeSet<String> {
        let mut used = BTreeSet::new();
        let roots = self.dir.join("roots");
        // Capsules record the root canonicalised.
        let real_roots = fs::canonicalize(&roots).unwrap_or_else(|_| roots.clone());
        let Ok(entries) = fs::read_dir(&self.capsules) else {
            return used;
        };
        for entry in entries.flatten() {
            let Ok(text) = fs::read_to_string(entry.path().join("config")) else {
                continue;
            };
            let Ok(pairs) = capsule_config::parse_config_file(&text) else {
                continue;
            };
            for (key, value) in pairs {
                if key == capsule_config::keys::ROOT {
                    let value = Path::new(&value);
                    let rest = value
                        .strip_prefix(&roots)
                        .or_else(|_| value.strip_prefix(&real_roots));
                    if let Ok(rest) = rest {
                        if let Some(first) = rest.iter().next() {
                            used.insert(first.to_string_lossy().into_owned());
                        }
                    }
                }
            }
        }
        used
    }

    /// Removes what no image and no capsule uses any more, and the leftovers of dead
    /// changes (call with the lock held, after updating `index`).
    pub fn collect_garbage(&self, index: &mut StoreIndex, lock: &Lock) -> Result<(), ImageError> {
        let mut roots: BTreeSet<String> = index.images.values().map(|i| i.root.clone()).collect();
        roots.extend(self.roots_in_use());
        let mut layers: BTreeSet<String> = BTreeSet::new();
        for image in index.images.values() {
            layers.extend(image.layers.iter().cloned());
        }
        for root in &roots {
            if let Some(stack) = index.roots.get(root) {
                layers.extend(stack.iter().cloned());
            }
        }
        index.roots.retain(|chain, _| roots.contains(chain));
        index.layers.retain(|diff, _| layers.contains(diff));
        index.blobs.retain(|diff, _| layers.contains(diff));
        let images: BTreeSet<String> = index.images.keys().cloned().collect();
        index.manifests.retain(|id, _| images.contains(id));
        // An index stays while its reference names one of its images (a tag, import
        // or commit naming another image under it ends it) and all of them are here.
        let refs = index.refs.clone();
        index.indexes.retain(|r, record| {
            refs.get(r)
                .is_some_and(|id| record.images.iter().any(|e| &e.id == id))
                && record.images.iter().all(|e| images.contains(&e.id))
        });
        // The index first: a crash after it leaves unlisted directories, not dangling
        // entries.
        self.write_index(index, lock)?;
        let mut ids: BTreeSet<&str> = index.images.keys().map(String::as_str).collect();
        ids.extend(
            index
                .blobs
                .values()
                .filter_map(|b| b.digest.strip_prefix("sha256:")),
        );
        ids.extend(
            index
                .manifests
                .values()
                .chain(index.indexes.values().map(|i| &i.document))
                .filter_map(|d| d.digest.strip_prefix("sha256:")),
        );
        for (sub, keep) in [("roots", &roots), ("layers", &layers)] {
            let dir = self.dir.join(sub);
            for entry in fs::read_dir(&dir).map_err(io_error(&dir))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    owners::remove_any(&entry.path()).map_err(io_error(&entry.path()))?;
                }
            }
        }
        let blobs = self.dir.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(io_error(&blobs))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !ids.contains(name.as_str()) {
                fs::remove_file(entry.path()).map_err(io_error(&entry.path()))?;
            }
        }
        let tmp = self.dir.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(io_error(&tmp))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|pid| {
                // SAFETY: signal 0 only checks that the process exists.
                pid == std::process::id() as i32 || unsafe { libc::kill(pid, 0) } == 0
            });
            if !alive {
                owners::remove_any(&entry.path()).map_err(io_error(&entry.path()))?;
            }
        }
        Ok(())
    }
}

/// A directory under the store's `tmp/`, removed with everything left in it when
/// dropped (an import that failed leaves nothing).
pub struct Staging {
    path: PathBuf,
}

impl Staging {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = owners::remove_any(&self.path);
    }
}

/// The form the store keeps: Docker's familiar one (see [`super::reference`]).
pub fn normalize_reference(reference: &str) -> String {
    super::reference::familiar(reference)
}

/// Checks a reference given as `--name` or `NEWREF`: printable, no blanks.
pub fn check_reference(reference: &str) -> Result<String, ImageError> {
    let valid = !reference.is_empty()
        && reference.len() <= 255
        && reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
        && !reference.starts_with(['-', ':', '/', '.']);
    if !valid {
        return Err(ImageError::Invalid(format!(
            "{reference:?}: not an image reference (letters, digits, '.', '_', '-', '/', ':' as in registry/name:tag)"
        )));
    }
    Ok(normalize_reference(reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(normalize_reference("debian"), "debian:latest");
        assert_eq!(
            normalize_reference("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(normalize_reference("app:1.2"), "app:1.2");
        assert!(check_reference("a b").is_err());
        assert!(check_reference("-x").is_err());
        assert_eq!(check_reference("base").unwrap(), "base:latest");
    }
}
