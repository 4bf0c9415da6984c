//! Pulling from registries: a real registry (Debian's docker-registry, the
//! distribution registry v2) started on 127.0.0.1 and seeded with skopeo from OCI
//! layouts umoci builds; and a fake registry (tests/fake_registry.py) for what a
//! real one does not do on purpose: a blob whose bytes do not match its digest.

mod common;
#[path = "image_support.rs"]
mod image_support;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;
use image_support::*;

/// A free port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (bounded) until something listens on `port`; `Err` when `child` exited.
fn wait_listening(port: u16, child: &mut Child, what: &str) -> Result<(), String> {
    for _ in 0..400 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited early: {status}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{what} does not listen on {port}");
}

/// A process of the test, killed when dropped.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A distribution registry on 127.0.0.1, its storage and access log in `dir`.
struct Registry {
    _server: Server,
    port: u16,
    log: PathBuf,
    /// `user:password` of its htpasswd, if it has one.
    creds: Option<String>,
}

impl Registry {
    fn start(dir: &Path, htpasswd: Option<(&str, &str)>) -> Registry {
        let auth = htpasswd.map(|(user, password)| {
            let line = tool("htpasswd", &["-Bbn", user, password]);
            let file = dir.join("htpasswd");
            fs::create_dir_all(dir).unwrap();
            fs::write(&file, line.trim()).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: capsule-test\n    path: {}\n",
                file.display()
            )
        });
        let creds = htpasswd.map(|(u, p)| format!("{u}:{p}"));
        Registry::start_with(dir, "", auth.as_deref(), creds)
    }

    /// A registry whose tokens come from `realm`, signed with the key of `cert`.
    fn start_token(dir: &Path, realm: &str, cert: &Path) -> Registry {
        let auth = format!(
            "auth:\n  token:\n    realm: {realm}\n    service: capsule-test-registry\n    \
             issuer: capsule-test\n    rootcertbundle: {}\n",
            cert.display()
        );
        Registry::start_with(dir, "", Some(&auth), Some("alice:secret".into()))
    }

    /// `http` is more of the `http:` block (`  tls: …`), `auth` its `auth:` block.
    fn start_with(dir: &Path, http: &str, auth: Option<&str>, creds: Option<String>) -> Registry {
        fs::create_dir_all(dir).unwrap();
        // A free port may be taken by another test before the registry binds it: then
        // it exits, and another port is tried.
        let mut attempts = 0;
        let (child, port, log) = loop {
            attempts += 1;
            let port = free_port();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n{http}",
                dir.join("data").display()
            );
            config.push_str(auth.unwrap_or_default());
            let config_file = dir.join("config.yml");
            fs::write(&config_file, config).unwrap();
            let log = dir.join("access.log");
            // The access log is on its standard output, its own messages on stderr.
            let out = fs::File::create(&log).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_file)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("docker-registry (apt-get install docker-registry)");
            match wait_listening(port, &mut child, "docker-registry") {
                Ok(()) => break (child, port, log),
                Err(e) if attempts >= 3 => {
                    panic!("{e}: {}", fs::read_to_string(&log).unwrap_or_default())
                }
                Err(_) => {}
            }
        };
        Registry {
            _server: Server { child },
            port,
            log,
            creds,
        }
    }

    fn name(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}", self.port)
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://127.0.0.1:PORT/REPO`.
    fn seed(&self, layout: &Path, tag: &str, repo: &str) {
        let mut args = vec![
            "--insecure-policy".to_string(),
            "copy".into(),
            "-q".into(),
            "--dest-tls-verify=false".into(),
        ];
        if let Some(creds) = &self.creds {
            args.push(format!("--dest-creds={creds}"));
        }
        args.push(format!("oci:{}:{tag}", layout.display()));
        args.push(format!("docker://{}", self.name(repo)));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool("skopeo", &args);
    }

    /// The manifest digest skopeo reads for `repo`.
    fn digest(&self, repo: &str) -> String {
        let mut args = vec!["inspect", "--tls-verify=false", "--format", "{{.Digest}}"];
        let creds;
        if let Some(c) = &self.creds {
            creds = format!("--creds={c}");
            args.push(&creds);
        }
        let name = format!("docker://{}", self.name(repo));
        args.push(&name);
        tool("skopeo", &args).trim().to_string()
    }

    /// Requests in the access log whose line has `needle` (`"GET /v2/app/blobs/`).
    fn requests(&self, needle: &str) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// Starts `python3 tests/SCRIPT ARGS[0] PORTFILE ARGS[1..]` and waits for the port
