//! glibc's `fts_*` in a capsule: `c-tests/fs_fts.c` walks a directory present in
//! both layers (with deletions, new files, a new directory and a link cycle) with
//! every option that changes what a walk returns, natively on a copy of the test tree
//! (glibc's own answers) and in capsules on a test root (the shim's), under plain
//! `LD_PRELOAD` and `capsule run --root`; `FTS_XDEV` against a bind volume.
//!
//! No program on the test machines calls glibc's fts (coreutils, findutils and tar
//! carry gnulib's own copy, which goes through the hooked opendir/fstatat), so the
//! probe is the program that does.

mod common;
#[path = "fs_support.rs"]
mod fs_support;

use std::fs;

use common::*;
use fs_support::*;

#[test]
fn fts_walks_natively_as_the_probe_expects() {
    let dir = TempDir::new("fts-native");
    populate_data(dir.path());
    let out = run_native(compile_c("fs_fts"), &[dir.str()]);
    probe_ok(&out, "fs_fts natively");
}

#[test]
fn fts_walks_the_merged_tree_in_a_capsule() {
    let root = TestRoot::new();
    for via in [Via::Preload, Via::Loader] {
        let c = Capsule::new(via, &root);
        let out = c.run("/probes/fs_fts", &["/"]);
        root.assert_probe_ok(&out, &c.label("fs_fts"));
        assert!(
            c.up("/list/newdir/inner2").is_file(),
            "{}",
            c.label("newdir")
        );
    }
    root.assert_unchanged();
}

#[test]
fn fts_xdev_stops_at_a_volume() {
    let root = TestRoot::new();
    let volume = TempDir::new("fts-volume");
    fs::write(volume.join("inside"), "inside\n").unwrap();
    for via in [Via::Preload, Via::Loader] {
        let mut c = Capsule::new(via, &root);
        let spec = format!("{}:/list/vol", volume.str());
        match via {
            Via::Preload => c.extra.push(("CAPSULE_VOLUMES".into(), spec)),
            Via::Loader => c.flags.extend(["-v".to_string(), spec]),
        }
        let out = c.run("/probes/fs_fts", &["/", "--volume", "vol"]);
        root.assert_probe_ok(&out, &c.label("fs_fts --volume"));
    }
    root.assert_unchanged();
}
