//! Shared harness of the integration tests: where the capsule binary and the shim are,
//! building the C probes of `c-tests/`, running programs natively, under the shim
//! (plain `LD_PRELOAD`) or through `capsule run`, with a timeout, and reading what they
//! printed.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one program may run before the test fails (a hang is a failure).
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The unprivileged real user that probes which try to change host state run as,
/// so that a shim which fails to intercept cannot change the real host name or clock.
pub const NOBODY: u32 = 65534;

/// The directory cargo built the `capsule` binary (and the shim) into.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_capsule"))
        .parent()
        .expect("capsule binary has a directory")
        .to_path_buf()
}

/// The `capsule` command.
pub fn capsule_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_capsule"))
}

/// `libcapsule.so`, built beside the `capsule` binary.
pub fn shim() -> PathBuf {
    let path = bin_dir().join("libcapsule.so");
    if !path.is_file() {
        panic!(
            "libcapsule.so not found at {}; run `cargo build --workspace` first",
            path.display()
        );
    }
    path
}

/// The workspace root (the directory holding `c-tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("loader crate has a parent directory")
        .to_path_buf()
}

/// Compiles `c-tests/<name>.c` (once per test process) into `<target>/c-tests/<name>`
/// and returns the executable's path.
///
/// Test binaries may run at the same time: each compiles to a private temporary name and
/// renames it into place, which is atomic.
pub fn compile_c(name: &str) -> PathBuf {
    build_c(name, false)
}

/// Compiles `c-tests/<name>.c` as a shared library `<target>/c-tests/<name>.so`.
pub fn compile_c_shared(name: &str) -> PathBuf {
    build_c(name, true)
}

fn build_c(name: &str, shared: bool) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    let key = format!("{name}{}", if shared { ".so" } else { "" });
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let source = workspace_root().join("c-tests").join(format!("{name}.c"));
    assert!(source.is_file(), "no C probe at {}", source.display());
    let out_dir = bin_dir().join("c-tests");
    std::fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", out_dir.display()));
    let file = if shared {
        format!("{name}.so")
    } else {
        name.to_string()
    };
    let target = out_dir.join(&file);
    let temp = out_dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let mut cc = Command::new("cc");
    if shared {
        cc.args(["-shared", "-fPIC"]);
    }
    let output = cc
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(&temp)
        .arg(&source)
        .arg("-lpthread")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `cc`: {e}"));
    if !output.status.success() {
        let _ = std::fs::remove_file(&temp);
        panic!(
            "compiling {} failed:\n{}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&temp, &target)
        .unwrap_or_else(|e| panic!("cannot move {} into place: {e}", temp.display()));
    built.insert(key, target.clone());
    target
}

/// A directory under the system temporary directory, removed (with its contents) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "capsule-test-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        // Probes may run as the unprivileged user NOBODY and must be able to write here.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The path as a `&str` (temporary paths are ASCII).
    pub fn str(&self) -> &str {
        self.path.to_str().expect("temporary path is UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A program started by the harness, in its own process group.
pub struct Running {
    child: Child,
    label: String,
    out: mpsc::Receiver<(bool, Vec<u8>)>,
}

/// Starts `cmd` with piped stdout/stderr and no stdin, in a new process group.
pub fn spawn(cmd: &mut Command) -> Running {
    let label = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let tx2 = tx.clone();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        let _ = tx.send((true, buf));
    });
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        let _ = tx2.send((false, buf));
    });
    Running {
        child,
        label,
        out: rx,
    }
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the program has already exited (its output stays available to `wait`).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills the process group this program leads (only processes the harness started).
    fn kill_group(&self) {
        // SAFETY: kill(2) on our own child's process group; no memory is involved.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
    }

    /// Waits for the program (at most TIMEOUT) and returns what it printed.
    pub fn wait(mut self) -> Output {
        let deadline = Instant::now() + TIMEOUT;
        let status: ExitStatus = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    self.kill_group();
                    let _ = self.child.wait();
                    let (stdout, stderr) = self.collect(Duration::from_secs(5));
                    panic!(
                        "{} did not finish within {TIMEOUT:?} (hang or deadlock); killed.\n\
                         stdout:\n{}\nstderr:\n{}",
                        self.label,
                        String::from_utf8_lossy(&stdout),
                        String::from_utf8_lossy(&stderr)
                    );
                }
                Err(e) => panic!("waiting for {}: {e}", self.label),
            }
        };
        // Descendants left running may hold the pipes open: give them a moment, then
        // end the group the harness created.
        let (stdout, stderr) = self.collect(Duration::from_secs(10));
        Output {
            status,
            stdout,
            stderr,
        }
    }

    fn collect(&self, patience: Duration) -> (Vec<u8>, Vec<u8>) {
        let mut stdout = None;
        let mut stderr = None;
        let deadline = Instant::now() + patience;
        let mut killed = false;
        while stdout.is_none() || stderr.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left.max(Duration::from_millis(100))) {
                Ok((true, buf)) => stdout = Some(buf),
                Ok((false, buf)) => stderr = Some(buf),
                Err(mpsc::RecvTimeoutError::Timeout) if !killed => {
                    self.kill_group();
                    killed = true;
                }
                Err(_) => break,
            }
        }
        (stdout.unwrap_or_default(), stderr.unwrap_or_default())
    }
}

