//! `ModelConfig`: a decoder-only transformer (Qwen2 layout: RMSNorm, RoPE, GQA attention with
//! q/k/v bias) whose FFN is dense SwiGLU, Steel's softmax mixture of experts, or token-choice
//! top-k experts. Reads HuggingFace `config.json` in both styles found in the wild
//! (`rope_theta` of Qwen1.5-era files, `rope_parameters.rope_theta` of transformers 5).

use crate::error::TrainError;
use serde_json::Value;
use std::path::Path;

/// One expert's (or the dense layer's) MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertMlp {
    /// `down(silu(gate x) ⊙ up x)`, hidden width `width`.
    SwiGlu,
    /// `h = silu(W_g1 x) ⊙ (W_u1 x)` (width `width`), `y = silu(W_g2 h) ⊙ (W_u2 h)` (back to
    /// the model width): Steel-LLM's experts.
    DualSwiGlu,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Ffn {
    Dense {
        intermediate_size: usize,
    },
    /// Gate `Linear(d, n_experts)` with bias, softmax over experts, every expert on every token.
    SoftmaxMoe {
        n_experts: usize,
        expert_width: usize,
        mlp: ExpertMlp,
    },
    /// Softmax router, each token to its `top_k` experts (dropless), optional renormalisation,
    /// optional shared expert with a sigmoid gate, load-balancing loss times `aux_coefficient`.
    TopkMoe {
        n_experts: usize,
        top_k: usize,
        expert_width: usize,
        renormalize: bool,
        shared_expert_width: Option<usize>,
        aux_coefficient: f32,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rms_norm_eps: f32,
    pub qkv_bias: bool,
    pub tie_embeddings: bool,
    pub max_positions: usize,
    pub ffn: Ffn,
}

fn field<'a>(json: &'a Value, name: &str) -> Result<&'a Value, TrainError> {
    json.get(name)
        .ok_or_else(|| TrainError::Config(format!("config.json has no `{name}`")))
}

fn usize_field(json: &Value, name: &str) -> Result<usize, TrainError> {
    field(json, name)?
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| {
            TrainError::Config(format!(
                "config.json: `{name}` must be a non-negative integer"
            ))
        })
}

fn f32_field(json: &Value, name: &str) -> Result<f32, TrainError> {
    field(json, name)?
        .as_f64()
        .map(|v| v as f32)
        .ok_or_else(|| TrainError::Config(format!("config.json: `{name}` must be a number")))
}

/// The model types `from_hf_json` reads, and the architectures they may name.
const MODEL_TYPES: &[&str] = &["qwen2", "qwen2_moe"];
const ARCHITECTURES: &[&str] = &[
    "Qwen2ForCausalLM",
    "Qwen2MoeForCausalLM",
    "SteelForCausalLM",
];

/// Refuse a `config.json` of another model family (Llama, Mamba, ...): read as Qwen2 it would
/// load with the wrong layers or train something else than the checkpoint is.
fn check_architecture(json: &Value, model_type: &str) -> Result<(), TrainError> {
    if !MODEL_TYPES.contains(&model_type) {
        return Err(TrainError::Config(format!(
            "config.json: model_type `{model_type}` is not supported; Steel reads {}",
            MODEL_TYPES.join(", ")
        )));
    }
    let named = json.get("architectures").and_then(Value::as_array);
    for architecture in named.into_iter().flatten() {
        let name = architecture
            .as_str()
            .map_or_else(|| architecture.to_string(), String::from);
        if !ARCHITECTURES.contains(&name.as_str()) {
            return Err(TrainError::Config(format!(
                "config.json: architecture `{name}` is not supported; Steel reads {}",
                ARCHITECTURES.join(", ")
            )));
        }
    }
    Ok(())
}

