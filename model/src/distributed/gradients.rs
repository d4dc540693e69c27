//! The gradient all-reduce of data-parallel training, and the checksum that
//! checks every rank still holds the same parameters.
//!
//! Gradients are moved to one host buffer in the module's parameter order
//! (the same on every rank), summed over the ranks in buckets of
//! [`BUCKET`] values, divided by the rank count and put back: each rank then
//! steps its optimiser with the gradient of the global batch's mean loss,
//! as one process with the whole batch would.

use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::Collective;
use crate::error::{ModelError, Result};

/// Values per all-reduce call (16 MiB of f32): large enough to reach the
/// network's bandwidth, small enough to bound the copy each call makes.
pub const BUCKET: usize = 1 << 22;

/// What one all-reduce of the gradients moved and how long it took.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllReduceStats {
    pub values: usize,
    pub elapsed: Duration,
}

/// One gradient taken out of the container.
struct Entry {
    id: ParamId,
    dims: Vec<usize>,
    device: Device,
}

/// Takes every parameter's gradient, in visit order, into one buffer.
struct Gather<'a> {
    grads: &'a mut GradientsParams,
    flat: Vec<f32>,
    entries: Vec<Entry>,
}

impl ModuleVisitor for Gather<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let entry = Entry {
                id: param.id,
                dims: grad.dims().to_vec(),
                device: grad.device(),
            };
            self.flat.extend(crate::data::float_values(grad));
            self.entries.push(entry);
        }
    }
}

/// Puts the summed gradients back, in the same order.
struct Scatter<'a> {
    grads: &'a mut GradientsParams,
    flat: &'a [f32],
    entries: std::slice::Iter<'a, Entry>,
}

impl ModuleVisitor for Scatter<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(entry) = self.entries.as_slice().first() else {
            return;
        };
        if entry.id != param.id {
            return;
        }
        self.entries.next();
        let len: usize = entry.dims.iter().product();
        let (values, rest) = self.flat.split_at(len);
        self.flat = rest;
        let dims: [usize; D] = entry.dims.clone().try_into().expect("the gradient's rank");
        let tensor = Tensor::<D>::from_data(TensorData::new(values.to_vec(), dims), &entry.device);
        self.grads.register(entry.id, tensor);
    }
}

/// `grads` averaged over the ranks (unchanged with one rank).
pub fn average_gradients<M: Module>(
    world: &dyn Collective,
    module: &M,
    mut grads: GradientsParams,
) -> (GradientsParams, AllReduceStats) {
    if world.size() == 1 {
        return (grads, AllReduceStats::default());
    }
    let started = Instant::now();
    let mut gather = Gather {
        grads: &mut grads,
        flat: Vec::new(),
        entries: Vec::new(),
    };
    module.visit(&mut gather);
    let (mut flat, entries) = (gather.flat, gather.entries);
    for bucket in flat.chunks_mut(BUCKET) {
        world.sum_f32(bucket);
    }
    let scale = 1.0 / world.size() as f32;
    for v in &mut flat {
        *v *= scale;
    }
    module.visit(&mut Scatter {
        grads: &mut grads,
        flat: &flat,
        entries: entries.iter(),
    });
    let stats = AllReduceStats {
        values: flat.len(),
        elapsed: started.elapsed(),
    };
    (grads, stats)
}

/// Every float parameter's values, in visit order.
struct Values(Vec<f32>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.extend(crate::data::float_values(param.val()));
    }
}

/// Every float parameter of `module`, concatenated in visit order (the same
/// order on every rank and in every checkpoint of the model).
pub fn parameter_values<M: Module>(module: &M) -> Vec<f32> {
    let mut values = Values(Vec::new());
    module.visit(&mut values);
    values.0
}

/// FNV-1a over the bits of every float parameter.
pub fn parameter_checksum<M: Module>(module: &M) -> u64 {
    parameter_values(module)
        .iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// Fails, naming `step`, unless every rank's parameters have the same bits.
pub fn check_ranks_agree<M: Module>(world: &dyn Collective, module: &M, step: u64) -> Result<()> {
    if world.size() == 1 {
        return Ok(());
    }
    let sums = world.gather_u64(parameter_checksum(module));
    if sums.iter().all(|&s| s == sums[0]) {
        return Ok(());
    }
    let listed: Vec<String> = sums
        .iter()
        .enumerate()
        .map(|(r, s)| format!("rank {r}: {s:016x}"))
        .collect();
    Err(ModelError::Config(format!(
        "the ranks' parameters differ after step {step} ({}); data-parallel training must keep them identical",
        listed.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    /// Two ranks simulated in one process: the sum doubles every value.
    struct TwoIdenticalRanks;

    impl Collective for TwoIdenticalRanks {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn sum_f32(&self, values: &mut [f32]) {
            values.iter_mut().for_each(|v| *v *= 2.0);
        }
        fn sum_f64(&self, values: &mut [f64]) {
            values.iter_mut().for_each(|v| *v *= 2.0);
        }
        fn gather_u64(&self, value: u64) -> Vec<u64> {
            vec![value, value ^ 1]
        }
        fn barrier(&self) {}
        fn abort(&self, code: i32) -> ! {
            panic!("abort {code}")
        }
    }

    /// Averaging two equal gradients gives them back, every parameter in
    /// its place; differing checksums name the step.
    #[test]
    fn the_average_of_equal_gradients_is_the_gradient() {
        let device = Device::flex().autodiff();
        let layer: Linear = LinearConfig::new(5, 3).init(&device);
        let x = Tensor::<2>::ones([4, 5], &device);
        let loss = layer.forward(x).square().sum();
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let before = crate::data::float_values(grads.get::<2>(layer.weight.id).unwrap());
        let (grads, stats) = average_gradients(&TwoIdenticalRanks, &layer, grads);
        assert_eq!(stats.values, 5 * 3 + 3);
        let after = crate::data::float_values(grads.get::<2>(layer.weight.id).unwrap());
        assert_eq!(before, after);
        assert!(grads.get::<1>(layer.bias.as_ref().unwrap().id).is_some());
        let err = check_ranks_agree(&TwoIdenticalRanks, &layer, 12)
            .unwrap_err()
            .to_string();
        assert!(err.contains("after step 12"), "{err}");
    }
}
