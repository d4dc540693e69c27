//! The VQ codebook with exponential-moving-average updates (van den Oord et
//! al. 2017, appendix; as the VideoGPT reference):
//!
//! - nearest code by squared Euclidean distance;
//! - after each training step, `N <- decay N + (1 - decay) counts` and
//!   `S <- decay S + (1 - decay) sums`; codes are `S / N~` with Laplace
//!   smoothing `N~ = (N + eps) / (sum N + K eps) * sum N`;
//! - initialised from random encoder outputs of the first training batch;
//! - every code whose EMA count falls below `dead_threshold` (1: used less
//!   than once per batch on average) is restarted from a random encoder
//!   output of the current batch. Unlike the reference, a restarted code's
//!   EMA statistics restart with it (`S = e`, `N = 1`), so the next update
//!   does not pull it straight back to its dead value.
//!
//! The codebook takes no gradient: its parameters are buffers that only
//! [`Codebook::ema_update`] changes.
//!
//! In data-parallel training every rank holds the same codebook: the counts
//! and sums are summed over the ranks before the update, and the initial and
//! restart vectors are picked from the global batch's encoder outputs (the
//! same picks on every rank, each rank filling in the rows it holds), so
//! the update is the one a single process with the whole batch makes.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use videogpt_pipeline::rng::SplitMix64;

use crate::distributed::Collective;

#[derive(Config, Debug)]
pub struct CodebookConfig {
    /// Number of codes `K`.
    pub codes: usize,
    /// Code dimension `D`.
    pub dim: usize,
    #[config(default = 0.99)]
    pub decay: f64,
    /// Laplace smoothing of the counts.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Codes whose EMA count is below this are restarted.
    #[config(default = 1.0)]
    pub dead_threshold: f64,
}

#[derive(Module, Debug)]
pub struct Codebook {
    /// `[K, D]`
    embeddings: Param<Tensor<2>>,
    /// EMA of the number of vectors assigned to each code, `[K]`.
    cluster_size: Param<Tensor<1>>,
    /// EMA of the sum of the vectors assigned to each code, `[K, D]`.
    embedding_sum: Param<Tensor<2>>,
    /// `[1]`: 1 once initialised from encoder outputs.
    initialised: Param<Tensor<1>>,
    decay: f64,
    epsilon: f64,
    dead_threshold: f64,
}

/// What one EMA step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodebookUpdate {
    /// Codes restarted from encoder outputs in this step (all `K` on the
    /// initialising step).
    pub restarted: usize,
    /// Whether this step initialised the codebook.
    pub initialised: bool,
}

fn buffer<const D: usize>(tensor: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(tensor.detach()).set_require_grad(false)
}

fn replace<const D: usize>(param: &Param<Tensor<D>>, tensor: Tensor<D>) -> Param<Tensor<D>> {
    Param::initialized(param.id, tensor.detach().set_require_grad(false))
}

impl CodebookConfig {
    pub fn init(&self, device: &Device) -> Codebook {
        let (k, d) = (self.codes, self.dim);
        Codebook {
            embeddings: buffer(Tensor::zeros([k, d], device)),
            cluster_size: buffer(Tensor::zeros([k], device)),
            embedding_sum: buffer(Tensor::zeros([k, d], device)),
            initialised: buffer(Tensor::zeros([1], device)),
            decay: self.decay,
            epsilon: self.epsilon,
            dead_threshold: self.dead_threshold,
        }
    }
}

impl Codebook {
    pub fn codes(&self) -> usize {
        self.embeddings.dims()[0]
    }

    pub fn dim(&self) -> usize {
        self.embeddings.dims()[1]
    }

    /// `[K, D]`, detached.
    pub fn embeddings(&self) -> Tensor<2> {
        self.embeddings.val().detach()
    }

    #[cfg(test)]
    pub(crate) fn embeddings_param(&self) -> Tensor<2> {
        self.embeddings.val()
    }

    /// `[K]`, the EMA counts.
    pub fn cluster_size(&self) -> Tensor<1> {
        self.cluster_size.val().detach()
    }

    pub fn is_initialised(&self) -> bool {
        self.initialised.val().into_scalar::<f32>() > 0.5
    }

    /// Index of the nearest code for each row of `z: [n, D]`, `[n]`.
    pub fn nearest(&self, z: Tensor<2>) -> Tensor<1, Int> {
        let e = self.embeddings();
        let n = z.dims()[0];
        let k = self.codes();
        // |z - e|^2 = |z|^2 - 2 z.e + |e|^2; |z|^2 does not change the argmin.
        let e_norm = e.clone().square().sum_dim(1).reshape([1, k]);
        let distance = e_norm - z.detach().matmul(e.transpose()).mul_scalar(2.0);
        distance.argmin(1).reshape([n])
    }

