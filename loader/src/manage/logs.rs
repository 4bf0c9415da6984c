//! `capsule logs`: the output lines a supervisor (`capsule up`, `capsule run -d`) keeps
//! in the capsule's `log` file; with `follow`, what it appends afterwards too, until
//! the capsule is no longer running, no supervisor will start it again, and its last
//! output is in. Each line's time comes from `log.index` ([`LogIndexRecord`]), for
//! `--since` and `--timestamps`; `--tail` keeps the last lines of the first read.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ManageError;
use crate::inspect::{existing_dir, stop_requested, supervisor_pid};
use crate::state::{self, Home, LogIndexRecord, LOG_FILE, LOG_INDEX_FILE, SUPERVISOR_FILE};

/// How often a followed log is looked at for more.
const POLL: Duration = Duration::from_millis(100);

/// What `capsule logs` prints.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    /// Go on printing what is appended until the capsule is done.
    pub follow: bool,
    /// Of the lines there already, only the last N.
    pub tail: Option<usize>,
    /// Only lines that came at or after this instant (ns since the epoch).
    pub since_ns: Option<i64>,
    /// Put each line's time in front of it (RFC 3339, nanoseconds, UTC).
    pub timestamps: bool,
}

/// Copies the log of capsule `name` to `out`, as `options` say.
pub fn logs(
    home: &Home,
    name: &str,
    options: &LogOptions,
    out: &mut impl Write,
) -> Result<(), ManageError> {
    let dir = existing_dir(home, name)?;
    let path = dir.join(LOG_FILE);
    if !path.exists() && !dir.join(SUPERVISOR_FILE).exists() {
        return Err(ManageError::NoLog(name.to_string()));
    }
    let mut reader = LogReader::new(path.clone(), dir.join(LOG_INDEX_FILE));
    let mut first = true;
    loop {
        // Decided before reading, so that the last lines are read after the end: the
        // capsule is done, and nobody writes its log any more (the supervisor copies
        // the program's output into it until the last descriptor of its pipe closes).
        let active = options.follow && (is_active(&dir) || open_for_writing(&path));
        let mut lines = reader.read_new(active).map_err(|error| ManageError::Io {
            path: path.clone(),
            error,
        })?;
        if let Some(since) = options.since_ns {
            lines.retain(|line| line.time_ns.is_some_and(|t| t >= since));
        }
        if first {
            if let Some(n) = options.tail {
                lines.drain(..lines.len().saturating_sub(n));
            }
            first = false;
        }
        match write_lines(&lines, options.timestamps, out) {
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

fn write_lines(lines: &[Line], timestamps: bool, out: &mut impl Write) -> io::Result<()> {
    for line in lines {
        if timestamps {
            let stamp = line.time_ns.map_or_else(|| "-".to_string(), format_time);
            out.write_all(stamp.as_bytes())?;
            out.write_all(b" ")?;
        }
        out.write_all(&line.text)?;
    }
    out.flush()
}

/// An instant as docker logs -t prints it: `2026-12-06T19:00:00.123456789Z`.
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let whole = crate::image::import::format_rfc3339(secs);
    format!("{}.{frac:09}Z", whole.trim_end_matches('Z'))
}

/// One line of the log, its newline included, and when it came (unknown for lines
/// written before the log had an index).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    text: Vec<u8>,
    time_ns: Option<i64>,
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

/// Reads a log file that may grow, be truncated or be replaced between reads, with
/// its index.
struct LogReader {
    path: PathBuf,
    index_path: PathBuf,
    file: Option<File>,
    inode: u64,
    /// Bytes of the log consumed: whole lines only.
    offset: u64,
    /// Bytes of the index read.
    index_offset: u64,
    /// Index records not matched to a line yet.
    records: VecDeque<LogIndexRecord>,
}

impl LogReader {
    fn new(path: PathBuf, index_path: PathBuf) -> LogReader {
        LogReader {
            path,
            index_path,
            file: None,
            inode: 0,
            offset: 0,
            index_offset: 0,
            records: VecDeque::new(),
        }
    }

    /// The whole lines appended since the last call. While `more` may come, a line
    /// whose time is not in the index yet (the supervisor writes it just after the
    /// line) waits for the next call.
    fn read_new(&mut self, more: bool) -> io::Result<Vec<Line>> {
        let current = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if self.file.is_none() || current.ino() != self.inode || current.len() < self.offset {
            // New, replaced or truncated: start from its beginning, and its index's.
            self.file = Some(File::open(&self.path)?);
            self.inode = current.ino();
            self.offset = 0;
            self.index_offset = 0;
            self.records.clear();
        }
        let indexed = self.read_index();
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut lines = Vec::new();
        let mut start = 0usize;
        let mut consumed = 0usize;
        while let Some(at) = bytes[start..].iter().position(|&b| b == b'\n') {
            let end = start + at + 1;
            let end_offset = self.offset + end as u64;
            while self.records.front().is_some_and(|r| r.end < end_offset) {
                self.records.pop_front();
            }
            let time_ns = self
                .records
                .front()
                .filter(|r| r.end == end_offset)
                .map(|r| r.time_ns);
            if time_ns.is_none() && more && indexed {
                break;
            }
            lines.push(Line {
                text: bytes[start..end].to_vec(),
                time_ns,
            });
            consumed = end;
            start = end;
        }
        if !more && consumed < bytes.len() {
            // The end of a log nobody writes any more: its last line, as it is.
            let mut text = bytes[consumed..].to_vec();
            text.push(b'\n');
            lines.push(Line {
                text,
                time_ns: None,
            });
            consumed = bytes.len();
        }
        self.offset += consumed as u64;
        Ok(lines)
    }

    /// Reads the index records appended since the last call; whether the log has an
    /// index at all.
    fn read_index(&mut self) -> bool {
        let Ok(mut index) = File::open(&self.index_path) else {
            return false;
        };
        if index.seek(SeekFrom::Start(self.index_offset)).is_err() {
            return true;
        }
        let mut bytes = Vec::new();
        if index.read_to_end(&mut bytes).is_ok() {
            let whole = bytes.len() - bytes.len() % LogIndexRecord::SIZE;
            self.records.extend(LogIndexRecord::parse(&bytes[..whole]));
            self.index_offset += whole as u64;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.text).into_owned())
            .collect()
    }

    #[test]
    fn a_log_is_read_again_after_truncation_or_replacement() {
        let dir = std::env::temp_dir().join(format!("capsule-logs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let mut reader = LogReader::new(log.clone(), dir.join("log.index"));
        assert!(
            reader.read_new(true).unwrap().is_empty(),
            "a missing log reads as empty"
        );
        std::fs::write(&log, "one\npart").unwrap();
        assert_eq!(texts(&reader.read_new(true).unwrap()), ["one\n"]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"ial\ntwo\n")
            .unwrap();
        assert_eq!(
            texts(&reader.read_new(true).unwrap()),
            ["partial\n", "two\n"]
        );
        std::fs::write(&log, "3\n").unwrap();
        assert_eq!(texts(&reader.read_new(true).unwrap()), ["3\n"]);
        let next = dir.join("log.new");
        std::fs::write(&next, "four\nlast").unwrap();
        std::fs::rename(&next, &log).unwrap();
        assert_eq!(
            texts(&reader.read_new(false).unwrap()),
            ["four\n", "last\n"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_get_their_times_from_the_index() {
        let dir = std::env::temp_dir().join(format!("capsule-logs-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let index = dir.join("log.index");
        std::fs::write(&log, "a\nbb\nccc\n").unwrap();
        let record = |end, time_ns| LogIndexRecord { end, time_ns }.to_bytes();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&record(2, 10));
        bytes.extend_from_slice(&record(5, 20));
        std::fs::write(&index, &bytes).unwrap();
        let mut reader = LogReader::new(log.clone(), index.clone());
        // "ccc" has no time yet: while the log may grow, it waits.
        let lines = reader.read_new(true).unwrap();
        assert_eq!(texts(&lines), ["a\n", "bb\n"]);
        assert_eq!(
            lines.iter().map(|l| l.time_ns).collect::<Vec<_>>(),
            [Some(10), Some(20)]
        );
        bytes.extend_from_slice(&record(9, 30));
        std::fs::write(&index, &bytes).unwrap();
        let lines = reader.read_new(true).unwrap();
        assert_eq!(
            (texts(&lines), lines[0].time_ns),
            (vec!["ccc\n".to_string()], Some(30))
        );
        assert_eq!(
            format_time(1_795_950_000_000_000_042),
            "2026-11-29T11:00:00.000000042Z"
        );
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
