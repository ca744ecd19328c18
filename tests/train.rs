//! The CPU training loop: the loss falls, and a resumed run continues bit for bit.

mod common;

use common::demo_chunks;
use std::path::Path;
use steel_dataflow::pack::manifest::Manifest;
use steel_trainer::checkpoint::load_model;
use steel_trainer::data::DataSource;
use steel_trainer::eval::{evaluate, evaluate_checkpoint};
use steel_trainer::model::config::ModelConfig;
use steel_trainer::optim::adamw::AdamWConfig;
use steel_trainer::optim::schedule::Schedule;
use steel_trainer::train::{TrainOptions, Validation, train};

const SEQ: u64 = 16;

/// Entropy (nats) of the token frequencies over every chunk of `dir`.
fn unigram_entropy(dir: &Path) -> f64 {
    let manifest = Manifest::load(dir).unwrap().unwrap();
    let mut counts = std::collections::HashMap::new();
    let mut total = 0.0;
    for entry in &manifest.chunks {
        for token in manifest.read_chunk(dir, entry).unwrap() {
            *counts.entry(token).or_insert(0.0) += 1.0;
            total += 1.0;
        }
    }
    counts
        .values()
        .map(|c: &f64| -(c / total) * (c / total).ln())
        .sum()
}

fn options(chunks: &Path, out: &Path, steps: u64) -> TrainOptions {
    TrainOptions {
        config: ModelConfig::preset("tiny-dense").unwrap(),
        data: vec![DataSource {
            dir: chunks.to_path_buf(),
            weight: 1.0,
        }],
        seq: SEQ,
        micro_batch: 2,
        grad_accum: 1,
        steps,
        schedule: Schedule::Cosine {
            max_lr: 3e-3,
            min_lr: 3e-4,
            warmup: 5,
            total: 60,
        },
        adamw: AdamWConfig::default(),
        clip: 1.0,
        seed: 11,
        out: out.to_path_buf(),
        checkpoint_every: 3,
        keep: 2,
        validation: Some(Validation {
            dir: chunks.to_path_buf(),
            every: 20,
            max_blocks: Some(4),
        }),
        init_params: None,
        device: steel_trainer::device::Device::Cpu,
        nproc: 1,
        nodes: None,
        max_bad_steps: 0,
        follow_every: 0,
        allow_tokenizer_mismatch: false,
        sft: None,
    }
}

/// Chunks whose tokenizer has more tokens than the model's vocabulary are refused before the
/// first step (they used to panic in the embedding).
#[test]
fn training_refuses_chunks_beyond_the_models_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let tokens = Manifest::load(&chunks)
        .unwrap()
        .unwrap()
        .settings
        .vocab_size;
    let mut small = options(&chunks, &dir.path().join("small"), 3);
    small.config.vocab_size = tokens - 1;
    let error = train(&small, false, &mut |_| {}).unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "has {tokens} tokens but the model only {}",
            tokens - 1
        )),
        "{error}"
    );
    assert!(!dir.path().join("small").exists(), "nothing was written");
    let mut exact = options(&chunks, &dir.path().join("exact"), 3);
    exact.config.vocab_size = tokens;
    exact.validation = None;
    assert_eq!(train(&exact, false, &mut |_| {}).unwrap().step, 3);
}

/// A run killed after its last checkpoint logged steps the resumed run does again; after the
/// resume `metrics.jsonl` has every step exactly once.
#[test]
fn resume_after_a_kill_logs_every_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let out = dir.path().join("run");
    let mut run = options(&chunks, &out, 10);
    run.checkpoint_every = 4;
    run.validation = None;
    train(&run, false, &mut |_| {}).unwrap();
    // As if killed between steps 8 and 10: the newest checkpoint is step 8, the log has 10.
    std::fs::remove_dir_all(out.join("step-00000010")).unwrap();
    let metrics = out.join("metrics.jsonl");
    let mut log = std::fs::read_to_string(&metrics).unwrap();
    log.push_str("{\"step\": 11, \"lo");
    std::fs::write(&metrics, log).unwrap();
    train(&run, true, &mut |_| {}).unwrap();
    let steps: Vec<u64> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["step"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=10).collect::<Vec<u64>>());
}

