//! Which host file an exec runs, when the capsule has its own file system: the
//! program's path (or the `PATH` search of `execvp`-style calls) is resolved in the
//! capsule, and a `#!` script whose capsule has its own root gets its interpreter
//! from that root too (the kernel would take it from the host's).
//!
//! Nothing here allocates: exec hooks also run in `vfork` children.

use std::ffi::{c_char, c_int, CStr};

use crate::fs::path::PathBuf;
use crate::fs::{self, Layers};

/// The longest argument vector rebuilt for a `#!` script.
pub const MAX_ARGS: usize = 256;

/// A program ready to execute: the host file, and for a `#!` script run through
/// the root's interpreter, what the rebuilt argument vector holds.
pub struct Program {
    pub host: PathBuf,
    script: Option<Script>,
}

struct Script {
    /// The interpreter as the `#!` line names it (argv[0]).
    interpreter: [u8; 256],
    /// The optional argument of the `#!` line.
    argument: [u8; 128],
    has_argument: bool,
    /// The script's path as the program gave it (the interpreter opens it).
    path: PathBuf,
}

/// Room for a rebuilt argument vector.
pub type ArgvBuf = [*const c_char; MAX_ARGS + 4];

impl Program {
    /// The argument vector to pass: the caller's, or, for a script, one rebuilt in
    /// `buf` (which must outlive the exec call).
    pub fn argv(
        &self,
        original: *const *const c_char,
        buf: &mut ArgvBuf,
    ) -> Result<*const *const c_char, c_int> {
        let Some(script) = &self.script else {
            return Ok(original);
        };
        let mut i = 0;
        buf[i] = script.interpreter.as_ptr().cast();
        i += 1;
        if script.has_argument {
            buf[i] = script.argument.as_ptr().cast();
            i += 1;
        }
        buf[i] = script.path.as_ptr();
        i += 1;
        // SAFETY: argv is a NULL-terminated array of C strings.
        unsafe {
            if !original.is_null() && !(*original).is_null() {
                let mut p = original.add(1);
                while !(*p).is_null() {
                    if i >= MAX_ARGS {
                        return Err(libc::E2BIG);
                    }
                    buf[i] = *p;
                    i += 1;
                    p = p.add(1);
                }
            }
        }
        buf[i] = std::ptr::null();
        Ok(buf.as_ptr())
    }
}

fn is_executable_file(host: &PathBuf) -> Result<(), c_int> {
    // SAFETY: zeroed stat is valid; NUL-terminated path.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::stat(host.as_ptr(), &mut st) != 0 {
            return Err(crate::hook::errno());
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(libc::EACCES);
        }
        if libc::access(host.as_ptr(), libc::X_OK) != 0 {
            return Err(crate::hook::errno());
        }
    }
    Ok(())
}

/// Resolves a program path in the capsule; it must exist.
fn resolve(layers: &Layers, path: &[u8]) -> Result<PathBuf, c_int> {
    let mut buf = [0u8; crate::fs::path::PATH_MAX + 1];
    if path.len() >= crate::fs::path::PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    buf[..path.len()].copy_from_slice(path);
    let cstr = CStr::from_bytes_until_nul(&buf).map_err(|_| libc::ENOENT)?;
    match crate::fs::ops::existing(layers, libc::AT_FDCWD, cstr, true) {
        Ok(node) => Ok(node.host),
        Err(crate::fs::ops::Skip::Errno(e)) => Err(e),
        Err(crate::fs::ops::Skip::Pass) => Err(libc::ENOENT),
    }
}

/// Finds `file` along the caller's `PATH` inside the capsule, like `execvp`:
/// returns the host file and the capsule path it was found at.
fn search(layers: &Layers, file: &[u8]) -> Result<(PathBuf, PathBuf), c_int> {
    // SAFETY: getenv returns null or a NUL-terminated string.
    let path_var = unsafe {
        let p = libc::getenv(c"PATH".as_ptr());
        if p.is_null() {
            &b"/bin:/usr/bin"[..]
        } else {
            CStr::from_ptr(p).to_bytes()
        }
    };
    let mut denied = false;
    for dir in path_var.split(|&b| b == b':') {
        let mut candidate = PathBuf::new();
        candidate.push_bytes(if dir.is_empty() { b"." } else { dir })?;
        candidate.push_bytes(b"/")?;
        candidate.push_bytes(file)?;
        if let Ok(host) = resolve(layers, candidate.as_bytes()) {
            match is_executable_file(&host) {
                Ok(()) => return Ok((host, candidate)),
                Err(libc::EACCES) => denied = true,
                Err(_) => {}
            }
        }
    }
    Err(if denied { libc::EACCES } else { libc::ENOENT })
}

/// Prepares the exec of `file` (searched along `PATH` when `search_path` and it has
/// no `/`). `None`: the capsule has no file-system replica, exec as asked.
pub fn prepare(file: *const c_char, search_path: bool) -> Result<Option<Program>, c_int> {
    let Some(layers) = fs::layers() else {
        return Ok(None);
    };
    if file.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: a non-null program path is a C string.
    let bytes = unsafe { CStr::from_ptr(file) }.to_bytes();
    if bytes.is_empty() {
        return Err(libc::ENOENT);
    }
    let (host, capsule) = if search_path && !bytes.contains(&b'/') {
        search(layers, bytes)?
    } else {
        (resolve(layers, bytes)?, PathBuf::from_bytes(bytes)?)
    };
    let mut program = Program { host, script: None };
    if layers.root.is_some() {
        program.script = shebang(layers, &mut program.host, capsule)?;
    }
    Ok(Some(program))
}

/// For a `#!` script in a capsule with its own root: the root's interpreter runs
/// the script's capsule path, as the kernel would have run the host's interpreter.
fn shebang(
    layers: &Layers,
    host: &mut PathBuf,
    script_path: PathBuf,
) -> Result<Option<Script>, c_int> {
    let mut head = [0u8; 256];
    // SAFETY: NUL-terminated path; the descriptor is closed at once.
    let n = unsafe {
        let fd = libc::open(host.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Ok(None); // the real exec reports it
        }
        let n = libc::read(fd, head.as_mut_ptr().cast(), head.len());
        libc::close(fd);
        n
    };
    if n < 2 || &head[..2] != b"#!" {
        return Ok(None);
    }
    let line_end = head[..n as usize]
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(n as usize);
    let line = trim(&head[2..line_end]);
    let split = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let (interpreter, rest) = (&line[..split], trim(&line[split..]));
    if interpreter.is_empty() {
        return Ok(None);
    }
    let mut script = Script {
        interpreter: [0; 256],
        argument: [0; 128],
        has_argument: !rest.is_empty(),
        path: script_path,
    };
    if interpreter.len() >= script.interpreter.len() || rest.len() >= script.argument.len() {
        return Err(libc::ENOEXEC);
    }
    script.interpreter[..interpreter.len()].copy_from_slice(interpreter);
    script.argument[..rest.len()].copy_from_slice(rest);
    *host = resolve(layers, interpreter)?;
    Ok(Some(script))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}
