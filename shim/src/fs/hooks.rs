//! FFI layer of the file-system replica: every libc entry point that takes a path
//! (or a directory stream) in both glibc generations, the LFS `*64` names and the
//! `_FORTIFY_SOURCE` variants. Each one turns its arguments into an `ops` call and
//! calls the real function on the host path that comes back.

// Transitional (issue 13): the unsafe operations of this file's functions are not
// yet each in a block with its reason.
#![allow(unsafe_op_in_unsafe_fn)]

use std::ffi::CStr;

use libc::{
    c_char, c_int, c_long, c_uint, c_void, dev_t, gid_t, mode_t, off_t, size_t, ssize_t, uid_t,
    DIR, FILE,
};

use super::dirs;
use super::layers::{Layers, Node};
use super::ops::{self, Op, Skip};
use super::path::PathBuf;
use crate::hook::{set_errno, Real};

/// Runs a file-system operation: `op` in the capsule, then `real` with what it
/// prepared; `pass` (the real call with the caller's arguments) when the replica is
/// off or the operation says so; `fail` with errno set on a capsule error.
fn run<T, R>(
    op: impl FnOnce(&'static Layers) -> Op<T>,
    real: impl Fn(T) -> R + Copy,
    pass: impl FnOnce() -> R,
    fail: R,
) -> R {
    let Some(layers) = super::layers() else {
        return pass();
    };
    // The capsule's own lookups fail with ENOENT as a matter of course: the caller
    // must see errno as the real call leaves it.
    let saved = crate::hook::errno();
    match op(layers) {
        Ok(prepared) => {
            set_errno(saved);
            real(prepared)
        }
        Err(Skip::Pass) => pass(),
        Err(Skip::Errno(e)) => {
            set_errno(e);
            fail
        }
    }
}

/// `run` with the operation's result built in place, in `scratch` (a `Node` or an
/// `OpenPlan`: large, and cheaper to fill where it stays than to move out).
pub(super) fn run_in<S, X, R>(
    scratch: impl FnOnce() -> S,
    op: impl FnOnce(&'static Layers, &mut S) -> Op<X>,
    real: impl FnOnce(&S, X) -> R,
    pass: impl FnOnce() -> R,
    fail: R,
) -> R {
    let Some(layers) = super::layers() else {
        return pass();
    };
    // As in `run`: the caller sees errno as the real call leaves it.
    let saved = crate::hook::errno();
    let mut made = scratch();
    match op(layers, &mut made) {
        Ok(extra) => {
            set_errno(saved);
            real(&made, extra)
        }
        Err(Skip::Pass) => pass(),
        Err(Skip::Errno(e)) => {
            set_errno(e);
            fail
        }
    }
}

/// A path argument; null lets the real call report EFAULT.
pub(super) unsafe fn arg<'a>(path: *const c_char) -> Op<&'a CStr> {
    if path.is_null() {
        Err(Skip::Pass)
    } else {
        Ok(CStr::from_ptr(path))
    }
}

unsafe fn open_with(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    real: impl Fn(*const c_char, c_int) -> c_int + Copy,
) -> c_int {
    let saved = crate::hook::errno();
    if let Some(fd) = open_optimistic(dirfd, path, flags, real) {
        return fd;
    }
    if let Some(fd) = create_optimistic(dirfd, path, flags, real) {
        return fd;
    }
    // A quick path that gave up may have failed a system call: the long way starts
    // from the caller's errno (which a successful open leaves as it was).
    set_errno(saved);
    run_in(
        ops::OpenPlan::new,
        |l, plan| ops::open_into(l, dirfd, arg(path)?, flags, plan),
        |plan, ()| {
            let fd = real(plan.host.as_ptr(), flags);
            if fd >= 0 {
                super::fds::opened(
                    fd,
                    plan.safe,
                    plan.directory.then(|| plan.node.capsule.as_bytes()),
                );
                if plan.created {
                    super::owner::after_create(&plan.host);
                }
            }
            fd
        },
        || real(path, flags),
        -1,
    )
}

/// `open(path, flags, mode)` of a capsule path on behalf of a hook of another
/// replica (glibc opens some files, `/etc/.pwd.lock` among them, with calls no hook
/// sees).
///
/// # Safety
/// `path` is a NUL-terminated string.
pub unsafe fn open_in_capsule(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    open_with(libc::AT_FDCWD, path, flags, |p, f| {
        libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p, f, mode) as c_int
    })
}

/// A creation in a cached directory of the upper layer whose lower layer has no such
/// name: whiteouts and lower names do not matter, so the upper layer's answer is the
/// capsule's. Tried with `O_EXCL` (a name that exists there, links included, is
/// `EEXIST`: the answer for an exclusive creation, the long way otherwise). `None`:
/// the long way decides. Saves the walk's `lstat`s and the whiteout check.
unsafe fn create_optimistic(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    real: impl Fn(*const c_char, c_int) -> c_int + Copy,
) -> Option<c_int> {
    if flags & libc::O_CREAT == 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE || path.is_null() {
        return None;
    }
    let layers = super::layers()?;
    let saved = crate::hook::errno();
    let mut abs = PathBuf::new();
    let shape = ops::absolute_into(layers, dirfd, CStr::from_ptr(path), &mut abs).ok()?;
    let mut capsule = PathBuf::new();
    let mut upper = PathBuf::new();
    // In a writable volume's cached directory the kernel's answer is the capsule's,
    // the last name not followed (`ELOOP`: the long way follows it in the capsule).
    if layers.in_cached_volume_into(abs.as_bytes(), shape, &mut capsule, &mut upper)
        == Ok(Some(false))
    {
        let fd = real(upper.as_ptr(), flags | libc::O_EXCL | libc::O_NOFOLLOW);
        if fd >= 0 {
            super::fds::opened(fd, true, None);
            super::owner::after_create(&upper);
            set_errno(saved);
            return Some(fd);
        }
        return match crate::hook::errno() {
            libc::EEXIST if flags & libc::O_EXCL != 0 => Some(-1),
            libc::EEXIST | libc::ELOOP => None,
            _ => Some(-1),
        };
    }
    let lower_visible = layers
        .cached_upper_into(abs.as_bytes(), shape, &mut capsule, &mut upper)
        .ok()??;
    if lower_visible && layers.lower_has(capsule.as_bytes()).ok()? != Some(false) {
        return None;
    }
    let fd = real(upper.as_ptr(), flags | libc::O_EXCL);
    if fd >= 0 {
        super::fds::opened(fd, true, None);
        super::owner::after_create(&upper);
        set_errno(saved);
        return Some(fd);
    }
    match crate::hook::errno() {
        libc::EEXIST if flags & libc::O_EXCL != 0 => Some(-1),
        _ => None,
    }
}

/// A read-only open of a name whose directory the cache knows: opened in the layer
/// that has it at once, with `O_NOFOLLOW` (a link, `ELOOP`, goes the long way so that
/// it is followed inside the capsule). One system call, like the program's own.
/// `None`: not such an open, or the long way is needed.
unsafe fn open_optimistic(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    real: impl Fn(*const c_char, c_int) -> c_int + Copy,
) -> Option<c_int> {
    let read_only = flags & libc::O_ACCMODE == libc::O_RDONLY
        && flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_PATH) == 0;
    if !read_only || path.is_null() {
        return None;
    }
    let layers = super::layers()?;
    let saved = crate::hook::errno();
    let mut abs = PathBuf::new();
    let shape = ops::absolute_into(layers, dirfd, CStr::from_ptr(path), &mut abs).ok()?;
    let mut candidates = super::layers::Candidates::new();
    if !layers
        .read_candidates_into(abs.as_bytes(), shape, &mut candidates)
        .ok()?
    {
        return None;
    }
    for (host, lower) in [(&candidates.upper, false), (&candidates.lower, true)] {
        if host.is_empty() {
            continue;
        }
        // Checked before the lower file is opened (not after): opening a FIFO or the
        // like that the capsule deleted must not block or have effects.
        if lower && candidates.lower_unless_whiteout {
            match layers.has_whiteout(&candidates.capsule) {
                Ok(false) => {}
                Ok(true) => break,
                Err(_) => return None,
            }
        }
        let fd = real(host.as_ptr(), flags | libc::O_NOFOLLOW);
        if fd >= 0 {
            // A volume or host file may be read-only: the slow way decides then.
            let safe = !candidates.direct && !lower && layers.writable();
            let directory = flags & libc::O_DIRECTORY != 0;
            super::fds::opened(fd, safe, directory.then(|| candidates.capsule.as_bytes()));
            set_errno(saved);
            return Some(fd);
        }
        match crate::hook::errno() {
            libc::ENOENT if !candidates.direct => continue,
            // A link, or anything unusual: the long way decides. With O_DIRECTORY the
            // kernel answers a link under O_NOFOLLOW with ENOTDIR, not ELOOP.
            libc::ELOOP => return None,
            libc::ENOTDIR if flags & libc::O_DIRECTORY != 0 => return None,
            _ if candidates.direct => return Some(-1),
            _ => return None,
        }
    }
    if candidates.direct {
        return None;
    }
    set_errno(libc::ENOENT);
    Some(-1)
}

