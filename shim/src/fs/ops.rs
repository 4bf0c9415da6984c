//! The file-system operations in capsule terms: each takes the caller's path
//! arguments, resolves them in the capsule, prepares the layers (copy-up, parent
//! directories, whiteouts) and says which host path the real call must use.
//!
//! The path core's API, shared by the preload hooks and the system-call layer:
//! - [`Name`]: a path argument made absolute in the capsule once per call;
//! - [`resolve`] / [`Name::resolve_into`]: the node an existing name is, for an
//!   [`Intent`] (read it, or change it: copied up first);
//! - [`open_into`]: an open's plan (create, copy up, truncate, `O_TMPFILE`);
//! - [`create_path`], [`remove`], [`rename`], [`link`]: the name-changing calls.

use std::ffi::{c_int, CStr};

use super::cow;
use super::layers::{Found, Layers, Node, Place};
use super::path::{PathBuf, Shape, NAME_MAX};
use super::sys;

// The shim-wide outcome (`hook.rs`), under the names the file-system hooks use.
pub use crate::hook::{Outcome as Op, Skip};

/// The capsule's working directory (the real one, mapped back; `/` when the real one
/// lies outside the capsule).
pub fn cwd(layers: &Layers) -> PathBuf {
    let mut out = PathBuf::new();
    cwd_into(layers, &mut out);
    out
}

/// `cwd`, written into `out`.
pub fn cwd_into(layers: &Layers, out: &mut PathBuf) {
    let mut buf = [0u8; super::path::PATH_MAX];
    // SAFETY: the buffer is valid for its length.
    let p = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if !p.is_null() {
        // SAFETY: getcwd wrote a NUL-terminated string.
        let host = unsafe { CStr::from_ptr(p) }.to_bytes();
        if layers.reverse_into(host, out) {
            return;
        }
    }
    out.clear();
    let _ = out.push_bytes(b"/");
}

/// The capsule path of what descriptor `fd` refers to, if it is in the capsule.
pub fn fd_path(layers: &Layers, fd: c_int) -> Result<Option<PathBuf>, c_int> {
    let mut p = PathBuf::new();
    Ok(fd_path_into(layers, fd, &mut p)?.then_some(p))
}

/// `fd_path`, written into `out`; false (and `out` unspecified) when it is not in
/// the capsule.
pub fn fd_path_into(layers: &Layers, fd: c_int, out: &mut PathBuf) -> Result<bool, c_int> {
    if let Some(known) = super::fds::directory(fd) {
        out.set(known.as_bytes())?;
        return Ok(true);
    }
    let target = sys::fd_target(fd)?;
    Ok(layers.reverse_into(target.as_bytes(), out))
}

/// For a call that changes what descriptor `fd` refers to (fchmod, fchown,
/// futimens, fsetxattr, FS_IOC_SETFLAGS…): where the descriptor refers to a
/// lower-layer file, the file is copied up first (unless another process did) and
/// the descriptor made to follow it: the upper copy is opened with the descriptor's
/// flags and offset and `dup3`'d onto its number, so that this change and every
/// later one through it reach the copy, and `fstat` through it shows them. `None`:
/// change through the descriptor. `Some(host)`: the descriptor could not follow
/// (the copy cannot be opened so); change the copy by that path. A read-only place
/// (`--read-only`, a `:ro` volume) is `EROFS`.
pub fn fd_for_change(layers: &Layers, fd: c_int) -> Op<Option<PathBuf>> {
    let Some(capsule) = fd_path(layers, fd).map_err(|_| Skip::Pass)? else {
        return Ok(None);
    };
    // Open for writing: a descriptor the capsule was handed so (its own opens of
    // lower files for writing copy them up), whose file is the caller's to change.
    // SAFETY: F_GETFL has no memory arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags >= 0 && flags & libc::O_PATH == 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
        return Ok(None);
    }
    let mut node = layers.resolve(capsule.as_bytes(), false)?;
    if !node.exists() {
        // A name the capsule deleted (or renamed) while the descriptor stayed open:
        // only a lower-layer file must not be changed.
        return match on_lower(layers, fd, &capsule) {
            true => Err(Skip::Errno(libc::EROFS)),
            false => Ok(None),
        };
    }
    check_writable(layers, &node)?;
    match node.found {
        Found::Lower => {
            for_change_in(layers, &mut node)?;
            if super::fds::is_safe(fd) {
                return Ok(None); // the copy-up made it follow (`cow::copy_up`)
            }
        }
        Found::Upper if !on_lower(layers, fd, &capsule) => {
            super::fds::mark(fd, true);
            return Ok(None);
        }
        Found::Upper => {} // another process copied it up: follow it
        _ => return Ok(None),
    }
    if cow::follow(fd, &node) {
        super::fds::mark(fd, true);
        return Ok(None);
    }
    Ok(Some(node.host))
}

