//! The shim's coverage tables are the truth about what it intercepts: every symbol
//! libcapsule.so exports is listed in a replica's table, every listed symbol is
//! exported and is a libc function the hook can reach through `RTLD_NEXT`, and the
//! README's coverage table is generated from the tables.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

/// The tables, read from the built shim (`capsule_hook_table()`), as
/// (replica, symbol, support) rows.
fn hook_table() -> Vec<(String, String, String)> {
    let script = format!(
        "import ctypes\nf = ctypes.CDLL({:?}).capsule_hook_table\nf.restype = ctypes.c_char_p\nprint(f().decode(), end='')",
        common::shim().display().to_string()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let replica = fields.next().unwrap().to_string();
            let symbol = fields.next().unwrap().to_string();
            let support = fields.next().unwrap().replacen('\t', ": ", 1);
            (replica, symbol, support)
        })
        .collect()
}

fn defined_functions(path: &str) -> BTreeSet<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only", path])
        .output()
        .expect("nm (binutils) is needed by this test");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "T" | "W" | "i").then(|| name.split('@').next().unwrap().to_string())
        })
        .collect()
}

fn libc_path() -> String {
    let out = Command::new("sh")
        .args(["-c", "ldd /bin/sh | awk '/libc.so/ {print $3}'"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn every_export_is_in_a_table_and_in_libc() {
    let table: BTreeSet<String> = hook_table().into_iter().map(|(_, s, _)| s).collect();
    let mut exported = defined_functions(common::shim().to_str().unwrap());
    assert!(exported.remove("capsule_hook_table"));
    let unlisted: Vec<_> = exported.difference(&table).collect();
    let unexported: Vec<_> = table.difference(&exported).collect();
    assert!(
        unlisted.is_empty(),
        "exported but in no table: {unlisted:?}"
    );
    assert!(
        unexported.is_empty(),
        "listed but not exported: {unexported:?}"
    );
    let libc = defined_functions(&libc_path());
    let foreign: Vec<_> = table.iter().filter(|s| !libc.contains(*s)).collect();
    assert!(
        foreign.is_empty(),
        "hooks with no libc function behind them: {foreign:?}"
    );
}

/// The README block between the coverage markers, as the tables make it.
fn coverage_markdown() -> String {
    let rows = hook_table();
    let mut out = String::from("| replica | functions | coverage |\n|---|---|---|\n");
    let mut groups: Vec<(String, String, Vec<String>)> = Vec::new();
    for (replica, symbol, support) in rows {
        match groups
            .iter_mut()
            .find(|(r, s, _)| *r == replica && *s == support)
        {
            Some((_, _, symbols)) => symbols.push(symbol),
            None => groups.push((replica, support, vec![symbol])),
        }
    }
    for (replica, support, symbols) in groups {
        let list: Vec<String> = symbols.iter().map(|s| format!("`{s}`")).collect();
        out.push_str(&format!("| {replica} | {} | {support} |\n", list.join(" ")));
    }
    out
}

#[test]
fn readme_coverage_table_matches_the_shim() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = "<!-- coverage:start -->\n";
    let end = "<!-- coverage:end -->";
    let from = readme
        .find(start)
        .expect("README has a coverage:start marker")
        + start.len();
    let to = readme.find(end).expect("README has a coverage:end marker");
    let expected = coverage_markdown();
    assert_eq!(
        &readme[from..to],
        expected,
        "README's coverage table is stale; replace it with:\n{expected}"
    );
}

/// Every libc function that takes a path name (from glibc's exported API), so that
/// a missed one is a test failure rather than an escape: each is hooked, or listed
/// in README's pass-through block with the reason it may pass.
const PATH_FUNCTIONS: &[&str] = &[
    "open",
    "open64",
    "openat",
    "openat64",
    "__open_2",
    "__open64_2",
    "__openat_2",
    "__openat64_2",
    "creat",
    "creat64",
    "fopen",
    "fopen64",
    "freopen",
    "freopen64",
    "opendir",
    "scandir",
    "scandir64",
    "scandirat",
    "scandirat64",
    "stat",
    "stat64",
    "lstat",
    "lstat64",
    "fstatat",
    "fstatat64",
    "statx",
    "access",
    "faccessat",
    "euidaccess",
    "eaccess",
    "chmod",
    "lchmod",
    "fchmodat",
    "chown",
    "lchown",
    "fchownat",
    "truncate",
    "truncate64",
    "utime",
    "utimes",
    "lutimes",
    "futimesat",
    "utimensat",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "readlink",
    "readlinkat",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "rmdir",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mkfifo",
    "mkfifoat",
    "chdir",
    "chroot",
    "realpath",
    "canonicalize_file_name",
    "statfs",
    "statfs64",
    "statvfs",
    "statvfs64",
    "pathconf",
    "getxattr",
    "lgetxattr",
    "setxattr",
    "lsetxattr",
    "listxattr",
    "llistxattr",
    "removexattr",
    "lremovexattr",
    "execve",
    "execv",
    "execvp",
    "execvpe",
    "execl",
    "execlp",
    "execle",
    "execveat",
    "posix_spawn",
    "posix_spawnp",
    "posix_spawn_file_actions_addopen",
    "posix_spawn_file_actions_addchdir_np",
    "dlopen",
    "dlmopen",
    "mkstemp",
    "mkstemp64",
    "mkostemp",
    "mkostemp64",
    "mkstemps",
    "mkostemps",
    "mkdtemp",
    "mktemp",
    "tmpfile",
    "tmpfile64",
    "tempnam",
    "tmpnam",
    "ftw",
    "ftw64",
    "nftw",
    "nftw64",
    "fts_open",
    "glob",
    "glob64",
    "wordexp",
    "inotify_add_watch",
    "fanotify_mark",
    "name_to_handle_at",
    "open_by_handle_at",
    "ftok",
    "mount",
    "umount",
    "umount2",
    "swapon",
    "swapoff",
    "acct",
    "shm_open",
    "shm_unlink",
    "sem_open",
    "sem_unlink",
    "bindtextdomain",
    "catopen",
    "setmntent",
    "utmpname",
    "system",
    "popen",
    "bind",
    "connect",
    "getcwd",
    "get_current_dir_name",
];

/// The backticked names at the start of README's pass-through list items.
fn readme_pass_through() -> BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = "<!-- passthrough:start -->\n";
    let from = readme
        .find(start)
        .expect("README has a passthrough:start marker")
        + start.len();
    let to = readme
        .find("<!-- passthrough:end -->")
        .expect("passthrough:end marker");
    readme[from..to]
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .flat_map(|l| {
            let names = l.split(':').next().unwrap_or_default();
            names
                .split(['`', ',', ' '])
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_path_function_is_hooked_or_said_to_pass_through() {
    let hooked: BTreeSet<String> = hook_table().into_iter().map(|(_, s, _)| s).collect();
    let passing = readme_pass_through();
    let missing: Vec<_> = PATH_FUNCTIONS
        .iter()
        .filter(|f| !hooked.contains(**f) && !passing.contains(**f))
        .collect();
    assert!(
        missing.is_empty(),
        "path functions neither hooked nor in README's pass-through list: {missing:?}"
    );
    let both: Vec<_> = passing.intersection(&hooked).collect();
    assert!(
        both.is_empty(),
        "README says these pass through, but they are hooked: {both:?}"
    );
    let libc = defined_functions(&libc_path());
    let unknown: Vec<_> = passing.iter().filter(|f| !libc.contains(*f)).collect();
    assert!(
        unknown.is_empty(),
        "README's pass-through names no libc function: {unknown:?}"
    );
}
