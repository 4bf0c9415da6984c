//! Shared by the `fs_*` integration tests (included with `#[path]`, not a test target):
//! a test root built from host binaries and their libraries plus a known data tree, a
//! byte-for-byte snapshot of a lower tree to prove it unchanged, capsules run either by
//! plain `LD_PRELOAD` (`CAPSULE_ROOT` + `CAPSULE_UPPER`) or by `capsule run --root`, and
//! unique host paths that must not exist after a capsule wrote to them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

/// Host programs copied into every test root (with their libraries).
pub const ROOT_PROGRAMS: &[&str] = &[
    "sh", "cat", "ls", "mkdir", "rm", "rmdir", "mv", "cp", "touch", "ln", "find", "stat", "chmod",
    "du", "sleep", "readlink", "realpath", "sort", "wc", "head", "tail", "tr", "true", "false",
    "env", "test", "id", "getent", "grep",
];

/// The fs probes of `c-tests/`, installed in every test root as `/probes/NAME`.
pub const PROBES: &[&str] = &[
    "fs_cow",
    "fs_listing",
    "fs_paths",
    "fs_errno",
    "fs_stat",
    "fs_exec_root",
    "fs_rawcalls",
    "fs_fts",
    "fs_more",
];

/// The capsule's `PATH` inside a test root.
pub const ROOT_PATH: &str = "/usr/bin:/bin";

/// The mtime (seconds) every data file of the tree gets, unless said otherwise.
pub const DATA_MTIME: i64 = 1_000_000_000;

/// The bytes of `cow/big.bin`, as `fs_cow.c` expects them.
pub fn big_bin() -> Vec<u8> {
    (0..1024 * 1024u64)
        .map(|i| ((i * 131 + 7) & 255) as u8)
        .collect()
}

fn set_mtime(path: &Path, secs: i64) {
    let time = UNIX_EPOCH + Duration::from_secs(secs as u64);
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.set_modified(time)
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

fn write(dir: &Path, rel: &str, text: &[u8], mode: u32) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod data file");
}

fn mkdir(dir: &Path, rel: &str, mode: u32) {
    let path = dir.join(rel);
    fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod data dir");
}

fn link(dir: &Path, rel: &str, target: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir for symlink");
    }
    symlink(target, &path).unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
}

/// Sets extended attribute `name` of `path` (not following a symlink); false when the
/// file system does not support user xattrs.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let n = std::ffi::CString::new(name).expect("name");
    // SAFETY: NUL-terminated strings and a valid buffer of value.len() bytes.
    unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

/// The extended attributes of `path` (not following a symlink), sorted by name.
pub fn xattrs_of(path: &Path) -> Vec<(String, Vec<u8>)> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).expect("xattr name");
        let mut value = vec![0u8; 65536];
        // SAFETY: valid path, name and buffer.
        let len = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        value.truncate(len.max(0) as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    out.sort();
    out
}

