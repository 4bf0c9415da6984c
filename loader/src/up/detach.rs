//! `capsule up --detach`: the supervisor goes on in the background, in a new session
//! (`setsid`, no terminal), its standard streams on `/dev/null`; the command the user
//! ran returns once every capsule has started, printing their names.
//!
//! The two processes talk through a pipe: the supervisor writes `ok` and the capsules'
//! names once they have all started, or `error` and one line, then closes it. An end of
//! the pipe without either means the supervisor died first.
//!
//! Invariant: [`detach`] forks, so it must be called while the process has one thread
//! (before any capsule or output thread starts), and after everything has been checked.

use std::fs::File;
use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsRawFd;

use super::UpError;

/// Which side of the fork this is.
pub enum Detached {
    /// The command the user ran: wait for the capsules to start.
    Caller(Waiter),
    /// The background supervisor: run, and tell the caller once all have started.
    Supervisor(Notifier),
}

/// The caller's end.
pub struct Waiter {
    pipe: PipeReader,
}

/// The supervisor's end.
pub struct Notifier {
    pipe: Option<PipeWriter>,
}

/// Forks the background supervisor.
pub fn detach() -> Result<Detached, UpError> {
    let failed = |what: &str, e: io::Error| UpError::Detach(format!("{what}: {e}"));
    let (reader, writer) = io::pipe().map_err(|e| failed("pipe", e))?;
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| failed("/dev/null", e))?;
    // SAFETY: the process is single-threaded here (see the module's invariant), so the
    // child may go on running ordinary Rust code after fork.
    match unsafe { libc::fork() } {
        -1 => Err(failed("fork", io::Error::last_os_error())),
        0 => {
            drop(reader);
            // SAFETY: setsid and dup2 have no memory-safety preconditions; `null` is an
            // open descriptor owned by this function.
            unsafe {
                libc::setsid();
                for fd in 0..=2 {
                    libc::dup2(null.as_raw_fd(), fd);
                }
            }
            Ok(Detached::Supervisor(Notifier { pipe: Some(writer) }))
        }
        _ => {
            drop(writer);
            Ok(Detached::Caller(Waiter { pipe: reader }))
        }
    }
}

impl Waiter {
    /// The names of the started capsules, or the supervisor's error.
    pub fn wait(mut self) -> Result<Vec<String>, UpError> {
        let mut text = String::new();
        self.pipe
            .read_to_string(&mut text)
            .map_err(|e| UpError::Detach(format!("reading from the supervisor: {e}")))?;
        let mut lines = text.lines();
        match lines.next() {
            Some("ok") => Ok(lines.map(str::to_string).collect()),
            Some("error") => Err(UpError::Detach(lines.collect::<Vec<_>>().join(" "))),
            _ => Err(UpError::Detach(
                "the supervisor ended before the capsules started".into(),
            )),
        }
    }
}

impl Notifier {
    /// Every capsule has started.
    pub fn ready(&mut self, names: &[String]) {
        let mut text = String::from("ok\n");
        for name in names {
            text.push_str(name);
            text.push('\n');
        }
        self.send(&text);
    }

    /// The capsules could not all start (those that did are being stopped).
    pub fn fail(&mut self, message: &str) {
        self.send(&format!("error\n{}\n", message.replace('\n', " ")));
    }

    fn send(&mut self, text: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            // The caller may have been killed; the supervisor goes on regardless.
            let _ = pipe.write_all(text.as_bytes());
        }
    }
}
