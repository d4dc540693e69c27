//! Linear layers on the host, for sampling on the CPU (flex).
//!
//! A sampling step multiplies a handful of rows (one per sample in a row
//! group) by every weight matrix of the transformer. With so few rows the
//! product is bound by reading the weights, and a general matrix product
//! (burn's `Linear`, `gemm`) spends its time packing them anew for every
//! call. [`PackedLinear`] packs them once, when sampling starts, into
//! panels of 16 output columns stored input-major, so a step reads each
//! weight exactly once, in order, and keeps the panel's accumulators for
//! up to four rows in registers.

use burn::nn::Linear;

use crate::flex::float_values;

/// Output columns per panel: two AVX registers of f32.
const PANEL: usize = 16;
/// Rows multiplied together (their accumulators stay in registers).
const ROWS: usize = 4;

/// `y = x W + b` with `W` packed for row counts of a few.
#[derive(Debug, Clone)]
pub struct PackedLinear {
    inputs: usize,
    outputs: usize,
    /// `[panels, inputs, PANEL]`: panel `p` holds the columns
    /// `p * PANEL ..` for every input, zero-padded past `outputs`.
    panels: Vec<f32>,
    /// `[panels * PANEL]`, zero-padded (zeros without a bias).
    bias: Vec<f32>,
}

impl PackedLinear {
    /// Packs a `[inputs, outputs]` row-major weight and its bias.
    pub fn new(weight: &[f32], bias: Option<&[f32]>, inputs: usize, outputs: usize) -> Self {
        assert_eq!(
            weight.len(),
            inputs * outputs,
            "weight is not [inputs, outputs]"
        );
        let count = outputs.div_ceil(PANEL);
        let mut panels = vec![0f32; count * inputs * PANEL];
        for (p, panel) in panels.chunks_exact_mut(inputs * PANEL).enumerate() {
            let columns = (p * PANEL)..((p + 1) * PANEL).min(outputs);
            for (i, line) in panel.chunks_exact_mut(PANEL).enumerate() {
                line[..columns.len()].copy_from_slice(
                    &weight[i * outputs + columns.start..i * outputs + columns.end],
                );
            }
        }
        let mut padded = vec![0f32; count * PANEL];
        if let Some(bias) = bias {
            assert_eq!(bias.len(), outputs, "bias is not [outputs]");
            padded[..outputs].copy_from_slice(bias);
        }
        Self {
            inputs,
            outputs,
            panels,
            bias: padded,
        }
    }

