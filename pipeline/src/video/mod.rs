//! Compressed video files (AVI, MP4, WebM, GIF, whatever the system FFmpeg
//! reads) decoded through ffmpeg-next into square RGB24 frames.
//!
//! - [`geometry`]: the reference preprocessing: the shorter side resized to
//!   the target resolution, then a center crop.
//! - [`frame_rate`]: optional resampling to a lower target fps.
//! - [`decoder`]: the streaming decoder; memory stays at a few frames per
//!   video however long it is.
//! - [`damage`]: what FFmpeg reports about damage it conceals, per video.

pub mod damage;
pub mod decoder;
pub mod frame_rate;
pub mod geometry;

pub use decoder::{DamagePolicy, DecodeOptions, DecodeSummary, VideoError, decode_video};
pub use frame_rate::FrameRateFilter;
pub use geometry::{CropGeometry, ResizeFilter};
