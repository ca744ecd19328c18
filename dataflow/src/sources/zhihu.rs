//! `zhihu`: Zhihu question/answer parquet, `INSTRUCTION` and `RESPONSE`, rendered as chat.

use crate::reject::RecordError;
use crate::sources::chat::render_chat;
use crate::sources::fields::{Record, required_text};

pub fn render(record: &Record) -> Result<String, RecordError> {
    let question = required_text(record, "INSTRUCTION")?;
    let answer = required_text(record, "RESPONSE")?;
    Ok(render_chat(&[(question, answer)]))
}
