//! Cached attention on the host, for sampling on the CPU (flex).
//!
//! Sampling asks one new query per row and head to attend to every cached
//! position. As burn tensor operations that is a cache write, a narrowed
//! (non-contiguous) view, two small matrix products, a scale and a softmax
//! per layer, each with its own dispatch and buffers. Here the keys and
//! values stay in one growing buffer per row and head, and each query is
//! answered in one pass over them: scores, softmax and the weighted sum of
//! values, reading the cache in place.
//!
//! At batch 8 the caches outgrow the CPU's last-level cache, and reading
//! them is what a sampling step waits for. [`KvPrecision::F16`] stores them
//! as IEEE half floats (computing in f32), which halves that traffic;
//! [`KvPrecision::F32`] keeps them exact. On x86-64 with AVX2, FMA and F16C
//! the kernels are explicit SIMD code, chosen at run time; elsewhere the
//! portable loops run.

/// How the CPU sampler stores cached keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvPrecision {
    /// IEEE half floats: half the memory traffic; keys and values rounded
    /// to 11 significant bits (logits move by about 1e-3).
    #[default]
    F16,
    /// Exact: the same logits as a full forward pass up to summation order.
    F32,
}

impl std::str::FromStr for KvPrecision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f16" => Ok(Self::F16),
            "f32" => Ok(Self::F32),
            other => Err(format!(
                "unknown KV-cache precision `{other}` (expected f16 or f32)"
            )),
        }
    }
}

impl std::fmt::Display for KvPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F16 => "f16",
            Self::F32 => "f32",
        })
    }
}

/// Per row and head, `len * d` elements, position-major.
#[derive(Debug, Clone)]
struct Buffers<E> {
    keys: Vec<Vec<E>>,
    values: Vec<Vec<E>>,
}

impl<E: Element> Buffers<E> {
    fn new(slots: usize) -> Self {
        Self {
            keys: vec![Vec::new(); slots],
            values: vec![Vec::new(); slots],
        }
    }

