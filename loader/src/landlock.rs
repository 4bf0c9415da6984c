//! The kernel backstop: a Landlock domain around every capsule process.
//!
//! The shim keeps the lower layer, `:ro` volumes and `--read-only` capsules unchanged
//! by interposing libc; whatever it misses (a magic link such as `/proc/self/fd/N`, a
//! raw system call, a static binary) would reach the host. Landlock (Linux ≥ 5.13)
//! lets an unprivileged process restrict itself and its descendants for good, so the
//! loader restricts each program it starts, between fork and exec:
//!
//! - writes (write, truncate, create, remove, rename/link) only beneath the capsule's
//!   upper layer (not with `--read-only`), its `rw` volumes, the files of its state
//!   directory the shim writes (`shared`, `ports`, its log), `/dev`, and plain writes
//!   to `/proc` files;
//! - in a capsule with its own root (`--root`, `--image`), reads and exec too: only in
//!   the root, the state directory (upper layer included), the volumes, the shim,
//!   `/proc`, `/dev`, `/sys`, the peers' state directories (their port tables), and
//!   what the host's dynamic loader needs to start the first program (its `PT_INTERP`,
//!   `/etc/ld.so.cache`, the host library directories, read-only, not listable), and
//!   the host resolver's files (`/etc/resolv.conf`, `/etc/hosts`…), read-only.
//!
//! Invariants:
//! - only the rights of the running kernel's ABI are handled (v1 the basic ones, v2
//!   `REFER`, v3 `TRUNCATE`, v5 `IOCTL_DEV`); a kernel without Landlock, or
//!   `CAPSULE_LANDLOCK=off`, runs without it, said once at warn level;
//! - the ruleset is built before fork (paths opened `O_PATH`, rules added); the child
//!   only calls `prctl(PR_SET_NO_NEW_PRIVS)` and `landlock_restrict_self`, two system
//!   calls, async-signal-safe and allocation-free;
//! - a domain only narrows across exec: a process of the capsule, a nested `capsule
//!   run` or `capsule exec` included, never gets more than its capsule was given;
//! - rules are attached to inodes: every path is opened after the state directory was
//!   prepared for this start (the shim's state files exist, created here if needed);
//! - Landlock does not govern metadata (`chmod`, `chown`, `utimensat`, xattrs, inode
//!   flags): those stay the shim's alone to keep off the lower layer.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use capsule_config::{layout, Config, LogLevel};
use log::{debug, warn};

/// The environment variable that turns the backstop off (`off`, `0`, `no`).
pub const SETTING: &str = "CAPSULE_LANDLOCK";

/// Landlock's file-system access rights (`LANDLOCK_ACCESS_FS_*`).
pub mod access {
    pub const EXECUTE: u64 = 1 << 0;
    pub const WRITE_FILE: u64 = 1 << 1;
    pub const READ_FILE: u64 = 1 << 2;
    pub const READ_DIR: u64 = 1 << 3;
    pub const REMOVE_DIR: u64 = 1 << 4;
    pub const REMOVE_FILE: u64 = 1 << 5;
    pub const MAKE_CHAR: u64 = 1 << 6;
    pub const MAKE_DIR: u64 = 1 << 7;
    pub const MAKE_REG: u64 = 1 << 8;
    pub const MAKE_SOCK: u64 = 1 << 9;
    pub const MAKE_FIFO: u64 = 1 << 10;
    pub const MAKE_BLOCK: u64 = 1 << 11;
    pub const MAKE_SYM: u64 = 1 << 12;
    /// ABI 2.
    pub const REFER: u64 = 1 << 13;
    /// ABI 3.
    pub const TRUNCATE: u64 = 1 << 14;
    /// ABI 5.
    pub const IOCTL_DEV: u64 = 1 << 15;

    /// Reading and running.
    pub const READ: u64 = EXECUTE | READ_FILE | READ_DIR;
    /// Every change to names and contents.
    pub const WRITE: u64 = WRITE_FILE
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM
        | REFER
        | TRUNCATE;
    /// The rights a rule on a file (not a directory) may carry.
    pub const FILE: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

    /// What the kernel's Landlock ABI `abi` knows.
    pub fn known(abi: i64) -> u64 {
        let mut known = (1 << 13) - 1;
        if abi >= 2 {
            known |= REFER;
        }
        if abi >= 3 {
            known |= TRUNCATE;
        }
        if abi >= 5 {
            known |= IOCTL_DEV;
        }
        known
    }
}

