//! The system-call backstop: the replicas for programs the preload cannot reach.
//!
//! A statically linked program (busybox-static, Go, `gcc -static`) loads no
//! shim, so its system calls would see the host. Every exec of such a program in a
//! capsule — by the loader, by the exec hooks, or by another static program —
//! goes through a trampoline: `capsule-trampoline` (beside `libcapsule.so`), a
//! program that does nothing itself, run as `capsule-trampoline
//! --capsule-backstop-exec HOST ARGV…` with the shim preloaded, whose constructor
//! (here, `run_if_trampoline`):
//!
//! 1. forks the supervisor (`supervise.rs`): a copy of this process, with the shim
//!    initialised from the capsule's settings, detached in its own session;
//! 2. installs the seccomp filter (`filter.rs`) with a notification listener, and
//!    passes the listener to the supervisor over a socket pair;
//! 3. executes the static program, which inherits the filter, as do all its
//!    children, across fork, threads, vfork and exec, with no way to remove it.
//!
//! Each call on the filter's list stops the calling thread until the supervisor
//! answers; every other call runs natively (the filter depends on the number
//! only, so the kernel's action cache answers those without running it). The
//! clock, which static programs read from the vDSO, unseen by any filter: the
//! supervisor rewrites the vDSO's entry points in the new program (at its first
//! `arch_prctl`, before it can read the time) to make the real system call.
//!
//! When the filter cannot be installed (a kernel without seccomp notifications,
//! or a policy that forbids filters), the program is refused with one line,
//! unless the capsule allows the bypass (`CAPSULE_ALLOW_BYPASS`).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod filter;
pub mod inherit;
mod remote;
#[cfg(not(test))]
mod supervise;
#[cfg(not(test))]
mod trampoline;
pub mod trust;
mod vdso;
#[cfg(not(test))]
pub use trampoline::restore_cwd;
#[cfg(all(not(test), target_env = "gnu"))]
pub use trampoline::run_if_trampoline;

use std::ffi::{c_char, CStr};

/// argv[1] of the trampoline.
pub const MARKER: &CStr = c"--capsule-backstop-exec";
/// argv[1] of the trampoline for a dynamically linked Go program: it runs without
/// the shim (its own system calls bypass libc, so the supervisor serves them all,
/// its libc's too, which a preloaded shim would otherwise translate twice).
pub const MARKER_BARE: &CStr = c"--capsule-backstop-exec-bare";

/// The trampoline program's file name, beside the shim.
pub const TRAMPOLINE_FILE: &str = "capsule-trampoline";

/// Argument slots the trampoline puts before the program's own arguments.
pub const PREFIX_ARGS: usize = 3;

/// Fills the `PREFIX_ARGS` slots before a program's own argument vector with the
/// trampoline's: `capsule-trampoline --capsule-backstop-exec PROGRAM`. No
/// allocation: exec hooks run in vfork children.
///
/// # Safety
/// `slots` has `PREFIX_ARGS` writable entries; `program` is a C string that
/// outlives the exec.
pub unsafe fn trampoline_prefix(program: *const c_char, bare: bool, slots: *mut *const c_char) {
    let marker = if bare { MARKER_BARE } else { MARKER };
    let prefix = [
        crate::runtime::get().trampoline.as_ptr(),
        marker.as_ptr(),
        program,
    ];
    // SAFETY: PREFIX_ARGS writable entries (this function's contract).
    unsafe { std::ptr::copy_nonoverlapping(prefix.as_ptr(), slots, PREFIX_ARGS) };
}
