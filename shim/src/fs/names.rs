//! Calls that make, remove, rename or link names, and readlink (whose `/proc` links
//! hold host paths the capsule maps back).

use std::ffi::CStr;

use libc::{c_char, c_int, c_uint, dev_t, mode_t, size_t, ssize_t};

use super::call::{arg, run, run_in};
use super::layers::Node;
use super::ops::{self, Skip};
use super::path::PathBuf;
use crate::hook::fail;

/// mknod of a device by a fake root that is not really root (see `owner`).
///
/// # Safety
/// `host` is a C string (the host path the capsule name resolved to, or the
/// caller's own path).
pub unsafe fn mknod_in(
    host: *const c_char,
    mode: mode_t,
    dev: dev_t,
    real: impl FnOnce() -> c_int,
) -> c_int {
    // SAFETY: `host` is a C string (this function's contract).
    let host = unsafe { CStr::from_ptr(host) };
    let Ok(path) = PathBuf::from_bytes(host.to_bytes()) else {
        return real();
    };
    match super::owner::mknod_device(&path, mode, dev) {
        Ok(true) => 0,
        Ok(false) => real(),
        Err(e) => fail(e),
    }
}

/// A path operation that creates a name (mknod, mkfifo, symlink).
///
/// # Safety
/// `path` is null or a C string (the hooked function's path argument).
pub unsafe fn create_with(
    dirfd: c_int,
    path: *const c_char,
    real: impl Fn(*const c_char) -> c_int + Copy,
) -> c_int {
    run(
        |l| {
            // SAFETY: `path` is null or a C string (this function's contract).
            let path = unsafe { arg(path) }?;
            // Only mkdir takes a trailing slash on a new name: ENOENT (EEXIST if it is
            // there), and nothing changes (a deleted lower name stays deleted).
            if path.to_bytes().ends_with(b"/") {
                ops::check_create(l, dirfd, path)?;
                return Err(Skip::Errno(libc::ENOENT));
            }
            Ok((ops::create_path(l, dirfd, path)?, l))
        },
        |((host, node, had_whiteout), l)| {
            let rc = real(host.as_ptr());
            if rc == 0 && node.place == super::layers::Place::Overlay {
                super::owner::after_create(&host);
            } else if rc != 0 {
                ops::create_failed(l, &node, had_whiteout);
            }
            rc
        },
        || real(path),
        -1,
    )
}

/// mkdir and mkdirat: the name made in the upper layer (or a volume), opaque where
/// a lower directory of that name was deleted.
///
/// # Safety
/// `path` is null or a C string (the hooked function's path argument).
pub unsafe fn mkdir_with(
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    real: impl Fn(*const c_char, mode_t) -> c_int + Copy,
) -> c_int {
    run(
        // SAFETY: `path` is null or a C string (this function's contract).
        |l| Ok((ops::create_path(l, dirfd, unsafe { arg(path) }?)?, l)),
        |((host, node, had_whiteout), l)| {
            let rc = real(host.as_ptr(), mode);
            if rc == 0 {
                if let Err(Skip::Errno(e)) = ops::after_mkdir(l, &node, had_whiteout) {
                    return fail(e);
                }
            } else {
                ops::create_failed(l, &node, had_whiteout);
            }
            rc
        },
        || real(path, mode),
        -1,
    )
}

/// rmdir, unlink and unlinkat: done by the capsule (a whiteout where a lower name
/// shows through), never by the real call unless the replica passes.
///
/// # Safety
/// `path` is null or a C string (the hooked function's path argument).
pub unsafe fn remove_with(
    dirfd: c_int,
    path: *const c_char,
    directory: bool,
    real: impl Fn() -> c_int + Copy,
) -> c_int {
    run(
        // SAFETY: `path` is null or a C string (this function's contract).
        |l| ops::remove(l, dirfd, unsafe { arg(path) }?, directory),
        |()| 0,
        real,
        -1,
    )
}

