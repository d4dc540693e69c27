//! Pictures of clips: a PNG frame grid (one clip per row, one frame per
//! column) and an animated GIF (a grid of clips playing side by side).
//! Clips are uint8 `[T, H, W, C]` with C = 1 (grey) or 3 (RGB).

use std::io;
use std::path::Path;

const GAP: usize = 2;

/// RGB pixel `(y, x)` of frame `t` of a clip.
fn pixel(clip: &[u8], shape: [usize; 4], t: usize, y: usize, x: usize) -> [u8; 3] {
    let [_, h, w, c] = shape;
    let at = ((t * h + y) * w + x) * c;
    if c == 1 {
        [clip[at]; 3]
    } else {
        [clip[at], clip[at + 1], clip[at + 2]]
    }
}

/// An RGB canvas of `rows x cols` cells of `h x w` (times `scale`) with
/// `GAP` white pixels between cells; `cell(r, c)` gives (clip, frame).
fn canvas<'a>(
    rows: usize,
    cols: usize,
    shape: [usize; 4],
    scale: usize,
    cell: impl Fn(usize, usize) -> Option<(&'a [u8], usize)>,
) -> (usize, usize, Vec<u8>) {
    let [_, h, w, _] = shape;
    let (ch, cw) = (h * scale, w * scale);
    let width = cols * cw + (cols.saturating_sub(1)) * GAP;
    let height = rows * ch + (rows.saturating_sub(1)) * GAP;
    let mut rgb = vec![255u8; width * height * 3];
    for r in 0..rows {
        for c in 0..cols {
            let Some((clip, t)) = cell(r, c) else { continue };
            for y in 0..ch {
                for x in 0..cw {
                    let p = pixel(clip, shape, t, y / scale, x / scale);
                    let at = ((r * (ch + GAP) + y) * width + c * (cw + GAP) + x) * 3;
                    rgb[at..at + 3].copy_from_slice(&p);
                }
            }
        }
    }
    (width, height, rgb)
}

fn upscale(shape: [usize; 4]) -> usize {
    if shape[1].max(shape[2]) <= 64 { 2 } else { 1 }
}

/// One row per clip, one column per frame.
pub fn write_frame_grid_png(path: &Path, clips: &[&[u8]], shape: [usize; 4]) -> io::Result<()> {
    let scale = upscale(shape);
    let (w, h, rgb) = canvas(clips.len(), shape[0], shape, scale, |r, c| Some((clips[r], c)));
    write_png(path, w, h, &rgb)
}

pub fn write_png(path: &Path, width: usize, height: usize, rgb: &[u8]) -> io::Result<()> {
    videogpt_pipeline::atomic::write_atomic(path, |out| {
        let mut encoder = png::Encoder::new(out, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(io::Error::other)?;
        writer.write_image_data(rgb).map_err(io::Error::other)?;
        writer.finish().map_err(io::Error::other)
    })
}

/// An animated GIF of a `rows x cols` grid of clips (`grid[r][c]`), all
/// playing together; `fps` frames per second, looping.
pub fn write_grid_gif(
    path: &Path,
    grid: &[Vec<&[u8]>],
    shape: [usize; 4],
    fps: u16,
) -> io::Result<()> {
    let grey = shape[3] == 1;
    let delay = (100 / fps.max(1)).max(2); // hundredths of a second
    let frames = grid_frames(grid, shape);
    let Some((w, h, _)) = frames.first() else {
        return Ok(());
    };
    let (w, h) = (*w as u16, *h as u16);
    videogpt_pipeline::atomic::write_atomic(path, |out| {
        let palette: Vec<u8> = if grey {
            (0..=255u8).flat_map(|v| [v, v, v]).collect()
        } else {
            Vec::new()
        };
        let mut encoder = gif::Encoder::new(out, w, h, &palette).map_err(io::Error::other)?;
        encoder
            .set_repeat(gif::Repeat::Infinite)
            .map_err(io::Error::other)?;
        for (_, _, rgb) in &frames {
            let mut frame = if grey {
                // Exact: the grey palette holds every level.
                let indices: Vec<u8> = rgb.chunks_exact(3).map(|p| p[0]).collect();
                gif::Frame::from_indexed_pixels(w, h, indices, None)
            } else {
                gif::Frame::from_rgb_speed(w, h, rgb, 10)
            };
            frame.delay = delay;
            encoder.write_frame(&frame).map_err(io::Error::other)?;
        }
        Ok(())
    })
}

/// One RGB canvas per time step of a grid of clips playing side by side.
fn grid_frames(grid: &[Vec<&[u8]>], shape: [usize; 4]) -> Vec<(usize, usize, Vec<u8>)> {
    let rows = grid.len();
    let cols = grid.iter().map(Vec::len).max().unwrap_or(0);
    let scale = upscale(shape);
    (0..shape[0])
        .map(|t| canvas(rows, cols, shape, scale, |r, c| grid[r].get(c).map(|clip| (*clip, t))))
        .collect()
}

/// The grid as an H.264 MP4 through the `ffmpeg` command line (frames
/// piped raw; sizes padded to even; pixels kept sharp by a nearest-neighbour
/// 2x upscale). Written to a temporary name, then renamed.
pub fn write_grid_mp4(path: &Path, grid: &[Vec<&[u8]>], shape: [usize; 4], fps: u16) -> io::Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let frames = grid_frames(grid, shape);
    let Some((w, h, _)) = frames.first() else {
        return Ok(());
    };
    let tmp = videogpt_pipeline::atomic::temp_path(path);
    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"])
        .args(["-s", &format!("{w}x{h}"), "-r", &fps.max(1).to_string(), "-i", "-"])
        .args(["-vf", "scale=iw*2:ih*2:flags=neighbor,pad=ceil(iw/2)*2:ceil(ih/2)*2"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-f", "mp4"])
        .arg(&tmp)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running ffmpeg (is it installed? ./setup.sh installs it): {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    for (_, _, rgb) in &frames {
        stdin.write_all(rgb)?;
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io::Error::other(format!(
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn png_and_gif_decode_to_the_frames_written() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [3, 4, 5, 1];
        let a: Vec<u8> = (0..60).map(|i| (i * 4) as u8).collect();
        let b: Vec<u8> = (0..60).map(|i| 255 - (i * 4) as u8).collect();
        let png_path = dir.path().join("grid.png");
        write_frame_grid_png(&png_path, &[&a, &b], shape).unwrap();
        let decoder = png::Decoder::new(io::BufReader::new(File::open(&png_path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        // 3 frames of 5 px, scale 2, 2 gaps; 2 rows of 4 px.
        assert_eq!((info.width, info.height), (3 * 10 + 2 * GAP as u32, 2 * 8 + GAP as u32));
        // Row 1 (clip b), frame 2, pixel (1, 3) at scale 2.
        let (y, x) = (8 + GAP + 2, 2 * (10 + GAP) + 6);
        let at = (y * info.width as usize + x) * 3;
        assert_eq!(buf[at], b[(2 * 4 + 1) * 5 + 3]);

        let gif_path = dir.path().join("grid.gif");
        write_grid_gif(&gif_path, &[vec![&a, &b]], shape, 8).unwrap();
        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::RGBA);
        let mut decoder = options.read_info(File::open(&gif_path).unwrap()).unwrap();
        let mut frames = 0;
        while let Some(frame) = decoder.read_next_frame().unwrap() {
            // Clip a, pixel (0, 0) of frame t is exact (grey palette).
            assert_eq!(frame.buffer[0], a[frames * 20]);
            frames += 1;
        }
        assert_eq!(frames, 3);
    }
}