/// Runs `cmd` to completion (at most TIMEOUT).
pub fn run(cmd: &mut Command) -> Output {
    spawn(cmd).wait()
}

/// A command for `prog` whose environment is the current one minus `LD_PRELOAD` and
/// every `CAPSULE_*` variable, so that each test states its whole configuration.
pub fn clean_command(prog: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(prog);
    cmd.env_remove("LD_PRELOAD");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CAPSULE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A command running `prog args` under the shim (plain `LD_PRELOAD`, no loader) with
/// the given `CAPSULE_*` (or other) variables.
pub fn preload_command(env: &[(&str, &str)], prog: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut cmd = clean_command(prog);
    cmd.args(args)
        .env("LD_PRELOAD", shim())
        .envs(env.iter().copied());
    cmd
}

/// Runs `prog args` under the shim with the given variables.
pub fn run_preload(env: &[(&str, &str)], prog: impl AsRef<OsStr>, args: &[&str]) -> Output {
    run(&mut preload_command(env, prog, args))
}

/// Runs `prog args` natively (no shim, no capsule settings).
pub fn run_native(prog: impl AsRef<OsStr>, args: &[&str]) -> Output {
    run(clean_command(prog).args(args))
}

/// Whether the harness can start programs as another real user (it runs as root).
pub fn can_switch_user() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the user NOBODY can reach `path`: every ancestor directory searchable and the
/// file itself readable and executable by others.
fn others_can_use(path: &Path) -> bool {
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .unwrap_or(0)
    };
    path.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0) && mode(&path) & 0o005 == 0o005
}

/// Starts programs as the real unprivileged user NOBODY (when the harness is root), so
/// that a call the shim fails to intercept cannot change the host name or clock: the
/// kernel refuses it. (A non-root harness runs them as itself; the kernel refuses too.)
///
/// When the build directory is out of NOBODY's reach (a checkout under a private home),
/// the binaries are copied into a temporary directory first.
pub struct AsNobody {
    copies: Option<TempDir>,
}

impl AsNobody {
    pub fn new() -> AsNobody {
        AsNobody { copies: None }
    }

    /// A path to `path` that NOBODY can use (the original, or a copy).
    pub fn reach(&mut self, path: &Path) -> PathBuf {
        if !can_switch_user() || others_can_use(path) {
            return path.to_path_buf();
        }
        let dir = self.copies.get_or_insert_with(|| {
            let dir = TempDir::new("nobody-bin");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod copies dir");
            dir
        });
        let copy = dir.join(path.file_name().and_then(OsStr::to_str).expect("file name"));
        if !copy.exists() {
            std::fs::copy(path, &copy)
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", path.display()));
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
                .expect("chmod copy");
        }
        copy
    }

    fn switch(cmd: &mut Command) {
        if can_switch_user() {
            cmd.uid(NOBODY).gid(NOBODY);
        }
    }

    /// `prog args` under the shim with `env`, as NOBODY. `prog` may be a bare name
    /// found in PATH (system programs are reachable by everyone).
    pub fn preload_command(
        &mut self,
        env: &[(&str, &str)],
        prog: impl AsRef<Path>,
        args: &[&str],
    ) -> Command {
        let prog = prog.as_ref();
        let prog = if prog.is_absolute() {
            self.reach(prog)
        } else {
            prog.to_path_buf()
        };
        let shim = self.reach(&shim());
        let mut cmd = clean_command(prog);
        cmd.args(args)
            .env("LD_PRELOAD", shim)
            .envs(env.iter().copied());
        Self::switch(&mut cmd);
        cmd
    }

    /// `capsule ARGS...` with `home`, as NOBODY (the loader injects the shim found
    /// beside itself, so both are made reachable together).
    pub fn capsule_command(&mut self, home: &CapsuleHome, args: &[&str]) -> Command {
        self.reach(&shim());
        let mut cmd = clean_command(self.reach(&capsule_bin()));
        cmd.env("CAPSULE_HOME", home.path()).args(args);
        Self::switch(&mut cmd);
        cmd
    }
}

