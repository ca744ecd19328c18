//! Tokenizers: loading a `tokenizer.json` (Qwen's, for real runs) and training a small
//! byte-level BPE with the Qwen special tokens (for experiments). Never downloads anything.

use crate::pack::PackError;
use std::path::Path;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// Qwen's special tokens, in id order after the BPE vocabulary.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

pub fn load(path: &Path) -> Result<Tokenizer, PackError> {
    Tokenizer::from_file(path).map_err(|e| PackError::Tokenizer {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The id of `token` (a special token such as `<|im_end|>`) in `tokenizer`.
pub fn token_id(tokenizer: &Tokenizer, token: &str, path: &Path) -> Result<u32, PackError> {
    tokenizer
        .token_to_id(token)
        .ok_or_else(|| PackError::UnknownToken {
            token: token.to_string(),
            path: path.to_path_buf(),
        })
}

/// Train a byte-level BPE of `vocab_size` entries on `texts` (NFC normaliser and byte-level
/// pre-tokenizer and decoder, as Qwen's) and save it to `output`.
pub fn train(texts: Vec<String>, vocab_size: usize, output: &Path) -> Result<(), PackError> {
    let fail = |e: tokenizers::Error| PackError::Tokenizer {
        path: output.to_path_buf(),
        reason: e.to_string(),
    };
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::<BPE, NFC, ByteLevel, ByteLevel, ByteLevel>::new()
        .with_model(BPE::default())
        .with_normalizer(Some(NFC))
        .with_pre_tokenizer(Some(ByteLevel::new(false, false, true)))
        .with_post_processor(Some(ByteLevel::new(false, false, false)))
        .with_decoder(Some(ByteLevel::new(false, false, false)))
        .build()
        .map_err(fail)?;
    tokenizer
        .train(&mut trainer, texts.into_iter())
        .map_err(fail)?;
    tokenizer.save(output, false).map_err(fail)?;
    Ok(())
}

/// The `text` field of every unified document in `inputs` (for training a small tokenizer;
/// the texts are held in memory).
pub fn read_texts(inputs: &[String]) -> Result<Vec<String>, PackError> {
    use crate::convert::plan_files;
    use crate::input::read::read_file;
    use crate::input::{BatchLimits, RawRecord};
    use crate::sources::{Format, FormatChoice};

    let (plans, _) = plan_files(inputs, FormatChoice::Fixed(Format::Text))?;
    let mut texts = Vec::new();
    for plan in &plans {
        let mut collect = |batch: Vec<RawRecord>| {
            for record in batch {
                let object = record.body.object().ok();
                if let Some(serde_json::Value::String(text)) =
                    object.and_then(|mut o| o.remove("text"))
                {
                    texts.push(text);
                }
            }
            true
        };
        read_file(
            &plan.path,
            plan.kind,
            BatchLimits::default(),
            Default::default(),
            &mut collect,
        )?;
    }
    Ok(texts)
}
