//! `belle-multiturn`: BELLE conversations, `conversations: [{"from": "human"|"assistant", "value"}]`.

use crate::reject::{RecordError, RejectCode};
use crate::sources::chat::render_chat;
use crate::sources::fields::{Record, array_field, non_empty, object_value, str_field};
use crate::sources::normalize::normalize;

/// Turns must alternate human, assistant, human, assistant, ... and end with an assistant
/// turn; each human turn and the assistant turn after it become one chat pair. (`user` and
/// `gpt` are accepted as the usual other spellings of the two speakers.)
pub fn render(record: &Record) -> Result<String, RecordError> {
    let turns = array_field(record, "conversations")?;
    let mut pairs = Vec::with_capacity(turns.len() / 2);
    let mut question: Option<String> = None;
    for (index, turn) in turns.iter().enumerate() {
        let turn = object_value(turn, &format!("conversations[{index}]"))?;
        let speaker = str_field(turn, "from")?;
        let what = format!("conversations[{index}].value");
        let value = non_empty(normalize(str_field(turn, "value")?), &what)?;
        match (speaker, question.take()) {
            ("human" | "user", None) => question = Some(value),
            ("assistant" | "gpt", Some(q)) => pairs.push((q, value)),
            ("human" | "user" | "assistant" | "gpt", _) => {
                return Err(bad(format!(
                    "conversations[{index}] is a `{speaker}` turn out of order; \
                     expected human and assistant turns to alternate, human first"
                )));
            }
            (other, _) => {
                return Err(bad(format!(
                    "conversations[{index}] has speaker `{other}`, expected `human` or `assistant`"
                )));
            }
        }
    }
    if question.is_some() {
        return Err(bad(
            "the conversation ends with an unanswered human turn".into()
        ));
    }
    if pairs.is_empty() {
        return Err(bad("the conversation has no turns".into()));
    }
    Ok(render_chat(&pairs))
}

fn bad(detail: String) -> RecordError {
    RecordError::new(RejectCode::BadConversation, detail)
}