#[test]
fn loss_falls_and_resume_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);

    let straight = train(
        &options(&chunks, &dir.path().join("a"), 60),
        false,
        &mut |_| {},
    )
    .unwrap();
    let early: f32 = straight.losses[..5].iter().sum::<f32>() / 5.0;
    let late: f32 = straight.losses[55..].iter().sum::<f32>() / 5.0;
    assert!(late < early - 1.0, "loss {early} -> {late}");
    // The last two checkpoints are kept, with metrics for every step.
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        kept.contains(&"step-00000060".to_string()) && kept.contains(&"step-00000057".to_string()),
        "{kept:?}"
    );
    assert!(!kept.contains(&"step-00000054".to_string()));
    let metrics = std::fs::read_to_string(dir.path().join("a/metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().filter(|l| l.contains("\"loss\"")).count(),
        60
    );
    // Validation at steps 20, 40, 60, falling; the best kept; the curve drawn.
    let validation: Vec<f32> = straight.validation.iter().map(|v| v.1).collect();
    assert_eq!(
        straight.validation.iter().map(|v| v.0).collect::<Vec<_>>(),
        [20, 40, 60]
    );
    assert!(validation[2] < validation[0], "{validation:?}");
    assert_eq!(
        metrics.lines().filter(|l| l.contains("val_loss")).count(),
        3
    );
    assert!(
        kept.contains(&"best".to_string()) && kept.contains(&"loss.svg".to_string()),
        "{kept:?}"
    );

    // The model has learned more than token frequencies: its loss over every block of the
    // corpus is below the corpus' unigram entropy.
    let (config, layout, params) = load_model(&dir.path().join("a/step-00000060")).unwrap();
    let result = evaluate(&config, &layout, &params, &chunks, None).unwrap();
    let entropy = unigram_entropy(&chunks);
    assert!(
        result.loss < entropy,
        "loss {} vs unigram entropy {entropy}",
        result.loss
    );

    // Stop after 9 steps, resume to 12: the same losses and weights, bit for bit.
    let reference = train(
        &options(&chunks, &dir.path().join("r"), 12),
        false,
        &mut |_| {},
    )
    .unwrap();
    let out = dir.path().join("b");
    train(&options(&chunks, &out, 9), false, &mut |_| {}).unwrap();
    // A save killed part-way leaves a `.tmp` directory, which resuming passes over.
    std::fs::create_dir_all(out.join("step-00000010.tmp")).unwrap();
    std::fs::write(out.join("step-00000010.tmp/state.json"), "{ truncated").unwrap();
    let resumed = train(&options(&chunks, &out, 12), true, &mut |_| {}).unwrap();
    assert_eq!(resumed.losses, reference.losses);
    let weights = |d: &Path| std::fs::read(d.join("step-00000012/model.safetensors")).unwrap();
    assert!(weights(&out) == weights(&dir.path().join("r")));

    // Without --resume an existing run is not overwritten; another model is refused.
    assert!(
        train(&options(&chunks, &out, 15), false, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("--resume")
    );
    let mut other = options(&chunks, &out, 15);
    other.config.num_layers = 3;
    assert!(
        train(&other, true, &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("another model configuration")
    );
}

/// Two ranks of one sequence each see the blocks one rank of two sequences sees, and sum to
/// the same gradients (up to summation order); the run repeats bit for bit, only rank 0
/// writes, and it resumes on another number of ranks.
#[test]
fn data_parallel_ranks_match_one_rank_with_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let run = |name: &str, nproc: usize, micro_batch: usize, steps: u64, resume: bool| {
        let mut o = options(&chunks, &dir.path().join(name), steps);
        o.validation = None;
        o.nproc = nproc;
        o.micro_batch = micro_batch;
        o.checkpoint_every = 6;
        let mut reported = 0;
        let state = train(&o, resume, &mut |_| reported += 1).unwrap();
        (state, reported)
    };
    let (one, _) = run("one", 1, 2, 12, false);
    let (two, reported) = run("two", 2, 1, 12, false);
    assert_eq!(reported, 12, "rank 0 reports each step once");
    for (step, (a, b)) in one.losses.iter().zip(&two.losses).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "step {}: {a} vs {b}",
            step + 1
        );
    }
    assert_eq!(one.tokens, two.tokens);
    let (again, _) = run("again", 2, 1, 12, false);
    assert_eq!(again.losses, two.losses, "repeatable bit for bit");
    let metrics = std::fs::read_to_string(dir.path().join("two/metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        12,
        "one line per step, from rank 0 only"
    );
    // Stopped at 6 with 2 ranks, resumed to 12 with 3.
    run("mixed", 2, 1, 6, false);
    let (mixed, _) = run("mixed", 3, 1, 12, true);
    assert_eq!(mixed.step, 12);
    assert_eq!(mixed.losses[..6], two.losses[..6]);
    assert!(
        mixed.losses[6..]
            .iter()
            .all(|l| l.is_finite() && *l < one.losses[0])
    );
}

