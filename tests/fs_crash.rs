//! Copy-up integrity: a copy-up is complete (content, mode with set-id bits, owner,
//! times, extended attributes) before its name appears, whatever moment the process
//! is killed at; leftovers of killed copy-ups are collected at the next start; the
//! lower layer never changes. Also: names that look like layer markers cannot be
//! created, and a process may hold many merged directory streams without ever seeing
//! a marker.
//!
//! The crash run kills `capsule run` (the loader and its program: one process group)
//! with SIGKILL at pseudo-random moments while it copies files of 1 B to 50 MB up,
//! `CAPSULE_CRASH_KILLS` times (default 200; `CAPSULE_CRASH_LONG=1`: 1000), seeded by
//! `CAPSULE_CRASH_SEED`. It works in `/dev/shm` when there is one (this machine's disk
//! makes creating files slow and erratic).

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const PREFIX: &str = ".capsule-copyup-";

/// A scratch directory: `lower/` under the system temporary directory (a capsule over
/// the host's `/` sees `/dev` as the host's, so the lower files cannot live on
/// `/dev/shm`), `home/` (the capsule's upper layer) on `/dev/shm` when there is one;
/// both removed on drop.
struct Scratch {
    lower: PathBuf,
    home: PathBuf,
}

impl Scratch {
    fn new(label: &str) -> Scratch {
        let name = format!("capsule-crash-{label}-{}", std::process::id());
        let fast = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let scratch = Scratch {
            lower: std::env::temp_dir().join(&name),
            home: fast.join(format!("{name}-home")),
        };
        for dir in [&scratch.lower, &scratch.home] {
            let _ = fs::remove_dir_all(dir);
            fs::create_dir_all(dir).unwrap();
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        }
        scratch
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.lower);
        let _ = fs::remove_dir_all(&self.home);
    }
}

fn really_root() -> bool {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() == 0 }
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a buffer of value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer valid for its length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

/// Everything a copy must keep of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    size: u64,
    xattr: Option<Vec<u8>>,
}

fn meta(path: &Path) -> Meta {
    let m = fs::symlink_metadata(path).unwrap();
    Meta {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        size: m.len(),
        xattr: get_xattr(path, "user.crash"),
    }
}

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The lower files: sizes from 1 B to 50 MB, set-id and plain modes, another owner
/// where the test may give files away, an xattr, a fixed time.
fn make_lower(dir: &Path) -> Vec<(PathBuf, Meta, Vec<u8>)> {
    fs::create_dir_all(dir.join("sub")).unwrap();
    let other = if really_root() { 1234 } else { host_uid() };
    let group = if really_root() { 1234 } else { host_gid() };
    let specs: &[(&str, usize, u32)] = &[
        ("one", 1, 0o644),
        ("small", 4096, 0o6755),
        ("setuid", 300_000, 0o4755),
        ("mid", 3 << 20, 0o600),
        ("sub/big", 20 << 20, 0o2750),
        ("sub/huge", 50 << 20, 0o755),
    ];
    let mut out = Vec::new();
    for (i, (name, size, mode)) in specs.iter().enumerate() {
        let path = dir.join(name);
        let mut rng = Rng(0x9E37_79B9 + i as u64);
        let mut content: Vec<u8> = Vec::with_capacity(size + 8);
        while content.len() < *size {
            content.extend_from_slice(&rng.next().to_ne_bytes());
        }
        content.truncate(*size);
        fs::write(&path, &content).unwrap();
        if really_root() {
            std::os::unix::fs::lchown(&path, Some(other), Some(group)).unwrap();
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
        set_xattr(&path, "user.crash", format!("x{i}").as_bytes());
        let times = fs::FileTimes::new()
            .set_modified(
                std::time::UNIX_EPOCH + Duration::new(1_000_000_000 + i as u64, 123_456_789),
            )
            .set_accessed(std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000));
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(times)
            .unwrap();
        let m = meta(&path);
        assert_eq!(
            m.mode & 0o7777,
            *mode,
            "{name}: the test could not set its mode"
        );
        out.push((path, m, content));
    }
    out
}

/// Every copy-up temporary below `dir`.
fn leftovers(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(PREFIX) {
            out.push(path);
        } else if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            leftovers(&path, out);
        }
    }
}

/// What a crash run found.
#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    complete: usize,
    absent: usize,
    corrupt: Vec<String>,
    wrong_meta: Vec<String>,
    leftovers_seen: usize,
    leftovers_after_next_run: usize,
}

