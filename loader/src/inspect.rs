//! Reading a capsule's state without changing it: what `capsule ps`, `logs`, `stop`,
//! `exec` and `rm` need to know about a capsule.
//!
//! There is no daemon, so every answer is put together from the capsule's directory
//! (see [`crate::state`]) and from `/proc`:
//!
//! - *running*: the `pid` file names a live process whose environment points at this
//!   capsule's `config` ([`state::running_pid`]), so a recycled pid never counts;
//! - *supervised*: the `supervisor` file names the process that holds the capsule's
//!   `lock` (read from `/proc/locks`, so a recycled pid never counts either); a
//!   supervisor removes that file, or exits, when it stops restarting the capsule;
//! - *how it ended*: the `exit` file; a capsule whose processes died without anyone
//!   recording it (its supervisor killed too) is "exited (unknown)", never running.
//!
//! Uptime comes from the start time in `/proc/PID/stat` and the time since boot
//! (`/proc/uptime`); ports from the published ports in `config` and the shim's `ports`
//! table (which also holds the host ports picked for unpublished binds).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capsule_config::net::{PortTable, Proto};
use capsule_config::{parse_config_file, Config, UserDb};

use crate::describe_io;
use crate::state::{
    self, Home, StateError, COMMAND_FILE, CONFIG_FILE, EXIT_FILE, LOCK_FILE, PID_FILE, PORTS_FILE,
    STOP_FILE, SUPERVISOR_FILE,
};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no such capsule: {name} (looked in {})", .home.display())]
    NoSuchCapsule { name: String, home: PathBuf },
    #[error("{}: {}", .path.display(), describe_io(.error))]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: {reason}", .path.display())]
    BadConfig { path: PathBuf, reason: String },
}

/// What a capsule is doing, as `capsule ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its program runs.
    Running,
    /// Its program ended and its supervisor is about to start it again.
    Restarting,
    /// Its program called `exit(N)`.
    Exited(u8),
    /// A signal killed its program.
    Killed(i32),
    /// Its program is gone and nobody recorded how it ended (its supervisor died too).
    Vanished,
    /// Nothing was started yet (or a start is under way).
    Created,
}

impl Status {
    /// Whether the capsule is up: its program runs, or will again.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Restarting)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Running => f.write_str("running"),
            Status::Restarting => f.write_str("restarting"),
            Status::Exited(code) => write!(f, "exited ({code})"),
            Status::Killed(sig) => write!(f, "killed ({})", signal_name(*sig)),
            Status::Vanished => f.write_str("exited (unknown)"),
            Status::Created => f.write_str("created"),
        }
    }
}

/// A port of the capsule as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLine {
    pub proto: Proto,
    /// The capsule's port.
    pub port: u16,
    /// The host port standing for it, once known.
    pub host: Option<u16>,
    /// Published with `-p` (else picked for a bind the capsule made on its own).
    pub published: bool,
    /// The host address a published port is bound on (`0.0.0.0`: every address).
    pub address: String,
}

impl std::fmt::Display for PortLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = self.proto.as_str();
        match (self.host, self.published) {
            (Some(host), true) => write!(f, "{}:{host}->{}/{proto}", self.address, self.port),
            (Some(host), false) => write!(f, "{host}->{}/{proto}", self.port),
            (None, _) => write!(f, "{}/{proto}", self.port),
        }
    }
}

/// Everything `capsule ps` shows about one capsule.
#[derive(Debug, Clone)]
pub struct CapsuleInfo {
    pub name: String,
    pub dir: PathBuf,
    pub status: Status,
    /// The live program's pid.
    pub pid: Option<i32>,
    /// How long the live program has run.
    pub uptime: Option<Duration>,
    /// Only while the capsule is active: the table is forgotten at the next start.
    pub ports: Vec<PortLine>,
    /// The program's argv as given (recorded at its start), else the live one.
    pub command: Vec<String>,
}

impl Status {
    /// The status without its detail, for JSON (the detail has fields of its own).
    pub fn word(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited(_) | Status::Vanished => "exited",
            Status::Killed(_) => "killed",
            Status::Created => "created",
        }
    }

    /// The exit code, when the program called `exit`.
    pub fn exit_code(self) -> Option<u8> {
        match self {
            Status::Exited(code) => Some(code),
            _ => None,
        }
    }

    /// The name of the signal that ended the program.
    pub fn signal(self) -> Option<String> {
        match self {
            Status::Killed(sig) => Some(signal_name(sig)),
            _ => None,
        }
    }
}

