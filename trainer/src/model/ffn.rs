//! The feed-forward block of a layer, for every `Ffn` kind: forward keeping what the backward
//! needs, and the backward accumulating parameter gradients.
//!
//! The softmax MoE runs every expert on every token, mixed by a per-token weight matrix
//! `mix[t, e]` (the gate's probabilities). The top-k MoE runs each expert on the tokens routed
//! to it only (`ExpertGroups`: the stable grouping by expert that a device grouped GEMM reads),
//! weighted by the routed weights (`mix`, zero off the chosen experts); per token the experts
//! add up in expert order, so it equals mixing every expert on every token by `mix`, at k/E of
//! the work. This is the readable reference of both.

use crate::model::config::{Ffn, ModelConfig};
use crate::model::tensors::{FfnTensors, MlpTensors, SharedExpertTensors, Slot, split_two};
use steel_kernels::cpu::expert_groups::ExpertGroups;
use steel_kernels::cpu::{linear, softmax, swiglu, topk};

/// One MLP's activations for `t` tokens (`w` its hidden width, `d` the model's).
pub enum MlpActivations {
    SwiGlu {
        /// `[t, w]`.
        gate: Vec<f32>,
        /// `[t, w]`.
        up: Vec<f32>,
        /// `silu(gate) ⊙ up`: `[t, w]`.
        hidden: Vec<f32>,
        /// `[t, d]`.
        out: Vec<f32>,
    },
    DualSwiGlu {
        /// `[t, w]`.
        g1: Vec<f32>,
        /// `[t, w]`.
        u1: Vec<f32>,
        /// `silu(g1) ⊙ u1`: `[t, w]`.
        h: Vec<f32>,
        /// `[t, d]`.
        g2: Vec<f32>,
        /// `[t, d]`.
        u2: Vec<f32>,
        /// `silu(g2) ⊙ u2`: `[t, d]`.
        out: Vec<f32>,
    },
}

impl MlpActivations {
    /// The output `[t, d]`.
    pub fn out(&self) -> &[f32] {
        match self {
            MlpActivations::SwiGlu { out, .. } | MlpActivations::DualSwiGlu { out, .. } => out,
        }
    }
}

/// A feed-forward block's activations, per `Ffn` kind (`E` experts, top-`k` routing).
pub enum FfnActivations {
    Dense {
        mlp: MlpActivations,
    },
    SoftmaxMoe {
        /// The gate's probabilities `[t, E]`, which also mix the experts.
        probs: Vec<f32>,
        /// Every expert on every token.
        experts: Vec<MlpActivations>,
        /// `[t, d]`.
        out: Vec<f32>,
    },
    TopkMoe {
        /// The router's probabilities `[t, E]`.
        probs: Vec<f32>,
        /// The routed weights scattered into `[t, E]` (zero off the chosen experts).
        mix: Vec<f32>,
        /// The chosen experts `[t, k]`.
        chosen: Vec<u32>,
        /// Each expert on the tokens routed to it (`ExpertGroups` order).
        experts: Vec<MlpActivations>,
        shared: Option<SharedExpertActivations>,
        /// `[t, d]`.
        out: Vec<f32>,
    },
}

/// The top-k MoE's shared expert on every token.
pub struct SharedExpertActivations {
    pub mlp: MlpActivations,
    /// Its gate's logits `[t]`.
    pub gate: Vec<f32>,
}

