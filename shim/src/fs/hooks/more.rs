//! Path-taking libc functions beyond the core file calls: each names
//! its file in the capsule like every other call, so that none of them reaches the
//! host's file of the same name. Functions that need privileges a capsule cannot
//! contain (`chroot`, `mount`, opening by file handle) are refused in a capsule with
//! a file system of its own, as they would be for an unprivileged user.

use std::ffi::CStr;

use libc::{c_char, c_int, c_long, c_uint, c_void, mode_t, posix_spawn_file_actions_t};

use crate::fs::call::{arg, change_with, read_with, run_in};
use crate::fs::open::dlopen_with;
use crate::fs::ops::{self, Skip};
use crate::fs::path::PathBuf;
use crate::fs::readdir::{scandir_with, Compare, Dirent, Filter};
use crate::hook::{error_code, fail, Convention};

/// `EPERM` for an operation that would leave the capsule's view when the capsule has
/// a file system; the real call otherwise.
fn refused<R: Convention>(real: impl FnOnce() -> R) -> R {
    if crate::fs::layers().is_none() {
        return real();
    }
    fail(libc::EPERM)
}

/// The absolute capsule path of `path` relative to `dirfd`, for calls that have only
/// an `AT_FDCWD` form underneath (`scandirat`).
///
/// # Safety
/// `path` is a NUL-terminated string.
unsafe fn absolute(dirfd: c_int, path: *const c_char) -> Result<Option<PathBuf>, c_int> {
    let Some(layers) = crate::fs::layers() else {
        return Ok(None);
    };
    // SAFETY: `path` is NUL-terminated (the caller's contract).
    let path = unsafe { CStr::from_ptr(path) };
    match ops::absolute(layers, dirfd, path) {
        Ok(p) => Ok(Some(p)),
        Err(Skip::Pass) => Ok(None),
        Err(Skip::Errno(e)) => Err(e),
    }
}

/// The calls `refused` answers.
const REFUSED: crate::coverage::Support =
    crate::coverage::Support::Partial("EPERM in a capsule with a file system");

