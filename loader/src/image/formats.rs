//! What `capsule image import PATH` accepts, turned into one plan: the image
//! configuration (verified, or made up for a plain root file system) and its layer
//! blobs with the digests they must have.
//!
//! - an OCI image layout directory (`oci-layout`, `index.json`, `blobs/`);
//! - an OCI archive (a tar of such a layout) and a `docker save` archive
//!   (`manifest.json` and layer tars): unpacked into the import's private directory
//!   first, with the same checks as layers;
//! - a plain root file system: a directory, or a tarball (`.tar`, gzip or zstd,
//!   recognised by content).

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::owners::Owners;
use super::spec::{
    self, Compression, Descriptor, DockerArchiveEntry, ImageConfig, Index, Manifest, Platform,
};
use super::unpack;
use super::ImageError;

/// Where a layer's content comes from.
#[derive(Debug, Clone)]
pub enum LayerSource {
    /// A blob file; `digest` and `size` are what its descriptor says (`None` when the
    /// format names none: the diff id then checks the content).
    Blob {
        path: PathBuf,
        what: String,
        digest: Option<Digest>,
        size: Option<u64>,
        /// `None`: recognised from the content.
        compression: Option<Compression>,
    },
    /// A directory taken whole as a layer.
    Tree(PathBuf),
}

#[derive(Debug)]
pub struct Plan {
    /// The verified configuration; `None` for a plain root file system.
    pub config: Option<Vec<u8>>,
    /// Each layer with the diff id the configuration gives it.
    pub layers: Vec<(LayerSource, Option<Digest>)>,
    /// A reference the input names (a tag annotation, docker's `RepoTags`).
    pub name: Option<String>,
    /// The index chose the image by its platform (else the configuration says it).
    pub platform_chosen: bool,
}

fn invalid(text: String) -> ImageError {
    ImageError::Invalid(text)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, ImageError> {
    let bytes =
        fs::read(path).map_err(|e| invalid(format!("{what}: {}", crate::describe_io(&e))))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("{what}: not a valid document: {e}")))
}

/// Checks, before anything is created, that `path` (or the layout of a
/// `LAYOUT:TAG`) exists and is not an empty file.
pub fn check_input(path: &Path) -> Result<(), ImageError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(error) => match path.to_str().and_then(|p| p.rsplit_once(':')) {
            Some((dir, tag)) if !tag.contains('/') && Path::new(dir).exists() => return Ok(()),
            _ => {
                return Err(ImageError::Io {
                    path: path.to_path_buf(),
                    error,
                })
            }
        },
    };
    if meta.is_file() && meta.len() == 0 {
        return Err(invalid(format!(
            "{}: an empty file is not an image",
            path.display()
        )));
    }
    Ok(())
}

/// Refuses an image whose configuration names another platform than `--platform`.
pub fn check_platform(config: &[u8], wanted: &Platform) -> Result<(), ImageError> {
    let parsed: ImageConfig = serde_json::from_slice(config)
        .map_err(|e| invalid(format!("config: not a valid image configuration: {e}")))?;
    let (Some(os), Some(architecture)) = (parsed.os, parsed.architecture) else {
        return Ok(());
    };
    let has = Platform {
        os,
        architecture,
        variant: None,
    };
    if has.matches(wanted) {
        Ok(())
    } else {
        Err(invalid(format!(
            "--platform {wanted}: the image is for {has} only"
        )))
    }
}

/// A descriptor's `size`, which must not be negative.
fn descriptor_size(desc: &Descriptor, what: &str) -> Result<u64, ImageError> {
    u64::try_from(desc.size).map_err(|_| {
        invalid(format!(
            "{what} {}: size {} is negative",
            desc.digest, desc.size
        ))
    })
}

