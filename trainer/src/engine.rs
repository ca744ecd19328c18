//! Where training steps run: the CPU reference (`model::pass`, `optim::adamw`) or, with the
//! `cuda` feature, the GPU model. Both take the same batches and give the same metrics; the
//! training loop, checkpoints and validation do not care which.

use crate::batch::{Batch, LossScale};
use crate::device::Device;
use crate::error::TrainError;
use crate::eval::{EvalResult, evaluate};
use crate::model::config::ModelConfig;
use crate::model::params::Layout;
use crate::model::pass::{loss_and_grad, row_loss_sum};
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
        /// The communicator of the data-parallel GPUs, once joined.
        nccl: Option<steel_kernels::cuda::nccl::Nccl>,
    },
}

/// One step's result.
pub struct StepResult {
    pub loss: f32,
    /// The global batch's summed weights: its trained tokens when weights are 0 or 1.
    pub trained: f32,
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
    /// An engine on `device` holding `params`, AdamW moments `m`, `v` and its step count
    /// (GPU 0 for a CUDA device).
    pub fn new(
        device: Device,
        config: &ModelConfig,
        adamw: AdamWConfig,
        params: Vec<f32>,
        moments: Option<(Vec<f32>, Vec<f32>)>,
        step: u64,
    ) -> Result<Engine, TrainError> {
        Engine::on_gpu(device, 0, config, adamw, params, moments, step)
    }

