//! The build context: the directory whose files COPY and ADD read, less what
//! `.containerignore` or `.dockerignore` leaves out; the sources a COPY names (with
//! wildcards) found in it, never outside it; and their checksum for the step cache.

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// A pattern of an ignore file: `!` makes it an exception.
#[derive(Debug, Clone)]
struct Rule {
    segments: Vec<String>,
    exception: bool,
}

/// What the ignore file says, read once.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    /// Reads `.containerignore`, else `.dockerignore`, of `context` (none: nothing is
    /// left out).
    pub fn read(context: &Path) -> io::Result<Ignore> {
        for name in [".containerignore", ".dockerignore"] {
            match fs::read_to_string(context.join(name)) {
                Ok(text) => return Ok(Ignore::parse(&text)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Ignore::default())
    }

    pub fn parse(text: &str) -> Ignore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let (exception, pattern) = match line.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, line),
                };
                Rule {
                    segments: clean(pattern),
                    exception,
                }
            })
            .filter(|r| !r.segments.is_empty())
            .collect();
        Ignore { rules }
    }

    /// Whether `rel` (a path relative to the context) is left out: the last rule that
    /// matches it or one of its parents decides.
    pub fn excludes(&self, rel: &Path) -> bool {
        let segments: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut excluded = false;
        for rule in &self.rules {
            let hit = (1..=segments.len()).any(|n| matches(&rule.segments, &segments[..n]));
            if hit {
                excluded = !rule.exception;
            }
        }
        excluded
    }
}

/// A pattern's segments, with `.`, empty segments and a leading `/` dropped.
fn clean(pattern: &str) -> Vec<String> {
    pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(str::to_string)
        .collect()
}

/// Segment-wise match; `**` matches any number of segments.
fn matches(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| matches(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, tail)) => glob(first.as_bytes(), name.as_bytes()) && matches(rest, tail),
            None => false,
        },
    }
}

/// One segment against a `*`, `?`, `[a-z]`, `[^x]`, `\x` pattern (Go's filepath.Match).
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((b'[', rest)) => {
            let Some((&c, tail)) = name.split_first() else {
                return false;
            };
            let (negated, mut class) = match rest.first() {
                Some(b'^' | b'!') => (true, &rest[1..]),
                _ => (false, rest),
            };
            let mut hit = false;
            let mut first = true;
            loop {
                match class {
                    [] => return false, // unclosed: matches nothing
                    [b']', more @ ..] if !first => {
                        class = more;
                        break;
                    }
                    [lo, b'-', hi, more @ ..] if *hi != b']' => {
                        hit |= (*lo..=*hi).contains(&c);
                        class = more;
                    }
                    [b'\\', x, more @ ..] => {
                        hit |= *x == c;
                        class = more;
                    }
                    [x, more @ ..] => {
                        hit |= *x == c;
                        class = more;
                    }
                }
                first = false;
            }
            hit != negated && glob(class, tail)
        }
        Some((b'\\', [x, rest @ ..])) => name.first() == Some(x) && glob(rest, &name[1..]),
        Some((p, rest)) => name.first() == Some(p) && glob(rest, &name[1..]),
    }
}

fn has_wildcard(segment: &str) -> bool {
    segment.bytes().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Where a COPY's sources come from: the context (with its ignore rules) or a root
/// of a stage or image (`--from`), which has none.
#[derive(Debug, Clone)]
pub struct Tree<'a> {
    pub root: &'a Path,
    pub ignore: Option<&'a Ignore>,
}

