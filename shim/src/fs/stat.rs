//! The stat family and access: the walk's answer about a capsule name, with the
//! ownership the capsule recorded applied.

use libc::{c_char, c_int};

use super::call::{arg, run_in};
use super::layers::Node;
use super::ops::{self, Skip};
use super::path::PathBuf;
use crate::hook::fail;

/// Where a stat-family call wants its answer.
#[derive(Clone, Copy)]
pub enum StatBuf {
    /// A `struct stat` (64-bit Linux has one layout for `stat` and `stat64`): filled
    /// from what the walk already read.
    Copy(*mut libc::stat),
    /// A `struct stat` the real call fills (the versioned `__xstat`s).
    #[cfg_attr(not(target_env = "gnu"), allow(dead_code))]
    Stat(*mut libc::stat),
    Statx(*mut libc::statx),
}

impl StatBuf {
    /// Sets the link count written (a merged directory's, see `nlink`).
    ///
    /// # Safety
    /// As for `fix`.
    unsafe fn set_nlink(self, n: u64) {
        match self {
            // SAFETY: not null, so the caller's writable structure (this function's
            // contract).
            StatBuf::Copy(buf) | StatBuf::Stat(buf) if !buf.is_null() => unsafe {
                (*buf).st_nlink = n as libc::nlink_t
            },
            // SAFETY: as above, a `struct statx`.
            StatBuf::Statx(buf) if !buf.is_null() => unsafe {
                if (*buf).stx_mask & libc::STATX_NLINK != 0 {
                    (*buf).stx_nlink = n as u32;
                }
            },
            _ => {}
        }
    }

    /// Applies recorded ownership to what was written.
    ///
    /// # Safety
    /// The buffer is null or the caller's writable structure of its type (the
    /// hooked function's contract).
    unsafe fn fix(self, host: Option<&PathBuf>, fd: c_int) {
        match self {
            StatBuf::Copy(buf) | StatBuf::Stat(buf) if !buf.is_null() => {
                // SAFETY: not null, so the caller's writable `struct stat` (this
                // function's contract), which nothing else refers to during the call.
                let st = unsafe { &mut *buf };
                match host {
                    Some(h) => super::owner::apply(h, st),
                    None => super::owner::apply_fd(fd, st),
                }
            }
            StatBuf::Statx(buf) if !buf.is_null() => {
                // SAFETY: as above, a `struct statx`.
                super::owner::apply_statx(host, fd, unsafe { &mut *buf })
            }
            _ => {}
        }
    }
}

/// The stat family: the walk's answer, or the kernel's about the host path (links
/// not followed: the walk already followed the ones it had to), with recorded
/// ownership applied; an empty path with `AT_EMPTY_PATH` asks about `dirfd`.
///
/// # Safety
/// `path` is null or a C string, and `buf` null or the caller's writable buffer
/// (the stat family's contract).
pub unsafe fn stat_with(
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    buf: StatBuf,
    real: impl Fn(*const c_char) -> c_int + Copy,
) -> c_int {
    run_in(
        Node::empty,
        |l, node| {
            // SAFETY: `path` is null or a C string (this function's contract).
            let p = unsafe { arg(path) }?;
            if p.to_bytes().is_empty() {
                return Err(Skip::Pass);
            }
            ops::resolve(l, dirfd, p, ops::Intent::Read { follow }, node)?;
            Ok(super::nlink::merged_dir(l, node))
        },
        |node, nlink| {
            let rc = match buf {
                StatBuf::Copy(out) if !out.is_null() => {
                    // SAFETY: a non-null `out` is the caller's writable `struct stat`
                    // (this function's contract).
                    unsafe { *out = node.stat };
                    0
                }
                _ => real(node.host.as_ptr()),
            };
            if rc == 0 {
                // SAFETY: `buf` is null or the caller's buffer (this function's contract).
                unsafe { buf.fix(Some(&node.host), -1) };
                if let Some(n) = nlink {
                    // SAFETY: as above.
                    unsafe { buf.set_nlink(n) };
                }
            }
            rc
        },
        || {
            let rc = real(path);
            // SAFETY: a non-null `path` is a C string, so its first byte is readable
            // (this function's contract).
            if rc == 0 && !path.is_null() && unsafe { *path } == 0 && super::layers().is_some() {
                // SAFETY: `buf` is null or the caller's buffer (this function's contract).
                unsafe { buf.fix(None, dirfd) };
            }
            rc
        },
        -1,
    )
}

/// fstat and friends: the kernel's answer with recorded ownership applied.
///
/// # Safety
/// `buf` is null or the caller's writable `struct stat` (fstat's contract).
pub unsafe fn fstat_with(fd: c_int, buf: *mut libc::stat, real: impl FnOnce() -> c_int) -> c_int {
    let rc = real();
    if rc == 0 && !buf.is_null() {
        if let Some(layers) = super::layers() {
            // SAFETY: not null, so the caller's `struct stat` (this function's
            // contract), which the real call just filled.
            let st = unsafe { &mut *buf };
            super::owner::apply_fd(fd, st);
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                if let Some(n) = merged_dir_of_fd(layers, fd, st) {
                    st.st_nlink = n as libc::nlink_t;
                }
            }
        }
    }
    rc
}

/// A merged directory's link count (`nlink`) for descriptor `fd` of the upper
/// directory `st`, when the shim knows which capsule directory it is.
fn merged_dir_of_fd(layers: &super::Layers, fd: c_int, st: &libc::stat) -> Option<u64> {
    if let Some(known) = super::nlink::remembered(st) {
        return known;
    }
    let capsule = super::fds::directory(fd)?;
    let node = layers.resolve(capsule.as_bytes(), false).ok()?;
    if (node.stat.st_dev, node.stat.st_ino) != (st.st_dev, st.st_ino) {
        return None;
    }
    super::nlink::merged_dir(layers, &node)
}

/// access / faccessat: `W_OK` where the capsule cannot write is `EROFS`, as on a
/// read-only mount; where it can, a fake root may write (dpkg checks
/// `/var/lib/dpkg` so in a root owned by real root); otherwise the kernel checks
/// the host file. `real` gets the
/// host path (direct = false) or the caller's own (direct = true).
///
/// # Safety
/// `path` is null or a C string (access's contract).
pub unsafe fn access_with(
    dirfd: c_int,
    path: *const c_char,
    mode: c_int,
    flags: c_int,
    real: impl Fn(*const c_char, bool, c_int) -> c_int + Copy,
) -> c_int {
    run_in(
        Node::empty,
        |l, node| {
            let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
            // SAFETY: `path` is null or a C string (this function's contract).
            let path = unsafe { arg(path) }?;
            ops::resolve(l, dirfd, path, ops::Intent::Read { follow }, node)?;
            if mode & libc::W_OK != 0 {
                let writable = match node.place {
                    super::layers::Place::Volume { read_only } => !read_only,
                    super::layers::Place::Passthrough => true,
                    super::layers::Place::Overlay => l.writable(),
                };
                if !writable {
                    return Err(Skip::Errno(libc::EROFS));
                }
            }
            Ok(())
        },
        |node, ()| match super::owner::access_by_root(&node.stat, mode) {
            Some(0) => 0,
            Some(e) => fail(e),
            // A fake root may write whatever the capsule can write (a copy-up makes
            // the file the real user's): the kernel is asked about the rest only.
            None => {
                let fake_root =
                    node.place == super::layers::Place::Overlay && super::owner::is_fake_root();
                let asked = if fake_root { mode & !libc::W_OK } else { mode };
                real(node.host.as_ptr(), false, asked)
            }
        },
        || real(path, true, mode),
        -1,
    )
}
