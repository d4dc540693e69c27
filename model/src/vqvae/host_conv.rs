//! 3D convolutions and transposed convolutions on the host, channels last:
//! the forward passes and input gradients of the VQ-VAE's convolutions when
//! it trains on the CPU (see `flex_conv`).
//!
//! Both kinds are one gather: every output position reads, for each of its
//! kernel taps, the `C_in` channels of one input position (or zeros outside
//! the input), and multiplies that row by a `[taps * C_in, C_out]` weight
//! matrix (`gemm`). A convolution has one set of taps for every output. A
//! transposed convolution of stride `s` splits its outputs per axis into `s`
//! classes by `(o + padding) mod s`; the outputs of a class share the taps
//! `t ≡ that mod s`, so each class is an ordinary convolution with a
//! sub-kernel (no multiplications by inserted zeros, no scatter).
//!
//! Along every axis the taps of a class read consecutive input positions,
//! so in channels-last memory the taps along `w` are one contiguous run.
//! Output positions are cut into tiles that the cores share; every output
//! is written by exactly one tile, in a fixed order of sums, so results do
//! not depend on scheduling. A tile skips the products of kernel rows that
//! read only padding for all its positions: at 4 frames and kernel 3, the
//! first and last frames' tiles skip a third of their taps (a sixth of the
//! layer's multiplications). Otherwise a product leaves out the positions
//! at the tile's ends that read only padding for its rows (the first or
//! last line of a plane).

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Output positions per tile.
const TILE: usize = 256;
/// The least depth (`taps * C_in` terms) of one product of a tile: a tile
/// multiplies kernel rows by their weights a few rows at a time, so that
/// its gathers stay in cache.
const PRODUCT_DEPTH: usize = 256;

/// How a convolution maps input to output along the three spatial axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKindGeometry {
    /// `y[o] += x[o * stride + t - padding_begin] * w[t]`; the weight is
    /// `[C_out, C_in, k, k, k]`.
    Forward,
    /// `y[i * stride + t - padding_begin] += x[i] * w[t]`; the weight is
    /// `[C_in, C_out, k, k, k]`.
    Transposed,
}

/// A convolution's shape: input `[batch, d, h, w, channels_in]` channels
/// last, output spatial size `output` (`channels_out` channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kind: ConvKindGeometry,
    pub batch: usize,
    pub input: [usize; 3],
    pub output: [usize; 3],
    pub channels_in: usize,
    pub channels_out: usize,
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    /// Padding before the first input position, per axis.
    pub padding: [usize; 3],
}

impl ConvGeometry {
    /// The weight, from burn's layout for `kind` (`[C_out, C_in, k..]` for
    /// a convolution, `[C_in, C_out, k..]` for a transposed one), as
    /// `[C_in, taps, C_out]`: row `ci * taps + tap` holds the `C_out`
    /// weights of input channel `ci` at kernel tap `tap` (raster order over
    /// `kernel`). One blocked transpose, spread over the cores.
    fn weights_by_input_and_tap(&self, weight: &[f32]) -> Vec<f32> {
        let taps = self.kernel.iter().product::<usize>();
        let (c_in, c_out) = (self.channels_in, self.channels_out);
        match self.kind {
            ConvKindGeometry::Forward => transpose_batched(weight, [1, c_out, c_in * taps]),
            ConvKindGeometry::Transposed => transpose_batched(weight, [c_in, c_out, taps]),
        }
    }
}

/// The outputs along one axis that share their kernel taps.
#[derive(Debug, Clone)]
struct AxisClass {
    /// Output indices, increasing.
    outputs: Vec<usize>,
    /// Kernel taps, ordered so that the input positions they read increase
    /// by one from tap to tap.
    taps: Vec<usize>,
    /// Per output, the input position of its first tap (negative: before
    /// the input).
    first_input: Vec<isize>,
}

