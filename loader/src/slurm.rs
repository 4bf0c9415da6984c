//! Capsules as Slurm job steps: per-task values from Slurm's environment and the
//! peers of a step.
//!
//! - [`expand`]: `%t`, `%a`, `%j`… in `--name`, `--hostname`, `-p` and `-v` become the
//!   task's values (sbatch's filename letters), `8000+%t` adds;
//! - [`passes_into_capsule`]: the variables a job step, its PMI/PMIx and MPI hand a
//!   task, which a capsule of an image keeps;
//! - [`local_home`]: where capsules' private layers live inside a job (node-local);
//! - [`peers`]: every task's capsule name, and for the tasks on other nodes the node's
//!   address and the host ports they publish there, from the step's layout
//!   (`SLURM_STEP_NODELIST`, `SLURM_STEP_TASKS_PER_NODE`, `SLURM_DISTRIBUTION`).
//!
//! Invariants: nothing here starts anything or writes anything; a placeholder whose
//! variable is unset is an error, never an empty string (two tasks would get one name).

use std::ffi::OsStr;
use std::net::ToSocketAddrs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use capsule_config::net::RemotePeer;
use capsule_config::PortMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlurmError {
    #[error("%{letter} needs {var}, which is not set (not inside a Slurm job step?)")]
    Unset { letter: char, var: &'static str },
    #[error("unknown placeholder %{0} (%t %a %A %j %n %N %s %%)")]
    Unknown(char),
    #[error("'%' at the end (write %% for a '%')")]
    Trailing,
    #[error("{0}+{1} is not a number")]
    Sum(String, String),
    #[error("{var}={value:?}: {reason}")]
    Layout {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("--peers-from-slurm needs --name with %t (each task's capsule its own name)")]
    NameWithoutTask,
    #[error("scontrol: {0}")]
    Scontrol(String),
}

/// The placeholders and the variables they stand for: sbatch's `--output` letters.
const PLACEHOLDERS: &[(char, &str)] = &[
    ('t', "SLURM_PROCID"),
    ('a', "SLURM_ARRAY_TASK_ID"),
    ('A', "SLURM_ARRAY_JOB_ID"),
    ('j', "SLURM_JOB_ID"),
    ('n', "SLURM_NODEID"),
    ('N', "SLURMD_NODENAME"),
    ('s', "SLURM_STEP_ID"),
];

/// Whether `template` has a placeholder to expand.
pub fn has_placeholder(template: &str) -> bool {
    template.contains('%')
}

/// `template` with each placeholder replaced by its variable from `var`; a number
/// right before `+` and a numeric placeholder is added to it (`8000+%t` → `8003`).
pub fn expand(template: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<String, SlurmError> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let letter = chars.next().ok_or(SlurmError::Trailing)?;
        if letter == '%' {
            out.push('%');
            continue;
        }
        let (_, name) = PLACEHOLDERS
            .iter()
            .find(|(l, _)| *l == letter)
            .ok_or(SlurmError::Unknown(letter))?;
        let value = var(name)
            .filter(|v| !v.is_empty())
            .ok_or(SlurmError::Unset { letter, var: name })?;
        match out.strip_suffix('+').map(trailing_number) {
            Some((head, base)) if !base.is_empty() => {
                let sum = match (base.parse::<u64>(), value.parse::<u64>()) {
                    (Ok(a), Ok(b)) => a + b,
                    _ => return Err(SlurmError::Sum(base.to_string(), value)),
                };
                out = format!("{head}{sum}");
            }
            _ => out.push_str(&value),
        }
    }
    Ok(out)
}

/// Splits the decimal digits off the end of `text`.
fn trailing_number(text: &str) -> (&str, &str) {
    let digits = text.bytes().rev().take_while(u8::is_ascii_digit).count();
    text.split_at(text.len() - digits)
}

/// Whether a variable of the caller's environment is one a Slurm task, its PMI/PMIx
/// or MPI library needs, and so passes into a capsule of an image untouched.
pub fn passes_into_capsule(key: &OsStr) -> bool {
    const PREFIXES: &[&str] = &[
        "SLURM_", "SLURMD_", "PMI_", "PMIX_", "OMPI_", "PRTE_", "OPAL_", "HYDRA_",
    ];
    key.to_str()
        .is_some_and(|k| PREFIXES.iter().any(|p| k.starts_with(p)))
}

