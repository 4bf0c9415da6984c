//! `capsule image import|ls|rm|export`, `capsule diff` and `capsule commit`: flags,
//! then the library's `image` module, then one line or a table on standard output.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use capsule_loader::image::{self, catalog, commit, diff, export, import};
use capsule_loader::state::{self, Home};
use clap::{Args, Subcommand};

pub const LONG_ABOUT: &str = "\
Manage the image store, $CAPSULE_HOME/images: each layer is unpacked once and shared by \
every image and capsule that uses it; each image's layers are merged once into a root of \
hard links, which `capsule run --image REF` uses as the capsule's read-only lower layer \
(so a capsule from an image starts without copying anything).";

pub const AFTER_HELP: &str = "\
Examples:
  capsule image import ./debian.oci --name debian:12     # an OCI layout directory
  capsule image import ./app.tar                         # docker save, OCI archive or rootfs tarball
  capsule image import ./rootfs.tar.zst --name base       # a root file system (.tar, .tar.gz, .tar.zst)
  capsule image ls
  capsule run --image debian:12 -- cat /etc/os-release
  capsule image export debian:12 ./out.oci               # then: skopeo inspect oci:./out.oci
  capsule image export debian:12 ./debian.tar --format docker-archive   # docker load -i
  capsule image rm debian:12
  capsule image prune                                    # untagged images, build cache";

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `image ls` and its top-level spelling `images`, as docker and podman have both.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format: aligned columns, or a JSON array with one object per
    /// reference (`reference`, `id`, `size`, `layers`, `created`, `platform`)
    #[arg(long, value_enum, default_value = "table")]
    pub format: super::ps::Format,
    /// Also the intermediate images capsule build keeps as its step cache
    #[arg(short = 'a', long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image: an OCI layout directory, an OCI archive, a `docker save`
    /// archive, or a root file system (a directory, or a .tar, .tar.gz or .tar.zst)
    Import(ImportArgs),
    /// List images: reference, id, size, layers, created (also `capsule images`)
    Ls(ListArgs),
    /// Remove image references (an id removes the image and all its references);
    /// layers another image or a capsule still uses stay
    Rm {
        /// References (name:tag) or ids.
        #[arg(value_name = "REF", required = true)]
        references: Vec<String>,
    },
    /// Remove every image no reference names, and capsule build's step cache
    Prune,
    /// Give an image another reference, as `docker tag` (references are normalised as
    /// Docker does: `hello`, `library/hello:latest` and `docker.io/library/hello` are
    /// one)
    Tag {
        /// The image: a reference or an id.
        #[arg(value_name = "SOURCE")]
        source: String,
        /// The new reference (name[:tag]).
        #[arg(value_name = "TARGET")]
        target: String,
    },
    /// Write an image as an OCI image layout directory or a docker archive (PATH must
    /// not exist); layers go as the blobs kept when they were pulled or imported, so
    /// their digests and the image id survive export, import and push
    Export {
        #[arg(value_name = "REF")]
        reference: String,
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// oci: an OCI image layout directory (skopeo's oci:PATH); docker-archive: a
        /// tar docker load reads (skopeo's docker-archive:PATH)
        #[arg(long, value_enum, default_value = "oci")]
        format: ExportFormat,
    },
}

/// `image export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Oci,
    DockerArchive,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What to import.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The reference to give the image (name[:tag], default tag latest). Default: the
    /// name the input carries (a tag annotation, docker's RepoTags), else the file name.
    #[arg(long, value_name = "REF")]
    pub name: Option<String>,
    /// The platform to pick from a multi-platform index, OS/ARCH[/VARIANT].
    /// Default: this machine's (e.g. linux/amd64).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
}

/// `capsule diff NAME`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The capsule's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `capsule commit NAME NEWREF`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The capsule's name (it must have been started with --image and not be running).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The new image's reference (name[:tag]).
    #[arg(value_name = "NEWREF")]
    pub reference: String,
}

fn home() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().ok();
    let home = Home::resolve(|key| std::env::var_os(key), cwd.as_deref())?;
    Ok(home.root().to_path_buf())
}

