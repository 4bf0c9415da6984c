//! glibc's `fts_*` in the capsule. glibc walks with its internal opendir and stat,
//! which no hook sees (one layer listed, host paths), so the walk is redone here on
//! top of the capsule-aware hooks, following glibc's own algorithm (preorder `FTS_D`,
//! children, postorder `FTS_DP`; entries freed as the walk moves past them).
//!
//! Differences from glibc, all on the safe side:
//! - the walk never changes directory: every entry's `fts_accpath` is its whole
//!   path, as with `FTS_NOCHDIR` (which programs must accept anyway);
//! - every entry owns its `fts_path` (glibc's point into one shared buffer);
//! - `FTS_XDEV` compares the capsule's mounts (the layers, each volume, `/proc`,
//!   `/dev`, `/sys`), not device numbers, which differ between the layers of one
//!   capsule directory tree.
//!
//! The layouts are glibc's `FTS` and `FTSENT` (the `fts64_*` names use the same ones
//! on 64-bit targets). Everything runs outside the shim guard, so each stat and
//! listing goes through the hooks and the program's comparison function is called
//! as the program's own code.

use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::ptr::{self, null_mut};

use super::hooks;
use crate::hook::{errno, fail, set_errno, Guard};

// FTS_PHYSICAL (0x10) is what the walk does unless FTS_LOGICAL.
const FTS_COMFOLLOW: c_int = 0x0001;
const FTS_LOGICAL: c_int = 0x0002;
const FTS_NOCHDIR: c_int = 0x0004;
const FTS_NOSTAT: c_int = 0x0008;
const FTS_SEEDOT: c_int = 0x0020;
const FTS_XDEV: c_int = 0x0040;
const FTS_OPTIONMASK: c_int = 0x00ff;
const FTS_NAMEONLY: c_int = 0x0100;
const FTS_STOP: c_int = 0x0200;

const FTS_ROOTPARENTLEVEL: i16 = -1;
const FTS_ROOTLEVEL: i16 = 0;

const FTS_D: u16 = 1;
const FTS_DC: u16 = 2;
const FTS_DEFAULT: u16 = 3;
const FTS_DNR: u16 = 4;
const FTS_DOT: u16 = 5;
const FTS_DP: u16 = 6;
const FTS_ERR: u16 = 7;
const FTS_F: u16 = 8;
const FTS_INIT: u16 = 9;
const FTS_NS: u16 = 10;
const FTS_NSOK: u16 = 11;
const FTS_SL: u16 = 12;
const FTS_SLNONE: u16 = 13;

const FTS_AGAIN: c_int = 1;
const FTS_FOLLOW: c_int = 2;
const FTS_NOINSTR: c_int = 3;
const FTS_SKIP: c_int = 4;

pub type Compar = unsafe extern "C" fn(*const *const Ent, *const *const Ent) -> c_int;

/// glibc's `FTSENT` (the program reads the fields the shim does not).
#[repr(C)]
#[allow(dead_code)]
pub struct Ent {
    cycle: *mut Ent,
    parent: *mut Ent,
    link: *mut Ent,
    number: c_long,
    pointer: *mut c_void,
    accpath: *mut c_char,
    path: *mut c_char,
    errno: c_int,
    symfd: c_int,
    pathlen: u16,
    namelen: u16,
    ino: libc::ino_t,
    dev: libc::dev_t,
    nlink: libc::nlink_t,
    level: i16,
    info: u16,
    flags: u16,
    instr: u16,
    statp: *mut libc::stat,
    name: [c_char; 1],
}

/// glibc's `FTS`, followed by what only the shim uses.
#[repr(C)]
#[allow(dead_code)]
pub struct Fts {
    cur: *mut Ent,
    child: *mut Ent,
    array: *mut *mut Ent,
    dev: libc::dev_t,
    path: *mut c_char,
    rfd: c_int,
    pathlen: c_int,
    nitems: c_int,
    compar: Option<Compar>,
    options: c_int,
    /// The capsule mount the current root lies on (`FTS_XDEV`).
    root_mount: u64,
}

