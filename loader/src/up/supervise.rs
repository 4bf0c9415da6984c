//! The supervisor: starts every capsule of a plan, relays their output, restarts them
//! by their policy, and stops them all on request.
//!
//! Invariants:
//! - Signals are blocked ([`BlockedSignals`]) before the first program or output thread
//!   starts, so every thread inherits the mask and `SIGINT`/`SIGTERM`/`SIGHUP`/`SIGQUIT`
//!   and `SIGCHLD` wait for the main loop's `sigtimedwait`.
//! - Every program leads its own process group (pgid = its pid): the terminal's `^C`
//!   reaches only `capsule up`, which stops each capsule by signalling its group, so the
//!   program's children go too. A group is signalled only while its leader is unreaped,
//!   so its id cannot have been reused.
//! - Each capsule's directory stays locked (`lock`) from before its first start until
//!   the supervisor is done, restarts included; `supervisor` holds our pid while we may
//!   still (re)start the capsule and is removed when it has ended for good.
//! - A capsule whose `stop` file exists (`capsule stop`) is never restarted; the file is
//!   removed once, before the first start.

use std::io::PipeReader;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::warn;

use crate::inspect::{signal_name, stop_requested};
use crate::launch::{BlockedSignals, Termination};
use crate::manifest::Restart;
use crate::run::{Prepared, RunError};
use crate::state::CapsuleDir;

use super::detach::Notifier;
use super::output::Console;
use super::{Plan, UpError};

/// Restarts after which a failing capsule is given up.
pub const RESTART_LIMIT: u32 = 5;
/// The first restart's delay; each next one doubles, up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A program that ran this long has recovered: its next failure starts the count again.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// How long the loop sleeps when no signal comes (SIGCHLD wakes it earlier).
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How long output threads may take to drain the pipes once every capsule has ended.
const DRAIN_WAIT: Duration = Duration::from_secs(2);
/// How long the end of one capsule waits for its output to be copied (the loop
/// supervises the others meanwhile only after it).
const END_DRAIN_WAIT: Duration = Duration::from_millis(250);

/// How `capsule up` runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// From the first SIGTERM to a capsule's group until SIGKILL.
    pub timeout: Duration,
    /// When this capsule ends for good, stop the others; its status is `capsule up`'s.
    pub exit_code_from: Option<usize>,
    /// Print output to standard output (else only to the log files).
    pub foreground: bool,
    /// Colour the prefixes.
    pub colours: bool,
    /// Print each line behind its capsule's `name | ` prefix (`--no-log-prefix`: as the
    /// program wrote it).
    pub prefix: bool,
}

/// How the capsules ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Each capsule's name and last end (`None`: it never started).
    pub ends: Vec<(String, Option<Termination>)>,
    /// Whether every capsule ended cleanly: exited 0, or ended by the stop's SIGTERM.
    pub clean: bool,
    /// The end of the `--exit-code-from` capsule.
    pub exit_code_from: Option<Termination>,
}

enum Phase {
    NotStarted,
    Running {
        child: Child,
        since: Instant,
    },
    /// Waiting to be restarted at that instant.
    Waiting(Instant),
    Ended,
}

struct Member {
    name: String,
    prepared: Prepared,
    dir: CapsuleDir,
    restart: Restart,
    prefix: Arc<str>,
    phase: Phase,
    /// Restarts since the program last ran for [`HEALTHY_RUN`].
    restarts: u32,
    last: Option<Termination>,
    /// Ended by a stop (ours or `capsule stop`), not by itself.
    stopped: bool,
}

struct Supervisor {
    members: Vec<Member>,
    console: Console,
    settings: Settings,
    signals: BlockedSignals,
    /// Set once the stop began: when to SIGKILL what still runs.
    kill_at: Option<Instant>,
    killed: bool,
    /// The output threads, with the member whose pipe each copies.
    outputs: Vec<(usize, JoinHandle<()>)>,
}