fn axis_classes(geometry: &ConvGeometry, axis: usize) -> Vec<AxisClass> {
    let (kernel, stride, padding) = (
        geometry.kernel[axis],
        geometry.stride[axis],
        geometry.padding[axis] as isize,
    );
    let outputs = geometry.output[axis];
    match geometry.kind {
        ConvKindGeometry::Forward => vec![AxisClass {
            outputs: (0..outputs).collect(),
            taps: (0..kernel).collect(),
            first_input: (0..outputs)
                .map(|o| (o * stride) as isize - padding)
                .collect(),
        }],
        // Output o reads input (o + padding - t) / stride for the taps
        // t ≡ (o + padding) mod stride; largest tap first. A kernel
        // shorter than the stride leaves residues with no taps: their
        // outputs are a class of their own, all zeros.
        ConvKindGeometry::Transposed => (0..stride)
            .map(|residue| {
                let taps: Vec<usize> = (0..kernel)
                    .filter(|t| t % stride == residue)
                    .rev()
                    .collect();
                let first_tap = taps.first().map_or(0, |&t| t as isize);
                let outputs: Vec<usize> = (0..outputs)
                    .filter(|&o| {
                        (o as isize + padding).rem_euclid(stride as isize) == residue as isize
                    })
                    .collect();
                let first_input = outputs
                    .iter()
                    .map(|&o| (o as isize + padding - first_tap).div_euclid(stride as isize))
                    .collect();
                AxisClass {
                    outputs,
                    taps,
                    first_input,
                }
            })
            .collect(),
    }
}

/// A class of outputs in 3D, with its weight matrix `[taps * C_in, C_out]`.
struct Class {
    axes: [AxisClass; 3],
    weights: Vec<f32>,
}

impl Class {
    fn positions(&self, batch: usize) -> usize {
        batch * self.axes.iter().map(|a| a.outputs.len()).product::<usize>()
    }

    fn taps(&self) -> [usize; 3] {
        self.axes.each_ref().map(|a| a.taps.len())
    }
}

fn classes(geometry: &ConvGeometry, weight: &[f32]) -> Vec<Class> {
    let [cz, cy, cx] = [0, 1, 2].map(|axis| axis_classes(geometry, axis));
    let [kd, kh, kw] = geometry.kernel;
    let (c_in, c_out) = (geometry.channels_in, geometry.channels_out);
    let by_input_and_tap = geometry.weights_by_input_and_tap(weight);
    let mut axes = Vec::new();
    for z in &cz {
        for y in &cy {
            for x in &cx {
                axes.push([z.clone(), y.clone(), x.clone()]);
            }
        }
    }
    axes.into_par_iter()
        .map(|axes| {
            let [z, y, x] = &axes;
            // Rows in the gather's order: tap by tap (z, y, x), then C_in;
            // one `[C_in, C_out]` block per tap, copied by all cores.
            let taps: Vec<usize> = z
                .taps
                .iter()
                .flat_map(|&tz| {
                    y.taps
                        .iter()
                        .flat_map(move |&ty| x.taps.iter().map(move |&tx| (tz * kh + ty) * kw + tx))
                })
                .collect();
            let len = taps.len() * c_in * c_out;
            let mut weights = Vec::with_capacity(len);
            weights.spare_capacity_mut()[..len]
                .par_chunks_mut(c_in * c_out)
                .zip(&taps)
                .for_each(|(block, &tap)| {
                    for (ci, row) in block.chunks_exact_mut(c_out).enumerate() {
                        let at = (ci * kd * kh * kw + tap) * c_out;
                        for (w, &v) in row.iter_mut().zip(&by_input_and_tap[at..at + c_out]) {
                            w.write(v);
                        }
                    }
                });
            // SAFETY: one block of `C_in` rows of `C_out` per tap: all `len`
            // values were written above.
            unsafe { weights.set_len(len) };
            Class { axes, weights }
        })
        .collect()
}

/// The convolution of `input` (`[batch, d, h, w, C_in]`, channels last) by
/// `weight` (burn's layout for `geometry.kind`): `[batch, output..,
/// C_out]`, channels last, without bias.
pub fn convolve(input: &[f32], weight: &[f32], geometry: &ConvGeometry) -> Vec<f32> {
    assert_operand_sizes(input, weight, geometry);
    if multiplies_first(geometry) {
        multiply_then_gather(input, weight, geometry, PRODUCTS_BUDGET)
    } else {
        gather_then_multiply(
            input,
            weight,
            None,
            geometry,
            PRODUCT_DEPTH,
            Layout::ChannelsLast,
        )
    }
}