hook! {
    /// `futimesat(dirfd, NULL, …)` is `futimes` on the descriptor.
    fn futimesat(dirfd: c_int, path: *const c_char, times: *const libc::timeval) -> c_int, missing: -1;
    |real| {
        if path.is_null() {
            // SAFETY: `times` is null or two timevals (futimesat's contract).
            return crate::hook::outside(|| unsafe { libc::futimes(dirfd, times) });
        }
        let call = |p: *const c_char, pinned| {
            // SAFETY: `p` is `path` or the host name the capsule's name resolved to, a C string; `times` is the caller's (futimesat(2)'s contract).
            unsafe { if p == path { real(dirfd, p, times) } else if pinned { libc::lutimes(p, times) } else { real(libc::AT_FDCWD, p, times) } }
        };
        // SAFETY: `path` is a non-null C string (futimesat's contract).
        unsafe { change_with(dirfd, path, true, -1, call) }
    }

    fn lchmod(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    |real| {
        // SAFETY: `p` is `path` or the host name the capsule's name resolved to, a C string, and a mode.
        let call = |p, _| unsafe { real(p, mode) };
        // SAFETY: `path` is a C string or null (lchmod's contract).
        unsafe { change_with(libc::AT_FDCWD, path, false, -1, call) }
    }

    fn pathconf(path: *const c_char, name: c_int) -> c_long, missing: -1;
    |real| {
        // SAFETY: `p` is `path` or the host name the capsule's name resolved to, a C string, and a name number.
        let call = |p| unsafe { real(p, name) };
        // SAFETY: `path` is a C string or null (pathconf's contract).
        unsafe { read_with(libc::AT_FDCWD, path, true, -1, call) }
    }

    fn ftok(path: *const c_char, id: c_int) -> libc::key_t, missing: -1;
    |real| {
        // SAFETY: `p` is `path` or the host name the capsule's name resolved to, a C string, and a project id.
        let call = |p| unsafe { real(p, id) };
        // SAFETY: `path` is a C string or null (ftok's contract).
        unsafe { read_with(libc::AT_FDCWD, path, true, -1, call) }
    }

    /// The watch is on the file the name has now; a later copy-up makes a new file
    /// the watch does not see (as overlayfs's inotify does).
    fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int, missing: -1, support: Partial("watches the file the name has now: after a copy-up the watch is on the old (lower) file, as with overlayfs");
    |real| {
        // SAFETY: `p` is `path` or the host name the capsule's name resolved to, a C string; `fd` and `mask` are integers.
        let call = |p| unsafe { real(fd, p, mask) };
        // SAFETY: `path` is a C string or null (inotify_add_watch's contract).
        unsafe { read_with(libc::AT_FDCWD, path, mask & libc::IN_DONT_FOLLOW == 0, -1, call) }
    }

    fn fanotify_mark(fd: c_int, flags: c_uint, mask: u64, dirfd: c_int, path: *const c_char) -> c_int, missing: -1, support: Partial("as inotify_add_watch; a mount or file-system mark covers the host's whole mount");
    |real| {
        if path.is_null() {
            // SAFETY: the caller's arguments go unchanged to the real fanotify_mark(2).
            return unsafe { real(fd, flags, mask, dirfd, path) };
        }
        let follow = flags & libc::FAN_MARK_DONT_FOLLOW == 0;
        let call = |p| {
            // SAFETY: `p` is `path` or the host name the capsule's name resolved to, a C string; the other arguments are integers.
            unsafe { if p == path { real(fd, flags, mask, dirfd, p) } else { real(fd, flags, mask, libc::AT_FDCWD, p) } }
        };
        // SAFETY: `path` is a non-null C string (fanotify_mark's contract).
        unsafe { read_with(dirfd, path, follow, -1, call) }
    }

    fn name_to_handle_at(dirfd: c_int, path: *const c_char, handle: *mut c_void, mount_id: *mut c_int, flags: c_int) -> c_int, missing: -1;
    |real| {
        // SAFETY: the caller's arguments go unchanged to the real name_to_handle_at(2).
        let pass = || unsafe { real(dirfd, path, handle, mount_id, flags) };
        // SAFETY: `path` is a C string when not null (name_to_handle_at's contract).
        if path.is_null() || (flags & libc::AT_EMPTY_PATH != 0 && unsafe { *path } == 0) {
            return pass();
        }
        let follow = flags & libc::AT_SYMLINK_FOLLOW != 0;
        let call = |p| {
            // SAFETY: `p` is `path` or the host name the capsule's name resolved to, a C string; `handle` and `mount_id` are the caller's, as the call takes them.
            unsafe { if p == path { real(dirfd, p, handle, mount_id, flags) } else { real(libc::AT_FDCWD, p, handle, mount_id, flags) } }
        };
        // SAFETY: `path` is a non-null C string (name_to_handle_at's contract).
        unsafe { read_with(dirfd, path, follow, -1, call) }
    }

    /// A handle names any inode of a file system, outside the capsule too: refused.
    fn open_by_handle_at(mount_fd: c_int, handle: *mut c_void, flags: c_int) -> c_int, missing: -1, support: Partial("EPERM in a capsule with a file system: a handle names any inode, outside the capsule too");
    // SAFETY: without a capsule file system the caller's arguments go unchanged to the real call.
    |real| refused(|| unsafe { real(mount_fd, handle, flags) })

    /// A real chroot would leave the shim's host paths pointing elsewhere; it is not
    /// emulated yet.
    fn chroot(path: *const c_char) -> c_int, missing: -1, support: Partial("EPERM in a capsule with a file system: not emulated yet");
    // SAFETY: without a capsule file system the caller's path goes unchanged to chroot(2).
    |real| refused(|| unsafe { real(path) })

    fn mount(source: *const c_char, target: *const c_char, fstype: *const c_char, flags: libc::c_ulong, data: *const c_void) -> c_int, missing: -1, support: REFUSED;
    // SAFETY: without a capsule file system the caller's arguments go unchanged to mount(2).
    |real| refused(|| unsafe { real(source, target, fstype, flags, data) })

    fn umount(target: *const c_char) -> c_int, missing: -1, support: REFUSED;
    // SAFETY: without a capsule file system the caller's path goes unchanged to umount(2).
    |real| refused(|| unsafe { real(target) })

    fn umount2(target: *const c_char, flags: c_int) -> c_int, missing: -1, support: REFUSED;
    // SAFETY: without a capsule file system the caller's arguments go unchanged to umount2(2).
    |real| refused(|| unsafe { real(target, flags) })

    fn swapon(path: *const c_char, flags: c_int) -> c_int, missing: -1, support: REFUSED;
    // SAFETY: without a capsule file system the caller's arguments go unchanged to swapon(2).
    |real| refused(|| unsafe { real(path, flags) })

    fn swapoff(path: *const c_char) -> c_int, missing: -1, support: REFUSED;
    // SAFETY: without a capsule file system the caller's path goes unchanged to swapoff(2).
    |real| refused(|| unsafe { real(path) })

    fn acct(path: *const c_char) -> c_int, missing: -1, support: REFUSED;
    // SAFETY: without a capsule file system the caller's path goes unchanged to acct(2).
    |real| refused(|| unsafe { real(path) })

    /// A library given by path is loaded from the capsule.
    fn dlopen(path: *const c_char, flags: c_int) -> *mut c_void, missing: std::ptr::null_mut(), support: Partial("the library named is loaded from the capsule; its own dependencies come from the dynamic loader's search path");
    // SAFETY: `path` is null or a C string (dlopen(3)); `real` gets it or the host
    // path it resolved to, a NUL-terminated PathBuf, with the caller's flags.
    |real| unsafe { dlopen_with(path, |p| real(p, flags)) }

    /// glibc only: musl has no link-map namespaces.
    #[cfg(target_env = "gnu")]
    fn dlmopen(lmid: libc::Lmid_t, path: *const c_char, flags: c_int) -> *mut c_void, missing: std::ptr::null_mut(), support: Partial("as dlopen");
    |real| {
        // SAFETY: the caller's arguments go unchanged to the real dlmopen(3).
        let pass = || unsafe { real(lmid, path, flags) };
        if path.is_null() {
            return pass();
        }
        // SAFETY: `path` is a non-null C string (dlmopen's contract).
        let name = unsafe { CStr::from_ptr(path) };
        if !name.to_bytes().contains(&b'/') {
            return pass();
        }
        let mut node = crate::fs::layers::Node::empty();
        match crate::fs::layers().map(|l| ops::resolve(l, libc::AT_FDCWD, name, ops::Intent::READ, &mut node)) {
            // SAFETY: `node.host` is the resolved host path, a C string; the rest is the caller's.
            Some(Ok(())) => crate::hook::outside(|| unsafe { real(lmid, node.host.as_ptr(), flags) }),
            _ => crate::hook::outside(pass),
        }
    }

    fn scandirat(dirfd: c_int, path: *const c_char, list: *mut *mut *mut Dirent, filter: Filter, compare: Compare) -> c_int, missing: -1;
    // SAFETY: the caller's arguments as scandirat(3) takes them.
    |real| unsafe { scandirat_with(dirfd, path, list, filter, compare, || real(dirfd, path, list, filter, compare)) }

    fn scandirat64(dirfd: c_int, path: *const c_char, list: *mut *mut *mut Dirent, filter: Filter, compare: Compare) -> c_int, missing: -1;
    // SAFETY: the caller's arguments as scandirat64(3) takes them.
    |real| unsafe { scandirat_with(dirfd, path, list, filter, compare, || real(dirfd, path, list, filter, compare)) }

    /// The child opens the capsule's file: the name is resolved (and a file to be
    /// written copied up) when the action is added, a capsule refusal (`EROFS`,
    /// `ENOENT` of a directory on the way) is returned then rather than by the spawn.
    fn posix_spawn_file_actions_addopen(actions: *mut posix_spawn_file_actions_t, fd: c_int, path: *const c_char, oflag: c_int, mode: mode_t) -> c_int, missing: libc::ENOSYS, support: Partial("the name is resolved, and a file to be written copied up, when the action is added (relative to the working directory then, not to an earlier addchdir action); a capsule refusal is returned by the add");
    |real| {
        // The capsule refusing the name is an error posix_spawn_file_actions_* return.
        error_code(|| run_in(
            ops::OpenPlan::new,
            |l, plan| {
                // SAFETY: `path` is a C string or null (the action's contract).
                let name = ops::Name::new(l, libc::AT_FDCWD, unsafe { arg(path) }?)?;
                ops::open_into(l, &name, oflag, plan)
            },
            // SAFETY: `plan.host` is the resolved host path, a C string; `actions` the caller's.
            |plan, ()| unsafe { real(actions, fd, plan.host.as_ptr(), oflag, mode) },
            // SAFETY: the caller's arguments go unchanged to the real call.
            || unsafe { real(actions, fd, path, oflag, mode) },
            -1,
        ))
    }

    fn posix_spawn_file_actions_addchdir_np(actions: *mut posix_spawn_file_actions_t, path: *const c_char) -> c_int, missing: libc::ENOSYS, support: Partial("the directory is resolved when the action is added");
    |real| {
        // SAFETY: `p` is `path` or the host name the capsule's name resolved to, a C string; `actions` is the caller's.
        let call = |p| unsafe { real(actions, p) };
        // SAFETY: `path` is a C string or null (the action's contract).
        error_code(|| unsafe { read_with(libc::AT_FDCWD, path, true, -1, call) })
    }
}

/// scandirat: the capsule's directory relative to `dirfd`, listed as scandir does.
///
/// # Safety
/// As scandirat(3): `path` is null or a C string, `list` is writable, the callbacks
/// are the program's; `real` is the real scandirat with these arguments.
unsafe fn scandirat_with(
    dirfd: c_int,
    path: *const c_char,
    list: *mut *mut *mut Dirent,
    filter: Filter,
    compare: Compare,
    real: impl Fn() -> c_int + Copy,
) -> c_int {
    if path.is_null() {
        return real();
    }
    // SAFETY: `path` is a non-null C string (this function's contract).
    match unsafe { absolute(dirfd, path) } {
        // SAFETY: `full` is a C string; `list` and the callbacks are the caller's.
        Ok(Some(full)) => unsafe { scandir_with(full.as_ptr(), list, filter, compare, real) },
        Ok(None) => real(),
        Err(e) => fail(e),
    }
}
