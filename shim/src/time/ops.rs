//! Clock arithmetic of the time replica, free of FFI.

use std::ffi::c_int;

use libc::{clockid_t, timespec};

/// Whether a clock is a wall clock that the capsule shifts.
#[inline]
pub fn is_wall_clock(clock: clockid_t) -> bool {
    matches!(
        clock,
        libc::CLOCK_REALTIME
            | libc::CLOCK_REALTIME_COARSE
            | libc::CLOCK_TAI
            | libc::CLOCK_REALTIME_ALARM
    )
}

const NS: i128 = 1_000_000_000;

pub fn to_ns(ts: &timespec) -> i128 {
    ts.tv_sec as i128 * NS + ts.tv_nsec as i128
}

/// `ts` moved by `offset_ns` (normalised: 0 ≤ tv_nsec < 1e9). In 64-bit arithmetic
/// with constant divisors: this is on the `clock_gettime` hot path. A `ts` that is not
/// normalised is returned as it is, for the kernel to refuse.
#[inline]
pub fn shift(ts: &timespec, offset_ns: i64) -> timespec {
    const NS64: i64 = 1_000_000_000;
    if !(0..NS64).contains(&ts.tv_nsec) {
        return *ts;
    }
    let mut sec = ts.tv_sec.saturating_add(offset_ns.div_euclid(NS64));
    let mut nsec = ts.tv_nsec + offset_ns.rem_euclid(NS64);
    if nsec >= NS64 {
        nsec -= NS64;
        sec = sec.saturating_add(1);
    }
    timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// A `timeval` moved by `offset_ns`.
#[inline]
pub fn shift_timeval(tv: &libc::timeval, offset_ns: i64) -> libc::timeval {
    if !(0..1_000_000).contains(&tv.tv_usec) {
        return *tv;
    }
    let ts = shift(
        &timespec {
            tv_sec: tv.tv_sec,
            tv_nsec: tv.tv_usec * 1000,
        },
        offset_ns,
    );
    libc::timeval {
        tv_sec: ts.tv_sec,
        tv_usec: ts.tv_nsec / 1000,
    }
}

/// The clock adjustment that makes the capsule's clock read `target_ns` now.
pub fn adjustment_for(target_ns: i128, real_now_ns: i128, base_offset_ns: i64) -> i64 {
    (target_ns - real_now_ns - base_offset_ns as i128).clamp(i64::MIN as i128, i64::MAX as i128)
        as i64
}

/// Checks a timespec a program wants to set, as the kernel does.
pub fn valid_timespec(ts: &timespec) -> Result<(), c_int> {
    if ts.tv_nsec < 0 || ts.tv_nsec >= 1_000_000_000 || ts.tv_sec < 0 {
        Err(libc::EINVAL)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(sec: i64, nsec: i64) -> timespec {
        timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        }
    }

    #[test]
    fn shifting_normalises() {
        let t = shift(&ts(100, 900_000_000), 200_000_000);
        assert_eq!((t.tv_sec, t.tv_nsec), (101, 100_000_000));
        let t = shift(&ts(100, 100_000_000), -200_000_000);
        assert_eq!((t.tv_sec, t.tv_nsec), (99, 900_000_000));
        let t = shift(&ts(1_700_000_000, 0), -86_400_000_000_000);
        assert_eq!(t.tv_sec, 1_700_000_000 - 86_400);
        let tv = shift_timeval(
            &libc::timeval {
                tv_sec: 5,
                tv_usec: 999_999,
            },
            1_000,
        );
        assert_eq!((tv.tv_sec, tv.tv_usec), (6, 0));
        let t = shift(&ts(5, 0), -1);
        assert_eq!((t.tv_sec, t.tv_nsec), (4, 999_999_999));
        let t = shift(&ts(5, 2_000_000_000), 1);
        assert_eq!((t.tv_sec, t.tv_nsec), (5, 2_000_000_000));
    }

    #[test]
    fn wall_clocks_only() {
        assert!(is_wall_clock(libc::CLOCK_REALTIME));
        assert!(is_wall_clock(libc::CLOCK_TAI));
        assert!(!is_wall_clock(libc::CLOCK_MONOTONIC));
        assert!(!is_wall_clock(libc::CLOCK_BOOTTIME));
        assert!(!is_wall_clock(libc::CLOCK_PROCESS_CPUTIME_ID));
    }

    #[test]
    fn settime_adjustment() {
        assert_eq!(adjustment_for(1_000, 400, 100), 500);
        assert!(valid_timespec(&ts(1, 1_000_000_000)).is_err());
        assert!(valid_timespec(&ts(-1, 0)).is_err());
    }
}
