//! `GpuModel`: the whole model's weights, gradients and AdamW state on one GPU, its forward
//! (keeping what the backward reads), backward and optimizer step. Mirrors `model::pass`
//! layer by layer; a `Batch` of `B` rows of `T` tokens goes through together (`n = B·T`
//! tokens), each row's documents attending only within themselves.

use crate::batch::{Batch, LossScale};
use crate::device::Attention;
use crate::gpu::ffn::{self, Buffers, FfnSaved};
use crate::gpu::qkv::{self, QkvWeights};
use crate::model::config::{Ffn, ModelConfig};
use crate::model::params::Layout;
use crate::model::tensors::Slot;
use crate::optim::adamw::{AdamWConfig, is_decayed};
use steel_kernels::cpu::topk;
use steel_kernels::cuda::attention::{self, flash_supported};
use steel_kernels::cuda::gemm::{
    Operand, linear_backward_input, linear_backward_weight, linear_forward,
};
use steel_kernels::cuda::reduce::{self, add_column_sums};
use steel_kernels::cuda::rope::{self, Heads};
use steel_kernels::cuda::swiglu::cast_f32_to_bf16;
use steel_kernels::cuda::{
    Dtype, Gpu, GpuError, GpuResult, Tensor, adamw, cross_entropy, embedding, rmsnorm,
};

pub struct GpuModel {
    pub gpu: Gpu,
    pub config: ModelConfig,
    pub layout: Layout,
    pub attention: Attention,
    /// fp32 master weights, their bf16 copy, fp32 gradients and moments: `[layout.len]`.
    params: Tensor,
    params16: Tensor,
    grads: Tensor,
    m: Tensor,
    v: Tensor,
    /// i64 `[start, end)` pairs of the elements AdamW does not decay.
    no_decay: Tensor,
    /// fp32 scalars: the global gradient norm and the last loss.
    norm: Tensor,
    loss: Tensor,
}

enum AttentionSaved {
    Flash { lse: Tensor },
    Cublas { probs: Tensor },
}

/// A fused residual add + RMSNorm's saved tensors: the fp32 sum `x: [n, d]` (the residual
/// stream from here on), `rstd: [n]` and the bf16 output `normed: [n, d]`.
struct Norm {
    x: Tensor,
    rstd: Tensor,
    normed: Tensor,
}

struct LayerSaved {
    /// `x_in` (the layer's input) and its normalisation.
    norm1: Norm,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attention: AttentionSaved,
    attended: Tensor,
    /// `x_mid` (after attention) and its normalisation.
    norm2: Norm,
    ffn: FfnSaved,
}

/// A batch on the device, `[B·T]` each: i32 `ids`, `targets`, `doc_start` (row-relative) and
/// `positions` (within the document), fp32 loss `weights`.
struct Inputs {
    ids: Tensor,
    targets: Tensor,
    weights: Tensor,
    doc_start: Tensor,
    positions: Tensor,
}

struct Forward {
    heads: Heads,
    inputs: Inputs,
    layers: Vec<LayerSaved>,
    norm_final: Norm,
    ce: cross_entropy::Saved,
}

/// The sorted no-decay ranges of a layout, merged where adjacent.
fn no_decay_ranges(layout: &Layout) -> Vec<i64> {
    let mut ranges: Vec<i64> = Vec::new();
    for view in layout.views.iter().filter(|v| !is_decayed(&v.name)) {
        let (start, end) = (view.offset as i64, (view.offset + view.len()) as i64);
        match ranges.last_mut() {
            Some(last) if *last == start => *last = end,
            _ => ranges.extend([start, end]),
        }
    }
    ranges
}

