//! The command line the host sees (`ps -o args`, `/proc/PID/cmdline`) for a program
//! a capsule runs through its root's dynamic loader ([`super::interp`]).
//!
//! The kernel shows the argument area it built at `exec`: for
//! `ld.so --argv0 ARGV0 --library-path DIRS --inhibit-cache PROGRAM ARGS`, host paths
//! and all. The program itself gets `ARGV0 ARGS` (the loader moves its `argv`), so
//! before `main` the shim writes those strings at the start of the same area, in the
//! same order, fills the rest with NUL bytes (which `ps` drops; a process allowed to
//! `PR_SET_MM` ends the area after the last string instead), and points `argv`,
//! `program_invocation_name` and `program_invocation_short_name` at the moved
//! strings. The kernel reads the area as it is now, so `ps` shows the command as the
//! program has it; the process's name (`comm`, what `pgrep` matches) becomes the
//! program's too, as after an exec of it.
//!
//! Nothing moves unless every `argv` string lies in the area the kernel reports
//! (`arg_start`, `arg_end` of `/proc/self/stat`), in increasing order: each string's
//! new place is then at or before its old one, and copying them in order never
//! overwrites one not yet copied. The area cannot grow, and needs no privilege.

use std::ffi::{c_char, c_int};

extern "C" {
    static mut program_invocation_name: *mut c_char;
    static mut program_invocation_short_name: *mut c_char;
}

/// Where AT_EXECFN's string goes when it lies in the argument area.
struct ExecFn(std::cell::UnsafeCell<[u8; libc::PATH_MAX as usize]>);

// SAFETY: written once, by the library constructor, before `main` and any thread.
unsafe impl Sync for ExecFn {}

static EXECFN: ExecFn = ExecFn(std::cell::UnsafeCell::new([0; libc::PATH_MAX as usize]));

/// Copies the string AT_EXECFN points at out of the argument area `area`, if it is
/// there, and points the auxiliary vector's entry (after `envp`'s NULL, where the
/// loader left it and `getauxval` reads it) at the copy. False when it is in the area
/// and cannot be moved.
///
/// # Safety
/// `envp` is the environment array the dynamic loader passed to the constructor.
unsafe fn keep_execfn(envp: *mut *mut c_char, area: (usize, usize)) -> bool {
    // SAFETY: `envp` is the environment array the dynamic loader passed to the constructor
    // (the `# Safety` contract), so the auxiliary vector follows its NULL and every string
    // it names is live.
    unsafe {
        let name = libc::getauxval(libc::AT_EXECFN) as usize;
        if name < area.0 || name >= area.1 {
            return true;
        }
        if envp.is_null() {
            return false;
        }
        let len = libc::strlen(name as *const c_char) + 1;
        let copy = EXECFN.0.get().cast::<u8>();
        if len > libc::PATH_MAX as usize {
            return false;
        }
        let mut p = envp;
        while !(*p).is_null() {
            p = p.add(1);
        }
        let mut aux = p.add(1).cast::<[usize; 2]>();
        while (*aux)[0] != libc::AT_NULL as usize {
            if (*aux)[0] == libc::AT_EXECFN as usize && (*aux)[1] == name {
                // SAFETY: `len` bytes of a C string into the static buffer, which is
                // larger; then the entry points at it.
                std::ptr::copy_nonoverlapping(name as *const u8, copy, len);
                (*aux)[1] = copy as usize;
                return libc::getauxval(libc::AT_EXECFN) as usize == copy as usize;
            }
            aux = aux.add(1);
        }
        false
    }
}

/// The argument area of this process, `[arg_start, arg_end)`, from `/proc/self/stat`
/// (fields 48 and 49, after the parenthesised command name).
fn argument_area() -> Option<(usize, usize)> {
    let mut buf = [0u8; 2048];
    // SAFETY: a NUL-terminated path; `buf` is valid for its length; the descriptor is
    // closed before returning. Inside the shim guard these are the real calls.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        usize::try_from(n).ok()?
    };
    let text = &buf[..n];
    let close = text.iter().rposition(|&b| b == b')')?;
    // Fields after the name start at field 3; arg_start is field 48.
    let mut fields = text[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let start = number(fields.nth(45)?)?;
    let end = number(fields.next()?.trim_ascii_end())?;
    (start < end).then_some((start, end))
}

