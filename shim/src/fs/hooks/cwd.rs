//! The working directory and canonical names (the logic is `fs::cwd`).

use libc::{c_char, c_int, size_t};

use crate::fs::cwd::{chdir_with, getcwd_with, realpath_with};

hook! {
    unsafe_bodies;

    fn chdir(path: *const c_char) -> c_int, missing: -1;
    |real| chdir_with(path, |p| real(p))

    fn getcwd(buf: *mut c_char, size: size_t) -> *mut c_char, missing: std::ptr::null_mut();
    |real| getcwd_with(buf, size, || real(buf, size))

    fn __getcwd_chk(buf: *mut c_char, size: size_t, buflen: size_t) -> *mut c_char, missing: std::ptr::null_mut();
    |real| getcwd_with(buf, size, || real(buf, size, buflen))

    fn get_current_dir_name() -> *mut c_char, missing: std::ptr::null_mut();
    |real| getcwd_with(std::ptr::null_mut(), 0, || real())

    fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char, missing: std::ptr::null_mut(), version: "GLIBC_2.3";
    |real| realpath_with(path, resolved, || real(path, resolved))

    fn __realpath_chk(path: *const c_char, resolved: *mut c_char, len: size_t) -> *mut c_char, missing: std::ptr::null_mut();
    |real| realpath_with(path, resolved, || real(path, resolved, len))

    fn canonicalize_file_name(path: *const c_char) -> *mut c_char, missing: std::ptr::null_mut();
    |real| realpath_with(path, std::ptr::null_mut(), || real(path))
}