/// Whether descriptor `fd` refers to the lower layer's file at capsule path
/// `capsule`.
fn on_lower(layers: &Layers, fd: c_int, capsule: &PathBuf) -> bool {
    let Ok(lower) = layers.lower_host(capsule.as_bytes()) else {
        return false;
    };
    let mut by_fd = zeroed_stat();
    let mut by_name = zeroed_stat();
    // SAFETY: fstat into a valid buffer.
    let open = unsafe { libc::fstat(fd, &mut by_fd) } == 0;
    open && sys::lstat(&lower, &mut by_name)
        && (by_fd.st_dev, by_fd.st_ino) == (by_name.st_dev, by_name.st_ino)
}

fn zeroed_stat() -> libc::stat {
    // SAFETY: stat is plain data.
    unsafe { std::mem::zeroed() }
}

/// A path argument made absolute in the capsule (`dirfd` as for the `*at` calls).
pub fn absolute(layers: &Layers, dirfd: c_int, path: &CStr) -> Op<PathBuf> {
    let mut out = PathBuf::new();
    absolute_into(layers, dirfd, path, &mut out)?;
    Ok(out)
}

/// `absolute`, written into `out`; returns its shape (`path::shape` with
/// `NAME_MAX`).
pub fn absolute_into(layers: &Layers, dirfd: c_int, path: &CStr, out: &mut PathBuf) -> Op<Shape> {
    let bytes = path.to_bytes();
    if bytes.is_empty() {
        return Err(Skip::Errno(libc::ENOENT));
    }
    if bytes[0] == b'/' {
        // Already as the loop below would write it: no empty component (`//`, a
        // trailing `/`) and no `.`.
        let shape = super::path::shape(bytes, NAME_MAX);
        if shape.clean {
            out.set(bytes)?;
            return Ok(shape);
        }
        out.set(b"/")?;
    } else if dirfd == libc::AT_FDCWD {
        cwd_into(layers, out);
    } else {
        if !fd_path_into(layers, dirfd, out)? {
            // A directory outside the capsule (inherited, or opened before): the
            // kernel resolves relative to it, as it would without a capsule.
            return Err(Skip::Pass);
        }
    }
    // `.` and repeated slashes never change what a path names (`..` may, after a
    // link: the walk resolves it); dropping them here lets the cache see one
    // spelling. A trailing `/` (or `/.`) still asks for a directory.
    for name in super::path::components(bytes) {
        out.push_component(name)?;
    }
    let wants_dir = bytes.ends_with(b"/") || bytes.ends_with(b"/.") || bytes == b".";
    if wants_dir && !out.is_root() {
        out.push_bytes(b"/")?;
    }
    Ok(super::path::shape(out.as_bytes(), NAME_MAX))
}

/// A path argument of one call, made absolute in the capsule once: every route the
/// call tries (a quick path, then the walk) starts from the same `abs`, so that a
/// relative name costs one `getcwd` however many routes it takes.
pub struct Name<'a> {
    /// The caller's string.
    pub given: &'a CStr,
    /// What `given` is relative to: `AT_FDCWD` or a directory descriptor.
    pub dirfd: c_int,
    /// The capsule path it names, without `.` or repeated slashes.
    pub abs: PathBuf,
    pub shape: Shape,
}

impl<'a> Name<'a> {
    pub fn new(layers: &Layers, dirfd: c_int, given: &'a CStr) -> Op<Name<'a>> {
        let mut abs = PathBuf::new();
        let shape = absolute_into(layers, dirfd, given, &mut abs)?;
        Ok(Name {
            given,
            dirfd,
            abs,
            shape,
        })
    }

    /// The node the name resolves to, there or not.
    pub fn lookup_into(&self, layers: &Layers, follow: bool, node: &mut Node) -> Op<()> {
        Ok(layers.resolve_shaped(self.abs.as_bytes(), self.shape, follow, node)?)
    }

    /// The node an existing name is, made ready for `intent`: `node.host` is the
    /// path the real call takes.
    pub fn resolve_into(&self, layers: &Layers, intent: Intent, node: &mut Node) -> Op<()> {
        let (Intent::Read { follow } | Intent::Change { follow }) = intent;
        self.lookup_into(layers, follow, node)?;
        if !node.exists() {
            return Err(Skip::Errno(libc::ENOENT));
        }
        match intent {
            Intent::Read { .. } => Ok(()),
            Intent::Change { .. } => for_change_in(layers, node),
        }
    }
}

/// What a call means to do with an existing name (`follow`: a last component
/// that is a link is followed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Intent {
    /// Look at it or read it (stat, readlink, exec, chdir): the layer that has it.
    Read { follow: bool },
    /// Change it (chmod, chown, utimes, xattrs, truncate): copied up first, `EROFS`
    /// where the capsule or its volume is read-only.
    Change { follow: bool },
}

