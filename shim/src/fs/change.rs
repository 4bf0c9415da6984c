//! Changes to an existing name's attributes (mode, owner, times, inode flags), by
//! path or through a descriptor: a lower-layer file is copied up first, and the
//! capsule's ownership rules apply (`owner`).

// Transitional (issue 13): the unsafe operations of this file's functions are not
// yet each in a block with its reason.
#![allow(unsafe_op_in_unsafe_fn)]

use std::ffi::CStr;

use libc::{c_char, c_int, gid_t, mode_t, uid_t};

use super::call::{arg, change_with, run_in};
use super::layers::Node;
use super::ops::{self, Skip};
use super::path::PathBuf;
use crate::hook::set_errno;

/// chown & co.: copied up, then the capsule's ownership rules (see `owner`).
pub unsafe fn chown_with(
    dirfd: c_int,
    path: *const c_char,
    uid: uid_t,
    gid: gid_t,
    follow: bool,
    real: impl Fn(*const c_char) -> c_int + Copy,
) -> c_int {
    run_in(
        Node::empty,
        |l, node| {
            ops::change_path_into(l, dirfd, arg(path)?, follow, node)?;
            Ok(super::pin::pin(l, &node.host)?)
        },
        |node, pinned| {
            // Through a pinned parent the last name is never followed (see `pin`).
            let (host, follow) = match &pinned {
                Some(p) => (p.path(), false),
                None => (&node.host, follow),
            };
            match super::owner::chown(host, uid, gid, follow) {
                Ok(true) => 0,
                Ok(false) if follow => real(host.as_ptr()),
                Ok(false) => libc::lchown(host.as_ptr(), uid, gid),
                Err(e) => {
                    set_errno(e);
                    -1
                }
            }
        },
        || real(path),
        -1,
    )
}

/// ioctl requests that change a file's inode (flags, project, version): the
/// `_IOW` numbers are the same on x86-64 and aarch64. The kernel reads the request
/// as an `unsigned int`, so only its low 32 bits count.
fn changes_inode(request: libc::c_ulong) -> bool {
    const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
    const FS_IOC32_SETFLAGS: u32 = 0x4004_6602;
    const FS_IOC_SETVERSION: u32 = 0x4008_7602;
    const FS_IOC32_SETVERSION: u32 = 0x4004_7602;
    const FS_IOC_FSSETXATTR: u32 = 0x401c_6620;
    matches!(
        request as u32,
        FS_IOC_SETFLAGS
            | FS_IOC32_SETFLAGS
            | FS_IOC_SETVERSION
            | FS_IOC32_SETVERSION
            | FS_IOC_FSSETXATTR
    )
}

/// An inode-changing ioctl on the upper copy `host`, when the descriptor could not
/// follow the copy-up.
unsafe fn ioctl_by_path(
    host: *const c_char,
    request: libc::c_ulong,
    arg: libc::c_ulong,
    real: unsafe extern "C" fn(c_int, libc::c_ulong, libc::c_ulong) -> c_int,
) -> c_int {
    let fd = libc::open(
        host,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    );
    if fd < 0 {
        return -1;
    }
    let rc = real(fd, request, arg);
    let e = crate::hook::errno();
    libc::close(fd);
    set_errno(e);
    rc
}

/// fchown, and fchownat of an empty path with `AT_EMPTY_PATH`: copied up as fchmod,
/// then the capsule's ownership rules (see `owner`).
pub unsafe fn fchown_with(
    fd: c_int,
    uid: uid_t,
    gid: gid_t,
    real: impl FnOnce() -> c_int,
) -> c_int {
    let by_path = |p: *const c_char| match PathBuf::from_bytes(CStr::from_ptr(p).to_bytes()) {
        Ok(host) => match super::owner::chown(&host, uid, gid, false) {
            Ok(true) => 0,
            Ok(false) => libc::lchown(p, uid, gid),
            Err(e) => {
                set_errno(e);
                -1
            }
        },
        Err(e) => {
            set_errno(e);
            -1
        }
    };
    fd_change(fd, -1, by_path, || {
        if super::owner::active() {
            if let (Some(layers), Some(host)) = (super::layers(), fd_host(fd)) {
                return match super::pin::pin(layers, &host) {
                    Ok(pinned) => by_path(pinned.as_ref().map_or(&host, |p| p.path()).as_ptr()),
                    Err(e) => {
                        set_errno(e);
                        -1
                    }
                };
            }
        }
        real()
    })
}

/// `utime` without following the last name: `lutimes` of the same times.
pub unsafe fn utime_nofollow(path: *const c_char, times: *const libc::utimbuf) -> c_int {
    if times.is_null() {
        return libc::lutimes(path, std::ptr::null());
    }
    let t = &*times;
    let tv = [
        libc::timeval {
            tv_sec: t.actime,
            tv_usec: 0,
        },
        libc::timeval {
            tv_sec: t.modtime,
            tv_usec: 0,
        },
    ];
    libc::lutimes(path, tv.as_ptr())
}

