//! `capsule run`: flags → validated settings → [`capsule_loader::run::RunSpec`].
//!
//! Flags whose values stand alone are checked here, before the library is asked to do
//! anything; those that depend on the capsule (the user, -w, --root, -v: the state
//! directory's upper layer and the root decide what they mean) are checked by
//! [`RunSpec::prepare`], which creates nothing either. Either way an error names the
//! flag and the value at fault.

use std::ffi::OsString;
use std::fmt::Display;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use capsule_config::{parse_duration, parse_rfc3339};
use capsule_loader::envfile::{self, EnvEntry};
use capsule_loader::launch::Termination;
use capsule_loader::manage;
use capsule_loader::manifest::Restart;
use capsule_loader::run::{Host, Prepared, RunError, RunSpec, TimeSetting};
use capsule_loader::slurm;
use capsule_loader::state;
use capsule_loader::up::{self, Detached};
use clap::{Args, ValueEnum};

pub const LONG_ABOUT: &str = "\
Run PROG with ARGS in a capsule, supervise it, and exit with its exit status (128+N if \
signal N killed it). With -d, the capsule runs in the background under a supervisor (as \
capsule up's capsules do) and capsule run prints its name and returns at once.

The program gets the loader's environment plus -e/--env-file settings, with \
LD_PRELOAD=libcapsule.so prepended and CAPSULE_CONFIG naming the capsule's config file \
($CAPSULE_HOME/capsules/NAME/config). Signals sent to capsule (SIGINT, SIGTERM, SIGHUP, \
SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM) are relayed to the program.

File system: every capsule has a private copy-on-write upper layer, \
$CAPSULE_HOME/capsules/NAME/upper, kept between runs of the same name and removed by --rm. \
With --root DIR the capsule's / is DIR, read-only, under that upper layer: what the \
program changes goes to the upper layer and DIR is never written. PROG, the PATH search \
and -w are then paths inside the capsule (the upper layer first, then DIR; symbolic \
links resolved inside the capsule), the program starts in / unless -w says otherwise, and \
--user names are looked up in the capsule's /etc/passwd and /etc/group. -v binds host \
files and directories into the capsule, with or without --root; --read-only makes \
everything but the volumes read-only.

Kernel backstop: on Linux 5.13 or newer with Landlock enabled, the kernel enforces that too, for every process of the capsule and whatever it runs (raw system calls, static binaries, /proc/self/fd links): writes only in the upper layer (not with --read-only), the rw volumes and /dev; with --root or --image, reads and exec only in the capsule's layers, volumes, /proc, /dev, /sys and what the shim needs. It also sets no_new_privs, so setuid programs do not gain privileges. Metadata changes (chmod, chown, times, xattrs) are not Landlock's: only the shim guards them. Without Landlock, or with CAPSULE_LANDLOCK=off in capsule's environment, the capsule runs without the backstop and capsule says so once (warning).

Every flag is checked before anything is created or started. Exit status: the program's; \
125 when capsule refuses its input or fails; 126 when PROG cannot be executed; 127 when \
PROG is not found.";

pub const USAGE: &str = "capsule run [--name N] [--hostname H] [--user UID[:GID]|NAME[:GROUP]]
                   [--time-offset ±DUR | --time-at RFC3339] [-e K[=V]]... [--env-file F]...
                   [--root DIR | --image REF] [-v HOST:PATH[:ro]]... [--read-only]
                   [-p [IP:]HOSTPORT:PORT[/udp]]... [-w DIR] [--rm] [-d [--restart P]]
                   [--entrypoint E] [-i] [-t] [--] PROG [ARGS]...";

pub const AFTER_HELP: &str = "\
Examples:
  capsule run --hostname web1 -- uname -n
  capsule run --time-offset -3d -- date
  capsule run --time-at 2030-01-01T00:00:00Z -- date
  capsule run --user postgres -- id
  capsule run --user 1000:1000 -e HOME=/tmp -- id
  capsule run --name db --env-file ./db.env -w /srv/db -- ./start.sh
  capsule run --rm -- sh -c 'hostname; whoami; date'
  capsule run --root ./rootfs -- /bin/sh -c 'echo hi > /tmp/x'   # ./rootfs/tmp/x stays absent
  capsule run --root ./rootfs -w /srv/app -v $PWD/data:/srv/app/data -- ./serve
  capsule run --root ./rootfs --read-only -v /etc/ssl/certs:/etc/ssl/certs:ro -- app
  capsule run -d --name web -p 127.0.0.1:8080:8000 -- python3 -m http.server 8000
  capsule run --rm --image debian:12 --entrypoint /bin/cat -- /etc/os-release
  capsule run -it --rm --image debian:12 -- bash";