/// Starts the plan's capsules (in its start order), supervises them until every one
/// has ended for good, prints the summary. `ready` hears once all have started.
pub fn supervise(
    plan: Plan,
    settings: Settings,
    ready: Option<&mut Notifier>,
) -> Result<Outcome, UpError> {
    let signals = BlockedSignals::block()?;
    let names = plan.names.clone();
    let console = Console::new(
        settings.foreground,
        settings.colours,
        settings.prefix,
        &names,
    );
    let dirs = open_all(&plan.prepared)?;
    let own_pid = std::process::id();
    let mut members = Vec::with_capacity(dirs.len());
    for (index, ((prepared, dir), (name, restart))) in plan
        .prepared
        .into_iter()
        .zip(dirs)
        .zip(names.iter().zip(&plan.restarts))
        .enumerate()
    {
        dir.clear_stop()?;
        dir.write_supervisor(own_pid)?;
        members.push(Member {
            name: name.clone(),
            prefix: console.prefix(index, name),
            prepared,
            dir,
            restart: *restart,
            phase: Phase::NotStarted,
            restarts: 0,
            last: None,
            stopped: false,
        });
    }
    let mut supervisor = Supervisor {
        members,
        console,
        settings,
        signals,
        kill_at: None,
        killed: false,
        outputs: Vec::new(),
    };

    // The output threads start once every program has: a fork copies the mappings of
    // every thread's stack, which made each start slower than the one before.
    let mut failure = None;
    let mut outputs = Vec::with_capacity(plan.start_order.len());
    for &index in &plan.start_order {
        match supervisor.start(index) {
            Ok(output) => outputs.push((index, output)),
            Err(error) => {
                failure = Some(UpError::Start {
                    name: supervisor.members[index].name.clone(),
                    error,
                });
                break;
            }
        }
    }
    for (index, output) in outputs {
        if let Err(error) = supervisor.relay(index, output) {
            failure.get_or_insert(UpError::Start {
                name: supervisor.members[index].name.clone(),
                error,
            });
        }
    }
    match (&failure, ready) {
        (None, Some(notifier)) => notifier.ready(&names),
        (Some(error), Some(notifier)) => notifier.fail(&error.to_string()),
        (_, None) => {}
    }
    if failure.is_some() {
        supervisor.begin_stop();
    }
    supervisor.run()?;
    supervisor.drain();
    match failure {
        Some(error) => Err(error),
        None => Ok(supervisor.outcome()),
    }
}

/// Opens (and locks) every capsule's directory; on a failure, removes the directories
/// this call created, so that nothing is left half-done.
fn open_all(prepared: &[Prepared]) -> Result<Vec<CapsuleDir>, UpError> {
    let mut dirs: Vec<CapsuleDir> = Vec::with_capacity(prepared.len());
    for capsule in prepared {
        match capsule.open_dir() {
            Ok(dir) => dirs.push(dir),
            Err(error) => {
                for dir in dirs.into_iter().filter(CapsuleDir::created) {
                    if let Err(e) = dir.remove() {
                        warn!("{e}");
                    }
                }
                return Err(UpError::Start {
                    name: capsule.name().to_string(),
                    error,
                });
            }
        }
    }
    Ok(dirs)
}

impl Supervisor {
    /// Starts member `index`'s program with its output on a pipe, in its own group;
    /// returns the pipe's end for [`Supervisor::relay`].
    fn start(&mut self, index: usize) -> Result<PipeReader, RunError> {
        let member = &mut self.members[index];
        let (reader, writer) = std::io::pipe().map_err(|e| io_error(&member.dir, e))?;
        let writer_copy = writer.try_clone().map_err(|e| io_error(&member.dir, e))?;
        let child = member
            .prepared
            .start(&member.dir, &self.signals, |command| {
                command
                    .process_group(0)
                    .stdin(Stdio::null())
                    .stdout(writer_copy)
                    .stderr(writer);
            })?;
        // The pipe's write ends are the child's alone now: its end is our EOF.
        member.phase = Phase::Running {
            child,
            since: Instant::now(),
        };
        Ok(reader)
    }

    /// Copies member `index`'s output from `pipe` to its log (and standard output).
    fn relay(&mut self, index: usize, pipe: PipeReader) -> Result<(), RunError> {
        let member = &self.members[index];
        let log = member.dir.open_log()?;
        let times = member.dir.open_log_index()?;
        let thread = self
            .console
            .relay(pipe, log, times, member.prefix.clone())
            .map_err(|e| io_error(&member.dir, e))?;
        self.outputs.push((index, thread));
        Ok(())
    }

