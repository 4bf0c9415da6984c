//! `capsule image export REF PATH`: one image as an OCI image layout (a directory
//! umoci, skopeo and podman read) or as a docker archive (`docker load`, skopeo's
//! `docker-archive:`; laid out as docker 25 saves: the OCI layout plus
//! `manifest.json`, in one tar).
//!
//! Layers go as the blobs the store kept (as pulled or imported, checked against
//! their digests while copied), so the layer digests, the configuration and so the
//! image id survive export → import → push; an image pulled keeps its manifest too
//! when that is an OCI one. A layer with no kept blob (committed, built) is packed
//! uncompressed from the unpacked layer; only when that tar differs from the one
//! the layer was made from is the configuration's `rootfs.diff_ids` rewritten (and
//! the image id of the export differs from the store's).

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::Path;

use serde_json::{json, Value};

use super::digest::{Digest, HashingWriter};
use super::owners::{self, Owners};
use super::pack;
use super::spec::{self, Compression};
use super::store::Store;
use super::ImageError;

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An OCI image layout directory.
    #[default]
    Oci,
    /// A tar `docker load` reads.
    DockerArchive,
}

/// Writes the image `reference` as a new OCI layout (or docker archive) at `dest`;
/// returns the manifest's digest.
pub fn export(
    home: &Path,
    reference: &str,
    dest: &Path,
    format: Format,
) -> Result<Digest, ImageError> {
    let invalid = ImageError::Invalid;
    if fs::symlink_metadata(dest).is_ok() {
        return Err(invalid(format!("{}: already exists", dest.display())));
    }
    let store = Store::new(home);
    let index = store.read_index()?;
    let (id, record) = store.resolve(&index, reference)?;
    let stored_config = store.config_bytes(&id)?;
    let mut config: Value = serde_json::from_slice(&stored_config)
        .map_err(|e| invalid(format!("image {id}: bad configuration: {e}")))?;
    let name = index
        .refs
        .iter()
        .find(|(r, i)| **i == id && (r.as_str() == reference || r.starts_with(reference)))
        .or_else(|| index.refs.iter().find(|(_, i)| **i == id))
        .map(|(r, _)| r.clone());
    let tag = name
        .as_deref()
        .and_then(|r| r.rsplit_once(':').map(|(_, t)| t.to_string()))
        .unwrap_or_else(|| "latest".into());

    // Built beside the destination, then renamed: a failed export leaves nothing.
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = dest
        .file_name()
        .ok_or_else(|| invalid(format!("{}: not a directory name", dest.display())))?;
    let temp = parent.join(format!(
        ".{}.capsule-export-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ImageError::Io { path, error }
    };
    let guard = TempDir(temp.clone());
    let blobs = temp.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io(&blobs))?;
    let owners = Owners::current();

    // The manifest as pulled, when it is an OCI one and all its blobs are kept.
    let pulled = store
        .pulled_manifest(&index, &id)
        .filter(|(_, media_type, _)| media_type == spec::OCI_MANIFEST);
    let (manifest_bytes, layer_files) = match pulled {
        Some((bytes, _, manifest)) => {
            let mut files = Vec::new();
            for desc in manifest.layers.iter().chain([&manifest.config]) {
                let digest = Digest::parse(&desc.digest).map_err(invalid)?;
                copy_verified(&store.blob_path(&digest), &blobs, &digest)?;
                files.push(desc.digest.clone());
            }
            files.pop();
            (bytes, files)
        }
        None => {
            let mut layer_descs = Vec::new();
            let mut diff_ids = Vec::new();
            for (n, hex) in record.layers.iter().enumerate() {
                let (desc, diff_id) = match store.kept_blob(&index, hex) {
                    Some((blob, path)) => {
                        let digest = Digest::parse(&blob.digest).map_err(invalid)?;
                        copy_verified(&path, &blobs, &digest)?;
                        // The OCI name of the same compression (a docker one's too).
                        let media_type = Compression::of_layer_type(&blob.media_type)
                            .map_or(blob.media_type.clone(), Compression::oci_layer_type);
                        (
                            json!({"mediaType": media_type, "digest": blob.digest, "size": blob.size}),
                            format!("sha256:{hex}"),
                        )
                    }
                    None => {
                        let layer = store.layer_path(hex);
                        let part = blobs.join(format!("layer-{n}.part"));
                        let file = File::create(&part).map_err(io(&part))?;
                        let writer =
                            pack::pack(&layer, HashingWriter::new(BufWriter::new(file)), owners)
                                .map_err(io(&layer))?;
                        let (_, digest, size) = writer.finish().map_err(io(&part))?;
                        fs::rename(&part, blobs.join(digest.hex())).map_err(io(&part))?;
                        (
                            json!({"mediaType": spec::OCI_LAYER, "digest": digest.to_string(), "size": size}),
                            digest.to_string(),
                        )
                    }
                };
                layer_descs.push(desc);
                diff_ids.push(Value::String(diff_id));
            }
            let config_desc = if config["rootfs"]["diff_ids"] == Value::Array(diff_ids.clone()) {
                // Unchanged: the stored bytes, so the image keeps its id.
                write_bytes(&blobs, &stored_config, spec::OCI_CONFIG)?
            } else {
                config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
                let bytes = serde_json::to_vec(&config).map_err(|e| invalid(e.to_string()))?;
                write_bytes(&blobs, &bytes, spec::OCI_CONFIG)?
            };
            let files = layer_descs
                .iter()
                .map(|d| d["digest"].as_str().unwrap_or_default().to_string())
                .collect();
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": spec::OCI_MANIFEST,
                "config": config_desc,
                "layers": layer_descs,
            });
            let bytes = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
            (bytes, files)
        }
    };
    let mut manifest_desc = write_bytes(&blobs, &manifest_bytes, spec::OCI_MANIFEST)?;
    let manifest_digest = Digest::of(&manifest_bytes);
    manifest_desc["annotations"] = json!({ spec::REF_NAME: tag });
    let index_doc = json!({
        "schemaVersion": 2,
        "mediaType": spec::OCI_INDEX,
        "manifests": [manifest_desc],
    });
    let write = |name: &str, value: &Value| {
        let path = temp.join(name);
        fs::write(&path, serde_json::to_vec(value).unwrap_or_default()).map_err(io(&path))
    };
    write("index.json", &index_doc)?;
    write("oci-layout", &json!({"imageLayoutVersion": "1.0.0"}))?;
    match format {
        Format::Oci => fs::rename(&temp, dest).map_err(io(dest))?,
        Format::DockerArchive => {
            let manifest: Value =
                serde_json::from_slice(&manifest_bytes).map_err(|e| invalid(e.to_string()))?;
            let config_hex = manifest["config"]["digest"]
                .as_str()
                .and_then(|d| d.strip_prefix("sha256:"))
                .unwrap_or_default();
            let repo_tags: Vec<String> = name.into_iter().collect();
            let layers: Vec<String> = layer_files
                .iter()
                .map(|d| format!("blobs/sha256/{}", d.trim_start_matches("sha256:")))
                .collect();
            write(
                "manifest.json",
                &json!([{
                    "Config": format!("blobs/sha256/{config_hex}"),
                    "RepoTags": repo_tags,
                    "Layers": layers,
                }]),
            )?;
            let tarball = parent.join(format!(
                ".{}.capsule-export-{}.tar",
                file_name.to_string_lossy(),
                std::process::id()
            ));
            let tar_guard = TempDir(tarball.clone());
            write_tar(&temp, &tarball).map_err(io(&tarball))?;
            fs::rename(&tarball, dest).map_err(io(dest))?;
            std::mem::forget(tar_guard);
        }
    }
    if format == Format::Oci {
        std::mem::forget(guard);
    }
    Ok(manifest_digest)
}

