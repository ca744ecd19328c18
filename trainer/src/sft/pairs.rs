//! DPO preference pairs: JSONL lines `{"prompt", "chosen", "rejected"}` (TRL's format), each
//! field a plain string or a list of messages.
//!
//! The prompt — a string is one user message — renders through the Qwen template up to and
//! including the opening of the reply, `<|im_start|>assistant\n` (as generation renders it).
//! A completion is its text followed by `<|im_end|>`: a string, or a list of messages whose
//! first is the assistant's reply (later messages continue the template:
//! `\n<|im_start|>{role}\n{content}<|im_end|>` each).
//!
//! **Tokens.** Prompt and completion are tokenized together and split at the prompt's own
//! tokens: when the tokens of `prompt + completion` start with the tokens of the prompt alone,
//! the completion is the rest, so `prompt ++ chosen` is exactly the tokenization of the full
//! text. The prompt ends in `\n`, so this fails only when the completion starts with
//! whitespace ending in a line break, which the tokenizer merges with that `\n` into one token
//! across the boundary. Then the completion is tokenized alone (the same text, cut at the same
//! byte; a tokenization the model can produce after the prompt) and the pair is counted in
//! [`PairReport::split_merged`]. The prompt is the same for chosen and rejected either way.
//!
//! **Cutoff.** Prompt plus the longer completion must fit in `cutoff` tokens. If they do not,
//! the completions keep `min(longest, max(cutoff − prompt, cutoff / 2))` tokens, cut from the
//! right (their end goes, the `<|im_end|>` with it), and the prompt keeps the rest of the
//! cutoff, cut from the left (its start goes — the system prompt first — and the latest turn and
//! `<|im_start|>assistant\n` stay), as LLaMA-Factory shares the length between them.

use crate::infer::tokenizer::{Codec, Tokenizer};
use crate::sft::conversation::{Problem, Role, parse_messages, render_prompt};
use crate::sft::error::SftError;
use crate::sft::lines::{Line, read_batches};
use crate::sft::report::{SkipKind, Skipped};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// A prompt and two completions of it, as tokens: `prompt ++ chosen` and `prompt ++ rejected`
/// are the sequences scored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pair {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

/// What reading pairs did. `lines = blank + pairs + Σ quarantined + Σ dropped`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PairReport {
    pub lines: u64,
    pub blank: u64,
    pub pairs: u64,
    /// Pairs cut to the cutoff.
    pub truncated: u64,
    /// Completions (chosen or rejected) whose first token merged with the prompt's last and
    /// were tokenized alone.
    pub split_merged: u64,
    pub quarantined: BTreeMap<SkipKind, u64>,
    pub dropped: BTreeMap<SkipKind, u64>,
}

/// The pairs of a file, and what reading it did.
#[derive(Clone, Debug, Default)]
pub struct PairSet {
    /// In file order.
    pub pairs: Vec<Pair>,
    pub report: PairReport,
    /// Every line that gave no pair, in file order.
    pub skipped: Vec<Skipped>,
}

