//! Container images: import OCI and docker images into a content-addressed store
//! under `$CAPSULE_HOME/images/`, run capsules from them, and turn a capsule's changes
//! back into an image. One module per concern:
//!
//! - [`digest`]: sha256 content addresses, hashing readers and writers;
//! - [`spec`]: the OCI documents, media types, platforms, `docker save`'s manifest;
//! - [`owners`]: file owners and device nodes as the shim's remembered ownership
//!   reads them;
//! - [`unpack`]: one layer tar into a directory, refusing unsafe entries;
//! - [`pack`]: a directory into a layer tar (commit, export);
//! - [`merge`]: an image's layers into its root of hard links (the shim's one lower
//!   layer);
//! - [`formats`]: what `image import` accepts, as one plan;
//! - [`layer`]: a layer verified and unpacked into the staging area;
//! - [`reference`]: image references normalised as Docker does;
//! - [`store`]: the store's layout, index, lock and garbage collection;
//! - [`import`], [`catalog`] (`ls`, `rm`), [`defaults`] (`run --image`), [`diff`],
//!   [`commit`], [`export`]: the commands;
//! - [`registry`]: pulling from and pushing to registries (the OCI distribution
//!   protocol);
//! - [`progress`]: the progress bars of long imports and pulls.

pub mod catalog;
pub mod commit;
pub mod defaults;
pub mod diff;
pub mod digest;
pub mod export;
pub mod formats;
pub mod import;
pub mod layer;
pub mod merge;
pub mod owners;
pub mod pack;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod spec;
pub mod store;
pub mod unpack;

use std::io;
use std::path::PathBuf;

pub use defaults::{record_capsule_image, run_defaults, RunDefaults};

/// Why an image operation failed: one line naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: {}", .path.display(), crate::describe_io(.error))]
    Io { path: PathBuf, error: io::Error },
    /// Input or store content that cannot be used; the text names it.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}: no such image")]
    NotFound(String),
}
