//! 3D convolutions (and transposed ones) on the CPU (flex, with or without
//! autodiff), computed on the host: forward pass, input gradient and
//! weight gradient.
//!
//! The forward pass and the input gradient (a transposed convolution of the
//! output gradient by the same weight, and the other way round) are
//! `host_conv::convolve_channels_first`: channels-last gathers times the
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

use super::flex_host::{host_values, parents};
use super::host_conv::{
    ConvGeometry, ConvKindGeometry as Geometry, convolve_channels_first, gather_row,
    parallel_filled, row_major_product, transpose_batched, with_scratch,
};

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
struct ChannelsLast {
    values: Arc<Vec<f32>>,
    /// The channels-first shape `[B, C, D, H, W]`.
    shape: [usize; 5],
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

/// Output positions per im2col tile.
const TILE: usize = 128;
/// Tile groups summed in parallel (each keeps its own `[A, C * taps]` sum).
const GROUPS: usize = 8;
/// At least this many tasks when tasks split the weight gradient's rows:
/// kernels with fewer `(tz, ty)` rows split the output channels too.
const ROW_TASKS: usize = 16;
/// Output positions per gather when tasks split the weight gradient's rows.
const ROW_TILE: usize = 256;
/// The narrowest `[kw * C]` run for which tasks split the weight gradient
/// by its rows rather than by positions.
const MIN_RUN: usize = 64;

/// `dW[a, c, k] = sum over b, p of O[b, a, p] * I[b, c, p * stride + k - padding]`
/// (zero outside `I`): the weight gradient `[A, C, kd, kh, kw]` of a
/// convolution with input `input` `[B, C, D, H, W]` and output gradient
/// `output_grad` `[B, A, Do, Ho, Wo]`.
fn weight_gradient(
    input: &ChannelsLast,
    output_grad: &FlexTensor,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> Vec<f32> {
    let output_grad = output_grad.to_contiguous();
    let [b, c, d, h, w] = input.shape;
    let [b2, a, od, oh, ow]: [usize; 5] = output_grad.layout().shape().dims();
    assert_eq!(b, b2, "batch of input and output gradient");
    // Channels last: an im2col row copies runs of C contiguous values.
    let x_last: &[f32] = &input.values;
    // The im2col rows are the gathers of the forward convolution.
    let geometry = ConvGeometry {
        kind: Geometry::Forward,
        batch: b,
        input: [d, h, w],
        output: [od, oh, ow],
        channels_in: c,
        channels_out: a,
        kernel,
        stride,
        padding,
    };
    let g: &[f32] = output_grad.storage();
    let [kd, kh, kw] = kernel;
    let by_rows = kd * kh > 1 && kw * c >= MIN_RUN;
    let sum = if by_rows {
        weight_gradient_by_rows(x_last, g, &geometry)
    } else {
        weight_gradient_by_positions(x_last, g, &geometry)
    };
    // [A, taps, C] -> [A, C, taps]
    transpose_batched(&sum, [a, kd * kh * kw, c])
}

/// The weight gradient as `[A, taps, C]`, one task per `(tz, ty)` kernel
/// row and block of output channels: each task sums over every position
/// into its own `[channels, kw * C]` block (small enough to stay in cache),
/// so there are no partial sums to add. Each block is summed in a fixed
/// order of positions, whatever the scheduling.
fn weight_gradient_by_rows(x_last: &[f32], g: &[f32], geometry: &ConvGeometry) -> Vec<f32> {
    let (c, a) = (geometry.channels_in, geometry.channels_out);
    let [kd, kh, kw] = geometry.kernel;
    let [od, oh, ow] = geometry.output;
    let positions = od * oh * ow;
    let run = kw * c;
    // A fixed split (not by the number of threads), so the sums do not
    // depend on the machine.
    let channel_blocks = ROW_TASKS.div_ceil(kd * kh).min(a.div_ceil(32)).max(1);
    let channels_per_task = a.div_ceil(channel_blocks);
    let tasks: Vec<(usize, usize, usize)> = (0..kd)
        .flat_map(|tz| (0..kh).map(move |ty| (tz, ty)))
        .flat_map(|(tz, ty)| {
            (0..a)
                .step_by(channels_per_task)
                .map(move |a0| (tz, ty, a0))
        })
        .collect();
    let blocks: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(tz, ty, a0)| {
            let channels = channels_per_task.min(a - a0);
            let mut acc = vec![0f32; channels * run];
            with_scratch(|col, _| {
                // Grown once per thread; every value read below is written first.
                col.resize(col.len().max(ROW_TILE * run), 0.0);
                for n in 0..geometry.batch {
                    for p0 in (0..positions).step_by(ROW_TILE) {
                        let end = p0 + ROW_TILE.min(positions - p0);
                        // Positions whose kernel row is all padding add
                        // nothing: the tile's product runs from the first
                        // to the last that read the input, if any.
                        let reads = |p: &usize| row_reads_input(geometry, *p, [tz, ty]);
                        let Some(lo) = (p0..end).find(reads) else {
                            continue;
                        };
                        let hi = (lo..end).rfind(reads).map_or(end, |p| p + 1);
                        gather_tile(
                            col,
                            x_last,
                            geometry,
                            [n, lo, hi - lo],
                            [tz, ty, 0],
                            [1, 1, kw],
                        );
                        let grad_rows = &g[(n * a + a0) * positions + lo..];
                        // acc[channels, run] += G[channels, lo..hi] x col[lo..hi, run]
                        row_major_product(
                            [channels, hi - lo, run],
                            &mut acc,
                            (grad_rows, positions),
                            col,
                            true,
                        );
                    }
                }
            });
            acc
        })
        .collect();
    // Scatter the blocks into [A, taps, C].
    let taps = kd * kh * kw;
    // SAFETY: the tasks of each block of channels cover every kernel row
    // `(tz, ty)`, and a row's `kw` taps are one run: every value is written.
    unsafe {
        parallel_filled(a * taps * c, taps * c, |ai, sum| {
            let a0 = ai / channels_per_task * channels_per_task;
            for (block, &(tz, ty, _)) in blocks
                .iter()
                .zip(&tasks)
                .filter(|(_, (_, _, task_a0))| *task_a0 == a0)
            {
                let tap = (tz * kh + ty) * kw;
                let at = (ai - a0) * run;
                sum[tap * c..tap * c + run].write_copy_of_slice(&block[at..at + run]);
            }
        })
    }
}

/// Whether kernel row `(tz, ty)` of output position `p` reads the input
/// rather than only its padding.
fn row_reads_input(geometry: &ConvGeometry, p: usize, [tz, ty]: [usize; 2]) -> bool {
    let [_, oh, ow] = geometry.output;
    let [d, h, _] = geometry.input;
    let inside = |out: usize, tap: usize, axis: usize, size: usize| {
        let at = (out * geometry.stride[axis] + tap) as isize - geometry.padding[axis] as isize;
        at >= 0 && (at as usize) < size
    };
    inside(p / (oh * ow), tz, 0, d) && inside((p / ow) % oh, ty, 1, h)
}

/// The weight gradient as `[A, taps, C]`, with the positions split into
/// [`GROUPS`] fixed groups, each summed in order into its own full
/// `[A, taps * C]` partial, and the partials added in group order: for
/// kernels too narrow to split by rows.
fn weight_gradient_by_positions(x_last: &[f32], g: &[f32], geometry: &ConvGeometry) -> Vec<f32> {
    let (c, a) = (geometry.channels_in, geometry.channels_out);
    let kernel = geometry.kernel;
    let [od, oh, ow] = geometry.output;
    let row = kernel.iter().product::<usize>() * c;
    let positions = od * oh * ow;
    let tiles: Vec<(usize, usize)> = (0..geometry.batch)
        .flat_map(|n| (0..positions).step_by(TILE).map(move |p| (n, p)))
        .collect();
    let group = tiles.len().div_ceil(GROUPS).max(1);
    let partials: Vec<Vec<f32>> = tiles
        .par_chunks(group)
        .map(|tiles| {
            let mut acc = vec![0f32; a * row];
            with_scratch(|col, _| {
                // Grown once per thread; every value read below is written first.
                col.resize(col.len().max(TILE * row), 0.0);
                for &(n, p0) in tiles {
                    let count = TILE.min(positions - p0);
                    gather_tile(col, x_last, geometry, [n, p0, count], [0; 3], kernel);
                    let grad_rows = &g[n * a * positions + p0..];
                    // acc[A, row] += G[A, count] x col[count, row]
                    row_major_product([a, count, row], &mut acc, (grad_rows, positions), col, true);
                }
            });
            acc
        })
        .collect();
    let mut sum = partials[0].clone();
    sum.par_chunks_mut(row).enumerate().for_each(|(ai, sum)| {
        for partial in &partials[1..] {
            sum.iter_mut()
                .zip(&partial[ai * row..(ai + 1) * row])
                .for_each(|(u, v)| *u += v);
        }
    });
    sum
}

/// Fills the first `count` rows of `col` with the gathers of output
/// positions `p0..p0 + count` of batch item `n`: per position, the kernel
/// taps `offset..offset + taps` (`taps` product times `C` values).
fn gather_tile(
    col: &mut [f32],
    x_last: &[f32],
    geometry: &ConvGeometry,
    [n, p0, count]: [usize; 3],
    offset: [usize; 3],
    taps: [usize; 3],
) {
    let [_, oh, ow] = geometry.output;
    let width = taps.iter().product::<usize>() * geometry.channels_in;
    for (t, row) in col[..count * width].chunks_exact_mut(width).enumerate() {
        let p = p0 + t;
        let out = [p / (oh * ow), (p / ow) % oh, p % ow];
        let first = [0, 1, 2].map(|axis| {
            (out[axis] * geometry.stride[axis] + offset[axis]) as isize
                - geometry.padding[axis] as isize
        });
        gather_row(row, x_last, geometry, n, first, taps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::{Device, Distribution, Tolerance};

    /// Runs `fast` and `reference` (each `(x, w, b) -> y`) from the same
    /// inputs and asserts that their outputs and the gradients of
    /// `sum(y^2)` with respect to x, w and b agree (sums of up to a few
    /// thousand products in another order); and that `fast` without
    /// autodiff gives the same output.
    fn assert_same_output_and_gradients(
        [x0, w0]: [Tensor<5>; 2],
        b0: Tensor<1>,
        fast: impl Fn(Tensor<5>, Tensor<5>, Tensor<1>) -> Tensor<5>,
        reference: impl Fn(Tensor<5>, Tensor<5>, Tensor<1>) -> Tensor<5>,
    ) {
        let run = |op: &dyn Fn(Tensor<5>, Tensor<5>, Tensor<1>) -> Tensor<5>| {
            let x = x0.clone().detach().require_grad();
            let w = Param::from_tensor(w0.clone().detach()).val();
            let b = Param::from_tensor(b0.clone().detach()).val();
            let y = op(x.clone(), w.clone(), b.clone());
            let seen = y.clone().inner();
            let grads = (y.clone() * y).sum().backward();
            let mut all = vec![
                seen.into_data(),
                x.grad(&grads).unwrap().into_data(),
                w.grad(&grads).unwrap().into_data(),
            ];
            // A convolution without a bias leaves b out of the graph.
            all.extend(b.grad(&grads).map(|g| g.into_data()));
            all
        };
        let tol = Tolerance::rel_abs(1e-5, 1e-4);
        let burns = run(&reference);
        let ours = run(&fast);
        assert_eq!(ours.len(), burns.len(), "a bias gradient on one side only");
        for (ours, burns) in ours.iter().zip(burns.iter()) {
            ours.assert_approx_eq::<f32>(burns, tol);
        }
        // Without autodiff (inference), the same output.
        let inference = fast(x0.clone().inner(), w0.clone().inner(), b0.clone().inner());
        inference
            .into_data()
            .assert_approx_eq::<f32>(&burns[0], tol);
    }

    #[test]
    fn gradients_equal_burns_conv3d() {
        let device = Device::flex().autodiff();
        // (x shape, c_out, kernel, stride, padding)
        for (xs, c_out, k, s, p) in [
            ([2, 3, 5, 6, 7], 4, 3, [1, 1, 1], [1, 1, 1]),
            ([2, 3, 6, 8, 8], 5, 4, [1, 2, 2], [1, 1, 1]),
            ([1, 4, 4, 5, 3], 2, 1, [1, 1, 1], [0, 0, 0]),
            ([1, 2, 6, 6, 6], 3, 4, [2, 2, 2], [0, 0, 0]),
            // Wide enough for the weight gradient by kernel rows, and two
            // blocks of output channels.
            ([1, 24, 4, 5, 6], 70, 3, [1, 1, 1], [1, 1, 1]),
            ([1, 16, 6, 8, 8], 5, 4, [2, 2, 2], [1, 1, 1]),
            // Tiles of one plane: products and weight-gradient tiles that
            // read only padding are skipped, forward and backward.
            ([1, 24, 4, 16, 16], 8, 3, [1, 1, 1], [1, 1, 1]),
            // One frame (the prior's frame encoder): a kernel-3 time axis
            // whose first and last taps read only padding, tiles across
            // batch items.
            ([2, 1, 1, 64, 64], 16, 3, [1, 1, 1], [1, 1, 1]),
            ([2, 16, 1, 64, 64], 16, 3, [1, 2, 2], [1, 1, 1]),
            ([2, 16, 1, 64, 64], 16, 1, [1, 2, 2], [0, 0, 0]),
            ([3, 16, 1, 16, 16], 16, 3, [1, 1, 1], [1, 1, 1]),
            ([2, 16, 3, 65, 65], 16, 3, [1, 2, 2], [0, 0, 0]),
            ([4, 1, 3, 65, 65], 16, 3, [1, 2, 2], [0, 0, 0]),
        ] {
            let x = Tensor::<5>::random(xs, Distribution::Default, &device);
            let w = Tensor::<5>::random([c_out, xs[1], k, k, k], Distribution::Default, &device);
            let b = Tensor::<1>::random([c_out], Distribution::Default, &device);
            let options = ConvOptions::new(s, p, [1, 1, 1], 1);
            assert_same_output_and_gradients(
                [x.clone(), w.clone()],
                b.clone(),
                |x, w, b| conv3d_fast_weight_grad(x, w, Some(b), options.clone()),
                |x, w, b| conv3d(x, w, Some(b), options.clone()),
            );
            assert_same_output_and_gradients(
                [x, w],
                b,
                |x, w, _| conv3d_fast_weight_grad(x, w, None, options.clone()),
                |x, w, _| conv3d(x, w, None, options.clone()),
            );
        }
    }

    #[test]
    fn transposed_gradients_equal_burns_conv_transpose3d() {
        let device = Device::flex().autodiff();
        // (x shape, c_out, stride, padding): the decoder's kernel 4, padding 1.
        for (xs, c_out, s, p) in [
            ([2, 3, 3, 4, 5], 4, [2, 2, 2], [1, 1, 1]),
            ([2, 4, 4, 3, 3], 1, [1, 2, 2], [1, 1, 1]),
            ([1, 2, 3, 3, 3], 3, [1, 1, 1], [0, 0, 0]),
            // The weight gradient by kernel rows (16 output channels x 4 taps).
            ([1, 3, 3, 4, 5], 16, [2, 2, 2], [1, 1, 1]),
        ] {
            let x = Tensor::<5>::random(xs, Distribution::Default, &device);
            let w = Tensor::<5>::random([xs[1], c_out, 4, 4, 4], Distribution::Default, &device);
            let b = Tensor::<1>::random([c_out], Distribution::Default, &device);
            let options = ConvTransposeOptions::new(s, p, [0, 0, 0], [1, 1, 1], 1);
            assert_same_output_and_gradients(
                [x, w],
                b,
                |x, w, b| conv_transpose3d_fast_weight_grad(x, w, Some(b), options.clone()),
                |x, w, b| conv_transpose3d(x, w, Some(b), options.clone()),
            );
        }
    }

    /// Splitting the weight gradient by kernel rows and by positions sums
    /// the same products (in another order), for any geometry either could
    /// be given: borders, strides, uneven kernels, blocks of channels.
    #[test]
    fn weight_gradient_by_rows_equals_by_positions() {
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 2_654_435_761 + seed) % 1000) as f32 / 1000.0 - 0.5)
                .collect()
        };
        // (batch, input, C, A, kernel, stride, padding)
        for (batch, input, c, a, kernel, stride, padding) in [
            (2, [4, 5, 6], 3, 70, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (1, [6, 8, 8], 5, 4, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
            (1, [5, 6, 7], 2, 3, [2, 3, 4], [1, 2, 1], [0, 1, 2]),
            // Tiles of one output plane (or line): by rows skips the tiles
            // whose kernel row reads only padding.
            (2, [4, 16, 16], 3, 5, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (1, [8, 32, 32], 2, 3, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
            (1, [2, 2, 256], 2, 3, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        ] {
            let output = [0, 1, 2].map(|i| (input[i] + 2 * padding[i] - kernel[i]) / stride[i] + 1);
            let geometry = ConvGeometry {
                kind: Geometry::Forward,
                batch,
                input,
                output,
                channels_in: c,
                channels_out: a,
                kernel,
                stride,
                padding,
            };
            let x_last = values(batch * input.iter().product::<usize>() * c, 1);
            let g = values(batch * a * output.iter().product::<usize>(), 7);
            let by_rows = weight_gradient_by_rows(&x_last, &g, &geometry);
            let by_positions = weight_gradient_by_positions(&x_last, &g, &geometry);
            assert_eq!(by_rows.len(), by_positions.len());
            for (i, (r, p)) in by_rows.iter().zip(&by_positions).enumerate() {
                assert!(
                    (r - p).abs() <= 1e-4 * (1.0 + p.abs()),
                    "{geometry:?}: element {i}: {r} by rows, {p} by positions"
                );
            }
        }
    }
}
