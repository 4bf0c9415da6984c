//! `capsule up`: a manifest's capsules started at once and supervised. What the
//! programs observed comes back through a volume (`./out:/out`, relative to the
//! manifest), since over the host's `/` everything else they write stays in their
//! private layers.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A manifest in a fresh directory, with an `out/` directory beside it.
struct Project {
    dir: TempDir,
    home: CapsuleHome,
}

impl Project {
    fn new(label: &str, manifest: &str) -> Project {
        let dir = TempDir::new(label);
        std::fs::create_dir(dir.join("out")).unwrap();
        std::fs::write(dir.join("capsule.toml"), manifest).unwrap();
        shim();
        Project {
            dir,
            home: CapsuleHome::new(),
        }
    }

    /// `capsule up ARGS...` run from the manifest's directory.
    fn up(&self, args: &[&str]) -> Command {
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        let mut cmd = self.home.command(&all);
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.join("out").join(name)
    }

    fn read_out(&self, name: &str) -> String {
        std::fs::read_to_string(self.out(name)).unwrap_or_else(|e| panic!("out/{name}: {e}"))
    }

    fn capsule_file(&self, capsule: &str, file: &str) -> PathBuf {
        self.home.path().join("capsules").join(capsule).join(file)
    }

    fn state(&self, capsule: &str, file: &str) -> String {
        std::fs::read_to_string(self.capsule_file(capsule, file))
            .unwrap_or_else(|e| panic!("{capsule}/{file}: {e}"))
            .trim()
            .to_string()
    }

    /// The capsule's program (the supervisor writes it just after the start, so a
    /// program may be seen at work a moment before).
    fn pid(&self, capsule: &str) -> i32 {
        wait_until("the pid file", || {
            self.capsule_file(capsule, "pid").exists()
        });
        self.state(capsule, "pid").parse().unwrap()
    }
}

/// Polls `done` until it holds; fails the test after a minute.
#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

fn send(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a process this test started; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn malformed_manifests_are_refused_with_file_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        // (manifest, expected place, expected key)
        ("[capsule.web]\ncommand = [\"true\"\n", "capsule.toml:2:", ""),
        ("[capsule.web]\ncommand = \"true\"\ncolour = \"red\"\n", "capsule.toml:3:", "capsule.web.colour"),
        ("[capsule.web]\ncommand = 3\n", "capsule.toml:2:", "capsule.web.command"),
        ("[capsule.web]\ncommand = \"true\"\nreplicas = \"two\"\n", "capsule.toml:3:", "capsule.web.replicas"),
        (
            "[capsule.web]\ncommand = \"true\"\nreplicas = 2\n\n[capsule.web-2]\ncommand = \"true\"\n",
            "capsule.toml:5:",
            "capsule.web-2",
        ),
        (
            "[capsule.a]\ncommand = \"true\"\ndepends_on = [\"nobody\"]\n",
            "capsule.toml:3:",
            "capsule.a.depends_on",
        ),
        (
            "[capsule.a]\ncommand = \"true\"\ndepends_on = [\"b\"]\n[capsule.b]\ncommand = \"true\"\ndepends_on = [\"a\"]\n",
            "capsule.toml:3:",
            "capsule.a.depends_on",
        ),
        ("[capsule.a]\ncommand = \"true\"\nroot = \"no-such-root\"\n", "capsule.toml:3:", "capsule.a.root"),
        ("[capsule.a]\ncommand = \"true\"\nnetwork = \"bridge\"\n", "capsule.toml:3:", "capsule.a.network"),
        ("[capsule.a]\ncommand = \"true\"\nbackstop = \"some\"\n", "capsule.toml:3:", "capsule.a.backstop"),
        (
            "[capsule.a]\ncommand = \"true\"\nnetwork = \"host\"\nports = [\"8000\"]\n",
            "capsule.toml:4:",
            "capsule.a.ports",
        ),
        ("[capsule.a]\ncommand = \"true\"\nimage = \"no-such-image\"\n", "capsule.toml:3:", "capsule.a.image"),
        (
            "[capsule.a]\ncommand = \"true\"\nports = [\"18090:80\"]\n\n[capsule.b]\ncommand = \"true\"\nports = [\"18090:81\"]\n",
            "capsule.toml:7:",
            "capsule.b.ports",
        ),
        (
            "[capsule.a]\ncommand = \"true\"\nports = [\"65535:80\"]\nreplicas = 2\n",
            "capsule.toml:3:",
            "capsule.a.ports",
        ),
        ("[capsule.a]\ncommand = \"true\"\nports = [\"http\"]\n", "capsule.toml:3:", "capsule.a.ports"),
        ("[capsule.a]\ncommand = \"true\"\nvolumes = [\"/no/such/dir:/x\"]\n", "capsule.toml:3:", "capsule.a.volumes"),
        ("[capsule.a]\ncommand = \"true\"\nvolumes = [\"out\"]\n", "capsule.toml:3:", "capsule.a.volumes"),
        ("[capsule.a]\ncommand = \"true\"\nuser = \"no-such-user\"\n", "capsule.toml:3:", "capsule.a.user"),
        ("[capsule.a]\ncommand = \"true\"\ntime_offset = \"soon\"\n", "capsule.toml:3:", "capsule.a.time_offset"),
        ("[capsule.a]\ncommand = \"true\"\ntime_at = \"2030-13-01\"\n", "capsule.toml:3:", "capsule.a.time_at"),
        ("[capsule.a]\ncommand = \"true\"\nrestart = \"sometimes\"\n", "capsule.toml:3:", "capsule.a.restart"),
        ("[capsule.a]\ncommand = [\"no-such-program-xyz\"]\n", "capsule.toml:2:", "capsule.a.command"),
        ("[capsule.a]\ncommand = \"true\"\nenv_file = \"missing.env\"\n", "capsule.toml:3:", "capsule.a.env_file"),
        ("[capsule.\"a b\"]\ncommand = \"true\"\n", "capsule.toml:1:", "capsule.a b"),
    ];
    for (manifest, place, key) in cases {
        let project = Project::new("up-bad", manifest);
        let out = run(&mut project.up(&[]));
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{manifest}\n{}",
            describe(&out)
        );
        assert_eq!(err.lines().count(), 1, "{manifest}: not one line\n{err}");
        assert!(
            err.starts_with(&format!("capsule: {place}")),
            "{manifest}: expected {place}\n{err}"
        );
        if !key.is_empty() {
            assert!(
                err.contains(&format!(": {key}: ")),
                "{manifest}: expected key {key}\n{err}"
            );
        }
        assert!(
            !project.home.path().join("capsules").exists(),
            "{manifest}: a capsule directory was created"
        );
    }
}

