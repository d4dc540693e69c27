//! The weight gradient of a convolution on the host: a channels-last im2col
//! of the input times the output gradient, by kernel rows or by fixed groups
//! of positions (see [`super::autodiff`]).

use rayon::prelude::*;

use super::geometry::{ConvGeometry, ConvKindGeometry as Geometry};
use super::host::gather_row;
use crate::host::buffers::{parallel_filled, with_scratch};
use crate::host::product::row_major_product;
use crate::host::transpose::transpose_batched;
use burn::backend::flex::FlexTensor;

use super::autodiff::ChannelsLast;

/// Output positions per im2col tile.
const TILE: usize = 128;
/// Tile groups summed in parallel (each keeps its own `[A, C * taps]` sum).
const GROUPS: usize = 8;
/// At least this many tasks when tasks split the weight gradient's rows:
/// kernels with fewer `(tz, ty)` rows split the output channels too.
const ROW_TASKS: usize = 16;
/// Output positions per gather when tasks split the weight gradient's rows.
const ROW_TILE: usize = 256;
/// The narrowest `[kw * C]` run for which tasks split the weight gradient
/// by its rows rather than by positions.
const MIN_RUN: usize = 64;

/// `dW[a, c, k] = sum over b, p of O[b, a, p] * I[b, c, p * stride + k - padding]`
/// (zero outside `I`): the weight gradient `[A, C, kd, kh, kw]` of a
/// convolution with input `input` `[B, C, D, H, W]` and output gradient
/// `output_grad` `[B, A, Do, Ho, Wo]`.
pub(crate) fn weight_gradient(
    input: &ChannelsLast,
    output_grad: &FlexTensor,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> Vec<f32> {
    let output_grad = output_grad.to_contiguous();
    let [b, c, d, h, w] = input.shape;
    let [b2, a, od, oh, ow]: [usize; 5] = output_grad.layout().shape().dims();
    assert_eq!(b, b2, "batch of input and output gradient");
    // Channels last: an im2col row copies runs of C contiguous values.
    let x_last: &[f32] = &input.values;
    // The im2col rows are the gathers of the forward convolution.
    let geometry = ConvGeometry {
        kind: Geometry::Forward,
        batch: b,
        input: [d, h, w],
        output: [od, oh, ow],
        channels_in: c,
        channels_out: a,
        kernel,
        stride,
        padding,
    };
    let g: &[f32] = output_grad.storage();
    let [kd, kh, kw] = kernel;
    let by_rows = kd * kh > 1 && kw * c >= MIN_RUN;
    let sum = if by_rows {
        weight_gradient_by_rows(x_last, g, &geometry)
    } else {
        weight_gradient_by_positions(x_last, g, &geometry)
    };
    // [A, taps, C] -> [A, C, taps]
    transpose_batched(&sum, [a, kd * kh * kw, c])
}

/// The weight gradient as `[A, taps, C]`, one task per `(tz, ty)` kernel
/// row and block of output channels: each task sums over every position
/// into its own `[channels, kw * C]` block (small enough to stay in cache),
/// so there are no partial sums to add. Each block is summed in a fixed
/// order of positions, whatever the scheduling.
pub(crate) fn weight_gradient_by_rows(x_last: &[f32], g: &[f32], geometry: &ConvGeometry) -> Vec<f32> {
    let (c, a) = (geometry.channels_in, geometry.channels_out);
    let [kd, kh, kw] = geometry.kernel;
    let [od, oh, ow] = geometry.output;
    let positions = od * oh * ow;
    let run = kw * c;
    // A fixed split (not by the number of threads), so the sums do not
    // depend on the machine.
    let channel_blocks = ROW_TASKS.div_ceil(kd * kh).min(a.div_ceil(32)).max(1);
    let channels_per_task = a.div_ceil(channel_blocks);
    let tasks: Vec<(usize, usize, usize)> = (0..kd)
        .flat_map(|tz| (0..kh).map(move |ty| (tz, ty)))
        .flat_map(|(tz, ty)| {
            (0..a)
                .step_by(channels_per_task)
                .map(move |a0| (tz, ty, a0))
        })
        .collect();
    let blocks: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(tz, ty, a0)| {
            let channels = channels_per_task.min(a - a0);
            let mut acc = vec![0f32; channels * run];
            with_scratch(|col, _| {
                // Grown once per thread; every value read below is written first.
                col.resize(col.len().max(ROW_TILE * run), 0.0);
                for n in 0..geometry.batch {
                    for p0 in (0..positions).step_by(ROW_TILE) {
                        let end = p0 + ROW_TILE.min(positions - p0);
                        // Positions whose kernel row is all padding add
                        // nothing: the tile's product runs from the first
                        // to the last that read the input, if any.
                        let reads = |p: &usize| row_reads_input(geometry, *p, [tz, ty]);
                        let Some(lo) = (p0..end).find(reads) else {
                            continue;
                        };
                        let hi = (lo..end).rfind(reads).map_or(end, |p| p + 1);
                        gather_tile(
                            col,
                            x_last,
                            geometry,
                            [n, lo, hi - lo],
                            [tz, ty, 0],
                            [1, 1, kw],
                        );
                        let grad_rows = &g[(n * a + a0) * positions + lo..];
                        // acc[channels, run] += G[channels, lo..hi] x col[lo..hi, run]
                        row_major_product(
                            [channels, hi - lo, run],
                            &mut acc,
                            (grad_rows, positions),
                            col,
                            true,
                        );
                    }
                }
            });
            acc
        })
        .collect();
    // Scatter the blocks into [A, taps, C].
    let taps = kd * kh * kw;
    // SAFETY: the tasks of each block of channels cover every kernel row
    // `(tz, ty)`, and a row's `kw` taps are one run: every value is written.
    unsafe {
        parallel_filled(a * taps * c, taps * c, |ai, sum| {
            let a0 = ai / channels_per_task * channels_per_task;
            for (block, &(tz, ty, _)) in blocks
                .iter()
                .zip(&tasks)
                .filter(|(_, (_, _, task_a0))| *task_a0 == a0)
            {
                let tap = (tz * kh + ty) * kw;
                let at = (ai - a0) * run;
                sum[tap * c..tap * c + run].write_copy_of_slice(&block[at..at + run]);
            }
        })
    }
}