/// rename & co., with renameat2's flags: `RENAME_NOREPLACE` and `RENAME_EXCHANGE`
/// across layers as the kernel does them (`ops::rename`).
///
/// # Safety
/// `old` and `new` are null or C strings (rename's contract).
pub unsafe fn rename_with(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    flags: c_uint,
    real: impl Fn(*const c_char, *const c_char) -> c_int + Copy,
) -> c_int {
    if super::layers().is_some() {
        // The kernel's checks of the flags, before any name is looked at.
        let exclusive = libc::RENAME_NOREPLACE | libc::RENAME_WHITEOUT;
        if flags & !(exclusive | libc::RENAME_EXCHANGE) != 0
            || (flags & libc::RENAME_EXCHANGE != 0 && flags & exclusive != 0)
        {
            return fail(libc::EINVAL);
        }
        // RENAME_WHITEOUT needs CAP_MKNOD (the capsule identity's, or the real one).
        if flags & libc::RENAME_WHITEOUT != 0 && !may_mknod() {
            return fail(libc::EPERM);
        }
    }
    run(
        |l| {
            ops::rename(
                l,
                // SAFETY: `old` and `new` are null or C strings (this function's contract).
                (olddir, unsafe { arg(old) }?),
                // SAFETY: as above.
                (newdir, unsafe { arg(new) }?),
                flags,
            )
            .and_then(|hosts| {
                if hosts.is_none() && flags & libc::RENAME_WHITEOUT != 0 {
                    // SAFETY: `old` is null or a C string (this function's contract).
                    leave_whiteout(l, olddir, unsafe { arg(old) }?)?;
                }
                Ok(hosts)
            })
        },
        |hosts| match hosts {
            Some((from, to)) => {
                let rc = real(from.as_ptr(), to.as_ptr());
                if rc == 0 {
                    // A volume's directories are cached too (see `Layers::remember`).
                    super::changed();
                }
                rc
            }
            None => 0,
        },
        || real(old, new),
        -1,
    )
}

/// Whether the caller holds CAP_MKNOD: the capsule identity's, or without one the
/// real process's (root).
fn may_mknod() -> bool {
    const CAP_MKNOD: u64 = 1 << 27;
    let creds = &crate::identity::state::CREDS;
    if creds.enabled() {
        return creds.capable(CAP_MKNOD);
    }
    // SAFETY: a raw system call without arguments.
    unsafe { libc::syscall(libc::SYS_geteuid) == 0 }
}

/// RENAME_WHITEOUT after an overlay rename: the old name becomes the kernel's
/// whiteout, a character device 0:0 of mode 0 (a name of the capsule, not one of
/// its own markers), as `mknod` makes it.
fn leave_whiteout(l: &super::Layers, dirfd: c_int, old: &CStr) -> super::ops::Op<()> {
    let (host, node, had_whiteout) = ops::create_path(l, dirfd, old)?;
    let (mode, dev) = (libc::S_IFCHR, libc::makedev(0, 0));
    // SAFETY: `host` is a NUL-terminated host path; the real mknod is reached (the
    // shim guard is held), or the fake root's device file made.
    let rc = unsafe {
        mknod_in(host.as_ptr(), mode, dev, || {
            libc::mknod(host.as_ptr(), mode, dev)
        })
    };
    if rc != 0 {
        let e = crate::hook::errno();
        ops::create_failed(l, &node, had_whiteout);
        return Err(Skip::Errno(e));
    }
    super::owner::after_create(&host);
    Ok(())
}

/// link and linkat: a hard link of a lower file links its upper copy.
///
/// # Safety
/// `old` and `new` are null or C strings (link's contract).
pub unsafe fn link_with(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    follow: bool,
    real: impl Fn(*const c_char, *const c_char) -> c_int + Copy,
) -> c_int {
    run(
        |l| {
            // SAFETY: `old` and `new` are null or C strings (this function's contract).
            let (old, new) = unsafe { (arg(old)?, arg(new)?) };
            ops::link(l, (olddir, old), (newdir, new), follow)
        },
        |(from, to)| real(from.as_ptr(), to.as_ptr()),
        || real(old, new),
        -1,
    )
}

/// readlink & co.: a link of `/proc` holds a host path, mapped back to the
/// capsule's before the caller sees it.
///
/// # Safety
/// `path` is null or a C string, and `buf` has room for `size` bytes (readlink's
/// contract).
pub unsafe fn readlink_with(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    real: impl Fn(*const c_char, *mut c_char, size_t) -> ssize_t + Copy,
) -> ssize_t {
    run_in(
        Node::empty,
        |l, node| {
            // SAFETY: `path` is null or a C string (this function's contract).
            let path = unsafe { arg(path) }?;
            ops::resolve(l, dirfd, path, ops::Intent::Read { follow: false }, node)?;
            Ok(l)
        },
        |node, l| {
            if !ops::is_proc_link(node.capsule.as_bytes()) {
                return real(node.host.as_ptr(), buf, size);
            }
            // A /proc link holds a host path: read it whole, map it, then copy out.
            let mut target = [0u8; super::path::PATH_MAX];
            let n = real(node.host.as_ptr(), target.as_mut_ptr().cast(), target.len());
            if n < 0 {
                return n;
            }
            let Ok(mut mapped) = PathBuf::from_bytes(&target[..n as usize]) else {
                return n;
            };
            if let Err(e) = l.map_proc_link(node.capsule.as_bytes(), &mut mapped) {
                return fail(e);
            }
            let out = mapped.as_bytes();
            let len = out.len().min(size);
            // SAFETY: `buf` has room for `size` bytes (this function's contract) and
            // `len <= size`; `mapped` is our own buffer, distinct from the caller's.
            unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), buf.cast(), len) };
            len as ssize_t
        },
        || real(path, buf, size),
        -1,
    )
}
