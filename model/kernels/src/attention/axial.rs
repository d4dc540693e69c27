//! The softmax core of axial attention on the host, for training and
//! inference on the CPU (flex, with or without autodiff).
//!
//! Input: the projected queries, keys and values of every position of a
//! `[b, t, h, w]` grid, one row `[q | k | v]` (each `heads * d` wide) per
//! position in raster order. Every line of the grid along one axis attends
//! within itself, head by head. The lines are read in place with a stride,
//! so neither the forward pass nor the backward pass permutes anything;
//! burn's version of the same ([`super::with_burn`]) moves the axis
//! next to the channels, splits q, k and v and merges the heads back, a copy
//! each, and runs thousands of tiny matrix products.
//!
//! The backward pass recomputes the attention weights of a line from q and
//! k (a few hundred products) instead of keeping them.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, BackendTypes, Flex};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use crate::host::buffers::parallel_zeros;

type FlexAd = Autodiff<Flex>;
type AdPrimitive = <FlexAd as BackendTypes>::FloatTensorPrimitive;

/// Where the lines of one axis lie among the rows of a `[b, t, h, w]` grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxialLines {
    /// Positions per line (the axis' length).
    pub len: usize,
    /// Rows between neighbours on a line.
    pub stride: usize,
    pub heads: usize,
    /// Channels per head.
    pub head_dim: usize,
}

impl AxialLines {
    /// `grid` `[b, t, h, w]`, `axis` 1 (T), 2 (H) or 3 (W).
    pub fn new(grid: [usize; 4], axis: usize, heads: usize, channels: usize) -> Self {
        assert!((1..=3).contains(&axis), "axis {axis} is not 1, 2 or 3");
        let stride: usize = grid[axis + 1..].iter().product();
        Self {
            len: grid[axis],
            stride,
            heads,
            head_dim: channels / heads,
        }
    }

    /// Rows per block of `stride` whole lines; blocks follow each other.
    fn block(&self) -> usize {
        self.len * self.stride
    }

    fn channels(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// The attention weights of one line and head: `weights[i * len + j]`,
/// softmax over `j` of `q_i . k_j / sqrt(d)`. `rows` is the block, `line`
/// the line's first row in it, `head` its channel offset.
#[inline(always)]
fn attention_weights(
    rows: &[f32],
    lines: &AxialLines,
    line: usize,
    head: usize,
    weights: &mut [f32],
) {
    let (len, stride, c) = (lines.len, lines.stride, lines.channels());
    let d = lines.head_dim;
    let scale = 1.0 / (d as f32).sqrt();
    let width = 3 * c;
    for i in 0..len {
        let q = &rows[(line + i * stride) * width + head..][..d];
        let scores = &mut weights[i * len..(i + 1) * len];
        let mut max = f32::NEG_INFINITY;
        for (j, s) in scores.iter_mut().enumerate() {
            let k = &rows[(line + j * stride) * width + c + head..][..d];
            *s = dot(q, k) * scale;
            max = max.max(*s);
        }
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        scores.iter_mut().for_each(|s| *s /= sum);
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums, so the compiler vectorises them.
    let mut acc = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += alpha * x);
}

/// `qkv` `[n, 3c]` -> the attended values `[n, c]` (heads side by side).
pub fn attend(qkv: &[f32], lines: &AxialLines) -> Vec<f32> {
    let c = lines.channels();
    assert_eq!(
        qkv.len() % (3 * c * lines.block()),
        0,
        "qkv rows are not whole blocks"
    );
    let mut out = parallel_zeros(qkv.len() / 3);
    out.par_chunks_mut(lines.block() * c)
        .zip(qkv.par_chunks(lines.block() * 3 * c))
        .for_each(|(out, rows)| {
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU has AVX2 (checked at run time).
                return unsafe { avx2::attend_block(out, rows, lines) };
            }
            attend_block(out, rows, lines)
        });
    out
}

/// [`attend`] on one block of whole lines: `rows` `[block, 3c]` -> `out`
/// `[block, c]`. Inlined into a plain and an AVX2 copy.
#[inline(always)]
fn attend_block(out: &mut [f32], rows: &[f32], lines: &AxialLines) {
    let c = lines.channels();
    let (len, stride, d) = (lines.len, lines.stride, lines.head_dim);
    let mut weights = vec![0f32; len * len];
    for line in 0..stride {
        for head in (0..c).step_by(d) {
            attention_weights(rows, lines, line, head, &mut weights);
            for i in 0..len {
                let o = &mut out[(line + i * stride) * c + head..][..d];
                for j in 0..len {
                    let v = &rows[(line + j * stride) * 3 * c + 2 * c + head..][..d];
                    axpy(weights[i * len + j], v, o);
                }
            }
        }
    }
}

/// Whether the AVX2 copies of the block loops can run here.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// The block loops compiled for AVX2: wider vectors for the dot products
/// and the `axpy`s. No FMA: a fused multiply-add would round differently,
/// and without it both copies give the same bits, so the tests of one cover
/// the other. (Across CPUs, gemm's AVX2 and AVX-512 kernels still sum the
/// convolutions in different orders.)
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::AxialLines;

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn attend_block(out: &mut [f32], rows: &[f32], lines: &AxialLines) {
        super::attend_block(out, rows, lines)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn attend_backward_block(
        dqkv: &mut [f32],
        rows: &[f32],
        grad: &[f32],
        lines: &AxialLines,
    ) {
        super::attend_backward_block(dqkv, rows, grad, lines)
    }
}

/// The gradient of [`attend`] with respect to `qkv`, given the gradient of
/// its output `grad` `[n, c]`.
pub fn attend_backward(qkv: &[f32], grad: &[f32], lines: &AxialLines) -> Vec<f32> {
    let c = lines.channels();
    let mut dqkv = parallel_zeros(qkv.len());
    dqkv.par_chunks_mut(lines.block() * 3 * c)
        .zip(qkv.par_chunks(lines.block() * 3 * c))
        .zip(grad.par_chunks(lines.block() * c))
        .for_each(|((dqkv, rows), grad)| {
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU has AVX2 (checked at run time).
                return unsafe { avx2::attend_backward_block(dqkv, rows, grad, lines) };
            }
            attend_backward_block(dqkv, rows, grad, lines)
        });
    dqkv
}

