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

/// Pushes image `source` of the store of `home` as `dest` (default: `source`).
pub fn push(
    home: &Path,
    source: &str,
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
    // Checked before anything is written or any registry is asked.
    let index = store.read_index()?;
    let (id, record) = store.resolve(&index, source)?;
    let staging = store.staging()?;
    let owners = Owners::current();
    let mut layers = Vec::new();
    // (descriptor, file) of every blob, the configuration last.
    let mut files = Vec::new();
    let mut diff_ids = Vec::new();
    for (n, hex) in record.layers.iter().enumerate() {
        let kept = index.blobs.get(hex).and_then(|blob| {
            let digest = Digest::parse(&blob.digest).ok()?;
            let path = store.blob_path(&digest);
            path.is_file().then_some((blob, path))
        });
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
            None => pack_layer(&store.layer_path(hex), staging.path(), n, owners)?,
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
        let path = staging.path().join("config.json");
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

    let client = Client::connect(&target.domain, &target.path, "pull,push", options)?;
    let mut uploaded = 0;
    for (desc, path) in &files {
        let digest = Digest::parse(&desc.digest).map_err(RegistryError::Invalid)?;
        if upload(&client, &target.path, &digest, path)? {
            uploaded += 1;
        }
        if !options.quiet {
            eprintln!("{}: pushed", digest.short());
        }
    }
    let url = format!("{}/manifests/{tag}", target.path);
    let response = client.send(
        "PUT",
        &url,
        &[("Content-Type", spec::OCI_MANIFEST)],
        &Payload::Bytes(&bytes),
    )?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(client.status_error(&format!("manifest {tag}"), status, response));
    }
    Ok(Pushed {
        reference: target.familiar(),
        digest: Digest::of(&bytes),
        blobs: files.len(),
        uploaded,
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
