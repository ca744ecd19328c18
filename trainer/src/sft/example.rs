//! One conversation as tokens and which of them are trained on, and files of conversations
//! read into examples.
//!
//! The conversation's text (see [`crate::sft::conversation`]) is tokenized once, special
//! tokens in it read as themselves and nothing added. Token `i` is trained on iff its bytes
//! lie entirely inside an assistant turn's content, or it is the `<|im_end|>` closing an
//! assistant turn; the template around the turns (`<|im_start|>assistant\n`, the `\n` after
//! `<|im_end|>`), system and user turns are not. A token the tokenizer merges across the
//! start of an assistant's content (a content starting with `\n` after the template's `\n`)
//! is not inside it, so not trained.

use crate::infer::tokenizer::{Codec, Tokenizer};
use crate::sft::SftOptions;
use crate::sft::conversation::{Message, Problem, parse_line, render};
use crate::sft::error::SftError;
use crate::sft::lines::{Line, LineCounts, read_batches};
use crate::sft::report::{ReadReport, SkipKind, Skipped, skipped_summary};
use rayon::prelude::*;
use std::path::Path;

/// Token ids at or above this cannot be laid out in rows (see [`crate::sft::rows`]).
pub const MAX_VOCAB: usize = 1 << 30;

/// A conversation's tokens: `ids[i]` and whether it is a token to learn (a target).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Example {
    pub ids: Vec<u32>,
    /// `trained[i]`: token `i` is trained on (predicted by position `i - 1` with weight 1).
    pub trained: Vec<bool>,
}

impl Example {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Predictions trained on: the trained tokens past the first (the first token is read,
    /// never predicted).
    pub fn trained_targets(&self) -> usize {
        self.trained.iter().skip(1).filter(|&&t| t).count()
    }

    /// Keep the first `cutoff` tokens; whether any were cut.
    pub fn truncate(&mut self, cutoff: usize) -> bool {
        let cut = self.ids.len() > cutoff;
        self.ids.truncate(cutoff);
        self.trained.truncate(cutoff);
        cut
    }
}

/// A tokenizer with the template's tokens: `<|im_end|>` and `<|endoftext|>` (the padding), each
/// read as one token.
pub struct Template<'t> {
    pub tokenizer: &'t Tokenizer,
    pub im_end: u32,
    /// Fills the rest of a row, and is the target where nothing is predicted.
    pub pad: u32,
}

