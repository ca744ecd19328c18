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
use crate::clean::table_names;
use crate::clean::word_lists::{self, ListKind};
use crate::clean::words::Tokenization;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Models and tokenizers a run supplies to filters whose recipe entry names none.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// ARPA model for `perplexity_filter` (`--lm-model`).
    pub lm_model: Option<PathBuf>,
    /// `tokenizer.json` for `alphanumeric_filter` with `tokenization: true` (`--hf-tokenizer`).
    pub hf_tokenizer: Option<PathBuf>,
}

/// How one filter is built from its recipe parameters.
type Build = fn(&mut Params, &Resources) -> ParamResult<Box<dyn Filter>>;

/// Every filter, by name: the one list both `build` and `NAMES` come from.
const FILTERS: [(&str, Build); 12] = [
    ("alphanumeric_filter", alphanumeric),
    ("average_line_length_filter", |params, _| {
        boxed(lines::AverageLineLength {
            range: Range::from_params(params, "min_len", Some(10.0), "max_len", None)?,
        })
    }),
    ("character_repetition_filter", |params, _| {
        boxed(chars::CharacterRepetition {
            rep_len: params.positive("rep_len", 10)?,
            range: Range::from_params(params, "min_ratio", Some(0.0), "max_ratio", Some(0.5))?,
        })
    }),
    ("flagged_words_filter", |params, _| {
        word_list_filter(params, ListKind::FlaggedWords, 0.0, 0.045)
    }),
    ("language_id_score_filter", |params, _| {
        let langs = params.strings("lang")?.unwrap_or_default();
        let langs = langs.into_iter().filter(|l| !l.is_empty()).collect();
        boxed(language_id::LanguageId {
            langs,
            min_score: params.f64("min_score", 0.8)?,
        })
    }),
    ("maximum_line_length_filter", |params, _| {
        boxed(lines::MaximumLineLength {
            range: Range::from_params(params, "min_len", Some(10.0), "max_len", None)?,
        })
    }),
    ("perplexity_filter", perplexity),
    ("special_characters_filter", |params, _| {
        boxed(chars::SpecialCharacters {
            range: Range::from_params(params, "min_ratio", Some(0.0), "max_ratio", Some(0.25))?,
        })
    }),
    ("stopwords_filter", |params, _| {
        word_list_filter(params, ListKind::Stopwords, 0.3, 1.0)
    }),
    ("text_length_filter", |params, _| {
        boxed(chars::TextLength {
            range: Range::from_params(params, "min_len", Some(10.0), "max_len", None)?,
        })
    }),
    ("word_repetition_filter", |params, _| {
        let tokenization = word_tokenization("word_repetition_filter", params)?;
        boxed(words::WordRepetition {
            tokenization,
            rep_len: params.positive("rep_len", 10)?,
            range: Range::from_params(params, "min_ratio", Some(0.0), "max_ratio", Some(0.5))?,
        })
    }),
    ("words_num_filter", |params, _| {
        let tokenization = word_tokenization("words_num_filter", params)?;
        boxed(words::WordsNum {
            tokenization,
            range: Range::from_params(params, "min_num", Some(10.0), "max_num", None)?,
        })
    }),
];

/// The names of every filter, in `FILTERS` order.
pub const NAMES: &[&str] = &table_names(&FILTERS);

/// The filter called `name`, or `None` when no filter has that name.
pub fn build(
    name: &str,
    params: &mut Params,
    resources: &Resources,
) -> Option<ParamResult<Box<dyn Filter>>> {
    FILTERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, build)| build(params, resources))
}

fn boxed<F: Filter + 'static>(filter: F) -> ParamResult<Box<dyn Filter>> {
    Ok(Box::new(filter))
}

