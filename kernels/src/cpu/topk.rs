//! Token-choice top-k routing (Qwen1.5-MoE style) and its load-balancing loss.
//!
//! From router probabilities `probs: [n, experts]` each token picks its `k` most probable
//! experts (ties to the lower index); their weights are the probabilities, optionally
//! renormalised to sum to 1 per token.

/// Route every token: `experts[n, k]` and `weights[n, k]`.
pub fn route(
    probs: &[f32],
    n_experts: usize,
    k: usize,
    renormalize: bool,
    experts: &mut [u32],
    weights: &mut [f32],
) {
    for ((row, ex), w) in probs
        .chunks(n_experts)
        .zip(experts.chunks_mut(k))
        .zip(weights.chunks_mut(k))
    {
        let mut order: Vec<usize> = (0..n_experts).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for slot in 0..k {
            ex[slot] = order[slot] as u32;
            w[slot] = row[order[slot]];
        }
        if renormalize {
            let sum: f32 = w.iter().sum();
            w.iter_mut().for_each(|x| *x /= sum);
        }
    }
}

/// Gradient of the routing weights with respect to `probs` (the choice itself is not
/// differentiable). `dprobs` is overwritten; it is zero off the chosen experts.
pub fn route_backward(
    dweights: &[f32],
    probs: &[f32],
    experts: &[u32],
    n_experts: usize,
    k: usize,
    renormalize: bool,
    dprobs: &mut [f32],
) {
    dprobs.fill(0.0);
    for t in 0..experts.len() / k {
        let ex = &experts[t * k..(t + 1) * k];
        let dw = &dweights[t * k..(t + 1) * k];
        let row = &probs[t * n_experts..(t + 1) * n_experts];
        let out = &mut dprobs[t * n_experts..(t + 1) * n_experts];
        if renormalize {
            // w_s = p_s / S with S = Σ p: dp_s = (dw_s - Σ dw·w) / S.
            let sum: f32 = ex.iter().map(|&e| row[e as usize]).sum();
            let weighted: f32 = ex
                .iter()
                .zip(dw)
                .map(|(&e, g)| row[e as usize] / sum * g)
                .sum();
            for (&e, g) in ex.iter().zip(dw) {
                out[e as usize] = (g - weighted) / sum;
            }
        } else {
            for (&e, g) in ex.iter().zip(dw) {
                out[e as usize] = *g;
            }
        }
    }
}

/// The auxiliary load-balancing loss of HuggingFace's Qwen2-MoE (Switch Transformer's):
/// `E · Σ_e f_e · P_e`, with `f_e` the routed (token, slot) pairs that chose `e` per token and
/// `P_e` the mean router probability of `e`. Returns the loss; `dprobs += coefficient ·
/// E · f_e / n` (the counts are constants).
pub fn load_balance(
    probs: &[f32],
    experts: &[u32],
    n_experts: usize,
    coefficient: f32,
    dprobs: &mut [f32],
) -> f32 {
    let n = probs.len() / n_experts;
    let mut counts = vec![0.0f32; n_experts];
    for &e in experts {
        counts[e as usize] += 1.0;
    }
    let mut mean_prob = vec![0.0f32; n_experts];
    for row in probs.chunks(n_experts) {
        for (m, p) in mean_prob.iter_mut().zip(row) {
            *m += p / n as f32;
        }
    }
    let e = n_experts as f32;
    for row in dprobs.chunks_mut(n_experts) {
        for (g, c) in row.iter_mut().zip(&counts) {
            *g += coefficient * e * (c / n as f32) / n as f32;
        }
    }
    coefficient
        * e
        * counts
            .iter()
            .zip(&mean_prob)
            .map(|(c, p)| c / n as f32 * p)
            .sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gradcheck::{check, dot, values};

    #[test]
    fn picks_the_most_probable_experts() {
        let probs = [0.1, 0.5, 0.3, 0.1, 0.25, 0.25, 0.25, 0.25];
        let (mut ex, mut w) = ([0u32; 4], [0.0f32; 4]);
        route(&probs, 4, 2, true, &mut ex, &mut w);
        assert_eq!(ex, [1, 2, 0, 1]);
        assert!((w[0] - 0.625).abs() < 1e-6 && (w[1] - 0.375).abs() < 1e-6);
        assert_eq!(&w[2..], &[0.5, 0.5]);
    }

    #[test]
    fn weight_gradients_match_finite_differences() {
        let (n, e, k) = (3, 5, 2);
        // Levels 0.1 apart, so a finite-difference step never changes the choice.
        let probs: Vec<f32> = (0..n * e)
            .map(|i| 0.1 + 0.1 * ((i * 3 + i / e) % e) as f32)
            .collect();
        for renormalize in [false, true] {
            let (mut ex, mut w) = (vec![0u32; n * k], vec![0.0; n * k]);
            route(&probs, e, k, renormalize, &mut ex, &mut w);
            let dweights = values(33, n * k);
            let mut dprobs = vec![0.0; n * e];
            route_backward(&dweights, &probs, &ex, e, k, renormalize, &mut dprobs);
            // Finite differences with the routing held fixed (small steps do not change it here).
            check("dprobs", &probs, &dprobs, |p| {
                let (mut ex2, mut w2) = (vec![0u32; n * k], vec![0.0; n * k]);
                route(p, e, k, renormalize, &mut ex2, &mut w2);
                assert_eq!(ex2, ex, "a probe changed the routing");
                dot(&w2, &dweights)
            });
        }
    }

    #[test]
    fn balanced_routing_has_loss_equal_to_k() {
        // Uniform probabilities and perfectly spread choices: E · Σ (k/E)(1/E) = k.
        let (n, e, k) = (4, 4, 2);
        let probs = vec![0.25; n * e];
        let experts = [0, 1, 2, 3, 0, 1, 2, 3];
        let mut dprobs = vec![0.0; n * e];
        let loss = load_balance(&probs, &experts, e, 1.0, &mut dprobs);
        assert!((loss - k as f32).abs() < 1e-6);
        check("dprobs", &probs, &dprobs, |p| {
            let mut scratch = vec![0.0; n * e];
            load_balance(p, &experts, e, 1.0, &mut scratch) as f64
        });
    }
}
