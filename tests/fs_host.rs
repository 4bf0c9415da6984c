//! Capsules over the host's `/` (no CAPSULE_ROOT, only a private CAPSULE_UPPER): real
//! programs write to `/etc` and `/var/lib` in the capsule — shell redirections, `tar x`
//! then `tar c`, Python's pathlib/os.walk/shutil/sqlite3, `git`, a bash script, `make`
//! with the C compiler — and every change lands in the upper layer while the host stays
//! untouched. The host paths used are unique per run and checked natively afterwards
//! (removed, and the test failed, if a capsule wrote through). Files the tests create
//! natively as a "host lower layer" live in temporary directories.

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use fs_support::*;

/// A capsule over the host's `/` with a fresh upper layer.
struct HostCapsule {
    upper: TempDir,
    env: Vec<(String, String)>,
}

impl HostCapsule {
    fn new() -> HostCapsule {
        let upper = TempDir::new("host-upper");
        let env = vec![("CAPSULE_UPPER".to_string(), upper.str().to_string())];
        HostCapsule { upper, env }
    }

    fn with(mut self, key: &str, value: &str) -> HostCapsule {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The upper layer's copy of host path `path`.
    fn up(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        self.upper
            .path()
            .join(path.strip_prefix("/").expect("absolute path"))
    }

    fn command(&self, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        preload_command(&env, prog, args)
    }

    fn run(&self, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        run(&mut self.command(prog, args))
    }

    #[track_caller]
    fn sh_ok(&self, script: &str) -> String {
        let out = self.run("sh", &["-c", &format!("set -e; export LC_ALL=C; {script}")]);
        success(&out, &format!("sh -c {script:?} over the host /"))
    }
}

#[test]
fn writes_to_etc_and_var_lib_stay_in_the_capsule() {
    let host = HostPaths::new("write");
    let (etc, var) = (host.etc(), host.var());
    let c = HostCapsule::new();
    let out = c.sh_ok(&format!(
        "echo one > {etc}; mkdir -p {var}/d; echo two > {var}/d/f; cat {etc} {var}/d/f; \
         ls {var}"
    ));
    assert_eq!(out, "one\ntwo\nd\n");
    assert_eq!(read_text(&c.up(etc)), "one\n", "upper copy of {etc}");
    assert_eq!(read_text(&c.up(format!("{var}/d/f"))), "two\n");
    host.check();

    // A later process of the same capsule sees them; removing works.
    let out = c.sh_ok(&format!(
        "cat {etc}; rm {etc}; test -e {etc} || echo gone; rm -r {var}; test -e {var} || echo gone"
    ));
    assert_eq!(out, "one\ngone\ngone\n");
    host.check();
}

#[test]
fn host_files_changed_and_deleted_in_the_capsule_stay_on_the_host() {
    // A directory of the host (the lower layer here), made natively.
    let dir = TempDir::new("host-lower");
    fs::write(dir.join("f.txt"), "host\n").unwrap();
    fs::write(dir.join("g.txt"), "g\n").unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/h.txt"), "h\n").unwrap();
    let before = Snapshot::of(dir.path());
    let d = dir.str();
    let c = HostCapsule::new();
    let out = c.sh_ok(&format!(
        "echo capsule >> {d}/f.txt; cat {d}/f.txt; rm {d}/g.txt; rm -r {d}/sub; \
         echo new > {d}/new.txt; chmod 600 {d}/new.txt; ls {d}"
    ));
    assert_eq!(out, "host\ncapsule\nf.txt\nnew.txt\n");
    Snapshot::of(dir.path()).assert_same(&before, "the host directory under the capsule");
    assert_eq!(read_text(&c.up(dir.join("f.txt"))), "host\ncapsule\n");
    assert!(
        exists(&c.up(dir.join(".wh.g.txt"))),
        "whiteout of g.txt in the upper layer"
    );
    assert!(
        exists(&c.up(dir.join(".wh.sub"))),
        "whiteout of sub in the upper layer"
    );
}

#[test]
fn tar_extract_then_create() {
    let host = HostPaths::new("tar");
    let var = host.var();
    // The archive, made natively.
    let src = TempDir::new("tar-src");
    fs::create_dir_all(src.join("tree/sub")).unwrap();
    fs::write(src.join("tree/a.txt"), "alpha\n").unwrap();
    fs::write(src.join("tree/sub/b.txt"), "beta\n").unwrap();
    fs::set_permissions(src.join("tree/a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("tree/link")).unwrap();
    fs::File::open(src.join("tree/a.txt"))
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(1_234_567_890))
        .unwrap();
    let archive = src.join("in.tar");
    success(
        &run_native(
            "tar",
            &["cf", archive.to_str().unwrap(), "-C", src.str(), "tree"],
        ),
        "native tar c",
    );

    let c = HostCapsule::new();
    let out = c.sh_ok(&format!(
        "mkdir -p {var} && cd {var} && tar xf {} && tar cf out.tar tree && tar tf out.tar | sort \
         && cat tree/a.txt tree/link && stat -c '%a %Y' tree/a.txt",
        archive.display()
    ));
    assert_eq!(
        out,
        "tree/\ntree/a.txt\ntree/link\ntree/sub/\ntree/sub/b.txt\nalpha\nalpha\n640 1234567890\n"
    );
    // The archive made in the capsule is in the upper layer, and holds the tree.
    let made = c.up(format!("{var}/out.tar"));
    assert!(
        made.is_file(),
        "tar c output {} in the upper layer",
        made.display()
    );
    let check = TempDir::new("tar-check");
    success(
        &run_native("tar", &["xf", made.to_str().unwrap(), "-C", check.str()]),
        "native tar x of the capsule's archive",
    );
    assert_eq!(read_text(&check.join("tree/sub/b.txt")), "beta\n");
    assert_eq!(
        fs::read_link(check.join("tree/link")).unwrap(),
        Path::new("a.txt")
    );
    host.check();
}

#[test]
fn python_pathlib_walk_and_sqlite() {
    let host = HostPaths::new("py");
    let var = host.var();
    // A host directory with content, changed through the capsule.
    let lower = TempDir::new("py-lower");
    fs::create_dir(lower.join("sub")).unwrap();
    for f in ["x", "y", "sub/z"] {
        fs::write(lower.join(f), f).unwrap();
    }
    let before = Snapshot::of(lower.path());
    let script = format!(
        r#"
import os, pathlib, shutil, sqlite3
base = pathlib.Path("{var}")
(base / "py" / "sub").mkdir(parents=True)
(base / "py" / "a.txt").write_text("alpha\n")
(base / "py" / "sub" / "b.txt").write_text("beta\n")
shutil.copytree(base / "py", base / "py2")
os.rename(base / "py2" / "a.txt", base / "py2" / "renamed.txt")
os.remove(base / "py2" / "sub" / "b.txt")
for root, dirs, files in sorted(os.walk(base)):
    print(os.path.relpath(root, base), sorted(dirs), sorted(files))
print(sorted(e.name for e in os.scandir(base / "py")))
print((base / "py" / "a.txt").read_text(), end="")
print(os.path.realpath(base / "py" / "sub" / ".."))
db = sqlite3.connect(base / "db.sqlite")
db.execute("create table t (k text primary key, v integer)")
db.executemany("insert into t values (?, ?)", [("a", 1), ("b", 2), ("c", 3)])
db.commit()
db.close()
db = sqlite3.connect(base / "db.sqlite")
print(db.execute("select sum(v), count(*) from t").fetchone())
db.close()
wal = sqlite3.connect(base / "wal.sqlite")
print(wal.execute("pragma journal_mode=wal").fetchone()[0])
wal.execute("create table w (n integer)")
wal.executemany("insert into w values (?)", [(i,) for i in range(100)])
wal.commit()
print(wal.execute("select count(*), sum(n) from w").fetchone())
wal.close()
low = pathlib.Path("{low}")
(low / "y").unlink()
(low / "w").write_text("w")
(low / "sub" / "q").write_text("q")
for root, dirs, files in sorted(os.walk(low)):
    print(os.path.relpath(root, low), sorted(dirs), sorted(files))
"#,
        low = lower.str()
    );
    let c = HostCapsule::new();
    let out = c.run(python3(), &["-c", &script]);
    let text = success(&out, "python over the host /");
    let want = format!(
        ". ['py', 'py2'] []\n\
         py ['sub'] ['a.txt']\n\
         py/sub [] ['b.txt']\n\
         py2 ['sub'] ['renamed.txt']\n\
         py2/sub [] []\n\
         ['a.txt', 'sub']\n\
         alpha\n\
         {var}/py\n\
         (6, 3)\n\
         wal\n\
         (100, 4950)\n\
         . ['sub'] ['w', 'x']\n\
         sub [] ['q', 'z']\n"
    );
    assert_eq!(text, want, "python output");
    Snapshot::of(lower.path()).assert_same(&before, "the host directory under python");
    // The database is a real one in the upper layer.
    let db = c.up(format!("{var}/db.sqlite"));
    let out = run_native(
        python3(),
        &[
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select group_concat(k) from t').fetchone()[0])",
            db.to_str().unwrap(),
        ],
    );
    assert_eq!(success(&out, "native sqlite3 on the upper copy"), "a,b,c\n");
    host.check();
}

#[test]
fn git_init_add_commit() {
    let host = HostPaths::new("git");
    let var = host.var();
    let home = TempDir::new("git-home");
    let c = HostCapsule::new()
        .with("HOME", home.str())
        .with("GIT_CONFIG_NOSYSTEM", "1")
        .with("GIT_AUTHOR_NAME", "Capsule Test")
        .with("GIT_AUTHOR_EMAIL", "test@capsule.invalid")
        .with("GIT_COMMITTER_NAME", "Capsule Test")
        .with("GIT_COMMITTER_EMAIL", "test@capsule.invalid");
    let out = c.sh_ok(&format!(
        "mkdir -p {var}/repo && cd {var}/repo && git init -q . && echo hello > README && \
         mkdir src && echo 'int main(void) {{ return 0; }}' > src/main.c && \
         git add README src && git commit -q -m first && echo more >> README && \
         git commit -q -am second && git mv README README.md && git commit -q -m rename && \
         git gc -q && git log --format=%s && git status --porcelain | wc -l && git ls-files && \
         git cat-file -p HEAD:README.md && git fsck --no-progress && echo fsck-ok"
    ));
    assert_eq!(
        out,
        "rename\nsecond\nfirst\n0\nREADME.md\nsrc/main.c\nhello\nmore\nfsck-ok\n"
    );
    // The repository is complete in the upper layer: native git reads it.
    let repo = c.up(format!("{var}/repo"));
    let mut cmd = clean_command("git");
    cmd.args(["-C", repo.to_str().unwrap(), "log", "--format=%s"])
        .env("HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*");
    assert_eq!(
        success(&run(&mut cmd), "native git log on the upper copy"),
        "rename\nsecond\nfirst\n"
    );
    host.check();
}

#[test]
fn bash_script() {
    let host = HostPaths::new("bash");
    let var = host.var();
    let dir = TempDir::new("bash-script");
    let script = dir.join("script.sh");
    fs::write(
        &script,
        format!(
            r#"#!/bin/bash
set -euo pipefail
d={var}/sh
mkdir -p "$d"
cd "$d"
pwd
printf '%s\n' one two three > list.txt
while read -r line; do echo "got $line"; done < list.txt
cat > heredoc.txt <<EOF
line a
EOF
echo appended >> heredoc.txt
[ -w heredoc.txt ] && echo writable
[ -d . ] && echo isdir
[ -e missing ] || echo no-missing
touch b.txt c.txt
echo *.txt
tmp=$(mktemp -p "$d")
echo tmpdata > "$tmp"
[ -f "$tmp" ] && echo tmpfile
rm "$tmp"
content=$(< heredoc.txt)
echo "$content"
cd ..
rm -r sh
[ -e sh ] || echo removed
echo "in etc" > {etc}
cat {etc}
"#,
            etc = host.etc(),
        ),
    )
    .unwrap();
    let c = HostCapsule::new();
    let out = c.run("bash", &[script.to_str().unwrap()]);
    assert_eq!(
        success(&out, "bash script over the host /"),
        format!(
            "{var}/sh\ngot one\ngot two\ngot three\nwritable\nisdir\nno-missing\n\
             b.txt c.txt heredoc.txt list.txt\ntmpfile\nline a\nappended\nremoved\nin etc\n"
        )
    );
    assert_eq!(read_text(&c.up(host.etc())), "in etc\n");
    host.check();
}

#[test]
fn make_builds_a_c_program() {
    let host = HostPaths::new("make");
    let var = host.var();
    let src = TempDir::new("make-src");
    fs::write(
        src.join("Makefile"),
        "hello: main.o util.o\n\tcc -o hello main.o util.o\n\n\
         %.o: %.c util.h\n\tcc -O1 -c -o $@ $<\n",
    )
    .unwrap();
    fs::write(src.join("util.h"), "int answer(void);\n").unwrap();
    fs::write(
        src.join("util.c"),
        "#include \"util.h\"\nint answer(void) { return 42; }\n",
    )
    .unwrap();
    fs::write(
        src.join("main.c"),
        "#include <stdio.h>\n#include \"util.h\"\n\
         int main(void) { printf(\"hello from make %d\\n\", answer()); return 0; }\n",
    )
    .unwrap();
    let c = HostCapsule::new();
    let out = c.sh_ok(&format!(
        "mkdir -p {var}/build && cp {src}/* {var}/build/ && cd {var}/build && make -s && ./hello \
         && make -q hello && echo up-to-date && sleep 1 && touch util.c && \
         {{ make -q hello || echo stale; }} && make -s && {var}/build/hello && ls",
        src = src.str()
    ));
    assert_eq!(
        out,
        "hello from make 42\nup-to-date\nstale\nhello from make 42\n\
         Makefile\nhello\nmain.c\nmain.o\nutil.c\nutil.h\nutil.o\n"
    );
    // The program built in the capsule runs natively from the upper layer.
    let built = c.up(format!("{var}/build/hello"));
    assert_eq!(
        success(
            &run_native(&built, &[]),
            "native run of the capsule's build"
        ),
        "hello from make 42\n"
    );
    host.check();
}

/// CAPSULE_READ_ONLY=1 over the host `/`: nothing can be created, reads work.
#[test]
fn read_only_over_the_host() {
    let host = HostPaths::new("ro");
    let probe = compile_c("fs_errno");
    let out = run_preload(
        &[("CAPSULE_READ_ONLY", "1")],
        &probe,
        &["--capsule", "ro-new", host.etc(), "ro-new", host.var()],
    );
    probe_ok(
        &out,
        "fs_errno ro-new with CAPSULE_READ_ONLY=1 over the host",
    );
    let out = run_preload(&[("CAPSULE_READ_ONLY", "1")], "cat", &["/etc/hostname"]);
    assert_eq!(
        success(&out, "cat /etc/hostname read-only"),
        fs::read_to_string("/etc/hostname").unwrap()
    );
    host.check();
}

/// The same through `capsule run` without `--root`: the upper layer is
/// `$CAPSULE_HOME/capsules/NAME/upper`, continued by a later run with the same name.
#[test]
fn loader_over_the_host() {
    let host = HostPaths::new("loader");
    let (etc, var) = (host.etc(), host.var());
    let home = CapsuleHome::new();
    let script = format!("echo one > {etc}; mkdir -p {var}/d; echo two > {var}/d/f; cat {etc}");
    let out = home.run(&["run", "--name", "h", "--", "sh", "-c", &script]);
    assert_eq!(success(&out, "capsule run over the host /"), "one\n");
    let upper = home.path().join("capsules/h/upper");
    let up = |p: &str| upper.join(p.trim_start_matches('/'));
    assert_eq!(read_text(&up(etc)), "one\n");
    assert_eq!(read_text(&up(&format!("{var}/d/f"))), "two\n");
    host.check();
    let script = format!("cat {etc} {var}/d/f");
    let out = home.run(&["run", "--name", "h", "--", "sh", "-c", &script]);
    assert_eq!(success(&out, "second run of h"), "one\ntwo\n");
    let out = home.run(&[
        "run",
        "--name",
        "other",
        "--rm",
        "--",
        "sh",
        "-c",
        &format!("test -e {etc} || echo absent"),
    ]);
    assert_eq!(success(&out, "another capsule"), "absent\n");
    host.check();
}

/// A `#!` script run through a symbolic link sees the name it was run by in `$0`, as
/// the kernel gives it (Debian's `psql` is a link to a script that dispatches on it),
/// also when the script exists only in the capsule's private layer.
#[test]
fn a_script_run_through_a_link_sees_the_link_name() {
    let host = HostPaths::new("shebang");
    let var = host.var();
    let capsule = HostCapsule::new();
    let out = capsule.sh_ok(&format!(
        "mkdir -p {var}/bin && cd {var}/bin && printf '#!/bin/sh\\necho \"$0 $1\"\\n' > real.sh \
         && chmod +x real.sh && ln -s real.sh tool && ./tool one && {var}/bin/tool two \
         && PATH={var}/bin:$PATH tool three"
    ));
    assert_eq!(
        out,
        format!("./tool one\n{var}/bin/tool two\n{var}/bin/tool three\n")
    );
    assert!(capsule.up(format!("{var}/bin/real.sh")).exists());
}

/// Creating and removing files in a directory that both layers have (the quick path
/// that asks the upper layer directly): a removed lower file stays removed through a
/// whiteout, a file made and removed in the capsule leaves none, a lower name removed
/// then made again comes back with the new content, appending to an upper file keeps
/// it, and a link in the upper layer is still followed inside the capsule.
#[test]
fn create_and_remove_in_a_merged_directory() {
    let lower = TempDir::new("merged-lower");
    fs::write(lower.join("f"), "lower\n").unwrap();
    fs::write(lower.join("other"), "lower\n").unwrap();
    let dir = lower.str();
    // A state directory turns the directory cache (and so the quick path) on.
    let state = TempDir::new("merged-state");
    let capsule = HostCapsule::new().with("CAPSULE_STATE_DIR", state.str());
    let out = capsule.sh_ok(&format!(
        "cd {dir} && echo x > other && cat f && echo x > f && cat f && rm f && \
         {{ cat f 2>/dev/null || echo gone; }} && echo y > g && rm g && echo z > f && cat f && \
         rm f && echo a >> g2 && echo b >> g2 && cat g2 && ln -s /etc/hostname link && \
         echo hi > link && cat /etc/hostname && ls"
    ));
    assert_eq!(out, "lower\nx\ngone\nz\na\nb\nhi\ng2\nlink\nother\n");
    let up = capsule.up(lower.path());
    assert!(up.join(".wh.f").exists(), "the lower f is whited out");
    assert!(!up.join(".wh.g").exists(), "g never was in the lower layer");
    assert_eq!(fs::read_to_string(up.join("g2")).unwrap(), "a\nb\n");
    assert_eq!(fs::read_to_string(lower.join("f")).unwrap(), "lower\n");
    assert_eq!(fs::read_to_string(lower.join("other")).unwrap(), "lower\n");
    assert_ne!(fs::read_to_string("/etc/hostname").unwrap(), "hi\n");
    assert_eq!(
        fs::read_to_string(capsule.up("/etc/hostname")).unwrap(),
        "hi\n"
    );
}

#[test]
fn workdir_inside_a_volume_over_the_host_root() {
    let home = CapsuleHome::new();
    let vol = TempDir::new("workdir-vol");
    fs::create_dir(vol.join("sub")).unwrap();
    fs::write(vol.join("sub/f"), "in the volume\n").unwrap();
    // /capsule-test-vol exists only in the capsule, as the volume's path.
    let volume = format!("{}:/capsule-test-vol", vol.str());
    let out = home.run(&[
        "run",
        "--rm",
        "-v",
        &volume,
        "-w",
        "/capsule-test-vol/sub",
        "--",
        "sh",
        "-c",
        "pwd; /bin/pwd; cat f; echo new > g",
    ]);
    assert_eq!(
        success(&out, "-w in a volume"),
        "/capsule-test-vol/sub\n/capsule-test-vol/sub\nin the volume\n"
    );
    assert_eq!(fs::read_to_string(vol.join("sub/g")).unwrap(), "new\n");
    assert!(!Path::new("/capsule-test-vol").exists());
    let out = home.run(&[
        "run",
        "--rm",
        "-v",
        &volume,
        "-w",
        "/capsule-test-vol/nope",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert_eq!(
        stderr(&out),
        "capsule: -w /capsule-test-vol/nope: no such directory\n"
    );
}
