//! Steel-LLM's rendering of question/answer data as Qwen chat text.

/// The system turn every chat text starts with.
pub const SYSTEM_TURN: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";
const USER_OPEN: &str = "<|im_start|>user\n";
const TURN_CLOSE: &str = "<|im_end|>\n";
const ASSISTANT_OPEN: &str = "<|im_start|>assistant\n";

/// Render `(question, answer)` pairs as one chat text.
///
/// Each pair is a user turn and an assistant turn, each closed by `<|im_end|>\n`; the final
/// closing `<|im_end|>\n` is left off, so a single pair gives exactly Steel's single-turn
/// template. (Steel's script meant the same with `str.strip("<|im_end|>\n")`, which strips a
/// *set of characters* from both ends and so also ate answer endings such as a final `e`, `n`
/// or `d`, and the leading `<|im_` of the system turn; we remove exactly the one suffix.)
///
/// ```
/// use steel_dataflow::sources::chat::render_chat;
/// let text = render_chat(&[("你好".into(), "您好！".into())]);
/// assert_eq!(
///     text,
///     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
///      <|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n您好！"
/// );
/// ```
pub fn render_chat(pairs: &[(String, String)]) -> String {
    let body: usize = pairs.iter().map(|(q, a)| q.len() + a.len()).sum();
    let mut text = String::with_capacity(SYSTEM_TURN.len() + body + pairs.len() * 64);
    text.push_str(SYSTEM_TURN);
    for (question, answer) in pairs {
        text.push_str(USER_OPEN);
        text.push_str(question);
        text.push_str(TURN_CLOSE);
        text.push_str(ASSISTANT_OPEN);
        text.push_str(answer);
        text.push_str(TURN_CLOSE);
    }
    if !pairs.is_empty() {
        text.truncate(text.len() - TURN_CLOSE.len());
    }
    text
}
