//! FFI layer of the capsule's user and group database (see `nss.rs`): the `getpw*`,
//! `getgr*` and `getgrouplist` functions, answered from the capsule's own files.

use std::cell::{RefCell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use libc::{c_char, c_int, gid_t, group, passwd, size_t, uid_t};

use super::nss::{self, Gr, Pw, Source};

const PASSWD: &[u8] = b"/etc/passwd";
const GROUP: &[u8] = b"/etc/group";
const SHADOW: &[u8] = b"/etc/shadow";

// SAFETY: passwd is plain C data; all-zero is its empty value (null pointers
// until filled).
const EMPTY_PW: passwd = unsafe { std::mem::zeroed() };

// SAFETY: group is plain C data; all-zero is its empty value (null pointers
// until filled).
const EMPTY_GR: group = unsafe { std::mem::zeroed() };

// SAFETY: spwd is plain C data; all-zero is its empty value (null pointers
// until filled).
const EMPTY_SP: libc::spwd = unsafe { std::mem::zeroed() };

thread_local! {
    // What the non-reentrant functions return: valid until the thread's next call,
    // as glibc's static buffers are.
    static PW_OUT: UnsafeCell<passwd> = const { UnsafeCell::new(EMPTY_PW) };
    static GR_OUT: UnsafeCell<group> = const { UnsafeCell::new(EMPTY_GR) };
    static SP_OUT: UnsafeCell<libc::spwd> = const { UnsafeCell::new(EMPTY_SP) };
    static PW_STORE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static SP_STORE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static GR_STORE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The descriptor of `/etc/.pwd.lock` that `lckpwdf` holds locked, or -1.
static PWD_LOCK: AtomicI32 = AtomicI32::new(-1);

/// Where `getpwent`/`getgrent` are in the capsule's file (process-wide, as glibc's).
static PW_POS: AtomicUsize = AtomicUsize::new(0);
static GR_POS: AtomicUsize = AtomicUsize::new(0);

/// Fills a thread's static result with `fill`, growing its buffer until it fits.
/// `fill` is given the thread's result and a buffer valid for the length passed.
///
/// # Safety
/// No other reference to the thread's result in `out` is live.
unsafe fn store<T>(
    out: &'static std::thread::LocalKey<UnsafeCell<T>>,
    buffer: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    fill: impl Fn(*mut T, *mut c_char, usize) -> c_int,
) -> *mut T {
    let target = out.with(UnsafeCell::get);
    buffer.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < 1024 {
            buf.resize(1024, 0);
        }
        loop {
            let len = buf.len();
            match fill(target, buf.as_mut_ptr().cast(), len) {
                0 => return target,
                libc::ERANGE if len < 1 << 24 => buf.resize(len * 2, 0),
                _ => return ptr::null_mut(),
            }
        }
    })
}

/// # Safety
/// As `store`.
unsafe fn store_pw(pw: &Pw) -> *mut passwd {
    // SAFETY: the caller's contract; `store` gives the thread's result, a valid
    // passwd, and a buffer valid for `len` bytes.
    unsafe {
        store(&PW_OUT, &PW_STORE, |out, buf, len| {
            nss::fill_passwd(pw, out, buf, len)
        })
    }
}

/// # Safety
/// As `store`.
unsafe fn store_gr(gr: &Gr) -> *mut group {
    // SAFETY: the caller's contract; `store` gives the thread's result, a valid
    // group, and a buffer valid for `len` bytes.
    unsafe {
        store(&GR_OUT, &GR_STORE, |out, buf, len| {
            nss::fill_group(gr, out, buf, len)
        })
    }
}

/// A reentrant lookup (`get*_r`): 0 with `*result` set or null (not found), or an
/// errno value such as `ERANGE`.
///
/// # Safety
/// `result` is null or valid for writes.
unsafe fn reentrant<T>(
    found: Option<c_int>,
    fallback: bool,
    out: *mut T,
    result: *mut *mut T,
    real: impl FnOnce() -> c_int,
) -> c_int {
    match found {
        Some(rc) => {
            if !result.is_null() {
                // SAFETY: `result` is not null, so valid for writes (the caller's contract).
                unsafe { *result = if rc == 0 { out } else { ptr::null_mut() } };
            }
            rc
        }
        None if fallback => real(),
        None => {
            if !result.is_null() {
                // SAFETY: `result` is not null, so valid for writes (the caller's contract).
                unsafe { *result = ptr::null_mut() };
            }
            0
        }
    }
}

