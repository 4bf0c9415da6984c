//! What `capsule run --image REF` takes from the image, the way `docker run` does:
//! the root, `Entrypoint`/`Cmd`, `Env`, `WorkingDir`, `User` and `ExposedPorts`.

use std::path::{Path, PathBuf};

use super::spec::ImageConfig;
use super::store::Store;
use super::ImageError;

/// The image's part of a capsule.
#[derive(Debug, Clone)]
pub struct RunDefaults {
    /// The image id (hex), recorded in the capsule for `capsule commit`.
    pub id: String,
    /// The merged root: the capsule's lower layer.
    pub root: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` settings, in the image's order.
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    /// The image's user; `None` when it names none (docker then runs as root).
    pub user: Option<String>,
    /// `PORT/PROTO` specs, as `-p` takes a port published on a free host port.
    pub exposed_ports: Vec<String>,
}

impl RunDefaults {
    /// The program and its arguments: the entrypoint, followed by the command given
    /// (`command`, when not empty) or else the image's `Cmd`.
    pub fn argv(&self, command: Vec<String>) -> Vec<String> {
        let mut argv = self.entrypoint.clone();
        if command.is_empty() {
            argv.extend(self.cmd.iter().cloned());
        } else {
            argv.extend(command);
        }
        argv
    }
}

/// Looks `reference` up in the store of `home`: with `platform`, the image of that
/// platform when `reference` names a multi-platform index.
pub fn run_defaults(
    home: &Path,
    reference: &str,
    platform: Option<&super::spec::Platform>,
) -> Result<RunDefaults, ImageError> {
    let store = Store::new(home);
    let index = store.read_index()?;
    let (id, record) = match store.resolve_for(&index, reference, platform)? {
        Some(found) => found,
        None => {
            let has: Vec<String> = index
                .index_of(reference)
                .map(|(_, i)| i.images.iter().map(|e| e.platform.to_string()).collect())
                .unwrap_or_default();
            return Err(ImageError::Invalid(format!(
                "{reference}: no image for {} in the store (it has {})",
                platform.map_or_else(String::new, |p| p.to_string()),
                has.join(", ")
            )));
        }
    };
    let bytes = store.config_bytes(&id)?;
    let config: ImageConfig = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::Invalid(format!("image {}: bad configuration: {e}", &id[..12])))?;
    let root = store.root_path(&record.root);
    if !root.is_dir() {
        return Err(ImageError::Invalid(format!(
            "image {}: its root {} is missing from the store",
            &id[..12],
            root.display()
        )));
    }
    let run = config.config.unwrap_or_default();
    let env = run
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect();
    Ok(RunDefaults {
        id,
        root,
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env,
        workdir: run.working_dir.filter(|w| !w.is_empty()).map(PathBuf::from),
        user: run.user.filter(|u| !u.is_empty()),
        exposed_ports: run.exposed_ports.unwrap_or_default().into_keys().collect(),
    })
}

/// The file in a capsule's directory naming the image it was started from.
pub const CAPSULE_IMAGE_FILE: &str = "image";

/// Records in the capsule's state directory which image it runs (for `commit`).
pub fn record_capsule_image(capsule_dir: &Path, id: &str) -> std::io::Result<()> {
    let path = capsule_dir.join(CAPSULE_IMAGE_FILE);
    let temp = capsule_dir.join(".image.tmp");
    std::fs::write(&temp, format!("{id}\n"))?;
    std::fs::rename(&temp, path)
}
