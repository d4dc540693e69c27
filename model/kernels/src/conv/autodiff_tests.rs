use super::*;
use crate::conv::weight_grad::{weight_gradient_by_positions, weight_gradient_by_rows};
use burn::module::Param;
use burn::tensor::{Device, Distribution, Tolerance};

/// Runs `fast` and `reference` (each `(x, w, b) -> y`) from the same
/// inputs and asserts that their outputs and the gradients of
/// `sum(y^2)` with respect to x, w and b agree (sums of up to a few
/// thousand products in another order); and that `fast` without
/// autodiff gives the same output.
fn assert_same_output_and_gradients(
    [x0, w0]: [Tensor<5>; 2],
    b0: Tensor<1>,
    fast: impl Fn(Tensor<5>, Tensor<5>, Tensor<1>) -> Tensor<5>,
    reference: impl Fn(Tensor<5>, Tensor<5>, Tensor<1>) -> Tensor<5>,
) {
    let run = |op: &dyn Fn(Tensor<5>, Tensor<5>, Tensor<1>) -> Tensor<5>| {
        let x = x0.clone().detach().require_grad();
        let w = Param::from_tensor(w0.clone().detach()).val();
        let b = Param::from_tensor(b0.clone().detach()).val();
        let y = op(x.clone(), w.clone(), b.clone());
        let seen = y.clone().inner();
        let grads = (y.clone() * y).sum().backward();
        let mut all = vec![
            seen.into_data(),
            x.grad(&grads).unwrap().into_data(),
            w.grad(&grads).unwrap().into_data(),
        ];
        // A convolution without a bias leaves b out of the graph.
        all.extend(b.grad(&grads).map(|g| g.into_data()));
        all
    };
    let tol = Tolerance::rel_abs(1e-5, 1e-4);
    let burns = run(&reference);
    let ours = run(&fast);
    assert_eq!(ours.len(), burns.len(), "a bias gradient on one side only");
    for (ours, burns) in ours.iter().zip(burns.iter()) {
        ours.assert_approx_eq::<f32>(burns, tol);
    }
    // Without autodiff (inference), the same output.
    let inference = fast(x0.clone().inner(), w0.clone().inner(), b0.clone().inner());
    inference
        .into_data()
        .assert_approx_eq::<f32>(&burns[0], tol);
}

#[test]
fn gradients_equal_burns_conv3d() {
    let device = Device::flex().autodiff();
    // (x shape, c_out, kernel, stride, padding)
    for (xs, c_out, k, s, p) in [
        ([2, 3, 5, 6, 7], 4, 3, [1, 1, 1], [1, 1, 1]),
        ([2, 3, 6, 8, 8], 5, 4, [1, 2, 2], [1, 1, 1]),
        ([1, 4, 4, 5, 3], 2, 1, [1, 1, 1], [0, 0, 0]),
        ([1, 2, 6, 6, 6], 3, 4, [2, 2, 2], [0, 0, 0]),
        // Wide enough for the weight gradient by kernel rows, and two
        // blocks of output channels.
        ([1, 24, 4, 5, 6], 70, 3, [1, 1, 1], [1, 1, 1]),
        ([1, 16, 6, 8, 8], 5, 4, [2, 2, 2], [1, 1, 1]),
        // Tiles of one plane: products and weight-gradient tiles that
        // read only padding are skipped, forward and backward.
        ([1, 24, 4, 16, 16], 8, 3, [1, 1, 1], [1, 1, 1]),
        // One frame (the prior's frame encoder): a kernel-3 time axis
        // whose first and last taps read only padding, tiles across
        // batch items.
        ([2, 1, 1, 64, 64], 16, 3, [1, 1, 1], [1, 1, 1]),
        ([2, 16, 1, 64, 64], 16, 3, [1, 2, 2], [1, 1, 1]),
        ([2, 16, 1, 64, 64], 16, 1, [1, 2, 2], [0, 0, 0]),
        ([3, 16, 1, 16, 16], 16, 3, [1, 1, 1], [1, 1, 1]),
        ([2, 16, 3, 65, 65], 16, 3, [1, 2, 2], [0, 0, 0]),
        ([4, 1, 3, 65, 65], 16, 3, [1, 2, 2], [0, 0, 0]),
    ] {
        let x = Tensor::<5>::random(xs, Distribution::Default, &device);
        let w = Tensor::<5>::random([c_out, xs[1], k, k, k], Distribution::Default, &device);
        let b = Tensor::<1>::random([c_out], Distribution::Default, &device);
        let options = ConvOptions::new(s, p, [1, 1, 1], 1);
        assert_same_output_and_gradients(
            [x.clone(), w.clone()],
            b.clone(),
            |x, w, b| conv3d_fast_weight_grad(x, w, Some(b), options.clone()),
            |x, w, b| conv3d(x, w, Some(b), options.clone()),
        );
        assert_same_output_and_gradients(
            [x, w],
            b,
            |x, w, _| conv3d_fast_weight_grad(x, w, None, options.clone()),
            |x, w, _| conv3d(x, w, None, options.clone()),
        );
    }
}

