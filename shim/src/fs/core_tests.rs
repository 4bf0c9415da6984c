//! Unit tests of the path core (resolution, layers, volumes, copy-up, whiteouts,
//! opaque directories, merged listings, `/proc` links and the mapping of host paths
//! back to capsule paths) on temporary directories: the containment
//! boundary tested where it is written, not only end to end through a program.
//!
//! Each test builds its own lower layer, upper layer and volume under a fresh
//! temporary directory and a `Layers` over them, as the runtime would from
//! `CAPSULE_ROOT`/`CAPSULE_UPPER`/`CAPSULE_VOLUMES`. Unit-test builds leave the
//! exported hooks out, so the real calls here are the kernel's.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf as StdPath};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::dirs;
use super::layers::{Found, Layers, Place, Volume, OPAQUE_MARKER};
use super::ops::{self, Skip};

/// A scratch capsule: `lower/`, `upper/`, `vol/` and `outside/` under one directory
/// removed at the end.
struct Scratch {
    top: StdPath,
}

impl Scratch {
    fn new() -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let top = std::env::temp_dir().join(format!(
            "capsule-core-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&top);
        for dir in ["lower/etc", "lower/data/sub", "upper", "vol", "outside"] {
            fs::create_dir_all(top.join(dir)).unwrap();
        }
        fs::write(top.join("lower/etc/passwd"), "capsule's passwd\n").unwrap();
        fs::write(top.join("lower/data/a"), "lower a\n").unwrap();
        fs::write(top.join("lower/data/sub/b"), "lower b\n").unwrap();
        fs::write(top.join("outside/secret"), "outside\n").unwrap();
        Scratch { top }
    }

    fn path(&self, rel: &str) -> StdPath {
        self.top.join(rel)
    }

    fn bytes(&self, rel: &str) -> Vec<u8> {
        self.path(rel).into_os_string().into_encoded_bytes()
    }

    fn layers(&self, read_only: bool) -> Layers {
        Layers {
            root: Some(self.bytes("lower")),
            upper: Some(self.bytes("upper")),
            volumes: vec![Volume {
                path: b"/vol".to_vec(),
                host: self.bytes("vol"),
                read_only: false,
            }],
            read_only,
            members: Vec::new(),
        }
    }

    /// Every file under `rel` with its content, mode and link target, sorted: a tree
    /// compared before and after to show a layer was not touched.
    fn snapshot(&self, rel: &str) -> Vec<(String, u32, String)> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, u32, String)>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let name = path.strip_prefix(base).unwrap().display().to_string();
                let what = if meta.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    walk(&path, base, out);
                    "dir".to_string()
                } else {
                    String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned()
                };
                out.push((name, meta.mode(), what));
            }
        }
        let mut out = Vec::new();
        walk(&self.path(rel), &self.path(rel), &mut out);
        out.sort();
        out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.top);
    }
}

fn c(path: &str) -> CString {
    CString::new(path).unwrap()
}

fn host_of(layers: &Layers, path: &str, follow: bool) -> String {
    let node = layers.resolve(path.as_bytes(), follow).unwrap();
    String::from_utf8(node.host.as_bytes().to_vec()).unwrap()
}

/// The names of the merged listing of directory `path`, sorted, without `.` and `..`.
fn merged_names(layers: &Layers, path: &[u8]) -> Vec<String> {
    let node = layers.resolve(path, true).unwrap();
    let entries = dirs::merged(layers, &node)
        .unwrap()
        .expect("a merged directory");
    let mut names: Vec<String> = entries
        .iter()
        .map(|e| {
            // SAFETY: d_name of a dirent64 read from the kernel is NUL-terminated.
            let name = unsafe { std::ffi::CStr::from_ptr(e.d_name.as_ptr()) };
            name.to_string_lossy().into_owned()
        })
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}

fn errno_of<T>(result: ops::Op<T>) -> i32 {
    match result {
        Err(Skip::Errno(e)) => e,
        Err(Skip::Pass) => panic!("passed through"),
        Ok(_) => panic!("succeeded"),
    }
}