/// A stream fopen made: a new file belongs to its creator's capsule identity.
fn opened_file(file: *mut FILE, plan: &ops::OpenPlan) -> *mut FILE {
    if !file.is_null() {
        // SAFETY: a stream fopen just returned.
        super::fds::opened(unsafe { libc::fileno(file) }, plan.safe, None);
        if plan.created {
            super::owner::after_create(&plan.host);
        }
    }
    file
}

/// freopen closes the stream's descriptor with glibc's internal close.
unsafe fn forget_stream(stream: *mut FILE) {
    if !stream.is_null() {
        super::fds::closed(libc::fileno(stream));
    }
}

/// mknod of a device by a fake root that is not really root (see `owner`).
unsafe fn mknod_in(
    host: *const c_char,
    mode: mode_t,
    dev: dev_t,
    real: impl FnOnce() -> c_int,
) -> c_int {
    let Ok(path) = PathBuf::from_bytes(CStr::from_ptr(host).to_bytes()) else {
        return real();
    };
    match super::owner::mknod_device(&path, mode, dev) {
        Ok(true) => 0,
        Ok(false) => real(),
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// fopen's mode string as open flags (for the copy-up decision).
fn fopen_flags(mode: *const c_char) -> c_int {
    if mode.is_null() {
        return libc::O_RDONLY;
    }
    // SAFETY: a non-null mode is a C string.
    let m = unsafe { CStr::from_ptr(mode) }.to_bytes();
    let plus = m.contains(&b'+');
    match m.first() {
        Some(b'w') => {
            libc::O_CREAT | libc::O_TRUNC | if plus { libc::O_RDWR } else { libc::O_WRONLY }
        }
        Some(b'a') => {
            libc::O_CREAT | libc::O_APPEND | if plus { libc::O_RDWR } else { libc::O_WRONLY }
        }
        _ if plus => libc::O_RDWR,
        _ => libc::O_RDONLY,
    }
}

/// Where a stat-family call wants its answer.
#[derive(Clone, Copy)]
enum StatBuf {
    /// A `struct stat` (64-bit Linux has one layout for `stat` and `stat64`): filled
    /// from what the walk already read.
    Copy(*mut libc::stat),
    /// A `struct stat` the real call fills (the versioned `__xstat`s).
    #[cfg_attr(not(target_env = "gnu"), allow(dead_code))]
    Stat(*mut libc::stat),
    Statx(*mut libc::statx),
}

impl StatBuf {
    /// Applies recorded ownership to what was written.
    unsafe fn fix(self, host: Option<&PathBuf>, fd: c_int) {
        match self {
            StatBuf::Copy(buf) | StatBuf::Stat(buf) if !buf.is_null() => match host {
                Some(h) => super::owner::apply(h, &mut *buf),
                None => super::owner::apply_fd(fd, &mut *buf),
            },
            StatBuf::Statx(buf) if !buf.is_null() => super::owner::apply_statx(host, fd, &mut *buf),
            _ => {}
        }
    }
}

/// The stat family: the walk's answer, or the kernel's about the host path (links
/// not followed: the walk already followed the ones it had to), with recorded
/// ownership applied; an empty path with `AT_EMPTY_PATH` asks about `dirfd`.
unsafe fn stat_with(
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    buf: StatBuf,
    real: impl Fn(*const c_char) -> c_int + Copy,
) -> c_int {
    run_in(
        Node::empty,
        |l, node| {
            let p = arg(path)?;
            if p.to_bytes().is_empty() {
                return Err(Skip::Pass);
            }
            ops::existing_into(l, dirfd, p, follow, node)
        },
        |node, ()| {
            let rc = match buf {
                StatBuf::Copy(out) if !out.is_null() => {
                    *out = node.stat;
                    0
                }
                _ => real(node.host.as_ptr()),
            };
            if rc == 0 {
                buf.fix(Some(&node.host), -1);
            }
            rc
        },
        || {
            let rc = real(path);
            if rc == 0 && !path.is_null() && *path == 0 && super::layers().is_some() {
                buf.fix(None, dirfd);
            }
            rc
        },
        -1,
    )
}

/// fstat and friends: the kernel's answer with recorded ownership applied.
unsafe fn fstat_with(fd: c_int, buf: *mut libc::stat, real: impl FnOnce() -> c_int) -> c_int {
    let rc = real();
    if rc == 0 && !buf.is_null() && super::layers().is_some() {
        super::owner::apply_fd(fd, &mut *buf);
    }
    rc
}

/// chown & co.: copied up, then the capsule's ownership rules (see `owner`).
unsafe fn chown_with(
    dirfd: c_int,
    path: *const c_char,
    uid: uid_t,
    gid: gid_t,
    follow: bool,
    real: impl Fn(*const c_char) -> c_int + Copy,
) -> c_int {
    run_in(
        Node::empty,
        |l, node| {
            ops::change_path_into(l, dirfd, arg(path)?, follow, node)?;
            Ok(super::pin::pin(l, &node.host)?)
        },
        |node, pinned| {
            // Through a pinned parent the last name is never followed (see `pin`).
            let (host, follow) = match &pinned {
                Some(p) => (p.path(), false),
                None => (&node.host, follow),
            };
            match super::owner::chown(host, uid, gid, follow) {
                Ok(true) => 0,
                Ok(false) if follow => real(host.as_ptr()),
                Ok(false) => libc::lchown(host.as_ptr(), uid, gid),
                Err(e) => {
                    set_errno(e);
                    -1
                }
            }
        },
        || real(path),
        -1,
    )
}

/// ioctl requests that change a file's inode (flags, project, version): the
/// `_IOW` numbers are the same on x86-64 and aarch64. The kernel reads the request
/// as an `unsigned int`, so only its low 32 bits count.
fn changes_inode(request: libc::c_ulong) -> bool {
    const FS_IOC_SETFLAGS: u32 = 0x4008_6602;
    const FS_IOC32_SETFLAGS: u32 = 0x4004_6602;
    const FS_IOC_SETVERSION: u32 = 0x4008_7602;
    const FS_IOC32_SETVERSION: u32 = 0x4004_7602;
    const FS_IOC_FSSETXATTR: u32 = 0x401c_6620;
    matches!(
        request as u32,
        FS_IOC_SETFLAGS
            | FS_IOC32_SETFLAGS
            | FS_IOC_SETVERSION
            | FS_IOC32_SETVERSION
            | FS_IOC_FSSETXATTR
    )
}

/// An inode-changing ioctl on the upper copy `host`, when the descriptor could not
/// follow the copy-up.
unsafe fn ioctl_by_path(
    host: *const c_char,
    request: libc::c_ulong,
    arg: libc::c_ulong,
    real: unsafe extern "C" fn(c_int, libc::c_ulong, libc::c_ulong) -> c_int,
) -> c_int {
    let fd = libc::open(
        host,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    );
    if fd < 0 {
        return -1;
    }
    let rc = real(fd, request, arg);
    let e = crate::hook::errno();
    libc::close(fd);
    set_errno(e);
    rc
}

/// fchown, and fchownat of an empty path with `AT_EMPTY_PATH`: copied up as fchmod,
/// then the capsule's ownership rules (see `owner`).
unsafe fn fchown_with(fd: c_int, uid: uid_t, gid: gid_t, real: impl FnOnce() -> c_int) -> c_int {
    let by_path = |p: *const c_char| match PathBuf::from_bytes(CStr::from_ptr(p).to_bytes()) {
        Ok(host) => match super::owner::chown(&host, uid, gid, false) {
            Ok(true) => 0,
            Ok(false) => libc::lchown(p, uid, gid),
            Err(e) => {
                set_errno(e);
                -1
            }
        },
        Err(e) => {
            set_errno(e);
            -1
        }
    };
    fd_change(fd, -1, by_path, || {
        if super::owner::active() {
            if let (Some(layers), Some(host)) = (super::layers(), fd_host(fd)) {
                return match super::pin::pin(layers, &host) {
                    Ok(pinned) => by_path(pinned.as_ref().map_or(&host, |p| p.path()).as_ptr()),
                    Err(e) => {
                        set_errno(e);
                        -1
                    }
                };
            }
        }
        real()
    })
}

/// `utime` without following the last name: `lutimes` of the same times.
unsafe fn utime_nofollow(path: *const c_char, times: *const libc::utimbuf) -> c_int {
    if times.is_null() {
        return libc::lutimes(path, std::ptr::null());
    }
    let t = &*times;
    let tv = [
        libc::timeval {
            tv_sec: t.actime,
            tv_usec: 0,
        },
        libc::timeval {
            tv_sec: t.modtime,
            tv_usec: 0,
        },
    ];
    libc::lutimes(path, tv.as_ptr())
}

/// An `*at` call that names `dirfd` itself (an empty path with `AT_EMPTY_PATH`).
unsafe fn names_dirfd(path: *const c_char, flags: c_int) -> bool {
    flags & libc::AT_EMPTY_PATH != 0 && !path.is_null() && *path == 0
}

/// The host path a descriptor refers to.
fn fd_host(fd: c_int) -> Option<PathBuf> {
    super::sys::fd_target(fd)
        .ok()
        .filter(|t| t.as_bytes().starts_with(b"/"))
}

/// A change through a descriptor: applied to the upper copy when the descriptor
/// refers to a lower-layer file (`by_path`), else to the descriptor (`by_fd`).
fn fd_change<R>(
    fd: c_int,
    fail: R,
    by_path: impl FnOnce(*const c_char) -> R,
    by_fd: impl FnOnce() -> R,
) -> R {
    let Some(layers) = super::layers() else {
        return by_fd();
    };
    if super::fds::is_safe(fd) {
        return by_fd();
    }
    let saved = crate::hook::errno();
    match ops::fd_for_change(layers, fd) {
        // The upper copy, through its pinned parent (see `pin`).
        Ok(Some(host)) => match super::pin::pin(layers, &host) {
            Ok(pinned) => {
                set_errno(saved);
                by_path(pinned.as_ref().map_or(&host, |p| p.path()).as_ptr())
            }
            Err(e) => {
                set_errno(e);
                fail
            }
        },
        Ok(None) | Err(Skip::Pass) => {
            set_errno(saved);
            by_fd()
        }
        Err(Skip::Errno(e)) => {
            set_errno(e);
            fail
        }
    }
}

/// A path operation on an existing name that only reads it.
pub(super) unsafe fn read_with<R>(
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    fail: R,
    real: impl Fn(*const c_char) -> R + Copy,
) -> R {
    run_in(
        Node::empty,
        |l, node| ops::read_path_into(l, dirfd, arg(path)?, follow, node),
        |node, ()| real(node.host.as_ptr()),
        || real(path),
        fail,
    )
}

/// A path operation on an existing name that changes it (copied up first).
///
/// `real(p, pinned)`: when `pinned`, `p` is the name through its pinned parent
/// (see `pin`), to be changed without following it; else `p` is used as given.
pub(super) unsafe fn change_with<R>(
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    fail: R,
    real: impl Fn(*const c_char, bool) -> R + Copy,
) -> R {
    run_in(
        Node::empty,
        |l, node| {
            ops::change_path_into(l, dirfd, arg(path)?, follow, node)?;
            Ok(super::pin::pin(l, &node.host)?)
        },
        |node, pinned| match &pinned {
            Some(p) => real(p.path().as_ptr(), true),
            None => real(node.host.as_ptr(), false),
        },
        || real(path, false),
        fail,
    )
}

/// A path operation that creates a name (mknod, mkfifo, symlink).
unsafe fn create_with(
    dirfd: c_int,
    path: *const c_char,
    real: impl Fn(*const c_char) -> c_int + Copy,
) -> c_int {
    run(
        |l| {
            let path = arg(path)?;
            // Only mkdir takes a trailing slash on a new name: ENOENT (EEXIST if it is
            // there), and nothing changes (a deleted lower name stays deleted).
            if path.to_bytes().ends_with(b"/") {
                ops::check_create(l, dirfd, path)?;
                return Err(Skip::Errno(libc::ENOENT));
            }
            Ok((ops::create_path(l, dirfd, path)?, l))
        },
        |((host, node, had_whiteout), l)| {
            let rc = real(host.as_ptr());
            if rc == 0 && node.place == super::layers::Place::Overlay {
                super::owner::after_create(&host);
            } else if rc != 0 {
                ops::create_failed(l, &node, had_whiteout);
            }
            rc
        },
        || real(path),
        -1,
    )
}

unsafe fn mkdir_with(
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    real: impl Fn(*const c_char, mode_t) -> c_int + Copy,
) -> c_int {
    run(
        |l| Ok((ops::create_path(l, dirfd, arg(path)?)?, l)),
        |((host, node, had_whiteout), l)| {
            let rc = real(host.as_ptr(), mode);
            if rc == 0 {
                if let Err(Skip::Errno(e)) = ops::after_mkdir(l, &node, had_whiteout) {
                    set_errno(e);
                    return -1;
                }
            } else {
                ops::create_failed(l, &node, had_whiteout);
            }
            rc
        },
        || real(path, mode),
        -1,
    )
}

unsafe fn remove_with(
    dirfd: c_int,
    path: *const c_char,
    directory: bool,
    real: impl Fn() -> c_int + Copy,
) -> c_int {
    run(
        |l| ops::remove(l, dirfd, arg(path)?, directory),
        |()| 0,
        real,
        -1,
    )
}

unsafe fn rename_with(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    flags: c_uint,
    real: impl Fn(*const c_char, *const c_char) -> c_int + Copy,
) -> c_int {
    if flags & !libc::RENAME_NOREPLACE != 0 && super::layers().is_some() {
        // RENAME_EXCHANGE and RENAME_WHITEOUT cannot be honoured across layers;
        // glibc and coreutils fall back on ENOSYS.
        set_errno(libc::ENOSYS);
        return -1;
    }
    run(
        |l| {
            ops::rename(
                l,
                (olddir, arg(old)?),
                (newdir, arg(new)?),
                flags & libc::RENAME_NOREPLACE != 0,
            )
        },
        |hosts| match hosts {
            Some((from, to)) => {
                let rc = real(from.as_ptr(), to.as_ptr());
                if rc == 0 {
                    // A volume's directories are cached too (see `Layers::remember`).
                    super::changed();
                }
                rc
            }
            None => 0,
        },
        || real(old, new),
        -1,
    )
}

unsafe fn link_with(
    olddir: c_int,
    old: *const c_char,
    newdir: c_int,
    new: *const c_char,
    follow: bool,
    real: impl Fn(*const c_char, *const c_char) -> c_int + Copy,
) -> c_int {
    run(
        |l| ops::link(l, (olddir, arg(old)?), (newdir, arg(new)?), follow),
        |(from, to)| real(from.as_ptr(), to.as_ptr()),
        || real(old, new),
        -1,
    )
}

unsafe fn readlink_with(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    real: impl Fn(*const c_char, *mut c_char, size_t) -> ssize_t + Copy,
) -> ssize_t {
    run_in(
        Node::empty,
        |l, node| {
            ops::existing_into(l, dirfd, arg(path)?, false, node)?;
            Ok(l)
        },
        |node, l| {
            if !ops::is_proc_link(node.capsule.as_bytes()) {
                return real(node.host.as_ptr(), buf, size);
            }
            // A /proc link holds a host path: read it whole, map it, then copy out.
            let mut target = [0u8; super::path::PATH_MAX];
            let n = real(node.host.as_ptr(), target.as_mut_ptr().cast(), target.len());
            if n < 0 {
                return n;
            }
            let Ok(mut mapped) = PathBuf::from_bytes(&target[..n as usize]) else {
                return n;
            };
            if let Err(e) = l.map_proc_link(node.capsule.as_bytes(), &mut mapped) {
                set_errno(e);
                return -1;
            }
            let out = mapped.as_bytes();
            let len = out.len().min(size);
            std::ptr::copy_nonoverlapping(out.as_ptr(), buf.cast(), len);
            len as ssize_t
        },
        || real(path, buf, size),
        -1,
    )
}

unsafe fn getcwd_with(
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
            set_errno(libc::ERANGE);
            return std::ptr::null_mut();
        }
        return ops::malloc_copy(cwd.as_bytes());
    }
    if size == 0 {
        set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    }
    match ops::copy_out(cwd.as_bytes(), buf, size) {
        Ok(()) => buf,
        Err(e) => {
            set_errno(e);
            std::ptr::null_mut()
        }
    }
}

