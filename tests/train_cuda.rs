//! The GPU model against the CPU reference (its specification): whole-model loss and
//! gradients on the tiny configs of every FFN kind and both attention methods, for plain
//! pretraining rows and for rows packing documents with positions left out of the loss; a
//! packed row against its documents run alone and two micro-batches against one batch on the
//! GPU; the fused AdamW against the CPU AdamW, a 300-step run whose loss curve tracks the CPU
//! run's, an exact resume on the GPU, and the NCCL path with one rank against the plain one.
//!
//! They need a GPU: ignored by a plain `cargo test`, run by `scripts/gpu-check.sh`.
#![cfg(feature = "cuda")]

mod common;

use common::demo_chunks;
use std::path::Path;
use steel_kernels::cuda::{Dtype, Gpu, Tensor, adamw};
use steel_trainer::batch::{Batch, LossScale};
use steel_trainer::data::DataSource;
use steel_trainer::device::{Attention, Device};
use steel_trainer::gpu::GpuModel;
use steel_trainer::model::config::Ffn;
use steel_trainer::model::config::ModelConfig;
use steel_trainer::model::params::Layout;
use steel_trainer::model::pass::{forward, loss_and_grad, row_loss_sum};
use steel_trainer::optim::adamw::{AdamW, AdamWConfig, clip_global_norm};
use steel_trainer::optim::schedule::Schedule;
use steel_trainer::train::{TrainOptions, init_params, train};

fn gpu() -> Gpu {
    Gpu::open(0).expect("these tests need a GPU (run them on the GPU machine)")
}

fn tokens(seed: u64, len: usize, vocab: usize) -> Vec<u32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

const PRESETS: [&str; 3] = ["tiny-dense", "tiny-softmax-moe", "tiny-topk-moe"];
const ATTENTIONS: [Attention; 2] = [Attention::Flash, Attention::Cublas];

/// The tiny model `preset` with weights larger than the training init, so every path carries
/// signal.
fn setup(preset: &str) -> (ModelConfig, Layout, Vec<f32>) {
    let config = ModelConfig::preset(preset).unwrap();
    let layout = Layout::new(&config);
    let params: Vec<f32> = init_params(&layout, 5).iter().map(|w| w * 4.0).collect();
    (config, layout, params)
}

/// What the CPU reference gives for a GPU pass over `batch` with `scale`: `loss_and_grad`
/// summed over the rows, each row's load-balancing loss weighted by `scale.aux / rows` (the
/// GPU's is the mean over the rows, times `scale.aux`).
fn cpu_pass(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    batch: &Batch,
    scale: LossScale,
) -> (f32, Vec<f32>) {
    let row_scale = LossScale {
        norm: scale.norm,
        aux: scale.aux / batch.rows() as f32,
    };
    let mut grads = vec![0.0; layout.len];
    let loss = batch
        .iter()
        .map(|row| loss_and_grad(config, layout, params, row, row_scale, &mut grads))
        .sum();
    (loss, grads)
}

/// The GPU's loss over `batch` and the gradients it leaves (from zero).
fn gpu_pass(model: &mut GpuModel, batch: &Batch, scale: LossScale) -> (f32, Vec<f32>) {
    model.zero_grads().unwrap();
    let loss = model.loss_and_grad(batch, scale).unwrap();
    (loss, model.grads().unwrap())
}

/// Loss within 1%; every parameter tensor's gradient within 3% in norm and pointing the same
/// way (cosine > 0.99), the bf16 compute's error budget.
fn assert_matches_cpu(what: &str, layout: &Layout, gpu: &(f32, Vec<f32>), cpu: &(f32, Vec<f32>)) {
    let ((loss, gpu_grads), (cpu_loss, cpu_grads)) = (gpu, cpu);
    assert!(
        (loss - cpu_loss).abs() <= 1e-2 * cpu_loss.abs(),
        "{what}: loss {loss} vs CPU {cpu_loss}"
    );
    for view in &layout.views {
        let (g, c) = (&gpu_grads[view.range()], &cpu_grads[view.range()]);
        let (ng, nc) = (norm(g), norm(c));
        if nc < 1e-7 {
            assert!(ng < 1e-5, "{what} {}: CPU gradient 0, GPU {ng}", view.name);
            continue;
        }
        let cosine = g
            .iter()
            .zip(c)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum::<f64>()
            / (ng * nc);
        assert!(
            cosine > 0.99 && (ng / nc - 1.0).abs() < 0.03,
            "{what} {}: cosine {cosine}, norm {ng} vs CPU {nc}",
            view.name
        );
    }
}

