//! One registry, as a blocking HTTP client: the scheme, found by the `/v2/` probe
//! (https, verified; plain http only for a loopback registry or one the user named
//! with `--tls-verify=false`), the `Authorization` every request carries once a
//! challenge was answered, and retries with backoff on 429 and 5xx.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::Body;

use super::auth::{self, Challenge};
use super::credentials::{self, Credentials};
use super::{api_host, is_loopback, Options, RegistryError};

/// Attempts of a request the registry answers 429 or 5xx (or that breaks off).
const ATTEMPTS: u32 = 5;
/// The first backoff; doubled each time.
const BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` capsule waits for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// What a request sends.
pub enum Payload<'a> {
    None,
    Bytes(&'a [u8]),
    /// A file, reopened for each attempt.
    File(&'a std::path::Path),
}

pub struct Client {
    agent: ureq::Agent,
    /// As references write it: `docker.io`, `host:5000`.
    domain: String,
    /// `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    base: String,
    credentials: Option<Credentials>,
    /// `repository:PATH:pull` (or `pull,push`): what a token is asked for; `None`
    /// for `login`, which asks for a token of no scope.
    scope: Option<String>,
    /// The header answering the last challenge (a secret: never logged).
    authorization: Mutex<Option<String>>,
}

/// The system's certificate bundles, in the order distributions keep them.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The certificates of a PEM file (none when it cannot be read).
fn pem_certs(path: &std::path::Path) -> Vec<ureq::tls::Certificate<'static>> {
    let Ok(pem) = std::fs::read(path) else {
        return Vec::new();
    };
    ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect()
}

/// Where the certificates of one registry are kept (`HOST[:PORT]/`), as
/// containers-certs.d(5) says: the user's `${XDG_CONFIG_HOME:-~/.config}/containers/
/// certs.d`, then `/etc/containers/certs.d`, then docker's `/etc/docker/certs.d`;
/// `--cert-dir` replaces them.
fn cert_dirs(domain: &str, cert_dir: Option<&std::path::Path>) -> Vec<PathBuf> {
    if let Some(dir) = cert_dir {
        return vec![dir.to_path_buf()];
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    let mut dirs: Vec<PathBuf> = config
        .map(|c| c.join("containers/certs.d"))
        .into_iter()
        .collect();
    dirs.push("/etc/containers/certs.d".into());
    dirs.push("/etc/docker/certs.d".into());
    dirs.into_iter().map(|d| d.join(domain)).collect()
}

/// The files of `dir` whose names end in `.EXT`, sorted.
fn files_with(dir: &std::path::Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// The client certificate of a registry, as containers-certs.d keeps it: a
/// `NAME.cert` (the chain, PEM) and its `NAME.key` in the registry's first
/// certificate directory that has one. A `.cert` without its `.key` (or the other way
/// round), or one that cannot be read, is an error naming the file.
fn client_cert(
    domain: &str,
    cert_dir: Option<&std::path::Path>,
) -> Result<Option<ureq::tls::ClientCert>, RegistryError> {
    let invalid = |path: &std::path::Path, what: &str| {
        RegistryError::Invalid(format!("{}: {what}", path.display()))
    };
    for dir in cert_dirs(domain, cert_dir) {
        let certs = files_with(&dir, "cert");
        for key in files_with(&dir, "key") {
            if !certs.contains(&key.with_extension("cert")) {
                return Err(invalid(&key, "a client key without its .cert"));
            }
        }
        let Some(cert) = certs.first() else {
            continue;
        };
        let key = cert.with_extension("key");
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|error| RegistryError::Io {
                path: path.to_path_buf(),
                error,
            })
        };
        if !key.is_file() {
            return Err(invalid(cert, "a client certificate without its .key"));
        }
        let chain: Vec<_> = ureq::tls::parse_pem(&read(cert)?)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if chain.is_empty() {
            return Err(invalid(cert, "no PEM certificate in it"));
        }
        let private = ureq::tls::PrivateKey::from_pem(&read(&key)?)
            .map_err(|_| invalid(&key, "not a PEM private key (RSA, EC or PKCS#8)"))?;
        log::debug!("{domain}: client certificate {}", cert.display());
        return Ok(Some(ureq::tls::ClientCert::new_with_certs(&chain, private)));
    }
    Ok(None)
}

