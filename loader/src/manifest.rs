//! `capsule.toml`: the manifest `capsule up` starts, one `[capsule.NAME]` table per
//! capsule, in the spirit of a compose file.
//!
//! [`Manifest::parse`] checks everything that the manifest alone decides, and says where
//! a problem is: every error is one line `FILE:LINE:COLUMN: KEY: what`. Syntax, unknown
//! keys and wrong types come from the TOML deserializer (its byte span gives the place,
//! the table the span falls in gives the key); the rest is checked here on values that
//! kept their spans (`toml::Spanned`). What depends on the disk or the capsule's file
//! system (a missing root, an unknown user, a missing program) is checked later by
//! [`crate::run::RunSpec::prepare`]; [`Manifest::error_at`] places those errors too.
//!
//! Rules that are the manifest's own:
//! - `replicas = N` makes the capsules `NAME-1` … `NAME-N`, each with its own state
//!   directory (private layer) and host name (`NAME-i`, or `HOSTNAME-i` when `hostname`
//!   is set); names must be unique after this expansion.
//! - A published port `HOSTPORT:PORT` in a table with replicas is published by replica
//!   `i` as `HOSTPORT+i-1`; `PORT` alone gives each replica a free host port. A host
//!   port may be published once in the whole manifest.
//! - Relative paths (`root`, the host side of `volumes`, `env_file`, `workdir` without a
//!   root, a relative program) are taken from the manifest's directory.
//! - `depends_on` names tables or single capsules; a table stands for all its replicas.
//!   The start order puts every capsule after those it depends on, else keeps the
//!   manifest's order; a cycle is refused.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use capsule_config::{parse_duration, parse_rfc3339, PortMap, Volume};
use serde::Deserialize;
use toml::Spanned;

use crate::envfile::{self, EnvEntry};
use crate::given::Given;
use crate::run::{self, TimeSetting};
use crate::state;

/// The manifest `capsule up` reads when `-f` is not given.
pub const DEFAULT_FILE: &str = "capsule.toml";
/// The most replicas one table may ask for.
pub const MAX_REPLICAS: u32 = 1000;

/// A manifest that cannot be used, placed in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}{message}", self.place())]
pub struct ManifestError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line and column, when known.
    pub line: Option<(usize, usize)>,
    /// The dotted key at fault (`capsule.web.ports`), when known.
    pub key: Option<String>,
    pub message: String,
}

impl ManifestError {
    fn place(&self) -> String {
        let mut text = match self.line {
            Some((line, column)) => format!("{line}:{column}: "),
            None => " ".to_string(),
        };
        if let Some(key) = &self.key {
            text.push_str(key);
            text.push_str(": ");
        }
        text
    }
}

/// What to do when a capsule's program ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never restart.
    #[default]
    No,
    /// Restart after a non-zero exit or a fatal signal.
    OnFailure,
    /// Restart whatever the end.
    Always,
}

