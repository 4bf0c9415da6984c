//! What a Docker user types (issue 16, parts 3 and 4): `ps` and `inspect` of a
//! `--root` capsule show the command as given, `inspect`/`--format json`, `run -d`
//! supervised with `logs --tail/--since/-t/-f`, `stop`, `rm`, `--entrypoint`, `-it` on
//! a terminal and without one, `cp` both ways through the capsule's view (lower layer
//! unchanged), the `-p` forms and a host port in use, `commit` without the loader's
//! `/etc/hostname`, listings into a closed pipe, completions and man pages.
//!
//! Each test has its own `$CAPSULE_HOME`; detached capsules are stopped when the test
//! ends, also when it fails. Everything is judged by what real programs printed and by
//! what is on disk.

mod common;
#[path = "image_support.rs"]
mod image_support;

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A home whose detached capsules are stopped on drop.
struct Home {
    home: CapsuleHome,
}

impl Home {
    fn new() -> Home {
        shim();
        Home {
            home: CapsuleHome::new(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.home.run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        success(&self.run(args), &format!("capsule {}", args.join(" ")))
    }

    fn command(&self, args: &[&str]) -> Command {
        self.home.command(args)
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.home.path().join("capsules").join(name)
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}):\n{text}"))
    }

    fn inspect(&self, name: &str) -> Value {
        let list = self.json(&["inspect", name]);
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        list[0].clone()
    }

    fn status(&self, name: &str) -> String {
        self.inspect(name)["state"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut(&Home) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = run(&mut self.home.command(&["stop", "-t", "0", "--all"]));
    }
}

/// A root file system of host programs (see `image_support::compose_root`).
fn root(scratch: &TempDir) -> PathBuf {
    let root = scratch.join("root");
    image_support::compose_root(&root);
    fs::canonicalize(root).unwrap()
}

/// Every file under `dir` with its content, for "unchanged" checks.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
                out.push((path, Vec::new()));
            } else if meta.is_file() {
                out.push((path.clone(), fs::read(&path).unwrap()));
            } else {
                out.push((path, Vec::new()));
            }
        }
    }
    out.sort();
    out
}

