//! The seam between the model and the hand-written kernels: the operations
//! the model files call. Each takes burn tensors and runs a host kernel on
//! the CPU (flex) or burn's own operations on every other device; see the
//! `videogpt-kernels` crate.

pub use videogpt_kernels::{
    CPU_PATH_VARIABLE, CpuPath, Precision, cpu_path, precision, set_precision,
    Decoder, DecoderBlock, DecoderState, FoldedNorm, HostAdam, KvCache as AttentionCache, KvPrecision,
    PackedLinear, axial_attention, causal_attention, batch_norm_relu, cached_attention, channels_first, channels_last,
    conv_transpose3d, conv3d, dropout, linear, set_first_sample, make_calling_thread_a_worker, make_calling_thread_a_worker_of, tune_allocator, with_workers_awake,
};

/// [`linear`] applied to every position of a `[b, n, in]` sequence.
pub fn linear_seq(layer: &burn::nn::Linear, x: burn::tensor::Tensor<3>) -> burn::tensor::Tensor<3> {
    let [b, n, k] = x.dims();
    let y = linear(layer, x.reshape([b * n, k]));
    let out = y.dims()[1];
    y.reshape([b, n, out])
}
