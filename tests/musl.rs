//! musl programs in capsules: `libcapsule-musl.so` chosen by the program's
//! `PT_INTERP`, over the host, in a `--root` of a musl root, from an imported image,
//! and across execs between glibc and musl programs of one capsule.
//!
//! The musl root is built here from Debian's musl (its `ld-musl-x86_64.so.1`, which is
//! also its `libc.so`) and `c-tests/musl_probe.c` compiled with musl-gcc: Alpine's
//! minirootfs cannot be downloaded on the machines these tests run on, and Debian has
//! no musl build of busybox.

mod common;
#[path = "image_support.rs"]
mod image_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;

/// `c-tests/musl_probe.c` built with musl-gcc (`musl`) or cc (glibc), once per test
/// process.
fn probe(musl: bool) -> PathBuf {
    static BUILT: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    BUILT[usize::from(musl)]
        .get_or_init(|| build_probe(musl))
        .clone()
}

fn build_probe(musl: bool) -> PathBuf {
    let source = workspace_root().join("c-tests/musl_probe.c");
    let dir = bin_dir().join("c-tests");
    fs::create_dir_all(&dir).unwrap();
    let name = if musl {
        "musl_probe-musl"
    } else {
        "musl_probe-glibc"
    };
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let out = Command::new(if musl { "musl-gcc" } else { "cc" })
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(&temp)
        .arg(&source)
        .output()
        .expect("musl-gcc (Debian's musl-tools) is needed by these tests");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&temp, &target).unwrap();
    target
}

/// The musl library the host's musl-gcc links against.
fn host_musl_libc() -> PathBuf {
    fs::canonicalize("/lib/ld-musl-x86_64.so.1").expect("Debian's musl package")
}

/// A musl root: its loader, the probe as `/bin/probe`, `/etc/passwd`, `/etc/note`.
fn musl_root(top: &Path) {
    for dir in ["lib", "bin", "etc", "tmp", "root"] {
        fs::create_dir_all(top.join(dir)).unwrap();
    }
    fs::copy(host_musl_libc(), top.join("lib/ld-musl-x86_64.so.1")).unwrap();
    fs::copy(probe(true), top.join("bin/probe")).unwrap();
    fs::write(top.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(top.join("etc/note"), "lower\n").unwrap();
}

/// A musl root in a new temporary directory, and a snapshot of it.
fn fresh_musl_root(label: &str) -> (TempDir, BTreeMap<String, image_support::Entry>) {
    let root = TempDir::new(label);
    musl_root(root.path());
    let before = image_support::snapshot(root.path());
    (root, before)
}

/// `/etc/note` as capsule `name`'s upper layer holds it.
fn upper_note(home: &CapsuleHome, name: &str) -> String {
    fs::read_to_string(home.path().join(format!("capsules/{name}/upper/etc/note"))).unwrap()
}

/// The fields of the probe's line tagged `tag`.
fn line(out: &str, tag: &str) -> std::collections::HashMap<String, String> {
    let text = out
        .lines()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .unwrap_or_else(|| panic!("no line {tag} in {out:?}"));
    key_values(&text.replace(' ', "\n"))
}

fn assert_clock_a_day_behind(fields: &std::collections::HashMap<String, String>) {
    let seen: f64 = fields["time"].parse().unwrap();
    let behind = now_secs() - seen;
    assert!(
        (86_340.0..86_460.0).contains(&behind),
        "time {seen}: {behind} s behind"
    );
}

#[test]
fn musl_program_over_the_host_sees_the_capsule() {
    let home = CapsuleHome::new();
    let dir = TempDir::new("musl-host");
    let file = dir.join("note");
    fs::write(&file, "lower\n").unwrap();
    let out = home.run(&[
        "run",
        "--name",
        "m",
        "--hostname",
        "muslhost",
        "--user",
        "0",
        "--time-offset",
        "-1d",
        "--",
        probe(true).to_str().unwrap(),
        "m",
        file.to_str().unwrap(),
    ]);
    let text = success(&out, "musl probe over the host");
    let f = line(&text, "m");
    assert_eq!(f["host"], "muslhost");
    assert_eq!(f["uid"], "0");
    assert_eq!(f["libc"], host_musl_libc().to_str().unwrap());
    assert_eq!(f["content"], "lower,m,");
    assert_clock_a_day_behind(&f);
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "lower\n",
        "host file unchanged"
    );
    let upper = home
        .path()
        .join("capsules/m/upper")
        .join(file.strip_prefix("/").unwrap());
    assert_eq!(fs::read_to_string(upper).unwrap(), "lower\nm\n");
}

