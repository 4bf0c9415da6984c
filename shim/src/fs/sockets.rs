//! Unix socket paths are capsule paths: `bind` creates the socket file in the
//! capsule's layers (or a volume), `connect` finds it there, `getsockname` answers
//! with the capsule path. Abstract names (a leading NUL) are not paths and pass
//! through.
//!
//! A socket path is limited to 107 bytes (`sun_path`), and the host path of a name
//! in the upper layer is longer than the capsule path. So the kernel is given
//! `/proc/self/fd/N/NAME`, where N is the host directory opened for the call: short
//! whatever the layer's location, and resolved by the kernel to the real directory.

use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

use super::ops::{self, Op, Skip};
use super::path::PathBuf;
use super::Layers;

const SUN_PATH: usize = 108;

/// The capsule path each bound socket descriptor was bound to (for getsockname).
const NAMED: usize = 1024;
static NAMES: [AtomicPtr<u8>; NAMED] = [const { AtomicPtr::new(std::ptr::null_mut()) }; NAMED];

/// The path of a unix socket address, if it is a path (not abstract or unnamed).
///
/// # Safety
/// `addr` is null or valid for `len` bytes.
pub unsafe fn path_of<'a>(addr: *const libc::sockaddr, len: libc::socklen_t) -> Option<&'a [u8]> {
    if addr.is_null() || (len as usize) <= std::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: `addr` is non-null and valid for `len` bytes, more than its family field.
    if c_int::from(unsafe { (*addr).sa_family }) != libc::AF_UNIX {
        return None;
    }
    let max = (len as usize - std::mem::size_of::<libc::sa_family_t>()).min(SUN_PATH);
    // SAFETY: `sun_path` follows the family field, and `max` bytes from it stay within
    // the `len` valid bytes of `addr` (read as bytes: no reference to a whole
    // `sockaddr_un`, which the caller's shorter address may not hold).
    let bytes = unsafe {
        let path = addr
            .cast::<u8>()
            .add(std::mem::offset_of!(libc::sockaddr_un, sun_path));
        std::slice::from_raw_parts(path, max)
    };
    if bytes.first().copied().unwrap_or(0) == 0 {
        return None;
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Some(&bytes[..end])
}

/// A socket address the kernel can take for `host`, and the directory descriptor it
/// goes through (to close after the call).
pub struct HostAddress {
    pub addr: libc::sockaddr_un,
    pub len: libc::socklen_t,
    dir: c_int,
}

impl Drop for HostAddress {
    fn drop(&mut self) {
        if self.dir >= 0 {
            // SAFETY: `dir` was opened by host_address for this address and is closed
            // only here.
            unsafe { libc::close(self.dir) };
        }
    }
}

fn host_address(host: &PathBuf) -> Op<HostAddress> {
    // SAFETY: sockaddr_un is plain data, for which all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let mut dir = -1;
    let mut short = PathBuf::new();
    if host.len() < SUN_PATH {
        short.push_bytes(host.as_bytes())?;
    } else {
        let parent = PathBuf::from_bytes(host.parent_bytes())?;
        // SAFETY: `parent` is a NUL-terminated path; open reads only it.
        dir = unsafe {
            libc::open(
                parent.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if dir < 0 {
            return Err(Skip::Errno(crate::hook::errno()));
        }
        short.push_bytes(b"/proc/self/fd/")?;
        short.push_bytes(crate::decimal::decimal(dir as u64, &mut Default::default()))?;
        short.push_component(host.file_name())?;
        if short.len() >= SUN_PATH {
            // SAFETY: `dir` is the descriptor opened above, closed once, here.
            unsafe { libc::close(dir) };
            return Err(Skip::Errno(libc::ENAMETOOLONG));
        }
    }
    for (slot, &b) in addr.sun_path.iter_mut().zip(short.as_bytes()) {
        *slot = b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + short.len() + 1) as libc::socklen_t;
    Ok(HostAddress { addr, len, dir })
}

fn capsule_cstr(path: &[u8]) -> Op<PathBuf> {
    Ok(PathBuf::from_bytes(path)?)
}

/// bind: the socket file is created in the capsule.
pub fn bind(layers: &Layers, path: &[u8]) -> Op<(HostAddress, PathBuf, PathBuf)> {
    let name = capsule_cstr(path)?;
    // SAFETY: PathBuf is NUL-terminated without interior NULs, and `name` outlives
    // `cstr`.
    let cstr = unsafe { CStr::from_ptr(name.as_ptr()) };
    let node = ops::lookup(layers, libc::AT_FDCWD, cstr, false)?;
    if node.exists() {
        return Err(Skip::Errno(libc::EADDRINUSE));
    }
    let (host, _) = ops::for_create(layers, &node)?;
    let address = host_address(&host)?;
    // getsockname returns the path as it was given, as the kernel does.
    Ok((address, host, name))
}

/// connect: the socket file is looked up in the capsule.
pub fn connect(layers: &Layers, path: &[u8]) -> Op<HostAddress> {
    let name = capsule_cstr(path)?;
    // SAFETY: as in bind: a NUL-terminated PathBuf that outlives `cstr`.
    let cstr = unsafe { CStr::from_ptr(name.as_ptr()) };
    let node = ops::existing(layers, libc::AT_FDCWD, cstr, true).map_err(|e| match e {
        Skip::Errno(libc::ENOENT) => Skip::Errno(libc::ENOENT),
        other => other,
    })?;
    host_address(&node.host)
}

/// Remembers the capsule path a socket was bound to.
pub fn remember(fd: c_int, capsule: &PathBuf) {
    if fd < 0 || fd as usize >= NAMED {
        return;
    }
    let mut copy = capsule.as_bytes().to_vec();
    copy.push(0);
    let raw = Box::into_raw(copy.into_boxed_slice()) as *mut u8;
    // The previous name of a reused descriptor is leaked rather than freed under a
    // possible concurrent reader: a few bytes per bind.
    NAMES[fd as usize].store(raw, Ordering::Release);
}

/// The capsule path socket `fd` was bound to, if it was bound in this process.
pub fn name_of(fd: c_int) -> Option<&'static CStr> {
    if fd < 0 || fd as usize >= NAMED {
        return None;
    }
    let p = NAMES[fd as usize].load(Ordering::Acquire);
    // SAFETY: stored names are leaked NUL-terminated boxes, never freed.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p.cast()) })
}
