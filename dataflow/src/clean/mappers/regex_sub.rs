//! `clean_email_mapper`, `clean_ip_mapper`, `clean_links_mapper`: replace every match of a
//! pattern (data-juicer's default, or the recipe's `pattern`) with `repl` (default: remove).

use crate::clean::op::Mapper;
use crate::clean::params::{ParamResult, Params};
use regex::Regex;

const EMAIL_PATTERN: &str = r"[A-Za-z0-9.\-+_]+@[a-z0-9.\-+_]+\.[a-z]+";

const IP_PATTERN: &str = concat!(
    r"(?:(?:1[0-9][0-9]\.)|(?:2[0-4][0-9]\.)|(?:25[0-5]\.)|(?:[1-9][0-9]\.)|(?:[0-9]\.))",
    r"{3}(?:(?:1[0-9][0-9])|(?:2[0-4][0-9])|(?:25[0-5])|(?:[1-9][0-9])|(?:[0-9]))|",
    r"([\da-fA-F]{1,4}:){7}[\da-fA-F]{1,4}",
);

/// data-juicer's link pattern without its leading `\b` (see `RegexSub::links`).
const LINK_BODY: &str = concat!(
    r"(?i)(",
    r"(?:[a-z][\w-]+:(?:/{1,3}|[a-z0-9%])|www\d{0,3}[.]|[a-z0-9.\-]+[.][a-z]{2,4}/)",
    r"(?:[^\s()<>]+|\(([^\s()<>]+|(\([^\s()<>]+\)))*\))",
    r"+(?:\(([^\s()<>]+|(\([^\s()<>]+\)))*\)|",
    r"[^\s`!()\[\]{};:'\x22.,<>?«»“”‘’])",
    r")",
);

/// Which data-juicer default a mapper uses when the recipe gives no `pattern`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultPattern {
    Email,
    Ip,
    /// `(?i)\b(` + `LINK_BODY` + `)`.
    Links,
}

pub struct RegexSub {
    pattern: Regex,
    /// The replacement in `regex` syntax (`$1`), translated from Python's (`\1`).
    repl: String,
    /// Matches must start at a Unicode word boundary (the pattern's leading `\b`, checked
    /// by hand: `regex` cannot run Unicode `\b` in its fast engines, and this keeps the
    /// link pattern fast while matching exactly what Python's `\b` allows).
    at_word_boundary: bool,
}

impl RegexSub {
    pub fn from_params(params: &mut Params, default: DefaultPattern) -> ParamResult<Self> {
        let pattern = params.opt_string("pattern")?;
        let repl = params.string("repl", "")?;
        match pattern {
            Some(given) => Self::new(strip_raw_prefix(&given), &repl),
            None => Self::default_for(default, &repl),
        }
    }

    pub fn default_for(default: DefaultPattern, python_repl: &str) -> ParamResult<Self> {
        match default {
            DefaultPattern::Email => Self::new(EMAIL_PATTERN, python_repl),
            DefaultPattern::Ip => Self::new(IP_PATTERN, python_repl),
            DefaultPattern::Links => {
                let mut sub = Self::new(LINK_BODY, python_repl)?;
                sub.at_word_boundary = true;
                Ok(sub)
            }
        }
    }

    pub fn new(pattern: &str, python_repl: &str) -> ParamResult<Self> {
        // data-juicer passes re.DOTALL.
        let pattern = Regex::new(&format!("(?s){pattern}")).map_err(|e| {
            format!("pattern `{pattern}` is not a supported regular expression: {e}")
        })?;
        Ok(RegexSub {
            pattern,
            repl: python_repl_to_rust(python_repl),
            at_word_boundary: false,
        })
    }

    /// The matches Python's `re.sub` would replace, in order.
    fn matches<'t>(&self, text: &'t str) -> Vec<regex::Captures<'t>> {
        if !self.at_word_boundary {
            return self.pattern.captures_iter(text).collect();
        }
        let mut found = Vec::new();
        let mut at = 0;
        while at <= text.len() {
            let Some(captures) = self.pattern.captures_at(text, at) else {
                break;
            };
            let whole = captures.get(0).expect("group 0 always matches");
            if is_word_boundary(text, whole.start()) {
                at = if whole.end() > whole.start() {
                    whole.end()
                } else {
                    next_char(text, whole.end())
                };
                found.push(captures);
            } else {
                at = next_char(text, whole.start());
            }
        }
        found
    }
}

