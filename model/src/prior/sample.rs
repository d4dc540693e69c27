//! Sampling the prior one token at a time with the key/value cache:
//! temperature, top-k, top-p (nucleus), a seed. The distribution is drawn
//! on the host from each step's logits, so the same seed gives the same
//! tokens on every backend up to the logits' rounding.

use burn::tensor::{Device, Int, Tensor, TensorData};
use videogpt_pipeline::rng::SplitMix64;

use super::attention::KvCache;
use super::decoding::decoder;
use super::{Condition, EncodedCondition, Prior};
use crate::data;
use crate::ops::{Decoder, DecoderState, KvPrecision};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleOptions {
    pub temperature: f64,
    /// Keep only the k most likely codes.
    pub top_k: Option<usize>,
    /// Keep the smallest set of codes whose probability reaches p.
    pub top_p: Option<f64>,
    pub seed: u64,
    /// How the CPU sampler stores cached keys and values (f16: half the
    /// memory traffic; f32: exact). Other devices keep f32 tensors.
    #[serde(default)]
    pub kv_cache: KvPrecision,
}

impl Default for SampleOptions {
    /// The reference: multinomial at temperature 1, no truncation.
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 0,
            kv_cache: KvPrecision::default(),
        }
    }
}

/// Draws one code from `logits` (one row).
pub fn draw(logits: &[f32], options: &SampleOptions, rng: &mut SplitMix64) -> usize {
    let t = options.temperature.max(1e-6);
    if options.top_k.is_none() && options.top_p.is_none() {
        return draw_untruncated(logits, t, rng);
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let keep = options.top_k.unwrap_or(order.len()).clamp(1, order.len());
    order.truncate(keep);
    let top = logits[order[0]] as f64;
    let mut probs: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - top) / t).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(p) = options.top_p {
        let mut acc = 0.0;
        let mut cut = probs.len();
        for (i, q) in probs.iter().enumerate() {
            acc += q;
            if acc >= p {
                cut = i + 1;
                break;
            }
        }
        order.truncate(cut);
        probs.truncate(cut);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= total);
    }
    let u = rng.next_f64();
    let mut acc = 0.0;
    for (i, q) in probs.iter().enumerate() {
        acc += q;
        if u < acc {
            return order[i];
        }
    }
    order[order.len() - 1]
}

/// Without truncation no order is needed: the cumulative sum runs over
/// the codes in index order (no sort of every row at every step).
fn draw_untruncated(logits: &[f32], temperature: f64, rng: &mut SplitMix64) -> usize {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = logits.iter().map(|&l| ((l as f64 - top) / temperature).exp()).collect();
    let target = rng.next_f64() * weights.iter().sum::<f64>();
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if target < acc {
            return i;
        }
    }
    // Rounding left the target at the very end: the last code with weight.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(logits.len() - 1)
}

/// `batch` samples of the whole grid, `[batch * n]` tokens in raster order.
///
/// Every row draws from its own random stream (seed, row), so a row's
/// tokens do not depend on the batch it is sampled in. On the CPU the rows
/// are split into one contiguous group per core, each sampled on its own
/// thread: one token step is a handful of tiny matrix products, which keep
/// one core busy but not two; and unless the prior reads conditioning
/// frames, the whole step runs on the host ([`Decoder`]). `on_token`
/// sees the first group's progress.
pub fn sample(
    prior: &Prior,
    tokens_per_sample: usize,
    batch: usize,
    condition: &Condition,
    options: &SampleOptions,
    device: &Device,
    mut on_token: impl FnMut(usize),
) -> Vec<u16> {
    // Conditioning frames go through the encoder once per sample.
    let condition = prior.encode_condition(condition);
    let on_cpu = *device == Device::flex();
    let host = on_cpu.then(|| decoder(prior, &condition)).flatten();
    let host = host.as_ref();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts = if on_cpu { cores.min(batch).max(1) } else { 1 };
    let groups: Vec<std::ops::Range<usize>> = (0..parts)
        .map(|g| (g * batch / parts)..((g + 1) * batch / parts))
        .collect();
    let stepper = |rows: std::ops::Range<usize>| match host {
        Some(host) => Stepper::Host {
            prior: host,
            state: host.state(rows, options.kv_cache),
        },
        None => Stepper::Burn {
            prior,
            condition: condition.rows(rows.clone()),
            batch: rows.len(),
            caches: prior.empty_caches(options.kv_cache),
            device,
            logits: Vec::new(),
        },
    };
    let mut out = vec![0u16; batch * tokens_per_sample];
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups[1..]
            .iter()
            .map(|rows| {
                let (rows, stepper) = (rows.clone(), stepper(rows.clone()));
                scope.spawn(move || sample_rows(stepper, tokens_per_sample, rows, options, |_| {}))
            })
            .collect();
        let first = groups[0].clone();
        let mut parts = vec![sample_rows(stepper(first.clone()), tokens_per_sample, first, options, &mut on_token)];
        parts.extend(handles.into_iter().map(|h| h.join().expect("a sampling thread panicked")));
        for (rows, tokens) in groups.iter().zip(parts) {
            out[rows.start * tokens_per_sample..rows.end * tokens_per_sample].copy_from_slice(&tokens);
        }
    });
    out
}

