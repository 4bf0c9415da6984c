//! Descriptors: changes through one (applied to the upper copy when it refers to a
//! lower-layer file), and closing and duplicating them, which the table of
//! descriptors the shim knows follows (`fds`).

use libc::{c_int, c_uint, gid_t, mode_t, uid_t, FILE};

use crate::fs::change::{fchown_with, fd_change, ioctl_with};
use crate::fs::fds;
use crate::fs::open::fclose_with;

hook! {
    fn fchmod(fd: c_int, mode: mode_t) -> c_int, missing: -1;
    // SAFETY: integer arguments only; `chmod_nofollow` gets the NUL-terminated host path of
    // the upper copy `fd_change` made, `real` the caller's arguments.
    |real| unsafe { fd_change(fd, -1, |p| crate::fs::pin::chmod_nofollow(p, mode), || real(fd, mode)) }

    fn fchown(fd: c_int, uid: uid_t, gid: gid_t) -> c_int, missing: -1;
    // SAFETY: integer arguments only; `real` gets them unchanged.
    |real| unsafe { fchown_with(fd, uid, gid, || real(fd, uid, gid)) }

    fn futimens(fd: c_int, times: *const libc::timespec) -> c_int, missing: -1;
    // SAFETY: `times` is null or two timespecs (futimens(3)); it goes unchanged to utimensat
    // of the NUL-terminated host path of the upper copy `fd_change` made, or with `fd` to
    // `real`.
    |real| unsafe { fd_change(fd, -1, |p| libc::utimensat(libc::AT_FDCWD, p, times, libc::AT_SYMLINK_NOFOLLOW), || real(fd, times)) }

    fn futimes(fd: c_int, times: *const libc::timeval) -> c_int, missing: -1;
    // SAFETY: `times` is null or two timevals (futimes(3)); it goes unchanged to lutimes of
    // the NUL-terminated host path of the upper copy `fd_change` made, or with `fd` to `real`.
    |real| unsafe { fd_change(fd, -1, |p| libc::lutimes(p, times), || real(fd, times)) }

    /// `ioctl` is variadic; its third argument is a fixed `unsigned long` on the
    /// supported architectures. Requests that change the inode (chattr's
    /// FS_IOC_SETFLAGS & co.) copy a lower-layer file up first, like fchmod.
    fn ioctl(fd: c_int, request: libc::c_ulong, arg: libc::c_ulong) -> c_int, missing: -1, support: Partial("only requests that change a file's inode (FS_IOC_SETFLAGS, FS_IOC_FSSETXATTR, FS_IOC_SETVERSION) are the replica's: a lower-layer file is copied up first; others pass through");
    // SAFETY: `real` is the real ioctl and `arg` what the caller gives it for `request`
    // (ioctl(2)): `ioctl_with`'s contract.
    |real| unsafe { ioctl_with(fd, request, arg, real) }

    fn close(fd: c_int) -> c_int, missing: -1;
    // SAFETY: an integer descriptor, no memory; `real` gets it unchanged.
    |real| unsafe { fds::closing(fd, || real(fd)) }

    /// glibc's fclose closes the descriptor with its internal close, which no hook
    /// sees.
    fn fclose(file: *mut FILE) -> c_int, missing: libc::EOF;
    // SAFETY: `file` is null or an open stream (fclose(3)): `fclose_with`'s contract; `real`
    // gets it unchanged.
    |real| unsafe { fclose_with(file, || real(file)) }

    /// Closes every stream inside glibc: which descriptors is not known, so none
    /// stays known as safe.
    fn fcloseall() -> c_int, missing: libc::EOF;
    // SAFETY: no arguments; `real` is the real fcloseall.
    |real| unsafe { fds::all_closed(real()) }

    fn dup(fd: c_int) -> c_int, missing: -1;
    // SAFETY: integer descriptors and flags, no memory; `real` gets them unchanged.
    |real| unsafe { fds::duplicated(fd, real(fd)) }

    fn dup2(fd: c_int, new: c_int) -> c_int, missing: -1;
    // SAFETY: integer descriptors and flags, no memory; `real` gets them unchanged.
    |real| unsafe { fds::duplicated(fd, real(fd, new)) }

    fn dup3(fd: c_int, new: c_int, flags: c_int) -> c_int, missing: -1;
    // SAFETY: integer descriptors and flags, no memory; `real` gets them unchanged.
    |real| unsafe { fds::duplicated(fd, real(fd, new, flags)) }

    /// `fcntl` is variadic; its third argument is a fixed `unsigned long` on the
    /// supported architectures.
    fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int, missing: -1;
    // SAFETY: `arg` is the caller's argument for `cmd` (fcntl(2)); `real` gets them with `fd`,
    // unchanged.
    |real| unsafe { fds::fcntl_done(fd, cmd, real(fd, cmd, arg)) }

    fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int, missing: -1;
    // SAFETY: `arg` is the caller's argument for `cmd` (fcntl(2)); `real` gets them with `fd`,
    // unchanged.
    |real| unsafe { fds::fcntl_done(fd, cmd, real(fd, cmd, arg)) }

    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int, missing: -1;
    // SAFETY: integer descriptors and flags, no memory; `real` gets them, or ranges
    // that leave out the shim's log descriptor.
    |real| unsafe { fds::close_range(first, last, flags, |a, b, f| real(a, b, f)) }

    #[allow(clippy::unused_unit)]
    fn closefrom(first: c_int) -> (), missing: ();
    // SAFETY: integer descriptors and flags, no memory; `real` gets them, or ranges
    // that leave out the shim's log descriptor.
    |real| unsafe { fds::closefrom(first, |f| real(f)) }
}