/// Flags of `capsule run`.
#[derive(Debug, Args)]
#[command(override_usage = USAGE)]
pub struct RunArgs {
    /// Name of the capsule (letters, digits, '_', '.', '-'; at most 63). Its state lives
    /// in $CAPSULE_HOME/capsules/NAME and a later run with the same name continues with
    /// it; refused while a program of that capsule still runs. Default: a generated
    /// name such as capsule-1a2b3c4d. Example: --name db
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Host name the program sees (uname, gethostname), at most 64 bytes.
    /// Example: --hostname web1
    #[arg(long, value_name = "HOST")]
    pub hostname: Option<String>,

    /// Identity the program sees (getuid, getgid, getgroups, setuid rules): a user name
    /// or uid, optionally with a group name or gid, as `docker run --user`. Names are
    /// looked up in /etc/passwd and /etc/group. Examples: --user postgres,
    /// --user 1000:1000, --user 0, --user www-data:adm
    #[arg(short = 'u', long, value_name = "UID[:GID]|NAME[:GROUP]")]
    pub user: Option<String>,

    /// Shift the program's clock by a signed duration: NUMBER UNIT groups with units
    /// ns us ms s m h d w y (a year is 365 days); a bare number is seconds.
    /// Examples: --time-offset -3d, --time-offset +90m, --time-offset 1y2d
    #[arg(long, value_name = "±DURATION", allow_hyphen_values = true)]
    pub time_offset: Option<String>,

    /// Start the program's clock at an instant (RFC 3339); the clock then runs normally.
    /// Turned into a fixed offset when the capsule starts, so all its processes agree.
    /// Example: --time-at 2030-01-01T00:00:00Z
    #[arg(long, value_name = "RFC3339", conflicts_with = "time_offset")]
    pub time_at: Option<String>,

    /// Set an environment variable for the program; with no '=', copy it from capsule's
    /// own environment (if set there). Wins over --env-file. Repeatable.
    /// Examples: -e LANG=C.UTF-8, -e HOME
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<OsString>,

    /// Read environment variables from a file, docker's format: KEY=VALUE lines taken
    /// literally, KEY alone copies from capsule's environment, '#' comments and blank
    /// lines ignored. Repeatable; later files win. Example: --env-file ./db.env
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// Directory the program starts in (must exist); a PROG given as a relative path is
    /// found from there. With --root, DIR is an absolute path inside the capsule (the
    /// program starts in the capsule's / without -w). Example: -w /srv/app
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// Use the host directory DIR as the capsule's / (an unpacked image or a debootstrap
    /// tree; it must exist). DIR is the read-only lower layer: files the program creates,
    /// changes or deletes go to the capsule's private upper layer
    /// ($CAPSULE_HOME/capsules/NAME/upper) and DIR itself is never written. PROG, PATH
    /// and -w are looked for inside the capsule (upper layer first, then DIR), and the
    /// program starts in / unless -w is given. Examples: --root ./rootfs,
    /// --root /srv/images/debian-12
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Use an imported image (capsule image import) as the capsule's /, read-only under
    /// the capsule's upper layer, like --root. The image's configuration supplies the
    /// defaults docker run takes from it: Entrypoint and Cmd (PROG is then optional:
    /// when given it replaces Cmd), Env (under -e), WorkingDir (unless -w), User (unless
    /// --user; root when the image names none) and ExposedPorts (published on free host
    /// ports unless -p publishes them). Examples: --image debian:12, --image 3f2a9c1b
    #[arg(long, value_name = "REF", conflicts_with = "root")]
    pub image: Option<String>,