#[test]
fn on_failure_restarts_with_backoff_and_gives_up() {
    let project = Project::new(
        "up-restart",
        r#"
[capsule.crash]
command = "echo run >> /out/runs; exit 3"
volumes = ["./out:/out"]
restart = "on-failure"
"#,
    );
    let out = run(&mut project.up(&[]));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // The first run and five restarts.
    assert_eq!(lines(&project.read_out("runs")).len(), 6, "{text}");
    for n in 1..=5 {
        assert!(
            text.contains(&format!("crash | capsule: exited 3; restart {n} of 5 in ")),
            "{text}"
        );
    }
    assert!(
        text.contains("crash | capsule: exited 3; gave up after 5 restarts"),
        "{text}"
    );
    assert!(text.contains("\ncrash exited 3\n"), "{text}");
    assert_eq!(project.state("crash", "exit"), "exit=3");
    assert!(!project.capsule_file("crash", "supervisor").exists());
}

#[test]
fn always_restarts_clean_exits_and_no_and_on_failure_do_not() {
    let project = Project::new(
        "up-policies",
        r#"
[capsule.always]
command = "echo run >> /out/always"
volumes = ["./out:/out"]
restart = "always"

[capsule.fine]
command = "echo run >> /out/fine"
volumes = ["./out:/out"]
restart = "on-failure"

[capsule.never]
command = "echo run >> /out/never; exit 4"
volumes = ["./out:/out"]
"#,
    );
    let out = run(&mut project.up(&[]));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(lines(&project.read_out("always")).len(), 6, "{text}");
    assert_eq!(lines(&project.read_out("fine")).len(), 1, "{text}");
    assert_eq!(lines(&project.read_out("never")).len(), 1, "{text}");
    assert!(
        text.contains("always | capsule: exited 0; gave up after 5 restarts"),
        "{text}"
    );
    assert!(text.contains("never  | capsule: exited 4\n"), "{text}");
}