#[test]
fn a_lower_name_is_found_in_the_lower_layer_and_an_upper_one_shadows_it() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let node = layers.resolve(b"/data/a", false).unwrap();
    assert_eq!(node.found, Found::Lower);
    assert_eq!(node.place, Place::Overlay);
    assert_eq!(node.host.as_bytes(), &s.bytes("lower/data/a")[..]);

    fs::create_dir_all(s.path("upper/data")).unwrap();
    fs::write(s.path("upper/data/a"), "upper a\n").unwrap();
    let node = layers.resolve(b"/data/a", false).unwrap();
    assert_eq!(node.found, Found::Upper);
    assert_eq!(node.host.as_bytes(), &s.bytes("upper/data/a")[..]);
}

#[test]
fn dot_dot_and_links_never_lead_above_the_capsule_root() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let passwd = s.path("lower/etc/passwd").display().to_string();
    assert_eq!(host_of(&layers, "/../../../etc/passwd", false), passwd);
    assert_eq!(
        host_of(&layers, "/data/../../../../etc/passwd", false),
        passwd
    );
    // An absolute link is a capsule path; a relative one climbing past `/` stops there.
    symlink("/etc", s.path("lower/abs")).unwrap();
    symlink("../../../../../../etc", s.path("lower/data/rel")).unwrap();
    assert_eq!(host_of(&layers, "/abs/passwd", true), passwd);
    assert_eq!(host_of(&layers, "/data/rel/passwd", true), passwd);
    // A link naming the outside directory by its host path stays in the capsule.
    let outside = s.path("outside").display().to_string();
    symlink(&outside, s.path("lower/out")).unwrap();
    // (the capsule has no such directory: ENOENT, as the kernel answers in a chroot).
    assert_eq!(
        layers.resolve(b"/out/secret", true).err(),
        Some(libc::ENOENT)
    );
}

#[test]
fn a_link_inside_a_volume_leads_into_the_capsule_not_the_host() {
    let s = Scratch::new();
    let layers = s.layers(false);
    symlink("/etc", s.path("vol/e")).unwrap();
    let node = layers.resolve(b"/vol/e/passwd", true).unwrap();
    assert_eq!(node.host.as_bytes(), &s.bytes("lower/etc/passwd")[..]);
    // A name in the volume itself is the volume's host file.
    fs::write(s.path("vol/f"), "v").unwrap();
    let node = layers.resolve(b"/vol/f", false).unwrap();
    assert_eq!(node.place, Place::Volume { read_only: false });
    assert_eq!(node.host.as_bytes(), &s.bytes("vol/f")[..]);
    // `..` out of the volume is the capsule's parent, not the host's.
    let node = layers.resolve(b"/vol/../etc/passwd", false).unwrap();
    assert_eq!(node.host.as_bytes(), &s.bytes("lower/etc/passwd")[..]);
}

#[test]
fn a_whiteout_hides_a_lower_name_and_an_opaque_directory_its_whole_lower_content() {
    let s = Scratch::new();
    let layers = s.layers(false);
    fs::create_dir_all(s.path("upper/data")).unwrap();
    fs::write(s.path("upper/data/.wh.a"), "").unwrap();
    let node = layers.resolve(b"/data/a", false).unwrap();
    assert_eq!(node.found, Found::Missing);
    assert!(node.whiteout);

    fs::create_dir_all(s.path("upper/data/sub")).unwrap();
    fs::write(
        s.path("upper/data/sub")
            .join(std::str::from_utf8(OPAQUE_MARKER).unwrap()),
        "",
    )
    .unwrap();
    let node = layers.resolve(b"/data/sub/b", false).unwrap();
    assert_eq!(node.found, Found::Missing);
    assert!(!node.lower_visible);
}

#[test]
fn a_merged_listing_shows_both_layers_without_markers_or_hidden_names() {
    let s = Scratch::new();
    let layers = s.layers(false);
    fs::create_dir_all(s.path("upper/data")).unwrap();
    fs::write(s.path("upper/data/new"), "").unwrap();
    fs::write(s.path("upper/data/.wh.a"), "").unwrap();
    fs::write(s.path("upper/data/.capsule-copyup-1-2-3"), "").unwrap();
    assert_eq!(merged_names(&layers, b"/data"), ["new", "sub"]);
}

