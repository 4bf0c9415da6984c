//! Managing running capsules: `capsule ps` (running, then exited after the program is
//! killed behind capsule's back, exit codes, ports, a capsule whose loader died too),
//! `capsule stop` (the stop marker, a program that ignores SIGTERM), `capsule exec`
//! (the same private layer, host name, identity; exit statuses; refused when stopped),
//! `capsule rm` (refused while running, `-f`), `capsule logs` refusals.
//!
//! Each test starts its capsules with `capsule run --name N ... -- PROG` in the
//! background, in its own `$CAPSULE_HOME`, and judges by what the programs printed and
//! by what is on disk.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A capsule started in the background with `capsule run --name NAME`.
struct Capsule<'a> {
    home: &'a CapsuleHome,
    name: String,
    run: Option<Running>,
}

impl<'a> Capsule<'a> {
    /// `capsule run --name NAME FLAGS -- COMMAND`, waited for until `ps` calls it
    /// running.
    fn start(home: &'a CapsuleHome, name: &str, flags: &[&str], command: &[&str]) -> Self {
        shim();
        let mut args = vec!["run", "--name", name];
        args.extend_from_slice(flags);
        args.push("--");
        args.extend_from_slice(command);
        let capsule = Capsule {
            home,
            name: name.to_string(),
            run: Some(spawn(&mut home.command(&args))),
        };
        capsule.wait_for_status("running");
        capsule
    }

    fn dir(&self) -> PathBuf {
        self.home.path().join("capsules").join(&self.name)
    }

    /// A file of the capsule's private upper layer.
    fn upper(&self, path: &str) -> PathBuf {
        self.dir().join("upper").join(path.trim_start_matches('/'))
    }

    /// The pid `capsule run` recorded for the program.
    fn pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.dir().join("pid")).expect("pid file");
        text.trim().parse().expect("a pid")
    }

    fn wait_for_status(&self, status: &str) {
        let name = &self.name;
        wait_until(&format!("capsule {name} to be {status}"), || {
            ps_row(self.home, name, true).is_some_and(|row| row["STATUS"] == status)
        });
    }

    /// Waits for a file the program writes into its upper layer (it is ready).
    fn wait_for_file(&self, path: &str) {
        let file = self.upper(path);
        wait_until(&format!("{} to exist", file.display()), || file.exists());
    }

    /// How the background `capsule run` ended.
    fn finish(&mut self) -> Output {
        self.run.take().expect("still running").wait()
    }
}

impl Drop for Capsule<'_> {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            // SAFETY: kill(2) on the process group the harness made for this
            // `capsule run` (its program is in it); no memory is involved.
            unsafe {
                libc::kill(-(run.id() as libc::pid_t), libc::SIGKILL);
            }
        }
    }
}

/// Polls `done` until it holds; fails the test after the harness's TIMEOUT.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The row of `capsule ps [-a]` for `name`, by column header.
fn ps_row(home: &CapsuleHome, name: &str, all: bool) -> Option<HashMap<String, String>> {
    let out = home.run(if all { &["ps", "-a"] } else { &["ps"] });
    let text = success(&out, "capsule ps");
    let mut lines = text.lines();
    let header = lines.next().expect("a header line");
    let starts: Vec<(usize, &str)> = header
        .split_whitespace()
        .map(|word| (header.find(word).expect("a header word"), word))
        .collect();
    let line = lines.find(|line| line.split_whitespace().next() == Some(name))?;
    let mut row = HashMap::new();
    for (i, (start, word)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(line.len(), |(next, _)| *next);
        row.insert(word.to_string(), line[*start..end].trim().to_string());
    }
    Some(row)
}

/// The pids of live processes whose environment names the capsule's config or state
/// directory (the shim passes the latter on to every program a capsule starts).
fn capsule_processes(capsule: &Capsule) -> Vec<i32> {
    let wanted = [
        format!("CAPSULE_CONFIG={}", capsule.dir().join("config").display()),
        format!("CAPSULE_STATE_DIR={}", capsule.dir().display()),
    ];
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|var| wanted.iter().any(|w| var == w.as_bytes()))
            })
        })
        .collect()
}

/// Asserts a refusal: exit status 125 and one line on stderr containing `text`.
#[track_caller]
fn assert_refused(out: &Output, text: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(125), "{}", describe(out));
    assert_eq!(err.lines().count(), 1, "one line expected:\n{err}");
    assert!(err.contains(text), "expected {text:?} in:\n{err}");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

