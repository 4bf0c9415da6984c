//! State shared by every process of one capsule: a small file in the capsule's
//! state directory, mapped `MAP_SHARED` by each process. Everything in it is
//! zero-initialised-valid (a fresh file of zeros means "nothing changed yet"), so
//! processes that start together need no creation handshake.
//!
//! Without a state directory (plain `LD_PRELOAD` use), the same structure lives in
//! process memory; changes then reach children through their environment.

use std::ffi::CString;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

use capsule_config::MAX_HOSTNAME_LEN;

/// Identifies the layout; a file of another layout is refused rather than misread.
const MAGIC: u64 = capsule_config::SHARED_MAGIC;
const FILE_NAME: &str = capsule_config::layout::SHARED_FILE;
/// How long a reader or writer waits for another writer (a copy takes nanoseconds).
const STALE_SPINS: u32 = 1 << 22;

/// A name (host or domain) that a process of the capsule may change, read without
/// locks: a sequence counter, odd while a writer is copying (a seqlock).
#[repr(C)]
pub struct SharedName {
    seq: AtomicU32,
    /// 0: never set (use the configured value); otherwise length + 1.
    len: AtomicU32,
    bytes: [AtomicU8; MAX_HOSTNAME_LEN],
}

impl SharedName {
    const fn new() -> SharedName {
        SharedName {
            seq: AtomicU32::new(0),
            len: AtomicU32::new(0),
            bytes: [const { AtomicU8::new(0) }; MAX_HOSTNAME_LEN],
        }
    }

    /// Copies the name into `out` and returns its length; `None` when it was never
    /// set (the common case, decided by one load).
    pub fn read(&self, out: &mut [u8; MAX_HOSTNAME_LEN]) -> Option<usize> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut spins = 0u32;
        loop {
            let before = self.seq.load(Ordering::Acquire);
            // A writer that died mid-copy (killed) leaves the count odd: after a long
            // wait, read what is there rather than hang every process of the capsule.
            if before & 1 == 1 && spins < STALE_SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let len = (self.len.load(Ordering::Relaxed) as usize).saturating_sub(1);
            let len = len.min(MAX_HOSTNAME_LEN);
            for (dst, src) in out[..len].iter_mut().zip(self.bytes.iter()) {
                *dst = src.load(Ordering::Relaxed);
            }
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(len);
            }
        }
    }

    /// Replaces the name (at most `MAX_HOSTNAME_LEN` bytes; callers check).
    pub fn write(&self, name: &[u8]) {
        // Take the writer side: move seq from even to odd (or, after a long wait,
        // take over from a writer that died with it odd).
        let mut spins = 0u32;
        loop {
            let seq = self.seq.load(Ordering::Relaxed);
            if seq & 1 == 1 && spins >= STALE_SPINS {
                break;
            }
            if seq & 1 == 0
                && self
                    .seq
                    .compare_exchange_weak(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            spins += 1;
            std::hint::spin_loop();
        }
        let n = name.len().min(MAX_HOSTNAME_LEN);
        for (i, slot) in self.bytes.iter().enumerate() {
            slot.store(if i < n { name[i] } else { 0 }, Ordering::Relaxed);
        }
        self.len.store(n as u32 + 1, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }
}

#[repr(C)]
pub struct Shared {
    magic: AtomicU64,
    pub hostname: SharedName,
    pub domainname: SharedName,
    /// Added to the configured clock offset by `clock_settime` inside the capsule.
    pub clock_adjust_ns: AtomicI64,
    /// Bumped whenever the upper layer's directory structure changes.
    pub fs_generation: AtomicU64,
    /// Non-zero once a process cached a directory reached through a link: from
    /// then on, removing a link must bump `fs_generation` too.
    pub fs_links_cached: AtomicU64,
    /// The root's loader and library path, worked out once per generation.
    pub loader: crate::exec::loader_cache::SharedLoader,
}

impl Shared {
    const fn new() -> Shared {
        Shared {
            magic: AtomicU64::new(MAGIC),
            hostname: SharedName::new(),
            domainname: SharedName::new(),
            clock_adjust_ns: AtomicI64::new(0),
            fs_generation: AtomicU64::new(0),
            fs_links_cached: AtomicU64::new(0),
            loader: crate::exec::loader_cache::SharedLoader::new(),
        }
    }
}

// The loader bumps the generation from outside (`capsule cp`): the offset it uses is
// this layout's.
const _: () = assert!(
    std::mem::offset_of!(Shared, fs_generation) == capsule_config::SHARED_FS_GENERATION_OFFSET
);

static LOCAL: Shared = Shared::new();

/// Process-local state, for a capsule without a state directory.
pub fn local() -> &'static Shared {
    &LOCAL
}

/// Maps the capsule's shared state file, creating it if needed.
pub fn map(state_dir: &str) -> Result<&'static Shared, String> {
    let path = CString::new(format!("{state_dir}/{FILE_NAME}"))
        .map_err(|_| "path contains a NUL byte".to_string())?;
    let size = std::mem::size_of::<Shared>();
    // SAFETY: plain system calls on a path we own; the mapping is checked before use
    // and lives for the rest of the process.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
            0o600,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0
            || ((st.st_size as usize) < size && libc::ftruncate(fd, size as libc::off_t) != 0)
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e.to_string());
        }
        let addr = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if addr == libc::MAP_FAILED {
            return Err(e.to_string());
        }
        let shared = &*(addr as *const Shared);
        // A fresh file is all zeros: claim it. Anything else must be our layout.
        match shared
            .magic
            .compare_exchange(0, MAGIC, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(shared),
            Err(MAGIC) => Ok(shared),
            Err(other) => {
                libc::munmap(addr, size);
                Err(format!("{FILE_NAME}: unknown layout {other:#x}"))
            }
        }
    }
}
