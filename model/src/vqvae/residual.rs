//! The attention residual block of the reference VQ-VAE:
//! `x + [BN, ReLU, conv3 -> c/2, BN, ReLU, conv1 -> c, BN, ReLU, axial attention](x)`.
//! With attention switched off (the paper's ablation) the block ends at the
//! last ReLU.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor};

use super::attention::{AxialBlock, AxialBlockConfig};
use super::conv::SamePadConv3d;
use crate::ops::batch_norm_relu;

#[derive(Module, Debug)]
pub struct AttentionResidualBlock {
    norm_in: BatchNorm,
    conv3: SamePadConv3d,
    norm_mid: BatchNorm,
    conv1: SamePadConv3d,
    norm_out: BatchNorm,
    attention: Option<AxialBlock>,
}

impl AttentionResidualBlock {
    /// `attention`: `Some(config)` for the paper's block, `None` for the ablation.
    pub fn new(channels: usize, attention: Option<&AxialBlockConfig>, device: &Device) -> Self {
        let half = (channels / 2).max(1);
        Self {
            norm_in: BatchNormConfig::new(channels).init(device),
            conv3: SamePadConv3d::new([channels, half], 3, [1, 1, 1], false, device),
            norm_mid: BatchNormConfig::new(half).init(device),
            conv1: SamePadConv3d::new([half, channels], 1, [1, 1, 1], false, device),
            norm_out: BatchNormConfig::new(channels).init(device),
            attention: attention.map(|config| config.init(device)),
        }
    }

    /// `[b, c, t, h, w] -> [b, c, t, h, w]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let h = self
            .conv3
            .forward(batch_norm_relu(&self.norm_in, x.clone()));
        let h = self.conv1.forward(batch_norm_relu(&self.norm_mid, h));
        let mut h = batch_norm_relu(&self.norm_out, h);
        if let Some(attention) = &self.attention {
            h = attention.forward(h);
        }
        x + h
    }
}
