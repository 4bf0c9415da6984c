//! The machinery every hook uses: lazily resolved real functions, the re-entrancy
//! guard, errno handling, the shim-wide outcome of a replica (`Outcome`, `Skip`)
//! with its one conversion to each C return convention (`result`, `fail`), and the
//! `hook!` macro that declares an exported hook.
//!
//! Rules (README, "How it is built"):
//! - the real function is found with `dlsym(RTLD_NEXT)` (or `dlvsym` for a given
//!   symbol version) and cached in an `AtomicPtr`; resolution is racy but idempotent,
//!   never behind a blocking once-cell, because `dlsym` may call `calloc` and re-enter;
//! - a `const`-initialised thread-local flag marks "inside the shim": a call that
//!   arrives while it is set (from Rust std, from `dlsym`, from libc internals we
//!   call) goes straight to the real function. TLS access goes through
//!   `__tls_get_addr`, which is not guaranteed async-signal-safe, but glibc's
//!   implementation does not allocate for the static TLS block a preloaded library
//!   lives in;
//! - nothing here panics or allocates.

use std::cell::Cell;
use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

thread_local! {
    static IN_SHIM: Cell<bool> = const { Cell::new(false) };
}

/// Held while the shim does its own work on this thread.
pub struct Guard(());

impl Guard {
    /// Enters the shim; `None` when this thread is already inside it.
    #[inline]
    pub fn enter() -> Option<Guard> {
        IN_SHIM.with(|flag| {
            if flag.get() {
                None
            } else {
                flag.set(true);
                Some(Guard(()))
            }
        })
    }
}

/// Leaves the shim for the duration of `f` (the guard is as before if `f` returns).
///
/// Exec hooks call the real `execve` this way: in a `vfork` child the thread-local
/// flag is the parent thread's, and an `execve` that succeeds never returns to clear
/// it, which would leave the parent outside its capsule for good.
#[inline]
pub fn outside<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_SHIM.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(IN_SHIM.with(|flag| flag.replace(false)));
    f()
}

/// Whether this thread is inside the shim right now.
#[inline]
pub fn inside() -> bool {
    IN_SHIM.with(Cell::get)
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        IN_SHIM.with(|flag| flag.set(false));
    }
}

/// A real libc function, resolved on first use.
///
/// Only the address is stored: the name is given at the one place each `Real` is
/// read. A name pointer in the static would need a load-time relocation, and with one
/// `Real` per hook those statics filled five pages of `.data` that every process
/// copied at load; all-zero statics go to `.bss`, touched only when a hook runs.
pub struct Real {
    ptr: AtomicPtr<c_void>,
}

/// Marks a resolution that found nothing (so it is not retried on every call).
const MISSING: *mut c_void = ptr::dangling_mut::<c_void>();

impl Real {
    pub const fn new() -> Real {
        Real {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The address of the real function `name`, or `None` if no later object defines
    /// it.
    #[inline]
    pub fn get(&self, name: &'static CStr) -> Option<*mut c_void> {
        self.get_versioned(name, None)
    }

    /// As `get`, of a given symbol version (for symbols glibc keeps several of) when
    /// `version` is given.
    #[inline]
    pub fn get_versioned(
        &self,
        name: &'static CStr,
        version: Option<&'static CStr>,
    ) -> Option<*mut c_void> {
        let p = self.ptr.load(Ordering::Relaxed);
        if p.is_null() {
            self.resolve(name, version)
        } else if p == MISSING {
            None
        } else {
            Some(p)
        }
    }

    #[cold]
    #[inline(never)]
    fn resolve(&self, name: &CStr, version: Option<&CStr>) -> Option<*mut c_void> {
        // dlsym may call malloc and other hooked functions: mark the thread as inside
        // the shim for the duration (a no-op when the caller already holds the guard).
        let _guard = Guard::enter();
        // SAFETY: RTLD_NEXT resolution from code inside this library; the names are
        // NUL-terminated static strings.
        let found = unsafe {
            match version {
                // musl has one version of every symbol and no dlvsym.
                #[cfg(target_env = "gnu")]
                Some(v) => {
                    let p = libc::dlvsym(libc::RTLD_NEXT, name.as_ptr(), v.as_ptr());
                    if p.is_null() {
                        libc::dlsym(libc::RTLD_NEXT, name.as_ptr())
                    } else {
                        p
                    }
                }
                _ => libc::dlsym(libc::RTLD_NEXT, name.as_ptr()),
            }
        };
        self.ptr.store(
            if found.is_null() { MISSING } else { found },
            Ordering::Relaxed,
        );
        (!found.is_null()).then_some(found)
    }
}

/// The calling thread's `errno`.
#[inline]
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[inline]
pub fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value }
}