pub fn image(args: ImageArgs) -> anyhow::Result<()> {
    let home = home()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ImageCommand::Import(args) => {
            let store = image::store::Store::new(&home);
            let done = import::import(
                &store,
                &args.path,
                args.name.as_deref(),
                args.platform.as_deref(),
            )
            .with_context(|| format!("image import {}", args.path.display()))?;
            writeln!(
                out,
                "{} {} ({} layers, {} new)",
                done.reference.as_deref().unwrap_or("<none>"),
                done.id,
                done.layers,
                done.new_layers
            )?;
        }
        ImageCommand::Ls(ListArgs {
            format: super::ps::Format::Json,
            all,
        }) => {
            let rows = catalog::list(&home, all).context("image ls")?;
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    serde_json::json!({
                        "reference": (row.reference != "<none>").then_some(&row.reference),
                        "id": format!("sha256:{}", row.id),
                        "size": row.size,
                        "layers": row.layers,
                        "created": row.created,
                        "platform": row.platform,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        ImageCommand::Ls(ListArgs {
            format: super::ps::Format::Table,
            all,
        }) => {
            let rows = catalog::list(&home, all).context("image ls")?;
            let width = rows
                .iter()
                .map(|r| r.reference.len())
                .max()
                .unwrap_or(0)
                .max(9);
            let created_width = rows
                .iter()
                .filter_map(|r| r.created.as_ref().map(String::len))
                .max()
                .unwrap_or(0)
                .max(7);
            writeln!(
                out,
                "{:width$}  {:12}  {:>9}  {:>6}  {:created_width$}  PLATFORM",
                "REFERENCE", "ID", "SIZE", "LAYERS", "CREATED"
            )?;
            for row in rows {
                writeln!(
                    out,
                    "{:width$}  {:12}  {:>9}  {:>6}  {:created_width$}  {}",
                    row.reference,
                    &row.id[..12],
                    human_size(row.size),
                    row.layers,
                    row.created.as_deref().unwrap_or("-"),
                    row.platform.as_deref().unwrap_or("-")
                )?;
            }
        }
        ImageCommand::Rm { references } => {
            for reference in references {
                let removed = catalog::remove(&home, &reference)
                    .with_context(|| format!("image rm {reference}"))?;
                for r in removed.untagged {
                    writeln!(out, "Untagged: {r}")?;
                }
                for id in removed.deleted {
                    writeln!(out, "Deleted: sha256:{id}")?;
                }
            }
        }
        ImageCommand::Prune => {
            let pruned = catalog::prune(&home).context("image prune")?;
            for id in &pruned.images {
                writeln!(out, "Deleted: sha256:{id}")?;
            }
            writeln!(
                out,
                "{} images, {} build cache entries removed",
                pruned.images.len(),
                pruned.cache_entries
            )?;
        }
        ImageCommand::Tag { source, target } => {
            catalog::tag(&home, &source, &target)
                .with_context(|| format!("image tag {source} {target}"))?;
        }
        ImageCommand::Export {
            reference,
            path,
            format,
        } => {
            let format = match format {
                ExportFormat::Oci => export::Format::Oci,
                ExportFormat::DockerArchive => export::Format::DockerArchive,
            };
            let digest = export::export(&home, &reference, &path, format)
                .with_context(|| format!("image export {reference}"))?;
            writeln!(out, "{} {digest}", path.display())?;
        }
    }
    Ok(())
}

pub fn diff(args: DiffArgs) -> anyhow::Result<()> {
    state::validate_name(&args.name).map_err(|e| anyhow!("diff: {e}"))?;
    let home = Home::at(home()?);
    let dir = home.capsule_dir(&args.name);
    if !dir.is_dir() {
        return Err(anyhow!("diff {}: no such capsule", args.name));
    }
    let lower = lower_of(&dir).with_context(|| format!("diff {}", args.name))?;
    let changes = diff::diff(&home.upper_dir(&args.name), &lower)
        .map_err(|e| anyhow!("diff {}: {}", args.name, capsule_loader::describe_io(&e)))?;
    // What the loader wrote (`/etc/hostname`) is not the capsule's change, as docker
    // diff does not show the /etc/hostname it provides.
    let ours = state::loader_written(&dir);
    let mut out = std::io::stdout().lock();
    for (path, change) in changes {
        if path.strip_prefix("/").is_ok_and(|rel| ours.contains(rel)) {
            continue;
        }
        writeln!(out, "{} {}", change.letter(), path.display())?;
    }
    Ok(())
}

/// The capsule's lower layer, from its config: its root, or the host's `/`.
fn lower_of(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(capsule_config::layout::CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("{}: {}", path.display(), capsule_loader::describe_io(&e)))?;
    let pairs =
        capsule_config::parse_config_file(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(pairs
        .into_iter()
        .find(|(k, _)| k == capsule_config::keys::ROOT)
        .map_or_else(|| PathBuf::from("/"), |(_, v)| PathBuf::from(v)))
}

pub fn commit(args: CommitArgs) -> anyhow::Result<()> {
    let home = home()?;
    let done = commit::commit(&home, &args.name, &args.reference)
        .with_context(|| format!("commit {}", args.name))?;
    writeln!(
        std::io::stdout().lock(),
        "{} {}",
        done.reference.as_deref().unwrap_or("<none>"),
        done.id
    )?;
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}
