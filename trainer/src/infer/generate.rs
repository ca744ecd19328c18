//! Generation for a batch of prompts: one cached pass prefills every prompt, then each step
//! feeds every unfinished sequence its last token in one batched pass and samples the next.
//! A sequence stops at a stop token (`<|im_end|>`, `<|endoftext|>`: not part of its output), at
//! a stop string (its text ends before it), after `max_new_tokens`, or when the model's
//! context is full. Text is streamed as it becomes whole characters. It runs on any
//! [`Decoder`]: the CPU model or the GPU decoder.

use crate::error::TrainError;
use crate::infer::decoder::{Cache, Decoder};
use crate::infer::forward::Logits;
use crate::infer::sampling::{Sampler, SamplingParams};
use crate::infer::stop::StopStrings;
use crate::infer::stream::IncrementalDecoder;
use crate::infer::tokenizer::Codec;
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Prompt `i` of a batch samples with seed `seed + i`, so a prompt gives the same tokens
    /// alone as in any batch.
    pub seed: u64,
    /// Token ids that end a sequence (not part of its output).
    pub stop_tokens: Vec<u32>,
    /// Strings that end a sequence (its text ends before the first one).
    pub stop_strings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A stop token was sampled.
    StopToken,
    /// The text reached a stop string.
    StopString,
    /// `max_new_tokens` were generated.
    Length,
    /// The model's context (`max_position_embeddings`) is full.
    Context,
}

impl StopReason {
    /// The name `--json` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::StopToken => "stop_token",
            StopReason::StopString => "stop_string",
            StopReason::Length => "length",
            StopReason::Context => "context",
        }
    }
}

/// One prompt's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Generation {
    /// The generated ids, the stop token excluded (a stop string's tokens included).
    pub tokens: Vec<u32>,
    /// Their text, up to any stop string.
    pub text: String,
    pub stop_reason: StopReason,
    /// Generated tokens over the seconds from the start of the batch to this prompt's end.
    pub tokens_per_second: f64,
    #[serde(skip)]
    pub prompt_tokens: usize,
}

/// Where a batch's time went.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BatchStats {
    pub sequences: usize,
    /// Prompt tokens fed in the prefill (a reused cache's tokens are not fed again).
    pub prefill_tokens: usize,
    pub prefill_seconds: f64,
    /// Tokens fed one per sequence per step after the prefill.
    pub decode_tokens: usize,
    pub decode_seconds: f64,
}

impl BatchStats {
    /// Decode throughput of the batch: tokens per second over all its sequences.
    pub fn decode_tokens_per_second(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_seconds.max(1e-9)
    }
}

/// A sequence being generated.
pub(crate) struct Sequence {
    prompt_len: usize,
    sampler: Sampler,
    /// Prompt and generated ids: the repetition penalty's context.
    context: Vec<u32>,
    decoder: IncrementalDecoder,
    stops: StopStrings,
    text: String,
    stopped: Option<StopReason>,
    seconds: f64,
}

impl Sequence {
    /// A sequence after `prompt`, sampling with `params` seeded with `seed`, stopping at
    /// `stop_strings`; already stopped if `max_new_tokens` is 0.
    pub(crate) fn new(prompt: &[u32], options: &GenerateOptions, seed: u64) -> Sequence {
        Sequence {
            prompt_len: prompt.len(),
            sampler: Sampler::new(options.sampling, seed),
            context: prompt.to_vec(),
            decoder: IncrementalDecoder::new(),
            stops: StopStrings::new(&options.stop_strings),
            text: String::new(),
            stopped: (options.max_new_tokens == 0).then_some(StopReason::Length),
            seconds: 0.0,
        }
    }

    fn generated(&self) -> &[u32] {
        &self.context[self.prompt_len..]
    }

    /// Why it stopped, once it has.
    pub(crate) fn stopped(&self) -> Option<StopReason> {
        self.stopped
    }

    /// The last token of the sequence (prompt or generated).
    pub(crate) fn last_token(&self) -> u32 {
        *self.context.last().expect("a sequence is never empty")
    }

    /// Its result, once stopped; `seconds` since its start.
    pub(crate) fn finish(self, seconds: f64) -> Generation {
        let tokens = self.generated().to_vec();
        Generation {
            tokens_per_second: tokens.len() as f64 / seconds.max(1e-9),
            tokens,
            text: self.text,
            stop_reason: self.stopped.expect("the sequence stopped"),
            prompt_tokens: self.prompt_len,
        }
    }

