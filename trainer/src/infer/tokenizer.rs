//! The tokenizer as generation sees it: text to ids (special tokens such as `<|im_start|>`
//! written in the text are read as themselves; nothing is added), ids to text, and the ids of
//! named tokens. [`Tokenizer`] is a `tokenizer.json`; the tests also use hand-made ones.

use crate::checkpoint::Model;
use crate::error::TrainError;
use std::path::Path;
use steel_dataflow::pack::manifest::xxh3_hex;

/// The tokens that end a generation: Qwen's end of a turn and end of text.
pub const STOP_TOKENS: [&str; 2] = ["<|im_end|>", "<|endoftext|>"];

pub trait Codec: Sync {
    /// The ids of `text`, with no special tokens added.
    fn encode(&self, text: &str) -> Result<Vec<u32>, TrainError>;
    /// The text of `ids` (special tokens included); bytes that do not form whole characters
    /// come out as U+FFFD, as `String::from_utf8_lossy` writes them.
    fn decode(&self, ids: &[u32]) -> String;
    /// The id of the token written `token`, if the vocabulary has it.
    fn token_id(&self, token: &str) -> Option<u32>;
}

/// The ids of [`STOP_TOKENS`] that `codec` has.
pub fn stop_tokens(codec: &dyn Codec) -> Vec<u32> {
    STOP_TOKENS
        .iter()
        .filter_map(|t| codec.token_id(t))
        .collect()
}

type Encode = dyn Fn(&str) -> Result<Vec<u32>, String> + Send + Sync;
/// Token ids and each token's byte span `(start, end)` in the text.
pub type IdsWithOffsets = (Vec<u32>, Vec<(usize, usize)>);
type EncodeOffsets = dyn Fn(&str) -> Result<IdsWithOffsets, String> + Send + Sync;
type Decode = dyn Fn(&[u32]) -> String + Send + Sync;
type TokenId = dyn Fn(&str) -> Option<u32> + Send + Sync;

/// A `tokenizer.json` (the `tokenizers` crate, loaded as `steel pack` loads it).
pub struct Tokenizer {
    encode: Box<Encode>,
    encode_offsets: Box<EncodeOffsets>,
    decode: Box<Decode>,
    token_id: Box<TokenId>,
    /// Tokens in the vocabulary, special tokens included.
    pub vocab_size: usize,
    /// xxh3-64 of the file, as checkpoints record their training tokenizer.
    pub xxh3: String,
}

impl Tokenizer {
    pub fn load(path: &Path) -> Result<Tokenizer, TrainError> {
        let bytes = std::fs::read(path).map_err(|e| {
            TrainError::Data(format!("cannot read tokenizer `{}`: {e}", path.display()))
        })?;
        let mut inner = steel_dataflow::pack::tokenizer::load(path)?;
        // Prompts are fitted to the context by the caller, never cut or padded by the
        // tokenizer's own settings.
        inner
            .with_truncation(None)
            .map_err(|e| TrainError::Data(format!("`{}`: {e}", path.display())))?;
        inner.with_padding(None);
        let inner = std::sync::Arc::new(inner);
        let vocab_size = inner.get_vocab_size(true);
        let (for_encode, for_offsets) = (inner.clone(), inner.clone());
        let (for_decode, for_ids) = (inner.clone(), inner);
        Ok(Tokenizer {
            encode: Box::new(move |text| {
                for_encode
                    .encode(text, false)
                    .map(|encoding| encoding.get_ids().to_vec())
                    .map_err(|e| e.to_string())
            }),
            // `encode` gives byte offsets into the text as given (the normaliser's changes
            // are mapped back).
            encode_offsets: Box::new(move |text| {
                for_offsets
                    .encode(text, false)
                    .map(|encoding| (encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
                    .map_err(|e| e.to_string())
            }),
            // A byte-level decoder cannot fail; an id the vocabulary lacks (a model's padding
            // rows past the tokenizer's) decodes to nothing.
            decode: Box::new(move |ids| for_decode.decode(ids, false).unwrap_or_default()),
            token_id: Box::new(move |token| for_ids.token_to_id(token)),
            vocab_size,
            xxh3: xxh3_hex(&bytes),
        })
    }

    /// The tokenizer for `model` (read from `checkpoint`): `path`, or else the
    /// `tokenizer.json` in the checkpoint directory. Refused if it has more tokens than the
    /// model's vocabulary, or — unless `allow_mismatch` — if it is not the tokenizer the
    /// checkpoint records it was trained with (a HuggingFace directory records none).
    pub fn for_model(
        path: Option<&Path>,
        checkpoint: &Path,
        model: &Model,
        allow_mismatch: bool,
    ) -> Result<Tokenizer, TrainError> {
        let inside = checkpoint.join("tokenizer.json");
        let path = match path {
            Some(path) => path,
            None if inside.exists() => &inside,
            None => {
                return Err(TrainError::Data(format!(
                    "`{}` has no tokenizer.json; give one with --tokenizer",
                    checkpoint.display()
                )));
            }
        };
        let tokenizer = Tokenizer::load(path)?;
        if tokenizer.vocab_size > model.config.vocab_size {
            return Err(TrainError::Data(format!(
                "tokenizer `{}` has {} tokens but the model only {}",
                path.display(),
                tokenizer.vocab_size,
                model.config.vocab_size
            )));
        }
        match &model.tokenizer_xxh3 {
            Some(recorded) if *recorded != tokenizer.xxh3 && !allow_mismatch => {
                Err(TrainError::Data(format!(
                    "tokenizer mismatch: `{}` has xxh3 {}, but the checkpoint was trained with \
                     a tokenizer of xxh3 {recorded} (--allow-tokenizer-mismatch to go on)",
                    path.display(),
                    tokenizer.xxh3
                )))
            }
            _ => Ok(tokenizer),
        }
    }
}

impl Tokenizer {
    /// The ids of `text`, as [`Codec::encode`] gives them, and the byte span `start..end` of
    /// `text` each token was read from. Spans are in order and do not overlap, except that
    /// the tokens of one character split into several byte tokens all span that character.
    pub fn encode_with_offsets(&self, text: &str) -> Result<IdsWithOffsets, TrainError> {
        (self.encode_offsets)(text).map_err(|e| TrainError::Data(format!("cannot tokenize: {e}")))
    }
}

impl Codec for Tokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, TrainError> {
        (self.encode)(text).map_err(|e| TrainError::Data(format!("cannot tokenize: {e}")))
    }

    fn decode(&self, ids: &[u32]) -> String {
        (self.decode)(ids)
    }

    fn token_id(&self, token: &str) -> Option<u32> {
        (self.token_id)(token)
    }
}