/// `--grad-accum 4` with micro-batches of one sequence trains as micro-batches of four: the
/// same blocks, the same losses and the same weights (the CPU sums rows in the same order, so
/// here even the rounding agrees); also over two ranks.
#[test]
fn gradient_accumulation_equals_one_larger_batch() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let run = |name: &str, nproc: usize, micro_batch: usize, grad_accum: usize| {
        let mut o = options(&chunks, &dir.path().join(name), 6);
        o.validation = None;
        o.nproc = nproc;
        o.micro_batch = micro_batch;
        o.grad_accum = grad_accum;
        o.checkpoint_every = 6;
        let state = train(&o, false, &mut |_| {}).unwrap();
        let checkpoint = dir.path().join(name).join("step-00000006");
        (state, load_model(&checkpoint).unwrap().2)
    };
    let (large, large_params) = run("large", 1, 4, 1);
    let (accumulated, accumulated_params) = run("accumulated", 1, 1, 4);
    assert_eq!(large.tokens, accumulated.tokens);
    assert_eq!(large.losses, accumulated.losses);
    assert_eq!(large_params, accumulated_params);
    // Two ranks of two accumulated micro-batches of one sequence: the same four sequences
    // per step, summed in another order.
    let (ranks, _) = run("ranks", 2, 1, 2);
    assert_eq!(ranks.tokens, large.tokens);
    for (step, (a, b)) in large.losses.iter().zip(&ranks.losses).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "step {}: {a} vs {b}",
            step + 1
        );
    }
}

/// Two `steel train` processes joined over loopback (`--nnodes 2`) train exactly as two
/// in-process ranks: the same losses and the same checkpoint, bit for bit.
#[test]
fn two_processes_over_tcp_equal_two_in_process_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let mut reference = options(&chunks, &dir.path().join("threads"), 6);
    reference.validation = None;
    reference.nproc = 2;
    reference.micro_batch = 1;
    reference.checkpoint_every = 6;
    reference.seed = 42;
    // The CLI's defaults for 6 steps at --lr 3e-3.
    reference.schedule = Schedule::Cosine {
        max_lr: 3e-3,
        min_lr: 3e-4,
        warmup: 1,
        total: 6,
    };
    let threads = train(&reference, false, &mut |_| {}).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = dir.path().join("processes");
    let spawn = |node: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_steel"))
            .args(["train", "--data", chunks.to_str().unwrap(), "--seq", "16"])
            .args([
                "--steps",
                "6",
                "--micro-batch",
                "1",
                "--checkpoint-every",
                "6",
            ])
            .args([
                "--out",
                out.to_str().unwrap(),
                "--nnodes",
                "2",
                "--node-rank",
                node,
            ])
            .args(["--master-port", &port, "-t", "1"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (zero, one) = (spawn("0"), spawn("1"));
    for child in [zero, one] {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let losses: Vec<f32> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap() as f32
        })
        .collect();
    assert_eq!(losses, threads.losses);
    let weights = |d: &Path| std::fs::read(d.join("step-00000006/model.safetensors")).unwrap();
    assert!(weights(&out) == weights(&dir.path().join("threads")));
}

