//! `fix_unicode_mapper`: repair text the way data-juicer's call `ftfy.fix_text(text,
//! normalization=...)` does with ftfy's default settings, reimplemented:
//!
//! 1. HTML character references (`&amp;`, `&eacute;`, `&#20013;`) are decoded, unless a `<`
//!    has been seen in this or an earlier line (then the text is taken to be HTML source);
//! 2. mojibake: runs of characters that are UTF-8 bytes mis-decoded as Windows-1252 / Latin-1
//!    (`Ã©` for `é`, `â€œ` for `“`) are decoded back, repeatedly (double mojibake);
//! 3. C1 controls U+0080..U+009F become their Windows-1252 characters;
//! 4. Latin ligatures (`ﬁ`) and fullwidth forms (`ｆｕｌｌ`, ideographic space) are expanded;
//! 5. curly quotes become straight ones;
//! 6. `\r\n`, `\r`, U+2028, U+2029, U+0085 become `\n`;
//! 7. terminal colour escapes, then control characters (but tab, newline, form feed) go;
//! 8. the text is put in the requested normalization form (NFC by default).
//!
//! ftfy also weighs "badness" to decide on whole-text re-decodings and has rarer fixes; those
//! are not reproduced (README: differences from data-juicer).

use crate::clean::op::Mapper;
use crate::clean::params::{ParamResult, Params};
use regex::Regex;
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    Nfc,
    Nfkc,
    Nfd,
    Nfkd,
}

pub struct FixUnicode {
    normalization: Normalization,
}

impl FixUnicode {
    pub fn from_params(params: &mut Params) -> ParamResult<Self> {
        let given = params.string("normalization", "NFC")?;
        let normalization = match given.to_uppercase().as_str() {
            "" | "NFC" => Normalization::Nfc,
            "NFKC" => Normalization::Nfkc,
            "NFD" => Normalization::Nfd,
            "NFKD" => Normalization::Nfkd,
            _ => {
                return Err(format!(
                    "fix_unicode_mapper: normalization `{given}` is not one of NFC, NFKC, NFD, NFKD"
                ));
            }
        };
        Ok(FixUnicode { normalization })
    }

    pub fn new(normalization: Normalization) -> Self {
        FixUnicode { normalization }
    }
}

/// Whether no fix can touch `c` (most CJK and plain ASCII text is all such characters).
fn is_inert(c: char) -> bool {
    match c as u32 {
        0x20..=0x7e => c != '&',
        0x09 | 0x0a | 0x0c => true,
        0x00..=0xff => false,
        0x2bc | 0x2018..=0x201f | 0x2028 | 0x2029 | 0x206a..=0x206f | 0x3000 | 0xfeff => false,
        0xfb00..=0xfb06 | 0xff01..=0xffff | 0x1d173..=0x1d17a | 0xe0000..=0xe007f => false,
        0x132 | 0x133 | 0x13f | 0x140 | 0x149 | 0x1c4..=0x1cc | 0x1f1..=0x1f3 => false,
        _ => cp1252_byte(c).is_none(),
    }
}

impl Mapper for FixUnicode {
    fn map(&self, text: &str) -> Option<String> {
        if text.chars().all(is_inert) && self.is_normalized(text) {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut unescape = true;
        for segment in text.split_inclusive('\n') {
            if segment.contains('<') {
                unescape = false;
            }
            out.push_str(&self.fix_segment(segment, unescape));
        }
        (out != text).then_some(out)
    }
}

impl FixUnicode {
    fn fix_segment(&self, segment: &str, unescape: bool) -> String {
        let mut text = segment.to_string();
        // Decoding an entity or a mojibake sequence can reveal another one (double encoding):
        // repeat those until stable. The character fixes and normalisation after them cannot
        // create work for one another, so they run once.
        for _ in 0..4 {
            let mut decoded = text.clone();
            if unescape && decoded.contains('&') {
                decoded = unescape_html(&decoded);
            }
            if !decoded.is_ascii() {
                decoded = fix_mojibake(&decoded);
            }
            let changed = decoded != text;
            text = decoded;
            if !changed {
                break;
            }
        }
        if text.contains('\u{1b}') {
            text = TERMINAL_ESCAPE.replace_all(&text, "").into_owned();
        }
        text = fix_characters(&text);
        self.normalize(text)
    }

    /// Whether `text` is surely in the normalization form already (Unicode's quick check).
    fn is_normalized(&self, text: &str) -> bool {
        use unicode_normalization::{
            IsNormalized, is_nfc_quick, is_nfd_quick, is_nfkc_quick, is_nfkd_quick,
        };
        let quick = match self.normalization {
            Normalization::Nfc => is_nfc_quick(text.chars()),
            Normalization::Nfkc => is_nfkc_quick(text.chars()),
            Normalization::Nfd => is_nfd_quick(text.chars()),
            Normalization::Nfkd => is_nfkd_quick(text.chars()),
        };
        quick == IsNormalized::Yes
    }

    fn normalize(&self, text: String) -> String {
        if self.is_normalized(&text) {
            return text;
        }
        match self.normalization {
            Normalization::Nfc => text.nfc().collect(),
            Normalization::Nfkc => text.nfkc().collect(),
            Normalization::Nfd => text.nfd().collect(),
            Normalization::Nfkd => text.nfkd().collect(),
        }
    }
}

/// The per-character fixes in one pass: C1 controls, ligatures and widths, quotes, line
/// breaks, control characters.
fn fix_characters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let c = uncurl(fix_c1(c));
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            _ if is_removed_control(c) => {}
            _ => expand_width_and_ligatures(c, &mut out),
        }
    }
    out
}

static ENTITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("valid pattern"));
static TERMINAL_ESCAPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[((?:\d|;)*)([a-zA-Z])").expect("valid pattern"));

/// Decode each `&...;` reference that names a character; ftfy also accepts all-caps names.
fn unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    ENTITY
        .replace_all(text, |c: &regex::Captures| {
            let entity = &c[0];
            let decoded = html_escape::decode_html_entities(entity);
            if decoded != entity {
                return decoded.into_owned();
            }
            let lower = entity.to_lowercase();
            let decoded = html_escape::decode_html_entities(&lower);
            if decoded != lower
                && entity[1..entity.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_uppercase())
            {
                decoded.into_owned()
            } else {
                entity.to_string()
            }
        })
        .into_owned()
}

/// The Windows-1252 byte a character came from, if mis-decoding a byte can give it
/// ("sloppy" Windows-1252: the five undefined bytes decode to the C1 controls of Latin-1).
fn cp1252_byte(c: char) -> Option<u8> {
    let code = c as u32;
    if code < 0x80 || (0xa0..=0xff).contains(&code) || (0x80..=0x9f).contains(&code) {
        return Some(code as u8);
    }
    Some(match c {
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8a,
        '‹' => 0x8b,
        'Œ' => 0x8c,
        'Ž' => 0x8e,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9a,
        '›' => 0x9b,
        'œ' => 0x9c,
        'ž' => 0x9e,
        'Ÿ' => 0x9f,
        _ => return None,
    })
}

/// The character Windows-1252 gives a byte 0x80..=0x9F (C1 controls that came from it).
fn cp1252_char(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    HIGH[(byte - 0x80) as usize]
}

/// Replace each sequence of characters whose Windows-1252 bytes form one multi-byte UTF-8
/// character by that character.
fn fix_mojibake(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some((decoded, used)) = utf8_at(&chars[i..]) {
            out.push(decoded);
            i += used;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// If `chars` starts with a UTF-8 lead byte and its continuation bytes (as Windows-1252
/// characters), the character they encode and how many characters they took.
fn utf8_at(chars: &[char]) -> Option<(char, usize)> {
    let lead = cp1252_byte(chars[0])?;
    let width = match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    if chars.len() < width {
        return None;
    }
    let mut bytes = [lead, 0, 0, 0];
    for (k, c) in chars[1..width].iter().enumerate() {
        let byte = cp1252_byte(*c)?;
        if !(0x80..=0xbf).contains(&byte) {
            return None;
        }
        bytes[k + 1] = byte;
    }
    let decoded = std::str::from_utf8(&bytes[..width]).ok()?;
    decoded.chars().next().map(|c| (c, width))
}

fn fix_c1(c: char) -> char {
    match c as u32 {
        0x80..=0x9f => cp1252_char(c as u8),
        _ => c,
    }
}

/// Latin ligatures and fullwidth / halfwidth forms to their NFKC expansion; U+3000 to a space.
fn expand_width_and_ligatures(c: char, out: &mut String) {
    let code = c as u32;
    let ligature = matches!(code, 0x132 | 0x133 | 0x13f | 0x140 | 0x149 | 0x1c4..=0x1cc | 0x1f1..=0x1f3 | 0xfb00..=0xfb06);
    if code == 0x3000 {
        out.push(' ');
    } else if ligature || (0xff01..0xfff0).contains(&code) {
        out.extend(std::iter::once(c).nfkc());
    } else {
        out.push(c);
    }
}

fn uncurl(c: char) -> char {
    match c {
        '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
        '\u{201c}'..='\u{201f}' => '"',
        _ => c,
    }
}

/// ftfy's `remove_control_chars` set.
fn is_removed_control(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0x206a..=0x206f | 0xfeff | 0xfff9..=0xfffc
            | 0x1d173..=0x1d17a | 0xe0000..=0xe007f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(text: &str) -> String {
        FixUnicode::new(Normalization::Nfc)
            .map(text)
            .unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn matches_ftfy_on_known_cases() {
        // Each expected value is ftfy 6.3.1's `fix_text(input, normalization="NFC")`.
        assert_eq!(fix("Ã©tÃ© â€œquotedâ€\u{9d}"), "été \"quoted\"");
        assert_eq!(fix("&amp; &lt;tag&gt; &eacute;"), "& <tag> é");
        assert_eq!(
            fix("“curly” ‘single’ ﬁ ｆｕｌｌ\u{3000}width"),
            "\"curly\" 'single' fi full width"
        );
        assert_eq!(fix("a\r\nb\rc\u{2028}d"), "a\nb\nc\nd");
        assert_eq!(
            fix("\u{1b}[31mred\u{1b}[0m \u{0}x\u{feff}y\u{c}"),
            "red xy\u{c}"
        );
        assert_eq!(fix("Â£5 cafÃ©"), "£5 café");
        assert_eq!(fix("é» legit? façade"), "é» legit? façade");
        assert_eq!(fix("&amp; <b>"), "&amp; <b>");
        assert_eq!(fix("line &amp;\n<p> &amp;"), "line &\n<p> &amp;");
        assert_eq!(fix("e\u{301}"), "é");
        assert_eq!(fix("&AMP; &#x4e2d; &#20013;"), "& 中 中");
        assert_eq!(fix("â€™s"), "'s");
        assert_eq!(fix("中文不变"), "中文不变");
    }
}