/// The certificates a registry's must chain to: the bundle `$SSL_CERT_FILE` names,
/// else the system's (where an administrator adds a private CA), else Mozilla's
/// roots built into capsule; and the `*.crt` of the registry's certificate
/// directories.
fn root_certs(domain: &str, cert_dir: Option<&std::path::Path>) -> ureq::tls::RootCerts {
    let named = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let bundle = named.or_else(|| {
        SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    });
    let mut certs = bundle.map(|b| pem_certs(&b)).unwrap_or_default();
    for dir in cert_dirs(domain, cert_dir) {
        for file in files_with(&dir, "crt") {
            certs.extend(pem_certs(&file));
        }
    }
    // Without a system bundle, the registry's own CAs are all it is given (Mozilla's
    // built-in roots cannot be joined to them).
    if certs.is_empty() {
        ureq::tls::RootCerts::WebPki
    } else {
        ureq::tls::RootCerts::new_with_certs(&certs)
    }
}

/// An agent checking certificates unless `verify` is false, and refusing any plain
/// http URL (a redirect, a token realm) unless `plain` allows the registry's.
fn agent(
    verify: bool,
    plain: bool,
    roots: ureq::tls::RootCerts,
    client: Option<ureq::tls::ClientCert>,
) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(roots)
        .client_cert(client)
        .disable_verification(!verify)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .https_only(!plain)
        .tls_config(tls)
        .user_agent(concat!("capsule/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .max_idle_connections_per_host(8)
        .build()
        .new_agent()
}

/// A transport error as one line (no URL: it may carry a token server's query).
fn describe(error: &ureq::Error) -> String {
    let text = match error {
        ureq::Error::Io(e) => crate::describe_io(e),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::RequireHttpsOnly(_) => {
            "a plain http address, refused (--tls-verify=false allows it for this registry)".into()
        }
        other => other.to_string(),
    };
    // What a registry that wants a client certificate answers a client without one.
    if text.contains("alert: BadCertificate") || text.contains("alert: CertificateRequired") {
        format!("{text} (a registry asking for a client certificate: NAME.cert and NAME.key in its certs.d directory, or --cert-dir)")
    } else {
        text
    }
}

/// Whether a transport error is worth another attempt (not a refused connection or
/// an unknown host: a registry that is down is reported at once).
fn transient(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Io(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ),
        ureq::Error::Timeout(_) | ureq::Error::Protocol(_) | ureq::Error::BodyStalled => true,
        _ => false,
    }
}

impl Client {
    /// Reaches the registry of `domain` for repository `path`, with the actions
    /// (`pull`, `pull,push`) a token must allow, and answers its first challenge.
    pub fn connect(
        domain: &str,
        path: &str,
        actions: &str,
        options: &Options,
    ) -> Result<Client, RegistryError> {
        let credentials = credentials::lookup(domain, path)?;
        let scope = format!("repository:{path}:{actions}");
        Client::with_credentials(domain, Some(scope), options, credentials)
    }

