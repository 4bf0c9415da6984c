//! Fixed-capacity path buffers: the file-system hooks translate paths without
//! allocating (they may run after `fork` in threaded programs and in `vfork`
//! children); only a path longer than 240 bytes takes a buffer, never from the heap
//! in a `vfork` child.

use std::ffi::c_char;
#[cfg(test)]
use std::ffi::CStr;
use std::mem::MaybeUninit;

/// `PATH_MAX`: the longest path the kernel accepts, NUL included.
pub const PATH_MAX: usize = 4096;

/// Paths up to this length live inline, which keeps a `PathBuf` small and cheap to
/// move; longer ones (rare) move to a `Spill`.
const INLINE: usize = 240;

/// A path of at most `PATH_MAX - 1` bytes, kept NUL-terminated.
pub struct PathBuf {
    len: usize,
    /// `inline[..=len]` is initialised while there is no spill.
    inline: MaybeUninit<[u8; INLINE]>,
    /// The path and its NUL once it outgrew `inline`.
    spill: Spill,
}

/// `PATH_MAX` bytes for a long path: from the heap, or, in a child that shares its
/// parent's memory (`vfork`, `posix_spawn`), from a private mapping. malloc there
/// works on the parent's heap, under the parent's locks, and an exec that succeeds
/// never gives back what it took; a mapping takes no lock (it too stays in the
/// parent's memory after such an exec: one page per exec of a long name).
struct Spill {
    /// Null: none.
    buf: *mut u8,
    mapped: bool,
}

// SAFETY: `buf` is owned by its `Spill` alone (like a `Box`), never shared.
unsafe impl Send for Spill {}
// SAFETY: as above; `&Spill` gives no access to `buf` but through `PathBuf`'s
// `&self` methods, which only read.
unsafe impl Sync for Spill {}

impl Spill {
    const NONE: Spill = Spill {
        buf: std::ptr::null_mut(),
        mapped: false,
    };

    /// A zeroed buffer of `PATH_MAX` bytes; `None` if the memory cannot be had.
    fn new() -> Option<Spill> {
        if crate::runtime::in_shared_memory_child() {
            // SAFETY: a fresh private anonymous mapping of PATH_MAX bytes, owned by
            // the returned Spill and unmapped by its drop.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    PATH_MAX,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            return (addr != libc::MAP_FAILED).then(|| Spill {
                buf: addr.cast(),
                mapped: true,
            });
        }
        let buf = Box::into_raw(vec![0u8; PATH_MAX].into_boxed_slice());
        Some(Spill {
            buf: buf.cast(),
            mapped: false,
        })
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if self.buf.is_null() {
            return;
        }
        if self.mapped {
            // SAFETY: exactly the mapping Spill::new made.
            unsafe { libc::munmap(self.buf.cast(), PATH_MAX) };
        } else {
            // SAFETY: the boxed slice of PATH_MAX bytes Spill::new leaked.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.buf, PATH_MAX)) });
        }
    }
}

/// The error of a path that does not fit.
pub const TOO_LONG: i32 = libc::ENAMETOOLONG;

impl PathBuf {
    pub const fn new() -> PathBuf {
        let mut inline = MaybeUninit::<[u8; INLINE]>::uninit();
        // SAFETY: writing the first byte of the buffer we own.
        unsafe { (inline.as_mut_ptr() as *mut u8).write(0) };
        PathBuf {
            len: 0,
            inline,
            spill: Spill::NONE,
        }
    }

    fn base(&self) -> *const u8 {
        if self.spill.buf.is_null() {
            self.inline.as_ptr() as *const u8
        } else {
            self.spill.buf
        }
    }

    fn base_mut(&mut self) -> *mut u8 {
        if self.spill.buf.is_null() {
            self.inline.as_mut_ptr() as *mut u8
        } else {
            self.spill.buf
        }
    }