#[test]
fn a_change_copies_up_with_content_and_mode_and_leaves_the_lower_file_as_it_was() {
    let s = Scratch::new();
    let layers = s.layers(false);
    fs::set_permissions(s.path("lower/data/a"), fs::Permissions::from_mode(0o640)).unwrap();
    let before = s.snapshot("lower");
    let node = layers.resolve(b"/data/a", false).unwrap();
    let node = ops::for_change(&layers, node).ok().expect("copy-up");
    assert_eq!(node.found, Found::Upper);
    assert_eq!(fs::read(s.path("upper/data/a")).unwrap(), b"lower a\n");
    let mode = fs::metadata(s.path("upper/data/a")).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o640);
    // Published whole: no temporary name is left beside the copy.
    let left: Vec<_> = fs::read_dir(s.path("upper/data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["a"]);
    assert_eq!(s.snapshot("lower"), before);
}

#[test]
fn removing_a_lower_name_leaves_a_whiteout_and_the_lower_layer_intact() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let before = s.snapshot("lower");
    assert!(ops::remove(&layers, libc::AT_FDCWD, &c("/data/a"), false).is_ok());
    assert!(s.path("upper/data/.wh.a").exists());
    assert_eq!(
        layers.resolve(b"/data/a", false).unwrap().found,
        Found::Missing
    );
    // Creating the name again clears the whiteout and makes it an upper name.
    let node = layers.resolve(b"/data/a", false).unwrap();
    let (host, had_whiteout) = ops::for_create(&layers, &node).ok().unwrap();
    assert!(had_whiteout);
    assert_eq!(host.as_bytes(), &s.bytes("upper/data/a")[..]);
    assert!(!s.path("upper/data/.wh.a").exists());
    assert_eq!(s.snapshot("lower"), before);
}

#[test]
fn names_that_look_like_layer_markers_cannot_be_created() {
    let s = Scratch::new();
    let layers = s.layers(false);
    for name in [
        "/data/.wh.a",
        "/data/.wh..wh..opq",
        "/data/.capsule-copyup-x",
    ] {
        let node = layers.resolve(name.as_bytes(), false).unwrap();
        assert_eq!(
            errno_of(ops::for_create(&layers, &node)),
            libc::EINVAL,
            "{name}"
        );
    }
    // Nothing was made in the upper layer on the way.
    assert!(!s.path("upper/data").exists());
}

#[test]
fn a_read_only_capsule_refuses_every_change_of_its_layers() {
    let s = Scratch::new();
    let layers = s.layers(true);
    let before = s.snapshot("lower");
    let node = layers.resolve(b"/data/a", false).unwrap();
    assert_eq!(errno_of(ops::for_change(&layers, node)), libc::EROFS);
    let node = layers.resolve(b"/data/new", false).unwrap();
    assert_eq!(errno_of(ops::for_create(&layers, &node)), libc::EROFS);
    assert_eq!(
        errno_of(ops::remove(&layers, libc::AT_FDCWD, &c("/data/a"), false)),
        libc::EROFS
    );
    assert_eq!(s.snapshot("lower"), before);
    assert!(fs::read_dir(s.path("upper")).unwrap().next().is_none());
}

#[test]
fn an_open_for_writing_of_a_lower_file_is_planned_on_the_upper_copy() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let before = s.snapshot("lower");
    let plan = ops::open(&layers, libc::AT_FDCWD, &c("/data/sub/b"), libc::O_WRONLY)
        .ok()
        .expect("a plan");
    assert_eq!(plan.host.as_bytes(), &s.bytes("upper/data/sub/b")[..]);
    assert!(!plan.lower);
    assert_eq!(fs::read(s.path("upper/data/sub/b")).unwrap(), b"lower b\n");
    // A read-only open reads the lower file in place.
    let plan = ops::open(&layers, libc::AT_FDCWD, &c("/etc/passwd"), libc::O_RDONLY)
        .ok()
        .expect("a plan");
    assert_eq!(plan.host.as_bytes(), &s.bytes("lower/etc/passwd")[..]);
    assert!(plan.lower && !plan.safe);
    assert_eq!(s.snapshot("lower"), before);
}

