//! The one definition of a capsule's configuration.
//!
//! The shim reads it at load time from `CAPSULE_*` environment variables or from the
//! `CAPSULE_CONFIG` file the loader writes; the loader builds it from command-line
//! flags and writes it out. Both go through [`Config::from_vars`] and
//! [`Config::to_vars`], so a setting means the same thing wherever it comes from.
//!
//! This crate is std-only and links no hook code: it is safe for the loader to use.

mod duration;
pub mod layout;
pub mod net;
mod rfc3339;
pub mod users;

use std::ffi::OsStr;
use std::fmt;

pub use duration::{format_duration_ns, parse_duration};
pub use net::{NetConfig, PortMap, Proto};
pub use rfc3339::parse_rfc3339;

/// The environment variables (and `CAPSULE_CONFIG` file keys) a capsule is configured by.
pub mod keys {
    /// A file of `KEY=VALUE` lines with the keys below; environment variables win.
    pub const CONFIG: &str = "CAPSULE_CONFIG";
    pub const HOSTNAME: &str = "CAPSULE_HOSTNAME";
    pub const DOMAINNAME: &str = "CAPSULE_DOMAINNAME";
    /// `UID` or `RUID,EUID,SUID`.
    pub const UID: &str = "CAPSULE_UID";
    /// `GID` or `RGID,EGID,SGID`.
    pub const GID: &str = "CAPSULE_GID";
    /// Comma-separated supplementary group ids (may be empty).
    pub const GROUPS: &str = "CAPSULE_GROUPS";
    /// A user name looked up in `/etc/passwd` (and `/etc/group` for its groups).
    pub const USER: &str = "CAPSULE_USER";
    pub const TIME_OFFSET: &str = "CAPSULE_TIME_OFFSET";
    pub const TIME_AT: &str = "CAPSULE_TIME_AT";
    /// The capsule's state directory: shared state of all its processes lives there.
    pub const STATE_DIR: &str = "CAPSULE_STATE_DIR";
    pub const NAME: &str = "CAPSULE_NAME";
    pub const LOG: &str = "CAPSULE_LOG";
    pub const LOG_FILE: &str = "CAPSULE_LOG_FILE";
    /// The capsule's `/`: a host directory, the read-only lower layer (default `/`).
    pub const ROOT: &str = "CAPSULE_ROOT";
    /// The capsule's private writable upper layer (a host directory).
    pub const UPPER: &str = "CAPSULE_UPPER";
    /// Bind volumes: `HOST:PATH[:ro]` entries separated by `;`.
    pub const VOLUMES: &str = "CAPSULE_VOLUMES";
    /// `1`: the whole root is read-only except volumes.
    pub const READ_ONLY: &str = "CAPSULE_READ_ONLY";
    /// Published ports: `HOSTPORT:PORT[/tcp|/udp]` or `PORT[/proto]`, separated by `,`.
    pub const PORTS: &str = "CAPSULE_PORTS";
    /// The names of the capsules started together (this one included), separated by
    /// `,`, in the same order for each of them.
    pub const PEERS: &str = "CAPSULE_PEERS";
    /// The peers on other nodes: `NAME@IP=HOSTPORT:PORT/PROTO+...`, separated by `,`.
    pub const REMOTE_PEERS: &str = "CAPSULE_REMOTE_PEERS";
    /// `host`: the host's network, no network replica; `capsule` (the default): the
    /// capsule's own ports and names.
    pub const NETWORK: &str = "CAPSULE_NETWORK";
    /// `1`: a static program runs even where the system-call backstop cannot be
    /// installed, unseen by the capsule (`capsule run --allow-bypass`).
    pub const ALLOW_BYPASS: &str = "CAPSULE_ALLOW_BYPASS";
    /// `all`: every program of the capsule runs under the system-call backstop,
    /// dynamic ones without the shim (`capsule run --backstop all`); `static` (the
    /// default): static and Go programs only.
    pub const BACKSTOP: &str = "CAPSULE_BACKSTOP";

