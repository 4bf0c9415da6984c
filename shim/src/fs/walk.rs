//! glob and nftw/ftw in the capsule. glibc implements them with its internal
//! opendir/readdir/stat, which no hook sees: `glob` is handed the shim's own
//! directory functions through `GLOB_ALTDIRFUNC`, and `nftw`/`ftw` are implemented
//! here on top of the capsule-aware hooks. Both call them (and the program's
//! callbacks) outside the shim guard, so every call they make is virtualised.

use std::ffi::{c_char, c_int, c_void, CStr};

use crate::hook::outside;

/// glibc's `glob_t` (the fields `GLOB_ALTDIRFUNC` uses included).
#[repr(C)]
pub struct Glob {
    pub pathc: usize,
    pub pathv: *mut *mut c_char,
    pub offs: usize,
    pub flags: c_int,
    pub closedir: Option<unsafe extern "C" fn(*mut c_void)>,
    pub readdir: Option<unsafe extern "C" fn(*mut c_void) -> *mut c_void>,
    pub opendir: Option<unsafe extern "C" fn(*const c_char) -> *mut c_void>,
    pub lstat: Option<unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int>,
    pub stat: Option<unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int>,
}

const GLOB_ALTDIRFUNC: c_int = 1 << 9;

unsafe extern "C" fn glob_closedir(dir: *mut c_void) {
    // SAFETY: glob calls this with a stream its own gl_opendir (glob_opendir) gave.
    unsafe {
        super::hooks::closedir(dir.cast());
    }
}

unsafe extern "C" fn glob_readdir(dir: *mut c_void) -> *mut c_void {
    // SAFETY: glob calls this with a stream its own gl_opendir (glob_opendir) gave.
    unsafe { super::hooks::readdir64(dir.cast()).cast() }
}

unsafe extern "C" fn glob_opendir(path: *const c_char) -> *mut c_void {
    // SAFETY: glob passes a C string.
    unsafe { super::hooks::opendir(path).cast() }
}

unsafe extern "C" fn glob_lstat(path: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: glob passes a C string and a stat buffer of its own.
    unsafe { super::hooks::lstat(path, buf.cast()) }
}

unsafe extern "C" fn glob_stat(path: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: glob passes a C string and a stat buffer of its own.
    unsafe { super::hooks::stat(path, buf.cast()) }
}

/// Runs the real glob with the capsule's directory functions (unless the program
/// brought its own).
///
/// # Safety
/// `pglob` is a valid glob_t.
pub unsafe fn glob_with(
    pglob: *mut Glob,
    flags: c_int,
    real: impl FnOnce(c_int) -> c_int,
) -> c_int {
    // SAFETY: `pglob` is null (checked) or a valid glob_t (the `# Safety` contract).
    unsafe {
        if super::layers().is_none() || pglob.is_null() || flags & GLOB_ALTDIRFUNC != 0 {
            return real(flags);
        }
        let g = &mut *pglob;
        g.closedir = Some(glob_closedir);
        g.readdir = Some(glob_readdir);
        g.opendir = Some(glob_opendir);
        g.lstat = Some(glob_lstat);
        g.stat = Some(glob_stat);
        let rc = outside(|| real(flags | GLOB_ALTDIRFUNC));
        // The program did not ask for GLOB_ALTDIRFUNC: do not leave it set for a later
        // GLOB_APPEND call to find.
        (*pglob).flags &= !GLOB_ALTDIRFUNC;
        rc
    }
}

const FTW_F: c_int = 0;
const FTW_D: c_int = 1;
const FTW_DNR: c_int = 2;
const FTW_NS: c_int = 3;
const FTW_SL: c_int = 4;
const FTW_DP: c_int = 5;
const FTW_SLN: c_int = 6;

const FTW_PHYS: c_int = 1;
const FTW_MOUNT: c_int = 2;
const FTW_DEPTH: c_int = 8;
const FTW_ACTIONRETVAL: c_int = 16;