impl Intent {
    /// Reading what a name names, links followed: the common case.
    pub const READ: Intent = Intent::Read { follow: true };
}

/// The path core's question for an existing name: [`Name::resolve_into`] of the
/// path argument `path` relative to `dirfd`.
pub fn resolve(
    layers: &Layers,
    dirfd: c_int,
    path: &CStr,
    intent: Intent,
    node: &mut Node,
) -> Op<()> {
    Name::new(layers, dirfd, path)?.resolve_into(layers, intent, node)
}

/// Resolves a path argument, there or not.
pub fn lookup(layers: &Layers, dirfd: c_int, path: &CStr, follow: bool) -> Op<Node> {
    let mut node = Node::empty();
    Name::new(layers, dirfd, path)?.lookup_into(layers, follow, &mut node)?;
    Ok(node)
}

/// Resolves a path argument that must exist.
pub fn existing(layers: &Layers, dirfd: c_int, path: &CStr, follow: bool) -> Op<Node> {
    let mut node = Node::empty();
    resolve(layers, dirfd, path, Intent::Read { follow }, &mut node)?;
    Ok(node)
}

/// Fails with `EROFS` where the node cannot be changed.
pub(super) fn check_writable(layers: &Layers, node: &Node) -> Op<()> {
    match node.place {
        Place::Volume { read_only: true } => Err(Skip::Errno(libc::EROFS)),
        Place::Volume { .. } | Place::Passthrough => Ok(()),
        Place::Overlay if layers.writable() => Ok(()),
        Place::Overlay => Err(Skip::Errno(libc::EROFS)),
    }
}

/// Makes an existing node changeable: copies it up if it is in the lower layer.
pub fn for_change(layers: &Layers, mut node: Node) -> Op<Node> {
    for_change_in(layers, &mut node)?;
    Ok(node)
}

/// `for_change`, in place.
pub fn for_change_in(layers: &Layers, node: &mut Node) -> Op<()> {
    check_writable(layers, node)?;
    if node.found == Found::Lower {
        cow::copy_up(layers, node)?;
    }
    Ok(())
}

/// Prepares the creation of a missing name and returns the host path to create.
pub fn for_create(layers: &Layers, node: &Node) -> Op<(PathBuf, bool)> {
    let mut host = PathBuf::new();
    let had_whiteout = for_create_into(layers, node, &mut host)?;
    Ok((host, had_whiteout))
}

/// `for_create`, the host path written into `host`; returns whether a whiteout was
/// cleared.
pub fn for_create_into(layers: &Layers, node: &Node, host: &mut PathBuf) -> Op<bool> {
    check_writable(layers, node)?;
    match node.place {
        Place::Overlay => {
            // The layers' own markers cannot be created by a program (a `.wh.X` would
            // hide X, a `.wh..wh..opq` the whole lower directory, a copy-up temporary
            // would vanish at the next start): EINVAL, as fuse-overlayfs answers.
            let name = node.capsule.file_name();
            if name.starts_with(super::layers::WHITEOUT_PREFIX)
                || name.starts_with(super::layers::COPYUP_PREFIX)
            {
                return Err(Skip::Errno(libc::EINVAL));
            }
            if !node.parent_state.in_upper {
                cow::ensure_upper_dir(layers, node.capsule.parent_bytes())?;
            }
            let had_whiteout = node.whiteout && cow::clear_whiteout(layers, &node.capsule)?;
            layers.upper_host_into(node.capsule.as_bytes(), host)?;
            Ok(had_whiteout)
        }
        _ => {
            host.set(node.host.as_bytes())?;
            Ok(false)
        }
    }
}

/// What an `open` must do: the host path, whether it creates the file, whether the
/// file is in the lower layer (then a descriptor on it must not be changed through).
pub struct OpenPlan {
    /// What the path resolved to.
    pub node: Node,
    pub host: PathBuf,
    pub created: bool,
    pub lower: bool,
    /// Changes through the descriptor may go to it directly (see `fds`).
    pub safe: bool,
    /// The open is of a directory, whose capsule path is `node.capsule` (for `*at()`
    /// calls).
    pub directory: bool,
}

impl OpenPlan {
    pub fn new() -> OpenPlan {
        OpenPlan {
            node: Node::empty(),
            host: PathBuf::new(),
            created: false,
            lower: false,
            safe: false,
            directory: false,
        }
    }
}

impl Default for OpenPlan {
    fn default() -> Self {
        OpenPlan::new()
    }
}

