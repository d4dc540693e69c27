//! TensorFlow's "SAME" padding, which the I3D weights were trained with:
//! a stride-`s` window gives `ceil(n / s)` outputs, and the padding that
//! needs, `(ceil(n / s) - 1) * s + k - n`, is split with the smaller half
//! *before* (TF puts the odd pixel at the end; the VQ-VAE's PyTorch-style
//! padding in `vqvae::conv` puts it at the start). Max pooling pads with
//! `-inf`, so padded positions never win.

use burn::tensor::Tensor;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

/// `(before, after)` for `n` inputs, window `k`, stride `s`.
pub fn tf_same_padding(n: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = n.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(n);
    (total / 2, total - total / 2)
}

/// 3D max pooling with TF "SAME" padding, `[b, c, t, h, w]`. Computed as a
/// 2D pooling over `(h, w)` and then one over `t` (a box maximum is
/// separable), each on a free reshape of the input.
pub fn max_pool3d_same(x: Tensor<5>, kernel: [usize; 3], stride: [usize; 3]) -> Tensor<5> {
    let [b, c, t, h, w] = x.dims();
    let mut x = x;
    if kernel[1] > 1 || kernel[2] > 1 || stride[1] > 1 || stride[2] > 1 {
        let options = MaxPoolOptions {
            kernel_size: [kernel[1], kernel[2]],
            stride: [stride[1], stride[2]],
            padding: [
                tf_same_padding(h, kernel[1], stride[1]),
                tf_same_padding(w, kernel[2], stride[2]),
            ],
            dilation: [1, 1],
            ceil_mode: false,
        };
        let pooled = max_pool2d(x.reshape([b, c * t, h, w]), options);
        let [_, _, oh, ow] = pooled.dims();
        x = pooled.reshape([b, c, t, oh, ow]);
    }
    if kernel[0] > 1 || stride[0] > 1 {
        let [_, _, _, h, w] = x.dims();
        let options = MaxPoolOptions {
            kernel_size: [kernel[0], 1],
            stride: [stride[0], 1],
            padding: [tf_same_padding(t, kernel[0], stride[0]), (0, 0)],
            dilation: [1, 1],
            ceil_mode: false,
        };
        let pooled = max_pool2d(x.reshape([b, c, t, h * w]), options);
        let ot = pooled.dims()[2];
        x = pooled.reshape([b, c, ot, h, w]);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn same_padding_puts_the_odd_pixel_last() {
        // I3D's first layer: 7x7x7, stride 2, on 16 x 224 x 224.
        assert_eq!(tf_same_padding(224, 7, 2), (2, 3));
        assert_eq!(tf_same_padding(16, 7, 2), (2, 3));
        assert_eq!(tf_same_padding(112, 3, 2), (0, 1));
        assert_eq!(tf_same_padding(8, 3, 1), (1, 1));
        assert_eq!(tf_same_padding(4, 2, 2), (0, 0));
        assert_eq!(tf_same_padding(7, 2, 2), (0, 1));
    }

    #[test]
    fn max_pool_matches_a_direct_window_maximum() {
        let device = Device::flex();
        let [t, h, w] = [5usize, 6, 7];
        let values: Vec<f32> = (0..t * h * w)
            .map(|i| ((i * 37) % 101) as f32 - 50.0)
            .collect();
        let x = Tensor::<5>::from_data(TensorData::new(values.clone(), [1, 1, t, h, w]), &device);
        let (kernel, stride) = ([3, 3, 3], [2, 2, 2]);
        let y = max_pool3d_same(x, kernel, stride);
        let dims = y.dims();
        let got = y
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let pads = [
            tf_same_padding(t, 3, 2).0,
            tf_same_padding(h, 3, 2).0,
            tf_same_padding(w, 3, 2).0,
        ];
        assert_eq!(&dims[2..], &[t.div_ceil(2), h.div_ceil(2), w.div_ceil(2)]);
        let mut k = 0;
        for ot in 0..dims[2] {
            for oh in 0..dims[3] {
                for ow in 0..dims[4] {
                    let mut best = f32::NEG_INFINITY;
                    for dt in 0..kernel[0] {
                        for dh in 0..kernel[1] {
                            for dw in 0..kernel[2] {
                                let it = (ot * stride[0] + dt) as isize - pads[0] as isize;
                                let ih = (oh * stride[1] + dh) as isize - pads[1] as isize;
                                let iw = (ow * stride[2] + dw) as isize - pads[2] as isize;
                                if it < 0 || ih < 0 || iw < 0 {
                                    continue;
                                }
                                let (it, ih, iw) = (it as usize, ih as usize, iw as usize);
                                if it >= t || ih >= h || iw >= w {
                                    continue;
                                }
                                best = best.max(values[(it * h + ih) * w + iw]);
                            }
                        }
                    }
                    assert_eq!(got[k], best, "at ({ot}, {oh}, {ow})");
                    k += 1;
                }
            }
        }
    }
}
