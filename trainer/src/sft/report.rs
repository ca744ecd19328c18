//! What reading and laying out chat data did: lines set aside and why, examples cut, tokens
//! trained, padding.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a line gave no example (or pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    // Quarantined: the line is not usable input.
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// Not a JSON object.
    NotJson,
    /// A field missing or of the wrong type.
    BadField,
    /// A role other than `system`, `user` and `assistant`.
    UnknownRole,
    /// No messages, or a message with empty content.
    Empty,
    /// Content holding a token of the template (`<|im_start|>`, `<|im_end|>`,
    /// `<|endoftext|>`), which would be read as that token and break the turns.
    SpecialToken,
    /// A `text` that is not chat rendered through the Qwen template.
    NotChat,
    /// The tokenizer failed on the text.
    Tokenizer,
    // Dropped: usable input that leaves nothing to learn.
    /// No token to train on (no assistant turn).
    NoTrainedToken,
    /// Tokens to train on only past the cutoff.
    TrainedPastCutoff,
    /// A preference pair whose chosen and rejected completions are the same.
    SameCompletions,
}

impl SkipKind {
    /// Whether the line was good input left with nothing to learn (rather than bad input).
    pub fn is_drop(self) -> bool {
        matches!(
            self,
            SkipKind::NoTrainedToken | SkipKind::TrainedPastCutoff | SkipKind::SameCompletions
        )
    }
}

/// A line that gave nothing, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The input file, as given.
    pub file: String,
    /// 1 for the first line.
    pub line: u64,
    pub kind: SkipKind,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Reading conversations into examples. Every line is counted once:
/// `lines = blank + examples + Σ quarantined + Σ dropped`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadReport {
    /// Lines read, blank ones included.
    pub lines: u64,
    /// Lines of nothing but whitespace (not data, skipped).
    pub blank: u64,
    /// Examples kept.
    pub examples: u64,
    /// Kept examples longer than the cutoff, cut to it.
    pub truncated: u64,
    /// Bad lines, by kind.
    pub quarantined: BTreeMap<SkipKind, u64>,
    /// Good lines without a token to train on, by kind.
    pub dropped: BTreeMap<SkipKind, u64>,
    /// Tokens of the kept examples (after cutting).
    pub tokens: u64,
    /// Predictions trained on: the kept examples' trained tokens past their first.
    pub trained: u64,
}

impl ReadReport {
    /// Count `skipped` under its kind.
    pub fn skip(&mut self, skipped: &Skipped) {
        let counts = if skipped.kind.is_drop() {
            &mut self.dropped
        } else {
            &mut self.quarantined
        };
        *counts.entry(skipped.kind).or_default() += 1;
    }

    pub fn quarantined_lines(&self) -> u64 {
        self.quarantined.values().sum()
    }

    pub fn dropped_lines(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// Laying examples out in rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowReport {
    pub rows: u64,
    /// Positions per row (the cutoff).
    pub row_len: u64,
    /// `rows × row_len`.
    pub positions: u64,
    /// Positions holding no example's token.
    pub padding: u64,
    /// Non-padding positions over all positions, in [0, 1].
    pub utilisation: f64,
}

impl RowReport {
    pub fn new(rows: u64, row_len: u64, tokens: u64) -> RowReport {
        let positions = rows * row_len;
        RowReport {
            rows,
            row_len,
            positions,
            padding: positions - tokens,
            utilisation: if positions == 0 {
                0.0
            } else {
                tokens as f64 / positions as f64
            },
        }
    }
}

/// Both stages of a preparation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub read: ReadReport,
    pub rows: RowReport,
}

/// A short account of lines set aside, for an error: how many, and the first.
pub(crate) fn skipped_summary(report: &ReadReport, first: Option<&Skipped>) -> String {
    let mut text = format!(
        "{} lines read: {} blank, {} quarantined, {} dropped",
        report.lines,
        report.blank,
        report.quarantined_lines(),
        report.dropped_lines()
    );
    if let Some(first) = first {
        text.push_str(&format!(" (the first: {first})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_counted_apart_and_written_as_words() {
        let mut report = ReadReport::default();
        let skip = |kind| Skipped {
            file: "a.jsonl".into(),
            line: 3,
            kind,
            reason: "r".into(),
        };
        report.skip(&skip(SkipKind::NotJson));
        report.skip(&skip(SkipKind::NotJson));
        report.skip(&skip(SkipKind::NoTrainedToken));
        assert_eq!(report.quarantined_lines(), 2);
        assert_eq!(report.dropped_lines(), 1);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["quarantined"]["not_json"], 2);
        assert_eq!(json["dropped"]["no_trained_token"], 1);
        let back: ReadReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        assert_eq!(skip(SkipKind::Empty).to_string(), "a.jsonl:3: r");
    }

    #[test]
    fn utilisation_is_tokens_over_positions() {
        let rows = RowReport::new(2, 8, 12);
        assert_eq!((rows.positions, rows.padding), (16, 4));
        assert_eq!(rows.utilisation, 0.75);
        assert_eq!(RowReport::new(0, 8, 0).utilisation, 0.0);
    }
}
