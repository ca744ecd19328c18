//! `steel eval`: the mean next-token loss of a model over every predicted position of a chunk
//! directory's blocks (padding included), blocks taken from the chunk files in lexicographic
//! path order, the first `max_blocks` if given.

use crate::checkpoint::open_model;
use crate::data::chunks::{ChunkDir, check_tokenizer, check_vocabulary};
use crate::error::TrainError;
use crate::model::config::ModelConfig;
use crate::model::params::Layout;
use crate::model::pass::logits;
use serde::Serialize;
use std::path::Path;
use steel_kernels::cpu::cross_entropy;

#[derive(Debug, Serialize, PartialEq)]
pub struct EvalResult {
    pub loss: f64,
    /// Predicted positions scored.
    pub tokens: u64,
    pub blocks: u64,
}

/// `steel eval`: the loss of the model in `checkpoint` — a Steel checkpoint (its files checked
/// against their checksums) or a HuggingFace directory — over the chunks in `dir`. A
/// checkpoint records the tokenizer its training chunks were packed with, and chunks packed
/// with another one are refused unless `allow_tokenizer_mismatch`. A HuggingFace directory
/// (imported, or exported) records no tokenizer, so nothing can be compared or refused.
pub fn evaluate_checkpoint(
    checkpoint: &Path,
    dir: &Path,
    max_blocks: Option<u64>,
    allow_tokenizer_mismatch: bool,
) -> Result<EvalResult, TrainError> {
    let model = open_model(checkpoint)?;
    if let Some(expected) = &model.tokenizer_xxh3
        && !allow_tokenizer_mismatch
    {
        let manifest = load_manifest(dir)?;
        check_tokenizer(dir, &manifest, checkpoint, expected)?;
    }
    evaluate(&model.config, &model.layout, &model.params, dir, max_blocks)
}

fn load_manifest(dir: &Path) -> Result<steel_dataflow::pack::manifest::Manifest, TrainError> {
    steel_dataflow::pack::manifest::Manifest::load(dir)?.ok_or_else(|| {
        TrainError::Data(format!(
            "`{}` is not a chunk directory (no manifest.json)",
            dir.display()
        ))
    })
}

pub fn evaluate(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    dir: &Path,
    max_blocks: Option<u64>,
) -> Result<EvalResult, TrainError> {
    evaluate_with(config.vocab_size, dir, max_blocks, &mut |row| {
        let n = row.len() - 1;
        let out = logits(config, layout, params, &row[..n]);
        let weights = vec![1.0; n];
        Ok(cross_entropy::forward(&out, &row[1..], &weights, n as f32, config.vocab_size) as f64)
    })
}

/// The same walk over the blocks with any scorer: `score(block)` is the mean loss of
/// predicting `block[1..]` from `block[..n]` (the GPU model scores blocks through this).
pub fn evaluate_with(
    vocab_size: usize,
    dir: &Path,
    max_blocks: Option<u64>,
    score: &mut dyn FnMut(&[u32]) -> Result<f64, TrainError>,
) -> Result<EvalResult, TrainError> {
    let manifest = load_manifest(dir)?;
    let block_size = manifest.settings.block_size;
    check_vocabulary(dir, &manifest, vocab_size)?;
    let mut chunks = ChunkDir::open(dir, block_size)?;
    let mut files: Vec<String> = chunks
        .manifest
        .chunks
        .iter()
        .map(|c| c.file.clone())
        .collect();
    files.sort();
    let (mut total, mut tokens, mut blocks) = (0.0f64, 0u64, 0u64);
    'files: for file in &files {
        for block in 0..chunks.blocks_per_chunk {
            if max_blocks.is_some_and(|max| blocks >= max) {
                break 'files;
            }
            let row = chunks.block(file, block, block_size)?;
            let n = row.len() - 1;
            total += score(&row)? * n as f64;
            tokens += n as u64;
            blocks += 1;
        }
    }
    if tokens == 0 {
        return Err(TrainError::Data(format!(
            "`{}` has no blocks to evaluate",
            dir.display()
        )));
    }
    Ok(EvalResult {
        loss: total / tokens as f64,
        tokens,
        blocks,
    })
}
