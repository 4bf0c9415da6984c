//! Making, removing, renaming and linking names, and reading links (the logic is
//! `fs::names`).

use libc::{c_char, c_int, c_uint, dev_t, mode_t, size_t, ssize_t};

use crate::fs::names::{
    create_with, link_with, mkdir_with, mknod_in, readlink_with, remove_with, rename_with,
};

/// The limit of rename and renameat.
const RENAME_DIR: crate::coverage::Support = crate::coverage::Support::Partial(
    "a directory with lower-layer content is copied up whole before it moves: hard links inside it become separate files, a device node or socket in it gives EXDEV",
);

/// The limit of mknod and mknodat.
const DEVICE_NODE: crate::coverage::Support = crate::coverage::Support::Partial(
    "a fake root that is not really root gets an empty file that stat reports as the device",
);

hook! {
    fn mkdir(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (mkdir(2), mkfifo(3)); `real` gets it, or the
    // NUL-terminated host path of the new name, with an integer mode.
    |real| unsafe { mkdir_with(libc::AT_FDCWD, path, mode, |p, m| real(p, m)) }

    fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (mkdirat(2), mkfifoat(3)); `real` gets it with the
    // caller's `dirfd`, or the NUL-terminated host path of the new name (absolute) with
    // AT_FDCWD, and an integer mode.
    |real| unsafe { mkdir_with(dirfd, path, mode, |p, m| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, m)) }

    fn rmdir(path: *const c_char) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (unlink(2)); the capsule removes names itself,
    // `real` gets the caller's arguments unchanged.
    |real| unsafe { remove_with(libc::AT_FDCWD, path, true, || real(path)) }

    fn unlink(path: *const c_char) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (unlink(2)); the capsule removes names itself,
    // `real` gets the caller's arguments unchanged.
    |real| unsafe { remove_with(libc::AT_FDCWD, path, false, || real(path)) }

    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (unlink(2)); the capsule removes names itself,
    // `real` gets the caller's arguments unchanged.
    |real| unsafe { remove_with(dirfd, path, flags & libc::AT_REMOVEDIR != 0, || real(dirfd, path, flags)) }

    fn rename(old: *const c_char, new: *const c_char) -> c_int, missing: -1, support: RENAME_DIR;
    // SAFETY: `old` and `new` are null or C strings (rename(2)); `real` gets them with the
    // caller's directory descriptors, or the NUL-terminated host paths they resolved to
    // (absolute) with AT_FDCWD.
    |real| unsafe { rename_with(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0, |a, b| real(a, b)) }

    fn renameat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char) -> c_int, missing: -1, support: RENAME_DIR;
    // SAFETY: `old` and `new` are null or C strings (rename(2)); `real` gets them with the
    // caller's directory descriptors, or the NUL-terminated host paths they resolved to
    // (absolute) with AT_FDCWD.
    |real| unsafe { rename_with(olddir, old, newdir, new, 0, |a, b| if a == old { real(olddir, a, newdir, b) } else { real(libc::AT_FDCWD, a, libc::AT_FDCWD, b) }) }

    fn renameat2(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: c_uint) -> c_int, missing: -1, support: Partial("RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT across layers (a directory as for rename); the whiteout is made just after the rename, not atomically with it");
    // SAFETY: `old` and `new` are null or C strings (rename(2)); `real` gets them with the
    // caller's directory descriptors, or the NUL-terminated host paths they resolved to
    // (absolute) with AT_FDCWD.
    |real| unsafe { rename_with(olddir, old, newdir, new, flags, |a, b| if a == old { real(olddir, a, newdir, b, flags) } else { real(libc::AT_FDCWD, a, libc::AT_FDCWD, b, flags) }) }

    fn link(old: *const c_char, new: *const c_char) -> c_int, missing: -1;
    // SAFETY: `old` and `new` are null or C strings (link(2)); `real` gets them with the
    // caller's directory descriptors and flags, or the NUL-terminated host paths they resolved
    // to (absolute) with AT_FDCWD.
    |real| unsafe { link_with(libc::AT_FDCWD, old, libc::AT_FDCWD, new, false, |a, b| real(a, b)) }

    fn linkat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `old` and `new` are null or C strings (link(2)); `real` gets them with the
    // caller's directory descriptors and flags, or the NUL-terminated host paths they resolved
    // to (absolute) with AT_FDCWD.
    |real| unsafe { link_with(olddir, old, newdir, new, flags & libc::AT_SYMLINK_FOLLOW != 0, |a, b| if a == old { real(olddir, a, newdir, b, flags) } else { real(libc::AT_FDCWD, a, libc::AT_FDCWD, b, 0) }) }

    fn symlink(target: *const c_char, path: *const c_char) -> c_int, missing: -1;
    // SAFETY: `target` and `path` are null or C strings (symlink(2)); `real` gets `target` as
    // given (a link's text is not resolved) and `path` with the caller's `dirfd`, or the
    // NUL-terminated host path of the new name with AT_FDCWD.
    |real| unsafe { create_with(libc::AT_FDCWD, path, |p| real(target, p)) }

    fn symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int, missing: -1;
    // SAFETY: `target` and `path` are null or C strings (symlink(2)); `real` gets `target` as
    // given (a link's text is not resolved) and `path` with the caller's `dirfd`, or the
    // NUL-terminated host path of the new name with AT_FDCWD.
    |real| unsafe { create_with(dirfd, path, |p| real(target, if p == path { dirfd } else { libc::AT_FDCWD }, p)) }

    fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` has room for `size` bytes (readlink(2);
    // `buflen` is _FORTIFY_SOURCE's bound of it); `real` gets `path` with the caller's
    // `dirfd`, or the NUL-terminated host path it resolved to with AT_FDCWD, and `buf` and
    // `size`, or for a /proc link our own PATH_MAX buffer.
    |real| unsafe { readlink_with(libc::AT_FDCWD, path, buf, size, |p, b, s| real(p, b, s)) }

    fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` has room for `size` bytes (readlink(2);
    // `buflen` is _FORTIFY_SOURCE's bound of it); `real` gets `path` with the caller's
    // `dirfd`, or the NUL-terminated host path it resolved to with AT_FDCWD, and `buf` and
    // `size`, or for a /proc link our own PATH_MAX buffer.
    |real| unsafe { readlink_with(dirfd, path, buf, size, |p, b, s| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, b, s)) }

    fn __readlink_chk(path: *const c_char, buf: *mut c_char, size: size_t, buflen: size_t) -> ssize_t, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` has room for `size` bytes (readlink(2);
    // `buflen` is _FORTIFY_SOURCE's bound of it); `real` gets `path` with the caller's
    // `dirfd`, or the NUL-terminated host path it resolved to with AT_FDCWD, and `buf` and
    // `size`, or for a /proc link our own PATH_MAX buffer.
    |real| unsafe { readlink_with(libc::AT_FDCWD, path, buf, size, |p, b, s| real(p, b, s, buflen)) }

    fn __readlinkat_chk(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t, buflen: size_t) -> ssize_t, missing: -1;
    // SAFETY: `path` is null or a C string and `buf` has room for `size` bytes (readlink(2);
    // `buflen` is _FORTIFY_SOURCE's bound of it); `real` gets `path` with the caller's
    // `dirfd`, or the NUL-terminated host path it resolved to with AT_FDCWD, and `buf` and
    // `size`, or for a /proc link our own PATH_MAX buffer.
    |real| unsafe { readlink_with(dirfd, path, buf, size, |p, b, s| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, b, s, buflen)) }

    fn mknod(path: *const c_char, mode: mode_t, dev: dev_t) -> c_int, missing: -1, support: DEVICE_NODE;
    // SAFETY: `path` is null or a C string (mknod(2)); `mknod_in` and `real` get it with the
    // caller's `dirfd`, or the NUL-terminated host path of the new name with AT_FDCWD, and
    // integer mode and device.
    |real| unsafe { create_with(libc::AT_FDCWD, path, |p| mknod_in(p, mode, dev, || real(p, mode, dev))) }

    fn mknodat(dirfd: c_int, path: *const c_char, mode: mode_t, dev: dev_t) -> c_int, missing: -1, support: DEVICE_NODE;
    // SAFETY: `path` is null or a C string (mknod(2)); `mknod_in` and `real` get it with the
    // caller's `dirfd`, or the NUL-terminated host path of the new name with AT_FDCWD, and
    // integer mode and device.
    |real| unsafe { create_with(dirfd, path, |p| mknod_in(p, mode, dev, || real(if p == path { dirfd } else { libc::AT_FDCWD }, p, mode, dev))) }

    fn mkfifo(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (mkdir(2), mkfifo(3)); `real` gets it, or the
    // NUL-terminated host path of the new name, with an integer mode.
    |real| unsafe { create_with(libc::AT_FDCWD, path, |p| real(p, mode)) }

    fn mkfifoat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string (mkdirat(2), mkfifoat(3)); `real` gets it with the
    // caller's `dirfd`, or the NUL-terminated host path of the new name (absolute) with
    // AT_FDCWD, and an integer mode.
    |real| unsafe { create_with(dirfd, path, |p| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, mode)) }
}
