//! Generation on the GPU (`steel_trainer::gpu::decode`) against the CPU pass
//! (`infer::forward`, its specification) on the tiny models of every FFN kind: prefill and
//! cached logits, KV-cached decoding against full recomputation on the GPU, greedy ids, a
//! batch of sequences of different lengths against each alone, C-Eval scoring, and the
//! commands with `--device cuda`.
//!
//! Tolerances. The GPU computes in bf16 (weights and activations; fp32 residual stream and
//! accumulation) where the CPU computes in fp32: each rounding is a relative 2⁻⁹, and a logit
//! carries a few dozen of them through two layers, so the GPU's logits are expected within a
//! fraction of a percent of the CPU's largest; [`BF16`] = 3% of it is the budget
//! `train_cuda.rs` gives losses and gradients. Two GPU passes that differ only in how the work
//! was split (a cached prefix against recomputation, a batch against one sequence) round the
//! same values but may sum GEMM products in another order (cuBLASLt picks kernels by shape),
//! which moves a bf16 value by an ulp now and then: [`SPLIT`] = 1% of the largest logit.
//! Greedy ids are compared exactly up to the first step where the CPU's two best logits are
//! closer than the GPU's measured error there (a near-tie either may break either way);
//! every later GPU choice is checked the same way along the GPU's own sequence.
//!
//! They need a GPU: ignored by a plain `cargo test`, run by `scripts/gpu-check.sh` (from the
//! GPU bundle: they read nothing from `../shared`).
#![cfg(feature = "cuda")]

mod common;

use common::{ids, max_diff};

use std::path::{Path, PathBuf};
use std::process::Command;
use steel_kernels::cuda::Gpu;
use steel_trainer::checkpoint::{Model, open_model};
use steel_trainer::device::{Attention, Device};
use steel_trainer::error::TrainError;
use steel_trainer::gpu::decode::GpuDecoder;
use steel_trainer::infer::decoder::{Cache, Decoder};
use steel_trainer::infer::forward::Logits;
use steel_trainer::infer::generate::{GenerateOptions, generate};
use steel_trainer::infer::sampling::{SamplingParams, argmax};
use steel_trainer::infer::tokenizer::{Codec, Tokenizer, stop_tokens};
use steel_trainer::mcq::{Benchmark, McqOptions, Mode, evaluate_checkpoint};
use steel_trainer::model::config::ModelConfig;

/// GPU against CPU: the bf16 budget, relative to the CPU's largest logit.
const BF16: f32 = 3e-2;
/// GPU against GPU, the work split differently.
const SPLIT: f32 = 1e-2;

fn gpu() -> Gpu {
    Gpu::open(0).expect("these tests need a GPU (run them on the GPU machine)")
}

/// Every model kind: the tiny presets (4 query heads on 2 key/value heads, head size 16),
/// and multi-query attention with tied embeddings and no q/k/v bias.
fn kinds() -> Vec<(&'static str, ModelConfig)> {
    let preset = |name| ModelConfig::preset(name).unwrap();
    vec![
        ("dense", preset("tiny-dense")),
        ("softmax-MoE", preset("tiny-softmax-moe")),
        ("top-k MoE", preset("tiny-topk-moe")),
        (
            "dense, MQA 4/1, tied, no q/k/v bias",
            ModelConfig {
                num_kv_heads: 1,
                tie_embeddings: true,
                qkv_bias: false,
                ..preset("tiny-dense")
            },
        ),
    ]
}

/// The GPU decoder of `model`'s weights.
fn on_gpu(model: &Model) -> GpuDecoder {
    GpuDecoder::new(gpu(), &model.config, &model.params).unwrap()
}

/// `max |got − want| ≤ tol · max |want|`, every value finite.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let scale = want.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
    let diff = max_diff(got, want);
    assert!(
        got.iter().all(|x| x.is_finite()) && diff <= tol * scale,
        "{what}: differs by {diff}, allowed {} ({tol} of {scale})",
        tol * scale
    );
}

/// One sequence's pass: feed `tokens` to `cache`.
fn feed<D: Decoder>(decoder: &D, cache: &mut D::Cache, tokens: &[u32], logits: Logits) -> Vec<f32> {
    let mut out = decoder.forward(&mut [cache], &[tokens], logits).unwrap();
    out.pop().unwrap()
}

/// Ids as text `<id>`, for the models with no tokenizer.
struct Ids;

impl Codec for Ids {
    fn encode(&self, text: &str) -> Result<Vec<u32>, TrainError> {
        text.split_terminator('>')
            .map(|piece| {
                piece
                    .strip_prefix('<')
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| TrainError::Data(format!("`{piece}>` is not an id")))
            })
            .collect()
    }

    fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|id| format!("<{id}>")).collect()
    }

    fn token_id(&self, _: &str) -> Option<u32> {
        None
    }
}

