//! Chat through the Qwen template (ChatML), as Qwen's `tokenizer_config.json` writes it:
//!
//! ```text
//! <|im_start|>system\n{system}<|im_end|>\n
//! <|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{reply}<|im_end|>\n   (each kept turn)
//! <|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n
//! ```
//!
//! with the system prompt `You are a helpful assistant.` unless another is given. The history
//! is kept within the model's context (`max_position_embeddings`): before each reply the
//! oldest turns are dropped until the prompt and `max_new_tokens` fit (the reply gets what is
//! left when even the message alone leaves less). The key/value cache is kept from turn to
//! turn, so only the new part of the prompt is fed. It runs on any [`Decoder`].

use crate::error::TrainError;
use crate::infer::decoder::Decoder;
use crate::infer::generate::{GenerateOptions, Generation, generate_cached};
use crate::infer::tokenizer::Codec;

/// Qwen's default system prompt.
pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

/// One exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub user: String,
    pub assistant: String,
}

/// The template around `system`, the `turns` so far and the new `message`, ending where the
/// assistant's reply starts.
pub fn template(system: &str, turns: &[Turn], message: &str) -> String {
    let mut text = format!("<|im_start|>system\n{system}<|im_end|>\n");
    for turn in turns {
        text.push_str(&format!(
            "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n{}<|im_end|>\n",
            turn.user, turn.assistant
        ));
    }
    text.push_str(&format!(
        "<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"
    ));
    text
}

/// A message of a conversation given whole (an OpenAI-style `messages` list): `role` is
/// `system`, `user` or `assistant`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Qwen's template over `messages` as its `chat_template` renders them: each message as
/// `<|im_start|>{role}\n{content}<|im_end|>\n`, the default system prompt first when the first
/// message is not a system one, and the start of the assistant's reply at the end. For a
/// system prompt, alternating turns and a last user message it is [`template`].
pub fn render(messages: &[Message]) -> String {
    let mut text = String::new();
    if messages.first().is_none_or(|m| m.role != "system") {
        text.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"));
    }
    for message in messages {
        text.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            message.role, message.content
        ));
    }
    text.push_str("<|im_start|>assistant\n");
    text
}

/// A line typed into `steel chat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A message to answer.
    Say(String),
    /// `/reset`: forget the turns so far.
    Reset,
    /// `/system TEXT`: a new system prompt (`/system` alone: the default again).
    System(Option<String>),
    /// `/quit` (or `/exit`).
    Quit,
    /// A blank line.
    Nothing,
    /// Another `/word`.
    Unknown(String),
}

impl Command {
    pub fn parse(line: &str) -> Command {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Command::Nothing;
        }
        let Some(rest) = line.trim_start().strip_prefix('/') else {
            return Command::Say(line.to_string());
        };
        let (word, argument) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let argument = argument.trim();
        match word {
            "reset" => Command::Reset,
            "quit" | "exit" => Command::Quit,
            "system" if argument.is_empty() => Command::System(None),
            "system" => Command::System(Some(argument.to_string())),
            _ => Command::Unknown(format!("/{word}")),
        }
    }
}

/// A reply and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub generation: Generation,
    /// Tokens of the prompt the reply followed (template, kept turns, message).
    pub prompt_tokens: usize,
    /// The oldest turns dropped to fit the context before this reply.
    pub dropped_turns: usize,
}

/// A conversation with a model.
pub struct Chat<'m, D: Decoder> {
    model: &'m D,
    codec: &'m dyn Codec,
    options: GenerateOptions,
    system: String,
    turns: Vec<Turn>,
    cache: D::Cache,
    /// Replies so far: reply `r` samples with seed `options.seed + r`.
    replies: u64,
}

