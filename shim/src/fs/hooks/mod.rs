//! FFI layer of the file-system replica: every libc entry point that takes a path
//! (or a directory stream, or a descriptor whose file may need copying up) in both
//! glibc generations, the LFS `*64` names and the `_FORTIFY_SOURCE` variants, one
//! file per subsystem. Each hook turns its arguments into a call of the replica's
//! logic (`fs::open`, `fs::stat`, `fs::names`, `fs::change`, `fs::cwd`,
//! `fs::readdir`, `fs::tmp`, over `fs::call` and `fs::ops`), which calls the real
//! function on the host path the capsule's name resolved to.

pub mod attr;
pub mod cwd;
pub mod dir;
pub mod fd;
pub mod more;
pub mod names;
pub mod open;
pub mod stat;
pub mod tmp;
pub mod xattr;

// Every hook by its libc name, for the shim's own callers (`syscall`, `walk`,
// `fts`), which call them as the program would.
pub use attr::*;
pub use cwd::*;
pub use dir::*;
pub use fd::*;
pub use names::*;
pub use open::*;
pub use stat::*;
pub use xattr::*;
