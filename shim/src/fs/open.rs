//! Opening a capsule name: the quick paths (a read-only open, a creation in a
//! cached directory) and the long way through `ops::open_into`, for `open` & co.,
//! the stdio streams and `dlopen`.

use std::ffi::CStr;

use libc::{c_char, c_int, c_void, mode_t, FILE};

use super::call::{arg, run_in};
use super::layers::{Layers, Node};
use super::ops;
use super::path::PathBuf;
use crate::hook::set_errno;

/// `open` & co.: the quick paths, then the long way. `real(p, flags)` opens `p`,
/// the caller's path or a host path.
///
/// # Safety
/// `path` is null or a C string (the hooked function's path argument).
pub unsafe fn open_with(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    real: impl Fn(*const c_char, c_int) -> c_int + Copy,
) -> c_int {
    let Some(layers) = super::layers() else {
        return real(path, flags);
    };
    let saved = crate::hook::errno();
    // SAFETY: `path` is null or a C string (this function's contract).
    let name = match unsafe { arg(path) }.and_then(|given| ops::Name::new(layers, dirfd, given)) {
        Ok(name) => name,
        Err(ops::Skip::Pass) => return real(path, flags),
        Err(ops::Skip::Errno(e)) => return crate::hook::fail(e),
    };
    if let Some(fd) = open_optimistic(layers, &name, flags, saved, real) {
        return fd;
    }
    if let Some(fd) = create_optimistic(layers, &name, flags, saved, real) {
        return fd;
    }
    // A quick path that gave up may have failed a system call: the long way starts
    // from the caller's errno (which a successful open leaves as it was).
    set_errno(saved);
    run_in(
        ops::OpenPlan::new,
        |l, plan| ops::open_into(l, &name, flags, plan),
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
    let open = |p: *const c_char, f: c_int| {
        // SAFETY: `p` is `path` or the NUL-terminated host path it resolved to;
        // openat(2) takes it with integer flags and mode.
        unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p, f, mode) as c_int }
    };
    // SAFETY: `path` is a C string (this function's contract).
    unsafe { open_with(libc::AT_FDCWD, path, flags, open) }
}

/// A creation in a cached directory of the upper layer whose lower layer has no such
/// name: whiteouts and lower names do not matter, so the upper layer's answer is the
/// capsule's. Tried with `O_EXCL` (a name that exists there, links included, is
/// `EEXIST`: the answer for an exclusive creation, the long way otherwise). `None`:
/// the long way decides. Saves the walk's `lstat`s and the whiteout check. `saved`:
/// the caller's errno.
fn create_optimistic(
    layers: &Layers,
    name: &ops::Name,
    flags: c_int,
    saved: c_int,
    real: impl Fn(*const c_char, c_int) -> c_int + Copy,
) -> Option<c_int> {
    if flags & libc::O_CREAT == 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        return None;
    }
    let (abs, shape) = (&name.abs, name.shape);
    let mut capsule = PathBuf::new();
    let mut upper = PathBuf::new();
    // In a writable volume's cached directory the kernel's answer is the capsule's,
    // the last name not followed (`ELOOP`: the long way follows it in the capsule).
    if layers.in_cached_volume_into(abs.as_bytes(), shape, &mut capsule, &mut upper)
        == Ok(Some(false))
    {
        let fd = real(upper.as_ptr(), flags | libc::O_EXCL | libc::O_NOFOLLOW);
        if fd >= 0 {
            return Some(created(fd, &upper, saved));
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
        return Some(created(fd, &upper, saved));
    }
    match crate::hook::errno() {
        libc::EEXIST if flags & libc::O_EXCL != 0 => Some(-1),
        _ => None,
    }
}

/// A quick create's file `fd` at host path `upper`: recorded as the capsule's, its
/// owner remembered, errno as the caller had it (`saved`).
fn created(fd: c_int, upper: &PathBuf, saved: c_int) -> c_int {
    super::fds::opened(fd, true, None);
    super::owner::after_create(upper);
    set_errno(saved);
    fd
}

