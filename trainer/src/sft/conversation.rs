//! One input line as a conversation, and a conversation as text through the Qwen template.
//!
//! A conversation renders as its messages, each `<|im_start|>{role}\n{content}<|im_end|>`,
//! joined by `\n`, with the default system message (`You are a helpful assistant.`) first
//! when the first message is not a system one. It ends right after the last `<|im_end|>`: no
//! trailing `\n` (a token that would teach nothing) and no opening of a next turn. That is
//! exactly what `steel convert` writes once the missing final `<|im_end|>` is appended, so a
//! line of either form gives the same text for the same conversation.

use crate::infer::chat::DEFAULT_SYSTEM;
use crate::sft::report::SkipKind;
use serde_json::Value;
use std::ops::Range;
use steel_dataflow::pack::tokenizer::SPECIAL_TOKENS;

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn parse(role: &str) -> Option<Role> {
        match role {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation: non-empty content with no template token in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// Why a line is not a usable conversation (the file and line are added by the reader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: SkipKind,
    pub reason: String,
}

impl Problem {
    pub fn new(kind: SkipKind, reason: impl Into<String>) -> Problem {
        Problem {
            kind,
            reason: reason.into(),
        }
    }
}

/// A conversation's text and where its assistant turns' contents lie in it (byte ranges;
/// each is followed by the `<|im_end|>` closing its turn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub assistant: Vec<Range<usize>>,
}

/// The Qwen template over `messages`, ending after the last message's `<|im_end|>`.
pub fn render(messages: &[Message]) -> Rendered {
    let body: usize = messages.iter().map(|m| m.content.len() + 32).sum();
    let mut text = String::with_capacity(body + DEFAULT_SYSTEM.len() + 32);
    let mut assistant = Vec::new();
    if messages.first().is_none_or(|m| m.role != Role::System) {
        text.push_str(&format!("{START}system\n{DEFAULT_SYSTEM}{END}"));
    }
    for message in messages {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(START);
        text.push_str(message.role.name());
        text.push('\n');
        let start = text.len();
        text.push_str(&message.content);
        if message.role == Role::Assistant {
            assistant.push(start..text.len());
        }
        text.push_str(END);
    }
    Rendered { text, assistant }
}

/// The prompt of a preference pair: `messages` through the template, then the opening of
/// the assistant's reply, `\n<|im_start|>assistant\n` (what `infer::chat::render` writes).
pub fn render_prompt(messages: &[Message]) -> String {
    let mut text = render(messages).text;
    text.push_str(&format!("\n{START}assistant\n"));
    text
}

/// The conversation of one JSONL line: `{"messages": [...]}` or `{"text": "..."}` (other
/// fields are ignored; `messages` is read when both are there).
pub fn parse_line(line: &str) -> Result<Vec<Message>, Problem> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Problem::new(SkipKind::NotJson, format!("not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(Problem::new(SkipKind::NotJson, "not a JSON object"));
    };
    if let Some(messages) = object.get("messages") {
        parse_messages(messages, "messages")
    } else if let Some(text) = object.get("text") {
        let text = text
            .as_str()
            .ok_or_else(|| Problem::new(SkipKind::BadField, "`text` is not a string"))?;
        parse_rendered(text)
    } else {
        Err(Problem::new(
            SkipKind::BadField,
            "no `messages` or `text` field",
        ))
    }
}