impl FfnActivations {
    /// The block's output `[t, d]`.
    pub fn out(&self) -> &[f32] {
        match self {
            FfnActivations::Dense { mlp } => mlp.out(),
            FfnActivations::SoftmaxMoe { out, .. } | FfnActivations::TopkMoe { out, .. } => out,
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn add(into: &mut [f32], from: &[f32]) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

/// The MLP `mlp` of hidden width `width` on `x: [t, d]`.
fn mlp_forward(
    mlp: &MlpTensors,
    width: usize,
    d: usize,
    params: &[f32],
    x: &[f32],
) -> MlpActivations {
    let t = x.len() / d;
    let p = |slot: Slot| &params[slot.range()];
    match *mlp {
        MlpTensors::SwiGlu {
            gate: w_gate,
            up: w_up,
            down: w_down,
        } => {
            let (mut gate, mut up, mut hidden, mut out) = (
                vec![0.0; t * width],
                vec![0.0; t * width],
                vec![0.0; t * width],
                vec![0.0; t * d],
            );
            linear::forward(x, p(w_gate), None, t, d, width, &mut gate);
            linear::forward(x, p(w_up), None, t, d, width, &mut up);
            swiglu::forward(&gate, &up, &mut hidden);
            linear::forward(&hidden, p(w_down), None, t, width, d, &mut out);
            MlpActivations::SwiGlu {
                gate,
                up,
                hidden,
                out,
            }
        }
        MlpTensors::DualSwiGlu {
            g1: w_g1,
            u1: w_u1,
            g2: w_g2,
            u2: w_u2,
        } => {
            let (mut g1, mut u1, mut h) = (
                vec![0.0; t * width],
                vec![0.0; t * width],
                vec![0.0; t * width],
            );
            linear::forward(x, p(w_g1), None, t, d, width, &mut g1);
            linear::forward(x, p(w_u1), None, t, d, width, &mut u1);
            swiglu::forward(&g1, &u1, &mut h);
            let (mut g2, mut u2, mut out) = (vec![0.0; t * d], vec![0.0; t * d], vec![0.0; t * d]);
            linear::forward(&h, p(w_g2), None, t, width, d, &mut g2);
            linear::forward(&h, p(w_u2), None, t, width, d, &mut u2);
            swiglu::forward(&g2, &u2, &mut out);
            MlpActivations::DualSwiGlu {
                g1,
                u1,
                h,
                g2,
                u2,
                out,
            }
        }
    }
}

/// Gradient of an MLP: returns `dx`; weight gradients are added to `grads`.
#[allow(clippy::too_many_arguments)]
fn mlp_backward(
    mlp: &MlpTensors,
    width: usize,
    d: usize,
    params: &[f32],
    x: &[f32],
    acts: &MlpActivations,
    dout: &[f32],
    grads: &mut [f32],
) -> Vec<f32> {
    let t = x.len() / d;
    let p = |slot: Slot| &params[slot.range()];
    let (mut dx, mut scratch) = (vec![0.0; t * d], vec![0.0; t * d]);
    match (*mlp, acts) {
        (
            MlpTensors::SwiGlu {
                gate: w_gate,
                up: w_up,
                down: w_down,
            },
            MlpActivations::SwiGlu {
                gate, up, hidden, ..
            },
        ) => {
            let mut dhidden = vec![0.0; t * width];
            linear::backward(
                dout,
                hidden,
                p(w_down),
                t,
                width,
                d,
                &mut dhidden,
                &mut grads[w_down.range()],
                None,
            );
            let (mut dgate, mut dup) = (vec![0.0; t * width], vec![0.0; t * width]);
            swiglu::backward(&dhidden, gate, up, &mut dgate, &mut dup);
            linear::backward(
                &dgate,
                x,
                p(w_gate),
                t,
                d,
                width,
                &mut dx,
                &mut grads[w_gate.range()],
                None,
            );
            linear::backward(
                &dup,
                x,
                p(w_up),
                t,
                d,
                width,
                &mut scratch,
                &mut grads[w_up.range()],
                None,
            );
        }
        (
            MlpTensors::DualSwiGlu {
                g1: w_g1,
                u1: w_u1,
                g2: w_g2,
                u2: w_u2,
            },
            MlpActivations::DualSwiGlu {
                g1, u1, h, g2, u2, ..
            },
        ) => {
            let (mut dg2, mut du2) = (vec![0.0; t * d], vec![0.0; t * d]);
            swiglu::backward(dout, g2, u2, &mut dg2, &mut du2);
            let (mut dh, mut dh2) = (vec![0.0; t * width], vec![0.0; t * width]);
            linear::backward(
                &dg2,
                h,
                p(w_g2),
                t,
                width,
                d,
                &mut dh,
                &mut grads[w_g2.range()],
                None,
            );
            linear::backward(
                &du2,
                h,
                p(w_u2),
                t,
                width,
                d,
                &mut dh2,
                &mut grads[w_u2.range()],
                None,
            );
            add(&mut dh, &dh2);
            let (mut dg1, mut du1) = (vec![0.0; t * width], vec![0.0; t * width]);
            swiglu::backward(&dh, g1, u1, &mut dg1, &mut du1);
            linear::backward(
                &dg1,
                x,
                p(w_g1),
                t,
                d,
                width,
                &mut dx,
                &mut grads[w_g1.range()],
                None,
            );
            linear::backward(
                &du1,
                x,
                p(w_u1),
                t,
                d,
                width,
                &mut scratch,
                &mut grads[w_u1.range()],
                None,
            );
        }
        _ => unreachable!("activations of another MLP kind"),
    }
    add(&mut dx, &scratch);
    dx
}

/// The router's probabilities `[t, E]`: softmax of `x · gateᵀ (+ bias)`.
fn router_forward(x: &[f32], gate: &[f32], bias: Option<&[f32]>, d: usize, e: usize) -> Vec<f32> {
    let t = x.len() / d;
    let mut logits = vec![0.0; t * e];
    linear::forward(x, gate, bias, t, d, e, &mut logits);
    let mut probs = vec![0.0; t * e];
    softmax::forward(&logits, e, &mut probs);
    probs
}

/// Top-k routing of `probs: [t, E]`: the chosen experts `[t, k]` and their weights scattered
/// into the mixing matrix `[t, E]`.
fn route(probs: &[f32], e: usize, top_k: usize, renormalize: bool) -> (Vec<u32>, Vec<f32>) {
    let t = probs.len() / e;
    let (mut chosen, mut weights) = (vec![0u32; t * top_k], vec![0.0; t * top_k]);
    topk::route(probs, e, top_k, renormalize, &mut chosen, &mut weights);
    let mut mix = vec![0.0; t * e];
    for (token, (ex, w)) in chosen.chunks(top_k).zip(weights.chunks(top_k)).enumerate() {
        for (&expert, &weight) in ex.iter().zip(w) {
            mix[token * e + expert as usize] = weight;
        }
    }
    (chosen, mix)
}

/// Every expert of hidden width `width` on `x: [t, d]`, and their outputs mixed by
/// `mix: [t, E]` into `[t, d]`.
fn experts_forward(
    experts: &[MlpTensors],
    width: usize,
    d: usize,
    params: &[f32],
    x: &[f32],
    mix: &[f32],
) -> (Vec<MlpActivations>, Vec<f32>) {
    let (t, n_experts) = (x.len() / d, experts.len());
    let mut out = vec![0.0; t * d];
    let mut acts = Vec::with_capacity(n_experts);
    for (e, tensors) in experts.iter().enumerate() {
        let mlp = mlp_forward(tensors, width, d, params, x);
        for token in 0..t {
            let w = mix[token * n_experts + e];
            for (o, y) in out[token * d..(token + 1) * d]
                .iter_mut()
                .zip(&mlp.out()[token * d..(token + 1) * d])
            {
                *o += w * y;
            }
        }
        acts.push(mlp);
    }
    (acts, out)
}

/// The rows of `x: [t, d]` of the tokens behind `slots` (slot `token · k + j`), in order.
fn gather_rows(x: &[f32], d: usize, k: usize, slots: &[u32]) -> Vec<f32> {
    let mut rows = Vec::with_capacity(slots.len() * d);
    for &slot in slots {
        let token = slot as usize / k;
        rows.extend_from_slice(&x[token * d..(token + 1) * d]);
    }
    rows
}

/// Each expert of hidden width `width` on the tokens routed to it (`chosen: [t, k]`), its
/// outputs added into `[t, d]` weighted by `mix: [t, E]`; the activations hold each expert's
/// own rows only. Per token the experts add up in expert order, as when every expert ran on
/// every token (one not chosen added 0).
#[allow(clippy::too_many_arguments)]
fn routed_forward(
    experts: &[MlpTensors],
    width: usize,
    d: usize,
    k: usize,
    params: &[f32],
    x: &[f32],
    chosen: &[u32],
    mix: &[f32],
) -> (Vec<MlpActivations>, Vec<f32>) {
    let (t, n_experts) = (x.len() / d, experts.len());
    let groups = ExpertGroups::new(chosen, n_experts);
    let mut out = vec![0.0; t * d];
    let mut acts = Vec::with_capacity(n_experts);
    for (e, tensors) in experts.iter().enumerate() {
        let slots = groups.of(e);
        let mlp = mlp_forward(tensors, width, d, params, &gather_rows(x, d, k, slots));
        for (&slot, y) in slots.iter().zip(mlp.out().chunks(d)) {
            let token = slot as usize / k;
            let w = mix[token * n_experts + e];
            for (o, y) in out[token * d..(token + 1) * d].iter_mut().zip(y) {
                *o += w * y;
            }
        }
        acts.push(mlp);
    }
    (acts, out)
}

/// Gradient of `routed_forward` from the block's `dout: [t, d]`: returns `dx` and the
/// gradient of each slot's mixing weight `[t · k]`; weight gradients are added to `grads`.
#[allow(clippy::too_many_arguments)]
fn routed_backward(
    experts: &[MlpTensors],
    width: usize,
    d: usize,
    k: usize,
    params: &[f32],
    x: &[f32],
    acts: &[MlpActivations],
    chosen: &[u32],
    mix: &[f32],
    dout: &[f32],
    grads: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (t, n_experts) = (x.len() / d, experts.len());
    let groups = ExpertGroups::new(chosen, n_experts);
    let mut dx = vec![0.0; t * d];
    let mut dweights = vec![0.0; chosen.len()];
    for (e, (tensors, mlp)) in experts.iter().zip(acts).enumerate() {
        let slots = groups.of(e);
        let mut dy = vec![0.0; slots.len() * d];
        for ((&slot, y), dy) in slots.iter().zip(mlp.out().chunks(d)).zip(dy.chunks_mut(d)) {
            let token = slot as usize / k;
            let row = &dout[token * d..(token + 1) * d];
            dweights[slot as usize] = row.iter().zip(y).map(|(a, b)| a * b).sum();
            let w = mix[token * n_experts + e];
            dy.iter_mut().zip(row).for_each(|(g, r)| *g = w * r);
        }
        let rows = gather_rows(x, d, k, slots);
        let dxe = mlp_backward(tensors, width, d, params, &rows, mlp, &dy, grads);
        for (&slot, row) in slots.iter().zip(dxe.chunks(d)) {
            let token = slot as usize / k;
            add(&mut dx[token * d..(token + 1) * d], row);
        }
    }
    (dx, dweights)
}

/// The shared expert of hidden width `width` on `x: [t, d]`, added to `out` through its
/// sigmoid gate.
fn shared_forward(
    shared: &SharedExpertTensors,
    width: usize,
    d: usize,
    params: &[f32],
    x: &[f32],
    out: &mut [f32],
) -> SharedExpertActivations {
    let t = x.len() / d;
    let mlp = mlp_forward(&shared.mlp, width, d, params, x);
    let mut gate = vec![0.0; t];
    linear::forward(x, &params[shared.gate.range()], None, t, d, 1, &mut gate);
    for ((out, y), g) in out.chunks_mut(d).zip(mlp.out().chunks(d)).zip(&gate) {
        let s = sigmoid(*g);
        out.iter_mut().zip(y).for_each(|(o, y)| *o += s * y);
    }
    SharedExpertActivations { mlp, gate }
}

/// The feed-forward block with weights `tensors` on normalised input `x: [t, d]`.
pub fn forward(
    config: &ModelConfig,
    tensors: &FfnTensors,
    params: &[f32],
    x: &[f32],
) -> FfnActivations {
    let d = config.hidden_size;
    match (&config.ffn, tensors) {
        (&Ffn::Dense { intermediate_size }, FfnTensors::Dense(mlp)) => FfnActivations::Dense {
            mlp: mlp_forward(mlp, intermediate_size, d, params, x),
        },
        (
            &Ffn::SoftmaxMoe {
                n_experts,
                expert_width,
                ..
            },
            FfnTensors::SoftmaxMoe {
                gate,
                gate_bias,
                experts,
            },
        ) => {
            let (gate, bias) = (&params[gate.range()], &params[gate_bias.range()]);
            let probs = router_forward(x, gate, Some(bias), d, n_experts);
            let (experts, out) = experts_forward(experts, expert_width, d, params, x, &probs);
            FfnActivations::SoftmaxMoe {
                probs,
                experts,
                out,
            }
        }
        (
            &Ffn::TopkMoe {
                n_experts,
                top_k,
                expert_width,
                renormalize,
                shared_expert_width,
                ..
            },
            FfnTensors::TopkMoe {
                gate,
                experts,
                shared,
            },
        ) => {
            let probs = router_forward(x, &params[gate.range()], None, d, n_experts);
            let (chosen, mix) = route(&probs, n_experts, top_k, renormalize);
            let (experts, mut out) =
                routed_forward(experts, expert_width, d, top_k, params, x, &chosen, &mix);
            let shared = shared
                .as_ref()
                .zip(shared_expert_width)
                .map(|(shared, width)| shared_forward(shared, width, d, params, x, &mut out));
            FfnActivations::TopkMoe {
                probs,
                mix,
                chosen,
                experts,
                shared,
                out,
            }
        }
        _ => unreachable!("the layout was built from this config"),
    }
}

/// Gradient of the experts mixed by `mix: [t, E]` from the block's `dout: [t, d]`: returns
/// `dx` and the mixing weights' gradient `[t, E]`; weight gradients are added to `grads`.
#[allow(clippy::too_many_arguments)]
fn experts_backward(
    experts: &[MlpTensors],
    width: usize,
    d: usize,
    params: &[f32],
    x: &[f32],
    acts: &[MlpActivations],
    mix: &[f32],
    dout: &[f32],
    grads: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (t, n_experts) = (x.len() / d, experts.len());
    let mut dx = vec![0.0; t * d];
    let mut dmix = vec![0.0; t * n_experts];
    for (e, (tensors, mlp)) in experts.iter().zip(acts).enumerate() {
        let mut dy = vec![0.0; t * d];
        for token in 0..t {
            let w = mix[token * n_experts + e];
            let (row, y) = (
                &dout[token * d..(token + 1) * d],
                &mlp.out()[token * d..(token + 1) * d],
            );
            dmix[token * n_experts + e] = row.iter().zip(y).map(|(a, b)| a * b).sum();
            for (g, r) in dy[token * d..(token + 1) * d].iter_mut().zip(row) {
                *g = w * r;
            }
        }
        let dxe = mlp_backward(tensors, width, d, params, x, mlp, &dy, grads);
        add(&mut dx, &dxe);
    }
    (dx, dmix)
}

/// Gradient of the router from its probabilities' gradient `dprobs: [t, E]`: adds the gate's
/// (and bias's) gradient to `grads` and its input gradient to `dx`.
#[allow(clippy::too_many_arguments)]
fn router_backward(
    gate: Slot,
    bias: Option<Slot>,
    params: &[f32],
    x: &[f32],
    probs: &[f32],
    dprobs: &[f32],
    d: usize,
    e: usize,
    grads: &mut [f32],
    dx: &mut [f32],
) {
    let t = x.len() / d;
    let mut dlogits = vec![0.0; t * e];
    softmax::backward(dprobs, probs, e, &mut dlogits);
    let mut scratch = vec![0.0; t * d];
    let weight = &params[gate.range()];
    match bias {
        Some(bias) => {
            let (dw, db) = split_two(grads, gate, bias);
            linear::backward(&dlogits, x, weight, t, d, e, &mut scratch, dw, Some(db));
        }
        None => {
            let dw = &mut grads[gate.range()];
            linear::backward(&dlogits, x, weight, t, d, e, &mut scratch, dw, None);
        }
    }
    add(dx, &scratch);
}

/// Gradient of the shared expert (hidden width `width`) and its gate from the block's
/// `dout: [t, d]`: adds its weights' gradients to `grads` and its input gradient to `dx`.
#[allow(clippy::too_many_arguments)]
fn shared_backward(
    shared: &SharedExpertTensors,
    width: usize,
    d: usize,
    params: &[f32],
    x: &[f32],
    acts: &SharedExpertActivations,
    dout: &[f32],
    grads: &mut [f32],
    dx: &mut [f32],
) {
    let t = x.len() / d;
    let mut dy = vec![0.0; t * d];
    let mut dgate = vec![0.0; t];
    for token in 0..t {
        let s = sigmoid(acts.gate[token]);
        let (row, y) = (
            &dout[token * d..(token + 1) * d],
            &acts.mlp.out()[token * d..(token + 1) * d],
        );
        dgate[token] = row.iter().zip(y).map(|(a, b)| a * b).sum::<f32>() * s * (1.0 - s);
        for (g, r) in dy[token * d..(token + 1) * d].iter_mut().zip(row) {
            *g = s * r;
        }
    }
    let dxs = mlp_backward(&shared.mlp, width, d, params, x, &acts.mlp, &dy, grads);
    add(dx, &dxs);
    let mut scratch = vec![0.0; t * d];
    let weight = &params[shared.gate.range()];
    let dw = &mut grads[shared.gate.range()];
    linear::backward(&dgate, x, weight, t, d, 1, &mut scratch, dw, None);
    add(dx, &scratch);
}

/// Gradient of the block: returns `dx` for its input; parameter gradients are added to `grads`.
/// `aux_dprobs` is the load-balancing loss's gradient for this layer's router probabilities
/// (top-k only; the loss itself spans all layers, so the caller computes it).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    config: &ModelConfig,
    tensors: &FfnTensors,
    params: &[f32],
    x: &[f32],
    acts: &FfnActivations,
    dout: &[f32],
    aux_dprobs: Option<&[f32]>,
    grads: &mut [f32],
) -> Vec<f32> {
    let d = config.hidden_size;
    match (&config.ffn, tensors, acts) {
        (
            &Ffn::Dense { intermediate_size },
            FfnTensors::Dense(mlp),
            FfnActivations::Dense { mlp: a },
        ) => mlp_backward(mlp, intermediate_size, d, params, x, a, dout, grads),
        (
            &Ffn::SoftmaxMoe {
                n_experts,
                expert_width,
                ..
            },
            FfnTensors::SoftmaxMoe {
                gate,
                gate_bias,
                experts,
            },
            FfnActivations::SoftmaxMoe {
                probs,
                experts: expert_acts,
                ..
            },
        ) => {
            let (mut dx, dmix) = experts_backward(
                experts,
                expert_width,
                d,
                params,
                x,
                expert_acts,
                probs,
                dout,
                grads,
            );
            // The probabilities are the mixing weights.
            let bias = Some(*gate_bias);
            router_backward(
                *gate, bias, params, x, probs, &dmix, d, n_experts, grads, &mut dx,
            );
            dx
        }
        (
            &Ffn::TopkMoe {
                n_experts,
                top_k,
                expert_width,
                renormalize,
                shared_expert_width,
                ..
            },
            FfnTensors::TopkMoe {
                gate,
                experts,
                shared,
            },
            FfnActivations::TopkMoe {
                probs,
                mix,
                chosen,
                experts: expert_acts,
                shared: shared_acts,
                ..
            },
        ) => {
            let (mut dx, dweights) = routed_backward(
                experts,
                expert_width,
                d,
                top_k,
                params,
                x,
                expert_acts,
                chosen,
                mix,
                dout,
                grads,
            );
            let mut dprobs = vec![0.0; probs.len()];
            topk::route_backward(
                &dweights,
                probs,
                chosen,
                n_experts,
                top_k,
                renormalize,
                &mut dprobs,
            );
            if let Some(extra) = aux_dprobs {
                add(&mut dprobs, extra);
            }
            router_backward(
                *gate, None, params, x, probs, &dprobs, d, n_experts, grads, &mut dx,
            );
            if let (Some(shared), Some(width), Some(a)) = (shared, shared_expert_width, shared_acts)
            {
                shared_backward(shared, width, d, params, x, a, dout, grads, &mut dx);
            }
            dx
        }
        _ => unreachable!("the layout and activations were built from this config"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{Ffn, ModelConfig};
    use crate::model::params::Layout;
    use crate::model::pass::tests::values;

    /// The routed experts give what every expert on every token mixed by `mix` gives (the
    /// definition), forward and backward, also with experts no token chose.
    #[test]
    fn routed_experts_equal_every_expert_mixed() {
        // 6 slots among 8 experts: at least two experts get no token.
        let (d, t, n_experts, top_k, width) = (8, 3, 8, 2, 5);
        let config = ModelConfig {
            vocab_size: 11,
            hidden_size: d,
            num_layers: 1,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-6,
            qkv_bias: false,
            tie_embeddings: true,
            max_positions: 16,
            ffn: Ffn::TopkMoe {
                n_experts,
                top_k,
                expert_width: width,
                renormalize: true,
                shared_expert_width: None,
                aux_coefficient: 0.0,
            },
        };
        let layout = Layout::new(&config);
        let FfnTensors::TopkMoe { gate, experts, .. } = &layout.tensors.layers[0].ffn else {
            panic!("a top-k layout");
        };
        let params = values(3, layout.len);
        let (x, dout) = (values(5, t * d), values(9, t * d));
        let probs = router_forward(&x, &params[gate.range()], None, d, n_experts);
        let (chosen, mix) = route(&probs, n_experts, top_k, true);

        let (all_acts, all_out) = experts_forward(experts, width, d, &params, &x, &mix);
        let (acts, out) = routed_forward(experts, width, d, top_k, &params, &x, &chosen, &mix);
        assert_eq!(out, all_out);

        let mut all_grads = vec![0.0; layout.len];
        let (all_dx, dmix) = experts_backward(
            experts,
            width,
            d,
            &params,
            &x,
            &all_acts,
            &mix,
            &dout,
            &mut all_grads,
        );
        let mut grads = vec![0.0; layout.len];
        let (dx, dweights) = routed_backward(
            experts, width, d, top_k, &params, &x, &acts, &chosen, &mix, &dout, &mut grads,
        );
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(p, q)| (p - q).abs() <= 1e-6 * (1.0 + q.abs()))
        };
        assert!(close(&dx, &all_dx), "{dx:?} vs {all_dx:?}");
        assert!(close(&grads, &all_grads));
        let expected: Vec<f32> = chosen
            .iter()
            .enumerate()
            .map(|(slot, &e)| dmix[(slot / top_k) * n_experts + e as usize])
            .collect();
        assert!(close(&dweights, &expected));
    }
}
