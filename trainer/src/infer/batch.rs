//! Continuous batching, for a server: sequences join a running batch and leave it between
//! steps, each with its own options (sampling, seed, stop strings, length). One step is one
//! cached forward pass over every sequence in the batch: a sequence that just joined feeds its
//! whole prompt (its prefill), the others their last sampled token; then each samples its next
//! token with its own sampler. A sequence gives the same tokens as [`generate`] alone with its
//! options, whenever it joins and whoever else is in the batch. It runs on any [`Decoder`]:
//! the CPU model, or the GPU decoder (there "the same" holds up to near-ties: its GEMMs may
//! sum in another order for another number of rows).
//!
//! [`generate`]: crate::infer::generate::generate

use crate::error::TrainError;
use crate::infer::decoder::{Cache, Decoder};
use crate::infer::forward::Logits;
use crate::infer::generate::{GenerateOptions, Generation, Sequence};
use crate::infer::tokenizer::Codec;
use std::time::Instant;

/// A sequence of the batch, with its cache `C`.
struct Running<C> {
    id: u64,
    sequence: Sequence,
    options: GenerateOptions,
    cache: C,
    /// The prompt, until a step has fed it.
    prompt: Option<Vec<u32>>,
    start: Instant,
}

/// A sequence that stopped, out of the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub id: u64,
    pub generation: Generation,
}

/// The sequences being generated together.
pub struct Batch<'m, D: Decoder> {
    model: &'m D,
    codec: &'m dyn Codec,
    running: Vec<Running<D::Cache>>,
}

