//! `capsule logs`: flags → [`capsule_loader::manage::logs`].

use capsule_loader::manage::{self, logs};
use clap::Args;

pub const LONG_ABOUT: &str = "\
Print the output of a capsule started by `capsule up`, as kept in its log file \
($CAPSULE_HOME/capsules/NAME/log). With -f, keep printing what it writes until it is no \
longer running and its supervisor will not start it again. (`capsule run` writes to its \
own terminal and keeps no log.)";

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the capsule is done
    #[arg(short, long)]
    pub follow: bool,

    /// The capsule's name
    #[arg(value_name = "NAME")]
    pub name: String,
}

pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let home = manage::current_home()?;
    logs::logs(
        &home,
        &args.name,
        args.follow,
        &mut std::io::stdout().lock(),
    )?;
    Ok(())
}
