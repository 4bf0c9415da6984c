//! What the shim intercepts and how well, one table per replica (as gVisor lists
//! its system calls). A test checks that every exported symbol is listed here and
//! that the README's coverage table agrees.

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

/// Every replica's table, with the replica's name.
pub fn all() -> [(&'static str, &'static [Hook]); 7] {
    [
        ("fs", crate::fs::HOOKS),
        ("identity", crate::identity::HOOKS),
        ("uts", crate::uts::HOOKS),
        ("time", crate::time::HOOKS),
        ("exec", crate::exec::HOOKS),
        ("net", crate::net::HOOKS),
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
            for hook in hooks {
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
