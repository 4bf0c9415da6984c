//! libc's `syscall()`: numbers of calls a replica handles go through that replica
//! (via the same exported hooks a direct libc call reaches); every other number
//! passes straight through.
//!
//! `syscall` is variadic; on x86-64 and aarch64 Linux its integer arguments arrive
//! exactly as six fixed `long` arguments would, which is how the hook takes them.

#[cfg(not(test))]
use libc::{c_char, c_int, c_long, size_t};

use crate::coverage::{Hook, Support::*};
#[cfg(not(test))]
use crate::hook::{self, Real};

pub const HOOKS: &[Hook] = &[Hook::new(
    "syscall",
    Partial("routes identity, uts, time, exec, socket and path numbers through their replicas (getdents64 lists merged directories; openat2 honours RESOLVE_* over the capsule's layers, RESOLVE_NO_XDEV counting the layers, each volume and /proc, /dev, /sys as the mounts, RESOLVE_CACHED gives EAGAIN)"),
)];

#[cfg(not(test))]
static REAL: Real = Real::new(c"syscall");

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
    let Some(address) = REAL.get() else {
        hook::set_errno(libc::ENOSYS);
        return -1;
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
        libc::SYS_getresuid => id::getresuid(p(a1).cast(), p(a2).cast(), p(a3).cast()) as c_long,
        libc::SYS_getresgid => id::getresgid(p(a1).cast(), p(a2).cast(), p(a3).cast()) as c_long,
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
        libc::SYS_sethostname => uts::sethostname(p(a1) as *const c_char, a2 as size_t) as c_long,
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
        _ if crate::fs::layers().is_some() => match fs_call(number, [a1, a2, a3, a4, a5]) {
            Some(rc) => rc,
            None => real(number, a1, a2, a3, a4, a5, a6),
        },
        _ => real(number, a1, a2, a3, a4, a5, a6),
    }
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

/// The file-system numbers, through the fs replica's hooks (which return -1 with
/// errno, as syscall() does). `None`: not a path call the replica handles.
#[cfg(not(test))]
unsafe fn fs_call(number: c_long, a: [c_long; 5]) -> Option<c_long> {
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
            use crate::fs::syscalls::{openat2, Openat2};
            match openat2(fd(a[0]), p(a[1]).cast(), p(a[2]).cast(), a[3] as usize) {
                Openat2::Open(path, flags, mode) => {
                    fs::openat(libc::AT_FDCWD, path.as_ptr(), flags, mode) as c_long
                }
                Openat2::Fail(e) => {
                    hook::set_errno(e);
                    -1
                }
                Openat2::Pass => return None,
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
        libc::SYS_mkdirat => fs::mkdirat(fd(a[0]), p(a[1]).cast(), a[2] as libc::mode_t) as c_long,
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
        libc::SYS_symlinkat => fs::symlinkat(p(a[0]).cast(), fd(a[1]), p(a[2]).cast()) as c_long,
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