/// How `build` reads a directory.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Build {
    /// For `fts_read`: children stat'ed; failures mark the directory.
    Read,
    /// For `fts_children`.
    Child,
    /// For `fts_children(FTS_NAMEONLY)`: names only.
    Names,
}

fn round8(n: usize) -> usize {
    (n + 7) & !7
}

/// A new entry named `name` at `path`, in one zeroed allocation: the entry, its
/// name, its path and its stat buffer. Null when out of memory.
unsafe fn alloc(name: &[u8], path: &[u8]) -> *mut Ent {
    // SAFETY: one zeroed allocation sized for the entry, its name, its path and its stat
    // buffer (rounded to 8); every pointer made and written here stays inside it.
    unsafe {
        let name_at = std::mem::offset_of!(Ent, name);
        let path_at = round8(name_at + name.len() + 1).max(std::mem::size_of::<Ent>());
        let stat_at = round8(path_at + path.len() + 1);
        let size = stat_at + std::mem::size_of::<libc::stat>();
        let base = libc::calloc(1, size) as *mut u8;
        if base.is_null() {
            return null_mut();
        }
        let p = base as *mut Ent;
        ptr::copy_nonoverlapping(name.as_ptr(), base.add(name_at), name.len());
        ptr::copy_nonoverlapping(path.as_ptr(), base.add(path_at), path.len());
        (*p).namelen = name.len().min(u16::MAX as usize) as u16;
        (*p).pathlen = path.len().min(u16::MAX as usize) as u16;
        (*p).path = base.add(path_at).cast();
        (*p).accpath = (*p).path;
        (*p).statp = base.add(stat_at).cast();
        (*p).instr = FTS_NOINSTR as u16;
        (*p).symfd = -1;
        p
    }
}

unsafe fn path_of<'a>(p: *const Ent) -> &'a [u8] {
    // SAFETY: `p` is a live entry made by `alloc`, whose path is NUL-terminated inside it.
    unsafe { CStr::from_ptr((*p).path).to_bytes() }
}

unsafe fn name_of<'a>(p: *const Ent) -> &'a [u8] {
    // SAFETY: `p` is a live entry made by `alloc`, whose name is NUL-terminated inside it.
    unsafe { CStr::from_ptr((*p).name.as_ptr()).to_bytes() }
}

/// Frees a list linked through `fts_link`.
unsafe fn free_list(mut p: *mut Ent) {
    // SAFETY: the list holds live entries made by `alloc`, linked by `link`; each is freed
    // once.
    unsafe {
        while !p.is_null() {
            let next = (*p).link;
            libc::free(p.cast());
            p = next;
        }
    }
}

/// The capsule mount `path` lies on: 0 for the layers (one file system for the
/// capsule, whatever devices its layers are on), else the host's device number of a
/// volume or a host file system seen through (`/proc`, `/dev`, `/sys`), whose own
/// mounts stay apart.
fn mount_of(path: &[u8]) -> u64 {
    let Some(layers) = super::layers() else {
        return 0;
    };
    let Some(_guard) = Guard::enter() else {
        return 0;
    };
    let mut buf = [0u8; super::path::PATH_MAX];
    if path.len() >= buf.len() {
        return 0;
    }
    buf[..path.len()].copy_from_slice(path);
    let Ok(text) = CStr::from_bytes_until_nul(&buf) else {
        return 0;
    };
    match super::ops::lookup(layers, libc::AT_FDCWD, text, true) {
        Ok(node) if node.place != super::layers::Place::Overlay => (1 << 63) | node.stat.st_dev,
        _ => 0,
    }
}

