//! `capsule build`: flags, then the library's `build` module, then the image id.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use capsule_loader::build::{self, Options};
use clap::Args;

pub const LONG_ABOUT: &str = "\
Build an image from a Containerfile (or Dockerfile) as an ordinary user: no root, no \
daemon. Each RUN runs in a capsule of the image so far (fake root unless USER says \
otherwise) and its private layer becomes the step's layer; COPY and ADD read the build \
context (less what .containerignore or .dockerignore leaves out); ENV, ARG, WORKDIR, \
USER, CMD, ENTRYPOINT, EXPOSE, LABEL, SHELL, VOLUME and STOPSIGNAL change the \
configuration. Multi-stage builds (FROM … AS name, COPY --from=name) and FROM scratch \
work; FROM names an image of the store (pulled from its registry when the store does not \
have it, as capsule pull does) or an earlier stage.

A step whose parent, instruction and (COPY, ADD) files did not change is taken from the \
cache, so a rebuild runs only what changed. Everything that can be checked (the file, \
FROM images, COPY sources, variables) is checked before the first step runs, and an \
error names FILE:LINE. Not supported (refused with its line): ONBUILD, HEALTHCHECK, \
MAINTAINER, RUN --mount, here-documents, ADD of URLs and git repositories.";

pub const AFTER_HELP: &str = "\
Examples:
  capsule build -t app:1 .
  capsule build -t app:dev -f build/Containerfile --build-arg VERSION=2.1 --target dev .
  capsule run --rm --image app:1";

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name the image REF (repeatable), as capsule image tag does
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tags: Vec<String>,
    /// The Containerfile (default: Containerfile, else Dockerfile, in CONTEXT)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Give ARG KEY the value VALUE (KEY alone: the value of $KEY here)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build the stages up to STAGE (FROM … AS STAGE) and make it the image
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Run every step, taking nothing from the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Print only the image id (a failing RUN's output is still shown)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The build context: the directory COPY and ADD read
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().ok();
    let home = capsule_loader::state::Home::resolve(|key| std::env::var_os(key), cwd.as_deref())?;
    let build_args = args
        .build_args
        .iter()
        .map(|a| build::parse_build_arg(a).map_err(|e| anyhow!("build: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let capsule = std::env::current_exe().context("build: the capsule executable")?;
    let options = Options {
        home: home.root().to_path_buf(),
        context: args.context,
        file: args.file,
        tags: args.tags,
        build_args,
        target: args.target,
        no_cache: args.no_cache,
        quiet: args.quiet,
        capsule,
    };
    let mut out = std::io::stdout().lock();
    let built = build::build(&options, &mut out).map_err(|e| anyhow!("build: {e}"))?;
    if !options.quiet {
        for tag in &options.tags {
            writeln!(out, "Successfully tagged {tag}")?;
        }
        writeln!(
            out,
            "{} steps run, {} from the cache",
            built.ran, built.cached
        )?;
    }
    writeln!(out, "{}", built.id)?;
    Ok(())
}
