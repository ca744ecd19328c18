//! The feed-forward block of a layer, for every `Ffn` kind: forward keeping what the backward
//! needs, and the backward accumulating parameter gradients.
//!
//! Both mixtures are written as "every expert on every token, mixed by a per-token weight
//! matrix `mix[t, e]`": the softmax-MoE's weights are the gate's probabilities; the top-k
//! MoE's are the routed weights scattered into the matrix (zero for experts a token did not
//! choose, so those experts neither add to its output nor get gradient from it). This is the
//! readable reference; the CUDA path runs only the chosen experts.

use crate::model::config::{ExpertMlp, Ffn, ModelConfig};
use crate::model::params::Layout;
use steel_kernels::cpu::{linear, softmax, swiglu, topk};

/// One expert MLP's activations for `t` tokens.
pub struct MlpActivations {
    /// SwiGLU: `[gate, up, hidden]`; dual-SwiGLU: `[g1, u1, h, g2, u2]`.
    parts: Vec<Vec<f32>>,
    /// The output `[t, d]`.
    pub out: Vec<f32>,
}

/// Names of an MLP's weights: SwiGLU `gate_proj/up_proj/down_proj`, dual-SwiGLU
/// `w_g1/w_u1/w_g2/w_u2`, under `prefix`.
fn mlp_forward(
    kind: ExpertMlp,
    prefix: &str,
    width: usize,
    d: usize,
    layout: &Layout,
    params: &[f32],
    x: &[f32],
) -> MlpActivations {
    let t = x.len() / d;
    let p = |name: &str| &params[layout.view(&format!("{prefix}.{name}.weight")).range()];
    match kind {
        ExpertMlp::SwiGlu => {
            let (mut gate, mut up, mut hidden, mut out) = (
                vec![0.0; t * width],
                vec![0.0; t * width],
                vec![0.0; t * width],
                vec![0.0; t * d],
            );
            linear::forward(x, p("gate_proj"), None, t, d, width, &mut gate);
            linear::forward(x, p("up_proj"), None, t, d, width, &mut up);
            swiglu::forward(&gate, &up, &mut hidden);
            linear::forward(&hidden, p("down_proj"), None, t, width, d, &mut out);
            MlpActivations {
                parts: vec![gate, up, hidden],
                out,
            }
        }
        ExpertMlp::DualSwiGlu => {
            let (mut g1, mut u1, mut h) = (
                vec![0.0; t * width],
                vec![0.0; t * width],
                vec![0.0; t * width],
            );
            linear::forward(x, p("w_g1"), None, t, d, width, &mut g1);
            linear::forward(x, p("w_u1"), None, t, d, width, &mut u1);
            swiglu::forward(&g1, &u1, &mut h);
            let (mut g2, mut u2, mut out) = (vec![0.0; t * d], vec![0.0; t * d], vec![0.0; t * d]);
            linear::forward(&h, p("w_g2"), None, t, width, d, &mut g2);
            linear::forward(&h, p("w_u2"), None, t, width, d, &mut u2);
            swiglu::forward(&g2, &u2, &mut out);
            MlpActivations {
                parts: vec![g1, u1, h, g2, u2],
                out,
            }
        }
    }
}