    /// Every key the configuration reads; a child's environment loses any stale copy
    /// of these before the current configuration is added back.
    pub const ALL: &[&str] = &[
        CONFIG,
        HOSTNAME,
        DOMAINNAME,
        UID,
        GID,
        GROUPS,
        USER,
        TIME_OFFSET,
        TIME_AT,
        STATE_DIR,
        NAME,
        LOG,
        LOG_FILE,
        ROOT,
        UPPER,
        VOLUMES,
        READ_ONLY,
        PORTS,
        PEERS,
        REMOTE_PEERS,
        NETWORK,
        ALLOW_BYPASS,
        BACKSTOP,
    ];
}

/// The longest host or domain name Linux accepts (`__NEW_UTS_LEN`).
pub const MAX_HOSTNAME_LEN: usize = 64;

/// The capsule's shared state file ([`layout::SHARED_FILE`], the shim's `Shared`): its
/// layout's magic number, and where its file-system generation counter (a
/// native-endian `u64`, bumped when the upper layer's directory structure changes)
/// lies, for the loader's `capsule cp`, which changes that structure from outside.
pub const SHARED_MAGIC: u64 = 0x6361_7073_756c_6504; // "capsule" + layout 4
pub const SHARED_FS_GENERATION_OFFSET: usize = 160;
/// The most supplementary groups a capsule identity carries.
pub const MAX_GROUPS: usize = 64;

/// Verbosity of the shim's own log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    #[default]
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn parse(text: &str) -> Option<LogLevel> {
        Some(match text.to_ascii_lowercase().as_str() {
            "" | "off" | "0" | "none" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" | "1" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// The capsule identity: real, effective and saved ids, and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: [u32; 3],
    pub gid: [u32; 3],
    pub groups: Vec<u32>,
}

impl Identity {
    /// An identity whose real, effective and saved ids are all `uid`/`gid`.
    pub fn plain(uid: u32, gid: u32, groups: Vec<u32>) -> Identity {
        Identity {
            uid: [uid; 3],
            gid: [gid; 3],
            groups,
        }
    }
}

/// Everything that makes a capsule differ from the host, as the shim applies it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub identity: Option<Identity>,
    /// Added to `CLOCK_REALTIME` and its relatives, in nanoseconds.
    pub time_offset_ns: Option<i64>,
    pub state_dir: Option<String>,
    pub log: LogLevel,
    pub log_file: Option<String>,
    pub fs: FsConfig,
    pub net: NetConfig,
    /// A static program runs unseen where the backstop cannot be installed.
    pub allow_bypass: bool,
    /// Every program runs under the system-call backstop (`CAPSULE_BACKSTOP=all`).
    pub backstop_all: bool,
}

/// A bind volume: the host file or directory `host` appears at `path` in the capsule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: String,
    pub path: String,
    pub read_only: bool,
}

impl Volume {
    /// Parses `HOST:PATH[:ro|:rw]` (`docker run -v` syntax). Both paths must be
    /// absolute; `;` is reserved as the list separator of `CAPSULE_VOLUMES`.
    pub fn parse(spec: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, path, read_only) = match parts.as_slice() {
            [host, path] => (*host, *path, false),
            [host, path, "ro"] => (*host, *path, true),
            [host, path, "rw"] => (*host, *path, false),
            [_, _, mode] => return Err(format!("unknown volume mode '{mode}' (ro or rw)")),
            [_] => return Err("expected HOST:PATH[:ro]".into()),
            _ => return Err("expected HOST:PATH[:ro] (paths cannot contain ':')".into()),
        };
        for p in [host, path] {
            if !p.starts_with('/') {
                return Err(format!("'{p}' is not an absolute path"));
            }
            if p.contains(';') {
                return Err(format!("'{p}' contains ';'"));
            }
        }
        // `/a/../../b` would be bound at whatever `..` lexically leaves: refused, as a
        // capsule path names one place without resolving anything.
        if path.split('/').any(|c| c == "..") {
            return Err(format!("'{path}': a capsule path cannot contain '..'"));
        }
        Ok(Volume {
            host: normalize(host),
            path: normalize(path),
            read_only,
        })
    }

    pub fn to_spec(&self) -> String {
        if self.read_only {
            format!("{}:{}:ro", self.host, self.path)
        } else {
            format!("{}:{}", self.host, self.path)
        }
    }
}

/// Lexically normalises an absolute path: no `.`, `..`, repeated or trailing `/`.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The file-system replica's settings; all empty means the replica is off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FsConfig {
    /// The lower layer; `None` is the host's `/`.
    pub root: Option<String>,
    pub upper: Option<String>,
    pub volumes: Vec<Volume>,
    pub read_only: bool,
}

