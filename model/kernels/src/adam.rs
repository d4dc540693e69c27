//! Adam with burn's defaults, its update computed on the host across the
//! cores for f32 flex tensors.
//!
//! burn's `Adam` updates each parameter with about ten element-wise tensor
//! operations (moments, bias correction, square root, division, step), and
//! on flex each one is a serial pass over the parameter: at the paper's
//! width (~15 M parameters) that was about 0.1 s of every VQ-VAE step with
//! the other core idle. Here the whole update is one parallel pass, and the
//! parameter and moment buffers are updated in place where they are not
//! shared. The arithmetic is burn's (`AdaptiveMomentum::transform`), in the
//! same order, and the state is burn's `AdamState`, so optimiser
//! checkpoints are the same files either way. Other devices and dtypes go
//! to burn's `Adam`.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::host::buffers::parallel_zeros;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Adam (`beta_1` 0.9, `beta_2` 0.999, `epsilon` 1e-5: burn's
/// `AdamConfig` defaults, without weight decay or AMSGrad).
#[derive(Clone)]
pub struct HostAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    /// For tensors the host update does not take.
    fallback: Adam,
}

impl Default for HostAdam {
    fn default() -> Self {
        let (beta_1, beta_2, epsilon) = (0.9, 0.999, 1e-5);
        Self {
            beta_1,
            beta_2,
            epsilon,
            fallback: AdamConfig::new()
                .with_beta_1(beta_1)
                .with_beta_2(beta_2)
                .with_epsilon(epsilon)
                .build(),
        }
    }
}

impl HostAdam {
    /// The whole-module optimiser (what `AdamConfig::new().init()` gives,
    /// with this update).
    pub fn module_optimizer() -> ModuleOptimizer {
        ModuleOptimizer::from(Self::default())
    }
}

