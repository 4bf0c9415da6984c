//! `capsule image ls`, `capsule image rm` and `capsule image tag`.

use std::path::Path;

use super::store::Store;
use super::ImageError;

/// One line of `capsule image ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `name:tag`, or `<none>` for an image no reference names.
    pub reference: String,
    /// The image id (config digest), hex.
    pub id: String,
    /// Bytes on disk of its layers (each layer counted once per image, although
    /// images share them).
    pub size: u64,
    pub layers: usize,
    pub created: Option<String>,
    /// `os/arch[/variant]` its configuration names (or its index entry, for an image
    /// of a multi-platform index).
    pub platform: Option<String>,
}

/// The images of the store, one line per reference, then the images no reference
/// names; the intermediate images of `capsule build` (its step cache) only with `all`.
pub fn list(home: &Path, all: bool) -> Result<Vec<Listed>, ImageError> {
    let store = Store::new(home);
    let index = store.read_index()?;
    let intermediate = if all {
        std::collections::BTreeSet::new()
    } else {
        store.build_cache_ids()
    };
    let mut out = Vec::new();
    let mut named = std::collections::BTreeSet::new();
    let line = |reference: String, id: &str, platform: Option<String>| {
        let record = index.images.get(id)?;
        let platform = platform.or_else(|| {
            let config = store.config_bytes(id).ok()?;
            super::registry::pull::config_platform(&config).map(|p| p.to_string())
        });
        Some(Listed {
            reference,
            id: id.to_string(),
            size: record
                .layers
                .iter()
                .filter_map(|l| index.layers.get(l))
                .map(|l| l.size)
                .sum(),
            layers: record.layers.len(),
            created: record.created.clone(),
            platform,
        })
    };
    for (reference, id) in &index.refs {
        named.insert(id.clone());
        // A multi-platform index: a line per platform, under its reference.
        match index.indexes.get(reference) {
            Some(stored) => {
                for entry in &stored.images {
                    named.insert(entry.id.clone());
                    out.extend(line(
                        reference.clone(),
                        &entry.id,
                        Some(entry.platform.to_string()),
                    ));
                }
            }
            None => out.extend(line(reference.clone(), id, None)),
        }
    }
    for id in index.images.keys() {
        if !named.contains(id) && !intermediate.contains(id) {
            out.extend(line("<none>".into(), id, None));
        }
    }
    Ok(out)
}

/// What `rm` did.
#[derive(Debug, Clone)]
pub struct Removed {
    pub untagged: Vec<String>,
    /// The ids of the images that went (no reference names them any more): the
    /// image's, and those of a multi-platform index under the reference.
    pub deleted: Vec<String>,
}

/// Removes a reference (or, given an id, the image and all its references); layers
/// and roots stay while another image or a capsule uses them.
pub fn remove(home: &Path, reference: &str) -> Result<Removed, ImageError> {
    let store = Store::new(home);
    if !store.dir().join("index.json").exists() {
        return Err(ImageError::NotFound(reference.to_string()));
    }
    let lock = store.lock()?;
    let mut index = store.read_index()?;
    let (id, _) = store.resolve(&index, reference)?;
    let normal = super::store::normalize_reference(reference);
    let by_ref = index
        .refs
        .iter()
        .find(|(r, i)| {
            **i == id && (r.as_str() == reference || super::store::normalize_reference(r) == normal)
        })
        .map(|(r, _)| r.clone());
    let untagged: Vec<String> = match by_ref {
        Some(r) => vec![r],
        None => index
            .refs
            .iter()
            .filter(|(_, i)| **i == id)
            .map(|(r, _)| r.clone())
            .collect(),
    };
    // The images of a multi-platform index under these references go with it.
    let mut candidates = vec![id.clone()];
    for r in &untagged {
        index.refs.remove(r);
        if let Some(stored) = index.indexes.remove(r) {
            candidates.extend(stored.images.into_iter().map(|e| e.id));
        }
    }
    let still_named = |index: &super::store::StoreIndex, id: &String| {
        index.refs.values().any(|i| i == id) || index.indexed_ids().contains(id)
    };
    let mut deleted = Vec::new();
    for candidate in candidates {
        if !still_named(&index, &candidate) && index.images.remove(&candidate).is_some() {
            deleted.push(candidate);
        }
    }
    store.write_index(&index, &lock)?;
    store.collect_garbage(&mut index, &lock)?;
    Ok(Removed { untagged, deleted })
}

/// Gives the image `source` names (a reference or an id) the reference `target` as
/// well (moving `target` off another image, as `docker tag` does). Returns `target`
/// as the store keeps it.
pub fn tag(home: &Path, source: &str, target: &str) -> Result<String, ImageError> {
    let target = super::store::check_reference(target)?;
    let store = Store::new(home);
    if !store.dir().join("index.json").exists() {
        return Err(ImageError::NotFound(source.to_string()));
    }
    let lock = store.lock()?;
    let mut index = store.read_index()?;
    let (id, _) = store.resolve(&index, source)?;
    index
        .refs
        .retain(|r, _| super::store::normalize_reference(r) != target);
    index.refs.insert(target.clone(), id);
    store.write_index(&index, &lock)?;
    store.collect_garbage(&mut index, &lock)?;
    Ok(target)
}

/// What `image prune` removed: the images no reference named (the build cache's
/// intermediate images among them), and the bytes of layers that went with them.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub images: Vec<String>,
    pub cache_entries: usize,
}

/// Removes every image no reference names, and the build cache that points at them;
/// layers and roots that a capsule still uses stay.
pub fn prune(home: &Path) -> Result<Pruned, ImageError> {
    let store = Store::new(home);
    if !store.dir().join("index.json").exists() {
        return Ok(Pruned::default());
    }
    let lock = store.lock()?;
    let mut index = store.read_index()?;
    let mut named: std::collections::BTreeSet<String> = index.refs.values().cloned().collect();
    named.extend(index.indexed_ids());
    let images: Vec<String> = index
        .images
        .keys()
        .filter(|id| !named.contains(*id))
        .cloned()
        .collect();
    for id in &images {
        index.images.remove(id);
    }
    let mut cache_entries = 0;
    let cache = store.build_cache_dir();
    if let Ok(entries) = std::fs::read_dir(&cache) {
        for entry in entries.flatten() {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|error| ImageError::Io { path, error })?;
            cache_entries += 1;
        }
    }
    // What interrupted pulls left to resume.
    let downloads = store.dir().join("downloads");
    super::registry::blob::remove_idle(&downloads).map_err(|error| ImageError::Io {
        path: downloads,
        error,
    })?;
    store.write_index(&index, &lock)?;
    store.collect_garbage(&mut index, &lock)?;
    Ok(Pruned {
        images,
        cache_entries,
    })
}
