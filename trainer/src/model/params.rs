//! All parameters of a model in one contiguous f32 buffer, with a named view per tensor
//! (offset, shape, HuggingFace name) for checkpoints and names, and the same tensors as typed
//! fields (`model::tensors`) for the model's code: one buffer to update, all-reduce and
//! checkpoint. Gradients and optimizer moments use the same layout.

use crate::model::config::{ExpertMlp, Ffn, ModelConfig};
use crate::model::tensors::{
    AttentionTensors, FfnTensors, LayerTensors, MlpTensors, ModelTensors, SharedExpertTensors, Slot,
};

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
    /// The same tensors as typed fields.
    pub tensors: ModelTensors,
}

impl Layout {
    /// The layout of a model, in HuggingFace's tensor names (Qwen2 for dense, Qwen2-MoE for
    /// top-k; Steel's softmax-MoE uses `mlp.gate.{weight,bias}` and
    /// `mlp.experts.{e}.{w_g1,w_u1,w_g2,w_u2}.weight` for dual-SwiGLU experts).
    pub fn new(config: &ModelConfig) -> Layout {
        let mut views = Views::default();
        let (vocab, d) = (config.vocab_size, config.hidden_size);
        let embed = views.push("model.embed_tokens.weight", &[vocab, d]);
        let layers = (0..config.num_layers)
            .map(|l| views.layer(config, l))
            .collect();
        let norm = views.push("model.norm.weight", &[d]);
        let head = if config.tie_embeddings {
            embed
        } else {
            views.push("lm_head.weight", &[vocab, d])
        };
        Layout {
            views: views.views,
            len: views.len,
            tensors: ModelTensors {
                embed,
                layers,
                norm,
                head,
            },
        }
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

/// Elements a matrix's offset is a multiple of when it follows a vector: 128 bytes of bf16.
const MATRIX_ALIGN: usize = 64;

/// The named views as `Layout::new` appends them, each push giving the tensor's slot.
#[derive(Default)]
struct Views {
    views: Vec<View>,
    len: usize,
}

impl Views {
    fn layer(&mut self, config: &ModelConfig, l: usize) -> LayerTensors {
        let (d, q, kv) = (
            config.hidden_size,
            config.num_heads * config.head_dim,
            config.num_kv_heads * config.head_dim,
        );
        let p = format!("model.layers.{l}");
        let input_layernorm = self.push(&format!("{p}.input_layernorm.weight"), &[d]);
        let (q_weight, k_weight, v_weight) = (
            self.push(&format!("{p}.self_attn.q_proj.weight"), &[q, d]),
            self.push(&format!("{p}.self_attn.k_proj.weight"), &[kv, d]),
            self.push(&format!("{p}.self_attn.v_proj.weight"), &[kv, d]),
        );
        let bias = |views: &mut Views, proj: &str, width: usize| {
            config
                .qkv_bias
                .then(|| views.push(&format!("{p}.self_attn.{proj}.bias"), &[width]))
        };
        let (q_bias, k_bias, v_bias) = (
            bias(self, "q_proj", q),
            bias(self, "k_proj", kv),
            bias(self, "v_proj", kv),
        );
        let attn = AttentionTensors {
            q: q_weight,
            k: k_weight,
            v: v_weight,
            q_bias,
            k_bias,
            v_bias,
            o: self.push(&format!("{p}.self_attn.o_proj.weight"), &[d, q]),
        };
        let post_attention_layernorm =
            self.push(&format!("{p}.post_attention_layernorm.weight"), &[d]);
        LayerTensors {
            input_layernorm,
            attn,
            post_attention_layernorm,
            ffn: self.ffn(config, &format!("{p}.mlp")),
        }
    }

    fn ffn(&mut self, config: &ModelConfig, mlp: &str) -> FfnTensors {
        let d = config.hidden_size;
        match config.ffn {
            Ffn::Dense { intermediate_size } => {
                FfnTensors::Dense(self.mlp(mlp, ExpertMlp::SwiGlu, d, intermediate_size))
            }
            Ffn::SoftmaxMoe {
                n_experts,
                expert_width,
                mlp: kind,
            } => FfnTensors::SoftmaxMoe {
                gate: self.push(&format!("{mlp}.gate.weight"), &[n_experts, d]),
                gate_bias: self.push(&format!("{mlp}.gate.bias"), &[n_experts]),
                experts: (0..n_experts)
                    .map(|e| self.mlp(&format!("{mlp}.experts.{e}"), kind, d, expert_width))
                    .collect(),
            },
            Ffn::TopkMoe {
                n_experts,
                expert_width,
                shared_expert_width,
                ..
            } => FfnTensors::TopkMoe {
                gate: self.push(&format!("{mlp}.gate.weight"), &[n_experts, d]),
                experts: (0..n_experts)
                    .map(|e| {
                        let prefix = format!("{mlp}.experts.{e}");
                        self.mlp(&prefix, ExpertMlp::SwiGlu, d, expert_width)
                    })
                    .collect(),
                shared: shared_expert_width.map(|width| SharedExpertTensors {
                    mlp: self.mlp(&format!("{mlp}.shared_expert"), ExpertMlp::SwiGlu, d, width),
                    gate: self.push(&format!("{mlp}.shared_expert_gate.weight"), &[1, d]),
                }),
            },
        }
    }

    fn mlp(&mut self, prefix: &str, kind: ExpertMlp, d: usize, width: usize) -> MlpTensors {
        match kind {
            ExpertMlp::SwiGlu => MlpTensors::SwiGlu {
                gate: self.push(&format!("{prefix}.gate_proj.weight"), &[width, d]),
                up: self.push(&format!("{prefix}.up_proj.weight"), &[width, d]),
                down: self.push(&format!("{prefix}.down_proj.weight"), &[d, width]),
            },
            ExpertMlp::DualSwiGlu => MlpTensors::DualSwiGlu {
                g1: self.push(&format!("{prefix}.w_g1.weight"), &[width, d]),
                u1: self.push(&format!("{prefix}.w_u1.weight"), &[width, d]),
                g2: self.push(&format!("{prefix}.w_g2.weight"), &[d, width]),
                u2: self.push(&format!("{prefix}.w_u2.weight"), &[d, width]),
            },
        }
    }

    fn push(&mut self, name: &str, shape: &[usize]) -> Slot {
        // A matrix that follows a vector (a norm, a bias) starts at a multiple of
        // `MATRIX_ALIGN` elements: otherwise a 6-element bias would leave every later bf16
        // weight copy off the 16-byte alignment cuBLASLt's fast kernels need. Matrices after
        // matrices stay adjacent (q/k/v and gate/up are one GEMM each; experts are equally
        // strided), and so do vectors after vectors (the q/k/v biases are added as one).
        let follows_vector = self.views.last().is_some_and(|v| v.shape.len() == 1);
        if shape.len() > 1 && follows_vector {
            self.len = self.len.next_multiple_of(MATRIX_ALIGN);
        }
        let view = View {
            name: name.to_string(),
            offset: self.len,
            shape: shape.to_vec(),
        };
        let slot = Slot {
            offset: view.offset,
            len: view.len(),
        };
        self.len += slot.len;
        self.views.push(view);
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MLP's typed slots with their HuggingFace names, in the order written.
    fn named_mlp(prefix: &str, mlp: &MlpTensors) -> Vec<(String, Slot)> {
        let named = match *mlp {
            MlpTensors::SwiGlu { gate, up, down } => {
                vec![("gate_proj", gate), ("up_proj", up), ("down_proj", down)]
            }
            MlpTensors::DualSwiGlu { g1, u1, g2, u2 } => {
                vec![("w_g1", g1), ("w_u1", u1), ("w_g2", g2), ("w_u2", u2)]
            }
        };
        let slots: Vec<Slot> = named.iter().map(|&(_, slot)| slot).collect();
        assert_eq!(mlp.slots(), slots);
        named
            .into_iter()
            .map(|(name, slot)| (format!("{prefix}.{name}.weight"), slot))
            .collect()
    }

    /// Every typed slot with the HuggingFace name of its tensor, in HuggingFace's order (the
    /// head only when untied).
    fn named_slots(model: &ModelTensors, tied: bool) -> Vec<(String, Slot)> {
        let mut named = vec![("model.embed_tokens.weight".to_string(), model.embed)];
        for (l, layer) in model.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            let a = layer.attn;
            named.push((format!("{p}.input_layernorm.weight"), layer.input_layernorm));
            named.push((format!("{p}.self_attn.q_proj.weight"), a.q));
            named.push((format!("{p}.self_attn.k_proj.weight"), a.k));
            named.push((format!("{p}.self_attn.v_proj.weight"), a.v));
            for (proj, bias) in [("q", a.q_bias), ("k", a.k_bias), ("v", a.v_bias)] {
                if let Some(bias) = bias {
                    named.push((format!("{p}.self_attn.{proj}_proj.bias"), bias));
                }
            }
            named.push((format!("{p}.self_attn.o_proj.weight"), a.o));
            let ln2 = layer.post_attention_layernorm;
            named.push((format!("{p}.post_attention_layernorm.weight"), ln2));
            let mlp = format!("{p}.mlp");
            let experts = |named: &mut Vec<_>, experts: &[MlpTensors]| {
                for (e, expert) in experts.iter().enumerate() {
                    named.extend(named_mlp(&format!("{mlp}.experts.{e}"), expert));
                }
            };
            match &layer.ffn {
                FfnTensors::Dense(dense) => named.extend(named_mlp(&mlp, dense)),
                FfnTensors::SoftmaxMoe {
                    gate,
                    gate_bias,
                    experts: all,
                } => {
                    named.push((format!("{mlp}.gate.weight"), *gate));
                    named.push((format!("{mlp}.gate.bias"), *gate_bias));
                    experts(&mut named, all);
                }
                FfnTensors::TopkMoe {
                    gate,
                    experts: all,
                    shared,
                } => {
                    named.push((format!("{mlp}.gate.weight"), *gate));
                    experts(&mut named, all);
                    if let Some(shared) = shared {
                        named.extend(named_mlp(&format!("{mlp}.shared_expert"), &shared.mlp));
                        named.push((format!("{mlp}.shared_expert_gate.weight"), shared.gate));
                    }
                }
            }
        }
        named.push(("model.norm.weight".to_string(), model.norm));
        if !tied {
            named.push(("lm_head.weight".to_string(), model.head));
        }
        named
    }

    #[test]
    fn typed_slots_are_the_named_views_and_tile_the_buffer() {
        let preset = |name| ModelConfig::preset(name).unwrap();
        let dual = preset("tiny-softmax-moe");
        assert!(matches!(
            dual.ffn,
            Ffn::SoftmaxMoe {
                mlp: ExpertMlp::DualSwiGlu,
                ..
            }
        ));
        let swiglu = ModelConfig {
            ffn: Ffn::SoftmaxMoe {
                n_experts: 3,
                expert_width: 16,
                mlp: ExpertMlp::SwiGlu,
            },
            ..dual.clone()
        };
        // Tied, without q/k/v biases, and a top-k MoE without a shared expert.
        let bare = ModelConfig {
            tie_embeddings: true,
            qkv_bias: false,
            ffn: Ffn::TopkMoe {
                n_experts: 5,
                top_k: 2,
                expert_width: 16,
                renormalize: false,
                shared_expert_width: None,
                aux_coefficient: 0.01,
            },
            ..preset("tiny-topk-moe")
        };
        let tied_dense = ModelConfig {
            tie_embeddings: true,
            ..preset("tiny-dense")
        };
        for config in [
            preset("tiny-dense"),
            dual,
            preset("tiny-topk-moe"),
            swiglu,
            bare,
            tied_dense,
        ] {
            let layout = Layout::new(&config);
            let model = &layout.tensors;
            assert_eq!(model.layers.len(), config.num_layers);
            let named = named_slots(model, config.tie_embeddings);
            assert_eq!(named.len(), layout.views.len(), "{:?}", config.ffn);
            let (mut end, mut after_vector) = (0usize, false);
            for ((name, slot), view) in named.iter().zip(&layout.views) {
                assert_eq!(name, &view.name);
                assert_eq!(slot.range(), view.range(), "{name}");
                // Adjacent, except that a matrix after a vector starts at the next multiple
                // of MATRIX_ALIGN.
                let matrix = view.shape.len() > 1;
                let expected = match matrix && after_vector {
                    true => end.next_multiple_of(MATRIX_ALIGN),
                    false => end,
                };
                assert_eq!(slot.offset, expected, "a gap or overlap before {name}");
                end = slot.range().end;
                after_vector = !matrix;
            }
            assert_eq!(end, layout.len);
            if config.tie_embeddings {
                assert_eq!(model.head, model.embed);
            }
        }
    }

    /// Every matrix of the 1B presets starts 16-byte aligned as bf16 (8 elements), so the
    /// GPU's GEMMs may take cuBLASLt's fast kernels; steel-1b's 6-element gate bias used to
    /// push every later one off.
    #[test]
    fn matrices_of_the_large_presets_are_aligned() {
        for name in ["steel-1b", "dense-1b", "topk-moe-2b"] {
            let layout = Layout::new(&ModelConfig::preset(name).unwrap());
            for view in layout.views.iter().filter(|v| v.shape.len() > 1) {
                assert_eq!(view.offset % 8, 0, "{name}: {}", view.name);
            }
        }
    }
}
