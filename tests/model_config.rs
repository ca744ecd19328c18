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
