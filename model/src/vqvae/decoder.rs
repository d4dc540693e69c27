//! Decoder, mirroring the encoder (as the reference): the residual stack,
//! BatchNorm and ReLU, then one kernel-4
//! transposed convolution per doubling (ReLU between them, none after the
//! last, which outputs the video channels).

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::attention::AxialBlockConfig;
use super::conv::{SamePadConv3d, SamePadConvTranspose3d};
use super::encoder::halving_strides;
use crate::ops::batch_norm_relu;
use super::residual::AttentionResidualBlock;

#[derive(Module, Debug)]
pub struct Decoder {
    residual: Vec<AttentionResidualBlock>,
    norm: BatchNorm,
    upsample: Vec<SamePadConvTranspose3d>,
    /// Used only when there is no upsampling layer to produce the channels.
    conv_out: Option<SamePadConv3d>,
}

impl Decoder {
    pub fn new(
        out_channels: usize,
        hidden: usize,
        residual_blocks: usize,
        upsample: [usize; 3],
        attention: Option<&AxialBlockConfig>,
        device: &Device,
    ) -> Self {
        let strides = halving_strides(upsample);
        let layers = strides.len();
        let upsample = strides
            .iter()
            .enumerate()
            .map(|(i, &stride)| {
                let output = if i + 1 == layers { out_channels } else { hidden };
                SamePadConvTranspose3d::new([hidden, output], stride, device)
            })
            .collect::<Vec<_>>();
        Self {
            residual: (0..residual_blocks)
                .map(|_| AttentionResidualBlock::new(hidden, attention, device))
                .collect(),
            norm: BatchNormConfig::new(hidden).init(device),
            conv_out: (layers == 0)
                .then(|| SamePadConv3d::new([hidden, out_channels], 3, [1, 1, 1], true, device)),
            upsample,
        }
    }

    /// `[b, hidden, t, h, w] -> [b, c, t*dt, h*dh, w*dw]`
    pub fn forward(&self, h: Tensor<5>) -> Tensor<5> {
        let mut h = h;
        for block in &self.residual {
            h = block.forward(h);
        }
        h = batch_norm_relu(&self.norm, h);
        let last = self.upsample.len().saturating_sub(1);
        for (i, conv) in self.upsample.iter().enumerate() {
            h = conv.forward(h);
            if i < last {
                h = relu(h);
            }
        }
        match &self.conv_out {
            Some(conv) => conv.forward(h),
            None => h,
        }
    }
}