unsafe fn realpath_with(
    path: *const c_char,
    resolved: *mut c_char,
    real: impl FnOnce() -> *mut c_char,
) -> *mut c_char {
    run_in(
        Node::empty,
        |l, node| {
            let p = arg(path)?;
            if p.to_bytes().is_empty() {
                return Err(Skip::Errno(libc::ENOENT));
            }
            ops::existing_into(l, libc::AT_FDCWD, p, true, node)
        },
        |node, ()| {
            if resolved.is_null() {
                return ops::malloc_copy(node.capsule.as_bytes());
            }
            match ops::copy_out(node.capsule.as_bytes(), resolved, super::path::PATH_MAX) {
                Ok(()) => resolved,
                Err(_) => {
                    set_errno(libc::ENAMETOOLONG);
                    std::ptr::null_mut()
                }
            }
        },
        real,
        std::ptr::null_mut(),
    )
}

/// opendir / fdopendir: a merged stream where both layers hold the directory.
unsafe fn open_stream(
    node: &Node,
    layers: &Layers,
    fd: Option<c_int>,
    real: impl FnOnce(&PathBuf) -> *mut DIR,
) -> *mut DIR {
    if !node.is_dir() {
        set_errno(libc::ENOTDIR);
        return std::ptr::null_mut();
    }
    let entries = match dirs::merged(layers, node) {
        Ok(Some(entries)) => entries,
        Ok(None) => return real(&node.host),
        Err(e) => {
            set_errno(e);
            return std::ptr::null_mut();
        }
    };
    let (fd, ours) = match fd {
        Some(fd) => (fd, false),
        None => match super::sys::open_dir(&node.host) {
            Ok(fd) => (fd, true),
            Err(e) => {
                set_errno(e);
                return std::ptr::null_mut();
            }
        },
    };
    let dir = dirs::open_merged(fd, entries);
    if dir.is_null() {
        // Never the raw upper directory (it would show the layers' markers): the
        // process has as many merged streams open as the shim can serve.
        log::warn!("too many merged directory streams open; EMFILE");
        if ours {
            libc::close(fd);
        }
        set_errno(libc::EMFILE);
        return std::ptr::null_mut();
    }
    dir
}