fn alphanumeric(params: &mut Params, resources: &Resources) -> ParamResult<Box<dyn Filter>> {
    let tokenization = params.bool("tokenization", false)?;
    let range = Range::from_params(params, "min_ratio", Some(0.25), "max_ratio", None)?;
    if !tokenization {
        return boxed(chars::Alphanumeric { range });
    }
    let path = params
        .opt_string("tokenizer_path")?
        .map(PathBuf::from)
        .or_else(|| resources.hf_tokenizer.clone())
        .ok_or_else(|| {
            "alphanumeric_filter: `tokenization: true` counts Hugging Face tokens; data-juicer \
             downloads pythia-6.9b's tokenizer, we never download: pass --hf-tokenizer \
             PATH/tokenizer.json or set `tokenizer_path`"
                .to_string()
        })?;
    let tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(|e| {
        format!(
            "alphanumeric_filter: cannot load tokenizer `{}`: {e}",
            path.display()
        )
    })?;
    boxed(chars::AlphaTokens { range, tokenizer })
}

fn perplexity(params: &mut Params, resources: &Resources) -> ParamResult<Box<dyn Filter>> {
    // data-juicer picks its downloaded KenLM and sentencepiece models by `lang`; ours is the
    // ARPA model given, whatever its language, so `lang` only has to be a language code.
    let lang = language_code("perplexity_filter", params)?;
    let unit = Unit::parse(&params.string("unit", "char")?)
        .map_err(|e| format!("perplexity_filter: {e}"))?;
    let range = Range::from_params(params, "min_ppl", Some(0.0), "max_ppl", Some(1500.0))?;
    let path = params
        .opt_string("model_path")?
        .map(PathBuf::from)
        .or_else(|| resources.lm_model.clone())
        .ok_or_else(|| {
            format!(
                "perplexity_filter: no language model (`lang: {lang}`); data-juicer downloads \
                 KenLM models, we never download: build one with `steel lm train --order 3 \
                 --output {lang}.arpa REFERENCE...` and pass --lm-model {lang}.arpa (or set \
                 `model_path`)"
            )
        })?;
    let model = NgramModel::load(&path).map_err(|e| format!("perplexity_filter: {e}"))?;
    boxed(perplexity::Perplexity {
        range,
        model: Arc::new(model),
        unit,
    })
}

/// The language `tokenization: true` segments with jieba, our stand-in for data-juicer's
/// per-language sentencepiece model.
const JIEBA_LANG: &str = "zh";

/// `lang` and `tokenization` of `words_num_filter` and `word_repetition_filter`. data-juicer
/// reads `lang` only to pick the sentencepiece model of `tokenization: true`; without
/// tokenization words are split on whitespace whatever the language, here as there. With
/// tokenization we segment with jieba, which is Chinese, so any other `lang` is refused
/// rather than silently segmented as Chinese.
fn word_tokenization(op: &str, params: &mut Params) -> ParamResult<Tokenization> {
    let lang = language_code(op, params)?;
    let tokenization = params.bool("tokenization", false)?;
    if tokenization && lang != JIEBA_LANG {
        return Err(format!(
            "{op}: parameter `lang` is `{lang}` with `tokenization: true`, which is not \
             supported: data-juicer would tokenise with its downloaded `{lang}` sentencepiece \
             model; Steel tokenises with jieba, which segments Chinese only. Supported: \
             `lang: {JIEBA_LANG}` with `tokenization: true`, or any language with \
             `tokenization: false` (words split on whitespace)"
        ));
    }
    Ok(Tokenization::from_flag(tokenization))
}

/// The `lang` parameter (default `en`, as in data-juicer), which must look like a language
/// code: two or three lower-case ASCII letters (`zh`, `en`, `ceb`).
fn language_code(op: &str, params: &mut Params) -> ParamResult<String> {
    let lang = params.string("lang", "en")?;
    let is_code = (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase());
    if !is_code {
        return Err(format!(
            "{op}: parameter `lang` is `{lang}`, which is not a language code; supported: \
             two or three lower-case letters such as `zh` or `en`"
        ));
    }
    Ok(lang)
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
