//! Containment, tried as an attacker would (issue 9, classes A, B, C, G, H, L): each
//! attempt is a bash line (using bash, python3, coreutils, chattr, or the C probe
//! `c-tests/fs_escape.c`) run through the real `capsule` binary against a lower-layer
//! file `$T` and directory `$D`:
//!
//! - in a `--root DIR` capsule, in a capsule over the host's `/` and in capsules of an
//!   imported image (whose stored layer every capsule of the image shares): what the attempt
//!   printed and what a later process of the capsule sees (`LOOK`: contents, mode,
//!   owner, mtime, xattrs, inode flags, the directory's names) must equal a native run
//!   on a fresh copy of the files (the kernel's semantics, kept inside), while the
//!   lower files stay byte for byte as they were (contents, mode, owner, times,
//!   xattrs, inode flags);
//! - in a `--read-only` capsule and on a `:ro` volume: the capsule still sees the
//!   files as they were, and they are unchanged;
//! - `/proc/PID/{fd,cwd,root,exe,map_files}` of a process outside the capsule are
//!   refused, the capsule's own are translated.
//!
//! The table is `ATTEMPTS`; one row per way in.

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use fs_support::*;

/// One way in: the class of issue 9 it belongs to, a name, and a bash line that
/// uses `$T` (a lower file), `$D` (a lower directory holding `inner`), `$P` (the
/// probe `fs_escape`) and `$PY` (python3).
struct Attempt {
    class: char,
    name: &'static str,
    script: &'static str,
    /// Needs inode flags (FS_IOC_SETFLAGS) on the file system of the layers.
    flags: bool,
}

const fn a(class: char, name: &'static str, script: &'static str) -> Attempt {
    Attempt {
        class,
        name,
        script,
        flags: false,
    }
}

const fn f(class: char, name: &'static str, script: &'static str) -> Attempt {
    Attempt {
        class,
        name,
        script,
        flags: true,
    }
}

