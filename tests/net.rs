//! The network replica with real servers: several copies of a server bound to the same
//! port at once, each reachable through its own host port; capsules reaching each
//! other by name; the C probe's view of every socket and resolver call, in a capsule
//! and outside any; two PostgreSQL servers side by side; `-p` refusals.
//!
//! Every test asserts on what the programs observed and on the capsule's port table
//! on disk (`$CAPSULE_HOME/capsules/NAME/ports`). Servers are stopped by a guard even
//! when an assertion fails.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use capsule_config::net::{Binding, PortTable, PORTS_FILE};
use capsule_config::Proto;
use common::*;

/// How long a server may take to come up on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A TCP port free on the host right now (bound to port 0, then closed).
fn free_tcp_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free TCP port")
        .port()
}

/// Two different TCP ports free on the host right now.
fn two_free_tcp_ports() -> (u16, u16) {
    let first = free_tcp_port();
    let second = wait_for("a second free TCP port", Duration::from_secs(10), || {
        Some(free_tcp_port()).filter(|&p| p != first)
    });
    (first, second)
}

/// A port free on the host for both TCP and UDP right now.
fn free_tcp_and_udp_port() -> u16 {
    wait_for(
        "a port free for TCP and UDP",
        Duration::from_secs(10),
        || {
            let port = free_tcp_port();
            UdpSocket::bind(("0.0.0.0", port)).ok().map(|_| port)
        },
    )
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .expect("bind a free UDP port")
        .port()
}

/// A name no other test process uses at the same time.
fn unique(label: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The bindings in a capsule's port table (none when the file does not exist yet).
fn table(capsules: &Path, name: &str) -> Vec<Binding> {
    match std::fs::read(capsules.join(name).join(PORTS_FILE)) {
        Ok(bytes) => PortTable::parse(&bytes),
        Err(_) => Vec::new(),
    }
}

fn tcp(port: u16, host: u16) -> Binding {
    Binding {
        proto: Proto::Tcp,
        port,
        host,
    }
}

fn udp(port: u16, host: u16) -> Binding {
    Binding {
        proto: Proto::Udp,
        port,
        host,
    }
}

/// Polls `probe` until it gives a value, or fails the test after `timeout`.
#[track_caller]
fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The host port capsule TCP port `port` is bound to, once the table records it.
#[track_caller]
fn wait_for_binding(capsules: &Path, name: &str, port: u16, servers: &mut Servers) -> u16 {
    wait_for(
        &format!("capsule {name} to bind port {port}"),
        START_TIMEOUT,
        || {
            servers.assert_running();
            table(capsules, name)
                .iter()
                .find(|b| b.proto == Proto::Tcp && b.port == port)
                .map(|b| b.host)
        },
    )
}

/// `GET path` over HTTP/1.0 from the host to 127.0.0.1:`port`: the body of a 200
/// answer, `None` while nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| panic!("port {port} answered {head:?}"))
}

/// Processes whose environment or working directory lies in `home` (a capsule's
/// processes carry its CAPSULE_HOME and work in its layers), the test itself excepted.
fn processes_in(home: &Path) -> Vec<(i32, String)> {
    let needle = home.as_os_str().as_encoded_bytes();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = entry.path();
        let cwd = std::fs::read_link(dir.join("cwd")).unwrap_or_default();
        let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
        let inside = cwd.starts_with(home)
            || environ
                .split(|&b| b == 0)
                .any(|var| var.windows(needle.len()).any(|w| w == needle));
        if inside {
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, text.trim().to_string()));
        }
    }
    found
}

/// Servers started by a test: stopped with SIGTERM by `stop`, and in any case killed
/// (with every process left in their capsules' home) when dropped, also when an
/// assertion failed.
struct Servers {
    home: PathBuf,
    runs: Vec<(String, Running)>,
}

impl Servers {
    fn new(home: &Path) -> Servers {
        Servers {
            home: home.to_path_buf(),
            runs: Vec::new(),
        }
    }

    fn start(&mut self, label: &str, cmd: &mut Command) {
        shim();
        self.runs.push((label.to_string(), spawn(cmd)));
    }

    /// Fails the test (with the server's output) when a server has already exited.
    fn assert_running(&mut self) {
        if let Some(i) = self.runs.iter_mut().position(|(_, r)| r.has_exited()) {
            let (label, run) = self.runs.remove(i);
            panic!("{label} exited early\n{}", describe(&run.wait()));
        }
    }

