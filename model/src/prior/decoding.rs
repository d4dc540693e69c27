//! A prior packed for sampling on the host ([`Decoder`], the seam's cached
//! decoding step): its weights read out of the modules, the condition's
//! layer-norm affines folded per batch row.

use burn::tensor::Tensor;

use super::block::Block;
use super::norm::{ConditionalLayerNorm, EPSILON};
use super::{EncodedCondition, Prior};
use crate::data;
use crate::ops::{Decoder, DecoderBlock, FoldedNorm, PackedLinear};

/// `LN(x) * (1 + g) + b` with `LN`'s own `gamma`, `beta` gives the scale
/// `gamma (1 + g)` and the shift `beta (1 + g) + b`, per row of `condition`.
fn folded_norm(norm: &ConditionalLayerNorm, condition: Option<&Tensor<2>>) -> FoldedNorm {
    let gamma = data::float_values(norm.norm.gamma.val());
    let width = gamma.len();
    let epsilon = EPSILON as f32;
    let beta = norm
        .norm
        .beta
        .as_ref()
        .map_or_else(|| vec![0.0; width], |b| data::float_values(b.val()));
    let (Some(c), Some(gain), Some(bias)) = (condition, &norm.gain, &norm.bias) else {
        return FoldedNorm { width, scale: gamma, shift: beta, epsilon };
    };
    let g = data::float_values(gain.forward(c.clone()));
    let b = data::float_values(bias.forward(c.clone()));
    let scale = g.iter().enumerate().map(|(i, g)| gamma[i % width] * (1.0 + g)).collect();
    let shift = g
        .iter()
        .zip(&b)
        .enumerate()
        .map(|(i, (g, b))| beta[i % width] * (1.0 + g) + b)
        .collect();
    FoldedNorm { width, scale, shift, epsilon }
}

/// `None` for a block with cross-attention.
fn decoder_block(block: &Block, condition: Option<&Tensor<2>>) -> Option<DecoderBlock> {
    if block.cross.is_some() {
        return None;
    }
    Some(DecoderBlock {
        norm_attention: folded_norm(&block.norm_attention, condition),
        qkv: PackedLinear::from_linear(&block.attention.qkv),
        heads: block.attention.heads,
        out: PackedLinear::from_linear(&block.attention.out),
        norm_mlp: folded_norm(&block.norm_mlp, condition),
        up: PackedLinear::from_linear(&block.up),
        down: PackedLinear::from_linear(&block.down),
    })
}

/// `prior` (already `valid()`: no dropout) packed for the batch conditioned
/// on `condition`; `None` for frame-conditioned priors, which keep burn's
/// path.
pub fn decoder(prior: &Prior, condition: &EncodedCondition) -> Option<Decoder> {
    if prior.frames.is_some() || condition.memory.is_some() {
        return None;
    }
    let vector = condition.vector.as_ref();
    let blocks = prior
        .blocks
        .iter()
        .map(|b| decoder_block(b, vector))
        .collect::<Option<Vec<_>>>()?;
    let embedding = match (&prior.embed, &prior.codebook, &prior.project) {
        (Some(table), _, _) => table.weight.val(),
        (None, Some(vectors), Some(project)) => project.forward(vectors.val()),
        _ => unreachable!("a prior embeds tokens by a table or by its codebook"),
    };
    let [codes, hidden] = embedding.dims();
    Some(Decoder {
        hidden,
        codes,
        embedding: data::float_values(embedding),
        positions: data::float_values(prior.positions()),
        start: data::float_values(prior.start.val()),
        blocks,
        norm_out: folded_norm(&prior.norm_out, vector),
        head: PackedLinear::from_linear(&prior.head),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;
    use crate::ops::KvPrecision;
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
                decoder(&prior, &prior.encode_condition(&condition)).expect("no frames");
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
        assert!(decoder(&prior, &encoded).is_none());
    }
}
