//! Multi-head axial attention over T, H and W (the reference's `AxialBlock`:
//! one attention per axis, the three outputs summed), with learned position
//! embeddings broadcast per axis.
//!
//! Tensors here are channels-last: `[b, t, h, w, c]`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::ops::{axial_attention, channels_first, channels_last, linear};

/// Self-attention along one axis of a `[b, t, h, w, c]` tensor; every line
/// along that axis attends within itself.
#[derive(Module, Debug)]
pub struct AxialAttention {
    /// Queries, keys and values in one projection (no bias, as the reference).
    qkv: Linear,
    out: Linear,
    heads: usize,
    /// 1 = T, 2 = H, 3 = W.
    axis: usize,
}

impl AxialAttention {
    pub fn new(channels: usize, heads: usize, axis: usize, device: &Device) -> Self {
        assert!(
            channels % heads == 0,
            "attention channels {channels} must divide into {heads} heads"
        );
        let std = 1.0 / (channels as f64).sqrt();
        let qkv = LinearConfig::new(channels, 3 * channels)
            .with_bias(false)
            .with_initializer(Initializer::Normal { mean: 0.0, std })
            .init(device);
        let out = LinearConfig::new(channels, channels)
            .with_initializer(Initializer::Normal { mean: 0.0, std })
            .init(device);
        Self {
            qkv,
            out,
            heads,
            axis,
        }
    }

    /// `[b, t, h, w, c] -> [b, t, h, w, c]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, t, h, w, c] = x.dims();
        let grid = [b, t, h, w];
        let qkv = linear(&self.qkv, x.reshape([b * t * h * w, c])); // [n, 3c]
        let attended = axial_attention(qkv, grid, self.axis, self.heads); // [n, c]
        linear(&self.out, attended).reshape([b, t, h, w, c])
    }
}

/// Learned position embeddings, one table per axis, broadcast over the other
/// two and concatenated along the channels (as the reference's
/// `AddBroadcastPosEmbed`): T gets `c - 2*(c/3)` channels, H and W `c/3`.
#[derive(Module, Debug)]
pub struct BroadcastPositionEmbedding {
    t: Param<Tensor<2>>,
    h: Param<Tensor<2>>,
    w: Param<Tensor<2>>,
}

impl BroadcastPositionEmbedding {
    pub fn channel_split(channels: usize) -> [usize; 3] {
        let third = channels / 3;
        [channels - 2 * third, third, third]
    }

    pub fn new(shape: [usize; 3], channels: usize, device: &Device) -> Self {
        let split = Self::channel_split(channels);
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.01,
        };
        let table = |len: usize, width: usize| init.init([len, width], device);
        Self {
            t: table(shape[0], split[0]),
            h: table(shape[1], split[1]),
            w: table(shape[2], split[2]),
        }
    }

    /// `[1, c]`: the row of `table()` at raster position `index`, without
    /// building the table (one sampling step needs one row).
    pub fn row(&self, index: usize) -> Tensor<2> {
        let [h, _] = self.h.dims();
        let [w, _] = self.w.dims();
        let (t, rest) = (index / (h * w), index % (h * w));
        Tensor::cat(
            vec![
                self.t.val().narrow(0, t, 1),
                self.h.val().narrow(0, rest / w, 1),
                self.w.val().narrow(0, rest % w, 1),
            ],
            1,
        )
    }

    /// `[t, h, w, c]`, to add to a `[b, t, h, w, c]` tensor.
    pub fn table(&self) -> Tensor<4> {
        let [t, ct] = self.t.dims();
        let [h, ch] = self.h.dims();
        let [w, cw] = self.w.dims();
        let et = self.t.val().reshape([t, 1, 1, ct]).expand([t, h, w, ct]);
        let eh = self.h.val().reshape([1, h, 1, ch]).expand([t, h, w, ch]);
        let ew = self.w.val().reshape([1, 1, w, cw]).expand([t, h, w, cw]);
        Tensor::cat(vec![et, eh, ew], 3)
    }
}

