//! Making a directory stand on its own in the upper layer, so that it can move.
//!
//! A directory of the capsule is the merge of an upper directory and the lower one
//! of the same name. Moving the upper half alone (rename, RENAME_EXCHANGE) would
//! leave the lower entries behind under the old name and merge the new name with
//! whatever the lower layer has there. overlayfs answers this with `redirect_dir`
//! markers, or `EXDEV` without them; the capsule copies the directory's whole merged
//! tree into the upper layer instead and marks its top opaque, so that a plain
//! rename of the upper directory moves exactly what the capsule sees, as the kernel
//! moves it. Every step leaves the merged view as it was (each copy-up is one, and
//! the opaque marker comes once nothing below shows through any more), so a process
//! killed on the way leaves a capsule that looks the same, only more copied up.
//!
//! Limits: hard links inside the tree become separate files (as with every
//! copy-up), and lower device nodes or sockets, which an ordinary user cannot make,
//! turn the move into `EXDEV` (callers such as `mv` then copy).

use std::ffi::c_int;

use super::cow;
use super::layers::{Found, Layers, Node, Place, COPYUP_PREFIX, OPAQUE_MARKER, WHITEOUT_PREFIX};
use super::path::PathBuf;
use super::sys;
use crate::hook::errno;

/// Whether the lower layer has a directory at `node`'s name that would merge with
/// an upper directory put there (the name is not hidden by a whiteout or an opaque
/// directory above).
pub fn lower_dir_at(layers: &Layers, node: &Node) -> bool {
    if node.place != Place::Overlay || !(node.lower_visible || node.whiteout) {
        return false;
    }
    if node.whiteout {
        // The whiteout goes once the name is created: what it hid then shows.
        return node.parent_state.lower_visible && is_lower_dir(layers, node.capsule.as_bytes());
    }
    is_lower_dir(layers, node.capsule.as_bytes())
}

fn is_lower_dir(layers: &Layers, capsule: &[u8]) -> bool {
    let Ok(lower) = layers.lower_host(capsule) else {
        return false;
    };
    // SAFETY: a zeroed stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    sys::lstat(&lower, &mut st) && st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Whether upper directory `upper` is opaque.
fn is_opaque(upper: &PathBuf) -> Result<bool, c_int> {
    let mut marker = PathBuf::from_bytes(upper.as_bytes())?;
    marker.push_component(OPAQUE_MARKER)?;
    Ok(sys::exists(&marker))
}

/// Whether directory `node` shows lower-layer entries (it is in the lower layer, or
/// merges a lower directory).
pub fn shows_lower(layers: &Layers, node: &Node) -> Result<bool, c_int> {
    match node.found {
        Found::Lower => Ok(node.place == Place::Overlay),
        Found::Upper => Ok(lower_dir_at(layers, node) && !is_opaque(&node.host)?),
        _ => Ok(false),
    }
}

/// Makes directory `node` stand on its own in the upper layer: every lower entry it
/// shows, at every depth, copied up, then each directory that showed some marked
/// opaque. `node` is
/// updated to the upper directory. Nothing to do for one that shows no lower entry.
pub fn detach(layers: &Layers, node: &mut Node) -> Result<(), c_int> {
    if !shows_lower(layers, node)? {
        return Ok(());
    }
    if !layers.writable() {
        return Err(libc::EROFS);
    }
    // Depth first with a stack of capsule paths on the heap: a deep tree must not
    // need a deep native stack (the caller may be a thread with a small one).
    let mut pending: Vec<Vec<u8>> = vec![node.capsule.as_bytes().to_vec()];
    let mut child = Node::empty();
    let mut path = PathBuf::new();
    // The directories that showed lower entries, parents before children.
    let mut merged: Vec<Vec<u8>> = Vec::new();
    while let Some(dir) = pending.pop() {
        layers.resolve_into(&dir, false, &mut child)?;
        if !child.is_dir() {
            continue;
        }
        cow::copy_up(layers, &mut child)?;
        if !shows_lower(layers, &child)? {
            continue;
        }
        let lower = layers.lower_host(&dir)?;
        merged.push(dir.clone());
        for name in lower_names(&lower)? {
            path.set(&dir)?;
            path.push_component(&name)?;
            layers.resolve_into(path.as_bytes(), false, &mut child)?;
            match child.found {
                Found::Lower if child.is_dir() => pending.push(path.as_bytes().to_vec()),
                Found::Lower => match cow::copy_up(layers, &mut child) {
                    // A device node or socket: not the real user's to make.
                    Err(libc::EPERM) => return Err(libc::EXDEV),
                    r => r?,
                },
                // An upper directory may merge a lower one too.
                Found::Upper if child.is_dir() => pending.push(path.as_bytes().to_vec()),
                _ => {}
            }
        }
    }
    // Each one opaque once everything below it is copied, children first: their
    // whiteouts keep hiding what they hid, and once moved they are listed as
    // directories of the upper layer alone would not be.
    for dir in merged.iter().rev() {
        path.set(dir)?;
        cow::make_opaque(layers, &path)?;
    }
    layers.resolve_into(node.capsule.as_bytes(), false, &mut child)?;
    std::mem::swap(node, &mut child);
    Ok(())
}

/// The names in lower directory `lower` (not `.`, `..`, nor what looks like a layer
/// marker, which the capsule never shows).
fn lower_names(lower: &PathBuf) -> Result<Vec<Vec<u8>>, c_int> {
    let mut out = Vec::new();
    // SAFETY: a NUL-terminated path; the stream is closed before returning and each
    // entry's name is copied out before the next readdir.
    unsafe {
        let dir = libc::opendir(lower.as_ptr());
        if dir.is_null() {
            return match errno() {
                libc::ENOENT | libc::ENOTDIR => Ok(out),
                e => Err(e),
            };
        }
        loop {
            let entry = libc::readdir64(dir.cast());
            if entry.is_null() {
                break;
            }
            let name = std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()).to_bytes();
            if matches!(name, b"." | b"..")
                || name.starts_with(WHITEOUT_PREFIX)
                || name.starts_with(COPYUP_PREFIX)
            {
                continue;
            }
            out.push(name.to_vec());
        }
        libc::closedir(dir);
    }
    Ok(out)
}