impl PortLine {
    /// `{"proto", "port", "host", "host_address", "published"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "proto": self.proto.as_str(),
            "port": self.port,
            "host": self.host,
            "host_address": self.address,
            "published": self.published,
        })
    }
}

impl CapsuleInfo {
    /// What `capsule ps --format json` prints for the capsule.
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "pid": self.pid,
            "status": self.status.word(),
            "exit_code": self.status.exit_code(),
            "signal": self.status.signal(),
            "uptime_secs": self.uptime.map(|u| u.as_secs()),
            "ports": self.ports.iter().map(PortLine::to_json).collect::<Vec<_>>(),
            "command": self.command,
        })
    }

    /// Everything known about the capsule, for `capsule inspect`: its state, its
    /// configuration (as its processes read it), its file system (lower layer, private
    /// layer, volumes), its image, its log and its supervisor.
    pub fn details_json(&self) -> serde_json::Value {
        let config = read_config(&self.dir).ok();
        let text = |path: &Path| {
            fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        };
        let fs_config = config.as_ref().map(|c| &c.fs);
        let mounts: Vec<serde_json::Value> = fs_config
            .map(|f| f.volumes.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|v| {
                serde_json::json!({
                    "type": "bind",
                    "source": v.host,
                    "destination": v.path,
                    "read_only": v.read_only,
                })
            })
            .collect();
        let identity = config
            .as_ref()
            .and_then(|c| c.identity.as_ref())
            .map(|id| serde_json::json!({"uid": id.uid[1], "gid": id.gid[1], "groups": id.groups}));
        let log = self.dir.join(crate::state::LOG_FILE);
        serde_json::json!({
            "name": self.name,
            "state_dir": self.dir,
            "state": {
                "status": self.status.word(),
                "running": self.status == Status::Running,
                "restarting": self.status == Status::Restarting,
                "pid": self.pid,
                "exit_code": self.status.exit_code(),
                "signal": self.status.signal(),
                "uptime_secs": self.uptime.map(|u| u.as_secs()),
                "supervisor_pid": supervisor_pid(&self.dir),
                "stop_requested": stop_requested(&self.dir),
            },
            "command": self.command,
            "config": {
                "hostname": config.as_ref().and_then(|c| c.hostname.clone()),
                "user": identity,
                "time_offset_ns": config.as_ref().and_then(|c| c.time_offset_ns),
                "read_only": fs_config.is_some_and(|f| f.read_only),
                "peers": config.as_ref().map(|c| c.net.peers.clone()).unwrap_or_default(),
                "published": config
                    .as_ref()
                    .map(|c| c.net.ports.iter().map(ToString::to_string).collect::<Vec<_>>())
                    .unwrap_or_default(),
            },
            "ports": self.ports.iter().map(PortLine::to_json).collect::<Vec<_>>(),
            "root": fs_config.and_then(|f| f.root.clone()).unwrap_or_else(|| "/".into()),
            "upper": fs_config.and_then(|f| f.upper.clone()),
            "mounts": mounts,
            "image": text(&self.dir.join(crate::image::defaults::CAPSULE_IMAGE_FILE)),
            "log": log.exists().then_some(log),
        })
    }
}

/// The capsules that exist, sorted by name.
pub fn capsule_names(home: &Home) -> Result<Vec<String>, InspectError> {
    let dir = home.capsules().to_path_buf();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(InspectError::Io { path: dir, error }),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| state::validate_name(name).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// The state directory of an existing capsule; refuses a bad or unknown name.
pub fn existing_dir(home: &Home, name: &str) -> Result<PathBuf, InspectError> {
    state::validate_name(name)?;
    let dir = home.capsule_dir(name);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(InspectError::NoSuchCapsule {
            name: name.to_string(),
            home: home.capsules().to_path_buf(),
        })
    }
}

/// Looks at one capsule.
pub fn inspect(home: &Home, name: &str) -> Result<CapsuleInfo, InspectError> {
    let dir = existing_dir(home, name)?;
    let pid = state::running_pid(&dir);
    let status = status_of(&dir, pid);
    let uptime = pid.and_then(process_uptime);
    let ports = if status.is_active() {
        ports_of(&dir)
    } else {
        Vec::new()
    };
    // The command as the user gave it (recorded at each start), as `docker ps` shows
    // the container's command: the live argv of a `--root`/image capsule's first
    // program is its root's dynamic loader's invocation, with host paths. The live
    // one only when nothing was recorded.
    let command = fs::read(dir.join(COMMAND_FILE))
        .ok()
        .filter(|bytes| !bytes.is_empty())
        .or_else(|| pid.and_then(|pid| fs::read(format!("/proc/{pid}/cmdline")).ok()))
        .map(|bytes| split_nul(&bytes))
        .unwrap_or_default();
    Ok(CapsuleInfo {
        name: name.to_string(),
        dir,
        status,
        pid,
        uptime,
        ports,
        command,
    })
}

