//! Bad input is refused before anything is created or started: one line on stderr
//! (control characters of the input escaped), exit status 125, no state directory,
//! no capsule started. Covers `capsule run` (volumes with `..`, capsule settings and
//! `LD_PRELOAD` given for the program, an environment `exec` cannot take), the shim
//! under plain `LD_PRELOAD` (peers, names, a missing root, unknown config keys) and
//! `capsule up` (a NUL byte, more capsules than the descriptor limit, `--dry-run`).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// Asserts a refusal: status 125, one line on stderr containing `culprit`, nothing on
/// stdout.
#[track_caller]
fn assert_refused(out: &Output, culprit: &str, what: &str) {
    assert_eq!(out.status.code(), Some(125), "{what}: {}", describe(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {err:?}");
    assert!(err.contains(culprit), "{what}: {culprit:?} not in {err:?}");
    assert!(out.stdout.is_empty(), "{what}: {}", describe(out));
}

/// Whether `home` holds any capsule directory (or anything at all).
fn nothing_in(home: &Path) -> bool {
    !home.exists() || fs::read_dir(home).unwrap().count() == 0
}

#[test]
fn volumes_with_dotdot_in_the_capsule_path_are_refused() {
    let home = CapsuleHome::new();
    let vol = TempDir::new("bad-vol");
    for spec in [
        format!("{}:/a/../../b", vol.str()),
        format!("{}:/..", vol.str()),
        format!("{}:/x/..:ro", vol.str()),
    ] {
        let out = home.run(&["run", "--rm", "-v", &spec, "--", "true"]);
        assert_refused(&out, "cannot contain '..'", &spec);
        assert!(nothing_in(home.path()), "{spec}: created state");
    }
    // The shim refuses the same in CAPSULE_VOLUMES.
    let spec = format!("{}:/a/../b", vol.str());
    let out = run_preload(&[("CAPSULE_VOLUMES", &spec)], "true", &[]);
    assert_refused(&out, "cannot contain '..'", "CAPSULE_VOLUMES");
    // A `.`-free, `..`-free path is still bound.
    let out = home.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/b", vol.str()),
        "--",
        "sh",
        "-c",
        "echo in > /b/f",
    ]);
    success(&out, "a good volume");
    assert_eq!(fs::read_to_string(vol.join("f")).unwrap(), "in\n");
}

#[test]
fn capsule_settings_and_preloads_for_the_program_are_refused() {
    let home = CapsuleHome::new();
    let dir = TempDir::new("bad-env");
    for (flag, value) in [
        ("-e", "CAPSULE_UID=0"),
        ("-e", "CAPSULE_ROOT=/"),
        ("-e", "CAPSULE_HOSTNAME"),
        ("-e", "CAPSULE_WHATEVER=1"),
        ("-e", "LD_PRELOAD=/tmp/evil.so"),
    ] {
        let out = home.run(&["run", "--rm", flag, value, "--", "true"]);
        let key = value.split('=').next().unwrap();
        assert_refused(&out, &format!("{key:?} given with -e"), value);
        assert!(nothing_in(home.path()), "{value}: created state");
    }
    for line in ["CAPSULE_READ_ONLY=0", "LD_PRELOAD=/tmp/evil.so"] {
        let file = dir.join("env");
        fs::write(&file, format!("OK=1\n{line}\n")).unwrap();
        let out = home.run(&[
            "run",
            "--rm",
            "--env-file",
            file.to_str().unwrap(),
            "--",
            "true",
        ]);
        let key = line.split('=').next().unwrap();
        assert_refused(&out, &format!("{key:?}"), line);
        assert!(nothing_in(home.path()), "{line}: created state");
    }
    // The same in a manifest's env, placed at its key.
    fs::write(
        dir.join("capsule.toml"),
        "[capsule.a]\ncommand = \"true\"\nenv = { LD_PRELOAD = \"/x.so\" }\n",
    )
    .unwrap();
    let out = run(home.command(&["up"]).current_dir(dir.path()));
    assert_refused(&out, "capsule.a.env", "manifest env");
    assert!(nothing_in(home.path()), "manifest env: created state");
}

