//! The supervisor's access to a target process: its memory (`process_vm_readv` /
//! `process_vm_writev`), its descriptors (`pidfd_getfd`), and the facts `/proc`
//! keeps of it (working directory, umask, thread group).
//!
//! The supervisor runs inside the shim guard, so the libc calls here are the real
//! ones: they act on the supervisor's own view of the host, never the capsule's.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_int, CString};
use std::os::fd::{FromRawFd, OwnedFd};

/// Longest path the kernel takes, with its NUL.
const PATH_MAX: usize = 4096;
/// `pidfd_open`'s flag for a thread rather than a thread group (Linux 6.9).
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// One thread of a capsule process that is stopped in a system call.
pub struct Target {
    pub tid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    /// The listener and the notification: before the first write into the
    /// target, the supervisor makes sure the call is still pending, so that a
    /// process that died meanwhile, its number reused, is never written to.
    notification: (c_int, u64),
    checked: std::cell::Cell<bool>,
}

/// `SECCOMP_IOCTL_NOTIF_ID_VALID`.
const IOCTL_NOTIF_ID_VALID: libc::Ioctl = 0x4008_2102_u32 as libc::Ioctl;

impl Target {
    pub fn new(tid: u32, listener: c_int, id: u64) -> Target {
        Target {
            tid: tid as libc::pid_t,
            pidfd: None,
            notification: (listener, id),
            checked: std::cell::Cell::new(false),
        }
    }

    /// Whether the notification is still pending (the target alive, in the call).
    pub fn still_waiting(&self) -> bool {
        if self.checked.get() {
            return true;
        }
        let (listener, id) = self.notification;
        // SAFETY: the ioctl reads the u64 id we pass.
        let valid = unsafe { libc::ioctl(listener, IOCTL_NOTIF_ID_VALID, &id) } == 0;
        self.checked.set(valid);
        valid
    }

    /// Whether the notification is pending now (asked each time: a call the
    /// supervisor waits on can be interrupted by a signal meanwhile).
    pub fn pending_now(&self) -> bool {
        let (listener, id) = self.notification;
        // SAFETY: the ioctl reads the u64 id we pass.
        unsafe { libc::ioctl(listener, IOCTL_NOTIF_ID_VALID, &id) == 0 }
    }

    /// Reads exactly `buf.len()` bytes at `addr`; EFAULT where the target has none.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), c_int> {
        if buf.is_empty() {
            return Ok(());
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: one local iovec over `buf`, writable for its length; the remote
        // one is only an address in the target, which the kernel checks.
        let n = unsafe { libc::process_vm_readv(self.tid, &local, 1, &remote, 1, 0) };
        match n {
            n if n == buf.len() as isize => Ok(()),
            n if n >= 0 => Err(libc::EFAULT),
            _ => Err(access_error(errno())),
        }
    }

