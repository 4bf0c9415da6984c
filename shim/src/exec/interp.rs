//! A dynamically linked program of a capsule with its own root runs with the root's
//! own dynamic loader and libraries, as fakechroot does: the kernel would take the
//! program's `PT_INTERP` (and the loader its libraries) from the host, so the exec
//! names the root's loader explicitly:
//!
//! `ld.so --argv0 ARGV0 --library-path DIRS --inhibit-cache PROGRAM ARGS...`
//!
//! - `DIRS` are host directories: the capsule's `LD_LIBRARY_PATH` entries, then the
//!   root's standard library directories, each as the layers hold it (upper, then
//!   lower); `--inhibit-cache` because `/etc/ld.so.cache` would be the host's;
//! - the shim stays in `LD_PRELOAD`; it is built against the host's glibc, so this is
//!   done only when the root's glibc defines every symbol version the shim needs
//!   (and `--argv0`, glibc 2.33); otherwise the program runs as before (logged);
//! - in the new process `/proc/self/exe` names the loader: [`explicit_program`] gives
//!   the program's host path (the loader sets `AT_EXECFN` to it, and `AT_BASE` is 0
//!   when the kernel started the loader itself), which the fs replica maps back.
//!
//! Nothing here allocates: exec hooks also run in `vfork` children.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::fs::path::PathBuf;
use crate::fs::{ops, Layers};

/// The longest `--library-path` value built (host directories, `:`-separated).
const LIBRARY_PATH_MAX: usize = super::loader_cache::PATH_MAX;

#[cfg(target_arch = "x86_64")]
const MACHINE: u16 = 62; // EM_X86_64
#[cfg(target_arch = "aarch64")]
const MACHINE: u16 = 183; // EM_AARCH64
#[cfg(target_arch = "x86_64")]
const TRIPLET: &[u8] = b"x86_64-linux-gnu";
#[cfg(target_arch = "aarch64")]
const TRIPLET: &[u8] = b"aarch64-linux-gnu";

/// The dynamic loader that runs a program, and where it finds the libraries.
pub struct Loader {
    /// Host path of the root's dynamic loader.
    pub ldso: PathBuf,
    /// musl's loader (`ld-musl-*`), which has no `--inhibit-cache` (and no cache).
    pub musl: bool,
    library_path: [u8; LIBRARY_PATH_MAX],
    len: usize,
}

impl Loader {
    /// The `--library-path` argument, NUL-terminated.
    pub fn library_path(&self) -> *const libc::c_char {
        self.library_path.as_ptr().cast()
    }
}

/// The host path of the program this process runs when the kernel started a
/// dynamic loader that then loaded it (`ld.so PROGRAM`), else `None`.
pub fn explicit_program() -> Option<&'static CStr> {
    // SAFETY: getauxval only reads the auxiliary vector; AT_EXECFN points at a
    // NUL-terminated string that lives as long as the process.
    unsafe {
        if libc::getauxval(libc::AT_BASE) != 0 {
            return None;
        }
        let name = libc::getauxval(libc::AT_EXECFN) as *const libc::c_char;
        if name.is_null() || *name != b'/' as libc::c_char {
            return None;
        }
        Some(CStr::from_ptr(name))
    }
}

