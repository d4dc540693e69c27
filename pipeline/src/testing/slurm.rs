//! A private one-node Slurm cluster for tests: Debian's `slurmctld`,
//! `slurmd` and `munged`, started in a temporary folder with their own
//! configuration, key, socket and ports, and stopped when dropped. It runs
//! the project's sbatch scripts for real (`sbatch --wait`), job arrays and
//! `srun --mpi=pmix` steps included.
//!
//! Needs the Slurm and MUNGE daemons (setup.sh installs them) and root (a
//! slurmd that launches jobs runs as root); [`LocalCluster::start`] says
//! which is missing otherwise.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DAEMONS: [&str; 4] = [
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmd",
    "/usr/sbin/munged",
    "/usr/sbin/mungekey",
];

/// The running cluster; dropping it stops the daemons.
pub struct LocalCluster {
    dir: PathBuf,
    config: PathBuf,
    daemons: Vec<Child>,
    munged_pid: PathBuf,
}

/// A finished batch job.
#[derive(Debug)]
pub struct Job {
    pub succeeded: bool,
    /// What sbatch printed.
    pub sbatch: String,
    /// The job's output files, one per array task.
    pub outputs: Vec<String>,
}

/// A free TCP port on this machine (bound, then released).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn command_output(program: &str, args: &[&str]) -> std::io::Result<Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
}

/// Whether this process may start a cluster (it runs as root); where it
/// may, a missing daemon is a failure of the set-up, not a reason to skip.
pub fn runs_as_root() -> bool {
    command_output("id", &["-u"])
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl LocalCluster {
    /// Starts a cluster of this machine's one node (all its cores) in
    /// `dir`, or says why it cannot.
    pub fn start(dir: &Path) -> Result<Self, String> {
        if let Some(missing) = DAEMONS.iter().find(|d| !Path::new(d).exists()) {
            return Err(format!(
                "{missing} is not installed (setup.sh installs Slurm and MUNGE)"
            ));
        }
        if !runs_as_root() {
            return Err("a slurmd that launches jobs must run as root".into());
        }
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        std::fs::create_dir_all(dir.join("state")).map_err(|e| io("state folder", e))?;
        std::fs::create_dir_all(dir.join("spool")).map_err(|e| io("spool folder", e))?;
        let key = dir.join("munge.key");
        let socket = dir.join("munge.sock");
        let keygen = command_output(
            "/usr/sbin/mungekey",
            &["--create", "--keyfile", key.to_str().unwrap()],
        )
        .map_err(|e| io("mungekey", e))?;
        if !keygen.status.success() {
            return Err(format!(
                "mungekey: {}",
                String::from_utf8_lossy(&keygen.stderr)
            ));
        }
        let munged_pid = dir.join("munged.pid");
        let path = |name: &str| dir.join(name).display().to_string();
        let munged = Command::new("/usr/sbin/munged")
            .args([
                "--force",
                "--key-file",
                &path("munge.key"),
                "--socket",
                &path("munge.sock"),
            ])
            .args([
                "--pid-file",
                &path("munged.pid"),
                "--seed-file",
                &path("munge.seed"),
            ])
            .args(["--log-file", &path("munged.log")])
            .output()
            .map_err(|e| io("munged", e))?;
        if !munged.status.success() {
            return Err(format!(
                "munged: {}",
                String::from_utf8_lossy(&munged.stderr)
            ));
        }
        let host = command_output("hostname", &["-s"]).map_err(|e| io("hostname", e))?;
        let host = String::from_utf8_lossy(&host.stdout).trim().to_string();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (ctld_port, d_port) = (
            free_port().map_err(|e| io("port", e))?,
            free_port().map_err(|e| io("port", e))?,
        );
        let config = dir.join("slurm.conf");
        let text = format!(
            "ClusterName=videogpt-test\nSlurmctldHost={host}\nSlurmUser=root\nSlurmdUser=root\n\
             SlurmctldPort={ctld_port}\nSlurmdPort={d_port}\nAuthInfo=socket={socket}\n\
             StateSaveLocation={state}\nSlurmdSpoolDir={spool}\n\
             SlurmctldPidFile={dir}/slurmctld.pid\nSlurmdPidFile={dir}/slurmd.pid\n\
             SlurmctldLogFile={dir}/slurmctld.log\nSlurmdLogFile={dir}/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSchedulerType=sched/backfill\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nReturnToService=2\nMpiDefault=none\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             NodeName={host} CPUs={cpus} State=UNKNOWN\n\
             PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES\n",
            socket = socket.display(),
            state = dir.join("state").display(),
            spool = dir.join("spool").display(),
            dir = dir.display(),
        );
        std::fs::write(&config, text).map_err(|e| io("slurm.conf", e))?;
        let mut cluster = LocalCluster {
            dir: dir.to_owned(),
            config,
            daemons: Vec::new(),
            munged_pid,
        };
        for daemon in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd"] {
            let child = Command::new(daemon)
                .args(["-D", "-f", cluster.config.to_str().unwrap()])
                .env("SLURM_CONF", &cluster.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| io(daemon, e))?;
            cluster.daemons.push(child);
        }
        // Up when the node reports idle.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = cluster
                .command("sinfo")
                .args(["-h", "-o", "%t"])
                .output()
                .map_err(|e| io("sinfo", e))?;
            if String::from_utf8_lossy(&out.stdout).trim() == "idle" {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("slurmctld.log")).unwrap_or_default();
                return Err(format!(
                    "the node is not idle after 30 s; slurmctld.log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A Slurm client command (`sbatch`, `srun`, `sinfo`) of this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.config).stdin(Stdio::null());
        command
    }

    /// Submits the batch script `script` with sbatch `options`, script
    /// `args` and environment `env` (beside the caller's), waits for the
    /// job to end, and returns whether it succeeded, sbatch's own output
    /// and the job's output files (`<logs>/job-<id>_<task>.out`, sorted).
    pub fn run_job<S: AsRef<std::ffi::OsStr>>(
        &self,
        script: &Path,
        options: &[&str],
        args: &[S],
        env: &[(&str, &Path)],
        logs: &Path,
    ) -> Job {
        let mut command = self.command("sbatch");
        command
            .arg("--wait")
            .args(options)
            .arg(format!("--output={}/job-%A_%a.out", logs.display()))
            .arg(script)
            .args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let out = command.output().expect("sbatch runs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(logs)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("job-"))
        });
        files.sort();
        Job {
            succeeded: out.status.success(),
            sbatch: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            outputs: files
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .collect(),
        }
    }

    /// The cluster's folder (configuration, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        if let Ok(pid) = std::fs::read_to_string(&self.munged_pid) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
