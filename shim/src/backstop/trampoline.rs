//! The trampoline's side of the backstop (see mod.rs): the supervisor forked, the
//! filter installed, the static program executed.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_int, CStr};

use super::{filter, supervise, MARKER, MARKER_BARE};

/// Called by the library constructor with the process's arguments: when this
/// process is the trampoline, it runs the static program and never returns.
///
/// # Safety
/// `argv` and `envp` are the process's own NULL-terminated vectors.
pub unsafe fn run_if_trampoline(argc: c_int, argv: *mut *mut c_char, envp: *mut *mut c_char) {
    if argc < 3 || argv.is_null() {
        return;
    }
    // SAFETY: argc entries of argv are C strings (the constructor's contract).
    let marker = unsafe { CStr::from_ptr(*argv.add(1)) };
    if (marker != MARKER && marker != MARKER_BARE) || !is_trampoline_process() {
        return;
    }
    let bare = marker == MARKER_BARE;
    // SAFETY: argv[2] is a C string; argv[3..] is the program's NULL-terminated
    // vector, envp the process's environment.
    unsafe {
        let program = *argv.add(2);
        exec_static(program, argv.add(3).cast(), envp.cast(), bare)
    }
}

/// Whether this process runs the trampoline program beside this shim.
fn is_trampoline_process() -> bool {
    let mut exe = [0u8; 4096];
    // SAFETY: readlink writes at most the buffer's length.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            exe.as_mut_ptr().cast(),
            exe.len(),
        )
    };
    n > 0 && exe[..n as usize] == *crate::runtime::get().trampoline.as_bytes()
}

/// Runs host file `program` under the backstop. Never returns: on failure, one
/// line on standard error and exit status 126 (127 when there is no such file),
/// as a shell says.
///
/// # Safety
/// `program` is a C string, `argv` and `envp` NULL-terminated vectors.
unsafe fn exec_static(
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    bare: bool,
) -> ! {
    // SAFETY: a C string (this function's contract).
    let name = unsafe { CStr::from_ptr(program) }
        .to_string_lossy()
        .into_owned();
    // Below a backstop already (a static program's descendant): its filter and
    // supervisor serve this program too (a second listener cannot be installed).
    let started = if under_backstop() {
        Ok(())
    } else {
        start_supervisor()
    };
    if let Err((what, e)) = started {
        if !crate::runtime::get().config.allow_bypass {
            fail(&format!(
                "cannot run the static program {name} in the capsule: {what}: {} (the capsule could not see its system calls; CAPSULE_ALLOW_BYPASS=1 or --allow-bypass runs it unseen)",
                std::io::Error::from_raw_os_error(e)
            ), 126);
        }
        log::warn!("{name} runs unseen by the capsule: {what}: errno {e}");
    }
    // Under the new filter, this process is still the shim's until the exec.
    super::trust::announce_shim();
    // A bare program gets the environment without the shim in LD_PRELOAD.
    let mut kept: Vec<*const c_char> = Vec::new();
    let envp = if bare {
        // SAFETY: envp is a NULL-terminated vector of C strings.
        unsafe {
            let mut p = envp;
            while !p.is_null() && !(*p).is_null() {
                if !CStr::from_ptr(*p).to_bytes().starts_with(b"LD_PRELOAD=") {
                    kept.push(*p);
                }
                p = p.add(1);
            }
        }
        kept.push(std::ptr::null());
        kept.as_ptr()
    } else {
        envp
    };
    // SAFETY: as this function's contract says; inside the guard, execve is the
    // real one.
    unsafe { crate::exec::hooks::real_execve(program, argv, envp) };
    let e = crate::hook::errno();
    fail(
        &format!(
            "cannot run {name}: {}",
            std::io::Error::from_raw_os_error(e)
        ),
        if e == libc::ENOENT { 127 } else { 126 },
    )
}

fn fail(message: &str, status: c_int) -> ! {
    let line = format!("capsule: {}\n", message.replace(['\n', '\r'], " "));
    // SAFETY: write(2) of our own buffer to standard error, then the end.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(status)
    }
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 1 << 2;

/// Forks the supervisor and puts this process under the filter.
fn start_supervisor() -> Result<(), (&'static str, c_int)> {
    let mut pair = [0 as c_int; 2];
    // SAFETY: socketpair writes two descriptors into the array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(("socketpair", crate::hook::errno()));
    }
    let (ours, theirs) = (pair[0], pair[1]);
    // SAFETY: this process is single-threaded (a fresh image, before main).
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(("fork", crate::hook::errno()));
    }
    if child == 0 {
        // SAFETY: the intermediate child: a new session, then the supervisor in a
        // grandchild, so that the program never waits for it and terminal signals
        // for the program's group do not reach it.
        unsafe {
            libc::setsid();
            match libc::fork() {
                0 => supervisor_main(theirs, ours),
                _ => libc::_exit(0),
            }
        }
    }
    // SAFETY: reaping the intermediate child we forked.
    unsafe {
        libc::close(theirs);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
    }
    // The clock calls only where the capsule's clock is not the host's, or may
    // come to differ (a capsule root may set it; the filter is fixed from now on).
    let clock =
        crate::time::offset_ns(crate::runtime::get()) != 0 || crate::identity::may_become_root();
    let program = filter::program(clock);
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: prctl and seccomp read only their integer and filter arguments (the
    // kernel copies the program).
    let listener = unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            libc::close(ours);
            return Err(("no_new_privs", crate::hook::errno()));
        }
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            &prog as *const libc::sock_fprog,
        ) as c_int
    };
    if listener < 0 {
        let e = crate::hook::errno();
        // SAFETY: closing our end tells the supervisor to end.
        unsafe { libc::close(ours) };
        return Err(("seccomp filter", e));
    }
    let sent = hand_over(ours, listener);
    // SAFETY: the supervisor holds its own copies now.
    unsafe {
        libc::close(listener);
        libc::close(ours);
    }
    sent.map_err(|e| ("handing the listener to the supervisor", e))
}

