//! File owners and device numbers of store files, the way the shim's remembered
//! ownership reads them (shim/src/fs/owner.rs): really root, they are real (`lchown`,
//! `mknod`); otherwise a `user.capsule.owner` extended attribute (`UID:GID`) holds an
//! owner other than the real user, and a device node is an empty file with
//! `user.capsule.rdev` (`c:MAJOR:MINOR` or `b:…`).

use std::ffi::CString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const OWNER: &std::ffi::CStr = c"user.capsule.owner";
const RDEV: &std::ffi::CStr = c"user.capsule.rdev";

/// A device node's kind and numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub block: bool,
    pub major: u32,
    pub minor: u32,
}

/// How owners are kept, decided once by who runs capsule.
#[derive(Debug, Clone, Copy)]
pub struct Owners {
    really_root: bool,
    real: (u32, u32),
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn get_xattr(path: &Path, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    let c = c_path(path).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a buffer valid for its length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n > 0).then(|| buf[..n as usize].to_vec())
}

fn set_xattr(path: &Path, name: &std::ffi::CStr, value: &[u8]) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: NUL-terminated strings and a buffer of `value.len()` bytes.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn parse_pair(text: &[u8]) -> Option<(u32, u32)> {
    let text = std::str::from_utf8(text).ok()?;
    let (a, b) = text.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Owners {
    pub fn current() -> Owners {
        // SAFETY: these calls take no arguments and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Owners {
            really_root: uid == 0,
            real: (uid, gid),
        }
    }

    pub fn really_root(&self) -> bool {
        self.really_root
    }

    /// Gives `path` (just created by capsule) to `uid:gid`. Symbolic links of an
    /// ordinary user cannot carry the attribute and keep the real owner.
    pub fn set(&self, path: &Path, uid: u32, gid: u32, meta: &Metadata) -> io::Result<()> {
        if (meta.uid(), meta.gid()) == (uid, gid) && self.get(path, meta) == (uid, gid) {
            return Ok(());
        }
        if self.really_root {
            let c = c_path(path)?;
            // SAFETY: a NUL-terminated path.
            if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        } else if meta.file_type().is_symlink() {
            Ok(())
        } else {
            set_xattr(path, OWNER, format!("{uid}:{gid}").as_bytes())
        }
    }

    /// The owner capsule shows for `path` (with its `lstat` result).
    pub fn get(&self, path: &Path, meta: &Metadata) -> (u32, u32) {
        if !self.really_root && !meta.file_type().is_symlink() {
            if let Some(pair) = get_xattr(path, OWNER).and_then(|v| parse_pair(&v)) {
                return pair;
            }
        }
        (meta.uid(), meta.gid())
    }

    /// Makes a device node at `path` (nothing there yet), mode bits `perm`.
    pub fn make_device(&self, path: &Path, dev: Device, perm: u32) -> io::Result<()> {
        if self.really_root {
            let c = c_path(path)?;
            let kind = if dev.block {
                libc::S_IFBLK
            } else {
                libc::S_IFCHR
            };
            // SAFETY: a NUL-terminated path; makedev only computes a number.
            let rc = unsafe {
                libc::mknod(c.as_ptr(), kind | perm, libc::makedev(dev.major, dev.minor))
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(());
        }
        std::fs::File::create_new(path)?;
        let kind = if dev.block { 'b' } else { 'c' };
        set_xattr(
            path,
            RDEV,
            format!("{kind}:{}:{}", dev.major, dev.minor).as_bytes(),
        )
    }

    /// The device `path` is (a real node, or an empty file carrying the attribute).
    pub fn device(&self, path: &Path, meta: &Metadata) -> Option<Device> {
        let ft = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            return Some(Device {
                block: ft.is_block_device(),
                major: libc::major(rdev),
                minor: libc::minor(rdev),
            });
        }
        if !ft.is_file() || meta.len() != 0 || self.really_root {
            return None;
        }
        let value = get_xattr(path, RDEV)?;
        let text = std::str::from_utf8(&value).ok()?;
        let (kind, numbers) = text.split_once(':')?;
        let (major, minor) = parse_pair(numbers.as_bytes())?;
        Some(Device {
            block: kind == "b",
            major,
            minor,
        })
    }

    /// Copies the owner of `from` to `to` (a directory recreated while merging layers).
    pub fn copy(&self, from: &Path, from_meta: &Metadata, to: &Path) -> io::Result<()> {
        let (uid, gid) = self.get(from, from_meta);
        let to_meta = std::fs::symlink_metadata(to)?;
        self.set(to, uid, gid, &to_meta)
    }

    pub fn real(&self) -> (u32, u32) {
        self.real
    }
}

/// Extended attributes that belong to the image (PAX `SCHILY.xattr.*` in a layer tar):
/// not capsule's own records, which say how the store keeps owners.
fn carried(name: &str) -> bool {
    !name.starts_with("user.capsule.")
}

/// A path's extended attributes carried in layer tars (not followed through a link).
pub fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let c = c_path(path)?;
    let mut names = vec![0u8; 4096];
    // SAFETY: a NUL-terminated path and a buffer valid for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(Vec::new()),
            _ => Err(err),
        };
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let Ok(text) = std::str::from_utf8(name) else {
            continue;
        };
        if !carried(text) {
            continue;
        }
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 65536];
        // SAFETY: NUL-terminated strings and a buffer valid for its length.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((text.to_string(), value));
        }
    }
    Ok(out)
}

impl Owners {
    /// Applies extended attributes from a layer tar. An ordinary user can set only
    /// `user.*` ones; the others (file capabilities…) need root and are skipped then.
    pub fn set_xattrs(&self, path: &Path, attrs: &[(String, Vec<u8>)]) -> io::Result<()> {
        for (name, value) in attrs {
            if !carried(name) || (!self.really_root && !name.starts_with("user.")) {
                continue;
            }
            let Ok(cname) = CString::new(name.as_bytes()) else {
                continue;
            };
            match set_xattr(path, &cname, value) {
                Ok(()) => {}
                // A symbolic link cannot carry user.* attributes on Linux.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOTSUP)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Sets a path's access and modification times without following a symbolic link.
pub fn set_times(path: &Path, mtime_secs: i64, mtime_nsec: i64) -> io::Result<()> {
    let c = c_path(path)?;
    let t = libc::timespec {
        tv_sec: mtime_secs as libc::time_t,
        tv_nsec: mtime_nsec as libc::c_long,
    };
    let times = [t, t];
    // SAFETY: a NUL-terminated path and an array of two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets permission bits (setuid/setgid/sticky included) of a non-link path.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
}

/// Removes a file, link or whole directory tree; an ordinary user's read-only
/// directories are made writable first. Nothing there is not an error.
pub fn remove_any(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path)?;
            std::fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn make_writable(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode((meta.mode() | 0o700) & 0o7777),
    )?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_writable(&entry.path())?;
        }
    }
    Ok(())
}

/// Disk usage of a tree in bytes, each inode counted once (as `du` does).
pub fn disk_usage(
    path: &Path,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    let mut total = 0;
    if seen.insert((meta.dev(), meta.ino())) {
        total += meta.blocks() * 512;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            total += disk_usage(&entry?.path(), seen)?;
        }
    }
    Ok(total)
}
