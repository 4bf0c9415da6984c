//! The time replica: the realtime clocks are shifted by an offset (or start at an
//! instant and run on); monotonic and CPU clocks stay real; setting the clock moves only
//! the capsule's.
//!
//! The host clock must never change: probes that set the clock run as the real user
//! `nobody` and refuse to run unless the shim interposes the call.

mod common;

use common::*;

const DAY: i64 = 86_400;
/// 2030-01-01T00:00:00Z.
const Y2030: i64 = 1_893_456_000;

fn probe_time(env: Option<&[(&str, &str)]>, args: &[&str]) -> std::process::Output {
    let probe = compile_c("probe_time");
    match env {
        Some(env) => run_preload(env, &probe, args),
        None => run_native(&probe, args),
    }
}

#[test]
fn probe_sees_the_real_clocks_natively() {
    probe_ok(&probe_time(None, &["check", "0", "1"]), "native probe_time");
}

#[test]
fn shim_without_time_settings_keeps_the_real_clocks() {
    let env = [("CAPSULE_HOSTNAME", "t")];
    probe_ok(&probe_time(Some(&env), &["check", "0", "1"]), "no offset");
}

#[test]
fn every_realtime_call_is_shifted_by_the_offset() {
    for (offset, secs) in [
        ("-1d", -DAY),
        ("-3d", -3 * DAY),
        ("+90m", 5400),
        ("1d12h", DAY + DAY / 2),
        ("-1y", -365 * DAY),
        ("2w", 14 * DAY),
        ("-30s", -30),
    ] {
        let env = [("CAPSULE_TIME_OFFSET", offset)];
        let out = probe_time(Some(&env), &["check", &secs.to_string(), "1"]);
        probe_ok(&out, &format!("CAPSULE_TIME_OFFSET={offset}"));
    }
}

#[test]
fn time_at_starts_the_clock_at_the_instant_and_runs_on() {
    let env = [("CAPSULE_TIME_AT", "2030-01-01T00:00:00Z")];
    let out = probe_time(Some(&env), &["at", &Y2030.to_string(), "3"]);
    probe_ok(&out, "probe_time at 2030");
    // The same capsule clock, checked against the kernel's (monotonic clocks untouched,
    // the shifted clock advancing over a sleep).
    let offset = Y2030 as f64 - now_secs();
    let out = probe_time(Some(&env), &["check", &format!("{offset:.3}"), "3"]);
    probe_ok(&out, "probe_time check under CAPSULE_TIME_AT");
}

#[test]
fn syscall_function_clock_numbers_are_shifted() {
    let env = [
        ("CAPSULE_TIME_OFFSET", "-2d"),
        ("CAPSULE_HOSTNAME", "sys-host"),
    ];
    let (uid, gid) = (host_uid().to_string(), host_gid().to_string());
    let probe = compile_c("probe_syscall");
    let args = ["sys-host", &uid, &uid, &uid, &gid, "-172800", "1"];
    probe_ok(&run_preload(&env, &probe, &args), "probe_syscall -2d");
}

// ---- real programs -------------------------------------------------------------------

fn date_secs(out: &std::process::Output) -> i64 {
    success(out, "date +%s")
        .trim()
        .parse()
        .expect("date +%s prints a number")
}

#[test]
fn date_under_a_one_day_offset() {
    let before = now_secs() as i64;
    let out = run_capsule(&["run", "--time-offset", "-1d", "--", "date", "+%s"]);
    let after = now_secs() as i64;
    let shown = date_secs(&out);
    assert!(
        shown >= before - DAY - 1 && shown <= after - DAY + 1,
        "date +%s printed {shown}, expected {}..{}",
        before - DAY,
        after - DAY
    );
}

#[test]
fn date_under_plain_preload_offset() {
    let before = now_secs() as i64;
    let out = run_preload(&[("CAPSULE_TIME_OFFSET", "+1w")], "date", &["+%s"]);
    let after = now_secs() as i64;
    let shown = date_secs(&out);
    assert!(
        shown >= before + 7 * DAY - 1 && shown <= after + 7 * DAY + 1,
        "date +%s printed {shown}"
    );
}

#[test]
fn date_at_2030_and_the_clock_runs_on() {
    let out = run_capsule(&[
        "run",
        "--time-at",
        "2030-01-01T00:00:00Z",
        "--",
        "date",
        "-u",
        "+%Y-%m-%d",
    ]);
    assert_eq!(success(&out, "date -u +%Y-%m-%d"), "2030-01-01\n");
    let out = run_capsule(&[
        "run",
        "--time-at",
        "2030-01-01T00:00:00Z",
        "--",
        "sh",
        "-c",
        "date +%s; sleep 1; date +%s",
    ]);
    let text = success(&out, "two dates 1 s apart");
    let times: Vec<i64> = text.lines().map(|l| l.parse().expect("number")).collect();
    assert_eq!(times.len(), 2, "{text}");
    assert!(
        times[0] >= Y2030 && times[0] <= Y2030 + 5,
        "first read {} is not at 2030-01-01T00:00:00Z",
        times[0]
    );
    assert!(
        times[1] - times[0] >= 1 && times[1] - times[0] <= 4,
        "the clock did not run on: {times:?}"
    );
}

