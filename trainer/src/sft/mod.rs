//! Chat data for supervised fine-tuning (SFT) and preference pairs for DPO, as token rows.
//!
//! Input lines (JSONL, one conversation a line) come in two forms:
//!
//! - `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`, the
//!   convention of TRL and LLaMA-Factory, rendered through the Qwen template;
//! - `{"text": "..."}`, chat text already rendered through that template, as `steel convert`
//!   writes it (its last turn lacks the closing `<|im_end|>`, which is appended, as
//!   `steel pack` does), parsed back into its turns.
//!
//! Both give the same text for the same conversation (see [`conversation`]), which is
//! tokenized once; a token is trained on (is a target of the loss) iff its bytes lie inside an
//! assistant turn's content, or it is the `<|im_end|>` closing an assistant turn
//! ([`example`]). Examples are cut at [`SftOptions::cutoff`] tokens and laid out in rows of
//! `cutoff` positions, one example a row or packed ([`rows`]); [`Prepared`] writes the rows
//! once to a directory with a manifest, so a run reads exactly the same rows when it resumes.
//! DPO pairs are [`pairs`].
//!
//! Bad lines never stop a preparation and never vanish: each is set aside with its file, line
//! and reason ([`Skipped`]) and counted in the [`Report`]; so is every example left with no
//! token to train on.

pub mod conversation;
pub mod error;
pub mod example;
pub mod lines;
pub mod pairs;
pub mod prepared;
pub mod report;
pub mod rows;

pub use conversation::Message;
pub use error::SftError;
pub use example::{Example, ExampleSet, Template, read_examples};
pub use pairs::{Pair, PairReport, PairSet, read_pairs};
pub use prepared::{Manifest, Prepared};
pub use report::{ReadReport, Report, RowReport, SkipKind, Skipped};
pub use rows::{Plan, RowLayout, build_rows};

use serde::{Deserialize, Serialize};

/// How conversations become training rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftOptions {
    /// Tokens an example keeps (its end is cut off past them), and the positions of a row.
    pub cutoff: usize,
    /// Several examples to a row, each its own document; otherwise one example a row.
    pub packing: bool,
    /// Train on every token, the template, system and user turns included.
    pub train_on_prompt: bool,
    /// Train only on the last assistant turn of each conversation (ignored with
    /// `train_on_prompt`).
    pub last_turn_only: bool,
}

impl Default for SftOptions {
    fn default() -> SftOptions {
        SftOptions {
            cutoff: 2048,
            packing: false,
            train_on_prompt: false,
            last_turn_only: false,
        }
    }
}
