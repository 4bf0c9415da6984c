//! The shim's own log: off by default; `CAPSULE_LOG=debug` turns it on, written with
//! `write(2)` to `CAPSULE_LOG_FILE` (`stderr` names the standard error), else to
//! `shim.log` in the capsule's state directory, else to standard error. Never to the
//! application's stdout/stderr unless asked. Records are formatted into a stack
//! buffer: no allocation, no lock.

use std::ffi::CString;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use capsule_config::{layout, LogLevel};

use crate::runtime::Runtime;

static FD: AtomicI32 = AtomicI32::new(-1);
/// Device and inode of the log file: the application may close our descriptor and
/// reuse its number, so each write first checks it still is our file.
static IDENTITY: AtomicU64 = AtomicU64::new(0);

struct Logger;
static LOGGER: Logger = Logger;

/// Descriptors below this are left to the application.
const LOG_FD_FLOOR: i32 = 500;

fn file_identity(fd: i32) -> Option<u64> {
    // SAFETY: fstat into a zeroed buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st.st_dev ^ st.st_ino.rotate_left(32))
    }
}

/// The log's descriptor, or -1 (the backstop's supervisor keeps it open).
pub fn fd() -> i32 {
    FD.load(Ordering::Relaxed)
}

pub fn init(runtime: &Runtime) {
    let config = &runtime.config;
    if config.log == LogLevel::Off {
        return;
    }
    let fd = match (config.log_file.as_deref(), config.state_dir.as_deref()) {
        (Some("stderr"), _) => 2,
        (Some(path), _) => open_append(path),
        (None, Some(dir)) => open_append(&format!("{dir}/{}", layout::SHIM_LOG_FILE)),
        (None, None) => 2,
    };
    if fd < 0 {
        return;
    }
    let Some(id) = file_identity(fd) else { return };
    FD.store(fd, Ordering::Relaxed);
    IDENTITY.store(id, Ordering::Relaxed);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(match config.log {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        });
    }
}

fn open_append(path: &str) -> i32 {
    let Ok(path) = CString::new(path) else {
        return -1;
    };
    // SAFETY: open of a valid path; the descriptor is moved above the range
    // applications use and closed on exec (children open their own).
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            return -1;
        }
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, LOG_FD_FLOOR);
        if high >= 0 {
            libc::close(fd);
            high
        } else {
            fd
        }
    }
}

/// The shim's log descriptor, if it has one (spared by `close_range`/`closefrom`).
pub fn own_fd() -> Option<u32> {
    let fd = FD.load(Ordering::Relaxed);
    (fd > 2).then_some(fd as u32)
}

/// One line about the capsule this process runs in, when debugging.
pub fn debug_startup(runtime: &Runtime) {
    log::debug!("loaded from {:?}: {:?}", runtime.shim_path, runtime.config);
}

struct StackBuf {
    bytes: [u8; 1024],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.bytes.len() - 1 - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        crate::hook::errno_kept(|| self.write_record(record));
    }

    fn flush(&self) {}
}

impl Logger {
    fn write_record(&self, record: &log::Record) {
        let fd = FD.load(Ordering::Relaxed);
        if fd < 0 || file_identity(fd) != Some(IDENTITY.load(Ordering::Relaxed)) {
            return;
        }
        let mut buf = StackBuf {
            bytes: [0; 1024],
            len: 0,
        };
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let _ = write!(
            buf,
            "capsule[{pid}] {} {}: {}",
            record.level(),
            record.target().trim_start_matches("capsule::"),
            record.args()
        );
        buf.bytes[buf.len] = b'\n';
        // SAFETY: write(2) of our own buffer.
        unsafe { libc::write(fd, buf.bytes.as_ptr().cast(), buf.len + 1) };
    }
}
