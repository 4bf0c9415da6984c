//! Opening files: `open` and its LFS, `*at` and `_FORTIFY_SOURCE` names, `creat`,
//! and the stdio streams (the logic is `fs::open`).

use libc::{c_char, c_int, mode_t, FILE};

use crate::fs::open::{fopen_with, freopen_with, open_with};

hook! {
    fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (open(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with the caller's integer flags (and mode).
    |real| unsafe { open_with(libc::AT_FDCWD, path, flags, |p, f| real(p, f, mode)) }

    fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (open(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with the caller's integer flags (and mode).
    |real| unsafe { open_with(libc::AT_FDCWD, path, flags, |p, f| real(p, f, mode)) }

    fn __open_2(path: *const c_char, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (open(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with the caller's integer flags (and mode).
    |real| unsafe { open_with(libc::AT_FDCWD, path, flags, |p, f| real(p, f)) }

    fn __open64_2(path: *const c_char, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (open(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with the caller's integer flags (and mode).
    |real| unsafe { open_with(libc::AT_FDCWD, path, flags, |p, f| real(p, f)) }

    fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (openat(2)); `real` gets it with the caller's
    // `dirfd`, or the NUL-terminated host path it resolved to (absolute) with AT_FDCWD, and the
    // integer flags and mode.
    |real| unsafe { open_with(dirfd, path, flags, |p, f| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, f, mode)) }

    fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (openat(2)); `real` gets it with the caller's
    // `dirfd`, or the NUL-terminated host path it resolved to (absolute) with AT_FDCWD, and the
    // integer flags and mode.
    |real| unsafe { open_with(dirfd, path, flags, |p, f| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, f, mode)) }

    fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (openat(2)); `real` gets it with the caller's
    // `dirfd`, or the NUL-terminated host path it resolved to (absolute) with AT_FDCWD, and the
    // integer flags and mode.
    |real| unsafe { open_with(dirfd, path, flags, |p, f| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, f)) }

    fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (openat(2)); `real` gets it with the caller's
    // `dirfd`, or the NUL-terminated host path it resolved to (absolute) with AT_FDCWD, and the
    // integer flags and mode.
    |real| unsafe { open_with(dirfd, path, flags, |p, f| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, f)) }

    fn creat(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (open(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with the caller's integer flags (and mode).
    |real| unsafe { open_with(libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, |p, _| real(p, mode)) }

    fn creat64(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (open(2)); `real` gets it, or the NUL-terminated
    // host path it resolved to, with the caller's integer flags (and mode).
    |real| unsafe { open_with(libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, |p, _| real(p, mode)) }

    fn fopen(path: *const c_char, mode: *const c_char) -> *mut FILE, missing: std::ptr::null_mut();
    // SAFETY: `path` and `mode` are null or C strings (fopen(3)); `real` gets `path`, or the
    // NUL-terminated host path it resolved to, with the caller's `mode`.
    |real| unsafe { fopen_with(path, mode, |p| real(p, mode)) }

    fn fopen64(path: *const c_char, mode: *const c_char) -> *mut FILE, missing: std::ptr::null_mut();
    // SAFETY: `path` and `mode` are null or C strings (fopen(3)); `real` gets `path`, or the
    // NUL-terminated host path it resolved to, with the caller's `mode`.
    |real| unsafe { fopen_with(path, mode, |p| real(p, mode)) }

    fn freopen(path: *const c_char, mode: *const c_char, stream: *mut FILE) -> *mut FILE, missing: std::ptr::null_mut();
    // SAFETY: `path` and `mode` are null or C strings and `stream` null or an open stream
    // (freopen(3)); `real` gets `path`, or the NUL-terminated host path it resolved to, with
    // `mode` and `stream` unchanged.
    |real| unsafe { freopen_with(path, mode, stream, |p| real(p, mode, stream)) }

    fn freopen64(path: *const c_char, mode: *const c_char, stream: *mut FILE) -> *mut FILE, missing: std::ptr::null_mut();
    // SAFETY: `path` and `mode` are null or C strings and `stream` null or an open stream
    // (freopen(3)); `real` gets `path`, or the NUL-terminated host path it resolved to, with
    // `mode` and `stream` unchanged.
    |real| unsafe { freopen_with(path, mode, stream, |p| real(p, mode, stream)) }
}
