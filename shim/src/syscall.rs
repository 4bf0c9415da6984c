//! libc's `syscall()`: numbers of calls a replica handles go through that replica
//! (via the same exported hooks a direct libc call reaches); every other number
//! passes straight through.
//!
//! `syscall` is variadic; on x86-64 and aarch64 Linux its integer arguments arrive
//! exactly as six fixed `long` arguments would, which is how the hook takes them.

#[cfg(not(test))]
use libc::{c_char, c_int, c_long, size_t};

#[cfg(not(test))]
use crate::coverage::{Hook, Support::*};
#[cfg(not(test))]
use crate::hook::{self, Real};

/// `syscall`, exported by hand below rather than by `hook!` (`coverage.rs`).
#[cfg(not(test))]
pub(crate) const HOOKS: &[Option<Hook>] = &[Some(Hook::new(
    "syscall",
    Partial("routes identity, uts, time, exec, socket and every path number through their replicas (getdents64 lists merged directories; openat2 honours RESOLVE_* over the capsule's layers, RESOLVE_NO_XDEV counting the layers, each volume and /proc, /dev, /sys as the mounts, RESOLVE_CACHED gives EAGAIN); path numbers with no hooked libc function (mount API, *xattrat, file_setattr, handles, inotify/fanotify marks, chroot) give ENOSYS"),
))];

#[cfg(not(test))]
static REAL: Real = Real::new();

#[cfg(not(test))]
type RealSyscall =
    unsafe extern "C" fn(c_long, c_long, c_long, c_long, c_long, c_long, c_long) -> c_long;

#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    // SAFETY: the arguments are the program's own `syscall(2)` arguments for this number:
    // each pointer is what the kernel would read or write for it, which the caller of
    // `syscall` must give.
    unsafe {
        let Some(address) = REAL.get(c"syscall") else {
            return hook::fail(libc::ENOSYS);
        };
        // SAFETY: libc's syscall has this signature on the supported architectures.
        let real: RealSyscall = std::mem::transmute(address);
        if hook::inside() {
            return real(number, a1, a2, a3, a4, a5, a6);
        }
        use crate::exec::hooks as exec;
        use crate::identity::hooks as id;
        use crate::time::hooks as time;
        use crate::uts::hooks as uts;
        let p = |a: c_long| a as *mut libc::c_void;
        match number {
            libc::SYS_getuid => id::getuid() as c_long,
            libc::SYS_geteuid => id::geteuid() as c_long,
            libc::SYS_getgid => id::getgid() as c_long,
            libc::SYS_getegid => id::getegid() as c_long,
            libc::SYS_getresuid => {
                id::getresuid(p(a1).cast(), p(a2).cast(), p(a3).cast()) as c_long
            }
            libc::SYS_getresgid => {
                id::getresgid(p(a1).cast(), p(a2).cast(), p(a3).cast()) as c_long
            }
            libc::SYS_getgroups => id::getgroups(a1 as c_int, p(a2).cast()) as c_long,
            libc::SYS_setuid => id::setuid(a1 as u32) as c_long,
            libc::SYS_setgid => id::setgid(a1 as u32) as c_long,
            libc::SYS_setreuid => id::setreuid(a1 as u32, a2 as u32) as c_long,
            libc::SYS_setregid => id::setregid(a1 as u32, a2 as u32) as c_long,
            libc::SYS_setresuid => id::setresuid(a1 as u32, a2 as u32, a3 as u32) as c_long,
            libc::SYS_setresgid => id::setresgid(a1 as u32, a2 as u32, a3 as u32) as c_long,
            libc::SYS_setfsuid => id::setfsuid(a1 as u32) as c_long,
            libc::SYS_setfsgid => id::setfsgid(a1 as u32) as c_long,
            libc::SYS_setgroups => id::setgroups(a1 as size_t, p(a2).cast()) as c_long,
            libc::SYS_uname => uts::uname(p(a1).cast()) as c_long,
            libc::SYS_sethostname => {
                uts::sethostname(p(a1) as *const c_char, a2 as size_t) as c_long
            }
            libc::SYS_setdomainname => {
                uts::setdomainname(p(a1) as *const c_char, a2 as size_t) as c_long
            }
            libc::SYS_clock_gettime => time::clock_gettime(a1 as c_int, p(a2).cast()) as c_long,
            libc::SYS_gettimeofday => time::gettimeofday(p(a1).cast(), p(a2)) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_time => time::time(p(a1).cast()) as c_long,
            libc::SYS_clock_settime => time::clock_settime(a1 as c_int, p(a2).cast()) as c_long,
            libc::SYS_settimeofday => time::settimeofday(p(a1).cast(), p(a2)) as c_long,
            libc::SYS_execve => exec::execve(p(a1).cast(), p(a2).cast(), p(a3).cast()) as c_long,
            libc::SYS_execveat => exec::execveat(
                a1 as c_int,
                p(a2).cast(),
                p(a3).cast(),
                p(a4).cast(),
                a5 as c_int,
            ) as c_long,
            _ if is_socket_call(number)
                && (crate::net::get().is_some() || crate::fs::layers().is_some()) =>
            {
                net_call(number, [a1, a2, a3, a4, a5, a6])
            }
            _ if crate::fs::layers().is_some() && is_unrouted_path_call(number) => {
                // A path the kernel would resolve on the host: not the capsule's.
                hook::fail(libc::ENOSYS)
            }
            _ if crate::fs::layers().is_some() => match fs_call(number, [a1, a2, a3, a4, a5]) {
                Some(rc) => rc,
                None => real(number, a1, a2, a3, a4, a5, a6),
            },
            _ => real(number, a1, a2, a3, a4, a5, a6),
        }
    }
}

