//! Operands rounded to bf16 and laid out for the tile products.
//!
//! `A` (`m x k`) becomes row-major bf16, rows padded to a multiple of 32
//! with zero rows and to `kp` (a multiple of 32) values with zeros: an AMX
//! tile of `A` is 16 rows x 32 values read at the row stride, and a row's
//! pair `(2p, 2p + 1)` is the 32-bit value the AVX-512 kernel broadcasts.
//!
//! `B` (`k x n`) becomes panels of 16 columns in the VNNI layout: the pair
//! of rows `(2p, 2p + 1)` of a panel is 16 interleaved pairs, 64 bytes, so
//! 16 such rows are one AMX tile (32 deep x 16 wide) and one row is one
//! AVX-512 register. Columns past `n` and rows past `k` are zeros.
//!
//! Rounding is to nearest, ties to even, with subnormal inputs flushed to
//! zero: what `vcvtneps2bf16` does, so the scalar and vector paths agree.

use crate::host::product::Strided;

/// Values per panel of `B`.
pub(super) const PANEL: usize = 16;

/// f32 -> bf16 bits, as `vcvtneps2bf16` rounds.
pub(super) fn bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7f80_0000 == 0 {
        // Zero or subnormal: a signed zero.
        return ((bits >> 16) & 0x8000) as u16;
    }
    if x.is_nan() {
        return ((bits >> 16) | 0x0040) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// bf16 bits -> f32 (exact).
#[cfg(test)]
pub(super) fn f32_of(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// A block of `A`: rows `rows`, values `columns` of the whole operand.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub rows: std::ops::Range<usize>,
    pub columns: std::ops::Range<usize>,
}

/// Packs `a[rows, columns]` into `packed` (`padded_rows x kp`).
pub(super) fn pack_a(
    a: Strided,
    block: Block,
    padded_rows: usize,
    kp: usize,
    packed: &mut Vec<u16>,
) {
    let (m, k) = (block.rows.len(), block.columns.len());
    packed.clear();
    packed.resize(padded_rows * kp, 0);
    if a.columns == 1 {
        for (i, row) in block.rows.clone().enumerate() {
            let start = row * a.rows + block.columns.start;
            convert(&a.values[start..start + k], &mut packed[i * kp..i * kp + k]);
        }
    } else if a.rows == 1 {
        // Columns are contiguous: convert down a column, write across rows.
        let mut column_values = vec![0u16; m];
        for (j, column) in block.columns.clone().enumerate() {
            let start = column * a.columns + block.rows.start;
            convert(&a.values[start..start + m], &mut column_values);
            for (i, &value) in column_values.iter().enumerate() {
                packed[i * kp + j] = value;
            }
        }
    } else {
        for (i, row) in block.rows.clone().enumerate() {
            for (j, column) in block.columns.clone().enumerate() {
                packed[i * kp + j] = bf16(a.values[row * a.rows + column * a.columns]);
            }
        }
    }
}

/// Packs rows `depth` of `b` (all `n` columns) into VNNI panels
/// (`padded_columns / 16` panels of `kp / 2` pair rows).
pub(super) fn pack_b(
    b: Strided,
    depth: std::ops::Range<usize>,
    n: usize,
    padded_columns: usize,
    kp: usize,
    packed: &mut Vec<u16>,
) {
    let k = depth.len();
    let panel_len = kp * PANEL;
    packed.clear();
    packed.resize(padded_columns / PANEL * panel_len, 0);
    if b.columns == 1 {
        assert!(crate::precision::cpu_path() >= crate::precision::CpuPath::Avx512Bf16, "bf16 products need AVX-512-BF16");
        // SAFETY: the CPU has AVX-512-BF16 (asserted).
        unsafe { pack_rows_avx512(b, depth, n, kp, packed) };
    } else if b.rows == 1 {
        // Columns contiguous (a transposed row-major matrix): a column's
        // pairs are consecutive values, converted together.
        let mut column_values = vec![0u16; k.next_multiple_of(2)];
        for j in 0..n {
            let (panel, c) = (j / PANEL, j % PANEL);
            let dst = &mut packed[panel * panel_len..(panel + 1) * panel_len];
            let start = j * b.columns + depth.start;
            convert(&b.values[start..start + k], &mut column_values[..k]);
            for (p, pair) in column_values.chunks(2).enumerate() {
                dst[p * 2 * PANEL + 2 * c] = pair[0];
                dst[p * 2 * PANEL + 2 * c + 1] = pair.get(1).copied().unwrap_or(0);
            }
        }
    } else {
        // Element (i, j) at i * rows + j * columns.
        for j in 0..n {
            let (panel, c) = (j / PANEL, j % PANEL);
            let dst = &mut packed[panel * panel_len..(panel + 1) * panel_len];
            for (i, row) in depth.clone().enumerate() {
                let (p, e) = (i / 2, i % 2);
                dst[p * 2 * PANEL + 2 * c + e] = bf16(b.values[row * b.rows + j * b.columns]);
            }
        }
    }
}

/// [`pack_b`] of a row-major `b`: for each pair of rows and panel, two
/// 16-column runs rounded in one `vcvtne2ps2bf16` and interleaved into
/// pairs by one permutation.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn pack_rows_avx512(b: Strided, depth: std::ops::Range<usize>, n: usize, kp: usize, packed: &mut [u16]) {
    use std::arch::x86_64::*;
    let k = depth.len();
    let panel_len = kp * PANEL;
    // Result lane 2c takes the low row's column c (lane c of the
    // conversion), lane 2c + 1 the high row's (lane 16 + c).
    let order: [i16; 32] = std::array::from_fn(|lane| if lane % 2 == 0 { lane as i16 / 2 } else { 16 + lane as i16 / 2 });
    // SAFETY: 32 i16 are 64 bytes.
    let order = unsafe { _mm512_loadu_si512(order.as_ptr().cast()) };
    for p in 0..k.div_ceil(2) {
        let low_row = (depth.start + 2 * p) * b.rows;
        let has_high = 2 * p + 1 < k;
        for (panel, dst) in packed.chunks_exact_mut(panel_len).enumerate() {
            let j0 = panel * PANEL;
            if j0 >= n {
                break;
            }
            let width = PANEL.min(n - j0);
            let mask: u16 = if width == PANEL { u16::MAX } else { (1 << width) - 1 };
            // SAFETY: the masks keep the loads inside rows `2p`, `2p + 1`'s
            // columns `j0..j0 + width`; the store is one 64-byte pair row.
            unsafe {
                let low = _mm512_maskz_loadu_ps(mask, b.values.as_ptr().add(low_row + j0));
                let high = if has_high {
                    _mm512_maskz_loadu_ps(mask, b.values.as_ptr().add(low_row + b.rows + j0))
                } else {
                    _mm512_setzero_ps()
                };
                let rounded: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
                let pairs = _mm512_permutexvar_epi16(order, rounded);
                _mm512_storeu_si512(dst[p * 2 * PANEL..].as_mut_ptr().cast(), pairs);
            }
        }
    }
}

