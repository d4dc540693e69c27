//! `relu(batch_norm(x))` in training mode as one autodiff op on the CPU
//! (flex), computed on the host across the cores.
//!
//! burn's `batch_norm_train` on flex is a dozen element-wise ops forward
//! (a channel-swapping copy, two means, the normalisation) and about twenty
//! backward, each a full pass over the activation on one thread, and the
//! ReLU after it two more. The residual blocks apply batch norm and ReLU
//! three times each, so at the paper's width this was the largest serial
//! part of a training step. Here the forward pass is two passes over `x`
//! (channel statistics, then the output) and the backward pass two (the
//! sums of the output gradient, then the input gradient), each split over
//! channels or over `[channel, batch]` runs.
//!
//! Semantics are burn's `BatchNorm` in training mode followed by `relu`:
//! batch statistics with the biased variance, `y = relu((x - mean) /
//! sqrt(var + eps) * gamma + beta)`, and the running statistics updated as
//! `(1 - momentum) * running + momentum * batch`. Other devices, inference,
//! and frozen layers take `relu(norm.forward(x))` unchanged.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, BackendTypes, Flex};
use burn::nn::BatchNorm;
use burn::tensor::activation::relu;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use crate::flex::host_values;
use crate::host::buffers::parallel_filled;

type FlexAd = Autodiff<Flex>;
type AdPrimitive = <FlexAd as BackendTypes>::FloatTensorPrimitive;

/// `relu(norm.forward(x))` for `x` `[batch, channels, ...]`, through the
/// fused op when `x` is an f32 flex autodiff tensor and `norm` trains.
pub fn batch_norm_relu<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    if !training || x.dtype() != DType::F32 || D < 2 {
        return relu(norm.forward(x));
    }
    let (Ok(x_ad), Ok(gamma), Ok(beta)) = (
        x.clone().try_into_primitive::<FlexAd>(),
        norm.gamma.val().try_into_primitive::<FlexAd>(),
        norm.beta.val().try_into_primitive::<FlexAd>(),
    ) else {
        return relu(norm.forward(x));
    };
    let device = x.device();
    let (y, stats) = norm_relu_op(x_ad, gamma, beta, norm.epsilon);
    // The running statistics, as burn's BatchNorm updates them.
    let momentum = norm.momentum;
    let update = |running: &burn::module::RunningState<Tensor<1>>, batch: Vec<f32>| {
        let channels = batch.len();
        let batch = Tensor::<1>::from_data(TensorData::new(batch, [channels]), &device);
        let value = running
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.mul_scalar(momentum));
        running.update(value.detach());
    };
    update(&norm.running_mean, stats.mean);
    update(&norm.running_var, stats.variance);
    Tensor::<D>::from_primitive::<FlexAd>(y)
}

/// Per-channel batch statistics: mean and biased variance.
#[derive(Debug, Clone)]
struct ChannelStats {
    mean: Vec<f32>,
    variance: Vec<f32>,
    /// Values per channel over all ranks.
    count: f64,
}

/// The input as `[batch, channels, samples]`, contiguous.
fn dims3(x: &FlexTensor) -> [usize; 3] {
    let shape = x.layout().shape();
    let dims: Vec<usize> = (0..shape.num_dims()).map(|i| shape[i]).collect();
    [dims[0], dims[1], dims[2..].iter().product()]
}

/// Sum of `values` with 16 independent lanes (vectorised), in f64 at the end.
fn lane_sum(values: &[f32], term: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += term(v);
        }
    }
    let tail: f64 = rest.iter().map(|&v| term(v) as f64).sum();
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail
}

/// Mean and biased variance of every channel of `x` `[batch, channels,
/// samples]` (two passes: the mean, then the centred squares), over the
/// values of every rank ([`crate::ranks`]; this process's alone by default).
fn channel_stats(x: &[f32], [batch, channels, samples]: [usize; 3]) -> ChannelStats {
    let runs = |c: usize| (0..batch).map(move |n| &x[(n * channels + c) * samples..][..samples]);
    // Per channel the sum of its values, then the value count.
    let mut sums: Vec<f64> = (0..channels)
        .into_par_iter()
        .map(|c| runs(c).map(|run| lane_sum(run, |v| v)).sum::<f64>())
        .collect();
    sums.push((batch * samples) as f64);
    crate::ranks::sum_over_ranks(&mut sums);
    let count = sums[channels];
    let mean: Vec<f32> = sums[..channels].iter().map(|&s| (s / count) as f32).collect();
    let mut squares: Vec<f64> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let m = mean[c];
            runs(c).map(|run| lane_sum(run, |v| (v - m) * (v - m))).sum::<f64>()
        })
        .collect();
    crate::ranks::sum_over_ranks(&mut squares);
    let variance = squares.iter().map(|&s| (s / count) as f32).collect();
    ChannelStats { mean, variance, count }
}

