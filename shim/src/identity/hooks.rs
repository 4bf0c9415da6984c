//! FFI layer of the identity replica: decode arguments, call `ops`, encode results.

use libc::{c_char, c_int, gid_t, size_t, uid_t};

use super::ops::{self, Kind};
use std::sync::atomic::Ordering;

use super::state::{CREDS, EFFECTIVE, REAL};
use crate::hook::{fail, result};

/// A real set*id call (the capsule has no identity): what the process may do in the
/// file system changes with it.
fn real_set(call: impl FnOnce() -> c_int) -> c_int {
    let rc = call();
    crate::fs::owner::init();
    rc
}

/// Writes three ids through caller pointers (getresuid/getresgid).
///
/// # Safety
/// The pointers are null or valid for writes.
unsafe fn store_three(ids: [u32; 3], out: [*mut u32; 3]) -> c_int {
    if out.iter().any(|p| p.is_null()) {
        return fail(libc::EFAULT);
    }
    for (p, id) in out.into_iter().zip(ids) {
        // SAFETY: `p` is not null (checked above), so by the caller's contract it is
        // valid for writes.
        unsafe { *p = id };
    }
    0
}

///
/// # Safety
/// The pointers are null or valid for writes.
unsafe fn get_three(kind: Kind, out: [*mut u32; 3], real: impl FnOnce() -> c_int) -> c_int {
    match ops::get_all(&CREDS, kind) {
        // SAFETY: the pointers are null or valid for writes (this function's contract).
        Ok(ids) => unsafe { store_three(ids, out) },
        Err(skip) => result(Err(skip), real),
    }
}

