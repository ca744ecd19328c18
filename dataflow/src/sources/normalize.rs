//! The text normalisation every non-code source gets: Unicode NFKC, then `\r` removed.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// NFKC-normalise `text` and remove every `\r` (Windows line ends and stray carriage
/// returns, which Baidu QA is full of).
///
/// ```
/// use steel_dataflow::sources::normalize::normalize;
/// assert_eq!(normalize("ＡＢＣ１２３\r\n"), "ABC123\n");
/// assert_eq!(normalize("ﬁ ①"), "fi 1");
/// ```
pub fn normalize(text: &str) -> String {
    // Most text is already NFKC; the quick check avoids rebuilding it char by char.
    if is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        text.replace('\r', "")
    } else {
        text.nfkc().filter(|&c| c != '\r').collect()
    }
}
