//! `steel sft`, `steel eval chat` and `steel dpo` end to end on the CPU: a tiny model trained
//! on the demo corpus, fine-tuned on chat data, resumed exactly.

mod common;

use common::{demo_chunks, trained};
use std::path::{Path, PathBuf};
use steel_trainer::chat_eval::evaluate_chat;
use steel_trainer::checkpoint::load_model;
use steel_trainer::device::Device;
use steel_trainer::dpo::loss::{Settings as DpoLoss, Variant};
use steel_trainer::dpo::train::{DpoData, dpo};
use steel_trainer::infer::tokenizer::Tokenizer;
use steel_trainer::model::pass::logits;
use steel_trainer::settings::TrainSettings;
use steel_trainer::sft::{SftOptions, read_examples, read_pairs};
use steel_trainer::sft_settings::SftSettings;
use steel_trainer::train::{TrainOptions, Validation, train};

/// A JSONL file of `n` two-turn conversations in the messages form.
fn chat_file(dir: &Path, n: usize) -> PathBuf {
    let words = [
        "river", "stone", "market", "garden", "lamp", "winter", "paper", "bridge",
    ];
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let (a, b) = (words[i % words.len()], words[(i * 3 + 1) % words.len()]);
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("Tell me about the {a}.")},
                {"role": "assistant", "content": format!("The {a} is near the {b}.")},
                {"role": "user", "content": format!("And the {b}?")},
                {"role": "assistant", "content": format!("The {b} is old.")},
            ]})
            .to_string()
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("chat.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// `steel sft`'s settings for a run of `steps` steps into `out`.
fn sft_run(
    checkpoint: &Path,
    tokenizer: &Path,
    data: &Path,
    out: &Path,
    steps: u64,
    sft: SftSettings,
    resume: bool,
) -> TrainOptions {
    let settings = TrainSettings {
        init_from: Some(checkpoint.to_path_buf()),
        tokenizer: Some(tokenizer.to_path_buf()),
        data: match resume {
            true => Vec::new(),
            false => vec![data.display().to_string().parse().unwrap()],
        },
        steps: Some(6),
        micro_batch: Some(2),
        lr: Some(3e-3),
        checkpoint_every: Some(3),
        out: Some(out.to_path_buf()),
        resume: resume.then_some(None),
        seed: Some(5),
        ..TrainSettings::default()
    };
    let mut options = sft.resolve(settings).unwrap().options;
    options.steps = steps;
    options
}

/// The row options `sft_settings(true)` resolves to.
fn sft_options() -> SftOptions {
    SftOptions {
        cutoff: 160,
        packing: true,
        ..SftOptions::default()
    }
}

fn sft_settings(packing: bool) -> SftSettings {
    SftSettings {
        cutoff: Some(160),
        packing,
        ..SftSettings::default()
    }
}

/// SFT lowers the loss on the replies, reports trained tokens, and a run stopped at step 3
/// and resumed gives the uninterrupted run's losses and weights bit for bit; packed rows too.
#[test]
fn sft_trains_on_the_replies_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, tokenizer) = trained(dir.path());
    let data = chat_file(dir.path(), 24);
    for packing in [false, true] {
        let name = if packing { "packed" } else { "padded" };
        let whole = dir.path().join(format!("{name}-whole"));
        let options = sft_run(
            &checkpoint,
            &tokenizer,
            &data,
            &whole,
            6,
            sft_settings(packing),
            false,
        );
        let state = train(&options, false, &mut |_| {}).unwrap();
        assert_eq!(state.losses.len(), 6);
        assert!(
            state.losses[5] < state.losses[0],
            "{name}: {:?}",
            state.losses
        );
        let metrics = std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
        let trained_tokens = first["trained_tokens"].as_u64().unwrap();
        assert!(trained_tokens > 0 && trained_tokens < first["tokens"].as_u64().unwrap());

        let split = dir.path().join(format!("{name}-split"));
        let options = sft_run(
            &checkpoint,
            &tokenizer,
            &data,
            &split,
            3,
            sft_settings(packing),
            false,
        );
        train(&options, false, &mut |_| {}).unwrap();
        let options = sft_run(
            &checkpoint,
            &tokenizer,
            &data,
            &split,
            6,
            sft_settings(packing),
            true,
        );
        let resumed = train(&options, true, &mut |_| {}).unwrap();
        assert_eq!(resumed.losses, state.losses, "{name}: resumed bit for bit");
        let params = |run: &Path| load_model(&run.join("step-00000006")).unwrap().2;
        assert_eq!(params(&split), params(&whole), "{name}");
    }
}

