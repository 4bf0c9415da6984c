//! Where a capsule path lives: the layers of a capsule and the walk that resolves a
//! capsule path, component by component, into a host path.
//!
//! The walk resolves `..` and symbolic links itself, inside the capsule: an absolute
//! link target starts again at the capsule's `/`, `..` stops there, and links read
//! from `/proc` (whose targets are host paths) are mapped back to capsule paths. So
//! neither `..` nor a link nor `/proc/self/root` leads out of the root.

use std::ffi::c_int;

use capsule_config::FsConfig;

use super::path::{components, is_within, PathBuf, Shape, NAME_MAX};
use super::sys;

/// The most symbolic links one resolution follows (as the kernel's `MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;
/// Host file systems every capsule sees through (devices, processes, kernel state:
/// never copied up).
const PASSTHROUGH: &[&[u8]] = &[b"/proc", b"/dev", b"/sys"];
/// Marker of a deleted name in the upper layer (OCI image layers use the same).
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Temporary names of copy-ups in progress.
pub const COPYUP_PREFIX: &[u8] = b".capsule-copyup-";
/// Marker of a directory whose lower entries are hidden.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

pub struct Volume {
    pub path: Vec<u8>,
    pub host: Vec<u8>,
    pub read_only: bool,
}

pub struct Layers {
    /// The lower layer's host directory; `None` is the host's `/`.
    pub root: Option<Vec<u8>>,
    pub upper: Option<Vec<u8>>,
    /// Longest capsule path first, so the first match is the longest prefix.
    pub volumes: Vec<Volume>,
    pub read_only: bool,
    /// Environment entries (`KEY=VALUE`) of which a process of this capsule has at
    /// least one in `/proc/PID/environ` (see `is_capsule_process`); empty: none
    /// known, so no other process counts as the capsule's.
    pub members: Vec<Vec<u8>>,
}

/// Where a resolved name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In a bind volume: the host path is used directly.
    Volume { read_only: bool },
    /// `/proc`, `/dev`, `/sys` of a capsule with its own root: the host's.
    Passthrough,
    /// In the capsule's layers.
    Overlay,
}

/// Which layer holds an overlay name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Missing,
    Upper,
    Lower,
    /// A volume or passthrough name that exists.
    Direct,
}

/// What a capsule path resolved to.
pub struct Node {
    /// The canonical capsule path (links resolved as asked, no `.`/`..`).
    pub capsule: PathBuf,
    pub place: Place,
    pub found: Found,
    /// The host path of what was found; for a missing volume or passthrough name,
    /// where it would be; empty for a missing overlay name.
    pub host: PathBuf,
    /// `lstat` of what was found.
    pub stat: libc::stat,
    /// Lower-layer entries at this name are not hidden (no whiteout, no opaque
    /// directory above).
    pub lower_visible: bool,
    /// What the walk knew inside the parent directory.
    pub parent_state: DirState,
    /// The upper layer holds a whiteout for this name (so creating it must remove it).
    pub whiteout: bool,
}

impl Node {
    /// A node to be filled in place (by `Layers::resolve_into` and the `ops`
    /// functions ending in `_into`): a missing overlay name with an empty path.
    pub fn empty() -> Node {
        Node {
            capsule: PathBuf::new(),
            place: Place::Overlay,
            found: Found::Missing,
            host: PathBuf::new(),
            stat: zeroed_stat(),
            lower_visible: true,
            parent_state: DirState {
                in_upper: false,
                lower_visible: true,
            },
            whiteout: false,
        }
    }

    pub fn exists(&self) -> bool {
        self.found != Found::Missing
    }

    pub fn is_dir(&self) -> bool {
        self.exists() && self.stat.st_mode & libc::S_IFMT == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.exists() && self.stat.st_mode & libc::S_IFMT == libc::S_IFLNK
    }
}

/// Where a read-only open tries a name (see `Layers::read_candidates_into`); an
/// empty host path is not tried.
pub struct Candidates {
    pub capsule: PathBuf,
    pub upper: PathBuf,
    pub lower: PathBuf,
    /// A volume or host name (`lower` is its host path): no layers involved.
    pub direct: bool,
    /// The lower name counts only if the upper layer has no whiteout for it: asked
    /// only when the upper name is missing (`Layers::has_whiteout`), so that a name
    /// found in the upper layer costs no whiteout check.
    pub lower_unless_whiteout: bool,
}

impl Candidates {
    pub fn new() -> Candidates {
        Candidates {
            capsule: PathBuf::new(),
            upper: PathBuf::new(),
            lower: PathBuf::new(),
            direct: false,
            lower_unless_whiteout: false,
        }
    }
}

impl Default for Candidates {
    fn default() -> Self {
        Candidates::new()
    }
}

/// What the walk knows about a directory it passed, for the names inside it.
#[derive(Clone, Copy, Debug)]
pub struct DirState {
    pub in_upper: bool,
    pub lower_visible: bool,
}

