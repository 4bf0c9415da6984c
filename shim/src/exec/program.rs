//! Which host file an exec runs, when the capsule has its own file system: the
//! program's path (or the `PATH` search of `execvp`-style calls) is resolved in the
//! capsule, and a `#!` script whose capsule has its own root gets its interpreter
//! from that root too (the kernel would take it from the host's).
//!
//! Nothing here allocates: exec hooks also run in `vfork` children.

use std::ffi::{c_char, c_int, CStr};

use super::interp::{self, Loader};
use crate::fs::path::PathBuf;
use crate::fs::{self, Layers};

/// Arguments a rebuilt vector holds on the stack; longer ones go to a private mapping.
const STACK_ARGS: usize = 512;

/// A program ready to execute: the host file, and for a `#!` script run through
/// the root's interpreter, or a program run by the root's own dynamic loader, what
/// the rebuilt argument vector holds.
pub struct Program {
    pub host: PathBuf,
    script: Option<Script>,
    /// The root's dynamic loader, which runs `host` (see `interp.rs`).
    loader: Option<Loader>,
    /// The program is the root's dynamic loader itself (`ld.so PROGRAM ARGS`): the
    /// loader opens PROGRAM on its own, so its path is translated here, and the
    /// root's library directories are given unless the caller names some.
    explicit: Option<Loader>,
    /// The root's statically linked `ldconfig` (see `LdconfigDirs`).
    ldconfig: Option<LdconfigDirs>,
    /// A statically linked program or a Go program (or `#!` interpreter): it runs
    /// through the system-call backstop's trampoline (see `backstop/`).
    backstop: bool,
    /// A dynamically linked Go program: run without the shim (see backstop/).
    bare: bool,
}

/// `ldconfig` of a root is a static program: the shim does not reach it, so it
/// would read the host's `/etc/ld.so.conf` and library directories and write the
/// host's `/etc/ld.so.cache` (which the kernel backstop refuses: dpkg's `libc-bin`
/// trigger then fails every installation). The capsule's programs never read that
/// cache (the root's loader runs them with `--inhibit-cache` and the layers'
/// library directories), so what `ldconfig` must still do in a capsule is its other
/// half: the soname links of new libraries. It runs as `ldconfig -n DIRS`: only the
/// links, in the upper layer's library directories, where new libraries are.
struct LdconfigDirs {
    /// Host paths, each NUL-terminated, one after another.
    dirs: [u8; 2048],
    len: usize,
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

/// Room for a rebuilt argument vector: on the stack, or in a private mapping (exec
/// hooks run in `vfork` children, where malloc is off limits); unmapped on drop
/// (when the exec fails and returns).
pub struct ArgvBuf {
    stack: [*const c_char; STACK_ARGS],
    mapping: Option<(*mut libc::c_void, usize)>,
    /// The host path of the program an explicit `ld.so` runs.
    program: PathBuf,
}

impl ArgvBuf {
    pub fn new() -> ArgvBuf {
        ArgvBuf {
            stack: [std::ptr::null(); STACK_ARGS],
            mapping: None,
            program: PathBuf::new(),
        }
    }

    /// A vector of at least `n` pointers.
    fn slots(&mut self, n: usize) -> Result<&mut [*const c_char], c_int> {
        if n <= STACK_ARGS {
            return Ok(&mut self.stack[..]);
        }
        let len = n * std::mem::size_of::<*const c_char>();
        // SAFETY: a fresh private anonymous mapping of `len` bytes, owned by self.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if addr == libc::MAP_FAILED {
                return Err(libc::E2BIG);
            }
            self.mapping = Some((addr, len));
            Ok(std::slice::from_raw_parts_mut(addr.cast(), n))
        }
    }
}

impl Default for ArgvBuf {
    fn default() -> Self {
        ArgvBuf::new()
    }
}

impl Drop for ArgvBuf {
    fn drop(&mut self) {
        if let Some((addr, len)) = self.mapping {
            // SAFETY: exactly the range slots() mapped.
            unsafe { libc::munmap(addr, len) };
        }
    }
}