/// # Safety
/// `out` is a valid `passwd`, `buf` valid for `len` bytes, `result` null or valid for
/// writes (getpwnam_r(3)'s contract).
unsafe fn pw_r(
    matches: impl Fn(&Pw) -> bool,
    out: *mut passwd,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut passwd,
    real: impl FnOnce() -> c_int,
) -> c_int {
    match nss::source(PASSWD) {
        Source::Host => real(),
        Source::Capsule { text, fallback } => {
            let found = nss::passwd_entries(&text)
                .find(|p| matches(p))
                // SAFETY: `out` and `buf` are valid (the caller's contract).
                .map(|pw| unsafe { nss::fill_passwd(&pw, out, buf, len) });
            // SAFETY: `result` is null or valid for writes (the caller's contract).
            unsafe { reentrant(found, fallback, out, result, real) }
        }
    }
}

/// # Safety
/// As `store`.
unsafe fn pw(matches: impl Fn(&Pw) -> bool, real: impl FnOnce() -> *mut passwd) -> *mut passwd {
    match nss::source(PASSWD) {
        Source::Host => real(),
        Source::Capsule { text, fallback } => match nss::passwd_entries(&text).find(|p| matches(p))
        {
            // SAFETY: the caller's contract.
            Some(pw) => unsafe { store_pw(&pw) },
            None if fallback => real(),
            None => ptr::null_mut(),
        },
    }
}

/// # Safety
/// `out` is a valid `group`, `buf` valid for `len` bytes, `result` null or valid for
/// writes (getgrnam_r(3)'s contract).
unsafe fn gr_r(
    matches: impl Fn(&Gr) -> bool,
    out: *mut group,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut group,
    real: impl FnOnce() -> c_int,
) -> c_int {
    match nss::source(GROUP) {
        Source::Host => real(),
        Source::Capsule { text, fallback } => {
            let found = nss::group_entries(&text)
                .find(|g| matches(g))
                // SAFETY: `out` and `buf` are valid (the caller's contract).
                .map(|gr| unsafe { nss::fill_group(&gr, out, buf, len) });
            // SAFETY: `result` is null or valid for writes (the caller's contract).
            unsafe { reentrant(found, fallback, out, result, real) }
        }
    }
}

/// # Safety
/// As `store`.
unsafe fn gr(matches: impl Fn(&Gr) -> bool, real: impl FnOnce() -> *mut group) -> *mut group {
    match nss::source(GROUP) {
        Source::Host => real(),
        Source::Capsule { text, fallback } => {
            match nss::group_entries(&text).find(|g| matches(g)) {
                // SAFETY: the caller's contract.
                Some(gr) => unsafe { store_gr(&gr) },
                None if fallback => real(),
                None => ptr::null_mut(),
            }
        }
    }
}

/// `getspnam_r` from the capsule's `/etc/shadow`, as `getpwnam_r` from its
/// `/etc/passwd`: PAM's `pam_unix` (`su`, `runuser`) then finds the capsule's users.
///
/// # Safety
/// `out` is a valid `spwd`, `buf` valid for `len` bytes, `result` null or valid for
/// writes (getspnam_r(3)'s contract).
unsafe fn sp_r(
    wanted: &[u8],
    out: *mut libc::spwd,
    buf: *mut c_char,
    len: size_t,
    result: *mut *mut libc::spwd,
    real: impl FnOnce() -> c_int,
) -> c_int {
    match nss::source(SHADOW) {
        Source::Host => real(),
        Source::Capsule { text, fallback } => {
            let found = nss::shadow_entries(&text)
                .find(|e| e.name == wanted)
                // SAFETY: `out` and `buf` are valid (the caller's contract).
                .map(|e| unsafe { nss::fill_shadow(&e, out, buf, len) });
            // SAFETY: `result` is null or valid for writes (the caller's contract).
            unsafe { reentrant(found, fallback, out, result, real) }
        }
    }
}