impl Optimizer for HostAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let flex = |t: &Tensor<D>| {
            (t.dtype() == DType::F32)
                .then(|| t.clone().try_into_primitive::<Flex>().ok())
                .flatten()
        };
        let host = (|| {
            let moments = match &state {
                None => None,
                Some(s) if s.momentum.max_moment_2.is_none() => Some((
                    s.momentum.time,
                    flex(&s.momentum.moment_1)?,
                    flex(&s.momentum.moment_2)?,
                )),
                Some(_) => return None,
            };
            Some((flex(&tensor)?, flex(&grad)?, moments))
        })();
        let Some((param, grad_host, moments)) = host else {
            return self.fallback.step(lr, tensor, grad, state);
        };
        // Drop the other handles, so the buffers are updated in place
        // rather than copied on write.
        drop((tensor, grad, state));
        // `to_contiguous` gives offset 0 and exactly `len` values; `storage_mut`
        // copies a buffer that is still shared.
        let mut param = param.to_contiguous();
        let grad_host = grad_host.to_contiguous();
        let len = param.layout().num_elements();
        let shape = param.layout().shape().clone();
        let (time, mut moment_1, mut moment_2) = match moments {
            Some((time, m, v)) => (time + 1, m.to_contiguous(), v.to_contiguous()),
            None => {
                let zeros =
                    || FlexTensor::from_data(TensorData::new(parallel_zeros(len), shape.clone()));
                (1, zeros(), zeros())
            }
        };
        let first = time == 1;
        let (beta_1, beta_2, epsilon) = (self.beta_1, self.beta_2, self.epsilon);
        let bias_correction2_sqrt = (1.0 - beta_2.powi(time as i32)).sqrt();
        let combined_factor = bias_correction2_sqrt / (1.0 - beta_1.powi(time as i32));
        let lr = lr as f32;
        let g: &[f32] = &grad_host.storage::<f32>()[..len];
        param.storage_mut::<f32>()[..len]
            .par_chunks_mut(CHUNK)
            .zip(moment_1.storage_mut::<f32>()[..len].par_chunks_mut(CHUNK))
            .zip(moment_2.storage_mut::<f32>()[..len].par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                    // burn: moment_1 * beta_1 + grad * (1 - beta_1) (grad *
                    // (1 - beta_1) alone on the first step), likewise for
                    // the squares.
                    let (m_new, v_new) = if first {
                        (g * (1.0 - beta_1), g * g * (1.0 - beta_2))
                    } else {
                        (
                            *m * beta_1 + g * (1.0 - beta_1),
                            *v * beta_2 + g * g * (1.0 - beta_2),
                        )
                    };
                    *m = m_new;
                    *v = v_new;
                    let update =
                        m_new * combined_factor / (v_new.sqrt() + epsilon * bias_correction2_sqrt);
                    *p -= update * lr;
                }
            });
        let wrap = |t: FlexTensor| Tensor::<D>::from_primitive::<Flex>(t);
        let momentum = AdaptiveMomentumState::new(time, wrap(moment_1), wrap(moment_2));
        (wrap(param), Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Module, Param};
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, Tolerance};

    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        b: Linear,
    }

    impl Net {
        fn loss(&self, x: Tensor<2>) -> Tensor<1> {
            let y = self.b.forward(self.a.forward(x).tanh());
            (y.clone() * y).mean()
        }
    }

    fn params(net: &Net) -> Vec<Vec<f32>> {
        let values = |data: TensorData| data.try_to_vec::<f32>().unwrap();
        let bias =
            |b: &Option<Param<Tensor<1>>>| values(b.as_ref().unwrap().val().inner().into_data());
        vec![
            values(net.a.weight.val().inner().into_data()),
            values(net.b.weight.val().inner().into_data()),
            bias(&net.a.bias),
            bias(&net.b.bias),
        ]
    }

    fn assert_same(ours: &Net, burns: &Net) {
        for (o, b) in params(ours).into_iter().zip(params(burns)) {
            TensorData::new(o.clone(), [o.len()]).assert_approx_eq::<f32>(
                &TensorData::new(b.clone(), [b.len()]),
                Tolerance::rel_abs(1e-5, 1e-7),
            );
        }
    }

    /// Three steps of the host update and of burn's Adam from the same
    /// start give the same parameters; and burn's saved state after two
    /// steps, loaded into either, gives the same third step (checkpoints
    /// are interchangeable).
    #[test]
    fn host_adam_equals_burns_adam() {
        let device = Device::flex().autodiff();
        let start = Net {
            a: LinearConfig::new(37, 70).init(&device),
            b: LinearConfig::new(70, 5).init(&device),
        };
        let x = Tensor::<2>::random([9, 37], Distribution::Normal(0.0, 2.0), &device);
        let train = |mut net: Net, optim: &mut ModuleOptimizer, steps: std::ops::Range<usize>| {
            for step in steps {
                let grads = GradientsParams::from_grads(net.loss(x.clone()).backward(), &net);
                net = optim.step(1e-2 * (step + 1) as f64, net, grads);
            }
            net
        };
        let ours = train(start.clone(), &mut HostAdam::module_optimizer(), 0..3);
        let mut burns_optim = AdamConfig::new().init();
        let burns_two = train(start.clone(), &mut burns_optim, 0..2);
        let saved = burns_optim.into_bytes().unwrap();
        let burns = train(burns_two.clone(), &mut burns_optim, 2..3);
        assert_same(&ours, &burns);
        // The parameters moved: this compares three steps, not two starts.
        let moved = params(&ours)[0]
            .iter()
            .zip(&params(&start)[0])
            .any(|(a, b)| (a - b).abs() > 1e-3);
        assert!(moved, "three Adam steps left the weights where they were");
        // burn's state after two steps, resumed by the host update.
        let mut resumed = HostAdam::module_optimizer().from_bytes(saved).unwrap();
        assert_same(&train(burns_two, &mut resumed, 2..3), &burns);
    }
}