/// The supervisor process: receives the listener and serves it.
///
/// # Safety
/// Called in the freshly forked grandchild only.
unsafe fn supervisor_main(sock: c_int, other: c_int) -> ! {
    // SAFETY: descriptor housekeeping in our own process: standard streams on
    // /dev/null, every other descriptor the program had closed (a pipe held open
    // here would keep its reader waiting), but for the socket and the shim's log.
    unsafe {
        libc::close(other);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        let keep = [sock, crate::log::fd(), null];
        close_all_but(&keep);
        libc::close(null);
        match take_over(sock) {
            Some(listener) => supervise::serve(listener),
            None => libc::_exit(0),
        }
    }
}

/// Closes every descriptor from 3 up but those in `keep` (-1 entries ignored).
fn close_all_but(keep: &[c_int]) {
    let mut keep: Vec<c_int> = keep.iter().copied().filter(|&fd| fd >= 3).collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for fd in keep {
        let fd = fd as u32;
        if fd > from {
            // SAFETY: closing a range of our own descriptors.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
}

/// Hands the listener to the supervisor: this process's id and the listener's
/// number go over `sock` with write(2), and the supervisor takes the descriptor
/// with `pidfd_getfd`. Nothing here is a call the filter, installed already,
/// sends to the supervisor (sendmsg and sendmmsg are: their destinations are the
/// capsule's), which waits for this very descriptor. Returns once the supervisor
/// said it has it.
fn hand_over(sock: c_int, listener: c_int) -> Result<(), c_int> {
    // SAFETY: getpid has no arguments.
    let ids: [c_int; 2] = [unsafe { libc::getpid() }, listener];
    let bytes = std::mem::size_of_val(&ids);
    // SAFETY: write(2) of our own array.
    if unsafe { libc::write(sock, ids.as_ptr().cast(), bytes) } != bytes as isize {
        return Err(crate::hook::errno());
    }
    let mut answer = 0u8;
    // SAFETY: read(2) of one byte into our own.
    match unsafe { libc::read(sock, (&mut answer as *mut u8).cast(), 1) } {
        1 if answer == 0 => Ok(()),
        1 => Err(c_int::from(answer)),
        0 => Err(libc::ECONNRESET),
        _ => Err(crate::hook::errno()),
    }
}

/// The supervisor's side of `hand_over`: its own copy of the listener.
fn take_over(sock: c_int) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut ids = [0 as c_int; 2];
    let bytes = std::mem::size_of_val(&ids);
    // SAFETY: read(2) into our own array.
    if unsafe { libc::read(sock, ids.as_mut_ptr().cast(), bytes) } != bytes as isize {
        return None;
    }
    // SAFETY: plain system calls with integer arguments; the descriptor
    // pidfd_getfd returns is ours alone.
    let listener = unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, ids[0], 0) as c_int;
        let fd = if pidfd < 0 {
            -1
        } else {
            let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, ids[1], 0) as c_int;
            libc::close(pidfd);
            fd
        };
        (fd >= 0).then(|| std::os::fd::OwnedFd::from_raw_fd(fd))
    };
    // 0: taken; else the errno, as a byte, tells the program's side why not.
    let answer: u8 = match &listener {
        Some(_) => 0,
        None => u8::try_from(crate::hook::errno())
            .ok()
            .filter(|&e| e != 0)
            .unwrap_or(libc::EIO as u8),
    };
    // SAFETY: write(2) of one byte of our own.
    unsafe { libc::write(sock, (&answer as *const u8).cast(), 1) };
    listener
}

/// For a process with the shim started under the backstop: takes the working
/// directory the supervisor kept for it (see `supervise::QUERY_CWD`), so that the
/// kernel's is the capsule's again. Nothing happens without a backstop.
pub fn restore_cwd() {
    let mut buf = [0u8; 4096];
    if query_cwd(&mut buf) > supervise::QUERY_ANSWER as i64 {
        // SAFETY: the supervisor wrote a NUL-terminated host path.
        unsafe { libc::chdir(buf.as_ptr().cast()) };
    }
}

/// Whether this process already runs under a backstop of ours (its supervisor
/// answers the working-directory query).
fn under_backstop() -> bool {
    let mut buf = [0u8; 4096];
    query_cwd(&mut buf) >= supervise::QUERY_ANSWER as i64
}

fn query_cwd(buf: &mut [u8; 4096]) -> i64 {
    // SAFETY: getcwd writes at most PATH_MAX bytes into our buffer: the size asked
    // for is far larger, which the kernel's own getcwd accepts.
    unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), supervise::QUERY_CWD) }
}