/// Plans the import of `path`; archives are unpacked under `scratch`.
pub fn plan(
    path: &Path,
    scratch: &Path,
    platform: &Platform,
    owners: Owners,
) -> Result<Plan, ImageError> {
    // `LAYOUT:TAG` picks one image of a layout holding several, as skopeo's `oci:`.
    let (path, tag) = match fs::symlink_metadata(path) {
        Err(_) => match path.to_str().and_then(|p| p.rsplit_once(':')) {
            Some((dir, tag)) if !tag.contains('/') && Path::new(dir).exists() => {
                (Path::new(dir), Some(tag))
            }
            _ => (path, None),
        },
        Ok(_) => (path, None),
    };
    let meta = fs::metadata(path).map_err(|error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let stem = default_name(path);
    if meta.is_dir() {
        if path.join("oci-layout").exists() || path.join("index.json").exists() {
            return plan_layout(path, platform, tag, stem.as_deref());
        }
        if tag.is_some() {
            return Err(invalid(format!(
                "{}: a tag can only name an image of an OCI layout",
                path.display()
            )));
        }
        if path.join("manifest.json").exists() {
            return plan_docker(path);
        }
        return Ok(Plan {
            config: None,
            layers: vec![(LayerSource::Tree(path.to_path_buf()), None)],
            name: stem,
            platform_chosen: false,
        });
    }
    match archive_kind(path)? {
        ArchiveKind::Oci | ArchiveKind::Docker => {
            let into = scratch.join("archive");
            fs::create_dir(&into).map_err(|error| ImageError::Io {
                path: into.clone(),
                error,
            })?;
            let file = File::open(path).map_err(|error| ImageError::Io {
                path: path.to_path_buf(),
                error,
            })?;
            unpack::unpack(BufReader::new(file), &into, owners)
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            let mut plan = if into.join("oci-layout").exists() || into.join("index.json").exists() {
                let mut plan = plan_layout(&into, platform, tag, stem.as_deref())?;
                // docker 25 saves (and image export --format docker-archive) are both:
                // the full name is in manifest.json's RepoTags, the layout has a tag.
                if tag.is_none() && into.join("manifest.json").exists() {
                    let entries: Vec<DockerArchiveEntry> =
                        read_json(&into.join("manifest.json"), "manifest.json")?;
                    let named = entries
                        .into_iter()
                        .find_map(|e| e.repo_tags.and_then(|t| t.into_iter().next()));
                    plan.name = named.or(plan.name);
                }
                plan
            } else {
                plan_docker(&into)?
            };
            if plan.name.is_none() {
                plan.name = stem;
            }
            Ok(plan)
        }
        ArchiveKind::RootFs => Ok(Plan {
            config: None,
            layers: vec![(
                LayerSource::Blob {
                    path: path.to_path_buf(),
                    what: path.display().to_string(),
                    digest: None,
                    size: None,
                    compression: None,
                },
                None,
            )],
            name: stem,
            platform_chosen: false,
        }),
    }
}

/// An archive compressed as a whole (`docker save IMAGE | gzip`) is only recognised
/// once unpacked as if it were a root file system: `dir` holds an OCI layout or a
/// `docker save` archive, and nothing a root file system has.
pub fn unpacked_archive(dir: &Path, platform: &Platform) -> Option<Result<Plan, ImageError>> {
    let has = |name: &str| fs::symlink_metadata(dir.join(name)).is_ok();
    if ["bin", "etc", "usr", "lib"].iter().any(|n| has(n)) {
        return None;
    }
    if has("oci-layout") {
        Some(plan_layout(dir, platform, None, None))
    } else if has("manifest.json") {
        Some(plan_docker(dir))
    } else {
        None
    }
}

/// `dir/debian-12.tar.gz` → `debian-12`.
fn default_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let mut stem = name;
    for suffix in [".gz", ".tgz", ".zst", ".tzst", ".tar", ".oci"] {
        stem = stem.strip_suffix(suffix).unwrap_or(stem);
    }
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let stem = stem.trim_start_matches(['.', '-', '_']).to_string();
    (!stem.is_empty()).then_some(stem)
}

enum ArchiveKind {
    Oci,
    Docker,
    RootFs,
}

/// Tells an OCI or docker archive from a root file system tarball by the names at
/// its top (compressed tarballs are root file systems).
fn archive_kind(path: &Path) -> Result<ArchiveKind, ImageError> {
    let io = |error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let head = reader.fill_buf().map_err(io)?;
    if Compression::sniff(head) != Compression::None {
        return Ok(ArchiveKind::RootFs);
    }
    let mut archive = tar::Archive::new(File::open(path).map_err(io)?);
    let entries = archive.entries_with_seek().map_err(|e| {
        invalid(format!(
            "{}: not a tar archive: {}",
            path.display(),
            crate::describe_io(&e)
        ))
    })?;
    let (mut layout, mut docker) = (false, false);
    for entry in entries {
        // A damaged archive is reported by the unpacking that follows, with the entry.
        let Ok(entry) = entry else { break };
        let name = entry.path_bytes();
        let name = name.strip_prefix(b"./").unwrap_or(&name);
        match name {
            b"oci-layout" => layout = true,
            b"manifest.json" => docker = true,
            _ => {}
        }
    }
    Ok(if layout {
        ArchiveKind::Oci
    } else if docker {
        ArchiveKind::Docker
    } else {
        ArchiveKind::RootFs
    })
}

