//! `capsule pull`, `push`, `login`, `logout`: flags, then the library's `image::registry`,
//! then one line.

use std::io::{BufRead, Read, Write};
use std::os::fd::AsRawFd;

use anyhow::Context as _;
use capsule_loader::image::registry::client::Client;
use capsule_loader::image::registry::credentials::{self, Credentials};
use capsule_loader::image::registry::{self, pull, push};
use capsule_loader::image::spec::Platform;
use capsule_loader::image::store::Store;
use clap::{Args, ValueEnum};

pub const PULL_ABOUT: &str = "\
Pull an image from a registry into the store, as docker pull: the manifest for this \
machine's platform (or --platform) from a manifest list or OCI index, the configuration, \
then the layers the store does not have, several at once; every blob is verified against \
its digest while it downloads, and the store changes only when the whole image is good. \
An interrupted download is resumed where it stopped.

REF is written as docker writes it: `alpine` is docker.io/library/alpine:latest (Docker \
Hub, reached at registry-1.docker.io), `org/app` is docker.io/org/app:latest, and a \
first component with a '.' or a ':' or `localhost` is a registry: ghcr.io/org/app:tag, \
host:5000/app@sha256:…. Registries are reached over https; plain http only for \
localhost and 127.0.0.1 (as docker allows) and for a registry named with \
--tls-verify=false. Credentials come from capsule login (see its help).";

pub const PULL_AFTER_HELP: &str = "\
Examples:
  capsule pull alpine
  capsule pull ghcr.io/org/app:2 --platform linux/arm64
  capsule pull localhost:5000/app@sha256:4f1c…
  capsule pull --all-platforms ghcr.io/org/app:2      # every platform of the index
  capsule run --rm --image alpine -- cat /etc/os-release    # pulls on first use";

/// `--pull` of `capsule run`, as podman's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum PullPolicy {
    /// Pull when the store has no such image
    #[default]
    Missing,
    /// Pull every time (layers the store has are not downloaded again)
    Always,
    /// Never pull
    Never,
}

impl From<PullPolicy> for pull::Policy {
    fn from(policy: PullPolicy) -> pull::Policy {
        match policy {
            PullPolicy::Missing => pull::Policy::Missing,
            PullPolicy::Always => pull::Policy::Always,
            PullPolicy::Never => pull::Policy::Never,
        }
    }
}

/// How to reach the registry, shared by pull, push and login.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Verify the registry's certificate (--tls-verify=false: accept any, and plain
    /// http, for the registry of this command only)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// The registry's CA certificates (*.crt) and client certificate (NAME.cert with
    /// NAME.key) are in DIR (default: HOST[:PORT] under ~/.config/containers/certs.d,
    /// /etc/containers/certs.d and /etc/docker/certs.d)
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: NAME[:TAG] or NAME@sha256:DIGEST, NAME as [REGISTRY/]PATH
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The platform to pick from a multi-platform image, OS/ARCH[/VARIANT]
    /// (default: this machine's)
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Every platform of a multi-platform index (as skopeo copy --all): each image is
    /// stored, REF names this machine's, run --platform picks another without the
    /// network, and push REF sends the index as it was pulled
    #[arg(long)]
    pub all_platforms: bool,
    /// No progress and no line per layer; only the result
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

fn home() -> anyhow::Result<std::path::PathBuf> {
    let cwd = std::env::current_dir().ok();
    let home = capsule_loader::state::Home::resolve(|key| std::env::var_os(key), cwd.as_deref())?;
    Ok(home.root().to_path_buf())
}

fn store() -> anyhow::Result<Store> {
    Ok(Store::new(&home()?))
}

/// The options of a command reaching a registry.
pub fn options(
    tls: &TlsArgs,
    platform: Option<&str>,
    quiet: bool,
) -> anyhow::Result<registry::Options> {
    let platform = platform
        .map(|p| Platform::parse(p).map_err(|e| anyhow::anyhow!("--platform {e}")))
        .transpose()?;
    Ok(registry::Options {
        tls_verify: tls.tls_verify,
        cert_dir: tls.cert_dir.clone(),
        platform,
        quiet,
    })
}

pub fn pull(args: PullArgs) -> anyhow::Result<()> {
    if args.all_platforms {
        return pull_all(args);
    }
    let options = options(&args.tls, args.platform.as_deref(), args.quiet)?;
    let done = pull::pull(&store()?, &args.reference, &options)
        .with_context(|| format!("pull {}", args.reference))?;
    writeln!(
        std::io::stdout().lock(),
        "{} sha256:{} ({} layers, {} new) {}",
        done.reference,
        done.id.hex(),
        done.layers,
        done.new_layers,
        done.manifest
    )?;
    Ok(())
}

/// `pull --all-platforms`: a line per platform, then one for the index.
fn pull_all(args: PullArgs) -> anyhow::Result<()> {
    if args.platform.is_some() {
        return Err(anyhow::anyhow!(
            "pull {}: --all-platforms pulls every platform; it cannot be combined with --platform",
            args.reference
        ));
    }
    let options = options(&args.tls, None, args.quiet)?;
    let done = pull::pull_all(&store()?, &args.reference, &options)
        .with_context(|| format!("pull {}", args.reference))?;
    let mut out = std::io::stdout().lock();
    for (platform, image) in &done.images {
        writeln!(
            out,
            "{} {platform} sha256:{} ({} layers, {} new) {}",
            done.reference,
            image.id.hex(),
            image.layers,
            image.new_layers,
            image.manifest
        )?;
    }
    let skipped = match done.skipped {
        0 => String::new(),
        n => format!(", {n} attestation or unknown entries not pulled"),
    };
    writeln!(
        out,
        "{} {} (index of {} platforms{skipped})",
        done.reference,
        done.digest,
        done.images.len()
    )?;
    Ok(())
}

