//! The first system-call rule under the shim: every capsule process gets `ENOSYS` from
//! `io_uring_setup`, `io_uring_enter` and `io_uring_register`.
//!
//! io_uring carries path operations (`IORING_OP_OPENAT`, `RENAMEAT`, `UNLINKAT`,
//! `MKDIRAT`, `STATX`…) in shared memory, out of reach of any preload hook: a program
//! using it would name host files while the shim looks on. Programs and libraries
//! (liburing users, Tokio's and Node's file back ends, databases) fall back to plain
//! system calls when the kernel has no io_uring, which the shim does see. The kernel
//! backstop (Landlock) still governs what the ring's operations could reach; this rule
//! keeps them inside the capsule's view as well.
//!
//! A seccomp-bpf filter needs `no_new_privs`, which the backstop sets: the filter is
//! installed with it, in the child between fork and exec, and is inherited by every
//! descendant across `fork`, `clone` and `exec` (static programs included), with no
//! way to remove it. Six BPF instructions per system call; nothing else changes (the
//! speculative store bypass mitigation that seccomp would force is left as it was).

use std::io;

/// io_uring's three system calls: the same numbers on every architecture (they were
/// added after the numbering was unified).
const IO_URING_SETUP: u32 = 425;
const IO_URING_REGISTER: u32 = 427;
/// x86_64's x32 ABI marks its numbers with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

// Classic BPF opcodes (linux/filter.h): class | operation | operand.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const BPF_ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K (0)
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JMP_JGT_K: u16 = 0x05 | 0x20; // BPF_JMP | BPF_JGT | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// `seccomp_data.nr` is the first field.
const NR_OFFSET: u32 = 0;

/// Refuses io_uring's calls with ENOSYS, allows every other.
static FILTER: [libc::sock_filter; 6] = [
    op(BPF_LD_W_ABS, 0, 0, NR_OFFSET),
    op(BPF_ALU_AND_K, 0, 0, !X32_SYSCALL_BIT),
    // Below io_uring_setup: allow (skip to the last instruction).
    op(BPF_JMP_JGE_K, 0, 2, IO_URING_SETUP),
    // Above io_uring_register: allow; else refuse.
    op(BPF_JMP_JGT_K, 1, 0, IO_URING_REGISTER),
    op(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
];

/// `seccomp(2)`'s operation and flag: without `SPEC_ALLOW` the kernel would also force
/// the speculative store bypass mitigation on every capsule process, which slows all
/// of its code, not only its system calls.
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 1 << 2;

/// Installs the filter in the calling process, which has `no_new_privs` set: for a
/// child between fork and exec. One system call on static data: async-signal-safe, no
/// allocation.
pub fn refuse_io_uring() -> io::Result<()> {
    let program = libc::sock_fprog {
        len: FILTER.len() as u16,
        filter: FILTER.as_ptr().cast_mut(),
    };
    // SAFETY: the program points to a static filter of `len` instructions, which the
    // kernel copies; the call reads nothing else of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            &program as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter on system call number `nr` as the kernel's BPF interpreter
    /// would (only the opcodes it uses).
    fn verdict(nr: u32) -> u32 {
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = FILTER[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = nr,
                BPF_ALU_AND_K => acc &= i.k,
                BPF_JMP_JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                BPF_JMP_JGT_K => pc += usize::from(if acc > i.k { i.jt } else { i.jf }),
                BPF_RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn only_io_uring_is_refused() {
        let refused = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        for nr in [425, 426, 427, 425 | X32_SYSCALL_BIT] {
            assert_eq!(verdict(nr), refused, "{nr}");
        }
        for nr in [
            0,
            1,
            2,
            59,
            257,
            424,
            428,
            435,
            437,
            1000,
            59 | X32_SYSCALL_BIT,
        ] {
            assert_eq!(verdict(nr), SECCOMP_RET_ALLOW, "{nr}");
        }
    }
}
