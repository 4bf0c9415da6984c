//! The user and group database a capsule's programs see: its own `/etc/passwd` and
//! `/etc/group`, read through the capsule's file system.
//!
//! glibc's NSS opens those files with internal calls that no preload hook sees, so
//! without this a capsule of a root would answer `getpwuid(0)` from the host's
//! `/etc/passwd`, and one that ran `useradd` would not find its new user. The lookup
//! functions are answered here instead:
//! - a capsule with its own root answers from its files only (a name they lack is
//!   unknown, as in a container);
//! - a capsule of the host's root whose private layer changed a file (or a volume
//!   binds one) answers from it first and asks the host's NSS for the rest, so that
//!   directory users (LDAP, sssd) still resolve;
//! - otherwise the host's NSS answers, unchanged.
//!
//! Only the `files` format is read: a root's `nsswitch.conf` naming other services is
//! not followed.

use std::ffi::{c_char, c_int};
use std::mem::{align_of, size_of};
use std::os::unix::ffi::OsStrExt;

use crate::fs::layers::Found;

/// Where the answers for one database come from.
pub enum Source {
    /// The host's NSS, as if there were no capsule.
    Host,
    /// The capsule's own file (`text`); with `fallback`, names it lacks are asked of
    /// the host's NSS.
    Capsule { text: Vec<u8>, fallback: bool },
}

/// The source of the database in capsule file `file` (`/etc/passwd`, `/etc/group`).
pub fn source(file: &[u8]) -> Source {
    let Some(layers) = crate::fs::layers() else {
        return Source::Host;
    };
    let own_root = layers.root.is_some();
    let Ok(node) = layers.resolve(file, true) else {
        return if own_root {
            Source::Capsule {
                text: Vec::new(),
                fallback: false,
            }
        } else {
            Source::Host
        };
    };
    if !own_root && node.found == Found::Lower {
        return Source::Host;
    }
    let text = if node.exists() {
        std::fs::read(std::ffi::OsStr::from_bytes(node.host.as_bytes())).unwrap_or_default()
    } else {
        Vec::new()
    };
    Source::Capsule {
        text,
        fallback: !own_root,
    }
}

/// One `/etc/passwd` line.
#[derive(Debug, PartialEq, Eq)]
pub struct Pw<'a> {
    pub name: &'a [u8],
    pub passwd: &'a [u8],
    pub uid: u32,
    pub gid: u32,
    pub gecos: &'a [u8],
    pub dir: &'a [u8],
    pub shell: &'a [u8],
}

/// One `/etc/group` line; `members` is the comma-separated list.
#[derive(Debug, PartialEq, Eq)]
pub struct Gr<'a> {
    pub name: &'a [u8],
    pub passwd: &'a [u8],
    pub gid: u32,
    pub members: &'a [u8],
}

impl<'a> Gr<'a> {
    pub fn members(&self) -> impl Iterator<Item = &'a [u8]> {
        self.members.split(|&b| b == b',').filter(|m| !m.is_empty())
    }
}

fn number(field: &[u8]) -> Option<u32> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The lines that are entries: not blank, not comments, not NIS `+`/`-` compat lines.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !matches!(l[0], b'#' | b'+' | b'-') && !l.contains(&0))
}

pub fn passwd_entries(text: &[u8]) -> impl Iterator<Item = Pw<'_>> {
    lines(text).filter_map(|line| {
        let f: Vec<&[u8]> = line.splitn(7, |&b| b == b':').collect();
        if f.len() != 7 || f[0].is_empty() {
            return None;
        }
        Some(Pw {
            name: f[0],
            passwd: f[1],
            uid: number(f[2])?,
            gid: number(f[3])?,
            gecos: f[4],
            dir: f[5],
            shell: f[6],
        })
    })
}

