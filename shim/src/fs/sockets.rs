//! Unix socket paths are capsule paths: `bind` creates the socket file in the
//! capsule's layers (or a volume), `connect` finds it there, and every address the
//! kernel reports (`getsockname`, `getpeername`, `accept`, the source of a
//! datagram) shows the capsule path again. Abstract names (a leading NUL) and
//! unnamed sockets are not paths and pass through.
//!
//! A socket path is limited to 107 bytes (`sun_path`), and the host path of a name
//! in the upper layer is longer than the capsule path. When it does not fit, the
//! kernel is given `/proc/self/fd/N/NAME`, where N is the host directory opened for
//! the call: short whatever the layer's location, and resolved by the kernel to the
//! real directory.
//!
//! The kernel reports a bound socket's address as bind was given it: the host path
//! or that pin. `capsule_name` turns it back: by the socket's inode for the socket
//! this process (or this supervisor) bound, by the kernel's string for an address
//! this process bound (a peer in the same process, an accepted connection), else a
//! host path through the layers, else (a pin made by another process) the capsule
//! path this socket was connected to.

use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::seqlock::SeqCount;

use super::ops::{self, Op, Skip};
use super::path::PathBuf;
use super::Layers;

const SUN_PATH: usize = 108;

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

impl HostAddress {
    /// The path the kernel is given (a host path or a `/proc/self/fd` pin).
    pub fn kernel_path(&self) -> &[u8] {
        let family = std::mem::size_of::<libc::sa_family_t>();
        let n = (self.len as usize).saturating_sub(family + 1);
        // SAFETY: c_char and u8 have one layout; `n` bytes of `sun_path` were set.
        unsafe { std::slice::from_raw_parts(self.addr.sun_path.as_ptr().cast(), n) }
    }

    /// Whether the kernel is given a pin rather than the host path.
    pub fn pinned(&self) -> bool {
        self.dir >= 0
    }
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

/// connect (and a datagram's destination): the socket file is looked up in the
/// capsule.
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

/// The most bytes of a path either side of a remembered socket (`sun_path`).
const WORDS: usize = SUN_PATH.div_ceil(8);

/// One remembered socket, under a seqlock (`seq` odd while it is written): its
/// inode, the path the kernel was given and the capsule path.
struct Slot {
    /// 0: never written.
    seq: SeqCount,
    ino: AtomicU64,
    /// The two lengths, `kernel << 8 | capsule`.
    lens: AtomicU64,
    kernel: [AtomicU64; WORDS],
    capsule: [AtomicU64; WORDS],
}

/// A ring of remembered sockets: the newest overwrite the oldest, and nothing is
/// allocated or freed (a reader in another thread, a forked child, a signal
/// handler all see whole entries or none).
struct Ring<const N: usize> {
    slots: [Slot; N],
    next: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // a template for the arrays below
const SLOT: Slot = Slot {
    seq: SeqCount::new(),
    ino: AtomicU64::new(0),
    lens: AtomicU64::new(0),
    kernel: [const { AtomicU64::new(0) }; WORDS],
    capsule: [const { AtomicU64::new(0) }; WORDS],
};

/// Sockets bound to a path here: the address the kernel reports for them.
static BOUND: Ring<256> = Ring {
    slots: [SLOT; 256],
    next: AtomicUsize::new(0),
};
/// Sockets connected here through a pin (another process's, which only the path
/// this process connected to names).
static CONNECTED: Ring<64> = Ring {
    slots: [SLOT; 64],
    next: AtomicUsize::new(0),
};

fn store(words: &[AtomicU64; WORDS], bytes: &[u8]) {
    for (i, w) in words.iter().enumerate() {
        let mut b = [0u8; 8];
        let from = (i * 8).min(bytes.len());
        let to = (i * 8 + 8).min(bytes.len());
        b[..to - from].copy_from_slice(&bytes[from..to]);
        w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
    }
}

fn load(words: &[AtomicU64; WORDS], out: &mut [u8; WORDS * 8]) {
    for (i, w) in words.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
    }
}

/// A remembered socket, as read.
struct Entry {
    ino: u64,
    kernel: [u8; WORDS * 8],
    kernel_len: usize,
    capsule: [u8; WORDS * 8],
    capsule_len: usize,
}

impl<const N: usize> Ring<N> {
    fn put(&self, ino: u64, kernel: &[u8], capsule: &[u8]) {
        if kernel.len() > SUN_PATH || capsule.len() > SUN_PATH {
            return;
        }
        // A slot another writer holds (one that wrapped round, or a thread that
        // was writing when this process was forked from its own, and never
        // finishes here) is passed over for the next.
        for _ in 0..4 {
            let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % N];
            let Some(_write) = slot.seq.try_write() else {
                continue;
            };
            slot.ino.store(ino, Ordering::Relaxed);
            slot.lens.store(
                (kernel.len() as u64) << 8 | capsule.len() as u64,
                Ordering::Relaxed,
            );
            store(&slot.kernel, kernel);
            store(&slot.capsule, capsule);
            return;
        }
    }