impl Default for AsNobody {
    fn default() -> Self {
        AsNobody::new()
    }
}

/// A fresh `$CAPSULE_HOME` for `capsule` commands, removed on drop.
pub struct CapsuleHome {
    dir: TempDir,
}

impl CapsuleHome {
    pub fn new() -> CapsuleHome {
        CapsuleHome {
            dir: TempDir::new("home"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `capsule ARGS...` command using this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = clean_command(capsule_bin());
        cmd.env("CAPSULE_HOME", self.dir.path()).args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        // The shim must be there for the loader to inject it.
        shim();
        run(&mut self.command(args))
    }
}

impl Default for CapsuleHome {
    fn default() -> Self {
        CapsuleHome::new()
    }
}

/// Runs `capsule ARGS...` with a fresh `$CAPSULE_HOME`.
pub fn run_capsule(args: &[&str]) -> Output {
    CapsuleHome::new().run(args)
}

/// What a program printed on stdout, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a program printed on stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Status, stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Asserts that the program exited 0 and returns its stdout.
#[track_caller]
pub fn success(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: expected exit status 0\n{}",
        describe(out)
    );
    stdout(out)
}

/// Asserts that a C probe exited 0 and reported OK as its last line.
#[track_caller]
pub fn probe_ok(out: &Output, what: &str) -> String {
    let text = stdout(out);
    assert!(
        out.status.success() && text.lines().last() == Some("OK"),
        "{what}: the probe did not report OK\n{}",
        describe(out)
    );
    text
}

/// Parses the `KEY=VALUE` lines a probe printed (later lines win).
pub fn key_values(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The host name of the machine (the harness itself runs outside any capsule).
pub fn host_name() -> String {
    uts_field(|u| &u.nodename)
}

/// The NIS domain name of the machine, as uname reports it.
pub fn host_domain() -> String {
    uts_field(|u| &u.domainname)
}

fn uts_field(field: fn(&libc::utsname) -> &[libc::c_char; 65]) -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid utsname.
    assert_eq!(unsafe { libc::uname(&mut u) }, 0, "uname failed");
    let bytes: Vec<u8> = field(&u)
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The harness's real and effective uid.
pub fn host_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// The harness's real gid.
pub fn host_gid() -> u32 {
    // SAFETY: getgid has no preconditions.
    unsafe { libc::getgid() }
}

/// The harness's supplementary groups.
pub fn host_groups() -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 1024];
    // SAFETY: the buffer holds 1024 entries.
    let n = unsafe { libc::getgroups(1024, groups.as_mut_ptr()) };
    assert!(n >= 0, "getgroups failed");
    groups.truncate(n as usize);
    groups
}

/// The kernel's realtime clock, in seconds.
pub fn now_secs() -> f64 {
    clock_secs(libc::CLOCK_REALTIME)
}

/// The kernel's monotonic clock, in seconds.
pub fn monotonic_secs() -> f64 {
    clock_secs(libc::CLOCK_MONOTONIC)
}

fn clock_secs(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The Python 3 interpreter itself (pyenv's shim scripts resolved once, natively).
pub fn python3() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = run_native("python3", &["-c", "import sys; print(sys.executable)"]);
            let path = stdout(&out).trim().to_string();
            if out.status.success() && Path::new(&path).is_file() {
                PathBuf::from(path)
            } else {
                PathBuf::from("/usr/bin/python3")
            }
        })
        .clone()
}

/// How many entries of an `LD_PRELOAD` value name `libcapsule.so`, and whether each of
/// them is the shim under test.
pub fn shim_entries(ld_preload: &str) -> (usize, bool) {
    let shim = std::fs::canonicalize(shim()).expect("shim path");
    let entries: Vec<&str> = ld_preload
        .split([':', ' '])
        .filter(|e| !e.is_empty())
        .filter(|e| Path::new(e).file_name() == Some(OsStr::new("libcapsule.so")))
        .collect();
    let all_ours = entries
        .iter()
        .all(|e| std::fs::canonicalize(e).map(|p| p == shim).unwrap_or(false));
    (entries.len(), all_ours)
}

/// Asserts that an `LD_PRELOAD` value holds the shim under test exactly once.
#[track_caller]
pub fn assert_shim_once(ld_preload: &str, what: &str) {
    let (count, ours) = shim_entries(ld_preload);
    assert!(
        count == 1 && ours,
        "{what}: LD_PRELOAD should name {} exactly once, got {ld_preload:?}",
        shim().display()
    );
}