fn number(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))?
    })
}

/// Whether the strings of `argv` may be packed at the start of `area` (see the
/// module's comment): all inside it, in increasing order, none overlapping.
///
/// # Safety
/// `argv` holds `argc` valid C strings.
unsafe fn plan(argc: usize, argv: *const *mut c_char, area: (usize, usize)) -> Option<()> {
    // SAFETY: `argv` holds `argc` valid C strings (the `# Safety` contract).
    unsafe {
        let mut next = area.0;
        for i in 0..argc {
            let s = *argv.add(i) as usize;
            let len = libc::strlen(*argv.add(i)) + 1;
            if s < next || s < area.0 || s + len > area.1 {
                return None;
            }
            next = s + len;
        }
        Some(())
    }
}

/// Rewrites the argument area to hold `argv` alone (see the module's comment), when
/// this process was started through a dynamic loader named on the command line.
/// Called once, from the library constructor, before `main`.
///
/// # Safety
/// `argc` and `argv` are what the dynamic loader passed to the constructor.
pub unsafe fn show_program_argv(argc: c_int, argv: *mut *mut c_char, envp: *mut *mut c_char) {
    // SAFETY: `argc`, `argv` and `envp` are what the dynamic loader passed to the
    // constructor (the `# Safety` contract); this runs once, before `main`, with no other
    // thread.
    unsafe {
        if argc <= 0 || argv.is_null() || super::interp::explicit_program().is_none() {
            return;
        }
        let argc = argc as usize;
        let Some(area) = argument_area() else {
            return;
        };
        if plan(argc, argv, area).is_none() {
            return;
        }
        let first = *argv as usize;
        if first == area.0 {
            return; // nothing was skipped: the area already is argv
        }
        // The loader pointed AT_EXECFN at the program's path in this area (the shim's
        // `/proc/self/exe` answers with it): it moves out first, or nothing moves.
        if !keep_execfn(envp, area) {
            return;
        }
        let old_name = program_invocation_name as usize;
        let old_short = program_invocation_short_name as usize;
        let old_argv0 = first;
        let old_argv0_len = libc::strlen(*argv) + 1;
        let mut to = area.0;
        for i in 0..argc {
            let from = *argv.add(i);
            let len = libc::strlen(from) + 1;
            // SAFETY: both ranges lie in the writable argument area; `to <= from` (the
            // plan checked the order), so a forward copy of overlapping ranges is right.
            std::ptr::copy(from, to as *mut c_char, len);
            *argv.add(i) = to as *mut c_char;
            to += len;
        }
        // SAFETY: `to..area.1` is the rest of the area, no longer holding any string.
        std::ptr::write_bytes(to as *mut u8, 0, area.1 - to);
        // Where allowed (CAP_SYS_RESOURCE), the area ends after the last string, so that
        // /proc/PID/cmdline has no padding; otherwise the NUL bytes stay (ps drops them).
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_ARG_END,
            to as libc::c_ulong,
            0,
            0,
        );
        let new_argv0 = *argv as usize;
        // glibc set these from argv[0] before any constructor ran.
        if old_name == old_argv0 {
            program_invocation_name = new_argv0 as *mut c_char;
        }
        if old_short >= old_argv0 && old_short < old_argv0 + old_argv0_len {
            program_invocation_short_name = (new_argv0 + (old_short - old_argv0)) as *mut c_char;
        }
        // The kernel named the process after the loader's file (`ps -o comm`, `pgrep`,
        // `top`): name it after the program, as an exec of it would (at most 15 bytes).
        let short = program_invocation_short_name;
        if !short.is_null() && *short != 0 {
            libc::prctl(libc::PR_SET_NAME, short as libc::c_ulong, 0, 0, 0);
        }
    }
}
