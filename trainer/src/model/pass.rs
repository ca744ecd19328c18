//! Training pass of the model for one batch row: forward keeping the activations, the
//! weighted next-token cross-entropy, and the backward accumulating every parameter's gradient
//! into a buffer laid out like the parameters. A row may pack several documents: attention
//! stays within each and positions restart at each (`batch::Batch::doc_start`).

use crate::batch::{LossScale, RowView};
use crate::model::config::{Ffn, ModelConfig};
use crate::model::ffn;
use crate::model::params::Layout;
use crate::model::tensors::{Slot, split_two};
use steel_kernels::cpu::{attention, cross_entropy, embedding, linear, rmsnorm, rope, topk};

/// What one layer's backward needs from its forward (`q_width = hq · hd`, `kv_width =
/// hkv · hd`).
struct LayerActivations {
    /// The layer's input (the residual stream) `[t, d]`.
    x_in: Vec<f32>,
    /// `input_layernorm(x_in)`: `[t, d]`.
    normed1: Vec<f32>,
    /// After RoPE: `[t, q_width]`.
    q: Vec<f32>,
    /// After RoPE: `[t, kv_width]`.
    k: Vec<f32>,
    /// `[t, kv_width]`.
    v: Vec<f32>,
    /// Attention probabilities `[hq, t, t]`.
    probs: Vec<f32>,
    /// The heads' outputs `[t, q_width]`.
    attended: Vec<f32>,
    /// The residual stream after attention `[t, d]`.
    x_mid: Vec<f32>,
    /// `post_attention_layernorm(x_mid)`: `[t, d]`.
    normed2: Vec<f32>,
    ffn: ffn::FfnActivations,
}

/// Shapes used throughout one pass.
struct Dims {
    t: usize,
    d: usize,
    hq: usize,
    hkv: usize,
    hd: usize,
}

fn add(into: &mut [f32], from: &[f32]) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

/// The shapes of a pass over `t` tokens, and each token's position within its document.
fn dims(config: &ModelConfig, doc_start: &[u32]) -> (Dims, Vec<u32>, attention::Shape) {
    let t = doc_start.len();
    let n = Dims {
        t,
        d: config.hidden_size,
        hq: config.num_heads,
        hkv: config.num_kv_heads,
        hd: config.head_dim,
    };
    let shape = attention::Shape {
        t,
        hq: n.hq,
        hkv: n.hkv,
        d: n.hd,
    };
    let positions = (0..t as u32).zip(doc_start).map(|(i, s)| i - s).collect();
    (n, positions, shape)
}

/// The forward pass with everything the backward reads.
pub struct ForwardPass {
    layers: Vec<LayerActivations>,
    /// The residual stream after the last layer, and its final normalisation `[t, d]`.
    x: Vec<f32>,
    normed: Vec<f32>,
    /// `[t, vocab]`.
    pub logits: Vec<f32>,
}

impl ForwardPass {
    /// A top-k model's router probabilities, `[t, n_experts]` per layer (none for other FFN
    /// kinds).
    pub fn router_probs(&self) -> Vec<&[f32]> {
        self.layers
            .iter()
            .filter_map(|a| match &a.ffn {
                ffn::FfnActivations::TopkMoe { probs, .. } => Some(&probs[..]),
                _ => None,
            })
            .collect()
    }
}

/// Token ids to logits, keeping the activations; `doc_start[i]`: where token `i`'s document
/// starts.
pub fn forward(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    ids: &[u32],
    doc_start: &[u32],
) -> ForwardPass {
    let (x, layers) = residual_stream(config, layout, params, ids, doc_start, true);
    let (normed, logits) = head(config, layout, params, &x, 0);
    ForwardPass {
        layers,
        x,
        normed,
        logits,
    }
}

