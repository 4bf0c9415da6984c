//! Changes to an existing name's attributes (mode, owner, times, inode flags), by
//! path or through a descriptor: a lower-layer file is copied up first, and the
//! capsule's ownership rules apply (`owner`).

use std::ffi::CStr;

use libc::{c_char, c_int, gid_t, mode_t, uid_t};

use super::call::{change_with, resolve_pinned, run_in};
use super::layers::Node;
use super::ops::{self, Skip};
use super::path::PathBuf;
use crate::hook::{fail, set_errno};

/// chown & co.: copied up, then the capsule's ownership rules (see `owner`).
///
/// # Safety
/// `path` is null or a C string (chown's contract).
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
        // SAFETY: `path` is null or a C string (this function's contract).
        |l, node| unsafe { resolve_pinned(l, dirfd, path, follow, node) },
        |node, pinned| {
            // Through a pinned parent the last name is never followed (see `pin`).
            let (host, follow) = match &pinned {
                Some(p) => (p.path(), false),
                None => (&node.host, follow),
            };
            match super::owner::chown(host, uid, gid, follow) {
                Ok(true) => 0,
                Ok(false) if follow => real(host.as_ptr()),
                // SAFETY: `host` is a NUL-terminated PathBuf; lchown(2) takes integer ids.
                Ok(false) => unsafe { libc::lchown(host.as_ptr(), uid, gid) },
                Err(e) => fail(e),
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
///
/// # Safety
/// `host` is a C string; `real` is the real ioctl and `arg` what the caller gave it
/// for `request` (one of `changes_inode`'s, whose argument points to the caller's
/// flags or `struct fsxattr`).
unsafe fn ioctl_by_path(
    host: *const c_char,
    request: libc::c_ulong,
    arg: libc::c_ulong,
    real: unsafe extern "C" fn(c_int, libc::c_ulong, libc::c_ulong) -> c_int,
) -> c_int {
    // SAFETY: `host` is a C string (this function's contract).
    let fd = unsafe {
        libc::open(
            host,
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return -1;
    }
    // SAFETY: the caller's request and argument (this function's contract), on a
    // descriptor of the same file we just opened.
    let rc = unsafe { real(fd, request, arg) };
    let e = crate::hook::errno();
    // SAFETY: `fd` is the descriptor opened above, ours to close.
    unsafe { libc::close(fd) };
    set_errno(e);
    rc
}

/// fchown, and fchownat of an empty path with `AT_EMPTY_PATH`: copied up as fchmod,
/// then the capsule's ownership rules (see `owner`).
pub fn fchown_with(fd: c_int, uid: uid_t, gid: gid_t, real: impl FnOnce() -> c_int) -> c_int {
    // `p` is always a host path `fd_change` or `pin` made: a NUL-terminated PathBuf.
    let by_path = |p: *const c_char| {
        // SAFETY: `p` is a NUL-terminated PathBuf's (see above).
        let host = unsafe { CStr::from_ptr(p) };
        match PathBuf::from_bytes(host.to_bytes()) {
            Ok(host) => match super::owner::chown(&host, uid, gid, false) {
                Ok(true) => 0,
                // SAFETY: `p` is a C string (see above); lchown(2) takes integer ids.
                Ok(false) => unsafe { libc::lchown(p, uid, gid) },
                Err(e) => fail(e),
            },
            Err(e) => fail(e),
        }
    };
    fd_change(fd, -1, by_path, || {
        if super::owner::active() {
            if let (Some(layers), Some(host)) = (super::layers(), fd_host(fd)) {
                return match super::pin::pin(layers, &host) {
                    Ok(pinned) => by_path(pinned.as_ref().map_or(&host, |p| p.path()).as_ptr()),
                    Err(e) => fail(e),
                };
            }
        }
        real()
    })
}

/// `utime` without following the last name: `lutimes` of the same times.
///
/// # Safety
/// `path` is a C string and `times` null or the caller's `struct utimbuf` (utime's
/// contract).
pub unsafe fn utime_nofollow(path: *const c_char, times: *const libc::utimbuf) -> c_int {
    if times.is_null() {
        // SAFETY: `path` is a C string (this function's contract); null times mean now.
        return unsafe { libc::lutimes(path, std::ptr::null()) };
    }
    // SAFETY: a non-null `times` is the caller's `struct utimbuf` (this function's
    // contract).
    let t = unsafe { &*times };
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
    // SAFETY: `path` is a C string (this function's contract) and `tv` our own two
    // timevals, as lutimes(3) takes.
    unsafe { libc::lutimes(path, tv.as_ptr()) }
}

/// An `*at` call that names `dirfd` itself (an empty path with `AT_EMPTY_PATH`).
///
/// # Safety
/// `path` is null or a C string.
unsafe fn names_dirfd(path: *const c_char, flags: c_int) -> bool {
    // SAFETY: a non-null `path` is a C string (this function's contract): its first
    // byte is readable.
    flags & libc::AT_EMPTY_PATH != 0 && !path.is_null() && unsafe { *path } == 0
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
///
/// # Safety
/// `path` is null or a C string (fchmodat's contract).
pub unsafe fn fchmodat_with(
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    flags: c_int,
    real: impl Fn(*const c_char, bool) -> c_int + Copy,
) -> c_int {
    // SAFETY: `path` is null or a C string (this function's contract).
    if unsafe { names_dirfd(path, flags) } {
        return fd_change(
            dirfd,
            -1,
            // SAFETY: `p` is the NUL-terminated host path `fd_change` made.
            |p| unsafe { super::pin::chmod_nofollow(p, mode) },
            // SAFETY: fchmod(2) takes a descriptor and a mode, no memory.
            || unsafe { libc::fchmod(dirfd, mode) },
        );
    }
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    // SAFETY: `path` is null or a C string (this function's contract).
    unsafe { change_with(dirfd, path, follow, -1, real) }
}

/// fchownat: an empty path with `AT_EMPTY_PATH` is fchown of `dirfd`.
/// `real_fd` is the real call with the caller's arguments.
///
/// # Safety
/// `path` is null or a C string (fchownat's contract).
pub unsafe fn fchownat_with(
    dirfd: c_int,
    path: *const c_char,
    uid: uid_t,
    gid: gid_t,
    flags: c_int,
    real_fd: impl FnOnce() -> c_int,
    real: impl Fn(*const c_char) -> c_int + Copy,
) -> c_int {
    // SAFETY: `path` is null or a C string (this function's contract).
    if unsafe { names_dirfd(path, flags) } {
        return fchown_with(dirfd, uid, gid, real_fd);
    }
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    // SAFETY: as above.
    unsafe { chown_with(dirfd, path, uid, gid, follow, real) }
}

/// utimensat: a null path, or an empty one with `AT_EMPTY_PATH`, sets `dirfd`'s
/// times. `real(dirfd, path, flags)` is the real call with the caller's times.
///
/// # Safety
/// `path` is null or a C string (utimensat's contract).
pub unsafe fn utimensat_with(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    real: impl Fn(c_int, *const c_char, c_int) -> c_int + Copy,
) -> c_int {
    // SAFETY: `path` is null or a C string (this function's contract).
    if path.is_null() || unsafe { names_dirfd(path, flags) } {
        return fd_change(
            dirfd,
            -1,
            |p| real(libc::AT_FDCWD, p, libc::AT_SYMLINK_NOFOLLOW),
            || real(dirfd, path, flags),
        );
    }
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    let call = |p, _| {
        if p == path {
            real(dirfd, p, flags)
        } else {
            real(libc::AT_FDCWD, p, flags | libc::AT_SYMLINK_NOFOLLOW)
        }
    };
    // SAFETY: `path` is null or a C string (this function's contract).
    unsafe { change_with(dirfd, path, follow, -1, call) }
}

/// ioctl: requests that change the inode (chattr's FS_IOC_SETFLAGS & co.) copy a
/// lower-layer file up first, like fchmod; others go to the real call.
///
/// # Safety
/// `real` is the real ioctl and `request`, `arg` the caller's (ioctl(2)'s contract
/// for that request).
pub unsafe fn ioctl_with(
    fd: c_int,
    request: libc::c_ulong,
    arg: libc::c_ulong,
    real: unsafe extern "C" fn(c_int, libc::c_ulong, libc::c_ulong) -> c_int,
) -> c_int {
    // SAFETY: the caller's arguments go unchanged to the real ioctl (this
    // function's contract).
    let pass = || unsafe { real(fd, request, arg) };
    if !changes_inode(request) {
        return pass();
    }
    // SAFETY: `p` is the NUL-terminated host path `fd_change` made; the request and
    // argument are the caller's (this function's contract).
    fd_change(
        fd,
        -1,
        |p| unsafe { ioctl_by_path(p, request, arg, real) },
        pass,
    )
}
