//! [`Collective`] over MPI's world communicator (rsmpi, Open MPI).

use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::environment::{Threading, Universe};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Collective;
use crate::error::{ModelError, Result};

/// The world communicator. MPI is initialised for serialised calls; the
/// lock makes every call here one at a time, whichever thread makes it.
pub struct MpiWorld {
    world: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
}

// SAFETY: the communicator is a handle that MPI allows any thread to use
// under `Threading::Serialized` as long as calls do not overlap, which the
// mutex guarantees.
unsafe impl Send for MpiWorld {}
unsafe impl Sync for MpiWorld {}

impl MpiWorld {
    /// Initialises MPI (`MPI_Init_thread`); the universe finalises it when
    /// dropped.
    pub fn init() -> Result<(Universe, Self)> {
        let Some((universe, threading)) = mpi::initialize_with_threading(Threading::Serialized)
        else {
            return Err(ModelError::Config(
                "MPI was already initialised in this process".into(),
            ));
        };
        if matches!(threading, Threading::Single | Threading::Funneled) {
            return Err(ModelError::Config(format!(
                "the MPI library offers thread level {threading:?}; serialised calls from several threads are needed"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok((
            universe,
            Self {
                world: Mutex::new(world),
                rank,
                size,
            },
        ))
    }

    fn with<R>(&self, f: impl FnOnce(&SimpleCommunicator) -> R) -> R {
        let world = self
            .world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&world)
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, values: &mut [f32]) {
        let send = values.to_vec();
        self.with(|world| world.all_reduce_into(&send[..], values, SystemOperation::sum()));
    }

    fn sum_f64(&self, values: &mut [f64]) {
        let send = values.to_vec();
        self.with(|world| world.all_reduce_into(&send[..], values, SystemOperation::sum()));
    }

    fn gather_u64(&self, value: u64) -> Vec<u64> {
        let mut all = vec![0u64; self.size];
        self.with(|world| world.all_gather_into(&value, &mut all[..]));
        all
    }

    fn broadcast_f32(&self, values: &mut [f32]) {
        self.with(|world| world.process_at_rank(0).broadcast_into(values));
    }

    fn abort(&self, code: i32) -> ! {
        // Not through the lock: a rank may abort while another thread of
        // it waits in a collective.
        // SAFETY: MPI_COMM_WORLD is valid between init and finalise, and
        // MPI_Abort may be called from any thread.
        unsafe { mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code) };
        std::process::exit(code)
    }
}
