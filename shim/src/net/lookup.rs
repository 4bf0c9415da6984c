//! The resolver calls in capsule terms (`names.rs` holds the rules): a capsule's name
//! resolves to its address and a peer's address gives its name back; everything
//! else is the host resolver's answer. `hooks.rs` only declares the exports.
//!
//! Each `pub unsafe fn` here has the contract of the call it implements: the
//! pointers are the program's, as that call takes them, and `real` is the real
//! function of that name.

use std::ffi::{c_char, c_int, c_void, CStr};

use libc::{addrinfo, hostent, size_t, sockaddr, socklen_t};

use super::addr::{Inet, Place};
use super::names;
use crate::runtime;

/// The real `getaddrinfo`.
pub type GetAddrInfo = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const addrinfo,
    *mut *mut addrinfo,
) -> c_int;
/// The real `gethostbyname`.
pub type GetHostByName = unsafe extern "C" fn(*const c_char) -> *mut hostent;
/// The real `gethostbyname2`.
pub type GetHostByName2 = unsafe extern "C" fn(*const c_char, c_int) -> *mut hostent;
/// The real `gethostbyname_r`.
pub type GetHostByNameR = unsafe extern "C" fn(
    *const c_char,
    *mut hostent,
    *mut c_char,
    size_t,
    *mut *mut hostent,
    *mut c_int,
) -> c_int;
/// The real `gethostbyname2_r`.
pub type GetHostByName2R = unsafe extern "C" fn(
    *const c_char,
    c_int,
    *mut hostent,
    *mut c_char,
    size_t,
    *mut *mut hostent,
    *mut c_int,
) -> c_int;
/// The real `gethostbyaddr`.
pub type GetHostByAddr = unsafe extern "C" fn(*const c_void, socklen_t, c_int) -> *mut hostent;
/// The real `gethostbyaddr_r`.
pub type GetHostByAddrR = unsafe extern "C" fn(
    *const c_void,
    socklen_t,
    c_int,
    *mut hostent,
    *mut c_char,
    size_t,
    *mut *mut hostent,
    *mut c_int,
) -> c_int;
/// The real `getnameinfo`.
pub type GetNameInfo = unsafe extern "C" fn(
    *const sockaddr,
    socklen_t,
    *mut c_char,
    socklen_t,
    *mut c_char,
    socklen_t,
    c_int,
) -> c_int;

