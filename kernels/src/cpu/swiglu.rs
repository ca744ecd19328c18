//! SwiGLU's gating: `h = silu(g) ⊙ u`, `silu(g) = g·σ(g)`. Elementwise, in parallel (rayon).

use crate::cpu::MIN_PARALLEL;
use rayon::prelude::*;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn forward(g: &[f32], u: &[f32], h: &mut [f32]) {
    h.par_iter_mut()
        .with_min_len(MIN_PARALLEL)
        .zip(g)
        .zip(u)
        .for_each(|((h, g), u)| *h = g * sigmoid(*g) * u);
}

/// `dg = dh ⊙ u ⊙ σ(g)(1 + g(1 - σ(g)))`, `du = dh ⊙ silu(g)`.
pub fn backward(dh: &[f32], g: &[f32], u: &[f32], dg: &mut [f32], du: &mut [f32]) {
    dg.par_iter_mut()
        .zip(du.par_iter_mut())
        .with_min_len(MIN_PARALLEL)
        .enumerate()
        .for_each(|(i, (dg, du))| {
            let s = sigmoid(g[i]);
            *dg = dh[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
            *du = dh[i] * g[i] * s;
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gradcheck::{check, dot, values};

    #[test]
    fn gradients_match_finite_differences() {
        let n = 12;
        let (g, u, weights) = (values(8, n), values(9, n), values(10, n));
        let loss = |g: &[f32], u: &[f32]| {
            let mut h = vec![0.0; n];
            forward(g, u, &mut h);
            dot(&h, &weights)
        };
        let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
        backward(&weights, &g, &u, &mut dg, &mut du);
        check("dg", &g, &dg, |p| loss(p, &u));
        check("du", &u, &du, |p| loss(&g, p));
        let mut h = [0.0];
        forward(&[0.0], &[5.0], &mut h);
        assert_eq!(h, [0.0]);
    }
}
