//! One layer into the store's staging area: its blob read once, through the
//! decompressor, hashed on both sides (blob digest, diff id) and unpacked; a layer
//! the store already has is only verified.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingReader};
use super::formats::LayerSource;
use super::owners::{self, Owners};
use super::pack;
use super::progress::Progress;
use super::spec::Compression;
use super::store::{BlobRecord, LayerRecord};
use super::unpack;
use super::ImageError;

/// A layer checked and, when the store lacks it, unpacked into `staged`.
#[derive(Debug)]
pub struct NewLayer {
    pub diff_id: Digest,
    pub staged: Option<PathBuf>,
    pub record: LayerRecord,
    /// The layer's verified blob, staged to be kept in the store (for `push`).
    pub blob: Option<StagedBlob>,
}

/// A blob file in the staging area and what it is.
#[derive(Debug)]
pub struct StagedBlob {
    pub path: PathBuf,
    pub record: BlobRecord,
}

/// Where a layer staged at `into` keeps its blob until it is installed.
pub fn staged_blob_path(into: &Path) -> PathBuf {
    into.with_extension("blob")
}

fn invalid(text: String) -> ImageError {
    ImageError::Invalid(text)
}

/// Verifies `source` against `expected` (its diff id, when known) and unpacks it into
/// `into` (which must not exist yet) unless `have` says the store has that layer.
pub fn prepare(
    source: &LayerSource,
    expected: Option<&Digest>,
    have: impl Fn(&Digest) -> Option<LayerRecord>,
    into: &Path,
    owners: Owners,
    progress: &Progress,
) -> Result<NewLayer, ImageError> {
    match source {
        LayerSource::Tree(dir) => prepare_tree(dir, into, owners),
        LayerSource::Blob {
            path,
            what,
            digest,
            size,
            compression,
        } => {
            let known = expected.and_then(|d| have(d).map(|r| (d.clone(), r)));
            let unpack_into = if known.is_some() { None } else { Some(into) };
            let (diff_id, entries) = read_blob(
                path,
                what,
                digest.as_ref(),
                *size,
                *compression,
                unpack_into,
                owners,
                progress,
            )?;
            if let Some(expected) = expected {
                if &diff_id != expected {
                    return Err(invalid(format!(
                        "{what}: uncompressed content has digest {diff_id}, the image configuration says {expected}"
                    )));
                }
            }
            if let Some((diff_id, record)) = known {
                return Ok(NewLayer {
                    diff_id,
                    staged: None,
                    record,
                    blob: None,
                });
            }
            let size = layer_size(into)?;
            // A blob whose digest was verified is kept as it is, for push.
            let blob = match digest {
                Some(digest) => Some(stage_copy(path, digest, *compression, into)?),
                None => None,
            };
            Ok(NewLayer {
                diff_id,
                staged: Some(into.to_path_buf()),
                record: LayerRecord { size, entries },
                blob,
            })
        }
    }
}

/// A layer unpacked into `into` as `source` delivers it (a blob still downloading,
/// verified by its reader's owner): its diff id must be `expected`.
pub fn unpack_stream(
    source: impl Read,
    path: &Path,
    what: &str,
    compression: Compression,
    expected: &Digest,
    into: &Path,
    owners: Owners,
) -> Result<NewLayer, ImageError> {
    let hidden = Progress::new(0, "");
    let (diff_id, entries) = read_stream(
        source,
        path,
        what,
        None,
        None,
        Some(compression),
        Some(into),
        owners,
        &hidden,
    )?;
    if &diff_id != expected {
        return Err(invalid(format!(
            "{what}: uncompressed content has digest {diff_id}, the image configuration says {expected}"
        )));
    }
    let size = layer_size(into)?;
    Ok(NewLayer {
        diff_id,
        staged: Some(into.to_path_buf()),
        record: LayerRecord { size, entries },
        blob: None,
    })
}

/// Copies the verified blob `path` beside the layer staged at `into`
/// (`copy_file_range`: a reflink where the file system has them).
fn stage_copy(
    path: &Path,
    digest: &Digest,
    compression: Option<Compression>,
    into: &Path,
) -> Result<StagedBlob, ImageError> {
    let io = |error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    };
    let compression = match compression {
        Some(c) => c,
        None => {
            let mut head = [0u8; 4];
            let n = File::open(path)
                .and_then(|mut f| f.read(&mut head))
                .map_err(io)?;
            Compression::sniff(&head[..n])
        }
    };
    let staged = staged_blob_path(into);
    let size = fs::copy(path, &staged).map_err(io)?;
    Ok(StagedBlob {
        path: staged,
        record: BlobRecord {
            digest: digest.to_string(),
            size,
            media_type: compression.oci_layer_type(),
        },
    })
}

fn layer_size(dir: &Path) -> Result<u64, ImageError> {
    owners::disk_usage(dir, &mut Default::default()).map_err(|error| ImageError::Io {
        path: dir.to_path_buf(),
        error,
    })
}

