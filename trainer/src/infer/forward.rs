//! The key/value-cached forward pass of several sequences at once: each sequence brings its
//! cache (the positions it has seen) and its new tokens (a whole prompt to prefill, or the one
//! token just sampled), and gets its next-token logits. The new tokens of all sequences are
//! stacked into one `[n, d]` matrix, so every projection and feed-forward block reads its
//! weights once per step for the whole batch; only attention is per sequence, over its own
//! cache. RoPE turns each token by its own position (`cache.len() + i`). It is the CPU twin
//! of the GPU decoder (`gpu::decode`); both are an `infer::decoder::Decoder`.
//!
//! Shapes: `n` new tokens in all, `d` the model width, `hq`/`hkv` query/key-value heads of
//! width `hd`, `q_width = hq · hd`, `kv_width = hkv · hd`.

use crate::checkpoint::Model;
use crate::error::TrainError;
use crate::infer::attention::{self, Heads};
use crate::infer::cache::KvCache;
use crate::model::config::ModelConfig;
use crate::model::ffn;
use crate::model::tensors::Slot;
use steel_kernels::cpu::{embedding, linear, rmsnorm, rope};

/// Which positions' logits a pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Each sequence's last new token only (generation): `[vocab]` per sequence.
    Last,
    /// Every new token (tests, scoring): `[t, vocab]` per sequence.
    All,
}

fn add(into: &mut [f32], from: &[f32]) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

/// Refuse what a pass cannot run, before any cache changes (or any device work): sequence `s`
/// has `cached[s]` positions in its cache and is fed `tokens[s]`.
pub(crate) fn check(
    config: &ModelConfig,
    cached: &[usize],
    tokens: &[&[u32]],
) -> Result<(), TrainError> {
    if cached.len() != tokens.len() {
        return Err(TrainError::Data(format!(
            "{} caches for {} sequences",
            cached.len(),
            tokens.len()
        )));
    }
    for (s, (&len, new)) in cached.iter().zip(tokens).enumerate() {
        if new.is_empty() {
            return Err(TrainError::Data(format!("sequence {s} has no new token")));
        }
        if let Some(&id) = new.iter().find(|&&id| id as usize >= config.vocab_size) {
            return Err(TrainError::Data(format!(
                "token id {id} is outside the model's vocabulary of {}",
                config.vocab_size
            )));
        }
        if len + new.len() > config.max_positions {
            return Err(TrainError::Data(format!(
                "sequence {s}: {} cached and {} new tokens exceed the model's context of {} \
                 positions",
                len,
                new.len(),
                config.max_positions
            )));
        }
    }
    Ok(())
}

