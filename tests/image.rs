//! Images: OCI layouts, OCI and docker archives made by umoci and skopeo, and plain
//! root file systems made by GNU tar, imported into the store and run; layers shared
//! between images stored once; capsules of one image isolated from each other; diff,
//! commit and export read back by umoci and skopeo.

mod common;
#[path = "image_support.rs"]
mod image_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::*;
use image_support::*;

#[test]
fn every_image_format_imports_and_runs() {
    let work = TempDir::new("image-formats");
    let layout = umoci_layout(work.path());
    let docker = work.join("app-docker.tar");
    let oci_archive = work.join("app-oci.tar");
    skopeo_copy(
        &layout,
        "app",
        &format!("docker-archive:{}:app:v1", docker.display()),
    );
    skopeo_copy(
        &layout,
        "app",
        &format!("oci-archive:{}:app", oci_archive.display()),
    );
    let home = CapsuleHome::new();
    let from_layout = format!("{}:app", layout.display());
    capsule_ok(
        &home,
        &["image", "import", &from_layout, "--name", "layout"],
    );
    capsule_ok(
        &home,
        &[
            "image",
            "import",
            docker.to_str().unwrap(),
            "--name",
            "docker",
        ],
    );
    capsule_ok(
        &home,
        &[
            "image",
            "import",
            oci_archive.to_str().unwrap(),
            "--name",
            "ociarchive",
        ],
    );
    // `docker save IMAGE | gzip`: a compressed archive is recognised once unpacked.
    let gzipped = work.join("app-docker.tar.gz");
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "gzip -c {} > {}",
        docker.display(),
        gzipped.display()
    )));
    success(&out, "gzip");
    capsule_ok(
        &home,
        &[
            "image",
            "import",
            gzipped.to_str().unwrap(),
            "--name",
            "gzipped",
        ],
    );
    for image in ["layout", "docker", "ociarchive", "gzipped"] {
        assert_app_image(&home, image);
    }
    // The same two layers, whatever the format carried them in: stored once.
    assert_eq!(
        store_entries(&home, "layers").len(),
        2,
        "{:?}",
        store_entries(&home, "layers")
    );

    // ExposedPorts are published on a free host port, in the capsule's config.
    capsule_ok(
        &home,
        &["run", "--name", "ported", "--image", "layout", "--", "true"],
    );
    let config = fs::read_to_string(home.path().join("capsules/ported/config")).unwrap();
    assert!(
        config.lines().any(|l| l == "CAPSULE_PORTS=8000/tcp"),
        "{config}"
    );
    // A program given replaces Cmd, after the Entrypoint; -e wins over the image's Env.
    let out = capsule_ok(
        &home,
        &[
            "run",
            "--rm",
            "--image",
            "layout",
            "-e",
            "GREETING=bye",
            "-w",
            "/",
            "--",
            "echo $GREETING in $(pwd)",
        ],
    );
    assert_eq!(out, "bye in /\n");
}

