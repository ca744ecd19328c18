//! Word-level filters: `words_num_filter`, `word_repetition_filter`, `flagged_words_filter`,
//! `stopwords_filter`. Words come from `clean::words` (whitespace, or jieba when the recipe
//! asks for tokenization), refined as data-juicer refines them.

use crate::clean::filters::chars::ratio;
use crate::clean::op::{Filter, Measure, Range};
use crate::clean::words::{Tokenization, augment, refine};
use std::collections::{HashMap, HashSet};

pub struct WordsNum {
    pub range: Range,
    pub tokenization: Tokenization,
}

impl Filter for WordsNum {
    fn stat_name(&self) -> &'static str {
        "num_words"
    }
    fn measure(&self, text: &str) -> Measure {
        let words = refine(&self.tokenization.words(text), false);
        self.range.measure(words.len() as f64)
    }
}

pub struct WordRepetition {
    pub range: Range,
    pub tokenization: Tokenization,
    pub rep_len: usize,
}

/// Of the word `n`-grams (words joined by spaces), the share that occur more than once.
/// N-grams are compared as sequences of word ids, which is the same as comparing the joined
/// strings: refined words never contain a space.
pub fn word_repetition_ratio(words: &[String], n: usize) -> f64 {
    if n == 0 || words.len() < n {
        return 0.0;
    }
    let mut ids_of: HashMap<&str, u32> = HashMap::new();
    let ids: Vec<u32> = words
        .iter()
        .map(|w| {
            let next = ids_of.len() as u32;
            *ids_of.entry(w.as_str()).or_insert(next)
        })
        .collect();
    let mut freq: HashMap<&[u32], usize> = HashMap::new();
    for gram in ids.windows(n) {
        *freq.entry(gram).or_default() += 1;
    }
    let repeated: usize = freq.values().filter(|&&c| c > 1).sum();
    ratio(repeated, freq.values().sum())
}

impl Filter for WordRepetition {
    fn stat_name(&self) -> &'static str {
        "word_rep_ratio"
    }
    fn measure(&self, text: &str) -> Measure {
        let words = refine(&self.tokenization.words(text), true);
        self.range
            .measure(word_repetition_ratio(&words, self.rep_len))
    }
}

/// Which listed words a ratio filter counts, and how it prepares the document's words.
pub struct WordListRatio {
    pub range: Range,
    pub tokenization: Tokenization,
    pub list: HashSet<String>,
    pub augment_sizes: Option<Vec<usize>>,
    pub augment_join: String,
    pub stat_name: &'static str,
}

impl Filter for WordListRatio {
    fn stat_name(&self) -> &'static str {
        self.stat_name
    }
    fn measure(&self, text: &str) -> Measure {
        let mut words = refine(&self.tokenization.words(text), true);
        if let Some(sizes) = &self.augment_sizes {
            words = augment(words, sizes, &self.augment_join);
        }
        let listed = words
            .iter()
            .filter(|w| self.list.contains(w.as_str()))
            .count();
        self.range.measure(ratio(listed, words.len()).min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> Range {
        Range {
            min: Some(0.0),
            max: Some(0.5),
            min_closed: true,
            max_closed: true,
            reversed: false,
        }
    }

    #[test]
    fn words_num_strips_special_characters() {
        let filter = WordsNum {
            range: range(),
            tokenization: Tokenization::Whitespace,
        };
        // "--" and "123" strip to nothing; "a," -> "a".
        assert_eq!(filter.measure("a, b -- 123 c!\nd").value, 4.0);
        let jieba = WordsNum {
            range: range(),
            tokenization: Tokenization::Jieba,
        };
        assert_eq!(jieba.measure("我们喜欢北京。").value, 3.0);
    }

    #[test]
    fn word_repetition_known_answer() {
        let words: Vec<String> = "a b a b a b c".split(' ').map(String::from).collect();
        // 2-grams: ab x3, ba x2, bc x1 -> repeated 5 of 6.
        assert!((word_repetition_ratio(&words, 2) - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(word_repetition_ratio(&words, 10), 0.0);
    }

    #[test]
    fn word_list_ratio_with_augmentation() {
        let filter = WordListRatio {
            range: range(),
            tokenization: Tokenization::Whitespace,
            list: ["the".to_string(), "北京".to_string()]
                .into_iter()
                .collect(),
            augment_sizes: Some(vec![2]),
            augment_join: String::new(),
            stat_name: "stopwords_ratio",
        };
        // words: The, cat, 北, 京 -> + Thecat? no: lower-cased "the","cat","北","京" + pairs
        // "thecat","cat北","北京": 7 words, 2 listed.
        let m = filter.measure("The cat 北 京");
        assert!((m.value - 2.0 / 7.0).abs() < 1e-12);
    }
}