/// Whether the last component of `path` (trailing slashes aside) is `.` or `..`, or
/// `path` is only slashes.
fn ends_in_dot(path: &[u8]) -> bool {
    let (start, end) = last_component(path);
    if end == 0 {
        return !path.is_empty();
    }
    matches!(&path[start..end], b"." | b"..")
}

/// Where the last component of `path` lies, trailing slashes aside: `start..end`.
fn last_component(path: &[u8]) -> (usize, usize) {
    let mut end = path.len();
    while end > 0 && path[end - 1] == b'/' {
        end -= 1;
    }
    let start = path[..end]
        .iter()
        .rposition(|&c| c == b'/')
        .map_or(0, |i| i + 1);
    (start, end)
}

/// The kernel's walk of `path`'s parents (all but the last name): ENOENT, ENOTDIR...
fn parent_is_dir(layers: &Layers, dirfd: c_int, raw: &[u8], node: &mut Node) -> Op<()> {
    let (start, _) = last_component(raw);
    let parent = PathBuf::from_bytes(if start == 0 { b"." } else { &raw[..start] })?;
    resolve(
        layers,
        dirfd,
        parent.as_cstr(),
        Intent::Read { follow: true },
        node,
    )?;
    if !node.is_dir() {
        return Err(Skip::Errno(libc::ENOTDIR));
    }
    Ok(())
}

/// `path` without its trailing slashes (unless it is only slashes), and whether it
/// had any.
fn without_slashes(path: &CStr) -> Op<(PathBuf, bool)> {
    let raw = path.to_bytes();
    let mut end = raw.len();
    while end > 1 && raw[end - 1] == b'/' {
        end -= 1;
    }
    Ok((PathBuf::from_bytes(&raw[..end])?, end < raw.len()))
}

/// The host path an `open` with these flags must use.
pub fn open(layers: &Layers, dirfd: c_int, path: &CStr, flags: c_int) -> Op<OpenPlan> {
    let mut plan = OpenPlan::new();
    open_into(layers, &Name::new(layers, dirfd, path)?, flags, &mut plan)?;
    Ok(plan)
}

/// `open` of `name`, building the plan in place (on error `plan` is unspecified).
pub fn open_into(layers: &Layers, name: &Name, flags: c_int, plan: &mut OpenPlan) -> Op<()> {
    let create = flags & libc::O_CREAT != 0;
    let exclusive = create && flags & libc::O_EXCL != 0;
    let follow = flags & libc::O_NOFOLLOW == 0 && !exclusive;
    let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
    plan.created = false;
    plan.lower = false;
    plan.safe = false;
    plan.directory = false;
    let raw = name.given.to_bytes();
    if create && (raw.ends_with(b"/") || ends_in_dot(raw)) {
        // The kernel resolves the parents, then refuses any last name: EISDIR.
        // A last `.` or `..` names an existing directory: EEXIST first if exclusive.
        parent_is_dir(layers, name.dirfd, raw, &mut plan.node)?;
        let dot = ends_in_dot(raw);
        return Err(Skip::Errno(if dot && exclusive {
            libc::EEXIST
        } else {
            libc::EISDIR
        }));
    }
    // An exclusive creation in a directory of the upper layer alone: the kernel's
    // answer is the capsule's (`EEXIST` for any name there, links included; no
    // lower name, whiteout or marker to mind), as for `remove`.
    if exclusive
        && flags & libc::O_TMPFILE != libc::O_TMPFILE
        && layers.upper_only_into(name.abs.as_bytes(), name.shape, &mut plan.host)?
    {
        plan.created = true;
        plan.safe = true;
        return Ok(());
    }
    name.lookup_into(layers, follow, &mut plan.node)?;
    if flags & libc::O_TMPFILE == libc::O_TMPFILE {
        return tmpfile_in(layers, plan);
    }
    let node = &mut plan.node;
    if !node.exists() {
        if !create {
            return Err(Skip::Errno(libc::ENOENT));
        }
        // The walk followed a last link to a name that is not there yet: when the
        // link's target ends in `/` (a directory, then), the kernel refuses.
        if follow
            && node.capsule.as_bytes() != name.abs.as_bytes()
            && link_names_a_dir(layers, name)?
        {
            return Err(Skip::Errno(libc::EISDIR));
        }
        for_create_into(layers, node, &mut plan.host)?;
        plan.created = true;
        plan.safe = true;
        return Ok(());
    }
    if exclusive {
        return Err(Skip::Errno(libc::EEXIST));
    }
    if writes && !node.is_dir() && flags & libc::O_PATH == 0 {
        if flags & libc::O_TRUNC != 0 && node.found == Found::Lower {
            check_writable(layers, node)?;
            cow::copy_up_truncated(layers, node)?;
        } else {
            for_change_in(layers, node)?;
        }
        plan.safe = true;
        return Ok(plan.host.set(node.host.as_bytes())?);
    }
    plan.lower = node.found == Found::Lower;
    plan.safe = !plan.lower && check_writable(layers, node).is_ok();
    plan.directory = node.is_dir();
    Ok(plan.host.set(node.host.as_bytes())?)
}

