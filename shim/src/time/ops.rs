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

pub fn from_ns(ns: i128) -> timespec {
    let clamped = ns.clamp(i64::MIN as i128 * NS, i64::MAX as i128 * NS);
    timespec {
        tv_sec: clamped.div_euclid(NS) as libc::time_t,
        tv_nsec: clamped.rem_euclid(NS) as libc::c_long,
    }
}

/// `ts` moved by `offset_ns` (normalised: 0 ≤ tv_nsec < 1e9).
#[inline]
pub fn shift(ts: &timespec, offset_ns: i64) -> timespec {
    from_ns(to_ns(ts) + offset_ns as i128)
}

/// A `timeval` moved by `offset_ns`.
pub fn shift_timeval(tv: &libc::timeval, offset_ns: i64) -> libc::timeval {
    let ns = tv.tv_sec as i128 * NS + tv.tv_usec as i128 * 1000 + offset_ns as i128;
    let ts = from_ns(ns);
    libc::timeval {
        tv_sec: ts.tv_sec,
        tv_usec: (ts.tv_nsec / 1000) as libc::suseconds_t,
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
