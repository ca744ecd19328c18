//! `remove_specific_chars_mapper`: remove every character of `chars_to_remove`.
//!
//! data-juicer builds the regex character class `"[" + "|".join(chars) + "]"`, so with two or
//! more characters `|` is removed as well; we keep that so outputs match.

use crate::clean::op::Mapper;
use crate::clean::params::{ParamResult, Params};

pub const DEFAULT_CHARS: &str = "◆●■►▼▲▴∆▻▷❖♡□";

pub struct RemoveSpecificChars {
    chars: Vec<char>,
}

impl RemoveSpecificChars {
    pub fn from_params(params: &mut Params) -> ParamResult<Self> {
        let given = params
            .strings("chars_to_remove")?
            .unwrap_or_else(|| vec![DEFAULT_CHARS.to_string()]);
        // A string is a sequence of characters; a list is a sequence of (one-char) strings.
        let items: Vec<String> = if given.len() == 1 {
            given[0].chars().map(String::from).collect()
        } else {
            given
        };
        Ok(Self::new(&items))
    }

    pub fn new(items: &[String]) -> Self {
        let mut chars: Vec<char> = items.iter().flat_map(|s| s.chars()).collect();
        if items.len() > 1 {
            chars.push('|');
        }
        chars.sort_unstable();
        chars.dedup();
        RemoveSpecificChars { chars }
    }
}

impl Mapper for RemoveSpecificChars {
    fn map(&self, text: &str) -> Option<String> {
        let remove = |c: &char| self.chars.binary_search(c).is_ok();
        if !text.chars().any(|c| remove(&c)) {
            return None;
        }
        Some(text.chars().filter(|c| !remove(c)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_defaults_and_the_pipe_quirk() {
        let mapper = RemoveSpecificChars::new(&DEFAULT_CHARS.chars().map(String::from).collect::<Vec<_>>());
        assert_eq!(mapper.map("►This is a dog! ◆◆a|b").unwrap(), "This is a dog! ab");
        let single = RemoveSpecificChars::new(&["x".to_string()]);
        assert_eq!(single.map("a|xb").unwrap(), "a|b");
        assert_eq!(mapper.map("nothing here"), None);
    }
}