fn greedy(max_new_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens,
        sampling: SamplingParams::GREEDY,
        seed: 0,
        stop_tokens: Vec::new(),
        stop_strings: Vec::new(),
    }
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn gpu_prefill_and_cached_logits_match_the_cpu_for_every_model_kind() {
    for (kind, config) in kinds() {
        let model = common::seeded_model(config, 5, 4.0);
        let decoder = on_gpu(&model);
        let sequence = ids(1, 40, model.config.vocab_size);
        let (mut cpu, mut gpu) = (model.new_cache(), decoder.new_cache());
        // A prompt's prefill, then a chunk of 7 after the cached 25, then one token: every
        // new position's logits each time.
        for (from, to) in [(0, 25), (25, 32), (32, 33)] {
            let want = feed(&model, &mut cpu, &sequence[from..to], Logits::All);
            let got = feed(&decoder, &mut gpu, &sequence[from..to], Logits::All);
            assert_close(
                &format!("{kind}: positions {from}..{to}"),
                &got,
                &want,
                BF16,
            );
        }
        assert_eq!(gpu.tokens(), &sequence[..33]);
        // The last position's logits alone are the last row of all of them.
        let want = feed(&model, &mut cpu, &sequence[33..], Logits::Last);
        let got = feed(&decoder, &mut gpu, &sequence[33..], Logits::Last);
        assert_eq!(got.len(), model.config.vocab_size);
        assert_close(&format!("{kind}: last of 33..40"), &got, &want, BF16);
    }
}

/// A decode of 16 tokens after a prompt of 56 (the cache outgrows its first 64 positions on
/// the way): at each step the cached pass's logits against a fresh pass over the whole
/// sequence on the GPU.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn kv_cached_gpu_logits_equal_full_gpu_recomputation_at_every_step() {
    for (kind, config) in kinds() {
        let model = common::seeded_model(config, 7, 4.0);
        let decoder = on_gpu(&model);
        let mut sequence = ids(2, 56, model.config.vocab_size);
        let mut cache = decoder.new_cache();
        let mut logits = feed(&decoder, &mut cache, &sequence, Logits::Last);
        for step in 0..16 {
            let full = feed(&decoder, &mut decoder.new_cache(), &sequence, Logits::Last);
            assert_close(&format!("{kind}: step {step}"), &logits, &full, SPLIT);
            let next = argmax(&logits);
            sequence.push(next);
            logits = feed(&decoder, &mut cache, &[next], Logits::Last);
        }
        assert_eq!(cache.tokens(), &sequence[..]);
    }
}

/// Greedy generation on the GPU gives the CPU's ids, up to the first near-tie (see the
/// module docs); every GPU choice is the CPU's argmax or within the GPU's error of it.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn gpu_greedy_ids_are_the_cpus_up_to_near_ties() {
    const STEPS: usize = 24;
    for (kind, config) in kinds() {
        // Larger weights: logits far from uniform, so the argmax is rarely a near-tie.
        let model = common::seeded_model(config, 9, 8.0);
        let decoder = on_gpu(&model);
        let vocab = model.config.vocab_size;
        for (p, prompt) in [ids(3, 4, vocab), ids(4, 19, vocab)].iter().enumerate() {
            let prompts = std::slice::from_ref(prompt);
            let (cpu_ids, _) =
                generate(&model, &Ids, prompts, &greedy(STEPS), &mut |_, _| {}).unwrap();
            let (gpu_out, _) =
                generate(&decoder, &Ids, prompts, &greedy(STEPS), &mut |_, _| {}).unwrap();
            let (cpu_ids, gpu_ids) = (&cpu_ids[0].tokens, &gpu_out[0].tokens);
            assert_eq!(gpu_ids.len(), STEPS);
            assert_eq!(gpu_out[0].text, Ids.decode(gpu_ids));
            // Both models along the GPU's sequence.
            let (mut cpu, mut gpu) = (model.new_cache(), decoder.new_cache());
            let mut fed: &[u32] = prompt;
            let mut agreed = true;
            for (step, &chosen) in gpu_ids.iter().enumerate() {
                let want = feed(&model, &mut cpu, fed, Logits::Last);
                let got = feed(&decoder, &mut gpu, fed, Logits::Last);
                let what = format!("{kind}, prompt {p}, step {step}");
                assert_close(&what, &got, &want, BF16);
                assert_eq!(argmax(&got), chosen, "{what}: generate is the argmax");
                let best = argmax(&want);
                if best != chosen {
                    let margin = want[best as usize] - want[chosen as usize];
                    let error = max_diff(&got, &want);
                    assert!(
                        margin <= 2.0 * error,
                        "{what}: the GPU chose {chosen}, {margin} below the CPU's {best}, \
                         more than twice its error {error}"
                    );
                    agreed = false;
                }
                if agreed {
                    assert_eq!(cpu_ids[step], chosen, "{what}: before any near-tie");
                }
                fed = std::slice::from_ref(&gpu_ids[step]);
            }
        }
    }
}