    /// `capsule login`: checks `credentials` against the registry of `domain`.
    pub fn login(
        domain: &str,
        options: &Options,
        credentials: Credentials,
    ) -> Result<(), RegistryError> {
        let client = Client::with_credentials(domain, None, options, Some(credentials))?;
        let response = client.send("GET", "/v2/", &[], &Payload::None)?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(client.refused()),
            status => Err(client.status_error(domain, status, response)),
        }
    }

    fn with_credentials(
        domain: &str,
        scope: Option<String>,
        options: &Options,
        credentials: Option<Credentials>,
    ) -> Result<Client, RegistryError> {
        let plain_allowed = is_loopback(domain) || !options.tls_verify;
        let host = api_host(domain);
        let mut client = Client {
            agent: agent(
                options.tls_verify,
                plain_allowed,
                root_certs(domain, options.cert_dir.as_deref()),
                client_cert(domain, options.cert_dir.as_deref())?,
            ),
            domain: domain.to_string(),
            base: format!("https://{host}"),
            credentials,
            scope,
            authorization: Mutex::new(None),
        };
        let response = match client.agent.get(format!("{}/v2/", client.base)).call() {
            Err(e) if plain_allowed => {
                log::debug!("{domain}: https: {}; trying http", describe(&e));
                let plain_base = format!("http://{host}");
                let plain = client.agent.get(format!("{plain_base}/v2/")).call();
                // Only a registry's answer makes plain http the way: otherwise (an
                // https server refusing http, say) the https error is the one to tell.
                match plain {
                    Ok(r) if matches!(r.status().as_u16(), 200..=299 | 401) => {
                        client.base = plain_base;
                        r
                    }
                    _ => return Err(client.unreachable(&e)),
                }
            }
            other => other.map_err(|e| client.unreachable(&e))?,
        };
        match response.status().as_u16() {
            200..=299 => {}
            401 => {
                let challenge = challenge_of(&response);
                client.answer(challenge, None)?;
            }
            404 => {
                return Err(RegistryError::Invalid(format!(
                    "{domain}: not a registry (no /v2/ API)"
                )))
            }
            status => return Err(client.status_error(domain, status, response)),
        }
        Ok(client)
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `http://…/v2/NAME/SUFFIX`, or a `Location` the registry gave, made absolute.
    pub fn url(&self, rest: &str) -> String {
        if rest.starts_with("http://") || rest.starts_with("https://") {
            rest.to_string()
        } else if rest.starts_with('/') {
            format!("{}{rest}", self.base)
        } else {
            format!("{}/v2/{rest}", self.base)
        }
    }

    fn unreachable(&self, error: &ureq::Error) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.domain.clone(),
            reason: describe(error),
        }
    }

    /// An answer that is not a success, as one line: the registry's own error
    /// message when it sends one (`{"errors":[{"message":…}]}`).
    pub fn status_error(&self, what: &str, status: u16, response: Response<Body>) -> RegistryError {
        let mut body = Vec::new();
        let _ = response
            .into_body()
            .into_reader()
            .take(4096)
            .read_to_end(&mut body);
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|doc| {
                doc["errors"][0]["message"]
                    .as_str()
                    .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
            })
            .unwrap_or_default();
        match status {
            401 if self.credentials.is_none() => RegistryError::NeedsCredentials {
                registry: self.domain.clone(),
            },
            401 | 403 => RegistryError::Denied {
                what: what.to_string(),
            },
            404 => RegistryError::NotFound {
                what: what.to_string(),
            },
            _ => RegistryError::Status {
                what: what.to_string(),
                status,
                detail: message,
            },
        }
    }

    /// Answers a challenge: fetches a Bearer token (for the challenge's scope, else
    /// the client's), or uses Basic with the credentials.
    fn answer(
        &self,
        challenge: Option<Challenge>,
        scope: Option<&str>,
    ) -> Result<(), RegistryError> {
        let header = match challenge {
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                let scope = asked.as_deref().or(scope).or(self.scope.as_deref());
                let url = auth::token_url(&realm, service.as_deref(), scope);
                let mut request = self.agent.get(&url);
                if let Some(creds) = &self.credentials {
                    request = request.header("Authorization", auth::basic(creds));
                }
                let response = request.call().map_err(|e| RegistryError::Unreachable {
                    registry: format!("{} (token server)", self.domain),
                    reason: describe(&e),
                })?;
                match response.status().as_u16() {
                    200..=299 => {}
                    401 | 403 => return Err(self.refused()),
                    status => return Err(self.status_error(&realm, status, response)),
                }
                let mut body = Vec::new();
                response
                    .into_body()
                    .into_reader()
                    .take(1 << 20)
                    .read_to_end(&mut body)
                    .map_err(|e| RegistryError::Unreachable {
                        registry: format!("{} (token server)", self.domain),
                        reason: crate::describe_io(&e),
                    })?;
                format!("Bearer {}", auth::token_of(&body, &realm)?)
            }
            Some(Challenge::Basic) | None => match &self.credentials {
                Some(creds) => auth::basic(creds),
                None => {
                    return Err(RegistryError::NeedsCredentials {
                        registry: self.domain.clone(),
                    })
                }
            },
        };
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(header);
        Ok(())
    }

    /// Credentials refused (or none given where some are needed).
    fn refused(&self) -> RegistryError {
        match &self.credentials {
            Some(creds) => RegistryError::BadCredentials {
                registry: self.domain.clone(),
                user: creds.user.clone(),
            },
            None => RegistryError::NeedsCredentials {
                registry: self.domain.clone(),
            },
        }
    }

    /// Sends a request, answering a challenge once and retrying on 429, 5xx and
    /// (for reads) a broken connection. Returns any final answer, success or not.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        payload: &Payload,
    ) -> Result<Response<Body>, RegistryError> {
        let url = self.url(url);
        let idempotent = matches!(method, "GET" | "HEAD");
        let mut answered = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = http::Request::builder().method(method).uri(&url);
            for (key, value) in headers {
                builder = builder.header(*key, *value);
            }
            let ours = url.starts_with(&self.base);
            if let Some(header) = self
                .authorization
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .filter(|_| ours)
            {
                builder = builder.header("Authorization", header);
            }
            let result = match payload {
                Payload::None => builder.body(()).map(|r| self.agent.run(r)),
                Payload::Bytes(bytes) => builder.body(*bytes).map(|r| self.agent.run(r)),
                Payload::File(path) => {
                    let file = File::open(path).map_err(|error| RegistryError::Io {
                        path: PathBuf::from(path),
                        error,
                    })?;
                    builder.body(file).map(|r| self.agent.run(r))
                }
            }
            .map_err(|e| RegistryError::Invalid(format!("{url}: {e}")))?;
            let response = match result {
                Ok(response) => response,
                Err(e) if idempotent && transient(&e) && attempt < ATTEMPTS => {
                    log::info!("{}: {}; trying again", self.domain, describe(&e));
                    std::thread::sleep(BACKOFF * 2u32.pow(attempt - 1));
                    continue;
                }
                Err(e) => return Err(self.unreachable(&e)),
            };
            let status = response.status().as_u16();
            if status == 401 && !answered {
                answered = true;
                let challenge = challenge_of(&response);
                self.answer(challenge, None)?;
                continue;
            }
            if status == 401 && self.credentials.is_some() && self.basic() {
                return Err(self.refused());
            }
            if (status == 429 || status >= 500) && attempt < ATTEMPTS {
                let wait = retry_after(&response)
                    .unwrap_or(BACKOFF * 2u32.pow(attempt - 1))
                    .min(MAX_RETRY_AFTER);
                log::info!(
                    "{}: answered {status}; trying again in {wait:?}",
                    self.domain
                );
                std::thread::sleep(wait);
                continue;
            }
            return Ok(response);
        }
    }

    /// Whether the credentials are sent as Basic (so a 401 means they are wrong).
    fn basic(&self) -> bool {
        self.authorization
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .is_some_and(|h| h.starts_with("Basic "))
    }
}

fn challenge_of(response: &Response<Body>) -> Option<Challenge> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(auth::parse_challenge)
        .min_by_key(|c| matches!(c, Challenge::Basic))
}

fn retry_after(response: &Response<Body>) -> Option<Duration> {
    let text = response.headers().get("retry-after")?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}