/// [`convolve`] with the output channels first (`[batch, C_out,
/// output..]`, burn's layout), plus `bias` per output channel if given: the
/// tiles add the bias and write their products transposed while they are
/// in cache, rather than in separate passes over the output.
pub fn convolve_channels_first(
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    geometry: &ConvGeometry,
) -> Vec<f32> {
    assert_operand_sizes(input, weight, geometry);
    if let Some(bias) = bias {
        assert_eq!(bias.len(), geometry.channels_out, "bias size");
    }
    if multiplies_first(geometry) {
        let spatial = geometry.output.iter().product::<usize>();
        let last = multiply_then_gather(input, weight, geometry, PRODUCTS_BUDGET);
        let mut first = transpose_batched(&last, [geometry.batch, spatial, geometry.channels_out]);
        if let Some(bias) = bias {
            first
                .par_chunks_mut(spatial.max(1))
                .enumerate()
                .for_each(|(run, values)| {
                    let b = bias[run % geometry.channels_out];
                    values.iter_mut().for_each(|v| *v += b);
                });
        }
        first
    } else {
        gather_then_multiply(
            input,
            weight,
            bias,
            geometry,
            PRODUCT_DEPTH,
            Layout::ChannelsFirst,
        )
    }
}

fn assert_operand_sizes(input: &[f32], weight: &[f32], geometry: &ConvGeometry) {
    let (c_in, c_out) = (geometry.channels_in, geometry.channels_out);
    assert_eq!(
        input.len(),
        geometry.batch * geometry.input.iter().product::<usize>() * c_in,
        "input size"
    );
    assert_eq!(
        weight.len(),
        c_in * c_out * geometry.kernel.iter().product::<usize>(),
        "weight size"
    );
}

/// Few output channels: gathering `taps * C_in` values per output for a
/// product only `C_out` wide costs more than the product itself, so
/// multiply every input position by every tap first (`taps * C_out`
/// values) and gather those. Not for strided forward convolutions, whose
/// inputs outnumber their outputs.
fn multiplies_first(geometry: &ConvGeometry) -> bool {
    4 * geometry.channels_out <= geometry.channels_in
        && (geometry.kind == ConvKindGeometry::Transposed || geometry.stride == [1, 1, 1])
}

/// Where the channels of a convolution's output go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `[batch, output.., C_out]`.
    ChannelsLast,
    /// `[batch, C_out, output..]`.
    ChannelsFirst,
}