/// Writes the data tree the fs probes expect under `dir` (a test root, or a plain
/// directory the probes run on natively with `--native DIR`). Returns whether the
/// files meant to carry extended attributes got them (`fs_cow --xattr`).
pub fn populate_data(dir: &Path) -> bool {
    // The capsule's own files, distinct from the host's.
    write(dir, "etc/hostname", b"capsule-lower\n", 0o644);
    link(dir, "etc/link", "/var/lib/app/data.txt");
    link(dir, "etc/abs-hostname", "/etc/hostname");
    write(dir, "var/lib/app/data.txt", b"lower data\n", 0o640);
    write(dir, "var/lib/app/other.txt", b"other\n", 0o644);
    write(dir, "secret", b"root secret\n", 0o644);
    write(dir, "etc/app.conf", b"setting=1\n", 0o644);
    mkdir(dir, "tmp", 0o1777);
    // Ways out that must stay in.
    link(dir, "escape/up", "../../../../../../../../etc/hostname");
    link(dir, "escape/abs", "/secret");
    link(dir, "escape/dotdot", "..");
    link(dir, "escape/rootlink", "/");
    link(dir, "loop/a", "b");
    link(dir, "loop/b", "a");
    link(dir, "loop/self", "self");
    // fs_paths
    write(dir, "paths/rel.txt", b"rel\n", 0o644);
    write(dir, "paths/dir/file.txt", b"file\n", 0o644);
    mkdir(dir, "paths/dir/sub", 0o755);
    // fs_cow
    write(dir, "cow/mode.txt", b"mode\n", 0o754);
    write(dir, "cow/times.txt", b"times\n", 0o644);
    write(dir, "cow/append.txt", b"line1\n", 0o644);
    write(dir, "cow/trunc.txt", b"to be truncated\n", 0o644);
    write(dir, "cow/shrink.txt", b"0123456789\n", 0o644);
    write(dir, "cow/ftrunc.txt", b"abcdefghij\n", 0o644);
    write(dir, "cow/readonly.txt", b"read only\n", 0o644);
    write(dir, "cow/rw.txt", b"0123456789\n", 0o644);
    write(dir, "cow/gone.txt", b"gone\n", 0o644);
    write(dir, "cow/gone2.txt", b"gone2\n", 0o644);
    mkdir(dir, "cow/emptydir", 0o755);
    write(dir, "cow/fulldir/a", b"a\n", 0o644);
    write(dir, "cow/fulldir/b", b"b\n", 0o644);
    write(dir, "cow/fulldir/sub/c", b"c\n", 0o644);
    write(dir, "cow/old.txt", b"old\n", 0o644);
    write(dir, "cow/target.txt", b"target\n", 0o644);
    write(dir, "cow/renamesrc.txt", b"renamesrc\n", 0o644);
    write(dir, "cow/linksrc.txt", b"linksrc\n", 0o644);
    write(dir, "cow/utime.txt", b"utime\n", 0o644);
    link(dir, "cow/sym", "mode.txt");
    mkdir(dir, "cow/sub/deep", 0o755);
    write(dir, "cow/big.bin", &big_bin(), 0o644);
    write(dir, "cow/fopen.txt", b"abc\n", 0o644);
    write(dir, "cow/fchmod.txt", b"fchmod\n", 0o644);
    write(dir, "cow/chown.txt", b"chown\n", 0o644);
    link(dir, "cow/chownlink", "chown.txt");
    write(dir, "cow/fchown.txt", b"fchown\n", 0o644);
    write(dir, "cow/nr-src.txt", b"nr-src\n", 0o644);
    write(dir, "cow/nr-dst.txt", b"nr-dst\n", 0o644);
    write(dir, "cow/xattr.txt", b"xattr\n", 0o644);
    write(dir, "cow/xattr2.txt", b"xattr2\n", 0o644);
    write(dir, "cow/futimens.txt", b"futimens\n", 0o644);
    write(dir, "cow/lowerdir/x", b"x\n", 0o644);
    write(dir, "cow/lowerdir/y", b"y\n", 0o644);
    // fs_listing
    for name in ["a", "b", "c"] {
        write(
            dir,
            &format!("list/{name}"),
            format!("{name}\n").as_bytes(),
            0o644,
        );
    }
    write(dir, "list/dir1/inner", b"inner\n", 0o644);
    mkdir(dir, "list/dir2", 0o755);
    link(dir, "list/link", "a");
    for i in 0..50 {
        write(
            dir,
            &format!("many/f{i:02}"),
            format!("f{i:02}\n").as_bytes(),
            0o644,
        );
    }
    write(dir, "list2/keep", b"keep\n", 0o644);
    write(dir, "list2/x", b"x\n", 0o644);
    write(dir, "list2/opq/hidden1", b"h1\n", 0o644);
    write(dir, "list2/opq/hidden2", b"h2\n", 0o644);
    // fs_errno
    write(dir, "errno/file.txt", b"file\n", 0o644);
    write(dir, "errno/dir/inner", b"inner\n", 0o644);
    mkdir(dir, "errno/emptydir", 0o755);
    link(dir, "errno/link", "file.txt");
    // fs_stat
    write(dir, "stat/file.txt", b"stat file\n", 0o640);
    mkdir(dir, "stat/dir", 0o755);
    link(dir, "stat/link", "file.txt");
    write(dir, "stat/gone.txt", b"gone\n", 0o644);

    // Known times: every data file DATA_MTIME, two with their own.
    for top in [
        "etc", "var", "secret", "paths", "cow", "list", "many", "list2", "errno", "stat",
    ] {
        set_mtimes(&dir.join(top));
    }
    set_mtime(&dir.join("stat/file.txt"), 1_111_111_111);
    set_xattr(&dir.join("cow/xattr.txt"), "user.origin", b"lower")
        && set_xattr(&dir.join("cow/xattr2.txt"), "user.origin", b"lower")
}