/// Why a replica does not answer a call with a value of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Fail the way the kernel would, with this errno.
    Errno(c_int),
    /// The replica has nothing to change: call the real function with the caller's
    /// own arguments.
    Pass,
}

impl From<c_int> for Skip {
    fn from(e: c_int) -> Skip {
        Skip::Errno(e)
    }
}

/// What a replica decided about a call, shim-wide: `Ok(value)` answers it (errno as
/// the caller found it), `Err(Skip::Pass)` calls the real function, `Err(Skip::Errno)`
/// fails. A `Result`, so that `?` carries a refusal out of the logic.
pub type Outcome<T> = Result<T, Skip>;

/// A C return convention: the value a call of this return type gives when it fails
/// with errno set. One implementation per convention the hooks use.
pub trait Convention: Sized {
    const FAILED: Self;
}

/// `int`: -1 and errno.
impl Convention for c_int {
    const FAILED: c_int = -1;
}

/// `ssize_t` (and `long` where it is the same type): -1 and errno.
impl Convention for isize {
    const FAILED: isize = -1;
}

/// `long` (a distinct type from `ssize_t` in Rust): -1 and errno.
impl Convention for i64 {
    const FAILED: i64 = -1;
}

/// `uid_t`/`gid_t`: `(uid_t) -1` and errno.
impl Convention for u32 {
    const FAILED: u32 = u32::MAX;
}

/// Pointers (`FILE *`, `DIR *`, `char *`, `void *`): NULL and errno.
impl<T> Convention for *mut T {
    const FAILED: *mut T = ptr::null_mut();
}

/// Fails a call the way its convention says: errno set to `e`, the failure value
/// returned.
#[inline]
pub fn fail<R: Convention>(e: c_int) -> R {
    set_errno(e);
    R::FAILED
}

/// Turns a replica's outcome into the C return value: the answer, the real call, or
/// the convention's failure with errno set.
#[inline]
pub fn result<R: Convention>(outcome: Outcome<R>, real: impl FnOnce() -> R) -> R {
    match outcome {
        Ok(v) => v,
        Err(Skip::Pass) => real(),
        Err(Skip::Errno(e)) => fail(e),
    }
}

/// Runs `f`, a call in the `-1`-and-errno convention, and gives its answer in the
/// direct-code one (`posix_spawn_file_actions_*`): the error number returned, errno
/// as the caller had it.
#[inline]
pub fn error_code(f: impl FnOnce() -> c_int) -> c_int {
    let saved = errno();
    let rc = f();
    if rc != -1 {
        return rc;
    }
    let e = errno();
    set_errno(saved);
    e
}

/// Runs `f` and leaves errno as the caller had it: a replica's own lookups fail with
/// `ENOENT` and the like as a matter of course, and a call that goes ahead must see
/// errno as the real call leaves it. An `Err(Skip::Errno)` that `f` returns still
/// reaches the caller through `result`.
#[inline]
pub fn errno_kept<T>(f: impl FnOnce() -> T) -> T {
    let saved = errno();
    let out = f();
    set_errno(saved);
    out
}

