//! `capsule commit NAME NEWREF`: the capsule's upper layer becomes a new layer on top
//! of the image it was started from. The upper layer is already in OCI's layer format
//! (whiteouts for deletions, opaque directories), so it is packed as it is.

use std::path::Path;

use serde_json::{json, Value};

use super::defaults::CAPSULE_IMAGE_FILE;
use super::digest::Digest;
use super::import::{self, Imported};
use super::layer::{self, NewLayer};
use super::owners::Owners;
use super::store::{self, Store};
use super::ImageError;
use crate::state::Home;

pub fn commit(home: &Path, name: &str, reference: &str) -> Result<Imported, ImageError> {
    let invalid = ImageError::Invalid;
    crate::state::validate_name(name).map_err(|e| invalid(e.to_string()))?;
    let reference = store::check_reference(reference)?;
    let state = Home::at(home);
    let dir = state.capsule_dir(name);
    if !dir.is_dir() {
        return Err(invalid(format!("capsule {name}: no such capsule")));
    }
    state
        .check_not_running(name)
        .map_err(|e| invalid(format!("{e} (stop it before committing)")))?;
    let parent = std::fs::read_to_string(dir.join(CAPSULE_IMAGE_FILE)).map_err(|_| {
        invalid(format!(
            "capsule {name}: not started from an image (capsule run --image)"
        ))
    })?;
    let parent = parent.trim();

    let store = Store::new(home);
    let index = store.read_index()?;
    let record = index.images.get(parent).cloned().ok_or_else(|| {
        invalid(format!(
            "capsule {name}: its image {} is no longer in the store",
            &parent[..parent.len().min(12)]
        ))
    })?;
    let mut config: Value = serde_json::from_slice(&store.config_bytes(parent)?)
        .map_err(|e| invalid(format!("image {parent}: bad configuration: {e}")))?;

    let owners = Owners::current();
    let staging = store.staging()?;
    let mut layers = Vec::new();
    for hex in &record.layers {
        let diff_id =
            Digest::from_hex(hex).ok_or_else(|| invalid(format!("store: bad layer id {hex}")))?;
        let record = index.layers.get(hex).copied().unwrap_or_default();
        layers.push(NewLayer {
            diff_id,
            staged: None,
            record,
        });
    }
    let upper = state.upper_dir(name);
    let top = if upper.is_dir() {
        // What the loader wrote (`/etc/hostname`) is not the capsule's change.
        let skip = crate::state::loader_written(&dir);
        layer::prepare_tree_except(&upper, &skip, &staging.path().join("layer"), owners)?
    } else {
        return Err(invalid(format!("capsule {name}: has no upper layer")));
    };
    let now = import::now_rfc3339();
    let diff_ids = config
        .pointer_mut("/rootfs/diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| {
            invalid(format!(
                "image {parent}: configuration without rootfs.diff_ids"
            ))
        })?;
    diff_ids.push(Value::String(top.diff_id.to_string()));
    config["created"] = Value::String(now.clone());
    let entry = json!({"created": now, "created_by": format!("capsule commit {name}")});
    match config.get_mut("history").and_then(Value::as_array_mut) {
        Some(history) => history.push(entry),
        None => config["history"] = json!([entry]),
    }
    layers.push(top);
    let bytes = serde_json::to_vec(&config).map_err(|e| invalid(e.to_string()))?;
    let count = layers.len();
    let id = import::install(&store, &staging, layers, &bytes, Some(&reference), owners)?;
    Ok(Imported {
        id,
        reference: Some(reference),
        layers: count,
        new_layers: 1,
    })
}
