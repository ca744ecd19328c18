//! The incremental dataflow against a from-scratch batch computation: random corpora with
//! planted duplicates, fed in k appends, with retractions and re-additions, on 1 and 3
//! workers, must keep exactly what the batch keep rule keeps.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use steel_dataflow::clean::dedup::SeenIndex;
use steel_dataflow::pipeline::config::PipelineConfig;
use steel_dataflow::pipeline::graph::{self, DocId, doc_id, epoch_time};
use steel_dataflow::pipeline::stages::{Cleaned, Stages};

/// A seeded xorshift generator (the test needs no crate for randomness).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `docs` documents in shards of 10: random words, with exact copies (padded with spaces,
/// which the mapper removes), near copies (one word changed) and too-short ones planted.
fn corpus(seed: u64, docs: usize) -> Vec<(DocId, String)> {
    let mut rng = Rng(seed * 2654435761 + 1);
    let words = [
        "alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta", "zeta", "rho",
    ];
    let mut texts: Vec<String> = Vec::new();
    for _ in 0..docs {
        let text = match (rng.below(10), texts.len()) {
            (0..=1, n) if n > 0 => format!("  {}  ", texts[rng.below(n as u64) as usize].trim()),
            (2..=3, n) if n > 0 => {
                let mut w: Vec<String> = texts[rng.below(n as u64) as usize]
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                let at = rng.below(w.len() as u64) as usize;
                w[at] = words[rng.below(10) as usize].to_string();
                w.join(" ")
            }
            (4, _) => "tiny".to_string(),
            _ => (0..12 + rng.below(8))
                .map(|_| words[rng.below(10) as usize])
                .collect::<Vec<_>>()
                .join(" "),
        };
        texts.push(text);
    }
    texts
        .into_iter()
        .enumerate()
        .map(|(i, t)| (doc_id(1 + i as u32 / 10, i as u32 % 10), t))
        .collect()
}

fn stages(dir: &Path, near: &str) -> Stages {
    let recipe = dir.join("recipe.yaml");
    std::fs::write(
        &recipe,
        format!(
            "process:\n  - whitespace_normalization_mapper:\n  - text_length_filter:\n      min_len: 10\n  - document_deduplicator:\n{near}"
        ),
    )
    .unwrap();
    let config = format!(
        "state = \"s\"\noutput = \"o\"\n[[source]]\nname = \"a\"\nformat = \"text\"\npath = \"*.jsonl\"\n[clean]\nrecipe = \"{}\"\n",
        recipe.display()
    );
    Stages::build(&PipelineConfig::parse(&config, &dir.join("p.toml")).unwrap()).unwrap()
}

/// The batch keep rule, document by document in id order.
fn batch_kept(stages: &Stages, docs: &[(DocId, String)]) -> BTreeSet<DocId> {
    let mut sorted = docs.to_vec();
    sorted.sort();
    let (mut exact, mut near) = (SeenIndex::default(), SeenIndex::default());
    let mut kept = BTreeSet::new();
    for (doc, text) in sorted {
        let Cleaned::Passed { entry, .. } = stages.clean(text) else {
            continue;
        };
        if exact.check_and_insert(&*stages.exact, entry.exact.to_vec()) {
            continue;
        }
        if let Some(dedup) = stages.near()
            && near.check_and_insert(dedup, entry.near.to_vec())
        {
            continue;
        }
        kept.insert(doc);
    }
    kept
}

/// One epoch's input: documents to add, and documents to retract (by their text).
struct Epoch {
    add: Vec<(DocId, String)>,
    retract: Vec<(DocId, String)>,
}

