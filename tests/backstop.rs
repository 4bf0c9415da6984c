//! Programs the preload shim cannot reach — statically linked busybox (Debian's
//! busybox-static), a C program built with `cc -static` that makes its system calls with
//! the `syscall` instruction itself, a Go program built with CGO_ENABLED=0 — in capsules
//! started by `capsule run`, on a small root of their own and over the host's `/`: each
//! reports the capsule's host name, user (also fake root) and clock, sees the capsule's
//! files, and what it changes lands in the capsule's private upper layer, the lower
//! layer staying unchanged byte for byte and other capsules of the same root not seeing
//! it. Also: busybox's file operations and refusals compared line for line with a
//! chroot of a copy of the root; exec between static and dynamic programs (bash,
//! busybox sh, env -i, posix_spawn, Go's os/exec), and of a root's own programs by
//! their capsule paths; 8 static plus 8 Go programs in 16 capsules at once; two static
//! Go servers on the same port in two capsules, each reached from the host at the port
//! its capsule publishes, and static clients reaching them by
//! capsule name (the loader writes the peers into the capsule's /etc/hosts); a fake
//! root's clock, identity and host name changes seen by static and dynamic programs
//! started afterwards; unix socket addresses; and `--backstop all`, which gives
//! glibc programs the capsule through the backstop alone.
//!
//! Every program here is checked to be static (no PT_INTERP) before it is used, so that
//! none of these tests can pass through the preload path by accident. Shell scripts that
//! change files refuse to run (status 99) unless the program sees the capsule (the
//! root's marker file, or the capsule's host name over the host's `/`); the host paths
//! written over the host's `/` are unique and checked natively afterwards.

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use fs_support::{exists, mode_of, names_in, read_text, HostPaths, Snapshot};

/// Debian's busybox-static.
const BUSYBOX: &str = "/usr/bin/busybox";

/// The capsule clock of these tests: far from now, early in its day.
const TIME_AT: &str = "2031-05-06T07:08:09Z";
const TIME_AT_DATE: &str = "2031-05-06";

/// The unprivileged user of the test roots (not in the host's /etc/passwd).
const APP_USER: &str = "capsuleapp";
const APP_UID: u32 = 4321;

/// The content of the test roots' `/etc/marker`, checked by every script that writes.
const MARKER: &str = "backstop-root";
const GUARD: &str = "[ \"$(cat /etc/marker)\" = backstop-root ] || \
     { echo 'REFUSED: not on the test root' >&2; exit 99; }; set -e; ";

/// The first line of a script that writes over the host's `/`: refuse to run (status
/// 99) unless `hostname_cmd` prints the capsule's host name `name`; then `set -e`.
fn name_guard(hostname_cmd: &str, name: &str) -> String {
    format!(
        "[ \"$({hostname_cmd})\" = {name} ] || \
         {{ echo 'REFUSED: not in the capsule' >&2; exit 99; }}; set -e; "
    )
}

/// Whether the ELF executable at `path` has no program interpreter (no PT_INTERP):
/// the kernel starts it directly, no ld.so, no LD_PRELOAD.
fn is_static(path: &Path) -> bool {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        bytes.len() > 64 && bytes[..4] == *b"\x7fELF" && bytes[4] == 2,
        "{} is not a 64-bit ELF file",
        path.display()
    );
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    !(0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes")) == PT_INTERP
    })
}

#[track_caller]
fn assert_static(path: &Path) {
    assert!(
        is_static(path),
        "{} is dynamically linked: it would not test the backstop",
        path.display()
    );
}

/// Debian's static busybox, checked to be static.
fn busybox() -> PathBuf {
    let path = PathBuf::from(BUSYBOX);
    assert!(
        path.is_file(),
        "{BUSYBOX} is missing: install Debian's busybox-static"
    );
    assert_static(&path);
    path
}

/// `c-tests/NAME.c` built with `cc -static` as `NAME-static` (see `build_static`).
fn cc_static(cell: &'static OnceLock<PathBuf>, name: &str) -> PathBuf {
    build_static(cell, &format!("{name}-static"), |out| {
        let mut cc = Command::new("cc");
        cc.args(["-static", "-O1", "-Wall", "-Werror", "-o"])
            .arg(out)
            .arg(workspace_root().join(format!("c-tests/{name}.c")));
        cc
    })
}

/// Builds `name` into `<target>/c-tests/` once per test process: `compile(out)` is the
/// command writing it to `out` (a private temporary name, renamed into place: test
/// binaries may build at the same time). Asserts that the result is static.
fn build_static(
    cell: &'static OnceLock<PathBuf>,
    name: &str,
    compile: impl FnOnce(&Path) -> Command,
) -> PathBuf {
    cell.get_or_init(|| {
        let dir = bin_dir().join("c-tests");
        fs::create_dir_all(&dir).expect("c-tests output directory");
        let target = dir.join(name);
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut cmd = compile(&temp);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&temp, &target).expect("move the build into place");
        assert_static(&target);
        target
    })
    .clone()
}

/// `c-tests/raw_syscalls.c` built with `cc -static`.
fn raw_probe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    cc_static(&BUILT, "raw_syscalls")
}

/// `c-tests/unix_addr.c` built with `cc -static`.
fn unix_addr_static() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    cc_static(&BUILT, "unix_addr")
}

/// `c-tests/block_recv.c` built with `cc -static`.
fn block_recv_static() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    cc_static(&BUILT, "block_recv")
}

/// `c-tests/go/probe` built with `CGO_ENABLED=0 go build` (Debian's golang-go, standard
/// library only).
fn go_probe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    build_static(&BUILT, "go-probe", |out| go_build(out, "probe"))
}

/// `go build` of `c-tests/go/PROGRAM/main.go` into `out`, with CGO_ENABLED=0, offline,
/// the caches in a temporary directory that lives as long as the test process.
fn go_build(out: &Path, program: &str) -> Command {
    static SCRATCH: OnceLock<TempDir> = OnceLock::new();
    let scratch = SCRATCH.get_or_init(|| TempDir::new("go-build"));
    let mut go = clean_command("go");
    go.args(["build", "-o"])
        .arg(out)
        .arg(workspace_root().join(format!("c-tests/go/{program}/main.go")))
        .env("CGO_ENABLED", "0")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOCACHE", scratch.join("cache"))
        .env("GOPATH", scratch.join("gopath"))
        .env("HOME", scratch.path());
    go
}

/// `c-tests/go/server` built like go_probe.
fn go_server() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    build_static(&BUILT, "go-server", |out| go_build(out, "server"))
}

/// `c-tests/go/dial` built like go_probe.
fn go_dial() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    build_static(&BUILT, "go-dial", |out| go_build(out, "dial"))
}

/// `c-tests/go/unix` built like go_probe.
fn go_unix() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    build_static(&BUILT, "go-unix", |out| go_build(out, "unix"))
}

/// The busybox applets the scripts on a test root use, as links in its `/bin` (Debian's
/// busybox sh runs an applet only when it finds it in PATH).
const APPLETS: &[&str] = &[
    "sh", "cat", "ls", "rm", "mkdir", "mv", "chmod", "ln", "truncate", "realpath", "stat",
    "readlink", "hostname", "id", "test", "date", "uname", "pwd", "touch", "chown", "rmdir",
    "find", "tr", "sort",
];

