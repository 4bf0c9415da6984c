//! What the shim knows about descriptors it opened, in flat lock-free tables indexed
//! by descriptor:
//!
//! - a "safe" bit per descriptor below 4096: the descriptor is known to refer to a
//!   file a change may reach directly (upper layer, writable volume, host file), so
//!   that fchmod, fchown, futimens, fsetxattr… through it need no look at what it
//!   refers to. Set when a hook's open gives such a descriptor, cleared when one gives
//!   a lower-layer or read-only file, and by every close the shim sees: `close`,
//!   `fclose`, `closedir`, `close_range`, `closefrom`, and `dup2`/`dup3` over it
//!   (which copy the source's knowledge instead). An unknown descriptor (inherited,
//!   from a call no hook sees) is looked at the slow way, so a bit left set by a close
//!   no hook saw is the only way to be wrong: every libc function that closes a
//!   descriptor the program opened through a hook is hooked.
//! - the capsule path of directories the shim opened, with the device and inode they
//!   had (below 1024): `*at()` calls relative to such a descriptor then need one
//!   `fstat` instead of reading `/proc/self/fd/N` back. Each slot is a seqlock over
//!   inline storage: nothing is ever freed, so a reader racing a writer of the same
//!   number (an application race) reads a torn entry at worst, which the sequence
//!   check rejects; it never reads freed memory.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::seqlock::SeqCount;

use super::path::PathBuf;

const WORDS: usize = 64;
static SAFE: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

fn slot(fd: i32) -> Option<(&'static AtomicU64, u64)> {
    if fd < 0 || fd as usize >= WORDS * 64 {
        return None;
    }
    Some((&SAFE[fd as usize / 64], 1u64 << (fd as usize % 64)))
}

/// Records whether changes through `fd` may go to it directly.
pub fn mark(fd: i32, safe: bool) {
    if let Some((word, bit)) = slot(fd) {
        if safe {
            word.fetch_or(bit, Ordering::Relaxed);
        } else {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

pub fn is_safe(fd: i32) -> bool {
    slot(fd).is_some_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
}

/// A hook opened `fd`: whether changes may go to it directly, and the capsule path
/// of the directory it is, if it is one.
pub fn opened(fd: i32, safe: bool, directory: Option<&[u8]>) {
    mark(fd, safe);
    match directory {
        Some(path) => remember_directory(fd, path),
        None => forget_directory(fd),
    }
}

/// `fd` was closed (or is about to be reused by `dup2` & co.).
pub fn closed(fd: i32) {
    mark(fd, false);
    forget_directory(fd);
}

/// `to` now refers to what `from` refers to.
pub fn copy(from: i32, to: i32) {
    if from == to {
        return;
    }
    mark(to, is_safe(from));
    match directory(from) {
        Some(dir) => remember_directory(to, dir.as_bytes()),
        None => forget_directory(to),
    }
}

/// Forgets descriptors `first..=last`.
pub fn forget(first: u32, last: u32) {
    let end = (last as u64).min((WORDS * 64 - 1) as u64) as u32;
    let mut fd = first;
    while fd <= end {
        closed(fd as i32);
        fd += 1;
    }
}

/// The directory table (see the module comment).
mod directories {
    use super::*;

    pub const SLOTS: usize = 1024;
    /// Longer capsule paths are not remembered (the slow way reads them back).
    pub const PATH_BYTES: usize = 1024;

    pub struct Entry {
        /// Odd while a writer fills the entry; 0 or even otherwise.
        pub seq: SeqCount,
        /// Path length + 1; 0: empty.
        pub len: AtomicU32,
        pub dev: AtomicU64,
        pub ino: AtomicU64,
        pub path: [AtomicU8; PATH_BYTES],
    }

    impl Entry {
        const fn new() -> Entry {
            Entry {
                seq: SeqCount::new(),
                len: AtomicU32::new(0),
                dev: AtomicU64::new(0),
                ino: AtomicU64::new(0),
                path: [const { AtomicU8::new(0) }; PATH_BYTES],
            }
        }
    }

    pub static TABLE: [Entry; SLOTS] = [const { Entry::new() }; SLOTS];
}

fn entry(fd: i32) -> Option<&'static directories::Entry> {
    if fd < 0 || fd as usize >= directories::SLOTS {
        return None;
    }
    Some(&directories::TABLE[fd as usize])
}

fn forget_directory(fd: i32) {
    let Some(e) = entry(fd) else {
        return;
    };
    // An empty slot needs no writer (the common case: one load). A slot another
    // writer holds stays as it is: a read checks device and inode anyway.
    if e.len.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Some(_write) = e.seq.try_write() else {
        return;
    };
    e.len.store(0, Ordering::Relaxed);
}

/// Remembers that `fd` is the directory `capsule`.
pub fn remember_directory(fd: i32, capsule: &[u8]) {
    let Some(e) = entry(fd) else {
        return;
    };
    if capsule.len() > directories::PATH_BYTES {
        forget_directory(fd);
        return;
    }
    // SAFETY: zeroed stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of a descriptor into a valid buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        forget_directory(fd);
        return;
    }
    let Some(_write) = e.seq.try_write() else {
        return;
    };
    e.dev.store(st.st_dev, Ordering::Relaxed);
    e.ino.store(st.st_ino, Ordering::Relaxed);
    for (slot, &b) in e.path.iter().zip(capsule) {
        slot.store(b, Ordering::Relaxed);
    }
    e.len.store(capsule.len() as u32 + 1, Ordering::Relaxed);
}

/// The capsule path of directory descriptor `fd`, if the shim opened it and it is
/// still that directory.
pub fn directory(fd: i32) -> Option<PathBuf> {
    let e = entry(fd)?;
    if e.len.load(Ordering::Relaxed) == 0 {
        return None;
    }
    // Being written: the slow way.
    let before = e.seq.read_begin()?;
    let len = (e.len.load(Ordering::Relaxed) as usize).checked_sub(1)?;
    let (dev, ino) = (e.dev.load(Ordering::Relaxed), e.ino.load(Ordering::Relaxed));
    let mut bytes = [0u8; directories::PATH_BYTES];
    let len = len.min(bytes.len());
    for (dst, src) in bytes[..len].iter_mut().zip(e.path.iter()) {
        *dst = src.load(Ordering::Relaxed);
    }
    if !e.seq.read_valid(before) {
        return None;
    }
    // SAFETY: zeroed stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat into a valid buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_dev != dev || st.st_ino != ino {
        return None;
    }
    PathBuf::from_bytes(&bytes[..len]).ok()
}

