//! The socket calls in capsule terms. Each takes the real function and the caller's
//! arguments, gives the kernel the host form of the address it names (a unix path
//! in the capsule, an abstract name under the capsule's prefix, a capsule port as
//! its host port) and shows the addresses the kernel reports back in capsule terms.
//! `hooks.rs` only declares the exports.
//!
//! Each `pub unsafe fn` here has the contract of the call it implements: the
//! pointers are the program's, as that call takes them, and `real` is the real
//! function of that name.

use std::ffi::{c_int, c_uint, c_void};

use capsule_config::Proto;
use libc::{mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::addr::{Inet, Place};
use super::{ports, unix, Net};
use crate::fs::sockets;
use crate::hook::{errno, errno_kept, fail, outside, set_errno, Convention, Skip};

/// The real `bind` or `connect`.
pub type AddrCall = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
/// The real `accept`, `getpeername` or `getsockname`.
pub type NameCall = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
/// The real `accept4`.
pub type Accept4 = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
/// The real `sendto`.
pub type SendTo = unsafe extern "C" fn(
    c_int,
    *const c_void,
    size_t,
    c_int,
    *const sockaddr,
    socklen_t,
) -> ssize_t;
/// The real `sendmsg`.
pub type SendMsg = unsafe extern "C" fn(c_int, *const msghdr, c_int) -> ssize_t;
/// The real `recvfrom`.
pub type RecvFrom = unsafe extern "C" fn(
    c_int,
    *mut c_void,
    size_t,
    c_int,
    *mut sockaddr,
    *mut socklen_t,
) -> ssize_t;
/// The real `recvmsg`.
pub type RecvMsg = unsafe extern "C" fn(c_int, *mut msghdr, c_int) -> ssize_t;
/// The real `sendmmsg`.
pub type SendMmsg = unsafe extern "C" fn(c_int, *mut mmsghdr, c_uint, c_int) -> c_int;
/// The real `recvmmsg`.
pub type RecvMmsg =
    unsafe extern "C" fn(c_int, *mut mmsghdr, c_uint, c_int, *mut libc::timespec) -> c_int;

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
    // SAFETY: `addr` is null or valid for `len` bytes (this function's contract).
    if let Some(path) = unsafe { sockets::path_of(addr, len) } {
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
    // SAFETY: as above.
    if let Some(name) = unsafe { unix::abstract_name(addr, len) } {
        return match &net.abstract_prefix {
            Some(prefix) => unix::to_host(prefix, name).map(Target::Abstract),
            None => Ok(Target::Same),
        };
    }
    // SAFETY: as above.
    let Some(mut inet) = (unsafe { Inet::read(addr, len) }) else {
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

/// `send` towards the host form of destination `addr` (errno as the caller had it),
/// or the failure the destination gives (`ECONNREFUSED` from a peer's closed port).
///
/// # Safety
/// `addr` is null or valid for `len` bytes.
unsafe fn towards<R: Convention>(
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
    send: impl FnOnce(&Target) -> R,
) -> R {
    // SAFETY: `addr` is null or valid for `len` bytes (this function's contract).
    match errno_kept(|| unsafe { destination(fd, addr, len) }) {
        Ok(target) => send(&target),
        Err(e) => fail(e),
    }
}

/// How many bytes an address buffer whose length is at `len` holds (0 for none).
///
/// # Safety
/// `len` is null or a readable `socklen_t`.
unsafe fn room(len: *const socklen_t) -> usize {
    if len.is_null() {
        0
    } else {
        // SAFETY: `len` is not null, so readable (this function's contract).
        (unsafe { *len }) as usize
    }
}

/// Turns an address the kernel reported for socket `fd` into the capsule's view, in
/// place (nothing when no replica changes it). `room` is how many bytes the
/// caller's buffer holds; `which` says what the address is.
///
/// # Safety
/// `addr` is valid for `room` bytes and `len` is valid, or either is null.
unsafe fn report(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    room: usize,
    which: sockets::Reported,
) {
    // The caller's call succeeded: its errno stays as the caller found it.
    errno_kept(|| {
        // SAFETY: `addr` is valid for `room` bytes and `len` is valid, or either is
        // null (this function's contract).
        if unsafe { report_unix(fd, addr, len, room, which) } {
            return;
        }
        if let Some(net) = super::get() {
            // SAFETY: as above.
            unsafe { translate_reported(net, fd, addr, len, room) };
        }
    });
}

/// A unix path the kernel reported shows as the capsule path, cut to `room` and
/// with the length the kernel would give for it (`sun_path`'s offset, the path and
/// its NUL). True when the address is a unix path (translated or left as it is).
///
/// # Safety
/// As `report`.
unsafe fn report_unix(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    room: usize,
    which: sockets::Reported,
) -> bool {
    let family = std::mem::size_of::<libc::sa_family_t>();
    let Some(layers) = crate::fs::layers() else {
        return false;
    };
    if addr.is_null() || len.is_null() || room < family {
        return false;
    }
    // SAFETY: `len` is valid and `addr` holds at least the family (checked above).
    let (filled, is_unix) = unsafe {
        (
            *len as usize,
            c_int::from((*addr).sa_family) == libc::AF_UNIX,
        )
    };
    if !is_unix || filled <= family {
        return false;
    }
    // The whole address: the caller's buffer, or (cut short there) asked again.
    // SAFETY: sockaddr_un is plain data, for which all zeroes is a valid value.
    let mut whole: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let whole_at: *mut sockaddr = (&mut whole as *mut libc::sockaddr_un).cast();
    let mut whole_len = std::mem::size_of::<libc::sockaddr_un>() as socklen_t;
    if filled <= room {
        let n = filled.min(whole_len as usize);
        // SAFETY: `addr` holds `filled` bytes the kernel wrote; `whole` has room for `n`.
        unsafe { std::ptr::copy_nonoverlapping(addr.cast::<u8>(), whole_at.cast::<u8>(), n) };
        whole_len = n as socklen_t;
    } else {
        let again = match which {
            sockets::Reported::Own => libc::getsockname,
            sockets::Reported::Peer => libc::getpeername,
            // A datagram's source cannot be asked again.
            sockets::Reported::Source => return true,
        };
        // SAFETY: `whole` is writable for `whole_len` bytes.
        if unsafe { again(fd, whole_at, &mut whole_len) } != 0 {
            return true;
        }
    }
    // SAFETY: `whole` holds `whole_len` bytes of the address.
    let Some(kernel) = (unsafe { sockets::path_of(whole_at, whole_len) }) else {
        // Abstract or unnamed: the network replica's, if anyone's.
        return false;
    };
    let mut capsule = crate::fs::path::PathBuf::new();
    if !sockets::capsule_name(layers, fd, kernel, which, &mut capsule) {
        return true;
    }
    let path = capsule.as_bytes();
    let full = family + path.len() + 1;
    let space = room - family;
    // SAFETY: the caller's buffer holds `room` bytes: `space` after the family.
    unsafe {
        let sun_path = addr.cast::<u8>().add(family);
        let n = path.len().min(space);
        std::ptr::copy_nonoverlapping(path.as_ptr(), sun_path, n);
        if path.len() < space {
            *sun_path.add(path.len()) = 0;
        }
        *len = full as socklen_t;
    }
    true
}

/// `report`'s work.
///
/// # Safety
/// As `report`.
unsafe fn translate_reported(
    net: &Net,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    room: usize,
) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: `len` is not null, so valid (this function's contract).
    let filled = unsafe { *len };
    if filled as usize > room {
        return;
    }
    if let Some(prefix) = &net.abstract_prefix {
        // SAFETY: `addr` holds `room` bytes, of which the kernel filled `filled`.
        if unsafe { unix::abstract_name(addr, filled) }.is_some() {
            // SAFETY: `addr` is valid for `room` bytes and `len` is valid.
            unsafe { unix::strip(prefix, addr, len, room) };
            return;
        }
    }
    // SAFETY: as above.
    let Some(mut inet) = (unsafe { Inet::read(addr, filled) }) else {
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
    // SAFETY: `addr` is valid for `room` bytes, what `out_len` says.
    unsafe { inet.write(addr, &mut out_len) };
    // SAFETY: `len` is not null (checked above), so valid.
    unsafe { *len = out_len };
}

/// bind: a unix path is created in the capsule, an abstract name gets the capsule's
/// prefix, an internet port is mapped to a host port.
///
/// # Safety
/// bind(2)'s contract; `real` is the real bind.
pub unsafe fn bind(real: AddrCall, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: `a` is the caller's address or one the shim built, valid for `l` bytes;
    // `fd` is the caller's (bind(2)'s contract).
    let call = |a: *const sockaddr, l| unsafe { real(fd, a, l) };
    // SAFETY: `addr` is null or valid for `len` bytes (bind's contract).
    let path = unsafe { sockets::path_of(addr, len) };
    if let (Some(layers), Some(path)) = (crate::fs::layers(), path) {
        return match errno_kept(|| sockets::bind(layers, path)) {
            Ok((host_addr, host, capsule)) => {
                let rc = call(
                    (&host_addr.addr as *const libc::sockaddr_un).cast(),
                    host_addr.len,
                );
                if rc == 0 {
                    crate::fs::owner::after_create(&host);
                    sockets::bound(fd, &host_addr, &capsule);
                }
                rc
            }
            Err(Skip::Pass) => call(addr, len),
            Err(Skip::Errno(e)) => fail(e),
        };
    }
    let Some(net) = super::get() else {
        return call(addr, len);
    };
    // SAFETY: as above.
    if let Some(name) = unsafe { unix::abstract_name(addr, len) } {
        return match &net.abstract_prefix {
            Some(prefix) => match unix::to_host(prefix, name) {
                Ok(a) => call((&a.addr as *const libc::sockaddr_un).cast(), a.len),
                Err(e) => fail(e),
            },
            None => call(addr, len),
        };
    }
    // SAFETY: as above.
    match unsafe { Inet::read(addr, len) } {
        Some(inet) => bind_inet(net, fd, inet, call),
        None => call(addr, len),
    }
}

/// bind of an internet address: the capsule port becomes a host port.
fn bind_inet(
    net: &Net,
    fd: c_int,
    mut inet: Inet,
    real: impl Fn(*const sockaddr, socklen_t) -> c_int,
) -> c_int {
    match inet.place() {
        Place::Peer(i) if Some(i) == net.ports.own_index() => inet.set_loopback(),
        Place::Peer(_) => return fail(libc::EADDRNOTAVAIL),
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
    if rc == 0 {
        errno_kept(|| record_bound(net, fd, proto, port));
    }
    rc
}

/// Records in the port table which host port socket `fd` was bound to for capsule
/// port `port`.
fn record_bound(net: &Net, fd: c_int, proto: Proto, port: u16) {
    // SAFETY: sockaddr_in6 is plain data, for which all zeroes is a valid value.
    let mut bound: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in6>() as socklen_t;
    let at: *mut sockaddr = (&mut bound as *mut libc::sockaddr_in6).cast();
    // SAFETY: `at` is `bound`, writable for `len` bytes.
    if unsafe { libc::getsockname(fd, at, &mut len) } != 0 {
        return;
    }
    // SAFETY: `at` holds the `len` bytes getsockname wrote.
    if let Some(actual) = unsafe { Inet::read(at, len) } {
        net.ports.record(proto, port, actual.port());
        log::debug!(
            "bound capsule port {port}/{} as host port {}",
            proto.as_str(),
            actual.port()
        );
    }
}

/// connect: reaches the capsule's own ports, its peers' by their addresses, unix
/// paths in the capsule and the capsule's abstract names.
///
/// # Safety
/// connect(2)'s contract; `real` is the real connect.
pub unsafe fn connect(real: AddrCall, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let send = |target: &Target| {
        let (a, l) = target.addr(addr, len);
        // SAFETY: `a` is the caller's address or the mapped one, valid for `l` bytes;
        // `fd` is the caller's.
        let rc = outside(|| unsafe { real(fd, a, l) });
        if let (0, Target::Unix(host)) = (rc, target) {
            // SAFETY: `addr` is valid for `len` bytes (connect's contract).
            if let Some(path) = unsafe { sockets::path_of(addr, len) } {
                errno_kept(|| sockets::connected(fd, host, path));
            }
        }
        rc
    };
    // SAFETY: `addr` is valid for `len` bytes (connect's contract).
    unsafe { towards(fd, addr, len, send) }
}

/// sendto, to the destination's host form.
///
/// # Safety
/// sendto(2)'s contract; `real` is the real sendto.
pub unsafe fn sendto(
    real: SendTo,
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    // SAFETY: the caller's buffer; `a` the caller's address or the mapped one, valid
    // for `l` bytes.
    let send = |a, l| outside(|| unsafe { real(fd, buf, n, flags, a, l) });
    if addr.is_null() {
        return send(addr, len);
    }
    let mapped = |target: &Target| {
        let (a, l) = target.addr(addr, len);
        send(a, l)
    };
    // SAFETY: `addr` is valid for `len` bytes (sendto's contract).
    unsafe { towards(fd, addr, len, mapped) }
}

/// sendmsg, to the destination's host form.
///
/// # Safety
/// sendmsg(2)'s contract; `real` is the real sendmsg.
pub unsafe fn sendmsg(real: SendMsg, fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: `m` is the caller's message or its copy with the address mapped.
    let send = |m| outside(|| unsafe { real(fd, m, flags) });
    // SAFETY: `msg` is null or a readable msghdr (sendmsg's contract).
    let Some(header) = (unsafe { msg.as_ref() }).filter(|h| !h.msg_name.is_null()) else {
        return send(msg);
    };
    let name = header.msg_name as *const sockaddr;
    let mapped = |target: &Target| match target {
        Target::Same => send(msg),
        target => {
            let (a, l) = target.addr(name, header.msg_namelen);
            let mut copy = *header;
            copy.msg_name = a as *mut c_void;
            copy.msg_namelen = l;
            send(&copy)
        }
    };
    // SAFETY: `msg_name` is valid for `msg_namelen` bytes (sendmsg's contract).
    unsafe { towards(fd, name, header.msg_namelen, mapped) }
}

/// The most messages one sendmmsg/recvmmsg system call handles (the kernel's
/// UIO_MAXIOV).
const UIO_MAXIOV: usize = 1024;
/// How many messages of a sendmmsg call are rewritten and sent at a time.
const MMSG_CHUNK: usize = 32;

/// sendmmsg: each message's destination as sendmsg's; the messages go in chunks, and
/// the count sent is the kernel's (a destination refused after some were sent ends
/// the call with that count, as a failed send does).
///
/// # Safety
/// sendmmsg(2)'s contract; `real` is the real sendmmsg.
pub unsafe fn sendmmsg(
    real: SendMmsg,
    fd: c_int,
    vec: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
) -> c_int {
    // SAFETY: `v` is the caller's vector or a copy of its part, of `n` messages.
    let send = |v, n| outside(|| unsafe { real(fd, v, n, flags) });
    if vec.is_null() || vlen == 0 {
        return send(vec, vlen);
    }
    // SAFETY: `vec` holds `vlen` messages (sendmmsg's contract).
    unsafe { send_many(fd, vec, vlen as usize, send) }
}

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
    // Not `errno_kept`: a send that fails after some messages went ends the call
    // with their count and the caller's errno.
    let saved = errno();
    let mut sent = 0usize;
    while sent < total {
        let n = (total - sent).min(MMSG_CHUNK);
        let mut targets: [Option<Target>; MMSG_CHUNK] = Default::default();
        // SAFETY: mmsghdr is plain data, for which all zeroes is a valid value.
        let mut copies: [mmsghdr; MMSG_CHUNK] = unsafe { std::mem::zeroed() };
        let mut ready = 0;
        let mut refused = None;
        for i in 0..n {
            // SAFETY: `sent + i < total`, a message of `vec` (this function's contract).
            let original = unsafe { &*vec.add(sent + i) };
            let mut copy = *original;
            let name = original.msg_hdr.msg_name as *const sockaddr;
            if !name.is_null() {
                let namelen = original.msg_hdr.msg_namelen;
                // SAFETY: `msg_name` is valid for `msg_namelen` bytes (sendmmsg's contract).
                match errno_kept(|| unsafe { destination(fd, name, namelen) }) {
                    Ok(Target::Same) => {}
                    Ok(target) => {
                        let target = targets[i].insert(target);
                        let (a, l) = target.addr(name, namelen);
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
            let rc = send(copies.as_mut_ptr(), ready as c_uint);
            if rc < 0 {
                if sent == 0 {
                    return rc;
                }
                break;
            }
            let rc = rc as usize;
            for (i, copy) in copies.iter().enumerate().take(rc) {
                // SAFETY: `sent + i < total`, a message of `vec`, which the caller
                // lets the call write.
                unsafe { (*vec.add(sent + i)).msg_len = copy.msg_len };
            }
            sent += rc;
            if rc < ready {
                break;
            }
        }
        if let Some(e) = refused {
            if sent == 0 {
                return fail(e);
            }
            break;
        }
    }
    set_errno(saved);
    sent as c_int
}

/// recvfrom, with the source address in capsule terms.
///
/// # Safety
/// recvfrom(2)'s contract; `real` is the real recvfrom.
pub unsafe fn recvfrom(
    real: RecvFrom,
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    // SAFETY: `len` is null or a readable socklen_t (recvfrom's contract).
    let room = unsafe { room(len) };
    // SAFETY: the caller's arguments go unchanged to the real recvfrom.
    let rc = outside(|| unsafe { real(fd, buf, n, flags, addr, len) });
    if rc >= 0 {
        // SAFETY: `addr` holds `room` bytes and `len` is as recvfrom left them.
        unsafe { report(fd, addr, len, room, sockets::Reported::Source) };
    }
    rc
}

/// recvmsg, with the source address in capsule terms.
///
/// # Safety
/// recvmsg(2)'s contract; `real` is the real recvmsg.
pub unsafe fn recvmsg(real: RecvMsg, fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    // SAFETY: `msg` is null or a readable msghdr (recvmsg's contract).
    let room = unsafe { msg.as_ref() }.map_or(0, |h| h.msg_namelen as usize);
    // SAFETY: the caller's arguments go unchanged to the real recvmsg.
    let rc = outside(|| unsafe { real(fd, msg, flags) });
    // SAFETY: `msg` is null or the caller's header, which the kernel just filled.
    if let (true, Some(hdr)) = (rc >= 0, unsafe { msg.as_mut() }) {
        // SAFETY: `msg_name` holds `room` bytes, the length as the kernel left it.
        unsafe {
            report(
                fd,
                hdr.msg_name.cast(),
                &mut hdr.msg_namelen,
                room,
                sockets::Reported::Source,
            )
        };
    }
    rc
}

/// recvmmsg: each message's source address as recvmsg's.
///
/// # Safety
/// recvmmsg(2)'s contract; `real` is the real recvmmsg.
pub unsafe fn recvmmsg(
    real: RecvMmsg,
    fd: c_int,
    vec: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    // The kernel fills at most UIO_MAXIOV messages.
    let mut rooms = [0 as socklen_t; UIO_MAXIOV];
    let n = if vec.is_null() {
        0
    } else {
        (vlen as usize).min(UIO_MAXIOV)
    };
    for (i, room) in rooms.iter_mut().enumerate().take(n) {
        // SAFETY: `vec` holds `vlen` messages (recvmmsg's contract) and `i < vlen`.
        *room = unsafe { (*vec.add(i)).msg_hdr.msg_namelen };
    }
    // SAFETY: the caller's arguments go unchanged to the real recvmmsg.
    let rc = outside(|| unsafe { real(fd, vec, vlen, flags, timeout) });
    if rc > 0 && (super::get().is_some() || crate::fs::layers().is_some()) {
        for (i, &room) in rooms.iter().enumerate().take((rc as usize).min(n)) {
            // SAFETY: `i` is below the count the kernel filled, within `vec`.
            let hdr = unsafe { &mut (*vec.add(i)).msg_hdr };
            // SAFETY: `msg_name` holds `room` bytes, the length as the kernel left it.
            unsafe {
                report(
                    fd,
                    hdr.msg_name.cast(),
                    &mut hdr.msg_namelen,
                    room as usize,
                    sockets::Reported::Source,
                )
            };
        }
    }
    rc
}

/// A call that makes a connected socket (`accept`, `accept4`), with the peer's
/// address it reports in capsule terms.
///
/// # Safety
/// `len` is null or readable, and `addr` holds `*len` bytes, as `call` takes them.
unsafe fn accepted(
    addr: *mut sockaddr,
    len: *mut socklen_t,
    call: impl FnOnce() -> c_int,
) -> c_int {
    // SAFETY: `len` is null or a readable socklen_t (this function's contract).
    let room = unsafe { room(len) };
    let rc = call();
    if rc >= 0 {
        // SAFETY: `addr` holds `room` bytes and `len` is as the call left them. The
        // peer of the new socket, which getpeername can ask again.
        unsafe { report(rc, addr, len, room, sockets::Reported::Peer) };
    }
    rc
}

/// accept.
///
/// # Safety
/// accept(2)'s contract; `real` is the real accept.
pub unsafe fn accept(real: NameCall, fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments go unchanged to the real accept.
    let call = || outside(|| unsafe { real(fd, addr, len) });
    // SAFETY: `addr` and `len` as accept takes them.
    unsafe { accepted(addr, len, call) }
}

/// accept4.
///
/// # Safety
/// accept4(2)'s contract; `real` is the real accept4.
pub unsafe fn accept4(
    real: Accept4,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's arguments go unchanged to the real accept4.
    let call = || outside(|| unsafe { real(fd, addr, len, flags) });
    // SAFETY: `addr` and `len` as accept4 takes them.
    unsafe { accepted(addr, len, call) }
}

/// getpeername, in capsule terms.
///
/// # Safety
/// getpeername(2)'s contract; `real` is the real getpeername.
pub unsafe fn getpeername(
    real: NameCall,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: getpeername(2)'s contract (this function's).
    unsafe { socket_name(real, fd, addr, len, false) }
}

/// getsockname: the address a socket was bound to, in capsule terms (a unix socket's
/// capsule path when it was bound in this process).
///
/// # Safety
/// getsockname(2)'s contract; `real` is the real getsockname.
pub unsafe fn getsockname(
    real: NameCall,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: getsockname(2)'s contract (this function's), which is getpeername's.
    unsafe { socket_name(real, fd, addr, len, true) }
}

/// getpeername, or getsockname when `own`: the address the kernel reports, in capsule
/// terms.
///
/// # Safety
/// `len` is null or readable and `addr` holds `*len` bytes; `real` is the real call.
unsafe fn socket_name(
    real: NameCall,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    own: bool,
) -> c_int {
    // SAFETY: `len` is null or a readable socklen_t (this function's contract).
    let room = unsafe { room(len) };
    // SAFETY: the caller's arguments go unchanged to the real call.
    let rc = unsafe { real(fd, addr, len) };
    let which = if own {
        sockets::Reported::Own
    } else {
        sockets::Reported::Peer
    };
    if rc == 0 {
        // SAFETY: `addr` holds `room` bytes and `len` is as the call left them.
        unsafe { report(fd, addr, len, room, which) };
    }
    rc
}