/// `fts_stat`: fills the entry's stat buffer and returns its `fts_info`.
unsafe fn stat(p: *mut Ent, follow: bool) -> u16 {
    // SAFETY: `p` is a live entry made by `alloc`: its path is NUL-terminated and `statp`
    // points at its own stat buffer.
    unsafe {
        let sbp = (*p).statp;
        // A failed stat is the entry's errno, not the caller's: the caller's comes back.
        let saved = errno();
        let failed = if follow {
            if hooks::stat((*p).accpath, sbp) != 0 {
                let e = errno();
                if e == libc::ENOENT && hooks::lstat((*p).accpath, sbp) == 0 {
                    set_errno(saved);
                    return FTS_SLNONE;
                }
                Some(e)
            } else {
                None
            }
        } else if hooks::lstat((*p).accpath, sbp) != 0 {
            Some(errno())
        } else {
            None
        };
        if let Some(e) = failed {
            (*p).errno = e;
            ptr::write_bytes(sbp, 0, 1);
            return FTS_NS;
        }
        set_errno(saved);
        let st = &*sbp;
        (*p).dev = st.st_dev;
        (*p).ino = st.st_ino;
        (*p).nlink = st.st_nlink;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                let name = name_of(p);
                if name == b"." || name == b".." {
                    return FTS_DOT;
                }
                // A directory that is its own ancestor makes a cycle.
                let mut t = (*p).parent;
                while !t.is_null() && (*t).level >= FTS_ROOTLEVEL {
                    if (*t).ino == st.st_ino && (*t).dev == st.st_dev {
                        (*p).cycle = t;
                        return FTS_DC;
                    }
                    t = (*t).parent;
                }
                FTS_D
            }
            libc::S_IFLNK => FTS_SL,
            libc::S_IFREG => FTS_F,
            _ => FTS_DEFAULT,
        }
    }
}

/// Sorts a list with the program's comparison function (`qsort`, as glibc does: a
/// comparison that is not a total order must not abort the program).
unsafe fn sort(compar: Compar, head: *mut Ent, n: usize) -> *mut Ent {
    // SAFETY: `head` starts a list of `n` live entries; the array holds `n` pointers;
    // `compar` is the program's comparison function, called with two pointers into that
    // array as fts_open promises.
    unsafe {
        let mut array: Vec<*mut Ent> = Vec::with_capacity(n);
        let mut p = head;
        while !p.is_null() {
            array.push(p);
            p = (*p).link;
        }
        // SAFETY (transmute): qsort hands the comparison pointers to the elements,
        // which are `FTSENT *`: the `const FTSENT **` arguments fts comparisons take.
        libc::qsort(
            array.as_mut_ptr().cast(),
            array.len(),
            std::mem::size_of::<*mut Ent>(),
            Some(std::mem::transmute::<
                Compar,
                unsafe extern "C" fn(*const c_void, *const c_void) -> c_int,
            >(compar)),
        );
        for pair in array.windows(2) {
            (*pair[0]).link = pair[1];
        }
        if let Some(&last) = array.last() {
            (*last).link = null_mut();
        }
        array.first().copied().unwrap_or(null_mut())
    }
}

