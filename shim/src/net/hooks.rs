//! FFI layer of the network replica: socket calls and name resolution. Unix socket
//! paths are handed to the file-system replica (`fs::sockets`); internet addresses
//! and abstract names are translated here.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use libc::{addrinfo, hostent, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::addr::{Inet, Place};
use super::{names, ports, unix, Net};
use crate::fs::sockets;
use crate::hook::Skip;
use crate::hook::{outside, set_errno};
use crate::runtime;

/// An address rewritten for the kernel, or the caller's own.
enum Target {
    Same,
    Inet(Inet),
    Unix(sockets::HostAddress),
    Abstract(unix::Address),
}

impl Target {
    fn addr(&self, addr: *const sockaddr, len: socklen_t) -> (*const sockaddr, socklen_t) {
        match self {
            Target::Same => (addr, len),
            Target::Inet(inet) => (inet.as_ptr(), inet.len),
            Target::Unix(host) => ((&host.addr as *const libc::sockaddr_un).cast(), host.len),
            Target::Abstract(a) => ((&a.addr as *const libc::sockaddr_un).cast(), a.len),
        }
    }
}

/// Where a datagram or connection to `addr` goes, in host terms.
///
/// # Safety
/// `addr` is null or valid for `len` bytes.
unsafe fn destination(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Result<Target, c_int> {
    // SAFETY: `addr` is null or valid for `len` bytes (the `# Safety` contract).
    unsafe {
        if let Some(path) = sockets::path_of(addr, len) {
            let Some(layers) = crate::fs::layers() else {
                return Ok(Target::Same);
            };
            return match sockets::connect(layers, path) {
                Ok(host) => Ok(Target::Unix(host)),
                Err(Skip::Pass) => Ok(Target::Same),
                Err(Skip::Errno(e)) => Err(e),
            };
        }
        let Some(net) = super::get() else {
            return Ok(Target::Same);
        };
        if let Some(name) = unix::abstract_name(addr, len) {
            return match &net.abstract_prefix {
                Some(prefix) => unix::to_host(prefix, name).map(Target::Abstract),
                None => Ok(Target::Same),
            };
        }
        let Some(mut inet) = Inet::read(addr, len) else {
            return Ok(Target::Same);
        };
        let place = inet.place();
        let port = inet.port();
        if place == Place::Elsewhere {
            return Ok(Target::Same);
        }
        let Some(proto) = ports::proto_of(fd) else {
            return Ok(Target::Same);
        };
        match net.ports.connect_target(proto, place, port) {
            Ok(Some((node, host))) => {
                match node {
                    Some(addr) => inet.set_ipv4(addr),
                    None if matches!(place, Place::Peer(_)) => inet.set_loopback(),
                    None => {}
                }
                inet.set_port(host);
                log::debug!("port {port} of {place:?} is host port {host}");
                Ok(Target::Inet(inet))
            }
            Ok(None) => Ok(Target::Same),
            Err(ports::Refused) => Err(libc::ECONNREFUSED),
        }
    }
}

/// Turns an address the kernel reported for socket `fd` into the capsule's view, in
/// place. `room` is how many bytes the caller's buffer holds.
///
/// # Safety
/// `addr` is valid for `room` bytes and `len` is valid, or either is null.
unsafe fn report(net: &Net, fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, room: usize) {
    // SAFETY: `addr` is valid for `room` bytes and `len` is valid, or either is null (the
    // `# Safety` contract).
    unsafe {
        // The caller's call succeeded: its errno stays as the caller found it.
        let saved = crate::hook::errno();
        translate_reported(net, fd, addr, len, room);
        set_errno(saved);
    }
}

unsafe fn translate_reported(
    net: &Net,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    room: usize,
) {
    // SAFETY: as `report`: `addr` is valid for `room` bytes and `len` is valid, or either
    // is null; both are checked before use.
    unsafe {
        if addr.is_null() || len.is_null() || (*len as usize) > room {
            return;
        }
        if let Some(prefix) = &net.abstract_prefix {
            if unix::abstract_name(addr, *len).is_some() {
                unix::strip(prefix, addr, len, room);
                return;
            }
        }
        let Some(mut inet) = Inet::read(addr, *len) else {
            return;
        };
        if inet.place() != Place::Own {
            return;
        }
        let Some(proto) = ports::proto_of(fd) else {
            return;
        };
        match net.ports.reverse(proto, inet.port()) {
            Some((Place::Peer(i), port)) => {
                inet.set_ipv4(capsule_config::net::peer_address(i));
                inet.set_port(port);
            }
            Some((_, port)) => inet.set_port(port),
            None => return,
        }
        let mut out_len = room as socklen_t;
        inet.write(addr, &mut out_len);
        *len = out_len;
    }
}

/// The most messages one sendmmsg/recvmmsg system call handles (the kernel's
/// UIO_MAXIOV).
const UIO_MAXIOV: usize = 1024;
/// How many messages of a sendmmsg call are rewritten and sent at a time.
const MMSG_CHUNK: usize = 32;

/// sendmmsg of `total` messages at `vec`, each with its destination rewritten;
/// `send` is the real call. Returns what sendmmsg returns.
///
/// # Safety
/// `vec` is valid for `total` messages.
unsafe fn send_many(
    fd: c_int,
    vec: *mut mmsghdr,
    total: usize,
    send: impl Fn(*mut mmsghdr, c_uint) -> c_int,
) -> c_int {
    // SAFETY: `vec` is valid for `total` messages (the `# Safety` contract); each batch
    // stays inside it.
    unsafe {
        let saved = crate::hook::errno();
        let mut sent = 0usize;
        while sent < total {
            let n = (total - sent).min(MMSG_CHUNK);
            let mut targets: [Option<Target>; MMSG_CHUNK] = Default::default();
            let mut copies: [mmsghdr; MMSG_CHUNK] = std::mem::zeroed();
            let mut ready = 0;
            let mut refused = None;
            for i in 0..n {
                let original = &*vec.add(sent + i);
                let mut copy = *original;
                let name = original.msg_hdr.msg_name as *const sockaddr;
                if !name.is_null() {
                    match destination(fd, name, original.msg_hdr.msg_namelen) {
                        Ok(Target::Same) => {}
                        Ok(target) => {
                            let target = targets[i].insert(target);
                            let (a, l) = target.addr(name, original.msg_hdr.msg_namelen);
                            copy.msg_hdr.msg_name = a as *mut c_void;
                            copy.msg_hdr.msg_namelen = l;
                        }
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    }
                }
                copies[i] = copy;
                ready += 1;
            }
            if ready > 0 {
                set_errno(saved);
                let rc = send(copies.as_mut_ptr(), ready as c_uint);
                if rc < 0 {
                    if sent == 0 {
                        return rc;
                    }
                    break;
                }
                let rc = rc as usize;
                for (i, copy) in copies.iter().enumerate().take(rc) {
                    (*vec.add(sent + i)).msg_len = copy.msg_len;
                }
                sent += rc;
                if rc < ready {
                    break;
                }
            }
            if let Some(e) = refused {
                if sent == 0 {
                    set_errno(e);
                    return -1;
                }
                break;
            }
        }
        set_errno(saved);
        sent as c_int
    }
}

/// bind of an internet address: the capsule port becomes a host port.
unsafe fn bind_inet(
    net: &Net,
    fd: c_int,
    mut inet: Inet,
    real: impl Fn(*const sockaddr, socklen_t) -> c_int,
) -> c_int {
    // SAFETY: `real` and getsockname get pointers to local addresses with their true
    // lengths; a zeroed sockaddr_in6 is a valid value.
    unsafe {
        match inet.place() {
            Place::Peer(i) if Some(i) == net.ports.own_index() => inet.set_loopback(),
            Place::Peer(_) => {
                set_errno(libc::EADDRNOTAVAIL);
                return -1;
            }
            _ => {}
        }
        let port = inet.port();
        let proto = match (port, ports::proto_of(fd)) {
            (0, _) | (_, None) => return real(inet.as_ptr(), inet.len),
            (_, Some(proto)) => proto,
        };
        let host = net.ports.host_port_for_bind(proto, port);
        inet.set_port(host);
        if inet.is_wildcard() {
            // `-p IP:HOSTPORT:PORT` publishes on that address only (an IPv6 socket gets
            // it v4-mapped, which an IPV6_V6ONLY socket refuses as the kernel would).
            if let Some(ip) = net.ports.host_ip_for_bind(proto, port) {
                inet.set_ipv4(ip);
            }
        }
        let rc = real(inet.as_ptr(), inet.len);
        if rc != 0 {
            return rc;
        }
        let errno = crate::hook::errno();
        let mut bound: libc::sockaddr_in6 = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in6>() as socklen_t;
        if libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in6).cast(), &mut len) == 0 {
            if let Some(actual) = Inet::read((&bound as *const libc::sockaddr_in6).cast(), len) {
                net.ports.record(proto, port, actual.port());
                log::debug!(
                    "bound capsule port {port}/{} as host port {}",
                    proto.as_str(),
                    actual.port()
                );
            }
        }
        set_errno(errno);
        rc
    }
}

