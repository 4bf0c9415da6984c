//! `capsule cp`: `NAME:PATH HOSTPATH` or `HOSTPATH NAME:PATH` →
//! [`capsule_loader::manage::cp`].

use std::path::Path;

use anyhow::anyhow;
use capsule_loader::manage::{self, cp};
use capsule_loader::state;
use clap::Args;

pub const LONG_ABOUT: &str = "\
Copy files and directories between the host and a capsule, running or not, as docker cp \
does: `capsule cp NAME:PATH HOSTPATH` copies out, `capsule cp HOSTPATH NAME:PATH` copies \
in. PATH is a capsule path, seen as the capsule's programs see it: its volumes, its \
private layer over its lower layer, deleted files gone. A copy in is written where a \
program's write would go: a writable volume, else the capsule's private layer \
($CAPSULE_HOME/capsules/NAME/upper), never its lower layer (--root, the image, the \
host's /). A destination that is a directory receives the source under its own name \
(SRC/. copies a directory's contents); symbolic links are copied as links. Files are \
written whole under a temporary name, then renamed.";

#[derive(Debug, Args)]
pub struct CpArgs {
    /// NAME:PATH or a host path
    #[arg(value_name = "SRC")]
    pub src: String,
    /// NAME:PATH or a host path (one of the two is in a capsule)
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// `NAME:PATH` → (NAME, PATH), when the text before the first `:` is a capsule name
/// and the argument is not a host path (`./a:b` and `/a:b` are host paths).
fn split(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (name, path) = arg.split_once(':')?;
    state::validate_name(name).ok()?;
    Some((name, if path.is_empty() { "/" } else { path }))
}

pub fn cp(args: CpArgs) -> anyhow::Result<()> {
    let home = manage::current_home()?;
    match (split(&args.src), split(&args.dest)) {
        (Some((name, path)), None) => Ok(cp::copy_out(
            &home,
            name,
            Path::new(path),
            Path::new(&args.dest),
        )?),
        (None, Some((name, path))) => Ok(cp::copy_in(
            &home,
            Path::new(&args.src),
            name,
            Path::new(path),
        )?),
        (Some(_), Some(_)) => Err(anyhow!(
            "cp {} {}: copying between two capsules is not supported; copy through the host",
            args.src,
            args.dest
        )),
        (None, None) => Err(anyhow!(
            "cp {} {}: one of SRC and DEST must be NAME:PATH",
            args.src,
            args.dest
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn capsule_paths_are_told_from_host_paths() {
        assert_eq!(split("web:/etc/motd"), Some(("web", "/etc/motd")));
        assert_eq!(split("web:"), Some(("web", "/")));
        assert_eq!(split("/tmp/a:b"), None);
        assert_eq!(split("./a:b"), None);
        assert_eq!(split("plain"), None);
        assert_eq!(split("bad/name:x"), None);
    }
}