#[test]
fn an_over_long_name_is_refused_before_any_walk() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let long = format!("/data/{}", "x".repeat(256));
    assert_eq!(
        layers.resolve(long.as_bytes(), false).err(),
        Some(libc::ENAMETOOLONG)
    );
}

/// The capsule path a host path shows as, as text (`None`: it has none).
fn reverse_of(layers: &Layers, host: &[u8]) -> Option<String> {
    let mapped = layers.reverse(host)?;
    Some(String::from_utf8(mapped.as_bytes().to_vec()).unwrap())
}

#[test]
fn links_in_the_upper_layer_lead_into_the_capsule_not_the_host() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let passwd = s.path("lower/etc/passwd").display().to_string();
    fs::create_dir_all(s.path("upper/data")).unwrap();
    symlink("/etc", s.path("upper/data/abs")).unwrap();
    symlink("../../../../../../../etc", s.path("upper/data/climb")).unwrap();
    // The upper layer's own host path, and the lower layer's, are no capsule paths.
    symlink(s.path("lower/etc"), s.path("upper/data/lowerhost")).unwrap();
    symlink(s.path("outside"), s.path("upper/data/out")).unwrap();
    assert_eq!(host_of(&layers, "/data/abs/passwd", true), passwd);
    assert_eq!(host_of(&layers, "/data/climb/passwd", true), passwd);
    for escape in ["/data/lowerhost/passwd", "/data/out/secret"] {
        assert_eq!(
            layers.resolve(escape.as_bytes(), true).err(),
            Some(libc::ENOENT),
            "{escape}"
        );
    }
    // Not followed, the last name is the link itself, in the upper layer.
    let node = layers.resolve(b"/data/abs", false).unwrap();
    assert!(node.is_symlink());
    assert_eq!(node.found, Found::Upper);
    assert_eq!(node.capsule.as_bytes(), b"/data/abs");
    // Followed, the canonical capsule path is the target's.
    let node = layers.resolve(b"/data/climb/passwd", true).unwrap();
    assert_eq!(node.capsule.as_bytes(), b"/etc/passwd");
}

#[test]
fn a_link_loop_is_eloop_and_a_file_on_the_way_enotdir() {
    let s = Scratch::new();
    let layers = s.layers(false);
    symlink("/data/loop2", s.path("lower/data/loop1")).unwrap();
    symlink("loop1", s.path("lower/data/loop2")).unwrap();
    assert_eq!(
        layers.resolve(b"/data/loop1", true).err(),
        Some(libc::ELOOP)
    );
    // Not following the last name, the loop is never entered.
    assert!(layers.resolve(b"/data/loop1", false).unwrap().is_symlink());
    assert_eq!(
        layers.resolve(b"/data/a/x", false).err(),
        Some(libc::ENOTDIR)
    );
    assert_eq!(
        layers.resolve(b"/data/a/", false).err(),
        Some(libc::ENOTDIR)
    );
    assert_eq!(
        layers.resolve(b"/nothing/x", false).err(),
        Some(libc::ENOENT)
    );
}

#[test]
fn dot_dot_and_links_in_a_volume_stay_in_the_capsule() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let passwd = s.path("lower/etc/passwd").display().to_string();
    fs::create_dir_all(s.path("vol/deep")).unwrap();
    // Climbing out of the volume with `..` climbs the capsule's tree, to its `/`.
    assert_eq!(
        host_of(&layers, "/vol/deep/../../../../etc/passwd", false),
        passwd
    );
    // A relative link that climbs out of the volume lands in the capsule: its
    // `/outside` does not exist, the host's directory next to the volume is not it.
    symlink("../../outside", s.path("vol/deep/up")).unwrap();
    assert_eq!(
        layers.resolve(b"/vol/deep/up/secret", true).err(),
        Some(libc::ENOENT)
    );
    // A link holding the volume's own host path is no capsule path either.
    symlink(s.path("outside"), s.path("vol/host")).unwrap();
    assert_eq!(
        layers.resolve(b"/vol/host/secret", true).err(),
        Some(libc::ENOENT)
    );
    // A missing name in a volume is where it would be created, on the host.
    let node = layers.resolve(b"/vol/deep/new", false).unwrap();
    assert_eq!(node.found, Found::Missing);
    assert_eq!(node.place, Place::Volume { read_only: false });
    assert_eq!(node.host.as_bytes(), &s.bytes("vol/deep/new")[..]);
    // The volume's mount point is one; its parent is not.
    assert!(layers.is_volume_root(b"/vol") && !layers.is_volume_root(b"/vol/deep"));
}