/// [`attend_backward`] on one block of whole lines. Inlined into a plain and
/// an AVX2 copy.
#[inline(always)]
fn attend_backward_block(dqkv: &mut [f32], rows: &[f32], grad: &[f32], lines: &AxialLines) {
    let c = lines.channels();
    let (len, stride, d) = (lines.len, lines.stride, lines.head_dim);
    let scale = 1.0 / (d as f32).sqrt();
    let mut weights = vec![0f32; len * len];
    let mut dscores = vec![0f32; len * len];
    for line in 0..stride {
        for head in (0..c).step_by(d) {
            attention_weights(rows, lines, line, head, &mut weights);
            let at = |i: usize, part: usize| (line + i * stride) * 3 * c + part * c + head;
            // dV_j = sum_i P_ij dO_i; dP_ij = dO_i . v_j.
            for i in 0..len {
                let g = &grad[(line + i * stride) * c + head..][..d];
                for j in 0..len {
                    let p = weights[i * len + j];
                    axpy(p, g, &mut dqkv[at(j, 2)..at(j, 2) + d]);
                    dscores[i * len + j] = dot(g, &rows[at(j, 2)..at(j, 2) + d]);
                }
            }
            // dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij'), scaled.
            for i in 0..len {
                let p = &weights[i * len..(i + 1) * len];
                let ds = &mut dscores[i * len..(i + 1) * len];
                let mean: f32 = p.iter().zip(ds.iter()).map(|(p, g)| p * g).sum();
                ds.iter_mut()
                    .zip(p)
                    .for_each(|(g, p)| *g = p * (*g - mean) * scale);
            }
            // dQ_i = sum_j dS_ij k_j; dK_j = sum_i dS_ij q_i.
            for i in 0..len {
                for j in 0..len {
                    let ds = dscores[i * len + j];
                    let (qi, kj) = (at(i, 0), at(j, 1));
                    axpy(ds, &rows[kj..kj + d], &mut dqkv[qi..qi + d]);
                    axpy(ds, &rows[qi..qi + d], &mut dqkv[kj..kj + d]);
                }
            }
        }
    }
}

/// [`attend`] on `qkv` `[n, 3c]` where it is a flex tensor (with autodiff:
/// [`attend_backward`] as its backward pass); `None` elsewhere.
pub fn attend_on_host(qkv: &Tensor<2>, lines: &AxialLines) -> Option<Tensor<2>> {
    if qkv.dtype() != DType::F32 {
        return None;
    }
    let n = qkv.dims()[0];
    let shape = [n, lines.channels()];
    if let Ok(primitive) = qkv.clone().try_into_primitive::<FlexAd>() {
        return Some(Tensor::from_primitive::<FlexAd>(tracked_attend(
            primitive, *lines, shape,
        )));
    }
    let primitive = qkv.clone().try_into_primitive::<Flex>().ok()?;
    Some(Tensor::from_primitive::<Flex>(host_attend(
        &primitive, lines, shape,
    )))
}

fn host_attend(qkv: &FlexTensor, lines: &AxialLines, shape: [usize; 2]) -> FlexTensor {
    let qkv = qkv.to_contiguous();
    FlexTensor::from_data(TensorData::new(attend(qkv.storage(), lines), shape))
}

#[derive(Debug)]
struct HostAttention;

impl Backward<Flex, 1> for HostAttention {
    type State = (NodeId, AxialLines);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_qkv] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (qkv_state, lines) = ops.state;
        let Some(node) = node_qkv else {
            return;
        };
        let qkv = checkpointer
            .retrieve_node_output::<FlexTensor>(qkv_state)
            .to_contiguous();
        let grad = grad.to_contiguous();
        let shape: [usize; 2] = qkv.layout().shape().dims();
        let dqkv = attend_backward(qkv.storage(), grad.storage(), &lines);
        grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dqkv, shape)));
    }
}

fn tracked_attend(qkv: AdPrimitive, lines: AxialLines, shape: [usize; 2]) -> AdPrimitive {
    match HostAttention
        .prepare::<NoCheckpointing>([qkv.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = prep.checkpoint(&qkv);
            let out = host_attend(qkv.primitive(), &lines, shape);
            prep.finish((state, lines), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(host_attend(qkv.primitive(), &lines, shape)),
    }
}