// The system call numbers are the same on every architecture (asm-generic).
const SYS_CREATE_RULESET: libc::c_long = 444;
const SYS_ADD_RULE: libc::c_long = 445;
const SYS_RESTRICT_SELF: libc::c_long = 446;
const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// One path and what may be done beneath it (or to it, for a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathBuf,
    pub access: u64,
}

/// What a capsule's domain allows, computed from its configuration; nothing opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The rights the domain governs: writes always, reads and exec with a root.
    pub handled: u64,
    pub rules: Vec<Rule>,
    /// Files the shim would create that must exist before a rule can name them.
    pub create: Vec<PathBuf>,
    /// Read-only places the kernel cannot keep read-only: each lies beneath a place
    /// that is writable (a `:ro` volume inside an `rw` one...), with that place.
    pub exposed: Vec<(PathBuf, PathBuf)>,
}

/// The host files glibc's resolver reads with its own internal `open` (which no
/// preload hook sees) to turn a host name into an address: a capsule's names that are
/// not capsules' are the host resolver's, as its `/etc/resolv.conf` is a container's
/// in Docker. Read-only, each file alone (a missing one gets no rule).
pub const RESOLVER_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
];

/// What the host's dynamic loader needs to start a root's first program, before the
/// shim re-runs it with the root's own loader (and throughout, for a root whose glibc
/// is too old): the program's `PT_INTERP` (for a `#!` script, which the kernel starts
/// with the host's interpreter, that interpreter and its `PT_INTERP`), its cache, and
/// the directories of the host's C library and the shim's dependencies, files
/// readable, not listable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostLoader {
    /// Host files the kernel executes to start the program.
    pub interpreters: Vec<PathBuf>,
    pub library_dirs: Vec<PathBuf>,
}

impl HostLoader {
    /// For the host program `executable`; the library directories are those the
    /// loader's own process has libraries from (it links what the shim links).
    pub fn of(executable: &Path) -> HostLoader {
        let mut library_dirs: Vec<PathBuf> = Vec::new();
        let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
        for line in maps.lines() {
            let Some(path) = line.split_whitespace().nth(5).map(Path::new) else {
                continue;
            };
            let is_library = path
                .file_name()
                .is_some_and(|n| n.as_bytes().windows(3).any(|w| w == b".so"));
            if let (true, Some(dir)) = (is_library && path.is_absolute(), path.parent()) {
                if !library_dirs.iter().any(|d| d == dir) {
                    library_dirs.push(dir.to_path_buf());
                }
            }
        }
        let mut interpreters = Vec::new();
        if let Some(script) = script_interpreter(executable) {
            interpreters.extend(interpreter_of(&script));
            interpreters.push(script);
        }
        interpreters.extend(interpreter_of(executable));
        // A static program starts through capsule-trampoline, a host program of
        // the shim's C library: the loader's own dynamic loader runs it.
        if is_static_program(executable) || is_go_program(executable) {
            let own = std::env::current_exe().ok();
            interpreters.extend(own.as_deref().and_then(interpreter_of));
        }
        HostLoader {
            interpreters,
            library_dirs,
        }
    }
}

