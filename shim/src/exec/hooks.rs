//! FFI layer of the exec replica. The variadic `execl`, `execlp` and `execle` are in
//! `variadic.rs` and end in the hooks below.

use libc::{c_char, c_int, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t, FILE};

use super::env::{current_environ, hide_settings, repair_environ, with_child_env};
use super::program::{self, ArgvBuf};
use crate::hook::{outside, Real};

type Argv = *const *const c_char;

hook! {
    fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int, missing: -1;
    |real| {
        let exec = |file, argv| {
            // SAFETY: `file` is the caller's path or the host file the capsule's names
            // lead to, `argv` the caller's or the prepared one, `env` the child
            // environment: each a C string or NULL-terminated array, as execve(2) takes.
            let run = |env| outside(|| unsafe { real(file, argv, env) });
            // SAFETY: `envp` is the caller's environment array (execve's contract).
            unsafe { with_child_env(file, envp, run) }
        };
        // SAFETY: `path`, `argv` and `envp` are as execve(2) takes them.
        unsafe { in_capsule(path, argv, envp, false, -1, exec) }
    }

    /// With a capsule file system, the `PATH` search happens in the capsule and the
    /// host file found is executed directly.
    fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int, missing: -1;
    |real| {
        if crate::fs::layers().is_some() {
            let exec = |host, argv| {
                // SAFETY: `host` is the host file the search found, `argv` the caller's
                // or the prepared one, `env` the child environment, as execve takes.
                let run = |env| outside(|| unsafe { real_execve(host, argv, env) });
                // SAFETY: `envp` is the caller's environment array (execvpe's contract).
                unsafe { with_child_env(host, envp, run) }
            };
            // SAFETY: `file`, `argv` and `envp` are as execvpe(3) takes them.
            return unsafe { in_capsule(file, argv, envp, true, -1, exec) };
        }
        // SAFETY: the caller's arguments, with the child environment, to the real execvpe.
        let run = |env| outside(|| unsafe { real(file, argv, env) });
        // SAFETY: `envp` is the caller's environment array (execvpe's contract).
        unsafe { with_child_env(file, envp, run) }
    }

    fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int, missing: -1;
    |real| {
        // SAFETY: the caller's arguments, with the child environment, to the real fexecve.
        let run = |env| outside(|| unsafe { real(fd, argv, env) });
        // SAFETY: `envp` is the caller's environment array (fexecve's contract).
        unsafe { with_child_env(std::ptr::null(), envp, run) }
    }

    /// A path relative to `dirfd` is the capsule's program, as for `execve`; an empty
    /// one with `AT_EMPTY_PATH` runs the file `dirfd` already names.
    fn execveat(dirfd: c_int, path: *const c_char, argv: Argv, envp: Argv, flags: c_int) -> c_int, missing: -1, support: Partial("AT_SYMLINK_NOFOLLOW is not checked for a capsule path");
    |real| {
        // SAFETY: the caller's arguments, with the child environment, to the real execveat.
        let pass = |env| outside(|| unsafe { real(dirfd, path, argv, env, flags) });
        // SAFETY: `path` is a C string when not null (execveat's contract).
        let empty = path.is_null() || unsafe { *path } == 0;
        if let (Some(layers), false) = (crate::fs::layers(), empty) {
            // SAFETY: `path` is a non-null C string (execveat's contract).
            let path = unsafe { std::ffi::CStr::from_ptr(path) };
            return match crate::fs::ops::absolute(layers, dirfd, path) {
                Ok(full) => {
                    let exec = |file, argv| {
                        // SAFETY: `file` is the capsule program's host file, `argv` the
                        // caller's or the prepared one, as execve takes them.
                        let run = |env| outside(|| unsafe { real_execve(file, argv, env) });
                        // SAFETY: `envp` is the caller's environment array.
                        unsafe { with_child_env(file, envp, run) }
                    };
                    // SAFETY: `full` is a C string; `argv` and `envp` are the caller's.
                    unsafe { in_capsule(full.as_ptr(), argv, envp, false, -1, exec) }
                }
                Err(crate::hook::Skip::Errno(e)) => failed(-1, e),
                // SAFETY: `envp` is the caller's environment array.
                Err(crate::hook::Skip::Pass) => unsafe { with_child_env(std::ptr::null(), envp, pass) },
            };
        }
        // SAFETY: `envp` is the caller's environment array (execveat's contract).
        unsafe { with_child_env(std::ptr::null(), envp, pass) }
    }

    fn posix_spawn(pid: *mut pid_t, path: *const c_char, actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: Argv, envp: Argv) -> c_int, missing: libc::ENOSYS, version: "GLIBC_2.15";
    |real| {
        let spawn = |file, argv| {
            // SAFETY: the caller's `pid`, `actions` and `attr`; `file` and `argv` the
            // caller's or the prepared program's; `env` the child environment.
            let run = |env| unsafe { real(pid, file, actions, attr, argv, env) };
            // SAFETY: `envp` is the caller's environment array (posix_spawn's contract).
            unsafe { with_child_env(file, envp, run) }
        };
        // SAFETY: `path`, `argv` and `envp` are as posix_spawn(3) takes them.
        unsafe { in_capsule(path, argv, envp, false, libc::ENOENT, spawn) }
    }

    fn posix_spawnp(pid: *mut pid_t, file: *const c_char, actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: Argv, envp: Argv) -> c_int, missing: libc::ENOSYS, version: "GLIBC_2.15";
    |real| {
        let spawn = |host, argv| {
            // SAFETY: the caller's `pid`, `actions` and `attr`; `host` and `argv` the
            // caller's or the found program's; `env` the child environment.
            let run = |env| unsafe { real(pid, host, actions, attr, argv, env) };
            // SAFETY: `envp` is the caller's environment array (posix_spawnp's contract).
            unsafe { with_child_env(host, envp, run) }
        };
        // SAFETY: `file`, `argv` and `envp` are as posix_spawnp(3) takes them.
        unsafe { in_capsule(file, argv, envp, true, libc::ENOENT, spawn) }
    }

    fn system(command: *const c_char) -> c_int, missing: -1, support: Partial("puts the capsule settings back into environ");
    |real| {
        if command.is_null() {
            // SAFETY: system(NULL) asks whether a shell exists; nothing is read.
            return unsafe { real(command) };
        }
        // glibc spawns the shell with `environ` internally, unseen by the exec hooks.
        repair_environ();
        // SAFETY: the caller's command string goes unchanged to the real system(3).
        let status = unsafe { real(command) };
        hide_settings();
        status
    }

    fn popen(command: *const c_char, mode: *const c_char) -> *mut FILE, missing: std::ptr::null_mut(), support: Partial("puts the capsule settings back into environ");
    |real| {
        repair_environ();
        // SAFETY: the caller's strings go unchanged to the real popen(3).
        let stream = unsafe { real(command, mode) };
        hide_settings();
        stream
    }
}