const FTW_CONTINUE: c_int = 0;
const FTW_STOP: c_int = 1;
const FTW_SKIP_SUBTREE: c_int = 2;
const FTW_SKIP_SIBLINGS: c_int = 3;

/// `struct FTW`.
#[repr(C)]
pub struct Ftw {
    pub base: c_int,
    pub level: c_int,
}

/// What a callback says: go on, or stop with this value.
enum Next {
    Continue,
    SkipSubtree,
    SkipSiblings,
    Stop(c_int),
}

struct Walker<'a> {
    flags: c_int,
    device: libc::dev_t,
    visit: &'a mut dyn FnMut(*const c_char, *const libc::stat, c_int, Ftw) -> c_int,
}

impl Walker<'_> {
    fn call(
        &mut self,
        path: &[u8],
        st: &libc::stat,
        kind: c_int,
        base: usize,
        level: c_int,
    ) -> Next {
        let ftw = Ftw {
            base: base as c_int,
            level,
        };
        let rc = outside(|| (self.visit)(path.as_ptr().cast(), st, kind, ftw));
        if self.flags & FTW_ACTIONRETVAL == 0 {
            return if rc == 0 {
                Next::Continue
            } else {
                Next::Stop(rc)
            };
        }
        match rc {
            FTW_CONTINUE => Next::Continue,
            FTW_SKIP_SUBTREE => Next::SkipSubtree,
            FTW_SKIP_SIBLINGS => Next::SkipSiblings,
            FTW_STOP => Next::Stop(FTW_STOP),
            other => Next::Stop(other),
        }
    }

    /// Visits `path` (NUL-terminated in the vector, not counted in its length).
    unsafe fn visit(&mut self, path: &mut Vec<u8>, base: usize, level: c_int) -> Next {
        // SAFETY: `path` is NUL-terminated in the vector (the caller keeps it so), and the
        // program's callback is called with a C string, a stat buffer and an FTW that live
        // through the call.
        unsafe {
            // SAFETY: a zeroed stat is valid.
            let mut st: libc::stat = std::mem::zeroed();
            path.push(0);
            let p = path.as_ptr().cast::<c_char>();
            let stat_ok = if self.flags & FTW_PHYS != 0 {
                super::hooks::lstat(p, &mut st) == 0
            } else {
                super::hooks::stat(p, &mut st) == 0
            };
            let kind = if !stat_ok {
                if self.flags & FTW_PHYS == 0 && super::hooks::lstat(p, &mut st) == 0 {
                    FTW_SLN
                } else {
                    FTW_NS
                }
            } else {
                match st.st_mode & libc::S_IFMT {
                    libc::S_IFDIR => FTW_D,
                    libc::S_IFLNK => FTW_SL,
                    _ => FTW_F,
                }
            };
            if self.flags & FTW_MOUNT != 0 && stat_ok && st.st_dev != self.device {
                path.pop();
                return Next::Continue;
            }
            if kind != FTW_D {
                let next = self.call(path, &st, kind, base, level);
                path.pop();
                return next;
            }
            let dir = super::hooks::opendir(p);
            if dir.is_null() {
                let next = self.call(path, &st, FTW_DNR, base, level);
                path.pop();
                return next;
            }
            if self.flags & FTW_DEPTH == 0 {
                match self.call(path, &st, FTW_D, base, level) {
                    Next::Continue => {}
                    Next::SkipSubtree => {
                        super::hooks::closedir(dir);
                        path.pop();
                        return Next::Continue;
                    }
                    other => {
                        super::hooks::closedir(dir);
                        path.pop();
                        return other;
                    }
                }
            }
            // Read the names first: a deep tree then keeps one directory open at a time.
            let mut names: Vec<Vec<u8>> = Vec::new();
            loop {
                let entry = super::hooks::readdir64(dir);
                if entry.is_null() {
                    break;
                }
                let name = CStr::from_ptr((*entry).d_name.as_ptr()).to_bytes();
                if name != b"." && name != b".." {
                    names.push(name.to_vec());
                }
            }
            super::hooks::closedir(dir);
            path.pop(); // the NUL
            let len = path.len();
            for name in names {
                if !path.ends_with(b"/") {
                    path.push(b'/');
                }
                let child_base = path.len();
                path.extend_from_slice(&name);
                let next = self.visit(path, child_base, level + 1);
                path.truncate(len);
                match next {
                    Next::Continue | Next::SkipSubtree => {}
                    Next::SkipSiblings => break,
                    stop @ Next::Stop(_) => return stop,
                }
            }
            if self.flags & FTW_DEPTH != 0 {
                path.push(0);
                let next = self.call(path, &st, FTW_DP, base, level);
                path.pop();
                return next;
            }
            Next::Continue
        }
    }
}

