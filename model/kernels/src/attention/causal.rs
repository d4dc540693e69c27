//! Causal self-attention over flattened token sequences (the prior's),
//! fused on the host: per block of queries, the scores against the keys up
//! to the block's last position, the causal mask, softmax, attention
//! dropout and the weighted sum of the values, without ever holding a
//! head's `[n, n]` weights. The backward pass recomputes a block's weights
//! and its dropout mask (a hash of the seed and the position, not stored).
//! Every product goes through `host::product`, so `--precision bf16` runs
//! them on AMX tiles.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, BackendTypes, Flex};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use crate::decode::kv_cache::exp_approx;
use crate::dropout::{keep_rule, mix32};
use crate::host::buffers::{SharedOutput, with_scratch};
use crate::host::product::{RightOperand, Strided, product_with};

type FlexAd = Autodiff<Flex>;
type AdPrimitive = <FlexAd as BackendTypes>::FloatTensorPrimitive;

/// `batch` sequences of `len` positions; `heads` heads of `head_dim`
/// channels. Each position's row is `[q | k | v]`, each `heads * head_dim`
/// wide with the heads side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CausalHeads {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl CausalHeads {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// The rows of sequence `b`.
    fn sequence<'a>(&self, qkv: &'a [f32], b: usize) -> &'a [f32] {
        let rows = self.len * 3 * self.width();
        &qkv[b * rows..(b + 1) * rows]
    }
}

/// Attention dropout while training: each weight is dropped with
/// `probability` (the rest scaled by `1 / (1 - probability)`), decided by a
/// hash of `(seed, sequence, head, query, key)`, so the backward pass and
/// any thread count see the same mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionDropout {
    pub probability: f32,
    pub seed: u64,
    /// The global index of the first (sequence, head) stream: this rank's
    /// first sample times the heads ([`crate::ranks`]), 0 alone.
    pub first_stream: usize,
}

impl AttentionDropout {
    /// The mask's key for one query row of one head of one sequence.
    fn row_key(&self, stream: usize, query: usize) -> u32 {
        let stream = (self.first_stream + stream) as u64;
        let mut z = self.seed ^ (stream << 32 | query as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }

    /// Drops (zeros) or scales each of `values` (keys `0..values.len()`).
    fn apply(&self, row_key: u32, values: &mut [f32]) {
        let (threshold, scale) = keep_rule(self.probability);
        for (j, value) in values.iter_mut().enumerate() {
            let keep = mix32(row_key ^ (j as u32).wrapping_mul(0x9e37_79b9)) >= threshold;
            *value = if keep { *value * scale } else { 0.0 };
        }
    }
}

/// Queries per block: a block's scores (`64 x len`) stay in L2.
const QUERY_BLOCK: usize = 64;

/// The softmax weights of queries `i0..i1` of head `h` of sequence `seq`
/// against keys `0..i1` (`keys_t`: the head's keys, transposed), zero past
/// each query's own position: `weights[r * i1 + j]`.
fn softmax_weights(
    seq: &[f32],
    shape: &CausalHeads,
    h: usize,
    keys_t: &RightOperand,
    [i0, i1]: [usize; 2],
    weights: &mut [f32],
) {
    let (w, d) = (shape.width(), shape.head_dim);
    let (rows, keys) = (i1 - i0, i1);
    let queries = Strided::row_major(&seq[i0 * 3 * w + h * d..], 3 * w);
    product_with([rows, d, keys], &mut weights[..rows * keys], queries, keys_t, false);
    let scale = 1.0 / (d as f32).sqrt();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked at run time).
        return unsafe { softmax_rows_avx2(&mut weights[..rows * keys], keys, i0, scale) };
    }
    softmax_rows(&mut weights[..rows * keys], keys, i0, scale);
}