    /// Sends SIGTERM to each server's first process (`capsule` relays it) and returns
    /// what each printed, in start order.
    fn stop(mut self) -> Vec<Output> {
        let runs = std::mem::take(&mut self.runs);
        for (_, run) in &runs {
            // SAFETY: kill(2) of a child this test started.
            unsafe { libc::kill(run.id() as libc::pid_t, libc::SIGTERM) };
        }
        runs.into_iter().map(|(_, run)| run.wait()).collect()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, run) in &self.runs {
            // SAFETY: kill(2) of the process group of a child this test started.
            unsafe { libc::kill(-(run.id() as libc::pid_t), libc::SIGKILL) };
        }
        for (pid, _) in processes_in(&self.home) {
            // SAFETY: kill(2) of a process running in this test's own capsules.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for (_, run) in std::mem::take(&mut self.runs) {
            let _ = run.wait();
        }
    }
}

/// A command without the proxies of the test's environment (urllib would use them).
fn no_proxy(cmd: &mut Command) -> &mut Command {
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("no_proxy", "*")
}

// ------------------------------------------------------------------ 1. same port twice

#[test]
fn two_http_servers_on_port_8000_each_behind_its_published_port() {
    let home = CapsuleHome::new();
    let capsules = home.path().join("capsules");
    let python = python3();
    let python = python.to_str().expect("python path is UTF-8");
    let dir = format!("/srv/{}", unique("capsule-net-www"));
    let (h1, h2) = two_free_tcp_ports();
    assert_ne!(h1, h2);
    let mut servers = Servers::new(home.path());
    for (name, host, content) in [("w1", h1, "one"), ("w2", h2, "two")] {
        let script = format!(
            "mkdir -p {dir} && echo {content} > {dir}/index.html && cd {dir} && exec {python} -m http.server 8000"
        );
        let publish = format!("{host}:8000");
        servers.start(
            name,
            &mut home.command(&[
                "run",
                "--name",
                name,
                "-p",
                &publish,
                "-e",
                "PYTHONUNBUFFERED=1",
                "--",
                "sh",
                "-c",
                &script,
            ]),
        );
    }
    let path = "/index.html";
    let (mut one, mut two) = (None, None);
    wait_for("both servers to answer", START_TIMEOUT, || {
        servers.assert_running();
        one = one.take().or_else(|| http_get(h1, path));
        two = two.take().or_else(|| http_get(h2, path));
        (one.is_some() && two.is_some()).then_some(())
    });
    assert_eq!(one.as_deref(), Some("one\n"), "w1 through host port {h1}");
    assert_eq!(two.as_deref(), Some("two\n"), "w2 through host port {h2}");
    // Both still up at the same time: ask each once more.
    assert_eq!(http_get(h1, path).as_deref(), Some("one\n"));
    assert_eq!(http_get(h2, path).as_deref(), Some("two\n"));
    assert_eq!(table(&capsules, "w1"), vec![tcp(8000, h1)]);
    assert_eq!(table(&capsules, "w2"), vec![tcp(8000, h2)]);
    assert!(
        !Path::new(&dir).exists(),
        "{dir} reached the host's file system"
    );
    for name in ["w1", "w2"] {
        let file = capsules
            .join(name)
            .join("upper")
            .join(&dir[1..])
            .join("index.html");
        assert!(file.is_file(), "{} missing", file.display());
    }

    let outs = servers.stop();
    for (name, out) in ["w1", "w2"].iter().zip(&outs) {
        let text = stdout(out);
        // http.server prints the address getsockname gave it, and logs each client.
        assert!(
            text.contains("port 8000 (http://"),
            "{name} does not believe it serves port 8000\n{}",
            describe(out)
        );
        assert!(
            stderr(out).contains("\"GET /"),
            "{name} logged no request\n{}",
            describe(out)
        );
        assert_eq!(
            out.status.code(),
            Some(128 + libc::SIGTERM),
            "{name}: SIGTERM relayed to the server ends it\n{}",
            describe(out)
        );
    }
    assert!(processes_in(home.path()).is_empty());
}

// ------------------------------------------------------------------ 2. unpublished ports

const BIND_AND_SERVE: &str = r#"
import socket, sys
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4)
print("sockname", s.getsockname(), flush=True)
conn, peer = s.accept()
print("peer-ip", peer[0], flush=True)
conn.sendall(sys.argv[2].encode())
conn.close()
"#;