/// getaddrinfo: a capsule's name is asked of the real resolver as its numeric
/// address, so the answer has the caller's service, socket types and layout.
///
/// # Safety
/// getaddrinfo(3)'s contract; `real` is the real getaddrinfo.
pub unsafe fn getaddrinfo(
    real: GetAddrInfo,
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    // SAFETY: `node` is null or a C string (getaddrinfo's contract).
    let Some(ip) = (unsafe { resolve(node) }) else {
        // SAFETY: the caller's arguments go unchanged to the real getaddrinfo.
        return unsafe { real(node, service, hints, res) };
    };
    // SAFETY: addrinfo is plain data, for which all zeroes is a valid (empty) value.
    let empty: addrinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `hints` is null or a readable addrinfo (getaddrinfo's contract).
    let mut ask: addrinfo = unsafe { hints.as_ref() }.copied().unwrap_or(empty);
    if ask.ai_family != libc::AF_INET && ask.ai_family != libc::AF_INET6 {
        ask.ai_family = libc::AF_INET;
    }
    // Numeric, and loopback counts even on a host without other addresses.
    ask.ai_flags = (ask.ai_flags | libc::AI_NUMERICHOST) & !libc::AI_ADDRCONFIG;
    let mut text = [0u8; 32];
    let numeric = names::numeric(ip, ask.ai_family, &mut text);
    // SAFETY: `numeric` is a C string in `text`, `ask` a local addrinfo; the rest is
    // the caller's.
    let rc = unsafe { real(numeric, service, &ask, res) };
    if rc != 0 || ask.ai_flags & libc::AI_CANONNAME == 0 {
        return rc;
    }
    // SAFETY: on success the real getaddrinfo wrote the list head to `*res`.
    let Some(first) = (unsafe { (*res).as_mut() }) else {
        return rc;
    };
    // freeaddrinfo frees the canonical name on its own.
    // SAFETY: the canonical name is getaddrinfo's own malloc'd string (or null).
    unsafe { libc::free(first.ai_canonname.cast()) };
    // SAFETY: `node` is a C string (resolve found it).
    first.ai_canonname = unsafe { libc::strdup(node) };
    rc
}

/// gethostbyname.
///
/// # Safety
/// gethostbyname(3)'s contract; `real` is the real gethostbyname.
pub unsafe fn gethostbyname(real: GetHostByName, name: *const c_char) -> *mut hostent {
    // SAFETY: `name` is null or a C string (gethostbyname's contract); the static
    // entry is these non-reentrant calls' alone.
    match unsafe { by_name_static(name, libc::AF_INET) } {
        Some(ent) => ent,
        // SAFETY: the caller's name goes unchanged to the real gethostbyname.
        None => unsafe { real(name) },
    }
}

/// gethostbyname2.
///
/// # Safety
/// gethostbyname2(3)'s contract; `real` is the real gethostbyname2.
pub unsafe fn gethostbyname2(
    real: GetHostByName2,
    name: *const c_char,
    family: c_int,
) -> *mut hostent {
    // SAFETY: `name` is null or a C string (gethostbyname2's contract); the static
    // entry is these non-reentrant calls' alone.
    match unsafe { by_name_static(name, family) } {
        Some(ent) => ent,
        // SAFETY: the caller's arguments go unchanged to the real gethostbyname2.
        None => unsafe { real(name, family) },
    }
}

/// gethostbyname_r.
///
/// # Safety
/// gethostbyname_r(3)'s contract; `real` is the real gethostbyname_r.
pub unsafe fn gethostbyname_r(
    real: GetHostByNameR,
    name: *const c_char,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: the caller's arguments as gethostbyname_r takes them.
    match unsafe { by_name_r(name, libc::AF_INET, ret, buf, buflen, result) } {
        Some(rc) => rc,
        // SAFETY: the caller's arguments go unchanged to the real gethostbyname_r.
        None => unsafe { real(name, ret, buf, buflen, result, h_errnop) },
    }
}

/// gethostbyname2_r.
///
/// # Safety
/// gethostbyname2_r(3)'s contract; `real` is the real gethostbyname2_r.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gethostbyname2_r(
    real: GetHostByName2R,
    name: *const c_char,
    family: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: the caller's arguments as gethostbyname2_r takes them.
    match unsafe { by_name_r(name, family, ret, buf, buflen, result) } {
        Some(rc) => rc,
        // SAFETY: the caller's arguments go unchanged to the real gethostbyname2_r.
        None => unsafe { real(name, family, ret, buf, buflen, result, h_errnop) },
    }
}

/// gethostbyaddr: a peer's address gives its name back, as getnameinfo.
///
/// # Safety
/// gethostbyaddr(3)'s contract; `real` is the real gethostbyaddr.
pub unsafe fn gethostbyaddr(
    real: GetHostByAddr,
    addr: *const c_void,
    len: socklen_t,
    family: c_int,
) -> *mut hostent {
    // SAFETY: `addr` is null or valid for `len` bytes (gethostbyaddr's contract); the
    // static entry is these non-reentrant calls' alone.
    match unsafe { by_addr_static(addr, len, family) } {
        Some(ent) => ent,
        // SAFETY: the caller's arguments go unchanged to the real gethostbyaddr.
        None => unsafe { real(addr, len, family) },
    }
}