/// The directories a PMIx client shares with its server outside the capsule: the
/// server's rendezvous directory and its shared-memory data stores (a file with a
/// lock inside, mapped by the server and every rank). A private copy of them would
/// give a rank a lock the server never sees, so they are bound into the capsule as
/// read-write volumes at the same path. Only absolute paths that exist, each once,
/// none beneath another.
pub fn pmix_shared_dirs(var: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let server = var("PMIX_SERVER_TMPDIR").map(PathBuf::from);
    let stores = ["PMIX_DSTORE_21_BASE_PATH", "PMIX_DSTORE_ESH_BASE_PATH"]
        .iter()
        .filter_map(|k| var(k))
        .map(PathBuf::from);
    for dir in server.into_iter().chain(stores) {
        // Components drop `.` and doubled or trailing slashes; `..` is not followed.
        let dir: PathBuf = dir.components().collect();
        let parent = dir.components().any(|c| c == Component::ParentDir);
        if parent || !dir.is_absolute() || dir == Path::new("/") || !dir.is_dir() {
            continue;
        }
        if dirs.iter().any(|d| dir.starts_with(d)) {
            continue;
        }
        dirs.retain(|d| !d.starts_with(&dir));
        dirs.push(dir);
    }
    dirs
}

/// Inside a Slurm job (`SLURM_JOB_ID` set): the node-local directory capsules' state
/// (their private layers) lives in, `$SLURM_TMPDIR`, else `$TMPDIR`, else `/tmp`, then
/// `capsule-job<ID>`. Outside a job, `None`.
pub fn local_home(var: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let job = var("SLURM_JOB_ID").filter(|j| !j.is_empty())?;
    let base = ["SLURM_TMPDIR", "TMPDIR"]
        .iter()
        .filter_map(|k| var(k))
        .map(PathBuf::from)
        .find(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    Some(base.join(format!("capsule-job{job}")))
}

/// Task counts per node from Slurm's compact form, `2(x3),1` → `[2, 2, 2, 1]`.
pub fn parse_tasks_per_node(text: &str) -> Result<Vec<usize>, String> {
    let mut counts = Vec::new();
    for part in text.split(',') {
        let (count, repeat) = match part.split_once("(x") {
            Some((count, rest)) => {
                let repeat = rest
                    .strip_suffix(')')
                    .and_then(|r| r.parse::<usize>().ok())
                    .ok_or_else(|| format!("'{part}' is not N(xM)"))?;
                (count, repeat)
            }
            None => (part, 1),
        };
        let count: usize = count
            .parse()
            .map_err(|_| format!("'{part}' is not a count"))?;
        counts.extend(std::iter::repeat_n(count, repeat));
    }
    Ok(counts)
}

/// The node index of each task: tasks fill nodes in order with `block` (Slurm's
/// default), go round the nodes with `cyclic`.
pub fn task_nodes(counts: &[usize], distribution: &str) -> Result<Vec<usize>, String> {
    let total: usize = counts.iter().sum();
    match distribution.split(':').next().unwrap_or("") {
        "" | "block" => Ok(counts
            .iter()
            .enumerate()
            .flat_map(|(node, &n)| std::iter::repeat_n(node, n))
            .collect()),
        "cyclic" => {
            let mut left = counts.to_vec();
            let mut nodes = Vec::with_capacity(total);
            while nodes.len() < total {
                for (node, n) in left.iter_mut().enumerate() {
                    if *n > 0 {
                        *n -= 1;
                        nodes.push(node);
                    }
                }
            }
            Ok(nodes)
        }
        other => Err(format!(
            "distribution '{other}' is not supported by --peers-from-slurm (block or cyclic)"
        )),
    }
}

/// Each node of a node list, with its IPv4 address.
pub type Nodes = Vec<(String, [u8; 4])>;

/// The peers of a job step's task.
#[derive(Debug, PartialEq, Eq)]
pub struct Peers {
    /// Every task's capsule name, by task id.
    pub names: Vec<String>,
    /// The tasks on other nodes than this one.
    pub remote: Vec<RemotePeer>,
}

/// The peers of this task: the capsule name `name` gives each task of the step, and
/// for those on other nodes, their node's address and the host ports `publish` gives
/// them there (a `-p` without a host port is not reachable from another node).
/// `nodes` turns a node list into each node's name and IPv4 address.
pub fn peers(
    name: &str,
    publish: &[String],
    var: &dyn Fn(&str) -> Option<String>,
    nodes: &dyn Fn(&str) -> Result<Nodes, SlurmError>,
) -> Result<Peers, SlurmError> {
    if !name.contains("%t") {
        return Err(SlurmError::NameWithoutTask);
    }
    let first = |names: [&'static str; 2]| {
        names
            .iter()
            .find_map(|n| var(n).filter(|v| !v.is_empty()).map(|v| (*n, v)))
            .ok_or(SlurmError::Unset {
                letter: 't',
                var: names[0],
            })
    };
    let (_, list) = first(["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"])?;
    let (per_node_var, per_node) = first(["SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"])?;
    let own: usize = var("SLURM_PROCID")
        .and_then(|t| t.parse().ok())
        .ok_or(SlurmError::Unset {
            letter: 't',
            var: "SLURM_PROCID",
        })?;
    let layout = |reason: String| SlurmError::Layout {
        var: per_node_var,
        value: per_node.clone(),
        reason,
    };
    let counts = parse_tasks_per_node(&per_node).map_err(layout)?;
    let distribution = var("SLURM_DISTRIBUTION").unwrap_or_default();
    let placed = task_nodes(&counts, &distribution).map_err(layout)?;
    let hosts = nodes(&list)?;
    if hosts.len() != counts.len() {
        return Err(layout(format!(
            "{} nodes in {list}, counts for {}",
            hosts.len(),
            counts.len()
        )));
    }
    let own_node = *placed
        .get(own)
        .ok_or_else(|| layout(format!("no task {own}")))?;
    let mut out = Peers {
        names: Vec::with_capacity(placed.len()),
        remote: Vec::new(),
    };
    for (task, &node) in placed.iter().enumerate() {
        let (node_name, addr) = &hosts[node];
        let task_text = task.to_string();
        let node_text = node.to_string();
        let of_task = |key: &str| match key {
            "SLURM_PROCID" => Some(task_text.clone()),
            "SLURM_NODEID" => Some(node_text.clone()),
            "SLURMD_NODENAME" => Some(node_name.clone()),
            other => var(other),
        };
        let peer = expand(name, &of_task)?;
        if node != own_node {
            let mut ports = Vec::new();
            for spec in publish {
                // A -p the task's own capsule checks; here only what it publishes.
                if let Ok(map) = PortMap::parse(&expand(spec, &of_task)?) {
                    if map.host.is_some() {
                        ports.push(map);
                    }
                }
            }
            out.remote.push(RemotePeer {
                name: peer.clone(),
                addr: *addr,
                ports,
            });
        }
        out.names.push(peer);
    }
    Ok(out)
}

/// Each node of the Slurm node list `list` with its address, from `scontrol show
/// hostnames` and `scontrol show node` (its `NodeAddr`, resolved when a name).
pub fn scontrol_nodes(list: &str) -> Result<Nodes, SlurmError> {
    let run = |args: &[&str]| -> Result<String, SlurmError> {
        let out = Command::new("scontrol")
            .args(args)
            .output()
            .map_err(|e| SlurmError::Scontrol(crate::describe_io(&e)))?;
        if !out.status.success() {
            return Err(SlurmError::Scontrol(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let names: Vec<String> = run(&["show", "hostnames", list])?
        .lines()
        .map(str::to_string)
        .collect();
    let details = run(&["-o", "show", "node", list])?;
    names
        .into_iter()
        .map(|name| {
            let addr = node_addr(&details, &name).unwrap_or_else(|| name.clone());
            let ip = resolve_ipv4(&addr).ok_or_else(|| {
                SlurmError::Scontrol(format!("node {name}: address {addr} is not IPv4"))
            })?;
            Ok((name, ip))
        })
        .collect()
}

/// `NodeAddr` of `name` in `scontrol -o show node` output.
fn node_addr(details: &str, name: &str) -> Option<String> {
    details.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == format!("NodeName={name}"))
            .then(|| fields.find_map(|f| f.strip_prefix("NodeAddr=").map(str::to_string)))?
    })
}

fn resolve_ipv4(addr: &str) -> Option<[u8; 4]> {
    (addr, 0).to_socket_addrs().ok()?.find_map(|a| match a {
        std::net::SocketAddr::V4(v4) => Some(v4.ip().octets()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn pmix_directories_are_shared_once_each() {
        let dir = std::env::temp_dir().join(format!("capsule-pmix-{}", std::process::id()));
        let store = dir.join("pmix_dstor_ds21_1");
        std::fs::create_dir_all(&store).unwrap();
        let server = format!("{}/", dir.display());
        let store = store.to_str().unwrap().replace("pmix_", "/pmix_");
        let found = pmix_shared_dirs(&vars(&[
            ("PMIX_SERVER_TMPDIR", &server),
            ("PMIX_DSTORE_21_BASE_PATH", &store),
            ("PMIX_DSTORE_ESH_BASE_PATH", "/no/such/dir"),
        ]));
        assert_eq!(found, std::slice::from_ref(&dir));
        let found = pmix_shared_dirs(&vars(&[
            ("PMIX_DSTORE_21_BASE_PATH", &store),
            ("PMIX_SERVER_TMPDIR", &server),
        ]));
        assert_eq!(found, std::slice::from_ref(&dir));
        assert!(pmix_shared_dirs(&vars(&[("PMIX_SERVER_TMPDIR", "relative")])).is_empty());
        assert!(pmix_shared_dirs(&vars(&[("PMIX_SERVER_TMPDIR", "/")])).is_empty());
        let up = format!("{}/pmix_dstor_ds21_1/..", dir.display());
        assert!(pmix_shared_dirs(&vars(&[("PMIX_SERVER_TMPDIR", &up)])).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn placeholders_expand_from_slurm_variables() {
        let v = vars(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_JOB_ID", "41"),
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURMD_NODENAME", "n2"),
        ]);
        assert_eq!(expand("app-%t", &v).unwrap(), "app-3");
        assert_eq!(expand("web-%N-%j.%a", &v).unwrap(), "web-n2-41.7");
        assert_eq!(expand("8000+%t:8000", &v).unwrap(), "8003:8000");
        assert_eq!(
            expand("127.0.0.1:9000+%a:80/udp", &v).unwrap(),
            "127.0.0.1:9007:80/udp"
        );
        assert_eq!(
            expand("/scratch/%j/%t:/data", &v).unwrap(),
            "/scratch/41/3:/data"
        );
        assert_eq!(expand("100%%", &v).unwrap(), "100%");
        assert_eq!(expand("a+%t", &v).unwrap(), "a+3");
        assert_eq!(
            expand("x-%s", &v),
            Err(SlurmError::Unset {
                letter: 's',
                var: "SLURM_STEP_ID"
            })
        );
        assert_eq!(expand("x-%q", &v), Err(SlurmError::Unknown('q')));
        assert_eq!(expand("x-%", &v), Err(SlurmError::Trailing));
        assert!(matches!(expand("1+%N", &v), Err(SlurmError::Sum(..))));
    }

    #[test]
    fn layouts_place_tasks_on_nodes() {
        assert_eq!(parse_tasks_per_node("2(x3),1").unwrap(), [2, 2, 2, 1]);
        assert_eq!(parse_tasks_per_node("1").unwrap(), [1]);
        assert!(parse_tasks_per_node("2(x").is_err());
        assert_eq!(task_nodes(&[2, 1], "block").unwrap(), [0, 0, 1]);
        assert_eq!(task_nodes(&[2, 1], "").unwrap(), [0, 0, 1]);
        assert_eq!(task_nodes(&[2, 1], "cyclic:block").unwrap(), [0, 1, 0]);
        assert!(task_nodes(&[2, 1], "arbitrary").is_err());
    }

    #[test]
    fn peers_on_other_nodes_get_their_address_and_ports() {
        let v = vars(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_STEP_NODELIST", "n[1-2]"),
            ("SLURM_STEP_TASKS_PER_NODE", "2,1"),
        ]);
        let nodes = |list: &str| {
            assert_eq!(list, "n[1-2]");
            Ok(vec![
                ("n1".to_string(), [127, 0, 0, 1]),
                ("n2".to_string(), [127, 0, 0, 2]),
            ])
        };
        let p = peers(
            "app-%t",
            &["8000+%t:8000".into(), "9000".into()],
            &v,
            &nodes,
        )
        .unwrap();
        assert_eq!(p.names, ["app-0", "app-1", "app-2"]);
        assert_eq!(p.remote.len(), 1);
        assert_eq!(p.remote[0].to_spec(), "app-2@127.0.0.2=8002:8000/tcp");
        assert_eq!(
            peers("app", &[], &v, &nodes),
            Err(SlurmError::NameWithoutTask)
        );
    }

    #[test]
    fn node_addresses_come_from_scontrol_output() {
        let out = "NodeName=n1 Arch=x86_64 NodeAddr=127.0.0.1 NodeHostName=vm\n\
                   NodeName=n2 Arch=x86_64 NodeAddr=127.0.0.2 NodeHostName=vm\n";
        assert_eq!(node_addr(out, "n2").as_deref(), Some("127.0.0.2"));
        assert_eq!(node_addr(out, "n3"), None);
        assert_eq!(resolve_ipv4("127.0.0.2"), Some([127, 0, 0, 2]));
    }
}