    /// [`Engine::new`] on GPU `ordinal` of this machine for a CUDA device (each data-parallel
    /// rank of a node takes its own).
    pub fn on_gpu(
        device: Device,
        ordinal: usize,
        config: &ModelConfig,
        adamw: AdamWConfig,
        params: Vec<f32>,
        moments: Option<(Vec<f32>, Vec<f32>)>,
        step: u64,
    ) -> Result<Engine, TrainError> {
        let layout = Layout::new(config);
        let mut lengths = vec![params.len()];
        if let Some((m, v)) = &moments {
            lengths.extend([m.len(), v.len()]);
        }
        if let Some(&wrong) = lengths.iter().find(|&&len| len != layout.len) {
            return Err(TrainError::Run(format!(
                "weights or AdamW moments of {wrong} values for a model of {}",
                layout.len
            )));
        }
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
                let gpu = steel_kernels::cuda::Gpu::open(ordinal)?;
                let mut model = crate::gpu::GpuModel::new(gpu, config, &params, attention)?;
                if let Some((m, v)) = moments {
                    model.set_moments(&m, &v)?;
                }
                Ok(Engine::Cuda {
                    model: Box::new(model),
                    adamw,
                    step,
                    nccl: None,
                })
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(TrainError::Device(format!(
                "GPU {ordinal}: {}",
                crate::device::NO_CUDA_FEATURE
            ))),
        }
    }

    /// One optimizer step over `micro_batches` (gradient accumulation: their gradients are
    /// summed before the update, as one large batch would give up to summation order) — over
    /// every rank's when `parallel` is given — with the loss `objective` says, its gradient
    /// clipped to `clip`, and one AdamW update at `lr`, unless the loss or the gradient norm is
    /// not finite: then the weights and moments stay as they were. The optimizer's step count
    /// (its bias correction) advances either way, so it stays the training step and a resumed
    /// run continues exactly.
    pub fn step(
        &mut self,
        micro_batches: &[Batch],
        objective: Objective,
        lr: f32,
        clip: f32,
        parallel: Option<(&dyn Collective, &Buckets)>,
    ) -> Result<StepResult, TrainError> {
        let norm = Normalisation::of(micro_batches, objective, parallel.map(|p| p.0))?;
        match self {
            Engine::Cpu(cpu) => {
                let CpuState {
                    config,
                    layout,
                    params,
                    optimizer,
                    grads,
                } = &mut **cpu;
                let (row_scale, local, share) = norm.cpu();
                grads.fill(0.0);
                let mut loss = 0.0;
                for row in micro_batches.iter().flat_map(|b| b.iter()) {
                    loss += loss_and_grad(config, layout, params, row, row_scale, grads);
                }
                if local != 1.0 {
                    grads.iter_mut().for_each(|g| *g *= local);
                    loss *= local;
                }
                if let Some((collective, buckets)) = parallel {
                    buckets.all_reduce(grads, collective)?;
                    let mut total = [loss];
                    collective.all_reduce_sum(&mut total)?;
                    if share != 1.0 {
                        grads.iter_mut().for_each(|g| *g *= share);
                    }
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
                    trained: norm.trained,
                    grad_norm,
                    updated,
                })
            }
            #[cfg(feature = "cuda")]
            Engine::Cuda {
                model,
                adamw,
                step,
                nccl,
            } => {
                // The GPU scores a micro-batch's rows at once, so every row takes the global
                // form of the normalisation: each rank's gradients and loss are its share of
                // the global mean, and the ranks' sum is the mean.
                let global = norm.global;
                model.zero_grads()?;
                let mut loss = 0.0;
                for batch in micro_batches {
                    loss += model.loss_and_grad(batch, global.for_rows(batch.rows()))?;
                }
                match (parallel, nccl.as_ref()) {
                    (Some((collective, _)), Some(nccl)) => {
                        model.all_reduce_grads(nccl)?;
                        let mut total = [loss];
                        collective.all_reduce_sum(&mut total)?;
                        loss = total[0];
                    }
                    (Some(_), None) => {
                        return Err(TrainError::Device(
                            "data parallelism on GPUs: the ranks' GPUs must join (Engine::join_gpus) before the first step".into(),
                        ));
                    }
                    // One GPU in a communicator of its own: the NCCL path with one rank.
                    (None, Some(nccl)) => model.all_reduce_grads(nccl)?,
                    (None, None) => {}
                }
                let grad_norm = model.grad_norm(1.0)?;
                let updated = finite(loss, grad_norm);
                if updated {
                    model.update(adamw, lr, clip, *step + 1, 1.0)?;
                }
                *step += 1;
                Ok(StepResult {
                    loss,
                    trained: norm.trained,
                    grad_norm,
                    updated,
                })
            }
        }
    }

    /// The mean loss over the trained tokens of prepared SFT rows, the first `max_rows` if
    /// given.
    pub fn evaluate_rows(
        &self,
        prepared: &crate::sft::Prepared,
        max_rows: Option<u64>,
    ) -> Result<EvalResult, TrainError> {
        let rows = max_rows.map_or(prepared.rows(), |max| prepared.rows().min(max as usize));
        let (mut total, mut trained) = (0.0, 0.0);
        // A few rows at a time: the GPU scores them together.
        for start in (0..rows).step_by(8) {
            let mut batch = Batch::new(prepared.row_len());
            for index in start..(start + 8).min(rows) {
                prepared.push_row(index, &mut batch)?;
            }
            total += self.row_loss_sums(&batch)?.iter().sum::<f64>();
            trained += batch.trained();
        }
        if trained == 0.0 {
            return Err(TrainError::Data(format!(
                "`{}` has no trained tokens to evaluate",
                prepared.dir().display()
            )));
        }
        Ok(EvalResult {
            loss: total / trained,
            tokens: trained as u64,
            blocks: rows as u64,
        })
    }

    /// Joins this rank's GPU to the communicator of every rank of `collective` (rank 0's NCCL
    /// id passes through it), for the gradient sums of data parallelism; without a collective,
    /// a communicator of this GPU alone (the NCCL path with one rank). A CPU engine sums
    /// through the collective itself and has nothing to join.
    pub fn join_gpus(&mut self, collective: Option<&dyn Collective>) -> Result<(), TrainError> {
        match self {
            Engine::Cpu(_) => {
                let _ = collective;
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Engine::Cuda { model, nccl, .. } => {
                use steel_kernels::cuda::nccl::{ID_BYTES, Nccl};
                let (rank, world) = collective.map_or((0, 1), |c| (c.rank(), c.world()));
                // The id's bytes as f32 values (exact below 2^24), rank 0's summed with zeros.
                let mut shared = [0f32; ID_BYTES];
                if rank == 0 {
                    for (value, byte) in shared.iter_mut().zip(Nccl::unique_id()?) {
                        *value = byte as f32;
                    }
                }
                if let Some(collective) = collective {
                    collective.all_reduce_sum(&mut shared)?;
                }
                let id = shared.map(|v| v as u8);
                *nccl = Some(Nccl::join(&model.gpu, rank, world, id)?);
                Ok(())
            }
        }
    }

    /// Each row's weighted sum of cross-entropies `Σ_i w_i · ce_i` (no gradient, no
    /// load-balancing loss): minus a sequence's log-probability when its weights mark the
    /// tokens it is summed over (DPO), or the numerator of an evaluation's mean.
    pub fn row_loss_sums(&self, batch: &Batch) -> Result<Vec<f64>, TrainError> {
        match self {
            Engine::Cpu(cpu) => Ok(batch
                .iter()
                .map(|row| row_loss_sum(&cpu.config, &cpu.layout, &cpu.params, row))
                .collect()),
            #[cfg(feature = "cuda")]
            Engine::Cuda { model, .. } => Ok(model.row_loss_sums(batch)?),
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

    /// The most device memory the engine held at once, cuBLASLt's workspace included (GPU
    /// only).
    pub fn peak_device_bytes(&self) -> Option<usize> {
        match self {
            Engine::Cpu(_) => None,
            #[cfg(feature = "cuda")]
            Engine::Cuda { model, .. } => Some(model.gpu.peak_bytes()),
        }
    }

    /// The validation loss over a chunk directory.
    pub fn evaluate(&self, dir: &Path, max_blocks: Option<u64>) -> Result<EvalResult, TrainError> {
        match self {
            Engine::Cpu(cpu) => evaluate(&cpu.config, &cpu.layout, &cpu.params, dir, max_blocks),
            #[cfg(feature = "cuda")]
            Engine::Cuda { model, .. } => {
                crate::eval::evaluate_with(model.config.vocab_size, dir, max_blocks, &mut |row| {
                    let batch = Batch::from_blocks(&[row.to_vec()]);
                    let scale = LossScale {
                        norm: batch.t as f32,
                        aux: 0.0,
                    };
                    model
                        .loss(&batch, scale)
                        .map(f64::from)
                        .map_err(TrainError::from)
                })
            }
        }
    }
}

/// What a step's loss is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// The weighted mean of the cross-entropies over the trained tokens of the whole global
    /// batch, `Σ w·ce / Σ w` over every row of every micro-batch of every rank, plus the mean
    /// over rows of the load-balancing loss (pretraining, SFT).
    MeanOverTrained,
    /// `Σ w·ce` as it is: the weights are the coefficients of a loss computed outside
    /// (DPO's), plus the mean over rows of the load-balancing loss.
    Weighted,
}

/// How a step scales its rows' losses so that their sum over the global batch is the loss
/// `objective` names.
///
/// The global form: every row divides its weighted sum by `W`, the global batch's trained
/// tokens, and weighs its load-balancing loss by `1 / rows`. When every row of this rank
/// trains the same number of tokens `n` (always so in pretraining) the CPU instead makes each
/// row its own mean (`norm = n`), scales the rank's sum by `n / W_rank` and the ranks' sum by
/// `W_rank / W`: for pretraining these are `1 / rows` and `1 / world` exactly, so pretraining
/// keeps the arithmetic it always had.
#[derive(Clone, Copy, Debug)]
struct Normalisation {
    global: GlobalScale,
    /// The global batch's summed weights.
    trained: f32,
    /// `(n, n / W_rank, W_rank / W)` when every row of this rank trains `n > 0` tokens and the
    /// objective is the mean.
    uniform: Option<(f32, f32, f32)>,
}

/// A normalisation in its global form: `Σ w·ce / norm` over rows, the load-balancing loss of
/// a group of rows weighted by their share of the global batch's `rows`.
#[derive(Clone, Copy, Debug)]
struct GlobalScale {
    norm: f32,
    rows: f32,
}

impl GlobalScale {
    fn for_rows(self, rows: usize) -> LossScale {
        LossScale {
            norm: self.norm,
            aux: rows as f32 / self.rows,
        }
    }
}

impl Normalisation {
    fn of(
        micro_batches: &[Batch],
        objective: Objective,
        collective: Option<&dyn Collective>,
    ) -> Result<Normalisation, TrainError> {
        let rows: Vec<f64> = micro_batches
            .iter()
            .flat_map(|b| b.iter().map(|row| row.trained()))
            .collect();
        let local = rows.iter().sum::<f64>() as f32;
        // Exact in f32 below 2^24 trained tokens and rows per step.
        let mut global = [local, rows.len() as f32];
        if let Some(collective) = collective {
            collective.all_reduce_sum(&mut global)?;
        }
        let [trained, n_rows] = global;
        let same = rows
            .first()
            .filter(|&&n| n > 0.0 && rows.iter().all(|r| r == &n));
        Ok(match objective {
            Objective::MeanOverTrained => Normalisation {
                global: GlobalScale {
                    norm: trained,
                    rows: n_rows,
                },
                uniform: same.map(|&n| (n as f32, n as f32 / local, local / trained)),
                trained,
            },
            Objective::Weighted => Normalisation {
                global: GlobalScale {
                    norm: 1.0,
                    rows: n_rows,
                },
                uniform: None,
                trained,
            },
        })
    }

    /// Each row's scale, and the factors for this rank's sum and for the ranks' sum (CPU).
    fn cpu(self) -> (LossScale, f32, f32) {
        match self.uniform {
            Some((n, local, share)) => (LossScale { norm: n, aux: 1.0 }, local, share),
            None => (self.global.for_rows(1), 1.0, 1.0),
        }
    }
}
