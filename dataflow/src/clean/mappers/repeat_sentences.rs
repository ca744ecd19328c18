//! `remove_repeat_sentences_mapper`: drop every sentence already seen earlier in the same
//! document, line structure kept.
//!
//! Sentences are split as data-juicer's `split_sentence` does (after `.。!！?？`, six dots,
//! two `…`, or one of those followed by a closing quote), compared after `strip`, optional
//! lower-casing and, with `ignore_special_character`, removing everything but ASCII letters,
//! digits, CJK U+4E00..U+9FA5, space, tab and newline. Sentences shorter than
//! `min_repeat_sentence_length` (so compared) are always kept.

use crate::clean::op::Mapper;
use crate::clean::params::{ParamResult, Params};
use crate::clean::pytext;
use regex::Regex;
use std::collections::HashSet;
use std::sync::LazyLock;

/// data-juicer's four substitutions, in order; each inserts "\n" between its two groups.
/// (Its last class `[.。!！？\?\.{6}\…{2}]` is a character class, so it holds `{`, `6`, `}`
/// and `2` as members; we keep that.)
static SPLITS: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    [
        r"([.。！!？?])([^’”])",
        r"(\.{6})([^’”])",
        r"(…{2})([^’”])",
        r"([.。!！？?{6}…2][’”])([^’”])",
    ]
    .map(|p| Regex::new(&format!("(?s){p}")).expect("valid pattern"))
});

fn split_sentences(line: &str) -> Vec<String> {
    let mut text = line.to_string();
    for pattern in SPLITS.iter() {
        text = pattern.replace_all(&text, "${1}\n${2}").into_owned();
    }
    text.split('\n').map(str::to_string).collect()
}

fn is_kept_for_comparison(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || ('\u{4e00}'..='\u{9fa5}').contains(&c)
        || matches!(c, '\n' | '\t' | ' ')
}

pub struct RemoveRepeatSentences {
    lowercase: bool,
    ignore_special_character: bool,
    min_length: usize,
}

impl RemoveRepeatSentences {
    pub fn from_params(params: &mut Params) -> ParamResult<Self> {
        Ok(RemoveRepeatSentences {
            lowercase: params.bool("lowercase", false)?,
            ignore_special_character: params.bool("ignore_special_character", true)?,
            min_length: params.usize("min_repeat_sentence_length", 2)?,
        })
    }

    fn comparable(&self, sentence: &str) -> String {
        let mut copy = pytext::strip(sentence).to_string();
        if self.lowercase {
            copy = pytext::lower(&copy);
        }
        if self.ignore_special_character {
            copy.retain(is_kept_for_comparison);
        }
        copy
    }
}

impl Mapper for RemoveRepeatSentences {
    fn map(&self, text: &str) -> Option<String> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut new_lines = Vec::new();
        for line in text.split('\n') {
            let mut kept = String::new();
            if !line.is_empty() {
                for sentence in split_sentences(line) {
                    let copy = self.comparable(&sentence);
                    // Short sentences are always kept; others only the first time.
                    if pytext::len(&copy) < self.min_length || seen.insert(copy) {
                        kept.push_str(&sentence);
                    }
                }
            }
            new_lines.push(kept);
        }
        let out = new_lines.join("\n");
        (out != text).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> RemoveRepeatSentences {
        RemoveRepeatSentences {
            lowercase: false,
            ignore_special_character: true,
            min_length: 2,
        }
    }

    #[test]
    fn removes_repeats_across_lines() {
        let text = "今天天气真不错，阳光明媚，适合出去散步。小明说：“今天天气真不错，我们去海边吧。”小红回答说：“好主意！”但是，小李觉得：“今天天气真不错，我们去爬山吧。”今天天气真不错，阳光明媚，适合出去散步。";
        let out = defaults().map(text).unwrap();
        assert_eq!(
            out,
            "今天天气真不错，阳光明媚，适合出去散步。小明说：“今天天气真不错，我们去海边吧。”小红回答说：“好主意！”但是，小李觉得：“今天天气真不错，我们去爬山吧。”"
        );
        let english = "Hello world. Hello world. hello world.\nHello world.";
        assert_eq!(
            defaults().map(english).unwrap(),
            "Hello world. hello world.\n"
        );
    }

    #[test]
    fn short_sentences_are_kept_and_empty_text_is_unchanged() {
        assert_eq!(defaults().map("A. A. A."), None);
        assert_eq!(defaults().map(""), None);
    }
}