/// `getspnam`: the same into the thread's static result.
///
/// # Safety
/// As `store`.
unsafe fn sp(wanted: &[u8], real: impl FnOnce() -> *mut libc::spwd) -> *mut libc::spwd {
    match nss::source(SHADOW) {
        Source::Host => real(),
        Source::Capsule { text, fallback } => {
            match nss::shadow_entries(&text).find(|e| e.name == wanted) {
                // SAFETY: the caller's contract; `store` gives the thread's result, a
                // valid spwd, and a buffer valid for `len` bytes.
                Some(e) => unsafe {
                    store(&SP_OUT, &SP_STORE, |o, buf, len| {
                        nss::fill_shadow(&e, o, buf, len)
                    })
                },
                None if fallback => real(),
                None => ptr::null_mut(),
            }
        }
    }
}

/// # Safety
/// `name` is null or a NUL-terminated string that lives for `'a`.
unsafe fn name_of<'a>(name: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: `name` is not null here, so NUL-terminated (the caller's contract).
    (!name.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes())
}

/// `getgrouplist` from the capsule's `/etc/group`; `None` when the host's answers.
///
/// # Safety
/// `user` is a C string; `groups` holds `*ngroups` ids.
pub unsafe fn capsule_grouplist(
    user: *const c_char,
    group: gid_t,
    groups: *mut gid_t,
    ngroups: *mut c_int,
) -> Option<c_int> {
    let Source::Capsule { text, .. } = nss::source(GROUP) else {
        return None;
    };
    // SAFETY: `user` is a C string (the caller's contract).
    let list = nss::group_list(&text, unsafe { name_of(user) }.unwrap_or_default(), group);
    // SAFETY: `ngroups` is valid for reads (the caller's contract).
    let room = unsafe { *ngroups }.max(0) as usize;
    for (i, gid) in list.iter().take(room).enumerate() {
        // SAFETY: `groups` holds `*ngroups` ids (the caller's contract), `i < room`.
        unsafe { *groups.add(i) = *gid };
    }
    let n = list.len() as c_int;
    // SAFETY: `ngroups` is valid for writes (the caller's contract).
    unsafe { *ngroups = n };
    Some(if list.len() > room { -1 } else { n })
}