/// it writes to PORTFILE, then for it to listen.
fn python_server(dir: &Path, script: &str, args: &[&Path]) -> (Server, u16) {
    let portfile = dir.join(format!("{script}-{}.port", free_port()));
    let mut child = Command::new("python3")
        .arg(workspace_root().join("tests").join(script))
        .arg(args[0])
        .arg(&portfile)
        .args(&args[1..])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3");
    let mut port = None;
    for _ in 0..400 {
        if let Ok(text) = fs::read_to_string(&portfile) {
            port = text.trim().parse().ok();
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{script} exited early: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let port = port.unwrap_or_else(|| panic!("{script} wrote no port"));
    wait_listening(port, &mut child, script).unwrap_or_else(|e| panic!("{e}"));
    (Server { child }, port)
}

/// tests/fake_registry.py serving `layout` in `mode`; its request log.
struct Fake {
    _server: Server,
    port: u16,
    log: PathBuf,
}

impl Fake {
    fn start(dir: &Path, layout: &Path, mode: &str) -> Fake {
        let log = dir.join(format!("fake-{mode}.log"));
        let (server, port) =
            python_server(dir, "fake_registry.py", &[layout, &log, Path::new(mode)]);
        Fake {
            _server: server,
            port,
            log,
        }
    }

    fn name(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Where credentials are looked up: files of the test's own (never the host's).
struct AuthEnv {
    dir: TempDir,
}

impl AuthEnv {
    fn new() -> AuthEnv {
        AuthEnv {
            dir: TempDir::new("pull-auth"),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("auth.json")
    }

    fn command(&self, home: &CapsuleHome, args: &[&str]) -> Command {
        shim();
        let mut cmd = home.command(args);
        cmd.env("REGISTRY_AUTH_FILE", self.file())
            .env("HOME", self.dir.path())
            .env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env_remove("DOCKER_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, home: &CapsuleHome, args: &[&str]) -> Output {
        run(&mut self.command(home, args))
    }

    fn ok(&self, home: &CapsuleHome, args: &[&str]) -> String {
        let out = self.run(home, args);
        success(&out, &format!("capsule {}", args.join(" ")))
    }
}

/// Asserts a refusal: exit 125 and one error line (after the lines of the layers
/// done before), containing `text`; returns it.
#[track_caller]
fn refused(out: &Output, text: &str) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(125), "{}", describe(out));
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("capsule:")).collect();
    assert_eq!(errors.len(), 1, "one line: {}", describe(out));
    assert_eq!(err.lines().last(), Some(errors[0]), "{}", describe(out));
    assert!(
        errors[0].contains(text),
        "wanted {text:?}: {}",
        describe(out)
    );
    errors[0].to_string()
}

/// `/data/new` read by `cat` in a capsule of `image` (app: "app", base: "base").
fn data_new(auth: &AuthEnv, home: &CapsuleHome, image: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--image", image];
    args.extend_from_slice(extra);
    args.extend(["--entrypoint", "/bin/cat", "--", "/data/new"]);
    auth.ok(home, &args)
}

#[test]
fn pull_by_tag_and_by_digest_then_run() {
    let work = TempDir::new("pull-tag");
    let layout = umoci_layout(work.path());
    let registry = Registry::start(&work.join("registry"), None);
    registry.seed(&layout, "app", "app:v1");
    let auth = AuthEnv::new();

    let home = CapsuleHome::new();
    let image = registry.name("app:v1");
    let out = auth.ok(&home, &["pull", &image]);
    assert!(out.starts_with(&format!("{image} sha256:")), "{out}");
    assert!(out.contains("(2 layers, 2 new)"), "{out}");
    assert_eq!(data_new(&auth, &home, &image, &[]), "app\n");
    assert_app_image(&home, &image);

    // By digest, into another store: the digest skopeo reads is the one pulled.
    let digest = registry.digest("app:v1");
    assert!(out.trim_end().ends_with(&digest), "{out} vs {digest}");
    let by_digest = format!("{}@{digest}", registry.name("app"));
    let fresh = CapsuleHome::new();
    let out = auth.ok(&fresh, &["pull", "-q", &by_digest]);
    assert!(out.starts_with(&format!("{by_digest} sha256:")), "{out}");
    assert_eq!(data_new(&auth, &fresh, &by_digest, &[]), "app\n");

    // run --image pulls on first use; --pull=never does not.
    let never = CapsuleHome::new();
    let out = auth.run(
        &never,
        &[
            "run",
            "--rm",
            "--pull=never",
            "--image",
            &image,
            "--",
            "true",
        ],
    );
    refused(&out, "no such image");
    assert!(!never.path().join("images").exists());
    let first_use = CapsuleHome::new();
    assert_eq!(data_new(&auth, &first_use, &image, &[]), "app\n");
    // capsule build pulls a FROM image the store lacks.
    let built = CapsuleHome::new();
    let context = work.join("context");
    fs::create_dir_all(&context).unwrap();
    fs::write(
        context.join("Containerfile"),
        format!("FROM {image}\nENTRYPOINT [\"/bin/cat\"]\nCMD [\"/data/new\"]\n"),
    )
    .unwrap();
    auth.ok(
        &built,
        &["build", "-q", "-t", "built:1", context.to_str().unwrap()],
    );
    assert_eq!(
        auth.ok(&built, &["run", "--rm", "--image", "built:1"]),
        "app\n"
    );
    // A tag that is not there, one line naming it.
    let out = auth.run(&first_use, &["pull", &registry.name("app:v2")]);
    refused(&out, "manifest v2: not found");
}

#[test]
fn a_layer_already_in_the_store_is_not_downloaded_again() {
    let work = TempDir::new("pull-shared");
    let layout = umoci_layout(work.path());
    let registry = Registry::start(&work.join("registry"), None);
    registry.seed(&layout, "base", "base:v1");
    registry.seed(&layout, "app", "app:v1");
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();

    let out = auth.ok(&home, &["pull", &registry.name("base:v1")]);
    assert!(out.contains("(1 layers, 1 new)"), "{out}");
    // The configuration and the one layer.
    assert_eq!(registry.requests("\"GET /v2/base/blobs/"), 2);
    // app is base's layer and one more: only its configuration and that layer.
    let out = auth.ok(&home, &["pull", &registry.name("app:v1")]);
    assert!(out.contains("(2 layers, 1 new)"), "{out}");
    assert_eq!(registry.requests("\"GET /v2/app/blobs/"), 2);
    assert_eq!(store_entries(&home, "layers").len(), 2);
    // --pull=always asks again: the configuration, no layer.
    let image = registry.name("app:v1");
    assert_eq!(data_new(&auth, &home, &image, &["--pull=always"]), "app\n");
    assert_eq!(registry.requests("\"GET /v2/app/blobs/"), 3);
    assert_eq!(registry.requests("\"GET /v2/app/manifests/v1"), 2);

    // capsule up pulls a manifest's image on first use too.
    let project = TempDir::new("pull-up");
    fs::create_dir(project.join("out")).unwrap();
    fs::write(
        project.join("capsule.toml"),
        format!(
            "[capsule.a]\nimage = \"{}\"\ncommand = \"cat /data/new > /out/a\"\nvolumes = [\"./out:/out\"]\n",
            registry.name("base:v1")
        ),
    )
    .unwrap();
    let fresh = CapsuleHome::new();
    let mut up = auth.command(&fresh, &["up"]);
    let out = run(up.current_dir(project.path()));
    success(&out, "capsule up");
    assert_eq!(fs::read_to_string(project.join("out/a")).unwrap(), "base\n");
}

#[test]
fn basic_auth_without_and_with_credentials() {
    let work = TempDir::new("pull-basic");
    let layout = umoci_layout(work.path());
    let registry = Registry::start(&work.join("registry"), Some(("alice", "secret")));
    registry.seed(&layout, "app", "app:v1");
    let image = registry.name("app:v1");
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();

    let out = auth.run(&home, &["pull", &image]);
    let line = refused(&out, "authentication required");
    assert!(
        line.contains(&format!("capsule login 127.0.0.1:{}", registry.port)),
        "{line}"
    );
    assert!(
        !home.path().join("images").exists(),
        "a refused pull leaves no store"
    );

    // Credentials in $REGISTRY_AUTH_FILE, as podman login writes them.
    let write_auth = |pair: &str| {
        let encoded = tool("sh", &["-c", &format!("printf %s '{pair}' | base64")]);
        let doc = format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{}"}}}}}}"#,
            registry.port,
            encoded.trim()
        );
        fs::write(auth.file(), doc).unwrap();
    };
    write_auth("alice:wrong");
    let out = auth.run(&home, &["pull", &image]);
    let line = refused(&out, "refused the credentials of alice");
    assert!(!line.contains("wrong"), "no secret in messages: {line}");
    write_auth("alice:secret");
    let out = auth.ok(&home, &["pull", &image]);
    assert!(out.contains("(2 layers, 2 new)"), "{out}");
    assert_eq!(data_new(&auth, &home, &image, &[]), "app\n");
}

/// `capsule login` with the password on standard input.
fn login(auth: &AuthEnv, home: &CapsuleHome, registry: &str, password: &str) -> Output {
    let mut cmd = auth.command(
        home,
        &["login", "-u", "alice", "--password-stdin", registry],
    );
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_then_pull_and_logout() {
    let work = TempDir::new("pull-login");
    let layout = umoci_layout(work.path());
    let registry = Registry::start(&work.join("registry"), Some(("alice", "secret")));
    registry.seed(&layout, "base", "base:v1");
    let host = format!("127.0.0.1:{}", registry.port);
    let image = registry.name("base:v1");
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();

    // A wrong password: one line, and nothing recorded.
    let out = login(&auth, &home, &host, "wrong");
    refused(
        &out,
        &format!("login {host}: {host}: the registry refused the credentials of alice"),
    );
    assert!(!auth.file().exists());
    let out = login(&auth, &home, &host, "secret");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).starts_with(&format!("Login Succeeded: {host}")),
        "{}",
        describe(&out)
    );
    // Recorded as podman does, readable by its owner only, the password not in clear.
    let text = fs::read_to_string(auth.file()).unwrap();
    assert!(
        text.contains(&host) && text.contains("\"auth\"") && !text.contains("secret"),
        "{text}"
    );
    let mode = fs::metadata(auth.file()).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let out = auth.ok(&home, &["pull", "-q", &image]);
    assert!(out.contains("(1 layers, 1 new)"), "{out}");
    assert_eq!(data_new(&auth, &home, &image, &[]), "base\n");

    let out = auth.ok(&home, &["logout", &host]);
    assert!(
        out.starts_with(&format!("Removed login credentials for {host}")),
        "{out}"
    );
    let out = auth.run(&home, &["pull", &image]);
    refused(&out, "authentication required");
    let out = auth.run(&home, &["logout", &host]);
    refused(&out, "not logged in");

    // docker's config.json naming a credential helper for this registry.
    let helpers = TempDir::new("pull-helper");
    let helper = helpers.join("docker-credential-capsuletest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = {host} ] || exit 1\n\
             echo '{{\"ServerURL\":\"{host}\",\"Username\":\"alice\",\"Secret\":\"secret\"}}'\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let docker = auth.dir.join(".docker");
    fs::create_dir_all(&docker).unwrap();
    fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{}},"credHelpers":{{"{host}":"capsuletest"}}}}"#),
    )
    .unwrap();
    let fresh = CapsuleHome::new();
    let path = format!(
        "{}:{}",
        helpers.str(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = auth.command(&fresh, &["pull", "-q", &image]);
    let out = run(cmd.env("PATH", path));
    let text = success(&out, "pull with a credential helper");
    assert!(text.contains("(1 layers, 1 new)"), "{text}");
}

#[test]
fn bearer_tokens_from_the_challenge() {
    let work = TempDir::new("pull-bearer");
    let layout = umoci_layout(work.path());
    let fake = Fake::start(work.path(), &layout, "bearer");
    let host = format!("127.0.0.1:{}", fake.port);
    let image = fake.name("app:app");
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();

    // The token server refuses anonymous requests here.
    let out = auth.run(&home, &["pull", &image]);
    refused(
        &out,
        &format!("{host}: authentication required (capsule login {host})"),
    );
    let out = login(&auth, &home, &host, "nope");
    refused(&out, "refused the credentials of alice");
    let out = login(&auth, &home, &host, "secret");
    assert!(out.status.success(), "{}", describe(&out));
    let out = auth.ok(&home, &["pull", "-q", &image]);
    assert!(out.contains("(2 layers, 2 new)"), "{out}");
    assert_eq!(data_new(&auth, &home, &image, &[]), "app\n");
    // Every manifest and blob request carried the token, none the password.
    let log = fake.log();
    let reads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/manifests/") || l.contains("/blobs/"))
        .collect();
    assert!(reads.len() >= 4, "{log}");
    assert!(reads.iter().all(|l| l.ends_with("auth=Bearer")), "{log}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("GET /token?service=fake&scope=repository%3Aapp%3Apull")),
        "{log}"
    );
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let work = TempDir::new("pull-corrupt");
    let layout = umoci_layout(work.path());
    let fake = Fake::start(work.path(), &layout, "corrupt");
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();
    // A store with an image already: the refused pull must leave it as it was.
    let base = format!("{}:base", layout.display());
    auth.ok(&home, &["image", "import", &base, "--name", "base"]);
    let images = home.path().join("images");
    let parts = ["index.json", "blobs", "layers", "roots"];
    let before: Vec<_> = parts.iter().map(|p| snapshot(&images.join(p))).collect();

    let out = auth.run(&home, &["pull", &fake.name("app:app")]);
    let line = refused(&out, "refused");
    assert!(
        line.contains("the registry sent content with digest"),
        "{line}"
    );
    let log = fake.log();
    assert!(log.contains("GET /v2/app/blobs/"), "{log}");
    for (part, before) in parts.iter().zip(&before) {
        assert_same(&snapshot(&images.join(part)), before, part);
    }
    // No partial blob kept (it was wrong), nothing left in the staging area.
    assert_eq!(store_entries(&home, "downloads"), Vec::<String>::new());
    assert_eq!(store_entries(&home, "tmp"), Vec::<String>::new());

    // A fresh store is not even created.
    let fresh = CapsuleHome::new();
    let out = auth.run(&fresh, &["pull", &fake.name("app:app")]);
    refused(&out, "refused");
    assert!(!fresh.path().join("images").exists());
}

#[test]
fn a_schema_1_manifest_is_refused_naming_its_media_type() {
    let work = TempDir::new("pull-schema1");
    let layout = umoci_layout(work.path());
    let fake = Fake::start(work.path(), &layout, "schema1");
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();
    let out = auth.run(&home, &["pull", &fake.name("old:1")]);
    refused(
        &out,
        "application/vnd.docker.distribution.manifest.v1+prettyjws: a docker schema 1 manifest",
    );
    assert!(!home.path().join("images").exists());
    assert!(!fake.log().contains("/blobs/"), "{}", fake.log());
}

#[test]
fn a_registry_that_is_down_is_one_line() {
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();
    let port = free_port();
    let out = auth.run(&home, &["pull", &format!("127.0.0.1:{port}/app:v1")]);
    refused(
        &out,
        &format!("127.0.0.1:{port}: cannot reach the registry"),
    );
    assert!(!home.path().join("images").exists());
    let out = auth.run(&home, &["pull", "Not A Reference"]);
    refused(&out, "not an image reference");
}

#[test]
fn push_a_committed_image_then_pull_it_elsewhere() {
    let work = TempDir::new("pull-push");
    let layout = umoci_layout(work.path());
    let registry = Registry::start(&work.join("registry"), None);
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();
    let app = format!("{}:app", layout.display());
    auth.ok(&home, &["image", "import", &app, "--name", "app"]);
    auth.ok(
        &home,
        &[
            "run",
            "--name",
            "work",
            "--image",
            "app",
            "--",
            "echo changed > /data/new",
        ],
    );
    auth.ok(&home, &["commit", "work", "changed:1"]);

    let dest = registry.name("changed:1");
    let out = auth.ok(&home, &["push", "-q", "changed:1", &dest]);
    assert!(out.starts_with(&format!("{dest} sha256:")), "{out}");
    assert!(out.contains("(4 blobs, 4 uploaded)"), "{out}");
    let digest = out.split_whitespace().nth(1).unwrap().to_string();
    // skopeo reads what was pushed: the same manifest, three gzip layers.
    assert_eq!(registry.digest("changed:1"), digest);
    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{len .Layers}}",
            &format!("docker://{dest}"),
        ],
    );
    assert_eq!(inspect.trim(), "3");
    // Again: the registry has every blob (HEAD), none is sent.
    let puts = registry.requests("\"PUT /v2/changed/blobs/uploads/");
    assert_eq!(puts, 4);
    let out = auth.ok(&home, &["push", "-q", "changed:1", &dest]);
    assert!(out.contains("(4 blobs, 0 uploaded)"), "{out}");
    assert_eq!(registry.requests("\"PUT /v2/changed/blobs/uploads/"), puts);

    let fresh = CapsuleHome::new();
    let out = auth.ok(&fresh, &["pull", "-q", &dest]);
    assert!(out.trim_end().ends_with(&digest), "{out}");
    assert_eq!(data_new(&auth, &fresh, &dest, &[]), "changed\n");
    assert_app_image_owners(&auth, &fresh, &dest);

    // A destination without a tag, and an image the store does not have.
    let out = auth.run(
        &home,
        &[
            "push",
            "changed:1",
            &format!("{}@{digest}", registry.name("changed")),
        ],
    );
    refused(&out, "a push needs a tag");
    let out = auth.run(&home, &["push", "nothing:1", &dest]);
    refused(&out, "nothing:1: no such image");
}

