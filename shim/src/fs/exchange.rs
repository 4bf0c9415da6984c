//! `renameat2(RENAME_EXCHANGE)` in the capsule: two existing names swap what they
//! are, either or both directories, atomically.
//!
//! As overlayfs does it: both names are brought into the upper layer first (a file
//! copied up; a directory made to stand on its own, see `detach`, and made opaque
//! where the lower layer has a directory under the name it moves to, so that
//! nothing of that one merges in), then the two upper names are exchanged by the
//! host kernel in one call. Both names exist before and after, so no whiteout is
//! needed; the lower layer is never touched.

use super::cow;
use super::detach;
use super::layers::{Layers, Node, Place};
use super::ops::{self, Op, Skip};
use super::path::{is_within, PathBuf};
use crate::hook::errno;

/// Which mount a name is on, as the kernel would see the capsule: the overlay, one
/// volume (by its capsule path), or the host's own `/proc`, `/dev`, `/sys`.
pub fn mount_of<'a>(layers: &'a Layers, node: &Node) -> Option<&'a [u8]> {
    match node.place {
        Place::Overlay => Some(b"/"),
        Place::Volume { .. } => layers
            .volumes
            .iter()
            .find(|v| is_within(node.capsule.as_bytes(), &v.path))
            .map(|v| v.path.as_slice()),
        // The host kernel tells its own mounts apart.
        Place::Passthrough => None,
    }
}

/// Whether a rename between `src` and `dst` crosses a mount of the capsule
/// (`EXDEV`), where the host kernel might not see one (two volumes of one host file
/// system, or the overlay and a volume of the upper layer's).
pub fn crosses_mount(layers: &Layers, src: &Node, dst: &Node) -> bool {
    match (src.place, dst.place) {
        (Place::Passthrough, Place::Passthrough) => false,
        _ => mount_of(layers, src) != mount_of(layers, dst),
    }
}

/// The exchange, once both names are looked up (`src` exists) and the checks
/// shared with a plain rename are done. `Some(hosts)`: names outside the layers,
/// for the real call with the caller's flags; `None`: done here.
pub fn exchange(
    layers: &Layers,
    mut src: Node,
    mut dst: Node,
    old_slash: bool,
    new_slash: bool,
) -> Op<Option<(PathBuf, PathBuf)>> {
    // The kernel's order (do_renameat2): the mounts (a volume's own root aside,
    // which is busy), a read-only one; the new name must exist, then trailing
    // slashes ask for directories; then one may not contain the other.
    if layers.is_volume_root(src.capsule.as_bytes())
        || layers.is_volume_root(dst.capsule.as_bytes())
    {
        return Err(Skip::Errno(libc::EBUSY));
    }
    if crosses_mount(layers, &src, &dst) {
        return Err(Skip::Errno(libc::EXDEV));
    }
    ops::check_writable(layers, &src)?;
    ops::check_writable(layers, &dst)?;
    if !dst.exists() {
        return Err(Skip::Errno(libc::ENOENT));
    }
    if (new_slash && !dst.is_dir()) || (old_slash && !src.is_dir()) {
        return Err(Skip::Errno(libc::ENOTDIR));
    }
    if src.capsule.as_bytes() != dst.capsule.as_bytes()
        && (is_within(dst.capsule.as_bytes(), src.capsule.as_bytes())
            || is_within(src.capsule.as_bytes(), dst.capsule.as_bytes()))
    {
        return Err(Skip::Errno(libc::EINVAL));
    }
    if src.place != Place::Overlay {
        return Ok(Some((src.host, dst.host)));
    }
    // One name, or two names of one file: nothing changes (vfs_rename).
    if src.capsule.as_bytes() == dst.capsule.as_bytes()
        || (src.found == dst.found
            && (src.stat.st_dev, src.stat.st_ino) == (dst.stat.st_dev, dst.stat.st_ino))
    {
        return Ok(None);
    }
    // What each name's lower layer holds, before anything changes.
    let lower_dir_at_src = detach::lower_dir_at(layers, &src);
    let lower_dir_at_dst = detach::lower_dir_at(layers, &dst);
    into_upper(layers, &mut src, lower_dir_at_dst)?;
    into_upper(layers, &mut dst, lower_dir_at_src)?;
    // SAFETY: renameat2 reads only the two NUL-terminated paths; the other
    // arguments are integers. A system call: musl may have no renameat2.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            src.host.as_ptr(),
            libc::AT_FDCWD,
            dst.host.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(Skip::Errno(errno()));
    }
    if src.is_dir() || dst.is_dir() {
        super::fds::renamed(src.capsule.as_bytes(), dst.capsule.as_bytes(), true);
    }
    // Names below either may now resolve elsewhere.
    super::changed();
    Ok(None)
}

/// Brings one side of an exchange into the upper layer: a file copied up, a
/// directory detached from the lower layer and, where it moves onto a name under
/// which the lower layer has a directory, made opaque.
fn into_upper(layers: &Layers, node: &mut Node, lower_dir_there: bool) -> Op<()> {
    if !node.is_dir() {
        return ops::for_change_in(layers, node);
    }
    detach::detach(layers, node)?;
    if lower_dir_there {
        cow::make_opaque(layers, &node.capsule)?;
    }
    Ok(())
}