#[test]
fn replicas_have_their_own_host_names_and_private_layers() {
    // Each replica writes the same path in its layer, waits until all have, then reads
    // it back.
    let project = Project::new(
        "up-replicas",
        r#"
[capsule.web]
replicas = 3
volumes = ["./out:/out"]
command = '''
n=$(uname -n)
echo "$n" > /tmp/capsule-up-private
touch /out/ready-$n
while [ $(ls /out | grep -c '^ready-') -lt 3 ]; do sleep 0.05; done
echo "$n $(cat /tmp/capsule-up-private)" > /out/$n
'''
"#,
    );
    let out = run(&mut project.up(&[]));
    let text = success(&out, "capsule up");
    for i in 1..=3 {
        let name = format!("web-{i}");
        assert_eq!(
            project.read_out(&name),
            format!("{name} {name}\n"),
            "{text}"
        );
        let private = project.capsule_file(&name, "upper/tmp/capsule-up-private");
        assert_eq!(
            std::fs::read_to_string(private).unwrap(),
            format!("{name}\n")
        );
        assert!(
            text.contains(&format!("\n{name} exited 0"))
                || text.starts_with(&format!("{name} exited 0")),
            "{text}"
        );
    }
    assert!(!Path::new("/tmp/capsule-up-private").exists());
}

#[test]
fn no_log_prefix_leaves_standard_output_to_the_programs() {
    let project = Project::new(
        "up-no-prefix",
        r#"
[capsule.a]
command = 'echo "line from $(hostname)"'
[capsule.b]
command = 'echo "line from $(hostname)"; exit 3'
"#,
    );
    let out = run(&mut project.up(&["--no-log-prefix"]));
    let text = stdout(&out);
    let mut got = lines(&text);
    got.sort();
    assert_eq!(got, ["line from a", "line from b"], "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("capsule: b: exited with status 3") || err.contains("b exited 3"),
        "{err}"
    );
    // The logs are the same as with prefixes.
    for name in ["a", "b"] {
        let log = std::fs::read_to_string(project.capsule_file(name, "log")).unwrap();
        assert_eq!(log, format!("line from {name}\n"));
    }
}

#[test]
fn a_capsule_on_the_host_network_is_reached_at_the_host_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // srv binds the host's port itself; cli, a capsule of its own network that has not
    // bound that port, reaches the host's, so srv; srv is no peer by name.
    let project = Project::new(
        "up-host-network",
        &format!(
            r#"
[capsule.srv]
network = "host"
command = ['python3', '-c', 'import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(("127.0.0.1",{port}));s.listen();c,_=s.accept();c.sendall(b"from srv\n");c.close()']
[capsule.cli]
depends_on = ["srv"]
command = ['python3', '-c', '''import socket,time
for i in range(400):
    try:
        c=socket.create_connection(("127.0.0.1",{port})); break
    except OSError: time.sleep(0.05)
print("cli got", c.recv(100).decode().strip())
try:
    socket.getaddrinfo("srv", 80)
    print("srv resolves")
except socket.gaierror:
    print("srv is no peer")''']
"#
        ),
    );
    let out = run(&mut project.up(&["--no-log-prefix", "--exit-code-from", "cli"]));
    assert_eq!(
        success(&out, "capsule up"),
        "cli got from srv\nsrv is no peer\n"
    );
}

#[test]
fn depends_on_starts_dependencies_first() {
    // a needs b, b needs c: c starts first although the manifest lists it last. A
    // capsule's pid file is written before the next capsule starts.
    let project = Project::new("up-order", "");
    let capsules = project.home.path().join("capsules");
    let manifest = format!(
        r#"
[capsule.a]
command = "cat {c}/b/pid {c}/c/pid > /dev/null && echo a >> /out/saw-deps"
volumes = ["./out:/out"]
depends_on = ["b"]

[capsule.b]
command = "cat {c}/c/pid > /dev/null && echo b >> /out/saw-deps"
volumes = ["./out:/out"]
depends_on = ["c"]

[capsule.c]
command = "echo c >> /out/saw-deps"
volumes = ["./out:/out"]
"#,
        c = capsules.display()
    );
    std::fs::write(project.dir.join("capsule.toml"), manifest).unwrap();
    let out = run(&mut project.up(&[]));
    success(&out, "capsule up");
    let mut saw: Vec<String> = lines(&project.read_out("saw-deps"))
        .iter()
        .map(|s| s.to_string())
        .collect();
    saw.sort();
    assert_eq!(saw, ["a", "b", "c"]);
}

