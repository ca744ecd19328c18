//! The feed-forward block on the GPU, for every `Ffn` kind. Experts of one block share a
//! uniform layout stride in the flat parameter buffer, so all of them run as strided-batched
//! GEMMs (a dense block is one "expert"; the top-k MoE runs every expert on every token with
//! a zero mixing weight off the chosen ones, as the CPU reference does — routed grouped GEMMs
//! are the MoE issue's work). Gate and up (or `w_g1`/`w_u1`, `w_g2`/`w_u2`) are adjacent in
//! the layout, so one GEMM makes the packed `[.., 2w]` projection SwiGLU reads.

use crate::model::config::{ExpertMlp, Ffn, ModelConfig};
use crate::model::tensors::{FfnTensors, MlpTensors, Slot};
use steel_kernels::cuda::gemm::{
    Batch, Gemm, Operand, gemm, linear_backward_input, linear_backward_weight, linear_forward,
};
use steel_kernels::cuda::reduce::add_column_sums;
use steel_kernels::cuda::swiglu::{self, cast_bf16_to_f32, cast_f32_to_bf16};
use steel_kernels::cuda::{Dtype, Gpu, GpuResult, Tensor, moe};

/// Where a group of experts' weights are: `count` MLPs of `kind` and hidden `width`, the
/// first weight of expert 0 at element `base`, its second projection (`down` or `w_g2`) at
/// `second`, expert `e`'s at `base + e·stride` and `second + e·stride`.
#[derive(Clone, Copy, Debug)]
pub struct Experts {
    pub kind: ExpertMlp,
    pub count: usize,
    pub width: usize,
    pub base: usize,
    pub second: usize,
    pub stride: usize,
}

impl Experts {
    /// The group of `mlps` (hidden width `width`), which the layout puts back to back.
    fn new(mlps: &[MlpTensors], width: usize) -> Experts {
        let (kind, first, second) = match mlps[0] {
            MlpTensors::SwiGlu { gate, down, .. } => (ExpertMlp::SwiGlu, gate, down),
            MlpTensors::DualSwiGlu { g1, g2, .. } => (ExpertMlp::DualSwiGlu, g1, g2),
        };
        let slots = || mlps.iter().flat_map(MlpTensors::slots);
        debug_assert!(
            slots()
                .zip(slots().skip(1))
                .all(|(a, b)| a.offset + a.len == b.offset),
            "a group's weights are back to back"
        );
        Experts {
            kind,
            count: mlps.len(),
            width,
            base: first.offset,
            second: second.offset,
            stride: mlps[0].slots().iter().map(|slot| slot.len).sum(),
        }
    }
}

/// Addresses of the weights (bf16) and gradients (fp32) buffers.
#[derive(Clone, Copy, Debug)]
pub struct Buffers {
    pub params16: u64,
    pub grads: u64,
}

impl Buffers {
    fn w(&self, element: usize) -> u64 {
        self.params16 + (element * 2) as u64
    }
    fn g(&self, element: usize) -> u64 {
        self.grads + (element * 4) as u64
    }
}

/// What an expert group's backward needs.
pub struct ExpertsSaved {
    /// `[E, n, 2w]` packed first projection.
    gu: Tensor,
    /// `[E, n, w]` hidden.
    h: Tensor,
    /// Dual-SwiGLU: `[E, n, 2d]` packed second projection.
    gu2: Option<Tensor>,
    /// `[E, n, d]` expert outputs (bf16).
    pub y: Tensor,
}

/// `[E, rows, cols]` bf16 from `a: [E or 1, rows, k]` times each expert's weight
/// `[cols, k]` (transposed), weights at `w` with stride `w_stride`.
#[allow(clippy::too_many_arguments)]
fn batched_linear(
    gpu: &Gpu,
    a: u64,
    a_stride: usize,
    w: u64,
    w_stride: usize,
    out: &Tensor,
    count: usize,
    rows: usize,
    k: usize,
    cols: usize,
) -> GpuResult<()> {
    gemm(
        gpu,
        &Gemm {
            m: rows,
            n: cols,
            k,
            a: Operand::bf16(a),
            a_t: false,
            b: Operand::bf16(w),
            b_t: true,
            c: Operand::bf16(out.addr()),
            alpha: 1.0,
            beta: 0.0,
            batch: Batch::strided(count, a_stride, w_stride, rows * cols),
        },
    )
}

