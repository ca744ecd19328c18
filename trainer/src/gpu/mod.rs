//! The model on one GPU (the `cuda` feature): the same forward and backward as
//! `model::pass` (its specification), run by the kernels of `steel_kernels::cuda` in mixed
//! precision — fp32 master weights, gradients and AdamW state; bf16 weights and activations
//! for compute; fp32 residual stream, accumulation and reductions.

pub mod decode;
pub mod ffn;
pub mod model;
pub mod qkv;

pub use model::GpuModel;