/// Whether kernel row `(tz, ty)` of output position `p` reads the input
/// rather than only its padding.
fn row_reads_input(geometry: &ConvGeometry, p: usize, [tz, ty]: [usize; 2]) -> bool {
    let [_, oh, ow] = geometry.output;
    let [d, h, _] = geometry.input;
    let inside = |out: usize, tap: usize, axis: usize, size: usize| {
        let at = (out * geometry.stride[axis] + tap) as isize - geometry.padding[axis] as isize;
        at >= 0 && (at as usize) < size
    };
    inside(p / (oh * ow), tz, 0, d) && inside((p / ow) % oh, ty, 1, h)
}

/// The weight gradient as `[A, taps, C]`, with the positions split into
/// [`GROUPS`] fixed groups, each summed in order into its own full
/// `[A, taps * C]` partial, and the partials added in group order: for
/// kernels too narrow to split by rows.
pub(crate) fn weight_gradient_by_positions(x_last: &[f32], g: &[f32], geometry: &ConvGeometry) -> Vec<f32> {
    let (c, a) = (geometry.channels_in, geometry.channels_out);
    let kernel = geometry.kernel;
    let [od, oh, ow] = geometry.output;
    let row = kernel.iter().product::<usize>() * c;
    let positions = od * oh * ow;
    let tiles: Vec<(usize, usize)> = (0..geometry.batch)
        .flat_map(|n| (0..positions).step_by(TILE).map(move |p| (n, p)))
        .collect();
    let group = tiles.len().div_ceil(GROUPS).max(1);
    let partials: Vec<Vec<f32>> = tiles
        .par_chunks(group)
        .map(|tiles| {
            let mut acc = vec![0f32; a * row];
            with_scratch(|col, _| {
                // Grown once per thread; every value read below is written first.
                col.resize(col.len().max(TILE * row), 0.0);
                for &(n, p0) in tiles {
                    let count = TILE.min(positions - p0);
                    gather_tile(col, x_last, geometry, [n, p0, count], [0; 3], kernel);
                    let grad_rows = &g[n * a * positions + p0..];
                    // acc[A, row] += G[A, count] x col[count, row]
                    row_major_product([a, count, row], &mut acc, (grad_rows, positions), col, true);
                }
            });
            acc
        })
        .collect();
    let mut sum = partials[0].clone();
    sum.par_chunks_mut(row).enumerate().for_each(|(ai, sum)| {
        for partial in &partials[1..] {
            sum.iter_mut()
                .zip(&partial[ai * row..(ai + 1) * row])
                .for_each(|(u, v)| *u += v);
        }
    });
    sum
}

/// Fills the first `count` rows of `col` with the gathers of output
/// positions `p0..p0 + count` of batch item `n`: per position, the kernel
/// taps `offset..offset + taps` (`taps` product times `C` values).
fn gather_tile(
    col: &mut [f32],
    x_last: &[f32],
    geometry: &ConvGeometry,
    [n, p0, count]: [usize; 3],
    offset: [usize; 3],
    taps: [usize; 3],
) {
    let [_, oh, ow] = geometry.output;
    let width = taps.iter().product::<usize>() * geometry.channels_in;
    for (t, row) in col[..count * width].chunks_exact_mut(width).enumerate() {
        let p = p0 + t;
        let out = [p / (oh * ow), (p / ow) % oh, p % ow];
        let first = [0, 1, 2].map(|axis| {
            (out[axis] * geometry.stride[axis] + offset[axis]) as isize
                - geometry.padding[axis] as isize
        });
        gather_row(row, x_last, geometry, n, first, taps);
    }
}

