//! What path resolution learnt about directories, kept per process so that most
//! lookups cost one system call per name instead of one per path component.
//!
//! An entry maps a directory path as programs write it (`/usr/lib`) to its
//! canonical capsule path and to what the walk knows inside it (whether the upper
//! layer has it, whether lower entries are visible). Entries are valid for one
//! value of the capsule's generation counter, which every process of the capsule
//! bumps when the upper layer's directory structure changes; so the cache is used
//! only when that counter is shared (the capsule has a state directory).
//!
//! The table is guarded by a try-lock: a caller that finds it taken resolves the
//! long way rather than wait, so the cache never blocks (signal handlers) and a
//! lock held by another thread at `fork` is reset in the child.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use super::layers::DirState;
use super::path::PathBuf;
use crate::runtime;

const SLOTS: usize = 256;
const KEY_MAX: usize = 192;

struct Slot {
    /// The generation the entry is for, complemented: the empty slot (generation
    /// `u64::MAX`, never current) is then all zero bytes, so the 100 KB table lives in
    /// `.bss` and no program start reads or copies it.
    not_generation: u64,
    key_len: usize,
    canonical_len: usize,
    state: DirState,
    key: [u8; KEY_MAX],
    canonical: [u8; KEY_MAX],
}

struct Table(UnsafeCell<[Slot; SLOTS]>);
// SAFETY: accessed only by the holder of LOCKED.
unsafe impl Sync for Table {}

const EMPTY: Slot = Slot {
    not_generation: 0,
    key_len: 0,
    canonical_len: 0,
    state: DirState {
        in_upper: false,
        lower_visible: false,
    },
    key: [0; KEY_MAX],
    canonical: [0; KEY_MAX],
};

static TABLE: Table = Table(UnsafeCell::new([EMPTY; SLOTS]));
static LOCKED: AtomicBool = AtomicBool::new(false);

extern "C" fn reset_in_child() {
    LOCKED.store(false, Ordering::Relaxed);
}

/// Registers the `fork` handler that frees the lock in children.
pub fn init() {
    // SAFETY: registering a handler that only stores to an atomic.
    unsafe { libc::pthread_atfork(None, None, Some(reset_in_child)) };
}

/// The capsule-wide generation, or `None` when it is not shared between the
/// capsule's processes (no state directory: the cache is not used).
pub fn generation() -> Option<u64> {
    let rt = runtime::get();
    rt.config.state_dir.as_ref()?;
    Some(rt.shared.fs_generation.load(Ordering::Acquire))
}

/// Records, capsule-wide, that a directory reached through a link was cached (see
/// `fs::removing_link`).
pub fn links_cached() {
    let shared = &runtime::get().shared;
    if shared.fs_links_cached.load(Ordering::Relaxed) == 0 {
        shared.fs_links_cached.store(1, Ordering::Release);
    }
}

fn with_table<R>(f: impl FnOnce(&mut [Slot; SLOTS]) -> R) -> Option<R> {
    if LOCKED
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return None;
    }
    // SAFETY: we hold the lock.
    let result = f(unsafe { &mut *TABLE.0.get() });
    LOCKED.store(false, Ordering::Release);
    Some(result)
}

fn index(key: &[u8]) -> usize {
    // FNV-1a.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h as usize) % SLOTS
}

/// Splits a plain absolute path (no `.`, `..`, empty component or trailing `/`)
/// into its directory and last name; `None` for anything else.
pub fn split(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() < 2 || !super::path::is_plain(path, false) {
        return None;
    }
    Some(split_plain(path))
}

/// `split` of a path known to be plain (`path::Shape::plain`).
pub fn split_plain(path: &[u8]) -> (&[u8], &[u8]) {
    let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let dir = if cut == 0 { &path[..1] } else { &path[..cut] };
    (dir, &path[cut + 1..])
}

/// What is known inside directory `dir`, its canonical path written into
/// `canonical` (left as it was when `dir` is not cached).
pub fn lookup_into(dir: &[u8], canonical: &mut PathBuf) -> Option<DirState> {
    let generation = generation()?;
    if dir.len() > KEY_MAX {
        return None;
    }
    with_table(|table| {
        let slot = &table[index(dir)];
        if slot.not_generation != !generation || &slot.key[..slot.key_len] != dir {
            return None;
        }
        // Only the bytes in use: the slot itself is never copied.
        canonical.set(&slot.canonical[..slot.canonical_len]).ok()?;
        Some(slot.state)
    })
    .flatten()
}

/// Remembers directory `dir` (as written) for the generation `generation` read
/// before it was resolved.
pub fn insert(generation: u64, dir: &[u8], canonical: &[u8], state: DirState) {
    if dir.len() > KEY_MAX || canonical.len() > KEY_MAX {
        return;
    }
    with_table(|table| {
        let slot = &mut table[index(dir)];
        slot.not_generation = !generation;
        slot.key[..dir.len()].copy_from_slice(dir);
        slot.key_len = dir.len();
        slot.canonical[..canonical.len()].copy_from_slice(canonical);
        slot.canonical_len = canonical.len();
        slot.state = state;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_only_plain_paths() {
        assert_eq!(split(b"/usr/lib/x"), Some((&b"/usr/lib"[..], &b"x"[..])));
        assert_eq!(split(b"/etc"), Some((&b"/"[..], &b"etc"[..])));
        for p in [
            &b"/"[..],
            b"relative/x",
            b"/a//b",
            b"/a/./b",
            b"/a/../b",
            b"/a/b/",
            b"/a/..",
        ] {
            assert_eq!(split(p), None, "{:?}", String::from_utf8_lossy(p));
        }
    }
}
