//! Unmodified coreutils and findutils (the host's, copied with their libraries into a
//! test root) in a capsule on that root, under plain `LD_PRELOAD` and under
//! `capsule run --root`: `ls -la`, `cat`, `cp -a`, `mv` (files and a lower directory),
//! `rm -rf`, `mkdir -p`, `ln -s`, `touch -d`, `chmod`, `stat`, `find`, `du`, one process
//! after another on the same upper layer. Checked: what they print, what the upper layer
//! holds (copies, whiteouts), that the lower layer is byte-for-byte unchanged and that
//! nothing reached the host.

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;
use fs_support::*;

/// Paths the scenario writes in the capsule; none may appear on the host.
const WRITTEN: &[&str] = &[
    "/a",
    "/new.txt",
    "/many",
    "/etc/app.conf",
    "/var/lib/app",
    "/var/lib/app-copy",
    "/cow",
];

#[track_caller]
fn step(c: &Capsule, script: &str, want: &str) {
    let out = c.sh(script);
    let got = success(&out, &c.label(&format!("sh -c {script:?}")));
    assert_eq!(got, want, "{}", c.label(&format!("output of {script:?}")));
}

#[track_caller]
fn step_contains(c: &Capsule, script: &str, present: &[&str], absent: &[&str]) -> String {
    let out = c.sh(script);
    let got = success(&out, &c.label(&format!("sh -c {script:?}")));
    for p in present {
        assert!(
            got.contains(p),
            "{}: output lacks {p:?}:\n{got}",
            c.label(script)
        );
    }
    for a in absent {
        assert!(
            !got.contains(a),
            "{}: output shows {a:?}:\n{got}",
            c.label(script)
        );
    }
    got
}

#[track_caller]
fn upper_file(c: &Capsule, path: &str, content: &str) -> fs::Metadata {
    let host = c.up(path);
    assert_eq!(
        fs::read_to_string(&host).ok().as_deref(),
        Some(content),
        "{}: {} should hold the capsule's {path}",
        c.label("upper layer"),
        host.display()
    );
    fs::metadata(&host).unwrap()
}

#[track_caller]
fn upper_has(c: &Capsule, path: &str, what: &str) {
    assert!(
        exists(&c.up(path)),
        "{}: expected the {what} {} in the upper layer",
        c.label("upper layer"),
        c.up(path).display()
    );
}

