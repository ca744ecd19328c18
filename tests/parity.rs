//! Parity with PyTorch: tiny dense, softmax-MoE (through our `modeling_steel.py`) and top-k MoE
//! models whose weights we wrote
//! (`tests/data/parity/{dense,softmax,topk}/`) were loaded by `transformers`, which computed logits,
//! loss and gradients for a fixed sequence (`make_reference.py` next to them). Ours must
//! agree: logits within 1e-4, loss within 1e-4, every gradient tensor within 1e-3 relative
//! (in norm).
//!
//! To regenerate: `STEEL_WRITE_PARITY_MODELS=1 cargo test --test parity` writes the weights,
//! then `python tests/data/parity/make_reference.py` (torch + transformers) the references,
//! and `python tests/data/parity/make_sft_reference.py` the masked-SFT ones (`sft_*`).
//! The softmax-MoE loads through the shipped `trainer/hf/modeling_steel.py`, which
//! `make_reference.py` puts next to a temporary copy of the fixture; the fixture keeps no copy.

use std::path::{Path, PathBuf};
use steel_trainer::batch::{Batch, LossScale};
use steel_trainer::checkpoint::{load_model, write_model};
use steel_trainer::model::config::{ExpertMlp, Ffn, ModelConfig};
use steel_trainer::model::params::Layout;
use steel_trainer::model::pass::logits;
use steel_trainer::model::pass::loss_and_grad;
use steel_trainer::train::init_params;

fn config(ffn: Ffn) -> ModelConfig {
    ModelConfig {
        vocab_size: 64,
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-6,
        qkv_bias: true,
        tie_embeddings: true,
        max_positions: 128,
        ffn,
    }
}

fn models() -> Vec<(&'static str, ModelConfig)> {
    vec![
        (
            "dense",
            config(Ffn::Dense {
                intermediate_size: 48,
            }),
        ),
        (
            "softmax",
            config(Ffn::SoftmaxMoe {
                n_experts: 3,
                expert_width: 12,
                mlp: ExpertMlp::DualSwiGlu,
            }),
        ),
        (
            "topk",
            config(Ffn::TopkMoe {
                n_experts: 4,
                top_k: 2,
                expert_width: 16,
                renormalize: true,
                shared_expert_width: Some(24),
                aux_coefficient: 0.01,
            }),
        ),
    ]
}

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/parity")
        .join(name)
}

/// Seeded weights three times the training initialisation (so logits and gradients are not
/// all near zero), norms around 1.
fn weights(layout: &Layout) -> Vec<f32> {
    let mut params = init_params(layout, 5);
    let noise = init_params(layout, 6);
    for view in &layout.views {
        for i in view.range() {
            params[i] = if view.name.ends_with("norm.weight") {
                1.0 + 5.0 * noise[i]
            } else {
                3.0 * params[i]
            };
        }
    }
    params
}

fn read_f32_tensors(path: &Path) -> std::collections::HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, values)
        })
        .collect()
}

/// `ours` and `theirs` must have the same length: `zip` alone would stop at the shorter, and a
/// short reference would pass on the values both have.
fn same_length(ours: &[f32], theirs: &[f32], what: &str) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: {} values, the reference {}",
        ours.len(),
        theirs.len()
    );
}

/// The largest `|ours - theirs|`, element by element.
fn worst_difference(ours: &[f32], theirs: &[f32], what: &str) -> f32 {
    same_length(ours, theirs, what);
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}

/// The L2 distance between `ours` and `theirs`.
fn distance(ours: &[f32], theirs: &[f32], what: &str) -> f32 {
    same_length(ours, theirs, what);
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>()
        .sqrt()
}

/// A reference shorter (or longer) than our values fails the comparison instead of passing on
/// the values both have.
#[test]
fn a_reference_of_another_length_fails_the_comparison() {
    let ours = [1.0, 2.0, 3.0];
    for compare in [worst_difference, distance] {
        let short = std::panic::catch_unwind(|| compare(&ours, &ours[..2], "short"));
        let message = short.expect_err("a short reference must fail");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            message.contains("short: 3 values, the reference 2"),
            "{message}"
        );
        let long = std::panic::catch_unwind(|| compare(&ours[..1], &ours, "long"));
        assert!(long.is_err(), "a longer reference must fail");
        assert_eq!(compare(&ours, &[1.0, 2.0, 5.0], "same length"), 2.0);
    }
}

/// The softmax-MoE references were computed through the `modeling_steel.py` Steel ships and
/// exports: the fixture keeps no copy of its own that could drift from it, and
/// `reference.json` records the CRC-32 of the file `make_reference.py` loaded, which must be
/// the shipped file's (a changed `modeling_steel.py` needs new references).
#[test]
fn the_softmax_references_were_made_with_the_shipped_modeling_steel() {
    let copy = dir("softmax").join("modeling_steel.py");
    assert!(
        !copy.exists(),
        "{}: a copy that can drift from trainer/hf/modeling_steel.py",
        copy.display()
    );
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir("softmax").join("reference.json")).unwrap(),
    )
    .unwrap();
    let mut crc = flate2::Crc::new();
    crc.update(steel_trainer::checkpoint::MODELING_STEEL.as_bytes());
    assert_eq!(
        reference["modeling_steel_crc32"].as_u64(),
        Some(u64::from(crc.sum())),
        "the references were made with another modeling_steel.py: regenerate them"
    );
}