fn pid_of(home: &Home, name: &str) -> i32 {
    fs::read_to_string(home.dir(name).join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn ps_and_inspect_show_the_command_as_given_for_a_root_capsule() {
    let scratch = TempDir::new("ps-root");
    let root = root(&scratch);
    let vol = scratch.join("vol");
    fs::create_dir(&vol).unwrap();
    let home = Home::new();
    let volume = format!("{}:/srv", vol.display());
    let out = home.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "--root",
        root.to_str().unwrap(),
        "-v",
        &volume,
        "--hostname",
        "box",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(out, "r\n");
    home.wait_for("r running", |h| h.status("r") == "running");
    let pid = pid_of(&home, "r");
    // The host's view: the program runs with the root's dynamic loader (host paths).
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let ps = home.ok(&["ps"]);
    let row = ps.lines().find(|l| l.starts_with("r ")).expect(&ps);
    assert!(
        row.ends_with("   sleep 30"),
        "ps shows the command as given: {row:?} (cmdline {:?})",
        String::from_utf8_lossy(&cmdline)
    );
    // It runs through the root's dynamic loader (what the kernel executed)...
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.starts_with(&root)
            && exe
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ld-linux"),
        "{}",
        exe.display()
    );
    // ...yet the host's ps shows the command: the shim moved argv to the start of the
    // argument area.
    let args: Vec<&[u8]> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(
        args,
        [&b"sleep"[..], b"30"],
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let host_ps = run(Command::new("ps").args(["-o", "args=", "-p", &pid.to_string()]));
    assert_eq!(success(&host_ps, "ps -o args"), "sleep 30\n");
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        "sleep\n"
    );
    // The program still has its arguments and its name (glibc's and its own).
    let out = home.run(&[
        "run",
        "--rm",
        "--root",
        root.to_str().unwrap(),
        "--",
        "sleep",
        "--bogus",
    ]);
    assert!(
        stderr(&out).starts_with("sleep: unrecognized option '--bogus'"),
        "{}",
        describe(&out)
    );
    let out = home.run(&[
        "run",
        "--rm",
        "--root",
        root.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo \"$0\" \"$1\"; cat /proc/$$/cmdline",
        "zero",
        "one two",
    ]);
    assert_eq!(
        stdout(&out)
            .split('\0')
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>(),
        [
            "zero one two\nsh",
            "-c",
            "echo \"$0\" \"$1\"; cat /proc/$$/cmdline",
            "zero",
            "one two"
        ],
        "{}",
        describe(&out)
    );
    let list = home.json(&["ps", "--format", "json"]);
    assert_eq!(list[0]["command"], serde_json::json!(["sleep", "30"]));
    assert_eq!(home.ok(&["ps", "-q"]), "r\n");
    // docker exec -it's flags are taken too.
    assert_eq!(
        home.ok(&["exec", "-it", "r", "--", "cat", "/etc/hostname"]),
        "box\n"
    );
    assert_eq!(list[0]["pid"], pid);

    let info = home.inspect("r");
    assert_eq!(info["name"], "r");
    assert_eq!(info["command"], serde_json::json!(["sleep", "30"]));
    assert_eq!(info["state"]["status"], "running");
    assert_eq!(info["state"]["running"], true);
    assert_eq!(info["state"]["pid"], pid);
    assert!(info["state"]["supervisor_pid"].as_i64().is_some(), "{info}");
    assert_eq!(info["root"], root.to_str().unwrap());
    let upper = info["upper"].as_str().unwrap();
    assert_eq!(Path::new(upper), home.dir("r").join("upper"));
    // The private layer is there: it holds the /etc/hostname the loader wrote.
    assert_eq!(
        fs::read_to_string(Path::new(upper).join("etc/hostname")).unwrap(),
        "box\n"
    );
    assert_eq!(
        info["mounts"],
        serde_json::json!([{"type": "bind", "source": vol.to_str().unwrap(),
            "destination": "/srv", "read_only": false}])
    );
    assert_eq!(info["config"]["hostname"], "box");
    assert_eq!(
        Path::new(info["log"].as_str().unwrap()),
        home.dir("r").join("log")
    );

    home.ok(&["stop", "-t", "0", "r"]);
    let info = home.inspect("r");
    assert_eq!(info["state"]["status"], "killed", "{info}");
    assert_eq!(info["state"]["signal"], "SIGKILL");
    assert!(info["state"]["pid"].is_null());
    // Several names; an unknown one is reported, the others printed.
    let out = home.run(&["inspect", "r", "nope"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        stderr(&out).contains("no such capsule: nope"),
        "{}",
        describe(&out)
    );
}

#[test]
fn run_detached_is_supervised_and_logs_stop_rm_work() {
    let home = Home::new();
    let before = now_secs();
    let started = Instant::now();
    let out = home.run(&[
        "run",
        "-d",
        "--name",
        "bg",
        "--",
        "sh",
        "-c",
        "echo one; echo two >&2; sleep 0.3; echo three; exec sleep 60",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), "bg\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "run -d returns at once"
    );
    home.wait_for("three lines", |h| {
        h.run(&["logs", "bg"])
            .stdout
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            == 3
    });
    assert_eq!(home.status("bg"), "running");
    assert_eq!(home.ok(&["logs", "bg"]), "one\ntwo\nthree\n");
    assert_eq!(home.ok(&["logs", "--tail", "1", "bg"]), "three\n");
    assert_eq!(home.ok(&["logs", "-n", "all", "bg"]), "one\ntwo\nthree\n");
    let stamped = home.ok(&["logs", "-t", "bg"]);
    let after = now_secs();
    let mut last = 0.0;
    for (line, text) in stamped.lines().zip(["one", "two", "three"]) {
        let (stamp, rest) = line.split_once(' ').expect(line);
        assert_eq!(rest, text);
        let at = rfc3339_secs(stamp);
        assert!(
            at >= before - 1.0 && at <= after + 1.0 && at >= last,
            "{line} in [{before}, {after}]"
        );
        last = at;
    }
    // --since between "two" and "three": only "three".
    let split = stamped
        .lines()
        .nth(2)
        .unwrap()
        .split_once(' ')
        .unwrap()
        .0
        .to_string();
    assert_eq!(home.ok(&["logs", "--since", &split, "bg"]), "three\n");
    assert_eq!(
        home.ok(&["logs", "--since", "1h", "bg"]),
        "one\ntwo\nthree\n"
    );
    assert_eq!(
        home.ok(&["logs", "--since", "2100-01-01T00:00:00Z", "bg"]),
        ""
    );
    let bad = home.run(&["logs", "--since", "soon", "bg"]);
    assert_eq!(bad.status.code(), Some(125));
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", describe(&bad));

    // logs -f ends when the capsule does.
    let follow = spawn(&mut home.command(&["logs", "-f", "--tail", "1", "bg"]));
    thread::sleep(Duration::from_millis(300));
    home.ok(&["stop", "-t", "5", "bg"]);
    let followed = follow.wait();
    assert!(followed.status.success(), "{}", describe(&followed));
    assert_eq!(stdout(&followed), "three\n");
    assert_eq!(home.status("bg"), "killed");
    assert!(home.dir("bg").is_dir());
    home.ok(&["rm", "bg"]);
    assert!(!home.dir("bg").exists());

    // --restart on-failure: the supervisor starts it again, the log keeps every run.
    home.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure",
        "--",
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    home.wait_for("a restart", |h| {
        h.ok(&["logs", "flaky"]).lines().count() >= 2
    });
    home.ok(&["stop", "flaky"]);
    // -d --rm: the state directory goes once the program has ended.
    home.ok(&["run", "-d", "--rm", "--name", "brief", "--", "true"]);
    home.wait_for("brief removed", |h| !h.dir("brief").exists());
}

/// Seconds since the epoch of `2026-12-06T19:00:00.123456789Z`.
fn rfc3339_secs(text: &str) -> f64 {
    let out = run(Command::new("date").args(["-d", text, "+%s.%N"]));
    success(&out, "date -d").trim().parse().expect(text)
}

#[test]
fn logs_of_up_capsules_take_the_same_flags() {
    let home = Home::new();
    let project = TempDir::new("up-logs");
    let manifest = project.join("capsule.toml");
    fs::write(
        &manifest,
        "[capsule.talk]\ncommand = \"for i in 1 2 3 4; do echo line $i; sleep 0.1; done\"\n",
    )
    .unwrap();
    home.ok(&["up", "-d", "-f", manifest.to_str().unwrap()]);
    let out = home.ok(&["logs", "-f", "talk"]);
    assert_eq!(out, "line 1\nline 2\nline 3\nline 4\n");
    assert_eq!(
        home.ok(&["logs", "--tail", "2", "talk"]),
        "line 3\nline 4\n"
    );
    let stamped = home.ok(&["logs", "--timestamps", "--tail", "1", "talk"]);
    assert!(
        stamped.ends_with("Z line 4\n") && stamped.len() > 30,
        "{stamped}"
    );
    // The index is beside the log; the log itself holds only what the program wrote.
    assert_eq!(
        fs::metadata(home.dir("talk").join("log.index"))
            .unwrap()
            .len(),
        4 * 16
    );
}

#[test]
fn entrypoint_replaces_the_images_and_fronts_a_program_without_one() {
    let home = Home::new();
    let out = home.ok(&["run", "--rm", "--entrypoint", "echo", "--", "a", "b"]);
    assert_eq!(out, "a b\n");
    // docker's short -u for --user, in run and exec.
    assert_eq!(
        home.ok(&["run", "--rm", "-u", "4242:4343", "--", "id", "-u"]),
        "4242\n"
    );
    let work = TempDir::new("entry");
    let layout = image_support::umoci_layout(work.path());
    home.ok(&[
        "image",
        "import",
        &format!("{}:app", layout.display()),
        "--name",
        "app",
    ]);
    // The image's own: Entrypoint /bin/sh -c, Cmd echo "$GREETING" in $(pwd).
    assert_eq!(home.ok(&["run", "--rm", "--image", "app"]), "hi in /data\n");
    // --entrypoint drops Cmd too; the given program's arguments follow it.
    assert_eq!(
        home.ok(&[
            "run",
            "--rm",
            "--image",
            "app",
            "--entrypoint",
            "/bin/cat",
            "--",
            "/data/new"
        ]),
        "app\n"
    );
    assert_eq!(
        home.ok(&[
            "run",
            "--rm",
            "--image",
            "app",
            "--entrypoint",
            "",
            "--",
            "cat",
            "dir/fresh"
        ]),
        "fresh\n"
    );
    let out = home.run(&["run", "--rm", "--image", "app", "--entrypoint", ""]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        stderr(&out).contains("name a program"),
        "{}",
        describe(&out)
    );
}

#[test]
fn run_it_on_a_terminal_and_without_one() {
    shim();
    let home = Home::new();
    let script =
        "if test -t 0 && test -t 1; then echo TTY; else echo NOTTY; fi; read x; echo got $x";
    // On a terminal (a pty from python3): the program has it, and reads what is typed.
    let driver = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
time.sleep(0.5)
os.write(fd, b"hello\n")
deadline = time.time() + 20
while time.time() < deadline:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.stdout.write("\nSTATUS %d\n" % os.waitstatus_to_exitcode(status))
"#;
    let mut cmd = Command::new(python3());
    cmd.arg("-c")
        .arg(driver)
        .arg(capsule_bin())
        .args(["run", "-it", "--rm", "--", "sh", "-c", script])
        .env("CAPSULE_HOME", home.home.path());
    let out = run(&mut cmd);
    let text = stdout(&out);
    assert!(text.contains("TTY\r\n"), "{}", describe(&out));
    assert!(text.contains("got hello"), "{}", describe(&out));
    assert!(text.contains("STATUS 0"), "{}", describe(&out));
    // Without one (pipes, as in CI): it runs with the pipes, and nothing fails.
    let mut child = home
        .command(&["run", "-it", "--rm", "--", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), "NOTTY\ngot piped\n");
    assert_eq!(stderr(&out), "");
}

#[test]
fn cp_goes_through_the_capsules_view_and_never_writes_the_lower_layer() {
    let scratch = TempDir::new("cp");
    let root = root(&scratch);
    let vol = scratch.join("vol");
    fs::create_dir(&vol).unwrap();
    let home = Home::new();
    let r = root.to_str().unwrap();
    let volume = format!("{}:/srv", vol.display());
    let base = ["run", "--name", "c", "--root", r, "-v", &volume, "--"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    home.ok(&with(
        &base,
        &["sh", "-c", "rm /data/gone; echo made > /data/dir/made"],
    ));
    let lower = snapshot(&root);

    // Out: what the capsule sees, deleted files gone, both layers merged.
    let out = scratch.join("out");
    fs::create_dir(&out).unwrap();
    home.ok(&["cp", "c:/data", out.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(out.join("data/dir/made")).unwrap(),
        "made\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("data/dir/inner")).unwrap(),
        "inner\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("data/owned")).unwrap(),
        "hello\n"
    );
    assert!(
        !out.join("data/gone").exists(),
        "a deleted file is not copied"
    );
    assert_eq!(
        fs::read_link(out.join("data/link")).unwrap(),
        Path::new("owned")
    );
    // A file to a new name.
    home.ok(&[
        "cp",
        "c:/data/dir/made",
        out.join("renamed").to_str().unwrap(),
    ]);
    assert_eq!(fs::read_to_string(out.join("renamed")).unwrap(), "made\n");
    let missing = home.run(&["cp", "c:/data/gone", out.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(125));
    assert_eq!(
        stderr(&missing),
        "capsule: c:/data/gone: no such file or directory\n"
    );

    // In: over a lower file, into a directory, onto a deleted name, into a volume.
    let host = scratch.join("host.txt");
    fs::write(&host, "from the host\n").unwrap();
    let h = host.to_str().unwrap();
    home.ok(&["cp", h, "c:/data/owned"]);
    home.ok(&["cp", h, "c:/data/dir/"]);
    home.ok(&["cp", h, "c:/data/gone"]);
    home.ok(&["cp", h, "c:/srv/in-volume"]);
    let tree = scratch.join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/leaf"), "leaf\n").unwrap();
    home.ok(&["cp", tree.to_str().unwrap(), "c:/opt"]);
    assert_eq!(snapshot(&root), lower, "the lower layer is unchanged");
    let upper = home.dir("c").join("upper");
    assert_eq!(
        fs::read_to_string(upper.join("data/owned")).unwrap(),
        "from the host\n"
    );
    assert_eq!(
        fs::read_to_string(upper.join("data/dir/host.txt")).unwrap(),
        "from the host\n"
    );
    assert!(
        !upper.join("data/.wh.gone").exists(),
        "the whiteout went with the copy"
    );
    assert_eq!(
        fs::read_to_string(vol.join("in-volume")).unwrap(),
        "from the host\n"
    );
    assert!(!upper.join("srv/in-volume").exists());
    // The capsule's programs see it all.
    let seen = home.ok(&with(&base, &[
        "sh", "-c",
        "cat /data/owned /data/dir/host.txt /data/gone /srv/in-volume /opt/sub/leaf /data/dir/inner",
    ]));
    assert_eq!(seen, "from the host\n".repeat(4) + "leaf\ninner\n");

    // A read-only capsule takes nothing but in its volumes.
    home.ok(&[
        "run",
        "--name",
        "ro",
        "--root",
        r,
        "--read-only",
        "-v",
        &volume,
        "--",
        "sh",
        "-c",
        ":",
    ]);
    let refused = home.run(&["cp", h, "ro:/data/new"]);
    assert_eq!(refused.status.code(), Some(125));
    assert_eq!(
        stderr(&refused).lines().count(),
        1,
        "{}",
        describe(&refused)
    );
    assert!(
        stderr(&refused).contains("read-only"),
        "{}",
        describe(&refused)
    );
    assert!(!home.dir("ro").join("upper/data/new").exists());
    home.ok(&["cp", h, "ro:/srv/ro-volume"]);
    assert!(vol.join("ro-volume").exists());
    assert_eq!(snapshot(&root), lower);
}

#[test]
fn cp_into_a_running_capsule_is_seen_by_its_programs() {
    let scratch = TempDir::new("cp-live");
    let root = root(&scratch);
    let home = Home::new();
    // The program looks (and keeps looking) before the directory exists anywhere:
    // what the shim learnt of /data must not hide what cp adds.
    home.ok(&["run", "-d", "--name", "live", "--root", root.to_str().unwrap(), "--",
        "sh", "-c", "ls /data >/dev/null; echo looking; while ! test -e /data/arrivals/f; do sleep 0.05; done; cat /data/arrivals/f"]);
    home.wait_for("looking", |h| h.ok(&["logs", "live"]) == "looking\n");
    let tree = scratch.join("new");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("f"), "arrived\n").unwrap();
    home.ok(&["cp", tree.to_str().unwrap(), "live:/data/arrivals"]);
    home.wait_for("the program to see it", |h| h.status("live") == "exited");
    assert_eq!(home.ok(&["logs", "live"]), "looking\narrived\n");
    assert!(!root.join("data/arrivals").exists());
}

/// The local address (hex, as /proc/net/tcp writes it) of the listening TCP socket on
/// `port`.
fn listening_address(port: u16) -> Option<String> {
    let table = fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (addr, p) = fields.get(1)?.split_once(':')?;
        (u16::from_str_radix(p, 16).ok()? == port && fields.get(3) == Some(&"0A"))
            .then(|| addr.to_string())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn publish_forms_and_a_host_port_in_use() {
    let home = Home::new();
    let local = free_port();
    let spec = format!("127.0.0.1:{local}:8000");
    home.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &spec,
        "-p",
        "8001/tcp",
        "--",
        "python3",
        "-c",
        "import socket, time\n\
         a = socket.socket(); a.bind(('0.0.0.0', 8000)); a.listen()\n\
         b = socket.socket(); b.bind(('', 8001)); b.listen()\n\
         print('ready', flush=True); time.sleep(60)",
    ]);
    home.wait_for("ready", |h| h.ok(&["logs", "web"]) == "ready\n");
    // Bound on 127.0.0.1 only, although the program bound every address.
    assert_eq!(listening_address(local).as_deref(), Some("0100007F"));
    std::net::TcpStream::connect(("127.0.0.1", local)).expect("reachable on loopback");
    let info = home.inspect("web");
    let ports = info["ports"].as_array().unwrap();
    assert_eq!(ports[0]["host"], local);
    assert_eq!(ports[0]["host_address"], "127.0.0.1");
    let picked = ports[1]["host"]
        .as_u64()
        .expect("a host port picked for -p 8001") as u16;
    assert_eq!(ports[1]["port"], 8001);
    assert_eq!(listening_address(picked).as_deref(), Some("00000000"));
    let ps = home.ok(&["ps"]);
    assert!(
        ps.contains(&format!(
            "127.0.0.1:{local}->8000/tcp, 0.0.0.0:{picked}->8001/tcp"
        )),
        "{ps}"
    );

    // A host port someone holds: refused before anything is created or started.
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let marker = TempDir::new("port-marker");
    let touched = marker.join("ran");
    let out = home.run(&[
        "run",
        "--name",
        "clash",
        "-p",
        &format!("{port}:80/tcp"),
        "--",
        "touch",
        touched.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert_eq!(
        stderr(&out),
        format!("capsule: -p {port}:80/tcp: host port 0.0.0.0:{port}/tcp is already in use\n")
    );
    assert!(!touched.exists(), "the program did not start");
    assert!(!home.dir("clash").exists(), "nothing was created");
    let out = home.run(&["run", "-p", "[::1]:80:80", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    drop(held);
}

#[test]
fn commit_and_diff_leave_out_the_hostname_the_loader_wrote() {
    let scratch = TempDir::new("commit-host");
    let root = root(&scratch);
    let home = Home::new();
    home.ok(&["image", "import", root.to_str().unwrap(), "--name", "base"]);
    home.ok(&[
        "run",
        "--name",
        "w",
        "--image",
        "base",
        "--hostname",
        "hh",
        "--",
        "sh",
        "-c",
        "cat /etc/hostname; echo hi > /data/note",
    ]);
    assert!(home.dir("w").join("upper/etc/hostname").exists());
    assert_eq!(home.ok(&["diff", "w"]), "C /data\nA /data/note\n");
    home.ok(&["commit", "w", "base:note"]);
    let out = home.ok(&[
        "run",
        "--rm",
        "--image",
        "base:note",
        "--",
        "sh",
        "-c",
        "cat /data/note; test -e /etc/hostname && echo hostname || echo none",
    ]);
    assert_eq!(out, "hi\nnone\n");
    // The new layer on disk: the note, no etc/.
    let layers = home.home.path().join("images/layers");
    let mut with_note: Vec<PathBuf> = fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("data/note").exists())
        .collect();
    assert_eq!(with_note.len(), 1);
    let layer = with_note.pop().unwrap();
    assert!(!layer.join("etc").exists(), "{}", layer.display());

    // What the capsule chose to change is kept, /etc/hostname included.
    home.ok(&[
        "run",
        "--name",
        "v",
        "--image",
        "base",
        "--hostname",
        "hh",
        "--",
        "sh",
        "-c",
        "echo mine > /etc/hostname",
    ]);
    assert_eq!(home.ok(&["diff", "v"]), "A /etc\nA /etc/hostname\n");
    home.ok(&["commit", "v", "base:mine"]);
    assert_eq!(
        home.ok(&[
            "run",
            "--rm",
            "--image",
            "base:mine",
            "--",
            "cat",
            "/etc/hostname"
        ]),
        "mine\n"
    );
}

/// `capsule ARGS` with standard output a pipe nobody reads any more.
fn into_closed_pipe(home: &Home, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    home.command(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn listings_into_a_closed_pipe_end_quietly_as_unix_tools_do() {
    let home = Home::new();
    home.ok(&[
        "run",
        "--name",
        "noisy",
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/noisy-dir",
    ]);
    let project = TempDir::new("pipe");
    let manifest = project.join("capsule.toml");
    fs::write(&manifest, "[capsule.talk]\ncommand = \"seq 1 2000\"\n").unwrap();
    home.ok(&["up", "-f", manifest.to_str().unwrap()]);
    for args in [
        &["ps", "-a"][..],
        &["ps", "--format", "json", "-a"],
        &["diff", "noisy"],
        &["logs", "talk"],
        &["inspect", "noisy"],
        &["image", "ls"],
        &["completions", "bash"],
    ] {
        let out = into_closed_pipe(&home, args);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {}",
            describe(&out)
        );
        assert_eq!(stderr(&out), "", "{args:?}");
    }
    // Through a shell's pipe, as typed: the shell reports 141, nothing is printed.
    let line = format!(
        "{} logs talk | head -1; echo \"${{PIPESTATUS[0]}}\"",
        capsule_bin().display()
    );
    let out = run(Command::new("bash")
        .args(["-c", &line])
        .env("CAPSULE_HOME", home.home.path()));
    let text = stdout(&out);
    assert!(text == "1\n141\n" || text == "1\n0\n", "{}", describe(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definitions() {
    let home = Home::new();
    let bash = home.ok(&["completions", "bash"]);
    assert!(
        bash.contains("_capsule()") && bash.contains("--entrypoint"),
        "{bash}"
    );
    let file = TempDir::new("completions");
    let script = file.join("capsule.bash");
    fs::write(&script, &bash).unwrap();
    let out = run(Command::new("bash").args(["-n", script.to_str().unwrap()]));
    assert!(out.status.success(), "bash -n: {}", describe(&out));
    assert!(home
        .ok(&["completions", "zsh"])
        .starts_with("#compdef capsule"));
    assert!(home
        .ok(&["completions", "fish"])
        .contains("complete -c capsule"));
    let man = home.ok(&["man"]);
    assert!(man.contains(".TH capsule 1"), "{man}");
    let run_page = home.ok(&["man", "run"]);
    assert!(
        run_page.contains(".TH capsule-run 1") && run_page.contains("\\-\\-detach"),
        "{run_page}"
    );
    assert!(home.ok(&["man", "cp"]).contains("NAME:PATH"));
    let out = home.run(&["man", "nope"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(stderr(&out), "capsule: man nope: no such command\n");
}

#[test]
fn image_ls_as_json() {
    let scratch = TempDir::new("ls-json");
    let root = root(&scratch);
    let home = Home::new();
    assert_eq!(
        home.json(&["image", "ls", "--format", "json"]),
        serde_json::json!([])
    );
    home.ok(&[
        "image",
        "import",
        root.to_str().unwrap(),
        "--name",
        "base:1",
    ]);
    let list = home.json(&["image", "ls", "--format", "json"]);
    let image = &list[0];
    assert_eq!(image["reference"], "base:1");
    assert!(image["id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(image["id"].as_str().unwrap().len(), 7 + 64);
    assert_eq!(image["layers"], 1);
    assert!(image["size"].as_u64().unwrap() > 0);
    let table = home.ok(&["image", "ls"]);
    assert!(
        table.contains(&image["id"].as_str().unwrap()[7..19]),
        "{table}"
    );
    // `capsule images` is docker's and podman's spelling of the same listing.
    assert_eq!(home.ok(&["images"]), table);
    assert_eq!(home.json(&["images", "--format", "json"]), list);
}

#[test]
fn bad_input_to_the_new_commands_is_one_line_and_changes_nothing() {
    let home = Home::new();
    home.ok(&["run", "--name", "x", "--", "true"]);
    let before = snapshot(home.home.path());
    let scratch = TempDir::new("bad-cp");
    let host = scratch.join("f");
    fs::write(&host, "f\n").unwrap();
    let h = host.to_str().unwrap();
    let missing_dir = scratch.join("no/such/dir/");
    for (args, says) in [
        (vec!["cp", h, "nope:/tmp/f"], "no such capsule: nope"),
        (
            vec!["cp", h, scratch.str()],
            "one of SRC and DEST must be NAME:PATH",
        ),
        (
            vec!["cp", "x:/etc/hostname", "x:/tmp/h"],
            "between two capsules",
        ),
        (
            vec!["cp", "x:/no/such", scratch.str()],
            "x:/no/such: no such file or directory",
        ),
        (
            vec!["cp", "x:/etc/passwd", missing_dir.to_str().unwrap()],
            "no such directory",
        ),
        (
            vec!["cp", scratch.join("absent").to_str().unwrap(), "x:/tmp/"],
            "no such file or directory",
        ),
        (vec!["logs", "--tail", "many", "x"], "--tail \"many\""),
        (
            vec!["logs", "--since", "yesterday", "x"],
            "--since \"yesterday\"",
        ),
        (vec!["inspect", "bad/name"], "bad/name"),
        (
            vec!["run", "-p", "1.2.3:80:80", "--", "true"],
            "not an IPv4 address",
        ),
        (vec!["man", "nope"], "no such command"),
    ] {
        let out = home.run(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", describe(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("capsule: ") && err.contains(says),
            "{args:?}: {err}"
        );
    }
    // Usage errors are clap's (status 2): --restart needs -d, inspect needs a name.
    for args in [
        &["run", "--restart", "always", "--", "true"][..],
        &["inspect"],
    ] {
        assert_eq!(home.run(args).status.code(), Some(2), "{args:?}");
    }
    assert_eq!(
        snapshot(home.home.path()),
        before,
        "nothing changed in the home"
    );
    assert!(!scratch.join("no").exists());
}
