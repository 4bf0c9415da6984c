//! The backstop's seccomp-bpf program: every system call a replica virtualises goes
//! to the supervisor (`SECCOMP_RET_USER_NOTIF`); every other one runs as it is.
//!
//! The program reads the architecture and the call's number, the arguments only of
//! the few calls whose answer depends on them (`clock_gettime`'s clock, the address
//! register of `sendto`, `recvfrom`, `accept`, `accept4`), never the instruction
//! pointer, so the kernel's per-number action cache (5.11+) answers every call that
//! is not on the lists without running the program: a static program pays nothing
//! for the calls the capsule does not change.
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
    // their destinations are in memory, which no filter reads
    libc::SYS_sendmsg,
    libc::SYS_sendmmsg,
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

/// Calls caught only when an address argument (its index) is not NULL: a
/// destination or a place for the peer's address, which a unix path makes the
/// capsule's. Without one (a connected socket's `send`, `recv`, an `accept` that
/// does not ask) they name nothing the capsule changes. The register is checked,
/// not memory, so no other thread can change it after the check.
#[cfg(target_arch = "x86_64")]
pub const ADDRESSED: &[(i64, u32)] = &[
    (libc::SYS_sendto, 4),
    (libc::SYS_recvfrom, 4),
    (libc::SYS_accept, 1),
    (libc::SYS_accept4, 1),
];

#[cfg(not(target_arch = "x86_64"))]
pub const ADDRESSED: &[(i64, u32)] = &[];

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

/// `seccomp_data`: `nr` at 0, `arch` at 4, the first argument's low word at 16
/// (little-endian).
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
#[cfg(target_endian = "little")]
const ARG0_LOW_OFFSET: u32 = 16;
#[cfg(target_endian = "big")]
const ARG0_LOW_OFFSET: u32 = 20;
/// The other half of an argument, from its low word.
#[cfg(target_endian = "little")]
const HIGH_FROM_LOW: i64 = 4;
#[cfg(target_endian = "big")]
const HIGH_FROM_LOW: i64 = -4;

/// The offset of argument `i`'s low word.
const fn arg_low(i: u32) -> u32 {
    ARG0_LOW_OFFSET + 8 * i
}

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The clock calls, caught only when the capsule's clock differs from the host's.
const CLOCK_CALLS: &[i64] = &[
    libc::SYS_clock_gettime,
    libc::SYS_gettimeofday,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_time,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_arch_prctl,
];

/// The wall clocks, the only ones a capsule moves (time/ops.rs): `clock_gettime`
/// of any other (Go's scheduler reads `CLOCK_MONOTONIC` all the time) runs natively.
const WALL_CLOCKS: [u32; 4] = [
    libc::CLOCK_REALTIME as u32,
    libc::CLOCK_REALTIME_COARSE as u32,
    libc::CLOCK_REALTIME_ALARM as u32,
    libc::CLOCK_TAI as u32,
];

/// Where a jump lands, resolved when the program is complete.
#[derive(Clone, Copy, PartialEq)]
enum Label {
    Allow,
    Notify,
    Refuse,
    ClockCheck,
    /// The address argument of this index is checked.
    Address(u32),
}

