//! One pre-LN transformer block: `x + attn(CLN(x))`, for frame-conditioned
//! priors then `x + cross_attn(CLN(x), frame memory)`, then
//! `x + mlp(CLN(x))` with a 4x MLP and the reference's GELU
//! (`x * sigmoid(1.702 x)`).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use super::attention::{CausalSelfAttention, KvCache};
use super::context::CrossAttention;
use super::norm::ConditionalLayerNorm;
use crate::ops::{dropout, linear_seq};

#[derive(Module, Debug)]
pub struct Block {
    pub(super) norm_attention: ConditionalLayerNorm,
    pub(super) attention: CausalSelfAttention,
    norm_cross: Option<ConditionalLayerNorm>,
    pub(super) cross: Option<CrossAttention>,
    pub(super) norm_mlp: ConditionalLayerNorm,
    pub(super) up: Linear,
    pub(super) down: Linear,
    dropout: Dropout,
}

/// The reference's GELU approximation.
pub fn gelu2<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone() * sigmoid(x.mul_scalar(1.702))
}

impl Block {
    pub fn new(
        width: usize,
        heads: usize,
        dropout: f64,
        attention_dropout: f64,
        condition: Option<usize>,
        memory_width: Option<usize>,
        device: &Device,
    ) -> Self {
        Self {
            norm_attention: ConditionalLayerNorm::new(width, condition, device),
            attention: CausalSelfAttention::new(width, heads, dropout, attention_dropout, device),
            norm_cross: memory_width.map(|_| ConditionalLayerNorm::new(width, condition, device)),
            cross: memory_width
                .map(|m| CrossAttention::new(width, m, heads, dropout, attention_dropout, device)),
            norm_mlp: ConditionalLayerNorm::new(width, condition, device),
            up: LinearConfig::new(width, 4 * width).init(device),
            down: LinearConfig::new(4 * width, width).init(device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    fn mlp(&self, x: Tensor<3>) -> Tensor<3> {
        dropout(&self.dropout, linear_seq(&self.down, gelu2(linear_seq(&self.up, x))))
    }

    /// `memory`: the frame encoder's output, for frame-conditioned priors.
    pub fn forward(&self, x: Tensor<3>, condition: Option<&Tensor<2>>, memory: Option<&Tensor<3>>) -> Tensor<3> {
        let mut x = x.clone() + self.attention.forward(self.norm_attention.forward(x, condition));
        if let (Some(norm), Some(cross), Some(memory)) = (&self.norm_cross, &self.cross, memory) {
            x = x.clone() + cross.forward(norm.forward(x, condition), memory);
        }
        x.clone() + self.mlp(self.norm_mlp.forward(x, condition))
    }

    pub fn forward_cached(
        &self,
        x: Tensor<3>,
        condition: Option<&Tensor<2>>,
        memory: Option<&Tensor<3>>,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let mut x = x.clone()
            + self
                .attention
                .forward_cached(self.norm_attention.forward(x, condition), cache);
        if let (Some(norm), Some(cross), Some(memory)) = (&self.norm_cross, &self.cross, memory) {
            x = x.clone() + cross.forward_cached(norm.forward(x, condition), memory, cache);
        }
        x.clone() + self.mlp(self.norm_mlp.forward(x, condition))
    }
}
