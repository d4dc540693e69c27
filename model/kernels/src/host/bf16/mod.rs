//! Matrix products with bf16 operands and f32 sums (`--precision bf16`).
//!
//! Both operands are rounded to bf16 and packed per block of the depth
//! ([`pack`]), then multiplied on AMX tiles ([`amx`]) or with AVX-512-BF16
//! dot products ([`avx512`]), whichever [`CpuPath`] says. Every output is
//! summed in a fixed order, so results do not depend on threads.

mod amx;
mod avx512;
mod pack;

use std::cell::RefCell;

use crate::host::product::Strided;
use crate::precision::CpuPath;
use pack::{Block, PANEL, pack_a, pack_b};

/// Depth of one packed block: a 512-deep panel of `B` and block of `A`
/// stay in the core's L2 cache.
const DEPTH_BLOCK: usize = 512;
/// Rows of `A` packed at a time.
const ROW_BLOCK: usize = 256;

/// A packed operand: `rows_padded` rows (or columns), the first `depth`
/// values (a multiple of 32) of each used; rows of `A` and panels of `B`
/// lie `stride` values apart (`depth`, or more in a prefix of a longer
/// packing: `depth * 16` for a panel of `B` packed exactly that deep).
pub(super) struct Packed<'a> {
    values: &'a [u16],
    rows_padded: usize,
    depth: usize,
    stride: usize,
}

/// Where a block's products go: `rows x n` f32 at row stride `n`.
#[derive(Clone, Copy)]
pub(super) struct Output {
    values: *mut f32,
    rows: usize,
    n: usize,
}

#[derive(Default)]
struct Scratch {
    a: Vec<u16>,
    b: Vec<u16>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Whether a product of these dimensions is worth rounding and packing:
/// smaller ones (a few rows, a shallow depth) stay f32.
pub(crate) fn worth_it([m, k, n]: [usize; 3]) -> bool {
    m >= 16 && n >= 16 && k >= 32
}

/// `out[m, n] (+)= a[m, k] x b[k, n]` with bf16 operands and f32 sums.
///
/// # Safety
/// `path` is AMX or AVX-512-BF16 and this CPU has it; `out` points to
/// `m * n` writable values (row-major), initialised if `accumulate`;
/// every element of `a` and `b` read lies inside its buffer.
pub(crate) unsafe fn product(
    path: CpuPath,
    [m, k, n]: [usize; 3],
    out: *mut f32,
    a: Strided,
    b: Strided,
    accumulate: bool,
) {
    // SAFETY: the caller's promise on `out`.
    if unsafe { empty_product([m, k, n], out, accumulate) } {
        return;
    }
    let padded_columns = n.next_multiple_of(2 * PANEL);
    SCRATCH.with_borrow_mut(|scratch| {
        for k0 in (0..k).step_by(DEPTH_BLOCK) {
            let depth = k0..k.min(k0 + DEPTH_BLOCK);
            let kp = depth.len().next_multiple_of(32);
            pack_b(b, depth.clone(), n, padded_columns, kp, &mut scratch.b);
            let packed_b = Packed {
                values: &scratch.b,
                rows_padded: padded_columns,
                depth: kp,
                stride: kp * PANEL,
            };
            // The first depth block overwrites unless asked to add; the
            // later ones add to it.
            // SAFETY: the caller's promises.
            unsafe { multiply_by_row_blocks(path, a, depth, &packed_b, [m, n], out, accumulate || k0 > 0, &mut scratch.a) };
        }
    });
}

/// Handles a product with no outputs or no depth (zeros, or the sums left
/// as they are); `true` if it was one.
///
/// # Safety
/// `out` points to `m * n` writable values.
unsafe fn empty_product([m, k, n]: [usize; 3], out: *mut f32, accumulate: bool) -> bool {
    if m > 0 && n > 0 && k > 0 {
        return false;
    }
    if m > 0 && n > 0 && !accumulate {
        // SAFETY: `out` holds `m * n` values.
        unsafe { std::ptr::write_bytes(out, 0, m * n) };
    }
    true
}

/// `out[m, n] (+)= a[0..m, depth] x packed_b`: `a` rounded and packed
/// `ROW_BLOCK` rows at a time into `packed_a`, each block multiplied on `path`.
///
/// # Safety
/// As [`product`]; `packed_b` is `depth` deep (rounded up to its `depth`).
#[allow(clippy::too_many_arguments)]
unsafe fn multiply_by_row_blocks(
    path: CpuPath,
    a: Strided,
    depth: std::ops::Range<usize>,
    packed_b: &Packed,
    [m, n]: [usize; 2],
    out: *mut f32,
    accumulate: bool,
    packed_a: &mut Vec<u16>,
) {
    let kp = packed_b.depth;
    for m0 in (0..m).step_by(ROW_BLOCK) {
        let rows = m0..m.min(m0 + ROW_BLOCK);
        let rows_padded = rows.len().next_multiple_of(32);
        let block = Block {
            rows: rows.clone(),
            columns: depth.clone(),
        };
        pack_a(a, block, rows_padded, kp, packed_a);
        let a_block = Packed {
            values: packed_a,
            rows_padded,
            depth: kp,
            stride: kp,
        };
        let output = Output {
            // SAFETY: row `m0` of the `m x n` output.
            values: unsafe { out.add(m0 * n) },
            rows: rows.len(),
            n,
        };
        // SAFETY: the caller vouches for `path` and `out`.
        unsafe {
            match path {
                CpuPath::Amx => amx::multiply(&a_block, packed_b, output, accumulate),
                CpuPath::Avx512Bf16 => avx512::multiply(&a_block, packed_b, output, accumulate),
                CpuPath::F32 => unreachable!("bf16 products need a bf16 path"),
            }
        }
    }
}

/// A right operand `b[k, n]` rounded and packed once for many products
/// that read a prefix of it (the first `k'` rows, the first `n'` columns).
pub(crate) struct PackedB {
    values: Vec<u16>,
    k: usize,
    n: usize,
    /// `k` rounded up to 32: the panels' depth.
    depth: usize,
}

impl PackedB {
    pub(crate) fn new(b: Strided, [k, n]: [usize; 2]) -> Self {
        let depth = k.max(1).next_multiple_of(32);
        let mut values = Vec::new();
        pack_b(b, 0..k, n, n.next_multiple_of(2 * PANEL), depth, &mut values);
        Self { values, k, n, depth }
    }
}

/// `out[m, n] (+)= a[m, k] x b[0..k, 0..n]` with `b` packed ahead.
///
/// # Safety
/// As [`product`]; `k <= b.k` and `n <= b.n`.
pub(crate) unsafe fn product_packed(
    path: CpuPath,
    [m, k, n]: [usize; 3],
    out: *mut f32,
    a: Strided,
    b: &PackedB,
    accumulate: bool,
) {
    assert!(k <= b.k && n <= b.n, "a product past its packed operand");
    // SAFETY: the caller's promise on `out`.
    if unsafe { empty_product([m, k, n], out, accumulate) } {
        return;
    }
    let packed_b = Packed {
        values: &b.values,
        rows_padded: b.n.next_multiple_of(2 * PANEL),
        depth: k.next_multiple_of(32),
        stride: b.depth * PANEL,
    };
    SCRATCH.with_borrow_mut(|scratch| {
        // SAFETY: the caller's promises; `k <= b.k` (asserted).
        unsafe { multiply_by_row_blocks(path, a, 0..k, &packed_b, [m, n], out, accumulate, &mut scratch.a) };
    });
}

#[cfg(test)]
mod tests;