impl GpuModel {
    /// Upload `params` (laid out by `Layout::new(config)`); moments start at zero.
    pub fn new(
        gpu: Gpu,
        config: &ModelConfig,
        params: &[f32],
        attention: Attention,
    ) -> GpuResult<GpuModel> {
        let layout = Layout::new(config);
        if params.len() != layout.len {
            return Err(GpuError(format!(
                "{} weights given, the model has {}",
                params.len(),
                layout.len
            )));
        }
        if attention == Attention::Flash && !flash_supported(config.head_dim) {
            return Err(GpuError(format!(
                "no flash-attention kernel for head size {}; use --attention cublas",
                config.head_dim
            )));
        }
        let len = layout.len;
        let ranges = no_decay_ranges(&layout);
        Ok(GpuModel {
            params: Tensor::from_f32(&gpu, params, Dtype::F32)?,
            params16: Tensor::from_f32(&gpu, params, Dtype::Bf16)?,
            grads: Tensor::zeros(&gpu, Dtype::F32, len)?,
            m: Tensor::zeros(&gpu, Dtype::F32, len)?,
            v: Tensor::zeros(&gpu, Dtype::F32, len)?,
            no_decay: Tensor::from_i64(&gpu, &ranges)?,
            norm: Tensor::zeros(&gpu, Dtype::F32, 1)?,
            loss: Tensor::zeros(&gpu, Dtype::F32, 1)?,
            gpu,
            config: config.clone(),
            layout,
            attention,
        })
    }

    fn buffers(&self) -> Buffers {
        Buffers {
            params16: self.params16.addr(),
            grads: self.grads.addr(),
        }
    }

    /// The bf16 weight in `slot`.
    fn w(&self, slot: Slot) -> u64 {
        self.params16.at(slot.offset)
    }

    /// The fp32 gradient of `slot`.
    fn g(&self, slot: Slot) -> u64 {
        self.grads.at(slot.offset)
    }

    pub fn params(&self) -> GpuResult<Vec<f32>> {
        self.params.to_f32(&self.gpu)
    }

    pub fn grads(&self) -> GpuResult<Vec<f32>> {
        self.grads.to_f32(&self.gpu)
    }

    /// AdamW's first and second moments.
    pub fn moments(&self) -> GpuResult<(Vec<f32>, Vec<f32>)> {
        Ok((self.m.to_f32(&self.gpu)?, self.v.to_f32(&self.gpu)?))
    }

    pub fn set_moments(&mut self, m: &[f32], v: &[f32]) -> GpuResult<()> {
        self.m.write_f32(&self.gpu, m)?;
        self.v.write_f32(&self.gpu, v)
    }

    pub fn zero_grads(&mut self) -> GpuResult<()> {
        self.grads.zero(&self.gpu)
    }

    /// `x = resid + delta` (`delta` 0: none) and its RMSNorm with weight `weight`.
    fn norm_forward(&self, resid: u64, delta: u64, weight: Slot, n: usize) -> GpuResult<Norm> {
        let (gpu, d) = (&self.gpu, self.config.hidden_size);
        let norm = Norm {
            x: Tensor::zeros(gpu, Dtype::F32, n * d)?,
            rstd: Tensor::zeros(gpu, Dtype::F32, n)?,
            normed: Tensor::zeros(gpu, Dtype::Bf16, n * d)?,
        };
        let (x, normed, rstd) = (norm.x.addr(), norm.normed.addr(), norm.rstd.addr());
        let eps = self.config.rms_norm_eps;
        rmsnorm::forward(
            gpu,
            resid,
            delta,
            x,
            self.w(weight),
            normed,
            rstd,
            n,
            d,
            eps,
        )?;
        Ok(norm)
    }

    /// Adds the norm's input gradient (from bf16 `dnormed`) into the residual gradient `dx`
    /// and its weight gradient into `weight`'s.
    fn norm_backward(
        &self,
        norm: &Norm,
        weight: Slot,
        dnormed: &Tensor,
        dx: &Tensor,
        n: usize,
    ) -> GpuResult<()> {
        let (w, g) = (self.w(weight), self.g(weight));
        let (x, rstd) = (norm.x.addr(), norm.rstd.addr());
        let d = self.config.hidden_size;
        rmsnorm::backward(&self.gpu, dnormed.addr(), x, w, rstd, dx.addr(), g, n, d)
    }

