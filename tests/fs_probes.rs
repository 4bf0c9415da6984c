//! The fs probes of `c-tests/` (fs_cow, fs_listing, fs_paths, fs_errno, fs_stat) in a
//! capsule on a test root, under plain `LD_PRELOAD` (`CAPSULE_ROOT` + `CAPSULE_UPPER`)
//! and under `capsule run --root`, with what they must leave on disk: the change in the
//! upper layer (whiteouts for deletions, opaque markers for re-created directories, no
//! leftover temporary files), the lower layer byte-for-byte unchanged. Each probe also
//! runs natively on a plain copy of the data tree, which shows its expectations are
//! the kernel's. A failing test reports the probe's output, the upper-layer checks and
//! the lower-layer changes together.

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::fs;
use std::path::Path;

use common::*;
use fs_support::*;

/// Runs a probe natively on a fresh plain data tree (`--native DIR`).
fn native(probe: &str, args: &[&str]) -> String {
    let dir = TempDir::new("native");
    let xattrs = populate_data(dir.path());
    let mut full = vec!["--native", dir.str()];
    full.extend_from_slice(args);
    if probe == "fs_cow" && xattrs {
        full.push("--xattr");
    }
    let out = run_native(compile_c(probe), &full);
    probe_ok(&out, &format!("{probe} natively on a plain copy"))
}

#[test]
fn probes_hold_natively_on_a_plain_copy() {
    native("fs_cow", &[]);
    native("fs_listing", &[]);
    native("fs_errno", &["rw"]);
    native("fs_errno", &["long"]);
    let listing = compile_c("fs_listing");
    native("fs_listing", &["--cache", listing.to_str().unwrap()]);
    native("fs_stat", &[]);
    let exe = compile_c("fs_paths");
    native("fs_paths", &[exe.to_str().unwrap(), "-"]);
    // --verify in a second process sees what the first one left.
    let dir = TempDir::new("native-list");
    populate_data(dir.path());
    let probe = compile_c("fs_listing");
    probe_ok(
        &run_native(&probe, &["--native", dir.str()]),
        "fs_listing natively",
    );
    probe_ok(
        &run_native(&probe, &["--native", dir.str(), "--verify"]),
        "fs_listing --verify natively",
    );
    probe_ok(
        &run_native(&probe, &["--native", dir.str(), "--walk"]),
        "fs_listing --walk natively",
    );
}

/// Every probe refuses to touch anything outside a capsule on the test root.
#[test]
fn probes_refuse_to_run_outside_the_test_root() {
    for probe in ["fs_cow", "fs_listing", "fs_stat"] {
        let out = run_native(compile_c(probe), &["--capsule"]);
        assert_eq!(out.status.code(), Some(4), "{probe}\n{}", describe(&out));
    }
    let out = run_native(compile_c("fs_errno"), &["--capsule", "rw"]);
    assert_eq!(out.status.code(), Some(4), "fs_errno\n{}", describe(&out));
}

