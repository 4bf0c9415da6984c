//! `capsule pull`: flags, then the library's `image::registry`, then one line.

use std::io::Write;

use anyhow::Context as _;
use capsule_loader::image::registry::{self, pull};
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
    /// No progress and no line per layer; only the result
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

fn store() -> anyhow::Result<Store> {
    let cwd = std::env::current_dir().ok();
    let home = capsule_loader::state::Home::resolve(|key| std::env::var_os(key), cwd.as_deref())?;
    Ok(Store::new(home.root()))
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
        platform,
        quiet,
    })
}

pub fn pull(args: PullArgs) -> anyhow::Result<()> {
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

/// `run --image REF` pulling as `--pull` says, before the capsule is prepared.
pub fn pull_for_run(
    reference: &str,
    policy: PullPolicy,
    tls: &TlsArgs,
    platform: Option<&str>,
) -> anyhow::Result<()> {
    let options = options(tls, platform, false)?;
    if let Some(done) = pull::ensure(&store()?, reference, policy.into(), &options)
        .with_context(|| format!("--image {reference}: pull"))?
    {
        log::info!("pulled {} sha256:{}", done.reference, done.id.hex());
    }
    Ok(())
}
