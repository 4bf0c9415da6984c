//! `capsule up`: flags → checked manifest → prepared capsules → the supervisor, in the
//! foreground or detached.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use capsule_loader::launch::Termination;
use capsule_loader::manifest::{self, Manifest};
use capsule_loader::run::Host;
use capsule_loader::up::{self, Detached, Outcome, Settings, UpError};
use clap::Args;

pub const LONG_ABOUT: &str = "\
Start every capsule of a manifest at once, each in its own capsule, and supervise them: \
their output is printed line by line behind a 'name | ' prefix (coloured on a terminal) \
and appended to $CAPSULE_HOME/capsules/NAME/log; a capsule is restarted by its restart \
policy, with a backoff from 100 ms doubling to 5 s, and given up after 5 restarts in a \
row; Ctrl-C, SIGTERM or SIGHUP stops them all (SIGTERM to each capsule's process group, \
SIGKILL after --timeout) and prints how each ended.

The manifest (capsule.toml unless -f says otherwise) has one [capsule.NAME] table per \
capsule: command, ports, volumes, env, env_file, root, image, hostname, user, workdir, \
time_offset or time_at, read_only, restart, replicas, depends_on. Every capsule reaches \
the others by name. The whole manifest is checked, and every capsule prepared, before \
anything starts; an error names the file, line and key.

With --dry-run nothing starts: the checks run and what would start is printed.

Exit status: 0 when every capsule exited 0 or was ended by the stop's SIGTERM, 1 \
otherwise; with --exit-code-from NAME, NAME's status (128+N for signal N); 125 when \
capsule refuses the manifest or cannot start.";

pub const AFTER_HELP: &str = "\
Examples:
  capsule up                             # ./capsule.toml, in the foreground
  capsule up -f examples/web.toml
  capsule up -d                          # returns once all have started
  capsule up --dry-run                   # check only; print what would start
  capsule up --exit-code-from client -t 3

A manifest:
  [capsule.web]
  command = [\"python3\", \"-m\", \"http.server\", \"8000\"]
  replicas = 2                           # web-1, web-2
  ports = [\"18081:8000\"]                 # web-1: 18081, web-2: 18082
  restart = \"on-failure\"

  [capsule.client]
  command = \"curl -s http://web-1:8000/\"
  depends_on = [\"web\"]";

/// Flags of `capsule up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The manifest. Relative paths in it are taken from its directory.
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = manifest::DEFAULT_FILE)]
    pub file: PathBuf,

    /// Supervise in the background (a new session, output only to the log files);
    /// return once every capsule has started, printing their names.
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// When capsule NAME ends (and is not restarted), stop the others and exit with
    /// NAME's status.
    #[arg(long, value_name = "NAME", conflicts_with = "detach")]
    pub exit_code_from: Option<String>,

    /// Seconds between the SIGTERM that stops the capsules and the SIGKILL for those
    /// that still run.
    #[arg(short = 't', long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,

    /// Check the manifest and prepare every capsule (programs, roots, images,
    /// volumes, users, ports, limits) without creating or starting anything; print
    /// what would start, one `NAME: COMMAND` line each, in start order. Exit status 0,
    /// or 125 with the refusal.
    #[arg(long, conflicts_with = "detach")]
    pub dry_run: bool,

    /// Print the capsules' output as the programs wrote it, without the `name | `
    /// prefix, as docker compose up --no-log-prefix: for one capsule, or for a Slurm
    /// job step whose output file is the program's. The log files never have one.
    #[arg(long = "no-log-prefix", conflicts_with = "detach")]
    pub no_log_prefix: bool,
}

/// Runs `capsule up`; returns its exit status.
pub fn up(args: UpArgs) -> anyhow::Result<u8> {
    let host = Host::current();
    let cwd = host
        .cwd
        .clone()
        .context("cannot determine the current directory")?;
    let manifest = Manifest::load(&args.file, &cwd)?;
    let exit_code_from = match &args.exit_code_from {
        Some(name) => Some(manifest.find(name).ok_or_else(|| UpError::UnknownCapsule {
            name: name.clone(),
            file: manifest.file.clone(),
        })?),
        None => None,
    };
    let plan = up::plan(manifest, &host)?;
    if args.dry_run {
        for line in plan.describe() {
            println!("{line}");
        }
        return Ok(0);
    }
    let stdout = std::io::stdout();
    let settings = Settings {
        timeout: Duration::from_secs(args.timeout),
        exit_code_from,
        foreground: !args.detach,
        colours: stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        prefix: !args.no_log_prefix,
    };
    if !args.detach {
        let outcome = up::supervise(plan, settings, None)?;
        return Ok(status(&outcome));
    }
    match up::detach()? {
        Detached::Caller(waiter) => {
            for name in waiter.wait()? {
                println!("{name}");
            }
            Ok(0)
        }
        Detached::Supervisor(mut notifier) => {
            match up::supervise(plan, settings, Some(&mut notifier)) {
                Ok(outcome) => Ok(status(&outcome)),
                Err(e) => {
                    notifier.fail(&e.to_string());
                    Err(e.into())
                }
            }
        }
    }
}

/// `--exit-code-from`'s status as a shell gives it, else 0 for a clean end.
fn status(outcome: &Outcome) -> u8 {
    match outcome.exit_code_from {
        Some(Termination::Exited(code)) => code,
        Some(Termination::Signaled(sig)) => 128u8.saturating_add(u8::try_from(sig).unwrap_or(127)),
        None if outcome.clean => 0,
        None => 1,
    }
}
