//! The packed product on AMX tiles: blocks of 32 x 32 outputs in four f32
//! tiles, each step multiplying two 16 x 32 tiles of `A` by two 32 x 16
//! tiles of `B` (`tdpbf16ps`). Stable Rust reaches the tile instructions
//! through `asm!` (the `_tile_*` intrinsics are nightly-only); the
//! compiler never allocates the tile registers, so the blocks own them.

use std::arch::asm;

use super::pack::PANEL;
use super::{Output, Packed};

/// Rows of one tile; every tile here is 16 rows x 64 bytes.
const TILE_ROWS: usize = 16;
/// Outputs per block side: 2 x 2 tiles.
const BLOCK: usize = 32;

/// The tile configuration (palette 1): eight tiles of 16 rows x 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const CONFIG: TileConfig = {
    let mut bytes = [0u8; 64];
    bytes[0] = 1;
    let mut tile = 0;
    while tile < 8 {
        bytes[16 + 2 * tile] = 64;
        bytes[48 + tile] = TILE_ROWS as u8;
        tile += 1;
    }
    TileConfig(bytes)
};

/// `out (+)= A x B` for one packed block of rows.
///
/// # Safety
/// The process has the tile-data permission (`CpuPath::Amx`); `out` covers
/// the block's `rows x n` values at row stride `n`.
pub(super) unsafe fn multiply(a: &Packed, b: &Packed, out: Output, accumulate: bool) {
    let kp = a.depth;
    let steps = kp / 32;
    debug_assert!(steps > 0 && a.values.len() >= a.rows_padded * a.stride);
    let a_stride = a.stride * 2;
    let panel_bytes = b.stride * 2;
    let mut spill = [0f32; BLOCK * BLOCK];
    // SAFETY: loads the configuration all tile instructions below use.
    unsafe { asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly)) };
    for j0 in (0..out.n).step_by(BLOCK) {
        let b_block = b.values[j0 / PANEL * b.stride..].as_ptr();
        for i0 in (0..out.rows).step_by(BLOCK) {
            let a_block = a.values[i0 * a.stride..].as_ptr();
            let full = i0 + BLOCK <= out.rows && j0 + BLOCK <= out.n;
            // SAFETY: the packed operands are padded to whole blocks of 32
            // rows and columns and `kp` deep; a full block lies inside
            // `out`, any other goes through `spill` (32 x 32).
            unsafe {
                if full {
                    let c = out.values.add(i0 * out.n + j0);
                    block(
                        a_block,
                        a_stride,
                        b_block,
                        panel_bytes,
                        c,
                        out.n * 4,
                        steps,
                        accumulate,
                    );
                } else {
                    let (rows, columns) = ((out.rows - i0).min(BLOCK), (out.n - j0).min(BLOCK));
                    if accumulate {
                        for r in 0..rows {
                            let src = out.values.add((i0 + r) * out.n + j0);
                            std::ptr::copy_nonoverlapping(
                                src,
                                spill[r * BLOCK..].as_mut_ptr(),
                                columns,
                            );
                        }
                    }
                    let c = spill.as_mut_ptr();
                    block(
                        a_block,
                        a_stride,
                        b_block,
                        panel_bytes,
                        c,
                        BLOCK * 4,
                        steps,
                        accumulate,
                    );
                    for r in 0..rows {
                        let dst = out.values.add((i0 + r) * out.n + j0);
                        std::ptr::copy_nonoverlapping(spill[r * BLOCK..].as_ptr(), dst, columns);
                    }
                }
            }
        }
    }
    // SAFETY: returns the tile state to its initial (unused) configuration.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// One 32 x 32 block: `c (+)= a[32 x 32 * steps] x b[32 * steps x 32]`.
///
/// # Safety
/// The tile configuration is loaded; `a` holds 32 rows at `a_stride` bytes,
/// `b` two panels `panel_bytes` apart, each `steps` tiles of 1024 bytes;
/// `c` holds 32 rows of 32 f32 at `c_stride` bytes (read if `load`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block(
    a: *const u16,
    a_stride: usize,
    b: *const u16,
    panel_bytes: usize,
    c: *mut f32,
    c_stride: usize,
    steps: usize,
    load: bool,
) {
    // SAFETY: the caller's bounds; the tile registers belong to this code.
    unsafe {
        let a_low = a.byte_add(TILE_ROWS * a_stride);
        let b_right = b.byte_add(panel_bytes);
        let c_right = c.byte_add(64);
        let c_low = c.byte_add(TILE_ROWS * c_stride);
        let c_low_right = c_low.byte_add(64);
        if load {
            asm!(
                "tileloadd tmm0, [{c} + {s}*1]",
                "tileloadd tmm1, [{cr} + {s}*1]",
                "tileloadd tmm2, [{cl} + {s}*1]",
                "tileloadd tmm3, [{clr} + {s}*1]",
                c = in(reg) c, cr = in(reg) c_right, cl = in(reg) c_low, clr = in(reg) c_low_right,
                s = in(reg) c_stride,
                options(nostack, readonly),
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem),
            );
        }
        asm!(
            "2:",
            "tileloadd tmm4, [{a} + {sa}*1]",
            "tileloadd tmm6, [{b} + {sb}*1]",
            "tileloadd tmm5, [{al} + {sa}*1]",
            "tileloadd tmm7, [{br} + {sb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a}, 64",
            "add {al}, 64",
            "add {b}, 1024",
            "add {br}, 1024",
            "dec {n}",
            "jnz 2b",
            a = inout(reg) a => _, al = inout(reg) a_low => _,
            b = inout(reg) b => _, br = inout(reg) b_right => _,
            sa = in(reg) a_stride, sb = in(reg) 64usize,
            n = inout(reg) steps => _,
            options(nostack, readonly),
        );
        asm!(
            "tilestored [{c} + {s}*1], tmm0",
            "tilestored [{cr} + {s}*1], tmm1",
            "tilestored [{cl} + {s}*1], tmm2",
            "tilestored [{clr} + {s}*1], tmm3",
            c = in(reg) c, cr = in(reg) c_right, cl = in(reg) c_low, clr = in(reg) c_low_right,
            s = in(reg) c_stride,
            options(nostack),
        );
    }
}
