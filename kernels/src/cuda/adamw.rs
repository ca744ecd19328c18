//! AdamW over the flat fp32 parameter buffer in one launch, the global-norm clip folded in,
//! refreshing the bf16 compute copy. CPU twin: `steel_trainer::optim::adamw` (update and
//! `clip_global_norm`).

use super::tensor::Tensor;
use super::{Arg, Gpu, GpuResult, grid_1d, launch};

/// Hyper-parameters of one step.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step number (for the bias corrections).
    pub step: u64,
    /// Multiplies every gradient before the clip (1 / micro-batches, say).
    pub grad_scale: f32,
    pub max_norm: f32,
}

/// The buffers the optimizer touches (all `[len]`).
pub struct State<'a> {
    pub param: &'a Tensor,
    pub m: &'a Tensor,
    pub v: &'a Tensor,
    pub grad: &'a Tensor,
    pub param16: &'a Tensor,
    /// i64 pairs `[start, end)` of elements without weight decay, sorted.
    pub no_decay: &'a Tensor,
    /// The fp32 device scalar holding the (scaled) global gradient norm.
    pub norm: &'a Tensor,
}

pub fn step(gpu: &Gpu, s: &State<'_>, h: &Step) -> GpuResult<()> {
    let n = s.param.len;
    let c1 = 1.0 - h.beta1.powi(h.step as i32);
    let c2 = 1.0 - h.beta2.powi(h.step as i32);
    launch(
        gpu,
        "adamw_step",
        grid_1d(n, 256),
        &[
            Arg::Ptr(s.param.addr()),
            Arg::Ptr(s.m.addr()),
            Arg::Ptr(s.v.addr()),
            Arg::Ptr(s.grad.addr()),
            Arg::Ptr(s.param16.addr()),
            Arg::I64(n as i64),
            Arg::Ptr(s.no_decay.addr()),
            Arg::I32((s.no_decay.len / 2) as i32),
            Arg::F32(h.lr),
            Arg::F32(h.beta1),
            Arg::F32(h.beta2),
            Arg::F32(h.eps),
            Arg::F32(h.weight_decay),
            Arg::F32(c1),
            Arg::F32(c2),
            Arg::F32(h.grad_scale),
            Arg::Ptr(s.norm.addr()),
            Arg::F32(h.max_norm),
        ],
    )
}
