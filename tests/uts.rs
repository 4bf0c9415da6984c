//! The uts replica: `uname`, `gethostname`, `getdomainname` report the capsule's names;
//! `sethostname`/`setdomainname` change only the capsule's (never the host's).
//!
//! The machine's real host name must never change: every probe that sets a name runs as
//! the real unprivileged user `nobody` (the kernel would refuse a call the shim let
//! through), refuses to run unless the shim interposes the call, and every such test
//! checks the host name afterwards.

mod common;

use common::*;

fn probe_uts(env: Option<&[(&str, &str)]>, args: &[&str]) -> std::process::Output {
    let probe = compile_c("probe_uts");
    match env {
        Some(env) => run_preload(env, &probe, args),
        None => run_native(&probe, args),
    }
}

/// Runs the setting probe under the shim as the real user nobody.
fn probe_uts_set(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let probe = compile_c("probe_uts");
    let mut nobody = AsNobody::new();
    let mut cmd = nobody.preload_command(env, &probe, args);
    run(&mut cmd)
}

#[track_caller]
fn assert_host_name_is(before: &str) {
    assert_eq!(host_name(), before, "the REAL host name changed");
    let out = run_native("hostname", &[]);
    assert_eq!(success(&out, "native hostname").trim(), before);
}

#[test]
fn probe_sees_the_host_names_natively() {
    let out = probe_uts(None, &["check", &host_name(), &host_domain()]);
    probe_ok(&out, "native probe_uts");
}

#[test]
fn shim_without_settings_keeps_the_host_names() {
    let out = probe_uts(Some(&[]), &["check", &host_name(), &host_domain()]);
    probe_ok(&out, "probe_uts under the shim, no settings");
}

#[test]
fn capsule_hostname_and_domainname_everywhere_libc_reports_them() {
    let env = [
        ("CAPSULE_HOSTNAME", "web1"),
        ("CAPSULE_DOMAINNAME", "capsule.test"),
    ];
    let out = probe_uts(Some(&env), &["check", "web1", "capsule.test"]);
    probe_ok(&out, "probe_uts with CAPSULE_HOSTNAME/DOMAINNAME");
}

#[test]
fn hostname_alone_keeps_the_host_domain() {
    let env = [("CAPSULE_HOSTNAME", "db-primary")];
    let out = probe_uts(Some(&env), &["check", "db-primary", &host_domain()]);
    probe_ok(&out, "probe_uts with CAPSULE_HOSTNAME only");
}

#[test]
fn longest_allowed_hostname() {
    let name = "h".repeat(64);
    let env = [("CAPSULE_HOSTNAME", name.as_str())];
    let out = probe_uts(Some(&env), &["check", &name, &host_domain()]);
    probe_ok(&out, "64-byte host name");
}

// ---- real programs -------------------------------------------------------------------

#[test]
fn hostname_and_uname_programs() {
    let env = [("CAPSULE_HOSTNAME", "web1")];
    let out = run_preload(&env, "hostname", &[]);
    assert_eq!(success(&out, "hostname"), "web1\n");
    let out = run_preload(&env, "uname", &["-n"]);
    assert_eq!(success(&out, "uname -n"), "web1\n");
    let native = success(&run_native("uname", &["-a"]), "native uname -a");
    let out = run_preload(&env, "uname", &["-a"]);
    let text = success(&out, "uname -a");
    assert!(
        text.split_whitespace().any(|w| w == "web1"),
        "uname -a lacks web1: {text}"
    );
    // Everything but the node name is the host's.
    let expected = native.replacen(&format!(" {} ", host_name()), " web1 ", 1);
    assert_eq!(text, expected);
}

#[test]
fn domainname_program() {
    let env = [
        ("CAPSULE_HOSTNAME", "web1"),
        ("CAPSULE_DOMAINNAME", "example.test"),
    ];
    let out = run_preload(&env, "domainname", &[]);
    assert_eq!(success(&out, "domainname"), "example.test\n");
}

