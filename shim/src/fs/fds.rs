//! Which descriptors are known not to refer to a lower-layer file, so that a change
//! through one of them (fchmod, fchown, futimens, fsetxattr…) needs no look at what
//! it refers to. A bit per descriptor below 4096, set when the shim's `open` gives a
//! descriptor on an upper-layer, volume or host file, cleared when it gives one on a
//! lower-layer file and when the descriptor is closed, copied by `dup` & co. An
//! unknown descriptor (inherited, from a call no hook sees) is looked at the slow way.

use std::sync::atomic::{AtomicU64, Ordering};

const WORDS: usize = 64;
static SAFE: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

fn slot(fd: i32) -> Option<(&'static AtomicU64, u64)> {
    if fd < 0 || fd as usize >= WORDS * 64 {
        return None;
    }
    Some((&SAFE[fd as usize / 64], 1u64 << (fd as usize % 64)))
}

/// Records whether `fd` is known not to refer to a lower-layer file.
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

/// `to` now refers to what `from` refers to.
pub fn copy(from: i32, to: i32) {
    mark(to, is_safe(from));
    if let Some(dir) = directory(from) {
        remember_directory(to, dir.as_bytes());
    }
}

/// Forgets descriptors `first..=last`.
pub fn forget(first: u32, last: u32) {
    let end = (last as u64).min((WORDS * 64 - 1) as u64) as u32;
    let mut fd = first;
    while fd <= end {
        mark(fd as i32, false);
        fd += 1;
    }
}

/// The capsule path of directories the shim opened, by descriptor (below 1024),
/// with the device and inode they had: `*at()` calls relative to such a descriptor
/// then need one `fstat` to check it still is that directory, instead of reading
/// `/proc/self/fd/N` back.
mod directories {

    use std::sync::atomic::AtomicPtr;

    pub const SLOTS: usize = 1024;

    pub struct Entry {
        pub dev: u64,
        pub ino: u64,
        pub path: Box<[u8]>,
    }

    pub static TABLE: [AtomicPtr<Entry>; SLOTS] =
        [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
}

/// Remembers that `fd` is the directory `capsule`.
pub fn remember_directory(fd: i32, capsule: &[u8]) {
    if fd < 0 || fd as usize >= directories::SLOTS {
        return;
    }
    // SAFETY: zeroed stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of a descriptor into a valid buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return;
    }
    let entry = Box::new(directories::Entry {
        dev: st.st_dev,
        ino: st.st_ino,
        path: capsule.into(),
    });
    let old = directories::TABLE[fd as usize].swap(Box::into_raw(entry), Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: entries are only ever created by Box::into_raw above. A reader of
        // the same descriptor number in another thread at this very moment would be
        // using a descriptor this thread has just reused: a program error already.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// The capsule path of directory descriptor `fd`, if the shim opened it and it is
/// still that directory.
pub fn directory(fd: i32) -> Option<super::path::PathBuf> {
    if fd < 0 || fd as usize >= directories::SLOTS {
        return None;
    }
    let entry = directories::TABLE[fd as usize].load(Ordering::Acquire);
    if entry.is_null() {
        return None;
    }
    // SAFETY: zeroed stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat into a valid buffer; the entry is live (see remember_directory).
    unsafe {
        if libc::fstat(fd, &mut st) != 0 {
            return None;
        }
        let e = &*entry;
        if e.dev != st.st_dev || e.ino != st.st_ino {
            return None;
        }
        super::path::PathBuf::from_bytes(&e.path).ok()
    }
}
