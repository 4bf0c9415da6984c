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

#![deny(unsafe_op_in_unsafe_fn)]

// The exported symbols stay out of unit-test binaries, whose own libc calls they
// would otherwise intercept.
#[cfg(not(test))]
pub mod hooks;
pub mod nss;
#[cfg(not(test))]
pub mod nss_hooks;
pub mod ops;
pub mod state;

use crate::coverage::{Hook, Support::*};
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

pub const HOOKS: &[Hook] = &[
    Hook::new("getuid", Full),
    Hook::new("geteuid", Full),
    Hook::new("getgid", Full),
    Hook::new("getegid", Full),
    Hook::new("getresuid", Full),
    Hook::new("getresgid", Full),
    Hook::new("getgroups", Full),
    Hook::new("setuid", Full),
    Hook::new("setgid", Full),
    Hook::new("seteuid", Full),
    Hook::new("setegid", Full),
    Hook::new("setreuid", Full),
    Hook::new("setregid", Full),
    Hook::new("setresuid", Full),
    Hook::new("setresgid", Full),
    Hook::new("setfsuid", Full),
    Hook::new("setfsgid", Full),
    Hook::new("setgroups", Partial("at most 64 supplementary groups")),
    Hook::new("initgroups", Full),
    Hook::new("capget", Partial("this process's emulated sets (a capsule root has them all); another process's are the kernel's")),
    Hook::new("capset", Partial("as capget; inheritable capabilities are not kept")),
    Hook::new("prctl", Partial("PR_SET_KEEPCAPS and PR_GET_KEEPCAPS are the capsule identity's; other options pass through")),
    Hook::new("getpwnam", Partial("from the capsule's /etc/passwd (files format) when it has its own root or changed the file; else the host's NSS")),
    Hook::new("getpwuid", Partial("as getpwnam")),
    Hook::new("getpwnam_r", Partial("as getpwnam")),
    Hook::new("getpwuid_r", Partial("as getpwnam")),
    Hook::new("getpwent", Partial("as getpwnam; lists the capsule's file only")),
    Hook::new("getpwent_r", Partial("as getpwent")),
    Hook::new("setpwent", Full),
    Hook::new("endpwent", Full),
    Hook::new("getgrnam", Partial("from the capsule's /etc/group (files format) when it has its own root or changed the file; else the host's NSS")),
    Hook::new("getgrgid", Partial("as getgrnam")),
    Hook::new("getgrnam_r", Partial("as getgrnam")),
    Hook::new("getgrgid_r", Partial("as getgrnam")),
    Hook::new("getgrent", Partial("as getgrnam; lists the capsule's file only")),
    Hook::new("getgrent_r", Partial("as getgrent")),
    Hook::new("setgrent", Full),
    Hook::new("endgrent", Full),
    Hook::new("getspnam", Partial("from the capsule's /etc/shadow (files format) as getpwnam from its /etc/passwd")),
    Hook::new("getspnam_r", Partial("as getspnam")),
    Hook::new("lckpwdf", Partial("locks the capsule's /etc/.pwd.lock (polling, 15 s at most) when it has its own file system")),
    Hook::new("ulckpwdf", Partial("as lckpwdf")),
    Hook::new("getgrouplist", Partial("from the capsule's /etc/group when the capsule has its own database (see getgrnam)")),
];
