//! Where a capsule path lives: the layers of a capsule and the walk that resolves a
//! capsule path, component by component, into a host path.
//!
//! The walk resolves `..` and symbolic links itself, inside the capsule: an absolute
//! link target starts again at the capsule's `/`, `..` stops there, and links read
//! from `/proc` (whose targets are host paths) are mapped back to capsule paths. So
//! neither `..` nor a link nor `/proc/self/root` leads out of the root.
//!
//! The module's parts, one concern each, all methods of [`Layers`]:
//! - `config`: the layers and volumes a capsule has, and the host path of a capsule
//!   path in each;
//! - `resolve`: the walk, component by component, with its directory cache;
//! - `fast`: the cached fast paths that answer without walking (a name in a
//!   directory the walk has seen, a read-only open's candidates, the host's own
//!   `/dev`, `/sys`, `/proc`);
//! - `reverse`: `/proc` (the ways into a process, its magic links) and the mapping
//!   of host paths back to capsule paths.

mod config;
mod fast;
mod resolve;
mod reverse;

pub use config::Volume;

use crate::fs::path::PathBuf;

/// Host file systems every capsule sees through (devices, processes, kernel state:
/// never copied up).
const PASSTHROUGH: &[&[u8]] = &[b"/proc", b"/dev", b"/sys"];
/// Marker of a deleted name in the upper layer (OCI image layers use the same).
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Temporary names of copy-ups in progress.
pub const COPYUP_PREFIX: &[u8] = b".capsule-copyup-";
/// Marker of a directory whose lower entries are hidden.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

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

fn zeroed_stat() -> libc::stat {
    // SAFETY: stat is plain data.
    unsafe { std::mem::zeroed() }
}