#[test]
fn python_socket_and_platform() {
    let env = [("CAPSULE_HOSTNAME", "py-host")];
    let script = "import socket, platform, os\n\
                  print(socket.gethostname())\n\
                  print(platform.node())\n\
                  print(os.uname().nodename)\n";
    let out = run_preload(&env, python3(), &["-c", script]);
    assert_eq!(success(&out, "python"), "py-host\npy-host\npy-host\n");
}

// ---- sethostname / setdomainname -----------------------------------------------------

#[test]
fn fake_root_sethostname_changes_only_its_own_name() {
    let before = host_name();
    let env = [("CAPSULE_UID", "0"), ("CAPSULE_HOSTNAME", "web1")];
    let out = probe_uts_set(&env, &["sethostname", "web2", "ok"]);
    let text = probe_ok(&out, "sethostname web2 as fake root");
    assert!(text.contains("hostname=web2\n"), "{text}");
    assert_host_name_is(&before);
    // Another process of the same (stateless) capsule still has the configured name.
    let out = run_preload(&env, "hostname", &[]);
    assert_eq!(success(&out, "hostname"), "web1\n");
}

#[test]
fn sethostname_is_inherited_through_exec() {
    let before = host_name();
    let env = [("CAPSULE_UID", "0"), ("CAPSULE_HOSTNAME", "web1")];
    let hostname = "/usr/bin/hostname";
    let out = probe_uts_set(&env, &["sethostname", "renamed", "ok", "exec", hostname]);
    let text = success(&out, "sethostname then exec hostname");
    assert_eq!(text.lines().last(), Some("renamed"), "{text}");
    assert_host_name_is(&before);
}

#[test]
fn fake_root_setdomainname() {
    let before_domain = host_domain();
    let env = [
        ("CAPSULE_UID", "0"),
        ("CAPSULE_HOSTNAME", "web1"),
        ("CAPSULE_DOMAINNAME", "one.test"),
    ];
    let out = probe_uts_set(&env, &["setdomainname", "two.test", "ok"]);
    let text = probe_ok(&out, "setdomainname as fake root");
    assert!(text.contains("domainname=two.test\n"), "{text}");
    assert_eq!(host_domain(), before_domain, "the REAL domain name changed");
}

#[test]
fn unprivileged_capsule_user_gets_eperm() {
    let before = host_name();
    let env = [("CAPSULE_UID", "1000"), ("CAPSULE_HOSTNAME", "web1")];
    let out = probe_uts_set(&env, &["sethostname", "web2", "EPERM"]);
    let text = probe_ok(&out, "sethostname as capsule uid 1000");
    assert!(text.contains("hostname=web1\n"), "{text}");
    let out = probe_uts_set(&env, &["setdomainname", "x.test", "EPERM"]);
    probe_ok(&out, "setdomainname as capsule uid 1000");
    assert_host_name_is(&before);
}

#[test]
fn name_longer_than_64_bytes_is_einval() {
    let before = host_name();
    let long = "a".repeat(65);
    // The kernel (the harness is root) checks the length before changing anything.
    if can_switch_user() {
        let out = probe_uts(None, &["sethostname", &long, "EINVAL"]);
        probe_ok(&out, "native sethostname of 65 bytes");
    }
    let env = [("CAPSULE_UID", "0"), ("CAPSULE_HOSTNAME", "web1")];
    let out = probe_uts_set(&env, &["sethostname", &long, "EINVAL"]);
    probe_ok(&out, "capsule sethostname of 65 bytes");
    let out = probe_uts_set(&env, &["setdomainname", &long, "EINVAL"]);
    probe_ok(&out, "capsule setdomainname of 65 bytes");
    assert_host_name_is(&before);
}