/// Per tile of output positions: gather the taps' input rows of a few
/// kernel rows at a time (at least `product_depth` values per position),
/// and add their product with those rows of the weight matrix.
fn gather_then_multiply(
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    geometry: &ConvGeometry,
    product_depth: usize,
    layout: Layout,
) -> Vec<f32> {
    let [od, oh, ow] = geometry.output;
    let (c_in, c_out) = (geometry.channels_in, geometry.channels_out);
    let len = geometry.batch * od * oh * ow * c_out;
    // Every row is written by exactly one tile below: no zeroing first.
    let mut output = Vec::with_capacity(len);
    let classes = classes(geometry, weight);
    let tasks: Vec<(usize, usize)> = classes
        .iter()
        .enumerate()
        .flat_map(|(k, class)| {
            (0..class.positions(geometry.batch))
                .step_by(TILE)
                .map(move |p| (k, p))
        })
        .collect();
    let out = SharedOutput(output.as_mut_ptr());
    tasks.par_iter().for_each(|&(k, start)| {
        with_scratch(|col, product| {
            let class = &classes[k];
            let [lz, ly, lx] = class.taps();
            let count = TILE.min(class.positions(geometry.batch) - start);
            // A few kernel rows (lx taps along w each) per product: the
            // gathers of a row are one run of lx * C_in values, and a few
            // rows' gathers stay in cache. Enough rows that the product is
            // at least `product_depth` deep.
            let run = lx * c_in;
            let rows_per_product = product_depth
                .div_ceil(run.max(1))
                .clamp(1, (lz * ly).max(1));
            let depth = rows_per_product * run;
            // Grown once per thread; every value read below is written first.
            col.resize(col.len().max(TILE * depth), 0.0);
            product.resize(product.len().max(TILE * c_out), 0.0);
            let [az, ay, ax] = &class.axes;
            let (nz, ny, nx) = (az.outputs.len(), ay.outputs.len(), ax.outputs.len());
            let mut targets = [0usize; TILE];
            let mut firsts = [([0isize; 3], 0usize); TILE];
            for t in 0..count {
                let q = start + t;
                let (n, iz, iy, ix) = (
                    q / (nz * ny * nx),
                    (q / (ny * nx)) % nz,
                    (q / nx) % ny,
                    q % nx,
                );
                targets[t] =
                    ((n * od + az.outputs[iz]) * oh + ay.outputs[iy]) * ow + ax.outputs[ix];
                firsts[t] = (
                    [az.first_input[iz], ay.first_input[iy], ax.first_input[ix]],
                    n,
                );
            }
            let [d, h, _] = geometry.input;
            let inside = |v: isize, size: usize| v >= 0 && (v as usize) < size;
            // Whether kernel row `(jz, jy)` reads the input (not only
            // padding) for the tile's position `t`.
            let reads_input = |t: usize, kernel_row: usize| {
                let (jz, jy) = ((kernel_row / ly) as isize, (kernel_row % ly) as isize);
                let [fz, fy, _] = firsts[t].0;
                inside(fz + jz, d) && inside(fy + jy, h)
            };
            let mut summed = false;
            // A class without taps has no weights: its tiles write zeros.
            for (chunk, weights) in class
                .weights
                .chunks((rows_per_product * run * c_out).max(1))
                .enumerate()
            {
                let rows = weights.len() / (run * c_out);
                let width = rows * run;
                // Products of only padding add zeros: the product covers
                // the positions from the first to the last that read the
                // input for one of its kernel rows (in a tile of one
                // plane, kernel row 0 skips the plane's first line), and is
                // skipped if there are none (the tiles at the first and
                // last planes of a short time axis).
                let kernel_rows = chunk * rows_per_product..chunk * rows_per_product + rows;
                let reads = |t: usize| kernel_rows.clone().any(|row| reads_input(t, row));
                let Some(lo) = (0..count).find(|&t| reads(t)) else {
                    continue;
                };
                let hi = (lo..count).rfind(|&t| reads(t)).map_or(count, |t| t + 1);
                if !summed {
                    // The first product overwrites: the positions it leaves
                    // out start from zero.
                    product[..lo * c_out].fill(0.0);
                    product[hi * c_out..count * c_out].fill(0.0);
                }
                for (t, &([fz, fy, fx], n)) in firsts[..count].iter().enumerate().take(hi).skip(lo)
                {
                    if rows == lz * ly {
                        // The whole kernel at once (narrow inputs).
                        gather_row(
                            &mut col[t * width..(t + 1) * width],
                            input,
                            geometry,
                            n,
                            [fz, fy, fx],
                            [lz, ly, lx],
                        );
                        continue;
                    }
                    for r in 0..rows {
                        let kernel_row = chunk * rows_per_product + r;
                        let (jz, jy) = ((kernel_row / ly) as isize, (kernel_row % ly) as isize);
                        let at = t * width + r * run;
                        gather_row(
                            &mut col[at..at + run],
                            input,
                            geometry,
                            n,
                            [fz + jz, fy + jy, fx],
                            [1, 1, lx],
                        );
                    }
                }
                // product[lo..hi, C_out] (+)= col[lo..hi, width] x weights[width, C_out]
                row_major_product(
                    [hi - lo, width, c_out],
                    &mut product[lo * c_out..hi * c_out],
                    (&col[lo * width..hi * width], width),
                    weights,
                    summed,
                );
                summed = true;
            }
            if !summed {
                product[..count * c_out].fill(0.0);
            }
            if let Some(bias) = bias {
                add_to_rows(&mut product[..count * c_out], bias);
            }
            let product = &product[..count * c_out];
            match layout {
                Layout::ChannelsLast => {
                    for (t, &target) in targets[..count].iter().enumerate() {
                        // SAFETY: each output position belongs to exactly
                        // one class and one tile, so no two tasks write the
                        // same row.
                        unsafe { out.write_row(target, &product[t * c_out..(t + 1) * c_out]) };
                    }
                }
                Layout::ChannelsFirst => {
                    let spatial = od * oh * ow;
                    // Position `n * spatial + s` -> value `(n * C_out + c) * spatial + s`.
                    for target in &mut targets[..count] {
                        *target = *target / spatial * c_out * spatial + *target % spatial;
                    }
                    // SAFETY: as above, the tile's positions are its own,
                    // and every offset `target + c * spatial` lies inside
                    // the `batch * C_out * spatial` values.
                    unsafe { out.write_columns(&targets[..count], spatial, product, c_out) };
                }
            }
        })
    });
    // SAFETY: the classes partition the output positions (those of a
    // residue without taps included, written as zeros) and the tiles
    // partition each class, so every position's `C_out` values were written.
    unsafe { output.set_len(len) };
    output
}

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