/// Per channel, `(scale, shift)` with `normalised * gamma + beta = x *
/// scale + shift`, and `1 / sqrt(var + eps)`.
fn affine(stats: &ChannelStats, gamma: &[f32], beta: &[f32], epsilon: f64) -> Vec<[f32; 3]> {
    (0..gamma.len())
        .map(|c| {
            let inv_std = (1.0 / (stats.variance[c] as f64 + epsilon).sqrt()) as f32;
            let scale = gamma[c] * inv_std;
            [scale, beta[c] - stats.mean[c] * scale, inv_std]
        })
        .collect()
}

/// `relu(x * scale + shift)` per channel.
fn forward(x: &[f32], dims: [usize; 3], coefficients: &[[f32; 3]]) -> Vec<f32> {
    let [_, channels, samples] = dims;
    // SAFETY: each run of `samples` values is written whole.
    unsafe {
        parallel_filled(x.len(), samples, |run, y| {
            let [scale, shift, _] = coefficients[run % channels];
            let x = &x[run * samples..(run + 1) * samples];
            for (y, &x) in y.iter_mut().zip(x) {
                y.write((x * scale + shift).max(0.0));
            }
        })
    }
}

/// The gradients of `relu(batch_norm(x))`: `(dx, dgamma, dbeta)`.
///
/// With `xhat = (x - mean) * inv_std` and `g` the output gradient where the
/// ReLU passed (`xhat * gamma + beta > 0`), zero elsewhere: `dbeta = sum
/// g`, `dgamma = sum g * xhat`, and `dx = gamma * inv_std * (g - dbeta / N
/// - xhat * dgamma / N)`, sums over the `N = batch * samples` values of a
/// channel. Across ranks `dx` takes the sums over every rank's values (the
/// output depends on them all through the statistics) while `dgamma` and
/// `dbeta` stay this rank's, as every parameter gradient is, to be averaged
/// with the others.
fn backward(
    x: &[f32],
    grad: &[f32],
    dims: [usize; 3],
    stats: &ChannelStats,
    gamma: &[f32],
    coefficients: &[[f32; 3]],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [batch, channels, samples] = dims;
    let passed = |x: f32, [scale, shift, _]: [f32; 3]| x * scale + shift > 0.0;
    let (dgamma, dbeta): (Vec<f64>, Vec<f64>) = (0..channels)
        .into_par_iter()
        .map(|c| {
            let (mean, k) = (stats.mean[c], coefficients[c]);
            let inv_std = k[2];
            let (mut dgamma, mut dbeta) = (0f64, 0f64);
            for n in 0..batch {
                let at = (n * channels + c) * samples;
                let (x, g) = (&x[at..at + samples], &grad[at..at + samples]);
                let mut lanes = [[0f32; 2]; 16];
                let chunks = x.chunks_exact(16).zip(g.chunks_exact(16));
                for (xs, gs) in chunks {
                    for ((lane, &x), &g) in lanes.iter_mut().zip(xs).zip(gs) {
                        let g = if passed(x, k) { g } else { 0.0 };
                        lane[0] += g * (x - mean) * inv_std;
                        lane[1] += g;
                    }
                }
                for lane in lanes {
                    dgamma += lane[0] as f64;
                    dbeta += lane[1] as f64;
                }
                let tail = samples - samples % 16;
                for (&x, &g) in x[tail..].iter().zip(&g[tail..]) {
                    let g = if passed(x, k) { g } else { 0.0 };
                    dgamma += (g * (x - mean) * inv_std) as f64;
                    dbeta += g as f64;
                }
            }
            (dgamma, dbeta)
        })
        .unzip();
    let mut global: Vec<f64> = dgamma.iter().chain(&dbeta).copied().collect();
    crate::ranks::sum_over_ranks(&mut global);
    let (global_dgamma, global_dbeta) = global.split_at(channels);
    let count = stats.count as f32;
    // SAFETY: each run of `samples` values is written whole.
    let dx = unsafe {
        parallel_filled(x.len(), samples, |run, dx| {
            let (x, g) = (
                &x[run * samples..(run + 1) * samples],
                &grad[run * samples..(run + 1) * samples],
            );
            let c = run % channels;
            let (mean, k) = (stats.mean[c], coefficients[c]);
            let inv_std = k[2];
            let (mean_g, mean_gx) = (global_dbeta[c] as f32 / count, global_dgamma[c] as f32 / count);
            let scale = gamma[c] * inv_std;
            for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                let xhat = (x - mean) * inv_std;
                let g = if passed(x, k) { g } else { 0.0 };
                dx.write(scale * (g - mean_g - xhat * mean_gx));
            }
        })
    };
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (dx, to_f32(dgamma), to_f32(dbeta))
}

/// The autodiff op's backward pass: parents `x`, `gamma`, `beta`.
#[derive(Debug)]
struct NormRelu;