impl FsConfig {
    pub fn is_active(&self) -> bool {
        self.root.is_some() || self.upper.is_some() || !self.volumes.is_empty() || self.read_only
    }
}

/// A setting that cannot be used: which variable (or file line), what it held, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.key, self.value, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn error(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses `N` or `R,E,S` ids.
fn parse_id_triple(key: &str, value: &str) -> Result<[u32; 3], ConfigError> {
    let ids: Vec<u32> = value
        .split(',')
        .map(|part| part.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| error(key, value, "expected a numeric id, or three as R,E,S"))?;
    match ids.as_slice() {
        [one] if *one != u32::MAX => Ok([*one; 3]),
        [r, e, s] if ![r, e, s].contains(&&u32::MAX) => Ok([*r, *e, *s]),
        _ => Err(error(
            key,
            value,
            "expected a numeric id, or three as R,E,S",
        )),
    }
}

fn parse_groups(value: &str) -> Result<Vec<u32>, ConfigError> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<u32> = value
        .split(',')
        .map(|part| part.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            error(
                keys::GROUPS,
                value,
                "expected comma-separated numeric group ids",
            )
        })?;
    if groups.len() > MAX_GROUPS {
        return Err(error(
            keys::GROUPS,
            value,
            format!("more than {MAX_GROUPS} groups"),
        ));
    }
    Ok(groups)
}

/// Whether a host or domain name of `len` bytes fits where Linux keeps it
/// (`sethostname(2)` refuses a longer one with `EINVAL`).
pub const fn hostname_fits(len: usize) -> bool {
    len <= MAX_HOSTNAME_LEN
}

/// Checks a host or domain name the way `sethostname(2)` would, and refuses an empty one.
pub fn validate_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("a host name cannot be empty".into())
    } else if !hostname_fits(name.len()) {
        Err(format!(
            "a host name is at most {MAX_HOSTNAME_LEN} bytes, this one has {}",
            name.len()
        ))
    } else {
        Ok(())
    }
}

/// Checks a capsule host name the loader writes: what [`validate_hostname`] accepts,
/// and what the config file can carry on one line ([`config_value`]).
pub fn check_hostname(name: &str) -> Result<(), String> {
    validate_hostname(name)?;
    config_value(keys::HOSTNAME, OsStr::new(name))
        .map(drop)
        .map_err(|e| e.reason)
}

/// A value written into the `CAPSULE_CONFIG` file: `KEY=VALUE` lines, so the value must
/// be UTF-8, on one line, without trailing blanks (the shim trims lines).
pub fn config_value(key: &str, value: &OsStr) -> Result<String, ConfigError> {
    let bad = |reason: &str| ConfigError {
        key: key.into(),
        value: value.to_string_lossy().into_owned(),
        reason: reason.into(),
    };
    let text = value
        .to_str()
        .ok_or_else(|| bad("not valid UTF-8, which the capsule config file cannot carry"))?;
    if text.chars().any(|c| c.is_control()) {
        return Err(bad("contains a control character (a newline, a tab…)"));
    }
    if text.ends_with(' ') {
        return Err(bad("ends with a space"));
    }
    Ok(text.to_string())
}

/// The longest capsule name.
pub const MAX_NAME_LEN: usize = 63;