fn cow(via: Via) {
    let root = TestRoot::new();
    let c = Capsule::new(via, &root);
    let mut k = Checks::new(c.label("fs_cow"));
    let args: &[&str] = if root.xattrs {
        &["--capsule", "--xattr"]
    } else {
        &["--capsule"]
    };
    k.probe(&c.run("/probes/fs_cow", args), "fs_cow");
    k.upper_file(&c, "/cow/mode.txt", "MODE\n");
    k.upper_meta(&c, "/cow/mode.txt", 0o754, None);
    k.upper_file(&c, "/cow/times.txt", "times\n");
    k.upper_meta(&c, "/cow/times.txt", 0o600, Some(DATA_MTIME));
    k.upper_meta(&c, "/cow/fchmod.txt", 0o600, Some(DATA_MTIME));
    k.upper_meta(&c, "/cow/futimens.txt", 0o644, Some(1_200_000_000));
    k.upper_file(&c, "/cow/append.txt", "line1\nline2\n");
    k.upper_file(&c, "/cow/gone.txt", "reborn\n");
    k.upper_has(
        &c,
        "/cow/.wh.gone2.txt",
        "whiteout of the deleted gone2.txt",
    );
    k.upper_has(&c, "/cow/.wh.old.txt", "whiteout of the renamed old.txt");
    k.upper_has(
        &c,
        "/cow/.wh.renamesrc.txt",
        "whiteout of the renamed renamesrc.txt",
    );
    k.upper_has(&c, "/cow/.wh.sym", "whiteout of the renamed symlink");
    k.upper_has(
        &c,
        "/cow/emptydir/.wh..wh..opq",
        "opaque marker of the re-created emptydir",
    );
    k.upper_has(
        &c,
        "/cow/fulldir/.wh..wh..opq",
        "opaque marker of the re-created fulldir",
    );
    k.upper_file(&c, "/cow/fulldir/new", "n\n");
    k.upper_file(&c, "/cow/target.txt", "renamesrc\n");
    k.upper_file(&c, "/cow/moved/new.txt", "old\n");
    let sym = c.up("/cow/sym2");
    let target = fs::symlink_metadata(&sym)
        .ok()
        .filter(|m| m.file_type().is_symlink())
        .and_then(|_| fs::read_link(&sym).ok());
    k.check(target.as_deref() == Some(Path::new("mode.txt")), || {
        format!(
            "upper layer: {} should be a symlink to mode.txt (copied up as a symlink), is {target:?}",
            sym.display()
        )
    });
    let big = fs::read(c.up("/cow/big.bin")).ok();
    k.check(big.as_deref() == Some(&expected_big()[..]), || {
        "upper layer: cow/big.bin is not the lower file with byte 500000 changed".to_string()
    });
    k.upper_lacks(&c, "/cow/readonly.txt", "it was only read");
    k.upper_lacks(
        &c,
        "/cow/nr-dst.txt",
        "a refused rename onto it changed nothing",
    );
    if root.xattrs {
        let got = xattrs_of(&c.up("/cow/xattr.txt"));
        let want = vec![
            ("user.capsule".to_string(), b"yes".to_vec()),
            ("user.origin".to_string(), b"lower".to_vec()),
        ];
        k.check(got == want, || {
            format!("upper layer: cow/xattr.txt has xattrs {got:?}, expected {want:?}")
        });
    }
    k.upper_file(&c, "/cow/sub/deep/new.txt", "deep\n");
    k.upper_only(
        &c,
        "/cow",
        &[
            "mode.txt",
            "times.txt",
            "fchmod.txt",
            "futimens.txt",
            "append.txt",
            "trunc.txt",
            "shrink.txt",
            "ftrunc.txt",
            "rw.txt",
            "gone.txt",
            "emptydir",
            "fulldir",
            "target.txt",
            "moved",
            "linksrc.txt",
            "linkdst.txt",
            "sym2",
            "newlink",
            "utime.txt",
            "sub",
            "big.bin",
            "fopen.txt",
            "fopen-new.txt",
            "lowerdir",
            "lowerdir2",
            "fifo",
            "fifo2",
            "chown.txt",
            "chownlink",
            "fchown.txt",
            "nr-new.txt",
            "xattr.txt",
            "xattr2.txt",
            "after-close.txt",
        ],
    );
    k.upper_only(&c, "/tmp", &[]);
    k.root_unchanged(&root);
    k.finish();
}

fn expected_big() -> Vec<u8> {
    let mut big = big_bin();
    big[500_000] = b'X';
    big
}

#[test]
fn cow_preload() {
    cow(Via::Preload);
}

#[test]
fn cow_loader() {
    cow(Via::Loader);
}

fn listing(via: Via) {
    let root = TestRoot::new();
    let c = Capsule::new(via, &root);
    let mut k = Checks::new(c.label("fs_listing"));
    k.probe(&c.run("/probes/fs_listing", &["--capsule"]), "fs_listing");
    // A later process sees the same merged listings (whiteouts persist).
    k.probe(
        &c.run("/probes/fs_listing", &["--capsule", "--verify"]),
        "fs_listing --verify, second process",
    );
    k.upper_has(&c, "/list/.wh.b", "whiteout of list/b");
    k.upper_has(&c, "/list/.wh.dir2", "whiteout of list/dir2");
    for i in 10..15 {
        k.upper_has(&c, &format!("/many/.wh.f{i:02}"), "whiteout");
    }
    k.upper_file(&c, "/list/a", "A\n");
    k.upper_file(&c, "/list/c", "c\nmore\n");
    k.upper_only(
        &c,
        "/list",
        &["a", "c", "dir1", "new1", "new3", "newdir", "link2"],
    );
    k.root_unchanged(&root);
    k.finish();
}