    /// [`HostKvCache::append_and_attend`] for `before` cached positions.
    fn append_and_attend(
        &mut self,
        qkv: &[f32],
        m: usize,
        [rows, heads, d]: [usize; 3],
        before: usize,
    ) -> Vec<f32> {
        let width = heads * d;
        let part = |row: usize, p: usize, which: usize, head: usize| {
            let start = ((row * m + p) * 3 + which) * width + head * d;
            &qkv[start..start + d]
        };
        for row in 0..rows {
            for head in 0..heads {
                let slot = row * heads + head;
                for p in 0..m {
                    self.keys[slot].extend(part(row, p, 1, head).iter().map(|&x| E::from_f32(x)));
                    self.values[slot].extend(part(row, p, 2, head).iter().map(|&x| E::from_f32(x)));
                }
            }
        }
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; rows * m * width];
        // The CPU sampler already runs one row group per core.
        let mut scores = Vec::with_capacity(before + m);
        for (row, out) in out.chunks_mut(m * width).enumerate() {
            for head in 0..heads {
                let slot = row * heads + head;
                for p in 0..m {
                    let visible = (before + p + 1) * d;
                    attend_one(
                        part(row, p, 0, head),
                        &self.keys[slot][..visible],
                        &self.values[slot][..visible],
                        scale,
                        &mut scores,
                        &mut out[p * width + head * d..p * width + (head + 1) * d],
                    );
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
enum Store {
    F32(Buffers<f32>),
    /// Half-float bit patterns.
    F16(Buffers<u16>),
}

/// Keys and values of the positions decoded so far, per batch row and head.
#[derive(Debug, Clone)]
pub struct HostKvCache {
    rows: usize,
    heads: usize,
    d: usize,
    len: usize,
    store: Store,
}

impl HostKvCache {
    pub fn new(rows: usize, heads: usize, d: usize, precision: KvPrecision) -> Self {
        let slots = rows * heads;
        let store = match precision {
            KvPrecision::F32 => Store::F32(Buffers::new(slots)),
            KvPrecision::F16 => Store::F16(Buffers::new(slots)),
        };
        Self {
            rows,
            heads,
            d,
            len: 0,
            store,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this cache was made for `rows` rows of `heads` heads of `d`.
    pub fn fits(&self, rows: usize, heads: usize, d: usize) -> bool {
        (self.rows, self.heads, self.d) == (rows, heads, d)
    }

    /// Appends `m` new positions and answers their queries.
    ///
    /// `qkv`: the fused projection `[rows, m, 3, heads, d]` (queries, keys,
    /// values), as the attention's input layer writes it. Returns
    /// `[rows, m, heads * d]`: query `p` attends to every cached position
    /// and to the new positions up to and including `p` (causal).
    pub fn append_and_attend(&mut self, qkv: &[f32], m: usize) -> Vec<f32> {
        let shape = [self.rows, self.heads, self.d];
        assert_eq!(
            qkv.len(),
            self.rows * m * 3 * self.heads * self.d,
            "qkv is not [rows, m, 3, heads, d]"
        );
        let before = self.len;
        self.len += m;
        match &mut self.store {
            Store::F32(buffers) => buffers.append_and_attend(qkv, m, shape, before),
            Store::F16(buffers) => buffers.append_and_attend(qkv, m, shape, before),
        }
    }
}

/// A kernel: query, keys, values, scale, score buffer, output.
type Kernel<E> = unsafe fn(&[f32], &[E], &[E], f32, &mut Vec<f32>, &mut [f32]);

/// Stored key/value elements: f32, or half-float bits.
trait Element: Copy {
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    /// The SIMD kernel for this element type.
    #[cfg(target_arch = "x86_64")]
    const SIMD: Kernel<Self>;
}

impl Element for f32 {
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    const SIMD: Kernel<Self> = simd::attend_f32;
}

impl Element for u16 {
    /// Rounded to the nearest half float.
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x).to_bits()
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::from_bits(self).to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    const SIMD: Kernel<Self> = simd::attend_f16;
}

/// Whether the explicit SIMD kernels can run here.
#[cfg(target_arch = "x86_64")]
fn simd_kernels() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    })
}

/// `out = softmax(scale * K q) V` for one query `q` of length `d` against
/// `keys` and `values` of `n * d` elements each (position-major): the SIMD
/// kernel where it runs, else the portable loops.
fn attend_one<E: Element>(
    q: &[f32],
    keys: &[E],
    values: &[E],
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if q.len() % 8 == 0 && q.len() <= 8 * simd::MAX_CHUNKS && simd_kernels() {
        // SAFETY: the CPU has AVX2, FMA and F16C; d is a multiple of 8 up to the register budget.
        return unsafe { (E::SIMD)(q, keys, values, scale, scores, out) };
    }
    attend_one_portable(q, keys, values, scale, scores, out)
}

fn attend_one_portable<E: Element>(
    q: &[f32],
    keys: &[E],
    values: &[E],
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = q.len();
    assert!(d > 0 && keys.len() == values.len() && keys.len() % d == 0 && out.len() == d);
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for k in keys.chunks_exact(d) {
        let s = q.iter().zip(k).map(|(&a, &b)| a * b.to_f32()).sum::<f32>() * scale;
        max = max.max(s);
        scores.push(s);
    }
    let total = exponentiate(scores, max);
    out.fill(0.0);
    for (&w, v) in scores.iter().zip(values.chunks_exact(d)) {
        for (o, &x) in out.iter_mut().zip(v) {
            *o += w * x.to_f32();
        }
    }
    let inverse = 1.0 / total;
    out.iter_mut().for_each(|o| *o *= inverse);
}

/// The AVX2 kernels: the query and the output accumulator live in
/// registers (`d / 8` of each), so a position costs `d / 8` loads and
/// fused multiply-adds for its score and as many for its value.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// Registers for the query and the accumulator: d up to 64.
    pub const MAX_CHUNKS: usize = 8;

    macro_rules! attend_kernel {
        ($name:ident, $elem:ty, $load:expr) => {
            /// # Safety
            /// The CPU must have AVX2, FMA and F16C; `q.len()` must be a
            /// multiple of 8 and at most `8 * MAX_CHUNKS`.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub unsafe fn $name(
                q: &[f32],
                keys: &[$elem],
                values: &[$elem],
                scale: f32,
                scores: &mut Vec<f32>,
                out: &mut [f32],
            ) {
                let d = q.len();
                assert!(
                    d % 8 == 0
                        && d / 8 <= MAX_CHUNKS
                        && keys.len() == values.len()
                        && keys.len() % d == 0
                );
                assert_eq!(out.len(), d);
                let chunks = d / 8;
                let load = $load;
                let mut query = [_mm256_setzero_ps(); MAX_CHUNKS];
                for (c, register) in query.iter_mut().enumerate().take(chunks) {
                    // SAFETY: c * 8 + 8 <= d = q.len().
                    *register = unsafe { _mm256_loadu_ps(q.as_ptr().add(c * 8)) };
                }
                scores.clear();
                let mut max = f32::NEG_INFINITY;
                for k in keys.chunks_exact(d) {
                    let mut acc = _mm256_setzero_ps();
                    for (c, register) in query.iter().enumerate().take(chunks) {
                        // SAFETY: k has d elements.
                        acc =
                            _mm256_fmadd_ps(*register, unsafe { load(k.as_ptr().add(c * 8)) }, acc);
                    }
                    let s = horizontal_sum(acc) * scale;
                    max = max.max(s);
                    scores.push(s);
                }
                let total = super::exponentiate(scores, max);
                let mut acc = [_mm256_setzero_ps(); MAX_CHUNKS];
                for (&w, v) in scores.iter().zip(values.chunks_exact(d)) {
                    let weight = _mm256_set1_ps(w);
                    for (c, register) in acc.iter_mut().enumerate().take(chunks) {
                        // SAFETY: v has d elements.
                        *register = _mm256_fmadd_ps(
                            weight,
                            unsafe { load(v.as_ptr().add(c * 8)) },
                            *register,
                        );
                    }
                }
                let inverse = _mm256_set1_ps(1.0 / total);
                for (c, register) in acc.iter().enumerate().take(chunks) {
                    // SAFETY: out has d elements.
                    unsafe {
                        _mm256_storeu_ps(
                            out.as_mut_ptr().add(c * 8),
                            _mm256_mul_ps(*register, inverse),
                        )
                    };
                }
            }
        };
    }