hook! {
    fn getpwnam(name: *const c_char) -> *mut passwd, missing: ptr::null_mut(), support: Partial("from the capsule's /etc/passwd (files format) when it has its own root or changed the file; else the host's NSS");
    |real| {
        // SAFETY: the caller's name goes unchanged to the real getpwnam(3).
        let real = || unsafe { real(name) };
        // SAFETY: `name` is null or a C string (getpwnam's contract).
        let Some(wanted) = (unsafe { name_of(name) }) else { return real() };
        // SAFETY: the thread's static result is referred to only by what earlier calls returned, which this call invalidates as getpwnam(3)'s does.
        unsafe { pw(|p| p.name == wanted, real) }
    }

    fn getpwuid(uid: uid_t) -> *mut passwd, missing: ptr::null_mut(), support: Partial("as getpwnam");
    |real| {
        // SAFETY: getpwuid(3) takes an id only, passed unchanged.
        let real = || unsafe { real(uid) };
        // SAFETY: the thread's static result is referred to only by what earlier calls returned, which this call invalidates as getpwuid(3)'s does.
        unsafe { pw(|p| p.uid == uid, real) }
    }

    fn getpwnam_r(name: *const c_char, out: *mut passwd, buf: *mut c_char, len: size_t, result: *mut *mut passwd) -> c_int, missing: libc::ENOSYS, support: Partial("as getpwnam");
    |real| {
        // SAFETY: the caller's arguments go unchanged to the real getpwnam_r(3).
        let real = || unsafe { real(name, out, buf, len, result) };
        // SAFETY: `name` is null or a C string (getpwnam_r's contract).
        let Some(wanted) = (unsafe { name_of(name) }) else { return real() };
        // SAFETY: `out`, `buf` (`len` bytes) and `result` are as getpwnam_r(3) takes them.
        unsafe { pw_r(|p| p.name == wanted, out, buf, len, result, real) }
    }

    fn getpwuid_r(uid: uid_t, out: *mut passwd, buf: *mut c_char, len: size_t, result: *mut *mut passwd) -> c_int, missing: libc::ENOSYS, support: Partial("as getpwnam");
    |real| {
        // SAFETY: the caller's arguments go unchanged to the real getpwuid_r(3).
        let real = || unsafe { real(uid, out, buf, len, result) };
        // SAFETY: `out`, `buf` (`len` bytes) and `result` are as getpwuid_r(3) takes them.
        unsafe { pw_r(|p| p.uid == uid, out, buf, len, result, real) }
    }

    fn getpwent() -> *mut passwd, missing: ptr::null_mut(), support: Partial("as getpwnam; lists the capsule's file only");
    |real| match nss::source(PASSWD) {
        // SAFETY: getpwent(3) takes no arguments.
        Source::Host => unsafe { real() },
        Source::Capsule { text, .. } => {
            let at = PW_POS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the thread's static result is referred to only by what earlier calls returned, which this call invalidates as getpwent(3)'s does.
            nss::passwd_entries(&text).nth(at).map_or(ptr::null_mut(), |p| unsafe { store_pw(&p) })
        }
    }

    fn getpwent_r(out: *mut passwd, buf: *mut c_char, len: size_t, result: *mut *mut passwd) -> c_int, missing: libc::ENOSYS, support: Partial("as getpwent");
    |real| match nss::source(PASSWD) {
        // SAFETY: the caller's arguments go unchanged to the real getpwent_r(3).
        Source::Host => unsafe { real(out, buf, len, result) },
        Source::Capsule { text, .. } => {
            let at = PW_POS.load(Ordering::Relaxed);
            let rc = match nss::passwd_entries(&text).nth(at) {
                // SAFETY: `out` is a passwd and `buf` holds `len` bytes (getpwent_r's contract).
                Some(p) => unsafe { nss::fill_passwd(&p, out, buf, len) },
                None => libc::ENOENT,
            };
            if rc == 0 {
                PW_POS.store(at + 1, Ordering::Relaxed);
            }
            if !result.is_null() {
                // SAFETY: `result` is non-null, so writable (getpwent_r's contract).
                unsafe { *result = if rc == 0 { out } else { ptr::null_mut() } };
            }
            rc
        }
    }

    #[allow(clippy::unused_unit)]
    fn setpwent() -> (), missing: ();
    |real| {
        PW_POS.store(0, Ordering::Relaxed);
        // SAFETY: setpwent(3) takes no arguments.
        unsafe { real() }
    }

    #[allow(clippy::unused_unit)]
    fn endpwent() -> (), missing: ();
    |real| {
        PW_POS.store(0, Ordering::Relaxed);
        // SAFETY: endpwent(3) takes no arguments.
        unsafe { real() }
    }

    fn getgrnam(name: *const c_char) -> *mut group, missing: ptr::null_mut(), support: Partial("from the capsule's /etc/group (files format) when it has its own root or changed the file; else the host's NSS");
    |real| {
        // SAFETY: the caller's name goes unchanged to the real getgrnam(3).
        let real = || unsafe { real(name) };
        // SAFETY: `name` is null or a C string (getgrnam's contract).
        let Some(wanted) = (unsafe { name_of(name) }) else { return real() };
        // SAFETY: the thread's static result is referred to only by what earlier calls returned, which this call invalidates as getgrnam(3)'s does.
        unsafe { gr(|g| g.name == wanted, real) }
    }

    fn getgrgid(gid: gid_t) -> *mut group, missing: ptr::null_mut(), support: Partial("as getgrnam");
    |real| {
        // SAFETY: getgrgid(3) takes an id only, passed unchanged.
        let real = || unsafe { real(gid) };
        // SAFETY: the thread's static result is referred to only by what earlier calls returned, which this call invalidates as getgrgid(3)'s does.
        unsafe { gr(|g| g.gid == gid, real) }
    }

    fn getgrnam_r(name: *const c_char, out: *mut group, buf: *mut c_char, len: size_t, result: *mut *mut group) -> c_int, missing: libc::ENOSYS, support: Partial("as getgrnam");
    |real| {
        // SAFETY: the caller's arguments go unchanged to the real getgrnam_r(3).
        let real = || unsafe { real(name, out, buf, len, result) };
        // SAFETY: `name` is null or a C string (getgrnam_r's contract).
        let Some(wanted) = (unsafe { name_of(name) }) else { return real() };
        // SAFETY: `out`, `buf` (`len` bytes) and `result` are as getgrnam_r(3) takes them.
        unsafe { gr_r(|g| g.name == wanted, out, buf, len, result, real) }
    }

    fn getgrgid_r(gid: gid_t, out: *mut group, buf: *mut c_char, len: size_t, result: *mut *mut group) -> c_int, missing: libc::ENOSYS, support: Partial("as getgrnam");
    |real| {
        // SAFETY: the caller's arguments go unchanged to the real getgrgid_r(3).
        let real = || unsafe { real(gid, out, buf, len, result) };
        // SAFETY: `out`, `buf` (`len` bytes) and `result` are as getgrgid_r(3) takes them.
        unsafe { gr_r(|g| g.gid == gid, out, buf, len, result, real) }
    }

    fn getgrent() -> *mut group, missing: ptr::null_mut(), support: Partial("as getgrnam; lists the capsule's file only");
    |real| match nss::source(GROUP) {
        // SAFETY: getgrent(3) takes no arguments.
        Source::Host => unsafe { real() },
        Source::Capsule { text, .. } => {
            let at = GR_POS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the thread's static result is referred to only by what earlier calls returned, which this call invalidates as getgrent(3)'s does.
            nss::group_entries(&text).nth(at).map_or(ptr::null_mut(), |g| unsafe { store_gr(&g) })
        }
    }

    fn getgrent_r(out: *mut group, buf: *mut c_char, len: size_t, result: *mut *mut group) -> c_int, missing: libc::ENOSYS, support: Partial("as getgrent");
    |real| match nss::source(GROUP) {
        // SAFETY: the caller's arguments go unchanged to the real getgrent_r(3).
        Source::Host => unsafe { real(out, buf, len, result) },
        Source::Capsule { text, .. } => {
            let at = GR_POS.load(Ordering::Relaxed);
            let rc = match nss::group_entries(&text).nth(at) {
                // SAFETY: `out` is a group and `buf` holds `len` bytes (getgrent_r's contract).
                Some(g) => unsafe { nss::fill_group(&g, out, buf, len) },
                None => libc::ENOENT,
            };
            if rc == 0 {
                GR_POS.store(at + 1, Ordering::Relaxed);
            }
            if !result.is_null() {
                // SAFETY: `result` is non-null, so writable (getgrent_r's contract).
                unsafe { *result = if rc == 0 { out } else { ptr::null_mut() } };
            }
            rc
        }
    }

    #[allow(clippy::unused_unit)]
    fn setgrent() -> (), missing: ();
    |real| {
        GR_POS.store(0, Ordering::Relaxed);
        // SAFETY: setgrent(3) takes no arguments.
        unsafe { real() }
    }

    #[allow(clippy::unused_unit)]
    fn endgrent() -> (), missing: ();
    |real| {
        GR_POS.store(0, Ordering::Relaxed);
        // SAFETY: endgrent(3) takes no arguments.
        unsafe { real() }
    }

    fn getgrouplist(user: *const c_char, group: gid_t, groups: *mut gid_t, ngroups: *mut c_int) -> c_int, missing: -1, support: Partial("from the capsule's /etc/group when the capsule has its own database (see getgrnam)");
    |real| {
        // SAFETY: the caller's arguments go unchanged to the real getgrouplist(3).
        let real = || unsafe { real(user, group, groups, ngroups) };
        if ngroups.is_null() {
            return real();
        }
        // SAFETY: `user` is a C string and `groups` holds `*ngroups` ids (getgrouplist's
        // contract; `ngroups` is not null).
        match unsafe { capsule_grouplist(user, group, groups, ngroups) } {
            Some(rc) => rc,
            None => real(),
        }
    }

    fn getspnam(name: *const c_char) -> *mut libc::spwd, missing: ptr::null_mut(), support: Partial("from the capsule's /etc/shadow (files format) as getpwnam from its /etc/passwd");
    |real| {
        // SAFETY: the caller's name goes unchanged to the real getspnam(3).
        let real = || unsafe { real(name) };
        // SAFETY: `name` is null or a C string (getspnam's contract).
        let Some(wanted) = (unsafe { name_of(name) }) else { return real() };
        // SAFETY: the thread's static result is referred to only by what earlier calls returned, which this call invalidates as getspnam(3)'s does.
        unsafe { sp(wanted, real) }
    }

    fn getspnam_r(name: *const c_char, out: *mut libc::spwd, buf: *mut c_char, len: size_t, result: *mut *mut libc::spwd) -> c_int, missing: libc::ENOSYS, support: Partial("as getspnam");
    |real| {
        // SAFETY: the caller's arguments go unchanged to the real getspnam_r(3).
        let real = || unsafe { real(name, out, buf, len, result) };
        // SAFETY: `name` is null or a C string (getspnam_r's contract).
        let Some(wanted) = (unsafe { name_of(name) }) else { return real() };
        // SAFETY: `out`, `buf` (`len` bytes) and `result` are as getspnam_r(3) takes them.
        unsafe { sp_r(wanted, out, buf, len, result, real) }
    }

    fn lckpwdf() -> c_int, missing: -1, support: Partial("locks the capsule's /etc/.pwd.lock (polling, 15 s at most) when it has its own file system");
    |real| {
        if crate::fs::layers().is_none() {
            // SAFETY: lckpwdf(3) takes no arguments.
            return unsafe { real() };
        }
        // SAFETY: called from this hook, the only contract lock_password_files has.
        unsafe { lock_password_files() }
    }

    fn ulckpwdf() -> c_int, missing: -1, support: Partial("as lckpwdf");
    |real| {
        if crate::fs::layers().is_none() {
            // SAFETY: ulckpwdf(3) takes no arguments.
            return unsafe { real() };
        }
        let fd = PWD_LOCK.swap(-1, Ordering::AcqRel);
        if fd < 0 {
            return -1;
        }
        // SAFETY: `fd` is the lock descriptor lckpwdf opened, taken out of PWD_LOCK.
        unsafe { libc::close(fd) }
    }
}

