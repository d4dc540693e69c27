//! Building blocks the host kernels share: buffers the cores fill
//! together, matrix products read by strides, layout transposes.

pub(crate) mod bf16;
pub mod buffers;
pub mod product;
pub mod transpose;
