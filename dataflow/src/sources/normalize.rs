//! The text normalisation every non-code source gets: Unicode NFKC, then `\r` removed.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// NFKC-normalise `text` and remove every `\r` (Windows line ends and stray carriage
/// returns, which Baidu QA is full of).
///
/// Chinese text is mostly characters NFKC leaves alone, with a full-width comma or colon
/// here and there; rather than rebuilding the whole text char by char because of one `，`,
/// only the runs around unstable characters go through the normaliser (see [`is_stable`]);
/// full-width punctuation and letters followed by a stable char are mapped directly.
///
/// ```
/// use steel_dataflow::sources::normalize::normalize;
/// assert_eq!(normalize("ＡＢＣ１２３\r\n"), "ABC123\n");
/// assert_eq!(normalize("ﬁ ①"), "fi 1");
/// assert_eq!(normalize("中文，标点：e\u{301}"), "中文,标点:é");
/// ```
pub fn normalize(text: &str) -> String {
    if is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        return text.replace('\r', "");
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        // Copy the settled prefix (mapping full-width forms), but leave its last char to the
        // next run when that char is followed by an unstable one (which might combine with it).
        let settled = copy_settled_prefix(rest, &mut out);
        rest = &rest[settled..];
        if rest.is_empty() {
            break;
        }
        // The unstable run ends before the next stable char that is followed by another
        // stable char (or the end): nothing after that point can interact with the run.
        let run = unstable_run_len(rest);
        out.extend(rest[..run].nfkc());
        rest = &rest[run..];
    }
    if out.contains('\r') {
        out.retain(|c| c != '\r');
    }
    out
}

/// Characters NFKC maps to themselves, that have canonical combining class 0 and that are
/// never the second character of a composition: ASCII, the CJK Unified Ideographs block and
/// common CJK punctuation. Normalisation never changes them, never reorders across them and
/// never merges them into what comes before. (Checked against Python's `unicodedata` for
/// every character of the set; `nfkc_fast_path_matches_plain_nfkc` tests the result.)
pub fn is_stable(c: char) -> bool {
    c.is_ascii()
        || ('\u{4E00}'..='\u{9FFF}').contains(&c)
        || matches!(
            c,
            '\u{3001}' | '\u{3002}' | '\u{3008}'
                ..='\u{3011}' | '\u{201C}' | '\u{201D}' | '\u{2014}'
        )
}

/// The NFKC form of a full-width ASCII variant (`，` is `,`) or of the ideographic space: one
/// ASCII char, which is never the second character of a composition. With combining class 0,
/// such a char behaves like a stable one once mapped, unless a combining mark follows it
/// (`Ｅ` and U+0301 compose to `É`), so it too may only be mapped alone when a settled char
/// follows.
fn simple_form(c: char) -> Option<char> {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0),
        '\u{3000}' => Some(' '),
        _ => None,
    }
}

/// A stable char, or one whose NFKC form is a single ASCII char (`simple_form`).
fn is_settled(c: char) -> bool {
    is_stable(c) || simple_form(c).is_some()
}

/// Copy to `out` the longest prefix of settled chars each followed by a settled char or the
/// end of the text, full-width forms mapped (`simple_form`) and everything else copied a run
/// at a time; the prefix's length in bytes.
fn copy_settled_prefix(text: &str, out: &mut String) -> usize {
    // Where the run still to be copied as it is starts.
    let mut verbatim = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next_settled = chars.peek().is_none_or(|&(_, n)| is_settled(n));
        if !(is_settled(c) && next_settled) {
            out.push_str(&text[verbatim..at]);
            return at;
        }
        if let Some(mapped) = simple_form(c) {
            out.push_str(&text[verbatim..at]);
            out.push(mapped);
            verbatim = at + c.len_utf8();
        }
    }
    out.push_str(&text[verbatim..]);
    text.len()
}

/// Length in bytes of the run that must be normalised as a whole: up to the first settled
/// char (after the first) that is followed by a settled char or the end.
fn unstable_run_len(text: &str) -> usize {
    let mut chars = text.char_indices().peekable();
    chars.next();
    while let Some((at, c)) = chars.next() {
        let next_stable = chars.peek().is_none_or(|&(_, n)| is_settled(n));
        if is_settled(c) && next_stable {
            return at;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    fn plain(text: &str) -> String {
        text.nfkc().filter(|&c| c != '\r').collect()
    }

    #[test]
    fn nfkc_fast_path_matches_plain_nfkc() {
        // Random mixes of stable chars with full-width forms, combining marks, Hangul jamo
        // (which compose), compatibility ligatures and \r, seeded.
        let pool: Vec<char> = "aZ9 \n\r中文字，：（）！？、。“”—ＡｅＥ０～\u{301}\u{308}\u{327}\u{1100}\u{1161}\u{11A8}ﬁ①ｶﾞ\u{3000}e\u{2026}Å"
            .chars()
            .collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for case in 0..20_000 {
            let len = rng.random_range(0..24);
            let text: String = (0..len)
                .map(|_| pool[rng.random_range(0..pool.len())])
                .collect();
            assert_eq!(normalize(&text), plain(&text), "case {case}: {text:?}");
        }
    }
}
