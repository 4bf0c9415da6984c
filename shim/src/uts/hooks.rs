//! FFI layer of the uts replica.

use libc::{c_char, c_int, size_t, utsname};

use super::ops::{self, Name};
use crate::hook::{fail, result};
use crate::identity;
use crate::runtime;

/// uname, with the capsule's names. Shared with `syscall(SYS_uname)`.
///
/// # Safety
/// `buf` is null or the `utsname` that `real` fills.
pub unsafe fn uname_with(buf: *mut utsname, real: impl FnOnce() -> c_int) -> c_int {
    let rc = real();
    if rc != 0 || buf.is_null() {
        return rc;
    }
    let rt = runtime::get();
    // SAFETY: the real uname just filled *buf (non-null), so it is a valid utsname
    // that nothing else refers to during this call.
    let buf = unsafe { &mut *buf };
    if let Some(name) = ops::current(rt, Name::Host) {
        ops::fill_field(&mut buf.nodename, name.as_bytes());
    }
    if let Some(name) = ops::current(rt, Name::Domain) {
        ops::fill_field(&mut buf.domainname, name.as_bytes());
    }
    rc
}

/// sethostname / setdomainname. Shared with `syscall()`.
///
/// # Safety
/// `name` is null or valid for `len` bytes.
pub unsafe fn set_with(which: Name, name: *const c_char, len: size_t) -> c_int {
    if name.is_null() && len > 0 {
        return fail(libc::EFAULT);
    }
    let bytes: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: `name` is non-null here and valid for `len` bytes (the contract).
        unsafe { std::slice::from_raw_parts(name.cast(), len) }
    };
    result(
        ops::set(runtime::get(), which, bytes, identity::capsule_root()),
        || -1,
    )
}

/// gethostname / getdomainname.
///
/// # Safety
/// `out` is null or valid for writes of `len` bytes.
unsafe fn get_name(
    which: Name,
    out: *mut c_char,
    len: size_t,
    real: impl FnOnce() -> c_int,
) -> c_int {
    let Some(name) = ops::current(runtime::get(), which) else {
        return real();
    };
    if out.is_null() && len > 0 {
        return fail(libc::EFAULT);
    }
    let out: &mut [u8] = if len == 0 {
        &mut []
    } else {
        // SAFETY: `out` is non-null here and valid for `len` bytes (the contract), the
        // caller's buffer, which only this call writes.
        unsafe { std::slice::from_raw_parts_mut(out.cast(), len) }
    };
    let outcome = match which {
        Name::Host => ops::copy_out(name.as_bytes(), out),
        Name::Domain => ops::copy_out_truncating(name.as_bytes(), out),
    };
    result(outcome, || -1)
}

hook! {
    fn uname(buf: *mut utsname) -> c_int, missing: -1;
    reads_state |real| {
        // SAFETY: the caller's `buf` goes unchanged to the real uname(2), its contract.
        let real = || unsafe { real(buf) };
        // SAFETY: `buf` is null or a utsname (uname's contract), which `real` fills.
        unsafe { uname_with(buf, real) }
    }

    fn gethostname(name: *mut c_char, len: size_t) -> c_int, missing: -1;
    reads_state |real| {
        // SAFETY: the caller's buffer and length go unchanged to the real gethostname.
        let real = || unsafe { real(name, len) };
        // SAFETY: `name` is valid for `len` bytes (gethostname's contract).
        unsafe { get_name(Name::Host, name, len, real) }
    }

    fn getdomainname(name: *mut c_char, len: size_t) -> c_int, missing: -1;
    reads_state |real| {
        // SAFETY: the caller's buffer and length go unchanged to the real getdomainname.
        let real = || unsafe { real(name, len) };
        // SAFETY: `name` is valid for `len` bytes (getdomainname's contract).
        unsafe { get_name(Name::Domain, name, len, real) }
    }

    /// Never reaches the kernel: the host's name is not the capsule's to change.
    fn sethostname(name: *const c_char, len: size_t) -> c_int, missing: -1;
    // SAFETY: `name` is valid for `len` bytes (sethostname's contract).
    |_real| unsafe { set_with(Name::Host, name, len) }

    fn setdomainname(name: *const c_char, len: size_t) -> c_int, missing: -1;
    // SAFETY: `name` is valid for `len` bytes (setdomainname's contract).
    |_real| unsafe { set_with(Name::Domain, name, len) }
}
