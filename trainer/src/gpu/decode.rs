//! Generation on one GPU: the model's bf16 weights uploaded once, a key/value cache per
//! sequence on the device, and the cached forward pass of several sequences at once — a
//! prompt's prefill (many new tokens) and a decode step (one) alike. The new tokens of all
//! sequences are stacked into one `[n, d]` matrix for every GEMM and feed-forward block; only
//! the cache append and attention run per sequence. CPU twin: `infer::forward` (its attention
//! over the cache: `infer::attention`), which this mirrors step by step with the training
//! pass's kernels (`gpu::model`, `gpu::ffn`) and `steel_kernels::cuda::decode`.
//!
//! Precision as in training: bf16 weights and activations, fp32 residual stream and
//! accumulation; the logits come back as fp32.
//!
//! The cache: per layer, keys (after RoPE) and values, bf16 `[capacity, hkv, hd]` each,
//! position-major like the host cache. bf16 because that is what the RoPE kernel gives and
//! what the attention of the training pass reads: an fp32 cache would hold the same values in
//! twice the memory. The capacity grows by doubling (up to the context) as a sequence does.
//!
//! Shapes: `n` new tokens in all, `d` the model width, `hq`/`hkv` query/key-value heads of
//! width `hd`, `q_width = hq · hd`, `kv_width = hkv · hd`.

use crate::error::TrainError;
use crate::gpu::ffn::{self, Buffers};
use crate::gpu::qkv::{self, QkvWeights};
use crate::infer::decoder::{Cache, Decoder};
use crate::infer::forward::{Logits, check};
use crate::model::config::ModelConfig;
use crate::model::params::Layout;
use crate::model::tensors::Slot;
use std::sync::Mutex;
use steel_kernels::cuda::decode::{self, Queries, Shape};
use steel_kernels::cuda::gemm::{Operand, linear_forward};
use steel_kernels::cuda::rope::Heads;
use steel_kernels::cuda::swiglu::cast_f32_to_bf16;
use steel_kernels::cuda::{Dtype, Gpu, GpuError, GpuResult, Tensor, embedding, rmsnorm};

/// One sequence's keys and values on the GPU, and its tokens on the host.
pub struct DeviceCache {
    /// The tokens at positions `0..len`.
    tokens: Vec<u32>,
    /// Positions each layer's buffers hold (0 until the first pass).
    capacity: usize,
    /// Per layer, bf16 `[capacity, hkv, hd]`: keys (after RoPE), values. Rows past `len` are
    /// unused (a truncated cache writes over them).
    layers: Vec<(Tensor, Tensor)>,
}

impl Cache for DeviceCache {
    fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }
}

impl DeviceCache {
    /// Room for `needed` positions in every layer: buffers of twice the capacity (at least 64
    /// positions, at most the context) with the cached rows copied over.
    fn reserve(&mut self, gpu: &Gpu, config: &ModelConfig, needed: usize) -> GpuResult<()> {
        if needed <= self.capacity {
            return Ok(());
        }
        let shape = shape(config);
        let width = shape.hkv * shape.hd;
        // `needed` is within the context (checked before the pass).
        let capacity = needed
            .max(2 * self.capacity)
            .next_power_of_two()
            .max(64)
            .min(config.max_positions);
        let len = self.tokens.len();
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let k = Tensor::zeros(gpu, Dtype::Bf16, capacity * width)?;
            let v = Tensor::zeros(gpu, Dtype::Bf16, capacity * width)?;
            if let Some((old_k, old_v)) = self.layers.get(l) {
                for (old, new) in [(old_k, &k), (old_v, &v)] {
                    decode::append(gpu, &shape, old.addr(), width, shape.hd, len, new.addr(), 0)?;
                }
            }
            layers.push((k, v));
        }
        self.layers = layers;
        self.capacity = capacity;
        Ok(())
    }
}

fn shape(config: &ModelConfig) -> Shape {
    Shape {
        hq: config.num_heads,
        hkv: config.num_kv_heads,
        hd: config.head_dim,
    }
}

/// The model's bf16 weights on one GPU, for generation.
pub struct GpuDecoder {
    gpu: Gpu,
    config: ModelConfig,
    layout: Layout,
    /// bf16 `[layout.len]`, laid out like the parameters.
    weights: Tensor,
    /// One pass at a time (scoring asks from several threads): each pass's buffers and the
    /// order of its work on the one stream stay its own.
    pass: Mutex<()>,
}

