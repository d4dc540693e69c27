//! 3D convolutions (and transposed ones) on the CPU (flex, with or without
//! autodiff), computed on the host: forward pass, input gradient and
//! weight gradient.
//!
//! The forward pass and the input gradient (a transposed convolution of the
//! output gradient by the same weight, and the other way round) are
//! `host_conv::convolve`: channels-last gathers times the weight (`gemm`),
//! 75-105 GFLOP/s on two cores at this model's shapes where flex's own
//! kernels ran at 25-30. flex has no weight-gradient kernel of its own;
//! burn's default computes it as a convolution with batch and channels
//! swapped and the output gradient as the kernel, at 4-26 GFLOP/s. Here it
//! is a tiled channels-last im2col of the input (the same gathers) times
//! the output gradient, tiles spread over the cores; a transposed
//! convolution's weight gradient is the same sum with input and output
//! gradient swapped. Other devices take burn's `conv3d` /
//! `conv_transpose3d` unchanged.

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

use super::host_conv::{
    ConvGeometry, ConvKindGeometry as Geometry, convolve, gather_row, transpose_batched,
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

/// A kind of convolution: flex's forward pass and input gradient, and the
/// operands of its weight gradient.
trait ConvKind: Send + Sync + std::fmt::Debug + 'static {
    type Options: Clone + Send + Sync + std::fmt::Debug + 'static;
    fn forward(x: FlexTensor, weight: FlexTensor, options: Self::Options) -> FlexTensor;
    fn input_grad(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: Self::Options,
    ) -> FlexTensor;
    /// [`weight_gradient`] for this kind; `kernel` is the weight's `[kd, kh, kw]`.
    fn weight_grad(
        x: &FlexTensor,
        grad: &FlexTensor,
        kernel: [usize; 3],
        options: &Self::Options,
    ) -> Vec<f32>;
}

#[derive(Debug)]
struct Conv;

impl ConvKind for Conv {
    type Options = ConvOptions<3>;
    fn forward(x: FlexTensor, weight: FlexTensor, options: Self::Options) -> FlexTensor {
        let [_, _, d, h, w]: [usize; 5] = x.layout().shape().dims();
        let [c_out, _, kd, kh, kw]: [usize; 5] = weight.layout().shape().dims();
        let output = [(d, kd, 0), (h, kh, 1), (w, kw, 2)].map(|(n, k, axis)| {
            let (begin, end) = options.padding[axis];
            (n + begin + end - k) / options.stride[axis] + 1
        });
        host_convolution(
            &x,
            &weight,
            Geometry::Forward,
            c_out,
            output,
            options.stride,
            options.padding_begin(),
        )
    }
    /// The transposed convolution of the output gradient by the same weight.
    fn input_grad(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: Self::Options,
    ) -> FlexTensor {
        let [_, c_in, d, h, w]: [usize; 5] = x.layout().shape().dims();
        host_convolution(
            &grad,
            &weight,
            Geometry::Transposed,
            c_in,
            [d, h, w],
            options.stride,
            options.padding_begin(),
        )
    }
    fn weight_grad(
        x: &FlexTensor,
        grad: &FlexTensor,
        kernel: [usize; 3],
        options: &Self::Options,
    ) -> Vec<f32> {
        weight_gradient(x, grad, kernel, options.stride, options.padding_begin())
    }
}

#[derive(Debug)]
struct ConvTranspose;

impl ConvKind for ConvTranspose {
    type Options = ConvTransposeOptions<3>;
    fn forward(x: FlexTensor, weight: FlexTensor, options: Self::Options) -> FlexTensor {
        let [_, _, d, h, w]: [usize; 5] = x.layout().shape().dims();
        let [_, c_out, kd, kh, kw]: [usize; 5] = weight.layout().shape().dims();
        let output = [(d, kd, 0), (h, kh, 1), (w, kw, 2)].map(|(n, k, axis)| {
            ((n - 1) * options.stride[axis] + k + options.padding_out[axis])
                .saturating_sub(2 * options.padding[axis])
        });
        host_convolution(
            &x,
            &weight,
            Geometry::Transposed,
            c_out,
            output,
            options.stride,
            options.padding,
        )
    }
    /// The convolution of the output gradient by the same weight, read as
    /// `[C_out, C_in, k..]` of that convolution.
    fn input_grad(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: Self::Options,
    ) -> FlexTensor {
        let [_, c_in, d, h, w]: [usize; 5] = x.layout().shape().dims();
        host_convolution(
            &grad,
            &weight,
            Geometry::Forward,
            c_in,
            [d, h, w],
            options.stride,
            options.padding,
        )
    }
    /// Weight `[C_in, C_out, k..]`: the sum's "input" is the output
    /// gradient, and its "output gradient" is x.
    fn weight_grad(
        x: &FlexTensor,
        grad: &FlexTensor,
        kernel: [usize; 3],
        options: &Self::Options,
    ) -> Vec<f32> {
        weight_gradient(grad, x, kernel, options.stride, options.padding)
    }
}

