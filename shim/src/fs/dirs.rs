//! Directory listings of the capsule: a directory present in the upper and the
//! lower layer lists each name once, without whiteouts or markers, and without the
//! names the upper layer deleted.
//!
//! A merged directory is read once when it is opened (a snapshot, as `readdir` of a
//! directory being changed may or may not show the changes anyway) and served from
//! memory through a stream of our own, which `readdir` & co. recognise through a
//! registry of live streams. A directory that exists in one layer only is opened
//! for real and costs nothing extra.

use std::collections::HashSet;
use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::layers::{Found, Layers, Node, Place, COPYUP_PREFIX, OPAQUE_MARKER, WHITEOUT_PREFIX};
use super::path::PathBuf;
use super::sys;
use crate::hook::errno;

/// A directory stream served from a merged snapshot.
pub struct MergedDir {
    /// A descriptor of the directory (for `dirfd`, `fchdir`, `*at` calls).
    pub fd: c_int,
    entries: Vec<libc::dirent64>,
    pos: usize,
    current: libc::dirent64,
}

fn zeroed_dirent() -> libc::dirent64 {
    // SAFETY: dirent64 is plain data.
    unsafe { std::mem::zeroed() }
}

fn name_of(entry: &libc::dirent64) -> &[u8] {
    // SAFETY: d_name is NUL-terminated within its array.
    unsafe { std::ffi::CStr::from_ptr(entry.d_name.as_ptr()) }.to_bytes()
}

/// Reads every entry of a host directory.
fn read_all(host: &PathBuf) -> Result<Vec<libc::dirent64>, c_int> {
    let mut out = Vec::new();
    // SAFETY: a NUL-terminated path; the stream is closed before returning.
    unsafe {
        let dir = libc::opendir(host.as_ptr());
        if dir.is_null() {
            return Err(errno());
        }
        loop {
            let entry = libc::readdir64(dir.cast());
            if entry.is_null() {
                break;
            }
            out.push(*entry);
        }
        libc::closedir(dir);
    }
    Ok(out)
}

/// The merged entries of an overlay directory, or `None` when it lies in the lower
/// layer only (then the real directory lists exactly what the capsule sees).
pub fn merged(layers: &Layers, node: &Node) -> Result<Option<Vec<libc::dirent64>>, c_int> {
    if node.place != Place::Overlay || layers.upper.is_none() {
        return Ok(None);
    }
    let upper = layers.upper_host(node.capsule.as_bytes())?;
    // SAFETY: zeroed stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // A lower node was looked up in the upper layer first and is not there; only the
    // root is reported as lower while the upper layer has it too.
    let in_upper = node.found == Found::Upper
        || node.capsule.is_root()
            && sys::lstat(&upper, &mut st)
            && st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if !in_upper {
        return Ok(None);
    }
    // A directory of the upper layer alone (no lower directory shows through, not
    // opaque, so no markers in it) is listed as it is.
    if !node.capsule.is_root() {
        let lower_shows = node.lower_visible
            && layers
                .lower_host(node.capsule.as_bytes())
                .map(|p| sys::lstat(&p, &mut st) && st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .unwrap_or(false);
        let mut marker = PathBuf::from_bytes(upper.as_bytes())?;
        marker.push_component(OPAQUE_MARKER)?;
        if !lower_shows && !sys::exists(&marker) {
            return Ok(None);
        }
    }
    let mut entries = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut opaque = false;
    for entry in read_all(&upper)? {
        let name = name_of(&entry);
        if name == OPAQUE_MARKER {
            opaque = true;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            seen.insert(hidden.to_vec());
        } else if !name.starts_with(COPYUP_PREFIX) {
            seen.insert(name.to_vec());
            entries.push(entry);
        }
    }
    if node.lower_visible && !opaque {
        let lower = layers.lower_host(node.capsule.as_bytes())?;
        if sys::lstat(&lower, &mut st) && st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            for entry in lower_entries(&lower)? {
                if !seen.contains(name_of(&entry)) {
                    entries.push(entry);
                }
            }
        }
    }
    Ok(Some(entries))
}

/// The entries of the lower half of a merged directory. One the real user may
/// neither list nor search (apt's `lists/partial`, 0700 `_apt`) adds nothing: none
/// of its names could be reached through it anyway, and the capsule's own entries
/// are in the upper copy. One it may search but not list is refused, as the kernel
/// refuses it.
fn lower_entries(lower: &PathBuf) -> Result<Vec<libc::dirent64>, c_int> {
    match read_all(lower) {
        // SAFETY: a NUL-terminated path.
        Err(libc::EACCES) if unsafe { libc::access(lower.as_ptr(), libc::X_OK) } != 0 => {
            log::info!("{lower:?}: not listed, the real user may not read it");
            Ok(Vec::new())
        }
        other => other,
    }
}