fn scenario(via: Via) {
    let host = HostAbsent::new(WRITTEN);
    let root = TestRoot::new();
    let c = Capsule::new(via, &root);

    // Reading the lower layer.
    step_contains(
        &c,
        "ls -la /etc",
        &[" app.conf", " hostname", "link -> /var/lib/app/data.txt"],
        &[".wh."],
    );
    step(&c, "cat /etc/link /etc/app.conf", "lower data\nsetting=1\n");

    // cp -a of a lower directory keeps modes and times.
    step(
        &c,
        "cp -a /var/lib/app /var/lib/app-copy; ls /var/lib/app-copy",
        "data.txt\nother.txt\n",
    );
    let meta = upper_file(&c, "/var/lib/app-copy/data.txt", "lower data\n");
    assert_eq!(meta.mode() & 0o7777, 0o640, "cp -a keeps the mode");
    assert_eq!(meta.mtime(), DATA_MTIME, "cp -a keeps the mtime");

    // mv of a lower file: the new name in the upper layer, a whiteout for the old one.
    step(
        &c,
        "mv /var/lib/app/other.txt /var/lib/app/renamed.txt; ls /var/lib/app",
        "data.txt\nrenamed.txt\n",
    );
    upper_file(&c, "/var/lib/app/renamed.txt", "other\n");
    upper_has(
        &c,
        "/var/lib/app/.wh.other.txt",
        "whiteout of the moved other.txt",
    );

    // mv of a lower directory (rename, or EXDEV and mv copies).
    step(
        &c,
        "mv /cow/lowerdir /cow/moveddir; ls /cow/moveddir; cat /cow/moveddir/x; \
         test -e /cow/lowerdir || echo source-gone",
        "x\ny\nx\nsource-gone\n",
    );
    assert!(
        c.up("/cow/moveddir").is_dir(),
        "{}",
        c.label("moved dir in upper")
    );

    // rm -rf of a lower directory with 50 entries.
    step_contains(
        &c,
        "rm -rf /many; ls /; test -e /many || echo many-gone",
        &["many-gone", "etc\n", "var\n"],
        &["many\n"],
    );
    upper_has(&c, "/.wh.many", "whiteout of /many");

    // mkdir -p, ln -s, touch -d, chmod, stat.
    step(
        &c,
        "mkdir -p /a/b/c; ln -s /var/lib/app/data.txt /a/b/c/lnk; cat /a/b/c/lnk; \
         readlink /a/b/c/lnk",
        "lower data\n/var/lib/app/data.txt\n",
    );
    let lnk = c.up("/a/b/c/lnk");
    assert_eq!(
        fs::read_link(&lnk)
            .ok()
            .and_then(|p| p.to_str().map(String::from)),
        Some("/var/lib/app/data.txt".to_string()),
        "{}: the symlink made by ln -s keeps its capsule target in the upper layer",
        c.label("ln -s")
    );
    step(
        &c,
        "touch -d @1500000000 /a/b/c/t /etc/app.conf; stat -c '%Y %s %a' /etc/app.conf",
        "1500000000 10 644\n",
    );
    let meta = upper_file(&c, "/etc/app.conf", "setting=1\n");
    assert_eq!(meta.mtime(), 1_500_000_000, "touch -d in the upper layer");
    step(
        &c,
        "chmod 600 /etc/app.conf; stat -c %a /etc/app.conf",
        "600\n",
    );
    assert_eq!(
        mode_of(&c.up("/etc/app.conf")),
        0o600,
        "chmod in the upper layer"
    );
    step(
        &c,
        "stat -c %F /etc/link; stat -L -c %s /etc/link",
        "symbolic link\n11\n",
    );

    // find and du over merged directories.
    step(
        &c,
        "find /a | sort",
        "/a\n/a/b\n/a/b/c\n/a/b/c/lnk\n/a/b/c/t\n",
    );
    step(
        &c,
        "find /var/lib -name '*.txt' | sort",
        "/var/lib/app-copy/data.txt\n/var/lib/app-copy/other.txt\n\
         /var/lib/app/data.txt\n/var/lib/app/renamed.txt\n",
    );
    step(
        &c,
        "find /var/lib/app -type f | wc -l; du -a /var/lib/app | wc -l; \
         du -s /a > /dev/null && echo du-ok",
        "2\n3\ndu-ok\n",
    );
    step_contains(
        &c,
        "ls -la /var/lib/app",
        &["data.txt", "renamed.txt"],
        &["other.txt", ".wh."],
    );

    // A script written in the capsule runs, its #! interpreter found in the root.
    step(
        &c,
        "printf '#!/bin/sh\\necho script-ran \"$0\"\\ncat /etc/link\\n' > /a/s.sh; chmod +x /a/s.sh; \
         /a/s.sh; cd /a && ./s.sh",
        "script-ran /a/s.sh\nlower data\nscript-ran ./s.sh\nlower data\n",
    );

    // New files at the top, a removed copied-up lower file.
    step(&c, "echo hi > /new.txt; cat /new.txt", "hi\n");
    upper_file(&c, "/new.txt", "hi\n");
    step_contains(
        &c,
        "rm /etc/app.conf; ls /etc; test -e /etc/app.conf || echo removed",
        &["removed", "hostname", "link"],
        &["app.conf"],
    );
    upper_has(
        &c,
        "/etc/.wh.app.conf",
        "whiteout of the removed /etc/app.conf",
    );
    assert!(
        !exists(&c.up("/etc/app.conf")),
        "{}: the removed file's copy is still in the upper layer",
        c.label("rm")
    );

    // A later process sees the same; no marker is ever listed.
    step_contains(
        &c,
        "ls /; ls -A /etc /var/lib/app /cow /",
        &["a\n", "new.txt\n", "etc\n"],
        &["many\n", ".wh.", "app.conf", "other.txt", "lowerdir"],
    );
    step(&c, "find /etc /var /cow /a -name '.wh.*' | wc -l", "0\n");
    step(
        &c,
        "cp /var/lib/app/data.txt /var/lib/app/copy.txt && cat /var/lib/app/copy.txt",
        "lower data\n",
    );

    root.assert_unchanged();
    host.check();
}

#[test]
fn coreutils_preload() {
    scenario(Via::Preload);
}

#[test]
fn coreutils_loader() {
    scenario(Via::Loader);
}
