//! Data-parallel training across processes: one rank per device (one CPU
//! process or one GPU), launched by `mpirun` or Slurm's `srun`, the global
//! batch split over the ranks in order and the gradients averaged every
//! step (the Horovod model).
//!
//! The engine is MPI (Open MPI through rsmpi, cargo feature `mpi`), behind
//! [`Collective`]: sums of host buffers over ranks, one number gathered from
//! each rank, and an abort that ends every rank. A process started without
//! a launcher (or built without MPI) is rank 0 of 1 and every collective is
//! the identity. A burn-native collective can replace MPI by implementing
//! the trait.
//!
//! - [`gradients`]: the bucketed gradient all-reduce and the parameter
//!   checksum that checks the ranks still hold the same model.
//! - [`launch`]: what the launcher told this process (rank, ranks per node).

pub mod gradients;
pub mod launch;
#[cfg(feature = "mpi")]
mod mpi_world;

use std::sync::OnceLock;

/// Steps between checks that every rank holds the same parameters (also
/// checked before every checkpoint).
pub const AGREEMENT_EVERY: u64 = 100;

use crate::error::{ModelError, Result};

/// The collective operations data-parallel training needs.
pub trait Collective: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Element-wise sum over ranks, in place; every rank gets the same bits.
    fn sum_f32(&self, values: &mut [f32]);
    /// [`Collective::sum_f32`] for f64 values.
    fn sum_f64(&self, values: &mut [f64]);
    /// Every rank's `value`, in rank order.
    fn gather_u64(&self, value: u64) -> Vec<u64>;
    /// Rank 0's `values` on every rank, in place.
    fn broadcast_f32(&self, values: &mut [f32]);
    /// Ends every rank of the job with exit status `code`.
    fn abort(&self, code: i32) -> !;
}

/// One process on its own: rank 0 of 1.
struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) {}
    fn sum_f64(&self, _: &mut [f64]) {}
    fn gather_u64(&self, value: u64) -> Vec<u64> {
        vec![value]
    }
    fn broadcast_f32(&self, _: &mut [f32]) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

static WORLD: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// The ranks of this job ([`init`] sets them; a single process otherwise).
pub fn world() -> &'static dyn Collective {
    WORLD.get_or_init(|| Box::new(Single)).as_ref()
}

/// Keeps MPI initialised while it lives; dropping it (at the end of
/// `main`) finalises MPI.
pub struct WorldGuard {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

/// Joins the job's ranks when a launcher (`mpirun`, `srun`) started this
/// process, else stays a single process. Call once, first thing in `main`.
/// With more than one rank the kernels' batch norm sums its statistics
/// over the ranks from here on, and a panic on any rank ends the job.
pub fn init() -> Result<WorldGuard> {
    let Some(launched) = launch::launched() else {
        return Ok(WorldGuard {
            #[cfg(feature = "mpi")]
            _universe: None,
        });
    };
    #[cfg(feature = "mpi")]
    {
        let _ = launched;
        let (universe, mpi_ranks) = mpi_world::MpiWorld::init()?;
        let size = mpi_ranks.size();
        if WORLD.set(Box::new(mpi_ranks)).is_err() {
            return Err(ModelError::Config("distributed::init called twice".into()));
        }
        if size > 1 {
            videogpt_kernels::set_cross_rank_sum(Box::new(|values| world().sum_f64(values)));
            abort_job_on_panic();
        }
        Ok(WorldGuard {
            _universe: Some(universe),
        })
    }
    #[cfg(not(feature = "mpi"))]
    {
        if launched.size <= 1 {
            return Ok(WorldGuard {});
        }
        Err(ModelError::Config(format!(
            "started as rank {} of {} ({}), but this vgpt was built without MPI; \
             build it with `cargo build --release --features videogpt-model/mpi` \
             (`just build` does where Open MPI is installed)",
            launched.rank, launched.size, launched.source
        )))
    }
}

/// A panic on one rank prints as usual, then aborts every rank, so the
/// others do not wait for it in their next collective.
#[cfg(feature = "mpi")]
fn abort_job_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        world().abort(101);
    }));
}

/// How the global batch of `batch_size` samples is split: this rank's first
/// sample and count. Refuses a batch the ranks cannot share equally.
pub fn local_batch(world: &dyn Collective, batch_size: usize) -> Result<(usize, usize)> {
    let size = world.size();
    if batch_size % size != 0 {
        return Err(ModelError::Config(format!(
            "--batch-size {batch_size} is the global batch and must split evenly over the {size} ranks"
        )));
    }
    let per_rank = batch_size / size;
    Ok((world.rank() * per_rank, per_rank))
}

/// This process's share of a training run's global batch of `batch_size`
/// ([`local_batch`] of [`world`]): its first sample and count. Tells the
/// kernels where its samples sit in the global batch (dropout masks) and
/// logs the split when there are several ranks.
pub fn take_share(batch_size: usize) -> Result<(usize, usize)> {
    let world = world();
    let (first_sample, per_rank) = local_batch(world, batch_size)?;
    videogpt_kernels::set_first_sample(first_sample as u64);
    if world.size() > 1 {
        tracing::info!(
            rank = world.rank(),
            ranks = world.size(),
            first_sample,
            per_rank,
            "data-parallel"
        );
    }
    Ok((first_sample, per_rank))
}

/// The mean over ranks of each of `values` (metrics of the local batches).
pub fn mean_over_ranks(world: &dyn Collective, values: &mut [f64]) {
    world.sum_f64(values);
    let size = world.size() as f64;
    for v in values {
        *v /= size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_process_is_rank_zero_of_one_with_identity_collectives() {
        let single = Single;
        let mut values = [1.5f32, -2.0];
        single.sum_f32(&mut values);
        assert_eq!(values, [1.5, -2.0]);
        assert_eq!(single.gather_u64(7), vec![7]);
        assert_eq!(local_batch(&single, 6).unwrap(), (0, 6));
    }
}