pub fn group_entries(text: &[u8]) -> impl Iterator<Item = Gr<'_>> {
    lines(text).filter_map(|line| {
        let f: Vec<&[u8]> = line.splitn(4, |&b| b == b':').collect();
        if f.len() != 4 || f[0].is_empty() {
            return None;
        }
        Some(Gr {
            name: f[0],
            passwd: f[1],
            gid: number(f[2])?,
            members: f[3],
        })
    })
}

/// The groups of `user`: `group` first, then every group listing it, without
/// duplicates, as `getgrouplist` orders them.
pub fn group_list(text: &[u8], user: &[u8], group: u32) -> Vec<u32> {
    let mut out = vec![group];
    for gr in group_entries(text) {
        if gr.members().any(|m| m == user) && !out.contains(&gr.gid) {
            out.push(gr.gid);
        }
    }
    out
}

/// Places NUL-terminated copies of strings in a caller's buffer.
struct Arena {
    buf: *mut c_char,
    len: usize,
    used: usize,
}

impl Arena {
    /// Room for `n` bytes aligned to `align`, or `None` (the caller returns `ERANGE`).
    fn take(&mut self, n: usize, align: usize) -> Option<*mut u8> {
        let start = self.buf as usize + self.used;
        let pad = (align - start % align) % align;
        if self.used + pad + n > self.len {
            return None;
        }
        self.used += pad + n;
        Some((start + pad) as *mut u8)
    }

    /// # Safety
    /// `buf` is valid for `len` bytes.
    unsafe fn string(&mut self, s: &[u8]) -> Option<*mut c_char> {
        let p = self.take(s.len() + 1, 1)?;
        // SAFETY: `take` gave `s.len() + 1` bytes at `p` within `buf`, valid by the
        // caller's contract; `s` is a Rust slice, not in that buffer's free part.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            *p.add(s.len()) = 0;
        }
        Some(p.cast())
    }
}

/// One `/etc/shadow` line; an empty number field is -1, as glibc reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Sp<'a> {
    pub name: &'a [u8],
    pub passwd: &'a [u8],
    /// Last change, minimum, maximum, warning, inactivity, expiry.
    pub numbers: [i64; 6],
    pub flag: u64,
}

pub fn shadow_entries(text: &[u8]) -> impl Iterator<Item = Sp<'_>> {
    lines(text).filter_map(|line| {
        let f: Vec<&[u8]> = line.splitn(9, |&b| b == b':').collect();
        if f.len() != 9 || f[0].is_empty() {
            return None;
        }
        let mut numbers = [-1i64; 6];
        for (n, field) in numbers.iter_mut().zip(&f[2..8]) {
            if !field.is_empty() {
                *n = i64::from(number(field)?);
            }
        }
        let flag = if f[8].is_empty() {
            u64::MAX
        } else {
            u64::from(number(f[8])?)
        };
        Some(Sp {
            name: f[0],
            passwd: f[1],
            numbers,
            flag,
        })
    })
}

/// A stand-in `/etc/shadow` for the accounts of `passwd`: one line each, the
/// password locked (`*`), last changed on day `days`, no aging. For a root whose
/// shadow file the real user may not read (`cow` copies it up so): the real hashes
/// cannot be known, and nobody in the capsule could have used them.
pub fn shadow_stand_in(passwd: &[u8], days: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(passwd.len());
    for pw in passwd_entries(passwd) {
        out.extend_from_slice(pw.name);
        out.extend_from_slice(b":*:");
        out.extend_from_slice(days.to_string().as_bytes());
        out.extend_from_slice(b"::::::\n");
    }
    out
}

/// A stand-in `/etc/gshadow` for the groups of `group`: one line each, the password
/// locked, no administrators, the members of `group` (see `shadow_stand_in`).
pub fn gshadow_stand_in(group: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(group.len());
    for gr in group_entries(group) {
        out.extend_from_slice(gr.name);
        out.extend_from_slice(b":*::");
        out.extend_from_slice(gr.members);
        out.push(b'\n');
    }
    out
}

