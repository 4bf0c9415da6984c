//! The backstop's seccomp-bpf program: every system call a replica virtualises goes
//! to the supervisor (`SECCOMP_RET_USER_NOTIF`); every other one runs as it is.
//!
//! The program reads only the architecture and the call's number, never its
//! arguments or instruction pointer, so the kernel's per-number action cache
//! (5.11+) answers every call that is not on the list without running the program:
//! a static program pays nothing for the calls the capsule does not change.
//! Calls of another ABI (i386 `int 0x80`, x32) would name other numbers: they are
//! refused with `ENOSYS`, not let through.

/// The numbers the supervisor serves: each replica's, as `syscall.rs` routes them,
/// plus `arch_prctl`, which every static program (glibc, musl, Go) makes once at
/// start, before it reads the clock: the supervisor patches the vDSO there.
#[cfg(target_arch = "x86_64")]
pub const CAUGHT: &[i64] = &[
    // identity
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_setgroups,
    // uts
    libc::SYS_uname,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    // clock
    libc::SYS_clock_gettime,
    libc::SYS_gettimeofday,
    libc::SYS_time,
    libc::SYS_clock_settime,
    libc::SYS_settimeofday,
    libc::SYS_arch_prctl,
    // exec
    libc::SYS_execve,
    libc::SYS_execveat,
    // paths, old forms
    libc::SYS_open,
    libc::SYS_creat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_readlink,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_mknod,
    libc::SYS_unlink,
    libc::SYS_rename,
    libc::SYS_symlink,
    libc::SYS_link,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_truncate,
    libc::SYS_chdir,
    libc::SYS_getcwd,
    // paths, *at forms
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlinkat,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_symlinkat,
    libc::SYS_linkat,
    libc::SYS_fchmodat,
    FCHMODAT2,
    libc::SYS_fchownat,
    libc::SYS_futimesat,
    libc::SYS_utimensat,
    // extended attributes
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fsetxattr,
    libc::SYS_fremovexattr,
    // ports and peers
    libc::SYS_bind,
    libc::SYS_connect,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    // descriptors of capsule files: merged listings, remembered ownership, copy-up
    libc::SYS_getdents64,
    libc::SYS_fstat,
    libc::SYS_fchmod,
    libc::SYS_fchown,
    // names the kernel would resolve on the host, with no replica behind them
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_inotify_add_watch,
    libc::SYS_fanotify_mark,
    libc::SYS_chroot,
    libc::SYS_uselib,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

#[cfg(not(target_arch = "x86_64"))]
pub const CAUGHT: &[i64] = &[];

/// `fchmodat2` (Linux 6.6), not yet in every libc crate.
pub const FCHMODAT2: i64 = 452;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH_NATIVE: u32 = 0;

/// x86_64's x32 ABI marks its numbers with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
pub const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;

/// `seccomp_data`: `nr` at 0, `arch` at 4.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Instructions before the list, and after it.
const HEAD: usize = 5;
const TAIL: usize = 3;
/// Room for the program: the list plus its frame.
pub const LEN: usize = HEAD + CAUGHT.len() + TAIL;

/// The program, built into a fixed array (no allocation: the trampoline runs it
/// between fork and exec).
pub fn program() -> [libc::sock_filter; LEN] {
    let refuse = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let mut p = [op(BPF_RET_K, 0, 0, refuse); LEN];
    let n = CAUGHT.len();
    p[0] = op(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET);
    // Native architecture: go on (skip the refusal); else refuse.
    p[1] = op(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_NATIVE);
    p[2] = op(BPF_RET_K, 0, 0, refuse);
    p[3] = op(BPF_LD_W_ABS, 0, 0, NR_OFFSET);
    // An x32 number: refuse, with the last instruction (after ALLOW and NOTIFY).
    p[4] = op(BPF_JMP_JSET_K, (n + 2) as u8, 0, X32_SYSCALL_BIT);
    for (i, &nr) in CAUGHT.iter().enumerate() {
        // Found: jump over the remaining checks and ALLOW, to NOTIFY.
        p[HEAD + i] = op(BPF_JMP_JEQ_K, (n - i) as u8, 0, nr as u32);
    }
    p[HEAD + n] = op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW);
    p[HEAD + n + 1] = op(BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF);
    p[HEAD + n + 2] = op(BPF_RET_K, 0, 0, refuse);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on (arch, nr) as the kernel's interpreter would.
    fn verdict(arch: u32, nr: u32) -> u32 {
        let p = program();
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS if i.k == ARCH_OFFSET => acc = arch,
                BPF_LD_W_ABS => acc = nr,
                BPF_JMP_JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                BPF_JMP_JSET_K => pc += usize::from(if acc & i.k != 0 { i.jt } else { i.jf }),
                BPF_RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    // Classic BPF jumps are 8-bit; a program has at most 4096 instructions.
    const _: () = assert!(CAUGHT.len() + TAIL < 256 && LEN < 4096);

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn listed_calls_go_to_the_supervisor_others_run() {
        let refuse = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        for &nr in CAUGHT {
            assert_eq!(
                verdict(AUDIT_ARCH_NATIVE, nr as u32),
                SECCOMP_RET_USER_NOTIF,
                "{nr}"
            );
        }
        for nr in [0, 1, 3, 9, 11, 39, 56, 57, 60, 202, 231, 334, 435, 1000] {
            assert_eq!(verdict(AUDIT_ARCH_NATIVE, nr), SECCOMP_RET_ALLOW, "{nr}");
        }
        // x32 and i386 numbers never slip through.
        assert_eq!(verdict(AUDIT_ARCH_NATIVE, 2 | X32_SYSCALL_BIT), refuse);
        assert_eq!(verdict(AUDIT_ARCH_NATIVE, X32_SYSCALL_BIT), refuse);
        assert_eq!(verdict(0x4000_0003, 5), refuse); // AUDIT_ARCH_I386, open
    }
}