/// Whether `/proc/...` link path `link` is about this process: `/proc/self/...`,
/// `/proc/thread-self/...` or `/proc/PID/...` with this process's pid.
fn is_own_proc_entry(link: &[u8]) -> bool {
    let Some(entry) = components(link).nth(1) else {
        return false;
    };
    if entry == b"self" || entry == b"thread-self" {
        return true;
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut digits = crate::decimal::Digits::default();
    entry == crate::decimal::decimal(pid as u64, &mut digits)
}

/// The names in a process's `/proc` directory that lead to its files: magic links
/// (which the kernel follows to the object itself, wherever it is) and the
/// directories of them.
const PROC_WAYS: &[&[u8]] = &[b"fd", b"map_files", b"cwd", b"root", b"exe"];

/// For `/proc/PID/NAME…` or `/proc/PID/task/TID/NAME…` with NAME in `PROC_WAYS`:
/// PID, NAME and how many components follow NAME.
fn proc_way(path: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    let mut parts = components(path);
    if parts.next()? != b"proc" {
        return None;
    }
    let pid = parts.next()?;
    let mut name = parts.next()?;
    if name == b"task" {
        parts.next()?; // TID
        name = parts.next()?;
    }
    PROC_WAYS
        .contains(&name)
        .then(|| (pid, name, parts.count()))
}

/// Names in `/dev` that are links into `/proc/self/fd`.
fn is_dev_fd_link(path: &[u8]) -> bool {
    is_within(path, b"/dev/fd") || matches!(path, b"/dev/stdin" | b"/dev/stdout" | b"/dev/stderr")
}

/// Whether descriptor `fd` (decimal) of process `pid` (decimal) is open for
/// writing: `fcntl` for this process, `/proc/PID/fdinfo/FD` for another one.
pub fn fd_writable(pid: &[u8], fd: &[u8]) -> bool {
    let writes = |flags: i64| {
        let mode = flags & libc::O_ACCMODE as i64;
        flags & libc::O_PATH as i64 == 0
            && (mode == libc::O_WRONLY as i64 || mode == libc::O_RDWR as i64)
    };
    if is_own_pid(pid) {
        let Some(n) = std::str::from_utf8(fd)
            .ok()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            return false;
        };
        // SAFETY: F_GETFL has no memory arguments.
        let flags = unsafe { libc::fcntl(n, libc::F_GETFL) };
        return flags >= 0 && writes(flags as i64);
    }
    let mut path = PathBuf::new();
    let built = path.push_bytes(b"/proc/").is_ok()
        && path.push_bytes(pid).is_ok()
        && path.push_bytes(b"/fdinfo/").is_ok()
        && path.push_bytes(fd).is_ok();
    if !built {
        return false;
    }
    let mut buf = [0u8; 512];
    // SAFETY: a NUL-terminated path, a buffer valid for its length, our descriptor.
    let n = unsafe {
        let f = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if f < 0 {
            return false;
        }
        let n = libc::read(f, buf.as_mut_ptr().cast(), buf.len());
        libc::close(f);
        n
    };
    let text = &buf[..n.max(0) as usize];
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"flags:"))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| i64::from_str_radix(v.trim(), 8).ok())
        .is_some_and(writes)
}

/// Whether `pid` (decimal) is this process.
fn is_own_pid(pid: &[u8]) -> bool {
    // SAFETY: getpid has no preconditions.
    let own = unsafe { libc::getpid() };
    let mut digits = crate::decimal::Digits::default();
    pid == crate::decimal::decimal(own as u64, &mut digits)
}

fn zeroed_stat() -> libc::stat {
    // SAFETY: stat is plain data.
    unsafe { std::mem::zeroed() }
}

impl Layers {
    pub fn from_config(fs: &FsConfig) -> Layers {
        let mut volumes: Vec<Volume> = fs
            .volumes
            .iter()
            .map(|v| Volume {
                path: v.path.as_bytes().to_vec(),
                host: v.host.as_bytes().to_vec(),
                read_only: v.read_only,
            })
            .collect();
        volumes.sort_by_key(|v| std::cmp::Reverse(v.path.len()));
        Layers {
            root: fs.root.as_ref().map(|r| r.as_bytes().to_vec()),
            upper: fs.upper.as_ref().map(|u| u.as_bytes().to_vec()),
            volumes,
            read_only: fs.read_only,
            members: Vec::new(),
        }
    }

    /// Whether names outside volumes can be changed at all.
    pub fn writable(&self) -> bool {
        self.upper.is_some() && !self.read_only
    }

    pub fn lower_host(&self, capsule: &[u8]) -> Result<PathBuf, c_int> {
        let mut p = PathBuf::new();
        self.lower_host_into(capsule, &mut p)?;
        Ok(p)
    }

    /// `lower_host`, written into `out`.
    pub fn lower_host_into(&self, capsule: &[u8], out: &mut PathBuf) -> Result<(), c_int> {
        match &self.root {
            Some(root) => out.set_prefixed(root, capsule),
            None => out.set(capsule),
        }
    }

    pub fn upper_host(&self, capsule: &[u8]) -> Result<PathBuf, c_int> {
        let mut p = PathBuf::new();
        self.upper_host_into(capsule, &mut p)?;
        Ok(p)
    }

    /// `upper_host`, written into `out`.
    pub fn upper_host_into(&self, capsule: &[u8], out: &mut PathBuf) -> Result<(), c_int> {
        match &self.upper {
            Some(upper) => out.set_prefixed(upper, capsule),
            None => Err(libc::EROFS),
        }
    }

