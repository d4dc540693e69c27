//! The gradient all-reduce of data-parallel training, and the checksum that
//! checks every rank still holds the same parameters.
//!
//! Gradients are moved to one host buffer in the module's parameter order
//! (the same on every rank), summed over the ranks in buckets of
//! [`BUCKET`] values, divided by the rank count and put back: each rank then
//! steps its optimiser with the gradient of the global batch's mean loss,
//! as one process with the whole batch would. Gradient clipping, where the
//! optimiser has it, happens here on the averaged host values: a GPU's sum
//! of squares need not give the same bits twice, and every rank must clip
//! alike.

use std::time::{Duration, Instant};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
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

/// `grads` averaged over the ranks (unchanged with one rank), each
/// parameter's gradient then scaled to an L2 norm of at most `clip_norm`
/// (burn's `GradientClippingConfig::Norm`, per tensor) where given.
pub fn average_gradients<M: Module>(
    world: &dyn Collective,
    module: &M,
    mut grads: GradientsParams,
    clip_norm: Option<f32>,
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
    if let Some(threshold) = clip_norm {
        let mut rest = flat.as_mut_slice();
        for entry in &entries {
            let (values, tail) = rest.split_at_mut(entry.dims.iter().product());
            clip_by_norm(values, threshold);
            rest = tail;
        }
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

/// Replaces every float parameter and buffer with rank 0's.
struct FromRankZero<'a>(&'a dyn Collective);

impl ModuleMapper for FromRankZero<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let tracked = param.is_require_grad();
        param.map(|tensor| {
            let (dims, device) = (tensor.dims(), tensor.device());
            let mut values = crate::data::float_values(tensor.detach());
            self.0.broadcast_f32(&mut values);
            let tensor = Tensor::<D>::from_data(TensorData::new(values, dims), &device);
            if tracked {
                tensor.require_grad()
            } else {
                tensor
            }
        })
    }
}

/// `module` with rank 0's parameters and buffers on every rank (unchanged
/// alone): every rank starts from the same model even where initialisation
/// is not bit-reproducible (a GPU's random generator).
pub fn from_rank_zero<M: Module>(world: &dyn Collective, module: M) -> M {
    if world.size() == 1 {
        return module;
    }
    module.map(&mut FromRankZero(world))
}

/// burn's per-tensor clipping: `values * min(1, threshold / (|values| +
/// f32::MIN_POSITIVE))`, the norm summed in f64.
fn clip_by_norm(values: &mut [f32], threshold: f32) {
    let norm = values
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt() as f32;
    let coefficient = (threshold / (norm + f32::MIN_POSITIVE)).min(1.0);
    if coefficient < 1.0 {
        values.iter_mut().for_each(|v| *v *= coefficient);
    }
}

/// Every float parameter's values (the trainable ones only, or also the
/// buffers), in visit order.
struct Values {
    values: Vec<f32>,
    buffers: bool,
}

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.buffers || param.is_require_grad() {
            self.values.extend(crate::data::float_values(param.val()));
        }
    }
}

/// Which values [`check_ranks_agree`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compared {
    /// Parameters and buffers (running statistics, the EMA codebook).
    All,
    /// The trainable parameters only.
    Trainable,
}

fn values_of<M: Module>(module: &M, compared: Compared) -> Vec<f32> {
    let mut values = Values {
        values: Vec::new(),
        buffers: compared == Compared::All,
    };
    module.visit(&mut values);
    values.values
}

/// Every float parameter and buffer of `module`, concatenated in visit
/// order (the same order on every rank and in every checkpoint of the
/// model).
pub fn parameter_values<M: Module>(module: &M) -> Vec<f32> {
    values_of(module, Compared::All)
}

/// How many values [`Compared`] names (the gradient's size with
/// [`Compared::Trainable`]).
pub fn value_count<M: Module>(module: &M, compared: Compared) -> usize {
    values_of(module, compared).len()
}

/// FNV-1a over the bits of the values [`Compared`] names.
pub fn parameter_checksum<M: Module>(module: &M, compared: Compared) -> u64 {
    values_of(module, compared)
        .iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// Fails, naming `step`, unless every rank's parameters have the same bits.
pub fn check_ranks_agree<M: Module>(
    world: &dyn Collective,
    module: &M,
    compared: Compared,
    step: u64,
) -> Result<()> {
    if world.size() == 1 {
        return Ok(());
    }
    let sums = world.gather_u64(parameter_checksum(module, compared));
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
        fn broadcast_f32(&self, _: &mut [f32]) {}
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
        let (grads, stats) = average_gradients(&TwoIdenticalRanks, &layer, grads, None);
        assert_eq!(stats.values, 5 * 3 + 3);
        let after = crate::data::float_values(grads.get::<2>(layer.weight.id).unwrap());
        assert_eq!(before, after);
        assert!(grads.get::<1>(layer.bias.as_ref().unwrap().id).is_some());
        let err = check_ranks_agree(&TwoIdenticalRanks, &layer, Compared::All, 12)
            .unwrap_err()
            .to_string();
        assert!(err.contains("after step 12"), "{err}");
    }

    /// What trains before trains after, with the same values.
    struct Trained(Vec<(bool, Vec<f32>)>);

    impl ModuleVisitor for Trained {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push((
                param.is_require_grad(),
                crate::data::float_values(param.val()),
            ));
        }
    }

    #[test]
    fn rank_zeros_model_keeps_every_value_and_what_trains() {
        let device = Device::flex().autodiff();
        let config = crate::prior::PriorConfig::preset("tiny", [2, 4, 4], 16).unwrap();
        let prior = crate::backend::init_with_seed(&device, 0, || config.init(None, &device));
        let mut before = Trained(Vec::new());
        prior.visit(&mut before);
        let mapped = from_rank_zero(&TwoIdenticalRanks, prior);
        let mut after = Trained(Vec::new());
        mapped.visit(&mut after);
        assert_eq!(before.0, after.0);
        assert!(after.0.iter().any(|(trains, _)| *trains));
    }
}
