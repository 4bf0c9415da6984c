//! Copy-on-write: bringing lower-layer names into the upper layer before they
//! change, and marking deletions.
//!
//! A copy-up is atomic: the copy is written under a temporary name in the target
//! directory of the upper layer and renamed to the final name once complete, so a
//! crash leaves either no upper file or a complete one, never a half-copied file.
//! The rename never replaces: when processes of a capsule copy the same file up at
//! once, the first copy wins and the others use it (with what was written to it).

use std::ffi::c_int;
use std::sync::atomic::{AtomicU32, Ordering};

use super::layers::{Found, Layers, Node, OPAQUE_MARKER};
use super::path::{components, PathBuf};
use super::sys;
use crate::hook::errno;

/// A temporary name in `dir` for a copy in progress, that no other process or thread
/// can pick: pid, thread id, a process-wide counter and 64 random bits. A leftover of
/// a killed process is collected by the loader at the capsule's next start.
fn temp_name(dir: &[u8]) -> Result<PathBuf, c_int> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut p = PathBuf::from_bytes(dir)?;
    p.push_component(super::layers::COPYUP_PREFIX)?;
    // SAFETY: getpid and gettid have no preconditions.
    let (pid, tid) = unsafe { (libc::getpid() as u64, libc::gettid() as u64) };
    let n = u64::from(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut random = [0u8; 8];
    // SAFETY: a buffer valid for its length; GRND_NONBLOCK never waits.
    let got = unsafe {
        libc::syscall(
            libc::SYS_getrandom,
            random.as_mut_ptr(),
            random.len(),
            libc::GRND_NONBLOCK,
        )
    };
    let random = if got == 8 {
        u64::from_ne_bytes(random)
    } else {
        crate::runtime::real_time_ns() as u64
    };
    for (i, value) in [pid, tid, n, random].into_iter().enumerate() {
        if i > 0 {
            p.push_bytes(b".")?;
        }
        p.push_bytes(crate::decimal::decimal(value, &mut Default::default()))?;
    }
    Ok(p)
}

/// Makes sure capsule directory `dir` exists in the upper layer, creating each
/// missing directory on the way with the mode of the lower directory it shadows.
pub fn ensure_upper_dir(layers: &Layers, dir: &[u8]) -> Result<(), c_int> {
    let Some(_) = &layers.upper else {
        return Err(libc::EROFS);
    };
    let mut capsule = PathBuf::root();
    for name in components(dir) {
        capsule.push_component(name)?;
        let up = layers.upper_host(capsule.as_bytes())?;
        // SAFETY: zeroed stat is valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if sys::lstat(&up, &mut st) {
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(libc::ENOTDIR);
            }
            continue;
        }
        let low = layers.lower_host(capsule.as_bytes())?;
        let lower = sys::lstat(&low, &mut st);
        let mode = if lower { st.st_mode & 0o7777 } else { 0o755 };
        // The owner keeps write and search permission in the upper layer, so that
        // copy-ups below a read-only lower directory still work.
        let mode = mode | 0o300;
        // Made under a temporary name with its owner, then its mode (chown may
        // clear set-id bits), and only then given its name: a process killed on the
        // way leaves no directory with the wrong owner or mode.
        let temp = temp_name(up.parent_bytes())?;
        sys::mkdir(&temp, 0o700)?;
        if lower {
            super::owner::after_copy_up(&temp, &st);
        }
        // SAFETY: NUL-terminated path.
        unsafe { libc::chmod(temp.as_ptr(), mode) };
        match sys::publish_dir(&temp, &up) {
            Ok(()) => {}
            Err(e) => return Err(e),
        }
        super::changed();
    }
    Ok(())
}

/// Copies `len` bytes from `from` to `to` (file descriptors).
fn copy_data(from: c_int, to: c_int, len: i64) -> Result<(), c_int> {
    let mut left = len;
    while left > 0 {
        // SAFETY: both descriptors are open; null offsets use the file positions.
        let n = unsafe {
            libc::copy_file_range(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                left as usize,
                0,
            )
        };
        if n > 0 {
            left -= n as i64;
            continue;
        }
        if n == 0 {
            break;
        }
        let e = errno();
        if !matches!(
            e,
            libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP
        ) {
            return Err(e);
        }
        // Fall back to read and write.
        let mut buf = [0u8; 65536];
        loop {
            // SAFETY: buffer valid for its length.
            let r = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
            if r < 0 {
                return Err(errno());
            }
            if r == 0 {
                return Ok(());
            }
            let mut done = 0usize;
            while done < r as usize {
                // SAFETY: the slice is within the buffer.
                let w = unsafe { libc::write(to, buf[done..].as_ptr().cast(), r as usize - done) };
                if w <= 0 {
                    return Err(errno());
                }
                done += w as usize;
            }
        }
    }
    Ok(())
}