/// `fts_open`.
///
/// # Safety
/// `argv` is a NULL-terminated array of C strings.
pub unsafe fn open(argv: *const *const c_char, options: c_int, compar: Option<Compar>) -> *mut Fts {
    // SAFETY: `argv` is the program's NULL-terminated array of C strings (fts_open's
    // contract); every entry and the FTS are allocated here.
    unsafe {
        if options & !FTS_OPTIONMASK != 0 || argv.is_null() {
            return fail(libc::EINVAL);
        }
        let sp = libc::calloc(1, std::mem::size_of::<Fts>()) as *mut Fts;
        if sp.is_null() {
            return null_mut();
        }
        (*sp).compar = compar;
        (*sp).options = options | FTS_NOCHDIR;
        (*sp).rfd = -1;
        let parent = alloc(b"", b"");
        if parent.is_null() {
            libc::free(sp.cast());
            return null_mut();
        }
        (*parent).level = FTS_ROOTPARENTLEVEL;
        let follow = options & (FTS_COMFOLLOW | FTS_LOGICAL) != 0;
        let (mut head, mut tail, mut n): (*mut Ent, *mut Ent, usize) = (null_mut(), null_mut(), 0);
        let mut arg = argv;
        while !(*arg).is_null() {
            let name = CStr::from_ptr(*arg).to_bytes();
            if name.is_empty() {
                free_list(head);
                libc::free(parent.cast());
                libc::free(sp.cast());
                return fail(libc::ENOENT);
            }
            let p = alloc(name, name);
            if p.is_null() {
                free_list(head);
                libc::free(parent.cast());
                libc::free(sp.cast());
                return null_mut();
            }
            (*p).level = FTS_ROOTLEVEL;
            (*p).parent = parent;
            (*p).info = stat(p, follow);
            // A root of "." or ".." is a directory like any other.
            if (*p).info == FTS_DOT {
                (*p).info = FTS_D;
            }
            if tail.is_null() {
                head = p;
            } else {
                (*tail).link = p;
            }
            tail = p;
            n += 1;
            arg = arg.add(1);
        }
        if let (Some(compar), true) = (compar, n > 1) {
            head = sort(compar, head, n);
        }
        // A dummy current node "just finished" before the roots.
        let dummy = alloc(b"", b"");
        if dummy.is_null() {
            free_list(head);
            libc::free(parent.cast());
            libc::free(sp.cast());
            return null_mut();
        }
        (*dummy).link = head;
        (*dummy).level = FTS_ROOTLEVEL;
        (*dummy).parent = parent;
        (*dummy).info = FTS_INIT;
        (*sp).cur = dummy;
        sp
    }
}

/// Makes root `p` the current one (`fts_load`).
unsafe fn load(sp: *mut Fts, p: *mut Ent) {
    // SAFETY: `sp` is an FTS made by `open` and every entry reached from it was made by
    // `alloc` and is still live (fts's contract: the program hands back what fts gave it,
    // until fts_close).
    unsafe {
        // A root's name becomes its last component ("/" stays "/"), as in glibc.
        let name = name_of(p);
        if let Some(slash) = name.iter().rposition(|&b| b == b'/') {
            if slash != 0 || name.len() > 1 {
                let len = name.len() - slash - 1;
                let start = (*p).name.as_mut_ptr();
                ptr::copy(start.add(slash + 1), start, len);
                *start.add(len) = 0;
                (*p).namelen = len as u16;
            }
        }
        (*sp).dev = (*p).dev;
        (*sp).path = (*p).path;
        (*sp).pathlen = c_int::from((*p).pathlen);
        if (*sp).options & FTS_XDEV != 0 {
            (*sp).root_mount = mount_of(path_of(p));
        }
    }
}

