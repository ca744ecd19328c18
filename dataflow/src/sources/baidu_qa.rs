//! `baidu-qa`: Baidu Zhidao question/answer pairs, `title` (the question) and `answer`.

use crate::reject::RecordError;
use crate::sources::chat::render_chat;
use crate::sources::fields::{Record, required_text};

pub fn render(record: &Record) -> Result<String, RecordError> {
    let question = required_text(record, "title")?;
    let answer = required_text(record, "answer")?;
    Ok(render_chat(&[(question, answer)]))
}