impl Policy {
    /// The policy of a capsule configured by `config`, whose processes load `shim`;
    /// `host` is what the host's dynamic loader needs (used with a root only).
    pub fn for_capsule(config: &Config, shim: &Path, host: &HostLoader) -> Policy {
        use access::*;
        let fs = &config.fs;
        let own_root = fs.root.is_some();
        let read = if own_root { READ } else { 0 };
        let mut handled = WRITE | IOCTL_DEV;
        if own_root {
            handled |= READ;
        }
        let mut rules = Vec::new();
        let mut rule = |path: &Path, access: u64| {
            if access != 0 {
                rules.push(Rule {
                    path: path.to_path_buf(),
                    access,
                });
            }
        };
        let mut create = Vec::new();
        let mut writable: Vec<PathBuf> = Vec::new();
        let mut read_only: Vec<PathBuf> = Vec::new();

        if let Some(root) = &fs.root {
            rule(Path::new(root), read);
            read_only.push(PathBuf::from(root));
        }
        if let Some(state_dir) = &config.state_dir {
            let state = Path::new(state_dir);
            rule(state, read);
            for file in [layout::SHARED_FILE, layout::PORTS_FILE] {
                create.push(state.join(file));
            }
            if config.log != LogLevel::Off && config.log_file.is_none() {
                create.push(state.join(layout::SHIM_LOG_FILE));
            }
            // Peers' port tables, read by the shim to reach them by name.
            for peer in &config.net.peers {
                let Some(dir) = layout::peer_dir(state_dir, peer) else {
                    continue;
                };
                if Path::new(&dir) != state {
                    rule(Path::new(&dir), read & (READ_FILE | READ_DIR));
                }
            }
        }
        if let Some(log) = config.log_file.as_deref().filter(|f| *f != "stderr") {
            create.push(PathBuf::from(log));
        }
        for file in &create {
            rule(file, WRITE_FILE | TRUNCATE | read & READ_FILE);
        }
        if let Some(upper) = &fs.upper {
            if fs.read_only {
                rule(Path::new(upper), read);
                read_only.push(PathBuf::from(upper));
            } else {
                rule(Path::new(upper), read | WRITE);
                writable.push(PathBuf::from(upper));
            }
        }
        for volume in &fs.volumes {
            let host = Path::new(&volume.host);
            if volume.read_only {
                rule(host, read);
                read_only.push(host.to_path_buf());
            } else {
                rule(host, read | WRITE);
                writable.push(host.to_path_buf());
            }
        }
        rule(shim, (EXECUTE | READ_FILE) & handled);
        // Exec inside the capsule gives a program of the other C library the other
        // shim, from beside this one.
        // The trampoline of static programs (shim/src/backstop) beside it too.
        for other in [
            crate::shim::SHIM_FILE,
            crate::shim::MUSL_SHIM_FILE,
            crate::launch::TRAMPOLINE_FILE,
        ] {
            let other = shim.with_file_name(other);
            if other != shim && other.is_file() {
                rule(&other, (EXECUTE | READ_FILE) & handled);
            }
        }
        rule(Path::new("/dev"), read & !EXECUTE | WRITE | IOCTL_DEV);
        writable.push(PathBuf::from("/dev"));
        rule(Path::new("/proc"), read & !EXECUTE | WRITE_FILE | TRUNCATE);
        rule(Path::new("/sys"), read & !EXECUTE);
        if own_root {
            for interpreter in &host.interpreters {
                rule(interpreter, EXECUTE | READ_FILE);
            }
            rule(Path::new("/etc/ld.so.cache"), READ_FILE);
            for dir in &host.library_dirs {
                rule(dir, READ_FILE);
            }
            for file in RESOLVER_FILES {
                rule(Path::new(file), READ_FILE);
            }
        }

        let exposed = read_only
            .iter()
            .filter_map(|ro| {
                writable
                    .iter()
                    .find(|w| ro.starts_with(w))
                    .map(|w| (ro.clone(), w.clone()))
            })
            .collect();
        Policy {
            handled,
            rules,
            create,
            exposed,
        }
    }
}

