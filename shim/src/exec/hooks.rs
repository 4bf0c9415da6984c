//! FFI layer of the exec replica. The variadic `execl`, `execlp` and `execle` are in
//! `variadic.rs` and end in the hooks below.

#![deny(unsafe_op_in_unsafe_fn)]

use libc::{c_char, c_int, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t, FILE};

use super::env::{current_environ, hide_settings, repair_environ, with_child_env};
use super::program::{self, ArgvBuf};
use crate::hook::{outside, set_errno, Real};

type Argv = *const *const c_char;

hook! {
    fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int, missing: -1;
    |real| in_capsule(path, argv, envp, false, -1, |file, argv| with_child_env(file, envp, |env| outside(|| real(file, argv, env))))

    /// With a capsule file system, the `PATH` search happens in the capsule and the
    /// host file found is executed directly.
    fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int, missing: -1;
    |real| {
        if crate::fs::layers().is_some() {
            return in_capsule(file, argv, envp, true, -1, |host, argv| {
                with_child_env(host, envp, |env| outside(|| real_execve(host, argv, env)))
            });
        }
        with_child_env(file, envp, |env| outside(|| real(file, argv, env)))
    }

    fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int, missing: -1;
    |real| with_child_env(std::ptr::null(), envp, |env| outside(|| real(fd, argv, env)))

    /// A path relative to `dirfd` is the capsule's program, as for `execve`; an empty
    /// one with `AT_EMPTY_PATH` runs the file `dirfd` already names.
    fn execveat(dirfd: c_int, path: *const c_char, argv: Argv, envp: Argv, flags: c_int) -> c_int, missing: -1, support: Partial("AT_SYMLINK_NOFOLLOW is not checked for a capsule path");
    |real| {
        if let (Some(layers), false) = (crate::fs::layers(), path.is_null() || *path == 0) {
            return match crate::fs::ops::absolute(layers, dirfd, std::ffi::CStr::from_ptr(path)) {
                Ok(full) => in_capsule(full.as_ptr(), argv, envp, false, -1, |file, argv| {
                    with_child_env(file, envp, |env| outside(|| real_execve(file, argv, env)))
                }),
                Err(crate::fs::ops::Skip::Errno(e)) => failed(-1, e),
                Err(crate::fs::ops::Skip::Pass) => with_child_env(std::ptr::null(), envp, |env| outside(|| real(dirfd, path, argv, env, flags))),
            };
        }
        with_child_env(std::ptr::null(), envp, |env| outside(|| real(dirfd, path, argv, env, flags)))
    }

    fn posix_spawn(pid: *mut pid_t, path: *const c_char, actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: Argv, envp: Argv) -> c_int, missing: libc::ENOSYS, version: "GLIBC_2.15";
    |real| in_capsule(path, argv, envp, false, libc::ENOENT, |file, argv| with_child_env(file, envp, |env| real(pid, file, actions, attr, argv, env)))

    fn posix_spawnp(pid: *mut pid_t, file: *const c_char, actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: Argv, envp: Argv) -> c_int, missing: libc::ENOSYS, version: "GLIBC_2.15";
    |real| in_capsule(file, argv, envp, true, libc::ENOENT, |host, argv| with_child_env(host, envp, |env| real(pid, host, actions, attr, argv, env)))

    fn system(command: *const c_char) -> c_int, missing: -1, support: Partial("puts the capsule settings back into environ");
    |real| {
        if command.is_null() {
            return real(command);
        }
        // glibc spawns the shell with `environ` internally, unseen by the exec hooks.
        repair_environ();
        let status = real(command);
        hide_settings();
        status
    }

    fn popen(command: *const c_char, mode: *const c_char) -> *mut FILE, missing: std::ptr::null_mut(), support: Partial("puts the capsule settings back into environ");
    |real| {
        repair_environ();
        let stream = real(command, mode);
        hide_settings();
        stream
    }
}

static REAL_EXECVE: Real = Real::new(c"execve");

/// The real execve (for execvpe, which finds the file itself in a capsule).
///
/// # Safety
/// As `execve(2)`: `path` is a C string, `argv` and `envp` NULL-terminated arrays.
pub unsafe fn real_execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = REAL_EXECVE.get() else {
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
                Ok(argv) => exec(program.exec_path(), argv),
                Err(e) => failed(fail, e),
            }
        }
        Err(e) => failed(fail, e),
    }
}

/// The exec family fails with -1 and errno; posix_spawn returns the error number.
fn failed(fail: c_int, e: c_int) -> c_int {
    if fail == -1 {
        set_errno(e);
        -1
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