/// xxh3-64 of `bytes` as the 16 hex digits Steel writes everywhere.
fn xxh3(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// A flipped byte in a checkpoint's files is caught wherever the checkpoint is loaded —
/// resume, eval, export, `--init-from` — by an error naming the file and both hashes. (A
/// flipped byte in `model.safetensors` used to resume to NaN losses, exit 0.)
#[test]
fn a_corrupt_checkpoint_is_refused_naming_the_file_and_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let out = dir.path().join("run");
    let mut run = options(&chunks, &out, 3);
    run.validation = None;
    train(&run, false, &mut |_| {}).unwrap();
    let checkpoint = out.join("step-00000003");
    let mut longer = run.clone();
    longer.steps = 5;
    for name in ["model.safetensors", "optimizer.safetensors", "state.json"] {
        let path = checkpoint.join(name);
        let original = std::fs::read(&path).unwrap();
        let mut damaged = original.clone();
        if name == "state.json" {
            // Still valid JSON that reads as a state: one more token than trained on.
            let text = String::from_utf8(original.clone()).unwrap();
            assert!(text.contains("\"tokens\": 96"), "{text}");
            damaged = text
                .replace("\"tokens\": 96", "\"tokens\": 97")
                .into_bytes();
        } else {
            // A byte of the last value: the header still reads.
            let at = damaged.len() - 2;
            damaged[at] ^= 0x40;
        }
        std::fs::write(&path, &damaged).unwrap();
        let (recorded, actual) = (xxh3(&original), xxh3(&damaged));
        let names_both = |error: String| {
            assert!(
                error.contains(&path.display().to_string())
                    && error.contains(&recorded)
                    && error.contains(&actual),
                "{name}: {error}"
            );
        };
        names_both(train(&longer, true, &mut |_| {}).unwrap_err().to_string());
        if name == "model.safetensors" {
            names_both(load_model(&checkpoint).unwrap_err().to_string());
            let hf = dir.path().join("hf");
            let export = steel_trainer::checkpoint::export_hf(&checkpoint, &hf, None);
            names_both(export.unwrap_err().to_string());
            assert!(!hf.exists(), "nothing exported");
            let init = steel_trainer::settings::TrainSettings {
                init_from: Some(checkpoint.clone()),
                data: vec![DataSource {
                    dir: chunks.clone(),
                    weight: 1.0,
                }],
                steps: Some(2),
                out: Some(dir.path().join("init")),
                ..Default::default()
            };
            names_both(init.resolve().unwrap_err().to_string());
        }
        std::fs::write(&path, &original).unwrap();
    }
    // Undamaged, the same checkpoint resumes.
    assert_eq!(train(&longer, true, &mut |_| {}).unwrap().step, 5);
}

/// Starting weights whose embedding row of one token is NaN: exactly the steps whose input
/// blocks hold that token have a non-finite loss, every other step is finite (the row is
/// neither read nor, with a zero gradient, spread by AdamW). Returns the options and the
/// non-finite steps among the first `steps` (at least three, the first after step 1, with
/// finite steps between them).
fn poisoned(chunks: &Path, out: &Path, steps: u64) -> (TrainOptions, Vec<u64>) {
    use steel_trainer::data::Loader;
    use steel_trainer::model::params::Layout;
    let mut o = options(chunks, out, steps);
    o.validation = None;
    o.micro_batch = 1;
    o.checkpoint_every = 1000;
    let mut loader = Loader::open(&o.data, SEQ, o.seed, 0, 1).unwrap();
    let inputs: Vec<Vec<u32>> = (0..steps)
        .map(|_| loader.next_block().unwrap()[..SEQ as usize].to_vec())
        .collect();
    let bad_steps = |token: u32| -> Vec<u64> {
        (1..=steps)
            .filter(|s| inputs[*s as usize - 1].contains(&token))
            .collect()
    };
    let (token, bad) = (0..o.config.vocab_size as u32)
        .map(|t| (t, bad_steps(t)))
        .find(|(_, bad)| bad.len() >= 3 && bad[0] > 1 && bad[1] > bad[0] + 1 && bad[2] > bad[1] + 1)
        .expect("some token is in a few, spaced-out blocks");
    let layout = Layout::new(&o.config);
    let mut params = steel_trainer::train::init_params(&layout, o.seed);
    let embed = layout
        .views
        .iter()
        .find(|v| v.name == "model.embed_tokens.weight")
        .unwrap();
    let d = o.config.hidden_size;
    let row = embed.offset + token as usize * d;
    params[row..row + d].fill(f32::NAN);
    o.init_params = Some(params);
    (o, bad)
}

