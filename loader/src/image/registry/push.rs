//! `capsule push REF [DEST]`: an image of the store to a registry. Each layer goes as
//! the blob it was pulled or imported as (same digest), or, for a layer the store
//! has no blob of (committed, built), packed again and gzipped in the store's staging
//! area; the configuration goes as stored unless a packed layer changed its diff id.
//! Then each blob the registry does not have (`HEAD`) is uploaded
//! whole (`POST` then `PUT ?digest=`), and the manifest is put under the tag last, so
//! the tag never names an image with missing blobs.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::client::{Client, Payload};
use super::{Options, RegistryError};
use crate::image::digest::{Digest, HashingWriter};
use crate::image::owners::Owners;
use crate::image::pack;
use crate::image::spec::{self, Compression, Manifest};
use crate::image::store::Store;

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Where: `host:5000/app:1`.
    pub reference: String,
    /// The digest of the manifest pushed (what `pull REF@DIGEST` takes).
    pub digest: Digest,
    pub blobs: usize,
    /// Blobs the registry did not have.
    pub uploaded: usize,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
    move |error| RegistryError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Pushes image `source` of the store of `home` as `dest` (default: `source`);
/// with `others`, images of other platforms, an OCI index of them all goes under
/// `dest`'s tag (each image's manifest by its digest first).
pub fn push(
    home: &Path,
    source: &str,
    others: &[String],
    dest: Option<&str>,
    options: &Options,
) -> Result<Pushed, RegistryError> {
    let target = super::pull::parse_reference(dest.unwrap_or(source))?;
    let tag = target.tag.clone().ok_or_else(|| {
        RegistryError::Invalid(format!(
            "{}: a push needs a tag (name:tag), not only a digest",
            target.familiar()
        ))
    })?;
    let store = Store::new(home);
    // Everything is checked and packed before any registry is asked.
    let index = store.read_index()?;
    let staging = store.staging()?;
    let owners = Owners::current();
    // An index `pull --all-platforms` stored goes whole: its images, then the index.
    let stored_index = index.index_of(source).map(|(_, record)| record.clone());
    if let (Some(_), [other, ..]) = (&stored_index, others) {
        return Err(RegistryError::Invalid(format!(
            "{source} is a multi-platform index (pull --all-platforms): --with {other} cannot be added to it; push its platforms' images by id instead"
        )));
    }
    let sources: Vec<String> = match &stored_index {
        Some(record) => record.images.iter().map(|e| e.id.clone()).collect(),
        None => std::iter::once(source.to_string())
            .chain(others.iter().cloned())
            .collect(),
    };
    let mut images = Vec::new();
    for (n, image) in sources.iter().map(String::as_str).enumerate() {
        let dir = staging.path().join(n.to_string());
        fs::create_dir(&dir).map_err(io_error(&dir))?;
        let mut prepared = prepare(&store, &index, image, &dir, owners)?;
        if let Some(record) = &stored_index {
            // The platform the index gave (the configuration may name none).
            prepared.platform = Some(record.images[n].platform.clone());
            images.push(prepared);
            continue;
        }
        if others.is_empty() {
            images.push(prepared);
            continue;
        }
        let platform = prepared.platform.clone().ok_or_else(|| {
            RegistryError::Invalid(format!(
                "{image}: its configuration names no os and architecture, which an index needs"
            ))
        })?;
        if let Some(twin) = images
            .iter()
            .find(|i: &&Prepared| i.platform.as_ref() == Some(&platform))
        {
            return Err(RegistryError::Invalid(format!(
                "{image}: the same platform ({platform}) as {}: an index has one image per platform",
                twin.source
            )));
        }
        images.push(prepared);
    }

    let client = Client::connect(&target.domain, &target.path, "pull,push", options)?;
    let mut uploaded = 0;
    let mut blobs = 0;
    for image in &images {
        for (desc, path) in &image.files {
            let digest = Digest::parse(&desc.digest).map_err(RegistryError::Invalid)?;
            if upload(&client, &target.path, &digest, path)? {
                uploaded += 1;
            }
            blobs += 1;
            if !options.quiet {
                eprintln!("{}: pushed", digest.short());
            }
        }
    }
    let put = |reference: &str, media_type: &str, bytes: &[u8]| {
        let url = format!("{}/manifests/{reference}", target.path);
        let response = client.send(
            "PUT",
            &url,
            &[("Content-Type", media_type)],
            &Payload::Bytes(bytes),
        )?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(client.status_error(&format!("manifest {reference}"), status, response));
        }
        Ok(())
    };
    // The index as pulled when each of its manifests goes as pulled too (the same
    // digests all the way up).
    let verbatim = stored_index
        .as_ref()
        .filter(|record| record.skipped == 0 && images.iter().all(|i| i.verbatim))
        .map(|record| -> Result<_, RegistryError> {
            let digest = Digest::parse(&record.document.digest).map_err(RegistryError::Invalid)?;
            let path = store.blob_path(&digest);
            let bytes = fs::read(&path).map_err(io_error(&path))?;
            if Digest::of(&bytes) != digest {
                return Err(RegistryError::Invalid(format!(
                    "{}: the stored index does not match its digest",
                    path.display()
                )));
            }
            Ok((bytes, record.document.media_type.clone()))
        })
        .transpose()?;
    let bytes = match (images.as_slice(), verbatim) {
        (_, Some((bytes, media_type))) => {
            for image in &images {
                let digest = Digest::of(&image.manifest);
                put(&digest.to_string(), &image.media_type, &image.manifest)?;
            }
            put(&tag, &media_type, &bytes)?;
            bytes
        }
        ([only], None) if stored_index.is_none() => {
            put(&tag, &only.media_type, &only.manifest)?;
            only.manifest.clone()
        }
        _ => {
            let mut manifests = Vec::new();
            for image in &images {
                let digest = Digest::of(&image.manifest);
                put(&digest.to_string(), &image.media_type, &image.manifest)?;
                manifests.push(spec::Descriptor {
                    media_type: image.media_type.clone(),
                    digest: digest.to_string(),
                    size: image.manifest.len() as i64,
                    platform: image.platform.clone(),
                    annotations: None,
                });
            }
            let doc = spec::Index {
                schema_version: 2,
                media_type: Some(spec::OCI_INDEX.to_string()),
                manifests,
            };
            let bytes =
                serde_json::to_vec(&doc).map_err(|e| RegistryError::Invalid(e.to_string()))?;
            put(&tag, spec::OCI_INDEX, &bytes)?;
            bytes
        }
    };
    Ok(Pushed {
        reference: target.familiar(),
        digest: Digest::of(&bytes),
        blobs,
        uploaded,
    })
}

