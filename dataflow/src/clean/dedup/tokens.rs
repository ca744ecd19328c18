//! The shingles near-duplicate detectors hash: data-juicer's `tokenization` modes with
//! `window_size`, after optional lower-casing and removal of `ignore_pattern` matches.

use crate::clean::params::{ParamResult, Params};
use crate::clean::pytext;
use regex::Regex;
use std::sync::LazyLock;

static PUNCTUATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\p{P}").expect("valid pattern"));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokenization {
    /// Windows of `window_size` characters.
    Character,
    /// Windows of `window_size` pieces between punctuation marks, joined by spaces.
    Punctuation,
    /// Windows of `window_size` space-separated words, joined by spaces.
    Space,
}

pub struct Shingler {
    pub tokenization: Tokenization,
    pub window_size: usize,
    pub lowercase: bool,
    pub ignore_pattern: Option<Regex>,
}

impl Shingler {
    /// Read `tokenization`, `window_size`, `lowercase`, `ignore_pattern`.
    pub fn from_params(params: &mut Params, default_window: usize) -> ParamResult<Self> {
        let tokenization = match params
            .choice(
                "tokenization",
                "space",
                &["space", "punctuation", "character"],
            )?
            .as_str()
        {
            "character" => Tokenization::Character,
            "punctuation" => Tokenization::Punctuation,
            _ => Tokenization::Space,
        };
        let ignore_pattern = params
            .opt_string("ignore_pattern")?
            .map(|p| {
                Regex::new(&p).map_err(|e| {
                    format!("ignore_pattern `{p}` is not a supported regular expression: {e}")
                })
            })
            .transpose()?;
        Ok(Shingler {
            tokenization,
            window_size: params.positive("window_size", default_window)?,
            lowercase: params.bool("lowercase", true)?,
            ignore_pattern,
        })
    }

    /// The shingles of `text`, in order (repeats included).
    pub fn shingles(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_shingle(text, |shingle| out.push(shingle.to_string()));
        out
    }

    /// Call `visit` with each shingle of `text`, in order (repeats included), without
    /// allocating a string per shingle.
    pub fn for_each_shingle(&self, text: &str, mut visit: impl FnMut(&str)) {
        let mut text = if self.lowercase {
            pytext::lower(text)
        } else {
            text.to_string()
        };
        if let Some(pattern) = &self.ignore_pattern {
            text = pattern.replace_all(&text, "").into_owned();
        }
        let n = self.window_size;
        let mut joined = String::new();
        let mut join = |pieces: Vec<&str>| {
            for window in pieces.windows(n) {
                joined.clear();
                for (i, piece) in window.iter().enumerate() {
                    if i > 0 {
                        joined.push(' ');
                    }
                    joined.push_str(piece);
                }
                visit(&joined);
            }
        };
        match self.tokenization {
            Tokenization::Character => pytext::char_windows(&text, n).into_iter().for_each(visit),
            Tokenization::Punctuation => join(PUNCTUATION.split(&text).collect()),
            Tokenization::Space => join(pytext::split_on_whitespace(&text, false, false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shingles_per_mode() {
        let mut shingler = Shingler {
            tokenization: Tokenization::Space,
            window_size: 2,
            lowercase: true,
            ignore_pattern: None,
        };
        assert_eq!(shingler.shingles("A b  C"), ["a b", "b c"]);
        shingler.tokenization = Tokenization::Punctuation;
        // Python: regex.split(r"\p{P}", "a,b.c") == ['a', 'b', 'c']
        assert_eq!(shingler.shingles("a,b.c"), ["a b", "b c"]);
        assert_eq!(shingler.shingles("a,,b"), ["a ", " b"]);
        shingler.tokenization = Tokenization::Character;
        assert_eq!(shingler.shingles("中文字"), ["中文", "文字"]);
        shingler.ignore_pattern = Some(Regex::new(r"\p{P}").unwrap());
        assert_eq!(shingler.shingles("中，文"), ["中文"]);
    }
}
