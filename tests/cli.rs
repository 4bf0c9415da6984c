//! The `capsule` command line: bad input is refused with one clear line and the right
//! exit code before anything is created; good input runs the program with the
//! environment, directory, state and signals it should have.
//!
//! These tests do not need the real shim: each sets `CAPSULE_SHIM` to an empty shared
//! library compiled here, so they exercise the loader alone.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const CAPSULE: &str = env!("CARGO_BIN_EXE_capsule");

/// A fresh scratch directory per test; `home()` is a `CAPSULE_HOME` that does not exist
/// until the loader creates it.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "capsule-cli-{tag}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // Canonical, so that paths the program prints (pwd) compare equal.
        let dir = fs::canonicalize(&dir).unwrap();
        Scratch { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.path(rel);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn capsule_dir(&self, name: &str) -> PathBuf {
        self.home().join("capsules").join(name)
    }

    /// A capsule root at `rootfs/`: `/bin/prog` exits 7, `/bin/data` is not executable,
    /// `/sub` holds `tool`, which prints the `PWD` it was started with (a shell resets
    /// its own `$PWD` when it does not name its directory on the host) and the real
    /// directory, `/etc/passwd` knows `app` (uid 4242). No `sh`: the host's programs are
    /// not the capsule's.
    /// (The kernel runs the scripts' `#!/bin/sh` from the host: the empty test shim
    /// translates nothing.)
    fn rootfs(&self) -> PathBuf {
        for dir in ["rootfs/bin", "rootfs/sub", "rootfs/etc"] {
            fs::create_dir_all(self.path(dir)).unwrap();
        }
        self.write("rootfs/bin/prog", "#!/bin/sh\nexit 7\n", 0o755);
        self.write("rootfs/bin/data", "#!/bin/sh\nexit 0\n", 0o644);
        self.write(
            "rootfs/sub/tool",
            "#!/bin/sh\ntr '\\0' '\\n' </proc/$$/environ | grep '^PWD='\npwd -P\n",
            0o755,
        );
        self.write("rootfs/etc/passwd", "app:x:4242:4343::/:/bin/sh\n", 0o644);
        self.path("rootfs")
    }

    /// `capsule ARGS` with a clean capsule environment, this scratch's home, the test
    /// shim, and no stdin.
    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(CAPSULE);
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for key in [
            "CAPSULE_CONFIG",
            "CAPSULE_HOSTNAME",
            "CAPSULE_DOMAINNAME",
            "CAPSULE_UID",
            "CAPSULE_GID",
            "CAPSULE_GROUPS",
            "CAPSULE_USER",
            "CAPSULE_TIME_OFFSET",
            "CAPSULE_TIME_AT",
            "CAPSULE_STATE_DIR",
            "CAPSULE_NAME",
            "CAPSULE_LOG",
            "CAPSULE_LOG_FILE",
            "CAPSULE_ROOT",
            "CAPSULE_UPPER",
            "CAPSULE_VOLUMES",
            "CAPSULE_READ_ONLY",
            "LD_PRELOAD",
        ] {
            command.env_remove(key);
        }
        command
            .env("CAPSULE_HOME", self.home())
            .env("CAPSULE_SHIM", test_shim());
        command
    }

    /// `capsule ARGS` without the kernel backstop, for a root capsule whose script
    /// runs host programs (`tr`, `grep`): the stand-in shim translates nothing, and
    /// the backstop rightly lets a root capsule execute nothing of the host.
    fn run_unbacked<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args)
            .env("CAPSULE_LANDLOCK", "off")
            .output()
            .unwrap()
    }

    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args).output().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// An empty shared library standing in for libcapsule.so, built once per test run
/// into `target/tmp/capsule-cli-shim/` (built under a private name, then renamed, so
/// concurrent test runs never see a half-written file).
fn test_shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capsule-cli-shim");
        fs::create_dir_all(&dir).unwrap();
        let pid = std::process::id();
        let source = dir.join(format!("empty-{pid}.c"));
        fs::write(
            &source,
            "/* stands in for libcapsule.so */\nint capsule_test_shim;\n",
        )
        .unwrap();
        let built = dir.join(format!("libempty-{pid}.so"));
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&built)
            .arg(&source)
            .status()
            .expect("cc is needed to build the test shim");
        assert!(status.success(), "cc failed to build {}", built.display());
        let _ = fs::remove_file(&source);
        let shim = dir.join("libempty.so");
        fs::rename(&built, &shim).unwrap();
        shim
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One of our own errors: the exit code, exactly one line, `capsule: ` first, naming
/// every `culprits` string; and nothing created under CAPSULE_HOME.
#[track_caller]
fn assert_refused(s: &Scratch, out: &Output, code: i32, culprits: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.starts_with("capsule: "), "stderr: {err:?}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.ends_with('\n'), "stderr: {err:?}");
    for culprit in culprits {
        assert!(err.contains(culprit), "{culprit:?} not named in {err:?}");
    }
    assert!(
        !s.home().exists(),
        "{} was created for refused input",
        s.home().display()
    );
}