fn metrics_lines(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn checkpoints(out: &Path) -> Vec<String> {
    steel_trainer::checkpoint::list(out)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A non-finite loss (or gradient norm) stops training at that step with an error naming it,
/// before the weights are updated and without a checkpoint. (It used to train on with NaN
/// losses, write NaN checkpoints and exit 0.)
#[test]
fn a_non_finite_step_stops_training_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let out = dir.path().join("run");
    let (run, bad) = poisoned(&chunks, &out, 12);
    let error = train(&run, false, &mut |_| {}).unwrap_err().to_string();
    assert!(
        error.contains(&format!("step {}:", bad[0])) && error.contains("not finite"),
        "{error}"
    );
    let lines = metrics_lines(&out);
    assert_eq!(
        lines.len() as u64,
        bad[0] - 1,
        "the steps before it, logged"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["loss"].as_f64().unwrap().is_finite())
    );
    assert_eq!(checkpoints(&out), Vec::<String>::new());
}

/// The documents `demo_chunks` packed, packed again with another tokenizer (a BPE of 280
/// tokens) into `dir/chunks-other`.
fn other_tokenizer_chunks(dir: &Path) -> std::path::PathBuf {
    use steel_dataflow::pack::tokenizer::{read_texts, train as train_tokenizer};
    use steel_dataflow::pack::{PackOptions, pack};
    let inputs = [dir.join("converted").display().to_string()];
    let tokenizer = dir.join("tokenizer-other.json");
    train_tokenizer(read_texts(&inputs).unwrap(), 280, &tokenizer).unwrap();
    let mut options = PackOptions::new(&tokenizer, dir.join("chunks-other"));
    options.block_size = SEQ;
    options.chunk_blocks = 8;
    pack(&inputs, &options).unwrap();
    dir.join("chunks-other")
}

fn tokenizer_of(chunks: &Path) -> String {
    Manifest::load(chunks)
        .unwrap()
        .unwrap()
        .settings
        .tokenizer_xxh3
}

