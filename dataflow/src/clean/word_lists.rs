//! The word lists of `stopwords_filter` and `flagged_words_filter`: the project's own (see
//! `data/words/README.md`), or data-juicer-format JSON (`{"lang": [words]}`) from a directory
//! the recipe names (`stopwords_dir` / `flagged_words_dir`, file `stopwords.json` /
//! `flagged_words.json`). `lang: all` is the union of every language.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Stopwords,
    FlaggedWords,
}

impl ListKind {
    fn file_stem(self) -> &'static str {
        match self {
            ListKind::Stopwords => "stopwords",
            ListKind::FlaggedWords => "flagged_words",
        }
    }
}

fn embedded(kind: ListKind) -> BTreeMap<String, Vec<String>> {
    let (zh, en) = match kind {
        ListKind::Stopwords => (
            include_str!("../../data/words/zh_stopwords.txt"),
            include_str!("../../data/words/en_stopwords.txt"),
        ),
        ListKind::FlaggedWords => (
            include_str!("../../data/words/zh_flagged_words.txt"),
            include_str!("../../data/words/en_flagged_words.txt"),
        ),
    };
    let words = |text: &str| {
        text.lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    BTreeMap::from([("zh".to_string(), words(zh)), ("en".to_string(), words(en))])
}

fn from_dir(dir: &Path, kind: ListKind) -> Result<BTreeMap<String, Vec<String>>, String> {
    let path = dir.join(format!("{}.json", kind.file_stem()));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read word list `{}`: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "word list `{}` is not a JSON object of language -> list of words: {e}",
            path.display()
        )
    })
}

/// The words of `lang` (or of every language for `all`).
pub fn load(kind: ListKind, dir: Option<&Path>, lang: &str) -> Result<HashSet<String>, String> {
    let lists = match dir {
        Some(dir) => from_dir(dir, kind)?,
        None => embedded(kind),
    };
    if lang == "all" {
        return Ok(lists.into_values().flatten().collect());
    }
    match lists.get(lang) {
        Some(words) => Ok(words.iter().cloned().collect()),
        None => Err(format!(
            "no {} list for language `{lang}`; available: {}, all",
            kind.file_stem(),
            lists.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_lists_load() {
        let zh = load(ListKind::Stopwords, None, "zh").unwrap();
        assert!(zh.contains("的") && zh.contains("我们"));
        let en = load(ListKind::Stopwords, None, "en").unwrap();
        assert!(en.contains("the"));
        let all = load(ListKind::FlaggedWords, None, "all").unwrap();
        assert!(all.len() > 600);
        assert!(
            load(ListKind::Stopwords, None, "xx")
                .unwrap_err()
                .contains("available: en, zh")
        );
    }
}
