//! Frame conditioning: the first `k` frames of a clip through a 3D ResNet
//! encoder into a memory of feature vectors, which every transformer block
//! reads with cross-attention (the paper's BAIR protocol conditions on one
//! frame).
//!
//! The reference uses a 3D ResNet-34 (240 wide, BatchNorm) that reduces
//! height and width by 4. This one has the same shape contract, a stem and
//! one stage per halving of height and width, with `blocks_per_stage` basic
//! residual blocks each, and GroupNorm instead of BatchNorm so that training
//! and sampling behave the same at any batch size (batch 1 included).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use super::attention::KvCache;
use crate::vqvae::attention::BroadcastPositionEmbedding;
use crate::vqvae::conv::SamePadConv3d;

#[derive(Config, Debug)]
pub struct FrameEncoderConfig {
    /// `[k, H, W, C]` of the conditioning frames.
    pub shape: [usize; 4],
    /// Feature width (the reference's `resnet_dim`).
    #[config(default = 240)]
    pub width: usize,
    /// Height and width are reduced by this factor (a power of two).
    #[config(default = 4)]
    pub downsample: usize,
    #[config(default = 2)]
    pub blocks_per_stage: usize,
}

impl FrameEncoderConfig {
    /// `[k, H / downsample, W / downsample]`: the memory grid.
    pub fn memory_grid(&self) -> [usize; 3] {
        let [k, h, w, _] = self.shape;
        [k, h.div_ceil(self.downsample), w.div_ceil(self.downsample)]
    }

