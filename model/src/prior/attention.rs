//! Causal multi-head self-attention over the flattened token grid, with a
//! key/value cache for sampling one token at a time.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};

use crate::ops::{AttentionCache, KvPrecision, cached_attention};

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

    /// `[b, n, width]` -> three `[b, heads, n, d]`.
    fn project(&self, x: Tensor<3>) -> [Tensor<4>; 3] {
        let [b, n, width] = x.dims();
        let d = width / self.heads;
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, self.heads, d])
            .permute([2, 0, 3, 1, 4]); // [3, b, heads, n, d]
        [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).reshape([b, self.heads, n, d]))
    }

    fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        let [b, heads, n, d] = q.dims();
        let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d as f64).sqrt());
        if let Some(mask) = mask {
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        let weights = self.attention_dropout.forward(softmax(scores, 3));
        let y = weights.matmul(v).swap_dims(1, 2).reshape([b, n, heads * d]);
        self.residual_dropout.forward(self.out.forward(y))
    }

    /// Every position attends to itself and the positions before it.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let n = x.dims()[1];
        let device = x.device();
        let [q, k, v] = self.project(x);
        // true above the diagonal (the future): filled with -inf.
        let mask = Tensor::<2, Bool>::tril_mask([n, n], 0, &device).unsqueeze::<4>();
        self.attend(q, k, v, Some(mask))
    }

    /// The next positions `[b, m, width]` given the cache of the earlier
    /// ones; appends their keys and values. For m = 1 (sampling) no mask is
    /// needed; for m > 1 the new positions are masked causally among
    /// themselves.
    pub fn forward_cached(&self, x: Tensor<3>, cache: &mut KvCache) -> Tensor<3> {
        let y = cached_attention(self.qkv.forward(x), self.heads, &mut cache.own);
        self.residual_dropout.forward(self.out.forward(y))
    }
}