/// Copies the extended attributes of `from` onto `to` (best effort: a file system
/// without xattrs is not an error).
fn copy_xattrs(from: c_int, to: c_int) {
    let mut names = [0u8; 4096];
    // SAFETY: buffer valid for its length.
    let n = unsafe { libc::flistxattr(from, names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return;
    }
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let mut cname = [0u8; 256];
        if name.len() >= cname.len() {
            continue;
        }
        cname[..name.len()].copy_from_slice(name);
        let mut value = [0u8; 4096];
        // SAFETY: NUL-terminated name, buffer valid for its length.
        unsafe {
            let len = libc::fgetxattr(
                from,
                cname.as_ptr().cast(),
                value.as_mut_ptr().cast(),
                value.len(),
            );
            if len >= 0 {
                libc::fsetxattr(
                    to,
                    cname.as_ptr().cast(),
                    value.as_ptr().cast(),
                    len as usize,
                    0,
                );
            }
        }
    }
}

/// Gives the copy on `dst` everything of the lower file but its name, in the order
/// that keeps each: owner first (chown clears set-id bits and file capabilities),
/// then extended attributes, mode, times.
///
/// # Safety
/// `dst` is an open descriptor; `src` too, or -1 for a file copied without content.
unsafe fn finish_copy(src: c_int, dst: c_int, st: &libc::stat) {
    super::owner::copy_up_owner_fd(dst, st);
    copy_xattrs(src, dst);
    // SAFETY: fchmod on an open descriptor takes no pointer.
    unsafe { libc::fchmod(dst, st.st_mode & 0o7777) };
    let times = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: `times` holds the two timespecs futimens reads.
    unsafe { libc::futimens(dst, times.as_ptr()) };
}

/// Whether `O_TMPFILE` failed because the file system or kernel lacks it.
fn tmpfile_unsupported(e: c_int) -> bool {
    matches!(
        e,
        libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT
    )
}

/// Writes the content of a copy: `len` bytes of `src`, or `made` where `src` is -1
/// (a file copied without reading it: empty, or a stand-in, see `stand_in`).
fn fill(src: c_int, made: &[u8], dst: c_int, len: i64) -> Result<(), c_int> {
    if src >= 0 {
        return copy_data(src, dst, len);
    }
    let mut done = 0;
    while done < made.len() {
        // SAFETY: the slice is within `made`.
        let w = unsafe { libc::write(dst, made[done..].as_ptr().cast(), made.len() - done) };
        if w <= 0 {
            return Err(errno());
        }
        done += w as usize;
    }
    Ok(())
}

/// The content of capsule file `capsule` when the real user may not read its lower
/// file `lower` (`st`): only `/etc/shadow` and `/etc/gshadow` (0640 `root:shadow` in
/// a root owned by real root, which `useradd` and `adduser` rewrite) have one,
/// made from the capsule's `/etc/passwd` and `/etc/group` with every password
/// locked (see `nss::shadow_stand_in`). `None`: the copy-up fails with `EACCES`.
fn stand_in(layers: &Layers, capsule: &[u8], lower: &PathBuf, st: &libc::stat) -> Option<Vec<u8>> {
    let source: &[u8] = match capsule {
        b"/etc/shadow" => b"/etc/passwd",
        b"/etc/gshadow" => b"/etc/group",
        _ => return None,
    };
    let node = layers.resolve(source, true).ok()?;
    if !node.exists() {
        return None;
    }
    use std::os::unix::ffi::OsStrExt;
    let text = std::fs::read(std::ffi::OsStr::from_bytes(node.host.as_bytes())).ok()?;
    let made = if source == b"/etc/passwd" {
        crate::identity::nss::shadow_stand_in(&text, st.st_mtime / 86400)
    } else {
        crate::identity::nss::gshadow_stand_in(&text)
    };
    log::warn!(
        "{lower:?}: the real user may not read it; its copy is made from the capsule's {:?}, every password locked",
        std::str::from_utf8(source).unwrap_or("")
    );
    Some(made)
}

