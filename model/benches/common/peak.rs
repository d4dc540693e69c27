//! This CPU's peak arithmetic rates, measured: f32 AVX-512 FMAs and AMX
//! bf16 tile products on operands that never leave the registers, one
//! thread per core, so "fraction of peak" has a denominator measured on
//! the same machine in the same minutes.

use std::arch::asm;
use std::time::Instant;

/// GFLOP/s of all cores together, and of one.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Peak {
    pub cores: usize,
    /// `None` without AVX-512F.
    pub f32_fma_gflops: Option<f64>,
    pub f32_fma_gflops_per_core: Option<f64>,
    /// `None` where the CPU (or `VIDEOGPT_CPU_PATH`) offers no AMX.
    pub amx_bf16_gflops: Option<f64>,
    pub amx_bf16_gflops_per_core: Option<f64>,
}

const ROUNDS: u64 = 200_000;

/// Runs `work` on `cores` threads at once; the FLOPs of all of them over
/// the slowest thread's seconds.
fn rate(cores: usize, flops_per_thread: f64, work: fn()) -> f64 {
    let seconds = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(move || {
                    work(); // warm-up: clocks and, for AMX, the tile state
                    let started = Instant::now();
                    work();
                    started.elapsed().as_secs_f64()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold(0.0, f64::max)
    });
    cores as f64 * flops_per_thread / seconds / 1e9
}

/// 12 independent accumulators of 16 lanes: two FMA ports stay busy.
fn fma_loop() {
    // SAFETY: register-only arithmetic on zmm registers declared clobbered;
    // only called where the CPU has AVX-512F.
    unsafe {
        asm!(
            "vxorps zmm0, zmm0, zmm0",
            "2:",
            "vfmadd231ps zmm0, zmm12, zmm13",
            "vfmadd231ps zmm1, zmm12, zmm13",
            "vfmadd231ps zmm2, zmm12, zmm13",
            "vfmadd231ps zmm3, zmm12, zmm13",
            "vfmadd231ps zmm4, zmm12, zmm13",
            "vfmadd231ps zmm5, zmm12, zmm13",
            "vfmadd231ps zmm6, zmm12, zmm13",
            "vfmadd231ps zmm7, zmm12, zmm13",
            "vfmadd231ps zmm8, zmm12, zmm13",
            "vfmadd231ps zmm9, zmm12, zmm13",
            "vfmadd231ps zmm10, zmm12, zmm13",
            "vfmadd231ps zmm11, zmm12, zmm13",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) ROUNDS => _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
            out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _,
            options(nostack, nomem),
        );
    }
}

#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// Four independent 16 x 16 f32 tiles, each += 16 x 32 bf16 x 32 x 16 bf16.
fn amx_loop() {
    let mut config = TileConfig([0; 64]);
    config.0[0] = 1;
    for tile in 0..8 {
        config.0[16 + 2 * tile] = 64;
        config.0[48 + tile] = 16;
    }
    // SAFETY: only called after the tile-data permission was granted
    // (`CpuPath::Amx`); the tiles are configured first and released last.
    unsafe {
        asm!(
            "ldtilecfg [{config}]",
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            "2:",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "dec {n}",
            "jnz 2b",
            "tilerelease",
            config = in(reg) config.0.as_ptr(),
            n = inout(reg) ROUNDS / 4 => _,
            options(nostack, readonly),
        );
    }
}

pub fn measure() -> Peak {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fma_flops = ROUNDS as f64 * 12.0 * 16.0 * 2.0;
    let amx_flops = (ROUNDS / 4) as f64 * 4.0 * (16.0 * 16.0 * 32.0 * 2.0);
    let has_amx = videogpt_model::ops::cpu_path() == videogpt_model::ops::CpuPath::Amx;
    let has_avx512 = std::is_x86_feature_detected!("avx512f");
    let f32_one = has_avx512.then(|| rate(1, fma_flops, fma_loop));
    let f32_all = has_avx512.then(|| rate(cores, fma_flops, fma_loop));
    let amx_one = has_amx.then(|| rate(1, amx_flops, amx_loop));
    let amx_all = has_amx.then(|| rate(cores, amx_flops, amx_loop));
    Peak {
        cores,
        f32_fma_gflops: f32_all,
        f32_fma_gflops_per_core: f32_one,
        amx_bf16_gflops: amx_all,
        amx_bf16_gflops_per_core: amx_one,
    }
}
