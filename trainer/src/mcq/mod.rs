//! `steel eval ceval` and `steel eval cmmlu`: multiple-choice benchmarks scored the way their
//! official scripts score them (the logits of the letters after the prompt), or by
//! log-likelihood of the answers as lm-evaluation-harness does.
//!
//! [`subjects`] (the shipped subject tables), [`questions`] (one CSV), [`files`] (finding a
//! subject's CSV), [`prompt`] (the official prompts, fitted to the context), [`score`] (one
//! prompt's prediction), [`report`] (accuracies), [`run`] (a whole evaluation).

pub mod error;
pub mod files;
pub mod prompt;
pub mod questions;
pub mod report;
pub mod run;
pub mod score;
pub mod subjects;

pub use error::McqError;
pub use questions::{Letter, Question};
pub use report::{Prediction, Report};
pub use run::{Evaluation, McqOptions, Scorer, evaluate, evaluate_checkpoint, write_outputs};
pub use score::Mode;
pub use subjects::Benchmark;
