//! Directory streams in the capsule: opendir gives a merged stream (`dirs`) where
//! both layers hold the directory, readdir & co. serve it, and scandir lists through
//! it (glibc's scandir calls its internal opendir, which no hook sees).

// Transitional (issue 13): the unsafe operations of this file's functions are not
// yet each in a block with its reason.
#![allow(unsafe_op_in_unsafe_fn)]

use libc::{c_char, c_int, c_void, DIR};

use super::call::arg;
use super::dirs;
use super::layers::{Layers, Node};
use super::ops::{self, Skip};
use super::path::PathBuf;
use crate::hook::{set_errno, Real};

/// opendir / fdopendir: a merged stream where both layers hold the directory.
pub unsafe fn open_stream(
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
pub type Dirent = libc::dirent64;

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
    if next.is_null() {
        *result = std::ptr::null_mut();
    } else {
        *entry = *next;
        *result = entry;
    }
    0
}

pub type Filter = Option<unsafe extern "C" fn(*const Dirent) -> c_int>;
pub type Compare = Option<unsafe extern "C" fn(*mut *const Dirent, *mut *const Dirent) -> c_int>;

/// scandir in the capsule: glibc's calls its internal opendir, which no hook sees.
/// The program's callbacks run outside the shim guard, so their libc calls are
/// virtualised too.
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

/// opendir: a merged stream where both layers hold the directory.
pub unsafe fn opendir_with(
    path: *const c_char,
    real: impl Fn(*const c_char) -> *mut DIR,
) -> *mut DIR {
    let Some(layers) = super::layers() else {
        return real(path);
    };
    let mut node = Node::empty();
    match arg(path).and_then(|p| ops::existing_into(layers, libc::AT_FDCWD, p, true, &mut node)) {
        Ok(()) => open_stream(&node, layers, None, |host| real(host.as_ptr())),
        Err(Skip::Pass) => real(path),
        Err(Skip::Errno(e)) => {
            set_errno(e);
            std::ptr::null_mut()
        }
    }
}

/// fdopendir: as opendir, for the capsule directory `fd` is.
pub unsafe fn fdopendir_with(fd: c_int, real: impl FnOnce() -> *mut DIR) -> *mut DIR {
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
pub unsafe fn closedir_with(dir: *mut DIR, real: impl FnOnce() -> c_int) -> c_int {
    let (fd, rc) = match dirs::ours(dir) {
        Some(stream) => (stream.fd, dirs::close(dir)),
        None => (if dir.is_null() { -1 } else { libc::dirfd(dir) }, real()),
    };
    super::fds::closed(fd);
    rc
}