/// Numbers that take a path (or a file handle, or make mounts) and have no libc
/// function the file-system replica hooks: `ENOSYS` while the replica is on, as a
/// kernel without them would say (callers fall back to the libc functions).
#[cfg(not(test))]
fn is_unrouted_path_call(number: c_long) -> bool {
    // The generic numbers (from 424 on) are the same on every architecture.
    const OPEN_TREE_TO_FSPICK: std::ops::RangeInclusive<c_long> = 428..=433;
    const MOUNT_SETATTR: c_long = 442;
    const QUOTACTL_FD: c_long = 443;
    const SETXATTRAT_TO_FILE_SETATTR: std::ops::RangeInclusive<c_long> = 463..=469;
    #[cfg(target_arch = "x86_64")]
    if number == libc::SYS_uselib {
        return true;
    }
    OPEN_TREE_TO_FSPICK.contains(&number)
        || SETXATTRAT_TO_FILE_SETATTR.contains(&number)
        || matches!(
            number,
            MOUNT_SETATTR
                | QUOTACTL_FD
                | libc::SYS_name_to_handle_at
                | libc::SYS_open_by_handle_at
                | libc::SYS_inotify_add_watch
                | libc::SYS_fanotify_mark
                | libc::SYS_chroot
                | libc::SYS_pivot_root
                | libc::SYS_mount
                | libc::SYS_umount2
                | libc::SYS_acct
                | libc::SYS_swapon
                | libc::SYS_swapoff
                | libc::SYS_quotactl
        )
}

#[cfg(not(test))]
fn is_socket_call(number: c_long) -> bool {
    matches!(
        number,
        libc::SYS_bind
            | libc::SYS_connect
            | libc::SYS_getsockname
            | libc::SYS_getpeername
            | libc::SYS_accept
            | libc::SYS_accept4
            | libc::SYS_sendto
            | libc::SYS_recvfrom
            | libc::SYS_sendmsg
            | libc::SYS_recvmsg
            | libc::SYS_sendmmsg
            | libc::SYS_recvmmsg
    )
}

