//! Causal multi-head self-attention over the flattened token grid, with a
//! key/value cache for sampling one token at a time.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData, s};

use super::host_attention::{HostKvCache, KvPrecision};
use crate::data;

#[derive(Module, Debug)]
pub struct CausalSelfAttention {
    pub(super) qkv: Linear,
    pub(super) out: Linear,
    attention_dropout: Dropout,
    residual_dropout: Dropout,
    pub(super) heads: usize,
}

/// Keys and values of the positions decoded so far, `[b, heads, n, d]`,
/// and (frame-conditioned priors) the cross-attention keys and values of
/// the frame memory, computed once.
///
/// The keys and values live in buffers with room to spare (doubled when
/// full) and new positions are written in place, so a sampling step costs
/// O(1) copies instead of reallocating the whole cache per token. On the
/// CPU (flex, no autodiff) they live on the host instead and attention runs
/// there in one pass ([`HostKvCache`]).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    keys: Option<Tensor<4>>,
    values: Option<Tensor<4>>,
    host: Option<HostKvCache>,
    /// How the host cache stores keys and values.
    precision: KvPrecision,
    len: usize,
    pub(crate) cross: Option<[Tensor<4>; 2]>,
}

impl KvCache {
    /// An empty cache; `precision` applies where the cache lives on the host.
    pub fn new(precision: KvPrecision) -> Self {
        Self {
            precision,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `[b, heads, m, d]` keys and values; returns views of all
    /// `len + m` positions.
    fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, heads, m, d] = k.dims();
        let end = self.len + m;
        let device = k.device();
        let grow = |buffer: Option<Tensor<4>>, len: usize| -> Tensor<4> {
            match buffer {
                Some(buf) if buf.dims()[2] >= end => buf,
                old => {
                    let capacity = end.next_power_of_two().max(64);
                    let fresh = Tensor::<4>::zeros([b, heads, capacity, d], &device);
                    match old {
                        Some(buf) => fresh.slice_assign(s![.., .., 0..len], buf.narrow(2, 0, len)),
                        None => fresh,
                    }
                }
            }
        };
        let keys = grow(self.keys.take(), self.len).slice_assign(s![.., .., self.len..end], k);
        let values = grow(self.values.take(), self.len).slice_assign(s![.., .., self.len..end], v);
        self.len = end;
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        (keys.narrow(2, 0, end), values.narrow(2, 0, end))
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
        let [b, m, width] = x.dims();
        let device = x.device();
        if device == Device::flex() && cache.keys.is_none() {
            let d = width / self.heads;
            let precision = cache.precision;
            let host = cache.host.get_or_insert_with(|| HostKvCache::new(b, self.heads, d, precision));
            assert!(host.fits(b, self.heads, d), "the cache was made for another batch or layer");
            let y = host.append_and_attend(&data::float_values(self.qkv.forward(x)), m);
            cache.len = host.len();
            let y = Tensor::from_data(TensorData::new(y, [b, m, width]), &device);
            return self.residual_dropout.forward(self.out.forward(y));
        }
        let [q, k, v] = self.project(x);
        let (keys, values) = cache.append(k, v);
        let mask = (m > 1).then(|| {
            let total = keys.dims()[2];
            Tensor::<2, Bool>::tril_mask([m, total], (total - m) as i64, &device).unsqueeze::<4>()
        });
        self.attend(q, keys, values, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn the_cache_grows_past_its_capacity_and_keeps_every_position() {
        let device = Device::flex();
        let mut cache = KvCache::default();
        let (mut all_k, mut all_v) = (Vec::new(), Vec::new());
        // 150 positions: one at a time, then a block of 5 (past 64 and 128).
        for m in std::iter::repeat_n(1, 145).chain([5]) {
            let k = Tensor::<4>::random([2, 3, m, 4], Distribution::Default, &device);
            let v = Tensor::<4>::random([2, 3, m, 4], Distribution::Default, &device);
            all_k.push(k.clone());
            all_v.push(v.clone());
            let (keys, values) = cache.append(k, v);
            assert_eq!(keys.dims(), [2, 3, cache.len(), 4]);
            assert_eq!(values.dims()[2], cache.len());
        }
        assert_eq!(cache.len(), 150);
        let (keys, values) = cache.append(
            Tensor::zeros([2, 3, 1, 4], &device),
            Tensor::zeros([2, 3, 1, 4], &device),
        );
        keys.narrow(2, 0, 150).into_data().assert_eq(&Tensor::cat(all_k, 2).into_data(), true);
        values.narrow(2, 0, 150).into_data().assert_eq(&Tensor::cat(all_v, 2).into_data(), true);
    }
}
