//! Causal multi-head self-attention over the flattened token grid (the
//! softmax core is `ops::causal_attention`), with a key/value cache for
//! sampling one token at a time.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::ops::{AttentionCache, KvPrecision, cached_attention, causal_attention, dropout, linear_seq};

#[derive(Module, Debug)]
pub struct CausalSelfAttention {
    pub(super) qkv: Linear,
    pub(super) out: Linear,
    attention_dropout: Dropout,
    residual_dropout: Dropout,
    pub(super) heads: usize,
}

/// What one layer keeps while sampling: the keys and values of the
/// positions decoded so far and (frame-conditioned priors) the
/// cross-attention keys and values of the frame memory, computed once.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    own: AttentionCache,
    pub(crate) cross: Option<[Tensor<4>; 2]>,
}

impl KvCache {
    /// An empty cache; `precision` applies where the cache lives on the host.
    pub fn new(precision: KvPrecision) -> Self {
        Self {
            own: AttentionCache::new(precision),
            cross: None,
        }
    }

    pub fn len(&self) -> usize {
        self.own.len()
    }

    pub fn is_empty(&self) -> bool {
        self.own.is_empty()
    }
}

impl CausalSelfAttention {
    pub fn new(width: usize, heads: usize, dropout: f64, attention_dropout: f64, device: &Device) -> Self {
        assert!(width % heads == 0, "width {width} must divide into {heads} heads");
        let std = 1.0 / (width as f64).sqrt();
        let linear = |o: usize, bias: bool| {
            LinearConfig::new(width, o)
                .with_bias(bias)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device)
        };
        Self {
            qkv: linear(3 * width, false),
            out: linear(width, true),
            attention_dropout: DropoutConfig::new(attention_dropout).init(),
            residual_dropout: DropoutConfig::new(dropout).init(),
            heads,
        }
    }

    /// Every position attends to itself and the positions before it.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = causal_attention(linear_seq(&self.qkv, x), self.heads, self.attention_dropout.prob);
        dropout(&self.residual_dropout, linear_seq(&self.out, y))
    }

    /// The next positions `[b, m, width]` given the cache of the earlier
    /// ones; appends their keys and values. For m = 1 (sampling) no mask is
    /// needed; for m > 1 the new positions are masked causally among
    /// themselves.
    pub fn forward_cached(&self, x: Tensor<3>, cache: &mut KvCache) -> Tensor<3> {
        let y = cached_attention(self.qkv.forward(x), self.heads, &mut cache.own);
        dropout(&self.residual_dropout, self.out.forward(y))
    }
}
