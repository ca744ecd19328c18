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