/// Copies the blob `from` into `blobs` as `digest`, refusing it when its bytes do
/// not have that digest (a store changed behind capsule's back).
fn copy_verified(from: &Path, blobs: &Path, digest: &Digest) -> Result<(), ImageError> {
    let target = blobs.join(digest.hex());
    if target.is_file() {
        return Ok(());
    }
    let part = blobs.join(format!("{}.part", digest.hex()));
    let copy = || -> io::Result<Digest> {
        let mut input = File::open(from)?;
        let mut out = HashingWriter::new(BufWriter::new(File::create(&part)?));
        io::copy(&mut input, &mut out)?;
        let (_, got, _) = out.finish()?;
        Ok(got)
    };
    let got = copy().map_err(|error| ImageError::Io {
        path: from.to_path_buf(),
        error,
    })?;
    if got != *digest {
        return Err(ImageError::Invalid(format!(
            "{}: the store's blob does not match its digest {digest} (it has {got})",
            from.display()
        )));
    }
    fs::rename(&part, &target).map_err(|error| ImageError::Io {
        path: target,
        error,
    })
}

/// The tar of the directory `dir`'s contents (blobs/, index.json, …) at `out`.
fn write_tar(dir: &Path, out: &Path) -> io::Result<()> {
    let mut builder = tar::Builder::new(BufWriter::new(File::create(out)?));
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut names: Vec<_> = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if path.is_dir() {
            builder.append_dir_all(&name, &path)?;
        } else {
            builder.append_path_with_name(&path, &name)?;
        }
    }
    builder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?;
    Ok(())
}

/// Writes bytes as a blob; returns its descriptor.
fn write_bytes(blobs: &Path, bytes: &[u8], media_type: &str) -> Result<Value, ImageError> {
    let digest = Digest::of(bytes);
    let path = blobs.join(digest.hex());
    fs::write(&path, bytes).map_err(|error| ImageError::Io { path, error })?;
    Ok(json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()}))
}

/// Removes a half-written export.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = owners::remove_any(&self.0);
    }
}
