//! `firefly`: Firefly instructions, `kind`, `input` and `target`, rendered as chat.

use crate::reject::RecordError;
use crate::sources::chat::render_chat;
use crate::sources::fields::{Record, required_text};

pub fn render(record: &Record) -> Result<String, RecordError> {
    let question = required_text(record, "input")?;
    let answer = required_text(record, "target")?;
    Ok(render_chat(&[(question, answer)]))
}
