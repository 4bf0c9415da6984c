//! Programs of a capsule root run with the root's own dynamic loader and libraries
//! (the root's `ld.so` is run explicitly, as fakechroot does), while they still see
//! their own path in `/proc/self/exe` and the `argv[0]` their caller gave. A root
//! whose glibc is older than the shim's, a capsule over the host's `/` and statically
//! linked programs run as before.
//!
//! The test root holds copies of the host's libraries at the host's paths inside the
//! root directory, so `/proc/self/maps` shows which copy is mapped: the root's
//! (`ROOT/.../libc.so.6`) or the host's.

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use fs_support::*;

const PROBE: &str = "/probes/fs_exec_root";

/// Runs `script` in the capsule and returns the probe's KEY=VALUE lines plus `rc`.
#[track_caller]
fn observe(c: &Capsule, script: &str) -> HashMap<String, String> {
    key_values(&c.sh_ok(script))
}

#[track_caller]
fn assert_root_loader(c: &Capsule, seen: &HashMap<String, String>, what: &str) {
    let root = format!("{}/", c.root.str());
    for key in ["libc", "ldso"] {
        let mapped = &seen[key];
        assert!(
            mapped.starts_with(&root),
            "{}: {key} should be the root's copy under {root}, is {mapped}",
            c.label(what)
        );
    }
    assert!(seen["libc"].ends_with("/libc.so.6"), "{seen:?}");
}

#[test]
fn a_roots_program_runs_with_the_roots_loader_and_sees_its_own_path() {
    let root = TestRoot::new();
    for via in [Via::Preload, Via::Loader] {
        let c = Capsule::new(via, &root);
        let seen = observe(
            &c,
            &format!("rc=0; {PROBE} --exit 5 'two words' '' || rc=$?; echo rc=$rc"),
        );
        let what = "the probe run by sh";
        assert_root_loader(&c, &seen, what);
        assert_eq!(seen["rc"], "5", "{}: exit status", c.label(what));
        assert_eq!(seen["argc"], "5", "{}: {seen:?}", c.label(what));
        assert_eq!(seen["argv0"], PROBE, "{}", c.label(what));
        assert_eq!(seen["arg3"], "two words", "{}", c.label(what));
        assert_eq!(seen["arg4"], "", "{}", c.label(what));
        assert_eq!(seen["exe"], PROBE, "{}", c.label(what));
        assert_eq!(seen["realpath"], PROBE, "{}", c.label(what));
        assert_eq!(seen["exe_same"], "yes", "{}", c.label(what));
        // The kernel ran the loader with its options before the program, yet its
        // command line (what ps shows) is the program's argv: the shim moved it.
        assert_eq!(
            seen["cmdline"],
            format!("{PROBE}|--exit|5|two words"),
            "{}: {seen:?}",
            c.label(what)
        );

        // A relative path keeps the caller's argv[0]; a PATH search finds the probe.
        let seen = observe(&c, "cd /probes && ./fs_exec_root one");
        assert_eq!(seen["argv0"], "./fs_exec_root", "{}", c.label("./probe"));
        assert_eq!(seen["exe"], PROBE, "{}", c.label("./probe"));
        assert_root_loader(&c, &seen, "./probe");
        let seen = observe(&c, "PATH=/probes:/bin exec fs_exec_root");
        assert_eq!(seen["argv0"], "fs_exec_root", "{}", c.label("PATH search"));
        assert_eq!(seen["exe"], PROBE, "{}", c.label("PATH search"));
        assert_root_loader(&c, &seen, "PATH search");

        // Coreutils from the root: readlink and ls name themselves; exit codes carry.
        let readlink = fs::canonicalize(which("readlink")).expect("readlink");
        let ls = fs::canonicalize(which("ls")).expect("ls");
        let out = c.sh_ok(
            "readlink /proc/self/exe; ls -l /proc/self/exe; rc=0; sh -c 'exit 7' || rc=$?; echo rc=$rc",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            readlink.to_str().unwrap(),
            "{}",
            c.label("readlink")
        );
        assert!(
            lines[1].ends_with(&format!("-> {}", ls.display())),
            "{}: {}",
            c.label("ls -l /proc/self/exe"),
            lines[1]
        );
        assert_eq!(lines[2], "rc=7", "{}", c.label("sh -c 'exit 7'"));
        let maps = c.sh_ok("cat /proc/self/maps");
        assert!(
            maps.contains(&format!("{}/", root.str())) && maps.contains("libc.so.6"),
            "{}: cat's maps:\n{maps}",
            c.label("cat")
        );
        assert!(
            !maps
                .lines()
                .any(|l| l.ends_with(" /usr/lib/x86_64-linux-gnu/libc.so.6")
                    || l.ends_with(" /lib/x86_64-linux-gnu/libc.so.6")),
            "{}: the host's libc is mapped:\n{maps}",
            c.label("cat")
        );
    }
    root.assert_unchanged();
}

