//! A convolution's shape and the kernel-tap classes its outputs fall into
//! (see [`super::host`]).

use rayon::prelude::*;

use crate::host::transpose::transpose_batched;

/// How a convolution maps input to output along the three spatial axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKindGeometry {
    /// `y[o] += x[o * stride + t - padding_begin] * w[t]`; the weight is
    /// `[C_out, C_in, k, k, k]`.
    Forward,
    /// `y[i * stride + t - padding_begin] += x[i] * w[t]`; the weight is
    /// `[C_in, C_out, k, k, k]`.
    Transposed,
}

/// A convolution's shape: input `[batch, d, h, w, channels_in]` channels
/// last, output spatial size `output` (`channels_out` channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kind: ConvKindGeometry,
    pub batch: usize,
    pub input: [usize; 3],
    pub output: [usize; 3],
    pub channels_in: usize,
    pub channels_out: usize,
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    /// Padding before the first input position, per axis.
    pub padding: [usize; 3],
}

impl ConvGeometry {
    /// The weight, from burn's layout for `kind` (`[C_out, C_in, k..]` for
    /// a convolution, `[C_in, C_out, k..]` for a transposed one), as
    /// `[C_in, taps, C_out]`: row `ci * taps + tap` holds the `C_out`
    /// weights of input channel `ci` at kernel tap `tap` (raster order over
    /// `kernel`). One blocked transpose, spread over the cores.
    pub(crate) fn weights_by_input_and_tap(&self, weight: &[f32]) -> Vec<f32> {
        let taps = self.kernel.iter().product::<usize>();
        let (c_in, c_out) = (self.channels_in, self.channels_out);
        match self.kind {
            ConvKindGeometry::Forward => transpose_batched(weight, [1, c_out, c_in * taps]),
            ConvKindGeometry::Transposed => transpose_batched(weight, [c_in, c_out, taps]),
        }
    }
}

/// The outputs along one axis that share their kernel taps.
#[derive(Debug, Clone)]
pub(crate) struct AxisClass {
    /// Output indices, increasing.
    pub(crate) outputs: Vec<usize>,
    /// Kernel taps, ordered so that the input positions they read increase
    /// by one from tap to tap.
    pub(crate) taps: Vec<usize>,
    /// Per output, the input position of its first tap (negative: before
    /// the input).
    pub(crate) first_input: Vec<isize>,
}

pub(crate) fn axis_classes(geometry: &ConvGeometry, axis: usize) -> Vec<AxisClass> {
    let (kernel, stride, padding) = (
        geometry.kernel[axis],
        geometry.stride[axis],
        geometry.padding[axis] as isize,
    );
    let outputs = geometry.output[axis];
    match geometry.kind {
        ConvKindGeometry::Forward => vec![AxisClass {
            outputs: (0..outputs).collect(),
            taps: (0..kernel).collect(),
            first_input: (0..outputs)
                .map(|o| (o * stride) as isize - padding)
                .collect(),
        }],
        // Output o reads input (o + padding - t) / stride for the taps
        // t ≡ (o + padding) mod stride; largest tap first. A kernel
        // shorter than the stride leaves residues with no taps: their
        // outputs are a class of their own, all zeros.
        ConvKindGeometry::Transposed => (0..stride)
            .map(|residue| {
                let taps: Vec<usize> = (0..kernel)
                    .filter(|t| t % stride == residue)
                    .rev()
                    .collect();
                let first_tap = taps.first().map_or(0, |&t| t as isize);
                let outputs: Vec<usize> = (0..outputs)
                    .filter(|&o| {
                        (o as isize + padding).rem_euclid(stride as isize) == residue as isize
                    })
                    .collect();
                let first_input = outputs
                    .iter()
                    .map(|&o| (o as isize + padding - first_tap).div_euclid(stride as isize))
                    .collect();
                AxisClass {
                    outputs,
                    taps,
                    first_input,
                }
            })
            .collect(),
    }
}

/// A class of outputs in 3D, with its weight matrix `[taps * C_in, C_out]`.
pub(crate) struct Class {
    pub(crate) axes: [AxisClass; 3],
    pub(crate) weights: Vec<f32>,
}

impl Class {
    pub(crate) fn positions(&self, batch: usize) -> usize {
        batch * self.axes.iter().map(|a| a.outputs.len()).product::<usize>()
    }

    pub(crate) fn taps(&self) -> [usize; 3] {
        self.axes.each_ref().map(|a| a.taps.len())
    }
}

pub(crate) fn classes(geometry: &ConvGeometry, weight: &[f32]) -> Vec<Class> {
    let [cz, cy, cx] = [0, 1, 2].map(|axis| axis_classes(geometry, axis));
    let [kd, kh, kw] = geometry.kernel;
    let (c_in, c_out) = (geometry.channels_in, geometry.channels_out);
    let by_input_and_tap = geometry.weights_by_input_and_tap(weight);
    let mut axes = Vec::new();
    for z in &cz {
        for y in &cy {
            for x in &cx {
                axes.push([z.clone(), y.clone(), x.clone()]);
            }
        }
    }
    axes.into_par_iter()
        .map(|axes| {
            let [z, y, x] = &axes;
            // Rows in the gather's order: tap by tap (z, y, x), then C_in;
            // one `[C_in, C_out]` block per tap, copied by all cores.
            let taps: Vec<usize> = z
                .taps
                .iter()
                .flat_map(|&tz| {
                    y.taps
                        .iter()
                        .flat_map(move |&ty| x.taps.iter().map(move |&tx| (tz * kh + ty) * kw + tx))
                })
                .collect();
            let len = taps.len() * c_in * c_out;
            let mut weights = Vec::with_capacity(len);
            weights.spare_capacity_mut()[..len]
                .par_chunks_mut(c_in * c_out)
                .zip(&taps)
                .for_each(|(block, &tap)| {
                    for (ci, row) in block.chunks_exact_mut(c_out).enumerate() {
                        let at = (ci * kd * kh * kw + tap) * c_out;
                        for (w, &v) in row.iter_mut().zip(&by_input_and_tap[at..at + c_out]) {
                            w.write(v);
                        }
                    }
                });
            // SAFETY: one block of `C_in` rows of `C_out` per tap: all `len`
            // values were written above.
            unsafe { weights.set_len(len) };
            Class { axes, weights }
        })
        .collect()
}