/// What `copy_file` copies up: capsule file `capsule` of `layers`, for an open that
/// truncates it or not.
struct Copied<'a> {
    layers: &'a Layers,
    capsule: &'a [u8],
    truncated: bool,
}

/// Copies a lower regular file into place atomically (an empty one, one about to be
/// truncated, or the stand-in of `stand_in`, even when the real user may not read
/// it, `src` -1 below): into an unnamed file (`O_TMPFILE`) of the target directory,
/// complete with owner, mode, times and xattrs, then linked to its name (`linkat`
/// through `/proc/self/fd`), so that a process killed at any moment leaves either no
/// upper file or the whole copy, and no temporary file. Where `O_TMPFILE` is missing, a uniquely named temporary file is
/// renamed into place instead.
fn copy_file(
    what: &Copied,
    lower: &PathBuf,
    upper: &PathBuf,
    st: &libc::stat,
) -> Result<(), c_int> {
    let mut made = Vec::new();
    // SAFETY: NUL-terminated paths; every descriptor opened here is closed here.
    unsafe {
        let src = libc::open(lower.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if src < 0 {
            let e = errno();
            if e != libc::EACCES {
                return Err(e);
            }
            // An empty file the real user may not read (apt's `lists/lock`, 0640
            // root), or one about to be truncated: a copy needs none of its
            // content, and its extended attributes are not the real user's to read
            // either; `src` stays -1.
            if st.st_size != 0 && !what.truncated {
                match stand_in(what.layers, what.capsule, lower, st) {
                    Some(text) => made = text,
                    None => {
                        log::warn!("cannot copy {lower:?} up: the real user may not read it");
                        return Err(e);
                    }
                }
            }
        }
        let dir = PathBuf::from_bytes(upper.parent_bytes());
        let result = match dir {
            Ok(dir) => {
                let dst = libc::open(
                    dir.as_ptr(),
                    libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o600,
                );
                if dst >= 0 {
                    let r = copy_into_tmpfile(src, &made, dst, upper, st);
                    libc::close(dst);
                    match r {
                        Err(e) if tmpfile_unsupported(e) => copy_named(src, &made, upper, st),
                        r => r,
                    }
                } else if tmpfile_unsupported(errno()) {
                    copy_named(src, &made, upper, st)
                } else {
                    Err(errno())
                }
            }
            Err(e) => Err(e),
        };
        if src >= 0 {
            libc::close(src);
        }
        result
    }
}

/// The `O_TMPFILE` copy: fills `dst`, then links it at `upper` (an existing name wins:
/// another process copied the file up first).
///
/// # Safety
/// `dst` is an open descriptor; `src` too, or -1 (see `finish_copy`; `made` is
/// then the content, see `fill`).
unsafe fn copy_into_tmpfile(
    src: c_int,
    made: &[u8],
    dst: c_int,
    upper: &PathBuf,
    st: &libc::stat,
) -> Result<(), c_int> {
    fill(src, made, dst, st.st_size)?;
    // SAFETY: `src` and `dst` as this function's contract says.
    unsafe { finish_copy(src, dst, st) };
    let mut proc_fd = PathBuf::from_bytes(b"/proc/self/fd")?;
    proc_fd.push_component(crate::decimal::decimal(dst as u64, &mut Default::default()))?;
    // SAFETY: two NUL-terminated paths.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_fd.as_ptr(),
            libc::AT_FDCWD,
            upper.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    match errno() {
        libc::EEXIST => Ok(()),
        e => Err(e),
    }
}

/// The fallback copy: a uniquely named temporary file, complete before it is renamed.
///
/// # Safety
/// `src` is an open descriptor, or -1 (see `copy_into_tmpfile`).
unsafe fn copy_named(
    src: c_int,
    made: &[u8],
    upper: &PathBuf,
    st: &libc::stat,
) -> Result<(), c_int> {
    // SAFETY: lseek on a descriptor takes no pointer.
    if src >= 0 && unsafe { libc::lseek(src, 0, libc::SEEK_SET) } != 0 {
        return Err(errno());
    }
    let temp = temp_name(upper.parent_bytes())?;
    // SAFETY: a NUL-terminated path.
    let dst = unsafe {
        libc::open(
            temp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600,
        )
    };
    if dst < 0 {
        return Err(errno());
    }
    let mut result = fill(src, made, dst, st.st_size);
    if result.is_ok() {
        // SAFETY: as above.
        unsafe { finish_copy(src, dst, st) };
    }
    // SAFETY: close of the descriptor opened above, once.
    if unsafe { libc::close(dst) } != 0 && result.is_ok() {
        result = Err(errno());
    }
    if let Err(e) = result {
        let _ = sys::unlink(&temp);
        return Err(e);
    }
    sys::publish(&temp, upper)
}

/// Copies a lower-layer name into the upper layer (content, mode, times, xattrs;
/// links as links, directories as empty directories) and updates `node` to the
/// upper copy. A name already in the upper layer is left alone.
pub fn copy_up(layers: &Layers, node: &mut Node) -> Result<(), c_int> {
    copy_up_as(layers, node, false)
}

/// `copy_up` for an open that truncates the file (`O_TRUNC`): a regular file the
/// real user may not read is copied up empty (its owner, mode and times kept), as
/// its content is about to go (shadow-utils' `fopen("/etc/passwd-", "w")`, 0600
/// root in a root owned by real root).
pub fn copy_up_truncated(layers: &Layers, node: &mut Node) -> Result<(), c_int> {
    copy_up_as(layers, node, true)
}

fn copy_up_as(layers: &Layers, node: &mut Node, truncated: bool) -> Result<(), c_int> {
    if node.found != Found::Lower {
        return Ok(());
    }
    if !layers.writable() {
        return Err(libc::EROFS);
    }
    ensure_upper_dir(layers, node.capsule.parent_bytes())?;
    let upper = layers.upper_host(node.capsule.as_bytes())?;
    // Every kind is complete (owner, then mode) under its temporary name before it
    // is published.
    match node.stat.st_mode & libc::S_IFMT {
        libc::S_IFREG => {
            let what = Copied {
                layers,
                capsule: node.capsule.as_bytes(),
                truncated,
            };
            copy_file(&what, &node.host, &upper, &node.stat)?;
            let lower = PathBuf::from_bytes(node.host.as_bytes())?;
            let st = node.stat;
            // The owner was set on the copy before it was published (copy_file).
            node.found = Found::Upper;
            node.host = upper;
            sys::lstat(&node.host, &mut node.stat);
            follow_open_descriptors(&lower, &st, node);
            return Ok(());
        }
        libc::S_IFLNK => {
            let mut target = PathBuf::new();
            sys::readlink(&node.host, &mut target)?;
            let temp = temp_name(upper.parent_bytes())?;
            sys::symlink(&target, &temp)?;
            super::owner::after_copy_up(&temp, &node.stat);
            sys::publish(&temp, &upper)?;
        }
        libc::S_IFDIR => ensure_upper_dir(layers, node.capsule.as_bytes())?,
        libc::S_IFIFO => {
            let temp = temp_name(upper.parent_bytes())?;
            // SAFETY: NUL-terminated path.
            if unsafe { libc::mkfifo(temp.as_ptr(), 0o600) } != 0 {
                return Err(errno());
            }
            super::owner::after_copy_up(&temp, &node.stat);
            // SAFETY: NUL-terminated path.
            unsafe { libc::chmod(temp.as_ptr(), node.stat.st_mode & 0o7777) };
            sys::publish(&temp, &upper)?;
        }
        // Device nodes and sockets cannot be recreated by an ordinary user.
        _ => return Err(libc::EPERM),
    }
    node.found = Found::Upper;
    node.host = upper;
    sys::lstat(&node.host, &mut node.stat);
    Ok(())
}

/// Makes descriptor `fd` refer to the upper-layer file `node` (same number, access
/// mode, status flags, close-on-exec flag and offset). False when it cannot.
pub fn follow(fd: c_int, node: &Node) -> bool {
    const KEPT: c_int = libc::O_ACCMODE
        | libc::O_APPEND
        | libc::O_NONBLOCK
        | libc::O_DSYNC
        | libc::O_SYNC
        | libc::O_DIRECT
        | libc::O_NOATIME
        | libc::O_PATH
        | libc::O_LARGEFILE;
    // SAFETY: fcntl, lseek, open, dup3 and close on descriptors this call owns or
    // the caller named; no memory is involved but the NUL-terminated host path.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        let fd_flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || fd_flags < 0 {
            return false;
        }
        let directory = node.is_dir();
        let mut open_flags = flags & KEPT | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY;
        if directory {
            open_flags |= libc::O_DIRECTORY;
        }
        let offset = if directory || flags & libc::O_PATH != 0 {
            0
        } else {
            libc::lseek(fd, 0, libc::SEEK_CUR)
        };
        let upper = libc::open(node.host.as_ptr(), open_flags);
        if upper < 0 {
            return false;
        }
        if offset > 0 && libc::lseek(upper, offset, libc::SEEK_SET) != offset {
            libc::close(upper);
            return false;
        }
        let cloexec = if fd_flags & libc::FD_CLOEXEC != 0 {
            libc::O_CLOEXEC
        } else {
            0
        };
        let done = libc::dup3(upper, fd, cloexec) == fd;
        libc::close(upper);
        if done && directory {
            super::fds::remember_directory(fd, node.capsule.as_bytes());
        }
        done
    }
}