impl<'m, D: Decoder> Chat<'m, D> {
    /// `system`: the system prompt (`None`: [`DEFAULT_SYSTEM`]).
    pub fn new(
        model: &'m D,
        codec: &'m dyn Codec,
        options: GenerateOptions,
        system: Option<String>,
    ) -> Chat<'m, D> {
        Chat {
            model,
            codec,
            options,
            system: system.unwrap_or_else(|| DEFAULT_SYSTEM.to_string()),
            cache: model.new_cache(),
            turns: Vec::new(),
            replies: 0,
        }
    }

    pub fn turns(&self) -> &[Turn] {
        &self.turns
    }

    pub fn system(&self) -> &str {
        &self.system
    }

    /// Forget the turns so far (the system prompt stays).
    pub fn reset(&mut self) {
        self.turns.clear();
    }

    /// A new system prompt (`None`: the default); the turns so far stay.
    pub fn set_system(&mut self, system: Option<String>) {
        self.system = system.unwrap_or_else(|| DEFAULT_SYSTEM.to_string());
    }

    /// The prompt ids for `message` after as many of the latest turns as fit with
    /// `max_new_tokens`, and how many of the oldest turns that leaves out.
    fn fit(&self, message: &str) -> Result<(Vec<u32>, usize), TrainError> {
        let context = self.model.config().max_positions;
        let mut dropped = 0;
        loop {
            let text = template(&self.system, &self.turns[dropped..], message);
            let ids = self.codec.encode(&text)?;
            if ids.len() + self.options.max_new_tokens <= context || dropped == self.turns.len() {
                if ids.len() >= context {
                    return Err(TrainError::Data(format!(
                        "the message with the system prompt is {} tokens; the model's context \
                         holds {context} with room for a reply",
                        ids.len()
                    )));
                }
                return Ok((ids, dropped));
            }
            dropped += 1;
        }
    }

    /// Answer `message`, streaming the reply's text to `on_text`; the exchange joins the
    /// history.
    pub fn say(
        &mut self,
        message: &str,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Reply, TrainError> {
        let (ids, dropped) = self.fit(message)?;
        self.turns.drain(..dropped);
        let context = self.model.config().max_positions;
        let options = GenerateOptions {
            max_new_tokens: self.options.max_new_tokens.min(context - ids.len()),
            seed: self.options.seed.wrapping_add(self.replies),
            ..self.options.clone()
        };
        let (mut generations, _) = generate_cached(
            self.model,
            self.codec,
            std::slice::from_mut(&mut self.cache),
            &[&ids],
            &options,
            &mut |_, piece| on_text(piece),
        )?;
        let generation = generations.pop().expect("one prompt");
        self.replies += 1;
        self.turns.push(Turn {
            user: message.to_string(),
            assistant: generation.text.clone(),
        });
        Ok(Reply {
            generation,
            prompt_tokens: ids.len(),
            dropped_turns: dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_qwens_chatml() {
        let turns = [Turn {
            user: "你好".into(),
            assistant: "你好！".into(),
        }];
        assert_eq!(
            template(DEFAULT_SYSTEM, &turns, "再见"),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n你好！<|im_end|>\n\
             <|im_start|>user\n再见<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn rendered_messages_are_the_template() {
        let message = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        let turns = [Turn {
            user: "你好".into(),
            assistant: "你好！".into(),
        }];
        assert_eq!(
            render(&[
                message("system", "S"),
                message("user", "你好"),
                message("assistant", "你好！"),
                message("user", "再见"),
            ]),
            template("S", &turns, "再见")
        );
        // No system message: the default one.
        assert_eq!(
            render(&[message("user", "再见")]),
            template(DEFAULT_SYSTEM, &[], "再见")
        );
    }

    #[test]
    fn commands_are_read_from_lines() {
        assert_eq!(Command::parse("/reset\n"), Command::Reset);
        assert_eq!(Command::parse("/quit"), Command::Quit);
        assert_eq!(
            Command::parse("/system 你是一个助手 "),
            Command::System(Some("你是一个助手".into()))
        );
        assert_eq!(Command::parse("/system"), Command::System(None));
        assert_eq!(Command::parse("  \r\n"), Command::Nothing);
        assert_eq!(Command::parse("/help"), Command::Unknown("/help".into()));
        assert_eq!(Command::parse("a / b"), Command::Say("a / b".into()));
    }
}