const ATTEMPTS: &[Attempt] = &[
    // A: magic links to a read-only descriptor of a lower file.
    a(
        'A',
        "bash-append-proc-self-fd",
        r#"exec 3<"$T"; echo X >> /proc/self/fd/3; cat <&3"#,
    ),
    a(
        'A',
        "bash-truncating-dev-fd",
        r#"exec 3<"$T"; echo Y > /dev/fd/3"#,
    ),
    a(
        'A',
        "truncate-dev-stdin",
        r#"truncate -s 2 /dev/stdin < "$T""#,
    ),
    a(
        'A',
        "bash-dotdot-after-dir-fd",
        r#"exec 3<"$D"; echo V >> /proc/self/fd/3/../target"#,
    ),
    a(
        'A',
        "bash-proc-self-cwd",
        r#"cd "$D"; echo R >> /proc/self/cwd/../target; chmod 606 /proc/$$/cwd/inner"#,
    ),
    a(
        'A',
        "bash-proc-self-root",
        r#"echo Q >> /proc/self/root$T; touch -d @4 /proc/thread-self/root$T"#,
    ),
    a(
        'A',
        "bash-task-fd",
        r#"exec 3<"$T"; echo Z >> /proc/self/task/$$/fd/3"#,
    ),
    a(
        'A',
        "chmod-proc-self-fd",
        r#"exec 3<"$T"; chmod 600 /proc/self/fd/3; stat -L -c %a /proc/self/fd/3"#,
    ),
    a('A', "touch-dev-fd", r#"exec 3<"$T"; touch -d @5 /dev/fd/3"#),
    a(
        'A',
        "chown-dev-stdin",
        r#"chown 1234:1234 /dev/stdin < "$T""#,
    ),
    a(
        'A',
        "touch-in-lower-dir-through-fd",
        r#"exec 3<"$D"; touch /proc/self/fd/3/made; ls /proc/self/fd/3/"#,
    ),
    a(
        'A',
        "python-open-rdwr-dev-fd",
        r#"exec 3<"$T"; $PY -c 'import os; f = os.open("/dev/fd/3", os.O_RDWR); os.write(f, b"P"); os.truncate("/proc/self/fd/3", 4); print(os.pread(f, 9, 0))'"#,
    ),
    a(
        'A',
        "python-xattr-proc-self-fd",
        r#"exec 3<"$T"; $PY -c 'import os; os.setxattr("/proc/self/fd/3", "user.new", b"x"); os.removexattr("/dev/fd/3", "user.origin"); print(sorted(os.listxattr("/proc/self/fd/3")))'"#,
    ),
    a(
        'A',
        "python-utime-chmod-dev-stdin",
        r#"$PY -c 'import os; os.utime("/dev/stdin", (6, 6)); os.chmod("/dev/stdin", 0o640); print(oct(os.stat("/dev/stdin").st_mode))' < "$T""#,
    ),
    a('A', "probe-magic-write", r#"$P magic-write "$T""#),
    a('A', "probe-magic-dir", r#"$P magic-dir "$T" "$D""#),
    a('A', "probe-map-files", r#"$P map-files "$T""#),
    // B: changes through a read-only descriptor after its file was copied up.
    a('B', "probe-fchmod-twice", r#"$P fchmod2 "$T""#),
    a('B', "probe-fchown-twice", r#"$P fchown2 "$T""#),
    a('B', "probe-futimens-twice", r#"$P futimens2 "$T""#),
    a('B', "probe-fsetxattr-twice", r#"$P fxattr2 "$T""#),
    a('B', "probe-mixed", r#"$P mixed "$T""#),
    a('B', "probe-at-empty-path", r#"$P empty-path "$T""#),
    a(
        'B',
        "python-fchmod-after-other-process-copied-up",
        r#"exec 3<"$T"; chmod 640 "$T"; $PY -c 'import os; os.chmod(3, 0o600); os.utime(3, (8, 8)); print(oct(os.stat(3).st_mode))'"#,
    ),
    a(
        'B',
        "python-fchmod-twice",
        r#"$PY -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.chmod(fd, 0o600); os.chmod(fd, 0o604); os.setxattr(fd, "user.b", b"1"); print(oct(os.fstat(fd).st_mode), sorted(os.listxattr(fd)))' "$T""#,
    ),
    // C: a descriptor number reused after a close the table did not see.
    a('C', "probe-fclose-reuse", r#"$P fclose-reuse "$T""#),
    a('C', "probe-closedir-reuse", r#"$P closedir-reuse "$T""#),
    a('C', "probe-dup2-over", r#"$P dup2-over "$T""#),
    a(
        'C',
        "probe-close-range-reuse",
        r#"$P close-range-reuse "$T""#,
    ),
    a(
        'C',
        "python-fdopen-close-reuse",
        r#"$PY -c 'import os, sys; f = open(os.path.dirname(sys.argv[1]) + "/c-reuse", "w"); n = f.fileno(); f.close(); fd = os.open(sys.argv[1], os.O_RDONLY); print(fd == n); os.chmod(fd, 0o600)' "$T""#,
    ),
    // G: inode flags.
    f('G', "chattr", r#"chattr +d "$T"; lsattr "$T" | cut -c1-22"#),
    f('G', "probe-setflags-twice", r#"$P ioctl-flags "$T""#),
    f(
        'G',
        "python-setflags",
        r#"$PY -c 'import os, sys, fcntl, _struct as struct; fd = os.open(sys.argv[1], os.O_RDONLY); v = struct.unpack("l", fcntl.ioctl(fd, 0x80086601, b"\0" * 8))[0]; fcntl.ioctl(fd, 0x40086602, struct.pack("l", v | 0x80)); print(struct.unpack("l", fcntl.ioctl(fd, 0x80086601, b"\0" * 8))[0] & 0xc0)' "$T""#,
    ),
    // L: syscall() with path numbers.
    f('L', "probe-raw-syscalls", r#"$P syscalls "$T""#),
];

/// What a later process of the capsule sees of `$T`, `$D` and their directory
/// (argv: T, D). No paths, no recent times: the same natively and in a capsule.
const LOOK: &str = r#"
import os, stat, sys, fcntl, _struct as struct
t, d = sys.argv[1], sys.argv[2]
def flags(p):
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as e:
        return "open:" + e.strerror
    try:
        v = struct.unpack("l", fcntl.ioctl(fd, 0x80086601, b"\0" * 8))[0]
        return "%x" % (v & 0xc0)
    except OSError as e:
        return "-"
    finally:
        os.close(fd)
def desc(p):
    name = os.path.basename(p)
    try:
        st = os.lstat(p)
    except OSError as e:
        return "%s: %s" % (name, e.strerror)
    out = "%s: mode=%o uid=%d gid=%d" % (name, st.st_mode, st.st_uid, st.st_gid)
    if stat.S_ISREG(st.st_mode):
        m = st.st_mtime_ns // 10**9
        out += " size=%d mtime=%s flags=%s content=%r" % (st.st_size, m if m < 1500000000 else "recent", flags(p), open(p, "rb").read())
    if stat.S_ISLNK(st.st_mode):
        out += " -> %s" % os.path.basename(os.readlink(p))
    xs = sorted(x for x in os.listxattr(p, follow_symlinks=False) if x.startswith("user.")) if not stat.S_ISLNK(st.st_mode) else []
    out += " xattrs=%r" % [(x, os.getxattr(p, x, follow_symlinks=False)) for x in xs]
    return out
top = os.path.dirname(t)
print(desc(t))
print(desc(d))
for n in sorted(os.listdir(top)):
    print(desc(os.path.join(top, n)))
for n in sorted(os.listdir(d)):
    print(desc(os.path.join(d, n)))
"#;

/// The mtime of the lower files.
const MTIME: u64 = 1_000_000_000;

/// Writes the lower files an attempt works on into `dir`: `target` (with an xattr)
/// and `dir/inner`.
fn make_data(dir: &Path) {
    fs::create_dir_all(dir.join("dir")).expect("mkdir data");
    let target = dir.join("target");
    fs::write(&target, b"lower\n").expect("write target");
    fs::write(dir.join("dir/inner"), b"inner\n").expect("write inner");
    for (p, mode) in [(&target, 0o644), (&dir.join("dir/inner"), 0o644)] {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
        let file = fs::File::open(p).expect("open data");
        file.set_modified(UNIX_EPOCH + Duration::from_secs(MTIME))
            .expect("mtime");
    }
    fs::set_permissions(dir.join("dir"), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    assert!(
        set_xattr(&target, "user.origin", b"lower"),
        "the test needs user xattrs on {}",
        dir.display()
    );
}

/// The inode flags of `path` that attempts change (nodump, noatime).
fn inode_flags(path: &Path) -> Option<i64> {
    let file = fs::File::open(path).ok()?;
    let mut v: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes a long into `v`.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0x8008_6601u64 as _,
            &mut v,
        )
    };
    (rc == 0).then_some(v & 0xc0)
}

/// Whether the file system under `dir` keeps inode flags (tmpfs does not).
fn has_inode_flags(dir: &Path) -> bool {
    let probe = dir.join(".flags-probe");
    let _ = fs::write(&probe, b"");
    let ok = inode_flags(&probe).is_some();
    let _ = fs::remove_file(&probe);
    ok
}

/// The lower files' state: the snapshot plus the target's inode flags.
fn lower_state(dir: &Path) -> (Snapshot, Option<i64>) {
    (Snapshot::of(dir), inode_flags(&dir.join("target")))
}

/// The command line every run uses: the attempt, a marker, then LOOK in a new
/// process.
fn runner(shell: &str, python: &str) -> Vec<String> {
    vec![
        shell.to_string(),
        "-c".to_string(),
        format!("bash -c \"$1\" 2>&1; echo @@look; {python} -S -c \"$2\" \"$T\" \"$D\""),
        "sh".to_string(),
    ]
}

/// Splits a run's stdout into what the attempt printed and what LOOK saw.
fn split(out: &Output) -> (String, String) {
    let text = stdout(out);
    let (attempt, look) = text.split_once("@@look\n").unwrap_or((&text, ""));
    (attempt.to_string(), look.to_string())
}

/// Paths of the attempt's error messages (programs name the file) made alike.
fn neutral(text: &str, t: &str, d: &str) -> String {
    text.replace(t, "$T").replace(d, "$D")
}

/// The attempt natively on a fresh copy of the files: what the kernel says.
fn native(attempt: &Attempt, probe: &Path) -> (String, String) {
    let scratch = TempDir::new("escape-native");
    let data = scratch.join("data");
    make_data(&data);
    let (t, d) = (data.join("target"), data.join("dir"));
    let args = runner("/bin/sh", "/usr/bin/python3.11");
    let out = run(clean_command(&args[0])
        .args(&args[1..])
        .args([attempt.script, LOOK])
        .current_dir(scratch.path())
        .env("T", &t)
        .env("D", &d)
        .env("P", probe)
        .env("PY", "/usr/bin/python3.11 -S")
        .env("PATH", "/usr/bin:/bin"));
    let (said, look) = split(&out);
    let (ts, ds) = (t.to_str().unwrap(), d.to_str().unwrap());
    (neutral(&said, ts, ds), look)
}

/// A root for the attempts: the programs they use, with their libraries, python's
/// `encodings`, the probe in `/probes`, and the data in `/data` (or a volume).
fn build_root(dir: &Path, probe: &Path) {
    let programs = [
        "sh",
        "bash",
        "cat",
        "chmod",
        "chown",
        "touch",
        "stat",
        "truncate",
        "ls",
        "cut",
        "readlink",
        "chattr",
        "lsattr",
        "python3.11",
    ];
    for name in programs {
        let path = which(name);
        for lib in libraries_of(&path) {
            install(dir, &lib);
        }
        install(dir, &path);
    }
    install(dir, Path::new("/bin/sh"));
    for file in ["/etc/passwd", "/etc/group"] {
        install(dir, Path::new(file));
    }
    let encodings = Path::new("/usr/lib/python3.11/encodings");
    let to = dir.join("usr/lib/python3.11/encodings");
    fs::create_dir_all(&to).expect("mkdir encodings");
    for entry in fs::read_dir(encodings).expect("python encodings") {
        let entry = entry.expect("entry");
        if entry.path().extension().is_some_and(|e| e == "py") {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copy encoding");
        }
    }
    // Python's landmarks for its prefix and exec prefix (os itself is frozen).
    fs::copy(
        "/usr/lib/python3.11/os.py",
        dir.join("usr/lib/python3.11/os.py"),
    )
    .expect("os.py");
    fs::create_dir_all(dir.join("usr/lib/python3.11/lib-dynload")).expect("mkdir lib-dynload");
    fs::create_dir_all(dir.join("probes")).expect("mkdir probes");
    fs::copy(probe, dir.join("probes/fs_escape")).expect("copy probe");
    fs::create_dir_all(dir.join("tmp")).expect("mkdir tmp");
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    let _ = symlink("python3.11", dir.join("usr/bin/python3"));
}

/// Where a capsule runs an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `--root DIR`, the files in `DIR/data`.
    Root,
    /// Over the host's `/`, the files in a temporary directory of the host.
    Host,
    /// `--root DIR --read-only`.
    ReadOnly,
    /// `--root DIR -v HOST:/vol:ro`, the files in the volume.
    RoVolume,
}

/// An image imported once (umoci builds it from a root made by `build_root`, with the
/// files in `/data`), whose capsules share its stored layer.
struct Image {
    home: CapsuleHome,
    _work: TempDir,
    /// The stored copies of `/data`: the layer and the merged root (hard links).
    stored: Vec<PathBuf>,
}

impl Image {
    fn import(probe: &Path) -> Image {
        let work = TempDir::new("escape-image");
        let layout = work.join("oci");
        let bundle = work.join("bundle");
        let (l, b) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
        let umoci = |args: &[&str]| {
            let out = run_native("umoci", args);
            success(&out, &format!("umoci {}", args.join(" ")));
        };
        umoci(&["init", "--layout", l]);
        umoci(&["new", "--image", &format!("{l}:t")]);
        umoci(&["unpack", "--image", &format!("{l}:t"), b]);
        let rootfs = bundle.join("rootfs");
        build_root(&rootfs, probe);
        make_data(&rootfs.join("data"));
        umoci(&["repack", "--image", &format!("{l}:t"), b]);
        let home = CapsuleHome::new();
        let out = home.run(&["image", "import", &format!("{l}:t"), "--name", "escape:1"]);
        success(&out, "capsule image import");
        let mut stored = Vec::new();
        for sub in ["layers", "roots"] {
            for entry in fs::read_dir(home.path().join("images").join(sub)).expect("store") {
                let data = entry.expect("store entry").path().join("data");
                if data.is_dir() {
                    stored.push(data);
                }
            }
        }
        assert_eq!(stored.len(), 2, "the image's layer and root: {stored:?}");
        Image {
            home,
            _work: work,
            stored,
        }
    }

    fn state(&self) -> Vec<(Snapshot, Option<i64>)> {
        self.stored.iter().map(|d| lower_state(d)).collect()
    }
}

/// Runs `attempt` in a new capsule (`name`) of `image`: what it said and saw, and
/// whether the stored layer stayed as it was.
fn in_image(image: &Image, name: &str, attempt: &Attempt) -> (String, String, Output, bool) {
    let before = image.state();
    let mut args: Vec<String> = ["run", "--name", name, "--image", "escape:1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (k, v) in [
        ("T", "/data/target"),
        ("D", "/data/dir"),
        ("P", "/probes/fs_escape"),
        ("PY", "/usr/bin/python3.11 -S"),
        ("PATH", "/usr/bin:/bin"),
    ] {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.push("--".into());
    args.extend(runner("/bin/sh", "/usr/bin/python3.11"));
    args.push(attempt.script.into());
    args.push(LOOK.into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&mut image.home.command(&argv));
    let (said, look) = split(&out);
    let said = neutral(&said, "/data/target", "/data/dir");
    let same = image.state() == before;
    (said, look, out, same)
}

struct Run {
    said: String,
    look: String,
    out: Output,
    lower_before: (Snapshot, Option<i64>),
    lower_after: (Snapshot, Option<i64>),
}

/// Runs `attempt` in a fresh capsule of `kind`.
fn in_capsule(kind: Kind, attempt: &Attempt, probe: &Path) -> Run {
    let home = CapsuleHome::new();
    let root = TempDir::new("escape-root");
    let hostdata = TempDir::new("escape-host");
    let (data, t, d, p, py): (PathBuf, String, String, String, &str) = match kind {
        Kind::Host => {
            let data = hostdata.join("data");
            let t = data.join("target").to_str().unwrap().to_string();
            let d = data.join("dir").to_str().unwrap().to_string();
            (
                data,
                t,
                d,
                probe.to_str().unwrap().to_string(),
                "/usr/bin/python3.11",
            )
        }
        Kind::Root | Kind::ReadOnly => (
            root.join("data"),
            "/data/target".into(),
            "/data/dir".into(),
            "/probes/fs_escape".into(),
            "/usr/bin/python3.11",
        ),
        Kind::RoVolume => (
            hostdata.join("vol"),
            "/vol/target".into(),
            "/vol/dir".into(),
            "/probes/fs_escape".into(),
            "/usr/bin/python3.11",
        ),
    };
    if kind != Kind::Host {
        build_root(root.path(), probe);
    }
    make_data(&data);
    let before = lower_state(&data);
    let mut args: Vec<String> = vec!["run".into(), "--name".into(), "escape".into()];
    match kind {
        Kind::Host => {}
        Kind::Root => args.extend(["--root".into(), root.str().into()]),
        Kind::ReadOnly => args.extend(["--root".into(), root.str().into(), "--read-only".into()]),
        Kind::RoVolume => args.extend([
            "--root".into(),
            root.str().into(),
            "-v".into(),
            format!("{}:/vol:ro", data.display()),
        ]),
    }
    for (k, v) in [
        ("T", t.as_str()),
        ("D", d.as_str()),
        ("P", p.as_str()),
        ("PY", &format!("{py} -S")),
        ("PATH", "/usr/bin:/bin"),
    ] {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.push("--".into());
    args.extend(runner("/bin/sh", py));
    args.push(attempt.script.into());
    args.push(LOOK.into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    shim();
    let out = run(&mut home.command(&argv));
    let (said, look) = split(&out);
    let said = neutral(&said, &t, &d);
    let after = lower_state(&data);
    Run {
        said,
        look,
        out,
        lower_before: before,
        lower_after: after,
    }
}

/// LOOK natively on untouched files: what a capsule that may not write must show.
fn untouched_look(probe: &Path) -> String {
    native(&a('-', "nothing", "true"), probe).1
}

fn check_lower(c: &mut Checks, label: &str, run: &Run) {
    if let Some(diff) = run
        .lower_after
        .0
        .differences(&run.lower_before.0, &format!("{label}: the lower files"))
    {
        c.check(false, || diff);
    }
    c.check(run.lower_after.1 == run.lower_before.1, || {
        format!(
            "{label}: the lower target's inode flags changed: {:?} -> {:?}",
            run.lower_before.1, run.lower_after.1
        )
    });
}

/// The attempts that apply here (inode flags need a file system that has them).
fn attempts() -> Vec<&'static Attempt> {
    let flags = has_inode_flags(&std::env::temp_dir());
    if !flags {
        eprintln!(
            "note: {} keeps no inode flags; chattr attempts skipped",
            std::env::temp_dir().display()
        );
    }
    ATTEMPTS.iter().filter(|a| flags || !a.flags).collect()
}

/// Every attempt, in a capsule of `kind`, against the native run.
fn differential(kinds: &[Kind]) {
    let probe = compile_c("fs_escape");
    let mut c = Checks::new(format!("containment in {kinds:?} capsules"));
    for attempt in attempts() {
        let (said, look) = native(attempt, &probe);
        for &kind in kinds {
            let label = format!("{}:{} ({kind:?})", attempt.class, attempt.name);
            let run = in_capsule(kind, attempt, &probe);
            check_lower(&mut c, &label, &run);
            c.check(run.said == said, || {
                format!(
                    "{label}: the attempt saw something else than natively\n--- native ---\n{said}--- capsule ---\n{}\n{}",
                    run.said,
                    stderr(&run.out)
                )
            });
            c.check(run.look == look, || {
                format!(
                    "{label}: a later process of the capsule sees something else than natively\n--- native ---\n{look}--- capsule ---\n{}\n{}",
                    run.look,
                    stderr(&run.out)
                )
            });
        }
    }
    c.finish();
}

#[test]
fn attempts_in_a_root_capsule_change_only_the_capsule() {
    differential(&[Kind::Root]);
}

#[test]
fn attempts_over_the_host_root_change_only_the_capsule() {
    differential(&[Kind::Host]);
}

#[test]
fn attempts_in_capsules_of_an_image_leave_its_stored_layer_alone() {
    let probe = compile_c("fs_escape");
    let image = Image::import(&probe);
    let mut c = Checks::new("containment in capsules of an image");
    for (i, attempt) in attempts().into_iter().enumerate() {
        let label = format!("{}:{} (Image)", attempt.class, attempt.name);
        let (said, look) = native(attempt, &probe);
        let (got_said, got_look, out, same) = in_image(&image, &format!("img{i}"), attempt);
        c.check(same, || {
            format!("{label}: the image's stored layer changed")
        });
        c.check(got_said == said, || {
            format!("{label}: the attempt saw something else than natively\n--- native ---\n{said}--- capsule ---\n{got_said}\n{}", stderr(&out))
        });
        c.check(got_look == look, || {
            format!("{label}: a later process of the capsule sees something else than natively\n--- native ---\n{look}--- capsule ---\n{got_look}\n{}", stderr(&out))
        });
    }
    c.finish();
}

#[test]
fn attempts_in_read_only_capsules_and_ro_volumes_change_nothing() {
    let probe = compile_c("fs_escape");
    let untouched = untouched_look(&probe);
    let mut c = Checks::new("containment when nothing may be written");
    for attempt in attempts() {
        for kind in [Kind::ReadOnly, Kind::RoVolume] {
            let label = format!("{}:{} ({kind:?})", attempt.class, attempt.name);
            let run = in_capsule(kind, attempt, &probe);
            check_lower(&mut c, &label, &run);
            c.check(run.look == untouched, || {
                format!(
                    "{label}: the capsule shows a change it may not make\n--- expected ---\n{untouched}--- capsule ---\n{}\nattempt said:\n{}",
                    run.look, run.said
                )
            });
        }
    }
    c.finish();
}

/// A host process (outside any capsule) holding a host file open for writing.
struct HostProcess {
    child: std::process::Child,
    dir: TempDir,
}

impl HostProcess {
    fn start() -> HostProcess {
        let dir = TempDir::new("escape-hostproc");
        fs::write(dir.join("out"), b"host\n").expect("write out");
        fs::write(dir.join("secret"), b"host secret\n").expect("write secret");
        let child = clean_command("/bin/sh")
            .args(["-c", "exec 3>>out; exec sleep 60"])
            .current_dir(dir.path())
            .spawn()
            .expect("start host process");
        std::thread::sleep(Duration::from_millis(200));
        HostProcess { child, dir }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn other_processes_proc_entries_are_refused_and_the_capsules_own_translated() {
    let host = HostProcess::start();
    let hp = host.child.id().to_string();
    let before = Snapshot::of(host.dir.path());
    // Each way into the host process's files, then the capsule's own.
    let script = r#"
for w in fd fd/3 fd/3/ cwd cwd/secret root/etc/hostname exe map_files task/$HP/fd/3 task/$HP/cwd; do
  if cat /proc/$HP/$w >/dev/null 2>&1 || ls /proc/$HP/$w >/dev/null 2>&1; then echo "$w: reached"; else echo "$w: refused"; fi
done
readlink /proc/$HP/cwd >/dev/null 2>&1 && echo "readlink cwd: reached" || echo "readlink cwd: refused"
echo escaped >> /proc/$HP/fd/3 2>/dev/null && echo "append: reached" || echo "append: refused"
chmod 600 /proc/$HP/cwd/out 2>/dev/null && echo "chmod: reached" || echo "chmod: refused"
echo "own cwd: $(readlink /proc/$$/cwd)"
sh -c 'echo "parent cwd: $(readlink /proc/$PPID/cwd)"'
true
"#;
    let expected: String = [
        "fd",
        "fd/3",
        "fd/3/",
        "cwd",
        "cwd/secret",
        "root/etc/hostname",
        "exe",
        "map_files",
    ]
    .iter()
    .map(|w| format!("{w}: refused\n"))
    .chain([
        format!("task/{hp}/fd/3: refused\n"),
        format!("task/{hp}/cwd: refused\n"),
        "readlink cwd: refused\n".to_string(),
        "append: refused\n".to_string(),
        "chmod: refused\n".to_string(),
        "own cwd: /\n".to_string(),
        "parent cwd: /\n".to_string(),
    ])
    .collect();
    let root = TempDir::new("escape-proc-root");
    build_root(root.path(), &compile_c("fs_escape"));
    let mut c = Checks::new("other processes' /proc entries");
    for with_root in [true, false] {
        let home = CapsuleHome::new();
        let mut args = vec!["run", "-w", "/", "-e", "PATH=/usr/bin:/bin"];
        let hp_env = format!("HP={hp}");
        args.extend(["-e", &hp_env]);
        if with_root {
            args.extend(["--root", root.str()]);
        }
        args.extend(["--", "/bin/bash", "-c", script]);
        shim();
        let out = run(&mut home.command(&args));
        let label = if with_root { "--root" } else { "host root" };
        let text = stdout(&out).replace(&format!("/proc/{hp}"), "/proc/$HP");
        c.check(text == expected, || {
            format!("{label}: expected\n{expected}got\n{text}\n{}", stderr(&out))
        });
    }
    if let Some(diff) =
        Snapshot::of(host.dir.path()).differences(&before, "the host process's directory")
    {
        c.check(false, || diff);
    }
    c.finish();
}

#[test]
fn the_probe_reaches_the_lower_file_natively() {
    // Every attempt of the probe does change the file natively (so that an unchanged
    // lower layer in a capsule means something).
    let probe = compile_c("fs_escape");
    let untouched = untouched_look(&probe);
    for attempt in attempts() {
        let (_, look) = native(attempt, &probe);
        assert_ne!(
            look, untouched,
            "{}: changes nothing even natively",
            attempt.name
        );
    }
}
