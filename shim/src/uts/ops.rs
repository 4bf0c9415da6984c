//! Which names a capsule process sees, and who may change them.

use std::ffi::c_int;

use capsule_config::MAX_HOSTNAME_LEN;

use crate::hook::{Outcome, Skip};
use crate::runtime::Runtime;
use crate::shared::SharedName;

#[derive(Clone, Copy)]
pub enum Name {
    Host,
    Domain,
}

/// A name as a fixed buffer and its length (no allocation on the hot path).
pub struct NameBuf {
    pub bytes: [u8; MAX_HOSTNAME_LEN],
    pub len: usize,
}

impl NameBuf {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn shared(runtime: &Runtime, which: Name) -> &SharedName {
    match which {
        Name::Host => &runtime.shared.hostname,
        Name::Domain => &runtime.shared.domainname,
    }
}

/// The capsule's name, or `None` when the host's applies.
pub fn current(runtime: &Runtime, which: Name) -> Option<NameBuf> {
    let mut buf = NameBuf {
        bytes: [0; MAX_HOSTNAME_LEN],
        len: 0,
    };
    if let Some(len) = shared(runtime, which).read(&mut buf.bytes) {
        buf.len = len;
        return Some(buf);
    }
    let configured = match which {
        Name::Host => runtime.config.hostname.as_deref(),
        Name::Domain => runtime.config.domainname.as_deref(),
    }?;
    let n = configured.len().min(MAX_HOSTNAME_LEN);
    buf.bytes[..n].copy_from_slice(&configured.as_bytes()[..n]);
    buf.len = n;
    Some(buf)
}

/// sethostname / setdomainname. `privileged` is the capsule's (or host's, when the
/// capsule has no identity) effective uid being 0.
pub fn set(runtime: &Runtime, which: Name, name: &[u8], privileged: bool) -> Outcome<c_int> {
    if !privileged {
        return Err(Skip::Errno(libc::EPERM));
    }
    if !capsule_config::hostname_fits(name.len()) {
        return Err(Skip::Errno(libc::EINVAL));
    }
    // The kernel stores the bytes up to len; a NUL inside ends the name as seen.
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    shared(runtime, which).write(&name[..end]);
    log::debug!(
        "{} set to {:?}",
        match which {
            Name::Host => "host name",
            Name::Domain => "domain name",
        },
        String::from_utf8_lossy(&name[..end])
    );
    Ok(0)
}

/// Copies a name into a caller's buffer the way glibc's gethostname does:
/// `ENAMETOOLONG` when the name and its NUL do not fit.
pub fn copy_out(name: &[u8], out: &mut [u8]) -> Outcome<c_int> {
    if name.len() + 1 > out.len() {
        let n = out.len();
        out[..n].copy_from_slice(&name[..n.min(name.len())]);
        return Err(Skip::Errno(libc::ENAMETOOLONG));
    }
    out[..name.len()].copy_from_slice(name);
    out[name.len()] = 0;
    Ok(0)
}

/// Like `copy_out` but as getdomainname: truncates silently.
pub fn copy_out_truncating(name: &[u8], out: &mut [u8]) -> Outcome<c_int> {
    let n = name.len().min(out.len());
    out[..n].copy_from_slice(&name[..n]);
    if n < out.len() {
        out[n] = 0;
    }
    Ok(0)
}

/// Puts a name into a `utsname` field (65 bytes, NUL-terminated).
pub fn fill_field(field: &mut [libc::c_char], name: &[u8]) {
    let n = name.len().min(field.len() - 1);
    for (dst, src) in field.iter_mut().zip(&name[..n]) {
        *dst = *src as libc::c_char;
    }
    for dst in &mut field[n..] {
        *dst = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_out_matches_glibc() {
        let mut buf = [0xffu8; 8];
        assert!(matches!(copy_out(b"web1", &mut buf), Ok(0)));
        assert_eq!(&buf[..5], b"web1\0");
        let mut small = [0u8; 4];
        assert!(matches!(
            copy_out(b"web1", &mut small),
            Err(Skip::Errno(libc::ENAMETOOLONG))
        ));
        let mut small = [0u8; 4];
        assert!(matches!(copy_out_truncating(b"example", &mut small), Ok(0)));
        assert_eq!(&small, b"exam");
    }

    #[test]
    fn fill_field_terminates() {
        let mut field = [1 as libc::c_char; 65];
        fill_field(&mut field, b"db");
        assert_eq!(field[0], b'd' as libc::c_char);
        assert_eq!(field[2], 0);
        assert_eq!(field[64], 0);
    }
}