#[test]
fn unpublished_ports_get_free_host_ports() {
    let home = CapsuleHome::new();
    let capsules = home.path().join("capsules");
    let python = python3();
    let python = python.to_str().unwrap();
    let (a, b) = (unique("free-a"), unique("free-b"));
    let mut servers = Servers::new(home.path());
    for name in [&a, &b] {
        servers.start(
            name,
            &mut home.command(&[
                "run",
                "--name",
                name,
                "--",
                python,
                "-c",
                BIND_AND_SERVE,
                "9000",
                name,
            ]),
        );
    }
    // Both hold port 9000 at the same time: neither has accepted its one client yet.
    let ha = wait_for_binding(&capsules, &a, 9000, &mut servers);
    let hb = wait_for_binding(&capsules, &b, 9000, &mut servers);
    assert_ne!(ha, hb, "two capsules share a host port");
    for host in [ha, hb] {
        assert!(
            host != 9000 && host != 0,
            "port 9000 bound as host port {host}"
        );
    }
    assert_eq!(table(&capsules, &a), vec![tcp(9000, ha)]);
    assert_eq!(table(&capsules, &b), vec![tcp(9000, hb)]);
    // `capsule ps` shows the picked host ports.
    let ps = success(&home.run(&["ps"]), "capsule ps");
    for (name, host) in [(&a, ha), (&b, hb)] {
        let line = ps
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("capsule ps does not list {name}:\n{ps}"));
        assert!(
            line.contains(&format!("{host}->9000/tcp")),
            "capsule ps does not show {host}->9000/tcp for {name}:\n{ps}"
        );
    }
    let read_from = |port: u16| {
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).expect("connect to the capsule's host port");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    };
    assert_eq!(read_from(ha), a);
    assert_eq!(read_from(hb), b);
    let outs: Vec<Output> = std::mem::take(&mut servers.runs)
        .into_iter()
        .map(|(_, r)| r.wait())
        .collect();
    for out in &outs {
        assert_eq!(
            success(out, "python server bound to 9000"),
            "sockname ('0.0.0.0', 9000)\npeer-ip 127.0.0.1\n"
        );
    }
}

