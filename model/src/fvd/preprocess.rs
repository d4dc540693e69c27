//! Clips to I3D input, as VideoGPT's FVD code prepares them: every frame
//! resized to 224x224 by bilinear interpolation with half-pixel centres
//! (PyTorch's `F.interpolate(..., mode="bilinear", align_corners=False)`,
//! no antialiasing), grey clips repeated to 3 channels, values scaled from
//! `[0, 255]` to `[-1, 1]`. The resize runs on the model's device.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};

use super::i3d::RESOLUTION;

/// uint8 clips `[T, H, W, C]` (`C` 1 or 3) -> `[b, 3, T, 224, 224]` in `[-1, 1]`.
pub fn i3d_input(clips: &[&[u8]], shape: [usize; 4], device: &Device) -> Tensor<5> {
    let [t, h, w, c] = shape;
    assert!(c == 1 || c == 3, "clips have 1 or 3 channels, got {c}");
    let b = clips.len();
    let plane = h * w;
    // [b, t, c, h, w]: one image per frame for the 2D interpolation.
    let mut data = vec![0f32; b * t * c * plane];
    for (clip, out) in clips.iter().zip(data.chunks_exact_mut(t * c * plane)) {
        assert_eq!(
            clip.len(),
            t * plane * c,
            "clip length does not match {shape:?}"
        );
        for (frame, out) in clip
            .chunks_exact(plane * c)
            .zip(out.chunks_exact_mut(c * plane))
        {
            for (p, pixel) in frame.chunks_exact(c).enumerate() {
                for (ch, &v) in pixel.iter().enumerate() {
                    out[ch * plane + p] = v as f32;
                }
            }
        }
    }
    let mut frames = Tensor::<4>::from_data(TensorData::new(data, [b * t, c, h, w]), device);
    if h != RESOLUTION || w != RESOLUTION {
        let mut options = InterpolateOptions::new(InterpolateMode::Bilinear);
        options.align_corners = false;
        options.output_size = Some([RESOLUTION, RESOLUTION]);
        frames = interpolate(frames, options);
    }
    let mut video = frames
        .reshape([b, t, c, RESOLUTION, RESOLUTION])
        .swap_dims(1, 2);
    if c == 1 {
        video = video.repeat_dim(1, 3);
    }
    video * (2.0 / 255.0) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch: `F.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]),
    /// size=4, mode="bilinear", align_corners=False)`.
    #[test]
    fn bilinear_resize_uses_half_pixel_centres() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![0f32, 1., 2., 3.], [1, 1, 2, 2]),
            &device,
        );
        let mut options = InterpolateOptions::new(InterpolateMode::Bilinear);
        options.align_corners = false;
        options.output_size = Some([4, 4]);
        let y = interpolate(x, options)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let want = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn grey_clips_become_three_equal_channels_in_minus_one_to_one() {
        let device = Device::flex();
        let clip: Vec<u8> = (0..2 * 224 * 224)
            .map(|i| if i % 2 == 0 { 0 } else { 255 })
            .collect();
        let x = i3d_input(&[&clip], [2, 224, 224, 1], &device);
        assert_eq!(x.dims(), [1, 3, 2, 224, 224]);
        let v = x
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let plane = 2 * 224 * 224;
        assert_eq!(v[0], -1.0);
        assert_eq!(v[1], 1.0);
        assert_eq!(&v[..plane], &v[plane..2 * plane]);
        assert_eq!(&v[..plane], &v[2 * plane..]);
    }
}