/// A read-only open of a name whose directory the cache knows: opened in the layer
/// that has it at once, with `O_NOFOLLOW` (a link, `ELOOP`, goes the long way so that
/// it is followed inside the capsule). One system call, like the program's own.
/// `None`: not such an open, or the long way is needed. `saved`: the caller's errno.
fn open_optimistic(
    layers: &Layers,
    name: &ops::Name,
    flags: c_int,
    saved: c_int,
    real: impl Fn(*const c_char, c_int) -> c_int + Copy,
) -> Option<c_int> {
    let read_only = flags & libc::O_ACCMODE == libc::O_RDONLY
        && flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_PATH) == 0;
    if !read_only {
        return None;
    }
    let (abs, shape) = (&name.abs, name.shape);
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
///
/// # Safety
/// `stream` is null or an open stream (freopen's contract).
unsafe fn forget_stream(stream: *mut FILE) {
    if !stream.is_null() {
        // SAFETY: a non-null `stream` is an open stream (this function's contract).
        super::fds::closed(unsafe { libc::fileno(stream) });
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

/// fopen and fopen64: `real(p)` opens the host path or, passing, the caller's.
///
/// # Safety
/// `path` and `mode` are null or C strings (fopen's contract).
pub unsafe fn fopen_with(
    path: *const c_char,
    mode: *const c_char,
    real: impl Fn(*const c_char) -> *mut FILE,
) -> *mut FILE {
    run_in(
        ops::OpenPlan::new,
        |l, plan| {
            // SAFETY: `path` is null or a C string (this function's contract).
            let name = ops::Name::new(l, libc::AT_FDCWD, unsafe { arg(path) }?)?;
            ops::open_into(l, &name, fopen_flags(mode), plan)
        },
        |plan, ()| opened_file(real(plan.host.as_ptr()), plan),
        || real(path),
        std::ptr::null_mut(),
    )
}

/// freopen and freopen64: as fopen, on a stream whose descriptor glibc closes.
///
/// # Safety
/// As fopen's, and `stream` is null or an open stream (freopen's contract).
pub unsafe fn freopen_with(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
    real: impl Fn(*const c_char) -> *mut FILE,
) -> *mut FILE {
    // SAFETY: `stream` is null or an open stream (this function's contract).
    unsafe { forget_stream(stream) };
    // SAFETY: `path` and `mode` are null or C strings (this function's contract).
    unsafe { fopen_with(path, mode, real) }
}

/// glibc's fclose closes the descriptor with its internal close, which no hook
/// sees.
///
/// # Safety
/// `file` is null or an open stream (fclose's contract).
pub unsafe fn fclose_with(file: *mut FILE, real: impl FnOnce() -> c_int) -> c_int {
    let fd = if file.is_null() {
        -1
    } else {
        // SAFETY: a non-null `file` is an open stream (this function's contract),
        // not yet closed.
        unsafe { libc::fileno(file) }
    };
    let rc = real();
    super::fds::closed(fd);
    rc
}

/// A library given by path is loaded from the capsule (outside the shim guard: its
/// constructors are the program's code).
///
/// # Safety
/// `path` is null or a C string (dlopen's contract).
pub unsafe fn dlopen_with(
    path: *const c_char,
    real: impl Fn(*const c_char) -> *mut c_void,
) -> *mut c_void {
    if path.is_null() {
        return real(path);
    }
    // SAFETY: a non-null `path` is a C string (this function's contract).
    let name = unsafe { CStr::from_ptr(path) };
    if !name.to_bytes().contains(&b'/') {
        return real(path);
    }
    let mut node = Node::empty();
    match super::layers()
        .map(|l| ops::resolve(l, libc::AT_FDCWD, name, ops::Intent::READ, &mut node))
    {
        Some(Ok(())) => crate::hook::outside(|| real(node.host.as_ptr())),
        _ => crate::hook::outside(|| real(path)),
    }
}
