//! Layout transposes on the host: channels first <-> channels last.

use rayon::prelude::*;

/// Whether this CPU has AVX (for [`transpose_8x8_avx`]).
pub(crate) fn has_avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Transposes the 8 x 8 block at `src` (rows `src_stride` apart) into
/// `dst` (rows `dst_stride` apart): `dst[r][i] = src[i][r]`.
///
/// # Safety
/// The CPU has AVX; the 8 rows of 8 values at `src` are readable and those
/// at `dst` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
pub(crate) unsafe fn transpose_8x8_avx(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    unsafe {
        let r = [0, 1, 2, 3, 4, 5, 6, 7].map(|i| _mm256_loadu_ps(src.add(i * src_stride)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let rows = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (i, row) in rows.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(i * dst_stride), row);
        }
    }
}

/// `[batch, rows, cols] -> [batch, cols, rows]`: channels first to channels
/// last (`rows` = channels) and back (`cols` = channels).
pub fn transpose_batched(src: &[f32], [batch, rows, cols]: [usize; 3]) -> Vec<f32> {
    assert_eq!(src.len(), batch * rows * cols, "transpose size");
    let mut dst = Vec::with_capacity(src.len());
    if src.is_empty() {
        return dst;
    }
    // One task per band of BLOCK destination rows, done in BLOCK x BLOCK
    // squares. Every destination element is written once (no zeroing first).
    const BLOCK: usize = 32;
    let avx = has_avx();
    dst.spare_capacity_mut()[..src.len()]
        .par_chunks_mut(rows * cols)
        .zip(src.par_chunks(rows * cols))
        .for_each(|(dst, src)| {
            dst.par_chunks_mut(BLOCK * rows)
                .enumerate()
                .for_each(|(band, out)| {
                    let (first, width) = (band * BLOCK, out.len() / rows);
                    for i0 in (0..rows).step_by(BLOCK) {
                        let i1 = (i0 + BLOCK).min(rows);
                        // Whole 8 x 8 blocks in registers where the CPU has
                        // AVX, the edges (and everything elsewhere) by value.
                        let (i8, r8) = if avx {
                            let i8 = i0 + (i1 - i0) / 8 * 8;
                            let r8 = width / 8 * 8;
                            for i in (i0..i8).step_by(8) {
                                for r in (0..r8).step_by(8) {
                                    // SAFETY: rows i..i + 8 <= rows of `src`
                                    // at columns first + r..+8 <= cols, and
                                    // rows r..r + 8 <= width of `out` at
                                    // columns i..i + 8 <= rows.
                                    #[cfg(target_arch = "x86_64")]
                                    unsafe {
                                        transpose_8x8_avx(
                                            src.as_ptr().add(i * cols + first + r),
                                            cols,
                                            out.as_mut_ptr().add(r * rows + i).cast(),
                                            rows,
                                        )
                                    };
                                }
                            }
                            (i8, r8)
                        } else {
                            (i0, 0)
                        };
                        let mut copy = |is: std::ops::Range<usize>, rs: std::ops::Range<usize>| {
                            // Walk the square so that the side with the long
                            // stride (a power of two here, which would map
                            // every access to one cache set) is the
                            // contiguous one.
                            if cols >= rows {
                                for i in is {
                                    for r in rs.clone() {
                                        out[r * rows + i].write(src[i * cols + first + r]);
                                    }
                                }
                            } else {
                                for r in rs {
                                    for i in is.clone() {
                                        out[r * rows + i].write(src[i * cols + first + r]);
                                    }
                                }
                            }
                        };
                        // The columns right of the blocks, then the rows below.
                        copy(i0..i8, r8..width);
                        copy(i8..i1, 0..width);
                    }
                });
        });
    // SAFETY: the bands cover every destination row `r` of every batch
    // item, and the squares every `i < rows` of each row: all `src.len()`
    // elements were written above.
    unsafe { dst.set_len(src.len()) };
    dst
}

