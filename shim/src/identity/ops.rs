//! The kernel's credential rules (credentials(7), setresuid(2)), applied to the
//! emulated credentials. Shared by uid and gid calls: `Kind` says which set.

use std::ffi::c_int;

use super::state::{Creds, Ids, CAP_SETGID, CAP_SETUID, EFFECTIVE, FS, REAL, SAVED};
use crate::hook::{Outcome, Skip};

/// "Leave unchanged" in setreuid/setresuid and friends.
pub const UNCHANGED: u32 = u32::MAX;

#[derive(Clone, Copy)]
pub enum Kind {
    User,
    Group,
}

/// Whether the process may set any id of `kind` (`CAP_SETUID`, `CAP_SETGID`).
fn capable(creds: &Creds, kind: Kind) -> bool {
    creds.capable(match kind {
        Kind::User => CAP_SETUID,
        Kind::Group => CAP_SETGID,
    })
}

/// Runs a change of the ids of `kind`, then the kernel's capability rules when
/// they were the uids.
fn changing(creds: &Creds, kind: Kind, change: impl FnOnce() -> Outcome<c_int>) -> Outcome<c_int> {
    let old = creds.uid.all();
    let outcome = change();
    if matches!(kind, Kind::User) && outcome.is_ok() {
        creds.uids_changed(old);
    }
    outcome
}

fn ids(creds: &Creds, kind: Kind) -> &Ids {
    match kind {
        Kind::User => &creds.uid,
        Kind::Group => &creds.gid,
    }
}

/// getuid / geteuid / getgid / getegid.
pub fn get(creds: &Creds, kind: Kind, which: usize) -> Outcome<u32> {
    if !creds.enabled() {
        return Err(Skip::Pass);
    }
    Ok(ids(creds, kind).get(which))
}

/// getresuid / getresgid.
pub fn get_all(creds: &Creds, kind: Kind) -> Outcome<[u32; 3]> {
    if !creds.enabled() {
        return Err(Skip::Pass);
    }
    Ok(ids(creds, kind).all())
}

/// setuid / setgid.
pub fn set_id(creds: &Creds, kind: Kind, id: u32) -> Outcome<c_int> {
    if !creds.enabled() {
        return Err(Skip::Pass);
    }
    if id == UNCHANGED {
        return Err(Skip::Errno(libc::EINVAL));
    }
    let set = ids(creds, kind);
    changing(creds, kind, || {
        if capable(creds, kind) {
            for which in [REAL, EFFECTIVE, SAVED, FS] {
                set.set(which, id);
            }
        } else if id == set.get(REAL) || id == set.get(SAVED) {
            set.set(EFFECTIVE, id);
            set.set(FS, id);
        } else {
            return Err(Skip::Errno(libc::EPERM));
        }
        Ok(0)
    })
}

/// setresuid / setresgid (and seteuid/setegid, which glibc defines through them).
pub fn set_res(creds: &Creds, kind: Kind, new: [u32; 3]) -> Outcome<c_int> {
    if !creds.enabled() {
        return Err(Skip::Pass);
    }
    let set = ids(creds, kind);
    if !capable(creds, kind) && new.iter().any(|&id| id != UNCHANGED && !set.holds(id)) {
        return Err(Skip::Errno(libc::EPERM));
    }
    changing(creds, kind, || {
        for (which, id) in [REAL, EFFECTIVE, SAVED].into_iter().zip(new) {
            if id != UNCHANGED {
                set.set(which, id);
            }
        }
        set.set(FS, set.get(EFFECTIVE));
        Ok(0)
    })
}

/// seteuid / setegid: glibc refuses -1 itself, then goes through setresuid.
pub fn set_effective(creds: &Creds, kind: Kind, id: u32) -> Outcome<c_int> {
    if creds.enabled() && id == UNCHANGED {
        return Err(Skip::Errno(libc::EINVAL));
    }
    set_res(creds, kind, [UNCHANGED, id, UNCHANGED])
}