#[test]
fn an_interrupt_stops_every_capsule_and_prints_the_summary() {
    let project = Project::new(
        "up-sigint",
        r#"
[capsule.one]
command = "touch /out/one; exec sleep 120"
volumes = ["./out:/out"]

[capsule.two]
command = "touch /out/two; sleep 120"
volumes = ["./out:/out"]
"#,
    );
    let up = spawn(&mut project.up(&[]));
    wait_until("both capsules", || {
        project.out("one").exists() && project.out("two").exists()
    });
    let pids = [project.pid("one"), project.pid("two")];
    send(up.id(), libc::SIGINT);
    let out = up.wait();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text.contains("\none killed by SIGTERM\ntwo killed by SIGTERM\n"),
        "{text}"
    );
    for (name, pid) in ["one", "two"].iter().zip(pids) {
        assert!(!alive(pid), "{name} still runs");
        assert_eq!(project.state(name, "exit"), "signal=15");
        assert!(!project.capsule_file(name, "supervisor").exists());
    }
}

#[test]
fn a_program_that_ignores_sigterm_is_killed_after_the_timeout() {
    let project = Project::new(
        "up-stubborn",
        r#"
[capsule.stubborn]
command = "trap '' TERM; touch /out/ready; while :; do sleep 1; done"
volumes = ["./out:/out"]
"#,
    );
    let up = spawn(&mut project.up(&["-t", "1"]));
    wait_until("the capsule", || project.out("ready").exists());
    send(up.id(), libc::SIGTERM);
    let out = up.wait();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text.contains("\nstubborn killed by SIGKILL\n"), "{text}");
    assert_eq!(project.state("stubborn", "exit"), "signal=9");
}

#[test]
fn detach_returns_while_the_capsules_run() {
    let project = Project::new(
        "up-detach",
        r#"
[capsule.bg]
command = "echo hello from $(uname -n); exec sleep 120"
replicas = 2
"#,
    );
    let out = run(&mut project.up(&["-d"]));
    assert_eq!(success(&out, "capsule up -d"), "bg-1\nbg-2\n");
    let supervisor: i32 = project.state("bg-1", "supervisor").parse().unwrap();
    assert_eq!(project.state("bg-2", "supervisor"), supervisor.to_string());
    assert!(alive(supervisor));
    let pids = [project.pid("bg-1"), project.pid("bg-2")];
    assert!(pids.iter().all(|&pid| alive(pid) && pid != supervisor));
    for name in ["bg-1", "bg-2"] {
        wait_until("the log", || {
            std::fs::read_to_string(project.capsule_file(name, "log"))
                .is_ok_and(|log| log == format!("hello from {name}\n"))
        });
    }
    send(supervisor as u32, libc::SIGTERM);
    wait_until("the supervisor to finish", || {
        !project.capsule_file("bg-1", "supervisor").exists()
            && !project.capsule_file("bg-2", "supervisor").exists()
    });
    for (name, pid) in ["bg-1", "bg-2"].iter().zip(pids) {
        wait_until("the exit file", || {
            project.capsule_file(name, "exit").exists()
        });
        assert_eq!(project.state(name, "exit"), "signal=15");
        assert!(!alive(pid));
    }
}

#[test]
fn exit_code_from_stops_the_others_and_returns_its_status() {
    let project = Project::new(
        "up-exit-code",
        r#"
[capsule.server]
command = "touch /out/server; exec sleep 120"
volumes = ["./out:/out"]

[capsule.client]
command = "while [ ! -e /out/server ]; do sleep 0.05; done; exit 7"
volumes = ["./out:/out"]
depends_on = ["server"]
"#,
    );
    let out = run(&mut project.up(&["--exit-code-from", "client"]));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert!(
        text.contains("\nserver killed by SIGTERM\nclient exited 7\n"),
        "{text}"
    );
}

