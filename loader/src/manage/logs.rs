//! `capsule logs`: the output lines a supervisor (`capsule up`) keeps in the capsule's
//! `log` file; with `follow`, what it appends afterwards too, until the capsule is no
//! longer running, no supervisor will start it again, and its last output is in.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::ManageError;
use crate::inspect::{existing_dir, stop_requested, supervisor_pid};
use crate::state::{self, Home, LOG_FILE, SUPERVISOR_FILE};

/// How often a followed log is looked at for more.
const POLL: Duration = Duration::from_millis(100);

/// Copies the log of capsule `name` to `out`; with `follow`, until the capsule is done.
pub fn logs(
    home: &Home,
    name: &str,
    follow: bool,
    out: &mut impl Write,
) -> Result<(), ManageError> {
    let dir = existing_dir(home, name)?;
    let path = dir.join(LOG_FILE);
    if !path.exists() && !dir.join(SUPERVISOR_FILE).exists() {
        return Err(ManageError::NoLog(name.to_string()));
    }
    let mut reader = LogReader::default();
    loop {
        // Decided before reading, so that the last lines are read after the end: the
        // capsule is done, and nobody writes its log any more (the supervisor copies
        // the program's output into it until the last descriptor of its pipe closes).
        let active = follow && (is_active(&dir) || open_for_writing(&path));
        match reader.copy_new(&path, out) {
            Ok(()) => {}
            // A reader that went away (`capsule logs NAME | head`) ends the copy.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(error) => return Err(ManageError::Io { path, error }),
        }
        if !active {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

/// Whether some process has `file` open for writing (processes whose descriptors
/// cannot be read are not seen).
fn open_for_writing(file: &Path) -> bool {
    // Descriptors link to the canonical path.
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs
        .flatten()
        .filter(|p| {
            p.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .any(|process| {
            let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|target| target == file)
                    && writable(&process.path().join("fdinfo").join(fd.file_name()))
            })
        })
}

/// Whether the descriptor `/proc/PID/fdinfo/FD` describes was opened for writing.
fn writable(fdinfo: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(fdinfo) else {
        return false;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
        .is_some_and(|flags| flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32)
}

/// Whether the capsule runs, or its supervisor is going to start it again.
fn is_active(dir: &Path) -> bool {
    state::running_pid(dir).is_some() || (supervisor_pid(dir).is_some() && !stop_requested(dir))
}

/// Reads a log file that may grow, be truncated or be replaced between reads.
#[derive(Default)]
struct LogReader {
    file: Option<File>,
    inode: u64,
    offset: u64,
}

impl LogReader {
    /// Copies what was appended since the last call.
    fn copy_new(&mut self, path: &Path, out: &mut impl Write) -> io::Result<()> {
        let current = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if self.file.is_none() || current.ino() != self.inode || current.len() < self.offset {
            // New, replaced or truncated: start from its beginning.
            self.file = Some(File::open(path)?);
            self.inode = current.ino();
            self.offset = 0;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            self.offset += n as u64;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_read_again_after_truncation_or_replacement() {
        let dir = std::env::temp_dir().join(format!("capsule-logs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let mut reader = LogReader::default();
        let mut out = Vec::new();
        reader.copy_new(&log, &mut out).unwrap();
        assert!(out.is_empty(), "a missing log reads as empty");
        std::fs::write(&log, "one\n").unwrap();
        reader.copy_new(&log, &mut out).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        reader.copy_new(&log, &mut out).unwrap();
        assert_eq!(out, b"one\ntwo\n");
        std::fs::write(&log, "3\n").unwrap();
        reader.copy_new(&log, &mut out).unwrap();
        assert_eq!(out, b"one\ntwo\n3\n");
        let next = dir.join("log.new");
        std::fs::write(&next, "four\n").unwrap();
        std::fs::rename(&next, &log).unwrap();
        reader.copy_new(&log, &mut out).unwrap();
        assert_eq!(out, b"one\ntwo\n3\nfour\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writers_of_a_file_are_seen() {
        let dir = std::env::temp_dir().join(format!("capsule-logs-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        std::fs::write(&log, "x").unwrap();
        let reader = File::open(&log).unwrap();
        assert!(!open_for_writing(&log), "a reader is not a writer");
        let writer = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        assert!(open_for_writing(&log));
        drop((reader, writer));
        assert!(!open_for_writing(&log));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