hook! {

    fn getuid() -> uid_t, missing: uid_t::MAX;
    // SAFETY: getuid(2) takes no arguments and cannot fail.
    reads_state |real| result(ops::get(&CREDS, Kind::User, REAL), || unsafe { real() })

    fn geteuid() -> uid_t, missing: uid_t::MAX;
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    reads_state |real| result(ops::get(&CREDS, Kind::User, EFFECTIVE), || unsafe { real() })

    fn getgid() -> gid_t, missing: gid_t::MAX;
    // SAFETY: getgid(2) takes no arguments and cannot fail.
    reads_state |real| result(ops::get(&CREDS, Kind::Group, REAL), || unsafe { real() })

    fn getegid() -> gid_t, missing: gid_t::MAX;
    // SAFETY: getegid(2) takes no arguments and cannot fail.
    reads_state |real| result(ops::get(&CREDS, Kind::Group, EFFECTIVE), || unsafe { real() })

    fn getresuid(r: *mut uid_t, e: *mut uid_t, s: *mut uid_t) -> c_int, missing: -1;
    reads_state |real| {
        // SAFETY: the caller's three pointers go unchanged to the real getresuid(2).
        let real = || unsafe { real(r, e, s) };
        // SAFETY: `r`, `e` and `s` are writable uids (getresuid's contract).
        unsafe { get_three(Kind::User, [r, e, s], real) }
    }

    fn getresgid(r: *mut gid_t, e: *mut gid_t, s: *mut gid_t) -> c_int, missing: -1;
    reads_state |real| {
        // SAFETY: the caller's three pointers go unchanged to the real getresgid(2).
        let real = || unsafe { real(r, e, s) };
        // SAFETY: `r`, `e` and `s` are writable gids (getresgid's contract).
        unsafe { get_three(Kind::Group, [r, e, s], real) }
    }

    fn getgroups(size: c_int, list: *mut gid_t) -> c_int, missing: -1;
    reads_state |real| {
        let out: &mut [u32] = if size > 0 && !list.is_null() {
            // SAFETY: getgroups(2)'s contract: a non-null `list` holds `size` ids.
            unsafe { std::slice::from_raw_parts_mut(list, size as usize) }
        } else {
            &mut []
        };
        // SAFETY: the caller's size and list go unchanged to the real getgroups(2).
        result(ops::get_groups(&CREDS, out, size), || unsafe { real(size, list) })
    }

    fn setuid(uid: uid_t) -> c_int, missing: -1;
    // SAFETY: setuid(2) takes ids only, passed unchanged.
    |real| result(ops::set_id(&CREDS, Kind::User, uid), || real_set(|| unsafe { real(uid) }))

    fn setgid(gid: gid_t) -> c_int, missing: -1;
    // SAFETY: setgid(2) takes ids only, passed unchanged.
    |real| result(ops::set_id(&CREDS, Kind::Group, gid), || real_set(|| unsafe { real(gid) }))

    fn seteuid(uid: uid_t) -> c_int, missing: -1;
    // SAFETY: seteuid(2) takes ids only, passed unchanged.
    |real| result(ops::set_effective(&CREDS, Kind::User, uid), || real_set(|| unsafe { real(uid) }))

    fn setegid(gid: gid_t) -> c_int, missing: -1;
    // SAFETY: setegid(2) takes ids only, passed unchanged.
    |real| result(ops::set_effective(&CREDS, Kind::Group, gid), || real_set(|| unsafe { real(gid) }))

    fn setreuid(r: uid_t, e: uid_t) -> c_int, missing: -1;
    // SAFETY: setreuid(2) takes ids only, passed unchanged.
    |real| result(ops::set_re(&CREDS, Kind::User, r, e), || real_set(|| unsafe { real(r, e) }))

    fn setregid(r: gid_t, e: gid_t) -> c_int, missing: -1;
    // SAFETY: setregid(2) takes ids only, passed unchanged.
    |real| result(ops::set_re(&CREDS, Kind::Group, r, e), || real_set(|| unsafe { real(r, e) }))

    fn setresuid(r: uid_t, e: uid_t, s: uid_t) -> c_int, missing: -1;
    // SAFETY: setresuid(2) takes ids only, passed unchanged.
    |real| result(ops::set_res(&CREDS, Kind::User, [r, e, s]), || real_set(|| unsafe { real(r, e, s) }))

    fn setresgid(r: gid_t, e: gid_t, s: gid_t) -> c_int, missing: -1;
    // SAFETY: setresgid(2) takes ids only, passed unchanged.
    |real| result(ops::set_res(&CREDS, Kind::Group, [r, e, s]), || real_set(|| unsafe { real(r, e, s) }))

    fn setfsuid(uid: uid_t) -> c_int, missing: -1;
    // SAFETY: setfsuid(2) takes ids only, passed unchanged.
    |real| result(ops::set_fs(&CREDS, Kind::User, uid), || real_set(|| unsafe { real(uid) }))

    fn setfsgid(gid: gid_t) -> c_int, missing: -1;
    // SAFETY: setfsgid(2) takes ids only, passed unchanged.
    |real| result(ops::set_fs(&CREDS, Kind::Group, gid), || real_set(|| unsafe { real(gid) }))

    fn setgroups(size: size_t, list: *const gid_t) -> c_int, missing: -1, support: Partial("at most 64 supplementary groups");
    |real| {
        let groups: &[u32] = if size > 0 && !list.is_null() {
            // SAFETY: setgroups(2)'s contract: a non-null `list` holds `size` ids.
            unsafe { std::slice::from_raw_parts(list, size) }
        } else {
            &[]
        };
        if size > 0 && list.is_null() && CREDS.enabled() {
            return fail(libc::EFAULT);
        }
        // SAFETY: the caller's size and list go unchanged to the real setgroups(2).
        result(ops::set_groups(&CREDS, groups), || unsafe { real(size, list) })
    }

    /// glibc's initgroups calls its internal setgroups, which would change the real
    /// process's groups: build the list here and apply it to the capsule identity.
    fn initgroups(user: *const c_char, group: gid_t) -> c_int, missing: -1;
    |real| {
        // SAFETY: the caller's name and group go unchanged to the real initgroups(3).
        let real = || unsafe { real(user, group) };
        if !CREDS.enabled() {
            return real();
        }
        let mut groups = [0 as gid_t; capsule_config::MAX_GROUPS];
        let mut n = groups.len() as c_int;
        let list = groups.as_mut_ptr();
        // The capsule's /etc/group when it has its own (this runs inside the guard,
        // where libc's getgrouplist would be the host's).
        // SAFETY: `user` is the caller's NUL-terminated name, `list` holds `n` ids.
        let listed = unsafe { super::nss_hooks::capsule_grouplist(user, group, list, &mut n) }
            // SAFETY: as above.
            .unwrap_or_else(|| unsafe { libc::getgrouplist(user, group, list, &mut n) });
        if listed < 0 {
            // More groups than a capsule identity holds: keep the first ones.
            n = groups.len() as c_int;
        }
        result(ops::set_groups(&CREDS, &groups[..n.max(0) as usize]), real)
    }

    /// The capsule's capability sets (see `caps_get`).
    fn capget(header: *mut CapHeader, data: *mut CapData) -> c_int, missing: -1, support: Partial("this process's emulated sets (a capsule root has them all); another process's are the kernel's");
    // SAFETY: `header` and `data` are as capget(2) takes them, for caps_get and,
    // unchanged, for the real capget.
    |real| match unsafe { caps_get(header, data) } {
        Some(rc) => rc,
        // SAFETY: as above.
        None => unsafe { real(header, data) },
    }

    fn capset(header: *mut CapHeader, data: *const CapData) -> c_int, missing: -1, support: Partial("as capget; inheritable capabilities are not kept");
    // SAFETY: `header` and `data` are as capset(2) takes them, for caps_set and,
    // unchanged, for the real capset.
    |real| match unsafe { caps_set(header, data) } {
        Some(rc) => rc,
        // SAFETY: as above.
        None => unsafe { real(header, data) },
    }

    /// `PR_SET_KEEPCAPS`/`PR_GET_KEEPCAPS` are the capsule identity's; every other
    /// option passes through.
    fn prctl(option: c_int, a2: libc::c_ulong, a3: libc::c_ulong, a4: libc::c_ulong, a5: libc::c_ulong) -> c_int, missing: -1, support: Partial("PR_SET_KEEPCAPS and PR_GET_KEEPCAPS are the capsule identity's; other options pass through");
    |real| {
        // SAFETY: the caller's option and arguments go unchanged to the real prctl(2).
        let real = || unsafe { real(option, a2, a3, a4, a5) };
        if !CREDS.enabled() {
            return real();
        }
        match option {
            libc::PR_SET_KEEPCAPS if a2 > 1 => fail(libc::EINVAL),
            libc::PR_SET_KEEPCAPS => {
                CREDS.keep_caps.store(a2 == 1, Ordering::Relaxed);
                0
            }
            libc::PR_GET_KEEPCAPS => c_int::from(CREDS.keep_caps.load(Ordering::Relaxed)),
            _ => real(),
        }
    }
}

