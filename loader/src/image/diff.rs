//! `capsule diff NAME`: what a capsule changed, from its upper layer against its lower
//! layer, as `docker diff` prints it: `A` added, `C` changed, `D` deleted, one capsule
//! path a line, sorted.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const COPYUP_PREFIX: &str = ".capsule-copyup-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Changed,
    Deleted,
}

impl Change {
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Changed => 'C',
            Change::Deleted => 'D',
        }
    }
}

/// The changes of `upper` over `lower`, by capsule path.
pub fn diff(upper: &Path, lower: &Path) -> io::Result<BTreeMap<PathBuf, Change>> {
    let mut changes = BTreeMap::new();
    if upper.is_dir() {
        walk(upper, lower, Path::new("/"), false, &mut changes)?;
    }
    Ok(changes)
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn walk(
    upper: &Path,
    lower: &Path,
    rel: &Path,
    added: bool,
    changes: &mut BTreeMap<PathBuf, Change>,
) -> io::Result<()> {
    let inner = rel.strip_prefix("/").unwrap_or(rel);
    let dir = upper.join(inner);
    let lower_dir = lower.join(inner);
    let mut opaque = false;
    let mut present = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if text == OPAQUE {
            opaque = true;
            continue;
        }
        if text.starts_with(COPYUP_PREFIX) {
            continue;
        }
        if let Some(hidden) = text.strip_prefix(WHITEOUT) {
            changes.insert(rel.join(hidden), Change::Deleted);
            continue;
        }
        present.push(name.clone());
        let capsule = rel.join(&name);
        let in_lower = !added && !opaque && exists(&lower_dir.join(&name));
        changes.insert(
            capsule.clone(),
            if in_lower {
                Change::Changed
            } else {
                Change::Added
            },
        );
        if entry.file_type()?.is_dir() {
            walk(upper, lower, &capsule, !in_lower, changes)?;
        }
    }
    if opaque && !added {
        // An opaque directory hides everything the lower layer has in it.
        if let Ok(entries) = fs::read_dir(&lower_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !present.contains(&name) {
                    changes.insert(rel.join(&name), Change::Deleted);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_docker_diff() {
        let scratch = std::env::temp_dir().join(format!("capsule-diff-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        let (upper, lower) = (scratch.join("upper"), scratch.join("lower"));
        for d in ["etc", "opt/old", "var"] {
            fs::create_dir_all(lower.join(d)).unwrap();
        }
        fs::write(lower.join("etc/motd"), "").unwrap();
        fs::write(lower.join("var/x"), "").unwrap();
        for d in ["etc", "new/sub", "opt"] {
            fs::create_dir_all(upper.join(d)).unwrap();
        }
        fs::write(upper.join("etc/motd"), "hi").unwrap();
        fs::write(upper.join("etc/.wh.passwd"), "").unwrap();
        fs::write(upper.join("new/sub/f"), "").unwrap();
        fs::write(upper.join("opt/.wh..wh..opq"), "").unwrap();
        fs::write(upper.join(".capsule-copyup-1"), "").unwrap();
        let lines: Vec<String> = diff(&upper, &lower)
            .unwrap()
            .into_iter()
            .map(|(p, c)| format!("{} {}", c.letter(), p.display()))
            .collect();
        assert_eq!(
            lines,
            [
                "C /etc",
                "C /etc/motd",
                "D /etc/passwd",
                "A /new",
                "A /new/sub",
                "A /new/sub/f",
                "C /opt",
                "D /opt/old"
            ]
        );
        fs::remove_dir_all(&scratch).unwrap();
    }
}