/// Reads a blob once: checks its digest and size, computes its diff id, and unpacks
/// it into `into` when given. Returns the diff id and the number of entries.
#[allow(clippy::too_many_arguments)]
fn read_blob(
    path: &Path,
    what: &str,
    digest: Option<&Digest>,
    size: Option<u64>,
    compression: Option<Compression>,
    into: Option<&Path>,
    owners: Owners,
    progress: &Progress,
) -> Result<(Digest, u64), ImageError> {
    let file = File::open(path).map_err(|error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    read_stream(
        file,
        path,
        what,
        digest,
        size,
        compression,
        into,
        owners,
        progress,
    )
}

/// [`read_blob`] of what `source` gives (`path` names it in errors).
#[allow(clippy::too_many_arguments)]
fn read_stream(
    source: impl Read,
    path: &Path,
    what: &str,
    digest: Option<&Digest>,
    size: Option<u64>,
    compression: Option<Compression>,
    into: Option<&Path>,
    owners: Owners,
    progress: &Progress,
) -> Result<(Digest, u64), ImageError> {
    let io = |error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut buffered = BufReader::with_capacity(1 << 20, source);
    let compression = match compression {
        Some(c) => c,
        None => Compression::sniff(buffered.fill_buf().map_err(io)?),
    };
    // A blob whose digest is not asked for (one [`unpack_stream`] reads, which its
    // download verifies) is only counted: hashing it twice would cost a third of
    // the hashing a pull does.
    let mut raw = match digest {
        Some(_) => HashingReader::new(progress.reader(buffered)),
        None => HashingReader::counting(progress.reader(buffered)),
    };
    let outcome = (|| -> Result<(Digest, u64), String> {
        let decoder: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut raw),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut raw)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(&mut raw)
                    .map_err(|e| format!("not zstd data: {}", crate::describe_io(&e)))?,
            ),
        };
        let mut plain = HashingReader::new(decoder);
        let entries = match into {
            Some(dir) => {
                fs::create_dir(dir).map_err(|e| crate::describe_io(&e))?;
                unpack::unpack(&mut plain, dir, owners)?.entries
            }
            None => 0,
        };
        let (diff_id, _) = plain.finish().map_err(|e| stream_error(&e, compression))?;
        Ok((diff_id, entries))
    })();
    // The blob's own digest is checked first: a corrupt blob is reported as such, not
    // as whatever its corruption made of the tar stream.
    let (blob_digest, count) = raw.finish_any().map_err(io)?;
    if let (Some(digest), Some(blob_digest)) = (digest, blob_digest) {
        if &blob_digest != digest {
            return Err(invalid(format!(
                "{what}: content has digest {blob_digest}: corrupt or altered blob"
            )));
        }
    }
    if let Some(size) = size {
        if size != count {
            return Err(invalid(format!(
                "{what}: {count} bytes, the descriptor says {size}"
            )));
        }
    }
    outcome.map_err(|e| invalid(format!("{what}: {e}")))
}

fn stream_error(e: &io::Error, compression: Compression) -> String {
    match compression {
        Compression::None => format!("not a valid tar archive: {}", crate::describe_io(e)),
        Compression::Gzip => format!("corrupt gzip data: {}", crate::describe_io(e)),
        Compression::Zstd => format!("corrupt zstd data: {}", crate::describe_io(e)),
    }
}

/// A directory as a layer: packed by a thread into a pipe that is unpacked here, so
/// the tar (whose digest is the diff id) is never written out.
fn prepare_tree(dir: &Path, into: &Path, owners: Owners) -> Result<NewLayer, ImageError> {
    prepare_tree_except(dir, &std::collections::BTreeSet::new(), into, owners)
}

/// A directory as a layer, without the entries whose paths relative to `dir` are in
/// `skip` (`capsule commit` leaves out what the loader wrote).
pub fn prepare_tree_except(
    dir: &Path,
    skip: &std::collections::BTreeSet<PathBuf>,
    into: &Path,
    owners: Owners,
) -> Result<NewLayer, ImageError> {
    let (reader, writer) = io::pipe().map_err(|error| ImageError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let source = dir.to_path_buf();
    let skip = skip.clone();
    let packer =
        std::thread::spawn(move || pack::pack_except(&source, writer, owners, &skip).map(drop));
    fs::create_dir(into).map_err(|error| ImageError::Io {
        path: into.to_path_buf(),
        error,
    })?;
    let mut plain = HashingReader::new(reader);
    let unpacked = unpack::unpack(&mut plain, into, owners);
    let finished = plain.finish();
    let packed = packer
        .join()
        .map_err(|_| invalid(format!("{}: packing the directory failed", dir.display())))?;
    packed.map_err(|e| invalid(format!("{}: {}", dir.display(), crate::describe_io(&e))))?;
    let entries = unpacked
        .map_err(|e| invalid(format!("{}: {e}", dir.display())))?
        .entries;
    let (diff_id, _) = finished.map_err(|error| ImageError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let size = layer_size(into)?;
    Ok(NewLayer {
        diff_id,
        staged: Some(into.to_path_buf()),
        record: LayerRecord { size, entries },
        blob: None,
    })
}