/// A usage error reported by clap: exit 2, naming the culprit, nothing created.
#[track_caller]
fn assert_usage_error(s: &Scratch, out: &Output, culprit: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(culprit), "{culprit:?} not named in {err:?}");
    assert!(!s.home().exists());
}

// ---------------------------------------------------------------- bad input

#[test]
fn unknown_flag_is_a_usage_error() {
    let s = Scratch::new("unknown-flag");
    assert_usage_error(&s, &s.run(["run", "--bogus", "--", "true"]), "--bogus");
    assert_usage_error(&s, &s.run(["--bogus"]), "--bogus");
    assert_usage_error(&s, &s.run(["frobnicate"]), "frobnicate");
}

#[test]
fn missing_program_is_a_usage_error() {
    let s = Scratch::new("no-program");
    assert_usage_error(&s, &s.run(["run"]), "PROG");
    assert_usage_error(&s, &s.run(["run", "--rm", "--"]), "PROG");
}

#[test]
fn time_offset_and_time_at_conflict() {
    let s = Scratch::new("time-conflict");
    let out = s.run([
        "run",
        "--time-offset",
        "1d",
        "--time-at",
        "2030-01-01T00:00:00Z",
        "--",
        "true",
    ]);
    assert_usage_error(&s, &out, "--time-at");
}

#[test]
fn malformed_duration() {
    let s = Scratch::new("duration");
    for bad in ["soon", "3x", "1.5h", "", "99999999999y"] {
        let out = s.run(["run", "--time-offset", bad, "--", "true"]);
        assert_refused(&s, &out, 125, &["--time-offset", &format!("{bad:?}")]);
    }
}

#[test]
fn malformed_date() {
    let s = Scratch::new("date");
    for bad in ["tomorrow", "2030-13-01T00:00:00Z", "2030-01-01"] {
        let out = s.run(["run", "--time-at", bad, "--", "true"]);
        assert_refused(&s, &out, 125, &["--time-at", bad]);
    }
}

#[test]
fn unknown_user_or_group() {
    let s = Scratch::new("user");
    let out = s.run(["run", "--user", "no-such-user-xyz", "--", "true"]);
    assert_refused(&s, &out, 125, &["--user", "no-such-user-xyz"]);
    let out = s.run(["run", "--user", "root:no-such-group-xyz", "--", "true"]);
    assert_refused(&s, &out, 125, &["--user", "no-such-group-xyz"]);
    let out = s.run(["run", "--user", ":0", "--", "true"]);
    assert_refused(&s, &out, 125, &["--user"]);
}

#[test]
fn bad_hostname() {
    let s = Scratch::new("hostname");
    let long = "h".repeat(65);
    for bad in ["", long.as_str(), "two\nlines"] {
        let out = s.run(["run", "--hostname", bad, "--", "true"]);
        assert_refused(&s, &out, 125, &["--hostname"]);
    }
}

#[test]
fn bad_name() {
    let s = Scratch::new("name");
    let long = "n".repeat(64);
    for bad in ["a/b", ".hidden", "-x", "has space", long.as_str()] {
        let out = s.run(["run", &format!("--name={bad}"), "--", "true"]);
        assert_refused(&s, &out, 125, &["--name"]);
    }
}

#[test]
fn bad_env_assignment() {
    let s = Scratch::new("env");
    let out = s.run(["run", "-e", "=value", "--", "true"]);
    assert_refused(&s, &out, 125, &["-e", "=value"]);
    let out = s.run(["run", "-e", "A B=1", "--", "true"]);
    assert_refused(&s, &out, 125, &["-e", "A B"]);
}

