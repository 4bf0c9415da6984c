//! Capsules as Slurm job steps, on a real Slurm: scripts/slurm/cluster starts munged,
//! slurmctld and two slurmd (nodes n1 and n2, on 127.0.0.1 and 127.0.0.2) in the
//! test's own directory, and stops them afterwards. Then: srun of per-task capsules
//! (host names, ports), peers by name on one node and across nodes, the exit status
//! through srun, sbatch and the job completion log, `capsule up` as a job step, a job
//! array of one image (private layers apart, the store unchanged, concurrent imports),
//! scancel (no process left),
//! and a two-rank Open MPI hello world with each rank in its own capsule, on one node
//! and on two (with `--network host`).
//!
//! Skipped, saying why, only when Slurm is not installed or this is not root (slurmd
//! must start tasks as their users); CI installs it and runs as root.

mod common;
#[path = "image_support.rs"]
mod image_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;

struct Cluster {
    dir: TempDir,
    home: PathBuf,
    local: PathBuf,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        for prog in ["slurmctld", "slurmd", "munged", "srun", "sbatch", "mpicc"] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {prog}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                eprintln!("skipping tests/slurm.rs: {prog} is not installed (apt-get install slurm-wlm munge openmpi-bin libopenmpi-dev)");
                return None;
            }
        }
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping tests/slurm.rs: slurmd needs root to start tasks");
            return None;
        }
        let dir = TempDir::new("slurm");
        let script = workspace_root().join("scripts/slurm/cluster");
        let out = Command::new(&script)
            .args(["start", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        let cluster = Cluster {
            home: dir.join("home"),
            local: dir.join("local"),
            dir,
        };
        assert!(
            out.status.success(),
            "Slurm did not start: {}",
            describe(&out)
        );
        fs::create_dir_all(&cluster.local).unwrap();
        Some(cluster)
    }

    /// A Slurm command with this cluster's configuration, capsule on PATH, a shared
    /// CAPSULE_HOME and node-local storage in TMPDIR.
    fn command(&self, prog: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(prog);
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.args(args)
            .env("SLURM_CONF", self.dir.join("slurm.conf"))
            .env("PATH", path)
            .env("CAPSULE_HOME", &self.home)
            .env("TMPDIR", &self.local)
            .env("CAPSULE_EXAMPLES", workspace_root().join("examples/slurm"))
            .current_dir(self.dir.path());
        cmd
    }

    fn run(&self, prog: &str, args: &[&str]) -> Output {
        run(&mut self.command(prog, args))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("scripts/slurm/cluster"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .status();
    }
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// `examples/slurm/NAME`.
fn example(name: &str) -> String {
    workspace_root()
        .join("examples/slurm")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn capsules_run_as_slurm_job_steps() {
    let Some(cluster) = Cluster::start() else {
        return;
    };

    // Per-task host names and published ports, on two nodes.
    let out = cluster.run(
        "srun",
        &[
            "-N2",
            "-n2",
            "capsule",
            "run",
            "--rm",
            "--name",
            "task-%t",
            "--hostname",
            "web-%t",
            "-p",
            "18000+%t:8000",
            "--",
            "sh",
            "-c",
            "echo $(hostname) $SLURM_PROCID $SLURMD_NODENAME",
        ],
    );
    let text = success(&out, "srun of two capsules");
    assert_eq!(sorted_lines(&text), ["web-0 0 n1", "web-1 1 n2"]);

    // Peers by capsule name, as examples/slurm/peers.sbatch runs them: both tasks on
    // one node (the loopback scheme), then on two nodes (the node's address and the
    // published port; without a published port the peer on the other node is
    // unreachable, so the second run did go there).
    for nodes in ["1", "2"] {
        let output = format!("peers-{nodes}.out");
        let out = cluster.run(
            "sbatch",
            &[
                "--wait",
                "--nodes",
                nodes,
                "-o",
                &output,
                &example("peers.sbatch"),
            ],
        );
        success(
            &out,
            &format!("examples/slurm/peers.sbatch on {nodes} nodes"),
        );
        let text = fs::read_to_string(cluster.dir.join(&output)).unwrap();
        assert_eq!(text.trim(), "task 1 got hello from web-0", "{nodes} nodes");
    }

    // examples/slurm/array.sbatch: four capsules of the host's root, each writing the
    // host's /etc/motd in its private layer.
    let motd = fs::read("/etc/motd").ok();
    let out = cluster.run(
        "sbatch",
        &[
            "--wait",
            "--parsable",
            "-o",
            "example-%a.out",
            &example("array.sbatch"),
        ],
    );
    let job = success(&out, "examples/slurm/array.sbatch")
        .trim()
        .to_string();
    for task in 0..4 {
        let text = fs::read_to_string(cluster.dir.join(&format!("example-{task}.out"))).unwrap();
        assert_eq!(
            text,
            format!("task {task} of job {job} on worker-{task}\n"),
            "array task {task}"
        );
    }
    assert_eq!(
        fs::read("/etc/motd").ok(),
        motd,
        "the host's /etc/motd changed"
    );

    // The exit status: srun's, sbatch --wait's, and the job completion record.
    let out = cluster.run(
        "srun",
        &["-n1", "capsule", "run", "--rm", "--", "sh", "-c", "exit 7"],
    );
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let out = cluster.run(
        "sbatch",
        &[
            "--wait",
            "--parsable",
            "-o",
            "/dev/null",
            "--wrap",
            "srun capsule run --rm -- sh -c 'exit 3'",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let job = stdout(&out).trim().to_string();
    let jobcomp = fs::read_to_string(cluster.dir.join("log/jobcomp.txt")).unwrap();
    let record = jobcomp
        .lines()
        .find(|l| l.contains(&format!("JobId={job} ")))
        .unwrap_or_else(|| panic!("job {job} not in the completion log: {jobcomp}"));
    assert!(record.contains("ExitCode=3:0"), "{record}");

    // A job array of four capsules of one image, each importing it at the same time
    // and writing the same path in its private layer.
    let root = cluster.dir.join("rootfs");
    image_support::compose_root(&root);
    let batch = cluster.dir.join("array.sh");
    fs::write(
        &batch,
        format!(
            "#!/bin/sh\n\
             capsule image import {} --name arr:1 >/dev/null || exit 9\n\
             exec capsule run --name arr-%a --image arr:1 -- /bin/sh -c \
             'echo task-$SLURM_ARRAY_TASK_ID > /data/new; echo $SLURM_JOB_ID $(cat /data/new)'\n",
            root.display()
        ),
    )
    .unwrap();
    let out = cluster.run(
        "sbatch",
        &[
            "--wait",
            "--array=0-3",
            "-o",
            "out-%a",
            batch.to_str().unwrap(),
        ],
    );
    success(&out, "sbatch of a job array");
    for task in 0..4 {
        let text = fs::read_to_string(cluster.dir.join(&format!("out-{task}"))).unwrap();
        let (job, content) = text.trim().split_once(' ').unwrap();
        assert_eq!(content, format!("task-{task}"), "array task {task}");
        let upper = cluster.local.join(format!(
            "capsule-job{job}/capsules/arr-{task}/upper/data/new"
        ));
        assert_eq!(
            fs::read_to_string(&upper).unwrap(),
            format!("task-{task}\n")
        );
    }
    let capsule = |args: &[&str]| {
        let mut cmd = Command::new(capsule_bin());
        cmd.args(args).env("CAPSULE_HOME", &cluster.home);
        run(&mut cmd)
    };
    let images = success(&capsule(&["image", "ls"]), "image ls");
    let arr = images.lines().filter(|l| l.contains("arr")).count();
    assert_eq!(arr, 1, "one image in the store: {images}");
    let out = capsule(&[
        "run",
        "--rm",
        "--image",
        "arr:1",
        "--",
        "/bin/cat",
        "/data/new",
    ]);
    assert_eq!(success(&out, "the image after the array"), "base\n");
    assert_eq!(fs::read_to_string(root.join("data/new")).unwrap(), "base\n");

    // capsule up as a job step: a server and a client reaching it by name, the
    // programs' output as they wrote it (--no-log-prefix) in the step's output.
    let manifest = cluster.dir.join("capsule.toml");
    fs::write(
        &manifest,
        r#"
[capsule.server]
command = ['python3', '-c', 'import socket;s=socket.socket();s.bind(("",8000));s.listen();c,_=s.accept();c.sendall(socket.gethostname().encode()+b"\n");c.close()']
[capsule.client]
depends_on = ["server"]
command = ['python3', '-c', '''import socket,time
for i in range(200):
    try:
        c=socket.create_connection(("server",8000)); break
    except OSError: time.sleep(0.05)
print("client got", c.recv(100).decode().strip())''']
"#,
    )
    .unwrap();
    let out = cluster.run(
        "srun",
        &[
            "-n1",
            "capsule",
            "up",
            "--no-log-prefix",
            "--exit-code-from",
            "client",
            "-f",
            manifest.to_str().unwrap(),
        ],
    );
    assert_eq!(success(&out, "srun capsule up"), "client got server\n");

    // scancel of a running capsule: its program is stopped, nothing is left running.
    let marker = cluster.dir.join("started");
    let wrap = format!(
        "srun capsule run --name victim -v {d}:{d} -- sh -c 'echo $$ > {}; exec sleep 300'",
        marker.display(),
        d = cluster.dir.path().display()
    );
    let out = cluster.run(
        "sbatch",
        &["--parsable", "-o", "victim.out", "--wrap", &wrap],
    );
    let job = success(&out, "sbatch of a long capsule").trim().to_string();
    let deadline = Instant::now() + TIMEOUT;
    while !marker.exists() || fs::read_to_string(&marker).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "the capsule did not start");
        sleep(Duration::from_millis(50));
    }
    let pid: i32 = fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    success(&cluster.run("scancel", &[&job]), "scancel");
    while Path::new(&format!("/proc/{pid}")).exists()
        || !stdout(&cluster.run("squeue", &["-h", "-j", &job]))
            .trim()
            .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "process {pid} or job {job} outlived scancel"
        );
        sleep(Duration::from_millis(100));
    }
    let state = stdout(&cluster.run("scontrol", &["show", "job", &job]));
    assert!(state.contains("JobState=CANCELLED"), "{state}");

    // Open MPI: two ranks, each in its own capsule, over Slurm's PMIx: on one node
    // (shared memory between them), then on two nodes over TCP, which needs the host's
    // network (the ranks exchange the addresses and ports they bound).
    let hello = cluster.dir.join("mpi_hello");
    let out = run(Command::new("mpicc").args([
        "-o",
        hello.to_str().unwrap(),
        workspace_root()
            .join("c-tests/mpi_hello.c")
            .to_str()
            .unwrap(),
    ]));
    success(&out, "mpicc");
    let out = cluster.run(
        "srun",
        &[
            "--mpi=pmix",
            "-N1",
            "-n2",
            "capsule",
            "run",
            "--rm",
            "--name",
            "rank-%t",
            "--hostname",
            "rank-%t",
            "--",
            hello.to_str().unwrap(),
        ],
    );
    let expected = [
        "rank 0 of 2 on rank-0",
        "rank 0 received 10 from rank 1",
        "rank 1 of 2 on rank-1",
    ];
    let text = success(&out, "two MPI ranks in capsules on one node");
    assert_eq!(sorted_lines(&text), expected);
    let out = cluster.run(
        "sbatch",
        &[
            "--wait",
            "--nodes=2",
            "-o",
            "mpi.out",
            &example("mpi.sbatch"),
            hello.to_str().unwrap(),
        ],
    );
    success(&out, "examples/slurm/mpi.sbatch on two nodes");
    let text = fs::read_to_string(cluster.dir.join("mpi.out")).unwrap();
    assert_eq!(sorted_lines(&text), expected, "two nodes");
}
