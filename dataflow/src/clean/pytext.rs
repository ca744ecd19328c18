//! Python `str` semantics that data-juicer's operators rely on, written once so every operator
//! counts, splits and strips text exactly as the Python original does.
//!
//! Lengths are in Unicode code points (Python's `len`), not bytes.

/// Python's `len(text)`: the number of code points.
pub fn len(text: &str) -> usize {
    text.chars().count()
}

/// Python's `str.isspace` for one character: Unicode `White_Space` plus the four ASCII
/// separators U+001C..U+001F that Python also counts as space.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub fn strip(text: &str) -> &str {
    text.trim_matches(is_space)
}

/// Python's `str.isalpha` for one character: general categories Lu, Ll, Lt, Lm, Lo.
pub fn is_alpha(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
    )
}

/// Python's `str.isalnum` for one character: a letter or any numeric character.
pub fn is_alnum(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    is_alpha(c)
        || matches!(
            get_general_category(c),
            G::DecimalNumber | G::LetterNumber | G::OtherNumber
        )
}

/// Whether Python's `str.splitlines` breaks a line at `c`.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{0b}'
            | '\u{0c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Python's `str.splitlines()`: lines without their breaks; `\r\n` is one break; no empty
/// last line after a final break; an empty text has no lines.
pub fn splitlines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if is_line_break(c) {
            lines.push(&text[start..at]);
            let mut end = at + c.len_utf8();
            if c == '\r'
                && let Some((_, '\n')) = chars.peek()
            {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// data-juicer's `split_on_whitespace(text, new_line, tab)`: split on single spaces (and on
/// `\n` / `\t` when asked), dropping empty pieces.
pub fn split_on_whitespace(text: &str, new_line: bool, tab: bool) -> Vec<&str> {
    text.split(|c| c == ' ' || (new_line && c == '\n') || (tab && c == '\t'))
        .filter(|word| !word.is_empty())
        .collect()
}

/// Python's `str.lower()`.
pub fn lower(text: &str) -> String {
    text.to_lowercase()
}

/// The code-point windows `text[i:i+n]` for every `i` in `0..=len-n` (none when `len < n`),
/// as byte ranges of `text`.
pub fn char_windows(text: &str, n: usize) -> Vec<&str> {
    let starts: Vec<usize> = text
        .char_indices()
        .map(|(at, _)| at)
        .chain([text.len()])
        .collect();
    let chars = starts.len() - 1;
    if n == 0 || chars < n {
        return Vec::new();
    }
    (0..=chars - n)
        .map(|i| &text[starts[i]..starts[i + n]])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitlines_matches_python() {
        // Python: "a\r\nb\rc\x0bd\u2028e\n".splitlines() == ['a', 'b', 'c', 'd', 'e']
        assert_eq!(
            splitlines("a\r\nb\rc\u{0b}d\u{2028}e\n"),
            ["a", "b", "c", "d", "e"]
        );
        // Python: "\n\nx".splitlines() == ['', '', 'x']; "".splitlines() == []
        assert_eq!(splitlines("\n\nx"), ["", "", "x"]);
        assert!(splitlines("").is_empty());
        assert_eq!(splitlines("no newline"), ["no newline"]);
    }

    #[test]
    fn character_classes_match_python() {
        // Python: [c.isalnum() for c in "a1中٣½ ,\u0301"]
        let got: Vec<bool> = "a1中٣½ ,\u{301}".chars().map(is_alnum).collect();
        assert_eq!(got, [true, true, true, true, true, false, false, false]);
        // Python: "\x1c".isspace() and "\u3000".isspace() and not "\u200b".isspace()
        assert!(is_space('\u{1c}') && is_space('\u{3000}') && !is_space('\u{200b}'));
        assert_eq!(strip("\u{3000} x \x1f"), "x");
    }

    #[test]
    fn windows_and_whitespace_split() {
        assert_eq!(char_windows("中文ab", 3), ["中文a", "文ab"]);
        assert!(char_windows("ab", 3).is_empty());
        assert_eq!(
            split_on_whitespace(" a  b\nc\td ", true, true),
            ["a", "b", "c", "d"]
        );
        assert_eq!(split_on_whitespace("a\nb c", false, false), ["a\nb", "c"]);
    }
}