    /// The code vectors for `indices: [n]`, `[n, D]`, detached.
    pub fn lookup(&self, indices: Tensor<1, Int>) -> Tensor<2> {
        self.embeddings().select(0, indices)
    }

    /// One EMA step from the encoder outputs `z: [n, D]` of a training batch
    /// and their assigned codes. On the first call it initialises the
    /// codebook from `z` instead. `rng` picks the restart vectors; `ranks`
    /// are the data-parallel ranks whose batches make the global batch (a
    /// single process alone).
    pub fn ema_update(
        self,
        z: Tensor<2>,
        indices: Tensor<1, Int>,
        rng: &mut SplitMix64,
        ranks: &dyn Collective,
    ) -> (Self, CodebookUpdate) {
        let z = z.detach();
        let device = z.device();
        let (k, d) = (self.codes(), self.dim());
        if !self.is_initialised() {
            let rows = random_rows(&z, k, rng, ranks);
            let update = CodebookUpdate {
                restarted: k,
                initialised: true,
            };
            let next = Self {
                embeddings: replace(&self.embeddings, rows.clone()),
                embedding_sum: replace(&self.embedding_sum, rows),
                cluster_size: replace(&self.cluster_size, Tensor::ones([k], &device)),
                initialised: replace(&self.initialised, Tensor::ones([1], &device)),
                ..self
            };
            return (next, update);
        }

        let n = z.dims()[0];
        let counts = Tensor::<1>::zeros([k], &device).select_assign(
            0,
            indices.clone(),
            Tensor::ones([n], &device),
            IndexingUpdateOp::Add,
        );
        let sums = Tensor::<2>::zeros([k, d], &device).select_assign(
            0,
            indices,
            z.clone(),
            IndexingUpdateOp::Add,
        );
        let (counts, sums) = (summed_over(ranks, counts), summed_over(ranks, sums));
        let keep = self.decay;
        let cluster_size = self
            .cluster_size
            .val()
            .mul_scalar(keep)
            .add(counts.mul_scalar(1.0 - keep));
        let embedding_sum = self
            .embedding_sum
            .val()
            .mul_scalar(keep)
            .add(sums.mul_scalar(1.0 - keep));
        let total = cluster_size.clone().sum(); // [1]
        let smoothed = cluster_size
            .clone()
            .add_scalar(self.epsilon)
            .div(total.clone().add_scalar(k as f64 * self.epsilon))
            .mul(total);
        let embeddings = embedding_sum.clone().div(smoothed.reshape([k, 1]));

        let dead = cluster_size.clone().lower_elem(self.dead_threshold); // [K]
        let restarted = dead.clone().int().sum().into_scalar::<i64>() as usize;
        let (embeddings, embedding_sum, cluster_size) = if restarted > 0 {
            let rows = random_rows(&z, k, rng, ranks);
            let dead_rows = dead.clone().reshape([k, 1]).expand([k, d]);
            (
                embeddings.mask_where(dead_rows.clone(), rows.clone()),
                embedding_sum.mask_where(dead_rows, rows),
                cluster_size.mask_fill(dead, 1.0),
            )
        } else {
            (embeddings, embedding_sum, cluster_size)
        };
        let next = Self {
            embeddings: replace(&self.embeddings, embeddings),
            embedding_sum: replace(&self.embedding_sum, embedding_sum),
            cluster_size: replace(&self.cluster_size, cluster_size),
            ..self
        };
        (
            next,
            CodebookUpdate {
                restarted,
                initialised: false,
            },
        )
    }
}

/// `t` summed over the ranks (unchanged alone).
fn summed_over<const D: usize>(ranks: &dyn Collective, t: Tensor<D>) -> Tensor<D> {
    if ranks.size() == 1 {
        return t;
    }
    let (dims, device) = (t.dims(), t.device());
    let mut values = crate::data::float_values(t);
    ranks.sum_f32(&mut values);
    Tensor::from_data(TensorData::new(values, dims), &device)
}