impl GpuDecoder {
    /// Upload `params` (laid out by `Layout::new(config)`) as bf16.
    pub fn new(gpu: Gpu, config: &ModelConfig, params: &[f32]) -> GpuResult<GpuDecoder> {
        let layout = Layout::new(config);
        if params.len() != layout.len {
            return Err(GpuError(format!(
                "{} weights given, the model has {}",
                params.len(),
                layout.len
            )));
        }
        Ok(GpuDecoder {
            weights: Tensor::from_f32(&gpu, params, Dtype::Bf16)?,
            gpu,
            config: config.clone(),
            layout,
            pass: Mutex::new(()),
        })
    }

    /// The bf16 weight in `slot`.
    fn w(&self, slot: Slot) -> u64 {
        self.weights.at(slot.offset)
    }

    /// `x + delta` (fp32, `delta` none: `x`) and its RMSNorm with `weight` (bf16), both
    /// `[n, d]`.
    fn add_norm(
        &self,
        x: &Tensor,
        delta: Option<&Tensor>,
        weight: Slot,
        n: usize,
    ) -> GpuResult<(Tensor, Tensor)> {
        let (gpu, d) = (&self.gpu, self.config.hidden_size);
        let sum = Tensor::zeros(gpu, Dtype::F32, n * d)?;
        let normed = Tensor::zeros(gpu, Dtype::Bf16, n * d)?;
        let rstd = Tensor::zeros(gpu, Dtype::F32, n)?;
        rmsnorm::forward(
            gpu,
            x.addr(),
            delta.map_or(0, Tensor::addr),
            sum.addr(),
            self.w(weight),
            normed.addr(),
            rstd.addr(),
            n,
            d,
            self.config.rms_norm_eps,
        )?;
        Ok((sum, normed))
    }

