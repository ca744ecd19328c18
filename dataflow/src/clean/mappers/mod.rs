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
use crate::clean::table_names;

/// How one mapper is built from its recipe parameters.
type Build = fn(&mut Params) -> ParamResult<Box<dyn Mapper>>;

fn boxed<M: Mapper + 'static>(mapper: ParamResult<M>) -> ParamResult<Box<dyn Mapper>> {
    mapper.map(|m| Box::new(m) as Box<dyn Mapper>)
}

/// Every mapper, by name: the one list both `build` and `NAMES` come from.
const MAPPERS: [(&str, Build); 12] = [
    ("chinese_convert_mapper", |p| {
        boxed(chinese_convert::ChineseConvert::from_params(p))
    }),
    ("clean_copyright_mapper", |_| {
        boxed(Ok(copyright::CleanCopyright))
    }),
    ("clean_email_mapper", |p| {
        boxed(regex_sub::RegexSub::from_params(
            p,
            regex_sub::DefaultPattern::Email,
        ))
    }),
    ("clean_html_mapper", |_| boxed(Ok(clean_html::CleanHtml))),
    ("clean_ip_mapper", |p| {
        boxed(regex_sub::RegexSub::from_params(
            p,
            regex_sub::DefaultPattern::Ip,
        ))
    }),
    ("clean_links_mapper", |p| {
        boxed(regex_sub::RegexSub::from_params(
            p,
            regex_sub::DefaultPattern::Links,
        ))
    }),
    ("expand_macro_mapper", |_| {
        boxed(Ok(expand_macro::ExpandMacro))
    }),
    ("fix_unicode_mapper", |p| {
        boxed(fix_unicode::FixUnicode::from_params(p))
    }),
    ("punctuation_normalization_mapper", |_| {
        boxed(Ok(punctuation::PunctuationNormalization))
    }),
    ("remove_repeat_sentences_mapper", |p| {
        boxed(repeat_sentences::RemoveRepeatSentences::from_params(p))
    }),
    ("remove_specific_chars_mapper", |p| {
        boxed(specific_chars::RemoveSpecificChars::from_params(p))
    }),
    ("whitespace_normalization_mapper", |_| {
        boxed(Ok(whitespace::WhitespaceNormalization))
    }),
];

/// The names of every mapper, in `MAPPERS` order.
pub const NAMES: &[&str] = &table_names(&MAPPERS);

/// The mapper called `name`, or `None` when no mapper has that name.
pub fn build(name: &str, params: &mut Params) -> Option<ParamResult<Box<dyn Mapper>>> {
    MAPPERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, build)| build(params))
}