/// A small root for static programs: `/bin/busybox` (and the APPLETS linking to it),
/// the programs given, `/etc/passwd` and `/etc/group` with root and APP_USER,
/// `/etc/marker`, `/etc/note`, `/etc/old`, `/etc/link` (-> note), `/etc/abs`
/// (-> /etc/note), `/data/a`, `/data/b`, `/tmp`; and a snapshot of it taken when built.
struct Root {
    dir: TempDir,
    before: Snapshot,
}

impl Root {
    fn new(programs: &[(&str, &Path)]) -> Root {
        let dir = TempDir::new("backstop-root");
        let top = dir.path();
        for sub in ["bin", "etc", "data", "tmp"] {
            fs::create_dir_all(top.join(sub)).expect("root directory");
        }
        fs::set_permissions(top.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::copy(busybox(), top.join("bin/busybox")).expect("copy busybox");
        for applet in APPLETS {
            symlink("busybox", top.join("bin").join(applet)).unwrap();
        }
        for (name, program) in programs {
            fs::copy(program, top.join("bin").join(name)).expect("copy a program");
        }
        let files = [
            (
                "etc/passwd",
                format!(
                    "root:x:0:0:root:/root:/bin/sh\n\
                     {APP_USER}:x:{APP_UID}:{APP_UID}::/tmp:/bin/sh\n"
                ),
            ),
            ("etc/group", format!("root:x:0:\n{APP_USER}:x:{APP_UID}:\n")),
            ("etc/marker", format!("{MARKER}\n")),
            ("etc/note", "lower note\n".to_string()),
            ("etc/old", "old\n".to_string()),
            ("data/a", "a\n".to_string()),
            ("data/b", "b\n".to_string()),
        ];
        for (path, text) in files {
            fs::write(top.join(path), text).expect("root file");
        }
        // A relative and an absolute symbolic link: both resolve inside the root.
        symlink("note", top.join("etc/link")).unwrap();
        symlink("/etc/note", top.join("etc/abs")).unwrap();
        let before = Snapshot::of(top);
        Root { dir, before }
    }

    fn str(&self) -> &str {
        self.dir.str()
    }

    #[track_caller]
    fn assert_unchanged(&self) {
        Snapshot::of(self.dir.path()).assert_same(&self.before, "the capsule's lower root");
    }
}

/// A capsule started by `capsule run` (own root or the host's `/`), with its own
/// `$CAPSULE_HOME`; every run continues with the same upper layer.
struct Capsule {
    home: CapsuleHome,
    name: String,
    flags: Vec<String>,
}

impl Capsule {
    fn new(name: &str, root: Option<&Root>, flags: &[&str]) -> Capsule {
        let mut all: Vec<String> = Vec::new();
        if let Some(root) = root {
            all.extend(["--root", root.str(), "-e", "PATH=/bin"].map(str::to_string));
        }
        all.extend(flags.iter().map(|f| f.to_string()));
        Capsule {
            home: CapsuleHome::new(),
            name: name.to_string(),
            flags: all,
        }
    }

    fn args<'a>(&'a self, prog: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut full = vec!["run", "--name", &self.name];
        full.extend(self.flags.iter().map(String::as_str));
        full.push("--");
        full.push(prog);
        full.extend_from_slice(args);
        full
    }

    fn command(&self, prog: &str, args: &[&str]) -> Command {
        shim();
        self.home.command(&self.args(prog, args))
    }

    /// The same, started as the real unprivileged user NOBODY.
    fn command_as_nobody(&self, nobody: &mut AsNobody, prog: &str, args: &[&str]) -> Command {
        nobody.capsule_command(&self.home, &self.args(prog, args))
    }

    fn run(&self, prog: &str, args: &[&str]) -> Output {
        run(&mut self.command(prog, args))
    }

    /// Runs `prog args` and returns its stdout, asserting that it succeeded.
    #[track_caller]
    fn ok(&self, prog: &str, args: &[&str]) -> String {
        let out = self.run(prog, args);
        success(&out, &format!("capsule {}: {prog} {args:?}", self.name))
    }

    /// The upper layer's copy of capsule path `path`.
    fn up(&self, path: &str) -> PathBuf {
        self.home
            .path()
            .join("capsules")
            .join(&self.name)
            .join("upper")
            .join(path.trim_start_matches('/'))
    }
}

/// Collects the mismatches of one test, to report them all at once.
struct Expect {
    what: String,
    failures: Vec<String>,
}

impl Expect {
    fn new(what: &str) -> Expect {
        Expect {
            what: what.to_string(),
            failures: Vec::new(),
        }
    }

    fn eq(&mut self, label: &str, got: impl AsRef<str>, want: impl AsRef<str>) {
        let (got, want) = (got.as_ref(), want.as_ref());
        if got != want {
            self.failures
                .push(format!("{label}: expected {want:?}, got {got:?}"));
        }
    }

    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(msg());
        }
    }

    /// The output of `out` compared with `want` (a failed run is a mismatch too).
    fn output(&mut self, label: &str, out: &Output, want: &str) {
        if out.status.success() {
            self.eq(label, stdout(out), want);
        } else {
            self.failures.push(format!("{label}: {}", describe(out)));
        }
    }

    /// Every `KEY=VALUE` of `want` among the lines `out` printed, then OK.
    fn keys(&mut self, label: &str, out: &Output, want: &[(&str, String)]) {
        let text = stdout(out);
        let seen = key_values(&text);
        for (key, value) in want {
            match seen.get(*key) {
                Some(got) if got == value => {}
                got => self
                    .failures
                    .push(format!("{label}: {key}: expected {value:?}, got {got:?}")),
            }
        }
        self.check(
            out.status.success() && text.lines().last() == Some("OK"),
            || format!("{label}: did not finish with OK\n{}", describe(out)),
        );
    }

    #[track_caller]
    fn done(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} mismatch(es):\n  {}",
            self.what,
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

/// The names in the host's `/`.
fn host_top_names() -> Vec<String> {
    names_in(Path::new("/"))
}

// ---- busybox-static --------------------------------------------------------------------

#[test]
fn busybox_in_its_own_root_reports_the_capsules_host_name_user_and_clock() {
    let root = Root::new(&[]);
    let c = Capsule::new(
        "bb-ids",
        Some(&root),
        &[
            "--hostname",
            "bb-root",
            "--user",
            APP_USER,
            "--time-at",
            TIME_AT,
        ],
    );
    let bb = "/bin/busybox";
    let mut e = Expect::new("busybox-static in its own root");
    e.output("hostname", &c.run(bb, &["hostname"]), "bb-root\n");
    e.output("uname -n", &c.run(bb, &["uname", "-n"]), "bb-root\n");
    e.output("id -u", &c.run(bb, &["id", "-u"]), &format!("{APP_UID}\n"));
    e.output("id -g", &c.run(bb, &["id", "-g"]), &format!("{APP_UID}\n"));
    let out = c.run(bb, &["id"]);
    let want = format!("uid={APP_UID}({APP_USER}) gid={APP_UID}({APP_USER})");
    e.check(stdout(&out).starts_with(&want), || {
        format!("id: expected {want:?}...\n{}", describe(&out))
    });
    e.output(
        "date",
        &c.run(bb, &["date", "-u", "+%Y-%m-%d"]),
        &format!("{TIME_AT_DATE}\n"),
    );
    e.done();
    root.assert_unchanged();
}

