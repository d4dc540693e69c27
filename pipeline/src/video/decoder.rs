//! One video file to a stream of square RGB24 frames, through the system
//! FFmpeg (ffmpeg-next).
//!
//! Each decoded frame is converted to RGB24 and resized in one swscale call
//! (the filter of [`ResizeFilter`]), then center-cropped ([`CropGeometry`]);
//! frames dropped by the optional fps filter are never converted. Frames go
//! to the caller's sink one at a time, so memory does not grow with the
//! video's length, and the sink can stop the decode early.
//!
//! Strictness: a file that cannot be opened, has no video stream, fails to
//! decode a packet, hits a read error, or yields fewer than 90% of the
//! frames its header declares while its packets' timestamps also end before
//! 90% of the declared duration (a truncated file) is an error; the caller
//! rejects the video rather than cut clips that skip frames. Damage FFmpeg
//! conceals (it logs an error and still gives a frame) is counted in the
//! summary ([`super::damage`]); what to do with it is the caller's policy
//! ([`DamagePolicy`]).

use std::path::Path;
use std::sync::Once;

use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::video::Video as Frame;
use ffmpeg::{Packet, Rational, media};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

use super::damage::{DamageCounter, DamageScope};
use super::frame_rate::FrameRateFilter;
use super::geometry::{CropGeometry, ResizeFilter};

/// How to decode: the output resolution, the resize filter, an optional
/// lower frame rate, the decoder's own threads (1: parallelism comes from
/// decoding several videos at once), and what a damaged video becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeOptions {
    pub resolution: u32,
    pub filter: ResizeFilter,
    pub fps: Option<f64>,
    pub threads: usize,
    /// Left out of index.json when it is the default, `reject`.
    #[serde(default, skip_serializing_if = "DamagePolicy::is_reject")]
    pub on_damage: DamagePolicy,
}

/// What `prepare` does with a video FFmpeg reported damage in (`--on-damage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DamagePolicy {
    /// The video goes to rejects.tsv with FFmpeg's first message.
    #[default]
    Reject,
    /// Its clips are kept; clips.parquet's `decode_errors` holds the count.
    Keep,
}

impl DamagePolicy {
    pub fn is_reject(&self) -> bool {
        *self == Self::Reject
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            resolution: 64,
            filter: ResizeFilter::Bilinear,
            fps: None,
            threads: 1,
            on_damage: DamagePolicy::Reject,
        }
    }
}

/// What a finished (or stopped) decode saw.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeSummary {
    /// Frames the codec produced.
    pub decoded: usize,
    /// Frames handed to the sink (after the fps filter).
    pub delivered: usize,
    /// The sink asked to stop before the end of the video.
    pub stopped_early: bool,
    pub width: u32,
    pub height: u32,
    pub codec: String,
    /// The stream's average frame rate, when the container knows it.
    pub source_fps: Option<f64>,
    /// Error messages and corrupt frames FFmpeg reported (0: clean).
    pub damage: usize,
    /// The first of those reports.
    pub first_damage: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("cannot read the file: {0}")]
    Unreadable(std::io::Error),
    #[error("FFmpeg cannot open it: {0}")]
    Open(ffmpeg::Error),
    #[error("no video stream")]
    NoVideoStream,
    #[error("no decoder for its video codec: {0}")]
    Codec(ffmpeg::Error),
    #[error("corrupt: decoding failed after {frames} frames: {error}")]
    Decode { frames: usize, error: ffmpeg::Error },
    #[error("read error after {frames} frames: {error}")]
    Read { frames: usize, error: ffmpeg::Error },
    #[error("truncated: decoded {decoded} of the {declared} frames its header declares")]
    Truncated { decoded: usize, declared: i64 },
    #[error("no decodable video frames")]
    NoFrames,
    #[error("frames of {width}x{height} would be resized to {scaled_width}x{scaled_height}, over {MAX_SCALED_SIDE} pixels on a side")]
    Extreme {
        width: u32,
        height: u32,
        scaled_width: u32,
        scaled_height: u32,
    },
    #[error("frame conversion failed ({width}x{height} {format:?} to RGB24): {error}")]
    Scale {
        width: u32,
        height: u32,
        format: Pixel,
        error: ffmpeg::Error,
    },
}

