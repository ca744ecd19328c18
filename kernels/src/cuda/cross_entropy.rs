//! The LM head fused with the cross-entropy loss, over vocabulary chunks: per chunk of
//! `CHUNK` rows of the head weight, a GEMM makes fp32 logits `[n, chunk]`; the forward folds
//! them into a running log-sum-exp, the backward recomputes them into dlogits and runs the
//! two gradient GEMMs. Memory: one `[n, CHUNK]` fp32 buffer, never `[n, vocab]`. Each row
//! carries a loss weight; the loss is the weighted sum of the rows' cross-entropies over `norm`.
//! CPU twin: `cpu::linear` + `cpu::cross_entropy`.

use super::gemm::{Operand, linear_backward_input, linear_backward_weight, linear_forward};
use super::reduce::sum;
use super::tensor::{Dtype, Tensor};
use super::{Arg, Gpu, GpuResult, launch, per_row};

/// Vocabulary rows per chunk.
pub const CHUNK: usize = 8192;

/// `(c0, c)`: the vocabulary chunks `[c0, c0 + c)`.
fn chunks(vocab: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..vocab)
        .step_by(CHUNK)
        .map(move |c0| (c0, CHUNK.min(vocab - c0)))
}

/// fp32 `logits[n, c] = x · w[c0 .. c0 + c]ᵀ` (bf16 `x: [n, d]`, `w: [vocab, d]`); returns
/// the chunk's weight address.
fn chunk_logits(
    gpu: &Gpu,
    x: u64,
    w: u64,
    (c0, c): (usize, usize),
    logits: &Tensor,
    n: usize,
    d: usize,
) -> GpuResult<u64> {
    let w_chunk = w + (c0 * d * 2) as u64;
    linear_forward(gpu, x, w_chunk, Operand::f32(logits.addr()), n, d, c, 0.0)?;
    Ok(w_chunk)
}

/// What the backward needs, and each row's weighted loss.
pub struct Saved {
    /// fp32 `[n]`: each row's log-sum-exp.
    pub lse: Tensor,
    /// fp32 `[n]`: each row's `w · (lse − logit[target])` (0 where `w` is 0), the terms the
    /// loss sums.
    pub terms: Tensor,
}

/// `Σ_i w_i · (lse(x·wᵀ)_i − (x·wᵀ)_i[target_i]) / norm` into the fp32 device scalar `loss`:
/// bf16 `x: [n, d]`, bf16 `w: [vocab, d]`, i32 `targets: [n]`, fp32 `weights: [n]`.
/// CPU twin: `cpu::cross_entropy::forward` (its `row_terms` times the weights: `Saved::terms`).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    x: u64,
    w: u64,
    targets: u64,
    weights: u64,
    n: usize,
    d: usize,
    vocab: usize,
    norm: f32,
    loss: u64,
) -> GpuResult<Saved> {
    let logits = Tensor::zeros(gpu, Dtype::F32, n * CHUNK.min(vocab))?;
    let run_max = Tensor::zeros(gpu, Dtype::F32, n)?;
    let run_sum = Tensor::zeros(gpu, Dtype::F32, n)?;
    let target_logit = Tensor::zeros(gpu, Dtype::F32, n)?;
    for (c0, c) in chunks(vocab) {
        chunk_logits(gpu, x, w, (c0, c), &logits, n, d)?;
        launch(
            gpu,
            "ce_chunk_stats",
            per_row(n, 256),
            &[
                Arg::Ptr(logits.addr()),
                Arg::I32(c as i32),
                Arg::I32(c0 as i32),
                Arg::Ptr(targets),
                Arg::Ptr(run_max.addr()),
                Arg::Ptr(run_sum.addr()),
                Arg::Ptr(target_logit.addr()),
                Arg::I32((c0 == 0) as i32),
            ],
        )?;
    }
    let lse = Tensor::zeros(gpu, Dtype::F32, n)?;
    let terms = Tensor::zeros(gpu, Dtype::F32, n)?;
    launch(
        gpu,
        "ce_finish",
        super::grid_1d(n, 256),
        &[
            Arg::Ptr(run_max.addr()),
            Arg::Ptr(run_sum.addr()),
            Arg::Ptr(target_logit.addr()),
            Arg::Ptr(weights),
            Arg::Ptr(lse.addr()),
            Arg::Ptr(terms.addr()),
            Arg::I64(n as i64),
        ],
    )?;
    sum(gpu, terms.addr(), n, 1.0 / norm, loss)?;
    Ok(Saved { lse, terms })
}

/// Gradients of `forward`'s loss (the same `targets`, `weights` and `norm`):
/// `dlogits_i = (softmax − onehot(target_i)) · w_i / norm` (exactly 0 where `w_i` is 0),
/// `dx = dlogits · w` into the fp32 `dx: [n, d]` (overwritten), `dw += dlogitsᵀ · x` into
/// the fp32 `dw: [vocab, d]`. CPU twin: `cpu::cross_entropy::backward` + `cpu::linear`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    saved: &Saved,
    x: u64,
    w: u64,
    targets: u64,
    weights: u64,
    n: usize,
    d: usize,
    vocab: usize,
    norm: f32,
    dx: u64,
    dw: u64,
) -> GpuResult<()> {
    let chunk = CHUNK.min(vocab);
    let logits = Tensor::zeros(gpu, Dtype::F32, n * chunk)?;
    let dlogits = Tensor::zeros(gpu, Dtype::Bf16, n * chunk)?;
    for (c0, c) in chunks(vocab) {
        let w_chunk = chunk_logits(gpu, x, w, (c0, c), &logits, n, d)?;
        launch(
            gpu,
            "ce_chunk_backward",
            per_row(n, 256),
            &[
                Arg::Ptr(logits.addr()),
                Arg::I32(c as i32),
                Arg::I32(c0 as i32),
                Arg::Ptr(targets),
                Arg::Ptr(saved.lse.addr()),
                Arg::Ptr(weights),
                Arg::F32(norm),
                Arg::Ptr(dlogits.addr()),
            ],
        )?;
        let beta = if c0 == 0 { 0.0 } else { 1.0 };
        linear_backward_input(
            gpu,
            dlogits.addr(),
            w_chunk,
            Operand::f32(dx),
            n,
            d,
            c,
            beta,
        )?;
        linear_backward_weight(gpu, dlogits.addr(), x, dw + (c0 * d * 4) as u64, n, d, c)?;
    }
    Ok(())
}