/// `count` rows of the global batch's encoder outputs (`z` on each rank,
/// in rank order) chosen at random: without replacement when there are
/// enough rows; otherwise with replacement plus a little noise (std
/// `0.01 / sqrt(D)`, as the reference's `_tile`) so that the copies differ.
fn random_rows(z: &Tensor<2>, count: usize, rng: &mut SplitMix64, ranks: &dyn Collective) -> Tensor<2> {
    let [local, d] = z.dims();
    let n = local * ranks.size();
    let device = z.device();
    let picked: Vec<usize> = if n >= count {
        let mut order: Vec<u32> = (0..n as u32).collect();
        for i in 0..count {
            let j = i + rng.below((n - i) as u64) as usize;
            order.swap(i, j);
        }
        order[..count].iter().map(|&i| i as usize).collect()
    } else {
        (0..count).map(|_| rng.below(n as u64) as usize).collect()
    };
    let rows = if ranks.size() == 1 {
        let picked: Vec<i64> = picked.iter().map(|&i| i as i64).collect();
        z.clone().select(0, Tensor::from_data(TensorData::new(picked, [count]), &device))
    } else {
        // Each rank writes the picked rows it holds; the sum over ranks
        // has every row exactly once.
        let first = ranks.rank() * local;
        let values = crate::data::float_values(z.clone());
        let mut rows = vec![0f32; count * d];
        for (row, &p) in rows.chunks_exact_mut(d).zip(&picked) {
            if (first..first + local).contains(&p) {
                row.copy_from_slice(&values[(p - first) * d..][..d]);
            }
        }
        ranks.sum_f32(&mut rows);
        Tensor::from_data(TensorData::new(rows, [count, d]), &device)
    };
    if n >= count {
        return rows;
    }
    let std = 0.01 / (d as f64).sqrt();
    let noise: Vec<f32> = (0..count * d)
        .map(|_| (standard_normal(rng) * std) as f32)
        .collect();
    rows + Tensor::from_data(TensorData::new(noise, [count, d]), &device)
}

