//! Remembered ownership: a fake root's `chown`, `tar x` of other owners and device
//! nodes are reported by every `stat` variant and survive a restart of the capsule;
//! a capsule user's own files are its own; an unprivileged capsule user cannot give
//! files away. Run both as an ordinary user (ownership recorded in xattrs) and, where
//! the harness is root, as root (ownership made real).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use common::*;

/// An archive of files owned by others (written with Python's tarfile, so that any
/// user can make it).
fn owners_archive(dir: &TempDir) -> std::path::PathBuf {
    let tar = dir.join("owners.tar");
    let script = "import io, sys, tarfile\n\
        with tarfile.open(sys.argv[1], 'w') as t:\n\
        \x20   for name, uid, gid, kind in [('f1', 123, 456, 'f'), ('d', 7, 8, 'd'), ('f2', 0, 0, 'f')]:\n\
        \x20       i = tarfile.TarInfo(name); i.uid, i.gid, i.mtime = uid, gid, 1700000000\n\
        \x20       if kind == 'd':\n\
        \x20           i.type, i.mode = tarfile.DIRTYPE, 0o755; t.addfile(i)\n\
        \x20       else:\n\
        \x20           data = (name + '\\n').encode(); i.size, i.mode = len(data), 0o644; t.addfile(i, io.BytesIO(data))\n";
    let out = run(Command::new("python3").args(["-c", script, tar.to_str().unwrap()]));
    success(&out, "python3 tarfile");
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    tar
}

/// A directory name no host process uses.
fn unique_dir(label: &str) -> String {
    format!("/tmp/capsule-owner-{label}-{}", std::process::id())
}

const SCRIPT: &str = "set -e; mkdir -p \"$2\" && cd \"$2\" && tar xf \"$1\" && \
    touch mine && mknod dev c 1 3 && touch given && chown 42:43 given && \
    ls -ln | awk 'NR>1 {print $1, $3\":\"$4, $NF}' | sort -k3; \
    stat -c '%n %u:%g %F' f1 d dev; \
    python3 -c 'import os; st = os.stat(\"f1\"); print(\"python\", st.st_uid, st.st_gid)'; \
    tar cf /tmp/again.tar --numeric-owner f1 d given && tar tvf /tmp/again.tar --numeric-owner | awk '{print $2, $NF}'";

fn check_fake_root_listing(out: &str) {
    for line in [
        "drwxr-xr-x 7:8 d",
        "crw-r--r-- 0:0 dev",
        "-rw-r--r-- 123:456 f1",
        "-rw-r--r-- 0:0 f2",
        "-rw-r--r-- 42:43 given",
        "-rw-r--r-- 0:0 mine",
        "f1 123:456 regular file",
        "d 7:8 directory",
        "dev 0:0 character special file",
        "python 123 456",
        "123/456 f1",
        "7/8 d/",
        "42/43 given",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
}

#[test]
fn fake_root_ownership_is_recorded_for_an_ordinary_user() {
    let dir = TempDir::new("owner-plain");
    let tar = owners_archive(&dir);
    let upper = dir.join("upper");
    std::fs::create_dir(&upper).unwrap();
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o777)).unwrap();
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let env = [
        ("CAPSULE_UID", "0"),
        ("CAPSULE_UPPER", upper.to_str().unwrap()),
        ("CAPSULE_STATE_DIR", state.to_str().unwrap()),
    ];
    let mut nobody = AsNobody::new();
    let inside = unique_dir("plain");
    let out = run(&mut nobody.preload_command(
        &env,
        "bash",
        &["-c", SCRIPT, "script", tar.to_str().unwrap(), &inside],
    ));
    check_fake_root_listing(&success(&out, "fake root as an ordinary user"));

    // On disk: the files belong to whoever really ran it; the record says otherwise.
    let real = std::fs::metadata(upper.join(&inside[1..]).join("f1")).unwrap();
    if can_switch_user() {
        assert_eq!(real.uid(), NOBODY, "the real owner is the real user");
    }
    // A later process of the capsule (a restart) sees the same owners.
    let (f1, given) = (format!("{inside}/f1"), format!("{inside}/given"));
    let out = run(&mut nobody.preload_command(&env, "stat", &["-c", "%u:%g", &f1, &given]));
    assert_eq!(success(&out, "after a restart"), "123:456\n42:43\n");
    // Outside the capsule nothing was written.
    assert!(
        !std::path::Path::new(&inside).exists(),
        "{inside} leaked to the host"
    );
}