/// The program line: an argv, or one string for `/bin/sh -c`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a string (run by /bin/sh -c) or an array of strings"
)]
enum CommandLine {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    capsule: BTreeMap<Spanned<String>, Spanned<RawCapsule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapsule {
    command: Option<Spanned<CommandLine>>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    #[serde(default)]
    volumes: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    env_file: Option<Spanned<String>>,
    root: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
    hostname: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    workdir: Option<Spanned<String>>,
    time_offset: Option<Spanned<String>>,
    time_at: Option<Spanned<String>>,
    read_only: Option<Spanned<bool>>,
    network: Option<Spanned<String>>,
    backstop: Option<Spanned<String>>,
    restart: Option<Spanned<Restart>>,
    replicas: Option<Spanned<u32>>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
}

/// One capsule of the manifest, after replica expansion, with its values checked.
#[derive(Debug, Clone)]
pub struct CapsuleDef {
    /// The capsule's name (`web-2` for the second replica of `[capsule.web]`).
    pub name: String,
    /// The table it comes from.
    pub table: String,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub ports: Vec<PortMap>,
    /// Volumes with absolute host paths (the spec's text too: messages quote it).
    pub volumes: Vec<Given<Volume>>,
    /// `env_file` entries first, then `env`, so that `env` wins.
    pub env: Vec<EnvEntry>,
    pub root: Option<PathBuf>,
    pub image: Option<String>,
    pub hostname: String,
    pub user: Option<String>,
    pub workdir: Option<PathBuf>,
    pub time: Option<TimeSetting>,
    pub read_only: bool,
    /// `network = "host"`: the host's network, no ports, not a peer of the others.
    pub network_host: bool,
    /// `backstop = "all"`: every program under the system-call backstop.
    pub backstop_all: bool,
    pub restart: Restart,
    /// Indices (into [`Manifest::capsules`]) of the capsules started before this one.
    pub depends_on: Vec<usize>,
    /// Where each key's value is, for errors found later.
    spans: HashMap<&'static str, Range<usize>>,
    /// The table's name in its header.
    table_span: Range<usize>,
}

impl CapsuleDef {
    /// The `capsule run` equivalent of this capsule, with `peers` for name resolution.
    pub fn spec(&self, peers: Vec<String>) -> run::RunSpec {
        run::RunSpec::new(self.program.clone(), self.args.clone())
            .name(Some(self.name.clone()))
            .hostname(Some(self.hostname.clone()))
            .user(self.user.clone())
            .time(self.time)
            .env(self.env.iter().cloned())
            .workdir(self.workdir.clone())
            .root(self.root.clone())
            .image(self.image.clone())
            .volumes(self.volumes.iter().cloned())
            .ports(self.ports.iter().copied())
            .peers(if self.network_host { Vec::new() } else { peers })
            .network_host(self.network_host)
            .read_only(self.read_only)
            .backstop_all(self.backstop_all)
    }
}

/// A checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file as the user named it (for messages).
    pub file: String,
    /// The directory relative paths are taken from (absolute).
    pub dir: PathBuf,
    /// Every capsule, in the manifest's order (replicas in place).
    pub capsules: Vec<CapsuleDef>,
    /// The order to start them in: each after the capsules it depends on.
    pub start_order: Vec<usize>,
    text: String,
}

impl Manifest {
    /// Reads and checks the manifest at `path` (relative: from `cwd`).
    pub fn load(path: &Path, cwd: &Path) -> Result<Manifest, ManifestError> {
        let file = path.display().to_string();
        let full = cwd.join(path);
        let text = std::fs::read_to_string(&full).map_err(|e| ManifestError {
            file: file.clone(),
            line: None,
            key: None,
            message: crate::describe_io(&e),
        })?;
        let dir = full.parent().unwrap_or(cwd).to_path_buf();
        Manifest::parse(file, dir, text)
    }

    /// Checks a manifest's `text`; `file` names it in errors, `dir` is where relative
    /// paths start from.
    pub fn parse(file: String, dir: PathBuf, text: String) -> Result<Manifest, ManifestError> {
        let mut manifest = Manifest {
            file,
            dir,
            capsules: Vec::new(),
            start_order: Vec::new(),
            text,
        };
        let raw: RawManifest = match toml::from_str(&manifest.text) {
            Ok(raw) => raw,
            Err(e) => return Err(manifest.toml_error(&e)),
        };
        let mut tables: Vec<(Spanned<String>, Spanned<RawCapsule>)> =
            raw.capsule.into_iter().collect();
        if tables.is_empty() {
            return Err(manifest.error(
                None,
                None,
                "no capsules: add a [capsule.NAME] table with a command".into(),
            ));
        }
        // The deserialized map is sorted by name; the file's order is the span's.
        tables.sort_by_key(|(name, _)| name.span().start);
        let mut depends: Vec<Vec<Spanned<String>>> = Vec::new();
        for (name, table) in tables {
            let table_span = name.span();
            let raw = table.into_inner();
            let defs = manifest.expand(name.into_inner(), table_span, &raw)?;
            for def in defs {
                if let Some(first) = manifest.capsules.iter().find(|c| c.name == def.name) {
                    let (line, _) = manifest.line_of(first.table_span.start);
                    return Err(manifest.error(
                        Some(def.table_span.clone()),
                        Some(format!("capsule.{}", def.table)),
                        format!(
                            "two capsules are named {} (the other is [capsule.{}], line {line})",
                            def.name, first.table
                        ),
                    ));
                }
                depends.push(raw.depends_on.clone());
                manifest.capsules.push(def);
            }
        }
        manifest.check_published_ports()?;
        manifest.resolve_dependencies(depends)?;
        manifest.start_order = manifest.order()?;
        Ok(manifest)
    }