/// The status of the capsule in `dir` whose live program (if any) is `pid`.
fn status_of(dir: &Path, pid: Option<i32>) -> Status {
    if pid.is_some() {
        return Status::Running;
    }
    let ended = read_exit(dir);
    if supervisor_pid(dir).is_some() && !stop_requested(dir) {
        return match ended {
            Some(_) => Status::Restarting,
            None => Status::Created,
        };
    }
    match ended {
        Some(status) => status,
        None if dir.join(PID_FILE).exists() => Status::Vanished,
        None => Status::Created,
    }
}

/// How the last program ended, from the `exit` file (`exit=N` or `signal=N`).
fn read_exit(dir: &Path) -> Option<Status> {
    let text = fs::read_to_string(dir.join(EXIT_FILE)).ok()?;
    let (kind, value) = text.trim().split_once('=')?;
    match kind {
        "exit" => value.parse().ok().map(Status::Exited),
        "signal" => value.parse().ok().map(Status::Killed),
        _ => None,
    }
}

/// Whether `capsule stop` asked for the capsule to stay down.
pub fn stop_requested(dir: &Path) -> bool {
    dir.join(STOP_FILE).exists()
}

/// The pid of the live supervisor of the capsule in `dir`: the one its `supervisor`
/// file names, if that process holds the capsule's lock.
pub fn supervisor_pid(dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(dir.join(SUPERVISOR_FILE)).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 0)?;
    lock_holders(&dir.join(LOCK_FILE))
        .contains(&pid)
        .then_some(pid)
}

/// Whether some process holds the capsule's lock (a `capsule run` or a supervisor).
pub fn is_locked(dir: &Path) -> bool {
    lock_holder(dir).is_some()
}

/// The process holding the capsule's lock (a `capsule run` or a supervisor), if any.
pub fn lock_holder(dir: &Path) -> Option<i32> {
    lock_holders(&dir.join(LOCK_FILE)).first().copied()
}

/// The pids holding an `flock` on `file`, from `/proc/locks` (reading it takes no lock,
/// so it never gets in the way of a capsule being started).
fn lock_holders(file: &Path) -> Vec<i32> {
    let Ok(meta) = fs::metadata(file) else {
        return Vec::new();
    };
    let Ok(table) = fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    parse_lock_holders(&table, meta.ino())
        .into_iter()
        // The inode number alone could belong to another file system: check that the
        // holder has the file open.
        .filter(|pid| holds_open(*pid, file))
        .collect()
}

/// The pids of the granted `FLOCK` lines of `/proc/locks` on inode `ino`.
fn parse_lock_holders(table: &str, ino: u64) -> Vec<i32> {
    table
        .lines()
        .filter(|line| !line.contains("->")) // a waiter, not a holder
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "1: FLOCK ADVISORY WRITE 1234 fd:01:5678 0 EOF"
            if fields.get(1) != Some(&"FLOCK") {
                return None;
            }
            let pid: i32 = fields.get(4)?.parse().ok()?;
            let inode: u64 = fields.get(5)?.rsplit(':').next()?.parse().ok()?;
            (inode == ino).then_some(pid)
        })
        .collect()
}

/// Whether process `pid` has `file` open (true when its descriptors cannot be read).
fn holds_open(pid: i32, file: &Path) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return fs::metadata(format!("/proc/{pid}")).is_ok();
    };
    let wanted = fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == wanted))
}