#[test]
fn fake_root_ownership_is_real_for_root() {
    if !can_switch_user() {
        return; // the harness is not root: the other test covers the recorded case
    }
    let dir = TempDir::new("owner-root");
    let tar = owners_archive(&dir);
    let inside = unique_dir("root");
    let home = CapsuleHome::new();
    let out = home.run(&[
        "run",
        "--name",
        "own",
        "--user",
        "0",
        "--",
        "bash",
        "-c",
        SCRIPT,
        "script",
        tar.to_str().unwrap(),
        &inside,
    ]);
    check_fake_root_listing(&success(&out, "fake root as root"));
    assert!(
        !std::path::Path::new(&inside).exists(),
        "{inside} leaked to the host"
    );
    let real = std::fs::metadata(
        home.path()
            .join("capsules/own/upper")
            .join(&inside[1..])
            .join("f1"),
    )
    .unwrap();
    assert_eq!(
        (real.uid(), real.gid()),
        (123, 456),
        "really root: ownership is real"
    );
}

#[test]
fn a_capsule_users_files_are_its_own_and_it_cannot_give_them_away() {
    let home = CapsuleHome::new();
    let mut nobody = AsNobody::new();
    let out = run(&mut nobody.capsule_command(
        &home,
        &[
            "run",
            "--name",
            "u",
            "--user",
            "1000:1000",
            "--",
            "sh",
            "-c",
            "touch /tmp/mine && stat -c '%u:%g' /tmp/mine && \
             (chown 0 /tmp/mine 2>/dev/null && echo gave || echo refused) && \
             (chown 1001 /etc/hostname 2>/dev/null && echo took || echo refused)",
        ],
    ));
    assert_eq!(
        success(&out, "capsule user 1000"),
        "1000:1000\nrefused\nrefused\n"
    );
}

/// dpkg unpacks into `NAME.dpkg-new` created with mode 0, `fchown`s it, then
/// `fchmod`s it: the owner record of a file its real owner may neither read nor
/// write is still kept (and read back), and the file's mode is left as the program
/// set it.
#[test]
fn a_fake_root_records_owners_of_files_without_permissions() {
    let home = CapsuleHome::new();
    let mut nobody = AsNobody::new();
    let script = "import os\n\
        fd = os.open('/tmp/sl.dpkg-new', os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0)\n\
        os.write(fd, b'x'); os.fchown(fd, 42, 43); os.fchmod(fd, 0o644); os.close(fd)\n\
        fd = os.open('/tmp/closed', os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0)\n\
        os.fchown(fd, 7, 8); os.close(fd)\n\
        os.mkdir('/tmp/shut', 0); os.chown('/tmp/shut', 9, 10)\n\
        for p in ['/tmp/sl.dpkg-new', '/tmp/closed', '/tmp/shut']:\n\
        \x20   st = os.stat(p); print(p, st.st_uid, st.st_gid, oct(st.st_mode & 0o7777))\n";
    let out = run(&mut nobody.capsule_command(
        &home,
        &[
            "run", "--name", "z", "--user", "0", "--", "python3", "-c", script,
        ],
    ));
    assert_eq!(
        success(&out, "fchown of mode-0 files"),
        "/tmp/sl.dpkg-new 42 43 0o644\n/tmp/closed 7 8 0o0\n/tmp/shut 9 10 0o0\n"
    );
    // On disk the modes are the program's (the access lent for the record is back).
    let upper = home.path().join("capsules/z/upper/tmp");
    for (name, mode) in [("sl.dpkg-new", 0o644), ("closed", 0), ("shut", 0)] {
        let meta = std::fs::symlink_metadata(upper.join(name)).unwrap();
        assert_eq!(
            meta.mode() & 0o7777,
            mode,
            "mode of {name} in the upper layer"
        );
    }
    // A later process reads the records of the files that stay without permissions.
    let out = run(&mut nobody.capsule_command(
        &home,
        &[
            "run",
            "--name",
            "z",
            "--user",
            "0",
            "--",
            "stat",
            "-c",
            "%u:%g %a",
            "/tmp/closed",
            "/tmp/shut",
        ],
    ));
    assert_eq!(success(&out, "after a restart"), "7:8 0\n9:10 0\n");
}

