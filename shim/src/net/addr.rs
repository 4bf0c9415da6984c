//! Internet socket addresses as the network replica sees them: an IPv4 address (IPv6
//! loopback and v4-mapped addresses included) and a port, read from and written back
//! to the caller's `sockaddr_in`/`sockaddr_in6` without touching its other fields.

use std::ffi::c_int;

/// What an address is, for the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Loopback (127/8 outside the peer net, `::1`) or the wildcard (`0.0.0.0`, `::`):
    /// the capsule itself.
    Own,
    /// A capsule of the set, by its index (127.73.x.y).
    Peer(usize),
    /// Anywhere else: passed through.
    Elsewhere,
}

/// A copy of an internet socket address that can be changed and handed to the kernel.
#[derive(Clone, Copy)]
pub struct Inet {
    storage: libc::sockaddr_in6,
    pub len: libc::socklen_t,
    pub family: c_int,
}

const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl Inet {
    /// Reads an `AF_INET`/`AF_INET6` address; `None` for any other or a short one.
    ///
    /// # Safety
    /// `addr` is null or valid for `len` bytes.
    pub unsafe fn read(addr: *const libc::sockaddr, len: libc::socklen_t) -> Option<Inet> {
        // SAFETY: `addr` is null or valid for `len` bytes (the `# Safety` contract); every
        // read is checked against `len` first.
        unsafe {
            if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
                return None;
            }
            let family = c_int::from((*addr).sa_family);
            let need = match family {
                libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
                libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
                _ => return None,
            };
            if (len as usize) < need {
                return None;
            }
            let mut storage: libc::sockaddr_in6 = std::mem::zeroed();
            std::ptr::copy_nonoverlapping(
                addr.cast::<u8>(),
                (&mut storage as *mut libc::sockaddr_in6).cast::<u8>(),
                need,
            );
            Some(Inet {
                storage,
                len: need as libc::socklen_t,
                family,
            })
        }
    }

    pub fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_in6).cast()
    }

    fn v4(&self) -> &libc::sockaddr_in {
        // SAFETY: sockaddr_in6 is larger than sockaddr_in and both are plain data.
        unsafe { &*(&self.storage as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() }
    }

    fn v4_mut(&mut self) -> &mut libc::sockaddr_in {
        // SAFETY: as above.
        unsafe { &mut *(&mut self.storage as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>() }
    }

    pub fn port(&self) -> u16 {
        match self.family {
            libc::AF_INET => u16::from_be(self.v4().sin_port),
            _ => u16::from_be(self.storage.sin6_port),
        }
    }

    pub fn set_port(&mut self, port: u16) {
        match self.family {
            libc::AF_INET => self.v4_mut().sin_port = port.to_be(),
            _ => self.storage.sin6_port = port.to_be(),
        }
    }

    /// The IPv4 address, also of a v4-mapped IPv6 one.
    fn ipv4(&self) -> Option<[u8; 4]> {
        match self.family {
            libc::AF_INET => Some(self.v4().sin_addr.s_addr.to_ne_bytes()),
            _ => {
                let b = self.storage.sin6_addr.s6_addr;
                (b[..12] == V4_MAPPED).then(|| [b[12], b[13], b[14], b[15]])
            }
        }
    }

    /// Replaces the IPv4 address (kept v4-mapped in an IPv6 address).
    pub fn set_ipv4(&mut self, ip: [u8; 4]) {
        match self.family {
            libc::AF_INET => self.v4_mut().sin_addr.s_addr = u32::from_ne_bytes(ip),
            _ => {
                let b = &mut self.storage.sin6_addr.s6_addr;
                b[..12].copy_from_slice(&V4_MAPPED);
                b[12..].copy_from_slice(&ip);
            }
        }
    }

    /// Where the address leads.
    pub fn place(&self) -> Place {
        if let Some(ip) = self.ipv4() {
            if let Some(i) = capsule_config::net::peer_index(ip) {
                return Place::Peer(i);
            }
            return if ip[0] == 127 || ip == [0; 4] {
                Place::Own
            } else {
                Place::Elsewhere
            };
        }
        let b = self.storage.sin6_addr.s6_addr;
        let loopback = b[..15].iter().all(|&x| x == 0) && b[15] == 1;
        let any = b.iter().all(|&x| x == 0);
        if loopback || any {
            Place::Own
        } else {
            Place::Elsewhere
        }
    }

    /// Whether this is the wildcard address (`0.0.0.0`, `::` or `::ffff:0.0.0.0`).
    pub fn is_wildcard(&self) -> bool {
        match self.ipv4() {
            Some(ip) => ip == [0; 4],
            None => self.storage.sin6_addr.s6_addr == [0; 16],
        }
    }

    /// Points the address at the host's loopback, keeping its family.
    pub fn set_loopback(&mut self) {
        if self.family == libc::AF_INET || self.ipv4().is_some() {
            self.set_ipv4([127, 0, 0, 1]);
        } else {
            self.storage.sin6_addr.s6_addr = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        }
    }

    /// Copies the address out as the kernel would: at most `*len` bytes, and `*len`
    /// set to the full size.
    ///
    /// # Safety
    /// `addr` is valid for `*len` bytes.
    pub unsafe fn write(&self, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) {
        // SAFETY: `addr` is valid for `*len` bytes (the `# Safety` contract); at most that
        // many are written.
        unsafe {
            let n = (self.len as usize).min(*len as usize);
            std::ptr::copy_nonoverlapping(self.as_ptr().cast::<u8>(), addr.cast::<u8>(), n);
            *len = self.len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> Inet {
        // SAFETY: a zeroed sockaddr_in is valid.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from_ne_bytes(ip);
        // SAFETY: sin is a whole sockaddr_in.
        unsafe {
            Inet::read(
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        .unwrap()
    }

    fn v6(ip: [u8; 16], port: u16) -> Inet {
        // SAFETY: a zeroed sockaddr_in6 is valid.
        let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = port.to_be();
        sin6.sin6_addr.s6_addr = ip;
        sin6.sin6_scope_id = 7;
        // SAFETY: sin6 is a whole sockaddr_in6.
        unsafe {
            Inet::read(
                (&sin6 as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
        .unwrap()
    }

    #[test]
    fn places() {
        assert_eq!(v4([127, 0, 0, 1], 80).place(), Place::Own);
        assert_eq!(v4([127, 0, 1, 1], 80).place(), Place::Own);
        assert_eq!(v4([0, 0, 0, 0], 80).place(), Place::Own);
        assert_eq!(v4([127, 73, 0, 2], 80).place(), Place::Peer(1));
        assert_eq!(v4([10, 0, 0, 1], 80).place(), Place::Elsewhere);
        let mut loop6 = [0u8; 16];
        loop6[15] = 1;
        assert_eq!(v6(loop6, 1).place(), Place::Own);
        assert_eq!(v6([0; 16], 1).place(), Place::Own);
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[127, 73, 1, 0]);
        assert_eq!(v6(mapped, 1).place(), Place::Peer(255));
        let mut global = [0u8; 16];
        global[0] = 0x20;
        assert_eq!(v6(global, 1).place(), Place::Elsewhere);
        assert!(v4([0; 4], 80).is_wildcard() && v6([0; 16], 80).is_wildcard());
        assert!(!v4([127, 0, 0, 1], 80).is_wildcard() && !v6(loop6, 80).is_wildcard());
        let mut any = v6([0; 16], 80);
        any.set_ipv4([127, 0, 0, 1]);
        assert!(!any.is_wildcard() && any.place() == Place::Own);
    }

    #[test]
    fn rewriting_keeps_the_rest() {
        let mut a = v4([127, 73, 0, 1], 8000);
        a.set_loopback();
        a.set_port(40000);
        assert_eq!(a.ipv4(), Some([127, 0, 0, 1]));
        assert_eq!(a.port(), 40000);
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[127, 73, 0, 1]);
        let mut b = v6(mapped, 8000);
        b.set_loopback();
        assert_eq!(b.ipv4(), Some([127, 0, 0, 1]));
        assert_eq!(b.storage.sin6_scope_id, 7);
        assert_eq!(b.len as usize, std::mem::size_of::<libc::sockaddr_in6>());
        // SAFETY: a zeroed sockaddr_in6 is valid.
        let mut out: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut len: libc::socklen_t = 8;
        // SAFETY: out has room for 8 bytes and more.
        unsafe { b.write((&mut out as *mut libc::sockaddr_in6).cast(), &mut len) };
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in6>());
        assert_eq!(out.sin6_port, 8000u16.to_be());
        assert_eq!(out.sin6_scope_id, 0, "only 8 bytes were copied");
    }
}
