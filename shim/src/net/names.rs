//! Name resolution for the capsule set: a peer's name resolves to its loopback
//! address (127.73.x.y), the capsule's own name and host name to its own address
//! (its peer address, or 127.0.0.1 without a set). Everything else is the host
//! resolver's.

use std::ffi::{c_char, c_int};

use capsule_config::net::peer_address;

use super::Net;

/// The address `name` resolves to in the capsule set, if it names a capsule.
/// `host_name` is the capsule's current host name.
pub fn lookup(net: &Net, name: &[u8], host_name: Option<&[u8]>) -> Option<[u8; 4]> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    if let Some(i) = net
        .peers
        .iter()
        .position(|p| p.as_bytes().eq_ignore_ascii_case(name))
    {
        return Some(peer_address(i));
    }
    let own = || {
        net.ports
            .own_index()
            .map(peer_address)
            .unwrap_or([127, 0, 0, 1])
    };
    let is_own_name = net
        .name
        .as_deref()
        .is_some_and(|n| n.as_bytes().eq_ignore_ascii_case(name));
    let is_host_name = host_name.is_some_and(|h| h.eq_ignore_ascii_case(name));
    (is_own_name || is_host_name).then(own)
}

/// The capsule name answering on peer address index `i`.
pub fn peer_name(net: &Net, i: usize) -> Option<&str> {
    net.peers.get(i).map(String::as_str)
}

/// The text of an address for a numeric `getaddrinfo`: dotted IPv4, or v4-mapped
/// IPv6 when only IPv6 is asked for. NUL-terminated in a fixed buffer.
pub fn numeric(ip: [u8; 4], family: c_int, out: &mut [u8; 32]) -> *const c_char {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    if family == libc::AF_INET6 {
        put(b"::ffff:");
    }
    for (i, &octet) in ip.iter().enumerate() {
        if i > 0 {
            put(b".");
        }
        put(crate::decimal::decimal(
            u64::from(octet),
            &mut Default::default(),
        ));
    }
    out[at] = 0;
    out.as_ptr().cast()
}

/// Fills a `hostent` for `name` at `ip` inside `buf` (the `gethostbyname_r` layout:
/// the address, the address list, an empty alias list, the name). `Err(ERANGE)` when
/// `buf` is too small.
///
/// # Safety
/// `buf` is valid for `len` bytes.
pub unsafe fn fill_hostent(
    ent: &mut libc::hostent,
    name: &[u8],
    ip: [u8; 4],
    family: c_int,
    buf: *mut c_char,
    len: usize,
) -> Result<(), c_int> {
    // SAFETY: `buf` is valid for `len` bytes (the `# Safety` contract), and each piece is
    // placed only after checking that it fits.
    unsafe {
        let ptr_size = std::mem::size_of::<*mut c_char>();
        let addr_len = if family == libc::AF_INET6 { 16 } else { 4 };
        // Pointers first (aligned), then the address and the name.
        let align = buf.align_offset(ptr_size);
        let need = align + 3 * ptr_size + addr_len + name.len() + 1;
        if need > len {
            return Err(libc::ERANGE);
        }
        let base = buf.add(align);
        let list = base.cast::<*mut c_char>();
        let address = base.add(3 * ptr_size);
        let text = address.add(addr_len);
        if family == libc::AF_INET6 {
            let mut mapped = [0u8; 16];
            mapped[10] = 0xff;
            mapped[11] = 0xff;
            mapped[12..].copy_from_slice(&ip);
            std::ptr::copy_nonoverlapping(mapped.as_ptr(), address.cast(), 16);
        } else {
            std::ptr::copy_nonoverlapping(ip.as_ptr(), address.cast(), 4);
        }
        std::ptr::copy_nonoverlapping(name.as_ptr(), text.cast(), name.len());
        *text.add(name.len()) = 0;
        // [address, NULL] is the address list; the second NULL is the alias list.
        *list = address;
        *list.add(1) = std::ptr::null_mut();
        *list.add(2) = std::ptr::null_mut();
        ent.h_name = text;
        ent.h_aliases = list.add(2);
        ent.h_addrtype = family;
        ent.h_length = addr_len as c_int;
        ent.h_addr_list = list;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capsule_config::Config;

    fn net(name: &str, peers: &[&str], state: &str) -> Net {
        let config = Config {
            name: Some(name.into()),
            state_dir: Some(state.into()),
            net: capsule_config::NetConfig {
                ports: vec![],
                peers: peers.iter().map(|p| p.to_string()).collect(),
                remote: vec![],
                host: false,
            },
            ..Config::default()
        };
        Net::from_config(&config).unwrap()
    }

    #[test]
    fn peers_and_own_names_resolve() {
        let n = net(
            "web-2",
            &["web-1", "web-2", "client"],
            "/nonexistent/capsules/web-2",
        );
        assert_eq!(lookup(&n, b"web-1", None), Some([127, 73, 0, 1]));
        assert_eq!(lookup(&n, b"WEB-1.", None), Some([127, 73, 0, 1]));
        assert_eq!(lookup(&n, b"client", None), Some([127, 73, 0, 3]));
        assert_eq!(lookup(&n, b"web-2", None), Some([127, 73, 0, 2]));
        assert_eq!(lookup(&n, b"box", Some(b"box")), Some([127, 73, 0, 2]));
        assert_eq!(lookup(&n, b"example.com", Some(b"box")), None);
        assert_eq!(lookup(&n, b"", None), None);
        assert_eq!(peer_name(&n, 2), Some("client"));
        let alone = net("solo", &[], "/nonexistent/capsules/solo");
        assert_eq!(lookup(&alone, b"solo", None), Some([127, 0, 0, 1]));
        assert_eq!(lookup(&alone, b"web-1", None), None);
    }

    #[test]
    fn numeric_text() {
        let mut out = [0u8; 32];
        numeric([127, 73, 1, 10], libc::AF_INET, &mut out);
        assert!(out.starts_with(b"127.73.1.10\0"));
        numeric([127, 73, 0, 1], libc::AF_INET6, &mut out);
        assert!(out.starts_with(b"::ffff:127.73.0.1\0"));
    }

    #[test]
    fn hostent_layout() {
        let mut buf = [0 as c_char; 64];
        // SAFETY: a zeroed hostent is valid.
        let mut ent: libc::hostent = unsafe { std::mem::zeroed() };
        // SAFETY: buf is valid for its length.
        unsafe {
            fill_hostent(
                &mut ent,
                b"web-1",
                [127, 73, 0, 1],
                libc::AF_INET,
                buf.as_mut_ptr(),
                64,
            )
            .unwrap();
            assert_eq!(std::ffi::CStr::from_ptr(ent.h_name).to_bytes(), b"web-1");
            assert_eq!(
                std::slice::from_raw_parts((*ent.h_addr_list).cast::<u8>(), 4),
                [127, 73, 0, 1]
            );
            assert!((*ent.h_addr_list.add(1)).is_null());
            assert!((*ent.h_aliases).is_null());
            assert_eq!(
                fill_hostent(
                    &mut ent,
                    b"web-1",
                    [127, 73, 0, 1],
                    libc::AF_INET,
                    buf.as_mut_ptr(),
                    20
                ),
                Err(libc::ERANGE)
            );
        }
    }
}