/// `lckpwdf` in a capsule with its own file system: glibc opens `/etc/.pwd.lock`
/// with an internal call that would reach the host's `/etc` (shadow-utils' `useradd`
/// then "cannot lock /etc/passwd"), so the shim opens the capsule's and takes the
/// same write lock glibc takes, waiting at most as long as glibc (15 s).
///
/// # Safety
/// Called from a hook, as any libc call (no contract beyond that).
unsafe fn lock_password_files() -> c_int {
    if PWD_LOCK.load(Ordering::Acquire) >= 0 {
        return -1; // this process holds it already, as glibc answers
    }
    // SAFETY: the path is a NUL-terminated literal.
    let fd = unsafe {
        crate::fs::open::open_in_capsule(
            c"/etc/.pwd.lock".as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return -1;
    }
    // SAFETY: a zeroed flock is valid; the fields set make it a whole-file write lock.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    for _ in 0..1500 {
        // SAFETY: `fd` is the descriptor opened above; `lock` is a valid flock.
        if unsafe { libc::fcntl(fd, libc::F_SETLK, &lock) } == 0 {
            if PWD_LOCK
                .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                break; // another thread of the process took it meanwhile
            }
            return 0;
        }
        let e = crate::hook::errno();
        if e != libc::EACCES && e != libc::EAGAIN {
            break;
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        // SAFETY: `pause` is a valid timespec; a null remainder is allowed.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
    crate::hook::errno_kept(|| {
        // SAFETY: `fd` is the descriptor opened above, not kept in PWD_LOCK, closed once.
        unsafe { libc::close(fd) }
    });
    -1
}
