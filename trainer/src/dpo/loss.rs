//! The loss of one preference pair and its derivatives, for each [`Variant`].
//!
//! Notation: `c` and `r` are the policy's log-probabilities of the chosen and the rejected
//! completion given the prompt, summed over the completion's tokens (≤ 0); `c_ref`, `r_ref` the
//! reference model's; `n_c`, `n_r` the completions' lengths in tokens; `ĉ = c / n_c` and
//! `r̂ = r / n_r` the length-averaged log-probabilities; `h = (c − c_ref) − (r − r_ref)` the
//! DPO margin (how much more the policy prefers the chosen completion than the reference
//! does); `σ` the logistic function, `log σ(x) = −softplus(−x)`.
//!
//! [`pair_loss`] returns `L` with `∂L/∂c` and `∂L/∂r` (the reference is frozen, so the
//! derivatives with respect to `c_ref`, `r_ref` are not needed), and the metrics TRL logs for
//! the variant ([`Metrics`]). Everything is computed in `f64` through softplus, `ln_1p` and
//! `exp_m1`, finite for any finite input.

use crate::error::TrainError;

/// The preference loss, named as TRL names it (`loss_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `sigmoid` — DPO (Rafailov et al. 2023): the Bradley–Terry likelihood of the preference
    /// under the implicit reward `β · log(π/π_ref)`, `L = −log σ(βh)`. With label smoothing
    /// `ε` it is conservative DPO (cDPO, Mitchell 2023): the label is taken as wrong with
    /// probability `ε`, `L = −(1−ε) · log σ(βh) − ε · log σ(−βh)`. (TRL applied `ε` to
    /// `sigmoid` this way up to its DPO refactor of February 2026, which dropped it there.)
    Sigmoid,
    /// `robust` — robust DPO (Chowdhury et al. 2024): an unbiased estimate of the clean DPO
    /// loss when labels are flipped with probability `ε < ½`,
    /// `L = (−(1−ε) · log σ(βh) + ε · log σ(−βh)) / (1 − 2ε)`.
    Robust,
    /// `ipo` — IPO (Azar et al. 2023, eq. 17): regresses the margin onto `1/(2β)` instead of
    /// pushing it to infinity, `L = (h̄ − 1/(2β))²`. As in TRL, the margin is of
    /// length-averaged log-ratios, `h̄ = (c − c_ref)/n_c − (r − r_ref)/n_r` (TRL confirmed
    /// with the IPO authors that the paper's results use this normalisation); `β` is the
    /// paper's `τ`.
    Ipo,
    /// `hinge` — the SLiC hinge loss on the DPO margin (as in RSO, Liu et al. 2023):
    /// `L = max(0, 1 − βh)`; `1/β` is the margin beyond which a pair adds nothing.
    Hinge,
    /// `simpo` — SimPO (Meng et al. 2024), reference-free: the implicit reward is the
    /// length-averaged log-probability, with a target margin `γ`,
    /// `L = −(1−ε) · log σ(z) − ε · log σ(−z)`, `z = β(ĉ − r̂) − γ` (TRL's `CPOTrainer` with
    /// `loss_type="simpo"` and `cpo_alpha=0`, which writes `z = β(ĉ − r̂ − γ/β)`).
    Simpo,
    /// `orpo` — ORPO (Hong et al. 2024), reference-free: the chosen completion's NLL plus an
    /// odds-ratio term, `L = −ĉ − λ · log σ(log_odds)`, where `odds(p) = p/(1−p)` of the
    /// length-averaged probability and
    /// `log_odds = (ĉ − log(1 − e^ĉ)) − (r̂ − log(1 − e^r̂))`; `λ` is [`Settings::beta`], as
    /// TRL's `ORPOConfig.beta` is. The NLL here is the mean over the chosen completion's
    /// tokens (the paper's SFT term); TRL's `ORPOTrainer` takes it over the prompt's tokens as
    /// well, and as one mean over all chosen tokens of a batch rather than per pair.
    Orpo,
}

impl Variant {
    /// Every variant, in the order of their names in messages.
    pub const ALL: [Variant; 6] = [
        Variant::Sigmoid,
        Variant::Robust,
        Variant::Ipo,
        Variant::Hinge,
        Variant::Simpo,
        Variant::Orpo,
    ];

