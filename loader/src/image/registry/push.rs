//! `capsule push REF [DEST]`: an image of the store to a registry. An image pulled
//! goes as it was pulled: its manifest and blobs as the store kept them (the same
//! digests; an index `pull --all-platforms` stored goes whole, the same index
//! digest). Otherwise each layer goes as the blob it was imported as, or, for a
//! layer the store has no blob of (committed, built), packed again and gzipped in the
//! store's staging area; the configuration goes as stored unless a packed layer
//! changed its diff id, and the manifest is a new OCI one.
//!
//! Each blob the registry does not have (`HEAD`) is uploaded: `POST`, then the bytes,
//! then `PUT ?digest=`. Blobs over a chunk (32 MiB, `CAPSULE_PUSH_CHUNK_SIZE`) go in
//! `PATCH` chunks with `Content-Range`; a chunk broken off is resumed where the
//! registry says it stopped (`GET` on the upload, its `Range`), and a registry that
//! refuses `PATCH` gets the blob whole. The manifest is put under the tag last, so
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

/// Blobs larger than this go in chunks of this size (`PATCH`), unless
/// `CAPSULE_PUSH_CHUNK_SIZE` (bytes) says another size.
const CHUNK_SIZE: u64 = 32 << 20;
/// How many times an interrupted chunked upload is resumed.
const RESUMES: u32 = 5;

/// The chunk size: `CAPSULE_PUSH_CHUNK_SIZE`, else [`CHUNK_SIZE`].
fn chunk_size() -> u64 {
    std::env::var("CAPSULE_PUSH_CHUNK_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(CHUNK_SIZE)
}

/// Uploads one blob unless the registry has it; whether it was uploaded. A blob
/// larger than a chunk goes in chunks (`PATCH` with `Content-Range`), resumed where
/// the registry says it stopped when one breaks off; a registry that refuses
/// chunks gets it whole (`PUT`). The `PUT ?digest=` ends the upload: the registry
/// checks the digest.
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
    let size = fs::metadata(file).map_err(io_error(file))?.len();
    let chunk = chunk_size();
    let location = start_upload(client, path, &what)?;
    if size > chunk {
        match upload_chunks(client, &location, file, size, chunk, &what)? {
            Some(location) => {
                finish_upload(client, &location, digest, &Payload::Bytes(&[]), &what)?;
                return Ok(true);
            }
            None => {
                log::info!("{what}: the registry refuses chunked uploads; sending it whole");
                let location = start_upload(client, path, &what)?;
                finish_upload(client, &location, digest, &Payload::File(file), &what)?;
                return Ok(true);
            }
        }
    }
    finish_upload(client, &location, digest, &Payload::File(file), &what)?;
    Ok(true)
}

/// `POST …/blobs/uploads/`: the upload's `Location`.
fn start_upload(client: &Client, path: &str, what: &str) -> Result<String, RegistryError> {
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
    location_of(&start)
        .ok_or_else(|| RegistryError::Invalid(format!("upload of {what}: no Location")))
}

fn location_of(response: &ureq::http::Response<ureq::Body>) -> Option<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The offset after the last byte a `Range: 0-LAST` (docker's form, or with `bytes=`)
/// says the registry has; 0 when it has none (`0-0` of an empty upload is read as 0,
/// which at worst sends one byte again and is refused with 416, then asked again).
fn range_end(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let text = response.headers().get("range")?.to_str().ok()?.trim();
    let text = text.strip_prefix("bytes=").unwrap_or(text);
    let (first, last) = text.split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    Some(if first == 0 && last == 0 { 0 } else { last + 1 })
}

/// Sends `file` in chunks to the upload at `location`: the location to finish it
/// at, or `None` when the registry refuses chunks before taking any.
fn upload_chunks(
    client: &Client,
    location: &str,
    file: &Path,
    size: u64,
    chunk: u64,
    what: &str,
) -> Result<Option<String>, RegistryError> {
    use std::os::unix::fs::FileExt;
    let input = File::open(file).map_err(io_error(file))?;
    let mut location = location.to_string();
    let mut buf = vec![0u8; usize::try_from(chunk.min(size)).unwrap_or(usize::MAX)];
    let mut offset = 0u64;
    let mut resumes = 0;
    while offset < size {
        let len = chunk.min(size - offset);
        let part = &mut buf[..len as usize];
        input.read_exact_at(part, offset).map_err(io_error(file))?;
        let range = format!("{offset}-{}", offset + len - 1);
        let sent = client.send(
            "PATCH",
            &location,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            &Payload::Bytes(part),
        );
        let status = sent.as_ref().ok().map(|r| r.status().as_u16());
        match (sent, status) {
            (Ok(response), Some(202)) => {
                if let Some(next) = location_of(&response) {
                    location = next;
                }
                // What the registry says it has, else what was sent.
                offset = range_end(&response)
                    .filter(|&end| end > offset && end <= size)
                    .unwrap_or(offset + len);
            }
            // Chunks not supported (Method Not Allowed, Not Implemented, …).
            (Ok(_), Some(400 | 404 | 405 | 415 | 501)) if offset == 0 => return Ok(None),
            // Broken off, or not where the registry is: ask it where it is.
            (Err(RegistryError::Unreachable { .. }), _) | (Ok(_), Some(416 | 500..=599))
                if resumes < RESUMES =>
            {
                resumes += 1;
                let (at, next) = upload_status(client, &location, what)?;
                log::info!("{what}: upload interrupted; resuming at byte {at} of {size}");
                offset = at;
                location = next.unwrap_or(location);
            }
            (Err(e), _) => return Err(e),
            (Ok(response), _) => {
                let status = response.status().as_u16();
                return Err(client.status_error(&format!("upload of {what}"), status, response));
            }
        }
    }
    Ok(Some(location))
}

/// `GET` on an upload: how many bytes the registry has, and the upload's location.
fn upload_status(
    client: &Client,
    location: &str,
    what: &str,
) -> Result<(u64, Option<String>), RegistryError> {
    let response = client.send("GET", location, &[], &Payload::None)?;
    let status = response.status().as_u16();
    if status != 204 && status != 202 {
        return Err(client.status_error(&format!("upload of {what}"), status, response));
    }
    Ok((range_end(&response).unwrap_or(0), location_of(&response)))
}

/// `PUT LOCATION?digest=…` with what is left of the blob (all of it, or nothing
/// after chunks).
fn finish_upload(
    client: &Client,
    location: &str,
    digest: &Digest,
    payload: &Payload,
    what: &str,
) -> Result<(), RegistryError> {
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = format!(
        "{location}{sep}digest={}",
        digest.to_string().replace(':', "%3A")
    );
    let done = client.send(
        "PUT",
        &put,
        &[("Content-Type", "application/octet-stream")],
        payload,
    )?;
    let status = done.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(client.status_error(&format!("upload of {what}"), status, done));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(value: &str) -> ureq::http::Response<ureq::Body> {
        ureq::http::Response::builder()
            .header("Range", value)
            .body(ureq::Body::builder().data(""))
            .unwrap()
    }

    #[test]
    fn upload_ranges_are_read_in_both_forms() {
        assert_eq!(range_end(&with_range("0-1023")), Some(1024));
        assert_eq!(range_end(&with_range("bytes=0-99")), Some(100));
        assert_eq!(range_end(&with_range("0-0")), Some(0));
        assert_eq!(range_end(&with_range("junk")), None);
    }
}
