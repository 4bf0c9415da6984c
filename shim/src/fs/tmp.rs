//! Temporary files: glibc's mkstemp & co., mkdtemp and tmpfile create with its
//! internal open, which no hook sees, so the names are made here and created
//! through the capsule.

use std::ffi::CStr;

use libc::{c_char, c_int, FILE};

use super::ops::{self, Skip};
use crate::hook::{fail, set_errno};

/// mkstemp & co. and mkdtemp: glibc creates the file with its internal open, which
/// no hook sees, so the names are made here and created through the capsule.
///
/// # Safety
/// `template` is null or a writable C string (mkstemp's contract).
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
    // SAFETY: a non-null `template` is a C string (this function's contract).
    let len = unsafe { libc::strlen(template) };
    let suffix = suffix.max(0) as usize;
    if len < 6 + suffix {
        return fail(libc::EINVAL);
    }
    // The six letters to replace, written through this pointer (no reference to the
    // caller's string outlives a statement).
    // SAFETY: `len - 6 - suffix` is an offset inside the string of `len` bytes.
    let x = unsafe { template.add(len - 6 - suffix) }.cast::<u8>();
    // SAFETY: the six bytes at `x` are inside the string.
    if unsafe { std::slice::from_raw_parts(x, 6) } != b"XXXXXX" {
        return fail(libc::EINVAL);
    }
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for _ in 0..1000 {
        let mut random = [0u8; 6];
        // SAFETY: getrandom(2) into our own buffer of `random.len()` bytes.
        if unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) } != 6 {
            return fail(libc::EIO);
        }
        for (i, r) in random.into_iter().enumerate() {
            // SAFETY: `i < 6`: one of the six letters inside the caller's writable
            // string (this function's contract).
            unsafe { x.add(i).write(LETTERS[r as usize % LETTERS.len()]) };
        }
        // SAFETY: still a C string: letters replaced letters, the NUL is untouched.
        let path = unsafe { CStr::from_ptr(template) };
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
                // SAFETY: `plan.host` is a NUL-terminated PathBuf; flags and mode
                // are integers.
                let fd = unsafe { libc::open(plan.host.as_ptr(), open_flags, 0o600) };
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
                return fail(e);
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
pub fn tmpfile_with(real: impl FnOnce() -> *mut FILE) -> *mut FILE {
    let Some(layers) = super::layers() else {
        return real();
    };
    let flags = libc::O_RDWR | libc::O_TMPFILE | libc::O_EXCL;
    let mut fd = match ops::open(layers, libc::AT_FDCWD, c"/tmp", flags) {
        // SAFETY: `plan.host` is a NUL-terminated PathBuf; flags and mode are integers.
        Ok(plan) => unsafe { libc::open(plan.host.as_ptr(), flags, 0o600) },
        Err(Skip::Errno(e)) => {
            return fail(e);
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
        // SAFETY: `template` is our own writable, NUL-terminated buffer.
        fd = unsafe { mktemp_with(template.as_mut_ptr().cast(), 0, 0, false, || -1) };
        if fd < 0 {
            return std::ptr::null_mut();
        }
        let name = CStr::from_bytes_until_nul(&template).unwrap_or(c"/tmp");
        if let Err(Skip::Errno(e)) = ops::remove(layers, libc::AT_FDCWD, name, false) {
            log::warn!("tmpfile: cannot remove {name:?}: errno {e}");
        }
    }
    super::fds::opened(fd, true, None);
    // SAFETY: `fd` is the descriptor made above, and the mode a static C string.
    let file = unsafe { libc::fdopen(fd, c"w+".as_ptr()) };
    if file.is_null() {
        let e = crate::hook::errno();
        // SAFETY: `fd` is ours (fdopen did not take it), closed once.
        unsafe { libc::close(fd) };
        set_errno(e);
    }
    file
}

/// mkdtemp: `real` is the real call, which returns the template or null.
///
/// # Safety
/// `template` is null or a writable C string (mkdtemp's contract).
pub unsafe fn mkdtemp_with(
    template: *mut c_char,
    real: impl FnOnce() -> *mut c_char,
) -> *mut c_char {
    let mut made = std::ptr::null_mut();
    let real = || {
        made = real();
        if made.is_null() {
            -1
        } else {
            0
        }
    };
    // SAFETY: `template` is null or a writable C string (this function's contract).
    let rc = unsafe { mktemp_with(template, 0, 0, true, real) };
    if rc < 0 {
        std::ptr::null_mut()
    } else if made.is_null() {
        template
    } else {
        made
    }
}