    /// TRL's name for the variant (`loss_type`).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Sigmoid => "sigmoid",
            Variant::Robust => "robust",
            Variant::Ipo => "ipo",
            Variant::Hinge => "hinge",
            Variant::Simpo => "simpo",
            Variant::Orpo => "orpo",
        }
    }

    /// Whether the loss reads the reference model's log-probabilities (`simpo` and `orpo`
    /// do not: no reference model needs to run).
    pub fn uses_reference(self) -> bool {
        !matches!(self, Variant::Simpo | Variant::Orpo)
    }

    /// Whether the loss reads the completions' lengths (it averages log-probabilities over
    /// tokens): `ipo`, `simpo` and `orpo`.
    pub fn uses_lengths(self) -> bool {
        matches!(self, Variant::Ipo | Variant::Simpo | Variant::Orpo)
    }

    /// Whether label smoothing `ε` means anything to the variant.
    pub fn uses_label_smoothing(self) -> bool {
        matches!(self, Variant::Sigmoid | Variant::Robust | Variant::Simpo)
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Variant {
    type Err = TrainError;

    /// TRL's `loss_type` names: `sigmoid`, `robust`, `ipo`, `hinge`, `simpo`, `orpo`.
    fn from_str(s: &str) -> Result<Self, TrainError> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
                TrainError::Settings(format!(
                    "unknown preference loss `{s}`; expected one of {} (cDPO is `sigmoid` with \
                     label smoothing)",
                    names.join(", ")
                ))
            })
    }
}

/// In a TOML file the variant is the same string as on the command line.
impl<'de> serde::Deserialize<'de> for Variant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A variant with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub variant: Variant,
    /// `β`: the scale of the implicit reward (for `ipo` the regularisation `τ`, for `orpo` the
    /// odds-ratio weight `λ`).
    pub beta: f64,
    /// `ε`: the probability that a label is wrong (`sigmoid` = cDPO, `robust`, `simpo`);
    /// 0 for the other variants.
    pub label_smoothing: f64,
    /// `γ`: SimPO's target reward margin; 0 for the other variants.
    pub gamma: f64,
}

impl Settings {
    /// The variant with its defaults:
    ///
    /// - `sigmoid`, `robust`, `ipo`, `hinge`: `β = 0.1`, `ε = 0` — TRL's `DPOConfig`
    ///   (`beta`, `label_smoothing`). `robust` with `ε = 0` is `sigmoid`; TRL's documentation
    ///   gives 0.1 as the value the robust-DPO paper recommends.
    /// - `simpo`: `β = 2.5`, `γ = 1.375` (`γ/β = 0.55`), `ε = 0` — the SimPO paper's setting
    ///   (its appendix B), as TRL's paper index configures `CPOConfig` to reproduce it.
    ///   `CPOConfig`'s own defaults (`beta = 0.1`, `simpo_gamma = 0.5`) are those it shares
    ///   with CPO's sigmoid loss.
    /// - `orpo`: `λ = 0.1` — TRL's `ORPOConfig.beta`.
    pub fn new(variant: Variant) -> Settings {
        let (beta, gamma) = match variant {
            Variant::Simpo => (2.5, 1.375),
            _ => (0.1, 0.0),
        };
        Settings {
            variant,
            beta,
            label_smoothing: 0.0,
            gamma,
        }
    }

    /// `β` finite and positive; `ε` in `[0, ½)` for `robust` (it divides by `1 − 2ε`), in
    /// `[0, 1]` for `sigmoid` and `simpo`, and 0 for the variants it means nothing to; `γ`
    /// finite, and 0 except for `simpo`.
    pub fn check(&self) -> Result<(), TrainError> {
        let name = self.variant.name();
        let bad = |message: String| Err(TrainError::Settings(message));
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad(format!(
                "preference loss `{name}`: beta must be positive, not {}",
                self.beta
            ));
        }
        let eps = self.label_smoothing;
        match self.variant {
            Variant::Robust if !(0.0..0.5).contains(&eps) => {
                return bad(format!(
                    "preference loss `robust`: label smoothing must lie in [0, 0.5), not {eps}"
                ));
            }
            Variant::Sigmoid | Variant::Simpo if !(0.0..=1.0).contains(&eps) => {
                return bad(format!(
                    "preference loss `{name}`: label smoothing must lie in [0, 1], not {eps}"
                ));
            }
            _ if !self.variant.uses_label_smoothing() && eps != 0.0 => {
                return bad(format!(
                    "preference loss `{name}` takes no label smoothing (it is for sigmoid, \
                     robust and simpo), but it is {eps}"
                ));
            }
            _ => {}
        }
        if !self.gamma.is_finite() || (self.variant != Variant::Simpo && self.gamma != 0.0) {
            return bad(format!(
                "preference loss `{name}`: gamma (SimPO's target margin) is {}; it must be \
                 finite, and 0 except for simpo",
                self.gamma
            ));
        }
        Ok(())
    }
}

