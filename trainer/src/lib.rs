//! steel-trainer: the Steel model family, forward/backward, optimizer, data loader and
//! checkpoints: the loader ([`data`]), model configs, parameter layout and the model's
//! forward/backward ([`model`]), AdamW and schedules ([`optim`]), checkpoints and the CPU
//! training loop ([`checkpoint`], [`train`]), generation on the CPU ([`infer`]), and
//! multiple-choice benchmarks ([`mcq`]).

pub mod batch;
pub mod chat_eval;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod dpo;
pub mod engine;
pub mod error;
pub mod eval;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod infer;
pub mod mcq;
pub mod model;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod settings;
pub mod sft;
pub mod sft_settings;
pub mod train;
