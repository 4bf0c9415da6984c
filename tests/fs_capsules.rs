//! Capsules of the fs replica through the loader: two capsules on one root at the same
//! time, each with its own upper layer; `--name` continuing an upper layer and `--rm`
//! removing it; volumes (`-v HOST:PATH`, `:ro`, a single file, nested volumes, a volume
//! shared by two capsules; also `CAPSULE_VOLUMES` under plain LD_PRELOAD); and bad input
//! refused with one line before anything is created.

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::fs;
use std::process::Command;

use common::*;
use fs_support::*;

/// `capsule run --root ROOT --name NAME [FLAGS] -e PATH -- /bin/sh -c GUARD+script`.
fn sh_command(
    home: &CapsuleHome,
    root: &TestRoot,
    name: &str,
    flags: &[&str],
    script: &str,
) -> Command {
    shim();
    let script = format!("{GUARD}{script}");
    let mut args = vec![
        "run",
        "--root",
        root.str(),
        "--name",
        name,
        "-e",
        "PATH=/usr/bin:/bin",
    ];
    args.extend_from_slice(flags);
    args.extend(["--", "/bin/sh", "-c", &script]);
    home.command(&args)
}

#[test]
fn two_capsules_on_one_root_at_the_same_time() {
    let root = TestRoot::new();
    let home = CapsuleHome::new();
    // Each writes the same paths (a new file, a lower file, a new directory) 20 times
    // with its own content and reads back only its own.
    let script = |me: &str| {
        format!(
            "mkdir -p /var/lib/app/state; i=0; while [ $i -lt 20 ]; do i=$((i+1)); \
             echo {me}$i > /etc/shared; echo {me}$i >> /var/lib/app/data.txt; \
             echo {me}$i > /var/lib/app/state/n; sleep 0.02; \
             cat /etc/shared /var/lib/app/state/n; done; tail -n 1 /var/lib/app/data.txt; \
             head -n 1 /var/lib/app/data.txt"
        )
    };
    let a = spawn(&mut sh_command(&home, &root, "a", &[], &script("a")));
    let b = spawn(&mut sh_command(&home, &root, "b", &[], &script("b")));
    let (out_a, out_b) = (a.wait(), b.wait());
    for (me, out) in [("a", &out_a), ("b", &out_b)] {
        let mut want = String::new();
        for i in 1..=20 {
            want.push_str(&format!("{me}{i}\n{me}{i}\n"));
        }
        want.push_str(&format!("{me}20\nlower data\n"));
        assert_eq!(
            success(out, &format!("capsule {me}")),
            want,
            "capsule {me} saw another capsule's writes"
        );
        let upper = home.path().join("capsules").join(me).join("upper");
        assert_eq!(read_text(&upper.join("etc/shared")), format!("{me}20\n"));
        let data = read_text(&upper.join("var/lib/app/data.txt"));
        assert!(
            data.starts_with("lower data\n")
                && data.ends_with(&format!("{me}20\n"))
                && data.lines().count() == 21,
            "capsule {me}'s copy of data.txt: {data:?}"
        );
    }
    root.assert_unchanged();
}

#[test]
fn a_name_continues_its_upper_layer_and_rm_removes_it() {
    let root = TestRoot::new();
    let home = CapsuleHome::new();
    let out = run(&mut sh_command(
        &home,
        &root,
        "keep",
        &[],
        "echo kept > /etc/persist; rm /etc/app.conf",
    ));
    success(&out, "first run of keep");
    let out = run(&mut sh_command(
        &home,
        &root,
        "keep",
        &[],
        "cat /etc/persist; test -e /etc/app.conf || echo still-removed",
    ));
    assert_eq!(success(&out, "second run of keep"), "kept\nstill-removed\n");
    // Another name does not see them.
    let out = run(&mut sh_command(
        &home,
        &root,
        "other",
        &["--rm"],
        "test -e /etc/persist || echo fresh; cat /etc/app.conf",
    ));
    assert_eq!(success(&out, "other capsule"), "fresh\nsetting=1\n");

    let out = run(&mut sh_command(
        &home,
        &root,
        "gone",
        &["--rm"],
        "echo x > /etc/persist; cat /etc/persist",
    ));
    assert_eq!(success(&out, "--rm run"), "x\n");
    let dir = home.path().join("capsules/gone");
    assert!(!exists(&dir), "--rm left {}", dir.display());
    let out = run(&mut sh_command(
        &home,
        &root,
        "gone",
        &["--rm"],
        "test -e /etc/persist || echo fresh",
    ));
    assert_eq!(success(&out, "after --rm"), "fresh\n");
    root.assert_unchanged();
}