/// Fills `out` with `sp`, its strings in `buf`: 0 or `ERANGE`.
///
/// # Safety
/// `out` is a valid `spwd`, `buf` valid for `len` bytes.
pub unsafe fn fill_shadow(sp: &Sp, out: *mut libc::spwd, buf: *mut c_char, len: usize) -> c_int {
    let mut arena = Arena { buf, len, used: 0 };
    // SAFETY: `buf` is valid for `len` bytes (this function's contract).
    let (Some(name), Some(passwd)) = (unsafe { (arena.string(sp.name), arena.string(sp.passwd)) })
    else {
        return libc::ERANGE;
    };
    let [lstchg, min, max, warn, inact, expire] = sp.numbers;
    let entry = libc::spwd {
        sp_namp: name,
        sp_pwdp: passwd,
        sp_lstchg: lstchg as libc::c_long,
        sp_min: min as libc::c_long,
        sp_max: max as libc::c_long,
        sp_warn: warn as libc::c_long,
        sp_inact: inact as libc::c_long,
        sp_expire: expire as libc::c_long,
        sp_flag: sp.flag as libc::c_ulong,
    };
    // SAFETY: `out` is a valid `spwd` (this function's contract).
    unsafe { *out = entry };
    0
}

/// Fills `out` with `pw`, its strings in `buf`: 0, or `ERANGE` when `buf` is too small.
///
/// # Safety
/// `out` is a valid `passwd`, `buf` valid for `len` bytes.
pub unsafe fn fill_passwd(pw: &Pw, out: *mut libc::passwd, buf: *mut c_char, len: usize) -> c_int {
    let mut arena = Arena { buf, len, used: 0 };
    // SAFETY: `buf` is valid for `len` bytes (this function's contract).
    let strings = (|| unsafe {
        Some((
            arena.string(pw.name)?,
            arena.string(pw.passwd)?,
            arena.string(pw.gecos)?,
            arena.string(pw.dir)?,
            arena.string(pw.shell)?,
        ))
    })();
    let Some((name, passwd, gecos, dir, shell)) = strings else {
        return libc::ERANGE;
    };
    let entry = libc::passwd {
        pw_name: name,
        pw_passwd: passwd,
        pw_uid: pw.uid,
        pw_gid: pw.gid,
        pw_gecos: gecos,
        pw_dir: dir,
        pw_shell: shell,
    };
    // SAFETY: `out` is a valid `passwd` (this function's contract).
    unsafe { *out = entry };
    0
}

