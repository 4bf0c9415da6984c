//! `capsule ps`: flags → [`capsule_loader::manage::ps`].

use std::io::Write;

use capsule_loader::manage::{self, ps};
use clap::{Args, ValueEnum};

pub const LONG_ABOUT: &str = "\
List capsules: NAME, PID, STATUS, UPTIME, PORTS and COMMAND.

By default only capsules that are up are listed (running, or restarting under \
`capsule up`); -a lists every capsule with a state directory.

STATUS is one of: running; restarting (its supervisor starts it again after a crash); \
exited (N) (its program called exit(N)); killed (SIGNAME) (a signal ended it); exited \
(unknown) (its processes are gone and nobody recorded how they ended); created (not \
started yet, or being started). A capsule whose processes died is never shown as \
running: the pid must be alive and still belong to the capsule.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns under a header line
    Table,
    /// A JSON array, one object per capsule
    Json,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// List every capsule, not only those that are up
    #[arg(short, long)]
    pub all: bool,

    /// Print only the names, one a line (docker ps -q), e.g. for
    /// `capsule rm -f $(capsule ps -aq)`
    #[arg(short, long, conflicts_with = "format")]
    pub quiet: bool,

    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn ps(args: PsArgs) -> anyhow::Result<()> {
    let home = manage::current_home()?;
    let infos = ps::list(&home, args.all)?;
    let text = match args.format {
        _ if args.quiet => infos.iter().map(|i| format!("{}\n", i.name)).collect(),
        Format::Table => ps::table(&infos),
        Format::Json => ps::json(&infos),
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