impl Program {
    /// The file to hand to the kernel: the backstop's trampoline, the root's
    /// loader, or the program itself.
    pub fn exec_path(&self) -> *const c_char {
        if self.backstop {
            return crate::runtime::get().trampoline.as_ptr();
        }
        self.file()
    }

    /// The root's dynamic loader, when the kernel runs it as the program (a
    /// supervisor above lets its calls through, see backstop/trust.rs).
    pub fn loader_run(&self) -> Option<*const c_char> {
        if self.backstop {
            return None;
        }
        match (&self.loader, &self.explicit) {
            (Some(loader), _) => Some(loader.ldso.as_ptr()),
            (None, Some(_)) => Some(self.host.as_ptr()),
            (None, None) => None,
        }
    }

    /// The file the kernel runs for the program: the root's loader, or the
    /// program itself (the trampoline runs this one).
    fn file(&self) -> *const c_char {
        match &self.loader {
            Some(loader) => loader.ldso.as_ptr(),
            None => self.host.as_ptr(),
        }
    }

    /// The argument vector to pass: the caller's, or one rebuilt in `buf` (which
    /// must outlive the exec call) for a script or the root's loader.
    pub fn argv(
        &self,
        original: *const *const c_char,
        buf: &mut ArgvBuf,
    ) -> Result<*const *const c_char, c_int> {
        if !self.backstop {
            return self.program_argv(original, buf, 0);
        }
        let inner = self.program_argv(original, buf, crate::backstop::PREFIX_ARGS)?;
        // SAFETY: program_argv left PREFIX_ARGS free slots before the vector it
        // returned, in the same buffer.
        let outer = unsafe { inner.sub(crate::backstop::PREFIX_ARGS).cast_mut() };
        // SAFETY: as above: the slots are ours to fill.
        unsafe { crate::backstop::trampoline_prefix(self.file(), self.bare, outer) };
        Ok(outer)
    }

    /// The program's own argument vector, after `skip` free slots of `buf`.
    fn program_argv(
        &self,
        original: *const *const c_char,
        buf: &mut ArgvBuf,
        skip: usize,
    ) -> Result<*const *const c_char, c_int> {
        if let Some(loader) = &self.explicit {
            return explicit_loader_argv(loader, original, buf);
        }
        if let Some(dirs) = &self.ldconfig {
            return ldconfig_argv(dirs, original, buf);
        }
        if self.script.is_none() && self.loader.is_none() && skip == 0 {
            return Ok(original);
        }
        // The caller's arguments after argv[0].
        let mut rest: &[*const c_char] = &[];
        let mut argv0: *const c_char = std::ptr::null();
        // SAFETY: argv is null or a NULL-terminated array of C strings.
        unsafe {
            if !original.is_null() && !(*original).is_null() {
                argv0 = *original;
                let mut n = 1;
                while !(*original.add(n)).is_null() {
                    n += 1;
                }
                rest = std::slice::from_raw_parts(original.add(1), n - 1);
            }
        }
        let slots = buf.slots(rest.len() + 12 + skip)?;
        let mut i = skip;
        let mut put = |p: *const c_char| {
            slots[i] = p;
            i += 1;
        };
        if let Some(script) = &self.script {
            argv0 = script.interpreter.as_ptr().cast();
        }
        match &self.loader {
            Some(loader) => {
                put(loader.ldso.as_ptr());
                if !argv0.is_null() {
                    put(c"--argv0".as_ptr());
                    put(argv0);
                }
                put(c"--library-path".as_ptr());
                put(loader.library_path());
                if !loader.musl {
                    put(c"--inhibit-cache".as_ptr());
                }
                put(self.host.as_ptr());
            }
            None => put(argv0),
        }
        if let Some(script) = &self.script {
            if script.has_argument {
                put(script.argument.as_ptr().cast());
            }
            put(script.path.as_ptr());
        }
        for &arg in rest {
            put(arg);
        }
        put(std::ptr::null());
        Ok(slots[skip..].as_ptr())
    }
}

