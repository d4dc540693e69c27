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