/// Every preference pair of `path`, each cut to `cutoff` tokens (prompt plus the longer
/// completion). An error if the file cannot be read or no line gives a pair.
pub fn read_pairs(path: &Path, tokenizer: &Tokenizer, cutoff: usize) -> Result<PairSet, SftError> {
    if cutoff < 2 {
        return Err(SftError::Setup(format!(
            "a cutoff of {cutoff} tokens leaves no room for a prompt and a completion"
        )));
    }
    let file = path.display().to_string();
    let mut set = PairSet::default();
    let counts = read_batches(path, &mut |batch: Vec<Line>| {
        let outcomes: Vec<Result<(Pair, Tokenized), Skipped>> = batch
            .into_par_iter()
            .map(|line| {
                let text = line.text?;
                read_pair(&text, tokenizer, cutoff).map_err(|problem| Skipped {
                    file: file.clone(),
                    line: line.number,
                    kind: problem.kind,
                    reason: problem.reason,
                })
            })
            .collect();
        for outcome in outcomes {
            match outcome {
                Ok((pair, how)) => {
                    set.report.pairs += 1;
                    set.report.truncated += u64::from(how.truncated);
                    set.report.split_merged += how.merged;
                    set.pairs.push(pair);
                }
                Err(skipped) => {
                    let counts = if skipped.kind.is_drop() {
                        &mut set.report.dropped
                    } else {
                        &mut set.report.quarantined
                    };
                    *counts.entry(skipped.kind).or_default() += 1;
                    set.skipped.push(skipped);
                }
            }
        }
        Ok(())
    })?;
    set.report.lines = counts.lines;
    set.report.blank = counts.blank;
    if set.pairs.is_empty() {
        let first = set
            .skipped
            .first()
            .map(|s| format!(" (the first: {s})"))
            .unwrap_or_default();
        return Err(SftError::NothingUsable {
            reason: format!(
                "`{}`: {} lines, {} blank, {} set aside{first}",
                path.display(),
                counts.lines,
                counts.blank,
                set.skipped.len()
            ),
        });
    }
    Ok(set)
}

/// How a pair's tokens came out.
struct Tokenized {
    truncated: bool,
    /// Completions tokenized alone (0, 1 or 2).
    merged: u64,
}

fn read_pair(
    line: &str,
    tokenizer: &Tokenizer,
    cutoff: usize,
) -> Result<(Pair, Tokenized), Problem> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Problem::new(SkipKind::NotJson, format!("not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(Problem::new(SkipKind::NotJson, "not a JSON object"));
    };
    let field = |name: &str| {
        object
            .get(name)
            .ok_or_else(|| Problem::new(SkipKind::BadField, format!("no `{name}` field")))
    };
    let prompt = prompt_text(field("prompt")?)?;
    let chosen = completion_text(field("chosen")?, "chosen")?;
    let rejected = completion_text(field("rejected")?, "rejected")?;
    if chosen == rejected {
        return Err(Problem::new(
            SkipKind::SameCompletions,
            "`chosen` and `rejected` are the same completion",
        ));
    }
    let tokenize = |text: &str| {
        tokenizer
            .encode(text)
            .map_err(|e| Problem::new(SkipKind::Tokenizer, e.to_string()))
    };
    let prompt_ids = tokenize(&prompt)?;
    let mut merged = 0;
    let mut completion = |text: &str| -> Result<Vec<u32>, Problem> {
        let full = tokenize(&format!("{prompt}{text}"))?;
        if full.starts_with(&prompt_ids) {
            Ok(full[prompt_ids.len()..].to_vec())
        } else {
            merged += 1;
            tokenize(text)
        }
    };
    let chosen = completion(&chosen)?;
    let rejected = completion(&rejected)?;
    let mut pair = Pair {
        prompt: prompt_ids,
        chosen,
        rejected,
    };
    let truncated = truncate(&mut pair, cutoff);
    Ok((pair, Tokenized { truncated, merged }))
}

/// The prompt's text through the template, up to the opening of the reply.
fn prompt_text(value: &Value) -> Result<String, Problem> {
    let messages = match value {
        // Checked as a message's content is.
        Value::String(_) => parse_messages(
            &serde_json::json!([{"role": "user", "content": value}]),
            "prompt",
        )?,
        Value::Array(_) => parse_messages(value, "prompt")?,
        _ => {
            return Err(Problem::new(
                SkipKind::BadField,
                "`prompt` is neither a string nor a list of messages",
            ));
        }
    };
    Ok(render_prompt(&messages))
}

