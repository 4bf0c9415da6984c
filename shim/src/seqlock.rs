//! The sequence count of a slot of atomics that many threads (and a `vfork`
//! child, a signal handler, a child after `fork`) read and write with no lock and
//! no allocation: a writer makes the count odd, stores, makes it even again; a
//! reader that saw it odd, or changed, discards what it read.
//!
//! A writer never waits: one that finds the slot taken gives up (these slots hold
//! answers that can be worked out again). So a writer that never finishes — the
//! thread was writing when another one forked, and the child has only the odd
//! count — costs the child that slot's answers, never a hang.

use std::sync::atomic::{fence, AtomicU32, Ordering};

pub struct SeqCount(AtomicU32);

/// The writer side of a slot, held until dropped.
pub struct Write<'a>(&'a AtomicU32);

impl SeqCount {
    pub const fn new() -> SeqCount {
        SeqCount(AtomicU32::new(0))
    }

    /// Takes the writer side; `None` when another writer holds it.
    pub fn try_write(&self) -> Option<Write<'_>> {
        let seq = self.0.load(Ordering::Relaxed);
        if seq & 1 == 1 {
            return None;
        }
        self.0
            .compare_exchange(
                seq,
                seq.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()?;
        // The odd count is visible before any of the stores that follow.
        fence(Ordering::Release);
        Some(Write(&self.0))
    }

    /// The count a read starts from; `None` while a write is under way.
    pub fn read_begin(&self) -> Option<u32> {
        let seq = self.0.load(Ordering::Acquire);
        (seq & 1 == 0).then_some(seq)
    }

    /// Whether what was read since `read_begin` gave `before` is whole.
    pub fn read_valid(&self, before: u32) -> bool {
        fence(Ordering::Acquire);
        self.0.load(Ordering::Relaxed) == before
    }
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_makes_reads_that_overlap_it_invalid() {
        let seq = SeqCount::new();
        let before = seq.read_begin().unwrap();
        assert!(seq.read_valid(before));
        let write = seq.try_write().unwrap();
        assert!(seq.read_begin().is_none(), "odd while written");
        assert!(seq.try_write().is_none(), "one writer at a time");
        drop(write);
        assert!(!seq.read_valid(before), "a read across the write");
        let after = seq.read_begin().unwrap();
        assert_ne!(after, before);
        assert!(seq.read_valid(after));
    }
}