    /// The upper-layer whiteout marker of a capsule path.
    pub fn whiteout_host(&self, capsule: &PathBuf) -> Result<PathBuf, c_int> {
        let mut p = PathBuf::new();
        self.whiteout_host_into(capsule, &mut p)?;
        Ok(p)
    }

    /// `whiteout_host`, written into `out`.
    pub fn whiteout_host_into(&self, capsule: &PathBuf, out: &mut PathBuf) -> Result<(), c_int> {
        self.upper_host_into(capsule.parent_bytes(), out)?;
        out.push_component(WHITEOUT_PREFIX)?;
        out.push_bytes(capsule.file_name())
    }

    /// Whether the upper layer holds a whiteout for capsule path `capsule`.
    pub fn has_whiteout(&self, capsule: &PathBuf) -> Result<bool, c_int> {
        let mut p = PathBuf::new();
        self.whiteout_host_into(capsule, &mut p)?;
        Ok(sys::exists(&p))
    }

    /// Whether capsule path `capsule` is where a volume is mounted: like a mount
    /// point, it cannot be removed or renamed (`EBUSY`).
    pub fn is_volume_root(&self, capsule: &[u8]) -> bool {
        self.volumes.iter().any(|v| v.path == capsule)
    }

    fn volume_of(&self, capsule: &[u8]) -> Option<&Volume> {
        self.volumes.iter().find(|v| is_within(capsule, &v.path))
    }

    fn is_passthrough(&self, capsule: &[u8]) -> bool {
        PASSTHROUGH.iter().any(|p| is_within(capsule, p))
    }

    /// The place of a capsule path; for volumes and passthrough, its host path is
    /// written into `host` when given.
    fn place_of(&self, capsule: &[u8], host: Option<&mut PathBuf>) -> Result<Place, c_int> {
        if let Some(v) = self.volume_of(capsule) {
            if let Some(host) = host {
                host.set(&v.host)?;
                host.push_bytes(&capsule[v.path.len()..])?;
            }
            return Ok(Place::Volume {
                read_only: v.read_only,
            });
        }
        if self.is_passthrough(capsule) {
            if let Some(host) = host {
                host.set(capsule)?;
            }
            return Ok(Place::Passthrough);
        }
        Ok(Place::Overlay)
    }

    /// Looks up one name whose parent directory the walk has reached: `node.capsule`
    /// holds its capsule path; every other field of `node` is set here.
    fn locate_into(&self, node: &mut Node, parent: DirState) -> Result<(), c_int> {
        node.found = Found::Missing;
        node.stat = zeroed_stat();
        node.lower_visible = parent.lower_visible;
        node.parent_state = parent;
        node.whiteout = false;
        node.host.clear();
        node.place = self.place_of(node.capsule.as_bytes(), Some(&mut node.host))?;
        if node.place != Place::Overlay {
            if sys::lstat(&node.host, &mut node.stat) {
                node.found = Found::Direct;
            }
            return Ok(());
        }
        let name = node.capsule.file_name();
        if name.starts_with(WHITEOUT_PREFIX) || name.starts_with(COPYUP_PREFIX) {
            // The layers' own markers are not names of the capsule.
            return Ok(());
        }
        if parent.in_upper && self.upper.is_some() {
            self.upper_host_into(node.capsule.as_bytes(), &mut node.host)?;
            if sys::lstat(&node.host, &mut node.stat) {
                node.found = Found::Upper;
                return Ok(());
            }
            node.host.clear();
            // A whiteout matters only where the lower layer shows the name: the lower
            // name is looked up first, so that a name in neither layer (the common
            // miss: a PATH or import search) costs no whiteout check. A whiteout left
            // over a name the lower layer no longer has hides nothing.
            if parent.lower_visible && !node.capsule.is_root() {
                self.lower_host_into(node.capsule.as_bytes(), &mut node.host)?;
                if !sys::lstat(&node.host, &mut node.stat) {
                    node.host.clear();
                    return Ok(());
                }
                if self.has_whiteout(&node.capsule)? {
                    node.host.clear();
                    node.stat = zeroed_stat();
                    node.lower_visible = false;
                    node.whiteout = true;
                    return Ok(());
                }
                node.found = Found::Lower;
                return Ok(());
            }
            if !parent.lower_visible {
                return Ok(());
            }
        }
        if node.lower_visible {
            self.lower_host_into(node.capsule.as_bytes(), &mut node.host)?;
            if sys::lstat(&node.host, &mut node.stat) {
                node.found = Found::Lower;
            } else {
                node.host.clear();
            }
        }
        Ok(())
    }

    /// What the walk knows, inside directory `node`, about its entries.
    fn dir_state(&self, node: &Node) -> DirState {
        match node.found {
            Found::Upper => {
                let mut p = PathBuf::new();
                let opaque = self
                    .upper_host_into(node.capsule.as_bytes(), &mut p)
                    .is_ok()
                    && p.push_component(OPAQUE_MARKER).is_ok()
                    && sys::exists(&p);
                // Lower entries show through only if the lower layer has this
                // directory too (one lstat, then cached with the directory).
                let lower_dir = node.lower_visible
                    && !opaque
                    && self
                        .lower_host_into(node.capsule.as_bytes(), &mut p)
                        .is_ok()
                    && {
                        let mut st = zeroed_stat();
                        sys::lstat(&p, &mut st) && st.st_mode & libc::S_IFMT == libc::S_IFDIR
                    };
                DirState {
                    in_upper: true,
                    lower_visible: lower_dir,
                }
            }
            _ => DirState {
                in_upper: false,
                lower_visible: node.lower_visible,
            },
        }
    }