fn set_mtimes(path: &Path) {
    let meta = fs::symlink_metadata(path).expect("data entry");
    if meta.is_dir() {
        for entry in fs::read_dir(path).expect("read data dir") {
            set_mtimes(&entry.expect("data dir entry").path());
        }
    } else if meta.is_file() {
        set_mtime(path, DATA_MTIME);
    }
}

/// Copies host `path` into `root` at the same place: every symlink met on the way
/// (`/bin -> usr/bin`, `libc.so.6 -> libc-2.36.so`...) is recreated as a symlink and
/// followed, so the root resolves the path as the host does.
pub fn install(root: &Path, path: &Path) {
    install_depth(root, path, 0);
}

fn install_depth(root: &Path, path: &Path, depth: usize) {
    assert!(
        depth < 40,
        "too many symlinks installing {}",
        path.display()
    );
    let mut host = PathBuf::from("/");
    let comps: Vec<Component> = path.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        match comp {
            Component::RootDir => continue,
            Component::Normal(name) => host.push(name),
            Component::ParentDir => {
                host.pop();
                continue;
            }
            Component::CurDir | Component::Prefix(_) => continue,
        }
        let inside = root.join(host.strip_prefix("/").expect("absolute"));
        let meta = fs::symlink_metadata(&host)
            .unwrap_or_else(|e| panic!("cannot install {}: {e}", host.display()));
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&host).expect("read_link");
            if fs::symlink_metadata(&inside).is_err() {
                symlink(&target, &inside)
                    .unwrap_or_else(|e| panic!("symlink {}: {e}", inside.display()));
            }
            let mut resolved = if target.is_absolute() {
                target.clone()
            } else {
                host.parent().expect("parent").join(&target)
            };
            for rest in &comps[i + 1..] {
                resolved.push(rest.as_os_str());
            }
            return install_depth(root, &resolved, depth + 1);
        } else if meta.is_dir() {
            if !inside.exists() {
                fs::create_dir(&inside)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", inside.display()));
                fs::set_permissions(&inside, fs::Permissions::from_mode(0o755)).expect("chmod");
            }
        } else if !inside.exists() {
            fs::copy(&host, &inside)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", host.display(), inside.display()));
        }
    }
}

/// The shared libraries (and the dynamic loader) `ldd` lists for a host program.
pub fn libraries_of(program: &Path) -> Vec<PathBuf> {
    let out = run_native("ldd", &[program.to_str().expect("utf-8 program path")]);
    let text = success(&out, "ldd");
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim().split(' ').next().unwrap_or(""),
            None => line.split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    libs
}

/// Where a program is on the host's PATH.
pub fn which(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} is not installed on this host")
}

/// A test root: a temporary directory that is a capsule's `/` (read-only lower layer):
/// the programs of ROOT_PROGRAMS and their libraries at their host paths, the fs probes
/// in `/probes`, `/etc/passwd` and `/etc/group`, and the data tree of populate_data.
/// Remembers a snapshot of itself taken when built.
pub struct TestRoot {
    dir: TempDir,
    before: Snapshot,
    /// Whether the data tree carries its extended attributes (`fs_cow --xattr`).
    pub xattrs: bool,
}