/// The socket numbers, through the network replica's hooks (a unix path goes on to
/// the fs replica from there).
#[cfg(not(test))]
unsafe fn net_call(number: c_long, a: [c_long; 6]) -> c_long {
    // SAFETY: the arguments are the program's own `syscall(2)` arguments for this number:
    // each pointer is what the kernel would read or write for it, which the caller of
    // `syscall` must give.
    unsafe {
        use crate::net::hooks as net;
        let p = |x: c_long| x as *mut libc::c_void;
        let fd = |x: c_long| x as c_int;
        let len = |x: c_long| x as libc::socklen_t;
        match number {
            libc::SYS_bind => net::bind(fd(a[0]), p(a[1]).cast(), len(a[2])) as c_long,
            libc::SYS_connect => net::connect(fd(a[0]), p(a[1]).cast(), len(a[2])) as c_long,
            libc::SYS_getsockname => {
                net::getsockname(fd(a[0]), p(a[1]).cast(), p(a[2]).cast()) as c_long
            }
            libc::SYS_getpeername => {
                net::getpeername(fd(a[0]), p(a[1]).cast(), p(a[2]).cast()) as c_long
            }
            libc::SYS_accept => net::accept(fd(a[0]), p(a[1]).cast(), p(a[2]).cast()) as c_long,
            libc::SYS_accept4 => {
                net::accept4(fd(a[0]), p(a[1]).cast(), p(a[2]).cast(), fd(a[3])) as c_long
            }
            libc::SYS_sendto => net::sendto(
                fd(a[0]),
                p(a[1]),
                a[2] as size_t,
                fd(a[3]),
                p(a[4]).cast(),
                len(a[5]),
            ) as c_long,
            libc::SYS_recvfrom => net::recvfrom(
                fd(a[0]),
                p(a[1]),
                a[2] as size_t,
                fd(a[3]),
                p(a[4]).cast(),
                p(a[5]).cast(),
            ) as c_long,
            libc::SYS_sendmsg => net::sendmsg(fd(a[0]), p(a[1]).cast(), fd(a[2])) as c_long,
            libc::SYS_recvmsg => net::recvmsg(fd(a[0]), p(a[1]).cast(), fd(a[2])) as c_long,
            libc::SYS_sendmmsg => {
                net::sendmmsg(fd(a[0]), p(a[1]).cast(), a[2] as libc::c_uint, fd(a[3])) as c_long
            }
            _ => net::recvmmsg(
                fd(a[0]),
                p(a[1]).cast(),
                a[2] as libc::c_uint,
                fd(a[3]),
                p(a[4]).cast(),
            ) as c_long,
        }
    }
}

/// `futimesat(dirfd, path, times)` (microseconds) as `utimensat`; a null path
/// names `dirfd` itself.
#[cfg(all(not(test), target_arch = "x86_64"))]
unsafe fn futimesat(dirfd: c_int, path: *const c_char, times: *const libc::timeval) -> c_long {
    // SAFETY: the arguments are the program's own `syscall(2)` arguments for this number:
    // each pointer is what the kernel would read or write for it, which the caller of
    // `syscall` must give.
    unsafe {
        use crate::fs::hooks as fs;
        let mut spec = [libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }; 2];
        let spec_ptr = if times.is_null() {
            std::ptr::null()
        } else {
            for (i, ts) in spec.iter_mut().enumerate() {
                let tv = *times.add(i);
                ts.tv_sec = tv.tv_sec;
                ts.tv_nsec = tv.tv_usec * 1000;
            }
            spec.as_ptr()
        };
        fs::utimensat(dirfd, path, spec_ptr, 0) as c_long
    }
}

