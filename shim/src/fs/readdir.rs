//! Directory streams in the capsule: opendir gives a merged stream (`dirs`) where
//! both layers hold the directory, readdir & co. serve it, and scandir lists through
//! it (glibc's scandir calls its internal opendir, which no hook sees).

use libc::{c_char, c_int, c_void, DIR};

use super::call::arg;
use super::dirs;
use super::layers::{Layers, Node};
use super::ops::{self, Skip};
use super::path::PathBuf;
use crate::hook::{fail, Real};

/// opendir / fdopendir: a merged stream where both layers hold the directory.
pub fn open_stream(
    node: &Node,
    layers: &Layers,
    fd: Option<c_int>,
    real: impl FnOnce(&PathBuf) -> *mut DIR,
) -> *mut DIR {
    if !node.is_dir() {
        return fail(libc::ENOTDIR);
    }
    let entries = match dirs::merged(layers, node) {
        Ok(Some(entries)) => entries,
        Ok(None) => return real(&node.host),
        Err(e) => {
            return fail(e);
        }
    };
    let (fd, ours) = match fd {
        Some(fd) => (fd, false),
        None => match super::sys::open_dir(&node.host) {
            Ok(fd) => (fd, true),
            Err(e) => {
                return fail(e);
            }
        },
    };
    let dir = dirs::open_merged(fd, entries);
    if dir.is_null() {
        // Never the raw upper directory (it would show the layers' markers): the
        // process has as many merged streams open as the shim can serve.
        log::warn!("too many merged directory streams open; EMFILE");
        if ours {
            // SAFETY: `fd` is the descriptor `open_dir` just gave us, ours to close.
            unsafe { libc::close(fd) };
        }
        return fail(libc::EMFILE);
    }
    dir
}

/// glibc's `struct dirent` and `struct dirent64` share a layout on 64-bit Linux.
pub type Dirent = libc::dirent64;

static REAL_READDIR64: Real = Real::new();

/// The next entry of a stream, ours or glibc's.
///
/// # Safety
/// `dir` is an open stream, ours or glibc's.
unsafe fn next_entry(dir: *mut DIR) -> *mut Dirent {
    if let Some(stream) = dirs::ours(dir) {
        return stream.next();
    }
    match REAL_READDIR64.get(c"readdir64") {
        Some(f) => {
            // SAFETY: the symbol dlsym found for readdir64 has this signature.
            let readdir64 = unsafe {
                std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut DIR) -> *mut Dirent>(f)
            };
            // SAFETY: `dir` is an open glibc stream (this function's contract).
            unsafe { readdir64(dir) }
        }
        None => std::ptr::null_mut(),
    }
}

/// readdir_r & co. of one of our merged streams; glibc's streams go to `real`.
///
/// # Safety
/// `entry` and `result` are the caller's writable `struct dirent` and pointer
/// (readdir_r's contract).
pub unsafe fn readdir_r_with(
    dir: *mut DIR,
    entry: *mut Dirent,
    result: *mut *mut Dirent,
    real: impl Fn() -> c_int + Copy,
) -> c_int {
    let Some(stream) = dirs::ours(dir) else {
        return real();
    };
    let next = stream.next();
    // SAFETY: `entry` and `result` are writable (this function's contract); a
    // non-null `next` is an entry of our stream's own array.
    unsafe {
        if next.is_null() {
            *result = std::ptr::null_mut();
        } else {
            *entry = *next;
            *result = entry;
        }
    }
    0
}

pub type Filter = Option<unsafe extern "C" fn(*const Dirent) -> c_int>;
pub type Compare = Option<unsafe extern "C" fn(*mut *const Dirent, *mut *const Dirent) -> c_int>;

