//! `capsule pull REF`, and `run --image REF` pulling on first use: the manifest for
//! this platform, the configuration, then the layers the store lacks, several at
//! once, each downloaded, verified and unpacked; the image is installed only when
//! every layer is good.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;
use std::sync::Mutex;

use super::blob;
use super::client::Client;
use super::manifest;
use super::{Options, RegistryError};
use crate::image::digest::Digest;
use crate::image::formats::{self, LayerSource};
use crate::image::import;
use crate::image::layer::{self, NewLayer};
use crate::image::owners::Owners;
use crate::image::progress::{LayerBar, Layers, Progress};
use crate::image::reference::Reference;
use crate::image::spec::{self, Compression, ImageConfig, Platform};
use crate::image::store::Store;
use crate::image::ImageError;

/// Layers downloaded at once.
const PARALLEL: usize = 4;

/// What a pull made.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference as the store keeps it (`alpine:latest`, `host:5000/app:1`).
    pub reference: String,
    pub id: Digest,
    /// The digest of the image manifest on the registry.
    pub manifest: Digest,
    pub layers: usize,
    /// Layers downloaded (the others were in the store).
    pub new_layers: usize,
}

/// When `run --image` pulls, as podman's `--pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Only when the store has no such image.
    #[default]
    Missing,
    Always,
    Never,
}

/// Parses a reference as `pull` takes it.
pub fn parse_reference(text: &str) -> Result<Reference, RegistryError> {
    Reference::parse(text).ok_or_else(|| {
        RegistryError::Invalid(format!(
            "{text:?}: not an image reference (for example alpine, debian:12, ghcr.io/org/app:tag, host:5000/app@sha256:…)"
        ))
    })
}

/// Pulls `text` into `store`. Nothing in the store changes unless the whole image
/// is good.
pub fn pull(store: &Store, text: &str, options: &Options) -> Result<Pulled, RegistryError> {
    let reference = parse_reference(text)?;
    import::unchanged_on_error(store, || pull_checked(store, &reference, options))
}

/// Pulls `text` as `policy` says: `None` when nothing was pulled.
pub fn ensure(
    store: &Store,
    text: &str,
    policy: Policy,
    options: &Options,
) -> Result<Option<Pulled>, RegistryError> {
    match policy {
        Policy::Never => return Ok(None),
        Policy::Missing => match store.resolve(&store.read_index()?, text) {
            Ok(_) => return Ok(None),
            Err(ImageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        },
        Policy::Always => {}
    }
    pull(store, text, options).map(Some)
}

fn descriptor_size(desc: &spec::Descriptor) -> Result<u64, RegistryError> {
    u64::try_from(desc.size).map_err(|_| {
        RegistryError::Invalid(format!("{}: size {} is negative", desc.digest, desc.size))
    })
}

fn pull_checked(
    store: &Store,
    reference: &Reference,
    options: &Options,
) -> Result<Pulled, RegistryError> {
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let client = Client::connect(&reference.domain, &reference.path, "pull", options)?;
    let target = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let resolved = manifest::resolve(&client, &reference.path, &target, &platform)?;
    let image = reference.familiar();
    let config_desc = &resolved.manifest.config;
    let config_digest = Digest::parse(&config_desc.digest)
        .map_err(|e| RegistryError::Invalid(format!("{image}: config {e}")))?;
    let config = blob::fetch_small(
        &client,
        &reference.path,
        &config_digest,
        descriptor_size(config_desc)?,
        "config",
    )?;
    if let (Some(wanted), false) = (&options.platform, resolved.platform_chosen) {
        formats::check_platform(&config, wanted)?;
    }
    let parsed: ImageConfig = serde_json::from_slice(&config).map_err(|e| {
        RegistryError::Invalid(format!("{image}: not a valid image configuration: {e}"))
    })?;
    let layers = &resolved.manifest.layers;
    if parsed.rootfs.diff_ids.len() != layers.len() {
        return Err(RegistryError::Invalid(format!(
            "{image}: the configuration names {} layers, the manifest {}",
            parsed.rootfs.diff_ids.len(),
            layers.len()
        )));
    }
    let owners = Owners::current();
    let index = store.read_index()?;
    let staging = store.staging()?;
    let downloads = store.dir().join("downloads");
    fs::create_dir_all(&downloads).map_err(|error| RegistryError::Io {
        path: downloads.clone(),
        error,
    })?;
    let display = Layers::new(options.quiet);
    let mut done: Vec<Option<Result<NewLayer, RegistryError>>> = Vec::new();
    let mut jobs = VecDeque::new();
    for (n, (desc, diff)) in layers.iter().zip(&parsed.rootfs.diff_ids).enumerate() {
        let digest = Digest::parse(&desc.digest)
            .map_err(|e| RegistryError::Invalid(format!("{image}: layer {e}")))?;
        let diff_id = Digest::parse(diff)
            .map_err(|e| RegistryError::Invalid(format!("{image}: diff id {e}")))?;
        let compression = Compression::of_layer_type(&desc.media_type).ok_or_else(|| {
            RegistryError::Invalid(format!(
                "{image}: layer {digest}: unknown media type {}",
                desc.media_type
            ))
        })?;
        let known = index
            .layers
            .get(diff_id.hex())
            .copied()
            .filter(|_| store.layer_path(diff_id.hex()).is_dir());
        match known {
            Some(record) => {
                display
                    .layer(digest.short(), 0)
                    .done("already in the store");
                done.push(Some(Ok(NewLayer {
                    diff_id,
                    staged: None,
                    record,
                    blob: None,
                })));
            }
            None => {
                done.push(None);
                jobs.push_back((n, digest, descriptor_size(desc)?, diff_id, compression));
            }
        }
    }
    let new_layers = jobs.len();
    let jobs = Mutex::new(jobs);
    let done = Mutex::new(done);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(new_layers) {
            scope.spawn(|| loop {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Some((n, digest, size, diff_id, compression)) =
                    jobs.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                else {
                    return;
                };
                let bar = display.layer(digest.short(), size);
                let job = Job {
                    client: &client,
                    repository: &reference.path,
                    digest: &digest,
                    size,
                    diff_id: &diff_id,
                    compression,
                };
                let into = staging.path().join(format!("layer-{n}"));
                let outcome = job.fetch(&downloads.join(digest.hex()), &into, owners, &bar);
                match &outcome {
                    Ok(_) => bar.done(&format!("downloaded {size} bytes")),
                    Err(_) => {
                        bar.failed();
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                done.lock().unwrap_or_else(|e| e.into_inner())[n] = Some(outcome);
            });
        }
    });
    let mut ready = Vec::new();
    // A layer not started (`None`) is one after a failure: that error is reported.
    for outcome in done
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
    {
        ready.push(outcome?);
    }
    if ready.len() != layers.len() {
        return Err(RegistryError::Invalid(format!("{image}: a layer failed")));
    }
    let id = import::install(store, &staging, ready, &config, Some(&image), owners)?;
    Ok(Pulled {
        reference: image,
        id,
        manifest: resolved.digest,
        layers: layers.len(),
        new_layers,
    })
}

/// One layer to download and unpack.
struct Job<'a> {
    client: &'a Client,
    repository: &'a str,
    digest: &'a Digest,
    size: u64,
    diff_id: &'a Digest,
    compression: Compression,
}