/// The capsule's ports: the published ones, with the host ports the shim recorded,
/// then the ones picked for binds that were not published.
fn ports_of(dir: &Path) -> Vec<PortLine> {
    let bound = fs::read(dir.join(PORTS_FILE))
        .map(|bytes| PortTable::parse(&bytes))
        .unwrap_or_default();
    let published = read_config(dir).map(|c| c.net.ports).unwrap_or_default();
    let mut lines: Vec<PortLine> = published
        .iter()
        .map(|map| PortLine {
            proto: map.proto,
            port: map.port,
            host: map.host.or_else(|| {
                bound
                    .iter()
                    .find(|b| b.proto == map.proto && b.port == map.port)
                    .map(|b| b.host)
            }),
            published: true,
            address: map.host_ip_text(),
        })
        .collect();
    for binding in bound {
        if !lines
            .iter()
            .any(|l| l.proto == binding.proto && l.port == binding.port)
        {
            lines.push(PortLine {
                proto: binding.proto,
                port: binding.port,
                host: Some(binding.host),
                published: false,
                address: "0.0.0.0".into(),
            });
        }
    }
    lines
}

/// The capsule's configuration, as its processes read it.
pub fn read_config(dir: &Path) -> Result<Config, InspectError> {
    let path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&path).map_err(|error| InspectError::Io {
        path: path.clone(),
        error,
    })?;
    let bad = |reason: String| InspectError::BadConfig {
        path: path.clone(),
        reason,
    };
    let vars = parse_config_file(&text).map_err(bad)?;
    // The file holds ids, never user names, so the user database is not consulted.
    Config::from_vars(
        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        crate::run::now_ns(),
        || UserDb::load(""),
    )
    .map_err(|e| bad(e.to_string()))
}

