//! Rotary position embedding as Qwen2 / HuggingFace apply it ("rotate half"): for head
//! dimension `D` and `i < D/2`, the pair `(x_i, x_{i+D/2})` of a token at position `p` turns by
//! the angle `p · θ^(-2i/D)`. Layout `x: [n, heads, D]`, one position per token.

fn angle(position: u32, i: usize, head_dim: usize, theta: f32) -> (f32, f32) {
    let inv_freq = 1.0 / (theta as f64).powf(2.0 * i as f64 / head_dim as f64);
    let a = position as f64 * inv_freq;
    (a.cos() as f32, a.sin() as f32)
}

/// Rotate in place; `sign = -1` rotates back (the backward pass).
fn rotate(x: &mut [f32], positions: &[u32], heads: usize, head_dim: usize, theta: f32, sign: f32) {
    let half = head_dim / 2;
    for (token, &position) in x.chunks_mut(heads * head_dim).zip(positions) {
        for head in token.chunks_mut(head_dim) {
            for i in 0..half {
                let (cos, sin) = angle(position, i, head_dim, theta);
                let sin = sin * sign;
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * cos - b * sin;
                head[i + half] = b * cos + a * sin;
            }
        }
    }
}

pub fn forward(x: &mut [f32], positions: &[u32], heads: usize, head_dim: usize, theta: f32) {
    rotate(x, positions, heads, head_dim, theta, 1.0);
}

/// The rotation is orthogonal, so the gradient turns back by the same angle.
pub fn backward(dx: &mut [f32], positions: &[u32], heads: usize, head_dim: usize, theta: f32) {
    rotate(dx, positions, heads, head_dim, theta, -1.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gradcheck::{check, dot, values};

    #[test]
    fn position_zero_is_identity_and_norms_are_kept() {
        let x = values(11, 2 * 8);
        let mut y = x.clone();
        forward(&mut y, &[0, 5], 2, 4, 10000.0);
        assert_eq!(&y[..8], &x[..8]);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&y[8..]) - norm(&x[8..])).abs() < 1e-5);
        // D = 2, θ irrelevant for i = 0: angle = position. (1, 0) at position 1 -> (cos 1, sin 1).
        let mut z = [1.0, 0.0];
        forward(&mut z, &[1], 1, 2, 10000.0);
        assert!((z[0] - 1f32.cos()).abs() < 1e-6 && (z[1] - 1f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (n, heads, d) = (3, 2, 4);
        let x = values(12, n * heads * d);
        let weights = values(13, n * heads * d);
        let positions = [0, 3, 7];
        let mut grad = weights.clone();
        backward(&mut grad, &positions, heads, d, 10000.0);
        check("dx", &x, &grad, |p| {
            let mut y = p.to_vec();
            forward(&mut y, &positions, heads, d, 10000.0);
            dot(&y, &weights)
        });
    }
}
