//! Capsule state on disk: `$CAPSULE_HOME/capsules/NAME/`.
//!
//! `$CAPSULE_HOME` defaults to `$XDG_DATA_HOME/capsule`, else `~/.local/share/capsule`.
//! A capsule's directory holds the files of [`capsule_config::layout`], which the shim
//! relies on too.
//!
//! Invariants: [`Home::resolve`] and [`Home::check_not_running`] only read; nothing is
//! created before [`Home::open_capsule`], which the loader calls once every input has
//! been validated. A directory that exists is reused (state carries over between runs
//! of the same name) unless a live process of that capsule still runs.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::describe_io;

pub use capsule_config::MAX_NAME_LEN;

/// File names inside a capsule's directory (`log.index`: one [`LogIndexRecord`] per
/// line of `log`), shared with the shim.
pub use capsule_config::layout::{
    CAPSULES_DIR, COMMAND_FILE, CONFIG_FILE, EXIT_FILE, LOADER_FILES, LOCK_FILE, LOG_FILE,
    LOG_INDEX_FILE, PID_FILE, PORTS_FILE, STOP_FILE, SUPERVISOR_FILE, UPPER_DIR,
};

/// One line of a capsule's `log`: where it ends in the file and when the supervisor
/// read it, 16 bytes (two little-endian 64-bit numbers), so that `capsule logs` finds
/// lines by time (`--since`, `-t`) without changing what the log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogIndexRecord {
    /// The offset just past the line's newline.
    pub end: u64,
    /// Nanoseconds since the epoch (the real clock, not a capsule's).
    pub time_ns: i64,
}

impl LogIndexRecord {
    pub const SIZE: usize = 16;

    pub fn now(end: u64) -> LogIndexRecord {
        LogIndexRecord {
            end,
            time_ns: crate::run::now_ns(),
        }
    }

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[..8].copy_from_slice(&self.end.to_le_bytes());
        out[8..].copy_from_slice(&self.time_ns.to_le_bytes());
        out
    }

    /// Every whole record of `bytes` (a record being written is left out).
    pub fn parse(bytes: &[u8]) -> Vec<LogIndexRecord> {
        bytes
            .chunks_exact(Self::SIZE)
            .map(|r| LogIndexRecord {
                end: u64::from_le_bytes(r[..8].try_into().unwrap_or_default()),
                time_ns: i64::from_le_bytes(r[8..].try_into().unwrap_or_default()),
            })
            .collect()
    }
}

/// The mode of a new upper layer: the capsule's `/` is `rwxr-xr-x`, as a real one.
const UPPER_MODE: u32 = 0o755;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot tell where capsule state lives: HOME is not set; set CAPSULE_HOME")]
    NoHome,
    #[error("{name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("capsule {name} is already running (pid {pid})")]
    AlreadyRunning { name: String, pid: i32 },
    #[error("capsule {name} is already being started by another capsule command")]
    Locked { name: String },
    #[error("{}: {}", path.display(), describe_io(error))]
    Io { path: PathBuf, error: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |error| StateError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Checks a capsule name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 63 characters.
pub fn validate_name(name: &str) -> Result<(), StateError> {
    capsule_config::validate_name(name).map_err(|reason| StateError::BadName {
        name: name.to_string(),
        reason,
    })
}

/// A fresh name, `capsule-` and 8 hex digits from `/dev/urandom` (or pid and time).
pub fn generate_name() -> String {
    let mut bytes = [0u8; 4];
    let random = File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut bytes)
    });
    let value = match random {
        Ok(()) => u32::from_ne_bytes(bytes),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
                .unwrap_or(0);
            nanos ^ std::process::id().rotate_left(16)
        }
    };
    format!("capsule-{value:08x}")
}

/// The root of all capsule state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
    /// Where capsules' state directories are: `root/capsules`, or node-local storage
    /// inside a Slurm job (see [`LOCAL_VAR`]).
    capsules: PathBuf,
}

/// The loader's own setting of where capsules live (not passed to programs).
pub const HOME_VAR: &str = "CAPSULE_HOME";
/// Where capsules' state (their private layers) lives instead of
/// `$CAPSULE_HOME/capsules`; inside a Slurm job it defaults to node-local storage
/// ([`crate::slurm::local_home`]) while images stay in the shared `$CAPSULE_HOME`.
pub const LOCAL_VAR: &str = "CAPSULE_LOCAL_HOME";