hook! {
    /// Unix paths are created in the capsule; abstract names get the capsule's prefix;
    /// internet ports are mapped to host ports.
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int, missing: -1;
    |real| {
        // SAFETY: `a` is the caller's address or one the shim built, valid for `l`
        // bytes; `fd` is the caller's (bind(2)'s contract).
        let call = |a: *const sockaddr, l| unsafe { real(fd, a, l) };
        // SAFETY: `addr` is valid for `len` bytes (bind's contract).
        if let (Some(layers), Some(path)) = (crate::fs::layers(), unsafe { sockets::path_of(addr, len) }) {
            let saved = crate::hook::errno();
            return match sockets::bind(layers, path) {
                Ok((host_addr, host, capsule)) => {
                    set_errno(saved);
                    let rc = call((&host_addr.addr as *const libc::sockaddr_un).cast(), host_addr.len);
                    if rc == 0 {
                        crate::fs::owner::after_create(&host);
                        sockets::remember(fd, &capsule);
                    }
                    rc
                }
                Err(Skip::Pass) => call(addr, len),
                Err(Skip::Errno(e)) => { set_errno(e); -1 }
            };
        }
        let Some(net) = super::get() else { return call(addr, len) };
        // SAFETY: `addr` is valid for `len` bytes (bind's contract).
        if let Some(name) = unsafe { unix::abstract_name(addr, len) } {
            return match &net.abstract_prefix {
                Some(prefix) => match unix::to_host(prefix, name) {
                    Ok(a) => call((&a.addr as *const libc::sockaddr_un).cast(), a.len),
                    Err(e) => { set_errno(e); -1 }
                },
                None => call(addr, len),
            };
        }
        // SAFETY: `addr` is valid for `len` bytes (bind's contract).
        match unsafe { Inet::read(addr, len) } {
            // SAFETY: `fd` is the caller's socket; `call` binds it as above.
            Some(inet) => unsafe { bind_inet(net, fd, inet, call) },
            None => call(addr, len),
        }
    }

    /// Reaches the capsule's own ports, its peers' by their addresses, unix paths in
    /// the capsule and the capsule's abstract names.
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int, missing: -1;
    |real| {
        let saved = crate::hook::errno();
        // SAFETY: `addr` is valid for `len` bytes (connect(2)'s contract).
        match unsafe { destination(fd, addr, len) } {
            Ok(target) => {
                set_errno(saved);
                let (a, l) = target.addr(addr, len);
                // SAFETY: `a` is the caller's address or the mapped one, valid for `l` bytes.
                outside(|| unsafe { real(fd, a, l) })
            }
            Err(e) => { set_errno(e); -1 }
        }
    }

    fn sendto(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr, len: socklen_t) -> ssize_t, missing: -1;
    |real| {
        if addr.is_null() {
            // SAFETY: the caller's arguments go unchanged to the real sendto(2).
            return outside(|| unsafe { real(fd, buf, n, flags, addr, len) });
        }
        let saved = crate::hook::errno();
        // SAFETY: `addr` is valid for `len` bytes (sendto's contract).
        match unsafe { destination(fd, addr, len) } {
            Ok(target) => {
                set_errno(saved);
                let (a, l) = target.addr(addr, len);
                // SAFETY: the caller's buffer; `a` the caller's address or the mapped one.
                outside(|| unsafe { real(fd, buf, n, flags, a, l) })
            }
            Err(e) => { set_errno(e); -1 }
        }
    }

    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t, missing: -1;
    |real| {
        // SAFETY: `msg` is null or a readable msghdr (sendmsg(2)'s contract).
        let Some(header) = (unsafe { msg.as_ref() }).filter(|h| !h.msg_name.is_null()) else {
            // SAFETY: the caller's arguments go unchanged to the real sendmsg(2).
            return outside(|| unsafe { real(fd, msg, flags) });
        };
        let saved = crate::hook::errno();
        let name = header.msg_name as *const sockaddr;
        // SAFETY: `msg_name` is valid for `msg_namelen` bytes (sendmsg's contract).
        match unsafe { destination(fd, name, header.msg_namelen) } {
            // SAFETY: the caller's arguments go unchanged to the real sendmsg(2).
            Ok(Target::Same) => { set_errno(saved); outside(|| unsafe { real(fd, msg, flags) }) }
            Ok(target) => {
                set_errno(saved);
                let (a, l) = target.addr(name, header.msg_namelen);
                let mut copy = *header;
                copy.msg_name = a as *mut c_void;
                copy.msg_namelen = l;
                // SAFETY: the caller's message with its address mapped (`a`, `l` bytes).
                outside(|| unsafe { real(fd, &copy, flags) })
            }
            Err(e) => { set_errno(e); -1 }
        }
    }

    fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> ssize_t, missing: -1;
    |real| {
        // SAFETY: `len` is null or a readable socklen_t (recvfrom(2)'s contract).
        let room = if len.is_null() { 0 } else { (unsafe { *len }) as usize };
        // SAFETY: the caller's arguments go unchanged to the real recvfrom(2).
        let rc = outside(|| unsafe { real(fd, buf, n, flags, addr, len) });
        if rc >= 0 {
            if let Some(net) = super::get() {
                // SAFETY: `addr` holds `room` bytes and `len` is as recvfrom left them.
                unsafe { report(net, fd, addr, len, room) };
            }
        }
        rc
    }

    /// Each message's destination as sendmsg's; the messages go in chunks, and the
    /// count sent is the kernel's (a destination refused after some were sent ends
    /// the call with that count, as a failed send does).
    fn sendmmsg(fd: c_int, vec: *mut mmsghdr, vlen: c_uint, flags: c_int) -> c_int, missing: -1;
    |real| {
        // SAFETY: `v` is the caller's vector or a copy of its part, of `n` messages.
        let send = |v, n| outside(|| unsafe { real(fd, v, n, flags) });
        if vec.is_null() || vlen == 0 {
            return send(vec, vlen);
        }
        // SAFETY: `vec` holds `vlen` messages (sendmmsg(2)'s contract).
        unsafe { send_many(fd, vec, vlen as usize, send) }
    }

    /// Each message's source address as recvmsg's.
    fn recvmmsg(fd: c_int, vec: *mut mmsghdr, vlen: c_uint, flags: c_int, timeout: *mut libc::timespec) -> c_int, missing: -1;
    |real| {
        // The kernel fills at most UIO_MAXIOV messages.
        let mut rooms = [0 as socklen_t; UIO_MAXIOV];
        let n = if vec.is_null() { 0 } else { (vlen as usize).min(UIO_MAXIOV) };
        for (i, room) in rooms.iter_mut().enumerate().take(n) {
            // SAFETY: `vec` holds `vlen` messages (recvmmsg(2)'s contract) and `i < vlen`.
            *room = unsafe { (*vec.add(i)).msg_hdr.msg_namelen };
        }
        // SAFETY: the caller's arguments go unchanged to the real recvmmsg(2).
        let rc = outside(|| unsafe { real(fd, vec, vlen, flags, timeout) });
        if rc > 0 {
            if let Some(net) = super::get() {
                for (i, &room) in rooms.iter().enumerate().take((rc as usize).min(n)) {
                    // SAFETY: `i` is below the count the kernel filled, within `vec`.
                    let hdr = unsafe { &mut (*vec.add(i)).msg_hdr };
                    // SAFETY: `msg_name` holds `room` bytes, the length as the kernel left it.
                    unsafe { report(net, fd, hdr.msg_name.cast(), &mut hdr.msg_namelen, room as usize) };
                }
            }
        }
        rc
    }

    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t, missing: -1;
    |real| {
        // SAFETY: `msg` is null or a readable msghdr (recvmsg(2)'s contract).
        let room = if msg.is_null() { 0 } else { (unsafe { (*msg).msg_namelen }) as usize };
        // SAFETY: the caller's arguments go unchanged to the real recvmsg(2).
        let rc = outside(|| unsafe { real(fd, msg, flags) });
        if rc >= 0 && !msg.is_null() {
            if let Some(net) = super::get() {
                // SAFETY: `msg` is non-null, the caller's header the kernel just filled.
                let hdr = unsafe { &mut *msg };
                // SAFETY: `msg_name` holds `room` bytes, the length as the kernel left it.
                unsafe { report(net, fd, hdr.msg_name.cast(), &mut hdr.msg_namelen, room) };
            }
        }
        rc
    }

    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int, missing: -1;
    |real| {
        // SAFETY: `len` is null or a readable socklen_t (accept(2)'s contract).
        let room = if len.is_null() { 0 } else { (unsafe { *len }) as usize };
        // SAFETY: the caller's arguments go unchanged to the real accept(2).
        let rc = outside(|| unsafe { real(fd, addr, len) });
        if rc >= 0 {
            if let Some(net) = super::get() {
                // SAFETY: `addr` holds `room` bytes and `len` is as accept left them.
                unsafe { report(net, rc, addr, len, room) };
            }
        }
        rc
    }

    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int, missing: -1;
    |real| {
        // SAFETY: `len` is null or a readable socklen_t (accept4(2)'s contract).
        let room = if len.is_null() { 0 } else { (unsafe { *len }) as usize };
        // SAFETY: the caller's arguments go unchanged to the real accept4(2).
        let rc = outside(|| unsafe { real(fd, addr, len, flags) });
        if rc >= 0 {
            if let Some(net) = super::get() {
                // SAFETY: `addr` holds `room` bytes and `len` is as accept4 left them.
                unsafe { report(net, rc, addr, len, room) };
            }
        }
        rc
    }

    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int, missing: -1;
    |real| {
        // SAFETY: `len` is null or a readable socklen_t (getpeername(2)'s contract).
        let room = if len.is_null() { 0 } else { (unsafe { *len }) as usize };
        // SAFETY: the caller's arguments go unchanged to the real getpeername(2).
        let rc = unsafe { real(fd, addr, len) };
        if rc == 0 {
            if let Some(net) = super::get() {
                // SAFETY: `addr` holds `room` bytes and `len` is as getpeername left them.
                unsafe { report(net, fd, addr, len, room) };
            }
        }
        rc
    }

    /// The address a socket was bound to, in capsule terms.
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int, missing: -1, support: Partial("a unix socket's path is known when it was bound in this process");
    |real| {
        // SAFETY: `len` is null or a readable socklen_t (getsockname(2)'s contract).
        let room = if len.is_null() { 0 } else { (unsafe { *len }) as usize };
        // SAFETY: the caller's arguments go unchanged to the real getsockname(2).
        let rc = unsafe { real(fd, addr, len) };
        if rc != 0 || addr.is_null() || len.is_null() {
            return rc;
        }
        // SAFETY: `len` is non-null, what getsockname just wrote.
        let filled = unsafe { *len };
        // SAFETY: `addr` holds the `filled` bytes getsockname wrote (at most `room`).
        if crate::fs::layers().is_some() && unsafe { sockets::path_of(addr, filled) }.is_some() {
            if let Some(name) = sockets::name_of(fd) {
                let bytes = name.to_bytes_with_nul();
                let family = std::mem::size_of::<libc::sa_family_t>();
                let space = room.saturating_sub(family);
                // SAFETY: `addr` is the caller's buffer, a unix address (path_of said so).
                let un = unsafe { &mut *(addr as *mut libc::sockaddr_un) };
                for (i, slot) in un.sun_path.iter_mut().enumerate().take(space.min(bytes.len())) {
                    *slot = bytes[i] as libc::c_char;
                }
                // SAFETY: `len` is non-null and writable (getsockname's contract).
                unsafe { *len = (family + bytes.len()) as socklen_t };
            }
            return rc;
        }
        if let Some(net) = super::get() {
            // SAFETY: `addr` holds `room` bytes and `len` is as getsockname left them.
            unsafe { report(net, fd, addr, len, room) };
        }
        rc
    }

    /// A capsule's name resolves to its loopback address; everything else is the
    /// host resolver's.
    fn getaddrinfo(node: *const c_char, service: *const c_char, hints: *const addrinfo, res: *mut *mut addrinfo) -> c_int, missing: libc::EAI_SYSTEM;
    |real| {
        // SAFETY: `node` is null or a C string (getaddrinfo(3)'s contract).
        let Some(ip) = (unsafe { resolve(node) }) else {
            // SAFETY: the caller's arguments go unchanged to the real getaddrinfo(3).
            return unsafe { real(node, service, hints, res) };
        };
        // SAFETY: `hints` is null or a readable addrinfo; all-zero is an empty one.
        let mut ask: addrinfo = unsafe { hints.as_ref() }.copied().unwrap_or(unsafe { std::mem::zeroed() });
        if ask.ai_family != libc::AF_INET && ask.ai_family != libc::AF_INET6 {
            ask.ai_family = libc::AF_INET;
        }
        // Numeric, and loopback counts even on a host without other addresses.
        ask.ai_flags = (ask.ai_flags | libc::AI_NUMERICHOST) & !libc::AI_ADDRCONFIG;
        let mut text = [0u8; 32];
        let numeric = names::numeric(ip, ask.ai_family, &mut text);
        // SAFETY: `numeric` is a C string in `text`, `ask` a local addrinfo; the rest
        // is the caller's.
        let rc = unsafe { real(numeric, service, &ask, res) };
        // SAFETY: on success the real getaddrinfo wrote the list head to `*res`.
        if rc == 0 && ask.ai_flags & libc::AI_CANONNAME != 0 && !unsafe { *res }.is_null() {
            // freeaddrinfo frees the canonical name on its own.
            // SAFETY: `*res` is the non-null first entry of the list just made.
            let first = unsafe { &mut **res };
            // SAFETY: the canonical name is getaddrinfo's own malloc'd string (or null).
            unsafe { libc::free(first.ai_canonname.cast()) };
            // SAFETY: `node` is a C string (resolve found it).
            first.ai_canonname = unsafe { libc::strdup(node) };
        }
        rc
    }

    fn gethostbyname(name: *const c_char) -> *mut hostent, missing: std::ptr::null_mut();
    // SAFETY: `name` is null or a C string (gethostbyname(3)'s contract), given unchanged to both.
    |real| unsafe { by_name_static(name, libc::AF_INET) }.unwrap_or_else(|| unsafe { real(name) })

    fn gethostbyname2(name: *const c_char, family: c_int) -> *mut hostent, missing: std::ptr::null_mut();
    // SAFETY: `name` is null or a C string (gethostbyname2(3)'s contract), given unchanged to both.
    |real| unsafe { by_name_static(name, family) }.unwrap_or_else(|| unsafe { real(name, family) })

    fn gethostbyname_r(name: *const c_char, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int, missing: libc::ENOSYS;
    // SAFETY: the caller's arguments as gethostbyname_r(3) takes them, given unchanged to both.
    |real| unsafe { by_name_r(name, libc::AF_INET, ret, buf, buflen, result) }
        // SAFETY: the caller's arguments go unchanged to the real call.
        .unwrap_or_else(|| unsafe { real(name, ret, buf, buflen, result, h_errnop) })

    fn gethostbyname2_r(name: *const c_char, family: c_int, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int, missing: libc::ENOSYS;
    // SAFETY: the caller's arguments as gethostbyname2_r(3) takes them, given unchanged to both.
    |real| unsafe { by_name_r(name, family, ret, buf, buflen, result) }
        // SAFETY: the caller's arguments go unchanged to the real call.
        .unwrap_or_else(|| unsafe { real(name, family, ret, buf, buflen, result, h_errnop) })

    /// A peer's address gives its name back, as getnameinfo.
    fn gethostbyaddr(addr: *const c_void, len: socklen_t, family: c_int) -> *mut hostent, missing: std::ptr::null_mut();
    // SAFETY: `addr` is valid for `len` bytes (gethostbyaddr(3)'s contract), given unchanged to both.
    |real| unsafe { by_addr_static(addr, len, family) }.unwrap_or_else(|| unsafe { real(addr, len, family) })

    fn gethostbyaddr_r(addr: *const c_void, len: socklen_t, family: c_int, ret: *mut hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut hostent, h_errnop: *mut c_int) -> c_int, missing: libc::ENOSYS;
    // SAFETY: the caller's arguments as gethostbyaddr_r(3) takes them, given unchanged to both.
    |real| unsafe { by_addr_r(addr, len, family, ret, buf, buflen, result) }
        // SAFETY: the caller's arguments go unchanged to the real call.
        .unwrap_or_else(|| unsafe { real(addr, len, family, ret, buf, buflen, result, h_errnop) })

    /// A peer's address gives its name back.
    fn getnameinfo(addr: *const sockaddr, len: socklen_t, host: *mut c_char, hostlen: socklen_t, serv: *mut c_char, servlen: socklen_t, flags: c_int) -> c_int, missing: libc::EAI_SYSTEM;
    |real| {
        // SAFETY: `addr` is valid for `len` bytes (getnameinfo(3)'s contract).
        let inet = unsafe { Inet::read(addr, len) };
        let peer = match (super::get(), inet) {
            (Some(net), Some(inet)) if !host.is_null() && hostlen > 0 && flags & libc::NI_NUMERICHOST == 0 => match inet.place() {
                Place::Peer(i) => names::peer_name(net, i),
                _ => None,
            },
            _ => None,
        };
        let Some(name) = peer else {
            // SAFETY: the caller's arguments go unchanged to the real getnameinfo(3).
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
}

/// The capsule-set address of `node`, if it names a capsule.
unsafe fn resolve(node: *const c_char) -> Option<[u8; 4]> {
    // SAFETY: `node` is null (checked) or the program's C string, as getaddrinfo's caller
    // must give.
    unsafe {
        let net = super::get()?;
        if node.is_null() {
            return None;
        }
        let host = crate::uts::ops::current(runtime::get(), crate::uts::ops::Name::Host);
        names::lookup(
            net,
            CStr::from_ptr(node).to_bytes(),
            host.as_ref().map(|h| h.as_bytes()),
        )
    }
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

unsafe fn by_name_static(name: *const c_char, family: c_int) -> Option<*mut hostent> {
    // SAFETY: `name` is the program's C string (gethostbyname's contract); the static entry
    // is only used by these non-reentrant calls, whose results glibc also shares between
    // threads.
    unsafe {
        let ip = resolve(name)?;
        let ent = &mut *STATIC_HOST.ent.get();
        let buf = &mut *STATIC_HOST.buf.get();
        let text = CStr::from_ptr(name).to_bytes();
        match names::fill_hostent(ent, text, ip, family, buf.as_mut_ptr(), buf.len()) {
            Ok(()) => Some(ent),
            Err(_) => None,
        }
    }
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
    // SAFETY: `addr` is null (checked) or valid for `len` bytes (the `# Safety` contract).
    unsafe {
        let net = super::get()?;
        if addr.is_null() {
            return None;
        }
        let bytes = std::slice::from_raw_parts(addr.cast::<u8>(), len as usize);
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
}

unsafe fn by_addr_static(
    addr: *const c_void,
    len: socklen_t,
    family: c_int,
) -> Option<*mut hostent> {
    // SAFETY: `addr` is null or valid for `len` bytes (gethostbyaddr's contract); the
    // static entry is only used by these non-reentrant calls, whose results glibc also
    // shares between threads.
    unsafe {
        let (name, ip) = peer_at(addr, len, family)?;
        let ent = &mut *STATIC_HOST.ent.get();
        let buf = &mut *STATIC_HOST.buf.get();
        names::fill_hostent(
            ent,
            name.as_bytes(),
            ip,
            family,
            buf.as_mut_ptr(),
            buf.len(),
        )
        .ok()?;
        Some(ent)
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn by_addr_r(
    addr: *const c_void,
    len: socklen_t,
    family: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
) -> Option<c_int> {
    // SAFETY: the program's gethostbyaddr_r arguments: `addr` valid for `len` bytes, `ret`
    // and `result` writable, `buf` valid for `buflen` bytes.
    unsafe {
        let (name, ip) = peer_at(addr, len, family)?;
        if !result.is_null() {
            *result = std::ptr::null_mut();
        }
        match names::fill_hostent(&mut *ret, name.as_bytes(), ip, family, buf, buflen) {
            Ok(()) => {
                if !result.is_null() {
                    *result = ret;
                }
                Some(0)
            }
            Err(e) => Some(e),
        }
    }
}

unsafe fn by_name_r(
    name: *const c_char,
    family: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
) -> Option<c_int> {
    // SAFETY: the program's gethostbyname*_r arguments: `name` a C string, `ret` and
    // `result` writable, `buf` valid for `buflen` bytes.
    unsafe {
        if family != libc::AF_INET && family != libc::AF_INET6 {
            return None;
        }
        let ip = resolve(name)?;
        let text = CStr::from_ptr(name).to_bytes();
        if !result.is_null() {
            *result = std::ptr::null_mut();
        }
        match names::fill_hostent(&mut *ret, text, ip, family, buf, buflen) {
            Ok(()) => {
                if !result.is_null() {
                    *result = ret;
                }
                Some(0)
            }
            Err(e) => Some(e),
        }
    }
}
