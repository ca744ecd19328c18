//! The language-model loss: weighted cross-entropy of `logits[n, vocab]` against
//! `targets[n]`, `Σ_i w_i · (logsumexp(logits_i) - logits_i[target_i]) / norm`. With every
//! weight 1 and `norm = n` it is the mean over tokens; a weight of 0 leaves a position out.

use crate::cpu::MIN_PARALLEL;
use rayon::prelude::*;

/// Each row's `logsumexp(logits) - logits[target]`, in f64.
pub fn row_terms(logits: &[f32], targets: &[u32], vocab: usize) -> Vec<f64> {
    logits
        .par_chunks(vocab)
        .with_min_len((MIN_PARALLEL / vocab).max(1))
        .zip(targets)
        .map(|(row, &t)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let sum: f64 = row.iter().map(|v| ((v - max) as f64).exp()).sum();
            sum.ln() + max as f64 - row[t as usize] as f64
        })
        .collect()
}

/// `Σ_i w_i · term_i / norm`, summed in row order (so any thread count gives the same sum).
pub fn forward(logits: &[f32], targets: &[u32], weights: &[f32], norm: f32, vocab: usize) -> f32 {
    assert_eq!(weights.len(), targets.len(), "a weight per target");
    let terms = row_terms(logits, targets, vocab);
    let total: f64 = terms.iter().zip(weights).map(|(t, &w)| w as f64 * t).sum();
    (total / norm as f64) as f32
}

/// `dlogits_i = (softmax(logits_i) - onehot(target_i)) / norm · w_i`.
pub fn backward(
    logits: &[f32],
    targets: &[u32],
    weights: &[f32],
    norm: f32,
    vocab: usize,
    dlogits: &mut [f32],
) {
    assert_eq!(weights.len(), targets.len(), "a weight per target");
    logits
        .par_chunks(vocab)
        .zip(dlogits.par_chunks_mut(vocab))
        .with_min_len((MIN_PARALLEL / vocab).max(1))
        .zip(targets.par_iter().zip(weights))
        .for_each(|((row, out), (&t, &w))| {
            if w == 0.0 {
                out.fill(0.0);
                return;
            }
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            for (o, v) in out.iter_mut().zip(row) {
                *o = (v - max).exp() / sum / norm * w;
            }
            out[t as usize] -= w / norm;
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gradcheck::{check, values};

    #[test]
    fn uniform_logits_give_log_vocab() {
        let loss = forward(&[0.0; 8], &[3, 1], &[1.0, 1.0], 2.0, 4);
        assert!((loss - 4f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn zero_weights_leave_positions_out() {
        let (n, vocab) = (3, 5);
        let logits = values(15, n * vocab);
        let (targets, weights) = ([1, 4, 2], [1.0, 0.0, 1.0]);
        let both = forward(&logits, &targets, &weights, 2.0, vocab);
        // The same as the two trained rows alone.
        let mut kept = logits[..vocab].to_vec();
        kept.extend_from_slice(&logits[2 * vocab..]);
        let alone = forward(&kept, &[1, 2], &[1.0, 1.0], 2.0, vocab);
        assert_eq!(both, alone);
        let mut grad = vec![1.0; n * vocab];
        backward(&logits, &targets, &weights, 2.0, vocab, &mut grad);
        assert!(grad[vocab..2 * vocab].iter().all(|&g| g == 0.0));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (n, vocab) = (3, 7);
        let logits = values(14, n * vocab);
        let targets = [2, 6, 0];
        // Unit weights (the mean), then any weights, negative ones included (DPO's).
        for weights in [[1.0, 1.0, 1.0], [0.5, -1.5, 2.0]] {
            let mut grad = vec![0.0; n * vocab];
            backward(&logits, &targets, &weights, 3.0, vocab, &mut grad);
            check("dlogits", &logits, &grad, |p| {
                forward(p, &targets, &weights, 3.0, vocab) as f64
            });
        }
    }
}