/// A checkpoint records the tokenizer of the chunks it was trained on; eval, resume and
/// `--init-from` refuse chunks packed with another tokenizer, naming both hashes and both
/// directories. (Such an eval used to print a loss.)
#[test]
fn chunks_of_another_tokenizer_are_refused_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let other = other_tokenizer_chunks(dir.path());
    let (ours, theirs) = (tokenizer_of(&chunks), tokenizer_of(&other));
    assert_ne!(ours, theirs);
    let out = dir.path().join("run");
    let mut run = options(&chunks, &out, 3);
    run.validation = None;
    train(&run, false, &mut |_| {}).unwrap();
    let checkpoint = out.join("step-00000003");
    let names_both = |error: String, model_dir: &Path| {
        assert!(
            error.contains("tokenizer")
                && error.contains(&ours)
                && error.contains(&theirs)
                && error.contains(&model_dir.display().to_string())
                && error.contains(&other.display().to_string()),
            "{error}"
        );
    };
    // eval, in the library and on the command line
    let eval = |allow| evaluate_checkpoint(&checkpoint, &other, Some(2), allow);
    names_both(eval(false).unwrap_err().to_string(), &checkpoint);
    assert_eq!(eval(true).unwrap().blocks, 2, "scored when told to");
    let steel_eval = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_steel"))
            .args(["eval", "--checkpoint", checkpoint.to_str().unwrap()])
            .args(["--data", other.to_str().unwrap(), "--max-blocks", "2"])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = steel_eval(&[]);
    assert!(!refused.status.success());
    names_both(
        String::from_utf8_lossy(&refused.stderr).into_owned(),
        &checkpoint,
    );
    assert!(steel_eval(&["--allow-tokenizer-mismatch"]).status.success());
    // resume
    let mut resumed = options(&other, &out, 5);
    resumed.validation = None;
    names_both(
        train(&resumed, true, &mut |_| {}).unwrap_err().to_string(),
        &checkpoint,
    );
    // The override lets the tokenizer differ, not the data a resume continues in: the saved
    // positions name chunks of the directory the run read.
    resumed.allow_tokenizer_mismatch = true;
    let error = train(&resumed, true, &mut |_| {}).unwrap_err().to_string();
    assert!(
        error.contains("give the directories in the order the run started with"),
        "{error}"
    );
    // --init-from
    let init = |data: &Path| steel_trainer::settings::TrainSettings {
        init_from: Some(checkpoint.clone()),
        data: vec![DataSource {
            dir: data.to_path_buf(),
            weight: 1.0,
        }],
        steps: Some(2),
        out: Some(dir.path().join("init")),
        ..Default::default()
    };
    names_both(init(&other).resolve().unwrap_err().to_string(), &checkpoint);
    assert!(
        init(&chunks).resolve().is_ok(),
        "the same tokenizer is fine"
    );
    let allowed = steel_trainer::settings::TrainSettings {
        allow_tokenizer_mismatch: true,
        ..init(&other)
    };
    assert!(allowed.resolve().is_ok(), "allowed deliberately");
    // A HuggingFace directory records no tokenizer: nothing to compare, nothing refused.
    let hf = dir.path().join("hf");
    steel_trainer::checkpoint::export_hf(&checkpoint, &hf, None).unwrap();
    let from_hf = steel_trainer::settings::TrainSettings {
        init_from: Some(hf),
        ..init(&other)
    };
    assert!(from_hf.resolve().is_ok());
    // A fresh run mixing chunks of two tokenizers is refused too.
    let mut mixed = options(&chunks, &dir.path().join("mixed"), 2);
    mixed.validation = None;
    mixed.data.push(DataSource {
        dir: other.clone(),
        weight: 1.0,
    });
    let error = train(&mixed, false, &mut |_| {}).unwrap_err().to_string();
    names_both(error, &chunks);
}

/// With `max_bad_steps` N, the first N non-finite steps are skipped — no update, a
/// `"skipped": true` line in `metrics.jsonl` — and the next one stops the run. The steps
/// between stay finite, so no skipped step reached the weights.
#[test]
fn max_bad_steps_skips_that_many_non_finite_steps_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let out = dir.path().join("run");
    let (mut run, bad) = poisoned(&chunks, &out, 12);
    run.max_bad_steps = 2;
    let error = train(&run, false, &mut |_| {}).unwrap_err().to_string();
    assert!(
        error.contains(&format!("step {}:", bad[2])) && error.contains("2 such steps were skipped"),
        "{error}"
    );
    let lines = metrics_lines(&out);
    assert_eq!(lines.len() as u64, bad[2] - 1);
    for line in &lines {
        let step = line["step"].as_u64().unwrap();
        if bad[..2].contains(&step) {
            assert_eq!(line["skipped"], true, "{line}");
            assert!(line["loss"].is_null(), "{line}");
        } else {
            assert!(line.get("skipped").is_none(), "{line}");
            assert!(line["loss"].as_f64().unwrap().is_finite(), "{line}");
        }
    }
    assert_eq!(checkpoints(&out), Vec::<String>::new());
}

/// Weights that are not finite are never written as a checkpoint: a run whose starting
/// weights hold a NaN its steps never read stops at its first checkpoint instead.
#[test]
fn a_checkpoint_of_non_finite_weights_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let out = dir.path().join("run");
    let (mut run, bad) = poisoned(&chunks, &out, 12);
    let first_checkpoint = bad[0] - 1;
    run.steps = first_checkpoint;
    let error = train(&run, false, &mut |_| {}).unwrap_err().to_string();
    assert!(
        error.contains(&format!("step {first_checkpoint}:"))
            && error.contains("model.embed_tokens.weight")
            && error.contains("not finite"),
        "{error}"
    );
    assert_eq!(checkpoints(&out), Vec::<String>::new());
}

