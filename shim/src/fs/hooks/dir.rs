//! Listing directories: streams (merged where both layers hold the directory),
//! scandir, glob, nftw/ftw and fts, all over the capsule's names (the logic is
//! `fs::readdir`, `fs::walk` and `fs::fts`).

use libc::{c_char, c_int, c_long, DIR};

use crate::fs::call::when_on;
use crate::fs::readdir::{
    closedir_with, fdopendir_with, opendir_with, readdir_r_with, scandir_with, Compare, Dirent,
    Filter,
};
use crate::fs::walk::{self, FtwFn, NftwFn};
use crate::fs::{dirs, fts};
use crate::hook::outside;

type GlobErr = Option<unsafe extern "C" fn(*const c_char, c_int) -> c_int>;

/// The fts family's limits.
const FTS: crate::coverage::Support =
    crate::coverage::Support::Partial("never changes directory: fts_accpath is the whole path, as with FTS_NOCHDIR; FTS_XDEV counts the layers, each volume and /proc, /dev, /sys as the mounts");

/// The limits of opendir and fdopendir.
const MERGED_STREAM: crate::coverage::Support =
    crate::coverage::Support::Partial("a directory in both layers is read once, when opened; at most 16384 such streams open per process, then EMFILE");

hook! {
    fn glob(pattern: *const c_char, flags: c_int, errfunc: GlobErr, pglob: *mut crate::fs::walk::Glob) -> c_int, missing: -1;
    // SAFETY: `pattern` is a C string, `errfunc` the program's callback and `pglob` the
    // caller's writable glob_t (glob(3)): `glob_with`'s contract; `real` gets them unchanged.
    |real| unsafe { crate::fs::walk::glob_with(pglob, flags, |f| real(pattern, f, errfunc, pglob)) }

    fn glob64(pattern: *const c_char, flags: c_int, errfunc: GlobErr, pglob: *mut crate::fs::walk::Glob) -> c_int, missing: -1;
    // SAFETY: `pattern` is a C string, `errfunc` the program's callback and `pglob` the
    // caller's writable glob_t (glob(3)): `glob_with`'s contract; `real` gets them unchanged.
    |real| unsafe { crate::fs::walk::glob_with(pglob, flags, |f| real(pattern, f, errfunc, pglob)) }

    fn nftw(dir: *const c_char, visit: NftwFn, nopenfd: c_int, flags: c_int) -> c_int, missing: -1, support: Partial("FTW_CHDIR is not honoured");
    // SAFETY: `dir` is a C string and `visit` the program's callback (nftw(3)):
    // `nftw_in_capsule`'s contract; `real` gets them unchanged.
    |real| unsafe { walk::nftw_in_capsule(dir, visit, flags, || real(dir, visit, nopenfd, flags)) }

    fn nftw64(dir: *const c_char, visit: NftwFn, nopenfd: c_int, flags: c_int) -> c_int, missing: -1, support: Partial("FTW_CHDIR is not honoured");
    // SAFETY: `dir` is a C string and `visit` the program's callback (nftw(3)):
    // `nftw_in_capsule`'s contract; `real` gets them unchanged.
    |real| unsafe { walk::nftw_in_capsule(dir, visit, flags, || real(dir, visit, nopenfd, flags)) }

    fn ftw(dir: *const c_char, visit: FtwFn, nopenfd: c_int) -> c_int, missing: -1;
    // SAFETY: `dir` is a C string and `visit` the program's callback (ftw(3)):
    // `ftw_in_capsule`'s contract; `real` gets them unchanged.
    |real| unsafe { walk::ftw_in_capsule(dir, visit, || real(dir, visit, nopenfd)) }

    fn ftw64(dir: *const c_char, visit: FtwFn, nopenfd: c_int) -> c_int, missing: -1;
    // SAFETY: `dir` is a C string and `visit` the program's callback (ftw(3)):
    // `ftw_in_capsule`'s contract; `real` gets them unchanged.
    |real| unsafe { walk::ftw_in_capsule(dir, visit, || real(dir, visit, nopenfd)) }

    fn fts_open(argv: *const *const c_char, options: c_int, compar: Option<crate::fs::fts::Compar>) -> *mut crate::fs::fts::Fts, missing: std::ptr::null_mut(), support: FTS;
    // SAFETY: `argv` is a null-terminated array of C strings and `compar` the program's
    // comparator (fts_open(3)): `fts::open`'s contract; `real` gets them unchanged.
    |real| unsafe { when_on(|| outside(|| fts::open(argv, options, compar)), || real(argv, options, compar)) }

    fn fts64_open(argv: *const *const c_char, options: c_int, compar: Option<crate::fs::fts::Compar>) -> *mut crate::fs::fts::Fts, missing: std::ptr::null_mut(), support: FTS;
    // SAFETY: `argv` is a null-terminated array of C strings and `compar` the program's
    // comparator (fts_open(3)): `fts::open`'s contract; `real` gets them unchanged.
    |real| unsafe { when_on(|| outside(|| fts::open(argv, options, compar)), || real(argv, options, compar)) }

    fn fts_read(sp: *mut crate::fs::fts::Fts) -> *mut crate::fs::fts::Ent, missing: std::ptr::null_mut(), support: FTS;
    // SAFETY: `sp` is a stream fts_open gave (fts(3)): the shim's when the replica is on,
    // since it is on or off for the whole process, glibc's otherwise, for `real` unchanged.
    |real| unsafe { when_on(|| outside(|| fts::read(sp)), || real(sp)) }

    fn fts64_read(sp: *mut crate::fs::fts::Fts) -> *mut crate::fs::fts::Ent, missing: std::ptr::null_mut(), support: FTS;
    // SAFETY: `sp` is a stream fts_open gave (fts(3)): the shim's when the replica is on,
    // since it is on or off for the whole process, glibc's otherwise, for `real` unchanged.
    |real| unsafe { when_on(|| outside(|| fts::read(sp)), || real(sp)) }

    fn fts_children(sp: *mut crate::fs::fts::Fts, instr: c_int) -> *mut crate::fs::fts::Ent, missing: std::ptr::null_mut(), support: FTS;
    // SAFETY: `sp` is a stream fts_open gave (fts(3)): the shim's when the replica is on,
    // since it is on or off for the whole process, glibc's otherwise, for `real` unchanged,
    // with an integer instruction.
    |real| unsafe { when_on(|| outside(|| fts::children(sp, instr)), || real(sp, instr)) }

    fn fts64_children(sp: *mut crate::fs::fts::Fts, instr: c_int) -> *mut crate::fs::fts::Ent, missing: std::ptr::null_mut(), support: FTS;
    // SAFETY: `sp` is a stream fts_open gave (fts(3)): the shim's when the replica is on,
    // since it is on or off for the whole process, glibc's otherwise, for `real` unchanged,
    // with an integer instruction.
    |real| unsafe { when_on(|| outside(|| fts::children(sp, instr)), || real(sp, instr)) }

    fn fts_set(sp: *mut crate::fs::fts::Fts, p: *mut crate::fs::fts::Ent, instr: c_int) -> c_int, missing: 1, support: FTS;
    // SAFETY: `sp` is a stream fts_open gave (fts(3)): the shim's when the replica is on,
    // since it is on or off for the whole process, glibc's otherwise, for `real` unchanged,
    // and `p` one of its entries.
    |real| unsafe { when_on(|| fts::set(p, instr), || real(sp, p, instr)) }

    fn fts64_set(sp: *mut crate::fs::fts::Fts, p: *mut crate::fs::fts::Ent, instr: c_int) -> c_int, missing: 1, support: FTS;
    // SAFETY: `sp` is a stream fts_open gave (fts(3)): the shim's when the replica is on,
    // since it is on or off for the whole process, glibc's otherwise, for `real` unchanged,
    // and `p` one of its entries.
    |real| unsafe { when_on(|| fts::set(p, instr), || real(sp, p, instr)) }

    fn fts_close(sp: *mut crate::fs::fts::Fts) -> c_int, missing: -1, support: FTS;
    // SAFETY: `sp` is a stream fts_open gave (fts(3)): the shim's when the replica is on,
    // since it is on or off for the whole process, glibc's otherwise, for `real` unchanged.
    |real| unsafe { when_on(|| outside(|| fts::close(sp)), || real(sp)) }

    fn fts64_close(sp: *mut crate::fs::fts::Fts) -> c_int, missing: -1, support: FTS;
    // SAFETY: `sp` is a stream fts_open gave (fts(3)): the shim's when the replica is on,
    // since it is on or off for the whole process, glibc's otherwise, for `real` unchanged.
    |real| unsafe { when_on(|| outside(|| fts::close(sp)), || real(sp)) }

    fn opendir(path: *const c_char) -> *mut DIR, missing: std::ptr::null_mut(), support: MERGED_STREAM;
    // SAFETY: `path` is null or a C string (opendir(3)); `real` gets it, or the NUL-terminated
    // host path of the directory.
    |real| unsafe { opendir_with(path, |p| real(p)) }

    fn fdopendir(fd: c_int) -> *mut DIR, missing: std::ptr::null_mut(), support: MERGED_STREAM;
    // SAFETY: an integer descriptor; `real` gets it unchanged.
    |real| unsafe { fdopendir_with(fd, || real(fd)) }

    fn readdir(dir: *mut DIR) -> *mut Dirent, missing: std::ptr::null_mut();
    // SAFETY: `dir` is a stream opendir gave (readdir(3)): one of ours, which `dirs::ours`
    // recognises by address without reading it, or glibc's, for `real` unchanged.
    |real| unsafe { match dirs::ours(dir) { Some(stream) => stream.next(), None => real(dir) } }

    fn readdir64(dir: *mut DIR) -> *mut Dirent, missing: std::ptr::null_mut();
    // SAFETY: `dir` is a stream opendir gave (readdir(3)): one of ours, which `dirs::ours`
    // recognises by address without reading it, or glibc's, for `real` unchanged.
    |real| unsafe { match dirs::ours(dir) { Some(stream) => stream.next(), None => real(dir) } }

    fn readdir_r(dir: *mut DIR, entry: *mut Dirent, result: *mut *mut Dirent) -> c_int, missing: libc::ENOSYS;
    // SAFETY: `dir` is a stream opendir gave (readdir(3)): one of ours, which `dirs::ours`
    // recognises by address without reading it, or glibc's, for `real` unchanged; `entry` and
    // `result` are the caller's writable dirent and pointer: `readdir_r_with`'s contract.
    |real| unsafe { readdir_r_with(dir, entry, result, || real(dir, entry, result)) }

    fn readdir64_r(dir: *mut DIR, entry: *mut Dirent, result: *mut *mut Dirent) -> c_int, missing: libc::ENOSYS;
    // SAFETY: `dir` is a stream opendir gave (readdir(3)): one of ours, which `dirs::ours`
    // recognises by address without reading it, or glibc's, for `real` unchanged; `entry` and
    // `result` are the caller's writable dirent and pointer: `readdir_r_with`'s contract.
    |real| unsafe { readdir_r_with(dir, entry, result, || real(dir, entry, result)) }

    fn closedir(dir: *mut DIR) -> c_int, missing: -1;
    // SAFETY: `dir` is a stream opendir gave (readdir(3)): one of ours, which `dirs::ours`
    // recognises by address without reading it, or glibc's, for `real` unchanged:
    // `closedir_with`'s contract.
    |real| unsafe { closedir_with(dir, || real(dir)) }

    fn dirfd(dir: *mut DIR) -> c_int, missing: -1;
    // SAFETY: `dir` is a stream opendir gave (readdir(3)): one of ours, which `dirs::ours`
    // recognises by address without reading it, or glibc's, for `real` unchanged.
    |real| unsafe { match dirs::ours(dir) { Some(stream) => stream.fd, None => real(dir) } }

    #[allow(clippy::unused_unit)]
    fn rewinddir(dir: *mut DIR) -> (), missing: ();
    // SAFETY: `dir` is a stream opendir gave (readdir(3)): one of ours, which `dirs::ours`
    // recognises by address without reading it, or glibc's, for `real` unchanged.
    |real| unsafe { match dirs::ours(dir) { Some(stream) => stream.rewind(), None => real(dir) } }

    fn telldir(dir: *mut DIR) -> c_long, missing: -1;
    // SAFETY: `dir` is a stream opendir gave (readdir(3)): one of ours, which `dirs::ours`
    // recognises by address without reading it, or glibc's, for `real` unchanged.
    |real| unsafe { match dirs::ours(dir) { Some(stream) => stream.tell(), None => real(dir) } }

    #[allow(clippy::unused_unit)]
    fn seekdir(dir: *mut DIR, pos: c_long) -> (), missing: ();
    // SAFETY: `dir` is a stream opendir gave (readdir(3)): one of ours, which `dirs::ours`
    // recognises by address without reading it, or glibc's, for `real` unchanged, with a
    // position.
    |real| unsafe { match dirs::ours(dir) { Some(stream) => stream.seek(pos), None => real(dir, pos) } }

    fn scandir(path: *const c_char, list: *mut *mut *mut Dirent, filter: Filter, compare: Compare) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string, `list` writable and the callbacks the program's
    // (scandir(3)): `scandir_with`'s contract; `real` gets them unchanged.
    |real| unsafe { scandir_with(path, list, filter, compare, || real(path, list, filter, compare)) }

    fn scandir64(path: *const c_char, list: *mut *mut *mut Dirent, filter: Filter, compare: Compare) -> c_int, missing: -1;
    // SAFETY: `path` is null or a C string, `list` writable and the callbacks the program's
    // (scandir(3)): `scandir_with`'s contract; `real` gets them unchanged.
    |real| unsafe { scandir_with(path, list, filter, compare, || real(path, list, filter, compare)) }
}
