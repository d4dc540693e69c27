//! The Fréchet distance against the reference computation (numpy + scipy's
//! `sqrtm`, model/scripts/frechet_reference.py in the project venv) on random
//! Gaussian features.

mod common;

use std::path::{Path, PathBuf};

use videogpt_model::fvd::{Gaussian, frechet_distance};

/// A seeded stream of standard normals (SplitMix64 + Box-Muller).
struct Normals(u64);

impl Normals {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// `n` rows of `mean + L z` with a random lower-triangular `L`.
fn features(seed: u64, n: usize, dim: usize, shift: f64) -> Vec<f64> {
    let mut rng = Normals(seed);
    let l: Vec<f64> = (0..dim * dim)
        .map(|k| {
            if k % dim <= k / dim {
                rng.next() * 0.5
            } else {
                0.0
            }
        })
        .collect();
    let mean: Vec<f64> = (0..dim).map(|_| rng.next() + shift).collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let z: Vec<f64> = (0..dim).map(|_| rng.next()).collect();
        for i in 0..dim {
            out.push(mean[i] + (0..=i).map(|j| l[i * dim + j] * z[j]).sum::<f64>());
        }
    }
    out
}

fn reference(a: &[f64], b: &[f64], dim: usize) -> f64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python: PathBuf = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run ./setup.sh --no-demo",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    common::npy::write_f64(&pa, a, &[a.len() / dim, dim]);
    common::npy::write_f64(&pb, b, &[b.len() / dim, dim]);
    let out = std::process::Command::new(python)
        .arg(root.join("model/scripts/frechet_reference.py"))
        .args([&pa, &pb])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn frechet_distance_matches_numpy_and_scipy() {
    for (dim, n1, n2, shift) in [
        (16, 400, 300, 0.3),
        (64, 500, 700, 0.0),
        (128, 600, 600, 1.0),
    ] {
        let a = features(dim as u64, n1, dim, 0.0);
        let b = features(dim as u64 + 1000, n2, dim, shift);
        let ours = frechet_distance(
            &Gaussian::fit(&a, dim).unwrap(),
            &Gaussian::fit(&b, dim).unwrap(),
        );
        let theirs = reference(&a, &b, dim);
        let rel = (ours - theirs).abs() / theirs.abs();
        eprintln!("dim {dim}: ours {ours}, numpy/scipy {theirs}, relative {rel:e}");
        assert!(
            rel < 1e-6,
            "dim {dim}: ours {ours}, numpy/scipy {theirs}, relative {rel:e}"
        );
    }
}

#[test]
fn a_set_against_itself_is_zero_and_more_noise_is_farther() {
    let dim = 32;
    let a = features(5, 300, dim, 0.0);
    let fit = |x: &[f64]| Gaussian::fit(x, dim).unwrap();
    // Zero up to the rounding of square roots of eigenvalues near zero.
    let g = fit(&a);
    let trace: f64 = (0..dim).map(|i| g.covariance[i * dim + i]).sum();
    let own = frechet_distance(&g, &g);
    assert!(
        own.abs() < 1e-7 * trace,
        "a set against itself: {own} (trace {trace})"
    );
    let mut noise = Normals(77);
    let eps: Vec<f64> = a.iter().map(|_| noise.next()).collect();
    let mut last = 0.0;
    for scale in [0.1, 0.3, 1.0, 3.0] {
        let noisy: Vec<f64> = a.iter().zip(&eps).map(|(x, e)| x + scale * e).collect();
        let d = frechet_distance(&fit(&a), &fit(&noisy));
        assert!(d > last, "noise {scale}: {d} not above {last}");
        last = d;
    }
}
