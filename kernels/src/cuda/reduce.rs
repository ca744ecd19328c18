//! Deterministic reductions: column sums (bias and norm-weight gradients), the global
//! gradient norm, and the mean of per-row losses. Each is a fixed-shape tree, so the same
//! inputs give the same bits on every run.

use super::tensor::{Dtype, Tensor};
use super::{Arg, Gpu, GpuResult, LaunchConfig, launch};

/// Rows summed by one block of a column-sum pass.
pub const ROWS_PER_CHUNK: usize = 256;
/// Blocks of the norm's first pass.
const NORM_BLOCKS: usize = 1024;

/// Launch shape of a column pass: (ceil(cols/256), chunks) blocks of 256 threads.
pub(crate) fn column_grid(cols: usize, chunks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (cols.div_ceil(256) as u32, chunks as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

pub(crate) fn chunks(rows: usize) -> usize {
    rows.div_ceil(ROWS_PER_CHUNK).max(1)
}

/// `out[j] += Σ_c partial[c, j]` (fp32 `out: [cols]`).
pub fn add_partials(
    gpu: &Gpu,
    partial: &Tensor,
    chunks: usize,
    cols: usize,
    out: u64,
) -> GpuResult<()> {
    launch(
        gpu,
        "add_column_partials",
        column_grid(cols, 1),
        &[
            Arg::Ptr(partial.addr()),
            Arg::I32(chunks as i32),
            Arg::I32(cols as i32),
            Arg::Ptr(out),
        ],
    )
}

/// `out[j] += Σ_r m[r, j]` for bf16 `m: [rows, cols]`, fp32 `out`.
pub fn add_column_sums(gpu: &Gpu, m: u64, rows: usize, cols: usize, out: u64) -> GpuResult<()> {
    let chunks = chunks(rows);
    let partial = Tensor::zeros(gpu, Dtype::F32, chunks * cols)?;
    launch(
        gpu,
        "column_sum_bf16_partial",
        column_grid(cols, chunks),
        &[
            Arg::Ptr(m),
            Arg::I64(rows as i64),
            Arg::I32(cols as i32),
            Arg::I32(ROWS_PER_CHUNK as i32),
            Arg::Ptr(partial.addr()),
        ],
    )?;
    add_partials(gpu, &partial, chunks, cols, out)
}

/// `out[0] = ‖x‖₂ · scale` for fp32 `x: [n]` (f64 partial sums), `out` an fp32 device scalar.
pub fn norm(gpu: &Gpu, x: u64, n: usize, scale: f32, out: u64) -> GpuResult<()> {
    let partial = Tensor::zeros(gpu, Dtype::F32, 2 * NORM_BLOCKS)?; // f64 = 2 × f32
    launch(
        gpu,
        "sum_squares_partial",
        LaunchConfig {
            grid_dim: (NORM_BLOCKS as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        },
        &[Arg::Ptr(x), Arg::I64(n as i64), Arg::Ptr(partial.addr())],
    )?;
    launch(
        gpu,
        "finish_norm",
        LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        },
        &[
            Arg::Ptr(partial.addr()),
            Arg::I32(NORM_BLOCKS as i32),
            Arg::F32(scale),
            Arg::Ptr(out),
        ],
    )
}

/// `out[0] = Σ x · scale` for fp32 `x: [n]`.
pub fn sum(gpu: &Gpu, x: u64, n: usize, scale: f32, out: u64) -> GpuResult<()> {
    launch(
        gpu,
        "sum_scaled",
        LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        },
        &[
            Arg::Ptr(x),
            Arg::I64(n as i64),
            Arg::F32(scale),
            Arg::Ptr(out),
        ],
    )
}
