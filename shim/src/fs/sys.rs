//! The few system operations the file-system replica performs on host paths,
//! returning errno values instead of setting `errno`. They run inside the shim
//! guard, so the libc functions they call reach the real implementations.

use std::ffi::c_int;

use super::path::PathBuf;
use crate::hook::errno;

fn check(rc: c_int) -> Result<(), c_int> {
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// `lstat`; false when the name does not exist (or cannot be examined).
pub fn lstat(path: &PathBuf, out: &mut libc::stat) -> bool {
    // SAFETY: a NUL-terminated path and a valid stat buffer.
    unsafe {
        libc::fstatat(
            libc::AT_FDCWD,
            path.as_ptr(),
            out,
            libc::AT_SYMLINK_NOFOLLOW,
        ) == 0
    }
}

pub fn exists(path: &PathBuf) -> bool {
    // SAFETY: a zeroed stat buffer is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    lstat(path, &mut st)
}

pub fn readlink(path: &PathBuf, out: &mut PathBuf) -> Result<(), c_int> {
    let mut buf = [0u8; super::path::PATH_MAX];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len() - 1) };
    if n < 0 {
        return Err(errno());
    }
    out.set(&buf[..n as usize])
}

pub fn mkdir(path: &PathBuf, mode: libc::mode_t) -> Result<(), c_int> {
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::mkdir(path.as_ptr(), mode) })
}

pub fn unlink(path: &PathBuf) -> Result<(), c_int> {
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::unlink(path.as_ptr()) })
}

pub fn rmdir(path: &PathBuf) -> Result<(), c_int> {
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::rmdir(path.as_ptr()) })
}

pub fn rename(from: &PathBuf, to: &PathBuf) -> Result<(), c_int> {
    // SAFETY: NUL-terminated paths.
    check(unsafe { libc::rename(from.as_ptr(), to.as_ptr()) })
}

/// `renameat2(RENAME_NOREPLACE)` as a system call: musl (before 1.2.5) has no
/// `renameat2`, so through the libc name it would reach the shim's own hook with no
/// real function behind it.
///
/// # Safety
/// NUL-terminated paths.
unsafe fn rename_noreplace(from: &PathBuf, to: &PathBuf) -> c_int {
    // SAFETY: renameat2 reads only the two NUL-terminated paths (the caller's
    // contract); the other arguments are plain integers.
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        ) as c_int
    }
}

/// Puts a finished copy in place unless another process of the capsule did first
/// (then the copy is dropped and theirs, possibly already changed, is used).
pub fn publish(temp: &PathBuf, target: &PathBuf) -> Result<(), c_int> {
    // SAFETY: NUL-terminated paths.
    let rc = unsafe { rename_noreplace(temp, target) };
    if rc == 0 {
        return Ok(());
    }
    let e = errno();
    let _ = unlink(temp);
    if e == libc::EEXIST {
        Ok(())
    } else {
        Err(e)
    }
}

/// Publishes the directory `temp` as `target`; when `target` already exists (another
/// process made it first) `temp` is removed and that one is kept.
pub fn publish_dir(temp: &PathBuf, target: &PathBuf) -> Result<(), c_int> {
    // SAFETY: NUL-terminated paths.
    let rc = unsafe { rename_noreplace(temp, target) };
    if rc == 0 {
        return Ok(());
    }
    let e = errno();
    // SAFETY: NUL-terminated path.
    unsafe { libc::rmdir(temp.as_ptr()) };
    match e {
        libc::EEXIST => Ok(()),
        e => Err(e),
    }
}

pub fn symlink(target: &PathBuf, link: &PathBuf) -> Result<(), c_int> {
    // SAFETY: NUL-terminated paths.
    check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
}

/// Creates an empty file, failing if it exists.
pub fn create_empty(path: &PathBuf, mode: libc::mode_t) -> Result<(), c_int> {
    // SAFETY: a NUL-terminated path; the descriptor is closed at once.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            mode as libc::c_uint,
        );
        if fd < 0 {
            return Err(errno());
        }
        libc::close(fd);
    }
    Ok(())
}

/// Opens a directory for reading its entries.
pub fn open_dir(path: &PathBuf) -> Result<c_int, c_int> {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// What descriptor `fd` refers to, as `/proc/self/fd/N` names it (a host path, or
/// `pipe:[…]`, `socket:[…]`…).
pub fn fd_target(fd: c_int) -> Result<PathBuf, c_int> {
    let mut link = PathBuf::from_bytes(b"/proc/self/fd/")?;
    link.push_bytes(crate::decimal::decimal(fd as u64, &mut Default::default()))?;
    let mut target = PathBuf::new();
    readlink(&link, &mut target).map_err(|_| libc::EBADF)?;
    Ok(target)
}
