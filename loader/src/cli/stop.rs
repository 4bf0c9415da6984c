//! `capsule stop`: flags → [`capsule_loader::manage::stop`].

use std::time::Duration;

use anyhow::anyhow;
use capsule_loader::manage::stop::{self, Stopped};
use capsule_loader::manage::{self, ps};
use clap::Args;

pub const LONG_ABOUT: &str = "\
Stop capsules: first leave a `stop` marker so that no supervisor restarts them, then send \
SIGTERM to each capsule's program (to its process group when it leads one, as with \
`capsule up`), wait up to -t seconds, then SIGKILL whatever is left of the capsule (its \
process group, and every process still running with its configuration). Returns when \
nothing of the capsule runs. Prints the name of each capsule stopped; a capsule that was \
not running is not an error (a note says so on standard error).";

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Stop every capsule that is up
    #[arg(long, conflicts_with = "names")]
    pub all: bool,

    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = stop::DEFAULT_TIMEOUT.as_secs())]
    pub time: u64,

    /// The capsules to stop
    #[arg(value_name = "NAME", required_unless_present = "all")]
    pub names: Vec<String>,
}

pub fn stop(args: StopArgs) -> anyhow::Result<()> {
    let home = manage::current_home()?;
    let names = if args.all {
        ps::list(&home, false)?
            .into_iter()
            .map(|i| i.name)
            .collect()
    } else {
        args.names
    };
    let timeout = Duration::from_secs(args.time);
    // All at once, so that stopping many takes one grace period, not one each.
    let results: Vec<_> = std::thread::scope(|scope| {
        let stops: Vec<_> = names
            .iter()
            .map(|name| scope.spawn(|| stop::stop(&home, name, timeout)))
            .collect();
        stops.into_iter().map(|stop| stop.join()).collect()
    });
    // Every capsule named is attempted; the failures are reported together.
    let mut failures = Vec::new();
    for (name, result) in names.iter().zip(results) {
        let result = result.map_err(|_| anyhow!("capsule {name}: stopping it panicked"))?;
        match result {
            Ok(Stopped::WasRunning) => println!("{name}"),
            Ok(Stopped::WasRestarting) => {
                eprintln!("capsule: {name} was waiting to be restarted; it will not be");
                println!("{name}");
            }
            Ok(Stopped::WasNotRunning) => {
                eprintln!("capsule: {name} was not running");
                println!("{name}");
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(anyhow!(failures.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use clap::error::ErrorKind;
    use clap::Parser;

    #[test]
    fn names_or_all() {
        let cli = Cli::try_parse_from(["capsule", "stop", "-t", "1", "a", "b"]).unwrap();
        let Command::Stop(args) = cli.command else {
            panic!("not a stop command")
        };
        assert_eq!(
            (args.names, args.time, args.all),
            (vec!["a".into(), "b".into()], 1, false)
        );
        let cli = Cli::try_parse_from(["capsule", "stop", "--all"]).unwrap();
        let Command::Stop(args) = cli.command else {
            panic!("not a stop command")
        };
        assert_eq!(args.time, 10, "docker's default grace period");
        let err = Cli::try_parse_from(["capsule", "stop"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let err = Cli::try_parse_from(["capsule", "stop", "--all", "a"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }
}