/// One preference pair's log-probabilities: summed over the completion's tokens (the prompt
/// excluded), natural log, each ≤ 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    /// The policy's `log π(chosen | prompt)`, `c`.
    pub chosen: f64,
    /// The policy's `log π(rejected | prompt)`, `r`.
    pub rejected: f64,
    /// The reference's `log π_ref(chosen | prompt)`, `c_ref` (read only by variants that
    /// [use a reference](Variant::uses_reference)).
    pub ref_chosen: f64,
    /// The reference's `log π_ref(rejected | prompt)`, `r_ref`.
    pub ref_rejected: f64,
    /// The chosen completion's tokens, `n_c` (read only by variants that
    /// [use lengths](Variant::uses_lengths), which need it positive).
    pub chosen_tokens: usize,
    /// The rejected completion's tokens, `n_r`.
    pub rejected_tokens: usize,
}

/// The loss of a pair, its derivatives and what to log of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairLoss {
    pub loss: f64,
    /// `∂L/∂c`: the weight of every chosen completion token's cross-entropy is its negative.
    pub d_chosen: f64,
    /// `∂L/∂r`: the weight of every rejected completion token's cross-entropy is its
    /// negative.
    pub d_rejected: f64,
    pub metrics: Metrics,
}

/// A pair's values of the metrics TRL logs (it logs their means over a batch).
///
/// For the reference-based variants the rewards are `β(c − c_ref)` and `β(r − r_ref)` and the
/// log-probabilities the summed `c`, `r` (`DPOTrainer`, `ipo` included: its rewards are of the
/// summed log-ratios although its loss averages them). For `simpo` and `orpo` the rewards are
/// `β ĉ` and `β r̂` and the log-probabilities the averaged `ĉ`, `r̂` (`CPOTrainer`,
/// `ORPOTrainer`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// `rewards/chosen`.
    pub reward_chosen: f64,
    /// `rewards/rejected`.
    pub reward_rejected: f64,
    /// `logps/chosen`.
    pub logps_chosen: f64,
    /// `logps/rejected`.
    pub logps_rejected: f64,
    /// `orpo` only: `nll_loss`, the chosen completion's mean NLL `−ĉ`.
    pub nll: Option<f64>,
    /// `orpo` only: `log_odds_ratio`, `log σ(log_odds)`.
    pub log_odds_ratio: Option<f64>,
    /// `orpo` only: `log_odds_chosen`, `log_odds` itself.
    pub log_odds_chosen: Option<f64>,
}

impl Metrics {
    /// `rewards/margins`: the chosen reward minus the rejected.
    pub fn margin(&self) -> f64 {
        self.reward_chosen - self.reward_rejected
    }

    /// `rewards/accuracies` (as 1 or 0): whether the chosen reward is strictly the larger.
    pub fn accurate(&self) -> bool {
        self.reward_chosen > self.reward_rejected
    }

    /// The metrics under TRL's names, the ORPO ones only where present.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        let mut named = vec![
            ("rewards/chosen", self.reward_chosen),
            ("rewards/rejected", self.reward_rejected),
            ("rewards/margins", self.margin()),
            (
                "rewards/accuracies",
                if self.accurate() { 1.0 } else { 0.0 },
            ),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
        ];
        let orpo = [
            ("nll_loss", self.nll),
            ("log_odds_ratio", self.log_odds_ratio),
            ("log_odds_chosen", self.log_odds_chosen),
        ];
        named.extend(orpo.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))));
        named
    }
}

