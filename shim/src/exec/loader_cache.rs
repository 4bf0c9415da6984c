//! The root's dynamic loader and `--library-path` for the standard `PT_INTERP`,
//! remembered capsule-wide.
//!
//! Working them out takes a walk of the interpreter's name and of every standard
//! library directory in both layers (about eighty system calls) and a check of the
//! root's glibc against the shim (three files mapped and parsed). That used to happen
//! on every exec of a program of the root: a shell forks, and its child, which
//! execs, remembers nothing for the next child. One entry in the capsule's shared
//! state (`shared.rs`) holds the answer for one interpreter name and
//! `LD_LIBRARY_PATH`, valid for one value of the capsule's file-system generation,
//! which every process bumps when the upper layer's directory structure changes
//! (a library directory created, removed or whited out).
//!
//! The entry is a seqlock over plain words: readers copy it without locks and
//! retry never (a writer at work means "work it out yourself"); no allocation, so
//! exec hooks in `vfork` children may read it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Longest key kept: the interpreter's name, a NUL, the `LD_LIBRARY_PATH` value.
pub const KEY_MAX: usize = 1024;
/// Longest loader host path kept.
pub const LDSO_MAX: usize = 1024;
/// Longest library path kept (the interp module's own limit).
pub const PATH_MAX: usize = 4096;

const fn words(bytes: usize) -> usize {
    bytes / 8
}

/// What `read` found.
pub enum Cached {
    /// Nothing usable: work it out (and `store` it).
    Unknown,
    /// The root's loader cannot run the shim: exec the program as it is. The
    /// check path (see [`Entry`]) was copied into the caller's buffer.
    Unusable { check_len: usize },
    /// The lengths of what was copied into the caller's buffers (each
    /// NUL-terminated): see [`Entry`].
    Loader {
        ldso_len: usize,
        check_len: usize,
        path_len: usize,
    },
}

/// What was worked out for a key.
pub struct Entry<'a> {
    /// Where the upper layer would hold a newer loader (one a package upgrade
    /// wrote there after the entry was made, which changes no directory): the
    /// entry holds only while nothing is there. Empty when the loader is the upper
    /// layer's already.
    pub check: &'a [u8],
    /// The loader's host path and the `--library-path` value; `None` when the
    /// loader cannot run the shim.
    pub loader: Option<(&'a [u8], &'a [u8])>,
}

#[repr(C)]
pub struct SharedLoader {
    /// Odd while a writer copies.
    seq: AtomicU32,
    /// 0: empty; 1: the loader is unusable; 2: a loader is recorded.
    verdict: AtomicU32,
    /// The file-system generation the entry was worked out at, plus one (0: empty).
    generation: AtomicU64,
    key_len: AtomicU32,
    ldso_len: AtomicU32,
    check_len: AtomicU32,
    path_len: AtomicU32,
    key: [AtomicU64; words(KEY_MAX)],
    ldso: [AtomicU64; words(LDSO_MAX)],
    check: [AtomicU64; words(LDSO_MAX)],
    path: [AtomicU64; words(PATH_MAX)],
}

const EMPTY: u32 = 0;
const UNUSABLE: u32 = 1;
const LOADER: u32 = 2;

impl SharedLoader {
    pub const fn new() -> SharedLoader {
        SharedLoader {
            seq: AtomicU32::new(0),
            verdict: AtomicU32::new(EMPTY),
            generation: AtomicU64::new(0),
            key_len: AtomicU32::new(0),
            ldso_len: AtomicU32::new(0),
            check_len: AtomicU32::new(0),
            path_len: AtomicU32::new(0),
            key: [const { AtomicU64::new(0) }; words(KEY_MAX)],
            ldso: [const { AtomicU64::new(0) }; words(LDSO_MAX)],
            check: [const { AtomicU64::new(0) }; words(LDSO_MAX)],
            path: [const { AtomicU64::new(0) }; words(PATH_MAX)],
        }
    }