/// After this process copied up the lower file `lower` (`st`) to `node`: its
/// read-only descriptors on the lower file follow the copy (see `follow`), so that
/// what the capsule changes by name shows through them as it would without layers.
/// Descriptors of other processes still read the lower file (a limit).
fn follow_open_descriptors(lower: &PathBuf, st: &libc::stat, node: &Node) {
    // SAFETY: opendir/readdir/closedir of /proc/self/fd (the real ones: this runs
    // inside the shim guard); the entries are read before the stream is closed.
    unsafe {
        let dir = libc::opendir(c"/proc/self/fd".as_ptr());
        if dir.is_null() {
            return;
        }
        let own = libc::dirfd(dir);
        loop {
            let entry = libc::readdir(dir);
            if entry.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()).to_bytes();
            let Some(fd) = std::str::from_utf8(name)
                .ok()
                .and_then(|n| n.parse::<c_int>().ok())
            else {
                continue;
            };
            // A descriptor known not to be on a lower file needs no look.
            if fd == own
                || super::fds::is_safe(fd)
                || !sys::fd_target(fd).is_ok_and(|t| t.as_bytes() == lower.as_bytes())
            {
                continue;
            }
            let mut by_fd: libc::stat = std::mem::zeroed();
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0
                || flags & libc::O_ACCMODE != libc::O_RDONLY
                || libc::fstat(fd, &mut by_fd) != 0
                || (by_fd.st_dev, by_fd.st_ino) != (st.st_dev, st.st_ino)
            {
                continue;
            }
            if follow(fd, node) {
                super::fds::mark(fd, true);
            }
        }
        libc::closedir(dir);
    }
}

