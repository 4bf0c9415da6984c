//! Abstract unix socket names are private to the capsule: the kernel sees each name
//! behind a prefix of the capsule's own (`\0capsule-XXXXXXXX/NAME`), and the prefix is
//! taken off again wherever the kernel reports an address back. Two capsules that
//! both listen on `@app` therefore do not meet, and a process outside any capsule does
//! not reach them by accident.

const SUN_PATH: usize = 108;
const FAMILY: usize = std::mem::size_of::<libc::sa_family_t>();

/// The capsule's prefix (without the leading NUL).
#[derive(Clone, Copy)]
pub struct Prefix {
    bytes: [u8; 17],
}

impl Prefix {
    /// A prefix derived from what identifies the capsule on this host (its state
    /// directory, else its name): `capsule-` and 8 hex digits of an FNV-1a hash, `/`.
    pub fn for_capsule(identity: &str) -> Prefix {
        let mut hash: u32 = 0x811c_9dc5;
        for &b in identity.as_bytes() {
            hash ^= u32::from(b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        let mut bytes = *b"capsule-00000000/";
        for i in 0..8 {
            let digit = (hash >> (28 - 4 * i)) & 0xf;
            bytes[8 + i] = b"0123456789abcdef"[digit as usize];
        }
        Prefix { bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// An address for the kernel.
pub struct Address {
    pub addr: libc::sockaddr_un,
    pub len: libc::socklen_t,
}

/// The abstract name in a unix address (the bytes after the leading NUL), if it is
/// one. An address of the family alone (autobind) is not a name.
///
/// # Safety
/// `addr` is null or valid for `len` bytes.
pub unsafe fn abstract_name<'a>(
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> Option<&'a [u8]> {
    // SAFETY: `addr` is null or valid for `len` bytes (the `# Safety` contract).
    unsafe {
        let len = len as usize;
        if addr.is_null()
            || len <= FAMILY
            || std::ffi::c_int::from((*addr).sa_family) != libc::AF_UNIX
        {
            return None;
        }
        let un = &*(addr as *const libc::sockaddr_un);
        let path = std::slice::from_raw_parts(
            un.sun_path.as_ptr() as *const u8,
            (len - FAMILY).min(SUN_PATH),
        );
        (path[0] == 0).then(|| &path[1..])
    }
}

/// The host address of abstract `name`: the prefix put in front. `ENAMETOOLONG` when
/// the two do not fit in `sun_path` (never a silent truncation).
pub fn to_host(prefix: &Prefix, name: &[u8]) -> Result<Address, libc::c_int> {
    let p = prefix.as_bytes();
    if 1 + p.len() + name.len() > SUN_PATH {
        return Err(libc::ENAMETOOLONG);
    }
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, &b) in addr.sun_path[1..].iter_mut().zip(p.iter().chain(name)) {
        *slot = b as libc::c_char;
    }
    Ok(Address {
        addr,
        len: (FAMILY + 1 + p.len() + name.len()) as libc::socklen_t,
    })
}

/// Takes the capsule's prefix off an abstract address the kernel filled in (`*len`
/// is its full length, the buffer holds `room` bytes of it).
///
/// # Safety
/// `addr` is valid for `room` bytes and `len` is valid.
pub unsafe fn strip(
    prefix: &Prefix,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
    room: usize,
) {
    // SAFETY: `addr` is valid for `room` bytes and `len` is valid (the `# Safety`
    // contract).
    unsafe {
        let full = *len as usize;
        if full > room {
            return;
        }
        let Some(name) = abstract_name(addr, *len) else {
            return;
        };
        let p = prefix.as_bytes();
        if !name.starts_with(p) {
            return;
        }
        let path = (*(addr as *mut libc::sockaddr_un)).sun_path.as_mut_ptr() as *mut u8;
        let rest = name.len() - p.len();
        std::ptr::copy(path.add(1 + p.len()), path.add(1), rest);
        *len = (full - p.len()) as libc::socklen_t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(a: &Address) -> Vec<u8> {
        // SAFETY: a.addr is valid for a.len bytes.
        unsafe { abstract_name((&a.addr as *const libc::sockaddr_un).cast(), a.len) }
            .unwrap()
            .to_vec()
    }

    #[test]
    fn prefixes_differ_per_capsule() {
        let a = Prefix::for_capsule("/home/u/.local/share/capsule/capsules/web-1");
        let b = Prefix::for_capsule("/home/u/.local/share/capsule/capsules/web-2");
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert!(a.as_bytes().starts_with(b"capsule-") && a.as_bytes().ends_with(b"/"));
    }

    #[test]
    fn round_trip_and_limit() {
        let p = Prefix::for_capsule("x");
        let a = to_host(&p, b"app").unwrap();
        let mut expected = p.as_bytes().to_vec();
        expected.extend_from_slice(b"app");
        assert_eq!(name_of(&a), expected);
        let mut back = a.addr;
        let mut len = a.len;
        // SAFETY: back is a whole sockaddr_un.
        unsafe {
            strip(
                &p,
                (&mut back as *mut libc::sockaddr_un).cast(),
                &mut len,
                110,
            )
        };
        assert_eq!(len as usize, FAMILY + 1 + 3);
        let back = Address { addr: back, len };
        assert_eq!(name_of(&back), b"app");
        let longest = vec![b'x'; SUN_PATH - 1 - p.as_bytes().len()];
        assert!(to_host(&p, &longest).is_ok());
        let too_long = vec![b'x'; longest.len() + 1];
        assert_eq!(to_host(&p, &too_long).err(), Some(libc::ENAMETOOLONG));
    }
}