/// `dst[i] = bf16(src[i])`, 16 at a time with `vcvtneps2bf16` where the
/// CPU has it.
fn convert(src: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if crate::precision::cpu_path() >= crate::precision::CpuPath::Avx512Bf16 {
        // SAFETY: the path is only chosen where AVX-512-BF16 is present.
        unsafe { convert_avx512(src, dst) };
        return;
    }
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = bf16(s));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
fn convert_avx512(src: &[f32], dst: &mut [u16]) {
    use std::arch::x86_64::*;
    let len = src.len().min(dst.len());
    let mut i = 0;
    while i < len {
        let count = 16.min(len - i);
        let mask: u16 = if count == 16 {
            u16::MAX
        } else {
            (1 << count) - 1
        };
        // SAFETY: the masks keep the loads and stores inside `src[i..len]`
        // and `dst[i..len]`.
        unsafe {
            let values = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
            let rounded: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(values));
            _mm256_mask_storeu_epi16(dst.as_mut_ptr().add(i).cast(), mask, rounded);
        }
        i += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_and_matches_the_instruction() {
        assert_eq!(bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (down).
        assert_eq!(bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 is halfway up from 1 + 2^-7: ties to even (up).
        assert_eq!(bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16(f32::INFINITY), 0x7f80);
        assert_eq!(bf16(-0.0), 0x8000);
        assert_eq!(bf16(f32::from_bits(1)), 0);
        assert!(f32_of(bf16(f32::NAN)).is_nan());
        let mut values: Vec<f32> = (0..4096u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
            .collect();
        values.extend([0.0, -0.0, f32::MAX, f32::MIN_POSITIVE, 1e-40, 3.0e38, -7.5]);
        let scalar: Vec<u16> = values.iter().map(|&v| bf16(v)).collect();
        let mut vector = vec![0u16; values.len()];
        convert(&values, &mut vector);
        for ((v, s), w) in values.iter().zip(&scalar).zip(&vector) {
            if !v.is_nan() {
                assert_eq!(s, w, "{v:e}");
            }
        }
    }
}