impl Home {
    /// Finds `$CAPSULE_HOME` from the loader's environment (`var`) without touching the
    /// disk; a relative setting is taken from `cwd`.
    pub fn resolve(
        var: impl Fn(&str) -> Option<OsString>,
        cwd: Option<&Path>,
    ) -> Result<Home, StateError> {
        let set = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = if let Some(home) = set(HOME_VAR) {
            home
        } else if let Some(data) = set("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
            // The XDG spec says a relative XDG_DATA_HOME is invalid and is ignored.
            data.join("capsule")
        } else if let Some(home) = set("HOME") {
            home.join(".local/share/capsule")
        } else {
            return Err(StateError::NoHome);
        };
        let root = match (root.is_absolute(), cwd) {
            (true, _) => root,
            (false, Some(cwd)) => cwd.join(root),
            (false, None) => {
                return Err(StateError::Io {
                    path: root,
                    error: io::Error::other("relative, and the current directory is unknown"),
                })
            }
        };
        let text = |key: &str| var(key).and_then(|v| v.into_string().ok());
        let capsules = match set(LOCAL_VAR).filter(|p| p.is_absolute()) {
            Some(local) => local.join(CAPSULES_DIR),
            None => match crate::slurm::local_home(&text) {
                Some(local) => local.join(CAPSULES_DIR),
                None => root.join(CAPSULES_DIR),
            },
        };
        Ok(Home { root, capsules })
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        let root = root.into();
        Home {
            capsules: root.join(CAPSULES_DIR),
            root,
        }
    }

    /// The directory holding every capsule's state directory.
    pub fn capsules(&self) -> &Path {
        &self.capsules
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the capsule `name` keeps its state (it may not exist yet).
    pub fn capsule_dir(&self, name: &str) -> PathBuf {
        self.capsules.join(name)
    }

    /// The capsule's upper layer (it may not exist yet).
    pub fn upper_dir(&self, name: &str) -> PathBuf {
        self.capsule_dir(name).join(UPPER_DIR)
    }

    /// A generated name whose directory does not exist yet.
    pub fn unused_name(&self) -> String {
        let mut name = generate_name();
        for _ in 0..16 {
            if !self.capsule_dir(&name).exists() {
                break;
            }
            name = generate_name();
        }
        name
    }

    /// Refuses when the capsule's `pid` file names a live process of that capsule.
    pub fn check_not_running(&self, name: &str) -> Result<(), StateError> {
        match running_pid(&self.capsule_dir(name)) {
            Some(pid) => Err(StateError::AlreadyRunning {
                name: name.to_string(),
                pid,
            }),
            None => Ok(()),
        }
    }

    /// Creates (or reuses) the capsule's directory and takes its lock; creates its
    /// `upper/` layer if it is not there yet.
    pub fn open_capsule(&self, name: &str) -> Result<CapsuleDir, StateError> {
        let capsules = self.capsules.clone();
        // The highest directory this call makes, so that a removal after a refused
        // start takes the whole new skeleton away again.
        let mut made = None;
        let mut probe = capsules.as_path();
        while fs::symlink_metadata(probe).is_err() {
            made = Some(probe.to_path_buf());
            match probe.parent() {
                Some(parent) => probe = parent,
                None => break,
            }
        }
        fs::create_dir_all(&capsules).map_err(io_error(&capsules))?;
        let path = self.capsule_dir(name);
        let created = match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => false,
            Err(e) => return Err(io_error(&path)(e)),
        };
        let lock_path = path.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        // SAFETY: `lock` is an open descriptor owned by this function; flock only
        // changes the lock state of its open file description.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(match running_pid(&path) {
                    Some(pid) => StateError::AlreadyRunning {
                        name: name.to_string(),
                        pid,
                    },
                    None => StateError::Locked {
                        name: name.to_string(),
                    },
                });
            }
            return Err(io_error(&lock_path)(err));
        }
        // Checked again under the lock: a program whose loader died may still run.
        if let Some(pid) = running_pid(&path) {
            return Err(StateError::AlreadyRunning {
                name: name.to_string(),
                pid,
            });
        }
        create_upper(&path.join(UPPER_DIR))?;
        // No process of the capsule runs (checked under the lock): every copy-up
        // temporary in its upper layer is the leftover of a killed one.
        let collected = collect_copy_up_leftovers(&path.join(UPPER_DIR));
        if collected > 0 {
            log::info!("capsule {name}: removed {collected} unfinished copy-ups");
        }
        Ok(CapsuleDir {
            name: name.to_string(),
            path,
            created,
            made,
            _lock: lock,
        })
    }
}

