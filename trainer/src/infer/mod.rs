//! Inference on the CPU: a key/value-cached forward pass for every model kind (prefill a
//! prompt, then one token per step, several sequences at once), sampling as `transformers`
//! does it, UTF-8-safe streaming, stop rules, and the Qwen chat template. It is the readable
//! specification the GPU path will be checked against; the training pass
//! (`model::pass::logits` over the whole prefix) is its oracle in the tests.
//!
//! - [`cache`]: one sequence's keys and values, every layer, every position so far.
//! - [`attention`]: new queries over a cache (GQA), the decode twin of the training kernel.
//! - [`forward`]: token ids of several sequences to logits, through and into their caches.
//! - [`sampling`]: repetition penalty, temperature, top-k, top-p, min-p; seeded sampling.
//! - [`tokenizer`]: the tokenizer as generation sees it (encode, decode, special ids).
//! - [`stream`]: token ids to text only once its bytes form whole characters.
//! - [`stop`]: stop strings, holding back text that may be the start of one.
//! - [`generate`]: the generation loop for a batch of prompts.
//! - [`batch`]: continuous batching: sequences with their own options join and leave a
//!   running batch between steps (`steel serve`).
//! - [`chat`]: the Qwen chat template, a conversation kept within the context.

pub mod attention;
pub mod batch;
pub mod cache;
pub mod chat;
pub mod forward;
pub mod generate;
pub mod sampling;
pub mod stop;
pub mod stream;
pub mod tokenizer;

use crate::device::Device;
use crate::error::TrainError;

/// Generation runs on the CPU: the GPU model has only the fused training loss, no logits and
/// no key/value cache yet, so `cuda` is refused rather than quietly run on the CPU.
pub fn require_cpu(device: Device) -> Result<(), TrainError> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(_) => Err(TrainError::Device(
            "generation runs on the CPU for now: the GPU path has no logits or key/value cache \
             yet; use --device cpu"
                .into(),
        )),
    }
}