    /// Sample from `logits` and take the token in; `cached` positions are in the cache.
    pub(crate) fn advance(
        &mut self,
        logits: &[f32],
        cached: usize,
        options: &GenerateOptions,
        max_positions: usize,
        codec: &dyn Codec,
        on_text: &mut dyn FnMut(&str),
    ) {
        let token = self.sampler.sample(logits, &self.context);
        if options.stop_tokens.contains(&token) {
            return self.stop(StopReason::StopToken, codec, on_text);
        }
        self.context.push(token);
        let piece = self.decoder.push(codec, token);
        let checked = self.stops.push(&piece);
        self.text.push_str(&checked.text);
        on_text(&checked.text);
        if checked.stopped {
            self.stopped = Some(StopReason::StopString);
        } else if self.generated().len() >= options.max_new_tokens {
            self.stop(StopReason::Length, codec, on_text);
        } else if cached >= max_positions {
            // No position left to feed this token at.
            self.stop(StopReason::Context, codec, on_text);
        }
    }

    /// End for `reason` other than a stop string: what the decoder and the stop strings held
    /// back comes out (unless it now holds a stop string).
    fn stop(&mut self, reason: StopReason, codec: &dyn Codec, on_text: &mut dyn FnMut(&str)) {
        let rest = self.decoder.finish(codec);
        let checked = self.stops.push(&rest);
        let mut text = checked.text;
        if !checked.stopped {
            text.push_str(&self.stops.finish());
        }
        self.text.push_str(&text);
        on_text(&text);
        self.stopped = Some(if checked.stopped {
            StopReason::StopString
        } else {
            reason
        });
    }
}

/// Generate after each of `prompts` (token ids, each non-empty and within the context);
/// `on_text(i, piece)` receives prompt `i`'s text as it becomes whole characters.
pub fn generate<D: Decoder>(
    model: &D,
    codec: &dyn Codec,
    prompts: &[Vec<u32>],
    options: &GenerateOptions,
    on_text: &mut dyn FnMut(usize, &str),
) -> Result<(Vec<Generation>, BatchStats), TrainError> {
    let mut caches: Vec<D::Cache> = prompts.iter().map(|_| model.new_cache()).collect();
    let prompts: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    generate_cached(model, codec, &mut caches, &prompts, options, on_text)
}

/// [`generate`] with a cache per prompt that may already hold a prefix of it (the previous
/// turns of a chat): only what differs is fed. The caches end holding the prompts and the
/// generated tokens fed back.
pub fn generate_cached<D: Decoder>(
    model: &D,
    codec: &dyn Codec,
    caches: &mut [D::Cache],
    prompts: &[&[u32]],
    options: &GenerateOptions,
    on_text: &mut dyn FnMut(usize, &str),
) -> Result<(Vec<Generation>, BatchStats), TrainError> {
    options.sampling.validate()?;
    let max_positions = model.config().max_positions;
    for (i, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() || prompt.len() > max_positions {
            return Err(TrainError::Data(format!(
                "prompt {i} has {} tokens; a prompt needs 1 to {max_positions} (the model's \
                 context)",
                prompt.len()
            )));
        }
    }
    let start = Instant::now();
    let mut stats = BatchStats {
        sequences: prompts.len(),
        ..BatchStats::default()
    };
    let mut sequences: Vec<Sequence> = prompts
        .iter()
        .enumerate()
        .map(|(i, &prompt)| Sequence::new(prompt, options, options.seed.wrapping_add(i as u64)))
        .collect();

    // Prefill: each prompt past what its cache already holds.
    let active: Vec<usize> = (0..sequences.len())
        .filter(|&i| sequences[i].stopped.is_none())
        .collect();
    let fed: Vec<&[u32]> = active
        .iter()
        .map(|&i| &prompts[i][caches[i].keep_prefix_of(prompts[i])..])
        .collect();
    stats.prefill_tokens = fed.iter().map(|f| f.len()).sum();
    let mut logits = run(model, caches, &active, &fed)?;
    stats.prefill_seconds = start.elapsed().as_secs_f64();
    let mut active = active;
    loop {
        for (&i, row) in active.iter().zip(&logits) {
            let cached = caches[i].len();
            let sequence = &mut sequences[i];
            sequence.advance(row, cached, options, max_positions, codec, &mut |piece| {
                if !piece.is_empty() {
                    on_text(i, piece)
                }
            });
            if sequence.stopped.is_some() {
                sequence.seconds = start.elapsed().as_secs_f64();
            }
        }
        active.retain(|&i| sequences[i].stopped.is_none());
        if active.is_empty() {
            break;
        }
        let step = Instant::now();
        let last: Vec<[u32; 1]> = active
            .iter()
            .map(|&i| [*sequences[i].context.last().expect("a token was sampled")])
            .collect();
        let fed: Vec<&[u32]> = last.iter().map(|t| &t[..]).collect();
        logits = run(model, caches, &active, &fed)?;
        stats.decode_tokens += active.len();
        stats.decode_seconds += step.elapsed().as_secs_f64();
    }
    let generations = sequences
        .into_iter()
        .map(|s| {
            let seconds = s.seconds;
            s.finish(seconds)
        })
        .collect();
    Ok((generations, stats))
}

