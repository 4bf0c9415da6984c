//! `capsule commit NAME NEWREF`: the capsule's upper layer becomes a new layer on top
//! of the image it was started from. The upper layer is already in OCI's layer format
//! (whiteouts for deletions, opaque directories), so it is packed as it is.
//!
//! [`derive`] is the step under it that `capsule build` shares: a new image from a
//! parent's layers, an optional new top layer and an edited configuration.

use std::path::Path;

use serde_json::{json, Value};

use super::defaults::CAPSULE_IMAGE_FILE;
use super::digest::Digest;
use super::import::{self, Imported};
use super::layer::{self, NewLayer};
use super::owners::Owners;
use super::store::{self, Staging, Store};
use super::ImageError;
use crate::state::Home;

pub fn commit(home: &Path, name: &str, reference: &str) -> Result<Imported, ImageError> {
    let reference = store::check_reference(reference)?;
    let id = commit_layer(
        home,
        name,
        Some(&reference),
        &format!("capsule commit {name}"),
    )?;
    let store = Store::new(home);
    let layers = store
        .read_index()?
        .images
        .get(id.hex())
        .map_or(0, |r| r.layers.len());
    Ok(Imported {
        id,
        reference: Some(reference),
        layers,
        new_layers: 1,
    })
}

/// The stopped capsule `name`'s changes as a new image over its image, named
/// `reference` if given; `created_by` goes into the image's history.
pub fn commit_layer(
    home: &Path,
    name: &str,
    reference: Option<&str>,
    created_by: &str,
) -> Result<Digest, ImageError> {
    let invalid = ImageError::Invalid;
    crate::state::validate_name(name).map_err(|e| invalid(e.to_string()))?;
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
    let parent = parent.trim().to_string();
    let upper = state.upper_dir(name);
    if !upper.is_dir() {
        return Err(invalid(format!("capsule {name}: has no upper layer")));
    }
    // What the loader wrote (`/etc/hostname`) is not the capsule's change.
    let skip = crate::state::loader_written(&dir);
    derive(
        home,
        &parent,
        created_by,
        reference,
        |_| Ok(()),
        |staging, owners| {
            layer::prepare_tree_except(&upper, &skip, &staging.path().join("layer"), owners)
                .map(Some)
        },
    )
}

/// A new image whose parent is the stored image `parent` (id hex): its layers, then
/// the layer `top` makes in the staging area (if any), and its configuration as `edit`
/// changes it, with a history entry `created_by`. Named `reference` if given.
pub fn derive(
    home: &Path,
    parent: &str,
    created_by: &str,
    reference: Option<&str>,
    edit: impl FnOnce(&mut Value) -> Result<(), ImageError>,
    top: impl FnOnce(&Staging, Owners) -> Result<Option<NewLayer>, ImageError>,
) -> Result<Digest, ImageError> {
    let invalid = ImageError::Invalid;
    let store = Store::new(home);
    let index = store.read_index()?;
    let record = index.images.get(parent).cloned().ok_or_else(|| {
        invalid(format!(
            "image {} is no longer in the store",
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
            blob: None,
        });
    }
    let top = top(&staging, owners)?;
    edit(&mut config)?;
    let now = import::now_rfc3339();
    let mut entry = json!({"created": now, "created_by": created_by});
    if let Some(top) = &top {
        config
            .pointer_mut("/rootfs/diff_ids")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| {
                invalid(format!(
                    "image {parent}: configuration without rootfs.diff_ids"
                ))
            })?
            .push(Value::String(top.diff_id.to_string()));
    } else {
        entry["empty_layer"] = Value::Bool(true);
    }
    config["created"] = Value::String(now);
    match config.get_mut("history").and_then(Value::as_array_mut) {
        Some(history) => history.push(entry),
        None => config["history"] = json!([entry]),
    }
    layers.extend(top);
    let bytes = serde_json::to_vec(&config).map_err(|e| invalid(e.to_string()))?;
    import::install(&store, &staging, layers, &bytes, reference, owners)
}