/// glob() and nftw() (glibc reads directories through internal entry points for them)
/// over the merged, changed tree.
fn walk(via: Via) {
    let root = TestRoot::new();
    let c = Capsule::new(via, &root);
    let mut k = Checks::new(c.label("fs_listing --walk"));
    k.probe(&c.run("/probes/fs_listing", &["--capsule"]), "fs_listing");
    k.probe(
        &c.run("/probes/fs_listing", &["--capsule", "--walk"]),
        "fs_listing --walk",
    );
    k.root_unchanged(&root);
    k.finish();
}

#[test]
fn glob_and_nftw_preload() {
    walk(Via::Preload);
}

#[test]
fn glob_and_nftw_loader() {
    walk(Via::Loader);
}

/// What one process has seen (and the shim may remember) is not stale after another
/// process of the capsule, or a forked child, changes the directory.
fn cache(via: Via) {
    let root = TestRoot::new();
    let c = Capsule::new(via, &root);
    let mut k = Checks::new(c.label("fs_listing --cache"));
    k.probe(
        &c.run(
            "/probes/fs_listing",
            &["--capsule", "--cache", "/probes/fs_listing"],
        ),
        "fs_listing --cache",
    );
    k.upper_has(&c, "/list2/.wh.x", "whiteout of list2/x");
    k.upper_has(&c, "/list2/.wh.opq", "whiteout of the removed list2/opq");
    k.upper_file(&c, "/list2/forked", "forked\n");
    k.root_unchanged(&root);
    k.finish();
}

#[test]
fn changes_by_other_processes_preload() {
    cache(Via::Preload);
}

#[test]
fn changes_by_other_processes_loader() {
    cache(Via::Loader);
}

/// A capsule path just under PATH_MAX works although its host path is longer.
fn long_paths(via: Via) {
    let root = TestRoot::new();
    let c = Capsule::new(via, &root);
    let mut k = Checks::new(c.label("fs_errno long"));
    k.probe(
        &c.run("/probes/fs_errno", &["--capsule", "long"]),
        "fs_errno long",
    );
    k.root_unchanged(&root);
    k.finish();
}

#[test]
fn long_paths_preload() {
    long_paths(Via::Preload);
}

#[test]
fn long_paths_loader() {
    long_paths(Via::Loader);
}

#[test]
fn listing_preload() {
    listing(Via::Preload);
}

#[test]
fn listing_loader() {
    listing(Via::Loader);
}

/// An upper layer made by hand (as a previous session or an OCI layer would leave it):
/// the replica reads whiteouts and opaque markers it did not write itself.
fn premade(via: Via) {
    let root = TestRoot::new();
    let c = Capsule::new(via, &root);
    if via == Via::Loader {
        // Create the capsule (and its upper directory) first.
        success(&c.run("/bin/true", &[]), &c.label("capsule run true"));
    }
    let up = c.up("/list2");
    fs::create_dir_all(up.join("opq")).unwrap();
    fs::write(up.join(".wh.x"), "").unwrap();
    fs::write(up.join("extra"), "extra\n").unwrap();
    fs::write(up.join("opq/.wh..wh..opq"), "").unwrap();
    fs::write(up.join("opq/only"), "only\n").unwrap();
    let mut k = Checks::new(c.label("fs_listing --premade"));
    k.probe(
        &c.run("/probes/fs_listing", &["--capsule", "--premade"]),
        "fs_listing --premade",
    );
    k.root_unchanged(&root);
    k.finish();
}

#[test]
fn premade_upper_preload() {
    premade(Via::Preload);
}

#[test]
fn premade_upper_loader() {
    premade(Via::Loader);
}

fn paths(via: Via) {
    let root = TestRoot::new();
    let mut c = Capsule::new(via, &root);
    c.workdir = "/paths".to_string();
    let upper = c.upper();
    let hidden = [
        root.str(),
        upper.to_str().unwrap(),
        c.home.path().to_str().unwrap(),
    ];
    let mut args = vec!["--capsule", "/probes/fs_paths", "/paths"];
    args.extend(hidden);
    let mut k = Checks::new(c.label("fs_paths"));
    k.probe(&c.run("/probes/fs_paths", &args), "fs_paths");
    k.upper_file(&c, "/paths/rel.txt", "rel\nmore\n");
    let newabs = c.up("/paths/newabs");
    let target = fs::read_link(&newabs).ok();
    k.check(target.as_deref() == Some(Path::new("/secret")), || {
        format!(
            "upper layer: a symlink made in the capsule keeps its target as written: {} -> {target:?}",
            newabs.display()
        )
    });
    k.root_unchanged(&root);
    k.finish();
}