/// Whether the last component of `name` is a link whose target ends in `/` (or is
/// `.`, `..`, or ends in `/.`, `/..`): a directory's name, which a creation
/// through the link cannot make a file of.
fn link_names_a_dir(layers: &Layers, name: &Name) -> Op<bool> {
    let mut link = Node::empty();
    name.lookup_into(layers, false, &mut link)?;
    if link.stat.st_mode & libc::S_IFMT != libc::S_IFLNK {
        return Ok(false);
    }
    let mut target = [0u8; super::path::PATH_MAX];
    // SAFETY: readlink(2) writes at most `target.len()` bytes into our buffer; the
    // path is NUL-terminated.
    let n = unsafe { libc::readlink(link.host.as_ptr(), target.as_mut_ptr().cast(), target.len()) };
    let Ok(n) = usize::try_from(n) else {
        return Ok(false);
    };
    let target = &target[..n];
    Ok(target.ends_with(b"/") || ends_in_dot(target))
}

/// `O_TMPFILE` in directory `plan.node`: the unnamed file is made in the upper
/// layer's copy of the directory (a later `linkat` gives it a name there), never in
/// the lower layer's.
fn tmpfile_in(layers: &Layers, plan: &mut OpenPlan) -> Op<()> {
    let node = &plan.node;
    if !node.exists() {
        return Err(Skip::Errno(libc::ENOENT));
    }
    if !node.is_dir() {
        return Err(Skip::Errno(libc::ENOTDIR));
    }
    check_writable(layers, node)?;
    plan.safe = true;
    if node.place == Place::Overlay {
        cow::ensure_upper_dir(layers, node.capsule.as_bytes())?;
        layers.upper_host_into(node.capsule.as_bytes(), &mut plan.host)?;
    } else {
        plan.host.set(node.host.as_bytes())?;
    }
    Ok(())
}

/// The host path for a new name (`EEXIST` if it exists): mkdir, mknod, symlink, link.
pub fn create_path(layers: &Layers, dirfd: c_int, path: &CStr) -> Op<(PathBuf, Node, bool)> {
    let node = check_create(layers, dirfd, path)?;
    let (host, had_whiteout) = for_create(layers, &node)?;
    Ok((host, node, had_whiteout))
}

/// The kernel's refusals of a new name, in its order, changing nothing: the node the
/// name resolves to (not there yet).
pub fn check_create(layers: &Layers, dirfd: c_int, path: &CStr) -> Op<Node> {
    if ends_in_dot(path.to_bytes()) {
        // A last `.` or `..` (or `/`): the parents first, then EEXIST.
        parent_is_dir(layers, dirfd, path.to_bytes(), &mut Node::empty())?;
        return Err(Skip::Errno(libc::EEXIST));
    }
    // The new name itself, trailing slashes or not (`mkdir fifo/` is EEXIST).
    let (bare, _) = without_slashes(path)?;
    let node = lookup(layers, dirfd, bare.as_cstr(), false)?;
    if node.exists() {
        return Err(Skip::Errno(libc::EEXIST));
    }
    Ok(node)
}

/// A create that the kernel refused after [`create_path`] cleared the whiteout of a
/// deleted lower name: the name stays deleted (the whiteout comes back), and errno is
/// the kernel's.
pub fn create_failed(layers: &Layers, node: &Node, had_whiteout: bool) {
    if had_whiteout {
        let _ = crate::hook::errno_kept(|| cow::whiteout(layers, &node.capsule));
    }
}

/// After `mkdir` of a name that hid a deleted lower name: the new directory must
/// not show the old one's entries.
pub fn after_mkdir(layers: &Layers, node: &Node, had_whiteout: bool) -> Op<()> {
    // A new directory changes nothing any process has cached about other
    // directories; one that replaces a deleted lower name becomes opaque, which does.
    if node.place == Place::Overlay && had_whiteout {
        cow::make_opaque(layers, &node.capsule)?;
    }
    if let Ok(host) = layers.upper_host(node.capsule.as_bytes()) {
        if node.place == Place::Overlay {
            super::owner::after_create(&host);
        }
    }
    Ok(())
}

