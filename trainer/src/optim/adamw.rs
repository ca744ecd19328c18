//! AdamW (Loshchilov & Hutter): Adam moments with bias correction and *decoupled* weight
//! decay, `θ ← θ - lr·(m̂/(√v̂ + ε) + λθ)`, where `λ = 0` for norms and biases.

use crate::model::params::Layout;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// Moments laid out like the parameters, and the step count.
pub struct AdamW {
    pub config: AdamWConfig,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub step: u64,
    /// Per element: whether weight decay applies (not to norms and biases).
    decays: Vec<bool>,
}

/// Norm weights and biases are not decayed.
pub fn is_decayed(name: &str) -> bool {
    !(name.ends_with(".bias") || name.ends_with("norm.weight"))
}

impl AdamW {
    pub fn new(config: AdamWConfig, layout: &Layout) -> Self {
        let mut decays = vec![false; layout.len];
        for view in &layout.views {
            decays[view.range()].fill(is_decayed(&view.name));
        }
        AdamW {
            config,
            m: vec![0.0; layout.len],
            v: vec![0.0; layout.len],
            step: 0,
            decays,
        }
    }

    /// One update of `params` with `grads` at learning rate `lr`.
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        self.step += 1;
        let c = self.config;
        let correction1 = 1.0 - c.beta1.powi(self.step as i32);
        let correction2 = 1.0 - c.beta2.powi(self.step as i32);
        for i in 0..params.len() {
            let g = grads[i];
            self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * g;
            self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * g * g;
            let m_hat = self.m[i] / correction1;
            let v_hat = self.v[i] / correction2;
            let decay = if self.decays[i] {
                c.weight_decay * params[i]
            } else {
                0.0
            };
            params[i] -= lr * (m_hat / (v_hat.sqrt() + c.eps) + decay);
        }
    }
}

/// Scale `grads` so their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_global_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grads
        .iter()
        .map(|g| (*g as f64) * (*g as f64))
        .sum::<f64>()
        .sqrt() as f32;
    if norm > max_norm && norm > 0.0 {
        let scale = max_norm / norm;
        grads.iter_mut().for_each(|g| *g *= scale);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::View;

    fn layout() -> Layout {
        Layout {
            views: vec![
                View {
                    name: "w.weight".into(),
                    offset: 0,
                    shape: vec![1],
                },
                View {
                    name: "x.bias".into(),
                    offset: 1,
                    shape: vec![1],
                },
                View {
                    name: "input_layernorm.weight".into(),
                    offset: 2,
                    shape: vec![1],
                },
            ],
            len: 3,
            tensors: Default::default(),
        }
    }

    #[test]
    fn first_step_moves_by_lr_plus_decay_on_weights_only() {
        let mut opt = AdamW::new(
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.95,
                eps: 0.0,
                weight_decay: 0.1,
            },
            &layout(),
        );
        let mut params = [1.0, 1.0, 1.0];
        // After one step m̂ = g and v̂ = g², so the Adam part is lr · sign(g).
        opt.update(&mut params, &[0.5, -2.0, 3.0], 0.01);
        assert!((params[0] - (1.0 - 0.01 * (1.0 + 0.1))).abs() < 1e-7);
        assert!((params[1] - 1.01).abs() < 1e-7);
        assert!((params[2] - 0.99).abs() < 1e-7);
    }

    #[test]
    fn second_step_matches_a_hand_computation() {
        let mut opt = AdamW::new(
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            &layout(),
        );
        let mut params = [0.0; 3];
        opt.update(&mut params, &[1.0, 0.0, 0.0], 0.1);
        opt.update(&mut params, &[3.0, 0.0, 0.0], 0.1);
        // Step 1 moves by lr (see above). Step 2: m2 = 0.9·0.1 + 0.1·3 = 0.39,
        // v2 = 0.99·0.01 + 0.01·9 = 0.0999;
        // m̂ = 0.39/0.19, v̂ = 0.0999/0.0199; update = 0.1 · m̂/√v̂.
        let expected = -0.1 - 0.1 * (0.39f64 / 0.19) / (0.0999f64 / 0.0199).sqrt();
        assert!(
            (params[0] as f64 - expected).abs() < 1e-5,
            "{} vs {expected}",
            params[0]
        );
    }

    #[test]
    fn clipping_caps_the_global_norm() {
        let mut grads = [3.0, 4.0];
        assert_eq!(clip_global_norm(&mut grads, 1.0), 5.0);
        assert!((grads[0] - 0.6).abs() < 1e-6 && (grads[1] - 0.8).abs() < 1e-6);
        let mut small = [0.3, 0.4];
        clip_global_norm(&mut small, 1.0);
        assert_eq!(small, [0.3, 0.4]);
    }
}
