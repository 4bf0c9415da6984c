//! FFI layer of the identity replica: decode arguments, call `ops`, encode results.

use libc::{c_char, c_int, gid_t, size_t, uid_t};

use super::ops::{self, Kind};
use super::state::{CREDS, EFFECTIVE, REAL};
use crate::hook::{int_result, set_errno, Outcome};

/// A real set*id call (the capsule has no identity): what the process may do in the
/// file system changes with it.
fn real_set(call: impl FnOnce() -> c_int) -> c_int {
    let rc = call();
    crate::fs::owner::init();
    rc
}

fn id_result(outcome: Outcome<u32>, real: impl FnOnce() -> u32) -> u32 {
    match outcome {
        Outcome::Handled(v) => v,
        Outcome::PassThrough => real(),
        Outcome::Fail(e) => {
            set_errno(e);
            u32::MAX
        }
    }
}

/// Writes three ids through caller pointers (getresuid/getresgid).
///
/// # Safety
/// The pointers are null or valid for writes.
unsafe fn store_three(ids: [u32; 3], out: [*mut u32; 3]) -> c_int {
    if out.iter().any(|p| p.is_null()) {
        set_errno(libc::EFAULT);
        return -1;
    }
    for (p, id) in out.into_iter().zip(ids) {
        *p = id;
    }
    0
}

unsafe fn get_three(kind: Kind, out: [*mut u32; 3], real: impl FnOnce() -> c_int) -> c_int {
    match ops::get_all(&CREDS, kind) {
        Outcome::Handled(ids) => store_three(ids, out),
        Outcome::PassThrough => real(),
        Outcome::Fail(e) => {
            set_errno(e);
            -1
        }
    }
}

hook! {
    fn getuid() -> uid_t, missing: uid_t::MAX;
    reads_state |real| id_result(ops::get(&CREDS, Kind::User, REAL), || real())

    fn geteuid() -> uid_t, missing: uid_t::MAX;
    reads_state |real| id_result(ops::get(&CREDS, Kind::User, EFFECTIVE), || real())

    fn getgid() -> gid_t, missing: gid_t::MAX;
    reads_state |real| id_result(ops::get(&CREDS, Kind::Group, REAL), || real())

    fn getegid() -> gid_t, missing: gid_t::MAX;
    reads_state |real| id_result(ops::get(&CREDS, Kind::Group, EFFECTIVE), || real())

    fn getresuid(r: *mut uid_t, e: *mut uid_t, s: *mut uid_t) -> c_int, missing: -1;
    reads_state |real| get_three(Kind::User, [r, e, s], || real(r, e, s))

    fn getresgid(r: *mut gid_t, e: *mut gid_t, s: *mut gid_t) -> c_int, missing: -1;
    reads_state |real| get_three(Kind::Group, [r, e, s], || real(r, e, s))

    fn getgroups(size: c_int, list: *mut gid_t) -> c_int, missing: -1;
    reads_state |real| {
        let out: &mut [u32] = if size > 0 && !list.is_null() {
            std::slice::from_raw_parts_mut(list, size as usize)
        } else {
            &mut []
        };
        int_result(ops::get_groups(&CREDS, out, size), || real(size, list))
    }

    fn setuid(uid: uid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_id(&CREDS, Kind::User, uid), || real_set(|| real(uid)))

    fn setgid(gid: gid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_id(&CREDS, Kind::Group, gid), || real_set(|| real(gid)))

    fn seteuid(uid: uid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_effective(&CREDS, Kind::User, uid), || real_set(|| real(uid)))

    fn setegid(gid: gid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_effective(&CREDS, Kind::Group, gid), || real_set(|| real(gid)))

    fn setreuid(r: uid_t, e: uid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_re(&CREDS, Kind::User, r, e), || real_set(|| real(r, e)))

    fn setregid(r: gid_t, e: gid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_re(&CREDS, Kind::Group, r, e), || real_set(|| real(r, e)))

    fn setresuid(r: uid_t, e: uid_t, s: uid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_res(&CREDS, Kind::User, [r, e, s]), || real_set(|| real(r, e, s)))

    fn setresgid(r: gid_t, e: gid_t, s: gid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_res(&CREDS, Kind::Group, [r, e, s]), || real_set(|| real(r, e, s)))

    fn setfsuid(uid: uid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_fs(&CREDS, Kind::User, uid), || real_set(|| real(uid)))

    fn setfsgid(gid: gid_t) -> c_int, missing: -1;
    |real| int_result(ops::set_fs(&CREDS, Kind::Group, gid), || real_set(|| real(gid)))

    fn setgroups(size: size_t, list: *const gid_t) -> c_int, missing: -1;
    |real| {
        let groups: &[u32] = if size > 0 && !list.is_null() {
            std::slice::from_raw_parts(list, size)
        } else {
            &[]
        };
        if size > 0 && list.is_null() && CREDS.enabled() {
            set_errno(libc::EFAULT);
            return -1;
        }
        int_result(ops::set_groups(&CREDS, groups), || real(size, list))
    }

    /// glibc's initgroups calls its internal setgroups, which would change the real
    /// process's groups: build the list here and apply it to the capsule identity.
    fn initgroups(user: *const c_char, group: gid_t) -> c_int, missing: -1;
    |real| {
        if !CREDS.enabled() {
            return real(user, group);
        }
        let mut groups = [0 as gid_t; capsule_config::MAX_GROUPS];
        let mut n = groups.len() as c_int;
        // The capsule's /etc/group when it has its own (this runs inside the guard,
        // where libc's getgrouplist would be the host's).
        let listed = super::nss_hooks::capsule_grouplist(user, group, groups.as_mut_ptr(), &mut n)
            .unwrap_or_else(|| libc::getgrouplist(user, group, groups.as_mut_ptr(), &mut n));
        if listed < 0 {
            // More groups than a capsule identity holds: keep the first ones.
            n = groups.len() as c_int;
        }
        int_result(ops::set_groups(&CREDS, &groups[..n.max(0) as usize]), || real(user, group))
    }
}
