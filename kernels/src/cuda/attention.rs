//! Causal GQA attention on head-major bf16 `q: [B, hq, T, hd]`, `k, v: [B, hkv, T, hd]`,
//! writing the token-major output `out: [B·T, hq·hd]` (bf16) the output projection reads.
//! A row may pack several documents: i32 `doc_start: [B·T]` holds where each token's document
//! starts in its row, and token `i` attends to keys `doc_start[i] ..= i`. The kernels need
//! what every `Batch` gives: `doc_start[i] <= i`, never decreasing along a row.
//! CPU twin: `cpu::attention` (one row, token-major).
//!
//! Two methods:
//! - `cublas_*`: S = Q·Kᵀ/√hd by strided-batched GEMMs into fp32 `[B·hq, T, T]`, the fused
//!   causal softmax, O = P·V; keeps P (bf16) for the backward.
//! - `flash_*`: the tiled online-softmax kernels; keeps only `lse: [B·hq·T]`.

use super::gemm::{Batch, Gemm, Operand, gemm};
use super::rope::Heads;
use super::swiglu::cast_f32_to_bf16;
use super::tensor::{Dtype, Tensor};
use super::{Arg, FLASH_HEAD_DIMS, Gpu, GpuError, GpuResult, LaunchConfig, launch, per_row};

fn scale(h: &Heads) -> f32 {
    1.0 / (h.hd as f32).sqrt()
}

/// S (fp32, `[B·hq, T, T]`) = Q·Kᵀ·scale, one batched GEMM per query head within a group.
fn scores(gpu: &Gpu, h: &Heads, q: u64, k: u64, s: &Tensor) -> GpuResult<()> {
    let rep = h.hq / h.hkv;
    let (t, hd) = (h.t, h.hd);
    for r in 0..rep {
        gemm(
            gpu,
            &Gemm {
                m: t,
                n: t,
                k: hd,
                a: Operand::bf16(q + (r * t * hd * 2) as u64),
                a_t: false,
                b: Operand::bf16(k),
                b_t: true,
                c: Operand::f32(s.at(r * t * t)),
                alpha: scale(h),
                beta: 0.0,
                batch: Batch::strided(h.batch * h.hkv, rep * t * hd, t * hd, rep * t * t),
            },
        )?;
    }
    Ok(())
}

/// The byte address of head `h` of sequence `b`, row 0, in the token-major `[B·T, hq·hd]`.
fn token_major(base: u64, hd_all: &Heads, b: usize, head: usize) -> u64 {
    base + (((b * hd_all.t * hd_all.hq + head) * hd_all.hd) * 2) as u64
}

/// Forward with cuBLAS: `s` fp32 scratch and `probs` bf16 (0 outside each token's keys),
/// both `[B·hq, T, T]`.
#[allow(clippy::too_many_arguments)]
pub fn cublas_forward(
    gpu: &Gpu,
    h: &Heads,
    q: u64,
    k: u64,
    v: u64,
    doc_start: u64,
    out: u64,
    s: &Tensor,
    probs: &Tensor,
) -> GpuResult<()> {
    let (t, hd, rep) = (h.t, h.hd, h.hq / h.hkv);
    scores(gpu, h, q, k, s)?;
    launch(
        gpu,
        "causal_softmax_forward",
        per_row(h.batch * h.hq * t, 256),
        &[
            Arg::Ptr(s.addr()),
            Arg::Ptr(doc_start),
            Arg::Ptr(probs.addr()),
            Arg::I32(t as i32),
            Arg::I32(h.hq as i32),
        ],
    )?;
    for b in 0..h.batch {
        for r in 0..rep {
            gemm(
                gpu,
                &Gemm {
                    m: t,
                    n: hd,
                    k: t,
                    a: Operand::bf16(probs.at((b * h.hq + r) * t * t)),
                    a_t: false,
                    b: Operand::bf16(v + ((b * h.hkv * t * hd) * 2) as u64),
                    b_t: false,
                    c: Operand::bf16(token_major(out, h, b, r)).with_ld(h.hq * hd),
                    alpha: 1.0,
                    beta: 0.0,
                    batch: Batch::strided(h.hkv, rep * t * t, t * hd, rep * hd),
                },
            )?;
        }
    }
    Ok(())
}