static REAL_EXECVE: Real = Real::new();

/// The real execve (for execvpe, which finds the file itself in a capsule).
///
/// # Safety
/// As `execve(2)`: `path` is a C string, `argv` and `envp` NULL-terminated arrays.
pub unsafe fn real_execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = REAL_EXECVE.get(c"execve") else {
        return failed(-1, libc::ENOSYS);
    };
    // SAFETY: the symbol dlsym found as `execve` is libc's, with this signature.
    let execve = unsafe {
        std::mem::transmute::<
            *mut libc::c_void,
            unsafe extern "C" fn(*const c_char, Argv, Argv) -> c_int,
        >(f)
    };
    // SAFETY: the arguments are as execve takes them (this function's contract).
    unsafe { execve(path, argv, envp) }
}

/// Runs `exec` on the host file and argument vector of `file` in the capsule (as
/// given when the capsule has no file system of its own). `envp` is the
/// environment the program passed for the child. `fail` is returned, with
/// errno set, when the program cannot be found: -1 for the exec family; for
/// posix_spawn, which returns the error, pass its value through `fail`'s sign.
unsafe fn in_capsule(
    file: *const c_char,
    argv: Argv,
    envp: Argv,
    search: bool,
    fail: c_int,
    exec: impl FnOnce(*const c_char, Argv) -> c_int,
) -> c_int {
    match program::prepare(file, search, envp) {
        Ok(None) => exec(file, argv),
        Ok(Some(program)) => {
            let mut buf = ArgvBuf::new();
            match program.argv(argv, &mut buf) {
                Ok(argv) => {
                    if let Some(loader) = program.loader_run() {
                        crate::backstop::trust::announce_loader(loader);
                    }
                    exec(program.exec_path(), argv)
                }
                Err(e) => failed(fail, e),
            }
        }
        Err(e) => failed(fail, e),
    }
}

/// The exec family fails with -1 and errno; posix_spawn returns the error number.
fn failed(fail: c_int, e: c_int) -> c_int {
    if fail == -1 {
        crate::hook::fail(e)
    } else {
        e
    }
}

/// The entry points below, exported by hand rather than by `hook!` (`coverage.rs`).
pub(crate) const BY_HAND: &[Option<crate::coverage::Hook>] = &[
    Some(crate::coverage::Hook::new(
        "execv",
        crate::coverage::Support::Full,
    )),
    Some(crate::coverage::Hook::new(
        "execvp",
        crate::coverage::Support::Full,
    )),
];

/// `execv` and `execvp` use `environ`; a program that cleared it still keeps the capsule.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    // SAFETY: the caller's `path` and `argv` are as execv takes them, which execve
    // takes too; `environ` is the process's NULL-terminated environment.
    unsafe { execve(path, argv, current_environ()) }
}

#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    // SAFETY: as for execv: the caller's arguments, and the process's environment.
    unsafe { execvpe(file, argv, current_environ()) }
}
