//! `st_nlink` of a merged directory as one file system would count it (`stat`
//! family and `fstat`, `stat.rs`): 2 and one per subdirectory the capsule lists (the upper directory's own count misses the
//! lower subdirectories; overlayfs reports 1). Programs read it as the number of
//! subdirectories (`find`'s leaf optimisation, `ls -l`, test suites).
//!
//! Counting reads both halves of the directory, so the answer is remembered per
//! upper directory, keyed by its device, inode and change time: any entry added to
//! or removed from the upper directory (a whiteout and an opaque marker too)
//! changes that time, and the lower layer does not change. The table is a fixed
//! array of seqlocked slots: no allocation and no lock (a stat may come from a
//! signal handler or a child after `fork`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::seqlock::SeqCount;

use super::layers::{Found, Layers, Node, Place};

const SLOTS: usize = 256;

struct Slot {
    seq: SeqCount,
    key: [AtomicU64; 4],
    /// The count; 0: the upper directory's own is right (no lower half).
    nlink: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    seq: SeqCount::new(),
    key: [const { AtomicU64::new(0) }; 4],
    nlink: AtomicU64::new(0),
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

fn key_of(st: &libc::stat) -> [u64; 4] {
    [
        st.st_dev,
        st.st_ino,
        st.st_ctime as u64,
        // Never 0, so that an empty slot matches no directory.
        (st.st_ctime_nsec as u64) | 1 << 63,
    ]
}

fn slot_of(key: &[u64; 4]) -> &'static Slot {
    let h = (key[0] ^ key[1].wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 7;
    &TABLE[h as usize % SLOTS]
}

fn lookup(key: &[u64; 4]) -> Option<u64> {
    let slot = slot_of(key);
    let before = slot.seq.read_begin()?;
    let same = (0..4).all(|i| slot.key[i].load(Ordering::Relaxed) == key[i]);
    let nlink = slot.nlink.load(Ordering::Relaxed);
    (same && slot.seq.read_valid(before)).then_some(nlink)
}

fn store(key: &[u64; 4], nlink: u64) {
    let slot = slot_of(key);
    // Another writer: this answer is simply not remembered.
    let Some(_write) = slot.seq.try_write() else {
        return;
    };
    for (i, k) in key.iter().enumerate() {
        slot.key[i].store(*k, Ordering::Relaxed);
    }
    slot.nlink.store(nlink, Ordering::Relaxed);
}

/// The link count the capsule reports for directory `node` when it differs from
/// the upper directory's own: `Some` for a directory of the upper layer that merges
/// a lower one.
pub fn merged_dir(layers: &Layers, node: &Node) -> Option<u64> {
    if node.found != Found::Upper
        || node.place != Place::Overlay
        || !node.is_dir()
        || !node.lower_visible
    {
        return None;
    }
    let key = key_of(&node.stat);
    if let Some(n) = lookup(&key) {
        return (n != 0).then_some(n);
    }
    let n = count(layers, node).unwrap_or(0);
    store(&key, n);
    (n != 0).then_some(n)
}

/// What `merged_dir` answered for the upper directory whose own `stat` is `st`, if
/// it is remembered (`Some(None)`: its own count is right): an `fstat` knows that
/// much without walking to the directory's capsule name.
pub fn remembered(st: &libc::stat) -> Option<Option<u64>> {
    lookup(&key_of(st)).map(|n| (n != 0).then_some(n))
}

/// 2 + the subdirectories of merged directory `node`; `None` when it merges
/// nothing (or cannot be read: the upper directory's count stands).
fn count(layers: &Layers, node: &Node) -> Option<u64> {
    let entries = super::dirs::merged(layers, node).ok()??;
    let mut n = 2u64;
    let mut child = super::path::PathBuf::new();
    for entry in &entries {
        // SAFETY: d_name is NUL-terminated within its array.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.d_name.as_ptr()) }.to_bytes();
        if matches!(name, b"." | b"..") {
            continue;
        }
        let dir = match entry.d_type {
            libc::DT_DIR => true,
            libc::DT_UNKNOWN => {
                // A file system without d_type: ask the capsule.
                child.set(node.capsule.as_bytes()).ok()?;
                child.push_component(name).ok()?;
                layers
                    .resolve(child.as_bytes(), false)
                    .is_ok_and(|c| c.is_dir())
            }
            _ => false,
        };
        n += u64::from(dir);
    }
    Some(n)
}
