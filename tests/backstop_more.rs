//! The system-call backstop beyond busybox's commands (`tests/backstop.rs`):
//!
//! - an unmodified Go server of Debian's (`docker-registry`, a Go program linked
//!   dynamically with cgo, whose own system calls bypass libc) in two capsules at
//!   once, on the same port, reached by name from a third capsule and by its
//!   published port from the host: the backstop serves its `bind`;
//! - a call that blocks in the supervisor (the `open` of a FIFO whose writer is
//!   another static process of the capsule) does not stop the other processes;
//!   new files get the target's umask.

mod common;

use common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// The first line of an HTTP/1.0 answer to `GET /v2/` from `host:port`, through
/// bash's `/dev/tcp` (getaddrinfo, so a peer's name, then connect).
const ASK: &str = r#"ask() { exec 3<>"/dev/tcp/$1/5000" || return 1; printf 'GET /v2/ HTTP/1.0\r\n\r\n' >&3; head -1 <&3 | tr -d '\r'; exec 3>&-; }"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[test]
fn two_registries_on_one_port_reached_by_name_and_published_port() {
    if !Path::new(REGISTRY).exists() {
        panic!("{REGISTRY} is missing: .ci/run installs docker-registry");
    }
    shim();
    let dir = TempDir::new("backstop-go");
    std::fs::create_dir(dir.join("out")).unwrap();
    let (pa, pb) = (free_port(), free_port());
    for name in ["a", "b"] {
        std::fs::write(
            dir.join(&format!("reg-{name}.yml")),
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/reg-{name}\nhttp:\n  addr: 127.0.0.1:5000\n"
            ),
        )
        .unwrap();
    }
    let client = format!(
        "{ASK}; for i in $(seq 100); do a=$(ask rega); b=$(ask regb); \
         if [ -n \"$a\" ] && [ -n \"$b\" ]; then echo \"$a|$b\" > /out/client; exit 0; fi; sleep 0.1; done; exit 1"
    );
    let manifest = format!(
        r#"[capsule.rega]
command = ["{REGISTRY}", "serve", "{dir}/reg-a.yml"]
ports = ["{pa}:5000"]

[capsule.regb]
command = ["{REGISTRY}", "serve", "{dir}/reg-b.yml"]
ports = ["{pb}:5000"]

[capsule.client]
command = ["bash", "-c", {client:?}]
volumes = ["./out:/out"]
"#,
        dir = dir.str()
    );
    std::fs::write(dir.join("capsule.toml"), manifest).unwrap();
    let home = CapsuleHome::new();
    let mut up = home.command(&["up"]);
    up.current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = up.spawn().expect("capsule up");
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = dir.join("out/client");
    let mut from_host = None;
    while Instant::now() < deadline {
        if from_host.is_none() && answer.exists() {
            from_host = Some([pa, pb].map(http_status));
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("capsule up ended early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) of the capsule up this test started: it stops every capsule.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let seen = std::fs::read_to_string(&answer).unwrap_or_else(|e| panic!("out/client: {e}"));
    assert_eq!(
        seen.trim(),
        "HTTP/1.0 200 OK|HTTP/1.0 200 OK",
        "by name, from the client capsule"
    );
    assert_eq!(
        from_host,
        Some([Some(200), Some(200)]),
        "by their published ports {pa} and {pb}, from the host"
    );
    // Both bound the capsule's 127.0.0.1:5000 at once, which the host's one port
    // could not hold twice: each bind was the capsule's.
}

/// The HTTP status of `GET /v2/` on 127.0.0.1:`port`, from the host.
fn http_status(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_fifo_between_two_static_processes_and_the_umask() {
    shim();
    let busybox = "/usr/bin/busybox";
    let root = TempDir::new("backstop-fifo");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let home = CapsuleHome::new();
    let script = "umask 077; cd /tmp; busybox mkfifo p || exit 1; (busybox cat p > out) & \
                  echo through-the-fifo > /tmp/p; wait; busybox cat /tmp/out; busybox stat -c %a /tmp/out";
    let started = Instant::now();
    let out = home.run(&[
        "run",
        "--root",
        root.str(),
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        script,
    ]);
    let text = success(&out, "a FIFO between two static processes");
    assert_eq!(
        text.trim(),
        "through-the-fifo\n600",
        "the reader got the line; umask 077 made the file 600"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "no deadlock: {:?}",
        started.elapsed()
    );
    assert!(
        !root.join("tmp/out").exists(),
        "the lower root is unchanged"
    );
}

/// Where the filter cannot be installed (here: under a policy that forbids
/// seccomp filters, with the Landlock backstop, whose io_uring rule is a filter
/// too, off), a static program is refused with one line and status 126;
/// `--allow-bypass` runs it, unseen (the host's name).
#[test]
fn without_the_backstop_a_static_program_is_refused_unless_allowed() {
    shim();
    let parent = compile_c("no_seccomp");
    let home = CapsuleHome::new();
    let run = |extra: &[&str]| {
        let mut args: Vec<String> = vec![
            capsule_bin().to_string_lossy().into_owned(),
            "run".into(),
            "--hostname".into(),
            "not-the-host".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--".into(), "/usr/bin/busybox".into(), "hostname".into()]);
        let mut cmd = std::process::Command::new(&parent);
        cmd.args(&args)
            .env("CAPSULE_HOME", home.path())
            .env("CAPSULE_LANDLOCK", "off");
        cmd.output().unwrap()
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(126), "{}", describe(&refused));
    let err = stderr(&refused);
    // Beside the loader's notice that Landlock is off: one line of refusal.
    let refusal: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("CAPSULE_LANDLOCK=off"))
        .collect();
    assert_eq!(refusal.len(), 1, "one line: {err:?}");
    assert!(
        refusal[0].contains("/usr/bin/busybox") && refusal[0].contains("--allow-bypass"),
        "names the program and the way out: {err:?}"
    );
    assert!(stdout(&refused).is_empty(), "the program did not run");
    let allowed = run(&["--allow-bypass"]);
    let text = success(&allowed, "--allow-bypass");
    assert_eq!(text.trim(), host_name(), "unseen: the host's name");
}

/// Copies host program `path` and the libraries `ldd` lists into `root`.
fn install_dynamic(root: &Path, path: &str) {
    let dest = |p: &str| root.join(p.trim_start_matches('/'));
    let copy = |p: &str| {
        std::fs::create_dir_all(dest(p).parent().unwrap()).unwrap();
        std::fs::copy(p, dest(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    };
    copy(path);
    let ldd = std::process::Command::new("ldd")
        .arg(path)
        .output()
        .unwrap();
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') && Path::new(word).exists() && !dest(word).exists() {
            copy(&std::fs::canonicalize(word).unwrap().to_string_lossy());
            if !dest(word).exists() {
                let real = std::fs::canonicalize(word).unwrap();
                std::fs::create_dir_all(dest(word).parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(real, dest(word)).unwrap();
            }
        }
    }
}

/// In a root of its own: a static shell runs the root's dynamic bash (through the
/// root's loader, by absolute names longer in host terms than the shell gave),
/// which runs a static program again; each sees the capsule, and the root is
/// unchanged.
#[test]
fn static_dynamic_static_in_a_root() {
    shim();
    let root = TempDir::new("backstop-chain");
    for dir in ["bin", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/ls")).unwrap();
    install_dynamic(root.path(), "/bin/bash");
    let home = CapsuleHome::new();
    // Absolute names the shell execs (/bin/ls, an applet link; /bin/busybox and
    // its argument, one after the other in the shell's memory) are longer as
    // host paths: each runs with its own argv.
    let script = r#"/bin/ls -d /tmp; /bin/busybox echo applet; cd /tmp; /bin/bash -c 'echo "bash:$0:$(/bin/busybox hostname):$(/bin/busybox pwd)"; echo chained > /tmp/made; /bin/busybox cat /tmp/made'"#;
    let out = home.run(&[
        "run",
        "--root",
        root.str(),
        "--hostname",
        "chain",
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        script,
    ]);
    let text = success(&out, "static -> dynamic -> static");
    assert_eq!(
        text.trim(),
        "/tmp\napplet\nbash:/bin/bash:chain:/tmp\nchained"
    );
    assert!(!root.join("tmp/made").exists(), "the root is unchanged");
}

/// `backstop = "all"` in a manifest: a dynamic program's inline `uname` system
/// call sees the capsule's host name (by default it would see the host's).
#[test]
fn a_manifest_puts_every_program_under_the_backstop() {
    shim();
    let raw = compile_c("raw_uname");
    let dir = TempDir::new("backstop-manifest");
    std::fs::create_dir(dir.join("out")).unwrap();
    let manifest = format!(
        "[capsule.strict]\nbackstop = \"all\"\nhostname = \"strict-name\"\n\
         volumes = [\"./out:/out\"]\n\
         command = [\"bash\", \"-c\", \"{raw} > /out/strict\"]\n\n\
         [capsule.plain]\nhostname = \"plain-name\"\nvolumes = [\"./out:/out\"]\n\
         command = [\"bash\", \"-c\", \"{raw} > /out/plain\"]\n",
        raw = raw.display()
    );
    std::fs::write(dir.join("capsule.toml"), manifest).unwrap();
    let home = CapsuleHome::new();
    let mut up = home.command(&["up"]);
    up.current_dir(dir.path());
    let out = run(&mut up);
    success(&out, "capsule up");
    let read = |name: &str| std::fs::read_to_string(dir.join("out").join(name)).unwrap();
    assert_eq!(read("strict").trim(), "strict-name", "under --backstop all");
    assert_eq!(
        read("plain").trim(),
        host_name(),
        "by default a raw call is the host's"
    );
}
