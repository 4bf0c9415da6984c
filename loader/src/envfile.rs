//! The program's environment: `-e` assignments and docker-style `--env-file` files.
//!
//! The format is docker's: one `KEY=VALUE` per line, taken literally (no quotes, no
//! expansion; the value keeps its spaces); a line holding only `KEY` copies `KEY` from
//! the loader's own environment if it is set there; lines whose first non-blank
//! character is `#` and blank lines are ignored. A key is never empty and contains no
//! whitespace.
//!
//! Precedence, lowest first: the loader's environment, the env files in command-line
//! order, the `-e` assignments in command-line order.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One environment setting, as a `-e` flag or an env-file line gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvEntry {
    /// `KEY=VALUE`: set KEY.
    Set(OsString, OsString),
    /// `KEY`: copy KEY from the loader's environment, if it is set there.
    Inherit(OsString),
}

impl EnvEntry {
    pub fn key(&self) -> &OsStr {
        match self {
            EnvEntry::Set(key, _) | EnvEntry::Inherit(key) => key,
        }
    }
}

/// Why a `-e` argument or an env-file line is not a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("expected KEY=VALUE (no variable name before '=')")]
    EmptyKey,
    #[error("expected KEY=VALUE (variable name {0:?} contains whitespace)")]
    Whitespace(String),
    #[error("expected KEY=VALUE (a NUL byte cannot be in an environment variable)")]
    Nul,
}

/// Why an env file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("{}: {}", path.display(), crate::describe_io(error))]
    Read { path: PathBuf, error: io::Error },
    #[error("{} line {line}: not valid UTF-8", path.display())]
    Utf8 { path: PathBuf, line: usize },
    #[error("{} line {line}: {error}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        error: EntryError,
    },
}

/// Parses one `-e` argument: `KEY=VALUE` or `KEY`.
pub fn parse_assignment(arg: &OsStr) -> Result<EnvEntry, EntryError> {
    let bytes = arg.as_bytes();
    if bytes.contains(&0) {
        return Err(EntryError::Nul);
    }
    let (key, value) = match bytes.iter().position(|&b| b == b'=') {
        Some(at) => (&bytes[..at], Some(&bytes[at + 1..])),
        None => (bytes, None),
    };
    check_key(key)?;
    let key = OsString::from_vec(key.to_vec());
    Ok(match value {
        Some(value) => EnvEntry::Set(key, OsString::from_vec(value.to_vec())),
        None => EnvEntry::Inherit(key),
    })
}

fn check_key(key: &[u8]) -> Result<(), EntryError> {
    if key.is_empty() {
        Err(EntryError::EmptyKey)
    } else if key.iter().any(u8::is_ascii_whitespace) {
        Err(EntryError::Whitespace(
            String::from_utf8_lossy(key).into_owned(),
        ))
    } else {
        Ok(())
    }
}

