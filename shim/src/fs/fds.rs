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
