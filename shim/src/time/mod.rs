//! The time replica: the capsule's wall clock.
//!
//! Invariants:
//! - the capsule's wall clock is the host's plus an offset fixed when the capsule
//!   starts (`--time-offset`, or `--time-at` turned into an offset by whoever started
//!   the capsule), plus whatever `clock_settime` inside the capsule added (shared by
//!   all its processes); it runs at the host's rate;
//! - only wall clocks move (`CLOCK_REALTIME`, `_COARSE`, `_ALARM`, `CLOCK_TAI`);
//!   monotonic, boot and CPU clocks stay real;
//! - absolute wall-clock deadlines a program hands to the kernel (`clock_nanosleep`
//!   with `TIMER_ABSTIME`, `sem_timedwait`, `pthread_mutex_timedlock`,
//!   `pthread_cond_timedwait` on a wall-clock condition variable, `timerfd_settime`)
//!   are moved back by the offset, so a program waiting "until now + 1 s" waits one
//!   second, not one second plus the offset;
//! - the host's clock is never set: `clock_settime`, `settimeofday` and `adjtime`
//!   are emulated (capsule root moves the capsule's clock; others get `EPERM`).

// The exported symbols stay out of unit-test binaries, whose own libc calls they
// would otherwise intercept.
#[cfg(not(test))]
pub mod hooks;
pub mod ops;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::runtime::Runtime;

/// The configured offset; `ACTIVE` is false when there is none and nothing moved the
/// clock, so that hooks are a single load away from passing through.
static BASE_OFFSET_NS: AtomicI64 = AtomicI64::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);

pub fn init(runtime: &Runtime) {
    let base = runtime.config.time_offset_ns.unwrap_or(0);
    BASE_OFFSET_NS.store(base, Ordering::Relaxed);
    let adjusted = runtime.shared.clock_adjust_ns.load(Ordering::Relaxed) != 0;
    ACTIVE.store(
        runtime.config.time_offset_ns.is_some() || adjusted,
        Ordering::Release,
    );
}

/// The offset the capsule was started with (what its new processes are given:
/// the `clock_settime` adjustment is in the state they share).
pub fn base_offset_ns() -> i64 {
    BASE_OFFSET_NS.load(Ordering::Relaxed)
}

/// The capsule's current offset from the host's wall clock, in nanoseconds.
#[inline]
pub fn offset_ns(runtime: &Runtime) -> i64 {
    if !ACTIVE.load(Ordering::Acquire) {
        // A clock_settime in another process of the capsule activates us lazily.
        let adjust = runtime.shared.clock_adjust_ns.load(Ordering::Relaxed);
        if adjust == 0 {
            return 0;
        }
        ACTIVE.store(true, Ordering::Release);
    }
    BASE_OFFSET_NS
        .load(Ordering::Relaxed)
        .saturating_add(runtime.shared.clock_adjust_ns.load(Ordering::Relaxed))
}