#[test]
fn a_hundred_replicas_run_at_once_and_stop_cleanly() {
    const N: usize = 100;
    // Each replica binds "port 8000" and reports its host name and the port it sees.
    let server = compile_c("listen_report");
    let project = Project::new(
        "up-scale",
        &format!(
            r#"
[capsule.small]
replicas = 100
volumes = ["./out:/out"]
command = "exec {} 8000 /out/$(uname -n)"
"#,
            server.display()
        ),
    );
    let up = spawn(&mut project.up(&[]));
    let names: Vec<String> = (1..=N).map(|i| format!("small-{i}")).collect();
    wait_until("every replica", || {
        names.iter().all(|name| project.out(name).exists())
    });
    // All of them at the same time, each with its own host name and "its" port 8000,
    // each behind its own host port.
    let pids: Vec<i32> = names.iter().map(|n| project.pid(n)).collect();
    let running = pids.iter().filter(|&&pid| alive(pid)).count();
    assert_eq!(running, N);
    let mut host_ports = std::collections::BTreeSet::new();
    for name in &names {
        assert_eq!(project.read_out(name), format!("{name} 8000\n"));
        let table = std::fs::read(project.capsule_file(name, "ports")).unwrap();
        let bindings = capsule_config::net::PortTable::parse(&table);
        assert_eq!(bindings.len(), 1, "{name}: {bindings:?}");
        assert_eq!(bindings[0].port, 8000);
        let host = bindings[0].host;
        assert!(host_ports.insert(host), "{name} shares host port {host}");
        let mut reply = String::new();
        use std::io::Read;
        std::net::TcpStream::connect(("127.0.0.1", host))
            .and_then(|mut s| s.read_to_string(&mut reply))
            .unwrap_or_else(|e| panic!("{name} on host port {host}: {e}"));
        assert_eq!(&reply, name);
    }
    send(up.id(), libc::SIGINT);
    let out = up.wait();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for (name, pid) in names.iter().zip(pids) {
        assert!(
            text.contains(&format!("\n{name} killed by SIGTERM\n")),
            "{name}\n{text}"
        );
        assert_eq!(project.state(name, "exit"), "signal=15");
        assert!(!alive(pid));
    }
}

/// A free TCP port whose successor is free too (for two replicas).
fn two_free_ports() -> u16 {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < 65535 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

#[test]
fn the_web_example_serves_each_replica_by_name_and_by_published_port() {
    // examples/web.toml as shipped, on free host ports.
    let example = std::fs::read_to_string(workspace_root().join("examples/web.toml")).unwrap();
    let port = two_free_ports();
    assert!(example.contains("\"18081:8000\""));
    let project = Project::new(
        "up-web",
        &example.replace("\"18081:8000\"", &format!("\"{port}:8000\"")),
    );
    let out = run(&mut project.up(&["-d"]));
    assert_eq!(success(&out, "capsule up -d"), "web-1\nweb-2\nclient\n");
    let supervisor: u32 = project.state("web-1", "supervisor").parse().unwrap();
    let stop = || send(supervisor, libc::SIGTERM);

    // From the host, through the published ports: web-1 on PORT, web-2 on PORT+1.
    for (i, host_port) in [(1, port), (2, port + 1)] {
        let mut body = None;
        let deadline = Instant::now() + TIMEOUT;
        while body.is_none() && Instant::now() < deadline {
            body = http_get(host_port);
            std::thread::sleep(Duration::from_millis(50));
        }
        if body.as_deref() != Some(&format!("hello from web-{i}\n")) {
            stop();
            panic!("host port {host_port}: {body:?}");
        }
    }
    // From the client, by name.
    wait_until("the client to finish", || {
        project.capsule_file("client", "exit").exists()
    });
    let log = std::fs::read_to_string(project.capsule_file("client", "log")).unwrap();
    let client_end = project.state("client", "exit");
    stop();
    assert_eq!(client_end, "exit=0", "{log}");
    assert!(
        log.contains("http://web-1:8000/ -> hello from web-1\n"),
        "{log}"
    );
    assert!(
        log.contains("http://web-2:8000/ -> hello from web-2\n"),
        "{log}"
    );
    wait_until("the supervisor to finish", || {
        !project.capsule_file("web-1", "supervisor").exists()
    });
}

#[test]
fn a_capsule_stopped_by_capsule_stop_is_not_restarted() {
    let project = Project::new(
        "up-stop",
        r#"
[capsule.svc]
command = "echo run >> /out/runs; exec sleep 120"
volumes = ["./out:/out"]
restart = "always"
"#,
    );
    success(&run(&mut project.up(&["-d"])), "capsule up -d");
    wait_until("the first run", || {
        std::fs::read_to_string(project.out("runs")).is_ok_and(|runs| runs == "run\n")
    });
    let pid = project.pid("svc");
    let supervisor: i32 = project.state("svc", "supervisor").parse().unwrap();
    success(&project.home.run(&["stop", "svc"]), "capsule stop");
    wait_until("the supervisor to give the capsule up", || {
        !project.capsule_file("svc", "supervisor").exists()
    });
    assert!(!alive(pid));
    assert_eq!(lines(&project.read_out("runs")).len(), 1);
    // Its only capsule ended: the supervisor is done too.
    wait_until("the supervisor to exit", || !alive(supervisor));
}