/// Gradient of an MLP: returns `dx`; weight gradients are added to `grads`.
#[allow(clippy::too_many_arguments)]
fn mlp_backward(
    kind: ExpertMlp,
    prefix: &str,
    width: usize,
    d: usize,
    layout: &Layout,
    params: &[f32],
    x: &[f32],
    a: &MlpActivations,
    dout: &[f32],
    grads: &mut [f32],
) -> Vec<f32> {
    let t = x.len() / d;
    let name = |n: &str| format!("{prefix}.{n}.weight");
    let p = |n: &str| &params[layout.view(&name(n)).range()];
    let at = |n: &str| layout.view(&name(n)).range();
    let (mut dx, mut scratch) = (vec![0.0; t * d], vec![0.0; t * d]);
    match kind {
        ExpertMlp::SwiGlu => {
            let (gate, up, hidden) = (&a.parts[0], &a.parts[1], &a.parts[2]);
            let mut dhidden = vec![0.0; t * width];
            linear::backward(
                dout,
                hidden,
                p("down_proj"),
                t,
                width,
                d,
                &mut dhidden,
                &mut grads[at("down_proj")],
                None,
            );
            let (mut dgate, mut dup) = (vec![0.0; t * width], vec![0.0; t * width]);
            swiglu::backward(&dhidden, gate, up, &mut dgate, &mut dup);
            linear::backward(
                &dgate,
                x,
                p("gate_proj"),
                t,
                d,
                width,
                &mut dx,
                &mut grads[at("gate_proj")],
                None,
            );
            linear::backward(
                &dup,
                x,
                p("up_proj"),
                t,
                d,
                width,
                &mut scratch,
                &mut grads[at("up_proj")],
                None,
            );
        }
        ExpertMlp::DualSwiGlu => {
            let (g1, u1, h, g2, u2) = (
                &a.parts[0],
                &a.parts[1],
                &a.parts[2],
                &a.parts[3],
                &a.parts[4],
            );
            let (mut dg2, mut du2) = (vec![0.0; t * d], vec![0.0; t * d]);
            swiglu::backward(dout, g2, u2, &mut dg2, &mut du2);
            let (mut dh, mut dh2) = (vec![0.0; t * width], vec![0.0; t * width]);
            linear::backward(
                &dg2,
                h,
                p("w_g2"),
                t,
                width,
                d,
                &mut dh,
                &mut grads[at("w_g2")],
                None,
            );
            linear::backward(
                &du2,
                h,
                p("w_u2"),
                t,
                width,
                d,
                &mut dh2,
                &mut grads[at("w_u2")],
                None,
            );
            dh.iter_mut().zip(&dh2).for_each(|(a, b)| *a += b);
            let (mut dg1, mut du1) = (vec![0.0; t * width], vec![0.0; t * width]);
            swiglu::backward(&dh, g1, u1, &mut dg1, &mut du1);
            linear::backward(
                &dg1,
                x,
                p("w_g1"),
                t,
                d,
                width,
                &mut dx,
                &mut grads[at("w_g1")],
                None,
            );
            linear::backward(
                &du1,
                x,
                p("w_u1"),
                t,
                d,
                width,
                &mut scratch,
                &mut grads[at("w_u1")],
                None,
            );
        }
    }
    dx.iter_mut().zip(&scratch).for_each(|(a, b)| *a += b);
    dx
}

/// A mixture's experts: how many, their width and their MLP.
fn mixture(ffn: &Ffn) -> (usize, usize, ExpertMlp) {
    match *ffn {
        Ffn::Dense { .. } => unreachable!("a dense block has no experts"),
        Ffn::SoftmaxMoe {
            n_experts,
            expert_width,
            mlp,
        } => (n_experts, expert_width, mlp),
        Ffn::TopkMoe {
            n_experts,
            expert_width,
            ..
        } => (n_experts, expert_width, ExpertMlp::SwiGlu),
    }
}

