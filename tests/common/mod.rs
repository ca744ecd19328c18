//! Helpers shared by the end-to-end tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use steel_dataflow::convert::{ConvertOptions, ConvertSummary, REJECTS_FILE, convert};
use steel_dataflow::doc::UnifiedDoc;
use steel_dataflow::sources::FormatChoice;

/// `../shared/data/steel-samples`, which tests may assume exists.
pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/steel-samples")
}

pub fn sample(name: &str) -> String {
    samples().join(name).display().to_string()
}

/// Convert `inputs` with `format` into a fresh directory under `dir`.
pub fn run(dir: &Path, name: &str, inputs: &[String], format: &str) -> ConvertSummary {
    let format: FormatChoice = format.parse().expect("a known format");
    convert(inputs, &ConvertOptions::new(format, dir.join(name))).expect("conversion succeeds")
}

/// Every document of every JSONL shard in `dir`, in shard order.
pub fn read_docs(dir: &Path) -> Vec<UnifiedDoc> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    shards.sort();
    shards
        .iter()
        .flat_map(|shard| {
            let text = std::fs::read_to_string(shard).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<UnifiedDoc>>()
        })
        .collect()
}

/// Every line of `_rejects.jsonl` in `dir`.
pub fn read_rejects(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(REJECTS_FILE)).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The Qwen chat template around one question and answer.
pub fn chat(question: &str, answer: &str) -> String {
    format!(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n\
         {question}<|im_end|>\n<|im_start|>assistant\n{answer}"
    )
}

/// Demo documents tokenised with a 300-token BPE and packed into blocks of `seq` + 1 tokens,
/// under `dir/chunks` (for the training tests).
pub fn demo_chunks(dir: &Path, seq: u64) -> PathBuf {
    use steel_dataflow::demo_data::{DemoDataOptions, generate};
    use steel_dataflow::pack::tokenizer::{read_texts, train as train_tokenizer};
    use steel_dataflow::pack::{PackOptions, pack};
    let data = dir.join("data");
    generate(&DemoDataOptions {
        docs: 200,
        seed: 3,
        files: 1,
        output: data.clone(),
    })
    .unwrap();
    let converted = dir.join("converted");
    convert(
        &[data.join("corpus").display().to_string()],
        &ConvertOptions::new(FormatChoice::Auto, &converted),
    )
    .unwrap();
    let inputs = [converted.display().to_string()];
    let tokenizer = dir.join("tokenizer.json");
    train_tokenizer(read_texts(&inputs).unwrap(), 300, &tokenizer).unwrap();
    let mut options = PackOptions::new(&tokenizer, dir.join("chunks"));
    options.block_size = seq;
    options.chunk_blocks = 8;
    pack(&inputs, &options).unwrap();
    dir.join("chunks")
}

/// A tiny-dense checkpoint trained 2 steps on the demo corpus, and its tokenizer.
pub fn trained(dir: &Path) -> (PathBuf, PathBuf) {
    use steel_trainer::data::DataSource;
    use steel_trainer::optim::adamw::AdamWConfig;
    use steel_trainer::optim::schedule::Schedule;
    use steel_trainer::train::{TrainOptions, train};
    let chunks = demo_chunks(dir, 16);
    let out = dir.join("run");
    let options = TrainOptions {
        config: steel_trainer::model::config::ModelConfig::preset("tiny-dense").unwrap(),
        data: vec![DataSource {
            dir: chunks,
            weight: 1.0,
        }],
        seq: 16,
        micro_batch: 2,
        grad_accum: 1,
        steps: 2,
        schedule: Schedule::Cosine {
            max_lr: 3e-3,
            min_lr: 3e-4,
            warmup: 1,
            total: 2,
        },
        adamw: AdamWConfig::default(),
        clip: 1.0,
        seed: 11,
        out: out.clone(),
        checkpoint_every: 2,
        keep: 1,
        validation: None,
        init_params: None,
        device: steel_trainer::device::Device::Cpu,
        nproc: 1,
        nodes: None,
        max_bad_steps: 0,
        follow_every: 0,
        allow_tokenizer_mismatch: false,
        sft: None,
    };
    train(&options, false, &mut |_| {}).unwrap();
    (out.join("step-00000002"), dir.join("tokenizer.json"))
}

/// A `steel run` output epoch (`epoch-NNNNNN/` with shards and a report) of documents
/// `rows` of file `raw/a.jsonl`, and `tombstones` of earlier ones.
pub fn run_epoch(out: &Path, epoch: u64, rows: std::ops::Range<u64>, tombstones: &[u64]) {
    let dir = out.join(format!("epoch-{epoch:06}"));
    std::fs::create_dir_all(&dir).unwrap();
    let meta = |row: u64| serde_json::json!({"source": "web", "file": "raw/a.jsonl", "row": row});
    let docs: String = rows
        .map(|row| {
            let text = format!("document {row}: ")
                + &"一段中文文本 and some words ".repeat(3 + row as usize % 5);
            format!("{}\n", serde_json::json!({"text": text, "meta": meta(row)}))
        })
        .collect();
    if !docs.is_empty() {
        std::fs::write(dir.join("part-00000.jsonl"), docs).unwrap();
    }
    let lines: String = tombstones
        .iter()
        .map(|&row| {
            format!(
                "{}\n",
                serde_json::json!({"meta": meta(row), "epoch": epoch})
            )
        })
        .collect();
    if !lines.is_empty() {
        std::fs::write(dir.join("tombstones.jsonl"), lines).unwrap();
    }
    std::fs::write(dir.join("report.json"), "{}").unwrap();
}

/// `config` with seeded weights spread out — the training init times `scale`, biases and
/// norm weights given seeded values — so that attention is far from uniform and every bias
/// and norm matters to the logits.
pub fn seeded_model(
    config: steel_trainer::model::config::ModelConfig,
    seed: u64,
    scale: f32,
) -> steel_trainer::checkpoint::Model {
    let layout = steel_trainer::model::params::Layout::new(&config);
    let mut params = steel_trainer::train::init_params(&layout, seed);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for view in &layout.views {
        for x in &mut params[view.range()] {
            *x = if view.name.ends_with(".bias") {
                uniform()
            } else if view.name.ends_with("norm.weight") {
                1.0 + 0.5 * uniform()
            } else {
                *x * scale
            };
        }
    }
    steel_trainer::checkpoint::Model {
        config,
        layout,
        params,
        tokenizer_xxh3: None,
    }
}

/// `len` token ids below `vocab`, spread by a fixed formula of `seed` and the position.
pub fn ids(seed: u64, len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((seed as usize * 7919 + i * 104_729 + i * i * 31) % vocab) as u32)
        .collect()
}

/// The largest absolute difference.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
