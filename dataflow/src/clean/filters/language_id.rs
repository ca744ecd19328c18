//! `language_id_score_filter`: keep documents whose detected language is one of `lang` (any,
//! when empty) with a confidence of at least `min_score`.
//!
//! data-juicer downloads fastText's `lid.176.bin`; we use `whatlang` (trigram profiles shipped
//! in the crate), map its ISO 639-3 codes to fastText's two-letter labels, and use its
//! confidence (0..1) as the score. The two models' scores are not the same numbers: a recipe's
//! `min_score` tuned on fastText may need retuning (README).

use crate::clean::op::{Filter, Measure};
use whatlang::Lang;

pub struct LanguageId {
    pub langs: Vec<String>,
    pub min_score: f64,
}

/// fastText's label for a `whatlang` language.
pub fn label(lang: Lang) -> &'static str {
    match lang {
        Lang::Cmn => "zh",
        Lang::Eng => "en",
        Lang::Jpn => "ja",
        Lang::Kor => "ko",
        Lang::Rus => "ru",
        Lang::Deu => "de",
        Lang::Fra => "fr",
        Lang::Spa => "es",
        Lang::Por => "pt",
        Lang::Ita => "it",
        Lang::Nld => "nl",
        Lang::Ara => "ar",
        Lang::Hin => "hi",
        Lang::Tur => "tr",
        Lang::Vie => "vi",
        Lang::Tha => "th",
        Lang::Pol => "pl",
        Lang::Ukr => "uk",
        Lang::Swe => "sv",
        Lang::Fin => "fi",
        Lang::Dan => "da",
        Lang::Nob => "no",
        Lang::Ces => "cs",
        Lang::Ell => "el",
        Lang::Heb => "he",
        Lang::Ind => "id",
        Lang::Pes => "fa",
        Lang::Hun => "hu",
        Lang::Ron => "ro",
        Lang::Bul => "bg",
        other => other.code(),
    }
}

impl Filter for LanguageId {
    fn stat_name(&self) -> &'static str {
        "lang_score"
    }
    fn measure(&self, text: &str) -> Measure {
        let prepared = text.to_lowercase().replace('\n', " ");
        let (lang, score) = match whatlang::detect(&prepared) {
            Some(info) => (label(info.lang()), info.confidence()),
            None => ("", 0.0),
        };
        let lang_ok = self.langs.is_empty() || self.langs.iter().any(|l| l == lang);
        Measure {
            value: score,
            keep: lang_ok && score >= self.min_score,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_chinese_and_english() {
        let zh = LanguageId {
            langs: vec!["zh".into()],
            min_score: 0.5,
        };
        assert!(
            zh.measure("今天天气很好，我们一起去公园散步吧。这是一个中文句子。")
                .keep
        );
        assert!(
            !zh.measure("This is an English sentence about the weather today.")
                .keep
        );
        let any = LanguageId {
            langs: vec![],
            min_score: 0.5,
        };
        assert!(
            any.measure("This is an English sentence about the weather today.")
                .keep
        );
        assert!(!any.measure("").keep);
    }
}
