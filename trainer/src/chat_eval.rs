//! `steel eval chat`: the SFT loss of a model over chat data — the mean cross-entropy over the
//! tokens SFT would train on (the assistant's replies and their closing `<|im_end|>`), one
//! example per conversation, unpacked.

use crate::batch::Batch;
use crate::checkpoint::open_model;
use crate::device::Device;
use crate::engine::Engine;
use crate::error::TrainError;
use crate::infer::tokenizer::Tokenizer;
use crate::optim::adamw::AdamWConfig;
use crate::sft::{SftOptions, read_examples};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize, PartialEq)]
pub struct ChatEvalResult {
    /// Mean over the trained tokens.
    pub loss: f64,
    /// Trained tokens scored.
    pub tokens: u64,
    /// Conversations scored.
    pub examples: u64,
}

/// The SFT loss of the model in `checkpoint` over the conversations of `data` (messages
/// JSONL or rendered chat text), tokenized with `tokenizer` (or the checkpoint's own).
pub fn evaluate_chat(
    checkpoint: &Path,
    tokenizer: Option<&Path>,
    data: &Path,
    options: &SftOptions,
    device: Device,
    allow_tokenizer_mismatch: bool,
) -> Result<ChatEvalResult, TrainError> {
    let model = open_model(checkpoint)?;
    let codec = Tokenizer::for_model(tokenizer, checkpoint, &model, allow_tokenizer_mismatch)?;
    let examples = read_examples(data, &codec, options)?.examples;
    let engine = Engine::new(
        device,
        &model.config,
        AdamWConfig::default(),
        model.params,
        None,
        0,
    )?;
    let (mut total, mut tokens) = (0.0, 0.0);
    for example in &examples {
        let n = example.ids.len() - 1;
        let weights: Vec<f32> = example.trained[1..]
            .iter()
            .map(|&t| if t { 1.0 } else { 0.0 })
            .collect();
        let mut row = Batch::new(n);
        row.push_row(&example.ids[..n], &example.ids[1..], &weights, &[0]);
        total += engine.row_loss_sums(&row)?[0];
        tokens += row.trained();
    }
    if tokens == 0.0 {
        return Err(TrainError::Data(format!(
            "`{}` has no trained tokens to score",
            data.display()
        )));
    }
    Ok(ChatEvalResult {
        loss: total / tokens,
        tokens: tokens as u64,
        examples: examples.len() as u64,
    })
}
