//! The next token from logits, as `transformers`' `generate` picks it: the repetition penalty
//! on the logits first, then the warpers in the order `generate` applies them — temperature,
//! top-k, top-p, min-p — each removing tokens by setting their logit to `-inf`, then a draw
//! from the softmax of what is left, with a seeded generator. Temperature 0 is greedy: the
//! argmax after the repetition penalty (what `do_sample=False` does: the penalty is a logits
//! processor and applies, the warpers do not).
//!
//! Each filter follows its `transformers` warper (`TopKLogitsWarper`, `TopPLogitsWarper`,
//! `MinPLogitsWarper`, `min_tokens_to_keep = 1`), with probabilities in f64.

use crate::error::TrainError;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// Logits are divided by it; 0: greedy.
    pub temperature: f32,
    /// Keep the `top_k` highest logits (and any tied with the last of them); 0: off.
    pub top_k: usize,
    /// Keep the highest-probability tokens whose mass reaches `top_p` (at least one); 1: off.
    pub top_p: f32,
    /// Drop tokens less probable than `min_p` times the most probable one; 0: off.
    pub min_p: f32,
    /// For every token already in the sequence (prompt included), a positive logit is divided
    /// by it and a negative one multiplied; 1: off.
    pub repetition_penalty: f32,
}

impl SamplingParams {
    /// Greedy decoding, no penalty: the default of `steel generate`.
    pub const GREEDY: SamplingParams = SamplingParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
    };

    /// Qwen's chat models' `generation_config.json` (temperature 0.7, top-k 20, top-p 0.8,
    /// repetition penalty 1.05): the default of `steel chat`.
    pub const CHAT: SamplingParams = SamplingParams {
        temperature: 0.7,
        top_k: 20,
        top_p: 0.8,
        min_p: 0.0,
        repetition_penalty: 1.05,
    };

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Settings(what));
        // Below MIN_TEMPERATURE, logits / temperature can overflow f32 and the draw would be
        // meaningless; 0 is the greedy limit.
        if !(self.temperature == 0.0
            || (self.temperature >= MIN_TEMPERATURE && self.temperature.is_finite()))
        {
            return bad(format!(
                "temperature {} must be 0 (greedy) or at least {MIN_TEMPERATURE}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top-p {} must be in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min-p {} must be in [0, 1]", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition penalty {} must be positive",
                self.repetition_penalty
            ));
        }
        Ok(())
    }
}

/// The smallest temperature other than 0 (greedy).
pub const MIN_TEMPERATURE: f32 = 1e-4;

/// `RepetitionPenaltyLogitsProcessor`: each distinct token of `context` has its logit divided
/// by `penalty` if positive, multiplied if negative.
pub fn repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen: Vec<u32> = context.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for id in seen {
        if let Some(logit) = logits.get_mut(id as usize) {
            *logit = if *logit < 0.0 {
                *logit * penalty
            } else {
                *logit / penalty
            };
        }
    }
}

/// `TemperatureLogitsWarper`.
pub fn temperature(logits: &mut [f32], temperature: f32) {
    if temperature != 1.0 {
        logits.iter_mut().for_each(|l| *l /= temperature);
    }
}

/// `TopKLogitsWarper`: logits below the `k`-th highest become `-inf` (ties with it stay).
pub fn top_k(logits: &mut [f32], k: usize) {
    if k == 0 || k >= logits.len() {
        return;
    }
    let mut sorted = logits.to_vec();
    sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = sorted[k - 1];
    logits
        .iter_mut()
        .filter(|l| **l < threshold)
        .for_each(|l| *l = f32::NEG_INFINITY);
}

/// Softmax of `logits` in f64 (`-inf` gives 0).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, l| m.max(*l)) as f64;
    let exp: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// `TopPLogitsWarper`: in increasing order of logit, tokens whose cumulative probability is
/// at most `1 - p` become `-inf`; the most probable token always stays.
pub fn top_p(logits: &mut [f32], p: f32) {
    if p >= 1.0 {
        return;
    }
    let probs = softmax(logits);
    // Removed tokens (-inf) have probability 0 and stay removed: sort only the others.
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i] > f32::NEG_INFINITY)
        .collect();
    order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    let Some((_, below_top)) = order.split_last() else {
        return;
    };
    let mut cumulative = 0.0;
    for &i in below_top {
        cumulative += probs[i];
        if cumulative > 1.0 - p as f64 {
            break;
        }
        logits[i] = f32::NEG_INFINITY;
    }
}

