//! What a program reaches only through `syscall()` — `getdents64` of a merged
//! directory, `openat2` with `RESOLVE_*` rules — and glibc's `tmpfile`, which opens
//! its file inside glibc: `c-tests/fs_rawcalls.c` natively on a copy of the test tree
//! (the kernel's answers), then in capsules on a test root (the same answers), under
//! plain `LD_PRELOAD` and `capsule run --root`. Checked on disk: the changes are in
//! the upper layer, the tmpfile lived there, the lower layer is unchanged.

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::fs;

use common::*;
use fs_support::*;

/// Whether this kernel has openat2 (a null `how` gives EFAULT there, ENOSYS before 5.6).
fn kernel_has_openat2() -> bool {
    // SAFETY: the kernel checks the pointers; a null `how` is rejected.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c".".as_ptr(),
            0usize,
            24usize,
        )
    };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

#[test]
fn the_probe_holds_natively() {
    let dir = TempDir::new("rawcalls-native");
    populate_data(dir.path());
    let out = run_native(compile_c("fs_rawcalls"), &[dir.str()]);
    let text = probe_ok(&out, "fs_rawcalls natively");
    let tmp = key_values(&text)["tmpfile_host"].clone();
    assert!(tmp.ends_with(" (deleted)"), "{tmp}");
}

#[test]
fn getdents64_openat2_and_tmpfile_in_a_capsule() {
    let root = TestRoot::new();
    for via in [Via::Preload, Via::Loader] {
        let c = Capsule::new(via, &root);
        let out = c.run("/probes/fs_rawcalls", &["/"]);
        root.assert_probe_ok(&out, &c.label("fs_rawcalls"));
        let seen = key_values(&stdout(&out));
        assert!(
            !kernel_has_openat2() || !stdout(&out).contains("openat2: not in this kernel"),
            "{}: openat2 must not be ENOSYS in a capsule",
            c.label("fs_rawcalls")
        );
        // The changes the probe made are the upper layer's.
        assert!(c.up("/list/new1").is_file(), "{}", c.label("new1"));
        assert!(
            fs::symlink_metadata(c.up("/list/.wh.b")).is_ok(),
            "{}: b's whiteout",
            c.label("upper layer")
        );
        assert_eq!(
            fs::read_to_string(c.up("/tmp/o2.txt")).ok().as_deref(),
            Some("o2\n"),
            "{}: openat2 O_CREAT",
            c.label("upper layer")
        );
        // tmpfile's file lived in the upper layer's /tmp.
        let tmp = &seen["tmpfile_host"];
        let upper_tmp = format!("{}/", c.up("/tmp").display());
        assert!(
            tmp.starts_with(&upper_tmp) && tmp.ends_with(" (deleted)"),
            "{}: tmpfile's file was {tmp}, not in {upper_tmp}",
            c.label("tmpfile")
        );
    }
    root.assert_unchanged();
}

#[test]
fn more_path_functions_hold_natively() {
    let dir = TempDir::new("more-native");
    populate_data(dir.path());
    let out = run_native(compile_c("fs_more"), &[dir.str()]);
    probe_ok(&out, "fs_more natively");
}

/// futimesat, lchmod, scandirat, pathconf, ftok, inotify_add_watch,
/// name_to_handle_at, posix_spawn file actions and execveat name the capsule's files:
/// the probe sees what it sees natively, the changes are in the upper layer, the root
/// is untouched.
#[test]
fn more_path_functions_in_a_capsule() {
    let root = TestRoot::new();
    for via in [Via::Preload, Via::Loader] {
        let c = Capsule::new(via, &root);
        let out = c.run("/probes/fs_more", &["/"]);
        root.assert_probe_ok(&out, &c.label("fs_more"));
        assert_eq!(
            fs::read_to_string(c.up("/cow/append.txt")).ok().as_deref(),
            Some("line1\nsetting=1\n"),
            "{}: the spawned child's write",
            c.label("upper layer")
        );
        assert_eq!(
            fs::read_to_string(c.up("/tmp/spawned.txt")).ok().as_deref(),
            Some("rel\n"),
            "{}: the spawned child's creation",
            c.label("upper layer")
        );
    }
    root.assert_unchanged();
}

/// chroot, mount and opening by handle would leave the capsule's view: refused.
#[test]
fn calls_that_would_leave_the_view_are_refused() {
    let root = TestRoot::new();
    let c = Capsule::new(Via::Loader, &root);
    let script = "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True)\n\
        for name, call in [('chroot', lambda: libc.chroot(b'/tmp')), ('mount', lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)), ('open_by_handle_at', lambda: libc.open_by_handle_at(-100, None, 0))]:\n\
        \x20   rc = call(); print(name, rc, os.strerror(ctypes.get_errno()))";
    let out = c.home.run(&["run", "--rm", "--", "python3", "-c", script]);
    assert_eq!(
        success(&out, "python3 in a host-root capsule"),
        "chroot -1 Operation not permitted\nmount -1 Operation not permitted\nopen_by_handle_at -1 Operation not permitted\n"
    );
}

/// io_uring carries path operations no hook sees: in a capsule its three system calls
/// are ENOSYS (a seccomp filter the loader installs with the kernel backstop), for a
/// dynamic program making the call with its own system call instruction and for a
/// static one; natively, and with the backstop off, the kernel answers.
#[test]
fn io_uring_is_enosys_in_a_capsule_for_every_program() {
    let dynamic = compile_c("io_uring_probe");
    let static_probe = bin_dir().join("c-tests/io_uring_probe-static");
    let temp = bin_dir().join(format!(
        "c-tests/.io_uring_probe-static.{}",
        std::process::id()
    ));
    let built = std::process::Command::new("cc")
        .args(["-static", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&temp)
        .arg(workspace_root().join("c-tests/io_uring_probe.c"))
        .status()
        .is_ok_and(|s| s.success());
    if built {
        fs::rename(&temp, &static_probe).unwrap();
    }
    let native = run_native(&dynamic, &[]);
    let native = success(&native, "io_uring_probe natively");
    let refused = "setup=ENOSYS\nenter=ENOSYS\nregister=ENOSYS\n";
    assert_ne!(native, refused, "this kernel has no io_uring to refuse");
    assert!(native.starts_with("setup=OK\n"), "{native}");
    assert!(!native.contains("ENOSYS"), "{native}");

    let home = CapsuleHome::new();
    let mut probes = vec![dynamic.clone()];
    if built {
        probes.push(static_probe);
    } else {
        eprintln!("no static libc (libc6-dev's libc.a): the static probe is skipped");
    }
    for probe in &probes {
        let out = home.run(&["run", "--rm", "--", probe.to_str().unwrap()]);
        assert_eq!(
            success(&out, "io_uring_probe in a capsule"),
            refused,
            "{}",
            probe.display()
        );
    }
    // Without the backstop there is no filter either (README: what the backstop does).
    let out = run(home
        .command(&["run", "--rm", "--", dynamic.to_str().unwrap()])
        .env("CAPSULE_LANDLOCK", "off"));
    assert_eq!(success(&out, "io_uring_probe, backstop off"), native);
}
