//! `capsule build`: an image from a Containerfile, without root or a daemon.
//!
//! Each step makes a new image in the store from the one before it: RUN runs its
//! command with `capsule run --image` (fake root unless USER says otherwise, the
//! image's Env, WorkingDir and User, the stage's ARGs in its environment) and commits
//! the capsule's private layer; COPY, ADD and a WORKDIR that does not exist yet make a
//! layer in the staging area ([`copy`]); the other instructions change only the
//! configuration. A step cache keyed by the parent image, the instruction as
//! expanded and (COPY, ADD) the checksum of the files it reads lets a rebuild reuse
//! every step whose inputs did not change.
//!
//! Everything that can be checked is checked before the first step runs: the
//! Containerfile ([`containerfile`]), the images FROM names, the stages COPY
//! `--from` names, `--target`, the variables ([`words`]) and the files COPY reads in
//! the context ([`context`]). An error names `FILE:LINE`.

pub mod containerfile;
pub mod context;
pub mod copy;
pub mod words;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::image::commit;
use crate::image::digest::Digest;
use crate::image::layer;
use crate::image::store::Store;
use crate::image::ImageError;
use containerfile::{Copy, EnvForm, Instruction, Kind};
use context::{Ignore, Tree};
use words::Vars;

/// What `capsule build` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub home: PathBuf,
    pub context: PathBuf,
    /// `-f`; default: `Containerfile`, else `Dockerfile`, in the context.
    pub file: Option<PathBuf>,
    pub tags: Vec<String>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// Only the image id on standard output; RUN output only when a step fails.
    pub quiet: bool,
    /// The `capsule` executable RUN steps are run with.
    pub capsule: PathBuf,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    pub id: String,
    /// Steps that made an image: run, or taken from the cache.
    pub ran: usize,
    pub cached: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// At a line of the Containerfile.
    #[error("{file}:{line}: {reason}")]
    At {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{0}")]
    Io(String),
}

/// The default shell of RUN, CMD and ENTRYPOINT in shell form.
const SHELL: [&str; 2] = ["/bin/sh", "-c"];
/// Names of the capsules RUN steps use: `capsule-build-PID-N`.
const RUN_PREFIX: &str = "capsule-build-";

/// One stage's state as the steps go.
#[derive(Debug, Clone)]
struct Stage {
    alias: Option<String>,
    /// The image so far (id hex); `None` while checking (nothing made yet).
    image: Option<String>,
    /// Its configuration (the `config` object of the image configuration).
    config: Map<String, Value>,
    /// ARGs declared in the stage, with their values.
    args: Vars,
    shell: Vec<String>,
}

impl Stage {
    /// What `$NAME` means in this stage: its ARGs, then the image's Env over them.
    fn vars(&self) -> Vars {
        let mut vars = self.args.clone();
        for (k, v) in env_pairs(&self.config) {
            vars.insert(k, v);
        }
        vars
    }

    fn workdir(&self) -> PathBuf {
        match self.config.get("WorkingDir").and_then(Value::as_str) {
            Some(w) if !w.is_empty() => PathBuf::from(w),
            _ => PathBuf::from("/"),
        }
    }
}