#[test]
fn a_program_that_cannot_be_executed_leaves_no_state() {
    let home = CapsuleHome::new();
    let dir = TempDir::new("bad-exec");
    // An environment larger than exec takes (E2BIG): refused before anything exists.
    let file = dir.join("big.env");
    let value = "v".repeat(100_000);
    let text: String = (0..40).map(|i| format!("BIG{i}={value}\n")).collect();
    fs::write(&file, text).unwrap();
    let out = home.run(&[
        "run",
        "--name",
        "big",
        "--env-file",
        file.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_refused(&out, "more than exec accepts", "E2BIG");
    assert!(nothing_in(home.path()), "E2BIG: created state");
    // A missing program and a directory as the program: 127 and 126, nothing left.
    let out = home.run(&["run", "--name", "gone", "--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
    let out = home.run(&["run", "--name", "gone", "--", "/"]);
    assert_eq!(out.status.code(), Some(126), "{}", describe(&out));
    assert!(nothing_in(home.path()), "missing program: created state");
    // A program that passes every check but that the kernel refuses at the exec: a
    // script held open for writing (ETXTBSY). The directory made for it is collected.
    let prog = dir.join("busy");
    fs::write(&prog, "#!/bin/sh\necho ran\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
    let _writer = fs::OpenOptions::new().append(true).open(&prog).unwrap();
    let out = home.run(&["run", "--name", "garbage", "--", prog.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126), "{}", describe(&out));
    assert!(
        nothing_in(home.path()),
        "failed exec left {:?}",
        fs::read_dir(home.path()).map(|d| d.count())
    );
    // An existing capsule's directory is kept when a later start fails.
    success(&home.run(&["run", "--name", "kept", "--", "true"]), "kept");
    let out = home.run(&["run", "--name", "kept", "--", prog.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126), "{}", describe(&out));
    assert!(home.path().join("capsules/kept/upper").is_dir());
}

#[test]
fn the_shim_refuses_bad_settings_with_one_line_and_125() {
    let conf = TempDir::new("bad-shim");
    let unknown = conf.join("unknown.conf");
    fs::write(&unknown, "CAPSULE_HOSTNAME=web\nCAPSULE_HOSTNAM=typo\n").unwrap();
    let nested = conf.join("nested.conf");
    fs::write(&nested, "CAPSULE_CONFIG=/etc/other\n").unwrap();
    let good = conf.join("good.conf");
    fs::write(&good, "CAPSULE_HOSTNAME=web\nCAPSULE_PEERS=a,b\n").unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("CAPSULE_PEERS", "a,,b", "peer \"\""),
        ("CAPSULE_PEERS", "a,", "peer \"\""),
        ("CAPSULE_PEERS", "a,b/c", "peer \"b/c\""),
        ("CAPSULE_PEERS", "a,b\u{1}c", "peer \"b\\u{1}c\""),
        ("CAPSULE_PEERS", "a,a", "named twice"),
        ("CAPSULE_NAME", "../x", "CAPSULE_NAME"),
        ("CAPSULE_NAME", "x\ny", "CAPSULE_NAME"),
        (
            "CAPSULE_ROOT",
            "/no/such/root",
            "CAPSULE_ROOT=\"/no/such/root\"",
        ),
        ("CAPSULE_ROOT", "/etc/passwd", "not a directory"),
        (
            "CAPSULE_CONFIG",
            unknown.to_str().unwrap(),
            "unknown key \"CAPSULE_HOSTNAM\"",
        ),
        (
            "CAPSULE_CONFIG",
            nested.to_str().unwrap(),
            "unknown key \"CAPSULE_CONFIG\"",
        ),
        ("CAPSULE_HOSTNAME", "", "CAPSULE_HOSTNAME"),
    ];
    for (key, value, culprit) in cases {
        let out = run_preload(&[(key, value)], "sh", &["-c", "echo ran"]);
        assert_refused(&out, culprit, &format!("{key}={value:?}"));
    }
    let out = run_preload(
        &[("CAPSULE_CONFIG", good.to_str().unwrap())],
        "sh",
        &["-c", "hostname"],
    );
    assert_eq!(success(&out, "a good config"), "web\n");
}

/// A manifest in a fresh directory.
fn project(manifest: &str) -> (TempDir, CapsuleHome) {
    let dir = TempDir::new("bad-up");
    fs::create_dir(dir.join("out")).unwrap();
    fs::write(dir.join("capsule.toml"), manifest).unwrap();
    shim();
    (dir, CapsuleHome::new())
}

fn up(dir: &TempDir, home: &CapsuleHome, args: &[&str]) -> Output {
    let mut all = vec!["up"];
    all.extend_from_slice(args);
    run(home.command(&all).current_dir(dir.path()))
}

#[test]
fn up_checks_every_capsule_before_it_starts_one() {
    // The first capsule would leave a mark; the second's command has a NUL byte.
    let (dir, home) = project(
        "[capsule.first]\ncommand = [\"touch\", \"/out/started\"]\nvolumes = [\"./out:/out\"]\n\n\
         [capsule.second]\ncommand = [\"echo\", \"a\\u0000b\"]\n",
    );
    let out = up(&dir, &home, &[]);
    assert_refused(&out, "capsule.second.command", "NUL");
    assert!(stderr(&out).contains("NUL byte"), "{}", describe(&out));
    assert!(!dir.join("out/started").exists(), "a capsule started");
    assert!(nothing_in(home.path()), "NUL: created state");
}

#[test]
fn up_refuses_more_capsules_than_the_descriptor_limit_up_front() {
    let mut manifest = String::new();
    for t in 0..20 {
        manifest.push_str(&format!(
            "[capsule.t{t}]\ncommand = [\"touch\", \"/out/t{t}\"]\nvolumes = [\"./out:/out\"]\nreplicas = 1000\n\n"
        ));
    }
    let (dir, home) = project(&manifest);
    let started = std::time::Instant::now();
    // The same limit wherever the test runs.
    let out = run(Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 4096 && exec \"$@\"")
        .arg("sh")
        .arg(capsule_bin())
        .arg("up")
        .current_dir(dir.path())
        .env("CAPSULE_HOME", home.path())
        .env("CAPSULE_SHIM", shim()));
    assert_refused(&out, "20000 capsules need", "20 x 1000");
    assert!(stderr(&out).contains("RLIMIT_NOFILE"), "{}", describe(&out));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "refused only after {:?}",
        started.elapsed()
    );
    assert_eq!(fs::read_dir(dir.join("out")).unwrap().count(), 0);
    assert!(nothing_in(home.path()), "limit: created state");
    // The replicas cap is said in the manifest too.
    let (dir, home) = project("[capsule.a]\ncommand = \"true\"\nreplicas = 1001\n");
    assert_refused(&up(&dir, &home, &[]), "capsule.a.replicas", "1001 replicas");
}

#[test]
fn up_dry_run_checks_and_prints_without_starting() {
    let (dir, home) = project(
        "[capsule.web]\ncommand = [\"touch\", \"/out/web\"]\nvolumes = [\"./out:/out\"]\nreplicas = 2\n\n\
         [capsule.client]\ncommand = \"echo 'two words' x\"\ndepends_on = [\"web\"]\n",
    );
    let out = up(&dir, &home, &["--dry-run"]);
    assert_eq!(
        success(&out, "--dry-run"),
        "web-1: touch /out/web\nweb-2: touch /out/web\nclient: /bin/sh -c \"echo 'two words' x\"\n"
    );
    assert_eq!(fs::read_dir(dir.join("out")).unwrap().count(), 0);
    assert!(nothing_in(home.path()), "--dry-run created state");
    // A refusal under --dry-run is the same as without it.
    let (dir, home) = project("[capsule.a]\ncommand = [\"no-such-program-xyz\"]\n");
    assert_refused(
        &up(&dir, &home, &["--dry-run"]),
        "capsule.a.command",
        "dry-run refusal",
    );
    assert!(nothing_in(home.path()));
}
