//! The walk: a capsule path resolved component by component into a host path, `..`
//! and symbolic links inside the capsule, what it learns about directories cached.

use std::ffi::c_int;

use super::{
    zeroed_stat, DirState, Found, Layers, Node, Place, COPYUP_PREFIX, OPAQUE_MARKER,
    WHITEOUT_PREFIX,
};
use crate::fs::path::{components, is_within, PathBuf, Shape, NAME_MAX};
use crate::fs::sys;

/// The most symbolic links one resolution follows (as the kernel's `MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;

impl Layers {
    /// Looks up one name whose parent directory the walk has reached: `node.capsule`
    /// holds its capsule path; every other field of `node` is set here.
    pub(super) fn locate_into(&self, node: &mut Node, parent: DirState) -> Result<(), c_int> {
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
        self.resolve_shaped(
            path,
            crate::fs::path::shape(path, NAME_MAX),
            follow_last,
            node,
        )
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
        if path.len() >= crate::fs::path::PATH_MAX {
            return Err(crate::fs::path::TOO_LONG);
        }
        // Read before the walk: a change during the walk makes what it found stale.
        let generation = crate::fs::cache::generation();
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

    /// Caches what the walk found out about the directory of `path`'s last name.
    fn remember(&self, generation: u64, path: &[u8], node: &Node) {
        if node.capsule.is_root() || node.place == Place::Passthrough {
            return;
        }
        if let Some((dir, _)) = crate::fs::cache::split(path) {
            let through_link = dir != node.capsule.parent_bytes();
            // A volume is shared with the host and other capsules, whose changes
            // bump no generation of ours: only a directory reached without a link
            // (which only a removal or rename can change) is cached there.
            if through_link && node.place != Place::Overlay {
                return;
            }
            if through_link {
                crate::fs::cache::links_cached();
            }
            crate::fs::cache::insert(
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
}