/// Softmax of `scores * scale` along each row of `rows` (`keys` wide), row
/// `r` over its first `first + r + 1` values, zeros after them. Inlined
/// into a plain and an AVX2 copy (no FMA: both give the same bits).
#[inline(always)]
fn softmax_rows(rows: &mut [f32], keys: usize, first: usize, scale: f32) {
    for (r, row) in rows.chunks_exact_mut(keys).enumerate() {
        let (live, future) = row.split_at_mut(first + r + 1);
        let (eights, rest) = live.as_chunks::<8>();
        let mut maxima = [f32::NEG_INFINITY; 8];
        for chunk in eights {
            maxima.iter_mut().zip(chunk).for_each(|(m, &x)| *m = m.max(x));
        }
        let max = rest.iter().chain(&maxima).fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        live.iter_mut().for_each(|x| *x = exp_approx((*x - max) * scale));
        let (eights, rest) = live.as_chunks::<8>();
        let mut sums = [0f32; 8];
        for chunk in eights {
            sums.iter_mut().zip(chunk).for_each(|(s, &x)| *s += x);
        }
        let inverse = 1.0 / (sums.iter().sum::<f32>() + rest.iter().sum::<f32>());
        live.iter_mut().for_each(|x| *x *= inverse);
        future.fill(0.0);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn softmax_rows_avx2(rows: &mut [f32], keys: usize, first: usize, scale: f32) {
    softmax_rows(rows, keys, first, scale)
}

/// `qkv` `[batch * len, 3 * width]` -> `[batch * len, width]`; one task
/// per sequence and head, whose keys and values are prepared once for all
/// its blocks of queries.
pub fn attend(qkv: &[f32], shape: &CausalHeads, dropout: Option<AttentionDropout>) -> Vec<f32> {
    let (n, w, d) = (shape.len, shape.width(), shape.head_dim);
    assert_eq!(qkv.len(), shape.batch * n * 3 * w, "qkv is not [batch * len, 3 * width]");
    let total = shape.batch * n * w;
    // Every value is written exactly once below: no zeroing first.
    let mut out = Vec::with_capacity(total);
    let shared = SharedOutput(out.as_mut_ptr());
    let tasks: Vec<[usize; 2]> = (0..shape.batch).flat_map(|b| (0..shape.heads).map(move |h| [b, h])).collect();
    tasks.par_iter().for_each(|&[b, h]| {
        let seq = shape.sequence(qkv, b);
        let keys_t = RightOperand::new(Strided::transposed(&seq[w + h * d..], 3 * w), [d, n]);
        let values = RightOperand::new(Strided::row_major(&seq[2 * w + h * d..], 3 * w), [n, d]);
        with_scratch(|weights, block| {
            for i0 in (0..n).step_by(QUERY_BLOCK) {
                let i1 = (i0 + QUERY_BLOCK).min(n);
                let (rows, keys) = (i1 - i0, i1);
                weights.resize(weights.len().max(rows * keys), 0.0);
                softmax_weights(seq, shape, h, &keys_t, [i0, i1], weights);
                if let Some(dropout) = dropout {
                    for (r, row) in weights[..rows * keys].chunks_exact_mut(keys).enumerate() {
                        let live = i0 + r + 1;
                        dropout.apply(dropout.row_key(b * shape.heads + h, i0 + r), &mut row[..live]);
                    }
                }
                block.resize(block.len().max(rows * d), 0.0);
                product_with([rows, keys, d], &mut block[..rows * d], Strided::row_major(weights, keys), &values, false);
                for r in 0..rows {
                    // SAFETY: row `b * n + i0 + r`, channels `h * d..(h + 1) * d`
                    // of the `total` values: this task's alone.
                    unsafe { shared.write_at((b * n + i0 + r) * w + h * d, &block[r * d..(r + 1) * d]) };
                }
            }
        })
    });
    // SAFETY: the tasks covered every (sequence, head, query) once.
    unsafe { out.set_len(total) };
    out
}

/// The gradient of [`attend`] with respect to `qkv`, given the output's
/// gradient `grad` `[batch * len, width]`; one task per sequence and head.
pub fn attend_backward(qkv: &[f32], grad: &[f32], shape: &CausalHeads, dropout: Option<AttentionDropout>) -> Vec<f32> {
    let (n, w, d) = (shape.len, shape.width(), shape.head_dim);
    assert_eq!(qkv.len(), shape.batch * n * 3 * w, "qkv is not [batch * len, 3 * width]");
    assert_eq!(grad.len(), shape.batch * n * w, "the gradient is not [batch * len, width]");
    let mut dqkv = Vec::with_capacity(qkv.len());
    let shared = SharedOutput(dqkv.as_mut_ptr());
    let scale = 1.0 / (d as f32).sqrt();
    let tasks: Vec<[usize; 2]> = (0..shape.batch).flat_map(|b| (0..shape.heads).map(move |h| [b, h])).collect();
    tasks.par_iter().for_each(|&[b, h]| {
        let seq = shape.sequence(qkv, b);
        let keys_t = RightOperand::new(Strided::transposed(&seq[w + h * d..], 3 * w), [d, n]);
        let values_t = RightOperand::new(Strided::transposed(&seq[2 * w + h * d..], 3 * w), [d, n]);
        let keys_rows = RightOperand::new(Strided::row_major(&seq[w + h * d..], 3 * w), [n, d]);
        with_scratch(|blocks, sums| {
            let grad = &grad[b * n * w..(b + 1) * n * w];
            blocks.resize(blocks.len().max(2 * QUERY_BLOCK * n + QUERY_BLOCK * d), 0.0);
            let (weights, rest) = blocks.split_at_mut(QUERY_BLOCK * n);
            let (dweights, dq) = rest.split_at_mut(QUERY_BLOCK * n);
            // dK^T and dV^T of the head `[d, n]`, summed over the query
            // blocks; a block's share first goes to `share` (`[d, keys]`).
            // Transposed, their products read the block's weights row-major
            // (the operand bf16 packs fastest).
            sums.clear();
            sums.resize(3 * n * d, 0.0);
            let (dkt, rest) = sums.split_at_mut(n * d);
            let (dvt, share) = rest.split_at_mut(n * d);
            let add_share = |sum: &mut [f32], share: &[f32], keys: usize| {
                for (row, part) in sum.chunks_exact_mut(n).zip(share.chunks_exact(keys)) {
                    row[..keys].iter_mut().zip(part).for_each(|(s, p)| *s += p);
                }
            };
            let stream = b * shape.heads + h;
            let write = |row: usize, part: usize, values: &[f32]| {
                // SAFETY: row `b * n + row`, part `part`, head `h`: this
                // task's alone.
                unsafe { shared.write_at((b * n + row) * 3 * w + part * w + h * d, values) };
            };
            for i0 in (0..n).step_by(QUERY_BLOCK) {
                let i1 = (i0 + QUERY_BLOCK).min(n);
                let (rows, keys) = (i1 - i0, i1);
                let (weights, dweights) = (&mut weights[..rows * keys], &mut dweights[..rows * keys]);
                softmax_weights(seq, shape, h, &keys_t, [i0, i1], weights);
                let grad_block = Strided::row_major(&grad[i0 * w + h * d..], w);
                // dV_j += sum_i P'_ij dO_i, with P' the dropped-out weights.
                let kept = match dropout {
                    Some(dropout) => {
                        dweights.copy_from_slice(weights);
                        for (r, row) in dweights.chunks_exact_mut(keys).enumerate() {
                            dropout.apply(dropout.row_key(stream, i0 + r), &mut row[..i0 + r + 1]);
                        }
                        &*dweights
                    }
                    None => &*weights,
                };
                let grad_t = Strided::transposed(&grad[i0 * w + h * d..], w);
                let kept = RightOperand::new(Strided::row_major(kept, keys), [rows, keys]);
                product_with([d, rows, keys], &mut share[..d * keys], grad_t, &kept, false);
                add_share(dvt, &share[..d * keys], keys);
                // dP'_ij = dO_i . v_j, then dP = dP' masked and scaled alike.
                product_with([rows, d, keys], dweights, grad_block, &values_t, false);
                for (r, (dp, p)) in dweights.chunks_exact_mut(keys).zip(weights.chunks_exact(keys)).enumerate() {
                    let live = i0 + r + 1;
                    if let Some(dropout) = dropout {
                        dropout.apply(dropout.row_key(stream, i0 + r), &mut dp[..live]);
                    }
                    // dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij'), scaled.
                    let mean: f32 = p[..live].iter().zip(&dp[..live]).map(|(p, g)| p * g).sum();
                    dp[..live].iter_mut().zip(&p[..live]).for_each(|(g, p)| *g = p * (*g - mean) * scale);
                    dp[live..].fill(0.0);
                }
                // dQ_i = sum_j dS_ij k_j; dK_j += sum_i dS_ij q_i.
                product_with([rows, keys, d], &mut dq[..rows * d], Strided::row_major(dweights, keys), &keys_rows, false);
                for r in 0..rows {
                    write(i0 + r, 0, &dq[r * d..(r + 1) * d]);
                }
                let queries_t = Strided::transposed(&seq[i0 * 3 * w + h * d..], 3 * w);
                let dscores = RightOperand::new(Strided::row_major(dweights, keys), [rows, keys]);
                product_with([d, rows, keys], &mut share[..d * keys], queries_t, &dscores, false);
                add_share(dkt, &share[..d * keys], keys);
            }
            let mut column = vec![0f32; d];
            for j in 0..n {
                for (part, sum) in [(1, &*dkt), (2, &*dvt)] {
                    column.iter_mut().enumerate().for_each(|(c, v)| *v = sum[c * n + j]);
                    write(j, part, &column);
                }
            }
        })
    });
    // SAFETY: the tasks covered every (sequence, head) and wrote each of
    // its rows' q, k and v channels.
    unsafe { dqkv.set_len(qkv.len()) };
    dqkv
}

/// [`attend`] on `qkv` `[batch, len, 3 * width]` where it is an f32 flex
/// tensor; with autodiff (training) with `dropout` drawn from burn's seeded
/// generator and [`attend_backward`] as the backward pass. `None` elsewhere.
pub fn attend_on_host(qkv: &Tensor<3>, heads: usize, dropout: f64) -> Option<Tensor<3>> {
    if qkv.dtype() != DType::F32 {
        return None;
    }
    let [batch, len, width3] = qkv.dims();
    let shape = CausalHeads {
        batch,
        len,
        heads,
        head_dim: width3 / 3 / heads,
    };
    let out_shape = [batch, len, width3 / 3];
    if let Ok(primitive) = qkv.clone().try_into_primitive::<FlexAd>() {
        let dropout = (dropout > 0.0).then(|| AttentionDropout {
            probability: dropout as f32,
            seed: crate::dropout::draw_seed(&qkv.device()),
            first_stream: crate::ranks::first_sample() as usize * heads,
        });
        return Some(Tensor::from_primitive::<FlexAd>(tracked_attend(primitive, shape, dropout, out_shape)));
    }
    let primitive = qkv.clone().try_into_primitive::<Flex>().ok()?;
    Some(Tensor::from_primitive::<Flex>(host_attend(&primitive, &shape, None, out_shape)))
}

fn host_attend(qkv: &FlexTensor, shape: &CausalHeads, dropout: Option<AttentionDropout>, out: [usize; 3]) -> FlexTensor {
    let qkv = qkv.to_contiguous();
    FlexTensor::from_data(TensorData::new(attend(qkv.storage(), shape, dropout), out))
}

#[derive(Debug)]
struct HostCausalAttention;

impl Backward<Flex, 1> for HostCausalAttention {
    type State = (NodeId, CausalHeads, Option<AttentionDropout>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_qkv] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (qkv_state, shape, dropout) = ops.state;
        let Some(node) = node_qkv else {
            return;
        };
        let qkv = checkpointer.retrieve_node_output::<FlexTensor>(qkv_state).to_contiguous();
        let grad = grad.to_contiguous();
        let dims: [usize; 3] = qkv.layout().shape().dims();
        let dqkv = attend_backward(qkv.storage(), grad.storage(), &shape, dropout);
        grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dqkv, dims)));
    }
}

