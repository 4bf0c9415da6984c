//! The uts replica: the capsule's host and domain names.
//!
//! Invariants:
//! - the names a process sees are, in order: the last `sethostname`/`setdomainname`
//!   of any process of the capsule (shared state), else the configured name, else
//!   the host's;
//! - the host's names are never changed: `sethostname`/`setdomainname` are always
//!   emulated (a real root process inside a capsule would otherwise rename the host);
//!   they need the capsule's effective uid to be 0, as the kernel needs
//!   `CAP_SYS_ADMIN`.

// The exported symbols stay out of unit-test binaries, whose own libc calls they
// would otherwise intercept.
#[cfg(not(test))]
pub mod hooks;
pub mod ops;

use crate::runtime::Runtime;

pub fn init(_runtime: &Runtime) {}
