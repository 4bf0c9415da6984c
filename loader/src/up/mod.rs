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

use crate::manifest::{Manifest, ManifestError, Restart};
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
    /// More capsules than this process's limits let the supervisor hold at once.
    #[error("{file}: {count} capsules need {need} {what}, and the limit ({limit}) is {have}; lower replicas or raise the limit")]
    Limit {
        file: String,
        count: usize,
        need: u64,
        what: &'static str,
        limit: &'static str,
        have: u64,
    },
}

/// Descriptors the supervisor holds per capsule: its directory's lock, its output
/// pipe, its log file and the log's index; plus the two ends of a pipe while each
/// program starts and std's exec-error pipe.
const FDS_PER_CAPSULE: u64 = 4;
const FDS_BASE: u64 = 64;
/// Processes (and threads) per capsule: its program and its output thread.
const TASKS_PER_CAPSULE: u64 = 2;

/// Refuses a manifest whose capsules would exhaust `RLIMIT_NOFILE` or `RLIMIT_NPROC`
/// part way through the start (which would leave capsules running and others not).
fn check_limits(manifest: &Manifest) -> Result<(), UpError> {
    let count = manifest.capsules.len();
    let n = count as u64;
    for (resource, what, limit, need) in [
        (
            libc::RLIMIT_NOFILE,
            "file descriptors",
            "RLIMIT_NOFILE, ulimit -n",
            n * FDS_PER_CAPSULE + FDS_BASE,
        ),
        (
            libc::RLIMIT_NPROC,
            "processes and threads",
            "RLIMIT_NPROC, ulimit -u",
            n * TASKS_PER_CAPSULE,
        ),
    ] {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit into a valid rlimit.
        if unsafe { libc::getrlimit(resource, &mut lim) } != 0
            || lim.rlim_cur == libc::RLIM_INFINITY
        {
            continue;
        }
        if need > lim.rlim_cur {
            return Err(UpError::Limit {
                file: manifest.file.clone(),
                count,
                need,
                what,
                limit,
                have: lim.rlim_cur,
            });
        }
    }
    Ok(())
}

/// Capsules all prepared, nothing created yet: a manifest's, or the one capsule of a
/// `capsule run --detach`.
#[derive(Debug)]
pub struct Plan {
    /// Every capsule's name, in the manifest's order.
    names: Vec<String>,
    /// Each capsule's restart policy, in the same order.
    restarts: Vec<Restart>,
    /// Indexes into `names`, in the order to start them.
    start_order: Vec<usize>,
    /// One per capsule, in the manifest's order.
    prepared: Vec<Prepared>,
}

/// Prepares every capsule of `manifest`: relative paths from the manifest's directory,
/// each capsule's peers every capsule's name.
pub fn plan(manifest: Manifest, host: &Host) -> Result<Plan, UpError> {
    check_limits(&manifest)?;
    let names = manifest.names();
    let peers = manifest.peer_names();
    let mut host = host.clone();
    host.cwd = Some(manifest.dir.clone());
    let mut prepared = Vec::with_capacity(manifest.capsules.len());
    for (index, capsule) in manifest.capsules.iter().enumerate() {
        match capsule.spec(peers.clone()).prepare(&host) {
            Ok(ready) => prepared.push(ready),
            Err(error) => return Err(place(&manifest, index, error)),
        }
    }
    Ok(Plan {
        names,
        restarts: manifest.capsules.iter().map(|c| c.restart).collect(),
        start_order: manifest.start_order.clone(),
        prepared,
    })
}

impl Plan {
    /// One capsule, supervised as `capsule up` supervises each (`capsule run -d`).
    pub fn single(prepared: Prepared, restart: Restart) -> Plan {
        Plan {
            names: vec![prepared.name().to_string()],
            restarts: vec![restart],
            start_order: vec![0],
            prepared: vec![prepared],
        }
    }

    /// Every capsule's name, in the manifest's order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// What [`supervise`] would start, in its start order: one line per capsule,
    /// `NAME: PROGRAM ARGS…` (each shown as the shell would quote it).
    pub fn describe(&self) -> Vec<String> {
        self.start_order
            .iter()
            .map(|&index| {
                let prepared = &self.prepared[index];
                let launch = prepared.launch();
                let argv: Vec<String> = std::iter::once(&launch.arg0)
                    .chain(&launch.args)
                    .map(|w| w.to_string_lossy().into_owned())
                    .collect();
                format!("{}: {}", prepared.name(), crate::inspect::shell_line(&argv))
            })
            .collect()
    }
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
        RunError::Nul { .. } | RunError::TooBig { .. } => (Some("command"), error.to_string()),
        RunError::ReservedEnv { .. } => (Some("env"), error.to_string()),
        RunError::Setting(e) if e.key == keys::HOSTNAME => (Some("hostname"), e.to_string()),
        RunError::State(StateError::BadName { .. })
        | RunError::State(StateError::AlreadyRunning { .. })
        | RunError::State(StateError::Locked { .. }) => (None, error.to_string()),
        _ => return UpError::Run(error),
    };
    manifest.error_at(index, key, message).into()
}
