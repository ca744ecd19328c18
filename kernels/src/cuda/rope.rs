//! RoPE fused with the q/k/v bias and the split into head-major tensors, each token turned by
//! its position within its document. CPU twin: `cpu::rope` (token-major, after a separate
//! bias add).

use super::{Arg, Gpu, GpuResult, launch, per_row};

/// Shapes of one attention call: `batch` rows of `t` tokens (a row may pack several
/// documents).
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub batch: usize,
    pub t: usize,
    pub hq: usize,
    pub hkv: usize,
    pub hd: usize,
}

impl Heads {
    pub fn tokens(&self) -> usize {
        self.batch * self.t
    }
    /// Columns of the packed projection `[q | k | v]`.
    pub fn qkv_width(&self) -> usize {
        (self.hq + 2 * self.hkv) * self.hd
    }
}

/// bf16 `qkv: [n, qkv_width]` (+ bf16 `bias: [qkv_width]`, 0 = none) → bf16 head-major
/// `q: [B, hq, T, hd]`, `k, v: [B, hkv, T, hd]`, q and k rotated by i32 `positions: [B·T]`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    heads: &Heads,
    qkv: u64,
    bias: u64,
    positions: u64,
    q: u64,
    k: u64,
    v: u64,
    theta: f32,
) -> GpuResult<()> {
    launch(
        gpu,
        "qkv_rope_forward",
        per_row(heads.tokens(), 128),
        &[
            Arg::Ptr(qkv),
            Arg::Ptr(bias),
            Arg::Ptr(positions),
            Arg::Ptr(q),
            Arg::Ptr(k),
            Arg::Ptr(v),
            Arg::I32(heads.t as i32),
            Arg::I32(heads.hq as i32),
            Arg::I32(heads.hkv as i32),
            Arg::I32(heads.hd as i32),
            Arg::F32(theta),
        ],
    )
}

/// Head-major bf16 `dq, dk, dv` → token-major bf16 `dqkv: [n, qkv_width]`, rotated back by
/// the forward's i32 `positions: [B·T]`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    heads: &Heads,
    dq: u64,
    dk: u64,
    dv: u64,
    positions: u64,
    dqkv: u64,
    theta: f32,
) -> GpuResult<()> {
    launch(
        gpu,
        "qkv_rope_backward",
        per_row(heads.tokens(), 128),
        &[
            Arg::Ptr(dq),
            Arg::Ptr(dk),
            Arg::Ptr(dv),
            Arg::Ptr(positions),
            Arg::Ptr(dqkv),
            Arg::I32(heads.t as i32),
            Arg::I32(heads.hq as i32),
            Arg::I32(heads.hkv as i32),
            Arg::I32(heads.hd as i32),
            Arg::F32(theta),
        ],
    )
}
