//! 3D convolutions (and transposed ones) on the CPU (flex, with or without
//! autodiff), computed on the host: forward pass, input gradient and
//! weight gradient.
//!
//! The forward pass and the input gradient (a transposed convolution of the
//! output gradient by the same weight, and the other way round) are
//! [`super::host::convolve_channels_first`]: channels-last gathers times the
//! weight (`gemm`), written back channels first tile by tile, 200-270
//! GFLOP/s on two cores at this model's shapes where flex's own kernels
//! ran at 25-30. A convolution's input is transposed to channels last once:
//! the backward pass keeps that copy (instead of the input) for the weight
//! gradient's gathers. flex has no weight-gradient kernel of its own;
//! burn's default computes it as a convolution with batch and channels
//! swapped and the output gradient as the kernel, at 4-26 GFLOP/s. Here it
//! is a channels-last im2col of the input (the same gathers) times the
//! output gradient: one task per kernel row `(kz, ky)` where rows are wide
//! (up to 137 GFLOP/s at width 240), fixed groups of positions where they
//! are narrow. A transposed convolution's weight gradient is the same sum
//! with input and output gradient swapped; tiles of positions whose kernel
//! row reads only padding are skipped. The bias is part of the op: added
//! and summed for its gradient on all cores. Other devices take burn's
//! `conv3d` / `conv_transpose3d` unchanged.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, BackendTypes, Flex};
use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;
use std::cell::OnceCell;
use std::sync::Arc;

use crate::flex::{host_values, parents};
use super::geometry::{ConvGeometry, ConvKindGeometry as Geometry};
use super::host::convolve_channels_first;
use super::weight_grad::weight_gradient;
use crate::host::transpose::transpose_batched;

type FlexAd = Autodiff<Flex>;
type AdPrimitive = <FlexAd as BackendTypes>::FloatTensorPrimitive;

/// `conv3d(x, weight, bias, options)` (groups 1, dilation 1), with the
/// fast weight gradient where `x` and `weight` are flex autodiff tensors.
pub fn conv3d_fast_weight_grad(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<3>,
) -> Tensor<5> {
    let eligible = options.groups == 1 && options.dilation == [1, 1, 1];
    with_fast_weight_grad::<Conv>(x, weight, bias, options, eligible, conv3d)
}

/// `conv_transpose3d(x, weight, bias, options)` (groups 1, dilation 1, no
/// output padding), with the fast weight gradient on flex autodiff.
pub fn conv_transpose3d_fast_weight_grad(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<3>,
) -> Tensor<5> {
    let eligible =
        options.groups == 1 && options.dilation == [1, 1, 1] && options.padding_out == [0, 0, 0];
    with_fast_weight_grad::<ConvTranspose>(x, weight, bias, options, eligible, conv_transpose3d)
}

/// A kind of convolution: its forward pass, input gradient and weight
/// gradient on the host.
trait ConvKind: Send + Sync + std::fmt::Debug + 'static {
    type Options: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// What the backward pass keeps of the input.
    type Saved: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// The forward pass (plus `bias` per output channel, if any), and what
    /// the backward pass keeps of `x`.
    fn forward(
        x: FlexTensor,
        weight: &FlexTensor,
        bias: Option<&[f32]>,
        options: &Self::Options,
    ) -> (FlexTensor, Self::Saved);
    fn input_grad(
        saved: &Self::Saved,
        weight: &FlexTensor,
        grad: &OutputGrad,
        options: &Self::Options,
    ) -> FlexTensor;
    /// [`weight_gradient`] for this kind; `kernel` is the weight's `[kd, kh, kw]`.
    fn weight_grad(
        saved: &Self::Saved,
        grad: &OutputGrad,
        kernel: [usize; 3],
        options: &Self::Options,
    ) -> Vec<f32>;
}

/// An input `[B, C, D, H, W]` kept channels last (`[B, D, H, W, C]`): the
/// forward pass gathers from it and the weight gradient gathers from it
/// again, so it is transposed once.
#[derive(Debug, Clone)]
pub(crate) struct ChannelsLast {
    pub(crate) values: Arc<Vec<f32>>,
    /// The channels-first shape `[B, C, D, H, W]`.
    pub(crate) shape: [usize; 5],
}

impl ChannelsLast {
    fn new(x: &FlexTensor) -> Self {
        let x = x.to_contiguous();
        let shape: [usize; 5] = x.layout().shape().dims();
        let [b, c, d, h, w] = shape;
        let values = Arc::new(transpose_batched(x.storage(), [b, c, d * h * w]));
        Self { values, shape }
    }
}

/// The output gradient of the op, contiguous, with its channels-last copy
/// made at most once: a transposed convolution gathers from it for both
/// its input gradient and its weight gradient.
struct OutputGrad {
    first: FlexTensor,
    last: OnceCell<ChannelsLast>,
}

impl OutputGrad {
    fn new(grad: FlexTensor) -> Self {
        Self {
            first: grad.to_contiguous(),
            last: OnceCell::new(),
        }
    }