/// The configuration the program will really run under. A `capsule run` (or `exec`)
/// inside a capsule is itself a capsule process: the shim in it hands its own
/// capsule's settings to every program it starts, so the program joins that outer
/// capsule, and the outer configuration is the one to allow (Landlock intersects it
/// with the outer domain in any case: nothing is widened).
pub fn governing_config(own: &Config, loader_config: Option<&OsStr>) -> Config {
    let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let under_shim = maps
        .lines()
        .any(|l| l.ends_with("/libcapsule.so") || l.ends_with("/libcapsule-musl.so"));
    let outer = loader_config
        .filter(|_| under_shim)
        .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
        .and_then(|dir| crate::inspect::read_config(&dir).ok());
    match outer {
        Some(outer) => {
            debug!("Landlock: inside a capsule: its configuration governs the program");
            outer
        }
        None => own.clone(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackstopError {
    #[error("Landlock: {what}: {}", crate::describe_io(.error))]
    Syscall { what: String, error: io::Error },
    #[error("Landlock: {}: {}", .path.display(), crate::describe_io(.error))]
    Path { path: PathBuf, error: io::Error },
}

/// A Landlock ruleset, ready for [`Backstop::restrict_self`] in a child.
#[derive(Debug)]
pub struct Backstop {
    ruleset: OwnedFd,
    abi: i64,
}

/// Whether "running without the backstop" was said already.
static SAID: AtomicBool = AtomicBool::new(false);

fn say_once(text: std::fmt::Arguments) {
    if !SAID.swap(true, Ordering::Relaxed) {
        warn!("{text}");
    }
}

/// The Landlock ABI version of the running kernel, or why there is none.
pub fn abi_version() -> Result<i64, io::Error> {
    // SAFETY: with a null attribute, size 0 and the VERSION flag, the kernel only
    // returns its ABI version; nothing is read or written.
    let abi = unsafe {
        libc::syscall(
            SYS_CREATE_RULESET,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if abi < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(abi)
    }
}

/// Whether `CAPSULE_LANDLOCK` asks to run without the backstop.
pub fn disabled(setting: Option<&OsStr>) -> bool {
    matches!(
        setting.map(|v| v.to_string_lossy().to_ascii_lowercase()),
        Some(v) if matches!(v.as_str(), "off" | "0" | "no" | "false")
    )
}

impl Backstop {
    /// Builds the ruleset of `policy`: creates the state files it names, opens each
    /// path (`O_PATH`), adds the rules. `None` when the backstop is off or the kernel
    /// has no Landlock (said once).
    pub fn build(
        policy: &Policy,
        setting: Option<&OsStr>,
    ) -> Result<Option<Backstop>, BackstopError> {
        if disabled(setting) {
            say_once(format_args!(
                "{SETTING}=off: running without the kernel backstop (Landlock); only the shim keeps the lower layer and read-only volumes unchanged"
            ));
            return Ok(None);
        }
        let abi = match abi_version() {
            Ok(abi) => abi,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EOPNOTSUPP)) => {
                say_once(format_args!(
                    "Landlock is not available ({}): running without the kernel backstop; only the shim keeps the lower layer and read-only volumes unchanged",
                    crate::describe_io(&e)
                ));
                return Ok(None);
            }
            Err(error) => {
                return Err(BackstopError::Syscall {
                    what: "ABI version".into(),
                    error,
                })
            }
        };
        for (ro, w) in &policy.exposed {
            warn!(
                "{} is inside the writable {}: the kernel backstop cannot keep it read-only (the shim still does)",
                ro.display(),
                w.display()
            );
        }
        for file in &policy.create {
            create_file(file)?;
        }
        let known = access::known(abi);
        let handled = policy.handled & known;
        let attr = RulesetAttr {
            handled_access_fs: handled,
        };
        // SAFETY: `attr` is a valid, initialised attribute of the size given.
        let fd = unsafe {
            libc::syscall(
                SYS_CREATE_RULESET,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(BackstopError::Syscall {
                what: "create_ruleset".into(),
                error: io::Error::last_os_error(),
            });
        }
        // SAFETY: the kernel just returned this descriptor (close-on-exec) to us.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        for rule in &policy.rules {
            add_rule(&ruleset, rule, handled)?;
        }
        debug!(
            "Landlock ABI {abi}: handled {handled:#x}, {} rules",
            policy.rules.len()
        );
        Ok(Some(Backstop { ruleset, abi }))
    }

    pub fn abi(&self) -> i64 {
        self.abi
    }

    /// The raw descriptor, for [`Backstop::restrict_self`] in a forked child.
    pub fn raw_fd(&self) -> RawFd {
        self.ruleset.as_raw_fd()
    }

    /// Puts the calling process in the domain of ruleset `fd`: for a child between
    /// fork and exec. Only two system calls: async-signal-safe, no allocation.
    ///
    /// # Safety
    /// `fd` must be a Landlock ruleset descriptor open in the calling process.
    pub unsafe fn restrict_self(fd: RawFd) -> io::Result<()> {
        // SAFETY: prctl with integer arguments and landlock_restrict_self on a
        // descriptor the caller guarantees; neither touches memory of ours.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(SYS_RESTRICT_SELF, fd, 0u32) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Creates `path` empty if it does not exist (mode 0600, as the shim would), never
/// truncating it.
fn create_file(path: &Path) -> Result<(), BackstopError> {
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map(drop)
        .map_err(|error| BackstopError::Path {
            path: path.to_path_buf(),
            error,
        })
}

fn add_rule(ruleset: &OwnedFd, rule: &Rule, handled: u64) -> Result<(), BackstopError> {
    let fail = |error: io::Error| BackstopError::Path {
        path: rule.path.clone(),
        error,
    };
    let Ok(c_path) = CString::new(rule.path.as_os_str().as_bytes()) else {
        return Err(fail(io::Error::from_raw_os_error(libc::EINVAL)));
    };
    // SAFETY: a NUL-terminated path; O_PATH opens nothing for reading or writing.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        let error = io::Error::last_os_error();
        if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) {
            // Nothing there (a host without /lib64, a peer not made yet): no rule.
            debug!("Landlock: no {}: no rule", rule.path.display());
            return Ok(());
        }
        return Err(fail(error));
    }
    // SAFETY: just opened, ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut access = rule.access & handled;
    // SAFETY: zeroed stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        access &= access::FILE;
    }
    if access == 0 {
        return Ok(());
    }
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: fd.as_raw_fd(),
    };
    // SAFETY: `attr` is a valid path-beneath attribute; both descriptors are open.
    let rc = unsafe {
        libc::syscall(
            SYS_ADD_RULE,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    if rc != 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    Ok(())
}

/// The interpreter a `#!` line of `path` names, if it is a script.
pub fn script_interpreter(path: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let name = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|w| !w.is_empty())?;
    Some(PathBuf::from(OsStr::from_bytes(name))).filter(|p| p.is_absolute())
}

/// Whether `path` is an ELF executable without `PT_INTERP`: statically linked.
pub fn is_static_program(path: &Path) -> bool {
    matches!(elf_interpreter(path), Some(None))
}

/// Whether `path` is a Go program (a `PT_NOTE` with Go's build id), which makes its
/// own system calls even when it is linked dynamically.
pub fn is_go_program(path: &Path) -> bool {
    let mut head = Vec::with_capacity(4096);
    if fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .is_err()
    {
        return false;
    }
    let d = head.as_slice();
    let u16_at = |at: usize| Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?));
    let go_note = || -> Option<bool> {
        if d.get(..4)? != b"\x7fELF" {
            return Some(false);
        }
        let phoff = usize::try_from(u64_at(0x20)?).ok()?;
        let phentsize = usize::from(u16_at(0x36)?);
        for i in 0..usize::from(u16_at(0x38)?) {
            let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
            if u32_at(at)? != 4 {
                continue; // not PT_NOTE
            }
            let start = usize::try_from(u64_at(at + 8)?).ok()?;
            let end = start.checked_add(usize::try_from(u64_at(at + 32)?).ok()?)?;
            let mut n = start;
            while n + 12 <= end {
                let (namesz, descsz, kind) =
                    (u32_at(n)? as usize, u32_at(n + 4)? as usize, u32_at(n + 8)?);
                // Go writes its owner name "Go\0\0" (namesz 4).
                let name = d.get(n + 12..n + 12 + namesz).unwrap_or_default();
                if kind == 4 && name.starts_with(b"Go\0") {
                    return Some(true);
                }
                n += 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
            }
        }
        Some(false)
    };
    go_note().unwrap_or(false)
}

