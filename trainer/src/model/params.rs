//! All parameters of a model in one contiguous f32 buffer, with a named view per tensor
//! (offset, shape, HuggingFace name): one buffer to update, all-reduce and checkpoint.
//! Gradients and optimizer moments use the same layout.

use crate::model::config::{ExpertMlp, Ffn, ModelConfig};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The tensor's HuggingFace name (`model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    pub offset: usize,
    pub shape: Vec<usize>,
}

impl View {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

#[derive(Clone, Debug)]
pub struct Layout {
    pub views: Vec<View>,
    pub len: usize,
}

impl Layout {
    /// The layout of a model, in HuggingFace's tensor names (Qwen2 for dense, Qwen2-MoE for
    /// top-k; Steel's softmax-MoE uses `mlp.gate.{weight,bias}` and
    /// `mlp.experts.{e}.{w_g1,w_u1,w_g2,w_u2}.weight` for dual-SwiGLU experts).
    pub fn new(config: &ModelConfig) -> Layout {
        let (d, q, kv) = (
            config.hidden_size,
            config.num_heads * config.head_dim,
            config.num_kv_heads * config.head_dim,
        );
        let mut layout = Layout {
            views: Vec::new(),
            len: 0,
        };
        layout.push("model.embed_tokens.weight", &[config.vocab_size, d]);
        for l in 0..config.num_layers {
            let p = format!("model.layers.{l}");
            layout.push(&format!("{p}.input_layernorm.weight"), &[d]);
            layout.push(&format!("{p}.self_attn.q_proj.weight"), &[q, d]);
            layout.push(&format!("{p}.self_attn.k_proj.weight"), &[kv, d]);
            layout.push(&format!("{p}.self_attn.v_proj.weight"), &[kv, d]);
            if config.qkv_bias {
                layout.push(&format!("{p}.self_attn.q_proj.bias"), &[q]);
                layout.push(&format!("{p}.self_attn.k_proj.bias"), &[kv]);
                layout.push(&format!("{p}.self_attn.v_proj.bias"), &[kv]);
            }
            layout.push(&format!("{p}.self_attn.o_proj.weight"), &[d, q]);
            layout.push(&format!("{p}.post_attention_layernorm.weight"), &[d]);
            let mlp = format!("{p}.mlp");
            match config.ffn {
                Ffn::Dense { intermediate_size } => {
                    layout.push_mlp(&mlp, ExpertMlp::SwiGlu, d, intermediate_size)
                }
                Ffn::SoftmaxMoe {
                    n_experts,
                    expert_width,
                    mlp: kind,
                } => {
                    layout.push(&format!("{mlp}.gate.weight"), &[n_experts, d]);
                    layout.push(&format!("{mlp}.gate.bias"), &[n_experts]);
                    for e in 0..n_experts {
                        layout.push_mlp(&format!("{mlp}.experts.{e}"), kind, d, expert_width);
                    }
                }
                Ffn::TopkMoe {
                    n_experts,
                    expert_width,
                    shared_expert_width,
                    ..
                } => {
                    layout.push(&format!("{mlp}.gate.weight"), &[n_experts, d]);
                    for e in 0..n_experts {
                        layout.push_mlp(
                            &format!("{mlp}.experts.{e}"),
                            ExpertMlp::SwiGlu,
                            d,
                            expert_width,
                        );
                    }
                    if let Some(width) = shared_expert_width {
                        layout.push_mlp(
                            &format!("{mlp}.shared_expert"),
                            ExpertMlp::SwiGlu,
                            d,
                            width,
                        );
                        layout.push(&format!("{mlp}.shared_expert_gate.weight"), &[1, d]);
                    }
                }
            }
        }
        layout.push("model.norm.weight", &[d]);
        if !config.tie_embeddings {
            layout.push("lm_head.weight", &[config.vocab_size, d]);
        }
        layout
    }

    fn push_mlp(&mut self, prefix: &str, kind: ExpertMlp, d: usize, width: usize) {
        match kind {
            ExpertMlp::SwiGlu => {
                self.push(&format!("{prefix}.gate_proj.weight"), &[width, d]);
                self.push(&format!("{prefix}.up_proj.weight"), &[width, d]);
                self.push(&format!("{prefix}.down_proj.weight"), &[d, width]);
            }
            ExpertMlp::DualSwiGlu => {
                self.push(&format!("{prefix}.w_g1.weight"), &[width, d]);
                self.push(&format!("{prefix}.w_u1.weight"), &[width, d]);
                self.push(&format!("{prefix}.w_g2.weight"), &[d, width]);
                self.push(&format!("{prefix}.w_u2.weight"), &[d, width]);
            }
        }
    }

    fn push(&mut self, name: &str, shape: &[usize]) {
        let view = View {
            name: name.to_string(),
            offset: self.len,
            shape: shape.to_vec(),
        };
        self.len += view.len();
        self.views.push(view);
    }

    pub fn view(&self, name: &str) -> &View {
        self.views
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no parameter `{name}`"))
    }

    /// Fill `buffer` from a HuggingFace `model.safetensors` (f32 tensors); every view must be
    /// present with its shape.
    pub fn load_safetensors(&self, bytes: &[u8], buffer: &mut [f32]) -> Result<(), String> {
        let tensors = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| format!("not a safetensors file: {e}"))?;
        for view in &self.views {
            let tensor = tensors
                .tensor(&view.name)
                .map_err(|_| format!("the checkpoint has no tensor `{}`", view.name))?;
            if tensor.shape() != view.shape.as_slice() {
                return Err(format!(
                    "`{}` has shape {:?}, the config says {:?}",
                    view.name,
                    tensor.shape(),
                    view.shape
                ));
            }
            if tensor.dtype() != safetensors::Dtype::F32 {
                return Err(format!(
                    "`{}` is {:?}; only f32 checkpoints load so far",
                    view.name,
                    tensor.dtype()
                ));
            }
            for (out, chunk) in buffer[view.range()]
                .iter_mut()
                .zip(tensor.data().chunks_exact(4))
            {
                *out = f32::from_le_bytes(chunk.try_into().expect("4 bytes"));
            }
        }
        Ok(())
    }
}
