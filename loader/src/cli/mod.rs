//! The command line: clap structures only; each subcommand's file converts its flags
//! and calls the library.

pub mod build;
pub mod cp;
pub mod docs;
pub mod exec;
pub mod image;
pub mod inspect;
pub mod logs;
pub mod ps;
pub mod registry;
pub mod rm;
pub mod run;
pub mod stop;
pub mod up;

use clap::{Parser, Subcommand};

const ABOUT: &str = "Run unmodified Linux programs in capsules: a private host name, identity, \
clock and environment, through LD_PRELOAD. No root, no namespaces, no daemon.";

const LONG_ABOUT: &str = "\
capsule runs an unmodified, dynamically linked Linux program in a *capsule*: the program \
sees its own host name, its own identity (user and groups), its own clock and its own \
environment, while the real kernel and the rest of the system stay unchanged.

It works by injecting a library, libcapsule.so, into the program with LD_PRELOAD. That \
library answers uname(), gethostname(), getuid(), clock_gettime() and friends from the \
capsule's configuration, and follows the program into every child it starts. No root, no \
kernel namespaces, no setuid helper and no daemon are involved: any user can run it, on \
hosts where containers are not available.

A capsule can also have its own file system: --root DIR makes a host directory its \
read-only /, under a private copy-on-write layer, and -v binds host files and \
directories into it.

Each capsule keeps its state in $CAPSULE_HOME/capsules/NAME/ ($CAPSULE_HOME defaults to \
$XDG_DATA_HOME/capsule, else ~/.local/share/capsule).";

const AFTER_HELP: &str = "\
Running a program:
  capsule run [--name N] [--hostname H] [--user UID[:GID]|NAME[:GROUP]]
              [--time-offset ±DUR | --time-at RFC3339] [-e K[=V]]... [--env-file F]...
              [--root DIR | --image REF] [-v HOST:PATH[:ro]]... [--read-only]
              [-p [IP:]HOSTPORT:PORT[/udp]]... [-w DIR] [--rm] [-d [--restart P]]
              [--entrypoint E] [-i] [-t] [--] PROG [ARGS]...
  'capsule run --help' explains each flag.

Many programs at once, from a manifest:
  capsule up [-f capsule.toml] [-d] [--exit-code-from NAME] [-t SECS]
  'capsule up --help' explains the manifest.

Managing capsules (of run --name, run -d and up alike):
  capsule ps [-a] [--format table|json]      capsule inspect NAME...
  capsule logs [-f] [--tail N] [--since WHEN] [-t] NAME
  capsule stop [-t SECS] NAME... | --all     capsule rm [-f] NAME...
  capsule exec [-e K[=V]]... [-w DIR] [--user U] NAME [--] PROG [ARGS]...
  capsule cp NAME:PATH HOSTPATH              capsule cp HOSTPATH NAME:PATH
  capsule completions bash|zsh|fish          capsule man [COMMAND]

Images (OCI layouts and archives, docker save archives, root file system tarballs):
  capsule image import PATH[:TAG] [--name REF]   capsule image ls | images [--format json]
  capsule image rm REF... | export REF DIR       capsule pull REF [--platform OS/ARCH]
  capsule push IMAGE [DESTINATION]
  capsule login [-u USER] [--password-stdin] REGISTRY    capsule logout REGISTRY
  capsule run --image REF [-- PROG [ARGS]...]    capsule diff NAME | commit NAME NEWREF
  capsule build -t REF [-f FILE] [--build-arg K=V]... [--target STAGE] [--no-cache] CONTEXT

Examples:
  capsule run --hostname web1 -- uname -n
  capsule run --user postgres --time-offset -3d -- date
  capsule run --name db --user 1000:1000 -e PGDATA=/data -- postgres
  capsule run --root ./rootfs -v /srv/data:/data -w /data -- /bin/sh

Environment:
  CAPSULE_HOME   where capsule state lives
  CAPSULE_SHIM   path of libcapsule.so (default: beside the capsule executable)
  CAPSULE_LOG    log level of capsule and of the shim: off, error, warn, info, debug, trace";

