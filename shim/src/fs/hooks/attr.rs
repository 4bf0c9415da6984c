//! Changing a name's mode, owner, size and times (the logic is `fs::change`).

use libc::{c_char, c_int, gid_t, mode_t, off_t, uid_t};

use crate::fs::call::change_with;
use crate::fs::change::{chown_with, fchmodat_with, fchownat_with, utime_nofollow, utimensat_with};

hook! {
    fn chmod(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (chmod(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, or `chmod_nofollow` the name through its pinned parent, a
    // NUL-terminated PathBuf, with an integer mode.
    |real| unsafe { change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { crate::fs::pin::chmod_nofollow(p, mode) } else { real(p, mode) }) }

    fn fchmodat(dirfd: c_int, path: *const c_char, mode: mode_t, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (fchmodat(2)); `real` gets it with the caller's
    // `dirfd` and flags, or the NUL-terminated host path it resolved to with AT_FDCWD, or
    // `chmod_nofollow` the name through its pinned parent, with an integer mode.
    |real| unsafe { fchmodat_with(dirfd, path, mode, flags, |p, pinned| if p == path { real(dirfd, p, mode, flags) } else if pinned { crate::fs::pin::chmod_nofollow(p, mode) } else { real(libc::AT_FDCWD, p, mode, flags) }) }

    fn chown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (chown(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with integer ids.
    |real| unsafe { chown_with(libc::AT_FDCWD, path, uid, gid, true, |p| real(p, uid, gid)) }

    fn lchown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (chown(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with integer ids.
    |real| unsafe { chown_with(libc::AT_FDCWD, path, uid, gid, false, |p| real(p, uid, gid)) }

    fn fchownat(dirfd: c_int, path: *const c_char, uid: uid_t, gid: gid_t, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (fchownat(2)); `real` gets it with the caller's
    // `dirfd` and flags, or the NUL-terminated host path it resolved to (absolute), not
    // followed, with integer ids.
    |real| unsafe { fchownat_with(dirfd, path, uid, gid, flags, || real(dirfd, path, uid, gid, flags), |p| if p == path { real(dirfd, p, uid, gid, flags) } else { real(libc::AT_FDCWD, p, uid, gid, flags | libc::AT_SYMLINK_NOFOLLOW) }) }

    fn truncate(path: *const c_char, len: off_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (truncate(2)); `real` gets it, or the
    // NUL-terminated host path it resolved to, with an integer length.
    |real| unsafe { change_with(libc::AT_FDCWD, path, true, -1, |p, _| real(p, len)) }

    fn truncate64(path: *const c_char, len: off_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (truncate(2)); `real` gets it, or the
    // NUL-terminated host path it resolved to, with an integer length.
    |real| unsafe { change_with(libc::AT_FDCWD, path, true, -1, |p, _| real(p, len)) }

    fn utimensat(dirfd: c_int, path: *const c_char, times: *const libc::timespec, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `times` null or two timespecs (utimensat(2));
    // `real` gets `times` unchanged with `path` and `dirfd`, or the NUL-terminated host path
    // it resolved to with AT_FDCWD.
    |real| unsafe { utimensat_with(dirfd, path, flags, |d, p, f| real(d, p, times, f)) }

    fn utimes(path: *const c_char, times: *const libc::timeval) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `times` null or two timevals (utimes(2));
    // `real` gets `times` with `path` or the NUL-terminated host path it resolved to, or
    // lutimes the name through its pinned parent, a NUL-terminated PathBuf.
    |real| unsafe { change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { libc::lutimes(p, times) } else { real(p, times) }) }

    fn lutimes(path: *const c_char, times: *const libc::timeval) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `times` null or two timevals (lutimes(3));
    // `real` gets `times` with `path` or the NUL-terminated host path it resolved to.
    |real| unsafe { change_with(libc::AT_FDCWD, path, false, -1, |p, _| real(p, times)) }

    fn utime(path: *const c_char, times: *const libc::utimbuf) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `times` null or the caller's `struct utimbuf`
    // (utime(2)); `real` gets `times` with `path` or the NUL-terminated host path it resolved
    // to, or `utime_nofollow` the name through its pinned parent.
    |real| unsafe { change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { utime_nofollow(p, times) } else { real(p, times) }) }
}
