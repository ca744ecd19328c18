//! `belle`: BELLE single-turn instructions, `instruction`, optional `input`, `output`.

use crate::reject::RecordError;
use crate::sources::fields::{Record, optional_str_field, required_text};
use crate::sources::normalize::normalize;

/// Plain text, not chat: `instruction`, then `input` when it is not empty, then `output`,
/// joined by newlines.
pub fn render(record: &Record) -> Result<String, RecordError> {
    let mut text = required_text(record, "instruction")?;
    let input = normalize(optional_str_field(record, "input")?);
    if !input.trim().is_empty() {
        text.push('\n');
        text.push_str(&input);
    }
    text.push('\n');
    text.push_str(&required_text(record, "output")?);
    Ok(text)
}