/// gethostbyaddr_r.
///
/// # Safety
/// gethostbyaddr_r(3)'s contract; `real` is the real gethostbyaddr_r.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gethostbyaddr_r(
    real: GetHostByAddrR,
    addr: *const c_void,
    len: socklen_t,
    family: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: `addr` is null or valid for `len` bytes (gethostbyaddr_r's contract).
    match unsafe { peer_at(addr, len, family) } {
        // SAFETY: `ret` and `result` writable, `buf` valid for `buflen` bytes (the
        // caller's, as gethostbyaddr_r takes them).
        Some((name, ip)) => unsafe {
            fill_r(name.as_bytes(), ip, family, ret, buf, buflen, result)
        },
        // SAFETY: the caller's arguments go unchanged to the real gethostbyaddr_r.
        None => unsafe { real(addr, len, family, ret, buf, buflen, result, h_errnop) },
    }
}

/// getnameinfo: a peer's address gives its name back.
///
/// # Safety
/// getnameinfo(3)'s contract; `real` is the real getnameinfo.
#[allow(clippy::too_many_arguments)]
pub unsafe fn getnameinfo(
    real: GetNameInfo,
    addr: *const sockaddr,
    len: socklen_t,
    host: *mut c_char,
    hostlen: socklen_t,
    serv: *mut c_char,
    servlen: socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: `addr` is valid for `len` bytes (getnameinfo's contract).
    let inet = unsafe { Inet::read(addr, len) };
    let peer = match (super::get(), inet) {
        (Some(net), Some(inet))
            if !host.is_null() && hostlen > 0 && flags & libc::NI_NUMERICHOST == 0 =>
        {
            match inet.place() {
                Place::Peer(i) => names::peer_name(net, i),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(name) = peer else {
        // SAFETY: the caller's arguments go unchanged to the real getnameinfo.
        return unsafe { real(addr, len, host, hostlen, serv, servlen, flags) };
    };
    if name.len() + 1 > hostlen as usize {
        return libc::EAI_OVERFLOW;
    }
    // SAFETY: `host` holds `hostlen` bytes (the contract), more than the name and its NUL.
    let out = unsafe { std::slice::from_raw_parts_mut(host.cast::<u8>(), name.len() + 1) };
    out[..name.len()].copy_from_slice(name.as_bytes());
    out[name.len()] = 0;
    if serv.is_null() || servlen == 0 {
        return 0;
    }
    // SAFETY: the caller's address and service buffer; no host buffer asked for.
    unsafe { real(addr, len, std::ptr::null_mut(), 0, serv, servlen, flags) }
}

/// The capsule-set address of `node`, if it names a capsule.
///
/// # Safety
/// `node` is null or a C string.
unsafe fn resolve(node: *const c_char) -> Option<[u8; 4]> {
    let net = super::get()?;
    if node.is_null() {
        return None;
    }
    let host = crate::uts::ops::current(runtime::get(), crate::uts::ops::Name::Host);
    // SAFETY: `node` is not null, so a C string (this function's contract).
    let name = unsafe { CStr::from_ptr(node) }.to_bytes();
    names::lookup(net, name, host.as_ref().map(|h| h.as_bytes()))
}

struct StaticHost {
    ent: std::cell::UnsafeCell<hostent>,
    buf: std::cell::UnsafeCell<[c_char; 256]>,
}
// SAFETY: gethostbyname's result is shared process-wide by its specification (not
// thread-safe, as glibc's own).
unsafe impl Sync for StaticHost {}
static STATIC_HOST: StaticHost = StaticHost {
    // SAFETY: hostent is plain data; zero is a valid empty value.
    ent: std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() }),
    buf: std::cell::UnsafeCell::new([0; 256]),
};

/// The static entry of the non-reentrant calls, filled for `name` at `ip`.
///
/// # Safety
/// Only the non-reentrant calls use it, which share their result process-wide (as
/// glibc's do): no other reference to it is alive.
unsafe fn fill_static(name: &[u8], ip: [u8; 4], family: c_int) -> Option<*mut hostent> {
    // SAFETY: no other reference to the static entry is alive (this function's contract).
    let ent = unsafe { &mut *STATIC_HOST.ent.get() };
    // SAFETY: as above, for its buffer.
    let buf = unsafe { &mut *STATIC_HOST.buf.get() };
    // SAFETY: `buf` is valid for its length.
    unsafe { names::fill_hostent(ent, name, ip, family, buf.as_mut_ptr(), buf.len()) }.ok()?;
    Some(ent)
}

/// The static entry for `name` when it names a capsule.
///
/// # Safety
/// `name` is null or a C string; as `fill_static`.
unsafe fn by_name_static(name: *const c_char, family: c_int) -> Option<*mut hostent> {
    // SAFETY: `name` is null or a C string (this function's contract).
    let ip = unsafe { resolve(name) }?;
    // SAFETY: `name` is a C string (resolve found it).
    let text = unsafe { CStr::from_ptr(name) }.to_bytes();
    // SAFETY: as `fill_static` (this function's contract).
    unsafe { fill_static(text, ip, family) }
}

/// The static entry for a peer's address.
///
/// # Safety
/// `addr` is null or valid for `len` bytes; as `fill_static`.
unsafe fn by_addr_static(
    addr: *const c_void,
    len: socklen_t,
    family: c_int,
) -> Option<*mut hostent> {
    // SAFETY: `addr` is null or valid for `len` bytes (this function's contract).
    let (name, ip) = unsafe { peer_at(addr, len, family) }?;
    // SAFETY: as `fill_static` (this function's contract).
    unsafe { fill_static(name.as_bytes(), ip, family) }
}

/// The name and IPv4 address of the capsule answering on the `len` bytes of address
/// `addr` of `family` (IPv4, or v4-mapped IPv6), if it is a peer address.
///
/// # Safety
/// `addr` is null or valid for `len` bytes.
unsafe fn peer_at(
    addr: *const c_void,
    len: socklen_t,
    family: c_int,
) -> Option<(&'static str, [u8; 4])> {
    let net = super::get()?;
    if addr.is_null() {
        return None;
    }
    // SAFETY: `addr` is not null, so valid for `len` bytes (this function's contract).
    let bytes = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len as usize) };
    let ip: [u8; 4] = match (family, bytes.len()) {
        (libc::AF_INET, 4) => bytes.try_into().ok()?,
        (libc::AF_INET6, 16)
            if bytes[..10].iter().all(|&b| b == 0) && bytes[10..12] == [0xff, 0xff] =>
        {
            bytes[12..].try_into().ok()?
        }
        _ => return None,
    };
    let name = names::peer_name(net, capsule_config::net::peer_index(ip)?)?;
    Some((name, ip))
}

