//! Starting the program and supervising it until it ends.
//!
//! Invariants:
//! - The signals the loader relays are blocked in the loader *before* the program is
//!   spawned, so none is lost between spawn and the first wait, and they stay blocked
//!   until the loader exits (unblocking would let a pending `SIGTERM` kill the loader
//!   before it reports the program's status). The program starts with an empty signal
//!   mask: `std::process::Command` does *not* reset the mask (it inherits the loader's),
//!   so [`Launch::spawn`] clears it in the child between fork and exec (the `cli`
//!   integration test reads the program's `SigBlk`). The loader installs no handler, so
//!   the program's dispositions are the defaults (std resets the `SIGPIPE` it ignores;
//!   a signal ignored by whoever started `capsule`, as `nohup` does, stays ignored, as
//!   it would under a shell).
//! - Signals are taken synchronously with `sigtimedwait`: no handler, no async-signal
//!   safety concerns. `SIGCHLD` means "look at the child"; every other one is relayed
//!   to the child with `kill`, unless the kernel sent it (`si_code == SI_KERNEL`, e.g.
//!   `^C` or a window resize at the terminal), because the kernel sent it to the whole
//!   foreground process group, which already includes the child.
//! - Only the loader's own child is ever waited for.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use log::{debug, warn};

use crate::envfile::Environment;
use crate::landlock::Backstop;

/// Signals relayed to the program.
pub const RELAYED: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGALRM,
];

/// How long one wait for a signal lasts before the child is looked at anyway.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot block signals: {0}")]
    Mask(io::Error),
    #[error("{}: {}", .program.to_string_lossy(), crate::describe_io(.error))]
    Spawn { program: OsString, error: io::Error },
    #[error("waiting for signals: {0}")]
    SignalWait(io::Error),
    #[error("waiting for the program (pid {pid}): {error}")]
    Wait { pid: u32, error: io::Error },
}

impl LaunchError {
    /// The error number of a failed spawn (`ENOENT`, `EACCES`, `ENOEXEC`…), if it is one.
    pub fn spawn_errno(&self) -> Option<i32> {
        match self {
            LaunchError::Spawn { error, .. } => error.raw_os_error(),
            _ => None,
        }
    }
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It called `exit(code)`.
    Exited(u8),
    /// A signal killed it.
    Signaled(i32),
}

impl Termination {
    pub fn from_status(status: ExitStatus) -> Termination {
        match (status.code(), status.signal()) {
            (Some(code), _) => Termination::Exited((code & 0xff) as u8),
            (None, Some(sig)) => Termination::Signaled(sig),
            // Neither: not possible for a waited-for, terminated child.
            (None, None) => Termination::Exited(255),
        }
    }

    /// The line stored in a capsule's `exit` file.
    pub fn record(&self) -> String {
        match self {
            Termination::Exited(code) => format!("exit={code}"),
            Termination::Signaled(sig) => format!("signal={sig}"),
        }
    }
}

/// The relayed signals and `SIGCHLD`, blocked in the calling thread.
pub struct BlockedSignals {
    set: libc::sigset_t,
}

impl BlockedSignals {
    /// Blocks the relayed signals and `SIGCHLD` in the calling thread (the loader is
    /// single-threaded, so: in the process). They stay blocked; see the module comment.
    pub fn block() -> Result<BlockedSignals, LaunchError> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it fully below.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the signal numbers
        // are valid constants, so these calls cannot fail.
        unsafe {
            libc::sigemptyset(&mut set);
            for &sig in RELAYED.iter().chain([libc::SIGCHLD].iter()) {
                libc::sigaddset(&mut set, sig);
            }
        }
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(LaunchError::Mask(io::Error::from_raw_os_error(rc)));
        }
        Ok(BlockedSignals { set })
    }

    /// Waits up to `timeout` for one of the blocked signals.
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<Received>> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: siginfo_t is plain data that sigtimedwait fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: all three pointers are valid for the duration of the call.
        let sig = unsafe { libc::sigtimedwait(&self.set, &mut info, &ts) };
        if sig < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => Err(err),
            };
        }
        Ok(Some(Received {
            signal: sig,
            code: info.si_code,
            // SAFETY: `info` was filled in by the kernel for signal `sig`; si_pid reads
            // the sender field, meaningful for SI_USER/SI_QUEUE/SIGCHLD, else 0.
            sender: unsafe { info.si_pid() },
        }))
    }
}

/// A signal taken by [`BlockedSignals::wait`].
pub struct Received {
    pub signal: libc::c_int,
    /// `si_code`: `SI_KERNEL` when the terminal sent it, `SI_USER` for `kill`.
    pub code: libc::c_int,
    pub sender: libc::pid_t,
}

/// argv[1] of the shim run as a static program's trampoline (the shim's
/// `backstop::MARKER`).
const TRAMPOLINE_MARKER: &str = "--capsule-backstop-exec";
const TRAMPOLINE_MARKER_BARE: &str = "--capsule-backstop-exec-bare";
/// The trampoline program, beside the shim (the shim's `backstop::TRAMPOLINE_FILE`).
pub const TRAMPOLINE_FILE: &str = "capsule-trampoline";

/// What to start: an already resolved executable, its argv, environment and directory.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The file to execute (absolute).
    pub executable: PathBuf,
    /// `argv[0]`, as the user wrote the program.
    pub arg0: OsString,
    pub args: Vec<OsString>,
    /// The whole environment of the program.
    pub env: Environment,
    /// Where it starts; `None` keeps the loader's working directory.
    pub cwd: Option<PathBuf>,
    /// Every program under the system-call backstop (`--backstop all`): a dynamic
    /// one too starts through the trampoline, without the shim.
    pub backstop_all: bool,
}