/// A rename moved capsule directory `from` to `to` (with `exchange`, `to` to `from`
/// too): this process's descriptors of directories at or below it follow, as the
/// kernel's follow the directory. Other processes' descriptors are read back through
/// `/proc/self/fd` (a lower directory's then keeps its old name: a limit).
pub fn renamed(from: &[u8], to: &[u8], exchange: bool) {
    use super::path::is_within;
    let mut moved = PathBuf::new();
    for fd in 0..directories::SLOTS as i32 {
        // Most slots are empty: one load each.
        if entry(fd).is_none_or(|e| e.len.load(Ordering::Relaxed) == 0) {
            continue;
        }
        let Some(path) = directory(fd) else {
            continue;
        };
        let p = path.as_bytes();
        let (old, new) = if is_within(p, from) {
            (from, to)
        } else if exchange && is_within(p, to) {
            (to, from)
        } else {
            continue;
        };
        if moved.set(new).is_ok() && moved.push_bytes(&p[old.len()..]).is_ok() {
            remember_directory(fd, moved.as_bytes());
        } else {
            forget_directory(fd);
        }
    }
}

/// close: forgotten first (the number may be reused as soon as it is closed).
#[inline]
pub fn closing(fd: i32, real: impl FnOnce() -> i32) -> i32 {
    closed(fd);
    real()
}

/// dup & co. returned `result`: a new descriptor knows what `from` does.
#[inline]
pub fn duplicated(from: i32, result: i32) -> i32 {
    if result >= 0 {
        copy(from, result);
    }
    result
}

/// fcntl returned `result`: `F_DUPFD` and `F_DUPFD_CLOEXEC` made a descriptor.
#[inline]
pub fn fcntl_done(fd: i32, cmd: i32, result: i32) -> i32 {
    if result >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
        copy(fd, result);
    }
    result
}

/// fcloseall returned `result`: which descriptors it closed is not known, so none
/// stays known as safe.
#[inline]
pub fn all_closed(result: i32) -> i32 {
    forget(0, u32::MAX);
    result
}

/// close_range, around the shim's own log descriptor, which stays open. `real` is
/// the real call.
pub fn close_range(first: u32, last: u32, flags: i32, real: impl Fn(u32, u32, i32) -> i32) -> i32 {
    let closing = flags & libc::CLOSE_RANGE_CLOEXEC as i32 == 0;
    let rc = match crate::log::own_fd() {
        Some(own) if closing && (first..=last).contains(&own) => {
            let below = if own > first {
                real(first, own - 1, flags)
            } else {
                0
            };
            let above = if own < last {
                real(own + 1, last, flags)
            } else {
                0
            };
            if below != 0 {
                below
            } else {
                above
            }
        }
        _ => real(first, last, flags),
    };
    if rc == 0 && closing {
        forget(first, last);
    }
    rc
}

/// closefrom, around the shim's own log descriptor, which stays open. `real` is the
/// real call.
pub fn closefrom(first: i32, real: impl FnOnce(i32)) {
    match crate::log::own_fd() {
        Some(own) if first >= 0 && own >= first as u32 => {
            if own > first as u32 {
                // SAFETY: close_range(2) takes two descriptor numbers and flags, no
                // memory; the descriptors below the log's are the caller's to close.
                unsafe { libc::syscall(libc::SYS_close_range, first as u32, own - 1, 0) };
            }
            real(own as i32 + 1);
        }
        _ => real(first),
    }
    forget(first.max(0) as u32, u32::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_descriptor_is_neither_safe_nor_a_known_directory() {
        // SAFETY: opening a directory that exists everywhere.
        let fd = unsafe { libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        assert!(fd >= 0);
        opened(fd, true, Some(b"/somewhere"));
        assert!(is_safe(fd));
        assert_eq!(directory(fd).unwrap().as_bytes(), b"/somewhere");
        let other = fd + 1;
        copy(fd, other);
        assert!(is_safe(other));
        closed(other);
        assert!(!is_safe(other) && directory(other).is_none());
        closed(fd);
        assert!(!is_safe(fd) && directory(fd).is_none());
        opened(fd, false, None);
        assert!(directory(fd).is_none());
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn reuse_never_frees_what_a_reader_may_hold() {
        // SAFETY: as above.
        let fd = unsafe { libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
        assert!(fd >= 0);
        let reader = std::thread::spawn(move || {
            for _ in 0..20000 {
                if let Some(p) = directory(fd) {
                    assert!(p.as_bytes() == b"/a" || p.as_bytes() == b"/bb/longer");
                }
            }
        });
        for i in 0..20000 {
            remember_directory(fd, if i % 2 == 0 { b"/a" } else { b"/bb/longer" });
        }
        reader.join().unwrap();
        closed(fd);
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }
}
