//! `capsule exec`: flags → [`capsule_loader::manage::exec`].

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use capsule_loader::envfile::{self, EnvEntry};
use capsule_loader::launch::Termination;
use capsule_loader::manage;
use capsule_loader::manage::exec::{self, ExecError, ExecSpec};
use capsule_loader::run::Host;
use clap::Args;

pub const LONG_ABOUT: &str = "\
Run a new process inside a running capsule: it sees the capsule's private file system, \
host name, identity, clock and ports, and starts with the environment the capsule's \
program started with, plus -e. PROG is looked for inside the capsule. Exits with the \
program's status (126: cannot be executed, 127: not found, 125: capsule refused, e.g. \
the capsule is not running).";

pub const USAGE: &str =
    "capsule exec [-i] [-t] [-e K[=V]]... [-w DIR] [-u|--user U] NAME [--] PROG [ARGS]...";

#[derive(Debug, Args)]
#[command(override_usage = USAGE)]
pub struct ExecArgs {
    /// Set an environment variable (KEY=VALUE), or copy KEY from the environment
    /// `capsule exec` runs in
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<OsString>,

    /// The working directory, a path inside the capsule (default: where the capsule's
    /// program started)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// The identity to run as, resolved in the capsule's /etc/passwd and /etc/group
    /// (default: the capsule's)
    #[arg(short = 'u', long, value_name = "UID[:GID]|NAME[:GROUP]")]
    pub user: Option<String>,

    /// Keep standard input attached (docker exec -i): the process always reads
    /// capsule exec's standard input, so this changes nothing
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Give the process a terminal (docker exec -t): it runs on capsule exec's own
    /// terminal when there is one; none is made without one
    #[arg(short = 't', long)]
    pub tty: bool,

    /// The capsule's name
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The program and its arguments
    #[arg(
        value_name = "PROG",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub command: Vec<OsString>,
}

pub fn exec(args: ExecArgs) -> anyhow::Result<Termination> {
    let mut env: Vec<EnvEntry> = Vec::new();
    for assignment in &args.env {
        env.push(
            envfile::parse_assignment(assignment).map_err(|e| anyhow!("-e {assignment:?}: {e}"))?,
        );
    }
    let mut command = args.command.into_iter();
    let program = command
        .next()
        .context("no program given (capsule exec NAME -- PROG [ARGS]...)")?;
    let spec = ExecSpec {
        name: args.name,
        program,
        args: command.collect(),
        env,
        workdir: args.workdir,
        user: args.user,
    };
    let home = manage::current_home()?;
    exec::exec(&home, spec, &Host::current()).map_err(expose_status)
}

/// Puts a lookup or launch failure first in the error chain, where `main` looks for
/// what decides 126 or 127.
fn expose_status(err: ExecError) -> anyhow::Error {
    match err {
        ExecError::Lookup(e) => e.into(),
        ExecError::Launch(e) => e.into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use clap::Parser;

    #[test]
    fn the_program_and_its_flags_follow_the_name() {
        let cli = Cli::try_parse_from([
            "capsule", "exec", "-e", "A=1", "-w", "/srv", "--user", "0", "box", "--", "sh", "-c",
            "exit 3", "-e",
        ])
        .unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not an exec command")
        };
        assert_eq!(args.name, "box");
        assert_eq!(args.env, ["A=1"]);
        assert_eq!(args.user.as_deref(), Some("0"));
        assert_eq!(args.command, ["sh", "-c", "exit 3", "-e"]);
        let cli = Cli::try_parse_from(["capsule", "exec", "box", "id", "-u"]).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not an exec command")
        };
        assert_eq!(args.command, ["id", "-u"]);
        assert!(Cli::try_parse_from(["capsule", "exec", "box"]).is_err());
    }
}