/// Options of glibc's `ld.so` that take a value.
const LDSO_VALUE_OPTIONS: &[&[u8]] = &[
    b"--argv0",
    b"--library-path",
    b"--preload",
    b"--audit",
    b"--inhibit-rpath",
    b"--glibc-hwcaps-prefer",
    b"--glibc-hwcaps-mask",
];

/// The argument vector of `ld.so [OPTIONS] PROGRAM ARGS` run in a capsule with its
/// own root: PROGRAM becomes the host file it names in the capsule, and the root's
/// library directories are added unless the caller gave `--library-path`.
fn explicit_loader_argv(
    loader: &Loader,
    original: *const *const c_char,
    buf: &mut ArgvBuf,
) -> Result<*const *const c_char, c_int> {
    let layers = fs::layers().ok_or(libc::ENOENT)?;
    let mut args: &[*const c_char] = &[];
    // SAFETY: argv is null or a NULL-terminated array of C strings.
    unsafe {
        if !original.is_null() {
            let mut n = 0;
            while !(*original.add(n)).is_null() {
                n += 1;
            }
            args = std::slice::from_raw_parts(original, n);
        }
    }
    // Where PROGRAM is, and whether the caller chose the library directories.
    let mut program_at = None;
    let mut has_library_path = false;
    let mut i = 1;
    while i < args.len() {
        // SAFETY: each entry is a C string.
        let arg = unsafe { CStr::from_ptr(args[i]) }.to_bytes();
        if arg == b"--library-path" {
            has_library_path = true;
        }
        if LDSO_VALUE_OPTIONS.contains(&arg) {
            i += 2;
        } else if arg.starts_with(b"--") {
            i += 1;
        } else {
            program_at = Some(i);
            break;
        }
    }
    let Some(at) = program_at else {
        return Ok(original); // --help, --list-tunables...: no program to open
    };
    // SAFETY: a C string of argv.
    let program = unsafe { CStr::from_ptr(args[at]) }.to_bytes();
    buf.program = resolve(layers, program)?;
    let program_host = buf.program.as_ptr();
    let slots = buf.slots(args.len() + 4)?;
    let mut n = 0;
    for (j, &arg) in args.iter().enumerate() {
        if j == at {
            if !has_library_path {
                slots[n] = c"--library-path".as_ptr();
                slots[n + 1] = loader.library_path();
                slots[n + 2] = c"--inhibit-cache".as_ptr();
                n += 3;
            }
            slots[n] = program_host;
        } else {
            slots[n] = arg;
        }
        n += 1;
    }
    slots[n] = std::ptr::null();
    Ok(slots.as_ptr())
}

/// The arguments of the root's `ldconfig` (see `LdconfigDirs`): `ldconfig -n
/// [-v] DIRS`, keeping argv[0] and a verbose flag; a print of the cache (`-p`)
/// becomes `ldconfig -p -C` the capsule's `/etc/ld.so.cache`.
fn ldconfig_argv(
    dirs: &LdconfigDirs,
    original: *const *const c_char,
    buf: &mut ArgvBuf,
) -> Result<*const *const c_char, c_int> {
    let mut args: &[*const c_char] = &[];
    // SAFETY: argv is null or a NULL-terminated array of C strings.
    unsafe {
        if !original.is_null() {
            let mut n = 0;
            while !(*original.add(n)).is_null() {
                n += 1;
            }
            args = std::slice::from_raw_parts(original, n);
        }
    }
    // SAFETY: each entry is a C string.
    let arg = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_bytes();
    if args
        .iter()
        .skip(1)
        .any(|&p| matches!(arg(p), b"-p" | b"--print-cache"))
    {
        // The capsule's cache, not the host's (which the program would open).
        let layers = fs::layers().ok_or(libc::ENOENT)?;
        buf.program = resolve(layers, b"/etc/ld.so.cache")?;
        let cache = buf.program.as_ptr();
        let slots = buf.slots(5)?;
        slots[0] = args.first().copied().unwrap_or(c"ldconfig".as_ptr());
        slots[1] = c"-p".as_ptr();
        slots[2] = c"-C".as_ptr();
        slots[3] = cache;
        slots[4] = std::ptr::null();
        return Ok(slots.as_ptr());
    }
    let verbose = args
        .iter()
        .skip(1)
        .any(|&p| matches!(arg(p), b"-v" | b"--verbose"));
    let count = dirs.dirs[..dirs.len].iter().filter(|&&b| b == 0).count();
    let slots = buf.slots(count + 4)?;
    let mut n = 0;
    slots[n] = args.first().copied().unwrap_or(c"ldconfig".as_ptr());
    n += 1;
    slots[n] = c"-n".as_ptr();
    n += 1;
    if verbose {
        slots[n] = c"-v".as_ptr();
        n += 1;
    }
    let mut start = 0;
    for (i, &b) in dirs.dirs[..dirs.len].iter().enumerate() {
        if b == 0 {
            slots[n] = dirs.dirs[start..].as_ptr().cast();
            n += 1;
            start = i + 1;
        }
    }
    slots[n] = std::ptr::null();
    log::info!("the root's ldconfig runs as ldconfig -n on {count} upper-layer directories");
    Ok(slots.as_ptr())
}