/// Feed `tokens[s]` to sequence `s` (appending them to `caches[s]`) and return its logits:
/// `[vocab]` for its last new token (`Logits::Last`) or `[t_s, vocab]` for all of them.
pub fn forward(
    model: &Model,
    caches: &mut [&mut KvCache],
    tokens: &[&[u32]],
    logits: Logits,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let config = &model.config;
    let cached: Vec<usize> = caches.iter().map(|c| c.len()).collect();
    check(config, &cached, tokens)?;
    let (d, vocab, eps) = (config.hidden_size, config.vocab_size, config.rms_norm_eps);
    let heads = Heads {
        hq: config.num_heads,
        hkv: config.num_kv_heads,
        hd: config.head_dim,
    };
    let (q_width, kv_width) = (heads.hq * heads.hd, heads.hkv * heads.hd);
    let model_tensors = &model.layout.tensors;
    let params = &model.params[..];
    let p = |slot: Slot| &params[slot.range()];

    // Sequence s owns rows rows[s]..rows[s + 1] of the stacked batch.
    let mut rows = vec![0];
    for new in tokens {
        rows.push(rows.last().unwrap() + new.len());
    }
    let n = rows[tokens.len()];
    let ids: Vec<u32> = tokens.concat();
    let positions: Vec<u32> = caches
        .iter()
        .zip(tokens)
        .flat_map(|(cache, new)| (cache.len()..cache.len() + new.len()).map(|p| p as u32))
        .collect();

    // The residual stream `[n, d]`.
    let mut x = vec![0.0; n * d];
    embedding::forward(&ids, p(model_tensors.embed), d, &mut x);
    let mut normed = vec![0.0; n * d];
    for (l, layer) in model_tensors.layers.iter().enumerate() {
        let attn = layer.attn;
        rmsnorm::forward(&x, p(layer.input_layernorm), d, eps, &mut normed);
        // q `[n, q_width]`, k and v `[n, kv_width]`, with the projections' biases.
        let project = |weight: Slot, bias: Option<Slot>, width: usize| {
            let mut out = vec![0.0; n * width];
            linear::forward(&normed, p(weight), bias.map(p), n, d, width, &mut out);
            out
        };
        let mut q = project(attn.q, attn.q_bias, q_width);
        let mut k = project(attn.k, attn.k_bias, kv_width);
        let v = project(attn.v, attn.v_bias, kv_width);
        rope::forward(&mut q, &positions, heads.hq, heads.hd, config.rope_theta);
        rope::forward(&mut k, &positions, heads.hkv, heads.hd, config.rope_theta);
        // Each sequence: its new keys and values join its cache, its queries attend over it.
        let mut attended = vec![0.0; n * q_width];
        for (s, cache) in caches.iter_mut().enumerate() {
            let (from, to) = (rows[s], rows[s + 1]);
            let start = cache.len();
            cache.append(
                l,
                &k[from * kv_width..to * kv_width],
                &v[from * kv_width..to * kv_width],
            );
            let cached = cache.layer(l);
            attention::forward(
                &q[from * q_width..to * q_width],
                &cached.k,
                &cached.v,
                start,
                &heads,
                &mut attended[from * q_width..to * q_width],
            );
        }
        let mut out = vec![0.0; n * d];
        linear::forward(&attended, p(attn.o), None, n, q_width, d, &mut out);
        add(&mut x, &out);
        rmsnorm::forward(&x, p(layer.post_attention_layernorm), d, eps, &mut normed);
        add(
            &mut x,
            ffn::forward(config, &layer.ffn, params, &normed).out(),
        );
    }
    for (cache, new) in caches.iter_mut().zip(tokens) {
        cache.push_tokens(new);
    }

    // The final norm and the head, on the rows whose logits are wanted.
    let wanted: Vec<usize> = match logits {
        Logits::Last => rows[1..].iter().map(|&end| end - 1).collect(),
        Logits::All => (0..n).collect(),
    };
    let picked: Vec<f32> = wanted
        .iter()
        .flat_map(|&row| x[row * d..(row + 1) * d].iter().copied())
        .collect();
    let m = wanted.len();
    let mut final_normed = vec![0.0; m * d];
    rmsnorm::forward(&picked, p(model_tensors.norm), d, eps, &mut final_normed);
    let mut all = vec![0.0; m * vocab];
    linear::forward(
        &final_normed,
        p(model_tensors.head),
        None,
        m,
        d,
        vocab,
        &mut all,
    );
    Ok(match logits {
        Logits::Last => all.chunks(vocab).map(<[f32]>::to_vec).collect(),
        Logits::All => (0..tokens.len())
            .map(|s| all[rows[s] * vocab..rows[s + 1] * vocab].to_vec())
            .collect(),
    })
}

/// One sequence: feed `tokens` to `cache` and return the last token's logits `[vocab]`.
pub fn next_logits(
    model: &Model,
    cache: &mut KvCache,
    tokens: &[u32],
) -> Result<Vec<f32>, TrainError> {
    let mut out = forward(model, &mut [cache], &[tokens], Logits::Last)?;
    Ok(out.pop().expect("one sequence"))
}
