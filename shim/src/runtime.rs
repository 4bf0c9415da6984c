//! The shim's process-wide runtime: configuration read once at load, the shim's own
//! path (for children's `LD_PRELOAD`), and the capsule-wide shared state.
//!
//! Initialisation happens in the library constructor, or earlier in whichever hook
//! runs first (other libraries' constructors may call hooks before ours runs). It
//! always runs inside the shim guard, so the libc calls it makes reach the real
//! functions. A malformed setting ends the process before `main` with status 125: a
//! capsule fails closed and never runs a program unvirtualised.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use capsule_config::{keys, layout, Config, UserDb};

use crate::hook::Guard;
use crate::shared::{self, Shared};
use crate::{identity, log, time, uts};

/// Exit status of a process whose capsule settings are unusable (as `docker run`'s).
pub const EXIT_BAD_CONFIG: i32 = 125;

pub struct Runtime {
    pub config: Config,
    /// Absolute path of libcapsule.so, NUL-terminated.
    pub shim_path: CString,
    /// The shim for the other C library (`libcapsule-musl.so` beside `libcapsule.so`,
    /// and the reverse), given to programs of that library at exec.
    pub other_shim: CString,
    /// `capsule-trampoline` beside the shim, which runs static programs under the
    /// system-call backstop (see backstop/); empty when it is missing.
    pub trampoline: CString,
    /// The configuration entries that never change during the process (name, state
    /// directory, layers, logging), ready for a child's environment.
    pub static_env: Vec<CString>,
    /// State shared by every process of the capsule (a mapping in its state
    /// directory), or process-local state when the capsule has no state directory.
    pub shared: &'static Shared,
    /// The file-system replica's layers; `None` when it is off.
    pub fs: Option<crate::fs::Layers>,
    /// The network replica; `None` when it is off.
    pub net: Option<crate::net::Net>,
}

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);

struct Slot(UnsafeCell<MaybeUninit<Runtime>>);
// SAFETY: written once by the thread that moved STATE from UNINIT to BUSY, read only
// after STATE is READY (release/acquire).
unsafe impl Sync for Slot {}
static RUNTIME: Slot = Slot(UnsafeCell::new(MaybeUninit::uninit()));

/// The runtime, initialising it if this is the first call. Must be called inside the
/// shim guard.
#[inline]
pub fn get() -> &'static Runtime {
    if STATE.load(Ordering::Acquire) != READY {
        init_slow();
    }
    // SAFETY: STATE is READY, so RUNTIME was fully written before the release store.
    unsafe { (*RUNTIME.0.get()).assume_init_ref() }
}

/// Whether the runtime is initialised.
#[inline]
pub fn is_ready() -> bool {
    STATE.load(Ordering::Acquire) == READY
}

/// Makes sure the runtime exists (hooks call this before their replica's logic).
#[inline]
pub fn ensure_ready() {
    if STATE.load(Ordering::Acquire) != READY {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    match STATE.compare_exchange(UNINIT, BUSY, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // Before the shim's first own call: a supervisor above this process
            // (the system-call backstop) lets its calls through from now on, and
            // those of its fork children.
            crate::backstop::trust::announce_shim();
            record_own_pid();
            // SAFETY: registers a handler that only makes two system calls.
            unsafe { libc::pthread_atfork(None, None, Some(in_fork_child)) };
            let runtime = build();
            // SAFETY: we own the slot (STATE is BUSY and only we moved it there).
            unsafe { (*RUNTIME.0.get()).write(runtime) };
            STATE.store(READY, Ordering::Release);
            log::debug_startup(get());
            // Needs the runtime (it records changes in the shared state).
            if let Some(layers) = &get().fs {
                crate::fs::prepare_volumes(layers);
            }
        }
        Err(_) => {
            // Another thread is initialising (this thread cannot be: it holds the guard
            // and initialisation never calls back into a hook's logic). Wait for it.
            while STATE.load(Ordering::Acquire) != READY {
                // SAFETY: plain system call.
                unsafe { libc::sched_yield() };
            }
        }
    }
}