#[test]
fn ps_shows_a_killed_program_as_exited_never_running() {
    let home = CapsuleHome::new();
    let port = free_port();
    let publish = format!("{port}:8000");
    let mut web = Capsule::start(&home, "web", &["-p", &publish], &["sleep", "300"]);
    let row = ps_row(&home, "web", false).expect("a running capsule is listed by default");
    assert_eq!(row["PID"], web.pid().to_string());
    assert_eq!(row["COMMAND"], "sleep 300");
    assert_eq!(row["PORTS"], format!("0.0.0.0:{port}->8000/tcp"));
    let uptime = &row["UPTIME"];
    assert!(
        uptime.ends_with('s')
            && uptime[..uptime.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_digit()),
        "a fresh capsule's uptime is in seconds: {uptime:?}"
    );

    // Killed directly, not through capsule.
    // SAFETY: kill(2) on the capsule's program, which this test started.
    assert_eq!(unsafe { libc::kill(web.pid(), libc::SIGKILL) }, 0);
    assert_eq!(web.finish().status.code(), Some(137));
    web.wait_for_status("killed (SIGKILL)");
    let row = ps_row(&home, "web", true).expect("listed with -a");
    assert_eq!(row["PID"], "-");
    assert_eq!(row["UPTIME"], "-");
    assert_eq!(row["PORTS"], "-");
    assert_eq!(row["COMMAND"], "sleep 300", "the recorded command");
    assert!(
        ps_row(&home, "web", false).is_none(),
        "plain ps lists only capsules that are up"
    );

    // An exit status, also in JSON.
    let out = home.run(&["run", "--name", "batch", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(
        ps_row(&home, "batch", true).unwrap()["STATUS"],
        "exited (3)"
    );
    let json = success(
        &home.run(&["ps", "-a", "--format", "json"]),
        "ps --format json",
    );
    let list: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let entry = |name: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {json}"))
    };
    let batch = entry("batch");
    assert_eq!(
        (&batch["pid"], &batch["status"], &batch["exit_code"]),
        (&serde_json::Value::Null, &"exited".into(), &3.into()),
        "{json}"
    );
    let web = entry("web");
    assert_eq!(
        (&web["status"], &web["exit_code"], &web["signal"]),
        (
            &"killed".into(),
            &serde_json::Value::Null,
            &"SIGKILL".into()
        ),
        "{json}"
    );
}

#[test]
fn ps_shows_a_capsule_whose_loader_died_too_as_exited() {
    let home = CapsuleHome::new();
    let mut lost = Capsule::start(&home, "lost", &[], &["sleep", "300"]);
    let pid = lost.pid();
    // The whole group: `capsule run` and its program, so nobody records the end.
    let run = lost.run.take().expect("running");
    // SAFETY: kill(2) on the process group the harness made for this `capsule run`.
    assert_eq!(
        unsafe { libc::kill(-(run.id() as libc::pid_t), libc::SIGKILL) },
        0
    );
    assert_eq!(run.wait().status.code(), None, "killed by a signal");
    wait_until("the program to be gone", || {
        std::fs::read(format!("/proc/{pid}/environ")).map_or(true, |env| env.is_empty())
    });
    assert!(!lost.dir().join("exit").exists(), "nobody recorded the end");
    assert_eq!(
        ps_row(&home, "lost", true).unwrap()["STATUS"],
        "exited (unknown)"
    );
}

#[test]
fn stop_terminates_and_leaves_a_stop_marker() {
    let home = CapsuleHome::new();
    let mut app = Capsule::start(&home, "app", &[], &["sleep", "300"]);
    let out = home.run(&["stop", "app"]);
    assert_eq!(success(&out, "capsule stop"), "app\n");
    assert!(app.dir().join("stop").exists(), "the stop marker");
    assert_eq!(app.finish().status.code(), Some(143), "SIGTERM ended it");
    assert_eq!(
        ps_row(&home, "app", true).unwrap()["STATUS"],
        "killed (SIGTERM)"
    );

    let again = home.run(&["stop", "app"]);
    assert_eq!(success(&again, "stop again"), "app\n");
    assert!(
        stderr(&again).contains("app was not running"),
        "{}",
        describe(&again)
    );
    assert_refused(&home.run(&["stop", "nope"]), "no such capsule: nope");

    // A later run of the name forgets the marker.
    let out = home.run(&["run", "--name", "app", "--", "true"]);
    success(&out, "run after stop");
    assert!(
        !app.dir().join("stop").exists(),
        "the marker is cleared at start"
    );
}

#[test]
fn stop_kills_a_program_that_ignores_sigterm() {
    let home = CapsuleHome::new();
    let script = "trap '' TERM; echo ready > /tmp/ready; sleep 300; echo not reached";
    let mut stubborn = Capsule::start(&home, "stubborn", &[], &["sh", "-c", script]);
    stubborn.wait_for_file("/tmp/ready");
    wait_until("sh and its sleep", || {
        capsule_processes(&stubborn).len() >= 2
    });

    let out = home.run(&["stop", "-t", "1", "stubborn"]);
    assert_eq!(success(&out, "capsule stop -t 1"), "stubborn\n");
    assert!(
        capsule_processes(&stubborn).is_empty(),
        "stop returned with capsule processes left"
    );
    assert_eq!(
        stubborn.finish().status.code(),
        Some(137),
        "SIGKILL ended it"
    );
    assert_eq!(
        ps_row(&home, "stubborn", true).unwrap()["STATUS"],
        "killed (SIGKILL)"
    );
}

#[test]
fn stop_all_stops_every_running_capsule() {
    let home = CapsuleHome::new();
    let mut one = Capsule::start(&home, "one", &[], &["sleep", "300"]);
    // A program that executes another through the shim is still the capsule's.
    let script = "echo ready > /tmp/ready; exec sleep 300";
    let mut two = Capsule::start(&home, "two", &[], &["sh", "-c", script]);
    two.wait_for_file("/tmp/ready");
    let row = ps_row(&home, "two", false).expect("still listed as up");
    // The command as given, as docker ps shows it (not what it executed since).
    assert_eq!(
        (row["STATUS"].as_str(), row["COMMAND"].as_str()),
        (
            "running",
            "sh -c \"echo ready > /tmp/ready; exec sleep 300\""
        )
    );
    let out = home.run(&["stop", "--all"]);
    assert_eq!(success(&out, "capsule stop --all"), "one\ntwo\n");
    assert_eq!(one.finish().status.code(), Some(143));
    assert_eq!(two.finish().status.code(), Some(143));
    assert!(ps_row(&home, "one", false).is_none() && ps_row(&home, "two", false).is_none());
}

#[test]
fn exec_joins_the_running_capsule() {
    let home = CapsuleHome::new();
    // A program that exists only in the capsule's private layer, then the marker.
    let script =
        "mkdir -p /tmp/bin && printf '#!/bin/sh\\necho from-upper\\n' > /tmp/bin/upper-only \
                  && chmod 755 /tmp/bin/upper-only && echo from-main > /tmp/shared; sleep 300";
    let flags = [
        "--hostname",
        "box",
        "--user",
        "1234",
        "--time-at",
        "2030-06-01T00:00:00Z",
    ];
    let capsule = Capsule::start(&home, "box", &flags, &["sh", "-c", script]);
    capsule.wait_for_file("/tmp/shared");
    let exec = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        home.run(&all)
    };

    let out = exec(&["box", "--", "cat", "/tmp/shared"]);
    assert_eq!(
        success(&out, "exec cat"),
        "from-main\n",
        "the same private layer"
    );
    assert_eq!(
        success(&exec(&["box", "uname", "-n"]), "exec uname"),
        "box\n"
    );
    assert_eq!(success(&exec(&["box", "id", "-u"]), "exec id"), "1234\n");
    assert_eq!(
        success(&exec(&["box", "date", "-u", "+%Y"]), "exec date"),
        "2030\n",
        "the capsule's clock"
    );
    assert_eq!(
        success(&exec(&["-w", "/tmp", "box", "pwd"]), "exec -w"),
        "/tmp\n"
    );
    assert_eq!(
        success(&exec(&["--user", "0", "box", "id", "-u"]), "exec --user 0"),
        "0\n"
    );
    assert_eq!(
        success(
            &exec(&[
                "-e",
                "GREETING=hi there",
                "box",
                "--",
                "sh",
                "-c",
                "echo $GREETING"
            ]),
            "exec -e"
        ),
        "hi there\n"
    );
    let out = exec(&["box", "--", "sh", "-c", "echo from-exec > /tmp/by-exec"]);
    success(&out, "exec writes");
    assert_eq!(
        std::fs::read_to_string(capsule.upper("/tmp/by-exec")).unwrap(),
        "from-exec\n",
        "exec writes into the capsule's upper layer"
    );

    let out = exec(&["-e", "PATH=/tmp/bin:/usr/bin:/bin", "box", "upper-only"]);
    assert_eq!(
        success(&out, "exec of a program of the private layer"),
        "from-upper\n",
        "the program is looked for inside the capsule"
    );
    assert!(!std::path::Path::new("/tmp/bin/upper-only").exists());
    assert_eq!(
        exec(&["box", "--", "sh", "-c", "exit 7"]).status.code(),
        Some(7)
    );
    let missing = exec(&["box", "--", "no-such-program-xyz"]);
    assert_eq!(missing.status.code(), Some(127), "{}", describe(&missing));
    assert_refused(&exec(&["nope", "--", "true"]), "no such capsule: nope");

    success(&home.run(&["stop", "box"]), "capsule stop");
    assert_refused(&exec(&["box", "--", "true"]), "capsule box is not running");
}