impl<'t> Template<'t> {
    pub fn new(tokenizer: &'t Tokenizer) -> Result<Template<'t>, SftError> {
        if tokenizer.vocab_size > MAX_VOCAB {
            return Err(SftError::Setup(format!(
                "the tokenizer has {} tokens; rows hold ids below {MAX_VOCAB}",
                tokenizer.vocab_size
            )));
        }
        let id = |token: &str| -> Result<u32, SftError> {
            let id = tokenizer
                .token_id(token)
                .ok_or_else(|| SftError::Setup(format!("the tokenizer has no `{token}` token")))?;
            if tokenizer.encode(token)? != [id] {
                return Err(SftError::Setup(format!(
                    "the tokenizer does not read `{token}` in a text as its token"
                )));
            }
            Ok(id)
        };
        id("<|im_start|>")?;
        Ok(Template {
            tokenizer,
            im_end: id("<|im_end|>")?,
            pad: id("<|endoftext|>")?,
        })
    }

    /// `messages` as an example (not cut to any length).
    pub fn example(&self, messages: &[Message], options: &SftOptions) -> Result<Example, Problem> {
        let rendered = render(messages);
        let (ids, offsets) = self
            .tokenizer
            .encode_with_offsets(&rendered.text)
            .map_err(|e| Problem::new(SkipKind::Tokenizer, e.to_string()))?;
        let spans = match rendered.assistant.last() {
            Some(last) if options.last_turn_only => std::slice::from_ref(last),
            _ => &rendered.assistant[..],
        };
        let mut trained = Vec::with_capacity(ids.len());
        let mut closings = 0;
        for (&id, &(start, end)) in ids.iter().zip(&offsets) {
            // The last span starting at or before the token (spans are in order).
            let before = spans.partition_point(|span| span.start <= start);
            let inside = before > 0 && end <= spans[before - 1].end;
            let closing =
                id == self.im_end && spans.binary_search_by_key(&start, |span| span.end).is_ok();
            closings += usize::from(closing);
            trained.push(options.train_on_prompt || inside || closing);
        }
        if closings != spans.len() {
            return Err(Problem::new(
                SkipKind::Tokenizer,
                format!(
                    "the tokenizer's offsets put {closings} `<|im_end|>` tokens where {} assistant \
                     turns end",
                    spans.len()
                ),
            ));
        }
        Ok(Example { ids, trained })
    }

    /// The example of one line, cut to the cutoff, and whether it was cut; or why there is
    /// none.
    fn line_example(&self, line: &str, options: &SftOptions) -> Result<(Example, bool), Problem> {
        let mut example = self.example(&parse_line(line)?, options)?;
        let had_targets = example.trained_targets() > 0;
        let cut = example.truncate(options.cutoff);
        if example.trained_targets() == 0 {
            return Err(if had_targets {
                Problem::new(
                    SkipKind::TrainedPastCutoff,
                    format!(
                        "every token to train on lies past the cutoff of {} tokens",
                        options.cutoff
                    ),
                )
            } else {
                Problem::new(
                    SkipKind::NoTrainedToken,
                    "no token to train on (no assistant turn)",
                )
            });
        }
        Ok((example, cut))
    }
}

/// What one input line gave.
pub(crate) enum Outcome {
    /// An example, and whether it was cut to the cutoff.
    Kept(Example, bool),
    Skipped(Skipped),
}

/// Read the conversations of `path` (JSONL, either form), in order, into `report` and
/// `each`: every non-blank line gives one outcome. Lines are parsed and tokenized in
/// parallel, a batch at a time. Gives the file's size and hash as read.
pub(crate) fn read_file(
    path: &Path,
    template: &Template,
    options: &SftOptions,
    report: &mut ReadReport,
    each: &mut dyn FnMut(Outcome) -> Result<(), SftError>,
) -> Result<LineCounts, SftError> {
    check_options(options)?;
    let file = path.display().to_string();
    let counts = read_batches(path, &mut |batch: Vec<Line>| {
        let outcomes: Vec<Outcome> = batch
            .into_par_iter()
            .map(|line| {
                let problem = match line.text {
                    Err(skipped) => return Outcome::Skipped(skipped),
                    Ok(text) => match template.line_example(&text, options) {
                        Ok((example, cut)) => return Outcome::Kept(example, cut),
                        Err(problem) => problem,
                    },
                };
                Outcome::Skipped(Skipped {
                    file: file.clone(),
                    line: line.number,
                    kind: problem.kind,
                    reason: problem.reason,
                })
            })
            .collect();
        for outcome in outcomes {
            match &outcome {
                Outcome::Kept(example, cut) => {
                    report.examples += 1;
                    report.truncated += u64::from(*cut);
                    report.tokens += example.len() as u64;
                    report.trained += example.trained_targets() as u64;
                }
                Outcome::Skipped(skipped) => report.skip(skipped),
            }
            each(outcome)?;
        }
        Ok(())
    })?;
    report.lines += counts.lines;
    report.blank += counts.blank;
    Ok(counts)
}

pub(crate) fn check_options(options: &SftOptions) -> Result<(), SftError> {
    if options.cutoff < 2 {
        return Err(SftError::Setup(format!(
            "a cutoff of {} tokens leaves nothing to predict; it must be at least 2",
            options.cutoff
        )));
    }
    Ok(())
}

/// The examples of a file, and what reading it did.
#[derive(Clone, Debug, Default)]
pub struct ExampleSet {
    /// One per kept conversation, in file order, each cut to the cutoff (not packed).
    pub examples: Vec<Example>,
    pub report: ReadReport,
    /// Every line that gave no example, in file order.
    pub skipped: Vec<Skipped>,
}

/// Every conversation of `path` (JSONL: `{"messages": [...]}` or rendered `{"text": ...}`
/// lines, mixed as they come) as an example of at most `options.cutoff` tokens (`packing` is
/// not used). An error if the file cannot be read or no line gives an example.
pub fn read_examples(
    path: &Path,
    tokenizer: &Tokenizer,
    options: &SftOptions,
) -> Result<ExampleSet, SftError> {
    let template = Template::new(tokenizer)?;
    let mut set = ExampleSet::default();
    let (examples, skipped) = (&mut set.examples, &mut set.skipped);
    read_file(path, &template, options, &mut set.report, &mut |outcome| {
        match outcome {
            Outcome::Kept(example, _) => examples.push(example),
            Outcome::Skipped(line) => skipped.push(line),
        }
        Ok(())
    })?;
    if set.examples.is_empty() {
        return Err(SftError::NothingUsable {
            reason: format!(
                "`{}`: {}",
                path.display(),
                skipped_summary(&set.report, set.skipped.first())
            ),
        });
    }
    Ok(set)
}
