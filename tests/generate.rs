//! Generation on the CPU (`steel_trainer::infer`, `steel generate`, `steel chat`), against
//! oracles: the training pass's logits over the whole prefix (`model::pass::logits`) at every
//! step, repeated argmax over it for greedy decoding, transformers' logits for the tiny Qwen2
//! in `../shared/data/hf/tiny-qwen2`, and the library for the command line.

mod common;

use common::{ids, max_diff};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use steel_trainer::checkpoint::{Model, open_model};
use steel_trainer::error::TrainError;
use steel_trainer::infer::cache::KvCache;
use steel_trainer::infer::chat::{Chat, DEFAULT_SYSTEM, Turn, template};
use steel_trainer::infer::forward::{Logits, forward, next_logits};
use steel_trainer::infer::generate::{GenerateOptions, StopReason, generate, generate_in_batches};
use steel_trainer::infer::sampling::{SamplingParams, argmax};
use steel_trainer::infer::stream::IncrementalDecoder;
use steel_trainer::infer::tokenizer::{Codec, Tokenizer};
use steel_trainer::model::config::ModelConfig;
use steel_trainer::model::pass::logits as full_logits;

const STEEL: &str = env!("CARGO_BIN_EXE_steel");

fn shared(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(path)
}

/// A preset's model with seeded weights: `init_params`, then spread out (weights ×10, biases
/// and norms given seeded values) so that attention is far from uniform and every bias and
/// norm matters to the logits.
fn seeded(config: ModelConfig, seed: u64) -> Model {
    common::seeded_model(config, seed, 10.0)
}

fn preset(name: &str) -> ModelConfig {
    ModelConfig::preset(name).unwrap()
}

/// Every model kind, grouped-query attention (the tiny presets: 4 query heads on 2 key/value
/// heads), multi-query (1) and plain multi-head (4), tied and without q/k/v biases.
fn kinds() -> Vec<(&'static str, ModelConfig)> {
    vec![
        ("dense, GQA 4/2", preset("tiny-dense")),
        ("softmax-MoE", preset("tiny-softmax-moe")),
        ("top-k MoE", preset("tiny-topk-moe")),
        (
            "dense, MQA 4/1",
            ModelConfig {
                num_kv_heads: 1,
                ..preset("tiny-dense")
            },
        ),
        (
            "top-k MoE, MHA 4/4, tied, no q/k/v bias",
            ModelConfig {
                num_kv_heads: 4,
                tie_embeddings: true,
                qkv_bias: false,
                ..preset("tiny-topk-moe")
            },
        ),
    ]
}

/// Logits of every position of `ids` by the training pass.
fn oracle(model: &Model, ids: &[u32]) -> Vec<f32> {
    full_logits(&model.config, &model.layout, &model.params, ids)
}

/// The last position's row of the training pass over `ids`.
fn oracle_last(model: &Model, ids: &[u32]) -> Vec<f32> {
    let vocab = model.config.vocab_size;
    oracle(model, ids)[(ids.len() - 1) * vocab..].to_vec()
}

#[test]
fn kv_cached_logits_equal_full_recomputation_at_every_step() {
    for (kind, config) in kinds() {
        let model = seeded(config, 5);
        let vocab = model.config.vocab_size;
        let sequence = ids(1, 12, vocab);
        // Prefill 5 tokens, every position's logits, then one token per step.
        let mut cache = KvCache::new(&model.config);
        let prefill = forward(&model, &mut [&mut cache], &[&sequence[..5]], Logits::All).unwrap();
        let diff = max_diff(&prefill[0], &oracle(&model, &sequence[..5]));
        assert!(diff <= 1e-4, "{kind}: prefill differs by {diff}");
        for step in 5..sequence.len() {
            let cached = next_logits(&model, &mut cache, &sequence[step..=step]).unwrap();
            let diff = max_diff(&cached, &oracle_last(&model, &sequence[..=step]));
            assert!(diff <= 1e-4, "{kind}: step {step} differs by {diff}");
        }
        assert_eq!(cache.tokens(), &sequence[..]);

        // Three sequences in one pass, each at its own position: one with 2 cached tokens
        // and 3 new, one with nothing cached and 5 new, one with 4 cached and 1 new.
        let (a, b, c) = (ids(2, 5, vocab), ids(3, 5, vocab), ids(4, 5, vocab));
        let mut caches = [
            KvCache::new(&model.config),
            KvCache::new(&model.config),
            KvCache::new(&model.config),
        ];
        next_logits(&model, &mut caches[0], &a[..2]).unwrap();
        next_logits(&model, &mut caches[2], &c[..4]).unwrap();
        let [ca, cb, cc] = &mut caches;
        let rows = forward(
            &model,
            &mut [ca, cb, cc],
            &[&a[2..], &b[..], &c[4..]],
            Logits::All,
        )
        .unwrap();
        let full = [oracle(&model, &a), oracle(&model, &b), oracle(&model, &c)];
        for (s, (row, (full, from))) in rows.iter().zip(full.iter().zip([2, 0, 4])).enumerate() {
            let diff = max_diff(row, &full[from * vocab..]);
            assert!(diff <= 1e-4, "{kind}: batch sequence {s} differs by {diff}");
        }
    }
}

