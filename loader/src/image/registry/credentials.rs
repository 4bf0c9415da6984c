//! Credentials where users keep them, in the containers-auth order (podman, skopeo,
//! buildah): `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`,
//! `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`, then docker's
//! `${DOCKER_CONFIG:-~/.docker}/config.json`. In each file a `credHelpers` entry for
//! the registry wins, then an `auths` entry (the most specific of `host` and
//! `host/namespace` keys), then the file's `credsStore`; helpers are the
//! `docker-credential-NAME` programs. `capsule login` writes the first of the
//! containers files (mode 0600) and `logout` removes the entry from it.
//!
//! A secret never leaves this module except in an `Authorization` header: the
//! `Debug` of [`Credentials`] hides it and no error message carries it.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{json, Value};

use super::RegistryError;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, secret: <hidden> }}",
            self.user
        )
    }
}

/// The containers-auth files, in the order they are read; the first is the one
/// `login` writes.
fn containers_files(env: &impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let set = |key: &str| env(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut files = Vec::new();
    if let Some(file) = set("REGISTRY_AUTH_FILE") {
        files.push(file);
    }
    if let Some(run) = set("XDG_RUNTIME_DIR") {
        files.push(run.join("containers/auth.json"));
    }
    if let Some(config) = set("XDG_CONFIG_HOME").or_else(|| set("HOME").map(|h| h.join(".config")))
    {
        files.push(config.join("containers/auth.json"));
    }
    files
}

/// Every credentials file, in the order they are read: the containers ones, then
/// docker's.
pub fn auth_files(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let mut files = containers_files(&env);
    let set = |key: &str| env(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(docker) = set("DOCKER_CONFIG").or_else(|| set("HOME").map(|h| h.join(".docker"))) {
        files.push(docker.join("config.json"));
    }
    files
}

fn from_env(key: &str) -> Option<OsString> {
    std::env::var_os(key)
}

/// The credentials for `domain` (as references write it: `docker.io`, `host:5000`)
/// and repository `path`, from the first file that has some.
pub fn lookup(domain: &str, path: &str) -> Result<Option<Credentials>, RegistryError> {
    for file in auth_files(from_env) {
        let text = match fs::read(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(RegistryError::Io { path: file, error }),
        };
        let doc: Value = serde_json::from_slice(&text).map_err(|e| {
            RegistryError::Invalid(format!(
                "{}: not a valid credentials file: {e}",
                file.display()
            ))
        })?;
        if let Some(found) = in_file(&doc, &file, domain, path)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn in_file(
    doc: &Value,
    file: &Path,
    domain: &str,
    path: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let helper_for = doc
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|helpers| {
            helpers
                .iter()
                .filter_map(|(key, name)| Some((specificity(key, domain, path)?, name.as_str()?)))
                .max_by_key(|(s, _)| *s)
                .map(|(_, name)| name.to_string())
        });
    if let Some(helper) = helper_for {
        return from_helper(&helper, file, domain);
    }
    let entry = doc
        .get("auths")
        .and_then(Value::as_object)
        .and_then(|auths| {
            auths
                .iter()
                .filter_map(|(key, entry)| Some((specificity(key, domain, path)?, entry)))
                .max_by_key(|(s, _)| *s)
                .map(|(_, entry)| entry)
        });
    if let Some(entry) = entry {
        if let Some(found) = decode_entry(entry, file, domain)? {
            return Ok(Some(found));
        }
    }
    match doc.get("credsStore").and_then(Value::as_str) {
        Some(store) if !store.is_empty() => from_helper(store, file, domain),
        _ => Ok(None),
    }
}

/// An `auths` entry: `{"auth": base64("user:secret")}` (or `username`/`password`).
fn decode_entry(
    entry: &Value,
    file: &Path,
    domain: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let bad = || {
        RegistryError::Invalid(format!(
            "{}: the entry of {domain} is not base64 of user:password",
            file.display()
        ))
    };
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (user, secret) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials {
            user: user.to_string(),
            secret: secret.to_string(),
        }));
    }
    let field = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(match (field("username"), field("password")) {
        (Some(user), Some(secret)) if !user.is_empty() => Some(Credentials { user, secret }),
        _ => None,
    })
}