/// [`convolve`] on channels-first flex tensors: `input` `[B, C, D, H, W]`
/// and `weight` in burn's layout for `kind`; the output `[B, channels_out,
/// output..]`.
fn host_convolution(
    input: &FlexTensor,
    weight: &FlexTensor,
    kind: Geometry,
    channels_out: usize,
    output: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> FlexTensor {
    let input = input.to_contiguous();
    let weight = weight.to_contiguous();
    let [batch, channels_in, d, h, w]: [usize; 5] = input.layout().shape().dims();
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
    let input_last = transpose_batched(input.storage(), [batch, channels_in, d * h * w]);
    let output_last = convolve(&input_last, weight.storage(), &geometry);
    let spatial = output.iter().product::<usize>();
    let output_first = transpose_batched(&output_last, [batch, spatial, channels_out]);
    let [od, oh, ow] = output;
    FlexTensor::from_data(TensorData::new(
        output_first,
        [batch, channels_out, od, oh, ow],
    ))
}

/// `K`'s convolution through the custom op where it applies (an eligible
/// f32 convolution of flex autodiff tensors), else `plain`. The bias is
/// added outside the op, so autodiff handles its gradient.
fn with_fast_weight_grad<K: ConvKind>(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    options: K::Options,
    eligible: bool,
    plain: fn(Tensor<5>, Tensor<5>, Option<Tensor<1>>, K::Options) -> Tensor<5>,
) -> Tensor<5> {
    if !eligible || x.dtype() != DType::F32 {
        return plain(x, weight, bias, options);
    }
    let y = if let (Ok(x_ad), Ok(w_ad)) = (
        x.clone().try_into_primitive::<FlexAd>(),
        weight.clone().try_into_primitive::<FlexAd>(),
    ) {
        Tensor::<5>::from_primitive::<FlexAd>(fast_weight_grad_op::<K>(x_ad, w_ad, options))
    } else if let (Ok(x_flex), Ok(w_flex)) = (
        x.clone().try_into_primitive::<Flex>(),
        weight.clone().try_into_primitive::<Flex>(),
    ) {
        // Inference (encoding, evaluation): the host forward pass alone.
        Tensor::<5>::from_primitive::<Flex>(K::forward(x_flex, w_flex, options))
    } else {
        return plain(x, weight, bias, options);
    };
    match bias {
        Some(b) => {
            let c = b.dims()[0];
            y + b.reshape([1, c, 1, 1, 1])
        }
        None => y,
    }
}

/// The autodiff op: `K`'s forward pass, with [`ConvKind::weight_grad`]
/// and [`ConvKind::input_grad`] as its backward pass.
#[derive(Debug)]
struct FastWeightGrad<K>(std::marker::PhantomData<K>);

impl<K: ConvKind> Backward<Flex, 2> for FastWeightGrad<K> {
    type State = (NodeId, NodeId, K::Options);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
        if let Some(node) = node_weight {
            let shape: [usize; 5] = weight.layout().shape().dims();
            let [_, _, kd, kh, kw] = shape;
            let dw = K::weight_grad(&x, &grad, [kd, kh, kw], &options);
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dw, shape)));
        }
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, K::input_grad(x, weight, grad, options));
        }
    }
}

