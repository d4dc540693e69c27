//! What the host autodiff ops on flex share: a small tensor's values on
//! the host, and an op's parents when its bias is optional.

use burn::backend::autodiff::ops::NodeGuard;
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, BackendTypes, Flex};

type AdPrimitive = <Autodiff<Flex> as BackendTypes>::FloatTensorPrimitive;

/// The f32 values of `t` in row-major order (a bias, a norm's gamma).
pub(crate) fn host_values(t: &FlexTensor) -> Vec<f32> {
    t.to_contiguous().storage::<f32>().to_vec()
}

/// `[x, weight]` or `[x, weight, bias]`: the parents of an op with an
/// optional bias (`N` is 2 without one, 3 with).
pub(crate) fn parents<const N: usize>(
    x: &AdPrimitive,
    weight: &AdPrimitive,
    bias: Option<&AdPrimitive>,
) -> [NodeGuard; N] {
    let mut nodes = vec![x.node(), weight.node()];
    nodes.extend(bias.map(|b| b.node()));
    nodes
        .try_into()
        .unwrap_or_else(|_| panic!("{N} parents, and a bias exactly when N is 3"))
}

/// The values of any float tensor as f32, in row-major order (copied to the
/// host from whatever device holds it).
pub(crate) fn float_values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor data converts to f32")
}
