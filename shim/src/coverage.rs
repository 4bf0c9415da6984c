//! What the shim intercepts and how well (as gVisor lists its system calls): each
//! `hook!` invocation emits the table of the hooks it declares, support level
//! included, so a hook is declared in one place. A test checks that every exported
//! symbol is listed and that the README's coverage table agrees.

use std::ffi::c_char;
use std::sync::OnceLock;

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
pub fn all() -> &'static [(&'static str, &'static [Option<Hook>])] {
    &[
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
    ]
}

/// The tables as text, one `replica<TAB>symbol<TAB>support[<TAB>limit]` line per
/// hook. For tests and documentation tools, which `dlopen` the shim and call it;
/// never called by a hook.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn capsule_hook_table() -> *const c_char {
    static TEXT: OnceLock<Vec<u8>> = OnceLock::new();
    TEXT.get_or_init(|| {
        let _guard = crate::hook::Guard::enter();
        let mut out = String::new();
        for (replica, hooks) in all() {
            for hook in hooks.iter().flatten() {
                let support = match hook.support {
                    Support::Full => "full".to_string(),
                    Support::Partial(why) => format!("partial\t{why}"),
                };
                out.push_str(&format!("{replica}\t{}\t{support}\n", hook.name));
            }
        }
        let mut bytes = out.into_bytes();
        bytes.push(0);
        bytes
    })
    .as_ptr()
    .cast()
}
