//! FFI layer of the time replica.

// The libc crate marks musl's `time_t` deprecated for 32-bit targets' move to 64 bits;
// on x86-64 it is 64 bits under both libcs.
#![cfg_attr(target_env = "musl", allow(deprecated))]

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use libc::{c_int, c_void, clockid_t, time_t, timespec, timeval};

use super::ops;
use super::{offset_ns, BASE_OFFSET_NS};
use crate::hook::fail;
use crate::identity;
use crate::runtime;

/// The capsule's offset, 0 when the clock is the host's.
#[inline]
fn offset() -> i64 {
    offset_ns(runtime::get())
}

/// clock_gettime, shared with `syscall(SYS_clock_gettime)`.
///
/// # Safety
/// `ts` is null or valid for writes.
pub unsafe fn clock_gettime_with(
    clock: clockid_t,
    ts: *mut timespec,
    real: impl FnOnce() -> c_int,
) -> c_int {
    // SAFETY: `ts` is null or valid for writes (the `# Safety` contract).
    unsafe {
        let rc = real();
        if rc == 0 && !ts.is_null() && ops::is_wall_clock(clock) {
            let off = offset();
            if off != 0 {
                *ts = ops::shift(&*ts, off);
            }
        }
        rc
    }
}

/// gettimeofday, shared with `syscall(SYS_gettimeofday)`.
///
/// # Safety
/// `tv` is null or valid for writes.
pub unsafe fn gettimeofday_with(tv: *mut timeval, real: impl FnOnce() -> c_int) -> c_int {
    // SAFETY: `tv` is null or valid for writes (the `# Safety` contract).
    unsafe {
        let rc = real();
        if rc == 0 && !tv.is_null() {
            let off = offset();
            if off != 0 {
                *tv = ops::shift_timeval(&*tv, off);
            }
        }
        rc
    }
}

/// time(), shared with `syscall(SYS_time)`: the floor of the shifted coarse clock,
/// so that it agrees with clock_gettime to the second.
///
/// # Safety
/// `out` is null or valid for writes.
pub unsafe fn time_with(out: *mut time_t, real: impl FnOnce() -> time_t) -> time_t {
    // SAFETY: `out` is null or valid for writes (the `# Safety` contract).
    unsafe {
        let off = offset();
        if off == 0 {
            return real();
        }
        // The coarse clock is what time() reads too (from the vDSO, without a system call).
        let Some(clock) = REAL_CLOCK_GETTIME.get(c"clock_gettime") else {
            return real();
        };
        // SAFETY: libc's clock_gettime has this signature.
        let clock: unsafe extern "C" fn(clockid_t, *mut timespec) -> c_int =
            std::mem::transmute(clock);
        let mut ts = NO_TIME;
        if clock(libc::CLOCK_REALTIME_COARSE, &mut ts) != 0 {
            return real();
        }
        let now = ops::shift(&ts, off).tv_sec;
        if !out.is_null() {
            *out = now;
        }
        now
    }
}

use identity::capsule_root as privileged;

/// The real clock_gettime, for time(): the shim's own calls must not take a system
/// call where libc reads the vDSO.
static REAL_CLOCK_GETTIME: crate::hook::Real = crate::hook::Real::new();

/// Sets the capsule's wall clock to `target`; the host's is never touched.
/// Shared with `syscall(SYS_clock_settime)` and `settimeofday`.
pub fn set_wall_clock(clock: clockid_t, target: Option<&timespec>) -> c_int {
    let Some(target) = target else {
        return fail(libc::EFAULT);
    };
    if clock != libc::CLOCK_REALTIME {
        return fail(libc::EINVAL);
    }
    if let Err(e) = ops::valid_timespec(target) {
        return fail(e);
    }
    if !privileged() {
        return fail(libc::EPERM);
    }
    let rt = runtime::get();
    let adjust = ops::adjustment_for(
        ops::to_ns(target),
        runtime::real_time_ns() as i128,
        BASE_OFFSET_NS.load(Ordering::Relaxed),
    );
    rt.shared.clock_adjust_ns.store(adjust, Ordering::Relaxed);
    // Make sure this process notices even when it had no offset before.
    let _ = offset_ns(rt);
    log::debug!("capsule clock set (adjustment {adjust} ns)");
    0
}

