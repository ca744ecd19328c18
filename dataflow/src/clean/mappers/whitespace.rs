//! `whitespace_normalization_mapper`: strip the text (Python `str.strip`), then turn each of
//! data-juicer's `VARIOUS_WHITESPACES` into a plain space.

use crate::clean::charsets::is_various_whitespace;
use crate::clean::op::Mapper;
use crate::clean::pytext;

pub struct WhitespaceNormalization;

impl Mapper for WhitespaceNormalization {
    fn map(&self, text: &str) -> Option<String> {
        let stripped = pytext::strip(text);
        let out: String = stripped
            .chars()
            .map(|c| if is_various_whitespace(c) { ' ' } else { c })
            .collect();
        (out != text).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_and_normalises() {
        let text = " x\u{3000}y\u{200b}z\tw\u{a0}\n ";
        assert_eq!(WhitespaceNormalization.map(text).unwrap(), "x y z w");
        // Newlines inside the text stay; U+0085 is not in data-juicer's set (it has U+0084).
        assert_eq!(
            WhitespaceNormalization.map("a\nb\u{85}c\u{84}d").unwrap(),
            "a\nb\u{85}c d"
        );
        assert_eq!(WhitespaceNormalization.map("clean"), None);
        assert_eq!(WhitespaceNormalization.map("   ").unwrap(), "");
    }
}