#[test]
fn busybox_fake_root_as_an_unprivileged_user() {
    // The harness starts the capsule as the real user nobody: the kernel says 65534,
    // the capsule says 0.
    let root = Root::new(&[]);
    let mut nobody = AsNobody::new();
    let mut e = Expect::new("busybox-static with --user 0, started as nobody");
    if can_switch_user() {
        let mut native = clean_command(busybox());
        native.args(["id", "-u"]);
        native.uid(NOBODY).gid(NOBODY);
        e.output(
            "native id -u as nobody",
            &run(&mut native),
            &format!("{NOBODY}\n"),
        );
    }
    let own = Capsule::new("bb-root0", Some(&root), &["--user", "0"]);
    let host = Capsule::new("bb-host0", None, &["--user", "0"]);
    for (label, c, prog) in [
        ("own root", &own, "/bin/busybox"),
        ("host /", &host, BUSYBOX),
    ] {
        let out = run(&mut c.command_as_nobody(&mut nobody, prog, &["id", "-u"]));
        e.output(&format!("{label}: id -u"), &out, "0\n");
        let out = run(&mut c.command_as_nobody(&mut nobody, prog, &["id"]));
        e.check(stdout(&out).starts_with("uid=0(root) gid=0(root)"), || {
            format!(
                "{label}: id: expected uid=0(root) gid=0(root)...\n{}",
                describe(&out)
            )
        });
    }
    // The fake root's chown and chmod succeed and are remembered (the kernel would
    // refuse nobody's chown).
    let script = format!(
        "{GUARD}echo x > /tmp/f; chown 123:45 /tmp/f /etc/note; chmod 700 /etc/note; \
         stat -c %u:%g /tmp/f /etc/note; stat -c %a /etc/note"
    );
    let out = run(&mut own.command_as_nobody(&mut nobody, "/bin/busybox", &["sh", "-c", &script]));
    e.output("own root: chown, chmod", &out, "123:45\n123:45\n700\n");
    // sethostname changes the capsule's name only (the kernel would refuse nobody).
    let before = host_name();
    let named = Capsule::new(
        "bb-sethost",
        Some(&root),
        &["--user", "0", "--hostname", "first"],
    );
    let out = run(&mut named.command_as_nobody(
        &mut nobody,
        "/bin/busybox",
        &["sh", "-c", "hostname second && hostname"],
    ));
    e.output("own root: sethostname", &out, "second\n");
    e.eq("the host's name afterwards", host_name(), &before);
    e.done();
    root.assert_unchanged();
}

#[test]
fn busybox_ls_and_cat_see_the_root_not_the_host() {
    let root = Root::new(&[]);
    let c = Capsule::new("bb-ls", Some(&root), &[]);
    let bb = "/bin/busybox";
    let mut e = Expect::new("busybox-static ls and cat in its own root");
    let out = c.run(bb, &["ls", "/"]);
    let listed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    e.check(out.status.success(), || format!("ls /: {}", describe(&out)));
    let own = names_in(root.dir.path());
    for name in &own {
        e.check(listed.contains(name), || {
            format!("ls /: the root's {name:?} is missing from {listed:?}")
        });
    }
    // The kernel's own trees may be shown; nothing else of the host.
    let kernel = ["dev", "proc", "sys", "run"];
    for name in host_top_names() {
        if !own.contains(&name) && !kernel.contains(&name.as_str()) {
            e.check(!listed.contains(&name), || {
                format!("ls /: lists the host's {name:?}: {listed:?}")
            });
        }
    }
    e.output("ls /data", &c.run(bb, &["ls", "/data"]), "a\nb\n");
    e.output(
        "cat /etc/note",
        &c.run(bb, &["cat", "/etc/note"]),
        "lower note\n",
    );
    e.output(
        "cat /etc/passwd",
        &c.run(bb, &["cat", "/etc/passwd"]),
        &read_text(&root.dir.join("etc/passwd")),
    );
    e.output(
        "cd, getcwd, stat",
        &c.run(
            bb,
            &[
                "sh",
                "-c",
                "cd /data && pwd && realpath . && ls && test -f /etc/old && echo yes && \
                 stat -c %s /etc/note",
            ],
        ),
        "/data\n/data\na\nb\nyes\n11\n",
    );
    e.output(
        "symbolic links",
        &c.run(
            bb,
            &[
                "sh",
                "-c",
                "readlink /etc/link; readlink /etc/abs; cat /etc/link /etc/abs",
            ],
        ),
        "note\n/etc/note\nlower note\nlower note\n",
    );
    e.done();
    root.assert_unchanged();
}

/// Every path of the tree at `top` ("/" for `top` itself), sorted.
fn tree_paths(top: &Path) -> Vec<String> {
    fn walk(top: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).expect("read a root directory") {
            let path = entry.expect("a root directory entry").path();
            let rel = path.strip_prefix(top).expect("inside the root");
            out.push(format!("/{}", rel.display()));
            if fs::symlink_metadata(&path)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                walk(top, &path, out);
            }
        }
    }
    let mut out = vec!["/".to_string()];
    walk(top, top, &mut out);
    out.sort();
    out
}

/// File operations, each printed with its exit status and message: refusals (ENOENT,
/// EEXIST, ENOTDIR, EISDIR, ENOTEMPTY), renames of lower files and directories, hard
/// and symbolic links, truncation, permissions, then the tree in a stable order.
const CHANGES: &str =
    "set +e; t() { \"$@\" >/tmp/o 2>&1; echo \"$* -> $? $(tr '\\n' ' ' </tmp/o)\"; }; \
    t cat /nonexistent; t mkdir /etc; t rmdir /data; t rm /data; t rmdir /etc/note; \
    t mv /etc/note /etc/note2; t cat /etc/note2 /etc/note; t ln /etc/note2 /etc/hard; \
    t cat /etc/hard; t mv /data /data2; t ls /data2; t ls /data; t touch /etc/note2/x; \
    t mkdir /etc/note2/x; t ln -s /etc/note2 /etc/sl; t cat /etc/sl; t rm /etc/sl; \
    t cat /etc/sl; t truncate -s 3 /etc/hard; t cat /etc/note2; t chmod 000 /etc/note2; \
    t stat -c %a /etc/note2; t mkdir -p /x/y/z; t rmdir /x/y; t rmdir /x/y/z /x/y /x; \
    t rm -r /data2; t ls /; find /etc /tmp | sort";