#[test]
fn a_whited_out_directory_hides_what_is_below_it_and_a_stale_whiteout_hides_nothing() {
    let s = Scratch::new();
    let layers = s.layers(false);
    fs::create_dir_all(s.path("upper/data")).unwrap();
    fs::write(s.path("upper/data/.wh.sub"), "").unwrap();
    assert_eq!(
        layers.resolve(b"/data/sub/b", false).err(),
        Some(libc::ENOENT)
    );
    assert!(layers
        .has_whiteout(&layers.resolve(b"/data/sub", false).unwrap().capsule)
        .unwrap());
    // A whiteout of a name the lower layer does not have: the name is simply missing,
    // and not marked as hidden (creating it has nothing to remove).
    fs::write(s.path("upper/data/.wh.gone"), "").unwrap();
    let node = layers.resolve(b"/data/gone", false).unwrap();
    assert_eq!(node.found, Found::Missing);
    assert!(!node.whiteout);
    // The markers themselves are no names of the capsule.
    let node = layers.resolve(b"/data/.wh.sub", false).unwrap();
    assert_eq!(node.found, Found::Missing);
    // An upper name beside a whiteout is still found (the upper layer wins).
    fs::write(s.path("upper/data/a"), "upper a\n").unwrap();
    fs::write(s.path("upper/data/.wh.a"), "").unwrap();
    assert_eq!(
        layers.resolve(b"/data/a", false).unwrap().found,
        Found::Upper
    );
}

#[test]
fn an_opaque_directory_shows_its_upper_names_only() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let before = s.snapshot("lower");
    fs::create_dir_all(s.path("upper/data")).unwrap();
    fs::write(s.path("upper/data/mine"), "").unwrap();
    let marker = std::str::from_utf8(OPAQUE_MARKER).unwrap();
    fs::write(s.path("upper/data").join(marker), "").unwrap();
    let node = layers.resolve(b"/data/mine", false).unwrap();
    assert_eq!(node.found, Found::Upper);
    for hidden in ["/data/a", "/data/sub"] {
        let node = layers.resolve(hidden.as_bytes(), false).unwrap();
        assert_eq!(node.found, Found::Missing, "{hidden}");
        assert!(!node.lower_visible, "{hidden}");
    }
    // Below it too: the lower `sub` is not reached through the opaque `data`.
    assert_eq!(
        layers.resolve(b"/data/sub/b", false).err(),
        Some(libc::ENOENT)
    );
    // Listed merged (the marker must not show), with no lower name in it.
    assert_eq!(merged_names(&layers, b"/data"), ["mine"]);
    assert_eq!(s.snapshot("lower"), before);
}

#[test]
fn host_paths_of_every_layer_map_back_to_their_capsule_paths() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let host = |rel: &str| s.bytes(rel);
    assert_eq!(reverse_of(&layers, &host("lower")).as_deref(), Some("/"));
    assert_eq!(
        reverse_of(&layers, &host("lower/etc/passwd")).as_deref(),
        Some("/etc/passwd")
    );
    assert_eq!(
        reverse_of(&layers, &host("upper/data/new")).as_deref(),
        Some("/data/new")
    );
    assert_eq!(reverse_of(&layers, &host("upper")).as_deref(), Some("/"));
    assert_eq!(
        reverse_of(&layers, &host("vol/f")).as_deref(),
        Some("/vol/f")
    );
    assert_eq!(reverse_of(&layers, &host("vol")).as_deref(), Some("/vol"));
    // Outside every layer: no capsule path, and a name that merely begins like a
    // layer's directory is not inside it.
    assert_eq!(reverse_of(&layers, &host("outside/secret")), None);
    assert_eq!(reverse_of(&layers, &host("lowerx/etc")), None);
    assert_eq!(reverse_of(&layers, b"/etc/passwd"), None);
    // The host's /proc, /dev and /sys are the capsule's own.
    assert_eq!(
        reverse_of(&layers, b"/dev/null").as_deref(),
        Some("/dev/null")
    );
    // Over the host's root, every host path is a capsule path, volumes mapped.
    let host_root = Layers {
        root: None,
        upper: None,
        volumes: vec![Volume {
            path: b"/mnt/v".to_vec(),
            host: host("vol"),
            read_only: true,
        }],
        read_only: false,
        members: Vec::new(),
    };
    assert_eq!(
        reverse_of(&host_root, b"/etc/passwd").as_deref(),
        Some("/etc/passwd")
    );
    assert_eq!(
        reverse_of(&host_root, &host("vol/f")).as_deref(),
        Some("/mnt/v/f")
    );
}