    /// The main loop: until every capsule has ended for good.
    fn run(&mut self) -> Result<(), UpError> {
        loop {
            self.reap();
            self.restart_due();
            if let Some(index) = self.settings.exit_code_from {
                if matches!(self.members[index].phase, Phase::Ended) {
                    self.begin_stop();
                }
            }
            if self.members.iter().all(|m| matches!(m.phase, Phase::Ended)) {
                return Ok(());
            }
            if let Some(at) = self.kill_at {
                if !self.killed && Instant::now() >= at {
                    self.kill_all();
                }
            }
            self.outputs.retain(|(_, thread)| !thread.is_finished());
            let received = self
                .signals
                .wait(self.wait_time())
                .map_err(|e| UpError::Signals(e.to_string()))?;
            let Some(received) = received else { continue };
            match received.signal {
                libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT => {
                    if self.kill_at.is_some() {
                        self.console
                            .say("capsule: killing the capsules that still run");
                        self.kill_all();
                    } else {
                        self.console.say(
                            "capsule: stopping the capsules (interrupt again to kill them at once)",
                        );
                        self.begin_stop();
                    }
                }
                // SIGCHLD: reaped at the top; others are not for the capsules.
                _ => {}
            }
        }
    }

    /// How long the loop may wait for a signal before something is due.
    fn wait_time(&self) -> Duration {
        let now = Instant::now();
        let mut wait = IDLE_WAIT;
        let mut due = |at: Instant| wait = wait.min(at.saturating_duration_since(now));
        for member in &self.members {
            if let Phase::Waiting(at) = member.phase {
                due(at);
            }
        }
        if let (Some(at), false) = (self.kill_at, self.killed) {
            due(at);
        }
        wait.max(Duration::from_millis(1))
    }

    /// Looks at every running program; decides what follows each end.
    fn reap(&mut self) {
        for index in 0..self.members.len() {
            let member = &mut self.members[index];
            let Phase::Running { child, since } = &mut member.phase else {
                continue;
            };
            let ran = since.elapsed();
            let end = match child.try_wait() {
                Ok(Some(status)) => Termination::from_status(status),
                Ok(None) => continue,
                Err(e) => {
                    // Not our child any more (cannot happen): count it as gone.
                    warn!("{}: waiting for pid {}: {e}", member.name, child.id());
                    Termination::Exited(255)
                }
            };
            member.last = Some(end);
            if let Err(e) = member.dir.write_exit(&end.record()) {
                warn!("{e}");
            }
            self.after_end(index, end, ran);
        }
    }