/// One image ready to push: its blobs (the configuration last), its manifest and
/// the platform its configuration names.
struct Prepared {
    source: String,
    files: Vec<(spec::Descriptor, PathBuf)>,
    manifest: Vec<u8>,
    media_type: String,
    platform: Option<spec::Platform>,
    /// The manifest is the one the image was pulled with.
    verbatim: bool,
}

/// The image `id` as it was pulled: the manifest the store kept, when the store still
/// has every blob it names (else `None`: the manifest is made again).
fn as_pulled(
    store: &Store,
    index: &crate::image::store::StoreIndex,
    source: &str,
    id: &str,
) -> Result<Option<Prepared>, RegistryError> {
    let Some((bytes, media_type, manifest)) = store.pulled_manifest(index, id) else {
        return Ok(None);
    };
    let files = manifest
        .layers
        .iter()
        .chain([&manifest.config])
        .map(|desc| {
            let digest = Digest::parse(&desc.digest).map_err(RegistryError::Invalid)?;
            Ok((desc.clone(), store.blob_path(&digest)))
        })
        .collect::<Result<_, RegistryError>>()?;
    let config = store.config_bytes(id)?;
    Ok(Some(Prepared {
        source: source.to_string(),
        files,
        manifest: bytes,
        media_type,
        platform: super::pull::config_platform(&config),
        verbatim: true,
    }))
}

