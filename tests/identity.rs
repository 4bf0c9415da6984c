//! The identity replica: `getuid` & co. report the capsule user, `setuid` & co. follow the
//! kernel's permission rules for that user, and real programs (`id`, `whoami`, Python)
//! see it, with plain `LD_PRELOAD` and through `capsule run --user`.
//!
//! The set* scripts are differential: each is run natively (the harness is root; the
//! probe first drops to the capsule identity for real) and under the shim, and both runs
//! must agree with the expectations written in the script.

mod common;

use common::*;

fn ids(list: &[u32]) -> String {
    list.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// probe_ids OPs that check a whole identity.
fn identity_ops(uid: [u32; 3], gid: [u32; 3], groups: &[u32]) -> Vec<String> {
    vec![
        format!("uids:{}", ids(&uid)),
        format!("gids:{}", ids(&gid)),
        format!("groups:{}", ids(groups)),
        format!("fsuid:{}", uid[1]),
        format!("fsgid:{}", gid[1]),
    ]
}

fn run_probe_ids(env: Option<&[(&str, &str)]>, ops: &[String]) -> std::process::Output {
    let probe = compile_c("probe_ids");
    let args: Vec<&str> = ops.iter().map(String::as_str).collect();
    match env {
        Some(env) => run_preload(env, &probe, &args),
        None => run_native(&probe, &args),
    }
}

#[test]
fn probe_sees_the_host_identity_natively() {
    let (uid, gid) = (host_uid(), host_gid());
    let ops = identity_ops([uid; 3], [gid; 3], &host_groups());
    probe_ok(&run_probe_ids(None, &ops), "native probe_ids");
}

#[test]
fn shim_without_identity_settings_keeps_the_host_identity() {
    let (uid, gid) = (host_uid(), host_gid());
    let ops = identity_ops([uid; 3], [gid; 3], &host_groups());
    let env = [("CAPSULE_HOSTNAME", "only-a-name")];
    probe_ok(
        &run_probe_ids(Some(&env), &ops),
        "probe_ids, no CAPSULE_UID",
    );
}

#[test]
fn capsule_uid_alone_implies_gid_and_groups() {
    let ops = identity_ops([1000; 3], [1000; 3], &[1000]);
    let out = run_probe_ids(Some(&[("CAPSULE_UID", "1000")]), &ops);
    probe_ok(&out, "probe_ids with CAPSULE_UID=1000");
}

#[test]
fn capsule_ids_as_real_effective_saved_triples() {
    let env = [
        ("CAPSULE_UID", "11,12,13"),
        ("CAPSULE_GID", "21,22,23"),
        ("CAPSULE_GROUPS", "31,32,33,34"),
    ];
    let ops = identity_ops([11, 12, 13], [21, 22, 23], &[31, 32, 33, 34]);
    probe_ok(&run_probe_ids(Some(&env), &ops), "probe_ids with triples");
}

#[test]
fn empty_capsule_groups_means_no_supplementary_groups() {
    let env = [("CAPSULE_UID", "500"), ("CAPSULE_GROUPS", "")];
    let ops = identity_ops([500; 3], [500; 3], &[]);
    probe_ok(&run_probe_ids(Some(&env), &ops), "probe_ids with no groups");
}

/// The groups `id -G NAME` reports natively for a user of /etc/passwd.
fn native_groups_of(user: &str) -> Vec<u32> {
    let out = run_native("id", &["-G", user]);
    success(&out, "id -G")
        .split_whitespace()
        .map(|g| g.parse().expect("numeric group"))
        .collect()
}

#[test]
fn capsule_user_is_looked_up_in_etc_passwd() {
    // daemon is uid 1, gid 1 on Debian-like systems.
    let groups = native_groups_of("daemon");
    let ops = identity_ops([1; 3], [1; 3], &groups);
    let out = run_probe_ids(Some(&[("CAPSULE_USER", "daemon")]), &ops);
    probe_ok(&out, "probe_ids with CAPSULE_USER=daemon");
}

/// probe_ids OPs that make a native (root) process take the identity for real.
fn drop_to(uid: [u32; 3], gid: [u32; 3], groups: &[u32]) -> Vec<String> {
    vec![
        format!("setgroups:{}:ok", ids(groups)),
        format!("setresgid:{}:ok", ids(&gid)),
        format!("setresuid:{}:ok", ids(&uid)),
    ]
}

/// Runs `script` natively (after dropping to the identity) and under the shim with
/// `env`; both must report OK.
#[track_caller]
fn differential(env: &[(&str, &str)], start: ([u32; 3], [u32; 3], &[u32]), script: &[&str]) {
    let script: Vec<String> = script.iter().map(|s| s.to_string()).collect();
    if can_switch_user() {
        let mut native = drop_to(start.0, start.1, start.2);
        native.extend(script.iter().cloned());
        let out = run_probe_ids(None, &native);
        probe_ok(
            &out,
            &format!("native run of {script:?} (the script itself is wrong)"),
        );
    }
    let mut shimmed = identity_ops(start.0, start.1, start.2);
    shimmed.extend(script.iter().cloned());
    let out = run_probe_ids(Some(env), &shimmed);
    probe_ok(&out, &format!("{env:?}: {script:?}"));
}

const ROOT: ([u32; 3], [u32; 3], &[u32]) = ([0; 3], [0; 3], &[0]);

#[test]
fn fake_root_can_become_anyone_and_then_is_bound_by_the_rules() {
    differential(
        &[("CAPSULE_UID", "0")],
        ROOT,
        &[
            "setgroups:10,20:ok",
            "groups:10,20",
            "setgid:5:ok",
            "gids:5,5,5",
            "setuid:1000:ok",
            "uids:1000,1000,1000",
            "fsuid:1000",
            "setuid:0:EPERM",
            "seteuid:0:EPERM",
            "setgid:0:EPERM",
            "setgroups:1:EPERM",
            "setresuid:-1,0,-1:EPERM",
            "uids:1000,1000,1000",
            "gids:5,5,5",
            "groups:10,20",
        ],
    );
}

#[test]
fn seteuid_round_trip_through_the_saved_uid() {
    differential(
        &[("CAPSULE_UID", "0")],
        ROOT,
        &[
            "seteuid:1000:ok",
            "uids:0,1000,0",
            "fsuid:1000",
            "setegid:7:EPERM",
            "seteuid:0:ok",
            "uids:0,0,0",
            "setegid:7:ok",
            "gids:0,7,0",
            "fsgid:7",
        ],
    );
}

#[test]
fn setuid_to_the_effective_uid_alone_is_refused_like_the_kernel() {
    // Without privilege, setuid(2) accepts only the real or the saved uid: an effective
    // uid of 1000 with real and saved uid 0 cannot setuid(1000).
    differential(
        &[("CAPSULE_UID", "0")],
        ROOT,
        &["seteuid:1000:ok", "setuid:1000:EPERM", "uids:0,1000,0"],
    );
}

#[test]
fn setreuid_and_setregid_follow_the_kernel() {
    differential(
        &[("CAPSULE_UID", "0")],
        ROOT,
        &[
            "setresgid:10,20,30:ok",
            "gids:10,20,30",
            "setregid:30,10:ok",
            "gids:30,10,10",
            "setreuid:1000,2000:ok",
            "uids:1000,2000,2000",
            "setreuid:2000,1000:ok",
            "uids:2000,1000,1000",
            "setreuid:-1,3000:EPERM",
            "setreuid:0,-1:EPERM",
            "setregid:10,-1:ok",
            "gids:10,10,10",
            "uids:2000,1000,1000",
        ],
    );
}

#[test]
fn setresuid_keeps_any_of_the_three_ids() {
    differential(
        &[("CAPSULE_UID", "0")],
        ROOT,
        &[
            "setresuid:1000,2000,3000:ok",
            "uids:1000,2000,3000",
            "fsuid:2000",
            "setresuid:3000,1000,2000:ok",
            "uids:3000,1000,2000",
            "setresuid:4000,-1,-1:EPERM",
            "setresuid:-1,-1,-1:ok",
            "uids:3000,1000,2000",
            "setuid:2000:ok",
            "uids:3000,2000,2000",
        ],
    );
}

#[test]
fn setfsuid_and_setfsgid() {
    differential(
        &[("CAPSULE_UID", "0")],
        ROOT,
        &[
            "setfsuid:500:0",
            "fsuid:500",
            "setfsgid:600:0",
            "fsgid:600",
            "uids:0,0,0",
            "setuid:1000:ok",
            "fsuid:1000",
            "setfsuid:5:1000",
            "fsuid:1000",
        ],
    );
}

#[test]
fn unprivileged_capsule_user_cannot_escalate() {
    differential(
        &[("CAPSULE_UID", "1000")],
        ([1000; 3], [1000; 3], &[1000]),
        &[
            "setuid:0:EPERM",
            "seteuid:0:EPERM",
            "setreuid:0,0:EPERM",
            "setresuid:0,0,0:EPERM",
            "setgid:0:EPERM",
            "setegid:0:EPERM",
            "setresgid:0,-1,-1:EPERM",
            "setgroups:1000:EPERM",
            "setgroups::EPERM",
            "setresuid:-1,-1,-1:ok",
            "setuid:1000:ok",
            "seteuid:1000:ok",
            "setreuid:1000,1000:ok",
            "setfsuid:0:1000",
            "fsuid:1000",
            "uids:1000,1000,1000",
            "gids:1000,1000,1000",
            "groups:1000",
        ],
    );
}

#[test]
fn unprivileged_capsule_user_moves_between_its_own_ids() {
    differential(
        &[("CAPSULE_UID", "1000,2000,3000")],
        ([1000, 2000, 3000], [1000; 3], &[1000]),
        &[
            "setuid:3000:ok",
            "uids:1000,3000,3000",
            "setuid:2000:EPERM",
            "seteuid:1000:ok",
            "uids:1000,1000,3000",
            "seteuid:3000:ok",
            "setresuid:3000,1000,-1:ok",
            "uids:3000,1000,3000",
        ],
    );
}

#[test]
fn exec_makes_the_saved_ids_the_effective_ones() {
    differential(
        &[("CAPSULE_UID", "0")],
        ROOT,
        &[
            "setgroups:4,5:ok",
            "setresgid:1,2,3:ok",
            "setresuid:1000,2000,0:ok",
            "exec",
            "uids:1000,2000,2000",
            "gids:1,2,2",
            "groups:4,5",
            "setuid:0:EPERM",
            "seteuid:1000:ok",
            "uids:1000,1000,2000",
        ],
    );
}

#[test]
fn getgroups_too_small_buffer_fails_with_einval() {
    // groups:... checks getgroups(0) = count and getgroups(count - 1) = EINVAL.
    let env = [("CAPSULE_UID", "7"), ("CAPSULE_GROUPS", "1,2,3")];
    probe_ok(
        &run_probe_ids(Some(&env), &["groups:1,2,3".to_string()]),
        "getgroups sizes",
    );
}

// ---- real programs -------------------------------------------------------------------

#[test]
fn id_reports_the_capsule_user_like_the_host_reports_it() {
    let native = success(&run_native("id", &["daemon"]), "native id daemon");
    let out = run_preload(&[("CAPSULE_USER", "daemon")], "id", &[]);
    assert_eq!(success(&out, "id under CAPSULE_USER=daemon"), native);
}

#[test]
fn id_u_and_id_g_and_id_groups() {
    let env = [
        ("CAPSULE_UID", "4321"),
        ("CAPSULE_GID", "765"),
        ("CAPSULE_GROUPS", "765,33,100"),
    ];
    let out = run_preload(&env, "id", &["-u"]);
    assert_eq!(success(&out, "id -u").trim(), "4321");
    let out = run_preload(&env, "id", &["-g"]);
    assert_eq!(success(&out, "id -g").trim(), "765");
    let out = run_preload(&env, "id", &["-G"]);
    let mut groups: Vec<u32> = success(&out, "id -G")
        .split_whitespace()
        .map(|g| g.parse().expect("numeric group"))
        .collect();
    groups.sort_unstable();
    assert_eq!(groups, vec![33, 100, 765]);
}

#[test]
fn whoami_as_fake_root_when_really_nobody() {
    let mut nobody = AsNobody::new();
    let mut cmd = nobody.preload_command(&[("CAPSULE_UID", "0")], "whoami", &[]);
    let out = run(&mut cmd);
    assert_eq!(success(&out, "whoami").trim(), "root");
}

#[test]
fn whoami_names_users_of_etc_passwd() {
    for (uid, name) in [("1", "daemon"), ("65534", "nobody")] {
        let out = run_preload(&[("CAPSULE_UID", uid)], "whoami", &[]);
        assert_eq!(success(&out, "whoami").trim(), name, "CAPSULE_UID={uid}");
    }
    let out = run_preload(&[("CAPSULE_USER", "nobody")], "whoami", &[]);
    assert_eq!(success(&out, "whoami").trim(), "nobody");
}

#[test]
fn python_os_identity_calls() {
    let script = "import os\n\
                  print(os.getuid(), os.geteuid(), os.getgid(), os.getegid())\n\
                  print(os.getresuid())\n\
                  print(os.getresgid())\n\
                  print(sorted(os.getgroups()))\n";
    let env = [("CAPSULE_UID", "1000,1001,1002"), ("CAPSULE_GROUPS", "5,6")];
    let out = run_preload(&env, python3(), &["-c", script]);
    assert_eq!(
        success(&out, "python identity"),
        "1000 1001 1000 1000\n(1000, 1001, 1002)\n(1000, 1000, 1000)\n[5, 6]\n"
    );
}

const PY_SETUID: &str = "import os\n\
    os.setgroups([])\n\
    os.setgid(1000)\n\
    os.setuid(1000)\n\
    print(os.getuid(), os.geteuid(), os.getgid(), os.getresuid())\n\
    try:\n    os.setuid(0)\n    print('became root again')\n\
    except PermissionError as e:\n    print('EPERM', e.errno)\n";

#[test]
fn python_setuid_under_fake_root() {
    let expected = "1000 1000 1000 (1000, 1000, 1000)\nEPERM 1\n";
    // Natively (the harness is root) the kernel gives exactly this.
    if can_switch_user() {
        let out = run_native(python3(), &["-c", PY_SETUID]);
        assert_eq!(success(&out, "native python setuid"), expected);
    }
    let out = run_preload(&[("CAPSULE_UID", "0")], python3(), &["-c", PY_SETUID]);
    assert_eq!(success(&out, "python setuid under CAPSULE_UID=0"), expected);
}

#[test]
fn python_setuid_refused_for_unprivileged_capsule_user() {
    let script = "import os\n\
                  try:\n    os.setuid(0)\n    print('became root')\n\
                  except PermissionError as e:\n    print('EPERM', e.errno)\n\
                  print(os.getuid())\n";
    let out = run_preload(&[("CAPSULE_UID", "1000")], python3(), &["-c", script]);
    assert_eq!(success(&out, "python setuid(0) as 1000"), "EPERM 1\n1000\n");
}

// ---- through the loader --------------------------------------------------------------

#[test]
fn capsule_run_user_by_name() {
    let native = success(&run_native("id", &["daemon"]), "native id daemon");
    let out = run_capsule(&["run", "--user", "daemon", "--", "id"]);
    assert_eq!(success(&out, "capsule run --user daemon -- id"), native);
    let out = run_capsule(&["run", "--user", "daemon", "--", "whoami"]);
    assert_eq!(success(&out, "whoami").trim(), "daemon");
}

#[test]
fn capsule_run_user_by_uid_and_gid() {
    let out = run_capsule(&[
        "run",
        "--user",
        "4000:4001",
        "--",
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    assert_eq!(success(&out, "--user 4000:4001"), "4000\n4001\n");
    // As the real user nobody, only the capsule can make whoami say root.
    let home = CapsuleHome::new();
    let mut nobody = AsNobody::new();
    let mut cmd = nobody.capsule_command(&home, &["run", "--user", "0", "--", "whoami"]);
    let out = run(&mut cmd);
    assert_eq!(success(&out, "--user 0 -- whoami").trim(), "root");
}

#[test]
fn capsule_run_unknown_user_is_refused_before_starting() {
    let dir = TempDir::new("nouser");
    let marker = dir.join("ran");
    let marker = marker.to_str().unwrap();
    let out = run_capsule(&["run", "--user", "nosuchuser", "--", "touch", marker]);
    assert!(
        !out.status.success(),
        "an unknown user must be refused\n{}",
        describe(&out)
    );
    assert!(
        !std::path::Path::new(marker).exists(),
        "the program ran despite the unknown user"
    );
    assert!(
        stderr(&out).contains("nosuchuser"),
        "the error should name the user\n{}",
        describe(&out)
    );
}
