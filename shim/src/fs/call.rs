//! How an entry point runs a capsule operation: the operation (`ops`) in the capsule,
//! then the real call with what it prepared, the real call with the caller's own
//! arguments when the replica is off or the operation passes, errno as the kernel
//! would set it otherwise. Shared by the preload hooks of every subsystem.

use std::ffi::CStr;

use libc::{c_char, c_int};

use super::layers::{Layers, Node};
use super::ops::{self, Op, Skip};
use crate::hook::set_errno;

/// Runs a file-system operation: `op` in the capsule, then `real` with what it
/// prepared; `pass` (the real call with the caller's arguments) when the replica is
/// off or the operation says so; `fail` with errno set on a capsule error.
pub fn run<T, R>(
    op: impl FnOnce(&'static Layers) -> Op<T>,
    real: impl Fn(T) -> R + Copy,
    pass: impl FnOnce() -> R,
    fail: R,
) -> R {
    run_in(
        || (),
        |layers, _| op(layers),
        |_, prepared| real(prepared),
        pass,
        fail,
    )
}

/// `run` with the operation's result built in place, in `scratch` (a `Node` or an
/// `OpenPlan`: large, and cheaper to fill where it stays than to move out).
pub fn run_in<S, X, R>(
    scratch: impl FnOnce() -> S,
    op: impl FnOnce(&'static Layers, &mut S) -> Op<X>,
    real: impl FnOnce(&S, X) -> R,
    pass: impl FnOnce() -> R,
    fail: R,
) -> R {
    let Some(layers) = super::layers() else {
        return pass();
    };
    // The capsule's own lookups fail with ENOENT as a matter of course: the caller
    // must see errno as the real call leaves it.
    let saved = crate::hook::errno();
    let mut made = scratch();
    match op(layers, &mut made) {
        Ok(extra) => {
            set_errno(saved);
            real(&made, extra)
        }
        Err(Skip::Pass) => pass(),
        Err(Skip::Errno(e)) => {
            set_errno(e);
            fail
        }
    }
}

/// A path argument; null lets the real call report EFAULT.
///
/// # Safety
/// `path` is null or a NUL-terminated string that outlives `'a` (a path argument
/// of the hooked function, valid for the call).
pub unsafe fn arg<'a>(path: *const c_char) -> Op<&'a CStr> {
    if path.is_null() {
        Err(Skip::Pass)
    } else {
        // SAFETY: not null, so a C string valid for the call (this function's contract).
        Ok(unsafe { CStr::from_ptr(path) })
    }
}

/// A path operation on an existing name that only reads it.
///
/// # Safety
/// `path` is null or a C string (the hooked function's path argument).
pub unsafe fn read_with<R>(
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    fail: R,
    real: impl Fn(*const c_char) -> R + Copy,
) -> R {
    run_in(
        Node::empty,
        |l, node| {
            // SAFETY: `path` is null or a C string (this function's contract).
            let path = unsafe { arg(path) }?;
            ops::resolve(l, dirfd, path, ops::Intent::Read { follow }, node)
        },
        |node, ()| real(node.host.as_ptr()),
        || real(path),
        fail,
    )
}

/// A path operation on an existing name that changes it (copied up first).
///
/// `real(p, pinned)`: when `pinned`, `p` is the name through its pinned parent
/// (see `pin`), to be changed without following it; else `p` is used as given.
///
/// # Safety
/// `path` is null or a C string (the hooked function's path argument).
pub unsafe fn change_with<R>(
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    fail: R,
    real: impl Fn(*const c_char, bool) -> R + Copy,
) -> R {
    run_in(
        Node::empty,
        // SAFETY: `path` is null or a C string (this function's contract).
        |l, node| unsafe { resolve_pinned(l, dirfd, path, follow, node) },
        |node, pinned| match &pinned {
            Some(p) => real(p.path().as_ptr(), true),
            None => real(node.host.as_ptr(), false),
        },
        || real(path, false),
        fail,
    )
}

/// An existing name resolved for a change (copied up) into `node`, and its last
/// name through its pinned parent where it has one (see `pin`).
///
/// # Safety
/// `path` is null or a C string (the hooked function's path argument).
pub unsafe fn resolve_pinned(
    layers: &Layers,
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    node: &mut Node,
) -> Op<Option<super::pin::Pinned>> {
    // SAFETY: `path` is null or a C string (this function's contract).
    let path = unsafe { arg(path) }?;
    ops::resolve(layers, dirfd, path, ops::Intent::Change { follow }, node)?;
    Ok(super::pin::pin(layers, &node.host)?)
}

/// `ours` when the replica is on, `real` (the real call) when it is off.
#[inline]
pub fn when_on<R>(ours: impl FnOnce() -> R, real: impl FnOnce() -> R) -> R {
    match super::layers() {
        Some(_) => ours(),
        None => real(),
    }
}
