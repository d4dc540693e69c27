//! Dropout on the host: each value is kept or zeroed by a hash of the
//! step's seed and the value's index, so the mask costs a few integer
//! operations per value (vectorised), is never stored (the backward pass
//! recomputes it), and does not depend on threads. burn's own dropout draws
//! a random float per value from a locked generator, which was a quarter of
//! the prior's train step on the CPU.
//!
//! Like burn's `Dropout`, it acts only while training (on autodiff tensors);
//! its seed is drawn from burn's seeded generator, so a run's masks follow
//! its `(seed, step)`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, BackendTypes, Flex};
use burn::nn::Dropout;
use burn::tensor::{DType, Distribution, Tensor, TensorData};
use rayon::prelude::*;

type FlexAd = Autodiff<Flex>;
type AdPrimitive = <FlexAd as BackendTypes>::FloatTensorPrimitive;

/// Values per parallel task; the mask of value `i` depends on `i` only.
const CHUNK: usize = 1 << 14;

/// A dropout mask: value `i` is dropped where `hash(seed, first_index + i)
/// < threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutMask {
    pub probability: f32,
    pub seed: u64,
    /// The global index of the tensor's first value: this rank's first
    /// sample times the values per sample ([`crate::ranks`]), 0 alone.
    pub first_index: u64,
}

impl DropoutMask {
    /// `values[i] *= keep(start + i) / (1 - p)`.
    fn apply(&self, start: usize, values: &mut [f32]) {
        let (threshold, scale) = keep_rule(self.probability);
        let key = (self.seed ^ (self.seed >> 32)) as u32;
        let high = (self.seed >> 32) as u32;
        for (i, value) in values.iter_mut().enumerate() {
            let index = self.first_index + (start + i) as u64;
            let keep = mix32(key ^ mix32(index as u32 ^ high) ^ ((index >> 32) as u32)) >= threshold;
            *value = if keep { *value * scale } else { 0.0 };
        }
    }

    /// The mask applied to all of `values`, in parallel.
    pub fn apply_all(&self, values: &mut [f32]) {
        values.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, values)| self.apply(chunk * CHUNK, values));
    }
}

/// For dropout with `probability`: a value whose 32-bit hash is below the
/// threshold is dropped; kept values are scaled by `1 / (1 - probability)`.
pub(crate) fn keep_rule(probability: f32) -> (u32, f32) {
    let threshold = (f64::from(probability) * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32;
    (threshold, 1.0 / (1.0 - probability))
}

/// murmur3's 32-bit finaliser: every input bit reaches every output bit.
#[inline(always)]
pub(crate) fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^ (x >> 16)
}

/// `layer`'s dropout of `x`: on the host for f32 flex autodiff tensors,
/// burn's `Dropout::forward` elsewhere (which is the identity without
/// autodiff).
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if layer.prob == 0.0 || x.dtype() != DType::F32 {
        return layer.forward(x);
    }
    let device = x.device();
    let Ok(primitive) = x.clone().try_into_primitive::<FlexAd>() else {
        return layer.forward(x);
    };
    let dims = x.dims();
    let per_sample = dims[1..].iter().product::<usize>() as u64;
    let mask = DropoutMask {
        probability: layer.prob as f32,
        seed: draw_seed(&device),
        first_index: crate::ranks::first_sample() * per_sample,
    };
    Tensor::from_primitive::<FlexAd>(tracked_dropout(primitive, mask))
}

/// 46 random bits from the device's seeded generator.
pub(crate) fn draw_seed(device: &burn::tensor::Device) -> u64 {
    let values = Tensor::<1>::random([2], Distribution::Default, device).into_data();
    let values: Vec<f32> = values.convert::<f32>().try_into_vec().expect("f32 values");
    values.iter().fold(0u64, |seed, v| seed << 23 ^ u64::from(v.to_bits() & 0x7f_ffff))
}

fn masked(x: &FlexTensor, mask: DropoutMask) -> FlexTensor {
    let x = x.to_contiguous();
    let shape = x.layout().shape().clone();
    let mut values = x.storage::<f32>().to_vec();
    mask.apply_all(&mut values);
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[derive(Debug)]
struct HostDropout;

impl Backward<Flex, 1> for HostDropout {
    type State = DropoutMask;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, masked(&grad, ops.state));
        }
    }
}

fn tracked_dropout(x: AdPrimitive, mask: DropoutMask) -> AdPrimitive {
    match HostDropout.prepare::<NoCheckpointing>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let out = masked(x.primitive(), mask);
            prep.finish(mask, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(masked(x.primitive(), mask)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;
    use burn::tensor::Device;

    /// About `p` of the values dropped, the rest scaled; the gradient passes
    /// through the same mask; without autodiff, the identity.
    #[test]
    fn drops_its_share_and_the_gradient_follows_the_mask() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.2).init();
        let x = Tensor::<2>::ones([300, 500], &device).require_grad();
        let y = dropout(&layer, x.clone());
        let grads = y.clone().sum().backward();
        let values: Vec<f32> = y.inner().into_data().convert::<f32>().try_into_vec().unwrap();
        let gradient: Vec<f32> = x.grad(&grads).unwrap().into_data().convert::<f32>().try_into_vec().unwrap();
        assert_eq!(values, gradient, "the gradient of sum(dropout(1)) is the mask");
        let dropped = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
        assert!((dropped - 0.2).abs() < 0.005, "dropped {dropped}");
        assert!(values.iter().all(|&v| v == 0.0 || (v - 1.25).abs() < 1e-6));
        let plain = Tensor::<2>::ones([4, 5], &Device::flex());
        assert_eq!(
            dropout(&layer, plain.clone()).into_data().convert::<f32>().try_into_vec::<f32>().unwrap(),
            vec![1.0; 20]
        );
    }

    #[test]
    fn masks_depend_on_the_seed_and_not_on_the_split_into_tasks() {
        let mask = DropoutMask { probability: 0.5, seed: 99, first_index: 0 };
        let mut all = vec![1.0f32; 3 * CHUNK + 7];
        mask.apply_all(&mut all);
        let mut serial = vec![1.0f32; 3 * CHUNK + 7];
        mask.apply(0, &mut serial);
        assert_eq!(all, serial);
        let mut other = vec![1.0f32; 3 * CHUNK + 7];
        DropoutMask { seed: 100, ..mask }.apply_all(&mut other);
        let differ = all.iter().zip(&other).filter(|(a, b)| a != b).count() as f64 / all.len() as f64;
        assert!((differ - 0.5).abs() < 0.02, "{differ}");
    }
}
