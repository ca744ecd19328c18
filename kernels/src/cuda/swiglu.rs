//! SwiGLU gating on the packed projection `gu: [rows, 2w]` (bf16): `h = silu(g) ⊙ u`.
//! CPU twin: `cpu::swiglu` (on separate `g`, `u`).

use super::{Arg, Gpu, GpuResult, grid_1d, launch};

/// `h: [rows, w]` from `gu: [rows, 2w]`.
pub fn forward(gpu: &Gpu, gu: u64, h: u64, rows: usize, w: usize) -> GpuResult<()> {
    launch(
        gpu,
        "swiglu_forward",
        grid_1d(rows * w, 256),
        &[
            Arg::Ptr(gu),
            Arg::Ptr(h),
            Arg::I64(rows as i64),
            Arg::I32(w as i32),
        ],
    )
}

/// `dgu: [rows, 2w]` from `dh: [rows, w]` and the forward's `gu`.
pub fn backward(gpu: &Gpu, dh: u64, gu: u64, dgu: u64, rows: usize, w: usize) -> GpuResult<()> {
    launch(
        gpu,
        "swiglu_backward",
        grid_1d(rows * w, 256),
        &[
            Arg::Ptr(dh),
            Arg::Ptr(gu),
            Arg::Ptr(dgu),
            Arg::I64(rows as i64),
            Arg::I32(w as i32),
        ],
    )
}

/// Elementwise casts between the fp32 and bf16 copies of a buffer of `n` elements.
pub fn cast_f32_to_bf16(gpu: &Gpu, from: u64, to: u64, n: usize) -> GpuResult<()> {
    launch(
        gpu,
        "cast_f32_bf16",
        grid_1d(n, 256),
        &[Arg::Ptr(from), Arg::Ptr(to), Arg::I64(n as i64)],
    )
}

pub fn cast_bf16_to_f32(gpu: &Gpu, from: u64, to: u64, n: usize) -> GpuResult<()> {
    launch(
        gpu,
        "cast_bf16_f32",
        grid_1d(n, 256),
        &[Arg::Ptr(from), Arg::Ptr(to), Arg::I64(n as i64)],
    )
}
