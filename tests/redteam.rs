//! The red-team suite: attacks on containment, run as an attacker would, through the
//! real `capsule` binary, with bash, coreutils, python3 and a C attacker
//! (`c-tests/redteam.c`: raw system calls, libc's `syscall()`, `posix_spawn` file
//! actions; also linked statically, so that no shim is loaded at all).
//!
//! Each attempt is one line of [`ATTEMPTS`]: a bash script and the kinds of capsule it
//! runs in. After every run the harness compares, byte for byte (contents, type, mode,
//! owner, size, mtime, xattrs), the lower layer (the `--root` directory, or for a
//! capsule over the host `/` a host directory it sees as lower), the `:ro` volume and
//! an outside directory with their snapshots from before; attempts that read check
//! that no outside secret was printed; in `--read-only` capsules the upper layer must
//! stay without files. An attempt that did not run (no `RAN` line) fails too.
//!
//! The scripts get, through `-e`: `L` the lower target directory as the capsule names
//! it, `LH` its host path, `RO` the `:ro` volume's capsule path, `ROH` its host path,
//! `RW` the `rw` volume, `OUT` a host directory outside the capsule's view (for a root
//! capsule), `RT`/`RTS` the C attacker (dynamic/static), `PY` python3, `UP` the
//! capsule's upper layer (host path).
//!
//! Known escapes ([`Attempt::known`]): metadata changes (chmod, utimes, xattrs) through
//! magic links or raw system calls, which Landlock does not govern; the shim's
//! interposition is the fix (issue 9, class A/B/L). They run and are reported, never
//! asserted as contained while they still escape.
//!
//! Beside the table: a forged loader entry in the capsule's shared state (memory
//! every process of the capsule can write) must not make a root program run the
//! host's dynamic loader.
//!
//! `cargo test -p capsule-loader --test redteam -- --nocapture` prints the table;
//! with `REDTEAM_NO_LANDLOCK=1` the capsules run without the kernel backstop, which
//! shows what the shim alone contains (and fails).

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use common::*;
use fs_support::Snapshot;

/// Kinds of capsule an attempt runs in.
const ROOT: u8 = 1;
const HOST: u8 = 2;
const ROOT_RO: u8 = 4;
const HOST_RO: u8 = 8;
/// Over the host `/` with every program under the system-call backstop
/// (`--backstop all`): the known escapes, raw calls of dynamic programs, are
/// asserted contained there.
const HOST_ALL: u8 = 16;
const ALL: u8 = ROOT | HOST | ROOT_RO | HOST_RO | HOST_ALL;
/// Capsules with their own root (reads are governed there too).
const ROOTS: u8 = ROOT | ROOT_RO;
/// Capsules over the host `/` (python3 is the host's).
const HOSTS: u8 = HOST | HOST_RO | HOST_ALL;
const READ_ONLY: u8 = ROOT_RO | HOST_RO;

struct Attempt {
    name: &'static str,
    modes: u8,
    script: &'static str,
    /// Why it still escapes and who fixes it, for attempts Landlock cannot stop.
    known: Option<&'static str>,
}

const fn a(name: &'static str, modes: u8, script: &'static str) -> Attempt {
    Attempt {
        name,
        modes,
        script,
        known: None,
    }
}

/// Metadata through a magic link or a raw call: not Landlock's to refuse.
const fn meta(name: &'static str, modes: u8, script: &'static str) -> Attempt {
    Attempt {
        name,
        modes,
        script,
        known: Some("metadata (chmod/utimes/xattr) is not governed by Landlock: the shim's interposition fixes it (issue 9, A/B/L)"),
    }
}

/// Python: map the lower marker, then open its `/proc/self/map_files` entry to write.
const MAP_FILES: &str = concat!(
    "import mmap,os\n",
    "f=open(os.environ['L']+'/marker','rb'); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\n",
    "for l in open('/proc/self/maps'):\n",
    "  if l.rstrip().endswith('/marker'):\n",
    "    w=os.open('/proc/self/map_files/'+l.split()[0],os.O_WRONLY); os.write(w,b'X')\n",
);