    /// Makes `node` the capsule's `/` as the walk starts from it (no system call).
    fn walk_root_into(&self, node: &mut Node) {
        node.capsule.clear();
        // Cannot fail: one byte.
        let _ = node.capsule.push_bytes(b"/");
        node.place = Place::Overlay;
        node.found = Found::Lower;
        node.host.clear();
        node.stat = zeroed_stat();
        node.lower_visible = true;
        node.parent_state = DirState {
            in_upper: self.upper.is_some(),
            lower_visible: true,
        };
        node.whiteout = false;
    }

    /// Makes `node` the capsule's `/` itself: the lower root, what `/` looks like.
    fn root_node_into(&self, node: &mut Node) -> Result<(), c_int> {
        self.walk_root_into(node);
        self.lower_host_into(b"/", &mut node.host)?;
        if !sys::lstat(&node.host, &mut node.stat) {
            return Err(libc::ENOENT);
        }
        Ok(())
    }

    /// Resolves an absolute capsule path. Links in every component but the last are
    /// followed; the last one's too when `follow_last`. A missing last component is
    /// not an error (the caller may create it); a missing directory on the way is
    /// `ENOENT`, a non-directory on the way `ENOTDIR`.
    pub fn resolve(&self, path: &[u8], follow_last: bool) -> Result<Node, c_int> {
        let mut node = Node::empty();
        self.resolve_into(path, follow_last, &mut node)?;
        Ok(node)
    }

    /// `resolve`, building the node in place (a `Node` is large: moving it costs
    /// more than most of what the resolution does). On error `node` is unspecified.
    pub fn resolve_into(
        &self,
        path: &[u8],
        follow_last: bool,
        node: &mut Node,
    ) -> Result<(), c_int> {
        self.resolve_shaped(path, super::path::shape(path, NAME_MAX), follow_last, node)
    }

    /// `resolve_into` of a path whose shape (with `NAME_MAX`) is known.
    pub fn resolve_shaped(
        &self,
        path: &[u8],
        shape: Shape,
        follow_last: bool,
        node: &mut Node,
    ) -> Result<(), c_int> {
        if shape.over {
            return Err(libc::ENAMETOOLONG);
        }
        if self.direct_into(path, shape, follow_last, node)? {
            return Ok(());
        }
        if shape.plain && self.cached_into(path, follow_last, node)? {
            return Ok(());
        }
        if path.len() >= super::path::PATH_MAX {
            return Err(super::path::TOO_LONG);
        }
        // Read before the walk: a change during the walk makes what it found stale.
        let generation = super::cache::generation();
        let mut pending = PathBuf::new();
        let mut restart = PathBuf::new();
        let mut links = 0;
        loop {
            let bytes = if links == 0 { path } else { pending.as_bytes() };
            if self.walk(bytes, follow_last, node, &mut restart)? {
                if let (0, Some(generation)) = (links, generation) {
                    self.remember(generation, path, node);
                }
                return Ok(());
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(libc::ELOOP);
            }
            std::mem::swap(&mut pending, &mut restart);
        }
    }

    /// A name in `/dev`, `/sys` or `/proc`, given without `..`: the host's own file
    /// system, which the kernel resolves in one call. Paths through
    /// `/proc/*/root` and `/proc/*/cwd` (host paths) are walked instead. False: not
    /// such a name (`node` unspecified).
    fn direct_into(
        &self,
        path: &[u8],
        shape: Shape,
        follow_last: bool,
        node: &mut Node,
    ) -> Result<bool, c_int> {
        let Some(place) = self.direct_host_into(path, shape, &mut node.host)? else {
            return Ok(false);
        };
        node.capsule.set(path)?;
        node.place = place;
        node.found = Found::Missing;
        node.stat = zeroed_stat();
        node.lower_visible = true;
        node.parent_state = DirState {
            in_upper: false,
            lower_visible: true,
        };
        node.whiteout = false;
        let found = if follow_last {
            // SAFETY: a NUL-terminated path and a valid buffer.
            unsafe { libc::stat(node.host.as_ptr(), &mut node.stat) == 0 }
        } else {
            sys::lstat(&node.host, &mut node.stat)
        };
        if found {
            node.found = Found::Direct;
        } else {
            let e = crate::hook::errno();
            if e != libc::ENOENT {
                return Err(e);
            }
        }
        Ok(true)
    }

