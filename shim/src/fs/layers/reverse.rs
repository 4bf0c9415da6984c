//! `/proc` and the way back: the ways into a process's files (refused for processes
//! not of the capsule), its magic links (followed by the kernel, or mapped to the
//! capsule path of what they name), and host paths mapped back to capsule paths.

use std::ffi::c_int;

use super::{zeroed_stat, Found, Layers, Node, Place, PASSTHROUGH};
use crate::fs::path::{components, is_within, PathBuf};

/// Whether `/proc/...` link path `link` is about this process: `/proc/self/...`,
/// `/proc/thread-self/...` or `/proc/PID/...` with this process's pid.
fn is_own_proc_entry(link: &[u8]) -> bool {
    let Some(entry) = components(link).nth(1) else {
        return false;
    };
    if entry == b"self" || entry == b"thread-self" {
        return true;
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut digits = crate::decimal::Digits::default();
    entry == crate::decimal::decimal(pid as u64, &mut digits)
}

/// The names in a process's `/proc` directory that lead to its files: magic links
/// (which the kernel follows to the object itself, wherever it is) and the
/// directories of them.
const PROC_WAYS: &[&[u8]] = &[b"fd", b"map_files", b"cwd", b"root", b"exe"];

/// For `/proc/PID/NAME…` or `/proc/PID/task/TID/NAME…` with NAME in `PROC_WAYS`:
/// PID, NAME and how many components follow NAME.
pub(super) fn proc_way(path: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    let mut parts = components(path);
    if parts.next()? != b"proc" {
        return None;
    }
    let pid = parts.next()?;
    let mut name = parts.next()?;
    if name == b"task" {
        parts.next()?; // TID
        name = parts.next()?;
    }
    PROC_WAYS
        .contains(&name)
        .then(|| (pid, name, parts.count()))
}

/// Names in `/dev` that are links into `/proc/self/fd`.
pub(super) fn is_dev_fd_link(path: &[u8]) -> bool {
    is_within(path, b"/dev/fd") || matches!(path, b"/dev/stdin" | b"/dev/stdout" | b"/dev/stderr")
}

/// Whether descriptor `fd` (decimal) of process `pid` (decimal) is open for
/// writing: `fcntl` for this process, `/proc/PID/fdinfo/FD` for another one.
pub fn fd_writable(pid: &[u8], fd: &[u8]) -> bool {
    let writes = |flags: i64| {
        let mode = flags & libc::O_ACCMODE as i64;
        flags & libc::O_PATH as i64 == 0
            && (mode == libc::O_WRONLY as i64 || mode == libc::O_RDWR as i64)
    };
    if is_own_pid(pid) {
        let Some(n) = std::str::from_utf8(fd)
            .ok()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            return false;
        };
        // SAFETY: F_GETFL has no memory arguments.
        let flags = unsafe { libc::fcntl(n, libc::F_GETFL) };
        return flags >= 0 && writes(flags as i64);
    }
    let mut path = PathBuf::new();
    let built = path.push_bytes(b"/proc/").is_ok()
        && path.push_bytes(pid).is_ok()
        && path.push_bytes(b"/fdinfo/").is_ok()
        && path.push_bytes(fd).is_ok();
    if !built {
        return false;
    }
    let mut buf = [0u8; 512];
    // SAFETY: a NUL-terminated path, a buffer valid for its length, our descriptor.
    let n = unsafe {
        let f = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if f < 0 {
            return false;
        }
        let n = libc::read(f, buf.as_mut_ptr().cast(), buf.len());
        libc::close(f);
        n
    };
    let text = &buf[..n.max(0) as usize];
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"flags:"))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| i64::from_str_radix(v.trim(), 8).ok())
        .is_some_and(writes)
}

/// Whether `pid` (decimal) is this process.
fn is_own_pid(pid: &[u8]) -> bool {
    // SAFETY: getpid has no preconditions.
    let own = unsafe { libc::getpid() };
    let mut digits = crate::decimal::Digits::default();
    pid == crate::decimal::decimal(own as u64, &mut digits)
}

impl Layers {
    /// Refuses (`EACCES`, as the kernel does for a process one may not trace) the
    /// ways into another process's files (`/proc/PID/fd`, `cwd`, `root`, `exe`,
    /// `map_files`, and their `task/TID` forms) unless that process is the
    /// capsule's.
    pub(super) fn check_proc_way(&self, capsule: &[u8]) -> Result<(), c_int> {
        let Some((pid, _, 0)) = proc_way(capsule) else {
            return Ok(());
        };
        if !pid.iter().all(u8::is_ascii_digit) || is_own_pid(pid) || self.is_capsule_process(pid) {
            return Ok(());
        }
        Err(libc::EACCES)
    }