/// Parses the text of an env file; `path` only names the file in errors.
pub fn parse_env_file(path: &Path, bytes: &[u8]) -> Result<Vec<EnvEntry>, EnvFileError> {
    let mut entries = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = if index == 0 {
            raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw)
        } else {
            raw
        };
        let text = std::str::from_utf8(raw).map_err(|_| EnvFileError::Utf8 {
            path: path.to_path_buf(),
            line: line_no,
        })?;
        let text = text.trim_start();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let entry = parse_assignment(OsStr::new(text)).map_err(|error| EnvFileError::Line {
            path: path.to_path_buf(),
            line: line_no,
            error,
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads and parses an env file.
pub fn read_env_file(path: &Path) -> Result<Vec<EnvEntry>, EnvFileError> {
    let bytes = std::fs::read(path).map_err(|error| EnvFileError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse_env_file(path, &bytes)
}

/// An environment under construction: ordered by key, so that the result is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<OsString, OsString>,
}

impl Environment {
    pub fn new() -> Environment {
        Environment::default()
    }

    /// The environment `vars` describes (later duplicates win).
    pub fn from_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Environment {
        Environment {
            vars: vars.into_iter().collect(),
        }
    }

    pub fn get(&self, key: impl AsRef<OsStr>) -> Option<&OsStr> {
        self.vars.get(key.as_ref()).map(OsString::as_os_str)
    }

    pub fn set(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) {
        self.vars.insert(key.into(), value.into());
    }

    pub fn remove(&mut self, key: impl AsRef<OsStr>) -> Option<OsString> {
        self.vars.remove(key.as_ref())
    }

    /// Applies settings in order; `Inherit` copies from `host` (or leaves the key alone
    /// when `host` does not have it, as docker does).
    pub fn apply(&mut self, entries: &[EnvEntry], host: &Environment) {
        for entry in entries {
            match entry {
                EnvEntry::Set(key, value) => self.set(key.clone(), value.clone()),
                EnvEntry::Inherit(key) => {
                    if let Some(value) = host.get(key) {
                        self.set(key.clone(), value.to_os_string());
                    }
                }
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }

    pub fn keys(&self) -> impl Iterator<Item = &OsStr> {
        self.vars.keys().map(OsString::as_os_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: &str) -> EnvEntry {
        EnvEntry::Set(k.into(), v.into())
    }

    fn parse(text: &str) -> Result<Vec<EnvEntry>, EnvFileError> {
        parse_env_file(Path::new("./x.env"), text.as_bytes())
    }

    #[test]
    fn assignments_follow_docker() {
        assert_eq!(parse_assignment("A=b".as_ref()), Ok(set("A", "b")));
        assert_eq!(parse_assignment("A=".as_ref()), Ok(set("A", "")));
        assert_eq!(parse_assignment("A=b=c".as_ref()), Ok(set("A", "b=c")));
        assert_eq!(
            parse_assignment("A= spaced ".as_ref()),
            Ok(set("A", " spaced "))
        );
        assert_eq!(
            parse_assignment("HOME".as_ref()),
            Ok(EnvEntry::Inherit("HOME".into()))
        );
        assert_eq!(parse_assignment("=x".as_ref()), Err(EntryError::EmptyKey));
        assert_eq!(parse_assignment("".as_ref()), Err(EntryError::EmptyKey));
        assert!(matches!(
            parse_assignment("A B=1".as_ref()),
            Err(EntryError::Whitespace(_))
        ));
    }

    #[test]
    fn env_file_lines() {
        let text =
            "\u{feff}# a comment\n\nA=1\n  B=two words \n   # indented comment\nC\nD=x=y\r\nE=\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                set("A", "1"),
                set("B", "two words "),
                EnvEntry::Inherit("C".into()),
                set("D", "x=y"),
                set("E", ""),
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("\n\n# only comments\n").unwrap(), vec![]);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let err = parse("A=1\n# ok\n=oops\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "./x.env line 3: expected KEY=VALUE (no variable name before '=')"
        );
        let err = parse("export A=1\n").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("./x.env line 1: expected KEY=VALUE"));
        let err = parse_env_file(Path::new("f"), b"A=1\nB=\xff\n").unwrap_err();
        assert_eq!(err.to_string(), "f line 2: not valid UTF-8");
        let err = parse("A=\0\n").unwrap_err();
        assert!(err.to_string().starts_with("./x.env line 1:"));
    }

    #[test]
    fn missing_file_is_an_error() {
        // A directory this test never creates: `/nonexistent` is not safe to
        // assume absent (some machines have it as a file, nobody's home).
        let dir = std::env::temp_dir().join(format!("capsule-envfile-{}", std::process::id()));
        let path = dir.join("capsule.env");
        let err = read_env_file(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: no such file or directory", path.display())
        );
    }

    #[test]
    fn later_settings_win_and_inherit_copies_only_what_is_set() {
        let host = Environment::from_vars([("HOME".into(), "/home/u".into())]);
        let mut env = host.clone();
        env.apply(
            &[
                set("A", "1"),
                EnvEntry::Inherit("HOME".into()),
                EnvEntry::Inherit("UNSET".into()),
            ],
            &host,
        );
        env.apply(&[set("A", "2")], &host);
        assert_eq!(env.get("A"), Some(OsStr::new("2")));
        assert_eq!(env.get("HOME"), Some(OsStr::new("/home/u")));
        assert_eq!(env.get("UNSET"), None);
    }
}