/// Ids as text, for models with no tokenizer: `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`
/// are ids 0, 1, 2; ids 3..259 are the bytes 0..256 (so a Chinese character is three tokens);
/// any other id `N` reads `<N>`.
struct Bytes;

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

impl Codec for Bytes {
    fn encode(&self, text: &str) -> Result<Vec<u32>, TrainError> {
        let mut rest = text;
        let mut ids = Vec::new();
        while !rest.is_empty() {
            if let Some((id, special)) = SPECIALS
                .iter()
                .enumerate()
                .find(|(_, s)| rest.starts_with(*s))
            {
                ids.push(id as u32);
                rest = &rest[special.len()..];
            } else {
                let c = rest.chars().next().unwrap();
                let mut buffer = [0; 4];
                ids.extend(c.encode_utf8(&mut buffer).bytes().map(|b| b as u32 + 3));
                rest = &rest[c.len_utf8()..];
            }
        }
        Ok(ids)
    }

    fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            match id {
                0..=2 => bytes.extend_from_slice(SPECIALS[id as usize].as_bytes()),
                3..=258 => bytes.push((id - 3) as u8),
                _ => bytes.extend_from_slice(format!("<{id}>").as_bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn token_id(&self, token: &str) -> Option<u32> {
        SPECIALS.iter().position(|s| *s == token).map(|i| i as u32)
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

/// Greedy decoding the slow way: the argmax of the training pass over the whole sequence,
/// recomputed for every new token.
fn repeated_argmax(model: &Model, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut sequence = prompt.to_vec();
    for _ in 0..steps {
        sequence.push(argmax(&oracle_last(model, &sequence)));
    }
    sequence[prompt.len()..].to_vec()
}

#[test]
fn greedy_generation_is_repeated_argmax_over_full_recomputation() {
    for (kind, config) in kinds() {
        let model = seeded(config, 9);
        let vocab = model.config.vocab_size;
        let prompts = vec![ids(5, 3, vocab), ids(6, 7, vocab), ids(7, 1, vocab)];
        let mut streamed = vec![String::new(); prompts.len()];
        let (generations, stats) = generate(&model, &Bytes, &prompts, &greedy(10), &mut |i, t| {
            streamed[i].push_str(t)
        })
        .unwrap();
        for (i, (prompt, generation)) in prompts.iter().zip(&generations).enumerate() {
            assert_eq!(
                generation.tokens,
                repeated_argmax(&model, prompt, 10),
                "{kind}: prompt {i}"
            );
            assert_eq!(generation.stop_reason, StopReason::Length);
            assert_eq!(generation.text, Bytes.decode(&generation.tokens));
            assert_eq!(
                streamed[i], generation.text,
                "{kind}: the stream is the text"
            );
        }
        assert_eq!(stats.prefill_tokens, 3 + 7 + 1);
        assert_eq!(stats.decode_tokens, 3 * 9);
    }
}

#[test]
fn a_prompt_samples_the_same_alone_as_in_a_batch() {
    let model = seeded(preset("tiny-topk-moe"), 2);
    let vocab = model.config.vocab_size;
    let prompts = vec![ids(8, 4, vocab), ids(9, 6, vocab), ids(10, 2, vocab)];
    let options = GenerateOptions {
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.01,
            repetition_penalty: 1.1,
        },
        seed: 3,
        ..greedy(8)
    };
    let (batch, _) = generate(&model, &Bytes, &prompts, &options, &mut |_, _| {}).unwrap();
    for (i, prompt) in prompts.iter().enumerate() {
        let alone = GenerateOptions {
            seed: 3 + i as u64,
            ..options.clone()
        };
        let (single, _) = generate(
            &model,
            &Bytes,
            std::slice::from_ref(prompt),
            &alone,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(single[0].tokens, batch[i].tokens, "prompt {i}");
    }
    // Another seed samples something else.
    let other = GenerateOptions {
        seed: 4,
        ..options.clone()
    };
    let (again, _) = generate(&model, &Bytes, &prompts, &options, &mut |_, _| {}).unwrap();
    let (reseeded, _) = generate(&model, &Bytes, &prompts, &other, &mut |_, _| {}).unwrap();
    let tokens = |gs: &[steel_trainer::infer::generate::Generation]| -> Vec<Vec<u32>> {
        gs.iter().map(|g| g.tokens.clone()).collect()
    };
    assert_eq!(tokens(&again), tokens(&batch), "a seeded batch repeats");
    // In groups of 2 (prompts 0-1, then 2): the same seeds, the same tokens.
    let (grouped, stats) =
        generate_in_batches(&model, &Bytes, &prompts, 2, &options, &mut |_, _| {}).unwrap();
    assert_eq!(tokens(&grouped), tokens(&batch));
    assert_eq!(stats.sequences, 3);
    assert_ne!(tokens(&reseeded), tokens(&batch));
}

#[test]
fn generation_stops_at_stop_tokens_stop_strings_and_the_context() {
    let model = seeded(preset("tiny-dense"), 4);
    let prompt = ids(11, 5, model.config.vocab_size);
    let run = |options: &GenerateOptions, model: &Model| {
        let (mut out, _) = generate(
            model,
            &Bytes,
            std::slice::from_ref(&prompt),
            options,
            &mut |_, _| {},
        )
        .unwrap();
        out.pop().unwrap()
    };
    let free = repeated_argmax(&model, &prompt, 8);
    // A stop token ends the sequence before it, at its first occurrence.
    let stop = free[4];
    let first = free.iter().position(|&t| t == stop).unwrap();
    let stopped = run(
        &GenerateOptions {
            stop_tokens: vec![stop],
            ..greedy(8)
        },
        &model,
    );
    assert_eq!(stopped.tokens, free[..first]);
    assert_eq!(stopped.stop_reason, StopReason::StopToken);
    // A stop string: the text ends before it; the token that completed it stays.
    let marker = Bytes.decode(&[free[2]]);
    let at = free
        .iter()
        .position(|&t| Bytes.decode(&[t]).contains(&marker))
        .unwrap();
    let stopped = run(
        &GenerateOptions {
            stop_strings: vec![marker.clone()],
            ..greedy(8)
        },
        &model,
    );
    let text = Bytes.decode(&free[..=at]);
    assert_eq!(stopped.tokens, free[..=at]);
    assert_eq!(stopped.text, text[..text.find(&marker).unwrap()]);
    assert_eq!(stopped.stop_reason, StopReason::StopString);
    // A context of 8 positions after a 5-token prompt: tokens are predicted at positions 4
    // to 7, the last one not fed: 8 - 5 + 1 = 4 tokens.
    let short = seeded(
        ModelConfig {
            max_positions: 8,
            ..preset("tiny-dense")
        },
        4,
    );
    let full = run(&greedy(100), &short);
    assert_eq!(full.tokens, free[..4]);
    assert_eq!(full.stop_reason, StopReason::Context);
    // A prompt longer than the context is refused.
    let long = ids(1, 9, short.config.vocab_size);
    let error = generate(&short, &Bytes, &[long], &greedy(1), &mut |_, _| {}).unwrap_err();
    assert!(error.to_string().contains("the model's"), "{error}");
}

/// `../shared/data/hf/tiny-qwen2`, a `Qwen2ForCausalLM` transformers saved, with reference
/// logits. `tests/model_config.rs` checks the training pass against the reference; here the
/// cached pass is checked against both, and greedy decoding continues from the prompt.
#[test]
fn tiny_qwen2_cached_logits_match_transformers_and_the_training_pass() {
    let dir = shared("hf/tiny-qwen2");
    let model = open_model(&dir).unwrap();
    let vocab = model.config.vocab_size;
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference_logits.json")).unwrap())
            .unwrap();
    let prompt: Vec<u32> = reference["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let mut cache = KvCache::new(&model.config);
    let all = forward(&model, &mut [&mut cache], &[&prompt], Logits::All)
        .unwrap()
        .pop()
        .unwrap();
    let last = &all[(prompt.len() - 1) * vocab..];
    for (i, expected) in reference["last_logits_first8"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let expected = expected.as_f64().unwrap() as f32;
        assert!(
            (last[i] - expected).abs() < 1e-4,
            "logit {i}: ours {}, transformers {expected}",
            last[i]
        );
    }
    let argmax_per_position: Vec<u64> = all.chunks(vocab).map(|row| argmax(row) as u64).collect();
    let expected: Vec<u64> = reference["argmax_per_pos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(argmax_per_position, expected);
    let diff = max_diff(&all, &oracle(&model, &prompt));
    assert!(
        diff <= 1e-4,
        "prefill differs from the training pass by {diff}"
    );
    // Greedy decoding from there, each step checked against the training pass.
    let mut sequence = prompt.clone();
    let mut logits = last.to_vec();
    for step in 0..6 {
        let next = argmax(&logits);
        sequence.push(next);
        logits = next_logits(&model, &mut cache, &[next]).unwrap();
        let diff = max_diff(&logits, &oracle_last(&model, &sequence));
        assert!(diff <= 1e-4, "step {step} differs by {diff}");
    }
}

/// Qwen's byte-level BPE has a token for every byte: 中 (E4 B8 AD) as the three byte tokens
/// `ä` (E4), `¸` (B8) and `Ń` (AD, which the byte-level alphabet moves to U+0143) streams as
/// nothing, nothing, then 中 whole.
#[test]
fn a_chinese_character_split_across_qwen_tokens_streams_whole() {
    let tokenizer = Tokenizer::load(&shared("tokenizers/qwen1_5/tokenizer.json")).unwrap();
    let bytes: Vec<u32> = ["ä", "¸", "Ń"]
        .iter()
        .map(|t| tokenizer.token_id(t).unwrap())
        .collect();
    assert_eq!(tokenizer.decode(&bytes), "中");
    let word = tokenizer.encode("天气很好").unwrap();
    let ids: Vec<u32> = bytes.iter().chain(&word).copied().collect();
    let mut decoder = IncrementalDecoder::new();
    let pieces: Vec<String> = ids.iter().map(|&id| decoder.push(&tokenizer, id)).collect();
    assert_eq!(pieces[..3], ["", "", "中"]);
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')));
    assert_eq!(pieces.concat() + &decoder.finish(&tokenizer), "中天气很好");
}

#[test]
fn a_chat_keeps_its_history_within_the_context() {
    // 160 positions; with the system prompt "S" a first prompt is 35 byte tokens, and every
    // reply of 12 tokens like `<1234>` is re-read as about 70 bytes, so a turn or two fit.
    let model = seeded(
        ModelConfig {
            max_positions: 160,
            ..preset("tiny-dense")
        },
        6,
    );
    let options = greedy(12);
    let mut chat = Chat::new(&model, &Bytes, options.clone(), Some("S".into()));
    let mut dropped = 0;
    for (turn, message) in ["hi", "你好", "more", "again", "last"].iter().enumerate() {
        let kept: Vec<Turn> = chat.turns().to_vec();
        let reply = chat.say(message, &mut |_| {}).unwrap();
        assert!(
            reply.prompt_tokens + options.max_new_tokens <= 160,
            "turn {turn}"
        );
        dropped += reply.dropped_turns;
        // The reply is what a fresh generation gives on the prompt of the turns it kept: the
        // cache carried over from the last turn changes nothing.
        let prompt = Bytes
            .encode(&template("S", &kept[reply.dropped_turns..], message))
            .unwrap();
        assert_eq!(prompt.len(), reply.prompt_tokens);
        let (fresh, _) = generate(&model, &Bytes, &[prompt], &options, &mut |_, _| {}).unwrap();
        assert_eq!(fresh[0].tokens, reply.generation.tokens, "turn {turn}");
    }
    assert!(dropped > 0, "the history outgrew the context");
    assert_eq!(chat.turns().last().unwrap().user, "last");
    // A message too long for the context even alone is refused, and the chat goes on.
    let error = chat.say(&"长".repeat(60), &mut |_| {}).unwrap_err();
    assert!(error.to_string().contains("context"), "{error}");
    chat.reset();
    assert!(chat.turns().is_empty());
    assert_eq!(
        chat.say("hi", &mut |_| {}).unwrap().prompt_tokens,
        Bytes.encode(&template("S", &[], "hi")).unwrap().len()
    );
}

// The command line, on a checkpoint trained here.

fn steel<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(STEEL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("steel runs");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn token_list(value: &serde_json::Value) -> Vec<u32> {
    value["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn steel_generate_prints_what_the_library_generates() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, tokenizer_path) = common::trained(dir.path());
    let (checkpoint_arg, tokenizer_arg) = (
        checkpoint.display().to_string(),
        tokenizer_path.display().to_string(),
    );
    let base = [
        "generate",
        "--checkpoint",
        &checkpoint_arg,
        "--tokenizer",
        &tokenizer_arg,
        "--max-new-tokens",
        "6",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let lines = json_lines(&steel(&with(&["--prompt", "今天", "--json"]), None));
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    let mut fields: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["stop_reason", "text", "tokens", "tokens_per_second"]
    );
    assert!(line["tokens_per_second"].as_f64().unwrap() > 0.0);

    // The library's greedy generation on the same checkpoint, and its oracle.
    let model = open_model(&checkpoint).unwrap();
    let tokenizer = Tokenizer::load(&tokenizer_path).unwrap();
    let prompt = tokenizer.encode("今天").unwrap();
    let options = GenerateOptions {
        stop_tokens: steel_trainer::infer::tokenizer::stop_tokens(&tokenizer),
        ..greedy(6)
    };
    let (library, _) = generate(
        &model,
        &tokenizer,
        std::slice::from_ref(&prompt),
        &options,
        &mut |_, _| {},
    )
    .unwrap();
    let tokens = token_list(line);
    assert_eq!(tokens, library[0].tokens);
    assert_eq!(tokens, repeated_argmax(&model, &prompt, tokens.len()));
    assert_eq!(line["text"], tokenizer.decode(&tokens));
    assert_eq!(
        (tokens.len(), line["stop_reason"].as_str().unwrap()),
        (6, "length"),
        "6 new tokens without a stop token"
    );

    // Streaming: the same text on stdout.
    let streamed = steel(&with(&["--prompt", "今天"]), None);
    assert!(streamed.status.success());
    assert_eq!(
        String::from_utf8(streamed.stdout).unwrap(),
        format!("{}\n", line["text"].as_str().unwrap())
    );

    // A batch from a JSONL file: one line per prompt, in order, each as it is alone.
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"今天\"}\n\n{\"prompt\": \"hello\"}\n",
    )
    .unwrap();
    let prompts_arg = prompts.display().to_string();
    let batch = json_lines(&steel(&with(&["--prompts", &prompts_arg, "--json"]), None));
    assert_eq!(batch.len(), 2);
    assert_eq!(token_list(&batch[0]), tokens);
    let hello = json_lines(&steel(&with(&["--prompt", "hello", "--json"]), None));
    assert_eq!(token_list(&batch[1]), token_list(&hello[0]));
    let one_by_one = json_lines(&steel(
        &with(&["--prompts", &prompts_arg, "--batch", "1", "--json"]),
        None,
    ));
    let tokens_and_text = |lines: &[serde_json::Value]| -> Vec<(Vec<u32>, String)> {
        lines
            .iter()
            .map(|l| (token_list(l), l["text"].as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(tokens_and_text(&one_by_one), tokens_and_text(&batch));

    // --chat wraps the prompt in the template.
    let chat = json_lines(&steel(
        &with(&["--prompt", "今天", "--chat", "--json"]),
        None,
    ));
    let wrapped = tokenizer
        .encode(&template(DEFAULT_SYSTEM, &[], "今天"))
        .unwrap();
    let (expected, _) = generate(&model, &tokenizer, &[wrapped], &options, &mut |_, _| {}).unwrap();
    assert_eq!(token_list(&chat[0]), expected[0].tokens);

    // Here there is no GPU (or no `cuda` feature): `--device cuda` is refused, saying why.
    let no_gpu = if cfg!(feature = "cuda") {
        "no CUDA driver found"
    } else {
        "built without the `cuda` feature"
    };
    let cuda = steel(&with(&["--prompt", "今天", "--device", "cuda"]), None);
    assert!(!cuda.status.success());
    let error = String::from_utf8_lossy(&cuda.stderr);
    assert!(error.contains(no_gpu), "{error}");
    let chat_on_cuda = steel(
        &["chat", "--checkpoint", &checkpoint_arg, "--device", "cuda"],
        Some("你好\n"),
    );
    let error = String::from_utf8_lossy(&chat_on_cuda.stderr);
    assert!(error.contains(no_gpu), "{error}");

    // Another tokenizer than the checkpoint was trained with (here: the same file with one
    // more byte) is refused unless allowed, one larger than the vocabulary always; a
    // checkpoint directory without tokenizer.json needs --tokenizer.
    let args = [
        "generate",
        "--checkpoint",
        &checkpoint_arg,
        "--prompt",
        "今天",
    ];
    let changed = dir.path().join("changed.json");
    let mut bytes = std::fs::read(&tokenizer_path).unwrap();
    bytes.push(b'\n');
    std::fs::write(&changed, bytes).unwrap();
    let changed_arg = changed.display().to_string();
    let other = steel(&[&args[..], &["--tokenizer", &changed_arg]].concat(), None);
    let error = String::from_utf8_lossy(&other.stderr);
    assert!(error.contains("tokenizer mismatch"), "{error}");
    let allowed = [
        &args[..],
        &["--tokenizer", &changed_arg, "--allow-tokenizer-mismatch"],
    ];
    assert!(steel(&allowed.concat(), None).status.success());
    let qwen = shared("tokenizers/qwen1_5/tokenizer.json")
        .display()
        .to_string();
    let larger = steel(&[&args[..], &["--tokenizer", &qwen]].concat(), None);
    let error = String::from_utf8_lossy(&larger.stderr);
    assert!(
        error.contains("has 151646 tokens but the model only 2000"),
        "{error}"
    );
    let none = steel(&args, None);
    let error = String::from_utf8_lossy(&none.stderr);
    assert!(error.contains("give one with --tokenizer"), "{error}");
}

#[test]
fn generate_and_chat_help_name_their_flags() {
    for (command, flags) in [
        (
            "generate",
            &[
                "--checkpoint",
                "--tokenizer",
                "--prompt",
                "--prompts",
                "--max-new-tokens",
                "--temperature",
                "--top-k",
                "--top-p",
                "--min-p",
                "--repetition-penalty",
                "--seed",
                "--stop",
                "--batch",
                "--chat",
                "--system",
                "--json",
                "--device",
            ][..],
        ),
        (
            "chat",
            &[
                "--checkpoint",
                "--system",
                "--temperature",
                "--stop",
                "--json",
            ][..],
        ),
    ] {
        let out = steel(&[command, "--help"], None);
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in flags {
            assert!(help.contains(flag), "`steel {command} --help` lacks {flag}");
        }
    }
}

#[test]
fn steel_chat_answers_piped_lines_and_handles_reset_and_quit() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, tokenizer_path) = common::trained(dir.path());
    let (checkpoint_arg, tokenizer_arg) = (
        checkpoint.display().to_string(),
        tokenizer_path.display().to_string(),
    );
    let args = [
        "chat",
        "--checkpoint",
        &checkpoint_arg,
        "--tokenizer",
        &tokenizer_arg,
        "--max-new-tokens",
        "5",
        "--json",
    ];
    let tokenizer = Tokenizer::load(&tokenizer_path).unwrap();
    let prompt_tokens = |turns: &[Turn], message: &str| {
        tokenizer
            .encode(&template(DEFAULT_SYSTEM, turns, message))
            .unwrap()
            .len() as u64
    };
    // Without /reset the second prompt holds the first exchange.
    let replies = json_lines(&steel(&args, Some("你好\n\n再见\n")));
    assert_eq!(replies.len(), 2);
    let first = Turn {
        user: "你好".into(),
        assistant: replies[0]["text"].as_str().unwrap().into(),
    };
    assert_eq!(replies[0]["prompt_tokens"], prompt_tokens(&[], "你好"));
    assert_eq!(replies[1]["prompt_tokens"], prompt_tokens(&[first], "再见"));
    // /reset forgets it; /quit ends the chat before the last line.
    let out = steel(&args, Some("你好\n/reset\n再见\n/quit\n不会回答\n"));
    let replies = json_lines(&out);
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[1]["prompt_tokens"], prompt_tokens(&[], "再见"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(conversation cleared)"));
    // Streamed replies, one line each; the chat ends at the end of stdin.
    let plain: Vec<&str> = args[..args.len() - 1].to_vec();
    let out = steel(&plain, Some("你好\n"));
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().ends_with('\n'));
}