#[test]
fn a_capsule_on_the_host_network_binds_the_host_port_itself() {
    let home = CapsuleHome::new();
    let name = unique("hostnet");
    let port = free_tcp_port();
    let python = python3();
    let mut servers = Servers::new(home.path());
    servers.start(
        &name,
        &mut home.command(&[
            "run",
            "--network",
            "host",
            "--name",
            &name,
            "--",
            python.to_str().unwrap(),
            "-c",
            BIND_AND_SERVE,
            &port.to_string(),
            &name,
        ]),
    );
    // The capsule's port P is the host's port P: no translation, no port table.
    let mut stream = wait_for(
        "the capsule's server on the host port",
        START_TIMEOUT,
        || TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert_eq!(text, name);
    let outs: Vec<Output> = std::mem::take(&mut servers.runs)
        .into_iter()
        .map(|(_, r)| r.wait())
        .collect();
    assert_eq!(
        success(&outs[0], "a server on the host network"),
        format!("sockname ('0.0.0.0', {port})\npeer-ip 127.0.0.1\n")
    );
    let ports = home.path().join("capsules").join(&name).join(PORTS_FILE);
    assert!(
        fs::read(&ports).map_or(true, |t| t.is_empty()),
        "a port table on the host network: {}",
        ports.display()
    );
    // Nothing to publish on the host's network: refused before anything starts.
    let out = home.run(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-p",
        "8000",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(stderr(&out).contains("--network host uses the host's ports"));
}

// ------------------------------------------------------------------ 3. peers by name

const CLIENT: &str = r#"
import errno, socket, urllib.request
for name in ("web-1", "web-2"):
    body = urllib.request.urlopen("http://%s:8000/index.html" % name, timeout=60).read()
    print(name, body.decode().strip())
s = socket.create_connection(("web-2", 8000), timeout=60)
print("peername", s.getpeername())
s.close()
print("nameinfo", socket.getnameinfo(("127.73.0.1", 8000), socket.NI_NAMEREQD | socket.NI_NUMERICSERV))
print("byaddr", socket.gethostbyaddr("127.73.0.2"))
print("own", socket.gethostbyname("client"))
try:
    socket.create_connection(("web-1", 9999), timeout=60)
    print("9999 connected")
except OSError as e:
    print("9999", errno.errorcode.get(e.errno))
"#;

const RESOLVE_WEB_1: &str = r#"
import socket
try:
    print("resolved", socket.getaddrinfo("web-1", 8000)[0][4][0])
except socket.gaierror:
    print("unresolved")
"#;

#[test]
fn capsules_reach_each_other_by_name() {
    let dir = TempDir::new("net-peers");
    let capsules = dir.join("capsules");
    let peers = "web-1,web-2,client";
    let python = python3();
    let mut servers = Servers::new(dir.path());
    for (name, content) in [("web-1", "first"), ("web-2", "second")] {
        let state = capsules.join(name);
        let www = dir.join(&format!("www-{name}"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), format!("{content}\n")).unwrap();
        let env = [
            ("CAPSULE_STATE_DIR", state.to_str().unwrap()),
            ("CAPSULE_NAME", name),
            ("CAPSULE_PEERS", peers),
        ];
        servers.start(
            name,
            &mut preload_command(
                &env,
                &python,
                &[
                    "-m",
                    "http.server",
                    "8000",
                    "--directory",
                    www.to_str().unwrap(),
                ],
            ),
        );
    }
    let h1 = wait_for_binding(&capsules, "web-1", 8000, &mut servers);
    let h2 = wait_for_binding(&capsules, "web-2", 8000, &mut servers);
    assert_ne!(h1, h2);
    // Bound is not yet listening: wait until each answers on its host port.
    for host in [h1, h2] {
        wait_for("the server to listen", START_TIMEOUT, || {
            servers.assert_running();
            http_get(host, "/index.html")
        });
    }

    let client = capsules.join("client");
    std::fs::create_dir_all(&client).unwrap();
    // Spelled with a trailing '/': the peers' tables are still its siblings'.
    let client_dir = format!("{}/", client.display());
    let env = [
        ("CAPSULE_STATE_DIR", client_dir.as_str()),
        ("CAPSULE_NAME", "client"),
        ("CAPSULE_PEERS", peers),
    ];
    let out = run(no_proxy(&mut preload_command(
        &env,
        &python,
        &["-c", CLIENT],
    )));
    assert_eq!(
        success(&out, "client capsule"),
        "web-1 first\nweb-2 second\npeername ('127.73.0.2', 8000)\n\
         nameinfo ('web-1', '8000')\nbyaddr ('web-2', [], ['127.73.0.2'])\nown 127.73.0.3\n\
         9999 ECONNREFUSED\n"
    );
    assert_eq!(table(&capsules, "web-1"), vec![tcp(8000, h1)]);
    assert_eq!(table(&capsules, "web-2"), vec![tcp(8000, h2)]);
    assert_eq!(
        table(&capsules, "client"),
        vec![],
        "the client bound nothing"
    );

    // Outside any capsule, with or without the shim, the names are the host's.
    let out = run_native(&python, &["-c", RESOLVE_WEB_1]);
    assert_eq!(success(&out, "host resolver"), "unresolved\n");
    let out = run_preload(&[], &python, &["-c", RESOLVE_WEB_1]);
    assert_eq!(success(&out, "shim outside a capsule"), "unresolved\n");

    let outs = servers.stop();
    for out in &outs {
        // Each server logged the client's requests (by its loopback address).
        assert!(
            stderr(out).contains("127.0.0.1 - - ") && stderr(out).contains("\"GET /index.html"),
            "{}",
            describe(out)
        );
    }
}

// ------------------------------------------------------------------ 4. the C probe

/// The probe's KEY=VALUE lines, after checking it reported OK.
fn probe_values(out: &Output, what: &str) -> std::collections::HashMap<String, String> {
    key_values(&probe_ok(out, what))
}

#[track_caller]
fn assert_values(
    got: &std::collections::HashMap<String, String>,
    want: &[(&str, String)],
    what: &str,
) {
    let mut wrong = Vec::new();
    for (key, value) in want {
        if got.get(*key) != Some(value) {
            wrong.push(format!(
                "{key}: expected {value:?}, got {:?}",
                got.get(*key)
            ));
        }
    }
    assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
}

/// What every run of the probe with capsule ports `p` (TCP and UDP) and `q` (the UDP
/// client) reports for its own sockets, in a capsule or not.
fn own_socket_values(p: u16, q: u16) -> Vec<(&'static str, String)> {
    let v4 = format!("127.0.0.1:{p}");
    let v6 = format!("[::1]:{p}");
    vec![
        ("tcp4_sockname", format!("0.0.0.0:{p}")),
        ("tcp6_sockname", format!("[::]:{p}")),
        ("v4_connect", "ok".into()),
        ("v4_peername", v4.clone()),
        ("v4_accepted_sockname", v4.clone()),
        ("v6_connect", "ok".into()),
        ("v6_peername", v6.clone()),
        ("v6_accepted_sockname", v6.clone()),
        ("any4_connect", "ok".into()),
        ("any4_peername", v4.clone()),
        ("any4_accepted_sockname", v4.clone()),
        ("any6_connect", "ok".into()),
        ("any6_peername", v6.clone()),
        ("any6_accepted_sockname", v6),
        ("self_connect", "ok".into()),
        ("self_accepted_sockname", v4.clone()),
        ("udp_sockname", format!("0.0.0.0:{p}")),
        ("udp_client_sockname", format!("0.0.0.0:{q}")),
        ("udp_from", format!("127.0.0.1:{q}")),
        ("udp_reply_from", v4.clone()),
        ("udpmsg_from", format!("127.0.0.1:{q}")),
        ("udpmsg_reply_from", v4.clone()),
        ("udpmmsg_from", format!("127.0.0.1:{q},127.0.0.1:{q}")),
        ("udpmmsg_reply_from", format!("{v4},{v4}")),
        ("abstract_bind", "ok".into()),
        ("abstract_connect", "ok".into()),
        ("abstract_bind_90", "ok".into()),
    ]
}

/// A capsule's view of abstract names: private (a raw connect by the bare name
/// fails), the prefix hidden from getsockname, and the prefix's length counted.
fn capsule_abstract_values(tag: &str) -> Vec<(&'static str, String)> {
    vec![
        ("abstract_sockname", format!("@netprobe-{tag}")),
        ("abstract_raw_connect", "ECONNREFUSED".into()),
        ("abstract_bind_91", "ENAMETOOLONG".into()),
        ("abstract_bind_107", "ENAMETOOLONG".into()),
    ]
}

#[track_caller]
fn assert_prefixed(values: &std::collections::HashMap<String, String>, tag: &str) {
    let listed = &values["abstract_kernel"];
    let suffix = format!("/netprobe-{tag}");
    assert!(
        listed.starts_with("@capsule-")
            && listed.ends_with(&suffix)
            && listed.len() == "@capsule-".len() + 8 + suffix.len(),
        "the kernel should list the name behind the capsule's prefix, got {listed}"
    );
}

#[test]
fn probe_in_a_capsule_run_with_published_ports() {
    let probe = compile_c("net_probe");
    let home = CapsuleHome::new();
    let capsules = home.path().join("capsules");
    let name = unique("probe");
    let tag = unique("run");
    let (ht, hu) = (free_tcp_port(), free_udp_port());
    let (tcp_spec, udp_spec) = (format!("{ht}:8000"), format!("{hu}:8000/udp"));
    let out = home.run(&[
        "run",
        "--name",
        &name,
        "--hostname",
        "probe-box",
        "-p",
        &tcp_spec,
        "-p",
        &udp_spec,
        "--",
        probe.to_str().unwrap(),
        "--port",
        "8000",
        "--client-port",
        "8001",
        "--names",
        &name,
        "--refused",
        "127.73.0.9:8000",
        "--tag",
        &tag,
    ]);
    let values = probe_values(&out, "net_probe in `capsule run -p`");
    let mut want = own_socket_values(8000, 8001);
    want.extend(capsule_abstract_values(&tag));
    let gai_name = format!("gai_{name}");
    let ghbn2_name = format!("ghbn2_{name}");
    want.extend([
        ("tcp_host_port", ht.to_string()),
        ("udp_host_port", hu.to_string()),
        ("hostname", "probe-box".to_string()),
        // Without a set, the own names are 127.0.0.1.
        ("gai_self", "127.0.0.1 probe-box".into()),
        ("gai6_self", "::ffff:127.0.0.1".into()),
        ("ghbn_self", "127.0.0.1 probe-box".into()),
        ("ghbn_r_self", "127.0.0.1 probe-box".into()),
        ("ghbn_r_small_self", "ERANGE".into()),
        ("ghbn2_self", "::ffff:127.0.0.1 probe-box".into()),
        ("self_peername", "127.0.0.1:8000".into()),
        (gai_name.as_str(), format!("127.0.0.1 {name}")),
        (ghbn2_name.as_str(), format!("::ffff:127.0.0.1 {name}")),
        // A peer address of a capsule without a set.
        ("refused", "ECONNREFUSED".into()),
    ]);
    assert_values(&values, &want, "net_probe in `capsule run -p`");
    assert_prefixed(&values, &tag);

    let bindings = table(&capsules, &name);
    assert_eq!(bindings.len(), 3, "{bindings:?}");
    assert_eq!(
        bindings[0],
        tcp(8000, ht),
        "the v4 and v6 listeners share one entry"
    );
    assert_eq!(bindings[1], udp(8000, hu));
    let client = bindings[2];
    assert!(
        client.proto == Proto::Udp
            && client.port == 8001
            && client.host != 8001
            && client.host != 0,
        "the unpublished UDP client port: {client:?}"
    );
}

#[test]
fn probe_with_peers_at_the_shim_level() {
    let probe = compile_c("net_probe");
    let dir = TempDir::new("net-probe-peers");
    let capsules = dir.join("capsules");
    let peers = "pa,pb,pc";
    // Peer pa has a table, holding a port other than the one the probe asks for.
    let pa = capsules.join("pa");
    std::fs::create_dir_all(&pa).unwrap();
    let out = run_preload(
        &[
            ("CAPSULE_STATE_DIR", pa.to_str().unwrap()),
            ("CAPSULE_NAME", "pa"),
            ("CAPSULE_PEERS", peers),
        ],
        python3(),
        &["-c", "import socket; socket.socket().bind(('', 7000))"],
    );
    success(&out, "peer pa binding 7000");
    let pa_table = table(&capsules, "pa");
    assert!(
        pa_table.len() == 1 && pa_table[0].port == 7000,
        "{pa_table:?}"
    );

    let pb = capsules.join("pb");
    std::fs::create_dir_all(&pb).unwrap();
    let tag = unique("peers");
    let out = run_preload(
        &[
            ("CAPSULE_STATE_DIR", pb.to_str().unwrap()),
            ("CAPSULE_NAME", "pb"),
            ("CAPSULE_PEERS", peers),
            ("CAPSULE_HOSTNAME", "bee"),
        ],
        &probe,
        &[
            "--port",
            "8000",
            "--client-port",
            "8001",
            "--names",
            "pa,pb,pc",
            "--refused",
            "pa:8000",
            "--tag",
            &tag,
        ],
    );
    let values = probe_values(&out, "net_probe as pb of pa,pb,pc");
    let mut want = own_socket_values(8000, 8001);
    want.extend(capsule_abstract_values(&tag));
    want.extend([
        ("hostname", "bee".to_string()),
        // The own host name resolves to the own address in the set, and back to the
        // capsule's name.
        ("gai_self", "127.73.0.2 bee".into()),
        ("gai6_self", "::ffff:127.73.0.2".into()),
        ("ghbn_self", "127.73.0.2 bee".into()),
        ("ghbn_r_self", "127.73.0.2 bee".into()),
        ("ghbn2_self", "::ffff:127.73.0.2 bee".into()),
        ("nameinfo_self", "pb 80".into()),
        ("byaddr_self", "127.73.0.2 pb".into()),
        ("byaddr_r_self", "127.73.0.2 pb".into()),
        ("refused", "ECONNREFUSED".into()),
    ]);
    let names = [("pa", 1), ("pb", 2), ("pc", 3)];
    let keys: Vec<(String, String)> = names
        .iter()
        .flat_map(|(n, i)| {
            [
                (format!("gai_{n}"), format!("127.73.0.{i} {n}")),
                (format!("gai6_{n}"), format!("::ffff:127.73.0.{i}")),
                (format!("ghbn_{n}"), format!("127.73.0.{i} {n}")),
                (format!("ghbn_r_{n}"), format!("127.73.0.{i} {n}")),
                (format!("ghbn_r_small_{n}"), "ERANGE".into()),
                (format!("ghbn2_{n}"), format!("::ffff:127.73.0.{i} {n}")),
                (format!("nameinfo_{n}"), format!("{n} 80")),
                (format!("byaddr_{n}"), format!("127.73.0.{i} {n}")),
                (format!("byaddr_r_{n}"), format!("127.73.0.{i} {n}")),
            ]
        })
        .collect();
    want.extend(keys.iter().map(|(k, v)| (k.as_str(), v.clone())));
    assert_values(&values, &want, "net_probe as pb of pa,pb,pc");
    assert_prefixed(&values, &tag);
    let host = |proto: Proto, port: u16| {
        table(&capsules, "pb")
            .iter()
            .find(|b| b.proto == proto && b.port == port)
            .map(|b| b.host)
    };
    let ht = host(Proto::Tcp, 8000).expect("tcp 8000 recorded");
    assert_eq!(values["tcp_host_port"], ht.to_string());
    assert_ne!(ht, 8000);
    let hu = host(Proto::Udp, 8000).expect("udp 8000 recorded");
    assert_eq!(values["udp_host_port"], hu.to_string());
    assert!(host(Proto::Udp, 8001).is_some(), "udp 8001 recorded");
    assert_eq!(table(&capsules, "pb").len(), 3);
    assert_eq!(
        table(&capsules, "pa"),
        pa_table,
        "a peer's table is never written"
    );
}

#[test]
fn probe_outside_any_capsule_sees_the_host() {
    let probe = compile_c("net_probe");
    let (p, q) = (free_tcp_and_udp_port(), free_udp_port());
    let tag = unique("host");
    let (ps, qs) = (p.to_string(), q.to_string());
    let args = [
        "--port",
        &ps,
        "--client-port",
        &qs,
        "--names",
        "pa,pb",
        "--tag",
        &tag,
    ];
    let native = run_native(&probe, &args);
    let native_values = probe_values(&native, "net_probe natively");
    let preloaded = run_preload(&[], &probe, &args);
    probe_values(&preloaded, "net_probe under the shim outside any capsule");
    assert_eq!(
        stdout(&native),
        stdout(&preloaded),
        "the shim outside a capsule changed what the probe saw"
    );
    let mut want = own_socket_values(p, q);
    want.extend([
        ("tcp_host_port", p.to_string()),
        ("udp_host_port", p.to_string()),
        ("self_peername", format!("127.0.0.1:{p}")),
        ("abstract_sockname", format!("@netprobe-{tag}")),
        ("abstract_kernel", format!("@netprobe-{tag}")),
        ("abstract_raw_connect", "ok".into()),
        ("abstract_bind_91", "ok".into()),
        ("abstract_bind_107", "ok".into()),
        ("nameinfo_pa", "(unresolved)".into()),
        ("byaddr_pa", "(unresolved)".into()),
    ]);
    assert_values(&native_values, &want, "net_probe outside any capsule");
    for (key, value) in &native_values {
        assert!(
            !value.contains("127.73."),
            "outside any capsule {key} gave a capsule address: {value}"
        );
    }
}

// ------------------------------------------------------------------ 5. PostgreSQL

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PG_DATA: &str = "/var/lib/postgresql/15/main";

/// What runs in each PostgreSQL capsule as user postgres: a fresh cluster in the
/// default data directory, a table holding $1, the server's port as it sees it over
/// TCP, then the server kept up until /sig/stop appears.
const PG_SCRIPT: &str = r#"
set -e
B=/usr/lib/postgresql/15/bin
D=/var/lib/postgresql/15/main
rm -rf "$D"
# A host server's socket and lock file, if one runs, are the host's: not this capsule's.
rm -f /var/run/postgresql/.s.PGSQL.5432 /var/run/postgresql/.s.PGSQL.5432.lock
"$B/initdb" -D "$D" -U postgres --auth=trust >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log; exit 1; }
"$B/pg_ctl" -D "$D" -w -o "-k /var/run/postgresql" -l /tmp/pg.log start
"$B/psql" -h /var/run/postgresql -U postgres -At -c "create table t(v text); insert into t values ('$1')"
echo "socket_data=$("$B/psql" -h /var/run/postgresql -U postgres -At -c 'select v from t')"
echo "tcp_port=$("$B/psql" -h 127.0.0.1 -U postgres -At -c 'select inet_server_port()')"
echo "whoami=$(whoami)"
while [ ! -e /sig/stop ]; do sleep 0.2; done
"$B/pg_ctl" -D "$D" -w stop
echo stopped
"#;

/// What a capsule must not change on the host: the entries of the data directory and
/// of its databases (stable even while a host server runs), PG_VERSION's content and
/// modification time, and the socket directory's entries.
fn pg_host_state() -> String {
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let data = Path::new(PG_DATA);
    let version = data.join("PG_VERSION");
    format!(
        "{PG_DATA}: {:?}\nbase: {:?}\nPG_VERSION: {:?} {:?}\n/var/run/postgresql: {:?}\n",
        names(data),
        names(&data.join("base")),
        std::fs::read_to_string(&version).ok(),
        std::fs::metadata(&version).and_then(|m| m.modified()).ok(),
        names(Path::new("/var/run/postgresql")),
    )
}

fn host_psql(port: u16, sql: &str) -> Output {
    run(Command::new(format!("{PG_BIN}/psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-At", "-c", sql])
        .env_remove("LD_PRELOAD")
        .env("PGCONNECT_TIMEOUT", "10"))
}

#[test]
fn two_postgresql_servers_on_port_5432_at_once() {
    assert!(
        ["postgres", "initdb", "pg_ctl", "psql"]
            .iter()
            .all(|p| Path::new(PG_BIN).join(p).is_file()),
        "PostgreSQL 15 is not installed (postgres, initdb, pg_ctl and psql in {PG_BIN}): \
         .ci/run installs it (apt-get install postgresql-15 postgresql-client-15)"
    );
    let before = pg_host_state();
    let home = CapsuleHome::new();
    let capsules = home.path().join("capsules");
    let sig = TempDir::new("net-pg-sig");
    let volume = format!("{}:/sig", sig.str());
    let mut servers = Servers::new(home.path());
    let (h1, h2) = two_free_tcp_ports();
    let pgs = [("pg1", h1, "alpha"), ("pg2", h2, "beta")];
    for (name, host, data) in pgs {
        let publish = format!("{host}:5432");
        servers.start(
            name,
            &mut home.command(&[
                "run", "--name", name, "--user", "postgres", "-p", &publish, "-v", &volume, "--",
                "sh", "-c", PG_SCRIPT, "sh", data,
            ]),
        );
    }
    for (name, host, data) in pgs {
        let got = wait_for(
            &format!("{name}'s table through host port {host}"),
            START_TIMEOUT,
            || {
                servers.assert_running();
                let out = host_psql(host, "select v from t");
                out.status.success().then(|| stdout(&out))
            },
        );
        assert_eq!(got, format!("{data}\n"), "{name} through host port {host}");
    }
    // Both up at once, each with its own data and its own cluster.
    for (name, host, data) in pgs {
        let out = host_psql(host, "select v, inet_server_port() from t");
        assert_eq!(
            success(&out, name),
            format!("{data}|5432\n"),
            "{name} believes it listens on 5432"
        );
        assert_eq!(table(&capsules, name), vec![tcp(5432, host)], "{name}");
    }
    std::fs::write(sig.join("stop"), "").unwrap();
    let outs: Vec<Output> = std::mem::take(&mut servers.runs)
        .into_iter()
        .map(|(_, run)| run.wait())
        .collect();
    for ((name, _, data), out) in pgs.iter().zip(&outs) {
        let text = success(out, name);
        let values = key_values(&text);
        assert_eq!(
            values.get("socket_data"),
            Some(&data.to_string()),
            "{name}\n{text}"
        );
        assert_eq!(
            values.get("tcp_port").map(String::as_str),
            Some("5432"),
            "{name}\n{text}"
        );
        assert_eq!(
            values.get("whoami").map(String::as_str),
            Some("postgres"),
            "{name}\n{text}"
        );
        assert!(text.ends_with("stopped\n"), "{name}\n{text}");
        let upper_version = capsules
            .join(name)
            .join("upper")
            .join(&PG_DATA[1..])
            .join("PG_VERSION");
        assert!(
            upper_version.is_file(),
            "{name}'s cluster is not in its layer"
        );
    }
    let left = processes_in(home.path());
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert_eq!(
        pg_host_state(),
        before,
        "the host's PostgreSQL directories changed"
    );
}

// ------------------------------------------------------------------ 6. bad -p

#[test]
fn bad_port_specs_are_refused() {
    for args in [
        &["-p", "0:80"][..],
        &["-p", "x"],
        &["-p", "80/sctp"],
        &["-p", "8000", "-p", "9000:8000"],
    ] {
        let home = CapsuleHome::new();
        let mut all = vec!["run", "--name", "bad"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "true"]);
        let out = home.run(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{args:?}\n{}", describe(&out));
        assert_eq!(err.lines().count(), 1, "{args:?}: one line\n{err}");
        assert!(err.contains("-p "), "{args:?}: the line names -p\n{err}");
        assert!(stdout(&out).is_empty(), "{args:?}\n{}", describe(&out));
        assert!(
            !home.path().join("capsules").join("bad").exists(),
            "{args:?} created the capsule"
        );
    }
}

/// Socket calls made through libc's `syscall()` go through the replica too: a raw
/// `bind` of capsule port 8123 binds a host port recorded in the table, and a raw
/// `getsockname` reports 8123.
#[test]
fn socket_calls_through_syscall_are_translated() {
    const SCRIPT: &str = r#"
import ctypes, platform, socket, struct
numbers = {"x86_64": (49, 51), "aarch64": (200, 204)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
s = socket.socket()
addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 8123) + socket.inet_aton("127.0.0.1") + bytes(8)
buf = ctypes.create_string_buffer(addr, len(addr))
rc = libc.syscall(ctypes.c_long(numbers[0]), ctypes.c_long(s.fileno()), buf, ctypes.c_long(len(addr)))
print("bind", rc, ctypes.get_errno() if rc else 0)
out = ctypes.create_string_buffer(16)
size = ctypes.c_uint(16)
rc = libc.syscall(ctypes.c_long(numbers[1]), ctypes.c_long(s.fileno()), out, ctypes.byref(size))
print("sockname", rc, struct.unpack("!H", out.raw[2:4])[0])
"#;
    let home = CapsuleHome::new();
    let name = unique("rawnet");
    let out = home.run(&["run", "--name", &name, "--", "python3", "-c", SCRIPT]);
    assert_eq!(
        success(&out, "raw socket system calls in a capsule"),
        "bind 0 0\nsockname 0 8123\n"
    );
    let bindings = table(&home.path().join("capsules"), &name);
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    assert_eq!(bindings[0].port, 8123);
}
