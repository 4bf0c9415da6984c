//! `capsule logs`: flags → [`capsule_loader::manage::logs`].

use anyhow::anyhow;
use capsule_config::{parse_duration, parse_rfc3339};
use capsule_loader::manage::{self, logs};
use clap::Args;

pub const LONG_ABOUT: &str = "\
Print the output of a capsule started by `capsule up` or `capsule run -d`, as kept in its \
log file ($CAPSULE_HOME/capsules/NAME/log), as docker logs does. With -f, keep printing \
what it writes until it is no longer running and its supervisor will not start it again. \
(`capsule run` in the foreground writes to its own terminal and keeps no log.)";

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the capsule is done
    #[arg(short, long)]
    pub follow: bool,

    /// Of the lines already written, print only the last N ("all": every line)
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,

    /// Only lines written since an instant: RFC 3339 (2026-12-06T19:00:00Z), a Unix
    /// time in seconds (1796583600), or a duration ago (10m, 1h30m, 2d)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// Put the time each line was written in front of it (RFC 3339, nanoseconds, UTC)
    #[arg(short, long)]
    pub timestamps: bool,

    /// The capsule's name
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `--since`'s value as nanoseconds since the epoch, given the time now.
pub fn parse_since(text: &str, now_ns: i64) -> Result<i64, String> {
    if let Ok(at) = parse_rfc3339(text) {
        return Ok(at);
    }
    let unix = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    match text.split_once('.') {
        None if unix(text) => {
            let secs: i64 = text.parse().map_err(|_| "too large".to_string())?;
            return secs
                .checked_mul(1_000_000_000)
                .ok_or_else(|| "too large".to_string());
        }
        Some((secs, frac)) if unix(secs) && unix(frac) => {
            let whole: i64 = secs.parse().map_err(|_| "too large".to_string())?;
            let digits = &format!("{frac:0<9}")[..9];
            let nanos: i64 = digits.parse().unwrap_or(0);
            return whole
                .checked_mul(1_000_000_000)
                .and_then(|n| n.checked_add(nanos))
                .ok_or_else(|| "too large".to_string());
        }
        _ => {}
    }
    match parse_duration(text) {
        Ok(ago) if ago >= 0 => Ok(now_ns.saturating_sub(ago)),
        _ => Err("expected an RFC 3339 instant (2026-12-06T19:00:00Z), a Unix time (1796583600) or a duration ago (10m)".into()),
    }
}

pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| anyhow!("--tail {n:?}: expected a number of lines or \"all\""))?,
        ),
    };
    let since_ns = match &args.since {
        Some(text) => Some(
            parse_since(text, capsule_loader::run::now_ns())
                .map_err(|e| anyhow!("--since {text:?}: {e}"))?,
        ),
        None => None,
    };
    let home = manage::current_home()?;
    let options = logs::LogOptions {
        follow: args.follow,
        tail,
        since_ns,
        timestamps: args.timestamps,
    };
    logs::logs(&home, &args.name, &options, &mut std::io::stdout().lock())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_takes_instants_unix_times_and_durations_ago() {
        let now = 2_000_000_000_000_000_000;
        assert_eq!(parse_since("1970-01-01T00:00:10Z", now), Ok(10_000_000_000));
        assert_eq!(
            parse_since("1796583600", now),
            Ok(1_796_583_600_000_000_000)
        );
        assert_eq!(parse_since("12.5", now), Ok(12_500_000_000));
        assert_eq!(parse_since("10m", now), Ok(now - 600_000_000_000));
        assert!(parse_since("soon", now).is_err());
        assert!(parse_since("-10m", now).is_err());
    }
}
