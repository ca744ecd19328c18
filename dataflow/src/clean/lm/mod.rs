//! Back-off n-gram language models for `perplexity_filter`: read and score KenLM-style ARPA
//! files (`arpa`), and train one with interpolated modified Kneser-Ney smoothing (`train`),
//! so the filter works on a fresh machine without downloading data-juicer's KenLM models.
//!
//! A document is one sentence: its pieces (characters or words, `Unit`) between `<s>` and
//! `</s>`, scored the way KenLM's `model.score(line)` does (log10, `</s>` counted).

pub mod arpa;
pub mod train;

use crate::clean::pytext;

pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";
pub const UNK: &str = "<unk>";

/// What a model's tokens are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Every non-whitespace character (suits Chinese, which has no spaces between words).
    Char,
    /// Words between spaces, tabs and newlines.
    Word,
}

/// A language model that cannot be built: a bad setting or an unreadable corpus.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LmError(pub String);

impl Unit {
    pub fn parse(name: &str) -> Result<Unit, LmError> {
        match name {
            "char" => Ok(Unit::Char),
            "word" => Ok(Unit::Word),
            other => Err(LmError(format!(
                "unknown LM unit `{other}`; expected char or word"
            ))),
        }
    }

    /// The pieces of `text`, in order.
    pub fn pieces(self, text: &str) -> Vec<&str> {
        match self {
            Unit::Char => text
                .char_indices()
                .filter(|(_, c)| !pytext::is_space(*c))
                .map(|(at, c)| &text[at..at + c.len_utf8()])
                .collect(),
            Unit::Word => pytext::split_on_whitespace(text, true, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_by_unit() {
        assert_eq!(Unit::Char.pieces("今天 好\n!"), ["今", "天", "好", "!"]);
        assert_eq!(Unit::Word.pieces("a b\nc"), ["a", "b", "c"]);
        assert!(Unit::Char.pieces(" \n").is_empty());
    }
}