    /// The place of a name the kernel may resolve by itself, its host path written
    /// into `host`: in `/dev`, `/sys`, `/proc` or a volume, given without `..`, and
    /// not through `/proc/*/root` or `/proc/*/cwd` (whose targets are host paths the
    /// walk must map). `None`: not such a name (`host` unspecified).
    fn direct_host_into(
        &self,
        path: &[u8],
        shape: Shape,
        host: &mut PathBuf,
    ) -> Result<Option<Place>, c_int> {
        if !path.starts_with(b"/") || self.place_of(path, None)? == Place::Overlay {
            return Ok(None);
        }
        if shape.dotdot {
            return Ok(None);
        }
        let place = self.place_of(path, Some(host))?;
        // A volume's names are walked like the layers': a link inside it (`/vol/e ->
        // /etc`) leads to the capsule's `/etc`, which the kernel would take for the
        // host's.
        if let Place::Volume { .. } = place {
            return Ok(None);
        }
        // A process's magic links lead to host files (the lower layer's among them:
        // reopened for writing, they would change it), and other processes' are not
        // the capsule's to see: the walk maps or refuses them. `exe` too: a program
        // run by its root's loader must not open the loader.
        if place == Place::Passthrough && (proc_way(path).is_some() || is_dev_fd_link(path)) {
            return Ok(None);
        }
        Ok(Some(place))
    }

    /// Resolves the last name of `path` in its directory, when what the walk knows
    /// about that directory is cached and still valid. False: not cached, or the
    /// walk must decide (`node` unspecified). `path` is plain (`path::Shape`).
    fn cached_into(&self, path: &[u8], follow_last: bool, node: &mut Node) -> Result<bool, c_int> {
        let (dir, name) = super::cache::split_plain(path);
        let Some(state) = super::cache::lookup_into(dir, &mut node.capsule) else {
            return Ok(false);
        };
        node.capsule.push_component(name)?;
        self.locate_into(node, state)?;
        if node.is_symlink() && (follow_last || path.ends_with(b"/")) {
            return Ok(false); // let the walk follow it
        }
        if path.ends_with(b"/") && node.exists() && !node.is_dir() {
            return Err(libc::ENOTDIR);
        }
        Ok(true)
    }

    /// What is known inside the directory of `path`'s last name, its capsule path
    /// written into `capsule`, when that directory is cached, the name is not a
    /// layer marker and lies in the layers (not a volume or host directory).
    fn in_cached_dir_into(
        &self,
        path: &[u8],
        shape: Shape,
        capsule: &mut PathBuf,
    ) -> Result<Option<DirState>, c_int> {
        if !shape.plain {
            return Ok(None);
        }
        let (dir, name) = super::cache::split_plain(path);
        if name.starts_with(WHITEOUT_PREFIX) || name.starts_with(COPYUP_PREFIX) {
            return Ok(None);
        }
        let Some(state) = super::cache::lookup_into(dir, capsule) else {
            return Ok(None);
        };
        capsule.push_component(name)?;
        if self.place_of(capsule.as_bytes(), None)? != Place::Overlay {
            return Ok(None);
        }
        Ok(Some(state))
    }

    /// When `path`'s last name lies in a cached directory of a volume: whether the
    /// volume is read-only, its capsule path written into `capsule`, its host path
    /// into `host`. The kernel's answer about that host path is the capsule's, as
    /// long as the last name is not followed (a link in a volume holds a capsule
    /// path): callers use `O_NOFOLLOW` or a call that does not follow it.
    pub fn in_cached_volume_into(
        &self,
        path: &[u8],
        shape: Shape,
        capsule: &mut PathBuf,
        host: &mut PathBuf,
    ) -> Result<Option<bool>, c_int> {
        if !shape.plain || shape.over || self.volumes.is_empty() {
            return Ok(None);
        }
        let (dir, name) = super::cache::split_plain(path);
        if super::cache::lookup_into(dir, capsule).is_none() {
            return Ok(None);
        }
        capsule.push_component(name)?;
        Ok(match self.place_of(capsule.as_bytes(), Some(host))? {
            Place::Volume { read_only } => Some(read_only),
            _ => None,
        })
    }

    /// For an open that only reads: where to try the name, without looking first,
    /// written into `c`. False: resolve the long way. Otherwise the candidates in
    /// order (upper, then lower unless hidden; empty ones are not tried), to be
    /// opened with `O_NOFOLLOW`; a link (`ELOOP`) sends the caller back to the long
    /// way, which follows it inside the capsule. `shape`: `path::shape(path, NAME_MAX)`.
    pub fn read_candidates_into(
        &self,
        path: &[u8],
        shape: Shape,
        c: &mut Candidates,
    ) -> Result<bool, c_int> {
        if shape.over {
            return Ok(false);
        }
        c.lower_unless_whiteout = false;
        if self.direct_host_into(path, shape, &mut c.lower)?.is_some() {
            c.capsule.set(path)?;
            c.upper.clear();
            c.direct = true;
            return Ok(true);
        }
        if self
            .in_cached_volume_into(path, shape, &mut c.capsule, &mut c.lower)?
            .is_some()
        {
            c.upper.clear();
            c.direct = true;
            return Ok(true);
        }
        let Some(state) = self.in_cached_dir_into(path, shape, &mut c.capsule)? else {
            return Ok(false);
        };
        c.direct = false;
        c.upper.clear();
        c.lower.clear();
        if state.in_upper && self.upper.is_some() {
            self.upper_host_into(c.capsule.as_bytes(), &mut c.upper)?;
        }
        if state.lower_visible {
            self.lower_host_into(c.capsule.as_bytes(), &mut c.lower)?;
            c.lower_unless_whiteout = !c.upper.is_empty();
        }
        Ok(true)
    }

