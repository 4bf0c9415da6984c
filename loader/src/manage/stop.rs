//! `capsule stop`: ends a capsule's processes and keeps its supervisor from restarting
//! it.
//!
//! Order matters: the `stop` marker is written before any signal, so a supervisor that
//! sees the program die does not start it again. Then `SIGTERM` goes to the program
//! (to its process group when it leads one, as capsules started by `capsule up` do);
//! after the grace period `SIGKILL` goes to the group and to every process left whose
//! environment names the capsule's config or state directory (children that ignored
//! `SIGTERM`, processes of `capsule exec`), until none is left.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use log::debug;

use super::ManageError;
use crate::inspect::{
    self, capsule_processes, existing_dir, leads_process_group, stop_requested, supervisor_pid,
};
use crate::state::{self, Home, EXIT_FILE, STOP_FILE};

/// How long `SIGKILL`ed processes may take to disappear before stop gives up (also
/// the longest wait for a supervisor to notice the marker: more than its longest
/// restart delay).
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long stop waits for whoever started the capsule to record how it ended.
const RECORD_WAIT: Duration = Duration::from_secs(5);
/// How often the processes are looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

/// The default grace period between `SIGTERM` and `SIGKILL`, as docker's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `stop` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Its processes ran, and were ended.
    WasRunning,
    /// Nothing of it ran, and its supervisor, about to restart it, was told not to.
    WasRestarting,
    /// Nothing of it ran.
    WasNotRunning,
}

/// Stops the capsule `name`: `SIGTERM`, `timeout` to end, then `SIGKILL`.
pub fn stop(home: &Home, name: &str, timeout: Duration) -> Result<Stopped, ManageError> {
    let dir = existing_dir(home, name)?;
    let supervised = supervisor_pid(&dir).is_some() && !stop_requested(&dir);
    let marker = dir.join(STOP_FILE);
    fs::write(&marker, "").map_err(|error| ManageError::Io {
        path: marker,
        error,
    })?;
    let main = state::running_pid(&dir);
    let mut found = main.is_some();
    if let Some(pid) = main {
        let group = leads_process_group(pid);
        // No grace period means SIGKILL at once (`rm -f`, `stop -t 0`).
        if !timeout.is_zero() {
            debug!("stopping capsule {name}: SIGTERM to pid {pid} (group: {group})");
            signal(name, pid, group, libc::SIGTERM)?;
            let deadline = Instant::now() + timeout;
            while state::running_pid(&dir).is_some() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        // The rest of the group goes with the program, as a container's would; only
        // while the program is alive is the group id surely still the capsule's (the
        // rest of the capsule's processes are found by their environment below).
        if group && state::running_pid(&dir) == Some(pid) {
            signal(name, pid, true, libc::SIGKILL)?;
        }
    }
    found |= kill_leftovers(name, &dir)?;
    wait_for_record(&dir);
    Ok(match (found, supervised) {
        (true, _) => Stopped::WasRunning,
        (false, true) => Stopped::WasRestarting,
        (false, false) => Stopped::WasNotRunning,
    })
}

/// `SIGKILL`s every process of the capsule until none is left and no supervisor will
/// start one; says whether there was any.
fn kill_leftovers(name: &str, dir: &Path) -> Result<bool, ManageError> {
    let deadline = Instant::now() + KILL_WAIT;
    let mut found = false;
    loop {
        let mut left = capsule_processes(dir);
        if let Some(pid) = state::running_pid(dir) {
            if !left.contains(&pid) {
                left.push(pid);
            }
        }
        let Some(&first) = left.first() else {
            // A supervisor that looked for the marker just before it was written may be
            // starting the program again (invisible until it executes): stop is done
            // once the supervisor has let the capsule go.
            if supervisor_pid(dir).is_none() || Instant::now() >= deadline {
                return Ok(found);
            }
            std::thread::sleep(POLL);
            continue;
        };
        if Instant::now() >= deadline {
            return Err(ManageError::Unkillable {
                name: name.to_string(),
                pid: first,
                secs: KILL_WAIT.as_secs(),
            });
        }
        found = true;
        for pid in left {
            debug!("capsule {name}: SIGKILL to pid {pid}");
            signal(name, pid, false, libc::SIGKILL)?;
        }
        std::thread::sleep(POLL);
    }
}

/// Waits (bounded) until whoever started the capsule has recorded how it ended, or
/// let go of it, so that `capsule ps` right after `stop` tells the end.
fn wait_for_record(dir: &Path) {
    let deadline = Instant::now() + RECORD_WAIT;
    while inspect::is_locked(dir) && !dir.join(EXIT_FILE).exists() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
}

/// Sends `sig` to `pid`, or to its process group; a process already gone is fine.
fn signal(name: &str, pid: i32, group: bool, sig: libc::c_int) -> Result<(), ManageError> {
    let target = if group { -pid } else { pid };
    // SAFETY: kill has no memory-safety preconditions; `target` is a capsule process
    // (or its group) that was live and checked against the capsule's config just now.
    if unsafe { libc::kill(target, sig) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(ManageError::Signal {
        name: name.to_string(),
        pid,
        error,
    })
}