/// The config digest and the layer digests of the manifest skopeo reads at `image`
/// (`docker://…` or `oci:…`).
fn blob_digests(image: &str) -> (String, Vec<String>) {
    let raw = tool("skopeo", &["inspect", "--raw", "--tls-verify=false", image]);
    let doc: serde_json::Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{image}: {e}: {raw}"));
    let layers = doc["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{image}: no layers: {raw}"))
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    (
        doc["config"]["digest"].as_str().unwrap().to_string(),
        layers,
    )
}

#[test]
fn pushed_layers_keep_the_digests_they_were_pulled_or_imported_with() {
    let work = TempDir::new("pull-push-digests");
    let layout = umoci_layout(work.path());
    let app = format!("{}:app", layout.display());
    let (config, layers) = blob_digests(&format!("oci:{app}"));
    assert_eq!(layers.len(), 2, "{layers:?}");
    let registry = Registry::start(&work.join("registry"), None);
    let auth = AuthEnv::new();

    // Imported from the layout: pushed with the layout's layer and config digests
    // (the image keeps its id).
    let imported = CapsuleHome::new();
    auth.ok(&imported, &["image", "import", &app, "--name", "app:1"]);
    let dest = registry.name("imported:1");
    auth.ok(&imported, &["push", "-q", "app:1", &dest]);
    assert_eq!(
        blob_digests(&format!("docker://{dest}")),
        (config.clone(), layers.clone())
    );

    // Pulled, then pushed elsewhere: the same blobs, none of them uploaded again
    // to the same repository.
    registry.seed(&layout, "app", "seeded:1");
    let pulled = CapsuleHome::new();
    auth.ok(&pulled, &["pull", "-q", &registry.name("seeded:1")]);
    let again = registry.name("seeded:2");
    let out = auth.ok(&pulled, &["push", "-q", &registry.name("seeded:1"), &again]);
    assert!(out.contains("(3 blobs, 0 uploaded)"), "{out}");
    assert_eq!(
        blob_digests(&format!("docker://{again}")),
        (config.clone(), layers.clone())
    );
    let other = registry.name("other:1");
    let out = auth.ok(&pulled, &["push", "-q", &registry.name("seeded:1"), &other]);
    assert!(out.contains("(3 blobs, 3 uploaded)"), "{out}");
    assert_eq!(
        blob_digests(&format!("docker://{other}")),
        (config, layers.clone())
    );

    // A committed layer on top is packed (a new digest); the layers below keep theirs.
    auth.ok(
        &pulled,
        &[
            "run",
            "--name",
            "work",
            "--image",
            &again,
            "--",
            "echo changed > /data/new",
        ],
    );
    auth.ok(&pulled, &["commit", "work", "changed:1"]);
    // Into the repository that has the layers below: only the new layer and the
    // configuration are sent.
    let changed = registry.name("seeded:3");
    let out = auth.ok(&pulled, &["push", "-q", "changed:1", &changed]);
    assert!(out.contains("(4 blobs, 2 uploaded)"), "{out}");
    let (_, pushed) = blob_digests(&format!("docker://{changed}"));
    assert_eq!(pushed.len(), 3);
    assert_eq!(pushed[..2], layers[..]);
    let fresh = CapsuleHome::new();
    auth.ok(&fresh, &["pull", "-q", &changed]);
    assert_eq!(data_new(&auth, &fresh, &changed, &[]), "changed\n");

    // image rm takes the kept blobs with the layers.
    let blobs = pulled.path().join("images/blobs/sha256");
    let hex = layers[0].strip_prefix("sha256:").unwrap();
    assert!(blobs.join(hex).is_file());
    auth.ok(&pulled, &["rm", "work"]);
    // (run --image pulled seeded:2: another name of the same image.)
    for image in [
        registry.name("seeded:1"),
        registry.name("seeded:2"),
        "changed:1".to_string(),
    ] {
        auth.ok(&pulled, &["image", "rm", &image]);
    }
    assert!(
        !blobs.join(hex).exists(),
        "{:?}",
        fs::read_dir(&blobs).unwrap().collect::<Vec<_>>()
    );
}

