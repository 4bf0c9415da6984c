//! `capsule-trampoline`: the program a capsule runs in place of a statically
//! linked one. It does nothing itself: the shim, preloaded into it, sees its
//! `--capsule-backstop-exec HOST ARGV…` arguments in its constructor, starts the
//! system-call supervisor, puts the process under the filter and executes the
//! static program (shim/src/backstop/mod.rs). Reaching `main` means the shim was
//! not loaded.

fn main() {
    eprintln!("capsule-trampoline: runs static programs for libcapsule.so; not loaded by it here");
    std::process::exit(126);
}