/// Two GPU results that differ only in how the work was split (summation order): loss within
/// 0.1%, every tensor's gradient within 1% of its norm.
fn assert_same(what: &str, layout: &Layout, a: &(f32, Vec<f32>), b: &(f32, Vec<f32>)) {
    assert!(
        (a.0 - b.0).abs() <= 1e-3 * b.0.abs(),
        "{what}: loss {} vs {}",
        a.0,
        b.0
    );
    for view in &layout.views {
        let (x, y) = (&a.1[view.range()], &b.1[view.range()]);
        let diff: Vec<f32> = x.iter().zip(y).map(|(p, q)| p - q).collect();
        assert!(
            norm(&diff) <= 1e-2 * norm(y) + 1e-6,
            "{what} {}: gradients differ by {} (norm {})",
            view.name,
            norm(&diff),
            norm(y)
        );
    }
}

/// The gaps between a top-k model's k-th and (k+1)-th router probabilities, per token (the
/// smallest over the layers), for the tokens `ids` (none for other FFN kinds).
fn routing_margins(config: &ModelConfig, layout: &Layout, params: &[f32], ids: &[u32]) -> Vec<f32> {
    let Ffn::TopkMoe {
        n_experts, top_k, ..
    } = config.ffn
    else {
        return Vec::new();
    };
    let pass = forward(config, layout, params, ids, &vec![0; ids.len()]);
    let mut margins = vec![f32::INFINITY; ids.len()];
    for probs in pass.router_probs() {
        for (margin, token) in margins.iter_mut().zip(probs.chunks(n_experts)) {
            let mut sorted = token.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            *margin = margin.min(sorted[top_k - 1] - sorted[top_k]);
        }
    }
    margins
}

/// The router margin every token of a top-k test batch keeps: bf16 error in the router
/// logits (about 0.01) would otherwise now and then flip one token's k-th expert, and its
/// gradients with it (the static review's item 3).
const ROUTING_MARGIN: f32 = 2e-2;

/// `rows` blocks of `t + 1` tokens in which every input token of a top-k model routes with
/// `ROUTING_MARGIN` in every layer: built token by token (attention is causal, so a token
/// changes no earlier token's routing), each the first of the candidates drawn from `seed`
/// that keeps the margin. Other FFN kinds take the candidates as they come.
fn routable_blocks(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    seed: u64,
    rows: usize,
    t: usize,
) -> Vec<Vec<u32>> {
    let mut candidates = tokens(seed, 1 << 16, config.vocab_size).into_iter();
    (0..rows)
        .map(|_| {
            let mut block = Vec::with_capacity(t + 1);
            while block.len() < t + 1 {
                let candidate = candidates.next().expect("enough candidate tokens");
                block.push(candidate);
                let input = block.len() <= t;
                let margins = routing_margins(config, layout, params, &block);
                if input && margins.last().is_some_and(|&m| m <= ROUTING_MARGIN) {
                    block.pop();
                }
            }
            block
        })
        .collect()
}

/// Pretraining rows (one document each, every weight 1) and the mean over their tokens.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn whole_model_matches_cpu_for_every_ffn_kind() {
    for preset in PRESETS {
        let (config, layout, params) = setup(preset);
        let (rows, t) = (2, 40);
        let blocks = routable_blocks(&config, &layout, &params, 9, rows, t);
        for block in &blocks {
            let margins = routing_margins(&config, &layout, &params, &block[..t]);
            assert!(
                margins.iter().all(|&m| m > ROUTING_MARGIN),
                "{preset}: {margins:?}"
            );
        }
        let batch = Batch::from_blocks(&blocks);
        let scale = LossScale {
            norm: batch.trained() as f32,
            aux: 1.0,
        };
        let cpu = cpu_pass(&config, &layout, &params, &batch, scale);
        for attention in ATTENTIONS {
            let mut model = GpuModel::new(gpu(), &config, &params, attention).unwrap();
            let got = gpu_pass(&mut model, &batch, scale);
            assert_matches_cpu(&format!("{preset} {attention:?}"), &layout, &got, &cpu);
        }
    }
}

