//! Moving the channels of `[b, c, t, h, w]` last and back on the CPU
//! (flex), as parallel transposes on the host.
//!
//! The axial attention works on `[b, t, h, w, c]` rows. burn's `permute` is
//! a view on flex, so the first reshape after it (and the gradient coming
//! back through it) is copied into a contiguous tensor by the calling
//! thread alone, while the other cores wait. Here both directions are one
//! blocked transpose over all cores, forward and backward, and the result
//! is contiguous. Other devices take burn's `permute` unchanged.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, BackendTypes, Flex};
use burn::tensor::{DType, Tensor, TensorData};

use crate::host::transpose::transpose_batched;

type FlexAd = Autodiff<Flex>;
type AdPrimitive = <FlexAd as BackendTypes>::FloatTensorPrimitive;

/// `[b, c, t, h, w] -> [b, t, h, w, c]`.
pub fn channels_last(x: Tensor<5>) -> Tensor<5> {
    move_channels(x, Direction::Last)
}

/// `[b, t, h, w, c] -> [b, c, t, h, w]`.
pub fn channels_first(x: Tensor<5>) -> Tensor<5> {
    move_channels(x, Direction::First)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// `[b, c, ..] -> [b, .., c]`.
    Last,
    /// `[b, .., c] -> [b, c, ..]`.
    First,
}

impl Direction {
    fn reverse(self) -> Self {
        match self {
            Self::Last => Self::First,
            Self::First => Self::Last,
        }
    }

    /// burn's permutation for this direction.
    fn axes(self) -> [isize; 5] {
        match self {
            Self::Last => [0, 2, 3, 4, 1],
            Self::First => [0, 4, 1, 2, 3],
        }
    }

    /// The transpose of a contiguous tensor of shape `dims`, and its shape.
    fn transpose(self, x: &FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        let dims: [usize; 5] = x.layout().shape().dims();
        let [b, ..] = dims;
        let (rows_cols, shape) = match self {
            Self::Last => {
                let [_, c, t, h, w] = dims;
                ([c, t * h * w], [b, t, h, w, c])
            }
            Self::First => {
                let [_, t, h, w, c] = dims;
                ([t * h * w, c], [b, c, t, h, w])
            }
        };
        let values = transpose_batched(x.storage(), [b, rows_cols[0], rows_cols[1]]);
        FlexTensor::from_data(TensorData::new(values, shape))
    }
}

fn move_channels(x: Tensor<5>, direction: Direction) -> Tensor<5> {
    if x.dtype() != DType::F32 {
        return x.permute(direction.axes());
    }
    if let Ok(x_ad) = x.clone().try_into_primitive::<FlexAd>() {
        Tensor::<5>::from_primitive::<FlexAd>(move_channels_op(x_ad, direction))
    } else if let Ok(x_flex) = x.clone().try_into_primitive::<Flex>() {
        Tensor::<5>::from_primitive::<Flex>(direction.transpose(&x_flex))
    } else {
        x.permute(direction.axes())
    }
}

/// The autodiff op: the gradient moves the channels back.
#[derive(Debug)]
struct MoveChannels;

impl Backward<Flex, 1> for MoveChannels {
    type State = Direction;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, ops.state.reverse().transpose(&grad));
        }
    }
}

fn move_channels_op(x: AdPrimitive, direction: Direction) -> AdPrimitive {
    let y = direction.transpose(x.primitive());
    match MoveChannels
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(direction, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// Both directions equal burn's permute, forward and backward (the
    /// gradient of a weighted sum), and undo each other; also without
    /// autodiff.
    #[test]
    fn moving_channels_equals_burns_permute() {
        let device = Device::flex().autodiff();
        let x0 = Tensor::<5>::random([2, 5, 3, 4, 6], Distribution::Default, &device);
        let probe = Tensor::<5>::random([2, 3, 4, 6, 5], Distribution::Default, &device);
        let run = |host: bool| {
            let x = x0.clone().detach().require_grad();
            let y = if host {
                channels_last(x.clone())
            } else {
                x.clone().permute([0, 2, 3, 4, 1])
            };
            let back = if host {
                channels_first(y.clone() * probe.clone())
            } else {
                (y.clone() * probe.clone()).permute([0, 4, 1, 2, 3])
            };
            let grads = (back * x0.clone()).sum().backward();
            (y.inner().into_data(), x.grad(&grads).unwrap().into_data())
        };
        let (y_host, g_host) = run(true);
        let (y_burn, g_burn) = run(false);
        assert_eq!(y_host, y_burn);
        g_host.assert_approx_eq::<f32>(&g_burn, burn::tensor::Tolerance::rel_abs(1e-6, 1e-6));
        let plain = x0.clone().inner();
        assert_eq!(
            channels_first(channels_last(plain.clone())).into_data(),
            plain.into_data()
        );
    }
}
