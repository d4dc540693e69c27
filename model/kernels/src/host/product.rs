//! Matrix products on the host (`gemm`, or bf16 tiles under `--precision
//! bf16`), operands read in place by strides.

use std::mem::MaybeUninit;

/// Adds `bias` to every row of `values` (rows `bias.len()` wide): a tile
/// of products while it is still in cache.
pub(crate) fn add_to_rows(values: &mut [f32], bias: &[f32]) {
    for row in values.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
}

/// A matrix operand read in place: element `(i, j)` at `values[i * rows
/// + j * columns]` (row-major: `columns` = 1; a transposed row-major
/// matrix: `rows` = 1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strided<'a> {
    pub values: &'a [f32],
    pub rows: usize,
    pub columns: usize,
}

impl<'a> Strided<'a> {
    /// Row `i` starts at `i * row_stride`, its values consecutive.
    pub fn row_major(values: &'a [f32], row_stride: usize) -> Self {
        Self {
            values,
            rows: row_stride,
            columns: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `row_stride`
    /// apart: element `(i, j)` is that matrix's `(j, i)`.
    pub fn transposed(values: &'a [f32], row_stride: usize) -> Self {
        Self {
            values,
            rows: 1,
            columns: row_stride,
        }
    }

    /// Whether every element of an `[m, k]` view lies inside `values`.
    fn holds(&self, [m, k]: [usize; 2]) -> bool {
        m == 0 || k == 0 || (m - 1) * self.rows + (k - 1) * self.columns < self.values.len()
    }
}

/// `out[m, n] = a[m, k] x b[k, n]` (or `+=`, if `accumulate`), on the
/// calling thread. `out` and `b` are row-major and contiguous; row `i` of
/// `a` starts at `i * a_row_stride` (`k` for a contiguous `a`).
pub(crate) fn row_major_product(
    dims: [usize; 3],
    out: &mut [f32],
    (a, a_row_stride): (&[f32], usize),
    b: &[f32],
    accumulate: bool,
) {
    assert!(out.len() >= dims[0] * dims[2], "product output");
    let (a, b) = (
        Strided::row_major(a, a_row_stride),
        Strided::row_major(b, dims[2]),
    );
    // SAFETY: `out` holds the `m * n` values written (and read, if
    // `accumulate`), all initialised.
    unsafe { product_to(dims, out.as_mut_ptr(), a, b, accumulate) }
}

/// `out[m, n] (+)= a[m, k] x b[k, n]` with both operands read in place by
/// strides; `out` row-major and contiguous.
pub(crate) fn strided_product(dims: [usize; 3], out: &mut [f32], a: Strided, b: Strided, accumulate: bool) {
    assert!(out.len() >= dims[0] * dims[2], "product output");
    // SAFETY: `out` holds the `m * n` values written (and read, if
    // `accumulate`), all initialised.
    unsafe { product_to(dims, out.as_mut_ptr(), a, b, accumulate) }
}

/// `out[m, n] = a[m, k] x b[k, n]` into memory that need not be
/// initialised: every one of the `m * n` values is written, none is read.
/// `out` is row-major and contiguous; `a` and `b` are read in place.
pub(crate) fn product_into(dims: [usize; 3], out: &mut [MaybeUninit<f32>], a: Strided, b: Strided) {
    assert!(out.len() >= dims[0] * dims[2], "product output");
    // SAFETY: `out` holds the `m * n` values written; without `accumulate`
    // gemm writes `dst` without reading it (and zeros where `k` is 0).
    unsafe { product_to(dims, out.as_mut_ptr().cast(), a, b, false) }
}

/// # Safety
/// `out` points to `m * n` writable values, initialised if `accumulate`.
unsafe fn product_to(
    [m, k, n]: [usize; 3],
    out: *mut f32,
    a: Strided,
    b: Strided,
    accumulate: bool,
) {
    assert!(a.holds([m, k]) && b.holds([k, n]), "product operands");
    if let Some(path) = crate::precision::bf16_path()
        && super::bf16::worth_it([m, k, n])
    {
        // SAFETY: as below; `bf16_path` only names a path this CPU has.
        unsafe { super::bf16::product(path, [m, k, n], out, a, b, accumulate) };
        return;
    }
    // SAFETY: the assertion keeps every element of `a` and `b` inside its
    // buffer; the caller vouches for `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            n as isize,
            accumulate,
            a.values.as_ptr(),
            a.columns as isize,
            a.rows as isize,
            b.values.as_ptr(),
            b.columns as isize,
            b.rows as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A right operand `b[k, n]` prepared once for many products that read a
/// prefix of it (its first rows and columns): rounded and packed under
/// `--precision bf16` on a bf16 path, else read in place.
pub(crate) struct RightOperand<'a> {
    values: Strided<'a>,
    packed: Option<(crate::precision::CpuPath, super::bf16::PackedB)>,
}

impl<'a> RightOperand<'a> {
    pub fn new(values: Strided<'a>, [k, n]: [usize; 2]) -> Self {
        assert!(values.holds([k, n]), "product operand");
        let packed = crate::precision::bf16_path()
            .filter(|_| super::bf16::worth_it([16, k, n]))
            .map(|path| (path, super::bf16::PackedB::new(values, [k, n])));
        Self { values, packed }
    }
}

/// `out[m, n] (+)= a[m, k] x b[0..k, 0..n]`, `out` row-major and contiguous.
pub(crate) fn product_with(dims: [usize; 3], out: &mut [f32], a: Strided, b: &RightOperand, accumulate: bool) {
    let [m, k, n] = dims;
    assert!(out.len() >= m * n, "product output");
    match &b.packed {
        Some((path, packed)) if super::bf16::worth_it(dims) => {
            assert!(a.holds([m, k]), "product operands");
            // SAFETY: `out` holds the `m * n` values, initialised; `a`'s view
            // lies inside its buffer, and `packed_product` checks the prefix.
            unsafe { super::bf16::product_packed(*path, dims, out.as_mut_ptr(), a, packed, accumulate) }
        }
        _ => strided_product(dims, out, a, b.values, accumulate),
    }
}