/// The `PT_INTERP` of the ELF executable `path` (its host dynamic loader), if any.
pub fn interpreter_of(path: &Path) -> Option<PathBuf> {
    elf_interpreter(path).flatten()
}

/// `None`: not a 64-bit ELF file; `Some(None)`: one without `PT_INTERP`.
fn elf_interpreter(path: &Path) -> Option<Option<PathBuf>> {
    let mut head = Vec::with_capacity(4096);
    fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .ok()?;
    let d = head.as_slice();
    if d.get(..4)? != b"\x7fELF" || *d.get(4)? != 2 {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let kind = u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?);
        if kind == 3 {
            let off = usize::try_from(u64_at(at + 8)?).ok()?;
            let size = usize::try_from(u64_at(at + 32)?).ok()?;
            let name = d.get(off..off.checked_add(size)?)?;
            let name = name.split(|&b| b == 0).next()?;
            return Some(Some(PathBuf::from(OsStr::from_bytes(name))));
        }
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::access::*;
    use super::*;
    use capsule_config::{FsConfig, Volume};

    fn config(root: Option<&str>, read_only: bool) -> Config {
        Config {
            state_dir: Some("/h/capsules/a".into()),
            fs: FsConfig {
                root: root.map(Into::into),
                upper: Some("/h/capsules/a/upper".into()),
                volumes: vec![
                    Volume {
                        host: "/srv/rw".into(),
                        path: "/rw".into(),
                        read_only: false,
                    },
                    Volume {
                        host: "/srv/rw/ro".into(),
                        path: "/ro".into(),
                        read_only: true,
                    },
                ],
                read_only,
            },
            ..Config::default()
        }
    }

    fn access_of(policy: &Policy, path: &str) -> Option<u64> {
        policy
            .rules
            .iter()
            .find(|r| r.path == Path::new(path))
            .map(|r| r.access)
    }

    #[test]
    fn host_root_capsules_govern_writes_only() {
        let p = Policy::for_capsule(
            &config(None, false),
            Path::new("/s/lib.so"),
            &HostLoader::default(),
        );
        assert_eq!(p.handled & READ, 0);
        assert_eq!(access_of(&p, "/h/capsules/a/upper"), Some(WRITE));
        assert_eq!(access_of(&p, "/srv/rw"), Some(WRITE));
        // A :ro volume and the state directory itself get no rule: nothing to allow.
        assert_eq!(access_of(&p, "/srv/rw/ro"), None);
        assert_eq!(access_of(&p, "/h/capsules/a"), None);
        assert_eq!(
            access_of(&p, "/h/capsules/a/shared"),
            Some(WRITE_FILE | TRUNCATE)
        );
        assert_eq!(access_of(&p, "/proc"), Some(WRITE_FILE | TRUNCATE));
        assert_eq!(access_of(&p, "/dev"), Some(WRITE | IOCTL_DEV));
        // The :ro volume inside the rw one cannot be kept read-only by the kernel.
        assert_eq!(
            p.exposed,
            vec![(PathBuf::from("/srv/rw/ro"), PathBuf::from("/srv/rw"))]
        );
    }

    #[test]
    fn read_only_capsules_write_only_their_state_files_and_rw_volumes() {
        let host = HostLoader {
            interpreters: vec!["/lib64/ld.so".into()],
            library_dirs: vec!["/usr/lib/x86_64-linux-gnu".into()],
        };
        let p = Policy::for_capsule(&config(Some("/r"), true), Path::new("/s/lib.so"), &host);
        assert_eq!(p.handled & READ, READ);
        assert_eq!(access_of(&p, "/h/capsules/a/upper"), Some(READ));
        assert_eq!(access_of(&p, "/r"), Some(READ));
        assert_eq!(access_of(&p, "/srv/rw/ro"), Some(READ));
        assert_eq!(access_of(&p, "/srv/rw"), Some(READ | WRITE));
        assert_eq!(access_of(&p, "/s/lib.so"), Some(EXECUTE | READ_FILE));
        assert_eq!(access_of(&p, "/usr/lib/x86_64-linux-gnu"), Some(READ_FILE));
        assert_eq!(access_of(&p, "/lib64/ld.so"), Some(EXECUTE | READ_FILE));
        assert_eq!(access_of(&p, "/sys"), Some(READ_FILE | READ_DIR));
        assert_eq!(access_of(&p, "/etc/resolv.conf"), Some(READ_FILE));
        assert_eq!(access_of(&p, "/etc/passwd"), None);
        assert!(p
            .rules
            .iter()
            .all(|r| r.access & WRITE == 0 || !r.path.starts_with("/r")));
    }

    #[test]
    fn abi_versions_add_rights() {
        assert_eq!(known(1) & (REFER | TRUNCATE | IOCTL_DEV), 0);
        assert_eq!(known(2) & REFER, REFER);
        assert_eq!(known(4) & IOCTL_DEV, 0);
        assert_eq!(known(7), (1 << 16) - 1);
    }

    #[test]
    fn off_is_off() {
        assert!(disabled(Some(OsStr::new("off"))));
        assert!(disabled(Some(OsStr::new("0"))));
        assert!(!disabled(Some(OsStr::new("on"))));
        assert!(!disabled(None));
    }

    #[test]
    fn the_host_loader_needs_the_c_library_directory() {
        let host = HostLoader::of(Path::new("/bin/sh"));
        assert_eq!(host.interpreters.len(), 1);
        let libc_dir = host.library_dirs.iter().any(|d| {
            fs::read_dir(d).is_ok_and(|mut e| {
                e.any(|f| f.is_ok_and(|f| f.file_name().to_string_lossy().starts_with("libc.so")))
            })
        });
        assert!(libc_dir, "{:?}", host.library_dirs);
    }

    #[test]
    fn reads_the_interpreter_of_a_host_program() {
        let sh = interpreter_of(Path::new("/bin/sh"));
        assert!(sh.as_deref().is_some_and(|p| p.is_absolute()), "{sh:?}");
        assert_eq!(interpreter_of(Path::new("/etc/passwd")), None);
        let dir = std::env::temp_dir().join(format!("capsule-ll-script-{}", std::process::id()));
        fs::write(&dir, "#! /bin/sh -e\necho\n").unwrap();
        let host = HostLoader::of(&dir);
        fs::remove_file(&dir).unwrap();
        assert_eq!(host.interpreters.len(), 2, "{host:?}");
        assert_eq!(host.interpreters[1], Path::new("/bin/sh"));
    }
}
