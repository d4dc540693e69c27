//! What each code looks like: the decoder's output for a latent grid filled
//! with one code, cropped to the middle frame's centre (two latent cells per
//! axis), as a PNG grid of one tile per code, 16 tiles per row.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};

use crate::backend::BackendKind;
use crate::checkpoint;
use crate::data;
use crate::error::{IoContext, Result};
use crate::preview;

const TILES_PER_ROW: usize = 16;

/// Decodes codes `0..count` (all codes when `None`) of the checkpoint (or
/// run folder) and writes the tiles to `out` (PNG). Returns the tile size
/// `[h, w]`.
pub fn write_code_patches(
    checkpoint_or_run: &Path,
    out: &Path,
    count: Option<usize>,
    backend: BackendKind,
    progress: bool,
) -> Result<[usize; 2]> {
    let checkpoint = checkpoint::resolve(checkpoint_or_run)?;
    let device = backend.device();
    let (model, config, _) = checkpoint::load_model(&checkpoint, &device)?;
    let model = model.valid();
    let codes = count.map_or(config.model.codes, |n| n.min(config.model.codes));
    let [gt, gh, gw] = config.model.latent_shape();
    let [_, dh, dw] = config.model.downsample;
    let [t, h, w] = config.model.input_shape;
    let c = config.model.channels;
    let (ph, pw) = ((2 * dh).min(h), (2 * dw).min(w));
    let (y0, x0, frame) = ((h - ph) / 2, (w - pw) / 2, t / 2);
    let cells = gt * gh * gw;
    let bar = videogpt_pipeline::progress::bar(codes as u64, "codes", progress);
    let mut tiles: Vec<Vec<u8>> = Vec::with_capacity(codes);
    for chunk in (0..codes).collect::<Vec<_>>().chunks(8) {
        let values: Vec<i64> = chunk.iter().flat_map(|&k| std::iter::repeat_n(k as i64, cells)).collect();
        let grid = Tensor::<4, Int>::from_data(TensorData::new(values, [chunk.len(), gt, gh, gw]), &device);
        let video = data::float_values(model.decode(grid));
        let clips = data::clips_from_channels_first(&video, [chunk.len(), c, t, h, w]);
        for clip in clips {
            let mut tile = Vec::with_capacity(ph * pw * c);
            for y in y0..y0 + ph {
                let row = ((frame * h + y) * w + x0) * c;
                tile.extend_from_slice(&clip[row..row + pw * c]);
            }
            tiles.push(tile);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    // Rows of 16 tiles, each row drawn as a 16-frame "clip" of tiles.
    let blank = vec![0u8; ph * pw * c];
    let rows: Vec<Vec<u8>> = tiles
        .chunks(TILES_PER_ROW)
        .map(|row| {
            let mut clip = Vec::with_capacity(TILES_PER_ROW * blank.len());
            for i in 0..TILES_PER_ROW {
                clip.extend_from_slice(row.get(i).unwrap_or(&blank));
            }
            clip
        })
        .collect();
    let refs: Vec<&[u8]> = rows.iter().map(|r| r.as_slice()).collect();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    preview::write_frame_grid_png(out, &refs, [TILES_PER_ROW, ph, pw, c]).at(out)?;
    Ok([ph, pw])
}
