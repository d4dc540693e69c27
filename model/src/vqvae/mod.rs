//! The VideoGPT VQ-VAE (Yan et al. 2021, after van den Oord et al. 2017):
//! 3D-convolutional encoder with axial-attention residual blocks, an EMA
//! codebook, and a mirrored transposed-convolution decoder.
//!
//! Layout: videos are `[b, c, t, h, w]` floats in `[-0.5, 0.5]` (uint8 / 255
//! - 0.5, as the reference). The latent grid is `[t/dt, h/dh, w/dw]`.
//!
//! burn 0.22 tensors carry their backend in the runtime [`Device`] (flex on
//! the CPU, wgpu on a GPU) instead of a `Backend` type parameter, so every
//! module here runs on any backend; see [`crate::backend`].

pub mod attention;
pub mod codebook;
pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod residual;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use attention::AxialBlockConfig;
use codebook::{Codebook, CodebookConfig};
use videogpt_pipeline::rng::SplitMix64;
use conv::SamePadConv3d;
use decoder::Decoder;
use encoder::Encoder;

/// The architecture. Defaults are the paper's (BAIR: 16x64x64 RGB to an
/// 8x32x32 grid of 1024 codes).
#[derive(Config, Debug, PartialEq)]
pub struct VqVaeConfig {
    /// Clip shape `[T, H, W]`.
    #[config(default = "[16, 64, 64]")]
    pub input_shape: [usize; 3],
    /// Video channels: 3, or 1 for Moving MNIST.
    #[config(default = 3)]
    pub channels: usize,
    #[config(default = 240)]
    pub hidden: usize,
    #[config(default = 4)]
    pub residual_blocks: usize,
    /// Code dimension.
    #[config(default = 256)]
    pub embedding_dim: usize,
    /// Codebook size.
    #[config(default = 1024)]
    pub codes: usize,
    /// Downsampling factor per axis `[t, h, w]`, powers of two.
    #[config(default = "[2, 2, 2]")]
    pub downsample: [usize; 3],
    /// Axial attention in the residual blocks (off = the paper's ablation).
    #[config(default = true)]
    pub attention: bool,
    #[config(default = 2)]
    pub attention_heads: usize,
    /// Learned per-axis position embeddings before each axial attention.
    #[config(default = true)]
    pub position_embedding: bool,
    /// Commitment loss weight beta.
    #[config(default = 0.25)]
    pub commitment: f64,
    #[config(default = 0.99)]
    pub ema_decay: f64,
    #[config(default = 1.0)]
    pub dead_code_threshold: f64,
}

/// Named presets. Each sets the architecture; the clip shape and channels
/// come from the dataset ([`VqVaeConfig::for_clips`]).
pub const PRESETS: [&str; 7] = [
    "bair",
    "ucf101-64",
    "ucf101-128",
    "tgif",
    "vizdoom",
    "moving-mnist",
    "tiny",
];

/// Widest layer accepted: the paper's widest is 240, and one 4x4x4
/// convolution kernel at 4096 channels already holds 4 GB.
pub const MAX_WIDTH: usize = 4096;

impl VqVaeConfig {
    /// The named preset, or `None`. See [`PRESETS`].
    pub fn preset(name: &str) -> Option<Self> {
        let paper = Self::new();
        Some(match name {
            // 16x64x64 -> 8x32x32, 1024 codes (paper, BAIR).
            "bair" => paper,
            // 16x64x64 -> 4x32x32 (paper, UCF-101 and TGIF at 64).
            "ucf101-64" | "tgif" => paper.with_downsample([4, 2, 2]),
            // 16x128x128 -> 4x32x32.
            "ucf101-128" => paper
                .with_input_shape([16, 128, 128])
                .with_downsample([4, 4, 4]),
            // 16x64x64 -> 8x32x32 like BAIR.
            "vizdoom" => paper,
            // Grey clips, 4x4 pixels of one frame per code (8x64x64 ->
            // 8x16x16), 512 codes. Narrow and with one residual block to
            // train on a 2-core CPU; the README has the 30-minute run and
            // its NMSE. (Halving time as well, 2,4,4, plateaued near NMSE
            // 0.12 in 13 minutes.)
            "moving-mnist" => paper
                .with_channels(1)
                .with_hidden(32)
                .with_residual_blocks(1)
                .with_embedding_dim(32)
                .with_codes(512)
                .with_downsample([1, 4, 4]),
            // For tests: one block of 32, 128 codes, 2,4,4.
            "tiny" => paper
                .with_channels(1)
                .with_hidden(32)
                .with_residual_blocks(1)
                .with_embedding_dim(32)
                .with_codes(128)
                .with_downsample([2, 4, 4]),
            _ => return None,
        })
    }

