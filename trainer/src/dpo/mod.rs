//! Preference optimisation (DPO and its relatives): the loss of a preference pair — a prompt
//! with a chosen and a rejected completion — from the summed completion log-probabilities of
//! the policy (and, for the variants that have one, of a frozen reference model).
//!
//! [`loss`] holds the pure functions: no model, one pair at a time, the loss and its
//! derivatives with respect to the policy's two log-probabilities. The trainer turns those
//! derivatives into per-token loss weights: the chosen completion's log-probability is
//! `c = −Σ ce` over its tokens, so `∂L/∂θ = ∂L/∂c · ∇c + ∂L/∂r · ∇r` is the gradient of the
//! weighted cross-entropy with weight `−∂L/∂c` on every chosen completion token and `−∂L/∂r`
//! on every rejected one (`LossScale { norm: 1.0, .. }`, the weights already being the loss's
//! coefficients).
//!
//! The variants and their names follow TRL (`DPOTrainer`'s `loss_type`, `CPOTrainer`'s
//! `simpo`, `ORPOTrainer`), and so do the logged metrics (`rewards/chosen`, ...). [`train`]
//! is the training loop, `steel dpo`.

pub mod loss;
pub mod train;

pub use loss::{Metrics, Pair, PairLoss, Settings, Variant, pair_loss};