impl Job<'_> {
    /// Downloads the layer into `part` and, at the same time, unpacks it into `into`
    /// as it arrives. When that unpacking fails (the download started over, say),
    /// the complete, verified blob is unpacked once more, so that what is reported
    /// is about the blob, not about the race.
    fn fetch(
        &self,
        part: &Path,
        into: &Path,
        owners: Owners,
        bar: &LayerBar,
    ) -> Result<NewLayer, RegistryError> {
        let what = format!("layer {}", self.digest);
        let progress = |bytes| bar.advance(bytes);
        let feed = blob::Feed::new(&progress);
        let (downloaded, streamed) = std::thread::scope(|scope| {
            let unpacker = scope.spawn(|| {
                feed.wait_started();
                let file = fs::File::open(part).map_err(|error| ImageError::Io {
                    path: part.to_path_buf(),
                    error,
                })?;
                layer::unpack_stream(
                    feed.reader(file),
                    part,
                    &what,
                    self.compression,
                    self.diff_id,
                    into,
                    owners,
                )
            });
            let downloaded = blob::download(
                self.client,
                self.repository,
                self.digest,
                self.size,
                part,
                &feed,
            );
            feed.finish();
            (downloaded, unpacker.join())
        });
        // A blob that did not download whole stays for the next pull to resume.
        downloaded?;
        let result = match streamed {
            Ok(Ok(layer)) => Ok(layer),
            _ => {
                let _ = crate::image::owners::remove_any(into);
                let source = LayerSource::Blob {
                    path: part.to_path_buf(),
                    what,
                    // Verified while it downloaded (its size too).
                    digest: None,
                    size: Some(self.size),
                    compression: Some(self.compression),
                };
                let hidden = Progress::new(0, "");
                layer::prepare(&source, Some(self.diff_id), |_| None, into, owners, &hidden)
                    .map_err(RegistryError::from)
            }
        };
        // The verified blob is kept (moved beside the staged layer), for push; if
        // another pull moved it first, the layer is kept without it.
        let mut result = result;
        if let Ok(layer) = &mut result {
            let kept = layer::staged_blob_path(into);
            if fs::rename(part, &kept).is_ok() {
                layer.blob = Some(layer::StagedBlob {
                    path: kept,
                    record: crate::image::store::BlobRecord {
                        digest: self.digest.to_string(),
                        size: self.size,
                        media_type: self.compression.oci_layer_type(),
                    },
                });
            }
        }
        let _ = fs::remove_file(part);
        result
    }
}
