//! Temporary files and directories (the logic is `fs::tmp`).

use libc::{c_char, c_int, FILE};

use crate::fs::tmp::{mkdtemp_with, mktemp_with, tmpfile_with};

hook! {
    unsafe_bodies;

    fn tmpfile() -> *mut FILE, missing: std::ptr::null_mut();
    |real| tmpfile_with(|| real())

    fn tmpfile64() -> *mut FILE, missing: std::ptr::null_mut();
    |real| tmpfile_with(|| real())

    fn mkstemp(template: *mut c_char) -> c_int, missing: -1;
    |real| mktemp_with(template, 0, 0, false, || real(template))

    fn mkstemp64(template: *mut c_char) -> c_int, missing: -1;
    |real| mktemp_with(template, 0, 0, false, || real(template))

    fn mkostemp(template: *mut c_char, flags: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, 0, flags, false, || real(template, flags))

    fn mkostemp64(template: *mut c_char, flags: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, 0, flags, false, || real(template, flags))

    fn mkstemps(template: *mut c_char, suffix: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, suffix, 0, false, || real(template, suffix))

    fn mkstemps64(template: *mut c_char, suffix: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, suffix, 0, false, || real(template, suffix))

    fn mkostemps(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, suffix, flags, false, || real(template, suffix, flags))

    fn mkostemps64(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int, missing: -1;
    |real| mktemp_with(template, suffix, flags, false, || real(template, suffix, flags))

    fn mkdtemp(template: *mut c_char) -> *mut c_char, missing: std::ptr::null_mut();
    |real| mkdtemp_with(template, || real(template))
}
