//! Where training steps run: the CPU reference (`model::pass`, `optim::adamw`) or, with the
//! `cuda` feature, the GPU model. Both take the same blocks and give the same metrics; the
//! training loop, checkpoints and validation do not care which.

use crate::device::Device;
use crate::error::TrainError;
use crate::eval::{EvalResult, evaluate};
use crate::model::config::ModelConfig;
use crate::model::params::Layout;
use crate::model::pass::loss_and_grad;
use crate::optim::adamw::{AdamW, AdamWConfig, clip_global_norm};
use crate::parallel::bucket::Buckets;
use crate::parallel::collective::Collective;
use std::path::Path;

/// The CPU reference's training state.
pub struct CpuState {
    config: ModelConfig,
    layout: Layout,
    params: Vec<f32>,
    optimizer: AdamW,
    grads: Vec<f32>,
}

/// Weights and AdamW moments on the host, laid out like the parameters.
pub struct Snapshot {
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

pub enum Engine {
    Cpu(Box<CpuState>),
    #[cfg(feature = "cuda")]
    Cuda {
        model: Box<crate::gpu::GpuModel>,
        adamw: AdamWConfig,
        step: u64,
    },
}

/// One step's result.
pub struct StepResult {
    pub loss: f32,
    pub grad_norm: f32,
    /// Whether the weights were updated: not when the loss or the gradient norm is not finite
    /// (an update would carry the NaN into every weight).
    pub updated: bool,
}

/// A step may update the weights only when its loss and gradient norm are finite.
fn finite(loss: f32, grad_norm: f32) -> bool {
    loss.is_finite() && grad_norm.is_finite()
}

impl Engine {
    /// An engine on `device` holding `params`, AdamW moments `m`, `v` and its step count.
    pub fn new(
        device: Device,
        config: &ModelConfig,
        adamw: AdamWConfig,
        params: Vec<f32>,
        moments: Option<(Vec<f32>, Vec<f32>)>,
        step: u64,
    ) -> Result<Engine, TrainError> {
        let layout = Layout::new(config);
        match device {
            Device::Cpu => {
                let mut optimizer = AdamW::new(adamw, &layout);
                if let Some((m, v)) = moments {
                    optimizer.m = m;
                    optimizer.v = v;
                }
                optimizer.step = step;
                Ok(Engine::Cpu(Box::new(CpuState {
                    config: config.clone(),
                    grads: vec![0.0; layout.len],
                    layout,
                    params,
                    optimizer,
                })))
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(attention) => {
                let gpu = steel_kernels::cuda::Gpu::open(0)?;
                let mut model = crate::gpu::GpuModel::new(gpu, config, &params, attention)?;
                if let Some((m, v)) = moments {
                    model.set_moments(&m, &v)?;
                }
                Ok(Engine::Cuda {
                    model: Box::new(model),
                    adamw,
                    step,
                })
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(TrainError::Device(
                "this binary was built without the `cuda` feature: rebuild with \
                 `cargo build --release --features cuda` (after scripts/cuda-toolchain.sh)"
                    .into(),
            )),
        }
    }

    /// Gradients of the mean loss over `blocks` (each `T + 1` tokens: inputs and shifted
    /// targets) — averaged over every rank's blocks when `parallel` is given — clipped to
    /// `clip`, and one AdamW update at `lr`, unless the loss or the gradient norm is not finite:
    /// then the weights and moments stay as they were. The optimizer's step count (its bias
    /// correction) advances either way, so it stays the training step and a resumed run
    /// continues exactly.
    pub fn step(
        &mut self,
        blocks: &[Vec<u32>],
        lr: f32,
        clip: f32,
        parallel: Option<(&dyn Collective, &Buckets)>,
    ) -> Result<StepResult, TrainError> {
        match self {
            Engine::Cpu(cpu) => {
                let CpuState {
                    config,
                    layout,
                    params,
                    optimizer,
                    grads,
                } = &mut **cpu;
                grads.fill(0.0);
                let mut loss = 0.0;
                for block in blocks {
                    let n = block.len() - 1;
                    loss += loss_and_grad(config, layout, params, &block[..n], &block[1..], grads);
                }
                let scale = 1.0 / blocks.len() as f32;
                grads.iter_mut().for_each(|g| *g *= scale);
                loss *= scale;
                if let Some((collective, buckets)) = parallel {
                    buckets.all_reduce(grads, collective)?;
                    let mut total = [loss];
                    collective.all_reduce_sum(&mut total)?;
                    let share = 1.0 / collective.world() as f32;
                    grads.iter_mut().for_each(|g| *g *= share);
                    loss = total[0] * share;
                }
                let grad_norm = clip_global_norm(grads, clip);
                let updated = finite(loss, grad_norm);
                if updated {
                    optimizer.update(params, grads, lr);
                } else {
                    optimizer.step += 1;
                }
                Ok(StepResult {
                    loss,
                    grad_norm,
                    updated,
                })
            }
            #[cfg(feature = "cuda")]
            Engine::Cuda { model, adamw, step } => {
                if parallel.is_some() {
                    return Err(TrainError::Device(
                        "data parallelism on GPUs needs the NCCL path".to_string(),
                    ));
                }
                let (mut ids, mut targets) = (Vec::new(), Vec::new());
                for block in blocks {
                    let n = block.len() - 1;
                    ids.extend_from_slice(&block[..n]);
                    targets.extend_from_slice(&block[1..]);
                }
                let gpu_step = |model: &mut crate::gpu::GpuModel| {
                    model.zero_grads()?;
                    let loss = model.loss_and_grad(&ids, &targets, blocks.len())?;
                    let grad_norm = model.grad_norm(1.0)?;
                    let updated = finite(loss, grad_norm);
                    if updated {
                        model.update(adamw, lr, clip, *step + 1, 1.0)?;
                    }
                    Ok::<_, steel_kernels::cuda::GpuError>(StepResult {
                        loss,
                        grad_norm,
                        updated,
                    })
                };
                let result = gpu_step(model)?;
                *step += 1;
                Ok(result)
            }
        }
    }

    /// Weights and AdamW moments, on the host (for checkpoints).
    pub fn snapshot(&self) -> Result<Snapshot, TrainError> {
        match self {
            Engine::Cpu(cpu) => Ok(Snapshot {
                params: cpu.params.clone(),
                m: cpu.optimizer.m.clone(),
                v: cpu.optimizer.v.clone(),
            }),
            #[cfg(feature = "cuda")]
            Engine::Cuda { model, .. } => {
                let params = model.params()?;
                let (m, v) = model.moments()?;
                Ok(Snapshot { params, m, v })
            }
        }
    }

    /// The device in words, for reports.
    pub fn describe(&self) -> Result<String, TrainError> {
        match self {
            Engine::Cpu(_) => Ok(format!(
                "cpu ({} threads)",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )),
            #[cfg(feature = "cuda")]
            Engine::Cuda { model, .. } => Ok(model.gpu.describe()?),
        }
    }

    /// The most device memory the engine's tensors held at once (GPU only).
    pub fn peak_device_bytes(&self) -> Option<usize> {
        match self {
            Engine::Cpu(_) => None,
            #[cfg(feature = "cuda")]
            Engine::Cuda { model, .. } => Some(model.gpu.peak_tensor_bytes()),
        }
    }

    /// The validation loss over a chunk directory.
    pub fn evaluate(&self, dir: &Path, max_blocks: Option<u64>) -> Result<EvalResult, TrainError> {
        match self {
            Engine::Cpu(cpu) => evaluate(&cpu.config, &cpu.layout, &cpu.params, dir, max_blocks),
            #[cfg(feature = "cuda")]
            Engine::Cuda { model, .. } => {
                crate::eval::evaluate_with(model.config.vocab_size, dir, max_blocks, &mut |row| {
                    let n = row.len() - 1;
                    model
                        .loss(&row[..n], &row[1..], 1)
                        .map(f64::from)
                        .map_err(TrainError::from)
                })
            }
        }
    }
}
