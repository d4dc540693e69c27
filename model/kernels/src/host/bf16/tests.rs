use videogpt_pipeline::rng::SplitMix64;

use super::pack::{bf16, f32_of};
use super::*;
use crate::precision::cpu_path;

fn random(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
    (0..n).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect()
}

/// The paths this CPU can run.
fn paths() -> Vec<CpuPath> {
    [CpuPath::Avx512Bf16, CpuPath::Amx]
        .into_iter()
        .filter(|&path| path <= cpu_path())
        .collect()
}

/// `sum_j a(i, j) b(j, n)` in f64, of the operands rounded to bf16 (`round`)
/// or as given.
fn textbook(dims: [usize; 3], a: Strided, b: Strided, round: bool) -> Vec<f64> {
    let [m, k, n] = dims;
    let value = |x: f32| {
        if round {
            f64::from(f32_of(bf16(x)))
        } else {
            f64::from(x)
        }
    };
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|p| {
                    value(a.values[i * a.rows + p * a.columns])
                        * value(b.values[p * b.rows + j * b.columns])
                })
                .sum();
        }
    }
    out
}

/// Shapes with and without whole tiles, two depth blocks, transposed
/// operands and accumulation, on every path this CPU has: each output is
/// the f64 sum of the rounded operands up to f32 summation error, and the
/// f32 product up to bf16 rounding of the operands.
#[test]
fn bf16_products_match_the_sums_of_rounded_operands() {
    let paths = paths();
    if paths.is_empty() {
        eprintln!("no bf16 path on this CPU: nothing to compare");
        return;
    }
    let mut rng = SplitMix64::new(11);
    for [m, k, n] in [
        [32, 32, 32],
        [70, 96, 33],
        [1, 31, 17],
        [256, 600, 64],
        [45, 1100, 100],
        [300, 40, 16],
    ] {
        for (a_transposed, b_transposed) in [(false, false), (true, false), (false, true)] {
            let a_values = random(m * k, &mut rng);
            let b_values = random(k * n, &mut rng);
            let a = if a_transposed {
                Strided::transposed(&a_values, m)
            } else {
                Strided::row_major(&a_values, k)
            };
            let b = if b_transposed {
                Strided::transposed(&b_values, k)
            } else {
                Strided::row_major(&b_values, n)
            };
            let rounded = textbook([m, k, n], a, b, true);
            let exact = textbook([m, k, n], a, b, false);
            let start = random(m * n, &mut rng);
            for &path in &paths {
                for accumulate in [false, true] {
                    let mut out = start.clone();
                    // SAFETY: `out` holds `m * n` initialised values; the
                    // operands' views lie inside their buffers.
                    unsafe { product(path, [m, k, n], out.as_mut_ptr(), a, b, accumulate) };
                    let scale = (k as f64).sqrt();
                    for (i, &value) in out.iter().enumerate() {
                        let base = if accumulate { f64::from(start[i]) } else { 0.0 };
                        let what = format!(
                            "{path} [{m}, {k}, {n}] transposed {a_transposed}/{b_transposed} accumulate {accumulate} at {i}"
                        );
                        let summation = (f64::from(value) - base - rounded[i]).abs();
                        assert!(
                            summation <= 1e-5 * scale + 1e-6 * base.abs(),
                            "{what}: {value} vs {}",
                            base + rounded[i]
                        );
                        // bf16 operands: about 2^-9 relative each, over
                        // sqrt(k) random-signed terms.
                        let operands = (f64::from(value) - base - exact[i]).abs();
                        assert!(
                            operands <= 8e-3 * scale,
                            "{what}: {value} vs exact {}",
                            base + exact[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn empty_depth_writes_zeros_or_leaves_the_sums() {
    let none: [f32; 0] = [];
    let (a, b) = (Strided::row_major(&none, 0), Strided::row_major(&none, 3));
    for path in paths() {
        let mut out = vec![3.0f32; 6];
        for (accumulate, expected) in [(true, 3.0), (false, 0.0)] {
            // SAFETY: `out` holds 2 x 3 values; `k` is 0, nothing is read.
            unsafe { product(path, [2, 0, 3], out.as_mut_ptr(), a, b, accumulate) };
            assert_eq!(out, [expected; 6], "{path}, accumulate {accumulate}");
        }
    }
}

/// An operand packed once serves products over prefixes of its rows and
/// columns, as the causal attention reads its keys and values.
#[test]
fn packed_right_operands_serve_prefixes() {
    let paths = paths();
    if paths.is_empty() {
        // Packing lays operands out for the bf16 instructions themselves.
        eprintln!("no bf16 path on this CPU: nothing to pack for");
        return;
    }
    let mut rng = SplitMix64::new(13);
    let [k, n] = [100, 70];
    for b_transposed in [false, true] {
        let b_values = random(k * n, &mut rng);
        let b = if b_transposed { Strided::transposed(&b_values, k) } else { Strided::row_major(&b_values, n) };
        let packed = PackedB::new(b, [k, n]);
        for [m, k2, n2] in [[40, 100, 70], [64, 64, 40], [17, 33, 17], [70, 1, 70]] {
            let a_values = random(m * k2, &mut rng);
            let a = Strided::row_major(&a_values, k2);
            let expected = textbook([m, k2, n2], a, b, true);
            for &path in &paths {
                let mut out = vec![f32::NAN; m * n2];
                // SAFETY: `out` holds `m * n2` values; the prefix lies inside
                // the packed operand.
                unsafe { product_packed(path, [m, k2, n2], out.as_mut_ptr(), a, &packed, false) };
                for (i, (&value, &want)) in out.iter().zip(&expected).enumerate() {
                    assert!((f64::from(value) - want).abs() <= 1e-4, "{path} [{m}, {k2}, {n2}] at {i}: {value} vs {want}");
                }
            }
        }
    }
}