/// The process this shim's memory belongs to: set at start and in every fork
/// child (by the fork handler), never in a child that shares its parent's memory
/// (`vfork`, `posix_spawn`'s `CLONE_VM`), where no fork handler runs. 0: unknown.
static OWN_PID: AtomicI32 = AtomicI32::new(0);

fn record_own_pid() {
    // SAFETY: plain system call.
    OWN_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

/// The fork handler of a child: it owns its memory, and announces its shim.
extern "C" fn in_fork_child() {
    record_own_pid();
    crate::backstop::trust::announce_in_child();
}

/// Whether this process shares its parent's memory (a `vfork` child, or one of
/// `posix_spawn`): it must not allocate, since the heap is its parent's (and an
/// exec that succeeds would leak what it took). Cheap when the pid is the recorded
/// one; otherwise the kernel compares the two memories, so that a child forked by
/// a raw system call (no fork handler) is not taken for one.
pub fn in_shared_memory_child() -> bool {
    const KCMP_VM: c_int = 1;
    let own = OWN_PID.load(Ordering::Relaxed);
    // SAFETY: plain system call.
    let pid = unsafe { libc::getpid() };
    if own == 0 || own == pid {
        return false;
    }
    // SAFETY: kcmp compares two processes' memory; integer arguments only.
    match unsafe { libc::syscall(libc::SYS_kcmp, pid, own, KCMP_VM, 0, 0) } {
        0 => true,
        // Another memory: a raw fork's child, which owns its memory from now on.
        r if r > 0 => {
            OWN_PID.store(pid, Ordering::Relaxed);
            false
        }
        // The kernel cannot tell (no kcmp, or not allowed): assume the worst.
        _ => true,
    }
}

/// Reads the process environment without std's lock (we may run before main).
fn environment() -> Vec<(String, String)> {
    extern "C" {
        static environ: *const *const c_char;
    }
    let mut out = Vec::new();
    // SAFETY: environ is a NULL-terminated array of NUL-terminated strings, set up by
    // the dynamic loader before any constructor runs.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            let entry = CStr::from_ptr(*p).to_bytes();
            // Only the capsule's own entries are decoded (a program start has dozens
            // of others).
            if entry.starts_with(b"CAPSULE_") {
                if let Some((k, v)) = String::from_utf8_lossy(entry).split_once('=') {
                    out.push((k.to_string(), v.to_string()));
                }
            }
            p = p.add(1);
        }
    }
    out
}

/// Ends the process with one line on stderr; control characters of the message (a
/// newline in a setting's value…) are escaped, so the refusal stays one line.
fn fail(message: &str) -> ! {
    let mut line = String::from("capsule: ");
    for c in message.chars() {
        if c.is_control() {
            line.extend(c.escape_debug());
        } else {
            line.push(c);
        }
    }
    line.push('\n');
    // SAFETY: write(2) of a valid buffer, then _exit: nothing of the program has run.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(EXIT_BAD_CONFIG)
    }
}