#[test]
fn push_with_another_platform_makes_an_index() {
    let work = TempDir::new("pull-push-index");
    let layout = umoci_layout(work.path());
    let l = layout.display().to_string();
    // The app image again, its configuration saying s390x.
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{l}:app"),
            "--architecture",
            "s390x",
            "--tag",
            "app-s390x",
        ],
    );
    let registry = Registry::start(&work.join("registry"), None);
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();
    auth.ok(
        &home,
        &["image", "import", &format!("{l}:app"), "--name", "app:host"],
    );
    auth.ok(
        &home,
        &[
            "image",
            "import",
            &format!("{l}:app-s390x"),
            "--platform",
            "linux/s390x",
            "--name",
            "app:s390x",
        ],
    );
    // Two images of one platform: refused before anything is sent.
    let dest = registry.name("multi:1");
    let out = auth.run(&home, &["push", "app:host", &dest, "--with", "app:host"]);
    refused(&out, "an index has one image per platform");
    assert_eq!(registry.requests("\"PUT /v2/"), 0);

    let out = auth.ok(
        &home,
        &["push", "-q", "app:host", &dest, "--with", "app:s390x"],
    );
    // Two layers shared, two configurations.
    assert!(out.contains("(6 blobs, 4 uploaded)"), "{out}");
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{dest}"),
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        doc["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{raw}"
    );
    let arches: Vec<&str> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(arches.len(), 2, "{raw}");
    assert!(arches.contains(&"s390x"), "{raw}");
    assert_eq!(
        registry.digest("multi:1"),
        out.split_whitespace().nth(1).unwrap()
    );
    // Each platform pulls its own image, with the id it had in the pushing store.
    let listed: serde_json::Value =
        serde_json::from_str(&auth.ok(&home, &["image", "ls", "--format", "json"])).unwrap();
    let id_of = |reference: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["reference"] == reference)
            .unwrap_or_else(|| panic!("{reference} not in {listed}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (platform, from) in [(None, "app:host"), (Some("linux/s390x"), "app:s390x")] {
        let fresh = CapsuleHome::new();
        let mut args = vec!["pull", "-q", &dest];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        let pulled = auth.ok(&fresh, &args);
        assert_eq!(
            pulled.split_whitespace().nth(1),
            Some(id_of(from).as_str()),
            "{from}: {pulled}"
        );
    }
}

/// The owners the image's tar headers gave survive a push and a pull.
fn assert_app_image_owners(auth: &AuthEnv, home: &CapsuleHome, image: &str) {
    let out = auth.ok(
        home,
        &[
            "run",
            "--rm",
            "--image",
            image,
            "--entrypoint",
            "/bin/stat",
            "--",
            "-c",
            "%u:%g %A",
            "/data/owned",
        ],
    );
    assert_eq!(out, format!("{}:{} -rw-r-----\n", OWNER.0, OWNER.1));
}