/// Bytes of tap products [`multiply_then_gather`] keeps at a time.
const PRODUCTS_BUDGET: usize = 32 << 20;

/// Every input position times every tap (`[positions, taps, C_out]`), then
/// per output position the sum of the products its taps reach. Runs over
/// slabs of output planes, each with the products of the input planes it
/// reads, so memory stays bounded: `budget` bytes of products (or one
/// output plane's worth, if more).
fn multiply_then_gather(
    input: &[f32],
    weight: &[f32],
    geometry: &ConvGeometry,
    budget: usize,
) -> Vec<f32> {
    let [d, h, w] = geometry.input;
    let [od, oh, ow] = geometry.output;
    let [kd, kh, kw] = geometry.kernel;
    let taps = kd * kh * kw;
    let (c_in, c_out) = (geometry.channels_in, geometry.channels_out);
    let width = taps * c_out;
    // [C_in, taps * C_out]
    let tap_weights = geometry.weights_by_input_and_tap(weight);
    // Per axis and output index: the input position of its first tap, and its taps.
    let lookup = [0, 1, 2].map(|axis| {
        let mut per_output = vec![(0isize, Vec::new()); geometry.output[axis]];
        for class in axis_classes(geometry, axis) {
            for (&o, &first) in class.outputs.iter().zip(&class.first_input) {
                per_output[o] = (first, class.taps.clone());
            }
        }
        per_output
    });
    let input_planes = |oz: usize| {
        let (first, taps) = &lookup[0][oz];
        let lo = (*first).clamp(0, d as isize) as usize;
        let hi = (*first + taps.len() as isize).clamp(0, d as isize) as usize;
        (lo, hi.max(lo))
    };
    let plane_bytes = h * w * width * std::mem::size_of::<f32>();
    let mut output = parallel_zeros(geometry.batch * od * oh * ow * c_out);
    let mut products = Vec::new();
    for (n, output_item) in output.chunks_mut(od * oh * ow * c_out).enumerate() {
        let mut oz0 = 0;
        while oz0 < od {
            // The slab: output planes oz0..oz1, reading input planes lo..hi.
            let (mut lo, mut hi) = input_planes(oz0);
            let mut oz1 = oz0 + 1;
            while oz1 < od {
                let (a, b) = input_planes(oz1);
                let (lo2, hi2) = (lo.min(a), hi.max(b));
                if (hi2 - lo2) * plane_bytes > budget {
                    break;
                }
                (lo, hi, oz1) = (lo2, hi2, oz1 + 1);
            }
            let rows = (hi - lo) * h * w;
            products.resize(rows * width, 0.0);
            let slab_input = &input[((n * d + lo) * h * w) * c_in..((n * d + hi) * h * w) * c_in];
            products[..rows * width]
                .par_chunks_mut(TILE * width)
                .zip(slab_input.par_chunks(TILE * c_in))
                .for_each(|(product, x)| {
                    let count = x.len() / c_in;
                    // product[count, taps * C_out] = x[count, C_in] x tap_weights
                    row_major_product(
                        [count, c_in, width],
                        product,
                        (x, c_in),
                        &tap_weights,
                        false,
                    );
                });
            let products = &products[..rows * width];
            output_item[oz0 * oh * ow * c_out..oz1 * oh * ow * c_out]
                .par_chunks_mut(oh * ow * c_out)
                .zip(oz0..oz1)
                .for_each(|(plane, oz)| {
                    let (fz, tz) = &lookup[0][oz];
                    for (oy, (fy, ty)) in lookup[1].iter().enumerate() {
                        for (ox, (fx, tx)) in lookup[2].iter().enumerate() {
                            let dst =
                                &mut plane[(oy * ow + ox) * c_out..(oy * ow + ox + 1) * c_out];
                            for (jz, &tap_z) in tz.iter().enumerate() {
                                let z = fz + jz as isize;
                                if z < 0 || z as usize >= d {
                                    continue;
                                }
                                for (jy, &tap_y) in ty.iter().enumerate() {
                                    let y = fy + jy as isize;
                                    if y < 0 || y as usize >= h {
                                        continue;
                                    }
                                    for (jx, &tap_x) in tx.iter().enumerate() {
                                        let x = fx + jx as isize;
                                        if x < 0 || x as usize >= w {
                                            continue;
                                        }
                                        let row =
                                            ((z as usize - lo) * h + y as usize) * w + x as usize;
                                        let tap = (tap_z * kh + tap_y) * kw + tap_x;
                                        let at = row * width + tap * c_out;
                                        for (v, p) in dst.iter_mut().zip(&products[at..at + c_out])
                                        {
                                            *v += p;
                                        }
                                    }
                                }
                            }
                        }
                    }
                });
            oz0 = oz1;
        }
    }
    output
}

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