/// [`generate`] over `prompts` in batches of `batch` at a time (in order), so a long prompt
/// file does not hold every sequence's cache at once. Prompt `i` still samples with seed
/// `seed + i` and streams as `on_text(i, ..)`; the stats add up over the batches.
pub fn generate_in_batches<D: Decoder>(
    model: &D,
    codec: &dyn Codec,
    prompts: &[Vec<u32>],
    batch: usize,
    options: &GenerateOptions,
    on_text: &mut dyn FnMut(usize, &str),
) -> Result<(Vec<Generation>, BatchStats), TrainError> {
    let mut generations = Vec::with_capacity(prompts.len());
    let mut total = BatchStats::default();
    for (b, group) in prompts.chunks(batch.max(1)).enumerate() {
        let first = b * batch.max(1);
        let group_options = GenerateOptions {
            seed: options.seed.wrapping_add(first as u64),
            ..options.clone()
        };
        let (mut out, stats) = generate(model, codec, group, &group_options, &mut |i, piece| {
            on_text(first + i, piece)
        })?;
        generations.append(&mut out);
        total.sequences += stats.sequences;
        total.prefill_tokens += stats.prefill_tokens;
        total.prefill_seconds += stats.prefill_seconds;
        total.decode_tokens += stats.decode_tokens;
        total.decode_seconds += stats.decode_seconds;
    }
    Ok((generations, total))
}

/// One batched pass over the sequences `active`, feeding `fed[j]` to sequence `active[j]`.
fn run<D: Decoder>(
    model: &D,
    caches: &mut [D::Cache],
    active: &[usize],
    fed: &[&[u32]],
) -> Result<Vec<Vec<f32>>, TrainError> {
    if active.is_empty() {
        return Ok(Vec::new());
    }
    let mut picked: Vec<&mut D::Cache> = caches
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| active.contains(i))
        .map(|(_, c)| c)
        .collect();
    model.forward(&mut picked, fed, Logits::Last)
}

/// Prompts from a JSONL file, one `{"prompt": "..."}` per line (blank lines skipped).
pub fn read_prompts(path: &std::path::Path) -> Result<Vec<String>, TrainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError::Data(format!("cannot read `{}`: {e}", path.display())))?;
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| {
            TrainError::Data(format!(
                "`{}` line {}: {why}; each line is {{\"prompt\": \"...\"}}",
                path.display(),
                i + 1
            ))
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(&format!("not JSON ({e})")))?;
        let prompt = value
            .get("prompt")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("no string `prompt`"))?;
        prompts.push(prompt.to_string());
    }
    if prompts.is_empty() {
        return Err(TrainError::Data(format!(
            "`{}` holds no prompt",
            path.display()
        )));
    }
    Ok(prompts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_print_as_their_json_names() {
        for reason in [
            StopReason::StopToken,
            StopReason::StopString,
            StopReason::Length,
            StopReason::Context,
        ] {
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::json!(reason.as_str())
            );
        }
    }

    #[test]
    fn prompt_files_are_read_line_by_line_and_bad_lines_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(&path, "{\"prompt\": \"你好\"}\n\n{\"prompt\": \"b\"}\n").unwrap();
        assert_eq!(read_prompts(&path).unwrap(), ["你好", "b"]);
        std::fs::write(&path, "{\"prompt\": \"a\"}\n{\"text\": \"b\"}\n").unwrap();
        let error = read_prompts(&path).unwrap_err().to_string();
        assert!(error.contains("line 2: no string `prompt`"), "{error}");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            read_prompts(&path)
                .unwrap_err()
                .to_string()
                .contains("no prompt")
        );
    }
}