#[test]
fn interrupted_downloads_resume_with_range_and_are_verified() {
    let work = TempDir::new("pull-resume");
    let layout = umoci_layout(work.path());
    let auth = AuthEnv::new();

    // A registry that answers 503 once, then breaks the top layer off halfway.
    let fake = Fake::start(work.path(), &layout, "cut");
    let home = CapsuleHome::new();
    let image = fake.name("app:app");
    let out = auth.ok(&home, &["pull", "-q", &image]);
    assert!(out.contains("(2 layers, 2 new)"), "{out}");
    assert_eq!(data_new(&auth, &home, &image, &[]), "app\n");
    let log = fake.log();
    assert_eq!(log.matches("GET /v2/app/manifests/app").count(), 2, "{log}");
    let resumed: Vec<&str> = log.lines().filter(|l| l.contains("range=bytes=")).collect();
    // Both layers are the last of some image of the layout: both were cut.
    assert_eq!(resumed.len(), 2, "{log}");
    assert!(
        resumed.iter().all(|l| !l.contains("range=bytes=0-")),
        "{log}"
    );

    // What a killed pull left in downloads/ is resumed by the next one: the real
    // registry answers the rest (206); a partial blob that is wrong is downloaded
    // again whole (200) and the image is still right.
    let registry = Registry::start(&work.join("registry"), None);
    registry.seed(&layout, "app", "app:v1");
    let manifest = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{}", registry.name("app:v1")),
        ],
    );
    let top = manifest
        .split("\"digest\":\"sha256:")
        .last()
        .and_then(|rest| rest.get(..64))
        .unwrap()
        .to_string();
    let blob = fs::read(layout.join("blobs/sha256").join(&top)).unwrap();
    let half = blob.len() / 2;
    for (label, partial, status) in [
        ("good", blob[..half].to_vec(), " 206 "),
        ("bad", vec![b'x'; half], " 200 "),
    ] {
        let home = CapsuleHome::new();
        let downloads = home.path().join("images/downloads");
        fs::create_dir_all(&downloads).unwrap();
        fs::write(downloads.join(&top), &partial).unwrap();
        let before = registry.requests(status);
        let out = auth.ok(&home, &["pull", "-q", &registry.name("app:v1")]);
        assert!(out.contains("(2 layers, 2 new)"), "{label}: {out}");
        let needle = format!("GET /v2/app/blobs/sha256:{top} HTTP/1.1\"{status}");
        assert!(registry.requests(&needle) >= 1, "{label}: no {needle:?}");
        assert!(registry.requests(status) > before);
        assert_eq!(
            data_new(&auth, &home, &registry.name("app:v1"), &[]),
            "app\n",
            "{label}"
        );
        assert_eq!(
            store_entries(&home, "downloads"),
            Vec::<String>::new(),
            "{label}"
        );
    }
}

/// Adds to `layout` an OCI index tagged `multi`: `app` for this machine's platform,
/// `base` for linux/s390x.
fn add_multi_platform_index(layout: &Path) {
    use sha2::Digest as _;
    let index_file = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_file).unwrap()).unwrap();
    let by_tag = |tag: &str| {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone()
    };
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let entry = |tag: &str, arch: &str| {
        let mut desc = by_tag(tag);
        desc.as_object_mut().unwrap().remove("annotations");
        desc["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        desc
    };
    let multi = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("base", "s390x"), entry("app", host)],
    });
    let bytes = serde_json::to_vec(&multi).unwrap();
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    fs::write(&index_file, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn an_index_with_two_platforms() {
    let work = TempDir::new("pull-index");
    let (_layout, registry) = seeded_index(&work);
    let image = registry.name("multi:1");
    let auth = AuthEnv::new();

    // This machine's platform: app, two layers.
    let home = CapsuleHome::new();
    let out = auth.ok(&home, &["pull", "-q", &image]);
    assert!(out.contains("(2 layers, 2 new)"), "{out}");
    assert_eq!(data_new(&auth, &home, &image, &[]), "app\n");
    // --platform picks the other entry (on pull and on run alike).
    let other = CapsuleHome::new();
    assert_eq!(
        data_new(&auth, &other, &image, &["--platform", "linux/s390x"]),
        "base\n"
    );
    let out = auth.run(&other, &["pull", "--platform", "linux/riscv64", &image]);
    let line = refused(&out, "no image for linux/riscv64");
    assert!(
        line.contains("linux/s390x") && line.contains("linux/"),
        "{line}"
    );
}

#[test]
fn a_real_registry_behind_a_token_server() {
    let work = TempDir::new("pull-token");
    let layout = umoci_layout(work.path());
    let key = work.join("token.key");
    let cert = work.join("token.crt");
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=capsule-test",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    let token_log = work.join("token.log");
    let (_tokens, token_port) =
        python_server(work.path(), "token_server.py", &[&key, &cert, &token_log]);
    let realm = format!("http://127.0.0.1:{token_port}/token");
    let registry = Registry::start_token(&work.join("registry"), &realm, &cert);
    registry.seed(&layout, "app", "app:v1");
    let host = format!("127.0.0.1:{}", registry.port);
    let image = registry.name("app:v1");
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();

    let out = auth.run(&home, &["pull", &image]);
    refused(&out, &format!("{host}: authentication required"));
    let out = login(&auth, &home, &host, "wrong");
    refused(&out, "refused the credentials of alice");
    let out = login(&auth, &home, &host, "secret");
    assert!(out.status.success(), "{}", describe(&out));
    let out = auth.ok(&home, &["pull", "-q", &image]);
    assert!(out.contains("(2 layers, 2 new)"), "{out}");
    assert_eq!(data_new(&auth, &home, &image, &[]), "app\n");
    // A push asks for a token that allows it.
    let base = format!("{}:base", layout.display());
    auth.ok(&home, &["image", "import", &base, "--name", "base"]);
    let dest = registry.name("pushed:1");
    let out = auth.ok(&home, &["push", "-q", "base", &dest]);
    assert!(out.contains("(2 blobs, 2 uploaded)"), "{out}");
    let fresh = CapsuleHome::new();
    assert_eq!(data_new(&auth, &fresh, &dest, &[]), "base\n");

    let log = fs::read_to_string(&token_log).unwrap();
    assert!(
        log.contains("scope=repository%3Aapp%3Apull auth=Basic"),
        "{log}"
    );
    assert!(
        log.contains("scope=repository%3Apushed%3Apull%2Cpush auth=Basic"),
        "{log}"
    );
}

/// Writes at `dest` an OCI layout of image `tag` of `layout` with its gzip layers
/// uncompressed (tagged `latest`; the configuration is unchanged: diff ids are the
/// digests of the uncompressed tars).
fn uncompressed_layout(layout: &Path, tag: &str, dest: &Path) {
    use sha2::Digest as _;
    let hex = |bytes: &[u8]| -> String {
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let blobs = dest.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let blob = |digest: &str| {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&blob(desc["digest"].as_str().unwrap())).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    fs::write(blobs.join(&config[7..]), blob(&config)).unwrap();
    for layer in manifest["layers"].as_array_mut().unwrap() {
        let mut tar = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&blob(layer["digest"].as_str().unwrap())[..]),
            &mut tar,
        )
        .unwrap();
        let digest = hex(&tar);
        fs::write(blobs.join(&digest), &tar).unwrap();
        *layer = serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{digest}"),
            "size": tar.len(),
        });
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = hex(&bytes);
    fs::write(blobs.join(&digest), &bytes).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{digest}"),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(dest.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dest.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[test]