#[test]
fn copy_ups_killed_at_random_moments_are_all_or_nothing() {
    let long = std::env::var_os("CAPSULE_CRASH_LONG").is_some_and(|v| v == "1");
    let kills: usize = std::env::var("CAPSULE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long { 1000 } else { 200 });
    let seed: u64 = std::env::var("CAPSULE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_C0DE);
    let scratch = Scratch::new("run");
    let lower = scratch.lower.join("lower");
    let files = make_lower(&lower);
    let lower_before: BTreeMap<PathBuf, Meta> = files
        .iter()
        .map(|(p, m, _)| (p.clone(), m.clone()))
        .collect();
    let home = scratch.home.clone();
    let upper = home.join("capsules/crash/upper");
    let upper_of = |p: &Path| upper.join(p.strip_prefix("/").unwrap());
    let names: Vec<String> = files
        .iter()
        .map(|(p, _, _)| p.to_string_lossy().into_owned())
        .collect();
    let start = |home: &Path| {
        let mut cmd = clean_command(capsule_bin());
        cmd.env("CAPSULE_HOME", home)
            .env("CAPSULE_SHIM", shim())
            .args([
                "run",
                "--name",
                "crash",
                "--",
                "sh",
                "-c",
                "for f; do : >> \"$f\"; done",
                "sh",
            ])
            .args(&names)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };

    // How long a whole run takes, to spread the kills over it.
    let began = Instant::now();
    let status = start(&home).status().unwrap();
    assert!(status.success());
    let whole = began.elapsed();
    for (path, m, content) in &files {
        let copy = upper_of(path);
        assert_eq!(
            meta(&copy),
            *m,
            "{}: the copy differs from the lower file",
            path.display()
        );
        assert!(
            fs::read(&copy).unwrap() == *content,
            "{}: content",
            path.display()
        );
    }

    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let window = whole.as_micros() as u64 + 5_000;
    for _ in 0..kills {
        // Fresh copy-ups each time: the directories too, so they are copied again.
        let _ = fs::remove_dir_all(upper.join(lower.strip_prefix("/").unwrap()));
        let mut child = start(&home).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.next() % window));
        // SAFETY: signalling the process group the test just created.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
        tally.kills += 1;
        // Both are dead now (a zombie runs no code, and a call the kill interrupted
        // either completed atomically or not at all); this machine's init may take a
        // second or more to reap the orphaned program, which nothing here waits for.
        for (path, m, content) in &files {
            let copy = upper_of(path);
            if fs::symlink_metadata(&copy).is_err() {
                tally.absent += 1;
                continue;
            }
            let got = meta(&copy);
            if got != *m {
                tally
                    .wrong_meta
                    .push(format!("{}: {got:?} != {m:?}", copy.display()));
            }
            if fs::read(&copy).map(|c| c != *content).unwrap_or(true) {
                tally.corrupt.push(copy.display().to_string());
            } else {
                tally.complete += 1;
            }
        }
        let mut found = Vec::new();
        leftovers(&upper, &mut found);
        tally.leftovers_seen += found.len();
    }
    // The next run collects what killed copy-ups left: also a named temporary of
    // the fallback copy and a half-made directory, planted as a killed process of
    // another file system would leave them.
    let planted = [
        upper.join(format!("{PREFIX}4242.4243.0.99")),
        upper.join("tmp").join(format!("{PREFIX}4242.4243.1.98")),
    ];
    fs::create_dir_all(upper.join("tmp")).unwrap();
    fs::write(&planted[0], "partial").unwrap();
    fs::create_dir(&planted[1]).unwrap();
    let status = start(&home).status().unwrap();
    assert!(status.success());
    let mut found = Vec::new();
    leftovers(&upper, &mut found);
    tally.leftovers_after_next_run = found.len();
    for (path, m) in &lower_before {
        assert_eq!(meta(path), *m, "{}: the lower file changed", path.display());
    }
    for (path, _, content) in &files {
        assert!(
            fs::read(path).unwrap() == *content,
            "{}: lower content changed",
            path.display()
        );
    }
    println!(
        "fs_crash: {} kills over {} files (1 B-50 MB), whole run {:?}: {} complete copies, {} absent, {} corrupt or partial, {} wrong mode/owner/times/xattr, {} leftovers seen between runs, {} after the next run",
        tally.kills,
        files.len(),
        whole,
        tally.complete,
        tally.absent,
        tally.corrupt.len(),
        tally.wrong_meta.len(),
        tally.leftovers_seen,
        tally.leftovers_after_next_run
    );
    assert!(tally.corrupt.is_empty(), "corrupt: {:?}", tally.corrupt);
    assert!(
        tally.wrong_meta.is_empty(),
        "wrong metadata: {:?}",
        tally.wrong_meta
    );
    assert_eq!(tally.leftovers_after_next_run, 0, "{found:?}");
    // The kills landed everywhere: some before any copy, some after all of them.
    assert!(tally.absent > 0 && tally.complete > 0, "{tally:?}");
}

