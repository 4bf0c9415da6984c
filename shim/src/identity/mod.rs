//! The identity replica: the capsule's user and groups.
//!
//! Invariants:
//! - with no capsule identity configured every hook passes through (the host's ids);
//! - with one, no id call reaches the kernel: `get*` report the emulated credentials,
//!   `set*` apply the kernel's permission rules to them (a fake root may become
//!   anyone; others only switch among their real, effective and saved ids) and never
//!   change the process's real credentials;
//! - credentials are per process, like the kernel's; `fork` copies them and `exec`
//!   passes them on through the child's environment with saved ids set to the
//!   effective ones, as `execve(2)` does.

// The exported symbols stay out of unit-test binaries, whose own libc calls they
// would otherwise intercept.
#[cfg(not(test))]
pub mod hooks;
pub mod nss;
#[cfg(not(test))]
pub mod nss_hooks;
pub mod ops;
pub mod state;

use crate::runtime::Runtime;

/// Whether the calling process counts as root for host-wide changes (host name,
/// clock): the capsule's effective uid, or the real one when the capsule has no
/// identity (as the kernel would require `CAP_SYS_ADMIN` / `CAP_SYS_TIME`).
pub fn capsule_root() -> bool {
    if state::CREDS.enabled() {
        state::CREDS.uid.get(state::EFFECTIVE) == 0
    } else {
        // SAFETY: raw system call without arguments.
        (unsafe { libc::syscall(libc::SYS_geteuid) }) == 0
    }
}

/// Whether the calling process is, or may become again, root for host-wide
/// changes: one of its capsule uids is 0 (or its real ones, without an identity).
pub fn may_become_root() -> bool {
    if state::CREDS.enabled() {
        state::CREDS.uid.all().contains(&0)
    } else {
        let (mut real, mut effective, mut saved) = (1, 1, 1);
        // SAFETY: getresuid writes three ids into our variables.
        unsafe { libc::getresuid(&mut real, &mut effective, &mut saved) };
        [real, effective, saved].contains(&0)
    }
}

pub fn init(runtime: &Runtime) {
    if let Some(identity) = &runtime.config.identity {
        state::CREDS.install(identity);
        // A program a static one executed: the static one's set*id calls
        // changed the identity its supervisor holds, not its environment.
        crate::backstop::inherit::identity();
    }
}
