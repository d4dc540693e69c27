//! What a launcher told this process: its rank and the job's size, from the
//! environment `mpirun` (Open MPI), a PMI launcher (MPICH's hydra, Slurm's
//! `srun --mpi=pmi2`) or PMIx (`srun --mpi=pmix`) sets.

/// This process's place in a launched job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub rank: usize,
    pub size: usize,
    /// Ranks on this node, where the launcher says.
    pub local_size: Option<usize>,
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
    let candidates: [(&str, &str, &str, &'static str); 3] = [
        (
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
            "OMPI_COMM_WORLD_*",
        ),
        ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_SIZE", "PMIX_*"),
        ("PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS", "PMI_*"),
    ];
    for (rank, size, local, source) in candidates {
        if let Some(r) = number(rank) {
            // PMIx does not always export a size; MPI itself will know.
            let size = number(size)
                .or_else(|| number("SLURM_NTASKS"))
                .unwrap_or(r + 1);
            let local_size = number(local).or_else(|| number("SLURM_NTASKS_PER_NODE"));
            return Some(Launched {
                rank: r,
                size,
                local_size,
                source,
            });
        }
    }
    None
}

/// Threads each rank's compute pool should use when the user gives none:
/// this machine's cores shared by the ranks on it.
pub fn default_threads(cores: usize, launched: Option<&Launched>) -> usize {
    let ranks_here = launched.and_then(|l| l.local_size).unwrap_or(1).max(1);
    (cores / ranks_here).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
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
        assert_eq!(default_threads(16, Some(&open_mpi)), 8);
        assert_eq!(
            default_threads(
                2,
                Some(&Launched {
                    local_size: Some(4),
                    ..open_mpi
                })
            ),
            1
        );
        assert_eq!(default_threads(2, None), 2);
    }
}
