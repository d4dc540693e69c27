//! 3D convolutions and transposed convolutions: forward pass, input
//! gradient and weight gradient on the host for flex tensors, burn's own
//! operations elsewhere.
//!
//! - [`geometry`]: a convolution's shape and its outputs' tap classes;
//! - [`host`]: the forward pass (and input gradient) as gathers x `gemm`;
//! - [`weight_grad`]: the weight gradient as im2col x output gradient;
//! - [`autodiff`]: the autodiff op tying them together on flex.

pub mod autodiff;
pub mod geometry;
pub mod host;
pub mod weight_grad;

use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

/// `conv3d(x, weight, bias, options)`: `x` `[b, c_in, d, h, w]`, `weight`
/// `[c_out, c_in, k, k, k]`. Host kernels for flex tensors with groups 1
/// and dilation 1; burn's `conv3d` otherwise.
pub fn conv3d(x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>, options: ConvOptions<3>) -> Tensor<5> {
    autodiff::conv3d_fast_weight_grad(x, weight, bias, options)
}

/// `conv_transpose3d(x, weight, bias, options)`: `weight` `[c_in, c_out, k,
/// k, k]`. Host kernels for flex tensors with groups 1, dilation 1 and no
/// output padding; burn's `conv_transpose3d` otherwise.
pub fn conv_transpose3d(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<3>,
) -> Tensor<5> {
    autodiff::conv_transpose3d_fast_weight_grad(x, weight, bias, options)
}