/// The file-system numbers, through the fs replica's hooks (which return -1 with
/// errno, as syscall() does). `None`: not a path call the replica handles.
#[cfg(not(test))]
unsafe fn fs_call(number: c_long, a: [c_long; 5]) -> Option<c_long> {
    // SAFETY: the arguments are the program's own `syscall(2)` arguments for this number:
    // each pointer is what the kernel would read or write for it, which the caller of
    // `syscall` must give.
    unsafe {
        use crate::fs::hooks as fs;
        let p = |x: c_long| x as *mut libc::c_void;
        let fd = |x: c_long| x as c_int;
        let rc = match number {
            #[cfg(target_arch = "x86_64")]
            libc::SYS_open => fs::open(p(a[0]).cast(), fd(a[1]), a[2] as libc::mode_t) as c_long,
            libc::SYS_openat => {
                fs::openat(fd(a[0]), p(a[1]).cast(), fd(a[2]), a[3] as libc::mode_t) as c_long
            }
            libc::SYS_openat2 => {
                use crate::hook::Skip;
                match crate::fs::syscalls::openat2(
                    fd(a[0]),
                    p(a[1]).cast(),
                    p(a[2]).cast(),
                    a[3] as usize,
                ) {
                    Ok((path, flags, mode)) => {
                        fs::openat(libc::AT_FDCWD, path.as_ptr(), flags, mode) as c_long
                    }
                    Err(Skip::Errno(e)) => hook::fail(e),
                    Err(Skip::Pass) => return None,
                }
            }
            libc::SYS_getdents64 => {
                crate::fs::syscalls::getdents64(fd(a[0]), p(a[1]).cast(), a[2] as usize)?
            }
            libc::SYS_newfstatat => {
                fs::fstatat(fd(a[0]), p(a[1]).cast(), p(a[2]).cast(), fd(a[3])) as c_long
            }
            libc::SYS_statx => fs::statx(
                fd(a[0]),
                p(a[1]).cast(),
                fd(a[2]),
                a[3] as libc::c_uint,
                p(a[4]).cast(),
            ) as c_long,
            libc::SYS_faccessat => fs::faccessat(fd(a[0]), p(a[1]).cast(), fd(a[2]), 0) as c_long,
            libc::SYS_faccessat2 => {
                fs::faccessat(fd(a[0]), p(a[1]).cast(), fd(a[2]), fd(a[3])) as c_long
            }
            libc::SYS_mkdirat => {
                fs::mkdirat(fd(a[0]), p(a[1]).cast(), a[2] as libc::mode_t) as c_long
            }
            libc::SYS_unlinkat => fs::unlinkat(fd(a[0]), p(a[1]).cast(), fd(a[2])) as c_long,
            libc::SYS_renameat2 => fs::renameat2(
                fd(a[0]),
                p(a[1]).cast(),
                fd(a[2]),
                p(a[3]).cast(),
                a[4] as libc::c_uint,
            ) as c_long,
            libc::SYS_readlinkat => {
                fs::readlinkat(fd(a[0]), p(a[1]).cast(), p(a[2]).cast(), a[3] as usize) as c_long
            }
            libc::SYS_symlinkat => {
                fs::symlinkat(p(a[0]).cast(), fd(a[1]), p(a[2]).cast()) as c_long
            }
            libc::SYS_linkat => {
                fs::linkat(fd(a[0]), p(a[1]).cast(), fd(a[2]), p(a[3]).cast(), fd(a[4])) as c_long
            }
            libc::SYS_fchmodat => {
                fs::fchmodat(fd(a[0]), p(a[1]).cast(), a[2] as libc::mode_t, 0) as c_long
            }
            libc::SYS_fchownat => fs::fchownat(
                fd(a[0]),
                p(a[1]).cast(),
                a[2] as libc::uid_t,
                a[3] as libc::gid_t,
                fd(a[4]),
            ) as c_long,
            libc::SYS_utimensat => {
                fs::utimensat(fd(a[0]), p(a[1]).cast(), p(a[2]).cast(), fd(a[3])) as c_long
            }
            libc::SYS_fchmodat2 => {
                fs::fchmodat(fd(a[0]), p(a[1]).cast(), a[2] as libc::mode_t, fd(a[3])) as c_long
            }
            libc::SYS_mknodat => fs::mknodat(
                fd(a[0]),
                p(a[1]).cast(),
                a[2] as libc::mode_t,
                a[3] as libc::dev_t,
            ) as c_long,
            libc::SYS_renameat => {
                fs::renameat(fd(a[0]), p(a[1]).cast(), fd(a[2]), p(a[3]).cast()) as c_long
            }
            libc::SYS_truncate => fs::truncate(p(a[0]).cast(), a[1] as libc::off_t) as c_long,
            libc::SYS_fchmod => fs::fchmod(fd(a[0]), a[1] as libc::mode_t) as c_long,
            libc::SYS_fchown => {
                fs::fchown(fd(a[0]), a[1] as libc::uid_t, a[2] as libc::gid_t) as c_long
            }
            libc::SYS_fstat => fs::fstat(fd(a[0]), p(a[1]).cast()) as c_long,
            libc::SYS_ioctl => {
                fs::ioctl(fd(a[0]), a[1] as libc::c_ulong, a[2] as libc::c_ulong) as c_long
            }
            libc::SYS_setxattr => fs::setxattr(
                p(a[0]).cast(),
                p(a[1]).cast(),
                p(a[2]),
                a[3] as usize,
                fd(a[4]),
            ) as c_long,
            libc::SYS_lsetxattr => fs::lsetxattr(
                p(a[0]).cast(),
                p(a[1]).cast(),
                p(a[2]),
                a[3] as usize,
                fd(a[4]),
            ) as c_long,
            libc::SYS_fsetxattr => {
                fs::fsetxattr(fd(a[0]), p(a[1]).cast(), p(a[2]), a[3] as usize, fd(a[4])) as c_long
            }
            libc::SYS_removexattr => fs::removexattr(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            libc::SYS_lremovexattr => fs::lremovexattr(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            libc::SYS_fremovexattr => fs::fremovexattr(fd(a[0]), p(a[1]).cast()) as c_long,
            libc::SYS_getxattr => {
                fs::getxattr(p(a[0]).cast(), p(a[1]).cast(), p(a[2]), a[3] as usize) as c_long
            }
            libc::SYS_lgetxattr => {
                fs::lgetxattr(p(a[0]).cast(), p(a[1]).cast(), p(a[2]), a[3] as usize) as c_long
            }
            libc::SYS_listxattr => {
                fs::listxattr(p(a[0]).cast(), p(a[1]).cast(), a[2] as usize) as c_long
            }
            libc::SYS_llistxattr => {
                fs::llistxattr(p(a[0]).cast(), p(a[1]).cast(), a[2] as usize) as c_long
            }
            libc::SYS_statfs => fs::statfs(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_creat => fs::creat(p(a[0]).cast(), a[1] as libc::mode_t) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_stat => fs::stat(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_lstat => fs::lstat(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_access => fs::access(p(a[0]).cast(), fd(a[1])) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_chmod => fs::chmod(p(a[0]).cast(), a[1] as libc::mode_t) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_chown => {
                fs::chown(p(a[0]).cast(), a[1] as libc::uid_t, a[2] as libc::gid_t) as c_long
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_lchown => {
                fs::lchown(p(a[0]).cast(), a[1] as libc::uid_t, a[2] as libc::gid_t) as c_long
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_mkdir => fs::mkdir(p(a[0]).cast(), a[1] as libc::mode_t) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_rmdir => fs::rmdir(p(a[0]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_unlink => fs::unlink(p(a[0]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_rename => fs::rename(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_link => fs::link(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_symlink => fs::symlink(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_readlink => {
                fs::readlink(p(a[0]).cast(), p(a[1]).cast(), a[2] as usize) as c_long
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_mknod => {
                fs::mknod(p(a[0]).cast(), a[1] as libc::mode_t, a[2] as libc::dev_t) as c_long
            }
            #[cfg(target_arch = "x86_64")]
            libc::SYS_utime => fs::utime(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_utimes => fs::utimes(p(a[0]).cast(), p(a[1]).cast()) as c_long,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_futimesat => futimesat(fd(a[0]), p(a[1]).cast(), p(a[2]).cast()),
            libc::SYS_chdir => fs::chdir(p(a[0]).cast()) as c_long,
            // The system call returns the length, NUL included.
            libc::SYS_getcwd => {
                let buf = fs::getcwd(p(a[0]).cast(), a[1] as usize);
                if buf.is_null() {
                    -1
                } else {
                    libc::strlen(buf) as c_long + 1
                }
            }
            _ => return None,
        };
        Some(rc)
    }
}
