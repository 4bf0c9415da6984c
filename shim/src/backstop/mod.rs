//! The system-call backstop: serves the virtualised calls of programs the preload path misses.

pub mod vdso;
