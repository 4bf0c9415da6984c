//! Where a capsule path lives: the layers of a capsule and the walk that resolves a
//! capsule path, component by component, into a host path.
//!
//! The walk resolves `..` and symbolic links itself, inside the capsule: an absolute
//! link target starts again at the capsule's `/`, `..` stops there, and links read
//! from `/proc` (whose targets are host paths) are mapped back to capsule paths. So
//! neither `..` nor a link nor `/proc/self/root` leads out of the root.

use std::ffi::c_int;

use capsule_config::FsConfig;

use super::path::{components, is_within, PathBuf};
use super::sys;

/// The longest name of one path component (`NAME_MAX`).
const NAME_MAX: usize = 255;
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

/// Where a read-only open tries a name (see `Layers::read_candidates`).
pub struct Candidates {
    pub capsule: PathBuf,
    pub upper: Option<PathBuf>,
    pub lower: Option<PathBuf>,
    /// A volume or host name (`lower` is its host path): no layers involved.
    pub direct: bool,
}

#[allow(clippy::large_enum_variant)] // lives on the stack for one call, never in a collection
enum Step {
    Done(Node),
    Restart(PathBuf),
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
        }
    }

    /// Whether names outside volumes can be changed at all.
    pub fn writable(&self) -> bool {
        self.upper.is_some() && !self.read_only
    }

    pub fn lower_host(&self, capsule: &[u8]) -> Result<PathBuf, c_int> {
        match &self.root {
            Some(root) => PathBuf::prefixed(root, capsule),
            None => PathBuf::from_bytes(capsule),
        }
    }

    pub fn upper_host(&self, capsule: &[u8]) -> Result<PathBuf, c_int> {
        match &self.upper {
            Some(upper) => PathBuf::prefixed(upper, capsule),
            None => Err(libc::EROFS),
        }
    }

    /// The upper-layer whiteout marker of a capsule path.
    pub fn whiteout_host(&self, capsule: &PathBuf) -> Result<PathBuf, c_int> {
        let mut p = self.upper_host(capsule.parent_bytes())?;
        p.push_component(WHITEOUT_PREFIX)?;
        p.push_bytes(capsule.file_name())?;
        Ok(p)
    }

    fn volume_of(&self, capsule: &[u8]) -> Option<&Volume> {
        self.volumes.iter().find(|v| is_within(capsule, &v.path))
    }

    fn is_passthrough(&self, capsule: &[u8]) -> bool {
        PASSTHROUGH.iter().any(|p| is_within(capsule, p))
    }

    /// The place of a capsule path and, for volumes and passthrough, its host path.
    fn place_of(&self, capsule: &[u8]) -> Result<(Place, Option<PathBuf>), c_int> {
        if let Some(v) = self.volume_of(capsule) {
            let mut host = PathBuf::from_bytes(&v.host)?;
            host.push_bytes(&capsule[v.path.len()..])?;
            return Ok((
                Place::Volume {
                    read_only: v.read_only,
                },
                Some(host),
            ));
        }
        if self.is_passthrough(capsule) {
            return Ok((Place::Passthrough, Some(PathBuf::from_bytes(capsule)?)));
        }
        Ok((Place::Overlay, None))
    }

    /// Looks up one name whose parent directory the walk has reached.
    fn locate(&self, capsule: PathBuf, parent: DirState) -> Result<Node, c_int> {
        let (place, direct) = self.place_of(capsule.as_bytes())?;
        let mut node = Node {
            capsule,
            place,
            found: Found::Missing,
            host: PathBuf::new(),
            stat: zeroed_stat(),
            lower_visible: parent.lower_visible,
            parent_state: parent,
            whiteout: false,
        };
        if let Some(host) = direct {
            if sys::lstat(&host, &mut node.stat) {
                node.found = Found::Direct;
            }
            node.host = host;
            return Ok(node);
        }
        let name = node.capsule.file_name();
        if name.starts_with(WHITEOUT_PREFIX) || name.starts_with(COPYUP_PREFIX) {
            // The layers' own markers are not names of the capsule.
            return Ok(node);
        }
        if parent.in_upper && self.upper.is_some() {
            let up = self.upper_host(node.capsule.as_bytes())?;
            if sys::lstat(&up, &mut node.stat) {
                node.found = Found::Upper;
                node.host = up;
                return Ok(node);
            }
            // A whiteout matters only where the lower layer shows through.
            if parent.lower_visible
                && !node.capsule.is_root()
                && sys::exists(&self.whiteout_host(&node.capsule)?)
            {
                node.lower_visible = false;
                node.whiteout = true;
            }
        }
        if node.lower_visible {
            let low = self.lower_host(node.capsule.as_bytes())?;
            if sys::lstat(&low, &mut node.stat) {
                node.found = Found::Lower;
                node.host = low;
            }
        }
        Ok(node)
    }

    /// What the walk knows, inside directory `node`, about its entries.
    fn dir_state(&self, node: &Node) -> DirState {
        match node.found {
            Found::Upper => {
                let opaque = self
                    .upper_host(node.capsule.as_bytes())
                    .and_then(|mut p| p.push_component(OPAQUE_MARKER).map(|_| p))
                    .map(|p| sys::exists(&p))
                    .unwrap_or(false);
                // Lower entries show through only if the lower layer has this
                // directory too (one lstat, then cached with the directory).
                let lower_dir = node.lower_visible
                    && !opaque
                    && self
                        .lower_host(node.capsule.as_bytes())
                        .map(|p| {
                            let mut st = zeroed_stat();
                            sys::lstat(&p, &mut st) && st.st_mode & libc::S_IFMT == libc::S_IFDIR
                        })
                        .unwrap_or(false);
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

    /// The node of the capsule's `/` as the walk starts from it (no system call).
    fn walk_root(&self) -> Node {
        Node {
            capsule: PathBuf::root(),
            place: Place::Overlay,
            found: Found::Lower,
            host: PathBuf::new(),
            stat: zeroed_stat(),
            lower_visible: true,
            parent_state: DirState {
                in_upper: self.upper.is_some(),
                lower_visible: true,
            },
            whiteout: false,
        }
    }

    /// The node of the capsule's `/` itself: the lower root, what `/` looks like.
    fn root_node(&self) -> Result<Node, c_int> {
        let mut node = self.walk_root();
        node.host = self.lower_host(b"/")?;
        if !sys::lstat(&node.host, &mut node.stat) {
            return Err(libc::ENOENT);
        }
        Ok(node)
    }

    /// Resolves an absolute capsule path. Links in every component but the last are
    /// followed; the last one's too when `follow_last`. A missing last component is
    /// not an error (the caller may create it); a missing directory on the way is
    /// `ENOENT`, a non-directory on the way `ENOTDIR`.
    pub fn resolve(&self, path: &[u8], follow_last: bool) -> Result<Node, c_int> {
        if components(path).any(|c| c.len() > NAME_MAX) {
            return Err(libc::ENAMETOOLONG);
        }
        if let Some(node) = self.direct(path, follow_last)? {
            return Ok(node);
        }
        if let Some(node) = self.cached(path, follow_last)? {
            return Ok(node);
        }
        // Read before the walk: a change during the walk makes what it found stale.
        let generation = super::cache::generation();
        let mut pending = PathBuf::from_bytes(path)?;
        let mut links = 0;
        loop {
            match self.walk(&pending, follow_last)? {
                Step::Done(node) => {
                    if let (0, Some(generation)) = (links, generation) {
                        self.remember(generation, path, &node);
                    }
                    return Ok(node);
                }
                Step::Restart(next) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(libc::ELOOP);
                    }
                    pending = next;
                }
            }
        }
    }

    /// A name in `/dev`, `/sys`, `/proc` or a volume, given without `..`: the host's
    /// own file system, which the kernel resolves in one call. Paths through
    /// `/proc/*/root` and `/proc/*/cwd` (host paths) are walked instead.
    fn direct(&self, path: &[u8], follow_last: bool) -> Result<Option<Node>, c_int> {
        let Some((place, host)) = self.direct_host(path)? else {
            return Ok(None);
        };
        let mut node = Node {
            capsule: PathBuf::from_bytes(path)?,
            place,
            found: Found::Missing,
            host,
            stat: zeroed_stat(),
            lower_visible: true,
            parent_state: DirState {
                in_upper: false,
                lower_visible: true,
            },
            whiteout: false,
        };
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
        Ok(Some(node))
    }

    /// The host path of a name the kernel may resolve by itself: in `/dev`, `/sys`,
    /// `/proc` or a volume, given without `..`, and not through `/proc/*/root` or
    /// `/proc/*/cwd` (whose targets are host paths the walk must map).
    fn direct_host(&self, path: &[u8]) -> Result<Option<(Place, PathBuf)>, c_int> {
        if !path.starts_with(b"/") || components(path).any(|c| c == b"..") {
            return Ok(None);
        }
        let (place, Some(host)) = self.place_of(path)? else {
            return Ok(None);
        };
        // `exe` too: a program run by its root's loader must not open the loader.
        if is_within(path, b"/proc")
            && components(path).any(|c| c == b"root" || c == b"cwd" || c == b"exe")
        {
            return Ok(None);
        }
        Ok(Some((place, host)))
    }

    /// Resolves the last name of `path` in its directory, when what the walk knows
    /// about that directory is cached and still valid.
    fn cached(&self, path: &[u8], follow_last: bool) -> Result<Option<Node>, c_int> {
        let Some((dir, name)) = super::cache::split(path) else {
            return Ok(None);
        };
        let Some((canonical, state)) = super::cache::lookup(dir) else {
            return Ok(None);
        };
        let mut capsule = canonical;
        capsule.push_component(name)?;
        let node = self.locate(capsule, state)?;
        if node.is_symlink() && (follow_last || path.ends_with(b"/")) {
            return Ok(None); // let the walk follow it
        }
        if path.ends_with(b"/") && node.exists() && !node.is_dir() {
            return Err(libc::ENOTDIR);
        }
        Ok(Some(node))
    }

    /// The capsule path of `path`'s last name and what is known inside its directory,
    /// when that directory is cached, the name is not a layer marker and lies in the
    /// layers (not a volume or host directory).
    fn in_cached_dir(&self, path: &[u8]) -> Result<Option<(PathBuf, DirState)>, c_int> {
        let Some((dir, name)) = super::cache::split(path) else {
            return Ok(None);
        };
        if name.starts_with(WHITEOUT_PREFIX) || name.starts_with(COPYUP_PREFIX) {
            return Ok(None);
        }
        let Some((mut capsule, state)) = super::cache::lookup(dir) else {
            return Ok(None);
        };
        capsule.push_component(name)?;
        if self.place_of(capsule.as_bytes())?.0 != Place::Overlay {
            return Ok(None);
        }
        Ok(Some((capsule, state)))
    }

    /// For an open that only reads: where to try the name, without looking first.
    /// `None`: resolve the long way. Otherwise the candidates in order (upper, then
    /// lower unless hidden), to be opened with `O_NOFOLLOW`; a link (`ELOOP`) sends
    /// the caller back to the long way, which follows it inside the capsule.
    pub fn read_candidates(&self, path: &[u8]) -> Result<Option<Candidates>, c_int> {
        if let Some((_, host)) = self.direct_host(path)? {
            return Ok(Some(Candidates {
                capsule: PathBuf::from_bytes(path)?,
                upper: None,
                lower: Some(host),
                direct: true,
            }));
        }
        let Some((capsule, state)) = self.in_cached_dir(path)? else {
            return Ok(None);
        };
        let upper = if state.in_upper && self.upper.is_some() {
            Some(self.upper_host(capsule.as_bytes())?)
        } else {
            None
        };
        let mut lower_visible = state.lower_visible;
        if lower_visible && upper.is_some() && sys::exists(&self.whiteout_host(&capsule)?) {
            lower_visible = false;
        }
        let lower = if lower_visible {
            Some(self.lower_host(capsule.as_bytes())?)
        } else {
            None
        };
        Ok(Some(Candidates {
            capsule,
            upper,
            lower,
            direct: false,
        }))
    }

    /// For a removal: the upper-layer host path of `path` when its directory is known
    /// (cached) to be in the upper layer alone, so that the kernel's unlink or rmdir
    /// says all (no lower name to hide, no marker to mind). `None`: the long way.
    pub fn upper_only(&self, path: &[u8]) -> Result<Option<PathBuf>, c_int> {
        let Some((capsule, state)) = self.in_cached_dir(path)? else {
            return Ok(None);
        };
        if !state.in_upper || state.lower_visible || self.upper.is_none() || self.read_only {
            return Ok(None);
        }
        Ok(Some(self.upper_host(capsule.as_bytes())?))
    }

    /// Caches what the walk found out about the directory of `path`'s last name.
    fn remember(&self, generation: u64, path: &[u8], node: &Node) {
        if node.capsule.is_root() || node.place != Place::Overlay {
            return;
        }
        if let Some((dir, _)) = super::cache::split(path) {
            super::cache::insert(
                generation,
                dir,
                node.capsule.parent_bytes(),
                node.parent_state,
            );
        }
    }

    /// One walk from the capsule's `/`, until done or a link sends it elsewhere.
    fn walk(&self, pending: &PathBuf, follow_last: bool) -> Result<Step, c_int> {
        let bytes = pending.as_bytes();
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
        let mut cur = self.walk_root();
        let total = components(bytes).count();
        let trailing_slash = bytes.len() > 1 && bytes.ends_with(b"/");
        for (index, name) in components(bytes).enumerate() {
            let last = index + 1 == total;
            if name == b".." {
                if depth > 0 {
                    depth -= 1;
                    let mut parent = PathBuf::from_bytes(cur.capsule.as_bytes())?;
                    parent.pop();
                    cur = if depth == 0 {
                        self.walk_root()
                    } else {
                        self.locate(parent, states[depth - 1])?
                    };
                }
                continue;
            }
            let mut capsule = PathBuf::from_bytes(cur.capsule.as_bytes())?;
            capsule.push_component(name)?;
            let node = self.locate(capsule, states[depth])?;
            if !node.exists() {
                return if last {
                    Ok(Step::Done(node))
                } else {
                    Err(libc::ENOENT)
                };
            }
            if node.is_symlink() && (!last || follow_last || trailing_slash) {
                let mut target = PathBuf::new();
                sys::readlink(&node.host, &mut target)?;
                // Links in /proc (self/cwd, self/exe, fd/N, self/root) hold host paths.
                if is_within(node.capsule.as_bytes(), b"/proc") {
                    self.map_proc_link(node.capsule.as_bytes(), &mut target)?;
                }
                let mut next = PathBuf::new();
                if !target.as_bytes().starts_with(b"/") {
                    next.push_bytes(cur.capsule.as_bytes())?;
                    next.push_bytes(b"/")?;
                }
                next.push_bytes(target.as_bytes())?;
                for rest in components(bytes).skip(index + 1) {
                    next.push_bytes(b"/")?;
                    next.push_bytes(rest)?;
                }
                if trailing_slash {
                    next.push_bytes(b"/")?;
                }
                return Ok(Step::Restart(next));
            }
            if last {
                if trailing_slash && !node.is_dir() {
                    return Err(libc::ENOTDIR);
                }
                return Ok(Step::Done(node));
            }
            if !node.is_dir() {
                return Err(libc::ENOTDIR);
            }
            depth += 1;
            if depth >= states.len() {
                return Err(libc::ENAMETOOLONG);
            }
            states[depth] = self.dir_state(&node);
            cur = node;
        }
        // No component left (the path was `/` or ended in `..`): that directory.
        if cur.capsule.is_root() {
            return Ok(Step::Done(self.root_node()?));
        }
        Ok(Step::Done(cur))
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
        let strip = |prefix: &[u8], capsule_base: &[u8]| -> Option<PathBuf> {
            if !is_within(host, prefix) {
                return None;
            }
            let rest = if prefix == b"/" {
                host
            } else {
                &host[prefix.len()..]
            };
            let mut p = PathBuf::from_bytes(capsule_base).ok()?;
            if p.is_root() && !rest.is_empty() {
                p.clear();
            }
            p.push_bytes(rest).ok()?;
            if p.len() == 0 {
                p.push_bytes(b"/").ok()?;
            }
            Some(p)
        };
        let mut by_host: Vec<&Volume> = self.volumes.iter().collect();
        by_host.sort_by_key(|v| std::cmp::Reverse(v.host.len()));
        for v in by_host {
            if let Some(p) = strip(&v.host, &v.path) {
                return Some(p);
            }
        }
        if let Some(upper) = &self.upper {
            if let Some(p) = strip(upper, b"/") {
                return Some(p);
            }
        }
        match &self.root {
            Some(root) => {
                if let Some(p) = strip(root, b"/") {
                    return Some(p);
                }
                if PASSTHROUGH.iter().any(|p| is_within(host, p)) {
                    return PathBuf::from_bytes(host).ok();
                }
                None
            }
            None => PathBuf::from_bytes(host).ok(),
        }
    }
}
