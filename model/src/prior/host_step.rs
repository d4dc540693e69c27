//! The whole sampling step on the host, for the CPU (flex).
//!
//! One token step of a small prior is a few dozen tiny operations per
//! layer (layer norms, four matrix products, attention, GELU, residual
//! adds) on a handful of rows. Through burn each is a dispatch with its own
//! buffers, and the products re-pack their weights on every call. Here the
//! weights are packed once when sampling starts ([`PackedLinear`]), the
//! condition's layer-norm affines are folded per row, and a step runs in
//! place in a few reusable buffers, with the attention of
//! [`HostKvCache`].
//!
//! Frame-conditioned priors (cross-attention to the frame memory) keep the
//! burn path.

use std::ops::Range;

use burn::tensor::Tensor;

use super::block::Block;
use super::host_attention::{HostKvCache, KvPrecision, exp_approx};
use super::host_linear::PackedLinear;
use super::norm::{ConditionalLayerNorm, EPSILON};
use super::{EncodedCondition, Prior};
use crate::data;

/// A layer norm with its affine folded per batch row:
/// `y = (x - mean) / sqrt(var + eps) * scale[row] + shift[row]`.
#[derive(Debug, Clone)]
struct HostNorm {
    width: usize,
    /// `[rows, width]`; one row when there is no condition (shared).
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl HostNorm {
    /// `LN(x) * (1 + g) + b` with `LN`'s own `gamma`, `beta` gives the
    /// scale `gamma (1 + g)` and the shift `beta (1 + g) + b`.
    fn new(norm: &ConditionalLayerNorm, condition: Option<&Tensor<2>>) -> Self {
        let gamma = data::float_values(norm.norm.gamma.val());
        let width = gamma.len();
        let beta = norm
            .norm
            .beta
            .as_ref()
            .map_or_else(|| vec![0.0; width], |b| data::float_values(b.val()));
        let (Some(c), Some(gain), Some(bias)) = (condition, &norm.gain, &norm.bias) else {
            return Self {
                width,
                scale: gamma,
                shift: beta,
            };
        };
        let g = data::float_values(gain.forward(c.clone()));
        let b = data::float_values(bias.forward(c.clone()));
        let scale = g
            .iter()
            .enumerate()
            .map(|(i, g)| gamma[i % width] * (1.0 + g))
            .collect();
        let shift = g
            .iter()
            .zip(&b)
            .enumerate()
            .map(|(i, (g, b))| beta[i % width] * (1.0 + g) + b)
            .collect();
        Self {
            width,
            scale,
            shift,
        }
    }

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
            let inverse = 1.0 / (var + EPSILON as f32).sqrt();
            for (((o, &v), &s), &t) in out.iter_mut().zip(x).zip(scale).zip(shift) {
                *o = (v - mean) * inverse * s + t;
            }
        }
    }
}

#[derive(Debug, Clone)]
struct HostBlock {
    norm_attention: HostNorm,
    qkv: PackedLinear,
    heads: usize,
    out: PackedLinear,
    norm_mlp: HostNorm,
    up: PackedLinear,
    down: PackedLinear,
}

impl HostBlock {
    /// `None` for a block with cross-attention.
    fn new(block: &Block, condition: Option<&Tensor<2>>) -> Option<Self> {
        if block.cross.is_some() {
            return None;
        }
        Some(Self {
            norm_attention: HostNorm::new(&block.norm_attention, condition),
            qkv: PackedLinear::from_linear(&block.attention.qkv),
            heads: block.attention.heads,
            out: PackedLinear::from_linear(&block.attention.out),
            norm_mlp: HostNorm::new(&block.norm_mlp, condition),
            up: PackedLinear::from_linear(&block.up),
            down: PackedLinear::from_linear(&block.down),
        })
    }
}

/// A prior's weights, packed for sampling on the host.
#[derive(Debug, Clone)]
pub struct HostPrior {
    hidden: usize,
    codes: usize,
    /// `[codes, hidden]`: the learned table, or the codebook vectors
    /// through their projection.
    embedding: Vec<f32>,
    /// `[n, hidden]` in raster order.
    positions: Vec<f32>,
    start: Vec<f32>,
    blocks: Vec<HostBlock>,
    norm_out: HostNorm,
    head: PackedLinear,
}

/// One row group's sampling state: its caches, position and buffers.
#[derive(Debug, Clone)]
pub struct HostState {
    rows: Range<usize>,
    caches: Vec<HostKvCache>,
    position: usize,
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    wide: Vec<f32>,
    logits: Vec<f32>,
}

impl HostState {
    /// Positions decoded so far.
    pub fn len(&self) -> usize {
        self.position
    }

    pub fn is_empty(&self) -> bool {
        self.position == 0
    }
}

