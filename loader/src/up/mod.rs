//! `capsule up`: every capsule of a manifest at once, supervised.
//!
//! Two steps, as for `capsule run`, so that a bad manifest starts nothing:
//! 1. [`plan`] turns each capsule of a checked [`Manifest`] into a
//!    [`crate::run::RunSpec`] (peers: every capsule's name, in the manifest's order) and
//!    prepares them all; a refusal is placed in the manifest (file, line, key).
//! 2. [`supervise`] starts them in the manifest's start order and supervises them
//!    ([`supervise`]'s module); [`detach`] first moves that into the background.
//!
//! Files each capsule's state directory gets besides `capsule run`'s: `log` (its output,
//! appended), `supervisor` (our pid while we may restart it); `stop` is honoured (see
//! [`crate::state`]).

mod detach;
mod output;
mod supervise;

use capsule_config::keys;

use crate::manifest::{Manifest, ManifestError};
use crate::run::{Host, Prepared, RunError};
use crate::state::StateError;

pub use detach::{detach, Detached, Notifier, Waiter};
pub use supervise::{backoff, describe, supervise, Outcome, Settings, RESTART_LIMIT};

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A refusal that is not the manifest's (the shim is missing, `CAPSULE_HOME`…).
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("--exit-code-from {name}: no capsule {name} in {file}")]
    UnknownCapsule { name: String, file: String },
    #[error("capsule {name}: {error}")]
    Start { name: String, error: RunError },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Launch(#[from] crate::launch::LaunchError),
    #[error("waiting for signals: {0}")]
    Signals(String),
    #[error("--detach: {0}")]
    Detach(String),
}

/// A manifest whose capsules are all prepared: nothing created yet.
#[derive(Debug)]
pub struct Plan {
    pub manifest: Manifest,
    /// One per capsule, in the manifest's order.
    prepared: Vec<Prepared>,
}

/// Prepares every capsule of `manifest`: relative paths from the manifest's directory,
/// each capsule's peers every capsule's name.
pub fn plan(manifest: Manifest, host: &Host) -> Result<Plan, UpError> {
    let peers = manifest.names();
    let mut host = host.clone();
    host.cwd = Some(manifest.dir.clone());
    let mut prepared = Vec::with_capacity(manifest.capsules.len());
    for (index, capsule) in manifest.capsules.iter().enumerate() {
        match capsule.spec(peers.clone()).prepare(&host) {
            Ok(ready) => prepared.push(ready),
            Err(error) => return Err(place(&manifest, index, error)),
        }
    }
    Ok(Plan { manifest, prepared })
}

/// Names the manifest key behind a refusal of [`crate::run::RunSpec::prepare`].
fn place(manifest: &Manifest, index: usize, error: RunError) -> UpError {
    let (key, message) = match &error {
        RunError::Root(e) => (Some("root"), e.to_string()),
        RunError::Volume(e) => (Some("volumes"), e.to_string()),
        RunError::User { spec, reason } => (Some("user"), format!("{spec:?}: {reason}")),
        RunError::WorkDir(e) => (Some("workdir"), e.to_string()),
        RunError::Port { spec, reason } => (Some("ports"), format!("{spec:?}: {reason}")),
        RunError::Image { reference, reason } => {
            (Some("image"), format!("{reference:?}: {reason}"))
        }
        RunError::Lookup(e) => (Some("command"), e.to_string()),
        RunError::Setting(e) if e.key == keys::HOSTNAME => (Some("hostname"), e.to_string()),
        RunError::State(StateError::BadName { .. })
        | RunError::State(StateError::AlreadyRunning { .. })
        | RunError::State(StateError::Locked { .. }) => (None, error.to_string()),
        _ => return UpError::Run(error),
    };
    manifest.error_at(index, key, message).into()
}