#[test]
fn rm_refuses_a_running_capsule_unless_forced() {
    let home = CapsuleHome::new();
    let script = "mkdir -p /tmp/ro/sub && chmod 500 /tmp/ro && echo ok > /tmp/ready; sleep 300";
    let mut capsule = Capsule::start(&home, "gone", &[], &["sh", "-c", script]);
    capsule.wait_for_file("/tmp/ready");

    assert_refused(&home.run(&["rm", "gone"]), "capsule gone is running");
    assert!(capsule.upper("/tmp/ready").exists(), "nothing was removed");

    let out = home.run(&["rm", "-f", "gone"]);
    assert_eq!(success(&out, "capsule rm -f"), "gone\n");
    assert!(!capsule.dir().exists(), "the state directory is gone");
    assert_eq!(capsule.finish().status.code(), Some(137));
    assert!(capsule_processes(&capsule).is_empty());
    assert_refused(&home.run(&["rm", "gone"]), "no such capsule: gone");

    let out = home.run(&[
        "run",
        "--name",
        "done",
        "--",
        "sh",
        "-c",
        "echo x > /tmp/kept",
    ]);
    success(&out, "a capsule that ends");
    assert!(home.path().join("capsules/done/upper/tmp/kept").exists());
    assert_eq!(success(&home.run(&["rm", "done"]), "capsule rm"), "done\n");
    assert!(!home.path().join("capsules/done").exists());
}

