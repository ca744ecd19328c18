//! The attention input of a layer on the GPU, shared by training (`model`) and decoding
//! (`decode`): q, k and v of the normalised residual stream in one GEMM, then bias, RoPE and
//! the head split in one kernel. CPU twin: the q/k/v projections and `rope::forward` of
//! `model::pass`.

use steel_kernels::cuda::gemm::{Operand, linear_forward};
use steel_kernels::cuda::rope::{self, Heads};
use steel_kernels::cuda::{Dtype, Gpu, GpuResult, Tensor};

/// Where a layer's q/k/v weights are (device addresses of their bf16 copies): q's, with k's
/// and v's right after it in the layout, and likewise the biases (0 for none).
pub struct QkvWeights {
    pub weight: u64,
    pub bias: u64,
}

/// q `[rows, hq, t, hd]`, k and v `[rows, hkv, t, hd]` (bf16, head-major within each row of
/// `heads.t` tokens) of `normed` `[n, d]` (bf16, `n = heads.batch · heads.t`), each token
/// turned by its position in `positions` (i32 `[n]`).
pub fn project(
    gpu: &Gpu,
    heads: &Heads,
    normed: u64,
    weights: &QkvWeights,
    positions: u64,
    d: usize,
    theta: f32,
) -> GpuResult<(Tensor, Tensor, Tensor)> {
    let n = heads.batch * heads.t;
    let (q_width, kv_width) = (heads.hq * heads.hd, heads.hkv * heads.hd);
    // One GEMM over the adjacent q, k and v weights: `[n, q_width + 2 · kv_width]`.
    let qkv = Tensor::zeros(gpu, Dtype::Bf16, n * heads.qkv_width())?;
    linear_forward(
        gpu,
        normed,
        weights.weight,
        Operand::bf16(qkv.addr()),
        n,
        d,
        heads.qkv_width(),
        0.0,
    )?;
    let q = Tensor::zeros(gpu, Dtype::Bf16, n * q_width)?;
    let k = Tensor::zeros(gpu, Dtype::Bf16, n * kv_width)?;
    let v = Tensor::zeros(gpu, Dtype::Bf16, n * kv_width)?;
    rope::forward(
        gpu,
        heads,
        qkv.addr(),
        weights.bias,
        positions,
        q.addr(),
        k.addr(),
        v.addr(),
        theta,
    )?;
    Ok((q, k, v))
}