impl Launch {
    /// The file, `argv[0]` and arguments to execute. A static program in a capsule
    /// starts through the shim's system-call backstop, as the exec hooks start one
    /// (shim/src/backstop/mod.rs): the host's dynamic loader runs the shim itself,
    /// which puts the program under its supervisor and executes it.
    fn command_line(&self) -> (PathBuf, OsString, Vec<OsString>) {
        let shim = self
            .env
            .get("LD_PRELOAD")
            .and_then(|v| {
                v.to_str()
                    .and_then(|v| v.split([':', ' ']).next())
                    .map(PathBuf::from)
            })
            .and_then(|shim| shim.canonicalize().ok());
        match shim {
            Some(shim)
                if self.backstop_all
                    || crate::landlock::is_static_program(&self.executable)
                    || crate::landlock::is_go_program(&self.executable) =>
            {
                let trampoline = shim.with_file_name(TRAMPOLINE_FILE);
                // A dynamically linked program (Go's, or any with --backstop all)
                // runs without the shim: the supervisor serves all of its calls
                // (shim/src/backstop/mod.rs).
                let marker = if crate::landlock::is_static_program(&self.executable) {
                    TRAMPOLINE_MARKER
                } else {
                    TRAMPOLINE_MARKER_BARE
                };
                let mut args: Vec<OsString> = vec![
                    marker.into(),
                    self.executable.clone().into_os_string(),
                    self.arg0.clone(),
                ];
                args.extend(self.args.iter().cloned());
                (trampoline.clone(), trampoline.into_os_string(), args)
            }
            _ => (
                self.executable.clone(),
                self.arg0.clone(),
                self.args.clone(),
            ),
        }
    }

    /// Starts the program in `backstop`'s Landlock domain, if any. Signals must
    /// already be blocked ([`BlockedSignals::block`]).
    pub fn spawn(
        &self,
        blocked: &BlockedSignals,
        backstop: Option<&Backstop>,
    ) -> Result<Child, LaunchError> {
        self.spawn_with(blocked, backstop, |_| {})
    }

    /// Starts the program after `configure` has adjusted the command (a supervisor
    /// gives it its own process group and captures its output).
    pub fn spawn_with(
        &self,
        _blocked: &BlockedSignals,
        backstop: Option<&Backstop>,
        configure: impl FnOnce(&mut Command),
    ) -> Result<Child, LaunchError> {
        // The ruleset was built before fork; the child only enters it.
        let ruleset = backstop.map(Backstop::raw_fd);
        let (executable, arg0, args) = self.command_line();
        let mut command = Command::new(&executable);
        command
            .arg0(&arg0)
            .args(&args)
            .env_clear()
            .envs(self.env.iter());
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        // std's Command does not reset the signal mask: without this the program would
        // start with the relayed signals and SIGCHLD blocked (seen on Rust 1.95).
        // SAFETY: the closure runs in the forked child before exec; it only calls
        // sigemptyset and sigprocmask on a local set, prctl and landlock_restrict_self
        // on the ruleset descriptor the parent keeps open across the spawn, and prctl
        // with a static seccomp filter: all async-signal-safe, none allocates or takes
        // locks.
        unsafe {
            command.pre_exec(move || {
                let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
                if libc::sigemptyset(empty.as_mut_ptr()) != 0
                    || libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut())
                        != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if let Some(fd) = ruleset {
                    Backstop::restrict_self(fd)?;
                    // With no_new_privs set: io_uring, which no hook sees, is ENOSYS.
                    crate::seccomp::refuse_io_uring()?;
                }
                Ok(())
            });
        }
        configure(&mut command);
        debug!(
            "spawning {} (argv[0] {:?}) in {:?}",
            self.executable.display(),
            self.arg0,
            self.cwd.as_deref().unwrap_or(Path::new("."))
        );
        command.spawn().map_err(|error| LaunchError::Spawn {
            program: self.arg0.clone(),
            error,
        })
    }
}

/// Relays signals to `child` until it ends; returns how it ended.
pub fn supervise(child: &mut Child, signals: &BlockedSignals) -> Result<Termination, LaunchError> {
    let pid = child.id();
    loop {
        // try_wait is waitpid(pid, WNOHANG): it reaps this child and nothing else.
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Termination::from_status(status)),
            Ok(None) => {}
            Err(error) => return Err(LaunchError::Wait { pid, error }),
        }
        let Some(received) = signals.wait(POLL).map_err(LaunchError::SignalWait)? else {
            continue;
        };
        if received.signal == libc::SIGCHLD {
            continue;
        }
        if received.code == libc::SI_KERNEL {
            debug!(
                "signal {} came from the kernel (terminal); the program got it too",
                received.signal
            );
            continue;
        }
        debug!(
            "relaying signal {} from pid {} to {pid}",
            received.signal, received.sender
        );
        // SAFETY: kill has no memory-safety preconditions. `pid` is our unreaped child,
        // so it cannot have been recycled for another process.
        if unsafe { libc::kill(pid as libc::pid_t, received.signal) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                warn!(
                    "cannot relay signal {} to pid {pid}: {err}",
                    received.signal
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termination_records() {
        assert_eq!(
            Termination::from_status(ExitStatus::from_raw(3 << 8)),
            Termination::Exited(3)
        );
        assert_eq!(
            Termination::from_status(ExitStatus::from_raw(libc::SIGTERM)),
            Termination::Signaled(libc::SIGTERM)
        );
        assert_eq!(Termination::Exited(0).record(), "exit=0");
        assert_eq!(Termination::Signaled(9).record(), "signal=9");
    }
}
