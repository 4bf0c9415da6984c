//! Remembered ownership: what `chown` by a capsule process did, and who created a
//! file, as `stat` must report it.
//!
//! Two strategies, chosen once by the real identity of the process:
//! - really root: ownership is made real. A capsule user's new files are given to it
//!   with `lchown`, a permitted `chown` is carried out, device nodes are real. `stat`
//!   needs nothing.
//! - an ordinary user (who cannot give files away): ownership is recorded in a
//!   `user.capsule.owner` extended attribute (`UID:GID`) on the upper-layer file,
//!   as rootless container storage does; a device node made by a fake root is an
//!   empty file with `user.capsule.rdev` (`c:MAJOR:MINOR` or `b:…`). Every `stat`
//!   variant applies them. Records live with the file, so they survive restarts of
//!   the capsule and move with `rename`.
//!
//! Without a capsule identity, ownership is the host's and nothing here applies.

use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicBool, Ordering};

use super::path::PathBuf;
use crate::identity::state::{CREDS, EFFECTIVE, FS};

const OWNER: &CStr = c"user.capsule.owner";
const RDEV: &CStr = c"user.capsule.rdev";

static REALLY_ROOT: AtomicBool = AtomicBool::new(false);

pub fn init() {
    // SAFETY: raw system call without arguments.
    let euid = unsafe { libc::syscall(libc::SYS_geteuid) };
    REALLY_ROOT.store(euid == 0, Ordering::Relaxed);
}

fn really_root() -> bool {
    REALLY_ROOT.load(Ordering::Relaxed)
}

/// Whether ownership is virtualised (the capsule has an identity).
pub fn active() -> bool {
    CREDS.enabled()
}

/// Whether `stat` results need the recorded ownership applied.
pub fn recorded() -> bool {
    active() && !really_root()
}

/// The real owner of files this process creates.
fn real_ids() -> (u32, u32) {
    // SAFETY: raw system calls without arguments.
    unsafe {
        (
            libc::syscall(libc::SYS_geteuid) as u32,
            libc::syscall(libc::SYS_getegid) as u32,
        )
    }
}

fn format_ids(uid: u32, gid: u32, out: &mut [u8; 24]) -> usize {
    let mut n = 0;
    for (i, value) in [uid, gid].into_iter().enumerate() {
        if i == 1 {
            out[n] = b':';
            n += 1;
        }
        let mut buf = crate::decimal::Digits::default();
        let digits = crate::decimal::decimal(u64::from(value), &mut buf);
        out[n..n + digits.len()].copy_from_slice(digits);
        n += digits.len();
    }
    n
}

fn parse_pair(text: &[u8], sep: u8) -> Option<(u32, u32)> {
    let i = text.iter().position(|&b| b == sep)?;
    let a = std::str::from_utf8(&text[..i]).ok()?.parse().ok()?;
    let b = std::str::from_utf8(&text[i + 1..]).ok()?.parse().ok()?;
    Some((a, b))
}

