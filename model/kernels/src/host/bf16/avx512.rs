//! The packed product on AVX-512-BF16 (`vdpbf16ps`), for CPUs without AMX:
//! blocks of 8 rows x 32 columns in sixteen registers; each pair row of
//! `B` (16 columns, one register) meets a broadcast pair of each row of `A`.

use std::arch::x86_64::*;

use super::pack::PANEL;
use super::{Output, Packed};

const ROWS: usize = 8;
const COLUMNS: usize = 2 * PANEL;

/// `out (+)= A x B` for one packed block of rows.
///
/// # Safety
/// The CPU has AVX-512-BF16; `out` covers the block's `rows x n` values at
/// row stride `n`.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn multiply(a: &Packed, b: &Packed, out: Output, accumulate: bool) {
    let kp = a.depth;
    for j0 in (0..out.n).step_by(COLUMNS) {
        let panels = [
            b.values[j0 / PANEL * b.stride..].as_ptr(),
            b.values[(j0 / PANEL + 1) * b.stride..].as_ptr(),
        ];
        let columns = (out.n - j0).min(COLUMNS);
        for i0 in (0..out.rows).step_by(ROWS) {
            let rows = (out.rows - i0).min(ROWS);
            let mut sums = [[_mm512_setzero_ps(); 2]; ROWS];
            for p in 0..kp / 2 {
                // SAFETY: `kp / 2` pair rows of 32 values in each panel,
                // and rows `i0..i0 + 8` of `A` lie inside its 32-row padding.
                unsafe {
                    let right: __m512bh =
                        std::mem::transmute(_mm512_loadu_ps(panels[1].add(p * COLUMNS).cast()));
                    let left: __m512bh =
                        std::mem::transmute(_mm512_loadu_ps(panels[0].add(p * COLUMNS).cast()));
                    for (r, sum) in sums.iter_mut().enumerate() {
                        let pair = a
                            .values
                            .as_ptr()
                            .add((i0 + r) * a.stride + 2 * p)
                            .cast::<i32>()
                            .read_unaligned();
                        let pair: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                        sum[0] = _mm512_dpbf16_ps(sum[0], pair, left);
                        sum[1] = _mm512_dpbf16_ps(sum[1], pair, right);
                    }
                }
            }
            for (r, sum) in sums.iter().enumerate().take(rows) {
                for (half, &value) in sum.iter().enumerate() {
                    let start = half * PANEL;
                    if start >= columns {
                        break;
                    }
                    let width = (columns - start).min(PANEL);
                    let mask: u16 = if width == PANEL {
                        u16::MAX
                    } else {
                        (1 << width) - 1
                    };
                    // SAFETY: the mask keeps the access inside row
                    // `i0 + r`'s columns `j0..j0 + columns`.
                    unsafe {
                        let dst = out.values.add((i0 + r) * out.n + j0 + start);
                        let value = if accumulate {
                            _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), value)
                        } else {
                            value
                        };
                        _mm512_mask_storeu_ps(dst, mask, value);
                    }
                }
            }
        }
    }
}
