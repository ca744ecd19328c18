//! `steel bench train`: training throughput of a preset on random tokens — tokens/s, model
//! FLOP utilisation and peak GPU memory — counted the way `../shared/bench/torch_baseline.py`
//! counts them, so the two can be put side by side: model FLOPs per token are
//! `6·N_active + 6·L·d·T` (N_active: parameters without the embedding table, routed experts
//! only `top_k` of them), over 989 TFLOP/s (H100 bf16 dense peak).

use crate::line::BenchLine;
use anyhow::{Result, ensure};
use steel_trainer::batch::Batch;
use steel_trainer::device::Device;
use steel_trainer::engine::{Engine, Objective};
use steel_trainer::model::config::{Ffn, ModelConfig};
use steel_trainer::model::params::Layout;
use steel_trainer::optim::adamw::AdamWConfig;
use steel_trainer::train::init_params;

/// H100 SXM bf16 dense peak, FLOP/s.
pub const PEAK_FLOPS: f64 = 989e12;

#[derive(Clone, Debug)]
pub struct BenchTrainOptions {
    pub preset: String,
    pub device: Device,
    pub micro_batch: usize,
    pub seq: usize,
    /// Timed steps, after `warmup` untimed ones.
    pub steps: usize,
    pub warmup: usize,
    /// SFT-shaped batches: every row packs two documents (positions and attention restart
    /// at the middle) and the first quarter of each document is untrained (weight 0), as
    /// prompts are.
    pub sft: bool,
}

/// Parameters a token passes through, without the embedding table (the baseline's count).
pub fn active_nonembedding_params(config: &ModelConfig) -> usize {
    let mut n = config.param_count() - config.vocab_size * config.hidden_size;
    if let Ffn::TopkMoe {
        n_experts,
        top_k,
        expert_width,
        ..
    } = config.ffn
    {
        n -= config.num_layers * 3 * config.hidden_size * expert_width * (n_experts - top_k);
    }
    n
}

/// Model FLOPs per trained token at sequence length `seq`.
pub fn flops_per_token(config: &ModelConfig, seq: usize) -> f64 {
    6.0 * active_nonembedding_params(config) as f64
        + 6.0 * (config.num_layers * config.hidden_size * seq) as f64
}

/// Deterministic pseudo-random token blocks of `seq + 1` ids below `vocab`.
fn random_blocks(count: usize, seq: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..count)
        .map(|_| {
            (0..=seq)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % vocab as u64) as u32
                })
                .collect()
        })
        .collect()
}

/// One line: `case` is the preset; the step time, tokens/s, MFU and the GPU's peak memory.
pub fn bench_train(options: &BenchTrainOptions) -> Result<BenchLine> {
    let config = ModelConfig::preset(&options.preset)?;
    options.device.check_available()?;
    ensure!(
        options.micro_batch > 0 && options.seq > 0 && options.steps > 0,
        "micro-batch, seq and steps must be positive"
    );
    let layout = Layout::new(&config);
    let params = init_params(&layout, 0);
    let mut engine = Engine::new(
        options.device,
        &config,
        AdamWConfig::default(),
        params,
        None,
        0,
    )?;
    let mut batch = Batch::from_blocks(&random_blocks(
        options.micro_batch,
        options.seq,
        config.vocab_size,
        7,
    ));
    if options.sft {
        batch = sft_shaped(&batch);
    }
    let blocks = [batch];
    let mean = Objective::MeanOverTrained;
    let mut loss = 0.0;
    for step in 0..options.warmup {
        loss = engine.step(&blocks, mean, 3e-4, 1.0, None)?.loss;
        if step == 0 {
            check_first_loss(&config, loss)?;
        }
    }
    let start = std::time::Instant::now();
    for _ in 0..options.steps {
        // Each step returns its loss to the host, so the time covers the finished work.
        loss = engine.step(&blocks, mean, 3e-4, 1.0, None)?.loss;
    }
    let seconds = start.elapsed().as_secs_f64();
    let step_s = seconds / options.steps as f64;
    let tokens_per_s = (options.micro_batch * options.seq) as f64 / step_s;
    let peak_mem_gb = engine
        .peak_device_bytes()
        .map(|b| b as f64 / (1u64 << 30) as f64);
    Ok(BenchLine::new("train", &options.preset, seconds)
        .with("device", engine.describe()?)
        .with("batch", if options.sft { "sft" } else { "pretrain" })
        .with("micro_batch", options.micro_batch)
        .with("seq", options.seq)
        .with("params_total", config.param_count())
        .with("params_active_nonemb", active_nonembedding_params(&config))
        .with("step_s", step_s)
        .with("tokens_per_s", tokens_per_s)
        .with(
            "mfu",
            flops_per_token(&config, options.seq) * tokens_per_s / PEAK_FLOPS,
        )
        .with("loss", loss)
        // The most GPU memory our tensors held at once (GPU runs only).
        .with("peak_mem_gb", peak_mem_gb))
}

