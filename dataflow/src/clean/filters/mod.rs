//! data-juicer's text filters, grouped by what they measure.

pub mod chars;
pub mod language_id;
pub mod lines;
pub mod perplexity;
pub mod words;

use crate::clean::lm::Unit;
use crate::clean::lm::arpa::NgramModel;
use crate::clean::op::{Filter, Range};
use crate::clean::params::{ParamResult, Params};
use crate::clean::word_lists::{self, ListKind};
use crate::clean::words::Tokenization;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const NAMES: &[&str] = &[
    "alphanumeric_filter",
    "average_line_length_filter",
    "character_repetition_filter",
    "flagged_words_filter",
    "language_id_score_filter",
    "maximum_line_length_filter",
    "perplexity_filter",
    "special_characters_filter",
    "stopwords_filter",
    "text_length_filter",
    "word_repetition_filter",
    "words_num_filter",
];

/// Models and tokenizers a run supplies to filters whose recipe entry names none.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// ARPA model for `perplexity_filter` (`--lm-model`).
    pub lm_model: Option<PathBuf>,
    /// `tokenizer.json` for `alphanumeric_filter` with `tokenization: true` (`--hf-tokenizer`).
    pub hf_tokenizer: Option<PathBuf>,
}

/// The filter called `name`, or `None` when no filter has that name.
pub fn build(
    name: &str,
    params: &mut Params,
    resources: &Resources,
) -> Option<ParamResult<Box<dyn Filter>>> {
    NAMES
        .contains(&name)
        .then(|| build_named(name, params, resources))
}

fn boxed<F: Filter + 'static>(filter: F) -> ParamResult<Box<dyn Filter>> {
    Ok(Box::new(filter))
}

fn build_named(
    name: &str,
    params: &mut Params,
    resources: &Resources,
) -> ParamResult<Box<dyn Filter>> {
    match name {
        "alphanumeric_filter" => {
            let tokenization = params.bool("tokenization", false)?;
            let range = Range::from_params(params, "min_ratio", Some(0.25), "max_ratio", None)?;
            if tokenization {
                let path = params
                    .opt_string("tokenizer_path")?
                    .map(PathBuf::from)
                    .or_else(|| resources.hf_tokenizer.clone())
                    .ok_or_else(|| {
                        "alphanumeric_filter: `tokenization: true` counts Hugging Face tokens; \
                     data-juicer downloads pythia-6.9b's tokenizer, we never download: pass \
                     --hf-tokenizer PATH/tokenizer.json or set `tokenizer_path`"
                            .to_string()
                    })?;
                let tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(|e| {
                    format!(
                        "alphanumeric_filter: cannot load tokenizer `{}`: {e}",
                        path.display()
                    )
                })?;
                boxed(chars::AlphaTokens { range, tokenizer })
            } else {
                boxed(chars::Alphanumeric { range })
            }
        }
        "average_line_length_filter" => boxed(lines::AverageLineLength {
            range: Range::from_params(params, "min_len", Some(10.0), "max_len", None)?,
        }),
        "maximum_line_length_filter" => boxed(lines::MaximumLineLength {
            range: Range::from_params(params, "min_len", Some(10.0), "max_len", None)?,
        }),
        "character_repetition_filter" => boxed(chars::CharacterRepetition {
            rep_len: params.positive("rep_len", 10)?,
            range: Range::from_params(params, "min_ratio", Some(0.0), "max_ratio", Some(0.5))?,
        }),
        "special_characters_filter" => boxed(chars::SpecialCharacters {
            range: Range::from_params(params, "min_ratio", Some(0.0), "max_ratio", Some(0.25))?,
        }),
        "text_length_filter" => boxed(chars::TextLength {
            range: Range::from_params(params, "min_len", Some(10.0), "max_len", None)?,
        }),
        "words_num_filter" => {
            params.string("lang", "en")?;
            boxed(words::WordsNum {
                tokenization: Tokenization::from_flag(params.bool("tokenization", false)?),
                range: Range::from_params(params, "min_num", Some(10.0), "max_num", None)?,
            })
        }
        "word_repetition_filter" => {
            params.string("lang", "en")?;
            boxed(words::WordRepetition {
                tokenization: Tokenization::from_flag(params.bool("tokenization", false)?),
                rep_len: params.positive("rep_len", 10)?,
                range: Range::from_params(params, "min_ratio", Some(0.0), "max_ratio", Some(0.5))?,
            })
        }
        "stopwords_filter" => word_list_filter(params, ListKind::Stopwords, 0.3, 1.0),
        "flagged_words_filter" => word_list_filter(params, ListKind::FlaggedWords, 0.0, 0.045),
        "perplexity_filter" => {
            params.string("lang", "en")?;
            let unit = Unit::parse(&params.string("unit", "char")?)
                .map_err(|e| format!("perplexity_filter: {e}"))?;
            let range = Range::from_params(params, "min_ppl", Some(0.0), "max_ppl", Some(1500.0))?;
            let path = params
                .opt_string("model_path")?
                .map(PathBuf::from)
                .or_else(|| resources.lm_model.clone())
                .ok_or_else(|| {
                    "perplexity_filter: no language model; data-juicer downloads KenLM models, \
                 we never download: build one with `steel lm train --order 3 --output \
                 zh.arpa REFERENCE...` and pass --lm-model zh.arpa (or set `model_path`)"
                        .to_string()
                })?;
            let model = NgramModel::load(&path).map_err(|e| format!("perplexity_filter: {e}"))?;
            boxed(perplexity::Perplexity {
                range,
                model: Arc::new(model),
                unit,
            })
        }
        "language_id_score_filter" => {
            let langs = params.strings("lang")?.unwrap_or_default();
            let langs = langs.into_iter().filter(|l| !l.is_empty()).collect();
            boxed(language_id::LanguageId {
                langs,
                min_score: params.f64("min_score", 0.8)?,
            })
        }
        _ => unreachable!("`{name}` is in NAMES"),
    }
}

fn word_list_filter(
    params: &mut Params,
    kind: ListKind,
    min_default: f64,
    max_default: f64,
) -> ParamResult<Box<dyn Filter>> {
    let lang = params.string("lang", "en")?;
    let tokenization = Tokenization::from_flag(params.bool("tokenization", false)?);
    let range = Range::from_params(
        params,
        "min_ratio",
        Some(min_default),
        "max_ratio",
        Some(max_default),
    )?;
    let dir_param = match kind {
        ListKind::Stopwords => "stopwords_dir",
        ListKind::FlaggedWords => "flagged_words_dir",
    };
    let dir = params.opt_string(dir_param)?;
    let use_aug = params.bool("use_words_aug", false)?;
    let sizes = params.usize_list("words_aug_group_sizes", &[2])?;
    let join = params.string("words_aug_join_char", "")?;
    let list = word_lists::load(kind, dir.as_deref().map(Path::new), &lang)?;
    boxed(words::WordListRatio {
        range,
        tokenization,
        list,
        augment_sizes: use_aug.then_some(sizes),
        augment_join: join,
        stat_name: match kind {
            ListKind::Stopwords => "stopwords_ratio",
            ListKind::FlaggedWords => "flagged_words_ratio",
        },
    })
}