/// Where a `user.*` attribute of the upper file is read or written: its path (not
/// followed), a descriptor of it, or (`Follow`) a path whose last name is followed:
/// `/proc/self/fd/N` of a descriptor held open.
#[derive(Clone, Copy)]
enum Target<'a> {
    Path(&'a PathBuf),
    Fd(c_int),
    Follow(&'a PathBuf),
}

/// Runs `op` (an xattr call returning -1 with errno on failure) on `target`. The
/// kernel checks a `user.*` attribute against the file's permission bits, so a file
/// the capsule made with mode 0 (dpkg unpacks into `NAME.dpkg-new` created 000, then
/// `fchown`s it) would refuse its own owner record. The real user owns every file of
/// the upper layer, so for such a file it lends itself read and write for the call
/// and puts the mode back, as a root would not have needed to ask. All three steps
/// go through one descriptor of the file opened without following a link, so a name
/// swapped meanwhile changes nothing else; a file outside the upper layer (the lower
/// layer, a volume, the host) is never touched.
fn with_owner_access(target: Target, mut op: impl FnMut(Target) -> isize) -> isize {
    let rc = op(target);
    if rc >= 0 || crate::hook::errno() != libc::EACCES {
        return rc;
    }
    match lend_access(target, &mut op) {
        Some(rc) => rc,
        None => crate::hook::fail(libc::EACCES),
    }
}

/// The retry of `with_owner_access`: `None` when the file is not the real user's
/// upper-layer file lacking read or write permission (then the first answer stands).
fn lend_access(target: Target, op: &mut impl FnMut(Target) -> isize) -> Option<isize> {
    let upper = super::layers()?.upper.as_deref()?;
    let (fd, opened) = match target {
        // SAFETY: a NUL-terminated path; O_PATH opens without reading.
        Target::Path(host) => (
            unsafe {
                libc::open(
                    host.as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            },
            true,
        ),
        Target::Fd(fd) => (fd, false),
        Target::Follow(_) => return None,
    };
    if fd < 0 {
        return None;
    }
    let result = lend_access_fd(fd, upper, op);
    if opened {
        crate::hook::errno_kept(|| {
            // SAFETY: the descriptor opened above.
            unsafe { libc::close(fd) }
        });
    }
    result
}

fn lend_access_fd(fd: c_int, upper: &[u8], op: &mut impl FnMut(Target) -> isize) -> Option<isize> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a writable stat; fstat only writes it (a bad `fd` is EBADF).
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    let kind = st.st_mode & libc::S_IFMT;
    if st.st_uid != real_ids().0
        || (kind != libc::S_IFREG && kind != libc::S_IFDIR)
        || st.st_mode & 0o600 == 0o600
    {
        return None;
    }
    let file = super::sys::fd_target(fd).ok()?;
    if !super::path::is_within(file.as_bytes(), upper) {
        return None;
    }
    let mut link = PathBuf::from_bytes(b"/proc/self/fd/").ok()?;
    link.push_bytes(crate::decimal::decimal(fd as u64, &mut Default::default()))
        .ok()?;
    let mode = st.st_mode & 0o7777;
    // SAFETY: a NUL-terminated path; the magic link names the descriptor's file.
    if unsafe { libc::chmod(link.as_ptr(), mode | 0o600) } != 0 {
        return None;
    }
    let rc = op(Target::Follow(&link));
    crate::hook::errno_kept(|| {
        // SAFETY: as above.
        unsafe { libc::chmod(link.as_ptr(), mode) }
    });
    Some(rc)
}

fn set_owner_xattr(host: &PathBuf, uid: u32, gid: u32) -> Result<(), c_int> {
    let mut buf = [0u8; 24];
    let n = format_ids(uid, gid, &mut buf);
    let rc = with_owner_access(Target::Path(host), |target| {
        // SAFETY: NUL-terminated names and a buffer of n bytes.
        (unsafe {
            match target {
                Target::Path(host) => {
                    libc::lsetxattr(host.as_ptr(), OWNER.as_ptr(), buf.as_ptr().cast(), n, 0)
                }
                Target::Follow(host) => {
                    libc::setxattr(host.as_ptr(), OWNER.as_ptr(), buf.as_ptr().cast(), n, 0)
                }
                Target::Fd(fd) => libc::fsetxattr(fd, OWNER.as_ptr(), buf.as_ptr().cast(), n, 0),
            }
        }) as isize
    });
    if rc != 0 {
        return Err(crate::hook::errno());
    }
    Ok(())
}

/// Reads attribute `name` of `target` into `buf`: its length, or -1.
fn get_xattr(target: Target, name: &CStr, buf: &mut [u8; 32]) -> isize {
    let len = buf.len();
    let ptr = buf.as_mut_ptr();
    with_owner_access(target, |target| {
        // SAFETY: NUL-terminated names; the buffer is valid for its length.
        unsafe {
            match target {
                Target::Path(host) => {
                    libc::lgetxattr(host.as_ptr(), name.as_ptr(), ptr.cast(), len)
                }
                Target::Follow(host) => {
                    libc::getxattr(host.as_ptr(), name.as_ptr(), ptr.cast(), len)
                }
                Target::Fd(fd) => libc::fgetxattr(fd, name.as_ptr(), ptr.cast(), len),
            }
        }
    })
}

/// After a capsule process created `host`: it belongs to the creator's capsule
/// identity (its filesystem uid and gid).
pub fn after_create(host: &PathBuf) {
    if !active() {
        return;
    }
    let (uid, gid) = (CREDS.uid.get(FS), CREDS.gid.get(FS));
    if really_root() {
        if (uid, gid) != (0, 0) {
            // SAFETY: NUL-terminated path.
            unsafe { libc::lchown(host.as_ptr(), uid, gid) };
        }
    } else if (uid, gid) != real_ids() {
        // Symbolic links cannot carry user.* attributes: they show the real owner.
        let _ = set_owner_xattr(host, uid, gid);
    }
}

/// The ownership `stat` must report for `host` (with its real `st`).
pub fn apply(host: &PathBuf, st: &mut libc::stat) {
    if !recorded() {
        return;
    }
    let mut buf = [0u8; 32];
    let n = get_xattr(Target::Path(host), OWNER, &mut buf);
    if n > 0 {
        if let Some((uid, gid)) = parse_pair(&buf[..n as usize], b':') {
            st.st_uid = uid;
            st.st_gid = gid;
        }
    }
    apply_rdev(host, st);
}

/// After a copy-up: the copy keeps the lower file's owner.
pub fn after_copy_up(host: &PathBuf, lower: &libc::stat) {
    if really_root() {
        // A copy-up is invisible: as real root the copy gets the real owner, whether
        // or not the capsule has an identity.
        // SAFETY: NUL-terminated path.
        unsafe { libc::lchown(host.as_ptr(), lower.st_uid, lower.st_gid) };
    } else if active()
        && (lower.st_uid, lower.st_gid) != real_ids()
        && lower.st_mode & libc::S_IFMT != libc::S_IFLNK
    {
        let _ = set_owner_xattr(host, lower.st_uid, lower.st_gid);
    }
}

/// The same for a regular file's copy still open as `fd` (before it is published).
pub fn copy_up_owner_fd(fd: c_int, lower: &libc::stat) {
    if really_root() {
        // SAFETY: an open descriptor.
        unsafe { libc::fchown(fd, lower.st_uid, lower.st_gid) };
    } else if active() && (lower.st_uid, lower.st_gid) != real_ids() {
        let mut buf = [0u8; 24];
        let n = format_ids(lower.st_uid, lower.st_gid, &mut buf);
        // SAFETY: an open descriptor, a NUL-terminated name and a buffer of n bytes.
        unsafe { libc::fsetxattr(fd, OWNER.as_ptr(), buf.as_ptr().cast(), n, 0) };
    }
}

/// Ownership as `statx` reports it, patched in place like `apply`.
pub fn apply_statx(host: Option<&PathBuf>, fd: c_int, stx: &mut libc::statx) {
    if !recorded() {
        return;
    }
    // SAFETY: a zeroed stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_uid = stx.stx_uid;
    st.st_gid = stx.stx_gid;
    st.st_mode = libc::mode_t::from(stx.stx_mode);
    st.st_size = stx.stx_size as i64;
    match host {
        Some(h) => apply(h, &mut st),
        None => apply_fd(fd, &mut st),
    }
    stx.stx_uid = st.st_uid;
    stx.stx_gid = st.st_gid;
    stx.stx_mode = st.st_mode as u16;
    if st.st_mode & libc::S_IFMT == libc::S_IFCHR || st.st_mode & libc::S_IFMT == libc::S_IFBLK {
        stx.stx_rdev_major = libc::major(st.st_rdev);
        stx.stx_rdev_minor = libc::minor(st.st_rdev);
    }
}

/// The same for a descriptor (fstat).
pub fn apply_fd(fd: c_int, st: &mut libc::stat) {
    if !recorded() {
        return;
    }
    let mut buf = [0u8; 32];
    let n = get_xattr(Target::Fd(fd), OWNER, &mut buf);
    if n > 0 {
        if let Some((uid, gid)) = parse_pair(&buf[..n as usize], b':') {
            st.st_uid = uid;
            st.st_gid = gid;
        }
    }
}

fn apply_rdev(host: &PathBuf, st: &mut libc::stat) {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size != 0 {
        return;
    }
    let mut buf = [0u8; 32];
    let n = get_xattr(Target::Path(host), RDEV, &mut buf);
    if n < 3 {
        return;
    }
    let kind = match buf[0] {
        b'c' => libc::S_IFCHR,
        b'b' => libc::S_IFBLK,
        _ => return,
    };
    if let Some((major, minor)) = parse_pair(&buf[2..n as usize], b':') {
        st.st_mode = (st.st_mode & !libc::S_IFMT) | kind;
        st.st_rdev = libc::makedev(major, minor);
    }
}

/// Whether the capsule's identity is a root the process is not really: ownership
/// is recorded, and permission to write comes from the capsule, not the host file.
pub fn is_fake_root() -> bool {
    recorded() && CREDS.privileged()
}

/// `access` decided from the walk's `lstat`, where the answer does not depend on
/// who asks (existence) or the process is really root (who may read and write
/// anything, and execute what has an execute bit or is a directory). `None`: ask
/// the kernel. Returns 0 or the errno.
pub fn access_by_root(st: &libc::stat, mode: c_int) -> Option<c_int> {
    if mode == libc::F_OK {
        return Some(0);
    }
    if !really_root() {
        return None;
    }
    if mode & libc::X_OK != 0
        && st.st_mode & libc::S_IFMT != libc::S_IFDIR
        && st.st_mode & 0o111 == 0
    {
        return Some(libc::EACCES);
    }
    Some(0)
}

/// The kernel's rule for chown, applied to the capsule identity: a privileged
/// process may give any file to anyone; others may only change the group of their
/// own files to one of their groups.
fn permitted(current: (u32, u32), uid: u32, gid: u32) -> bool {
    if CREDS.uid.get(EFFECTIVE) == 0 {
        return true;
    }
    let me = CREDS.uid.get(FS);
    if current.0 != me {
        return false;
    }
    if uid != u32::MAX && uid != current.0 {
        return false;
    }
    if gid == u32::MAX || gid == current.1 {
        return true;
    }
    let mut groups = [0u32; capsule_config::MAX_GROUPS];
    let n = CREDS.groups(&mut groups);
    gid == CREDS.gid.get(FS) || groups[..n].contains(&gid)
}

/// chown of `host` (already copied up) by a capsule process. `Ok(false)`: not
/// virtualised, let the real call decide.
pub fn chown(host: &PathBuf, uid: u32, gid: u32, follow: bool) -> Result<bool, c_int> {
    if !active() {
        return Ok(false);
    }
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `host` is a NUL-terminated path buffer and `st` a writable stat.
    let rc = unsafe {
        if follow {
            libc::stat(host.as_ptr(), &mut st)
        } else {
            libc::lstat(host.as_ptr(), &mut st)
        }
    };
    if rc != 0 {
        return Err(crate::hook::errno());
    }
    apply(host, &mut st);
    if !permitted((st.st_uid, st.st_gid), uid, gid) {
        return Err(libc::EPERM);
    }
    let new_uid = if uid == u32::MAX { st.st_uid } else { uid };
    let new_gid = if gid == u32::MAX { st.st_gid } else { gid };
    if really_root() {
        // SAFETY: NUL-terminated path.
        let rc = unsafe {
            if follow {
                libc::chown(host.as_ptr(), new_uid, new_gid)
            } else {
                libc::lchown(host.as_ptr(), new_uid, new_gid)
            }
        };
        return if rc == 0 {
            Ok(true)
        } else {
            Err(crate::hook::errno())
        };
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK && !follow {
        // Links cannot carry the record; their owner is not used for anything.
        return Ok(true);
    }
    set_owner_xattr(host, new_uid, new_gid).map(|_| true)
}

/// mknod of a device node by a capsule root that is not really root: an empty
/// file that `stat` reports as the device. `Ok(false)`: let the real call do it.
pub fn mknod_device(host: &PathBuf, mode: libc::mode_t, dev: libc::dev_t) -> Result<bool, c_int> {
    let kind = mode & libc::S_IFMT;
    if !active() || really_root() || (kind != libc::S_IFCHR && kind != libc::S_IFBLK) {
        return Ok(false);
    }
    if CREDS.uid.get(EFFECTIVE) != 0 {
        return Err(libc::EPERM);
    }
    super::sys::create_empty(host, mode & 0o7777)?;
    let mut text = [0u8; 32];
    text[0] = if kind == libc::S_IFCHR { b'c' } else { b'b' };
    text[1] = b':';
    let mut ids = [0u8; 24];
    let n = format_ids(libc::major(dev), libc::minor(dev), &mut ids);
    text[2..2 + n].copy_from_slice(&ids[..n]);
    // SAFETY: NUL-terminated names and a buffer of n + 2 bytes.
    unsafe {
        libc::lsetxattr(host.as_ptr(), RDEV.as_ptr(), text.as_ptr().cast(), n + 2, 0);
    }
    after_create(host);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_pairs_round_trip() {
        let mut buf = [0u8; 24];
        let n = format_ids(0, 4294967294, &mut buf);
        assert_eq!(&buf[..n], b"0:4294967294");
        assert_eq!(parse_pair(&buf[..n], b':'), Some((0, 4294967294)));
        assert_eq!(parse_pair(b"12", b':'), None);
        assert_eq!(parse_pair(b"a:1", b':'), None);
    }
}
