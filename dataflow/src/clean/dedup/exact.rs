//! `document_deduplicator`: exact duplicates by the MD5 of the stripped text (optionally
//! lower-cased, and with whitespace, digits and ASCII punctuation removed).

use crate::clean::op::Deduplicator;
use crate::clean::params::{ParamResult, Params};
use crate::clean::pytext;
use md5::{Digest, Md5};
use regex::Regex;
pub struct ExactDedup {
    lowercase: bool,
    non_character: Option<Regex>,
}

impl ExactDedup {
    pub fn from_params(params: &mut Params) -> ParamResult<Self> {
        let lowercase = params.bool("lowercase", false)?;
        let ignore = params.bool("ignore_non_character", false)?;
        Ok(Self::new(lowercase, ignore))
    }

    pub fn new(lowercase: bool, ignore_non_character: bool) -> Self {
        let non_character = ignore_non_character.then(|| {
            let punctuation = regex::escape(r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##);
            Regex::new(&format!(r"\s+|\d+|[{punctuation}]")).expect("valid pattern")
        });
        ExactDedup {
            lowercase,
            non_character,
        }
    }
}

/// The MD5 digest of a document as data-juicer's `document_deduplicator` hashes it.
pub fn digest(text: &str, lowercase: bool, non_character: Option<&Regex>) -> [u8; 16] {
    let mut text = if lowercase {
        pytext::lower(text)
    } else {
        text.to_string()
    };
    if let Some(pattern) = non_character {
        text = pattern.replace_all(&text, "").into_owned();
    }
    Md5::digest(pytext::strip(&text).as_bytes()).into()
}

impl Deduplicator for ExactDedup {
    fn key(&self, text: &str) -> Vec<u64> {
        let d = digest(text, self.lowercase, self.non_character.as_ref());
        let (high, low) = d.split_at(8);
        vec![
            u64::from_be_bytes(high.try_into().expect("8 bytes")),
            u64::from_be_bytes(low.try_into().expect("8 bytes")),
        ]
    }

    /// One bucket: the digest's first word.
    fn buckets(&self, key: &[u64]) -> Vec<u64> {
        vec![key[0]]
    }

    fn matches(&self, a: &[u64], b: &[u64]) -> bool {
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_stripped_text() {
        // Python: hashlib.md5("abc".encode()).hexdigest() == "900150983cd24fb0d6963f7d28e17f72"
        let d = digest("  abc\n", false, None);
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "900150983cd24fb0d6963f7d28e17f72");
        let dedup = ExactDedup::new(true, true);
        let first = dedup.key("Hello, World 1!");
        let second = dedup.key("hello world 22");
        assert_eq!(first, second);
        assert!(dedup.matches(&first, &second));
        assert!(!dedup.matches(&first, &dedup.key("goodbye world")));
    }
}
