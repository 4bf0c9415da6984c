//! The file-system system calls that have no libc function of their own and reach
//! the shim only through `syscall()`: `getdents64` on a capsule directory and
//! `openat2` with its `RESOLVE_*` rules.
//!
//! - `getdents64` of a directory present in several layers serves the merged
//!   listing (`dirs::merged`): a snapshot taken when the descriptor's position is 0
//!   (a fresh descriptor, or after `lseek(fd, 0, SEEK_SET)`), kept per descriptor.
//!   The descriptor's own position (set with `lseek`, never read for real) is the
//!   index of the next entry plus one, so `d_off` values can be sought back to. A
//!   directory in one layer is read by the kernel as it is.
//! - `openat2` resolves the path itself, component by component over the capsule's
//!   layers, applying the `RESOLVE_*` rules, then opens the capsule path it reached
//!   (no `..`, no links left) like `openat`. `RESOLVE_NO_XDEV` counts the capsule's
//!   own mounts: the layers, each volume, and `/proc`, `/dev`, `/sys` (mounts of the
//!   host below those are not seen). `RESOLVE_CACHED` gives `EAGAIN`, which callers
//!   must handle anyway.

use std::ffi::{c_int, c_long, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

use super::layers::{Layers, Place};
use super::ops::{self, Skip};
use super::path::{components, PathBuf};
use crate::hook::{fail, set_errno, Guard};

/// Descriptors below this keep a merged listing for `getdents64`.
const LISTED_FDS: usize = 1024;

/// A merged listing served to `getdents64`, for the directory `dev`/`ino`.
struct Listing {
    dev: u64,
    ino: u64,
    entries: Vec<libc::dirent64>,
    /// The index of the next entry, when the descriptor's position cannot hold it.
    own_pos: Option<usize>,
}

static LISTINGS: [AtomicPtr<Listing>; LISTED_FDS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; LISTED_FDS];

/// Takes the listing of `fd` out of the table (the caller owns it meanwhile).
fn take(fd: usize) -> Option<Box<Listing>> {
    let p = LISTINGS[fd].swap(std::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: non-null pointers in the table come from Box::into_raw and are owned
    // by the table alone; swapping one out transfers that ownership to us.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
}

fn put(fd: usize, listing: Box<Listing>) {
    let old = LISTINGS[fd].swap(Box::into_raw(listing), Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: as in take(): the table owned it, and we swapped it out.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// `syscall(SYS_getdents64, fd, buf, len)`. `None`: let the kernel answer.
///
/// # Safety
/// `buf` is the caller's buffer of `len` bytes (checked by the kernel otherwise).
pub unsafe fn getdents64(fd: c_int, buf: *mut u8, len: usize) -> Option<c_long> {
    let layers = super::layers()?;
    if fd < 0 || fd as usize >= LISTED_FDS || buf.is_null() {
        return None;
    }
    let _guard = Guard::enter()?;
    let saved = crate::hook::errno();
    // SAFETY: stat is plain data, for which all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid stat buffer for fstat to fill.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return None;
    }
    // SAFETY: lseek touches no memory of ours.
    let pos = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    let slot = fd as usize;
    let mut listing = match take(slot) {
        Some(l)
            if l.dev == st.st_dev && l.ino == st.st_ino && (pos != 0 || l.own_pos.is_some()) =>
        {
            l
        }
        _ if pos == 0 => {
            let entries = merged_entries(layers, fd)?;
            Box::new(Listing {
                dev: st.st_dev,
                ino: st.st_ino,
                entries,
                own_pos: None,
            })
        }
        _ => return None,
    };
    let index = match listing.own_pos {
        Some(i) => i,
        None => (pos.max(1) - 1) as usize,
    };
    // SAFETY: `buf` is non-null (checked above) and the caller's buffer of `len` bytes.
    let (written, next) = unsafe { pack(&listing.entries, index, buf, len) };
    if written == 0 && next < listing.entries.len() {
        put(slot, listing);
        return Some(fail(libc::EINVAL)); // the buffer cannot hold the next entry
    }
    // The position says where the next call resumes; where the file system keeps no
    // such position, the listing does.
    let seek = |to: libc::off_t| {
        // SAFETY: lseek touches no memory of ours.
        unsafe { libc::lseek(fd, to, libc::SEEK_SET) }
    };
    if listing.own_pos.is_some()
        || next != index && seek(next as libc::off_t + 1) != next as libc::off_t + 1
    {
        listing.own_pos = Some(next);
    }
    put(slot, listing);
    // Not `errno_kept`: the early returns above hand the call to the kernel.
    set_errno(saved);
    Some(written as c_long)
}

/// The merged entries of the capsule directory `fd` refers to; `None` when it is
/// not a directory of several layers (the kernel's listing is the capsule's).
fn merged_entries(layers: &Layers, fd: c_int) -> Option<Vec<libc::dirent64>> {
    let capsule = ops::fd_path(layers, fd).ok()??;
    let node = layers.resolve(capsule.as_bytes(), true).ok()?;
    super::dirs::merged(layers, &node).ok()?
}

/// Writes `linux_dirent64` records of `entries[index..]` into `buf`; returns the
/// bytes written and the index of the first entry not written.
///
/// # Safety
/// `buf` is valid for `len` bytes.
unsafe fn pack(
    entries: &[libc::dirent64],
    index: usize,
    buf: *mut u8,
    len: usize,
) -> (usize, usize) {
    let mut written = 0;
    let mut i = index;
    while let Some(entry) = entries.get(i) {
        // SAFETY: the entries come from dirs::merged (or a test), zeroed before the name
        // was copied in: d_name is NUL-terminated within its array.
        let name = unsafe { CStr::from_ptr(entry.d_name.as_ptr()) }.to_bytes();
        let reclen = (19 + name.len() + 1 + 7) & !7;
        if written + reclen > len {
            break;
        }
        // SAFETY: `written + reclen <= len`, so the record's `reclen` bytes are inside
        // the caller's buffer (valid for `len` bytes, the contract); every field is
        // written unaligned within them (the name's 19 + len + 1 bytes fit `reclen`),
        // and the name, in `entries`, cannot overlap the buffer we were given.
        unsafe {
            let rec = buf.add(written);
            std::ptr::write_bytes(rec, 0, reclen);
            (rec as *mut u64).write_unaligned(entry.d_ino);
            // d_off: the position of the next entry (see the module comment).
            (rec.add(8) as *mut i64).write_unaligned(i as i64 + 2);
            (rec.add(16) as *mut u16).write_unaligned(reclen as u16);
            rec.add(18).write(entry.d_type);
            std::ptr::copy_nonoverlapping(name.as_ptr(), rec.add(19), name.len());
        }
        written += reclen;
        i += 1;
    }
    (written, i)
}

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
#[derive(Clone, Copy)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_IN_ROOT: u64 = 0x10;
const RESOLVE_CACHED: u64 = 0x20;
const RESOLVE_ALL: u64 = 0x3f;
/// The most symbolic links one resolution follows (the kernel's `MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;

/// Every flag `openat2` accepts (the kernel's `VALID_OPEN_FLAGS`).
const VALID_OPEN_FLAGS: c_int = libc::O_ACCMODE
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_NOCTTY
    | libc::O_TRUNC
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_SYNC
    | libc::O_ASYNC
    | libc::O_DIRECT
    | libc::O_LARGEFILE
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW
    | libc::O_NOATIME
    | libc::O_CLOEXEC
    | libc::O_PATH
    | libc::O_TMPFILE;

/// What `openat2` does in the capsule: open this capsule path with `openat` (these
/// flags and mode), fail, or pass (no file-system replica, or a directory descriptor
/// outside the capsule: the kernel's call).
pub type Openat2 = ops::Op<(PathBuf, c_int, libc::mode_t)>;

/// `syscall(SYS_openat2, dirfd, path, how, size)`.
///
/// # Safety
/// `how` points to `size` readable bytes and `path` is a C string (as the kernel would
/// require), or either is null.
pub unsafe fn openat2(
    dirfd: c_int,
    path: *const libc::c_char,
    how: *const u8,
    size: usize,
) -> Openat2 {
    let Some(layers) = super::layers() else {
        return Err(Skip::Pass);
    };
    let Some(_guard) = Guard::enter() else {
        return Err(Skip::Pass);
    };
    // SAFETY: `how` is readable for `size` bytes (the contract); `path` is the caller's
    // path, a C string as the kernel would require.
    unsafe { plan(layers, dirfd, path, how, size) }
}

/// The capsule path, flags and mode `openat2` opens, after checking `how` as the
/// kernel does.
///
/// # Safety
/// As [`openat2`]: `how` is null or readable for `size` bytes, `path` null or a C string.
unsafe fn plan(
    layers: &Layers,
    dirfd: c_int,
    path: *const libc::c_char,
    how: *const u8,
    size: usize,
) -> Result<(PathBuf, c_int, libc::mode_t), Skip> {
    const VER0: usize = std::mem::size_of::<OpenHow>();
    let fail = |e| Err(Skip::Errno(e));
    if how.is_null() || path.is_null() {
        return fail(libc::EFAULT);
    }
    if size < VER0 {
        return fail(libc::EINVAL);
    }
    if size > 4096 {
        return fail(libc::E2BIG);
    }
    // A larger struct from a newer caller is fine when the fields we do not know
    // are zero.
    // SAFETY: `how` is non-null and readable for `size` bytes (the contract).
    if (VER0..size).any(|i| unsafe { *how.add(i) } != 0) {
        return fail(libc::E2BIG);
    }
    // SAFETY: `size >= VER0` bytes are readable at `how`, read unaligned as plain data.
    let h = unsafe { (how as *const OpenHow).read_unaligned() };
    let Ok(flags) = c_int::try_from(h.flags) else {
        return fail(libc::EINVAL);
    };
    if flags & !VALID_OPEN_FLAGS != 0 || h.resolve & !RESOLVE_ALL != 0 {
        return fail(libc::EINVAL);
    }
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    if h.mode & !0o7777 != 0 || (!creates && h.mode != 0) {
        return fail(libc::EINVAL);
    }
    if h.resolve & RESOLVE_BENEATH != 0 && h.resolve & RESOLVE_IN_ROOT != 0 {
        return fail(libc::EINVAL);
    }
    if h.resolve & RESOLVE_CACHED != 0 {
        return fail(libc::EAGAIN); // callers retry without it
    }
    let mode = h.mode as libc::mode_t;
    // SAFETY: `path` is non-null (checked above) and a C string (the contract).
    let text = unsafe { CStr::from_ptr(path) };
    if h.resolve == 0 {
        return Ok((ops::absolute(layers, dirfd, text)?, flags, mode));
    }
    let target = resolve(layers, dirfd, text.to_bytes(), flags, h.resolve)?;
    Ok((target, flags, mode))
}

/// Whether the `/proc` link `node` (a capsule path) is a magic link: its target is
/// not a plain relative path (`self` -> `123`, `mounts` -> `self/mounts` are not).
fn is_magic(target: &[u8]) -> bool {
    target.starts_with(b"/") || target.windows(2).any(|w| w == b":[")
}

/// Resolves `path` for openat2 under the `RESOLVE_*` rules in `resolve`. Returns
/// the capsule path reached: absolute, no `..`, no links (but a last component that
/// is a link when `O_NOFOLLOW`/`O_PATH` asked not to follow it).
fn resolve(
    layers: &Layers,
    dirfd: c_int,
    path: &[u8],
    flags: c_int,
    resolve: u64,
) -> Result<PathBuf, Skip> {
    if path.is_empty() {
        return Err(Skip::Errno(libc::ENOENT));
    }
    if resolve & RESOLVE_BENEATH != 0 && path.starts_with(b"/") {
        return Err(Skip::Errno(libc::EXDEV));
    }
    // The directory the path starts from (and, when scoped, may not leave).
    let anchor = {
        let start = ops::absolute(layers, dirfd, c".")?;
        let node = layers.resolve(start.as_bytes(), true)?;
        if !node.is_dir() {
            return Err(Skip::Errno(libc::ENOTDIR));
        }
        node.capsule
    };
    walk(layers, &anchor, path, flags, resolve).map_err(Skip::Errno)
}

/// The walk of `resolve`, from the directory `anchor`.
fn walk(
    layers: &Layers,
    anchor: &PathBuf,
    path: &[u8],
    flags: c_int,
    resolve: u64,
) -> Result<PathBuf, c_int> {
    let scoped = resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0;
    let anchor_place = layers.resolve(anchor.as_bytes(), true)?.place;
    let mut cur = if path.starts_with(b"/") && !scoped {
        PathBuf::root()
    } else {
        PathBuf::from_bytes(anchor.as_bytes())?
    };
    let mut depth = 0usize;
    let mut pending = PathBuf::from_bytes(path)?;
    let mut links = 0;
    let follow_last = flags & libc::O_NOFOLLOW == 0;
    'restart: loop {
        let text = PathBuf::from_bytes(pending.as_bytes())?;
        let names: usize = components(text.as_bytes()).count();
        let trailing_slash = text.as_bytes().ends_with(b"/");
        for (i, name) in components(text.as_bytes()).enumerate() {
            let last = i + 1 == names;
            if name == b".." {
                if scoped && depth == 0 {
                    if resolve & RESOLVE_BENEATH != 0 {
                        return Err(libc::EXDEV);
                    }
                    continue; // RESOLVE_IN_ROOT: `..` of the root is the root
                }
                depth = depth.saturating_sub(1);
                cur.pop();
                continue;
            }
            let mut next = PathBuf::from_bytes(cur.as_bytes())?;
            next.push_component(name)?;
            let node = layers.resolve(next.as_bytes(), false)?;
            if resolve & RESOLVE_NO_XDEV != 0 && node.exists() && node.place != anchor_place {
                return Err(libc::EXDEV);
            }
            if node.is_symlink() && (!last || follow_last || trailing_slash) {
                if resolve & RESOLVE_NO_SYMLINKS != 0 {
                    return Err(libc::ELOOP);
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(libc::ELOOP);
                }
                let mut target = PathBuf::new();
                super::sys::readlink(&node.host, &mut target)?;
                if node.place == Place::Passthrough && is_magic(target.as_bytes()) {
                    if resolve & (RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0 {
                        return Err(libc::ELOOP);
                    }
                    if layers.is_object_link(&node, &target)? {
                        // Followed by the kernel (see `Layers::is_object_link`): the
                        // open resolves the link's own path again.
                        let mut through = PathBuf::from_bytes(node.capsule.as_bytes())?;
                        for later in components(text.as_bytes()).skip(i + 1) {
                            through.push_bytes(b"/")?;
                            through.push_bytes(later)?;
                        }
                        return Ok(through);
                    }
                    layers.map_proc_link(node.capsule.as_bytes(), &mut target)?;
                }
                let absolute = target.as_bytes().starts_with(b"/");
                if absolute {
                    if resolve & RESOLVE_BENEATH != 0 {
                        return Err(libc::EXDEV);
                    }
                    if resolve & RESOLVE_IN_ROOT != 0 {
                        cur = PathBuf::from_bytes(anchor.as_bytes())?;
                    } else {
                        cur = PathBuf::root();
                    }
                    depth = 0;
                }
                // The rest of the path continues after the link's target.
                let mut rest = PathBuf::from_bytes(target.as_bytes())?;
                for later in components(text.as_bytes()).skip(i + 1) {
                    rest.push_bytes(b"/")?;
                    rest.push_bytes(later)?;
                }
                if trailing_slash {
                    rest.push_bytes(b"/")?;
                }
                pending = rest;
                continue 'restart;
            }
            if !last && !node.exists() {
                return Err(libc::ENOENT);
            }
            if (!last || trailing_slash) && node.exists() && !node.is_dir() {
                return Err(libc::ENOTDIR);
            }
            cur = next;
            depth += 1;
        }
        if trailing_slash && !cur.is_root() {
            cur.push_bytes(b"/")?;
        }
        return Ok(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_aligned_and_end_where_the_buffer_does() {
        let mut entries = Vec::new();
        for name in [&b"."[..], b"..", b"a-long-name"] {
            // SAFETY: dirent64 is plain data.
            let mut e: libc::dirent64 = unsafe { std::mem::zeroed() };
            for (i, b) in name.iter().enumerate() {
                e.d_name[i] = *b as libc::c_char;
            }
            e.d_ino = 7;
            e.d_type = libc::DT_REG;
            entries.push(e);
        }
        let mut buf = [0u8; 48];
        // SAFETY: buf is valid for its length.
        let (written, next) = unsafe { pack(&entries, 0, buf.as_mut_ptr(), buf.len()) };
        assert_eq!((written, next), (48, 2)); // "." and ".." take 24 bytes each
        assert_eq!(u16::from_le_bytes([buf[16], buf[17]]), 24);
        assert_eq!(&buf[19..21], b".\0");
        assert_eq!(i64::from_le_bytes(buf[32..40].try_into().unwrap()), 3);
        let mut small = [0u8; 16];
        // SAFETY: as above.
        let (written, next) = unsafe { pack(&entries, 2, small.as_mut_ptr(), small.len()) };
        assert_eq!((written, next), (0, 2));
        assert!(is_magic(b"/host/file") && is_magic(b"pipe:[12]") && !is_magic(b"123"));
    }
}