/// The attempts: one line each. Paths: see the module comment.
#[rustfmt::skip]
const ATTEMPTS: &[Attempt] = &[
    // A. Magic links handed to the kernel, which reopens the lower inode.
    a("proc-self-fd append", ALL, r#"exec 3<"$L/marker"; echo X >> /proc/self/fd/3"#),
    a("proc-self-fd truncate by >", ALL, r#"exec 3<"$L/marker"; : > /proc/self/fd/3"#),
    a("dev-fd append", ALL, r#"exec 3<"$L/marker"; echo X >> /dev/fd/3"#),
    a("dev-stdin truncate", ALL, r#"truncate -s 2 /dev/stdin < "$L/marker""#),
    a("dev-stdin write by sh", ALL, r#"sh -c 'echo X > /dev/stdin' < "$L/marker""#),
    a("proc-pid-fd append", ALL, r#"exec 3<"$L/marker"; echo X >> /proc/$$/fd/3"#),
    a("proc-task-fd append", ALL, r#"exec 3<"$L/marker"; for t in /proc/$$/task/*; do echo X >> $t/fd/3; done"#),
    a("dir fd create inside", ALL, r#"exec 3<"$L"; echo X > /proc/self/fd/3/rt-new"#),
    a("dir fd remove inside", ALL, r#"exec 3<"$L"; rm -f /proc/self/fd/3/victim"#),
    a("python fd reopen", HOSTS, r#""$PY" -c "print('RAN py'); import os; fd=os.open('$L/marker',os.O_RDONLY); w=os.open('/proc/self/fd/%d'%fd,os.O_WRONLY|os.O_APPEND); os.write(w,b'X')""#),
    a("python map_files write", HOSTS, r#""$PY" -c "print('RAN py'); $MAPF""#),
    a("C fd reopen raw", ALL, r#""$RT" fd-append "$L/marker""#),
    // L. Raw system calls (no libc path function), the next missed function.
    a("raw openat append", ALL, r#""$RT" append "$LH/marker""#),
    a("raw openat O_TRUNC", ALL, r#""$RT" trunc "$LH/marker""#),
    a("raw truncate", ALL, r#""$RT" truncate "$LH/marker""#),
    a("raw create in lower dir", ALL, r#""$RT" create "$LH/rt-new""#),
    a("raw unlink", ALL, r#""$RT" unlink "$LH/victim""#),
    a("raw rmdir", ALL, r#""$RT" rmdir "$LH/empty""#),
    a("raw rename within lower", ALL, r#""$RT" rename "$LH/victim" "$LH/rt-renamed""#),
    a("raw rename across dirs", ALL, r#""$RT" rename "$LH/victim" "$LH/dir/rt-victim""#),
    a("raw link", ALL, r#""$RT" link "$LH/marker" "$LH/rt-link""#),
    a("raw symlink", ALL, r#""$RT" symlink /etc "$LH/rt-sym""#),
    a("raw mkdir", ALL, r#""$RT" mkdir "$LH/rt-dir""#),
    a("raw mknod fifo", ALL, r#""$RT" mknod "$LH/rt-fifo""#),
    a("libc syscall(SYS_openat)", ALL, r#""$RT" libc-append "$L/marker""#),
    a("libc syscall(SYS_unlinkat)", ALL, r#""$RT" libc-unlink "$L/victim""#),
    a("libc syscall(SYS_renameat2)", ALL, r#""$RT" libc-rename "$L/victim" "$L/rt-r2""#),
    // RENAME_EXCHANGE: the shim copies both names up; raw, Landlock refuses.
    a("raw RENAME_EXCHANGE of two lower files", ALL, r#""$RT" exchange "$LH/marker" "$LH/victim""#),
    a("libc RENAME_EXCHANGE of two lower files", ALL, r#""$RT" libc-exchange "$L/marker" "$L/victim""#),
    a("libc RENAME_EXCHANGE of a lower dir and a new one", ALL, r#"mkdir "$L/rt-x"; "$RT" libc-exchange "$L/dir" "$L/rt-x""#),
    a("static RENAME_EXCHANGE of two lower files", ALL, r#""$RTS" exchange "$LH/marker" "$LH/victim""#),
    a("libc syscall(SYS_openat) by host path", ROOTS, r#""$RT" libc-append "$LH/marker""#),
    // F. posix_spawn file actions.
    a("C posix_spawn addopen O_TRUNC", ALL, r#""$RT" spawn-trunc "$L/marker""#),
    a("python os.posix_spawn open", HOSTS, r#""$PY" -c "print('RAN py'); import os; os.posix_spawn('/bin/true',['true'],os.environ,file_actions=[(os.POSIX_SPAWN_OPEN,1,'$L/marker',os.O_WRONLY|os.O_TRUNC,0o644)])""#),
    // The :ro volume.
    a(":ro through /proc/self/fd", ALL, r#"exec 3<"$RO/file"; echo X >> /proc/self/fd/3"#),
    a(":ro dev-stdin truncate", ALL, r#"truncate -s 0 /dev/stdin < "$RO/file""#),
    a(":ro through its own symlink", ALL, r#"echo X >> "$RO/tofile""#),
    a(":ro through an upper symlink, raw", ALL, r#"ln -s "$ROH/file" /tmp/rt-rolink && "$RT" append /tmp/rt-rolink"#),
    a(":ro through an upper symlink, shell", ALL, r#"ln -s "$RO/file" /tmp/rt-rolink2 && echo X >> /tmp/rt-rolink2"#),
    a(":ro raw append by host path", ALL, r#""$RT" append "$ROH/file""#),
    a(":ro raw unlink by host path", ALL, r#""$RT" unlink "$ROH/file""#),
    a(":ro raw create by host path", ALL, r#""$RT" create "$ROH/rt-new""#),
    a(":ro python posix_spawn", HOSTS, r#""$PY" -c "print('RAN py'); import os; os.posix_spawn('/bin/true',['true'],os.environ,file_actions=[(os.POSIX_SPAWN_OPEN,1,'$RO/file',os.O_WRONLY|os.O_TRUNC,0o644)])""#),
    // A static binary: no shim at all.
    a("static append lower", ALL, r#""$RTS" append "$LH/marker""#),
    a("static truncate lower", ALL, r#""$RTS" truncate "$LH/marker""#),
    a("static unlink lower", ALL, r#""$RTS" unlink "$LH/victim""#),
    a("static create outside", ALL, r#""$RTS" create "$OUT/rt-new""#),
    a("static append outside", ALL, r#""$RTS" append "$OUT/marker""#),
    a("static rename outside", ALL, r#""$RTS" rename "$OUT/marker" "$OUT/rt-moved""#),
    a("static :ro append", ALL, r#""$RTS" append "$ROH/file""#),
    // Outside the view of a root capsule: writes and reads.
    a("raw create outside", ALL, r#""$RT" create "$OUT/rt-new""#),
    a("raw unlink outside", ALL, r#""$RT" unlink "$OUT/marker""#),
    a("raw read outside secret", ROOTS, r#""$RT" read "$OUT/secret""#),
    a("static read outside secret", ROOTS, r#""$RTS" read "$OUT/secret""#),
    a("raw read host passwd", ROOTS, r#""$RT" read /etc/passwd"#),
    a("raw read through an upper symlink", ROOTS, r#"ln -s "$OUT/secret" /tmp/rt-s && "$RT" read /tmp/rt-s"#),
    // --read-only: the upper layer is read-only in the kernel too.
    a("read-only: shell write", READ_ONLY, r#"echo X > "$L/marker"; echo X > /tmp/rt-new"#),
    a("read-only: raw create in upper", READ_ONLY, r#""$RT" create "$UP/rt-new""#),
    a("read-only: static create in upper", READ_ONLY, r#""$RTS" create "$UP/rt-new""#),
    // E. A directory that becomes a link (to a host path the kernel would follow on
    // the host) after the shim looked: cached, or swapped by another process.
    a("stale cached dir, now a link to the lower", ROOT | HOST, r#""$RT" stale /tmp/rt-e "$LH""#),
    a("stale cached dir, now a link outside", ROOT, r#""$RT" stale /tmp/rt-e "$OUT""#),
    a("dir/link swap race to the lower, 2 s", ROOT | HOST, r#""$RT" race /tmp/rt-e "$LH" 2000"#),
    a("dir/link swap race outside, 2 s", ROOT, r#""$RT" race /tmp/rt-e "$OUT" 2000"#),
    // B, C. Descriptors: after a copy-up, and a number reused after fclose.
    a("second fchmod after a copy-up, futimens, fsetxattr, fchown", ALL, r#""$RT" fchmod-twice "$L/marker""#),
    a("stale descriptor bit after fclose", ROOT | HOST, r#""$RT" reuse /tmp/rt-up "$L/marker""#),
    // F. Descriptor-relative and other libc path functions.
    a("dirfd-relative changes in a lower dir", ALL, r#""$RT" dirfd "$L" marker"#),
    a("lchmod", ALL, r#""$RT" lchmod "$L/marker""#),
    a("name_to_handle_at + open_by_handle_at", ALL, r#""$RT" handle "$L/marker""#),
    a("posix_spawn addchdir + relative O_TRUNC", ALL, r#""$RT" spawn-chdir "$L""#),
    a("python shutil.copystat onto a lower file", HOSTS, r#""$PY" -c "print('RAN py'); import shutil; shutil.copystat('/proc/self/exe', '$L/marker')""#),
    a("python os.chmod with dir_fd", HOSTS, r#""$PY" -c "print('RAN py'); import os; d=os.open('$L',os.O_RDONLY); os.chmod('marker',0o777,dir_fd=d); os.utime('marker',(0,0),dir_fd=d)""#),
    // D. Links inside a volume lead into the capsule, not the host.
    a("volume link to outside, read", ROOTS, r#"ln -sfn "$OUT" "$RW/rt-o"; cat "$RW/rt-o/secret""#),
    a("volume link to /, then a host path", ROOTS, r#"ln -sfn / "$RW/rt-r"; cat "$RW/rt-r$OUT/secret"; echo X >> "$RW/rt-r$LH/marker""#),
    a("volume link to the lower host path, write and chmod", ALL, r#"ln -sfn "$LH" "$RW/rt-l"; echo X >> "$RW/rt-l/marker"; chmod 777 "$RW/rt-l/marker""#),
    // H. Another (host) process's magic links.
    a("a host process's /proc/PID/fd", ALL, r#"echo X >> "/proc/$HP/fd/$HFD""#),
    a("a host process's /proc/PID/root", ROOTS, r#"cat "/proc/$HP/root$OUT/secret""#),
    // I. The root's dynamic loader run by hand on a program only the host has.
    a("root's ld.so runs a host program", ROOTS, r#"/lib64/ld-linux-x86-64.so.2 /usr/bin/head -c 64 "$OUT/secret""#),
    // What ordinary programs do to lower files by accident.
    a("chmod -R of a lower dir", ALL, r#"chmod -R 777 "$L""#),
    a("touch -d of a lower file", ALL, r#"touch -d @0 "$L/marker""#),
    a("rm -rf of a lower dir", ALL, r#"rm -rf "$L/dir""#),
    a("hard link, then append through it", ROOT | HOST, r#"ln "$L/marker" /tmp/rt-hl && echo X >> /tmp/rt-hl"#),
    // Known: metadata, not Landlock's.
    meta("chmod through /proc/self/fd", ALL, r#"exec 3<"$L/marker"; chmod 777 /proc/self/fd/3"#),
    meta("touch -d through /proc/self/fd", ALL, r#"exec 3<"$L/marker"; touch -d @0 /proc/self/fd/3"#),
    meta("raw chmod", ALL, r#""$RT" chmod "$LH/marker""#),
    meta("raw utimensat", ALL, r#""$RT" utimes "$LH/marker""#),
    meta("raw setxattr", ALL, r#""$RT" setxattr "$LH/marker""#),
    // Static programs: the system-call backstop's supervisor serves their metadata
    // calls with the shim's semantics (copy-up), so these are asserted contained.
    a("static chmod lower", ALL, r#""$RTS" chmod "$LH/marker""#),
    a("static utimensat lower", ALL, r#""$RTS" utimes "$LH/marker""#),
    a("static setxattr lower", ALL, r#""$RTS" setxattr "$LH/marker""#),
    // A static program posing as one of the shim's, whose calls the supervisor would
    // let through as they are: with a copy of the shim at a path that ends like the
    // shim's, with the shim itself mapped, or named like the dynamic loader.
    a("static posing with a copy of the shim", ROOT | HOST | HOST_ALL, r#"mkdir -p "/tmp/rt-pose${SHIM%/*}"; cat "$SHIM" > "/tmp/rt-pose$SHIM"; "$RTS" pose "/tmp/rt-pose$SHIM" chmod "$LH/marker""#),
    a("static posing with the shim mapped", ALL, r#""$RTS" pose "$SHIM" chmod "$LH/marker""#),
    a("static posing with the shim mapped, read outside", ROOTS, r#""$RTS" pose "$SHIM" read "$OUT/secret""#),
    a("static announcing itself as the shim", ALL, r#""$RTS" announce pose "$SHIM" chmod "$LH/marker""#),
    a("static posing as the dynamic loader", ROOT | HOST | HOST_ALL, r#"cat "$RTS" > /tmp/ld-linux-x86-64.so.2; chmod 755 /tmp/ld-linux-x86-64.so.2; /tmp/ld-linux-x86-64.so.2 chmod "$LH/marker""#),
];

/// Programs installed in the test root, with their libraries.
const ROOT_PROGRAMS: &[&str] = &[
    "bash", "sh", "cat", "truncate", "ln", "ls", "rm", "touch", "chmod", "true", "mkdir", "sleep",
];

const SECRET: &str = "rt-outside-secret-4711";

/// The C attacker, dynamic and static (`None` without a static libc).
fn attackers() -> &'static (PathBuf, Option<PathBuf>) {
    static BUILT: OnceLock<(PathBuf, Option<PathBuf>)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dynamic = compile_c("redteam");
        let target = bin_dir().join("c-tests").join("redteam-static");
        let temp = bin_dir()
            .join("c-tests")
            .join(format!(".redteam-static.{}.tmp", std::process::id()));
        let source = workspace_root().join("c-tests/redteam.c");
        let ok = Command::new("cc")
            .args(["-static", "-O1", "-Wall", "-Werror", "-o"])
            .arg(&temp)
            .arg(&source)
            .status()
            .is_ok_and(|s| s.success());
        let stat = ok.then(|| {
            fs::rename(&temp, &target).expect("move the static attacker into place");
            target
        });
        if stat.is_none() {
            eprintln!("redteam: no static libc (libc6-dev's libc.a): static attempts are skipped");
        }
        (dynamic, stat)
    })
}

/// Copies host file `path` to the same place under `root` (following links).
fn copy_in(root: &Path, path: &Path) {
    let to = root.join(path.strip_prefix("/").expect("absolute"));
    fs::create_dir_all(to.parent().expect("parent")).expect("mkdir in root");
    if !to.exists() {
        fs::copy(path, &to).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
    }
}

fn install_program(root: &Path, program: &Path) {
    let out = run_native("ldd", &[program.to_str().expect("utf-8")]);
    for word in stdout(&out).split_whitespace() {
        if word.starts_with('/') {
            copy_in(root, Path::new(word));
        }
    }
    let name = program.file_name().expect("name");
    copy_in(root, program);
    let at = root.join("usr/bin").join(name);
    if !at.exists() {
        fs::copy(program, &at).expect("copy program");
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The lower target tree: `marker`, `victim`, `empty/`, `dir/inner`.
fn populate_target(dir: &Path) {
    write(&dir.join("marker"), "lower marker\n", 0o644);
    write(&dir.join("victim"), "victim\n", 0o644);
    write(&dir.join("dir/inner"), "inner\n", 0o600);
    fs::create_dir_all(dir.join("empty")).expect("mkdir empty");
}

/// One scratch world: a root, a host-side lower target, volumes, an outside
/// directory, a capsule home; with snapshots of what must never change.
struct Arena {
    dir: TempDir,
    home: CapsuleHome,
    before: Vec<(PathBuf, Snapshot)>,
    /// The outside marker held open for writing by this (host) process: its
    /// `/proc/PID/fd/N` must not be the capsule's way out.
    host_fd: fs::File,
}

impl Arena {
    fn new() -> Arena {
        let dir = TempDir::new("redteam");
        let root = dir.join("root");
        fs::create_dir_all(root.join("usr/bin")).expect("mkdir root");
        symlink("usr/bin", root.join("bin")).expect("bin link");
        for p in ROOT_PROGRAMS {
            install_program(&root, &fs_support::which(p));
        }
        let (rt, rts) = attackers();
        fs::create_dir_all(root.join("rt")).expect("mkdir rt");
        fs::copy(rt, root.join("rt/redteam")).expect("copy attacker");
        if let Some(rts) = rts {
            fs::copy(rts, root.join("rt/redteam-static")).expect("copy static attacker");
        }
        for d in ["tmp", "ro", "rw"] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
        populate_target(&root.join("etc/rt"));
        populate_target(&dir.join("lower"));
        write(&dir.join("ro/file"), "read-only volume\n", 0o644);
        write(&dir.join("ro/sub/file"), "deeper\n", 0o644);
        symlink("file", dir.join("ro/tofile")).expect("ro link");
        fs::create_dir_all(dir.join("rw")).expect("mkdir rw");
        write(&dir.join("outside/marker"), "outside marker\n", 0o644);
        write(&dir.join("outside/secret"), &format!("{SECRET}\n"), 0o644);
        let before = ["root", "lower", "ro", "outside"]
            .iter()
            .map(|d| (dir.join(d), Snapshot::of(&dir.join(d))))
            .collect();
        let host_fd = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("outside/marker"))
            .expect("open the outside marker");
        Arena {
            dir,
            home: CapsuleHome::new(),
            before,
            host_fd,
        }
    }

    /// How the protected trees differ from before, if they do.
    fn changes(&self) -> Option<String> {
        let diffs: Vec<String> = self
            .before
            .iter()
            .filter_map(|(dir, snap)| {
                Snapshot::of(dir).differences(snap, &dir.display().to_string())
            })
            .collect();
        (!diffs.is_empty()).then(|| diffs.join("\n"))
    }

    fn upper(&self, name: &str) -> PathBuf {
        self.home.path().join("capsules").join(name).join("upper")
    }

    /// `capsule run` of `script` (bash) in a capsule of kind `mode`, named `name`.
    fn command(&self, mode: u8, name: &str, script: &str) -> Command {
        let d = self.dir.str();
        let (rt, rts) = attackers();
        let own_root = mode & ROOTS != 0;
        let (l, lh, run_rt, run_rts) = if own_root {
            (
                "/etc/rt".to_string(),
                format!("{d}/root/etc/rt"),
                "/rt/redteam".to_string(),
                "/rt/redteam-static".to_string(),
            )
        } else {
            (
                format!("{d}/lower"),
                format!("{d}/lower"),
                rt.display().to_string(),
                rts.as_ref().map_or(format!("{d}/no-static-attacker"), |p| {
                    p.display().to_string()
                }),
            )
        };
        let vars = [
            ("L", l),
            ("LH", lh),
            ("RO", "/ro".to_string()),
            ("ROH", format!("{d}/ro")),
            ("RW", "/rw".to_string()),
            ("OUT", format!("{d}/outside")),
            ("RT", run_rt),
            ("RTS", run_rts),
            ("PY", python3().display().to_string()),
            ("UP", self.upper(name).display().to_string()),
            ("MAPF", MAP_FILES.to_string()),
            ("HP", std::process::id().to_string()),
            ("HFD", self.host_fd.as_raw_fd().to_string()),
            ("SHIM", shim().display().to_string()),
            ("PATH", "/usr/bin:/bin".to_string()),
        ];
        let ro_volume = format!("{d}/ro:/ro:ro");
        let rw_volume = format!("{d}/rw:/rw");
        let root = format!("{d}/root");
        let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), name.into()];
        if own_root {
            args.extend(["--root".into(), root]);
        } else {
            // The host PATH, so that python3's pyenv and coreutils are found.
            args.extend([
                "-e".into(),
                format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
            ]);
        }
        if mode & READ_ONLY != 0 {
            args.push("--read-only".into());
        }
        if mode & HOST_ALL != 0 {
            args.extend(["--backstop".into(), "all".into()]);
        }
        args.extend(["-v".into(), ro_volume, "-v".into(), rw_volume]);
        for (k, v) in vars {
            if k == "PATH" && !own_root {
                continue;
            }
            args.extend(["-e".into(), format!("{k}={v}")]);
        }
        args.extend([
            "--".into(),
            "bash".into(),
            "-c".into(),
            format!("echo RAN; {script}"),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        shim();
        let mut cmd = self.home.command(&args);
        if std::env::var_os("REDTEAM_NO_LANDLOCK").is_some() {
            // To see what the shim alone contains (the suite then fails).
            cmd.env("CAPSULE_LANDLOCK", "off");
        }
        cmd
    }
}

/// What became of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Contained,
    Escaped(String),
    DidNotRun(String),
    Skipped(&'static str),
}

fn mode_name(mode: u8) -> &'static str {
    match mode {
        ROOT => "--root",
        HOST => "host /",
        ROOT_RO => "--root --read-only",
        HOST_RO => "host / --read-only",
        HOST_ALL => "host / --backstop all",
        _ => "?",
    }
}

/// Files (not directories) under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => found.extend(files_under(&path)),
                Ok(_) => found.push(path),
                Err(_) => {}
            }
        }
    }
    found
}

fn judge(arena: &Arena, mode: u8, name: &str, script: &str, out: &Output) -> Verdict {
    let text = stdout(out);
    let ran = |tag: &str| {
        text.lines()
            .any(|l| l == tag || l.starts_with(&format!("{tag} ")))
    };
    let attacker = script.contains("\"$RT") && !ran("RAN");
    let python = script.contains("\"$PY\"") && !text.lines().any(|l| l == "RAN py");
    if !text.lines().any(|l| l == "RAN") || attacker || python {
        return Verdict::DidNotRun(describe(out));
    }
    let mut escapes = Vec::new();
    if let Some(c) = arena.changes() {
        escapes.push(c);
    }
    if text.contains(SECRET) || text.contains("root:x:0:0") {
        escapes.push(format!("an outside secret was read: {text:?}"));
    }
    if mode & READ_ONLY != 0 {
        let written = files_under(&arena.upper(name));
        if !written.is_empty() {
            escapes.push(format!(
                "the read-only capsule wrote its upper layer: {written:?}"
            ));
        }
    }
    if escapes.is_empty() {
        Verdict::Contained
    } else {
        Verdict::Escaped(escapes.join("\n"))
    }
}

/// The capsule works under the backstop: it writes its `rw` volume, and (unless
/// read-only) its copy of a lower file, which the lower layer does not see.
fn control(arena: &Arena, mode: u8) {
    let out = run(&mut arena.command(
        mode,
        &format!("rt-control-{}", std::process::id()),
        r#"echo ok > "$RW/rt-ok" && cat "$RW/rt-ok" && { echo copy > "$L/marker"; cat "$L/marker"; }"#,
    ));
    let text = stdout(&out);
    let copy = if mode & READ_ONLY != 0 {
        "lower marker"
    } else {
        "copy"
    };
    assert_eq!(text, format!("RAN\nok\n{copy}\n"), "{}", describe(&out));
    assert_eq!(
        fs::read_to_string(arena.dir.join("rw/rt-ok"))
            .ok()
            .as_deref(),
        Some("ok\n")
    );
    fs::remove_file(arena.dir.join("rw/rt-ok")).expect("remove rt-ok");
    assert_eq!(arena.changes(), None);
}

/// Runs every attempt for `mode`; prints the table; fails on any escape that is not a
/// known one, and on any attempt that did not run.
fn red_team(mode: u8) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut arena = Arena::new();
    control(&arena, mode);
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for attempt in ATTEMPTS.iter().filter(|a| a.modes & mode != 0) {
        let verdict = if attempt.script.contains("$RTS") && attackers().1.is_none() {
            Verdict::Skipped("no static libc")
        } else {
            let name = format!(
                "rt-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            // Keep the upper layer until judged (--rm removes it at the end): a
            // read-only capsule's upper must stay without files.
            let out = run(&mut arena.command(mode, &name, attempt.script));
            let verdict = judge(&arena, mode, &name, attempt.script, &out);
            let _ = fs::remove_dir_all(arena.home.path().join("capsules").join(&name));
            verdict
        };
        // With every program under the backstop, nothing is a known escape.
        let known = attempt.known.filter(|_| mode != HOST_ALL);
        let line = match (&verdict, known) {
            (Verdict::Contained, _) => "contained".to_string(),
            (Verdict::Escaped(_), Some(_)) => "ESCAPED (known)".to_string(),
            (Verdict::Escaped(how), None) => {
                failures.push(format!(
                    "{} [{}]: ESCAPED\n{how}",
                    attempt.name,
                    mode_name(mode)
                ));
                "ESCAPED".to_string()
            }
            (Verdict::DidNotRun(how), _) => {
                failures.push(format!(
                    "{} [{}]: did not run\n{how}",
                    attempt.name,
                    mode_name(mode)
                ));
                "did not run".to_string()
            }
            (Verdict::Skipped(why), _) => format!("skipped ({why})"),
        };
        table.push(format!(
            "| {} | {} | {line} |",
            attempt.name,
            mode_name(mode)
        ));
        if matches!(verdict, Verdict::Escaped(_)) {
            // Start the next attempt from an untouched world.
            arena = Arena::new();
        }
    }
    eprintln!("red team, {}:\n{}", mode_name(mode), table.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {} attempts failed in a {} capsule:\n{}",
        failures.len(),
        table.len(),
        mode_name(mode),
        failures.join("\n\n")
    );
}

#[test]
fn attacks_on_a_root_capsule() {
    red_team(ROOT);
}

#[test]
fn attacks_on_a_host_root_capsule() {
    red_team(HOST);
}

#[test]
fn attacks_on_a_read_only_root_capsule() {
    red_team(ROOT_RO);
}

#[test]
fn attacks_on_a_read_only_host_root_capsule() {
    red_team(HOST_RO);
}

#[test]
fn attacks_on_a_host_root_capsule_with_every_program_under_the_backstop() {
    red_team(HOST_ALL);
}

#[test]
fn there_are_enough_attempts() {
    assert!(ATTEMPTS.len() >= 80, "{} attempts", ATTEMPTS.len());
}

/// A `capsule run` inside a `--read-only` capsule (asking for no backstop of its own)
/// cannot write the lower layer: the outer domain holds, whatever the inner one is.
#[test]
fn a_nested_capsule_run_cannot_widen_a_read_only_capsule() {
    let arena = Arena::new();
    let capsule = capsule_bin().display().to_string();
    let rt = attackers().0.display().to_string();
    let script = format!(
        "export CAPSULE_HOME=/rw/home CAPSULE_LANDLOCK=off; \
         {capsule} run --rm -- bash -c 'echo INNER; exec 3<\"$L/marker\"; echo X >> /proc/self/fd/3; \
         {rt} append \"$L/marker\"; {rt} create \"$OUT/rt-new\"; {rt} create \"$UP/rt-new\"'"
    );
    let name = format!("rt-nested-{}", std::process::id());
    let out = run(&mut arena.command(HOST_RO, &name, &script));
    let text = stdout(&out);
    assert!(
        text.contains("INNER") && text.contains("RAN append") && text.contains("RAN create"),
        "the nested capsule did not run its attacks\n{}",
        describe(&out)
    );
    assert_eq!(judge(&arena, HOST_RO, &name, "", &out), Verdict::Contained);
}

/// `capsule exec` into a running `--read-only` root capsule gets the same domain.
#[test]
fn capsule_exec_joins_the_capsules_domain() {
    let arena = Arena::new();
    let name = format!("rt-exec-{}", std::process::id());
    let ready = arena.dir.join("rw/ready");
    let mut main = arena.command(ROOT_RO, &name, "touch /rw/ready; sleep 20");
    let mut main = spawn(&mut main);
    let start = std::time::Instant::now();
    while !ready.exists() {
        assert!(!main.has_exited(), "the capsule ended early");
        assert!(start.elapsed().as_secs() < 10, "the capsule did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let d = arena.dir.str();
    let script = format!(
        "echo RAN; exec 3</etc/rt/marker; echo X >> /proc/self/fd/3; \
         /rt/redteam append {d}/root/etc/rt/marker; /rt/redteam create {d}/outside/rt-new; \
         /rt/redteam read {d}/outside/secret"
    );
    let out = run(&mut arena
        .home
        .command(&["exec", &name, "--", "bash", "-c", &script]));
    let _ = run(&mut arena.home.command(&["stop", &name]));
    let _ = main.wait();
    assert!(stdout(&out).contains("RAN append"), "{}", describe(&out));
    assert_eq!(judge(&arena, ROOT_RO, &name, "", &out), Verdict::Contained);
}

/// The inodes of the mappings of `/proc/self/maps` text whose file name is `name`.
fn mapped_inodes(maps: &str, name: &str) -> Vec<u64> {
    maps.lines()
        .filter(|l| l.rsplit('/').next() == Some(name))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse().ok())
        .collect()
}

/// The capsule's shared state is writable memory of each of its processes: a
/// program that finds it in its own mappings can write a loader entry with a valid
/// seqlock at the current generation, naming the host's loader and library
/// directories. The next exec of a root program must not run the host's loader.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_forged_loader_entry_in_the_shared_state_runs_no_host_loader() {
    use std::os::unix::fs::MetadataExt;
    const INTERP: &str = "/lib64/ld-linux-x86-64.so.2";
    const LDSO: &str = "ld-linux-x86-64.so.2";
    let arena = Arena::new();
    let host_ldso = fs::canonicalize(INTERP).expect("the host's loader");
    let host_ino = fs::metadata(&host_ldso).expect("host loader").ino();
    let root_copy = arena.dir.join("root").join(INTERP.trim_start_matches('/'));
    let root_ino = fs::metadata(&root_copy).expect("the root's loader").ino();
    assert_ne!(host_ino, root_ino, "the root's loader is a copy");
    let host_dirs = "/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu";
    let name = format!("rt-loader-{}", std::process::id());
    // A root program first, so that the shim has recorded an entry of its own.
    let script = format!(
        "/bin/true; \"$RT\" forge-loader {INTERP} {} {host_dirs} /bin/cat /proc/self/maps",
        host_ldso.display()
    );
    let out = run(&mut arena.command(ROOT, &name, &script));
    let text = stdout(&out);
    assert!(
        text.contains("RAN forge-loader") && text.contains("FORGED"),
        "the attacker did not write its entry: {}",
        describe(&out)
    );
    let mapped = mapped_inodes(&text, LDSO);
    assert!(
        !mapped.contains(&host_ino),
        "the root program ran with the host's loader {}:\n{text}",
        host_ldso.display()
    );
    assert!(
        mapped.contains(&root_ino),
        "the root program did not run with the root's loader:\n{text}"
    );
    assert_eq!(arena.changes(), None, "lower layer, volumes, outside");
}