/// The residual stream after the last layer `[t, d]`, with every layer's activations if
/// `keep` (otherwise each layer's are dropped as soon as the next starts).
fn residual_stream(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    ids: &[u32],
    doc_start: &[u32],
    keep: bool,
) -> (Vec<f32>, Vec<LayerActivations>) {
    let (n, positions, shape) = dims(config, doc_start);
    let (t, d) = (n.t, n.d);
    let model = &layout.tensors;
    let p = |slot: Slot| &params[slot.range()];
    let eps = config.rms_norm_eps;
    let mut x = vec![0.0; t * d];
    embedding::forward(ids, p(model.embed), d, &mut x);
    let mut layers = Vec::with_capacity(if keep { config.num_layers } else { 0 });
    for layer in &model.layers {
        let attn = layer.attn;
        let x_in = x.clone();
        let mut normed1 = vec![0.0; t * d];
        rmsnorm::forward(&x_in, p(layer.input_layernorm), d, eps, &mut normed1);
        // q, k or v: `[t, width]` from the normalised input, with the projection's bias.
        let project = |weight: Slot, bias: Option<Slot>, width: usize| {
            let mut out = vec![0.0; t * width];
            linear::forward(&normed1, p(weight), bias.map(p), t, d, width, &mut out);
            out
        };
        let mut q = project(attn.q, attn.q_bias, n.hq * n.hd);
        let mut k = project(attn.k, attn.k_bias, n.hkv * n.hd);
        let v = project(attn.v, attn.v_bias, n.hkv * n.hd);
        rope::forward(&mut q, &positions, n.hq, n.hd, config.rope_theta);
        rope::forward(&mut k, &positions, n.hkv, n.hd, config.rope_theta);
        let (mut attended, mut probs) = (vec![0.0; t * n.hq * n.hd], vec![0.0; n.hq * t * t]);
        attention::forward(&q, &k, &v, &shape, doc_start, &mut attended, &mut probs);
        let mut out = vec![0.0; t * d];
        linear::forward(&attended, p(attn.o), None, t, n.hq * n.hd, d, &mut out);
        add(&mut x, &out);
        let x_mid = x.clone();
        let mut normed2 = vec![0.0; t * d];
        let ln2 = layer.post_attention_layernorm;
        rmsnorm::forward(&x_mid, p(ln2), d, eps, &mut normed2);
        let ffn_acts = ffn::forward(config, &layer.ffn, params, &normed2);
        add(&mut x, ffn_acts.out());
        if keep {
            layers.push(LayerActivations {
                x_in,
                normed1,
                q,
                k,
                v,
                probs,
                attended,
                x_mid,
                normed2,
                ffn: ffn_acts,
            });
        }
    }
    (x, layers)
}

/// The final normalisation of rows `from..` of the residual stream `x` and their logits
/// `[t - from, vocab]`.
fn head(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    x: &[f32],
    from: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (d, vocab) = (config.hidden_size, config.vocab_size);
    let model = &layout.tensors;
    let p = |slot: Slot| &params[slot.range()];
    let rows = &x[from * d..];
    let t = rows.len() / d;
    let mut normed = vec![0.0; t * d];
    rmsnorm::forward(rows, p(model.norm), d, config.rms_norm_eps, &mut normed);
    let mut logits = vec![0.0; t * vocab];
    linear::forward(&normed, p(model.head), None, t, d, vocab, &mut logits);
    (normed, logits)
}

/// Logits of positions `from..` only (`[t - from, vocab]`) for `ids`, keeping no activations:
/// what scoring needs of a long prompt (the last position's, or a continuation's), at the
/// memory of one layer and without the head over every position.
pub fn logits_from(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    ids: &[u32],
    from: usize,
) -> Vec<f32> {
    assert!(
        from <= ids.len(),
        "position {from} past {} tokens",
        ids.len()
    );
    let (x, _) = residual_stream(config, layout, params, ids, &vec![0; ids.len()], false);
    head(config, layout, params, &x, from).1
}

/// Logits `[t, vocab]` for `ids`, one document (evaluation; the activations are dropped).
pub fn logits(config: &ModelConfig, layout: &Layout, params: &[f32], ids: &[u32]) -> Vec<f32> {
    forward(config, layout, params, ids, &vec![0; ids.len()]).logits
}

/// The row's weighted sum of cross-entropies `Σ_i w_i · ce_i` (no load-balancing loss, no
/// gradient): what an evaluation sums, and minus a sequence's log-probability when the
/// weights mark its completion.
pub fn row_loss_sum(config: &ModelConfig, layout: &Layout, params: &[f32], row: RowView) -> f64 {
    let (x, _) = residual_stream(config, layout, params, row.ids, row.doc_start, false);
    let logits = head(config, layout, params, &x, 0).1;
    let terms = cross_entropy::row_terms(&logits, row.targets, config.vocab_size);
    terms
        .iter()
        .zip(row.weights)
        .map(|(t, &w)| w as f64 * t)
        .sum()
}