#[test]
fn transposed_gradients_equal_burns_conv_transpose3d() {
    let device = Device::flex().autodiff();
    // (x shape, c_out, stride, padding): the decoder's kernel 4, padding 1.
    for (xs, c_out, s, p) in [
        ([2, 3, 3, 4, 5], 4, [2, 2, 2], [1, 1, 1]),
        ([2, 4, 4, 3, 3], 1, [1, 2, 2], [1, 1, 1]),
        ([1, 2, 3, 3, 3], 3, [1, 1, 1], [0, 0, 0]),
        // The weight gradient by kernel rows (16 output channels x 4 taps).
        ([1, 3, 3, 4, 5], 16, [2, 2, 2], [1, 1, 1]),
    ] {
        let x = Tensor::<5>::random(xs, Distribution::Default, &device);
        let w = Tensor::<5>::random([xs[1], c_out, 4, 4, 4], Distribution::Default, &device);
        let b = Tensor::<1>::random([c_out], Distribution::Default, &device);
        let options = ConvTransposeOptions::new(s, p, [0, 0, 0], [1, 1, 1], 1);
        assert_same_output_and_gradients(
            [x, w],
            b,
            |x, w, b| conv_transpose3d_fast_weight_grad(x, w, Some(b), options.clone()),
            |x, w, b| conv_transpose3d(x, w, Some(b), options.clone()),
        );
    }
}

/// Splitting the weight gradient by kernel rows and by positions sums
/// the same products (in another order), for any geometry either could
/// be given: borders, strides, uneven kernels, blocks of channels.
#[test]
fn weight_gradient_by_rows_equals_by_positions() {
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 2_654_435_761 + seed) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    // (batch, input, C, A, kernel, stride, padding)
    for (batch, input, c, a, kernel, stride, padding) in [
        (2, [4, 5, 6], 3, 70, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        (1, [6, 8, 8], 5, 4, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
        (1, [5, 6, 7], 2, 3, [2, 3, 4], [1, 2, 1], [0, 1, 2]),
        // Tiles of one output plane (or line): by rows skips the tiles
        // whose kernel row reads only padding.
        (2, [4, 16, 16], 3, 5, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        (1, [8, 32, 32], 2, 3, [4, 4, 4], [2, 2, 2], [1, 1, 1]),
        (1, [2, 2, 256], 2, 3, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
    ] {
        let output = [0, 1, 2].map(|i| (input[i] + 2 * padding[i] - kernel[i]) / stride[i] + 1);
        let geometry = ConvGeometry {
            kind: Geometry::Forward,
            batch,
            input,
            output,
            channels_in: c,
            channels_out: a,
            kernel,
            stride,
            padding,
        };
        let x_last = values(batch * input.iter().product::<usize>() * c, 1);
        let g = values(batch * a * output.iter().product::<usize>(), 7);
        let by_rows = weight_gradient_by_rows(&x_last, &g, &geometry);
        let by_positions = weight_gradient_by_positions(&x_last, &g, &geometry);
        assert_eq!(by_rows.len(), by_positions.len());
        for (i, (r, p)) in by_rows.iter().zip(&by_positions).enumerate() {
            assert!(
                (r - p).abs() <= 1e-4 * (1.0 + p.abs()),
                "{geometry:?}: element {i}: {r} by rows, {p} by positions"
            );
        }
    }
}
