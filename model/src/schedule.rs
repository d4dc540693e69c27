//! Learning-rate schedules shared by the VQ-VAE and prior trainers: an
//! optional linear warm-up, then constant or cosine decay to zero at the
//! last step.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The reference VQ-VAE's: the base rate throughout.
    #[default]
    Constant,
    /// `base * (1 + cos(pi * step / steps)) / 2` (the reference prior's).
    Cosine,
}

impl std::str::FromStr for LrSchedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "constant" => Ok(Self::Constant),
            "cosine" => Ok(Self::Cosine),
            other => Err(format!("unknown schedule `{other}`; expected constant or cosine")),
        }
    }
}

/// The rate for 0-based `step` of `steps`.
pub fn learning_rate(base: f64, schedule: LrSchedule, warmup: u64, step: u64, steps: u64) -> f64 {
    let warm = if warmup > 0 && step < warmup {
        (step + 1) as f64 / warmup as f64
    } else {
        1.0
    };
    let decay = match schedule {
        LrSchedule::Constant => 1.0,
        LrSchedule::Cosine => {
            let progress = (step as f64 / steps.max(1) as f64).min(1.0);
            0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    };
    base * warm * decay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_zero() {
        let lr = |s| learning_rate(1.0, LrSchedule::Cosine, 10, s, 100);
        assert!((lr(0) - 0.1).abs() < 1e-3);
        assert!((lr(9) - 1.0 * 0.5 * (1.0 + (std::f64::consts::PI * 0.09).cos())).abs() < 1e-12);
        assert!((lr(50) - 0.5).abs() < 1e-12);
        assert!(lr(100).abs() < 1e-12);
        assert_eq!(learning_rate(3e-4, LrSchedule::Constant, 0, 77, 100), 3e-4);
    }
}
