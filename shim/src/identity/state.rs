//! Emulated process credentials, lock-free (hooks may run in signal handlers and in
//! `vfork` children).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use capsule_config::{Identity, MAX_GROUPS};

pub const REAL: usize = 0;
pub const EFFECTIVE: usize = 1;
pub const SAVED: usize = 2;
pub const FS: usize = 3;

pub struct Ids([AtomicU32; 4]);

impl Ids {
    const fn new() -> Ids {
        Ids([const { AtomicU32::new(0) }; 4])
    }

    pub fn get(&self, which: usize) -> u32 {
        self.0[which].load(Ordering::Relaxed)
    }

    pub fn set(&self, which: usize, id: u32) {
        self.0[which].store(id, Ordering::Relaxed)
    }

    pub fn all(&self) -> [u32; 3] {
        [self.get(REAL), self.get(EFFECTIVE), self.get(SAVED)]
    }

    /// Whether `id` is one of the real, effective or saved ids.
    pub fn holds(&self, id: u32) -> bool {
        self.all().contains(&id)
    }
}

pub struct Creds {
    enabled: AtomicBool,
    pub uid: Ids,
    pub gid: Ids,
    groups: [AtomicU32; MAX_GROUPS],
    ngroups: AtomicUsize,
}

impl Creds {
    #[cfg(test)]
    pub fn new_for_tests() -> Creds {
        Creds::new()
    }

    const fn new() -> Creds {
        Creds {
            enabled: AtomicBool::new(false),
            uid: Ids::new(),
            gid: Ids::new(),
            groups: [const { AtomicU32::new(0) }; MAX_GROUPS],
            ngroups: AtomicUsize::new(0),
        }
    }

    pub fn install(&self, identity: &Identity) {
        for (i, id) in identity.uid.iter().enumerate() {
            self.uid.set(i, *id);
        }
        self.uid.set(FS, identity.uid[EFFECTIVE]);
        for (i, id) in identity.gid.iter().enumerate() {
            self.gid.set(i, *id);
        }
        self.gid.set(FS, identity.gid[EFFECTIVE]);
        self.set_groups(&identity.groups);
        self.enabled.store(true, Ordering::Release);
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Whether the capsule process holds root's privileges over ids (CAP_SETUID).
    pub fn privileged(&self) -> bool {
        self.uid.get(EFFECTIVE) == 0
    }

    pub fn set_groups(&self, groups: &[u32]) {
        let n = groups.len().min(MAX_GROUPS);
        for (slot, g) in self.groups.iter().zip(&groups[..n]) {
            slot.store(*g, Ordering::Relaxed);
        }
        self.ngroups.store(n, Ordering::Release);
    }

    /// Copies the groups into `out`, returning how many there are in all.
    pub fn groups(&self, out: &mut [u32]) -> usize {
        let n = self.ngroups.load(Ordering::Acquire);
        for (dst, src) in out.iter_mut().zip(&self.groups[..n]) {
            *dst = src.load(Ordering::Relaxed);
        }
        n
    }
}

pub static CREDS: Creds = Creds::new();
