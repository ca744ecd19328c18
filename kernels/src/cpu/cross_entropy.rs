//! The language-model loss: mean cross-entropy of `logits[n, vocab]` against `targets[n]`.

use crate::cpu::MIN_PARALLEL;
use rayon::prelude::*;

/// Mean over tokens of `logsumexp(logits) - logits[target]`.
pub fn forward(logits: &[f32], targets: &[u32], vocab: usize) -> f32 {
    // Per-row terms in parallel, summed in row order (so any thread count gives the same sum).
    let terms: Vec<f64> = logits
        .par_chunks(vocab)
        .with_min_len((MIN_PARALLEL / vocab).max(1))
        .zip(targets)
        .map(|(row, &t)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let sum: f64 = row.iter().map(|v| ((v - max) as f64).exp()).sum();
            sum.ln() + max as f64 - row[t as usize] as f64
        })
        .collect();
    let total: f64 = terms.iter().sum();
    (total / targets.len() as f64) as f32
}

/// `dlogits = (softmax(logits) - onehot(target)) / n`.
pub fn backward(logits: &[f32], targets: &[u32], vocab: usize, dlogits: &mut [f32]) {
    let n = targets.len() as f32;
    logits
        .par_chunks(vocab)
        .zip(dlogits.par_chunks_mut(vocab))
        .with_min_len((MIN_PARALLEL / vocab).max(1))
        .zip(targets)
        .for_each(|((row, out), &t)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            for (o, v) in out.iter_mut().zip(row) {
                *o = (v - max).exp() / sum / n;
            }
            out[t as usize] -= 1.0 / n;
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gradcheck::{check, values};

    #[test]
    fn uniform_logits_give_log_vocab() {
        let loss = forward(&[0.0; 8], &[3, 1], 4);
        assert!((loss - 4f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (n, vocab) = (3, 7);
        let logits = values(14, n * vocab);
        let targets = [2, 6, 0];
        let mut grad = vec![0.0; n * vocab];
        backward(&logits, &targets, vocab, &mut grad);
        check("dlogits", &logits, &grad, |p| {
            forward(p, &targets, vocab) as f64
        });
    }
}