/// A fake root of an ordinary user writes to lower files the real user may not read
/// when no content is needed: an empty lock file (apt's `lists/lock`, 0640 root) is
/// copied up without reading it, a directory it may not list (`lists/partial`, 0700)
/// gets its upper copy and lists what the capsule put there, a file opened to be
/// truncated (shadow-utils' backup `/etc/passwd-`, 0600 root) is copied up empty; a
/// non-empty unreadable file opened to keep its content is refused with `EACCES`,
/// and the shim's log names it.
#[test]
fn a_fake_root_copies_up_what_needs_no_content_without_read_permission() {
    if !can_switch_user() {
        return; // files the ordinary user may not read need a root harness
    }
    let dir = TempDir::new("owner-unreadable");
    std::fs::write(dir.join("lock"), b"").unwrap();
    std::fs::write(dir.join("secret"), b"root only\n").unwrap();
    std::fs::write(dir.join("backup"), b"old backup\n").unwrap();
    std::fs::create_dir(dir.join("partial")).unwrap();
    for (name, mode) in [
        ("lock", 0o640),
        ("secret", 0o600),
        ("backup", 0o600),
        ("partial", 0o700),
    ] {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = CapsuleHome::new();
    let mut nobody = AsNobody::new();
    let script = "import fcntl, os, sys\n\
        d = sys.argv[1]\n\
        fd = os.open(d + '/lock', os.O_RDWR | os.O_CREAT, 0o640)\n\
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('locked')\n\
        st = os.fstat(fd); print('lock', st.st_uid, oct(st.st_mode & 0o777), st.st_size)\n\
        open(d + '/partial/new', 'w').write('x'); print('partial', sorted(os.listdir(d + '/partial')))\n\
        open(d + '/backup', 'w').write('new'); st = os.stat(d + '/backup')\n\
        print('backup', open(d + '/backup').read(), st.st_uid, oct(st.st_mode & 0o777))\n\
        try:\n\
        \x20   open(d + '/secret', 'a')\n\
        except PermissionError as e:\n\
        \x20   print('secret', e.errno)\n";
    let out = run(nobody
        .capsule_command(
            &home,
            &[
                "run",
                "--name",
                "u",
                "--user",
                "0",
                "--",
                "python3",
                "-c",
                script,
                dir.str(),
            ],
        )
        .env("CAPSULE_LOG", "warn"));
    assert_eq!(
        success(&out, "lock files of a root-owned tree"),
        "locked\nlock 0 0o640 0\npartial ['new']\nbackup new 0 0o600\nsecret 13\n"
    );
    let log = std::fs::read_to_string(home.path().join("capsules/u/shim.log")).unwrap();
    let secret = format!(
        "cannot copy {:?} up: the real user may not read it",
        dir.join("secret")
    );
    assert!(
        log.contains(&secret),
        "the log does not name the file:\n{log}"
    );
    // The lower files are as they were.
    assert_eq!(std::fs::read(dir.join("secret")).unwrap(), b"root only\n");
    assert_eq!(std::fs::read(dir.join("backup")).unwrap(), b"old backup\n");
    assert!(std::fs::read_dir(dir.join("partial"))
        .unwrap()
        .next()
        .is_none());
}
