//! The CPU training loop: the loss falls, and a resumed run continues bit for bit.

mod common;

use common::demo_chunks;
use std::path::Path;
use steel_dataflow::pack::manifest::Manifest;
use steel_trainer::checkpoint::load_model;
use steel_trainer::data::DataSource;
use steel_trainer::eval::evaluate;
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