/// The first process of a capsule with its own root was started by the kernel, with
/// the host's dynamic loader (the program's `PT_INTERP` read on the host): before
/// `main`, it runs itself again through the root's loader, with the same arguments
/// and environment. Later processes are started through the root's loader by the
/// exec hooks, so this happens once per capsule (`capsule run --root`, or a program
/// of the root started with `LD_PRELOAD` by hand). Nothing happens where the root's
/// loader cannot be used (see `for_program`); a failed exec leaves the process as it
/// was.
///
/// Called from the library constructor, inside the shim guard.
pub fn run_first_program_with_roots_loader() {
    let Some(layers) = crate::fs::layers() else {
        return;
    };
    if layers.root.is_none() || explicit_program().is_some() {
        return;
    }
    // SAFETY: getauxval has no preconditions.
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        return;
    }
    let mut exe = PathBuf::new();
    let Ok(link) = PathBuf::from_bytes(b"/proc/self/exe") else {
        return;
    };
    if crate::fs::sys::readlink(&link, &mut exe).is_err()
        || layers.reverse(exe.as_bytes()).is_none()
    {
        return; // not a program of the capsule
    }
    let environ = super::env::current_environ();
    let Some(loader) = for_program(layers, &exe, &Image::open(&exe), environ) else {
        return;
    };
    let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
        return;
    };
    let args: Vec<&[u8]> = cmdline
        .strip_suffix(b"\0")
        .unwrap_or(&cmdline)
        .split(|&b| b == 0)
        .collect();
    let mut owned: Vec<std::ffi::CString> = Vec::with_capacity(args.len());
    for arg in &args {
        match std::ffi::CString::new(*arg) {
            Ok(c) => owned.push(c),
            Err(_) => return,
        }
    }
    let mut argv: Vec<*const libc::c_char> = vec![loader.ldso.as_ptr()];
    if let Some(argv0) = owned.first().filter(|_| !cmdline.is_empty()) {
        argv.extend([c"--argv0".as_ptr(), argv0.as_ptr()]);
    }
    argv.extend([c"--library-path".as_ptr(), loader.library_path()]);
    if !loader.musl {
        argv.push(c"--inhibit-cache".as_ptr());
    }
    argv.push(exe.as_ptr());
    if !cmdline.is_empty() {
        argv.extend(owned.iter().skip(1).map(|a| a.as_ptr()));
    }
    argv.push(std::ptr::null());
    crate::backstop::trust::announce_loader(loader.ldso.as_ptr());
    // SAFETY: NULL-terminated vectors of C strings that outlive the call; inside the
    // guard, execve is the real one. The environment is the one every child gets
    // (the shim in LD_PRELOAD even when it came from elsewhere).
    unsafe {
        super::env::with_child_env(loader.ldso.as_ptr(), environ, |env| {
            libc::execve(loader.ldso.as_ptr(), argv.as_ptr(), env)
        })
    };
    log::warn!(
        "cannot run {:?} with the root's loader {:?}: errno {}",
        exe,
        loader.ldso,
        crate::hook::errno()
    );
}

/// The C library a program file runs with, which decides the shim it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Libc {
    Glibc,
    Musl,
    /// Static, not ELF, unreadable: the preload does not matter (or the kernel fails).
    Other,
}

/// The C library of the host file `path` by its `PT_INTERP` (`ld-musl*` or
/// `ld-linux*`); a dynamic loader run explicitly counts as its own library; a `#!`
/// script as its interpreter's (one level). No allocation: exec hooks call it.
pub fn libc_of(path: *const libc::c_char) -> Libc {
    fn by_name(name: &[u8]) -> Libc {
        let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
        if base.starts_with(b"ld-musl") {
            Libc::Musl
        } else if base.starts_with(b"ld-linux") {
            Libc::Glibc
        } else {
            Libc::Other
        }
    }
    if path.is_null() {
        return Libc::Other;
    }
    // SAFETY: path is a NUL-terminated string (checked non-null above).
    let own = by_name(unsafe { CStr::from_ptr(path) }.to_bytes());
    if own != Libc::Other {
        return own; // a loader, as every exec of a capsule with a root names
    }
    let Some(file) = Mapped::open(path) else {
        return Libc::Other;
    };
    let bytes = file.bytes();
    if let Some(rest) = bytes.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or(rest);
        let Some(interp) = line
            .split(|&b| b == b' ' || b == b'\t')
            .find(|w| !w.is_empty())
        else {
            return Libc::Other;
        };
        let Ok(interp) = PathBuf::from_bytes(interp) else {
            return Libc::Other;
        };
        let Some(script) = Mapped::open(interp.as_ptr()) else {
            return Libc::Other;
        };
        let mut out = [0u8; 256];
        return Elf::parse(script.bytes())
            .and_then(|e| e.interpreter(&mut out).map(|n| by_name(n.to_bytes())))
            .unwrap_or(Libc::Other);
    }
    let Some(elf) = Elf::parse(bytes) else {
        return Libc::Other;
    };
    let mut out = [0u8; 256];
    elf.interpreter(&mut out)
        .map_or(Libc::Other, |name| by_name(name.to_bytes()))
}