/// Three sequences of 3, 11 and 20 prompt tokens in one pass (and 4 decode steps together),
/// against each run alone on the GPU.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn a_gpu_batch_of_three_lengths_equals_each_alone() {
    for (kind, config) in kinds() {
        let model = common::seeded_model(config, 11, 4.0);
        let decoder = on_gpu(&model);
        let vocab = model.config.vocab_size;
        let sequences = [ids(5, 7, vocab), ids(6, 15, vocab), ids(7, 24, vocab)];
        let prompt_lens = [3, 11, 20];
        let mut together = [
            decoder.new_cache(),
            decoder.new_cache(),
            decoder.new_cache(),
        ];
        let mut alone = [
            decoder.new_cache(),
            decoder.new_cache(),
            decoder.new_cache(),
        ];
        let mut step = |from: [usize; 3], to: [usize; 3], logits: Logits| {
            let fed: Vec<&[u32]> = (0..3).map(|s| &sequences[s][from[s]..to[s]]).collect();
            let [a, b, c] = &mut together;
            let rows = decoder.forward(&mut [a, b, c], &fed, logits).unwrap();
            for s in 0..3 {
                let single = feed(&decoder, &mut alone[s], fed[s], logits);
                let what = format!("{kind}: sequence {s}, {}..{}", from[s], to[s]);
                assert_close(&what, &rows[s], &single, SPLIT);
            }
        };
        step([0; 3], prompt_lens, Logits::All);
        for i in 0..4 {
            let at = prompt_lens.map(|len| len + i);
            step(at, at.map(|p| p + 1), Logits::Last);
        }
        for (s, cache) in together.iter().enumerate() {
            assert_eq!(cache.tokens(), &sequences[s][..prompt_lens[s] + 4]);
        }
    }
}

/// What the pass cannot run is refused before any device work, and the caches stay as they
/// were.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn bad_input_is_refused_and_leaves_the_caches_alone() {
    let model = common::seeded_model(
        ModelConfig {
            max_positions: 8,
            ..ModelConfig::preset("tiny-dense").unwrap()
        },
        3,
        4.0,
    );
    let decoder = on_gpu(&model);
    let mut cache = decoder.new_cache();
    feed(&decoder, &mut cache, &[1, 2, 3], Logits::Last);
    let vocab = model.config.vocab_size as u32;
    for (bad, message) in [
        (vec![4, vocab], "outside the model's vocabulary"),
        (vec![4; 6], "exceed the model's context of 8"),
        (vec![], "has no new token"),
    ] {
        let error = decoder
            .forward(&mut [&mut cache], &[&bad], Logits::Last)
            .unwrap_err()
            .to_string();
        assert!(error.contains(message), "{error}");
        assert_eq!(cache.tokens(), &[1, 2, 3]);
    }
    // The cache goes on as if nothing had been asked.
    let mut fresh = decoder.new_cache();
    let want = feed(&decoder, &mut fresh, &[1, 2, 3, 4], Logits::Last);
    let got = feed(&decoder, &mut cache, &[4], Logits::Last);
    assert_close("after the refusals", &got, &want, SPLIT);
}

/// A C-Eval dev directory (`{subject}_dev.csv`, questions with their answers), a tiny dense
/// model over the demo corpus's 300-token BPE (seeded weights, a HuggingFace directory) and
/// that tokenizer, all under `dir`: nothing from `../shared`, which the GPU machine lacks.
fn ceval_setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    common::demo_chunks(dir, 16);
    let tokenizer = dir.join("tokenizer.json");
    let dev = dir.join("ceval");
    std::fs::create_dir_all(&dev).unwrap();
    for (subject, answers) in [("computer_network", "ABCDA"), ("logic", "DCBAB")] {
        let mut text = String::from("id,question,A,B,C,D,answer,explanation\n");
        for (i, answer) in answers.chars().enumerate() {
            text.push_str(&format!(
                "{i},问题 {i}：今天的数据是第几块____。,甲{i},乙,丙{i},丁,{answer},\n"
            ));
        }
        std::fs::write(dev.join(format!("{subject}_dev.csv")), text).unwrap();
    }
    let model = common::seeded_model(ModelConfig::preset("tiny-dense").unwrap(), 13, 4.0);
    let model_dir = dir.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    steel_trainer::checkpoint::write_model(&model_dir, &model.config, &model.layout, &model.params)
        .unwrap();
    (dev, model_dir, tokenizer)
}