#[test]
fn malformed_env_file_names_file_and_line() {
    let s = Scratch::new("env-file");
    s.write("x.env", "A=1\n# fine\n=oops\n", 0o644);
    let out = s.run(["run", "--env-file", "./x.env", "--", "true"]);
    assert_refused(&s, &out, 125, &[]);
    assert!(
        stderr(&out).starts_with("capsule: --env-file ./x.env line 3: expected KEY=VALUE"),
        "{}",
        stderr(&out)
    );
    s.write("y.env", "OK=1\nexport B=2\n", 0o644);
    let out = s.run(["run", "--env-file", "./y.env", "--", "true"]);
    assert_refused(&s, &out, 125, &["--env-file ./y.env line 2"]);
}

#[test]
fn missing_env_file() {
    let s = Scratch::new("env-file-missing");
    let out = s.run(["run", "--env-file", "./nope.env", "--", "true"]);
    assert_refused(&s, &out, 125, &["--env-file", "./nope.env"]);
}

#[test]
fn missing_or_non_directory_workdir() {
    let s = Scratch::new("workdir");
    let out = s.run(["run", "-w", "./no-such-dir", "--", "true"]);
    assert_refused(&s, &out, 125, &["-w", "./no-such-dir"]);
    s.write("file", "", 0o644);
    let out = s.run(["run", "--workdir", "./file", "--", "true"]);
    assert_refused(&s, &out, 125, &["-w", "./file", "not a directory"]);
}

#[test]
fn missing_or_non_directory_root() {
    let s = Scratch::new("root-bad");
    let out = s.run(["run", "--root", "./no-such-root", "--", "/bin/true"]);
    assert_refused(&s, &out, 125, &[]);
    assert_eq!(
        stderr(&out),
        "capsule: --root ./no-such-root: no such directory\n"
    );
    s.write("file", "", 0o644);
    let out = s.run(["run", "--root", "file", "--", "/bin/true"]);
    assert_refused(&s, &out, 125, &[]);
    assert_eq!(stderr(&out), "capsule: --root file: not a directory\n");
}

#[test]
fn malformed_volumes() {
    let s = Scratch::new("volume-bad");
    let dir = s.dir.display().to_string();
    for (spec, why) in [
        ("/data".to_string(), "expected HOST:PATH[:ro]".to_string()),
        ("".to_string(), "expected HOST:PATH[:ro]".to_string()),
        (
            format!("{dir}:/a:/b"),
            "unknown volume mode '/b' (ro or rw)".to_string(),
        ),
        (
            "data:/data".to_string(),
            "'data' is not an absolute path".to_string(),
        ),
        (
            format!("{dir}:data"),
            "'data' is not an absolute path".to_string(),
        ),
        (
            format!("{dir}:/data:rx"),
            "unknown volume mode 'rx' (ro or rw)".to_string(),
        ),
        (
            format!("{dir}:/"),
            "a volume cannot be bound at the capsule's / (use --root)".to_string(),
        ),
        (
            "/no/such/dir:/data".to_string(),
            "/no/such/dir: no such file or directory".to_string(),
        ),
    ] {
        let out = s.run(["run", "-v", &spec, "--", "true"]);
        assert_refused(&s, &out, 125, &[]);
        assert_eq!(stderr(&out), format!("capsule: -v {spec}: {why}\n"));
    }
    // The same capsule path twice, also when spelled differently.
    let out = s.run([
        "run",
        "-v",
        &format!("{dir}:/data"),
        "--volume",
        "/tmp:/data/:ro",
        "--",
        "true",
    ]);
    assert_refused(&s, &out, 125, &[]);
    assert_eq!(
        stderr(&out),
        format!("capsule: -v /tmp:/data/:ro: /data is already bound by {dir}:/data\n")
    );
}

#[test]
fn workdir_inside_the_root_must_exist() {
    let s = Scratch::new("root-workdir-bad");
    let root = s.rootfs();
    let root = root.to_str().unwrap();
    let out = s.run([
        "run",
        "--root",
        root,
        "-w",
        "/no-such-dir",
        "--",
        "/bin/prog",
    ]);
    assert_refused(&s, &out, 125, &[]);
    assert_eq!(
        stderr(&out),
        "capsule: -w /no-such-dir: no such directory\n"
    );
    let out = s.run(["run", "--root", root, "-w", "/bin/prog", "--", "/bin/prog"]);
    assert_refused(&s, &out, 125, &["-w /bin/prog: not a directory"]);
    // A host directory that the root does not have is not the capsule's.
    let out = s.run(["run", "--root", root, "-w", "/tmp", "--", "/bin/prog"]);
    assert_refused(&s, &out, 125, &["-w /tmp: no such directory"]);
    let out = s.run(["run", "--root", root, "-w", "sub", "--", "/bin/prog"]);
    assert_refused(&s, &out, 125, &["-w sub: ", "must be absolute"]);
}

