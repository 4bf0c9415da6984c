//! `capsule inspect NAME...`: everything known about capsules, as a JSON array.

use std::io::Write;

use anyhow::anyhow;
use capsule_loader::inspect;
use capsule_loader::manage;
use clap::Args;

pub const LONG_ABOUT: &str = "\
Print a JSON array with one object per capsule named, as `docker inspect` does, for \
scripts: name, state_dir, state (status, running, restarting, pid, exit_code, signal, \
uptime_secs, supervisor_pid, stop_requested), command (as given), config (hostname, \
user, time_offset_ns, read_only, peers, published), ports (proto, port, host, \
host_address, published: the host ports picked for `-p PORT` included), root (the lower \
layer), upper (the private layer), mounts (the volumes), image (its id) and log.

The capsules found are printed; a name that is not a capsule is reported on standard \
error, and the exit status is then 125.";

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The capsules' names
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let home = manage::current_home()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &args.names {
        match inspect::inspect(&home, name) {
            Ok(info) => found.push(info.details_json()),
            Err(e) => missing.push(e.to_string()),
        }
    }
    let mut text = serde_json::to_string_pretty(&found)?;
    text.push('\n');
    std::io::stdout().lock().write_all(text.as_bytes())?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{}", missing.join("; ")))
    }
}