/// Every expert of the group on bf16 `x: [n, d]`.
pub fn experts_forward(
    gpu: &Gpu,
    buf: Buffers,
    e: &Experts,
    x: u64,
    n: usize,
    d: usize,
) -> GpuResult<ExpertsSaved> {
    let (count, w) = (e.count, e.width);
    let gu = Tensor::zeros(gpu, Dtype::Bf16, count * n * 2 * w)?;
    batched_linear(gpu, x, 0, buf.w(e.base), e.stride, &gu, count, n, d, 2 * w)?;
    let h = Tensor::zeros(gpu, Dtype::Bf16, count * n * w)?;
    swiglu::forward(gpu, gu.addr(), h.addr(), count * n, w)?;
    let second = buf.w(e.second);
    let y = Tensor::zeros(gpu, Dtype::Bf16, count * n * d)?;
    let gu2 = match e.kind {
        ExpertMlp::SwiGlu => {
            batched_linear(gpu, h.addr(), n * w, second, e.stride, &y, count, n, w, d)?;
            None
        }
        ExpertMlp::DualSwiGlu => {
            let gu2 = Tensor::zeros(gpu, Dtype::Bf16, count * n * 2 * d)?;
            batched_linear(
                gpu,
                h.addr(),
                n * w,
                second,
                e.stride,
                &gu2,
                count,
                n,
                w,
                2 * d,
            )?;
            swiglu::forward(gpu, gu2.addr(), y.addr(), count * n, d)?;
            Some(gu2)
        }
    };
    Ok(ExpertsSaved { gu, h, gu2, y })
}

/// `dW += ...` for the group's weights and `dx (+)= Σ_e ∂/∂x` (fp32 `dx: [n, d]`; overwritten
/// when `overwrite`), from bf16 `dy: [E, n, d]`.
#[allow(clippy::too_many_arguments)]
pub fn experts_backward(
    gpu: &Gpu,
    buf: Buffers,
    e: &Experts,
    x: u64,
    saved: &ExpertsSaved,
    dy: u64,
    n: usize,
    d: usize,
    dx: u64,
    overwrite: bool,
) -> GpuResult<()> {
    match &saved.gu2 {
        None => second_and_first(gpu, buf, e, x, saved, dy, d, n, d, dx, overwrite),
        Some(gu2) => {
            let dgu2 = Tensor::zeros(gpu, Dtype::Bf16, e.count * n * 2 * d)?;
            swiglu::backward(gpu, dy, gu2.addr(), dgu2.addr(), e.count * n, d)?;
            second_and_first(
                gpu,
                buf,
                e,
                x,
                saved,
                dgu2.addr(),
                2 * d,
                n,
                d,
                dx,
                overwrite,
            )
        }
    }
}

/// From the gradient `dz: [E, n, z_width]` of the second projection's output: its weight
/// gradient, dh, SwiGLU's backward, the first projection's weight gradient and dx.
#[allow(clippy::too_many_arguments)]
fn second_and_first(
    gpu: &Gpu,
    buf: Buffers,
    e: &Experts,
    x: u64,
    saved: &ExpertsSaved,
    dz: u64,
    z_width: usize,
    n: usize,
    d: usize,
    dx: u64,
    overwrite: bool,
) -> GpuResult<()> {
    let (count, w) = (e.count, e.width);
    // dW2[z_width, w] += dzᵀ · h, per expert.
    gemm(
        gpu,
        &Gemm {
            m: z_width,
            n: w,
            k: n,
            a: Operand::bf16(dz),
            a_t: true,
            b: Operand::bf16(saved.h.addr()),
            b_t: false,
            c: Operand::f32(buf.g(e.second)),
            alpha: 1.0,
            beta: 1.0,
            batch: Batch::strided(count, n * z_width, n * w, e.stride),
        },
    )?;
    // dh[n, w] = dz · W2.
    let dh = Tensor::zeros(gpu, Dtype::Bf16, count * n * w)?;
    gemm(
        gpu,
        &Gemm {
            m: n,
            n: w,
            k: z_width,
            a: Operand::bf16(dz),
            a_t: false,
            b: Operand::bf16(buf.w(e.second)),
            b_t: false,
            c: Operand::bf16(dh.addr()),
            alpha: 1.0,
            beta: 0.0,
            batch: Batch::strided(count, n * z_width, e.stride, n * w),
        },
    )?;
    let dgu = Tensor::zeros(gpu, Dtype::Bf16, count * n * 2 * w)?;
    swiglu::backward(gpu, dh.addr(), saved.gu.addr(), dgu.addr(), count * n, w)?;
    // dW1[2w, d] += dguᵀ · x (x shared by every expert).
    gemm(
        gpu,
        &Gemm {
            m: 2 * w,
            n: d,
            k: n,
            a: Operand::bf16(dgu.addr()),
            a_t: true,
            b: Operand::bf16(x),
            b_t: false,
            c: Operand::f32(buf.g(e.base)),
            alpha: 1.0,
            beta: 1.0,
            batch: Batch::strided(count, n * 2 * w, 0, e.stride),
        },
    )?;
    // dx (+)= Σ_e dgu_e · W1_e, expert by expert in order.
    for i in 0..count {
        let beta = if overwrite && i == 0 { 0.0 } else { 1.0 };
        linear_backward_input(
            gpu,
            dgu.addr() + ((i * n * 2 * w) * 2) as u64,
            buf.w(e.base + i * e.stride),
            Operand::f32(dx),
            n,
            d,
            2 * w,
            beta,
        )?;
    }
    Ok(())
}

