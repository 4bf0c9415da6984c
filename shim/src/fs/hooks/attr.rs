//! Changing a name's mode, owner, size and times (the logic is `fs::change`).

use libc::{c_char, c_int, gid_t, mode_t, off_t, uid_t};

use crate::fs::call::change_with;
use crate::fs::change::{chown_with, fchmodat_with, fchownat_with, utime_nofollow, utimensat_with};

hook! {
    unsafe_bodies;

    fn chmod(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { crate::fs::pin::chmod_nofollow(p, mode) } else { real(p, mode) })

    fn fchmodat(dirfd: c_int, path: *const c_char, mode: mode_t, flags: c_int) -> c_int, missing: -1;
    |real| fchmodat_with(dirfd, path, mode, flags, |p, pinned| if p == path { real(dirfd, p, mode, flags) } else if pinned { crate::fs::pin::chmod_nofollow(p, mode) } else { real(libc::AT_FDCWD, p, mode, flags) })

    fn chown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int, missing: -1;
    |real| chown_with(libc::AT_FDCWD, path, uid, gid, true, |p| real(p, uid, gid))

    fn lchown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int, missing: -1;
    |real| chown_with(libc::AT_FDCWD, path, uid, gid, false, |p| real(p, uid, gid))

    fn fchownat(dirfd: c_int, path: *const c_char, uid: uid_t, gid: gid_t, flags: c_int) -> c_int, missing: -1;
    |real| fchownat_with(dirfd, path, uid, gid, flags, || real(dirfd, path, uid, gid, flags), |p| if p == path { real(dirfd, p, uid, gid, flags) } else { real(libc::AT_FDCWD, p, uid, gid, flags | libc::AT_SYMLINK_NOFOLLOW) })

    fn truncate(path: *const c_char, len: off_t) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, _| real(p, len))

    fn truncate64(path: *const c_char, len: off_t) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, _| real(p, len))

    fn utimensat(dirfd: c_int, path: *const c_char, times: *const libc::timespec, flags: c_int) -> c_int, missing: -1;
    |real| utimensat_with(dirfd, path, flags, |d, p, f| real(d, p, times, f))

    fn utimes(path: *const c_char, times: *const libc::timeval) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { libc::lutimes(p, times) } else { real(p, times) })

    fn lutimes(path: *const c_char, times: *const libc::timeval) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, false, -1, |p, _| real(p, times))

    fn utime(path: *const c_char, times: *const libc::utimbuf) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { utime_nofollow(p, times) } else { real(p, times) })
}