#[test]
fn programs_inside_the_root_exit_127_or_126() {
    let s = Scratch::new("root-prog-bad");
    let root = s.rootfs();
    let root = root.to_str().unwrap();
    let out = s.run(["run", "--root", root, "--", "/bin/nope"]);
    assert_refused(
        &s,
        &out,
        127,
        &["capsule: /bin/nope: no such file or directory"],
    );
    // The host has sh; the capsule does not.
    let out = s.run([
        "run",
        "--root",
        root,
        "-e",
        "PATH=/usr/bin:/bin",
        "--",
        "sh",
    ]);
    assert_refused(&s, &out, 127, &["capsule: sh: command not found"]);
    let out = s.run(["run", "--root", root, "--", "/bin/data"]);
    assert_refused(&s, &out, 126, &["capsule: /bin/data: permission denied"]);
    let out = s.run(["run", "--root", root, "--", "/sub"]);
    assert_refused(&s, &out, 126, &["capsule: /sub: is a directory"]);
}

#[test]
fn user_names_come_from_the_roots_passwd() {
    let s = Scratch::new("root-user");
    let root = s.rootfs();
    let root = root.to_str().unwrap();
    // root is in the host's /etc/passwd, not in the capsule's.
    let out = s.run(["run", "--root", root, "--user", "root", "--", "/bin/prog"]);
    assert_refused(&s, &out, 125, &["--user \"root\"", "unknown user"]);
    let out = s.run([
        "run",
        "--root",
        root,
        "--name",
        "u",
        "--user",
        "app",
        "--",
        "/bin/prog",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let config = fs::read_to_string(s.capsule_dir("u").join("config")).unwrap();
    assert!(config.contains("CAPSULE_UID=4242\n"), "{config}");
    assert!(config.contains("CAPSULE_GID=4343\n"), "{config}");
}

#[test]
fn missing_shim() {
    let s = Scratch::new("shim");
    let out = s
        .command(["run", "--", "true"])
        .env("CAPSULE_SHIM", "/no/such/libcapsule.so")
        .output()
        .unwrap();
    assert_refused(&s, &out, 125, &["CAPSULE_SHIM", "/no/such/libcapsule.so"]);
}

/// Runs a freshly copied executable. Another test thread that forks while the copy's
/// file is still open for writing holds it open until its own exec, and exec then
/// fails with ETXTBSY for that moment: try again.
fn output_retrying(command: &mut Command) -> Output {
    for _ in 0..50 {
        match command.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            result => return result.unwrap(),
        }
    }
    panic!("executable stayed busy");
}

#[test]
fn no_shim_next_to_the_executable() {
    let s = Scratch::new("shim-beside");
    // A copy of the loader in a directory with no libcapsule.so beside it or in
    // ../lib/capsule.
    fs::create_dir_all(s.path("bin")).unwrap();
    let exe = s.path("bin/capsule");
    fs::copy(CAPSULE, &exe).unwrap();
    let out = output_retrying(
        Command::new(&exe)
            .args(["run", "--", "true"])
            .env_remove("CAPSULE_SHIM")
            .env("CAPSULE_HOME", s.home())
            .stdin(Stdio::null()),
    );
    let expected = format!(
        "capsule: cannot find libcapsule.so next to {}; set CAPSULE_SHIM\n",
        exe.display()
    );
    assert_refused(&s, &out, 125, &[]);
    assert_eq!(stderr(&out), expected);

    // An installed layout: bin/capsule finds lib/capsule/libcapsule.so.
    fs::create_dir_all(s.path("lib/capsule")).unwrap();
    fs::copy(test_shim(), s.path("lib/capsule/libcapsule.so")).unwrap();
    let out = output_retrying(
        Command::new(&exe)
            .args(["run", "--rm", "--", "sh", "-c", "echo \"$LD_PRELOAD\""])
            .env_remove("CAPSULE_SHIM")
            .env_remove("LD_PRELOAD")
            .env("CAPSULE_HOME", s.home())
            .stdin(Stdio::null()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .trim_end()
            .ends_with("lib/capsule/libcapsule.so"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn missing_program_path_exits_127() {
    let s = Scratch::new("prog-missing");
    let out = s.run(["run", "--", "./no-such-program"]);
    assert_refused(
        &s,
        &out,
        127,
        &["capsule: ./no-such-program: no such file or directory"],
    );
}

#[test]
fn unknown_command_exits_127() {
    let s = Scratch::new("prog-unknown");
    let out = s.run(["run", "--", "no-such-command-xyz"]);
    assert_refused(
        &s,
        &out,
        127,
        &["capsule: no-such-command-xyz: command not found"],
    );
}

#[test]
fn non_executable_program_exits_126() {
    let s = Scratch::new("prog-noexec");
    s.write("script", "#!/bin/sh\necho hi\n", 0o644);
    let out = s.run(["run", "--", "./script"]);
    assert_refused(&s, &out, 126, &["capsule: ./script: permission denied"]);
}

#[test]
fn directory_as_program_exits_126() {
    let s = Scratch::new("prog-dir");
    fs::create_dir(s.path("adir")).unwrap();
    let out = s.run(["run", "--", "./adir"]);
    assert_refused(&s, &out, 126, &["capsule: ./adir: is a directory"]);
}

#[test]
fn program_is_searched_in_the_programs_path() {
    let s = Scratch::new("prog-path");
    fs::create_dir(s.path("bin")).unwrap();
    s.write("bin/mytool", "#!/bin/sh\necho mytool ran\n", 0o755);
    // Not in the loader's PATH...
    let out = s.run(["run", "--", "mytool"]);
    assert_refused(&s, &out, 127, &["mytool: command not found"]);
    // ...but in the program's.
    let path = format!("{}:/usr/bin:/bin", s.path("bin").display());
    let out = s.run(["run", "--rm", "-e", &format!("PATH={path}"), "--", "mytool"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "mytool ran\n");
}

#[test]
fn bad_capsule_log_setting() {
    let s = Scratch::new("log");
    let out = s
        .command(["run", "--", "true"])
        .env("CAPSULE_LOG", "loud")
        .output()
        .unwrap();
    assert_refused(&s, &out, 125, &["CAPSULE_LOG", "loud"]);
}

// ---------------------------------------------------------------- documentation

#[test]
fn help_documents_every_flag() {
    let s = Scratch::new("help");
    let out = s.run(["run", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for flag in [
        "--name",
        "--hostname",
        "--user",
        "--time-offset",
        "--time-at",
        "-e, --env",
        "--env-file",
        "-w, --workdir",
        "--rm",
        "PROG",
        "--time-offset -3d",
        "--time-at 2030-01-01T00:00:00Z",
        "--user postgres",
        "--user 1000:1000",
        "--root <DIR>",
        "-v, --volume <HOST:PATH[:ro]>",
        "--read-only",
        "--root ./rootfs",
        "--read-only -v /etc/ssl/certs:/etc/ssl/certs:ro",
        "upper layer",
    ] {
        assert!(help.contains(flag), "run --help does not mention {flag}");
    }
    let out = s.run(["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for word in [
        "LD_PRELOAD",
        "host name",
        "identity",
        "clock",
        "environment",
        "No root",
        "capsule run",
    ] {
        assert!(help.contains(word), "--help does not mention {word}");
    }
    let out = s.run(["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("capsule "), "{}", stdout(&out));
    assert!(!s.home().exists());
}

// ---------------------------------------------------------------- running

#[test]
fn exit_status_is_the_programs() {
    let s = Scratch::new("exit3");
    let out = s.run(["run", "--rm", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // `--` is optional; options after PROG belong to the program.
    let out = s.run(["run", "--rm", "sh", "-c", "exit 0", "--rm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn killed_by_a_signal_gives_128_plus_n() {
    let s = Scratch::new("sigterm");
    let out = s.run(["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let out = s.run(["run", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
}

#[test]
fn state_dir_keeps_config_pid_and_exit() {
    let s = Scratch::new("state");
    let out = s.run([
        "run",
        "--name",
        "web",
        "--hostname",
        "web1",
        "--user",
        "0:0",
        "--time-offset",
        "-1d",
        "--",
        "sh",
        "-c",
        "echo $$; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let dir = s.capsule_dir("web");
    let pid = fs::read_to_string(dir.join("pid")).unwrap();
    assert_eq!(pid, stdout(&out), "pid file is the program's pid");
    assert_eq!(fs::read_to_string(dir.join("exit")).unwrap(), "exit=5\n");
    let config = fs::read_to_string(dir.join("config")).unwrap();
    for line in [
        "CAPSULE_NAME=web\n",
        "CAPSULE_HOSTNAME=web1\n",
        "CAPSULE_UID=0\n",
        "CAPSULE_GID=0\n",
        "CAPSULE_TIME_OFFSET=-86400000000000ns\n",
        &format!("CAPSULE_STATE_DIR={}\n", dir.display()),
    ] {
        assert!(config.contains(line), "{line:?} not in config:\n{config}");
    }

    // The same name again reuses the directory.
    let out = s.run(["run", "--name", "web", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143));
    assert_eq!(fs::read_to_string(dir.join("exit")).unwrap(), "signal=15\n");
    let config = fs::read_to_string(dir.join("config")).unwrap();
    assert!(!config.contains("CAPSULE_HOSTNAME"), "{config}");
}

#[test]
fn generated_names() {
    let s = Scratch::new("generated");
    let out = s.run(["run", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = fs::read_dir(s.home().join("capsules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    assert!(
        name.len() == 16
            && name.starts_with("capsule-")
            && name[8..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );
}

#[test]
fn time_at_becomes_an_offset() {
    let s = Scratch::new("time-at");
    let out = s.run([
        "run",
        "--name",
        "t",
        "--time-at",
        "2000-01-01T00:00:00Z",
        "--",
        "true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = fs::read_to_string(s.capsule_dir("t").join("config")).unwrap();
    let offset: i64 = config
        .lines()
        .find_map(|l| l.strip_prefix("CAPSULE_TIME_OFFSET="))
        .and_then(|v| v.strip_suffix("ns"))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let at = 946_684_800_000_000_000i64;
    assert!(
        (now + offset - at).abs() < 60_000_000_000,
        "offset {offset} does not bring now to 2000-01-01"
    );
}

#[test]
fn rm_removes_the_state_dir() {
    let s = Scratch::new("rm");
    let out = s.run(["run", "--rm", "--name", "tmp1", "--", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(s.home().join("capsules").exists());
    assert!(!s.capsule_dir("tmp1").exists());
    // Also when the program is killed.
    let out = s.run([
        "run",
        "--rm",
        "--name",
        "tmp2",
        "--",
        "sh",
        "-c",
        "kill -TERM $$",
    ]);
    assert_eq!(out.status.code(), Some(143));
    assert!(!s.capsule_dir("tmp2").exists());
}

#[test]
fn program_gets_env_and_shim() {
    let s = Scratch::new("env-run");
    s.write(
        "a.env",
        "# settings\nFROM_FILE=file\nBOTH=file\nCOPIED\n\nSPACED=  two words\n",
        0o644,
    );
    s.write("b.env", "LATER=b\nFROM_FILE=second\n", 0o644);
    let out = s
        .command([
            "run",
            "--name",
            "envy",
            "--env-file",
            "a.env",
            "--env-file",
            "b.env",
            "-e",
            "BOTH=flag",
            "-e",
            "FLAG_COPY",
            "-e",
            "UNSET_IN_LOADER",
            "-e",
            "EQUALS=a=b",
            "--",
            "env",
        ])
        .env("COPIED", "from-loader")
        .env("FLAG_COPY", "copied-by-flag")
        .env("INHERITED", "yes")
        .env_remove("UNSET_IN_LOADER")
        .env("CAPSULE_HOSTNAME", "stale")
        .env("CAPSULE_TIME_OFFSET", "1d")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let env = stdout(&out);
    let lines: Vec<&str> = env.lines().collect();
    let config = s.capsule_dir("envy").join("config");
    for want in [
        "FROM_FILE=second".to_string(),
        "BOTH=flag".to_string(),
        "COPIED=from-loader".to_string(),
        "SPACED=  two words".to_string(),
        "LATER=b".to_string(),
        "FLAG_COPY=copied-by-flag".to_string(),
        "EQUALS=a=b".to_string(),
        "INHERITED=yes".to_string(),
        format!("CAPSULE_CONFIG={}", config.display()),
        format!("LD_PRELOAD={}", test_shim().display()),
    ] {
        assert!(lines.contains(&want.as_str()), "{want:?} not in:\n{env}");
    }
    for absent in [
        "UNSET_IN_LOADER",
        "CAPSULE_HOSTNAME=",
        "CAPSULE_TIME_OFFSET=",
    ] {
        assert!(
            !lines.iter().any(|l| l.starts_with(absent)),
            "{absent} leaked into:\n{env}"
        );
    }
}

#[test]
fn ld_preload_keeps_other_libraries_once() {
    let s = Scratch::new("preload");
    let other = s.path("libother.so");
    fs::copy(test_shim(), &other).unwrap();
    let existing = format!("{}:{}", test_shim().display(), other.display());
    let out = s
        .command(["run", "--rm", "--", "sh", "-c", "echo \"$LD_PRELOAD\""])
        .env("LD_PRELOAD", &existing)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}:{}\n", test_shim().display(), other.display())
    );
}

#[test]
fn workdir_is_where_the_program_starts() {
    let s = Scratch::new("workdir-run");
    fs::create_dir(s.path("work")).unwrap();
    let out = s.run(["run", "--rm", "-w", "work", "--", "pwd", "-P"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", s.path("work").display()));
    // A relative PROG is found from the working directory, and $PWD is truthful.
    s.write(
        "work/hello.sh",
        "#!/bin/sh\necho \"hello from $PWD\"\n",
        0o755,
    );
    let out = s.run(["run", "--rm", "-w", "work", "--", "./hello.sh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("hello from {}/work\n", s.dir.display())
    );
}

#[test]
fn program_starts_with_no_blocked_signals() {
    let s = Scratch::new("sigmask");
    let out = s.run(["run", "--rm", "--", "cat", "/proc/self/status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = stdout(&out);
    let field = |name: &str| -> u64 {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    assert_eq!(
        field("SigBlk:"),
        0,
        "the program starts with signals blocked"
    );
    // Nothing the loader relays is ignored unless this test process ignored it too.
    let own = fs::read_to_string("/proc/self/status").unwrap();
    let own_ignored = own
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    let relayed: u64 = [1, 2, 3, 10, 12, 14, 15, 17, 18, 28]
        .iter()
        .map(|sig| 1u64 << (sig - 1))
        .sum();
    assert_eq!(field("SigIgn:") & relayed & !own_ignored, 0);
}

#[test]
fn root_programs_run_from_the_root() {
    let s = Scratch::new("root-run");
    let root = s.rootfs();
    let root = root.to_str().unwrap();
    let out = s.run(["run", "--rm", "--root", root, "--", "/bin/prog"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    // PATH entries are capsule directories; argv[0] stays as given.
    let out = s.run([
        "run",
        "--rm",
        "--root",
        root,
        "-e",
        "PATH=/nope:/bin",
        "--",
        "prog",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    // Without -w the program starts in the capsule's /, the root directory.
    let out = s.run_unbacked(["run", "--rm", "--root", root, "--", "/sub/tool"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("PWD=/\n{root}\n"));
    // A relative PROG and -w are capsule paths too.
    let out = s.run_unbacked(["run", "--rm", "--root", root, "-w", "/sub", "--", "./tool"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("PWD=/sub\n{root}/sub\n"));
    // A symbolic link in the root resolves inside the capsule; "." in PATH is the
    // capsule's working directory.
    std::os::unix::fs::symlink("/sub", s.path("rootfs/link")).unwrap();
    let out = s.run(["run", "--rm", "--root", root, "-w", "/link", "--", "tool"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let out = s.run_unbacked([
        "run",
        "--rm",
        "--root",
        root,
        "-w",
        "/link",
        "-e",
        "PATH=.:/usr/bin:/bin",
        "--",
        "tool",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("PWD=/sub\n{root}/sub\n"));
}

#[test]
fn the_upper_layer_is_private_and_looked_at_first() {
    let s = Scratch::new("upper");
    let root = s.rootfs();
    let root = root.to_str().unwrap();
    let data = s.path("data");
    fs::create_dir(&data).unwrap();
    let volumes = format!("{}:/data;{}:/etc/ssl:ro", data.display(), s.dir.display());
    let out = s.run([
        "run",
        "--name",
        "up",
        "--root",
        root,
        "-v",
        &format!("{}:/data", data.display()),
        "--volume",
        &format!("{}:/etc/ssl:ro", s.dir.display()),
        "--read-only",
        "--",
        "/bin/prog",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let dir = s.capsule_dir("up");
    let upper = dir.join("upper");
    let meta = fs::metadata(&upper).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    let config = fs::read_to_string(dir.join("config")).unwrap();
    for line in [
        format!("CAPSULE_ROOT={root}\n"),
        format!("CAPSULE_UPPER={}\n", upper.display()),
        format!("CAPSULE_VOLUMES={volumes}\n"),
        "CAPSULE_READ_ONLY=1\n".to_string(),
    ] {
        assert!(config.contains(&line), "{line:?} not in config:\n{config}");
    }

    // A later run of the same name keeps the upper layer, whose files shadow the root's.
    fs::create_dir(upper.join("bin")).unwrap();
    s.write(
        "home/capsules/up/upper/bin/prog",
        "#!/bin/sh\nexit 9\n",
        0o755,
    );
    let out = s.run(["run", "--name", "up", "--root", root, "--", "/bin/prog"]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let config = fs::read_to_string(dir.join("config")).unwrap();
    assert!(!config.contains("CAPSULE_VOLUMES"), "{config}");
    assert!(!config.contains("CAPSULE_READ_ONLY"), "{config}");
    // ...and --rm removes it with the rest of the state.
    let out = s.run([
        "run",
        "--rm",
        "--name",
        "up",
        "--root",
        root,
        "--",
        "/bin/prog",
    ]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert!(!dir.exists());
    // The root itself was never written.
    assert!(!s
        .path("rootfs/bin/prog")
        .metadata()
        .unwrap()
        .permissions()
        .readonly());
    assert_eq!(
        fs::read_to_string(s.path("rootfs/bin/prog")).unwrap(),
        "#!/bin/sh\nexit 7\n"
    );
}

#[test]
fn every_capsule_has_an_upper_layer() {
    let s = Scratch::new("upper-no-root");
    let out = s.run(["run", "--name", "plain", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = s.capsule_dir("plain");
    assert!(dir.join("upper").is_dir());
    let config = fs::read_to_string(dir.join("config")).unwrap();
    assert!(
        config.contains(&format!("CAPSULE_UPPER={}\n", dir.join("upper").display())),
        "{config}"
    );
    assert!(!config.contains("CAPSULE_ROOT"), "{config}");
    // Volumes and --read-only without --root: the capsule's / is the host's.
    let out = s.run([
        "run",
        "--name",
        "plain",
        "-v",
        &format!("{}:/mnt/x:ro", s.dir.display()),
        "--read-only",
        "--",
        "true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = fs::read_to_string(dir.join("config")).unwrap();
    assert!(
        config.contains(&format!("CAPSULE_VOLUMES={}:/mnt/x:ro\n", s.dir.display())),
        "{config}"
    );
    assert!(config.contains("CAPSULE_READ_ONLY=1\n"), "{config}");
    let out = s.run(["run", "--rm", "--name", "gone", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!s.capsule_dir("gone").exists());
}

/// Waits until `path` exists (the program is ready), or fails after 10 s.
fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("capsule ended early: {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(child: &Child, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0);
}

#[test]
fn signals_to_the_loader_reach_the_program() {
    let s = Scratch::new("relay");
    let ready = s.path("ready");
    let script = format!(
        "trap 'exit 42' TERM; trap 'echo usr1' USR1; touch '{}'; while :; do sleep 0.05; done",
        ready.display()
    );
    // The stand-in shim does not interpose: the program writes `ready` on the host,
    // which the kernel backstop allows only in a volume.
    let volume = format!("{0}:{0}", s.path("").display());
    let mut child = s
        .command([
            "run", "--name", "relay", "-v", &volume, "--", "sh", "-c", &script,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&ready, &mut child);
    send(&child, libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(300));
    send(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    assert_eq!(stdout(&out), "usr1\n");
    assert_eq!(
        fs::read_to_string(s.capsule_dir("relay").join("exit")).unwrap(),
        "exit=42\n"
    );
}

#[test]
fn a_running_capsule_cannot_be_started_twice() {
    let s = Scratch::new("twice");
    let ready = s.path("ready");
    let script = format!(
        "trap 'exit 0' TERM; touch '{}'; while :; do sleep 0.05; done",
        ready.display()
    );
    // As above: `ready` is written on the host, so through a volume.
    let volume = format!("{0}:{0}", s.path("").display());
    let mut first = s
        .command([
            "run", "--name", "db", "-v", &volume, "--", "sh", "-c", &script,
        ])
        .spawn()
        .unwrap();
    wait_for(&ready, &mut first);
    let start = Instant::now();
    let pid = loop {
        if let Ok(text) = fs::read_to_string(s.capsule_dir("db").join("pid")) {
            break text.trim().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = s.run(["run", "--name", "db", "--", "true"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(
        err,
        format!("capsule: capsule db is already running (pid {pid})\n")
    );
    // Another name is fine meanwhile.
    let out = s.run(["run", "--rm", "--name", "other", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));

    send(&first, libc::SIGTERM);
    assert_eq!(first.wait().unwrap().code(), Some(0));
    // Once it has ended, the name can be used again.
    let out = s.run(["run", "--name", "db", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