#[test]
fn a_volume_inside_a_layer_is_mapped_by_the_longest_host_path() {
    let s = Scratch::new();
    let mut layers = s.layers(false);
    // A volume whose host directory lies in the lower layer's: its names are the
    // volume's, the rest of the lower layer the layer's.
    layers.volumes.push(Volume {
        path: b"/srv/data".to_vec(),
        host: s.bytes("lower/data"),
        read_only: true,
    });
    assert_eq!(
        reverse_of(&layers, &s.bytes("lower/data/a")).as_deref(),
        Some("/srv/data/a")
    );
    assert_eq!(
        reverse_of(&layers, &s.bytes("lower/etc")).as_deref(),
        Some("/etc")
    );
}

#[test]
fn proc_links_show_capsule_paths_and_never_the_host() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let map = |link: &[u8], target: &[u8]| {
        let mut t = super::path::PathBuf::from_bytes(target).unwrap();
        layers
            .map_proc_link(link, &mut t)
            .map(|()| String::from_utf8(t.as_bytes().to_vec()).unwrap())
    };
    // A process's root is the capsule's `/`, whatever the host says.
    assert_eq!(map(b"/proc/self/root", b"/").as_deref(), Ok("/"));
    // A working directory outside the capsule shows as `/`; another outside target
    // is not revealed.
    assert_eq!(
        map(b"/proc/self/cwd", &s.bytes("outside")).as_deref(),
        Ok("/")
    );
    assert_eq!(
        map(b"/proc/self/fd/3", &s.bytes("outside/secret")),
        Err(libc::ENOENT)
    );
    // Inside a layer: the capsule path; without a path: as the kernel says.
    assert_eq!(
        map(b"/proc/self/fd/3", &s.bytes("upper/data/a")).as_deref(),
        Ok("/data/a")
    );
    assert_eq!(
        map(b"/proc/self/fd/3", b"pipe:[42]").as_deref(),
        Ok("pipe:[42]")
    );
    // Resolving through /proc/self/root and /proc/self/cwd stays in the capsule
    // (this test's working directory is outside it: the capsule's `/`).
    let passwd = s.path("lower/etc/passwd").display().to_string();
    assert_eq!(host_of(&layers, "/proc/self/root/etc/passwd", true), passwd);
    assert_eq!(
        host_of(&layers, "/proc/self/root/../../etc/passwd", true),
        passwd
    );
    assert_eq!(host_of(&layers, "/proc/self/cwd/etc/passwd", true), passwd);
}