#[test]
fn busybox_changes_and_refusals_match_a_chroot() {
    // The same script in a chroot of a copy of the root (the kernel's answers) and in
    // a capsule of the root: the same output, line for line.
    if !can_switch_user() {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let (root, copy) = (Root::new(&[]), Root::new(&[]));
    let script = format!("{GUARD}{CHANGES}");
    let mut chroot = clean_command("/usr/sbin/chroot");
    chroot
        .arg(copy.str())
        .args(["/bin/busybox", "sh", "-c", &script])
        .env("PATH", "/bin");
    let native = success(&run(&mut chroot), "the script in a chroot");
    let c = Capsule::new("bb-chroot", Some(&root), &[]);
    let capsule = c.ok("/bin/busybox", &["sh", "-c", &script]);
    let differ: Vec<String> = native
        .lines()
        .zip(capsule.lines())
        .filter(|(n, c)| n != c)
        .map(|(n, c)| format!("chroot:  {n}\n  capsule: {c}"))
        .collect();
    assert!(
        differ.is_empty() && native.lines().count() == capsule.lines().count(),
        "the capsule differs from the chroot:\n  {}\n--- chroot ---\n{native}--- capsule ---\n{capsule}",
        differ.join("\n  ")
    );
    root.assert_unchanged();
}

#[test]
fn busybox_find_walks_the_whole_root_once() {
    // find keeps the listing of / open while it lists each subdirectory.
    let root = Root::new(&[]);
    let c = Capsule::new("bb-find", Some(&root), &[]);
    let out = c.run("/bin/busybox", &["find", "/"]);
    let mut found: Vec<String> = success(&out, "find /")
        .lines()
        .map(str::to_string)
        .collect();
    found.sort();
    let want = tree_paths(root.dir.path());
    assert!(
        found == want,
        "find / in the capsule:\n  expected {} paths: {want:?}\n  got {}: {found:?}",
        want.len(),
        found.len()
    );
    root.assert_unchanged();
}

#[test]
fn static_programs_exec_static_programs_inside_their_root() {
    // The capsule paths here are shorter than their host paths. busybox runs most
    // applets in-process: these name the program, so it is exec'd.
    let root = Root::new(&[("goprobe", &go_probe())]);
    let c = Capsule::new(
        "bb-exec",
        Some(&root),
        &["--hostname", "exec-root", "--user", APP_USER],
    );
    let mut e = Expect::new("busybox sh running programs of its root by path");
    for (label, script, want) in [
        ("/bin/busybox", "/bin/busybox hostname", "exec-root\n"),
        ("/bin/cat", "/bin/cat /etc/note", "lower note\n"),
        ("relative", "cd /bin && ./busybox id -u", "4321\n"),
        ("exec", "exec /bin/busybox cat /data/a", "a\n"),
    ] {
        e.output(label, &c.run("/bin/busybox", &["sh", "-c", script]), want);
    }
    // Go's os/exec (clone with CLONE_VFORK, then execve in the child).
    let out = c.run(
        "/bin/goprobe",
        &["/etc/note", "/tmp/go", "/data", "/bin/busybox", "hostname"],
    );
    e.keys("Go os/exec", &out, &[("exec", "exec-root".to_string())]);
    // A name shorter than /dev/fd/N, from a process whose memory a vfork child shares.
    let out = c.run(
        "/bin/goprobe",
        &["/etc/note", "/tmp/go", "/data", "/bin/id", "-u"],
    );
    e.keys("Go os/exec /bin/id", &out, &[("exec", APP_UID.to_string())]);
    e.done();
    root.assert_unchanged();
}

#[test]
fn busybox_shell_changes_land_in_the_private_layer() {
    let root = Root::new(&[]);
    let c = Capsule::new("bb-write", Some(&root), &[]);
    let script = format!(
        "{GUARD}echo new > /etc/new; rm /etc/old; mkdir /d; mv /data/b /d/moved; \
         echo more >> /data/a; touch -t 200102030405.06 /data/a; chmod 600 /etc/new; ln -s note /etc/sym; truncate -s 2 /etc/note; \
         ls /etc; ls /d; cat /data/a /d/moved /etc/new /etc/sym; echo"
    );
    let out = c.ok("/bin/busybox", &["sh", "-c", &script]);
    assert_eq!(
        out, "abs\ngroup\nlink\nmarker\nnew\nnote\npasswd\nsym\nmoved\na\nmore\nb\nnew\nlo\n",
        "what the script saw"
    );
    root.assert_unchanged();

    let mut e = Expect::new("the capsule's upper layer");
    for (path, text) in [
        ("/etc/new", "new\n"),
        ("/d/moved", "b\n"),
        ("/data/a", "a\nmore\n"),
        ("/etc/note", "lo"),
    ] {
        let up = c.up(path);
        e.check(exists(&up), || format!("{path}: not in the upper layer"));
        if exists(&up) {
            e.eq(path, read_text(&up), text);
        }
    }
    if exists(&c.up("/etc/new")) {
        e.check(mode_of(&c.up("/etc/new")) == 0o600, || {
            format!(
                "/etc/new: mode {:o} in the upper layer",
                mode_of(&c.up("/etc/new"))
            )
        });
    }
    if exists(&c.up("/data/a")) {
        let mtime = fs::metadata(c.up("/data/a")).map(|m| m.mtime());
        e.check(matches!(mtime, Ok(981_173_106)), || {
            format!("/data/a: mtime {mtime:?} in the upper layer, not 2001-02-03 04:05:06")
        });
    }
    let sym = fs::read_link(c.up("/etc/sym"));
    e.check(sym.as_deref().ok() == Some(Path::new("note")), || {
        format!("/etc/sym in the upper layer: {sym:?}")
    });
    for gone in ["/etc/old", "/data/b"] {
        e.check(!exists(&c.up(gone)), || {
            format!("{gone} is in the upper layer")
        });
    }
    e.done();

    // The same capsule later sees its changes.
    let later = c.ok(
        "/bin/busybox",
        &[
            "sh",
            "-c",
            "cat /etc/new; test -e /etc/old || echo old-gone; ls /data; cat /etc/note; echo",
        ],
    );
    assert_eq!(
        later, "new\nold-gone\na\nlo\n",
        "a later run of the same capsule"
    );

    // Another capsule of the same root sees the root as it is.
    let other = Capsule::new("bb-other", Some(&root), &[]);
    let out = other.ok(
        "/bin/busybox",
        &[
            "sh",
            "-c",
            "cat /etc/old /data/a; ls /etc; ls /data; test -e /d || echo no-d; cat /etc/note",
        ],
    );
    assert_eq!(
        out, "old\na\nabs\ngroup\nlink\nmarker\nnote\nold\npasswd\na\nb\nno-d\nlower note\n",
        "a second capsule of the same root"
    );
    root.assert_unchanged();
}

#[test]
fn busybox_over_the_host_root() {
    let host = HostPaths::new("bb");
    let (etc, var) = (host.etc(), host.var());
    let c = Capsule::new(
        "bb-over-host",
        None,
        &[
            "--hostname",
            "bb-host",
            "--user",
            &APP_UID.to_string(),
            "--time-at",
            TIME_AT,
        ],
    );
    let mut e = Expect::new("busybox-static over the host's /");
    e.output("hostname", &c.run(BUSYBOX, &["hostname"]), "bb-host\n");
    e.output(
        "id -u",
        &c.run(BUSYBOX, &["id", "-u"]),
        &format!("{APP_UID}\n"),
    );
    e.output(
        "date",
        &c.run(BUSYBOX, &["date", "-u", "+%Y-%m-%d"]),
        &format!("{TIME_AT_DATE}\n"),
    );
    // The host's files are the lower layer.
    e.output(
        "cat /etc/debian_version",
        &c.run(BUSYBOX, &["cat", "/etc/debian_version"]),
        &read_text(Path::new("/etc/debian_version")),
    );
    e.done();

    // Every command is busybox's (the host's PATH would find dynamic coreutils).
    let bb = BUSYBOX;
    let script = format!(
        "{}echo one > {etc}; {bb} mkdir {var}; echo two > {var}/f; {bb} cat {etc} {var}/f; \
         {bb} ls {var}",
        name_guard(&format!("{bb} hostname"), "bb-host")
    );
    let out = c.run(BUSYBOX, &["sh", "-c", &script]);
    host.check();
    assert_eq!(success(&out, "busybox sh writing"), "one\ntwo\nf\n");
    assert_eq!(read_text(&c.up(etc)), "one\n", "upper copy of {etc}");
    assert_eq!(read_text(&c.up(&format!("{var}/f"))), "two\n");

    // Another capsule over the host's / does not see them.
    let other = Capsule::new("bb-over-host-2", None, &[]);
    let out = other.ok(
        BUSYBOX,
        &[
            "sh",
            "-c",
            &format!("test -e {etc} || echo absent; test -e {var} || echo absent"),
        ],
    );
    assert_eq!(
        out, "absent\nabsent\n",
        "a second capsule over the host's /"
    );
    host.check();
}

// ---- a static C program making raw system calls ----------------------------------------

#[test]
fn raw_syscalls_of_a_static_c_program() {
    let probe = raw_probe();

    // Natively, on a copy of the tree, with the host's values: the probe works.
    let native = Root::new(&[]);
    let out = run_native(&probe, &[native.str()]);
    let mut e = Expect::new("raw_syscalls natively");
    let today = stdout(&run_native("date", &["-u", "+%Y-%m-%d"]));
    e.keys(
        "native",
        &out,
        &[
            ("uid", host_uid().to_string()),
            ("nodename", host_name()),
            ("note", "lower note".into()),
            ("old_stat", "-2".into()),
            ("data", "a,created".into()),
            ("rawdir", "b".into()),
            ("vdso_date", today.trim().to_string()),
        ],
    );
    e.done();

    let root = Root::new(&[("raw_syscalls", &probe)]);
    let c = Capsule::new(
        "raw",
        Some(&root),
        &[
            "--hostname",
            "raw-host",
            "--user",
            APP_USER,
            "--time-at",
            TIME_AT,
        ],
    );
    let out = c.run("/bin/raw_syscalls", &[""]);
    let mut e = Expect::new("raw_syscalls in a capsule");
    let id = APP_UID.to_string();
    let release = stdout(&run_native("uname", &["-r"]));
    e.keys(
        "capsule",
        &out,
        &[
            ("uid", id.clone()),
            ("euid", id.clone()),
            ("gid", id),
            ("nodename", "raw-host".into()),
            ("sysname", "Linux".into()),
            ("release", release.trim().to_string()),
            ("raw_date", TIME_AT_DATE.into()),
            ("vdso_date", TIME_AT_DATE.into()),
            ("gettimeofday_date", TIME_AT_DATE.into()),
            ("time_date", TIME_AT_DATE.into()),
            ("note", "lower note".into()),
            ("note_size", "11".into()),
            ("created_size", "10".into()),
            ("created_mode", "640".into()),
            ("old_stat", "-2".into()),
            ("data", "a,created".into()),
            ("rawdir", "b".into()),
        ],
    );
    for (path, text) in [("/data/created", "raw bytes\n"), ("/rawdir/b", "b\n")] {
        let up = c.up(path);
        e.check(exists(&up) && read_text(&up) == text, || {
            format!(
                "{path}: expected {text:?} in the upper layer ({})",
                up.display()
            )
        });
    }
    e.check(
        exists(&c.up("/data/created")) && mode_of(&c.up("/data/created")) == 0o640,
        || "/data/created: not mode 640 in the upper layer".to_string(),
    );
    e.check(!exists(&c.up("/etc/old")), || {
        "/etc/old is in the upper layer".to_string()
    });
    e.done();
    root.assert_unchanged();
}

// ---- a Go program ----------------------------------------------------------------------

#[test]
fn go_program_in_its_own_root() {
    let probe = go_probe();
    let root = Root::new(&[("goprobe", &probe)]);
    let c = Capsule::new(
        "go",
        Some(&root),
        &[
            "--hostname",
            "go-host",
            "--user",
            APP_USER,
            "--time-at",
            TIME_AT,
        ],
    );
    let out = c.run("/bin/goprobe", &["/etc/note", "/data/go.txt", "/data"]);
    let mut e = Expect::new("the Go probe in its own root");
    e.keys(
        "capsule",
        &out,
        &[
            ("hostname", "go-host".into()),
            ("uid", APP_UID.to_string()),
            ("euid", APP_UID.to_string()),
            ("year", TIME_AT_DATE[..4].to_string()),
            ("date", TIME_AT_DATE.into()),
            ("note", "lower note".into()),
            ("readback", "go wrote".into()),
            ("size", "9".into()),
            ("list", "a,b,go.txt".into()),
        ],
    );
    let up = c.up("/data/go.txt");
    e.check(exists(&up) && read_text(&up) == "go wrote\n", || {
        format!("/data/go.txt: not in the upper layer ({})", up.display())
    });
    e.done();
    root.assert_unchanged();

    // A second capsule of the root does not see the file.
    let other = Capsule::new("go-2", Some(&root), &[]);
    let out = other.ok("/bin/busybox", &["ls", "/data"]);
    assert_eq!(out, "a\nb\n", "a second capsule of the same root");
}

#[test]
fn go_program_over_the_host_root() {
    let probe = go_probe();
    let host = HostPaths::new("go");
    let etc = host.etc();
    let file_name = Path::new(etc).file_name().expect("name").to_string_lossy();
    let c = Capsule::new(
        "go-over-host",
        None,
        &["--hostname", "go-host", "--user", "0", "--time-at", TIME_AT],
    );
    let probe = probe.to_str().expect("utf-8 path");
    // It also runs busybox-static (os/exec: clone, then execve in the child).
    let out = c.run(
        probe,
        &["/etc/debian_version", etc, "/etc", BUSYBOX, "hostname"],
    );
    host.check();
    let mut e = Expect::new("the Go probe over the host's /");
    let text = stdout(&out);
    let seen = key_values(&text);
    e.keys(
        "capsule",
        &out,
        &[
            ("hostname", "go-host".into()),
            ("uid", "0".into()),
            ("date", TIME_AT_DATE.into()),
            (
                "note",
                read_text(Path::new("/etc/debian_version"))
                    .trim()
                    .to_string(),
            ),
            ("readback", "go wrote".into()),
            ("exec", "go-host".into()),
        ],
    );
    let list = seen.get("list").cloned().unwrap_or_default();
    let names: Vec<&str> = list.split(',').collect();
    e.check(
        names.contains(&file_name.as_ref()) && names.contains(&"passwd"),
        || format!("list of /etc lacks {file_name} or passwd: {list}"),
    );
    e.check(
        exists(&c.up(etc)) && read_text(&c.up(etc)) == "go wrote\n",
        || format!("{etc}: not in the upper layer"),
    );
    e.done();
}

// ---- exec between static and dynamic programs ------------------------------------------

#[test]
fn exec_from_dynamic_to_static_and_back() {
    let host = HostPaths::new("exec");
    let etc = host.etc();
    for dynamic in [
        "/usr/bin/hostname",
        "/usr/bin/cat",
        "/usr/bin/id",
        "/bin/bash",
    ] {
        assert!(
            !is_static(Path::new(dynamic)),
            "{dynamic} is static: it would not test the crossing"
        );
    }
    busybox();
    let c = Capsule::new(
        "exec-cross",
        None,
        &["--hostname", "x-host", "--user", &APP_UID.to_string()],
    );
    let mut e = Expect::new("exec between static and dynamic programs");
    let uid = APP_UID.to_string();
    e.output(
        "bash -c busybox",
        &c.run(
            "/bin/bash",
            &["-c", &format!("{BUSYBOX} hostname; {BUSYBOX} id -u")],
        ),
        &format!("x-host\n{uid}\n"),
    );
    let script = format!(
        "{}echo from-static > {etc}; /usr/bin/hostname; /usr/bin/id -u; /usr/bin/cat {etc}",
        name_guard(&format!("{BUSYBOX} hostname"), "x-host")
    );
    let out = c.run(BUSYBOX, &["sh", "-c", &script]);
    host.check();
    e.output(
        "busybox sh -c dynamic",
        &out,
        &format!("x-host\n{uid}\nfrom-static\n"),
    );
    e.check(
        exists(&c.up(etc)) && read_text(&c.up(etc)) == "from-static\n",
        || format!("{etc}: not in the upper layer"),
    );
    // Three levels: dynamic, static, dynamic.
    e.output(
        "bash -c busybox sh -c hostname",
        &c.run(
            "/bin/bash",
            &[
                "-c",
                &format!("{BUSYBOX} sh -c '/usr/bin/hostname; cat {etc}'"),
            ],
        ),
        "x-host\nfrom-static\n",
    );
    // A static program exec'd by a static one, with a cleared environment, and
    // posix_spawn'ed by a dynamic one.
    e.output(
        "busybox sh -c busybox",
        &c.run(
            BUSYBOX,
            &[
                "sh",
                "-c",
                &format!("{BUSYBOX} hostname; {BUSYBOX} cat {etc}"),
            ],
        ),
        "x-host\nfrom-static\n",
    );
    e.output(
        "env -i busybox",
        &c.run(
            "/usr/bin/env",
            &[
                "-i",
                BUSYBOX,
                "sh",
                "-c",
                &format!("{BUSYBOX} hostname; {BUSYBOX} id -u"),
            ],
        ),
        &format!("x-host\n{uid}\n"),
    );
    let spawn = format!(
        "import os, sys\n\
         pid = os.posix_spawn('{BUSYBOX}', ['busybox', 'cat', '{etc}'], {{}})\n\
         sys.exit(os.waitpid(pid, 0)[1])"
    );
    e.output(
        "python posix_spawn busybox",
        &c.run(&python3().to_string_lossy(), &["-c", &spawn]),
        "from-static\n",
    );
    e.done();
    host.check();
}

// ---- many at once ----------------------------------------------------------------------

#[test]
fn eight_busybox_and_eight_go_capsules_at_once() {
    const EACH: usize = 8;
    const ROUNDS: usize = 30;
    let root = Root::new(&[("goprobe", &go_probe())]);
    let mut capsules = Vec::new();
    let mut running = Vec::new();
    for i in 0..EACH {
        let name = format!("bb-{i}");
        let uid = (3000 + i).to_string();
        let c = Capsule::new(&name, Some(&root), &["--hostname", &name, "--user", &uid]);
        // Each round asks for the host name, the user and the capsule's own file.
        let script = format!(
            "{GUARD}echo {name} > /etc/mine; i=0; while [ $i -lt {ROUNDS} ]; do \
             hostname; id -u; cat /etc/mine; i=$((i+1)); done"
        );
        running.push(spawn(
            &mut c.command("/bin/busybox", &["sh", "-c", &script]),
        ));
        capsules.push((name, uid, c));
    }
    for i in 0..EACH {
        let name = format!("go-{i}");
        let uid = (4000 + i).to_string();
        let c = Capsule::new(&name, Some(&root), &["--hostname", &name, "--user", &uid]);
        let file = format!("/data/{name}");
        running.push(spawn(
            &mut c.command("/bin/goprobe", &["/etc/note", &file, "/data"]),
        ));
        capsules.push((name, uid, c));
    }
    let mut e = Expect::new("16 static capsules at once");
    for ((name, uid, c), process) in capsules.iter().zip(running) {
        let out = process.wait();
        if name.starts_with("bb-") {
            let want = format!("{name}\n{uid}\n{name}\n").repeat(ROUNDS);
            e.output(name, &out, &want);
            e.check(
                exists(&c.up("/etc/mine")) && read_text(&c.up("/etc/mine")) == format!("{name}\n"),
                || format!("{name}: /etc/mine not in its upper layer"),
            );
        } else {
            e.keys(
                name,
                &out,
                &[
                    ("hostname", name.clone()),
                    ("uid", uid.clone()),
                    ("note", "lower note".into()),
                    ("readback", "go wrote".into()),
                    // Only its own file: not the other Go capsules'.
                    ("list", format!("a,b,{name}")),
                ],
            );
        }
    }
    e.done();
    root.assert_unchanged();
}

// ---- ports ---------------------------------------------------------------------------

/// A TCP port free on the host right now (bound to port 0, then closed).
fn free_tcp_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free TCP port")
        .port()
}