/// Two rows of 40 positions packing documents (starts `starts[r]`), the positions in
/// `left_out` (a prompt, say) weighted 0.
/// Each document's tokens route with `ROUTING_MARGIN` (its routing does not depend on the
/// other documents of its row).
fn packed_batch(
    (config, layout, params): (&ModelConfig, &Layout, &[f32]),
    starts: [&[u32]; 2],
    left_out: [&[usize]; 2],
) -> Batch {
    let t = 40;
    let mut batch = Batch::new(t);
    for (r, (starts, left_out)) in starts.iter().zip(left_out).enumerate() {
        let ends = starts.iter().skip(1).copied().chain([t as u32]);
        let ids: Vec<u32> = starts
            .iter()
            .zip(ends)
            .enumerate()
            .flat_map(|(d, (&start, end))| {
                let len = (end - start) as usize;
                let seed = 20 + 10 * r as u64 + d as u64;
                routable_blocks(config, layout, params, seed, 1, len).remove(0)[..len].to_vec()
            })
            .collect();
        let targets = tokens(30 + r as u64, t, config.vocab_size);
        let mut weights = vec![1.0; t];
        left_out.iter().for_each(|&i| weights[i] = 0.0);
        batch.push_row(&ids, &targets, &weights, starts);
    }
    batch
}

/// Rows packing several documents, some positions left out of the loss: loss, gradients,
/// `loss` and `row_loss_sums` against the CPU.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn packed_documents_and_left_out_positions_match_cpu() {
    for preset in PRESETS {
        let (config, layout, params) = setup(preset);
        let batch = packed_batch(
            (&config, &layout, &params),
            [&[0, 17], &[0, 9, 30]],
            [&[0, 1, 2, 3, 17, 18, 19], &[9, 10, 11, 39]],
        );
        let scale = LossScale {
            norm: batch.trained() as f32,
            aux: 1.0,
        };
        let cpu = cpu_pass(&config, &layout, &params, &batch, scale);
        let no_aux = LossScale { aux: 0.0, ..scale };
        let cpu_no_aux = cpu_pass(&config, &layout, &params, &batch, no_aux).0;
        let cpu_sums: Vec<f64> = batch
            .iter()
            .map(|row| row_loss_sum(&config, &layout, &params, row))
            .collect();
        for attention in ATTENTIONS {
            let what = format!("{preset} {attention:?}");
            let mut model = GpuModel::new(gpu(), &config, &params, attention).unwrap();
            let got = gpu_pass(&mut model, &batch, scale);
            assert_matches_cpu(&what, &layout, &got, &cpu);
            let loss = model.loss(&batch, no_aux).unwrap();
            assert!(
                (loss - cpu_no_aux).abs() <= 1e-2 * cpu_no_aux.abs(),
                "{what}: loss without gradients {loss} vs CPU {cpu_no_aux}"
            );
            let sums = model.row_loss_sums(&batch).unwrap();
            for (r, (g, c)) in sums.iter().zip(&cpu_sums).enumerate() {
                assert!(
                    (g - c).abs() <= 1e-2 * c.abs(),
                    "{what}: row {r} loss sum {g} vs CPU {c}"
                );
            }
        }
    }
}

/// A row packing two examples gives the loss and gradients of the two run alone (one batch
/// each, accumulated), over the same trained tokens. No load-balancing loss: it is over a
/// row's tokens together.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn packed_row_equals_its_examples_run_alone() {
    // The first example spans more than one 64-query block of the flash kernels.
    let (ta, tb) = (70, 30);
    for preset in PRESETS {
        let (config, layout, params) = setup(preset);
        let ids = tokens(40, ta + tb, config.vocab_size);
        let targets = tokens(41, ta + tb, config.vocab_size);
        let mut weights = vec![1.0; ta + tb];
        // Each example's prompt is left out.
        weights[..6].fill(0.0);
        weights[ta..ta + 4].fill(0.0);
        let mut packed = Batch::new(ta + tb);
        packed.push_row(&ids, &targets, &weights, &[0, ta as u32]);
        let (mut a, mut b) = (Batch::new(ta), Batch::new(tb));
        a.push_row(&ids[..ta], &targets[..ta], &weights[..ta], &[0]);
        b.push_row(&ids[ta..], &targets[ta..], &weights[ta..], &[0]);
        let scale = LossScale {
            norm: packed.trained() as f32,
            aux: 0.0,
        };
        for attention in ATTENTIONS {
            let what = format!("{preset} {attention:?}");
            let mut model = GpuModel::new(gpu(), &config, &params, attention).unwrap();
            let together = gpu_pass(&mut model, &packed, scale);
            model.zero_grads().unwrap();
            let loss =
                model.loss_and_grad(&a, scale).unwrap() + model.loss_and_grad(&b, scale).unwrap();
            let alone = (loss, model.grads().unwrap());
            assert_same(&what, &layout, &together, &alone);
            let sums = model.row_loss_sums(&packed).unwrap()[0];
            let apart = model.row_loss_sums(&a).unwrap()[0] + model.row_loss_sums(&b).unwrap()[0];
            assert!(
                (sums - apart).abs() <= 1e-3 * apart.abs(),
                "{what}: packed row's loss sum {sums} vs {apart} apart"
            );
        }
    }
}