/// The program. `clock`: the capsule's clock is not the host's, so the wall-clock
/// calls are caught too (and `arch_prctl`, where the supervisor patches the vDSO).
pub fn program(clock: bool) -> Vec<libc::sock_filter> {
    let refuse = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    // Instructions with the label their true branch takes (false falls through).
    let mut code: Vec<(libc::sock_filter, Option<Label>)> = vec![
        (op(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET), None),
        (op(BPF_JMP_JEQ_K, 0, 0, AUDIT_ARCH_NATIVE), None), // patched: jt over next
        (op(BPF_RET_K, 0, 0, refuse), None),
        (op(BPF_LD_W_ABS, 0, 0, NR_OFFSET), None),
        (
            op(BPF_JMP_JSET_K, 0, 0, X32_SYSCALL_BIT),
            Some(Label::Refuse),
        ),
    ];
    code[1].0.jt = 1;
    for &nr in CAUGHT {
        let is_clock = CLOCK_CALLS.contains(&nr);
        if is_clock && !clock {
            continue;
        }
        let to = if nr == libc::SYS_clock_gettime {
            Label::ClockCheck
        } else {
            Label::Notify
        };
        code.push((op(BPF_JMP_JEQ_K, 0, 0, nr as u32), Some(to)));
    }
    for &(nr, arg) in ADDRESSED {
        code.push((
            op(BPF_JMP_JEQ_K, 0, 0, nr as u32),
            Some(Label::Address(arg)),
        ));
    }
    let mut labels = Vec::new();
    let mut mark = |code: &Vec<(libc::sock_filter, Option<Label>)>, l: Label| {
        labels.push((l, code.len()));
    };
    mark(&code, Label::Allow);
    code.push((op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), None));
    mark(&code, Label::Notify);
    code.push((op(BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF), None));
    mark(&code, Label::Refuse);
    code.push((op(BPF_RET_K, 0, 0, refuse), None));
    if clock {
        // clock_gettime: only the wall clocks go to the supervisor (jumps are
        // forward only, so this block has its own two answers).
        mark(&code, Label::ClockCheck);
        code.push((op(BPF_LD_W_ABS, 0, 0, ARG0_LOW_OFFSET), None));
        let n = WALL_CLOCKS.len();
        for (i, &clk) in WALL_CLOCKS.iter().enumerate() {
            code.push((op(BPF_JMP_JEQ_K, (n - i) as u8, 0, clk), None));
        }
        code.push((op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), None));
        code.push((op(BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF), None));
    }
    let mut args: Vec<u32> = ADDRESSED.iter().map(|&(_, a)| a).collect();
    args.dedup();
    for arg in args {
        // Both words zero: NULL, allowed; anything else goes to the supervisor.
        mark(&code, Label::Address(arg));
        let low = arg_low(arg);
        code.push((op(BPF_LD_W_ABS, 0, 0, low), None));
        code.push((op(BPF_JMP_JEQ_K, 0, 2, 0), None));
        code.push((
            op(BPF_LD_W_ABS, 0, 0, (low as i64 + HIGH_FROM_LOW) as u32),
            None,
        ));
        code.push((op(BPF_JMP_JEQ_K, 1, 0, 0), None));
        code.push((op(BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF), None));
        code.push((op(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), None));
    }
    code.iter()
        .enumerate()
        .map(|(at, &(mut insn, to))| {
            if let Some(to) = to {
                let target = labels
                    .iter()
                    .find(|(l, _)| *l == to)
                    .map_or(at + 1, |&(_, t)| t);
                // Every target lies ahead of its jump, within 255 (see the test).
                insn.jt = (target - at - 1) as u8;
            }
            insn
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on (arch, nr, first argument) as the kernel's interpreter
    /// would.
    fn verdict(p: &[libc::sock_filter], arch: u32, nr: u32, arg0: u32) -> u32 {
        verdict_args(p, arch, nr, [u64::from(arg0), 0, 0, 0, 0, 0])
    }

    /// `verdict` with every argument.
    fn verdict_args(p: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let word = |k: u32| {
            let k = k as usize;
            u32::from_ne_bytes(data[k..k + 4].try_into().unwrap())
        };
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = word(i.k),
                BPF_JMP_JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                BPF_JMP_JSET_K => pc += usize::from(if acc & i.k != 0 { i.jt } else { i.jf }),
                BPF_RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn fits_classic_bpf() {
        for clock in [false, true] {
            let p = program(clock);
            assert!(p.len() < 255, "jumps are 8-bit: {}", p.len());
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn listed_calls_go_to_the_supervisor_others_run() {
        let refuse = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let with_clock = program(true);
        let without = program(false);
        for &nr in CAUGHT {
            let clockish = CLOCK_CALLS.contains(&nr);
            assert_eq!(
                verdict(&with_clock, AUDIT_ARCH_NATIVE, nr as u32, 0),
                SECCOMP_RET_USER_NOTIF,
                "{nr}"
            );
            let expected = if clockish {
                SECCOMP_RET_ALLOW
            } else {
                SECCOMP_RET_USER_NOTIF
            };
            assert_eq!(
                verdict(&without, AUDIT_ARCH_NATIVE, nr as u32, 0),
                expected,
                "{nr}"
            );
        }
        for nr in [0, 1, 3, 9, 11, 39, 56, 57, 60, 202, 231, 334, 435, 1000] {
            assert_eq!(
                verdict(&with_clock, AUDIT_ARCH_NATIVE, nr, 0),
                SECCOMP_RET_ALLOW,
                "{nr}"
            );
        }
        // Only wall clocks are caught.
        let clock_gettime = libc::SYS_clock_gettime as u32;
        for clk in WALL_CLOCKS {
            assert_eq!(
                verdict(&with_clock, AUDIT_ARCH_NATIVE, clock_gettime, clk),
                SECCOMP_RET_USER_NOTIF
            );
        }
        for clk in [1, 2, 3, 4, 6, 7, 9, 10, 0xffff_fffe] {
            assert_eq!(
                verdict(&with_clock, AUDIT_ARCH_NATIVE, clock_gettime, clk),
                SECCOMP_RET_ALLOW,
                "{clk}"
            );
        }
        // x32 and i386 numbers never slip through.
        for p in [&with_clock, &without] {
            assert_eq!(
                verdict(p, AUDIT_ARCH_NATIVE, 2 | X32_SYSCALL_BIT, 0),
                refuse
            );
            assert_eq!(verdict(p, AUDIT_ARCH_NATIVE, X32_SYSCALL_BIT, 0), refuse);
            assert_eq!(verdict(p, 0x4000_0003, 5, 0), refuse); // AUDIT_ARCH_I386, open
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn address_calls_are_caught_only_with_an_address() {
        for p in [program(true), program(false)] {
            for &(nr, arg) in ADDRESSED {
                let mut args = [0u64; 6];
                assert_eq!(
                    verdict_args(&p, AUDIT_ARCH_NATIVE, nr as u32, args),
                    SECCOMP_RET_ALLOW,
                    "{nr} without an address"
                );
                // Other arguments do not matter; either word of the address does.
                args = [7, 0, 9, 0, 0, 0];
                args[arg as usize] = 0;
                assert_eq!(
                    verdict_args(&p, AUDIT_ARCH_NATIVE, nr as u32, args),
                    SECCOMP_RET_ALLOW
                );
                for address in [0x7ffd_1234_5678, 0x1000, 1 << 32] {
                    args[arg as usize] = address;
                    assert_eq!(
                        verdict_args(&p, AUDIT_ARCH_NATIVE, nr as u32, args),
                        SECCOMP_RET_USER_NOTIF,
                        "{nr} with {address:#x}"
                    );
                }
            }
        }
    }
}