/// Whether a program path names glibc's dynamic loader (`ld-linux-x86-64.so.2`).
fn is_glibc_loader(path: &[u8]) -> bool {
    path.rsplit(|&b| b == b'/')
        .next()
        .is_some_and(|name| name.starts_with(b"ld-linux"))
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
        Err(crate::hook::Skip::Errno(e)) => Err(e),
        Err(crate::hook::Skip::Pass) => Err(libc::ENOENT),
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
///
/// In a capsule with its own root, a dynamically linked program (or `#!`
/// interpreter) is run by the root's dynamic loader; `envp` is the child's
/// environment (its `LD_LIBRARY_PATH` is translated for that loader).
pub fn prepare(
    file: *const c_char,
    search_path: bool,
    envp: *const *const c_char,
) -> Result<Option<Program>, c_int> {
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
    if layers.root.is_some() && is_glibc_loader(capsule.as_bytes()) {
        let explicit = PathBuf::from_bytes(host.as_bytes())
            .ok()
            .and_then(|ldso| interp::with_library_path(layers, ldso, envp));
        if explicit.is_some() {
            return Ok(Some(Program {
                host,
                script: None,
                loader: None,
                explicit,
                ldconfig: None,
                backstop: false,
                bare: false,
            }));
        }
    }
    let mut program = Program {
        host,
        script: None,
        loader: None,
        explicit: None,
        ldconfig: None,
        backstop: false,
        bare: false,
    };
    // The interpreter gets the script's path as the program gave it (a capsule path,
    // which it opens through the shim), as the kernel would: not the host path the
    // name resolves to, which is another name when it is a link (`psql` ->
    // `pg_wrapper`) and which a script may read from its `$0`.
    let is_ldconfig = capsule.file_name() == b"ldconfig";
    program.script = shebang(layers, &mut program.host, capsule)?;
    let image = interp::Image::open(&program.host);
    if layers.root.is_some() {
        program.loader = interp::for_program(layers, &program.host, &image, envp);
        if program.loader.is_none() && program.script.is_none() && is_ldconfig && image.is_static()
        {
            let mut dirs = LdconfigDirs {
                dirs: [0; 2048],
                len: 0,
            };
            dirs.len = interp::upper_library_dirs(layers, &mut dirs.dirs);
            program.ldconfig = Some(dirs);
        }
    }
    program.backstop = program.ldconfig.is_none() && image.needs_backstop();
    program.bare = program.backstop && !image.is_static();
    if program.backstop && crate::runtime::get().trampoline.is_empty() {
        // Installed without its trampoline: fail closed unless allowed.
        if !crate::runtime::get().config.allow_bypass {
            log::warn!("a static program cannot be run in the capsule: capsule-trampoline is missing beside the shim");
            return Err(libc::EPERM);
        }
        program.backstop = false;
    }
    Ok(Some(program))
}

/// For a `#!` script: the capsule's interpreter runs the script's capsule path, as
/// the kernel would have run the interpreter with the path given to exec.
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
