//! Row softmax over the last dimension `d` (the softmax-MoE gate and the top-k router).

pub fn forward(x: &[f32], d: usize, y: &mut [f32]) {
    for (row, out) in x.chunks(d).zip(y.chunks_mut(d)) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let mut sum = 0.0;
        for (o, v) in out.iter_mut().zip(row) {
            *o = (v - max).exp();
            sum += *o;
        }
        for o in out.iter_mut() {
            *o /= sum;
        }
    }
}

/// `dx = y ⊙ (dy - Σ y⊙dy)` per row, from the forward's output `y`.
pub fn backward(dy: &[f32], y: &[f32], d: usize, dx: &mut [f32]) {
    for ((g, p), out) in dy.chunks(d).zip(y.chunks(d)).zip(dx.chunks_mut(d)) {
        let weighted: f32 = g.iter().zip(p).map(|(a, b)| a * b).sum();
        for ((o, a), b) in out.iter_mut().zip(g).zip(p) {
            *o = b * (a - weighted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gradcheck::{check, dot, values};

    #[test]
    fn rows_sum_to_one_and_gradients_match() {
        let (n, d) = (3, 5);
        let x = values(30, n * d);
        let mut y = vec![0.0; n * d];
        forward(&x, d, &mut y);
        for row in y.chunks(d) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let weights = values(31, n * d);
        let mut dx = vec![0.0; n * d];
        backward(&weights, &y, d, &mut dx);
        check("dx", &x, &dx, |p| {
            let mut y = vec![0.0; n * d];
            forward(p, d, &mut y);
            dot(&y, &weights)
        });
    }
}
