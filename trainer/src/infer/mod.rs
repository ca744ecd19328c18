//! Inference: a key/value-cached forward pass for every model kind (prefill a prompt, then one
//! token per step, several sequences at once), sampling as `transformers` does it, UTF-8-safe
//! streaming, stop rules, and the Qwen chat template. The CPU pass here is the readable
//! specification of the GPU decoder (`gpu::decode`, the `cuda` feature); the training pass
//! (`model::pass::logits` over the whole prefix) is its oracle in the tests. Everything above
//! the pass (generation, batching, chat, scoring) runs on either through [`decoder`].
//!
//! - [`decoder`]: the model and caches generation runs on, CPU or GPU (`--device`).
//! - [`cache`]: one sequence's keys and values on the host, every layer, every position so far.
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
pub mod decoder;
pub mod forward;
pub mod generate;
pub mod sampling;
pub mod stop;
pub mod stream;
pub mod tokenizer;