/// For the host file `program` about to be executed in a capsule: the root's loader
/// to run it with, or `None` to execute it as it is (no root of its own, not a
/// dynamically linked program of this machine, no usable loader in the root).
pub fn for_program(
    layers: &Layers,
    program: &PathBuf,
    image: &Image,
    envp: *const *const libc::c_char,
) -> Option<Loader> {
    layers.root.as_ref()?;
    let mut interp = [0u8; 256];
    let name = image.elf()?.interpreter(&mut interp)?;
    let base = name.to_bytes().rsplit(|&b| b == b'/').next()?;
    let musl = base.starts_with(b"ld-musl");
    if !musl && !base.starts_with(b"ld-linux") {
        return None;
    }
    if musl {
        let ldso = roots_interpreter(layers, name, program)?.host;
        return Some(musl_loader(layers, ldso, envp));
    }
    glibc_loader(layers, name, program, envp)
}

/// Whether a remembered loader and library path name only the capsule's own files:
/// the shared state is writable memory of every process of the capsule, so an entry
/// a program forged there must not make the next exec run a host file.
fn inside_capsule(layers: &Layers, ldso: &[u8], library_path: &[u8]) -> bool {
    let mut capsule = PathBuf::new();
    let mut inside = |host: &[u8]| layers.reverse_into(host, &mut capsule);
    inside(ldso) && library_path.split(|&b| b == b':').all(&mut inside)
}

/// Interpreter `name` in the capsule, if it is a regular file there.
fn roots_interpreter(
    layers: &Layers,
    name: &CStr,
    program: &PathBuf,
) -> Option<crate::fs::layers::Node> {
    match ops::existing(layers, libc::AT_FDCWD, name, true) {
        Ok(node) if node.stat.st_mode & libc::S_IFMT == libc::S_IFREG => Some(node),
        _ => {
            log::info!(
                "{:?}: its loader {name:?} is not in the capsule; running it with the host's",
                program
            );
            None
        }
    }
}

/// `for_program` of a glibc program with interpreter `name`: from the capsule-wide
/// entry when it holds this interpreter and `LD_LIBRARY_PATH` at the current
/// file-system generation (`loader_cache.rs`), else worked out and recorded.
fn glibc_loader(
    layers: &Layers,
    name: &CStr,
    program: &PathBuf,
    envp: *const *const libc::c_char,
) -> Option<Loader> {
    use super::loader_cache::{Cached, Entry, KEY_MAX, LDSO_MAX};
    let mut key = [0u8; KEY_MAX];
    let interp = name.to_bytes_with_nul();
    let env_dirs = env_value(envp, b"LD_LIBRARY_PATH").unwrap_or_default();
    let key_len = interp.len() + env_dirs.len();
    // No state directory (no shared generation) or an outsized key: not cached.
    let generation = crate::fs::cache::generation().filter(|_| key_len <= KEY_MAX);
    let key = match generation {
        Some(_) => {
            key[..interp.len()].copy_from_slice(interp);
            key[interp.len()..key_len].copy_from_slice(env_dirs);
            &key[..key_len]
        }
        None => &key[..0],
    };
    let shared = &crate::runtime::get().shared.loader;
    if let Some(generation) = generation {
        let mut ldso = [0u8; LDSO_MAX];
        let mut check = [0u8; LDSO_MAX];
        let mut loader = Loader {
            ldso: PathBuf::new(),
            musl: false,
            library_path: [0; LIBRARY_PATH_MAX],
            len: 0,
        };
        let newer = |check: &[u8; LDSO_MAX], len: usize| {
            len > 0 && {
                // SAFETY: zeroed stat is valid plain data.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: `read` NUL-terminated the path; a stat buffer to fill.
                unsafe { libc::lstat(check.as_ptr().cast(), &mut st) == 0 }
            }
        };
        match shared.read(
            generation,
            key,
            &mut ldso,
            &mut check,
            &mut loader.library_path,
        ) {
            Cached::Unusable { check_len } if !newer(&check, check_len) => return None,
            Cached::Loader {
                ldso_len,
                check_len,
                path_len,
            } if !newer(&check, check_len)
                && inside_capsule(layers, &ldso[..ldso_len], &loader.library_path[..path_len])
                && loader.ldso.set(&ldso[..ldso_len]).is_ok() =>
            {
                loader.len = path_len;
                return Some(loader);
            }
            _ => {}
        }
    }
    let node = roots_interpreter(layers, name, program);
    // A loader found below the upper layer is shadowed by one written there later.
    let mut check = PathBuf::new();
    let mut checkable = true;
    if let (Some(node), Some(upper)) = (node.as_ref(), layers.upper.as_deref()) {
        if node.found != crate::fs::layers::Found::Upper {
            checkable = check.set_prefixed(upper, node.capsule.as_bytes()).is_ok();
        }
    }
    let loader = node.and_then(|node| with_library_path(layers, node.host, envp));
    // Only a usable loader is remembered: a missing interpreter, or a loader caught
    // mid-rewrite that fails the version check, may be put right without changing
    // any directory, and an entry must not outlive that.
    if let Some(generation) = generation.filter(|_| checkable && loader.is_some()) {
        // The walk followed links (`/lib64`, the loader's own): their removal must
        // now bump the generation.
        crate::fs::cache::links_cached();
        let entry = Entry {
            check: check.as_bytes(),
            loader: loader
                .as_ref()
                .map(|l| (l.ldso.as_bytes(), &l.library_path[..l.len])),
        };
        shared.store(generation, key, &entry);
    }
    loader
}