/// The blobs and manifest of image `source`; layers without a kept blob are packed
/// into `staging`.
fn prepare(
    store: &Store,
    index: &crate::image::store::StoreIndex,
    source: &str,
    staging: &Path,
    owners: Owners,
) -> Result<Prepared, RegistryError> {
    let (id, record) = store.resolve(index, source)?;
    if let Some(pulled) = as_pulled(store, index, source, &id)? {
        return Ok(pulled);
    }
    let mut layers = Vec::new();
    // (descriptor, file) of every blob, the configuration last.
    let mut files = Vec::new();
    let mut diff_ids = Vec::new();
    for (n, hex) in record.layers.iter().enumerate() {
        let kept = store.kept_blob(index, hex);
        let (desc, path, diff_id) = match kept {
            // As pulled or imported: the same digest on the registry.
            Some((blob, path)) => (
                spec::Descriptor {
                    media_type: blob.media_type.clone(),
                    digest: blob.digest.clone(),
                    size: i64::try_from(blob.size).unwrap_or(i64::MAX),
                    platform: None,
                    annotations: None,
                },
                path,
                format!("sha256:{hex}"),
            ),
            None => pack_layer(&store.layer_path(hex), staging, n, owners)?,
        };
        layers.push(desc.clone());
        files.push((desc, path));
        diff_ids.push(diff_id);
    }
    // The configuration as the store has it (the image keeps its id), unless a layer
    // packed again came out with another diff id.
    let stored = store.config_bytes(&id)?;
    let mut config: serde_json::Value = serde_json::from_slice(&stored)
        .map_err(|e| RegistryError::Invalid(format!("image {id}: bad configuration: {e}")))?;
    let (config_bytes, config_path) = if config["rootfs"]["diff_ids"] == serde_json::json!(diff_ids)
    {
        let digest = Digest::from_hex(&id)
            .ok_or_else(|| RegistryError::Invalid(format!("{id}: not an image id")))?;
        (stored, store.blob_path(&digest))
    } else {
        config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
        let bytes =
            serde_json::to_vec(&config).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let path = staging.join("config.json");
        fs::write(&path, &bytes).map_err(io_error(&path))?;
        (bytes, path)
    };
    let config_desc = spec::Descriptor {
        media_type: spec::OCI_CONFIG.to_string(),
        digest: Digest::of(&config_bytes).to_string(),
        size: config_bytes.len() as i64,
        platform: None,
        annotations: None,
    };
    files.push((config_desc.clone(), config_path));
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(spec::OCI_MANIFEST.to_string()),
        config: config_desc,
        layers,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| RegistryError::Invalid(e.to_string()))?;
    let platform = super::pull::config_platform(&config_bytes);
    Ok(Prepared {
        source: source.to_string(),
        files,
        manifest: bytes,
        media_type: spec::OCI_MANIFEST.to_string(),
        platform,
        verbatim: false,
    })
}

/// Packs the unpacked layer `dir` as the `n`th gzipped blob in `staging`: its
/// descriptor, file and diff id (the digest of the tar).
fn pack_layer(
    dir: &Path,
    staging: &Path,
    n: usize,
    owners: Owners,
) -> Result<(spec::Descriptor, PathBuf, String), RegistryError> {
    let part = staging.join(format!("layer-{n}.tar.gz"));
    let out = File::create(&part).map_err(io_error(&part))?;
    let gzip = flate2::write::GzEncoder::new(
        HashingWriter::new(BufWriter::new(out)),
        flate2::Compression::default(),
    );
    let tar = pack::pack(dir, HashingWriter::new(gzip), owners).map_err(io_error(dir))?;
    let (gzip, diff_id, _) = tar.finish().map_err(io_error(&part))?;
    let (_, digest, size) = gzip
        .finish()
        .and_then(HashingWriter::finish)
        .map_err(io_error(&part))?;
    let desc = spec::Descriptor {
        media_type: Compression::Gzip.oci_layer_type(),
        digest: digest.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        platform: None,
        annotations: None,
    };
    Ok((desc, part, diff_id.to_string()))
}

/// Uploads one blob unless the registry has it; whether it was uploaded.
fn upload(
    client: &Client,
    path: &str,
    digest: &Digest,
    file: &Path,
) -> Result<bool, RegistryError> {
    let what = format!("blob {digest}");
    let blob_url = format!("{path}/blobs/{digest}");
    let head = client.send("HEAD", &blob_url, &[], &Payload::None)?;
    match head.status().as_u16() {
        200..=299 => return Ok(false),
        404 => {}
        status => return Err(client.status_error(&what, status, head)),
    }
    let start = client.send(
        "POST",
        &format!("{path}/blobs/uploads/"),
        &[("Content-Length", "0")],
        &Payload::None,
    )?;
    let status = start.status().as_u16();
    if status != 202 {
        return Err(client.status_error(&format!("upload of {what}"), status, start));
    }
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Invalid(format!("upload of {what}: no Location")))?
        .to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = format!(
        "{location}{sep}digest={}",
        digest.to_string().replace(':', "%3A")
    );
    let done = client.send(
        "PUT",
        &put,
        &[("Content-Type", "application/octet-stream")],
        &Payload::File(file),
    )?;
    let status = done.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(client.status_error(&format!("upload of {what}"), status, done));
    }
    Ok(true)
}