/// `struct __user_cap_header_struct` and `__user_cap_data_struct` of capget(2).
#[repr(C)]
pub struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
pub struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V1: u32 = 0x1998_0330;
const CAP_V2: u32 = 0x2007_1026;
const CAP_V3: u32 = 0x2008_0522;

/// How many data structures a header's version takes, for this process (pid 0 or
/// its own); `None`: let the kernel answer (another process, no data, a version
/// the kernel will reject and correct).
///
/// # Safety
/// `header` is null or valid for reads of a `CapHeader`.
unsafe fn cap_words(header: *const CapHeader, data_null: bool) -> Option<usize> {
    if !CREDS.enabled() || header.is_null() || data_null {
        return None;
    }
    // SAFETY: `header` is not null (checked above), so valid for reads by the caller's
    // contract.
    let (pid, version) = unsafe { ((*header).pid, (*header).version) };
    // SAFETY: getpid takes no arguments and cannot fail.
    if pid != 0 && pid != unsafe { libc::getpid() } {
        return None;
    }
    match version {
        CAP_V1 => Some(1),
        CAP_V2 | CAP_V3 => Some(2),
        _ => None,
    }
}

/// capget of this process: the capsule's sets (a capsule root has them all), not
/// the real user's empty ones, so that a program that saves and restores its
/// capabilities around a uid change (`setpriv`, libcap-ng) keeps them.
///
/// # Safety
/// `header` is null or valid for reads; `data` is null or valid for writes of as many
/// `CapData` as the header's version takes (capget(2)'s contract).
unsafe fn caps_get(header: *mut CapHeader, data: *mut CapData) -> Option<c_int> {
    // SAFETY: `header` is null or valid for reads (this function's contract).
    let words = unsafe { cap_words(header, data.is_null()) }?;
    let effective = CREDS.effective_caps.load(Ordering::Relaxed);
    let permitted = CREDS.permitted_caps.load(Ordering::Relaxed);
    for i in 0..words {
        let d = CapData {
            effective: (effective >> (32 * i)) as u32,
            permitted: (permitted >> (32 * i)) as u32,
            inheritable: 0,
        };
        // SAFETY: `data` is not null (cap_words checked it) and, by the caller's
        // contract, valid for writes of `words` structures; `i < words`.
        unsafe { *data.add(i) = d };
    }
    Some(0)
}

/// capset of this process, with the kernel's rules: the permitted set may only
/// shrink, the effective set stays within it (inheritable capabilities are kept
/// only as none).
///
/// # Safety
/// `header` is null or valid for reads; `data` is null or valid for reads of as many
/// `CapData` as the header's version takes (capset(2)'s contract).
unsafe fn caps_set(header: *mut CapHeader, data: *const CapData) -> Option<c_int> {
    // SAFETY: `header` is null or valid for reads (this function's contract).
    let words = unsafe { cap_words(header, data.is_null()) }?;
    let (mut effective, mut permitted) = (0u64, 0u64);
    for i in 0..words {
        // SAFETY: `data` is not null (cap_words checked it) and, by the caller's
        // contract, valid for reads of `words` structures; `i < words`.
        let d = unsafe { &*data.add(i) };
        effective |= u64::from(d.effective) << (32 * i);
        permitted |= u64::from(d.permitted) << (32 * i);
    }
    let old = CREDS.permitted_caps.load(Ordering::Relaxed);
    if permitted & !old != 0 || effective & !permitted != 0 {
        return Some(fail(libc::EPERM));
    }
    CREDS.permitted_caps.store(permitted, Ordering::Relaxed);
    CREDS.effective_caps.store(effective, Ordering::Relaxed);
    Some(0)
}