    /// Checks `batch` (ids and targets in the vocabulary, document starts a batch can have)
    /// and uploads it.
    fn upload(&self, batch: &Batch) -> GpuResult<(Heads, Inputs)> {
        let c = &self.config;
        let (t, n) = (batch.t, batch.ids.len());
        let rows = batch.rows();
        if rows == 0 || rows * t != n {
            return Err(GpuError(format!(
                "{n} tokens do not make whole rows of {t}"
            )));
        }
        if [
            batch.targets.len(),
            batch.weights.len(),
            batch.doc_start.len(),
        ] != [n; 3]
        {
            return Err(GpuError(
                "a batch's ids, targets, weights and document starts differ in length".into(),
            ));
        }
        if let Some(bad) = batch
            .ids
            .iter()
            .chain(&batch.targets)
            .find(|&&id| id as usize >= c.vocab_size)
        {
            return Err(GpuError(format!(
                "token id {bad} is outside the model's vocabulary of {}",
                c.vocab_size
            )));
        }
        // What the attention kernels rely on: a token's document starts at or before it, and
        // starts never decrease along a row (documents are contiguous).
        let contiguous = batch.doc_start.chunks(t).all(|row| {
            row.iter().enumerate().all(|(i, &s)| s as usize <= i)
                && row.windows(2).all(|w| w[0] <= w[1])
        });
        if !contiguous {
            return Err(GpuError(
                "document starts must be at or before each token and never decrease in a row"
                    .into(),
            ));
        }
        let heads = Heads {
            batch: rows,
            t,
            hq: c.num_heads,
            hkv: c.num_kv_heads,
            hd: c.head_dim,
        };
        let gpu = &self.gpu;
        let as_i32 = |v: &[u32]| v.iter().map(|&x| x as i32).collect::<Vec<_>>();
        let inputs = Inputs {
            ids: Tensor::from_i32(gpu, &as_i32(&batch.ids))?,
            targets: Tensor::from_i32(gpu, &as_i32(&batch.targets))?,
            weights: Tensor::from_f32(gpu, &batch.weights, Dtype::F32)?,
            doc_start: Tensor::from_i32(gpu, &as_i32(&batch.doc_start))?,
            positions: Tensor::from_i32(gpu, &as_i32(&batch.positions()))?,
        };
        Ok((heads, inputs))
    }

    /// The forward over `batch`, keeping what the backward reads; its loss
    /// `Σ_i w_i · ce_i / norm` lands in `self.loss`.
    fn forward(&self, batch: &Batch, norm: f32) -> GpuResult<Forward> {
        let gpu = &self.gpu;
        let c = &self.config;
        let (heads, inputs) = self.upload(batch)?;
        let (n, d) = (heads.tokens(), c.hidden_size);
        let model = &self.layout.tensors;
        let embedded = Tensor::zeros(gpu, Dtype::F32, n * d)?;
        embedding::forward(
            gpu,
            inputs.ids.addr(),
            self.w(model.embed),
            embedded.addr(),
            n,
            d,
        )?;
        let q_width = heads.hq * heads.hd;
        let mut layers: Vec<LayerSaved> = Vec::with_capacity(c.num_layers);
        // The residual stream entering the next norm: x (fp32) plus a pending delta.
        let mut delta: Option<Tensor> = None;
        for tensors in &model.layers {
            let attn = tensors.attn;
            let resid = layers.last().map_or(embedded.addr(), |s| s.norm2.x.addr());
            let delta_addr = delta.as_ref().map_or(0, |t| t.addr());
            let norm1 = self.norm_forward(resid, delta_addr, tensors.input_layernorm, n)?;
            let weights = QkvWeights {
                weight: self.w(attn.q),
                bias: attn.q_bias.map_or(0, |bias| self.w(bias)),
            };
            let (q, k, v) = qkv::project(
                gpu,
                &heads,
                norm1.normed.addr(),
                &weights,
                inputs.positions.addr(),
                d,
                c.rope_theta,
            )?;
            let attended = Tensor::zeros(gpu, Dtype::Bf16, n * q_width)?;
            let saved_attention = match self.attention {
                Attention::Flash => {
                    let lse = Tensor::zeros(gpu, Dtype::F32, heads.batch * heads.hq * heads.t)?;
                    attention::flash_forward(
                        gpu,
                        &heads,
                        q.addr(),
                        k.addr(),
                        v.addr(),
                        inputs.doc_start.addr(),
                        attended.addr(),
                        lse.addr(),
                    )?;
                    AttentionSaved::Flash { lse }
                }
                Attention::Cublas => {
                    let scores = heads.batch * heads.hq * heads.t * heads.t;
                    let s = Tensor::zeros(gpu, Dtype::F32, scores)?;
                    let probs = Tensor::zeros(gpu, Dtype::Bf16, scores)?;
                    attention::cublas_forward(
                        gpu,
                        &heads,
                        q.addr(),
                        k.addr(),
                        v.addr(),
                        inputs.doc_start.addr(),
                        attended.addr(),
                        &s,
                        &probs,
                    )?;
                    AttentionSaved::Cublas { probs }
                }
            };
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
            let ln2 = tensors.post_attention_layernorm;
            let norm2 = self.norm_forward(norm1.x.addr(), attn_out.addr(), ln2, n)?;
            let ffn_out = Tensor::zeros(gpu, Dtype::F32, n * d)?;
            let ffn = ffn::forward(
                gpu,
                c,
                &tensors.ffn,
                self.buffers(),
                norm2.normed.addr(),
                n,
                ffn_out.addr(),
            )?;
            delta = Some(ffn_out);
            layers.push(LayerSaved {
                norm1,
                q,
                k,
                v,
                attention: saved_attention,
                attended,
                norm2,
                ffn,
            });
        }
        let resid = layers.last().map_or(embedded.addr(), |s| s.norm2.x.addr());
        let delta_addr = delta.as_ref().map_or(0, |t| t.addr());
        let norm_final = self.norm_forward(resid, delta_addr, model.norm, n)?;
        let ce = cross_entropy::forward(
            gpu,
            norm_final.normed.addr(),
            self.w(model.head),
            inputs.targets.addr(),
            inputs.weights.addr(),
            n,
            d,
            c.vocab_size,
            norm,
            self.loss.addr(),
        )?;
        Ok(Forward {
            heads,
            inputs,
            layers,
            norm_final,
            ce,
        })
    }