/// setreuid / setregid.
pub fn set_re(creds: &Creds, kind: Kind, real: u32, effective: u32) -> Outcome<c_int> {
    if !creds.enabled() {
        return Err(Skip::Pass);
    }
    let set = ids(creds, kind);
    let old_real = set.get(REAL);
    if !capable(creds, kind) {
        let real_ok = real == UNCHANGED || real == old_real || real == set.get(EFFECTIVE);
        let effective_ok = effective == UNCHANGED || set.holds(effective);
        if !real_ok || !effective_ok {
            return Err(Skip::Errno(libc::EPERM));
        }
    }
    changing(creds, kind, || {
        if real != UNCHANGED {
            set.set(REAL, real);
        }
        if effective != UNCHANGED {
            set.set(EFFECTIVE, effective);
        }
        // The saved id follows the new effective id when the real id was set, or the
        // effective id was set to something other than the previous real id.
        if real != UNCHANGED || (effective != UNCHANGED && effective != old_real) {
            set.set(SAVED, set.get(EFFECTIVE));
        }
        set.set(FS, set.get(EFFECTIVE));
        Ok(0)
    })
}

/// setfsuid / setfsgid: always return the previous value; change it when allowed.
pub fn set_fs(creds: &Creds, kind: Kind, id: u32) -> Outcome<c_int> {
    if !creds.enabled() {
        return Err(Skip::Pass);
    }
    let set = ids(creds, kind);
    let previous = set.get(FS);
    if id != UNCHANGED && (capable(creds, kind) || set.holds(id) || id == previous) {
        set.set(FS, id);
    }
    Ok(previous as c_int)
}

/// getgroups: with size 0, the count; a buffer too small is EINVAL.
pub fn get_groups(creds: &Creds, out: &mut [u32], size: c_int) -> Outcome<c_int> {
    if !creds.enabled() {
        return Err(Skip::Pass);
    }
    if size < 0 {
        return Err(Skip::Errno(libc::EINVAL));
    }
    let mut all = [0u32; capsule_config::MAX_GROUPS];
    let n = creds.groups(&mut all);
    if size == 0 {
        return Ok(n as c_int);
    }
    if (size as usize) < n {
        return Err(Skip::Errno(libc::EINVAL));
    }
    out[..n].copy_from_slice(&all[..n]);
    Ok(n as c_int)
}