/// A list of `{"role", "content"}` objects (`field` names it in reasons).
pub fn parse_messages(value: &Value, field: &str) -> Result<Vec<Message>, Problem> {
    let Value::Array(items) = value else {
        return Err(Problem::new(
            SkipKind::BadField,
            format!("`{field}` is not a list"),
        ));
    };
    if items.is_empty() {
        return Err(Problem::new(SkipKind::Empty, format!("`{field}` is empty")));
    }
    let mut messages = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let at = format!("{field}[{index}]");
        let Value::Object(item) = item else {
            return Err(Problem::new(
                SkipKind::BadField,
                format!("{at} is not an object"),
            ));
        };
        let string = |name: &str| match item.get(name) {
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(Problem::new(
                SkipKind::BadField,
                format!("{at}.{name} is not a string"),
            )),
            None => Err(Problem::new(
                SkipKind::BadField,
                format!("{at} has no `{name}`"),
            )),
        };
        let role_name = string("role")?;
        let role = Role::parse(role_name).ok_or_else(|| {
            Problem::new(
                SkipKind::UnknownRole,
                format!("{at}.role is `{role_name}`; expected system, user or assistant"),
            )
        })?;
        let content = string("content")?;
        check_content(content, &at)?;
        messages.push(Message {
            role,
            content: content.to_string(),
        });
    }
    Ok(messages)
}

/// Chat text rendered through the Qwen template, back into its messages: turns
/// `<|im_start|>{role}\n{content}<|im_end|>` separated by `\n`; the last turn's `<|im_end|>`
/// (and a `\n` after it) may be missing. Anything else — text outside the turns, a turn
/// opened inside another — is not chat.
pub fn parse_rendered(text: &str) -> Result<Vec<Message>, Problem> {
    let not_chat = |at: usize, what: &str| {
        Problem::new(SkipKind::NotChat, format!("byte {at} of `text`: {what}"))
    };
    let mut messages = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        let Some(turn) = rest.strip_prefix(START) else {
            return Err(not_chat(at, "expected `<|im_start|>`"));
        };
        let Some(newline) = turn.find('\n') else {
            return Err(not_chat(at, "a turn's role is not followed by a newline"));
        };
        let role_name = &turn[..newline];
        let index = messages.len();
        let role = Role::parse(role_name).ok_or_else(|| {
            Problem::new(
                SkipKind::UnknownRole,
                format!("turn {index} has role `{role_name}`; expected system, user or assistant"),
            )
        })?;
        let body_at = at + START.len() + newline + 1;
        let body = &text[body_at..];
        let (content, next) = match body.find(END) {
            Some(end) => {
                let after = body_at + end + END.len();
                let next = match &text[after..] {
                    "" | "\n" => text.len(),
                    rest if rest.starts_with("\n") => after + 1,
                    _ => return Err(not_chat(after, "expected a newline after `<|im_end|>`")),
                };
                (&body[..end], next)
            }
            // The last turn of a `steel convert` text: its `<|im_end|>` is left off.
            None => (body, text.len()),
        };
        if let Some(inner) = content.find(START) {
            return Err(not_chat(
                body_at + inner,
                "a turn opens before the one before it is closed",
            ));
        }
        check_content(content, &format!("turn {index}"))?;
        messages.push(Message {
            role,
            content: content.to_string(),
        });
        at = next;
    }
    if messages.is_empty() {
        return Err(Problem::new(SkipKind::Empty, "`text` is empty"));
    }
    Ok(messages)
}

