//! What the kernels need to know when the model is trained data-parallel
//! across processes (ranks): where this process's samples sit in the
//! global batch, and how to sum per-channel statistics over all ranks.
//!
//! Both are set once per process by the training code (the model crate's
//! `distributed` module owns the communication); a single process leaves
//! them at their defaults (first sample 0, sums unchanged), which is
//! exactly the single-process computation.
//!
//! - Dropout masks hash a value's position in the *global* batch, so a run
//!   drops the same values whatever its rank count.
//! - Training batch norm sums its channel statistics, and in the backward
//!   pass the sums its input gradient needs, over all ranks (synchronised
//!   batch norm), so 2 ranks of batch b normalise as 1 rank of batch 2b.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A sum over ranks of each element, in place, the same on every rank.
pub type RankSum = Box<dyn Fn(&mut [f64]) + Send + Sync>;

static FIRST_SAMPLE: AtomicU64 = AtomicU64::new(0);
static SUM: OnceLock<RankSum> = OnceLock::new();

/// Sets the index, in the global batch, of this process's first sample.
pub fn set_first_sample(first: u64) {
    FIRST_SAMPLE.store(first, Ordering::Relaxed);
}

/// The index in the global batch of this process's first sample (0 alone).
pub fn first_sample() -> u64 {
    FIRST_SAMPLE.load(Ordering::Relaxed)
}

/// Installs the sum over ranks (once per process; later calls are ignored).
pub fn set_cross_rank_sum(sum: RankSum) {
    if SUM.set(sum).is_err() {
        tracing::debug!("the cross-rank sum was already set");
    }
}

/// Sums `values` over ranks in place; unchanged in a single process.
pub(crate) fn sum_over_ranks(values: &mut [f64]) {
    if let Some(sum) = SUM.get() {
        sum(values);
    }
}