    fn channels_last(&self) -> &ChannelsLast {
        self.last.get_or_init(|| ChannelsLast::new(&self.first))
    }
}

#[derive(Debug)]
struct Conv;

impl ConvKind for Conv {
    type Options = ConvOptions<3>;
    type Saved = ChannelsLast;
    fn forward(
        x: FlexTensor,
        weight: &FlexTensor,
        bias: Option<&[f32]>,
        options: &Self::Options,
    ) -> (FlexTensor, ChannelsLast) {
        let x = ChannelsLast::new(&x);
        let [_, _, d, h, w] = x.shape;
        let [c_out, _, kd, kh, kw]: [usize; 5] = weight.layout().shape().dims();
        let output = [(d, kd, 0), (h, kh, 1), (w, kw, 2)].map(|(n, k, axis)| {
            let (begin, end) = options.padding[axis];
            (n + begin + end - k) / options.stride[axis] + 1
        });
        let y = host_convolution(
            &x,
            weight,
            Geometry::Forward,
            c_out,
            output,
            options.stride,
            options.padding_begin(),
            bias,
        );
        (y, x)
    }
    /// The transposed convolution of the output gradient by the same weight.
    fn input_grad(
        x: &ChannelsLast,
        weight: &FlexTensor,
        grad: &OutputGrad,
        options: &Self::Options,
    ) -> FlexTensor {
        let [_, c_in, d, h, w] = x.shape;
        host_convolution(
            grad.channels_last(),
            weight,
            Geometry::Transposed,
            c_in,
            [d, h, w],
            options.stride,
            options.padding_begin(),
            None,
        )
    }
    fn weight_grad(
        x: &ChannelsLast,
        grad: &OutputGrad,
        kernel: [usize; 3],
        options: &Self::Options,
    ) -> Vec<f32> {
        weight_gradient(
            x,
            &grad.first,
            kernel,
            options.stride,
            options.padding_begin(),
        )
    }
}

#[derive(Debug)]
struct ConvTranspose;

impl ConvKind for ConvTranspose {
    type Options = ConvTransposeOptions<3>;
    /// The input as it is: the weight gradient reads it channels first.
    type Saved = FlexTensor;
    fn forward(
        x: FlexTensor,
        weight: &FlexTensor,
        bias: Option<&[f32]>,
        options: &Self::Options,
    ) -> (FlexTensor, FlexTensor) {
        let [_, _, d, h, w]: [usize; 5] = x.layout().shape().dims();
        let [_, c_out, kd, kh, kw]: [usize; 5] = weight.layout().shape().dims();
        let output = [(d, kd, 0), (h, kh, 1), (w, kw, 2)].map(|(n, k, axis)| {
            ((n - 1) * options.stride[axis] + k + options.padding_out[axis])
                .saturating_sub(2 * options.padding[axis])
        });
        let y = host_convolution(
            &ChannelsLast::new(&x),
            weight,
            Geometry::Transposed,
            c_out,
            output,
            options.stride,
            options.padding,
            bias,
        );
        (y, x)
    }
    /// The convolution of the output gradient by the same weight, read as
    /// `[C_out, C_in, k..]` of that convolution.
    fn input_grad(
        x: &FlexTensor,
        weight: &FlexTensor,
        grad: &OutputGrad,
        options: &Self::Options,
    ) -> FlexTensor {
        let [_, c_in, d, h, w]: [usize; 5] = x.layout().shape().dims();
        host_convolution(
            grad.channels_last(),
            weight,
            Geometry::Forward,
            c_in,
            [d, h, w],
            options.stride,
            options.padding,
            None,
        )
    }
    /// Weight `[C_in, C_out, k..]`: the sum's "input" is the output
    /// gradient, and its "output gradient" is x.
    fn weight_grad(
        x: &FlexTensor,
        grad: &OutputGrad,
        kernel: [usize; 3],
        options: &Self::Options,
    ) -> Vec<f32> {
        weight_gradient(
            grad.channels_last(),
            x,
            kernel,
            options.stride,
            options.padding,
        )
    }
}

/// [`convolve_channels_first`] of a channels-last input by `weight` in
/// burn's layout for `kind`: the output `[B, channels_out, output..]`.
fn host_convolution(
    input: &ChannelsLast,
    weight: &FlexTensor,
    kind: Geometry,
    channels_out: usize,
    output: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    bias: Option<&[f32]>,
) -> FlexTensor {
    let weight = weight.to_contiguous();
    let [batch, channels_in, d, h, w] = input.shape;
    let [_, _, kd, kh, kw]: [usize; 5] = weight.layout().shape().dims();
    let geometry = ConvGeometry {
        kind,
        batch,
        input: [d, h, w],
        output,
        channels_in,
        channels_out,
        kernel: [kd, kh, kw],
        stride,
        padding,
    };
    let output_first = convolve_channels_first(&input.values, weight.storage(), bias, &geometry);
    let [od, oh, ow] = output;
    FlexTensor::from_data(TensorData::new(
        output_first,
        [batch, channels_out, od, oh, ow],
    ))
}

