//! `capsule build`: images from Containerfiles, built as an ordinary user from a base
//! image made by umoci, judged by what the built image's programs print and by the
//! store and the context on disk afterwards (the base image's layers and the context
//! unchanged, no capsule of a RUN step left behind).

mod common;
#[path = "image_support.rs"]
mod image_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use image_support::*;

/// A home with the umoci test image `base` imported as `base:1`.
fn home_with_base(work: &TempDir) -> CapsuleHome {
    let layout = umoci_layout(work.path());
    let home = CapsuleHome::new();
    let source = format!("{}:base", layout.display());
    capsule_ok(&home, &["image", "import", &source, "--name", "base:1"]);
    home
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn build(home: &CapsuleHome, args: &[&str]) -> Output {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    home.run(&all)
}

fn build_ok(home: &CapsuleHome, args: &[&str]) -> String {
    let out = build(home, args);
    success(&out, &format!("capsule build {}", args.join(" ")))
}

/// Capsules of RUN steps left in the home.
fn leftover_capsules(home: &CapsuleHome) -> Vec<String> {
    fs::read_dir(home.path().join("capsules"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("capsule-build-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The context of the main test: users for --chown, an ignored file, a tool, and a
/// gzip archive (made by Python's tarfile) whose entry has its own owner and mode.
fn main_context(dir: &Path) {
    write(
        dir,
        "passwd",
        "root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
    );
    write(dir, "group", "root:x:0:\napp:x:1002:\n");
    write(dir, "src/a.txt", "alpha\n");
    write(dir, "src/skip.log", "ignored\n");
    write(dir, "src/deep/b.txt", "beta\n");
    write(dir, ".dockerignore", "**/*.log\n");
    write(dir, "tool", "#!/bin/sh\necho tool ran\n");
    fs::set_permissions(dir.join("tool"), fs::Permissions::from_mode(0o700)).unwrap();
    let script = format!(
        "import io, tarfile\n\
         with tarfile.open('{}', 'w:gz') as t:\n\
         \x20   data = b'packed\\n'\n\
         \x20   info = tarfile.TarInfo('pkg/file'); info.size = len(data)\n\
         \x20   info.uid, info.gid, info.mode = 77, 88, 0o640\n\
         \x20   t.addfile(info, io.BytesIO(data))\n",
        dir.join("archive.tar.gz").display()
    );
    tool("python3", &["-c", &script]);
    write(
        dir,
        "Containerfile",
        "# syntax=docker/dockerfile:1\n\
         ARG BASE=base:1\n\
         FROM $BASE\n\
         ARG GREETING=hello\n\
         ENV APP=/opt/app \\\n\
         \x20   MODE=\"two words\"\n\
         COPY passwd group /etc/\n\
         WORKDIR $APP\n\
         COPY src/ src/\n\
         COPY --chown=app:app --chmod=0750 tool /usr/local/bin/tool\n\
         ADD archive.tar.gz /opt/unpacked/\n\
         RUN echo \"$GREETING $MODE in $(pwd)\" > made && echo RUN-STEP-$((1+1))\n\
         USER app\n\
         EXPOSE 8080/tcp\n\
         CMD [\"/bin/sh\", \"-c\", \"cat made; stat -c '%a %u %g %n' /usr/local/bin/tool /opt/unpacked/pkg/file; ls -R src; echo home=$HOME\"]\n",
    );
}

const MAIN_OUTPUT: &str = "hello two words in /opt/app\n\
750 1001 1002 /usr/local/bin/tool\n\
640 77 88 /opt/unpacked/pkg/file\n\
src:\na.txt\ndeep\n\nsrc/deep:\nb.txt\n\
home=/home/app\n";

#[test]
fn a_containerfile_builds_an_image_that_runs_as_it_says() {
    let work = TempDir::new("build-main");
    let home = home_with_base(&work);
    let context = work.join("ctx");
    main_context(&context);
    let layers_before = snapshot(&home.path().join("images/layers"));
    let context_before = snapshot(&context);

    let out = build_ok(&home, &["-t", "app:1", context.to_str().unwrap()]);
    assert!(
        out.contains("STEP 1/13: ARG BASE=base:1") || out.contains("STEP 1/12: FROM $BASE"),
        "{out}"
    );
    assert!(
        out.contains("RUN-STEP-2"),
        "the RUN step's output is shown: {out}"
    );
    assert!(out.contains("Successfully tagged app:1"), "{out}");

    let ran = capsule_ok(&home, &["run", "--rm", "--image", "app:1"]);
    assert_eq!(ran, MAIN_OUTPUT, "what the built image's CMD printed");

    // The base image's layers and the context are as they were; no RUN capsule stays.
    let layers_after = snapshot(&home.path().join("images/layers"));
    // (The layers directory itself gains the new layers: only what was there counts.)
    let kept: std::collections::BTreeMap<_, _> = layers_after
        .into_iter()
        .filter(|(k, _)| !k.is_empty() && layers_before.contains_key(k))
        .collect();
    let mut before = layers_before;
    before.remove("");
    assert_same(&kept, &before, "the base image's layers");
    assert_same(&snapshot(&context), &context_before, "the build context");
    assert_eq!(leftover_capsules(&home), Vec::<String>::new());

    // Intermediate images are the build cache's: listed only with -a.
    let listed = capsule_ok(&home, &["image", "ls"]);
    assert_eq!(listed.lines().count(), 3, "header, app:1, base:1: {listed}");
    let all = capsule_ok(&home, &["image", "ls", "-a"]);
    assert!(all.lines().count() > 3, "{all}");
}

#[test]
fn a_rebuild_runs_only_what_changed() {
    let work = TempDir::new("build-cache");
    let home = home_with_base(&work);
    let context = work.join("ctx");
    main_context(&context);
    let ctx = context.to_str().unwrap();
    let first = build_ok(&home, &["-t", "app:1", ctx]);
    assert!(first.contains("RUN-STEP-2"), "{first}");
    let id = first.lines().last().unwrap().to_string();

    // Nothing changed: every step from the cache, the same image.
    let again = build_ok(&home, &["-t", "app:1", ctx]);
    assert!(!again.contains("RUN-STEP-2"), "{again}");
    assert!(again.contains("0 steps run"), "{again}");
    assert_eq!(again.lines().last().unwrap(), id);

    // A file the ignore file leaves out changes nothing either.
    write(&context, "src/skip.log", "changed, but ignored\n");
    let ignored = build_ok(&home, &["-t", "app:1", ctx]);
    assert!(ignored.contains("0 steps run"), "{ignored}");

    // A source of `COPY src/` changed: that step and the ones after it run again.
    write(&context, "src/a.txt", "alpha, changed\n");
    let changed = build_ok(&home, &["-t", "app:1", ctx]);
    assert!(changed.contains("RUN-STEP-2"), "{changed}");
    let before_copy = changed.split("COPY src/").next().unwrap();
    assert_eq!(
        before_copy.matches("Using cache").count(),
        3,
        "ENV, COPY passwd, WORKDIR from the cache: {changed}"
    );
    assert_ne!(changed.lines().last().unwrap(), id);
    let ran = capsule_ok(
        &home,
        &[
            "run",
            "--rm",
            "--image",
            "app:1",
            "--",
            "/bin/cat",
            "src/a.txt",
        ],
    );
    assert_eq!(ran, "alpha, changed\n");

    // A --build-arg that a RUN sees is part of its key; --no-cache runs everything.
    let arg = build_ok(
        &home,
        &["--build-arg", "GREETING=bonjour", "-t", "app:2", ctx],
    );
    assert!(arg.contains("RUN-STEP-2"), "{arg}");
    let made = capsule_ok(
        &home,
        &["run", "--rm", "--image", "app:2", "--", "/bin/cat", "made"],
    );
    assert_eq!(made, "bonjour two words in /opt/app\n");
    let fresh = build_ok(&home, &["--no-cache", "-t", "app:1", ctx]);
    assert!(
        fresh.contains("RUN-STEP-2") && fresh.contains(" 0 from the cache"),
        "{fresh}"
    );

    // prune removes the intermediate images and the cache; tagged images stay.
    capsule_ok(&home, &["image", "prune"]);
    let listed = capsule_ok(&home, &["image", "ls", "-a"]);
    assert_eq!(
        listed.lines().count(),
        4,
        "header, app:1, app:2, base:1: {listed}"
    );
    let after = build_ok(&home, &["-t", "app:1", ctx]);
    assert!(after.contains("RUN-STEP-2"), "the cache is gone: {after}");
}

#[test]
fn stages_copy_from_each_other_and_target_picks_one() {
    let work = TempDir::new("build-stages");
    let home = home_with_base(&work);
    let context = work.join("ctx");
    write(
        &context,
        "Containerfile",
        "FROM base:1 AS builder\n\
         RUN mkdir -p /out && echo built > /out/result && cp_absent=1\n\
         FROM scratch AS bare\n\
         COPY --from=builder /out/result /result\n\
         FROM base:1\n\
         COPY --from=bare /result /from-bare\n\
         COPY --from=builder /data/owned /owned-copy\n\
         CMD [\"/bin/sh\", \"-c\", \"cat /from-bare; stat -c '%a %u %g' /owned-copy; test -e /out || echo no-out\"]\n",
    );
    let ctx = context.to_str().unwrap();
    build_ok(&home, &["-t", "final:1", ctx]);
    let ran = capsule_ok(&home, &["run", "--rm", "--image", "final:1"]);
    // COPY --from keeps the owner the file has in its stage.
    assert_eq!(ran, format!("built\n640 {} {}\nno-out\n", OWNER.0, OWNER.1));

    build_ok(&home, &["--target", "builder", "-t", "stage:builder", ctx]);
    let out = capsule_ok(
        &home,
        &[
            "run",
            "--rm",
            "--image",
            "stage:builder",
            "--",
            "/bin/cat",
            "/out/result",
        ],
    );
    assert_eq!(out, "built\n");

    // The scratch stage holds the one file and nothing else.
    build_ok(&home, &["--target", "bare", "-t", "stage:bare", ctx]);
    let exported = work.join("bare.oci");
    capsule_ok(
        &home,
        &["image", "export", "stage:bare", exported.to_str().unwrap()],
    );
    let bundle = work.join("bare-bundle");
    // The layout names the image by its tag, as `docker save` would.
    let image = format!("{}:bare", exported.display());
    let unpacked = Command::new("umoci")
        .args([
            "unpack",
            "--rootless",
            "--image",
            &image,
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        unpacked.status.success(),
        "umoci unpack: {}",
        describe(&unpacked)
    );
    let mut names: Vec<String> = fs::read_dir(bundle.join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["result"]);
}

#[test]
fn bad_containerfiles_are_refused_with_file_and_line_before_anything_runs() {
    let work = TempDir::new("build-bad");
    let home = home_with_base(&work);
    let context = work.join("ctx");
    write(&context, "present", "x\n");
    let index = home.path().join("images/index.json");
    for (file, line, words) in [
        (
            "FROM base:1\nFROBNICATE x\n",
            2,
            "unknown instruction FROBNICATE",
        ),
        ("FROM nope:1\n", 1, "FROM nope:1: no such image"),
        (
            "FROM base:1\nRUN echo RAN\nCOPY missing /x\n",
            3,
            "missing: no such file in the build context",
        ),
        (
            "FROM base:1\nRUN echo RAN\nCOPY ../outside /x\n",
            3,
            "outside the build context",
        ),
        (
            "FROM base:1\nRUN echo RAN\nCOPY --from=later /a /b\nFROM base:1 AS later\n",
            3,
            "--from=later",
        ),
        ("FROM base:1\nRUN echo RAN\nENV A=${B\n", 3, "not closed"),
        (
            "FROM base:1\nRUN echo RAN\nEXPOSE 99999\n",
            3,
            "EXPOSE 99999",
        ),
        (
            "FROM base:1\nADD https://example.org/x /x\n",
            2,
            "only local files",
        ),
        ("FROM base:1\nRUN <<EOF\necho hi\nEOF\n", 2, "here-document"),
        ("RUN echo first\n", 1, "first instruction must be FROM"),
    ] {
        write(&context, "Containerfile", file);
        let before = fs::read(&index).unwrap();
        let out = build(&home, &["-t", "bad:1", context.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{file:?}: {}", describe(&out));
        assert!(
            err.contains(&format!("Containerfile:{line}: ")) && err.contains(words),
            "{file:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{file:?}: one line: {err}");
        assert!(!stdout(&out).contains("RAN"), "{file:?}: a step ran");
        assert_eq!(
            fs::read(&index).unwrap(),
            before,
            "{file:?}: the store changed"
        );
    }
    for (args, words) in [
        (vec!["--target", "nope"], "--target nope: no stage"),
        (vec!["--build-arg", "1x=2"], "not a variable name"),
        (vec!["-t", "Bad Ref"], "Bad Ref"),
    ] {
        write(&context, "Containerfile", "FROM base:1\nRUN echo RAN\n");
        let mut all = args.clone();
        all.push(context.to_str().unwrap());
        let out = build(&home, &all);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", describe(&out));
        assert!(stderr(&out).contains(words), "{args:?}: {}", stderr(&out));
        assert!(!stdout(&out).contains("RAN"), "{args:?}: a step ran");
    }
    let out = build(&home, &[work.join("no-such-dir").to_str().unwrap()]);
    assert!(
        stderr(&out).contains("not a directory"),
        "{}",
        describe(&out)
    );

    // A failing RUN: its status and line, no tag, no capsule left behind.
    write(
        &context,
        "Containerfile",
        "FROM base:1\nRUN echo partial > /p; exit 3\n",
    );
    let out = build(&home, &["-t", "bad:1", context.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        stderr(&out)
            .contains("Containerfile:2: RUN echo partial > /p; exit 3: exited with status 3"),
        "{}",
        stderr(&out)
    );
    assert!(!capsule_ok(&home, &["image", "ls"]).contains("bad"));
    assert_eq!(leftover_capsules(&home), Vec::<String>::new());
}

/// The Debian bookworm minbase root of tests/packages.rs as a tar archive (the same
/// cache file, made with mmdebstrap when missing); `None`, saying why, without
/// mmdebstrap or a mirror.
fn debian_minbase() -> Option<std::path::PathBuf> {
    let cache = bin_dir().join("packages-cache");
    let tar = cache.join("bookworm-minbase.tar");
    if tar.exists() {
        return Some(tar);
    }
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: mmdebstrap is not installed");
        return None;
    }
    fs::create_dir_all(&cache).unwrap();
    let partial = cache.join(format!("bookworm-minbase.tar.{}", std::process::id()));
    let out = Command::new("mmdebstrap")
        .args(["--variant=minbase", "--format=tar", "bookworm"])
        .arg(&partial)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        let _ = fs::remove_file(&partial);
        println!("skipped: mmdebstrap could not build the root (no mirror answers?)");
        return None;
    }
    fs::rename(&partial, &tar).unwrap();
    Some(tar)
}

/// The real test of a builder: apt-get in a RUN of a Debian image, with _apt-owned
/// files, dpkg's chown/chmod, maintainer scripts that add a user, and useradd; the
/// image runs and shows the owners dpkg and the steps set.
#[test]
fn apt_get_install_in_a_run_step_of_a_debian_image() {
    let Some(tar) = debian_minbase() else { return };
    let work = TempDir::new("build-apt");
    let home = CapsuleHome::new();
    capsule_ok(
        &home,
        &[
            "image",
            "import",
            tar.to_str().unwrap(),
            "--name",
            "bookworm:min",
        ],
    );
    let context = work.join("ctx");
    write(
        &context,
        "Containerfile",
        "FROM bookworm:min\n\
         RUN apt-get update -q >/dev/null && apt-get install -y -q uuid-runtime >/dev/null\n\
         RUN useradd -m bob && mkdir /srv/data && chown bob:bob /srv/data\n\
         CMD [\"sh\", \"-c\", \"stat -c '%U:%G %a %n' /var/lib/libuuid /srv/data /home/bob; test -x /usr/sbin/uuidd && echo uuidd-installed\"]\n",
    );
    let out = build(&home, &["-t", "uuid:1", context.to_str().unwrap()]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    if [
        "Temporary failure resolving",
        "Could not connect",
        "Could not resolve",
    ]
    .iter()
    .any(|m| text.contains(m))
    {
        println!("skipped: the mirror does not answer\n{}", describe(&out));
        return;
    }
    success(&out, "capsule build of an apt-get RUN");
    let ran = capsule_ok(&home, &["run", "--rm", "--image", "uuid:1"]);
    assert_eq!(
        ran,
        "uuidd:uuidd 2775 /var/lib/libuuid\nbob:bob 755 /srv/data\nbob:bob 755 /home/bob\nuuidd-installed\n"
    );
    assert_eq!(leftover_capsules(&home), Vec::<String>::new());
    // The base image is as it was: no uuidd in it.
    let base = capsule_ok(
        &home,
        &[
            "run",
            "--rm",
            "--image",
            "bookworm:min",
            "--",
            "sh",
            "-c",
            "id uuidd 2>/dev/null || echo no-uuidd",
        ],
    );
    assert_eq!(base, "no-uuidd\n");
}