    attend_kernel!(attend_f32, f32, |p: *const f32| unsafe {
        _mm256_loadu_ps(p)
    });
    attend_kernel!(attend_f16, u16, |p: *const u16| unsafe {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    });

    #[inline(always)]
    fn horizontal_sum(v: __m256) -> f32 {
        // SAFETY: only called from the kernels above, which run with AVX2.
        unsafe {
            let pair = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
            let two = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
            _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)))
        }
    }
}

/// `scores[i] = e^(scores[i] - max)`; returns their sum. Two loops, so
/// that the first vectorises (a running sum would serialise it), and eight
/// partial sums for the same reason.
#[inline(always)]
fn exponentiate(scores: &mut [f32], max: f32) -> f32 {
    for s in scores.iter_mut() {
        *s = exp_approx(*s - max);
    }
    let mut partial = [0f32; 8];
    let (eights, rest) = scores.as_chunks::<8>();
    for chunk in eights {
        for (p, &x) in partial.iter_mut().zip(chunk) {
            *p += x;
        }
    }
    partial.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `e^x` for `x <= 0` (softmax after subtracting the maximum) to about
/// 2 ulp, branch-free so that it vectorises: `x = k ln 2 + r` with
/// `|r| <= ln 2 / 2`, a degree-6 polynomial for `e^r` (Cephes `expf`), and
/// `2^k` put into the exponent bits. Below -87 it returns 0 (the true value
/// is under f32's smallest normal).
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let underflow = x < -87.0;
    let x = x.max(-87.0);
    // Round to nearest by the 1.5 * 2^23 trick: `f32::round` is a libm
    // call where the caller is not compiled for SSE4.1 (the GELU of the
    // host sampling step).
    const ROUND: f32 = 12_582_912.0;
    let k = (x * LOG2_E + ROUND) - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let r2 = r * r;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5.000_000_1e-1;
    let e_r = p * r2 + r + 1.0;
    let two_k = f32::from_bits(((k as i32 + 127) as u32) << 23);
    if underflow { 0.0 } else { e_r * two_k }
}

#[cfg(test)]
mod tests {
    use super::*;
    use videogpt_pipeline::rng::SplitMix64;

    fn random(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
        (0..n).map(|_| rng.next_f64() as f32 * 4.0 - 2.0).collect()
    }

    fn to_half(x: &[f32]) -> Vec<u16> {
        x.iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect()
    }

    fn rounded_to_half(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
    }

    #[test]
    fn precision_parses_what_it_prints_and_names_a_bad_value() {
        for precision in [KvPrecision::F16, KvPrecision::F32] {
            assert_eq!(precision.to_string().parse::<KvPrecision>(), Ok(precision));
        }
        let err = "f8".parse::<KvPrecision>().unwrap_err();
        assert!(err.contains("`f8`") && err.contains("f16 or f32"), "{err}");
    }