    pub fn validate(&self) -> Result<(), String> {
        let [k, h, w, c] = self.shape;
        if k == 0 || h == 0 || w == 0 || c == 0 {
            return Err(format!("conditioning frames of shape {:?}", self.shape));
        }
        if !self.downsample.is_power_of_two() {
            return Err(format!("frame downsample {} is not a power of two", self.downsample));
        }
        if self.width < 3 || self.width % groups(self.width) != 0 {
            return Err(format!("frame encoder width {} is too small", self.width));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> FrameEncoder {
        let [_, _, _, c] = self.shape;
        let n = self.width;
        let stages = self.downsample.trailing_zeros() as usize;
        let mut blocks = Vec::new();
        for _ in 0..stages {
            blocks.push(BasicBlock::new(n, [1, 2, 2], device));
            for _ in 1..self.blocks_per_stage {
                blocks.push(BasicBlock::new(n, [1, 1, 1], device));
            }
        }
        if stages == 0 {
            for _ in 0..self.blocks_per_stage {
                blocks.push(BasicBlock::new(n, [1, 1, 1], device));
            }
        }
        FrameEncoder {
            stem: SamePadConv3d::new([c, n], 3, [1, 1, 1], false, device),
            stem_norm: GroupNormConfig::new(groups(n), n).init(device),
            blocks,
            position: BroadcastPositionEmbedding::new(self.memory_grid(), n, device),
        }
    }
}

/// GroupNorm groups for `channels`: 8 where it divides, else the largest
/// divisor below 8.
fn groups(channels: usize) -> usize {
    (1..=8).rev().find(|g| channels % g == 0).unwrap_or(1)
}

/// conv3-norm-relu-conv3-norm plus the input (strided 1x1x1 conv when the
/// block downsamples), then ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: SamePadConv3d,
    norm1: GroupNorm,
    conv2: SamePadConv3d,
    norm2: GroupNorm,
    shortcut: Option<SamePadConv3d>,
}

impl BasicBlock {
    fn new(n: usize, stride: [usize; 3], device: &Device) -> Self {
        let norm = || GroupNormConfig::new(groups(n), n).init(device);
        Self {
            conv1: SamePadConv3d::new([n, n], 3, stride, false, device),
            norm1: norm(),
            conv2: SamePadConv3d::new([n, n], 3, [1, 1, 1], false, device),
            norm2: norm(),
            shortcut: (stride != [1, 1, 1]).then(|| SamePadConv3d::new([n, n], 1, stride, false, device)),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let y = relu(self.norm1.forward(self.conv1.forward(x.clone())));
        let y = self.norm2.forward(self.conv2.forward(y));
        let skip = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        relu(y + skip)
    }
}

#[derive(Module, Debug)]
pub struct FrameEncoder {
    stem: SamePadConv3d,
    stem_norm: GroupNorm,
    blocks: Vec<BasicBlock>,
    position: BroadcastPositionEmbedding,
}

impl FrameEncoder {
    /// Frames `[b, C, k, H, W]` in `[-0.5, 0.5]` -> memory `[b, m, width]`
    /// (m = k * H/d * W/d, raster order) with position embeddings.
    pub fn forward(&self, frames: Tensor<5>) -> Tensor<3> {
        let mut x = relu(self.stem_norm.forward(self.stem.forward(frames)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let [b, c, t, h, w] = x.dims();
        let x = x.permute([0, 2, 3, 4, 1]) + self.position.table().unsqueeze_dim::<5>(0);
        x.reshape([b, t * h * w, c])
    }
}

/// uint8 `[b, k, H, W, C]` rows (as token tables store them) -> float
/// `[b, C, k, H, W]` in `[-0.5, 0.5]`.
pub fn frames_tensor(bytes: &[u8], batch: usize, shape: [usize; 4], device: &Device) -> Tensor<5> {
    let [k, h, w, c] = shape;
    let per = k * h * w * c;
    assert_eq!(bytes.len(), batch * per, "context frames: {} bytes for {batch} x {shape:?}", bytes.len());
    let mut values = vec![0f32; bytes.len()];
    for (row, out) in bytes.chunks_exact(per).zip(values.chunks_exact_mut(per)) {
        crate::data::clip_to_channels_first(row, shape, out);
    }
    Tensor::from_data(TensorData::new(values, [batch, c, k, h, w]), device)
}

/// Multi-head attention from the token stream (queries) to the frame
/// memory (keys and values); no mask. The memory's keys and values are the
/// same for every position, so sampling computes them once and keeps them
/// in the block's cache.
#[derive(Module, Debug)]
pub struct CrossAttention {
    query: Linear,
    key_value: Linear,
    out: Linear,
    attention_dropout: Dropout,
    residual_dropout: Dropout,
    heads: usize,
}

impl CrossAttention {
    pub fn new(width: usize, memory_width: usize, heads: usize, dropout: f64, attention_dropout: f64, device: &Device) -> Self {
        let std = 1.0 / (width as f64).sqrt();
        let init = Initializer::Normal { mean: 0.0, std };
        Self {
            query: LinearConfig::new(width, width).with_bias(false).with_initializer(init.clone()).init(device),
            key_value: LinearConfig::new(memory_width, 2 * width)
                .with_bias(false)
                .with_initializer(Initializer::Normal { mean: 0.0, std: 1.0 / (memory_width as f64).sqrt() })
                .init(device),
            out: LinearConfig::new(width, width).with_initializer(init).init(device),
            attention_dropout: DropoutConfig::new(attention_dropout).init(),
            residual_dropout: DropoutConfig::new(dropout).init(),
            heads,
        }
    }

    /// Memory `[b, m, memory_width]` -> keys and values `[b, heads, m, d]`.
    fn keys_values(&self, memory: &Tensor<3>) -> [Tensor<4>; 2] {
        let [b, m, _] = memory.dims();
        let width = self.query.weight.dims()[1];
        let d = width / self.heads;
        let kv = self
            .key_value
            .forward(memory.clone())
            .reshape([b, m, 2, self.heads, d])
            .permute([2, 0, 3, 1, 4]);
        [0, 1].map(|i| kv.clone().narrow(0, i, 1).reshape([b, self.heads, m, d]))
    }

    fn attend(&self, x: Tensor<3>, keys: Tensor<4>, values: Tensor<4>) -> Tensor<3> {
        let [b, n, width] = x.dims();
        let d = width / self.heads;
        let q = self.query.forward(x).reshape([b, n, self.heads, d]).swap_dims(1, 2);
        let scores = q.matmul(keys.swap_dims(2, 3)).div_scalar((d as f64).sqrt());
        let weights = self.attention_dropout.forward(softmax(scores, 3));
        let y = weights.matmul(values).swap_dims(1, 2).reshape([b, n, width]);
        self.residual_dropout.forward(self.out.forward(y))
    }

    /// `x`: `[b, n, width]` queries over the whole memory.
    pub fn forward(&self, x: Tensor<3>, memory: &Tensor<3>) -> Tensor<3> {
        let [keys, values] = self.keys_values(memory);
        self.attend(x, keys, values)
    }

    /// As `forward`, with the memory's keys and values computed on the first
    /// call and kept in `cache`.
    pub fn forward_cached(&self, x: Tensor<3>, memory: &Tensor<3>, cache: &mut KvCache) -> Tensor<3> {
        let [keys, values] = match cache.cross.clone() {
            Some(kv) => kv,
            None => {
                let kv = self.keys_values(memory);
                cache.cross = Some(kv.clone());
                kv
            }
        };
        self.attend(x, keys, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn the_encoder_reduces_height_and_width_and_keeps_the_frames() {
        let device = Device::flex();
        let config = FrameEncoderConfig::new([2, 16, 12, 3]).with_width(16).with_blocks_per_stage(1);
        config.validate().unwrap();
        assert_eq!(config.memory_grid(), [2, 4, 3]);
        let encoder = config.init(&device);
        let frames = Tensor::<5>::random([3, 3, 2, 16, 12], Distribution::Default, &device);
        assert_eq!(encoder.forward(frames).dims(), [3, 2 * 4 * 3, 16]);
    }

    #[test]
    fn cached_cross_attention_equals_the_full_pass() {
        let device = Device::flex();
        let attention = CrossAttention::new(8, 6, 2, 0.0, 0.0, &device);
        let memory = Tensor::<3>::random([2, 5, 6], Distribution::Default, &device);
        let x = Tensor::<3>::random([2, 4, 8], Distribution::Default, &device);
        let full = attention.forward(x.clone(), &memory);
        let mut cache = KvCache::default();
        let steps: Vec<Tensor<3>> = (0..4)
            .map(|i| attention.forward_cached(x.clone().narrow(1, i, 1), &memory, &mut cache))
            .collect();
        full.into_data()
            .assert_approx_eq::<f32>(&Tensor::cat(steps, 1).into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn uint8_frames_become_channels_first_floats() {
        let device = Device::flex();
        // [b=1, k=1, H=1, W=2, C=2]: pixels (0, 255), (51, 102).
        let t = frames_tensor(&[0, 255, 51, 102], 1, [1, 1, 2, 2], &device);
        assert_eq!(t.dims(), [1, 2, 1, 1, 2]);
        let v = crate::data::float_values(t);
        let want = [-0.5, 0.2 - 0.5, 0.5, 0.4 - 0.5];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }
}
