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

/// `conv3d(x, weight, bias, options)`: `x` `[b, c_in, d, h, w]`, `weight`
/// `[c_out, c_in, k, k, k]`; host kernels for flex tensors with groups 1 and
/// dilation 1, burn's `conv3d` otherwise. `conv_transpose3d` likewise
/// (weight `[c_in, c_out, k, k, k]`, and no output padding for the host path).
pub use autodiff::{conv_transpose3d_fast_weight_grad as conv_transpose3d, conv3d_fast_weight_grad as conv3d};