#[test]
fn the_first_program_of_a_capsule_runs_with_the_roots_loader_too() {
    let root = TestRoot::new();
    for via in [Via::Preload, Via::Loader] {
        let c = Capsule::new(via, &root);
        let out = c.run(PROBE, &["--exit", "9", "x y"]);
        assert_eq!(out.status.code(), Some(9), "{}", describe(&out));
        let seen = key_values(&stdout(&out));
        assert_root_loader(&c, &seen, "the first program");
        // The harness starts it by its host path (plain LD_PRELOAD) or its capsule
        // path (capsule run): argv[0] is what was given, /proc/self/exe the capsule's.
        let argv0 = match via {
            Via::Preload => root.host(PROBE).to_str().unwrap().to_string(),
            Via::Loader => PROBE.to_string(),
        };
        assert_eq!(seen["argv0"], argv0, "{}", c.label("argv[0]"));
        assert_eq!(seen["arg3"], "x y", "{}", c.label("arguments"));
        assert_eq!(seen["argc"], "4", "{}", c.label("arguments"));
        assert_eq!(seen["exe"], PROBE, "{}", c.label("/proc/self/exe"));
        assert_eq!(seen["exe_same"], "yes", "{}", c.label("/proc/self/exe"));
    }
    root.assert_unchanged();
}

#[test]
fn a_script_interpreter_from_the_root_runs_with_the_roots_loader() {
    let root = TestRoot::new();
    let c = Capsule::new(Via::Preload, &root);
    let out = c.sh_ok(
        "mkdir -p /tmp/s && printf '#!/bin/sh\\ncat /proc/$$/maps; echo \"zero=$0 one=$1\"; \
         exit 3\\n' > /tmp/s/script && chmod +x /tmp/s/script; rc=0; /tmp/s/script arg || rc=$?; \
         echo rc=$rc",
    );
    let seen = key_values(&out);
    assert_eq!(seen["rc"], "3", "{out}");
    assert!(out.contains("zero=/tmp/s/script one=arg"), "{out}");
    let maps_of_sh: Vec<&str> = out.lines().filter(|l| l.contains("libc.so.6")).collect();
    assert!(
        !maps_of_sh.is_empty()
            && maps_of_sh
                .iter()
                .all(|l| l.contains(&format!("{}/", root.str()))),
        "the script's sh should map the root's libc:\n{out}"
    );
    root.assert_unchanged();
}

#[test]
fn the_capsules_library_path_reaches_the_roots_loader() {
    let root = TestRoot::new();
    let c = Capsule::new(Via::Preload, &root);
    // A library only the capsule's upper layer holds, in a directory the root lacks.
    let lib = c.up("/opt/lib/libmarker.so");
    fs::create_dir_all(lib.parent().unwrap()).unwrap();
    fs::copy(compile_c_shared("libmarker"), &lib).unwrap();
    let seen = observe(
        &c,
        &format!("LD_LIBRARY_PATH=/opt/lib {PROBE} --dlopen libmarker.so"),
    );
    assert_eq!(seen["dlopen"], "ok", "{seen:?}");
    assert_root_loader(&c, &seen, "with LD_LIBRARY_PATH");
    let seen = observe(&c, &format!("{PROBE} --dlopen libmarker.so"));
    assert_ne!(
        seen["dlopen"], "ok",
        "found without LD_LIBRARY_PATH: {seen:?}"
    );
    root.assert_unchanged();
}

/// The highest `GLIBC_2.*` version of libc.so.6 the shim needs (from `readelf -V`).
fn shim_newest_glibc() -> String {
    let out = run_native("readelf", &["-V", shim().to_str().unwrap()]);
    let text = success(&out, "readelf -V libcapsule.so");
    let mut in_libc = false;
    let mut best: Option<(Vec<u32>, String)> = None;
    for line in text.lines() {
        if line.contains("File:") {
            in_libc = line.contains("File: libc.so.6");
            continue;
        }
        let Some(name) = line
            .split("Name: ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
        else {
            continue;
        };
        if !in_libc || !name.starts_with("GLIBC_2.") {
            continue;
        }
        let key: Vec<u32> = name["GLIBC_".len()..]
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, name.to_string()));
        }
    }
    best.expect("the shim needs some GLIBC version").1
}

