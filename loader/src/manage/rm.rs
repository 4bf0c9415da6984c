//! `capsule rm`: deletes a capsule's state directory, its private upper layer
//! included. A capsule that runs (or that a supervisor will restart) is refused, unless
//! forced: then it is stopped first, at once with `SIGKILL`, as `docker rm -f` does.
//!
//! The directory is removed under the capsule's lock ([`Home::open_capsule`]), so a
//! capsule being started at the same moment is never removed from under its loader;
//! a capsule of a `capsule up` that still supervises others stays until that ends.

use std::time::{Duration, Instant};

use super::stop::stop;
use super::ManageError;
use crate::inspect::{existing_dir, lock_holder, stop_requested, supervisor_pid};
use crate::state::{self, Home, StateError};

/// How long a removal waits for the capsule's loader or supervisor to let go of it
/// once its program has ended (a `capsule run` does at once; `capsule up` keeps its
/// capsules until all of them have ended).
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Removes the capsule `name`; `force` stops it first if it runs.
pub fn rm(home: &Home, name: &str, force: bool) -> Result<(), ManageError> {
    let dir = existing_dir(home, name)?;
    let running = state::running_pid(&dir);
    let supervisor = supervisor_pid(&dir).filter(|_| !stop_requested(&dir));
    match (running, supervisor) {
        (None, None) => {}
        (Some(pid), _) if !force => {
            return Err(ManageError::Running {
                name: name.to_string(),
                pid,
            })
        }
        (None, Some(pid)) if !force => {
            return Err(ManageError::Restarting {
                name: name.to_string(),
                pid,
            })
        }
        _ => {
            stop(home, name, Duration::ZERO)?;
        }
    }
    let deadline = Instant::now() + RELEASE_WAIT;
    let capsule = loop {
        match home.open_capsule(name) {
            Ok(capsule) => break capsule,
            Err(StateError::Locked { .. } | StateError::AlreadyRunning { .. })
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(StateError::Locked { .. }) => {
                return Err(ManageError::Held {
                    name: name.to_string(),
                    pid: lock_holder(&dir),
                })
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(capsule.remove()?)
}
