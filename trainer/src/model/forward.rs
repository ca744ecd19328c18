//! The model's forward pass on the CPU reference ops, for one sequence: token ids to
//! logits `[t, vocab]`. (The training forward keeps activations for the backward; this one is
//! the plain evaluation path the HuggingFace parity test runs.)

use crate::model::config::ModelConfig;
use crate::model::ffn;
use crate::model::params::Layout;
use steel_kernels::cpu::{attention, embedding, linear, rmsnorm, rope};

pub fn logits(config: &ModelConfig, layout: &Layout, params: &[f32], ids: &[u32]) -> Vec<f32> {
    let (t, d) = (ids.len(), config.hidden_size);
    let (hq, hkv, hd) = (config.num_heads, config.num_kv_heads, config.head_dim);
    let p = |name: &str| &params[layout.view(name).range()];
    let positions: Vec<u32> = (0..t as u32).collect();
    let shape = attention::Shape { t, hq, hkv, d: hd };

    let mut x = vec![0.0; t * d];
    embedding::forward(ids, p("model.embed_tokens.weight"), d, &mut x);
    let mut normed = vec![0.0; t * d];
    for l in 0..config.num_layers {
        let name = |s: &str| format!("model.layers.{l}.{s}");
        let bias = |s: &str| config.qkv_bias.then(|| p(&name(s)));
        rmsnorm::forward(
            &x,
            p(&name("input_layernorm.weight")),
            d,
            config.rms_norm_eps,
            &mut normed,
        );
        let mut q = vec![0.0; t * hq * hd];
        let mut k = vec![0.0; t * hkv * hd];
        let mut v = vec![0.0; t * hkv * hd];
        linear::forward(
            &normed,
            p(&name("self_attn.q_proj.weight")),
            bias("self_attn.q_proj.bias"),
            t,
            d,
            hq * hd,
            &mut q,
        );
        linear::forward(
            &normed,
            p(&name("self_attn.k_proj.weight")),
            bias("self_attn.k_proj.bias"),
            t,
            d,
            hkv * hd,
            &mut k,
        );
        linear::forward(
            &normed,
            p(&name("self_attn.v_proj.weight")),
            bias("self_attn.v_proj.bias"),
            t,
            d,
            hkv * hd,
            &mut v,
        );
        rope::forward(&mut q, &positions, hq, hd, config.rope_theta);
        rope::forward(&mut k, &positions, hkv, hd, config.rope_theta);
        let mut attended = vec![0.0; t * hq * hd];
        let mut probs = vec![0.0; hq * t * t];
        attention::forward(&q, &k, &v, &shape, &mut attended, &mut probs);
        let mut out = vec![0.0; t * d];
        linear::forward(
            &attended,
            p(&name("self_attn.o_proj.weight")),
            None,
            t,
            hq * hd,
            d,
            &mut out,
        );
        x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);

        rmsnorm::forward(
            &x,
            p(&name("post_attention_layernorm.weight")),
            d,
            config.rms_norm_eps,
            &mut normed,
        );
        let ffn = ffn::forward(config, layout, params, l, &normed);
        x.iter_mut().zip(&ffn.out).for_each(|(a, b)| *a += b);
    }
    rmsnorm::forward(
        &x,
        p("model.norm.weight"),
        d,
        config.rms_norm_eps,
        &mut normed,
    );
    let head = if config.tie_embeddings {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    let mut logits = vec![0.0; t * config.vocab_size];
    linear::forward(&normed, p(head), None, t, d, config.vocab_size, &mut logits);
    logits
}
