//! RMSNorm: `y = x / sqrt(mean(x²) + ε) · w` over the last dimension `d`.

use crate::cpu::MIN_PARALLEL;
use rayon::prelude::*;

pub fn forward(x: &[f32], w: &[f32], d: usize, eps: f32, y: &mut [f32]) {
    // Rows are independent: in parallel (rayon), the same result for any thread count.
    x.par_chunks(d)
        .zip(y.par_chunks_mut(d))
        .with_min_len((MIN_PARALLEL / d).max(1))
        .for_each(|(row, out)| {
            let r = inverse_rms(row, eps);
            for ((o, v), g) in out.iter_mut().zip(row).zip(w) {
                *o = v * r * g;
            }
        });
}

fn inverse_rms(row: &[f32], eps: f32) -> f32 {
    let mean_square = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (mean_square + eps).sqrt()
}

/// With `r = 1/rms(x)`: `dx = r·(dy⊙w) - r³/d · x · Σ(dy⊙w⊙x)`, `dw += Σ_rows dy⊙x·r`.
pub fn backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    d: usize,
    eps: f32,
    dx: &mut [f32],
    dw: &mut [f32],
) {
    for ((row, grad), out) in x.chunks(d).zip(dy.chunks(d)).zip(dx.chunks_mut(d)) {
        let r = inverse_rms(row, eps);
        let dot: f32 = grad
            .iter()
            .zip(w)
            .zip(row)
            .map(|((g, w), v)| g * w * v)
            .sum();
        let k = r * r * r / d as f32 * dot;
        for i in 0..d {
            out[i] = r * grad[i] * w[i] - k * row[i];
            dw[i] += grad[i] * row[i] * r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gradcheck::{check, dot, values};

    #[test]
    fn normalises_to_unit_rms() {
        let mut y = [0.0; 2];
        forward(&[3.0, 4.0], &[1.0, 2.0], 2, 0.0, &mut y);
        // rms = sqrt(12.5); y = [3, 8] / sqrt(12.5).
        let rms = 12.5f32.sqrt();
        assert!((y[0] - 3.0 / rms).abs() < 1e-6 && (y[1] - 8.0 / rms).abs() < 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (n, d, eps) = (3, 6, 1e-6);
        let x = values(5, n * d);
        let w = values(6, d);
        let weights = values(7, n * d);
        let loss = |x: &[f32], w: &[f32]| {
            let mut y = vec![0.0; n * d];
            forward(x, w, d, eps, &mut y);
            dot(&y, &weights)
        };
        let (mut dx, mut dw) = (vec![0.0; n * d], vec![0.0; d]);
        backward(&weights, &x, &w, d, eps, &mut dx, &mut dw);
        check("dx", &x, &dx, |p| loss(p, &w));
        check("dw", &w, &dw, |p| loss(&x, p));
    }
}