/// The experts of a block and, for the top-k MoE, its shared expert with its gate `[1, d]`.
fn groups(config: &ModelConfig, tensors: &FfnTensors) -> (Experts, Option<(Experts, Slot)>) {
    match (&config.ffn, tensors) {
        (&Ffn::Dense { intermediate_size }, FfnTensors::Dense(mlp)) => {
            (Experts::new(&[*mlp], intermediate_size), None)
        }
        (&Ffn::SoftmaxMoe { expert_width, .. }, FfnTensors::SoftmaxMoe { experts, .. }) => {
            (Experts::new(experts, expert_width), None)
        }
        (
            &Ffn::TopkMoe {
                expert_width,
                shared_expert_width,
                ..
            },
            FfnTensors::TopkMoe {
                experts, shared, ..
            },
        ) => (
            Experts::new(experts, expert_width),
            shared
                .zip(shared_expert_width)
                .map(|(shared, width)| (Experts::new(&[shared.mlp], width), shared.gate)),
        ),
        _ => unreachable!("the layout was built from this config"),
    }
}

/// A mixture's router: its weight `[E, d]` and (softmax-MoE) bias `[E]`; `None` for a dense
/// block.
fn router(tensors: &FfnTensors) -> Option<(Slot, Option<Slot>)> {
    match *tensors {
        FfnTensors::Dense(_) => None,
        FfnTensors::SoftmaxMoe {
            gate, gate_bias, ..
        } => Some((gate, Some(gate_bias))),
        FfnTensors::TopkMoe { gate, .. } => Some((gate, None)),
    }
}

/// What the block's backward needs.
pub struct FfnSaved {
    experts: ExpertsSaved,
    /// Mixtures: router probabilities `[n, E]` (fp32).
    pub probs: Option<Tensor>,
    /// Top-k: the mixing weights `[n, E]` (the softmax-MoE mixes with `probs`).
    mix: Option<Tensor>,
    /// Top-k: chosen experts `[n, k]` (i32).
    pub chosen: Option<Tensor>,
    /// Shared expert: its outputs and gate logits `[n]` (fp32).
    shared: Option<(ExpertsSaved, Tensor)>,
}

/// The block with weights `tensors` on bf16 `x: [n, d]`; writes the fp32 output `out: [n, d]`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    config: &ModelConfig,
    tensors: &FfnTensors,
    buf: Buffers,
    x: u64,
    n: usize,
    out: u64,
) -> GpuResult<FfnSaved> {
    let d = config.hidden_size;
    let (experts, shared_group) = groups(config, tensors);
    let saved = experts_forward(gpu, buf, &experts, x, n, d)?;
    let mut result = FfnSaved {
        experts: saved,
        probs: None,
        mix: None,
        chosen: None,
        shared: None,
    };
    let Some((gate, bias)) = router(tensors) else {
        cast_bf16_to_f32(gpu, result.experts.y.addr(), out, n * d)?;
        return Ok(result);
    };
    let count = experts.count;
    let logits = Tensor::zeros(gpu, Dtype::F32, n * count)?;
    linear_forward(
        gpu,
        x,
        buf.w(gate.offset),
        Operand::f32(logits.addr()),
        n,
        d,
        count,
        0.0,
    )?;
    let bias = bias.map_or(0, |bias| buf.w(bias.offset));
    let probs = Tensor::zeros(gpu, Dtype::F32, n * count)?;
    moe::gate_forward(gpu, logits.addr(), bias, probs.addr(), n, count)?;
    // The mixing weights: the routed weights (top-k) or the probabilities themselves.
    if let Ffn::TopkMoe {
        top_k, renormalize, ..
    } = config.ffn
    {
        let route = moe::Route {
            n,
            experts: count,
            k: top_k,
            renormalize,
        };
        let chosen = Tensor::zeros(gpu, Dtype::I32, n * top_k)?;
        let weights = Tensor::zeros(gpu, Dtype::F32, n * top_k)?;
        let mix = Tensor::zeros(gpu, Dtype::F32, n * count)?;
        moe::route(
            gpu,
            &route,
            probs.addr(),
            chosen.addr(),
            weights.addr(),
            mix.addr(),
        )?;
        result.chosen = Some(chosen);
        result.mix = Some(mix);
    }
    let mix = result.mix.as_ref().unwrap_or(&probs).addr();
    for e in 0..count {
        let y = result.experts.y.addr() + ((e * n * d) * 2) as u64;
        moe::mix_forward(gpu, out, y, mix, e, count, n, d, e == 0)?;
    }
    if let Some((group, shared_gate)) = shared_group {
        let saved = experts_forward(gpu, buf, &group, x, n, d)?;
        let gate_logits = Tensor::zeros(gpu, Dtype::F32, n)?;
        let w = buf.w(shared_gate.offset);
        linear_forward(gpu, x, w, Operand::f32(gate_logits.addr()), n, d, 1, 0.0)?;
        moe::sigmoid_gate_forward(gpu, out, saved.y.addr(), gate_logits.addr(), n, d)?;
        result.shared = Some((saved, gate_logits));
    }
    result.probs = Some(probs);
    Ok(result)
}