#[test]
fn plain_root_file_systems_import_as_directories_and_tarballs() {
    let work = TempDir::new("image-rootfs");
    let root = work.join("rootfs");
    compose_root(&root);
    set_xattr(&root.join("data/owned"), "user.origin", b"image");
    let r = root.to_str().unwrap();
    let home = CapsuleHome::new();
    let tar = work.join("r.tar");
    let gz = work.join("r.tar.gz");
    let zst = work.join("r.tar.zst");
    let xattrs = "--xattrs";
    tool("tar", &[xattrs, "-C", r, "-cf", tar.to_str().unwrap(), "."]);
    tool("tar", &[xattrs, "-C", r, "-czf", gz.to_str().unwrap(), "."]);
    tool(
        "tar",
        &[xattrs, "-C", r, "--zstd", "-cf", zst.to_str().unwrap(), "."],
    );
    for (path, name) in [
        (root.clone(), "dir"),
        (tar, "tar"),
        (gz, "gz"),
        (zst, "zst"),
    ] {
        capsule_ok(
            &home,
            &["image", "import", path.to_str().unwrap(), "--name", name],
        );
        let data = listing(&home, name, "/data", false);
        assert_eq!(
            data["owned"],
            ("-rw-r-----".into(), OWNER.0, OWNER.1),
            "{name}"
        );
        assert_eq!(data["tool"].0, "-rwsr-xr-x", "{name}");
        let out = capsule_ok(
            &home,
            &[
                "run",
                "--rm",
                "--image",
                name,
                "--",
                "/bin/sh",
                "-c",
                "cat /data/link /data/dir/inner; readlink /data/link",
            ],
        );
        assert_eq!(out, "hello\ninner\nowned\n", "{name}");
    }
    // Extended attributes (PAX SCHILY.xattr headers) reach the store and every root.
    for root in store_entries(&home, "roots") {
        let owned = home
            .path()
            .join("images/roots")
            .join(root)
            .join("data/owned");
        assert_eq!(
            get_xattr(&owned, "user.origin").as_deref(),
            Some(&b"image"[..])
        );
    }
    // ... and an export writes them back (read with Python's tarfile).
    let exported = work.join("exported");
    capsule_ok(
        &home,
        &["image", "export", "dir", exported.to_str().unwrap()],
    );
    let script = "import glob, sys, tarfile\n\
        for blob in glob.glob(sys.argv[1] + '/blobs/sha256/*'):\n\
        \x20   if tarfile.is_tarfile(blob):\n\
        \x20       with tarfile.open(blob) as t:\n\
        \x20           i = t.getmember('data/owned')\n\
        \x20           i = t.getmember(i.linkname) if i.islnk() else i\n\
        \x20           print(i.uid, i.gid, oct(i.mode), i.pax_headers.get('SCHILY.xattr.user.origin'))\n";
    let out = run(Command::new("python3").args(["-c", script, exported.to_str().unwrap()]));
    assert_eq!(success(&out, "python3 tarfile"), "1234 5678 0o640 image\n");
    // No program and no Cmd: refused before anything runs.
    let out = home.run(&["run", "--rm", "--image", "dir"]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no Entrypoint or Cmd"),
        "{}",
        describe(&out)
    );
}