    /// The entry for `key` at file-system generation `generation`, copied into the
    /// buffers (see [`Entry`]).
    pub fn read(
        &self,
        generation: u64,
        key: &[u8],
        ldso: &mut [u8; LDSO_MAX],
        check: &mut [u8; LDSO_MAX],
        path: &mut [u8; PATH_MAX],
    ) -> Cached {
        let before = self.seq.load(Ordering::Acquire);
        if before & 1 == 1
            || self.generation.load(Ordering::Relaxed) != generation.wrapping_add(1)
            || self.key_len.load(Ordering::Relaxed) as usize != key.len()
            || !equal(&self.key, key)
        {
            return Cached::Unknown;
        }
        let verdict = self.verdict.load(Ordering::Relaxed);
        let ldso_len = (self.ldso_len.load(Ordering::Relaxed) as usize).min(LDSO_MAX - 1);
        let check_len = (self.check_len.load(Ordering::Relaxed) as usize).min(LDSO_MAX - 1);
        let path_len = (self.path_len.load(Ordering::Relaxed) as usize).min(PATH_MAX - 1);
        copy_out(&self.check, check, check_len);
        if verdict == LOADER {
            copy_out(&self.ldso, ldso, ldso_len);
            copy_out(&self.path, path, path_len);
        }
        std::sync::atomic::fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != before {
            return Cached::Unknown;
        }
        check[check_len] = 0;
        match verdict {
            UNUSABLE => Cached::Unusable { check_len },
            LOADER => {
                ldso[ldso_len] = 0;
                path[path_len] = 0;
                Cached::Loader {
                    ldso_len,
                    check_len,
                    path_len,
                }
            }
            _ => Cached::Unknown,
        }
    }

    /// Records what `key` gave at `generation`.
    /// Gives up rather than wait when another writer is at work. A writer killed
    /// mid-copy leaves the entry odd for good: every exec then works the loader out
    /// itself, as without the cache (slower, never wrong).
    pub fn store(&self, generation: u64, key: &[u8], entry: &Entry) {
        if key.len() > KEY_MAX
            || entry.check.len() >= LDSO_MAX
            || entry
                .loader
                .is_some_and(|(ldso, path)| ldso.len() >= LDSO_MAX || path.len() >= PATH_MAX)
        {
            return;
        }
        let seq = self.seq.load(Ordering::Relaxed);
        if seq & 1 == 1
            || self
                .seq
                .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        std::sync::atomic::fence(Ordering::Release);
        self.generation
            .store(generation.wrapping_add(1), Ordering::Relaxed);
        self.key_len.store(key.len() as u32, Ordering::Relaxed);
        copy_in(&self.key, key);
        self.check_len
            .store(entry.check.len() as u32, Ordering::Relaxed);
        copy_in(&self.check, entry.check);
        match entry.loader {
            Some((ldso, path)) => {
                self.ldso_len.store(ldso.len() as u32, Ordering::Relaxed);
                self.path_len.store(path.len() as u32, Ordering::Relaxed);
                copy_in(&self.ldso, ldso);
                copy_in(&self.path, path);
                self.verdict.store(LOADER, Ordering::Relaxed);
            }
            None => self.verdict.store(UNUSABLE, Ordering::Relaxed),
        }
        self.seq.store(seq + 2, Ordering::Release);
    }
}

fn word_at(bytes: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    let start = i * 8;
    let end = (start + 8).min(bytes.len());
    if start < end {
        w[..end - start].copy_from_slice(&bytes[start..end]);
    }
    u64::from_le_bytes(w)
}

fn copy_in(slots: &[AtomicU64], bytes: &[u8]) {
    for (i, slot) in slots.iter().enumerate().take(bytes.len().div_ceil(8)) {
        slot.store(word_at(bytes, i), Ordering::Relaxed);
    }
}

fn copy_out(slots: &[AtomicU64], out: &mut [u8], len: usize) {
    for (i, slot) in slots.iter().enumerate().take(len.div_ceil(8)) {
        let w = slot.load(Ordering::Relaxed).to_le_bytes();
        let start = i * 8;
        let end = (start + 8).min(len);
        out[start..end].copy_from_slice(&w[..end - start]);
    }
}