/// Gradient of the block from fp32 `dout: [n, d]`: parameter gradients added, fp32 `dx:
/// [n, d]` (the gradient of its input `x`) overwritten. `aux` (fp32 `[n, E]`, 0 = none) is
/// the load-balancing loss's gradient for the router probabilities (top-k).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    config: &ModelConfig,
    tensors: &FfnTensors,
    buf: Buffers,
    x: u64,
    n: usize,
    saved: &FfnSaved,
    dout: u64,
    aux: u64,
    dx: u64,
) -> GpuResult<()> {
    let d = config.hidden_size;
    let (experts, shared_group) = groups(config, tensors);
    let count = experts.count;
    let dy = Tensor::zeros(gpu, Dtype::Bf16, count * n * d)?;
    let Some((gate, bias)) = router(tensors) else {
        cast_f32_to_bf16(gpu, dout, dy.addr(), n * d)?;
        return experts_backward(
            gpu,
            buf,
            &experts,
            x,
            &saved.experts,
            dy.addr(),
            n,
            d,
            dx,
            true,
        );
    };
    let probs = saved
        .probs
        .as_ref()
        .expect("a mixture's forward keeps its probabilities");
    let mix = saved.mix.as_ref().unwrap_or(probs).addr();
    let dmix = Tensor::zeros(gpu, Dtype::F32, n * count)?;
    for e in 0..count {
        let at = ((e * n * d) * 2) as u64;
        let y = saved.experts.y.addr() + at;
        moe::mix_backward(
            gpu,
            dout,
            y,
            mix,
            e,
            count,
            n,
            d,
            dmix.addr(),
            dy.addr() + at,
        )?;
    }
    experts_backward(
        gpu,
        buf,
        &experts,
        x,
        &saved.experts,
        dy.addr(),
        n,
        d,
        dx,
        true,
    )?;
    let dprobs = match (&config.ffn, &saved.chosen) {
        (
            Ffn::TopkMoe {
                top_k, renormalize, ..
            },
            Some(chosen),
        ) => {
            let route = moe::Route {
                n,
                experts: count,
                k: *top_k,
                renormalize: *renormalize,
            };
            let dprobs = Tensor::zeros(gpu, Dtype::F32, n * count)?;
            moe::route_backward(
                gpu,
                &route,
                dmix.addr(),
                probs.addr(),
                chosen.addr(),
                aux,
                dprobs.addr(),
            )?;
            dprobs
        }
        _ => dmix,
    };
    let dlogits = Tensor::zeros(gpu, Dtype::Bf16, n * count)?;
    moe::gate_backward(gpu, dprobs.addr(), probs.addr(), dlogits.addr(), n, count)?;
    linear_backward_weight(gpu, dlogits.addr(), x, buf.g(gate.offset), n, d, count)?;
    if let Some(bias) = bias {
        add_column_sums(gpu, dlogits.addr(), n, count, buf.g(bias.offset))?;
    }
    linear_backward_input(
        gpu,
        dlogits.addr(),
        buf.w(gate.offset),
        Operand::f32(dx),
        n,
        d,
        count,
        1.0,
    )?;
    if let (Some((group, shared_gate)), Some((shared, gate_logits))) = (shared_group, &saved.shared)
    {
        let dgate = Tensor::zeros(gpu, Dtype::Bf16, n)?;
        let dys = Tensor::zeros(gpu, Dtype::Bf16, n * d)?;
        moe::sigmoid_gate_backward(
            gpu,
            dout,
            shared.y.addr(),
            gate_logits.addr(),
            n,
            d,
            dgate.addr(),
            dys.addr(),
        )?;
        experts_backward(gpu, buf, &group, x, shared, dys.addr(), n, d, dx, false)?;
        let sg = shared_gate.offset;
        linear_backward_weight(gpu, dgate.addr(), x, buf.g(sg), n, d, 1)?;
        linear_backward_input(gpu, dgate.addr(), buf.w(sg), Operand::f32(dx), n, d, 1, 1.0)?;
    }
    Ok(())
}