fn fast_weight_grad_op<K: ConvKind>(
    x: AdPrimitive,
    weight: AdPrimitive,
    options: K::Options,
) -> AdPrimitive {
    let forward = |options| K::forward(x.primitive().clone(), weight.primitive().clone(), options);
    match FastWeightGrad::<K>(std::marker::PhantomData)
        .prepare::<NoCheckpointing>([x.node(), weight.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let weight_state = prep.checkpoint(&weight);
            let y = forward(options.clone());
            prep.finish((x_state, weight_state, options), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(options)),
    }
}

/// Output positions per im2col tile.
const TILE: usize = 128;
/// Tile groups summed in parallel (each keeps its own `[A, C * taps]` sum).
const GROUPS: usize = 8;

/// `dW[a, c, k] = sum over b, p of O[b, a, p] * I[b, c, p * stride + k - padding]`
/// (zero outside `I`): the weight gradient `[A, C, kd, kh, kw]` of a
/// convolution with input `input` `[B, C, D, H, W]` and output gradient
/// `output_grad` `[B, A, Do, Ho, Wo]`.
pub fn weight_gradient(
    input: &FlexTensor,
    output_grad: &FlexTensor,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> Vec<f32> {
    let input = input.to_contiguous();
    let output_grad = output_grad.to_contiguous();
    let [b, c, d, h, w]: [usize; 5] = input.layout().shape().dims();
    let [b2, a, od, oh, ow]: [usize; 5] = output_grad.layout().shape().dims();
    assert_eq!(b, b2, "batch of input and output gradient");
    let x: &[f32] = input.storage();
    let g: &[f32] = output_grad.storage();
    // Channels last: an im2col row copies runs of C contiguous values.
    let x_last = transpose_batched(x, [b, c, d * h * w]);
    let [kd, kh, kw] = kernel;
    let taps = kd * kh * kw;
    let row = taps * c;
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
    let positions = od * oh * ow;
    let tiles: Vec<(usize, usize)> = (0..b)
        .flat_map(|n| (0..positions).step_by(TILE).map(move |p| (n, p)))
        .collect();
    // A fixed split of the tiles into groups, each summed in order, and the
    // groups summed in order: the result does not depend on scheduling
    // (a resumed training run must repeat an uninterrupted one bit for bit).
    let group = tiles.len().div_ceil(GROUPS).max(1);
    let partials: Vec<Vec<f32>> = tiles
        .par_chunks(group)
        .map(|tiles| {
            let mut acc = vec![0f32; a * row];
            let mut col = vec![0f32; TILE * row];
            for &(n, p0) in tiles {
                let count = TILE.min(positions - p0);
                for t in 0..count {
                    let p = p0 + t;
                    let (zo, yo, xo) = (p / (oh * ow), (p / ow) % oh, p % ow);
                    let first = [0, 1, 2].map(|axis| {
                        ([zo, yo, xo][axis] * stride[axis]) as isize - padding[axis] as isize
                    });
                    gather_row(
                        &mut col[t * row..(t + 1) * row],
                        &x_last,
                        &geometry,
                        n,
                        first,
                        kernel,
                    );
                }
                // acc[A, row] += G[n, :, p0..p0 + count] (rows strided by `positions`) x col[count, row]
                // SAFETY: every pointer and stride stays inside its buffer.
                unsafe {
                    gemm::gemm(
                        a,
                        row,
                        count,
                        acc.as_mut_ptr(),
                        1,
                        row as isize,
                        true,
                        g.as_ptr().add(n * a * positions + p0),
                        1,
                        positions as isize,
                        col.as_ptr(),
                        1,
                        row as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
            acc
        })
        .collect();
    let mut sum = vec![0f32; a * row];
    for partial in partials {
        sum.iter_mut().zip(partial).for_each(|(u, v)| *u += v);
    }
    // [A, taps, C] -> [A, C, taps]
    let mut out = vec![0f32; a * c * taps];
    for ai in 0..a {
        for tap in 0..taps {
            for ch in 0..c {
                out[(ai * c + ch) * taps + tap] = sum[(ai * taps + tap) * c + ch];
            }
        }
    }
    out
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
            [
                seen.into_data(),
                x.grad(&grads).unwrap().into_data(),
                w.grad(&grads).unwrap().into_data(),
                b.grad(&grads).unwrap().into_data(),
            ]
        };
        let tol = Tolerance::rel_abs(1e-5, 1e-4);
        let burns = run(&reference);
        for (ours, burns) in run(&fast).iter().zip(burns.iter()) {
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
        ] {
            let x = Tensor::<5>::random(xs, Distribution::Default, &device);
            let w = Tensor::<5>::random([c_out, xs[1], k, k, k], Distribution::Default, &device);
            let b = Tensor::<1>::random([c_out], Distribution::Default, &device);
            let options = ConvOptions::new(s, p, [1, 1, 1], 1);
            assert_same_output_and_gradients(
                [x, w],
                b,
                |x, w, b| conv3d_fast_weight_grad(x, w, Some(b), options.clone()),
                |x, w, b| conv3d(x, w, Some(b), options.clone()),
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
}