/// Backward with cuBLAS. `probs` (from the forward) is overwritten by dS; `s` is fp32
/// scratch `[B·hq, T, T]`. Writes head-major bf16 `dq, dk, dv`. Needs no `doc_start`: the
/// forward's probabilities are 0 outside each token's keys, and so are dS and every
/// gradient that flows through them.
#[allow(clippy::too_many_arguments)]
pub fn cublas_backward(
    gpu: &Gpu,
    h: &Heads,
    q: u64,
    k: u64,
    v: u64,
    probs: &Tensor,
    dout: u64,
    dq: u64,
    dk: u64,
    dv: u64,
    s: &Tensor,
) -> GpuResult<()> {
    let (t, hd, rep) = (h.t, h.hd, h.hq / h.hkv);
    let kv_len = h.batch * h.hkv * t * hd;
    let dk32 = Tensor::zeros(gpu, Dtype::F32, kv_len)?;
    let dv32 = Tensor::zeros(gpu, Dtype::F32, kv_len)?;
    // Batched over the key/value heads of one sequence (one query head of each group).
    let batch = |a, b, c| Batch::strided(h.hkv, a, b, c);
    for b in 0..h.batch {
        let kv_at = b * h.hkv * t * hd;
        for r in 0..rep {
            let p_at = (b * h.hq + r) * t * t;
            let dout_r = Operand::bf16(token_major(dout, h, b, r)).with_ld(h.hq * hd);
            // dP = dO·Vᵀ (fp32, into the scores scratch).
            gemm(
                gpu,
                &Gemm {
                    m: t,
                    n: t,
                    k: hd,
                    a: dout_r,
                    a_t: false,
                    b: Operand::bf16(v + (kv_at * 2) as u64),
                    b_t: true,
                    c: Operand::f32(s.at(p_at)),
                    alpha: 1.0,
                    beta: 0.0,
                    batch: batch(rep * hd, t * hd, rep * t * t),
                },
            )?;
            // dV += Pᵀ·dO, summed over the group's query heads.
            gemm(
                gpu,
                &Gemm {
                    m: t,
                    n: hd,
                    k: t,
                    a: Operand::bf16(probs.at(p_at)),
                    a_t: true,
                    b: dout_r,
                    b_t: false,
                    c: Operand::f32(dv32.at(kv_at)),
                    alpha: 1.0,
                    beta: if r == 0 { 0.0 } else { 1.0 },
                    batch: batch(rep * t * t, rep * hd, t * hd),
                },
            )?;
        }
    }
    // dS = P ⊙ (dP − Σ P·dP), in place of P.
    launch(
        gpu,
        "causal_softmax_backward",
        per_row(h.batch * h.hq * t, 256),
        &[
            Arg::Ptr(s.addr()),
            Arg::Ptr(probs.addr()),
            Arg::Ptr(probs.addr()),
            Arg::I32(t as i32),
        ],
    )?;
    // Batched over every (sequence, key/value head).
    let all = |a, b, c| Batch::strided(h.batch * h.hkv, a, b, c);
    for r in 0..rep {
        // dQ = dS·K·scale.
        gemm(
            gpu,
            &Gemm {
                m: t,
                n: hd,
                k: t,
                a: Operand::bf16(probs.at(r * t * t)),
                a_t: false,
                b: Operand::bf16(k),
                b_t: false,
                c: Operand::bf16(dq + (r * t * hd * 2) as u64),
                alpha: scale(h),
                beta: 0.0,
                batch: all(rep * t * t, t * hd, rep * t * hd),
            },
        )?;
        // dK += dSᵀ·Q·scale.
        gemm(
            gpu,
            &Gemm {
                m: t,
                n: hd,
                k: t,
                a: Operand::bf16(probs.at(r * t * t)),
                a_t: true,
                b: Operand::bf16(q + (r * t * hd * 2) as u64),
                b_t: false,
                c: Operand::f32(dk32.addr()),
                alpha: scale(h),
                beta: if r == 0 { 0.0 } else { 1.0 },
                batch: all(rep * t * t, rep * t * hd, t * hd),
            },
        )?;
    }
    cast_f32_to_bf16(gpu, dk32.addr(), dk, kv_len)?;
    cast_f32_to_bf16(gpu, dv32.addr(), dv, kv_len)
}

