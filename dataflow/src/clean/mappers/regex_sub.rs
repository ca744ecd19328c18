//! `clean_email_mapper`, `clean_ip_mapper`, `clean_links_mapper`: replace every match of a
//! pattern (data-juicer's default, or the recipe's `pattern`) with `repl` (default: remove).

use crate::clean::op::Mapper;
use crate::clean::params::{ParamResult, Params};
use regex::Regex;

pub const EMAIL_PATTERN: &str = r"[A-Za-z0-9.\-+_]+@[a-z0-9.\-+_]+\.[a-z]+";

pub const IP_PATTERN: &str = concat!(
    r"(?:(?:1[0-9][0-9]\.)|(?:2[0-4][0-9]\.)|(?:25[0-5]\.)|(?:[1-9][0-9]\.)|(?:[0-9]\.))",
    r"{3}(?:(?:1[0-9][0-9])|(?:2[0-4][0-9])|(?:25[0-5])|(?:[1-9][0-9])|(?:[0-9]))|",
    r"([\da-fA-F]{1,4}:){7}[\da-fA-F]{1,4}",
);

pub const LINK_PATTERN: &str = concat!(
    r"(?i)\b(",
    r"(?:[a-z][\w-]+:(?:/{1,3}|[a-z0-9%])|www\d{0,3}[.]|[a-z0-9.\-]+[.][a-z]{2,4}/)",
    r"(?:[^\s()<>]+|\(([^\s()<>]+|(\([^\s()<>]+\)))*\))",
    r"+(?:\(([^\s()<>]+|(\([^\s()<>]+\)))*\)|",
    r"[^\s`!()\[\]{};:'\x22.,<>?«»“”‘’])",
    r")",
);

pub struct RegexSub {
    pattern: Regex,
    /// The replacement in `regex` syntax (`$1`), translated from Python's (`\1`).
    repl: String,
}

impl RegexSub {
    pub fn from_params(params: &mut Params, default_pattern: &str) -> ParamResult<Self> {
        let pattern = match params.opt_string("pattern")? {
            Some(given) => strip_raw_prefix(&given).to_string(),
            None => default_pattern.to_string(),
        };
        let repl = params.string("repl", "")?;
        Self::new(&pattern, &repl)
    }

    pub fn new(pattern: &str, python_repl: &str) -> ParamResult<Self> {
        // data-juicer passes re.DOTALL.
        let pattern = Regex::new(&format!("(?s){pattern}"))
            .map_err(|e| format!("pattern `{pattern}` is not a supported regular expression: {e}"))?;
        Ok(RegexSub {
            pattern,
            repl: python_repl_to_rust(python_repl),
        })
    }
}

impl Mapper for RegexSub {
    fn map(&self, text: &str) -> Option<String> {
        if !self.pattern.is_match(text) {
            return None;
        }
        Some(self.pattern.replace_all(text, self.repl.as_str()).into_owned())
    }
}

/// data-juicer accepts a pattern written as a Python raw-string literal, `r'...'`.
fn strip_raw_prefix(pattern: &str) -> &str {
    let quoted = |q: char| pattern.starts_with(&format!("r{q}")) && pattern.ends_with(q);
    if pattern.len() > 2 && (quoted('\'') || quoted('"')) {
        &pattern[2..pattern.len() - 1]
    } else {
        pattern
    }
}

/// Python `re.sub` replacement syntax to `regex`'s: `\1`, `\g<1>`, `\g<name>` become `${..}`,
/// `\\` a backslash, `\n` / `\t` their characters, and a literal `$` is escaped.
fn python_repl_to_rust(repl: &str) -> String {
    let mut out = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => {
                    let mut group = d.to_string();
                    if let Some(&e) = chars.peek()
                        && e.is_ascii_digit()
                    {
                        group.push(e);
                        chars.next();
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some('g') if chars.peek() == Some(&'<') => {
                    chars.next();
                    let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                    out.push_str(&format!("${{{name}}}"));
                }
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(pattern: &str, text: &str) -> String {
        let mapper = RegexSub::new(pattern, "").unwrap();
        mapper.map(text).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn data_juicer_email_examples() {
        // Expected values are data-juicer 1.6.1's outputs for the same inputs.
        assert_eq!(sub(EMAIL_PATTERN, "happy day euqdh@cjqi.com"), "happy day ");
        assert_eq!(sub(EMAIL_PATTERN, "请问你是谁dasoidhao@1264fg.45om"), "请问你是谁dasoidhao@1264fg.45om");
        assert_eq!(sub(EMAIL_PATTERN, "ftp://examplema-niè°ze@le.com"), "ftp://examplema-niè°");
        assert_eq!(sub(EMAIL_PATTERN, "👊23da44sh12@46hqw.com"), "👊");
    }

    #[test]
    fn data_juicer_ip_examples() {
        assert_eq!(sub(IP_PATTERN, "test of ip 234.128.124.123"), "test of ip ");
        assert_eq!(sub(IP_PATTERN, "ft://example.com/2001:0db8:85a3:0000:0000:8a2e:0370:7334"), "ft://example.com/");
        // Not an address, but "56.1.1.1" after the "2" is.
        assert_eq!(sub(IP_PATTERN, "ip 256.1.1.1"), "ip 2");
        assert_eq!(sub(IP_PATTERN, "no address here"), "no address here");
    }

    #[test]
    fn data_juicer_link_examples() {
        assert_eq!(sub(LINK_PATTERN, "This is a test for web crawler https://www.baidu.com"), "This is a test for web crawler ");
        assert_eq!(sub(LINK_PATTERN, "abcd://ef is a sample"), " is a sample");
        assert_eq!(sub(LINK_PATTERN, "这是一个测试，http://www.example.com/path/to?name=value 这里"), "这是一个测试， 这里");
        assert_eq!(sub(LINK_PATTERN, "ftp://user:password@ftp.example.com:21/"), "");
        assert_eq!(sub(LINK_PATTERN, "no link at all."), "no link at all.");
    }

    #[test]
    fn python_replacement_syntax_is_translated() {
        let mapper = RegexSub::new(r"(\w+)@(\w+)", r"<\2 at \g<1>>$").unwrap();
        assert_eq!(mapper.map("mail bob@home now").unwrap(), "mail <home at bob>$ now");
        assert_eq!(strip_raw_prefix("r'ab+'"), "ab+");
        assert!(RegexSub::new("(?<=a)b", "").is_err());
    }
}
