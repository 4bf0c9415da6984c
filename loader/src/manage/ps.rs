//! `capsule ps`: one line per capsule, as a table or as JSON.
//!
//! By default only capsules that are up (running, or restarting under a supervisor)
//! are listed, as `docker ps` does; `all` lists every capsule that has a state
//! directory.

use std::fmt::Write as _;

use super::ManageError;
use crate::inspect::{self, human_duration, shell_line, CapsuleInfo, InspectError};
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
    let list: Vec<serde_json::Value> = infos.iter().map(CapsuleInfo::summary_json).collect();
    let mut text = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{PortLine, Status};
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
                    address: "0.0.0.0".into(),
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
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        let web = &list[0];
        assert_eq!(web["name"], "web-1");
        assert_eq!(web["pid"], 4242);
        assert_eq!(web["status"], "running");
        assert!(web["exit_code"].is_null());
        assert_eq!(
            web["ports"][0],
            serde_json::json!({"proto": "tcp", "port": 8000, "host": 18080,
                "host_address": "0.0.0.0", "published": true})
        );
        assert_eq!(
            web["command"],
            serde_json::json!(["sh", "-c", "echo \"hi\""])
        );
        let db = &list[1];
        assert_eq!(
            (db["status"].as_str(), db["exit_code"].as_u64()),
            (Some("exited"), Some(3))
        );
        assert!(db["signal"].is_null() && db["uptime_secs"].is_null());
        assert_eq!(json(&[]), "[]\n");
    }
}