/// Reads a blob of a layout, checking its size and digest against `desc`.
fn read_blob(dir: &Path, desc: &Descriptor, what: &str) -> Result<Vec<u8>, ImageError> {
    let digest = Digest::parse(&desc.digest).map_err(|e| invalid(format!("{what}: {e}")))?;
    let path = dir.join("blobs/sha256").join(digest.hex());
    let bytes = fs::read(&path).map_err(|e| {
        invalid(format!(
            "{what} {digest}: missing blob (blobs/sha256/{}: {})",
            digest.hex(),
            crate::describe_io(&e)
        ))
    })?;
    let actual = Digest::of(&bytes);
    if actual != digest {
        return Err(invalid(format!(
            "{what} {digest}: content has digest {actual}: corrupt or altered blob"
        )));
    }
    if descriptor_size(desc, what)? != bytes.len() as u64 {
        return Err(invalid(format!(
            "{what} {digest}: {} bytes, the descriptor says {}",
            bytes.len(),
            desc.size
        )));
    }
    Ok(bytes)
}

fn plan_layout(
    dir: &Path,
    platform: &Platform,
    want_tag: Option<&str>,
    stem: Option<&str>,
) -> Result<Plan, ImageError> {
    let mut index: Index = read_json(&dir.join("index.json"), "index.json")?;
    if let Some(want) = want_tag {
        index
            .manifests
            .retain(|d| d.annotation(spec::REF_NAME) == Some(want));
        if index.manifests.is_empty() {
            return Err(invalid(format!("index.json: no image tagged {want:?}")));
        }
    }
    let (manifest_desc, tag) = select_manifest(dir, &index, platform, 0)?;
    let manifest: Manifest = serde_json::from_slice(&read_blob(dir, &manifest_desc, "manifest")?)
        .map_err(|e| {
        invalid(format!(
            "manifest {}: not a valid manifest: {e}",
            manifest_desc.digest
        ))
    })?;
    if let Some(t) = &manifest.media_type {
        if t != spec::OCI_MANIFEST && t != spec::DOCKER_MANIFEST {
            return Err(invalid(format!(
                "manifest {}: unknown media type {t}",
                manifest_desc.digest
            )));
        }
    }
    let config_type = &manifest.config.media_type;
    if config_type != spec::OCI_CONFIG && config_type != spec::DOCKER_CONFIG {
        return Err(invalid(format!(
            "config {}: unknown media type {config_type}",
            manifest.config.digest
        )));
    }
    let config = read_blob(dir, &manifest.config, "config")?;
    let diff_ids = diff_ids(&config, manifest.layers.len())?;
    let mut layers = Vec::new();
    for (desc, diff) in manifest.layers.iter().zip(diff_ids) {
        let compression = Compression::of_layer_type(&desc.media_type).ok_or_else(|| {
            invalid(format!(
                "layer {}: unknown media type {}",
                desc.digest, desc.media_type
            ))
        })?;
        let digest = Digest::parse(&desc.digest).map_err(|e| invalid(format!("layer: {e}")))?;
        let path = dir.join("blobs/sha256").join(digest.hex());
        if !path.is_file() {
            return Err(invalid(format!(
                "layer {digest}: missing blob (blobs/sha256/{})",
                digest.hex()
            )));
        }
        layers.push((
            LayerSource::Blob {
                path,
                what: format!("layer {digest}"),
                digest: Some(digest),
                size: Some(descriptor_size(desc, "layer")?),
                compression: Some(compression),
            },
            Some(diff),
        ));
    }
    let name = tag.map(|tag| {
        if tag.contains(':') || tag.contains('/') {
            tag
        } else {
            format!("{}:{tag}", stem.unwrap_or("image"))
        }
    });
    Ok(Plan {
        config: Some(config),
        layers,
        name,
        platform_chosen: manifest_desc.platform.is_some(),
    })
}

/// The configuration's diff ids, one per layer.
fn diff_ids(config: &[u8], layers: usize) -> Result<Vec<Digest>, ImageError> {
    let parsed: ImageConfig = serde_json::from_slice(config)
        .map_err(|e| invalid(format!("config: not a valid image configuration: {e}")))?;
    if parsed.rootfs.diff_ids.len() != layers {
        return Err(invalid(format!(
            "config: {} diff ids for {layers} layers",
            parsed.rootfs.diff_ids.len()
        )));
    }
    parsed
        .rootfs
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d).map_err(|e| invalid(format!("config: diff id {e}"))))
        .collect()
}

