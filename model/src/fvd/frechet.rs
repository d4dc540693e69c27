//! The Fréchet distance between two Gaussians fitted to feature sets, the
//! number behind FID and FVD:
//!
//! `d² = |μ₁ − μ₂|² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁ Σ₂)^½)`
//!
//! The reference implementations take `scipy.linalg.sqrtm(Σ₁ Σ₂)` of a
//! non-symmetric product, which can return complex values and NaNs when the
//! covariances are singular (fewer clips than feature dimensions, as with 256
//! clips of 400 logits). Here the trace comes from a symmetric matrix with the
//! same eigenvalues: with `A = Σ₁^½` (symmetric), `Σ₁ Σ₂` is similar to
//! `A Σ₂ A`, which is symmetric positive semi-definite, so
//! `tr((Σ₁ Σ₂)^½) = Σᵢ √λᵢ(A Σ₂ A)`, with eigenvalues from a cyclic Jacobi
//! iteration in f64 and tiny negative eigenvalues (rounding) clamped to 0.

/// Mean and covariance (unbiased, `ddof = 1`, as `numpy.cov`) of `n` feature
/// rows of `dim` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    pub dim: usize,
    pub mean: Vec<f64>,
    /// `dim x dim`, row-major.
    pub covariance: Vec<f64>,
}

impl Gaussian {
    /// Fits rows of `features` (`n * dim` values, `n >= 2`).
    pub fn fit(features: &[f64], dim: usize) -> Result<Self, String> {
        if dim == 0 || features.len() % dim != 0 {
            return Err(format!(
                "{} feature values do not form rows of {dim}",
                features.len()
            ));
        }
        let n = features.len() / dim;
        if n < 2 {
            return Err(format!(
                "a covariance needs at least 2 feature rows, got {n}"
            ));
        }
        let mut mean = vec![0.0; dim];
        for row in features.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut covariance = vec![0.0; dim * dim];
        let mut centered = vec![0.0; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &x), &m) in centered.iter_mut().zip(row).zip(&mean) {
                *c = x - m;
            }
            for i in 0..dim {
                let ci = centered[i];
                let out = &mut covariance[i * dim..i * dim + i + 1];
                for (o, &cj) in out.iter_mut().zip(&centered[..=i]) {
                    *o += ci * cj;
                }
            }
        }
        for i in 0..dim {
            for j in 0..=i {
                let v = covariance[i * dim + j] / (n - 1) as f64;
                covariance[i * dim + j] = v;
                covariance[j * dim + i] = v;
            }
        }
        Ok(Self {
            dim,
            mean,
            covariance,
        })
    }
}

/// The Fréchet distance (squared, as FID and FVD report it) of two Gaussians.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    assert_eq!(a.dim, b.dim, "feature dimensions differ");
    let n = a.dim;
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
    // A = Σ₁^½ from Σ₁'s eigenvectors.
    let (values, vectors) = symmetric_eigen(&a.covariance, n);
    let roots: Vec<f64> = values.iter().map(|&v| v.max(0.0).sqrt()).collect();
    let sqrt_a = reconstruct(&vectors, &roots, n);
    let product = matmul(&matmul(&sqrt_a, &b.covariance, n), &sqrt_a, n);
    let (eigen, _) = symmetric_eigen(&symmetrize(product, n), n);
    let trace_sqrt: f64 = eigen.iter().map(|&v| v.max(0.0).sqrt()).sum();
    mean_term + trace(&a.covariance) + trace(&b.covariance) - 2.0 * trace_sqrt
}

/// `V diag(d) Vᵀ` for column eigenvectors `V` (row-major `n x n`).
fn reconstruct(vectors: &[f64], diagonal: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v: f64 = (0..n)
                .map(|k| vectors[i * n + k] * diagonal[k] * vectors[j * n + k])
                .sum();
            out[i * n + j] = v;
            out[j * n + i] = v;
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            let row = &b[k * n..(k + 1) * n];
            for (o, &bkj) in out[i * n..(i + 1) * n].iter_mut().zip(row) {
                *o += aik * bkj;
            }
        }
    }
    out
}

fn symmetrize(mut m: Vec<f64>, n: usize) -> Vec<f64> {
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (m[i * n + j] + m[j * n + i]);
            m[i * n + j] = v;
            m[j * n + i] = v;
        }
    }
    m
}

/// Eigenvalues and eigenvectors (the columns of the returned row-major
/// matrix) of a symmetric `n x n` matrix, by cyclic Jacobi rotations until
/// the off-diagonal mass is below 1e-30 of the total (or 100 sweeps).
pub fn symmetric_eigen(matrix: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(matrix.len(), n * n);
    let mut a = matrix.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off <= 1e-30 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Columns p and q, then rows p and q: A <- Jᵀ A J.
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises_a_known_matrix() {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3.
        let (mut w, v) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        let back = reconstruct(&v, &w, 2);
        for (x, y) in back.iter().zip([2.0, 1.0, 1.0, 2.0]) {
            assert!((x - y).abs() < 1e-12);
        }
        w.sort_by(f64::total_cmp);
        assert!((w[0] - 1.0).abs() < 1e-12 && (w[1] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn closed_forms_for_diagonal_gaussians() {
        // Diagonal covariances: d² = |Δμ|² + Σ (√σ₁ − √σ₂)².
        let a = Gaussian {
            dim: 2,
            mean: vec![0.0, 1.0],
            covariance: vec![4.0, 0.0, 0.0, 1.0],
        };
        let b = Gaussian {
            dim: 2,
            mean: vec![3.0, 1.0],
            covariance: vec![1.0, 0.0, 0.0, 9.0],
        };
        let expected = 9.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2);
        assert!((frechet_distance(&a, &b) - expected).abs() < 1e-10);
        assert!(frechet_distance(&a, &a).abs() < 1e-10);
    }

    #[test]
    fn fit_matches_the_unbiased_covariance() {
        let g = Gaussian::fit(&[1.0, 2.0, 3.0, 6.0, 5.0, 10.0], 2).unwrap();
        assert_eq!(g.mean, vec![3.0, 6.0]);
        assert_eq!(g.covariance, vec![4.0, 8.0, 8.0, 16.0]);
        assert!(
            Gaussian::fit(&[1.0, 2.0], 2)
                .unwrap_err()
                .contains("at least 2")
        );
        assert!(
            Gaussian::fit(&[1.0, 2.0, 3.0], 2)
                .unwrap_err()
                .contains("rows of 2")
        );
    }
}
