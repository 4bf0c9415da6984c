//! Shared by the `image*` integration tests (included with `#[path]`): test images
//! built with independent tools (umoci, skopeo, GNU tar, Python's tarfile), never with
//! capsule's own code, and exact snapshots of the image store.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Host programs copied (with their libraries) into every test image.
pub const PROGRAMS: &[&str] = &[
    "sh", "ls", "cat", "stat", "test", "mkdir", "rm", "touch", "readlink", "sleep", "env",
];

/// The owner the tar headers give `/data/owned`.
pub const OWNER: (u32, u32) = (1234, 5678);

/// Runs a tool that must succeed; returns its stdout.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = run(Command::new(program).args(args));
    success(&out, &format!("{program} {}", args.join(" ")))
}

fn libraries_of(program: &Path) -> Vec<PathBuf> {
    let text = tool("ldd", &[program.to_str().expect("utf-8 path")]);
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim().split(' ').next()?,
                None => line.split(' ').next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn which(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} is not installed on this host")
}

/// Copies host file `path` to the same place under `root`, as a plain file (the
/// image's layout of /bin, /lib is its own: real directories).
fn install(root: &Path, path: &Path) {
    let inside = root.join(path.strip_prefix("/").expect("absolute"));
    if inside.exists() {
        return;
    }
    fs::create_dir_all(inside.parent().expect("parent")).expect("mkdir for install");
    fs::copy(path, &inside).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
}

/// A root file system: the programs, their libraries (also at the paths the dynamic
/// loader names), `/bin/sh`, and `/data` with known owners, modes and links.
pub fn compose_root(root: &Path) {
    for name in PROGRAMS {
        let program = which(name);
        install(root, &program);
        install(root, &Path::new("/bin").join(name));
        for lib in libraries_of(&program) {
            install(root, &lib);
            if let Ok(real) = fs::canonicalize(&lib) {
                install(root, &real);
            }
        }
    }
    let data = root.join("data");
    fs::create_dir_all(data.join("dir")).unwrap();
    fs::write(data.join("owned"), "hello\n").unwrap();
    std::os::unix::fs::chown(data.join("owned"), Some(OWNER.0), Some(OWNER.1)).unwrap();
    fs::set_permissions(data.join("owned"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::hard_link(data.join("owned"), data.join("hard")).unwrap();
    symlink("owned", data.join("link")).unwrap();
    fs::write(data.join("tool"), "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(data.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(data.join("gone"), "gone\n").unwrap();
    fs::write(data.join("dir/inner"), "inner\n").unwrap();
    fs::write(data.join("new"), "base\n").unwrap();
}

/// A two-layer OCI layout made with umoci: `L:base` has the composed root; `L:app`
/// adds a layer that deletes `/data/gone` and `/data/dir/inner` (whiteouts), rewrites
/// `/data/new` and adds `/data/dir/fresh`, with a configuration:
/// Entrypoint `/bin/sh -c`, Cmd `echo "$GREETING" in $(pwd)`, Env GREETING=hi,
/// WorkingDir /data, ExposedPorts 8000/tcp.
pub fn umoci_layout(work: &Path) -> PathBuf {
    let layout = work.join("oci");
    let bundle = work.join("bundle");
    let l = layout.to_str().unwrap();
    let b = bundle.to_str().unwrap();
    tool("umoci", &["init", "--layout", l]);
    tool("umoci", &["new", "--image", &format!("{l}:base")]);
    tool("umoci", &["unpack", "--image", &format!("{l}:base"), b]);
    compose_root(&bundle.join("rootfs"));
    tool(
        "umoci",
        &[
            "repack",
            "--refresh-bundle",
            "--image",
            &format!("{l}:base"),
            b,
        ],
    );
    let data = bundle.join("rootfs/data");
    fs::remove_file(data.join("gone")).unwrap();
    fs::remove_file(data.join("dir/inner")).unwrap();
    fs::write(data.join("dir/fresh"), "fresh\n").unwrap();
    fs::write(data.join("new"), "app\n").unwrap();
    tool("umoci", &["repack", "--image", &format!("{l}:app"), b]);
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{l}:app"),
            "--config.entrypoint=/bin/sh",
            "--config.entrypoint=-c",
            "--config.cmd=echo \"$GREETING\" in $(pwd)",
            "--config.env=GREETING=hi",
            "--config.workingdir=/data",
            "--config.exposedports=8000/tcp",
        ],
    );
    fs::remove_dir_all(&bundle).unwrap();
    layout
}

/// `skopeo copy oci:LAYOUT:TAG DEST`.
pub fn skopeo_copy(layout: &Path, tag: &str, dest: &str) {
    tool(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "-q",
            &format!("oci:{}:{tag}", layout.display()),
            dest,
        ],
    );
}