/// The `capsule` command.
#[derive(Debug, Parser)]
#[command(
    name = "capsule",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a program in a capsule, supervise it and exit with its status
    #[command(long_about = run::LONG_ABOUT, after_help = run::AFTER_HELP)]
    Run(Box<run::RunArgs>),
    /// Start every capsule of a manifest (capsule.toml) at once and supervise them
    #[command(long_about = up::LONG_ABOUT, after_help = up::AFTER_HELP)]
    Up(up::UpArgs),
    /// List capsules: name, pid, status, uptime, ports, command
    #[command(long_about = ps::LONG_ABOUT)]
    Ps(ps::PsArgs),
    /// Print the output of a capsule started by `capsule up`
    #[command(long_about = logs::LONG_ABOUT)]
    Logs(logs::LogsArgs),
    /// Stop capsules: SIGTERM, then SIGKILL after a grace period; no restart
    #[command(long_about = stop::LONG_ABOUT)]
    Stop(stop::StopArgs),
    /// Run a new process inside a running capsule
    #[command(long_about = exec::LONG_ABOUT)]
    Exec(exec::ExecArgs),
    /// Print everything known about capsules as JSON (state, config, ports, mounts…)
    #[command(long_about = inspect::LONG_ABOUT)]
    Inspect(inspect::InspectArgs),
    /// Copy files between the host and a capsule's view (NAME:PATH)
    #[command(long_about = cp::LONG_ABOUT)]
    Cp(cp::CpArgs),
    /// Remove capsules and their private layers
    #[command(long_about = rm::LONG_ABOUT)]
    Rm(rm::RmArgs),
    /// Import, list, remove and export images
    #[command(long_about = image::LONG_ABOUT, after_help = image::AFTER_HELP)]
    Image(image::ImageArgs),
    /// List images (the same as `capsule image ls`)
    Images(image::ListArgs),
    /// Pull an image from a registry (docker.io, ghcr.io, your own) into the store
    #[command(long_about = registry::PULL_ABOUT, after_help = registry::PULL_AFTER_HELP)]
    Pull(registry::PullArgs),
    /// Push an image of the store to a registry
    #[command(long_about = registry::PUSH_ABOUT, after_help = registry::PUSH_AFTER_HELP)]
    Push(registry::PushArgs),
    /// Log in to a registry: check the credentials, then keep them for pull and push
    #[command(long_about = registry::LOGIN_ABOUT, after_help = registry::LOGIN_AFTER_HELP)]
    Login(registry::LoginArgs),
    /// Forget the credentials capsule login recorded for a registry
    #[command(long_about = registry::LOGOUT_ABOUT)]
    Logout(registry::LogoutArgs),
    /// Build an image from a Containerfile, without root or a daemon
    #[command(long_about = build::LONG_ABOUT, after_help = build::AFTER_HELP)]
    Build(build::BuildArgs),
    /// Show what a capsule changed in its file system: A added, C changed, D deleted
    Diff(image::DiffArgs),
    /// Make a new image of a capsule's image and the capsule's changes
    Commit(image::CommitArgs),
    /// Print a shell completion script (bash, zsh, fish)
    #[command(long_about = docs::COMPLETIONS_ABOUT)]
    Completions(docs::CompletionsArgs),
    /// Print the man page of capsule or of one of its commands
    #[command(long_about = docs::MAN_ABOUT)]
    Man(docs::ManArgs),
}

impl Command {
    /// Whether the command prints a listing and runs no program (see `main`'s
    /// `SIGPIPE` handling).
    pub fn writes_a_listing(&self) -> bool {
        match self {
            Command::Ps(_)
            | Command::Logs(_)
            | Command::Inspect(_)
            | Command::Diff(_)
            | Command::Completions(_)
            | Command::Man(_) => true,
            Command::Image(args) => matches!(args.command, image::ImageCommand::Ls(_)),
            Command::Images(_) => true,
            Command::Run(_)
            | Command::Up(_)
            | Command::Stop(_)
            | Command::Exec(_)
            | Command::Rm(_)
            | Command::Cp(_)
            | Command::Build(_)
            | Command::Pull(_)
            | Command::Push(_)
            | Command::Login(_)
            | Command::Logout(_)
            | Command::Commit(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn time_offset_takes_negative_durations() {
        let cli =
            Cli::try_parse_from(["capsule", "run", "--time-offset", "-3d", "--", "date"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run command")
        };
        assert_eq!(args.time_offset.as_deref(), Some("-3d"));
    }

    #[test]
    fn program_arguments_are_kept_verbatim() {
        let cli =
            Cli::try_parse_from(["capsule", "run", "--rm", "sh", "-c", "exit 3", "--rm"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run command")
        };
        assert!(args.rm);
        assert_eq!(args.command, ["sh", "-c", "exit 3", "--rm"]);
    }

    #[test]
    fn time_flags_conflict() {
        let err = Cli::try_parse_from([
            "capsule",
            "run",
            "--time-offset",
            "1d",
            "--time-at",
            "2030-01-01T00:00:00Z",
            "true",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn file_system_flags() {
        let cli = Cli::try_parse_from([
            "capsule",
            "run",
            "--root",
            "rootfs",
            "-v",
            "/a:/b",
            "--volume=/c:/d:ro",
            "--read-only",
            "--",
            "/bin/prog",
            "-v",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run command")
        };
        assert_eq!(args.root.as_deref(), Some(std::path::Path::new("rootfs")));
        assert_eq!(args.volume, ["/a:/b", "/c:/d:ro"]);
        assert!(args.read_only);
        assert_eq!(args.command, ["/bin/prog", "-v"]);
    }

    #[test]
    fn an_image_makes_the_program_optional() {
        let cli = Cli::try_parse_from(["capsule", "run", "--image", "debian:12"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run command")
        };
        assert_eq!(args.image.as_deref(), Some("debian:12"));
        assert!(args.command.is_empty());
        let err =
            Cli::try_parse_from(["capsule", "run", "--image", "a", "--root", "r"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let err = Cli::try_parse_from(["capsule", "run", "--name", "x"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn unknown_flags_are_not_taken_for_the_program() {
        let err = Cli::try_parse_from(["capsule", "run", "--bogus", "true"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }
}