/// The manifest for `platform` (recursing into nested indexes), and its tag.
fn select_manifest(
    dir: &Path,
    index: &Index,
    platform: &Platform,
    depth: u32,
) -> Result<(Descriptor, Option<String>), ImageError> {
    if depth > 4 {
        return Err(invalid("index: indexes nested too deeply".into()));
    }
    let mut seen = Vec::new();
    for desc in &index.manifests {
        if let Some(p) = &desc.platform {
            if !p.matches(platform) {
                seen.push(p.to_string());
                continue;
            }
        }
        let tag = desc.annotation(spec::REF_NAME).map(str::to_string);
        match desc.media_type.as_str() {
            spec::OCI_MANIFEST | spec::DOCKER_MANIFEST => return Ok((desc.clone(), tag)),
            spec::OCI_INDEX | spec::DOCKER_LIST => {
                let nested: Index = serde_json::from_slice(&read_blob(dir, desc, "index")?)
                    .map_err(|e| {
                        invalid(format!("index {}: not a valid index: {e}", desc.digest))
                    })?;
                let (found, inner) = select_manifest(dir, &nested, platform, depth + 1)?;
                return Ok((found, inner.or(tag)));
            }
            other => {
                return Err(invalid(format!(
                    "index: {}: unknown media type {other}",
                    desc.digest
                )))
            }
        }
    }
    if seen.is_empty() {
        Err(invalid("index.json: names no image".into()))
    } else {
        Err(invalid(format!(
            "index.json: no image for {platform} (it has {})",
            seen.join(", ")
        )))
    }
}

/// A `docker save` archive, unpacked in `dir`.
fn plan_docker(dir: &Path) -> Result<Plan, ImageError> {
    let entries: Vec<DockerArchiveEntry> = read_json(&dir.join("manifest.json"), "manifest.json")?;
    let entry = entries
        .first()
        .ok_or_else(|| invalid("manifest.json: names no image".into()))?;
    let mut config_file = unpack::open_inside(dir, &entry.config)
        .map_err(|e| invalid(format!("manifest.json: config {e}")))?;
    let mut config = Vec::new();
    std::io::Read::read_to_end(&mut config_file, &mut config).map_err(|e| {
        invalid(format!(
            "config {}: {}",
            entry.config,
            crate::describe_io(&e)
        ))
    })?;
    // The config's file is named by its digest ("<hex>.json" or "blobs/sha256/<hex>").
    if let Some(named) = digest_in_name(&entry.config) {
        let actual = Digest::of(&config);
        if actual != named {
            return Err(invalid(format!(
                "config {}: content has digest {actual}: corrupt or altered blob",
                entry.config
            )));
        }
    }
    let diff_ids = diff_ids(&config, entry.layers.len())?;
    let mut layers = Vec::new();
    for (rel, diff) in entry.layers.iter().zip(diff_ids) {
        let file = unpack::open_inside(dir, rel)
            .map_err(|e| invalid(format!("manifest.json: layer {e}")))?;
        drop(file);
        layers.push((
            LayerSource::Blob {
                path: dir.join(rel),
                what: format!("layer {rel}"),
                digest: digest_in_name(rel),
                size: None,
                compression: None,
            },
            Some(diff),
        ));
    }
    let name = entry.repo_tags.as_ref().and_then(|t| t.first().cloned());
    Ok(Plan {
        config: Some(config),
        layers,
        name,
        platform_chosen: false,
    })
}

/// `blobs/sha256/<hex>` or `<hex>.json` names its content's digest.
fn digest_in_name(rel: &str) -> Option<Digest> {
    let base = rel.rsplit('/').next()?;
    let hex = base.strip_suffix(".json").unwrap_or(base);
    if rel.contains("blobs/sha256/") || base.ends_with(".json") {
        Digest::from_hex(hex)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths() {
        assert_eq!(
            default_name(Path::new("/x/Debian 12.tar.gz")).as_deref(),
            Some("debian-12")
        );
        assert_eq!(
            default_name(Path::new("/x/rootfs")).as_deref(),
            Some("rootfs")
        );
        let hex = "a".repeat(64);
        assert!(digest_in_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_in_name(&format!("{hex}.json")).is_some());
        assert!(digest_in_name(&format!("{hex}/layer.tar")).is_none());
    }
}