    /// Whether process `pid` (decimal) runs in this capsule: its environment holds
    /// one of the capsule's own entries (its state directory or upper layer).
    fn is_capsule_process(&self, pid: &[u8]) -> bool {
        if self.members.is_empty() {
            return false;
        }
        let Ok(mut path) = PathBuf::from_bytes(b"/proc/") else {
            return false;
        };
        if path.push_bytes(pid).is_err() || path.push_bytes(b"/environ").is_err() {
            return false;
        }
        // SAFETY: a NUL-terminated path; the descriptor is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return false;
        }
        let mut environ = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n <= 0 || environ.len() > 4 << 20 {
                break;
            }
            environ.extend_from_slice(&chunk[..n as usize]);
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        environ
            .split(|&b| b == 0)
            .any(|entry| self.members.iter().any(|m| m.as_slice() == entry))
    }

    /// Whether the `/proc` link `node` (read: `target`) is a descriptor's or a
    /// mapping's magic link whose object has no name in the capsule: a pipe, socket
    /// or other object without a path, a deleted file, or (inherited from outside)
    /// a file outside the capsule's view. The kernel must then follow the link
    /// itself; none of these is a lower-layer name. Other magic links are mapped to
    /// the capsule path of what they name (`map_proc_link`), so that a change through
    /// them copies up like any other.
    pub fn is_object_link(&self, node: &Node, target: &PathBuf) -> Result<bool, c_int> {
        let Some((pid, name, 1)) = proc_way(node.capsule.as_bytes()) else {
            return Ok(false);
        };
        if name != b"fd" && name != b"map_files" {
            return Ok(false);
        }
        if !target.as_bytes().starts_with(b"/") {
            return Ok(true);
        }
        // A descriptor open for writing was handed in so (the capsule's own opens
        // of lower files for writing copy them up first): reopening it gives nothing
        // more (`echo >/dev/stdout` with stdout redirected to a host file).
        if name == b"fd" && fd_writable(pid, node.capsule.file_name()) {
            return Ok(true);
        }
        let mut st = zeroed_stat();
        // SAFETY: a NUL-terminated path and a valid buffer.
        if unsafe { libc::stat(node.host.as_ptr(), &mut st) } != 0 {
            return Err(crate::hook::errno());
        }
        if st.st_nlink == 0 {
            return Ok(true);
        }
        let mut mapped = PathBuf::new();
        Ok(!self.reverse_into(target.as_bytes(), &mut mapped))
    }

    /// Makes `node` (an object link, see `is_object_link`) the host path the kernel
    /// follows, with the components after it.
    pub(super) fn object_into<'a>(
        &self,
        node: &mut Node,
        rest: impl Iterator<Item = &'a [u8]>,
        trailing_slash: bool,
    ) -> Result<(), c_int> {
        let mut more = false;
        for name in rest {
            node.host.push_bytes(b"/")?;
            node.host.push_bytes(name)?;
            node.capsule.push_bytes(b"/")?;
            node.capsule.push_bytes(name)?;
            more = true;
        }
        if trailing_slash {
            node.host.push_bytes(b"/")?;
        }
        node.place = Place::Passthrough;
        // SAFETY: a NUL-terminated path and a valid buffer.
        if unsafe { libc::stat(node.host.as_ptr(), &mut node.stat) } == 0 {
            node.found = Found::Direct;
            return Ok(());
        }
        let e = crate::hook::errno();
        node.stat = zeroed_stat();
        node.found = Found::Missing;
        if more && e == libc::ENOENT {
            return Ok(()); // a name to create, in a directory the kernel reaches
        }
        Err(e)
    }

    /// Maps the host path the `/proc` link `link` (a capsule path) holds into the
    /// capsule: a process's `root` is the capsule's `/`, a `cwd` outside the capsule
    /// shows as `/`, this process's `exe` is its program even when the root's
    /// dynamic loader runs it, other absolute targets outside the capsule are
    /// `ENOENT` (never revealed).
    pub fn map_proc_link(&self, link: &[u8], target: &mut PathBuf) -> Result<(), c_int> {
        if !target.as_bytes().starts_with(b"/") {
            return Ok(()); // "socket:[123]", "pipe:[4]", relative links
        }
        let link_name = match link.iter().rposition(|&b| b == b'/') {
            Some(i) => &link[i + 1..],
            None => link,
        };
        if link_name == b"exe" && is_own_proc_entry(link) {
            if let Some(program) = crate::exec::interp::explicit_program() {
                target.set(program.to_bytes())?;
            }
        }
        if link_name == b"root" {
            *target = PathBuf::root();
            return Ok(());
        }
        match self.reverse(target.as_bytes()) {
            Some(mapped) => *target = mapped,
            None if link_name == b"cwd" => *target = PathBuf::root(),
            None => return Err(libc::ENOENT),
        }
        Ok(())
    }

    /// Maps a host path back to the capsule path it shows as, if it has one.
    ///
    /// (A `/proc/self/exe` whose process was started by a root's loader is mapped
    /// by `map_proc_link`.)
    pub fn reverse(&self, host: &[u8]) -> Option<PathBuf> {
        let mut p = PathBuf::new();
        self.reverse_into(host, &mut p).then_some(p)
    }

    /// `reverse`, written into `out`; false (and `out` unspecified) when `host` has
    /// no capsule path.
    pub fn reverse_into(&self, host: &[u8], out: &mut PathBuf) -> bool {
        let strip = |out: &mut PathBuf, prefix: &[u8], capsule_base: &[u8]| -> bool {
            if !is_within(host, prefix) {
                return false;
            }
            let rest = if prefix == b"/" {
                host
            } else {
                &host[prefix.len()..]
            };
            if out.set(capsule_base).is_err() {
                return false;
            }
            if out.is_root() && !rest.is_empty() {
                out.clear();
            }
            if out.push_bytes(rest).is_err() {
                return false;
            }
            !out.is_empty() || out.push_bytes(b"/").is_ok()
        };
        // Volumes by host path, longest first (a stable sort: ties keep their order);
        // the usual few without allocating.
        let mut few = [0usize; 16];
        let mut many = Vec::new();
        let order: &mut [usize] = if self.volumes.len() <= few.len() {
            &mut few[..self.volumes.len()]
        } else {
            many.resize(self.volumes.len(), 0);
            &mut many
        };
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i;
        }
        order.sort_by_key(|&i| std::cmp::Reverse(self.volumes[i].host.len()));
        for &i in order.iter() {
            let v = &self.volumes[i];
            if strip(out, &v.host, &v.path) {
                return true;
            }
        }
        if let Some(upper) = &self.upper {
            if strip(out, upper, b"/") {
                return true;
            }
        }
        match &self.root {
            Some(root) => {
                if strip(out, root, b"/") {
                    return true;
                }
                if PASSTHROUGH.iter().any(|p| is_within(host, p)) {
                    return out.set(host).is_ok();
                }
                false
            }
            None => out.set(host).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ways_into_a_process_are_recognised_in_every_form() {
        assert_eq!(
            proc_way(b"/proc/12/fd/3"),
            Some((&b"12"[..], &b"fd"[..], 1))
        );
        assert_eq!(proc_way(b"/proc/12/fd"), Some((&b"12"[..], &b"fd"[..], 0)));
        assert_eq!(
            proc_way(b"/proc/self/task/13/cwd/etc"),
            Some((&b"self"[..], &b"cwd"[..], 1))
        );
        assert_eq!(
            proc_way(b"/proc/12/map_files/1-2"),
            Some((&b"12"[..], &b"map_files"[..], 1))
        );
        for other in [
            &b"/proc/12/status"[..],
            b"/proc/sys/kernel/hostname",
            b"/proc",
            b"/etc/fd/1",
        ] {
            assert_eq!(proc_way(other), None, "{}", String::from_utf8_lossy(other));
        }
        assert!(is_dev_fd_link(b"/dev/fd/0") && is_dev_fd_link(b"/dev/stdin"));
        assert!(!is_dev_fd_link(b"/dev/null") && !is_dev_fd_link(b"/dev/fdx"));
    }

    #[test]
    fn a_descriptor_open_for_writing_is_told_from_a_read_only_one() {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let mut digits = crate::decimal::Digits::default();
        let pid = crate::decimal::decimal(pid as u64, &mut digits).to_vec();
        // SAFETY: opening /dev/null; the descriptors are closed below.
        let (r, w) = unsafe {
            (
                libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY),
                libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY),
            )
        };
        let name = |fd: i32| fd.to_string().into_bytes();
        assert!(!fd_writable(&pid, &name(r)));
        assert!(fd_writable(&pid, &name(w)));
        // Another process's descriptors are read from /proc/PID/fdinfo: our own
        // pid through that route gives the same answers.
        assert!(!fd_writable(b"self", &name(r)));
        assert!(fd_writable(b"self", &name(w)));
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }
}
