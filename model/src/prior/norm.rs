//! Conditional LayerNorm: `LN(x) * (1 + W_g c) + W_b c` with bias-free,
//! zero-initialised `W_g`, `W_b`. With a zero condition (or none) it is the
//! plain LayerNorm exactly, at initialisation and after training.

use burn::module::Module;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct ConditionalLayerNorm {
    pub(super) norm: LayerNorm,
    pub(super) gain: Option<Linear>,
    pub(super) bias: Option<Linear>,
}

/// The layer norm's epsilon (burn's default, and the reference's).
pub(super) const EPSILON: f64 = 1e-5;

impl ConditionalLayerNorm {
    /// `condition`: the width of the condition vector, when there is one.
    pub fn new(width: usize, condition: Option<usize>, device: &Device) -> Self {
        let linear = |c: usize| {
            LinearConfig::new(c, width)
                .with_bias(false)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        Self {
            norm: LayerNormConfig::new(width).with_epsilon(EPSILON).init(device),
            gain: condition.map(linear),
            bias: condition.map(linear),
        }
    }

    /// `x`: `[b, n, width]`; `condition`: `[b, c]`.
    pub fn forward(&self, x: Tensor<3>, condition: Option<&Tensor<2>>) -> Tensor<3> {
        let y = self.norm.forward(x);
        match (condition, &self.gain, &self.bias) {
            (Some(c), Some(gain), Some(bias)) => {
                let g = gain.forward(c.clone()).unsqueeze_dim::<3>(1);
                let b = bias.forward(c.clone()).unsqueeze_dim::<3>(1);
                y.clone() + y * g + b
            }
            _ => y,
        }
    }
}
