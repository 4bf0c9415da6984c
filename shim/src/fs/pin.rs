//! Metadata changes made through a directory descriptor the kernel cannot redirect.
//!
//! The walk turns a capsule path into a host path in the upper layer or a volume.
//! Between that answer and the kernel's call, a directory on the way can have
//! become a link (another process of the capsule swapped it, or a cached answer
//! is stale), and an upper-layer or volume link holds a capsule target verbatim,
//! which the kernel would follow on the host: `chmod /d/f` would change the host's
//! file. Landlock refuses reads and writes that end outside the capsule, but not
//! chmod, chown, utimes or extended attributes. For those, the host path is
//! re-expressed as `/proc/self/fd/P/NAME`: `P` is the parent directory opened
//! beneath the layer's (or volume's) root without following any link
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and the caller makes
//! the call without following `NAME` (the walk already followed the links it had
//! to, so the last name is never a link it means to follow).

use std::ffi::c_int;

use super::layers::Layers;
use super::path::{is_within, PathBuf};

/// The parent of a host path held open; `path` names the same file through it.
pub struct Pinned {
    parent: c_int,
    path: PathBuf,
}

impl Pinned {
    /// `/proc/self/fd/P/NAME`: to be used without following `NAME`.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        crate::hook::errno_kept(|| {
            // SAFETY: a descriptor this value owns.
            unsafe { libc::close(self.parent) }
        });
    }
}

/// `struct open_how` of `openat2(2)` (libc's is `non_exhaustive`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

/// The layer root under which host path `host` lies: the upper layer's, or a
/// volume's host directory, the longest that holds it. `None`: elsewhere (`/dev`,
/// `/proc`, `/sys`), or the root itself, which nothing inside the capsule can swap.
fn root_of<'a>(layers: &'a Layers, host: &[u8]) -> Option<&'a [u8]> {
    let root = layers
        .upper
        .iter()
        .map(Vec::as_slice)
        .chain(layers.volumes.iter().map(|v| v.host.as_slice()))
        .filter(|r| is_within(host, r))
        .max_by_key(|r| r.len())?;
    (host.len() > root.len() + 1).then_some(root)
}

/// Pins the parent directory of host path `host` (see the module). `Ok(None)`:
/// nothing to pin (see `root_of`); the host path is used as it is.
pub fn pin(layers: &Layers, host: &PathBuf) -> Result<Option<Pinned>, c_int> {
    let Some(root) = root_of(layers, host.as_bytes()) else {
        return Ok(None);
    };
    let rel = &host.as_bytes()[root.len()..];
    let cut = rel.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let (dir, name) = (&rel[..cut], &rel[cut + 1..]);
    let root_path = PathBuf::from_bytes(root)?;
    // SAFETY: a NUL-terminated path.
    let root_fd = unsafe {
        libc::open(
            root_path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if root_fd < 0 {
        return Err(crate::hook::errno());
    }
    let parent = open_beneath(root_fd, dir.strip_prefix(b"/").unwrap_or(dir));
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(root_fd) };
    let parent = parent?;
    let mut path = PathBuf::new();
    let mut digits = crate::decimal::Digits::default();
    let built = path
        .set(b"/proc/self/fd/")
        .and_then(|()| path.push_bytes(crate::decimal::decimal(parent as u64, &mut digits)))
        .and_then(|()| path.push_component(name));
    let pinned = Pinned { parent, path };
    built?;
    Ok(Some(pinned))
}

/// The directory `dir` (relative, no `.`/`..` as the walk builds it) beneath
/// `root_fd`, no link followed: a link on the way means the tree changed after the
/// walk looked, and the name it found is gone (`ENOENT`).
fn open_beneath(root_fd: c_int, dir: &[u8]) -> Result<c_int, c_int> {
    let dir = if dir.is_empty() { &b"."[..] } else { dir };
    let dir = PathBuf::from_bytes(dir)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a NUL-terminated path and an open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_fd,
            dir.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    } as c_int;
    if fd >= 0 {
        return Ok(fd);
    }
    match crate::hook::errno() {
        libc::ENOSYS | libc::EPERM => open_by_components(root_fd, dir.as_bytes()),
        libc::ELOOP | libc::EXDEV => Err(libc::ENOENT),
        e => Err(e),
    }
}

/// `open_beneath` where `openat2` is missing (Linux < 5.6, or refused by a
/// seccomp filter): one `openat` per name, none following a link.
fn open_by_components(root_fd: c_int, dir: &[u8]) -> Result<c_int, c_int> {
    // SAFETY: duplicating a descriptor we hold.
    let mut fd = unsafe { libc::fcntl(root_fd, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(crate::hook::errno());
    }
    for name in dir
        .split(|&b| b == b'/')
        .filter(|n| !n.is_empty() && *n != b".")
    {
        let next = PathBuf::from_bytes(name).map(|name| {
            // SAFETY: a NUL-terminated name relative to a descriptor we hold.
            unsafe {
                libc::openat(
                    fd,
                    name.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            }
        });
        let e = crate::hook::errno();
        // SAFETY: the descriptor of the previous name.
        unsafe { libc::close(fd) };
        fd = match next {
            Ok(n) if n >= 0 => n,
            Ok(_) if e == libc::ELOOP || e == libc::ENOTDIR => return Err(libc::ENOENT),
            Ok(_) => return Err(e),
            Err(e) => return Err(e),
        };
    }
    Ok(fd)
}

/// `fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW)` as the kernel gives it
/// (`fchmodat2`, Linux 6.6), else as glibc does: the name opened without following
/// it, a link refused (`EOPNOTSUPP`), the file changed through its descriptor.
///
/// # Safety
/// `path` is NUL-terminated.
pub unsafe fn chmod_nofollow(path: *const libc::c_char, mode: libc::mode_t) -> c_int {
    const SYS_FCHMODAT2: libc::c_long = 452;
    // SAFETY: a NUL-terminated path (the caller's promise); no memory is written.
    let rc = unsafe {
        libc::syscall(
            SYS_FCHMODAT2,
            libc::AT_FDCWD,
            path,
            mode,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 || crate::hook::errno() != libc::ENOSYS {
        return rc as c_int;
    }
    // SAFETY: as above.
    let fd = unsafe { libc::open(path, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return -1;
    }
    // SAFETY: a zeroed stat is valid; fstat of the descriptor just opened.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a writable stat; fstat only writes it.
    let rc = if unsafe { libc::fstat(fd, &mut st) } != 0 {
        -1
    } else if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        crate::hook::fail(libc::EOPNOTSUPP)
    } else {
        let mut by_fd = PathBuf::new();
        let mut digits = crate::decimal::Digits::default();
        match by_fd
            .set(b"/proc/self/fd/")
            .and_then(|()| by_fd.push_bytes(crate::decimal::decimal(fd as u64, &mut digits)))
        {
            // SAFETY: a NUL-terminated path.
            Ok(()) => unsafe { libc::chmod(by_fd.as_ptr(), mode) },
            Err(e) => crate::hook::fail(e),
        }
    };
    crate::hook::errno_kept(|| {
        // SAFETY: the descriptor opened above.
        unsafe { libc::close(fd) }
    });
    rc
}