/// Writes the input rows one output position reads, tap by tap (`C_in`
/// values each, zeros outside the input), into `dst`.
pub(crate) fn gather_row(
    dst: &mut [f32],
    input: &[f32],
    geometry: &ConvGeometry,
    n: usize,
    first: [isize; 3],
    [lz, ly, lx]: [usize; 3],
) {
    let [d, h, w] = geometry.input;
    let c = geometry.channels_in;
    let run = lx * c;
    let inside = |v: isize, size: usize| v >= 0 && (v as usize) < size;
    for jz in 0..lz {
        let z = first[0] + jz as isize;
        let plane = &mut dst[jz * ly * run..(jz + 1) * ly * run];
        if !inside(z, d) {
            plane.fill(0.0);
            continue;
        }
        for jy in 0..ly {
            let y = first[1] + jy as isize;
            let line = &mut plane[jy * run..(jy + 1) * run];
            if !inside(y, h) {
                line.fill(0.0);
                continue;
            }
            let base = ((n * d + z as usize) * h + y as usize) * w;
            let x0 = first[2];
            if x0 >= 0 && x0 as usize + lx <= w {
                let at = (base + x0 as usize) * c;
                line.copy_from_slice(&input[at..at + run]);
            } else {
                for (jx, tap) in line.chunks_exact_mut(c).enumerate() {
                    let x = x0 + jx as isize;
                    if inside(x, w) {
                        let at = (base + x as usize) * c;
                        tap.copy_from_slice(&input[at..at + c]);
                    } else {
                        tap.fill(0.0);
                    }
                }
            }
        }
    }
}