/// glibc's `struct dirent` and `struct dirent64` share a layout on 64-bit Linux.
pub(super) type Dirent = libc::dirent64;

static REAL_READDIR64: Real = Real::new(c"readdir64");

/// The next entry of a stream, ours or glibc's.
unsafe fn next_entry(dir: *mut DIR) -> *mut Dirent {
    if let Some(stream) = dirs::ours(dir) {
        return stream.next();
    }
    match REAL_READDIR64.get() {
        // SAFETY: libc's readdir64 has this signature.
        Some(f) => {
            std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut DIR) -> *mut Dirent>(f)(
                dir,
            )
        }
        None => std::ptr::null_mut(),
    }
}

unsafe fn readdir_r_with(
    dir: *mut DIR,
    entry: *mut Dirent,
    result: *mut *mut Dirent,
    real: impl Fn() -> c_int + Copy,
) -> c_int {
    let Some(stream) = dirs::ours(dir) else {
        return real();
    };
    let next = stream.next();
    if next.is_null() {
        *result = std::ptr::null_mut();
    } else {
        *entry = *next;
        *result = entry;
    }
    0
}

pub(super) type Filter = Option<unsafe extern "C" fn(*const Dirent) -> c_int>;
pub(super) type Compare =
    Option<unsafe extern "C" fn(*mut *const Dirent, *mut *const Dirent) -> c_int>;

/// scandir in the capsule: glibc's calls its internal opendir, which no hook sees.
/// The program's callbacks run outside the shim guard, so their libc calls are
/// virtualised too.
pub(super) unsafe fn scandir_with(
    path: *const c_char,
    list: *mut *mut *mut Dirent,
    filter: Filter,
    compare: Compare,
    real: impl Fn() -> c_int + Copy,
) -> c_int {
    let Some(layers) = super::layers() else {
        return real();
    };
    let mut node = Node::empty();
    match arg(path).and_then(|p| ops::existing_into(layers, libc::AT_FDCWD, p, true, &mut node)) {
        Ok(()) => {}
        Err(Skip::Pass) => return real(),
        Err(Skip::Errno(e)) => {
            set_errno(e);
            return -1;
        }
    };
    let dir = open_stream(&node, layers, None, |host| libc::opendir(host.as_ptr()));
    if dir.is_null() {
        return -1;
    }
    let mut out: Vec<*mut Dirent> = Vec::new();
    loop {
        let entry = next_entry(dir);
        if entry.is_null() {
            break;
        }
        if let Some(keep) = filter {
            if crate::hook::outside(|| keep(entry)) == 0 {
                continue;
            }
        }
        let copy = libc::malloc(std::mem::size_of::<Dirent>()) as *mut Dirent;
        if copy.is_null() {
            break;
        }
        *copy = *entry;
        out.push(copy);
    }
    if dirs::ours(dir).is_some() {
        dirs::close(dir);
    } else {
        libc::closedir(dir);
    }
    if let Some(cmp) = compare {
        // qsort, as glibc's scandir: a comparator that is not a total order gives
        // some order, where Rust's sort may panic (and abort the program).
        // SAFETY: the comparator takes pointers to the array's elements, which is
        // what qsort passes; the elements are valid dirent pointers.
        let cmp: unsafe extern "C" fn(*const c_void, *const c_void) -> c_int =
            std::mem::transmute(cmp);
        let (base, len) = (out.as_mut_ptr(), out.len());
        crate::hook::outside(|| {
            libc::qsort(
                base.cast(),
                len,
                std::mem::size_of::<*mut Dirent>(),
                Some(cmp),
            )
        });
    }
    let array =
        libc::malloc(out.len().max(1) * std::mem::size_of::<*mut Dirent>()) as *mut *mut Dirent;
    if array.is_null() {
        for p in out {
            libc::free(p.cast());
        }
        set_errno(libc::ENOMEM);
        return -1;
    }
    std::ptr::copy_nonoverlapping(out.as_ptr(), array, out.len());
    *list = array;
    out.len() as c_int
}

