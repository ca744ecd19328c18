//! RMSNorm fused with the residual add (fp32 residual stream, bf16 output and weights).
//! CPU twin: `cpu::rmsnorm` (with the add done separately).

use super::reduce::{ROWS_PER_CHUNK, add_partials, chunks, column_grid};
use super::tensor::{Dtype, Tensor};
use super::{Arg, Gpu, GpuResult, launch, per_row, row_threads};

/// `x_out = x_in + delta` (`delta` 0 = none), `y = rmsnorm(x_out)·w`, `rstd[n]` kept:
/// fp32 `x_in, delta, x_out: [n, d]`, bf16 `w: [d]`, bf16 `y: [n, d]`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    x_in: u64,
    delta: u64,
    x_out: u64,
    w: u64,
    y: u64,
    rstd: u64,
    n: usize,
    d: usize,
    eps: f32,
) -> GpuResult<()> {
    launch(
        gpu,
        "add_rmsnorm_forward",
        per_row(n, row_threads(d).min(256)),
        &[
            Arg::Ptr(x_in),
            Arg::Ptr(delta),
            Arg::Ptr(x_out),
            Arg::Ptr(w),
            Arg::Ptr(y),
            Arg::Ptr(rstd),
            Arg::I32(d as i32),
            Arg::F32(eps),
        ],
    )
}

/// `dx += ∂y/∂x · dy` (fp32 `dx`, the residual gradient) and `dw += Σ dy⊙x·r` (fp32 `dw:
/// [d]`): bf16 `dy`, fp32 `x` (the forward's `x_out`), bf16 `w`, fp32 `rstd`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    dy: u64,
    x: u64,
    w: u64,
    rstd: u64,
    dx: u64,
    dw: u64,
    n: usize,
    d: usize,
) -> GpuResult<()> {
    launch(
        gpu,
        "rmsnorm_backward",
        per_row(n, row_threads(d).min(256)),
        &[
            Arg::Ptr(dy),
            Arg::Ptr(x),
            Arg::Ptr(w),
            Arg::Ptr(rstd),
            Arg::Ptr(dx),
            Arg::I32(d as i32),
        ],
    )?;
    let chunks = chunks(n);
    let partial = Tensor::zeros(gpu, Dtype::F32, chunks * d)?;
    launch(
        gpu,
        "rmsnorm_weight_grad_partial",
        column_grid(d, chunks),
        &[
            Arg::Ptr(dy),
            Arg::Ptr(x),
            Arg::Ptr(rstd),
            Arg::I64(n as i64),
            Arg::I32(d as i32),
            Arg::I32(ROWS_PER_CHUNK as i32),
            Arg::Ptr(partial.addr()),
        ],
    )?;
    add_partials(gpu, &partial, chunks, d, dw)
}