#[derive(Config, Debug)]
pub struct AxialBlockConfig {
    pub channels: usize,
    /// Latent grid `[t, h, w]` the block runs on (sizes the position tables).
    pub shape: [usize; 3],
    #[config(default = 2)]
    pub heads: usize,
    #[config(default = true)]
    pub position_embedding: bool,
}

/// Attention over T, H and W, summed: `[b, c, t, h, w] -> [b, c, t, h, w]`.
#[derive(Module, Debug)]
pub struct AxialBlock {
    position: Option<BroadcastPositionEmbedding>,
    attend_t: AxialAttention,
    attend_h: AxialAttention,
    attend_w: AxialAttention,
}

impl AxialBlockConfig {
    pub fn init(&self, device: &Device) -> AxialBlock {
        let attend = |axis| AxialAttention::new(self.channels, self.heads, axis, device);
        AxialBlock {
            position: self
                .position_embedding
                .then(|| BroadcastPositionEmbedding::new(self.shape, self.channels, device)),
            attend_t: attend(1),
            attend_h: attend(2),
            attend_w: attend(3),
        }
    }
}

impl AxialBlock {
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut x = channels_last(x); // [b, t, h, w, c]
        if let Some(position) = &self.position {
            x = x + position.table().unsqueeze_dim(0);
        }
        let y = self.attend_t.forward(x.clone())
            + self.attend_h.forward(x.clone())
            + self.attend_w.forward(x);
        channels_first(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// Attention along W must not mix different rows: changing one row
    /// changes only that row's output.
    #[test]
    fn axial_attention_stays_on_its_axis() {
        let device = Device::flex();
        let x = Tensor::<5>::random([1, 2, 3, 4, 6], Distribution::Default, &device);
        for axis in 1..=3 {
            let attention = AxialAttention::new(6, 2, axis, &device);
            let base = attention.forward(x.clone());
            // Perturb position 0 along every axis but `axis`'s line through (0,0,0).
            let mut bumped = x.clone().to_data().try_to_vec::<f32>().unwrap();
            bumped[0] += 1.0; // element [0, 0, 0, 0, 0]
            let bumped = Tensor::<5>::from_data(
                burn::tensor::TensorData::new(bumped, [1, 2, 3, 4, 6]),
                &device,
            );
            let diff = (attention.forward(bumped) - base).abs().sum_dim(4); // [1,2,3,4,1]
            let diff = diff.into_data().try_to_vec::<f32>().unwrap();
            for t in 0..2 {
                for h in 0..3 {
                    for w in 0..4 {
                        let on_line = match axis {
                            1 => h == 0 && w == 0,
                            2 => t == 0 && w == 0,
                            _ => t == 0 && h == 0,
                        };
                        let d = diff[(t * 3 + h) * 4 + w];
                        if on_line {
                            assert!(d > 0.0, "axis {axis}: ({t},{h},{w}) should change");
                        } else {
                            assert_eq!(d, 0.0, "axis {axis}: ({t},{h},{w}) must not change");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn position_table_broadcasts_each_axis() {
        let device = Device::flex();
        let embedding = BroadcastPositionEmbedding::new([2, 3, 4], 7, &device);
        assert_eq!(BroadcastPositionEmbedding::channel_split(7), [3, 2, 2]);
        let table = embedding.table();
        assert_eq!(table.dims(), [2, 3, 4, 7]);
        // The T channels are equal across H and W.
        let a = table.clone().narrow(0, 1, 1).narrow(3, 0, 3);
        let first = a
            .clone()
            .narrow(1, 0, 1)
            .narrow(2, 0, 1)
            .expand([1, 3, 4, 3]);
        a.into_data()
            .assert_approx_eq::<f32>(&first.into_data(), Tolerance::absolute(0.0));
    }
}