/// `MinPLogitsWarper`: tokens less probable than `p` times the most probable one become
/// `-inf` (so the most probable always stays).
pub fn min_p(logits: &mut [f32], p: f32) {
    if p <= 0.0 {
        return;
    }
    let probs = softmax(logits);
    let threshold = p as f64 * probs.iter().fold(0.0f64, |m, q| m.max(*q));
    for (logit, prob) in logits.iter_mut().zip(probs) {
        if prob < threshold {
            *logit = f32::NEG_INFINITY;
        }
    }
}

/// The logits a token is drawn from: `logits` after the repetition penalty over `context`,
/// then temperature, top-k, top-p and min-p (removed tokens at `-inf`). With temperature 0
/// only the penalty applies (greedy takes the argmax of these).
pub fn warp(params: &SamplingParams, logits: &[f32], context: &[u32]) -> Vec<f32> {
    let mut out = logits.to_vec();
    repetition_penalty(&mut out, context, params.repetition_penalty);
    if params.temperature == 0.0 {
        return out;
    }
    temperature(&mut out, params.temperature);
    top_k(&mut out, params.top_k);
    top_p(&mut out, params.top_p);
    min_p(&mut out, params.min_p);
    out
}

/// The first index of the highest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Draws tokens with `params` from a generator seeded once: the same seed, logits and
/// contexts give the same tokens.
pub struct Sampler {
    params: SamplingParams,
    rng: Xoshiro256PlusPlus,
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Sampler {
        Sampler {
            params,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The next token after `context` (the sequence so far, prompt included) given its
    /// `logits: [vocab]`.
    pub fn sample(&mut self, logits: &[f32], context: &[u32]) -> u32 {
        let warped = warp(&self.params, logits, context);
        if self.params.temperature == 0.0 {
            return argmax(&warped);
        }
        let probs = softmax(&warped);
        // Inverse CDF of one uniform draw in [0, 1).
        let u = self.rng.random::<f64>();
        let mut cumulative = 0.0;
        let mut last_possible = 0;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                cumulative += p;
                last_possible = i;
                if u < cumulative {
                    return i as u32;
                }
            }
        }
        last_possible as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!((a - e).abs() < 1e-6, "[{i}]: {a} vs {e} ({actual:?})");
        }
    }

    /// Logits whose softmax is `probs` exactly: their logarithms.
    fn logits_of(probs: &[f64]) -> Vec<f32> {
        probs.iter().map(|p| p.ln() as f32).collect()
    }

    fn params() -> SamplingParams {
        SamplingParams {
            temperature: 1.0,
            ..SamplingParams::GREEDY
        }
    }

    fn distribution(params: SamplingParams, logits: &[f32], context: &[u32]) -> Vec<f64> {
        softmax(&warp(&params, logits, context))
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
        // Ascending: 0.05, 0.15, 0.3, 0.5, cumulative 0.05, 0.2, 0.5, 1. Top-p 0.9 removes
        // cumulative <= 0.1: only 0.05; the rest renormalised by 0.95.
        let top = |p| SamplingParams {
            top_p: p,
            ..params()
        };
        close(
            &distribution(top(0.9), &logits, &[]),
            &[0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0],
        );
        // Top-p 0.75 removes cumulative <= 0.25: 0.05 and 0.15; 0.5 and 0.3 over 0.8.
        close(
            &distribution(top(0.75), &logits, &[]),
            &[0.625, 0.375, 0.0, 0.0],
        );
        // A tiny top-p still keeps the most probable token.
        close(
            &distribution(top(0.01), &logits, &[]),
            &[1.0, 0.0, 0.0, 0.0],
        );
    }

    #[test]
    fn top_k_keeps_the_k_highest_and_their_ties() {
        let logits = [1.0, 3.0, 2.0, 3.0];
        let k = |k| SamplingParams {
            top_k: k,
            ..params()
        };
        // The 2nd highest is 3 (twice): both 3s stay, at 1/2 each.
        close(&distribution(k(2), &logits, &[]), &[0.0, 0.5, 0.0, 0.5]);
        // Top-3: logits 3, 2, 3 stay: e³/(2e³ + e²) = 1/(2 + 1/e) = 0.4223188,
        // e²/(2e³ + e²) = (1/e)/(2 + 1/e) = 0.1553624.
        close(
            &distribution(k(3), &logits, &[]),
            &[0.0, 0.42231879, 0.15536242, 0.42231879],
        );
    }

    #[test]
    fn min_p_drops_tokens_below_a_share_of_the_top_probability() {
        let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
        // min-p 0.4: threshold 0.4 · 0.5 = 0.2: 0.15 and 0.05 go; 0.5 and 0.3 over 0.8.
        let min = |p| SamplingParams {
            min_p: p,
            ..params()
        };
        close(
            &distribution(min(0.4), &logits, &[]),
            &[0.625, 0.375, 0.0, 0.0],
        );
        // min-p 0.2: threshold 0.1: only 0.05 goes.
        close(
            &distribution(min(0.2), &logits, &[]),
            &[0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0],
        );
    }

    #[test]
    fn temperature_and_repetition_penalty_reshape_the_logits() {
        // Temperature 2 on [2, 0]: [1, 0], softmax e/(e + 1) = 0.7310586, 1/(e + 1).
        let hot = SamplingParams {
            temperature: 2.0,
            ..params()
        };
        close(
            &distribution(hot, &[2.0, 0.0], &[]),
            &[0.73105858, 0.26894142],
        );
        // Penalty 2 on tokens 0 and 1 (1 twice): 2 → 1, -1 → -2; token 2 untouched.
        let penalised = SamplingParams {
            repetition_penalty: 2.0,
            ..params()
        };
        assert_eq!(
            warp(&penalised, &[2.0, -1.0, 0.5], &[1, 0, 1]),
            [1.0, -2.0, 0.5]
        );
    }

    #[test]
    fn filters_apply_in_transformers_order() {
        let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
        // Temperature 2 first: probabilities ∝ √p = 0.70711, 0.54772, 0.38730, 0.22361
        // (sum 1.86573): 0.37899, 0.29357, 0.20759, 0.11985. Then top-p 0.9 removes
        // cumulative <= 0.1 — none, as 0.11985 > 0.1 — so all four stay.
        let both = SamplingParams {
            temperature: 2.0,
            top_p: 0.9,
            ..params()
        };
        let sqrt: Vec<f64> = [0.5f64, 0.3, 0.15, 0.05].iter().map(|p| p.sqrt()).collect();
        let sum: f64 = sqrt.iter().sum();
        let expected: Vec<f64> = sqrt.iter().map(|s| s / sum).collect();
        close(&distribution(both, &logits, &[]), &expected);
        // Top-k 3 before top-p 0.7: [0.4, 0.3, 0.2] renormalised by 0.9 is 0.444, 0.333,
        // 0.222; ascending cumulative 0.222, 0.556, 1: removes 0.222 (≤ 0.3). 0.4 and 0.3
        // stay, over 0.7: 4/7 and 3/7.
        let logits = logits_of(&[0.4, 0.3, 0.2, 0.1]);
        let k_then_p = SamplingParams {
            top_k: 3,
            top_p: 0.7,
            ..params()
        };
        close(
            &distribution(k_then_p, &logits, &[]),
            &[4.0 / 7.0, 3.0 / 7.0, 0.0, 0.0],
        );
    }

    #[test]
    fn temperature_zero_is_the_argmax_after_the_penalty() {
        let mut greedy = Sampler::new(SamplingParams::GREEDY, 0);
        assert_eq!(greedy.sample(&[0.1, 2.0, 1.5, 2.0], &[]), 1);
        // Penalty 2 on token 1: 2 → 1, so token 3 (2.0) is the highest.
        let mut penalised = Sampler::new(
            SamplingParams {
                repetition_penalty: 2.0,
                ..SamplingParams::GREEDY
            },
            0,
        );
        assert_eq!(penalised.sample(&[0.1, 2.0, 1.5, 1.9], &[1]), 3);
    }

    #[test]
    fn a_seeded_sampler_repeats_and_draws_the_filtered_distribution() {
        let logits = logits_of(&[0.5, 0.3, 0.15, 0.05]);
        let p = SamplingParams {
            top_p: 0.9,
            ..params()
        };
        let draw = |seed| {
            let mut sampler = Sampler::new(p, seed);
            (0..20_000)
                .map(|_| sampler.sample(&logits, &[]))
                .collect::<Vec<u32>>()
        };
        let (a, b, other) = (draw(7), draw(7), draw(8));
        assert_eq!(a, b);
        assert_ne!(a[..64], other[..64]);
        // The draws follow top-p 0.9's distribution: 0.526, 0.316, 0.158, never token 3.
        let mut counts = [0usize; 4];
        a.iter().for_each(|&t| counts[t as usize] += 1);
        let expected = [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0];
        for (count, e) in counts.iter().zip(expected) {
            let share = *count as f64 / a.len() as f64;
            assert!((share - e).abs() < 0.015, "{counts:?}");
        }
        assert_eq!(counts[3], 0);
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [
            SamplingParams {
                temperature: -1.0,
                ..params()
            },
            SamplingParams {
                top_p: 0.0,
                ..params()
            },
            SamplingParams {
                min_p: 1.5,
                ..params()
            },
            SamplingParams {
                repetition_penalty: 0.0,
                ..params()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(SamplingParams::CHAT.validate().is_ok());
    }
}
