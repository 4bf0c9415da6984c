//! `capsule exec`: a new process inside a running capsule.
//!
//! The process joins the capsule rather than making a new one: it gets the capsule's
//! `CAPSULE_CONFIG` (so the same private layer, host name, identity, clock and ports,
//! and the same state directory the capsule's processes share), the environment its
//! main process started with, plus `-e`; the program and the working directory are
//! looked for inside the capsule's file system, as `capsule run` does. Nothing of the
//! capsule's state is rewritten and its lock is not taken: the process is an extra
//! guest of a capsule someone else supervises.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use capsule_config::{keys, Config};
use log::warn;

use super::ManageError;
use crate::envfile::{EnvEntry, Environment};
use crate::inspect::{self, existing_dir, InspectError};
use crate::landlock::{self, Backstop, BackstopError, HostLoader, Policy};
use crate::launch::{self, BlockedSignals, Launch, LaunchError, Termination};
use crate::program::{self, LookupError};
use crate::run::{check_capsule_workdir, Host, WorkDirError};
use crate::shim::{self, ShimError};
use crate::state::{self, Home, CONFIG_FILE};
use crate::view::View;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Manage(#[from] ManageError),
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Backstop(#[from] BackstopError),
    /// Not a `source`: the message already carries it.
    #[error("-w {0}")]
    WorkDir(WorkDirError),
    #[error("--user {spec:?}: {reason}")]
    User { spec: String, reason: String },
    #[error("capsule {name}: cannot read the environment of pid {pid}: {}", crate::describe_io(.error))]
    Environ {
        name: String,
        pid: i32,
        error: std::io::Error,
    },
}

impl From<WorkDirError> for ExecError {
    fn from(e: WorkDirError) -> ExecError {
        ExecError::WorkDir(e)
    }
}

impl From<InspectError> for ExecError {
    fn from(e: InspectError) -> ExecError {
        ExecError::Manage(e.into())
    }
}

/// A `capsule exec`.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub name: String,
    pub program: OsString,
    pub args: Vec<OsString>,
    /// `-e` settings, applied in order over the capsule's environment.
    pub env: Vec<EnvEntry>,
    /// A capsule path; default: where the capsule's program started.
    pub workdir: Option<PathBuf>,
    /// A user spec as `capsule run --user` takes it; default: the capsule's identity.
    pub user: Option<String>,
}

/// Starts the program in the capsule, relays signals to it, returns how it ended.
pub fn exec(home: &Home, spec: ExecSpec, host: &Host) -> Result<Termination, ExecError> {
    let (launch, config, shim) = prepare(home, &spec, host)?;
    // The capsule's own domain, computed again from its config: never wider.
    let host_loader = HostLoader::of(&launch.executable);
    let governing = landlock::governing_config(&config, host.env.get(keys::CONFIG));
    let policy = Policy::for_capsule(&governing, &shim, &host_loader);
    let backstop = Backstop::build(&policy, host.env.get(landlock::SETTING))?;
    let signals = BlockedSignals::block()?;
    let mut child = launch.spawn(&signals, backstop.as_ref())?;
    log::info!(
        "capsule {}: exec {} as pid {}",
        spec.name,
        launch.arg0.to_string_lossy(),
        child.id()
    );
    Ok(launch::supervise(&mut child, &signals)?)
}