/// `fts_read`.
///
/// # Safety
/// `sp` came from [`open`] and was not closed.
pub unsafe fn read(sp: *mut Fts) -> *mut Ent {
    // SAFETY: `sp` is an FTS made by `open` and every entry reached from it was made by
    // `alloc` and is still live (fts's contract: the program hands back what fts gave it,
    // until fts_close).
    unsafe {
        if sp.is_null() || (*sp).cur.is_null() || (*sp).options & FTS_STOP != 0 {
            return null_mut();
        }
        let mut p = (*sp).cur;
        let instr = c_int::from((*p).instr);
        (*p).instr = FTS_NOINSTR as u16;

        if instr == FTS_AGAIN {
            (*p).info = stat(p, false);
            return p;
        }
        if instr == FTS_FOLLOW && ((*p).info == FTS_SL || (*p).info == FTS_SLNONE) {
            (*p).info = stat(p, true);
            return p;
        }
        if (*p).info == FTS_D {
            let crosses = (*sp).options & FTS_XDEV != 0
                && (*p).level > FTS_ROOTLEVEL
                && mount_of(path_of(p)) != (*sp).root_mount;
            if instr == FTS_SKIP || crosses {
                free_list((*sp).child);
                (*sp).child = null_mut();
                (*p).info = FTS_DP;
                return p;
            }
            if !(*sp).child.is_null() && (*sp).options & FTS_NAMEONLY != 0 {
                (*sp).options &= !FTS_NAMEONLY;
                free_list((*sp).child);
                (*sp).child = null_mut();
            }
            if (*sp).child.is_null() {
                (*sp).child = build(sp, Build::Read);
                if (*sp).child.is_null() {
                    if (*sp).options & FTS_STOP != 0 {
                        return null_mut();
                    }
                    return p;
                }
            }
            p = (*sp).child;
            (*sp).child = null_mut();
            (*sp).cur = p;
            (*sp).path = (*p).path;
            return p;
        }

        // The next node on this level.
        loop {
            let tmp = p;
            p = (*p).link;
            if p.is_null() {
                p = tmp;
                break;
            }
            (*sp).cur = p;
            libc::free(tmp.cast());
            if (*p).level == FTS_ROOTLEVEL {
                load(sp, p);
                return p;
            }
            if c_int::from((*p).instr) == FTS_SKIP {
                continue;
            }
            if c_int::from((*p).instr) == FTS_FOLLOW {
                (*p).info = stat(p, true);
                (*p).instr = FTS_NOINSTR as u16;
            }
            (*sp).path = (*p).path;
            return p;
        }

        // Up to the parent.
        let tmp = p;
        p = (*tmp).parent;
        (*sp).cur = p;
        libc::free(tmp.cast());
        if (*p).level == FTS_ROOTPARENTLEVEL {
            libc::free(p.cast());
            set_errno(0); // the end of the walk, not a failure (fts_read(3))
            (*sp).cur = null_mut();
            (*sp).path = null_mut();
            return null_mut();
        }
        (*p).info = if (*p).errno != 0 { FTS_ERR } else { FTS_DP };
        (*sp).path = (*p).path;
        p
    }
}

/// Reads the children of the current directory (`fts_build`).
unsafe fn build(sp: *mut Fts, how: Build) -> *mut Ent {
    // SAFETY: `sp` is an FTS made by `open` and every entry reached from it was made by
    // `alloc` and is still live (fts's contract: the program hands back what fts gave it,
    // until fts_close).
    unsafe {
        let cur = (*sp).cur;
        let dir = hooks::opendir((*cur).accpath);
        if dir.is_null() {
            if how == Build::Read {
                (*cur).info = FTS_DNR;
                (*cur).errno = errno();
            }
            return null_mut();
        }
        let options = (*sp).options;
        let logical = options & FTS_LOGICAL != 0;
        let base = path_of(cur);
        // "/" + name, not "//" + name.
        let base = base.strip_suffix(b"/").unwrap_or(base);
        let mut path = [0u8; super::path::PATH_MAX];
        let (mut head, mut tail, mut n): (*mut Ent, *mut Ent, usize) = (null_mut(), null_mut(), 0);
        // errno 0 tells readdir's end from its failure; the caller's errno comes back.
        let saved = errno();
        set_errno(0);
        loop {
            let d = hooks::readdir64(dir);
            if d.is_null() {
                break;
            }
            let name = CStr::from_ptr((*d).d_name.as_ptr()).to_bytes();
            if options & FTS_SEEDOT == 0 && (name == b"." || name == b"..") {
                continue;
            }
            let len = base.len() + 1 + name.len();
            if len >= path.len() {
                (*cur).errno = libc::ENAMETOOLONG;
                continue;
            }
            path[..base.len()].copy_from_slice(base);
            path[base.len()] = b'/';
            path[base.len() + 1..len].copy_from_slice(name);
            let p = alloc(name, &path[..len]);
            if p.is_null() {
                free_list(head);
                hooks::closedir(dir);
                (*cur).info = FTS_ERR;
                (*sp).options |= FTS_STOP;
                return fail(libc::ENOMEM);
            }
            (*p).level = (*cur).level + 1;
            (*p).parent = cur;
            let d_type = (*d).d_type;
            let nostat = how == Build::Names
                || options & FTS_NOSTAT != 0
                    && d_type != libc::DT_DIR
                    && d_type != libc::DT_UNKNOWN;
            (*p).info = if nostat { FTS_NSOK } else { stat(p, logical) };
            if tail.is_null() {
                head = p;
            } else {
                (*tail).link = p;
            }
            tail = p;
            n += 1;
            set_errno(0);
        }
        let read_error = errno();
        hooks::closedir(dir);
        if read_error != 0 && how == Build::Read {
            (*cur).errno = read_error;
        }
        set_errno(saved);
        if n == 0 {
            if how == Build::Read {
                (*cur).info = FTS_DP;
            }
            return null_mut();
        }
        match (*sp).compar {
            Some(compar) if n > 1 => sort(compar, head, n),
            _ => head,
        }
    }
}