/// Box-Muller on our own generator, so restarts never depend on a crate's RNG.
fn standard_normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Perplexity `exp(H)` of the code histogram of `indices` (the reference's
/// codebook-usage measure) and the number of distinct codes used.
pub fn usage(indices: &[i64], codes: usize) -> (f64, usize) {
    usage_of_counts(&code_counts(indices, codes))
}

/// How often each code occurs in `indices`.
pub fn code_counts(indices: &[i64], codes: usize) -> Vec<f64> {
    let mut counts = vec![0f64; codes];
    for &i in indices {
        counts[i as usize] += 1.0;
    }
    counts
}

/// [`usage`] from the codes' counts (e.g. summed over ranks).
pub fn usage_of_counts(counts: &[f64]) -> (f64, usize) {
    let total = counts.iter().sum::<f64>().max(1.0);
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0.0)
        .map(|&c| {
            let p = c / total;
            -p * p.ln()
        })
        .sum();
    (entropy.exp(), counts.iter().filter(|&&c| c > 0.0).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    fn tensor2(values: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
    }

    fn initialised_with(embeddings: &[f32], k: usize, d: usize, device: &Device) -> Codebook {
        let book = CodebookConfig::new(k, d).init(device);
        let e = tensor2(embeddings, [k, d], device);
        Codebook {
            embeddings: replace(&book.embeddings, e.clone()),
            embedding_sum: replace(&book.embedding_sum, e),
            cluster_size: replace(&book.cluster_size, Tensor::ones([k], device)),
            initialised: replace(&book.initialised, Tensor::ones([1], device)),
            ..book
        }
    }

    #[test]
    fn nearest_code_by_euclidean_distance() {
        let device = Device::flex();
        let book = initialised_with(&[0.0, 0.0, 10.0, 0.0, 0.0, 10.0], 3, 2, &device);
        let z = tensor2(&[1.0, 1.0, 9.0, 2.0, -1.0, 7.0, 5.1, 4.9], [4, 2], &device);
        let idx = crate::data::int_values(book.nearest(z));
        assert_eq!(idx, vec![0, 1, 2, 1]);
    }

    /// Two codes in 2-D, three vectors, decay 0.99, eps 1e-5, worked by hand.
    #[test]
    fn ema_update_matches_a_hand_computed_example() {
        let device = Device::flex();
        let book = initialised_with(&[0.0, 0.0, 4.0, 4.0], 2, 2, &device);
        // Vectors (1,0) and (0,1) go to code 0, (4,6) to code 1.
        let z = tensor2(&[1.0, 0.0, 0.0, 1.0, 4.0, 6.0], [3, 2], &device);
        let idx = book.nearest(z.clone());
        assert_eq!(crate::data::int_values(idx.clone()), vec![0, 0, 1]);
        let (book, update) = book.ema_update(z, idx, &mut SplitMix64::new(0), crate::distributed::world());
        assert_eq!(update.restarted, 0);
        // N = 0.99*[1,1] + 0.01*[2,1] = [1.01, 1.00]
        let n = [1.01f64, 1.00];
        // S = 0.99*[[0,0],[4,4]] + 0.01*[[1,1],[4,6]] = [[0.01,0.01],[4.0,4.02]]
        let s = [[0.01f64, 0.01], [4.0, 4.02]];
        let (eps, total) = (1e-5, n[0] + n[1]);
        let smooth = n.map(|c| (c + eps) / (total + 2.0 * eps) * total);
        let want = [
            s[0][0] / smooth[0],
            s[0][1] / smooth[0],
            s[1][0] / smooth[1],
            s[1][1] / smooth[1],
        ];
        book.cluster_size()
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::from(n.map(|v| v as f32)), Tolerance::absolute(1e-6));
        book.embeddings().into_data().assert_approx_eq::<f32>(
            &TensorData::new(want.map(|v| v as f32).to_vec(), [2, 2]),
            Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn dead_code_restart_replaces_exactly_the_codes_under_the_threshold() {
        let device = Device::flex();
        let (k, d) = (4, 3);
        let book = initialised_with(
            &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0],
            k,
            d,
            &device,
        );
        // Counts after the update: codes 0 and 2 get vectors (N >= 1), codes
        // 1 and 3 get none (N = 0.99 < 1) and must be restarted.
        let z = tensor2(
            &[0.1, 0.0, 0.0, 2.0, 2.1, 2.0, 50.0, 50.0, 50.0, 60.0, 60.0, 60.0, 70.0, 70.0, 70.0],
            [5, 3],
            &device,
        );
        let idx = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2, 0, 2, 2], [5]), &device);
        let before = book.embeddings().into_data().try_to_vec::<f32>().unwrap();
        let (book, update) = book.ema_update(z.clone(), idx, &mut SplitMix64::new(7), crate::distributed::world());
        assert_eq!(update.restarted, 2);
        let after = book.embeddings().into_data().try_to_vec::<f32>().unwrap();
        let rows: Vec<Vec<f32>> = z.into_data().try_to_vec::<f32>().unwrap().chunks(3).map(|r| r.to_vec()).collect();
        let counts = book.cluster_size().into_data().try_to_vec::<f32>().unwrap();
        for code in 0..k {
            let row = &after[code * d..(code + 1) * d];
            let is_input = rows.iter().any(|r| r.as_slice() == row);
            if code == 1 || code == 3 {
                assert!(is_input, "code {code} should be an encoder output, got {row:?}");
                assert_eq!(counts[code], 1.0);
            } else {
                assert!(!is_input, "live code {code} must keep its EMA value");
                assert!(counts[code] >= 1.0);
                // Live codes moved only by the EMA step, not replaced.
                let old = &before[code * d..(code + 1) * d];
                assert!(row.iter().zip(old).all(|(a, b)| (a - b).abs() < 1.5), "{row:?} vs {old:?}");
            }
        }
        // Two different inputs for the two restarted codes.
        assert_ne!(after[d..2 * d], after[3 * d..4 * d]);
    }

    #[test]
    fn first_update_initialises_from_encoder_outputs() {
        let device = Device::flex();
        let book = CodebookConfig::new(3, 2).init(&device);
        assert!(!book.is_initialised());
        let z = tensor2(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [4, 2], &device);
        let idx = book.nearest(z.clone());
        let (book, update) = book.ema_update(z, idx, &mut SplitMix64::new(1), crate::distributed::world());
        assert!(update.initialised && book.is_initialised());
        let e = book.embeddings().into_data().try_to_vec::<f32>().unwrap();
        let mut firsts: Vec<f32> = e.chunks(2).map(|r| r[0]).collect();
        firsts.sort_by(f32::total_cmp);
        firsts.dedup();
        assert_eq!(firsts.len(), 3, "three distinct encoder outputs: {e:?}");
    }

    #[test]
    fn usage_counts_perplexity() {
        let (p, used) = usage(&[0, 1, 2, 3], 8);
        assert!((p - 4.0).abs() < 1e-9);
        assert_eq!(used, 4);
        let (p, used) = usage(&[5, 5, 5], 8);
        assert!((p - 1.0).abs() < 1e-9);
        assert_eq!(used, 1);
    }
}