#[test]
fn a_root_with_an_older_glibc_runs_programs_with_the_hosts_loader() {
    let root = TestRoot::new();
    // Make the root's libc look older than the shim: rename the newest version the
    // shim needs (same length, so the file stays valid).
    let newest = shim_newest_glibc();
    let libc = fs::canonicalize(root.host("/lib/x86_64-linux-gnu/libc.so.6"))
        .or_else(|_| fs::canonicalize(root.host("/lib/aarch64-linux-gnu/libc.so.6")))
        .expect("the root's libc");
    let mut bytes = fs::read(&libc).unwrap();
    let from = format!("{newest}\0").into_bytes();
    let mut to = from.clone();
    to[5] = b'X'; // GLIBC_2.35 -> GLIBCX2.35
    let mut replaced = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if bytes[i..i + from.len()] == from[..] {
            bytes[i..i + from.len()].copy_from_slice(&to);
            replaced += 1;
        }
        i += 1;
    }
    assert!(replaced > 0, "{newest} not found in {}", libc.display());
    fs::write(&libc, &bytes).unwrap();
    fs::set_permissions(&libc, fs::Permissions::from_mode(0o755)).unwrap();
    let before = Snapshot::of(root.path());

    let mut c = Capsule::new(Via::Preload, &root);
    c.extra.push(("CAPSULE_LOG".into(), "warn".into()));
    c.extra.push(("CAPSULE_LOG_FILE".into(), "stderr".into()));
    let out = c.sh(&format!("rc=0; {PROBE} --exit 4 || rc=$?; echo rc=$rc"));
    let text = success(&out, "the probe in a root with an older glibc");
    let seen = key_values(&text);
    assert_eq!(seen["rc"], "4");
    assert_eq!(seen["exe"], PROBE);
    assert_eq!(seen["argv0"], PROBE);
    assert!(
        !seen["libc"].starts_with(&format!("{}/", root.str())),
        "the root's (older) libc must not be loaded: {seen:?}"
    );
    assert_eq!(
        seen["cmdline_args"], "3",
        "no loader run explicitly: {seen:?}"
    );
    assert!(
        stderr(&out).contains("older than the one the shim was built for"),
        "the shim should say why:\n{}",
        stderr(&out)
    );
    Snapshot::of(root.path()).assert_same(&before, "the root");
}