/// The row's loss `Σ_i w_i · ce_i / scale.norm + scale.aux · load_balance`, where `ce_i` is
/// the cross-entropy of predicting `targets[i]` after the tokens of its document up to
/// `ids[i]`; adds its gradient to `grads`.
pub fn loss_and_grad(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    row: RowView,
    scale: LossScale,
    grads: &mut [f32],
) -> f32 {
    let (ids, targets, weights) = (row.ids, row.targets, row.weights);
    let ForwardPass {
        layers,
        x,
        normed,
        logits,
    } = forward(config, layout, params, ids, row.doc_start);
    let (n, positions, shape) = dims(config, row.doc_start);
    let (t, d) = (n.t, n.d);
    let model = &layout.tensors;
    let p = |slot: Slot| &params[slot.range()];
    let eps = config.rms_norm_eps;
    let vocab = config.vocab_size;
    let (aux_loss, aux_dprobs) = load_balance(config, &layers, scale.aux);
    let loss =
        cross_entropy::forward(&logits, targets, weights, scale.norm, vocab) + aux_loss * scale.aux;

    // Backward.
    let mut dlogits = vec![0.0; t * vocab];
    cross_entropy::backward(&logits, targets, weights, scale.norm, vocab, &mut dlogits);
    let mut dnormed = vec![0.0; t * d];
    linear::backward(
        &dlogits,
        &normed,
        p(model.head),
        t,
        d,
        vocab,
        &mut dnormed,
        &mut grads[model.head.range()],
        None,
    );
    let mut dx = vec![0.0; t * d];
    rmsnorm::backward(
        &dnormed,
        &x,
        p(model.norm),
        d,
        eps,
        &mut dx,
        &mut grads[model.norm.range()],
    );

    let mut scratch = vec![0.0; t * d];
    for (l, (layer, a)) in model.layers.iter().zip(&layers).enumerate().rev() {
        let attn = layer.attn;
        // Feed-forward: x = x_mid + ffn(n2), n2 = norm(x_mid).
        let aux = aux_dprobs.as_ref().map(|all| {
            let per_layer = all.len() / config.num_layers;
            &all[l * per_layer..(l + 1) * per_layer]
        });
        let dnormed2 = ffn::backward(
            config, &layer.ffn, params, &a.normed2, &a.ffn, &dx, aux, grads,
        );
        let ln2 = layer.post_attention_layernorm;
        rmsnorm::backward(
            &dnormed2,
            &a.x_mid,
            p(ln2),
            d,
            eps,
            &mut scratch,
            &mut grads[ln2.range()],
        );
        add(&mut dx, &scratch);

        // Attention: x_mid = x_in + o(attn(rope(q(n1)), rope(k(n1)), v(n1))), n1 = norm(x_in).
        let mut dattended = vec![0.0; t * n.hq * n.hd];
        linear::backward(
            &dx,
            &a.attended,
            p(attn.o),
            t,
            n.hq * n.hd,
            d,
            &mut dattended,
            &mut grads[attn.o.range()],
            None,
        );
        let (mut dq, mut dk, mut dv) = (
            vec![0.0; a.q.len()],
            vec![0.0; a.k.len()],
            vec![0.0; a.v.len()],
        );
        attention::backward(
            &dattended,
            &a.q,
            &a.k,
            &a.v,
            &a.probs,
            &shape,
            row.doc_start,
            &mut dq,
            &mut dk,
            &mut dv,
        );
        rope::backward(&mut dq, &positions, n.hq, n.hd, config.rope_theta);
        rope::backward(&mut dk, &positions, n.hkv, n.hd, config.rope_theta);
        let mut dnormed1 = vec![0.0; t * d];
        for (weight, bias, grad, width, first) in [
            (attn.q, attn.q_bias, &dq, n.hq * n.hd, true),
            (attn.k, attn.k_bias, &dk, n.hkv * n.hd, false),
            (attn.v, attn.v_bias, &dv, n.hkv * n.hd, false),
        ] {
            let target = if first { &mut dnormed1 } else { &mut scratch };
            let (dw, db) = match bias {
                Some(bias) => {
                    let (dw, db) = split_two(grads, weight, bias);
                    (dw, Some(db))
                }
                None => (&mut grads[weight.range()], None),
            };
            linear::backward(grad, &a.normed1, p(weight), t, d, width, target, dw, db);
            if !first {
                add(&mut dnormed1, &scratch);
            }
        }
        let ln1 = layer.input_layernorm;
        rmsnorm::backward(
            &dnormed1,
            &a.x_in,
            p(ln1),
            d,
            eps,
            &mut scratch,
            &mut grads[ln1.range()],
        );
        add(&mut dx, &scratch);
    }
    embedding::backward(ids, &dx, d, &mut grads[model.embed.range()]);
    loss
}

