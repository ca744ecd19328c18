//! The two benchmarks and their subject tables: every subject's Chinese name (the one the
//! official prompts use) and its categories, shipped in `trainer/data/eval/` (copies of C-Eval's
//! `subject_mapping.json`, with clinical_medicine's missing category set to Other as the
//! leaderboard counts it, and of CMMLU's `src/categories.py`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const CEVAL_SUBJECTS: &str = include_str!("../../data/eval/ceval_subjects.json");
const CMMLU_SUBJECTS: &str = include_str!("../../data/eval/cmmlu_subjects.json");

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Benchmark {
    /// C-Eval: `{subject}_dev.csv` / `_val.csv` / `_test.csv`, `id,question,A,B,C,D,answer[,explanation]`.
    Ceval,
    /// CMMLU: `{subject}.csv`, `,Question,A,B,C,D,Answer`.
    Cmmlu,
}

/// One subject of a benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    /// The name in file names, e.g. `computer_network`.
    pub name: String,
    /// The Chinese name in the prompt, e.g. `计算机网络`.
    pub zh: String,
    /// C-Eval: one of STEM / Social Science / Humanities / Other; CMMLU: one or two of STEM /
    /// Humanities / Social Science / Other / China specific.
    pub categories: Vec<String>,
}

#[derive(Deserialize)]
struct CevalEntry {
    zh: String,
    category: String,
}

#[derive(Deserialize)]
struct CmmluEntry {
    zh: String,
    categories: Vec<String>,
}

impl Benchmark {
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Ceval => "C-Eval",
            Benchmark::Cmmlu => "CMMLU",
        }
    }

    /// Every subject, by name.
    pub fn subjects(self) -> &'static BTreeMap<String, Subject> {
        static CEVAL: OnceLock<BTreeMap<String, Subject>> = OnceLock::new();
        static CMMLU: OnceLock<BTreeMap<String, Subject>> = OnceLock::new();
        let table = |name: &String, zh: &String, categories: Vec<String>| {
            let subject = Subject {
                name: name.clone(),
                zh: zh.clone(),
                categories,
            };
            (name.clone(), subject)
        };
        match self {
            Benchmark::Ceval => CEVAL.get_or_init(|| {
                let entries: BTreeMap<String, CevalEntry> =
                    serde_json::from_str(CEVAL_SUBJECTS).expect("the shipped table is valid");
                entries
                    .iter()
                    .map(|(name, e)| table(name, &e.zh, vec![e.category.clone()]))
                    .collect()
            }),
            Benchmark::Cmmlu => CMMLU.get_or_init(|| {
                let entries: BTreeMap<String, CmmluEntry> =
                    serde_json::from_str(CMMLU_SUBJECTS).expect("the shipped table is valid");
                entries
                    .iter()
                    .map(|(name, e)| table(name, &e.zh, e.categories.clone()))
                    .collect()
            }),
        }
    }

    pub fn subject(self, name: &str) -> Option<&'static Subject> {
        self.subjects().get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_tables_have_every_subject_with_a_name_and_a_category() {
        assert_eq!(Benchmark::Ceval.subjects().len(), 52);
        assert_eq!(Benchmark::Cmmlu.subjects().len(), 67);
        let network = Benchmark::Ceval.subject("computer_network").unwrap();
        assert_eq!(network.zh, "计算机网络");
        assert_eq!(network.categories, ["STEM"]);
        let ancient = Benchmark::Cmmlu.subject("ancient_chinese").unwrap();
        assert_eq!(ancient.zh, "古汉语");
        assert_eq!(ancient.categories, ["Social Science", "China specific"]);
        for benchmark in [Benchmark::Ceval, Benchmark::Cmmlu] {
            for subject in benchmark.subjects().values() {
                assert!(!subject.zh.is_empty() && !subject.categories.is_empty());
            }
        }
    }
}