/// A feed-forward block's activations.
pub struct FfnActivations {
    experts: Vec<MlpActivations>,
    /// Router/gate probabilities `[t, e]` and mixing weights `[t, e]` (mixtures only).
    pub probs: Vec<f32>,
    mix: Vec<f32>,
    /// Top-k routing: chosen experts `[t, k]` (and their weights `[t, k]`).
    pub chosen: Vec<u32>,
    shared: Option<(MlpActivations, Vec<f32>)>,
    /// The block's output `[t, d]`.
    pub out: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The feed-forward block of layer `l` on normalised input `x: [t, d]`.
pub fn forward(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    l: usize,
    x: &[f32],
) -> FfnActivations {
    let d = config.hidden_size;
    let t = x.len() / d;
    let prefix = format!("model.layers.{l}.mlp");
    let p = |name: &str| &params[layout.view(&format!("{prefix}.{name}")).range()];
    let mut acts = FfnActivations {
        experts: Vec::new(),
        probs: Vec::new(),
        mix: Vec::new(),
        chosen: Vec::new(),
        shared: None,
        out: vec![0.0; t * d],
    };
    if let Ffn::Dense { intermediate_size } = config.ffn {
        let mlp = mlp_forward(
            ExpertMlp::SwiGlu,
            &prefix,
            intermediate_size,
            d,
            layout,
            params,
            x,
        );
        acts.out = mlp.out.clone();
        acts.experts.push(mlp);
        return acts;
    }
    let (n_experts, width, kind) = mixture(&config.ffn);
    let mut logits = vec![0.0; t * n_experts];
    let gate_bias = matches!(config.ffn, Ffn::SoftmaxMoe { .. }).then(|| p("gate.bias"));
    linear::forward(x, p("gate.weight"), gate_bias, t, d, n_experts, &mut logits);
    acts.probs = vec![0.0; t * n_experts];
    softmax::forward(&logits, n_experts, &mut acts.probs);
    acts.mix = match config.ffn {
        Ffn::TopkMoe {
            top_k, renormalize, ..
        } => {
            let (mut chosen, mut weights) = (vec![0u32; t * top_k], vec![0.0; t * top_k]);
            topk::route(
                &acts.probs,
                n_experts,
                top_k,
                renormalize,
                &mut chosen,
                &mut weights,
            );
            let mut mix = vec![0.0; t * n_experts];
            for (token, (ex, w)) in chosen.chunks(top_k).zip(weights.chunks(top_k)).enumerate() {
                for (&e, &weight) in ex.iter().zip(w) {
                    mix[token * n_experts + e as usize] = weight;
                }
            }
            acts.chosen = chosen;
            mix
        }
        _ => acts.probs.clone(),
    };
    for e in 0..n_experts {
        let mlp = mlp_forward(
            kind,
            &format!("{prefix}.experts.{e}"),
            width,
            d,
            layout,
            params,
            x,
        );
        for token in 0..t {
            let w = acts.mix[token * n_experts + e];
            for (o, y) in acts.out[token * d..(token + 1) * d]
                .iter_mut()
                .zip(&mlp.out[token * d..(token + 1) * d])
            {
                *o += w * y;
            }
        }
        acts.experts.push(mlp);
    }
    if let Ffn::TopkMoe {
        shared_expert_width: Some(shared_width),
        ..
    } = config.ffn
    {
        let mlp = mlp_forward(
            ExpertMlp::SwiGlu,
            &format!("{prefix}.shared_expert"),
            shared_width,
            d,
            layout,
            params,
            x,
        );
        let mut gate = vec![0.0; t];
        linear::forward(x, p("shared_expert_gate.weight"), None, t, d, 1, &mut gate);
        for ((out, y), g) in acts.out.chunks_mut(d).zip(mlp.out.chunks(d)).zip(&gate) {
            let s = sigmoid(*g);
            out.iter_mut().zip(y).for_each(|(o, y)| *o += s * y);
        }
        acts.shared = Some((mlp, gate));
    }
    acts
}

/// Gradient of the block: returns `dx` for its input; parameter gradients are added to `grads`.
/// `aux_dprobs` is the load-balancing loss's gradient for this layer's router probabilities
/// (top-k only; the loss itself spans all layers, see `dense::load_balance`).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    l: usize,
    x: &[f32],
    acts: &FfnActivations,
    dout: &[f32],
    aux_dprobs: Option<&[f32]>,
    grads: &mut [f32],
) -> Vec<f32> {
    let d = config.hidden_size;
    let t = x.len() / d;
    let prefix = format!("model.layers.{l}.mlp");
    if let Ffn::Dense { intermediate_size } = config.ffn {
        return mlp_backward(
            ExpertMlp::SwiGlu,
            &prefix,
            intermediate_size,
            d,
            layout,
            params,
            x,
            &acts.experts[0],
            dout,
            grads,
        );
    }
    let (n_experts, width, kind) = mixture(&config.ffn);
    let mut dx = vec![0.0; t * d];
    let mut dmix = vec![0.0; t * n_experts];
    for (e, mlp) in acts.experts.iter().enumerate() {
        let mut dy = vec![0.0; t * d];
        for token in 0..t {
            let w = acts.mix[token * n_experts + e];
            let (row, y) = (
                &dout[token * d..(token + 1) * d],
                &mlp.out[token * d..(token + 1) * d],
            );
            dmix[token * n_experts + e] = row.iter().zip(y).map(|(a, b)| a * b).sum();
            for (g, r) in dy[token * d..(token + 1) * d].iter_mut().zip(row) {
                *g = w * r;
            }
        }
        let dxe = mlp_backward(
            kind,
            &format!("{prefix}.experts.{e}"),
            width,
            d,
            layout,
            params,
            x,
            mlp,
            &dy,
            grads,
        );
        dx.iter_mut().zip(&dxe).for_each(|(a, b)| *a += b);
    }
    let mut dprobs = vec![0.0; t * n_experts];
    match config.ffn {
        Ffn::TopkMoe {
            top_k, renormalize, ..
        } => {
            let dweights: Vec<f32> = acts
                .chosen
                .iter()
                .enumerate()
                .map(|(i, &e)| dmix[(i / top_k) * n_experts + e as usize])
                .collect();
            topk::route_backward(
                &dweights,
                &acts.probs,
                &acts.chosen,
                n_experts,
                top_k,
                renormalize,
                &mut dprobs,
            );
            if let Some(extra) = aux_dprobs {
                dprobs.iter_mut().zip(extra).for_each(|(a, b)| *a += b);
            }
        }
        _ => dprobs.copy_from_slice(&dmix),
    }
    let mut dlogits = vec![0.0; t * n_experts];
    softmax::backward(&dprobs, &acts.probs, n_experts, &mut dlogits);
    let gate = layout.view(&format!("{prefix}.gate.weight")).range();
    let mut scratch = vec![0.0; t * d];
    if matches!(config.ffn, Ffn::SoftmaxMoe { .. }) {
        let bias = layout.view(&format!("{prefix}.gate.bias")).range();
        let (dw, db) = crate::model::pass::split_two(grads, gate.clone(), bias);
        linear::backward(
            &dlogits,
            x,
            &params[gate],
            t,
            d,
            n_experts,
            &mut scratch,
            dw,
            Some(db),
        );
    } else {
        linear::backward(
            &dlogits,
            x,
            &params[gate.clone()],
            t,
            d,
            n_experts,
            &mut scratch,
            &mut grads[gate],
            None,
        );
    }
    dx.iter_mut().zip(&scratch).for_each(|(a, b)| *a += b);
    if let (
        Ffn::TopkMoe {
            shared_expert_width: Some(shared_width),
            ..
        },
        Some((mlp, gate_logits)),
    ) = (&config.ffn, &acts.shared)
    {
        let mut dy = vec![0.0; t * d];
        let mut dgate = vec![0.0; t];
        for token in 0..t {
            let s = sigmoid(gate_logits[token]);
            let (row, y) = (
                &dout[token * d..(token + 1) * d],
                &mlp.out[token * d..(token + 1) * d],
            );
            dgate[token] = row.iter().zip(y).map(|(a, b)| a * b).sum::<f32>() * s * (1.0 - s);
            for (g, r) in dy[token * d..(token + 1) * d].iter_mut().zip(row) {
                *g = s * r;
            }
        }
        let dxs = mlp_backward(
            ExpertMlp::SwiGlu,
            &format!("{prefix}.shared_expert"),
            *shared_width,
            d,
            layout,
            params,
            x,
            mlp,
            &dy,
            grads,
        );
        dx.iter_mut().zip(&dxs).for_each(|(a, b)| *a += b);
        let sg = layout
            .view(&format!("{prefix}.shared_expert_gate.weight"))
            .range();
        linear::backward(
            &dgate,
            x,
            &params[sg.clone()],
            t,
            d,
            1,
            &mut scratch,
            &mut grads[sg],
            None,
        );
        dx.iter_mut().zip(&scratch).for_each(|(a, b)| *a += b);
    }
    dx
}