impl ModelConfig {
    pub fn from_hf_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Config(format!("cannot read `{}`: {e}", path.display())))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| TrainError::Config(format!("`{}` is not JSON: {e}", path.display())))?;
        Self::from_hf_json(&json)
            .map_err(|e| TrainError::Config(format!("`{}`: {e}", path.display())))
    }

    /// A Qwen2 (dense) or Qwen2-MoE (top-k) `config.json`.
    pub fn from_hf_json(json: &Value) -> Result<Self, TrainError> {
        let hidden_size = usize_field(json, "hidden_size")?;
        let num_heads = usize_field(json, "num_attention_heads")?;
        let num_kv_heads = json
            .get("num_key_value_heads")
            .map_or(Ok(num_heads), |_| usize_field(json, "num_key_value_heads"))?;
        let rope_theta = match json.get("rope_parameters") {
            Some(rope) => f32_field(rope, "rope_theta")?,
            None => json
                .get("rope_theta")
                .map_or(Ok(10000.0), |_| f32_field(json, "rope_theta"))?,
        };
        let head_dim = match json.get("head_dim") {
            Some(_) => usize_field(json, "head_dim")?,
            None => hidden_size / num_heads,
        };
        let model_type = json
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("qwen2");
        check_architecture(json, model_type)?;
        let steel_ffn = json.get("steel_ffn").and_then(Value::as_str);
        let ffn = if steel_ffn == Some("softmax_moe") {
            let mlp = match json.get("steel_expert_mlp").and_then(Value::as_str) {
                Some("dual_swiglu") => ExpertMlp::DualSwiGlu,
                Some("swiglu") | None => ExpertMlp::SwiGlu,
                Some(other) => {
                    return Err(TrainError::Config(format!(
                        "config.json: unknown `steel_expert_mlp` `{other}`"
                    )));
                }
            };
            Ffn::SoftmaxMoe {
                n_experts: usize_field(json, "num_experts")?,
                expert_width: usize_field(json, "moe_intermediate_size")?,
                mlp,
            }
        } else if model_type == "qwen2_moe" {
            Ffn::TopkMoe {
                n_experts: usize_field(json, "num_experts")?,
                top_k: usize_field(json, "num_experts_per_tok")?,
                expert_width: usize_field(json, "moe_intermediate_size")?,
                renormalize: json
                    .get("norm_topk_prob")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                shared_expert_width: json
                    .get("shared_expert_intermediate_size")
                    .and_then(Value::as_u64)
                    .filter(|&width| width > 0)
                    .map(|v| v as usize),
                aux_coefficient: json
                    .get("router_aux_loss_coef")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.001) as f32,
            }
        } else {
            Ffn::Dense {
                intermediate_size: usize_field(json, "intermediate_size")?,
            }
        };
        let config = ModelConfig {
            vocab_size: usize_field(json, "vocab_size")?,
            hidden_size,
            num_layers: usize_field(json, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta,
            rms_norm_eps: json
                .get("rms_norm_eps")
                .map_or(Ok(1e-6), |_| f32_field(json, "rms_norm_eps"))?,
            qkv_bias: true,
            tie_embeddings: json
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            max_positions: json
                .get("max_position_embeddings")
                .map_or(Ok(32768), |_| usize_field(json, "max_position_embeddings"))?,
            ffn,
        };
        config.validate()?;
        Ok(config)
    }

    /// The HuggingFace `config.json`: `Qwen2ForCausalLM` for dense, `Qwen2MoeForCausalLM` for
    /// top-k; Steel's softmax-MoE is a Qwen2 config with `steel_ffn`, `num_experts`,
    /// `moe_intermediate_size` and `steel_expert_mlp` (read back by `from_hf_json`).
    pub fn to_hf_json(&self) -> Value {
        let mut json = serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_embeddings,
            "max_position_embeddings": self.max_positions,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        });
        let object = json.as_object_mut().expect("an object");
        match &self.ffn {
            Ffn::Dense { intermediate_size } => {
                object.insert("intermediate_size".into(), (*intermediate_size).into());
            }
            Ffn::SoftmaxMoe {
                n_experts,
                expert_width,
                mlp,
            } => {
                object.insert("intermediate_size".into(), (*expert_width).into());
                object.insert("steel_ffn".into(), "softmax_moe".into());
                object.insert("num_experts".into(), (*n_experts).into());
                object.insert("moe_intermediate_size".into(), (*expert_width).into());
                let mlp = match mlp {
                    ExpertMlp::SwiGlu => "swiglu",
                    ExpertMlp::DualSwiGlu => "dual_swiglu",
                };
                object.insert("steel_expert_mlp".into(), mlp.into());
            }
            Ffn::TopkMoe {
                n_experts,
                top_k,
                expert_width,
                renormalize,
                shared_expert_width,
                aux_coefficient,
            } => {
                object.insert(
                    "architectures".into(),
                    serde_json::json!(["Qwen2MoeForCausalLM"]),
                );
                object.insert("model_type".into(), "qwen2_moe".into());
                object.insert("intermediate_size".into(), (*expert_width).into());
                object.insert("num_experts".into(), (*n_experts).into());
                object.insert("num_experts_per_tok".into(), (*top_k).into());
                object.insert("moe_intermediate_size".into(), (*expert_width).into());
                object.insert("norm_topk_prob".into(), (*renormalize).into());
                object.insert(
                    "shared_expert_intermediate_size".into(),
                    shared_expert_width.unwrap_or(0).into(),
                );
                object.insert("router_aux_loss_coef".into(), (*aux_coefficient).into());
                object.insert("decoder_sparse_step".into(), 1.into());
                object.insert("mlp_only_layers".into(), serde_json::json!([]));
            }
        }
        json
    }

    /// Shapes that cannot work, said plainly.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(TrainError::Config(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.num_heads, self.num_kv_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(TrainError::Config(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim
            )));
        }
        if let Ffn::TopkMoe {
            n_experts, top_k, ..
        } = self.ffn
            && (top_k == 0 || top_k > n_experts)
        {
            return Err(TrainError::Config(format!(
                "top_k {top_k} must be between 1 and the {n_experts} experts"
            )));
        }
        Ok(())
    }

    /// The number of trainable parameters.
    pub fn param_count(&self) -> usize {
        let d = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
        let attention = d * q + 2 * d * kv + bias + q * d;
        let mlp = |mlp: ExpertMlp, width: usize| match mlp {
            ExpertMlp::SwiGlu => 3 * d * width,
            ExpertMlp::DualSwiGlu => 4 * d * width,
        };
        let ffn = match &self.ffn {
            Ffn::Dense { intermediate_size } => mlp(ExpertMlp::SwiGlu, *intermediate_size),
            Ffn::SoftmaxMoe {
                n_experts,
                expert_width,
                mlp: kind,
            } => d * n_experts + n_experts + n_experts * mlp(*kind, *expert_width),
            Ffn::TopkMoe {
                n_experts,
                expert_width,
                shared_expert_width,
                ..
            } => {
                let shared = shared_expert_width.map_or(0, |w| mlp(ExpertMlp::SwiGlu, w) + d);
                d * n_experts + n_experts * mlp(ExpertMlp::SwiGlu, *expert_width) + shared
            }
        };
        let layer = attention + ffn + 2 * d;
        let embeddings = self.vocab_size * d * if self.tie_embeddings { 1 } else { 2 };
        embeddings + self.num_layers * layer + d
    }

    /// A named preset.
    pub fn preset(name: &str) -> Result<Self, TrainError> {
        let base =
            |vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, ffn| ModelConfig {
                vocab_size,
                hidden_size,
                num_layers,
                num_heads,
                num_kv_heads,
                head_dim: hidden_size / num_heads,
                rope_theta: 1_000_000.0,
                rms_norm_eps: 1e-6,
                qkv_bias: true,
                tie_embeddings: false,
                max_positions: 32768,
                ffn,
            };
        Ok(match name {
            // Steel-LLM as trained: 6 dual-SwiGLU experts of width 1792 / 4, softmax-mixed.
            "steel-1b" => base(
                151_936,
                1792,
                18,
                32,
                32,
                Ffn::SoftmaxMoe {
                    n_experts: 6,
                    expert_width: 448,
                    mlp: ExpertMlp::DualSwiGlu,
                },
            ),
            // ../shared/GPU.md's PyTorch baselines: dense Qwen2 1.23B (SwiGLU 4736) and
            // Qwen2-MoE top-2 of 8 with a shared expert (2.5B total, 1.2B active).
            "dense-1b" => ModelConfig {
                max_positions: 4096,
                ..base(
                    151_936,
                    1792,
                    18,
                    32,
                    32,
                    Ffn::Dense {
                        intermediate_size: 4736,
                    },
                )
            },
            "topk-moe-2b" => ModelConfig {
                max_positions: 4096,
                ..base(
                    151_936,
                    1792,
                    18,
                    32,
                    32,
                    Ffn::TopkMoe {
                        n_experts: 8,
                        top_k: 2,
                        expert_width: 1792,
                        renormalize: false,
                        shared_expert_width: Some(3584),
                        aux_coefficient: 0.001,
                    },
                )
            },
            "tiny-dense" => base(
                2000,
                64,
                2,
                4,
                2,
                Ffn::Dense {
                    intermediate_size: 128,
                },
            ),
            "tiny-softmax-moe" => base(
                2000,
                64,
                2,
                4,
                2,
                Ffn::SoftmaxMoe {
                    n_experts: 4,
                    expert_width: 32,
                    mlp: ExpertMlp::DualSwiGlu,
                },
            ),
            "tiny-topk-moe" => base(
                2000,
                64,
                2,
                4,
                2,
                Ffn::TopkMoe {
                    n_experts: 4,
                    top_k: 2,
                    expert_width: 32,
                    renormalize: true,
                    shared_expert_width: Some(32),
                    aux_coefficient: 0.01,
                },
            ),
            other => {
                return Err(TrainError::Config(format!(
                    "unknown preset `{other}`; presets: steel-1b, dense-1b, topk-moe-2b, tiny-dense, tiny-softmax-moe, tiny-topk-moe"
                )));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steel_1b_has_steel_llms_size() {
        let config = ModelConfig::preset("steel-1b").unwrap();
        assert_eq!(config.head_dim, 56);
        // Embeddings and head 2 × 151,936 × 1,792; per layer attention 4·1792² + 3·1792 and
        // six experts of 4·1792·448 plus the 1792×6 gate and its bias; norms.
        let d = 1792usize;
        let layer = 4 * d * d + 3 * d + 6 * 4 * d * 448 + 6 * d + 6 + 2 * d;
        assert_eq!(config.param_count(), 2 * 151_936 * d + 18 * layer + d);
        assert_eq!(config.param_count() / 10_000_000, 112); // 1.12 B
        // GPU.md's baselines: dense 1.23 B; top-k 2.5 B in all.
        assert_eq!(
            ModelConfig::preset("dense-1b").unwrap().param_count() / 10_000_000,
            123
        );
        assert_eq!(
            ModelConfig::preset("topk-moe-2b").unwrap().param_count() / 100_000_000,
            25
        );
    }

    /// A small new-style (transformers 5) Qwen2 `config.json`.
    fn qwen2_json() -> Value {
        serde_json::json!({
            "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
            "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 100,
            "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
            "rms_norm_eps": 1e-6, "tie_word_embeddings": true, "dtype": "float32"
        })
    }

    /// Read as Qwen2, another family's weights would train as something they are not.
    #[test]
    fn a_config_of_another_model_family_is_refused_naming_the_supported_ones() {
        for (key, value, refused) in [
            ("model_type", "llama", "model_type `llama` is not supported"),
            ("model_type", "mamba", "model_type `mamba` is not supported"),
        ] {
            let mut other = qwen2_json();
            other[key] = serde_json::json!(value);
            let error = ModelConfig::from_hf_json(&other).unwrap_err().to_string();
            assert!(
                error.contains(refused) && error.contains("qwen2, qwen2_moe"),
                "{error}"
            );
        }
        let mut llama = qwen2_json();
        llama["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
        let error = ModelConfig::from_hf_json(&llama).unwrap_err().to_string();
        assert!(
            error.contains("`LlamaForCausalLM` is not supported"),
            "{error}"
        );
        assert!(ModelConfig::from_hf_json(&qwen2_json()).is_ok());
    }

    #[test]
    fn reads_both_config_styles() {
        let new_style = qwen2_json();
        let config = ModelConfig::from_hf_json(&new_style).unwrap();
        assert_eq!(
            (config.head_dim, config.rope_theta, config.tie_embeddings),
            (8, 1e6, true)
        );
        let mut old_style = new_style.clone();
        old_style.as_object_mut().unwrap().remove("rope_parameters");
        old_style["rope_theta"] = serde_json::json!(10000.0);
        old_style["torch_dtype"] = serde_json::json!("bfloat16");
        assert_eq!(
            ModelConfig::from_hf_json(&old_style).unwrap().rope_theta,
            10000.0
        );
        let mut bad = new_style;
        bad["num_key_value_heads"] = serde_json::json!(3);
        assert!(
            ModelConfig::from_hf_json(&bad)
                .unwrap_err()
                .to_string()
                .contains("not a multiple")
        );
        assert!(
            ModelConfig::preset("huge")
                .unwrap_err()
                .to_string()
                .contains("tiny-dense")
        );
    }

    #[test]
    fn hf_json_round_trips_every_preset() {
        for name in [
            "steel-1b",
            "tiny-dense",
            "tiny-softmax-moe",
            "tiny-topk-moe",
        ] {
            let config = ModelConfig::preset(name).unwrap();
            let back = ModelConfig::from_hf_json(&config.to_hf_json()).unwrap();
            assert_eq!(back, config, "{name}");
        }
    }
}
