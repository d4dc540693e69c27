//! The GPT prior of VideoGPT over the VQ-VAE's code grid: a pre-LN
//! transformer with causal self-attention over the flattened `(t, h, w)`
//! tokens, learned per-axis position embeddings broadcast over the grid, a
//! learned start token (the input is shifted right by one), dropout and
//! attention dropout, conditional LayerNorm for class and action
//! conditioning, a 3D ResNet frame encoder read by cross-attention in every
//! block for frame conditioning, and a zero-initialised output head.
//!
//! Token inputs are embedded either by a learned table, or as the reference
//! does by the VQ-VAE's frozen codebook vectors through a bias-free linear.

pub mod attention;
pub mod block;
pub mod context;
pub mod generate;
pub mod decoding;
pub mod norm;
pub mod sample;
pub mod train;

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::ops::linear_seq;
use crate::vqvae::attention::BroadcastPositionEmbedding;
use attention::KvCache;
use block::Block;
use context::{FrameEncoder, FrameEncoderConfig};
use norm::ConditionalLayerNorm;

/// How tokens enter the transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenEmbedding {
    /// A learned `codes x hidden` table.
    Learned,
    /// The VQ-VAE's codebook vectors (frozen) through a bias-free linear.
    Codebook,
}

#[derive(Config, Debug)]
pub struct PriorConfig {
    /// Latent grid `[t, h, w]` of the token tables.
    pub latent_grid: [usize; 3],
    /// Codebook size.
    pub codes: usize,
    /// Paper `gpt_small` (BAIR, ViZDoom): 8 layers x 4 heads x 512.
    #[config(default = 512)]
    pub hidden: usize,
    #[config(default = 4)]
    pub heads: usize,
    #[config(default = 8)]
    pub layers: usize,
    #[config(default = 0.2)]
    pub dropout: f64,
    #[config(default = 0.3)]
    pub attention_dropout: f64,
    #[config(default = "TokenEmbedding::Learned")]
    pub embedding: TokenEmbedding,
    /// Width of the codebook vectors (with `TokenEmbedding::Codebook`).
    #[config(default = "None")]
    pub codebook_dim: Option<usize>,
    /// Class-conditional: the number of classes (one-hot condition).
    #[config(default = "None")]
    pub classes: Option<usize>,
    /// Action-conditional: action values per clip (`T * D`, flattened).
    #[config(default = "None")]
    pub action_values: Option<usize>,
    /// Frame-conditional: the encoder of the first `k` frames, read by
    /// cross-attention in every block.
    #[config(default = "None")]
    pub context: Option<FrameEncoderConfig>,
}

/// What a batch is conditioned on.
#[derive(Debug, Clone, Default)]
pub struct Condition {
    /// One-hot class and/or flattened actions `[b, width]` (conditional LayerNorm).
    pub vector: Option<Tensor<2>>,
    /// The first `k` frames `[b, C, k, H, W]` in `[-0.5, 0.5]` (cross-attention).
    pub frames: Option<Tensor<5>>,
}

impl Condition {
    pub fn vector(vector: Option<Tensor<2>>) -> Self {
        Self { vector, frames: None }
    }
}

/// A condition with the frames already through the frame encoder: what
/// one sampling step needs (the memory is encoded once per sample).
#[derive(Debug, Clone, Default)]
pub struct EncodedCondition {
    pub vector: Option<Tensor<2>>,
    /// `[b, m, width]`.
    pub memory: Option<Tensor<3>>,
}

impl EncodedCondition {
    /// The batch rows `rows` of the condition.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Self {
        Self {
            vector: self.vector.clone().map(|v| v.narrow(0, rows.start, rows.len())),
            memory: self.memory.clone().map(|m| m.narrow(0, rows.start, rows.len())),
        }
    }
}

/// Widest prior accepted (the paper's largest is 1024).
pub const MAX_WIDTH: usize = 16_384;
/// Deepest prior accepted (the paper's deepest is 20).
pub const MAX_LAYERS: usize = 1_024;
/// Most parameters accepted: 4 bytes each, three times over with Adam's
/// two moments, is 12 GB.
pub const MAX_PARAMETERS: u64 = 1 << 30;

pub const PRIOR_PRESETS: &[&str] = &["bair", "vizdoom", "ucf101", "tgif", "moving-mnist", "reference-bench", "tiny"];