/// C-Eval (2 shots, two subjects) scored on the GPU and on the CPU: letter logits and
/// log-likelihoods within the bf16 budget of the CPU's largest score, the same predictions
/// wherever the CPU's best score leads by more than twice the GPU's error; `gen` answers every
/// question.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn ceval_scores_on_the_gpu_match_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, model, tokenizer) = ceval_setup(dir.path());
    let options = |mode| McqOptions {
        benchmark: Benchmark::Ceval,
        dev: dev.clone(),
        test: None,
        subjects: None,
        shots: 2,
        mode,
        chat: false,
        max_new_tokens: 4,
    };
    let run = |mode, device| {
        evaluate_checkpoint(
            &options(mode),
            &model,
            Some(&tokenizer),
            false,
            device,
            &|_, _| {},
        )
        .unwrap()
    };
    for mode in [Mode::Letter, Mode::Loglik] {
        let cpu = run(mode, Device::Cpu);
        let gpu = run(mode, Device::Cuda(Attention::Flash));
        assert_eq!(cpu.predictions.len(), 10);
        assert_eq!(gpu.predictions.len(), cpu.predictions.len());
        let scale = cpu
            .predictions
            .iter()
            .flat_map(|p| p.letter_logits)
            .fold(1e-6f32, |m, x| m.max(x.abs()));
        for (g, c) in gpu.predictions.iter().zip(&cpu.predictions) {
            let what = format!("{mode:?} {} {}", c.subject, c.id);
            let error = max_diff(&g.letter_logits, &c.letter_logits);
            assert!(
                error <= BF16 * scale,
                "{what}: scores {:?} vs the CPU's {:?}",
                g.letter_logits,
                c.letter_logits
            );
            let mut sorted = c.letter_logits;
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted[0] - sorted[1] > 2.0 * error {
                assert_eq!(g.prediction, c.prediction, "{what}");
            }
        }
    }
    let generated = run(Mode::Gen, Device::Cuda(Attention::Flash));
    assert!(generated.predictions.iter().all(|p| p.generated.is_some()));
}

/// The `steel` binary: beside this test binary (the GPU bundle) or one folder up (cargo's
/// `target/<profile>/deps/`); else where cargo built it.
fn steel_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    [dir.join("steel"), dir.parent().unwrap().join("steel")]
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_steel")))
}

fn steel(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(steel_binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("steel runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "steel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `steel generate --device cuda` prints what the library's GPU decoder generates; `steel
/// chat` and `steel eval ceval` run on the GPU too.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn the_commands_run_on_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, tokenizer_path) = common::trained(dir.path());
    let (checkpoint, tokenizer_arg) = (
        checkpoint.display().to_string(),
        tokenizer_path.display().to_string(),
    );
    let model_args = [
        "--checkpoint",
        &checkpoint,
        "--tokenizer",
        &tokenizer_arg,
        "--device",
        "cuda",
    ];
    let out = steel(
        &[
            &[
                "generate",
                "--prompt",
                "今天",
                "--max-new-tokens",
                "6",
                "--json",
            ],
            &model_args[..],
        ]
        .concat(),
        "",
    );
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let tokens: Vec<u32> = line["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();

    let model = open_model(Path::new(&checkpoint)).unwrap();
    let tokenizer = Tokenizer::load(&tokenizer_path).unwrap();
    let decoder = on_gpu(&model);
    let prompt = tokenizer.encode("今天").unwrap();
    let options = GenerateOptions {
        stop_tokens: stop_tokens(&tokenizer),
        ..greedy(6)
    };
    let (library, _) = generate(&decoder, &tokenizer, &[prompt], &options, &mut |_, _| {}).unwrap();
    assert_eq!(tokens, library[0].tokens);
    assert_eq!(line["text"], library[0].text);

    let out = steel(
        &[
            &["chat", "--max-new-tokens", "4", "--json"],
            &model_args[..],
        ]
        .concat(),
        "你好\n/reset\n再见\n",
    );
    let replies = String::from_utf8(out.stdout).unwrap();
    assert_eq!(replies.lines().count(), 2, "{replies}");

    let eval_dir = tempfile::tempdir().unwrap();
    let (dev, model_dir, tokenizer) = ceval_setup(eval_dir.path());
    let [dev, model_dir, tokenizer] = [dev, model_dir, tokenizer].map(|p| p.display().to_string());
    let out = steel(
        &[
            "eval",
            "ceval",
            "--checkpoint",
            &model_dir,
            "--tokenizer",
            &tokenizer,
            "--dev",
            &dev,
            "--shots",
            "1",
            "--device",
            "cuda",
            "--json",
        ],
        "",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["benchmark"], "ceval");
}
