//! libcapsule.so: injected with `LD_PRELOAD`, it gives the process its capsule's
//! view of the system elements the kernel keeps once for everybody.
//!
//! Layout: `hook` is the machinery every hook uses; `runtime` reads the
//! configuration once; `shared` is the state all processes of a capsule share;
//! one module per replica (`fs`, `identity`, `uts`, `time`, `net`, `exec`), each
//! with `hooks` (the exported functions; `fs/hooks/` one file per subsystem) and its
//! logic beside them; `syscall` routes `syscall(2)` numbers to the replicas;
//! `backstop` serves the system calls of
//! static and Go programs through that router, from a seccomp supervisor;
//! `coverage` lists every hook and how well it is supported; `log` is the shim's
//! own log and `decimal` writes numbers into stack buffers, both without allocating.

// Every unsafe operation is in a block of its own with a `// SAFETY:` line saying why
// it holds.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Unit-test builds leave out the exported hooks, so much of the machinery is unused there.
#![cfg_attr(test, allow(dead_code, unused_imports, unused_macros))]

#[macro_use]
mod hook;

mod backstop;
mod coverage;
mod decimal;
mod exec;
mod fs;
mod identity;
mod log;
mod net;
mod runtime;
mod seqlock;
mod shared;
mod syscall;
mod time;
mod uts;
