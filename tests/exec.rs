//! The env/exec replica: every way libc starts a program keeps the shim (once) and the
//! capsule's settings in the child, even when the program hands the child an empty
//! environment; so do `fork`, threads and `vfork`.

mod common;

use common::*;

const HOST: &str = "exec-host";
const UID: &str = "4242";
const OFFSET: &str = "-1d";
const OFFSET_SECS: &str = "-86400";

fn capsule_env() -> [(&'static str, &'static str); 3] {
    [
        ("CAPSULE_HOSTNAME", HOST),
        ("CAPSULE_UID", UID),
        ("CAPSULE_TIME_OFFSET", OFFSET),
    ]
}

const RETURNING_FORMS: &[&str] = &[
    "posix_spawn",
    "posix_spawnp",
    "system",
    "popen",
    "vfork",
    "fork",
];

/// Runs exec_family FORM MODE natively and under the shim and checks what the child saw.
fn check_form(form: &str) {
    let exec_family = compile_c("exec_family");
    let probe = compile_c("probe_env");
    let probe = probe.to_str().unwrap();
    for mode in ["keep", "empty", "custom"] {
        let what = format!("exec_family {form} {mode}");
        let want_var = if mode == "custom" { "kept" } else { "" };

        // Natively: the host's view, no shim.
        let out = run_native(&exec_family, &[form, mode, probe]);
        let kv = key_values(&success(&out, &format!("native {what}")));
        assert_eq!(kv["tag"], format!("{form}-{mode}"), "native {what}");
        assert_eq!(kv["hostname"], host_name(), "native {what}");
        assert_eq!(kv["uid"], host_uid().to_string(), "native {what}");
        assert_eq!(kv["shim_mapped"], "0", "native {what}");
        assert_eq!(kv["test_var"], want_var, "native {what}");
        if let Some(parent) = kv.get("parent_hostname") {
            assert_eq!(*parent, host_name(), "native {what}: parent");
        }

        // Under the shim: the capsule's view, the shim exactly once.
        let out = run_preload(&capsule_env(), &exec_family, &[form, mode, probe]);
        let text = success(&out, &what);
        let kv = key_values(&text);
        assert_eq!(kv["tag"], format!("{form}-{mode}"), "{what}:\n{text}");
        assert_eq!(kv["hostname"], HOST, "{what}: child host name\n{text}");
        assert_eq!(kv["uid"], UID, "{what}: child uid\n{text}");
        assert_eq!(kv["euid"], UID, "{what}: child euid\n{text}");
        assert_eq!(
            kv["realtime_offset"], OFFSET_SECS,
            "{what}: child clock\n{text}"
        );
        assert_eq!(kv["shim_mapped"], "1", "{what}: shim loaded\n{text}");
        assert_eq!(
            kv["test_var"], want_var,
            "{what}: the program's own variable"
        );
        assert_shim_once(&kv["ld_preload"], &what);
        // The forms that return: the parent itself is still in the capsule.
        if RETURNING_FORMS.contains(&form) {
            assert_eq!(
                kv.get("parent_hostname").map(String::as_str),
                Some(HOST),
                "{what}: the PARENT's host name after its child ran\n{text}"
            );
            assert_eq!(
                kv.get("parent_uid").map(String::as_str),
                Some(UID),
                "{what}: the PARENT's uid after its child ran\n{text}"
            );
        }
    }
}

macro_rules! exec_form_tests {
    ($($name:ident => $form:literal,)*) => {
        $(
            #[test]
            fn $name() {
                check_form($form);
            }
        )*
    };
}

exec_form_tests! {
    form_execve => "execve",
    form_execv => "execv",
    form_execvp => "execvp",
    form_execvpe => "execvpe",
    form_execl => "execl",
    form_execlp => "execlp",
    form_execle => "execle",
    form_fexecve => "fexecve",
    form_execveat => "execveat",
    form_posix_spawn => "posix_spawn",
    form_posix_spawnp => "posix_spawnp",
    form_system => "system",
    form_popen => "popen",
    form_vfork_execve => "vfork",
    form_fork_execve => "fork",
}

#[test]
fn other_preloaded_libraries_stay_beside_the_shim() {
    let marker = compile_c_shared("libmarker");
    let exec_family = compile_c("exec_family");
    let probe = compile_c("probe_env");
    let preload = format!("{}:{}", marker.display(), shim().display());
    let mut env = capsule_env().to_vec();
    env.push(("LD_PRELOAD", &preload));
    for form in ["execve", "posix_spawn", "system", "vfork"] {
        let out = run_preload(&env, &exec_family, &[form, "keep", probe.to_str().unwrap()]);
        let text = success(&out, form);
        let kv = key_values(&text);
        assert_eq!(kv["hostname"], HOST, "{form}:\n{text}");
        assert_eq!(
            kv["marker"], "1",
            "{form}: libmarker.so was dropped\n{text}"
        );
        assert!(
            kv["ld_preload"].contains(marker.to_str().unwrap()),
            "{form}: LD_PRELOAD lost libmarker.so: {}",
            kv["ld_preload"]
        );
        assert_shim_once(&kv["ld_preload"], form);
    }
}