#[test]
fn volumes_through_the_loader() {
    let root = TestRoot::new();
    let home = CapsuleHome::new();
    let rw = TempDir::new("vol-rw");
    let ro = TempDir::new("vol-ro");
    fs::write(rw.join("pre.txt"), "volume\n").unwrap();
    fs::write(ro.join("pre.txt"), "volume\n").unwrap();
    let ro_before = Snapshot::of(ro.path());
    let rw_spec = format!("{}:/data", rw.str());
    let ro_spec = format!("{}:/ro:ro", ro.str());
    let out = home.run(&[
        "run",
        "--root",
        root.str(),
        "--name",
        "vol",
        "-v",
        &rw_spec,
        "-v",
        &ro_spec,
        "--",
        "/probes/fs_errno",
        "--capsule",
        "vol-rw",
        "/data",
        "vol-ro",
        "/ro",
    ]);
    probe_ok(
        &out,
        "fs_errno vol-rw /data vol-ro /ro through capsule run -v",
    );
    assert_eq!(
        read_text(&rw.join("probe-rw.txt")),
        "written\n",
        "the write reached the host volume"
    );
    assert_eq!(read_text(&rw.join("pre.txt")), "volume\nappended\n");
    Snapshot::of(ro.path()).assert_same(&ro_before, "the :ro volume");
    // The upper layer holds the mount points (empty placeholders, so that `/` lists
    // them), never what was written through them.
    let upper = home.path().join("capsules/vol/upper");
    for mount in ["data", "ro"] {
        let dir = upper.join(mount);
        assert!(
            !exists(&dir) || names_in(&dir).is_empty(),
            "volume writes went to the upper layer: {mount}: {:?}",
            names_in(&dir)
        );
    }

    // What a shell sees there.
    let out = run(&mut sh_command(
        &home,
        &root,
        "vol",
        &["-v", &rw_spec, "-v", &ro_spec],
        "ls /data; cat /ro/pre.txt; echo x > /ro/new 2>/dev/null || echo refused; \
         echo shell > /data/shell.txt",
    ));
    assert_eq!(
        success(&out, "shell with volumes"),
        "pre.txt\nprobe-rw.txt\nvolume\nrefused\n"
    );
    assert_eq!(read_text(&rw.join("shell.txt")), "shell\n");
    Snapshot::of(ro.path()).assert_same(&ro_before, "the :ro volume");
    root.assert_unchanged();
}

#[test]
fn a_file_volume_and_nested_volumes() {
    let root = TestRoot::new();
    let home = CapsuleHome::new();
    let files = TempDir::new("vol-file");
    let conf = files.join("app.conf");
    fs::write(&conf, "from host\n").unwrap();
    let outer = TempDir::new("vol-outer");
    let inner = TempDir::new("vol-inner");
    let file_spec = format!("{}:/etc/app.conf", conf.display());
    let outer_spec = format!("{}:/srv", outer.str());
    let inner_spec = format!("{}:/srv/sub", inner.str());
    let out = run(&mut sh_command(
        &home,
        &root,
        "files",
        &["-v", &file_spec, "-v", &outer_spec, "-v", &inner_spec],
        "cat /etc/app.conf; echo appended >> /etc/app.conf; echo x > /srv/sub/f; \
         echo y > /srv/g; ls /srv/sub; cat /etc/hostname",
    ));
    assert_eq!(
        success(&out, "file and nested volumes"),
        "from host\nf\ncapsule-lower\n"
    );
    assert_eq!(
        read_text(&conf),
        "from host\nappended\n",
        "write to a file volume"
    );
    assert_eq!(read_text(&inner.join("f")), "x\n", "longest prefix wins");
    assert_eq!(read_text(&outer.join("g")), "y\n");
    assert!(
        !exists(&outer.join("sub/f")),
        "/srv/sub/f went to the outer volume"
    );
    root.assert_unchanged();
}