impl HostPrior {
    /// Packs `prior` (already `valid()`: no dropout) for the batch
    /// conditioned on `condition`. `None` for frame-conditioned priors.
    pub fn new(prior: &Prior, condition: &EncodedCondition) -> Option<Self> {
        if prior.frames.is_some() || condition.memory.is_some() {
            return None;
        }
        let vector = condition.vector.as_ref();
        let blocks = prior
            .blocks
            .iter()
            .map(|b| HostBlock::new(b, vector))
            .collect::<Option<Vec<_>>>()?;
        let embedding = match (&prior.embed, &prior.codebook, &prior.project) {
            (Some(table), _, _) => table.weight.val(),
            (None, Some(vectors), Some(project)) => project.forward(vectors.val()),
            _ => unreachable!("a prior embeds tokens by a table or by its codebook"),
        };
        let [codes, hidden] = embedding.dims();
        Some(Self {
            hidden,
            codes,
            embedding: data::float_values(embedding),
            positions: data::float_values(prior.positions()),
            start: data::float_values(prior.start.val()),
            blocks,
            norm_out: HostNorm::new(&prior.norm_out, vector),
            head: PackedLinear::from_linear(&prior.head),
        })
    }

    /// A fresh state for the batch rows `rows`.
    pub fn state(&self, rows: Range<usize>, precision: KvPrecision) -> HostState {
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
        HostState {
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
    pub fn step<'a>(&self, previous: Option<&[u16]>, state: &'a mut HostState) -> &'a [f32] {
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

/// The reference's GELU, `x * sigmoid(1.702 x)` ([`super::block::gelu2`]),
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
    use crate::prior::{Condition, PriorConfig, TokenEmbedding};
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::{Device, Distribution, Int, TensorData};

    /// Every float parameter random (heads, condition maps and layer-norm
    /// affines are zero or one at initialisation, which would hide them).
    struct Randomise;
    impl ModuleMapper for Randomise {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (shape, device) = (param.shape(), param.device());
            param.map(|_| Tensor::random(shape, Distribution::Normal(0.0, 0.5), &device))
        }
    }

    /// Host decoding, token by token, against the full forward pass: a
    /// class-conditional prior (a condition per row), an unconditional one,
    /// and one embedding through the codebook; both cache precisions.
    #[test]
    fn host_decoding_equals_the_full_forward_pass() {
        let device = Device::flex();
        let grid = [2, 3, 4];
        let tiny = || PriorConfig::preset("tiny", grid, 16).unwrap();
        let cases = [
            (
                "class-conditional",
                tiny().with_classes(Some(3)),
                Some(vec![0, 2, 1]),
            ),
            ("unconditional", tiny(), None),
            (
                "codebook embedding",
                tiny()
                    .with_embedding(TokenEmbedding::Codebook)
                    .with_codebook_dim(Some(6)),
                None,
            ),
        ];
        for (name, config, labels) in cases {
            let codebook = Tensor::<2>::random([16, 6], Distribution::Default, &device);
            let prior = config.init(Some(codebook), &device).map(&mut Randomise);
            let b = 3;
            let n = config.tokens();
            let values: Vec<i64> = (0..(b * n) as i64).map(|i| (i * 7 + 3) % 16).collect();
            let tokens =
                Tensor::<2, Int>::from_data(TensorData::new(values.clone(), [b, n]), &device);
            let vector = Prior::condition(&config, labels.as_deref(), None, b, &device);
            let condition = Condition::vector(vector);
            let full = data::float_values(prior.forward(tokens, &condition));
            let scale = full.iter().fold(0f32, |m, v| m.max(v.abs()));
            let host =
                HostPrior::new(&prior, &prior.encode_condition(&condition)).expect("no frames");
            for (precision, tolerance) in [(KvPrecision::F32, 2e-5), (KvPrecision::F16, 5e-3)] {
                // Rows 0 and 1 in one group, row 2 in another.
                for rows in [0..2, 2..3] {
                    let mut state = host.state(rows.clone(), precision);
                    for i in 0..n {
                        let previous: Vec<u16> = rows
                            .clone()
                            .map(|r| values[r * n + i.max(1) - 1] as u16)
                            .collect();
                        let logits = host
                            .step((i > 0).then_some(&previous[..]), &mut state)
                            .to_vec();
                        for (k, r) in rows.clone().enumerate() {
                            let want = &full[(r * n + i) * 16..(r * n + i + 1) * 16];
                            let got = &logits[k * 16..(k + 1) * 16];
                            let worst = want
                                .iter()
                                .zip(got)
                                .map(|(a, b)| (a - b).abs())
                                .fold(0f32, f32::max);
                            assert!(
                                worst <= tolerance * scale.max(1.0),
                                "{name}, {precision} cache, row {r}, position {i}: logits differ by {worst} (scale {scale})"
                            );
                        }
                    }
                    assert_eq!(state.len(), n);
                }
            }
        }
    }

    #[test]
    fn frame_conditioned_priors_keep_the_burn_path() {
        use crate::prior::context::FrameEncoderConfig;
        let device = Device::flex();
        let config = PriorConfig::preset("tiny", [2, 2, 3], 16)
            .unwrap()
            .with_context(Some(
                FrameEncoderConfig::new([1, 8, 8, 1])
                    .with_width(12)
                    .with_blocks_per_stage(1),
            ));
        let prior = config.init(None, &device);
        let frames = Tensor::<5>::random([1, 1, 1, 8, 8], Distribution::Default, &device);
        let encoded = prior.encode_condition(&Condition {
            vector: None,
            frames: Some(frames),
        });
        assert!(HostPrior::new(&prior, &encoded).is_none());
    }

    #[test]
    fn gelu2_matches_its_burn_definition() {
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