    /// For a removal: the upper-layer host path of `path`, written into `host`, when
    /// its directory is known (cached) to be in the upper layer alone, so that the
    /// kernel's unlink or rmdir says all (no lower name to hide, no marker to mind).
    /// False: the long way. `shape`: `path::shape(path, NAME_MAX)`.
    pub fn upper_only_into(
        &self,
        path: &[u8],
        shape: Shape,
        host: &mut PathBuf,
    ) -> Result<bool, c_int> {
        let mut capsule = PathBuf::new();
        Ok(self.cached_upper_into(path, shape, &mut capsule, host)? == Some(false))
    }

    /// For a change of `path`'s last name in a cached directory the upper layer has
    /// (which may merge a lower one): the name's capsule path in `capsule`, its upper
    /// host path in `upper`, and whether the directory shows lower names. `None`:
    /// resolve the long way.
    pub fn cached_upper_into(
        &self,
        path: &[u8],
        shape: Shape,
        capsule: &mut PathBuf,
        upper: &mut PathBuf,
    ) -> Result<Option<bool>, c_int> {
        if shape.over {
            return Ok(None);
        }
        let Some(state) = self.in_cached_dir_into(path, shape, capsule)? else {
            return Ok(None);
        };
        if !state.in_upper || self.upper.is_none() || self.read_only {
            return Ok(None);
        }
        self.upper_host_into(capsule.as_bytes(), upper)?;
        Ok(Some(state.lower_visible))
    }

    /// Whether the lower layer has capsule path `capsule` (one `lstat`); `None` when
    /// it cannot tell (no permission to look, say).
    pub fn lower_has(&self, capsule: &[u8]) -> Result<Option<bool>, c_int> {
        let mut lower = PathBuf::new();
        self.lower_host_into(capsule, &mut lower)?;
        let mut st = zeroed_stat();
        if sys::lstat(&lower, &mut st) {
            return Ok(Some(true));
        }
        match crate::hook::errno() {
            libc::ENOENT | libc::ENOTDIR => Ok(Some(false)),
            _ => Ok(None),
        }
    }

    /// Caches what the walk found out about the directory of `path`'s last name.
    fn remember(&self, generation: u64, path: &[u8], node: &Node) {
        if node.capsule.is_root() || node.place == Place::Passthrough {
            return;
        }
        if let Some((dir, _)) = super::cache::split(path) {
            let through_link = dir != node.capsule.parent_bytes();
            // A volume is shared with the host and other capsules, whose changes
            // bump no generation of ours: only a directory reached without a link
            // (which only a removal or rename can change) is cached there.
            if through_link && node.place != Place::Overlay {
                return;
            }
            if through_link {
                super::cache::links_cached();
            }
            super::cache::insert(
                generation,
                dir,
                node.capsule.parent_bytes(),
                node.parent_state,
            );
        }
    }

    /// One walk from the capsule's `/`, building the node in `node`: true when done,
    /// false when a link sends it elsewhere (the path to walk next in `restart`).
    fn walk(
        &self,
        bytes: &[u8],
        follow_last: bool,
        node: &mut Node,
        restart: &mut PathBuf,
    ) -> Result<bool, c_int> {
        // What the walk knows inside each directory it passed, by depth.
        let mut states = [DirState {
            in_upper: false,
            lower_visible: true,
        }; 128];
        states[0] = DirState {
            in_upper: self.upper.is_some(),
            lower_visible: true,
        };
        let mut depth = 0usize;
        // `node` is the directory reached so far, then the name looked up in it.
        self.walk_root_into(node);
        let total = components(bytes).count();
        let trailing_slash = bytes.len() > 1 && bytes.ends_with(b"/");
        for (index, name) in components(bytes).enumerate() {
            let last = index + 1 == total;
            if name == b".." {
                if depth > 0 {
                    depth -= 1;
                    if depth == 0 {
                        self.walk_root_into(node);
                    } else {
                        node.capsule.pop();
                        self.locate_into(node, states[depth - 1])?;
                    }
                }
                continue;
            }
            node.capsule.push_component(name)?;
            self.locate_into(node, states[depth])?;
            if node.place == Place::Passthrough {
                self.check_proc_way(node.capsule.as_bytes())?;
            }
            if !node.exists() {
                return if last { Ok(true) } else { Err(libc::ENOENT) };
            }
            if node.is_symlink() && (!last || follow_last || trailing_slash) {
                let mut target = PathBuf::new();
                sys::readlink(&node.host, &mut target)?;
                // Links in /proc (self/cwd, self/exe, fd/N, self/root) hold host paths.
                if is_within(node.capsule.as_bytes(), b"/proc") {
                    if self.is_object_link(node, &target)? {
                        let rest = components(bytes).skip(index + 1);
                        return self.object_into(node, rest, trailing_slash).map(|()| true);
                    }
                    self.map_proc_link(node.capsule.as_bytes(), &mut target)?;
                }
                restart.clear();
                if !target.as_bytes().starts_with(b"/") {
                    // The directory the link is in.
                    restart.push_bytes(node.capsule.parent_bytes())?;
                    restart.push_bytes(b"/")?;
                }
                restart.push_bytes(target.as_bytes())?;
                for rest in components(bytes).skip(index + 1) {
                    restart.push_bytes(b"/")?;
                    restart.push_bytes(rest)?;
                }
                if trailing_slash {
                    restart.push_bytes(b"/")?;
                }
                return Ok(false);
            }
            if last {
                if trailing_slash && !node.is_dir() {
                    return Err(libc::ENOTDIR);
                }
                return Ok(true);
            }
            if !node.is_dir() {
                return Err(libc::ENOTDIR);
            }
            depth += 1;
            if depth >= states.len() {
                return Err(libc::ENAMETOOLONG);
            }
            states[depth] = self.dir_state(node);
        }
        // No component left (the path was `/` or ended in `..`): that directory.
        if node.capsule.is_root() {
            self.root_node_into(node)?;
        }
        Ok(true)
    }