#[test]
fn state_dir_shares_a_new_name_with_later_processes() {
    let before = host_name();
    let state = TempDir::new("uts-state");
    let other = TempDir::new("uts-other");
    let env = [
        ("CAPSULE_UID", "0"),
        ("CAPSULE_HOSTNAME", "web1"),
        ("CAPSULE_STATE_DIR", state.str()),
    ];
    let out = probe_uts_set(&env, &["sethostname", "shared-name", "ok"]);
    probe_ok(&out, "sethostname with a state dir");
    // A process started later in the same capsule sees the new name.
    let out = run_preload(&env, "hostname", &[]);
    assert_eq!(success(&out, "later hostname"), "shared-name\n");
    let out = run_preload(&env, "uname", &["-n"]);
    assert_eq!(success(&out, "later uname -n"), "shared-name\n");
    // Another capsule (another state dir) and the host do not.
    let env_other = [
        ("CAPSULE_UID", "0"),
        ("CAPSULE_HOSTNAME", "web1"),
        ("CAPSULE_STATE_DIR", other.str()),
    ];
    let out = run_preload(&env_other, "hostname", &[]);
    assert_eq!(success(&out, "other capsule's hostname"), "web1\n");
    assert_host_name_is(&before);
}

#[test]
fn hostname_program_renames_the_capsule_with_a_state_dir() {
    let before = host_name();
    let state = TempDir::new("uts-prog");
    let env = [
        ("CAPSULE_UID", "0"),
        ("CAPSULE_HOSTNAME", "web1"),
        ("CAPSULE_STATE_DIR", state.str()),
    ];
    let script = "hostname renamed-by-prog && hostname";
    let mut nobody = AsNobody::new();
    let mut cmd = nobody.preload_command(&env, "sh", &["-c", script]);
    let out = run(&mut cmd);
    assert_eq!(success(&out, "hostname NEW; hostname"), "renamed-by-prog\n");
    assert_host_name_is(&before);
}

#[test]
fn hostname_program_as_unprivileged_capsule_user_fails() {
    let before = host_name();
    let env = [("CAPSULE_UID", "1000"), ("CAPSULE_HOSTNAME", "web1")];
    let mut nobody = AsNobody::new();
    let mut cmd = nobody.preload_command(&env, "hostname", &["nope"]);
    let out = run(&mut cmd);
    assert!(
        !out.status.success(),
        "hostname NEW must fail for uid 1000\n{}",
        describe(&out)
    );
    assert_host_name_is(&before);
}

#[test]
fn capsule_run_hostname_rename_is_seen_by_later_processes() {
    let before = host_name();
    let home = CapsuleHome::new();
    let mut nobody = AsNobody::new();
    let mut cmd = nobody.capsule_command(
        &home,
        &[
            "run",
            "--hostname",
            "web1",
            "--user",
            "0",
            "--",
            "sh",
            "-c",
            "hostname; hostname web9 && hostname",
        ],
    );
    let out = run(&mut cmd);
    assert_eq!(
        success(&out, "capsule run ... hostname web9"),
        "web1\nweb9\n"
    );
    assert_host_name_is(&before);
}

#[test]
fn capsule_run_hostname() {
    let out = run_capsule(&["run", "--hostname", "loader-host", "--", "hostname"]);
    assert_eq!(success(&out, "capsule run --hostname"), "loader-host\n");
    let out = run_capsule(&["run", "--hostname", "loader-host", "--", "uname", "-n"]);
    assert_eq!(success(&out, "capsule run uname -n"), "loader-host\n");
}

#[test]
fn capsule_run_hostname_gives_the_capsule_an_etc_hostname() {
    let before = std::fs::read_to_string("/etc/hostname").ok();
    let out = run_capsule(&[
        "run",
        "--hostname",
        "file-host",
        "--",
        "cat",
        "/etc/hostname",
    ]);
    assert_eq!(
        success(&out, "capsule run cat /etc/hostname"),
        "file-host\n"
    );
    assert_eq!(
        std::fs::read_to_string("/etc/hostname").ok(),
        before,
        "the host's /etc/hostname changed"
    );
}