fn tracked_attend(qkv: AdPrimitive, shape: CausalHeads, dropout: Option<AttentionDropout>, out: [usize; 3]) -> AdPrimitive {
    match HostCausalAttention.prepare::<NoCheckpointing>([qkv.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let state = prep.checkpoint(&qkv);
            let y = host_attend(qkv.primitive(), &shape, dropout, out);
            prep.finish((state, shape, dropout), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(host_attend(qkv.primitive(), &shape, dropout, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    /// The mask [`AttentionDropout`] applies, as a `[b, heads, n, n]` tensor
    /// of 0 or `1 / (1 - p)`.
    fn mask_tensor(dropout: AttentionDropout, shape: &CausalHeads, device: &Device) -> Tensor<4> {
        let n = shape.len;
        let mut values = Vec::with_capacity(shape.batch * shape.heads * n * n);
        for stream in 0..shape.batch * shape.heads {
            for i in 0..n {
                let mut row = vec![1.0f32; n];
                dropout.apply(dropout.row_key(stream, i), &mut row);
                values.extend(row);
            }
        }
        Tensor::from_data(TensorData::new(values, [shape.batch, shape.heads, n, n]), device)
    }

    /// burn's causal attention with a given dropout mask (or none).
    fn reference(qkv: Tensor<3>, shape: &CausalHeads, mask: Option<Tensor<4>>) -> Tensor<3> {
        let Some(mask) = mask else {
            return causal_with_burn(qkv, shape.heads, 0.0);
        };
        let [b, n, width3] = qkv.dims();
        let d = shape.head_dim;
        let device = qkv.device();
        let qkv = qkv.reshape([b, n, 3, shape.heads, d]).permute([2, 0, 3, 1, 4]);
        let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).reshape([b, shape.heads, n, d]));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d as f64).sqrt());
        let future = Tensor::<2, burn::tensor::Bool>::tril_mask([n, n], 0, &device).unsqueeze::<4>();
        let weights = burn::tensor::activation::softmax(scores.mask_fill(future, f32::NEG_INFINITY), 3) * mask;
        weights.matmul(v).swap_dims(1, 2).reshape([b, n, width3 / 3])
    }

    use super::super::causal_with_burn;

    /// The host kernel and burn's operations agree, forward and backward,
    /// without dropout and with the same dropout mask, over a length that
    /// is not a whole number of query blocks.
    #[test]
    fn host_causal_attention_equals_burns_with_gradients() {
        let device = Device::flex().autodiff();
        let shape = CausalHeads { batch: 2, len: 150, heads: 3, head_dim: 8 };
        let width = shape.heads * shape.head_dim;
        let qkv0 = Tensor::<3>::random([shape.batch, shape.len, 3 * width], Distribution::Normal(0.0, 1.5), &device);
        let probe = Tensor::<3>::random([shape.batch, shape.len, width], Distribution::Default, &device);
        let dims = [shape.batch, shape.len, width];
        for dropout in [None, Some(AttentionDropout { probability: 0.3, seed: 17, first_stream: 0 })] {
            let run = |host: bool| {
                let qkv = qkv0.clone().detach().require_grad();
                let y = if host {
                    let primitive = qkv.clone().try_into_primitive::<FlexAd>().unwrap();
                    Tensor::from_primitive::<FlexAd>(tracked_attend(primitive, shape, dropout, dims))
                } else {
                    reference(qkv.clone(), &shape, dropout.map(|d| mask_tensor(d, &shape, &device)))
                };
                let grads = (y.clone() * probe.clone()).sum().backward();
                (y.inner().into_data(), qkv.grad(&grads).unwrap().into_data())
            };
            let (y_host, g_host) = run(true);
            let (y_burn, g_burn) = run(false);
            let tol = Tolerance::rel_abs(1e-4, 1e-5);
            y_host.assert_approx_eq::<f32>(&y_burn, tol);
            g_host.assert_approx_eq::<f32>(&g_burn, tol);
        }
        // Without autodiff: no dropout, the host path.
        let plain = super::super::causal_attention(qkv0.clone().inner(), shape.heads, 0.3);
        plain.into_data().assert_approx_eq::<f32>(
            &reference(qkv0.inner(), &shape, None).into_data(),
            Tolerance::rel_abs(1e-4, 1e-5),
        );
    }

    /// About `p` of the weights are dropped, independently of position, and
    /// another seed draws another mask.
    #[test]
    fn dropout_drops_its_share_and_follows_the_seed() {
        let dropout = AttentionDropout { probability: 0.3, seed: 5, first_stream: 0 };
        let mut dropped = 0usize;
        let mut differ = 0usize;
        let other = AttentionDropout { seed: 6, ..dropout };
        let total = 64 * 1024;
        for i in 0..64 {
            let mut row = vec![1.0f32; 1024];
            dropout.apply(dropout.row_key(3, i), &mut row);
            let mut row2 = vec![1.0f32; 1024];
            other.apply(other.row_key(3, i), &mut row2);
            dropped += row.iter().filter(|&&v| v == 0.0).count();
            differ += row.iter().zip(&row2).filter(|(a, b)| a != b).count();
            assert!(row.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        }
        let share = dropped as f64 / total as f64;
        assert!((share - 0.3).abs() < 0.01, "dropped {share}");
        // Two independent masks differ where exactly one drops: 2 p (1 - p).
        let disagree = differ as f64 / total as f64;
        assert!((disagree - 0.42).abs() < 0.015, "masks disagree on {disagree}");
    }
}
