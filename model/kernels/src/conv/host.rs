//! 3D convolutions and transposed convolutions on the host, channels last:
//! the forward passes and input gradients of the VQ-VAE's convolutions when
//! it trains on the CPU (see [`super::autodiff`]).
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

use rayon::prelude::*;

use super::geometry::*;
use crate::host::buffers::{SharedOutput, parallel_zeros, with_scratch};
use crate::host::product::{RightOperand, Strided, add_to_rows, product_with};
use crate::host::transpose::transpose_batched;

/// Output positions per tile.
const TILE: usize = 256;
/// The least depth (`taps * C_in` terms) of one product of a tile: a tile
/// multiplies kernel rows by their weights a few rows at a time, so that
/// its gathers stay in cache.
const PRODUCT_DEPTH: usize = 256;

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
    // Each class's weights by products (`rows_per_product` kernel rows
    // each), prepared once for all tiles (packed under bf16).
    // A few kernel rows (lx taps along w each) per product: the gathers of
    // a row are one run of lx * C_in values, and a few rows' gathers stay
    // in cache. Enough rows that the product is at least `product_depth`
    // deep.
    let rows_per_product_of = |class: &Class| {
        let [lz, ly, lx] = class.taps();
        product_depth.div_ceil((lx * c_in).max(1)).clamp(1, (lz * ly).max(1))
    };
    let operands: Vec<Vec<RightOperand>> = classes
        .iter()
        .map(|class| {
            let chunk = (rows_per_product_of(class) * class.taps()[2] * c_in * c_out).max(1);
            class
                .weights
                .chunks(chunk)
                .map(|weights| RightOperand::new(Strided::row_major(weights, c_out), [weights.len() / c_out, c_out]))
                .collect()
        })
        .collect();
    let out = SharedOutput(output.as_mut_ptr());
    tasks.par_iter().for_each(|&(k, start)| {
        with_scratch(|col, product| {
            let class = &classes[k];
            let [lz, ly, lx] = class.taps();
            let count = TILE.min(class.positions(geometry.batch) - start);
            let run = lx * c_in;
            let rows_per_product = rows_per_product_of(class);
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
                product_with(
                    [hi - lo, width, c_out],
                    &mut product[lo * c_out..hi * c_out],
                    Strided::row_major(&col[lo * width..hi * width], width),
                    &operands[k][chunk],
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
    let tap_operand = RightOperand::new(Strided::row_major(&tap_weights, width), [c_in, width]);
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
                    product_with([count, c_in, width], product, Strided::row_major(x, c_in), &tap_operand, false);
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

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;

