//! Step 2: data-juicer-compatible cleaning (`steel clean`).
//!
//! A recipe (`recipe`) lists operators (`op`): mappers rewrite text (`mappers`), filters keep
//! documents whose statistic is in range (`filters`), deduplicators drop repeats (`dedup`).
//! `run` streams documents through them and writes a per-operator report (`report`).
//! `pytext`, `charsets` and `words` hold the Python string semantics the operators are defined
//! by; `lm` is the n-gram model behind `perplexity_filter`.

pub mod chain;
pub mod charsets;
pub mod dedup;
pub mod filters;
pub mod lm;
pub mod mappers;
pub mod op;
pub mod params;
pub mod pytext;
pub mod recipe;
pub mod report;
pub mod run;
pub mod sketch;
pub mod word_lists;
pub mod words;
pub mod yaml;

/// The names of an operator table (`(name, constructor)` pairs), in order, so that the names
/// a recipe may use and the operators that can be built come from one list.
pub(crate) const fn table_names<T, const N: usize>(
    table: &[(&'static str, T); N],
) -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        names[i] = table[i].0;
        i += 1;
    }
    names
}
