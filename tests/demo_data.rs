//! The synthetic corpus: reproducible from its seed, and its ground truth is true.

mod common;

use std::collections::HashMap;
use std::path::Path;
use steel_dataflow::demo_data::{DemoDataOptions, DocKind, Junk, MAX_EDITS, generate, read_truth};
use steel_dataflow::demo_score::{DemoScore, Removed, score};

fn make(dir: &Path, docs: usize, seed: u64) {
    let options = DemoDataOptions {
        docs,
        seed,
        files: 3,
        output: dir.to_path_buf(),
    };
    generate(&options).unwrap();
}

/// Every (id, text) in the corpus files under `dir`.
fn texts(dir: &Path) -> HashMap<String, String> {
    let mut texts = HashMap::new();
    for entry in std::fs::read_dir(dir.join("corpus")).unwrap() {
        for line in std::fs::read_to_string(entry.unwrap().path())
            .unwrap()
            .lines()
        {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            texts.insert(
                record["id"].as_str().unwrap().to_owned(),
                record["text"].as_str().unwrap().to_owned(),
            );
        }
    }
    texts
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain([dir.join("truth.jsonl")])
        .map(|p| {
            (
                p.display()
                    .to_string()
                    .replace(&dir.display().to_string(), ""),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    make(&dir.path().join("a"), 500, 7);
    make(&dir.path().join("b"), 500, 7);
    make(&dir.path().join("c"), 500, 8);
    assert_eq!(
        all_bytes(&dir.path().join("a")),
        all_bytes(&dir.path().join("b"))
    );
    assert_ne!(
        all_bytes(&dir.path().join("a")),
        all_bytes(&dir.path().join("c"))
    );
}

#[test]
fn ground_truth_matches_the_generated_texts() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), 1000, 42);
    let truth = read_truth(dir.path()).unwrap();
    let texts = texts(dir.path());
    assert_eq!(truth.len(), 1000);
    assert_eq!(texts.len(), 1000);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &truth {
        let text = &texts[&t.id];
        match t.kind {
            DocKind::ExactDup => {
                *counts.entry("exact").or_default() += 1;
                assert_eq!(text, &texts[t.dup_of.as_ref().unwrap()], "{}", t.id);
            }
            DocKind::NearDup => {
                *counts.entry("near").or_default() += 1;
                let source = &texts[t.dup_of.as_ref().unwrap()];
                let distance = edit_distance(text, source);
                assert!(distance >= 1 || text == source, "{}", t.id);
                assert!(
                    distance <= t.edits as usize && t.edits <= MAX_EDITS,
                    "{}: {distance}",
                    t.id
                );
                assert!(source.chars().count() >= 200);
            }
            DocKind::Original => assert!(t.dup_of.is_none()),
        }
        for junk in &t.junk {
            *counts.entry("junk").or_default() += 1;
            let present = match junk {
                Junk::Html => text.contains("<p>") && text.contains("</html>"),
                Junk::Email => text.contains("@example.com"),
                Junk::Link => text.contains("https://www.example.com/"),
                Junk::Ip => text.contains("192.168.") && text.contains("2001:db8::"),
                Junk::RepeatedLines => {
                    let lines: Vec<&str> = text.lines().collect();
                    lines.windows(5).any(|w| w.iter().all(|l| *l == w[0]))
                }
                Junk::TooShort => text.chars().count() < 20,
                Junk::TooLong => text.chars().count() > 5000,
            };
            assert!(present, "{} should show {junk:?}", t.id);
        }
        // Clean documents show none of the junk markers.
        if t.junk.is_empty() {
            assert!(
                !text.contains('<') && !text.contains('@') && !text.contains("http"),
                "{}",
                t.id
            );
        }
    }
    for kind in ["exact", "near", "junk"] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) >= 50,
            "too few {kind}: {counts:?}"
        );
    }
}

#[test]
fn demo_corpus_converts_completely_as_text() {
    let dir = tempfile::tempdir().unwrap();
    make(&dir.path().join("data"), 300, 1);
    let input = dir.path().join("data/corpus").display().to_string();
    let summary = common::run(dir.path(), "out", &[input], "auto");
    assert_eq!(
        (summary.docs_in, summary.docs_out, summary.rejected),
        (300, 300, 0)
    );
    assert!(summary.files.iter().all(|f| f.format == "text"));
}

/// The demo's scorer against the truth: keeping every converted document removes nothing;
/// keeping only the clean originals removes every planted duplicate and junk document.
#[test]
fn demo_score_counts_what_a_cleaning_removed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make(&data, 300, 3);
    let input = data.join("corpus").display().to_string();
    common::run(dir.path(), "converted", &[input], "auto");
    let truth = read_truth(&data).unwrap();
    let count = |pick: &dyn Fn(&steel_dataflow::demo_data::Truth) -> bool| {
        truth.iter().filter(|t| pick(t)).count()
    };
    let exact = count(&|t| t.kind == DocKind::ExactDup);
    let near = count(&|t| t.kind == DocKind::NearDup);
    let junk = count(&|t| t.kind == DocKind::Original && !t.junk.is_empty());
    let clean = count(&|t| t.kind == DocKind::Original && t.junk.is_empty());
    assert!(exact > 0 && near > 0 && junk > 0 && clean > 0);
    let removed = |removed, total| Removed { removed, total };

    let all = score(&data, &dir.path().join("converted")).unwrap();
    assert_eq!(
        all,
        DemoScore {
            exact_dups: removed(0, exact),
            near_dups: removed(0, near),
            junk: removed(0, junk),
            clean: removed(0, clean),
        }
    );

    // A "cleaning" that kept exactly the clean originals, found by their (file, row).
    let keep: std::collections::HashSet<(String, u64)> = truth
        .iter()
        .filter(|t| t.kind == DocKind::Original && t.junk.is_empty())
        .map(|t| (t.file.rsplit('/').next().unwrap().to_string(), t.row))
        .collect();
    let cleaned = dir.path().join("cleaned");
    std::fs::create_dir_all(&cleaned).unwrap();
    let kept: Vec<String> = common::read_docs(&dir.path().join("converted"))
        .into_iter()
        .filter(|doc| {
            let name = doc.meta.file.rsplit('/').next().unwrap().to_string();
            keep.contains(&(name, doc.meta.row))
        })
        .map(|doc| serde_json::to_string(&doc).unwrap())
        .collect();
    assert_eq!(kept.len(), clean);
    std::fs::write(cleaned.join("part-00000.jsonl"), kept.join("\n") + "\n").unwrap();
    let only_clean = score(&data, &cleaned).unwrap();
    assert_eq!(
        only_clean,
        DemoScore {
            exact_dups: removed(exact, exact),
            near_dups: removed(near, near),
            junk: removed(junk, junk),
            clean: removed(0, clean),
        }
    );
    assert!(
        only_clean
            .to_string()
            .ends_with(&format!("removed {exact}/{exact} exact duplicates, {near}/{near} near-duplicates, {junk}/{junk} junk documents (too short or too long; the mappers cleaned the others), 0/{clean} clean originals")),
        "{only_clean}"
    );
}
