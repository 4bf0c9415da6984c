//! `capsule image import`, and the last step every new image shares with
//! `capsule commit`: moving staged layers and the merged root into the store and
//! naming the image, under the store's lock.

use std::fs;
use std::path::Path;

use serde_json::json;

use super::digest::Digest;
use super::formats::{self, LayerSource};
use super::layer::{self, NewLayer};
use super::merge;
use super::owners::Owners;
use super::progress::Progress;
use super::spec::Platform;
use super::store::{self, ImageRecord, Staging, Store};
use super::ImageError;

/// What an import made.
#[derive(Debug, Clone)]
pub struct Imported {
    pub id: Digest,
    pub reference: Option<String>,
    pub layers: usize,
    /// Layers the store did not have before.
    pub new_layers: usize,
}

/// Imports the image at `path` (any accepted format) as `name`, or the name the
/// input gives. Nothing in the store changes unless the whole image is good: a store
/// that did not exist before a refused import does not exist after it either.
pub fn import(
    store: &Store,
    path: &Path,
    name: Option<&str>,
    platform: Option<&str>,
) -> Result<Imported, ImageError> {
    let reference = name.map(store::check_reference).transpose()?;
    let wanted = platform
        .map(|text| {
            Platform::parse(text).map_err(|e| ImageError::Invalid(format!("--platform {e}")))
        })
        .transpose()?;
    formats::check_input(path)?;
    unchanged_on_error(store, || import_checked(store, path, reference, wanted))
}

/// Runs `change`; when it fails, removes the part of the store's skeleton that did
/// not exist before it (a store that did not exist before a refused change does not
/// exist after it either).
pub fn unchanged_on_error<T, E>(
    store: &Store,
    change: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    // The highest directory of the store's skeleton that does not exist yet.
    let mut fresh = None;
    let mut probe = Some(store.dir());
    while let Some(dir) = probe.filter(|d| fs::symlink_metadata(d).is_err()) {
        fresh = Some(dir.to_path_buf());
        probe = dir.parent();
    }
    let result = change();
    if let (Err(_), Some(top)) = (&result, fresh) {
        let _ = super::owners::remove_any(&top);
    }
    result
}

fn import_checked(
    store: &Store,
    path: &Path,
    reference: Option<String>,
    wanted: Option<Platform>,
) -> Result<Imported, ImageError> {
    let platform = wanted.clone().unwrap_or_else(Platform::host);
    let owners = Owners::current();
    let staging = store.staging()?;
    let plan = formats::plan(path, staging.path(), &platform, owners)?;
    if let (Some(wanted), Some(config), false) = (&wanted, &plan.config, plan.platform_chosen) {
        formats::check_platform(config, wanted)?;
    }

    let index = store.read_index()?;
    let have = |diff: &Digest| {
        let record = index.layers.get(diff.hex()).copied()?;
        store.layer_path(diff.hex()).is_dir().then_some(record)
    };
    let total: u64 = plan
        .layers
        .iter()
        .filter_map(|(source, _)| match source {
            LayerSource::Blob { path, .. } => fs::metadata(path).ok().map(|m| m.len()),
            LayerSource::Tree(_) => None,
        })
        .sum();
    let progress = Progress::new(total, "importing");
    let prepare_all = |plan: &formats::Plan, prefix: &str| -> Result<Vec<NewLayer>, ImageError> {
        let mut layers = Vec::new();
        for (n, (source, diff_id)) in plan.layers.iter().enumerate() {
            let into = staging.path().join(format!("{prefix}-{n}"));
            layers.push(layer::prepare(
                source,
                diff_id.as_ref(),
                have,
                &into,
                owners,
                &progress,
            )?);
        }
        Ok(layers)
    };
    let mut layers = prepare_all(&plan, "layer")?;
    let whole_tarball = matches!(plan.layers.as_slice(), [(LayerSource::Blob { .. }, None)]);
    let archive = match layers.as_slice() {
        [NewLayer {
            staged: Some(dir), ..
        }] if whole_tarball && plan.config.is_none() => formats::unpacked_archive(dir, &platform),
        _ => None,
    };
    let mut plan = plan;
    if let Some(inner) = archive {
        let mut inner =
            inner.map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))?;
        inner.name = inner.name.or(plan.name.take());
        if let (Some(wanted), Some(config), false) = (&wanted, &inner.config, inner.platform_chosen)
        {
            formats::check_platform(config, wanted)?;
        }
        layers = prepare_all(&inner, "inner")?;
        plan = inner;
    }
    progress.finish();
    let reference = match reference {
        Some(r) => Some(r),
        None => plan
            .name
            .as_deref()
            .map(store::check_reference)
            .transpose()?,
    };

    let config = match plan.config {
        Some(config) => config,
        None => rootfs_config(path, &platform, &layers),
    };
    let new_layers = layers.iter().filter(|l| l.staged.is_some()).count();
    let count = layers.len();
    let id = install(
        store,
        &staging,
        layers,
        &config,
        reference.as_deref(),
        owners,
    )?;
    Ok(Imported {
        id,
        reference,
        layers: count,
        new_layers,
    })
}

