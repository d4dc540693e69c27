//! Hand-written CPU kernels for VideoGPT's models, behind one seam.
//!
//! The model crate calls the operations re-exported here and nothing else
//! of this crate. Each one takes and returns burn tensors and picks its own
//! path: for f32 tensors on burn's `flex` backend (the CPU), with or
//! without autodiff, it runs a host kernel of this crate, registered with
//! burn's autodiff as an op with its own backward pass; on every other
//! device (wgpu, and any dtype the kernel does not take) it runs burn's own
//! operations, so the same model code trains and samples everywhere.
//!
//! | operation | CPU kernel | elsewhere |
//! |---|---|---|
//! | [`conv3d`], [`conv_transpose3d`] | im2col tiles x `gemm`, weight gradient by kernel rows ([`conv`]) | `burn::tensor::module::conv3d` / `conv_transpose3d` |
//! | [`axial_attention`] | strided lines, softmax in one pass, recomputing backward ([`attention`]) | permute + batched matmul + softmax |
//! | [`causal_attention`] | blocks of queries, hashed dropout, recomputing backward ([`attention::causal`]) | matmul + mask + softmax + `Dropout` |
//! | [`batch_norm_relu`] | one pass for statistics, one for norm + ReLU ([`norm`]) | `BatchNorm` then `relu` |
//! | [`linear`] | tiled `gemm` with the bias in the tile ([`linear`](mod@linear)) | `Linear::forward` |
//! | [`channels_last`], [`channels_first`] | blocked AVX transposes ([`permute`]) | `permute` |
//! | [`dropout`] | a hashed mask, recomputed backward ([`dropout`](mod@dropout)) | `Dropout::forward` |
//! | [`HostAdam`] | one parallel pass over each parameter ([`adam`]) | `burn::optim::Adam` |
//! | [`cached_attention`], [`Decoder`] | the prior's sampling step on the host ([`decode`]) | cached keys/values as burn tensors |
//!
//! Every product above (not the attention lines) multiplies bf16 operands
//! with f32 sums under `--precision bf16` where the CPU has AMX or
//! AVX-512-BF16 ([`precision`]).
//!
//! Thread-pool and allocator tuning for these kernels live in [`threads`].
//!
//! Why not burn's `#[backend_extension]`: burn 0.22's tensors carry their
//! backend in the runtime `Device`, and the host kernels here are already
//! reached by downcasting a tensor's primitive to `Flex` /
//! `Autodiff<Flex>` (`Tensor::try_into_primitive`) and registering a
//! `Backward` op; an extension trait would add a second dispatch layer for
//! the same two backends. A CubeCL kernel for GPUs would be one more branch
//! inside the operation it speeds up, behind the same function.

pub mod adam;
pub mod attention;
pub mod conv;
pub mod decode;
pub mod dropout;
mod flex;
pub mod host;
pub mod linear;
pub mod norm;
pub mod permute;
pub mod precision;
pub mod ranks;
pub mod threads;

pub use adam::HostAdam;
pub use attention::{axial_attention, causal_attention};
pub use conv::{conv_transpose3d, conv3d};
pub use dropout::dropout;
pub use decode::{Decoder, DecoderBlock, DecoderState, FoldedNorm, KvCache, KvPrecision, PackedLinear, cached_attention};
pub use linear::linear;
pub use norm::batch_norm_relu;
pub use permute::{channels_first, channels_last};
pub use ranks::{first_sample, set_cross_rank_sum, set_first_sample};
pub use precision::{CPU_PATH_VARIABLE, CpuPath, Precision, cpu_path, precision, set_precision};
pub use threads::{make_calling_thread_a_worker, make_calling_thread_a_worker_of, tune_allocator, with_workers_awake};