/// The root's musl loader `ldso` with its library directories: the capsule's
/// `LD_LIBRARY_PATH`, then musl's defaults (`/lib:/usr/local/lib:/usr/lib`), as the
/// layers hold them. The musl shim needs nothing of the root but its `libc.so`,
/// which is that loader itself.
fn musl_loader(layers: &Layers, ldso: PathBuf, envp: *const *const libc::c_char) -> Loader {
    let mut loader = loader_with_env_dirs(layers, ldso, true, envp);
    for dir in [&b"/lib"[..], b"/usr/local/lib", b"/usr/lib"] {
        add_dir(layers, &mut loader, dir);
    }
    loader
}

/// Loader `ldso` with the absolute directories of the capsule's `LD_LIBRARY_PATH`, as
/// the layers hold them, first in its library path.
fn loader_with_env_dirs(
    layers: &Layers,
    ldso: PathBuf,
    musl: bool,
    envp: *const *const libc::c_char,
) -> Loader {
    let mut loader = Loader {
        ldso,
        musl,
        library_path: [0; LIBRARY_PATH_MAX],
        len: 0,
    };
    if let Some(value) = env_value(envp, b"LD_LIBRARY_PATH") {
        for dir in value.split(|&b| b == b':') {
            if dir.starts_with(b"/") {
                add_dir(layers, &mut loader, dir);
            }
        }
    }
    loader
}

/// The root's loader `ldso` (a host path) with the `--library-path` a program of the
/// root needs, or `None` when the shim cannot run under it.
pub fn with_library_path(
    layers: &Layers,
    ldso: PathBuf,
    envp: *const *const libc::c_char,
) -> Option<Loader> {
    let mut loader = loader_with_env_dirs(layers, ldso, false, envp);
    for dir in STANDARD_DIRS {
        let mut capsule = [0u8; 64];
        let n = expand(dir, &mut capsule);
        add_dir(layers, &mut loader, &capsule[..n]);
    }
    if !shim_fits(&loader) {
        return None;
    }
    Some(loader)
}

/// A program file about to be executed, mapped once for every question the exec
/// asks of it.
pub struct Image {
    file: Option<Mapped>,
}

impl Image {
    /// Host file `program` (unreadable or not a regular file: every answer is "no").
    pub fn open(program: &PathBuf) -> Image {
        Image {
            file: Mapped::open(program.as_ptr()),
        }
    }

    fn elf(&self) -> Option<Elf<'_>> {
        Elf::parse(self.file.as_ref()?.bytes())
    }

    /// An ELF executable of this machine without a program interpreter: statically
    /// linked (`static-pie` included).
    pub fn is_static(&self) -> bool {
        let mut interp = [0u8; 256];
        self.elf()
            .is_some_and(|elf| elf.interpreter(&mut interp).is_none())
    }

    /// Needs the system-call backstop: statically linked, or a Go program (a `Go`
    /// build-id note), which makes its own system calls even when it is linked
    /// dynamically (cgo).
    pub fn needs_backstop(&self) -> bool {
        let mut interp = [0u8; 256];
        self.elf()
            .is_some_and(|elf| elf.interpreter(&mut interp).is_none() || elf.is_go())
    }
}