impl PriorConfig {
    /// The named architecture for a token grid and codebook.
    pub fn preset(name: &str, latent_grid: [usize; 3], codes: usize) -> Option<Self> {
        let base = Self::new(latent_grid, codes);
        Some(match name {
            "bair" | "vizdoom" => base,
            // Paper gpt_large.
            "ucf101" | "tgif" => base.with_hidden(1024).with_heads(8).with_layers(20),
            // The configuration the official code was timed at (docs/performance.md).
            "reference-bench" => base.with_hidden(192).with_heads(4).with_layers(4),
            // CPU scale: a few hundred steps in minutes on 2 cores (the demo).
            // No attention dropout: on a CPU, dropping out the b x heads x
            // n x n attention weights costs as much as the attention itself.
            "moving-mnist" => base
                .with_hidden(96)
                .with_heads(2)
                .with_layers(2)
                .with_dropout(0.1)
                .with_attention_dropout(0.0),
            "tiny" => base.with_hidden(48).with_heads(2).with_layers(2),
            _ => return None,
        })
    }

    pub fn tokens(&self) -> usize {
        self.latent_grid.iter().product()
    }

    /// Width of the condition vector (one-hot class, then actions).
    pub fn condition_width(&self) -> Option<usize> {
        let w = self.classes.unwrap_or(0) + self.action_values.unwrap_or(0);
        (w > 0).then_some(w)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.heads == 0 || self.layers == 0 {
            return Err(format!("heads ({}) and layers ({}) must be at least 1", self.heads, self.layers));
        }
        for (name, p) in [("dropout", self.dropout), ("attention dropout", self.attention_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} {p} is not in [0, 1)"));
            }
        }
        if self.hidden > MAX_WIDTH || self.layers > MAX_LAYERS {
            return Err(format!(
                "hidden {} / layers {} are over this tool's bounds ({MAX_WIDTH} / {MAX_LAYERS})",
                self.hidden, self.layers
            ));
        }
        let parameters = self.layers as u128 * 12 * (self.hidden as u128).pow(2)
            + (self.codes as u128 + self.tokens() as u128) * self.hidden as u128;
        if parameters > MAX_PARAMETERS as u128 {
            return Err(format!(
                "about {parameters} parameters, over this tool's bound of {MAX_PARAMETERS} (one device holds the model and its Adam state)"
            ));
        }
        if self.hidden % self.heads != 0 {
            return Err(format!("hidden {} does not divide into {} heads", self.hidden, self.heads));
        }
        if self.hidden < 3 {
            return Err("hidden must be at least 3 (one position table per axis)".into());
        }
        if self.tokens() < 2 {
            return Err(format!("latent grid {:?} has fewer than 2 tokens", self.latent_grid));
        }
        if self.embedding == TokenEmbedding::Codebook && self.codebook_dim.is_none() {
            return Err("codebook embedding needs codebook_dim".into());
        }
        if let Some(context) = &self.context {
            context.validate()?;
        }
        Ok(())
    }

    /// A fresh prior. `codebook` (`[codes, dim]`) is required with the
    /// codebook embedding and ignored otherwise.
    pub fn init(&self, codebook: Option<Tensor<2>>, device: &Device) -> Prior {
        if let Err(e) = self.validate() {
            panic!("invalid prior config: {e}");
        }
        let condition = self.condition_width();
        let (embed, frozen, project) = match self.embedding {
            TokenEmbedding::Learned => (Some(EmbeddingConfig::new(self.codes, self.hidden).init(device)), None, None),
            TokenEmbedding::Codebook => {
                let dim = self.codebook_dim.expect("validated");
                let vectors = codebook
                    .unwrap_or_else(|| Tensor::zeros([self.codes, dim], device))
                    .to_device(device);
                (
                    None,
                    Some(Param::from_tensor(vectors).set_require_grad(false)),
                    Some(LinearConfig::new(dim, self.hidden).with_bias(false).init(device)),
                )
            }
        };
        Prior {
            embed,
            codebook: frozen,
            project,
            start: Initializer::Normal { mean: 0.0, std: 0.02 }.init([self.hidden], device),
            position: BroadcastPositionEmbedding::new(self.latent_grid, self.hidden, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            frames: self.context.as_ref().map(|c| c.init(device)),
            blocks: (0..self.layers)
                .map(|_| {
                    Block::new(
                        self.hidden,
                        self.heads,
                        self.dropout,
                        self.attention_dropout,
                        condition,
                        self.context.as_ref().map(|c| c.width),
                        device,
                    )
                })
                .collect(),
            norm_out: ConditionalLayerNorm::new(self.hidden, condition, device),
            head: LinearConfig::new(self.hidden, self.codes)
                .with_bias(false)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct Prior {
    embed: Option<Embedding>,
    /// Frozen codebook vectors `[codes, dim]` (codebook embedding).
    codebook: Option<Param<Tensor<2>>>,
    project: Option<Linear>,
    start: Param<Tensor<1>>,
    position: BroadcastPositionEmbedding,
    dropout: Dropout,
    /// Frame-conditioned priors: the encoder of the conditioning frames.
    frames: Option<FrameEncoder>,
    blocks: Vec<Block>,
    norm_out: ConditionalLayerNorm,
    head: Linear,
}

impl Prior {
    pub fn layers(&self) -> usize {
        self.blocks.len()
    }

    /// `[b, n]` tokens -> `[b, n, hidden]`.
    fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        if let Some(embed) = &self.embed {
            return embed.forward(tokens);
        }
        let [b, n] = tokens.dims();
        let vectors = self.codebook.as_ref().expect("codebook embedding").val();
        let rows = vectors.select(0, tokens.reshape([b * n]));
        let projected = crate::ops::linear(self.project.as_ref().expect("codebook projection"), rows);
        let hidden = projected.dims()[1];
        projected.reshape([b, n, hidden])
    }

    /// `[n, hidden]` position embeddings in raster order.
    fn positions(&self) -> Tensor<2> {
        let table = self.position.table();
        let [t, h, w, c] = table.dims();
        table.reshape([t * h * w, c])
    }

    fn start(&self, batch: usize) -> Tensor<3> {
        let hidden = self.start.dims()[0];
        self.start.val().reshape([1, 1, hidden]).expand([batch, 1, hidden])
    }

    /// Runs the conditioning frames (if any) through the frame encoder.
    /// Panics when the prior is frame-conditioned and `condition` has no
    /// frames (callers check: the training and sampling commands do).
    pub fn encode_condition(&self, condition: &Condition) -> EncodedCondition {
        let memory = match (&self.frames, &condition.frames) {
            (Some(encoder), Some(frames)) => Some(encoder.forward(frames.clone())),
            (Some(_), None) => panic!("a frame-conditioned prior needs conditioning frames"),
            (None, _) => None,
        };
        EncodedCondition {
            vector: condition.vector.clone(),
            memory,
        }
    }

    /// Logits `[b, n, codes]`; position `i` predicts token `i` from the
    /// tokens before it.
    pub fn forward(&self, tokens: Tensor<2, Int>, condition: &Condition) -> Tensor<3> {
        let encoded = self.encode_condition(condition);
        let (memory, condition) = (encoded.memory.as_ref(), encoded.vector.as_ref());
        let [b, n] = tokens.dims();
        let embedded = self.embed(tokens);
        let mut x = if n > 1 {
            Tensor::cat(vec![self.start(b), embedded.narrow(1, 0, n - 1)], 1)
        } else {
            self.start(b)
        };
        x = x + self.positions().narrow(0, 0, n).unsqueeze_dim::<3>(0);
        x = crate::ops::dropout(&self.dropout, x);
        for block in &self.blocks {
            x = block.forward(x, condition, memory);
        }
        linear_seq(&self.head, self.norm_out.forward(x, condition))
    }

    /// Mean cross-entropy in nats per token.
    pub fn loss(&self, tokens: Tensor<2, Int>, condition: &Condition) -> Tensor<1> {
        let [b, n] = tokens.dims();
        let logits = self.forward(tokens.clone(), condition);
        let codes = logits.dims()[2];
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.reshape([b * n, codes]), tokens.reshape([b * n]))
    }

    /// Fresh caches, one per block. `precision`: how the CPU (flex) keeps
    /// cached keys and values; other devices keep them as tensors.
    pub fn empty_caches(&self, precision: crate::ops::KvPrecision) -> Vec<KvCache> {
        vec![KvCache::new(precision); self.blocks.len()]
    }

    /// Logits `[b, codes]` for position `i = caches' length`, given the
    /// previous token (`None` at position 0: the start token). Appends to
    /// the caches.
    pub fn step(
        &self,
        previous: Option<Tensor<2, Int>>,
        batch: usize,
        condition: &EncodedCondition,
        caches: &mut [KvCache],
    ) -> Tensor<2> {
        let (memory, condition) = (condition.memory.as_ref(), condition.vector.as_ref());
        let i = caches.first().map_or(0, |c| c.len());
        let x = match previous {
            Some(tokens) => self.embed(tokens),
            None => self.start(batch),
        };
        let mut x = x + self.position.row(i).unsqueeze_dim::<3>(0);
        for (block, cache) in self.blocks.iter().zip(caches.iter_mut()) {
            x = block.forward_cached(x, condition, memory, cache);
        }
        let logits = self.head.forward(self.norm_out.forward(x, condition));
        let codes = logits.dims()[2];
        logits.reshape([batch, codes])
    }

    /// The condition vectors `[b, width]` for `labels` (one-hot) and/or
    /// flattened `actions`, as the config expects; `None` without one.
    pub fn condition(
        config: &PriorConfig,
        labels: Option<&[i32]>,
        actions: Option<&[Vec<f32>]>,
        batch: usize,
        device: &Device,
    ) -> Option<Tensor<2>> {
        let width = config.condition_width()?;
        let mut values = vec![0f32; batch * width];
        if let (Some(classes), Some(labels)) = (config.classes, labels) {
            for (row, &label) in labels.iter().enumerate().take(batch) {
                if (0..classes as i32).contains(&label) {
                    values[row * width + label as usize] = 1.0;
                }
            }
        }
        if let (Some(n), Some(actions)) = (config.action_values, actions) {
            let offset = config.classes.unwrap_or(0);
            for (row, a) in actions.iter().enumerate().take(batch) {
                for (j, &v) in a.iter().take(n).enumerate() {
                    values[row * width + offset + j] = v;
                }
            }
        }
        Some(Tensor::from_data(TensorData::new(values, [batch, width]), device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;
    use burn::tensor::{Distribution, Tolerance};

    fn tiny(device: &Device) -> (PriorConfig, Prior) {
        let config = PriorConfig::preset("tiny", [2, 3, 4], 16).unwrap().with_classes(Some(3));
        let mut prior = config.init(None, device);
        // The head starts at zero (all logits equal); give it weights so the
        // tests see the inputs' influence.
        prior.head = LinearConfig::new(config.hidden, config.codes).with_bias(false).init(device);
        (config, prior)
    }

    fn tokens(values: Vec<i64>, b: usize, device: &Device) -> Tensor<2, Int> {
        let n = values.len() / b;
        Tensor::from_data(TensorData::new(values, [b, n]), device)
    }

    #[test]
    fn changing_token_j_never_changes_logits_at_or_before_j() {
        let device = Device::flex();
        let (config, prior) = tiny(&device);
        let n = config.tokens();
        let base: Vec<i64> = (0..n as i64).map(|i| (i * 5) % 16).collect();
        let cond = Condition::vector(Prior::condition(&config, Some(&[2]), None, 1, &device));
        let a = data::float_values(prior.forward(tokens(base.clone(), 1, &device), &cond));
        for j in [0, 7, n - 1] {
            let mut changed = base.clone();
            changed[j] = (changed[j] + 3) % 16;
            let b = data::float_values(prior.forward(tokens(changed, 1, &device), &cond));
            let codes = config.codes;
            for pos in 0..n {
                let same = a[pos * codes..(pos + 1) * codes] == b[pos * codes..(pos + 1) * codes];
                if pos <= j {
                    assert!(same, "token {j} changed the logits at position {pos}");
                } else if pos == j + 1 {
                    assert!(!same, "token {j} must change the next position's logits");
                }
            }
        }
    }

    #[test]
    fn cached_decoding_equals_the_full_forward_pass() {
        let device = Device::flex();
        let (config, prior) = tiny(&device);
        let n = config.tokens();
        let values: Vec<i64> = (0..2 * n as i64).map(|i| (i * 7 + 3) % 16).collect();
        let cond = Condition::vector(Prior::condition(&config, Some(&[0, 1]), None, 2, &device));
        let full = data::float_values(prior.forward(tokens(values.clone(), 2, &device), &cond));
        let cond = prior.encode_condition(&cond);
        // f32: exact up to summation order. f16 rounds the cached keys and
        // values to 11 significant bits; the logits here are of order 1.
        for (precision, tolerance) in [(crate::ops::KvPrecision::F32, 1e-4), (crate::ops::KvPrecision::F16, 5e-3)] {
            let mut caches = prior.empty_caches(precision);
            let mut steps = Vec::new();
            for i in 0..n {
                let previous = (i > 0).then(|| tokens(vec![values[i - 1], values[n + i - 1]], 2, &device));
                steps.push(prior.step(previous, 2, &cond, &mut caches).unsqueeze_dim::<3>(1));
            }
            let cached = data::float_values(Tensor::cat(steps, 1));
            let worst = full.iter().zip(&cached).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < tolerance, "{precision} cache: logits differ by {worst}");
        }
    }

    #[test]
    fn frame_conditioned_prior_reads_the_frames_and_caches_them() {
        let device = Device::flex();
        let config = PriorConfig::preset("tiny", [2, 2, 3], 16)
            .unwrap()
            .with_dropout(0.0)
            .with_attention_dropout(0.0)
            .with_context(Some(FrameEncoderConfig::new([1, 8, 8, 1]).with_width(12).with_blocks_per_stage(1)));
        let mut prior = config.init(None, &device);
        prior.head = LinearConfig::new(config.hidden, config.codes).with_bias(false).init(&device);
        let n = config.tokens();
        let values: Vec<i64> = (0..2 * n as i64).map(|i| (i * 5 + 1) % 16).collect();
        let frames = Tensor::<5>::random([2, 1, 1, 8, 8], Distribution::Default, &device);
        let cond = Condition { vector: None, frames: Some(frames.clone()) };
        let full = prior.forward(tokens(values.clone(), 2, &device), &cond);

        // Other frames, other logits (already at position 0).
        let other = Condition { vector: None, frames: Some(frames.clone().neg()) };
        let changed = prior.forward(tokens(values.clone(), 2, &device), &other);
        assert_ne!(
            data::float_values(full.clone().narrow(1, 0, 1)),
            data::float_values(changed.narrow(1, 0, 1))
        );

        // The cached path (memory encoded once) equals the full pass.
        let encoded = prior.encode_condition(&cond);
        let mut caches = prior.empty_caches(crate::ops::KvPrecision::F32);
        let mut steps = Vec::new();
        for i in 0..n {
            let previous = (i > 0).then(|| tokens(vec![values[i - 1], values[n + i - 1]], 2, &device));
            steps.push(prior.step(previous, 2, &encoded, &mut caches).unsqueeze_dim::<3>(1));
        }
        full.into_data()
            .assert_approx_eq::<f32>(&Tensor::cat(steps, 1).into_data(), Tolerance::absolute(1e-4));
    }

    #[test]
    fn conditional_layer_norm_with_a_zero_condition_is_plain_layer_norm() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device);
        let mut conditional = ConditionalLayerNorm::new(8, Some(3), &device);
        let plain = ConditionalLayerNorm::new(8, None, &device);
        // Trained-looking condition weights: still plain LN at c = 0.
        conditional = conditional.map(&mut RandomiseConditionWeights);
        let zero = Tensor::<2>::zeros([2, 3], &device);
        let a = conditional.forward(x.clone(), Some(&zero));
        let b = plain.forward(x.clone(), None);
        a.into_data().assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-6));
        let one = Tensor::<2>::ones([2, 3], &device);
        let c = conditional.forward(x, Some(&one));
        assert!(data::float_values(c) != data::float_values(plain.forward(Tensor::zeros([2, 5, 8], &device), None)));
    }

    /// Replaces every 2-D parameter (the condition maps) with random values.
    struct RandomiseConditionWeights;
    impl burn::module::ModuleMapper for RandomiseConditionWeights {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if D == 2 {
                let shape = param.shape();
                let device = param.device();
                param.map(|_| Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device))
            } else {
                param
            }
        }
    }

    #[test]
    fn save_and_load_give_the_same_logits() {
        use burn::store::ModuleRecord;
        let device = Device::flex();
        let (config, prior) = tiny(&device);
        let input = tokens((0..config.tokens() as i64).map(|i| i % 16).collect(), 1, &device);
        let cond = Condition::vector(Prior::condition(&config, Some(&[1]), None, 1, &device));
        let before = data::float_values(prior.forward(input.clone(), &cond));
        let bytes = prior.clone().into_record().into_bytes().unwrap();
        let loaded = config
            .init(None, &device)
            .load_record(ModuleRecord::from_bytes(bytes).unwrap());
        assert_eq!(before, data::float_values(loaded.forward(input, &cond)));
    }

    #[test]
    fn codebook_embedding_uses_the_frozen_vectors() {
        let device = Device::flex();
        let codebook = Tensor::<2>::random([16, 6], Distribution::Default, &device);
        let config = PriorConfig::preset("tiny", [2, 2, 2], 16)
            .unwrap()
            .with_embedding(TokenEmbedding::Codebook)
            .with_codebook_dim(Some(6));
        let prior = config.init(Some(codebook.clone()), &device);
        let stored = prior.codebook.as_ref().unwrap().val();
        stored.into_data().assert_eq(&codebook.into_data(), true);
        let logits = prior.forward(tokens(vec![1, 2, 3, 4, 5, 6, 7, 8], 1, &device), &Condition::default());
        assert_eq!(logits.dims(), [1, 8, 16]);
    }
}
