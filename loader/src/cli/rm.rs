//! `capsule rm`: flags → [`capsule_loader::manage::rm`].

use anyhow::anyhow;
use capsule_loader::manage::{self, rm};
use clap::Args;

pub const LONG_ABOUT: &str = "\
Remove capsules: delete each one's state directory ($CAPSULE_HOME/capsules/NAME/), its \
private upper layer included. A capsule that is up is refused, unless -f: then it is \
stopped first (SIGKILL at once, as `capsule stop -t 0`). Prints the name of each \
capsule removed.";

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Stop a capsule that is up, then remove it
    #[arg(short, long)]
    pub force: bool,

    /// The capsules to remove
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

pub fn rm(args: RmArgs) -> anyhow::Result<()> {
    let home = manage::current_home()?;
    // Every capsule named is attempted; the failures are reported together.
    let mut failures = Vec::new();
    for name in &args.names {
        match rm::rm(&home, name, args.force) {
            Ok(()) => println!("{name}"),
            Err(e) => failures.push(e.to_string()),
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(anyhow!(failures.join("; "))),
    }
}