/// The upper layer's copies of the root's library directories that exist (host
/// paths, each NUL-terminated, one after another in `out`): where a package
/// manager of the capsule puts new libraries. Returns the bytes used.
pub fn upper_library_dirs(layers: &Layers, out: &mut [u8]) -> usize {
    let Some(upper) = layers.upper.as_deref() else {
        return 0;
    };
    let mut used = 0;
    for dir in STANDARD_DIRS {
        let mut capsule = [0u8; 64];
        let n = expand(dir, &mut capsule);
        let mut host = PathBuf::new();
        if host.set_prefixed(upper, &capsule[..n]).is_err() {
            continue;
        }
        // SAFETY: zeroed stat is valid plain data.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a stat buffer the call may fill.
        let is_dir = unsafe { libc::lstat(host.as_ptr(), &mut st) } == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let bytes = host.as_bytes();
        if is_dir && used + bytes.len() < out.len() {
            out[used..used + bytes.len()].copy_from_slice(bytes);
            out[used + bytes.len()] = 0;
            used += bytes.len() + 1;
        }
    }
    used
}

/// The root's library directories, in the order Debian's `ld.so.conf` gives them;
/// `@` stands for the multiarch triplet.
const STANDARD_DIRS: &[&[u8]] = &[
    b"/usr/local/lib/@",
    b"/usr/local/lib",
    b"/lib/@",
    b"/usr/lib/@",
    b"/lib64",
    b"/usr/lib64",
    b"/lib",
    b"/usr/lib",
];