/// How well a file's key names `domain`/`path`: `None` when it does not, else the
/// length of the namespace it names (a bare registry is 0).
fn specificity(key: &str, domain: &str, path: &str) -> Option<usize> {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.trim_end_matches('/');
    let key = key
        .strip_suffix("/v1")
        .or_else(|| key.strip_suffix("/v2"))
        .unwrap_or(key);
    let (key_domain, key_path) = key.split_once('/').unwrap_or((key, ""));
    let hub = |d: &str| matches!(d, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    let same = key_domain == domain || (hub(key_domain) && hub(domain));
    if !same {
        return None;
    }
    if key_path.is_empty() {
        return Some(0);
    }
    (path == key_path || path.starts_with(&format!("{key_path}/"))).then_some(key_path.len())
}

/// What a registry is called for docker's credential helpers.
fn server_url(domain: &str) -> String {
    if domain == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        domain.to_string()
    }
}

/// Asks `docker-credential-NAME get`. A helper that is missing or fails is reported
/// as a warning and capsule goes on without credentials, as a pull of a public image
/// should not fail for a helper left by another tool.
fn from_helper(
    name: &str,
    file: &Path,
    domain: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            log::warn!(
                "{}: credential helper {program}: {}",
                file.display(),
                crate::describe_io(&e)
            );
            return Ok(None);
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server_url(domain).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|error| RegistryError::Io {
            path: PathBuf::from(&program),
            error,
        })?;
    if !out.status.success() {
        // "credentials not found in native keychain" is the helpers' way to say none.
        if !String::from_utf8_lossy(&out.stdout).contains("not found") {
            log::warn!(
                "{}: credential helper {program} failed ({})",
                file.display(),
                out.status
            );
        }
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|_| {
        RegistryError::Invalid(format!("{program}: its answer is not the helpers' JSON"))
    })?;
    // An identity token (user "<token>") is an OAuth refresh token capsule cannot use.
    if answer.username == "<token>" || answer.username.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        user: answer.username,
        secret: answer.secret,
    }))
}

/// The registry `login` and `logout` name: `host[:port]`, `docker.io` for Docker
/// Hub (also written `index.docker.io`, `registry-1.docker.io` or
/// `https://index.docker.io/v1/`).
pub fn registry_of(text: &str) -> Result<String, RegistryError> {
    let bare = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    let host = bare.split('/').next().unwrap_or_default();
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        && !host.starts_with(['-', '.', ':']);
    if !valid {
        return Err(RegistryError::Invalid(format!(
            "{text:?}: not a registry (host[:port], for example ghcr.io or localhost:5000)"
        )));
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_ascii_lowercase(),
    })
}

/// The file `login` writes and `logout` edits.
pub fn login_file() -> Result<PathBuf, RegistryError> {
    containers_files(&from_env)
        .into_iter()
        .next()
        .ok_or_else(|| {
            RegistryError::Invalid(
                "no place for credentials: set REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR or HOME".into(),
            )
        })
}

