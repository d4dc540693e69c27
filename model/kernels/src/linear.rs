//! `Linear` layers (the attention projections) on the CPU (flex), computed
//! on the host: forward pass, input gradient and weight gradient.
//!
//! flex's matmul allocates its output with `FlexTensor::empty`, which
//! zeroes the buffer and then copies it into an aligned one, both on the
//! calling thread while the other cores wait; for the attention's `[rows,
//! 3c]` projections that was most of the serial time left in a VQ-VAE
//! step. Here each product is split into fixed tiles of rows that the cores
//! share (`gemm` per tile, as the convolutions), so results do not depend
//! on scheduling: `y = x W` and `dx = g W^T` by tiles of rows of `x`, and
//! `dW = x^T g` by blocks of rows of `W`, each summed over every row of
//! `x` in order. The bias is part of the op: added to the output and
//! summed for its gradient on all cores (burn's broadcast add and its
//! gradient's reduction ran on the calling thread). Other devices take
//! burn's `Linear::forward` unchanged.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, BackendTypes, Flex};
use burn::nn::Linear;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;
use std::mem::MaybeUninit;

use crate::flex::{host_values, parents};
use crate::host::buffers::parallel_filled;
use crate::host::product::{Strided, add_to_rows, product_into};

type FlexAd = Autodiff<Flex>;
type AdPrimitive = <FlexAd as BackendTypes>::FloatTensorPrimitive;

/// Rows of `x` per task. At reference-240's `[2048, 240]` projections
/// (a throwaway probe, median of 200 calls on 2 cores) the forward pass
/// takes the same time with 128 to 1024 rows per task, and the input
/// gradient, which packs `W^T` from strides once per task, 1.08-1.15 ms
/// with 512 against 1.24-1.31 ms with 128.
const ROW_TILE: usize = 512;
/// Rows of the weight gradient per task: 64 (4 tasks at width 240) took
/// 1.33-1.37 ms at the same shapes, 16 took 1.70-1.83 ms (`gemm` is
/// slower on blocks narrower than its 64-row micro-kernel tile).
const WEIGHT_ROWS: usize = 64;

/// `layer.forward(x)` for `x` `[rows, d_input]`, on the host where `x` and
/// the weight (and bias) are f32 flex tensors (with or without autodiff).
/// The bias is the op's third parent: added to each tile of the output and
/// summed for its gradient on all cores.
pub fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    let weight = layer.weight.val();
    let bias = layer.bias.as_ref().map(|b| b.val());
    if x.dtype() != DType::F32
        || weight.dtype() != DType::F32
        || bias.as_ref().is_some_and(|b| b.dtype() != DType::F32)
    {
        return layer.forward(x);
    }
    if let (Ok(x_ad), Ok(w_ad)) = (
        x.clone().try_into_primitive::<FlexAd>(),
        weight.clone().try_into_primitive::<FlexAd>(),
    ) {
        let y = match bias.map(|b| b.try_into_primitive::<FlexAd>()) {
            None => linear_op::<2>(x_ad, w_ad, None),
            Some(Ok(b_ad)) => linear_op::<3>(x_ad, w_ad, Some(b_ad)),
            Some(Err(_)) => return layer.forward(x),
        };
        return Tensor::<2>::from_primitive::<FlexAd>(y);
    }
    if let (Ok(x_flex), Ok(w_flex)) = (
        x.clone().try_into_primitive::<Flex>(),
        weight.try_into_primitive::<Flex>(),
    ) {
        let bias = match bias.map(|b| b.try_into_primitive::<Flex>()) {
            None => None,
            Some(Ok(b)) => Some(host_values(&b)),
            Some(Err(_)) => return layer.forward(x),
        };
        return Tensor::<2>::from_primitive::<Flex>(product(&x_flex, &w_flex, bias.as_deref()));
    }
    layer.forward(x)
}

/// `[rows, k]` and `[k, n]` contiguous, as `(values, [rows, k, n])`.
fn operands<'a>(a: &'a FlexTensor, b: &'a FlexTensor) -> (&'a [f32], &'a [f32], [usize; 3]) {
    let [rows, k]: [usize; 2] = a.layout().shape().dims();
    let [k2, n]: [usize; 2] = b.layout().shape().dims();
    assert_eq!(k, k2, "linear: inner dimensions");
    (a.storage(), b.storage(), [rows, k, n])
}

/// `a b` (plus `bias` on every row, if any) for `a` `[rows, k]`
/// (row-major) and `b` `[k, n]` (read in place): tiles of rows of `a`
/// shared by the cores.
fn tiled_product(
    a: &[f32],
    b: Strided,
    bias: Option<&[f32]>,
    [rows, k, n]: [usize; 3],
) -> Vec<f32> {
    let fill = |tile: usize, out: &mut [MaybeUninit<f32>]| {
        let m = out.len() / n;
        let a = Strided::row_major(&a[tile * ROW_TILE * k..], k);
        product_into([m, k, n], out, a, b);
        if let Some(bias) = bias {
            // SAFETY: the product just wrote all `m * n` values.
            let out = unsafe { out.assume_init_mut() };
            add_to_rows(out, bias);
        }
    };
    // SAFETY: each chunk is `m` whole rows of `n`, all written by `fill`.
    unsafe { parallel_filled(rows * n, ROW_TILE * n, fill) }
}