fn equal(slots: &[AtomicU64], key: &[u8]) -> bool {
    (0..key.len().div_ceil(8)).all(|i| slots[i].load(Ordering::Relaxed) == word_at(key, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Buffers {
        ldso: Box<[u8; LDSO_MAX]>,
        check: Box<[u8; LDSO_MAX]>,
        path: Box<[u8; PATH_MAX]>,
    }

    fn buffers() -> Buffers {
        Buffers {
            ldso: Box::new([0xAA; LDSO_MAX]),
            check: Box::new([0xAA; LDSO_MAX]),
            path: Box::new([0xAA; PATH_MAX]),
        }
    }

    fn read(cache: &SharedLoader, generation: u64, key: &[u8], b: &mut Buffers) -> Cached {
        cache.read(generation, key, &mut b.ldso, &mut b.check, &mut b.path)
    }

    fn entry<'a>(ldso: &'a [u8], path: &'a [u8]) -> Entry<'a> {
        Entry {
            check: b"/u/usr/lib/ld.so",
            loader: Some((ldso, path)),
        }
    }

    #[test]
    fn empty_until_stored_then_only_for_its_key_and_generation() {
        let cache = Box::new(SharedLoader::new());
        let mut b = buffers();
        let key = b"/lib64/ld-linux-x86-64.so.2\0";
        assert!(matches!(read(&cache, 0, key, &mut b), Cached::Unknown));
        cache.store(7, key, &entry(b"/r/usr/lib/ld.so", b"/r/lib:/r/usr/lib"));
        match read(&cache, 7, key, &mut b) {
            Cached::Loader {
                ldso_len,
                check_len,
                path_len,
            } => {
                assert_eq!(&b.ldso[..=ldso_len], b"/r/usr/lib/ld.so\0");
                assert_eq!(&b.check[..=check_len], b"/u/usr/lib/ld.so\0");
                assert_eq!(&b.path[..=path_len], b"/r/lib:/r/usr/lib\0");
            }
            _ => panic!("stored entry not found"),
        }
        // Another generation (the upper layer's directories changed), another key
        // (another interpreter, or another LD_LIBRARY_PATH): unknown.
        assert!(matches!(read(&cache, 8, key, &mut b), Cached::Unknown));
        assert!(matches!(
            read(&cache, 7, b"/lib/ld-musl-x86_64.so.1\0", &mut b),
            Cached::Unknown
        ));
        assert!(matches!(
            read(&cache, 7, b"/lib64/ld-linux-x86-64.so.2\0/opt", &mut b),
            Cached::Unknown
        ));
    }

    #[test]
    fn an_unusable_loader_is_remembered_and_a_longer_entry_replaces_a_shorter() {
        let cache = Box::new(SharedLoader::new());
        let mut b = buffers();
        let unusable = Entry {
            check: b"/u/lib/ld.so",
            loader: None,
        };
        cache.store(1, b"k", &unusable);
        match read(&cache, 1, b"k", &mut b) {
            Cached::Unusable { check_len } => assert_eq!(&b.check[..=check_len], b"/u/lib/ld.so\0"),
            _ => panic!("unusable verdict not found"),
        }
        let long = vec![b'x'; PATH_MAX - 1];
        cache.store(2, b"k2", &entry(b"/l", &long));
        match read(&cache, 2, b"k2", &mut b) {
            Cached::Loader {
                ldso_len, path_len, ..
            } => {
                assert_eq!((ldso_len, path_len), (2, PATH_MAX - 1));
                assert_eq!(b.path[PATH_MAX - 1], 0);
                assert!(b.path[..PATH_MAX - 1].iter().all(|&c| c == b'x'));
            }
            _ => panic!("long entry not found"),
        }
        // Too long to keep: not stored, the old entry stays.
        cache.store(3, b"k3", &entry(b"/l", &vec![b'y'; PATH_MAX]));
        assert!(matches!(read(&cache, 3, b"k3", &mut b), Cached::Unknown));
    }

    #[test]
    fn a_writer_at_work_or_dead_mid_copy_hides_the_entry() {
        let cache = Box::new(SharedLoader::new());
        let mut b = buffers();
        cache.store(1, b"k", &entry(b"/l", b"/p"));
        cache.seq.fetch_add(1, Ordering::Relaxed); // a writer inside (or dead there)
        assert!(matches!(read(&cache, 1, b"k", &mut b), Cached::Unknown));
        // A second writer does not wait, and does not write beside the first.
        cache.store(1, b"k", &entry(b"/l2", b"/p2"));
        assert!(matches!(read(&cache, 1, b"k", &mut b), Cached::Unknown));
        cache.seq.fetch_add(1, Ordering::Relaxed); // the first writer done
        assert!(matches!(
            read(&cache, 1, b"k", &mut b),
            Cached::Loader { ldso_len: 2, .. }
        ));
    }
}