    /// The loss `Σ_i w_i · ce_i / scale.norm + scale.aux · load_balance` of `batch`, no
    /// gradient.
    pub fn loss(&self, batch: &Batch, scale: LossScale) -> GpuResult<f32> {
        let f = self.forward(batch, scale.norm)?;
        let (aux_loss, _) = self.load_balance(&f, scale.aux)?;
        Ok(self.loss.to_f32(&self.gpu)?[0] + aux_loss)
    }

    /// Each row's weighted sum of cross-entropies `Σ_i w_i · ce_i` (no load-balancing loss,
    /// no gradient), summed in f64 in position order. CPU twin: `pass::row_loss_sum`.
    pub fn row_loss_sums(&self, batch: &Batch) -> GpuResult<Vec<f64>> {
        let f = self.forward(batch, 1.0)?;
        let terms = f.ce.terms.to_f32(&self.gpu)?;
        Ok(terms
            .chunks(batch.t)
            .map(|row| row.iter().map(|&x| x as f64).sum())
            .collect())
    }

    /// The load-balancing loss, per row over all layers' router rows as the CPU pass computes
    /// it, averaged over the rows, times `aux`; and its gradient per layer (`[n, E]`, on the
    /// host). `(0, [])` when `aux` is 0 or the FFN has no top-k router.
    fn load_balance(&self, f: &Forward, aux: f32) -> GpuResult<(f32, Vec<Vec<f32>>)> {
        let Ffn::TopkMoe {
            n_experts,
            aux_coefficient,
            ..
        } = self.config.ffn
        else {
            return Ok((0.0, Vec::new()));
        };
        if aux == 0.0 {
            return Ok((0.0, Vec::new()));
        }
        let (batch, t, e) = (f.heads.batch, f.heads.t, n_experts);
        let mut probs = Vec::new();
        let mut chosen = Vec::new();
        for layer in &f.layers {
            let missing = || GpuError("a top-k layer kept no routing".into());
            probs.push(
                layer
                    .ffn
                    .probs
                    .as_ref()
                    .ok_or_else(missing)?
                    .to_f32(&self.gpu)?,
            );
            let ids = layer
                .ffn
                .chosen
                .as_ref()
                .ok_or_else(missing)?
                .to_i32(&self.gpu)?;
            chosen.push(ids.into_iter().map(|x| x as u32).collect::<Vec<_>>());
        }
        let k = chosen[0].len() / (batch * t);
        let mut grads = vec![vec![0.0f32; batch * t * e]; f.layers.len()];
        let mut total = 0.0f32;
        for b in 0..batch {
            let rows = |all: &Vec<Vec<f32>>| -> Vec<f32> {
                all.iter()
                    .flat_map(|p| p[b * t * e..(b + 1) * t * e].iter().copied())
                    .collect()
            };
            let stacked_probs = rows(&probs);
            let stacked_chosen: Vec<u32> = chosen
                .iter()
                .flat_map(|c| c[b * t * k..(b + 1) * t * k].iter().copied())
                .collect();
            let mut dprobs = vec![0.0; stacked_probs.len()];
            total += topk::load_balance(
                &stacked_probs,
                &stacked_chosen,
                e,
                aux_coefficient,
                &mut dprobs,
            );
            for (l, grad) in grads.iter_mut().enumerate() {
                let from = &dprobs[l * t * e..(l + 1) * t * e];
                for (g, v) in grad[b * t * e..(b + 1) * t * e].iter_mut().zip(from) {
                    *g = v * aux / batch as f32;
                }
            }
        }
        Ok((total * aux / batch as f32, grads))
    }