    /// `/`.
    pub fn root() -> PathBuf {
        let mut p = PathBuf::new();
        let _ = p.push_bytes(b"/");
        p
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<PathBuf, i32> {
        let mut p = PathBuf::new();
        p.push_bytes(bytes)?;
        Ok(p)
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised.
        unsafe { std::slice::from_raw_parts(self.base(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_root(&self) -> bool {
        self.as_bytes() == b"/"
    }

    pub fn as_ptr(&self) -> *const c_char {
        self.base().cast()
    }

    pub fn as_cstr(&self) -> &std::ffi::CStr {
        // SAFETY: bytes[..=len] is initialised, bytes[len] is 0 and no interior byte
        // is 0 (paths come from C strings or are built from their components).
        unsafe {
            std::ffi::CStr::from_bytes_with_nul_unchecked(std::slice::from_raw_parts(
                self.base(),
                self.len + 1,
            ))
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
        // SAFETY: the buffer has room for the NUL.
        unsafe { self.base_mut().write(0) };
    }

    pub fn set(&mut self, bytes: &[u8]) -> Result<(), i32> {
        self.clear();
        self.push_bytes(bytes)
    }

    /// Appends raw bytes.
    #[inline]
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), i32> {
        let new_len = self.len + bytes.len();
        if new_len >= INLINE || !self.spill.buf.is_null() {
            return self.push_spilled(bytes);
        }
        // SAFETY: the copy and the NUL stay within the inline buffer (new_len <
        // INLINE), which is in use (there is no spill).
        unsafe {
            let base = self.inline.as_mut_ptr() as *mut u8;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(self.len), bytes.len());
            base.add(new_len).write(0);
        }
        self.len = new_len;
        Ok(())
    }

    /// `push_bytes` of a path that is or becomes too long for the inline buffer.
    #[cold]
    fn push_spilled(&mut self, bytes: &[u8]) -> Result<(), i32> {
        let new_len = self.len + bytes.len();
        if new_len >= PATH_MAX {
            return Err(TOO_LONG);
        }
        if self.spill.buf.is_null() && new_len + 1 > INLINE {
            let spill = Spill::new().ok_or(TOO_LONG)?;
            // SAFETY: the `len + 1` initialised inline bytes (path and NUL) fit in
            // the new PATH_MAX-byte buffer, a different allocation.
            unsafe { std::ptr::copy_nonoverlapping(self.base(), spill.buf, self.len + 1) };
            self.spill = spill;
        }
        // SAFETY: the copy and the NUL stay within the buffer (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base_mut().add(self.len),
                bytes.len(),
            );
            self.len = new_len;
            self.base_mut().add(self.len).write(0);
        }
        Ok(())
    }

    /// Appends `/name` (just `name` after a trailing `/`).
    pub fn push_component(&mut self, name: &[u8]) -> Result<(), i32> {
        if self.len == 0 || self.as_bytes()[self.len - 1] != b'/' {
            self.push_bytes(b"/")?;
        }
        self.push_bytes(name)
    }

    /// Removes the last component; `/` stays `/`.
    pub fn pop(&mut self) {
        let bytes = self.as_bytes();
        let cut = match bytes.iter().rposition(|&b| b == b'/') {
            Some(0) | None => 1,
            Some(i) => i,
        };
        self.len = cut.min(self.len);
        // SAFETY: within the initialised part.
        unsafe { self.base_mut().add(self.len).write(0) };
    }

    /// The last component (empty for `/`).
    pub fn file_name(&self) -> &[u8] {
        let bytes = self.as_bytes();
        match bytes.iter().rposition(|&b| b == b'/') {
            Some(i) => &bytes[i + 1..],
            None => bytes,
        }
    }

    /// Everything before the last component (`/` for a top-level name).
    pub fn parent_bytes(&self) -> &[u8] {
        let bytes = self.as_bytes();
        match bytes.iter().rposition(|&b| b == b'/') {
            Some(0) => b"/",
            Some(i) => &bytes[..i],
            None => b"",
        }
    }

    /// Whether the path is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `prefix` followed by this capsule path (`/` alone adds nothing after prefix).
    #[cfg(test)]
    pub fn prefixed(prefix: &[u8], path: &[u8]) -> Result<PathBuf, i32> {
        let mut p = PathBuf::new();
        p.set_prefixed(prefix, path)?;
        Ok(p)
    }

    /// Sets this buffer to `prefix` followed by capsule path `path` (`/` alone adds
    /// nothing after `prefix`).
    pub fn set_prefixed(&mut self, prefix: &[u8], path: &[u8]) -> Result<(), i32> {
        self.set(prefix)?;
        if path != b"/" {
            if prefix.ends_with(b"/") {
                self.push_bytes(&path[1..])
            } else {
                self.push_bytes(path)
            }
        } else if self.len == 0 {
            self.push_bytes(b"/")
        } else {
            Ok(())
        }
    }
}

impl Default for PathBuf {
    fn default() -> Self {
        PathBuf::new()
    }
}

impl std::fmt::Debug for PathBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Whether `path` is `prefix` or lies below it (component-wise).
#[inline]
pub fn is_within(path: &[u8], prefix: &[u8]) -> bool {
    if prefix == b"/" {
        return path.starts_with(b"/");
    }
    // The cheap tests first: most paths fail on the length or the byte after.
    let n = prefix.len();
    path.len() >= n && (path.len() == n || path[n] == b'/') && path[..n] == *prefix
}

/// The longest name of one path component (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Whether absolute `path` is plain: `/`, or `/` and components each followed by one
/// `/` but the last, none empty or `.`, and none `..` unless `dotdot`.
pub fn is_plain(path: &[u8], dotdot: bool) -> bool {
    let s = shape(path, usize::MAX);
    s.clean && (dotdot || !s.dotdot)
}

/// What one pass over a path finds out.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// A component is longer than the limit given (the rest is then unknown:
    /// false).
    pub over: bool,
    /// Absolute, with no empty component (`//`, a trailing `/`) and no `.`: `/`, or
    /// components each after one `/`.
    pub clean: bool,
    /// A component is `..`.
    pub dotdot: bool,
    /// Plain as the path cache wants it: clean, no `..`, not `/` itself.
    pub plain: bool,
}

/// The shape of `path`, with `max` the longest component allowed, in one pass.
pub fn shape(path: &[u8], max: usize) -> Shape {
    let n = path.len();
    let mut clean = n > 0 && path[0] == b'/';
    let mut dotdot = false;
    // Each component in turn: path[start..end], up to the next `/` or the end.
    let mut start = 0usize;
    loop {
        let end = match path[start..].iter().position(|&b| b == b'/') {
            Some(at) => start + at,
            None => n,
        };
        let name = &path[start..end];
        if name.len() > max {
            return Shape {
                over: true,
                clean: false,
                dotdot: false,
                plain: false,
            };
        }
        match name {
            // Before a leading `/`, and after the `/` of the root alone: no
            // component; anywhere else an empty one (`//`, a trailing `/`).
            [] if end == 0 || n == 1 => {}
            [] | [b'.'] => clean = false,
            [b'.', b'.'] => dotdot = true,
            _ => {}
        }
        if end == n {
            break;
        }
        start = end + 1;
    }
    Shape {
        over: false,
        clean,
        dotdot,
        plain: clean && !dotdot && n >= 2,
    }
}

/// The components of a path, skipping empty ones and `.`.
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pop_and_names() {
        let mut p = PathBuf::root();
        p.push_component(b"etc").unwrap();
        p.push_component(b"passwd").unwrap();
        assert_eq!(p.as_bytes(), b"/etc/passwd");
        assert_eq!(p.file_name(), b"passwd");
        assert_eq!(p.parent_bytes(), b"/etc");
        p.pop();
        assert_eq!(p.as_bytes(), b"/etc");
        assert_eq!(p.parent_bytes(), b"/");
        p.pop();
        assert_eq!(p.as_bytes(), b"/");
        p.pop();
        assert_eq!(p.as_bytes(), b"/");
        assert_eq!(p.as_cstr().to_bytes(), b"/");
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            PathBuf::prefixed(b"/up", b"/etc/x").unwrap().as_bytes(),
            b"/up/etc/x"
        );
        assert_eq!(PathBuf::prefixed(b"/up", b"/").unwrap().as_bytes(), b"/up");
        assert_eq!(
            PathBuf::prefixed(b"/", b"/etc").unwrap().as_bytes(),
            b"/etc"
        );
        assert!(is_within(b"/var/lib/app/x", b"/var/lib/app"));
        assert!(is_within(b"/var/lib/app", b"/var/lib/app"));
        assert!(!is_within(b"/var/lib/apple", b"/var/lib/app"));
        assert!(is_within(b"/x", b"/"));
        let parts: Vec<&[u8]> = components(b"//a/./b/../c/").collect();
        assert_eq!(parts, vec![&b"a"[..], b"b", b"..", b"c"]);
    }

    #[test]
    fn long_paths_move_to_a_spill_buffer() {
        let mut p = PathBuf::root();
        for _ in 0..100 {
            p.push_component(b"component").unwrap();
        }
        assert_eq!(p.len(), 1000);
        assert!(p.as_bytes().starts_with(b"/component/component"));
        assert_eq!(p.file_name(), b"component");
        p.pop();
        assert_eq!(p.len(), 990);
        assert_eq!(p.as_cstr().to_bytes().len(), 990);
        let copy = PathBuf::from_bytes(p.as_bytes()).unwrap();
        assert_eq!(copy.as_bytes(), p.as_bytes());
    }

    #[test]
    fn plain_paths() {
        for p in [&b"/"[..], b"/a", b"/usr/lib/x", b"/a/..b/.c"] {
            assert!(is_plain(p, false), "{:?}", String::from_utf8_lossy(p));
        }
        assert!(is_plain(b"/a/../b", true));
        for p in [
            &b""[..],
            b"a/b",
            b"//",
            b"/a//b",
            b"/a/./b",
            b"/a/.",
            b"/a/",
            b"/a/../b",
            b"/..",
        ] {
            assert!(!is_plain(p, false), "{:?}", String::from_utf8_lossy(p));
        }
        for p in [
            &b"/"[..],
            b"/a",
            b"/a/b",
            b"/...",
            b"a/b",
            b"//a",
            b"/a/./b",
            b"/a/../b",
            b"/a/",
            b"/a/.",
            b"/a/..",
            b"/.a/b.",
            b"../x",
            b".",
        ] {
            let s = shape(p, NAME_MAX);
            let text = String::from_utf8_lossy(p);
            assert_eq!(s.plain, p.len() >= 2 && is_plain(p, false), "{text:?}");
            assert_eq!(s.dotdot, components(p).any(|c| c == b".."), "{text:?}");
            assert!(!s.over);
        }
        assert!(shape(b"/abc/d", 2).over);
        assert!(!shape(b"/ab/cd/", 2).over);
    }

    #[test]
    fn shapes_match_their_definitions() {
        // Every path of up to 7 bytes of `/`, `.` and `a`.
        let mut paths: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=7 {
            let mut longer = Vec::new();
            for p in paths.iter().filter(|p| p.len() == len - 1) {
                for b in [b'/', b'.', b'a'] {
                    let mut q = p.clone();
                    q.push(b);
                    longer.push(q);
                }
            }
            paths.extend(longer);
        }
        for p in &paths {
            let text = String::from_utf8_lossy(p);
            let plain = |dotdot: bool| {
                p.as_slice() == b"/"
                    || (p.first() == Some(&b'/')
                        && p[1..]
                            .split(|&b| b == b'/')
                            .all(|c| !c.is_empty() && c != b"." && (dotdot || c != b"..")))
            };
            let s = shape(p, NAME_MAX);
            assert_eq!(s.clean, plain(true), "{text:?}");
            assert_eq!(s.plain, p.len() >= 2 && plain(false), "{text:?}");
            assert_eq!(s.dotdot, components(p).any(|c| c == b".."), "{text:?}");
            let over = components(p).any(|c| c.len() > 2);
            assert_eq!(shape(p, 2).over, over, "{text:?}");
        }
    }

    #[test]
    fn too_long() {
        let long = vec![b'a'; PATH_MAX];
        assert_eq!(PathBuf::from_bytes(&long).unwrap_err(), TOO_LONG);
    }
}