impl TestRoot {
    pub fn new() -> TestRoot {
        let dir = TempDir::new("root");
        let root = dir.path();
        let mut programs: Vec<PathBuf> = ROOT_PROGRAMS.iter().map(|p| which(p)).collect();
        for probe in PROBES {
            programs.push(compile_c(probe));
        }
        for program in &programs {
            for lib in libraries_of(program) {
                install(root, &lib);
            }
        }
        for program in ROOT_PROGRAMS {
            install(root, &which(program));
        }
        // `sh` is found as /bin/sh by scripts and by `system()`.
        install(root, Path::new("/bin/sh"));
        for file in ["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"] {
            if Path::new(file).exists() {
                install(root, Path::new(file));
            }
        }
        mkdir(root, "probes", 0o755);
        for probe in PROBES {
            let to = root.join("probes").join(probe);
            fs::copy(compile_c(probe), &to).expect("copy probe into the root");
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod probe");
        }
        let xattrs = populate_data(root);
        let before = Snapshot::of(root);
        TestRoot {
            dir,
            before,
            xattrs,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn str(&self) -> &str {
        self.dir.str()
    }

    /// The host path of capsule path `path`.
    pub fn host(&self, path: &str) -> PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }

    /// Asserts the root is byte-for-byte what it was when built.
    #[track_caller]
    pub fn assert_unchanged(&self) {
        if let Some(diffs) = self.changes() {
            panic!("{diffs}");
        }
    }

    /// How the root differs from what it was when built, if it does.
    pub fn changes(&self) -> Option<String> {
        Snapshot::of(self.path()).differences(&self.before, "the lower layer (test root)")
    }

    /// Asserts a probe run in a capsule on this root reported OK, and that the root is
    /// unchanged; a failure reports both.
    #[track_caller]
    pub fn assert_probe_ok(&self, out: &Output, what: &str) {
        let text = stdout(out);
        let probe_ok = out.status.success() && text.lines().last() == Some("OK");
        let changes = self.changes();
        if probe_ok && changes.is_none() {
            return;
        }
        let mut msg = String::new();
        if !probe_ok {
            msg.push_str(&format!(
                "{what}: the probe did not report OK\n{}\n",
                describe(out)
            ));
        }
        if let Some(c) = changes {
            msg.push_str(&format!("{what}: {c}\n"));
        }
        panic!("{msg}");
    }
}

impl Default for TestRoot {
    fn default() -> Self {
        TestRoot::new()
    }
}

/// One entry of a tree: its type, permissions, owner, size, mtime, and its content
/// (files) or target (symlinks).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    content: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Everything in a directory tree (paths relative to its top), to compare exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<String, Entry>,
}

impl Snapshot {
    pub fn of(top: &Path) -> Snapshot {
        let mut entries = BTreeMap::new();
        walk(top, top, &mut entries);
        Snapshot { entries }
    }

    #[track_caller]
    pub fn assert_same(&self, before: &Snapshot, what: &str) {
        if let Some(diffs) = self.differences(before, what) {
            panic!("{diffs}");
        }
    }

    /// A description of how this snapshot differs from `before`, if it does.
    pub fn differences(&self, before: &Snapshot, what: &str) -> Option<String> {
        if self == before {
            return None;
        }
        let mut diffs = Vec::new();
        for (path, old) in &before.entries {
            match self.entries.get(path) {
                None => diffs.push(format!("removed: {path}")),
                Some(new) if new != old => {
                    let mut how = Vec::new();
                    if new.kind != old.kind {
                        how.push(format!("type {} -> {}", old.kind, new.kind));
                    }
                    if new.mode != old.mode {
                        how.push(format!("mode {:o} -> {:o}", old.mode, new.mode));
                    }
                    if (new.uid, new.gid) != (old.uid, old.gid) {
                        how.push("owner".to_string());
                    }
                    if new.size != old.size {
                        how.push(format!("size {} -> {}", old.size, new.size));
                    }
                    if new.mtime != old.mtime {
                        how.push(format!("mtime {:?} -> {:?}", old.mtime, new.mtime));
                    }
                    if new.content != old.content {
                        how.push("content".to_string());
                    }
                    if new.xattrs != old.xattrs {
                        how.push(format!("xattrs {:?} -> {:?}", old.xattrs, new.xattrs));
                    }
                    diffs.push(format!("changed: {path} ({})", how.join(", ")));
                }
                Some(_) => {}
            }
        }
        for path in self.entries.keys() {
            if !before.entries.contains_key(path) {
                diffs.push(format!("added: {path}"));
            }
        }
        Some(format!(
            "{what} was modified ({} differences):\n  {}",
            diffs.len(),
            diffs.join("\n  ")
        ))
    }
}

fn walk(top: &Path, path: &Path, entries: &mut BTreeMap<String, Entry>) {
    let meta = fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("snapshot: lstat {}: {e}", path.display()));
    let ft = meta.file_type();
    let (kind, content) = if ft.is_symlink() {
        let target = fs::read_link(path).expect("snapshot: read_link");
        ('l', target.into_os_string().into_encoded_bytes())
    } else if ft.is_dir() {
        ('d', Vec::new())
    } else if ft.is_file() {
        (
            'f',
            fs::read(path).unwrap_or_else(|e| panic!("snapshot: read {}: {e}", path.display())),
        )
    } else {
        ('o', Vec::new())
    };
    let rel = path
        .strip_prefix(top)
        .expect("inside the tree")
        .to_string_lossy()
        .into_owned();
    entries.insert(
        format!("/{rel}"),
        Entry {
            kind,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: if kind == 'd' { 0 } else { meta.size() },
            mtime: (meta.mtime(), meta.mtime_nsec()),
            content,
            xattrs: xattrs_of(path),
        },
    );
    if kind == 'd' {
        let mut names: Vec<PathBuf> = fs::read_dir(path)
            .unwrap_or_else(|e| panic!("snapshot: read_dir {}: {e}", path.display()))
            .map(|e| e.expect("snapshot: dir entry").path())
            .collect();
        names.sort();
        for child in names {
            walk(top, &child, entries);
        }
    }
}

