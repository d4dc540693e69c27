//! Resize-then-center-crop geometry, as the reference VideoGPT preprocesses
//! video: scale so that the shorter side equals the target resolution
//! (keeping the aspect ratio, the longer side rounded to the nearest pixel),
//! then cut the centered `resolution x resolution` square. Pixel aspect
//! ratios are ignored, as the reference does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The swscale filter used for the resize. `bilinear` is the default: it is
/// what the reference's `F.interpolate(mode="bilinear")` does, and what
/// `ffmpeg -vf scale=W:H:flags=bilinear` gives, which the tests compare with.
/// `area` averages source pixels (better when shrinking a lot); `bicubic` is
/// FFmpeg's own default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    #[default]
    Bilinear,
    Bicubic,
    Area,
}

impl ResizeFilter {
    /// The name in `ffmpeg -vf scale=...:flags=NAME`.
    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            ResizeFilter::Bilinear => "bilinear",
            ResizeFilter::Bicubic => "bicubic",
            ResizeFilter::Area => "area",
        }
    }
}

impl fmt::Display for ResizeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ffmpeg_name())
    }
}

impl FromStr for ResizeFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bilinear" => Ok(Self::Bilinear),
            "bicubic" => Ok(Self::Bicubic),
            "area" => Ok(Self::Area),
            _ => Err(format!(
                "unknown resize filter `{s}`; expected bilinear, bicubic or area"
            )),
        }
    }
}

/// Where a `width x height` source goes: the scaled size, then the crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropGeometry {
    pub scaled_width: u32,
    pub scaled_height: u32,
    /// Top-left corner of the crop in the scaled frame.
    pub crop_x: u32,
    pub crop_y: u32,
    pub resolution: u32,
}

impl CropGeometry {
    pub fn new(width: u32, height: u32, resolution: u32) -> Self {
        let (short, long) = (width.min(height) as u64, width.max(height) as u64);
        // The longer side, rounded to the nearest pixel (and never below the crop).
        let scaled_long =
            ((long * resolution as u64 * 2 + short) / (2 * short)).max(resolution as u64) as u32;
        let (scaled_width, scaled_height) = if width <= height {
            (resolution, scaled_long)
        } else {
            (scaled_long, resolution)
        };
        Self {
            scaled_width,
            scaled_height,
            crop_x: (scaled_width - resolution) / 2,
            crop_y: (scaled_height - resolution) / 2,
            resolution,
        }
    }

    /// The same resize and crop as an `ffmpeg -vf` filter chain.
    pub fn ffmpeg_filter(&self, filter: ResizeFilter) -> String {
        format!(
            "scale={}:{}:flags={},crop={r}:{r}:{}:{}",
            self.scaled_width,
            self.scaled_height,
            filter.ffmpeg_name(),
            self.crop_x,
            self.crop_y,
            r = self.resolution
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorter_side_becomes_the_resolution_and_the_crop_is_centered() {
        let g = CropGeometry::new(320, 240, 64);
        assert_eq!((g.scaled_width, g.scaled_height), (85, 64));
        assert_eq!((g.crop_x, g.crop_y), (10, 0));
        let g = CropGeometry::new(340, 510, 128);
        assert_eq!((g.scaled_width, g.scaled_height), (128, 192));
        assert_eq!((g.crop_x, g.crop_y), (0, 32));
        let g = CropGeometry::new(64, 64, 64);
        assert_eq!((g.scaled_width, g.scaled_height, g.crop_x), (64, 64, 0));
        assert_eq!(
            CropGeometry::new(320, 240, 64).ffmpeg_filter(ResizeFilter::Bilinear),
            "scale=85:64:flags=bilinear,crop=64:64:10:0"
        );
    }

    #[test]
    fn filter_names_round_trip() {
        for f in [
            ResizeFilter::Bilinear,
            ResizeFilter::Bicubic,
            ResizeFilter::Area,
        ] {
            assert_eq!(f.to_string().parse::<ResizeFilter>().unwrap(), f);
        }
        assert!("lanczos".parse::<ResizeFilter>().is_err());
    }
}
