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
#[cfg(test)]
mod core_tests;
pub mod cow;
pub mod dirs;
pub mod fds;
#[cfg(not(test))]
pub mod fts;
pub mod layers;
pub mod ops;
pub mod owner;
pub mod path;
#[cfg(not(test))]
pub mod path_hooks;
pub mod pin;
pub mod sockets;
pub mod sys;
pub mod syscalls;
#[cfg(not(test))]
pub mod walk;

// The exported symbols stay out of unit-test binaries, whose own libc calls they
// would otherwise intercept.
#[cfg(not(test))]
pub mod hooks;

use std::sync::atomic::Ordering;

use crate::coverage::{Hook, Support::*};
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

pub const HOOKS: &[Hook] = &[
    Hook::new("close", Full),
    Hook::new("dup", Full),
    Hook::new("dup2", Full),
    Hook::new("dup3", Full),
    Hook::new("fcntl", Full),
    Hook::new("fcntl64", Full),
    Hook::new("close_range", Full),
    Hook::new("closefrom", Full),
    Hook::new("dlopen", Partial("the library named is loaded from the capsule; its own dependencies come from the dynamic loader's search path")),
    Hook::new("fstat", Full),
    Hook::new("fstat64", Full),
    Hook::new("__fxstat", Full),
    Hook::new("__fxstat64", Full),
    Hook::new("glob", Full),
    Hook::new("glob64", Full),
    Hook::new("nftw", Partial("FTW_CHDIR is not honoured")),
    Hook::new("nftw64", Partial("FTW_CHDIR is not honoured")),
    Hook::new("ftw", Full),
    Hook::new("fts_open", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("fts_read", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("fts_children", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("fts_set", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("fts_close", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("fts64_open", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("fts64_read", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("fts64_children", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("fts64_set", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("fts64_close", Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts")),
    Hook::new("ftw64", Full),
    Hook::new("fchmod", Full),
    Hook::new("fchown", Full),
    Hook::new("futimens", Full),
    Hook::new("futimes", Full),
    Hook::new("fsetxattr", Full),
    Hook::new("fremovexattr", Full),
    Hook::new("ioctl", Partial("only requests that change a file's inode (FS_IOC_SETFLAGS, FS_IOC_FSSETXATTR, FS_IOC_SETVERSION) are the replica's: a lower-layer file is copied up first; others pass through")),
    Hook::new("fclose", Full),
    Hook::new("fcloseall", Full),
    Hook::new("tmpfile", Full),
    Hook::new("tmpfile64", Full),
    Hook::new("mkstemp", Full),
    Hook::new("mkstemp64", Full),
    Hook::new("mkostemp", Full),
    Hook::new("mkostemp64", Full),
    Hook::new("mkstemps", Full),
    Hook::new("mkstemps64", Full),
    Hook::new("mkostemps", Full),
    Hook::new("mkostemps64", Full),
    Hook::new("mkdtemp", Full),
    Hook::new("open", Full),
    Hook::new("open64", Full),
    Hook::new("__open_2", Full),
    Hook::new("__open64_2", Full),
    Hook::new("openat", Full),
    Hook::new("openat64", Full),
    Hook::new("__openat_2", Full),
    Hook::new("__openat64_2", Full),
    Hook::new("creat", Full),
    Hook::new("creat64", Full),
    Hook::new("fopen", Full),
    Hook::new("fopen64", Full),
    Hook::new("freopen", Full),
    Hook::new("freopen64", Full),
    Hook::new("stat", Full),
    Hook::new("stat64", Full),
    Hook::new("lstat", Full),
    Hook::new("lstat64", Full),
    Hook::new("fstatat", Full),
    Hook::new("fstatat64", Full),
    Hook::new("__xstat", Full),
    Hook::new("__xstat64", Full),
    Hook::new("__lxstat", Full),
    Hook::new("__lxstat64", Full),
    Hook::new("__fxstatat", Full),
    Hook::new("__fxstatat64", Full),
    Hook::new("statx", Full),
    Hook::new("access", Full),
    Hook::new("faccessat", Full),
    Hook::new("euidaccess", Full),
    Hook::new("eaccess", Full),
    Hook::new("mkdir", Full),
    Hook::new("mkdirat", Full),
    Hook::new("rmdir", Full),
    Hook::new("unlink", Full),
    Hook::new("unlinkat", Full),
    Hook::new(
        "rename",
        Partial("a directory with lower-layer content gives EXDEV (mv copies instead)"),
    ),
    Hook::new(
        "renameat",
        Partial("a directory with lower-layer content gives EXDEV (mv copies instead)"),
    ),
    Hook::new(
        "renameat2",
        Partial("RENAME_NOREPLACE only; other flags give ENOSYS (callers fall back)"),
    ),
    Hook::new("link", Full),
    Hook::new("linkat", Full),
    Hook::new("symlink", Full),
    Hook::new("symlinkat", Full),
    Hook::new("readlink", Full),
    Hook::new("readlinkat", Full),
    Hook::new("__readlink_chk", Full),
    Hook::new("__readlinkat_chk", Full),
    Hook::new("chmod", Full),
    Hook::new("fchmodat", Full),
    Hook::new("chown", Full),
    Hook::new("lchown", Full),
    Hook::new("fchownat", Full),
    Hook::new("truncate", Full),
    Hook::new("truncate64", Full),
    Hook::new("utimensat", Full),
    Hook::new("utimes", Full),
    Hook::new("lutimes", Full),
    Hook::new("utime", Full),
    Hook::new("mknod", Partial("a fake root that is not really root gets an empty file that stat reports as the device")),
    Hook::new("mknodat", Partial("a fake root that is not really root gets an empty file that stat reports as the device")),
    Hook::new("mkfifo", Full),
    Hook::new("mkfifoat", Full),
    Hook::new("chdir", Full),
    Hook::new("getcwd", Full),
    Hook::new("__getcwd_chk", Full),
    Hook::new("get_current_dir_name", Full),
    Hook::new("realpath", Full),
    Hook::new("__realpath_chk", Full),
    Hook::new("canonicalize_file_name", Full),
    Hook::new("statfs", Full),
    Hook::new("statfs64", Full),
    Hook::new("statvfs", Full),
    Hook::new("statvfs64", Full),
    Hook::new("getxattr", Full),
    Hook::new("lgetxattr", Full),
    Hook::new("listxattr", Full),
    Hook::new("llistxattr", Full),
    Hook::new("setxattr", Full),
    Hook::new("lsetxattr", Full),
    Hook::new("removexattr", Full),
    Hook::new("lremovexattr", Full),
    Hook::new(
        "opendir",
        Partial("a directory in both layers is read once, when opened; at most 16384 such streams open per process, then EMFILE"),
    ),
    Hook::new(
        "fdopendir",
        Partial("a directory in both layers is read once, when opened; at most 16384 such streams open per process, then EMFILE"),
    ),
    Hook::new("readdir", Full),
    Hook::new("readdir64", Full),
    Hook::new("readdir_r", Full),
    Hook::new("readdir64_r", Full),
    Hook::new("closedir", Full),
    Hook::new("dirfd", Full),
    Hook::new("rewinddir", Full),
    Hook::new("telldir", Full),
    Hook::new("seekdir", Full),
    Hook::new("scandir", Full),
    Hook::new("scandirat", Full),
    Hook::new("scandirat64", Full),
    Hook::new("futimesat", Full),
    Hook::new("lchmod", Full),
    Hook::new("pathconf", Full),
    Hook::new("ftok", Full),
    Hook::new("inotify_add_watch", Partial("watches the file the name has now: after a copy-up the watch is on the old (lower) file, as with overlayfs")),
    Hook::new("fanotify_mark", Partial("as inotify_add_watch; a mount or file-system mark covers the host's whole mount")),
    Hook::new("name_to_handle_at", Full),
    Hook::new("open_by_handle_at", Partial("EPERM in a capsule with a file system: a handle names any inode, outside the capsule too")),
    Hook::new("chroot", Partial("EPERM in a capsule with a file system: not emulated yet")),
    Hook::new("mount", Partial("EPERM in a capsule with a file system")),
    Hook::new("umount", Partial("EPERM in a capsule with a file system")),
    Hook::new("umount2", Partial("EPERM in a capsule with a file system")),
    Hook::new("swapon", Partial("EPERM in a capsule with a file system")),
    Hook::new("swapoff", Partial("EPERM in a capsule with a file system")),
    Hook::new("acct", Partial("EPERM in a capsule with a file system")),
    Hook::new("dlmopen", Partial("as dlopen")),
    Hook::new("posix_spawn_file_actions_addopen", Partial("the name is resolved, and a file to be written copied up, when the action is added (relative to the working directory then, not to an earlier addchdir action); a capsule refusal is returned by the add")),
    Hook::new("posix_spawn_file_actions_addchdir_np", Partial("the directory is resolved when the action is added")),
    Hook::new("scandir64", Full),
];
