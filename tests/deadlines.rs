//! Absolute wall-clock deadlines inside a capsule whose clock is shifted wait as long
//! as the program meant: a program computing "now + 300 ms" from its capsule clock
//! neither returns at once (clock set back) nor waits for the offset (clock set
//! forward).

mod common;

use common::*;

fn check(env: &[(&str, &str)], what: &str) {
    let probe = compile_c("probe_deadlines");
    let out = if env.is_empty() {
        run_native(&probe, &[])
    } else {
        run_preload(env, &probe, &[])
    };
    probe_ok(&out, what);
}

#[test]
fn deadlines_natively() {
    check(&[], "native");
}

#[test]
fn deadlines_with_the_clock_set_back_a_year() {
    check(&[("CAPSULE_TIME_OFFSET", "-1y")], "offset -1y");
}

#[test]
fn deadlines_with_the_clock_set_forward_a_day() {
    check(&[("CAPSULE_TIME_OFFSET", "+1d")], "offset +1d");
}

#[test]
fn deadlines_with_a_clock_starting_in_2030() {
    check(
        &[("CAPSULE_TIME_AT", "2030-01-01T00:00:00Z")],
        "time-at 2030",
    );
}