    /// The loss `Σ_i w_i · ce_i / scale.norm + scale.aux · load_balance` of `batch`; ADDS its
    /// gradient to the gradient buffer (so micro-batches accumulate between
    /// [`GpuModel::zero_grads`] calls). CPU twin: `pass::loss_and_grad`, row by row.
    pub fn loss_and_grad(&mut self, batch: &Batch, scale: LossScale) -> GpuResult<f32> {
        let f = self.forward(batch, scale.norm)?;
        let (aux_loss, aux_grads) = self.load_balance(&f, scale.aux)?;
        let aux_grads = aux_grads
            .iter()
            .map(|g| Tensor::from_f32(&self.gpu, g, Dtype::F32))
            .collect::<GpuResult<Vec<_>>>()?;
        self.backward(&f, &batch.ids, scale.norm, &aux_grads)?;
        Ok(self.loss.to_f32(&self.gpu)?[0] + aux_loss)
    }

    fn backward(&self, f: &Forward, ids: &[u32], norm: f32, aux: &[Tensor]) -> GpuResult<()> {
        let gpu = &self.gpu;
        let c = &self.config;
        let (n, d) = (ids.len(), c.hidden_size);
        let heads = f.heads;
        let model = &self.layout.tensors;
        let (q_width, kv_width) = (heads.hq * heads.hd, heads.hkv * heads.hd);
        // The head and the final norm.
        let dnormed32 = Tensor::zeros(gpu, Dtype::F32, n * d)?;
        cross_entropy::backward(
            gpu,
            &f.ce,
            f.norm_final.normed.addr(),
            self.w(model.head),
            f.inputs.targets.addr(),
            f.inputs.weights.addr(),
            n,
            d,
            c.vocab_size,
            norm,
            dnormed32.addr(),
            self.g(model.head),
        )?;
        let dnormed = Tensor::zeros(gpu, Dtype::Bf16, n * d)?;
        cast_f32_to_bf16(gpu, dnormed32.addr(), dnormed.addr(), n * d)?;
        // dx: the fp32 gradient of the residual stream, flowing back through the layers.
        let dx = Tensor::zeros(gpu, Dtype::F32, n * d)?;
        self.norm_backward(&f.norm_final, model.norm, &dnormed, &dx, n)?;
        let dx16 = Tensor::zeros(gpu, Dtype::Bf16, n * d)?;
        for ((l, a), tensors) in f.layers.iter().enumerate().zip(&model.layers).rev() {
            let attn = tensors.attn;
            // Feed-forward: x_next = x_mid + ffn(norm(x_mid)).
            let aux_l = aux.get(l).map_or(0, |t| t.addr());
            ffn::backward(
                gpu,
                c,
                &tensors.ffn,
                self.buffers(),
                a.norm2.normed.addr(),
                n,
                &a.ffn,
                dx.addr(),
                aux_l,
                dnormed32.addr(),
            )?;
            cast_f32_to_bf16(gpu, dnormed32.addr(), dnormed.addr(), n * d)?;
            let ln2 = tensors.post_attention_layernorm;
            self.norm_backward(&a.norm2, ln2, &dnormed, &dx, n)?;
            // Attention: x_mid = x_in + o(attn(rope(qkv(norm(x_in))))).
            cast_f32_to_bf16(gpu, dx.addr(), dx16.addr(), n * d)?;
            let dattended = Tensor::zeros(gpu, Dtype::Bf16, n * q_width)?;
            linear_backward_input(
                gpu,
                dx16.addr(),
                self.w(attn.o),
                Operand::bf16(dattended.addr()),
                n,
                q_width,
                d,
                0.0,
            )?;
            linear_backward_weight(
                gpu,
                dx16.addr(),
                a.attended.addr(),
                self.g(attn.o),
                n,
                q_width,
                d,
            )?;
            let dq = Tensor::zeros(gpu, Dtype::Bf16, n * q_width)?;
            let dk = Tensor::zeros(gpu, Dtype::Bf16, n * kv_width)?;
            let dv = Tensor::zeros(gpu, Dtype::Bf16, n * kv_width)?;
            match &a.attention {
                AttentionSaved::Flash { lse } => attention::flash_backward(
                    gpu,
                    &heads,
                    a.q.addr(),
                    a.k.addr(),
                    a.v.addr(),
                    f.inputs.doc_start.addr(),
                    a.attended.addr(),
                    lse.addr(),
                    dattended.addr(),
                    dq.addr(),
                    dk.addr(),
                    dv.addr(),
                )?,
                AttentionSaved::Cublas { probs } => {
                    let s = Tensor::zeros(gpu, Dtype::F32, probs.len)?;
                    attention::cublas_backward(
                        gpu,
                        &heads,
                        a.q.addr(),
                        a.k.addr(),
                        a.v.addr(),
                        probs,
                        dattended.addr(),
                        dq.addr(),
                        dk.addr(),
                        dv.addr(),
                        &s,
                    )?
                }
            }
            let width = heads.qkv_width();
            let dqkv = Tensor::zeros(gpu, Dtype::Bf16, n * width)?;
            rope::backward(
                gpu,
                &heads,
                dq.addr(),
                dk.addr(),
                dv.addr(),
                f.inputs.positions.addr(),
                dqkv.addr(),
                c.rope_theta,
            )?;
            if let Some(bias) = attn.q_bias {
                add_column_sums(gpu, dqkv.addr(), n, width, self.g(bias))?;
            }
            linear_backward_weight(
                gpu,
                dqkv.addr(),
                a.norm1.normed.addr(),
                self.g(attn.q),
                n,
                d,
                width,
            )?;
            linear_backward_input(
                gpu,
                dqkv.addr(),
                self.w(attn.q),
                Operand::bf16(dnormed.addr()),
                n,
                d,
                width,
                0.0,
            )?;
            self.norm_backward(&a.norm1, tensors.input_layernorm, &dnormed, &dx, n)?;
        }
        let grouping = embedding::group(ids);
        embedding::backward(gpu, &grouping, dx.addr(), self.g(model.embed), d)
    }

