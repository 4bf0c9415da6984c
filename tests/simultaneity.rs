//! Many capsules at once: copies of the same binary, each in its own capsule with its own
//! host name, user and clock, all running at the same time, each observing only its own
//! values, while a process outside every capsule observes the host's.

mod common;

use common::*;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const COPIES: usize = 8;
const LOOP_MILLIS: &str = "1500";

struct Copy {
    label: String,
    host: String,
    uid: u32,
    offset_secs: i64,
}

fn copies() -> Vec<Copy> {
    (0..COPIES)
        .map(|i| Copy {
            label: format!("c{i}"),
            host: format!("sim-host-{i}"),
            uid: 2000 + i as u32,
            // Alternate past and future, days and hours.
            offset_secs: if i % 2 == 0 {
                -(i as i64 + 1) * 86_400
            } else {
                (i as i64) * 3_600
            },
        })
        .collect()
}

fn offset_flag(secs: i64) -> String {
    if secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else {
        format!("{}h", secs / 3_600)
    }
}

/// Starts every command, waits until each has signalled it is ready, releases them all
/// at once, and collects their output. Asserts that their loops overlapped in time.
fn run_together(commands: Vec<(String, Command)>, dir: &TempDir) -> Vec<(String, Output)> {
    let go = dir.join("go");
    let mut running: Vec<(String, Running)> = commands
        .into_iter()
        .map(|(label, mut cmd)| (label, spawn(&mut cmd)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (label, process) in &mut running {
        let ready = dir.join(&format!("ready-{label}"));
        // A copy that exits early is reported with its output below.
        while !ready.exists() && !process.has_exited() {
            assert!(
                Instant::now() < deadline,
                "{label} never became ready ({} missing)",
                ready.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::fs::write(&go, b"go").unwrap();
    let outputs: Vec<(String, Output)> = running
        .into_iter()
        .map(|(label, r)| (label, r.wait()))
        .collect();

    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for (label, out) in &outputs {
        let text = probe_ok(out, &format!("copy {label}"));
        let line = text
            .lines()
            .find(|l| l.starts_with("start="))
            .unwrap_or_else(|| panic!("{label}: no start= line\n{text}"));
        let mut parts = line.split_whitespace();
        let start: i64 = parts.next().unwrap()[6..].parse().unwrap();
        let end: i64 = parts.next().unwrap()[4..].parse().unwrap();
        starts.push(start);
        ends.push(end);
    }
    let latest_start = starts.iter().max().unwrap();
    let earliest_end = ends.iter().min().unwrap();
    assert!(
        latest_start < earliest_end,
        "the copies did not all run at the same time (starts {starts:?}, ends {ends:?})"
    );
    outputs
}

fn probe_args(dir: &TempDir, label: &str, host: &str, uid: u32, offset: i64) -> Vec<String> {
    vec![
        dir.join(&format!("ready-{label}"))
            .to_str()
            .unwrap()
            .to_string(),
        dir.join("go").to_str().unwrap().to_string(),
        LOOP_MILLIS.to_string(),
        host.to_string(),
        uid.to_string(),
        offset.to_string(),
    ]
}

fn native_copy(dir: &TempDir) -> (String, Command) {
    let probe = compile_c("probe_loop");
    let args = probe_args(dir, "native", &host_name(), host_uid(), 0);
    let mut cmd = clean_command(&probe);
    cmd.args(&args);
    ("native".to_string(), cmd)
}

#[test]
fn eight_capsules_through_the_loader_each_see_their_own_values() {
    let probe = compile_c("probe_loop");
    let home = CapsuleHome::new();
    let dir = TempDir::new("sim-loader");
    let mut commands = Vec::new();
    for copy in copies() {
        let offset = offset_flag(copy.offset_secs);
        let uid = copy.uid.to_string();
        // The barrier and result files live in a host directory: bind it into each
        // capsule (its own writes otherwise stay in its private upper layer).
        let volume = format!("{0}:{0}", dir.str());
        let mut args: Vec<String> = [
            "run",
            "-v",
            &volume,
            "--name",
            &copy.label,
            "--hostname",
            &copy.host,
            "--user",
            &uid,
            "--time-offset",
            &offset,
            "--",
            probe.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(probe_args(
            &dir,
            &copy.label,
            &copy.host,
            copy.uid,
            copy.offset_secs,
        ));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        commands.push((copy.label.clone(), home.command(&args)));
    }
    commands.push(native_copy(&dir));
    let outputs = run_together(commands, &dir);
    assert_eq!(outputs.len(), COPIES + 1);
}

#[test]
fn eight_preloaded_copies_each_see_their_own_values() {
    let probe = compile_c("probe_loop");
    let dir = TempDir::new("sim-preload");
    let mut commands = Vec::new();
    for copy in copies() {
        let uid = copy.uid.to_string();
        let offset = offset_flag(copy.offset_secs);
        let env = [
            ("CAPSULE_HOSTNAME", copy.host.as_str()),
            ("CAPSULE_UID", uid.as_str()),
            ("CAPSULE_TIME_OFFSET", offset.as_str()),
        ];
        let args = probe_args(&dir, &copy.label, &copy.host, copy.uid, copy.offset_secs);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        commands.push((copy.label.clone(), preload_command(&env, &probe, &args)));
    }
    commands.push(native_copy(&dir));
    let outputs = run_together(commands, &dir);
    assert_eq!(outputs.len(), COPIES + 1);
}
