//! The operations under `--precision bf16` against burn's f32 operations,
//! forward and backward, with tolerances sized for bf16 operands (8 bits of
//! mantissa: about 0.4% per operand, summed over the products' depth).
//! Its own test binary: the precision is one per process.

use burn::module::Param;
use burn::nn::LinearConfig;
use burn::tensor::module::conv3d as burn_conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use videogpt_kernels::{CpuPath, Precision, causal_attention, conv3d, cpu_path, linear, set_precision};

/// Largest |a - b| over the largest |b|, of two tensors' values.
fn relative_error(a: TensorData, b: TensorData) -> f32 {
    let (a, b) = (a.try_to_vec::<f32>().unwrap(), b.try_to_vec::<f32>().unwrap());
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Output and input gradients of `op` on `inputs` (gradient of
/// `sum(y * probe)`), as host data.
fn run<const D: usize, const E: usize>(
    inputs: &[Tensor<D>],
    probe: &Tensor<E>,
    op: impl Fn(Vec<Tensor<D>>) -> Tensor<E>,
) -> Vec<TensorData> {
    let tracked: Vec<Tensor<D>> = inputs.iter().map(|t| Param::from_tensor(t.clone().detach()).val()).collect();
    let y = op(tracked.clone());
    let grads = (y.clone() * probe.clone()).sum().backward();
    let mut all = vec![y.inner().into_data()];
    all.extend(tracked.iter().map(|t| t.grad(&grads).unwrap().into_data()));
    all
}

fn assert_close(what: &str, ours: Vec<TensorData>, reference: Vec<TensorData>, tolerance: f32) {
    for (i, (a, b)) in ours.into_iter().zip(reference).enumerate() {
        let error = relative_error(a, b);
        eprintln!("{what} value {i}: relative error {error:.2e}");
        assert!(error <= tolerance, "{what}, value {i} (0: output, then gradients): relative error {error}");
        assert!(error > 0.0, "{what}, value {i}: bit-identical to f32, so bf16 did not run");
    }
}

#[test]
fn bf16_products_follow_f32_within_bf16_rounding() {
    if cpu_path() == CpuPath::F32 {
        eprintln!("no AMX or AVX-512-BF16 here: --precision bf16 is f32 (the CLI test checks that)");
        return;
    }
    set_precision(Precision::Bf16);
    let device = Device::flex().autodiff();
    let random = |shape: Vec<usize>| Tensor::<1>::random([shape.iter().product::<usize>()], Distribution::Normal(0.0, 1.0), &device);

    // Linear: [300, 64] x [64, 96] + bias.
    let layer = LinearConfig::new(64, 96).init(&device);
    let x = random(vec![300, 64]).reshape([300, 64]);
    let probe = random(vec![300, 96]).reshape([300, 96]);
    let ours = run(&[x.clone()], &probe, |t| linear(&layer, t[0].clone()));
    let reference = run(&[x], &probe, |t| layer.forward(t[0].clone()));
    assert_close("linear", ours, reference, 1e-2);

    // Causal attention: 2 sequences of 150, 2 heads of 32.
    let qkv = random(vec![2, 150, 192]).reshape([2, 150, 192]);
    let probe = random(vec![2, 150, 64]).reshape([2, 150, 64]);
    let ours = run(&[qkv.clone()], &probe, |t| causal_attention(t[0].clone(), 2, 0.0));
    let reference = run(&[qkv], &probe, |t| videogpt_kernels::attention::causal_with_burn(t[0].clone(), 2, 0.0));
    assert_close("causal attention", ours, reference, 1e-2);

    // Convolution: 32 -> 32 channels, 3x3x3, padding 1.
    let x = random(vec![2, 32, 4, 8, 8]).reshape([2, 32, 4, 8, 8]);
    let w = random(vec![32, 32, 3, 3, 3]).reshape([32, 32, 3, 3, 3]).mul_scalar(0.1);
    let probe = random(vec![2, 32, 4, 8, 8]).reshape([2, 32, 4, 8, 8]);
    let options = ConvOptions::new([1, 1, 1], [1, 1, 1], [1, 1, 1], 1);
    let ours = run(&[x.clone(), w.clone()], &probe, |t| conv3d(t[0].clone(), t[1].clone(), None, options.clone()));
    let reference = run(&[x, w], &probe, |t| burn_conv3d(t[0].clone(), t[1].clone(), None, options.clone()));
    assert_close("conv3d", ours, reference, 1e-2);
}
