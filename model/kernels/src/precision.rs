//! Which arithmetic the CPU kernels' matrix products use, and which
//! instructions this CPU offers for it.
//!
//! [`Precision::Bf16`] is mixed precision in the usual sense: the operands
//! of the products (linears, convolutions and their gradients) are rounded
//! to bfloat16 and multiplied with f32 accumulation; weights, optimiser
//! state, norms, softmax, the codebook and the loss stay f32. bf16 keeps
//! f32's exponent range, so no loss scaling is needed.
//!
//! The setting is one per process ([`set_precision`]): the binaries set it
//! from `--precision` before the first step. The products pick their path
//! at run time ([`CpuPath`]): AMX tiles, else AVX-512-BF16 dot products,
//! else f32 (a CPU without bf16 instructions computes what `f32` computes).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// The arithmetic of the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands and sums.
    #[default]
    F32,
    /// bf16 operands, f32 sums.
    Bf16,
}

impl Precision {
    /// What a run gets without `--precision`: bf16 where this CPU multiplies
    /// bf16 on AMX tiles, f32 elsewhere.
    pub fn default_for_this_cpu() -> Self {
        match cpu_path() {
            CpuPath::Amx => Self::Bf16,
            CpuPath::Avx512Bf16 | CpuPath::F32 => Self::F32,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

/// An unknown precision name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown precision '{0}' (expected f32 or bf16)")]
pub struct UnknownPrecision(String);

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            _ => Err(UnknownPrecision(s.to_owned())),
        }
    }
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the products' arithmetic for the whole process.
pub fn set_precision(precision: Precision) {
    PRECISION.store(precision as u8, Ordering::Relaxed);
}

/// The products' arithmetic (f32 until [`set_precision`] says otherwise).
pub fn precision() -> Precision {
    match PRECISION.load(Ordering::Relaxed) {
        0 => Precision::F32,
        _ => Precision::Bf16,
    }
}

/// The instructions bf16 products run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuPath {
    /// f32 products only (no bf16 instructions, or forced).
    F32,
    /// `vdpbf16ps` on AVX-512 registers.
    Avx512Bf16,
    /// `tdpbf16ps` on AMX tiles (the Linux tile-data permission granted).
    Amx,
}

impl CpuPath {
    /// The name `VIDEOGPT_CPU_PATH` takes and the logs print.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Avx512Bf16 => "avx512-bf16",
            Self::Amx => "amx-bf16",
        }
    }
}

impl fmt::Display for CpuPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The environment variable that caps the path (`f32`, `avx512-bf16` or
/// `amx-bf16`): a machine without AMX or AVX-512-BF16 is what
/// `VIDEOGPT_CPU_PATH=f32` gives.
pub const CPU_PATH_VARIABLE: &str = "VIDEOGPT_CPU_PATH";

/// The best path this CPU and OS offer, capped by `VIDEOGPT_CPU_PATH`;
/// decided once per process.
pub fn cpu_path() -> CpuPath {
    static PATH: OnceLock<CpuPath> = OnceLock::new();
    *PATH.get_or_init(|| {
        let cap = std::env::var(CPU_PATH_VARIABLE).ok().map(|value| {
            [CpuPath::F32, CpuPath::Avx512Bf16, CpuPath::Amx]
                .into_iter()
                .find(|path| path.name() == value.trim())
                .unwrap_or_else(|| {
                    tracing::warn!(
                        "{CPU_PATH_VARIABLE}={value} is not one of f32, avx512-bf16, amx-bf16: ignored"
                    );
                    CpuPath::Amx
                })
        });
        detected_path().min(cap.unwrap_or(CpuPath::Amx))
    })
}

/// The path the products of the current precision run on.
pub(crate) fn bf16_path() -> Option<CpuPath> {
    match (precision(), cpu_path()) {
        (Precision::Bf16, path @ (CpuPath::Amx | CpuPath::Avx512Bf16)) => Some(path),
        _ => None,
    }
}

#[cfg(target_arch = "x86_64")]
fn detected_path() -> CpuPath {
    use std::arch::x86_64::__cpuid_count;
    if !std::is_x86_feature_detected!("avx512bf16") || !std::is_x86_feature_detected!("avx512bw") {
        return CpuPath::F32;
    }
    // CPUID.(EAX=7, ECX=0):EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
    // Leaf 7 exists on every CPU with AVX-512.
    let edx = __cpuid_count(7, 0).edx;
    let amx = edx >> 22 & 1 == 1 && edx >> 24 & 1 == 1;
    if amx && request_tile_data() {
        CpuPath::Amx
    } else {
        CpuPath::Avx512Bf16
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detected_path() -> CpuPath {
    CpuPath::F32
}

/// Asks Linux for the AMX tile-data state (`ARCH_REQ_XCOMP_PERM`,
/// `XFEATURE_XTILEDATA`): without it the first tile instruction faults.
/// The permission holds for the whole process.
#[cfg(target_arch = "x86_64")]
fn request_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these arguments only changes the process's
    // permitted extended states; it fails (non-zero) where unsupported.
    let status = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    status == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for precision in [Precision::F32, Precision::Bf16] {
            assert_eq!(
                precision.to_string().parse::<Precision>().unwrap(),
                precision
            );
        }
        let error = "f16".parse::<Precision>().unwrap_err().to_string();
        assert!(
            error.contains("'f16'") && error.contains("f32 or bf16"),
            "{error}"
        );
    }
}
