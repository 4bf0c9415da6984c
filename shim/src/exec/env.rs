//! The environment a child gets: the one the program passed, less any stale capsule
//! settings, plus the capsule's current settings and the shim in `LD_PRELOAD`.
//!
//! This runs in `vfork` children (Python's subprocess, posix_spawn-style helpers
//! that call `execve` after `vfork`), so it does not allocate: everything is built in
//! stack buffers, or in a private mapping when the environment is very large.

use std::ffi::{c_char, CStr};
use std::ptr;

use capsule_config::keys;

use crate::decimal::{decimal, Digits};
use crate::identity::state::{CREDS, EFFECTIVE, REAL};
use crate::runtime::{self, Runtime};
use crate::uts::ops::{self as uts_ops, Name};

const LD_PRELOAD: &[u8] = b"LD_PRELOAD";
const STACK_PTRS: usize = 384;
const STACK_TEXT: usize = 8192;
/// Room for the capsule's own entries besides LD_PRELOAD (ids, groups, names, clock).
const DYNAMIC_TEXT: usize = 2048;

extern "C" {
    static environ: *const *const c_char;
}

/// The current process environment.
pub fn current_environ() -> *const *const c_char {
    // SAFETY: reading the pointer value of libc's environ.
    unsafe { environ }
}

/// The key of a `KEY=VALUE` entry.
fn key_of(entry: &[u8]) -> &[u8] {
    match entry.iter().position(|&b| b == b'=') {
        Some(i) => &entry[..i],
        None => entry,
    }
}

/// Whether the child's copy of this entry is replaced by the capsule's.
fn replaced(entry: &[u8]) -> bool {
    let key = key_of(entry);
    key == LD_PRELOAD || keys::ALL.iter().any(|k| k.as_bytes() == key)
}

fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// A bounded byte writer over a caller's buffer.
struct Text<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl Text<'_> {
    fn push(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buf.len() {
            self.overflow = true;
            return;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn push_u32(&mut self, n: u32) {
        self.push(decimal(u64::from(n), &mut Digits::default()));
    }

    fn push_i64(&mut self, n: i64) {
        if n < 0 {
            self.push(b"-");
        }
        self.push(decimal(n.unsigned_abs(), &mut Digits::default()));
    }
}

/// Writes the capsule's changeable settings as NUL-terminated `KEY=VALUE` entries.
fn render_dynamic(rt: &Runtime, out: &mut Text) {
    if CREDS.enabled() {
        // After exec the saved ids are the effective ones (execve(2)).
        for (key, ids) in [(keys::UID, &CREDS.uid), (keys::GID, &CREDS.gid)] {
            out.push(key.as_bytes());
            out.push(b"=");
            out.push_u32(ids.get(REAL));
            for _ in 0..2 {
                out.push(b",");
                out.push_u32(ids.get(EFFECTIVE));
            }
            out.push(b"\0");
        }
        let mut groups = [0u32; capsule_config::MAX_GROUPS];
        let n = CREDS.groups(&mut groups);
        out.push(keys::GROUPS.as_bytes());
        out.push(b"=");
        for (i, g) in groups[..n].iter().enumerate() {
            if i > 0 {
                out.push(b",");
            }
            out.push_u32(*g);
        }
        out.push(b"\0");
    }
    for (key, which) in [
        (keys::HOSTNAME, Name::Host),
        (keys::DOMAINNAME, Name::Domain),
    ] {
        if let Some(name) = uts_ops::current(rt, which) {
            // An empty name cannot be passed as a setting: the child then sees the
            // configured (or host) name.
            if !name.as_bytes().is_empty() && !name.as_bytes().contains(&0) {
                out.push(key.as_bytes());
                out.push(b"=");
                out.push(name.as_bytes());
                out.push(b"\0");
            }
        }
    }
    // The configured offset only: the child reads the adjustment of any
    // clock_settime from the capsule's shared state, as this process does.
    let offset = crate::time::base_offset_ns();
    if offset != 0 {
        out.push(keys::TIME_OFFSET.as_bytes());
        out.push(b"=");
        out.push_i64(offset);
        out.push(b"ns\0");
    }
}

/// Writes `LD_PRELOAD=<shim>[:<the other preloads of `existing`>]`.
fn render_preload(rt: &Runtime, program: *const c_char, existing: Option<&[u8]>, out: &mut Text) {
    let ours = shim_for(rt, program);
    let own = rt.shim_path.as_bytes();
    let other = rt.other_shim.as_bytes();
    out.push(b"LD_PRELOAD=");
    out.push(ours);
    if let Some(value) = existing {
        for item in value.split(|&b| b == b':' || b == b' ' || b == b'\t') {
            if item.is_empty()
                || item == ours
                || basename(item) == basename(own)
                || basename(item) == basename(other)
            {
                continue;
            }
            let mut host = crate::fs::path::PathBuf::new();
            match preload_host(item, &mut host) {
                Some(true) => {
                    out.push(b":");
                    out.push(host.as_bytes());
                }
                Some(false) => {
                    out.push(b":");
                    out.push(item);
                }
                None => log::info!(
                    "LD_PRELOAD entry {:?} is not in the capsule: left out",
                    String::from_utf8_lossy(item)
                ),
            }
        }
    }
    out.push(b"\0");
}

/// The shim the program file `program` (a host path, or null when unknown) loads:
/// this one, or the other C library's when the program's `PT_INTERP` is that
/// library's loader and the other shim is installed beside this one.
fn shim_for(rt: &Runtime, program: *const c_char) -> &[u8] {
    use super::interp::{libc_of, Libc};
    let wanted = libc_of(program);
    let switch = match wanted {
        Libc::Musl => cfg!(not(target_env = "musl")),
        Libc::Glibc => cfg!(target_env = "musl"),
        Libc::Other => false,
    };
    // SAFETY: other_shim is a NUL-terminated path.
    if switch && unsafe { libc::access(rt.other_shim.as_ptr(), libc::R_OK) } == 0 {
        return rt.other_shim.as_bytes();
    }
    if switch {
        log::warn!(
            "{:?} is not installed: the program may not start under this shim",
            rt.other_shim
        );
    }
    rt.shim_path.as_bytes()
}

/// Where the dynamic loader must find an extra `LD_PRELOAD` entry, which it opens
/// itself, unseen by the shim: `Some(true)` with `host` set to the host file a
/// capsule path names, `Some(false)` to keep the entry as it is (a bare name, which
/// the loader searches in the library directories, or a host path an earlier exec
/// of this capsule already translated), `None` for a path the capsule does not have.
fn preload_host(item: &[u8], host: &mut crate::fs::path::PathBuf) -> Option<bool> {
    let Some(layers) = crate::fs::layers() else {
        return Some(false);
    };
    if !item.contains(&b'/') {
        return Some(false);
    }
    let mut buf = [0u8; crate::fs::path::PATH_MAX + 1];
    if item.len() >= crate::fs::path::PATH_MAX {
        return None;
    }
    buf[..item.len()].copy_from_slice(item);
    let name = CStr::from_bytes_until_nul(&buf).ok()?;
    if let Ok(node) = crate::fs::ops::existing(layers, libc::AT_FDCWD, name, true) {
        if node.stat.st_mode & libc::S_IFMT == libc::S_IFREG
            && host.set(node.host.as_bytes()).is_ok()
        {
            return Some(true);
        }
    }
    // Translated by an earlier exec: a host path inside the capsule's layers.
    (layers.root.is_some() && item.starts_with(b"/") && layers.reverse(item).is_some())
        .then_some(false)
}

/// Iterates a NULL-terminated `char *[]`.
///
/// # Safety
/// `list` is null or a valid NULL-terminated array of C strings.
unsafe fn entries<'a>(list: *const *const c_char) -> impl Iterator<Item = &'a CStr> {
    let mut p = list;
    std::iter::from_fn(move || {
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is inside `list`, a valid NULL-terminated array (the caller's
        // contract), and has not gone past its terminating NULL.
        let current = unsafe { *p };
        if current.is_null() {
            return None;
        }
        // SAFETY: a non-null entry of the array is a valid C string, and the NULL that
        // ends the array keeps `p + 1` inside it.
        let entry = unsafe {
            p = p.add(1);
            CStr::from_ptr(current)
        };
        Some(entry)
    })
}

/// A private anonymous mapping, unmapped when dropped (when `exec` fails and
/// returns; on success the whole address space goes away).
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// Calls `f` with the environment a child of this capsule must get, built from
/// `envp` (the one the program passed).
///
/// # Safety
/// `envp` is null or a valid NULL-terminated array of C strings.
pub unsafe fn with_child_env<R>(
    program: *const c_char,
    envp: *const *const c_char,
    f: impl FnOnce(*const *const c_char) -> R,
) -> R {
    let rt = runtime::get();
    let mut count = 0usize;
    let mut existing_preload: Option<&[u8]> = None;
    // SAFETY: `envp` is null or a valid NULL-terminated array (this function's contract).
    for entry in unsafe { entries(envp) } {
        let bytes = entry.to_bytes();
        count += 1;
        if key_of(bytes) == LD_PRELOAD && bytes.len() > LD_PRELOAD.len() {
            existing_preload = Some(&bytes[LD_PRELOAD.len() + 1..]);
        }
    }
    let ptrs_needed = count + rt.static_env.len() + 16;
    let text_needed = DYNAMIC_TEXT
        + rt.shim_path
            .as_bytes()
            .len()
            .max(rt.other_shim.as_bytes().len())
        + existing_preload.map_or(0, <[u8]>::len)
        + 32;

    let mut stack_ptrs = [ptr::null::<c_char>(); STACK_PTRS];
    let mut stack_text = [0u8; STACK_TEXT];
    let _mapping;
    let (ptrs, text): (&mut [*const c_char], &mut [u8]) =
        if ptrs_needed <= STACK_PTRS && text_needed <= STACK_TEXT {
            (&mut stack_ptrs[..], &mut stack_text[..])
        } else {
            let ptr_bytes = ptrs_needed * std::mem::size_of::<*const c_char>();
            let len = ptr_bytes + text_needed;
            // SAFETY: a new private anonymous mapping touches no existing memory.
            let addr = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if addr == libc::MAP_FAILED {
                // Cannot build a new environment: pass the program's own rather than
                // failing its exec (logged; the child may then run without the shim).
                log::warn!("cannot map memory for a child environment; passing it unchanged");
                return f(envp);
            }
            _mapping = Mapping { addr, len };
            // SAFETY: the mapping is `len = ptr_bytes + text_needed` bytes, page-aligned
            // (so aligned for pointers), zeroed, and lives in `_mapping` until the end of
            // this function; the two slices cover its two disjoint parts.
            unsafe {
                (
                    std::slice::from_raw_parts_mut(addr.cast(), ptrs_needed),
                    std::slice::from_raw_parts_mut(addr.cast::<u8>().add(ptr_bytes), text_needed),
                )
            }
        };

    let mut text = Text {
        buf: text,
        len: 0,
        overflow: false,
    };
    render_dynamic(rt, &mut text);
    render_preload(rt, program, existing_preload, &mut text);
    if text.overflow {
        log::warn!("capsule settings do not fit a child environment; passing it unchanged");
        return f(envp);
    }
    let rendered_len = text.len;

    let mut n = 0;
    // SAFETY: as above, `envp` is null or a valid NULL-terminated array.
    for entry in unsafe { entries(envp) } {
        if !replaced(entry.to_bytes()) {
            ptrs[n] = entry.as_ptr();
            n += 1;
        }
    }
    for entry in &rt.static_env {
        ptrs[n] = entry.as_ptr();
        n += 1;
    }
    let base = text.buf.as_ptr();
    let mut start = 0;
    for (i, &b) in text.buf[..rendered_len].iter().enumerate() {
        if b == 0 {
            // SAFETY: `start <= i < rendered_len`, inside the text buffer.
            ptrs[n] = unsafe { base.add(start) }.cast();
            n += 1;
            start = i + 1;
        }
    }
    ptrs[n] = ptr::null();
    f(ptrs.as_ptr())
}

/// Whether this entry is one of the shim's own settings, which the program does not
/// see in its environment (`CAPSULE_NAME` is the one it may rely on).
fn hidden(entry: &[u8]) -> bool {
    let key = key_of(entry);
    key != keys::NAME.as_bytes() && keys::ALL.iter().any(|k| k.as_bytes() == key)
}

/// Removes the shim's settings (host paths of the layers and state, ids, clock) from
/// this process's environment, so that the program neither sees nor relies on them;
/// [`with_child_env`] gives them to each child again. Called once the configuration
/// has been read, from the library constructor and after `system`/`popen`.
pub fn hide_settings() {
    // One pass over the environment marks the settings present, and only those are
    // unset: unsetenv scans the whole environment, and calling it once per known key
    // cost ~40,000 instructions at every program start. Each is unset once, as
    // before: bash has its own unsetenv, which leaves `environ` as it is.
    let mut present = [false; keys::ALL.len()];
    // SAFETY: environ is the process's NULL-terminated environment array, not changed
    // while we read it (this thread holds the shim guard, before main or inside
    // system/popen).
    for entry in unsafe { entries(current_environ()) } {
        let entry = entry.to_bytes();
        if entry.starts_with(b"CAPSULE_") && hidden(entry) {
            let key = key_of(entry);
            if let Some(i) = keys::ALL.iter().position(|k| k.as_bytes() == key) {
                present[i] = true;
            }
        }
    }
    for (key, _) in keys::ALL.iter().zip(present).filter(|(_, p)| *p) {
        let mut buf = [0u8; 64];
        if key.len() >= buf.len() {
            continue;
        }
        buf[..key.len()].copy_from_slice(key.as_bytes());
        // SAFETY: `buf` is a NUL-terminated key; unsetenv edits the environment array
        // (before main, or where the program itself called system/popen).
        unsafe { libc::unsetenv(buf.as_ptr().cast()) };
    }
}

/// Puts the capsule's settings back into this process's own environment, for libc
/// functions that spawn with `environ` internally (`system`, `popen`) after the
/// program removed them.
pub fn repair_environ() {
    let repair = |child: *const *const c_char| {
        // SAFETY: `child` is the NULL-terminated array with_child_env built.
        for entry in unsafe { entries(child) } {
            let bytes = entry.to_bytes();
            if !replaced(bytes) {
                continue;
            }
            let key = key_of(bytes);
            let value = &bytes[key.len() + 1..];
            let mut key_buf = [0u8; 64];
            if key.len() >= key_buf.len() {
                continue;
            }
            key_buf[..key.len()].copy_from_slice(key);
            // SAFETY: `key_buf` is NUL-terminated (zeroed past the key).
            let current = unsafe { libc::getenv(key_buf.as_ptr().cast()) };
            // SAFETY: a non-null getenv result is a C string of the environment.
            if current.is_null() || unsafe { CStr::from_ptr(current) }.to_bytes() != value {
                // SAFETY: both are NUL-terminated: the key in `key_buf`, the value the end
                // of `entry` after its `=`; setenv copies them.
                unsafe {
                    libc::setenv(
                        key_buf.as_ptr().cast(),
                        entry.as_ptr().add(key.len() + 1),
                        1,
                    )
                };
            }
        }
    };
    // SAFETY: environ is the process environment, a valid NULL-terminated array; the
    // child environment is built from it before `repair` changes `environ` with setenv.
    unsafe { with_child_env(std::ptr::null(), current_environ(), repair) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names() {
        assert_eq!(key_of(b"A=b=c"), b"A");
        assert!(replaced(b"LD_PRELOAD=x"));
        assert!(replaced(b"CAPSULE_HOSTNAME=x"));
        assert!(!replaced(b"CAPSULE_HOME=x"));
        assert!(!replaced(b"LD_PRELOADX=x"));
        assert!(hidden(b"CAPSULE_UPPER=/x"));
        assert!(hidden(b"CAPSULE_CONFIG"));
        assert!(!hidden(b"CAPSULE_NAME=web"));
        assert!(!hidden(b"LD_PRELOAD=x"));
        assert_eq!(basename(b"/a/b/libcapsule.so"), b"libcapsule.so");
    }

    #[test]
    fn numbers_render() {
        let mut buf = [0u8; 64];
        let mut t = Text {
            buf: &mut buf,
            len: 0,
            overflow: false,
        };
        t.push_u32(0);
        t.push(b",");
        t.push_u32(4294967295);
        t.push(b",");
        t.push_i64(-86400000000000);
        let len = t.len;
        assert_eq!(&buf[..len], b"0,4294967295,-86400000000000");
    }
}
