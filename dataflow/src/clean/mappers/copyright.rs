//! `clean_copyright_mapper`: drop a copyright notice from the start of a code file.
//!
//! As data-juicer does it: if the text has a `/* ... */` block comment, the first one is
//! removed when it mentions "copyright" (any case) and nothing else happens; otherwise the
//! leading lines that are empty or start with `//`, `#` or `--` are removed.

use crate::clean::op::Mapper;
use regex::Regex;
use std::sync::LazyLock;

static BLOCK_COMMENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"/\*[^*]*\*+(?:[^/*][^*]*\*+)*/").expect("valid pattern"));

pub struct CleanCopyright;

impl Mapper for CleanCopyright {
    fn map(&self, text: &str) -> Option<String> {
        if let Some(comment) = BLOCK_COMMENT.find(text) {
            if !comment.as_str().to_lowercase().contains("copyright") {
                return None;
            }
            return Some(format!(
                "{}{}",
                &text[..comment.start()],
                &text[comment.end()..]
            ));
        }
        let lines: Vec<&str> = text.split('\n').collect();
        let skip = lines
            .iter()
            .take_while(|line| {
                line.is_empty()
                    || line.starts_with("//")
                    || line.starts_with('#')
                    || line.starts_with("--")
            })
            .count();
        let kept = lines[skip..].join("\n");
        (kept != text).then_some(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(text: &str) -> String {
        CleanCopyright.map(text).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn block_comments_and_leading_line_comments() {
        assert_eq!(
            clean("这是一段 /* 多行注释\n注释内容copyright\n*/ 的文本。另外还有一些 // 单行注释。"),
            "这是一段  的文本。另外还有一些 // 单行注释。"
        );
        assert_eq!(
            clean("/* no notice */\n// Copyright x\ncode"),
            "/* no notice */\n// Copyright x\ncode"
        );
        assert_eq!(
            clean("# Copyright 2020\n\n-- x\nimport os\n# later"),
            "import os\n# later"
        );
        assert_eq!(clean("#\n//\n"), "");
        assert_eq!(clean("print(1)"), "print(1)");
    }
}