#[test]
fn matches_pytorch_logits_loss_and_gradients() {
    if std::env::var_os("STEEL_WRITE_PARITY_MODELS").is_some() {
        for (name, config) in models() {
            let layout = Layout::new(&config);
            std::fs::create_dir_all(dir(name)).unwrap();
            write_model(&dir(name), &config, &layout, &weights(&layout)).unwrap();
            // make_reference.py loads the shipped modeling_steel.py, never a copy here.
            let copy = dir(name).join("modeling_steel.py");
            if copy.exists() {
                std::fs::remove_file(copy).unwrap();
            }
        }
    }
    for (name, config) in models() {
        let dir = dir(name);
        let (loaded, layout, params) = load_model(&dir).unwrap();
        assert_eq!(loaded, config, "{name}: config.json");
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let ids: Vec<u32> = serde_json::from_value(reference["ids"].clone()).unwrap();
        let targets: Vec<u32> = serde_json::from_value(reference["targets"].clone()).unwrap();
        let expected: Vec<f32> = serde_json::from_value(reference["logits"].clone()).unwrap();

        let ours = logits(&config, &layout, &params, &ids);
        let worst = worst_difference(&ours, &expected, &format!("{name}: logits"));
        assert!(worst < 1e-4, "{name}: logits differ by up to {worst}");

        let mut grads = vec![0.0; layout.len];
        let mut batch = Batch::new(ids.len());
        batch.push_row(&ids, &targets, &vec![1.0; ids.len()], &[0]);
        let scale = LossScale {
            norm: ids.len() as f32,
            aux: 1.0,
        };
        let loss = loss_and_grad(&config, &layout, &params, batch.row(0), scale, &mut grads);
        let expected_loss = reference["loss"].as_f64().unwrap() as f32;
        assert!(
            (loss - expected_loss).abs() < 1e-4,
            "{name}: loss {loss} vs {expected_loss}"
        );

        let torch_grads = read_f32_tensors(&dir.join("grads.safetensors"));
        for view in &layout.views {
            let theirs = &torch_grads[&view.name];
            let mine = &grads[view.range()];
            let norm = theirs.iter().map(|g| g * g).sum::<f32>().sqrt();
            let diff = distance(mine, theirs, &format!("{name}: {}", view.name));
            assert!(
                diff <= 1e-3 * norm.max(1e-6),
                "{name} {}: gradient differs by {diff} (norm {norm})",
                view.name
            );
        }
    }
}

/// A masked multi-turn SFT loss against transformers (`make_sft_reference.py`): one two-turn
/// chat whose system and user turns are untrained (labels -100) and whose two assistant
/// replies, each with its `<|im_end|>`, are trained. transformers' loss is the mean
/// cross-entropy over the shifted labels that are not -100 (plus, for top-k, the
/// load-balancing loss over every position); ours is the row `ids = seq[..n-1]`,
/// `targets = seq[1..]`, weight 1 where the shifted label is trained, normalised by the trained
/// count, with the load-balancing loss at `aux: 1.0` as in the test above. Loss within 1e-4,
/// every gradient within 1e-3 relative (in norm).
#[test]
fn matches_pytorch_masked_sft_loss_and_gradients() {
    for (name, config) in models() {
        let dir = dir(name);
        let (loaded, layout, params) = load_model(&dir).unwrap();
        assert_eq!(loaded, config, "{name}: config.json");
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("sft_reference.json")).unwrap())
                .unwrap();
        if name == "softmax" {
            let mut crc = flate2::Crc::new();
            crc.update(steel_trainer::checkpoint::MODELING_STEEL.as_bytes());
            assert_eq!(
                reference["modeling_steel_crc32"].as_u64(),
                Some(u64::from(crc.sum())),
                "the SFT references were made with another modeling_steel.py: regenerate them"
            );
        }
        let seq: Vec<u32> = serde_json::from_value(reference["ids"].clone()).unwrap();
        let labels: Vec<i64> = serde_json::from_value(reference["labels"].clone()).unwrap();
        assert_eq!(seq.len(), labels.len(), "{name}: one label per id");
        assert!(seq.len() >= 25, "{name}: a multi-turn chat, not a stub");

        let n = seq.len();
        let (ids, targets) = (&seq[..n - 1], &seq[1..]);
        let weights: Vec<f32> = labels[1..]
            .iter()
            .zip(targets)
            .map(|(&label, &target)| {
                if label == -100 {
                    0.0
                } else {
                    assert_eq!(label, i64::from(target), "{name}: a label is its id");
                    1.0
                }
            })
            .collect();
        let trained = weights.iter().filter(|&&w| w == 1.0).count();
        assert_eq!(
            Some(trained as u64),
            reference["trained"].as_u64(),
            "{name}"
        );
        assert!(
            trained > 0 && trained < n - 1,
            "{name}: {trained} of {} positions trained: the mask must matter",
            n - 1
        );

        let mut batch = Batch::new(ids.len());
        batch.push_row(ids, targets, &weights, &[0]);
        let scale = LossScale {
            norm: trained as f32,
            aux: 1.0,
        };
        let mut grads = vec![0.0; layout.len];
        let loss = loss_and_grad(&config, &layout, &params, batch.row(0), scale, &mut grads);
        let expected_loss = reference["loss"].as_f64().unwrap() as f32;
        assert!(
            (loss - expected_loss).abs() < 1e-4,
            "{name}: loss {loss} vs {expected_loss}"
        );

        let torch_grads = read_f32_tensors(&dir.join("sft_grads.safetensors"));
        assert_eq!(torch_grads.len(), layout.views.len(), "{name}: tensors");
        for view in &layout.views {
            let theirs = &torch_grads[&view.name];
            let mine = &grads[view.range()];
            let norm = theirs.iter().map(|g| g * g).sum::<f32>().sqrt();
            let diff = distance(mine, theirs, &format!("{name}: {}", view.name));
            assert!(
                diff <= 1e-3 * norm.max(1e-6),
                "{name} {}: gradient differs by {diff} (norm {norm})",
                view.name
            );
        }
    }
}
