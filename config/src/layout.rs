//! The state-directory layout: where the loader keeps each capsule and what the shim
//! finds there. Both sides name these files from here, so that a capsule's processes,
//! its peers' processes and the `capsule` commands agree on them.
//!
//! `$CAPSULE_HOME/capsules/NAME/` (the loader's `Home`; `CAPSULE_STATE_DIR` for the
//! shim) holds:
//!
//! - [`CONFIG_FILE`]: the `CAPSULE_CONFIG` file its processes read (rewritten at every run);
//! - [`PID_FILE`]: the pid of the program the last `capsule run` (or `capsule up`) started;
//! - [`EXIT_FILE`]: how that program ended, one line: `exit=N` or `signal=N`;
//! - [`LOCK_FILE`]: held (`flock`) by the `capsule` command supervising the capsule;
//! - [`PORTS_FILE`]: the shim's port table (capsule port → host port), see
//!   [`crate::net`]; forgotten at every run;
//! - [`SHARED_FILE`]: the shim's state shared by all processes of the capsule (host
//!   name, file-system generation, …), see [`crate::SHARED_MAGIC`];
//! - [`SHIM_LOG_FILE`]: the shim's log when `CAPSULE_LOG` is set without `CAPSULE_LOG_FILE`;
//! - [`COMMAND_FILE`]: the program's argv as started (NUL-terminated arguments, as
//!   `/proc/PID/cmdline`), so `capsule ps` can show it after the program ended;
//! - [`STOP_FILE`]: written by `capsule stop` *before* it signals the program: a
//!   supervisor does not restart a capsule while it exists; removed when the capsule
//!   is started anew, never between restarts;
//! - [`SUPERVISOR_FILE`]: the pid of the process supervising the capsule (`capsule up`),
//!   present while that process may still start or restart it; with a live
//!   supervisor and no live `pid`, the capsule is waiting to be restarted;
//! - [`LOG_FILE`], [`LOG_INDEX_FILE`]: the capsule's output lines (`capsule up`) and
//!   when each came, read by `capsule logs`;
//! - [`LOADER_FILES`]: what the loader itself wrote into the upper layer;
//! - [`UPPER_DIR`]: the capsule's private copy-on-write upper layer, which the shim
//!   writes the capsule's changes to; it carries over to later runs of the name.
//!
//! Peers (the capsules started together, `CAPSULE_PEERS`) are siblings: the shim of
//! one finds another's port table at [`peer_dir`]`/`[`PORTS_FILE`].

/// The directory of `$CAPSULE_HOME` holding one state directory per capsule.
pub const CAPSULES_DIR: &str = "capsules";

pub const CONFIG_FILE: &str = "config";
pub const PID_FILE: &str = "pid";
pub const EXIT_FILE: &str = "exit";
pub const LOCK_FILE: &str = "lock";
pub const UPPER_DIR: &str = "upper";
pub const COMMAND_FILE: &str = "command";
pub const STOP_FILE: &str = "stop";
pub const SUPERVISOR_FILE: &str = "supervisor";
pub const LOG_FILE: &str = "log";
/// When each line of `log` came: one record per line, appended after it.
pub const LOG_INDEX_FILE: &str = "log.index";
/// The list of files the loader wrote into the upper layer (`/etc/hostname`…), which
/// `capsule diff` and `capsule commit` leave out while they are unchanged.
pub const LOADER_FILES: &str = "loader-files";
/// The port table of [`crate::net::PortTable`].
pub const PORTS_FILE: &str = "ports";
/// The shim's shared state (see [`crate::SHARED_MAGIC`]).
pub const SHARED_FILE: &str = "shared";
pub const SHIM_LOG_FILE: &str = "shim.log";

/// The state directory of capsule `peer`, a sibling of `state_dir` (a trailing `/` on
/// `state_dir` names the same directory); `None` when `state_dir` has no parent.
pub fn peer_dir(state_dir: &str, peer: &str) -> Option<String> {
    let own = state_dir.trim_end_matches('/');
    let (capsules, _) = own.rsplit_once('/')?;
    Some(format!("{capsules}/{peer}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_siblings() {
        assert_eq!(
            peer_dir("/h/capsules/web-1/", "db").as_deref(),
            Some("/h/capsules/db")
        );
        assert_eq!(
            peer_dir("/h/capsules/web-1", "web-2").as_deref(),
            Some("/h/capsules/web-2")
        );
        assert_eq!(peer_dir("relative", "db"), None);
    }
}
