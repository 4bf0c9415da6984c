//! `execl`, `execlp` and `execle` take their arguments as a variadic list, which
//! stable Rust cannot receive. A few lines of assembly per architecture (a naked
//! function) store the argument registers in an array and pass it, with the address
//! of the arguments the caller put on the stack, to `collect`, which walks them the
//! way `va_arg` would for pointer arguments. (C via the `cc` crate would be simpler,
//! but a Rust cdylib does not export symbols defined in linked C objects.)

use std::ffi::{c_char, c_int};
use std::ptr;

use super::hooks::{execv, execvp};

const KIND_EXECL: c_int = 0;
const KIND_EXECLP: c_int = 1;
const KIND_EXECLE: c_int = 2;

/// Variadic pointer arguments that arrive in registers after the first fixed one.
#[cfg(target_arch = "x86_64")]
const REGISTER_ARGS: usize = 5; // rsi, rdx, rcx, r8, r9
#[cfg(target_arch = "aarch64")]
const REGISTER_ARGS: usize = 7; // x1 .. x7

/// The n-th pointer argument after the fixed first one (n = 0 is `arg0`).
///
/// # Safety
/// `regs` holds REGISTER_ARGS saved registers and `stack` is where the caller put
/// the remaining arguments; `n` must not pass the list's terminating NULL (+1 for
/// execle's envp).
unsafe fn arg(regs: *const *const c_char, stack: *const *const c_char, n: usize) -> *const c_char {
    // SAFETY: `regs` and `stack` are the saved registers and the caller's stack arguments,
    // and `n` stays within the list (the `# Safety` contract).
    unsafe {
        if n < REGISTER_ARGS {
            *regs.add(n)
        } else {
            *stack.add(n - REGISTER_ARGS)
        }
    }
}

/// Builds `argv` from the saved variadic arguments and calls the matching exec hook.
unsafe extern "C" fn collect(
    kind: c_int,
    path: *const c_char,
    regs: *const *const c_char,
    stack: *const *const c_char,
) -> c_int {
    // SAFETY: called only from the naked entry points below with the registers and stack
    // the program called execl* with: the list ends in NULL (then envp for execle), so
    // every `arg` index read stays in it; the mapping is made here for `argc + 1` pointers.
    unsafe {
        let mut argc = 0usize;
        while !arg(regs, stack, argc).is_null() {
            argc += 1;
            if argc > 1 << 20 {
                return crate::hook::fail(libc::E2BIG);
            }
        }
        const STACK_ARGV: usize = 256;
        let mut on_stack = [ptr::null::<c_char>(); STACK_ARGV];
        let mut mapped: *mut libc::c_void = ptr::null_mut();
        let bytes = (argc + 1) * std::mem::size_of::<*const c_char>();
        let argv: &mut [*const c_char] = if argc < STACK_ARGV {
            &mut on_stack[..]
        } else {
            mapped = libc::mmap(
                ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if mapped == libc::MAP_FAILED {
                return crate::hook::fail(libc::ENOMEM);
            }
            std::slice::from_raw_parts_mut(mapped.cast(), argc + 1)
        };
        for (i, slot) in argv.iter_mut().take(argc).enumerate() {
            *slot = arg(regs, stack, i);
        }
        argv[argc] = ptr::null();
        let rc = match kind {
            KIND_EXECLP => execvp(path, argv.as_ptr()),
            KIND_EXECLE => {
                let envp = arg(regs, stack, argc + 1) as *const *const c_char;
                super::hooks::execve(path, argv.as_ptr(), envp)
            }
            _ => execv(path, argv.as_ptr()),
        };
        if !mapped.is_null() {
            crate::hook::errno_kept(|| libc::munmap(mapped, bytes));
        }
        rc
    }
}

macro_rules! variadic_exec {
    ($name:ident, $kind:expr) => {
        /// Variadic exec entry point; see the module documentation.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, arg0: *const c_char) -> c_int {
            // At entry: rdi = path, rsi = arg0, rdx rcx r8 r9 = next arguments,
            // [rsp] = return address, [rsp + 8] = the arguments after those.
            core::arch::naked_asm!(
                "push rbp",
                "mov rbp, rsp",
                "sub rsp, 48",
                "mov [rsp], rsi",
                "mov [rsp + 8], rdx",
                "mov [rsp + 16], rcx",
                "mov [rsp + 24], r8",
                "mov [rsp + 32], r9",
                "mov rsi, rdi",
                "mov edi, {kind}",
                "mov rdx, rsp",
                "lea rcx, [rbp + 16]",
                "call {collect}",
                "leave",
                "ret",
                kind = const $kind,
                collect = sym collect,
            )
        }

        /// Variadic exec entry point; see the module documentation.
        #[cfg(target_arch = "aarch64")]
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, arg0: *const c_char) -> c_int {
            // At entry: x0 = path, x1 = arg0, x2..x7 = next arguments,
            // [sp] = the arguments after those.
            core::arch::naked_asm!(
                "stp x29, x30, [sp, #-80]!",
                "mov x29, sp",
                "stp x1, x2, [sp, #16]",
                "stp x3, x4, [sp, #32]",
                "stp x5, x6, [sp, #48]",
                "str x7, [sp, #64]",
                "mov x1, x0",
                "mov w0, #{kind}",
                "add x2, sp, #16",
                "add x3, x29, #80",
                "bl {collect}",
                "ldp x29, x30, [sp], #80",
                "ret",
                kind = const $kind,
                collect = sym collect,
            )
        }
    };
}

/// The entry points of this file, exported by hand rather than by `hook!`
/// (`coverage.rs`).
pub(crate) const HOOKS: &[Option<crate::coverage::Hook>] = &[
    Some(crate::coverage::Hook::new(
        "execl",
        crate::coverage::Support::Full,
    )),
    Some(crate::coverage::Hook::new(
        "execlp",
        crate::coverage::Support::Full,
    )),
    Some(crate::coverage::Hook::new(
        "execle",
        crate::coverage::Support::Full,
    )),
];

variadic_exec!(execl, KIND_EXECL);
variadic_exec!(execlp, KIND_EXECLP);
variadic_exec!(execle, KIND_EXECLE);
