//! `capsule run`: from validated settings to a supervised program.
//!
//! Two steps, so that bad input never leaves anything behind:
//! 1. [`RunSpec::prepare`] checks everything that can be checked without writing: the
//!    state home, the name and whether that capsule already runs, `--root` and the
//!    volumes, the user, the working directory, the shim, the program, every value
//!    that goes into the config file.
//! 2. [`Prepared::run`] creates (or reuses) the capsule's directory, writes `config`,
//!    starts the program, writes `pid`, supervises, then writes `exit` or, with
//!    `remove`, deletes the directory (also when a step after its creation fails).
//!
//! With a root ([`RunSpec::root`]) the program, the `PATH` search, `-w` and the user
//! database are looked for inside the capsule ([`crate::view`]), and the program starts
//! in the capsule's `/` unless `-w` says otherwise. Every capsule gets a private upper
//! layer, `upper/` in its state directory, with or without a root.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use capsule_config::net::RemotePeer;
use capsule_config::{
    check_hostname, config_value, keys, Config, ConfigError, FsConfig, Identity, LogLevel,
    NetConfig, PortMap, UserDb, Volume,
};
use log::{info, warn};

use crate::envfile::{EnvEntry, Environment};
use crate::given::Given;
use crate::landlock::{self, Backstop, BackstopError, HostLoader, Policy};
use crate::launch::{self, BlockedSignals, Launch, LaunchError, Termination};
use crate::program::{self, LookupError};
use crate::shim::{self, ShimError};
use crate::state::{self, CapsuleDir, Home, StateError};
use crate::view::{self, Resolved, RootError, View, VolumeError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Backstop(#[from] BackstopError),
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    /// `--root`.
    #[error(transparent)]
    Root(#[from] RootError),
    /// A `-v` volume.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// A user spec ([`RunSpec::user`]) that does not resolve.
    #[error("{spec:?}: {reason}")]
    User { spec: String, reason: String },
    /// A `CAPSULE_LOG`/`CAPSULE_LOG_FILE` of the loader's environment that is unusable.
    #[error(transparent)]
    Setting(#[from] ConfigError),
    #[error("cannot determine the current directory: {0}")]
    NoCwd(String),
    /// `--image REF` (or `image =` in a manifest) that cannot be used.
    #[error("--image {reference}: {reason}")]
    Image { reference: String, reason: String },
    /// Peers (`capsule up`, `--peers-from-slurm`) of a capsule on the host's network.
    #[error("--network host: a capsule on the host's network has no peers by name (drop --peers-from-slurm, or reach the others at their host addresses)")]
    HostNetworkPeers,
    /// A `-p` port spec, or two specs publishing the same port.
    #[error("-p {spec}: {reason}")]
    Port { spec: String, reason: String },
    /// A `CAPSULE_*` setting or `LD_PRELOAD` given for the program's environment.
    #[error("{key:?} given with -e, --env-file or env: {reason}")]
    ReservedEnv { key: String, reason: &'static str },
    /// A NUL byte in the program or an argument (no `exec` can carry one).
    #[error("{what} {text:?}: contains a NUL byte, which no program can be given")]
    Nul { what: &'static str, text: String },
    /// The program's arguments and environment exceed what `exec` takes.
    #[error("the program's arguments and environment take {need} bytes, more than exec accepts ({limit})")]
    TooBig { need: usize, limit: usize },
}

/// Refuses environment entries that would change the capsule itself: a `CAPSULE_*`
/// name (the capsule's settings come from its flags and its config file only) and
/// `LD_PRELOAD` (the capsule's preload list is the shim's own; a library given here
/// would be a host path loaded into every process of the capsule).
pub fn check_env_entries(entries: &[EnvEntry]) -> Result<(), RunError> {
    for entry in entries {
        let key = entry.key().to_string_lossy();
        let reason = if key.starts_with("CAPSULE_") {
            "capsule settings come from the capsule's flags, not from the program's environment"
        } else if key == "LD_PRELOAD" {
            "the capsule's preload list is its own; put the library in the capsule and load it from the program"
        } else {
            continue;
        };
        return Err(RunError::ReservedEnv {
            key: key.into_owned(),
            reason,
        });
    }
    Ok(())
}

/// Refuses a NUL byte in the program or its arguments, and arguments and environment
/// larger than `exec` takes (`E2BIG`), before anything is created.
fn check_exec_size(launch: &Launch) -> Result<(), RunError> {
    use std::os::unix::ffi::OsStrExt;
    let pointer = std::mem::size_of::<usize>();
    let mut need = 0usize;
    for (what, text) in std::iter::once(("program", launch.arg0.as_os_str()))
        .chain(launch.args.iter().map(|a| ("argument", a.as_os_str())))
    {
        if text.as_bytes().contains(&0) {
            return Err(RunError::Nul {
                what,
                text: text.to_string_lossy().into_owned(),
            });
        }
        need += text.len() + 1 + pointer;
    }
    for (key, value) in launch.env.iter() {
        if key.as_bytes().contains(&0) || value.as_bytes().contains(&0) {
            return Err(RunError::Nul {
                what: "environment variable",
                text: key.to_string_lossy().into_owned(),
            });
        }
        need += key.len() + value.len() + 2 + pointer;
    }
    // The loader adds CAPSULE_CONFIG and LD_PRELOAD at the start: a page is plenty.
    need += 4096;
    // SAFETY: sysconf has no memory effects.
    let limit = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if need > limit {
        return Err(RunError::TooBig { need, limit });
    }
    Ok(())
}

/// Why a working directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    #[error("{}: no such directory", .0.display())]
    Missing(PathBuf),
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: {}", .path.display(), crate::describe_io(.error))]
    Inaccessible { path: PathBuf, error: io::Error },
    /// With a root, the working directory is a capsule path, and must be absolute.
    #[error("{}: with --root, the working directory is a path inside the capsule and must be absolute", .0.display())]
    Relative(PathBuf),
}

/// Checks that `dir` is an existing directory; returns it absolute (from `cwd`).
pub fn check_workdir(dir: &Path, cwd: Option<&Path>) -> Result<PathBuf, WorkDirError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(WorkDirError::NotADirectory(dir.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(WorkDirError::Missing(dir.to_path_buf()))
        }
        Err(error) => {
            return Err(WorkDirError::Inaccessible {
                path: dir.to_path_buf(),
                error,
            })
        }
    }
    Ok(match cwd {
        Some(cwd) if dir.is_relative() => cwd.join(dir),
        _ => dir.to_path_buf(),
    })
}

/// The host path of capsule path `path` when it lies in one of `volumes` (the longest
/// binding wins, as in the shim).
fn volume_host_path(volumes: &[Volume], path: &Path) -> Option<PathBuf> {
    volumes
        .iter()
        .filter_map(|v| {
            let rest = path.strip_prefix(&v.path).ok()?;
            Some((v.path.len(), Path::new(&v.host).join(rest)))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, host)| host)
}

/// Checks a working directory inside a capsule: `dir` is an absolute capsule path that
/// must resolve to a directory in `view`; returns it resolved (capsule and host paths).
pub fn check_capsule_workdir(dir: &Path, view: &View) -> Result<Resolved, WorkDirError> {
    if dir.is_relative() {
        return Err(WorkDirError::Relative(dir.to_path_buf()));
    }
    match view.resolve(dir) {
        Ok(found) if found.is_dir => Ok(found),
        Ok(_) => Err(WorkDirError::NotADirectory(dir.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(WorkDirError::Missing(dir.to_path_buf()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            Err(WorkDirError::NotADirectory(dir.to_path_buf()))
        }
        Err(error) => Err(WorkDirError::Inaccessible {
            path: dir.to_path_buf(),
            error,
        }),
    }
}

/// The capsule's clock: a fixed offset, or an instant that "now" should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSetting {
    /// Nanoseconds added to the real time.
    Offset(i64),
    /// Nanoseconds since the epoch that the program's "now" is at launch.
    At(i64),
}

impl TimeSetting {
    /// The fixed offset all processes of the capsule use, given the real time now.
    pub fn offset_ns(self, now_ns: i64) -> i64 {
        match self {
            TimeSetting::Offset(ns) => ns,
            TimeSetting::At(at) => at.saturating_sub(now_ns),
        }
    }
}

/// What the loader knows about its own process: environment, executable, directory.
#[derive(Debug, Clone)]
pub struct Host {
    pub env: Environment,
    /// The running `capsule` executable, or why it is unknown.
    pub exe: Result<PathBuf, String>,
    pub cwd: Option<PathBuf>,
}

impl Host {
    pub fn current() -> Host {
        Host {
            env: Environment::from_vars(std::env::vars_os()),
            exe: std::env::current_exe().map_err(|e| e.to_string()),
            cwd: std::env::current_dir().ok(),
        }
    }
}

/// The real time, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// A `capsule run`, built up from validated settings.
#[derive(Debug, Clone)]
pub struct RunSpec {
    program: OsString,
    args: Vec<OsString>,
    name: Option<String>,
    hostname: Option<String>,
    identity: Option<Identity>,
    user: Option<String>,
    time: Option<TimeSetting>,
    env: Vec<EnvEntry>,
    workdir: Option<PathBuf>,
    root: Option<PathBuf>,
    image: Option<String>,
    /// When and how an image the store lacks is pulled (`--pull`, `--tls-verify`).
    pull: (
        crate::image::registry::pull::Policy,
        crate::image::registry::Options,
    ),
    entrypoint: Option<OsString>,
    volumes: Vec<Given<Volume>>,
    ports: Vec<Given<PortMap>>,
    peers: Vec<String>,
    remote_peers: Vec<RemotePeer>,
    read_only: bool,
    allow_bypass: bool,
    backstop_all: bool,
    env_host: bool,
    network_host: bool,
    remove: bool,
}

/// The host's name, which a capsule without `--hostname` also has.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|n| n.trim_end().to_string())
        .unwrap_or_default()
}

/// `PATH` of a `--root`/`--image` capsule whose image sets none: docker's default.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl RunSpec {
    pub fn new(program: impl Into<OsString>, args: Vec<OsString>) -> RunSpec {
        RunSpec {
            program: program.into(),
            args,
            name: None,
            hostname: None,
            identity: None,
            user: None,
            time: None,
            env: Vec::new(),
            workdir: None,
            root: None,
            image: None,
            pull: Default::default(),
            entrypoint: None,
            volumes: Vec::new(),
            ports: Vec::new(),
            peers: Vec::new(),
            remote_peers: Vec::new(),
            read_only: false,
            allow_bypass: false,
            backstop_all: false,
            env_host: false,
            network_host: false,
            remove: false,
        }
    }

    /// With `--root`/`--image`: start from the loader's whole environment rather than
    /// docker's clean one (host-root capsules always do).
    pub fn env_host(mut self, env_host: bool) -> Self {
        self.env_host = env_host;
        self
    }

    pub fn name(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }

    pub fn hostname(mut self, hostname: Option<String>) -> Self {
        self.hostname = hostname;
        self
    }

    /// An identity already resolved; [`RunSpec::user`] wins over it.
    pub fn identity(mut self, identity: Option<Identity>) -> Self {
        self.identity = identity;
        self
    }

    /// A user spec as `docker run --user` takes it (`NAME`, `UID`, `UID:GID`,
    /// `NAME:GROUP`), resolved in the capsule's `/etc/passwd` and `/etc/group`: the
    /// root's (upper layer first) with [`RunSpec::root`], else the host's.
    pub fn user(mut self, spec: Option<String>) -> Self {
        self.user = spec;
        self
    }

    pub fn time(mut self, time: Option<TimeSetting>) -> Self {
        self.time = time;
        self
    }

    /// Environment settings, applied in order over the loader's environment (env-file
    /// entries first, then `-e`, so that `-e` wins).
    pub fn env(mut self, entries: impl IntoIterator<Item = EnvEntry>) -> Self {
        self.env.extend(entries);
        self
    }

    /// Where the program starts. Without a root a host directory (relative: from the
    /// loader's); with one, an absolute capsule path.
    pub fn workdir(mut self, dir: Option<PathBuf>) -> Self {
        self.workdir = dir;
        self
    }

    /// The capsule's `/`: an existing host directory (relative: from the loader's
    /// directory), the read-only lower layer under the capsule's upper layer.
    pub fn root(mut self, dir: Option<PathBuf>) -> Self {
        self.root = dir;
        self
    }

    /// An imported image whose layers are the capsule's read-only lower layers.
    pub fn image(mut self, reference: Option<String>) -> Self {
        self.image = reference;
        self
    }

    /// With an image: pull it from its registry as `policy` says (default: when the
    /// store does not have it, as `docker run`).
    pub fn pull(
        mut self,
        policy: crate::image::registry::pull::Policy,
        options: crate::image::registry::Options,
    ) -> Self {
        self.pull = (policy, options);
        self
    }

    /// `--entrypoint`: replaces the image's `Entrypoint` and drops its `Cmd`, as
    /// `docker run --entrypoint` does (an empty one leaves only the given program).
    /// Without an image, the caller puts it in front of the program itself.
    pub fn entrypoint(mut self, entrypoint: Option<OsString>) -> Self {
        self.entrypoint = entrypoint;
        self
    }

    /// Bind volumes, `HOST:PATH[:ro|:rw]` each, as `docker run -v` takes them (a spec
    /// that does not parse is refused by [`RunSpec::prepare`]).
    pub fn volumes(mut self, specs: impl IntoIterator<Item = impl Into<Given<Volume>>>) -> Self {
        self.volumes.extend(specs.into_iter().map(Into::into));
        self
    }

    /// Published ports, `HOSTPORT:PORT[/tcp|/udp]` or `PORT[/proto]` each, as
    /// `docker run -p` takes them (a spec that does not parse is refused by
    /// [`RunSpec::prepare`]).
    pub fn ports(mut self, specs: impl IntoIterator<Item = impl Into<Given<PortMap>>>) -> Self {
        self.ports.extend(specs.into_iter().map(Into::into));
        self
    }

    /// The names of the capsules started together with this one (itself included),
    /// in one order shared by all: each reaches the others by name.
    pub fn peers(mut self, names: Vec<String>) -> Self {
        self.peers = names;
        self
    }

    /// Those of the peers that run on another node, reached at its address and the
    /// host ports they publish there (`--peers-from-slurm`).
    pub fn remote_peers(mut self, remote: Vec<RemotePeer>) -> Self {
        self.remote_peers = remote;
        self
    }

    /// Makes the capsule's whole file system read-only, except its volumes.
    /// `--network host`: the program uses the host's network as it is (its ports,
    /// names and abstract sockets); no ports are published and no peers named.
    pub fn network_host(mut self, host: bool) -> Self {
        self.network_host = host;
        self
    }

    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Static programs run even where the system-call backstop is unavailable.
    pub fn allow_bypass(mut self, allow: bool) -> Self {
        self.allow_bypass = allow;
        self
    }

    /// Every program under the system-call backstop, dynamic ones without the shim.
    pub fn backstop_all(mut self, all: bool) -> Self {
        self.backstop_all = all;
        self
    }

    pub fn remove_on_exit(mut self, remove: bool) -> Self {
        self.remove = remove;
        self
    }

    /// Checks everything; creates nothing. Each setting has its own check below, run in
    /// this order: the first refusal is the one reported.
    pub fn prepare(mut self, host: &Host) -> Result<Prepared, RunError> {
        let cwd = host.cwd.as_deref();
        let home = Home::resolve(|key| host.env.get(key).map(OsStr::to_os_string), cwd)?;
        check_env_entries(&self.env)?;
        let image_id = self.apply_image(&home)?;
        let name = self.checked_name(&home)?;
        let state_dir = config_value(keys::STATE_DIR, home.capsule_dir(&name).as_os_str())?;
        let log = log_level(host)?;
        let log_file = log_file(host)?;
        self.check_hostname()?;
        let (fs_config, view) = self.file_system(&home, &name, cwd)?;
        let identity = self.checked_identity(view.as_ref())?;
        let (workdir, pwd) = self.start_dir(view.as_ref(), &fs_config.volumes, cwd)?;
        let (env, ignored) =
            self.program_env(host, view.as_ref(), identity.as_ref(), pwd.as_deref());
        let shim = shim::locate(host.env.get(shim::SHIM_VAR), host.exe.clone(), cwd)?;
        let executable =
            self.executable(view.as_ref(), &env, pwd.as_deref(), workdir.as_deref(), cwd)?;
        let shim = shim::for_program(&shim, host.env.get(shim::MUSL_SHIM_VAR), &executable)?;
        let net = self.network()?;
        let launch = Launch {
            executable,
            arg0: self.program,
            args: self.args,
            env,
            cwd: workdir,
            backstop_all: self.backstop_all,
        };
        check_exec_size(&launch)?;
        home.check_not_running(&name)?;

        Ok(Prepared {
            home,
            config: Config {
                name: Some(name.clone()),
                hostname: self.hostname,
                domainname: None,
                identity,
                time_offset_ns: None,
                state_dir: Some(state_dir),
                log,
                log_file,
                fs: fs_config,
                net,
                allow_bypass: self.allow_bypass,
                backstop_all: self.backstop_all,
            },
            name,
            time: self.time,
            shim,
            launch,
            remove: self.remove,
            ignored,
            image_id,
            landlock: host.env.get(landlock::SETTING).map(OsStr::to_os_string),
            loader_config: host.env.get(keys::CONFIG).map(OsStr::to_os_string),
        })
    }

    /// `--hostname`: a name `sethostname(2)` takes and the config file can carry.
    fn check_hostname(&self) -> Result<(), ConfigError> {
        let Some(name) = &self.hostname else {
            return Ok(());
        };
        check_hostname(name).map_err(|reason| ConfigError {
            key: keys::HOSTNAME.into(),
            value: name.to_string(),
            reason,
        })
    }

    /// The network: on the host's (nothing published, no peers by name), or the
    /// capsule's own, with its ports checked and its peers named.
    fn network(&mut self) -> Result<NetConfig, RunError> {
        if self.network_host {
            if let Some(spec) = self.ports.first() {
                return Err(RunError::Port {
                    spec: spec.text().to_string(),
                    reason: "--network host uses the host's ports: there is nothing to publish"
                        .into(),
                });
            }
            if !self.peers.is_empty() {
                return Err(RunError::HostNetworkPeers);
            }
        }
        let mut net = check_ports(&self.ports, std::mem::take(&mut self.peers))?;
        net.remote = std::mem::take(&mut self.remote_peers);
        net.host = self.network_host;
        Ok(net)
    }

    /// The capsule's name: the one given, checked, else one no capsule has.
    fn checked_name(&self, home: &Home) -> Result<String, RunError> {
        match &self.name {
            Some(name) => {
                state::validate_name(name)?;
                Ok(name.clone())
            }
            None => Ok(home.unused_name()),
        }
    }

    /// The file system: the root and the volumes checked, the upper layer named (it is
    /// created with the capsule's directory); with a root, the view that the program,
    /// the working directory and the user are looked for in.
    fn file_system(
        &self,
        home: &Home,
        name: &str,
        cwd: Option<&Path>,
    ) -> Result<(FsConfig, Option<View>), RunError> {
        let root = match &self.root {
            Some(dir) => Some(view::check_root(dir, cwd)?),
            None => None,
        };
        let volumes = view::check_volumes(&self.volumes)?;
        let upper = home.upper_dir(name);
        let fs_config = FsConfig {
            root: root
                .as_ref()
                .map(|r| config_value(keys::ROOT, r.as_os_str()))
                .transpose()?,
            upper: Some(config_value(keys::UPPER, upper.as_os_str())?),
            volumes: volumes.clone(),
            read_only: self.read_only,
        };
        Ok((fs_config, root.map(|root| View::new(root, upper, volumes))))
    }

    /// The capsule's identity: the user spec resolved in the capsule's user database,
    /// else the identity given.
    fn checked_identity(&self, view: Option<&View>) -> Result<Option<Identity>, RunError> {
        let Some(spec) = &self.user else {
            return Ok(self.identity.clone());
        };
        user_db(view)
            .resolve(spec)
            .map(Some)
            .map_err(|reason| RunError::User {
                spec: spec.clone(),
                reason,
            })
    }

    /// Where the program starts: a host directory, and what `$PWD` says (a capsule
    /// path with a root).
    fn start_dir(
        &self,
        view: Option<&View>,
        volumes: &[Volume],
        cwd: Option<&Path>,
    ) -> Result<(Option<PathBuf>, Option<PathBuf>), RunError> {
        Ok(match (view, &self.workdir) {
            (Some(view), Some(dir)) => {
                let found = check_capsule_workdir(dir, view)?;
                (Some(found.host), Some(found.capsule))
            }
            (Some(view), None) => (Some(view.root().to_path_buf()), Some(PathBuf::from("/"))),
            (None, Some(dir)) => {
                // Over the host's root, a directory inside a volume is the volume's.
                let capsule = match cwd {
                    Some(cwd) if dir.is_relative() => cwd.join(dir),
                    _ => dir.clone(),
                };
                match volume_host_path(volumes, &capsule) {
                    Some(host) => {
                        check_workdir(&host, None)
                            .map_err(|_| WorkDirError::Missing(capsule.clone()))?;
                        (Some(host), Some(capsule))
                    }
                    None => {
                        let dir = check_workdir(dir, cwd)?;
                        (Some(dir.clone()), Some(dir))
                    }
                }
            }
            (None, None) => (None, None),
        })
    }

    /// The program's environment, and the capsule settings given for it that it does
    /// not get. A capsule of the host's root continues the caller's environment, as any
    /// command does; one of a root or image gets what docker gives: the image's Env,
    /// --env-file, -e (a bare `-e NAME` copies the caller's), PATH, TERM on a terminal,
    /// and no other variable of the host.
    fn program_env(
        &self,
        host: &Host,
        view: Option<&View>,
        identity: Option<&Identity>,
        pwd: Option<&Path>,
    ) -> (Environment, Vec<&'static str>) {
        let clean = view.is_some() && !self.env_host;
        let mut env = if clean {
            clean_env(host)
        } else {
            host.env.clone()
        };
        env.apply(&self.env, &host.env);
        let given = |key: &str| self.env.iter().any(|e| e.key() == key);
        // The loader's own settings are not the program's, unless it asks for them.
        for key in [state::HOME_VAR, shim::SHIM_VAR, shim::MUSL_SHIM_VAR] {
            if !given(key) {
                env.remove(key);
            }
        }
        if clean || self.hostname.is_some() {
            let hostname = self.hostname.clone().unwrap_or_else(host_name);
            if !given("HOSTNAME") {
                env.set("HOSTNAME", hostname);
            }
        }
        if let Some(identity) = identity {
            if (clean || self.user.is_some()) && !given("HOME") {
                env.set("HOME", user_db(view).home(identity.uid[0]));
            }
        } else if clean && !given("HOME") {
            env.set("HOME", "/root");
        }
        let mut ignored = Vec::new();
        for key in keys::ALL {
            if env.remove(key).is_some() && given(key) {
                ignored.push(*key);
            }
        }
        if let Some(pwd) = pwd {
            // Keep $PWD truthful for shells and programs that trust it.
            env.set("PWD", pwd);
        }
        (env, ignored)
    }

    /// The program, found as a shell would: inside the capsule with a root (from `pwd`),
    /// else on the host (from the working directory).
    fn executable(
        &self,
        view: Option<&View>,
        env: &Environment,
        pwd: Option<&Path>,
        workdir: Option<&Path>,
        cwd: Option<&Path>,
    ) -> Result<PathBuf, RunError> {
        if let Some(view) = view {
            let start_dir = pwd.unwrap_or(Path::new("/"));
            return Ok(program::find_program_in(
                &self.program,
                env.get("PATH"),
                start_dir,
                view,
            )?);
        }
        let start_dir = match (workdir, cwd) {
            (Some(dir), _) => dir,
            (None, Some(cwd)) => cwd,
            (None, None) => {
                return Err(RunError::NoCwd(
                    std::env::current_dir()
                        .err()
                        .map_or_else(|| "unknown".into(), |e| e.to_string()),
                ))
            }
        };
        Ok(program::find_program(
            &self.program,
            env.get("PATH"),
            start_dir,
        )?)
    }

    /// With an image ([`RunSpec::image`]): its root becomes the capsule's lower layer,
    /// and its configuration supplies what the run leaves unsaid, as `docker run` does:
    /// the program (`Entrypoint`, then the given program and arguments or else `Cmd`;
    /// an empty program means none was given), `Env` (under `-e`), `WorkingDir`,
    /// `User` (root when the image names none), `ExposedPorts` (published on free host
    /// ports unless `-p` publishes them). Returns the image id.
    fn apply_image(&mut self, home: &Home) -> Result<Option<String>, RunError> {
        let Some(reference) = self.image.clone() else {
            return Ok(None);
        };
        let bad = |reason: String| RunError::Image {
            reference: reference.clone(),
            reason,
        };
        if self.root.is_some() {
            return Err(bad("cannot be combined with --root".into()));
        }
        let store = crate::image::store::Store::new(home.root());
        let (policy, options) = &self.pull;
        crate::image::registry::pull::ensure(&store, &reference, *policy, options)
            .map_err(|e| bad(format!("pull: {e}")))?;
        let image = crate::image::run_defaults(home.root(), &reference, options.platform.as_ref())
            .map_err(|e| bad(e.to_string()))?;
        let mut argv: Vec<OsString> = match &self.entrypoint {
            Some(given) if given.is_empty() => Vec::new(),
            Some(given) => vec![given.clone()],
            None => image.entrypoint.iter().map(OsString::from).collect(),
        };
        if self.program.is_empty() {
            // An entrypoint given on the command line drops the image's Cmd too.
            if self.entrypoint.is_none() {
                argv.extend(image.cmd.iter().map(OsString::from));
            }
        } else {
            argv.push(std::mem::take(&mut self.program));
            argv.append(&mut self.args);
        }
        if argv.is_empty() {
            return Err(bad(if self.entrypoint.is_some() {
                "--entrypoint \"\" and no program: name a program".into()
            } else {
                "the image has no Entrypoint or Cmd: name a program".into()
            }));
        }
        self.program = argv.remove(0);
        self.args = argv;
        self.root = Some(image.root.clone());
        if self.workdir.is_none() {
            self.workdir = image.workdir.clone();
        }
        if self.user.is_none() && self.identity.is_none() {
            self.user = Some(image.user.clone().unwrap_or_else(|| "0".into()));
        }
        let mut env: Vec<EnvEntry> = image
            .env
            .iter()
            .map(|(k, v)| EnvEntry::Set(k.into(), v.into()))
            .collect();
        env.append(&mut self.env);
        self.env = env;
        // On the host's network the program binds the host's ports itself.
        let exposed_ports = if self.network_host {
            &[][..]
        } else {
            &image.exposed_ports[..]
        };
        for spec in exposed_ports {
            let exposed =
                PortMap::parse(spec).map_err(|e| bad(format!("ExposedPorts {spec}: {e}")))?;
            let published = self
                .ports
                .iter()
                .filter_map(|p| p.value().ok())
                .any(|p| p.port == exposed.port && p.proto == exposed.proto);
            if !published {
                self.ports.push(Given::parsed(spec.clone(), exposed));
            }
        }
        Ok(Some(image.id))
    }
}

/// `CAPSULE_LOG` of the loader's environment: the shim's log level (off when unset).
fn log_level(host: &Host) -> Result<LogLevel, ConfigError> {
    let Some(value) = host.env.get(keys::LOG) else {
        return Ok(LogLevel::Off);
    };
    let text = value.to_string_lossy();
    LogLevel::parse(&text).ok_or_else(|| ConfigError {
        key: keys::LOG.into(),
        value: text.to_string(),
        reason: "expected off, error, warn, info, debug or trace".into(),
    })
}

/// `CAPSULE_LOG_FILE` of the loader's environment, made absolute from its directory.
fn log_file(host: &Host) -> Result<Option<String>, ConfigError> {
    let Some(value) = host.env.get(keys::LOG_FILE).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let path = Path::new(value);
    let path = match host.cwd.as_deref() {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    config_value(keys::LOG_FILE, path.as_os_str()).map(Some)
}

/// The user database of the capsule: its root's (upper layer first), else the host's.
fn user_db(view: Option<&View>) -> UserDb {
    match view {
        Some(view) => view.user_db(),
        None => UserDb::load(""),
    }
}

/// What a capsule of a root or image starts from, as docker gives it: docker's `PATH`,
/// `TERM` on a terminal, and what a Slurm job step hands its task.
fn clean_env(host: &Host) -> Environment {
    let mut env = Environment::new();
    env.set("PATH", DEFAULT_PATH);
    if let Some(term) = host.env.get("TERM") {
        // SAFETY: isatty only inspects descriptor 0.
        if unsafe { libc::isatty(0) } == 1 {
            env.set("TERM", term);
        }
    }
    // What a Slurm job step, its PMI/PMIx and MPI hand the task: the program is still
    // that task.
    for (key, value) in host.env.iter() {
        if crate::slurm::passes_into_capsule(key) {
            env.set(key, value);
        }
    }
    env
}

/// Parses `-p` specs; refuses a port published twice.
fn check_ports(specs: &[Given<PortMap>], peers: Vec<String>) -> Result<NetConfig, RunError> {
    let mut ports: Vec<PortMap> = Vec::new();
    for spec in specs {
        let bad = |reason: String| RunError::Port {
            spec: spec.text().to_string(),
            reason,
        };
        let map = *spec.value().map_err(|reason| bad(reason.to_string()))?;
        if let Some(other) = ports.iter().find(|o| o.clashes_with(&map)) {
            return Err(bad(format!("publishes the same port as {other}")));
        }
        ports.push(map);
    }
    // Only once every spec is well-formed: a typo is reported as such.
    for (spec, map) in specs.iter().zip(&ports) {
        check_host_port_free(map).map_err(|reason| RunError::Port {
            spec: spec.text().to_string(),
            reason,
        })?;
    }
    Ok(NetConfig {
        ports,
        peers,
        ..NetConfig::default()
    })
}

/// Refuses a published host port that another program already holds, as `docker run`
/// does before the container starts: a bind of it, as a server binds (with
/// `SO_REUSEADDR`, so that connections still in `TIME_WAIT` do not count), must
/// succeed. The probe socket is closed at once.
pub fn check_host_port_free(map: &PortMap) -> Result<(), String> {
    let Some(port) = map.host else {
        return Ok(());
    };
    let kind = match map.proto {
        capsule_config::net::Proto::Tcp => libc::SOCK_STREAM,
        capsule_config::net::Proto::Udp => libc::SOCK_DGRAM,
    };
    // SAFETY: socket has no memory-safety preconditions; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        // No IPv4 sockets at all: nothing to probe, the program will see.
        return Ok(());
    }
    let one: libc::c_int = 1;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(map.host_ip.unwrap_or([0; 4])),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `one` and `addr` live across the calls and the lengths are theirs; `fd`
    // is the socket made above, closed exactly once.
    let (rc, errno) = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let rc = libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let errno = io::Error::last_os_error();
        libc::close(fd);
        (rc, errno)
    };
    if rc == 0 {
        return Ok(());
    }
    let what = format!(
        "host port {}:{port}/{}",
        map.host_ip_text(),
        map.proto.as_str()
    );
    Err(match errno.raw_os_error() {
        Some(libc::EADDRINUSE) => format!("{what} is already in use"),
        Some(libc::EADDRNOTAVAIL) => format!("{what}: no such address on this host"),
        Some(libc::EACCES) => {
            format!("{what}: permission denied (ports below 1024 need privileges)")
        }
        _ => format!("{what}: {}", crate::describe_io(&errno)),
    })
}

/// A checked `capsule run`, ready to create its state and start.
#[derive(Debug)]
pub struct Prepared {
    home: Home,
    name: String,
    config: Config,
    time: Option<TimeSetting>,
    shim: PathBuf,
    launch: Launch,
    remove: bool,
    ignored: Vec<&'static str>,
    /// The image the capsule runs (`--image`), recorded for `capsule commit`.
    image_id: Option<String>,
    /// The loader's `CAPSULE_LANDLOCK` (never the program's `-e`).
    landlock: Option<OsString>,
    /// The loader's own `CAPSULE_CONFIG`: set when it runs inside a capsule.
    loader_config: Option<OsString>,
}

impl Prepared {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home.capsule_dir(&self.name)
    }

    /// The configuration the program will get (its time offset is fixed at launch).
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// Creates the capsule's state, runs the program to its end, records how it ended.
    pub fn run(self) -> Result<Termination, RunError> {
        let dir = self.open_dir()?;
        let remove = self.remove;
        match self.run_in(&dir) {
            Ok(end) => {
                if remove {
                    if let Err(e) = dir.remove() {
                        warn!("--rm: {e}");
                    }
                } else if let Err(e) = dir.write_exit(&end.record()) {
                    warn!("{e}");
                }
                Ok(end)
            }
            Err(e) => {
                // A directory this run made goes too: a refused start leaves nothing.
                let gone = if dir.created() {
                    dir.discard()
                } else if remove {
                    dir.remove()
                } else {
                    Ok(())
                };
                if let Err(e) = gone {
                    warn!("{e}");
                }
                Err(e)
            }
        }
    }

    fn run_in(&self, dir: &CapsuleDir) -> Result<Termination, RunError> {
        dir.clear_stop()?;
        let signals = BlockedSignals::block()?;
        let mut child = self.start(dir, &signals, |_| {})?;
        let end = launch::supervise(&mut child, &signals)?;
        info!("capsule {}: {}", dir.name(), end.record());
        Ok(end)
    }

    /// Creates (or reuses) the capsule's directory and takes its lock, held while the
    /// returned value lives.
    pub fn open_dir(&self) -> Result<CapsuleDir, RunError> {
        Ok(self.home.open_capsule(&self.name)?)
    }

    /// Starts the program in `dir` (from [`Prepared::open_dir`]) and returns at once:
    /// forgets the previous run's `pid`, `exit` and ports, writes `config` (the time
    /// offset fixed now), `/etc/hostname`, `command`, then `pid`. `configure` adjusts
    /// the command before it is spawned. A supervisor calls it again to restart.
    pub fn start(
        &self,
        dir: &CapsuleDir,
        signals: &BlockedSignals,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Result<std::process::Child, RunError> {
        dir.clear_run()?;
        let mut config = self.config.clone();
        config.time_offset_ns = self.time.map(|t| t.offset_ns(now_ns()));
        dir.write_config(&config.to_file())?;
        if let Some(id) = &self.image_id {
            crate::image::record_capsule_image(dir.path(), id).map_err(|e| RunError::Image {
                reference: id.clone(),
                reason: crate::describe_io(&e),
            })?;
        }
        if let Some(hostname) = &config.hostname {
            dir.write_hostname(hostname)?;
        }
        if !config.net.peers.is_empty() && !config.net.host {
            let lower = Path::new(config.fs.root.as_deref().unwrap_or("/")).join("etc/hosts");
            let base = std::fs::read_to_string(&lower)
                .unwrap_or_else(|_| "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_string());
            let peers: Vec<(String, [u8; 4])> = config
                .net
                .peers
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), capsule_config::net::peer_address(i)))
                .collect();
            dir.write_hosts(&base, &peers)?;
        }
        for key in &self.ignored {
            warn!("{key} given with -e/--env-file is ignored: capsule settings come from the capsule's flags");
        }

        let mut launch = self.launch.clone();
        let env = &mut launch.env;
        env.set(keys::CONFIG, dir.config_path());
        // The one setting a program may rely on: in the first process's own
        // environment too (shells and static programs read `environ` directly).
        env.set(keys::NAME, dir.name());
        let preload = shim::preload_value(&self.shim, env.get("LD_PRELOAD"));
        env.set("LD_PRELOAD", preload);

        let argv: Vec<&OsStr> = std::iter::once(launch.arg0.as_os_str())
            .chain(launch.args.iter().map(OsString::as_os_str))
            .collect();
        dir.write_command(&argv)?;

        // After the state directory is ready: rules name its files' inodes.
        let host_loader = HostLoader::of(&launch.executable);
        let governing = landlock::governing_config(&config, self.loader_config.as_deref());
        let policy = Policy::for_capsule(&governing, &self.shim, &host_loader);
        let backstop = Backstop::build(&policy, self.landlock.as_deref())?;
        let child = launch.spawn_with(signals, backstop.as_ref(), configure)?;
        info!(
            "capsule {} started {} as pid {}",
            dir.name(),
            launch.arg0.to_string_lossy(),
            child.id()
        );
        if let Err(e) = dir.write_pid(child.id()) {
            warn!("{e}");
        }
        Ok(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_at_is_an_offset_from_now() {
        assert_eq!(TimeSetting::At(1_000).offset_ns(400), 600);
        assert_eq!(TimeSetting::At(0).offset_ns(400), -400);
        assert_eq!(TimeSetting::Offset(-5).offset_ns(400), -5);
        assert_eq!(TimeSetting::At(i64::MIN).offset_ns(1), i64::MIN);
    }

    #[test]
    fn workdir_must_be_a_directory() {
        let tmp = std::env::temp_dir();
        assert_eq!(check_workdir(&tmp, None).unwrap(), tmp);
        assert_eq!(
            check_workdir(Path::new("x"), Some(Path::new("/")))
                .unwrap_err()
                .to_string(),
            "x: no such directory"
        );
        assert_eq!(
            check_workdir(Path::new("/bin/sh"), None)
                .unwrap_err()
                .to_string(),
            "/bin/sh: not a directory"
        );
        assert_eq!(
            check_workdir(Path::new("."), Some(Path::new("/work"))).unwrap(),
            Path::new("/work/.")
        );
    }

    fn host(root: &Path, shim: &Path) -> Host {
        Host {
            env: Environment::from_vars([
                ("CAPSULE_HOME".into(), root.into()),
                ("CAPSULE_SHIM".into(), shim.into()),
                ("CAPSULE_HOSTNAME".into(), "stale".into()),
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("KEEP".into(), "1".into()),
            ]),
            exe: Err("test".into()),
            cwd: Some(PathBuf::from("/")),
        }
    }

    #[test]
    fn prepare_builds_config_and_environment_without_creating_anything() {
        let root = std::env::temp_dir().join(format!("capsule-run-test-{}", std::process::id()));
        let shim = std::env::current_exe().unwrap();
        let prepared = RunSpec::new("sh", vec!["-c".into(), "true".into()])
            .name(Some("db".into()))
            .hostname(Some("db1".into()))
            .env([EnvEntry::Set("A".into(), "1".into())])
            .time(Some(TimeSetting::Offset(7)))
            .prepare(&host(&root, &shim))
            .unwrap();
        assert!(!root.exists());
        assert_eq!(prepared.name(), "db");
        assert_eq!(prepared.state_dir(), root.join("capsules/db"));
        let config = prepared.config();
        assert_eq!(config.hostname.as_deref(), Some("db1"));
        assert_eq!(
            config.state_dir.as_deref(),
            root.join("capsules/db").to_str()
        );
        let launch = prepared.launch();
        assert_eq!(launch.arg0, "sh");
        assert!(launch.executable.is_absolute());
        assert_eq!(launch.env.get("A"), Some(OsStr::new("1")));
        assert_eq!(launch.env.get("KEEP"), Some(OsStr::new("1")));
        assert_eq!(launch.env.get("CAPSULE_HOSTNAME"), None);
        assert_eq!(launch.env.get("CAPSULE_UID"), None);
        assert!(prepared.ignored.is_empty());
        // A capsule setting or a preload given for the program is refused.
        for key in ["CAPSULE_UID", "CAPSULE_ANYTHING", "LD_PRELOAD"] {
            let err = RunSpec::new("sh", vec![])
                .env([EnvEntry::Set(key.into(), "0".into())])
                .prepare(&host(&root, &shim))
                .unwrap_err();
            assert!(matches!(err, RunError::ReservedEnv { .. }), "{err}");
        }
        let err = RunSpec::new("sh", vec!["a\0b".into()])
            .prepare(&host(&root, &shim))
            .unwrap_err();
        assert!(matches!(err, RunError::Nul { .. }), "{err}");
        let err = RunSpec::new("sh", vec!["x".repeat(3 << 20).into()])
            .prepare(&host(&root, &shim))
            .unwrap_err();
        assert!(matches!(err, RunError::TooBig { .. }), "{err}");
        assert!(!root.exists());
        // Every capsule has an upper layer, with or without a root.
        assert_eq!(
            config.fs.upper.as_deref(),
            root.join("capsules/db/upper").to_str()
        );
        assert_eq!(config.fs.root, None);
    }

    #[test]
    fn prepare_with_a_root_looks_inside_the_capsule() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = std::env::temp_dir().join(format!("capsule-run-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let home = scratch.join("home");
        let rootfs = scratch.join("rootfs");
        for dir in ["bin", "etc", "srv/app"] {
            std::fs::create_dir_all(rootfs.join(dir)).unwrap();
        }
        let prog = rootfs.join("bin/prog");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(rootfs.join("etc/passwd"), "app:x:4242:4343::/:/bin/sh\n").unwrap();
        let shim = std::env::current_exe().unwrap();
        let mut host = host(&home, &shim);
        host.env.set("PATH", "/bin");
        host.cwd = Some(scratch.clone());
        let spec = || {
            RunSpec::new("prog", vec![])
                .name(Some("r".into()))
                .root(Some("rootfs".into()))
                .volumes([format!("{}:/data:ro", rootfs.join("etc").display())])
                .read_only(true)
        };

        let prepared = spec().user(Some("app".into())).prepare(&host).unwrap();
        assert!(!home.exists());
        let fs = &prepared.config().fs;
        let rootfs = std::fs::canonicalize(&rootfs).unwrap();
        assert_eq!(fs.root.as_deref(), rootfs.to_str());
        let upper = home.join("capsules/r/upper");
        assert_eq!(fs.upper.as_deref(), upper.to_str());
        assert_eq!(fs.volumes[0].path, "/data");
        assert!(fs.volumes[0].read_only && fs.read_only);
        // The user is the capsule's, not the host's.
        assert_eq!(
            prepared.config().identity.as_ref().map(|id| id.uid),
            Some([4242; 3])
        );
        let launch = prepared.launch();
        assert_eq!(launch.executable, rootfs.join("bin/prog"));
        assert_eq!(launch.arg0, "prog");
        assert_eq!(launch.cwd.as_deref(), Some(rootfs.as_path()));
        assert_eq!(launch.env.get("PWD"), Some(OsStr::new("/")));

        let prepared = spec()
            .workdir(Some("/srv/app".into()))
            .prepare(&host)
            .unwrap();
        assert_eq!(prepared.launch().cwd, Some(rootfs.join("srv/app")));
        assert_eq!(
            prepared.launch().env.get("PWD"),
            Some(OsStr::new("/srv/app"))
        );
        // A volume is a working directory too.
        let prepared = spec().workdir(Some("/data".into())).prepare(&host).unwrap();
        assert_eq!(prepared.launch().cwd, Some(rootfs.join("etc")));

        for (dir, message) in [
            ("/nope", "/nope: no such directory"),
            ("/bin/prog", "/bin/prog: not a directory"),
            (
                "srv",
                "srv: with --root, the working directory is a path inside the capsule and must be absolute",
            ),
        ] {
            let err = spec().workdir(Some(dir.into())).prepare(&host).unwrap_err();
            assert!(matches!(err, RunError::WorkDir(_)), "{err}");
            assert_eq!(err.to_string(), message);
        }
        let err = RunSpec::new("sh", vec![])
            .root(Some(rootfs.clone()))
            .prepare(&host)
            .unwrap_err();
        assert_eq!(err.to_string(), "sh: command not found");
        let err = spec().user(Some("root".into())).prepare(&host).unwrap_err();
        assert!(matches!(err, RunError::User { .. }), "{err}");
        let err = spec()
            .root(Some("missing".into()))
            .prepare(&host)
            .unwrap_err();
        assert_eq!(err.to_string(), "missing: no such directory");
        let err = spec().volumes(["/a"]).prepare(&host).unwrap_err();
        assert!(matches!(err, RunError::Volume(_)), "{err}");
        assert!(!home.exists());
        std::fs::remove_dir_all(&scratch).unwrap();
    }

    #[test]
    fn prepare_refuses_bad_input() {
        let root = std::env::temp_dir().join(format!("capsule-run-bad-{}", std::process::id()));
        let shim = std::env::current_exe().unwrap();
        let host = host(&root, &shim);
        let err = RunSpec::new("no-such-program-xyz", vec![])
            .prepare(&host)
            .unwrap_err();
        assert!(matches!(
            err,
            RunError::Lookup(LookupError::CommandNotFound(_))
        ));
        let err = RunSpec::new("sh", vec![])
            .name(Some("a/b".into()))
            .prepare(&host)
            .unwrap_err();
        assert!(matches!(err, RunError::State(StateError::BadName { .. })));
        let err = RunSpec::new("sh", vec![])
            .hostname(Some("a\nb".into()))
            .prepare(&host)
            .unwrap_err();
        assert!(matches!(err, RunError::Setting(_)));
        let mut bad_log = host.clone();
        bad_log.env.set("CAPSULE_LOG", "loud");
        let err = RunSpec::new("sh", vec![]).prepare(&bad_log).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CAPSULE_LOG=\"loud\": expected off, error, warn, info, debug or trace"
        );
        assert!(!root.exists());
    }
}