    /// Refuses (`EACCES`, as the kernel does for a process one may not trace) the
    /// ways into another process's files (`/proc/PID/fd`, `cwd`, `root`, `exe`,
    /// `map_files`, and their `task/TID` forms) unless that process is the
    /// capsule's.
    fn check_proc_way(&self, capsule: &[u8]) -> Result<(), c_int> {
        let Some((pid, _, 0)) = proc_way(capsule) else {
            return Ok(());
        };
        if !pid.iter().all(u8::is_ascii_digit) || is_own_pid(pid) || self.is_capsule_process(pid) {
            return Ok(());
        }
        Err(libc::EACCES)
    }

    /// Whether process `pid` (decimal) runs in this capsule: its environment holds
    /// one of the capsule's own entries (its state directory or upper layer).
    fn is_capsule_process(&self, pid: &[u8]) -> bool {
        if self.members.is_empty() {
            return false;
        }
        let Ok(mut path) = PathBuf::from_bytes(b"/proc/") else {
            return false;
        };
        if path.push_bytes(pid).is_err() || path.push_bytes(b"/environ").is_err() {
            return false;
        }
        // SAFETY: a NUL-terminated path; the descriptor is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return false;
        }
        let mut environ = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n <= 0 || environ.len() > 4 << 20 {
                break;
            }
            environ.extend_from_slice(&chunk[..n as usize]);
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        environ
            .split(|&b| b == 0)
            .any(|entry| self.members.iter().any(|m| m.as_slice() == entry))
    }

    /// Whether the `/proc` link `node` (read: `target`) is a descriptor's or a
    /// mapping's magic link whose object has no name in the capsule: a pipe, socket
    /// or other object without a path, a deleted file, or (inherited from outside)
    /// a file outside the capsule's view. The kernel must then follow the link
    /// itself; none of these is a lower-layer name. Other magic links are mapped to
    /// the capsule path of what they name (`map_proc_link`), so that a change through
    /// them copies up like any other.
    pub fn is_object_link(&self, node: &Node, target: &PathBuf) -> Result<bool, c_int> {
        let Some((pid, name, 1)) = proc_way(node.capsule.as_bytes()) else {
            return Ok(false);
        };
        if name != b"fd" && name != b"map_files" {
            return Ok(false);
        }
        if !target.as_bytes().starts_with(b"/") {
            return Ok(true);
        }
        // A descriptor open for writing was handed in so (the capsule's own opens
        // of lower files for writing copy them up first): reopening it gives nothing
        // more (`echo >/dev/stdout` with stdout redirected to a host file).
        if name == b"fd" && fd_writable(pid, node.capsule.file_name()) {
            return Ok(true);
        }
        let mut st = zeroed_stat();
        // SAFETY: a NUL-terminated path and a valid buffer.
        if unsafe { libc::stat(node.host.as_ptr(), &mut st) } != 0 {
            return Err(crate::hook::errno());
        }
        if st.st_nlink == 0 {
            return Ok(true);
        }
        let mut mapped = PathBuf::new();
        Ok(!self.reverse_into(target.as_bytes(), &mut mapped))
    }

    /// Makes `node` (an object link, see `is_object_link`) the host path the kernel
    /// follows, with the components after it.
    fn object_into<'a>(
        &self,
        node: &mut Node,
        rest: impl Iterator<Item = &'a [u8]>,
        trailing_slash: bool,
    ) -> Result<(), c_int> {
        let mut more = false;
        for name in rest {
            node.host.push_bytes(b"/")?;
            node.host.push_bytes(name)?;
            node.capsule.push_bytes(b"/")?;
            node.capsule.push_bytes(name)?;
            more = true;
        }
        if trailing_slash {
            node.host.push_bytes(b"/")?;
        }
        node.place = Place::Passthrough;
        // SAFETY: a NUL-terminated path and a valid buffer.
        if unsafe { libc::stat(node.host.as_ptr(), &mut node.stat) } == 0 {
            node.found = Found::Direct;
            return Ok(());
        }
        let e = crate::hook::errno();
        node.stat = zeroed_stat();
        node.found = Found::Missing;
        if more && e == libc::ENOENT {
            return Ok(()); // a name to create, in a directory the kernel reaches
        }
        Err(e)
    }

    /// Maps the host path the `/proc` link `link` (a capsule path) holds into the
    /// capsule: a process's `root` is the capsule's `/`, a `cwd` outside the capsule
    /// shows as `/`, this process's `exe` is its program even when the root's
    /// dynamic loader runs it, other absolute targets outside the capsule are
    /// `ENOENT` (never revealed).
    pub fn map_proc_link(&self, link: &[u8], target: &mut PathBuf) -> Result<(), c_int> {
        if !target.as_bytes().starts_with(b"/") {
            return Ok(()); // "socket:[123]", "pipe:[4]", relative links
        }
        let link_name = match link.iter().rposition(|&b| b == b'/') {
            Some(i) => &link[i + 1..],
            None => link,
        };
        if link_name == b"exe" && is_own_proc_entry(link) {
            if let Some(program) = crate::exec::interp::explicit_program() {
                target.set(program.to_bytes())?;
            }
        }
        if link_name == b"root" {
            *target = PathBuf::root();
            return Ok(());
        }
        match self.reverse(target.as_bytes()) {
            Some(mapped) => *target = mapped,
            None if link_name == b"cwd" => *target = PathBuf::root(),
            None => return Err(libc::ENOENT),
        }
        Ok(())
    }

    /// Maps a host path back to the capsule path it shows as, if it has one.
    ///
    /// (A `/proc/self/exe` whose process was started by a root's loader is mapped
    /// by `map_proc_link`.)
    pub fn reverse(&self, host: &[u8]) -> Option<PathBuf> {
        let mut p = PathBuf::new();
        self.reverse_into(host, &mut p).then_some(p)
    }

    /// `reverse`, written into `out`; false (and `out` unspecified) when `host` has
    /// no capsule path.
    pub fn reverse_into(&self, host: &[u8], out: &mut PathBuf) -> bool {
        let strip = |out: &mut PathBuf, prefix: &[u8], capsule_base: &[u8]| -> bool {
            if !is_within(host, prefix) {
                return false;
            }
            let rest = if prefix == b"/" {
                host
            } else {
                &host[prefix.len()..]
            };
            if out.set(capsule_base).is_err() {
                return false;
            }
            if out.is_root() && !rest.is_empty() {
                out.clear();
            }
            if out.push_bytes(rest).is_err() {
                return false;
            }
            !out.is_empty() || out.push_bytes(b"/").is_ok()
        };
        // Volumes by host path, longest first (a stable sort: ties keep their order);
        // the usual few without allocating.
        let mut few = [0usize; 16];
        let mut many = Vec::new();
        let order: &mut [usize] = if self.volumes.len() <= few.len() {
            &mut few[..self.volumes.len()]
        } else {
            many.resize(self.volumes.len(), 0);
            &mut many
        };
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i;
        }
        order.sort_by_key(|&i| std::cmp::Reverse(self.volumes[i].host.len()));
        for &i in order.iter() {
            let v = &self.volumes[i];
            if strip(out, &v.host, &v.path) {
                return true;
            }
        }
        if let Some(upper) = &self.upper {
            if strip(out, upper, b"/") {
                return true;
            }
        }
        match &self.root {
            Some(root) => {
                if strip(out, root, b"/") {
                    return true;
                }
                if PASSTHROUGH.iter().any(|p| is_within(host, p)) {
                    return out.set(host).is_ok();
                }
                false
            }
            None => out.set(host).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ways_into_a_process_are_recognised_in_every_form() {
        assert_eq!(
            proc_way(b"/proc/12/fd/3"),
            Some((&b"12"[..], &b"fd"[..], 1))
        );
        assert_eq!(proc_way(b"/proc/12/fd"), Some((&b"12"[..], &b"fd"[..], 0)));
        assert_eq!(
            proc_way(b"/proc/self/task/13/cwd/etc"),
            Some((&b"self"[..], &b"cwd"[..], 1))
        );
        assert_eq!(
            proc_way(b"/proc/12/map_files/1-2"),
            Some((&b"12"[..], &b"map_files"[..], 1))
        );
        for other in [
            &b"/proc/12/status"[..],
            b"/proc/sys/kernel/hostname",
            b"/proc",
            b"/etc/fd/1",
        ] {
            assert_eq!(proc_way(other), None, "{}", String::from_utf8_lossy(other));
        }
        assert!(is_dev_fd_link(b"/dev/fd/0") && is_dev_fd_link(b"/dev/stdin"));
        assert!(!is_dev_fd_link(b"/dev/null") && !is_dev_fd_link(b"/dev/fdx"));
    }

    #[test]
    fn a_descriptor_open_for_writing_is_told_from_a_read_only_one() {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let mut digits = crate::decimal::Digits::default();
        let pid = crate::decimal::decimal(pid as u64, &mut digits).to_vec();
        // SAFETY: opening /dev/null; the descriptors are closed below.
        let (r, w) = unsafe {
            (
                libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY),
                libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY),
            )
        };
        let name = |fd: i32| fd.to_string().into_bytes();
        assert!(!fd_writable(&pid, &name(r)));
        assert!(fd_writable(&pid, &name(w)));
        // Another process's descriptors are read from /proc/PID/fdinfo: our own
        // pid through that route gives the same answers.
        assert!(!fd_writable(b"self", &name(r)));
        assert!(fd_writable(b"self", &name(w)));
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }
}
