//! `expand_macro_mapper`: expand argument-free LaTeX macros (`\newcommand{\x}{...}` and
//! `\def\x{...}`) wherever `\x` is followed by a character that is not an ASCII letter or
//! digit, as data-juicer does (definitions included, in definition order; a macro at the very
//! end of the text is left alone).

use crate::clean::op::Mapper;
use regex::Regex;
use std::sync::LazyLock;

static NEWCOMMAND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)\\\bnewcommand\b\*?\{(\\[a-zA-Z0-9]+?)\}\{(.*?)\}$").expect("valid pattern")
});
static DEF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)\\def\s*(\\[a-zA-Z0-9]+?)\s*\{(.*?)\}$").expect("valid pattern")
});

pub struct ExpandMacro;

/// `(name, value)` in first-definition order; a later definition replaces the value.
fn macros(text: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for pattern in [&*NEWCOMMAND, &*DEF] {
        for captures in pattern.captures_iter(text) {
            let (name, value) = (captures[1].to_string(), captures[2].to_string());
            match found.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = value,
                None => found.push((name, value)),
            }
        }
    }
    found
}

impl Mapper for ExpandMacro {
    fn map(&self, text: &str) -> Option<String> {
        let definitions = macros(text);
        if definitions.is_empty() {
            return None;
        }
        let mut text = text.to_string();
        for (name, value) in definitions {
            let pattern = Regex::new(&format!("({})([^a-zA-Z0-9])", regex::escape(&name)))
                .expect("an escaped name is a valid pattern");
            text = pattern
                .replace_all(&text, |c: &regex::Captures| format!("{value}{}", &c[2]))
                .into_owned();
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_newcommand_and_def() {
        let text = "\\newcommand{\\R}{\\mathbb{R}}\n\\def\\eps{\\varepsilon}\nLet $x \\in \\R$ and \\eps > 0, \\Rx stays.";
        let expected = "\\newcommand{\\mathbb{R}}{\\mathbb{R}}\n\\def\\varepsilon{\\varepsilon}\nLet $x \\in \\mathbb{R}$ and \\varepsilon > 0, \\Rx stays.";
        assert_eq!(ExpandMacro.map(text).unwrap(), expected);
        assert_eq!(ExpandMacro.map("no macros \\here"), None);
    }
}