impl Backward<Flex, 3> for NormRelu {
    /// The checkpointed `x`, gamma, the batch statistics and the per-channel
    /// coefficients of the forward pass.
    type State = (
        burn::backend::autodiff::NodeId,
        Vec<f32>,
        ChannelStats,
        Vec<[f32; 3]>,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (x_state, gamma, stats, coefficients) = ops.state;
        let x = checkpointer
            .retrieve_node_output::<FlexTensor>(x_state)
            .to_contiguous();
        let shape = x.layout().shape().clone();
        let dims = dims3(&x);
        let (dx, dgamma, dbeta) = backward(
            x.storage(),
            grad.storage(),
            dims,
            &stats,
            &gamma,
            &coefficients,
        );
        let channels = dims[1];
        if let Some(node) = node_gamma {
            let t = FlexTensor::from_data(TensorData::new(dgamma, [channels]));
            grads.register::<Flex>(node.id, t);
        }
        if let Some(node) = node_beta {
            let t = FlexTensor::from_data(TensorData::new(dbeta, [channels]));
            grads.register::<Flex>(node.id, t);
        }
        if let Some(node) = node_x {
            let t = FlexTensor::from_data(TensorData::new(dx, shape));
            grads.register::<Flex>(node.id, t);
        }
    }
}

/// `relu(batch_norm(x))` and the batch statistics.
fn norm_relu_op(
    x: AdPrimitive,
    gamma: AdPrimitive,
    beta: AdPrimitive,
    epsilon: f64,
) -> (AdPrimitive, ChannelStats) {
    let x_host = x.primitive().to_contiguous();
    let gamma_host = host_values(gamma.primitive());
    let beta_host = host_values(beta.primitive());
    let dims = dims3(&x_host);
    let stats = channel_stats(x_host.storage(), dims);
    let coefficients = affine(&stats, &gamma_host, &beta_host, epsilon);
    let y = forward(x_host.storage(), dims, &coefficients);
    let y = FlexTensor::from_data(TensorData::new(y, x_host.layout().shape().clone()));
    let out = match NormRelu
        .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            prep.finish((x_state, gamma_host, stats.clone(), coefficients), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    (out, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, Distribution, Tolerance};

    /// The fused op and `relu(BatchNorm::forward)` give the same output,
    /// the same gradients for x, gamma and beta, and the same running
    /// statistics; with odd sizes (runs not a multiple of 16 lanes) and a
    /// shifted, scaled input so the statistics are not trivial.
    #[test]
    fn fused_norm_relu_equals_burns_batch_norm_then_relu() {
        let device = Device::flex().autodiff();
        for shape in [[2, 5, 3, 4, 5], [3, 4, 2, 4, 4], [1, 7, 1, 1, 3]] {
            let x0 = Tensor::<5>::random(shape, Distribution::Normal(0.7, 2.0), &device).detach();
            let probe = Tensor::<5>::random(shape, Distribution::Default, &device).detach();
            let channels = shape[1];
            let gamma0 = Tensor::<1>::random([channels], Distribution::Normal(1.0, 0.5), &device);
            let beta0 = Tensor::<1>::random([channels], Distribution::Normal(0.0, 0.5), &device);
            let run = |fused: bool| {
                let mut norm = BatchNormConfig::new(channels).init(&device);
                norm.gamma = Param::from_tensor(gamma0.clone().detach());
                norm.beta = Param::from_tensor(beta0.clone().detach());
                let x = x0.clone().require_grad();
                // Two steps, so the running statistics compound.
                let mut y = None;
                for _ in 0..2 {
                    y = Some(if fused {
                        batch_norm_relu(&norm, x.clone())
                    } else {
                        relu(norm.forward(x.clone()))
                    });
                }
                let y = y.unwrap();
                let grads = (y.clone() * probe.clone()).sum().backward();
                [
                    y.inner().into_data(),
                    x.grad(&grads).unwrap().into_data(),
                    norm.gamma.val().grad(&grads).unwrap().into_data(),
                    norm.beta.val().grad(&grads).unwrap().into_data(),
                    norm.running_mean.value().into_data(),
                    norm.running_var.value().into_data(),
                ]
            };
            let tol = Tolerance::rel_abs(1e-4, 1e-5);
            // Output, dx, dgamma, dbeta, running mean, running variance.
            for (ours, burns) in run(true).iter().zip(run(false).iter()) {
                ours.assert_approx_eq::<f32>(burns, tol);
            }
        }
    }

    /// Off the training path (no autodiff) the layer is burn's inference
    /// batch norm with the running statistics, then ReLU.
    #[test]
    fn inference_uses_the_running_statistics() {
        let device = Device::flex();
        let norm = BatchNormConfig::new(3).init(&device);
        let x = Tensor::<5>::random([2, 3, 2, 2, 2], Distribution::Default, &device);
        batch_norm_relu(&norm, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(
                &relu(norm.forward(x)).into_data(),
                Tolerance::absolute(1e-6),
            );
    }
}