fn zstd_and_uncompressed_layers() {
    let work = TempDir::new("pull-zstd");
    let layout = umoci_layout(work.path());
    let registry = Registry::start(&work.join("registry"), None);
    let auth = AuthEnv::new();
    // The app image with its layers uncompressed: served as they are by the fake
    // registry, and compressed with zstd by skopeo for the real one (its blob cache
    // in a home of the test's own, so it does not swap in a gzip it knows).
    let plain_layout = work.join("plain.oci");
    uncompressed_layout(&layout, "app", &plain_layout);
    let fake = Fake::start(work.path(), &plain_layout, "plain");
    let skopeo_home = TempDir::new("pull-zstd-skopeo");
    let dest = format!("docker://{}", registry.name("zstd:1"));
    let mut cmd = Command::new("skopeo");
    cmd.env("HOME", skopeo_home.path())
        .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
        .args(["--dest-compress", "--dest-compress-format", "zstd"])
        .arg(format!("oci:{}:latest", plain_layout.display()))
        .arg(&dest);
    success(&run(&mut cmd), "skopeo copy");
    let raw = tool("skopeo", &["inspect", "--raw", "--tls-verify=false", &dest]);
    assert_eq!(
        raw.matches("application/vnd.oci.image.layer.v1.tar+zstd")
            .count(),
        2,
        "{raw}"
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(plain_layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = fs::read_to_string(
        plain_layout
            .join("blobs/sha256")
            .join(manifest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let plain = "\"application/vnd.oci.image.layer.v1.tar\"";
    assert_eq!(manifest.matches(plain).count(), 2, "{manifest}");
    for image in [fake.name("app:latest"), registry.name("zstd:1")] {
        let fresh = CapsuleHome::new();
        let out = auth.ok(&fresh, &["pull", "-q", &image]);
        assert!(out.contains("(2 layers, 2 new)"), "{image}: {out}");
        assert_app_image(&fresh, &image);
    }
    assert!(fake.log().contains("GET /v2/app/blobs/"));
}

/// A CA of the test's own: its key and certificate.
fn make_ca(work: &Path) -> (String, String) {
    let path = |name: &str| work.join(name).to_str().unwrap().to_string();
    let (key, crt) = (path("ca.key"), path("ca.crt"));
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=capsule test CA",
            "-keyout",
            &key,
            "-out",
            &crt,
        ],
    );
    (key, crt)
}

/// A key and a certificate `NAME.key`, `NAME.crt` for `subject`, signed by the CA;
/// `server`: valid for 127.0.0.1, else a client certificate.
fn sign(
    work: &Path,
    ca_key: &str,
    ca: &str,
    name: &str,
    subject: &str,
    server: bool,
) -> (String, String) {
    let path = |ext: &str| {
        work.join(format!("{name}.{ext}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let (key, csr, crt, ext) = (path("key"), path("csr"), path("crt"), path("ext"));
    tool(
        "openssl",
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ],
    );
    let usage = if server {
        "subjectAltName=IP:127.0.0.1\n"
    } else {
        "extendedKeyUsage=clientAuth\n"
    };
    fs::write(&ext, usage).unwrap();
    tool(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
    (key, crt)
}

#[test]
fn client_certificates_from_the_certs_directory() {
    let work = TempDir::new("pull-mtls");
    let layout = umoci_layout(work.path());
    let (ca_key, ca) = make_ca(work.path());
    let (key, crt) = sign(work.path(), &ca_key, &ca, "server", "/CN=127.0.0.1", true);
    let (client_key, client_crt) = sign(work.path(), &ca_key, &ca, "client", "/CN=alice", false);
    // The registry asks every client for a certificate its CA signed.
    let tls =
        format!("  tls:\n    certificate: {crt}\n    key: {key}\n    clientcas:\n      - {ca}\n");
    let registry = Registry::start_with(&work.join("registry"), &tls, None, None);
    // A certificate directory as containers-certs.d(5) has it.
    let certs = work.join("certs.d");
    fs::create_dir(&certs).unwrap();
    fs::copy(&ca, certs.join("ca.crt")).unwrap();
    fs::copy(&client_crt, certs.join("alice.cert")).unwrap();
    fs::copy(&client_key, certs.join("alice.key")).unwrap();
    let certs_arg = certs.to_str().unwrap();
    tool(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "-q",
            "--dest-cert-dir",
            certs_arg,
            &format!("oci:{}:app", layout.display()),
            &format!("docker://{}", registry.name("app:v1")),
        ],
    );
    let image = registry.name("app:v1");
    let auth = AuthEnv::new();

    // Without a client certificate: refused by the registry, in one line.
    let home = CapsuleHome::new();
    let mut cmd = auth.command(&home, &["pull", "-q", &image]);
    let out = run(cmd.env("SSL_CERT_FILE", &ca));
    let line = refused(
        &out,
        &format!("127.0.0.1:{}: cannot reach the registry", registry.port),
    );
    assert!(line.contains("asking for a client certificate"), "{line}");
    assert!(!home.path().join("images/index.json").exists());
    // --cert-dir: the CA and the client certificate from there.
    let mut cmd = auth.command(&home, &["pull", "-q", "--cert-dir", certs_arg, &image]);
    let text = success(
        &run(cmd.env("SSL_CERT_FILE", "/dev/null")),
        "pull --cert-dir",
    );
    assert!(text.contains("(2 layers, 2 new)"), "{text}");
    let mut cmd = auth.command(
        &home,
        &[
            "push",
            "-q",
            "--cert-dir",
            certs_arg,
            &image,
            &registry.name("app:v2"),
        ],
    );
    success(
        &run(cmd.env("SSL_CERT_FILE", "/dev/null")),
        "push --cert-dir",
    );
    // The user's directory for HOST:PORT, found without the flag.
    let user_dir = auth
        .dir
        .join("config/containers/certs.d")
        .join(format!("127.0.0.1:{}", registry.port));
    fs::create_dir_all(user_dir.parent().unwrap()).unwrap();
    fs::rename(&certs, &user_dir).unwrap();
    let fresh = CapsuleHome::new();
    let mut cmd = auth.command(&fresh, &["pull", "-q", &registry.name("app:v2")]);
    let text = success(&run(cmd.env("SSL_CERT_FILE", "/dev/null")), "pull, certs.d");
    assert!(text.contains("(2 layers, 2 new)"), "{text}");
    assert_eq!(
        data_new(&auth, &fresh, &registry.name("app:v2"), &[]),
        "app\n"
    );
    // A certificate without its key: one line naming it.
    fs::remove_file(user_dir.join("alice.key")).unwrap();
    let mut cmd = auth.command(&CapsuleHome::new(), &["pull", "-q", &image]);
    let line = refused(
        &run(cmd.env("SSL_CERT_FILE", "/dev/null")),
        "alice.cert: a client certificate without its .key",
    );
    assert!(line.contains(user_dir.to_str().unwrap()), "{line}");
}

#[test]
fn https_registries_are_verified() {
    let work = TempDir::new("pull-tls");
    let layout = umoci_layout(work.path());
    let (ca_key, ca) = make_ca(work.path());
    let (key, crt) = sign(work.path(), &ca_key, &ca, "server", "/CN=127.0.0.1", true);
    let tls = format!("  tls:\n    certificate: {crt}\n    key: {key}\n");
    let registry = Registry::start_with(&work.join("registry"), &tls, None, None);
    registry.seed(&layout, "app", "app:v1");
    let image = registry.name("app:v1");
    let auth = AuthEnv::new();

    // Trusted through $SSL_CERT_FILE: https, verified.
    let home = CapsuleHome::new();
    let mut cmd = auth.command(&home, &["pull", "-q", &image]);
    let out = run(cmd.env("SSL_CERT_FILE", &ca));
    let text = success(&out, "pull with the CA trusted");
    assert!(text.contains("(2 layers, 2 new)"), "{text}");
    // Not trusted: one line saying why, not the plain-http fallback's answer.
    let untrusted = CapsuleHome::new();
    let mut cmd = auth.command(&untrusted, &["pull", &image]);
    let out = run(cmd.env("SSL_CERT_FILE", "/dev/null"));
    let line = refused(
        &out,
        &format!("127.0.0.1:{}: cannot reach the registry", registry.port),
    );
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    // The registry's CA in a certificate directory, as in /etc/containers/certs.d.
    let certs = work.join("certs.d");
    fs::create_dir(&certs).unwrap();
    fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let certs_home = CapsuleHome::new();
    let mut cmd = auth.command(
        &certs_home,
        &["pull", "-q", "--cert-dir", certs.to_str().unwrap(), &image],
    );
    let out = run(cmd.env("SSL_CERT_FILE", "/dev/null"));
    success(&out, "pull --cert-dir");
    // --tls-verify=false for this registry: accepted.
    let mut cmd = auth.command(&untrusted, &["pull", "-q", "--tls-verify=false", &image]);
    let out = run(cmd.env("SSL_CERT_FILE", "/dev/null"));
    success(&out, "pull --tls-verify=false");
    let mut cmd = auth.command(
        &untrusted,
        &[
            "run",
            "--rm",
            "--pull=never",
            "--image",
            &image,
            "--entrypoint",
            "/bin/cat",
            "--",
            "/data/new",
        ],
    );
    assert_eq!(success(&run(&mut cmd), "run"), "app\n");
}

/// The multi-platform index of `add_multi_platform_index` on a fresh registry, as
/// `multi:1`.
fn seeded_index(work: &TempDir) -> (PathBuf, Registry) {
    let layout = umoci_layout(work.path());
    add_multi_platform_index(&layout);
    let registry = Registry::start(&work.join("registry"), None);
    tool(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "-q",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:multi", layout.display()),
            &format!("docker://{}", registry.name("multi:1")),
        ],
    );
    (layout, registry)
}

#[test]
fn pull_all_platforms_stores_every_image_and_pushes_the_same_index() {
    let work = TempDir::new("pull-all");
    let (_layout, registry) = seeded_index(&work);
    let image = registry.name("multi:1");
    let index_digest = registry.digest("multi:1");
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();

    // A combination that means nothing: one line, nothing made.
    let out = auth.run(
        &home,
        &[
            "pull",
            "--all-platforms",
            "--platform",
            "linux/s390x",
            &image,
        ],
    );
    refused(&out, "cannot be combined with --platform");
    assert!(!home.path().join("images").exists());

    let out = auth.ok(&home, &["pull", "-q", "--all-platforms", &image]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&format!("{image} linux/s390x sha256:")),
        "{out}"
    );
    assert_eq!(
        lines[2],
        format!("{image} {index_digest} (index of 2 platforms)"),
        "{out}"
    );

    // Listed once per platform under the reference.
    let listed: serde_json::Value =
        serde_json::from_str(&auth.ok(&home, &["image", "ls", "--format", "json"])).unwrap();
    let platforms: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["reference"].as_str().unwrap(),
                i["platform"].as_str().unwrap(),
            )
        })
        .collect();
    let host = capsule_host_platform();
    assert_eq!(
        platforms,
        vec![
            (image.as_str(), "linux/s390x"),
            (image.as_str(), host.as_str())
        ],
        "{listed}"
    );
    let table = auth.ok(&home, &["image", "ls"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0].last(), Some(&"PLATFORM"), "{table}");
    assert_eq!(
        rows[1..].iter().map(|r| (r[0], r[5])).collect::<Vec<_>>(),
        platforms,
        "{table}"
    );

    // Pushed back: each manifest and the index as pulled, so the same digest.
    let copy = registry.name("copy:1");
    let out = auth.ok(&home, &["push", "-q", &image, &copy]);
    assert_eq!(
        out,
        // The layer the two images share goes once.
        format!("{copy} {index_digest} (5 blobs, 4 uploaded)\n"),
        "{out}"
    );
    assert_eq!(registry.digest("copy:1"), index_digest);
    let out = auth.run(&home, &["push", &image, &copy, "--with", &image]);
    refused(&out, "is a multi-platform index");

    // Without the registry: run chooses among the stored platforms.
    drop(registry);
    assert_eq!(data_new(&auth, &home, &image, &[]), "app\n");
    assert_eq!(
        data_new(&auth, &home, &image, &["--platform", "linux/s390x"]),
        "base\n"
    );
    let out = auth.run(
        &home,
        &[
            "run",
            "--rm",
            "--pull=never",
            "--platform",
            "linux/riscv64",
            "--image",
            &image,
            "--",
            "true",
        ],
    );
    refused(&out, "no image for linux/riscv64 in the store");

    // rm takes every platform's image.
    let out = auth.ok(&home, &["image", "rm", &image]);
    assert_eq!(out.matches("Deleted: sha256:").count(), 2, "{out}");
    assert_eq!(
        auth.ok(&home, &["image", "ls", "--format", "json"]).trim(),
        "[]"
    );
}

