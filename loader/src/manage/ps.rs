//! `capsule ps`: one line per capsule, as a table or as JSON.
//!
//! By default only capsules that are up (running, or restarting under a supervisor)
//! are listed, as `docker ps` does; `all` lists every capsule that has a state
//! directory.

use std::fmt::Write as _;

use super::ManageError;
use crate::inspect::{self, human_duration, shell_line, CapsuleInfo, InspectError, Status};
use crate::state::Home;

/// The capsules to show, sorted by name.
pub fn list(home: &Home, all: bool) -> Result<Vec<CapsuleInfo>, ManageError> {
    let mut infos = Vec::new();
    for name in inspect::capsule_names(home)? {
        match inspect::inspect(home, &name) {
            Ok(info) if all || info.status.is_active() => infos.push(info),
            Ok(_) => {}
            // Removed since it was listed.
            Err(InspectError::NoSuchCapsule { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(infos)
}

const HEADERS: [&str; 6] = ["NAME", "PID", "STATUS", "UPTIME", "PORTS", "COMMAND"];

/// Aligned columns under a header line; `-` where a value does not apply.
pub fn table(infos: &[CapsuleInfo]) -> String {
    let rows: Vec<[String; 6]> = infos
        .iter()
        .map(|info| {
            [
                info.name.clone(),
                info.pid.map_or("-".into(), |pid| pid.to_string()),
                info.status.to_string(),
                info.uptime.map_or("-".into(), human_duration),
                if info.ports.is_empty() {
                    "-".into()
                } else {
                    info.ports
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                shell_line(&info.command),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADERS.map(String::from);
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push('\n');
    }
    out
}

/// A JSON array, one object per capsule:
/// `{"name", "pid", "status", "exit_code", "signal", "uptime_secs", "ports", "command"}`.
pub fn json(infos: &[CapsuleInfo]) -> String {
    let mut out = String::from("[");
    for (i, info) in infos.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        let (exit_code, signal) = match info.status {
            Status::Exited(code) => (code.to_string(), "null".into()),
            Status::Killed(sig) => ("null".into(), quote(&inspect::signal_name(sig))),
            _ => ("null".into(), "null".into()),
        };
        let ports: Vec<String> = info
            .ports
            .iter()
            .map(|p| {
                format!(
                    r#"{{"proto":"{}","port":{},"host":{},"published":{}}}"#,
                    p.proto.as_str(),
                    p.port,
                    p.host.map_or("null".into(), |h| h.to_string()),
                    p.published
                )
            })
            .collect();
        let command: Vec<String> = info.command.iter().map(|a| quote(a)).collect();
        let _ = write!(
            out,
            r#"{{"name":{},"pid":{},"status":{},"exit_code":{},"signal":{},"uptime_secs":{},"ports":[{}],"command":[{}]}}"#,
            quote(&info.name),
            info.pid.map_or("null".into(), |p| p.to_string()),
            quote(status_word(info.status)),
            exit_code,
            signal,
            info.uptime
                .map_or("null".into(), |u| u.as_secs().to_string()),
            ports.join(","),
            command.join(","),
        );
    }
    out.push_str(if infos.is_empty() { "]\n" } else { "\n]\n" });
    out
}

/// The status without its detail, for JSON (the detail has fields of its own).
fn status_word(status: Status) -> &'static str {
    match status {
        Status::Running => "running",
        Status::Restarting => "restarting",
        Status::Exited(_) | Status::Vanished => "exited",
        Status::Killed(_) => "killed",
        Status::Created => "created",
    }
}

/// A JSON string literal.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::PortLine;
    use capsule_config::net::Proto;
    use std::path::PathBuf;
    use std::time::Duration;

    fn info(name: &str, status: Status, pid: Option<i32>) -> CapsuleInfo {
        CapsuleInfo {
            name: name.into(),
            dir: PathBuf::from("/x"),
            status,
            pid,
            uptime: pid.map(|_| Duration::from_secs(192)),
            ports: if pid.is_some() {
                vec![PortLine {
                    proto: Proto::Tcp,
                    port: 8000,
                    host: Some(18080),
                    published: true,
                }]
            } else {
                Vec::new()
            },
            command: vec!["sh".into(), "-c".into(), "echo \"hi\"".into()],
        }
    }

    #[test]
    fn the_table_lines_up() {
        let text = table(&[
            info("web-1", Status::Running, Some(4242)),
            info("db", Status::Killed(9), None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let status_at = lines[0].find("STATUS").unwrap();
        assert_eq!(lines[1].find("running"), Some(status_at));
        assert_eq!(lines[2].find("killed (SIGKILL)"), Some(status_at));
        assert!(lines[1].contains("3m12s"));
        assert!(lines[1].contains("0.0.0.0:18080->8000/tcp"));
        assert!(lines[1].ends_with("sh -c 'echo \"hi\"'"), "{}", lines[1]);
        assert!(lines[2].starts_with("db "));
    }

    #[test]
    fn json_escapes_and_splits_the_status() {
        let text = json(&[
            info("web-1", Status::Running, Some(4242)),
            info("db", Status::Exited(3), None),
        ]);
        assert!(text.contains(r#""name":"web-1","pid":4242,"status":"running","exit_code":null"#));
        assert!(
            text.contains(r#""ports":[{"proto":"tcp","port":8000,"host":18080,"published":true}]"#)
        );
        assert!(text.contains(r#""command":["sh","-c","echo \"hi\""]"#));
        assert!(
            text.contains(r#""status":"exited","exit_code":3,"signal":null,"uptime_secs":null"#)
        );
        assert_eq!(json(&[]), "[]\n");
    }
}
