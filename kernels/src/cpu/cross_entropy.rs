//! The language-model loss: mean cross-entropy of `logits[n, vocab]` against `targets[n]`.

/// Mean over tokens of `logsumexp(logits) - logits[target]`.
pub fn forward(logits: &[f32], targets: &[u32], vocab: usize) -> f32 {
    let total: f64 = logits
        .chunks(vocab)
        .zip(targets)
        .map(|(row, &t)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let sum: f64 = row.iter().map(|v| ((v - max) as f64).exp()).sum();
            sum.ln() + max as f64 - row[t as usize] as f64
        })
        .sum();
    (total / targets.len() as f64) as f32
}

/// `dlogits = (softmax(logits) - onehot(target)) / n`.
pub fn backward(logits: &[f32], targets: &[u32], vocab: usize, dlogits: &mut [f32]) {
    let n = targets.len() as f32;
    for ((row, out), &t) in logits
        .chunks(vocab)
        .zip(dlogits.chunks_mut(vocab))
        .zip(targets)
    {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        for (o, v) in out.iter_mut().zip(row) {
            *o = (v - max).exp() / sum / n;
        }
        out[t as usize] -= 1.0 / n;
    }
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
