//! Work split over processes: which share of a job this process does.
//!
//! - [`launched`]: the rank and job size a launcher gave this process, from
//!   the environment `mpirun` (Open MPI), a PMI launcher (MPICH's hydra,
//!   Slurm's `srun --mpi=pmi2`) or PMIx (`srun --mpi=pmix`) sets.
//! - [`TaskSlice`]: task `I` of `N` of a job array (`prepare`, `encode-latents`):
//!   from `--task/--tasks`, else Slurm's job-array variables, else a
//!   launcher's rank and size; it owns every `N`-th unit of work (shard,
//!   token-table part) starting at `I`, so the split is deterministic and
//!   the merged output does not depend on `N`.

use crate::error::{PipelineError, Result};

/// This process's place in a launched job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub rank: usize,
    pub size: usize,
    /// Ranks on this node, where the launcher says.
    pub local_size: Option<usize>,
    /// This rank's place among them.
    pub local_rank: Option<usize>,
    /// The variables they came from, for messages.
    pub source: &'static str,
}

/// The launch this process belongs to, if a launcher started it.
pub fn launched() -> Option<Launched> {
    launched_from(|name| std::env::var(name).ok())
}

/// [`launched`] reading variables through `var`.
pub fn launched_from(var: impl Fn(&str) -> Option<String>) -> Option<Launched> {
    let number = |name: &str| var(name).and_then(|v| v.trim().parse::<usize>().ok());
    // (rank, size, ranks on the node, rank on the node, what to call them)
    let candidates: [(&str, &str, &str, &str, &'static str); 3] = [
        (
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_*",
        ),
        (
            "PMIX_RANK",
            "PMIX_SIZE",
            "PMIX_LOCAL_SIZE",
            "PMIX_LOCAL_RANK",
            "PMIX_*",
        ),
        (
            "PMI_RANK",
            "PMI_SIZE",
            "MPI_LOCALNRANKS",
            "MPI_LOCALRANKID",
            "PMI_*",
        ),
    ];
    for (rank, size, local, local_rank, source) in candidates {
        if let Some(r) = number(rank) {
            // PMIx does not always export a size; MPI itself will know.
            let size = number(size)
                .or_else(|| number("SLURM_NTASKS"))
                .unwrap_or(r + 1);
            let local_size = number(local).or_else(|| number("SLURM_NTASKS_PER_NODE"));
            let local_rank = number(local_rank).or_else(|| number("SLURM_LOCALID"));
            return Some(Launched {
                rank: r,
                size,
                local_size,
                local_rank,
                source,
            });
        }
    }
    None
}

/// The command-line options of a command whose work splits into tasks.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TaskArgs {
    /// Do task I (from 0) of --tasks N: every N-th unit of the work (shard,
    /// token-table part), from unit I; the task that finds all units done
    /// writes the tables. Default: Slurm's job-array task
    /// (SLURM_ARRAY_TASK_ID/COUNT), else the rank of `mpirun`/`srun`.
    #[arg(long, value_name = "I")]
    pub task: Option<usize>,
    /// How many tasks share the work (with --task).
    #[arg(long, value_name = "N")]
    pub tasks: Option<usize>,
    /// Do no work: write the tables from the units the tasks finished (run
    /// with the same settings as the tasks).
    #[arg(long)]
    pub merge: bool,
}

impl TaskArgs {
    /// This process's task ([`TaskSlice::from_flags_or_env`]).
    pub fn slice(&self) -> Result<TaskSlice> {
        TaskSlice::from_flags_or_env(self.task, self.tasks)
    }
}

/// Task `index` of `count`: owns the units `index, index + count, ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSlice {
    pub index: usize,
    pub count: usize,
}

/// The most tasks one job may be split into.
pub const MAX_TASKS: usize = 100_000;

impl TaskSlice {
    /// One task doing all of the work.
    pub const WHOLE: TaskSlice = TaskSlice { index: 0, count: 1 };

    /// Whether this task does unit `unit` (shard, part) of the work.
    pub fn owns(&self, unit: usize) -> bool {
        unit % self.count == self.index
    }

    /// Whether this is one of several tasks.
    pub fn is_split(&self) -> bool {
        self.count > 1
    }

    /// The task from `--task`/`--tasks`, else from Slurm's job array
    /// (`SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN`, of
    /// `SLURM_ARRAY_TASK_COUNT`), else from a launcher's rank and size, else
    /// the whole job.
    pub fn from_flags_or_env(task: Option<usize>, tasks: Option<usize>) -> Result<Self> {
        Self::from_flags_or(task, tasks, |name| std::env::var(name).ok())
    }