/// Checks a capsule name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 63 characters (it is a
/// directory name, a host name and a peer's name; never a path).
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    match bytes.first() {
        None => return Err("a capsule name cannot be empty"),
        Some(b) if !b.is_ascii_alphanumeric() => {
            return Err("a capsule name starts with a letter or a digit")
        }
        Some(_) => {}
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err("a capsule name is at most 63 characters");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("a capsule name has only letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// Where the user database is, so that tests and capsule roots can point elsewhere.
pub struct UserDb {
    pub passwd: String,
    pub group: String,
}

impl UserDb {
    /// Reads `/etc/passwd` and `/etc/group` below `root` (missing files read as empty).
    pub fn load(root: &str) -> UserDb {
        let read = |p: &str| std::fs::read_to_string(format!("{root}{p}")).unwrap_or_default();
        UserDb {
            passwd: read("/etc/passwd"),
            group: read("/etc/group"),
        }
    }

    /// Resolves `NAME`, `UID`, `UID:GID`, `NAME:GROUP` the way `docker run --user` does.
    pub fn resolve(&self, spec: &str) -> Result<Identity, String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() {
            return Err("empty user".into());
        }
        let entry = if user.bytes().all(|b| b.is_ascii_digit()) {
            let uid: u32 = user.parse().map_err(|_| format!("uid {user} too large"))?;
            users::user_by_uid(&self.passwd, uid).map_or(
                users::PasswdEntry {
                    name: String::new(),
                    uid,
                    gid: uid,
                    home: "/".into(),
                    shell: String::new(),
                },
                |e| e,
            )
        } else {
            users::user_by_name(&self.passwd, user)
                .ok_or_else(|| format!("unknown user '{user}' (not in /etc/passwd)"))?
        };
        let gid = match group {
            None => entry.gid,
            Some(g) if !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()) => {
                g.parse().map_err(|_| format!("gid {g} too large"))?
            }
            Some(g) if !g.is_empty() => users::group_by_name(&self.group, g)
                .ok_or_else(|| format!("unknown group '{g}' (not in /etc/group)"))?,
            Some(_) => return Err("empty group".into()),
        };
        let groups = if entry.name.is_empty() {
            vec![gid]
        } else {
            users::groups_of(&self.group, &entry.name, gid)
        };
        Ok(Identity::plain(entry.uid, gid, groups))
    }

    /// The home directory of `uid` in this `/etc/passwd`: `/` when it has no entry or
    /// an empty one, as docker gives `$HOME`.
    pub fn home(&self, uid: u32) -> String {
        users::user_by_uid(&self.passwd, uid)
            .map(|e| e.home)
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

/// Reads the `KEY=VALUE` lines of a `CAPSULE_CONFIG` file (`#` comments, blank lines).
pub fn parse_config_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=VALUE", index + 1))?;
        out.push((key.trim().to_string(), value.to_string()));
    }
    Ok(out)
}