#[test]
fn paths_preload() {
    paths(Via::Preload);
}

#[test]
fn paths_loader() {
    paths(Via::Loader);
}

/// A program started (by plain LD_PRELOAD) in a host directory outside the root never
/// learns that directory's path.
#[test]
fn paths_from_a_cwd_outside_the_root() {
    let root = TestRoot::new();
    let c = Capsule::new(Via::Preload, &root);
    let outside = TempDir::new("outside");
    let upper = c.upper();
    let mut cmd = c.command(
        "/probes/fs_paths",
        &[
            "--capsule",
            "/probes/fs_paths",
            "-",
            root.str(),
            upper.to_str().unwrap(),
            outside.str(),
        ],
    );
    cmd.current_dir(outside.path());
    let mut k = Checks::new("fs_paths started outside the root");
    k.probe(&run(&mut cmd), "fs_paths");
    k.root_unchanged(&root);
    k.finish();
}

fn errno_rw(via: Via) {
    let root = TestRoot::new();
    let c = Capsule::new(via, &root);
    let mut k = Checks::new(c.label("fs_errno rw"));
    k.probe(
        &c.run("/probes/fs_errno", &["--capsule", "rw"]),
        "fs_errno rw",
    );
    k.upper_file(&c, "/errno/new.txt", "n\n");
    k.upper_only(&c, "/errno", &["new.txt", "newdir"]);
    k.root_unchanged(&root);
    k.finish();
}

#[test]
fn errno_preload() {
    errno_rw(Via::Preload);
}

#[test]
fn errno_loader() {
    errno_rw(Via::Loader);
}

fn stat(via: Via) {
    let root = TestRoot::new();
    let c = Capsule::new(via, &root);
    let mut k = Checks::new(c.label("fs_stat"));
    k.probe(&c.run("/probes/fs_stat", &["--capsule"]), "fs_stat");
    k.upper_has(&c, "/stat/.wh.gone.txt", "whiteout of stat/gone.txt");
    k.upper_meta(&c, "/stat/file.txt", 0o604, Some(1_111_111_111));
    k.upper_file(&c, "/stat/new.txt", "12345");
    k.root_unchanged(&root);
    k.finish();
}

#[test]
fn stat_preload() {
    stat(Via::Preload);
}

#[test]
fn stat_loader() {
    stat(Via::Loader);
}

/// With a root and no upper layer, the capsule is read-only: EROFS for every write.
#[test]
fn read_only_without_an_upper_layer() {
    let root = TestRoot::new();
    let env = [("CAPSULE_ROOT", root.str())];
    let out = run_preload(
        &env,
        root.host("/probes/fs_errno"),
        &["--capsule", "ro", "ro-new", "/etc/new-file"],
    );
    let mut k = Checks::new("CAPSULE_ROOT without CAPSULE_UPPER");
    k.probe(&out, "fs_errno ro");
    k.root_unchanged(&root);
    k.finish();
}

/// CAPSULE_READ_ONLY=1 wins over an upper layer: EROFS, and the upper stays empty.
#[test]
fn read_only_setting_with_an_upper_layer() {
    let root = TestRoot::new();
    let mut c = Capsule::new(Via::Preload, &root);
    c.extra.push(("CAPSULE_READ_ONLY".into(), "1".into()));
    let mut k = Checks::new("CAPSULE_READ_ONLY=1 with CAPSULE_UPPER");
    k.probe(
        &c.run("/probes/fs_errno", &["--capsule", "ro"]),
        "fs_errno ro",
    );
    let names = names_in(&c.upper());
    k.check(names.is_empty(), || {
        format!("a read-only capsule wrote to its upper layer: {names:?}")
    });
    k.root_unchanged(&root);
    k.finish();
}

/// `capsule run --read-only`: EROFS everywhere, nothing written to the upper layer.
#[test]
fn read_only_flag_of_the_loader() {
    let root = TestRoot::new();
    let mut c = Capsule::new(Via::Loader, &root);
    c.flags.push("--read-only".into());
    let mut k = Checks::new("capsule run --read-only");
    k.probe(
        &c.run("/probes/fs_errno", &["--capsule", "ro"]),
        "fs_errno ro",
    );
    let upper = c.upper();
    let names = if upper.is_dir() {
        names_in(&upper)
    } else {
        Vec::new()
    };
    k.check(names.is_empty(), || {
        format!("capsule run --read-only wrote to its upper layer: {names:?}")
    });
    k.root_unchanged(&root);
    k.finish();
}