    /// With --image, when to pull REF from its registry (capsule pull): missing (the
    /// store has no such image), always, never
    #[arg(
        long,
        value_enum,
        value_name = "POLICY",
        default_value = "missing",
        requires = "image"
    )]
    pub pull: super::registry::PullPolicy,

    /// With --image, the platform to pull (OS/ARCH[/VARIANT]; default: this machine's)
    #[arg(long, value_name = "OS/ARCH", requires = "image")]
    pub platform: Option<String>,

    #[command(flatten)]
    pub tls: super::registry::TlsArgs,

    /// Bind the host file or directory HOST at PATH inside the capsule, as docker run -v:
    /// both absolute, HOST must exist; the program reads and writes HOST itself there
    /// (not the upper layer), or only reads it with :ro. Repeatable, each PATH once.
    /// Examples: -v /srv/data:/var/lib/app, -v /etc/ssl/certs:/etc/ssl/certs:ro
    #[arg(short = 'v', long = "volume", value_name = "HOST:PATH[:ro]")]
    pub volume: Vec<String>,

    /// Publish capsule port PORT as host port HOSTPORT, as docker run -p: a bind to
    /// PORT inside the capsule binds HOSTPORT on the host (on the IPv4 address IP
    /// only, when given and the program binds every address). PORT alone takes a free
    /// host port when the program binds it (so does any port the capsule binds
    /// without -p); capsule ps and inspect show it. A HOSTPORT another program holds
    /// is refused before anything starts. Repeatable. Examples: -p 18080:8000,
    /// -p 127.0.0.1:8080:80, -p 5353:53/udp, -p 8000
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOSTPORT:PORT[/udp]")]
    pub publish: Vec<String>,

    /// With --root or --image, give the program the whole environment of capsule's
    /// caller (under the image's Env, --env-file and -e) instead of docker's clean one:
    /// PATH, HOME of the capsule's user, HOSTNAME, TERM on a terminal, and only the
    /// variables -e and --env-file name. A capsule of the host's root always
    /// continues its caller's environment, as any command does.
    #[arg(long = "env-host")]
    pub env_host: bool,

    /// The capsule's network: capsule (default) gives it its own ports (a bind of
    /// port P takes a free or published host port) and names for its peers; host
    /// uses the host's network as it is, as docker run --network host: binds take the
    /// host's ports, no -p, no peers by name. What MPI across nodes needs, whose ranks
    /// exchange the ports they bound. Example: --network host
    #[arg(
        long = "network",
        alias = "net",
        value_enum,
        value_name = "MODE",
        default_value = "capsule"
    )]
    pub network: NetworkMode,

    /// Make the capsule's file system read-only: writes fail everywhere but in the
    /// volumes not marked :ro, as with docker run --read-only.
    /// Example: --read-only -v /tmp/app-cache:/var/cache/app
    #[arg(long = "read-only")]
    pub read_only: bool,

    /// Run a static program (busybox-static, Go) even where the kernel cannot give
    /// the capsule its system calls (no seccomp notifications): it then sees the
    /// host, not the capsule. Without it such a program is refused.
    #[arg(long = "allow-bypass")]
    pub allow_bypass: bool,

    /// Which programs run under the system-call backstop: static (the default:
    /// static and Go programs) or all (every program, dynamic ones without the
    /// shim: raw system calls, JIT code and the C library's own calls are the
    /// capsule's too, at the cost of a round trip to the supervisor per call).
    #[arg(long = "backstop", value_name = "static|all", default_value = "static")]
    pub backstop: BackstopMode,

    /// Remove the capsule's state directory when the program ends (with -d: when it
    /// has ended for good, restarts included).
    #[arg(long)]
    pub rm: bool,

    /// Run in the background, as docker run -d: print the capsule's name and return
    /// at once. A supervisor (as for capsule up) keeps the program running, restarts
    /// it by --restart, and appends its output to the capsule's log; capsule ps, logs,
    /// stop, exec and rm work on it. The program's standard input is /dev/null.
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// With -d: restart the program when it ends: no (default), on-failure (a
    /// non-zero exit or a signal), always. Restarts back off from 100 ms to 5 s and
    /// give up after 5 in a row; capsule stop ends them.
    #[arg(
        long,
        value_enum,
        value_name = "POLICY",
        default_value = "no",
        requires = "detach"
    )]
    pub restart: RestartPolicy,

    /// Run ENTRYPOINT instead of the image's Entrypoint, as docker run --entrypoint:
    /// the image's Cmd is dropped too, PROG and ARGS (if any) become its arguments;
    /// "" runs PROG without any entrypoint. Without --image, ENTRYPOINT is the
    /// program and PROG ARGS its arguments. Example: --entrypoint /bin/sh -- -c 'id'
    #[arg(long, value_name = "ENTRYPOINT")]
    pub entrypoint: Option<OsString>,

    /// Keep standard input attached (docker run -i). The program is capsule's child
    /// and always reads capsule's standard input (a pipe, a file or your terminal),
    /// so this is accepted for docker's command lines and changes nothing.
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Give the program a terminal (docker run -t). The program runs on capsule's
    /// own terminal when there is one (isatty is true, Ctrl-C and job control reach
    /// it, TERM is passed on); without one (a pipe, a script, CI) it runs with the
    /// pipes it is given, and nothing fails.
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Inside a Slurm job step: every task's capsule is a peer of the others, reached
    /// by its capsule name (which must use %t, e.g. --name app-%t). A peer on this
    /// node is reached as capsule up's are; one on another node at that node's address
    /// and the host port it publishes (-p 8000+%t:8000 gives each task its own).
    /// The layout comes from SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE,
    /// SLURM_DISTRIBUTION (block or cyclic) and scontrol.
    #[arg(long = "peers-from-slurm")]
    pub peers_from_slurm: bool,

    /// The program and its arguments. A PROG without '/' is searched in the PATH of
    /// the program's environment (-e PATH=… if given), inside the capsule with --root.
    #[arg(
        value_name = "PROG",
        required_unless_present_any = ["image", "entrypoint"],
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub command: Vec<OsString>,
}

