//! What the shim intercepts and how well (as gVisor lists its system calls): each
//! `hook!` invocation emits the table of the hooks it declares, support level
//! included, so a hook is declared in one place. A test checks that every exported
//! symbol is listed and that the README's coverage table agrees.

use std::ffi::c_char;

#[derive(Clone, Copy, Debug)]
pub enum Support {
    /// Behaves as the replica promises in every case.
    Full,
    /// Works, with the stated limit.
    Partial(&'static str),
}

pub struct Hook {
    pub name: &'static str,
    pub support: Support,
}

impl Hook {
    pub const fn new(name: &'static str, support: Support) -> Hook {
        Hook { name, support }
    }
}

/// Every table, with its replica's name: the ones `hook!` emits for each file of
/// hooks, and those of the few entry points exported by hand. A `None` row is a hook
/// its file declares that this build leaves out.
#[cfg(not(test))]
const ALL: &[(&str, &[Option<Hook>])] = &[
    ("fs", crate::fs::hooks::open::HOOKS),
    ("fs", crate::fs::hooks::stat::HOOKS),
    ("fs", crate::fs::hooks::names::HOOKS),
    ("fs", crate::fs::hooks::attr::HOOKS),
    ("fs", crate::fs::hooks::cwd::HOOKS),
    ("fs", crate::fs::hooks::xattr::HOOKS),
    ("fs", crate::fs::hooks::fd::HOOKS),
    ("fs", crate::fs::hooks::dir::HOOKS),
    ("fs", crate::fs::hooks::tmp::HOOKS),
    ("fs", crate::fs::hooks::more::HOOKS),
    ("identity", crate::identity::hooks::HOOKS),
    ("identity", crate::identity::nss_hooks::HOOKS),
    ("uts", crate::uts::hooks::HOOKS),
    ("time", crate::time::hooks::HOOKS),
    ("exec", crate::exec::hooks::HOOKS),
    ("exec", crate::exec::hooks::BY_HAND),
    ("exec", crate::exec::variadic::HOOKS),
    ("net", crate::net::hooks::HOOKS),
    ("syscall", crate::syscall::HOOKS),
];

/// The tables as text, one `replica<TAB>symbol<TAB>support[<TAB>limit]` line per
/// hook. For tests and documentation tools, which `dlopen` the shim and call it;
/// never called by a hook.
///
/// The text is made at compile time: the tables themselves (two string pointers a
/// hook) would be data with a load-time relocation each, about 12 KB of pages that
/// every process of a capsule copied while loading the shim.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn capsule_hook_table() -> *const c_char {
    const LEN: usize = render(&mut []);
    static TEXT: [u8; LEN + 1] = {
        let mut text = [0u8; LEN + 1];
        render(&mut text);
        text
    };
    TEXT.as_ptr().cast()
}

/// Writes the tables' text into `out` as far as it has room; returns the text's
/// full length.
#[cfg(not(test))]
const fn render(out: &mut [u8]) -> usize {
    let mut at = 0;
    let mut t = 0;
    while t < ALL.len() {
        let (replica, hooks) = ALL[t];
        let mut h = 0;
        while h < hooks.len() {
            if let Some(hook) = &hooks[h] {
                at = put(out, at, replica);
                at = put(out, at, "\t");
                at = put(out, at, hook.name);
                match hook.support {
                    Support::Full => at = put(out, at, "\tfull"),
                    Support::Partial(why) => {
                        at = put(out, at, "\tpartial\t");
                        at = put(out, at, why);
                    }
                }
                at = put(out, at, "\n");
            }
            h += 1;
        }
        t += 1;
    }
    at
}

#[cfg(not(test))]
const fn put(out: &mut [u8], mut at: usize, text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if at < out.len() {
            out[at] = bytes[i];
        }
        at += 1;
        i += 1;
    }
    at
}