/// Longest side a frame is resized to before the center crop.
const MAX_SCALED_SIDE: u32 = 16_384;

/// `frames` frames at `rate` frames/s, in units of `time_base` seconds.
fn declared_span(frames: i64, rate: Rational, time_base: Rational) -> f64 {
    let (r, t) = (f64::from(rate), f64::from(time_base));
    if frames > 0 && r.is_finite() && r > 0.0 && t.is_finite() && t > 0.0 {
        frames as f64 / r / t
    } else {
        0.0
    }
}

/// Initialises FFmpeg once per process and silences its log (problems come
/// back as errors, and a corrupt file would otherwise print hundreds of lines
/// from many threads at once).
pub fn init_ffmpeg() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // `init` registers nothing on FFmpeg >= 4 and cannot fail there.
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
    });
}

/// Decodes `path`, handing each `resolution x resolution x 3` RGB24 frame to
/// `sink` until it returns false or the video ends.
pub fn decode_video(
    path: &Path,
    options: &DecodeOptions,
    sink: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<DecodeSummary, VideoError> {
    init_ffmpeg();
    // Declared first so that it outlives the decoder and its threads.
    let damage = DamageCounter::default();
    let scope = DamageScope::enter(&damage);
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => return Err(VideoError::Empty),
        Ok(_) => {}
        Err(e) => return Err(VideoError::Unreadable(e)),
    }
    let mut input = ffmpeg::format::input(path).map_err(VideoError::Open)?;
    let (stream_index, time_base, declared, declared_span, source_fps, parameters) = {
        let stream = input
            .streams()
            .best(media::Type::Video)
            .ok_or(VideoError::NoVideoStream)?;
        let rate = stream.avg_frame_rate();
        (
            stream.index(),
            stream.time_base(),
            stream.frames(),
            // The time the header's frame count covers, in time-base units
            // (FFmpeg's own duration is estimated from the file size, so it
            // shrinks with a cut file). 0 when the rate is unknown.
            declared_span(stream.frames(), stream.rate(), stream.time_base()),
            (rate.numerator() > 0 && rate.denominator() > 0).then(|| f64::from(rate)),
            stream.parameters(),
        )
    };
    let mut context =
        ffmpeg::codec::context::Context::from_parameters(parameters).map_err(VideoError::Codec)?;
    context.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: options.threads.max(1),
        ..Default::default()
    });
    // SAFETY: the context is ours and dropped before `damage`.
    scope.attach(unsafe { context.as_mut_ptr() });
    let decoder = context.decoder().video().map_err(VideoError::Codec)?;
    let mut state = DecodeState {
        options,
        damage: &damage,
        decoder,
        time_base,
        source_fps,
        fps: options.fps.map(FrameRateFilter::new),
        scaler: None,
        decoded_frame: Frame::empty(),
        opaque: Frame::empty(),
        rgb: Frame::empty(),
        out: vec![0; (options.resolution as usize).pow(2) * 3],
        first_time: None,
        decoded: 0,
        delivered: 0,
        stopped: false,
    };
    let mut packet = Packet::empty();
    // First and last time the stream's packets cover, in time-base units.
    let mut covered: Option<(i64, i64)> = None;
    loop {
        match packet.read(&mut input) {
            Ok(()) => {
                if packet.stream() != stream_index {
                    continue;
                }
                if let Some(t) = packet.pts().or(packet.dts()) {
                    let end = t.saturating_add(packet.duration().max(0));
                    covered = Some(covered.map_or((t, end), |(a, b)| (a.min(t), b.max(end))));
                }
                state
                    .decoder
                    .send_packet(&packet)
                    .map_err(|error| VideoError::Decode {
                        frames: state.decoded,
                        error,
                    })?;
                state.drain(sink)?;
                if state.stopped {
                    break;
                }
            }
            Err(ffmpeg::Error::Eof) => break,
            Err(error) => {
                return Err(VideoError::Read {
                    frames: state.decoded,
                    error,
                });
            }
        }
    }
    if !state.stopped {
        state
            .decoder
            .send_eof()
            .map_err(|error| VideoError::Decode {
                frames: state.decoded,
                error,
            })?;
        state.drain(sink)?;
    }
    if state.decoded == 0 {
        return Err(VideoError::NoFrames);
    }
    // Fewer frames than declared is a cut file only when the packets also
    // stop short of the declared duration: containers may declare a frame
    // per slot and store repeats as empty chunks that carry no packet
    // (Cinepak AVIs), and then the timestamps still reach the end.
    let covers_declared_span = match covered {
        Some((first, last)) if declared_span > 0.0 => (last - first) as f64 >= 0.9 * declared_span,
        _ => false,
    };
    if !state.stopped
        && declared > 0
        && (state.decoded as i64) * 10 < declared * 9
        && !covers_declared_span
    {
        return Err(VideoError::Truncated {
            decoded: state.decoded,
            declared,
        });
    }
    Ok(DecodeSummary {
        decoded: state.decoded,
        delivered: state.delivered,
        stopped_early: state.stopped,
        width: state.decoder.width(),
        height: state.decoder.height(),
        codec: state
            .decoder
            .codec()
            .map(|c| c.name().to_owned())
            .unwrap_or_default(),
        source_fps,
        damage: damage.reports(),
        first_damage: damage.first(),
    })
}