/// `steel eval chat` is the mean cross-entropy over exactly the reply tokens, computed here
/// from the model's logits by hand.
#[test]
fn eval_chat_is_the_mean_loss_over_the_reply_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, tokenizer) = trained(dir.path());
    let data = chat_file(dir.path(), 5);
    let options = SftOptions {
        cutoff: 160,
        ..SftOptions::default()
    };
    let result = evaluate_chat(
        &checkpoint,
        Some(&tokenizer),
        &data,
        &options,
        Device::Cpu,
        false,
    )
    .unwrap();
    let (config, layout, params) = load_model(&checkpoint).unwrap();
    let codec = Tokenizer::load(&tokenizer).unwrap();
    let examples = read_examples(&data, &codec, &options).unwrap().examples;
    let (mut total, mut tokens) = (0.0f64, 0u64);
    for example in &examples {
        let n = example.ids.len() - 1;
        let out = logits(&config, &layout, &params, &example.ids[..n]);
        for i in 0..n {
            if !example.trained[i + 1] {
                continue;
            }
            let row = &out[i * config.vocab_size..(i + 1) * config.vocab_size];
            let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|v| (*v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            total += lse - row[example.ids[i + 1] as usize] as f64;
            tokens += 1;
        }
    }
    assert_eq!(result.examples, 5);
    assert_eq!(result.tokens, tokens);
    assert!(
        (result.loss - total / tokens as f64).abs() < 1e-5,
        "{result:?}"
    );
}

/// SFT with pretraining blocks mixed in trains, scores its validation conversations, and
/// resumes exactly.
#[test]
fn sft_with_pretraining_mixed_in_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, tokenizer) = trained(dir.path());
    let chunks = demo_chunks(&dir.path().join("mix"), 160);
    let data = chat_file(dir.path(), 24);
    let mixed = || SftSettings {
        mix_pretrain: Some(format!("{}:0.5", chunks.display())),
        ..sft_settings(true)
    };
    let whole = dir.path().join("whole");
    let mut options = sft_run(&checkpoint, &tokenizer, &data, &whole, 6, mixed(), false);
    options.validation = Some(Validation {
        dir: whole.join("sft-val"),
        every: 3,
        max_blocks: None,
    });
    let val = chat_file(&dir.path().join("val"), 4);
    steel_trainer::sft::Prepared::prepare(
        &[val],
        &tokenizer,
        &sft_options(),
        &whole.join("sft-val"),
    )
    .unwrap();
    let state = train(&options, false, &mut |_| {}).unwrap();
    assert_eq!(state.validation.len(), 2, "{:?}", state.validation);
    assert!(
        state
            .validation
            .iter()
            .all(|(_, loss)| loss.is_finite() && *loss > 0.0)
    );
    let split = dir.path().join("split");
    train(
        &sft_run(&checkpoint, &tokenizer, &data, &split, 3, mixed(), false),
        false,
        &mut |_| {},
    )
    .unwrap();
    let resumed = train(
        &sft_run(&checkpoint, &tokenizer, &data, &split, 6, mixed(), true),
        true,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(resumed.losses, state.losses);
}

/// A JSONL file of preference pairs: the chosen reply repeats the prompt's word.
fn pairs_file(dir: &Path) -> PathBuf {
    let words = ["river", "stone", "market", "garden", "lamp", "winter"];
    let lines: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let other = words[(i + 2) % words.len()];
            serde_json::json!({
                "prompt": format!("Say {w}."),
                "chosen": format!("{w} {w}."),
                "rejected": format!("{other} paper."),
            })
            .to_string()
        })
        .collect();
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// DPO: at the first step the policy is its reference, so the loss is ln 2; a few steps raise
/// the chosen-minus-rejected margin; a run stopped and resumed repeats the losses bit for bit.
#[test]
fn dpo_starts_at_ln_2_raises_the_margin_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, tokenizer) = trained(dir.path());
    let codec = Tokenizer::load(&tokenizer).unwrap();
    let pairs = read_pairs(&pairs_file(dir.path()), &codec, 48)
        .unwrap()
        .pairs;
    let data = DpoData {
        pairs,
        source: "pairs.jsonl".into(),
        loss: DpoLoss::new(Variant::Sigmoid),
    };
    let options = |out: &Path, steps: u64| {
        let settings = TrainSettings {
            init_from: Some(checkpoint.clone()),
            seq: Some(48),
            steps: Some(8),
            micro_batch: Some(2),
            lr: Some(1e-3),
            weight_decay: Some(0.0),
            checkpoint_every: Some(4),
            out: Some(out.to_path_buf()),
            seed: Some(3),
            ..TrainSettings::default()
        };
        let mut options = settings.resolve_without_chunks().unwrap().options;
        options.steps = steps;
        options
    };
    let mut margins = Vec::new();
    let whole = dir.path().join("whole");
    let state = dpo(&options(&whole, 8), &data, false, &mut |m| {
        margins.push(m.margin)
    })
    .unwrap();
    assert!(
        (state.losses[0] as f64 - std::f64::consts::LN_2).abs() < 1e-6,
        "{}",
        state.losses[0]
    );
    assert!(
        margins[0].abs() < 1e-9,
        "policy = reference: margin {}",
        margins[0]
    );
    assert!(
        margins[7] > 0.0 && state.losses[7] < state.losses[0],
        "{margins:?} {:?}",
        state.losses
    );
    let split = dir.path().join("split");
    dpo(&options(&split, 4), &data, false, &mut |_| {}).unwrap();
    let resumed = dpo(&options(&split, 8), &data, true, &mut |_| {}).unwrap();
    assert_eq!(resumed.losses, state.losses);
}