/// The top-k load-balancing loss as HuggingFace's Qwen2-MoE computes it: over the router
/// probabilities and choices of all layers together (`E · Σ_e f_e · P_e` on the stacked
/// `[layers · t, E]` matrix), times the coefficient. Returns the loss and its gradient for the
/// stacked probabilities times `scale`; `(0, None)` for other FFN kinds.
fn load_balance(
    config: &ModelConfig,
    layers: &[LayerActivations],
    scale: f32,
) -> (f32, Option<Vec<f32>>) {
    let Ffn::TopkMoe {
        n_experts,
        aux_coefficient,
        ..
    } = config.ffn
    else {
        return (0.0, None);
    };
    let routing: Vec<(&[f32], &[u32])> = layers
        .iter()
        .map(|a| match &a.ffn {
            ffn::FfnActivations::TopkMoe { probs, chosen, .. } => (&probs[..], &chosen[..]),
            _ => unreachable!("a top-k model's layers route top-k"),
        })
        .collect();
    let probs: Vec<f32> = routing
        .iter()
        .flat_map(|(probs, _)| probs.iter().copied())
        .collect();
    let chosen: Vec<u32> = routing
        .iter()
        .flat_map(|(_, chosen)| chosen.iter().copied())
        .collect();
    let mut dprobs = vec![0.0; probs.len()];
    let loss = topk::load_balance(&probs, &chosen, n_experts, aux_coefficient, &mut dprobs);
    dprobs.iter_mut().for_each(|d| *d *= scale);
    (loss, Some(dprobs))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::batch::Batch;
    use crate::model::config::{Ffn, ModelConfig};

    fn tiny(tie: bool) -> ModelConfig {
        tiny_with(
            tie,
            Ffn::Dense {
                intermediate_size: 12,
            },
        )
    }

    fn tiny_with(tie: bool, ffn: Ffn) -> ModelConfig {
        ModelConfig {
            vocab_size: 11,
            hidden_size: 8,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-6,
            qkv_bias: true,
            tie_embeddings: tie,
            max_positions: 64,
            ffn,
        }
    }

    /// A top-k MoE with a shared expert and a load-balancing loss.
    fn topk() -> Ffn {
        Ffn::TopkMoe {
            n_experts: 4,
            top_k: 2,
            expert_width: 6,
            renormalize: true,
            shared_expert_width: Some(5),
            aux_coefficient: 0.1,
        }
    }

    /// Deterministic test values in [-0.3, 0.3) (xorshift of `seed`).
    pub(crate) fn values(seed: u64, len: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.6
            })
            .collect()
    }

    /// Finite differences of the whole model's loss against `loss_and_grad`, a few
    /// coordinates of every parameter tensor.
    fn check_model(config: &ModelConfig, eps: f32) {
        let layout = Layout::new(config);
        let mut params = values(7, layout.len);
        // Two documents in one row, a prompt position left out of the loss.
        let mut batch = Batch::new(5);
        batch.push_row(
            &[1, 5, 3, 9, 2],
            &[5, 3, 9, 2, 7],
            &[0.0, 1.0, 1.0, 1.0, 1.0],
            &[0, 2],
        );
        let (row, scale) = (
            batch.row(0),
            LossScale {
                norm: 4.0,
                aux: 1.0,
            },
        );
        let mut grads = vec![0.0; layout.len];
        loss_and_grad(config, &layout, &params, row, scale, &mut grads);
        let mut scratch = vec![0.0; layout.len];
        for view in &layout.views {
            for i in (0..view.len()).step_by((view.len() / 4).max(1)) {
                let at = view.offset + i;
                let original = params[at];
                params[at] = original + eps;
                let up = loss_and_grad(config, &layout, &params, row, scale, &mut scratch) as f64;
                params[at] = original - eps;
                let down = loss_and_grad(config, &layout, &params, row, scale, &mut scratch) as f64;
                params[at] = original;
                let numeric = (up - down) / (2.0 * eps as f64);
                let analytic = grads[at] as f64;
                assert!(
                    (numeric - analytic).abs() <= 2e-3 + 2e-2 * numeric.abs(),
                    "{:?} {}[{i}]: analytic {analytic}, numeric {numeric}",
                    config.ffn,
                    view.name
                );
            }
        }
    }

    #[test]
    fn mixture_of_experts_gradients_match_finite_differences() {
        use crate::model::config::ExpertMlp;
        for mlp in [ExpertMlp::SwiGlu, ExpertMlp::DualSwiGlu] {
            check_model(
                &tiny_with(
                    false,
                    Ffn::SoftmaxMoe {
                        n_experts: 3,
                        expert_width: 6,
                        mlp,
                    },
                ),
                1e-2,
            );
        }
        check_model(&tiny_with(true, topk()), 1e-3);
    }

    #[test]
    fn whole_model_gradient_matches_finite_differences() {
        for tie in [true, false] {
            check_model(&tiny(tie), 1e-2);
        }
    }

    #[test]
    fn adamw_training_memorises_a_sequence() {
        use crate::optim::adamw::{AdamW, AdamWConfig, clip_global_norm};
        let config = tiny(true);
        let layout = Layout::new(&config);
        let mut params = values(3, layout.len);
        let mut optimizer = AdamW::new(AdamWConfig::default(), &layout);
        let batch = Batch::from_blocks(&[vec![1u32, 4, 7, 2, 9, 4, 7, 2, 9, 4]]);
        let scale = LossScale {
            norm: 9.0,
            aux: 1.0,
        };
        let mut losses = Vec::new();
        for _ in 0..150 {
            let mut grads = vec![0.0; layout.len];
            losses.push(loss_and_grad(
                &config,
                &layout,
                &params,
                batch.row(0),
                scale,
                &mut grads,
            ));
            clip_global_norm(&mut grads, 1.0);
            optimizer.update(&mut params, &grads, 1e-2);
        }
        // From about ln(11) ≈ 2.4 to well under a tenth of it.
        assert!(losses[0] > 2.0, "{}", losses[0]);
        assert!(
            *losses.last().unwrap() < 0.2,
            "{:?}",
            &losses[losses.len() - 5..]
        );
    }

    /// A packed row of two examples gives the loss and gradients of the two run separately
    /// (each loss summed over its trained tokens), for every FFN kind. The top-k
    /// load-balancing loss is left out (`aux: 0`): it is over the row's tokens together, not
    /// per document.
    #[test]
    fn packed_row_equals_its_examples_run_alone() {
        use crate::model::config::ExpertMlp;
        let kinds = [
            Ffn::Dense {
                intermediate_size: 12,
            },
            Ffn::SoftmaxMoe {
                n_experts: 3,
                expert_width: 6,
                mlp: ExpertMlp::DualSwiGlu,
            },
            topk(),
        ];
        for ffn in kinds {
            let config = tiny_with(false, ffn);
            let layout = Layout::new(&config);
            let params = values(11, layout.len);
            let scale = LossScale {
                norm: 5.0,
                aux: 0.0,
            };
            let (a_ids, a_targets, a_w) = ([1, 5, 3], [5, 3, 4], [0.0, 1.0, 1.0]);
            let (b_ids, b_targets, b_w) = ([2, 7, 6, 8], [7, 6, 8, 10], [0.0, 1.0, 1.0, 1.0]);
            let mut packed = Batch::new(7);
            let cat = |a: &[u32], b: &[u32]| [a, b].concat();
            packed.push_row(
                &cat(&a_ids, &b_ids),
                &cat(&a_targets, &b_targets),
                &[&a_w[..], &b_w[..]].concat(),
                &[0, 3],
            );
            let mut packed_grads = vec![0.0; layout.len];
            let packed_loss = loss_and_grad(
                &config,
                &layout,
                &params,
                packed.row(0),
                scale,
                &mut packed_grads,
            );
            let (mut a, mut b) = (Batch::new(3), Batch::new(4));
            a.push_row(&a_ids, &a_targets, &a_w, &[0]);
            b.push_row(&b_ids, &b_targets, &b_w, &[0]);
            let mut alone_grads = vec![0.0; layout.len];
            let alone_loss =
                loss_and_grad(&config, &layout, &params, a.row(0), scale, &mut alone_grads)
                    + loss_and_grad(&config, &layout, &params, b.row(0), scale, &mut alone_grads);
            assert!(
                (packed_loss - alone_loss).abs() < 1e-6,
                "{:?}: packed {packed_loss}, alone {alone_loss}",
                config.ffn
            );
            for (i, (p, q)) in packed_grads.iter().zip(&alone_grads).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-6 + 1e-5 * q.abs(),
                    "{:?} [{i}]: {p} vs {q}",
                    config.ffn
                );
            }
            // The row's summed loss agrees with the pass's.
            let sum = row_loss_sum(&config, &layout, &params, packed.row(0));
            assert!((sum / 5.0 - packed_loss as f64).abs() < 1e-6);
        }
    }
}