/// The configuration of an image made from a plain root file system.
fn rootfs_config(path: &Path, platform: &Platform, layers: &[NewLayer]) -> Vec<u8> {
    let now = now_rfc3339();
    let config = json!({
        "created": now,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()
        },
        "history": [{
            "created": now,
            "created_by": format!("capsule image import {}", path.display())
        }]
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

/// Puts a verified image into the store: its new layers, its root (merged once per
/// stack of layers), its configuration, then the index naming it. Returns its id.
pub fn install(
    store: &Store,
    staging: &Staging,
    layers: Vec<NewLayer>,
    config: &[u8],
    reference: Option<&str>,
    owners: Owners,
) -> Result<Digest, ImageError> {
    let parsed: super::spec::ImageConfig = serde_json::from_slice(config).map_err(|e| {
        ImageError::Invalid(format!("config: not a valid image configuration: {e}"))
    })?;
    let id = Digest::of(config);
    let lock = store.lock()?;
    let mut index = store.read_index()?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ImageError::Io { path, error }
    };
    for layer in &layers {
        let target = store.layer_path(layer.diff_id.hex());
        if let Some(staged) = &layer.staged {
            if !target.exists() {
                fs::rename(staged, &target).map_err(io(&target))?;
            }
        }
        index
            .layers
            .insert(layer.diff_id.hex().to_string(), layer.record);
        if let Some(blob) = &layer.blob {
            let digest = Digest::parse(&blob.record.digest).map_err(ImageError::Invalid)?;
            let target = store.blob_path(&digest);
            if !target.exists() {
                fs::rename(&blob.path, &target).map_err(io(&target))?;
            }
            index
                .blobs
                .insert(layer.diff_id.hex().to_string(), blob.record.clone());
        }
    }
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain = Digest::chain(&diff_ids).unwrap_or_else(|| Digest::of(b""));
    let root = store.root_path(chain.hex());
    if !root.is_dir() {
        let building = staging.path().join("root");
        fs::create_dir(&building).map_err(io(&building))?;
        let sources: Vec<_> = diff_ids.iter().map(|d| store.layer_path(d.hex())).collect();
        merge::merge(&sources, &building, owners).map_err(io(&building))?;
        fs::rename(&building, &root).map_err(io(&root))?;
    }
    let blob = store.blob_path(&id);
    if !blob.exists() {
        let temp = staging.path().join("config.json");
        fs::write(&temp, config).map_err(io(&temp))?;
        fs::rename(&temp, &blob).map_err(io(&blob))?;
    }
    let hexes: Vec<String> = diff_ids.iter().map(|d| d.hex().to_string()).collect();
    index.roots.insert(chain.hex().to_string(), hexes.clone());
    index.images.insert(
        id.hex().to_string(),
        ImageRecord {
            layers: hexes,
            root: chain.hex().to_string(),
            created: parsed.created,
        },
    );
    if let Some(reference) = reference {
        index.refs.insert(
            super::store::normalize_reference(reference),
            id.hex().to_string(),
        );
    }
    store.write_index(&index, &lock)?;
    store.collect_garbage(&mut index, &lock)?;
    Ok(id)
}

/// Now in RFC 3339, UTC, whole seconds (as image configurations write `created`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format_rfc3339(secs)
}

pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::format_rfc3339(1_795_950_000), "2026-11-29T11:00:00Z");
    }
}
