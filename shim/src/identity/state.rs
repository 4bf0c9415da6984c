//! Emulated process credentials, lock-free (hooks may run in signal handlers and in
//! `vfork` children).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

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

/// Every capability of this kernel generation (up to `CAP_CHECKPOINT_RESTORE`, 40).
pub const ALL_CAPS: u64 = (1 << 41) - 1;
pub const CAP_SETGID: u64 = 1 << 6;
pub const CAP_SETUID: u64 = 1 << 7;

pub struct Creds {
    enabled: AtomicBool,
    /// The emulated effective and permitted capability sets, and `PR_SET_KEEPCAPS`.
    pub effective_caps: AtomicU64,
    pub permitted_caps: AtomicU64,
    pub keep_caps: AtomicBool,
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
            effective_caps: AtomicU64::new(0),
            permitted_caps: AtomicU64::new(0),
            keep_caps: AtomicBool::new(false),
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
        self.caps_after_exec(identity.uid[REAL], identity.uid[EFFECTIVE]);
        self.enabled.store(true, Ordering::Release);
    }

    /// As after execve (capabilities(7)): a root's capabilities are all there,
    /// effective when the effective uid is 0; `PR_SET_KEEPCAPS` is cleared.
    fn caps_after_exec(&self, real: u32, effective: u32) {
        let root = real == 0 || effective == 0;
        self.permitted_caps
            .store(if root { ALL_CAPS } else { 0 }, Ordering::Relaxed);
        self.effective_caps
            .store(if effective == 0 { ALL_CAPS } else { 0 }, Ordering::Relaxed);
        self.keep_caps.store(false, Ordering::Relaxed);
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Whether the capsule process holds root's privileges over ids (CAP_SETUID).
    pub fn privileged(&self) -> bool {
        self.uid.get(EFFECTIVE) == 0
    }

    /// Whether the capsule process holds capability `cap` (`CAP_SETUID`, ...) in its
    /// effective set.
    pub fn capable(&self, cap: u64) -> bool {
        self.effective_caps.load(Ordering::Relaxed) & cap != 0
    }

    /// The kernel's capability changes after the uids changed from `old`
    /// (capabilities(7), "Effect of user ID changes on capabilities").
    pub fn uids_changed(&self, old: [u32; 3]) {
        let new = self.uid.all();
        if old.contains(&0) && !new.contains(&0) {
            if !self.keep_caps.load(Ordering::Relaxed) {
                self.permitted_caps.store(0, Ordering::Relaxed);
            }
            self.effective_caps.store(0, Ordering::Relaxed);
        }
        if old[EFFECTIVE] == 0 && new[EFFECTIVE] != 0 {
            self.effective_caps.store(0, Ordering::Relaxed);
        } else if old[EFFECTIVE] != 0 && new[EFFECTIVE] == 0 {
            let permitted = self.permitted_caps.load(Ordering::Relaxed);
            self.effective_caps.store(permitted, Ordering::Relaxed);
        }
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

/// A process's emulated identity as plain data: what the system-call backstop's
/// supervisor hands to a dynamic program a static one executes (backstop/inherit.rs).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Snapshot {
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    /// 64 bits, so that the struct has no padding (it is sent as bytes).
    pub ngroups: u64,
    pub groups: [u32; MAX_GROUPS],
}

impl Creds {
    pub fn snapshot(&self) -> Snapshot {
        let mut groups = [0; MAX_GROUPS];
        let n = self.groups(&mut groups).min(MAX_GROUPS);
        Snapshot {
            uid: [0, 1, 2, 3].map(|i| self.uid.get(i)),
            gid: [0, 1, 2, 3].map(|i| self.gid.get(i)),
            ngroups: n as u64,
            groups,
        }
    }

    /// Takes `snapshot` as this process's identity (as an exec would keep it:
    /// capabilities follow the uids, see `install`).
    pub fn adopt(&self, snapshot: &Snapshot) {
        for i in 0..4 {
            self.uid.set(i, snapshot.uid[i]);
            self.gid.set(i, snapshot.gid[i]);
        }
        let n = (snapshot.ngroups as usize).min(MAX_GROUPS);
        self.set_groups(&snapshot.groups[..n]);
        self.caps_after_exec(snapshot.uid[REAL], snapshot.uid[EFFECTIVE]);
    }
}
