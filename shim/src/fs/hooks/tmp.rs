//! Temporary files and directories (the logic is `fs::tmp`).

use libc::{c_char, c_int, FILE};

use crate::fs::tmp::{mkdtemp_with, mktemp_with, tmpfile_with};

hook! {
    fn tmpfile() -> *mut FILE, missing: std::ptr::null_mut();
    // SAFETY: no arguments; `real` is the real tmpfile.
    |real| unsafe { tmpfile_with(|| real()) }

    fn tmpfile64() -> *mut FILE, missing: std::ptr::null_mut();
    // SAFETY: no arguments; `real` is the real tmpfile.
    |real| unsafe { tmpfile_with(|| real()) }

    fn mkstemp(template: *mut c_char) -> c_int, missing: -1;
    // SAFETY: `template` is null or a writable C string (mkstemp(3)): `mktemp_with`'s
    // contract; `real` gets it, and the integer suffix length and flags, unchanged.
    |real| unsafe { mktemp_with(template, 0, 0, false, || real(template)) }

    fn mkstemp64(template: *mut c_char) -> c_int, missing: -1;
    // SAFETY: `template` is null or a writable C string (mkstemp(3)): `mktemp_with`'s
    // contract; `real` gets it, and the integer suffix length and flags, unchanged.
    |real| unsafe { mktemp_with(template, 0, 0, false, || real(template)) }

    fn mkostemp(template: *mut c_char, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `template` is null or a writable C string (mkstemp(3)): `mktemp_with`'s
    // contract; `real` gets it, and the integer suffix length and flags, unchanged.
    |real| unsafe { mktemp_with(template, 0, flags, false, || real(template, flags)) }

    fn mkostemp64(template: *mut c_char, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `template` is null or a writable C string (mkstemp(3)): `mktemp_with`'s
    // contract; `real` gets it, and the integer suffix length and flags, unchanged.
    |real| unsafe { mktemp_with(template, 0, flags, false, || real(template, flags)) }

    fn mkstemps(template: *mut c_char, suffix: c_int) -> c_int, missing: -1;
    // SAFETY: `template` is null or a writable C string (mkstemp(3)): `mktemp_with`'s
    // contract; `real` gets it, and the integer suffix length and flags, unchanged.
    |real| unsafe { mktemp_with(template, suffix, 0, false, || real(template, suffix)) }

    fn mkstemps64(template: *mut c_char, suffix: c_int) -> c_int, missing: -1;
    // SAFETY: `template` is null or a writable C string (mkstemp(3)): `mktemp_with`'s
    // contract; `real` gets it, and the integer suffix length and flags, unchanged.
    |real| unsafe { mktemp_with(template, suffix, 0, false, || real(template, suffix)) }

    fn mkostemps(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `template` is null or a writable C string (mkstemp(3)): `mktemp_with`'s
    // contract; `real` gets it, and the integer suffix length and flags, unchanged.
    |real| unsafe { mktemp_with(template, suffix, flags, false, || real(template, suffix, flags)) }

    fn mkostemps64(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int, missing: -1;
    // SAFETY: `template` is null or a writable C string (mkstemp(3)): `mktemp_with`'s
    // contract; `real` gets it, and the integer suffix length and flags, unchanged.
    |real| unsafe { mktemp_with(template, suffix, flags, false, || real(template, suffix, flags)) }

    fn mkdtemp(template: *mut c_char) -> *mut c_char, missing: std::ptr::null_mut();
    // SAFETY: `template` is null or a writable C string (mkdtemp(3)): `mkdtemp_with`'s
    // contract; `real` gets it unchanged.
    |real| unsafe { mkdtemp_with(template, || real(template)) }
}