/// nftw (and ftw, as nftw without FTW_PHYS) over the capsule's file system.
///
/// # Safety
/// `dir` is a C string.
pub unsafe fn nftw_with(
    dir: *const c_char,
    flags: c_int,
    visit: &mut dyn FnMut(*const c_char, *const libc::stat, c_int, Ftw) -> c_int,
) -> c_int {
    // SAFETY: `dir` is a C string (the `# Safety` contract); the walk owns every buffer it
    // hands the program's callback.
    unsafe {
        let start = CStr::from_ptr(dir).to_bytes();
        if start.is_empty() {
            return crate::hook::fail(libc::ENOENT);
        }
        // SAFETY: a zeroed stat is valid.
        let mut st: libc::stat = std::mem::zeroed();
        let follow = flags & FTW_PHYS == 0;
        let rc = if follow {
            super::hooks::stat(dir, &mut st)
        } else {
            super::hooks::lstat(dir, &mut st)
        };
        if rc != 0 && !(follow && super::hooks::lstat(dir, &mut st) == 0) {
            return -1;
        }
        let mut walker = Walker {
            flags,
            device: st.st_dev,
            visit,
        };
        let mut path = start.to_vec();
        let base = match start.iter().rposition(|&b| b == b'/') {
            Some(i) if i + 1 < start.len() => i + 1,
            _ => 0,
        };
        match walker.visit(&mut path, base, 0) {
            Next::Stop(rc) => rc,
            _ => 0,
        }
    }
}

/// The program's nftw callback.
pub type NftwFn =
    Option<unsafe extern "C" fn(*const c_char, *const libc::stat, c_int, *mut Ftw) -> c_int>;
/// The program's ftw callback.
pub type FtwFn = Option<unsafe extern "C" fn(*const c_char, *const libc::stat, c_int) -> c_int>;

/// nftw: walked here (outside the shim guard) when the replica is on; `real` is the
/// real call.
///
/// # Safety
/// As nftw(3): `dir` is a C string and `visit` the program's callback.
pub unsafe fn nftw_in_capsule(
    dir: *const c_char,
    visit: NftwFn,
    flags: c_int,
    real: impl FnOnce() -> c_int,
) -> c_int {
    let (Some(_), Some(visit)) = (super::layers(), visit) else {
        return real();
    };
    // SAFETY: `dir` is a C string (this function's contract); the callback is the
    // program's nftw callback, given what nftw gives it: a C string, a stat and an
    // FTW the walk owns.
    outside(|| unsafe {
        nftw_with(dir, flags, &mut |p, st, kind, mut ftw| {
            visit(p, st, kind, &mut ftw)
        })
    })
}

/// ftw: as nftw without flags.
///
/// # Safety
/// As ftw(3): `dir` is a C string and `visit` the program's callback.
pub unsafe fn ftw_in_capsule(
    dir: *const c_char,
    visit: FtwFn,
    real: impl FnOnce() -> c_int,
) -> c_int {
    let (Some(_), Some(visit)) = (super::layers(), visit) else {
        return real();
    };
    // SAFETY: as in `nftw_in_capsule`, for ftw's callback.
    outside(|| unsafe { nftw_with(dir, 0, &mut |p, st, kind, _| visit(p, st, kind)) })
}
