//! `capsule`: the command line. Parses flags (`cli`), calls the library, and is the
//! one place that decides the exit code:
//!
//! | exit | meaning |
//! |---|---|
//! | the program's | the program exited with that status |
//! | 128+N | the program was killed by signal N |
//! | 2 | a usage error (unknown flag, missing program…), reported by clap |
//! | 125 | capsule itself refused or failed (bad value, missing shim…), like docker |
//! | 126 | the program exists but cannot be executed (like a shell) |
//! | 127 | the program does not exist (like a shell) |

mod cli;

use std::io::Write;
use std::process::ExitCode;

use capsule_loader::launch::{LaunchError, Termination};
use capsule_loader::program::LookupError;
use capsule_loader::run::RunError;
use clap::Parser;

/// capsule itself failed or refused its input.
const EXIT_CAPSULE_ERROR: u8 = 125;
/// The program was found but cannot be executed.
const EXIT_CANNOT_EXECUTE: u8 = 126;
/// The program was not found.
const EXIT_NOT_FOUND: u8 = 127;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    init_logging();
    if cli.command.writes_a_listing() {
        default_sigpipe();
    }
    match cli.command {
        cli::Command::Run(args) => match cli::run::run(*args) {
            Ok(end) => ExitCode::from(exit_status(end)),
            Err(err) => {
                report(&err);
                ExitCode::from(failure_status(&err))
            }
        },
        cli::Command::Exec(args) => match cli::exec::exec(args) {
            Ok(end) => ExitCode::from(exit_status(end)),
            Err(err) => {
                report(&err);
                ExitCode::from(failure_status(&err))
            }
        },
        cli::Command::Up(args) => match cli::up::up(args) {
            Ok(status) => ExitCode::from(status),
            Err(err) => {
                report(&err);
                ExitCode::from(EXIT_CAPSULE_ERROR)
            }
        },
        cli::Command::Ps(args) => done(cli::ps::ps(args)),
        cli::Command::Logs(args) => done(cli::logs::logs(args)),
        cli::Command::Stop(args) => done(cli::stop::stop(args)),
        cli::Command::Rm(args) => done(cli::rm::rm(args)),
        cli::Command::Inspect(args) => done(cli::inspect::inspect(args)),
        cli::Command::Cp(args) => done(cli::cp::cp(args)),
        cli::Command::Completions(args) => done(cli::docs::completions(args)),
        cli::Command::Man(args) => done(cli::docs::man(args)),
        cli::Command::Image(args) => done(cli::image::image(args)),
        cli::Command::Images(list) => done(cli::image::image(cli::image::ImageArgs {
            command: cli::image::ImageCommand::Ls(list),
        })),
        cli::Command::Diff(args) => done(cli::image::diff(args)),
        cli::Command::Commit(args) => done(cli::image::commit(args)),
        cli::Command::Build(args) => done(cli::build::build(args)),
        cli::Command::Pull(args) => done(cli::registry::pull(args)),
        cli::Command::Push(args) => done(cli::registry::push(args)),
        cli::Command::Login(args) => done(cli::registry::login(args)),
        cli::Command::Logout(args) => done(cli::registry::logout(args)),
    }
}

/// A command whose output is a listing ends as every Unix tool does when its reader
/// goes away (`capsule ps | head -1`): killed by `SIGPIPE` at the next write, quietly,
/// the shell reporting 141. Rust ignores `SIGPIPE`, which would turn that into an
/// `EPIPE` error and 125. Commands that run programs keep ignoring it: `capsule up`
/// goes on supervising when nobody reads its output (and std gives every child the
/// default disposition back).
fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The exit code of a command that runs no program: 0, or 125 after its error.
fn done(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::from(EXIT_CAPSULE_ERROR)
        }
    }
}

/// The loader's own log, on stderr; `CAPSULE_LOG` sets the level (default warn).
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("CAPSULE_LOG", "warn"))
        .format(|out, record| {
            writeln!(
                out,
                "capsule: {}: {}",
                record.level().as_str().to_lowercase(),
                one_line(&record.args().to_string())
            )
        })
        .init();
}

/// Prints an error as one line: `capsule: what: why`.
fn report(err: &anyhow::Error) {
    let _ = writeln!(
        std::io::stderr(),
        "capsule: {}",
        one_line(&format!("{err:#}"))
    );
}

/// `text` with every control character (a newline, a carriage return, an escape…)
/// written as its Rust escape, so that a message echoing bad input stays one line and
/// cannot drive the terminal.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// A shell's convention: the program's own status, or 128+N for signal N.
fn exit_status(end: Termination) -> u8 {
    match end {
        Termination::Exited(code) => code,
        Termination::Signaled(sig) => 128u8.saturating_add(u8::try_from(sig).unwrap_or(127)),
    }
}

fn failure_status(err: &anyhow::Error) -> u8 {
    let lookup = |e: &LookupError| {
        if e.is_missing() {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_EXECUTE
        }
    };
    let spawn = |e: &LaunchError| match e.spawn_errno() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Some(EXIT_NOT_FOUND),
        Some(_) => Some(EXIT_CANNOT_EXECUTE),
        None => None,
    };
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<LookupError>() {
            return lookup(e);
        }
        if let Some(e) = cause.downcast_ref::<LaunchError>() {
            if let Some(status) = spawn(e) {
                return status;
            }
        }
        match cause.downcast_ref::<RunError>() {
            Some(RunError::Lookup(e)) => return lookup(e),
            Some(RunError::Launch(e)) => {
                if let Some(status) = spawn(e) {
                    return status;
                }
            }
            _ => {}
        }
    }
    EXIT_CAPSULE_ERROR
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn reports_stay_on_one_line() {
        assert_eq!(one_line("a\nb\r\u{1b}[2Jc\té"), "a\\nb\\r\\u{1b}[2Jc\\té");
    }

    #[test]
    fn exit_statuses_follow_the_shell() {
        assert_eq!(exit_status(Termination::Exited(3)), 3);
        assert_eq!(exit_status(Termination::Signaled(15)), 143);
        assert_eq!(exit_status(Termination::Signaled(9)), 137);
    }

    #[test]
    fn failures_map_to_docker_and_shell_codes() {
        let missing = anyhow::Error::new(RunError::Lookup(LookupError::CommandNotFound(
            OsString::from("x"),
        )));
        assert_eq!(failure_status(&missing), 127);
        let denied = anyhow::Error::new(RunError::Lookup(LookupError::PermissionDenied(
            OsString::from("x"),
        )));
        assert_eq!(failure_status(&denied), 126);
        let noexec = anyhow::Error::new(RunError::Launch(LaunchError::Spawn {
            program: "x".into(),
            error: std::io::Error::from_raw_os_error(libc::ENOEXEC),
        }));
        assert_eq!(failure_status(&noexec), 126);
        assert_eq!(failure_status(&anyhow::anyhow!("--name: bad")), 125);
    }
}