/// What 127.0.0.1:`port` answers, retried until `server` has exited or a minute has
/// passed (a server on a loaded machine takes its time to bind).
fn answer_of(port: u16, server: &mut Running) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !server.has_exited() {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .ok()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).ok()?;
            return Some(answer);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn go_servers_on_one_port_in_two_capsules_behind_their_published_ports() {
    let root = Root::new(&[("goserver", &go_server())]);
    let first = free_tcp_port();
    let second = loop {
        let port = free_tcp_port();
        if port != first {
            break port;
        }
    };
    let mut e = Expect::new("two static Go servers on capsule port 8000");
    let capsules: Vec<(String, u16, Capsule)> = [("srv-a", first), ("srv-b", second)]
        .into_iter()
        .map(|(name, host_port)| {
            let publish = format!("{host_port}:8000");
            let c = Capsule::new(name, Some(&root), &["--hostname", name, "-p", &publish]);
            (name.to_string(), host_port, c)
        })
        .collect();
    let mut servers: Vec<Running> = capsules
        .iter()
        .map(|(_, _, c)| spawn(&mut c.command("/bin/goserver", &["8000"])))
        .collect();
    for ((name, host_port, _), server) in capsules.iter().zip(servers.iter_mut()) {
        let answer = answer_of(*host_port, server);
        e.check(answer.as_deref() == Some(&format!("{name}\n")), || {
            format!("{name}: host port {host_port} answered {answer:?}, not {name:?}")
        });
    }
    for ((name, _, _), server) in capsules.iter().zip(servers) {
        let out = server.wait();
        e.keys(
            name,
            &out,
            &[
                // getsockname reports the capsule's port, not the host's.
                ("addr", "[::]:8000".to_string()),
                // A connect to the capsule's own port reaches its own listener.
                ("self", name.clone()),
            ],
        );
    }
    e.done();
    root.assert_unchanged();
}