#[test]
fn two_capsules_share_a_volume() {
    let root = TestRoot::new();
    let home = CapsuleHome::new();
    let shared = TempDir::new("vol-shared");
    let spec = format!("{}:/shared", shared.str());
    // Each writes its file, then waits (at most 20 s) for the other's.
    let script = |me: &str, other: &str| {
        format!(
            "echo from-{me} > /shared/{me}.tmp; mv /shared/{me}.tmp /shared/{me}; n=0; \
             while [ ! -e /shared/{other} ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done; \
             cat /shared/{other}"
        )
    };
    let a = spawn(&mut sh_command(
        &home,
        &root,
        "sa",
        &["-v", &spec],
        &script("a", "b"),
    ));
    let b = spawn(&mut sh_command(
        &home,
        &root,
        "sb",
        &["-v", &spec],
        &script("b", "a"),
    ));
    let (out_a, out_b) = (a.wait(), b.wait());
    assert_eq!(success(&out_a, "capsule a"), "from-b\n");
    assert_eq!(success(&out_b, "capsule b"), "from-a\n");
    assert_eq!(
        names_in(shared.path()),
        vec!["a".to_string(), "b".to_string()]
    );
    root.assert_unchanged();
}

#[test]
fn volumes_under_plain_preload() {
    let root = TestRoot::new();
    let upper = TempDir::new("upper");
    let rw = TempDir::new("vol-rw");
    let ro = TempDir::new("vol-ro");
    fs::write(rw.join("pre.txt"), "volume\n").unwrap();
    fs::write(ro.join("pre.txt"), "volume\n").unwrap();
    let volumes = format!("{}:/data;{}:/ro:ro", rw.str(), ro.str());
    let env = [
        ("CAPSULE_ROOT", root.str()),
        ("CAPSULE_UPPER", upper.str()),
        ("CAPSULE_VOLUMES", volumes.as_str()),
    ];
    let out = run_preload(
        &env,
        root.host("/probes/fs_errno"),
        &["--capsule", "vol-rw", "/data", "vol-ro", "/ro"],
    );
    probe_ok(&out, "fs_errno with CAPSULE_VOLUMES");
    assert_eq!(read_text(&rw.join("probe-rw.txt")), "written\n");
    assert_eq!(read_text(&ro.join("pre.txt")), "volume\n");
    assert_eq!(names_in(ro.path()), vec!["pre.txt".to_string()]);
    root.assert_unchanged();
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    let root = TestRoot::new();
    let file = root.host("/etc/hostname");
    let file = file.to_str().unwrap();
    let missing_root = format!("{}/no-such-root", root.str());
    let missing_host = format!("{}/no-such-volume", root.str());
    let missing_vol = format!("{missing_host}:/data");
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["--root", &missing_root],
            &missing_root,
            "--root naming a missing directory",
        ),
        (vec!["--root", file], file, "--root naming a file"),
        (
            vec!["--root", root.str(), "-v", &missing_vol],
            &missing_host,
            "a volume whose host path is missing",
        ),
        (
            vec!["--root", root.str(), "-v", "nocolon"],
            "nocolon",
            "a volume spec with no colon",
        ),
        (
            vec!["--root", root.str(), "-v", "relative/dir:/data"],
            "relative/dir",
            "a volume with a relative host path",
        ),
    ];
    for (flags, culprit, what) in cases {
        let home = CapsuleHome::new();
        let mut args = vec!["run", "--name", "bad"];
        args.extend(flags);
        args.extend(["--", "/bin/true"]);
        let out = home.run(&args);
        assert_refused(&out, &home, culprit, what);
    }
    assert!(!exists(std::path::Path::new(&missing_root)));
    assert!(!exists(std::path::Path::new(&missing_host)));
    root.assert_unchanged();
}