/// Gradient accumulation: `loss_and_grad` on two micro-batches of one row each (each taking
/// its share of the load-balancing loss, as the engine scales it) adds up to one call on both
/// rows.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn two_micro_batches_accumulate_to_one_batch() {
    for preset in PRESETS {
        let (config, layout, params) = setup(preset);
        let both = packed_batch(
            (&config, &layout, &params),
            [&[0, 25], &[0]],
            [&[0, 1, 25], &[]],
        );
        let halves: Vec<Batch> = both
            .iter()
            .map(|row| {
                let mut half = Batch::new(both.t);
                half.ids = row.ids.to_vec();
                half.targets = row.targets.to_vec();
                half.weights = row.weights.to_vec();
                half.doc_start = row.doc_start.to_vec();
                half
            })
            .collect();
        let norm = both.trained() as f32;
        for attention in ATTENTIONS {
            let mut model = GpuModel::new(gpu(), &config, &params, attention).unwrap();
            let one = gpu_pass(&mut model, &both, LossScale { norm, aux: 1.0 });
            model.zero_grads().unwrap();
            let mut loss = 0.0;
            for half in &halves {
                loss += model
                    .loss_and_grad(half, LossScale { norm, aux: 0.5 })
                    .unwrap();
            }
            let two = (loss, model.grads().unwrap());
            assert_same(&format!("{preset} {attention:?}"), &layout, &two, &one);
        }
    }
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn fused_adamw_matches_cpu_adamw() {
    let gpu = gpu();
    let config = ModelConfig::preset("tiny-topk-moe").unwrap();
    let layout = Layout::new(&config);
    let mut params = init_params(&layout, 1);
    let settings = AdamWConfig::default();
    let mut cpu = AdamW::new(settings, &layout);
    let p = Tensor::from_f32(&gpu, &params, Dtype::F32).unwrap();
    let p16 = Tensor::from_f32(&gpu, &params, Dtype::Bf16).unwrap();
    let m = Tensor::zeros(&gpu, Dtype::F32, layout.len).unwrap();
    let v = Tensor::zeros(&gpu, Dtype::F32, layout.len).unwrap();
    let ranges: Vec<i64> = layout
        .views
        .iter()
        .filter(|view| !steel_trainer::optim::adamw::is_decayed(&view.name))
        .flat_map(|view| [view.offset as i64, (view.offset + view.len()) as i64])
        .collect();
    let no_decay = Tensor::from_i64(&gpu, &ranges).unwrap();
    let norm_dev = Tensor::zeros(&gpu, Dtype::F32, 1).unwrap();
    let mut clipped = false;
    for step in 1..=3u64 {
        // Gradients large enough that step 2 clips (norm > 1), scaled by 1/2 as micro-batches.
        let raw: Vec<f32> = tokens(step, layout.len, 2001)
            .iter()
            .map(|&x| (x as f32 - 1000.0) * 1e-5 * step as f32)
            .collect();
        let g = Tensor::from_f32(&gpu, &raw, Dtype::F32).unwrap();
        let mut scaled: Vec<f32> = raw.iter().map(|x| x * 0.5).collect();
        let cpu_norm = clip_global_norm(&mut scaled, 1.0);
        clipped |= cpu_norm > 1.0;
        cpu.update(&mut params, &scaled, 1e-2);
        steel_kernels::cuda::reduce::norm(&gpu, g.addr(), layout.len, 0.5, norm_dev.addr())
            .unwrap();
        let state = adamw::State {
            param: &p,
            m: &m,
            v: &v,
            grad: &g,
            param16: &p16,
            no_decay: &no_decay,
            norm: &norm_dev,
        };
        let hyper = adamw::Step {
            lr: 1e-2,
            beta1: settings.beta1,
            beta2: settings.beta2,
            eps: settings.eps,
            weight_decay: settings.weight_decay,
            step,
            grad_scale: 0.5,
            max_norm: 1.0,
        };
        adamw::step(&gpu, &state, &hyper).unwrap();
        let gpu_norm = norm_dev.to_f32(&gpu).unwrap()[0];
        assert!(
            (gpu_norm - cpu_norm).abs() <= 1e-5 * cpu_norm,
            "norm {gpu_norm} vs {cpu_norm}"
        );
        let got = p.to_f32(&gpu).unwrap();
        let worst = got
            .iter()
            .zip(&params)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "step {step}: weights differ by up to {worst}");
        let half = p16.to_f32(&gpu).unwrap();
        assert!(
            half.iter()
                .zip(&got)
                .all(|(h, f)| (h - f).abs() <= f.abs() / 128.0 + 1e-30)
        );
    }
    assert!(clipped, "the test gradients reach the clip");
}

