//! Mixture-of-experts glue on the GPU: the gate's softmax, top-k routing, and mixing expert
//! outputs into the fp32 block output, with their backwards. CPU twins: `cpu::softmax`,
//! `cpu::topk`, and the mixing loops of `steel_trainer::model::ffn`.

use super::{Arg, Gpu, GpuResult, grid_1d, launch, per_row, row_threads};

/// fp32 `probs[n, E] = softmax(logits + bias)` (bf16 `bias: [E]`, 0 = none).
pub fn gate_forward(
    gpu: &Gpu,
    logits: u64,
    bias: u64,
    probs: u64,
    n: usize,
    e: usize,
) -> GpuResult<()> {
    launch(
        gpu,
        "gate_softmax_forward",
        grid_1d(n, 128),
        &[
            Arg::Ptr(logits),
            Arg::Ptr(bias),
            Arg::Ptr(probs),
            Arg::I64(n as i64),
            Arg::I32(e as i32),
        ],
    )
}

/// bf16 `dlogits[n, E]` from fp32 `dprobs` and `probs`.
pub fn gate_backward(
    gpu: &Gpu,
    dprobs: u64,
    probs: u64,
    dlogits: u64,
    n: usize,
    e: usize,
) -> GpuResult<()> {
    launch(
        gpu,
        "gate_softmax_backward",
        grid_1d(n, 128),
        &[
            Arg::Ptr(dprobs),
            Arg::Ptr(probs),
            Arg::Ptr(dlogits),
            Arg::I64(n as i64),
            Arg::I32(e as i32),
        ],
    )
}

/// Routing shapes: `n` tokens, `experts`, `k` chosen per token.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub n: usize,
    pub experts: usize,
    pub k: usize,
    pub renormalize: bool,
}

/// i32 `chosen[n, k]`, fp32 `weights[n, k]` and the dense fp32 `mix[n, E]` from `probs`.
pub fn route(
    gpu: &Gpu,
    r: &Route,
    probs: u64,
    chosen: u64,
    weights: u64,
    mix: u64,
) -> GpuResult<()> {
    launch(
        gpu,
        "topk_route",
        grid_1d(r.n, 128),
        &[
            Arg::Ptr(probs),
            Arg::I64(r.n as i64),
            Arg::I32(r.experts as i32),
            Arg::I32(r.k as i32),
            Arg::I32(r.renormalize as i32),
            Arg::Ptr(chosen),
            Arg::Ptr(weights),
            Arg::Ptr(mix),
        ],
    )
}

/// fp32 `dprobs[n, E]` from fp32 `dmix[n, E]` (+ fp32 `extra[n, E]`, 0 = none).
pub fn route_backward(
    gpu: &Gpu,
    r: &Route,
    dmix: u64,
    probs: u64,
    chosen: u64,
    extra: u64,
    dprobs: u64,
) -> GpuResult<()> {
    launch(
        gpu,
        "topk_route_backward",
        grid_1d(r.n, 128),
        &[
            Arg::Ptr(dmix),
            Arg::Ptr(probs),
            Arg::Ptr(chosen),
            Arg::I64(r.n as i64),
            Arg::I32(r.experts as i32),
            Arg::I32(r.k as i32),
            Arg::I32(r.renormalize as i32),
            Arg::Ptr(extra),
            Arg::Ptr(dprobs),
        ],
    )
}

/// fp32 `out[n, d]` (=|+=) `mix[:, e] · y` for expert `e`'s bf16 output `y: [n, d]`.
#[allow(clippy::too_many_arguments)]
pub fn mix_forward(
    gpu: &Gpu,
    out: u64,
    y: u64,
    mix: u64,
    e: usize,
    experts: usize,
    n: usize,
    d: usize,
    overwrite: bool,
) -> GpuResult<()> {
    launch(
        gpu,
        "mix_forward",
        grid_1d(n * d, 256),
        &[
            Arg::Ptr(out),
            Arg::Ptr(y),
            Arg::Ptr(mix),
            Arg::I32(e as i32),
            Arg::I32(experts as i32),
            Arg::I64(n as i64),
            Arg::I32(d as i32),
            Arg::I32(overwrite as i32),
        ],
    )
}

/// fp32 `dmix[:, e] = dout·y` per token and bf16 `dy = mix[:, e]·dout`.
#[allow(clippy::too_many_arguments)]
pub fn mix_backward(
    gpu: &Gpu,
    dout: u64,
    y: u64,
    mix: u64,
    e: usize,
    experts: usize,
    n: usize,
    d: usize,
    dmix: u64,
    dy: u64,
) -> GpuResult<()> {
    launch(
        gpu,
        "mix_backward",
        per_row(n, row_threads(d).min(256)),
        &[
            Arg::Ptr(dout),
            Arg::Ptr(y),
            Arg::Ptr(mix),
            Arg::I32(e as i32),
            Arg::I32(experts as i32),
            Arg::I32(d as i32),
            Arg::Ptr(dmix),
            Arg::Ptr(dy),
        ],
    )
}

/// The shared expert: fp32 `out += σ(gate) · y` (fp32 `gate: [n]`, bf16 `y: [n, d]`).
pub fn sigmoid_gate_forward(
    gpu: &Gpu,
    out: u64,
    y: u64,
    gate: u64,
    n: usize,
    d: usize,
) -> GpuResult<()> {
    launch(
        gpu,
        "sigmoid_gate_forward",
        grid_1d(n * d, 256),
        &[
            Arg::Ptr(out),
            Arg::Ptr(y),
            Arg::Ptr(gate),
            Arg::I64(n as i64),
            Arg::I32(d as i32),
        ],
    )
}

/// bf16 `dgate[n]` (of the gate's logit) and bf16 `dy = σ(gate)·dout`.
#[allow(clippy::too_many_arguments)]
pub fn sigmoid_gate_backward(
    gpu: &Gpu,
    dout: u64,
    y: u64,
    gate: u64,
    n: usize,
    d: usize,
    dgate: u64,
    dy: u64,
) -> GpuResult<()> {
    launch(
        gpu,
        "sigmoid_gate_backward",
        per_row(n, row_threads(d).min(256)),
        &[
            Arg::Ptr(dout),
            Arg::Ptr(y),
            Arg::Ptr(gate),
            Arg::I32(d as i32),
            Arg::Ptr(dgate),
            Arg::Ptr(dy),
        ],
    )
}
