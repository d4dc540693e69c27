//! Output buffers the cores fill together, and per-thread scratch space.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::transpose::{has_avx, transpose_8x8_avx};

thread_local! {
    /// Two buffers per thread, kept from call to call: the tiles' gathers
    /// and products would otherwise allocate and zero megabytes each time.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's two scratch buffers (any length, any
/// contents). `f` must not start parallel work: the thread could pick up
/// another task that wants the same buffers.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
    SCRATCH.with_borrow_mut(|(first, second)| f(first, second))
}

/// The output buffer, written by many tasks at disjoint rows.
#[derive(Clone, Copy)]
pub(crate) struct SharedOutput(pub(crate) *mut f32);
// SAFETY: tasks write disjoint rows (see `convolve`).
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    /// Writes `values` as row `index` (rows `values.len()` wide).
    ///
    /// # Safety
    /// The row lies inside the buffer's capacity, and no one else touches
    /// it meanwhile.
    pub(crate) unsafe fn write_row(&self, index: usize, values: &[f32]) {
        let width = values.len();
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(index * width), width) }
    }

    /// Writes `values` at value offset `offset`.
    ///
    /// # Safety
    /// `offset..offset + values.len()` lies inside the buffer's capacity,
    /// and no one else touches it meanwhile.
    pub(crate) unsafe fn write_at(&self, offset: usize, values: &[f32]) {
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(offset), values.len()) }
    }

    /// Writes `tile` (`[offsets.len(), width]`) transposed: value `(t, c)`
    /// to `offsets[t] + c * stride`. Runs of 8 consecutive offsets go 8 x 8
    /// at a time through AVX registers where the CPU has it.
    ///
    /// # Safety
    /// Every such destination lies inside the buffer's capacity, and no one
    /// else touches them meanwhile.
    pub(crate) unsafe fn write_columns(&self, offsets: &[usize], stride: usize, tile: &[f32], width: usize) {
        let avx = has_avx();
        for (block, offsets) in offsets.chunks(8).enumerate() {
            let t0 = block * 8;
            let consecutive = offsets.len() == 8 && offsets[7] == offsets[0] + 7;
            let mut c0 = 0;
            if avx && consecutive {
                #[cfg(target_arch = "x86_64")]
                while c0 + 8 <= width {
                    // SAFETY: rows t0..t0 + 8 of the tile at columns
                    // c0..c0 + 8; destinations offsets[0] + (c0..c0 + 8) *
                    // stride, 8 consecutive values each (the caller's
                    // promise).
                    unsafe {
                        transpose_8x8_avx(
                            tile.as_ptr().add(t0 * width + c0),
                            width,
                            self.0.add(offsets[0] + c0 * stride),
                            stride,
                        )
                    };
                    c0 += 8;
                }
            }
            for c in c0..width {
                for (i, &offset) in offsets.iter().enumerate() {
                    // SAFETY: the caller's promise.
                    unsafe { *self.0.add(offset + c * stride) = tile[(t0 + i) * width + c] };
                }
            }
        }
    }
}

/// `len` zeros, written by all cores: `vec![0.0; len]` of a few megabytes
/// comes from the heap and is zeroed by the calling thread alone, while the
/// other cores wait.
pub(crate) fn parallel_zeros(len: usize) -> Vec<f32> {
    let mut zeros = Vec::with_capacity(len);
    zeros
        .spare_capacity_mut()
        .par_chunks_mut(1 << 16)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: every one of the `len` elements was initialised just above.
    unsafe { zeros.set_len(len) };
    zeros
}

/// `len` values that `fill(index, chunk)` writes in parallel, chunk by
/// chunk (`chunk_len` values each, the last one shorter), with nothing
/// zeroed first: a buffer of a few megabytes that is overwritten anyway
/// costs a pass over memory to zero.
///
/// # Safety
/// `fill` writes every value of every chunk it is given.
pub(crate) unsafe fn parallel_filled(
    len: usize,
    chunk_len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk_len.max(1))
        .enumerate()
        .for_each(|(index, chunk)| fill(index, chunk));
    // SAFETY: `fill` wrote all `len` values (the caller's promise).
    unsafe { values.set_len(len) };
    values
}