/// Processes started later in the capsule (children, started 2 s apart) agree with the
/// first: the instant is fixed once, when the capsule starts.
fn assert_late_child_agrees(out: &std::process::Output, what: &str) {
    let text = success(out, what);
    let times: Vec<i64> = text.lines().map(|l| l.parse().expect("number")).collect();
    assert_eq!(times.len(), 2, "{what}: {text}");
    assert!(
        times[0] >= Y2030 && times[0] <= Y2030 + 5,
        "{what}: first process read {}, expected 2030-01-01T00:00:00Z",
        times[0]
    );
    assert!(
        times[1] - times[0] >= 2 && times[1] - times[0] <= 5,
        "{what}: a process started 2 s later read {} (first read {}): \
         the capsule's processes disagree about the time",
        times[1],
        times[0]
    );
}

#[test]
fn processes_of_one_capsule_agree_on_the_time() {
    let out = run_capsule(&[
        "run",
        "--time-at",
        "2030-01-01T00:00:00Z",
        "--",
        "sh",
        "-c",
        "date +%s; sleep 2; date +%s",
    ]);
    assert_late_child_agrees(&out, "capsule run --time-at");
}

#[test]
fn processes_of_one_preloaded_program_agree_on_the_time() {
    let env = [("CAPSULE_TIME_AT", "2030-01-01T00:00:00Z")];
    let out = run_preload(&env, "sh", &["-c", "date +%s; sleep 2; date +%s"]);
    assert_late_child_agrees(&out, "LD_PRELOAD CAPSULE_TIME_AT");
}

#[test]
fn python_time_and_datetime() {
    let script = "import time, datetime\n\
                  print(time.time())\n\
                  print(datetime.datetime.now(datetime.timezone.utc).timestamp())\n\
                  print(datetime.datetime.now().year)\n";
    let before = now_secs();
    let out = run_capsule(&[
        "run",
        "--time-offset",
        "-1d",
        "--",
        python3().to_str().unwrap(),
        "-c",
        script,
    ]);
    let after = now_secs();
    let text = success(&out, "python time");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in &lines[..2] {
        let t: f64 = line.parse().expect("a float");
        assert!(
            t >= before - DAY as f64 - 1.0 && t <= after - DAY as f64 + 1.0,
            "python read {t}, expected {}..{}",
            before - DAY as f64,
            after - DAY as f64
        );
    }

    let env = [("CAPSULE_TIME_AT", "2030-06-15T12:00:00Z")];
    let out = run_preload(&env, python3(), &["-c", script]);
    let text = success(&out, "python time at 2030");
    assert_eq!(text.lines().nth(2), Some("2030"), "{text}");
}

#[test]
fn python_monotonic_is_not_shifted() {
    let script = "import time\nprint(time.monotonic())\n";
    let before = monotonic_secs();
    let out = run_capsule(&[
        "run",
        "--time-offset",
        "-3d",
        "--",
        python3().to_str().unwrap(),
        "-c",
        script,
    ]);
    let after = monotonic_secs();
    let m: f64 = success(&out, "python monotonic")
        .trim()
        .parse()
        .expect("a float");
    assert!(
        m >= before - 0.01 && m <= after + 0.01,
        "time.monotonic() = {m}, the kernel's monotonic clock was {before}..{after}"
    );
}

// ---- setting the clock ---------------------------------------------------------------

fn probe_settime(env: &[(&str, &str)], how: &str, delta: &str, expect: &str) -> String {
    let probe = compile_c("probe_time");
    let mut nobody = AsNobody::new();
    let mut cmd = nobody.preload_command(env, &probe, &["settime", how, delta, expect]);
    let out = run(&mut cmd);
    probe_ok(
        &out,
        &format!("{how} {delta} expecting {expect} with {env:?}"),
    )
}

#[test]
fn fake_root_clock_settime_moves_only_the_capsule_clock() {
    let env = [("CAPSULE_UID", "0"), ("CAPSULE_TIME_OFFSET", "-1d")];
    probe_settime(&env, "clock_settime", "3600", "ok");
    probe_settime(&env, "clock_settime", "-7200", "ok");
}

#[test]
fn fake_root_settimeofday_moves_only_the_capsule_clock() {
    let env = [("CAPSULE_UID", "0")];
    probe_settime(&env, "settimeofday", "86400", "ok");
}

#[test]
fn unprivileged_capsule_user_cannot_set_the_clock() {
    let env = [("CAPSULE_UID", "1000"), ("CAPSULE_TIME_OFFSET", "+1h")];
    probe_settime(&env, "clock_settime", "3600", "EPERM");
    probe_settime(&env, "settimeofday", "3600", "EPERM");
}
