//! Words as data-juicer's word-level filters see them.
//!
//! Without tokenization a document's words are its pieces between spaces, newlines and tabs
//! (`get_words_from_document`). With `tokenization: true` data-juicer runs a sentencepiece
//! model it downloads; we cannot download, so we segment with jieba (`jieba-rs`, whose
//! dictionary ships inside the crate) and drop whitespace-only pieces. Refinement then
//! lower-cases, strips special characters from both ends and drops what becomes empty.

use crate::clean::charsets::is_special;
use crate::clean::pytext;
use jieba_rs::Jieba;
use std::sync::LazyLock;

static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// How a filter splits a document into words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokenization {
    /// data-juicer's default: split on ' ', '\n' and '\t'.
    Whitespace,
    /// jieba segmentation (our stand-in for data-juicer's sentencepiece model).
    Jieba,
}

impl Tokenization {
    pub fn from_flag(tokenization: bool) -> Self {
        if tokenization {
            Tokenization::Jieba
        } else {
            Tokenization::Whitespace
        }
    }

    /// The raw words of `text`.
    pub fn words(self, text: &str) -> Vec<&str> {
        match self {
            Tokenization::Whitespace => pytext::split_on_whitespace(text, true, true),
            Tokenization::Jieba => JIEBA
                .cut(text, true)
                .into_iter()
                .map(|token| token.word)
                .filter(|word| !word.chars().all(pytext::is_space))
                .collect(),
        }
    }
}

/// data-juicer's `strip(word, SPECIAL_CHARACTERS)`.
fn strip_special(word: &str) -> &str {
    word.trim_matches(is_special)
}

/// data-juicer's `words_refinement(words, lower_case, strip_chars=SPECIAL_CHARACTERS)`.
pub fn refine(words: &[&str], lower_case: bool) -> Vec<String> {
    words
        .iter()
        .map(|word| {
            let word = if lower_case {
                pytext::lower(word)
            } else {
                (*word).to_string()
            };
            strip_special(&word).to_string()
        })
        .filter(|word| !word.is_empty())
        .collect()
}

/// data-juicer's word augmentation: every run of `size` consecutive words joined by `join`,
/// added after the words themselves (how Chinese multi-character entries of a word list can
/// match when words are single characters or short pieces).
pub fn augment(words: Vec<String>, group_sizes: &[usize], join: &str) -> Vec<String> {
    let mut out = words.clone();
    for &size in group_sizes {
        if size == 0 || words.len() < size {
            continue;
        }
        out.extend(words.windows(size).map(|group| group.join(join)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_words_and_refinement_match_data_juicer() {
        // data-juicer: words_refinement(get_words_from_document("Hello, World!\n  (test) 123"),
        //   lower_case=True, strip_chars=SPECIAL_CHARACTERS) == ['hello', 'world', 'test']
        let words = Tokenization::Whitespace.words("Hello, World!\n  (test) 123");
        assert_eq!(words, ["Hello,", "World!", "(test)", "123"]);
        assert_eq!(refine(&words, true), ["hello", "world", "test"]);
    }

    #[test]
    fn jieba_segments_chinese_and_augmentation_joins_runs() {
        let words = Tokenization::Jieba.words("我们 喜欢北京");
        assert_eq!(words, ["我们", "喜欢", "北京"]);
        let refined = refine(&words, true);
        assert_eq!(
            augment(refined, &[2], ""),
            ["我们", "喜欢", "北京", "我们喜欢", "喜欢北京"]
        );
    }
}