#[test]
fn logs_refuses_unknown_capsules_and_capsules_without_a_log() {
    let home = CapsuleHome::new();
    assert_refused(&home.run(&["logs", "nope"]), "no such capsule: nope");
    success(&home.run(&["run", "--name", "plain", "--", "true"]), "run");
    assert_refused(&home.run(&["logs", "plain"]), "capsule plain keeps no log");
}

/// Stops every capsule of a home when dropped, so that a failing test leaves no
/// detached `capsule up` behind.
struct StopAllOnDrop<'a>(&'a CapsuleHome);

impl Drop for StopAllOnDrop<'_> {
    fn drop(&mut self) {
        let _ = run(&mut self.0.command(&["stop", "--all", "-t", "0"]));
    }
}

#[test]
fn logs_follows_a_capsule_of_capsule_up_until_it_ends() {
    let home = CapsuleHome::new();
    let _cleanup = StopAllOnDrop(&home);
    let work = TempDir::new("logs");
    let signal = work.join("signal");
    std::fs::create_dir(&signal).unwrap();
    let manifest = work.join("capsule.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"
[capsule.talker]
command = ["sh", "-c", "echo first; while [ ! -e /signal/go ]; do sleep 0.05; done; echo second"]
volumes = ["{}:/signal"]
"#,
            signal.display()
        ),
    )
    .unwrap();
    let out = home.run(&["up", "--detach", "-f", manifest.to_str().unwrap()]);
    success(&out, "capsule up --detach");
    wait_until("the first line in the log", || {
        stdout(&home.run(&["logs", "talker"])) == "first\n"
    });

    let follower = spawn(&mut home.command(&["logs", "-f", "talker"]));
    let log = home.path().join("capsules/talker/log");
    let fds = format!("/proc/{}/fd", follower.id());
    wait_until("capsule logs -f to have the log open", || {
        std::fs::read_dir(&fds).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == log))
        })
    });
    std::fs::write(signal.join("go"), "").unwrap();
    let out = follower.wait();
    assert_eq!(
        success(&out, "capsule logs -f"),
        "first\nsecond\n",
        "followed to the end of the capsule"
    );
    assert_eq!(
        ps_row(&home, "talker", true).unwrap()["STATUS"],
        "exited (0)"
    );
}

