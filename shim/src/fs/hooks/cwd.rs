//! The working directory and canonical names (the logic is `fs::cwd`).

use libc::{c_char, c_int, size_t};

use crate::fs::cwd::{chdir_with, getcwd_with, realpath_with};

hook! {
    fn chdir(path: *const c_char) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (chdir(2)); `real` gets it, or the NUL-terminated
    // host path of the capsule directory.
    |real| unsafe { chdir_with(path, |p| real(p)) }

    fn getcwd(buf: *mut c_char, size: size_t) -> *mut c_char, missing: std::ptr::null_mut();
    // SAFETY: `buf` is null or has room for `size` bytes (getcwd(3)): `getcwd_with`'s
    // contract; `real` gets them unchanged.
    |real| unsafe { getcwd_with(buf, size, || real(buf, size)) }

    fn __getcwd_chk(buf: *mut c_char, size: size_t, buflen: size_t) -> *mut c_char, missing: std::ptr::null_mut();
    // SAFETY: `buf` is null or has room for `size` bytes (getcwd(3); `buflen` is
    // _FORTIFY_SOURCE's bound of it): `getcwd_with`'s contract; `real` gets them unchanged.
    |real| unsafe { getcwd_with(buf, size, || real(buf, size, buflen)) }

    fn get_current_dir_name() -> *mut c_char, missing: std::ptr::null_mut();
    // SAFETY: a null buffer, which `getcwd_with` fills by malloc; `real` takes no arguments.
    |real| unsafe { getcwd_with(std::ptr::null_mut(), 0, || real()) }

    fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char, missing: std::ptr::null_mut(), version: "GLIBC_2.3";
    // SAFETY: `path` is null or a C string and `resolved` null or a buffer of PATH_MAX bytes
    // (realpath(3)): `realpath_with`'s contract; `real` gets them unchanged.
    |real| unsafe { realpath_with(path, resolved, || real(path, resolved)) }

    fn __realpath_chk(path: *const c_char, resolved: *mut c_char, len: size_t) -> *mut c_char, missing: std::ptr::null_mut();
    // SAFETY: `path` is null or a C string and `resolved` null or a buffer of PATH_MAX bytes
    // (realpath(3); `len` is _FORTIFY_SOURCE's bound of it): `realpath_with`'s contract;
    // `real` gets them unchanged.
    |real| unsafe { realpath_with(path, resolved, || real(path, resolved, len)) }

    fn canonicalize_file_name(path: *const c_char) -> *mut c_char, missing: std::ptr::null_mut();
    // SAFETY: `path` is null or a C string (canonicalize_file_name(3)), and a null buffer,
    // which `realpath_with` fills by malloc; `real` gets `path` unchanged.
    |real| unsafe { realpath_with(path, std::ptr::null_mut(), || real(path)) }
}