/// Checks everything and composes what to start (with the capsule's config and the
/// shim); starts nothing.
fn prepare(
    home: &Home,
    spec: &ExecSpec,
    host: &Host,
) -> Result<(Launch, Config, PathBuf), ExecError> {
    let dir = existing_dir(home, &spec.name)?;
    let pid = state::running_pid(&dir).ok_or_else(|| ManageError::NotRunning(spec.name.clone()))?;
    let config_path = dir.join(CONFIG_FILE);
    let mut config = inspect::read_config(&dir)?;
    if config.fs.upper.is_none() {
        config.fs.upper = Some(home.upper_dir(&spec.name).to_string_lossy().into_owned());
    }
    let view = capsule_view(&config, home.upper_dir(&spec.name));

    let environ_path = format!("/proc/{pid}/environ");
    let environ = fs::read(&environ_path).map_err(|error| ExecError::Environ {
        name: spec.name.clone(),
        pid,
        error,
    })?;
    let mut env = parse_environ(&environ);
    env.apply(&spec.env, &host.env);
    // The config file is the one source of truth for capsule settings, as in `run`.
    for key in keys::ALL {
        if env.remove(key).is_some() && spec.env.iter().any(|e| e.key() == *key) {
            warn!("{key} given with -e is ignored: capsule settings come from the capsule");
        }
    }
    env.set(keys::CONFIG, &config_path);
    env.set(keys::NAME, &spec.name);
    let shim = shim::locate(
        host.env.get(shim::SHIM_VAR),
        host.exe.clone(),
        host.cwd.as_deref(),
    )?;

    if let Some(user) = &spec.user {
        // Variables win over the config file in the shim: the capsule's other
        // settings stay, only the identity changes.
        let identity = view
            .user_db()
            .resolve(user)
            .map_err(|reason| ExecError::User {
                spec: user.clone(),
                reason,
            })?;
        let settings = Config {
            identity: Some(identity),
            ..Config::default()
        };
        for (key, value) in settings.to_vars() {
            env.set(key, value);
        }
    }

    let start = match &spec.workdir {
        Some(dir) => check_capsule_workdir(dir, &view)?,
        None => default_workdir(&env, &view),
    };
    env.set("PWD", &start.capsule);
    let executable =
        program::find_program_in(&spec.program, env.get("PATH"), &start.capsule, &view)?;
    let shim = shim::for_program(&shim, host.env.get(shim::MUSL_SHIM_VAR), &executable)?;
    let preload = shim::preload_value(&shim, env.get("LD_PRELOAD"));
    env.set("LD_PRELOAD", preload);
    let launch = Launch {
        executable,
        arg0: spec.program.clone(),
        args: spec.args.clone(),
        env,
        cwd: Some(start.host),
        backstop_all: config.backstop_all,
    };
    Ok((launch, config, shim))
}

/// The capsule's file system from the host: its root (the host's `/` without one),
/// its upper layer and its volumes.
fn capsule_view(config: &Config, default_upper: PathBuf) -> View {
    let root = config.fs.root.as_deref().unwrap_or("/");
    let upper = config
        .fs
        .upper
        .as_ref()
        .map_or(default_upper, PathBuf::from);
    View::new(root, upper, config.fs.volumes.clone())
}

/// Where the capsule's program started (its `$PWD`), else the capsule's `/`.
fn default_workdir(env: &Environment, view: &View) -> crate::view::Resolved {
    env.get("PWD")
        .map(Path::new)
        .filter(|dir| dir.is_absolute())
        .and_then(|dir| check_capsule_workdir(dir, view).ok())
        .unwrap_or_else(|| crate::view::Resolved {
            capsule: PathBuf::from("/"),
            host: view.root().to_path_buf(),
            is_dir: true,
        })
}

/// `/proc/PID/environ`: `KEY=VALUE` strings, each NUL-terminated.
fn parse_environ(bytes: &[u8]) -> Environment {
    Environment::from_vars(bytes.split(|&b| b == 0).filter_map(|var| {
        let at = var.iter().position(|&b| b == b'=').filter(|at| *at > 0)?;
        Some((
            OsStr::from_bytes(&var[..at]).to_os_string(),
            OsStr::from_bytes(&var[at + 1..]).to_os_string(),
        ))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_keeps_values_with_equals_signs() {
        let env = parse_environ(b"A=1\0B=x=y\0=junk\0C=\0");
        assert_eq!(env.get("A"), Some(OsStr::new("1")));
        assert_eq!(env.get("B"), Some(OsStr::new("x=y")));
        assert_eq!(env.get("C"), Some(OsStr::new("")));
        assert_eq!(env.iter().count(), 3);
    }
}