#[test]
fn static_clients_reach_static_servers_by_capsule_name() {
    // capsule up: two replicas of the static Go server on port 8000 (srv-1, srv-2),
    // and three clients reaching them by name: the static Go dialer, busybox-static's
    // nc, and Python (dynamic, the preload path) for comparison.
    let (server, dial) = (go_server(), go_dial());
    busybox();
    let dir = TempDir::new("backstop-up");
    let nc = "for n in 1 2; do i=0; a=; \
              while [ -z \"$a\" ] && [ $i -lt 50 ]; do i=$((i+1)); \
              a=$(/usr/bin/busybox nc srv-$n 8000 2>/dev/null) || /usr/bin/busybox sleep 0.1; \
              done; echo srv-$n=${a:-unreachable}; done";
    let python = "import socket, time\n\
                  for n in (1, 2):\n\
                  \x20   for i in range(100):\n\
                  \x20       try:\n\
                  \x20           s = socket.create_connection((f'srv-{n}', 8000), timeout=5)\n\
                  \x20           print(f'srv-{n}=' + s.makefile().readline().strip(), flush=True)\n\
                  \x20           break\n\
                  \x20       except OSError:\n\
                  \x20           time.sleep(0.2)\n";
    let manifest = format!(
        "[capsule.srv]\nreplicas = 2\ncommand = [{server:?}, \"8000\", \"3\"]\n\n\
         [capsule.godial]\ndepends_on = [\"srv\"]\n\
         command = [{dial:?}, \"srv-1:8000\", \"srv-2:8000\"]\n\n\
         [capsule.bbnc]\ndepends_on = [\"srv\"]\n\
         command = [\"{BUSYBOX}\", \"sh\", \"-c\", {nc:?}]\n\n\
         [capsule.py]\ndepends_on = [\"srv\"]\ncommand = [{py:?}, \"-c\", {python:?}]\n",
        py = python3(),
    );
    fs::write(dir.join("capsule.toml"), &manifest).unwrap();
    let home = CapsuleHome::new();
    shim();
    let mut up = home.command(&["up"]);
    up.current_dir(dir.path());
    let out = run(&mut up);
    let text = stdout(&out);
    let said = |who: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split_once(" | "))
            .filter(|(name, _)| name.trim() == who)
            .map(|(_, line)| line.to_string())
            .collect()
    };
    let mut e = Expect::new("clients reaching static servers by name (capsule up)");
    for client in ["godial", "bbnc", "py"] {
        let lines = said(client);
        for n in [1, 2] {
            let want = format!("srv-{n}=srv-{n}");
            e.check(lines.contains(&want), || {
                format!("{client}: no {want:?} in {lines:?}")
            });
        }
    }
    e.check(out.status.success(), || {
        format!("capsule up: {}", describe(&out))
    });
    e.done();
}

