//! The trainer's errors, one variant per part that can fail. Every message says what was
//! expected, what was found and where (the file or directory, the field, the rank).

use crate::data::LoaderError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A model configuration that cannot be read or built: `config.json`, a preset, shapes.
    #[error("{0}")]
    Config(String),
    /// A checkpoint or HuggingFace model directory that cannot be read or written.
    #[error("{0}")]
    Checkpoint(String),
    /// A checkpoint file whose bytes are not the ones written (`checksums.json`).
    #[error(
        "`{}` is corrupt: its xxh3-64 is {actual}, but the checkpoint's checksums.json records \
         {recorded}",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        recorded: String,
        actual: String,
    },
    /// A step whose loss or gradient norm is not finite, past `max_bad_steps` such steps.
    #[error(
        "step {step}: the loss ({loss}) or the gradient norm ({grad_norm}) is not finite; \
         training stopped before updating the weights, with no checkpoint of this step \
         ({skipped} such steps were skipped before it; --max-bad-steps {max} allows that many)"
    )]
    NonFinite {
        step: u64,
        loss: f32,
        grad_norm: f32,
        skipped: usize,
        max: u64,
    },
    /// Training settings (flags, TOML) that are missing or inconsistent.
    #[error("{0}")]
    Settings(String),
    /// Chunks that cannot be scored (evaluation).
    #[error("{0}")]
    Data(String),
    /// A chunk directory's manifest.
    #[error(transparent)]
    Pack(#[from] steel_dataflow::pack::PackError),
    /// The training loader.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// The run's own files (its directory, `metrics.jsonl`, `loss.svg`) or starting weights.
    #[error("{0}")]
    Run(String),
    /// Data-parallel ranks: a collective, the rendezvous, a rank that stopped.
    #[error("{0}")]
    Parallel(String),
    /// A device that this binary or machine cannot provide.
    #[error("{0}")]
    Device(String),
    /// The GPU failed (a kernel, cuBLASLt, memory).
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Gpu(#[from] steel_kernels::cuda::GpuError),
}