/// One entry of a tree, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub ino: u64,
    pub mtime: (i64, i64),
    pub content: Vec<u8>,
}

/// Every entry of a tree (paths relative to its top): mode, owner, inode, time and
/// content (a link's target).
pub fn snapshot(top: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    walk(top, top, &mut out);
    out
}

fn walk(top: &Path, path: &Path, out: &mut BTreeMap<String, Entry>) {
    let meta = fs::symlink_metadata(path).unwrap();
    let content = if meta.file_type().is_symlink() {
        fs::read_link(path)
            .unwrap()
            .into_os_string()
            .into_encoded_bytes()
    } else if meta.is_file() {
        fs::read(path).unwrap()
    } else {
        Vec::new()
    };
    let rel = path.strip_prefix(top).unwrap().display().to_string();
    out.insert(
        rel,
        Entry {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            content,
        },
    );
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            walk(top, &entry.unwrap().path(), out);
        }
    }
}

/// Asserts two snapshots are the same, naming the first difference.
#[track_caller]
pub fn assert_same(after: &BTreeMap<String, Entry>, before: &BTreeMap<String, Entry>, what: &str) {
    for (path, entry) in before {
        match after.get(path) {
            None => panic!("{what}: {path} disappeared"),
            Some(now) if now != entry => {
                panic!("{what}: {path} changed: {entry:?} -> {now:?}")
            }
            _ => {}
        }
    }
    for path in after.keys() {
        assert!(before.contains_key(path), "{what}: {path} appeared");
    }
}

/// Bytes on disk under `top`, each inode counted once (as `du`).
pub fn disk_usage(top: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![top.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        if seen.insert(meta.ino()) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    total
}

/// The names of a store directory (`layers`, `roots`).
pub fn store_entries(home: &CapsuleHome, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(home.path().join("images").join(sub))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `capsule ARGS` that must succeed; its stdout.
pub fn capsule_ok(home: &CapsuleHome, args: &[&str]) -> String {
    let out = home.run(args);
    success(&out, &format!("capsule {}", args.join(" ")))
}

/// `ls -ln DIR` inside a capsule of `image`: name → (permissions, uid, gid).
/// `entrypoint`: the image's Entrypoint is `sh -c` (else the program is named).
pub fn listing(
    home: &CapsuleHome,
    image: &str,
    dir: &str,
    entrypoint: bool,
) -> BTreeMap<String, (String, u32, u32)> {
    let script = format!("ls -ln {dir}");
    let mut args = vec!["run", "--rm", "--image", image, "--"];
    if !entrypoint {
        args.extend(["/bin/sh", "-c"]);
    }
    args.push(&script);
    let text = capsule_ok(home, &args);
    text.lines()
        .filter(|l| !l.starts_with("total"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 9, "unexpected ls line {line:?}");
            (
                fields[8].to_string(),
                (
                    fields[0].to_string(),
                    fields[2].parse().unwrap(),
                    fields[3].parse().unwrap(),
                ),
            )
        })
        .collect()
}

/// What every image built by `umoci_layout` as `app` must show, seen from inside.
pub fn assert_app_image(home: &CapsuleHome, image: &str) {
    let data = listing(home, image, "/data", true);
    let names: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["dir", "hard", "link", "new", "owned", "tool"],
        "{image}: /data (whiteouts applied)"
    );
    assert_eq!(
        data["owned"],
        ("-rw-r-----".into(), OWNER.0, OWNER.1),
        "{image}: owned"
    );
    assert_eq!(
        data["hard"],
        ("-rw-r-----".into(), OWNER.0, OWNER.1),
        "{image}: hard"
    );
    assert_eq!(
        data["tool"],
        ("-rwsr-xr-x".into(), 0, 0),
        "{image}: setuid tool"
    );
    assert_eq!(data["link"].0, "lrwxrwxrwx", "{image}: link");
    let script =
        "readlink /data/link; stat -c %i /data/owned /data/hard; cat /data/new /data/link; \
                  ls /data/dir; test -e /data/gone || echo gone-is-gone";
    let out = capsule_ok(home, &["run", "--rm", "--image", image, "--", script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{image}: {out}");
    assert_eq!(lines[0], "owned", "{image}: symlink target");
    assert_eq!(lines[1], lines[2], "{image}: hard link is one inode");
    assert_eq!(
        &lines[3..],
        ["app", "hello", "fresh", "gone-is-gone"],
        "{image}"
    );
    // Entrypoint + Cmd, Env and WorkingDir from the configuration.
    let out = capsule_ok(home, &["run", "--rm", "--image", image]);
    assert_eq!(
        out, "hi in /data\n",
        "{image}: Entrypoint/Cmd/Env/WorkingDir"
    );
}

/// Sets an extended attribute (not following a symbolic link).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a buffer of value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr {name} on {}", path.display());
}

/// An extended attribute's value, if set.
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer valid for its length.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}