#[test]
fn copy_up_keeps_set_id_bits_owner_times_and_xattrs() {
    let scratch = Scratch::new("meta");
    let lower = scratch.lower.join("lower");
    let files = make_lower(&lower);
    let home = scratch.home.clone();
    let names: Vec<&str> = files.iter().map(|(p, _, _)| p.to_str().unwrap()).collect();
    let mut cmd = clean_command(capsule_bin());
    cmd.env("CAPSULE_HOME", &home)
        .env("CAPSULE_SHIM", shim())
        .args(["run", "--name", "meta", "--", "sh", "-c"])
        .arg("for f; do : >> \"$f\"; stat -c '%a %u %g %Y' \"$f\"; done")
        .arg("sh")
        .args(&names);
    let out = run(&mut cmd);
    let seen = success(&out, "copy-ups");
    let upper = home.join("capsules/meta/upper");
    for ((path, m, content), line) in files.iter().zip(seen.lines()) {
        let copy = upper.join(path.strip_prefix("/").unwrap());
        assert_eq!(meta(&copy), *m, "{}", path.display());
        assert!(fs::read(&copy).unwrap() == *content);
        // The program sees the lower file's mode (set-id bits included), owner, time.
        assert_eq!(
            line,
            format!("{:o} {} {} {}", m.mode & 0o7777, m.uid, m.gid, m.mtime.0),
            "{}",
            path.display()
        );
        assert_eq!(meta(path), *m, "{}: lower changed", path.display());
    }
}

#[test]
fn names_that_look_like_layer_markers_cannot_be_created() {
    let scratch = Scratch::new("markers");
    let dir = scratch.lower.join("d");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("keep"), "kept\n").unwrap();
    let home = scratch.home.clone();
    let d = dir.to_str().unwrap();
    let py = scratch.lower.join("markers.py");
    fs::write(
        &py,
        "import os, errno\n\
         for n, f in [('.wh.keep', 0), ('.wh.keep', os.O_EXCL), ('fresh/.wh.x', os.O_EXCL),\n\
         \x20            ('fresh/.wh..wh..opq', 0)]:\n\
         \x20   try:\n\
         \x20       os.open(n, os.O_CREAT | os.O_WRONLY | f, 0o644)\n\
         \x20       print('created', n)\n\
         \x20   except OSError as e:\n\
         \x20       print(errno.errorcode[e.errno])\n\
         try:\n\
         \x20   os.mknod('.wh.keep', 0o600)\n\
         except OSError as e:\n\
         \x20   print(errno.errorcode[e.errno])\n",
    )
    .unwrap();
    let py = py.to_str().unwrap();
    let script = format!(
        "cd {d} || exit 9\n\
         touch new || exit 8\n\
         for n in .wh.keep .wh..wh..opq .capsule-copyup-1.2.3.4 .wh.new; do\n\
           if touch \"$n\" 2>/dev/null; then echo \"created $n\"; fi\n\
           if mkdir \"$n\" 2>/dev/null; then echo \"made $n\"; fi\n\
           if ln -s x \"$n\" 2>/dev/null; then echo \"linked $n\"; fi\n\
           if mv new \"$n\" 2>/dev/null; then echo \"moved $n\"; mv \"$n\" new; fi\n\
         done\n\
         mkdir fresh || exit 7\n\
         python3 {py}\n\
         ls -A fresh\n\
         ls -A\n\
         cat keep"
    );
    let mut cmd = clean_command(capsule_bin());
    cmd.env("CAPSULE_HOME", &home)
        .env("CAPSULE_SHIM", shim())
        .args(["run", "--name", "markers", "--", "sh", "-c", &script]);
    let out = run(&mut cmd);
    assert_eq!(
        success(&out, "markers"),
        "EINVAL\nEINVAL\nEINVAL\nEINVAL\nEINVAL\nfresh\nkeep\nnew\nkept\n"
    );
    // Nothing of it reached the upper or the lower layer.
    let upper = home
        .join("capsules/markers/upper")
        .join(dir.strip_prefix("/").unwrap());
    let mut names: Vec<String> = fs::read_dir(&upper)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["fresh", "new"]);
    let mut lower: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    lower.sort();
    assert_eq!(lower, ["keep"]);
}

#[test]
fn many_merged_directory_streams_never_show_markers() {
    let scratch = Scratch::new("streams");
    let dir = scratch.lower.join("d");
    fs::create_dir(&dir).unwrap();
    for name in ["a", "b", "gone"] {
        fs::write(dir.join(name), name).unwrap();
    }
    let home = scratch.home.clone();
    // A merged directory (both layers, a whiteout in the upper one), opened 1100
    // times at once: each stream lists exactly the capsule's names.
    let script = format!(
        "import os\n\
         d = {:?}\n\
         os.remove(os.path.join(d, 'gone'))\n\
         open(os.path.join(d, 'c'), 'w').close()\n\
         streams = [os.scandir(d) for _ in range(1100)]\n\
         seen = set(tuple(sorted(e.name for e in s)) for s in streams)\n\
         print(seen)\n",
        dir.to_str().unwrap()
    );
    let mut cmd = clean_command(capsule_bin());
    cmd.env("CAPSULE_HOME", &home)
        .env("CAPSULE_SHIM", shim())
        .args(["run", "--name", "streams", "--", "python3", "-c", &script]);
    let out = run(&mut cmd);
    assert_eq!(success(&out, "streams"), "{('a', 'b', 'c')}\n");
}