/// Fills `out` with `gr`, its member array and strings in `buf`: 0 or `ERANGE`.
///
/// # Safety
/// `out` is a valid `group`, `buf` valid for `len` bytes.
pub unsafe fn fill_group(gr: &Gr, out: *mut libc::group, buf: *mut c_char, len: usize) -> c_int {
    let mut arena = Arena { buf, len, used: 0 };
    let count = gr.members().count();
    let Some(array) = arena.take(
        (count + 1) * size_of::<*mut c_char>(),
        align_of::<*mut c_char>(),
    ) else {
        return libc::ERANGE;
    };
    let array = array.cast::<*mut c_char>();
    for (i, member) in gr.members().enumerate() {
        // SAFETY: `buf` is valid for `len` bytes (this function's contract).
        let Some(s) = (unsafe { arena.string(member) }) else {
            return libc::ERANGE;
        };
        // SAFETY: `array` has room for `count + 1` aligned pointers and `i < count`.
        unsafe { *array.add(i) = s };
    }
    // SAFETY: `array` has room for `count + 1` aligned pointers.
    unsafe { *array.add(count) = std::ptr::null_mut() };
    // SAFETY: `buf` is valid for `len` bytes (this function's contract).
    let (Some(name), Some(passwd)) = (unsafe { (arena.string(gr.name), arena.string(gr.passwd)) })
    else {
        return libc::ERANGE;
    };
    let entry = libc::group {
        gr_name: name,
        gr_passwd: passwd,
        gr_gid: gr.gid,
        gr_mem: array,
    };
    // SAFETY: `out` is a valid `group` (this function's contract).
    unsafe { *out = entry };
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n# comment\n\n+nis\nbad:x:y:0::/:/bin/sh\napp:x:1000:1000:The App,,,:/srv/app:/bin/sh\n";
    const GROUP: &[u8] = b"root:x:0:\nadm:x:4:app,other\nstaff:x:50:app\napp:x:1000:\n";

    #[test]
    fn parses_files_and_skips_what_is_not_an_entry() {
        let users: Vec<Pw> = passwd_entries(PASSWD).collect();
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].name, b"app");
        assert_eq!(users[1].gecos, b"The App,,,");
        assert_eq!((users[1].uid, users[1].dir), (1000, &b"/srv/app"[..]));
        let groups: Vec<Gr> = group_entries(GROUP).collect();
        assert_eq!(
            groups[1].members().collect::<Vec<_>>(),
            [&b"app"[..], b"other"]
        );
        assert_eq!(group_list(GROUP, b"app", 1000), [1000, 4, 50]);
        assert_eq!(group_list(GROUP, b"app", 4), [4, 50]);
    }

    #[test]
    fn parses_shadow_lines_with_empty_fields() {
        let text = b"root:*:19000:0:99999:7:::\nalice:!:20000::::::\nbad:x:y:::::\n";
        let all: Vec<Sp> = shadow_entries(text).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].numbers, [19000, 0, 99999, 7, -1, -1]);
        assert_eq!((all[1].name, all[1].passwd), (&b"alice"[..], &b"!"[..]));
        assert_eq!(all[1].flag, u64::MAX);
    }

    #[test]
    fn stand_ins_lock_every_account_of_passwd_and_group() {
        let shadow = shadow_stand_in(PASSWD, 20000);
        assert_eq!(shadow, b"root:*:20000::::::\napp:*:20000::::::\n".to_vec());
        let all: Vec<Sp> = shadow_entries(&shadow).collect();
        assert_eq!(all[1].numbers, [20000, -1, -1, -1, -1, -1]);
        assert_eq!(
            gshadow_stand_in(GROUP),
            b"root:*::\nadm:*::app,other\nstaff:*::app\napp:*::\n".to_vec()
        );
    }

    #[test]
    fn fills_in_the_callers_buffer_or_says_erange() {
        let pw = passwd_entries(PASSWD).nth(1).unwrap();
        // SAFETY: passwd is plain data (pointers and integers): all zeroes is valid.
        let mut out: libc::passwd = unsafe { std::mem::zeroed() };
        let mut small = [0 as c_char; 8];
        // SAFETY: valid buffers of the given lengths.
        unsafe {
            assert_eq!(
                fill_passwd(&pw, &mut out, small.as_mut_ptr(), small.len()),
                libc::ERANGE
            );
            let mut buf = [0 as c_char; 256];
            assert_eq!(fill_passwd(&pw, &mut out, buf.as_mut_ptr(), buf.len()), 0);
            assert_eq!(std::ffi::CStr::from_ptr(out.pw_dir).to_bytes(), b"/srv/app");
            assert_eq!(out.pw_uid, 1000);

            let gr = group_entries(GROUP).nth(1).unwrap();
            let mut g: libc::group = std::mem::zeroed();
            let mut buf = [0 as c_char; 256];
            assert_eq!(fill_group(&gr, &mut g, buf.as_mut_ptr().add(1), 255), 0);
            assert_eq!(
                std::ffi::CStr::from_ptr(*g.gr_mem.add(1)).to_bytes(),
                b"other"
            );
            assert!((*g.gr_mem.add(2)).is_null());
            assert_eq!(g.gr_mem as usize % align_of::<*mut c_char>(), 0);
            assert_eq!(fill_group(&gr, &mut g, buf.as_mut_ptr(), 20), libc::ERANGE);
        }
    }
}