    /// Replaces the accumulated gradients by their sum over the GPUs of `nccl` (data
    /// parallelism: each rank's gradients are already its share of the global mean).
    pub fn all_reduce_grads(&mut self, nccl: &steel_kernels::cuda::nccl::Nccl) -> GpuResult<()> {
        nccl.all_reduce_sum(&mut self.grads)
    }

    /// The global norm of the accumulated gradients times `grad_scale` (kept on the device for
    /// [`GpuModel::update`]'s clipping, and returned), so the caller can look at it — a
    /// non-finite one must not reach the weights — before updating.
    pub fn grad_norm(&mut self, grad_scale: f32) -> GpuResult<f32> {
        reduce::norm(
            &self.gpu,
            self.grads.addr(),
            self.grads.len,
            grad_scale,
            self.norm.addr(),
        )?;
        Ok(self.norm.to_f32(&self.gpu)?[0])
    }

    /// One AdamW step on the accumulated gradients times `grad_scale` (`step` is the 1-based
    /// step number), clipped to a global norm of `max_norm` by the norm the last
    /// [`GpuModel::grad_norm`] computed for the same gradients and `grad_scale`.
    pub fn update(
        &mut self,
        adamw_config: &AdamWConfig,
        lr: f32,
        max_norm: f32,
        step: u64,
        grad_scale: f32,
    ) -> GpuResult<()> {
        let gpu = &self.gpu;
        adamw::step(
            gpu,
            &adamw::State {
                param: &self.params,
                m: &self.m,
                v: &self.v,
                grad: &self.grads,
                param16: &self.params16,
                no_decay: &self.no_decay,
                norm: &self.norm,
            },
            &adamw::Step {
                lr,
                beta1: adamw_config.beta1,
                beta2: adamw_config.beta2,
                eps: adamw_config.eps,
                weight_decay: adamw_config.weight_decay,
                step,
                grad_scale,
                max_norm,
            },
        )
    }
}