fn read_doc(file: &Path) -> Result<Value, RegistryError> {
    match fs::read(file) {
        Ok(text) => serde_json::from_slice(&text).map_err(|e| {
            RegistryError::Invalid(format!(
                "{}: not a valid credentials file: {e}",
                file.display()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(json!({})),
        Err(error) => Err(RegistryError::Io {
            path: file.to_path_buf(),
            error,
        }),
    }
}

/// Replaces `file` with `doc`, readable by its owner only.
fn write_doc(file: &Path, doc: &Value) -> Result<(), RegistryError> {
    let io = |error| RegistryError::Io {
        path: file.to_path_buf(),
        error,
    };
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            fs::create_dir_all(parent).map_err(io)?;
            fs::set_permissions(parent, fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
    }
    let temp = file.with_extension(format!("capsule-{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut out = fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        out.write_all(&serde_json::to_vec_pretty(doc).unwrap_or_default())?;
        out.write_all(b"\n")?;
        out.sync_all()?;
        fs::rename(&temp, file)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&temp);
        io(e)
    })
}

/// Records `credentials` for `domain` in the login file; returns the file.
pub fn store(domain: &str, credentials: &Credentials) -> Result<PathBuf, RegistryError> {
    let file = login_file()?;
    let mut doc = read_doc(&file)?;
    if !doc.is_object() {
        return Err(RegistryError::Invalid(format!(
            "{}: not a valid credentials file",
            file.display()
        )));
    }
    let pair = format!("{}:{}", credentials.user, credentials.secret);
    let auth = base64::engine::general_purpose::STANDARD.encode(pair);
    if !doc.get("auths").is_some_and(Value::is_object) {
        doc["auths"] = json!({});
    }
    doc["auths"][domain] = json!({ "auth": auth });
    write_doc(&file, &doc)?;
    Ok(file)
}

/// Removes the login file's entries for `domain`; `false` when it had none.
pub fn remove(domain: &str) -> Result<bool, RegistryError> {
    let file = login_file()?;
    let mut doc = read_doc(&file)?;
    let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|key, _| specificity(key, domain, "") != Some(0));
    if auths.len() == before {
        return Ok(false);
    }
    write_doc(&file, &doc)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_registries_and_namespaces() {
        assert_eq!(
            specificity("docker.io", "docker.io", "library/alpine"),
            Some(0)
        );
        assert_eq!(
            specificity("https://index.docker.io/v1/", "docker.io", "library/alpine"),
            Some(0)
        );
        assert_eq!(specificity("host:5000", "host:5000", "a"), Some(0));
        assert_eq!(specificity("host:5000", "host:5001", "a"), None);
        assert_eq!(specificity("quay.io/org", "quay.io", "org/app"), Some(3));
        assert_eq!(specificity("quay.io/org", "quay.io", "orga/app"), None);
    }

    #[test]
    fn registries_as_login_names_them() {
        assert_eq!(
            registry_of("https://index.docker.io/v1/").unwrap(),
            "docker.io"
        );
        assert_eq!(registry_of("registry-1.docker.io").unwrap(), "docker.io");
        assert_eq!(registry_of("localhost:5000").unwrap(), "localhost:5000");
        assert_eq!(registry_of("GHCR.io/org").unwrap(), "ghcr.io");
        assert!(registry_of("").is_err());
        assert!(registry_of("a b").is_err());
    }

    #[test]
    fn files_in_the_containers_order() {
        let env = |key: &str| {
            Some(OsString::from(match key {
                "HOME" => "/h",
                "XDG_RUNTIME_DIR" => "/run/user/1",
                _ => return None,
            }))
        };
        assert_eq!(
            auth_files(env),
            [
                PathBuf::from("/run/user/1/containers/auth.json"),
                PathBuf::from("/h/.config/containers/auth.json"),
                PathBuf::from("/h/.docker/config.json"),
            ]
        );
    }

    #[test]
    fn entries_decode_and_secrets_stay_hidden() {
        let doc = json!({"auths": {
            "host:5000": {"auth": "dTpw"},
            "host:5000/team": {"auth": "dGVhbTpz"},
        }});
        let file = Path::new("auth.json");
        let found = in_file(&doc, file, "host:5000", "app").unwrap().unwrap();
        assert_eq!((found.user.as_str(), found.secret.as_str()), ("u", "p"));
        let team = in_file(&doc, file, "host:5000", "team/app")
            .unwrap()
            .unwrap();
        assert_eq!(team.user, "team");
        assert!(!format!("{team:?}").contains("\"s\""));
        assert!(in_file(&doc, file, "other", "app").unwrap().is_none());
        let bad = json!({"auths": {"h": {"auth": "!!"}}});
        assert!(in_file(&bad, file, "h", "a").is_err());
    }
}