/// This machine's platform as capsule names it (linux/amd64).
fn capsule_host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

/// The manifest skopeo reads at `image`, as JSON.
fn raw_manifest(image: &str) -> serde_json::Value {
    let raw = tool("skopeo", &["inspect", "--raw", "--tls-verify=false", image]);
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{image}: {e}: {raw}"))
}

#[test]
fn export_writes_the_kept_blobs_so_digests_survive_import_and_push() {
    let work = TempDir::new("pull-export");
    let layout = umoci_layout(work.path());
    let registry = Registry::start(&work.join("registry"), None);
    registry.seed(&layout, "app", "app:1");
    let image = registry.name("app:1");
    let (config, layers) = blob_digests(&format!("docker://{image}"));
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();
    let pulled = auth.ok(&home, &["pull", "-q", &image]);
    let id = pulled.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(id, config);

    // An OCI layout: the pulled manifest itself, with the pulled blobs.
    let oci = work.join("app.oci");
    let out = auth.ok(&home, &["image", "export", &image, oci.to_str().unwrap()]);
    assert_eq!(
        out,
        format!("{} {}\n", oci.display(), registry.digest("app:1"))
    );
    assert_eq!(
        blob_digests(&format!("oci:{}:1", oci.display())),
        (config.clone(), layers.clone())
    );
    assert_eq!(
        tool("umoci", &["ls", "--layout", oci.to_str().unwrap()]),
        "1\n"
    );
    tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:1", oci.display()),
            work.join("unpacked").to_str().unwrap(),
        ],
    );
    assert_eq!(
        fs::read_to_string(work.join("unpacked/rootfs/data/new")).unwrap(),
        "app\n"
    );

    // A docker archive of the same blobs.
    let archive = work.join("app.tar");
    auth.ok(
        &home,
        &[
            "image",
            "export",
            "--format",
            "docker-archive",
            &image,
            archive.to_str().unwrap(),
        ],
    );
    let inspect: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", archive.display())],
    ))
    .unwrap();
    // (skopeo names a docker archive's layers by their diff ids.)
    let diff_ids = &raw_manifest(&format!("oci:{}:1", oci.display()))["config"]["digest"];
    let diff_ids = fs::read_to_string(
        oci.join("blobs/sha256")
            .join(diff_ids.as_str().unwrap().strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    let diff_ids: serde_json::Value = serde_json::from_str(&diff_ids).unwrap();
    assert_eq!(
        inspect["Layers"], diff_ids["rootfs"]["diff_ids"],
        "{inspect}"
    );
    // The layers in it are the pulled blobs, byte for byte.
    let members = tool("tar", &["-tf", archive.to_str().unwrap()]);
    for layer in &layers {
        let member = format!("blobs/sha256/{}", layer.strip_prefix("sha256:").unwrap());
        assert!(members.lines().any(|m| m == member), "{member}: {members}");
    }

    // Imported elsewhere, each keeps the image id; pushed, the layers keep their digests.
    for (n, input) in [oci.display().to_string(), archive.display().to_string()]
        .iter()
        .enumerate()
    {
        let fresh = CapsuleHome::new();
        let out = auth.ok(&fresh, &["image", "import", input, "--name", "again:1"]);
        assert!(out.starts_with(&format!("again:1 {config} ")), "{out}");
        let dest = registry.name(&format!("again{n}:1"));
        auth.ok(&fresh, &["push", "-q", "again:1", &dest]);
        assert_eq!(
            blob_digests(&format!("docker://{dest}")),
            (config.clone(), layers.clone())
        );
        assert_eq!(data_new(&auth, &fresh, "again:1", &[]), "app\n");
    }

    // The archive names the image as the store did (RepoTags).
    let named = CapsuleHome::new();
    let out = auth.ok(&named, &["image", "import", archive.to_str().unwrap()]);
    assert!(out.starts_with(&format!("{image} {config} ")), "{out}");

    // A committed image: its new layer packed the way it was made, so the export
    // has the image's id as its configuration digest, and the pulled layers below.
    auth.ok(
        &home,
        &[
            "run",
            "--name",
            "work",
            "--image",
            &image,
            "--",
            "echo changed > /data/new",
        ],
    );
    let committed = auth.ok(&home, &["commit", "work", "changed:1"]);
    let committed_id = committed.split_whitespace().nth(1).unwrap().to_string();
    let exported = work.join("changed.oci");
    auth.ok(
        &home,
        &["image", "export", "changed:1", exported.to_str().unwrap()],
    );
    let doc = raw_manifest(&format!("oci:{}:1", exported.display()));
    assert_eq!(doc["config"]["digest"], committed_id.as_str(), "{doc}");
    let digests: Vec<&str> = doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), 3, "{doc}");
    assert_eq!(digests[..2], layers[..], "{doc}");
}