/// `--network`: the capsule's own network, or the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkMode {
    Capsule,
    Host,
}

/// `--backstop`: which programs run under the system-call backstop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackstopMode {
    Static,
    All,
}

/// `--restart`, as docker run takes it (and capsule up's `restart` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
}

impl From<RestartPolicy> for Restart {
    fn from(policy: RestartPolicy) -> Restart {
        match policy {
            RestartPolicy::No => Restart::No,
            RestartPolicy::OnFailure => Restart::OnFailure,
            RestartPolicy::Always => Restart::Always,
        }
    }
}

/// An error naming the flag and value at fault, e.g. `--time-offset "soon": …`.
fn flag_error(flag: &str, value: impl Display, reason: impl Display) -> anyhow::Error {
    anyhow!("{flag} {value}: {reason}")
}

/// Names the flag behind a refusal of the library (`-w DIR: no such directory`);
/// other errors keep their type, which decides the exit status.
fn name_the_flag(err: RunError) -> anyhow::Error {
    match err {
        RunError::WorkDir(e) => anyhow!("-w {e}"),
        RunError::Root(e) => anyhow!("--root {e}"),
        RunError::Volume(e) => anyhow!("-v {e}"),
        RunError::User { spec, reason } => flag_error("--user", format!("{spec:?}"), reason),
        other => other.into(),
    }
}

/// `--name`, `--hostname`, `-p` and `-v` with Slurm's per-task values in place of
/// `%t`, `%a`, `%j`… (see [`capsule_loader::slurm::expand`]).
fn expand_placeholders(args: &mut RunArgs) -> anyhow::Result<()> {
    let var = |key: &str| std::env::var(key).ok();
    let expand = |flag: &str, value: &mut String| -> anyhow::Result<()> {
        if slurm::has_placeholder(value) {
            *value = slurm::expand(value, &var)
                .map_err(|e| flag_error(flag, format!("{value:?}"), e))?;
        }
        Ok(())
    };
    if let Some(name) = &mut args.name {
        expand("--name", name)?;
    }
    if let Some(host) = &mut args.hostname {
        expand("--hostname", host)?;
    }
    for spec in &mut args.publish {
        expand("-p", spec)?;
    }
    for spec in &mut args.volume {
        expand("-v", spec)?;
    }
    Ok(())
}

/// A PMIx client (an MPI rank under `srun --mpi=pmix`) shares its server's directories
/// ([`slurm::pmix_shared_dirs`]): each becomes a read-write volume at its own path,
/// unless a `-v` already binds that path.
fn share_pmix_dirs(args: &mut RunArgs) {
    let var = |key: &str| std::env::var(key).ok();
    for dir in slurm::pmix_shared_dirs(&var) {
        let dir = dir.display().to_string();
        let bound = args.volume.iter().any(|v| {
            v.split(':')
                .nth(1)
                .is_some_and(|p| p.trim_end_matches('/') == dir)
        });
        if !bound {
            log::debug!("PMIx directory {dir} shared with the job step");
            args.volume.push(format!("{dir}:{dir}"));
        }
    }
}