/// An `*at` call that names `dirfd` itself (an empty path with `AT_EMPTY_PATH`).
unsafe fn names_dirfd(path: *const c_char, flags: c_int) -> bool {
    flags & libc::AT_EMPTY_PATH != 0 && !path.is_null() && *path == 0
}

/// The host path a descriptor refers to.
fn fd_host(fd: c_int) -> Option<PathBuf> {
    super::sys::fd_target(fd)
        .ok()
        .filter(|t| t.as_bytes().starts_with(b"/"))
}

/// A change through a descriptor: applied to the upper copy when the descriptor
/// refers to a lower-layer file (`by_path`), else to the descriptor (`by_fd`).
pub fn fd_change<R>(
    fd: c_int,
    fail: R,
    by_path: impl FnOnce(*const c_char) -> R,
    by_fd: impl FnOnce() -> R,
) -> R {
    let Some(layers) = super::layers() else {
        return by_fd();
    };
    if super::fds::is_safe(fd) {
        return by_fd();
    }
    let saved = crate::hook::errno();
    match ops::fd_for_change(layers, fd) {
        // The upper copy, through its pinned parent (see `pin`).
        Ok(Some(host)) => match super::pin::pin(layers, &host) {
            Ok(pinned) => {
                set_errno(saved);
                by_path(pinned.as_ref().map_or(&host, |p| p.path()).as_ptr())
            }
            Err(e) => {
                set_errno(e);
                fail
            }
        },
        Ok(None) | Err(Skip::Pass) => {
            set_errno(saved);
            by_fd()
        }
        Err(Skip::Errno(e)) => {
            set_errno(e);
            fail
        }
    }
}

/// fchmodat: an empty path with `AT_EMPTY_PATH` is fchmod of `dirfd` (glibc's
/// fchmodat refuses it; the kernel's fchmodat2 takes it).
pub unsafe fn fchmodat_with(
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    flags: c_int,
    real: impl Fn(*const c_char, bool) -> c_int + Copy,
) -> c_int {
    if names_dirfd(path, flags) {
        return fd_change(
            dirfd,
            -1,
            |p| super::pin::chmod_nofollow(p, mode),
            || libc::fchmod(dirfd, mode),
        );
    }
    change_with(
        dirfd,
        path,
        flags & libc::AT_SYMLINK_NOFOLLOW == 0,
        -1,
        real,
    )
}

/// fchownat: an empty path with `AT_EMPTY_PATH` is fchown of `dirfd`.
/// `real_fd` is the real call with the caller's arguments.
pub unsafe fn fchownat_with(
    dirfd: c_int,
    path: *const c_char,
    uid: uid_t,
    gid: gid_t,
    flags: c_int,
    real_fd: impl FnOnce() -> c_int,
    real: impl Fn(*const c_char) -> c_int + Copy,
) -> c_int {
    if names_dirfd(path, flags) {
        return fchown_with(dirfd, uid, gid, real_fd);
    }
    chown_with(
        dirfd,
        path,
        uid,
        gid,
        flags & libc::AT_SYMLINK_NOFOLLOW == 0,
        real,
    )
}

/// utimensat: a null path, or an empty one with `AT_EMPTY_PATH`, sets `dirfd`'s
/// times. `real(dirfd, path, flags)` is the real call with the caller's times.
pub unsafe fn utimensat_with(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    real: impl Fn(c_int, *const c_char, c_int) -> c_int + Copy,
) -> c_int {
    if path.is_null() || names_dirfd(path, flags) {
        return fd_change(
            dirfd,
            -1,
            |p| real(libc::AT_FDCWD, p, libc::AT_SYMLINK_NOFOLLOW),
            || real(dirfd, path, flags),
        );
    }
    change_with(
        dirfd,
        path,
        flags & libc::AT_SYMLINK_NOFOLLOW == 0,
        -1,
        |p, _| {
            if p == path {
                real(dirfd, p, flags)
            } else {
                real(libc::AT_FDCWD, p, flags | libc::AT_SYMLINK_NOFOLLOW)
            }
        },
    )
}

/// ioctl: requests that change the inode (chattr's FS_IOC_SETFLAGS & co.) copy a
/// lower-layer file up first, like fchmod; others go to the real call.
pub unsafe fn ioctl_with(
    fd: c_int,
    request: libc::c_ulong,
    arg: libc::c_ulong,
    real: unsafe extern "C" fn(c_int, libc::c_ulong, libc::c_ulong) -> c_int,
) -> c_int {
    if !changes_inode(request) {
        return real(fd, request, arg);
    }
    fd_change(
        fd,
        -1,
        |p| ioctl_by_path(p, request, arg, real),
        || real(fd, request, arg),
    )
}
