//! Model configs against the tiny transformers-made Qwen2 in `../shared/data/hf/tiny-qwen2`.

use steel_trainer::model::config::{Ffn, ModelConfig};

/// Elements of every tensor in a safetensors file (its JSON header lists shapes).
fn safetensors_elements(path: &std::path::Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(_, tensor)| {
            tensor["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .product::<usize>()
        })
        .sum()
}

#[test]
fn tiny_qwen2_config_reads_and_counts_its_parameters() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/hf/tiny-qwen2");
    let config = ModelConfig::from_hf_file(&dir.join("config.json")).unwrap();
    assert_eq!(
        (
            config.hidden_size,
            config.num_layers,
            config.num_heads,
            config.num_kv_heads
        ),
        (32, 2, 4, 2)
    );
    assert_eq!(
        config.ffn,
        Ffn::Dense {
            intermediate_size: 64
        }
    );
    assert_eq!((config.rope_theta, config.tie_embeddings), (1e6, true));
    // transformers saved exactly the parameters our count says (tied head not stored twice).
    assert_eq!(
        config.param_count(),
        safetensors_elements(&dir.join("model.safetensors"))
    );
}

/// The dense forward pass gives transformers' logits for the tiny Qwen2 (its reference file).
#[test]
fn tiny_qwen2_logits_match_transformers() {
    use steel_trainer::model::params::Layout;
    use steel_trainer::model::pass::logits;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/hf/tiny-qwen2");
    let config = ModelConfig::from_hf_file(&dir.join("config.json")).unwrap();
    let layout = Layout::new(&config);
    let mut params = vec![0.0; layout.len];
    layout
        .load_safetensors(
            &std::fs::read(dir.join("model.safetensors")).unwrap(),
            &mut params,
        )
        .unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference_logits.json")).unwrap())
            .unwrap();
    let ids: Vec<u32> = reference["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let out = logits(&config, &layout, &params, &ids);
    let vocab = config.vocab_size;
    let last = &out[(ids.len() - 1) * vocab..];
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
    let argmax: Vec<u64> = out
        .chunks(vocab)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u64
        })
        .collect();
    let expected: Vec<u64> = reference["argmax_per_pos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(argmax, expected);
}