/// Unicode `\b` at byte offset `at`: a word character on exactly one side.
fn is_word_boundary(text: &str, at: usize) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || regex_syntax_word(c);
    let before = text[..at].chars().next_back().is_some_and(is_word);
    let after = text[at..].chars().next().is_some_and(is_word);
    before != after
}

/// Characters `\w` matches beyond letters, digits and `_`: combining marks and connector
/// punctuation (Unicode's definition of a word character).
fn regex_syntax_word(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    !c.is_ascii()
        && matches!(
            get_general_category(c),
            G::NonspacingMark | G::SpacingMark | G::EnclosingMark | G::ConnectorPunctuation
        )
}

fn next_char(text: &str, at: usize) -> usize {
    at + text[at..].chars().next().map_or(1, char::len_utf8)
}

impl Mapper for RegexSub {
    fn map(&self, text: &str) -> Option<String> {
        let matches = self.matches(text);
        if matches.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for captures in &matches {
            let whole = captures.get(0).expect("group 0 always matches");
            out.push_str(&text[last..whole.start()]);
            captures.expand(&self.repl, &mut out);
            last = whole.end();
        }
        out.push_str(&text[last..]);
        Some(out)
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

    fn sub(pattern: DefaultPattern, text: &str) -> String {
        let mapper = RegexSub::default_for(pattern, "").unwrap();
        mapper.map(text).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn data_juicer_email_examples() {
        // Expected values are data-juicer 1.6.1's outputs for the same inputs.
        assert_eq!(
            sub(DefaultPattern::Email, "happy day euqdh@cjqi.com"),
            "happy day "
        );
        assert_eq!(
            sub(DefaultPattern::Email, "请问你是谁dasoidhao@1264fg.45om"),
            "请问你是谁dasoidhao@1264fg.45om"
        );
        assert_eq!(
            sub(DefaultPattern::Email, "ftp://examplema-niè°ze@le.com"),
            "ftp://examplema-niè°"
        );
        assert_eq!(sub(DefaultPattern::Email, "👊23da44sh12@46hqw.com"), "👊");
    }

    #[test]
    fn data_juicer_ip_examples() {
        assert_eq!(
            sub(DefaultPattern::Ip, "test of ip 234.128.124.123"),
            "test of ip "
        );
        assert_eq!(
            sub(
                DefaultPattern::Ip,
                "ft://example.com/2001:0db8:85a3:0000:0000:8a2e:0370:7334"
            ),
            "ft://example.com/"
        );
        // Not an address, but "56.1.1.1" after the "2" is.
        assert_eq!(sub(DefaultPattern::Ip, "ip 256.1.1.1"), "ip 2");
        assert_eq!(
            sub(DefaultPattern::Ip, "no address here"),
            "no address here"
        );
    }

    #[test]
    fn data_juicer_link_examples() {
        assert_eq!(
            sub(
                DefaultPattern::Links,
                "This is a test for web crawler https://www.baidu.com"
            ),
            "This is a test for web crawler "
        );
        assert_eq!(
            sub(DefaultPattern::Links, "abcd://ef is a sample"),
            " is a sample"
        );
        assert_eq!(
            sub(
                DefaultPattern::Links,
                "这是一个测试，http://www.example.com/path/to?name=value 这里"
            ),
            "这是一个测试， 这里"
        );
        assert_eq!(
            sub(
                DefaultPattern::Links,
                "ftp://user:password@ftp.example.com:21/"
            ),
            ""
        );
        assert_eq!(
            sub(DefaultPattern::Links, "no link at all."),
            "no link at all."
        );
        // No boundary between a CJK letter and "http": the match starts later, at "www".
        assert_eq!(
            sub(DefaultPattern::Links, "中文http://www.a.com"),
            "中文http://"
        );
        assert_eq!(
            sub(DefaultPattern::Links, "中文 http://www.a.com x"),
            "中文  x"
        );
    }

    #[test]
    fn python_replacement_syntax_is_translated() {
        let mapper = RegexSub::new(r"(\w+)@(\w+)", r"<\2 at \g<1>>$").unwrap();
        assert_eq!(
            mapper.map("mail bob@home now").unwrap(),
            "mail <home at bob>$ now"
        );
        assert_eq!(strip_raw_prefix("r'ab+'"), "ab+");
        assert!(RegexSub::new("(?<=a)b", "").is_err());
    }
}
