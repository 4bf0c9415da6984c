//! The cached fast paths: answers about a name that need no walk, because the walk
//! has seen its directory (the directory cache) or because the name is the host's
//! own (`/dev`, `/sys`, `/proc`) and the kernel resolves it in one call.

use std::ffi::c_int;

use super::reverse::{is_dev_fd_link, proc_way};
use super::{
    zeroed_stat, Candidates, DirState, Found, Layers, Node, Place, COPYUP_PREFIX, WHITEOUT_PREFIX,
};
use crate::fs::path::{PathBuf, Shape};
use crate::fs::sys;

impl Layers {
    /// A name in `/dev`, `/sys` or `/proc`, given without `..`: the host's own file
    /// system, which the kernel resolves in one call. Paths through
    /// `/proc/*/root` and `/proc/*/cwd` (host paths) are walked instead. False: not
    /// such a name (`node` unspecified).
    pub(super) fn direct_into(
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
    pub(super) fn cached_into(
        &self,
        path: &[u8],
        follow_last: bool,
        node: &mut Node,
    ) -> Result<bool, c_int> {
        let (dir, name) = crate::fs::cache::split_plain(path);
        let Some(state) = crate::fs::cache::lookup_into(dir, &mut node.capsule) else {
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
        let (dir, name) = crate::fs::cache::split_plain(path);
        if name.starts_with(WHITEOUT_PREFIX) || name.starts_with(COPYUP_PREFIX) {
            return Ok(None);
        }
        let Some(state) = crate::fs::cache::lookup_into(dir, capsule) else {
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
        let (dir, name) = crate::fs::cache::split_plain(path);
        if crate::fs::cache::lookup_into(dir, capsule).is_none() {
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
}