fn check_content(content: &str, at: &str) -> Result<(), Problem> {
    if content.trim().is_empty() {
        return Err(Problem::new(
            SkipKind::Empty,
            format!("{at} has empty content"),
        ));
    }
    if let Some(token) = SPECIAL_TOKENS.iter().find(|t| content.contains(**t)) {
        return Err(Problem::new(
            SkipKind::SpecialToken,
            format!("{at}'s content holds the template token `{token}`"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: Role, content: &str) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn messages_render_through_the_template_without_a_trailing_newline() {
        let rendered = render(&[
            message(Role::User, "你好"),
            message(Role::Assistant, "您好！"),
        ]);
        assert_eq!(
            rendered.text,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n您好！<|im_end|>"
        );
        assert_eq!(rendered.assistant.len(), 1);
        assert_eq!(&rendered.text[rendered.assistant[0].clone()], "您好！");
        assert!(rendered.text[rendered.assistant[0].end..].starts_with("<|im_end|>"));
        // A system message of its own replaces the default.
        let own = render(&[message(Role::System, "S"), message(Role::User, "q")]);
        assert_eq!(
            own.text,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>"
        );
    }

    #[test]
    fn a_pair_prompt_is_what_generation_renders() {
        let messages = [
            message(Role::User, "q"),
            message(Role::Assistant, "a"),
            message(Role::User, "q2"),
        ];
        let chat: Vec<crate::infer::chat::Message> = messages
            .iter()
            .map(|m| crate::infer::chat::Message {
                role: m.role.name().into(),
                content: m.content.clone(),
            })
            .collect();
        assert_eq!(render_prompt(&messages), crate::infer::chat::render(&chat));
    }

    #[test]
    fn rendered_text_parses_back_with_or_without_the_last_end() {
        let messages = vec![
            message(Role::System, "You are a helpful assistant."),
            message(Role::User, "和尚\n输出下联:"),
            message(Role::Assistant, "悟空"),
        ];
        let text = render(&messages).text;
        assert_eq!(parse_rendered(&text).unwrap(), messages);
        let convert = text.strip_suffix("<|im_end|>").unwrap();
        assert_eq!(parse_rendered(convert).unwrap(), messages);
        assert_eq!(parse_rendered(&format!("{text}\n")).unwrap(), messages);
    }

    #[test]
    fn text_that_is_not_chat_is_refused_with_its_reason() {
        let kind = |text: &str| parse_rendered(text).unwrap_err().kind;
        assert_eq!(kind("将以下句子翻译成法语。\n我爱你。"), SkipKind::NotChat);
        assert_eq!(kind("<|im_start|>user\nq<|im_end|>x"), SkipKind::NotChat);
        assert_eq!(
            kind("<|im_start|>user\nq<|im_start|>assistant\na"),
            SkipKind::NotChat
        );
        assert_eq!(kind("<|im_start|>user"), SkipKind::NotChat);
        assert_eq!(kind("<|im_start|>tool\nq<|im_end|>"), SkipKind::UnknownRole);
        assert_eq!(kind("<|im_start|>user\n  <|im_end|>"), SkipKind::Empty);
        assert_eq!(kind(""), SkipKind::Empty);
        assert_eq!(
            kind("<|im_start|>user\nq<|endoftext|><|im_end|>"),
            SkipKind::SpecialToken
        );
    }

    #[test]
    fn lines_are_read_in_either_form_and_refused_with_reasons() {
        let line = r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}"#;
        let messages = parse_line(line).unwrap();
        assert_eq!(
            messages,
            [message(Role::User, "q"), message(Role::Assistant, "a")]
        );
        let text = serde_json::json!({"text": render(&messages).text, "meta": {}}).to_string();
        assert_eq!(
            parse_line(&text).unwrap()[1..],
            messages[..],
            "the rendered form has the default system message written out"
        );
        let kind = |line: &str| parse_line(line).unwrap_err().kind;
        assert_eq!(kind("{"), SkipKind::NotJson);
        assert_eq!(kind("[1]"), SkipKind::NotJson);
        assert_eq!(kind(r#"{"other": 1}"#), SkipKind::BadField);
        assert_eq!(kind(r#"{"text": 3}"#), SkipKind::BadField);
        assert_eq!(kind(r#"{"messages": {}}"#), SkipKind::BadField);
        assert_eq!(kind(r#"{"messages": []}"#), SkipKind::Empty);
        assert_eq!(kind(r#"{"messages": [3]}"#), SkipKind::BadField);
        assert_eq!(
            kind(r#"{"messages": [{"role": "user"}]}"#),
            SkipKind::BadField
        );
        assert_eq!(
            kind(r#"{"messages": [{"role": "user", "content": null}]}"#),
            SkipKind::BadField
        );
        assert_eq!(
            kind(r#"{"messages": [{"role": "tool", "content": "x"}]}"#),
            SkipKind::UnknownRole
        );
        assert_eq!(
            kind(r#"{"messages": [{"role": "user", "content": ""}]}"#),
            SkipKind::Empty
        );
        assert_eq!(
            kind(r#"{"messages": [{"role": "assistant", "content": "a<|im_end|>"}]}"#),
            SkipKind::SpecialToken
        );
    }
}