    /// The pass, on checked input: see [`Decoder::forward`].
    fn run(
        &self,
        caches: &mut [&mut DeviceCache],
        tokens: &[&[u32]],
        logits: Logits,
    ) -> GpuResult<Vec<Vec<f32>>> {
        let (gpu, c) = (&self.gpu, &self.config);
        let (d, vocab) = (c.hidden_size, c.vocab_size);
        let shape = shape(c);
        let q_width = shape.hq * shape.hd;
        let model = &self.layout.tensors;

        // Sequence s owns rows rows[s]..rows[s + 1] of the stacked batch.
        let mut rows = vec![0];
        for new in tokens {
            rows.push(rows.last().unwrap() + new.len());
        }
        let n = rows[tokens.len()];
        for (cache, new) in caches.iter_mut().zip(tokens) {
            let needed = cache.len() + new.len();
            cache.reserve(gpu, c, needed)?;
        }
        let ids: Vec<i32> = tokens
            .iter()
            .flat_map(|t| t.iter().map(|&id| id as i32))
            .collect();
        let positions: Vec<i32> = caches
            .iter()
            .zip(tokens)
            .flat_map(|(cache, new)| (cache.len()..cache.len() + new.len()).map(|p| p as i32))
            .collect();
        let ids = Tensor::from_i32(gpu, &ids)?;
        let positions = Tensor::from_i32(gpu, &positions)?;
        // The new tokens as one row of n for the RoPE kernel: q `[hq, n, hd]`, k and v
        // `[hkv, n, hd]`, head-major.
        let heads = Heads {
            batch: 1,
            t: n,
            hq: shape.hq,
            hkv: shape.hkv,
            hd: shape.hd,
        };

        // The residual stream `[n, d]` (fp32) and the delta the next norm adds to it.
        let mut x = Tensor::zeros(gpu, Dtype::F32, n * d)?;
        embedding::forward(gpu, ids.addr(), self.w(model.embed), x.addr(), n, d)?;
        let mut delta: Option<Tensor> = None;
        let buffers = Buffers {
            params16: self.weights.addr(),
            // The forward never touches gradients.
            grads: 0,
        };
        for (l, layer) in model.layers.iter().enumerate() {
            let attn = layer.attn;
            let (sum, normed) = self.add_norm(&x, delta.as_ref(), layer.input_layernorm, n)?;
            x = sum;
            let weights = QkvWeights {
                weight: self.w(attn.q),
                bias: attn.q_bias.map_or(0, |bias| self.w(bias)),
            };
            let (q, k, v) = qkv::project(
                gpu,
                &heads,
                normed.addr(),
                &weights,
                positions.addr(),
                d,
                c.rope_theta,
            )?;
            // Each sequence: its new keys and values join its cache, its queries attend over
            // it; `attended` is token-major `[n, q_width]`.
            let attended = Tensor::zeros(gpu, Dtype::Bf16, n * q_width)?;
            for (s, cache) in caches.iter().enumerate() {
                let (from, count, start) = (rows[s], rows[s + 1] - rows[s], cache.len());
                let (cached_k, cached_v) = &cache.layers[l];
                for (new, cached) in [(&k, cached_k), (&v, cached_v)] {
                    let (src, head_stride) = (new.at(from * shape.hd), n * shape.hd);
                    let to = cached.addr();
                    decode::append(gpu, &shape, src, shape.hd, head_stride, count, to, start)?;
                }
                let queries = Queries {
                    addr: q.at(from * shape.hd),
                    n: count,
                    token_stride: shape.hd,
                    head_stride: n * shape.hd,
                };
                decode::attention(
                    gpu,
                    &shape,
                    &queries,
                    cached_k.addr(),
                    cached_v.addr(),
                    start,
                    attended.at(from * q_width),
                )?;
            }
            let attn_out = Tensor::zeros(gpu, Dtype::F32, n * d)?;
            linear_forward(
                gpu,
                attended.addr(),
                self.w(attn.o),
                Operand::f32(attn_out.addr()),
                n,
                q_width,
                d,
                0.0,
            )?;
            let ln2 = layer.post_attention_layernorm;
            let (sum, normed) = self.add_norm(&x, Some(&attn_out), ln2, n)?;
            x = sum;
            let ffn_out = Tensor::zeros(gpu, Dtype::F32, n * d)?;
            ffn::forward(
                gpu,
                c,
                &layer.ffn,
                buffers,
                normed.addr(),
                n,
                ffn_out.addr(),
            )?;
            delta = Some(ffn_out);
        }
        let (_, normed) = self.add_norm(&x, delta.as_ref(), model.norm, n)?;

        // The head, on the rows whose logits are wanted: all of them, or each sequence's
        // last, gathered by the embedding kernel (rows of a bf16 table by index) and cast
        // back to bf16 exactly.
        let (m, picked) = match logits {
            Logits::All => (n, normed),
            Logits::Last => {
                let last: Vec<i32> = rows[1..].iter().map(|&end| end as i32 - 1).collect();
                let m = last.len();
                let last = Tensor::from_i32(gpu, &last)?;
                let gathered = Tensor::zeros(gpu, Dtype::F32, m * d)?;
                embedding::forward(gpu, last.addr(), normed.addr(), gathered.addr(), m, d)?;
                let picked = Tensor::zeros(gpu, Dtype::Bf16, m * d)?;
                cast_f32_to_bf16(gpu, gathered.addr(), picked.addr(), m * d)?;
                (m, picked)
            }
        };
        let out = Tensor::zeros(gpu, Dtype::F32, m * vocab)?;
        linear_forward(
            gpu,
            picked.addr(),
            self.w(model.head),
            Operand::f32(out.addr()),
            m,
            d,
            vocab,
            0.0,
        )?;
        let all = out.to_f32(gpu)?;
        for (cache, new) in caches.iter_mut().zip(tokens) {
            cache.tokens.extend_from_slice(new);
        }
        Ok(match logits {
            Logits::Last => all.chunks(vocab).map(<[f32]>::to_vec).collect(),
            Logits::All => (0..tokens.len())
                .map(|s| all[rows[s] * vocab..rows[s + 1] * vocab].to_vec())
                .collect(),
        })
    }
}

impl Decoder for GpuDecoder {
    type Cache = DeviceCache;

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// An empty cache: its buffers come with the first pass that feeds it.
    fn new_cache(&self) -> DeviceCache {
        DeviceCache {
            tokens: Vec::new(),
            capacity: 0,
            layers: Vec::new(),
        }
    }

    fn forward(
        &self,
        caches: &mut [&mut DeviceCache],
        tokens: &[&[u32]],
        logits: Logits,
    ) -> Result<Vec<Vec<f32>>, TrainError> {
        let cached: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        check(&self.config, &cached, tokens)?;
        let _one_pass = self
            .pass
            .lock()
            .map_err(|_| TrainError::Device("an earlier GPU pass panicked".into()))?;
        Ok(self.run(caches, tokens, logits)?)
    }
}