#[test]
fn shim_is_not_duplicated_over_generations() {
    // Each generation re-execs through a form that passes environ along.
    let probe = compile_c("probe_env");
    let script = format!("exec sh -c 'exec sh -c \"exec {}\"'", probe.display());
    let out = run_preload(&capsule_env(), "sh", &["-c", &script]);
    let kv = key_values(&success(&out, "three generations"));
    assert_eq!(kv["hostname"], HOST);
    assert_shim_once(&kv["ld_preload"], "three generations of sh");
}

// ---- real programs clearing the environment ------------------------------------------

#[test]
fn env_i_keeps_the_capsule() {
    let out = run_preload(&capsule_env(), "env", &["-i", "hostname"]);
    assert_eq!(success(&out, "env -i hostname"), format!("{HOST}\n"));
    let out = run_preload(&capsule_env(), "env", &["-i", "/usr/bin/id", "-u"]);
    assert_eq!(success(&out, "env -i id -u"), format!("{UID}\n"));
    let probe = compile_c("probe_env");
    let out = run_preload(&capsule_env(), "env", &["-i", probe.to_str().unwrap()]);
    let kv = key_values(&success(&out, "env -i probe_env"));
    assert_shim_once(&kv["ld_preload"], "env -i");
}

#[test]
fn bash_env_i_bash() {
    let out = run_preload(
        &capsule_env(),
        "bash",
        &["-c", "env -i bash -c 'hostname; id -u'"],
    );
    assert_eq!(
        success(&out, "bash -c 'env -i bash -c ...'"),
        format!("{HOST}\n{UID}\n")
    );
}

#[test]
fn python_subprocess_with_an_empty_environment() {
    let script = "import subprocess, os, socket\n\
                  r = subprocess.run(['hostname'], env={}, capture_output=True, text=True)\n\
                  print(r.stdout.strip())\n\
                  r = subprocess.run(['/usr/bin/id', '-u'], env={}, capture_output=True, text=True)\n\
                  print(r.stdout.strip())\n\
                  print('parent', socket.gethostname(), os.getuid())\n";
    let out = run_preload(&capsule_env(), python3(), &["-c", script]);
    assert_eq!(
        success(&out, "python subprocess env={}"),
        format!("{HOST}\n{UID}\nparent {HOST} {UID}\n")
    );
}

#[test]
fn python_subprocess_os_system_and_popen() {
    let script = "import subprocess, os, sys\n\
                  print(subprocess.run(['hostname'], capture_output=True, text=True).stdout.strip())\n\
                  print(subprocess.check_output(['id', '-u'], text=True).strip())\n\
                  sys.stdout.flush()\n\
                  os.system('hostname')\n\
                  print(os.popen('id -u').read().strip())\n";
    let out = run_preload(&capsule_env(), python3(), &["-c", script]);
    assert_eq!(
        success(&out, "python subprocess/os.system/os.popen"),
        format!("{HOST}\n{UID}\n{HOST}\n{UID}\n")
    );
}

// ---- fork and threads ----------------------------------------------------------------

#[test]
fn threads_and_fork_natively() {
    let prog = compile_c("threads_fork");
    let probe = compile_c("probe_env");
    let (host, uid) = (host_name(), host_uid().to_string());
    let args = [host.as_str(), uid.as_str(), "0", probe.to_str().unwrap()];
    let out = run_native(&prog, &args);
    probe_ok(&out, "native threads_fork");
}

#[test]
fn threads_and_fork_under_the_shim() {
    let prog = compile_c("threads_fork");
    let probe = compile_c("probe_env");
    let args = [HOST, UID, OFFSET_SECS, probe.to_str().unwrap()];
    // Twice: a deadlock around fork is a matter of luck.
    for round in 0..2 {
        let out = run_preload(&capsule_env(), &prog, &args);
        probe_ok(&out, &format!("threads_fork under the shim, round {round}"));
    }
}

// ---- a vfork child shares its parent's heap ------------------------------------------

/// A vfork child that runs a program by a name longer than the shim's inline path
/// buffers takes nothing from the heap it shares with its parent (what it took would
/// never be freed once the exec succeeds), and the exec works as natively.
#[test]
fn vfork_child_runs_a_long_name_without_taking_from_the_heap() {
    let prog = compile_c("vfork_long_path");
    let dir = TempDir::new("vfork-long");
    let mut deep = dir.path().to_path_buf();
    for part in 0..6 {
        deep.push(format!("{part}-{}", "d".repeat(60)));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let program = deep.join("true");
    std::fs::copy("/bin/true", &program).unwrap();
    let program = program.to_str().unwrap();
    assert!(program.len() > 300, "{program}");

    let native = key_values(&success(&run_native(&prog, &[program]), "native"));
    assert_eq!(native["status"], "0", "natively: {native:?}");
    assert_eq!(native["heap_delta"], "0", "natively: {native:?}");

    let out = run_capsule(&["run", "--rm", "--", prog.to_str().unwrap(), program]);
    let capsule = key_values(&success(&out, "in a capsule"));
    assert_eq!(capsule["status"], "0", "in a capsule: {capsule:?}");
    assert_eq!(capsule["heap_delta"], "0", "in a capsule: {capsule:?}");
}
