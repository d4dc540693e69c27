//! Clips from clip shards to float batches for the models.
//!
//! A loader thread reads clips in a seeded shuffled order (a new
//! permutation every epoch), converts uint8 `[T, H, W, C]` to float
//! `[C, T, H, W]` in `[-0.5, 0.5]`, and hands batches over a bounded channel,
//! so the model never waits on zstd or disk. The order depends only on the
//! seed and the sample counter: a resumed run at step `s` continues with
//! exactly the batches an uninterrupted run would have seen.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use videogpt_pipeline::shuffle::ShuffledOrder;
use videogpt_pipeline::shards::ClipShards;

/// One batch, `[b, c, t, h, w]` row-major.
#[derive(Debug, Clone)]
pub struct Batch {
    pub data: Vec<f32>,
    pub shape: [usize; 5],
    /// Clip ids in the batch, in order.
    pub clips: Vec<u64>,
}

/// uint8 `[T, H, W, C]` into `out` as float `[C, T, H, W]`, `x / 255 - 0.5`.
pub fn clip_to_channels_first(clip: &[u8], shape: [usize; 4], out: &mut [f32]) {
    let [t, h, w, c] = shape;
    let plane = t * h * w;
    debug_assert_eq!(clip.len(), plane * c);
    debug_assert_eq!(out.len(), plane * c);
    for (p, pixel) in clip.chunks_exact(c).enumerate() {
        for (ch, &v) in pixel.iter().enumerate() {
            out[ch * plane + p] = v as f32 / 255.0 - 0.5;
        }
    }
}

/// Float `[C, T, H, W]` in `[-0.5, 0.5]` back to uint8 `[T, H, W, C]`
/// (clamped, rounded).
pub fn channels_first_to_clip(data: &[f32], shape: [usize; 4]) -> Vec<u8> {
    let [t, h, w, c] = shape;
    let plane = t * h * w;
    let mut out = vec![0u8; plane * c];
    for p in 0..plane {
        for ch in 0..c {
            let v = (data[ch * plane + p] + 0.5) * 255.0;
            out[p * c + ch] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// The values of an integer tensor on the host, whatever integer type the
/// backend stores (flex uses i32, others i64).
pub fn int_values<const D: usize>(t: burn::tensor::Tensor<D, burn::tensor::Int>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("integer tensor data converts to i64")
}

/// The values of a float tensor on the host as f32.
pub fn float_values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor data converts to f32")
}

/// A batch of float `[b, C, T, H, W]` back to uint8 `[T, H, W, C]` clips.
pub fn clips_from_channels_first(data: &[f32], [b, c, t, h, w]: [usize; 5]) -> Vec<Vec<u8>> {
    let per = c * t * h * w;
    (0..b)
        .map(|i| channels_first_to_clip(&data[i * per..(i + 1) * per], [t, h, w, c]))
        .collect()
}

impl Batch {
    /// The batch as a `[b, c, t, h, w]` tensor on `device`.
    pub fn tensor(&self, device: &burn::tensor::Device) -> burn::tensor::Tensor<5> {
        burn::tensor::Tensor::from_data(
            burn::tensor::TensorData::new(self.data.clone(), self.shape),
            device,
        )
    }
}

/// Reads the clips `ids` into one batch.
pub fn read_batch(shards: &ClipShards, ids: &[u64]) -> videogpt_pipeline::Result<Batch> {
    let shape = shards.clip_shape();
    let [t, h, w, c] = shape;
    let per_clip = t * h * w * c;
    let mut data = vec![0f32; ids.len() * per_clip];
    for (i, &id) in ids.iter().enumerate() {
        let clip = shards.clip(id)?;
        clip_to_channels_first(&clip, shape, &mut data[i * per_clip..(i + 1) * per_clip]);
    }
    Ok(Batch {
        data,
        shape: [ids.len(), c, t, h, w],
        clips: ids.to_vec(),
    })
}

/// Purpose of the clip loader's shuffle (its stream of the run seed).
const CLIP_ORDER: &str = "clip-order";

/// Batches of `batch_size` from an endless shuffled stream, starting at
/// sample `start_sample`, prepared on a loader thread.
pub struct Loader {
    rx: Receiver<videogpt_pipeline::Result<Batch>>,
    _thread: JoinHandle<()>,
}

impl Loader {
    pub fn spawn(
        shards: Arc<ClipShards>,
        batch_size: usize,
        seed: u64,
        start_sample: u64,
        prefetch: usize,
    ) -> Self {
        Self::spawn_slice(shards, batch_size, (0, batch_size), seed, start_sample, prefetch)
    }

    /// [`Loader::spawn`] for one rank of a data-parallel run: of each global
    /// batch of `batch_size` clips, the `count` starting at `first` (the
    /// rank's slice of the order a single process would read).
    pub fn spawn_slice(
        shards: Arc<ClipShards>,
        batch_size: usize,
        (first, count): (usize, usize),
        seed: u64,
        start_sample: u64,
        prefetch: usize,
    ) -> Self {
        let (tx, rx): (SyncSender<_>, _) = sync_channel(prefetch.max(1));
        let thread = std::thread::Builder::new()
            .name("clip-loader".into())
            .spawn(move || {
                let mut order = ShuffledOrder::new(seed, CLIP_ORDER, shards.len());
                let mut sample = start_sample;
                loop {
                    let ids: Vec<u64> = (first as u64..(first + count) as u64)
                        .map(|i| order.item_at(sample + i))
                        .collect();
                    sample += batch_size as u64;
                    let batch = read_batch(&shards, &ids);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawn the loader thread");
        Self {
            rx,
            _thread: thread,
        }
    }

    pub fn next_batch(&self) -> videogpt_pipeline::Result<Batch> {
        self.rx
            .recv()
            .expect("the loader thread ended without reporting an error")
    }
}

/// Mean and variance of the pixel values (as `x / 255 - 0.5`) over up to
/// `max_clips` clips spread evenly over the split.
pub fn pixel_statistics(split_dir: &Path, max_clips: u64) -> videogpt_pipeline::Result<(f64, f64)> {
    let shards = ClipShards::open(split_dir)?;
    let n = shards.len();
    let take = n.min(max_clips).max(1);
    let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0u64);
    for i in 0..take.min(n) {
        let id = i * n / take;
        for &v in &shards.clip(id)? {
            let x = v as f64 / 255.0 - 0.5;
            sum += x;
            sum_sq += x * x;
        }
        count += shards.index().clip_len() as u64;
    }
    let mean = sum / count.max(1) as f64;
    Ok((mean, (sum_sq / count.max(1) as f64 - mean * mean).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_first_round_trips() {
        let shape = [2, 2, 3, 3];
        let clip: Vec<u8> = (0..36).map(|i| (i * 7) as u8).collect();
        let mut f = vec![0f32; 36];
        clip_to_channels_first(&clip, shape, &mut f);
        // Channel 1 of pixel 0 is byte 1.
        assert!((f[12] - (7.0 / 255.0 - 0.5)).abs() < 1e-6);
        assert_eq!(channels_first_to_clip(&f, shape), clip);
    }
}
