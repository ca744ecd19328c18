//! `punctuation_normalization_mapper`: data-juicer's fixed table from Unicode punctuation to
//! ASCII (including its quirks: `１` becomes `"`, `—` becomes ` - `).

use crate::clean::op::Mapper;

fn replacement(c: char) -> Option<&'static str> {
    Some(match c {
        '，' | '、' => ",",
        '。' => ".",
        '„' | '”' | '“' | '«' | '»' | '１' | '」' | '「' | '《' | '》' => "\"",
        '´' | '’' => "'",
        '∶' | '：' => ":",
        '？' => "?",
        '！' => "!",
        '（' => "(",
        '）' => ")",
        '；' => ";",
        '–' | '━' | '►' => "-",
        '—' => " - ",
        '．' => ". ",
        '～' => "~",
        '…' => "...",
        '〈' => "<",
        '〉' => ">",
        '【' => "[",
        '】' => "]",
        '％' => "%",
        _ => return None,
    })
}

pub struct PunctuationNormalization;

impl Mapper for PunctuationNormalization {
    fn map(&self, text: &str) -> Option<String> {
        if !text.chars().any(|c| replacement(c).is_some()) {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match replacement(c) {
                Some(ascii) => out.push_str(ascii),
                None => out.push(c),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_juicer_example() {
        let text = "，。、„”“«»１」「《》´∶：？！（）；–—．～’…━〈〉【】％►";
        let expected = ",.,\"\"\"\"\"\"\"\"\"\"'::?!();- - . ~'...-<>[]%-";
        assert_eq!(PunctuationNormalization.map(text).unwrap(), expected);
        assert_eq!(PunctuationNormalization.map("plain, text."), None);
    }
}