/// Creates the upper layer with mode 0755 whatever the umask; an existing directory is
/// kept as the capsule left it.
fn create_upper(upper: &Path) -> Result<(), StateError> {
    match fs::DirBuilder::new().mode(UPPER_MODE).create(upper) {
        Ok(()) => fs::set_permissions(upper, fs::Permissions::from_mode(UPPER_MODE))
            .map_err(io_error(upper)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(upper) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(io_error(upper)(io::Error::from_raw_os_error(libc::ENOTDIR))),
            Err(e) => Err(io_error(upper)(e)),
        },
        Err(e) => Err(io_error(upper)(e)),
    }
}

/// The name prefix of the shim's copy-up temporaries (`shim/src/fs/layers.rs`).
pub const COPY_UP_PREFIX: &str = ".capsule-copyup-";

/// Removes every copy-up temporary below the upper layer `dir` (not following
/// symbolic links); returns how many. Best effort: what cannot be read is skipped.
pub fn collect_copy_up_leftovers(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(COPY_UP_PREFIX.as_bytes())
        {
            let gone = if kind.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed += usize::from(gone.is_ok());
        } else if kind.is_dir() {
            removed += collect_copy_up_leftovers(&path);
        }
    }
    removed
}

/// Gives the owner full access to every directory below `dir` (not following symbolic
/// links), so that a tree whose program made read-only directories can be removed.
/// Best effort: what cannot be changed is left for the removal to report.
fn make_removable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_removable(&entry.path());
        }
    }
}

/// The pid in `dir/pid`, if it names a live process started for this capsule (its
/// environment points at this capsule's `config`, or, once the program has executed
/// another through the shim, which passes the settings on one by one, at this
/// capsule's state directory).
pub fn running_pid(dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(dir.join(PID_FILE)).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 0)?;
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    Marks::of(dir).in_environ(&environ).then_some(pid)
}

/// The environment entries that mark a process of the capsule whose state directory
/// is `dir`: `CAPSULE_CONFIG` at its `config`, or `CAPSULE_STATE_DIR` at `dir`.
pub struct Marks {
    config: Vec<u8>,
    state_dir: Vec<u8>,
}

impl Marks {
    pub fn of(dir: &Path) -> Marks {
        let mut config = format!("{}=", capsule_config::keys::CONFIG).into_bytes();
        config.extend_from_slice(dir.join(CONFIG_FILE).as_os_str().as_encoded_bytes());
        let mut state_dir = format!("{}=", capsule_config::keys::STATE_DIR).into_bytes();
        state_dir.extend_from_slice(dir.as_os_str().as_encoded_bytes());
        Marks { config, state_dir }
    }

    /// Whether `environ` (NUL-separated, as `/proc/PID/environ`) holds either mark.
    pub fn in_environ(&self, environ: &[u8]) -> bool {
        environ
            .split(|&b| b == 0)
            .any(|var| var == self.config.as_slice() || var == self.state_dir.as_slice())
    }
}

/// What identifies a file the loader wrote: a change by the capsule (a write, a
/// rename over it, a copy-up) changes its inode, size or modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(meta: &fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// The contents of [`LOADER_FILES`]: `F INO SIZE MTIME_NS PATH` and `D PATH` lines,
/// paths relative to the upper layer.
#[derive(Debug, Default)]
struct LoaderFiles {
    files: std::collections::BTreeMap<PathBuf, FileStamp>,
    dirs: std::collections::BTreeSet<PathBuf>,
}

impl LoaderFiles {
    fn to_text(&self) -> String {
        let mut out = String::new();
        for (path, s) in &self.files {
            out.push_str(&format!(
                "F {} {} {} {}\n",
                s.ino,
                s.size,
                s.mtime_ns,
                path.display()
            ));
        }
        for path in &self.dirs {
            out.push_str(&format!("D {}\n", path.display()));
        }
        out
    }
}