    /// This architecture for clips of `[T, H, W, C]`.
    pub fn for_clips(self, clip_shape: [usize; 4]) -> Self {
        let [t, h, w, c] = clip_shape;
        self.with_input_shape([t, h, w]).with_channels(c)
    }

    /// The latent grid `[t, h, w]`.
    pub fn latent_shape(&self) -> [usize; 3] {
        let [t, h, w] = self.input_shape;
        let [dt, dh, dw] = self.downsample;
        [t.div_ceil(dt), h.div_ceil(dh), w.div_ceil(dw)]
    }

    /// Checks what `init` would otherwise panic on; names the field.
    pub fn validate(&self) -> Result<(), String> {
        let widths = [("hidden", self.hidden), ("embedding_dim", self.embedding_dim), ("channels", self.channels)];
        for (name, w) in widths {
            if !(1..=MAX_WIDTH).contains(&w) {
                return Err(format!("{name} = {w} must be in 1..={MAX_WIDTH}"));
            }
        }
        if self.attention && self.position_embedding && self.hidden < 3 {
            return Err(format!("hidden = {} must be at least 3 (one position table per axis)", self.hidden));
        }
        if self.residual_blocks > 64 || (self.attention && self.attention_heads == 0) {
            return Err(format!(
                "residual_blocks = {} (at most 64) / attention_heads = {} (at least 1) are out of range",
                self.residual_blocks, self.attention_heads
            ));
        }
        if self.input_shape.iter().any(|&n| n == 0 || n > 4096) {
            return Err(format!("input shape {:?} is empty or over 4096 on an axis", self.input_shape));
        }
        for (name, v) in [("commitment", self.commitment), ("ema_decay", self.ema_decay), ("dead_code_threshold", self.dead_code_threshold)] {
            if !v.is_finite() || v < 0.0 || (name == "ema_decay" && v >= 1.0) {
                return Err(format!("{name} = {v} is out of range"));
            }
        }
        for (axis, (&f, &n)) in ["t", "h", "w"]
            .iter()
            .zip(self.downsample.iter().zip(&self.input_shape))
        {
            if !f.is_power_of_two() {
                return Err(format!("downsample {axis} = {f} is not a power of two"));
            }
            if n % f != 0 {
                return Err(format!("input {axis} = {n} is not divisible by downsample {f}"));
            }
        }
        if self.attention && self.hidden % self.attention_heads != 0 {
            return Err(format!(
                "hidden {} does not divide into {} attention heads",
                self.hidden, self.attention_heads
            ));
        }
        if self.codes < 2 || self.codes > 65536 {
            return Err(format!("codes = {} must be in 2..=65536 (uint16 tokens)", self.codes));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> VqVae {
        if let Err(e) = self.validate() {
            panic!("invalid VQ-VAE config: {e}");
        }
        let attention = self.attention.then(|| {
            AxialBlockConfig::new(self.hidden, self.latent_shape())
                .with_heads(self.attention_heads)
                .with_position_embedding(self.position_embedding)
        });
        let attention = attention.as_ref();
        VqVae {
            encoder: Encoder::new(
                self.channels,
                self.hidden,
                self.residual_blocks,
                self.downsample,
                attention,
                device,
            ),
            pre_quantize: SamePadConv3d::new(
                [self.hidden, self.embedding_dim],
                1,
                [1, 1, 1],
                true,
                device,
            ),
            codebook: CodebookConfig::new(self.codes, self.embedding_dim)
                .with_decay(self.ema_decay)
                .with_dead_threshold(self.dead_code_threshold)
                .init(device),
            post_quantize: SamePadConv3d::new(
                [self.embedding_dim, self.hidden],
                1,
                [1, 1, 1],
                true,
                device,
            ),
            decoder: Decoder::new(
                self.channels,
                self.hidden,
                self.residual_blocks,
                self.downsample,
                attention,
                device,
            ),
            commitment: self.commitment,
        }
    }
}

#[derive(Module, Debug)]
pub struct VqVae {
    encoder: Encoder,
    pre_quantize: SamePadConv3d,
    pub codebook: Codebook,
    post_quantize: SamePadConv3d,
    decoder: Decoder,
    commitment: f64,
}

/// Everything one training forward pass yields.
#[derive(Debug)]
pub struct VqVaeOutput {
    /// `[b, c, T, H, W]`
    pub reconstruction: Tensor<5>,
    /// `beta * |z - sg(e)|^2`, `[1]`.
    pub commitment_loss: Tensor<1>,
    /// Encoder outputs `[n, D]` (n = b t h w), detached: for the EMA update.
    pub latents: Tensor<2>,
    /// Code of each latent, `[n]`, in (b, t, h, w) raster order.
    pub indices: Tensor<1, Int>,
}

impl VqVae {
    #[cfg(test)]
    fn encoder_first_weight(&self) -> Tensor<5> {
        self.encoder.first_weight()
    }

    /// `[b, c, T, H, W] -> [b, D, t, h, w]`, before quantisation.
    pub fn encode_continuous(&self, x: Tensor<5>) -> Tensor<5> {
        self.pre_quantize.forward(self.encoder.forward(x))
    }

    /// Encoder outputs as one row per latent position, in (b, t, h, w)
    /// raster order: `[b, c, T, H, W] -> ([b t h w, D], [b, t, h, w])`.
    fn latent_rows(&self, x: Tensor<5>) -> (Tensor<2>, [usize; 4]) {
        let z = self.encode_continuous(x);
        let [b, d, t, h, w] = z.dims();
        let rows = z.permute([0, 2, 3, 4, 1]).reshape([b * t * h * w, d]);
        (rows, [b, t, h, w])
    }

    /// Rows `[b t h w, D]` back to a grid `[b, D, t, h, w]`.
    fn rows_to_grid(rows: Tensor<2>, [b, t, h, w]: [usize; 4]) -> Tensor<5> {
        let d = rows.dims()[1];
        rows.reshape([b, t, h, w, d]).permute([0, 4, 1, 2, 3])
    }

    /// The code grid of each clip: `[b, c, T, H, W] -> [b, t, h, w]`.
    pub fn encode(&self, x: Tensor<5>) -> Tensor<4, Int> {
        let (rows, grid) = self.latent_rows(x);
        self.codebook.nearest(rows).reshape(grid)
    }

    /// Initialises the codebook from the encoder outputs of `x` (a training
    /// batch); see [`Codebook::ema_update`].
    pub fn initialise_codebook(self, x: Tensor<5>, rng: &mut SplitMix64, ranks: &dyn crate::distributed::Collective) -> Self {
        let rows = self.latent_rows(x).0.detach();
        let indices = self.codebook.nearest(rows.clone());
        let (codebook, _) = self.codebook.clone().ema_update(rows, indices, rng, ranks);
        Self { codebook, ..self }
    }

    /// Code grid `[b, t, h, w]` to video `[b, c, T, H, W]`.
    pub fn decode(&self, codes: Tensor<4, Int>) -> Tensor<5> {
        let grid = codes.dims();
        let e = self.codebook.lookup(codes.reshape([grid.iter().product::<usize>()]));
        self.decoder
            .forward(self.post_quantize.forward(Self::rows_to_grid(e, grid)))
    }

    /// Encode, quantise with the straight-through estimator, decode.
    pub fn forward(&self, x: Tensor<5>) -> VqVaeOutput {
        let (flat, grid) = self.latent_rows(x); // [n, D]
        let indices = self.codebook.nearest(flat.clone());
        let e = self.codebook.lookup(indices.clone());
        let commitment_loss = (flat.clone() - e.clone())
            .square()
            .mean()
            .mul_scalar(self.commitment);
        // Straight-through: the forward value is e, the gradient goes to z.
        let quantised = flat.clone() + (e - flat.clone()).detach();
        let quantised = Self::rows_to_grid(quantised, grid);
        let reconstruction = self.decoder.forward(self.post_quantize.forward(quantised));
        VqVaeOutput {
            reconstruction,
            commitment_loss,
            latents: flat.detach(),
            indices,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn every_preset_maps_clips_to_its_latent_grid_and_back() {
        let device = Device::flex();
        for name in PRESETS {
            let config = VqVaeConfig::preset(name).unwrap();
            // Shapes through the full-width presets are checked at a reduced
            // width and clip size: the layer structure (strides, padding,
            // attention, channels) is what differs between presets.
            let shape = config.input_shape;
            let small = config
                .clone()
                .with_hidden(8)
                .with_embedding_dim(4)
                .with_codes(16)
                .with_input_shape([shape[0] / 2, shape[1] / 4, shape[2] / 4]);
            let [t, h, w] = small.input_shape;
            let model = small.init(&device);
            let x = Tensor::<5>::random([2, small.channels, t, h, w], Distribution::Default, &device);
            let out = model.forward(x.clone());
            assert_eq!(out.reconstruction.dims(), x.dims(), "{name}");
            let codes = model.encode(x);
            let [lt, lh, lw] = small.latent_shape();
            assert_eq!(codes.dims(), [2, lt, lh, lw], "{name}");
            assert_eq!(model.decode(codes).dims(), [2, small.channels, t, h, w], "{name}");
            assert_eq!(out.latents.dims(), [2 * lt * lh * lw, 4], "{name}");
        }
    }

    #[test]
    fn paper_latent_grids() {
        let grid = |n: &str| VqVaeConfig::preset(n).unwrap().latent_shape();
        assert_eq!(grid("bair"), [8, 32, 32]);
        assert_eq!(grid("ucf101-64"), [4, 32, 32]);
        assert_eq!(grid("ucf101-128"), [4, 32, 32]);
        assert_eq!(grid("moving-mnist"), [16, 16, 16]);
        assert!(VqVaeConfig::preset("nope").is_none());
    }

    #[test]
    fn full_width_bair_preset_builds_and_runs_one_clip() {
        // The reference crashes at downsample (2,2,2); this must not.
        let device = Device::flex();
        let config = VqVaeConfig::preset("bair").unwrap().with_input_shape([4, 16, 16]);
        let model = config.init(&device);
        let x = Tensor::<5>::random([1, 3, 4, 16, 16], Distribution::Default, &device);
        assert_eq!(model.forward(x).reconstruction.dims(), [1, 3, 4, 16, 16]);
    }

    /// A tiny model whose codebook is initialised from a random batch, and
    /// that batch.
    fn tiny_on(device: &Device) -> (VqVaeConfig, VqVae, Tensor<5>) {
        let config = VqVaeConfig::preset("tiny").unwrap().with_input_shape([4, 16, 16]);
        let x = Tensor::<5>::random([2, 1, 4, 16, 16], Distribution::Default, device);
        let model = config
            .init(device)
            .initialise_codebook(x.clone(), &mut SplitMix64::new(0), crate::distributed::world());
        (config, model, x)
    }

    #[test]
    fn straight_through_gradient_reaches_the_encoder() {
        let device = Device::flex().autodiff();
        let (_, model, x) = tiny_on(&device);
        // Only the reconstruction term: its gradient reaches the encoder
        // through the quantiser only by the straight-through estimator.
        let out = model.forward(x.clone());
        let loss = (out.reconstruction - x).square().mean();
        let grads = loss.backward();
        let first = &model.encoder_first_weight();
        let grad = first.grad(&grads).expect("encoder weight has a gradient");
        let norm = grad.abs().sum().into_scalar::<f32>();
        assert!(norm > 0.0 && norm.is_finite(), "encoder gradient norm {norm}");
        // The codebook takes none.
        assert!(model.codebook.embeddings_param().grad(&grads).is_none());
    }

    #[test]
    fn save_then_load_gives_identical_outputs() {
        let device = Device::flex().autodiff();
        let (config, model, x) = tiny_on(&device);
        let model = model.valid();
        let bytes = model.clone().into_record().into_bytes().unwrap();
        let plain = Device::flex();
        let loaded = config
            .init(&plain)
            .load_record(burn::store::ModuleRecord::from_bytes(bytes).unwrap())
            .valid();
        let x = x.without_autodiff();
        let codes_a = model.encode(x.clone());
        let codes_b = loaded.encode(x);
        assert_eq!(codes_a.to_data(), codes_b.to_data());
        let ya = model.decode(codes_a).into_data();
        let yb = loaded.decode(codes_b).into_data();
        assert_eq!(ya, yb);
    }
}