/// unlink / rmdir / unlinkat in the capsule.
pub fn remove(layers: &Layers, dirfd: c_int, path: &CStr, directory: bool) -> Op<()> {
    let last = path
        .to_bytes()
        .rsplit(|&b| b == b'/')
        .find(|c| !c.is_empty());
    if matches!(last, Some(b".") | Some(b"..")) {
        // The parents first, then the kernel's refusal of a last `.` or `..`.
        parent_is_dir(layers, dirfd, path.to_bytes(), &mut Node::empty())?;
        return Err(Skip::Errno(match (directory, last) {
            (false, _) => libc::EISDIR,
            (true, Some(b".")) => libc::EINVAL,
            _ => libc::ENOTEMPTY,
        }));
    }
    if path.to_bytes().ends_with(b"/") {
        // A trailing slash: the last name is still not followed. unlink says what
        // it is (ENOENT, EISDIR, ENOTDIR); rmdir goes on with the bare name.
        let (bare, _) = without_slashes(path)?;
        let node = lookup(layers, dirfd, bare.as_cstr(), false)?;
        if !node.exists() {
            return Err(Skip::Errno(libc::ENOENT));
        }
        if !node.is_dir() {
            return Err(Skip::Errno(libc::ENOTDIR));
        }
        if !directory {
            return Err(Skip::Errno(libc::EISDIR));
        }
        return remove(layers, dirfd, bare.as_cstr(), directory);
    }
    // In a cached directory of the upper layer, one cache lookup decides:
    // - the upper layer alone: the kernel's answer is the capsule's (an opaque
    //   directory's marker makes rmdir say ENOTEMPTY: then the long way);
    // - merging a lower one, for a file: removing it from the upper layer is the
    //   kernel's to judge, and a whiteout follows if the lower layer has the name too
    //   (asked only then: a lower name alone takes the long way without it). rmdir
    //   goes the long way there: a lower directory's entries make it ENOTEMPTY.
    let mut abs = PathBuf::new();
    let shape = absolute_into(layers, dirfd, path, &mut abs)?;
    let mut node = Node::empty();
    let mut capsule = PathBuf::new();
    // A writable volume's cached directory: the kernel's answer (unlink and rmdir
    // do not follow the last name).
    if layers.in_cached_volume_into(abs.as_bytes(), shape, &mut capsule, &mut node.host)?
        == Some(false)
        && !layers.is_volume_root(capsule.as_bytes())
    {
        let structural = directory || super::removing_link(&node.host);
        if directory {
            sys::rmdir(&node.host)?;
        } else {
            sys::unlink(&node.host)?;
        }
        if structural {
            super::changed();
        }
        return Ok(());
    }
    match layers.cached_upper_into(abs.as_bytes(), shape, &mut capsule, &mut node.host)? {
        Some(false) => {
            // A directory removed, or a link, may be a directory some process
            // cached: its name can now become a link (or a directory) elsewhere.
            let structural = directory || super::removing_link(&node.host);
            let done = if directory {
                sys::rmdir(&node.host)
            } else {
                sys::unlink(&node.host)
            };
            match done {
                Ok(()) => {
                    if structural {
                        super::changed();
                    }
                    return Ok(());
                }
                Err(libc::ENOTEMPTY) | Err(libc::EEXIST) if directory => {}
                Err(e) => return Err(Skip::Errno(e)),
            }
        }
        Some(true) if !directory => {
            let link = super::removing_link(&node.host);
            match sys::unlink(&node.host) {
                Ok(()) => {
                    if layers.lower_has(capsule.as_bytes())? != Some(false) {
                        cow::whiteout(layers, &capsule)?;
                    } else if link {
                        super::changed();
                    }
                    return Ok(());
                }
                Err(libc::ENOENT) => {}
                Err(e) => return Err(Skip::Errno(e)),
            }
        }
        _ => {}
    }
    layers.resolve_shaped(abs.as_bytes(), shape, false, &mut node)?;
    if !node.exists() {
        return Err(Skip::Errno(libc::ENOENT));
    }
    if directory && !node.is_dir() {
        return Err(Skip::Errno(libc::ENOTDIR));
    }
    if !directory && node.is_dir() {
        return Err(Skip::Errno(libc::EISDIR));
    }
    if node.capsule.is_root() || layers.is_volume_root(node.capsule.as_bytes()) {
        return Err(Skip::Errno(libc::EBUSY));
    }
    check_writable(layers, &node)?;
    // See the cached case above.
    let structural = directory || node.is_symlink();
    if node.place != Place::Overlay {
        if directory {
            sys::rmdir(&node.host)?;
        } else {
            sys::unlink(&node.host)?;
        }
        if structural {
            super::changed();
        }
        return Ok(());
    }
    if directory && super::dirs::has_entries(layers, &node)? {
        return Err(Skip::Errno(libc::ENOTEMPTY));
    }
    let in_lower = node.found == Found::Lower || cow::lower_exists(layers, &node);
    if node.found == Found::Upper {
        if directory {
            super::dirs::clear_markers(&node.host)?;
            sys::rmdir(&node.host)?;
        } else {
            sys::unlink(&node.host)?;
        }
    }
    if in_lower {
        cow::whiteout(layers, &node.capsule)?;
    } else if structural {
        super::changed();
    }
    Ok(())
}

