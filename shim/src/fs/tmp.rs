//! Temporary files: glibc's mkstemp & co., mkdtemp and tmpfile create with its
//! internal open, which no hook sees, so the names are made here and created
//! through the capsule.

// Transitional (issue 13): the unsafe operations of this file's functions are not
// yet each in a block with its reason.
#![allow(unsafe_op_in_unsafe_fn)]

use std::ffi::CStr;

use libc::{c_char, c_int, FILE};

use super::ops::{self, Skip};
use crate::hook::set_errno;

/// mkstemp & co. and mkdtemp: glibc creates the file with its internal open, which
/// no hook sees, so the names are made here and created through the capsule.
pub unsafe fn mktemp_with(
    template: *mut c_char,
    suffix: c_int,
    flags: c_int,
    directory: bool,
    real: impl FnOnce() -> c_int,
) -> c_int {
    let Some(layers) = super::layers() else {
        return real();
    };
    if template.is_null() {
        return real();
    }
    let len = libc::strlen(template);
    let suffix = suffix.max(0) as usize;
    if len < 6 + suffix {
        set_errno(libc::EINVAL);
        return -1;
    }
    let x = std::slice::from_raw_parts_mut(template.add(len - 6 - suffix) as *mut u8, 6);
    if x != b"XXXXXX" {
        set_errno(libc::EINVAL);
        return -1;
    }
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for _ in 0..1000 {
        let mut random = [0u8; 6];
        if libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) != 6 {
            set_errno(libc::EIO);
            return -1;
        }
        for (slot, r) in x.iter_mut().zip(random) {
            *slot = LETTERS[r as usize % LETTERS.len()];
        }
        let path = CStr::from_ptr(template);
        let result = if directory {
            ops::create_path(layers, libc::AT_FDCWD, path).and_then(|(host, node, had_whiteout)| {
                super::sys::mkdir(&host, 0o700)?;
                ops::after_mkdir(layers, &node, had_whiteout)?;
                Ok(0)
            })
        } else {
            let open_flags =
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | (flags & !libc::O_ACCMODE);
            ops::open(layers, libc::AT_FDCWD, path, open_flags).and_then(|plan| {
                let fd = libc::open(plan.host.as_ptr(), open_flags, 0o600);
                if fd < 0 {
                    Err(Skip::Errno(crate::hook::errno()))
                } else {
                    super::fds::opened(fd, true, None);
                    super::owner::after_create(&plan.host);
                    Ok(fd)
                }
            })
        };
        match result {
            Ok(fd) => return fd,
            Err(Skip::Errno(libc::EEXIST)) => continue,
            Err(Skip::Errno(e)) => {
                set_errno(e);
                return -1;
            }
            Err(Skip::Pass) => return real(),
        }
    }
    set_errno(libc::EEXIST);
    -1
}

/// tmpfile: glibc opens its file in `P_tmpdir` with its internal open, which no
/// hook sees. Here it is made in the capsule's `/tmp` (the upper layer), unnamed from
/// the start with `O_TMPFILE`, or named and removed at once where the file system
/// has no `O_TMPFILE`.
pub unsafe fn tmpfile_with(real: impl FnOnce() -> *mut FILE) -> *mut FILE {
    let Some(layers) = super::layers() else {
        return real();
    };
    let flags = libc::O_RDWR | libc::O_TMPFILE | libc::O_EXCL;
    let mut fd = match ops::open(layers, libc::AT_FDCWD, c"/tmp", flags) {
        Ok(plan) => libc::open(plan.host.as_ptr(), flags, 0o600),
        Err(Skip::Errno(e)) => {
            set_errno(e);
            return std::ptr::null_mut();
        }
        Err(Skip::Pass) => return real(),
    };
    if fd < 0 {
        if !matches!(
            crate::hook::errno(),
            libc::EISDIR | libc::EOPNOTSUPP | libc::EINVAL
        ) {
            return std::ptr::null_mut();
        }
        let mut template = *b"/tmp/tmpfXXXXXX\0";
        fd = mktemp_with(template.as_mut_ptr().cast(), 0, 0, false, || -1);
        if fd < 0 {
            return std::ptr::null_mut();
        }
        let name = CStr::from_bytes_until_nul(&template).unwrap_or(c"/tmp");
        if let Err(Skip::Errno(e)) = ops::remove(layers, libc::AT_FDCWD, name, false) {
            log::warn!("tmpfile: cannot remove {name:?}: errno {e}");
        }
    }
    super::fds::opened(fd, true, None);
    let file = libc::fdopen(fd, c"w+".as_ptr());
    if file.is_null() {
        let e = crate::hook::errno();
        libc::close(fd);
        set_errno(e);
    }
    file
}

/// mkdtemp: `real` is the real call, which returns the template or null.
pub unsafe fn mkdtemp_with(
    template: *mut c_char,
    real: impl FnOnce() -> *mut c_char,
) -> *mut c_char {
    let mut made = std::ptr::null_mut();
    let rc = mktemp_with(template, 0, 0, true, || {
        made = real();
        if made.is_null() {
            -1
        } else {
            0
        }
    });
    if rc < 0 {
        std::ptr::null_mut()
    } else if made.is_null() {
        template
    } else {
        made
    }
}
