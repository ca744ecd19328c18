//! Generation's attention: `n` new queries of one sequence over the keys and values in its
//! cache, and the copy of new keys and values into the cache. A cache layer holds bf16
//! `[capacity, hkv, hd]` keys and as many values, position-major (the host cache's layout).
//! CPU twin: the trainer's `infer::attention::forward`, itself rows `start..start + n` of
//! `cpu::attention::forward` (the kernel tests compare with the latter).

use super::{Arg, Gpu, GpuError, GpuResult, LaunchConfig, launch, per_row, row_threads};

/// Head counts and width.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Query heads.
    pub hq: usize,
    /// Key/value heads (`hq` is a multiple of it).
    pub hkv: usize,
    /// Head dimension.
    pub hd: usize,
}

/// Where one sequence's new queries are (bf16): query `i`'s head `h` starts at element
/// `i·token_stride + h·head_stride` from `addr`.
#[derive(Clone, Copy, Debug)]
pub struct Queries {
    pub addr: u64,
    /// Queries (at positions `start..start + n`).
    pub n: usize,
    pub token_stride: usize,
    pub head_stride: usize,
}

/// The largest head dimension: a thread per output dimension, 1024 threads a block at most.
const MAX_HEAD_DIM: usize = 1024;

/// Attention of `q` (positions `start..start + q.n`) over the cached bf16 keys `k` and values
/// `v` of positions `0..start + q.n` (the new tokens' rows already appended), causal, with
/// grouped-query heads; writes token-major bf16 `out: [q.n, hq·hd]`.
pub fn attention(
    gpu: &Gpu,
    shape: &Shape,
    q: &Queries,
    k: u64,
    v: u64,
    start: usize,
    out: u64,
) -> GpuResult<()> {
    let Shape { hq, hkv, hd } = *shape;
    if hkv == 0 || !hq.is_multiple_of(hkv) || hd == 0 || hd > MAX_HEAD_DIM {
        return Err(GpuError(format!(
            "decode attention needs query heads a multiple of key/value heads and a head size of \
             1 to {MAX_HEAD_DIM}; got {hq}/{hkv} heads of {hd}"
        )));
    }
    if q.n == 0 {
        return Ok(());
    }
    // A tile of keys per pass, one per thread: at least 128, and a thread per dimension.
    let threads = row_threads(hd).max(128);
    let cfg = LaunchConfig {
        grid_dim: (q.n as u32, hq as u32, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: ((hd + threads as usize) * 4) as u32,
    };
    launch(
        gpu,
        "decode_attention",
        cfg,
        &[
            Arg::Ptr(q.addr),
            Arg::I64(q.token_stride as i64),
            Arg::I64(q.head_stride as i64),
            Arg::Ptr(k),
            Arg::Ptr(v),
            Arg::Ptr(out),
            Arg::I32(start as i32),
            Arg::I32(hq as i32),
            Arg::I32(hkv as i32),
            Arg::I32(hd as i32),
            Arg::F32(1.0 / (hd as f32).sqrt()),
        ],
    )
}

/// Copy `n` positions of bf16 keys (or values) into a cache layer `cache: [capacity, hkv, hd]`
/// at positions `start..start + n`: position `i`'s head `g` is read from element
/// `i·token_stride + g·head_stride` of `src` (the RoPE kernel's head-major `[hkv, n_all, hd]`:
/// strides `hd` and `n_all·hd`; another cache layer: `hkv·hd` and `hd`).
#[allow(clippy::too_many_arguments)]
pub fn append(
    gpu: &Gpu,
    shape: &Shape,
    src: u64,
    token_stride: usize,
    head_stride: usize,
    n: usize,
    cache: u64,
    start: usize,
) -> GpuResult<()> {
    if n == 0 {
        return Ok(());
    }
    let width = shape.hkv * shape.hd;
    launch(
        gpu,
        "kv_append",
        per_row(n, row_threads(width).min(256)),
        &[
            Arg::Ptr(src),
            Arg::I64(token_stride as i64),
            Arg::I64(head_stride as i64),
            Arg::Ptr(cache),
            Arg::I32(start as i32),
            Arg::I32(shape.hkv as i32),
            Arg::I32(shape.hd as i32),
        ],
    )
}
