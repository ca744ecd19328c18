//! `remove_specific_chars_mapper`: remove every character of `chars_to_remove` (a string, or
//! a list of strings whose characters all count).

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
        Ok(Self::new(&given.concat()))
    }

    pub fn new(chars: &str) -> Self {
        let mut chars: Vec<char> = chars.chars().collect();
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
    fn removes_listed_characters_only() {
        let mapper = RemoveSpecificChars::new(DEFAULT_CHARS);
        assert_eq!(
            mapper.map("►This is a dog! ◆◆a|b").unwrap(),
            "This is a dog! a|b"
        );
        let special = RemoveSpecificChars::new("]^\\");
        assert_eq!(special.map("a]b^c\\d|").unwrap(), "abcd|");
        assert_eq!(mapper.map("nothing here"), None);
    }
}