/// Logits for one step of a row group: the whole step on the host where
/// it can run there ([`Decoder`]), else through burn with the cache.
/// One per sampling thread, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Stepper<'a> {
    Host {
        prior: &'a Decoder,
        state: DecoderState,
    },
    Burn {
        prior: &'a Prior,
        condition: EncodedCondition,
        batch: usize,
        caches: Vec<KvCache>,
        device: &'a Device,
        logits: Vec<f32>,
    },
}

impl Stepper<'_> {
    /// `[rows, codes]` logits at the next position given each row's
    /// previous token (`None` at position 0).
    fn logits(&mut self, previous: Option<&[u16]>) -> &[f32] {
        match self {
            Stepper::Host { prior, state } => prior.step(previous, state),
            Stepper::Burn {
                prior,
                condition,
                batch,
                caches,
                device,
                logits,
            } => {
                let previous = previous.map(|tokens| {
                    let values: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
                    Tensor::<2, Int>::from_data(TensorData::new(values, [tokens.len(), 1]), *device)
                });
                *logits = data::float_values(prior.step(previous, *batch, condition, caches));
                logits
            }
        }
    }
}

/// Samples the batch rows `rows` with `stepper`, which was made for them.
fn sample_rows(
    mut stepper: Stepper<'_>,
    tokens_per_sample: usize,
    rows: std::ops::Range<usize>,
    options: &SampleOptions,
    mut on_token: impl FnMut(usize),
) -> Vec<u16> {
    let batch = rows.len();
    let mut rngs: Vec<SplitMix64> = rows
        .clone()
        .map(|row| SplitMix64::for_item(options.seed, "prior-sample", row as u64))
        .collect();
    let mut out = vec![0u16; batch * tokens_per_sample];
    let mut next = vec![0u16; batch];
    for i in 0..tokens_per_sample {
        let logits = stepper.logits((i > 0).then_some(&next[..]));
        let codes = logits.len() / batch;
        for (row, rng) in rngs.iter_mut().enumerate() {
            next[row] = draw(&logits[row * codes..(row + 1) * codes], options, rng) as u16;
            out[row * tokens_per_sample + i] = next[row];
        }
        on_token(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_one_is_argmax_and_top_p_truncates() {
        let logits = [0.1f32, 3.0, 2.9, -1.0];
        let mut rng = SplitMix64::new(1);
        let greedy = SampleOptions { top_k: Some(1), ..Default::default() };
        for _ in 0..20 {
            assert_eq!(draw(&logits, &greedy, &mut rng), 1);
        }
        // Codes 1 and 2 hold 0.96 of the mass: with p = 0.9 only they remain.
        let nucleus = SampleOptions { top_p: Some(0.9), ..Default::default() };
        for _ in 0..200 {
            let c = draw(&logits, &nucleus, &mut rng);
            assert!(c == 1 || c == 2, "{c}");
        }
        // Temperature 1, no truncation: frequencies follow the softmax.
        let plain = SampleOptions::default();
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            counts[draw(&logits, &plain, &mut rng)] += 1;
        }
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        for (c, &n) in counts.iter().enumerate() {
            let want = (logits[c] as f64).exp() / z;
            assert!((n as f64 / 20_000.0 - want).abs() < 0.015, "code {c}: {n} vs {want:.3}");
        }
    }
}
