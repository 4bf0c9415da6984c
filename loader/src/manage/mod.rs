//! Managing capsules that already exist: `capsule ps`, `logs`, `stop`, `exec`, `rm`.
//!
//! Daemonless: each command reads the capsule's state directory and `/proc`
//! ([`crate::inspect`]) and acts on the processes directly. None of them takes a
//! capsule's `lock` while its program runs (the `capsule run` or supervisor that
//! started it holds it), and none rewrites `config` or `pid`.

pub mod cp;
pub mod exec;
pub mod logs;
pub mod ps;
pub mod rm;
pub mod stop;

use std::path::PathBuf;

use crate::inspect::InspectError;
use crate::state::{Home, StateError};

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("capsule {0} is not running")]
    NotRunning(String),
    #[error("capsule {0} keeps no log: only capsules started by `capsule up` do (`capsule run` writes to its terminal)")]
    NoLog(String),
    #[error("capsule {name} is running (pid {pid}): stop it first, or use rm -f")]
    Running { name: String, pid: i32 },
    #[error("capsule {name} is restarting (supervisor pid {pid}): stop it first, or use rm -f")]
    Restarting { name: String, pid: i32 },
    #[error("capsule {name} is held by {} that started it: remove it once that has ended", .pid.map_or("the capsule command".to_string(), |pid| format!("the capsule command (pid {pid})")))]
    Held { name: String, pid: Option<i32> },
    #[error("capsule {name}: pid {pid} survived SIGKILL for {secs} s")]
    Unkillable { name: String, pid: i32, secs: u64 },
    #[error("capsule {name}: cannot signal pid {pid}: {}", crate::describe_io(.error))]
    Signal {
        name: String,
        pid: i32,
        error: std::io::Error,
    },
    #[error("{}: {}", .path.display(), crate::describe_io(.error))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// `$CAPSULE_HOME` from the loader's own environment.
pub fn current_home() -> Result<Home, StateError> {
    let cwd = std::env::current_dir().ok();
    Home::resolve(|key| std::env::var_os(key), cwd.as_deref())
}
