//! `capsule image export REF PATH`: an OCI image layout of one image, which umoci,
//! skopeo and podman read. Layers are written uncompressed from the store's unpacked
//! layers (the store keeps no blobs of its own), so a layer's digest is its diff id
//! and the configuration's `rootfs.diff_ids` are rewritten to match; the image id of
//! the export differs from the store's when the original tars were laid out
//! differently.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;

use serde_json::{json, Value};

use super::digest::{Digest, HashingWriter};
use super::owners::{self, Owners};
use super::pack;
use super::spec;
use super::store::Store;
use super::ImageError;

/// Writes the image `reference` as a new OCI layout at `dest`; returns the manifest's
/// digest.
pub fn export(home: &Path, reference: &str, dest: &Path) -> Result<Digest, ImageError> {
    let invalid = ImageError::Invalid;
    if fs::symlink_metadata(dest).is_ok() {
        return Err(invalid(format!("{}: already exists", dest.display())));
    }
    let store = Store::new(home);
    let index = store.read_index()?;
    let (id, record) = store.resolve(&index, reference)?;
    let mut config: Value = serde_json::from_slice(&store.config_bytes(&id)?)
        .map_err(|e| invalid(format!("image {id}: bad configuration: {e}")))?;
    let tag = index
        .refs
        .iter()
        .find(|(r, i)| **i == id && (r.as_str() == reference || r.starts_with(reference)))
        .or_else(|| index.refs.iter().find(|(_, i)| **i == id))
        .and_then(|(r, _)| r.rsplit_once(':').map(|(_, t)| t.to_string()))
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
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (n, hex) in record.layers.iter().enumerate() {
        let layer = store.layer_path(hex);
        let part = blobs.join(format!("layer-{n}.part"));
        let file = File::create(&part).map_err(io(&part))?;
        let writer = pack::pack(&layer, HashingWriter::new(BufWriter::new(file)), owners)
            .map_err(io(&layer))?;
        let (_, digest, size) = writer.finish().map_err(io(&part))?;
        fs::rename(&part, blobs.join(digest.hex())).map_err(io(&part))?;
        layer_descs.push(
            json!({"mediaType": spec::OCI_LAYER, "digest": digest.to_string(), "size": size}),
        );
        diff_ids.push(Value::String(digest.to_string()));
    }
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let config_desc = write_blob(&blobs, &config, spec::OCI_CONFIG)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": spec::OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    });
    let mut manifest_desc = write_blob(&blobs, &manifest, spec::OCI_MANIFEST)?;
    let manifest_digest =
        Digest::parse(manifest_desc["digest"].as_str().unwrap_or_default()).map_err(invalid)?;
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
    fs::rename(&temp, dest).map_err(io(dest))?;
    std::mem::forget(guard);
    Ok(manifest_digest)
}

/// Writes a JSON document as a blob; returns its descriptor.
fn write_blob(blobs: &Path, value: &Value, media_type: &str) -> Result<Value, ImageError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ImageError::Invalid(e.to_string()))?;
    let digest = Digest::of(&bytes);
    let path = blobs.join(digest.hex());
    fs::write(&path, &bytes).map_err(|error| ImageError::Io { path, error })?;
    Ok(json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()}))
}

/// Removes a half-written export.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = owners::remove_any(&self.0);
    }
}