/// The entry for a capsule `name` of `family`, in the caller's `ret` and `buf`.
///
/// # Safety
/// As gethostbyname2_r(3): `name` a C string, `ret` and `result` writable, `buf`
/// valid for `buflen` bytes.
unsafe fn by_name_r(
    name: *const c_char,
    family: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
) -> Option<c_int> {
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return None;
    }
    // SAFETY: `name` is a C string (this function's contract).
    let ip = unsafe { resolve(name) }?;
    // SAFETY: as above.
    let text = unsafe { CStr::from_ptr(name) }.to_bytes();
    // SAFETY: `ret`, `buf` and `result` as this function's contract says.
    Some(unsafe { fill_r(text, ip, family, ret, buf, buflen, result) })
}

/// Fills the caller's `ret` (and `buf`) for `name` at `ip`, with `*result` pointing
/// at it on success and null otherwise; returns the `_r` calls' error number.
///
/// # Safety
/// `ret` is writable, `result` null or writable, `buf` valid for `buflen` bytes.
#[allow(clippy::too_many_arguments)]
unsafe fn fill_r(
    name: &[u8],
    ip: [u8; 4],
    family: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
) -> c_int {
    // SAFETY: `result` is null or writable (this function's contract).
    if let Some(slot) = unsafe { result.as_mut() } {
        *slot = std::ptr::null_mut();
    }
    // SAFETY: `ret` is writable and `buf` valid for `buflen` bytes (this function's
    // contract).
    if let Err(e) = unsafe { names::fill_hostent(&mut *ret, name, ip, family, buf, buflen) } {
        return e;
    }
    // SAFETY: as above.
    if let Some(slot) = unsafe { result.as_mut() } {
        *slot = ret;
    }
    0
}
