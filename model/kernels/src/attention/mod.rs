//! Attention's softmax cores. Axial attention: every line of a
//! `[b, t, h, w]` grid along one axis attends within itself, head by head.
//! Causal attention: every position of a sequence attends to itself and
//! the positions before it (the prior).
//!
//! [`axial_attention`] and [`causal_attention`] run on the host for flex
//! tensors ([`axial`], [`causal`]) and with burn's tensor operations on
//! every other device ([`with_burn`], [`causal_with_burn`]).

pub mod axial;
pub mod causal;

use burn::nn::DropoutConfig;
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Tensor};

pub use axial::AxialLines;

/// `qkv` `[b, n, 3c]` (rows `[q | k | v]`, heads side by side in each) ->
/// `[b, n, c]`: causal softmax attention with `heads` heads, and dropout
/// of the attention weights with probability `dropout` while training.
pub fn causal_attention(qkv: Tensor<3>, heads: usize, dropout: f64) -> Tensor<3> {
    causal::attend_on_host(&qkv, heads, dropout).unwrap_or_else(|| causal_with_burn(qkv, heads, dropout))
}

/// [`causal_attention`] with burn's tensor operations (any device).
pub fn causal_with_burn(qkv: Tensor<3>, heads: usize, dropout: f64) -> Tensor<3> {
    let [b, n, width3] = qkv.dims();
    let d = width3 / 3 / heads;
    let device = qkv.device();
    let qkv = qkv.reshape([b, n, 3, heads, d]).permute([2, 0, 3, 1, 4]); // [3, b, heads, n, d]
    let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).reshape([b, heads, n, d]));
    let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d as f64).sqrt());
    // true above the diagonal (the future): filled with -inf.
    let future = Tensor::<2, Bool>::tril_mask([n, n], 0, &device).unsqueeze::<4>();
    let weights = DropoutConfig::new(dropout).init().forward(softmax(scores.mask_fill(future, f32::NEG_INFINITY), 3));
    weights.matmul(v).swap_dims(1, 2).reshape([b, n, heads * d])
}

/// `qkv` `[n, 3c]` (rows `[q | k | v]` in raster order of `grid`
/// `[b, t, h, w]`) -> `[n, c]`: softmax attention along `axis` (1 = T,
/// 2 = H, 3 = W) with `heads` heads of `c / heads` channels.
pub fn axial_attention(qkv: Tensor<2>, grid: [usize; 4], axis: usize, heads: usize) -> Tensor<2> {
    let lines = AxialLines::new(grid, axis, heads, qkv.dims()[1] / 3);
    axial::attend_on_host(&qkv, &lines).unwrap_or_else(|| with_burn(qkv, grid, axis, heads))
}

/// [`axial_attention`] with burn's tensor operations (any device).
pub fn with_burn(qkv: Tensor<2>, grid: [usize; 4], axis: usize, heads: usize) -> Tensor<2> {
    let [b, t, h, w] = grid;
    let c = qkv.dims()[1] / 3;
    // Move the attended axis next to the channels: [b, ..others, len, 3c].
    let mut order = [0, 1, 2, 3, 4];
    order[axis..4].rotate_left(1);
    let moved = qkv.reshape([b, t, h, w, 3 * c]).permute(order);
    let moved_dims = moved.dims();
    let len = moved_dims[3];
    let lines = moved_dims[0] * moved_dims[1] * moved_dims[2];
    let d = c / heads;
    // [lines, len, 3, heads, d] -> three [lines, heads, len, d]
    let qkv = moved.reshape([lines, len, 3, heads, d]).permute([2, 0, 3, 1, 4]);
    let [q, k, v] = [0, 1, 2].map(|i| qkv.clone().narrow(0, i, 1).reshape([lines, heads, len, d]));
    let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d as f64).sqrt());
    let attended = softmax(scores, 3).matmul(v); // [lines, heads, len, d]
    let merged = attended
        .swap_dims(1, 2)
        .reshape([moved_dims[0], moved_dims[1], moved_dims[2], len, c]);
    // Undo the move.
    let mut inverse = [0; 5];
    for (i, &o) in order.iter().enumerate() {
        inverse[o] = i;
    }
    merged.permute(inverse).reshape([b * t * h * w, c])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    /// The host core (flex) and burn's tensor version agree, forward and
    /// backward, on every axis; and without autodiff.
    #[test]
    fn host_attention_equals_burns_attention_with_gradients() {
        let device = Device::flex().autodiff();
        let grid = [2, 3, 4, 5];
        let (c, heads) = (8, 2);
        let n = grid.iter().product::<usize>();
        let qkv0 = Tensor::<2>::random([n, 3 * c], Distribution::Normal(0.0, 1.5), &device);
        let probe = Tensor::<2>::random([n, c], Distribution::Default, &device);
        for axis in 1..=3 {
            let lines = AxialLines::new(grid, axis, heads, c);
            let run = |host: bool| {
                let qkv = qkv0.clone().detach().require_grad();
                let y = if host {
                    axial::attend_on_host(&qkv, &lines).expect("flex takes the host path")
                } else {
                    with_burn(qkv.clone(), grid, axis, heads)
                };
                let grads = (y.clone() * probe.clone()).sum().backward();
                (y.inner().into_data(), qkv.grad(&grads).unwrap().into_data())
            };
            let (y_host, g_host) = run(true);
            let (y_burn, g_burn) = run(false);
            let tol = Tolerance::rel_abs(1e-4, 1e-5);
            y_host.assert_approx_eq::<f32>(&y_burn, tol);
            g_host.assert_approx_eq::<f32>(&g_burn, tol);
            let plain = axial_attention(qkv0.clone().inner(), grid, axis, heads);
            plain.into_data().assert_approx_eq::<f32>(&y_burn, tol);
        }
    }
}
