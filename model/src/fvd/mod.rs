//! Fréchet Video Distance. So far: [`frechet`], the distance between two
//! Gaussians fitted to feature sets, checked against numpy/scipy
//! (tests/frechet_reference.rs). The I3D feature network and `just fvd`
//! follow (issue 7).

pub mod frechet;

pub use frechet::{Gaussian, frechet_distance, symmetric_eigen};