impl Config {
    /// Builds the configuration from `(key, value)` pairs; later pairs win.
    ///
    /// `now_ns` (the real time) turns `CAPSULE_TIME_AT` into a fixed offset, so that every
    /// process of a capsule agrees however late it starts. `userdb` resolves
    /// `CAPSULE_USER`. Keys that are not capsule settings are ignored.
    pub fn from_vars<'a>(
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
        now_ns: i64,
        userdb: impl FnOnce() -> UserDb,
    ) -> Result<Config, ConfigError> {
        let mut raw: Vec<(&str, &str)> = Vec::new();
        for (key, value) in vars {
            if keys::ALL.contains(&key) {
                raw.retain(|(k, _)| *k != key);
                raw.push((key, value));
            }
        }
        let get = |key: &str| raw.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let mut config = Config::default();

        if let Some(v) = get(keys::HOSTNAME) {
            validate_hostname(v).map_err(|e| error(keys::HOSTNAME, v, e))?;
            config.hostname = Some(v.to_string());
        }
        if let Some(v) = get(keys::DOMAINNAME) {
            if v.len() > MAX_HOSTNAME_LEN {
                return Err(error(keys::DOMAINNAME, v, "longer than 64 bytes"));
            }
            config.domainname = Some(v.to_string());
        }
        if let Some(v) = get(keys::NAME) {
            validate_name(v).map_err(|e| error(keys::NAME, v, e))?;
            config.name = Some(v.to_string());
        }

        let mut identity = match get(keys::USER) {
            Some(v) => Some(userdb().resolve(v).map_err(|e| error(keys::USER, v, e))?),
            None => None,
        };
        if let Some(v) = get(keys::UID) {
            let uid = parse_id_triple(keys::UID, v)?;
            let base = identity.get_or_insert_with(|| Identity::plain(uid[0], uid[0], vec![]));
            base.uid = uid;
            if get(keys::USER).is_none() && get(keys::GID).is_none() {
                base.gid = [uid[0]; 3];
            }
        }
        if let Some(v) = get(keys::GID) {
            let gid = parse_id_triple(keys::GID, v)?;
            let base = identity.get_or_insert_with(|| Identity::plain(0, gid[0], vec![]));
            if get(keys::UID).is_none() && get(keys::USER).is_none() {
                return Err(error(keys::GID, v, "needs CAPSULE_UID or CAPSULE_USER too"));
            }
            base.gid = gid;
        }
        if let Some(v) = get(keys::GROUPS) {
            let groups = parse_groups(v)?;
            match identity.as_mut() {
                Some(id) => id.groups = groups,
                None => {
                    return Err(error(
                        keys::GROUPS,
                        v,
                        "needs CAPSULE_UID or CAPSULE_USER too",
                    ))
                }
            }
        } else if let Some(id) = identity.as_mut() {
            if id.groups.is_empty() {
                id.groups = vec![id.gid[1]];
            }
        }
        config.identity = identity;

        match (get(keys::TIME_OFFSET), get(keys::TIME_AT)) {
            (Some(o), Some(_)) => {
                return Err(error(
                    keys::TIME_OFFSET,
                    o,
                    "CAPSULE_TIME_OFFSET and CAPSULE_TIME_AT cannot both be set",
                ))
            }
            (Some(o), None) => {
                let ns = parse_duration(o).map_err(|e| {
                    error(
                        keys::TIME_OFFSET,
                        o,
                        format!("{e} (expected a duration such as -3d, +90m or 1y)"),
                    )
                })?;
                config.time_offset_ns = Some(ns);
            }
            (None, Some(at)) => {
                let instant = parse_rfc3339(at).map_err(|e| {
                    error(
                        keys::TIME_AT,
                        at,
                        format!("{e} (expected RFC 3339, e.g. 2030-01-01T00:00:00Z)"),
                    )
                })?;
                config.time_offset_ns = Some(instant.saturating_sub(now_ns));
            }
            (None, None) => {}
        }

        if let Some(v) = get(keys::STATE_DIR) {
            if !v.starts_with('/') {
                return Err(error(keys::STATE_DIR, v, "must be an absolute path"));
            }
            config.state_dir = Some(v.to_string());
        }
        if let Some(v) = get(keys::LOG) {
            config.log = LogLevel::parse(v).ok_or_else(|| {
                error(
                    keys::LOG,
                    v,
                    "expected off, error, warn, info, debug or trace",
                )
            })?;
        }
        for (key, slot) in [
            (keys::ROOT, &mut config.fs.root),
            (keys::UPPER, &mut config.fs.upper),
        ] {
            if let Some(v) = get(key) {
                if !v.starts_with('/') {
                    return Err(error(key, v, "must be an absolute path"));
                }
                let n = normalize(v);
                *slot = (n != "/" || key == keys::UPPER).then_some(n);
            }
        }
        if let Some(v) = get(keys::VOLUMES) {
            for spec in v.split(';').filter(|s| !s.is_empty()) {
                let volume = Volume::parse(spec).map_err(|e| error(keys::VOLUMES, v, e))?;
                if config.fs.volumes.iter().any(|o| o.path == volume.path) {
                    return Err(error(
                        keys::VOLUMES,
                        v,
                        format!("{} is bound twice", volume.path),
                    ));
                }
                config.fs.volumes.push(volume);
            }
        }
        if let Some(v) = get(keys::READ_ONLY) {
            config.fs.read_only = match v {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                _ => return Err(error(keys::READ_ONLY, v, "expected 1 or 0")),
            };
        }
        if let Some(v) = get(keys::ALLOW_BYPASS) {
            config.allow_bypass = match v {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                _ => return Err(error(keys::ALLOW_BYPASS, v, "expected 1 or 0")),
            };
        }
        if let Some(v) = get(keys::BACKSTOP) {
            config.backstop_all = match v {
                "all" => true,
                "static" | "" => false,
                _ => return Err(error(keys::BACKSTOP, v, "expected all or static")),
            };
        }
        if let Some(v) = get(keys::LOG_FILE) {
            if v.is_empty() {
                return Err(error(keys::LOG_FILE, v, "empty path"));
            }
            config.log_file = Some(v.to_string());
        }
        if let Some(v) = get(keys::PORTS) {
            for spec in v.split(',').filter(|s| !s.is_empty()) {
                let map = PortMap::parse(spec).map_err(|e| error(keys::PORTS, v, e))?;
                if let Some(other) = config.net.ports.iter().find(|o| o.clashes_with(&map)) {
                    return Err(error(
                        keys::PORTS,
                        v,
                        format!("{map} and {other} publish the same port"),
                    ));
                }
                config.net.ports.push(map);
            }
        }
        if let Some(v) = get(keys::PEERS) {
            // Empty means no peers; otherwise every name is a capsule name (an empty
            // one, as in `a,,b`, is a mistake, not nothing).
            if !v.is_empty() {
                for name in v.split(',') {
                    validate_name(name)
                        .map_err(|e| error(keys::PEERS, v, format!("peer {name:?}: {e}")))?;
                    if config.net.peers.iter().any(|p| p == name) {
                        return Err(error(
                            keys::PEERS,
                            v,
                            format!("peer {name:?} is named twice"),
                        ));
                    }
                    config.net.peers.push(name.to_string());
                }
            }
        }
        if let Some(v) = get(keys::REMOTE_PEERS) {
            for spec in v.split(',').filter(|s| !s.is_empty()) {
                let peer =
                    net::RemotePeer::parse(spec).map_err(|e| error(keys::REMOTE_PEERS, v, e))?;
                if !config.net.peers.contains(&peer.name) {
                    return Err(error(
                        keys::REMOTE_PEERS,
                        v,
                        format!("{:?} is not one of {}", peer.name, keys::PEERS),
                    ));
                }
                config.net.remote.push(peer);
            }
        }
        if let Some(v) = get(keys::NETWORK) {
            config.net.host = match v {
                "host" => true,
                "capsule" | "" => false,
                _ => return Err(error(keys::NETWORK, v, "expected host or capsule")),
            };
            if config.net.host && !(config.net.ports.is_empty() && config.net.peers.is_empty()) {
                return Err(error(
                    keys::NETWORK,
                    v,
                    "the host's network has no published ports or peers",
                ));
            }
        }
        Ok(config)
    }

    /// The `(key, value)` pairs that reproduce this configuration exactly through
    /// [`Config::from_vars`]: a time given as an instant comes back as the fixed offset.
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(n) = &self.name {
            out.push((keys::NAME, n.clone()));
        }
        if let Some(h) = &self.hostname {
            out.push((keys::HOSTNAME, h.clone()));
        }
        if let Some(d) = &self.domainname {
            out.push((keys::DOMAINNAME, d.clone()));
        }
        if let Some(id) = &self.identity {
            out.push((keys::UID, format_ids(&id.uid)));
            out.push((keys::GID, format_ids(&id.gid)));
            let groups: Vec<String> = id.groups.iter().map(u32::to_string).collect();
            out.push((keys::GROUPS, groups.join(",")));
        }
        if let Some(ns) = self.time_offset_ns {
            out.push((keys::TIME_OFFSET, format_duration_ns(ns)));
        }
        if let Some(s) = &self.state_dir {
            out.push((keys::STATE_DIR, s.clone()));
        }
        if self.log != LogLevel::Off {
            out.push((keys::LOG, self.log.as_str().to_string()));
        }
        if let Some(f) = &self.log_file {
            out.push((keys::LOG_FILE, f.clone()));
        }
        if let Some(r) = &self.fs.root {
            out.push((keys::ROOT, r.clone()));
        }
        if let Some(u) = &self.fs.upper {
            out.push((keys::UPPER, u.clone()));
        }
        if !self.fs.volumes.is_empty() {
            let specs: Vec<String> = self.fs.volumes.iter().map(Volume::to_spec).collect();
            out.push((keys::VOLUMES, specs.join(";")));
        }
        if self.fs.read_only {
            out.push((keys::READ_ONLY, "1".into()));
        }
        if self.allow_bypass {
            out.push((keys::ALLOW_BYPASS, "1".into()));
        }
        if self.backstop_all {
            out.push((keys::BACKSTOP, "all".into()));
        }
        if !self.net.ports.is_empty() {
            let specs: Vec<String> = self.net.ports.iter().map(PortMap::to_string).collect();
            out.push((keys::PORTS, specs.join(",")));
        }
        if !self.net.peers.is_empty() {
            out.push((keys::PEERS, self.net.peers.join(",")));
        }
        if !self.net.remote.is_empty() {
            let specs: Vec<String> = self
                .net
                .remote
                .iter()
                .map(net::RemotePeer::to_spec)
                .collect();
            out.push((keys::REMOTE_PEERS, specs.join(",")));
        }
        if self.net.host {
            out.push((keys::NETWORK, "host".into()));
        }
        out
    }

    /// The configuration as a `CAPSULE_CONFIG` file.
    pub fn to_file(&self) -> String {
        let mut text = String::from("# capsule configuration (written by the capsule loader)\n");
        for (key, value) in self.to_vars() {
            text.push_str(key);
            text.push('=');
            text.push_str(&value);
            text.push('\n');
        }
        text
    }
}