// ---- setting the capsule's clock ---------------------------------------------------

#[test]
fn fake_root_sets_the_capsule_clock_for_static_and_dynamic_programs_alike() {
    // As the real user nobody (the kernel would refuse to set its clock) with
    // --user 0, over the host's /: a static or a dynamic shell runs a static or a
    // dynamic `date -s`, then a static and a dynamic `date`. Without a clock setting
    // (no vDSO patched at the start) and with one.
    busybox();
    let mut nobody = AsNobody::new();
    let mut e = Expect::new("date -s by a fake root");
    let bb_date = format!("{BUSYBOX} date");
    let read = format!("{bb_date} -u +%F; /usr/bin/date -u +%F");
    for (label, flags) in [
        ("", vec![]),
        (", --time-offset -1d", vec!["--time-offset", "-1d"]),
        (", --backstop all", vec!["--backstop", "all"]),
    ] {
        let mut all = vec!["--user", "0"];
        all.extend(flags.iter().copied());
        for shell in [BUSYBOX, "/bin/sh"] {
            for setter in [bb_date.as_str(), "/usr/bin/date"] {
                let c = Capsule::new("clock-set", None, &all);
                let script = format!("{setter} -u -s '2035-01-02 03:04:05' >/dev/null && {read}");
                let args: Vec<&str> = if shell == BUSYBOX {
                    vec!["sh", "-c", &script]
                } else {
                    vec!["-c", &script]
                };
                let out = run(&mut c.command_as_nobody(&mut nobody, shell, &args));
                let what = format!("{shell} runs {setter} -s{label}");
                e.output(&what, &out, "2035-01-02\n2035-01-02\n");
            }
        }
    }
    let host = stdout(&run_native("date", &["-u", "+%Y"]));
    e.check(host.trim() != "2035", || {
        "the host's clock moved to 2035".to_string()
    });
    e.done();
}

// ---- identity changes across static and dynamic programs ---------------------------

/// The uid and gid of `user` in the host's /etc/passwd.
fn host_ids_of(user: &str) -> (String, String) {
    let passwd = read_text(Path::new("/etc/passwd"));
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == user)
        .map(|f| (f[2].to_string(), f[3].to_string()))
        .unwrap_or_else(|| panic!("no user {user} in the host's /etc/passwd"))
}

#[test]
fn a_fake_roots_identity_changes_reach_static_and_dynamic_descendants() {
    // As the real user nobody with --user 0 over the host's /: busybox su (static:
    // setgid and setuid served by the supervisor) runs a dynamic shell as daemon,
    // and util-linux setpriv (dynamic: the shim) runs busybox as 1000. Every program
    // started after the change reports the new identity.
    busybox();
    let (uid, gid) = host_ids_of("daemon");
    let mut nobody = AsNobody::new();
    let mut e = Expect::new("identity changes by a fake root");
    let script = format!("{BUSYBOX} id -u; /usr/bin/id -u; {BUSYBOX} id -g; /usr/bin/id -g");
    let want = format!("{uid}\n{uid}\n{gid}\n{gid}\n");
    for (label, all) in [("", false), (", --backstop all", true)] {
        let mut flags = vec!["--user", "0"];
        if all {
            flags.extend(["--backstop", "all"]);
        }
        let c = Capsule::new("ids-change", None, &flags);
        let out = run(&mut c.command_as_nobody(
            &mut nobody,
            BUSYBOX,
            &["su", "-s", "/bin/sh", "daemon", "-c", &script],
        ));
        e.output(&format!("static su{label}, then"), &out, &want);
    }
    let c = Capsule::new("ids-change", None, &["--user", "0"]);
    let out = run(&mut c.command_as_nobody(
        &mut nobody,
        "/usr/bin/setpriv",
        &[
            "--reuid",
            "1000",
            "--regid",
            "1000",
            "--clear-groups",
            "/bin/sh",
            "-c",
            &script,
        ],
    ));
    e.output("dynamic setpriv, then", &out, "1000\n1000\n1000\n1000\n");
    // The same for the host name: busybox hostname NAME (sethostname served by the
    // supervisor), then a static and a dynamic hostname.
    let before = host_name();
    let c = Capsule::new("uts-change", None, &["--user", "0", "--hostname", "first"]);
    let script = format!("{BUSYBOX} hostname second && {BUSYBOX} hostname && /usr/bin/hostname");
    let out = run(&mut c.command_as_nobody(&mut nobody, BUSYBOX, &["sh", "-c", &script]));
    e.output("static sethostname, then", &out, "second\nsecond\n");
    e.eq("the host's name afterwards", host_name(), &before);
    e.done();
}

// ---- unix sockets -----------------------------------------------------------------