    #[test]
    fn exp_approx_is_within_a_few_ulp_of_exp() {
        let mut worst = 0f64;
        for i in 0..=87_000 {
            let x = -(i as f32) / 1000.0;
            let want = (x as f64).exp();
            let got = exp_approx(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        assert_eq!(exp_approx(0.0), 1.0);
        assert_eq!(exp_approx(-100.0), 0.0);
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
    }

    /// The textbook formula in f64.
    fn reference(q: &[f32], keys: &[f32], values: &[f32], scale: f32) -> Vec<f64> {
        let d = q.len();
        let scores: Vec<f64> = keys
            .chunks_exact(d)
            .map(|k| {
                q.iter()
                    .zip(k)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
                    * scale as f64
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        (0..d)
            .map(|i| {
                weights
                    .iter()
                    .zip(values.chunks_exact(d))
                    .map(|(w, v)| w * v[i] as f64)
                    .sum::<f64>()
                    / total
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{what}: {g} vs {w}");
        }
    }

    #[test]
    fn one_query_matches_the_textbook_formula_in_both_precisions_and_kernels() {
        let mut rng = SplitMix64::new(7);
        // d = 48 (the bench; SIMD kernels), 64 (their largest), 13 and 1 (portable).
        for (d, n) in [(48, 700), (64, 3), (13, 5), (1, 1)] {
            let q = random(d, &mut rng);
            let keys = random(n * d, &mut rng);
            let values = random(n * d, &mut rng);
            let exact = reference(&q, &keys, &values, 0.3);
            let halved = reference(&q, &rounded_to_half(&keys), &rounded_to_half(&values), 0.3);
            let mut out = vec![0f32; d];
            attend_one(&q, &keys, &values, 0.3, &mut Vec::new(), &mut out);
            assert_close(&out, &exact, &format!("f32, d {d}"));
            attend_one_portable(&q, &keys, &values, 0.3, &mut Vec::new(), &mut out);
            assert_close(&out, &exact, &format!("portable f32, d {d}"));
            attend_one(
                &q,
                &to_half(&keys),
                &to_half(&values),
                0.3,
                &mut Vec::new(),
                &mut out,
            );
            assert_close(&out, &halved, &format!("f16, d {d}"));
            attend_one_portable(
                &q,
                &to_half(&keys),
                &to_half(&values),
                0.3,
                &mut Vec::new(),
                &mut out,
            );
            assert_close(&out, &halved, &format!("portable f16, d {d}"));
        }
    }

    #[test]
    fn appended_blocks_attend_causally_to_the_cache_and_each_other() {
        let (rows, heads, d) = (2, 3, 8);
        let width = heads * d;
        for precision in [KvPrecision::F32, KvPrecision::F16] {
            let store = |x: &[f32]| match precision {
                KvPrecision::F32 => x.to_vec(),
                KvPrecision::F16 => rounded_to_half(x),
            };
            let mut rng = SplitMix64::new(3);
            let mut cache = HostKvCache::new(rows, heads, d, precision);
            let mut all = Vec::new(); // per position, per row: [3, heads, d]
            for m in [1, 3, 1] {
                let qkv = random(rows * m * 3 * width, &mut rng);
                let out = cache.append_and_attend(&qkv, m);
                assert_eq!(out.len(), rows * m * width);
                let first = all.len();
                for p in 0..m {
                    all.push(
                        (0..rows)
                            .map(|r| {
                                qkv[(r * m + p) * 3 * width..(r * m + p + 1) * 3 * width].to_vec()
                            })
                            .collect::<Vec<_>>(),
                    );
                }
                for p in 0..m {
                    for r in 0..rows {
                        for h in 0..heads {
                            let pick = |pos: usize, which: usize| {
                                all[pos][r][which * width + h * d..which * width + (h + 1) * d]
                                    .to_vec()
                            };
                            let visible = first + p + 1;
                            let keys: Vec<f32> =
                                (0..visible).flat_map(|pos| store(&pick(pos, 1))).collect();
                            let values: Vec<f32> =
                                (0..visible).flat_map(|pos| store(&pick(pos, 2))).collect();
                            let want = reference(
                                &pick(first + p, 0),
                                &keys,
                                &values,
                                1.0 / (d as f32).sqrt(),
                            );
                            let got = &out
                                [(r * m + p) * width + h * d..(r * m + p) * width + (h + 1) * d];
                            assert_close(
                                got,
                                &want,
                                &format!("{precision} m {m} p {p} row {r} head {h}"),
                            );
                        }
                    }
                }
            }
            assert_eq!(cache.len(), 5);
        }
    }
}
