//! Manifests from a registry: a tag or digest resolved to one image manifest
//! (docker v2 schema 2 or OCI), through a manifest list or OCI index by platform;
//! every document checked against the digest that names it.

use std::io::Read;

use super::client::{Client, Payload};
use super::RegistryError;
use crate::image::digest::Digest;
use crate::image::spec::{self, Index, Manifest, Platform};

/// What `Accept` asks for: the four kinds capsule reads.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// Larger manifests are refused (real ones are a few kB).
const MAX_MANIFEST: u64 = 4 << 20;

/// The image manifest a reference names.
#[derive(Debug)]
pub struct Resolved {
    pub manifest: Manifest,
    /// The digest of the image manifest (not of the index that led to it).
    pub digest: Digest,
    /// The platform was chosen from an index (else the configuration says it).
    pub platform_chosen: bool,
    /// The image manifest as served, and its media type (what a push sends again).
    pub bytes: Vec<u8>,
    pub media_type: String,
}

/// Resolves `reference` (a tag or `sha256:…`) of repository `path`.
pub fn resolve(
    client: &Client,
    path: &str,
    reference: &str,
    platform: &Platform,
) -> Result<Resolved, RegistryError> {
    let expected = match reference.strip_prefix("sha256:") {
        Some(_) => Some(Digest::parse(reference).map_err(RegistryError::Invalid)?),
        None => None,
    };
    let what = format!("manifest {reference}");
    let (mut bytes, mut kind, mut digest) =
        fetch(client, path, reference, expected.as_ref(), &what)?;
    let mut platform_chosen = false;
    for _ in 0..4 {
        match kind.as_str() {
            spec::OCI_MANIFEST | spec::DOCKER_MANIFEST => {
                let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                    RegistryError::Invalid(format!("{what}: not a valid manifest: {e}"))
                })?;
                return Ok(Resolved {
                    manifest,
                    digest,
                    platform_chosen,
                    bytes,
                    media_type: kind,
                });
            }
            spec::OCI_INDEX | spec::DOCKER_LIST => {
                let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
                    RegistryError::Invalid(format!("{what}: not a valid index: {e}"))
                })?;
                let chosen = choose(&index, platform).ok_or_else(|| {
                    let has: Vec<String> = index
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                        .filter(|p| !p.starts_with("unknown/"))
                        .collect();
                    RegistryError::Invalid(format!(
                        "{what}: no image for {platform} (it has {})",
                        if has.is_empty() {
                            "none".into()
                        } else {
                            has.join(", ")
                        }
                    ))
                })?;
                let wanted = Digest::parse(&chosen.digest)
                    .map_err(|e| RegistryError::Invalid(format!("{what}: index: {e}")))?;
                (bytes, kind, digest) =
                    fetch(client, path, &wanted.to_string(), Some(&wanted), &what)?;
                platform_chosen = true;
            }
            schema1 @ ("application/vnd.docker.distribution.manifest.v1+json"
            | "application/vnd.docker.distribution.manifest.v1+prettyjws") => {
                return Err(RegistryError::Invalid(format!(
                    "{what}: {schema1}: a docker schema 1 manifest (deprecated since docker 1.10), not supported: push the image again with a current docker, podman or skopeo"
                )))
            }
            other => {
                return Err(RegistryError::Invalid(format!(
                    "{what}: unknown manifest type {other:?}"
                )))
            }
        }
    }
    Err(RegistryError::Invalid(format!(
        "{what}: indexes nested too deeply"
    )))
}

/// The first entry for `platform`, else the only one that names no platform.
fn choose<'a>(index: &'a Index, platform: &Platform) -> Option<&'a spec::Descriptor> {
    index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(platform)))
        .or_else(|| match index.manifests.as_slice() {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        })
}

/// One manifest document: its bytes, its media type (the document's own, else the
/// `Content-Type`) and its digest, checked against `expected`.
pub fn fetch(
    client: &Client,
    path: &str,
    reference: &str,
    expected: Option<&Digest>,
    what: &str,
) -> Result<(Vec<u8>, String, Digest), RegistryError> {
    let url = format!("{path}/manifests/{reference}");
    let response = client.send("GET", &url, &[("Accept", ACCEPT)], &Payload::None)?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(client.status_error(what, status, response));
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Unreachable {
            registry: client.domain().to_string(),
            reason: crate::describe_io(&e),
        })?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(RegistryError::Invalid(format!(
            "{what}: manifest larger than 4 MiB"
        )));
    }
    let digest = Digest::of(&bytes);
    if let Some(expected) = expected {
        if &digest != expected {
            return Err(RegistryError::Invalid(format!(
                "{what}: the manifest has digest {digest}, not {expected}: refused"
            )));
        }
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let doc: Kind = serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::Invalid(format!("{what}: the manifest is not JSON: {e}")))?;
    let kind = doc
        .media_type
        .or(content_type.filter(|t| t != "application/json" && t != "text/plain"))
        .unwrap_or_else(|| match (doc.schema_version, doc.manifests.is_some()) {
            (Some(1), _) => "application/vnd.docker.distribution.manifest.v1+json".into(),
            (_, true) => spec::OCI_INDEX.into(),
            _ => spec::OCI_MANIFEST.into(),
        });
    Ok((bytes, kind, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_chosen_from_an_index() {
        let index: Index = serde_json::from_str(
            r#"{"schemaVersion":2,"manifests":[
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,
               "platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,
               "platform":{"os":"linux","architecture":"amd64"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":1,
               "platform":{"os":"unknown","architecture":"unknown"}}]}"#,
        )
        .unwrap();
        let pick = |p: &str| choose(&index, &Platform::parse(p).unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64").as_deref(), Some("sha256:bb"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("sha256:aa"));
        assert_eq!(pick("linux/s390x"), None);
    }
}