impl Tree<'_> {
    fn left_out(&self, rel: &Path) -> bool {
        self.ignore.is_some_and(|i| i.excludes(rel))
    }

    /// The paths (relative to the root) that `source` names; wildcards match in one
    /// directory level each. An error names what was not found or is outside.
    pub fn find(&self, source: &str) -> Result<Vec<PathBuf>, String> {
        let mut segments = Vec::new();
        for part in Path::new(source).components() {
            match part {
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => {
                    if segments.pop().is_none() {
                        return Err(format!("{source}: outside the build context"));
                    }
                }
                Component::Normal(s) => segments.push(s.to_string_lossy().into_owned()),
                Component::Prefix(_) => unreachable!("no prefixes on Unix"),
            }
        }
        let mut found = vec![PathBuf::new()];
        for segment in &segments {
            let mut next = Vec::new();
            for dir in &found {
                if has_wildcard(segment) {
                    let Ok(entries) = fs::read_dir(self.root.join(dir)) else {
                        continue;
                    };
                    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
                    names.sort();
                    for name in names {
                        if glob(segment.as_bytes(), name.as_bytes()) {
                            next.push(dir.join(name));
                        }
                    }
                } else {
                    let path = dir.join(segment);
                    if fs::symlink_metadata(self.root.join(&path)).is_ok() {
                        next.push(path);
                    }
                }
            }
            found = next;
        }
        found.retain(|p| p.as_os_str().is_empty() || !self.left_out(p));
        if found.is_empty() {
            return Err(format!("{source}: no such file in the build context"));
        }
        Ok(found)
    }

    /// Every entry under `rel` (itself first), parents before children, names sorted,
    /// without what the ignore rules leave out (kept: exceptions below an ignored
    /// directory are not searched, as in Docker's classic builder).
    pub fn walk(&self, rel: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = vec![rel.to_path_buf()];
        let mut at = 0;
        while at < out.len() {
            let path = self.root.join(&out[at]);
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                let mut names: Vec<_> = fs::read_dir(&path)?
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<io::Result<_>>()?;
                names.sort();
                let base = out[at].clone();
                let children: Vec<PathBuf> = names
                    .into_iter()
                    .map(|n| base.join(n))
                    .filter(|p| !self.left_out(p))
                    .collect();
                out.splice(at + 1..at + 1, children);
            }
            at += 1;
        }
        Ok(out)
    }

    /// What the step cache keys a COPY on: for each entry, its path, type, mode, size,
    /// link target and content.
    pub fn checksum(&self, sources: &[PathBuf]) -> io::Result<String> {
        let mut hash = Sha256::new();
        for source in sources {
            for rel in self.walk(source)? {
                let path = self.root.join(&rel);
                let meta = fs::symlink_metadata(&path)?;
                hash.update(rel.as_os_str().as_bytes());
                hash.update([0]);
                hash.update(meta.mode().to_le_bytes());
                hash.update(meta.uid().to_le_bytes());
                hash.update(meta.gid().to_le_bytes());
                if meta.file_type().is_symlink() {
                    hash.update(fs::read_link(&path)?.as_os_str().as_bytes());
                } else if meta.is_file() {
                    hash.update(meta.len().to_le_bytes());
                    let mut file = fs::File::open(&path)?;
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = file.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        hash.update(&buf[..n]);
                    }
                }
                hash.update([0xff]);
            }
        }
        Ok(format!("{:x}", hash.finalize()))
    }
}

/// Whether `meta` is executable by someone (used for a COPY'd file's default mode).
pub fn executable(meta: &fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_segments_as_go_matches_them() {
        for (p, n, want) in [
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txtx", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[!a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*", "", true),
            ("[]]", "]", true),
        ] {
            assert_eq!(glob(p.as_bytes(), n.as_bytes()), want, "{p} {n}");
        }
    }

    #[test]
    fn ignore_rules_last_match_wins_and_parents_count() {
        let ignore = Ignore::parse(
            "# comment\n\
             *.log\n\
             !keep.log\n\
             /build\n\
             **/secret\n\
             docs/*.md\n",
        );
        for (path, want) in [
            ("a.log", true),
            ("keep.log", false),
            ("sub/a.log", false),
            ("build", true),
            ("build/x/y", true),
            ("secret", true),
            ("deep/er/secret", true),
            ("deep/er/secret/inside", true),
            ("docs/a.md", true),
            ("docs/sub/a.md", false),
            ("src/main.rs", false),
        ] {
            assert_eq!(ignore.excludes(Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn sources_are_found_inside_the_context_only() {
        let dir = std::env::temp_dir().join(format!("capsule-ctx-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("src/sub")).unwrap();
        fs::write(dir.join("src/a.c"), "a").unwrap();
        fs::write(dir.join("src/b.c"), "b").unwrap();
        fs::write(dir.join("src/sub/c.c"), "c").unwrap();
        fs::write(dir.join("x.log"), "log").unwrap();
        let ignore = Ignore::parse("*.log\nsrc/sub\n");
        let tree = Tree {
            root: &dir,
            ignore: Some(&ignore),
        };
        assert_eq!(
            tree.find("src/*.c").unwrap(),
            [PathBuf::from("src/a.c"), PathBuf::from("src/b.c")]
        );
        assert_eq!(
            tree.find("./src/../src/a.c").unwrap(),
            [PathBuf::from("src/a.c")]
        );
        assert!(tree.find("../etc/passwd").unwrap_err().contains("outside"));
        assert!(tree.find("x.log").unwrap_err().contains("no such file"));
        assert!(tree.find("missing").unwrap_err().contains("no such file"));
        assert_eq!(
            tree.walk(Path::new("src")).unwrap(),
            [
                PathBuf::from("src"),
                PathBuf::from("src/a.c"),
                PathBuf::from("src/b.c")
            ]
        );
        let before = tree.checksum(&[PathBuf::from("src")]).unwrap();
        fs::write(dir.join("src/sub/c.c"), "changed but ignored").unwrap();
        assert_eq!(tree.checksum(&[PathBuf::from("src")]).unwrap(), before);
        fs::write(dir.join("src/a.c"), "changed").unwrap();
        assert_ne!(tree.checksum(&[PathBuf::from("src")]).unwrap(), before);
        fs::remove_dir_all(&dir).unwrap();
    }
}