    /// Writes `data` at `addr` in the target.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), c_int> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.still_waiting() {
            return Err(libc::ESRCH);
        }
        let local = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: the local iovec covers `data` (only read by the kernel); the
        // remote one is an address in the target, which the kernel checks.
        let n = unsafe { libc::process_vm_writev(self.tid, &local, 1, &remote, 1, 0) };
        match n {
            n if n == data.len() as isize => Ok(()),
            n if n >= 0 => Err(libc::EFAULT),
            _ => Err(access_error(errno())),
        }
    }

    /// The NUL-terminated string at `addr` (a path: at most `PATH_MAX` bytes with
    /// its NUL, else ENAMETOOLONG), read a page at a time so that a string ending
    /// just before an unmapped page is still read.
    pub fn read_cstr(&self, addr: u64) -> Result<CString, c_int> {
        if addr == 0 {
            return Err(libc::EFAULT);
        }
        let mut out = Vec::with_capacity(256);
        let mut at = addr;
        while out.len() < PATH_MAX {
            let to_page_end = 4096 - (at as usize % 4096);
            let want = to_page_end.min(PATH_MAX - out.len());
            let mut chunk = [0u8; 4096];
            self.read(at, &mut chunk[..want])?;
            if let Some(end) = chunk[..want].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..end]);
                // No interior NUL: we stopped at the first.
                return Ok(CString::new(out).unwrap_or_default());
            }
            out.extend_from_slice(&chunk[..want]);
            at += want as u64;
        }
        Err(libc::ENAMETOOLONG)
    }

    fn pidfd(&mut self) -> Result<c_int, c_int> {
        if let Some(fd) = &self.pidfd {
            return Ok(std::os::fd::AsRawFd::as_raw_fd(fd));
        }
        // SAFETY: plain system calls with integer arguments.
        let mut fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.tid, PIDFD_THREAD) };
        if fd < 0 {
            // SAFETY: as above; a kernel before 6.9 takes only thread-group leaders.
            fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.tid, 0) };
        }
        if fd < 0 {
            return Err(access_error(errno()));
        }
        // SAFETY: a descriptor we just opened and own alone.
        self.pidfd = Some(unsafe { OwnedFd::from_raw_fd(fd as c_int) });
        Ok(fd as c_int)
    }

    /// A copy of the target's descriptor `fd` (the same open file description:
    /// the same position, flags and file), or EBADF.
    pub fn fd(&mut self, fd: c_int) -> Result<OwnedFd, c_int> {
        if fd < 0 {
            return Err(libc::EBADF);
        }
        let pidfd = self.pidfd()?;
        // SAFETY: plain system call with integer arguments.
        let local = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) };
        if local < 0 {
            return Err(match errno() {
                libc::EBADF => libc::EBADF,
                e => access_error(e),
            });
        }
        // SAFETY: pidfd_getfd gave us a new descriptor, ours alone.
        Ok(unsafe { OwnedFd::from_raw_fd(local as c_int) })
    }

    /// The target's working directory, as an `O_PATH` descriptor.
    pub fn cwd(&self) -> Result<OwnedFd, c_int> {
        let path = self.proc_path("cwd");
        // SAFETY: a NUL-terminated path; the flags ask for no file content.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(access_error(errno()));
        }
        // SAFETY: we just opened it and own it alone.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `/proc/TID/task/TID/NAME`: this thread's own view.
    pub fn proc_file(&self, name: &str) -> String {
        format!("/proc/{}/task/{}/{name}", self.tid, self.tid)
    }

    fn proc_path(&self, name: &str) -> CString {
        CString::new(self.proc_file(name)).unwrap_or_default()
    }

    /// A field of `/proc/TID/status` (`Umask`, `Tgid`…), as its text.
    pub fn status_field(&self, field: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.proc_file("status")).ok()?;
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key == field).then(|| value.trim().to_string())
        })
    }

    /// An address for `len` bytes below the stack pointer of the thread, which
    /// is stopped in a system call (`/proc/TID/syscall` names it): past the
    /// x86-64 red zone, 16-byte aligned; free stack until the call returns.
    pub fn below_stack(&self, len: usize) -> Option<u64> {
        let text = std::fs::read_to_string(self.proc_file("syscall")).ok()?;
        let sp = text.split_whitespace().nth(7)?;
        let sp = u64::from_str_radix(sp.trim_start_matches("0x"), 16).ok()?;
        let at = sp.checked_sub(256 + len as u64)? & !15;
        // The page must be there (the stack is not grown for us).
        let mut probe = [0u8; 1];
        self.read(at, &mut probe).ok()?;
        Some(at)
    }

    pub fn umask(&self) -> Option<libc::mode_t> {
        libc::mode_t::from_str_radix(&self.status_field("Umask")?, 8).ok()
    }

    pub fn tgid(&self) -> Option<libc::pid_t> {
        self.status_field("Tgid")?.parse().ok()
    }
}

/// A target the supervisor may not inspect (a setuid program, or a Yama policy
/// that allows only ancestors) is refused: the call fails closed with EPERM rather
/// than running unseen.
fn access_error(e: c_int) -> c_int {
    match e {
        libc::ESRCH => libc::ESRCH,
        libc::EFAULT => libc::EFAULT,
        _ => libc::EPERM,
    }
}