    /// [`TaskSlice::from_flags_or_env`] reading variables through `var`.
    pub fn from_flags_or(
        task: Option<usize>,
        tasks: Option<usize>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let slice = match (task, tasks) {
            (Some(index), Some(count)) => TaskSlice { index, count },
            (None, Some(count)) => {
                return Err(PipelineError::config(format!(
                    "--tasks {count} needs --task I (0 to {})",
                    count.saturating_sub(1)
                )));
            }
            (Some(index), None) => {
                return Err(PipelineError::config(format!(
                    "--task {index} needs --tasks N"
                )));
            }
            (None, None) => match job_array(&var) {
                Some(slice) => slice?,
                None => match launched_from(&var) {
                    Some(l) => TaskSlice {
                        index: l.rank,
                        count: l.size,
                    },
                    None => TaskSlice::WHOLE,
                },
            },
        };
        if !(1..=MAX_TASKS).contains(&slice.count) {
            return Err(PipelineError::config(format!(
                "--tasks {}: must be 1 to {MAX_TASKS}",
                slice.count
            )));
        }
        if slice.index >= slice.count {
            return Err(PipelineError::config(format!(
                "--task {}: must be below --tasks {} (tasks count from 0)",
                slice.index, slice.count
            )));
        }
        Ok(slice)
    }
}

/// The units of work (files) still missing, named for a message: the first
/// ten, then how many more.
pub fn first_ten(names: &[String]) -> String {
    let mut text: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
    let more = format!("and {} more", names.len().saturating_sub(10));
    if names.len() > 10 {
        text.push(&more);
    }
    text.join(", ")
}

/// Slurm's job-array task, when this process is one.
fn job_array(var: &impl Fn(&str) -> Option<String>) -> Option<Result<TaskSlice>> {
    let id = var("SLURM_ARRAY_TASK_ID")?;
    let number = |name: &str| -> Result<usize> {
        let text = var(name).ok_or_else(|| {
            PipelineError::config(format!("SLURM_ARRAY_TASK_ID is set but {name} is not"))
        })?;
        text.trim()
            .parse()
            .map_err(|_| PipelineError::config(format!("{name}={text:?} is not a task number")))
    };
    Some((|| {
        let id: usize = id.trim().parse().map_err(|_| {
            PipelineError::config(format!("SLURM_ARRAY_TASK_ID={id:?} is not a task number"))
        })?;
        let min = number("SLURM_ARRAY_TASK_MIN")?;
        let count = number("SLURM_ARRAY_TASK_COUNT")?;
        // `--array=1-4` numbers tasks 1 to 4; `--array=0-6:2` would leave
        // gaps, which the count cannot describe.
        let max = number("SLURM_ARRAY_TASK_MAX")?;
        if max + 1 - min != count {
            return Err(PipelineError::config(format!(
                "the job array {min}-{max} has gaps ({count} tasks); submit it as --array=0-{}",
                count - 1
            )));
        }
        Ok(TaskSlice {
            index: id - min,
            count,
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_open_mpi_and_pmix_and_nothing_without_a_launcher() {
        let open_mpi = launched_from(env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ]))
        .unwrap();
        assert_eq!(
            (open_mpi.rank, open_mpi.size, open_mpi.local_size),
            (1, 4, Some(2))
        );
        let pmix = launched_from(env(&[("PMIX_RANK", "3"), ("SLURM_NTASKS", "8")])).unwrap();
        assert_eq!((pmix.rank, pmix.size), (3, 8));
        assert_eq!(launched_from(env(&[("SLURM_PROCID", "0")])), None);
    }

    #[test]
    fn tasks_from_flags_then_the_job_array_then_the_launcher() {
        let none = env(&[]);
        assert_eq!(
            TaskSlice::from_flags_or(None, None, &none).unwrap(),
            TaskSlice::WHOLE
        );
        let flags = TaskSlice::from_flags_or(Some(1), Some(3), &none).unwrap();
        assert_eq!(flags, TaskSlice { index: 1, count: 3 });
        assert!(flags.owns(4) && !flags.owns(3));
        let array = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("OMPI_COMM_WORLD_RANK", "0"),
        ]);
        let from_array = TaskSlice::from_flags_or(None, None, &array).unwrap();
        assert_eq!(from_array, TaskSlice { index: 2, count: 4 });
        let mpi = env(&[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")]);
        let from_ranks = TaskSlice::from_flags_or(None, None, &mpi).unwrap();
        assert_eq!(from_ranks, TaskSlice { index: 1, count: 2 });
        for (task, tasks, message) in [
            (Some(2), Some(2), "must be below"),
            (None, Some(2), "needs --task"),
            (Some(0), Some(0), "must be 1 to"),
        ] {
            let err = TaskSlice::from_flags_or(task, tasks, &none)
                .unwrap_err()
                .to_string();
            assert!(err.contains(message), "{err}");
        }
        let gaps = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        let err = TaskSlice::from_flags_or(None, None, &gaps)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gaps"), "{err}");
    }
}
