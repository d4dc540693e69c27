//! Encoder: one stride-2 (per halving axis) kernel-4 convolution per halving,
//! a kernel-3 convolution, the residual stack, BatchNorm and ReLU.
//!
//! The reference sizes its kernel-3 convolution with the input channel count
//! of the last downsampling layer, which is wrong (and crashes) when the
//! largest downsample factor is 2; here it always takes `hidden` channels.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::attention::AxialBlockConfig;
use super::conv::SamePadConv3d;
use crate::ops::batch_norm_relu;
use super::residual::AttentionResidualBlock;

#[derive(Module, Debug)]
pub struct Encoder {
    downsample: Vec<SamePadConv3d>,
    conv_last: SamePadConv3d,
    residual: Vec<AttentionResidualBlock>,
    norm: BatchNorm,
}

/// The strides of each downsampling layer: `log2(factor)` halvings per axis,
/// every axis halved at once until it has none left (as the reference).
pub fn halving_strides(factors: [usize; 3]) -> Vec<[usize; 3]> {
    let mut left = factors.map(|f| f.trailing_zeros() as usize);
    let layers = left.into_iter().max().unwrap_or(0);
    (0..layers)
        .map(|_| {
            let stride = left.map(|n| if n > 0 { 2 } else { 1 });
            left = left.map(|n| n.saturating_sub(1));
            stride
        })
        .collect()
}

impl Encoder {
    pub fn new(
        in_channels: usize,
        hidden: usize,
        residual_blocks: usize,
        downsample: [usize; 3],
        attention: Option<&AxialBlockConfig>,
        device: &Device,
    ) -> Self {
        let strides = halving_strides(downsample);
        let downsample = strides
            .iter()
            .enumerate()
            .map(|(i, &stride)| {
                let input = if i == 0 { in_channels } else { hidden };
                SamePadConv3d::new([input, hidden], 4, stride, true, device)
            })
            .collect::<Vec<_>>();
        let first = if downsample.is_empty() { in_channels } else { hidden };
        Self {
            downsample,
            conv_last: SamePadConv3d::new([first, hidden], 3, [1, 1, 1], true, device),
            residual: (0..residual_blocks)
                .map(|_| AttentionResidualBlock::new(hidden, attention, device))
                .collect(),
            norm: BatchNormConfig::new(hidden).init(device),
        }
    }

    #[cfg(test)]
    pub(crate) fn first_weight(&self) -> Tensor<5> {
        self.downsample
            .first()
            .unwrap_or(&self.conv_last)
            .weight()
    }

    /// `[b, c, T, H, W] -> [b, hidden, T/dt, H/dh, W/dw]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut h = x;
        for conv in &self.downsample {
            h = relu(conv.forward(h));
        }
        h = self.conv_last.forward(h);
        for block in &self.residual {
            h = block.forward(h);
        }
        batch_norm_relu(&self.norm, h)
    }
}

#[cfg(test)]
mod tests {
    use super::halving_strides;

    #[test]
    fn strides_halve_each_axis_log2_times() {
        assert_eq!(halving_strides([2, 2, 2]), vec![[2, 2, 2]]);
        assert_eq!(halving_strides([4, 2, 2]), vec![[2, 2, 2], [2, 1, 1]]);
        assert_eq!(halving_strides([2, 4, 4]), vec![[2, 2, 2], [1, 2, 2]]);
        assert_eq!(halving_strides([4, 4, 4]), vec![[2, 2, 2], [2, 2, 2]]);
        assert_eq!(halving_strides([1, 1, 1]), Vec::<[usize; 3]>::new());
    }
}