/// The processes of the capsule whose state directory is `dir`: every live process
/// whose environment points at its config (the program, `capsule exec`s) or, as the
/// shim passes the settings on to the programs they start, at its state directory.
pub fn capsule_processes(dir: &Path) -> Vec<i32> {
    let marks = state::Marks::of(dir);
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // A zombie's environment reads as empty: it is gone already.
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| marks.in_environ(&environ))
        })
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name (field 3, the state, first).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces and ')'.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` leads its own process group (as every capsule `capsule up` starts).
pub fn leads_process_group(pid: i32) -> bool {
    // Field 5 is the process group.
    stat_fields(pid)
        .and_then(|f| f.get(2)?.parse::<i32>().ok())
        .is_some_and(|pgrp| pgrp == pid)
}

/// How long process `pid` has run: now since boot, less its start since boot.
pub fn process_uptime(pid: i32) -> Option<Duration> {
    // Field 22 is the start time, in clock ticks since boot.
    let start_ticks: u64 = stat_fields(pid)?.get(19)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|hz| *hz > 0)?;
    let since_boot: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let started = start_ticks as f64 / hz as f64;
    Some(Duration::from_secs_f64((since_boot - started).max(0.0)))
}

/// A duration as `ps` shows it: `45s`, `3m12s`, `2h03m`, `3d04h`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, secs) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{hours}h{mins:02}m")
    } else if mins > 0 {
        format!("{mins}m{secs:02}s")
    } else {
        format!("{secs}s")
    }
}

/// NUL-terminated strings, as `/proc/PID/cmdline` and the `command` file hold them.
fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .strip_suffix(&[0])
        .unwrap_or(bytes)
        .split(|&b| b == 0)
        .map(|arg| OsStr::from_bytes(arg).to_string_lossy().into_owned())
        .collect()
}

/// An argv as one shell line: arguments with blanks or quotes are quoted, those with
/// control characters (a newline…) written as bash's `$'…'`.
pub fn shell_line(argv: &[String]) -> String {
    let quote = |arg: &String| {
        let plain = !arg.is_empty()
            && arg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b));
        if plain {
            arg.clone()
        } else if arg.chars().any(char::is_control) {
            // Bash's $'…', so that a table row stays on one line.
            let mut quoted = String::from("$'");
            for c in arg.chars() {
                match c {
                    '\\' => quoted.push_str(r"\\"),
                    '\'' => quoted.push_str(r"\'"),
                    '\n' => quoted.push_str(r"\n"),
                    '\t' => quoted.push_str(r"\t"),
                    c if c.is_control() => quoted.push_str(&format!(r"\x{:02x}", c as u32)),
                    c => quoted.push(c),
                }
            }
            quoted.push('\'');
            quoted
        } else if !arg.contains(['"', '$', '`', '\\', '!']) {
            format!("\"{arg}\"")
        } else {
            format!("'{}'", arg.replace('\'', r"'\''"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// `SIGKILL` for 9, and so on; `SIG34` for a number without a name.
pub fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    match usize::try_from(sig)
        .ok()
        .and_then(|s| NAMES.get(s.checked_sub(1)?))
    {
        Some(name) => format!("SIG{name}"),
        None => format!("SIG{sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::io::AsRawFd;

    #[test]
    fn durations_read_like_ps() {
        let s = Duration::from_secs;
        assert_eq!(human_duration(s(0)), "0s");
        assert_eq!(human_duration(s(45)), "45s");
        assert_eq!(human_duration(s(192)), "3m12s");
        assert_eq!(human_duration(s(2 * 3600 + 3 * 60 + 9)), "2h03m");
        assert_eq!(human_duration(s(3 * 86_400 + 4 * 3600)), "3d04h");
    }

    #[test]
    fn statuses_name_signals() {
        assert_eq!(Status::Killed(9).to_string(), "killed (SIGKILL)");
        assert_eq!(Status::Killed(15).to_string(), "killed (SIGTERM)");
        assert_eq!(Status::Killed(64).to_string(), "killed (SIG64)");
        assert_eq!(Status::Exited(3).to_string(), "exited (3)");
        assert_eq!(Status::Vanished.to_string(), "exited (unknown)");
        assert!(Status::Restarting.is_active() && !Status::Created.is_active());
    }

    #[test]
    fn commands_read_like_shell_lines() {
        assert_eq!(split_nul(b"sh\0-c\0echo 'hi'\0"), ["sh", "-c", "echo 'hi'"]);
        assert_eq!(
            shell_line(&split_nul(b"sh\0-c\0echo 'hi'\0\0")),
            r#"sh -c "echo 'hi'" """#
        );
        assert_eq!(shell_line(&["echo $'x'".to_string()]), r"'echo $'\''x'\'''");
        assert_eq!(
            shell_line(&["a\n\tb'\\\u{1}".to_string()]),
            r"$'a\n\tb\'\\\x01'"
        );
    }

    #[test]
    fn statuses_come_from_the_state_directory() {
        let dir = std::env::temp_dir().join(format!("capsule-inspect-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let status = || status_of(&dir, state::running_pid(&dir));
        assert_eq!(status(), Status::Created);
        // A live pid that is not the capsule's (ours) is not running: nobody recorded
        // the end, so it is gone for good.
        fs::write(dir.join(PID_FILE), format!("{}\n", std::process::id())).unwrap();
        assert_eq!(status(), Status::Vanished);
        fs::write(dir.join(EXIT_FILE), "signal=9\n").unwrap();
        assert_eq!(status(), Status::Killed(9));
        fs::write(dir.join(EXIT_FILE), "exit=3\n").unwrap();
        assert_eq!(status(), Status::Exited(3));
        // A supervisor file without a lock holder is stale: no restart is coming.
        fs::write(
            dir.join(SUPERVISOR_FILE),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(status(), Status::Exited(3));
        // Held by the supervisor it names: a restart is coming, unless stopped.
        let lock = File::create(dir.join(LOCK_FILE)).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        assert_eq!(lock_holder(&dir), Some(std::process::id() as i32));
        assert_eq!(status(), Status::Restarting);
        fs::write(dir.join(STOP_FILE), "").unwrap();
        assert_eq!(status(), Status::Exited(3));
        drop(lock);
        assert_eq!(lock_holder(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lock_holders_are_the_granted_flocks_on_the_inode() {
        let table = "\
1: POSIX  ADVISORY  WRITE 700 fd:01:42 0 EOF
2: FLOCK  ADVISORY  WRITE 800 fd:01:42 0 EOF
2: -> FLOCK  ADVISORY  WRITE 801 fd:01:42 0 EOF
3: FLOCK  ADVISORY  WRITE 900 00:2d:43 0 EOF
";
        assert_eq!(parse_lock_holders(table, 42), [800]);
        assert_eq!(parse_lock_holders(table, 43), [900]);
        assert!(parse_lock_holders(table, 44).is_empty());
    }

    #[test]
    fn ports_show_published_and_picked_host_ports() {
        let line = |host, published| PortLine {
            proto: Proto::Tcp,
            port: 8000,
            host,
            published,
            address: "0.0.0.0".into(),
        };
        assert_eq!(
            line(Some(18080), true).to_string(),
            "0.0.0.0:18080->8000/tcp"
        );
        assert_eq!(line(Some(40001), false).to_string(), "40001->8000/tcp");
        assert_eq!(line(None, true).to_string(), "8000/tcp");
        let local = PortLine {
            address: "127.0.0.1".into(),
            ..line(Some(8080), true)
        };
        assert_eq!(local.to_string(), "127.0.0.1:8080->8000/tcp");
    }
}