#[test]
fn a_descriptor_link_names_the_capsule_file_or_is_left_to_the_kernel() {
    let s = Scratch::new();
    let layers = s.layers(false);
    let lower = fs::File::open(s.path("lower/data/a")).unwrap();
    let outside = fs::File::open(s.path("outside/secret")).unwrap();
    let link = |file: &fs::File| {
        use std::os::fd::AsRawFd;
        format!("/proc/self/fd/{}", file.as_raw_fd())
    };
    // A lower file open for reading is its capsule name: a change through the link
    // would copy it up like any other.
    let node = layers.resolve(link(&lower).as_bytes(), true).unwrap();
    assert_eq!(node.capsule.as_bytes(), b"/data/a");
    assert_eq!(node.found, Found::Lower);
    assert_eq!(node.host.as_bytes(), &s.bytes("lower/data/a")[..]);
    // A file from outside the capsule's view, inherited open: the kernel follows the
    // link to the object; no capsule name is made up for it.
    let node = layers.resolve(link(&outside).as_bytes(), true).unwrap();
    assert_eq!(node.place, Place::Passthrough);
    assert_eq!(node.found, Found::Direct);
    assert!(node.host.as_bytes().starts_with(b"/proc/"));
    // Another process's ways into its files are refused (pid 1 is not the capsule's).
    assert_eq!(
        layers.resolve(b"/proc/1/root/etc", true).err(),
        Some(libc::EACCES)
    );
    assert_eq!(
        layers.resolve(b"/proc/1/cwd", false).err(),
        Some(libc::EACCES)
    );
}

#[test]
fn the_fast_paths_take_the_hosts_own_names_and_leave_the_layers_to_the_walk() {
    use super::layers::Candidates;
    use super::path::{shape, NAME_MAX};
    let s = Scratch::new();
    let layers = s.layers(false);
    let mut c = Candidates::new();
    let try_read = |path: &[u8], c: &mut Candidates| {
        layers
            .read_candidates_into(path, shape(path, NAME_MAX), c)
            .unwrap()
    };
    // /dev is the host's: the kernel's answer is the capsule's, no layer involved.
    assert!(try_read(b"/dev/null", &mut c));
    assert!(c.direct && c.upper.is_empty());
    assert_eq!(c.lower.as_bytes(), b"/dev/null");
    // Names the walk must see: `..`, a process's ways in, /dev/fd links, a volume
    // (its links hold capsule paths), and layer names whose directory nothing has
    // cached (this process shares no generation: the cache is off).
    for path in [
        &b"/dev/../etc/passwd"[..],
        b"/proc/self/root/etc/passwd",
        b"/proc/self/fd/0",
        b"/dev/stdin",
        b"/vol/f",
        b"/etc/passwd",
    ] {
        assert!(!try_read(path, &mut c), "{}", String::from_utf8_lossy(path));
    }
    let mut host = super::path::PathBuf::new();
    assert!(!layers
        .upper_only_into(b"/data/a", shape(b"/data/a", NAME_MAX), &mut host)
        .unwrap());
    // Over-long names are refused by the walk, not guessed at here.
    let long = format!("/dev/{}", "x".repeat(NAME_MAX + 1));
    assert!(!try_read(long.as_bytes(), &mut c));
}

#[test]
fn a_volume_inside_a_volume_wins_for_its_names_whatever_the_order_given() {
    let s = Scratch::new();
    fs::create_dir_all(s.path("vol/inner")).unwrap();
    fs::create_dir_all(s.path("outside/ro")).unwrap();
    let text = |rel: &str| s.path(rel).display().to_string();
    let config = capsule_config::FsConfig {
        root: Some(text("lower")),
        upper: Some(text("upper")),
        // The outer volume first: the inner one must still win below /vol/inner.
        volumes: vec![
            capsule_config::Volume::parse(&format!("{}:/vol", text("vol"))).unwrap(),
            capsule_config::Volume::parse(&format!("{}:/vol/inner:ro", text("outside/ro")))
                .unwrap(),
        ],
        read_only: false,
    };
    let layers = Layers::from_config(&config);
    let node = layers.resolve(b"/vol/inner/x", false).unwrap();
    assert_eq!(node.place, Place::Volume { read_only: true });
    assert_eq!(node.host.as_bytes(), &s.bytes("outside/ro/x")[..]);
    let node = layers.resolve(b"/vol/innerx", false).unwrap();
    assert_eq!(node.place, Place::Volume { read_only: false });
    assert_eq!(node.host.as_bytes(), &s.bytes("vol/innerx")[..]);
    // The lower layer is asked about its own names only.
    assert_eq!(layers.lower_has(b"/etc/passwd"), Ok(Some(true)));
    assert_eq!(layers.lower_has(b"/etc/passwd/x"), Ok(Some(false)));
    assert_eq!(layers.lower_has(b"/vol"), Ok(Some(false)));
    assert!(layers.writable());
}