/// rename / renameat / renameat2 in the capsule, `flags` those of renameat2
/// (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`; checked by the caller). Returns the host
/// paths to rename for volumes (which the real call handles, with the flags);
/// overlay renames are done here.
pub fn rename(
    layers: &Layers,
    old: (c_int, &CStr),
    new: (c_int, &CStr),
    flags: std::ffi::c_uint,
) -> Op<Option<(PathBuf, PathBuf)>> {
    let noreplace = flags & libc::RENAME_NOREPLACE != 0;
    // The last names are never followed, trailing slashes or not; a trailing slash
    // asks for a directory (ENOTDIR otherwise).
    let (old_name, old_slash) = without_slashes(old.1)?;
    let (new_name, new_slash) = without_slashes(new.1)?;
    // A last component `.` or `..` (or `/`) is refused once both parents resolve and
    // before either name is looked up, in the kernel's order: the old one is EBUSY,
    // then the new one EEXIST with RENAME_NOREPLACE, EBUSY without.
    let (old_dot, new_dot) = (ends_in_dot(old.1.to_bytes()), ends_in_dot(new.1.to_bytes()));
    if old_dot || new_dot {
        parent_is_dir(layers, old.0, old.1.to_bytes(), &mut Node::empty())?;
        parent_is_dir(layers, new.0, new.1.to_bytes(), &mut Node::empty())?;
        return Err(Skip::Errno(if !old_dot && noreplace {
            libc::EEXIST
        } else {
            libc::EBUSY
        }));
    }
    let src = match existing(layers, old.0, old_name.as_cstr(), false) {
        // The kernel walks both parents, compares their mounts and asks for write
        // access before it looks up the old name.
        Err(Skip::Errno(libc::ENOENT)) => {
            let (mut from, mut to) = (Node::empty(), Node::empty());
            parent_is_dir(layers, old.0, old_name.as_bytes(), &mut from)?;
            parent_is_dir(layers, new.0, new_name.as_bytes(), &mut to)?;
            if super::exchange::crosses_mount(layers, &from, &to) {
                return Err(Skip::Errno(libc::EXDEV));
            }
            check_writable(layers, &from)?;
            return Err(Skip::Errno(libc::ENOENT));
        }
        other => other?,
    };
    let dst = lookup(layers, new.0, new_name.as_cstr(), false)?;
    if noreplace && dst.exists() {
        return Err(Skip::Errno(libc::EEXIST));
    }
    if flags & libc::RENAME_EXCHANGE != 0 {
        return super::exchange::exchange(layers, src, dst, old_slash, new_slash);
    }
    if (old_slash || new_slash) && !src.is_dir() && !ends_in_dot(old.1.to_bytes()) {
        return Err(Skip::Errno(libc::ENOTDIR));
    }
    check_writable(layers, &src)?;
    check_writable(layers, &dst)?;
    if layers.is_volume_root(src.capsule.as_bytes())
        || layers.is_volume_root(dst.capsule.as_bytes())
    {
        return Err(Skip::Errno(libc::EBUSY));
    }
    if super::exchange::crosses_mount(layers, &src, &dst) {
        return Err(Skip::Errno(libc::EXDEV));
    }
    if src.place != Place::Overlay {
        return Ok(Some((src.host, PathBuf::from_bytes(dst.host.as_bytes())?)));
    }
    // One name, or two hard links of one file in one layer: nothing changes
    // (vfs_rename), and both names stay.
    if src.capsule.as_bytes() == dst.capsule.as_bytes()
        || (dst.found == src.found
            && (src.stat.st_dev, src.stat.st_ino) == (dst.stat.st_dev, dst.stat.st_ino))
    {
        return Ok(None);
    }
    // The kernel's own refusals come first, in its order.
    if src.is_dir() && super::path::is_within(dst.capsule.as_bytes(), src.capsule.as_bytes()) {
        return Err(Skip::Errno(libc::EINVAL));
    }
    // A new name that is an ancestor of the old one: ENOTEMPTY, whatever either is.
    if super::path::is_within(src.capsule.as_bytes(), dst.capsule.as_bytes()) {
        return Err(Skip::Errno(libc::ENOTEMPTY));
    }
    if dst.exists() {
        match (src.is_dir(), dst.is_dir()) {
            (false, true) => return Err(Skip::Errno(libc::EISDIR)),
            (true, false) => return Err(Skip::Errno(libc::ENOTDIR)),
            (true, true) if super::dirs::has_entries(layers, &dst)? => {
                return Err(Skip::Errno(libc::ENOTEMPTY))
            }
            _ => {}
        }
    }
    let src_in_lower = src.found == Found::Lower || cow::lower_exists(layers, &src);
    let mut src = src;
    if src.is_dir() {
        // A directory moves as the upper directory alone: what it shows of the
        // lower layer is copied up first (`detach`), and it must not merge with a
        // lower directory under its new name (nor under the old, once gone there).
        let lower_dir_there = super::detach::lower_dir_at(layers, &dst);
        super::detach::detach(layers, &mut src)?;
        if lower_dir_there {
            cow::make_opaque(layers, &src.capsule)?;
        }
        if dst.found == Found::Upper {
            // Empty in the capsule's view: only markers left, which rename(2)
            // would count as entries.
            super::dirs::clear_markers(&dst.host)?;
        }
    } else {
        for_change_in(layers, &mut src)?;
    }
    let (dst_host, _) = if dst.exists() && dst.found == Found::Upper {
        (PathBuf::from_bytes(dst.host.as_bytes())?, false)
    } else {
        for_create(layers, &dst)?
    };
    // The old name's lower half is hidden before the upper one moves (a whiteout
    // beside an upper name hides nothing), so that it never shows again, even if
    // the process is killed in between.
    if src_in_lower {
        cow::whiteout(layers, &src.capsule)?;
    }
    // Replacing or moving a directory or a link changes how names below resolve.
    let structural = src.is_dir() || src.is_symlink() || dst.is_symlink();
    sys::rename(&src.host, &dst_host)?;
    if src.is_dir() {
        super::fds::renamed(src.capsule.as_bytes(), dst.capsule.as_bytes(), false);
    }
    if structural {
        super::changed();
    }
    Ok(None)
}

