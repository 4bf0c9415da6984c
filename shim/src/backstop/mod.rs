//! The system-call backstop: serves the virtualised calls of programs the preload path misses.

// The supervisor that calls it lands on main.
#[allow(dead_code)]
pub mod vdso;