fn format_ids(ids: &[u32; 3]) -> String {
    if ids[0] == ids[1] && ids[1] == ids[2] {
        ids[0].to_string()
    } else {
        format!("{},{},{}", ids[0], ids[1], ids[2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_stay_on_one_line() {
        assert_eq!(config_value("K", OsStr::new("/a b/c")).unwrap(), "/a b/c");
        assert!(config_value("K", OsStr::new("a\nCAPSULE_UID=0")).is_err());
        assert!(config_value("K", OsStr::new("trailing ")).is_err());
        assert!(check_hostname("web1").is_ok());
        assert!(check_hostname("").is_err());
        assert!(check_hostname(&"h".repeat(65)).is_err());
        assert!(check_hostname("a\tb").is_err());
        assert!(hostname_fits(64) && !hostname_fits(65));
    }

    fn db() -> UserDb {
        UserDb {
            passwd: "root:x:0:0:root:/root:/bin/bash\npostgres:x:105:111::/var/lib/postgresql:/bin/bash\n".into(),
            group: "root:x:0:\npostgres:x:111:\nssl-cert:x:110:postgres\n".into(),
        }
    }

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().copied(), 1_000_000_000_000, db)
    }

    #[test]
    fn empty_environment_is_an_empty_config() {
        assert_eq!(parse(&[("PATH", "/bin")]), Ok(Config::default()));
    }

    #[test]
    fn reads_every_setting() {
        let c = parse(&[
            ("CAPSULE_HOSTNAME", "web1"),
            ("CAPSULE_USER", "postgres"),
            ("CAPSULE_TIME_OFFSET", "-1d"),
            ("CAPSULE_STATE_DIR", "/tmp/s"),
            ("CAPSULE_LOG", "debug"),
        ])
        .unwrap();
        assert_eq!(c.hostname.as_deref(), Some("web1"));
        assert_eq!(c.identity, Some(Identity::plain(105, 111, vec![111, 110])));
        assert_eq!(c.time_offset_ns, Some(-86_400_000_000_000));
        assert_eq!(c.log, LogLevel::Debug);
    }

    #[test]
    fn uid_alone_implies_gid_and_groups() {
        let c = parse(&[("CAPSULE_UID", "1000")]).unwrap();
        assert_eq!(c.identity, Some(Identity::plain(1000, 1000, vec![1000])));
        let c = parse(&[("CAPSULE_UID", "0,1000,0"), ("CAPSULE_GID", "5")]).unwrap();
        let id = c.identity.unwrap();
        assert_eq!(id.uid, [0, 1000, 0]);
        assert_eq!(id.gid, [5, 5, 5]);
        assert_eq!(id.groups, vec![5]);
    }

    #[test]
    fn time_at_becomes_an_offset_from_now() {
        let c = parse(&[("CAPSULE_TIME_AT", "1970-01-01T00:20:00Z")]).unwrap();
        assert_eq!(
            c.time_offset_ns,
            Some(1_200_000_000_000 - 1_000_000_000_000)
        );
    }

    #[test]
    fn malformed_settings_name_the_variable() {
        for (key, value) in [
            ("CAPSULE_TIME_OFFSET", "soon"),
            ("CAPSULE_TIME_AT", "tomorrow"),
            ("CAPSULE_UID", "alice"),
            ("CAPSULE_USER", "nosuchuser"),
            ("CAPSULE_HOSTNAME", ""),
            ("CAPSULE_LOG", "loud"),
            ("CAPSULE_STATE_DIR", "relative"),
            ("CAPSULE_GROUPS", "1,x"),
        ] {
            let err = parse(&[("CAPSULE_UID", "1"), (key, value)]).unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.to_string().starts_with(key));
        }
        assert!(parse(&[
            ("CAPSULE_TIME_OFFSET", "1d"),
            ("CAPSULE_TIME_AT", "2030-01-01T00:00:00Z")
        ])
        .is_err());
    }

    #[test]
    fn to_vars_round_trips() {
        let c = parse(&[
            ("CAPSULE_NAME", "db"),
            ("CAPSULE_HOSTNAME", "db1"),
            ("CAPSULE_UID", "0,5,6"),
            ("CAPSULE_GID", "7"),
            ("CAPSULE_GROUPS", "7,8"),
            ("CAPSULE_TIME_AT", "2030-01-01T00:00:00Z"),
            ("CAPSULE_LOG_FILE", "/tmp/log"),
            ("CAPSULE_ROOT", "/srv/root/"),
            ("CAPSULE_UPPER", "/srv/upper"),
            ("CAPSULE_VOLUMES", "/data:/var/lib/app;/etc/ssl:/etc/ssl:ro"),
            ("CAPSULE_READ_ONLY", "1"),
            ("CAPSULE_PORTS", "18080:8000,53/udp"),
            ("CAPSULE_PEERS", "web-1,web-2,db"),
        ])
        .unwrap();
        assert_eq!(c.net.ports.len(), 2);
        assert_eq!(c.net.peers, ["web-1", "web-2", "db"]);
        let vars = c.to_vars();
        let back = Config::from_vars(vars.iter().map(|(k, v)| (*k, v.as_str())), 0, db).unwrap();
        assert_eq!(back, c);
        let file = parse_config_file(&c.to_file()).unwrap();
        let back =
            Config::from_vars(file.iter().map(|(k, v)| (k.as_str(), v.as_str())), 0, db).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn the_host_network_has_no_ports_or_peers() {
        let c = parse(&[("CAPSULE_NETWORK", "host")]).unwrap();
        assert!(c.net.host);
        let vars = c.to_vars();
        assert!(vars.contains(&("CAPSULE_NETWORK", "host".into())));
        assert!(!parse(&[("CAPSULE_NETWORK", "capsule")]).unwrap().net.host);
        assert!(parse(&[("CAPSULE_NETWORK", "bridge")]).is_err());
        assert!(parse(&[("CAPSULE_NETWORK", "host"), ("CAPSULE_PORTS", "8000")]).is_err());
        assert!(parse(&[("CAPSULE_NETWORK", "host"), ("CAPSULE_PEERS", "a,b")]).is_err());
    }

    #[test]
    fn ports_published_twice_are_refused() {
        assert!(parse(&[("CAPSULE_PORTS", "8000,9000:8000")]).is_err());
        assert!(parse(&[("CAPSULE_PORTS", "9000:80,9000:81")]).is_err());
        assert!(parse(&[("CAPSULE_PORTS", "9000:80,9000:80/udp")]).is_ok());
        assert!(parse(&[("CAPSULE_PORTS", "x")]).is_err());
    }

    #[test]
    fn volumes_parse_like_docker() {
        let v = Volume::parse("/data/:/var/lib//app:ro").unwrap();
        assert_eq!(
            (v.host.as_str(), v.path.as_str(), v.read_only),
            ("/data", "/var/lib/app", true)
        );
        assert!(!Volume::parse("/a:/b:rw").unwrap().read_only);
        for bad in ["/a", "a:/b", "/a:b", "/a:/b:rx", "/a:/b:ro:x", "/a;b:/c"] {
            assert!(Volume::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse(&[("CAPSULE_VOLUMES", "/a:/x;/b:/x")]).is_err());
        assert_eq!(normalize("/a/./b/../c//"), "/a/c");
        assert_eq!(normalize("/.."), "/");
        let c = parse(&[("CAPSULE_ROOT", "/")]).unwrap();
        assert!(
            !c.fs.is_active(),
            "a root of / is the host's, the replica stays off"
        );
    }

    #[test]
    fn resolves_user_specs_like_docker() {
        let db = db();
        assert_eq!(db.resolve("0").unwrap(), Identity::plain(0, 0, vec![0]));
        assert_eq!(
            db.resolve("4242").unwrap(),
            Identity::plain(4242, 4242, vec![4242])
        );
        assert_eq!(
            db.resolve("4242:7").unwrap(),
            Identity::plain(4242, 7, vec![7])
        );
        assert_eq!(db.resolve("postgres:root").unwrap().gid, [0; 3]);
        assert!(db.resolve("ghost").is_err());
        assert!(db.resolve("postgres:ghosts").is_err());
        assert!(db.resolve(":1").is_err());
    }
}