/// mkstemp & co. and mkdtemp: glibc creates the file with its internal open, which
/// no hook sees, so the names are made here and created through the capsule.
unsafe fn mktemp_with(
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
unsafe fn tmpfile_with(real: impl FnOnce() -> *mut FILE) -> *mut FILE {
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

type GlobErr = Option<unsafe extern "C" fn(*const c_char, c_int) -> c_int>;
type NftwFn = Option<
    unsafe extern "C" fn(*const c_char, *const libc::stat, c_int, *mut super::walk::Ftw) -> c_int,
>;
type FtwFn = Option<unsafe extern "C" fn(*const c_char, *const libc::stat, c_int) -> c_int>;

/// `struct stat`-era entry points of binaries built against glibc < 2.33 take the
/// structure version first.
#[cfg(target_env = "gnu")]
type Ver = c_int;

/// The fts family's limits.
const FTS: crate::coverage::Support =
    crate::coverage::Support::Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts");

/// The limit of mknod and mknodat.
const DEVICE_NODE: crate::coverage::Support = crate::coverage::Support::Partial(
    "a fake root that is not really root gets an empty file that stat reports as the device",
);

/// The limit of rename and renameat.
const RENAME_DIR: crate::coverage::Support = crate::coverage::Support::Partial(
    "a directory with lower-layer content gives EXDEV (mv copies instead)",
);

/// The limits of opendir and fdopendir.
const MERGED_STREAM: crate::coverage::Support =
    crate::coverage::Support::Partial("a directory in both layers is read once, when opened; at most 16384 such streams open per process, then EMFILE");

hook! {
    unsafe_bodies;

    fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int, missing: -1;
    |real| open_with(libc::AT_FDCWD, path, flags, |p, f| real(p, f, mode))

    fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int, missing: -1;
    |real| open_with(libc::AT_FDCWD, path, flags, |p, f| real(p, f, mode))

    fn __open_2(path: *const c_char, flags: c_int) -> c_int, missing: -1;
    |real| open_with(libc::AT_FDCWD, path, flags, |p, f| real(p, f))

    fn __open64_2(path: *const c_char, flags: c_int) -> c_int, missing: -1;
    |real| open_with(libc::AT_FDCWD, path, flags, |p, f| real(p, f))

    fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int, missing: -1;
    |real| open_with(dirfd, path, flags, |p, f| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, f, mode))

    fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int, missing: -1;
    |real| open_with(dirfd, path, flags, |p, f| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, f, mode))

    fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int, missing: -1;
    |real| open_with(dirfd, path, flags, |p, f| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, f))

    fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int, missing: -1;
    |real| open_with(dirfd, path, flags, |p, f| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, f))

    fn creat(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    |real| open_with(libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, |p, _| real(p, mode))

    fn creat64(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    |real| open_with(libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, |p, _| real(p, mode))

    fn fopen(path: *const c_char, mode: *const c_char) -> *mut FILE, missing: std::ptr::null_mut();
    |real| run_in(ops::OpenPlan::new, |l, plan| ops::open_into(l, libc::AT_FDCWD, arg(path)?, fopen_flags(mode), plan), |plan, ()| opened_file(real(plan.host.as_ptr(), mode), plan), || real(path, mode), std::ptr::null_mut())

    fn fopen64(path: *const c_char, mode: *const c_char) -> *mut FILE, missing: std::ptr::null_mut();
    |real| run_in(ops::OpenPlan::new, |l, plan| ops::open_into(l, libc::AT_FDCWD, arg(path)?, fopen_flags(mode), plan), |plan, ()| opened_file(real(plan.host.as_ptr(), mode), plan), || real(path, mode), std::ptr::null_mut())

    fn freopen(path: *const c_char, mode: *const c_char, stream: *mut FILE) -> *mut FILE, missing: std::ptr::null_mut();
    |real| { forget_stream(stream); run_in(ops::OpenPlan::new, |l, plan| ops::open_into(l, libc::AT_FDCWD, arg(path)?, fopen_flags(mode), plan), |plan, ()| opened_file(real(plan.host.as_ptr(), mode, stream), plan), || real(path, mode, stream), std::ptr::null_mut()) }

    fn freopen64(path: *const c_char, mode: *const c_char, stream: *mut FILE) -> *mut FILE, missing: std::ptr::null_mut();
    |real| { forget_stream(stream); run_in(ops::OpenPlan::new, |l, plan| ops::open_into(l, libc::AT_FDCWD, arg(path)?, fopen_flags(mode), plan), |plan, ()| opened_file(real(plan.host.as_ptr(), mode, stream), plan), || real(path, mode, stream), std::ptr::null_mut()) }

    fn stat(path: *const c_char, buf: *mut libc::stat) -> c_int, missing: -1;
    |real| stat_with(libc::AT_FDCWD, path, true, StatBuf::Copy(buf), |p| real(p, buf))

    fn stat64(path: *const c_char, buf: *mut libc::stat64) -> c_int, missing: -1;
    |real| stat_with(libc::AT_FDCWD, path, true, StatBuf::Copy(buf.cast()), |p| real(p, buf))

    fn lstat(path: *const c_char, buf: *mut libc::stat) -> c_int, missing: -1;
    |real| stat_with(libc::AT_FDCWD, path, false, StatBuf::Copy(buf), |p| real(p, buf))

    fn lstat64(path: *const c_char, buf: *mut libc::stat64) -> c_int, missing: -1;
    |real| stat_with(libc::AT_FDCWD, path, false, StatBuf::Copy(buf.cast()), |p| real(p, buf))

    fn fstatat(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int, missing: -1;
    |real| stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Copy(buf), |p| if p == path { real(dirfd, p, buf, flags) } else { real(libc::AT_FDCWD, p, buf, flags | libc::AT_SYMLINK_NOFOLLOW) })

    fn fstatat64(dirfd: c_int, path: *const c_char, buf: *mut libc::stat64, flags: c_int) -> c_int, missing: -1;
    |real| stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Copy(buf.cast()), |p| if p == path { real(dirfd, p, buf, flags) } else { real(libc::AT_FDCWD, p, buf, flags | libc::AT_SYMLINK_NOFOLLOW) })

    #[cfg(target_env = "gnu")]
    fn __xstat(ver: Ver, path: *const c_char, buf: *mut libc::stat) -> c_int, missing: -1;
    |real| stat_with(libc::AT_FDCWD, path, true, StatBuf::Stat(buf.cast()), |p| real(ver, p, buf))

    #[cfg(target_env = "gnu")]
    fn __xstat64(ver: Ver, path: *const c_char, buf: *mut libc::stat64) -> c_int, missing: -1;
    |real| stat_with(libc::AT_FDCWD, path, true, StatBuf::Stat(buf.cast()), |p| real(ver, p, buf))

    #[cfg(target_env = "gnu")]
    fn __lxstat(ver: Ver, path: *const c_char, buf: *mut libc::stat) -> c_int, missing: -1;
    |real| stat_with(libc::AT_FDCWD, path, false, StatBuf::Stat(buf.cast()), |p| real(ver, p, buf))

    #[cfg(target_env = "gnu")]
    fn __lxstat64(ver: Ver, path: *const c_char, buf: *mut libc::stat64) -> c_int, missing: -1;
    |real| stat_with(libc::AT_FDCWD, path, false, StatBuf::Stat(buf.cast()), |p| real(ver, p, buf))

    #[cfg(target_env = "gnu")]
    fn __fxstatat(ver: Ver, dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int, missing: -1;
    |real| stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Stat(buf.cast()), |p| if p == path { real(ver, dirfd, p, buf, flags) } else { real(ver, libc::AT_FDCWD, p, buf, flags | libc::AT_SYMLINK_NOFOLLOW) })

    #[cfg(target_env = "gnu")]
    fn __fxstatat64(ver: Ver, dirfd: c_int, path: *const c_char, buf: *mut libc::stat64, flags: c_int) -> c_int, missing: -1;
    |real| stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Stat(buf.cast()), |p| if p == path { real(ver, dirfd, p, buf, flags) } else { real(ver, libc::AT_FDCWD, p, buf, flags | libc::AT_SYMLINK_NOFOLLOW) })

    fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut libc::statx) -> c_int, missing: -1;
    |real| stat_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, StatBuf::Statx(buf), |p| if p == path { real(dirfd, p, flags, mask, buf) } else { real(libc::AT_FDCWD, p, flags | libc::AT_SYMLINK_NOFOLLOW, mask, buf) })

    fn access(path: *const c_char, mode: c_int) -> c_int, missing: -1;
    |real| access_with(libc::AT_FDCWD, path, mode, 0, |p, _, m| real(p, m))

    fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int, missing: -1;
    |real| access_with(dirfd, path, mode, flags, |p, direct, m| if direct { real(dirfd, p, m, flags) } else { real(libc::AT_FDCWD, p, m, flags | libc::AT_SYMLINK_NOFOLLOW) })

    fn euidaccess(path: *const c_char, mode: c_int) -> c_int, missing: -1;
    |real| access_with(libc::AT_FDCWD, path, mode, 0, |p, _, m| real(p, m))

    fn eaccess(path: *const c_char, mode: c_int) -> c_int, missing: -1;
    |real| access_with(libc::AT_FDCWD, path, mode, 0, |p, _, m| real(p, m))

    fn mkdir(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    |real| mkdir_with(libc::AT_FDCWD, path, mode, |p, m| real(p, m))

    fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    |real| mkdir_with(dirfd, path, mode, |p, m| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, m))

    fn rmdir(path: *const c_char) -> c_int, missing: -1;
    |real| remove_with(libc::AT_FDCWD, path, true, || real(path))

    fn unlink(path: *const c_char) -> c_int, missing: -1;
    |real| remove_with(libc::AT_FDCWD, path, false, || real(path))

    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int, missing: -1;
    |real| remove_with(dirfd, path, flags & libc::AT_REMOVEDIR != 0, || real(dirfd, path, flags))

    fn rename(old: *const c_char, new: *const c_char) -> c_int, missing: -1, support: RENAME_DIR;
    |real| rename_with(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0, |a, b| real(a, b))

    fn renameat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char) -> c_int, missing: -1, support: RENAME_DIR;
    |real| rename_with(olddir, old, newdir, new, 0, |a, b| if a == old { real(olddir, a, newdir, b) } else { real(libc::AT_FDCWD, a, libc::AT_FDCWD, b) })

    fn renameat2(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: c_uint) -> c_int, missing: -1, support: Partial("RENAME_NOREPLACE only; other flags give ENOSYS (callers fall back)");
    |real| rename_with(olddir, old, newdir, new, flags, |a, b| if a == old { real(olddir, a, newdir, b, flags) } else { real(libc::AT_FDCWD, a, libc::AT_FDCWD, b, flags) })

    fn link(old: *const c_char, new: *const c_char) -> c_int, missing: -1;
    |real| link_with(libc::AT_FDCWD, old, libc::AT_FDCWD, new, false, |a, b| real(a, b))

    fn linkat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: c_int) -> c_int, missing: -1;
    |real| link_with(olddir, old, newdir, new, flags & libc::AT_SYMLINK_FOLLOW != 0, |a, b| if a == old { real(olddir, a, newdir, b, flags) } else { real(libc::AT_FDCWD, a, libc::AT_FDCWD, b, 0) })

    fn symlink(target: *const c_char, path: *const c_char) -> c_int, missing: -1;
    |real| create_with(libc::AT_FDCWD, path, |p| real(target, p))

    fn symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int, missing: -1;
    |real| create_with(dirfd, path, |p| real(target, if p == path { dirfd } else { libc::AT_FDCWD }, p))

    fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t, missing: -1;
    |real| readlink_with(libc::AT_FDCWD, path, buf, size, |p, b, s| real(p, b, s))

    fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t, missing: -1;
    |real| readlink_with(dirfd, path, buf, size, |p, b, s| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, b, s))

    fn __readlink_chk(path: *const c_char, buf: *mut c_char, size: size_t, buflen: size_t) -> ssize_t, missing: -1;
    |real| readlink_with(libc::AT_FDCWD, path, buf, size, |p, b, s| real(p, b, s, buflen))

    fn __readlinkat_chk(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: size_t, buflen: size_t) -> ssize_t, missing: -1;
    |real| readlink_with(dirfd, path, buf, size, |p, b, s| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, b, s, buflen))

    fn chmod(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { super::pin::chmod_nofollow(p, mode) } else { real(p, mode) })

    fn fchmodat(dirfd: c_int, path: *const c_char, mode: mode_t, flags: c_int) -> c_int, missing: -1;
    |real| {
        if names_dirfd(path, flags) {
            // glibc's fchmodat refuses AT_EMPTY_PATH; the kernel's fchmodat2 takes it.
            return fd_change(dirfd, -1, |p| super::pin::chmod_nofollow(p, mode), || libc::fchmod(dirfd, mode));
        }
        change_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, -1, |p, pinned| if p == path { real(dirfd, p, mode, flags) } else if pinned { super::pin::chmod_nofollow(p, mode) } else { real(libc::AT_FDCWD, p, mode, flags) })
    }

    fn chown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int, missing: -1;
    |real| chown_with(libc::AT_FDCWD, path, uid, gid, true, |p| real(p, uid, gid))

    fn lchown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int, missing: -1;
    |real| chown_with(libc::AT_FDCWD, path, uid, gid, false, |p| real(p, uid, gid))

    fn fchownat(dirfd: c_int, path: *const c_char, uid: uid_t, gid: gid_t, flags: c_int) -> c_int, missing: -1;
    |real| {
        if names_dirfd(path, flags) {
            return fchown_with(dirfd, uid, gid, || real(dirfd, path, uid, gid, flags));
        }
        chown_with(dirfd, path, uid, gid, flags & libc::AT_SYMLINK_NOFOLLOW == 0, |p| if p == path { real(dirfd, p, uid, gid, flags) } else { real(libc::AT_FDCWD, p, uid, gid, flags | libc::AT_SYMLINK_NOFOLLOW) })
    }

    fn truncate(path: *const c_char, len: off_t) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, _| real(p, len))

    fn truncate64(path: *const c_char, len: off_t) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, _| real(p, len))

    fn utimensat(dirfd: c_int, path: *const c_char, times: *const libc::timespec, flags: c_int) -> c_int, missing: -1;
    |real| {
        if path.is_null() || names_dirfd(path, flags) {
            return fd_change(dirfd, -1, |p| real(libc::AT_FDCWD, p, times, libc::AT_SYMLINK_NOFOLLOW), || real(dirfd, path, times, flags));
        }
        change_with(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, -1, |p, _| if p == path { real(dirfd, p, times, flags) } else { real(libc::AT_FDCWD, p, times, flags | libc::AT_SYMLINK_NOFOLLOW) })
    }

    fn utimes(path: *const c_char, times: *const libc::timeval) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { libc::lutimes(p, times) } else { real(p, times) })

    fn lutimes(path: *const c_char, times: *const libc::timeval) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, false, -1, |p, _| real(p, times))

    fn utime(path: *const c_char, times: *const libc::utimbuf) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { utime_nofollow(p, times) } else { real(p, times) })

    fn mknod(path: *const c_char, mode: mode_t, dev: dev_t) -> c_int, missing: -1, support: DEVICE_NODE;
    |real| create_with(libc::AT_FDCWD, path, |p| mknod_in(p, mode, dev, || real(p, mode, dev)))

    fn mknodat(dirfd: c_int, path: *const c_char, mode: mode_t, dev: dev_t) -> c_int, missing: -1, support: DEVICE_NODE;
    |real| create_with(dirfd, path, |p| mknod_in(p, mode, dev, || real(if p == path { dirfd } else { libc::AT_FDCWD }, p, mode, dev)))

    fn mkfifo(path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    |real| create_with(libc::AT_FDCWD, path, |p| real(p, mode))

    fn mkfifoat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int, missing: -1;
    |real| create_with(dirfd, path, |p| real(if p == path { dirfd } else { libc::AT_FDCWD }, p, mode))

    fn chdir(path: *const c_char) -> c_int, missing: -1;
    |real| run_in(
        Node::empty,
        |l, node| {
            ops::existing_into(l, libc::AT_FDCWD, arg(path)?, true, node)?;
            if !node.is_dir() {
                return Err(Skip::Errno(libc::ENOTDIR));
            }
            Ok(())
        },
        |node, ()| real(node.host.as_ptr()),
        || real(path),
        -1,
    )

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

    fn statfs(path: *const c_char, buf: *mut libc::statfs) -> c_int, missing: -1;
    |real| read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, buf))

    fn statfs64(path: *const c_char, buf: *mut libc::statfs64) -> c_int, missing: -1;
    |real| read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, buf))

    fn statvfs(path: *const c_char, buf: *mut libc::statvfs) -> c_int, missing: -1;
    |real| read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, buf))

    fn statvfs64(path: *const c_char, buf: *mut libc::statvfs64) -> c_int, missing: -1;
    |real| read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, buf))

    fn getxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: size_t) -> ssize_t, missing: -1;
    |real| read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, name, value, size))

    fn lgetxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: size_t) -> ssize_t, missing: -1;
    |real| read_with(libc::AT_FDCWD, path, false, -1, |p| real(p, name, value, size))

    fn listxattr(path: *const c_char, list: *mut c_char, size: size_t) -> ssize_t, missing: -1;
    |real| read_with(libc::AT_FDCWD, path, true, -1, |p| real(p, list, size))

    fn llistxattr(path: *const c_char, list: *mut c_char, size: size_t) -> ssize_t, missing: -1;
    |real| read_with(libc::AT_FDCWD, path, false, -1, |p| real(p, list, size))

    fn setxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { libc::lsetxattr(p, name, value, size, flags) } else { real(p, name, value, size, flags) })

    fn lsetxattr(path: *const c_char, name: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, false, -1, |p, _| real(p, name, value, size, flags))

    fn removexattr(path: *const c_char, name: *const c_char) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, true, -1, |p, pinned| if pinned { libc::lremovexattr(p, name) } else { real(p, name) })

    fn lremovexattr(path: *const c_char, name: *const c_char) -> c_int, missing: -1;
    |real| change_with(libc::AT_FDCWD, path, false, -1, |p, _| real(p, name))

    fn fchmod(fd: c_int, mode: mode_t) -> c_int, missing: -1;
    |real| fd_change(fd, -1, |p| super::pin::chmod_nofollow(p, mode), || real(fd, mode))

    fn fchown(fd: c_int, uid: uid_t, gid: gid_t) -> c_int, missing: -1;
    |real| fchown_with(fd, uid, gid, || real(fd, uid, gid))

    fn futimens(fd: c_int, times: *const libc::timespec) -> c_int, missing: -1;
    |real| fd_change(fd, -1, |p| libc::utimensat(libc::AT_FDCWD, p, times, libc::AT_SYMLINK_NOFOLLOW), || real(fd, times))

    fn futimes(fd: c_int, times: *const libc::timeval) -> c_int, missing: -1;
    |real| fd_change(fd, -1, |p| libc::lutimes(p, times), || real(fd, times))

    fn fsetxattr(fd: c_int, name: *const c_char, value: *const c_void, size: size_t, flags: c_int) -> c_int, missing: -1;
    |real| fd_change(fd, -1, |p| libc::lsetxattr(p, name, value, size, flags), || real(fd, name, value, size, flags))

    fn fremovexattr(fd: c_int, name: *const c_char) -> c_int, missing: -1;
    |real| fd_change(fd, -1, |p| libc::lremovexattr(p, name), || real(fd, name))

    /// `ioctl` is variadic; its third argument is a fixed `unsigned long` on the
    /// supported architectures. Requests that change the inode (chattr's
    /// FS_IOC_SETFLAGS & co.) copy a lower-layer file up first, like fchmod.
    fn ioctl(fd: c_int, request: libc::c_ulong, arg: libc::c_ulong) -> c_int, missing: -1, support: Partial("only requests that change a file's inode (FS_IOC_SETFLAGS, FS_IOC_FSSETXATTR, FS_IOC_SETVERSION) are the replica's: a lower-layer file is copied up first; others pass through");
    |real| {
        if !changes_inode(request) {
            return real(fd, request, arg);
        }
        fd_change(fd, -1, |p| ioctl_by_path(p, request, arg, real), || real(fd, request, arg))
    }

    fn glob(pattern: *const c_char, flags: c_int, errfunc: GlobErr, pglob: *mut super::walk::Glob) -> c_int, missing: -1;
    |real| super::walk::glob_with(pglob, flags, |f| real(pattern, f, errfunc, pglob))

    fn glob64(pattern: *const c_char, flags: c_int, errfunc: GlobErr, pglob: *mut super::walk::Glob) -> c_int, missing: -1;
    |real| super::walk::glob_with(pglob, flags, |f| real(pattern, f, errfunc, pglob))

    fn nftw(dir: *const c_char, visit: NftwFn, nopenfd: c_int, flags: c_int) -> c_int, missing: -1, support: Partial("FTW_CHDIR is not honoured");
    |real| {
        let (Some(_), Some(visit)) = (super::layers(), visit) else { return real(dir, visit, nopenfd, flags) };
        crate::hook::outside(|| super::walk::nftw_with(dir, flags, &mut |p, st, kind, mut ftw| visit(p, st, kind, &mut ftw)))
    }

    fn nftw64(dir: *const c_char, visit: NftwFn, nopenfd: c_int, flags: c_int) -> c_int, missing: -1, support: Partial("FTW_CHDIR is not honoured");
    |real| {
        let (Some(_), Some(visit)) = (super::layers(), visit) else { return real(dir, visit, nopenfd, flags) };
        crate::hook::outside(|| super::walk::nftw_with(dir, flags, &mut |p, st, kind, mut ftw| visit(p, st, kind, &mut ftw)))
    }

    fn ftw(dir: *const c_char, visit: FtwFn, nopenfd: c_int) -> c_int, missing: -1;
    |real| {
        let (Some(_), Some(visit)) = (super::layers(), visit) else { return real(dir, visit, nopenfd) };
        crate::hook::outside(|| super::walk::nftw_with(dir, 0, &mut |p, st, kind, _| visit(p, st, kind)))
    }

    fn ftw64(dir: *const c_char, visit: FtwFn, nopenfd: c_int) -> c_int, missing: -1;
    |real| {
        let (Some(_), Some(visit)) = (super::layers(), visit) else { return real(dir, visit, nopenfd) };
        crate::hook::outside(|| super::walk::nftw_with(dir, 0, &mut |p, st, kind, _| visit(p, st, kind)))
    }

    fn fstat(fd: c_int, buf: *mut libc::stat) -> c_int, missing: -1;
    |real| fstat_with(fd, buf, || real(fd, buf))

    fn fstat64(fd: c_int, buf: *mut libc::stat64) -> c_int, missing: -1;
    |real| fstat_with(fd, buf.cast(), || real(fd, buf))

    #[cfg(target_env = "gnu")]
    fn __fxstat(ver: Ver, fd: c_int, buf: *mut libc::stat) -> c_int, missing: -1;
    |real| fstat_with(fd, buf, || real(ver, fd, buf))

    #[cfg(target_env = "gnu")]
    fn __fxstat64(ver: Ver, fd: c_int, buf: *mut libc::stat64) -> c_int, missing: -1;
    |real| fstat_with(fd, buf.cast(), || real(ver, fd, buf))

    fn close(fd: c_int) -> c_int, missing: -1;
    |real| {
        super::fds::closed(fd);
        real(fd)
    }

    /// glibc's fclose closes the descriptor with its internal close, which no hook
    /// sees.
    fn fclose(file: *mut FILE) -> c_int, missing: libc::EOF;
    |real| {
        let fd = if file.is_null() { -1 } else { libc::fileno(file) };
        let rc = real(file);
        super::fds::closed(fd);
        rc
    }

    /// Closes every stream inside glibc: which descriptors is not known, so none
    /// stays known as safe.
    fn fcloseall() -> c_int, missing: libc::EOF;
    |real| {
        let rc = real();
        super::fds::forget(0, u32::MAX);
        rc
    }

    fn dup(fd: c_int) -> c_int, missing: -1;
    |real| {
        let new = real(fd);
        super::fds::copy(fd, new);
        new
    }

    fn dup2(fd: c_int, new: c_int) -> c_int, missing: -1;
    |real| {
        let rc = real(fd, new);
        if rc >= 0 {
            super::fds::copy(fd, rc);
        }
        rc
    }

    fn dup3(fd: c_int, new: c_int, flags: c_int) -> c_int, missing: -1;
    |real| {
        let rc = real(fd, new, flags);
        if rc >= 0 {
            super::fds::copy(fd, rc);
        }
        rc
    }

    /// `fcntl` is variadic; its third argument is a fixed `unsigned long` on the
    /// supported architectures.
    fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int, missing: -1;
    |real| {
        let rc = real(fd, cmd, arg);
        if rc >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
            super::fds::copy(fd, rc);
        }
        rc
    }

    fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int, missing: -1;
    |real| {
        let rc = real(fd, cmd, arg);
        if rc >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
            super::fds::copy(fd, rc);
        }
        rc
    }

    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int, missing: -1;
    |real| {
        let closing = flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0;
        let rc = match crate::log::own_fd() {
            // The shim's log descriptor stays open: close around it.
            Some(own) if closing && (first..=last).contains(&own) => {
                let below = if own > first { real(first, own - 1, flags) } else { 0 };
                let above = if own < last { real(own + 1, last, flags) } else { 0 };
                if below != 0 { below } else { above }
            }
            _ => real(first, last, flags),
        };
        if rc == 0 && closing {
            super::fds::forget(first, last);
        }
        rc
    }

    #[allow(clippy::unused_unit)]
    fn closefrom(first: c_int) -> (), missing: ();
    |real| {
        match crate::log::own_fd() {
            // The shim's log descriptor stays open: close around it.
            Some(own) if first >= 0 && own >= first as u32 => {
                if own > first as u32 {
                    libc::syscall(libc::SYS_close_range, first as c_uint, own - 1, 0);
                }
                real(own as c_int + 1);
            }
            _ => real(first),
        }
        super::fds::forget(first.max(0) as u32, u32::MAX);
    }

    fn fts_open(argv: *const *const c_char, options: c_int, compar: Option<super::fts::Compar>) -> *mut super::fts::Fts, missing: std::ptr::null_mut(), support: FTS;
    |real| match super::layers() {
        Some(_) => crate::hook::outside(|| super::fts::open(argv, options, compar)),
        None => real(argv, options, compar),
    }

    fn fts64_open(argv: *const *const c_char, options: c_int, compar: Option<super::fts::Compar>) -> *mut super::fts::Fts, missing: std::ptr::null_mut(), support: FTS;
    |real| match super::layers() {
        Some(_) => crate::hook::outside(|| super::fts::open(argv, options, compar)),
        None => real(argv, options, compar),
    }

    fn fts_read(sp: *mut super::fts::Fts) -> *mut super::fts::Ent, missing: std::ptr::null_mut(), support: FTS;
    |real| match super::layers() {
        Some(_) => crate::hook::outside(|| super::fts::read(sp)),
        None => real(sp),
    }

    fn fts64_read(sp: *mut super::fts::Fts) -> *mut super::fts::Ent, missing: std::ptr::null_mut(), support: FTS;
    |real| match super::layers() {
        Some(_) => crate::hook::outside(|| super::fts::read(sp)),
        None => real(sp),
    }

    fn fts_children(sp: *mut super::fts::Fts, instr: c_int) -> *mut super::fts::Ent, missing: std::ptr::null_mut(), support: FTS;
    |real| match super::layers() {
        Some(_) => crate::hook::outside(|| super::fts::children(sp, instr)),
        None => real(sp, instr),
    }

    fn fts64_children(sp: *mut super::fts::Fts, instr: c_int) -> *mut super::fts::Ent, missing: std::ptr::null_mut(), support: FTS;
    |real| match super::layers() {
        Some(_) => crate::hook::outside(|| super::fts::children(sp, instr)),
        None => real(sp, instr),
    }

    fn fts_set(sp: *mut super::fts::Fts, p: *mut super::fts::Ent, instr: c_int) -> c_int, missing: 1, support: FTS;
    |real| match super::layers() {
        Some(_) => super::fts::set(p, instr),
        None => real(sp, p, instr),
    }

    fn fts64_set(sp: *mut super::fts::Fts, p: *mut super::fts::Ent, instr: c_int) -> c_int, missing: 1, support: FTS;
    |real| match super::layers() {
        Some(_) => super::fts::set(p, instr),
        None => real(sp, p, instr),
    }

    fn fts_close(sp: *mut super::fts::Fts) -> c_int, missing: -1, support: FTS;
    |real| match super::layers() {
        Some(_) => crate::hook::outside(|| super::fts::close(sp)),
        None => real(sp),
    }

    fn fts64_close(sp: *mut super::fts::Fts) -> c_int, missing: -1, support: FTS;
    |real| match super::layers() {
        Some(_) => crate::hook::outside(|| super::fts::close(sp)),
        None => real(sp),
    }

    fn tmpfile() -> *mut FILE, missing: std::ptr::null_mut();
    |real| tmpfile_with(|| real())

    fn tmpfile64() -> *mut FILE, missing: std::ptr::null_mut();
    |real| tmpfile_with(|| real())

    fn mkstemp(template: *mut c_char) -> c_int, missing: -1;
    |real| mktemp_with(template, 0, 0, false, || real(template))

    fn mkstemp64(template: *mut c_char) -> c_int, missing: -1;
    |real| mktemp_with(template, 0, 0, false, || real(template))

    fn mkostemp(template: *mut c_char, flags: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, 0, flags, false, || real(template, flags))

    fn mkostemp64(template: *mut c_char, flags: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, 0, flags, false, || real(template, flags))

    fn mkstemps(template: *mut c_char, suffix: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, suffix, 0, false, || real(template, suffix))

    fn mkstemps64(template: *mut c_char, suffix: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, suffix, 0, false, || real(template, suffix))

    fn mkostemps(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, suffix, flags, false, || real(template, suffix, flags))

    fn mkostemps64(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, suffix, flags, false, || real(template, suffix, flags))

    fn mkdtemp(template: *mut c_char) -> *mut c_char, missing: std::ptr::null_mut();
    |real| {
        let mut made = std::ptr::null_mut();
        let rc = mktemp_with(template, 0, 0, true, || { made = real(template); if made.is_null() { -1 } else { 0 } });
        if rc < 0 { std::ptr::null_mut() } else if made.is_null() { template } else { made }
    }

    /// A library given by path is loaded from the capsule.
    fn dlopen(path: *const c_char, flags: c_int) -> *mut c_void, missing: std::ptr::null_mut(), support: Partial("the library named is loaded from the capsule; its own dependencies come from the dynamic loader's search path");
    |real| {
        if path.is_null() || !CStr::from_ptr(path).to_bytes().contains(&b'/') {
            return real(path, flags);
        }
        let mut node = Node::empty();
        match super::layers().map(|l| ops::read_path_into(l, libc::AT_FDCWD, CStr::from_ptr(path), true, &mut node)) {
            Some(Ok(())) => crate::hook::outside(|| real(node.host.as_ptr(), flags)),
            _ => crate::hook::outside(|| real(path, flags)),
        }
    }

    fn opendir(path: *const c_char) -> *mut DIR, missing: std::ptr::null_mut(), support: MERGED_STREAM;
    |real| {
        let Some(layers) = super::layers() else { return real(path) };
        let mut node = Node::empty();
        match arg(path).and_then(|p| ops::existing_into(layers, libc::AT_FDCWD, p, true, &mut node)) {
            Ok(()) => open_stream(&node, layers, None, |host| real(host.as_ptr())),
            Err(Skip::Pass) => real(path),
            Err(Skip::Errno(e)) => { set_errno(e); std::ptr::null_mut() }
        }
    }

    fn fdopendir(fd: c_int) -> *mut DIR, missing: std::ptr::null_mut(), support: MERGED_STREAM;
    |real| {
        let Some(layers) = super::layers() else { return real(fd) };
        let mut node = Node::empty();
        match ops::fd_path(layers, fd) {
            Ok(Some(capsule)) => match layers.resolve_into(capsule.as_bytes(), true, &mut node) {
                Ok(()) if node.exists() => {}
                _ => return real(fd),
            },
            _ => return real(fd),
        };
        open_stream(&node, layers, Some(fd), |_| real(fd))
    }

    fn readdir(dir: *mut DIR) -> *mut Dirent, missing: std::ptr::null_mut();
    |real| match dirs::ours(dir) { Some(stream) => stream.next(), None => real(dir) }

    fn readdir64(dir: *mut DIR) -> *mut Dirent, missing: std::ptr::null_mut();
    |real| match dirs::ours(dir) { Some(stream) => stream.next(), None => real(dir) }

    fn readdir_r(dir: *mut DIR, entry: *mut Dirent, result: *mut *mut Dirent) -> c_int, missing: libc::ENOSYS;
    |real| readdir_r_with(dir, entry, result, || real(dir, entry, result))

    fn readdir64_r(dir: *mut DIR, entry: *mut Dirent, result: *mut *mut Dirent) -> c_int, missing: libc::ENOSYS;
    |real| readdir_r_with(dir, entry, result, || real(dir, entry, result))

    fn closedir(dir: *mut DIR) -> c_int, missing: -1;
    |real| {
        // Either way the descriptor is closed inside libc or the shim.
        let (fd, rc) = match dirs::ours(dir) {
            Some(stream) => (stream.fd, dirs::close(dir)),
            None => (if dir.is_null() { -1 } else { libc::dirfd(dir) }, real(dir)),
        };
        super::fds::closed(fd);
        rc
    }

    fn dirfd(dir: *mut DIR) -> c_int, missing: -1;
    |real| match dirs::ours(dir) { Some(stream) => stream.fd, None => real(dir) }

    #[allow(clippy::unused_unit)]
    fn rewinddir(dir: *mut DIR) -> (), missing: ();
    |real| match dirs::ours(dir) { Some(stream) => stream.rewind(), None => real(dir) }

    fn telldir(dir: *mut DIR) -> c_long, missing: -1;
    |real| match dirs::ours(dir) { Some(stream) => stream.tell(), None => real(dir) }

    #[allow(clippy::unused_unit)]
    fn seekdir(dir: *mut DIR, pos: c_long) -> (), missing: ();
    |real| match dirs::ours(dir) { Some(stream) => stream.seek(pos), None => real(dir, pos) }

    fn scandir(path: *const c_char, list: *mut *mut *mut Dirent, filter: Filter, compare: Compare) -> c_int, missing: -1;
    |real| scandir_with(path, list, filter, compare, || real(path, list, filter, compare))

    fn scandir64(path: *const c_char, list: *mut *mut *mut Dirent, filter: Filter, compare: Compare) -> c_int, missing: -1;
    |real| scandir_with(path, list, filter, compare, || real(path, list, filter, compare))
}