    /// Packs burn's `Linear` (weight `[inputs, outputs]`).
    pub fn from_linear(linear: &Linear) -> Self {
        let [inputs, outputs] = linear.weight.dims();
        let weight = float_values(linear.weight.val());
        let bias = linear.bias.as_ref().map(|b| float_values(b.val()));
        Self::new(&weight, bias.as_deref(), inputs, outputs)
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `out[r] = x[r] W + b` for `rows` rows: `x` is `[rows, inputs]`,
    /// `out` `[rows, outputs]`.
    pub fn forward(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        assert_eq!(x.len(), rows * self.inputs, "x is not [rows, inputs]");
        assert_eq!(out.len(), rows * self.outputs, "out is not [rows, outputs]");
        let mut start = 0;
        while start < rows {
            let n = (rows - start).min(ROWS);
            let x = &x[start * self.inputs..(start + n) * self.inputs];
            let out = &mut out[start * self.outputs..(start + n) * self.outputs];
            match n {
                1 => self.rows::<1>(x, out),
                2 => self.rows::<2>(x, out),
                3 => self.rows::<3>(x, out),
                _ => self.rows::<4>(x, out),
            }
            start += n;
        }
    }

    fn rows<const R: usize>(&self, x: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if simd::available() {
            // SAFETY: the CPU has AVX2 and FMA; the shapes were checked by `forward`.
            return unsafe { simd::rows::<R>(self, x, out) };
        }
        self.rows_portable::<R>(x, out)
    }

    fn rows_portable<const R: usize>(&self, x: &[f32], out: &mut [f32]) {
        let (k, n) = (self.inputs, self.outputs);
        for (p, panel) in self.panels.chunks_exact(k * PANEL).enumerate() {
            let mut acc = [[0f32; PANEL]; R];
            for a in acc.iter_mut() {
                a.copy_from_slice(&self.bias[p * PANEL..(p + 1) * PANEL]);
            }
            for (i, line) in panel.chunks_exact(PANEL).enumerate() {
                for (r, a) in acc.iter_mut().enumerate() {
                    let xi = x[r * k + i];
                    for (a, &w) in a.iter_mut().zip(line) {
                        *a += xi * w;
                    }
                }
            }
            store::<R>(&acc, p, n, out);
        }
    }
}

/// Writes a panel's accumulators to its columns of `out` (`[R, n]`),
/// dropping the zero-padded ones past `n`.
#[inline(always)]
fn store<const R: usize>(acc: &[[f32; PANEL]; R], panel: usize, n: usize, out: &mut [f32]) {
    let start = panel * PANEL;
    let width = PANEL.min(n - start);
    for (r, a) in acc.iter().enumerate() {
        out[r * n + start..r * n + start + width].copy_from_slice(&a[..width]);
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{PANEL, PackedLinear};

    pub fn available() -> bool {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA; `x` is `[R, inputs]` and `out`
    /// `[R, outputs]`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn rows<const R: usize>(linear: &PackedLinear, x: &[f32], out: &mut [f32]) {
        let (k, n) = (linear.inputs, linear.outputs);
        assert!(x.len() == R * k && out.len() == R * n);
        for (p, panel) in linear.panels.chunks_exact(k * PANEL).enumerate() {
            // SAFETY (all loads): the bias has PANEL values per panel, the
            // panel k lines of PANEL, and x R rows of k.
            let bias = linear.bias[p * PANEL..].as_ptr();
            let (b0, b1) = unsafe { (_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8))) };
            let mut acc = [[b0, b1]; R];
            let w = panel.as_ptr();
            for i in 0..k {
                let (w0, w1) = unsafe {
                    (
                        _mm256_loadu_ps(w.add(i * PANEL)),
                        _mm256_loadu_ps(w.add(i * PANEL + 8)),
                    )
                };
                for (r, a) in acc.iter_mut().enumerate() {
                    let xi = _mm256_set1_ps(unsafe { *x.get_unchecked(r * k + i) });
                    a[0] = _mm256_fmadd_ps(xi, w0, a[0]);
                    a[1] = _mm256_fmadd_ps(xi, w1, a[1]);
                }
            }
            let mut lanes = [[0f32; PANEL]; R];
            for (lane, a) in lanes.iter_mut().zip(&acc) {
                // SAFETY: a lane holds PANEL = 16 floats.
                unsafe {
                    _mm256_storeu_ps(lane.as_mut_ptr(), a[0]);
                    _mm256_storeu_ps(lane.as_mut_ptr().add(8), a[1]);
                }
            }
            super::store::<R>(&lanes, p, n, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use videogpt_pipeline::rng::SplitMix64;

    fn random(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
        (0..n).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect()
    }

    /// Every row count 1..=9 (full groups of four and the remainders) and
    /// widths that do and do not fill the last panel, against the f64
    /// textbook product; the SIMD kernel (where it runs) and the portable
    /// one.
    #[test]
    fn packed_product_equals_the_textbook_product() {
        let mut rng = SplitMix64::new(7);
        for (k, n, with_bias) in [
            (48, 144, true),
            (37, 21, false),
            (5, 16, true),
            (96, 512, false),
        ] {
            let weight = random(k * n, &mut rng);
            let bias = random(n, &mut rng);
            let linear = PackedLinear::new(&weight, with_bias.then_some(&bias[..]), k, n);
            for rows in 1..=9 {
                let x = random(rows * k, &mut rng);
                let mut out = vec![f32::NAN; rows * n];
                linear.forward(&x, rows, &mut out);
                let mut portable = vec![f32::NAN; rows * n];
                for start in (0..rows).step_by(ROWS) {
                    let m = (rows - start).min(ROWS);
                    let (x, o) = (
                        &x[start * k..(start + m) * k],
                        &mut portable[start * n..(start + m) * n],
                    );
                    match m {
                        1 => linear.rows_portable::<1>(x, o),
                        2 => linear.rows_portable::<2>(x, o),
                        3 => linear.rows_portable::<3>(x, o),
                        _ => linear.rows_portable::<4>(x, o),
                    }
                }
                for r in 0..rows {
                    for j in 0..n {
                        let want = (0..k)
                            .map(|i| x[r * k + i] as f64 * weight[i * n + j] as f64)
                            .sum::<f64>()
                            + if with_bias { bias[j] as f64 } else { 0.0 };
                        for (name, got) in [
                            ("dispatched", out[r * n + j]),
                            ("portable", portable[r * n + j]),
                        ] {
                            assert!(
                                (got as f64 - want).abs() < 1e-5 * (k as f64).sqrt(),
                                "{name} kernel, {k}x{n}, {rows} rows, [{r}, {j}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