/// How a capsule is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `LD_PRELOAD=libcapsule.so CAPSULE_ROOT=... CAPSULE_UPPER=... HOSTPATH`.
    Preload,
    /// `capsule run --root ROOT --name NAME -- PROG`.
    Loader,
}

/// A capsule on a test root with its own upper layer, run as many times as wanted (each
/// run continues with the same upper layer).
pub struct Capsule<'a> {
    pub via: Via,
    pub root: &'a TestRoot,
    upper: TempDir,
    pub home: CapsuleHome,
    pub name: String,
    /// Extra `CAPSULE_*` variables (Preload) or `capsule run` flags (Loader).
    pub extra: Vec<(String, String)>,
    pub flags: Vec<String>,
    /// The directory programs start in (capsule path; `-w` for the loader).
    pub workdir: String,
}

impl<'a> Capsule<'a> {
    pub fn new(via: Via, root: &'a TestRoot) -> Capsule<'a> {
        static N: AtomicUsize = AtomicUsize::new(0);
        Capsule {
            via,
            root,
            upper: TempDir::new("upper"),
            home: CapsuleHome::new(),
            name: format!(
                "fs-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            extra: Vec::new(),
            flags: Vec::new(),
            workdir: "/".to_string(),
        }
    }

    /// The host directory holding the capsule's upper layer.
    pub fn upper(&self) -> PathBuf {
        match self.via {
            Via::Preload => self.upper.path().to_path_buf(),
            Via::Loader => self
                .home
                .path()
                .join("capsules")
                .join(&self.name)
                .join("upper"),
        }
    }

    /// The host path, in the upper layer, of capsule path `path`.
    pub fn up(&self, path: &str) -> PathBuf {
        self.upper().join(path.trim_start_matches('/'))
    }

    /// The command running `prog` (a capsule path) with `args` in the capsule.
    pub fn command(&self, prog: &str, args: &[&str]) -> Command {
        match self.via {
            Via::Preload => {
                let mut env: Vec<(&str, &str)> = vec![
                    ("CAPSULE_ROOT", self.root.str()),
                    ("CAPSULE_UPPER", self.upper.str()),
                    ("PATH", ROOT_PATH),
                ];
                for (k, v) in &self.extra {
                    env.push((k, v));
                }
                let mut cmd = preload_command(&env, self.root.host(prog), args);
                cmd.current_dir(self.root.host(&self.workdir));
                cmd
            }
            Via::Loader => {
                shim();
                let mut full: Vec<&str> = vec!["run", "--root", self.root.str(), "--name"];
                full.push(&self.name);
                full.extend(["-e", "PATH=/usr/bin:/bin", "-w", &self.workdir]);
                full.extend(self.flags.iter().map(String::as_str));
                full.push("--");
                full.push(prog);
                full.extend_from_slice(args);
                self.home.command(&full)
            }
        }
    }

    pub fn run(&self, prog: &str, args: &[&str]) -> Output {
        run(&mut self.command(prog, args))
    }

    /// Runs `sh -c script` in the capsule (after GUARD).
    pub fn sh(&self, script: &str) -> Output {
        self.run("/bin/sh", &["-c", &format!("{GUARD}{script}")])
    }

    /// Runs `sh -c script`, asserts it succeeded, returns its stdout.
    #[track_caller]
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        success(&out, &format!("{:?}: sh -c {script:?}", self.via))
    }

    pub fn label(&self, what: &str) -> String {
        format!("{what} ({:?})", self.via)
    }
}

/// Unique host paths a capsule over the host `/` writes to: after a correct run none of
/// them exists on the host. `check` asserts that (removing any that exist first); drop
/// removes them in any case, so a failing test leaves nothing behind.
pub struct HostPaths {
    paths: Vec<PathBuf>,
}

impl HostPaths {
    /// `/etc/capsule-test-<tag>` and `/var/lib/capsule-test-<tag>`, with a unique tag.
    pub fn new(label: &str) -> HostPaths {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tag = format!(
            "{label}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let paths = vec![
            PathBuf::from(format!("/etc/capsule-test-{tag}")),
            PathBuf::from(format!("/var/lib/capsule-test-{tag}")),
        ];
        for p in &paths {
            assert!(
                fs::symlink_metadata(p).is_err(),
                "{} exists before the test",
                p.display()
            );
        }
        HostPaths { paths }
    }