/// Run the epochs through the dataflow on `workers` threads; the kept set after each.
fn incremental_kept(stages: Stages, workers: usize, epochs: Vec<Epoch>) -> Vec<BTreeSet<DocId>> {
    let stages = Arc::new(stages);
    let epochs = Arc::new(epochs);
    let results = Arc::new(Mutex::new(Vec::new()));
    let out = results.clone();
    let config = timely::Config::process(workers);
    timely::execute(config, move |worker| {
        let mut g = graph::build(worker, stages.clone());
        if worker.index() != 0 {
            g.finish(worker);
            return;
        }
        let mut kept = BTreeSet::new();
        for (e, epoch) in epochs.iter().enumerate() {
            let time = epoch_time(e as u64 + 1);
            g.advance_all(time);
            for (doc, text) in &epoch.retract {
                if let Cleaned::Passed { entry, .. } = stages.clean(text.clone()) {
                    g.index.update((*doc, entry), -1);
                }
            }
            // Two batches per epoch, at increasing times.
            let half = epoch.add.len() / 2;
            for (batch, docs) in [&epoch.add[..half], &epoch.add[half..]].iter().enumerate() {
                g.raw.advance_to(time + batch as u64);
                for (doc, text) in docs.iter() {
                    g.raw.insert((*doc, text.clone()));
                }
            }
            let next = epoch_time(e as u64 + 2);
            g.advance_all(next);
            worker.step_while(|| g.probe.less_than(&next));
            let updates = graph::consolidate(
                g.captured
                    .borrow_mut()
                    .kept
                    .drain(..)
                    .map(|(doc, _, diff)| (doc, diff)),
            );
            for (doc, diff) in updates {
                match diff {
                    1 => assert!(kept.insert(doc), "doc {doc:x} kept twice"),
                    -1 => assert!(
                        kept.remove(&doc),
                        "epoch {e}: doc {doc:x} removed but not kept"
                    ),
                    other => panic!("diff {other} for doc {doc:x}"),
                }
            }
            out.lock().unwrap().push(kept.clone());
        }
    })
    .unwrap();
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

const NEAR: [&str; 2] = [
    "  - document_simhash_deduplicator:\n      tokenization: space\n      window_size: 2\n      hamming_distance: 3\n",
    "  - document_minhash_deduplicator:\n      tokenization: space\n      window_size: 2\n      num_permutations: 32\n      jaccard_threshold: 0.5\n",
];

#[test]
fn appends_in_any_number_of_steps_keep_what_one_batch_keeps() {
    let dir = tempfile::tempdir().unwrap();
    for (m, near) in NEAR.iter().enumerate() {
        for seed in 1..=3u64 {
            let docs = corpus(seed, 120);
            let expected = batch_kept(&stages(dir.path(), near), &docs);
            assert!(
                expected.len() < 100 && expected.len() > 20,
                "seed {seed}: {} kept",
                expected.len()
            );
            for (k, workers) in [(1, 1), (3, 2), (7, 3)] {
                // k appends of whole shards, in shard order.
                let per = docs.len().div_ceil(10).div_ceil(k) * 10;
                let epochs: Vec<Epoch> = docs
                    .chunks(per)
                    .map(|c| Epoch {
                        add: c.to_vec(),
                        retract: Vec::new(),
                    })
                    .collect();
                let kept = incremental_kept(stages(dir.path(), near), workers, epochs);
                assert_eq!(
                    kept.last().unwrap(),
                    &expected,
                    "method {m}, seed {seed}, {k} appends, {workers} workers"
                );
                // Every intermediate answer is the batch answer over what was ingested so far.
                for (step, kept_then) in kept.iter().enumerate() {
                    let so_far = &docs[..((step + 1) * per).min(docs.len())];
                    assert_eq!(
                        kept_then,
                        &batch_kept(&stages(dir.path(), near), so_far),
                        "method {m}, seed {seed}, step {step}"
                    );
                }
            }
        }
    }
}

#[test]
fn retracting_then_re_adding_returns_to_the_same_kept_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut readmitted = 0;
    for (m, near) in NEAR.iter().enumerate() {
        for seed in 4..=6u64 {
            let docs = corpus(seed, 100);
            // The "source" to retract: every third shard.
            let (gone, rest): (Vec<_>, Vec<_>) = docs
                .iter()
                .cloned()
                .partition(|(doc, _)| (doc >> 32) % 3 == 0);
            let epochs = vec![
                Epoch {
                    add: docs.clone(),
                    retract: Vec::new(),
                },
                Epoch {
                    add: Vec::new(),
                    retract: gone.clone(),
                },
                Epoch {
                    add: gone.clone(),
                    retract: Vec::new(),
                },
            ];
            let kept = incremental_kept(stages(dir.path(), near), 2, epochs);
            let st = stages(dir.path(), near);
            assert_eq!(kept[0], batch_kept(&st, &docs), "method {m}, seed {seed}");
            assert_eq!(
                kept[1],
                batch_kept(&st, &rest),
                "method {m}, seed {seed}: after retraction"
            );
            assert_eq!(kept[2], kept[0], "method {m}, seed {seed}: after re-adding");
            readmitted += kept[1].difference(&kept[0]).count();
        }
    }
    // Documents dropped only because of the retracted ones came back.
    assert!(readmitted > 5, "{readmitted} documents re-admitted");
}
