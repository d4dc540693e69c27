"""The Fréchet distance as the reference FID/FVD code computes it (numpy +
scipy.linalg.sqrtm of the covariance product), for tests/frechet_reference.rs.

    python frechet_reference.py a.npy b.npy   # rows are feature vectors; prints d^2
"""

import sys

import numpy as np
import scipy.linalg


def frechet(a, b):
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


if __name__ == "__main__":
    print(repr(frechet(np.load(sys.argv[1]), np.load(sys.argv[2]))))
