//! Learning-rate schedules over optimizer steps: linear warm-up, then cosine decay to `min_lr`
//! or warm-up-stable-decay (constant, then a linear decay over the last `decay_steps`).

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    Cosine {
        max_lr: f32,
        min_lr: f32,
        warmup: u64,
        total: u64,
    },
    WarmupStableDecay {
        max_lr: f32,
        min_lr: f32,
        warmup: u64,
        total: u64,
        decay_steps: u64,
    },
}

impl Schedule {
    /// The learning rate of step `step` (0-based).
    pub fn lr(&self, step: u64) -> f32 {
        match *self {
            Schedule::Cosine {
                max_lr,
                min_lr,
                warmup,
                total,
            } => {
                if step < warmup {
                    return max_lr * (step + 1) as f32 / warmup as f32;
                }
                let span = total.saturating_sub(warmup).max(1);
                let progress = ((step - warmup) as f32 / span as f32).min(1.0);
                min_lr + 0.5 * (max_lr - min_lr) * (1.0 + (std::f32::consts::PI * progress).cos())
            }
            Schedule::WarmupStableDecay {
                max_lr,
                min_lr,
                warmup,
                total,
                decay_steps,
            } => {
                if step < warmup {
                    return max_lr * (step + 1) as f32 / warmup as f32;
                }
                let decay_start = total.saturating_sub(decay_steps);
                if step < decay_start {
                    return max_lr;
                }
                let progress = ((step - decay_start) as f32 / decay_steps.max(1) as f32).min(1.0);
                max_lr + (min_lr - max_lr) * progress
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_then_decays_to_min() {
        let s = Schedule::Cosine {
            max_lr: 1.0,
            min_lr: 0.1,
            warmup: 10,
            total: 110,
        };
        assert!((s.lr(0) - 0.1).abs() < 1e-6);
        assert!((s.lr(9) - 1.0).abs() < 1e-6);
        assert!((s.lr(10) - 1.0).abs() < 1e-6);
        assert!((s.lr(60) - 0.55).abs() < 1e-6);
        assert!((s.lr(110) - 0.1).abs() < 1e-6);
        assert!((s.lr(500) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn wsd_is_flat_then_decays_linearly() {
        let s = Schedule::WarmupStableDecay {
            max_lr: 1.0,
            min_lr: 0.0,
            warmup: 2,
            total: 100,
            decay_steps: 20,
        };
        assert!((s.lr(0) - 0.5).abs() < 1e-6);
        assert_eq!(s.lr(50), 1.0);
        assert_eq!(s.lr(79), 1.0);
        assert!((s.lr(90) - 0.5).abs() < 1e-6);
        assert_eq!(s.lr(100), 0.0);
    }
}
