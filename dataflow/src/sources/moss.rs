//! `moss`: MOSS conversations, `conversation: [{"human", "assistant"}]`, one object per round.

use crate::reject::{RecordError, RejectCode};
use crate::sources::chat::render_chat;
use crate::sources::fields::{Record, array_field, non_empty, object_value, str_field};
use crate::sources::normalize::normalize;

pub fn render(record: &Record) -> Result<String, RecordError> {
    let rounds = array_field(record, "conversation")?;
    if rounds.is_empty() {
        return Err(RecordError::new(
            RejectCode::BadConversation,
            "the conversation has no rounds",
        ));
    }
    let mut pairs = Vec::with_capacity(rounds.len());
    for (index, round) in rounds.iter().enumerate() {
        let round = object_value(round, &format!("conversation[{index}]"))?;
        let part = |name: &str| {
            let what = format!("conversation[{index}].{name}");
            non_empty(normalize(str_field(round, name)?), &what)
        };
        pairs.push((part("human")?, part("assistant")?));
    }
    Ok(render_chat(&pairs))
}