/// Several processes of one capsule append to the same lower files at once: each file
/// is copied up once (atomically), and no append is lost to another's copy-up.
#[test]
fn concurrent_copy_ups_lose_nothing() {
    let root = TestRoot::new();
    let c = Capsule::new(Via::Preload, &root);
    let script = "for f in 00 01 02 03 04 05 06 07 08 09; do \
                    for n in 1 2 3 4 5 6; do (echo $n >> /many/f$f) & done; \
                  done; wait; \
                  for f in 00 01 02 03 04 05 06 07 08 09; do sort /many/f$f | tr '\\n' ' '; echo; done";
    let out = c.sh(script);
    let mut want = String::new();
    for f in 0..10 {
        want.push_str(&format!("1 2 3 4 5 6 f{f:02} \n"));
    }
    assert_eq!(
        success(&out, "concurrent appends"),
        want,
        "appends lost or duplicated by concurrent copy-ups"
    );
    root.assert_unchanged();
}

/// A volume mounted where the root has nothing shows up in its parent's listing.
#[test]
fn a_volume_appears_in_its_parent_listing() {
    let root = TestRoot::new();
    let home = CapsuleHome::new();
    let vol = TempDir::new("vol-listed");
    fs::write(vol.join("inside"), "inside\n").unwrap();
    let spec = format!("{}:/data", vol.str());
    let out = run(&mut sh_command(
        &home,
        &root,
        "listed",
        &["-v", &spec],
        "ls /; test -d /data && echo is-dir; ls /data; find /data",
    ));
    let text = success(&out, "ls / with a volume at /data");
    assert!(
        text.lines().any(|l| l == "data") && text.contains("is-dir\ninside\n/data\n/data/inside\n"),
        "the volume at /data is not listed in /:\n{text}"
    );
    root.assert_unchanged();
}

/// The variables a program of a `--root` capsule may see: docker's set, the ones
/// asked for, and the capsule's own.
const CLEAN_KEYS: &[&str] = &[
    "PATH",
    "HOSTNAME",
    "HOME",
    "PWD",
    "GIVEN",
    "PASSED",
    "CAPSULE_NAME",
    "LD_PRELOAD",
];

/// `env` run as the capsule's first program with `flags`, the caller having a secret
/// and `PASSED` in its environment.
fn env_in_capsule(flags: &[&str]) -> std::collections::HashMap<String, String> {
    let home = CapsuleHome::new();
    shim();
    let mut args = vec!["run", "--rm", "--name", "envy"];
    args.extend_from_slice(flags);
    args.extend(["-e", "GIVEN=1", "-e", "PASSED", "--", "env"]);
    let mut cmd = home.command(&args);
    cmd.env("SECRET_TOKEN", "s3cret").env("PASSED", "from-host");
    key_values(&success(&run(&mut cmd), "capsule run env"))
}

