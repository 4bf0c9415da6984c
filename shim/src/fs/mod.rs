//! The file-system replica: the capsule's own `/`.
//!
//! Invariants:
//! - the lower layer (a `--root` directory, or the host's `/`) is never modified
//!   through a capsule: every call that would change a lower name first copies it up
//!   into the capsule's private upper layer (atomically: temporary file, then
//!   rename), and deleting a lower name leaves a whiteout (`.wh.NAME`) in the upper
//!   layer; a re-created directory is opaque (`.wh..wh..opq`);
//! - every path a program passes is a capsule path: made absolute against the
//!   capsule's working directory (or a directory descriptor, read back through
//!   `/proc/self/fd`), then resolved component by component inside the capsule
//!   (`layers.rs`), so `..`, symbolic links and `/proc/self/*` never lead out;
//! - every path the shim hands back (getcwd, realpath, readlink of /proc links) is a
//!   capsule path;
//! - bind volumes are used directly, writable or read-only (`EROFS`), their names
//!   walked like the layers' (a link inside one leads into the capsule); a capsule
//!   without an upper layer, or `--read-only`, returns `EROFS` to every write
//!   outside volumes;
//! - with no file-system settings the replica is off and every hook passes through.

pub mod cache;
#[cfg(not(test))]
pub mod call;
#[cfg(not(test))]
pub mod change;
#[cfg(test)]
mod core_tests;
pub mod cow;
#[cfg(not(test))]
pub mod cwd;
pub mod detach;
pub mod dirs;
pub mod exchange;
pub mod fds;
#[cfg(not(test))]
pub mod fts;
pub mod layers;
#[cfg(not(test))]
pub mod names;
pub mod nlink;
#[cfg(not(test))]
pub mod open;
pub mod ops;
pub mod owner;
pub mod path;
pub mod pin;
#[cfg(not(test))]
pub mod readdir;
pub mod sockets;
#[cfg(not(test))]
pub mod stat;
pub mod sys;
pub mod syscalls;
#[cfg(not(test))]
pub mod tmp;
#[cfg(not(test))]
pub mod walk;

// The exported symbols stay out of unit-test binaries, whose own libc calls they
// would otherwise intercept.
#[cfg(not(test))]
pub mod hooks;

use std::sync::atomic::Ordering;

use crate::runtime;

pub use layers::Layers;

/// The capsule's layers, or `None` when the replica is off.
#[inline]
pub fn layers() -> Option<&'static Layers> {
    runtime::get().fs.as_ref()
}

/// Makes every volume's mount point a name of the capsule: an empty directory (or
/// file, for a file volume) in the upper layer where the lower layer has nothing,
/// so that listings show it and its parents exist. Done by each process at start;
/// one `lstat` per volume when they exist already.
pub fn prepare_volumes(layers: &Layers) {
    for volume in &layers.volumes {
        let Ok(capsule) = path::PathBuf::from_bytes(&volume.path) else {
            continue;
        };
        let (Ok(upper), Ok(lower)) = (
            layers.upper_host(capsule.as_bytes()),
            layers.lower_host(capsule.as_bytes()),
        ) else {
            continue;
        };
        if sys::exists(&upper) || sys::exists(&lower) {
            continue;
        }
        let Ok(host) = path::PathBuf::from_bytes(&volume.host) else {
            continue;
        };
        // SAFETY: zeroed stat is valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let is_dir = !sys::lstat(&host, &mut st) || st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if cow::ensure_upper_dir(layers, capsule.parent_bytes()).is_err() {
            continue;
        }
        let _ = if is_dir {
            sys::mkdir(&upper, 0o755)
        } else {
            sys::create_empty(&upper, 0o644)
        };
    }
}

/// Records that the upper layer's directory structure changed (a directory made
/// or removed, a whiteout or opaque marker written), for any process of the
/// capsule that caches what it resolved.
pub fn changed() {
    runtime::get()
        .shared
        .fs_generation
        .fetch_add(1, Ordering::Release);
}

/// Records that a link at host path `host` is about to be removed or replaced:
/// a directory cached as reached through it would be resolved through a link that
/// is gone (or, once a directory takes its name, into the wrong place). Costs an
/// `lstat` only once some process of the capsule cached such a directory.
/// Returns whether the caller must call `changed` once the removal is done.
pub fn removing_link(host: &path::PathBuf) -> bool {
    if runtime::get()
        .shared
        .fs_links_cached
        .load(Ordering::Acquire)
        == 0
    {
        return false;
    }
    // SAFETY: a zeroed stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    sys::lstat(host, &mut st) && st.st_mode & libc::S_IFMT == libc::S_IFLNK
}
