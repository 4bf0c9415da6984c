//! `capsule pull REF`, and `run --image REF` pulling on first use: the manifest for
//! this platform, the configuration, then the layers the store lacks, several at
//! once, each downloaded, verified and unpacked; the image is installed only when
//! every layer is good. The manifest is kept beside the image (for push). With
//! `--all-platforms` ([`pull_all`]), every image of an index, then the index itself.

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
use crate::image::store::{DocumentRecord, IndexEntry, IndexRecord, Store};
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
        // A platform an index of the store has is not pulled again.
        Policy::Missing => {
            match store.resolve_for(&store.read_index()?, text, options.platform.as_ref()) {
                Ok(Some(_)) => return Ok(None),
                Ok(None) | Err(ImageError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
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
    let resolved = manifest::resolve(&client, &reference.path, &target_of(reference), &platform)?;
    let check = options
        .platform
        .as_ref()
        .filter(|_| !resolved.platform_chosen);
    let image = reference.familiar();
    let pulled = pull_image(
        store,
        &client,
        reference,
        &resolved,
        check,
        Some(&image),
        options,
    )?;
    remember(store, &[(&pulled.id, &resolved)], None)?;
    Ok(pulled)
}

/// The tag or digest a reference asks the registry for.
fn target_of(reference: &Reference) -> String {
    reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".into())
}

/// What `pull --all-platforms` made: an image per platform of the index.
#[derive(Debug, Clone)]
pub struct PulledIndex {
    pub reference: String,
    /// The digest of the index on the registry.
    pub digest: Digest,
    pub images: Vec<(Platform, Pulled)>,
    /// Entries not pulled: attestations and other `unknown/unknown` ones.
    pub skipped: usize,
}

/// `pull --all-platforms REF`: every platform of the index `text` names, each image
/// installed, then the index stored under the reference (which names this machine's
/// platform's image, else the first). A reference to a single image is pulled as
/// [`pull`] does. Nothing in the store changes unless every image is good.
pub fn pull_all(
    store: &Store,
    text: &str,
    options: &Options,
) -> Result<PulledIndex, RegistryError> {
    let reference = parse_reference(text)?;
    import::unchanged_on_error(store, || {
        let before: std::collections::BTreeSet<String> =
            store.read_index()?.images.into_keys().collect();
        let mut installed = Vec::new();
        let result = pull_all_checked(store, &reference, options, &mut installed);
        if result.is_err() {
            forget_new(store, &before, &installed);
        }
        result
    })
}

fn pull_all_checked(
    store: &Store,
    reference: &Reference,
    options: &Options,
    installed: &mut Vec<Digest>,
) -> Result<PulledIndex, RegistryError> {
    let client = Client::connect(&reference.domain, &reference.path, "pull", options)?;
    let target = target_of(reference);
    let expected = match target.strip_prefix("sha256:") {
        Some(_) => Some(Digest::parse(&target).map_err(RegistryError::Invalid)?),
        None => None,
    };
    let what = format!("manifest {target}");
    let (bytes, kind, digest) =
        manifest::fetch(&client, &reference.path, &target, expected.as_ref(), &what)?;
    let image = reference.familiar();
    if kind != spec::OCI_INDEX && kind != spec::DOCKER_LIST {
        // One image: what it is for, its configuration says.
        let resolved = manifest::resolve(&client, &reference.path, &target, &Platform::host())?;
        let pulled = pull_image(
            store,
            &client,
            reference,
            &resolved,
            None,
            Some(&image),
            options,
        )?;
        remember(store, &[(&pulled.id, &resolved)], None)?;
        let config = store.config_bytes(pulled.id.hex())?;
        let platform = config_platform(&config).unwrap_or_else(Platform::host);
        return Ok(PulledIndex {
            reference: image,
            digest: pulled.manifest.clone(),
            images: vec![(platform, pulled)],
            skipped: 0,
        });
    }
    let doc: spec::Index = serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::Invalid(format!("{what}: not a valid index: {e}")))?;
    let mut images = Vec::new();
    let mut resolved_all = Vec::new();
    let mut skipped = 0;
    for desc in &doc.manifests {
        // Attestations and signatures ride in indexes as `unknown/unknown`.
        if desc
            .platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" || p.architecture == "unknown")
        {
            skipped += 1;
            continue;
        }
        let wanted = Digest::parse(&desc.digest)
            .map_err(|e| RegistryError::Invalid(format!("{what}: index: {e}")))?;
        let any = desc.platform.clone().unwrap_or_else(Platform::host);
        let resolved = manifest::resolve(&client, &reference.path, &wanted.to_string(), &any)?;
        if !options.quiet {
            eprintln!("{image}: {any}");
        }
        let pulled = pull_image(store, &client, reference, &resolved, None, None, options)?;
        installed.push(pulled.id.clone());
        let platform = match &desc.platform {
            Some(p) => p.clone(),
            None => config_platform(&store.config_bytes(pulled.id.hex())?)
                .unwrap_or_else(Platform::host),
        };
        images.push((platform, pulled));
        resolved_all.push(resolved);
    }
    if images.is_empty() {
        return Err(RegistryError::Invalid(format!(
            "{what}: an index with no image of any platform"
        )));
    }
    let host = Platform::host();
    let named = images
        .iter()
        .find(|(p, _)| p.matches(&host))
        .unwrap_or(&images[0])
        .1
        .id
        .clone();
    let manifests: Vec<(&Digest, &manifest::Resolved)> = images
        .iter()
        .map(|(_, p)| &p.id)
        .zip(&resolved_all)
        .collect();
    let entries = images
        .iter()
        .map(|(platform, pulled)| IndexEntry {
            platform: platform.clone(),
            id: pulled.id.hex().to_string(),
        })
        .collect();
    remember(
        store,
        &manifests,
        Some(StoredIndex {
            reference: &image,
            bytes: &bytes,
            media_type: &kind,
            entries,
            skipped,
            named: &named,
        }),
    )?;
    Ok(PulledIndex {
        reference: image,
        digest,
        images,
        skipped,
    })
}

/// The platform an image configuration names.
pub fn config_platform(config: &[u8]) -> Option<Platform> {
    let doc: serde_json::Value = serde_json::from_slice(config).ok()?;
    match (doc["os"].as_str(), doc["architecture"].as_str()) {
        (Some(os), Some(architecture)) if !os.is_empty() && !architecture.is_empty() => {
            Some(Platform {
                os: os.to_string(),
                architecture: architecture.to_string(),
                variant: doc["variant"].as_str().map(str::to_string),
            })
        }
        _ => None,
    }
}

/// An index `pull --all-platforms` stores under a reference.
struct StoredIndex<'a> {
    reference: &'a str,
    bytes: &'a [u8],
    media_type: &'a str,
    entries: Vec<IndexEntry>,
    skipped: usize,
    /// The image the reference names.
    named: &'a Digest,
}