/// The object `config[key]` (`Labels`, `ExposedPorts`, `Volumes`), empty if none.
fn object_of(config: &Map<String, Value>, key: &str) -> Map<String, Value> {
    config
        .get(key)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn env_pairs(config: &Map<String, Value>) -> Vec<(String, String)> {
    config
        .get("Env")
        .and_then(Value::as_array)
        .map(|env| {
            env.iter()
                .filter_map(Value::as_str)
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What one step does, with its variables expanded: what the cache keys on.
#[derive(Debug, Clone)]
enum Action {
    Run {
        argv: Vec<String>,
        env: Vec<(String, String)>,
    },
    Copy {
        /// Root the sources are read from, and whether it is the context.
        from: PathBuf,
        context: bool,
        /// Sources relative to `from`.
        sources: Vec<PathBuf>,
        dest: PathBuf,
        dest_is_dir: bool,
        chown: Option<String>,
        chmod: Option<u32>,
        add: bool,
    },
    /// WORKDIR: the directory made when the image lacks it, and the config change.
    Workdir(PathBuf),
    /// Configuration only.
    Config(Map<String, Value>),
}

struct Builder<'a> {
    options: &'a Options,
    store: Store,
    file_name: String,
    escape: char,
    ignore: Ignore,
    out: &'a mut dyn Write,
    /// Finished stages: alias (or index) → image id (hex) and root.
    stages: Vec<Stage>,
    cached: usize,
    ran: usize,
}

/// Builds the image; progress goes to `out` (nothing with `quiet`).
pub fn build(options: &Options, out: &mut dyn Write) -> Result<Built, BuildError> {
    let (file, file_name) = containerfile_path(options)?;
    let text = fs::read_to_string(&file)
        .map_err(|e| BuildError::Io(format!("{}: {}", file.display(), crate::describe_io(&e))))?;
    let parsed = containerfile::parse(&text).map_err(|e| BuildError::At {
        file: file_name.clone(),
        line: e.line,
        reason: e.reason,
    })?;
    for tag in &options.tags {
        crate::image::store::check_reference(tag)?;
    }
    let ignore = Ignore::read(&options.context).map_err(|e| {
        BuildError::Io(format!(
            "{}: ignore file: {}",
            options.context.display(),
            crate::describe_io(&e)
        ))
    })?;
    let mut builder = Builder {
        options,
        store: Store::new(&options.home),
        file_name,
        escape: parsed.escape,
        ignore,
        out,
        stages: Vec::new(),
        cached: 0,
        ran: 0,
    };
    let plan = builder.plan(&parsed.instructions)?;
    // Everything is checked: now the steps run.
    builder.collect_leftovers();
    builder.stages.clear();
    let id = builder.execute(&plan)?;
    for tag in &options.tags {
        crate::image::catalog::tag(&options.home, &id, tag)?;
    }
    Ok(Built {
        id,
        ran: builder.ran,
        cached: builder.cached,
    })
}

fn containerfile_path(options: &Options) -> Result<(PathBuf, String), BuildError> {
    if !options.context.is_dir() {
        return Err(BuildError::Invalid(format!(
            "{}: the build context is not a directory",
            options.context.display()
        )));
    }
    if let Some(file) = &options.file {
        return Ok((file.clone(), file.display().to_string()));
    }
    for name in ["Containerfile", "Dockerfile"] {
        let path = options.context.join(name);
        if path.is_file() {
            return Ok((path, name.to_string()));
        }
    }
    Err(BuildError::Invalid(format!(
        "{}: no Containerfile or Dockerfile (name one with -f)",
        options.context.display()
    )))
}

/// The stages to build, each a FROM and its instructions, and the global ARGs.
struct Plan<'a> {
    global: Vec<&'a Instruction>,
    stages: Vec<(&'a Instruction, Vec<&'a Instruction>)>,
}

impl Builder<'_> {
    fn at(&self, line: usize, reason: impl Into<String>) -> BuildError {
        BuildError::At {
            file: self.file_name.clone(),
            line,
            reason: reason.into(),
        }
    }

    /// Splits the file into stages, keeps those up to `--target`, and checks every
    /// step without running any.
    fn plan<'a>(&mut self, instructions: &'a [Instruction]) -> Result<Plan<'a>, BuildError> {
        let mut plan = Plan {
            global: Vec::new(),
            stages: Vec::new(),
        };
        for i in instructions {
            match (&i.kind, plan.stages.last_mut()) {
                (Kind::From { .. }, _) => plan.stages.push((i, Vec::new())),
                (_, Some((_, body))) => body.push(i),
                (_, None) => plan.global.push(i),
            }
        }
        if let Some(target) = &self.options.target {
            let target = target.to_ascii_lowercase();
            let at = plan
                .stages
                .iter()
                .position(|(from, _)| {
                    matches!(&from.kind, Kind::From { alias: Some(a), .. } if *a == target)
                })
                .ok_or_else(|| {
                    BuildError::Invalid(format!("--target {target}: no stage of that name"))
                })?;
            plan.stages.truncate(at + 1);
        }
        let used: BTreeSet<&str> = instructions
            .iter()
            .filter_map(|i| match &i.kind {
                Kind::Arg { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        for (name, _) in &self.options.build_args {
            if !used.contains(name.as_str()) {
                log::warn!("--build-arg {name}: no ARG of the Containerfile takes it");
            }
        }
        let global = self.global_args(&plan.global)?;
        for (from, body) in &plan.stages {
            let mut stage = self.from(from, &global, true)?;
            for step in body {
                let action = self.action(&mut stage, step)?;
                self.apply(&mut stage, step, &action, None)?;
            }
            // What a stage's steps make is not known until they run.
            stage.image = None;
            self.stages.push(stage);
        }
        Ok(plan)
    }

    fn global_args(&self, global: &[&Instruction]) -> Result<Vars, BuildError> {
        let mut vars = Vars::new();
        for i in global {
            if let Kind::Arg { name, default } = &i.kind {
                let value = self.arg_value(name, default.as_deref(), &vars, i.line)?;
                if let Some(value) = value {
                    vars.insert(name.clone(), value);
                }
            }
        }
        Ok(vars)
    }

    /// An ARG's value: `--build-arg`, else its default (expanded), else unset.
    fn arg_value(
        &self,
        name: &str,
        default: Option<&str>,
        vars: &Vars,
        line: usize,
    ) -> Result<Option<String>, BuildError> {
        if let Some((_, v)) = self.options.build_args.iter().find(|(k, _)| k == name) {
            return Ok(Some(v.clone()));
        }
        default
            .map(|d| words::expand(d, vars, self.escape).map_err(|e| self.at(line, e)))
            .transpose()
    }

    /// A stage's FROM: the image, stage or `scratch` it starts from.
    fn from(
        &mut self,
        from: &Instruction,
        global: &Vars,
        checking: bool,
    ) -> Result<Stage, BuildError> {
        let Kind::From { image, alias, .. } = &from.kind else {
            unreachable!("a stage starts with FROM");
        };
        let image = words::expand(image, global, self.escape).map_err(|e| self.at(from.line, e))?;
        let named = image.to_ascii_lowercase();
        let (id, config) = if let Some(stage) = self
            .stages
            .iter()
            .find(|s| s.alias.as_deref() == Some(named.as_str()))
        {
            (stage.image.clone(), stage.config.clone())
        } else if named == "scratch" {
            let id = if checking {
                None
            } else {
                Some(self.scratch()?)
            };
            (id, Map::new())
        } else {
            // An image the store lacks is pulled, as docker build does.
            let options = crate::image::registry::Options {
                quiet: self.options.quiet,
                ..Default::default()
            };
            let pulled = crate::image::registry::pull::ensure(
                &self.store,
                &image,
                crate::image::registry::pull::Policy::Missing,
                &options,
            )
            .err()
            .map(|e| format!(" (pull: {e})"))
            .unwrap_or_default();
            let index = self.store.read_index()?;
            let (id, _) = self.store.resolve(&index, &image).map_err(|e| match e {
                ImageError::NotFound(_) => self.at(
                    from.line,
                    format!("FROM {image}: no such image or stage (capsule image import or pull, or an earlier stage){pulled}"),
                ),
                e => self.at(from.line, e.to_string()),
            })?;
            let config = self.config_of(&id)?;
            (Some(id), config)
        };
        Ok(Stage {
            alias: alias.clone(),
            image: id,
            config,
            args: Vars::new(),
            shell: SHELL.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// The empty image FROM scratch starts from (the same id every time).
    fn scratch(&self) -> Result<String, BuildError> {
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
        });
        let bytes = serde_json::to_vec(&config).map_err(|e| BuildError::Invalid(e.to_string()))?;
        let id = Digest::of(&bytes).hex().to_string();
        if self.store.read_index()?.images.contains_key(&id) {
            self.cache_put("scratch", &id)?;
            return Ok(id);
        }
        self.store.create()?;
        let staging = self.store.staging()?;
        let owners = crate::image::owners::Owners::current();
        crate::image::import::install(&self.store, &staging, Vec::new(), &bytes, None, owners)?;
        // Listed with the build's intermediate images, not as an image of its own.
        self.cache_put("scratch", &id)?;
        Ok(id)
    }

    fn config_of(&self, id: &str) -> Result<Map<String, Value>, BuildError> {
        let value: Value = serde_json::from_slice(&self.store.config_bytes(id)?)
            .map_err(|e| BuildError::Invalid(format!("image {id}: bad configuration: {e}")))?;
        Ok(value
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default())
    }

    fn root_of(&self, id: &str) -> Result<PathBuf, BuildError> {
        let index = self.store.read_index()?;
        let record = index
            .images
            .get(id)
            .ok_or_else(|| BuildError::Invalid(format!("image {id}: no longer in the store")))?;
        Ok(self.store.root_path(&record.root))
    }

    /// What `step` does in `stage`, expanded; checks what can be checked.
    fn action(&self, stage: &mut Stage, step: &Instruction) -> Result<Action, BuildError> {
        let line = step.line;
        let vars = stage.vars();
        let expand = |t: &str| words::expand(t, &vars, self.escape).map_err(|e| self.at(line, e));
        let split = |t: &str| words::split(t, &vars, self.escape).map_err(|e| self.at(line, e));
        let mut config = Map::new();
        let set = |config: &mut Map<String, Value>, key: &str, value: Value| {
            config.insert(key.to_string(), value);
        };
        match &step.kind {
            Kind::From { .. } => unreachable!("FROM starts a stage"),
            Kind::Run(command) => {
                let env_keys: BTreeSet<String> = env_pairs(&stage.config)
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                let env = stage
                    .args
                    .iter()
                    .filter(|(k, _)| !env_keys.contains(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Ok(Action::Run {
                    argv: command.argv(&stage.shell),
                    env,
                })
            }
            Kind::Copy(spec) => self.copy_action(stage, spec, line, &vars),
            Kind::Env(form) | Kind::Label(form) => {
                let pairs = self.pairs(form, &vars, line)?;
                if matches!(step.kind, Kind::Env(_)) {
                    let mut env = env_pairs(&stage.config);
                    for (k, v) in pairs {
                        containerfile::check_variable_name(line, &k)
                            .map_err(|e| self.at(line, e.reason))?;
                        env.retain(|(key, _)| *key != k);
                        env.push((k, v));
                    }
                    let env = env
                        .into_iter()
                        .map(|(k, v)| Value::String(format!("{k}={v}")));
                    set(&mut config, "Env", Value::Array(env.collect()));
                } else {
                    let mut labels = object_of(&stage.config, "Labels");
                    for (k, v) in pairs {
                        labels.insert(k, Value::String(v));
                    }
                    set(&mut config, "Labels", Value::Object(labels));
                }
                Ok(Action::Config(config))
            }
            Kind::Arg { name, default } => {
                let value = self.arg_value(name, default.as_deref(), &vars, line)?;
                match value {
                    Some(v) => stage.args.insert(name.clone(), v),
                    None => stage.args.remove(name),
                };
                Ok(Action::Config(config))
            }
            Kind::Workdir(dir) => {
                let dir = stage.workdir().join(expand(dir)?);
                Ok(Action::Workdir(dir))
            }
            Kind::User(user) => {
                set(&mut config, "User", Value::String(expand(user)?));
                Ok(Action::Config(config))
            }
            Kind::Cmd(command) | Kind::Entrypoint(command) => {
                let argv: Vec<Value> = command
                    .argv(&stage.shell)
                    .into_iter()
                    .map(Value::String)
                    .collect();
                let key = if matches!(step.kind, Kind::Cmd(_)) {
                    "Cmd"
                } else {
                    // A new entrypoint drops the Cmd the image had, as Docker does.
                    set(&mut config, "Cmd", Value::Null);
                    "Entrypoint"
                };
                set(&mut config, key, Value::Array(argv));
                Ok(Action::Config(config))
            }
            Kind::Expose(ports) => {
                let mut exposed = object_of(&stage.config, "ExposedPorts");
                for port in split(ports)? {
                    let (number, proto) = port.split_once('/').unwrap_or((&port, "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    if number.parse::<u16>().map_or(true, |n| n == 0)
                        || !matches!(proto.as_str(), "tcp" | "udp" | "sctp")
                    {
                        return Err(self.at(line, format!("EXPOSE {port}: not PORT[/tcp|udp]")));
                    }
                    exposed.insert(format!("{number}/{proto}"), json!({}));
                }
                set(&mut config, "ExposedPorts", Value::Object(exposed));
                Ok(Action::Config(config))
            }
            Kind::Shell(argv) => {
                stage.shell = argv.clone();
                Ok(Action::Config(config))
            }
            Kind::Volume(paths) => {
                let mut volumes = object_of(&stage.config, "Volumes");
                for path in paths {
                    for path in split(path)? {
                        volumes.insert(path, json!({}));
                    }
                }
                set(&mut config, "Volumes", Value::Object(volumes));
                Ok(Action::Config(config))
            }
            Kind::StopSignal(signal) => {
                set(&mut config, "StopSignal", Value::String(expand(signal)?));
                Ok(Action::Config(config))
            }
        }
    }

    fn pairs(
        &self,
        form: &EnvForm,
        vars: &Vars,
        line: usize,
    ) -> Result<Vec<(String, String)>, BuildError> {
        match form {
            EnvForm::Single { key, value } => Ok(vec![(
                key.clone(),
                words::expand(value, vars, self.escape).map_err(|e| self.at(line, e))?,
            )]),
            EnvForm::Pairs(text) => {
                // Later pairs of one ENV see the earlier ones only from the next
                // instruction on, as in Docker.
                let mut out = Vec::new();
                for word in words::split(text, vars, self.escape).map_err(|e| self.at(line, e))? {
                    let Some((k, v)) = word.split_once('=') else {
                        return Err(self.at(line, format!("{word}: not KEY=VALUE")));
                    };
                    if k.is_empty() {
                        return Err(self.at(line, format!("{word}: empty key")));
                    }
                    out.push((k.to_string(), v.to_string()));
                }
                Ok(out)
            }
        }
    }

    fn copy_action(
        &self,
        stage: &Stage,
        spec: &Copy,
        line: usize,
        vars: &Vars,
    ) -> Result<Action, BuildError> {
        let expand = |t: &str| words::expand(t, vars, self.escape).map_err(|e| self.at(line, e));
        let mut origin = "the build context".to_string();
        let (from, is_context) = match &spec.from {
            None => (self.options.context.clone(), true),
            Some(name) => {
                let name = expand(name)?.to_ascii_lowercase();
                origin = format!("--from={name}");
                let by_index = name.parse::<usize>().ok().and_then(|n| self.stages.get(n));
                let by_alias = self
                    .stages
                    .iter()
                    .find(|s| s.alias.as_deref() == Some(name.as_str()));
                match by_alias.or(by_index) {
                    Some(s) => match &s.image {
                        Some(id) => (self.root_of(id)?, false),
                        // While checking, the stage's root does not exist yet.
                        None => (PathBuf::new(), false),
                    },
                    None => {
                        let index = self.store.read_index()?;
                        let (id, _) = self.store.resolve(&index, &name).map_err(|_| {
                            self.at(
                                line,
                                format!(
                                    "COPY --from={name}: no earlier stage or image of that name"
                                ),
                            )
                        })?;
                        (self.root_of(&id)?, false)
                    }
                }
            }
        };
        let dest_text = expand(&spec.dest)?;
        let dest = stage.workdir().join(&dest_text);
        let mut sources = Vec::new();
        let checking = from.as_os_str().is_empty();
        for source in &spec.sources {
            let source = expand(source)?;
            if checking {
                continue;
            }
            let tree = Tree {
                root: &from,
                ignore: is_context.then_some(&self.ignore),
            };
            let found = tree
                .find(&source)
                .map_err(|e| self.at(line, e.replace("the build context", &origin)))?;
            sources.extend(found);
        }
        let chmod = spec
            .chmod
            .as_deref()
            .map(|m| u32::from_str_radix(m, 8).unwrap_or(0o644));
        let chown = spec.chown.as_deref().map(expand).transpose()?;
        let dest_is_dir =
            copy::ends_with_slash(&dest_text) || spec.sources.len() > 1 || sources.len() > 1;
        Ok(Action::Copy {
            from,
            context: is_context,
            sources,
            dest,
            dest_is_dir,
            chown,
            chmod,
            add: spec.add,
        })
    }

    /// Changes the stage's in-memory configuration as `action` does (while checking,
    /// and after a step ran or came from the cache when `image` is given).
    fn apply(
        &self,
        stage: &mut Stage,
        _step: &Instruction,
        action: &Action,
        image: Option<String>,
    ) -> Result<(), BuildError> {
        match action {
            Action::Config(changes) => {
                for (k, v) in changes {
                    if v.is_null() {
                        stage.config.remove(k);
                    } else {
                        stage.config.insert(k.clone(), v.clone());
                    }
                }
            }
            Action::Workdir(dir) => {
                stage.config.insert(
                    "WorkingDir".into(),
                    Value::String(dir.display().to_string()),
                );
            }
            Action::Run { .. } | Action::Copy { .. } => {}
        }
        if let Some(id) = image {
            stage.config = self.config_of(&id)?;
            stage.image = Some(id);
        }
        Ok(())
    }

    fn collect_leftovers(&self) {
        let home = crate::state::Home::at(&self.options.home);
        let dir = self.options.home.join(capsule_config::layout::CAPSULES_DIR);
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(RUN_PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
            // SAFETY: signal 0 only checks whether the process exists.
            let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
            if !alive {
                let _ = crate::manage::rm::rm(&home, &name, true);
            }
        }
    }

    fn execute(&mut self, plan: &Plan<'_>) -> Result<String, BuildError> {
        let total: usize = plan.stages.iter().map(|(_, body)| body.len() + 1).sum();
        let global = self.global_args(&plan.global)?;
        let mut n = 0;
        for (from, body) in &plan.stages {
            n += 1;
            self.say(format_args!("STEP {n}/{total}: {}", from.text))?;
            let mut stage = self.from(from, &global, false)?;
            for step in body {
                n += 1;
                self.say(format_args!("STEP {n}/{total}: {}", step.text))?;
                let action = self.action(&mut stage, step)?;
                // ARG and SHELL change only the build's own state: no image.
                if matches!(&action, Action::Config(c) if c.is_empty()) {
                    self.apply(&mut stage, step, &action, None)?;
                    continue;
                }
                let parent = stage.image.clone().unwrap_or_default();
                let key = self.cache_key(&parent, step, &action)?;
                let id = match self.cache_get(&key) {
                    Some(id) if !self.options.no_cache => {
                        self.cached += 1;
                        self.say(format_args!("--> Using cache {}", &id[..12]))?;
                        id
                    }
                    _ => {
                        let id = self.run_step(&parent, step, &action, n)?;
                        self.ran += 1;
                        self.cache_put(&key, &id)?;
                        self.say(format_args!("--> {}", &id[..12]))?;
                        id
                    }
                };
                self.apply(&mut stage, step, &action, Some(id))?;
            }
            self.stages.push(stage);
        }
        let last = self.stages.last().and_then(|s| s.image.clone());
        last.ok_or_else(|| BuildError::Invalid("no stage was built".into()))
    }

    fn say(&mut self, line: std::fmt::Arguments<'_>) -> Result<(), BuildError> {
        if self.options.quiet {
            return Ok(());
        }
        writeln!(self.out, "{line}").map_err(|e| BuildError::Io(crate::describe_io(&e)))
    }

    fn cache_dir(&self) -> PathBuf {
        self.store.build_cache_dir()
    }

    /// The parent, the step as expanded, and what it reads.
    fn cache_key(
        &self,
        parent: &str,
        step: &Instruction,
        action: &Action,
    ) -> Result<String, BuildError> {
        let mut hash = Sha256::new();
        hash.update(parent.as_bytes());
        hash.update([0]);
        hash.update(format!("{:?}", step.kind).as_bytes());
        hash.update([0]);
        match action {
            Action::Copy {
                from,
                context,
                sources,
                ..
            } => {
                let tree = Tree {
                    root: from,
                    ignore: context.then_some(&self.ignore),
                };
                let sum = tree
                    .checksum(sources)
                    .map_err(|e| self.at(step.line, crate::describe_io(&e)))?;
                // Where the files are (a stage's root changes with every rebuild of
                // it) is not what counts: what they hold is.
                let mut shown = action.clone();
                if let Action::Copy { from, .. } = &mut shown {
                    *from = PathBuf::new();
                }
                hash.update(format!("{shown:?}").as_bytes());
                hash.update(sum.as_bytes());
            }
            other => hash.update(format!("{other:?}").as_bytes()),
        }
        Ok(format!("{:x}", hash.finalize()))
    }

    fn cache_get(&self, key: &str) -> Option<String> {
        let id = fs::read_to_string(self.cache_dir().join(key)).ok()?;
        let id = id.trim().to_string();
        let index = self.store.read_index().ok()?;
        index.images.contains_key(&id).then_some(id)
    }

    fn cache_put(&self, key: &str, id: &str) -> Result<(), BuildError> {
        let dir = self.cache_dir();
        let io =
            |e: io::Error| BuildError::Io(format!("{}: {}", dir.display(), crate::describe_io(&e)));
        fs::create_dir_all(&dir).map_err(io)?;
        let temp = dir.join(format!(".{key}.{}", std::process::id()));
        fs::write(&temp, format!("{id}\n")).map_err(io)?;
        fs::rename(&temp, dir.join(key)).map_err(io)
    }

    /// Makes the image of one step over `parent`.
    fn run_step(
        &mut self,
        parent: &str,
        step: &Instruction,
        action: &Action,
        n: usize,
    ) -> Result<String, BuildError> {
        let created_by = format!("capsule build: {}", step.text);
        let home = self.options.home.clone();
        let line = step.line;
        let file = self.file_name.clone();
        let at = |e: String| BuildError::At {
            file: file.clone(),
            line,
            reason: e,
        };
        let digest = match action {
            Action::Config(changes) => {
                let changes = changes.clone();
                commit::derive(
                    &home,
                    parent,
                    &created_by,
                    None,
                    |c| edit_config(c, &changes),
                    |_, _| Ok(None),
                )?
            }
            Action::Run { argv, env } => {
                let name = format!("{RUN_PREFIX}{}-{n}", std::process::id());
                let result = self.run_command(&name, parent, argv, env, step);
                let made = result.and_then(|()| {
                    commit::commit_layer(&home, &name, None, &created_by).map_err(BuildError::from)
                });
                let _ = crate::manage::rm::rm(&crate::state::Home::at(&home), &name, true);
                made?
            }
            Action::Workdir(dir) => {
                let lower = self.root_of(parent)?;
                let rel = copy::resolve(&lower, dir, true).map_err(at)?;
                let changes: Map<String, Value> = [(
                    "WorkingDir".to_string(),
                    Value::String(dir.display().to_string()),
                )]
                .into_iter()
                .collect();
                let exists = lower.join(&rel).is_dir();
                commit::derive(
                    &home,
                    parent,
                    &created_by,
                    None,
                    |c| edit_config(c, &changes),
                    |staging, owners| {
                        if exists {
                            return Ok(None);
                        }
                        staged_layer(staging, owners, |tree| {
                            let mut layer = copy::Layer::new(&lower, tree, owners);
                            layer.ensure_dir(&rel, 0o755, (0, 0))?;
                            layer.finish()
                        })
                    },
                )?
            }
            Action::Copy { .. } => {
                let lower = self.root_of(parent)?;
                let ignore = &self.ignore;
                commit::derive(
                    &home,
                    parent,
                    &created_by,
                    None,
                    |_| Ok(()),
                    |staging, owners| {
                        staged_layer(staging, owners, |tree| {
                            copy_into(&lower, tree, staging.path(), owners, action, ignore)
                                .map_err(|e| format!("{file}:{line}: {e}"))
                        })
                    },
                )?
            }
        };
        Ok(digest.hex().to_string())
    }

    /// `capsule run` of one RUN step, its output passed through (kept for a failure
    /// with `--quiet`).
    fn run_command(
        &mut self,
        name: &str,
        image: &str,
        argv: &[String],
        env: &[(String, String)],
        step: &Instruction,
    ) -> Result<(), BuildError> {
        let mut command = Process::new(&self.options.capsule);
        command
            .args(["run", "--name", name, "--image", image, "--entrypoint", ""])
            .stdin(Stdio::null());
        for (k, v) in env {
            command.arg("-e").arg(format!("{k}={v}"));
        }
        command.arg("--").args(argv);
        let line = step.line;
        let shown = &step.text;
        if self.options.quiet {
            let output = command.output().map_err(|e| {
                self.at(
                    line,
                    format!("cannot start capsule: {}", crate::describe_io(&e)),
                )
            })?;
            if !output.status.success() {
                let _ = io::stderr().write_all(&output.stdout);
                let _ = io::stderr().write_all(&output.stderr);
                return Err(self.at(line, format!("{shown}: {}", describe_status(output.status))));
            }
            return Ok(());
        }
        let _ = self.out.flush();
        let status = command.status().map_err(|e| {
            self.at(
                line,
                format!("cannot start capsule: {}", crate::describe_io(&e)),
            )
        })?;
        if !status.success() {
            return Err(self.at(line, format!("{shown}: {}", describe_status(status))));
        }
        Ok(())
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "failed".into(),
    }
}

/// Applies a step's configuration changes to the whole image configuration.
fn edit_config(config: &mut Value, changes: &Map<String, Value>) -> Result<(), ImageError> {
    if !config.get("config").is_some_and(Value::is_object) {
        config["config"] = json!({});
    }
    let object = config["config"]
        .as_object_mut()
        .expect("made an object above");
    for (k, v) in changes {
        if v.is_null() {
            object.remove(k);
        } else {
            object.insert(k.clone(), v.clone());
        }
    }
    Ok(())
}

/// A layer made by `fill` in a directory of the staging area.
fn staged_layer(
    staging: &crate::image::store::Staging,
    owners: crate::image::owners::Owners,
    fill: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<Option<crate::image::layer::NewLayer>, ImageError> {
    let tree = staging.path().join("tree");
    fs::create_dir(&tree).map_err(|error| ImageError::Io {
        path: tree.clone(),
        error,
    })?;
    fill(&tree).map_err(ImageError::Invalid)?;
    layer::prepare_tree_except(
        &tree,
        &BTreeSet::new(),
        &staging.path().join("layer"),
        owners,
    )
    .map(Some)
}

/// Fills `tree` with what a COPY or ADD puts in the image whose root is `lower`.
fn copy_into(
    lower: &Path,
    tree: &Path,
    staging: &Path,
    owners: crate::image::owners::Owners,
    action: &Action,
    ignore: &Ignore,
) -> Result<(), String> {
    let Action::Copy {
        from,
        context,
        sources,
        dest,
        dest_is_dir,
        chown,
        chmod,
        add,
    } = action
    else {
        unreachable!("copy_into takes a COPY");
    };
    let owner = match chown {
        Some(spec) => {
            let (uid, gid) = copy::chown_owner(lower, spec)?;
            copy::Owner::To(uid, gid)
        }
        None if *context => copy::Owner::To(0, 0),
        None => copy::Owner::Keep,
    };
    let mut layer = copy::Layer::new(lower, tree, owners);
    let into_dir = *dest_is_dir || layer.is_dir(&copy::resolve(lower, dest, true)?);
    for (n, source) in sources.iter().enumerate() {
        // A symbolic link named as a source is followed, inside its root only.
        let real = copy::resolve(from, &Path::new("/").join(source), true)?;
        let path = from.join(&real);
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| format!("{}: {}", source.display(), crate::describe_io(&e)))?;
        if *add && meta.is_file() {
            if let Some(kind) = copy::archive_kind(&path)? {
                let unpacked = staging.join(format!("archive-{n}"));
                fs::create_dir(&unpacked).map_err(|e| crate::describe_io(&e))?;
                copy::unpack_archive(&path, kind, &unpacked, owners)?;
                let entries = copy::entries_of(&unpacked)?;
                // An archive's entries keep their owners unless --chown says otherwise.
                let owner = if chown.is_some() {
                    owner
                } else {
                    copy::Owner::Keep
                };
                layer.copy(&unpacked, &entries, dest, owner, *chmod)?;
                continue;
            }
        }
        if meta.is_dir() {
            let entries: Vec<PathBuf> = Tree {
                root: from,
                ignore: context.then_some(ignore),
            }
            .walk(&real)
            .map_err(|e| crate::describe_io(&e))?
            .into_iter()
            .map(|p| {
                p.strip_prefix(&real)
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            })
            .collect();
            layer.copy(&path, &entries, dest, owner, *chmod)?;
        } else {
            let name = source.file_name().map(PathBuf::from).unwrap_or_default();
            let target = if into_dir {
                dest.join(name)
            } else {
                dest.clone()
            };
            layer.copy(&path, &[PathBuf::new()], &target, owner, *chmod)?;
        }
    }
    layer.finish()
}

/// `KEY=VALUE` build arguments as given to `--build-arg` (`KEY` alone takes the
/// caller's environment, as Docker does).
pub fn parse_build_arg(text: &str) -> Result<(String, String), String> {
    let (k, v) = match text.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (
            text.to_string(),
            std::env::var(text)
                .map_err(|_| format!("--build-arg {text}: not set in the environment"))?,
        ),
    };
    containerfile::check_variable_name(0, &k).map_err(|e| format!("--build-arg {}", e.reason))?;
    Ok((k, v))
}