/// The real time, read with a raw system call so that no hook can shift it.
pub fn real_time_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn build() -> Runtime {
    let _guard = Guard::enter();
    let env = environment();
    let mut vars: Vec<(String, String)> = Vec::new();
    if let Some((_, path)) = env.iter().find(|(k, _)| k == keys::CONFIG) {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| fail(&format!("{}={path}: cannot read: {e}", keys::CONFIG)));
        let pairs = capsule_config::parse_config_file(&text)
            .unwrap_or_else(|e| fail(&format!("{}={path}: {e}", keys::CONFIG)));
        // A key the configuration does not know is a mistake (a typo, or a file from
        // another version), never silently ignored.
        if let Some((key, _)) = pairs
            .iter()
            .find(|(k, _)| !keys::ALL.contains(&k.as_str()) || k == keys::CONFIG)
        {
            fail(&format!("{}={path}: unknown key {key:?}", keys::CONFIG));
        }
        vars.extend(pairs);
    }
    vars.extend(env);
    // The real time only turns CAPSULE_TIME_AT into an offset: read the clock (a
    // system call) only then.
    let now = if vars.iter().any(|(k, _)| k == keys::TIME_AT) {
        real_time_ns()
    } else {
        0
    };
    let config = Config::from_vars(
        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        now,
        || UserDb::load(""),
    )
    .unwrap_or_else(|e| fail(&e.to_string()));
    if let Some(root) = &config.fs.root {
        // Without it the capsule would run over an empty view.
        match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => fail(&format!("{}={root:?}: not a directory", keys::ROOT)),
            Err(e) => fail(&format!("{}={root:?}: {e}", keys::ROOT)),
        }
    }

    let shared = match &config.state_dir {
        Some(dir) => shared::map(dir).unwrap_or_else(|e| {
            fail(&format!(
                "{}={dir}: cannot open the capsule's shared state: {e}",
                keys::STATE_DIR
            ))
        }),
        None => shared::local(),
    };

    // Everything but the settings a process can change (rendered at each exec by
    // exec::env from their current values).
    const DYNAMIC: &[&str] = &[
        keys::HOSTNAME,
        keys::DOMAINNAME,
        keys::UID,
        keys::GID,
        keys::GROUPS,
        keys::TIME_OFFSET,
    ];
    let static_env: Vec<CString> = config
        .to_vars()
        .into_iter()
        .filter(|(k, _)| !DYNAMIC.contains(k))
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect();

    let fs = config.fs.is_active().then(|| {
        let mut layers = crate::fs::Layers::from_config(&config.fs);
        layers.members = members(&config, &static_env);
        layers
    });
    if fs.is_some() {
        crate::fs::cache::init();
        crate::fs::owner::init();
    }
    let net = crate::net::Net::from_config(&config);
    let own = own_path();
    let runtime = Runtime {
        fs,
        net,
        other_shim: other_shim(&own),
        trampoline: beside(&own, crate::backstop::TRAMPOLINE_FILE.as_bytes()),
        shim_path: own,
        static_env,
        shared,
        config,
    };
    log::init(&runtime);
    identity::init(&runtime);
    uts::init(&runtime);
    time::init(&runtime);
    runtime
}

/// The environment entries that mark a process of this capsule (see
/// `fs::Layers::members`): the settings every process of it is started with (each
/// exec passes `static_env` on), and the loader's `CAPSULE_CONFIG` of its first one.
fn members(config: &Config, static_env: &[CString]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = static_env
        .iter()
        .map(|e| e.as_bytes().to_vec())
        .filter(|e| {
            e.starts_with(format!("{}=", keys::STATE_DIR).as_bytes())
                || e.starts_with(format!("{}=", keys::UPPER).as_bytes())
        })
        .collect();
    if let Some(dir) = &config.state_dir {
        out.push(
            format!(
                "{}={}/{}",
                keys::CONFIG,
                dir.trim_end_matches('/'),
                layout::CONFIG_FILE
            )
            .into_bytes(),
        );
    }
    out
}

/// The other C library's shim: the same directory, the other file name.
fn other_shim(own: &CStr) -> CString {
    const GLIBC: &[u8] = b"libcapsule.so";
    const MUSL: &[u8] = b"libcapsule-musl.so";
    let other = if cfg!(target_env = "musl") {
        GLIBC
    } else {
        MUSL
    };
    beside(own, other)
}

/// The file `name` in the directory of `own` (empty if it does not exist, for
/// the trampoline).
fn beside(own: &CStr, name: &[u8]) -> CString {
    let own = own.to_bytes();
    let base = own.rsplit(|&b| b == b'/').next().unwrap_or(own);
    let dir = &own[..own.len() - base.len()];
    let path = CString::new([dir, name].concat()).unwrap_or_default();
    if name == crate::backstop::TRAMPOLINE_FILE.as_bytes() {
        // SAFETY: access(2) on a NUL-terminated path.
        if unsafe { libc::access(path.as_ptr(), libc::X_OK) } != 0 {
            return CString::default();
        }
    }
    path
}

