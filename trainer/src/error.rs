//! The trainer's errors, one variant per part that can fail. Every message says what was
//! expected, what was found and where (the file or directory, the field, the rank).

use crate::data::LoaderError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A model configuration that cannot be read or built: `config.json`, a preset, shapes.
    #[error("{0}")]
    Config(String),
    /// A checkpoint or HuggingFace model directory that cannot be read or written.
    #[error("{0}")]
    Checkpoint(String),
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