    fn after_end(&mut self, index: usize, end: Termination, ran: Duration) {
        // What the program wrote before it ended comes before the line saying so: let
        // its output thread reach the end of the pipe (not long: a child that
        // outlives the program may hold the pipe open).
        let deadline = Instant::now() + END_DRAIN_WAIT;
        while self
            .outputs
            .iter()
            .any(|(i, t)| *i == index && !t.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let stopping = self.kill_at.is_some();
        let member = &mut self.members[index];
        if stop_requested(member.dir.path()) {
            member.stopped = true;
        }
        let wanted = match member.restart {
            Restart::No => false,
            Restart::OnFailure => end != Termination::Exited(0),
            Restart::Always => true,
        };
        if member.stopped || stopping || !wanted {
            self.console
                .notice(&member.prefix, &member.name, &describe(end));
            self.end(index);
            return;
        }
        if ran >= HEALTHY_RUN {
            member.restarts = 0;
        }
        if member.restarts >= RESTART_LIMIT {
            self.console.notice(
                &member.prefix,
                &member.name,
                &format!("{}; gave up after {RESTART_LIMIT} restarts", describe(end)),
            );
            self.end(index);
            return;
        }
        let delay = backoff(member.restarts);
        member.restarts += 1;
        self.console.notice(
            &member.prefix,
            &member.name,
            &format!(
                "{}; restart {} of {RESTART_LIMIT} in {} ms",
                describe(end),
                member.restarts,
                delay.as_millis()
            ),
        );
        member.phase = Phase::Waiting(Instant::now() + delay);
    }

    /// Restarts the capsules whose delay has passed, unless `capsule stop` came since.
    fn restart_due(&mut self) {
        let now = Instant::now();
        for index in 0..self.members.len() {
            let member = &mut self.members[index];
            let Phase::Waiting(at) = member.phase else {
                continue;
            };
            if at > now {
                continue;
            }
            if stop_requested(member.dir.path()) {
                member.stopped = true;
                self.console
                    .notice(&member.prefix, &member.name, "stopped; not restarted");
                self.end(index);
                continue;
            }
            if let Err(e) = self.start(index).and_then(|pipe| self.relay(index, pipe)) {
                let member = &self.members[index];
                self.console.notice(
                    &member.prefix,
                    &member.name,
                    &format!("cannot restart: {e}"),
                );
                self.end(index);
            }
        }
    }

    /// The capsule has ended for good.
    fn end(&mut self, index: usize) {
        let member = &mut self.members[index];
        member.phase = Phase::Ended;
        if let Err(e) = member.dir.remove_supervisor() {
            warn!("{e}");
        }
    }

    /// SIGTERM to every running capsule's group; no more restarts.
    fn begin_stop(&mut self) {
        if self.kill_at.is_some() {
            return;
        }
        self.kill_at = Some(Instant::now() + self.settings.timeout);
        for index in 0..self.members.len() {
            let member = &mut self.members[index];
            match &member.phase {
                Phase::Running { child, .. } => {
                    member.stopped = true;
                    signal_group(child, libc::SIGTERM);
                }
                Phase::Waiting(_) | Phase::NotStarted => self.end(index),
                Phase::Ended => {}
            }
        }
    }

    /// SIGKILL to every group whose program still runs.
    fn kill_all(&mut self) {
        self.killed = true;
        for member in &mut self.members {
            if let Phase::Running { child, .. } = &member.phase {
                member.stopped = true;
                signal_group(child, libc::SIGKILL);
            }
        }
    }

    /// Lets the output threads copy what is left in the pipes (a program's children
    /// that outlive it may hold a pipe open: they are not waited for long).
    fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN_WAIT;
        while self.outputs.iter().any(|(_, t)| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (_, thread) in self.outputs.drain(..).filter(|(_, t)| t.is_finished()) {
            let _ = thread.join();
        }
    }

    /// The summary, printed, and what `capsule up` exits with.
    fn outcome(&self) -> Outcome {
        for member in &self.members {
            let text = match member.last {
                Some(end) => describe(end),
                None => "never started".to_string(),
            };
            self.console.say(&format!("{} {text}", member.name));
        }
        let clean = self.members.iter().all(|m| match m.last {
            Some(Termination::Exited(0)) => true,
            Some(Termination::Signaled(libc::SIGTERM)) => m.stopped,
            _ => false,
        });
        Outcome {
            ends: self
                .members
                .iter()
                .map(|m| (m.name.clone(), m.last))
                .collect(),
            clean,
            exit_code_from: self
                .settings
                .exit_code_from
                .and_then(|index| self.members[index].last),
        }
    }
}

/// The delay before restart number `restarts + 1`: 100 ms doubling, at most 5 s.
pub fn backoff(restarts: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1u32.checked_shl(restarts).unwrap_or(u32::MAX))
        .min(BACKOFF_CAP)
}

/// `exited 0`, `killed by SIGKILL`.
pub fn describe(end: Termination) -> String {
    match end {
        Termination::Exited(code) => format!("exited {code}"),
        Termination::Signaled(sig) => format!("killed by {}", signal_name(sig)),
    }
}

/// Signals the process group `child` leads.
fn signal_group(child: &Child, signal: libc::c_int) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions. The child is unreaped, so its
    // pid, which is its group's id, cannot have been reused.
    if unsafe { libc::kill(-pgid, signal) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            warn!("cannot signal process group {pgid}: {err}");
        }
    }
}

fn io_error(dir: &CapsuleDir, error: std::io::Error) -> RunError {
    RunError::State(crate::state::StateError::Io {
        path: dir.path().to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let delays: Vec<u128> = (0..8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff(40), BACKOFF_CAP);
    }

    #[test]
    fn ends_read_as_the_summary_says() {
        assert_eq!(describe(Termination::Exited(0)), "exited 0");
        assert_eq!(describe(Termination::Signaled(9)), "killed by SIGKILL");
        assert_eq!(describe(Termination::Signaled(64)), "killed by SIG64");
    }
}
