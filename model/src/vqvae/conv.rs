//! "Same"-padded 3D convolutions, as the reference's `SamePadConv3d` and
//! `SamePadConvTranspose3d`: the output of a stride-`s` convolution has
//! `ceil(n / s)` positions per axis whatever the kernel size, and the
//! transposed convolution inverts that exactly (`n * s`).
//!
//! Padding follows the reference: a total of `k - s` per axis, split
//! `(ceil, floor)` before and after. When that split is symmetric the padding
//! goes to the convolution itself (no copy); otherwise the input is padded
//! first.

use burn::module::Module;
use burn::nn::PaddingConfig3d;
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Tensor};

use crate::ops::{conv_transpose3d, conv3d};

/// `(before, after)` padding per axis for kernel `k` and stride `s`.
pub fn same_padding(kernel: usize, stride: usize) -> (usize, usize) {
    let total = kernel.saturating_sub(stride);
    (total / 2 + total % 2, total / 2)
}

#[derive(Module, Debug)]
pub struct SamePadConv3d {
    conv: Conv3d,
    /// Padding applied to the input before a valid convolution; all zero when
    /// the convolution pads by itself.
    #[module(skip)]
    input_padding: [(usize, usize); 3],
}

impl SamePadConv3d {
    pub fn new(
        channels: [usize; 2],
        kernel: usize,
        stride: [usize; 3],
        bias: bool,
        device: &Device,
    ) -> Self {
        let pads = stride.map(|s| same_padding(kernel, s));
        let symmetric = pads.iter().all(|(a, b)| a == b);
        let (padding, input_padding) = if symmetric {
            (
                PaddingConfig3d::Explicit(pads[0].0, pads[1].0, pads[2].0),
                [(0, 0); 3],
            )
        } else {
            (PaddingConfig3d::Valid, pads)
        };
        let conv = Conv3dConfig::new(channels, [kernel; 3])
            .with_stride(stride)
            .with_padding(padding)
            .with_bias(bias)
            .init(device);
        Self {
            conv,
            input_padding,
        }
    }

    /// `[c_out, c_in, k, k, k]`
    pub fn weight(&self) -> Tensor<5> {
        self.conv.weight.val()
    }

    /// `[b, c_in, t, h, w] -> [b, c_out, ceil(t/s_t), ceil(h/s_h), ceil(w/s_w)]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = if self.input_padding == [(0, 0); 3] {
            x
        } else {
            x.pad(self.input_padding, burn::tensor::ops::PadMode::Constant(0.0))
        };
        let conv = &self.conv;
        let padding = match conv.padding {
            PaddingConfig3d::Explicit(t, h, w) => [t, h, w],
            PaddingConfig3d::Valid => [0; 3],
            PaddingConfig3d::Same => unreachable!("SamePadConv3d pads explicitly or not at all"),
        };
        conv3d(
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups),
        )
    }
}

/// The reference's `SamePadConvTranspose3d` for kernel 4 and strides 1 or 2:
/// pad the input by `(k - s)` split `(ceil, floor)`, then a transposed
/// convolution with padding `k - 1`. That equals a transposed convolution
/// with padding 1, cropped to `n * s` positions on the stride-1 axes (the
/// extra position is the last one); this is how it is computed here.
#[derive(Module, Debug)]
pub struct SamePadConvTranspose3d {
    conv: ConvTranspose3d,
    stride: [usize; 3],
}

impl SamePadConvTranspose3d {
    pub const KERNEL: usize = 4;

    pub fn new(channels: [usize; 2], stride: [usize; 3], device: &Device) -> Self {
        assert!(
            stride.iter().all(|&s| s == 1 || s == 2),
            "upsampling strides are 1 or 2, got {stride:?}"
        );
        let conv = ConvTranspose3dConfig::new(channels, [Self::KERNEL; 3])
            .with_stride(stride)
            .with_padding([1, 1, 1])
            .init(device);
        Self { conv, stride }
    }

    /// `[b, c_in, t, h, w] -> [b, c_out, t*s_t, h*s_h, w*s_w]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [_, _, t, h, w] = x.dims();
        let conv = &self.conv;
        let mut y = conv_transpose3d(
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            ConvTransposeOptions::new(conv.stride, conv.padding, conv.padding_out, conv.dilation, conv.groups),
        );
        for (axis, (n, s)) in [(t, self.stride[0]), (h, self.stride[1]), (w, self.stride[2])]
            .into_iter()
            .enumerate()
        {
            let want = n * s;
            if y.dims()[axis + 2] != want {
                y = y.narrow(axis + 2, 0, want);
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv_transpose3d;
    use burn::tensor::ops::{ConvTransposeOptions, PadMode};
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn same_conv_keeps_or_halves_every_axis() {
        let device = Device::flex();
        let x = Tensor::<5>::random([2, 3, 8, 6, 4], Distribution::Default, &device);
        for (stride, want) in [([1, 1, 1], [8, 6, 4]), ([2, 2, 2], [4, 3, 2]), ([1, 2, 2], [8, 3, 2])] {
            for kernel in [1, 3, 4] {
                let conv = SamePadConv3d::new([3, 5], kernel, stride, true, &device);
                let [b, c, t, h, w] = conv.forward(x.clone()).dims();
                assert_eq!([b, c, t, h, w], [2, 5, want[0], want[1], want[2]], "k{kernel} s{stride:?}");
            }
        }
    }

    #[test]
    fn transposed_conv_equals_the_reference_pad_then_crop_formulation() {
        let device = Device::flex();
        let x = Tensor::<5>::random([1, 3, 4, 5, 3], Distribution::Default, &device);
        for stride in [[2, 2, 2], [1, 2, 2], [1, 1, 2]] {
            let layer = SamePadConvTranspose3d::new([3, 2], stride, &device);
            let ours = layer.forward(x.clone());
            // Reference: F.pad(x, same padding) then conv_transpose3d(padding = k - 1).
            let pads = stride.map(|s| same_padding(4, s));
            let padded = x.clone().pad(pads, PadMode::Constant(0.0));
            let reference = conv_transpose3d(
                padded,
                layer.conv.weight.val(),
                layer.conv.bias.as_ref().map(|b| b.val()),
                ConvTransposeOptions::new(stride, [3, 3, 3], [0, 0, 0], [1, 1, 1], 1),
            );
            assert_eq!(ours.dims(), reference.dims(), "stride {stride:?}");
            assert_eq!(ours.dims()[2..], [4 * stride[0], 5 * stride[1], 3 * stride[2]]);
            ours.into_data()
                .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::absolute(1e-5));
        }
    }
}
