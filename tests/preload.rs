//! The shim on its own (plain `LD_PRELOAD`, no loader): configuration by environment
//! variables and by a `CAPSULE_CONFIG` file, refusal of malformed settings before
//! `main`, its log, errno hygiene, `syscall()`, and the host left alone.

mod common;

use common::*;

#[test]
fn plain_preload_without_the_loader() {
    let out = run_preload(&[("CAPSULE_HOSTNAME", "x")], "hostname", &[]);
    assert_eq!(
        success(&out, "LD_PRELOAD CAPSULE_HOSTNAME=x hostname"),
        "x\n"
    );
}

#[test]
fn config_file_configures_the_capsule() {
    let dir = TempDir::new("config");
    let file = dir.join("capsule.conf");
    std::fs::write(
        &file,
        "# a capsule\n\nCAPSULE_HOSTNAME=from-file\nCAPSULE_UID=77\nCAPSULE_TIME_OFFSET=-1d\n",
    )
    .unwrap();
    let conf = file.to_str().unwrap();
    let script = "hostname; id -u; env -i hostname";
    let out = run_preload(&[("CAPSULE_CONFIG", conf)], "sh", &["-c", script]);
    assert_eq!(
        success(&out, "CAPSULE_CONFIG"),
        "from-file\n77\nfrom-file\n"
    );

    // Environment variables win over the file.
    let env = [("CAPSULE_CONFIG", conf), ("CAPSULE_HOSTNAME", "from-env")];
    let out = run_preload(&env, "sh", &["-c", "hostname; id -u"]);
    assert_eq!(success(&out, "CAPSULE_CONFIG + env"), "from-env\n77\n");

    // The file's time offset applies too.
    let probe = compile_c("probe_time");
    let out = run_preload(
        &[("CAPSULE_CONFIG", conf)],
        &probe,
        &["check", "-86400", "1"],
    );
    probe_ok(&out, "time offset from CAPSULE_CONFIG");
}

/// Asserts the shim refused to start the program: status 125, nothing on stdout, one
/// line on stderr starting with `capsule: <prefix>`, and the program never ran.
#[track_caller]
fn assert_refused(env: &[(&str, &str)], prefix: &str, mentions: &str) {
    let dir = TempDir::new("refused");
    let marker = dir.join("program-ran");
    let out = run_preload(env, "touch", &[marker.to_str().unwrap()]);
    let what = format!("{env:?}");
    assert_eq!(
        out.status.code(),
        Some(125),
        "{what}: expected exit 125\n{}",
        describe(&out)
    );
    assert!(
        !marker.exists(),
        "{what}: the program ran despite the bad setting"
    );
    assert!(
        out.stdout.is_empty(),
        "{what}: stdout not empty\n{}",
        describe(&out)
    );
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one line on stderr\n{}",
        describe(&out)
    );
    assert!(
        lines[0].starts_with(&format!("capsule: {prefix}")) && lines[0].contains(mentions),
        "{what}: the message should start with `capsule: {prefix}` and mention {mentions}, got {:?}",
        lines[0]
    );
}

#[test]
fn malformed_settings_stop_the_program_before_main() {
    let long = "a".repeat(65);
    let cases: &[(&str, &str)] = &[
        ("CAPSULE_TIME_OFFSET", "soon"),
        ("CAPSULE_TIME_AT", "tomorrow"),
        ("CAPSULE_UID", "alice"),
        ("CAPSULE_GID", "x"),
        ("CAPSULE_USER", "nosuchuser"),
        ("CAPSULE_HOSTNAME", ""),
        ("CAPSULE_HOSTNAME", &long),
        ("CAPSULE_LOG", "loud"),
        ("CAPSULE_STATE_DIR", "relative/dir"),
    ];
    for (key, value) in cases {
        assert_refused(&[("CAPSULE_UID", "1"), (key, value)], key, key);
    }
    assert_refused(
        &[("CAPSULE_UID", "1"), ("CAPSULE_GROUPS", "1,x")],
        "CAPSULE_GROUPS",
        "CAPSULE_GROUPS",
    );
    assert_refused(
        &[
            ("CAPSULE_TIME_OFFSET", "1d"),
            ("CAPSULE_TIME_AT", "2030-01-01T00:00:00Z"),
        ],
        "CAPSULE_TIME_",
        "CAPSULE_TIME_",
    );
}

#[test]
fn malformed_config_file_stops_the_program() {
    let dir = TempDir::new("badconf");
    let bad_value = dir.join("bad-value.conf");
    std::fs::write(&bad_value, "CAPSULE_HOSTNAME=ok\nCAPSULE_UID=alice\n").unwrap();
    assert_refused(
        &[("CAPSULE_CONFIG", bad_value.to_str().unwrap())],
        "CAPSULE_",
        "CAPSULE_UID",
    );
    let bad_line = dir.join("bad-line.conf");
    std::fs::write(&bad_line, "CAPSULE_HOSTNAME=ok\nthis is not a setting\n").unwrap();
    assert_refused(
        &[("CAPSULE_CONFIG", bad_line.to_str().unwrap())],
        "CAPSULE_CONFIG",
        "CAPSULE_CONFIG",
    );
    let missing = dir.join("missing.conf");
    assert_refused(
        &[("CAPSULE_CONFIG", missing.to_str().unwrap())],
        "CAPSULE_CONFIG",
        "CAPSULE_CONFIG",
    );
}

const BOTH_STREAMS: &str = "echo out; echo err >&2; hostname; id -u >&2";

