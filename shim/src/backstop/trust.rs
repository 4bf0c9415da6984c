//! Which calls of a process under the filter run as the process made them.
//!
//! A process that loads the shim (a dynamic program exec'd by a static one, or
//! every program with `--backstop all`) has its calls translated by its shim
//! already: the supervisor lets those through. Nothing a program can forge
//! cheaply may earn that: a static program that maps a file named like the shim,
//! maps the shim itself, or is named like the dynamic loader stays served. What
//! counts (all checked against the target's `/proc` entries, which the kernel
//! writes):
//!
//! - **the shim's announcement**: the shim's first act in a process (before its
//!   own first call, see `runtime.rs`) and in each fork child is a query
//!   (`announce_shim`) whose instruction pointer the supervisor finds inside an
//!   executable mapping of the real shim file (its path and inode). A program
//!   that maps the shim and jumps into its code is running the shim.
//! - **a child sharing its parent's shim**: a `vfork`/`clone` child (no fork
//!   handler runs there) that runs its parent's (or an ancestor's) program file,
//!   with the shim mapped where that one announced it.
//! - **the dynamic loader's own calls, before the program runs**: calls whose
//!   instruction pointer lies in the executable mapping of the interpreter the
//!   kernel mapped (`AT_BASE`), or of the root's loader run as the program
//!   (`ld.so PROGRAM`), which the shim announces before it executes it
//!   (`announce_loader`). The loader's calls name host files (the libraries of
//!   the root, the shim). This ends at the first call from other code: from then
//!   on the process is served until its shim announces itself.
//!
//! A verdict is cached per thread; one that lets calls through is checked against
//! the thread's pidfd first, so that a reused thread number starts over. An
//! `exec` drops the verdicts of the caller's thread group.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, OnceLock};

/// Added to the length `getcwd` returns for a query (`QUERY_CWD` and those
/// here): no kernel answer is that large.
pub const QUERY_ANSWER: u64 = 1 << 32;

/// `getcwd(NULL, QUERY_SHIM)` from the shim's own code: "this process runs the
/// shim". The supervisor answers `QUERY_ANSWER`; without a backstop the kernel
/// fails it with `EFAULT` (a null buffer) and nothing happens.
pub const QUERY_SHIM: u64 = 0x6361_7073_7368_696d;
/// `getcwd(NULL, QUERY_LOADER, PATH)`: "this process executes the dynamic loader
/// PATH (a host path) next, as the program".
pub const QUERY_LOADER: u64 = 0x6361_7073_6c64_736f;

/// Thread verdicts kept at most (each trusting one holds a pidfd).
const MAX_THREADS: usize = 512;
/// Ancestors looked at for a shim mapping shared with a child.
const MAX_ANCESTORS: usize = 4;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Verdict {
    /// The thread's process runs the shim: every call passes.
    Shim,
    /// The loader phase: calls from `[start, end)` (the loader's code) pass.
    Loader { start: u64, end: u64 },
    /// Every call is served.
    Served,
}

struct Thread {
    tgid: u32,
    verdict: Verdict,
    /// Readable once the thread has exited (trusting verdicts only).
    pidfd: Option<OwnedFd>,
}

#[derive(Default)]
struct Process {
    /// Start of the executable mapping of the shim that announced itself.
    shim_at: Option<u64>,
    /// The program file of the process then: (device, inode).
    exe: Option<(u64, u64)>,
    /// The loader the shim said it executes next: (device, inode).
    announced_loader: Option<(u64, u64)>,
    /// The loader phase of the current image is over.
    loader_over: bool,
    /// The current program was executed by a served process (see inherit.rs).
    executed_by_served: bool,
}

#[derive(Default)]
struct State {
    threads: HashMap<u32, Thread>,
    processes: HashMap<u32, Process>,
}

/// The supervisor's record of who runs the shim, shared by its workers.
#[derive(Default)]
pub struct Trust {
    state: Mutex<State>,
}

/// One line of `/proc/TID/maps`.
struct Mapping<'a> {
    start: u64,
    end: u64,
    exec: bool,
    inode: u64,
    path: &'a [u8],
}

fn mappings(maps: &[u8]) -> impl Iterator<Item = Mapping<'_>> {
    maps.split(|&b| b == b'\n').filter_map(|line| {
        let mut fields = line.splitn(6, |&b| b == b' ');
        let range = fields.next()?;
        let perms = fields.next()?;
        let _offset = fields.next()?;
        let _dev = fields.next()?;
        let inode = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        let path = fields.next().unwrap_or_default().trim_ascii_start();
        let dash = range.iter().position(|&b| b == b'-')?;
        let hex = |b: &[u8]| u64::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok();
        Some(Mapping {
            start: hex(&range[..dash])?,
            end: hex(&range[dash + 1..])?,
            exec: perms.get(2) == Some(&b'x'),
            inode,
            path,
        })
    })
}