/// An absolute wall-clock deadline moved into the host's time.
///
/// # Safety
/// `abs` is null or points to a valid timespec.
unsafe fn host_deadline(abs: *const timespec, storage: &mut timespec) -> *const timespec {
    // SAFETY: `abs` is null or points to a valid timespec (the `# Safety` contract).
    unsafe {
        if abs.is_null() {
            return abs;
        }
        let off = offset();
        if off == 0 {
            return abs;
        }
        *storage = ops::shift(&*abs, -off);
        storage
    }
}

/// `TIME_UTC` of <time.h>.
const TIME_UTC: c_int = 1;

const NO_TIME: timespec = timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// Condition variables initialised with `CLOCK_MONOTONIC`: their deadlines are not
/// wall-clock times. A lock-free open-addressing set of addresses.
mod monotonic_conds {
    use super::*;

    const SLOTS: usize = 4096;
    const EMPTY: usize = 0;
    const GONE: usize = 1;
    static TABLE: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(EMPTY) }; SLOTS];

    fn start(addr: usize) -> usize {
        (addr >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) % SLOTS
    }

    pub fn insert(addr: usize) {
        if contains(addr) {
            return;
        }
        let first = start(addr);
        for i in 0..SLOTS {
            let slot = &TABLE[(first + i) % SLOTS];
            let cur = slot.load(Ordering::Relaxed);
            if (cur == EMPTY || cur == GONE)
                && slot
                    .compare_exchange(cur, addr, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        log::warn!("more than {SLOTS} monotonic condition variables: deadlines may be shifted");
    }

    pub fn remove(addr: usize) {
        let first = start(addr);
        for i in 0..SLOTS {
            let slot = &TABLE[(first + i) % SLOTS];
            match slot.load(Ordering::Acquire) {
                EMPTY => return,
                a if a == addr => slot.store(GONE, Ordering::Release),
                _ => {}
            }
        }
    }

    pub fn contains(addr: usize) -> bool {
        let first = start(addr);
        for i in 0..SLOTS {
            match TABLE[(first + i) % SLOTS].load(Ordering::Acquire) {
                EMPTY => return false,
                a if a == addr => return true,
                _ => {}
            }
        }
        false
    }
}

/// Clock of each timerfd (clock id + 1; 0 unknown), by descriptor number.
const TIMERFD_SLOTS: usize = 4096;
static TIMERFD_CLOCK: [AtomicU8; TIMERFD_SLOTS] = [const { AtomicU8::new(0) }; TIMERFD_SLOTS];

/// Layout of glibc's `struct timeb` (sys/timeb.h).
#[repr(C)]
pub struct Timeb {
    time: time_t,
    millitm: u16,
    timezone: i16,
    dstflag: i16,
}

hook! {
    fn clock_gettime(clock: clockid_t, ts: *mut timespec) -> c_int, missing: -1;
    reads_state |real| {
        // SAFETY: the caller's clock and buffer go unchanged to the real clock_gettime(2).
        let real = || unsafe { real(clock, ts) };
        // SAFETY: `ts` is a writable timespec (clock_gettime's contract).
        unsafe { clock_gettime_with(clock, ts, real) }
    }

    fn gettimeofday(tv: *mut timeval, tz: *mut c_void) -> c_int, missing: -1;
    reads_state |real| {
        // SAFETY: the caller's buffers go unchanged to the real gettimeofday(2).
        let real = || unsafe { real(tv, tz) };
        // SAFETY: `tv` is null or a writable timeval (gettimeofday's contract).
        unsafe { gettimeofday_with(tv, real) }
    }

    fn time(out: *mut time_t) -> time_t, missing: -1;
    reads_state |real| {
        // SAFETY: the caller's `out` goes unchanged to the real time(2).
        let real = || unsafe { real(out) };
        // SAFETY: `out` is null or a writable time_t (time's contract).
        unsafe { time_with(out, real) }
    }

    fn timespec_get(ts: *mut timespec, base: c_int) -> c_int, missing: 0;
    reads_state |real| {
        // SAFETY: the caller's buffer and base go unchanged to the real timespec_get(3).
        let rc = unsafe { real(ts, base) };
        if rc == TIME_UTC && !ts.is_null() {
            let off = offset();
            if off != 0 {
                // SAFETY: `ts` is non-null and the timespec timespec_get just filled.
                unsafe { *ts = ops::shift(&*ts, off) };
            }
        }
        rc
    }

    fn ftime(tb: *mut Timeb) -> c_int, missing: -1;
    reads_state |real| {
        // SAFETY: the caller's buffer goes unchanged to the real ftime(3).
        let rc = unsafe { real(tb) };
        let off = offset();
        if rc == 0 && off != 0 && !tb.is_null() {
            // SAFETY: `tb` is non-null and the timeb ftime just filled, the caller's.
            let tb = unsafe { &mut *tb };
            let ts = ops::shift(
                &timespec { tv_sec: tb.time, tv_nsec: tb.millitm as i64 * 1_000_000 },
                off,
            );
            tb.time = ts.tv_sec;
            tb.millitm = (ts.tv_nsec / 1_000_000) as u16;
        }
        rc
    }

    /// Never reaches the kernel for the wall clock: the host's clock is not the
    /// capsule's to set.
    fn clock_settime(clock: clockid_t, ts: *const timespec) -> c_int, missing: -1;
    |real| {
        if ops::is_wall_clock(clock) || clock == libc::CLOCK_MONOTONIC {
            // SAFETY: `ts` is null or a readable timespec (clock_settime's contract).
            set_wall_clock(clock, unsafe { ts.as_ref() })
        } else {
            // SAFETY: the caller's clock and time go unchanged to the real clock_settime(2).
            unsafe { real(clock, ts) }
        }
    }

    fn settimeofday(tv: *const timeval, tz: *const c_void) -> c_int, missing: -1;
    |_real| {
        if tv.is_null() {
            // Only the kernel's time zone, which is host-wide: accept and ignore it.
            if privileged() { 0 } else { fail(libc::EPERM) }
        } else {
            // SAFETY: `tv` is non-null, a readable timeval (settimeofday's contract).
            let tv = unsafe { &*tv };
            if tv.tv_usec < 0 || tv.tv_usec >= 1_000_000 {
                return fail(libc::EINVAL);
            }
            let ts = timespec { tv_sec: tv.tv_sec, tv_nsec: tv.tv_usec * 1000 };
            set_wall_clock(libc::CLOCK_REALTIME, Some(&ts))
        }
    }

    fn adjtime(delta: *const timeval, old: *mut timeval) -> c_int, missing: -1, support: Partial("a capsule root's adjustment applies at once, not slewed");
    |_real| {
        if !old.is_null() {
            // SAFETY: `old` is non-null, a writable timeval (adjtime's contract).
            unsafe { *old = timeval { tv_sec: 0, tv_usec: 0 } };
        }
        if delta.is_null() {
            return 0;
        }
        if !privileged() {
            return fail(libc::EPERM);
        }
        let mut now = NO_TIME;
        let now_ptr: *mut timespec = &mut now;
        // SAFETY: the raw clock_gettime writes the timespec `now_ptr` points to.
        let host_now = || unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, now_ptr) } as c_int;
        // SAFETY: `now_ptr` points to `now`, a writable timespec on this stack.
        unsafe { clock_gettime_with(libc::CLOCK_REALTIME, now_ptr, host_now) };
        // SAFETY: `delta` is non-null, a readable timeval (adjtime's contract).
        let delta = unsafe { &*delta };
        let target = ops::shift(&now, (delta.tv_sec * 1_000_000_000) + delta.tv_usec * 1000);
        set_wall_clock(libc::CLOCK_REALTIME, Some(&target))
    }

    fn clock_nanosleep(clock: clockid_t, flags: c_int, req: *const timespec, rem: *mut timespec) -> c_int, missing: libc::ENOSYS;
    |real| {
        if flags & libc::TIMER_ABSTIME != 0 && ops::is_wall_clock(clock) {
            let mut moved = NO_TIME;
            // SAFETY: `req` is a readable timespec (clock_nanosleep's contract).
            let req = unsafe { host_deadline(req, &mut moved) };
            // SAFETY: the caller's arguments, the deadline moved to the host's clock
            // (`moved` outlives the call), go to the real clock_nanosleep(2).
            unsafe { real(clock, flags, req, rem) }
        } else {
            // SAFETY: the caller's arguments go unchanged to the real clock_nanosleep(2).
            unsafe { real(clock, flags, req, rem) }
        }
    }

    fn sem_timedwait(sem: *mut libc::sem_t, abs: *const timespec) -> c_int, missing: -1;
    |real| {
        let mut moved = NO_TIME;
        // SAFETY: `abs` is a readable timespec (sem_timedwait's contract).
        let abs = unsafe { host_deadline(abs, &mut moved) };
        // SAFETY: the caller's semaphore and the host deadline (`moved` outlives the call).
        unsafe { real(sem, abs) }
    }

    fn sem_clockwait(sem: *mut libc::sem_t, clock: clockid_t, abs: *const timespec) -> c_int, missing: -1;
    |real| {
        let mut moved = NO_TIME;
        // SAFETY: `abs` is a readable timespec (sem_clockwait's contract).
        let abs = if ops::is_wall_clock(clock) { unsafe { host_deadline(abs, &mut moved) } } else { abs };
        // SAFETY: the caller's semaphore and clock, the deadline in the host's time.
        unsafe { real(sem, clock, abs) }
    }

    fn pthread_mutex_timedlock(m: *mut libc::pthread_mutex_t, abs: *const timespec) -> c_int, missing: libc::ENOSYS;
    |real| {
        let mut moved = NO_TIME;
        // SAFETY: `abs` is a readable timespec (pthread_mutex_timedlock's contract).
        let abs = unsafe { host_deadline(abs, &mut moved) };
        // SAFETY: the caller's mutex and the host deadline (`moved` outlives the call).
        unsafe { real(m, abs) }
    }

    fn pthread_mutex_clocklock(m: *mut libc::pthread_mutex_t, clock: clockid_t, abs: *const timespec) -> c_int, missing: libc::ENOSYS;
    |real| {
        let mut moved = NO_TIME;
        // SAFETY: `abs` is a readable timespec (pthread_mutex_clocklock's contract).
        let abs = if ops::is_wall_clock(clock) { unsafe { host_deadline(abs, &mut moved) } } else { abs };
        // SAFETY: the caller's mutex and clock, the deadline in the host's time.
        unsafe { real(m, clock, abs) }
    }

    fn pthread_cond_init(cond: *mut libc::pthread_cond_t, attr: *const libc::pthread_condattr_t) -> c_int, missing: libc::ENOSYS, version: "GLIBC_2.3.2";
    |real| {
        // SAFETY: the caller's condition variable and attributes go unchanged to the
        // real pthread_cond_init(3).
        let rc = unsafe { real(cond, attr) };
        if rc == 0 {
            let mut clock: clockid_t = libc::CLOCK_REALTIME;
            if !attr.is_null() {
                // SAFETY: `attr` is a non-null, initialised attribute object (the contract).
                unsafe { libc::pthread_condattr_getclock(attr, &mut clock) };
            }
            if clock == libc::CLOCK_MONOTONIC {
                monotonic_conds::insert(cond as usize);
            } else {
                monotonic_conds::remove(cond as usize);
            }
        }
        rc
    }

    fn pthread_cond_destroy(cond: *mut libc::pthread_cond_t) -> c_int, missing: libc::ENOSYS, version: "GLIBC_2.3.2";
    |real| {
        monotonic_conds::remove(cond as usize);
        // SAFETY: the caller's condition variable goes unchanged to the real destroy.
        unsafe { real(cond) }
    }

    fn pthread_cond_timedwait(cond: *mut libc::pthread_cond_t, m: *mut libc::pthread_mutex_t, abs: *const timespec) -> c_int, missing: libc::ENOSYS, version: "GLIBC_2.3.2", support: Partial("knows the clock of up to 4096 live monotonic condition variables");
    |real| {
        if offset() == 0 || monotonic_conds::contains(cond as usize) {
            // SAFETY: the caller's arguments go unchanged to the real pthread_cond_timedwait.
            unsafe { real(cond, m, abs) }
        } else {
            let mut moved = NO_TIME;
            // SAFETY: `abs` is a readable timespec (pthread_cond_timedwait's contract).
            let abs = unsafe { host_deadline(abs, &mut moved) };
            // SAFETY: the caller's condition and mutex, the deadline in the host's time.
            unsafe { real(cond, m, abs) }
        }
    }

    fn pthread_cond_clockwait(cond: *mut libc::pthread_cond_t, m: *mut libc::pthread_mutex_t, clock: clockid_t, abs: *const timespec) -> c_int, missing: libc::ENOSYS;
    |real| {
        let mut moved = NO_TIME;
        // SAFETY: `abs` is a readable timespec (pthread_cond_clockwait's contract).
        let abs = if ops::is_wall_clock(clock) { unsafe { host_deadline(abs, &mut moved) } } else { abs };
        // SAFETY: the caller's condition, mutex and clock, the deadline in the host's time.
        unsafe { real(cond, m, clock, abs) }
    }

    fn timerfd_create(clock: clockid_t, flags: c_int) -> c_int, missing: -1;
    |real| {
        // SAFETY: timerfd_create(2) takes integers only, passed unchanged.
        let fd = unsafe { real(clock, flags) };
        if fd >= 0 && (fd as usize) < TIMERFD_SLOTS {
            TIMERFD_CLOCK[fd as usize].store((clock + 1) as u8, Ordering::Relaxed);
        }
        fd
    }

    fn timerfd_settime(fd: c_int, flags: c_int, new: *const libc::itimerspec, old: *mut libc::itimerspec) -> c_int, missing: -1, support: Partial("absolute wall-clock timers of descriptors below 4096");
    |real| {
        let clock = if fd >= 0 && (fd as usize) < TIMERFD_SLOTS {
            TIMERFD_CLOCK[fd as usize].load(Ordering::Relaxed) as clockid_t - 1
        } else {
            -1
        };
        let off = offset();
        // SAFETY: `new` is null or a readable itimerspec (timerfd_settime's contract).
        let moved = match unsafe { new.as_ref() } {
            Some(n) if flags & libc::TFD_TIMER_ABSTIME != 0 && off != 0
                && ops::is_wall_clock(clock)
                && (n.it_value.tv_sec != 0 || n.it_value.tv_nsec != 0) =>
            {
                let mut moved = *n;
                moved.it_value = ops::shift(&n.it_value, -off);
                Some(moved)
            }
            _ => None,
        };
        match &moved {
            // SAFETY: the caller's descriptor, flags and `old`, the timer moved to the
            // host's clock (`moved` outlives the call).
            Some(moved) => unsafe { real(fd, flags, moved, old) },
            // SAFETY: the caller's arguments go unchanged to the real timerfd_settime(2).
            None => unsafe { real(fd, flags, new, old) },
        }
    }
}
