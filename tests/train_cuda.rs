//! The GPU model against the CPU reference (its specification): whole-model loss and
//! gradients on the tiny configs of every FFN kind and both attention methods, the fused
//! AdamW against the CPU AdamW, a 300-step run whose loss curve tracks the CPU run's, and an
//! exact resume on the GPU.
//!
//! They need a GPU: ignored by a plain `cargo test`, run by `scripts/gpu-check.sh`.
#![cfg(feature = "cuda")]

mod common;

use common::demo_chunks;
use std::path::Path;
use steel_kernels::cuda::{Dtype, Gpu, Tensor, adamw};
use steel_trainer::data::DataSource;
use steel_trainer::device::{Attention, Device};
use steel_trainer::gpu::GpuModel;
use steel_trainer::model::config::ModelConfig;
use steel_trainer::model::params::Layout;
use steel_trainer::model::pass::loss_and_grad;
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

/// Loss within 1%; every parameter tensor's gradient within 3% in norm and pointing the same
/// way (cosine > 0.99), the bf16 compute's error budget.
fn check_model(preset: &str, attention: Attention) {
    let config = ModelConfig::preset(preset).unwrap();
    let layout = Layout::new(&config);
    // Weights larger than the training init, so every path carries signal.
    let params: Vec<f32> = init_params(&layout, 5).iter().map(|w| w * 4.0).collect();
    let (batch, t) = (2, 40);
    let block = tokens(9, batch * (t + 1), config.vocab_size);
    let (mut ids, mut targets) = (Vec::new(), Vec::new());
    let mut cpu_grads = vec![0.0; layout.len];
    let mut cpu_loss = 0.0;
    for seq in block.chunks(t + 1) {
        ids.extend_from_slice(&seq[..t]);
        targets.extend_from_slice(&seq[1..]);
        cpu_loss += loss_and_grad(
            &config,
            &layout,
            &params,
            &seq[..t],
            &seq[1..],
            &mut cpu_grads,
        );
    }
    cpu_loss /= batch as f32;
    cpu_grads.iter_mut().for_each(|g| *g /= batch as f32);
    let mut model = GpuModel::new(gpu(), &config, &params, attention).unwrap();
    model.zero_grads().unwrap();
    let loss = model.loss_and_grad(&ids, &targets, batch).unwrap();
    assert!(
        (loss - cpu_loss).abs() <= 1e-2 * cpu_loss.abs(),
        "{preset} {attention:?}: loss {loss} vs CPU {cpu_loss}"
    );
    let gpu_grads = model.grads().unwrap();
    for view in &layout.views {
        let (g, c) = (&gpu_grads[view.range()], &cpu_grads[view.range()]);
        let (ng, nc) = (norm(g), norm(c));
        if nc < 1e-7 {
            assert!(
                ng < 1e-5,
                "{preset} {}: CPU gradient 0, GPU {ng}",
                view.name
            );
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
            "{preset} {attention:?} {}: cosine {cosine}, norm {ng} vs CPU {nc}",
            view.name
        );
    }
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn whole_model_matches_cpu_for_every_ffn_kind() {
    for preset in ["tiny-dense", "tiny-softmax-moe", "tiny-topk-moe"] {
        for attention in [Attention::Flash, Attention::Cublas] {
            check_model(preset, attention);
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