#[test]
fn unix_socket_addresses_are_capsule_paths() {
    // A static Go program in its own root binds /tmp/s.sock, connects, accepts:
    // getpeername and the accepted socket's getsockname name /tmp/s.sock, not the
    // host path of the capsule's upper layer; the socket lives in that layer. Python
    // (dynamic) does the same over the host's / for comparison.
    let root = Root::new(&[("gounix", &go_unix())]);
    let c = Capsule::new("unix-go", Some(&root), &[]);
    let out = c.run("/bin/gounix", &["/tmp/s.sock"]);
    let mut e = Expect::new("unix socket addresses");
    let want = |p: &str| {
        ["addr", "peer", "accepted"]
            .map(|k| (k, p.to_string()))
            .into_iter()
            .chain([
                ("got", "hello-unix".to_string()),
                ("socket", "yes".to_string()),
            ])
            .collect::<Vec<_>>()
    };
    e.keys("static Go, own root", &out, &want("/tmp/s.sock"));
    e.check(exists(&c.up("/tmp/s.sock")), || {
        "/tmp/s.sock is not in the upper layer".to_string()
    });
    let host = HostPaths::new("unix");
    let path = format!("{}.sock", host.etc());
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX); s.bind({path:?}); s.listen(1)\n\
         c = socket.socket(socket.AF_UNIX); c.connect({path:?}); a, _ = s.accept()\n\
         a.sendall(b'hello-unix')\n\
         print('addr=' + s.getsockname()); print('peer=' + c.getpeername())\n\
         print('accepted=' + a.getsockname()); print('got=' + c.recv(64).decode())\n\
         import os, stat; print('socket=' + ('yes' if stat.S_ISSOCK(os.stat({path:?}).st_mode) else 'no'))\n\
         print('OK')\n"
    );
    let p = Capsule::new("unix-py", None, &[]);
    let out = p.run(&python3().to_string_lossy(), &["-c", &script]);
    e.keys("dynamic Python, host's /", &out, &want(&path));
    e.check(!exists(Path::new(&path)), || {
        format!("{path} is on the host")
    });
    e.done();
    root.assert_unchanged();
}

/// What `c-tests/unix_addr.c` prints for `MODE SERVER CLIENT` when every address
/// is the capsule path (lengths as the kernel gives them: sun_path's offset, the
/// path, its NUL).
fn unix_addr_wants(mode: &str, server: &str, client: &str) -> Vec<(&'static str, String)> {
    let len = |p: &str| (2 + p.len() + 1).to_string();
    let (s, c) = (server.to_string(), client.to_string());
    match mode {
        "stream" => vec![
            ("peer", s.clone()),
            ("client", c.clone()),
            ("got", "hello".to_string()),
            ("addr", s.clone()),
            ("addr_len", len(server)),
            ("accepted_peer", c),
            ("accepted", s),
            // Room for 4 bytes: the first 4 of the capsule path, the whole length.
            ("short", server[..4].to_string()),
            ("short_len", len(server)),
        ],
        _ => vec![
            ("reply", "pong".to_string()),
            ("from", s),
            ("got", "ping".to_string()),
            ("src", c),
            ("src_len", len(client)),
        ],
    }
}

#[test]
fn unix_sockets_between_processes_show_capsule_paths() {
    // A server process and a client process it forks (which binds its own path
    // after the fork), over a stream socket and over datagrams answered at the
    // source address recvfrom reported: static (the backstop) in its own root and
    // over the host's /, dynamic (the shim) over the host's /. Every address shows
    // the capsule path, and the socket files are in the upper layer only.
    let stat = unix_addr_static();
    let dynamic = compile_c("unix_addr");
    let root = Root::new(&[("unix_addr", &stat)]);
    let mut e = Expect::new("unix sockets between processes");
    let tag = std::process::id();
    let runs = [
        (
            "static, own root",
            Some(&root),
            "/bin/unix_addr".to_string(),
            "/data",
        ),
        (
            "static, host's /",
            None,
            stat.display().to_string(),
            "/var/tmp",
        ),
        (
            "dynamic, host's /",
            None,
            dynamic.display().to_string(),
            "/var/tmp",
        ),
    ];
    for (i, (label, root, program, dir)) in runs.iter().enumerate() {
        let c = Capsule::new(&format!("unix-pair-{i}"), *root, &[]);
        // mmsg: sendmmsg, whose destinations the filter cannot see either.
        for mode in ["stream", "dgram", "mmsg"] {
            let server = format!("{dir}/ua{tag}-{mode}-s");
            let client = format!("{dir}/ua{tag}-{mode}-c");
            let out = c.run(program, &[mode, &server, &client]);
            e.keys(
                &format!("{label}, {mode}"),
                &out,
                &unix_addr_wants(mode, &server, &client),
            );
            for path in [&server, &client] {
                e.check(exists(&c.up(path)), || {
                    format!("{label}, {mode}: {path} is not in the upper layer")
                });
                if root.is_none() {
                    e.check(!exists(Path::new(path)), || {
                        format!("{label}, {mode}: {path} is on the host")
                    });
                }
            }
        }
    }
    e.done();
    root.assert_unchanged();
}

// ---- --backstop all ----------------------------------------------------------------

#[test]
fn backstop_all_gives_dynamic_programs_the_capsule_without_the_shim() {
    // With --backstop all, glibc programs run under the system-call backstop too,
    // without libcapsule.so mapped: bash, coreutils and Python over the host's /.
    let host = HostPaths::new("all");
    let (etc, var) = (host.etc(), host.var());
    let c = Capsule::new(
        "backstop-all",
        None,
        &[
            "--backstop",
            "all",
            "--hostname",
            "all-host",
            "--user",
            &APP_UID.to_string(),
            "--time-at",
            TIME_AT,
        ],
    );
    let script = format!(
        "{}grep -c libcapsule /proc/self/maps || true; id -u; date -u +%F; \
         echo one > {etc}; mkdir {var}; echo two > {var}/f; cat {etc} {var}/f; ls {var}; \
         python3 -c 'import socket, os, time; print(socket.gethostname(), os.getuid(), time.gmtime().tm_year)'",
        name_guard("hostname", "all-host")
    );
    let out = c.run("/bin/bash", &["-c", &script]);
    host.check();
    let want = format!(
        "0\n{APP_UID}\n{TIME_AT_DATE}\none\ntwo\nf\nall-host {APP_UID} {}\n",
        &TIME_AT_DATE[..4]
    );
    assert_eq!(success(&out, "bash under --backstop all"), want);
    assert_eq!(read_text(&c.up(etc)), "one\n", "upper copy of {etc}");
    assert_eq!(read_text(&c.up(&format!("{var}/f"))), "two\n");
}

#[test]
fn calls_blocked_in_the_supervisor_do_not_stop_the_others() {
    // Eight static processes wait in recvfrom (which the supervisor serves, since
    // they ask for the sender's address) at once, more than the supervisor's
    // threads at start: their parent's uname must still be answered. Without new
    // spare threads it waits forever, and timeout ends it with 124.
    let program = block_recv_static();
    let c = Capsule::new("blocked", None, &["--hostname", "not-stuck"]);
    let out = c.run("/usr/bin/timeout", &["20", program.to_str().unwrap(), "8"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("nodename=not-stuck"),
        "8 blocked receivers: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