/// The absolute path this library was loaded from.
fn own_path() -> CString {
    let name = loaded_name();
    if name.is_null() {
        return CString::from(c"libcapsule.so");
    }
    // SAFETY: `name` is the dynamic loader's NUL-terminated name of this library,
    // alive as long as the library is loaded; realpath returns a malloc'd string we
    // own.
    unsafe {
        // LD_PRELOAD entries are normally absolute already: keep them as they are
        // (realpath costs several system calls at every program start).
        if *name == b'/' as c_char {
            return CStr::from_ptr(name).to_owned();
        }
        let resolved = libc::realpath(name, std::ptr::null_mut());
        if resolved.is_null() {
            return CStr::from_ptr(name).to_owned();
        }
        let owned = CStr::from_ptr(resolved).to_owned();
        libc::free(resolved.cast());
        owned
    }
}

/// The name the dynamic loader gave this library (as `dladdr` reports it), or null.
/// Found with `dl_iterate_phdr`, which visits the few loaded objects, rather than
/// `dladdr`, which also looks for the nearest symbol through every exported one
/// (~8,000 instructions at each program start).
fn loaded_name() -> *const c_char {
    struct Search {
        anchor: usize,
        name: *const c_char,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> c_int {
        // SAFETY: `data` is the `Search` below and `info` the loader's description of
        // one object, valid for this call; `dlpi_phdr` has `dlpi_phnum` entries.
        unsafe {
            let search = &mut *data.cast::<Search>();
            let info = &*info;
            for i in 0..usize::from(info.dlpi_phnum) {
                let ph = &*info.dlpi_phdr.add(i);
                let start = (info.dlpi_addr as usize).wrapping_add(ph.p_vaddr as usize);
                if ph.p_type == libc::PT_LOAD
                    && (start..start.wrapping_add(ph.p_memsz as usize)).contains(&search.anchor)
                {
                    search.name = info.dlpi_name;
                    return 1;
                }
            }
        }
        0
    }
    let mut search = Search {
        anchor: loaded_name as *const () as usize,
        name: std::ptr::null(),
    };
    // SAFETY: `visit` only reads the loader's descriptions and writes `search`, which
    // outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    search.name
}

/// The library constructor: initialise before `main`, so that a malformed setting
/// stops the program before it runs.
/// glibc calls `.init_array` entries with `argc`, `argv` and `envp`.
#[cfg(not(test))]
extern "C" fn constructor(argc: c_int, argv: *mut *mut c_char, envp: *mut *mut c_char) {
    if let Some(_guard) = Guard::enter() {
        ensure_ready();
        // The trampoline of a static program never returns (see backstop/).
        #[cfg(target_env = "gnu")]
        // SAFETY: the dynamic loader's own argc, argv and envp for this process.
        unsafe {
            crate::backstop::run_if_trampoline(argc, argv, envp)
        };
        if get().fs.is_some() {
            crate::backstop::restore_cwd();
        }
        // A program of a capsule root started by the kernel runs again through the
        // root's own dynamic loader (see exec/interp.rs).
        crate::exec::interp::run_first_program_with_roots_loader();
        // SAFETY: the dynamic loader's own argc, argv and envp for this process
        // (glibc passes them to constructors; musl passes nothing, so a musl process
        // keeps the command line the kernel gave it).
        #[cfg(target_env = "gnu")]
        unsafe {
            crate::exec::cmdline::show_program_argv(argc, argv, envp)
        };
        #[cfg(not(target_env = "gnu"))]
        let _ = (argc, argv, envp);
        crate::exec::env::hide_settings();
    }
}

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) = constructor;