    /// `/etc/capsule-test-<tag>` (a file the capsule creates).
    pub fn etc(&self) -> &str {
        self.paths[0].to_str().expect("utf-8")
    }

    /// `/var/lib/capsule-test-<tag>` (a directory the capsule creates).
    pub fn var(&self) -> &str {
        self.paths[1].to_str().expect("utf-8")
    }

    /// Asserts that none of the paths exists on the host (checked natively).
    #[track_caller]
    pub fn check(&self) {
        let leaked: Vec<String> = self
            .paths
            .iter()
            .filter(|p| fs::symlink_metadata(p).is_ok())
            .map(|p| p.display().to_string())
            .collect();
        self.remove();
        assert!(
            leaked.is_empty(),
            "the capsule wrote through to the host: {} exist(s) on the host (removed now)",
            leaked.join(", ")
        );
    }

    fn remove(&self) {
        for p in &self.paths {
            if let Ok(meta) = fs::symlink_metadata(p) {
                if meta.is_dir() {
                    let _ = fs::remove_dir_all(p);
                } else {
                    let _ = fs::remove_file(p);
                }
            }
        }
    }
}

impl Drop for HostPaths {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The first line of every shell script run on a test root: refuse to run (status 99)
/// unless the capsule shows the test root, so that a shim which ignores CAPSULE_ROOT
/// cannot let the script change the host's `/` (the tests run as root).
pub const GUARD: &str = "[ \"$(cat /etc/hostname)\" = capsule-lower ] || \
     { echo 'REFUSED: not on the test root' >&2; exit 99; }; set -e; export LC_ALL=C; ";

/// Absolute paths that scripts on a test root write to and that must never appear on
/// the host: asserted absent before and after (removed, and the test failed, if a
/// capsule wrote through to the host).
pub struct HostAbsent {
    paths: Vec<PathBuf>,
}

impl HostAbsent {
    #[track_caller]
    pub fn new(paths: &[&str]) -> HostAbsent {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        for p in &paths {
            assert!(
                !exists(p),
                "{} exists on this host: the test cannot tell whether a capsule wrote it",
                p.display()
            );
        }
        HostAbsent { paths }
    }

    #[track_caller]
    pub fn check(&self) {
        let leaked: Vec<String> = self
            .paths
            .iter()
            .filter(|p| exists(p))
            .map(|p| p.display().to_string())
            .collect();
        self.remove();
        assert!(
            leaked.is_empty(),
            "a capsule on a test root wrote to the host: {} (removed now)",
            leaked.join(", ")
        );
    }

    fn remove(&self) {
        for p in &self.paths {
            if let Ok(meta) = fs::symlink_metadata(p) {
                if meta.is_dir() {
                    let _ = fs::remove_dir_all(p);
                } else {
                    let _ = fs::remove_file(p);
                }
            }
        }
    }
}

impl Drop for HostAbsent {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Whether `path` exists (without following a last symlink).
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The content of a file as text (panics with the path when unreadable).
#[track_caller]
pub fn read_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The permission bits of `path` (not following a last symlink).
#[track_caller]
pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// The names in a host directory, sorted.
#[track_caller]
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Asserts a capsule refused its input: exit 125, one line on stderr that mentions
/// `culprit`, and nothing in `$CAPSULE_HOME/capsules`.
#[track_caller]
pub fn assert_refused(out: &Output, home: &CapsuleHome, culprit: &str, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(125),
        "{what}: expected exit status 125\n{}",
        describe(out)
    );
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].contains(culprit),
        "{what}: expected one line on stderr naming {culprit:?}\n{}",
        describe(out)
    );
    let capsules = home.path().join("capsules");
    let created = capsules.exists() && fs::read_dir(&capsules).map(|d| d.count()).unwrap_or(0) > 0;
    assert!(
        !created,
        "{what}: refused input still created {:?}",
        names_in(&capsules)
    );
}