fn read_loader_files(dir: &Path) -> LoaderFiles {
    let mut out = LoaderFiles::default();
    let Ok(text) = fs::read_to_string(dir.join(LOADER_FILES)) else {
        return out;
    };
    for line in text.lines() {
        let mut words = line.splitn(5, ' ');
        match words.next() {
            Some("F") => {
                let stamp = (|| {
                    Some(FileStamp {
                        ino: words.next()?.parse().ok()?,
                        size: words.next()?.parse().ok()?,
                        mtime_ns: words.next()?.parse().ok()?,
                    })
                })();
                if let (Some(stamp), Some(path)) = (stamp, words.next()) {
                    out.files.insert(PathBuf::from(path), stamp);
                }
            }
            Some("D") => {
                if let Some(path) = line.get(2..) {
                    out.dirs.insert(PathBuf::from(path));
                }
            }
            _ => {}
        }
    }
    out
}

/// The paths of the upper layer of the capsule in `dir` (relative to the layer) that
/// the loader wrote and the capsule left as they were: its files unchanged, its
/// directories holding nothing else. `capsule diff` and `commit` leave them out.
pub fn loader_written(dir: &Path) -> std::collections::BTreeSet<PathBuf> {
    let written = read_loader_files(dir);
    let upper = dir.join(UPPER_DIR);
    let mut out = std::collections::BTreeSet::new();
    for (path, stamp) in &written.files {
        if fs::symlink_metadata(upper.join(path))
            .is_ok_and(|m| m.is_file() && FileStamp::of(&m) == *stamp)
        {
            out.insert(path.clone());
        }
    }
    // Deepest first, so that a parent sees its children already left out.
    for path in written.dirs.iter().rev() {
        let Ok(entries) = fs::read_dir(upper.join(path)) else {
            continue;
        };
        let only_ours = entries
            .flatten()
            .all(|e| out.contains(&path.join(e.file_name())));
        if only_ours {
            out.insert(path.clone());
        }
    }
    out
}

/// A capsule's state directory, locked by this process while the value lives.
#[derive(Debug)]
pub struct CapsuleDir {
    name: String,
    path: PathBuf,
    created: bool,
    /// The highest directory above it that [`Home::open_capsule`] made (the home, or
    /// its `capsules/`), removed with it when empty.
    made: Option<PathBuf>,
    _lock: File,
}

