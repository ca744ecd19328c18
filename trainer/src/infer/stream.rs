//! Token ids to text as they are generated, without ever showing half a character: a
//! Chinese character is three UTF-8 bytes, and a byte-level BPE may put them in different
//! tokens. With each new id the text since the last whole-character boundary is decoded
//! again; final U+FFFDs there mean bytes that do not yet form a character, and only the text
//! before them is emitted.
//!
//! The decode window starts one boundary back (`prefix`), so decoders whose text for a token
//! depends on the one before it (SentencePiece's leading space) give the right text; the same
//! scheme as `tokenizers`' `DecodeStream` and vLLM's incremental detokenizer, which also emit
//! the whole characters before an unfinished one.

use crate::infer::tokenizer::Codec;

const INCOMPLETE: char = char::REPLACEMENT_CHARACTER;

#[derive(Debug, Default)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    /// The decode window starts here.
    prefix: usize,
    /// The last boundary where the text was whole characters.
    read: usize,
    /// The part of the text of `ids[prefix..]` emitted so far.
    shown: String,
}

impl IncrementalDecoder {
    pub fn new() -> IncrementalDecoder {
        IncrementalDecoder::default()
    }

    /// Take the next id; returns the whole characters it completes (empty while its bytes
    /// only start one).
    pub fn push(&mut self, codec: &dyn Codec, id: u32) -> String {
        self.ids.push(id);
        let text = codec.decode(&self.ids[self.prefix..]);
        // All of the trailing U+FFFDs: a byte-level decoder writes one for unfinished bytes,
        // a byte-fallback (SentencePiece) one writes one per byte.
        let whole = text.trim_end_matches(INCOMPLETE);
        let new = self.emit(whole);
        if whole.len() == text.len() {
            // A boundary: the window moves on.
            self.prefix = self.read;
            self.read = self.ids.len();
            self.shown = codec.decode(&self.ids[self.prefix..self.read]);
        }
        new
    }

    /// The text not yet emitted, unfinished bytes at the end as U+FFFD: the end of a
    /// generation.
    pub fn finish(&mut self, codec: &dyn Codec) -> String {
        let text = codec.decode(&self.ids[self.prefix..]);
        self.emit(&text)
    }

    /// `text` (of `ids[prefix..]`) past what was shown of it.
    fn emit(&mut self, text: &str) -> String {
        match text.strip_prefix(self.shown.as_str()) {
            Some(new) if !new.is_empty() => {
                let new = new.to_string();
                self.shown = text.to_string();
                new
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::TrainError;

    /// A byte-level vocabulary: each token is a byte string, decoded as
    /// `String::from_utf8_lossy` of the concatenation (as the byte-level BPE decoder does).
    pub(crate) struct Bytes(pub Vec<Vec<u8>>);

    impl Codec for Bytes {
        fn encode(&self, text: &str) -> Result<Vec<u32>, TrainError> {
            // Greedy longest match, enough for the tests' vocabularies.
            let mut rest = text.as_bytes();
            let mut ids = Vec::new();
            while !rest.is_empty() {
                let (id, len) = self
                    .0
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| !t.is_empty() && rest.starts_with(t))
                    .map(|(i, t)| (i as u32, t.len()))
                    .max_by_key(|&(_, len)| len)
                    .ok_or_else(|| TrainError::Data(format!("no token for {rest:?}")))?;
                ids.push(id);
                rest = &rest[len..];
            }
            Ok(ids)
        }

        fn decode(&self, ids: &[u32]) -> String {
            let bytes: Vec<u8> = ids
                .iter()
                .flat_map(|&id| self.0[id as usize].iter().copied())
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }

        fn token_id(&self, token: &str) -> Option<u32> {
            self.0
                .iter()
                .position(|t| t == token.as_bytes())
                .map(|i| i as u32)
        }
    }

    fn stream(codec: &Bytes, ids: &[u32]) -> (Vec<String>, String) {
        let mut decoder = IncrementalDecoder::new();
        let pieces: Vec<String> = ids.iter().map(|&id| decoder.push(codec, id)).collect();
        (pieces, decoder.finish(codec))
    }

    #[test]
    fn a_character_split_across_tokens_is_emitted_whole() {
        // 中 is E4 B8 AD, 文 is E6 96 87: tokens split them as [E4] [B8 AD E6] [96] [87 'a'].
        let codec = Bytes(vec![
            vec![0xE4],
            vec![0xB8, 0xAD, 0xE6],
            vec![0x96],
            vec![0x87, b'a'],
        ]);
        let (pieces, rest) = stream(&codec, &[0, 1, 2, 3]);
        assert_eq!(pieces, ["", "中", "", "文a"]);
        assert_eq!(rest, "");
        assert!(pieces.iter().all(|p| !p.contains(INCOMPLETE)));
        assert_eq!(pieces.concat(), codec.decode(&[0, 1, 2, 3]));
    }

    #[test]
    fn unfinished_bytes_at_the_end_come_out_once_as_a_replacement() {
        let codec = Bytes(vec![b"ok".to_vec(), vec![0xE4, 0xB8]]);
        let (pieces, rest) = stream(&codec, &[0, 1]);
        assert_eq!(pieces, ["ok", ""]);
        assert_eq!(rest, "\u{FFFD}");
        // A stray continuation byte followed by a character is shown, not held forever.
        let codec = Bytes(vec![vec![0x80], b"b".to_vec()]);
        let (pieces, rest) = stream(&codec, &[0, 1]);
        assert_eq!(
            (pieces.concat(), rest),
            ("\u{FFFD}b".to_string(), String::new())
        );
    }

    /// A byte-fallback vocabulary (SentencePiece's `<0xE4>` tokens): unfinished bytes decode
    /// to one U+FFFD each, as `tokenizers`' `ByteFallback` decoder writes them.
    struct ByteFallback(Bytes);

    impl Codec for ByteFallback {
        fn encode(&self, text: &str) -> Result<Vec<u32>, TrainError> {
            self.0.encode(text)
        }

        fn decode(&self, ids: &[u32]) -> String {
            let bytes: Vec<u8> = ids
                .iter()
                .flat_map(|&id| self.0.0[id as usize].iter().copied())
                .collect();
            let valid = match std::str::from_utf8(&bytes) {
                Ok(_) => bytes.len(),
                Err(e) => e.valid_up_to(),
            };
            let mut text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            text.extend(std::iter::repeat_n(INCOMPLETE, bytes.len() - valid));
            text
        }

        fn token_id(&self, token: &str) -> Option<u32> {
            self.0.token_id(token)
        }
    }

    #[test]
    fn a_byte_fallback_character_is_emitted_whole_not_lost() {
        // 好 whole, then 中 as three byte tokens: the decoder reads "好�", "好��", "好中".
        let codec = ByteFallback(Bytes(vec!["好".into(), vec![0xE4], vec![0xB8], vec![0xAD]]));
        let mut decoder = IncrementalDecoder::new();
        let pieces: Vec<String> = [0, 1, 2, 3]
            .iter()
            .map(|&id| decoder.push(&codec, id))
            .collect();
        assert_eq!(pieces, ["好", "", "", "中"]);
        assert_eq!(decoder.finish(&codec), "");
    }
}