#[test]
fn static_programs_and_capsules_over_the_host_run_as_before() {
    // A statically linked program in a root: executed directly.
    let root = TestRoot::new();
    let c = Capsule::new(Via::Preload, &root);
    let dir = TempDir::new("static");
    let src = dir.join("s.c");
    fs::write(&src, "int main(void) { return 6; }\n").unwrap();
    let bin = c.up("/static-six");
    let cc = run_native(
        "cc",
        &[
            "-static",
            "-o",
            bin.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    if cc.status.success() {
        let out = c.sh_ok("rc=0; /static-six || rc=$?; echo rc=$rc");
        assert_eq!(key_values(&out)["rc"], "6", "{out}");
    } else {
        eprintln!("no static libc here: {}", stderr(&cc));
    }

    // Over the host's `/`: the host's loader runs the program, as the kernel does.
    let upper = TempDir::new("host-upper");
    let probe = compile_c("fs_exec_root");
    let out = run_preload(
        &[("CAPSULE_UPPER", upper.str())],
        "/bin/sh",
        &["-c", &format!("{} --exit 2; echo rc=$?", probe.display())],
    );
    let seen = key_values(&success(&out, "the probe over the host's /"));
    assert_eq!(seen["rc"], "2");
    assert_eq!(seen["cmdline_args"], "3", "{seen:?}");
    assert_eq!(Path::new(&seen["exe"]), probe.as_path());
    assert_eq!(seen["exe_same"], "yes");
}

/// The dynamic loader run by hand (`ld.so PROGRAM`) opens PROGRAM itself, unseen by
/// the shim: PROGRAM is the capsule's file, never the host's file of that name.
#[test]
fn the_loader_run_by_hand_runs_the_capsules_program() {
    let root = TestRoot::new();
    let ldso = "/lib64/ld-linux-x86-64.so.2";
    if !root.path().join(ldso.trim_start_matches('/')).exists() {
        eprintln!("skipped: the test root has no {ldso}");
        return;
    }
    // A host program at a path the capsule does not have.
    let outside = TempDir::new("host-only");
    let host_prog = outside.path().join("host-only-echo");
    fs::copy("/bin/echo", &host_prog).unwrap();
    for via in [Via::Preload, Via::Loader] {
        let c = Capsule::new(via, &root);
        let script = format!(
            "cp /bin/cat /tmp/mycat && {ldso} /tmp/mycat /secret && {ldso} --inhibit-cache /tmp/mycat /etc/app.conf; \
             {ldso} {} host-program-ran 2>/dev/null || echo host-program-not-run",
            host_prog.display()
        );
        let out = c.sh(&script);
        assert_eq!(
            stdout(&out),
            "root secret\nsetting=1\nhost-program-not-run\n",
            "{}: {}",
            c.label("ld.so by hand"),
            describe(&out)
        );
    }
    root.assert_unchanged();
}

/// An extra `LD_PRELOAD` entry is a capsule path, which the dynamic loader (opening
/// it itself) gets as the host file it names; a host library the capsule does not
/// have is left out rather than loaded.
#[test]
fn extra_preloads_are_the_capsules_libraries() {
    let root = TestRoot::new();
    let outside = TempDir::new("host-lib");
    let host_lib = outside.path().join("libhostonly.so");
    fs::copy(compile_c_shared("libmarker"), &host_lib).unwrap();
    for via in [Via::Preload, Via::Loader] {
        let c = Capsule::new(via, &root);
        let lib = c.up("/opt/lib/libmarker.so");
        fs::create_dir_all(lib.parent().unwrap()).unwrap();
        fs::copy(compile_c_shared("libmarker"), &lib).unwrap();
        let script = format!(
            "LD_PRELOAD=/opt/lib/libmarker.so cat /proc/self/maps | grep -q libmarker && echo loaded; \
             LD_PRELOAD={} cat /proc/self/maps | grep -q libhostonly || echo left-out",
            host_lib.display()
        );
        let out = c.sh(&script);
        assert_eq!(
            stdout(&out),
            "loaded\nleft-out\n",
            "{}: {}",
            c.label("LD_PRELOAD"),
            describe(&out)
        );
    }
    root.assert_unchanged();
}

// ---- the loader worked out once per change (exec/loader_cache.rs) ----------------------
// Only `capsule run` has the shared state the entry lives in: the preload-only way
// works the loader out on every exec, as before.

#[test]
fn a_library_directory_made_in_the_capsule_reaches_the_next_program() {
    // The first probe fills the entry; then a standard library directory the root
    // lacks is made in the capsule with a library in it: the next probe finds it.
    let root = TestRoot::new();
    let c = Capsule::new(Via::Loader, &root);
    let stash = c.up("/opt/stash/libmarker.so");
    fs::create_dir_all(stash.parent().unwrap()).unwrap();
    fs::copy(compile_c_shared("libmarker"), &stash).unwrap();
    let seen = observe(
        &c,
        &format!(
            "{PROBE} --dlopen libmarker.so | while IFS= read -r x; do echo \"before_$x\"; done; \
             mkdir -p /usr/local/lib/x86_64-linux-gnu; \
             cp /opt/stash/libmarker.so /usr/local/lib/x86_64-linux-gnu/; \
             {PROBE} --dlopen libmarker.so"
        ),
    );
    assert_ne!(
        seen["before_dlopen"], "ok",
        "found before it was there: {seen:?}"
    );
    assert_eq!(
        seen["dlopen"], "ok",
        "the new directory was not searched: {seen:?}"
    );
    assert_root_loader(&c, &seen, "after the directory was made");
    assert!(c
        .up("/usr/local/lib/x86_64-linux-gnu/libmarker.so")
        .exists());
    root.assert_unchanged();
}

#[test]
fn a_loader_rewritten_in_the_upper_layer_runs_the_next_program() {
    // The loader's directory is already in the upper layer (a file made there), the
    // first probe runs the lower loader and fills the entry; a new loader is then
    // moved over it, as dpkg upgrades libc6 (no directory made): the next probe runs
    // the upper layer's copy.
    let root = TestRoot::new();
    let c = Capsule::new(Via::Loader, &root);
    let seen = observe(
        &c,
        &format!(
            "l=$(readlink -f /lib64/ld-linux-x86-64.so.2); d=${{l%/*}}; echo path=$l; \
             touch \"$d/.made\"; \
             {PROBE} | while IFS= read -r x; do echo \"before_$x\"; done; \
             cp \"$l\" \"$d/.ld.new\"; mv \"$d/.ld.new\" \"$l\"; \
             {PROBE}"
        ),
    );
    let lower = format!("{}/", c.root.str());
    assert!(
        seen["before_ldso"].starts_with(&lower),
        "the first probe should run the lower loader: {seen:?}"
    );
    let upper = c.up(&seen["path"]);
    assert_eq!(
        Path::new(&seen["ldso"]),
        upper,
        "the rewritten loader in the upper layer should run: {seen:?}"
    );
    root.assert_unchanged();
}
