//! data-juicer's text mappers, one file each (the three regex removers share one).

pub mod chinese_convert;
pub mod clean_html;
pub mod copyright;
pub mod expand_macro;
pub mod fix_unicode;
pub mod punctuation;
pub mod regex_sub;
pub mod repeat_sentences;
pub mod specific_chars;
pub mod whitespace;

use crate::clean::op::Mapper;
use crate::clean::params::{ParamResult, Params};

pub const NAMES: &[&str] = &[
    "chinese_convert_mapper",
    "clean_copyright_mapper",
    "clean_email_mapper",
    "clean_html_mapper",
    "clean_ip_mapper",
    "clean_links_mapper",
    "expand_macro_mapper",
    "fix_unicode_mapper",
    "punctuation_normalization_mapper",
    "remove_repeat_sentences_mapper",
    "remove_specific_chars_mapper",
    "whitespace_normalization_mapper",
];

/// The mapper called `name`, or `None` when no mapper has that name.
pub fn build(name: &str, params: &mut Params) -> Option<ParamResult<Box<dyn Mapper>>> {
    fn boxed<M: Mapper + 'static>(mapper: ParamResult<M>) -> ParamResult<Box<dyn Mapper>> {
        mapper.map(|m| Box::new(m) as Box<dyn Mapper>)
    }
    Some(match name {
        "chinese_convert_mapper" => boxed(chinese_convert::ChineseConvert::from_params(params)),
        "clean_copyright_mapper" => boxed(Ok(copyright::CleanCopyright)),
        "clean_email_mapper" => boxed(regex_sub::RegexSub::from_params(
            params,
            regex_sub::DefaultPattern::Email,
        )),
        "clean_html_mapper" => boxed(Ok(clean_html::CleanHtml)),
        "clean_ip_mapper" => boxed(regex_sub::RegexSub::from_params(
            params,
            regex_sub::DefaultPattern::Ip,
        )),
        "clean_links_mapper" => boxed(regex_sub::RegexSub::from_params(
            params,
            regex_sub::DefaultPattern::Links,
        )),
        "expand_macro_mapper" => boxed(Ok(expand_macro::ExpandMacro)),
        "fix_unicode_mapper" => boxed(fix_unicode::FixUnicode::from_params(params)),
        "punctuation_normalization_mapper" => boxed(Ok(punctuation::PunctuationNormalization)),
        "remove_repeat_sentences_mapper" => {
            boxed(repeat_sentences::RemoveRepeatSentences::from_params(params))
        }
        "remove_specific_chars_mapper" => {
            boxed(specific_chars::RemoveSpecificChars::from_params(params))
        }
        "whitespace_normalization_mapper" => boxed(Ok(whitespace::WhitespaceNormalization)),
        _ => return None,
    })
}