/// A completion's text after the prompt, ending in `<|im_end|>`.
fn completion_text(value: &Value, name: &str) -> Result<String, Problem> {
    match value {
        Value::String(text) => {
            // Checked as a message's content is.
            parse_messages(
                &serde_json::json!([{"role": "assistant", "content": text}]),
                name,
            )?;
            Ok(format!("{text}<|im_end|>"))
        }
        Value::Array(_) => {
            let messages = parse_messages(value, name)?;
            if messages[0].role != Role::Assistant {
                return Err(Problem::new(
                    SkipKind::BadField,
                    format!(
                        "{name}[0] is a `{}` message; a completion starts with the assistant's",
                        messages[0].role.name()
                    ),
                ));
            }
            let mut text = format!("{}<|im_end|>", messages[0].content);
            for message in &messages[1..] {
                text.push_str(&format!(
                    "\n<|im_start|>{}\n{}<|im_end|>",
                    message.role.name(),
                    message.content
                ));
            }
            Ok(text)
        }
        _ => Err(Problem::new(
            SkipKind::BadField,
            format!("`{name}` is neither a string nor a list of messages"),
        )),
    }
}

/// Cut `pair` to `cutoff` tokens (see the module's doc); whether anything was cut.
fn truncate(pair: &mut Pair, cutoff: usize) -> bool {
    let prompt = pair.prompt.len();
    let longest = pair.chosen.len().max(pair.rejected.len());
    if prompt + longest <= cutoff {
        return false;
    }
    let keep_completion = longest.min(cutoff.saturating_sub(prompt).max(cutoff / 2));
    let keep_prompt = cutoff - keep_completion;
    pair.prompt.drain(..prompt - keep_prompt);
    pair.chosen.truncate(keep_completion);
    pair.rejected.truncate(keep_completion);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_shared_between_prompt_and_completions() {
        let pair = |p: usize, c: usize, r: usize| Pair {
            prompt: (0..p as u32).collect(),
            chosen: (100..100 + c as u32).collect(),
            rejected: (200..200 + r as u32).collect(),
        };
        // Fits: nothing cut.
        let mut fits = pair(4, 6, 3);
        assert!(!truncate(&mut fits, 10));
        assert_eq!(fits, pair(4, 6, 3));
        // A short prompt keeps whole; the completions get the rest.
        let mut short = pair(2, 12, 5);
        assert!(truncate(&mut short, 10));
        assert_eq!(short.prompt, [0, 1]);
        assert_eq!(short.chosen, (100..108).collect::<Vec<_>>());
        assert_eq!(short.rejected.len(), 5);
        // A long prompt loses its start; the completions keep half the cutoff.
        let mut long = pair(20, 12, 3);
        assert!(truncate(&mut long, 10));
        assert_eq!(long.prompt, (15..20).collect::<Vec<_>>());
        assert_eq!(long.chosen, (100..105).collect::<Vec<_>>());
        assert_eq!(long.rejected.len(), 3);
        // Short completions keep whole; the prompt gets the rest.
        let mut small = pair(20, 2, 3);
        assert!(truncate(&mut small, 10));
        assert_eq!(small.prompt, (13..20).collect::<Vec<_>>());
        assert_eq!(small.rejected.len(), 3);
    }

    #[test]
    fn completions_are_strings_or_assistant_messages() {
        let text = |v: Value| completion_text(&v, "chosen");
        assert_eq!(text(Value::from("好")).unwrap(), "好<|im_end|>");
        assert_eq!(
            text(serde_json::json!([{"role": "assistant", "content": "好"}])).unwrap(),
            "好<|im_end|>"
        );
        assert_eq!(
            text(serde_json::json!([
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"}
            ]))
            .unwrap(),
            "a<|im_end|>\n<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\nc<|im_end|>"
        );
        let kind = |v: Value| text(v).unwrap_err().kind;
        assert_eq!(
            kind(serde_json::json!([{"role": "user", "content": "a"}])),
            SkipKind::BadField
        );
        assert_eq!(kind(Value::from("")), SkipKind::Empty);
        assert_eq!(kind(Value::from("a<|im_end|>")), SkipKind::SpecialToken);
        assert_eq!(kind(Value::from(3)), SkipKind::BadField);
    }

    #[test]
    fn a_string_prompt_is_one_user_message() {
        assert_eq!(
            prompt_text(&Value::from("你好")).unwrap(),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            prompt_text(&Value::from(" ")).unwrap_err().kind,
            SkipKind::Empty
        );
    }
}