fn expand(pattern: &[u8], out: &mut [u8; 64]) -> usize {
    let mut n = 0;
    for &b in pattern {
        let part: &[u8] = if b == b'@' {
            TRIPLET
        } else {
            std::slice::from_ref(&b)
        };
        out[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    out[n] = 0;
    n
}

/// Appends the host directories behind capsule directory `dir` (upper layer first,
/// then the lower one when not hidden), skipping missing ones and repeats.
fn add_dir(layers: &Layers, loader: &mut Loader, dir: &[u8]) {
    let Ok(capsule) = PathBuf::from_bytes(dir) else {
        return;
    };
    // SAFETY: a PathBuf is NUL-terminated.
    let cstr = unsafe { CStr::from_ptr(capsule.as_ptr()) };
    let Ok(node) = ops::existing(layers, libc::AT_FDCWD, cstr, true) else {
        return;
    };
    if !node.is_dir() {
        return;
    }
    push_dir(loader, node.host.as_bytes());
    if node.found == crate::fs::layers::Found::Upper && node.lower_visible {
        if let Ok(lower) = layers.lower_host(node.capsule.as_bytes()) {
            if crate::fs::sys::exists(&lower) {
                push_dir(loader, lower.as_bytes());
            }
        }
    }
}

fn push_dir(loader: &mut Loader, host: &[u8]) {
    if host.is_empty() || host.contains(&b':') {
        return;
    }
    let current = &loader.library_path[..loader.len];
    if current.split(|&b| b == b':').any(|d| d == host) {
        return;
    }
    let sep = usize::from(loader.len > 0);
    if loader.len + sep + host.len() + 1 > LIBRARY_PATH_MAX {
        return;
    }
    if sep == 1 {
        loader.library_path[loader.len] = b':';
    }
    let start = loader.len + sep;
    loader.library_path[start..start + host.len()].copy_from_slice(host);
    loader.len = start + host.len();
    loader.library_path[loader.len] = 0;
}

/// The value of `key` in a NULL-terminated environment.
fn env_value<'a>(envp: *const *const libc::c_char, key: &[u8]) -> Option<&'a [u8]> {
    if envp.is_null() {
        return None;
    }
    // SAFETY: envp is a NULL-terminated array of C strings (the caller's).
    unsafe {
        let mut p = envp;
        while !(*p).is_null() {
            let entry = CStr::from_ptr(*p).to_bytes();
            if entry.len() > key.len() && entry.starts_with(key) && entry[key.len()] == b'=' {
                return Some(&entry[key.len() + 1..]);
            }
            p = p.add(1);
        }
    }
    None
}

/// Whether the shim can load with the root's glibc: decided once per process (the
/// root does not change under it).
fn shim_fits(loader: &Loader) -> bool {
    const UNKNOWN: u8 = 0;
    const FITS: u8 = 1;
    const REFUSED: u8 = 2;
    static VERDICT: AtomicU8 = AtomicU8::new(UNKNOWN);
    match VERDICT.load(Ordering::Relaxed) {
        FITS => return true,
        REFUSED => return false,
        _ => {}
    }
    let fits = match check_versions(loader) {
        Ok(()) => true,
        Err(why) => {
            log::warn!("programs of this root run with the host's loader and libraries: {why}");
            false
        }
    };
    VERDICT.store(if fits { FITS } else { REFUSED }, Ordering::Relaxed);
    fits
}

/// Checks that every symbol version the shim needs is defined by the root's
/// library of that name, and that the root's glibc knows `--argv0` (2.33).
fn check_versions(loader: &Loader) -> Result<(), &'static str> {
    let rt = crate::runtime::get();
    let shim = Mapped::open(rt.shim_path.as_ptr()).ok_or("cannot read the shim")?;
    let shim_elf = Elf::parse(shim.bytes()).ok_or("the shim is not an ELF file")?;
    let libc_file = find_library(loader, b"libc.so.6").ok_or("no libc.so.6 in the root")?;
    let root_libc = Mapped::open(libc_file.as_ptr()).ok_or("cannot read the root's libc")?;
    let root_libc = Elf::parse(root_libc.bytes()).ok_or("the root's libc is not ELF")?;
    let ldso = Mapped::open(loader.ldso.as_ptr()).ok_or("cannot read the root's loader")?;
    let ldso_elf = Elf::parse(ldso.bytes()).ok_or("the root's loader is not ELF")?;
    if !root_libc.defines(b"GLIBC_2.33") {
        return Err("the root's glibc is older than 2.33 (its loader has no --argv0)");
    }
    let ldso_name = loader.ldso.file_name();
    let mut result = Ok(());
    shim_elf.each_needed(|file, version| {
        let defines = if file == b"libc.so.6" {
            root_libc.defines(version)
        } else if file == ldso_name || file.starts_with(b"ld-linux") {
            ldso_elf.defines(version)
        } else {
            true // the loader finds other libraries itself
        };
        if !defines {
            result = Err("the root's glibc is older than the one the shim was built for");
        }
    });
    result
}

/// The host path of `name` in the first library directory that has it.
fn find_library(loader: &Loader, name: &[u8]) -> Option<PathBuf> {
    for dir in loader.library_path[..loader.len].split(|&b| b == b':') {
        let mut candidate = PathBuf::from_bytes(dir).ok()?;
        candidate.push_component(name).ok()?;
        if crate::fs::sys::exists(&candidate) {
            return Some(candidate);
        }
    }
    None
}

/// A file mapped read-only (pages are read only where the parser looks).
struct Mapped {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: *const libc::c_char) -> Option<Mapped> {
        // SAFETY: a NUL-terminated path; the descriptor is closed before returning and
        // the mapping is unmapped on drop.
        unsafe {
            let fd = libc::open(path, libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return None;
            }
            let mut st: libc::stat = std::mem::zeroed();
            let size = if libc::fstat(fd, &mut st) == 0 {
                st.st_size as usize
            } else {
                0
            };
            let addr = if size >= 64 {
                libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    fd,
                    0,
                )
            } else {
                libc::MAP_FAILED
            };
            libc::close(fd);
            if addr == libc::MAP_FAILED {
                return None;
            }
            Some(Mapped { addr, len: size })
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: we mapped `len` readable bytes at `addr`.
        unsafe { std::slice::from_raw_parts(self.addr.cast(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: exactly the range we mapped.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_STRTAB: u64 = 5;
const DT_VERDEF: u64 = 0x6fff_fffc;
const DT_VERDEFNUM: u64 = 0x6fff_fffd;
const DT_VERNEED: u64 = 0x6fff_fffe;
const DT_VERNEEDNUM: u64 = 0x6fff_ffff;

/// A 64-bit little-endian ELF file of this machine, bounds-checked at every read.
struct Elf<'a> {
    data: &'a [u8],
    phoff: usize,
    phnum: usize,
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

/// One program header: type, file offset, virtual address, size in the file.
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> Option<Elf<'a>> {
        if data.get(..4)? != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
            return None;
        }
        if u16_at(data, 18)? != MACHINE || u16_at(data, 54)? != 56 {
            return None;
        }
        Some(Elf {
            data,
            phoff: usize::try_from(u64_at(data, 32)?).ok()?,
            phnum: usize::from(u16_at(data, 56)?),
        })
    }

    fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        (0..self.phnum).map_while(move |i| {
            let at = self.phoff.checked_add(i * 56)?;
            Some(Segment {
                kind: u32_at(self.data, at)?,
                offset: u64_at(self.data, at + 8)?,
                vaddr: u64_at(self.data, at + 16)?,
                filesz: u64_at(self.data, at + 32)?,
            })
        })
    }

    /// The `PT_INTERP` path, copied NUL-terminated into `out`.
    fn interpreter<'b>(&self, out: &'b mut [u8; 256]) -> Option<&'b CStr> {
        let seg = self.segments().find(|s| s.kind == PT_INTERP)?;
        let start = usize::try_from(seg.offset).ok()?;
        let text = self
            .data
            .get(start..start + usize::try_from(seg.filesz).ok()?)?;
        let text = CStr::from_bytes_until_nul(text).ok()?.to_bytes();
        if text.is_empty() || text.len() >= out.len() {
            return None;
        }
        out[..text.len()].copy_from_slice(text);
        out[text.len()] = 0;
        CStr::from_bytes_until_nul(&out[..]).ok()
    }

    /// Whether a `PT_NOTE` segment holds Go's build id (owner `Go`, type 4).
    fn is_go(&self) -> bool {
        const PT_NOTE: u32 = 4;
        const NT_GO_BUILD_ID: u32 = 4;
        self.segments().filter(|s| s.kind == PT_NOTE).any(|seg| {
            let (Ok(start), Ok(len)) = (usize::try_from(seg.offset), usize::try_from(seg.filesz))
            else {
                return false;
            };
            let mut at = start;
            let end = start.saturating_add(len);
            while at + 12 <= end {
                let (Some(namesz), Some(descsz), Some(kind)) = (
                    u32_at(self.data, at),
                    u32_at(self.data, at + 4),
                    u32_at(self.data, at + 8),
                ) else {
                    return false;
                };
                let name = self.data.get(at + 12..at + 12 + namesz as usize);
                // Go writes its owner name "Go\0\0" (namesz 4).
                if kind == NT_GO_BUILD_ID && name.is_some_and(|n| n.starts_with(b"Go\0")) {
                    return true;
                }
                let align = |n: u32| (n as usize).div_ceil(4) * 4;
                at += 12 + align(namesz) + align(descsz);
            }
            false
        })
    }

    /// The file offset of virtual address `vaddr`.
    fn offset_of(&self, vaddr: u64) -> Option<usize> {
        let seg = self
            .segments()
            .find(|s| s.kind == PT_LOAD && s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz)?;
        usize::try_from(vaddr - seg.vaddr + seg.offset).ok()
    }

    /// The value of dynamic tag `tag`.
    fn dynamic(&self, tag: u64) -> Option<u64> {
        let seg = self.segments().find(|s| s.kind == PT_DYNAMIC)?;
        let start = usize::try_from(seg.offset).ok()?;
        let count = usize::try_from(seg.filesz).ok()? / 16;
        (0..count)
            .map_while(|i| {
                let at = start + i * 16;
                Some((u64_at(self.data, at)?, u64_at(self.data, at + 8)?))
            })
            .take_while(|&(t, _)| t != 0)
            .find(|&(t, _)| t == tag)
            .map(|(_, v)| v)
    }

    fn string(&self, strtab: usize, index: u32) -> Option<&'a [u8]> {
        let start = strtab.checked_add(index as usize)?;
        Some(
            CStr::from_bytes_until_nul(self.data.get(start..)?)
                .ok()?
                .to_bytes(),
        )
    }

    fn strtab(&self) -> Option<usize> {
        self.offset_of(self.dynamic(DT_STRTAB)?)
    }

    /// Whether the file defines symbol version `name`.
    fn defines(&self, name: &[u8]) -> bool {
        self.defines_inner(name).unwrap_or(false)
    }

    fn defines_inner(&self, name: &[u8]) -> Option<bool> {
        let strtab = self.strtab()?;
        let mut at = self.offset_of(self.dynamic(DT_VERDEF)?)?;
        let count = self.dynamic(DT_VERDEFNUM)?.min(4096);
        for _ in 0..count {
            // Elf64_Verdef: version, flags, ndx, cnt (u16), hash, aux, next (u32).
            let aux = u32_at(self.data, at + 12)? as usize;
            let first_name = u32_at(self.data, at + aux)?;
            if self.string(strtab, first_name)? == name {
                return Some(true);
            }
            let next = u32_at(self.data, at + 16)? as usize;
            if next == 0 {
                break;
            }
            at += next;
        }
        Some(false)
    }

    /// Calls `f(file, version)` for every symbol version the file needs.
    fn each_needed(&self, mut f: impl FnMut(&[u8], &[u8])) {
        let _ = self.each_needed_inner(&mut f);
    }

    fn each_needed_inner(&self, f: &mut impl FnMut(&[u8], &[u8])) -> Option<()> {
        let strtab = self.strtab()?;
        let mut at = self.offset_of(self.dynamic(DT_VERNEED)?)?;
        let count = self.dynamic(DT_VERNEEDNUM)?.min(4096);
        for _ in 0..count {
            // Elf64_Verneed: version, cnt (u16), file, aux, next (u32).
            let cnt = u16_at(self.data, at + 2)?;
            let file = self.string(strtab, u32_at(self.data, at + 4)?)?;
            let mut aux = at + u32_at(self.data, at + 8)? as usize;
            for _ in 0..cnt {
                // Elf64_Vernaux: hash (u32), flags, other (u16), name, next (u32).
                f(file, self.string(strtab, u32_at(self.data, aux + 8)?)?);
                let next = u32_at(self.data, aux + 12)? as usize;
                if next == 0 {
                    break;
                }
                aux += next;
            }
            let next = u32_at(self.data, at + 12)? as usize;
            if next == 0 {
                break;
            }
            at += next;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_host_libc_versions_and_a_program_interpreter() {
        let libc = Mapped::open(c"/lib/x86_64-linux-gnu/libc.so.6".as_ptr())
            .or_else(|| Mapped::open(c"/lib/aarch64-linux-gnu/libc.so.6".as_ptr()))
            .expect("host libc");
        let elf = Elf::parse(libc.bytes()).expect("libc is ELF");
        assert!(elf.defines(b"GLIBC_2.2.5") || elf.defines(b"GLIBC_2.17"));
        assert!(elf.defines(b"GLIBC_2.33"));
        assert!(!elf.defines(b"GLIBC_9.99"));
        let sh = Mapped::open(c"/bin/sh".as_ptr()).expect("/bin/sh");
        let elf = Elf::parse(sh.bytes()).expect("sh is ELF");
        let mut buf = [0u8; 256];
        let interp = elf.interpreter(&mut buf).expect("sh is dynamic");
        assert!(interp.to_bytes().starts_with(b"/lib"));
        let mut needs_glibc = false;
        elf.each_needed(|file, version| {
            needs_glibc |= file == b"libc.so.6" && version.starts_with(b"GLIBC_2.");
        });
        assert!(needs_glibc);
    }

    #[test]
    fn library_dirs_expand_and_join_once() {
        let mut out = [0u8; 64];
        let n = expand(b"/usr/lib/@", &mut out);
        assert!(out[..n].starts_with(b"/usr/lib/") && out[..n].ends_with(b"-linux-gnu"));
        let mut loader = Loader {
            ldso: PathBuf::new(),
            musl: false,
            library_path: [0; LIBRARY_PATH_MAX],
            len: 0,
        };
        push_dir(&mut loader, b"/r/lib");
        push_dir(&mut loader, b"/r/usr/lib");
        push_dir(&mut loader, b"/r/lib");
        push_dir(&mut loader, b"/bad:dir");
        assert_eq!(&loader.library_path[..loader.len], b"/r/lib:/r/usr/lib");
        assert_eq!(loader.library_path[loader.len], 0);
    }
}
