//! The exec replica: every way a program starts another keeps the capsule.
//!
//! Invariants:
//! - each exec and spawn entry point gives the child the environment of
//!   `env::with_child_env`: the program's, with the shim first in `LD_PRELOAD`
//!   (exactly once) and the capsule's current settings (ids as after `execve`,
//!   host name, clock offset), even when the program passed an empty environment;
//! - nothing on those paths allocates or locks: they run in `vfork` children and
//!   after `fork` in threaded programs;
//! - the real exec is called outside the shim guard: in a `vfork` child the guard is
//!   the parent thread's, and a successful exec would never clear it;
//! - `system` and `popen` spawn with `environ` inside glibc, where no hook reaches:
//!   the capsule's settings are put back into `environ` first.

// glibc only: musl passes library constructors no argc/argv to rewrite.
#[cfg(all(not(test), target_env = "gnu"))]
pub mod cmdline;
pub mod env;
// The exported symbols stay out of unit-test binaries, whose own libc calls they
// would otherwise intercept.
#[cfg(not(test))]
pub mod hooks;
pub mod interp;
pub mod loader_cache;
pub mod program;
#[cfg(not(test))]
pub mod variadic;
