//! Real, unmodified programs under `capsule run`: coreutils, shells with pipelines,
//! Python with subprocesses, `env -i`.

mod common;

use common::*;

#[test]
fn hostname_and_uname() {
    let out = run_capsule(&["run", "--hostname", "prog-host", "--", "hostname"]);
    assert_eq!(success(&out, "hostname"), "prog-host\n");
    let out = run_capsule(&["run", "--hostname", "prog-host", "--", "uname", "-n"]);
    assert_eq!(success(&out, "uname -n"), "prog-host\n");
}

#[test]
fn id_and_whoami() {
    let native = success(&run_native("id", &["nobody"]), "native id nobody");
    let out = run_capsule(&["run", "--user", "nobody", "--", "id"]);
    assert_eq!(success(&out, "id"), native);
    let out = run_capsule(&["run", "--user", "nobody", "--", "whoami"]);
    assert_eq!(success(&out, "whoami"), "nobody\n");
    let out = run_capsule(&["run", "--user", "1", "--", "id", "-un"]);
    assert_eq!(success(&out, "id -un"), "daemon\n");
}

#[test]
fn date() {
    let out = run_capsule(&[
        "run",
        "--time-at",
        "2030-06-15T12:00:00Z",
        "--",
        "date",
        "-u",
        "+%Y-%m-%dT%H:%M",
    ]);
    let text = success(&out, "date -u");
    // The run may straddle a minute boundary.
    assert!(
        text == "2030-06-15T12:00\n" || text == "2030-06-15T12:01\n",
        "date printed {text:?}"
    );
    let native: i64 = success(&run_native("date", &["+%Y"]), "native date")
        .trim()
        .parse()
        .unwrap();
    let out = run_capsule(&["run", "--time-offset", "-1y", "--", "date", "+%Y"]);
    let year: i64 = success(&out, "date +%Y").trim().parse().unwrap();
    assert!(
        year == native - 1 || year == native,
        "a year ago is {year}, now is {native}"
    );
}

#[test]
fn bash_pipelines() {
    let out = run_capsule(&[
        "run",
        "--hostname",
        "web1",
        "--user",
        "1000",
        "--",
        "bash",
        "-c",
        "hostname | tr a-z A-Z; id -u | cat",
    ]);
    assert_eq!(success(&out, "bash pipeline"), "WEB1\n1000\n");
    let out = run_capsule(&[
        "run",
        "--hostname",
        "web1",
        "--",
        "bash",
        "-c",
        "echo $(hostname) `uname -n` $(bash -c 'hostname' | cat)",
    ]);
    assert_eq!(success(&out, "command substitutions"), "web1 web1 web1\n");
}

#[test]
fn python_with_subprocess() {
    let script = "import subprocess, socket, os\n\
                  print(socket.gethostname())\n\
                  print(subprocess.run(['hostname'], capture_output=True, text=True).stdout.strip())\n\
                  print(subprocess.check_output(['id', '-u'], text=True).strip())\n\
                  print(subprocess.check_output('uname -n', shell=True, text=True).strip())\n\
                  print(subprocess.run(['hostname'], env={}, capture_output=True, text=True).stdout.strip())\n\
                  print(os.getuid())\n";
    let out = run_capsule(&[
        "run",
        "--hostname",
        "py-capsule",
        "--user",
        "1234",
        "--",
        python3().to_str().unwrap(),
        "-c",
        script,
    ]);
    assert_eq!(
        success(&out, "python subprocess"),
        "py-capsule\npy-capsule\n1234\npy-capsule\npy-capsule\n1234\n"
    );
}

#[test]
fn python_through_pyenv_style_wrapper_scripts() {
    // `python3` from PATH may itself be a shell script that execs the interpreter.
    let out = run_capsule(&[
        "run",
        "--hostname",
        "wrapped",
        "--",
        "sh",
        "-c",
        "python3 -c 'import socket; print(socket.gethostname())'",
    ]);
    assert_eq!(success(&out, "python3 from PATH"), "wrapped\n");
}

#[test]
fn env_i() {
    let out = run_capsule(&[
        "run",
        "--hostname",
        "clean-env",
        "--user",
        "77",
        "--",
        "env",
        "-i",
        "sh",
        "-c",
        "hostname; id -u",
    ]);
    assert_eq!(success(&out, "env -i"), "clean-env\n77\n");
}

#[test]
fn exit_status_of_the_program() {
    let out = run_capsule(&["run", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let out = run_capsule(&["run", "--hostname", "h", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn outside_the_capsule_nothing_changed() {
    let before = host_name();
    let out = run_capsule(&["run", "--hostname", "elsewhere", "--", "hostname"]);
    assert_eq!(success(&out, "hostname"), "elsewhere\n");
    let out = run_native("hostname", &[]);
    assert_eq!(success(&out, "native hostname"), format!("{before}\n"));
}