/// The loader state in a checkpoint records each chunk directory as an absolute, canonical
/// path, so `steel train --resume RUN` started from another working directory, without
/// `--data`, reads the chunks the run read. (A run started with a relative `--data` recorded
/// that relative path.)
#[test]
fn a_resume_from_another_working_directory_reads_the_recorded_chunks() {
    let dir = tempfile::tempdir().unwrap();
    demo_chunks(dir.path(), SEQ);
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let steel = |cwd: &Path, args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_steel"))
            .args(args)
            .args(["--micro-batch", "2", "--checkpoint-every", "3", "-t", "1"])
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "steel {args:?} in {}: {}",
            cwd.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    // Started in `dir` with relative paths.
    steel(
        dir.path(),
        &["train", "--data", "chunks", "--out", "run", "--steps", "3"],
    );
    let run = dir.path().join("run");
    let recorded = |step: &str| -> serde_json::Value {
        let state = std::fs::read(run.join(step).join("state.json")).unwrap();
        serde_json::from_slice::<serde_json::Value>(&state).unwrap()
    };
    let canonical = dir.path().join("chunks").canonicalize().unwrap();
    assert_eq!(
        recorded("step-00000003")["loader"]["sources"][0]["dir"],
        canonical.display().to_string()
    );
    // Resumed from elsewhere, where `chunks` names nothing, without --data.
    let run_dir = run.display().to_string();
    steel(&elsewhere, &["train", "--resume", &run_dir, "--steps", "6"]);
    let state = recorded("step-00000006");
    assert_eq!(state["step"], 6);
    assert_eq!(state["tokens"], 6 * 2 * SEQ);
    assert_eq!(
        state["loader"]["sources"][0]["dir"],
        canonical.display().to_string()
    );
    let steps: Vec<u64> = metrics_lines(&run)
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<u64>>());
}

