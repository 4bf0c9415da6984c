//! `capsule push REF [DEST]`: an image of the store to a registry. The image is
//! written as an OCI layout first (`image export`, in the store's staging area), its
//! layers gzipped; then each blob the registry does not have (`HEAD`) is uploaded
//! whole (`POST` then `PUT ?digest=`), and the manifest is put under the tag last, so
//! the tag never names an image with missing blobs.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::Path;

use super::client::{Client, Payload};
use super::{Options, RegistryError};
use crate::image::digest::{Digest, HashingWriter};
use crate::image::export;
use crate::image::spec::{self, Index, Manifest};
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
    store.resolve(&store.read_index()?, source)?;
    let staging = store.staging()?;
    let layout = staging.path().join("oci");
    export::export(home, source, &layout)?;
    let blobs = layout.join("blobs/sha256");
    let read = |path: &Path| fs::read(path).map_err(io_error(path));
    let index: Index = serde_json::from_slice(&read(&layout.join("index.json"))?)
        .map_err(|e| RegistryError::Invalid(format!("export of {source}: {e}")))?;
    let first = index
        .manifests
        .first()
        .ok_or_else(|| RegistryError::Invalid(format!("export of {source}: names no manifest")))?;
    let first = Digest::parse(&first.digest).map_err(RegistryError::Invalid)?;
    let mut manifest: Manifest = serde_json::from_slice(&read(&blobs.join(first.hex()))?)
        .map_err(|e| RegistryError::Invalid(format!("export of {source}: {e}")))?;
    for layer in &mut manifest.layers {
        gzip_layer(&blobs, layer)?;
    }
    let bytes = serde_json::to_vec(&manifest).map_err(|e| RegistryError::Invalid(e.to_string()))?;

    let client = Client::connect(&target.domain, &target.path, "pull,push", options)?;
    let mut uploaded = 0;
    let descriptors: Vec<&spec::Descriptor> = manifest
        .layers
        .iter()
        .chain(std::iter::once(&manifest.config))
        .collect();
    for desc in &descriptors {
        let digest = Digest::parse(&desc.digest).map_err(RegistryError::Invalid)?;
        if upload(&client, &target.path, &digest, &blobs.join(digest.hex()))? {
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
        blobs: descriptors.len(),
        uploaded,
    })
}

/// Replaces the uncompressed layer `desc` names in `blobs` by its gzip.
fn gzip_layer(blobs: &Path, desc: &mut spec::Descriptor) -> Result<(), RegistryError> {
    let digest = Digest::parse(&desc.digest).map_err(RegistryError::Invalid)?;
    let plain = blobs.join(digest.hex());
    let part = blobs.join(format!("{}.gz", digest.hex()));
    let mut input = BufReader::new(File::open(&plain).map_err(io_error(&plain))?);
    let out = File::create(&part).map_err(io_error(&part))?;
    let mut encoder = flate2::write::GzEncoder::new(
        HashingWriter::new(BufWriter::new(out)),
        flate2::Compression::default(),
    );
    std::io::copy(&mut input, &mut encoder).map_err(io_error(&part))?;
    let (_, gz_digest, size) = encoder
        .finish()
        .and_then(HashingWriter::finish)
        .map_err(io_error(&part))?;
    let target = blobs.join(gz_digest.hex());
    fs::rename(&part, &target).map_err(io_error(&target))?;
    fs::remove_file(&plain).map_err(io_error(&plain))?;
    desc.media_type = format!("{}+gzip", spec::OCI_LAYER);
    desc.digest = gz_digest.to_string();
    desc.size = i64::try_from(size).unwrap_or(i64::MAX);
    Ok(())
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