impl CapsuleDir {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this run created the directory (rather than reusing it).
    pub fn created(&self) -> bool {
        self.created
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    /// Forgets the previous run's `pid` and `exit`.
    pub fn clear_run(&self) -> Result<(), StateError> {
        for file in [PID_FILE, EXIT_FILE] {
            let path = self.path.join(file);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&path)(e)),
                _ => {}
            }
        }
        self.clear_ports()
    }

    /// Empties the port table in place: peers that mapped it from an earlier run
    /// then see the new run's ports, not the old ones (a new file would go unseen).
    fn clear_ports(&self) -> Result<(), StateError> {
        let path = self.path.join(PORTS_FILE);
        let mut file = match fs::OpenOptions::new().write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&path)(e)),
        };
        let len = file.metadata().map_err(io_error(&path))?.len();
        let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
        file.write_all(&zeros).map_err(io_error(&path))
    }

    pub fn write_config(&self, text: &str) -> Result<(), StateError> {
        self.write_atomically(CONFIG_FILE, text)
    }

    /// Gives the capsule an `/etc/hostname` holding its host name, in its upper
    /// layer (as `docker run --hostname` provides one); it shadows the root's.
    pub fn write_hostname(&self, hostname: &str) -> Result<(), StateError> {
        self.write_etc_file("hostname", &format!("{hostname}\n"))
    }

    /// Gives the capsule an `/etc/hosts` naming its peers, in its upper layer (as
    /// docker provides one): `base` (the root's own) and a line per peer. Programs
    /// that resolve names without the shim's resolver (static ones, Go's) find
    /// the peers there.
    pub fn write_hosts(&self, base: &str, peers: &[(String, [u8; 4])]) -> Result<(), StateError> {
        let mut text = base.to_string();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# the capsules started together (capsule up)\n");
        for (name, [a, b, c, d]) in peers {
            text.push_str(&format!("{a}.{b}.{c}.{d}\t{name}\n"));
        }
        self.write_etc_file("hosts", &text)
    }

    /// Writes `/etc/NAME` into the capsule's upper layer (atomically, mode 0644),
    /// recorded as the loader's (not the capsule's change).
    fn write_etc_file(&self, name: &str, text: &str) -> Result<(), StateError> {
        let etc = self.upper_path().join("etc");
        let mut written = read_loader_files(&self.path);
        if !etc.is_dir() {
            written.dirs.insert(PathBuf::from("etc"));
            fs::DirBuilder::new()
                .mode(UPPER_MODE)
                .recursive(true)
                .create(&etc)
                .map_err(io_error(&etc))?;
            fs::set_permissions(&etc, fs::Permissions::from_mode(UPPER_MODE))
                .map_err(io_error(&etc))?;
        }
        let file = etc.join(name);
        let whiteout = etc.join(format!(".wh.{name}"));
        if whiteout.exists() {
            fs::remove_file(&whiteout).map_err(io_error(&whiteout))?;
        }
        let temp = etc.join(format!(".capsule-copyup-{name}"));
        fs::write(&temp, text).map_err(io_error(&temp))?;
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o644)).map_err(io_error(&temp))?;
        fs::rename(&temp, &file).map_err(io_error(&file))?;
        let meta = fs::symlink_metadata(&file).map_err(io_error(&file))?;
        written
            .files
            .insert(PathBuf::from("etc").join(name), FileStamp::of(&meta));
        self.write_atomically(LOADER_FILES, &written.to_text())
    }

    pub fn write_pid(&self, pid: u32) -> Result<(), StateError> {
        self.write_atomically(PID_FILE, &format!("{pid}\n"))
    }

    pub fn write_exit(&self, line: &str) -> Result<(), StateError> {
        self.write_atomically(EXIT_FILE, &format!("{line}\n"))
    }

    /// Records the program's argv (`argv[0]` as the user wrote it) for `capsule ps`;
    /// called at every start, by `capsule run` and by the supervisor.
    pub fn write_command<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Result<(), StateError> {
        let mut bytes = Vec::new();
        for arg in argv {
            bytes.extend_from_slice(arg.as_ref().as_encoded_bytes());
            bytes.push(0);
        }
        let path = self.path.join(COMMAND_FILE);
        let tmp = self.path.join(format!(".{COMMAND_FILE}.tmp"));
        fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_error(&path))
    }

    /// Forgets an earlier `capsule stop`: called once when a capsule is started anew
    /// (not between a supervisor's restarts, which must keep honouring it).
    pub fn clear_stop(&self) -> Result<(), StateError> {
        let path = self.path.join(STOP_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Records the pid of the process that supervises (and may restart) the capsule.
    pub fn write_supervisor(&self, pid: u32) -> Result<(), StateError> {
        self.write_atomically(SUPERVISOR_FILE, &format!("{pid}\n"))
    }

    /// Says that nobody will restart the capsule any more.
    pub fn remove_supervisor(&self) -> Result<(), StateError> {
        let path = self.path.join(SUPERVISOR_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Opens the capsule's `log` for appending (created if missing).
    pub fn open_log(&self) -> Result<File, StateError> {
        let path = self.path.join(LOG_FILE);
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))
    }

    /// Opens the capsule's `log.index` for appending (created if missing).
    pub fn open_log_index(&self) -> Result<File, StateError> {
        let path = self.path.join(LOG_INDEX_FILE);
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))
    }

    /// The capsule's private upper layer.
    pub fn upper_path(&self) -> PathBuf {
        self.path.join(UPPER_DIR)
    }

    /// Deletes the directory and everything in it, the upper layer included (also
    /// directories the program made read-only).
    pub fn remove(self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                make_removable(&self.path);
                fs::remove_dir_all(&self.path).map_err(io_error(&self.path))?
            }
            result => result.map_err(io_error(&self.path))?,
        }
        Ok(())
    }

    /// Removes the directory of a start that failed, with the home skeleton this run
    /// made for it (when it is still empty): a refused start leaves nothing behind.
    pub fn discard(self) -> Result<(), StateError> {
        let made = self.made.clone();
        let path = self.path.clone();
        self.remove()?;
        if let Some(top) = &made {
            // Only while empty: another capsule may have started there meanwhile.
            let mut dir = path.parent();
            while let Some(d) = dir {
                if fs::remove_dir(d).is_err() || d == top {
                    break;
                }
                dir = d.parent();
            }
        }
        Ok(())
    }

    /// Writes `file` so that a reader never sees it half-written.
    fn write_atomically(&self, file: &str, text: &str) -> Result<(), StateError> {
        let path = self.path.join(file);
        let tmp = self.path.join(format!(".{file}.tmp"));
        let mut out = File::create(&tmp).map_err(io_error(&tmp))?;
        out.write_all(text.as_bytes()).map_err(io_error(&tmp))?;
        drop(out);
        fs::rename(&tmp, &path).map_err(io_error(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn names() {
        for good in ["a", "db1", "web.example-1_x", "0", &"x".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a/b",
            "a b",
            "é",
            "a:b",
            &"x".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        let err = validate_name("a/b").unwrap_err().to_string();
        assert!(err.starts_with("\"a/b\": "), "{err}");
    }

    #[test]
    fn generated_names_are_valid_and_differ() {
        let a = generate_name();
        let b = generate_name();
        assert!(validate_name(&a).is_ok());
        assert!(a.starts_with("capsule-") && a.len() == 16, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn home_resolution_order() {
        let cwd = Path::new("/work");
        let home = |vars: &[(&str, &str)]| Home::resolve(env(vars), Some(cwd));
        assert_eq!(
            home(&[
                ("CAPSULE_HOME", "/c"),
                ("XDG_DATA_HOME", "/x"),
                ("HOME", "/h")
            ])
            .unwrap()
            .root(),
            Path::new("/c")
        );
        assert_eq!(
            home(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")])
                .unwrap()
                .root(),
            Path::new("/x/capsule")
        );
        assert_eq!(
            home(&[
                ("CAPSULE_HOME", ""),
                ("XDG_DATA_HOME", "rel"),
                ("HOME", "/h")
            ])
            .unwrap()
            .root(),
            Path::new("/h/.local/share/capsule")
        );
        assert_eq!(
            home(&[("CAPSULE_HOME", "state")]).unwrap().root(),
            Path::new("/work/state")
        );
        assert!(matches!(home(&[]), Err(StateError::NoHome)));
        assert_eq!(
            Home::at("/c").capsule_dir("db"),
            Path::new("/c/capsules/db")
        );
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("capsule-state-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn open_writes_and_removes() {
        let root = scratch("open");
        let home = Home::at(&root);
        home.check_not_running("db").unwrap();
        assert!(!root.exists(), "checking created something");
        let dir = home.open_capsule("db").unwrap();
        assert!(dir.created());
        let upper = root.join("capsules/db/upper");
        assert_eq!(dir.upper_path(), upper);
        assert_eq!(home.upper_dir("db"), upper);
        let mode = fs::metadata(&upper).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        fs::write(upper.join("kept"), "x").unwrap();
        dir.write_config("CAPSULE_NAME=db\n").unwrap();
        dir.write_pid(1).unwrap();
        dir.write_exit("exit=0").unwrap();
        assert_eq!(
            fs::read_to_string(root.join("capsules/db/pid")).unwrap(),
            "1\n"
        );
        // A second opener is refused while the first holds the lock.
        assert!(matches!(
            home.open_capsule("db"),
            Err(StateError::Locked { .. })
        ));
        dir.clear_run().unwrap();
        assert!(!root.join("capsules/db/pid").exists());
        drop(dir);
        let again = home.open_capsule("db").unwrap();
        assert!(!again.created());
        assert!(upper.join("kept").exists(), "the upper layer is reused");
        // Removal copes with directories the program made read-only.
        fs::create_dir_all(upper.join("ro/sub")).unwrap();
        fs::write(upper.join("ro/sub/f"), "x").unwrap();
        fs::set_permissions(upper.join("ro/sub"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(upper.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        again.remove().unwrap();
        assert!(!root.join("capsules/db").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_upper_layer_is_added_to_an_old_capsule_dir() {
        let root = scratch("old");
        let home = Home::at(&root);
        fs::create_dir_all(root.join("capsules/db")).unwrap();
        let dir = home.open_capsule("db").unwrap();
        assert!(!dir.created());
        assert!(dir.upper_path().is_dir());
        drop(dir);
        fs::remove_dir(root.join("capsules/db/upper")).unwrap();
        fs::write(root.join("capsules/db/upper"), "").unwrap();
        let err = home.open_capsule("db").unwrap_err();
        assert!(err.to_string().ends_with("upper: not a directory"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_stale_pid_does_not_count_as_running() {
        let root = scratch("stale");
        let home = Home::at(&root);
        let dir = root.join("capsules/db");
        fs::create_dir_all(&dir).unwrap();
        // Our own pid is live but its environment does not point at this capsule.
        fs::write(dir.join(PID_FILE), format!("{}\n", std::process::id())).unwrap();
        home.check_not_running("db").unwrap();
        fs::write(dir.join(PID_FILE), "garbage").unwrap();
        home.check_not_running("db").unwrap();
        fs::remove_dir_all(&root).unwrap();
    }
}