/// Keeps, under the store's lock, the manifest each image was pulled with and, for
/// `--all-platforms`, the index and the reference naming it.
fn remember(
    store: &Store,
    manifests: &[(&Digest, &manifest::Resolved)],
    index: Option<StoredIndex>,
) -> Result<(), RegistryError> {
    let lock = store.lock()?;
    let mut doc = store.read_index()?;
    for (id, resolved) in manifests {
        if !doc.images.contains_key(id.hex()) {
            return Err(RegistryError::Invalid(format!(
                "image {}: removed from the store while it was pulled",
                id.short()
            )));
        }
        let digest = store.write_document(&resolved.bytes)?;
        doc.manifests.insert(
            id.hex().to_string(),
            DocumentRecord {
                digest: digest.to_string(),
                media_type: resolved.media_type.clone(),
            },
        );
    }
    if let Some(index) = index {
        let digest = store.write_document(index.bytes)?;
        let key = crate::image::store::normalize_reference(index.reference);
        doc.refs.insert(key.clone(), index.named.hex().to_string());
        doc.indexes.insert(
            key,
            IndexRecord {
                document: DocumentRecord {
                    digest: digest.to_string(),
                    media_type: index.media_type.to_string(),
                },
                images: index.entries,
                skipped: index.skipped,
            },
        );
    }
    store.write_index(&doc, &lock)?;
    store.collect_garbage(&mut doc, &lock)?;
    Ok(())
}

/// Removes the images a failed `--all-platforms` pull installed that were not in the
/// store before it and that nothing names.
fn forget_new(store: &Store, before: &std::collections::BTreeSet<String>, ids: &[Digest]) {
    let Ok(lock) = store.lock() else { return };
    let Ok(mut doc) = store.read_index() else {
        return;
    };
    let named: std::collections::BTreeSet<String> = doc.refs.values().cloned().collect();
    for id in ids {
        if !before.contains(id.hex()) && !named.contains(id.hex()) {
            doc.images.remove(id.hex());
        }
    }
    let _ = store.collect_garbage(&mut doc, &lock);
}

/// Pulls the image `resolved` names: its configuration (checked against `check`),
/// the layers the store lacks, then installs it, named `name`.
fn pull_image(
    store: &Store,
    client: &Client,
    reference: &Reference,
    resolved: &manifest::Resolved,
    check: Option<&Platform>,
    name: Option<&str>,
    options: &Options,
) -> Result<Pulled, RegistryError> {
    let image = reference.familiar();
    let config_desc = &resolved.manifest.config;
    let config_digest = Digest::parse(&config_desc.digest)
        .map_err(|e| RegistryError::Invalid(format!("{image}: config {e}")))?;
    let config = blob::fetch_small(
        client,
        &reference.path,
        &config_digest,
        descriptor_size(config_desc)?,
        "config",
    )?;
    if let Some(wanted) = check {
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
                    client,
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
    let id = import::install(store, &staging, ready, &config, name, owners)?;
    Ok(Pulled {
        reference: image,
        id,
        manifest: resolved.digest.clone(),
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