/// The output buffer, written by many tasks at disjoint rows.
#[derive(Clone, Copy)]
struct SharedOutput(*mut f32);
// SAFETY: tasks write disjoint rows (see `convolve`).
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    /// Writes `values` as row `index` (rows `values.len()` wide).
    ///
    /// # Safety
    /// The row lies inside the buffer's capacity, and no one else touches
    /// it meanwhile.
    unsafe fn write_row(&self, index: usize, values: &[f32]) {
        let width = values.len();
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(index * width), width) }
    }

    /// Writes `tile` (`[offsets.len(), width]`) transposed: value `(t, c)`
    /// to `offsets[t] + c * stride`. Runs of 8 consecutive offsets go 8 x 8
    /// at a time through AVX registers where the CPU has it.
    ///
    /// # Safety
    /// Every such destination lies inside the buffer's capacity, and no one
    /// else touches them meanwhile.
    unsafe fn write_columns(&self, offsets: &[usize], stride: usize, tile: &[f32], width: usize) {
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

/// Whether this CPU has AVX (for [`transpose_8x8_avx`]).
fn has_avx() -> bool {
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
unsafe fn transpose_8x8_avx(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook sum of `geometry`, in f64, channels last: every input
    /// position and tap adds to the output position it reaches.
    fn direct(input: &[f32], weight: &[f32], g: &ConvGeometry) -> Vec<f64> {
        let [d, h, w] = g.input;
        let [od, oh, ow] = g.output;
        let [kd, kh, kw] = g.kernel;
        let (ci_n, co_n) = (g.channels_in, g.channels_out);
        // The output position that input `i` reaches through tap `t` on `axis`.
        let reach = |i: usize, t: usize, axis: usize| -> Option<usize> {
            let (s, p) = (g.stride[axis] as isize, g.padding[axis] as isize);
            let o = match g.kind {
                ConvKindGeometry::Transposed => i as isize * s + t as isize - p,
                ConvKindGeometry::Forward => {
                    let num = i as isize + p - t as isize;
                    if num < 0 || num % s != 0 {
                        return None;
                    }
                    num / s
                }
            };
            (o >= 0 && (o as usize) < g.output[axis]).then_some(o as usize)
        };
        let mut out = vec![0f64; g.batch * od * oh * ow * co_n];
        for n in 0..g.batch {
            for (iz, iy, ix) in
                (0..d).flat_map(|z| (0..h).flat_map(move |y| (0..w).map(move |x| (z, y, x))))
            {
                for (tz, ty, tx) in
                    (0..kd).flat_map(|a| (0..kh).flat_map(move |b| (0..kw).map(move |c| (a, b, c))))
                {
                    let (Some(oz), Some(oy), Some(ox)) =
                        (reach(iz, tz, 0), reach(iy, ty, 1), reach(ix, tx, 2))
                    else {
                        continue;
                    };
                    let tap = (tz * kh + ty) * kw + tx;
                    for ci in 0..ci_n {
                        let x = input[(((n * d + iz) * h + iy) * w + ix) * ci_n + ci] as f64;
                        for co in 0..co_n {
                            let wi = match g.kind {
                                ConvKindGeometry::Forward => (co * ci_n + ci) * kd * kh * kw + tap,
                                ConvKindGeometry::Transposed => {
                                    (ci * co_n + co) * kd * kh * kw + tap
                                }
                            };
                            out[(((n * od + oz) * oh + oy) * ow + ox) * co_n + co] +=
                                x * weight[wi] as f64;
                        }
                    }
                }
            }
        }
        out
    }

    fn values(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn gathered_convolutions_equal_the_textbook_sums() {
        use ConvKindGeometry::{Forward, Transposed};
        use Layout::{ChannelsFirst, ChannelsLast};
        // (kind, batch, input, output, c_in, c_out, kernel, stride, padding)
        #[rustfmt::skip]
        let cases = [
            (Forward, 2, [5, 6, 7], [5, 6, 7], 3, 4, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (Forward, 1, [6, 8, 9], [3, 4, 5], 5, 3, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
            (Forward, 2, [6, 8, 8], [6, 4, 4], 2, 5, [4, 4, 4], [1, 2, 2], [2, 1, 1]),
            (Forward, 1, [4, 3, 5], [4, 3, 5], 4, 2, [1, 1, 1], [1, 1, 1], [0, 0, 0]),
            (Forward, 1, [7, 7, 7], [2, 2, 2], 2, 3, [4, 4, 4], [2, 2, 2], [0, 0, 0]),
            (Forward, 2, [5, 4, 6], [5, 4, 6], 8, 1, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (Transposed, 2, [3, 4, 5], [6, 8, 10], 3, 4, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
            (Transposed, 1, [4, 3, 3], [4, 6, 6], 4, 2, [4, 4, 4], [1, 2, 2], [1, 1, 1]),
            (Transposed, 1, [3, 3, 3], [5, 5, 5], 2, 3, [3, 3, 3], [1, 1, 1], [0, 0, 0]),
            (Transposed, 2, [3, 3, 4], [7, 7, 9], 3, 1, [3, 3, 3], [2, 2, 2], [0, 0, 0]),
            (Transposed, 1, [2, 3, 2], [6, 9, 6], 2, 2, [3, 3, 3], [3, 3, 3], [0, 0, 0]),
            (Transposed, 2, [4, 3, 5], [8, 6, 10], 8, 2, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
            // Tiles of one output plane (or line), so that whole products
            // fall in the padding and are skipped.
            (Forward, 2, [4, 16, 16], [4, 16, 16], 3, 4, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (Forward, 1, [8, 32, 32], [4, 16, 16], 2, 3, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
            (Forward, 1, [2, 2, 256], [2, 2, 256], 1, 2, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (Transposed, 1, [4, 16, 16], [8, 32, 32], 2, 3, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
            // Enough output channels for whole 8 x 8 blocks when writing
            // channels first, and tiles across batch items.
            (Forward, 2, [3, 5, 7], [3, 5, 7], 4, 11, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            (Transposed, 2, [3, 4, 5], [6, 8, 10], 3, 16, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
            // Kernels shorter than the stride (the input gradient of a
            // strided 1x1x1 convolution): outputs that no tap reaches.
            (Transposed, 2, [2, 3, 4], [3, 5, 7], 3, 5, [1, 1, 1], [2, 2, 2], [0, 0, 0]),
            (Transposed, 1, [1, 8, 8], [1, 15, 15], 16, 16, [1, 1, 1], [1, 2, 2], [0, 0, 0]),
            (Transposed, 1, [2, 2, 2], [5, 5, 5], 2, 3, [2, 2, 2], [3, 3, 3], [0, 0, 0]),
        ];
        for (i, (kind, batch, input, output, c_in, c_out, kernel, stride, padding)) in
            cases.into_iter().enumerate()
        {
            let g = ConvGeometry {
                kind,
                batch,
                input,
                output,
                channels_in: c_in,
                channels_out: c_out,
                kernel,
                stride,
                padding,
            };
            let x = values(batch * input.iter().product::<usize>() * c_in, 1 + i as u64);
            let w = values(
                c_in * c_out * kernel.iter().product::<usize>(),
                100 + i as u64,
            );
            let want = direct(&x, &w, &g);
            // Both orders wherever they apply; the second one also in
            // slabs of one output plane.
            let mut runs = vec![
                ("convolve", convolve(&x, &w, &g)),
                (
                    "gather first",
                    gather_then_multiply(&x, &w, None, &g, PRODUCT_DEPTH, ChannelsLast),
                ),
                // One kernel row per product, and a few (the last
                // product with fewer).
                (
                    "gather first, by rows",
                    gather_then_multiply(&x, &w, None, &g, 1, ChannelsLast),
                ),
                (
                    "gather first, rows in twos and fives",
                    gather_then_multiply(&x, &w, None, &g, 40, ChannelsLast),
                ),
            ];
            // The same, written channels first, read back channels last.
            let spatial = output.iter().product::<usize>();
            let back = |first: Vec<f32>| transpose_batched(&first, [batch, c_out, spatial]);
            runs.extend([
                (
                    "channels first",
                    back(convolve_channels_first(&x, &w, None, &g)),
                ),
                (
                    "gather first, channels first",
                    back(gather_then_multiply(
                        &x,
                        &w,
                        None,
                        &g,
                        PRODUCT_DEPTH,
                        ChannelsFirst,
                    )),
                ),
                (
                    "gather first, by rows, channels first",
                    back(gather_then_multiply(&x, &w, None, &g, 1, ChannelsFirst)),
                ),
            ]);
            // With a bias, taken off again (channel `j % C_out` of the
            // channels-last values): both orders add it.
            let bias = values(c_out, 200 + i as u64);
            let unbiased = |first: Vec<f32>| {
                let mut last = back(first);
                for (j, v) in last.iter_mut().enumerate() {
                    *v -= bias[j % c_out];
                }
                last
            };
            runs.extend([
                (
                    "channels first, bias",
                    unbiased(convolve_channels_first(&x, &w, Some(&bias), &g)),
                ),
                (
                    "gather first, channels first, bias",
                    unbiased(gather_then_multiply(
                        &x,
                        &w,
                        Some(&bias),
                        &g,
                        1,
                        ChannelsFirst,
                    )),
                ),
            ]);
            if kind == Transposed || stride == [1, 1, 1] {
                runs.push((
                    "multiply first",
                    multiply_then_gather(&x, &w, &g, PRODUCTS_BUDGET),
                ));
                runs.push(("multiply first, slabs", multiply_then_gather(&x, &w, &g, 1)));
            }
            for (how, ours) in runs {
                assert_eq!(ours.len(), want.len(), "case {i} {how}");
                for (j, (a, b)) in ours.iter().zip(&want).enumerate() {
                    assert!(
                        (*a as f64 - b).abs() < 1e-5,
                        "case {i} {how} ({g:?}) at {j}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn batched_transpose_swaps_rows_and_columns() {
        // Both loop orders, and sizes that do and do not fill the blocks
        // (32 x 32 squares, 8 x 8 register blocks, and their edges).
        for [batch, rows, cols] in [
            [2, 3, 70],
            [3, 70, 3],
            [2, 64, 96],
            [1, 33, 65],
            [1, 240, 100],
            [2, 17, 250],
        ] {
            let src: Vec<f32> = (0..batch * rows * cols).map(|v| v as f32).collect();
            let dst = transpose_batched(&src, [batch, rows, cols]);
            for n in 0..batch {
                for i in 0..rows {
                    for j in 0..cols {
                        assert_eq!(
                            dst[(n * cols + j) * rows + i],
                            src[(n * rows + i) * cols + j]
                        );
                    }
                }
            }
            assert_eq!(transpose_batched(&dst, [batch, cols, rows]), src);
        }
    }
}
