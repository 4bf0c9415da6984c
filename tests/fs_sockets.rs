//! Unix socket paths are capsule paths: a server binding a path in the capsule
//! creates the socket file in the capsule's upper layer (not on the host), a client
//! in the same capsule connects to it by that path, getsockname answers with it, and
//! this works however long the host path behind it is. Abstract names pass through.

mod common;

use common::*;

const SCRIPT: &str = r#"
import os, socket, sys
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(1)
print("name", server.getsockname())
print("exists", os.path.exists(path))
client = socket.socket(socket.AF_UNIX)
client.connect(path)
conn, _ = server.accept()
client.sendall(b"ping")
print("got", conn.recv(4).decode())
abstract = socket.socket(socket.AF_UNIX)
abstract.bind("\0capsule-test-abstract-%d" % os.getpid())
print("abstract", abstract.getsockname()[:22])
"#;

#[test]
fn a_socket_path_lives_in_the_capsule() {
    // A deliberately long state directory: the socket's host path exceeds sun_path.
    let home = CapsuleHome::new();
    let long = home.path().join("x".repeat(120));
    std::fs::create_dir_all(&long).unwrap();
    let sock = format!("/run/capsule-test-{}.sock", std::process::id());
    let mut cmd = home.command(&["run", "--name", "srv", "--", "python3", "-c", SCRIPT, &sock]);
    cmd.env("CAPSULE_HOME", &long);
    let out = run(&mut cmd);
    let text = success(&out, "python3 unix socket server and client");
    assert_eq!(
        text,
        format!("name {sock}\nexists True\ngot ping\nabstract b'\\x00capsule-test-abstract'\n")
    );
    assert!(
        !std::path::Path::new(&sock).exists(),
        "the socket file reached the host at {sock}"
    );
    let upper = long.join("capsules/srv/upper").join(&sock[1..]);
    assert!(
        std::fs::symlink_metadata(&upper).is_ok(),
        "the socket file is not in the upper layer at {}",
        upper.display()
    );
}

#[test]
fn connecting_to_a_missing_socket_is_enoent() {
    let home = CapsuleHome::new();
    let out = home.run(&[
        "run",
        "--",
        "python3",
        "-c",
        "import socket\ntry:\n    socket.socket(socket.AF_UNIX).connect('/run/capsule-no-such.sock')\nexcept OSError as e:\n    print(e.errno)",
    ]);
    assert_eq!(success(&out, "connect to a missing socket"), "2\n");
}