    /// The capsule named `name`, if there is one.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.capsules.iter().position(|c| c.name == name)
    }

    /// Every capsule's name, in the manifest's order.
    pub fn names(&self) -> Vec<String> {
        self.capsules.iter().map(|c| c.name.clone()).collect()
    }

    /// The names the capsules reach each other by: all but those on the host's network.
    pub fn peer_names(&self) -> Vec<String> {
        self.capsules
            .iter()
            .filter(|c| !c.network_host)
            .map(|c| c.name.clone())
            .collect()
    }

    /// An error about `key` of capsule `index` (the table itself when the key is not
    /// set or `None`), placed at the key's value.
    pub fn error_at(&self, index: usize, key: Option<&str>, message: String) -> ManifestError {
        let capsule = &self.capsules[index];
        let span = key
            .and_then(|k| capsule.spans.get(k))
            .cloned()
            .unwrap_or_else(|| capsule.table_span.clone());
        let key = match key {
            Some(k) => format!("capsule.{}.{k}", capsule.table),
            None => format!("capsule.{}", capsule.table),
        };
        self.error(Some(span), Some(key), message)
    }

    fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: String,
    ) -> ManifestError {
        ManifestError {
            file: self.file.clone(),
            line: span.map(|s| self.line_of(s.start)),
            key,
            message,
        }
    }

    /// 1-based line and column (in characters) of byte `offset`.
    fn line_of(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// A deserializer error, with the key its span falls in.
    fn toml_error(&self, err: &toml::de::Error) -> ManifestError {
        let span = err.span();
        let key = span.as_ref().and_then(|s| key_at(&self.text, s.start));
        // The message may quote a whole table; one line is what we print.
        let message = err.message().trim().replace('\n', " ");
        self.error(span, key, message)
    }

    /// Checks one table and makes its capsules (one, or one per replica). Each key has
    /// its own check on [`Table`], run in this order: the first refusal is reported.
    fn expand(
        &self,
        table: String,
        table_span: Range<usize>,
        raw: &RawCapsule,
    ) -> Result<Vec<CapsuleDef>, ManifestError> {
        let at = Table {
            manifest: self,
            name: &table,
            span: table_span.clone(),
        };
        state::validate_name(&table).map_err(|e| at.error(e.to_string()))?;
        let mut spans: HashMap<&'static str, Range<usize>> = HashMap::new();
        let (program, args) = at.command(raw, &mut spans)?;
        let replicas = at.replicas(raw, &mut spans)?;
        let ports = at.ports(raw, replicas, &mut spans)?;
        let volumes = at.volumes(raw, &mut spans)?;
        let env = at.env(raw, &mut spans)?;

        let texts = at.texts(raw, &mut spans);
        at.root_or_image(raw)?;
        at.hostname(raw)?;
        let network_host = at.network(raw)?;
        let backstop_all = at.backstop(raw)?;
        let time = at.time(raw, &mut spans)?;
        at.unchecked_spans(raw, &mut spans);
        let Texts {
            root,
            image,
            user,
            workdir,
            hostname,
        } = texts;

        let base = CapsuleDef {
            name: table.clone(),
            table: table.clone(),
            program,
            args,
            ports,
            volumes,
            env,
            root,
            image,
            hostname: hostname.clone().unwrap_or_else(|| table.clone()),
            user,
            workdir,
            time,
            read_only: raw.read_only.as_ref().is_some_and(|r| *r.get_ref()),
            network_host,
            backstop_all,
            restart: raw.restart.as_ref().map_or(Restart::No, |r| *r.get_ref()),
            depends_on: Vec::new(),
            spans,
            table_span,
        };
        match replicas {
            None => Ok(vec![base]),
            Some(n) => at.replicas_of(&base, n, hostname.as_deref()),
        }
    }

    /// A volume spec whose relative host path is taken from the manifest's directory.
    fn absolute_volume(&self, spec: &str) -> String {
        match spec.split_once(':') {
            Some((host, rest)) if !host.is_empty() && !host.starts_with('/') => {
                format!("{}:{rest}", self.dir.join(host).display())
            }
            _ => spec.to_string(),
        }
    }

    /// Refuses a host port published by two capsules.
    fn check_published_ports(&self) -> Result<(), ManifestError> {
        let mut seen: HashMap<(capsule_config::net::Proto, u16), &str> = HashMap::new();
        for (index, capsule) in self.capsules.iter().enumerate() {
            for map in &capsule.ports {
                let Some(host) = map.host else { continue };
                if let Some(other) = seen.insert((map.proto, host), &capsule.name) {
                    return Err(self.error_at(
                        index,
                        Some("ports"),
                        format!(
                            "host port {host}/{} is published by both {other} and {}",
                            map.proto.as_str(),
                            capsule.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Turns `depends_on` names into capsule indices.
    fn resolve_dependencies(
        &mut self,
        depends: Vec<Vec<Spanned<String>>>,
    ) -> Result<(), ManifestError> {
        for (index, names) in depends.into_iter().enumerate() {
            let mut targets = Vec::new();
            for name in names {
                let wanted = name.get_ref();
                let found: Vec<usize> = self
                    .capsules
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| &c.table == wanted || &c.name == wanted)
                    .map(|(i, _)| i)
                    .collect();
                if found.is_empty() {
                    return Err(self.error(
                        Some(name.span()),
                        Some(format!("capsule.{}.depends_on", self.capsules[index].table)),
                        format!("{wanted:?}: no such capsule in this manifest"),
                    ));
                }
                targets.extend(found);
            }
            targets.sort_unstable();
            targets.dedup();
            self.capsules[index].depends_on = targets;
        }
        Ok(())
    }

    /// The start order: each capsule after its dependencies, else in manifest order.
    fn order(&self) -> Result<Vec<usize>, ManifestError> {
        let count = self.capsules.len();
        let mut started = vec![false; count];
        let mut order = Vec::with_capacity(count);
        while order.len() < count {
            let next = (0..count)
                .find(|&i| !started[i] && self.capsules[i].depends_on.iter().all(|&d| started[d]));
            match next {
                Some(i) => {
                    started[i] = true;
                    order.push(i);
                }
                None => {
                    let cycle = self.cycle(&started);
                    let names: Vec<&str> = cycle
                        .iter()
                        .map(|&i| self.capsules[i].name.as_str())
                        .collect();
                    return Err(self.error_at(
                        cycle[0],
                        Some("depends_on"),
                        format!("a dependency cycle: {} -> {}", names.join(" -> "), names[0]),
                    ));
                }
            }
        }
        Ok(order)
    }

    /// A cycle among the capsules not started (each of them waits for another one).
    fn cycle(&self, started: &[bool]) -> Vec<usize> {
        let waiting_on = |i: usize| {
            self.capsules[i]
                .depends_on
                .iter()
                .copied()
                .find(|&d| !started[d])
        };
        let mut at = (0..started.len()).find(|&i| !started[i]).unwrap_or(0);
        let mut path = Vec::new();
        // Following "waits for" from any blocked capsule must come back to a capsule
        // already on the path.
        while !path.contains(&at) {
            path.push(at);
            match waiting_on(at) {
                Some(next) => at = next,
                None => break,
            }
        }
        let from = path.iter().position(|&i| i == at).unwrap_or(0);
        path.split_off(from)
    }
}

/// A table's plain string settings (see [`Table::texts`]).
struct Texts {
    root: Option<PathBuf>,
    image: Option<String>,
    user: Option<String>,
    workdir: Option<PathBuf>,
    hostname: Option<String>,
}

/// One `[capsule.NAME]` table being checked: one check per key, each placing its
/// errors at the key's value (or the table's header) and noting the key's span.
struct Table<'a> {
    manifest: &'a Manifest,
    name: &'a str,
    span: Range<usize>,
}

impl Table<'_> {
    /// An error about `key` of this table, placed at `span`.
    fn key_error(&self, span: Range<usize>, key: &str, message: String) -> ManifestError {
        self.manifest.error(
            Some(span),
            Some(format!("capsule.{}.{key}", self.name)),
            message,
        )
    }

    /// An error about the table itself, placed at its header.
    fn error(&self, message: String) -> ManifestError {
        self.manifest.error(
            Some(self.span.clone()),
            Some(format!("capsule.{}", self.name)),
            message,
        )
    }

    /// `command`: an argv, or one string for `/bin/sh -c`; none with an image (its
    /// Entrypoint and Cmd say what runs: an empty program means none was given).
    fn command(
        &self,
        raw: &RawCapsule,
        spans: &mut HashMap<&'static str, Range<usize>>,
    ) -> Result<(OsString, Vec<OsString>), ManifestError> {
        let Some(command) = &raw.command else {
            if raw.image.is_some() {
                return Ok((OsString::new(), Vec::new()));
            }
            return Err(self.error("no command: add command = [\"PROG\", \"ARG\"…]".into()));
        };
        spans.insert("command", command.span());
        match command.get_ref() {
            CommandLine::Shell(line) => Ok((
                OsString::from("/bin/sh"),
                vec![OsString::from("-c"), OsString::from(line)],
            )),
            CommandLine::Argv(argv) => match argv.split_first() {
                Some((program, args)) if !program.is_empty() => {
                    Ok((program.into(), args.iter().map(OsString::from).collect()))
                }
                _ => Err(self.key_error(
                    command.span(),
                    "command",
                    "the program (the array's first string) is missing".into(),
                )),
            },
        }
    }

    /// `replicas`: 1 to [`MAX_REPLICAS`].
    fn replicas(
        &self,
        raw: &RawCapsule,
        spans: &mut HashMap<&'static str, Range<usize>>,
    ) -> Result<Option<u32>, ManifestError> {
        let Some(n) = &raw.replicas else {
            return Ok(None);
        };
        spans.insert("replicas", n.span());
        if !(1..=MAX_REPLICAS).contains(n.get_ref()) {
            return Err(self.key_error(
                n.span(),
                "replicas",
                format!("{}: expected 1 to {MAX_REPLICAS}", n.get_ref()),
            ));
        }
        Ok(Some(*n.get_ref()))
    }

    /// `ports`: each parsed, none publishing the same port as another, and every
    /// replica's host port (`HOSTPORT+i-1`) within 65535.
    fn ports(
        &self,
        raw: &RawCapsule,
        replicas: Option<u32>,
        spans: &mut HashMap<&'static str, Range<usize>>,
    ) -> Result<Vec<PortMap>, ManifestError> {
        let mut ports: Vec<PortMap> = Vec::new();
        for spec in &raw.ports {
            spans.entry("ports").or_insert(spec.span());
            let bad = |reason: String| {
                self.key_error(
                    spec.span(),
                    "ports",
                    format!("{:?}: {reason}", spec.get_ref()),
                )
            };
            let map = PortMap::parse(spec.get_ref()).map_err(bad)?;
            if let Some(other) = ports.iter().find(|o| o.clashes_with(&map)) {
                return Err(bad(format!("publishes the same port as {other}")));
            }
            if let (Some(host), Some(n)) = (map.host, replicas) {
                if u32::from(host) + n - 1 > u32::from(u16::MAX) {
                    return Err(bad(format!(
                        "replica {n} would publish host port {}, beyond 65535 (replica i publishes HOSTPORT+i-1)",
                        u32::from(host) + n - 1
                    )));
                }
            }
            ports.push(map);
        }
        Ok(ports)
    }

    /// `volumes`: each parsed, its relative host path taken from the manifest's
    /// directory (the host path is checked by prepare).
    fn volumes(
        &self,
        raw: &RawCapsule,
        spans: &mut HashMap<&'static str, Range<usize>>,
    ) -> Result<Vec<Given<Volume>>, ManifestError> {
        let mut volumes = Vec::new();
        for spec in &raw.volumes {
            spans.entry("volumes").or_insert(spec.span());
            let absolute = self.manifest.absolute_volume(spec.get_ref());
            let volume = Volume::parse(&absolute).map_err(|reason| {
                self.key_error(
                    spec.span(),
                    "volumes",
                    format!("{:?}: {reason}", spec.get_ref()),
                )
            })?;
            volumes.push(Given::parsed(absolute, volume));
        }
        Ok(volumes)
    }

    /// `env_file` (read now, from the manifest's directory) then `env`, so that `env`
    /// wins.
    fn env(
        &self,
        raw: &RawCapsule,
        spans: &mut HashMap<&'static str, Range<usize>>,
    ) -> Result<Vec<EnvEntry>, ManifestError> {
        let mut env = Vec::new();
        if let Some(file) = &raw.env_file {
            spans.insert("env_file", file.span());
            let path = self.manifest.dir.join(file.get_ref());
            env.extend(
                envfile::read_env_file(&path)
                    .map_err(|e| self.key_error(file.span(), "env_file", e.to_string()))?,
            );
        }
        for (key, value) in &raw.env {
            spans.entry("env").or_insert(key.span());
            let env_key = format!("env.{}", key.get_ref());
            if key.get_ref().contains('=') {
                return Err(self.key_error(
                    key.span(),
                    &env_key,
                    "a variable name cannot contain '='".into(),
                ));
            }
            let mut assignment = OsString::from(key.get_ref());
            assignment.push("=");
            assignment.push(value.get_ref());
            let entry = envfile::parse_assignment(&assignment)
                .map_err(|e| self.key_error(key.span(), &env_key, e.to_string()))?;
            env.push(entry);
        }
        Ok(env)
    }

    /// The plain string settings, checked where they are used (prepare); `root` taken
    /// from the manifest's directory.
    fn texts(&self, raw: &RawCapsule, spans: &mut HashMap<&'static str, Range<usize>>) -> Texts {
        let mut text_value = |key: &'static str, value: &Option<Spanned<String>>| {
            value.as_ref().map(|v| {
                spans.insert(key, v.span());
                v.get_ref().clone()
            })
        };
        Texts {
            root: text_value("root", &raw.root).map(|r| self.manifest.dir.join(r)),
            image: text_value("image", &raw.image),
            user: text_value("user", &raw.user),
            workdir: text_value("workdir", &raw.workdir).map(PathBuf::from),
            hostname: text_value("hostname", &raw.hostname),
        }
    }

    /// The spans of the keys whose values serde has checked (`restart`, `read_only`)
    /// or that are checked once every table is read (`depends_on`).
    fn unchecked_spans(&self, raw: &RawCapsule, spans: &mut HashMap<&'static str, Range<usize>>) {
        if let Some(first) = raw.depends_on.first() {
            spans.insert("depends_on", first.span());
        }
        for (key, value) in [
            ("restart", raw.restart.as_ref().map(Spanned::span)),
            ("read_only", raw.read_only.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = value {
                spans.insert(key, span);
            }
        }
    }

    /// `root` and `image`: not both.
    fn root_or_image(&self, raw: &RawCapsule) -> Result<(), ManifestError> {
        match (&raw.root, &raw.image) {
            (Some(_), Some(image)) => Err(self.key_error(
                image.span(),
                "image",
                "a capsule has a root or an image, not both".into(),
            )),
            _ => Ok(()),
        }
    }

    /// `backstop`: `"static"` (the default) or `"all"` (`capsule run --backstop`).
    fn backstop(&self, raw: &RawCapsule) -> Result<bool, ManifestError> {
        let Some(backstop) = &raw.backstop else {
            return Ok(false);
        };
        match backstop.get_ref().as_str() {
            "all" => Ok(true),
            "static" => Ok(false),
            other => Err(self.key_error(
                backstop.span(),
                "backstop",
                format!("{other:?}: expected \"all\" or \"static\""),
            )),
        }
    }

    /// `network`: `"capsule"` (the default) or `"host"`, which publishes no ports.
    fn network(&self, raw: &RawCapsule) -> Result<bool, ManifestError> {
        let Some(network) = &raw.network else {
            return Ok(false);
        };
        let host = match network.get_ref().as_str() {
            "host" => true,
            "capsule" => false,
            other => {
                return Err(self.key_error(
                    network.span(),
                    "network",
                    format!("{other:?}: expected \"host\" or \"capsule\""),
                ))
            }
        };
        if let (true, Some(port)) = (host, raw.ports.first()) {
            return Err(self.key_error(
                port.span(),
                "ports",
                "a capsule on the host's network (network = \"host\") publishes no ports".into(),
            ));
        }
        Ok(host)
    }

    /// `hostname`: a name `sethostname(2)` takes and the config file can carry.
    fn hostname(&self, raw: &RawCapsule) -> Result<(), ManifestError> {
        let Some(name) = &raw.hostname else {
            return Ok(());
        };
        capsule_config::check_hostname(name.get_ref()).map_err(|e| {
            self.key_error(
                name.span(),
                "hostname",
                format!("{:?}: {e}", name.get_ref()),
            )
        })
    }

    /// `time_offset` (a duration) or `time_at` (an RFC 3339 instant), not both.
    fn time(
        &self,
        raw: &RawCapsule,
        spans: &mut HashMap<&'static str, Range<usize>>,
    ) -> Result<Option<TimeSetting>, ManifestError> {
        match (&raw.time_offset, &raw.time_at) {
            (Some(_), Some(at)) => Err(self.key_error(
                at.span(),
                "time_at",
                "a capsule has a time_offset or a time_at, not both".into(),
            )),
            (Some(offset), None) => Ok(Some(TimeSetting::Offset(self.parsed(
                offset,
                "time_offset",
                parse_duration,
                "a duration looks like -3d, +90m or 1y2d",
                spans,
            )?))),
            (None, Some(at)) => Ok(Some(TimeSetting::At(self.parsed(
                at,
                "time_at",
                parse_rfc3339,
                "an RFC 3339 instant looks like 2030-01-01T00:00:00Z",
                spans,
            )?))),
            (None, None) => Ok(None),
        }
    }

    /// `value` of `key` parsed by `parse`; a refusal quotes it and says what a good
    /// one `looks` like.
    fn parsed<T>(
        &self,
        value: &Spanned<String>,
        key: &'static str,
        parse: fn(&str) -> Result<T, String>,
        looks: &str,
        spans: &mut HashMap<&'static str, Range<usize>>,
    ) -> Result<T, ManifestError> {
        spans.insert(key, value.span());
        parse(value.get_ref()).map_err(|e| {
            self.key_error(
                value.span(),
                key,
                format!("{:?}: {e} ({looks})", value.get_ref()),
            )
        })
    }

    /// The `n` replicas of `base`: `NAME-i`, host name `HOSTNAME-i` (or `NAME-i`), host
    /// ports `HOSTPORT+i-1`.
    fn replicas_of(
        &self,
        base: &CapsuleDef,
        n: u32,
        hostname: Option<&str>,
    ) -> Result<Vec<CapsuleDef>, ManifestError> {
        let mut defs = Vec::new();
        for i in 1..=n {
            let mut def = base.clone();
            def.name = format!("{}-{i}", self.name);
            state::validate_name(&def.name).map_err(|e| self.error(format!("replica {i}: {e}")))?;
            def.hostname = format!("{}-{i}", hostname.unwrap_or(self.name));
            capsule_config::check_hostname(&def.hostname).map_err(|e| {
                self.error(format!("replica {i}'s host name {:?}: {e}", def.hostname))
            })?;
            for map in &mut def.ports {
                // Checked by `ports`: stays within 65535.
                map.host = map.host.map(|h| h + (i - 1) as u16);
            }
            defs.push(def);
        }
        Ok(defs)
    }
}

/// The dotted key (`capsule.web.ports`) whose name or value holds byte `offset`, the
/// innermost one: the deserializer's errors carry a span but not the key.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let document = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    key_in(document.get_ref(), offset, &mut path).then(|| path.join("."))
}

fn key_in(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        // A table's span is its header only: look inside every table.
        let inside = match value.get_ref() {
            toml::de::DeValue::Table(inner) => key_in(inner, offset, path),
            _ => false,
        };
        if inside || key.span().contains(&offset) || value.span().contains(&offset) {
            return true;
        }
        path.pop();
    }
    false
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(
            "capsule.toml".into(),
            PathBuf::from("/srv/app"),
            text.into(),
        )
    }

    #[test]
    fn replicas_get_their_names_host_names_and_ports() {
        let manifest = parse(
            r#"
[capsule.web]
command = ["python3", "-m", "http.server", "8000"]
replicas = 3
ports = ["18081:8000", "9000/udp"]
volumes = ["data:/data:ro", "/abs:/abs"]
root = "rootfs"
env = { GREETING = "a=b" }

[capsule.db]
command = "exec postgres"
hostname = "db.internal"
"#,
        )
        .unwrap();
        assert_eq!(manifest.names(), ["web-1", "web-2", "web-3", "db"]);
        let web3 = &manifest.capsules[2];
        assert_eq!(web3.hostname, "web-3");
        let ports: Vec<String> = web3.ports.iter().map(ToString::to_string).collect();
        assert_eq!(ports, ["18083:8000/tcp", "9000/udp"]);
        let volumes: Vec<&str> = web3.volumes.iter().map(Given::text).collect();
        assert_eq!(volumes, ["/srv/app/data:/data:ro", "/abs:/abs"]);
        assert!(web3.volumes[0].value().unwrap().read_only);
        assert_eq!(web3.root.as_deref(), Some(Path::new("/srv/app/rootfs")));
        assert_eq!(web3.program, "python3");
        assert_eq!(web3.env, [EnvEntry::Set("GREETING".into(), "a=b".into())]);
        let db = &manifest.capsules[3];
        assert_eq!(db.hostname, "db.internal");
        assert_eq!(db.program, "/bin/sh");
        assert_eq!(db.args, ["-c", "exec postgres"]);
        assert_eq!(db.restart, Restart::No);
        assert_eq!(manifest.start_order, [0, 1, 2, 3]);
    }

    #[test]
    fn a_hostname_with_replicas_is_numbered() {
        let manifest =
            parse("[capsule.w]\ncommand = 'true'\nhostname = 'box'\nreplicas = 2\n").unwrap();
        let names: Vec<&str> = manifest
            .capsules
            .iter()
            .map(|c| c.hostname.as_str())
            .collect();
        assert_eq!(names, ["box-1", "box-2"]);
    }

    #[test]
    fn dependencies_come_first_else_the_manifest_order_holds() {
        let manifest = parse(
            r#"
[capsule.client]
command = "true"
depends_on = ["web", "db"]

[capsule.web]
command = "true"
replicas = 2
depends_on = ["db"]

[capsule.db]
command = "true"

[capsule.tool]
command = "true"
"#,
        )
        .unwrap();
        let order: Vec<&str> = manifest
            .start_order
            .iter()
            .map(|&i| manifest.capsules[i].name.as_str())
            .collect();
        assert_eq!(order, ["db", "web-1", "web-2", "client", "tool"]);
        assert_eq!(manifest.capsules[0].depends_on, [1, 2, 3]);
    }

    #[test]
    fn errors_name_the_line_column_and_key() {
        let err = parse("[capsule.a]\ncommand = 'true'\n\nports = ['1:2', 'x:1']\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "capsule.toml:4:17: capsule.a.ports: \"x:1\": host port 'x' is not a port (1-65535)"
        );
        let err = parse("[capsule.a]\ncommand = 'true'\ndepends_on = ['a']\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "capsule.toml:3:15: capsule.a.depends_on: a dependency cycle: a -> a"
        );
        let err = parse("[capsule.a]\ncommand = 'true'\nenv = { X = 1 }\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("capsule.toml:3:13: capsule.a.env.X: "),
            "{err}"
        );
        let err = parse("[capsule.a]\ncommand = []\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("capsule.toml:2:11: capsule.a.command: "),
            "{err}"
        );
        let err = parse(
            "[capsule.a]\ncommand = 'true'\ntime_offset = '1d'\ntime_at = '2030-01-01T00:00:00Z'\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("capsule.toml:4:11: capsule.a.time_at: "),
            "{err}"
        );
        let err = parse("[capsule.a]\ncommand = 'true'\nports = ['80:80', '81:80']\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("publishes the same port as 80:80/tcp"),
            "{err}"
        );
        let err = parse("title = 'x'\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("capsule.toml:1:1: title: unknown field"),
            "{err}"
        );
    }
}