/// The real shim files (either C library's): canonical path and inode.
fn shim_files() -> &'static [(Vec<u8>, u64)] {
    static FILES: OnceLock<Vec<(Vec<u8>, u64)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let rt = crate::runtime::get();
        [&rt.shim_path, &rt.other_shim]
            .iter()
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let path = std::fs::canonicalize(std::ffi::OsStr::from_bytes(p.to_bytes())).ok()?;
                let inode = std::fs::metadata(&path).ok()?.ino();
                Some((path.as_os_str().as_bytes().to_vec(), inode))
            })
            .collect()
    })
}

fn is_shim(m: &Mapping) -> bool {
    m.exec
        && shim_files()
            .iter()
            .any(|(path, inode)| m.inode == *inode && m.path == path.as_slice())
}

/// Whether thread `tid` has the real shim mapped (its clock is the shim's: a
/// program that only pretends keeps the host's, and nothing else).
pub fn maps_the_shim(tid: u32) -> bool {
    std::fs::read(format!("/proc/{tid}/maps"))
        .is_ok_and(|maps| mappings(&maps).any(|m| is_shim(&m)))
}

/// `Tgid` and `PPid` of a thread.
fn ids(tid: u32) -> Option<(u32, u32)> {
    let status = std::fs::read(format!("/proc/{tid}/status")).ok()?;
    let field = |name: &[u8]| -> Option<u32> {
        let line = status
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(name))?;
        std::str::from_utf8(&line[name.len()..])
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((field(b"Tgid:")?, field(b"PPid:")?))
}

/// The (device, inode) of a thread's program file.
fn program_file(tid: u32) -> Option<(u64, u64)> {
    let file = std::fs::metadata(format!("/proc/{tid}/exe")).ok()?;
    Some((file.dev(), file.ino()))
}

/// `AT_BASE` of a thread's program: where the kernel mapped its interpreter.
fn interpreter_base(tid: u32) -> u64 {
    let Ok(auxv) = std::fs::read(format!("/proc/{tid}/auxv")) else {
        return 0;
    };
    auxv.chunks_exact(16)
        .map(|pair| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
            (word(&pair[..8]), word(&pair[8..]))
        })
        .find(|&(key, _)| key == libc::AT_BASE)
        .map_or(0, |(_, value)| value)
}