/// Declares exported hooks.
///
/// ```ignore
/// hook! {
///     /// doc
///     fn getuid() -> libc::uid_t, missing: libc::uid_t::MAX;
///     |real| identity::ops::getuid(real)
/// }
/// ```
/// emits `#[no_mangle] pub unsafe extern "C" fn getuid()`. `real` is the real
/// function, typed; the body runs inside the shim guard, and when the thread is
/// already inside the shim the real function is called directly. If the real
/// function cannot be found the hook fails with `ENOSYS` and returns `missing`.
/// `version: "GLIBC_x"` selects a symbol version with `dlvsym`. `support:
/// Partial("limit")` states how well the hook does what its replica promises (Full
/// when left out). A body marked `reads_state |real| …` only reads the shim's state
/// and calls nothing but `real`: it runs without the guard once the runtime is ready.
///
/// Each invocation also emits `HOOKS`, the coverage table of the hooks it declares
/// (`coverage.rs`): a hook is declared in one place. A row is `None` where the
/// entry's own attributes (a `cfg`) leave its hook out of the build.
macro_rules! hook {
    (@entries [$wrap:ident] $(
        $(#[$meta:meta])*
        fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty, missing: $missing:expr
            $(, version: $version:literal)? $(, support: $support:expr)?;
        $($mode:ident)? |$real:ident| $body:expr
    )*) => {
        /// The hooks of this file and how well each is supported (`coverage.rs`).
        pub(crate) const HOOKS: &[Option<$crate::coverage::Hook>] = &[$({
            #[allow(dead_code)]
            const ROW: Option<$crate::coverage::Hook> = None;
            {
                $(#[$meta])*
                const ROW: Option<$crate::coverage::Hook> = Some($crate::coverage::Hook::new(
                    stringify!($name),
                    hook!(@support $($support)?),
                ));
                ROW
            }
        }),*];
    $(
        $(#[$meta])*
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            static REAL_FUNCTION: $crate::hook::Real = $crate::hook::Real::new();
            let Some(address) =
                REAL_FUNCTION.get_versioned(hook!(@name $name), hook!(@version $($version)?))
            else {
                // Not `fail`: `missing` is the hook's own (an `EAI_*` code, say).
                $crate::hook::set_errno(libc::ENOSYS);
                return $missing;
            };
            let $real: unsafe extern "C" fn($($ty),*) -> $ret =
                // SAFETY: the symbol found by dlsym under this name has this C signature.
                unsafe { ::core::mem::transmute(address) };
            // A hook that only reads the shim's state (never calls a hooked function)
            // needs no guard once the runtime exists: it then also answers in a
            // signal handler that interrupted another hook.
            if hook!(@reads_state $($mode)?) && $crate::runtime::is_ready() {
                return hook!(@body $wrap $body);
            }
            match $crate::hook::Guard::enter() {
                // SAFETY: the caller's arguments go unchanged to the real function
                // of the same signature, under that function's own contract.
                None => unsafe { $real($($arg),*) },
                Some(_guard) => {
                    $crate::runtime::ensure_ready();
                    hook!(@body $wrap $body)
                }
            }
        }
    )*};
    (@body plain $body:expr) => { $body };
    (@support) => { $crate::coverage::Support::Full };
    (@support $support:expr) => {{
        #[allow(unused_imports)]
        use $crate::coverage::Support::*;
        $support
    }};
    (@reads_state) => { false };
    (@reads_state reads_state) => { true };
    (@name $name:ident) => {
        match ::core::ffi::CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
            Ok(name) => name,
            Err(_) => panic!("hook name"),
        }
    };
    (@version) => { None };
    (@version $version:literal) => {
        match ::core::ffi::CStr::from_bytes_with_nul(concat!($version, "\0").as_bytes()) {
            Ok(version) => Some(version),
            Err(_) => panic!("hook version"),
        }
    };
    ($($entries:tt)*) => { hook!(@entries [plain] $($entries)*); };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_convention_fails_with_its_own_value_and_errno() {
        set_errno(0);
        assert_eq!(fail::<c_int>(libc::ENOENT), -1);
        assert_eq!(errno(), libc::ENOENT);
        assert_eq!(fail::<isize>(libc::EBADF), -1);
        assert_eq!(errno(), libc::EBADF);
        assert_eq!(fail::<u32>(libc::EINVAL), u32::MAX);
        assert!(fail::<*mut libc::FILE>(libc::EMFILE).is_null());
        assert_eq!(errno(), libc::EMFILE);
    }

    #[test]
    fn result_answers_passes_or_fails() {
        set_errno(7);
        assert_eq!(result(Ok(3), || -> c_int { panic!("no real call") }), 3);
        assert_eq!(errno(), 7, "an answer leaves errno as it was");
        assert_eq!(result::<c_int>(Err(Skip::Pass), || 42), 42);
        assert_eq!(result::<c_int>(Err(Skip::Errno(libc::EROFS)), || 42), -1);
        assert_eq!(errno(), libc::EROFS);
        let got: Outcome<()> = Err(libc::EXDEV.into());
        assert!(got == Err(Skip::Errno(libc::EXDEV)));
    }

    #[test]
    fn errno_kept_and_error_code_leave_the_callers_errno() {
        set_errno(5);
        let v = errno_kept(|| {
            set_errno(libc::ENOENT);
            9
        });
        assert_eq!((v, errno()), (9, 5));
        assert_eq!(error_code(|| fail(libc::EPERM)), libc::EPERM);
        assert_eq!(errno(), 5);
        assert_eq!(error_code(|| 0), 0);
    }
}
