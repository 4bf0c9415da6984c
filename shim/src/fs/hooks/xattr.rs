//! Extended attributes by path and by descriptor: reading one reads the name's
//! file, changing one copies a lower-layer file up first.

use libc::{c_char, c_int, c_void, size_t, ssize_t};

use crate::fs::call::{change_with, read_with};
use crate::fs::change::fd_change;

hook! {
    fn getxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: size_t) -> ssize_t, missing: -1;
    // SAFETY: `path` and `name` are null or C strings and `value` has room for `size` bytes
    // (getxattr(2)); `real` gets `path`, or the NUL-terminated host path it resolved to, and
    // the rest unchanged.
    |real| unsafe { read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, name, value, size)) }

    fn lgetxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: size_t) -> ssize_t, missing: -1;
    // SAFETY: `path` and `name` are null or C strings and `value` has room for `size` bytes
    // (getxattr(2)); `real` gets `path`, or the NUL-terminated host path it resolved to, and
    // the rest unchanged.
    |real| unsafe { read_with(libc::AT_FDCWD, path, false, -1, |p| real(p, name, value, size)) }

    fn listxattr(path: *const c_char, list: *mut c_char, size: size_t) -> ssize_t, missing: -1;
    // SAFETY: `path` is null or a C string and `list` has room for `size` bytes
    // (listxattr(2)); `real` gets `path`, or the NUL-terminated host path it resolved to, and
    // the rest unchanged.
    |real| unsafe { read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, list, size)) }

    fn llistxattr(path: *const c_char, list: *mut c_char, size: size_t) -> ssize_t, missing: -1;
    // SAFETY: `path` is null or a C string and `list` has room for `size` bytes
    // (listxattr(2)); `real` gets `path`, or the NUL-terminated host path it resolved to, and
    // the rest unchanged.
    |real| unsafe { read_with(libc::AT_FDCWD, path, false, -1, |p| real(p, list, size)) }

    fn setxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` and `name` are null or C strings and `value` holds `size` bytes
    // (setxattr(2)); `real` gets `path` or the NUL-terminated host path it resolved to, or
    // lsetxattr the name through its pinned parent, a NUL-terminated PathBuf, and the rest
    // unchanged.
    |real| unsafe { change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { libc::lsetxattr(p, name, value, size, flags) } else { real(p, name, value, size, flags) }) }

    fn lsetxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` and `name` are null or C strings and `value` holds `size` bytes
    // (lsetxattr(2)); `real` gets `path`, or the NUL-terminated host path it resolved to, and
    // the rest unchanged.
    |real| unsafe { change_with(libc::AT_FDCWD, path, false, -1, |p, _| real(p, name, value, size, flags)) }

    fn removexattr(path: *const c_char, name: *const c_char) -> c_int, missing: -1;
    // SAFETY: `path` and `name` are null or C strings (removexattr(2)); `real` gets `path` or
    // the NUL-terminated host path it resolved to, or lremovexattr the name through its pinned
    // parent, a NUL-terminated PathBuf, with `name`.
    |real| unsafe { change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { libc::lremovexattr(p, name) } else { real(p, name) }) }

    fn lremovexattr(path: *const c_char, name: *const c_char) -> c_int, missing: -1;
    // SAFETY: `path` and `name` are null or C strings (lremovexattr(2)); `real` gets `path`,
    // or the NUL-terminated host path it resolved to, with `name`.
    |real| unsafe { change_with(libc::AT_FDCWD, path, false, -1, |p, _| real(p, name)) }

    fn fsetxattr(fd: c_int, name: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `name` is a C string and `value` holds `size` bytes (fsetxattr(2)); they go
    // unchanged to lsetxattr of the NUL-terminated host path of the upper copy `fd_change`
    // made, or with `fd` to `real`.
    |real| unsafe { fd_change(fd, -1, |p| libc::lsetxattr(p, name, value, size, flags), || real(fd, name, value, size, flags)) }

    fn fremovexattr(fd: c_int, name: *const c_char) -> c_int, missing: -1;
    // SAFETY: `name` is a C string (fremovexattr(2)); it goes unchanged to lremovexattr of the
    // NUL-terminated host path of the upper copy `fd_change` made, or with `fd` to `real`.
    |real| unsafe { fd_change(fd, -1, |p| libc::lremovexattr(p, name), || real(fd, name)) }
}
