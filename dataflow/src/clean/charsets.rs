//! The character sets data-juicer's operators test against.
//!
//! `data/special_characters.txt` lists, one hex code point per line, every single-code-point
//! member of data-juicer's `SPECIAL_CHARACTERS`: Python's `string.punctuation`, digits and
//! whitespace, its list of other symbols, and the single-code-point emoji of the `emoji`
//! package 2.2.0 that data-juicer pins. (Multi-code-point emoji can never equal one character,
//! so they never matter to a per-character test.)

use std::sync::LazyLock;

const SPECIAL_CHARACTERS_FILE: &str = include_str!("../../data/special_characters.txt");

/// Sorted code points of the special characters outside ASCII; ASCII ones are a bitmap.
struct CharSet {
    ascii: [bool; 128],
    other: Vec<char>,
}

impl CharSet {
    fn contains(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii[c as usize]
        } else {
            self.other.binary_search(&c).is_ok()
        }
    }
}

static SPECIAL: LazyLock<CharSet> = LazyLock::new(|| {
    let mut set = CharSet {
        ascii: [false; 128],
        other: Vec::new(),
    };
    for line in SPECIAL_CHARACTERS_FILE.lines() {
        let code = u32::from_str_radix(line.trim(), 16).expect("special_characters.txt is hex");
        let c = char::from_u32(code).expect("special_characters.txt holds code points");
        if c.is_ascii() {
            set.ascii[c as usize] = true;
        } else {
            set.other.push(c);
        }
    }
    set.other.sort_unstable();
    set
});

/// Whether `c` is one of data-juicer's `SPECIAL_CHARACTERS`.
pub fn is_special(c: char) -> bool {
    SPECIAL.contains(c)
}

/// data-juicer's `VARIOUS_WHITESPACES`, which `whitespace_normalization_mapper` turns into
/// plain spaces. It holds U+0084 where U+0085 (NEXT LINE) was surely meant; we keep the
/// set exactly as data-juicer has it so outputs match.
pub fn is_various_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | ' ' | '\u{84}' | '\u{a0}' | '\u{2000}'
            ..='\u{200d}' | '\u{202f}' | '\u{205f}' | '\u{2060}' | '\u{3000}' | '\u{fffc}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_characters_hold_known_members() {
        for c in ['!', '7', ' ', '\n', '，', '。', '★', '😀', '™', '上'] {
            assert!(is_special(c), "{c:?} should be special");
        }
        for c in ['a', 'Z', '中', 'é'] {
            assert!(!is_special(c), "{c:?} should not be special");
        }
        assert_eq!(
            SPECIAL.other.len() + SPECIAL.ascii.iter().filter(|b| **b).count(),
            1618
        );
    }
}