/// `fts_children`.
///
/// # Safety
/// `sp` came from [`open`] and was not closed.
pub unsafe fn children(sp: *mut Fts, instr: c_int) -> *mut Ent {
    // SAFETY: `sp` is an FTS made by `open` and every entry reached from it was made by
    // `alloc` and is still live (fts's contract: the program hands back what fts gave it,
    // until fts_close).
    unsafe {
        if instr != 0 && instr != FTS_NAMEONLY {
            return fail(libc::EINVAL);
        }
        if sp.is_null() || (*sp).cur.is_null() {
            set_errno(0); // no children, not a failure (fts_children(3))
            return null_mut();
        }
        let p = (*sp).cur;
        set_errno(0); // as above: a null answer from here on is "no children"
        if (*sp).options & FTS_STOP != 0 {
            return null_mut();
        }
        if (*p).info == FTS_INIT {
            return (*p).link;
        }
        if (*p).info != FTS_D {
            return null_mut();
        }
        free_list((*sp).child);
        (*sp).child = null_mut();
        let how = if instr == FTS_NAMEONLY {
            (*sp).options |= FTS_NAMEONLY;
            Build::Names
        } else {
            Build::Child
        };
        (*sp).child = build(sp, how);
        (*sp).child
    }
}

/// `fts_set`.
///
/// # Safety
/// `p` is an entry of a live walk.
pub unsafe fn set(p: *mut Ent, instr: c_int) -> c_int {
    // SAFETY: `sp` is an FTS made by `open` and every entry reached from it was made by
    // `alloc` and is still live (fts's contract: the program hands back what fts gave it,
    // until fts_close).
    unsafe {
        if !matches!(instr, 0 | FTS_AGAIN | FTS_FOLLOW | FTS_NOINSTR | FTS_SKIP) || p.is_null() {
            // fts_set's own convention: 1 and errno.
            set_errno(libc::EINVAL);
            return 1;
        }
        (*p).instr = instr as u16;
        0
    }
}

/// `fts_close`.
///
/// # Safety
/// `sp` came from [`open`] and was not closed.
pub unsafe fn close(sp: *mut Fts) -> c_int {
    // SAFETY: `sp` is an FTS made by `open` and every entry reached from it was made by
    // `alloc` and is still live (fts's contract: the program hands back what fts gave it,
    // until fts_close).
    unsafe {
        if sp.is_null() {
            return 0;
        }
        // The current node, its later siblings and its ancestors are all that remain.
        let mut p = (*sp).cur;
        if !p.is_null() {
            while (*p).level >= FTS_ROOTLEVEL {
                let freep = p;
                p = if !(*p).link.is_null() {
                    (*p).link
                } else {
                    (*p).parent
                };
                libc::free(freep.cast());
            }
            libc::free(p.cast());
        }
        free_list((*sp).child);
        libc::free(sp.cast());
        0
    }
}