impl<'m, D: Decoder> Batch<'m, D> {
    pub fn new(model: &'m D, codec: &'m dyn Codec) -> Batch<'m, D> {
        Batch {
            model,
            codec,
            running: Vec::new(),
        }
    }

    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Add a sequence after `prompt` (1 to the context's tokens, each in the vocabulary),
    /// sampling with `options.seed` as it is; its prompt is fed at the next step. `id` names
    /// it in what [`Batch::step`] reports.
    pub fn join(
        &mut self,
        id: u64,
        prompt: Vec<u32>,
        options: GenerateOptions,
    ) -> Result<(), TrainError> {
        options.sampling.validate()?;
        let config = self.model.config();
        if prompt.is_empty() || prompt.len() > config.max_positions {
            return Err(TrainError::Data(format!(
                "the prompt has {} tokens; a prompt needs 1 to {} (the model's context)",
                prompt.len(),
                config.max_positions
            )));
        }
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= config.vocab_size) {
            return Err(TrainError::Data(format!(
                "token id {bad} is outside the model's vocabulary of {}",
                config.vocab_size
            )));
        }
        self.running.push(Running {
            id,
            sequence: Sequence::new(&prompt, &options, options.seed),
            options,
            cache: self.model.new_cache(),
            prompt: Some(prompt),
            start: Instant::now(),
        });
        Ok(())
    }

    /// Take sequence `id` out of the batch unfinished (its client went away); false if it is
    /// not in the batch.
    pub fn cancel(&mut self, id: u64) -> bool {
        let before = self.running.len();
        self.running.retain(|r| r.id != id);
        self.running.len() < before
    }

    /// One pass over every sequence and one token sampled for each; `on_text(id, piece)`
    /// receives each sequence's new whole characters. Returns the sequences that stopped,
    /// which leave the batch.
    pub fn step(
        &mut self,
        on_text: &mut dyn FnMut(u64, &str),
    ) -> Result<Vec<Finished>, TrainError> {
        let mut finished = self.take_stopped();
        if self.running.is_empty() {
            return Ok(finished);
        }
        let last: Vec<[u32; 1]> = self
            .running
            .iter()
            .map(|r| [r.sequence.last_token()])
            .collect();
        // Each sequence's cache and what it is fed: its prompt, or its last token.
        let mut caches: Vec<&mut D::Cache> = Vec::with_capacity(self.running.len());
        let mut fed: Vec<&[u32]> = Vec::with_capacity(self.running.len());
        for (running, last) in self.running.iter_mut().zip(&last) {
            caches.push(&mut running.cache);
            fed.push(running.prompt.as_deref().unwrap_or(last));
        }
        let logits = self.model.forward(&mut caches, &fed, Logits::Last)?;
        let max_positions = self.model.config().max_positions;
        for (running, row) in self.running.iter_mut().zip(&logits) {
            running.prompt = None;
            let (id, cached) = (running.id, running.cache.len());
            running.sequence.advance(
                row,
                cached,
                &running.options,
                max_positions,
                self.codec,
                &mut |piece| {
                    if !piece.is_empty() {
                        on_text(id, piece)
                    }
                },
            );
        }
        finished.append(&mut self.take_stopped());
        Ok(finished)
    }

    /// The sequences that have stopped, out of the batch.
    fn take_stopped(&mut self) -> Vec<Finished> {
        let (stopped, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| r.sequence.stopped().is_some());
        self.running = running;
        stopped
            .into_iter()
            .map(|r| Finished {
                id: r.id,
                generation: r.sequence.finish(r.start.elapsed().as_secs_f64()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Model;
    use crate::infer::generate::{StopReason, generate};
    use crate::infer::sampling::SamplingParams;
    use crate::infer::stream::tests::Bytes;
    use crate::model::config::ModelConfig;
    use crate::model::params::Layout;
    use crate::train::init_params;

    fn model() -> Model {
        let config = ModelConfig {
            max_positions: 24,
            ..ModelConfig::preset("tiny-dense").unwrap()
        };
        let layout = Layout::new(&config);
        let mut params = init_params(&layout, 3);
        // Larger weights: logits far from uniform, so sampling and argmax are not near ties.
        params.iter_mut().for_each(|x| *x *= 8.0);
        Model {
            config,
            layout,
            params,
            tokenizer_xxh3: None,
        }
    }

    /// One token per id: the byte `id % 256`.
    fn codec(vocab: usize) -> Bytes {
        Bytes((0..vocab).map(|i| vec![(i % 256) as u8]).collect())
    }

    fn options(max_new_tokens: usize, sampling: SamplingParams, seed: u64) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens,
            sampling,
            seed,
            stop_tokens: Vec::new(),
            stop_strings: Vec::new(),
        }
    }

    fn alone(
        model: &Model,
        codec: &Bytes,
        prompt: &[u32],
        options: &GenerateOptions,
    ) -> Generation {
        let (mut out, _) =
            generate(model, codec, &[prompt.to_vec()], options, &mut |_, _| {}).unwrap();
        out.pop().unwrap()
    }

    #[test]
    fn sequences_joining_at_any_step_generate_what_they_would_alone() {
        let model = model();
        let codec = codec(model.config.vocab_size);
        let sampled = SamplingParams {
            temperature: 1.0,
            top_k: 50,
            top_p: 0.9,
            min_p: 0.0,
            repetition_penalty: 1.1,
        };
        let prompts: [Vec<u32>; 4] = [
            vec![5, 6, 7],
            vec![9],
            vec![11, 12, 13, 14, 15],
            vec![3; 20],
        ];
        let requests = [
            options(8, SamplingParams::GREEDY, 0),
            options(6, sampled, 41),
            options(5, sampled, 7),
            // 20 prompt tokens in a context of 24: stops at the context.
            options(100, SamplingParams::GREEDY, 0),
        ];
        let expected: Vec<Generation> = prompts
            .iter()
            .zip(&requests)
            .map(|(p, o)| alone(&model, &codec, p, o))
            .collect();
        assert_eq!(expected[3].stop_reason, StopReason::Context);
        // Sequence i joins before step `joins[i]`, while the others are mid-way.
        let joins = [0, 0, 2, 3];
        let mut batch = Batch::new(&model, &codec);
        let mut streamed = vec![String::new(); 4];
        let mut done: Vec<Option<Generation>> = vec![None; 4];
        for step in 0..40 {
            for (i, &at) in joins.iter().enumerate() {
                if at == step {
                    batch
                        .join(i as u64, prompts[i].clone(), requests[i].clone())
                        .unwrap();
                }
            }
            for finished in batch
                .step(&mut |id, piece| streamed[id as usize].push_str(piece))
                .unwrap()
            {
                done[finished.id as usize] = Some(finished.generation);
            }
        }
        assert!(batch.is_empty());
        for (i, (done, expected)) in done.iter().zip(&expected).enumerate() {
            let done = done.as_ref().expect("every sequence finished");
            assert_eq!(done.tokens, expected.tokens, "sequence {i}");
            assert_eq!(done.stop_reason, expected.stop_reason, "sequence {i}");
            assert_eq!(done.text, expected.text, "sequence {i}");
            assert_eq!(streamed[i], done.text, "sequence {i} streams its text");
            assert_eq!(done.prompt_tokens, prompts[i].len());
        }
    }

    #[test]
    fn cancelled_sequences_leave_and_bad_prompts_are_refused() {
        let model = model();
        let codec = codec(model.config.vocab_size);
        let mut batch = Batch::new(&model, &codec);
        batch
            .join(1, vec![5, 6], options(50, SamplingParams::GREEDY, 0))
            .unwrap();
        batch
            .join(2, vec![7], options(3, SamplingParams::GREEDY, 0))
            .unwrap();
        batch.step(&mut |_, _| {}).unwrap();
        assert!(batch.cancel(1));
        assert!(!batch.cancel(1));
        let mut finished = Vec::new();
        while !batch.is_empty() {
            finished.extend(batch.step(&mut |_, _| {}).unwrap());
        }
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].id, 2);
        assert_eq!(
            finished[0].generation.tokens,
            alone(&model, &codec, &[7], &options(3, SamplingParams::GREEDY, 0)).tokens
        );
        // max_new_tokens 0 finishes at the next step without a token.
        batch
            .join(3, vec![7], options(0, SamplingParams::GREEDY, 0))
            .unwrap();
        let finished = batch.step(&mut |_, _| {}).unwrap();
        assert_eq!(finished[0].generation.tokens, Vec::<u32>::new());
        assert_eq!(finished[0].generation.stop_reason, StopReason::Length);
        let greedy = options(1, SamplingParams::GREEDY, 0);
        for bad in [vec![], vec![1; 25], vec![model.config.vocab_size as u32]] {
            assert!(batch.join(4, bad, greedy.clone()).is_err());
        }
        let hot = options(
            1,
            SamplingParams {
                temperature: -1.0,
                ..SamplingParams::GREEDY
            },
            0,
        );
        assert!(batch.join(4, vec![1], hot).is_err());
        assert!(batch.is_empty());
    }
}