/// The sum of the rows of `g` `[rows, n]`: the bias gradient. Fixed blocks
/// of columns, each summed over every row in order, in f64.
fn column_sums(g: &[f32], n: usize) -> Vec<f32> {
    const COLUMNS: usize = 64;
    let mut sums = vec![0f32; n];
    sums.par_chunks_mut(COLUMNS)
        .enumerate()
        .for_each(|(block, sums)| {
            let j0 = block * COLUMNS;
            let mut acc = vec![0f64; sums.len()];
            for row in g.chunks_exact(n) {
                for (a, &v) in acc.iter_mut().zip(&row[j0..j0 + sums.len()]) {
                    *a += v as f64;
                }
            }
            sums.iter_mut().zip(acc).for_each(|(s, a)| *s = a as f32);
        });
    sums
}

/// `x w (+ bias)` on flex tensors `x` `[rows, k]` and `w` `[k, n]`.
fn product(x: &FlexTensor, w: &FlexTensor, bias: Option<&[f32]>) -> FlexTensor {
    let (x, w) = (x.to_contiguous(), w.to_contiguous());
    let (xs, ws, [rows, k, n]) = operands(&x, &w);
    FlexTensor::from_data(TensorData::new(
        tiled_product(xs, Strided::row_major(ws, n), bias, [rows, k, n]),
        [rows, n],
    ))
}

/// The gradients of `y = x w` given `g = dy`: `(g w^T, x^T g)`, with
/// `w^T` and `x^T` read in place (gemm packs its operands from any
/// strides), not transposed first.
fn gradients(x: &[f32], w: &[f32], g: &[f32], [rows, k, n]: [usize; 3]) -> (Vec<f32>, Vec<f32>) {
    let dx = tiled_product(g, Strided::transposed(w, n), None, [rows, n, k]);
    // SAFETY: each chunk is `m` whole rows of `n` and the product writes
    // all `m * n` values.
    let dw = unsafe {
        parallel_filled(k * n, WEIGHT_ROWS * n, |block, dw| {
            let m = dw.len() / n;
            // Rows block * WEIGHT_ROWS.. of x^T: columns of x.
            let x_t = Strided::transposed(&x[block * WEIGHT_ROWS..], k);
            product_into([m, rows, n], dw, x_t, Strided::row_major(g, n));
        })
    };
    (dx, dw)
}

/// The autodiff op; parents `x`, `w` and (`N = 3`) the bias.
#[derive(Debug)]
struct LinearBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for LinearBackward<N> {
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let g = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (x_state, w_state) = ops.state;
        let x = checkpointer
            .retrieve_node_output::<FlexTensor>(x_state)
            .to_contiguous();
        let w = checkpointer
            .retrieve_node_output::<FlexTensor>(w_state)
            .to_contiguous();
        let (xs, ws, [rows, k, n]) = operands(&x, &w);
        if let Some(Some(node)) = ops.parents.get(2) {
            let db = column_sums(g.storage(), n);
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(db, [n])));
        }
        let (dx, dw) = gradients(xs, ws, g.storage(), [rows, k, n]);
        if let Some(node) = &ops.parents[1] {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dw, [k, n])));
        }
        if let Some(node) = &ops.parents[0] {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(dx, [rows, k])),
            );
        }
    }
}

fn linear_op<const N: usize>(
    x: AdPrimitive,
    w: AdPrimitive,
    bias: Option<AdPrimitive>,
) -> AdPrimitive {
    let nodes = parents::<N>(&x, &w, bias.as_ref());
    let bias = bias.map(|b| host_values(b.primitive()));
    let forward = || product(x.primitive(), w.primitive(), bias.as_deref());
    match LinearBackward::<N>
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let w_state = prep.checkpoint(&w);
            let y = forward();
            prep.finish((x_state, w_state), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution, Tolerance};

    /// The host op and burn's `Linear::forward` give the same output and
    /// the same gradients for the input, weight and bias; with more rows
    /// than one tile and more weight rows than one block (uneven last
    /// ones), with and without bias, and without autodiff.
    #[test]
    fn host_linear_equals_burns_linear() {
        for (rows, d_in, d_out, bias) in
            [(1100, 150, 70, true), (5, 3, 4, false), (129, 16, 1, true)]
        {
            let device = Device::flex().autodiff();
            let layer = LinearConfig::new(d_in, d_out).with_bias(bias).init(&device);
            let x0 = Tensor::<2>::random([rows, d_in], Distribution::Default, &device).detach();
            let probe = Tensor::<2>::random([rows, d_out], Distribution::Default, &device);
            let run = |host: bool| {
                let x = x0.clone().require_grad();
                let y = if host {
                    linear(&layer, x.clone())
                } else {
                    layer.forward(x.clone())
                };
                let grads = (y.clone() * probe.clone()).sum().backward();
                let mut out = vec![
                    y.inner().into_data(),
                    x.grad(&grads).unwrap().into_data(),
                    layer.weight.val().grad(&grads).unwrap().into_data(),
                ];
                if let Some(b) = &layer.bias {
                    out.push(b.val().grad(&grads).unwrap().into_data());
                }
                out
            };
            let tol = Tolerance::rel_abs(1e-5, 1e-5);
            for (ours, burns) in run(true).iter().zip(&run(false)) {
                ours.assert_approx_eq::<f32>(burns, tol);
            }
            let inner = layer.valid();
            let x = x0.clone().inner();
            linear(&inner, x.clone())
                .into_data()
                .assert_approx_eq::<f32>(&inner.forward(x).into_data(), tol);
        }
    }
}