/// scandir in the capsule: glibc's calls its internal opendir, which no hook sees.
/// The program's callbacks run outside the shim guard, so their libc calls are
/// virtualised too.
///
/// # Safety
/// As scandir(3): `path` is null or a C string, `list` writable, the callbacks the
/// program's own for `struct dirent` pointers.
pub unsafe fn scandir_with(
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
    // SAFETY: `path` is null or a C string (this function's contract).
    let path = unsafe { arg(path) };
    match path.and_then(|p| ops::resolve(layers, libc::AT_FDCWD, p, ops::Intent::READ, &mut node)) {
        Ok(()) => {}
        Err(Skip::Pass) => return real(),
        Err(Skip::Errno(e)) => {
            return fail(e);
        }
    };
    // SAFETY: `host` is a NUL-terminated PathBuf.
    let dir = open_stream(&node, layers, None, |host| unsafe {
        libc::opendir(host.as_ptr())
    });
    if dir.is_null() {
        return -1;
    }
    let mut out: Vec<*mut Dirent> = Vec::new();
    loop {
        // SAFETY: `dir` is the stream opened above, not yet closed.
        let entry = unsafe { next_entry(dir) };
        if entry.is_null() {
            break;
        }
        if let Some(keep) = filter {
            // SAFETY: the program's filter, given an entry of the stream as
            // scandir(3) gives it.
            if crate::hook::outside(|| unsafe { keep(entry) }) == 0 {
                continue;
            }
        }
        // SAFETY: malloc of a dirent's size; null is checked.
        let copy = unsafe { libc::malloc(std::mem::size_of::<Dirent>()) } as *mut Dirent;
        if copy.is_null() {
            break;
        }
        // SAFETY: `copy` is a fresh allocation of a dirent's size and `entry` the
        // stream's current entry, valid until the next read.
        unsafe { *copy = *entry };
        out.push(copy);
    }
    if dirs::ours(dir).is_some() {
        dirs::close(dir);
    } else {
        // SAFETY: `dir` is the glibc stream opened above, closed once.
        unsafe { libc::closedir(dir) };
    }
    if let Some(cmp) = compare {
        // qsort, as glibc's scandir: a comparator that is not a total order gives
        // some order, where Rust's sort may panic (and abort the program).
        // SAFETY: the comparator takes pointers to the array's elements, which is
        // what qsort passes; the elements are valid dirent pointers.
        let cmp: unsafe extern "C" fn(*const c_void, *const c_void) -> c_int =
            unsafe { std::mem::transmute(cmp) };
        let (base, len) = (out.as_mut_ptr(), out.len());
        // SAFETY: `base` is our vector's buffer of `len` dirent pointers, which
        // nothing else touches while qsort runs.
        crate::hook::outside(|| unsafe {
            libc::qsort(
                base.cast(),
                len,
                std::mem::size_of::<*mut Dirent>(),
                Some(cmp),
            )
        });
    }
    let size = out.len().max(1) * std::mem::size_of::<*mut Dirent>();
    // SAFETY: malloc of `size` bytes; null is checked.
    let array = unsafe { libc::malloc(size) } as *mut *mut Dirent;
    if array.is_null() {
        for p in out {
            // SAFETY: each `p` is a copy malloc'd above, freed once.
            unsafe { libc::free(p.cast()) };
        }
        return fail(libc::ENOMEM);
    }
    // SAFETY: `array` holds at least `out.len()` pointers (allocated above), and
    // `list` is the caller's writable pointer (this function's contract).
    unsafe {
        std::ptr::copy_nonoverlapping(out.as_ptr(), array, out.len());
        *list = array;
    }
    out.len() as c_int
}

/// opendir: a merged stream where both layers hold the directory.
///
/// # Safety
/// `path` is null or a C string (opendir's contract).
pub unsafe fn opendir_with(
    path: *const c_char,
    real: impl Fn(*const c_char) -> *mut DIR,
) -> *mut DIR {
    let Some(layers) = super::layers() else {
        return real(path);
    };
    let mut node = Node::empty();
    // SAFETY: `path` is null or a C string (this function's contract).
    let name = unsafe { arg(path) };
    match name.and_then(|p| ops::resolve(layers, libc::AT_FDCWD, p, ops::Intent::READ, &mut node)) {
        Ok(()) => open_stream(&node, layers, None, |host| real(host.as_ptr())),
        Err(Skip::Pass) => real(path),
        Err(Skip::Errno(e)) => fail(e),
    }
}

/// fdopendir: as opendir, for the capsule directory `fd` is.
pub fn fdopendir_with(fd: c_int, real: impl FnOnce() -> *mut DIR) -> *mut DIR {
    let Some(layers) = super::layers() else {
        return real();
    };
    let mut node = Node::empty();
    match ops::fd_path(layers, fd) {
        Ok(Some(capsule)) => match layers.resolve_into(capsule.as_bytes(), true, &mut node) {
            Ok(()) if node.exists() => {}
            _ => return real(),
        },
        _ => return real(),
    };
    open_stream(&node, layers, Some(fd), |_| real())
}

/// closedir: either way the descriptor is closed inside libc or the shim.
///
/// # Safety
/// `dir` is null or an open stream (closedir's contract).
pub unsafe fn closedir_with(dir: *mut DIR, real: impl FnOnce() -> c_int) -> c_int {
    let (fd, rc) = match dirs::ours(dir) {
        Some(stream) => (stream.fd, dirs::close(dir)),
        None if dir.is_null() => (-1, real()),
        // SAFETY: a non-null `dir` is an open glibc stream (this function's
        // contract), still open until `real` closes it.
        None => (unsafe { libc::dirfd(dir) }, real()),
    };
    super::fds::closed(fd);
    rc
}