#[test]
fn stop_keeps_a_restarting_capsule_of_capsule_up_down() {
    let home = CapsuleHome::new();
    let _cleanup = StopAllOnDrop(&home);
    let work = TempDir::new("restart");
    // The program crashes while /gate/crash exists, and runs on once it is gone.
    let gate = work.join("gate");
    std::fs::create_dir(&gate).unwrap();
    std::fs::write(gate.join("crash"), "").unwrap();
    let manifest = work.join("capsule.toml");
    let capsule = format!(
        r#"
[capsule.crasher]
command = "echo crash; [ -e /gate/crash ] && exit 3; exec sleep 300"
restart = "on-failure"
volumes = ["{}:/gate"]
"#,
        gate.display()
    );
    std::fs::write(&manifest, capsule).unwrap();
    let out = home.run(&["up", "--detach", "-f", manifest.to_str().unwrap()]);
    success(&out, "capsule up --detach");
    wait_until("crasher to be restarting", || {
        ps_row(&home, "crasher", false).is_some_and(|row| row["STATUS"] == "restarting")
    });
    let dir = home.path().join("capsules/crasher");
    assert!(dir.join("supervisor").exists());
    // Whether the stop finds it waiting or restarted, it must stay down.
    std::fs::remove_file(gate.join("crash")).unwrap();

    let out = home.run(&["stop", "crasher"]);
    assert_eq!(success(&out, "capsule stop"), "crasher\n");
    assert!(dir.join("stop").exists(), "the stop marker");
    assert!(
        !dir.join("supervisor").exists(),
        "stop returned before the supervisor let the capsule go"
    );
    let expected = if stderr(&out).contains("crasher was waiting to be restarted; it will not be") {
        "exited (3)"
    } else {
        // It had been restarted before the stop came, and was running.
        "killed (SIGTERM)"
    };
    assert_eq!(ps_row(&home, "crasher", true).unwrap()["STATUS"], expected);
    assert!(ps_row(&home, "crasher", false).is_none(), "not up any more");
    assert!(stdout(&home.run(&["logs", "crasher"])).starts_with("crash\n"));
}

#[test]
fn ps_shows_the_host_ports_of_published_and_unpublished_binds() {
    let home = CapsuleHome::new();
    let python = python3();
    let server = "import socket, time
listeners = []
for port in (8000, 9000):
    s = socket.socket()
    s.bind(('0.0.0.0', port))
    s.listen()
    listeners.append(s)
open('/tmp/ready', 'w').write('x')
time.sleep(300)";
    let capsule = Capsule::start(
        &home,
        "ports",
        &["-p", "9000"],
        &[python.to_str().unwrap(), "-c", server],
    );
    capsule.wait_for_file("/tmp/ready");
    let ports = ps_row(&home, "ports", false).unwrap()["PORTS"].clone();
    // "0.0.0.0:H1->9000/tcp, H2->8000/tcp": published first, then picked ones.
    let host_ports: Vec<u16> = ports
        .split(", ")
        .map(|entry| {
            let (host, capsule_port) = entry.split_once("->").expect("HOST->PORT");
            let host = host.trim_start_matches("0.0.0.0:");
            assert!(
                capsule_port == "9000/tcp" || capsule_port == "8000/tcp",
                "{ports}"
            );
            host.parse()
                .unwrap_or_else(|_| panic!("a host port in {ports:?}"))
        })
        .collect();
    assert_eq!(host_ports.len(), 2, "{ports}");
    assert!(
        ports.starts_with("0.0.0.0:") && ports.ends_with("->8000/tcp"),
        "{ports}"
    );
    for port in host_ports {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("host port {port} from ps ({ports}): {e}"));
    }
}

/// `CAPSULE_NAME` is in the first process's own environment (a shell reads `environ`
/// directly, before any exec the shim could see), and in `capsule exec`'s.
#[test]
fn the_first_process_and_exec_have_capsule_name() {
    let home = CapsuleHome::new();
    let out = home.run(&[
        "run",
        "--rm",
        "--name",
        "zz",
        "--",
        "sh",
        "-c",
        "echo \"[$CAPSULE_NAME]\"",
    ]);
    assert_eq!(success(&out, "run sh"), "[zz]\n");
    let script = "echo \"[$CAPSULE_NAME]\" > /tmp/name; exec sleep 300";
    let capsule = Capsule::start(&home, "named", &[], &["sh", "-c", script]);
    capsule.wait_for_file("/tmp/name");
    assert_eq!(
        success(
            &home.run(&["exec", "named", "cat", "/tmp/name"]),
            "exec cat"
        ),
        "[named]\n"
    );
    let out = home.run(&["exec", "named", "sh", "-c", "echo \"[$CAPSULE_NAME]\""]);
    assert_eq!(success(&out, "exec sh"), "[named]\n");
    let _ = home.run(&["stop", "named"]);
}