/// Whether a directory has entries besides `.` and `..` in the capsule's view.
pub fn has_entries(layers: &Layers, node: &Node) -> Result<bool, c_int> {
    let entries = match merged(layers, node)? {
        Some(entries) => entries,
        None => read_all(&node.host)?,
    };
    Ok(entries.iter().any(|e| !matches!(name_of(e), b"." | b"..")))
}

/// Removes the whiteouts and markers of an upper directory about to be removed.
pub fn clear_markers(upper_dir: &PathBuf) -> Result<(), c_int> {
    for entry in read_all(upper_dir)? {
        let name = name_of(&entry);
        if name.starts_with(WHITEOUT_PREFIX) || name.starts_with(COPYUP_PREFIX) {
            let mut p = PathBuf::from_bytes(upper_dir.as_bytes())?;
            p.push_component(name)?;
            match sys::unlink(&p) {
                // A copy-up's temporary directory (empty until it is renamed).
                // SAFETY: NUL-terminated path.
                Err(libc::EISDIR) if unsafe { libc::rmdir(p.as_ptr()) } == 0 => {}
                r => r?,
            }
        }
    }
    Ok(())
}

/// Live merged streams, by address (open addressing; 0 is empty, 1 is a removed
/// entry), so that `readdir` can tell them from glibc's own.
mod registry {
    use super::*;

    /// The most merged streams a process has open at once (128 KiB of zeroed,
    /// untouched-until-used memory); one more fails with `EMFILE`.
    pub const SLOTS: usize = 16384;
    const GONE: usize = 1;
    static TABLE: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

    fn start(addr: usize) -> usize {
        (addr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) % SLOTS
    }

    pub fn insert(addr: usize) -> bool {
        let first = start(addr);
        for i in 0..SLOTS {
            let slot = &TABLE[(first + i) % SLOTS];
            let cur = slot.load(Ordering::Relaxed);
            if (cur == 0 || cur == GONE)
                && slot
                    .compare_exchange(cur, addr, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
        }
        false
    }

    pub fn contains(addr: usize) -> bool {
        let first = start(addr);
        for i in 0..SLOTS {
            match TABLE[(first + i) % SLOTS].load(Ordering::Acquire) {
                0 => return false,
                a if a == addr => return true,
                _ => {}
            }
        }
        false
    }

    pub fn remove(addr: usize) {
        let first = start(addr);
        for i in 0..SLOTS {
            let slot = &TABLE[(first + i) % SLOTS];
            match slot.load(Ordering::Acquire) {
                0 => return,
                a if a == addr => {
                    // The end of a probe chain may become empty again, so that
                    // lookups of glibc's own streams stay short.
                    let next = &TABLE[(first + i + 1) % SLOTS];
                    let end = next.load(Ordering::Acquire) == 0;
                    slot.store(if end { 0 } else { GONE }, Ordering::Release);
                    return;
                }
                _ => {}
            }
        }
    }
}

/// A merged stream for `fd` (which it then owns), as an opaque `DIR *`; null when
/// [`registry::SLOTS`] are open (`fd` then stays the caller's).
pub fn open_merged(fd: c_int, entries: Vec<libc::dirent64>) -> *mut libc::DIR {
    let stream = Box::new(MergedDir {
        fd,
        entries,
        pos: 0,
        current: zeroed_dirent(),
    });
    let raw = Box::into_raw(stream);
    if registry::insert(raw as usize) {
        raw.cast()
    } else {
        // SAFETY: we just made this box and nobody else has seen it.
        drop(unsafe { Box::from_raw(raw) });
        std::ptr::null_mut()
    }
}

/// The merged stream behind a `DIR *`, if it is one of ours.
pub fn ours(dir: *mut libc::DIR) -> Option<&'static mut MergedDir> {
    if dir.is_null() || !registry::contains(dir as usize) {
        return None;
    }
    // SAFETY: registered addresses are live MergedDir boxes until closed.
    Some(unsafe { &mut *(dir as *mut MergedDir) })
}

impl MergedDir {
    /// The next entry, or null at the end (errno untouched, as readdir does).
    pub fn next(&mut self) -> *mut libc::dirent64 {
        let Some(entry) = self.entries.get(self.pos) else {
            return std::ptr::null_mut();
        };
        self.pos += 1;
        self.current = *entry;
        self.current.d_off = self.pos as i64;
        &mut self.current
    }

    pub fn rewind(&mut self) {
        self.pos = 0;
    }

    pub fn tell(&self) -> libc::c_long {
        self.pos as libc::c_long
    }

    pub fn seek(&mut self, pos: libc::c_long) {
        self.pos = (pos.max(0) as usize).min(self.entries.len());
    }
}

/// Closes one of our streams and its descriptor.
pub fn close(dir: *mut libc::DIR) -> c_int {
    registry::remove(dir as usize);
    // SAFETY: the caller checked this is a live MergedDir; it is now unregistered.
    let stream = unsafe { Box::from_raw(dir as *mut MergedDir) };
    // SAFETY: the stream owns its descriptor.
    unsafe { libc::close(stream.fd) }
}