/// `capsule push` with blobs over `chunk` bytes sent in chunks of that size.
fn push_chunked(auth: &AuthEnv, home: &CapsuleHome, chunk: &str, args: &[&str]) -> Output {
    let mut cmd = auth.command(home, args);
    cmd.env("CAPSULE_PUSH_CHUNK_SIZE", chunk)
        .env("CAPSULE_LOG", "info");
    run(&mut cmd)
}

#[test]
fn large_blobs_are_pushed_in_chunks() {
    let work = TempDir::new("pull-chunks");
    let layout = umoci_layout(work.path());
    let registry = Registry::start(&work.join("registry"), None);
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();
    let app = format!("{}:app", layout.display());
    auth.ok(&home, &["image", "import", &app, "--name", "app:1"]);
    let (config, layers) = blob_digests(&format!("oci:{app}"));
    let sizes: Vec<u64> = layers
        .iter()
        .map(|d| {
            fs::metadata(layout.join("blobs/sha256").join(&d[7..]))
                .unwrap()
                .len()
        })
        .collect();
    // The base layer (a few MB) in chunks, the top one (smaller) whole.
    let chunk = 1 << 20;
    assert!(sizes[0] > 2 * chunk && sizes[1] < chunk, "{sizes:?}");

    let dest = registry.name("chunked:1");
    let out = push_chunked(
        &auth,
        &home,
        &chunk.to_string(),
        &["push", "-q", "app:1", &dest],
    );
    success(&out, "push in chunks");
    let expected = sizes[0].div_ceil(chunk);
    assert_eq!(
        registry.requests("\"PATCH /v2/chunked/blobs/uploads/") as u64,
        expected
    );
    assert_eq!(registry.requests("\"PUT /v2/chunked/blobs/uploads/"), 3);
    assert_eq!(blob_digests(&format!("docker://{dest}")), (config, layers));
    let fresh = CapsuleHome::new();
    assert_eq!(data_new(&auth, &fresh, &dest, &[]), "app\n");
}

#[test]
fn chunked_uploads_fall_back_to_whole_and_resume_where_the_registry_stopped() {
    let work = TempDir::new("pull-chunks-fake");
    let layout = umoci_layout(work.path());
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();
    let app = format!("{}:app", layout.display());
    auth.ok(&home, &["image", "import", &app, "--name", "app:1"]);

    // PATCH refused (405): the large blob (the base layer) goes whole in a new upload.
    let chunk = "1048576";
    let fake = Fake::start(work.path(), &layout, "nopatch");
    let out = push_chunked(
        &auth,
        &home,
        chunk,
        &["push", "-q", "app:1", &fake.name("app:1")],
    );
    success(&out, "push to a registry without chunks");
    let log = fake.log();
    assert_eq!(log.matches("PATCH ").count(), 1, "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("PUT /v2/app/blobs/uploads/") && !l.ends_with("length=0"))
            .count(),
        3,
        "{log}"
    );
    assert!(
        stderr(&out).contains("refuses chunked uploads"),
        "{}",
        describe(&out)
    );

    // The second chunk breaks off halfway: the registry is asked where it stopped,
    // and the upload goes on from there.
    let fake = Fake::start(work.path(), &layout, "patchcut");
    let out = push_chunked(
        &auth,
        &home,
        chunk,
        &["push", "-q", "app:1", &fake.name("app:1")],
    );
    success(&out, "push resumed");
    let log = fake.log();
    let status = log
        .lines()
        .filter(|l| l.starts_with("GET /v2/app/blobs/uploads/"))
        .count();
    assert_eq!(status, 1, "{log}");
    // Resumed at 1 MiB + 512 kiB: the half of the second chunk the registry kept.
    assert!(log.contains("content-range=1572864-"), "{log}");
    assert!(
        stderr(&out).contains("resuming at byte 1572864"),
        "{}",
        describe(&out)
    );
}

#[test]
fn pull_all_platforms_keeps_nothing_when_one_platform_fails() {
    let work = TempDir::new("pull-all-fail");
    let (layout, registry) = seeded_index(&work);
    let image = registry.name("multi:1");
    // The app image's top layer (only the second entry, this machine's, has it)
    // gone from the registry's storage: the first entry (base) pulls, then app fails.
    let (_, layers) = blob_digests(&format!("oci:{}:app", layout.display()));
    let top = &layers[1][7..];
    let data = work.join("registry/data/docker/registry/v2/blobs/sha256");
    fs::remove_dir_all(data.join(&top[..2]).join(top)).unwrap();
    let auth = AuthEnv::new();
    let home = CapsuleHome::new();
    // A store with an image of its own, which stays as it is.
    let root = work.join("root");
    compose_root(&root);
    auth.ok(
        &home,
        &[
            "image",
            "import",
            root.to_str().unwrap(),
            "--name",
            "plain:1",
        ],
    );
    let layers_before = store_entries(&home, "layers");
    let out = auth.run(&home, &["pull", "--all-platforms", &image]);
    refused(
        &out,
        &format!("blob sha256:{top}: not found on the registry"),
    );
    assert!(stderr(&out).contains("linux/s390x"), "{}", describe(&out));
    let listed: serde_json::Value =
        serde_json::from_str(&auth.ok(&home, &["image", "ls", "--format", "json"])).unwrap();
    let references: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap_or("<none>"))
        .collect();
    assert_eq!(references, ["plain:1"], "{listed}");
    assert_eq!(store_entries(&home, "layers"), layers_before);
}