const ROWS: usize = 64;

fn flash_grid(h: &Heads, heads: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (h.t.div_ceil(ROWS) as u32, (h.batch * heads) as u32, 1),
        block_dim: (ROWS as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Whether the flash kernels cover this head size.
pub fn flash_supported(hd: usize) -> bool {
    FLASH_HEAD_DIMS.contains(&hd)
}

fn flash_name(kernel: &str, hd: usize) -> GpuResult<String> {
    if !flash_supported(hd) {
        return Err(GpuError(format!(
            "flash attention has kernels for head sizes {FLASH_HEAD_DIMS:?}, not {hd}; use the \
             cuBLAS attention"
        )));
    }
    Ok(format!("{kernel}_{hd}"))
}

fn head_args(h: &Heads) -> [Arg; 4] {
    [
        Arg::I32(h.t as i32),
        Arg::I32(h.hq as i32),
        Arg::I32(h.hkv as i32),
        Arg::F32(scale(h)),
    ]
}

/// Flash forward: writes `out` and fp32 `lse: [B·hq·T]`.
#[allow(clippy::too_many_arguments)]
pub fn flash_forward(
    gpu: &Gpu,
    h: &Heads,
    q: u64,
    k: u64,
    v: u64,
    doc_start: u64,
    out: u64,
    lse: u64,
) -> GpuResult<()> {
    let mut args = vec![
        Arg::Ptr(q),
        Arg::Ptr(k),
        Arg::Ptr(v),
        Arg::Ptr(doc_start),
        Arg::Ptr(out),
        Arg::Ptr(lse),
    ];
    args.extend(head_args(h));
    launch(
        gpu,
        &flash_name("flash_forward", h.hd)?,
        flash_grid(h, h.hq),
        &args,
    )
}

/// Flash backward from the forward's `out` and `lse` (and its `doc_start`); writes head-major
/// bf16 `dq, dk, dv`.
#[allow(clippy::too_many_arguments)]
pub fn flash_backward(
    gpu: &Gpu,
    h: &Heads,
    q: u64,
    k: u64,
    v: u64,
    doc_start: u64,
    out: u64,
    lse: u64,
    dout: u64,
    dq: u64,
    dk: u64,
    dv: u64,
) -> GpuResult<()> {
    let rows = h.batch * h.hq * h.t;
    let delta = Tensor::zeros(gpu, Dtype::F32, rows)?;
    launch(
        gpu,
        "flash_backward_delta",
        super::grid_1d(rows, 256),
        &[
            Arg::Ptr(dout),
            Arg::Ptr(out),
            Arg::Ptr(delta.addr()),
            Arg::I64(rows as i64),
            Arg::I32(h.t as i32),
            Arg::I32(h.hq as i32),
            Arg::I32(h.hd as i32),
        ],
    )?;
    // Both kernels take (q, k, v, doc_start, dout, lse, delta, outputs..., T, hq, hkv, scale).
    let inputs = [q, k, v, doc_start, dout, lse, delta.addr()].map(Arg::Ptr);
    let with = |outputs: &[u64]| -> Vec<Arg> {
        let mut args = inputs.to_vec();
        args.extend(outputs.iter().map(|&o| Arg::Ptr(o)));
        args.extend(head_args(h));
        args
    };
    let dq_kernel = flash_name("flash_backward_dq", h.hd)?;
    launch(gpu, &dq_kernel, flash_grid(h, h.hq), &with(&[dq]))?;
    let dkv_kernel = flash_name("flash_backward_dkv", h.hd)?;
    launch(gpu, &dkv_kernel, flash_grid(h, h.hkv), &with(&[dk, dv]))
}
