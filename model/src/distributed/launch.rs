//! What a launcher told this process ([`videogpt_pipeline::tasks`] reads
//! it), and the thread count that follows from it.

pub use videogpt_pipeline::tasks::{Launched, launched};

/// Threads each rank's compute pool should use when the user gives none:
/// this machine's cores shared by the ranks on it.
pub fn default_threads(cores: usize, launched: Option<&Launched>) -> usize {
    let ranks_here = launched.and_then(|l| l.local_size).unwrap_or(1).max(1);
    (cores / ranks_here).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cores_are_shared_by_the_ranks_on_this_node() {
        let four_here = Launched {
            rank: 1,
            size: 8,
            local_size: Some(4),
            local_rank: Some(1),
            source: "test",
        };
        assert_eq!(default_threads(16, Some(&four_here)), 4);
        assert_eq!(default_threads(2, Some(&four_here)), 1);
        assert_eq!(default_threads(2, None), 2);
    }
}