/// Collects every failed check of a test, so that one report shows the probe's output,
/// what the upper layer holds and how the lower layer changed, together.
pub struct Checks {
    what: String,
    failures: Vec<String>,
}

impl Checks {
    pub fn new(what: impl Into<String>) -> Checks {
        Checks {
            what: what.into(),
            failures: Vec::new(),
        }
    }

    /// Records `msg` unless `ok`.
    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(msg());
        }
    }

    /// A C probe must have exited 0 with OK as its last line.
    pub fn probe(&mut self, out: &Output, label: &str) {
        let text = stdout(out);
        let ok = out.status.success() && text.lines().last() == Some("OK");
        self.check(ok, || {
            format!("{label}: the probe did not report OK\n{}", describe(out))
        });
    }

    /// The test root must be unchanged.
    pub fn root_unchanged(&mut self, root: &TestRoot) {
        if let Some(c) = root.changes() {
            self.failures.push(c);
        }
    }

    /// Upper-layer file `path` of capsule `c` holds `content`.
    pub fn upper_file(&mut self, c: &Capsule, path: &str, content: &str) {
        let host = c.up(path);
        let got = fs::read_to_string(&host).ok();
        self.check(got.as_deref() == Some(content), || {
            format!(
                "upper layer: {} (the capsule's {path}) holds {got:?}, expected {content:?}",
                host.display()
            )
        });
    }

    /// Upper-layer entry `path` exists (a whiteout, a marker, a directory...).
    pub fn upper_has(&mut self, c: &Capsule, path: &str, what: &str) {
        let host = c.up(path);
        self.check(exists(&host), || {
            format!(
                "upper layer: expected the {what} {}; its directory holds {:?}",
                host.display(),
                host.parent().filter(|p| p.is_dir()).map(names_in)
            )
        });
    }

    /// Upper-layer entry `path` does not exist.
    pub fn upper_lacks(&mut self, c: &Capsule, path: &str, why: &str) {
        let host = c.up(path);
        self.check(!exists(&host), || {
            format!("upper layer: {} should not exist ({why})", host.display())
        });
    }

    /// Upper-layer `path` has permission bits `mode` and, unless None, mtime `mtime`.
    pub fn upper_meta(&mut self, c: &Capsule, path: &str, mode: u32, mtime: Option<i64>) {
        let host = c.up(path);
        match fs::symlink_metadata(&host) {
            Err(e) => self
                .failures
                .push(format!("upper layer: {}: {e}", host.display())),
            Ok(m) => {
                self.check(m.mode() & 0o7777 == mode, || {
                    format!(
                        "upper layer: {} has mode {:o}, expected {mode:o}",
                        host.display(),
                        m.mode() & 0o7777
                    )
                });
                if let Some(t) = mtime {
                    self.check(m.mtime() == t, || {
                        format!(
                            "upper layer: {} has mtime {}, expected {t}",
                            host.display(),
                            m.mtime()
                        )
                    });
                }
            }
        }
    }

    /// Upper-layer directory `dir` holds only whiteouts, names in `allowed`, and copies
    /// of directories of the lower layer (harmless: they show the same thing).
    pub fn upper_only(&mut self, c: &Capsule, dir: &str, allowed: &[&str]) {
        let host = c.up(dir);
        if !host.is_dir() {
            return;
        }
        let lower = c.root.host(dir);
        let stray: Vec<String> = names_in(&host)
            .into_iter()
            .filter(|n| !n.starts_with(".wh.") && !allowed.contains(&n.as_str()))
            .filter(|n| !(host.join(n).is_dir() && lower.join(n).is_dir()))
            .collect();
        self.check(stray.is_empty(), || {
            format!(
                "upper layer: unexpected entries in {}: {stray:?} (leftover temporary files \
                 of a copy-up, or files copied up without being changed)",
                host.display()
            )
        });
    }

    /// Panics with every failure recorded, if any.
    #[track_caller]
    pub fn finish(self) {
        if !self.failures.is_empty() {
            panic!(
                "{}: {} failed check(s):\n\n{}",
                self.what,
                self.failures.len(),
                self.failures.join("\n\n")
            );
        }
    }
}
