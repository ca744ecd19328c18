//! Character-level filters: `alphanumeric_filter`, `special_characters_filter`,
//! `text_length_filter`, `character_repetition_filter`.

use crate::clean::charsets::is_special;
use crate::clean::lm::arpa::KeyHasher;
use crate::clean::op::{Filter, Measure, Range};
use crate::clean::pytext;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Python's `a / b if b != 0 else 0.0`.
pub fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// `alphanumeric_filter` without tokenization: alphanumeric characters / all characters.
pub struct Alphanumeric {
    pub range: Range,
}

impl Filter for Alphanumeric {
    fn stat_name(&self) -> &'static str {
        "alnum_ratio"
    }
    fn measure(&self, text: &str) -> Measure {
        let (alnum, all) = text.chars().fold((0, 0), |(a, n), c| {
            (a + pytext::is_alnum(c) as usize, n + 1)
        });
        self.range.measure(ratio(alnum, all))
    }
}

/// `alphanumeric_filter` with `tokenization: true`: letters / tokens of a Hugging Face
/// tokenizer. data-juicer downloads EleutherAI/pythia-6.9b-deduped's; we take the
/// `tokenizer.json` the run names (`--hf-tokenizer` or the op's `tokenizer_path`).
pub struct AlphaTokens {
    pub range: Range,
    pub tokenizer: tokenizers::Tokenizer,
}

impl Filter for AlphaTokens {
    fn stat_name(&self) -> &'static str {
        "alpha_token_ratio"
    }
    fn measure(&self, text: &str) -> Measure {
        let alpha = text.chars().filter(|c| pytext::is_alpha(*c)).count();
        let tokens = self
            .tokenizer
            .encode_fast(text, false)
            .map(|encoding| encoding.len())
            .unwrap_or(0);
        self.range.measure(ratio(alpha, tokens))
    }
}

/// `special_characters_filter`: special characters / all characters.
pub struct SpecialCharacters {
    pub range: Range,
}

impl Filter for SpecialCharacters {
    fn stat_name(&self) -> &'static str {
        "special_char_ratio"
    }
    fn measure(&self, text: &str) -> Measure {
        let (special, all) = text
            .chars()
            .fold((0, 0), |(s, n), c| (s + is_special(c) as usize, n + 1));
        self.range.measure(ratio(special, all))
    }
}

/// `text_length_filter`: the number of characters.
pub struct TextLength {
    pub range: Range,
}

impl Filter for TextLength {
    fn stat_name(&self) -> &'static str {
        "text_len"
    }
    fn measure(&self, text: &str) -> Measure {
        self.range.measure(pytext::len(text) as f64)
    }
}

/// `character_repetition_filter`: of the character `rep_len`-grams, the share taken by the
/// most frequent ones; "most frequent" is the top `min(floor(sqrt(distinct)), distinct
/// repeated)` n-grams. N-grams are counted by a rolling polynomial hash modulo the Mersenne
/// prime 2^61 - 1 (one step per character instead of hashing every window); two different
/// n-grams of one document share a hash with probability about n²/2^61.
pub struct CharacterRepetition {
    pub range: Range,
    pub rep_len: usize,
}

pub fn char_repetition_ratio(text: &str, n: usize) -> f64 {
    const P: u64 = (1 << 61) - 1;
    const BASE: u64 = 0x1f_3d5b_79a1;
    // a·b mod P for a, b < P, by folding the 122-bit product (2^61 ≡ 1 mod P).
    let mul = |a: u64, b: u64| {
        let product = a as u128 * b as u128;
        let folded = (product as u64 & P) + (product >> 61) as u64;
        let folded = (folded & P) + (folded >> 61);
        if folded >= P { folded - P } else { folded }
    };
    let chars: Vec<u64> = text.chars().map(|c| c as u64 + 1).collect();
    let mut freq: HashMap<u64, usize, BuildHasherDefault<KeyHasher>> = HashMap::default();
    if n > 0 && chars.len() >= n {
        // BASE^(n-1), to take the oldest character out of the window.
        let top = (1..n).fold(1, |acc, _| mul(acc, BASE));
        let add = |a: u64, b: u64| if a + b >= P { a + b - P } else { a + b };
        let mut hash = chars[..n].iter().fold(0, |h, &c| add(mul(h, BASE), c));
        *freq.entry(hash).or_default() += 1;
        for i in n..chars.len() {
            hash = add(hash, P - mul(chars[i - n], top));
            hash = add(mul(hash, BASE), chars[i]);
            *freq.entry(hash).or_default() += 1;
        }
    }
    if freq.is_empty() {
        return 0.0;
    }
    let mut counts: Vec<usize> = freq.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let unique = counts.iter().filter(|&&c| c == 1).count();
    let top = ((counts.len() as f64).sqrt() as usize).min(counts.len() - unique);
    ratio(counts[..top].iter().sum(), counts.iter().sum())
}

impl Filter for CharacterRepetition {
    fn stat_name(&self) -> &'static str {
        "char_rep_ratio"
    }
    fn measure(&self, text: &str) -> Measure {
        self.range
            .measure(char_repetition_ratio(text, self.rep_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(min: f64, max: f64) -> Range {
        Range {
            min: Some(min),
            max: Some(max),
            min_closed: true,
            max_closed: true,
            reversed: false,
        }
    }

    #[test]
    fn ratios_match_hand_counts() {
        let alnum = Alphanumeric {
            range: range(0.25, 1.0),
        };
        // "a1中, " -> 3 of 5 characters are alphanumeric.
        assert_eq!(alnum.measure("a1中, ").value, 0.6);
        assert_eq!(alnum.measure("").value, 0.0);
        let special = SpecialCharacters {
            range: range(0.0, 0.25),
        };
        // "ab!1 " -> '!', '1', ' ' are special: 3/5.
        let m = special.measure("ab!1 ");
        assert_eq!((m.value, m.keep), (0.6, false));
        assert_eq!(
            TextLength {
                range: range(0.0, 3.0)
            }
            .measure("中文字")
            .value,
            3.0
        );
    }

    #[test]
    fn character_repetition_known_answers() {
        // 'aaaaa' with n=2: one 2-gram 'aa' x4; distinct 1, none unique; top = min(1, 1) = 1.
        assert_eq!(char_repetition_ratio("aaaaa", 2), 1.0);
        // 'abcabc' n=3: abc x2, bca, cab; sqrt(3)=1 -> top 1: 2/4.
        assert_eq!(char_repetition_ratio("abcabc", 3), 0.5);
        // All unique: no repeated n-gram counts.
        assert_eq!(char_repetition_ratio("abcdef", 2), 0.0);
        assert_eq!(char_repetition_ratio("short", 10), 0.0);
    }
}