/// The commands as a user types them: `steel sft`, `steel eval chat --json`, `steel dpo`.
#[test]
fn the_commands_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, tokenizer) = trained(dir.path());
    let chat = chat_file(dir.path(), 8);
    let pairs = pairs_file(dir.path());
    let steel = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_steel"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "steel {args:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let path = |p: &Path| p.display().to_string();
    let sft = dir.path().join("sft");
    let common = [
        "--init-from",
        &path(&checkpoint),
        "--tokenizer",
        &path(&tokenizer),
        "--steps",
        "2",
        "--micro-batch",
        "2",
        "--cutoff",
        "160",
    ];
    steel(
        &[
            &[
                "sft",
                "--data",
                &path(&chat),
                "--packing",
                "--grad-accum",
                "2",
                "--out",
                &path(&sft),
            ][..],
            &common,
        ]
        .concat(),
    );
    let step = sft.join("step-00000002");
    assert!(step.join("model.safetensors").exists());
    let json = steel(&[
        "eval",
        "chat",
        "--checkpoint",
        &path(&step),
        "--tokenizer",
        &path(&tokenizer),
        "--data",
        &path(&chat),
        "--cutoff",
        "160",
        "--json",
    ]);
    let result: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(result["examples"], 8);
    assert!(result["loss"].as_f64().unwrap() > 0.0 && result["tokens"].as_u64().unwrap() > 0);
    let dpo = dir.path().join("dpo");
    steel(
        &[
            &[
                "dpo",
                "--data",
                &path(&pairs),
                "--loss",
                "ipo",
                "--out",
                &path(&dpo),
            ][..],
            &common,
        ]
        .concat(),
    );
    let metrics = std::fs::read_to_string(dpo.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert!(last["rewards/margins"].is_number() && last["step"] == 2);
    assert!(dpo.join("dpo-reference.json").exists());
}

/// An SFT run resumed with other chat data, or as a pretraining run, is refused with a
/// reason, before any step.
#[test]
fn resuming_with_other_data_or_as_pretraining_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, tokenizer) = trained(dir.path());
    let data = chat_file(dir.path(), 12);
    let out = dir.path().join("sft-run");
    let options = sft_run(
        &checkpoint,
        &tokenizer,
        &data,
        &out,
        3,
        sft_settings(false),
        false,
    );
    train(&options, false, &mut |_| {}).unwrap();
    let mut pretraining = options.clone();
    pretraining.sft = None;
    pretraining.data = vec![steel_trainer::data::DataSource {
        dir: demo_chunks(&dir.path().join("chunks"), 160),
        weight: 1.0,
    }];
    let error = train(&pretraining, true, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(error.contains("holds an SFT run"), "{error}");
    // Other conversations in the same file: the prepared rows no longer match it.
    let other = chat_file(&dir.path().join("other"), 13);
    std::fs::copy(&other, &data).unwrap();
    let settings = TrainSettings {
        init_from: Some(checkpoint.clone()),
        tokenizer: Some(tokenizer.clone()),
        data: vec![data.display().to_string().parse().unwrap()],
        steps: Some(6),
        resume: Some(Some(out.clone())),
        ..TrainSettings::default()
    };
    let error = sft_settings(false)
        .resolve(settings)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("differ") || error.contains("xxh3"),
        "{error}"
    );
}
