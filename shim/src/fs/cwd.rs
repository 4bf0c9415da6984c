//! The working directory and canonical names: chdir, getcwd and realpath answer
//! with capsule paths.

use libc::{c_char, c_int, size_t};

use super::call::{arg, run_in};
use super::layers::Node;
use super::ops::{self, Skip};
use crate::hook::fail;

/// chdir: into the host directory a capsule directory resolves to.
///
/// # Safety
/// `path` is null or a C string (chdir's contract).
pub unsafe fn chdir_with(path: *const c_char, real: impl Fn(*const c_char) -> c_int) -> c_int {
    run_in(
        Node::empty,
        |l, node| {
            // SAFETY: `path` is null or a C string (this function's contract).
            let path = unsafe { arg(path) }?;
            ops::resolve(l, libc::AT_FDCWD, path, ops::Intent::READ, node)?;
            if !node.is_dir() {
                return Err(Skip::Errno(libc::ENOTDIR));
            }
            Ok(())
        },
        |node, ()| real(node.host.as_ptr()),
        || real(path),
        -1,
    )
}

/// getcwd & co.: the capsule's working directory, into the caller's buffer or a
/// malloc'd one (a null `buf`, as glibc does).
///
/// # Safety
/// `buf` is null or has room for `size` bytes (getcwd's contract).
pub unsafe fn getcwd_with(
    buf: *mut c_char,
    size: size_t,
    real: impl FnOnce() -> *mut c_char,
) -> *mut c_char {
    let Some(layers) = super::layers() else {
        return real();
    };
    let cwd = ops::cwd(layers);
    if buf.is_null() {
        if size != 0 && cwd.len() + 1 > size {
            return fail(libc::ERANGE);
        }
        return ops::malloc_copy(cwd.as_bytes());
    }
    if size == 0 {
        return fail(libc::EINVAL);
    }
    // SAFETY: a non-null `buf` has room for `size` bytes (this function's contract).
    match unsafe { ops::copy_out(cwd.as_bytes(), buf, size) } {
        Ok(()) => buf,
        Err(e) => fail(e),
    }
}

/// realpath & co.: the capsule path the name resolves to, into `resolved` or a
/// malloc'd buffer.
///
/// # Safety
/// `path` is null or a C string, and `resolved` null or a buffer of `PATH_MAX`
/// bytes (realpath's contract).
pub unsafe fn realpath_with(
    path: *const c_char,
    resolved: *mut c_char,
    real: impl FnOnce() -> *mut c_char,
) -> *mut c_char {
    run_in(
        Node::empty,
        |l, node| {
            // SAFETY: `path` is null or a C string (this function's contract).
            let p = unsafe { arg(path) }?;
            if p.to_bytes().is_empty() {
                return Err(Skip::Errno(libc::ENOENT));
            }
            ops::resolve(l, libc::AT_FDCWD, p, ops::Intent::READ, node)
        },
        |node, ()| {
            if resolved.is_null() {
                return ops::malloc_copy(node.capsule.as_bytes());
            }
            // SAFETY: a non-null `resolved` has room for PATH_MAX bytes (this
            // function's contract).
            match unsafe { ops::copy_out(node.capsule.as_bytes(), resolved, super::path::PATH_MAX) }
            {
                Ok(()) => resolved,
                Err(_) => fail(libc::ENAMETOOLONG),
            }
        },
        real,
        std::ptr::null_mut(),
    )
}