#[test]
fn glibc_and_musl_programs_exec_each_other_in_one_capsule() {
    let home = CapsuleHome::new();
    let dir = TempDir::new("musl-mixed");
    let file = dir.join("chain");
    fs::write(&file, "lower\n").unwrap();
    let (g, m) = (probe(false), probe(true));
    let (g, m, f) = (
        g.to_str().unwrap(),
        m.to_str().unwrap(),
        file.to_str().unwrap(),
    );
    let out = home.run(&[
        "run",
        "--name",
        "mixed",
        "--hostname",
        "mixed",
        "--user",
        "0",
        "--",
        g,
        "g1",
        f,
        m,
        "m1",
        f,
        g,
        "g2",
        f,
        m,
        "m2",
        f,
    ]);
    let text = success(&out, "exec chain glibc -> musl -> glibc -> musl");
    let mut expected = String::from("lower,");
    for tag in ["g1", "m1", "g2", "m2"] {
        let fields = line(&text, tag);
        expected.push_str(tag);
        expected.push(',');
        assert_eq!(fields["host"], "mixed", "{tag}");
        assert_eq!(fields["uid"], "0", "{tag}");
        assert_eq!(
            fields["content"], expected,
            "{tag} sees the earlier private writes"
        );
        let musl = fields["libc"].contains("musl");
        assert_eq!(
            musl,
            tag.starts_with('m'),
            "{tag} runs with {}",
            fields["libc"]
        );
    }
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "lower\n",
        "host file unchanged"
    );
}

#[test]
fn musl_root_runs_with_its_own_loader() {
    let home = CapsuleHome::new();
    let (root, before) = fresh_musl_root("musl-root");
    let out = home.run(&[
        "run",
        "--name",
        "alp",
        "--root",
        root.str(),
        "--hostname",
        "alpine1",
        "--user",
        "0",
        "--time-offset",
        "-1d",
        "--",
        "/bin/probe",
        "r",
        "/etc/note",
    ]);
    let text = success(&out, "musl probe in a musl root");
    let f = line(&text, "r");
    assert_eq!(f["host"], "alpine1");
    assert_eq!(f["uid"], "0");
    assert_eq!(f["content"], "lower,r,");
    assert_clock_a_day_behind(&f);
    let ldso = root.join("lib/ld-musl-x86_64.so.1");
    assert_eq!(f["libc"], ldso.to_str().unwrap(), "the root's own ld-musl");
    image_support::assert_same(&image_support::snapshot(root.path()), &before, "musl root");
    assert_eq!(upper_note(&home, "alp"), "lower\nr\n");
}

#[test]
fn musl_image_imported_with_umoci_runs() {
    let home = CapsuleHome::new();
    let work = TempDir::new("musl-image");
    let layout = work.join("oci");
    let bundle = work.join("bundle");
    let (l, b) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
    image_support::tool("umoci", &["init", "--layout", l]);
    image_support::tool("umoci", &["new", "--image", &format!("{l}:musl")]);
    image_support::tool(
        "umoci",
        &["unpack", "--rootless", "--image", &format!("{l}:musl"), b],
    );
    musl_root(&bundle.join("rootfs"));
    image_support::tool("umoci", &["repack", "--image", &format!("{l}:musl"), b]);
    image_support::capsule_ok(
        &home,
        &["image", "import", &format!("{l}:musl"), "--name", "musl:1"],
    );
    let out = home.run(&[
        "run",
        "--name",
        "img",
        "--image",
        "musl:1",
        "--hostname",
        "fromimage",
        "--",
        "/bin/probe",
        "i",
        "/etc/note",
    ]);
    let text = success(&out, "musl probe from an imported image");
    let f = line(&text, "i");
    assert_eq!(f["host"], "fromimage");
    assert_eq!(f["content"], "lower,i,");
    assert!(
        f["libc"].ends_with("/lib/ld-musl-x86_64.so.1"),
        "{}",
        f["libc"]
    );
    assert!(
        !f["libc"].starts_with("/lib/"),
        "the image's ld-musl: {}",
        f["libc"]
    );
    assert_eq!(upper_note(&home, "img"), "lower\ni\n");
}

#[test]
fn two_musl_capsules_of_one_root_at_once_keep_their_own_view() {
    let home = CapsuleHome::new();
    let (root, before) = fresh_musl_root("musl-two");
    // Both started before either is waited for.
    let running: Vec<_> = ["one", "two"]
        .iter()
        .map(|name| {
            let host = format!("host-{name}");
            let mut cmd = home.command(&[
                "run",
                "--name",
                name,
                "--root",
                root.str(),
                "--hostname",
                &host,
                "--",
                "/bin/probe",
                name,
                "/etc/note",
            ]);
            (name, spawn(&mut cmd))
        })
        .collect();
    for (name, child) in running {
        let text = success(&child.wait(), name);
        let f = line(&text, name);
        assert_eq!(f["host"], format!("host-{name}"));
        assert_eq!(
            f["content"],
            format!("lower,{name},"),
            "{name} sees only its own write"
        );
        assert_eq!(upper_note(&home, name), format!("lower\n{name}\n"));
    }
    image_support::assert_same(&image_support::snapshot(root.path()), &before, "musl root");
}
