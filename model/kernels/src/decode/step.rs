//! A prior's whole sampling step on the host, for the CPU (flex).
//!
//! One token step of a small prior is a few dozen tiny operations per
//! layer (layer norms, four matrix products, attention, GELU, residual
//! adds) on a handful of rows. Through burn each is a dispatch with its own
//! buffers, and the products re-pack their weights on every call. Here the
//! weights are packed once when sampling starts ([`PackedLinear`]), the
//! condition's layer-norm affines are folded per row ([`FoldedNorm`]), and
//! a step runs in place in a few reusable buffers, with the attention of
//! [`HostKvCache`]. The model fills a [`Decoder`] from its modules.

use std::ops::Range;

use super::kv_cache::{HostKvCache, KvPrecision, exp_approx};
use super::packed_linear::PackedLinear;

/// A layer norm with its affine folded per batch row:
/// `y = (x - mean) / sqrt(var + eps) * scale[row] + shift[row]`.
#[derive(Debug, Clone)]
pub struct FoldedNorm {
    pub width: usize,
    /// `[rows, width]`; one row when there is no condition (shared).
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub epsilon: f32,
}

impl FoldedNorm {
    /// Normalises the rows of `x` (`[rows.len(), width]`, batch rows
    /// `rows`) into `out`.
    fn apply(&self, x: &[f32], rows: &Range<usize>, out: &mut [f32]) {
        let w = self.width;
        let shared = self.scale.len() == w;
        for ((x, out), row) in x
            .chunks_exact(w)
            .zip(out.chunks_exact_mut(w))
            .zip(rows.clone())
        {
            let affine = if shared { 0..w } else { row * w..(row + 1) * w };
            let (scale, shift) = (&self.scale[affine.clone()], &self.shift[affine]);
            let mean = x.iter().sum::<f32>() / w as f32;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / w as f32;
            let inverse = 1.0 / (var + self.epsilon).sqrt();
            for (((o, &v), &s), &t) in out.iter_mut().zip(x).zip(scale).zip(shift) {
                *o = (v - mean) * inverse * s + t;
            }
        }
    }
}

/// One transformer block without cross-attention: pre-LN self-attention
/// and a GELU MLP, each added to the residual stream.
#[derive(Debug, Clone)]
pub struct DecoderBlock {
    pub norm_attention: FoldedNorm,
    /// `[width, 3 * width]`, no bias.
    pub qkv: PackedLinear,
    pub heads: usize,
    pub out: PackedLinear,
    pub norm_mlp: FoldedNorm,
    pub up: PackedLinear,
    pub down: PackedLinear,
}

/// A prior's weights, packed for sampling on the host.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub hidden: usize,
    pub codes: usize,
    /// `[codes, hidden]`: the learned table, or the codebook vectors
    /// through their projection.
    pub embedding: Vec<f32>,
    /// `[n, hidden]` in raster order.
    pub positions: Vec<f32>,
    pub start: Vec<f32>,
    pub blocks: Vec<DecoderBlock>,
    pub norm_out: FoldedNorm,
    pub head: PackedLinear,
}

/// One row group's sampling state: its caches, position and buffers.
#[derive(Debug, Clone)]
pub struct DecoderState {
    rows: Range<usize>,
    caches: Vec<HostKvCache>,
    position: usize,
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    wide: Vec<f32>,
    logits: Vec<f32>,
}

impl DecoderState {
    /// Positions decoded so far.
    pub fn len(&self) -> usize {
        self.position
    }

    pub fn is_empty(&self) -> bool {
        self.position == 0
    }
}

impl Decoder {
    /// A fresh state for the batch rows `rows`.
    pub fn state(&self, rows: Range<usize>, precision: KvPrecision) -> DecoderState {
        let b = rows.len();
        let w = self.hidden;
        let caches = self
            .blocks
            .iter()
            .map(|block| HostKvCache::new(b, block.heads, w / block.heads, precision))
            .collect();
        let wide = self
            .blocks
            .iter()
            .map(|block| block.up.outputs())
            .max()
            .unwrap_or(0);
        DecoderState {
            rows,
            caches,
            position: 0,
            x: vec![0.0; b * w],
            normed: vec![0.0; b * w],
            qkv: vec![0.0; b * 3 * w],
            wide: vec![0.0; b * wide],
            logits: vec![0.0; b * self.codes],
        }
    }

    /// The logits `[rows, codes]` at the state's next position, given the
    /// previous token of each row (`None` at position 0: the start token).
    pub fn step<'a>(&self, previous: Option<&[u16]>, state: &'a mut DecoderState) -> &'a [f32] {
        let (b, w) = (state.rows.len(), self.hidden);
        let i = state.position;
        assert!(
            (i + 1) * w <= self.positions.len(),
            "position {i} is past the token grid"
        );
        let position = &self.positions[i * w..(i + 1) * w];
        for (r, x) in state.x.chunks_exact_mut(w).enumerate() {
            let input = match previous {
                Some(tokens) => {
                    let code = tokens[r] as usize;
                    assert!(
                        code < self.codes,
                        "token {code} is not a code (< {})",
                        self.codes
                    );
                    &self.embedding[code * w..(code + 1) * w]
                }
                None => &self.start[..],
            };
            for ((x, &e), &p) in x.iter_mut().zip(input).zip(position) {
                *x = e + p;
            }
        }
        for (block, cache) in self.blocks.iter().zip(&mut state.caches) {
            block
                .norm_attention
                .apply(&state.x, &state.rows, &mut state.normed);
            block.qkv.forward(&state.normed, b, &mut state.qkv);
            let attended = cache.append_and_attend(&state.qkv, 1);
            block.out.forward(&attended, b, &mut state.normed);
            add(&mut state.x, &state.normed);
            block
                .norm_mlp
                .apply(&state.x, &state.rows, &mut state.normed);
            let wide = &mut state.wide[..b * block.up.outputs()];
            block.up.forward(&state.normed, b, wide);
            wide.iter_mut().for_each(|v| *v = gelu2(*v));
            block.down.forward(wide, b, &mut state.normed);
            add(&mut state.x, &state.normed);
        }
        self.norm_out
            .apply(&state.x, &state.rows, &mut state.normed);
        self.head.forward(&state.normed, b, &mut state.logits);
        state.position += 1;
        &state.logits
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

/// The reference's GELU, `x * sigmoid(1.702 x)` (the prior's `gelu2`),
/// with the exponential only of non-positive numbers.
#[inline(always)]
fn gelu2(x: f32) -> f32 {
    let z = 1.702 * x;
    let e = exp_approx(-z.abs());
    let sigmoid = if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    x * sigmoid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu2_matches_its_definition() {
        for i in -400..=400 {
            let x = i as f32 / 40.0;
            let want = x as f64 / (1.0 + (-1.702 * x as f64).exp());
            assert!(
                (gelu2(x) as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                "gelu2({x})"
            );
        }
    }
}