struct DecodeState<'a> {
    options: &'a DecodeOptions,
    damage: &'a DamageCounter,
    decoder: ffmpeg::decoder::Video,
    time_base: Rational,
    source_fps: Option<f64>,
    fps: Option<FrameRateFilter>,
    /// The converter and the input it was made for (a stream may change size).
    scaler: Option<(scaling::Context, (Pixel, u32, u32), CropGeometry)>,
    decoded_frame: Frame,
    /// The decoded frame composited on black, for formats with alpha.
    opaque: Frame,
    rgb: Frame,
    out: Vec<u8>,
    first_time: Option<i64>,
    decoded: usize,
    delivered: usize,
    stopped: bool,
}

impl DecodeState<'_> {
    /// Receives every frame the decoder has ready.
    fn drain(&mut self, sink: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), VideoError> {
        while !self.stopped {
            match self.decoder.receive_frame(&mut self.decoded_frame) {
                Ok(()) => {
                    self.decoded += 1;
                    // SAFETY: the frame the decoder just filled.
                    self.damage.check_frame(unsafe { self.decoded_frame.as_ptr() });
                    if self.wanted() {
                        self.convert()?;
                        self.delivered += 1;
                        if !sink(&self.out) {
                            self.stopped = true;
                        }
                    }
                }
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    break;
                }
                Err(error) => {
                    return Err(VideoError::Decode {
                        frames: self.decoded,
                        error,
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether the fps filter keeps the frame just decoded.
    fn wanted(&mut self) -> bool {
        let Some(filter) = self.fps.as_mut() else {
            return true;
        };
        let seconds = match self.decoded_frame.timestamp() {
            Some(ts) => {
                let first = *self.first_time.get_or_insert(ts);
                (ts - first) as f64 * f64::from(self.time_base)
            }
            // No timestamps: the frame's index at the stream's nominal rate.
            None => (self.decoded - 1) as f64 / self.source_fps.unwrap_or(25.0),
        };
        filter.keep(seconds)
    }

    /// Resizes and converts the decoded frame, then crops it into `out`.
    fn convert(&mut self) -> Result<(), VideoError> {
        let frame = &self.decoded_frame;
        let key = (frame.format(), frame.width(), frame.height());
        if self.scaler.as_ref().is_none_or(|(_, k, _)| *k != key) {
            let geometry = CropGeometry::new(key.1, key.2, self.options.resolution);
            // A 65535x1 GIF screen would scale to millions of pixels per row.
            if geometry.scaled_width > MAX_SCALED_SIDE || geometry.scaled_height > MAX_SCALED_SIDE {
                return Err(VideoError::Extreme {
                    width: key.1,
                    height: key.2,
                    scaled_width: geometry.scaled_width,
                    scaled_height: geometry.scaled_height,
                });
            }
            let scaler = scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::RGB24,
                geometry.scaled_width,
                geometry.scaled_height,
                sws_flags(self.options.filter),
            )
            .map_err(|error| self.scale_error(key, error))?;
            self.scaler = Some((scaler, key, geometry));
            self.rgb = Frame::empty();
        }
        let (scaler, _, geometry) = self.scaler.as_mut().expect("scaler made above");
        // Transparent pixels (GIF, PNG) are composited on black: RGB24 has
        // no alpha, and the colour under a transparent pixel is whatever the
        // decoder left there (FFmpeg's GIF decoder: the placeholder white).
        let source = match alpha_byte(key.0) {
            Some(alpha) => {
                composite_on_black(&self.decoded_frame, &mut self.opaque, alpha);
                &self.opaque
            }
            None => &self.decoded_frame,
        };
        if let Err(error) = scaler.run(source, &mut self.rgb) {
            return Err(VideoError::Scale {
                width: key.1,
                height: key.2,
                format: key.0,
                error,
            });
        }
        let r = geometry.resolution as usize;
        let stride = self.rgb.stride(0);
        let data = self.rgb.data(0);
        let (x0, y0) = (geometry.crop_x as usize * 3, geometry.crop_y as usize);
        for (y, row) in self.out.chunks_exact_mut(r * 3).enumerate() {
            let at = (y0 + y) * stride + x0;
            // swscale gave a smaller frame than asked for: an error, not a panic.
            let Some(pixels) = data.get(at..at + r * 3) else {
                return Err(self.scale_error(key, ffmpeg::Error::InvalidData));
            };
            row.copy_from_slice(pixels);
        }
        Ok(())
    }

    fn scale_error(&self, key: (Pixel, u32, u32), error: ffmpeg::Error) -> VideoError {
        VideoError::Scale {
            width: key.1,
            height: key.2,
            format: key.0,
            error,
        }
    }
}

/// Where the alpha byte sits in a pixel of a packed 8-bit RGB format with
/// alpha; `None` for formats without it.
fn alpha_byte(format: Pixel) -> Option<usize> {
    match format {
        Pixel::BGRA | Pixel::RGBA => Some(3),
        Pixel::ARGB | Pixel::ABGR => Some(0),
        _ => None,
    }
}

/// `dst` = `src` with each colour byte multiplied by its pixel's alpha/255
/// (rounded) and alpha made opaque: the frame over a black background.
/// `src` is the decoder's frame, which it may still reference, so the
/// result goes to a frame of our own.
fn composite_on_black(src: &Frame, dst: &mut Frame, alpha: usize) {
    let (format, width, height) = (src.format(), src.width(), src.height());
    if dst.format() != format || dst.width() != width || dst.height() != height {
        *dst = Frame::new(format, width, height);
    }
    let row_bytes = width as usize * 4;
    let (src_stride, dst_stride) = (src.stride(0), dst.stride(0));
    let src_data = src.data(0);
    let dst_data = dst.data_mut(0);
    for y in 0..height as usize {
        let from = &src_data[y * src_stride..y * src_stride + row_bytes];
        let to = &mut dst_data[y * dst_stride..y * dst_stride + row_bytes];
        for (pixel, out) in from.chunks_exact(4).zip(to.chunks_exact_mut(4)) {
            let a = pixel[alpha] as u32;
            for (i, (&c, o)) in pixel.iter().zip(out.iter_mut()).enumerate() {
                *o = if i == alpha { 255 } else { ((c as u32 * a + 127) / 255) as u8 };
            }
        }
    }
}

/// The swscale flags of a resize filter, plus `ACCURATE_RND` and
/// `FULL_CHR_H_INT`: with them our frames are bit-identical to
/// `ffmpeg -vf scale=W:H:flags=bilinear,crop=... -pix_fmt rgb24` on the
/// test files (tests/video_decoding.rs), and chroma is interpolated at full
/// horizontal resolution rather than replicated.
fn sws_flags(filter: ResizeFilter) -> scaling::Flags {
    let base = match filter {
        ResizeFilter::Bilinear => scaling::Flags::BILINEAR,
        ResizeFilter::Bicubic => scaling::Flags::BICUBIC,
        ResizeFilter::Area => scaling::Flags::AREA,
    };
    base | scaling::Flags::ACCURATE_RND | scaling::Flags::FULL_CHR_H_INT
}
