//! Asking about a name or a descriptor: the stat family in both glibc generations
//! (`__xstat` & co. for binaries built against glibc < 2.33), access, statfs and
//! statvfs (the logic is `fs::stat`).

use libc::{c_char, c_int, c_uint};

use crate::fs::call::read_with;
use crate::fs::stat::{access_with, fstat_with, stat_with, StatBuf};

/// `struct stat`-era entry points of binaries built against glibc < 2.33 take the
/// structure version first.
#[cfg(target_env = "gnu")]
type Ver = c_int;

hook! {
    fn stat(path: *const c_char, buf: *mut libc::stat) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat`
    // (stat(2); `stat64` has the same layout on 64-bit Linux); `real` gets `path`, or the
    // NUL-terminated host path it resolved to, with `buf`.
    |real| unsafe { stat_with(libc::AT_FDCWD, path, true, StatBuf::Copy(buf), |p| real(p, buf)) }

    fn stat64(path: *const c_char, buf: *mut libc::stat64) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat`
    // (stat(2); `stat64` has the same layout on 64-bit Linux); `real` gets `path`, or the
    // NUL-terminated host path it resolved to, with `buf`.
    |real| unsafe { stat_with(libc::AT_FDCWD, path, true, StatBuf::Copy(buf.cast()), |p| real(p, buf)) }

    fn lstat(path: *const c_char, buf: *mut libc::stat) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat`
    // (stat(2); `stat64` has the same layout on 64-bit Linux); `real` gets `path`, or the
    // NUL-terminated host path it resolved to, with `buf`.
    |real| unsafe { stat_with(libc::AT_FDCWD, path, false, StatBuf::Copy(buf), |p| real(p, buf)) }

    fn lstat64(path: *const c_char, buf: *mut libc::stat64) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat`
    // (stat(2); `stat64` has the same layout on 64-bit Linux); `real` gets `path`, or the
    // NUL-terminated host path it resolved to, with `buf`.
    |real| unsafe { stat_with(libc::AT_FDCWD, path, false, StatBuf::Copy(buf.cast()), |p| real(p, buf)) }

    fn fstatat(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat`
    // (fstatat(2)); `real` gets `path` with the caller's `dirfd` and flags, or the
    // NUL-terminated host path it resolved to (absolute), not followed, with `buf`.
    |real| unsafe { stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Copy(buf), |p| if p == path { real(dirfd, p, buf, flags) } else { real(libc::AT_FDCWD, p, buf, flags | libc::AT_SYMLINK_NOFOLLOW) }) }

    fn fstatat64(dirfd: c_int, path: *const c_char, buf: *mut libc::stat64, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat`
    // (fstatat(2)); `real` gets `path` with the caller's `dirfd` and flags, or the
    // NUL-terminated host path it resolved to (absolute), not followed, with `buf`.
    |real| unsafe { stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Copy(buf.cast()), |p| if p == path { real(dirfd, p, buf, flags) } else { real(libc::AT_FDCWD, p, buf, flags | libc::AT_SYMLINK_NOFOLLOW) }) }

    #[cfg(target_env = "gnu")]
    fn __xstat(ver: Ver, path: *const c_char, buf: *mut libc::stat) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat` of
    // version `ver` (glibc < 2.33's stat); `real` gets `path`, or the NUL-terminated host path
    // it resolved to, with `ver` and `buf`.
    |real| unsafe { stat_with(libc::AT_FDCWD, path, true, StatBuf::Stat(buf.cast()), |p| real(ver, p, buf)) }

    #[cfg(target_env = "gnu")]
    fn __xstat64(ver: Ver, path: *const c_char, buf: *mut libc::stat64) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat` of
    // version `ver` (glibc < 2.33's stat); `real` gets `path`, or the NUL-terminated host path
    // it resolved to, with `ver` and `buf`.
    |real| unsafe { stat_with(libc::AT_FDCWD, path, true, StatBuf::Stat(buf.cast()), |p| real(ver, p, buf)) }

    #[cfg(target_env = "gnu")]
    fn __lxstat(ver: Ver, path: *const c_char, buf: *mut libc::stat) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat` of
    // version `ver` (glibc < 2.33's stat); `real` gets `path`, or the NUL-terminated host path
    // it resolved to, with `ver` and `buf`.
    |real| unsafe { stat_with(libc::AT_FDCWD, path, false, StatBuf::Stat(buf.cast()), |p| real(ver, p, buf)) }

    #[cfg(target_env = "gnu")]
    fn __lxstat64(ver: Ver, path: *const c_char, buf: *mut libc::stat64) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct stat` of
    // version `ver` (glibc < 2.33's stat); `real` gets `path`, or the NUL-terminated host path
    // it resolved to, with `ver` and `buf`.
    |real| unsafe { stat_with(libc::AT_FDCWD, path, false, StatBuf::Stat(buf.cast()), |p| real(ver, p, buf)) }

    #[cfg(target_env = "gnu")]
    fn __fxstatat(ver: Ver, dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int, missing: -1;
    // SAFETY: as fstatat's, `buf` of version `ver` (glibc < 2.33); `real` gets `path` with the
    // caller's `dirfd` and flags, or the NUL-terminated host path it resolved to (absolute),
    // not followed, with `ver` and `buf`.
    |real| unsafe { stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Stat(buf.cast()), |p| if p == path { real(ver, dirfd, p, buf, flags) } else { real(ver, libc::AT_FDCWD, p, buf, flags | libc::AT_SYMLINK_NOFOLLOW) }) }

    #[cfg(target_env = "gnu")]
    fn __fxstatat64(ver: Ver, dirfd: c_int, path: *const c_char, buf: *mut libc::stat64, flags: c_int) -> c_int, missing: -1;
    // SAFETY: as fstatat's, `buf` of version `ver` (glibc < 2.33); `real` gets `path` with the
    // caller's `dirfd` and flags, or the NUL-terminated host path it resolved to (absolute),
    // not followed, with `ver` and `buf`.
    |real| unsafe { stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Stat(buf.cast()), |p| if p == path { real(ver, dirfd, p, buf, flags) } else { real(ver, libc::AT_FDCWD, p, buf, flags | libc::AT_SYMLINK_NOFOLLOW) }) }

    fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut libc::statx) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct statx`
    // (statx(2)); `real` gets `path` with the caller's `dirfd` and flags, or the
    // NUL-terminated host path it resolved to (absolute), not followed, with `mask` and `buf`.
    |real| unsafe { stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Statx(buf), |p| if p == path { real(dirfd, p, flags, mask, buf) } else { real(libc::AT_FDCWD, p, flags | libc::AT_SYMLINK_NOFOLLOW, mask, buf) }) }

    fn access(path: *const c_char, mode: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (access(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with an integer mode.
    |real| unsafe { access_with(libc::AT_FDCWD, path, mode, 0, |p, _, m| real(p, m)) }

    fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (faccessat(2)); `real` gets it with the caller's
    // `dirfd` and flags, or the NUL-terminated host path it resolved to (absolute), not
    // followed, with an integer mode.
    |real| unsafe { access_with(dirfd, path, mode, flags, |p, direct, m| if direct { real(dirfd, p, m, flags) } else { real(libc::AT_FDCWD, p, m, flags | libc::AT_SYMLINK_NOFOLLOW) }) }

    fn euidaccess(path: *const c_char, mode: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (access(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with an integer mode.
    |real| unsafe { access_with(libc::AT_FDCWD, path, mode, 0, |p, _, m| real(p, m)) }

    fn eaccess(path: *const c_char, mode: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (access(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with an integer mode.
    |real| unsafe { access_with(libc::AT_FDCWD, path, mode, 0, |p, _, m| real(p, m)) }

    fn statfs(path: *const c_char, buf: *mut libc::statfs) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct statfs`
    // (statfs(2)); `real` gets `path`, or the NUL-terminated host path it resolved to, with
    // `buf`.
    |real| unsafe { read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, buf)) }

    fn statfs64(path: *const c_char, buf: *mut libc::statfs64) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct statfs`
    // (statfs(2)); `real` gets `path`, or the NUL-terminated host path it resolved to, with
    // `buf`.
    |real| unsafe { read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, buf)) }

    fn statvfs(path: *const c_char, buf: *mut libc::statvfs) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct statvfs`
    // (statvfs(3)); `real` gets `path`, or the NUL-terminated host path it resolved to, with
    // `buf`.
    |real| unsafe { read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, buf)) }

    fn statvfs64(path: *const c_char, buf: *mut libc::statvfs64) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` the caller's writable `struct statvfs`
    // (statvfs(3)); `real` gets `path`, or the NUL-terminated host path it resolved to, with
    // `buf`.
    |real| unsafe { read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, buf)) }

    fn fstat(fd: c_int, buf: *mut libc::stat) -> c_int, missing: -1;
    // SAFETY: `buf` is null or the caller's writable `struct stat` (fstat(2)); `real` gets it
    // with `fd`, unchanged.
    |real| unsafe { fstat_with(fd, buf, || real(fd, buf)) }

    fn fstat64(fd: c_int, buf: *mut libc::stat64) -> c_int, missing: -1;
    // SAFETY: `buf` is null or the caller's writable `struct stat` (fstat(2)); `real` gets it
    // with `fd`, unchanged.
    |real| unsafe { fstat_with(fd, buf.cast(), || real(fd, buf)) }

    #[cfg(target_env = "gnu")]
    fn __fxstat(ver: Ver, fd: c_int, buf: *mut libc::stat) -> c_int, missing: -1;
    // SAFETY: `buf` is null or the caller's writable `struct stat` of version `ver` (glibc <
    // 2.33's fstat); `real` gets them with `fd`, unchanged.
    |real| unsafe { fstat_with(fd, buf, || real(ver, fd, buf)) }

    #[cfg(target_env = "gnu")]
    fn __fxstat64(ver: Ver, fd: c_int, buf: *mut libc::stat64) -> c_int, missing: -1;
    // SAFETY: `buf` is null or the caller's writable `struct stat` of version `ver` (glibc <
    // 2.33's fstat); `real` gets them with `fd`, unchanged.
    |real| unsafe { fstat_with(fd, buf.cast(), || real(ver, fd, buf)) }
}