/// link / linkat: both names in the capsule; the source is copied up first.
pub fn link(
    layers: &Layers,
    old: (c_int, &CStr),
    new: (c_int, &CStr),
    follow: bool,
) -> Op<(PathBuf, PathBuf)> {
    let src = existing(layers, old.0, old.1, follow)?;
    if ends_in_dot(new.1.to_bytes()) {
        parent_is_dir(layers, new.0, new.1.to_bytes(), &mut Node::empty())?;
        return Err(Skip::Errno(libc::EEXIST));
    }
    // The new name itself, trailing slashes or not: an existing one is EEXIST even
    // when it is no directory.
    let (new_name, _) = without_slashes(new.1)?;
    let dst = lookup(layers, new.0, new_name.as_cstr(), false)?;
    // The kernel's order: the new name (a trailing slash on a new name is ENOENT),
    // the mounts, then what the old name is.
    if dst.exists() {
        return Err(Skip::Errno(libc::EEXIST));
    }
    if new.1.to_bytes().ends_with(b"/") {
        return Err(Skip::Errno(libc::ENOENT));
    }
    if (src.place == Place::Overlay) != (dst.place == Place::Overlay) {
        return Err(Skip::Errno(libc::EXDEV));
    }
    if src.is_dir() {
        return Err(Skip::Errno(libc::EPERM));
    }
    let src = for_change(layers, src)?;
    let (dst_host, _) = for_create(layers, &dst)?;
    Ok((src.host, dst_host))
}

/// Whether a symbolic link's target, read from `/proc`, is a host path to map back.
pub fn is_proc_link(capsule: &[u8]) -> bool {
    super::path::is_within(capsule, b"/proc")
}

/// Copies `text` into a caller's buffer of `size` bytes, NUL-terminated, or ERANGE.
///
/// # Safety
/// `buf` is valid for `size` bytes.
pub unsafe fn copy_out(text: &[u8], buf: *mut libc::c_char, size: usize) -> Result<(), c_int> {
    if text.len() + 1 > size {
        return Err(libc::ERANGE);
    }
    // SAFETY: `buf` is valid for `size` bytes (the caller's contract), at least
    // `text.len() + 1` (checked above); `text` is a Rust slice, not inside it.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast(), text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(())
}

/// A malloc'd copy of `text` (for getcwd(NULL, 0), realpath(p, NULL)): the caller
/// frees it with `free`.
pub fn malloc_copy(text: &[u8]) -> *mut libc::c_char {
    // SAFETY: malloc of len + 1 bytes, fully written before it is returned.
    unsafe {
        let p = libc::malloc(text.len() + 1) as *mut libc::c_char;
        if !p.is_null() {
            std::ptr::copy_nonoverlapping(text.as_ptr(), p.cast(), text.len());
            *p.add(text.len()) = 0;
        }
        p
    }
}
