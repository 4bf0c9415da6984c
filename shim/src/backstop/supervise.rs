//! The supervisor: serves the system calls the filter sends it, for every process
//! of a capsule that runs without the shim (static programs, Go), with the shim's
//! own semantics.
//!
//! It is a copy of a process that has the shim loaded and initialised with the
//! capsule's settings (the trampoline forks it, see `mod.rs`). For each call it
//! makes the arguments its own — strings and input structures copied out of the
//! target, the target's descriptors duplicated with `pidfd_getfd`, its working
//! directory opened from `/proc` — then runs the call through `syscall.rs`'s
//! router, the very function a libc `syscall()` of a dynamic program reaches, so
//! that copy-on-write, whiteouts, volumes, remembered ownership, identity, host
//! name and clock are one implementation with two entry points. Results go back
//! by `process_vm_writev`; a new descriptor goes into the target with
//! `SECCOMP_IOCTL_NOTIF_ADDFD` (atomically with the answer); a descriptor the
//! shim replaced by its copy-up follows into the target at its own number.
//!
//! A path argument is read once and never handed back to the kernel
//! (`SECCOMP_USER_NOTIF_FLAG_CONTINUE` is used only where the target's own
//! arguments name exactly what the capsule names, or carry no path at all), so a
//! thread that rewrites the string after the check changes nothing.
//!
//! Processes that load the shim themselves (a dynamic program exec'd from a
//! static one) run their calls as they are: their shim has translated them.
//! `trust.rs` decides which those are, from what a program cannot forge cheaply.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::HashMap;
use std::ffi::{c_int, c_long, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::filter::FCHMODAT2;
use super::inherit::QUERY_IDENTITY;
use super::remote::Target;
use super::trust::{Trust, QUERY_LOADER, QUERY_SHIM};
use crate::fs::ops::{self, Skip};
use crate::hook;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SeccompData {
    nr: c_int,
    arch: u32,
    instruction_pointer: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
struct Resp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

#[repr(C)]
struct AddFd {
    id: u64,
    flags: u32,
    srcfd: u32,
    newfd: u32,
    newfd_flags: u32,
}

// linux/seccomp.h: _IOWR('!', 0, struct seccomp_notif) and friends.
const IOCTL_NOTIF_RECV: libc::Ioctl = 0xC050_2100_u32 as libc::Ioctl;
const IOCTL_NOTIF_SEND: libc::Ioctl = 0xC018_2101_u32 as libc::Ioctl;
const IOCTL_NOTIF_ADDFD: libc::Ioctl = 0x4018_2103_u32 as libc::Ioctl;
const IOCTL_NOTIF_SET_FLAGS: libc::Ioctl = 0x4008_2104_u32 as libc::Ioctl;
const USER_NOTIF_FLAG_CONTINUE: u32 = 1;
const USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
const ADDFD_FLAG_SETFD: u32 = 1;
const ADDFD_FLAG_SEND: u32 = 2;

/// `getcwd(buf, QUERY_CWD)` from a process with the shim: the supervisor answers
/// with the host directory it keeps as that process's working directory (see
/// `Supervisor::cwds`), `QUERY_ANSWER` plus its length, or `QUERY_ANSWER` alone
/// when the kernel's is right. Without a backstop the kernel answers (at most
/// `PATH_MAX`).
pub const QUERY_CWD: u64 = 0x6361_7073_7577_6400;

const ARCH_SET_FS: u64 = 0x1002;
/// Output buffers larger than this are refused (EINVAL): no system call the
/// supervisor serves needs more.
const MAX_BUFFER: usize = 64 << 20;

/// What the target gets.
enum Outcome {
    Value(i64),
    Errno(c_int),
    /// The kernel runs the call as the target made it.
    Continue,
    /// A descriptor of ours, installed in the target as the call's result.
    NewFd {
        local: OwnedFd,
        cloexec: bool,
    },
}

/// The kind of each argument of a served call.
#[derive(Clone, Copy)]
enum Arg {
    /// A number, passed as it is.
    Val,
    /// A directory descriptor for the path at the given index (`AT_FDCWD` becomes
    /// the target's working directory when that path is relative or empty).
    Dirfd(usize),
    /// A descriptor of the target.
    Fd,
    /// A path (`/proc/self` is the target's).
    Path,
    /// A path that may be NULL.
    PathOrNull,
    /// A string that is no path of the call (a link's target, an attribute name).
    Str,
    /// Bytes the call reads (NULL passes as NULL).
    In(Len),
    /// Bytes the call writes (NULL passes as NULL), written back on success.
    Out(Len, Back),
    /// Bytes the call reads and writes (a `socklen_t *`), written back on success.
    InOut(Len),
    /// A pointer the supervisor already made its own (see `normalize`).
    Local,
}

#[derive(Clone, Copy)]
enum Len {
    Bytes(usize),
    /// The value of argument `i`.
    Of(usize),
    /// The value of argument `i`, times a size.
    ArgTimes(usize, usize),
    /// The `socklen_t` the target keeps at the address argument `i` holds.
    PointedBy(usize),
}

#[derive(Clone, Copy)]
enum Back {
    /// The whole buffer.
    Full,
    /// As many bytes as the call returned (times a size).
    Returned(usize),
}

/// What the call returns.
#[derive(Clone, Copy, PartialEq)]
enum Result_ {
    Plain,
    /// A new descriptor; `O_CLOEXEC` in the flags argument at this index.
    NewFd(usize),
    /// `openat2`: a new descriptor; the flags are the first field of `open_how`.
    NewFdHow(usize),
}

use Arg::*;
use Back::*;
use Len::*;

const STAT_SIZE: usize = std::mem::size_of::<libc::stat>();
const STATX_SIZE: usize = 256;
const UTSNAME_SIZE: usize = std::mem::size_of::<libc::utsname>();

/// The served calls in their `*at` form (see `normalize` for the others).
fn spec(nr: i64) -> Option<(&'static [Arg], Result_)> {
    use Result_::*;
    let s: (&'static [Arg], Result_) = match nr {
        libc::SYS_openat => (&[Dirfd(1), Path, Val, Val], NewFd(2)),
        libc::SYS_openat2 => (&[Dirfd(1), Path, In(Of(3)), Val], NewFdHow(2)),
        libc::SYS_newfstatat => (
            &[Dirfd(1), PathOrNull, Out(Bytes(STAT_SIZE), Full), Val],
            Plain,
        ),
        libc::SYS_statx => (
            &[Dirfd(1), PathOrNull, Val, Val, Out(Bytes(STATX_SIZE), Full)],
            Plain,
        ),
        libc::SYS_faccessat => (&[Dirfd(1), Path, Val], Plain),
        libc::SYS_faccessat2 => (&[Dirfd(1), Path, Val, Val], Plain),
        libc::SYS_readlinkat => (&[Dirfd(1), Path, Out(Of(3), Returned(1)), Val], Plain),
        libc::SYS_mkdirat => (&[Dirfd(1), Path, Val], Plain),
        libc::SYS_mknodat => (&[Dirfd(1), Path, Val, Val], Plain),
        libc::SYS_unlinkat => (&[Dirfd(1), Path, Val], Plain),
        libc::SYS_renameat => (&[Dirfd(1), Path, Dirfd(3), Path], Plain),
        libc::SYS_renameat2 => (&[Dirfd(1), Path, Dirfd(3), Path, Val], Plain),
        libc::SYS_symlinkat => (&[Str, Dirfd(2), Path], Plain),
        libc::SYS_linkat => (&[Dirfd(1), Path, Dirfd(3), Path, Val], Plain),
        libc::SYS_fchmodat => (&[Dirfd(1), Path, Val], Plain),
        FCHMODAT2 => (&[Dirfd(1), PathOrNull, Val, Val], Plain),
        libc::SYS_fchownat => (&[Dirfd(1), Path, Val, Val, Val], Plain),
        libc::SYS_utimensat => (&[Dirfd(1), PathOrNull, In(Bytes(32)), Val], Plain),
        UTIMENSAT_LOCAL => (&[Dirfd(1), PathOrNull, Local, Val], Plain),
        libc::SYS_truncate => (&[Path, Val], Plain),
        libc::SYS_setxattr | libc::SYS_lsetxattr => (&[Path, Str, In(Of(3)), Val, Val], Plain),
        libc::SYS_getxattr | libc::SYS_lgetxattr => {
            (&[Path, Str, Out(Of(3), Returned(1)), Val], Plain)
        }
        libc::SYS_removexattr | libc::SYS_lremovexattr => (&[Path, Str], Plain),
        libc::SYS_fsetxattr => (&[Fd, Str, In(Of(3)), Val, Val], Plain),
        libc::SYS_fremovexattr => (&[Fd, Str], Plain),
        libc::SYS_getdents64 => (&[Fd, Out(Of(2), Returned(1)), Val], Plain),
        libc::SYS_fstat => (&[Fd, Out(Bytes(STAT_SIZE), Full)], Plain),
        libc::SYS_fchmod => (&[Fd, Val], Plain),
        libc::SYS_fchown => (&[Fd, Val, Val], Plain),
        // ports and peers
        libc::SYS_bind | libc::SYS_connect => (&[Fd, In(Of(2)), Val], Plain),
        libc::SYS_getsockname | libc::SYS_getpeername => {
            (&[Fd, Out(PointedBy(2), Full), InOut(Bytes(4))], Plain)
        }
        // caught only with an address (filter.rs): a destination to resolve in the
        // capsule, a peer's or a source's address to show in capsule terms
        libc::SYS_accept4 => (
            &[Fd, Out(PointedBy(2), Full), InOut(Bytes(4)), Val],
            NewFd(3),
        ),
        libc::SYS_sendto => (&[Fd, In(Of(2)), Val, Val, In(Of(5)), Val], Plain),
        libc::SYS_recvfrom => (
            &[
                Fd,
                Out(Of(2), Returned(1)),
                Val,
                Val,
                Out(PointedBy(5), Full),
                InOut(Bytes(4)),
            ],
            Plain,
        ),
        // identity
        libc::SYS_getuid | libc::SYS_geteuid | libc::SYS_getgid | libc::SYS_getegid => (&[], Plain),
        libc::SYS_getresuid | libc::SYS_getresgid => (
            &[
                Out(Bytes(4), Full),
                Out(Bytes(4), Full),
                Out(Bytes(4), Full),
            ],
            Plain,
        ),
        libc::SYS_getgroups => (&[Val, Out(ArgTimes(0, 4), Returned(4))], Plain),
        libc::SYS_setuid | libc::SYS_setgid | libc::SYS_setfsuid | libc::SYS_setfsgid => {
            (&[Val], Plain)
        }
        libc::SYS_setreuid | libc::SYS_setregid => (&[Val, Val], Plain),
        libc::SYS_setresuid | libc::SYS_setresgid => (&[Val, Val, Val], Plain),
        libc::SYS_setgroups => (&[Val, In(ArgTimes(0, 4))], Plain),
        // uts
        libc::SYS_uname => (&[Out(Bytes(UTSNAME_SIZE), Full)], Plain),
        libc::SYS_sethostname | libc::SYS_setdomainname => (&[In(Of(1)), Val], Plain),
        // clock
        libc::SYS_clock_gettime => (&[Val, Out(Bytes(16), Full)], Plain),
        libc::SYS_gettimeofday => (&[Out(Bytes(16), Full), Out(Bytes(8), Full)], Plain),
        #[cfg(target_arch = "x86_64")]
        libc::SYS_time => (&[Out(Bytes(8), Full)], Plain),
        libc::SYS_clock_settime => (&[Val, In(Bytes(16))], Plain),
        libc::SYS_settimeofday => (&[In(Bytes(16)), In(Bytes(8))], Plain),
        _ => return None,
    };
    Some(s)
}

/// `utimensat` with times the supervisor converted itself (from `utime`,
/// `utimes`, `futimesat`): no system call has this number.
const UTIMENSAT_LOCAL: i64 = -1;

/// Whether the call names a path (nothing to translate when the capsule has no
/// file-system replica).
fn is_path_call(nr: i64) -> bool {
    spec(nr).is_some_and(|(kinds, _)| {
        kinds
            .iter()
            .any(|k| matches!(k, Dirfd(_) | Fd | Path | PathOrNull))
    })
}

fn is_identity_change(nr: i64) -> bool {
    matches!(
        nr,
        libc::SYS_setuid
            | libc::SYS_setgid
            | libc::SYS_setreuid
            | libc::SYS_setregid
            | libc::SYS_setresuid
            | libc::SYS_setresgid
            | libc::SYS_setfsuid
            | libc::SYS_setfsgid
            | libc::SYS_setgroups
    )
}

/// Numbers whose names the kernel would resolve on the host and that no replica
/// serves: refused while the file-system replica is on, as `syscall.rs` does.
fn is_unrouted(nr: i64) -> bool {
    #[cfg(target_arch = "x86_64")]
    if nr == libc::SYS_uselib {
        return true;
    }
    matches!(
        nr,
        libc::SYS_name_to_handle_at
            | libc::SYS_open_by_handle_at
            | libc::SYS_inotify_add_watch
            | libc::SYS_fanotify_mark
            | libc::SYS_chroot
    )
}

/// Old-style calls as their `*at` equivalent. `times` receives the converted
/// times of `utime`/`utimes`/`futimesat`, which the caller passes as `Local`.
#[cfg(target_arch = "x86_64")]
fn normalize(
    t: &Target,
    nr: i64,
    a: [c_long; 6],
    times: &mut [libc::timespec; 2],
) -> Result<(i64, [c_long; 6]), c_int> {
    let cwd = libc::AT_FDCWD as c_long;
    let nofollow = libc::AT_SYMLINK_NOFOLLOW as c_long;
    let creat = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as c_long;
    Ok(match nr {
        libc::SYS_open => (libc::SYS_openat, [cwd, a[0], a[1], a[2], 0, 0]),
        libc::SYS_creat => (libc::SYS_openat, [cwd, a[0], creat, a[1], 0, 0]),
        libc::SYS_stat => (libc::SYS_newfstatat, [cwd, a[0], a[1], 0, 0, 0]),
        libc::SYS_lstat => (libc::SYS_newfstatat, [cwd, a[0], a[1], nofollow, 0, 0]),
        libc::SYS_access => (libc::SYS_faccessat, [cwd, a[0], a[1], 0, 0, 0]),
        libc::SYS_readlink => (libc::SYS_readlinkat, [cwd, a[0], a[1], a[2], 0, 0]),
        libc::SYS_mkdir => (libc::SYS_mkdirat, [cwd, a[0], a[1], 0, 0, 0]),
        libc::SYS_mknod => (libc::SYS_mknodat, [cwd, a[0], a[1], a[2], 0, 0]),
        libc::SYS_rmdir => (
            libc::SYS_unlinkat,
            [cwd, a[0], libc::AT_REMOVEDIR as c_long, 0, 0, 0],
        ),
        libc::SYS_unlink => (libc::SYS_unlinkat, [cwd, a[0], 0, 0, 0, 0]),
        libc::SYS_accept => (libc::SYS_accept4, [a[0], a[1], a[2], 0, 0, 0]),
        libc::SYS_rename => (libc::SYS_renameat, [cwd, a[0], cwd, a[1], 0, 0]),
        libc::SYS_symlink => (libc::SYS_symlinkat, [a[0], cwd, a[1], 0, 0, 0]),
        libc::SYS_link => (libc::SYS_linkat, [cwd, a[0], cwd, a[1], 0, 0]),
        libc::SYS_chmod => (libc::SYS_fchmodat, [cwd, a[0], a[1], 0, 0, 0]),
        libc::SYS_chown => (libc::SYS_fchownat, [cwd, a[0], a[1], a[2], 0, 0]),
        libc::SYS_lchown => (libc::SYS_fchownat, [cwd, a[0], a[1], a[2], nofollow, 0]),
        libc::SYS_utime | libc::SYS_utimes | libc::SYS_futimesat => {
            let (dirfd, path, ptr) = match nr {
                libc::SYS_futimesat => (a[0], a[1], a[2]),
                _ => (cwd, a[0], a[1]),
            };
            let ptr = if ptr == 0 {
                0
            } else {
                if nr == libc::SYS_utime {
                    let mut raw = [0u8; 16];
                    t.read(ptr as u64, &mut raw)?;
                    for (i, ts) in times.iter_mut().enumerate() {
                        let secs = i64::from_ne_bytes(
                            raw[i * 8..i * 8 + 8].try_into().unwrap_or_default(),
                        );
                        *ts = libc::timespec {
                            tv_sec: secs,
                            tv_nsec: 0,
                        };
                    }
                } else {
                    let mut raw = [0u8; 32];
                    t.read(ptr as u64, &mut raw)?;
                    for (i, ts) in times.iter_mut().enumerate() {
                        let word = |j: usize| {
                            i64::from_ne_bytes(raw[j * 8..j * 8 + 8].try_into().unwrap_or_default())
                        };
                        let (secs, micros) = (word(i * 2), word(i * 2 + 1));
                        if !(0..1_000_000).contains(&micros) {
                            return Err(libc::EINVAL);
                        }
                        *ts = libc::timespec {
                            tv_sec: secs,
                            tv_nsec: micros * 1000,
                        };
                    }
                }
                times.as_ptr() as c_long
            };
            (UTIMENSAT_LOCAL, [dirfd, path, ptr, 0, 0, 0])
        }
        _ => (nr, a),
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn normalize(
    _t: &Target,
    nr: i64,
    a: [c_long; 6],
    _times: &mut [libc::timespec; 2],
) -> Result<(i64, [c_long; 6]), c_int> {
    Ok((nr, a))
}

/// The arguments of one call, made the supervisor's own.
#[derive(Default)]
struct Local {
    strings: Vec<CString>,
    buffers: Vec<Vec<u8>>,
    /// (target address, index into `buffers`, what to write back).
    outs: Vec<(u64, usize, Back)>,
    /// Descriptors we hold for the call, with the target's number (None: the
    /// working directory) and the file they named before it.
    fds: Vec<(OwnedFd, Option<c_int>, (u64, u64))>,
}

fn file_id(fd: RawFd) -> (u64, u64) {
    // SAFETY: fstat writes into the zeroed struct we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return (0, 0);
        }
        (st.st_dev, st.st_ino)
    }
}

/// The shim keeps a merged directory listing (`getdents64`, fs/syscalls.rs) per
/// descriptor number, with the descriptor's position as the index into it: each
/// directory stream of a target (thread, descriptor) gets a number of its own
/// here, where the description duplicated from the target is put for each call.
/// One listing call at a time.
static LISTING_SLOTS: Mutex<ListingSlots> = Mutex::new(ListingSlots {
    slots: Vec::new(),
    next: 0,
});

struct ListingSlots {
    /// (thread, target descriptor) of each number from `FIRST_LISTING_SLOT` on.
    slots: Vec<(u32, c_int)>,
    next: usize,
}

const FIRST_LISTING_SLOT: c_int = 600;
const LISTING_SLOT_COUNT: usize = 400;

impl ListingSlots {
    fn slot_for(&mut self, tid: u32, fd: c_int) -> c_int {
        let i = match self.slots.iter().position(|&k| k == (tid, fd)) {
            Some(i) => i,
            None if self.slots.len() < LISTING_SLOT_COUNT => {
                self.slots.push((tid, fd));
                self.slots.len() - 1
            }
            None => {
                // The oldest stream gives up its number.
                let i = self.next;
                self.next = (self.next + 1) % LISTING_SLOT_COUNT;
                self.slots[i] = (tid, fd);
                i
            }
        };
        FIRST_LISTING_SLOT + i as c_int
    }
}

/// The supervisor's state across calls.
pub struct Supervisor {
    listener: RawFd,
    /// The notification being served.
    current: u64,
    /// Which threads run the shim themselves (their calls pass as they are):
    /// shared by the workers, since a spare may see a shim's announcement.
    trust: Arc<Trust>,
    /// The host working directory of processes (by thread group) whose `chdir`
    /// could not be handed to the kernel, see `chdir`: shared by the workers.
    cwds: Arc<Mutex<HashMap<libc::pid_t, CString>>>,
    /// Thread groups of threads, kept while `cwds` is not empty.
    groups: HashMap<u32, libc::pid_t>,
}

/// One thread serves the listener (a second one waiting beside it would make
/// every wake-up land on a cold thread: 10 µs a call against 6 here). A call can
/// block, though (an `open` of a FIFO whose writer is another static process of
/// the capsule, a `connect`, an `accept` or `recvfrom` that asks for the peer's
/// address): spare threads look every `SPARE_TICK`, and while no thread is waiting
/// to receive, one of them serves too, so a blocked call holds one thread, not
/// every process of the capsule. A spare that starts serving while no other spare
/// is idle starts a new one first (up to `MAX_SPARES`): blocked servers never use
/// up the spares.
const SPARES: usize = 3;
const MAX_SPARES: usize = 64;
const SPARE_TICK: Duration = Duration::from_millis(5);

/// Threads waiting in `RECV` now.
static RECEIVING: AtomicUsize = AtomicUsize::new(0);
/// Calls answered so far: a spare joins when this did not move for a tick while
/// no thread was receiving (a call is blocked, not merely being served).
static ANSWERED: AtomicUsize = AtomicUsize::new(0);
/// Spare threads started, and those of them looking (not serving) now.
static SPARES_STARTED: AtomicUsize = AtomicUsize::new(0);
static SPARES_IDLE: AtomicUsize = AtomicUsize::new(0);

/// What every serving thread of the supervisor shares.
#[derive(Clone)]
struct Workers {
    listener: c_int,
    cwds: Arc<Mutex<HashMap<libc::pid_t, CString>>>,
    trust: Arc<Trust>,
}

impl Workers {
    fn supervisor(&self) -> Supervisor {
        Supervisor {
            listener: self.listener,
            current: 0,
            trust: Arc::clone(&self.trust),
            cwds: Arc::clone(&self.cwds),
            groups: HashMap::new(),
        }
    }
}

/// Starts one more spare thread, unless `MAX_SPARES` are running.
fn start_spare(shared: &Workers) {
    if SPARES_STARTED.fetch_add(1, Ordering::AcqRel) >= MAX_SPARES {
        SPARES_STARTED.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    SPARES_IDLE.fetch_add(1, Ordering::AcqRel);
    let shared_here = shared.clone();
    let started = std::thread::Builder::new()
        .name("capsule-backstop".into())
        .spawn(move || {
            // Each thread enters the shim once: its own calls here are the
            // real ones, the router's leave it (see `generic`).
            let _guard = hook::Guard::enter();
            let mut spare = shared_here.supervisor();
            let fd = shared_here.listener;
            let mut seen = ANSWERED.load(Ordering::Acquire);
            loop {
                std::thread::sleep(SPARE_TICK);
                let now = ANSWERED.load(Ordering::Acquire);
                let stuck = now == seen && RECEIVING.load(Ordering::Acquire) == 0;
                seen = now;
                if nobody_left(fd) {
                    // SAFETY: ending the supervisor: no process is left to serve.
                    unsafe { libc::_exit(0) }
                }
                if !stuck {
                    continue;
                }
                if SPARES_IDLE.fetch_sub(1, Ordering::AcqRel) == 1 {
                    // The last idle spare: the call it takes may block too.
                    start_spare(&shared_here);
                }
                let served = spare.serve_one();
                SPARES_IDLE.fetch_add(1, Ordering::AcqRel);
                if !served {
                    // SAFETY: as above.
                    unsafe { libc::_exit(0) }
                }
            }
        });
    if started.is_err() {
        SPARES_IDLE.fetch_sub(1, Ordering::AcqRel);
        SPARES_STARTED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves the listener until no process uses the filter any more, then exits.
pub fn serve(listener: OwnedFd) -> ! {
    let fd = listener.as_raw_fd();
    // SAFETY: the ioctl takes the flags as its argument (no pointer); a kernel
    // without it (before 6.6) says EINVAL, and then the wake-ups just cost more.
    unsafe { libc::ioctl(fd, IOCTL_NOTIF_SET_FLAGS, USER_NOTIF_FD_SYNC_WAKE_UP) };
    // Modes of new files come masked with each target's own umask (`generic`).
    // SAFETY: umask only sets the process's mask.
    unsafe { libc::umask(0) };
    let shared = Workers {
        listener: fd,
        cwds: Arc::new(Mutex::new(HashMap::new())),
        trust: Arc::new(Trust::default()),
    };
    for _ in 0..SPARES {
        start_spare(&shared);
    }
    // This thread is inside the shim already (the constructor's guard).
    let mut main = shared.supervisor();
    while main.serve_one() {}
    // SAFETY: ending the supervisor process, whose only job is done.
    unsafe { libc::_exit(0) }
}

/// The listener says POLLHUP, with nothing to read: every process is gone.
fn nobody_left(fd: c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own; no waiting.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc < 0 || (pfd.revents & libc::POLLHUP != 0 && pfd.revents & libc::POLLIN == 0)
}

impl Supervisor {
    /// Serves notifications until no process of the filter is left; then ends
    /// the whole supervisor.
    /// Receives and answers one notification; false when no process of the
    /// filter is left.
    fn serve_one(&mut self) -> bool {
        let fd = self.listener;
        let mut notif = Notif::default();
        RECEIVING.fetch_add(1, Ordering::AcqRel);
        // SAFETY: the kernel fills the zeroed struct it requires.
        let rc = unsafe { libc::ioctl(fd, IOCTL_NOTIF_RECV, &mut notif) };
        RECEIVING.fetch_sub(1, Ordering::AcqRel);
        if rc != 0 {
            return match hook::errno() {
                // A target died before we read it, or the last one did (RECV
                // then fails at once: are there processes left at all?).
                libc::ENOENT | libc::EINTR => !nobody_left(fd),
                _ => false,
            };
        }
        let outcome = self.handle(&notif);
        self.answer(&notif, outcome);
        ANSWERED.fetch_add(1, Ordering::Release);
        true
    }

    fn answer(&self, n: &Notif, outcome: Outcome) {
        let mut resp = Resp {
            id: n.id,
            val: 0,
            error: 0,
            flags: 0,
        };
        match outcome {
            Outcome::Value(v) => resp.val = v,
            Outcome::Errno(e) => resp.error = -e,
            Outcome::Continue => resp.flags = USER_NOTIF_FLAG_CONTINUE,
            Outcome::NewFd { local, cloexec } => {
                let add = AddFd {
                    id: n.id,
                    flags: ADDFD_FLAG_SEND,
                    srcfd: local.as_raw_fd() as u32,
                    newfd: 0,
                    newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
                };
                // SAFETY: the kernel reads the struct we own; with SEND it also
                // answers the call with the target's new descriptor number.
                if unsafe { libc::ioctl(self.listener, IOCTL_NOTIF_ADDFD, &add) } >= 0 {
                    return;
                }
                match hook::errno() {
                    libc::ENOENT => return, // the target is gone
                    e => resp.error = -e,
                }
            }
        }
        // SAFETY: the kernel reads the struct we own. ENOENT (the target was
        // killed meanwhile) needs nothing more.
        unsafe { libc::ioctl(self.listener, IOCTL_NOTIF_SEND, &resp) };
    }

    fn handle(&mut self, n: &Notif) -> Outcome {
        let nr = i64::from(n.data.nr);
        let args = n.data.args.map(|a| a as c_long);
        self.current = n.id;
        let ip = n.data.instruction_pointer;
        if nr == libc::SYS_getcwd {
            match n.data.args[1] {
                QUERY_CWD => return self.answer_cwd_query(n),
                QUERY_SHIM if self.trust.announce_shim(n.pid, ip) => {
                    return Outcome::Value(QUERY_ANSWER as i64)
                }
                QUERY_SHIM => {
                    log::warn!("backstop: process {} poses as the shim's", n.pid);
                    return Outcome::Errno(libc::EPERM);
                }
                _ => {}
            }
        }
        if nr == libc::SYS_arch_prctl && n.data.args[0] == ARCH_SET_FS {
            self.trust.image_started(n.pid);
        }
        let passes = self.trust.passes(n.pid, ip);
        if nr == libc::SYS_arch_prctl
            && n.data.args[0] == ARCH_SET_FS
            && !self.trust.runs_shim(n.pid)
        {
            // A new program, whose loader did not map the shim (a dynamic one's
            // loader makes this call, and passes). Its own clock then needs the
            // vDSO patch; the shim's reads the time through its hooks.
            if !super::trust::maps_the_shim(n.pid) {
                clock_of_static_program(n.pid as libc::pid_t);
            }
            return Outcome::Continue;
        }
        if nr == libc::SYS_getcwd && n.data.args[1] == QUERY_IDENTITY {
            let t = Target::new(n.pid, self.listener, n.id);
            if passes && self.trust.executed_by_served(n.pid) {
                let bytes = super::inherit::identity_bytes();
                if t.write(n.data.args[2], &bytes).is_ok() {
                    return Outcome::Value((QUERY_ANSWER + bytes.len() as u64) as i64);
                }
            }
            return Outcome::Value(QUERY_ANSWER as i64);
        }
        if nr == libc::SYS_getcwd && n.data.args[1] == QUERY_LOADER {
            let t = Target::new(n.pid, self.listener, n.id);
            if let (true, Ok(path)) = (passes, t.read_cstr(n.data.args[2])) {
                self.trust.announce_loader(n.pid, &path);
            }
            return Outcome::Value(QUERY_ANSWER as i64);
        }
        if nr == libc::SYS_execve || nr == libc::SYS_execveat {
            // After the exec the process may run another program.
            self.trust.exec_called(n.pid, passes);
        }
        if passes {
            return Outcome::Continue;
        }
        let mut t = Target::new(n.pid, self.listener, n.id);
        let layers = crate::fs::layers();
        let outcome = match nr {
            libc::SYS_arch_prctl => Outcome::Continue,
            libc::SYS_io_uring_setup | libc::SYS_io_uring_enter | libc::SYS_io_uring_register => {
                Outcome::Errno(libc::ENOSYS)
            }
            _ if is_unrouted(nr) => match layers {
                Some(_) => Outcome::Errno(libc::ENOSYS),
                None => Outcome::Continue,
            },
            libc::SYS_execve | libc::SYS_execveat => match layers {
                Some(layers) => self.exec(&mut t, layers, nr, args),
                None => Outcome::Continue,
            },
            libc::SYS_chdir => match layers {
                Some(layers) => self.chdir(&mut t, layers, args[0] as u64),
                None => Outcome::Continue,
            },
            libc::SYS_getcwd => match layers {
                Some(layers) => self.getcwd(&mut t, layers, args[0] as u64, args[1] as usize),
                None => Outcome::Continue,
            },
            libc::SYS_sendmsg => self.sendmsg(&mut t, args),
            libc::SYS_sendmmsg => self.sendmmsg(&mut t, args),
            _ if is_identity_change(nr) && !crate::identity::state::CREDS.enabled() => {
                Outcome::Continue
            }
            _ => {
                let mut times = [libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                }; 2];
                match normalize(&t, nr, args, &mut times) {
                    Err(e) => Outcome::Errno(e),
                    Ok((nr, _)) if layers.is_none() && is_path_call(nr) => Outcome::Continue,
                    Ok((nr, a)) => self.generic(&mut t, nr, a),
                }
            }
        };
        // A descriptor goes into the target only while its call is pending (the
        // kernel checks that for ADDFD itself); memory writes check in Target.
        outcome
    }

    /// The target's working directory as a descriptor of ours: the one this
    /// supervisor keeps for it, or the kernel's.
    fn cwd_fd(&mut self, t: &Target) -> Result<OwnedFd, c_int> {
        if let Some(host) = self.kept_cwd(t) {
            // SAFETY: a NUL-terminated path; no file content is asked for.
            let fd = unsafe {
                libc::open(
                    host.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: we just opened it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        t.cwd()
    }

    /// The working directory this supervisor keeps for `t`'s process (or its
    /// parent's, which a new process inherits), if any.
    fn kept_cwd(&mut self, t: &Target) -> Option<CString> {
        let mut cwds = self.cwds.lock().unwrap_or_else(|e| e.into_inner());
        if cwds.is_empty() {
            return None;
        }
        let tid = t.tid as u32;
        let group = match self.groups.get(&tid) {
            Some(&g) => g,
            None => {
                let g = t.tgid()?;
                self.groups.insert(tid, g);
                if !cwds.contains_key(&g) {
                    // A new process starts where its parent was.
                    let parent = t.status_field("PPid").and_then(|p| p.parse().ok());
                    if let Some(cwd) = parent.and_then(|p| cwds.get(&p)).cloned() {
                        cwds.insert(g, cwd);
                    }
                }
                g
            }
        };
        cwds.get(&group).cloned()
    }

    /// Makes the arguments ours, runs the call through the router, hands back
    /// what it wrote.
    fn generic(&mut self, t: &mut Target, nr: i64, mut a: [c_long; 6]) -> Outcome {
        let Some((kinds, result)) = spec(nr) else {
            return Outcome::Errno(libc::ENOSYS);
        };
        let target_fd = a[0] as c_int;
        let mut local = Local::default();
        if let Err(e) = self.localize(t, kinds, &mut a, &mut local) {
            return Outcome::Errno(e);
        }
        if nr == libc::SYS_openat && opens_the_shim(&local, a[2] as c_int) {
            // The preloaded shim (a host file outside any capsule's view), opened
            // by a program's own code rather than its loader's: read-only, as
            // the loader would.
            return Outcome::Continue;
        }
        let _listing = (nr == libc::SYS_getdents64).then(|| {
            let mut slots = LISTING_SLOTS.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.slot_for(t.tid as u32, target_fd);
            // SAFETY: dup3 of our own descriptor onto a number of ours (the raw
            // call: the shim's dup3 would drop the listing kept at that number).
            unsafe { libc::syscall(libc::SYS_dup3, a[0], slot, libc::O_CLOEXEC) };
            a[0] = slot as c_long;
            slots
        });
        // The mode of a new file is the target's, less the target's umask (the
        // supervisor's own is 0, see `serve`): the umask is a process's, and
        // holding a lock across a call that may block (a FIFO's open) would let one
        // target stop the others.
        let mode_at = match nr {
            libc::SYS_openat if a[2] as c_int & (libc::O_CREAT | libc::O_TMPFILE) != 0 => Some(3),
            libc::SYS_mkdirat | libc::SYS_mknodat => Some(2),
            _ => None,
        };
        if let Some(i) = mode_at {
            a[i] &= !(t.umask().unwrap_or(0o022) as c_long);
        }
        if nr == libc::SYS_openat2 {
            // open_how: flags, then mode (u64 each).
            if let Some(how) = local
                .buffers
                .iter_mut()
                .find(|b| b.as_ptr() as c_long == a[2])
            {
                if let Some(mode) = how.get_mut(8..16) {
                    let m = u64::from_ne_bytes(mode.try_into().unwrap_or_default());
                    let masked = m & !u64::from(t.umask().unwrap_or(0o022));
                    mode.copy_from_slice(&masked.to_ne_bytes());
                }
            }
        }
        let nr = if nr == UTIMENSAT_LOCAL {
            libc::SYS_utimensat
        } else {
            nr
        };
        if let Err(outcome) = wait_until_ready(t, nr, &a) {
            return outcome;
        }
        let (rc, err) = hook::outside(|| {
            // SAFETY: every pointer argument now points into `local`, sized as the
            // call needs; every descriptor is one of ours.
            let rc = unsafe { crate::syscall::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
            (rc, hook::errno())
        });
        if rc < 0 {
            return Outcome::Errno(err);
        }
        for &(addr, i, back) in &local.outs {
            let buf = &local.buffers[i];
            let n = match back {
                Full => buf.len(),
                Returned(size) => (rc as usize).saturating_mul(size).min(buf.len()),
            };
            if let Err(e) = t.write(addr, &buf[..n]) {
                return Outcome::Errno(e);
            }
        }
        self.follow_copy_ups(t, &local);
        match result {
            Result_::Plain => Outcome::Value(rc),
            Result_::NewFd(flags) => Outcome::NewFd {
                // SAFETY: the router returned a new descriptor of ours.
                local: unsafe { OwnedFd::from_raw_fd(rc as c_int) },
                cloexec: a[flags] as c_int & libc::O_CLOEXEC != 0,
            },
            Result_::NewFdHow(how) => {
                let flags = local
                    .buffers
                    .iter()
                    .find(|b| b.as_ptr() as c_long == a[how])
                    .and_then(|b| b.get(..8))
                    .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or_default()));
                Outcome::NewFd {
                    // SAFETY: as above.
                    local: unsafe { OwnedFd::from_raw_fd(rc as c_int) },
                    cloexec: flags & libc::O_CLOEXEC as u64 != 0,
                }
            }
        }
    }

    fn localize(
        &mut self,
        t: &mut Target,
        kinds: &[Arg],
        a: &mut [c_long; 6],
        local: &mut Local,
    ) -> Result<(), c_int> {
        // Strings and buffers first: a directory descriptor depends on its path.
        for (i, kind) in kinds.iter().enumerate() {
            let addr = a[i] as u64;
            match *kind {
                Path | PathOrNull | Str => {
                    if addr == 0 {
                        if matches!(kind, PathOrNull) {
                            continue;
                        }
                        return Err(libc::EFAULT);
                    }
                    let mut s = t.read_cstr(addr)?;
                    if matches!(kind, Path | PathOrNull) {
                        s = self_to_pid(t, s);
                    }
                    a[i] = s.as_ptr() as c_long;
                    local.strings.push(s);
                }
                In(len) | Out(len, _) | InOut(len) => {
                    if addr == 0 {
                        continue;
                    }
                    let n = match len {
                        Bytes(n) => n,
                        Of(j) => a[j] as usize,
                        ArgTimes(j, size) => (a[j] as usize).saturating_mul(size),
                        PointedBy(j) => {
                            // Argument j comes later, so it is still the target's.
                            debug_assert!(j > i);
                            let mut word = [0u8; 4];
                            t.read(a[j] as u64, &mut word)?;
                            u32::from_ne_bytes(word) as usize
                        }
                    };
                    if n > MAX_BUFFER {
                        return Err(libc::EINVAL);
                    }
                    let mut buf = vec![0u8; n];
                    match *kind {
                        In(_) => t.read(addr, &mut buf)?,
                        Out(_, back) => local.outs.push((addr, local.buffers.len(), back)),
                        _ => {
                            t.read(addr, &mut buf)?;
                            local.outs.push((addr, local.buffers.len(), Full));
                        }
                    }
                    a[i] = buf.as_ptr() as c_long;
                    local.buffers.push(buf);
                }
                Val | Dirfd(_) | Fd | Local => {}
            }
        }
        for (i, kind) in kinds.iter().enumerate() {
            let fd = match *kind {
                Dirfd(path) if a[i] as c_int == libc::AT_FDCWD => {
                    // SAFETY: a[path] is null or points at one of our CStrings.
                    let absolute = a[path] != 0 && unsafe { *(a[path] as *const u8) } == b'/';
                    if absolute {
                        continue;
                    }
                    (self.cwd_fd(t)?, None)
                }
                Dirfd(_) | Fd => {
                    let number = a[i] as c_int;
                    (t.fd(number)?, Some(number))
                }
                _ => continue,
            };
            let id = file_id(fd.0.as_raw_fd());
            a[i] = fd.0.as_raw_fd() as c_long;
            local.fds.push((fd.0, fd.1, id));
        }
        Ok(())
    }

    /// A descriptor the shim replaced by the file it copied up (same number, other
    /// file) is replaced in the target too, so that later changes through it reach
    /// the copy, never the lower layer.
    fn follow_copy_ups(&self, t: &Target, local: &Local) {
        for (fd, number, before) in &local.fds {
            let Some(number) = *number else { continue };
            if file_id(fd.as_raw_fd()) == *before {
                continue;
            }
            let cloexec = std::fs::read_to_string(t.proc_file(&format!("fdinfo/{number}")))
                .ok()
                .and_then(|info| {
                    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
                    u32::from_str_radix(flags.trim(), 8).ok()
                })
                .is_some_and(|flags| flags & libc::O_CLOEXEC as u32 != 0);
            let add = AddFd {
                id: self.current,
                flags: ADDFD_FLAG_SETFD,
                srcfd: fd.as_raw_fd() as u32,
                newfd: number as u32,
                newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
            };
            // SAFETY: the kernel reads the struct we own and puts our descriptor at
            // the target's number, closing the lower file it held there.
            if unsafe { libc::ioctl(self.listener, IOCTL_NOTIF_ADDFD, &add) } < 0 {
                log::warn!(
                    "backstop: cannot hand a copied-up file back: errno {}",
                    hook::errno()
                );
            }
        }
    }
}

pub use super::trust::QUERY_ANSWER;

/// The most iovecs a sendmsg takes (the kernel's UIO_MAXIOV).
const UIO_MAXIOV: usize = 1024;
/// The most control bytes a sendmsg carries here (the kernel's default
/// `optmem_max` is 20480).
const MAX_CONTROL: usize = 1 << 16;

/// A target's message, copied into the supervisor: name, data and control (the
/// target's descriptors of `SCM_RIGHTS` as the supervisor's own, kept open while
/// it lives). `msg` points into the copies.
struct OwnMessage {
    msg: libc::msghdr,
    _name: Vec<u8>,
    _data: Vec<Vec<u8>>,
    _iov: Vec<libc::iovec>,
    _control: Vec<u8>,
    _passed: Vec<OwnedFd>,
}

/// A `msghdr` of the target's at `addr`, with its control bytes.
fn read_header(t: &Target, addr: u64) -> Result<(libc::msghdr, Vec<u8>), c_int> {
    const HDR: usize = std::mem::size_of::<libc::msghdr>();
    let mut raw = [0u8; HDR];
    t.read(addr, &mut raw)?;
    // SAFETY: msghdr is plain data; `raw` holds its bytes as the target has them.
    let hdr: libc::msghdr = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
    // (usize with glibc, socklen_t and int with musl.)
    #[allow(clippy::unnecessary_cast)]
    let controllen = hdr.msg_controllen as usize;
    if controllen > MAX_CONTROL {
        return Err(libc::ENOBUFS);
    }
    let mut control = vec![0u8; controllen];
    if !control.is_empty() {
        t.read(hdr.msg_control as u64, &mut control)?;
    }
    Ok((hdr, control))
}

/// Whether a header names no destination.
fn without_name(hdr: &libc::msghdr) -> bool {
    hdr.msg_name.is_null() || hdr.msg_namelen == 0
}

/// The rest of the message `hdr` (whose control bytes are `control`) copied out
/// of the target.
fn own_message(
    t: &mut Target,
    hdr: &libc::msghdr,
    mut control: Vec<u8>,
) -> Result<OwnMessage, c_int> {
    let mut name = vec![
        0u8;
        if without_name(hdr) {
            0
        } else {
            hdr.msg_namelen as usize
        }
    ];
    if name.len() > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(libc::EINVAL);
    }
    if !name.is_empty() {
        t.read(hdr.msg_name as u64, &mut name)?;
    }
    // (usize with glibc, int with musl.)
    #[allow(clippy::unnecessary_cast)]
    let iovlen = hdr.msg_iovlen as usize;
    if iovlen > UIO_MAXIOV {
        return Err(libc::EMSGSIZE);
    }
    let mut iov_raw = vec![0u8; iovlen * std::mem::size_of::<libc::iovec>()];
    if !iov_raw.is_empty() {
        t.read(hdr.msg_iov as u64, &mut iov_raw)?;
    }
    let mut data = Vec::with_capacity(iovlen);
    let mut total = 0usize;
    for chunk in iov_raw.chunks_exact(std::mem::size_of::<libc::iovec>()) {
        // SAFETY: iovec is plain data; `chunk` holds its bytes.
        let v: libc::iovec = unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
        total = total.saturating_add(v.iov_len);
        if total > MAX_BUFFER {
            return Err(libc::EMSGSIZE);
        }
        let mut buf = vec![0u8; v.iov_len];
        if !buf.is_empty() {
            t.read(v.iov_base as u64, &mut buf)?;
        }
        data.push(buf);
    }
    let mut iov: Vec<libc::iovec> = data
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // The target's descriptors in SCM_RIGHTS become ours (kept open until sent).
    let mut passed = Vec::new();
    own_rights(t, &mut control, &mut passed)?;
    // SAFETY: msghdr is plain data, for which all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if !name.is_empty() {
        msg.msg_name = name.as_mut_ptr().cast();
        msg.msg_namelen = name.len() as libc::socklen_t;
    }
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    if !control.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
    }
    // Moving the vectors into the struct keeps their heap buffers where `msg`
    // points.
    Ok(OwnMessage {
        msg,
        _name: name,
        _data: data,
        _iov: iov,
        _control: control,
        _passed: passed,
    })
}

/// Sends one copied message on our copy `fd` of the target's socket through the
/// router, which resolves the destination in the capsule.
fn send_own(fd: c_int, message: &OwnMessage, flags: c_long) -> Result<c_long, c_int> {
    let (rc, err) = hook::outside(|| {
        // SAFETY: `message.msg` points at our copies, sized as the header says;
        // the descriptor is ours.
        let rc = unsafe {
            crate::syscall::syscall(
                libc::SYS_sendmsg,
                fd as c_long,
                (&message.msg as *const libc::msghdr) as c_long,
                flags,
                0,
                0,
                0,
            )
        };
        (rc, hook::errno())
    });
    if rc < 0 {
        Err(err)
    } else {
        Ok(rc)
    }
}

impl Supervisor {
    /// sendmsg: its destination is resolved in the capsule, so the supervisor sends
    /// from its own copy of the whole message (`OwnMessage`). Without a destination
    /// (a connected socket) the kernel runs the call as it is where no other thread
    /// could change the header meanwhile, or where `SCM_CREDENTIALS` must be the
    /// target's own.
    fn sendmsg(&mut self, t: &mut Target, a: [c_long; 6]) -> Outcome {
        let (hdr, control) = match read_header(t, a[1] as u64) {
            Ok(read) => read,
            Err(e) => return Outcome::Errno(e),
        };
        if without_name(&hdr) && (has_credentials(&control) || self.alone_in_its_memory(t)) {
            return Outcome::Continue;
        }
        let message = match own_message(t, &hdr, control) {
            Ok(message) => message,
            Err(e) => return Outcome::Errno(e),
        };
        let fd = match t.fd(a[0] as c_int) {
            Ok(fd) => fd,
            Err(e) => return Outcome::Errno(e),
        };
        let mut local = a;
        local[0] = fd.as_raw_fd() as c_long;
        if let Err(outcome) = wait_until_ready(t, libc::SYS_sendmsg, &local) {
            return outcome;
        }
        match send_own(fd.as_raw_fd(), &message, a[2]) {
            Ok(n) => Outcome::Value(n),
            Err(e) => Outcome::Errno(e),
        }
    }

    /// sendmmsg: each message as sendmsg's, one after the other; each one's
    /// `msg_len` written back, and the count sent is the kernel's (a failure after
    /// some were sent ends the call with that count). Messages with
    /// `SCM_CREDENTIALS` and no destination must be the target's own: a call with
    /// one and no destination anywhere runs as it is.
    fn sendmmsg(&mut self, t: &mut Target, a: [c_long; 6]) -> Outcome {
        const ENTRY: usize = std::mem::size_of::<libc::mmsghdr>();
        let (array, count) = (a[1] as u64, (a[2] as usize).min(UIO_MAXIOV));
        let mut headers = Vec::with_capacity(count);
        for i in 0..count {
            match read_header(t, array + (i * ENTRY) as u64) {
                Ok(read) => headers.push(read),
                Err(e) if i == 0 => return Outcome::Errno(e),
                // The kernel sends those before an unreadable entry.
                Err(_) => break,
            }
        }
        let credentials = headers.iter().any(|(_, c)| has_credentials(c));
        if credentials && headers.iter().all(|(h, _)| without_name(h)) {
            return Outcome::Continue;
        }
        let fd = match t.fd(a[0] as c_int) {
            Ok(fd) => fd,
            Err(e) => return Outcome::Errno(e),
        };
        let mut local = a;
        local[0] = fd.as_raw_fd() as c_long;
        // MSG_WAITFORONE is a receiver's flag; the rest are sendmsg's.
        if let Err(outcome) = wait_until_ready(t, libc::SYS_sendmsg, &[local[0], 0, a[3], 0, 0, 0])
        {
            return outcome;
        }
        let mut sent = 0usize;
        let mut first_error = None;
        for (i, (hdr, control)) in headers.into_iter().enumerate() {
            let result = own_message(t, &hdr, control)
                .and_then(|message| send_own(fd.as_raw_fd(), &message, a[3]));
            match result {
                Ok(n) => {
                    let len_at =
                        array + (i * ENTRY + std::mem::offset_of!(libc::mmsghdr, msg_len)) as u64;
                    if t.write(len_at, &(n as u32).to_ne_bytes()).is_err() {
                        first_error = Some(libc::EFAULT);
                        break;
                    }
                    sent += 1;
                }
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        match (sent, first_error) {
            (0, Some(e)) => Outcome::Errno(e),
            (n, _) => Outcome::Value(n as i64),
        }
    }
}

/// The control messages in `control`, as (level, type, data range).
fn control_messages(control: &[u8]) -> Vec<(c_int, c_int, std::ops::Range<usize>)> {
    const HDR: usize = std::mem::size_of::<libc::cmsghdr>();
    let align = |n: usize| n.div_ceil(std::mem::size_of::<usize>()) * std::mem::size_of::<usize>();
    let mut out = Vec::new();
    let mut at = 0;
    while at + HDR <= control.len() {
        // SAFETY: cmsghdr is plain data; HDR bytes at `at` are within `control`.
        let c: libc::cmsghdr = unsafe { std::ptr::read_unaligned(control[at..].as_ptr().cast()) };
        #[allow(clippy::unnecessary_cast)]
        let len = c.cmsg_len as usize;
        if len < HDR || at + len > control.len() {
            break;
        }
        out.push((c.cmsg_level, c.cmsg_type, at + align(HDR)..at + len));
        at += align(len);
    }
    out
}

fn has_credentials(control: &[u8]) -> bool {
    control_messages(control)
        .iter()
        .any(|&(level, kind, _)| level == libc::SOL_SOCKET && kind == libc::SCM_CREDENTIALS)
}

/// Replaces the target's descriptor numbers in `control`'s `SCM_RIGHTS` by copies
/// of ours, kept in `passed`.
fn own_rights(t: &mut Target, control: &mut [u8], passed: &mut Vec<OwnedFd>) -> Result<(), c_int> {
    for (level, kind, range) in control_messages(control) {
        if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS {
            continue;
        }
        for slot in control[range].chunks_exact_mut(4) {
            let number = c_int::from_ne_bytes(slot.try_into().unwrap_or_default());
            let fd = t.fd(number)?;
            slot.copy_from_slice(&fd.as_raw_fd().to_ne_bytes());
            passed.push(fd);
        }
    }
    Ok(())
}

/// How long the supervisor waits on a target's socket between checks that the
/// target still waits for the call.
const SOCKET_POLL_MS: c_int = 100;

/// A blocking `accept4`, `recvfrom`, `sendto` or `sendmsg` on a target's socket waits here
/// until the socket is ready, while the target is still in the call: one that a
/// signal interrupted meanwhile gets nothing, so no connection or datagram is
/// taken from the socket for a target that no longer waits for it. A
/// non-blocking call goes straight on.
fn wait_until_ready(t: &Target, nr: i64, a: &[c_long; 6]) -> Result<(), Outcome> {
    let (fd, events, flags) = match nr {
        libc::SYS_accept4 => (a[0] as c_int, libc::POLLIN, 0),
        libc::SYS_recvfrom => (a[0] as c_int, libc::POLLIN, a[3] as c_int),
        libc::SYS_sendto => (a[0] as c_int, libc::POLLOUT, a[3] as c_int),
        libc::SYS_sendmsg => (a[0] as c_int, libc::POLLOUT, a[2] as c_int),
        _ => return Ok(()),
    };
    // SAFETY: F_GETFL of our copy of the target's descriptor (the same open file).
    let status = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if status < 0 || status & libc::O_NONBLOCK != 0 || flags & libc::MSG_DONTWAIT != 0 {
        return Ok(());
    }
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one pollfd we own.
        let rc = unsafe { libc::poll(&mut pfd, 1, SOCKET_POLL_MS) };
        if rc > 0 {
            return Ok(());
        }
        if !t.pending_now() {
            return Err(Outcome::Errno(libc::EINTR));
        }
    }
}

/// `/proc/self` and `/proc/thread-self` in a target's path are the target's, not
/// the supervisor's.
fn self_to_pid(t: &Target, path: CString) -> CString {
    let bytes = path.as_bytes();
    let rest_of = |prefix: &[u8]| -> Option<Vec<u8>> {
        let rest = bytes.strip_prefix(prefix)?;
        (rest.is_empty() || rest[0] == b'/').then(|| rest.to_vec())
    };
    let (base, rest) = if let Some(rest) = rest_of(b"/proc/self") {
        let Some(tgid) = t.tgid() else { return path };
        (format!("/proc/{tgid}"), rest)
    } else if let Some(rest) = rest_of(b"/proc/thread-self") {
        let Some(tgid) = t.tgid() else { return path };
        (format!("/proc/{tgid}/task/{}", t.tid), rest)
    } else {
        return path;
    };
    let mut out = base.into_bytes();
    out.extend_from_slice(&rest);
    CString::new(out).unwrap_or(path)
}

fn same_file(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

impl Supervisor {
    /// Resolves the path argument at `addr` of a call that must take effect in the
    /// target itself (`execve`, `chdir`) to the capsule's host file.
    fn resolve_in_target(
        &mut self,
        t: &mut Target,
        layers: &crate::fs::Layers,
        dirfd: c_int,
        addr: u64,
        follow: bool,
    ) -> Result<Resolved, Outcome> {
        let given = t.read_cstr(addr).map_err(Outcome::Errno)?;
        if given.as_bytes().is_empty() {
            return Err(Outcome::Errno(libc::ENOENT));
        }
        let path = self_to_pid(t, given.clone());
        let base = if path.as_bytes()[0] == b'/' {
            None
        } else if dirfd == libc::AT_FDCWD {
            Some(self.cwd_fd(t).map_err(Outcome::Errno)?)
        } else {
            Some(t.fd(dirfd).map_err(Outcome::Errno)?)
        };
        let base_fd = base.as_ref().map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
        let mut node = crate::fs::layers::Node::empty();
        match ops::resolve(
            layers,
            base_fd,
            &path,
            ops::Intent::Read { follow },
            &mut node,
        ) {
            Ok(()) => {}
            Err(Skip::Errno(e)) => return Err(Outcome::Errno(e)),
            // Not the capsule's to translate (`/proc`…): the kernel's answer is right.
            Err(Skip::Pass) => return Err(Outcome::Continue),
        }
        // What the kernel would find for the target's own string, from the
        // target's real working directory.
        let kernel_base = match (&base, dirfd) {
            (Some(_), libc::AT_FDCWD) => t.cwd().ok(),
            _ => None,
        };
        let theirs_fd = kernel_base.as_ref().map_or(base_fd, |fd| fd.as_raw_fd());
        // SAFETY: fstatat and stat write into zeroed structs we own; both paths
        // are NUL-terminated.
        let kernel_same = unsafe {
            let mut theirs: libc::stat = std::mem::zeroed();
            let mut ours: libc::stat = std::mem::zeroed();
            let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
            libc::fstatat(theirs_fd, path.as_ptr(), &mut theirs, flags) == 0
                && libc::stat(node.host.as_ptr(), &mut ours) == 0
                && same_file(&theirs, &ours)
        };
        // A last component that is a link to a name in its own directory
        // (`/bin/cat -> busybox`): the kernel, given the link's host path, finds
        // the same file, and the program keeps the name it was run by.
        let mut link = crate::fs::layers::Node::empty();
        let by_link = (follow
            && ops::resolve(
                layers,
                base_fd,
                &path,
                ops::Intent::Read { follow: false },
                &mut link,
            )
            .is_ok()
            && link.stat.st_mode & libc::S_IFMT == libc::S_IFLNK)
            .then(|| std::fs::read_link(std::ffi::OsStr::from_bytes(link.host.as_bytes())).ok())
            .flatten()
            .filter(|target| {
                let t = target.as_os_str().as_bytes();
                !t.is_empty() && !t.contains(&b'/')
            })
            .and_then(|_| CString::new(link.host.as_bytes()).ok());
        Ok(Resolved {
            given_len: given.as_bytes().len(),
            host: CString::new(node.host.as_bytes()).unwrap_or_default(),
            by_link,
            is_dir: node.is_dir(),
            kernel_same,
        })
    }

    /// The kernel will resolve the string at `addr` itself: writes `host` over it
    /// when it fits (the string is the target's own, read once, and the call will
    /// consume it).
    fn rewrite(&self, t: &Target, addr: u64, r: &Resolved) -> bool {
        if r.host.as_bytes().len() > r.given_len {
            return false;
        }
        t.write(addr, r.host.as_bytes_with_nul()).is_ok()
    }

    fn exec(
        &mut self,
        t: &mut Target,
        layers: &crate::fs::Layers,
        nr: i64,
        a: [c_long; 6],
    ) -> Outcome {
        let (dirfd, addr, flags) = if nr == libc::SYS_execve {
            (libc::AT_FDCWD, a[0] as u64, 0)
        } else {
            (a[0] as c_int, a[1] as u64, a[4] as c_int)
        };
        if nr == libc::SYS_execveat && flags & libc::AT_EMPTY_PATH != 0 {
            // SAFETY-free check: an empty string runs the descriptor's own file.
            if matches!(t.read_cstr(addr), Ok(s) if s.as_bytes().is_empty()) {
                return Outcome::Continue;
            }
        }
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        let r = match self.resolve_in_target(t, layers, dirfd, addr, follow) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        if r.kernel_same {
            return Outcome::Continue;
        }
        let vectors = if nr == libc::SYS_execve {
            [a[1] as u64, a[2] as u64]
        } else {
            [a[2] as u64, a[3] as u64]
        };
        // Every way below writes over the name. argv[0], when it is that very
        // string (a shell's words), keeps its text: a copy below the target's
        // stack pointer (free stack, in a vfork child too, whose parent waits
        // above it), where argv[0] then points.
        let kept = keep_argv0(t, addr, vectors[0]);
        if self.rewrite(t, addr, &r) {
            return Outcome::Continue;
        }
        // The host path relative to the target's own working directory, when it
        // lies beneath it and that fits (`bin/cat` for `/bin/cat` from the
        // capsule's `/`).
        // A link's own host path first: the program keeps the name it was run by.
        for host in r.by_link.iter().chain([&r.host]) {
            let Some(relative) = relative_to_cwd(t, host) else {
                continue;
            };
            if relative.len() <= r.given_len {
                let mut bytes = relative;
                bytes.push(0);
                if t.write(addr, &bytes).is_ok() {
                    return Outcome::Continue;
                }
            }
        }
        // Longer than the target's string. In a target that nothing else can
        // observe until the exec replaces its memory (one thread, its memory its
        // own: no vfork child), once the exec is sure to find a program there, the
        // host path is written over the name and the bytes after it. Argument and
        // environment strings in those bytes (argv[0] is often the very string; a
        // shell keeps the words of a command one after another) are copied after
        // the host path first, and their pointers moved to the copies, so that
        // the program gets its arguments as given (busybox picks its applet by
        // argv[0]).
        if self.alone_in_its_memory(t) && is_executable_program(&r.host) {
            if let Some((image, moved)) = relocated(t, addr, &r.host, vectors) {
                let done = t.write(addr, &image).is_ok()
                    && moved
                        .iter()
                        .all(|(slot, to)| t.write(*slot, &to.to_ne_bytes()).is_ok());
                if done {
                    return Outcome::Continue;
                }
            }
        }
        // Else name it through a descriptor of the target's, `/dev/fd/N` (closed
        // by the exec itself), when that name fits.
        if let Some(alias) = self.fd_alias(t, &r) {
            if t.write(addr, alias.as_bytes_with_nul()).is_ok() {
                return Outcome::Continue;
            }
        }
        if kept {
            // The name is as it was: so is argv[0].
            let _ = t.write(vectors[0], &addr.to_ne_bytes());
        }
        log::warn!(
            "backstop: cannot run {:?} for a static program: its host path is longer than the name it used",
            r.host
        );
        Outcome::Errno(libc::ENAMETOOLONG)
    }

    /// `/dev/fd/N` naming `r.host` through a new descriptor of the target's, if
    /// that fits in the target's string: a single-digit number where one is free
    /// (`/dev/fd/7` is as long as `/bin/bash`).
    fn fd_alias(&self, t: &Target, r: &Resolved) -> Option<CString> {
        if r.given_len < "/dev/fd/N".len() {
            return None;
        }
        let free =
            (3..10).find(|n| !std::path::Path::new(&t.proc_file(&format!("fd/{n}"))).exists());
        let alias_len = |n: u32| format!("/dev/fd/{n}").len();
        if free.is_none() && r.given_len < "/dev/fd/NN".len() {
            return None;
        }
        // A script's interpreter opens the script by that name after the exec:
        // its descriptor stays open across it; a program's closes.
        let script = std::fs::File::open(std::ffi::OsStr::from_bytes(r.host.as_bytes()))
            .and_then(|mut f| {
                let mut magic = [0u8; 2];
                std::io::Read::read_exact(&mut f, &mut magic).map(|()| magic == *b"#!")
            })
            .unwrap_or(false);
        let flags = if script { 0 } else { libc::O_CLOEXEC };
        // Readable, not O_PATH: ADDFD takes no O_PATH descriptor.
        // SAFETY: a NUL-terminated host path.
        let fd = unsafe { libc::open(r.host.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: we just opened it.
        let local = unsafe { OwnedFd::from_raw_fd(fd) };
        let add = AddFd {
            id: self.current,
            flags: if free.is_some() { ADDFD_FLAG_SETFD } else { 0 },
            srcfd: local.as_raw_fd() as u32,
            newfd: free.unwrap_or(0) as u32,
            newfd_flags: flags as u32,
        };
        // SAFETY: the kernel reads the struct we own and returns the target's
        // descriptor number.
        let number = unsafe { libc::ioctl(self.listener, IOCTL_NOTIF_ADDFD, &add) };
        if number < 0 || alias_len(number as u32) > r.given_len {
            return None;
        }
        CString::new(format!("/dev/fd/{number}")).ok()
    }

    /// One thread, and a memory of its own (not a vfork child sharing its
    /// parent's): nothing reads the target's memory until its exec returns.
    fn alone_in_its_memory(&self, t: &Target) -> bool {
        const KCMP_VM: c_int = 1;
        let threads = t
            .status_field("Threads")
            .and_then(|n| n.parse::<u32>().ok());
        let parent = t
            .status_field("PPid")
            .and_then(|n| n.parse::<libc::pid_t>().ok());
        let (Some(1), Some(parent)) = (threads, parent) else {
            return false;
        };
        // SAFETY: kcmp compares two processes' memory; integers only.
        let order = unsafe { libc::syscall(libc::SYS_kcmp, t.tid, parent, KCMP_VM, 0, 0) };
        // 0: the same memory (a vfork child). EPERM: the parent is outside the
        // capsule's Landlock domain, which a vfork parent of a capsule process
        // cannot be (the loader forks, and the child restricts itself).
        order > 0 || (order < 0 && hook::errno() == libc::EPERM)
    }

    /// `chdir` must change the target's own directory. When the capsule's
    /// directory cannot be named in the target's string, the supervisor keeps it
    /// as the process's working directory for every relative path it serves, and
    /// hands it to a shim of a program the process later runs.
    fn chdir(&mut self, t: &mut Target, layers: &crate::fs::Layers, addr: u64) -> Outcome {
        let r = match self.resolve_in_target(t, layers, libc::AT_FDCWD, addr, true) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        if !r.is_dir {
            return Outcome::Errno(libc::ENOTDIR);
        }
        // SAFETY: access(2) on a NUL-terminated path: the search permission chdir needs.
        if unsafe { libc::access(r.host.as_ptr(), libc::X_OK) } != 0 {
            return Outcome::Errno(hook::errno());
        }
        let group = t.tgid();
        if r.kernel_same || self.rewrite(t, addr, &r) {
            if let Some(g) = group {
                self.cwds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&g);
            }
            return Outcome::Continue;
        }
        let Some(g) = group else {
            return Outcome::Errno(libc::ESRCH);
        };
        self.groups.insert(t.tid as u32, g);
        self.cwds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(g, r.host);
        Outcome::Value(0)
    }

    fn capsule_cwd(&mut self, t: &Target, layers: &crate::fs::Layers) -> Vec<u8> {
        let host = match self.kept_cwd(t) {
            Some(h) => h.as_bytes().to_vec(),
            None => std::fs::read_link(t.proc_file("cwd"))
                .map(|p| std::os::unix::ffi::OsStringExt::into_vec(p.into_os_string()))
                .unwrap_or_default(),
        };
        match layers.reverse(&host) {
            Some(p) => p.as_bytes().to_vec(),
            None => b"/".to_vec(),
        }
    }

    fn getcwd(
        &mut self,
        t: &mut Target,
        layers: &crate::fs::Layers,
        addr: u64,
        size: usize,
    ) -> Outcome {
        let mut cwd = self.capsule_cwd(t, layers);
        cwd.push(0);
        if size < cwd.len() {
            return Outcome::Errno(libc::ERANGE);
        }
        match t.write(addr, &cwd) {
            Ok(()) => Outcome::Value(cwd.len() as i64),
            Err(e) => Outcome::Errno(e),
        }
    }

    fn answer_cwd_query(&mut self, n: &Notif) -> Outcome {
        let t = Target::new(n.pid, self.listener, n.id);
        let Some(host) = self.kept_cwd(&t) else {
            // The backstop is here; the kernel's working directory is right.
            return Outcome::Value(QUERY_ANSWER as i64);
        };
        let bytes = host.as_bytes_with_nul();
        match t.write(n.data.args[0], bytes) {
            Ok(()) => Outcome::Value((QUERY_ANSWER + bytes.len() as u64) as i64),
            Err(e) => Outcome::Errno(e),
        }
    }
}

/// The call opens libcapsule.so (either C library's) for reading: a dynamic
/// loader loading the preloaded shim.
fn opens_the_shim(local: &Local, flags: c_int) -> bool {
    let rt = crate::runtime::get();
    flags & libc::O_ACCMODE == libc::O_RDONLY
        && flags & (libc::O_CREAT | libc::O_TRUNC) == 0
        && local.strings.first().is_some_and(|path| {
            [&rt.shim_path, &rt.other_shim]
                .iter()
                .any(|shim| !shim.is_empty() && path.as_bytes() == shim.as_bytes())
        })
}

/// When argv[0] (at `argv`) is the string at `name`, points it at a copy of that
/// string below the target's stack pointer, so that writing over the name
/// leaves argv[0] as it was.
/// Returns whether it did (the caller puts argv[0] back if the exec is refused).
fn keep_argv0(t: &Target, name: u64, argv: u64) -> bool {
    let mut word = [0u8; 8];
    if argv == 0 || t.read(argv, &mut word).is_err() || u64::from_ne_bytes(word) != name {
        return false;
    }
    let Ok(text) = t.read_cstr(name) else {
        return false;
    };
    let bytes = text.as_bytes_with_nul();
    t.below_stack(bytes.len())
        .is_some_and(|at| t.write(at, bytes).is_ok() && t.write(argv, &at.to_ne_bytes()).is_ok())
}

/// `host` relative to the target's working directory (the kernel's), when it
/// lies beneath it.
fn relative_to_cwd(t: &Target, host: &CString) -> Option<Vec<u8>> {
    let cwd = std::fs::read_link(t.proc_file("cwd")).ok()?;
    let cwd = cwd.as_os_str().as_bytes();
    let rest = host.as_bytes().strip_prefix(cwd)?;
    let rest = if cwd == b"/" {
        rest
    } else {
        rest.strip_prefix(b"/")?
    };
    (!rest.is_empty()).then(|| rest.to_vec())
}

/// A vector slot of the target's and the address it is to hold.
type Slot = (u64, u64);

/// The bytes to write at `addr` for an exec of `host` there: the host path, then
/// copies of the argument and environment strings that start in the bytes it
/// takes (and in those the copies take), with the vector slots to point at the
/// copies. `None` when a vector cannot be read or the strings are too many.
fn relocated(
    t: &Target,
    addr: u64,
    host: &CString,
    vectors: [u64; 2],
) -> Option<(Vec<u8>, Vec<Slot>)> {
    const MOST: usize = 1 << 20;
    // Every (slot, string address) of argv and envp.
    let mut entries = Vec::new();
    for vector in vectors.into_iter().filter(|&v| v != 0) {
        let mut at = vector;
        loop {
            let mut word = [0u8; 8];
            t.read(at, &mut word).ok()?;
            let p = u64::from_ne_bytes(word);
            if p == 0 {
                break;
            }
            entries.push((at, p));
            at += 8;
            if entries.len() > 65536 {
                return None;
            }
        }
    }
    let mut image = host.as_bytes_with_nul().to_vec();
    let mut moved: Vec<(u64, u64)> = Vec::new();
    let mut copied: Vec<(u64, u64)> = Vec::new(); // original address -> copy
    loop {
        let end = addr + image.len() as u64;
        let next = entries
            .iter()
            .find(|&&(slot, p)| (addr..end).contains(&p) && !moved.iter().any(|&(s, _)| s == slot));
        let Some(&(slot, p)) = next else { break };
        let copy = match copied.iter().find(|&&(orig, _)| orig == p) {
            Some(&(_, c)) => c,
            None => {
                let text = t.read_cstr(p).ok()?;
                let c = addr + image.len() as u64;
                image.extend_from_slice(text.as_bytes_with_nul());
                copied.push((p, c));
                c
            }
        };
        moved.push((slot, copy));
        if image.len() > MOST {
            return None;
        }
    }
    // The vectors themselves (their slots, up to the terminating NULL) must lie
    // outside the bytes written: their addresses are the call's own arguments.
    let end = addr + image.len() as u64;
    let slots_inside = entries
        .iter()
        .any(|&(slot, _)| slot + 8 > addr && slot < end)
        || vectors.iter().any(|&v| v != 0 && (addr..end).contains(&v));
    if slots_inside {
        return None;
    }
    Some((image, moved))
}

/// A regular file we may execute that starts as an ELF program or a `#!` script:
/// the kernel's exec of it will not fail for what it is.
fn is_executable_program(host: &CString) -> bool {
    use std::io::Read;
    // SAFETY: access(2) on a NUL-terminated path.
    if unsafe { libc::access(host.as_ptr(), libc::X_OK) } != 0 {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(std::ffi::OsStr::from_bytes(host.as_bytes()))
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && (magic == *b"\x7fELF" || magic[..2] == *b"#!")
}

struct Resolved {
    /// The length of the target's own string.
    given_len: usize,
    /// The host path of a last-component link to a name beside it, which the
    /// kernel follows to `host` itself.
    by_link: Option<CString>,
    host: CString,
    is_dir: bool,
    /// The kernel, given the target's own string, finds this same file.
    kernel_same: bool,
}

/// The clock of a static program that just started: its vDSO makes real system
/// calls from now on, which the filter sends here.
fn clock_of_static_program(tid: libc::pid_t) {
    if let Err(e) = super::vdso::patch(tid) {
        log::warn!("backstop: the clock of process {tid} stays the host's: {e}");
    }
}