    /// The newest entry `wanted` accepts.
    fn find(&self, wanted: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let newest = self.next.load(Ordering::Relaxed);
        for back in 1..=N.min(newest) {
            let slot = &self.slots[(newest - back) % N];
            for _ in 0..64 {
                let Some(before) = slot.seq.read_begin() else {
                    std::hint::spin_loop();
                    continue;
                };
                if before == 0 {
                    break;
                }
                let mut e = Entry {
                    ino: slot.ino.load(Ordering::Relaxed),
                    kernel: [0; WORDS * 8],
                    kernel_len: 0,
                    capsule: [0; WORDS * 8],
                    capsule_len: 0,
                };
                let lens = slot.lens.load(Ordering::Relaxed);
                load(&slot.kernel, &mut e.kernel);
                load(&slot.capsule, &mut e.capsule);
                if !slot.seq.read_valid(before) {
                    continue;
                }
                e.kernel_len = (lens >> 8) as usize;
                e.capsule_len = (lens & 0xff) as usize;
                if wanted(&e) {
                    return Some(e);
                }
                break;
            }
        }
        None
    }
}

/// The inode of socket `fd` (its identity across `dup`, `fork` and the
/// supervisor's copies of a target's descriptor), if it is a socket.
fn socket_inode(fd: c_int) -> Option<u64> {
    // SAFETY: zeroed stat is valid plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a stat buffer to fill; fstat of a closed number just fails.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    (ok && st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

/// Remembers that socket `fd` was bound to capsule path `capsule` (as the program
/// gave it) through kernel address `host`.
pub fn bound(fd: c_int, host: &HostAddress, capsule: &PathBuf) {
    if let Some(ino) = socket_inode(fd) {
        BOUND.put(ino, host.kernel_path(), capsule.as_bytes());
    }
}

/// Remembers that socket `fd` was connected to capsule path `capsule` through a pin
/// (what the kernel will report as its peer names nothing outside the binder).
pub fn connected(fd: c_int, host: &HostAddress, capsule: &[u8]) {
    if !host.pinned() {
        return;
    }
    if let Some(ino) = socket_inode(fd) {
        CONNECTED.put(ino, host.kernel_path(), capsule);
    }
}

/// Which address of a socket the kernel reported.
#[derive(Clone, Copy, PartialEq)]
pub enum Reported {
    /// getsockname: the socket's own.
    Own,
    /// getpeername: the peer it is connected to.
    Peer,
    /// accept's peer, a datagram's source.
    Source,
}

/// The capsule path to show for unix path `kernel` that the kernel reported for
/// socket `fd`, into `out`; false when it has none (the address stays as it is).
pub fn capsule_name(
    layers: &Layers,
    fd: c_int,
    kernel: &[u8],
    which: Reported,
    out: &mut PathBuf,
) -> bool {
    let ino = socket_inode(fd);
    let hit = |e: Entry, out: &mut PathBuf| out.set(&e.capsule[..e.capsule_len]).is_ok();
    if let (Reported::Own, Some(ino)) = (which, ino) {
        if let Some(e) = BOUND.find(|e| e.ino == ino) {
            return hit(e, out);
        }
    }
    if let Some(e) = BOUND.find(|e| &e.kernel[..e.kernel_len] == kernel) {
        return hit(e, out);
    }
    if kernel.first() == Some(&b'/') && !kernel.starts_with(b"/proc/self/fd/") {
        return layers.reverse_into(kernel, out);
    }
    if let (Reported::Peer, Some(ino)) = (which, ino) {
        if let Some(e) = CONNECTED.find(|e| e.ino == ino) {
            return hit(e, out);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_finds_the_newest_entry_and_forgets_the_oldest() {
        let ring: Ring<4> = Ring {
            slots: [SLOT; 4],
            next: AtomicUsize::new(0),
        };
        assert!(ring.find(|_| true).is_none());
        ring.put(7, b"/proc/self/fd/3/s", b"/tmp/s");
        ring.put(8, b"/proc/self/fd/3/s", b"/run/s");
        let by_kernel = ring.find(|e| &e.kernel[..e.kernel_len] == b"/proc/self/fd/3/s");
        let e = by_kernel.expect("newest for that string");
        assert_eq!((e.ino, &e.capsule[..e.capsule_len]), (8, &b"/run/s"[..]));
        let e = ring.find(|e| e.ino == 7).expect("by inode");
        assert_eq!(&e.capsule[..e.capsule_len], b"/tmp/s");
        // The longest path sun_path holds, both sides.
        let long = [b'x'; SUN_PATH];
        ring.put(9, &long, &long);
        let e = ring.find(|e| e.ino == 9).expect("long entry");
        assert_eq!((e.kernel_len, e.capsule_len), (SUN_PATH, SUN_PATH));
        assert_eq!(&e.capsule[..SUN_PATH], &long[..]);
        for ino in 10..13 {
            ring.put(ino, b"k", b"c");
        }
        assert!(ring.find(|e| e.ino == 7).is_none(), "overwritten");
        assert!(ring.find(|e| e.ino == 9).is_some());
    }
}