/// The loss of one pair under `settings`, with `∂L/∂c`, `∂L/∂r` and the pair's metrics.
///
/// Panics if the variant [uses lengths](Variant::uses_lengths) and a completion has 0 tokens
/// (its averaged log-probability is undefined; the data must not hold empty completions).
pub fn pair_loss(settings: &Settings, pair: &Pair) -> PairLoss {
    let Settings {
        variant,
        beta,
        label_smoothing: eps,
        gamma,
    } = *settings;
    let (c, r) = (pair.chosen, pair.rejected);
    let (n_c, n_r) = if variant.uses_lengths() {
        assert!(
            pair.chosen_tokens > 0 && pair.rejected_tokens > 0,
            "preference loss `{variant}` averages over the completions' tokens: chosen has {}, \
             rejected {}",
            pair.chosen_tokens,
            pair.rejected_tokens
        );
        (pair.chosen_tokens as f64, pair.rejected_tokens as f64)
    } else {
        (1.0, 1.0)
    };
    let (chosen_ratio, rejected_ratio) = (c - pair.ref_chosen, r - pair.ref_rejected);
    let h = chosen_ratio - rejected_ratio;
    let reference_metrics = Metrics {
        reward_chosen: beta * chosen_ratio,
        reward_rejected: beta * rejected_ratio,
        logps_chosen: c,
        logps_rejected: r,
        nll: None,
        log_odds_ratio: None,
        log_odds_chosen: None,
    };
    match variant {
        Variant::Sigmoid => {
            // z = βh; dL/dz = (1−ε)(σ(z) − 1) + ε σ(z) = σ(z) − 1 + ε.
            let z = beta * h;
            let dz = sigmoid(z) - 1.0 + eps;
            PairLoss {
                loss: smoothed_logistic(z, eps),
                d_chosen: beta * dz,
                d_rejected: -beta * dz,
                metrics: reference_metrics,
            }
        }
        Variant::Robust => {
            // dL/dz = ((1−ε)(σ(z) − 1) − ε σ(z)) / (1 − 2ε) = σ(z) − (1−ε)/(1−2ε).
            let z = beta * h;
            let loss = ((1.0 - eps) * softplus(-z) - eps * softplus(z)) / (1.0 - 2.0 * eps);
            let dz = sigmoid(z) - (1.0 - eps) / (1.0 - 2.0 * eps);
            PairLoss {
                loss,
                d_chosen: beta * dz,
                d_rejected: -beta * dz,
                metrics: reference_metrics,
            }
        }
        Variant::Ipo => {
            let u = chosen_ratio / n_c - rejected_ratio / n_r - 1.0 / (2.0 * beta);
            PairLoss {
                loss: u * u,
                d_chosen: 2.0 * u / n_c,
                d_rejected: -2.0 * u / n_r,
                metrics: reference_metrics,
            }
        }
        Variant::Hinge => {
            // The kink (βh = 1) takes the zero side's derivative, as torch's relu does.
            let m = 1.0 - beta * h;
            let active = if m > 0.0 { 1.0 } else { 0.0 };
            PairLoss {
                loss: m.max(0.0),
                d_chosen: -beta * active,
                d_rejected: beta * active,
                metrics: reference_metrics,
            }
        }
        Variant::Simpo => {
            let (c_avg, r_avg) = (c / n_c, r / n_r);
            let z = beta * (c_avg - r_avg) - gamma;
            let dz = sigmoid(z) - 1.0 + eps;
            PairLoss {
                loss: smoothed_logistic(z, eps),
                d_chosen: beta * dz / n_c,
                d_rejected: -beta * dz / n_r,
                metrics: Metrics {
                    reward_chosen: beta * c_avg,
                    reward_rejected: beta * r_avg,
                    logps_chosen: c_avg,
                    logps_rejected: r_avg,
                    nll: None,
                    log_odds_ratio: None,
                    log_odds_chosen: None,
                },
            }
        }
        Variant::Orpo => {
            let lambda = beta;
            let (c_avg, r_avg) = (c / n_c, r / n_r);
            let (c_odds, r_odds) = (c_avg.min(MAX_ODDS_LOGP), r_avg.min(MAX_ODDS_LOGP));
            // log odds(p) = log p − log(1 − p), and d/dx (x − log(1 − eˣ)) = 1/(1 − eˣ).
            let log_odds = (c_odds - log1mexp(c_odds)) - (r_odds - log1mexp(r_odds));
            let ratio = -softplus(-log_odds);
            // d(−λ log σ(log_odds))/d log_odds = λ(σ(log_odds) − 1) = −λ σ(−log_odds).
            let d_log_odds = -lambda * sigmoid(-log_odds);
            let d_c_avg = -1.0 + d_log_odds / -c_odds.exp_m1();
            let d_r_avg = -d_log_odds / -r_odds.exp_m1();
            PairLoss {
                loss: -c_avg - lambda * ratio,
                d_chosen: d_c_avg / n_c,
                d_rejected: d_r_avg / n_r,
                metrics: Metrics {
                    reward_chosen: lambda * c_avg,
                    reward_rejected: lambda * r_avg,
                    logps_chosen: c_avg,
                    logps_rejected: r_avg,
                    nll: Some(-c_avg),
                    log_odds_ratio: Some(ratio),
                    log_odds_chosen: Some(log_odds),
                },
            }
        }
    }
}

/// The largest averaged log-probability ORPO's odds take: at 0 (probability 1) the odds
/// `p/(1−p)` are infinite. Above it the odds term is held at its value here (the NLL term is
/// not).
const MAX_ODDS_LOGP: f64 = -1e-12;