/// `steel train --max-bad-steps N` (here from poisoned `--init-from` weights): N non-finite
/// steps are skipped, the next stops the run with a failing exit and the error.
#[test]
fn the_max_bad_steps_flag_reaches_the_training_loop() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let out = dir.path().join("run");
    let (run, bad) = poisoned(&chunks, &out, 12);
    let hf = dir.path().join("poisoned");
    std::fs::create_dir(&hf).unwrap();
    let layout = steel_trainer::model::params::Layout::new(&run.config);
    let params = run.init_params.as_ref().unwrap();
    steel_trainer::checkpoint::write_model(&hf, &run.config, &layout, params).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_steel"))
        .args(["train", "--init-from", hf.to_str().unwrap()])
        .args([
            "--data",
            chunks.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--steps", "12", "--micro-batch", "1", "--seed", "11"])
        .args([
            "--checkpoint-every",
            "1000",
            "--max-bad-steps",
            "1",
            "-t",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("step {}:", bad[1])) && stderr.contains("1 such steps"),
        "{stderr}"
    );
    let skipped: Vec<u64> = metrics_lines(&out)
        .iter()
        .filter(|l| l["skipped"] == true)
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(skipped, [bad[0]]);
}

/// Pack 30 more documents (the first of the converted corpus, under a new name) into the
/// chunk directory `demo_chunks` made under `dir`: a new pack epoch.
fn append_chunks(dir: &Path) {
    use steel_dataflow::pack::{PackOptions, pack};
    let converted = dir.join("converted");
    let text = std::fs::read_to_string(converted.join("part-00000.jsonl")).unwrap();
    let more = dir.join("more");
    std::fs::create_dir_all(&more).unwrap();
    let lines: String = text.lines().take(30).map(|l| format!("{l}\n")).collect();
    std::fs::write(more.join("extra.jsonl"), lines).unwrap();
    let mut options = PackOptions::new(dir.join("tokenizer.json"), dir.join("chunks"));
    options.block_size = SEQ;
    options.chunk_blocks = 8;
    let inputs = [converted.display().to_string(), more.display().to_string()];
    let outcome = pack(&inputs, &options).unwrap();
    assert_eq!(outcome.epochs.len(), 1);
}

/// Chunks packed while a run trains join at its next checkpoint, into the unseen remainder
/// only (the loader's Add event sits at the blocks served by then), logged in
/// metrics.jsonl; a run killed after the append and resumed from the checkpoint before it
/// takes them in at the same step and gives the same losses, bit for bit.
#[test]
fn a_run_follows_chunks_packed_while_it_trains_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (chunks_a, chunks_b) = (demo_chunks(&a, SEQ), demo_chunks(&b, SEQ));
    let run = |chunks: &Path, out: &Path, steps: u64, append: Option<&Path>, resume: bool| {
        let mut options = options(chunks, out, steps);
        options.validation = None;
        options.keep = 10;
        let mut report = |m: &steel_trainer::train::StepMetrics| {
            if m.step == 4
                && let Some(dir) = append
            {
                append_chunks(dir);
            }
        };
        train(&options, resume, &mut report).unwrap()
    };
    // Uninterrupted: the append lands after step 4, the checkpoint at step 6 takes it in.
    let straight = run(&chunks_a, &a.join("run"), 12, Some(&a), false);
    let data_lines: Vec<serde_json::Value> = metrics_lines(&a.join("run"))
        .into_iter()
        .filter(|l| l.get("data").is_some())
        .collect();
    assert_eq!(data_lines.len(), 1, "{data_lines:?}");
    assert_eq!(data_lines[0]["step"], 6);
    let manifest = Manifest::load(&chunks_a).unwrap().unwrap();
    let new: Vec<String> = manifest
        .chunks
        .iter()
        .filter(|c| c.epoch == 1)
        .map(|c| c.file.clone())
        .collect();
    assert!(!new.is_empty());
    assert_eq!(data_lines[0]["data"]["added"], serde_json::json!(new));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("run/step-00000006/state.json")).unwrap())
            .unwrap();
    let events = &state["loader"]["sources"][0]["order"]["events"];
    assert_eq!(
        events[0]["Add"]["consumed"], 12,
        "6 steps of 2 blocks served first: {events}"
    );

    // Killed at step 5, after the append and before checkpoint 6; resumed from checkpoint 3.
    let out = b.join("run");
    run(&chunks_b, &out, 5, Some(&b), false);
    std::fs::remove_dir_all(out.join("step-00000005")).unwrap();
    let resumed = run(&chunks_b, &out, 12, None, true);
    assert_eq!(resumed.losses, straight.losses);
    let weights = |d: &Path| std::fs::read(d.join("run/step-00000012/model.safetensors")).unwrap();
    assert!(weights(&a) == weights(&b));
}
/// A checkpoint with `state.json` but no `checksums.json` (an older Steel's, or damaged)
/// cannot be verified, so resume and eval refuse it, naming the checkpoint; nothing is
/// trained from it. With its checksums back it resumes.
#[test]
fn a_checkpoint_without_checksums_is_refused_by_resume_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), SEQ);
    let out = dir.path().join("run");
    let mut run = options(&chunks, &out, 3);
    run.validation = None;
    train(&run, false, &mut |_| {}).unwrap();
    let checkpoint = out.join("step-00000003");
    assert!(checkpoint.join("state.json").is_file());
    let checksums = checkpoint.join("checksums.json");
    let kept = std::fs::read(&checksums).unwrap();
    std::fs::remove_file(&checksums).unwrap();
    let metrics = std::fs::read(out.join("metrics.jsonl")).unwrap();
    let expected = format!(
        "checkpoint `{}` has no checksums.json, so its files cannot be verified (it was \
         written by an older Steel, or damaged)",
        checkpoint.display()
    );

    let mut longer = run.clone();
    longer.steps = 5;
    let error = train(&longer, true, &mut |_| {}).unwrap_err().to_string();
    assert_eq!(error, expected);
    assert!(!out.join("step-00000005").exists(), "nothing was trained");
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), metrics);
    let error = evaluate_checkpoint(&checkpoint, &chunks, Some(2), false)
        .expect_err("eval refuses it")
        .to_string();
    assert_eq!(error, expected);

    std::fs::write(&checksums, kept).unwrap();
    assert_eq!(
        evaluate_checkpoint(&checkpoint, &chunks, Some(2), false)
            .unwrap()
            .blocks,
        2
    );
    assert_eq!(train(&longer, true, &mut |_| {}).unwrap().step, 5);
}
