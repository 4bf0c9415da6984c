//! FFI layer of the network replica: the exported socket and resolver calls, each
//! handed with the real function to its logic (`ops.rs` for sockets, `lookup.rs`
//! for names). Unix socket paths go to the file-system replica (`fs::sockets`).

use std::ffi::{c_char, c_int, c_uint, c_void};

use libc::{addrinfo, hostent, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::{lookup, ops};

hook! {
    /// Unix paths are created in the capsule; abstract names get the capsule's prefix;
    /// internet ports are mapped to host ports.
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int, missing: -1;
    // SAFETY: bind(2)'s contract: `addr` is null or valid for `len` bytes; `real` is the real bind.
    |real| unsafe { ops::bind(real, fd, addr, len) }

    /// Reaches the capsule's own ports, its peers' by their addresses, unix paths in
    /// the capsule and the capsule's abstract names.
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int, missing: -1;
    // SAFETY: connect(2)'s contract: `addr` is null or valid for `len` bytes; `real` is the real connect.
    |real| unsafe { ops::connect(real, fd, addr, len) }

    fn sendto(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr, len: socklen_t) -> ssize_t, missing: -1;
    // SAFETY: sendto(2)'s contract: `buf` holds `n` bytes, `addr` is null or valid for `len`; `real` is the real sendto.
    |real| unsafe { ops::sendto(real, fd, buf, n, flags, addr, len) }

    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t, missing: -1;
    // SAFETY: sendmsg(2)'s contract: `msg` is null or a readable msghdr; `real` is the real sendmsg.
    |real| unsafe { ops::sendmsg(real, fd, msg, flags) }

    fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t, missing: -1, support: Partial("a peer's unix path longer than sun_path on the host, bound by another program, shows as that program's /proc/self/fd pin");
    // SAFETY: recvfrom(2)'s contract: `buf` holds `n` bytes, `addr` holds `*len`; `real` is the real recvfrom.
    |real| unsafe { ops::recvfrom(real, fd, buf, n, flags, addr, len) }

    /// Each message's destination as sendmsg's; the messages go in chunks, and the
    /// count sent is the kernel's (a destination refused after some were sent ends
    /// the call with that count, as a failed send does).
    fn sendmmsg(fd: c_int, vec: *mut mmsghdr, vlen: c_uint, flags: c_int) -> c_int, missing: -1;
    // SAFETY: sendmmsg(2)'s contract: `vec` holds `vlen` messages; `real` is the real sendmmsg.
    |real| unsafe { ops::sendmmsg(real, fd, vec, vlen, flags) }

    /// Each message's source address as recvmsg's.
    fn recvmmsg(fd: c_int, vec: *mut mmsghdr, vlen: c_uint, flags: c_int, timeout: *mut libc::timespec) -> c_int, missing: -1, support: Partial("a peer's unix path longer than sun_path on the host, bound by another program, shows as that program's /proc/self/fd pin");
    // SAFETY: recvmmsg(2)'s contract: `vec` holds `vlen` messages; `real` is the real recvmmsg.
    |real| unsafe { ops::recvmmsg(real, fd, vec, vlen, flags, timeout) }

    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t, missing: -1, support: Partial("a peer's unix path longer than sun_path on the host, bound by another program, shows as that program's /proc/self/fd pin");
    // SAFETY: recvmsg(2)'s contract: `msg` is null or a writable msghdr; `real` is the real recvmsg.
    |real| unsafe { ops::recvmsg(real, fd, msg, flags) }

    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int, missing: -1, support: Partial("a peer's unix path longer than sun_path on the host, bound by another program, shows as that program's /proc/self/fd pin");
    // SAFETY: accept(2)'s contract: `len` is null or readable, `addr` holds `*len` bytes; `real` is the real accept.
    |real| unsafe { ops::accept(real, fd, addr, len) }

    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int, missing: -1, support: Partial("a peer's unix path longer than sun_path on the host, bound by another program, shows as that program's /proc/self/fd pin");
    // SAFETY: accept4(2)'s contract: `len` is null or readable, `addr` holds `*len` bytes; `real` is the real accept4.
    |real| unsafe { ops::accept4(real, fd, addr, len, flags) }

    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int, missing: -1;
    // SAFETY: getpeername(2)'s contract: `len` is null or readable, `addr` holds `*len` bytes; `real` is the real getpeername.
    |real| unsafe { ops::getpeername(real, fd, addr, len) }

    /// The address a socket was bound to, in capsule terms.
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int, missing: -1, support: Partial("a unix path longer than sun_path on the host is known when it was bound in this program (not after an exec)");
    // SAFETY: getsockname(2)'s contract: `len` is null or readable, `addr` holds `*len` bytes; `real` is the real getsockname.
    |real| unsafe { ops::getsockname(real, fd, addr, len) }

    /// A capsule's name resolves to its loopback address; everything else is the
    /// host resolver's.
    fn getaddrinfo(node: *const c_char, service: *const c_char, hints: *const addrinfo, res: *mut *mut addrinfo) -> c_int, missing: libc::EAI_SYSTEM;
    // SAFETY: getaddrinfo(3)'s contract: `node`, `service` null or C strings, `hints` null or readable, `res` writable; `real` is the real getaddrinfo.
    |real| unsafe { lookup::getaddrinfo(real, node, service, hints, res) }

    fn gethostbyname(name: *const c_char) -> *mut hostent, missing: std::ptr::null_mut();
    // SAFETY: gethostbyname(3)'s contract: `name` is null or a C string; `real` is the real gethostbyname.
    |real| unsafe { lookup::gethostbyname(real, name) }

    fn gethostbyname2(name: *const c_char, family: c_int) -> *mut hostent, missing: std::ptr::null_mut();
    // SAFETY: gethostbyname2(3)'s contract: `name` is null or a C string; `real` is the real gethostbyname2.
    |real| unsafe { lookup::gethostbyname2(real, name, family) }

    fn gethostbyname_r(name: *const c_char, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int, missing: libc::ENOSYS;
    // SAFETY: gethostbyname_r(3)'s contract: `name` a C string, `ret` and `result` writable, `buf` of `buflen` bytes; `real` is the real gethostbyname_r.
    |real| unsafe { lookup::gethostbyname_r(real, name, ret, buf, buflen, result, h_errnop) }

    fn gethostbyname2_r(name: *const c_char, family: c_int, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int, missing: libc::ENOSYS;
    // SAFETY: gethostbyname2_r(3)'s contract: `name` a C string, `ret` and `result` writable, `buf` of `buflen` bytes; `real` is the real gethostbyname2_r.
    |real| unsafe { lookup::gethostbyname2_r(real, name, family, ret, buf, buflen, result, h_errnop) }

    /// A peer's address gives its name back, as getnameinfo.
    fn gethostbyaddr(addr: *const c_void, len: socklen_t, family: c_int) -> *mut hostent, missing: std::ptr::null_mut();
    // SAFETY: gethostbyaddr(3)'s contract: `addr` is null or valid for `len` bytes; `real` is the real gethostbyaddr.
    |real| unsafe { lookup::gethostbyaddr(real, addr, len, family) }

    fn gethostbyaddr_r(addr: *const c_void, len: socklen_t, family: c_int, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int, missing: libc::ENOSYS;
    // SAFETY: gethostbyaddr_r(3)'s contract: `addr` valid for `len` bytes, `ret` and `result` writable, `buf` of `buflen` bytes; `real` is the real gethostbyaddr_r.
    |real| unsafe { lookup::gethostbyaddr_r(real, addr, len, family, ret, buf, buflen, result, h_errnop) }

    /// A peer's address gives its name back.
    fn getnameinfo(addr: *const sockaddr, len: socklen_t, host: *mut c_char, hostlen: socklen_t, serv: *mut c_char, servlen: socklen_t, flags: c_int) -> c_int, missing: libc::EAI_SYSTEM;
    // SAFETY: getnameinfo(3)'s contract: `addr` valid for `len` bytes, `host` and `serv` null or of their lengths; `real` is the real getnameinfo.
    |real| unsafe { lookup::getnameinfo(real, addr, len, host, hostlen, serv, servlen, flags) }
}