/// `K`'s convolution through the custom op where it applies (an eligible
/// f32 convolution of flex autodiff tensors), else `plain`. The bias is
/// the op's third parent: added to the output and summed for its gradient
/// on all cores (burn's broadcast add and its gradient's reduction ran on
/// the calling thread).
fn with_fast_weight_grad<K: ConvKind>(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    options: K::Options,
    eligible: bool,
    plain: fn(Tensor<5>, Tensor<5>, Option<Tensor<1>>, K::Options) -> Tensor<5>,
) -> Tensor<5> {
    if !eligible
        || x.dtype() != DType::F32
        || bias.as_ref().is_some_and(|b| b.dtype() != DType::F32)
    {
        return plain(x, weight, bias, options);
    }
    if let (Ok(x_ad), Ok(w_ad)) = (
        x.clone().try_into_primitive::<FlexAd>(),
        weight.clone().try_into_primitive::<FlexAd>(),
    ) {
        let y = match bias.clone().map(|b| b.try_into_primitive::<FlexAd>()) {
            None => fast_weight_grad_op::<K, 2>(x_ad, w_ad, None, options),
            Some(Ok(b_ad)) => fast_weight_grad_op::<K, 3>(x_ad, w_ad, Some(b_ad), options),
            Some(Err(_)) => return plain(x, weight, bias, options),
        };
        return Tensor::<5>::from_primitive::<FlexAd>(y);
    }
    if let (Ok(x_flex), Ok(w_flex)) = (
        x.clone().try_into_primitive::<Flex>(),
        weight.clone().try_into_primitive::<Flex>(),
    ) {
        // Inference (encoding, evaluation): the host forward pass alone.
        let bias = match bias.clone().map(|b| b.try_into_primitive::<Flex>()) {
            None => None,
            Some(Ok(b)) => Some(host_values(&b)),
            Some(Err(_)) => return plain(x, weight, bias, options),
        };
        let y = K::forward(x_flex, &w_flex, bias.as_deref(), &options).0;
        return Tensor::<5>::from_primitive::<Flex>(y);
    }
    plain(x, weight, bias, options)
}

/// The autodiff op: `K`'s forward pass, with [`ConvKind::weight_grad`]
/// and [`ConvKind::input_grad`] as its backward pass; parents `x`, the
/// weight and (`N = 3`) the bias.
#[derive(Debug)]
struct FastWeightGrad<K, const N: usize>(std::marker::PhantomData<K>);

impl<K: ConvKind, const N: usize> Backward<Flex, N> for FastWeightGrad<K, N> {
    type State = (K::Saved, NodeId, K::Options);

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = OutputGrad::new(grads.consume::<Flex>(&ops.node));
        let (x, weight_state, options) = ops.state;
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
        if let Some(Some(node)) = ops.parents.get(2) {
            let [batch, channels, ..]: [usize; 5] = grad.first.layout().shape().dims();
            let db = channel_sums(grad.first.storage(), batch, channels);
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(db, [channels])),
            );
        }
        if let Some(node) = &ops.parents[1] {
            let shape: [usize; 5] = weight.layout().shape().dims();
            let [_, _, kd, kh, kw] = shape;
            let dw = K::weight_grad(&x, &grad, [kd, kh, kw], &options);
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dw, shape)));
        }
        if let Some(node) = &ops.parents[0] {
            grads.register::<Flex>(node.id, K::input_grad(&x, &weight, &grad, &options));
        }
    }
}

/// `sum over b and positions of g[b, c, ..]` per channel of a contiguous
/// `[batch, channels, ..]` gradient: one task per channel, in f64, in a
/// fixed order.
fn channel_sums(g: &[f32], batch: usize, channels: usize) -> Vec<f32> {
    let run = g.len() / (batch * channels).max(1);
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = (0..batch)
                .map(|n| {
                    let at = (n * channels + c) * run;
                    g[at..at + run].iter().map(|&v| v as f64).sum::<f64>()
                })
                .sum();
            sum as f32
        })
        .collect()
}

fn fast_weight_grad_op<K: ConvKind, const N: usize>(
    x: AdPrimitive,
    weight: AdPrimitive,
    bias: Option<AdPrimitive>,
    options: K::Options,
) -> AdPrimitive {
    let nodes = parents::<N>(&x, &weight, bias.as_ref());
    let bias_values = bias.as_ref().map(|b| host_values(b.primitive()));
    let forward = || {
        K::forward(
            x.primitive().clone(),
            weight.primitive(),
            bias_values.as_deref(),
            &options,
        )
    };
    match FastWeightGrad::<K, N>(std::marker::PhantomData)
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            // The weight is checkpointed; of `x`, the backward pass keeps
            // what `K` saves (a convolution: its channels-last copy).
            let weight_state = prep.checkpoint(&weight);
            let (y, saved) = forward();
            prep.finish((saved, weight_state, options), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward().0),
    }
}

#[cfg(test)]
#[path = "autodiff_tests.rs"]
mod tests;
