//! `steel bench generate`: CPU generation throughput of a preset (seeded random weights, random
//! prompt ids): prefill tokens/s and decode tokens/s at each batch size, every sequence
//! generating `new_tokens` greedily (no stop token, so all run to the end).

use crate::line::BenchLine;
use anyhow::{Result, ensure};
use steel_trainer::checkpoint::Model;
use steel_trainer::error::TrainError;
use steel_trainer::infer::generate::{GenerateOptions, generate};
use steel_trainer::infer::sampling::SamplingParams;
use steel_trainer::infer::tokenizer::Codec;
use steel_trainer::model::config::ModelConfig;
use steel_trainer::model::params::Layout;
use steel_trainer::train::init_params;

#[derive(Clone, Debug)]
pub struct GenerateBenchOptions {
    pub preset: String,
    /// Batch sizes to measure.
    pub batches: Vec<usize>,
    /// Prompt tokens per sequence.
    pub prompt_tokens: usize,
    /// Tokens generated per sequence.
    pub new_tokens: usize,
}

/// Ids only: the benchmark measures the model, not detokenisation.
struct NoText;

impl Codec for NoText {
    fn encode(&self, _: &str) -> Result<Vec<u32>, TrainError> {
        Ok(Vec::new())
    }
    fn decode(&self, _: &[u32]) -> String {
        String::new()
    }
    fn token_id(&self, _: &str) -> Option<u32> {
        None
    }
}

/// One line per batch size: `case` is `PRESET/bN`.
pub fn bench_generate(options: &GenerateBenchOptions) -> Result<Vec<BenchLine>> {
    ensure!(
        options.prompt_tokens > 0 && options.new_tokens > 1,
        "prompt tokens must be positive and new tokens at least 2"
    );
    let config = ModelConfig::preset(&options.preset)?;
    let layout = Layout::new(&config);
    let params = init_params(&layout, 0);
    let model = Model {
        config,
        layout,
        params,
        tokenizer_xxh3: None,
    };
    let generate_options = GenerateOptions {
        max_new_tokens: options.new_tokens,
        sampling: SamplingParams::GREEDY,
        seed: 0,
        stop_tokens: Vec::new(),
        stop_strings: Vec::new(),
    };
    let mut lines = Vec::new();
    for &batch in &options.batches {
        ensure!(batch > 0, "batch sizes must be positive");
        let prompts: Vec<Vec<u32>> = (0..batch)
            .map(|b| {
                (0..options.prompt_tokens)
                    .map(|i| ((b * 7919 + i * 104_729) % model.config.vocab_size) as u32)
                    .collect()
            })
            .collect();
        let start = std::time::Instant::now();
        let (_, stats) = generate(&model, &NoText, &prompts, &generate_options, &mut |_, _| {})?;
        let seconds = start.elapsed().as_secs_f64();
        lines.push(
            BenchLine::new("generate", format!("{}/b{batch}", options.preset), seconds)
                .with("device", "cpu")
                .with("batch", batch)
                .with("prompt_tokens", options.prompt_tokens)
                .with("new_tokens", options.new_tokens)
                .with(
                    "prefill_tokens_per_s",
                    stats.prefill_tokens as f64 / stats.prefill_seconds.max(1e-9),
                )
                .with("decode_tokens", stats.decode_tokens)
                .with("decode_s", stats.decode_seconds)
                .with("decode_tokens_per_s", stats.decode_tokens_per_second())
                .with(
                    "decode_tokens_per_s_per_sequence",
                    stats.decode_tokens_per_second() / batch as f64,
                ),
        );
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_batch_size_counting_every_decoded_token() {
        let lines = bench_generate(&GenerateBenchOptions {
            preset: "tiny-dense".into(),
            batches: vec![1, 3],
            prompt_tokens: 4,
            new_tokens: 5,
        })
        .unwrap();
        assert_eq!(lines.len(), 2);
        for (line, batch) in lines.iter().zip([1u64, 3]) {
            assert_eq!(line.case, format!("tiny-dense/b{batch}"));
            // The first token comes from the prefill, the other 4 from one step each.
            assert_eq!(line.get("decode_tokens").unwrap().as_u64(), Some(4 * batch));
            assert!(line.get("decode_tokens_per_s").unwrap().as_f64().unwrap() > 0.0);
        }
    }
}