#[test]
fn images_sharing_a_base_layer_store_it_once() {
    let work = TempDir::new("image-shared");
    let layout = umoci_layout(work.path());
    let home = CapsuleHome::new();
    capsule_ok(
        &home,
        &[
            "image",
            "import",
            &format!("{}:base", layout.display()),
            "--name",
            "base",
        ],
    );
    let after_base = store_entries(&home, "layers");
    assert_eq!(after_base.len(), 1);
    let base_layer = home.path().join("images/layers").join(&after_base[0]);
    let base_bytes = disk_usage(&base_layer);
    let out = capsule_ok(
        &home,
        &[
            "image",
            "import",
            &format!("{}:app", layout.display()),
            "--name",
            "app",
        ],
    );
    assert!(out.contains("(2 layers, 1 new)"), "{out}");
    let layers = store_entries(&home, "layers");
    assert_eq!(layers.len(), 2);
    let app_layer = layers.iter().find(|l| **l != after_base[0]).unwrap();
    let app_bytes = disk_usage(&home.path().join("images/layers").join(app_layer));
    // The whole store: both layers once, plus the two roots' directories (their files
    // are hard links to the layers), the blobs kept for push (each once) and metadata.
    let store = disk_usage(&home.path().join("images"));
    let blobs = disk_usage(&home.path().join("images/blobs"));
    assert!(
        store < base_bytes + app_bytes + blobs + 512 * 1024,
        "store {store} bytes, layers {base_bytes} + {app_bytes}, blobs {blobs}"
    );
    assert!(
        base_bytes > 1024 * 1024,
        "the base layer holds the programs: {base_bytes}"
    );
    // Both roots reach the same inode for a base file.
    let roots = store_entries(&home, "roots");
    assert_eq!(roots.len(), 2);
    let ino = |root: &str| {
        fs::metadata(home.path().join("images/roots").join(root).join("bin/ls"))
            .unwrap()
            .ino()
    };
    assert_eq!(ino(&roots[0]), ino(&roots[1]));

    // ls: reference, id, size, layers, created.
    let ls = capsule_ok(&home, &["image", "ls"]);
    let rows: Vec<Vec<&str>> = ls
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{ls}");
    assert_eq!(rows[0][0], "app:latest");
    assert_eq!(rows[0][3], "2");
    assert_eq!(rows[1][0], "base:latest");
    assert_eq!(rows[1][3], "1");

    // rm: the app's own layer goes, the base layer stays for base.
    capsule_ok(&home, &["image", "rm", "app"]);
    assert_eq!(store_entries(&home, "layers"), after_base);
    // A capsule of base keeps base's root (its lower layer) after the image goes.
    capsule_ok(
        &home,
        &[
            "run", "--name", "user", "--image", "base", "--", "/bin/sh", "-c", "exit 0",
        ],
    );
    capsule_ok(&home, &["image", "rm", "base"]);
    assert_eq!(store_entries(&home, "roots").len(), 1);
    assert_eq!(store_entries(&home, "layers"), after_base);
    let out = home.run(&["image", "rm", "base"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        stderr(&out),
        "capsule: image rm base: base: no such image\n"
    );
}

#[test]
fn capsules_of_one_image_see_only_their_own_changes() {
    let work = TempDir::new("image-two");
    let layout = umoci_layout(work.path());
    let home = CapsuleHome::new();
    capsule_ok(
        &home,
        &[
            "image",
            "import",
            &format!("{}:app", layout.display()),
            "--name",
            "app",
        ],
    );
    let store = home.path().join("images");
    let layers_before = snapshot(&store.join("layers"));
    let roots_before = snapshot(&store.join("roots"));
    let sync = TempDir::new("image-sync");
    // Each writes the same paths, then waits until the other has written too.
    let script = |me: &str, other: &str| {
        format!(
            "echo {me} > /data/new; echo {me} > /data/owned; echo {me} > /data/made; rm /data/link; \
             touch /sync/{me}; n=0; while ! test -e /sync/{other}; do \
             n=$((n + 1)); test $n -lt 2400 || exit 9; sleep 0.05; done; \
             cat /data/new /data/owned /data/hard /data/made; test -e /data/link || echo no-link"
        )
    };
    let volume = format!("{}:/sync", sync.path().display());
    let start = |me: &str, other: &str| {
        spawn(&mut home.command(&[
            "run",
            "--name",
            me,
            "--image",
            "app",
            "-v",
            &volume,
            "--",
            &script(me, other),
        ]))
    };
    let a = start("one", "two");
    let b = start("two", "one");
    let (a, b) = (a.wait(), b.wait());
    // /data/hard is a hard link of /data/owned: writing one name copies the file up,
    // and the other name keeps the image's content (copy-up breaks the link).
    assert_eq!(
        success(&a, "capsule one"),
        "one\none\nhello\none\nno-link\n"
    );
    assert_eq!(
        success(&b, "capsule two"),
        "two\ntwo\nhello\ntwo\nno-link\n"
    );
    assert_same(
        &snapshot(&store.join("layers")),
        &layers_before,
        "store layers",
    );
    assert_same(
        &snapshot(&store.join("roots")),
        &roots_before,
        "store roots",
    );
    // A third capsule starts from the image as it was.
    let out = capsule_ok(
        &home,
        &[
            "run",
            "--rm",
            "--image",
            "app",
            "--",
            "cat /data/new /data/owned",
        ],
    );
    assert_eq!(out, "app\nhello\n");
}

#[test]
fn diff_commit_and_export_round_trip() {
    let work = TempDir::new("image-commit");
    let layout = umoci_layout(work.path());
    let home = CapsuleHome::new();
    capsule_ok(
        &home,
        &[
            "image",
            "import",
            &format!("{}:app", layout.display()),
            "--name",
            "app",
        ],
    );
    capsule_ok(
        &home,
        &[
            "run", "--name", "work", "--image", "app", "--",
            "echo changed > /data/new; echo added > /data/added; rm /data/link; mkdir /data/made; touch /data/made/x",
        ],
    );
    let diff = capsule_ok(&home, &["diff", "work"]);
    assert_eq!(
        diff,
        "C /data\nA /data/added\nD /data/link\nA /data/made\nA /data/made/x\nC /data/new\n"
    );
    let out = capsule_ok(&home, &["commit", "work", "app:committed"]);
    assert!(out.starts_with("app:committed sha256:"), "{out}");
    let check = "cat /data/new /data/added /data/owned; test -e /data/link || echo no-link; ls /data/made; echo \"$GREETING\"";
    let expected = "changed\nadded\nhello\nno-link\nx\nhi\n";
    let out = capsule_ok(
        &home,
        &["run", "--rm", "--image", "app:committed", "--", check],
    );
    assert_eq!(out, expected);
    let data = listing(&home, "app:committed", "/data", true);
    assert_eq!(data["owned"], ("-rw-r-----".into(), OWNER.0, OWNER.1));
    // A running capsule cannot be committed; nor can one not made from an image.
    let out = home.run(&["commit", "nosuch", "x"]);
    assert_eq!(
        stderr(&out),
        "capsule: commit nosuch: capsule nosuch: no such capsule\n"
    );

    // Export: umoci and skopeo read the layout back, and it imports and runs again.
    let exported = work.join("exported");
    capsule_ok(
        &home,
        &[
            "image",
            "export",
            "app:committed",
            exported.to_str().unwrap(),
        ],
    );
    let listed = tool("umoci", &["ls", "--layout", exported.to_str().unwrap()]);
    assert_eq!(listed, "committed\n");
    let inspect = tool(
        "skopeo",
        &["inspect", &format!("oci:{}:committed", exported.display())],
    );
    let layers = inspect
        .split("\"Layers\"")
        .nth(1)
        .and_then(|rest| rest.split(']').next());
    let layers = layers.unwrap_or_else(|| panic!("no Layers in {inspect}"));
    assert_eq!(layers.matches("sha256:").count(), 3, "{inspect}");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:committed", exported.display()),
            work.join("check").to_str().unwrap(),
        ],
    );
    assert_eq!(
        fs::read_to_string(work.join("check/rootfs/data/added")).unwrap(),
        "added\n"
    );
    assert!(!work.join("check/rootfs/data/link").exists());
    let owned = fs::metadata(work.join("check/rootfs/data/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), OWNER);
    let again = CapsuleHome::new();
    capsule_ok(
        &again,
        &[
            "image",
            "import",
            exported.to_str().unwrap(),
            "--name",
            "again",
        ],
    );
    let out = capsule_ok(&again, &["run", "--rm", "--image", "again", "--", check]);
    assert_eq!(out, expected);
    let out = home.run(&[
        "image",
        "export",
        "app:committed",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("already exists"),
        "{}",
        describe(&out)
    );
}

/// A tar archive written by Python's tarfile with one crafted entry.
fn crafted_tar(path: &std::path::Path, kind: &str, name: &str, target: &str) {
    let script = "import io, sys, tarfile\n\
        kind, name, target = sys.argv[2], sys.argv[3], sys.argv[4]\n\
        with tarfile.open(sys.argv[1], 'w') as t:\n\
        \x20   d = tarfile.TarInfo('ok'); d.size = 3; t.addfile(d, io.BytesIO(b'ok\\n'))\n\
        \x20   i = tarfile.TarInfo(name)\n\
        \x20   if kind == 'file':\n\
        \x20       i.size = 4; t.addfile(i, io.BytesIO(b'bad\\n'))\n\
        \x20   else:\n\
        \x20       i.type = tarfile.SYMTYPE if kind == 'symlink' else tarfile.LNKTYPE\n\
        \x20       i.linkname = target; t.addfile(i)\n";
    let out = run(Command::new("python3").args([
        "-c",
        script,
        path.to_str().unwrap(),
        kind,
        name,
        target,
    ]));
    success(&out, "python3 tarfile");
}

/// Rewrites the manifest of `layout`'s only image with `edit`, storing it as a new
/// blob named by its sha256 (sha256sum) and pointing index.json at it.
fn edit_manifest(layout: &std::path::Path, edit: impl Fn(&str) -> String) {
    let index = fs::read_to_string(layout.join("index.json")).unwrap();
    let at = index.find("sha256:").unwrap() + 7;
    let old = &index[at..at + 64];
    let manifest = fs::read_to_string(layout.join("blobs/sha256").join(old)).unwrap();
    let edited = edit(&manifest);
    assert_ne!(edited, manifest);
    let temp = layout.join("manifest.new");
    fs::write(&temp, &edited).unwrap();
    let sum = tool("sha256sum", &[temp.to_str().unwrap()]);
    let new = &sum[..64];
    fs::rename(&temp, layout.join("blobs/sha256").join(new)).unwrap();
    let old_size = format!("\"size\":{}", manifest.len());
    assert!(index.contains(&old_size), "{index}");
    let index = index
        .replace(old, new)
        .replace(&old_size, &format!("\"size\":{}", edited.len()));
    fs::write(layout.join("index.json"), index).unwrap();
}

#[test]
fn corrupt_and_unsafe_images_are_refused_and_leave_the_store_as_it_was() {
    let work = TempDir::new("image-corrupt");
    let layout = umoci_layout(work.path());
    let home = CapsuleHome::new();
    capsule_ok(
        &home,
        &[
            "image",
            "import",
            &format!("{}:base", layout.display()),
            "--name",
            "base",
        ],
    );
    let store = home.path().join("images");
    // Failed imports use (and empty) tmp/ for their work: its time may change.
    let store_now = || {
        let mut s = snapshot(&store);
        s.remove("tmp");
        s
    };
    let before = store_now();
    // A layout with only the app image, for each corruption.
    let copy = |name: &str| {
        let to = work.join(name);
        skopeo_copy(&layout, "app", &format!("oci:{}:app", to.display()));
        to
    };
    let app_layer = |dir: &std::path::Path| {
        let manifest_index = fs::read_to_string(dir.join("index.json")).unwrap();
        let at = manifest_index.find("sha256:").unwrap() + 7;
        let manifest =
            fs::read_to_string(dir.join("blobs/sha256").join(&manifest_index[at..at + 64]))
                .unwrap();
        let last = manifest.rfind("sha256:").unwrap() + 7;
        dir.join("blobs/sha256").join(&manifest[last..last + 64])
    };
    let mut cases: Vec<(String, std::path::PathBuf, &str)> = Vec::new();

    let wrong = copy("wrong-digest");
    let blob = app_layer(&wrong);
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    cases.push(("wrong digest".into(), wrong, "corrupt or altered blob"));

    let missing = copy("missing-blob");
    fs::remove_file(app_layer(&missing)).unwrap();
    cases.push(("missing blob".into(), missing, "missing blob"));

    let unknown = copy("unknown-type");
    edit_manifest(&unknown, |m| {
        m.replacen(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.example.layer",
            1,
        )
    });
    cases.push((
        "unknown media type".into(),
        unknown,
        "unknown media type application/vnd.example.layer",
    ));

    let platform = copy("other-platform");
    let index = fs::read_to_string(platform.join("index.json")).unwrap();
    let index = index.replacen(
        "\"annotations\"",
        "\"platform\":{\"architecture\":\"riscv64\",\"os\":\"linux\"},\"annotations\"",
        1,
    );
    fs::write(platform.join("index.json"), index).unwrap();
    cases.push((
        "other platform".into(),
        platform.clone(),
        "no image for linux/",
    ));

    let rootfs = work.join("rootfs");
    compose_root(&rootfs);
    let whole = work.join("whole.tar");
    tool(
        "tar",
        &[
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            whole.to_str().unwrap(),
            ".",
        ],
    );
    let truncated = work.join("truncated.tar");
    let bytes = fs::read(&whole).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2 + 100]).unwrap();
    cases.push(("truncated tar".into(), truncated, "truncated archive"));

    for (label, kind, name, target, message) in [
        ("dotdot", "file", "../escape", "", "'..' in the path"),
        ("absolute", "file", "/etc/evil", "", "absolute path"),
        (
            "symlink",
            "symlink",
            "a/link",
            "../../etc/shadow",
            "leads outside the layer",
        ),
        (
            "hardlink",
            "hardlink",
            "hard",
            "../outside",
            "'..' in the path",
        ),
    ] {
        let path = work.join(&format!("{label}.tar"));
        crafted_tar(&path, kind, name, target);
        cases.push((label.into(), path, message));
    }

    for (label, path, message) in &cases {
        let out = home.run(&["image", "import", path.to_str().unwrap(), "--name", "bad"]);
        assert_eq!(out.status.code(), Some(125), "{label}: {}", describe(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{label}: one line: {err}");
        assert!(err.contains(message), "{label}: {err}");
        assert!(out.stdout.is_empty(), "{label}");
        assert_same(&store_now(), &before, label);
    }
    // What an import killed midway leaves (its private directory, a layer renamed into
    // place but named by no image) is invisible, and the next change collects it.
    let dead = {
        let mut child = Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    let leftovers = [
        store.join(format!("tmp/{dead}-0/layer-0/data")),
        store.join(format!("layers/{}/data", "ab".repeat(32))),
        store.join(format!("roots/{}/data", "cd".repeat(32))),
    ];
    for dir in &leftovers {
        fs::create_dir_all(dir).unwrap();
    }
    let ls = capsule_ok(&home, &["image", "ls"]);
    assert_eq!(ls.lines().count(), 2, "{ls}");
    // --platform picks the other platform's image.
    capsule_ok(
        &home,
        &[
            "image",
            "import",
            platform.to_str().unwrap(),
            "--platform",
            "linux/riscv64",
            "--name",
            "rv",
        ],
    );
    for dir in &leftovers {
        assert!(!dir.exists(), "{} was not collected", dir.display());
    }
    let ls = capsule_ok(&home, &["image", "ls"]);
    assert_eq!(ls.lines().count(), 3, "{ls}");
}

#[test]
fn an_ordinary_user_keeps_image_owners_and_devices_in_extended_attributes() {
    let work = TempDir::new("image-nobody");
    let root = work.join("rootfs");
    compose_root(&root);
    let devices = can_switch_user();
    if devices {
        tool(
            "mknod",
            &[
                "-m",
                "666",
                root.join("data/null").to_str().unwrap(),
                "c",
                "1",
                "3",
            ],
        );
    }
    let tarball = work.join("r.tar.gz");
    tool(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "-czf",
            tarball.to_str().unwrap(),
            ".",
        ],
    );
    let home = CapsuleHome::new();
    let mut nobody = AsNobody::new();
    let mut capsule = |args: &[&str]| {
        let out = run(&mut nobody.capsule_command(&home, args));
        success(
            &out,
            &format!("capsule {} (as an ordinary user)", args.join(" ")),
        )
    };
    capsule(&["image", "import", tarball.to_str().unwrap(), "--name", "r"]);
    // The store's files belong to the ordinary user; the image's owners are recorded.
    let layers = store_entries(&home, "layers");
    let stored = home
        .path()
        .join("images/layers")
        .join(&layers[0])
        .join("data/owned");
    assert_ne!(fs::metadata(&stored).unwrap().uid(), OWNER.0);
    let names = if devices {
        "/data/owned /data/tool /data/null"
    } else {
        "/data/owned /data/tool"
    };
    let out = capsule(&[
        "run",
        "--rm",
        "--image",
        "r",
        "--",
        "/bin/sh",
        "-c",
        &format!("stat -c '%n %A %u %g %t %T' {names}"),
    ]);
    let mut expected =
        String::from("/data/owned -rw-r----- 1234 5678 0 0\n/data/tool -rwsr-xr-x 0 0 0 0\n");
    if devices {
        expected.push_str("/data/null crw-rw-rw- 0 0 1 3\n");
    }
    assert_eq!(out, expected);
}

#[test]
fn bad_input_is_refused_naming_the_entry_and_leaves_no_store() {
    let work = TempDir::new("image-bad-input");
    let refuse = |home: &CapsuleHome, args: &[&str], message: &str, label: &str| {
        let out = home.run(args);
        assert_eq!(out.status.code(), Some(125), "{label}: {}", describe(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{label}: one line: {err}");
        assert!(err.contains(message), "{label}: {message:?} not in {err}");
        assert!(
            !err.contains("images/tmp"),
            "{label}: names a staging path: {err}"
        );
    };
    // Into a fresh home: a refusal leaves no store skeleton behind.
    let fresh = CapsuleHome::new();
    let missing = work.join("no-such-image.tar");
    let empty = work.join("empty.tar");
    fs::write(&empty, "").unwrap();
    let mut cases: Vec<(std::path::PathBuf, &str, &str)> = vec![
        (missing, "no-such-image.tar", "nonexistent path"),
        (empty, "an empty file is not an image", "0-byte file"),
    ];
    for (label, name, message) in [
        (
            "self-whiteout",
            "etc/.wh.",
            "entry \"etc/.wh.\": malformed whiteout",
        ),
        (
            "top-dotdot",
            ".wh...",
            "entry \".wh...\": malformed whiteout",
        ),
        (
            "dot",
            "etc/.wh..",
            "entry \"etc/.wh..\": malformed whiteout",
        ),
        (
            "reserved",
            "etc/.wh..wh.x",
            "entry \"etc/.wh..wh.x\": malformed whiteout",
        ),
    ] {
        let path = work.join(&format!("{label}.tar"));
        crafted_tar(&path, "file", name, "");
        cases.push((path, message, label));
    }
    let dir_marker = work.join("dir-marker.tar");
    crafted_tar(&dir_marker, "symlink", "etc/.wh.passwd", "x");
    cases.push((
        dir_marker,
        "a whiteout must be a regular file",
        "symlink whiteout",
    ));
    for (path, message, label) in &cases {
        refuse(
            &fresh,
            &["image", "import", path.to_str().unwrap(), "--name", "bad"],
            message,
            label,
        );
        assert!(
            !fresh.path().join("images").exists(),
            "{label}: store created"
        );
    }

    // Into a store holding an image: the store stays as it was.
    let layout = umoci_layout(work.path());
    let home = CapsuleHome::new();
    let app = format!("{}:app", layout.display());
    capsule_ok(&home, &["image", "import", &app, "--name", "app"]);
    let store = home.path().join("images");
    let store_now = || {
        let mut s = snapshot(&store);
        s.remove("tmp");
        s
    };
    let before = store_now();
    // No platform in the index: the configuration's is checked.
    refuse(
        &home,
        &[
            "image",
            "import",
            &app,
            "--platform",
            "linux/s390x",
            "--name",
            "x",
        ],
        "--platform linux/s390x: the image is for linux/amd64 only",
        "platform",
    );
    assert_same(&store_now(), &before, "platform");
    let negative = work.join("negative");
    skopeo_copy(&layout, "app", &format!("oci:{}:app", negative.display()));
    edit_manifest(&negative, |m| {
        let at = m.rfind("\"size\":").unwrap() + 7;
        let end = at + m[at..].find(|c: char| !c.is_ascii_digit()).unwrap();
        format!("{}-1{}", &m[..at], &m[end..])
    });
    refuse(
        &home,
        &[
            "image",
            "import",
            negative.to_str().unwrap(),
            "--name",
            "neg",
        ],
        "size -1 is negative",
        "size -1",
    );
    assert_same(&store_now(), &before, "size -1");
    for (path, message, label) in &cases {
        refuse(
            &home,
            &["image", "import", path.to_str().unwrap(), "--name", "bad"],
            message,
            label,
        );
        assert_same(&store_now(), &before, label);
    }
    // A well-formed whiteout at the top still applies.
    let ok = work.join("ok-whiteout.tar");
    crafted_tar(&ok, "file", ".wh.gone", "");
    capsule_ok(
        &home,
        &["image", "import", ok.to_str().unwrap(), "--name", "ok"],
    );
}

/// References as Docker normalises them: an archive tagged
/// `docker.io/library/hello:1` is `hello:1`, `library/hello:1` and the full name;
/// `image tag` adds a name (moving it off another image), `rm` of one name keeps
/// the others; a bad or unknown name is one line and changes nothing.
#[test]
fn image_references_are_normalised_and_tagged_as_docker_does() {
    let work = TempDir::new("image-refs");
    let layout = umoci_layout(work.path());
    let docker = work.join("hello-docker.tar");
    skopeo_copy(
        &layout,
        "app",
        &format!(
            "docker-archive:{}:docker.io/library/hello:1",
            docker.display()
        ),
    );
    let home = CapsuleHome::new();
    capsule_ok(&home, &["image", "import", docker.to_str().unwrap()]);
    let refs = |home: &CapsuleHome| -> Vec<String> {
        capsule_ok(home, &["image", "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    assert_eq!(refs(&home), ["hello:1"], "listed in the familiar form");
    for name in ["hello:1", "library/hello:1", "docker.io/library/hello:1"] {
        assert_app_image(&home, name);
    }
    capsule_ok(&home, &["image", "tag", "library/hello:1", "mine/app"]);
    capsule_ok(&home, &["image", "tag", "hello:1", "localhost:5000/app:2"]);
    assert_eq!(
        refs(&home),
        ["hello:1", "localhost:5000/app:2", "mine/app:latest"]
    );
    assert_app_image(&home, "docker.io/mine/app:latest");
    let index = fs::read(home.path().join("images/index.json")).unwrap();
    for (args, message) in [
        (&["image", "tag", "nothere:1", "x"][..], "nothere:1"),
        (
            &["image", "tag", "hello:1", "Bad Name"][..],
            "not an image reference",
        ),
    ] {
        let out = home.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(message) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        fs::read(home.path().join("images/index.json")).unwrap(),
        index,
        "a refused tag changed the store"
    );
    let removed = capsule_ok(&home, &["image", "rm", "docker.io/library/hello:1"]);
    assert_eq!(removed.trim(), "Untagged: hello:1");
    assert_eq!(refs(&home), ["localhost:5000/app:2", "mine/app:latest"]);
    assert_app_image(&home, "mine/app");
}