/// setgroups: only a capsule process with `CAP_SETGID` may change them.
pub fn set_groups(creds: &Creds, groups: &[u32]) -> Outcome<c_int> {
    if !creds.enabled() {
        return Err(Skip::Pass);
    }
    if !capable(creds, Kind::Group) {
        return Err(Skip::Errno(libc::EPERM));
    }
    if groups.len() > capsule_config::MAX_GROUPS {
        return Err(Skip::Errno(libc::EINVAL));
    }
    creds.set_groups(groups);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capsule_config::Identity;

    fn creds(uid: [u32; 3], gid: u32) -> Creds {
        let c = Creds::new_for_tests();
        c.install(&Identity {
            uid,
            gid: [gid; 3],
            groups: vec![gid],
        });
        c
    }

    /// A root that leaves uid 0 loses its capabilities, unless it kept them with
    /// `PR_SET_KEEPCAPS` and raised them again (what setpriv does): then it may
    /// still change its gids.
    #[test]
    fn capabilities_follow_uid_changes_and_keepcaps() {
        let c = creds([0, 0, 0], 0);
        assert!(matches!(set_res(&c, Kind::User, [1000; 3]), Ok(0)));
        assert!(matches!(
            set_res(&c, Kind::Group, [1000; 3]),
            Err(Skip::Errno(libc::EPERM))
        ));
        let c = creds([0, 0, 0], 0);
        c.keep_caps
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(set_res(&c, Kind::User, [1000; 3]), Ok(0)));
        assert!(!c.capable(CAP_SETGID), "the effective set is cleared");
        let permitted = c.permitted_caps.load(std::sync::atomic::Ordering::Relaxed);
        c.effective_caps
            .store(permitted, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(set_res(&c, Kind::Group, [1000; 3]), Ok(0)));
        assert!(matches!(set_groups(&c, &[1000]), Ok(0)));
        // A root that only changes its effective uid gets its capabilities back.
        let c = creds([0, 0, 0], 0);
        assert!(matches!(set_effective(&c, Kind::User, 1000), Ok(0)));
        assert!(!c.capable(CAP_SETUID));
        assert!(matches!(set_effective(&c, Kind::User, 0), Ok(0)));
        assert!(c.capable(CAP_SETUID));
    }

    fn ok<T: PartialEq + std::fmt::Debug>(o: Outcome<T>) -> T {
        match o {
            Ok(v) => v,
            Err(Skip::Pass) => panic!("passed through"),
            Err(Skip::Errno(e)) => panic!("failed with errno {e}"),
        }
    }

    fn errno<T>(o: Outcome<T>) -> c_int {
        match o {
            Err(Skip::Errno(e)) => e,
            _ => panic!("did not fail"),
        }
    }

    #[test]
    fn disabled_identity_passes_through() {
        let c = Creds::new_for_tests();
        assert!(matches!(get(&c, Kind::User, REAL), Err(Skip::Pass)));
        assert!(matches!(set_id(&c, Kind::User, 5), Err(Skip::Pass)));
    }

    #[test]
    fn root_may_become_anyone_and_not_come_back() {
        let c = creds([0; 3], 0);
        assert_eq!(ok(set_id(&c, Kind::Group, 50)), 0);
        assert_eq!(ok(set_id(&c, Kind::User, 1000)), 0);
        assert_eq!(ok(get_all(&c, Kind::User)), [1000; 3]);
        assert_eq!(ok(get_all(&c, Kind::Group)), [50; 3]);
        assert_eq!(errno(set_id(&c, Kind::User, 0)), libc::EPERM);
        assert_eq!(errno(set_groups(&c, &[1])), libc::EPERM);
    }

    #[test]
    fn seteuid_keeps_the_way_back() {
        let c = creds([0; 3], 0);
        assert_eq!(ok(set_res(&c, Kind::User, [UNCHANGED, 1000, UNCHANGED])), 0);
        assert_eq!(ok(get_all(&c, Kind::User)), [0, 1000, 0]);
        // Unprivileged now, but 0 is still the real and saved id.
        assert_eq!(ok(set_res(&c, Kind::User, [UNCHANGED, 0, UNCHANGED])), 0);
        assert_eq!(ok(get(&c, Kind::User, EFFECTIVE)), 0);
    }

    #[test]
    fn unprivileged_rules() {
        let c = creds([1000, 1000, 2000], 1000);
        assert_eq!(errno(set_id(&c, Kind::User, 0)), libc::EPERM);
        assert_eq!(ok(set_id(&c, Kind::User, 2000)), 0);
        assert_eq!(ok(get_all(&c, Kind::User)), [1000, 2000, 2000]);
        assert_eq!(
            errno(set_res(&c, Kind::User, [3000, UNCHANGED, UNCHANGED])),
            libc::EPERM
        );
        assert_eq!(errno(set_re(&c, Kind::User, 3000, UNCHANGED)), libc::EPERM);
        assert_eq!(ok(set_re(&c, Kind::User, 2000, 1000)), 0);
        assert_eq!(ok(get_all(&c, Kind::User)), [2000, 1000, 1000]);
        assert_eq!(errno(set_id(&c, Kind::User, UNCHANGED)), libc::EINVAL);
        assert_eq!(
            errno(set_effective(&c, Kind::User, UNCHANGED)),
            libc::EINVAL
        );
        // setfsuid returns the old value and refuses foreign ids silently.
        assert_eq!(ok(set_fs(&c, Kind::User, 0)), 1000);
        assert_eq!(ok(set_fs(&c, Kind::User, UNCHANGED)), 1000);
    }

    #[test]
    fn groups() {
        let c = creds([0; 3], 0);
        assert_eq!(ok(set_groups(&c, &[1, 2, 3])), 0);
        let mut buf = [0u32; 8];
        assert_eq!(ok(get_groups(&c, &mut buf, 0)), 3);
        assert_eq!(errno(get_groups(&c, &mut buf[..2], 2)), libc::EINVAL);
        assert_eq!(ok(get_groups(&c, &mut buf, 8)), 3);
        assert_eq!(&buf[..3], &[1, 2, 3]);
        assert_eq!(errno(set_groups(&c, &[0; 65])), libc::EINVAL);
    }
}
