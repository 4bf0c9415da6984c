//! A small blocking client of the OCI distribution protocol: `capsule pull`, `push`,
//! `login` and `logout`, and `run --image REF` pulling on first use. One file per
//! concern:
//!
//! - [`client`]: one registry's HTTP: the scheme (https; plain http only for
//!   loopback registries and those the user names with `--tls-verify=false`), the
//!   `Authorization` each request carries, retries with backoff on 429 and 5xx;
//! - [`auth`]: the `WWW-Authenticate` challenge, Bearer tokens, Basic;
//! - [`credentials`]: where users keep their credentials (containers-auth order,
//!   docker's `credHelpers`/`credsStore`), `login`/`logout` writing them;
//! - [`manifest`]: manifests and indexes, the platform chosen from an index;
//! - [`blob`]: a blob downloaded and verified while it streams, resumed with `Range`;
//! - [`pull`], [`push`]: the commands.
//!
//! Invariants: nothing a registry says is trusted before its digest is checked (a
//! manifest, a configuration, a layer; never `Docker-Content-Digest`); the store
//! changes only once the whole image is verified ([`super::import::install`]);
//! credentials are never printed, logged or put in an error message.

pub mod auth;
pub mod blob;
pub mod client;
pub mod credentials;
pub mod manifest;
pub mod pull;
pub mod push;

use std::path::PathBuf;

use super::ImageError;

/// Why talking to a registry failed: one line naming the registry or image.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: cannot reach the registry: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("{registry}: authentication required (capsule login {registry})")]
    NeedsCredentials { registry: String },
    #[error(
        "{registry}: the registry refused the credentials of {user} (capsule login {registry})"
    )]
    BadCredentials { registry: String, user: String },
    #[error("{what}: access denied by the registry")]
    Denied { what: String },
    #[error("{what}: not found on the registry")]
    NotFound { what: String },
    #[error("{what}: the registry answered {status}{detail}")]
    Status {
        what: String,
        status: u16,
        detail: String,
    },
    /// A document or blob that cannot be used; the text names it.
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {}", .path.display(), crate::describe_io(.error))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// How to reach registries, from the command's flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--tls-verify=false`: the registry the user named may answer plain HTTP or
    /// https with a certificate nobody signed.
    pub tls_verify: bool,
    /// `--platform`; this machine's when `None`.
    pub platform: Option<super::spec::Platform>,
    /// `--quiet`: no progress, no line per layer.
    pub quiet: bool,
    /// `--cert-dir`: the registry's CA certificates (`*.crt`) and client certificate
    /// (`NAME.cert` + `NAME.key`), instead of the `HOST[:PORT]` directories of the
    /// user's and the system's `certs.d`.
    pub cert_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls_verify: true,
            platform: None,
            quiet: false,
            cert_dir: None,
        }
    }
}

/// Where the registry of `domain` answers: Docker Hub's API is not at `docker.io`.
pub fn api_host(domain: &str) -> &str {
    if domain == "docker.io" {
        "registry-1.docker.io"
    } else {
        domain
    }
}

/// Whether `domain` (host[:port]) is this machine, where docker allows plain HTTP.
pub fn is_loopback(domain: &str) -> bool {
    let host = match domain.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => domain.rsplit_once(':').map_or(domain, |(h, _)| h),
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        for yes in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "docker.io",
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example:5000",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }
}