pub const LOGIN_ABOUT: &str = "\
Log in to a registry: the credentials are checked against it (a Bearer token is \
asked for, or Basic is tried), then recorded in the first of $REGISTRY_AUTH_FILE, \
${XDG_RUNTIME_DIR}/containers/auth.json, ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json \
(mode 0600), as podman login does. pull and push read credentials from those files in \
that order, then from docker's ~/.docker/config.json (including its credHelpers and \
credsStore, through the docker-credential-NAME programs). The password is read from \
the terminal without echo, or from standard input with --password-stdin; it is never \
printed or logged.";

pub const LOGOUT_ABOUT: &str = "\
Forget the credentials capsule login recorded for a registry: its entry is removed \
from the file login writes (the first of $REGISTRY_AUTH_FILE, \
${XDG_RUNTIME_DIR}/containers/auth.json, ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json). \
Credentials in docker's config.json or its helpers are left to docker logout.";

pub const LOGIN_AFTER_HELP: &str = "\
Examples:
  capsule login ghcr.io -u octocat                  # asks for the password
  echo \"$TOKEN\" | capsule login -u bot --password-stdin registry.example.com:5000
  capsule logout ghcr.io";

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry: host[:port] (docker.io for Docker Hub)
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
    /// The user name (asked on the terminal when not given)
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password (or token) from standard input
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry: host[:port] (docker.io for Docker Hub)
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
}

/// Asks `question` on the terminal; the answer without echo unless `echo`.
fn ask(question: &str, echo: bool) -> anyhow::Result<String> {
    let tty = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| anyhow::anyhow!("no terminal to ask on: use -u and --password-stdin"))?;
    let fd = tty.as_raw_fd();
    // SAFETY: a zeroed termios is a valid buffer for tcgetattr to fill.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is the open terminal, `saved` a valid termios.
    let have_termios = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if !echo && have_termios {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above; the settings are restored below.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    (&tty).write_all(question.as_bytes())?;
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    if !echo && have_termios {
        // SAFETY: restores what tcgetattr read.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        let _ = (&tty).write_all(b"\n");
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let what = || format!("login {}", args.registry);
    let domain = credentials::registry_of(&args.registry).with_context(what)?;
    let user = match args.username.clone() {
        Some(user) => user,
        None => ask("Username: ", true).with_context(what)?,
    };
    if user.is_empty() || user.contains(':') {
        return Err(anyhow::anyhow!(
            "{}: a user name, without ':', is needed",
            what()
        ));
    }
    let secret = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(what)?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else {
        ask("Password: ", false).with_context(what)?
    };
    if secret.is_empty() {
        return Err(anyhow::anyhow!("{}: an empty password", what()));
    }
    let credentials = Credentials { user, secret };
    let options = options(&args.tls, None, true)?;
    Client::login(&domain, &options, credentials.clone()).with_context(what)?;
    let file = credentials::store(&domain, &credentials).with_context(what)?;
    writeln!(
        std::io::stdout().lock(),
        "Login Succeeded: {domain} (credentials in {})",
        file.display()
    )?;
    Ok(())
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let what = || format!("logout {}", args.registry);
    let domain = credentials::registry_of(&args.registry).with_context(what)?;
    let file = credentials::login_file().with_context(what)?;
    if !credentials::remove(&domain).with_context(what)? {
        return Err(anyhow::anyhow!(
            "{}: not logged in ({} has no credentials for {domain})",
            what(),
            file.display()
        ));
    }
    writeln!(
        std::io::stdout().lock(),
        "Removed login credentials for {domain} from {}",
        file.display()
    )?;
    Ok(())
}

pub const PUSH_ABOUT: &str = "\
Push an image of the store to a registry, as docker push: IMAGE (a reference or an \
id, for example what capsule commit or capsule build made) goes to DESTINATION, by \
default IMAGE's own name, which must name a registry and a tag \
(host:5000/app:1, ghcr.io/org/app:2). Layers go as the blobs they were pulled or \
imported as (same digests); committed and built ones are packed and gzipped; blobs the \
registry already has are not sent again; the manifest (OCI) is put last. With --with, \
images of other platforms go too, and an OCI index of them all under DESTINATION. \
Credentials and --tls-verify are as for pull (see capsule login --help).";

pub const PUSH_AFTER_HELP: &str = "\
Examples:
  capsule commit work app:2 && capsule push app:2 localhost:5000/app:2
  capsule push ghcr.io/org/app:2
  capsule push app:2-amd64 ghcr.io/org/app:2 --with app:2-arm64   # a multi-platform index";

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image of the store: a reference or an id
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Where to push it: [REGISTRY/]PATH:TAG (default: IMAGE)
    #[arg(value_name = "DESTINATION")]
    pub destination: Option<String>,
    /// Push this image of another platform too, and under DESTINATION an OCI index
    /// of them all (each one's platform from its configuration); repeatable
    #[arg(long = "with", value_name = "IMAGE")]
    pub with: Vec<String>,
    /// No line per blob; only the result
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub fn push(args: PushArgs) -> anyhow::Result<()> {
    let options = options(&args.tls, None, args.quiet)?;
    let done = push::push(
        &home()?,
        &args.image,
        &args.with,
        args.destination.as_deref(),
        &options,
    )
    .with_context(|| format!("push {}", args.image))?;
    writeln!(
        std::io::stdout().lock(),
        "{} {} ({} blobs, {} uploaded)",
        done.reference,
        done.digest,
        done.blobs,
        done.uploaded
    )?;
    Ok(())
}