/// A pidfd of `tid` that says when that very thread has exited: the thread's
/// own where the kernel has them (6.9), else its process's.
fn pidfd(tid: u32, tgid: u32) -> Option<OwnedFd> {
    const PIDFD_THREAD: libc::c_int = libc::O_EXCL;
    for (pid, flags) in [(tid, PIDFD_THREAD), (tgid, 0)] {
        // SAFETY: pidfd_open takes a number and flags; a descriptor it returns is ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
        if fd >= 0 {
            // SAFETY: we just opened it and own it alone.
            return Some(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
        }
    }
    None
}

fn exited(pidfd: &Option<OwnedFd>) -> bool {
    let Some(fd) = pidfd else {
        return true;
    };
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own; no waiting.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc != 0
}

impl Trust {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the call of thread `tid` made at `ip` runs as it was made.
    pub fn passes(&self, tid: u32, ip: u64) -> bool {
        {
            let mut state = self.state();
            if let Some(thread) = state.threads.get(&tid) {
                let stale = thread.verdict != Verdict::Served && exited(&thread.pidfd);
                if !stale {
                    return state.judge(tid, ip);
                }
                state.threads.remove(&tid);
            }
        }
        let Some((tgid, verdict)) = self.verdict(tid) else {
            return false;
        };
        let pidfd = (verdict != Verdict::Served)
            .then(|| pidfd(tid, tgid))
            .flatten();
        let mut state = self.state();
        if state.threads.len() >= MAX_THREADS {
            state.threads.clear();
        }
        let verdict = if pidfd.is_none() {
            Verdict::Served
        } else {
            verdict
        };
        state.threads.insert(
            tid,
            Thread {
                tgid,
                verdict,
                pidfd,
            },
        );
        state.judge(tid, ip)
    }

    /// The verdict for a thread not seen since its process's last exec.
    fn verdict(&self, tid: u32) -> Option<(u32, Verdict)> {
        let (tgid, parent) = ids(tid)?;
        let maps = std::fs::read(format!("/proc/{tid}/maps")).ok()?;
        let shim_mapping = |at: u64| mappings(&maps).any(|m| m.start == at && is_shim(&m));
        let exe = program_file(tid);
        let (shim_at, announced_loader, loader_over) = {
            let state = self.state();
            let p = state.processes.get(&tgid);
            (
                p.and_then(|p| p.shim_at),
                p.and_then(|p| p.announced_loader),
                p.is_some_and(|p| p.loader_over),
            )
        };
        if shim_at.is_some_and(shim_mapping) {
            return Some((tgid, Verdict::Shim));
        }
        // A vfork or clone child, which shares its parent's mapping of the shim.
        let mut ancestor = parent;
        for _ in 0..MAX_ANCESTORS {
            if ancestor <= 1 {
                break;
            }
            let (at, its_exe) = match self.state().processes.get(&ancestor) {
                Some(p) => (p.shim_at, p.exe),
                None => (None, None),
            };
            if let Some(at) = at.filter(|&at| exe.is_some() && its_exe == exe && shim_mapping(at)) {
                let mut state = self.state();
                let process = state.processes.entry(tgid).or_default();
                process.shim_at = Some(at);
                process.exe = exe;
                return Some((tgid, Verdict::Shim));
            }
            ancestor = match ids(ancestor) {
                Some((_, grandparent)) => grandparent,
                None => break,
            };
        }
        if loader_over {
            return Some((tgid, Verdict::Served));
        }
        let base = interpreter_base(tid);
        let loader_inode = if base != 0 {
            mappings(&maps)
                .find(|m| m.start <= base && base < m.end)
                .map(|m| m.inode)
        } else {
            // The root's loader run as the program, as the shim announced.
            exe.filter(|&e| announced_loader == Some(e))
                .map(|(_, ino)| ino)
        };
        let code = loader_inode.and_then(|inode| {
            mappings(&maps)
                .find(|m| m.exec && m.inode == inode && inode != 0)
                .map(|m| (m.start, m.end))
        });
        Some(match code {
            Some((start, end)) => (tgid, Verdict::Loader { start, end }),
            None => (tgid, Verdict::Served),
        })
    }

    /// `QUERY_SHIM` from thread `tid` at `ip`: true when `ip` is the shim's code.
    pub fn announce_shim(&self, tid: u32, ip: u64) -> bool {
        let Some((tgid, _)) = ids(tid) else {
            return false;
        };
        let Ok(maps) = std::fs::read(format!("/proc/{tid}/maps")) else {
            return false;
        };
        let Some(at) = mappings(&maps)
            .find(|m| m.start <= ip && ip < m.end && is_shim(m))
            .map(|m| m.start)
        else {
            return false;
        };
        let pidfd = pidfd(tid, tgid);
        let exe = program_file(tid);
        let mut state = self.state();
        let process = state.processes.entry(tgid).or_default();
        process.shim_at = Some(at);
        process.exe = exe;
        process.announced_loader = None;
        process.loader_over = true;
        // Its other threads look again (they were served or in the loader phase).
        state.threads.retain(|_, t| t.tgid != tgid);
        if pidfd.is_some() {
            state.threads.insert(
                tid,
                Thread {
                    tgid,
                    verdict: Verdict::Shim,
                    pidfd,
                },
            );
        }
        true
    }

    /// `QUERY_LOADER` naming `path`, from a thread whose calls pass.
    pub fn announce_loader(&self, tid: u32, path: &CStr) {
        let Some((tgid, _)) = ids(tid) else {
            return;
        };
        let Ok(file) = std::fs::metadata(std::ffi::OsStr::from_bytes(path.to_bytes())) else {
            return;
        };
        self.state()
            .processes
            .entry(tgid)
            .or_default()
            .announced_loader = Some((file.dev(), file.ino()));
    }

    /// Thread `tid`, whose calls pass or not, calls `execve`: its process may run
    /// another program next, which earns its own verdict (a failed exec finds its
    /// shim where it was).
    pub fn exec_called(&self, tid: u32, passes: bool) {
        let Some((tgid, parent)) = ids(tid) else {
            return;
        };
        let mut state = self.state();
        state.threads.retain(|_, t| t.tgid != tgid);
        // A posix_spawn child executes the loader its parent announced.
        let inherited = match state.processes.get_mut(&parent) {
            Some(p) if passes => p.announced_loader.take(),
            _ => None,
        };
        let process = state.processes.entry(tgid).or_default();
        process.loader_over = false;
        process.executed_by_served = !passes;
        if process.announced_loader.is_none() {
            process.announced_loader = inherited;
        }
    }

    /// Whether thread `tid`'s program was executed by a served process; asked
    /// once per program.
    pub fn executed_by_served(&self, tid: u32) -> bool {
        let Some((tgid, _)) = ids(tid) else {
            return false;
        };
        self.state()
            .processes
            .get_mut(&tgid)
            .is_some_and(|p| std::mem::take(&mut p.executed_by_served))
    }

    /// Whether thread `tid`'s process runs the shim (as last judged).
    pub fn runs_shim(&self, tid: u32) -> bool {
        self.state()
            .threads
            .get(&tid)
            .is_some_and(|t| t.verdict == Verdict::Shim)
    }

    /// A new program starts in thread `tid` (its first `arch_prctl(ARCH_SET_FS)`):
    /// whatever was decided for the thread before does not hold.
    pub fn image_started(&self, tid: u32) {
        self.state().threads.remove(&tid);
    }
}

impl State {
    fn judge(&mut self, tid: u32, ip: u64) -> bool {
        let Some(thread) = self.threads.get_mut(&tid) else {
            return false;
        };
        match thread.verdict {
            Verdict::Shim => true,
            Verdict::Served => false,
            Verdict::Loader { start, end } if (start..end).contains(&ip) => true,
            Verdict::Loader { .. } => {
                // Other code runs: the program has started, and is served.
                let tgid = thread.tgid;
                thread.verdict = Verdict::Served;
                thread.pidfd = None;
                if let Some(p) = self.processes.get_mut(&tgid) {
                    p.loader_over = true;
                    p.announced_loader = None;
                } else {
                    self.processes.insert(
                        tgid,
                        Process {
                            loader_over: true,
                            ..Process::default()
                        },
                    );
                }
                false
            }
        }
    }
}

/// Tells a supervisor above this process that it runs the shim (see the module
/// comment); from the shim's own code, which is what the supervisor checks.
pub fn announce_shim() {
    // SAFETY: getcwd with a null buffer writes nothing (the kernel says EFAULT
    // when no supervisor answers).
    unsafe { own_syscall(libc::SYS_getcwd, 0, QUERY_SHIM, 0) };
}

/// Tells a supervisor above this process that it executes the dynamic loader
/// `path` (a host path) as the program next.
pub fn announce_loader(path: *const std::ffi::c_char) {
    // SAFETY: as in `announce_shim`; the kernel ignores the third argument (the
    // supervisor reads the string there).
    unsafe { own_syscall(libc::SYS_getcwd, 0, QUERY_LOADER, path as u64) };
}

/// After a fork, the child announces itself too (fork handlers run in the child
/// before `fork` returns there).
pub extern "C" fn announce_in_child() {
    announce_shim();
}

/// A system call made by an instruction in this library.
///
/// # Safety
/// As for the system call `nr` with these arguments.
#[inline(never)]
pub(super) unsafe fn own_syscall(nr: libc::c_long, a: u64, b: u64, c: u64) -> i64 {
    #[cfg(target_arch = "x86_64")]
    {
        let ret: i64;
        // SAFETY: the caller's contract; `syscall` clobbers rcx and r11 only.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") nr => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // No backstop here (see filter.rs): nothing to announce.
        let _ = (nr, a, b, c);
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_maps_lines() {
        let maps = b"7f0000000000-7f0000001000 r-xp 00001000 fd:01 1234 /usr/lib/libcapsule.so\n\
                     7f0000002000-7f0000003000 rw-p 00000000 00:00 0 \n\
                     7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n";
        let all: Vec<Mapping> = mappings(maps).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].start, 0x7f00_0000_0000);
        assert_eq!(all[0].end, 0x7f00_0000_1000);
        assert!(all[0].exec);
        assert_eq!(all[0].inode, 1234);
        assert_eq!(all[0].path, b"/usr/lib/libcapsule.so");
        assert!(!all[1].exec);
        assert_eq!(all[1].path, b"");
        assert_eq!(all[2].path, b"[stack]");
    }

    #[test]
    fn the_loader_phase_ends_at_the_first_call_from_elsewhere() {
        let trust = Trust::default();
        let mut state = trust.state();
        state.threads.insert(
            7,
            Thread {
                tgid: 7,
                verdict: Verdict::Loader {
                    start: 0x1000,
                    end: 0x2000,
                },
                pidfd: None,
            },
        );
        assert!(state.judge(7, 0x1800));
        assert!(!state.judge(7, 0x3000));
        assert!(!state.judge(7, 0x1800), "over for good");
        assert!(state.processes[&7].loader_over);
    }
}