#[test]
fn log_is_off_by_default() {
    let native = run_native("sh", &["-c", BOTH_STREAMS]);
    let env = [("CAPSULE_HOSTNAME", "quiet"), ("CAPSULE_UID", "5")];
    let out = run_preload(&env, "sh", &["-c", BOTH_STREAMS]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), "out\nquiet\n");
    assert_eq!(stderr(&out), "err\n5\n");
    assert_eq!(stdout(&native), format!("out\n{}\n", host_name()));
}

#[test]
fn debug_log_goes_to_the_log_file_only() {
    let dir = TempDir::new("log");
    let log = dir.join("shim.log");
    let env = [
        ("CAPSULE_HOSTNAME", "chatty"),
        ("CAPSULE_UID", "5"),
        ("CAPSULE_LOG", "debug"),
        ("CAPSULE_LOG_FILE", log.to_str().unwrap()),
    ];
    let out = run_preload(&env, "sh", &["-c", BOTH_STREAMS]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), "out\nchatty\n", "stdout changed by logging");
    assert_eq!(stderr(&out), "err\n5\n", "stderr changed by logging");
    let written = std::fs::read(&log).unwrap_or_default();
    assert!(
        !written.is_empty(),
        "CAPSULE_LOG=debug wrote nothing to {}",
        log.display()
    );
}

#[test]
fn processes_outside_the_capsule_see_the_host() {
    let host = host_name();
    let uid = host_uid().to_string();
    // A capsule process runs meanwhile.
    let capsule = spawn(&mut preload_command(
        &[("CAPSULE_HOSTNAME", "inside"), ("CAPSULE_UID", "999")],
        "sh",
        &["-c", "hostname; sleep 1; hostname; id -u"],
    ));
    let out = run_native("hostname", &[]);
    assert_eq!(success(&out, "native hostname"), format!("{host}\n"));
    let out = run_native("id", &["-u"]);
    assert_eq!(success(&out, "native id -u"), format!("{uid}\n"));
    let probe = compile_c("probe_uts");
    let out = run_native(&probe, &["check", &host, &host_domain()]);
    probe_ok(&out, "native probe_uts during a capsule");
    let out = capsule.wait();
    assert_eq!(success(&out, "capsule process"), "inside\ninside\n999\n");
}

#[test]
fn errno_is_left_alone_on_success_and_set_like_the_kernel_on_failure() {
    let probe = compile_c("probe_errno");
    probe_ok(&run_native(&probe, &[]), "native probe_errno");
    for env in [
        &[][..],
        &[("CAPSULE_HOSTNAME", "e1")][..],
        &[
            ("CAPSULE_HOSTNAME", "e2"),
            ("CAPSULE_UID", "0"),
            ("CAPSULE_TIME_OFFSET", "-5d"),
        ][..],
        &[
            ("CAPSULE_UID", "1000,1001,1002"),
            ("CAPSULE_GROUPS", "1,2,3"),
            ("CAPSULE_TIME_AT", "2030-01-01T00:00:00Z"),
        ][..],
    ] {
        probe_ok(
            &run_preload(env, &probe, &[]),
            &format!("probe_errno {env:?}"),
        );
    }
}

#[test]
fn syscall_function_numbers_go_through_the_capsule() {
    let probe = compile_c("probe_syscall");
    let (uid, gid) = (host_uid().to_string(), host_gid().to_string());
    let host = host_name();
    let out = run_native(&probe, &[&host, &uid, &uid, &uid, &gid, "0", "1"]);
    probe_ok(&out, "native probe_syscall");
    let env = [
        ("CAPSULE_HOSTNAME", "sys-host"),
        ("CAPSULE_UID", "1234"),
        ("CAPSULE_TIME_OFFSET", "+3h"),
    ];
    let args = ["sys-host", "1234", "1234", "1234", "1234", "10800", "1"];
    probe_ok(
        &run_preload(&env, &probe, &args),
        "probe_syscall under the shim",
    );
    let env = [("CAPSULE_UID", "10,20,30"), ("CAPSULE_GID", "40")];
    let args = [host.as_str(), "10", "20", "30", "40", "0", "1"];
    probe_ok(
        &run_preload(&env, &probe, &args),
        "probe_syscall, uid triple",
    );
}

#[test]
fn hooks_answer_in_constructors_and_destructors() {
    let probe = compile_c("probe_ctor");
    let (host, uid) = (host_name(), host_uid().to_string());
    probe_ok(
        &run_native(&probe, &[&host, &uid, "0"]),
        "native probe_ctor",
    );
    let env = [
        ("CAPSULE_HOSTNAME", "early"),
        ("CAPSULE_UID", "321"),
        ("CAPSULE_TIME_OFFSET", "-2d"),
    ];
    let out = run_preload(&env, &probe, &["early", "321", "-172800"]);
    probe_ok(&out, "probe_ctor under the shim");
}

#[test]
fn hooks_answer_in_signal_handlers_that_interrupt_hooks() {
    // A SIGALRM handler calling time() or gethostname() interrupts the program's own
    // hooked calls: the handler must still get the capsule's answers.
    let probe = compile_c("probe_signal");
    let (host, uid) = (host_name(), host_uid().to_string());
    probe_ok(
        &run_native(&probe, &[&host, &uid, "0"]),
        "native probe_signal",
    );
    let env = [
        ("CAPSULE_HOSTNAME", "sig-host"),
        ("CAPSULE_UID", "9"),
        ("CAPSULE_TIME_OFFSET", "-1d"),
    ];
    let out = run_preload(&env, &probe, &["sig-host", "9", "-86400"]);
    probe_ok(&out, "probe_signal under the shim");
}
