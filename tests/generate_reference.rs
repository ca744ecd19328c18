//! Steel's generation against `transformers` (`tests/data/generate/reference.json`, made by
//! `tests/data/generate/make_reference.py` with torch 2.15 / transformers 5.24 on the CPU):
//! greedy `generate` ids for a plain and a chat prompt on the shared tiny Qwen2 (Qwen1.5
//! tokenizer) and for an id prompt on each parity model (dense, softmax-MoE, top-k MoE), and
//! the distributions transformers' logits processors leave from fixed logits.

use serde_json::Value;
use std::path::{Path, PathBuf};
use steel_trainer::checkpoint::open_model;
use steel_trainer::error::TrainError;
use steel_trainer::infer::chat::{DEFAULT_SYSTEM, template};
use steel_trainer::infer::generate::{GenerateOptions, StopReason, generate};
use steel_trainer::infer::sampling::{SamplingParams, softmax, warp};
use steel_trainer::infer::tokenizer::{Codec, Tokenizer};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> Value {
    let path = root().join("tests/data/generate/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Token ids only (the parity models have no tokenizer).
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

/// Greedy ids from `model_dir` after the run's prompt equal transformers' (which ran with no
/// stop token). Every step's top-2 logit gap in the reference is far above float rounding
/// (checked here), so the ids must agree exactly rather than up to a near tie.
fn check_greedy(name: &str, model_dir: &Path, run: &Value, codec: &dyn Codec, new_tokens: usize) {
    let gaps: Vec<f64> = run["top2_gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_f64().unwrap())
        .collect();
    assert!(
        gaps.iter().all(|&g| g > 1e-3),
        "{name}: a near tie in the reference ({gaps:?}); compare up to it instead"
    );
    let model = open_model(model_dir).unwrap();
    let options = GenerateOptions {
        max_new_tokens: new_tokens,
        sampling: SamplingParams::GREEDY,
        seed: 0,
        stop_tokens: Vec::new(),
        stop_strings: Vec::new(),
    };
    let prompt = ids(&run["prompt_ids"]);
    let (out, _) = generate(&model, codec, &[prompt], &options, &mut |_, _| {}).unwrap();
    assert_eq!(out[0].tokens, ids(&run["tokens"]), "{name}");
    assert_eq!(out[0].stop_reason, StopReason::Length);
}

#[test]
fn greedy_ids_match_transformers_on_the_tiny_qwen2() {
    let reference = reference();
    let new_tokens = reference["new_tokens"].as_u64().unwrap() as usize;
    let shared = root().join("../shared/data");
    let tokenizer = Tokenizer::load(&shared.join("tokenizers/qwen1_5/tokenizer.json")).unwrap();
    let chat = &reference["tiny_qwen2"]["chat"];
    // The chat prompt is Steel's template, and both prompts tokenize as transformers' did.
    assert_eq!(
        chat["text"].as_str().unwrap(),
        template(DEFAULT_SYSTEM, &[], "你好，请介绍一下你自己。")
    );
    for name in ["plain", "chat"] {
        let run = &reference["tiny_qwen2"][name];
        assert_eq!(
            tokenizer.encode(run["text"].as_str().unwrap()).unwrap(),
            ids(&run["prompt_ids"]),
            "{name}"
        );
        let dir = shared.join("hf/tiny-qwen2");
        check_greedy(name, &dir, run, &tokenizer, new_tokens);
    }
}

#[test]
fn greedy_ids_match_transformers_for_every_model_kind() {
    let reference = reference();
    let new_tokens = reference["new_tokens"].as_u64().unwrap() as usize;
    for name in ["dense", "softmax", "topk"] {
        let dir: PathBuf = root().join("tests/data/parity").join(name);
        check_greedy(name, &dir, &reference["parity"][name], &NoText, new_tokens);
    }
}

#[test]
fn sampling_filters_leave_transformers_distributions() {
    let reference = reference();
    let warpers = &reference["warpers"];
    let logits: Vec<f32> = warpers["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let history = ids(&warpers["history"]);
    for case in warpers["cases"].as_array().unwrap() {
        let settings = &case["settings"];
        let get =
            |key: &str, default: f64| settings.get(key).map_or(default, |v| v.as_f64().unwrap());
        // A processor transformers was not given is off (temperature 1, not greedy).
        let params = SamplingParams {
            temperature: get("temperature", 1.0) as f32,
            top_k: get("top_k", 0.0) as usize,
            top_p: get("top_p", 1.0) as f32,
            min_p: get("min_p", 0.0) as f32,
            repetition_penalty: get("repetition_penalty", 1.0) as f32,
        };
        let ours = softmax(&warp(&params, &logits, &history));
        let theirs: Vec<f64> = case["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                (a - b).abs() < 1e-6,
                "{settings}: token {i} has {a}, transformers {b}"
            );
            assert_eq!(
                *a == 0.0,
                *b == 0.0,
                "{settings}: token {i} kept or removed alike"
            );
        }
    }
}