/// Runs `capsule run`: checks every flag, then hands over to the library.
pub fn run(mut args: RunArgs) -> anyhow::Result<Termination> {
    let templates = (args.name.clone(), args.publish.clone());
    expand_placeholders(&mut args)?;
    share_pmix_dirs(&mut args);
    let (peers, remote_peers) = if args.peers_from_slurm {
        let var = |key: &str| std::env::var(key).ok();
        let name = templates.0.as_deref().unwrap_or("");
        let found = slurm::peers(name, &templates.1, &var, &slurm::scontrol_nodes)
            .map_err(|e| anyhow!("--peers-from-slurm: {e}"))?;
        (found.names, found.remote)
    } else {
        (Vec::new(), Vec::new())
    };
    if let Some(name) = &args.name {
        state::validate_name(name).map_err(|e| anyhow!("--name {e}"))?;
    }
    if let Some(host) = &args.hostname {
        capsule_config::check_hostname(host)
            .map_err(|e| flag_error("--hostname", format!("{host:?}"), e))?;
    }
    let time = match (&args.time_offset, &args.time_at) {
        (Some(offset), _) => Some(TimeSetting::Offset(parse_duration(offset).map_err(
            |e| {
                flag_error(
                    "--time-offset",
                    format!("{offset:?}"),
                    format!("{e} (a duration looks like -3d, +90m or 1y2d)"),
                )
            },
        )?)),
        (None, Some(at)) => Some(TimeSetting::At(parse_rfc3339(at).map_err(|e| {
            flag_error(
                "--time-at",
                format!("{at:?}"),
                format!("{e} (an RFC 3339 instant looks like 2030-01-01T00:00:00Z)"),
            )
        })?)),
        (None, None) => None,
    };

    let mut env: Vec<EnvEntry> = Vec::new();
    for file in &args.env_file {
        env.extend(envfile::read_env_file(file).map_err(|e| anyhow!("--env-file {e}"))?);
    }
    for assignment in &args.env {
        env.push(
            envfile::parse_assignment(assignment)
                .map_err(|e| flag_error("-e", format!("{assignment:?}"), e))?,
        );
    }

    let pull = super::registry::options(&args.tls, args.platform.as_deref(), false)?;
    let host = Host::current();
    let mut command: Vec<OsString> = args.command;
    // Without an image, an entrypoint is the program, PROG and ARGS its arguments.
    let mut entrypoint = args.entrypoint;
    if args.image.is_none() {
        if let Some(first) = entrypoint.take().filter(|e| !e.is_empty()) {
            command.insert(0, first);
        }
    }
    let mut command = command.into_iter();
    // With --image, no program means the image's Entrypoint/Cmd.
    let program = match (command.next(), &args.image) {
        (Some(program), _) => program,
        (None, Some(_)) => OsString::new(),
        (None, None) => {
            return Err(anyhow!(
                "no program given (capsule run [FLAGS] -- PROG [ARGS]...)"
            ))
        }
    };
    let prepared = RunSpec::new(program, command.collect())
        .entrypoint(entrypoint)
        .name(args.name)
        .hostname(args.hostname)
        .user(args.user)
        .time(time)
        .env(env)
        .workdir(args.workdir)
        .root(args.root)
        .image(args.image)
        .pull(args.pull.into(), pull)
        .volumes(args.volume)
        .ports(args.publish)
        .read_only(args.read_only)
        .allow_bypass(args.allow_bypass)
        .backstop_all(args.backstop == BackstopMode::All)
        .network_host(args.network == NetworkMode::Host)
        .env_host(args.env_host)
        .remove_on_exit(args.rm)
        .peers(peers)
        .remote_peers(remote_peers)
        .prepare(&host)
        .map_err(name_the_flag)?;
    log::debug!(
        "capsule {} in {}",
        prepared.name(),
        prepared.state_dir().display()
    );
    if args.detach {
        return detach(prepared, args.restart.into(), args.rm);
    }
    Ok(prepared.run()?)
}

/// `capsule run -d`: the capsule's supervisor goes on in the background, as `capsule
/// up -d`'s does; the name is printed once the program has started.
fn detach(prepared: Prepared, restart: Restart, remove: bool) -> anyhow::Result<Termination> {
    let name = prepared.name().to_string();
    let plan = up::Plan::single(prepared, restart);
    let settings = up::Settings {
        timeout: Duration::from_secs(10),
        exit_code_from: None,
        foreground: false,
        colours: false,
        prefix: false,
    };
    match up::detach()? {
        Detached::Caller(waiter) => {
            waiter.wait()?;
            let mut out = std::io::stdout().lock();
            // The capsule runs whether or not anybody reads its name.
            let _ = writeln!(out, "{name}").and_then(|()| out.flush());
            Ok(Termination::Exited(0))
        }
        Detached::Supervisor(mut notifier) => {
            let outcome = match up::supervise(plan, settings, Some(&mut notifier)) {
                Ok(outcome) => outcome,
                Err(e) => {
                    notifier.fail(&e.to_string());
                    return Err(e.into());
                }
            };
            if remove {
                let home = manage::current_home()?;
                manage::rm::rm(&home, &name, false)?;
            }
            Ok(outcome
                .ends
                .first()
                .and_then(|(_, end)| *end)
                .unwrap_or(Termination::Exited(0)))
        }
    }
}
