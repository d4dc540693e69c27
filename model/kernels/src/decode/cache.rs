//! Causal self-attention over a key/value cache, one sampling step at a
//! time: on the host for flex tensors ([`HostKvCache`]), with burn's tensor
//! operations on every other device.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData, s};

use super::kv_cache::{HostKvCache, KvPrecision};
use crate::flex::float_values;

/// Keys and values of the positions decoded so far.
///
/// Through burn they live in `[b, heads, capacity, d]` buffers with room to
/// spare (doubled when full) and new positions are written in place, so a
/// sampling step costs O(1) copies instead of reallocating the whole cache
/// per token. On the CPU (flex, no autodiff) they live on the host and
/// attention runs there in one pass ([`HostKvCache`]).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    keys: Option<Tensor<4>>,
    values: Option<Tensor<4>>,
    host: Option<HostKvCache>,
    /// How the host cache stores keys and values.
    precision: KvPrecision,
    len: usize,
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

/// Attention of the next `m` positions to themselves and every cached one:
/// `qkv` `[b, m, 3 * width]` (rows `[q | k | v]`, `heads` heads) ->
/// `[b, m, width]`, before the output projection. Appends the new keys and
/// values to `cache`. The new positions are masked causally among
/// themselves (no mask for m = 1). For inference: no attention dropout.
pub fn cached_attention(qkv: Tensor<3>, heads: usize, cache: &mut KvCache) -> Tensor<3> {
    let [b, m, three_width] = qkv.dims();
    let width = three_width / 3;
    let d = width / heads;
    let device = qkv.device();
    if device == Device::flex() && cache.keys.is_none() {
        let precision = cache.precision;
        let host = cache.host.get_or_insert_with(|| HostKvCache::new(b, heads, d, precision));
        assert!(host.fits(b, heads, d), "the cache was made for another batch or layer");
        let y = host.append_and_attend(&float_values(qkv), m);
        cache.len = host.len();
        return Tensor::from_data(TensorData::new(y, [b, m, width]), &device);
    }
    let qkv = qkv.reshape([b, m, 3, heads, d]).permute([2, 0, 3, 1, 4]); // [3, b, heads, m, d]
    let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).reshape([b, heads, m, d]));
    let (keys, values) = cache.append(k, v);
    let mut scores = q.matmul(keys.swap_dims(2, 3)).div_scalar((d as f64).sqrt());
    if m > 1 {
        // true above the shifted diagonal (the future): filled with -inf.
        let total = cache.len;
        let mask = Tensor::<2, Bool>::tril_mask([m, total], (total - m) as i64, &device).unsqueeze::<4>();
        scores = scores.mask_fill(mask, f32::NEG_INFINITY);
    }
    softmax(scores, 3).matmul(values).swap_dims(1, 2).reshape([b, m, width])
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

    /// The host cache and burn's give the same attention, one position at a
    /// time and in blocks.
    #[test]
    fn host_and_burn_caches_agree() {
        let device = Device::flex();
        let (b, heads, width) = (2, 2, 8);
        let mut host = KvCache::new(KvPrecision::F32);
        // A cache that already holds burn buffers stays on burn's path.
        let empty = || Some(Tensor::<4>::zeros([b, heads, 64, width / heads], &device));
        let mut burn = KvCache {
            keys: empty(),
            values: empty(),
            ..KvCache::new(KvPrecision::F32)
        };
        for m in [1, 1, 3, 1] {
            let qkv = Tensor::<3>::random([b, m, 3 * width], Distribution::Default, &device);
            let y_burn = cached_attention(qkv.clone(), heads, &mut burn);
            let y_host = cached_attention(qkv, heads, &mut host);
            y_host
                .into_data()
                .assert_approx_eq::<f32>(&y_burn.into_data(), burn::tensor::Tolerance::absolute(1e-5));
        }
        assert!(host.host.is_some() && burn.host.is_none(), "each took its own path");
        assert_eq!(host.len(), 6);
        assert_eq!(burn.len(), 6);
    }
}
