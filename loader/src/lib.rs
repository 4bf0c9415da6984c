//! The capsule loader as a library: everything `capsule run` does, without the command
//! line. The `capsule` binary (`main.rs`, `cli/`) parses flags, calls in here, and alone
//! decides the process exit code.
//!
//! - [`envfile`]: `-e` assignments, docker-style `--env-file` files, the program's
//!   environment;
//! - [`state`]: `$CAPSULE_HOME`, capsule names, each capsule's state directory;
//! - [`shim`]: finding `libcapsule.so` and composing `LD_PRELOAD`;
//! - [`view`]: the capsule's file system seen from the host (`--root`, the upper
//!   layer, volumes), to find the program and working directory inside the capsule;
//! - [`program`]: finding the program as a shell would (127/126 cases);
//! - [`landlock`]: the kernel backstop, a Landlock domain around each program;
//! - [`launch`]: blocking signals, spawning, relaying signals, reaping;
//! - [`run`]: `capsule run` itself, checked in full before anything is created;
//! - [`given`]: `-p` and `-v` specs parsed once, where they are given, with their text;
//! - [`inspect`]: reading a capsule's state (status, uptime, ports, command);
//! - [`manage`]: `capsule ps`, `logs`, `stop`, `exec`, `rm`;
//! - [`manifest`]: `capsule.toml`, checked and placed (file, line, key) in errors;
//! - [`up`]: `capsule up`: many capsules at once, their output, restarts and stop;
//! - [`image`]: the image store (import, run, commit, export);
//! - [`build`]: `capsule build`, images from a Containerfile;
//! - [`slurm`]: Slurm job steps: `%t`-style placeholders, node-local state, peers.
//!
//! The loader never links the shim: only the `capsule-config` crate is shared.

pub mod build;
pub mod envfile;
pub mod given;
pub mod image;
pub mod inspect;
pub mod landlock;
pub mod launch;
pub mod manage;
pub mod manifest;
pub mod program;
pub mod run;
pub mod seccomp;
pub mod shim;
pub mod slurm;
pub mod state;
pub mod up;
pub mod view;

use std::io;

/// An I/O error as a short lower-case phrase ("no such file or directory"), without
/// the "(os error N)" suffix, for one-line messages.
pub fn describe_io(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn io_errors_read_as_phrases() {
        let err = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(super::describe_io(&err), "no such file or directory");
        let err = std::io::Error::other("Custom");
        assert_eq!(super::describe_io(&err), "custom");
    }
}
