//! Debian's package manager in a capsule, as an ordinary user: a Debian bookworm root
//! made with `mmdebstrap --variant=minbase` (built once, cached under the target
//! directory), `capsule run --root DIR --user 0` run by a user the test creates, and
//! real `apt-get`, `dpkg`, `useradd` working on the capsule's private layer. After
//! each, the lower root is compared with a checksum listing taken before (byte for
//! byte, with modes, owners and times), and a second capsule of the same root sees
//! none of it.
//!
//! Needs root (to create the user and build the root) and a Debian mirror: without
//! root every test says so and returns; where the mirror does not answer, the rows
//! that download say so and return.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::*;

/// The ordinary user the capsules run as.
const USER: &str = "capsule-pkg";

struct Fixture {
    /// The minbase root as a tar archive (owners and modes as mmdebstrap made them).
    tar: PathBuf,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// The user and the root archive, made once per test binary; `None` (with the reason
/// printed) when the tests cannot run here.
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();
    match FIXTURE.get_or_init(make_fixture) {
        Ok(f) => Some(f),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

fn make_fixture() -> Result<Fixture, String> {
    if !can_switch_user() {
        return Err("not root: cannot create an ordinary user and build a Debian root".into());
    }
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err("mmdebstrap is not installed".into());
    }
    if !Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = run(Command::new("useradd").args(["-m", "-s", "/bin/bash", USER]));
        success(&out, "useradd");
    }
    let id = |flag: &str| -> u32 {
        let out = run(Command::new("id").args([flag, USER]));
        success(&out, "id").trim().parse().expect("numeric id")
    };
    let (uid, gid) = (id("-u"), id("-g"));
    let home = PathBuf::from(format!("/home/{USER}"));
    let cache = bin_dir().join("packages-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let tar = cache.join("bookworm-minbase.tar");
    if !tar.exists() {
        let partial = cache.join("bookworm-minbase.tar.partial");
        // No mirror given: mmdebstrap takes the machine's configured Debian mirror
        // (stdin closed, so that it reads no sources from it).
        let out = Command::new("mmdebstrap")
            .args(["--variant=minbase", "--format=tar", "bookworm"])
            .arg(&partial)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("mmdebstrap: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&partial);
            return Err(format!(
                "mmdebstrap could not build the root (no mirror answers?): {}",
                stderr(&out).lines().last().unwrap_or("")
            ));
        }
        std::fs::rename(&partial, &tar).unwrap();
    }
    Ok(Fixture {
        tar,
        uid,
        gid,
        home,
    })
}

/// A fresh copy of the root, owned by the test's user (`owned`) or by real root.
struct Root {
    dir: TempDir,
}

impl Root {
    fn new(f: &Fixture, owned: bool) -> Root {
        let dir = TempDir::new("pkg-root");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.join("root");
        std::fs::create_dir(&root).unwrap();
        let out = run(Command::new("tar")
            .args(["-xpf"])
            .arg(&f.tar)
            .arg("-C")
            .arg(&root));
        success(&out, "tar x of the root");
        if owned {
            let owner = format!("{}:{}", f.uid, f.gid);
            let out = run(Command::new("chown").args(["-hR", &owner]).arg(&root));
            success(&out, "chown of the root");
        }
        Root { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Every name of the tree with its type, mode, owner, size, time, link target,
    /// and the checksum of every regular file.
    fn listing(&self) -> String {
        let root = self.path();
        let out = run(Command::new("find")
            .arg(&root)
            .args(["-printf", "%P %y %m %U:%G %s %T@ %l\n"]));
        let mut text = success(&out, "find");
        let out = run(Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . -type f -print0 | sort -z | xargs -0 sha256sum")
            .arg("sh")
            .arg(&root));
        text.push_str(&success(&out, "sha256sum"));
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    }
}

/// A `$CAPSULE_HOME` the test's user owns.
fn capsule_home(f: &Fixture) -> TempDir {
    let dir = TempDir::new("pkg-home");
    std::os::unix::fs::chown(dir.path(), Some(f.uid), Some(f.gid)).unwrap();
    dir
}

/// `bash -c SCRIPT` in capsule `name` of `root` with `--user 0`, as the test's user.
fn in_capsule(f: &Fixture, home: &TempDir, root: &Root, name: &str, script: &str) -> Output {
    let mut reach = AsNobody::new();
    reach.reach(&shim());
    let mut cmd = clean_command(reach.reach(&capsule_bin()));
    cmd.env("CAPSULE_HOME", home.path())
        .env("HOME", &f.home)
        .env("USER", USER)
        .current_dir("/")
        .args(["run", "--name", name, "--root"])
        .arg(root.path())
        .args(["--user", "0", "--", "bash", "-c", script])
        .uid(f.uid)
        .gid(f.gid); // std drops root's supplementary groups with the uid

    run(&mut cmd)
}

/// Whether apt's output says the mirror did not answer (then the row is skipped).
fn mirror_failed(out: &Output) -> bool {
    let text = format!("{}{}", stdout(out), stderr(out));
    [
        "Temporary failure resolving",
        "Could not connect",
        "Could not resolve",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// `mirror_failed`, and then says that the rows of `what` are skipped.
fn mirror_skipped(out: &Output, what: &str) -> bool {
    let failed = mirror_failed(out);
    if failed {
        println!(
            "skipped {what}: the mirror does not answer\n{}",
            describe(out)
        );
    }
    failed
}

fn upper(home: &TempDir, name: &str) -> PathBuf {
    home.path().join("capsules").join(name).join("upper")
}

fn assert_unchanged(root: &Root, before: &str) {
    let after = root.listing();
    if after != before {
        let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
        let gone: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).take(10).collect();
        let new: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).take(10).collect();
        panic!("the lower root changed:\nbefore only: {gone:#?}\nafter only: {new:#?}");
    }
}

fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// `apt-get update && apt-get install -y sl` in a fresh copy of the root: dpkg
/// reports sl installed, it is in the upper layer, the lower root is unchanged.
/// `None`: the mirror did not answer (said so).
fn install_sl(f: &Fixture, owned: bool) -> Option<(Root, TempDir)> {
    let root = Root::new(f, owned);
    let before = root.listing();
    let home = capsule_home(f);
    let out = in_capsule(
        f,
        &home,
        &root,
        "apt",
        "set -e; apt-get update -q; apt-get install -y -q sl; \
         dpkg-query -W -f '${Status}\\n' sl; test -x /usr/games/sl && echo sl-runs",
    );
    if mirror_failed(&out) {
        println!("skipped: the mirror does not answer\n{}", describe(&out));
        return None;
    }
    let text = success(&out, "apt-get update && apt-get install -y sl");
    assert!(
        text.contains("install ok installed\nsl-runs"),
        "dpkg does not report sl installed:\n{}",
        describe(&out)
    );
    // In the private layer, and nowhere else.
    let sl = upper(&home, "apt").join("usr/games/sl");
    assert!(exists(&sl), "{} is not in the upper layer", sl.display());
    assert_unchanged(&root, &before);
    Some((root, home))
}

/// `apt-get download hello && dpkg -i hello_*.deb && hello` in capsule "apt" (apt's
/// lists are there already): hello runs and is in the upper layer. `false`: the
/// mirror did not answer (said so).
fn dpkg_i_hello(f: &Fixture, home: &TempDir, root: &Root) -> bool {
    let out = in_capsule(
        f,
        home,
        root,
        "apt",
        "set -e; cd /tmp; apt-get download -q hello; dpkg -i hello_*.deb; hello; \
         dpkg-query -W -f '${Status}\\n' hello",
    );
    if mirror_skipped(&out, "dpkg -i") {
        return false;
    }
    let text = success(
        &out,
        "apt-get download hello && dpkg -i hello_*.deb && hello",
    );
    assert!(
        text.contains("Hello, world!\ninstall ok installed\n"),
        "{}",
        describe(&out)
    );
    assert!(exists(&upper(home, "apt").join("usr/bin/hello")));
    true
}

#[test]
fn apt_get_installs_a_package_in_a_root_the_user_owns() {
    let Some(f) = fixture() else { return };
    let Some((root, home)) = install_sl(f, true) else {
        return;
    };
    let before = root.listing();
    if !dpkg_i_hello(f, &home, &root) {
        return;
    }
    // A package whose maintainer scripts add a system user and give it directories
    // (uuid-runtime: adduser uuidd, chown of /var/lib/libuuid), then apt-get remove.
    let out = in_capsule(
        f,
        &home,
        &root,
        "apt",
        "set -e; apt-get install -y -q uuid-runtime >/dev/null; id -un uuidd; \
         stat -c '%U:%G %a' /var/lib/libuuid; apt-get remove -y -q sl >/dev/null; \
         test ! -e /usr/games/sl && echo sl-removed",
    );
    if mirror_skipped(&out, "uuid-runtime") {
        return;
    }
    assert_eq!(
        success(
            &out,
            "apt-get install -y uuid-runtime; apt-get remove -y sl"
        ),
        "uuidd\nuuidd:uuidd 2775\nsl-removed\n"
    );
    assert_unchanged(&root, &before);
    // A second capsule of the same root sees none of it.
    let out = in_capsule(
        f,
        &home,
        &root,
        "other",
        "test -e /usr/games/sl -o -e /usr/bin/hello && echo has-them; \
         dpkg-query -W -f '${Status}\\n' sl hello 2>&1 || echo not-installed",
    );
    let text = success(&out, "a second capsule");
    assert!(
        !text.contains("has-them") && text.contains("not-installed"),
        "the second capsule sees the first one's package:\n{}",
        describe(&out)
    );
}

/// The same root owned by real root, which the user may read but not write: apt's
/// and dpkg's lock files (0640 root, empty) and `partial/` directories (0700 `_apt`)
/// are copied up without reading them; `dpkg -i` may write `/var/lib/dpkg`.
#[test]
fn apt_get_installs_a_package_in_a_root_owned_by_real_root() {
    let Some(f) = fixture() else { return };
    let Some((root, home)) = install_sl(f, false) else {
        return;
    };
    // dpkg itself first checks it may write /var/lib/dpkg (access W_OK).
    let before = root.listing();
    if dpkg_i_hello(f, &home, &root) {
        assert_unchanged(&root, &before);
    }
}

/// shadow-utils' `useradd` (its `lckpwdf` on `/etc/.pwd.lock`, the `link()` of a
/// temporary file to `/etc/passwd.lock` checked by `st_nlink`), then the new name
/// everywhere: `id`, `chown NAME:NAME`, `stat`, `ls -l`, `runuser`, `setpriv` (which
/// keeps its capabilities across the uid change to change the gid after), and `su`
/// (PAM's `pam_rootok`, then `pam_unix` reading the capsule's `/etc/shadow`).
#[test]
fn useradd_and_the_new_name_in_a_root_the_user_owns() {
    let Some(f) = fixture() else { return };
    let root = Root::new(f, true);
    let before = root.listing();
    let home = capsule_home(f);
    let out = in_capsule(
        f,
        &home,
        &root,
        "users",
        "set -e; useradd -m alice; id alice; touch /tmp/g; chown alice:alice /tmp/g; \
         stat -c '%n %U:%G %u:%g' /tmp/g /home/alice; ls -l /tmp/g | awk '{print $3\":\"$4}'; \
         runuser -u alice -- id -un; setpriv --reuid=alice --regid=alice --init-groups id -un; su alice -c 'id -un; touch /tmp/a'; stat -c '%U:%G' /tmp/a",
    );
    assert_eq!(
        success(&out, "useradd -m alice"),
        "uid=1000(alice) gid=1000(alice) groups=1000(alice)\n\
         /tmp/g alice:alice 1000:1000\n/home/alice alice:alice 1000:1000\nalice:alice\nalice\nalice\nalice\nalice:alice\n"
    );
    let passwd = std::fs::read_to_string(upper(&home, "users").join("etc/passwd")).unwrap();
    assert!(passwd.contains("\nalice:x:1000:1000:"), "{passwd}");
    assert_unchanged(&root, &before);
    let out = in_capsule(f, &home, &root, "other", "id alice 2>&1 || echo unknown");
    assert!(success(&out, "a second capsule").contains("unknown"));
    // ldconfig -p (a static program) prints the capsule's cache, not the host's.
    let out = in_capsule(f, &home, &root, "other", "ldconfig -p | grep -c '=>'");
    let inside = success(&out, "ldconfig -p");
    let cache = root.path().join("etc/ld.so.cache");
    let out = run(Command::new("sh")
        .arg("-c")
        .arg("/sbin/ldconfig -p -C \"$1\" | grep -c '=>'")
        .arg("sh")
        .arg(&cache));
    assert_eq!(inside, success(&out, "ldconfig -p -C of the root's cache"));
}

/// In a root owned by real root, `/etc/shadow` and `/etc/gshadow` are 0640
/// `root:shadow`: the real user may not read them, so their copies are made from the
/// capsule's `/etc/passwd` and `/etc/group` (every password locked). Then `useradd`,
/// `su`, and a package whose maintainer scripts add a user (uuid-runtime) work; the
/// root's shadow file is byte for byte unchanged.
#[test]
fn useradd_and_uuid_runtime_in_a_root_owned_by_real_root() {
    let Some(f) = fixture() else { return };
    let root = Root::new(f, false);
    let shadow = root.path().join("etc/shadow");
    let lower_shadow = std::fs::read(&shadow).unwrap();
    let before = root.listing();
    let home = capsule_home(f);
    let out = in_capsule(
        f,
        &home,
        &root,
        "users",
        "set -e; useradd -m alice; id alice; su alice -c id; stat -c '%U:%G %a' /etc/shadow /etc/gshadow; \
         touch /tmp/g; chown alice:alice /tmp/g; ls -l /tmp/g | awk '{print $3\":\"$4}'; \
         runuser -u alice -- id -un; setpriv --reuid=alice --regid=alice --init-groups id -un",
    );
    assert_eq!(
        success(&out, "useradd -m alice in a root owned by real root"),
        "uid=1000(alice) gid=1000(alice) groups=1000(alice)\n\
         uid=1000(alice) gid=1000(alice) groups=1000(alice)\n\
         root:shadow 640\nroot:shadow 640\nalice:alice\nalice\nalice\n"
    );
    let upper_shadow = std::fs::read_to_string(upper(&home, "users").join("etc/shadow")).unwrap();
    assert!(
        upper_shadow.starts_with("root:*:") && upper_shadow.contains("\nalice:"),
        "{upper_shadow}"
    );
    let gshadow = std::fs::read_to_string(upper(&home, "users").join("etc/gshadow")).unwrap();
    assert!(gshadow.contains("\nalice:"), "{gshadow}");
    assert_eq!(std::fs::read(&shadow).unwrap(), lower_shadow);
    assert_unchanged(&root, &before);
    // A package whose maintainer scripts add a system user (adduser uuidd).
    let out = in_capsule(
        f,
        &home,
        &root,
        "users",
        "set -e; apt-get update -q >/dev/null; apt-get install -y -q uuid-runtime >/dev/null; \
         id -un uuidd; stat -c '%U:%G %a' /var/lib/libuuid; apt-get remove -y -q uuid-runtime >/dev/null; \
         test ! -e /usr/sbin/uuidd && echo removed",
    );
    if mirror_skipped(&out, "uuid-runtime") {
        return;
    }
    assert_eq!(
        success(&out, "apt-get install -y uuid-runtime"),
        "uuidd\nuuidd:uuidd 2775\nremoved\n"
    );
    assert_eq!(std::fs::read(&shadow).unwrap(), lower_shadow);
    assert_unchanged(&root, &before);
}

/// The same root imported as an image (`capsule image import` of the tar, by the
/// user, into its own store): apt-get install, useradd and su in `run --image`.
#[test]
fn apt_get_and_useradd_in_an_imported_image() {
    let Some(f) = fixture() else { return };
    let home = capsule_home(f);
    // The archive where the user can read it.
    let tar = home.path().join("root.tar");
    std::fs::copy(&f.tar, &tar).unwrap();
    let mut reach = AsNobody::new();
    reach.reach(&shim());
    let bin = reach.reach(&capsule_bin());
    let capsule = |args: &[&str]| {
        let mut cmd = clean_command(&bin);
        cmd.env("CAPSULE_HOME", home.path())
            .env("HOME", &f.home)
            .current_dir("/")
            .args(args)
            .uid(f.uid)
            .gid(f.gid);
        run(&mut cmd)
    };
    let out = capsule(&[
        "image",
        "import",
        tar.to_str().unwrap(),
        "--name",
        "bookworm:min",
    ]);
    success(&out, "capsule image import");
    let out = capsule(&[
        "run",
        "--name",
        "img",
        "--image",
        "bookworm:min",
        "--user",
        "0",
        "--",
        "bash",
        "-c",
        "set -e; apt-get update -q >/dev/null; apt-get install -y -q sl >/dev/null; \
         test -x /usr/games/sl && echo sl-runs; useradd -m bob; su bob -c 'id -un'",
    ]);
    if mirror_failed(&out) {
        println!("skipped: the mirror does not answer\n{}", describe(&out));
        return;
    }
    assert_eq!(success(&out, "apt-get in run --image"), "sl-runs\nbob\n");
    let out = capsule(&[
        "run",
        "--rm",
        "--image",
        "bookworm:min",
        "--user",
        "0",
        "--",
        "bash",
        "-c",
        "test -e /usr/games/sl && echo has-sl; id bob 2>/dev/null || echo no-bob",
    ]);
    assert_eq!(success(&out, "a second capsule of the image"), "no-bob\n");
}

/// The same in `capsule up`: a manifest's capsule of the root, as the user.
#[test]
fn apt_get_and_useradd_in_capsule_up() {
    let Some(f) = fixture() else { return };
    let root = Root::new(f, true);
    let before = root.listing();
    let home = capsule_home(f);
    let manifest = home.path().join("capsule.toml");
    std::fs::write(
        &manifest,
        format!(
            "[capsule.pkg]\nroot = {:?}\nuser = \"0\"\ncommand = \"set -e; apt-get update -q >/dev/null; \
             apt-get install -y -q sl >/dev/null; test -x /usr/games/sl && echo sl-installed; \
             useradd -m carol; su carol -c 'id -un'\"\n",
            root.path()
        ),
    )
    .unwrap();
    let mut reach = AsNobody::new();
    reach.reach(&shim());
    let mut cmd = clean_command(reach.reach(&capsule_bin()));
    cmd.env("CAPSULE_HOME", home.path())
        .env("HOME", &f.home)
        .current_dir("/")
        .args(["up", "-f"])
        .arg(&manifest)
        .uid(f.uid)
        .gid(f.gid);
    let out = run(&mut cmd);
    if mirror_failed(&out) {
        println!("skipped: the mirror does not answer\n{}", describe(&out));
        return;
    }
    let text = success(&out, "capsule up");
    assert!(
        text.contains("pkg | sl-installed\npkg | carol\n"),
        "{}",
        describe(&out)
    );
    assert!(exists(&upper(&home, "pkg").join("usr/games/sl")));
    assert_unchanged(&root, &before);
}