fn run_options(chunks: &Path, out: &Path, steps: u64, device: Device) -> TrainOptions {
    TrainOptions {
        config: ModelConfig::preset("tiny-dense").unwrap(),
        data: vec![DataSource {
            dir: chunks.to_path_buf(),
            weight: 1.0,
        }],
        seq: 16,
        micro_batch: 4,
        grad_accum: 1,
        steps,
        schedule: Schedule::Cosine {
            max_lr: 3e-3,
            min_lr: 3e-4,
            warmup: 20,
            total: 300,
        },
        adamw: AdamWConfig::default(),
        clip: 1.0,
        seed: 4,
        out: out.to_path_buf(),
        checkpoint_every: 10,
        keep: 2,
        validation: None,
        init_params: None,
        device,
        nproc: 1,
        nodes: None,
        max_bad_steps: 0,
        follow_every: 0,
        allow_tokenizer_mismatch: false,
        sft: None,
    }
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn training_tracks_the_cpu_run_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = demo_chunks(dir.path(), 16);
    let gpu_device = Device::Cuda(Attention::Flash);
    let cpu_run = train(
        &run_options(&chunks, &dir.path().join("cpu"), 300, Device::Cpu),
        false,
        &mut |_| {},
    )
    .unwrap();
    let gpu_run = train(
        &run_options(&chunks, &dir.path().join("gpu"), 300, gpu_device),
        false,
        &mut |_| {},
    )
    .unwrap();
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    // Same start, same batches: the curves agree early and stay together.
    for (step, (g, c)) in gpu_run
        .losses
        .iter()
        .zip(&cpu_run.losses)
        .enumerate()
        .take(10)
    {
        assert!(
            (g - c).abs() < 0.02,
            "step {}: GPU {g} vs CPU {c}",
            step + 1
        );
    }
    for window in (0..300).step_by(50) {
        let (g, c) = (
            mean(&gpu_run.losses[window..window + 50]),
            mean(&cpu_run.losses[window..window + 50]),
        );
        assert!(
            (g - c).abs() < 0.05 * c,
            "steps {window}..+50: GPU {g} vs CPU {c}"
        );
    }
    assert!(mean(&gpu_run.losses[280..]) < mean(&gpu_run.losses[..20]) - 1.0);
    // Exact resume: 15 steps, stop, resume to 30 = 30 straight, bit for bit.
    let straight = train(
        &run_options(&chunks, &dir.path().join("s"), 30, gpu_device),
        false,
        &mut |_| {},
    )
    .unwrap();
    let out = dir.path().join("r");
    train(
        &run_options(&chunks, &out, 15, gpu_device),
        false,
        &mut |_| {},
    )
    .unwrap();
    let resumed = train(
        &run_options(&chunks, &out, 30, gpu_device),
        true,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(resumed.losses, straight.losses);
    let weights = |d: &Path| std::fs::read(d.join("step-00000030/model.safetensors")).unwrap();
    assert!(
        weights(&out) == weights(&dir.path().join("s")),
        "resumed weights differ"
    );
}

/// One GPU in an NCCL communicator of its own (the data-parallel path with one rank) trains
/// exactly as the plain path: the same losses and weights, step by step.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn nccl_with_one_rank_trains_as_the_plain_path() {
    use steel_trainer::engine::{Engine, Objective};
    let (config, _, params) = setup("tiny-dense");
    let device = Device::Cuda(Attention::Flash);
    let engine = || {
        Engine::new(
            device,
            &config,
            AdamWConfig::default(),
            params.clone(),
            None,
            0,
        )
        .unwrap()
    };
    let (mut plain, mut nccl) = (engine(), engine());
    nccl.join_gpus(None).unwrap();
    for step in 0..5u64 {
        let blocks: Vec<Vec<u32>> = tokens(50 + step, 2 * 33, config.vocab_size)
            .chunks(33)
            .map(|b| b.to_vec())
            .collect();
        let batch = [Batch::from_blocks(&blocks)];
        let mean = Objective::MeanOverTrained;
        let a = plain.step(&batch, mean, 1e-3, 1.0, None).unwrap();
        let b = nccl.step(&batch, mean, 1e-3, 1.0, None).unwrap();
        assert_eq!((a.loss, a.grad_norm), (b.loss, b.grad_norm), "step {step}");
    }
    assert_eq!(
        plain.snapshot().unwrap().params,
        nccl.snapshot().unwrap().params
    );
}