/// `ln(1 + eˣ)`, without overflow for large `x` nor loss of precision for very negative `x`.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `1 / (1 + e⁻ˣ)`, exponentiating only non-positive numbers.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `−(1−ε) · log σ(z) − ε · log σ(−z)`: the logistic loss with label smoothing `ε`.
fn smoothed_logistic(z: f64, eps: f64) -> f64 {
    (1.0 - eps) * softplus(-z) + eps * softplus(z)
}

/// `ln(1 − eˣ)` for `x < 0`: `ln_1p(−eˣ)` where `eˣ < ½`, `ln(−expm1(x))` nearer 0, where
/// `1 − eˣ` would cancel (Mächler 2012).
fn log1mexp(x: f64) -> f64 {
    if x < -std::f64::consts::LN_2 {
        (-x.exp()).ln_1p()
    } else {
        (-x.exp_m1()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(c: f64, r: f64, c_ref: f64, r_ref: f64, n_c: usize, n_r: usize) -> Pair {
        Pair {
            chosen: c,
            rejected: r,
            ref_chosen: c_ref,
            ref_rejected: r_ref,
            chosen_tokens: n_c,
            rejected_tokens: n_r,
        }
    }

    fn settings(variant: Variant, beta: f64, eps: f64) -> Settings {
        Settings {
            beta,
            label_smoothing: eps,
            ..Settings::new(variant)
        }
    }

    fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{what}: {actual}, expected {expected} (within {tolerance})"
        );
    }

    /// A pair whose DPO margin `h = (c − c_ref) − (r − r_ref)` is 2.
    fn margin_two() -> Pair {
        pair(-10.0, -15.0, -11.0, -14.0, 5, 7)
    }

    #[test]
    fn names_parse_and_print() {
        for variant in Variant::ALL {
            assert_eq!(variant.name().parse::<Variant>().unwrap(), variant);
            assert_eq!(variant.to_string(), variant.name());
        }
        let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
        assert_eq!(
            names,
            ["sigmoid", "robust", "ipo", "hinge", "simpo", "orpo"]
        );
        let message = "cdpo".parse::<Variant>().unwrap_err().to_string();
        assert!(
            message.contains("`cdpo`") && message.contains("sigmoid, robust, ipo, hinge"),
            "{message}"
        );
        #[derive(serde::Deserialize)]
        struct File {
            loss: Variant,
        }
        let file: File = toml::from_str("loss = \"simpo\"").unwrap();
        assert_eq!(file.loss, Variant::Simpo);
        assert!(toml::from_str::<File>("loss = \"dpo\"").is_err());
    }

    #[test]
    fn defaults_are_trl_s_and_the_simpo_paper_s() {
        for variant in [
            Variant::Sigmoid,
            Variant::Robust,
            Variant::Ipo,
            Variant::Hinge,
            Variant::Orpo,
        ] {
            let s = Settings::new(variant);
            assert_eq!((s.beta, s.label_smoothing, s.gamma), (0.1, 0.0, 0.0));
            s.check().unwrap();
        }
        let simpo = Settings::new(Variant::Simpo);
        assert_eq!(
            (simpo.beta, simpo.label_smoothing, simpo.gamma),
            (2.5, 0.0, 1.375)
        );
        simpo.check().unwrap();
        assert!(!Variant::Simpo.uses_reference() && !Variant::Orpo.uses_reference());
        assert!(Variant::Sigmoid.uses_reference() && !Variant::Sigmoid.uses_lengths());
        assert!(Variant::Ipo.uses_lengths() && Variant::Ipo.uses_reference());
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let refused = |s: Settings, needle: &str| {
            let message = s.check().unwrap_err().to_string();
            assert!(message.contains(needle), "{message}");
        };
        refused(
            settings(Variant::Sigmoid, 0.0, 0.0),
            "beta must be positive",
        );
        refused(settings(Variant::Sigmoid, f64::NAN, 0.0), "beta");
        refused(settings(Variant::Robust, 0.1, 0.5), "[0, 0.5)");
        refused(settings(Variant::Sigmoid, 0.1, -0.1), "[0, 1]");
        refused(
            settings(Variant::Hinge, 0.1, 0.1),
            "takes no label smoothing",
        );
        refused(
            settings(Variant::Orpo, 0.1, 0.1),
            "takes no label smoothing",
        );
        let gamma = Settings {
            gamma: 0.5,
            ..Settings::new(Variant::Sigmoid)
        };
        refused(gamma, "gamma");
        settings(Variant::Robust, 0.1, 0.49).check().unwrap();
        settings(Variant::Sigmoid, 0.1, 1.0).check().unwrap();
    }

    /// With the policy equal to the reference, `h = 0`: `−log σ(0) = ln 2`, and
    /// `∂L/∂c = β(σ(0) − 1) = −β/2`.
    #[test]
    fn sigmoid_at_the_reference_is_ln_2() {
        let beta = 0.1;
        let p = pair(-12.5, -30.25, -12.5, -30.25, 4, 9);
        let out = pair_loss(&settings(Variant::Sigmoid, beta, 0.0), &p);
        close(out.loss, std::f64::consts::LN_2, 1e-6, "loss");
        close(out.d_chosen, -beta / 2.0, 1e-12, "dL/dc");
        close(out.d_rejected, beta / 2.0, 1e-12, "dL/dr");
        assert_eq!(out.metrics.reward_chosen, 0.0);
        assert_eq!(out.metrics.margin(), 0.0);
        assert!(!out.metrics.accurate(), "equal rewards are not accurate");
    }

    /// `h = 2`, `β = 0.1`, `z = 0.2`: `−log σ(0.2) = ln(1 + e^−0.2) = 0.598139`,
    /// `−log σ(−0.2) = 0.798139`; cDPO `0.9 · 0.598139 + 0.1 · 0.798139 = 0.618139`; robust
    /// `(0.9 · 0.598139 − 0.1 · 0.798139) / 0.8 = 0.573139`.
    #[test]
    fn sigmoid_cdpo_and_robust_known_values() {
        let p = margin_two();
        let loss = |v, eps| pair_loss(&settings(v, 0.1, eps), &p).loss;
        close(loss(Variant::Sigmoid, 0.0), 0.598139, 1e-6, "sigmoid");
        close(loss(Variant::Sigmoid, 0.1), 0.618139, 1e-6, "cDPO");
        close(loss(Variant::Robust, 0.1), 0.573139, 1e-6, "robust");
        // Robust with ε = 0 is DPO.
        close(loss(Variant::Robust, 0.0), 0.598139, 1e-6, "robust ε=0");
    }

    /// `h̄ = 1/5 − (−1)/7 = 0.342857`, `u = h̄ − 1/(2 · 0.1) = −4.657143`, `L = u² = 21.689`;
    /// the summed `h = 2` would give `(2 − 5)² = 9`.
    #[test]
    fn ipo_averages_the_log_ratios_over_tokens() {
        let out = pair_loss(&settings(Variant::Ipo, 0.1, 0.0), &margin_two());
        let u = 1.0 / 5.0 + 1.0 / 7.0 - 5.0;
        close(out.loss, u * u, 1e-12, "loss");
        close(out.loss, 21.688980, 1e-6, "loss");
        close(out.d_chosen, 2.0 * u / 5.0, 1e-12, "dL/dc");
        close(out.d_rejected, -2.0 * u / 7.0, 1e-12, "dL/dr");
        // At the target margin the loss and its derivatives vanish: h̄ = 1/(2β) = 5.
        let at_target = pair(-1.0, -6.0, -6.0, -6.0, 1, 1);
        let out = pair_loss(&settings(Variant::Ipo, 0.1, 0.0), &at_target);
        assert_eq!((out.loss, out.d_chosen, out.d_rejected), (0.0, 0.0, 0.0));
    }

    /// `1 − βh = 1 − 0.2 = 0.8` with slope `∓β`; past `h = 1/β = 10` nothing.
    #[test]
    fn hinge_is_linear_then_zero() {
        let s = settings(Variant::Hinge, 0.1, 0.0);
        let out = pair_loss(&s, &margin_two());
        close(out.loss, 0.8, 1e-12, "loss");
        assert_eq!((out.d_chosen, out.d_rejected), (-0.1, 0.1));
        for h in [10.0, 10.5, 250.0] {
            let out = pair_loss(&s, &pair(-1.0, -1.0 - h, -2.0, -2.0, 1, 1));
            assert_eq!(
                (out.loss, out.d_chosen, out.d_rejected),
                (0.0, 0.0, 0.0),
                "h {h}"
            );
        }
        let inside = pair_loss(&s, &pair(-1.0, -10.9, -2.0, -2.0, 1, 1));
        assert!(inside.loss > 0.0 && inside.d_chosen == -0.1);
    }

    /// `c = −6` over 3 tokens, `r = −12` over 4: `ĉ = −2`, `r̂ = −3`;
    /// `z = 2.5 · (−2 + 3) − 1.375 = 1.125`; `L = ln(1 + e^−1.125) = ln 1.3246525 = 0.2811501`;
    /// `σ(1.125) − 1 = −0.2450850`, so `∂L/∂c = 2.5 · −0.2450850 / 3 = −0.2042375` and
    /// `∂L/∂r = −2.5 · −0.2450850 / 4 = 0.1531781`. Rewards `β ĉ = −5`, `β r̂ = −7.5`.
    #[test]
    fn simpo_known_values() {
        // The reference's log-probabilities must not matter.
        let p = pair(-6.0, -12.0, -100.0, -1.0, 3, 4);
        let out = pair_loss(&Settings::new(Variant::Simpo), &p);
        close(out.loss, 0.2811501, 1e-7, "loss");
        close(out.d_chosen, -0.2042375, 1e-7, "dL/dc");
        close(out.d_rejected, 0.1531781, 1e-7, "dL/dr");
        let m = out.metrics;
        assert_eq!((m.reward_chosen, m.reward_rejected), (-5.0, -7.5));
        assert_eq!((m.logps_chosen, m.logps_rejected), (-2.0, -3.0));
        close(m.margin(), 2.5, 1e-12, "margin");
        assert!(m.accurate());
        assert_eq!(m.nll, None);
    }

    /// `c = −2` over 4 tokens, `r = −6` over 3: `ĉ = −0.5`, `r̂ = −2`.
    /// `ln(1 − e^−0.5) = ln 0.3934693 = −0.9327521`, `ln(1 − e^−2) = ln 0.8646647 = −0.1454135`;
    /// `log_odds = (−0.5 + 0.9327521) − (−2 + 0.1454135) = 2.2873387`;
    /// `log σ(2.2873387) = −ln(1 + e^−2.2873387) = −0.0967059`;
    /// `L = 0.5 + 0.1 · 0.0967059 = 0.5096706`.
    /// `d log_odds = 0.1 (σ(2.2873387) − 1) = −0.0092182`;
    /// `∂L/∂ĉ = −1 − 0.0092182 / (1 − e^−0.5) = −1.0234277`, `/4 = −0.2558567`;
    /// `∂L/∂r̂ = 0.0092182 / (1 − e^−2) = 0.0106611`, `/3 = 0.0035535`.
    #[test]
    fn orpo_known_values() {
        let p = pair(-2.0, -6.0, 0.0, 0.0, 4, 3);
        let out = pair_loss(&Settings::new(Variant::Orpo), &p);
        close(out.loss, 0.5096706, 1e-7, "loss");
        close(out.d_chosen, -0.2558567, 1e-7, "dL/dc");
        close(out.d_rejected, 0.0035535, 1e-7, "dL/dr");
        let m = out.metrics;
        close(m.log_odds_chosen.unwrap(), 2.2873387, 1e-7, "log_odds");
        close(
            m.log_odds_ratio.unwrap(),
            -0.0967059,
            1e-7,
            "log_odds_ratio",
        );
        assert_eq!(m.nll, Some(0.5));
        assert_eq!((m.reward_chosen, m.reward_rejected), (-0.05, -0.2));
        let names: Vec<&str> = m.named().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "rewards/chosen",
                "rewards/rejected",
                "rewards/margins",
                "rewards/accuracies",
                "logps/chosen",
                "logps/rejected",
                "nll_loss",
                "log_odds_ratio",
                "log_odds_chosen"
            ]
        );
    }

    #[test]
    fn reference_rewards_are_beta_times_the_log_ratios() {
        let out = pair_loss(&settings(Variant::Sigmoid, 0.5, 0.0), &margin_two());
        let m = out.metrics;
        assert_eq!((m.reward_chosen, m.reward_rejected), (0.5, -0.5));
        assert_eq!((m.logps_chosen, m.logps_rejected), (-10.0, -15.0));
        let named = m.named();
        assert_eq!(named.len(), 6);
        assert_eq!(named[2], ("rewards/margins", 1.0));
        assert_eq!(named[3], ("rewards/accuracies", 1.0));
    }

    /// Every variant's derivatives match central differences of its loss, at pairs on both
    /// sides of the preference and away from the hinge's kink.
    #[test]
    fn derivatives_match_central_differences() {
        let pairs = [
            pair(-10.0, -15.0, -11.0, -14.0, 5, 7),
            pair(-20.0, -8.0, -18.0, -9.5, 12, 3),
            pair(-1.3, -0.4, -1.0, -2.0, 2, 1),
            pair(-0.02, -3.0, -0.5, -0.5, 1, 2),
        ];
        let all = [
            settings(Variant::Sigmoid, 0.1, 0.0),
            settings(Variant::Sigmoid, 0.3, 0.2),
            settings(Variant::Robust, 0.1, 0.1),
            settings(Variant::Robust, 0.7, 0.3),
            settings(Variant::Ipo, 0.1, 0.0),
            settings(Variant::Ipo, 1.0, 0.0),
            settings(Variant::Hinge, 0.1, 0.0),
            settings(Variant::Hinge, 0.4, 0.0),
            Settings::new(Variant::Simpo),
            settings(Variant::Simpo, 1.0, 0.1),
            Settings::new(Variant::Orpo),
            settings(Variant::Orpo, 1.0, 0.0),
        ];
        let step = 1e-5;
        for s in &all {
            for p in &pairs {
                let out = pair_loss(s, p);
                let loss_at = |dc: f64, dr: f64| {
                    let moved = Pair {
                        chosen: p.chosen + dc,
                        rejected: p.rejected + dr,
                        ..*p
                    };
                    pair_loss(s, &moved).loss
                };
                let fd_c = (loss_at(step, 0.0) - loss_at(-step, 0.0)) / (2.0 * step);
                let fd_r = (loss_at(0.0, step) - loss_at(0.0, -step)) / (2.0 * step);
                let what = format!("{} β={} ε={} {p:?}", s.variant, s.beta, s.label_smoothing);
                let tol = |d: f64| 1e-7 + 1e-6 * d.abs();
                close(out.d_chosen, fd_c, tol(fd_c), &format!("{what}: dL/dc"));
                close(out.d_rejected, fd_r, tol(fd_r), &format!("{what}: dL/dr"));
            }
        }
    }

    /// Margins far beyond what `exp` represents give finite losses and derivatives: the
    /// right limits, not NaN.
    #[test]
    fn extreme_margins_stay_finite() {
        for variant in [Variant::Sigmoid, Variant::Robust, Variant::Simpo] {
            let s = settings(variant, 0.1, 0.1);
            let won = pair_loss(&s, &pair(-1.0, -1e6, -1.0, -1.0, 1, 1));
            let lost = pair_loss(&s, &pair(-1e6, -1.0, -1.0, -1.0, 1, 1));
            for out in [won, lost] {
                assert!(
                    out.loss.is_finite() && out.d_chosen.is_finite(),
                    "{variant}: {out:?}"
                );
            }
        }
        // DPO: a margin of βh = 1e5 costs nothing; βh = −1e5 costs 1e5 with slope −β.
        let s = settings(Variant::Sigmoid, 0.1, 0.0);
        let won = pair_loss(&s, &pair(-1.0, -1e6 - 1.0, -1.0, -1.0, 1, 1));
        assert_eq!((won.loss, won.d_chosen), (0.0, 0.0));
        let lost = pair_loss(&s, &pair(-1e6 - 1.0, -1.0, -1.0, -1.0, 1, 1));
        close(lost.loss, 1e5, 1e-6, "lost loss");
        close(lost.d_chosen, -0.1, 1e-12, "lost dL/dc");
        // ORPO at probability (nearly) 1: finite, the NLL term's slope −1/n_c intact.
        let s = Settings::new(Variant::Orpo);
        for c in [0.0, -1e-300, -1e-14] {
            let out = pair_loss(&s, &pair(c, -3.0, 0.0, 0.0, 2, 2));
            assert!(
                out.loss.is_finite() && out.d_chosen.is_finite() && out.d_rejected.is_finite(),
                "c = {c}: {out:?}"
            );
            assert!(out.d_chosen < 0.0, "c = {c}: {out:?}");
        }
    }

    #[test]
    fn log1mexp_keeps_precision_near_zero() {
        // ln(1 − e^−1e−10) = ln(1e−10 − 5e−21 + ...) = −23.02585093 − 5e−11.
        close(log1mexp(-1e-10), -23.025850930, 1e-9, "near 0");
        close(log1mexp(-2.0), (1.0 - (-2.0f64).exp()).ln(), 1e-15, "far");
        close(log1mexp(-50.0), -(-50.0f64).exp(), 1e-30, "very far");
        close(softplus(-800.0), 0.0, 1e-300, "softplus −800");
        close(softplus(800.0), 800.0, 1e-12, "softplus 800");
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
    }

    #[test]
    #[should_panic(expected = "averages over the completions' tokens")]
    fn length_variants_refuse_empty_completions() {
        pair_loss(
            &Settings::new(Variant::Simpo),
            &pair(-1.0, -2.0, 0.0, 0.0, 0, 3),
        );
    }
}