/// access / faccessat: `W_OK` where the capsule cannot write is `EROFS`, as on a
/// read-only mount; where it can, a fake root may write (dpkg checks
/// `/var/lib/dpkg` so in a root owned by real root); otherwise the kernel checks
/// the host file. `real` gets the
/// host path (direct = false) or the caller's own (direct = true).
unsafe fn access_with(
    dirfd: c_int,
    path: *const c_char,
    mode: c_int,
    flags: c_int,
    real: impl Fn(*const c_char, bool, c_int) -> c_int + Copy,
) -> c_int {
    run_in(
        Node::empty,
        |l, node| {
            ops::existing_into(
                l,
                dirfd,
                arg(path)?,
                flags & libc::AT_SYMLINK_NOFOLLOW == 0,
                node,
            )?;
            if mode & libc::W_OK != 0 {
                let writable = match node.place {
                    super::layers::Place::Volume { read_only } => !read_only,
                    super::layers::Place::Passthrough => true,
                    super::layers::Place::Overlay => l.writable(),
                };
                if !writable {
                    return Err(Skip::Errno(libc::EROFS));
                }
            }
            Ok(())
        },
        |node, ()| match super::owner::access_by_root(&node.stat, mode) {
            Some(0) => 0,
            Some(e) => {
                set_errno(e);
                -1
            }
            // A fake root may write whatever the capsule can write (a copy-up makes
            // the file the real user's): the kernel is asked about the rest only.
            None => {
                let fake_root =
                    node.place == super::layers::Place::Overlay && super::owner::is_fake_root();
                let asked = if fake_root { mode & !libc::W_OK } else { mode };
                real(node.host.as_ptr(), false, asked)
            }
        },
        || real(path, true, mode),
        -1,
    )
}