/// The seeded initialisation (weights of std 0.02) gives nearly uniform next-token
/// probabilities, so the first step's loss is ln(vocab) plus half the logits' variance (at
/// most ≈ 0.4 at the 1B presets' width): anything further off means a broken pass, and the
/// benchmark says so instead of timing it.
fn check_first_loss(config: &ModelConfig, loss: f32) -> Result<()> {
    let uniform = (config.vocab_size as f32).ln();
    ensure!(
        loss.is_finite() && (loss - uniform).abs() < 1.0,
        "the first step's loss is {loss}, not about ln({}) = {uniform:.2}: the training pass is broken",
        config.vocab_size
    );
    Ok(())
}

/// `batch`'s tokens laid out as SFT rows: two documents per row, the first quarter of each
/// document untrained.
fn sft_shaped(batch: &Batch) -> Batch {
    let t = batch.t;
    let half = (t / 2) as u32;
    let mut shaped = Batch::new(t);
    for row in batch.iter() {
        let weights: Vec<f32> = (0..t as u32)
            .map(|i| if i % half.max(1) < half / 4 { 0.0 } else { 1.0 })
            .collect();
        shaped.push_row(row.ids, row.targets, &weights, &[0, half.max(1)]);
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_parameters_match_the_baselines_count() {
        // torch_baseline.py's counts for its three H100 configs.
        let dense = ModelConfig::preset("dense-1b").unwrap();
        let d = 1792;
        let layer = 4 * d * d + 3 * d + 2 * d + 3 * d * 4736;
        assert_eq!(
            active_nonembedding_params(&dense),
            18 * layer + d + 151_936 * d
        );
        let topk = ModelConfig::preset("topk-moe-2b").unwrap();
        let routed_off = 18 * 3 * d * 1792 * 6;
        assert_eq!(
            active_nonembedding_params(&topk),
            topk.param_count() - 151_936 * d - routed_off
        );
        let steel = ModelConfig::preset("steel-1b").unwrap();
        assert_eq!(
            active_nonembedding_params(&steel),
            steel.param_count() - 151_936 * d
        );
    }

    #[test]
    fn cpu_bench_trains_a_tiny_model() {
        let result = bench_train(&BenchTrainOptions {
            preset: "tiny-dense".into(),
            device: Device::Cpu,
            micro_batch: 2,
            sft: false,
            seq: 16,
            steps: 3,
            warmup: 1,
        })
        .unwrap();
        let number = |name| result.get(name).and_then(|v| v.as_f64()).unwrap();
        assert!(number("tokens_per_s") > 0.0);
        // Random tokens over 2000 ids: the loss starts near ln(2000) ≈ 7.6.
        let loss = number("loss");
        assert!((loss - 2000f64.ln()).abs() < 0.5, "{loss}");
        assert_eq!(result.get("peak_mem_gb"), Some(&serde_json::Value::Null));
    }
}