/// Hides the lower-layer name of `node` with a whiteout.
pub fn whiteout(layers: &Layers, capsule: &PathBuf) -> Result<(), c_int> {
    ensure_upper_dir(layers, capsule.parent_bytes())?;
    match sys::create_empty(&layers.whiteout_host(capsule)?, 0o600) {
        Ok(()) | Err(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    super::changed();
    Ok(())
}

/// Removes the whiteout of a name about to be created; true if there was one (the
/// lower name it hid stays hidden only through an opaque directory, if the new name
/// is a directory).
pub fn clear_whiteout(layers: &Layers, capsule: &PathBuf) -> Result<bool, c_int> {
    if layers.upper.is_none() || capsule.is_root() {
        return Ok(false);
    }
    match sys::unlink(&layers.whiteout_host(capsule)?) {
        Ok(()) => {
            super::changed();
            Ok(true)
        }
        Err(libc::ENOENT) | Err(libc::ENOTDIR) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Marks an upper directory opaque: the lower directory's entries stay hidden.
pub fn make_opaque(layers: &Layers, capsule: &PathBuf) -> Result<(), c_int> {
    let mut marker = layers.upper_host(capsule.as_bytes())?;
    marker.push_component(OPAQUE_MARKER)?;
    match sys::create_empty(&marker, 0o600) {
        Ok(()) | Err(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    super::changed();
    Ok(())
}

/// Whether a lower-layer name exists under `node` (hidden or not by the upper one).
pub fn lower_exists(layers: &Layers, node: &Node) -> bool {
    if !node.lower_visible || node.place != super::layers::Place::Overlay {
        return false;
    }
    layers
        .lower_host(node.capsule.as_bytes())
        .map(|p| sys::exists(&p))
        .unwrap_or(false)
}