#[test]
fn a_root_capsule_gets_dockers_environment_not_the_callers() {
    let root = TestRoot::new();
    let vars = env_in_capsule(&["--root", root.str(), "--hostname", "hh", "--user", "4242"]);
    let leaked: Vec<&String> = vars
        .keys()
        .filter(|k| !CLEAN_KEYS.contains(&k.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "host variables leaked: {leaked:?} in {vars:?}"
    );
    assert_eq!(vars["HOSTNAME"], "hh");
    assert_eq!(vars["HOME"], "/", "uid 4242 has no passwd entry");
    assert_eq!(vars["GIVEN"], "1");
    assert_eq!(
        vars["PASSED"], "from-host",
        "-e NAME copies the caller's value"
    );
    assert_eq!(
        vars["PATH"],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(vars["CAPSULE_NAME"], "envy");

    // HOME comes from the capsule's passwd; without --hostname HOSTNAME is the name
    // the capsule has (the host's).
    let vars = env_in_capsule(&["--root", root.str(), "--user", "daemon"]);
    assert_eq!(vars["HOME"], "/usr/sbin");
    assert_eq!(vars["HOSTNAME"], host_name());
    assert!(!vars.contains_key("SECRET_TOKEN"));
    let vars = env_in_capsule(&["--root", root.str()]);
    assert_eq!(vars["HOME"], "/root", "the default user of a root is root");

    // --env-host: the caller's environment under the capsule's.
    let vars = env_in_capsule(&["--root", root.str(), "--env-host"]);
    assert_eq!(vars["SECRET_TOKEN"], "s3cret");
    assert_eq!(vars["GIVEN"], "1");
    root.assert_unchanged();
}

#[test]
fn a_host_root_capsule_continues_the_callers_environment() {
    let vars = env_in_capsule(&["--hostname", "hh", "--user", "daemon"]);
    assert_eq!(vars["SECRET_TOKEN"], "s3cret");
    assert_eq!(vars["HOSTNAME"], "hh");
    assert_eq!(vars["HOME"], "/usr/sbin");
    assert_eq!(vars["GIVEN"], "1");
}

/// The shim's own settings (host paths of the layers and state, ids, clock) are not in
/// a program's environment, before or after `system`/`popen`, in it or its children;
/// the capsule still holds in those children.
#[test]
fn the_shims_settings_are_not_in_the_programs_environment() {
    let home = CapsuleHome::new();
    let script = r#"
import os, subprocess
def mine(): return sorted(k for k in os.environ if k.startswith("CAPSULE_") or k == "LD_PRELOAD")
print("first", mine())
os.system("true")
print("after-system", mine())
print("popen", os.popen("env | grep ^CAPSULE_ | cut -d= -f1 | sort | tr '\\n' ' '").read().strip())
print("child", subprocess.run(["python3", "-c", "import os; print(sorted(k for k in os.environ if k.startswith('CAPSULE_')))"], capture_output=True, text=True).stdout.strip())
print("child-hostname", subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip())
"#;
    let out = home.run(&[
        "run",
        "--rm",
        "--name",
        "quiet",
        "--hostname",
        "hh",
        "--user",
        "4242",
        "--",
        "python3",
        "-c",
        script,
    ]);
    let text = success(&out, "python3 in a capsule");
    assert_eq!(
        text,
        "first ['CAPSULE_NAME', 'LD_PRELOAD']\n\
         after-system ['CAPSULE_NAME', 'LD_PRELOAD']\n\
         popen CAPSULE_NAME\n\
         child ['CAPSULE_NAME']\n\
         child-hostname hh\n"
    );
}

/// A capsule's users and groups are those of its own `/etc/passwd` and `/etc/group`
/// (glibc's NSS opens them with calls no hook sees): a user added in the capsule is
/// found, one it removed is gone, and neither the root nor the host changes.
#[test]
fn a_root_capsule_has_its_own_users_and_groups() {
    let root = TestRoot::new();
    let home = CapsuleHome::new();
    shim();
    let script = "echo 'zed:x:4321:4321:Zed Gecos:/home/zed:/bin/sh' >> /etc/passwd \
        && echo 'zgrp:x:4321:' >> /etc/group && echo 'extra:x:777:other,zed' >> /etc/group \
        && grep -v '^daemon:' /etc/passwd > /tmp/p && cat /tmp/p > /etc/passwd \
        && id zed && getent passwd zed && getent group extra && id -nu 4321 \
        && (id daemon 2>/dev/null || echo no-daemon) && getent passwd | grep -c -e '^zed:' -e '^daemon:'";
    let out = home.run(&[
        "run",
        "--name",
        "users",
        "--root",
        root.str(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        success(&out, "users in a root capsule"),
        "uid=4321(zed) gid=4321(zgrp) groups=4321(zgrp),777(extra)\n\
         zed:x:4321:4321:Zed Gecos:/home/zed:/bin/sh\n\
         extra:x:777:other,zed\n\
         zed\n\
         no-daemon\n\
         1\n"
    );
    root.assert_unchanged();
    // Another capsule of the same root has the root's users, not the first one's.
    let out = home.run(&[
        "run",
        "--rm",
        "--root",
        root.str(),
        "--",
        "sh",
        "-c",
        "id zed 2>/dev/null || echo no-zed; id -u daemon",
    ]);
    assert_eq!(success(&out, "another capsule"), "no-zed\n1\n");
}

/// A capsule of the host's root that added a user finds it, still finds the host's
/// users, and the host does not see the capsule's.
#[test]
fn a_host_root_capsule_finds_the_users_it_added() {
    let home = CapsuleHome::new();
    let before = std::fs::read("/etc/passwd").unwrap();
    let script =
        "echo 'zed:x:4321:4321::/home/zed:/bin/sh' >> /etc/passwd && id -nu 4321 && id -u root";
    let out = home.run(&["run", "--rm", "--", "sh", "-c", script]);
    assert_eq!(success(&out, "host-root capsule"), "zed\n0\n");
    assert_eq!(
        std::fs::read("/etc/passwd").unwrap(),
        before,
        "the host's /etc/passwd changed"
    );
    let outside = Command::new("getent")
        .args(["passwd", "zed"])
        .output()
        .unwrap();
    assert!(
        !outside.status.success(),
        "the host sees the capsule's user"
    );
}

/// A link inside a volume leads into the capsule, as every other link does: never to
/// the host's file of that name, for reading or writing. (The kernel would follow it
/// on the host.)
#[test]
fn links_inside_a_volume_stay_in_the_capsule() {
    let root = TestRoot::new();
    let home = CapsuleHome::new();
    let vol = TempDir::new("vol-links");
    std::os::unix::fs::symlink("/etc", vol.join("e")).unwrap();
    std::os::unix::fs::symlink("/", vol.join("r")).unwrap();
    let host_etc = Snapshot::of(std::path::Path::new("/etc"));
    let spec = format!("{}:/vol", vol.str());
    let out = run(&mut sh_command(
        &home,
        &root,
        "vollinks",
        &["-v", &spec],
        "cat /vol/e/hostname; cat /vol/r/secret; echo new > /vol/e/written-through-link; \
         cat /etc/written-through-link; ln -s /secret /vol/s; cat /vol/s",
    ));
    assert_eq!(
        success(&out, "links in a volume"),
        "capsule-lower\nroot secret\nnew\nroot secret\n"
    );
    assert!(
        !std::path::Path::new("/etc/written-through-link").exists(),
        "a write reached the host's /etc"
    );
    host_etc.assert_same(
        &Snapshot::of(std::path::Path::new("/etc")),
        "the host's /etc",
    );
    let upper = home
        .path()
        .join("capsules/vollinks/upper/etc/written-through-link");
    assert_eq!(read_text(&upper), "new\n", "the write is the capsule's");
    root.assert_unchanged();
}

/// A volume's directories are cached like the layers' (one `lstat` per name): the
/// cache must forget a directory that is removed and becomes a link, a program must
/// see its own creations and removals at once, and the mount point stays (`EBUSY`).
#[test]
fn a_volume_directory_replaced_by_a_link_is_seen_as_the_link() {
    let root = TestRoot::new();
    let home = CapsuleHome::new();
    let vol = TempDir::new("vol-cache");
    std::fs::create_dir(vol.join("d")).unwrap();
    let host_etc = Snapshot::of(std::path::Path::new("/etc"));
    let spec = format!("{}:/vol", vol.str());
    // One shell process throughout, so that its cache is what is tested: builtins
    // only, apart from ln (a separate process, like another program of the capsule).
    let out = run(&mut sh_command(
        &home,
        &root,
        "volcache",
        &["-v", &spec],
        "echo a > /vol/d/f; read x < /vol/d/f; echo \"$x\"; \
         cd /; rm /vol/d/f; rmdir /vol/d; ln -s /etc /vol/d; \
         read h < /vol/d/hostname; echo \"$h\"; \
         echo b > /vol/d/made; read m < /etc/made; echo \"$m\"; \
         rmdir /vol 2>/dev/null || echo busy",
    ));
    assert_eq!(
        success(&out, "a volume directory that became a link"),
        "a\ncapsule-lower\nb\nbusy\n"
    );
    assert!(vol.join("d").is_symlink(), "the link is in the volume");
    assert!(
        !std::path::Path::new("/etc/made").exists(),
        "a write reached the host's /etc"
    );
    host_etc.assert_same(
        &Snapshot::of(std::path::Path::new("/etc")),
        "the host's /etc",
    );
    root.assert_unchanged();
}
