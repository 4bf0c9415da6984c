//! FFI layer of the exec replica. The variadic `execl`, `execlp` and `execle` are in
//! `variadic.rs` and end in the hooks below.

use libc::{c_char, c_int, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t, FILE};

use super::env::{current_environ, repair_environ, with_child_env};
use crate::hook::outside;

type Argv = *const *const c_char;

hook! {
    fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int, missing: -1;
    |real| with_child_env(envp, |env| outside(|| real(path, argv, env)))

    fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int, missing: -1;
    |real| with_child_env(envp, |env| outside(|| real(file, argv, env)))

    fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int, missing: -1;
    |real| with_child_env(envp, |env| outside(|| real(fd, argv, env)))

    fn execveat(dirfd: c_int, path: *const c_char, argv: Argv, envp: Argv, flags: c_int) -> c_int, missing: -1;
    |real| with_child_env(envp, |env| outside(|| real(dirfd, path, argv, env, flags)))

    fn posix_spawn(pid: *mut pid_t, path: *const c_char, actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: Argv, envp: Argv) -> c_int, missing: libc::ENOSYS, version: "GLIBC_2.15";
    |real| with_child_env(envp, |env| real(pid, path, actions, attr, argv, env))

    fn posix_spawnp(pid: *mut pid_t, file: *const c_char, actions: *const posix_spawn_file_actions_t, attr: *const posix_spawnattr_t, argv: Argv, envp: Argv) -> c_int, missing: libc::ENOSYS, version: "GLIBC_2.15";
    |real| with_child_env(envp, |env| real(pid, file, actions, attr, argv, env))

    fn system(command: *const c_char) -> c_int, missing: -1;
    |real| {
        if !command.is_null() {
            repair_environ();
        }
        real(command)
    }

    fn popen(command: *const c_char, mode: *const c_char) -> *mut FILE, missing: std::ptr::null_mut();
    |real| {
        repair_environ();
        real(command, mode)
    }
}

/// `execv` and `execvp` use `environ`; a program that cleared it still keeps the capsule.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    execve(path, argv, current_environ())
}

#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    execvpe(file, argv, current_environ())
}
