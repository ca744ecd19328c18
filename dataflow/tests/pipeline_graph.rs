//! The incremental pipeline against a from-scratch batch computation: random corpora with
//! planted duplicates, fed in k appends, with retractions and re-additions, on 1 to 3
//! workers, with the on-disk index compacted or not, must keep exactly what the batch keep
//! rule keeps over the same documents in ingest order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use steel_dataflow::clean::dedup::SeenIndex;
use steel_dataflow::pipeline::config::PipelineConfig;
use steel_dataflow::pipeline::graph::{DocId, doc_id};
use steel_dataflow::pipeline::job::{RunOptions, Work, compact, run};
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

fn recipe(dir: &Path, near: &str) -> PathBuf {
    let recipe = dir.join("recipe.yaml");
    std::fs::write(
        &recipe,
        format!(
            "process:\n  - whitespace_normalization_mapper:\n  - text_length_filter:\n      min_len: 10\n  - document_deduplicator:\n{near}"
        ),
    )
    .unwrap();
    recipe
}

fn stages(dir: &Path, near: &str) -> Stages {
    let config = format!(
        "state = \"s\"\noutput = \"o\"\n[[source]]\nname = \"a\"\nformat = \"text\"\npath = \"*.jsonl\"\n[clean]\nrecipe = \"{}\"\n",
        recipe(dir, near).display()
    );
    Stages::build(&PipelineConfig::parse(&config, &dir.join("p.toml")).unwrap()).unwrap()
}

/// The batch keep rule, document by document in the order given. The kept ones' places.
fn batch_kept<K: Clone + Ord>(stages: &Stages, docs: &[(K, String)]) -> BTreeSet<K> {
    let (mut exact, mut near) = (SeenIndex::default(), SeenIndex::default());
    let mut kept = BTreeSet::new();
    for (place, text) in docs {
        let Cleaned::Passed { entry, .. } = stages.clean(text.clone()) else {
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
        kept.insert(place.clone());
    }
    kept
}

/// A document's place: its file's name and its row.
type Place = (String, u64);

/// A job in `dir` with sources `gone` and `a`, in that order (files `NAME/*.jsonl`), batches
/// of 4 documents.
struct Job {
    dir: PathBuf,
    config: PipelineConfig,
}

impl Job {
    fn new(dir: &Path, near: &str, workers: usize, compact: bool) -> Job {
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("gone")).unwrap();
        let text = format!(
            "state = \"state\"\noutput = \"out\"\nworkers = {workers}\nbatch_docs = 4\ncompact = {compact}\n\
             [[source]]\nname = \"gone\"\nformat = \"text\"\npath = \"gone/*.jsonl\"\n\
             [[source]]\nname = \"a\"\nformat = \"text\"\npath = \"a/*.jsonl\"\n\
             [clean]\nrecipe = \"{}\"\n",
            recipe(dir, near).display()
        );
        let config = PipelineConfig::parse(&text, &dir.join("pipeline.toml")).unwrap();
        Job {
            dir: dir.to_path_buf(),
            config,
        }
    }

    /// Write `docs` (ids give shard and row) as one file per shard under `source/`, named
    /// `prefix` and the shard number.
    fn add(&self, source: &str, prefix: &str, docs: &[(DocId, String)]) {
        let mut files: BTreeMap<u32, String> = BTreeMap::new();
        for (doc, text) in docs {
            let line = serde_json::json!({ "text": text }).to_string();
            let file = files.entry((doc >> 32) as u32).or_default();
            file.push_str(&line);
            file.push('\n');
        }
        for (shard, lines) in files {
            let path = self
                .dir
                .join(source)
                .join(format!("{prefix}{shard:04}.jsonl"));
            std::fs::write(path, lines).unwrap();
        }
    }

    fn run(&self, work: Work) {
        let options = RunOptions {
            workers: self.config.workers,
            ..RunOptions::default()
        };
        run(&self.config, &options, work).unwrap();
    }

    /// The documents kept now: every epoch's output less its tombstones.
    fn kept(&self) -> BTreeSet<Place> {
        let mut live = BTreeSet::new();
        let mut epochs: Vec<PathBuf> = std::fs::read_dir(self.dir.join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        epochs.sort();
        let place = |line: &str| -> Place {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let file = v["meta"]["file"].as_str().unwrap();
            let name = Path::new(file).file_name().unwrap().to_string_lossy();
            (name.into_owned(), v["meta"]["row"].as_u64().unwrap())
        };
        for epoch in epochs {
            if let Ok(tombstones) = std::fs::read_to_string(epoch.join("tombstones.jsonl")) {
                for line in tombstones.lines() {
                    assert!(
                        live.remove(&place(line)),
                        "tombstone of a document not kept"
                    );
                }
            }
            let mut parts: Vec<PathBuf> = std::fs::read_dir(&epoch)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("part-")
                })
                .collect();
            parts.sort();
            for part in parts {
                for line in std::fs::read_to_string(part).unwrap().lines() {
                    assert!(live.insert(place(line)), "document output twice: {line}");
                }
            }
        }
        live
    }

    /// Every output and index file's bytes (reports hold timings, so not those; nor the
    /// manifest, which holds them too).
    fn bytes(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut stack = vec![self.dir.join("out")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    stack.push(path);
                } else if !name.starts_with("report") {
                    let key = path.strip_prefix(&self.dir).unwrap().display().to_string();
                    files.insert(key, std::fs::read(&path).unwrap());
                }
            }
        }
        files
    }
}

/// The places of `docs` as `Job::add` names them under `prefix`.
fn placed(prefix: &str, docs: &[(DocId, String)]) -> Vec<(Place, String)> {
    docs.iter()
        .map(|(doc, text)| {
            let name = format!("{prefix}{:04}.jsonl", doc >> 32);
            ((name, doc & 0xffff_ffff), text.clone())
        })
        .collect()
}

const NEAR: [&str; 2] = [
    "  - document_simhash_deduplicator:\n      tokenization: space\n      window_size: 2\n      hamming_distance: 3\n",
    "  - document_minhash_deduplicator:\n      tokenization: space\n      window_size: 2\n      num_permutations: 32\n      jaccard_threshold: 0.5\n",
];

#[test]
fn appends_in_any_number_of_steps_keep_what_one_batch_keeps() {
    let dir = tempfile::tempdir().unwrap();
    for (m, near) in NEAR.iter().enumerate() {
        for seed in 1..=2u64 {
            let docs = corpus(seed, 120);
            let st = stages(dir.path(), near);
            let expected = batch_kept(&st, &placed("s", &docs));
            assert!(
                expected.len() < 100 && expected.len() > 20,
                "seed {seed}: {} kept",
                expected.len()
            );
            for (k, workers, compacted) in [(1, 1, true), (3, 2, false), (7, 3, true)] {
                let job_dir = dir.path().join(format!("m{m}-s{seed}-k{k}"));
                let job = Job::new(&job_dir, near, workers, compacted);
                // k appends of whole shards, in shard order.
                let per = docs.len().div_ceil(10).div_ceil(k) * 10;
                for (step, chunk) in docs.chunks(per).enumerate() {
                    job.add("a", "s", chunk);
                    job.run(Work::Ingest);
                    // Every intermediate answer is the batch answer over what came so far.
                    let so_far = &docs[..((step + 1) * per).min(docs.len())];
                    assert_eq!(
                        job.kept(),
                        batch_kept(&st, &placed("s", so_far)),
                        "method {m}, seed {seed}, {k} appends, {workers} workers, step {step}"
                    );
                }
                assert_eq!(job.kept(), expected, "method {m}, seed {seed}, {k} appends");
            }
        }
    }
}

#[test]
fn retracting_then_re_adding_keeps_what_a_batch_over_the_live_documents_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let mut readmitted = 0;
    for (m, near) in NEAR.iter().enumerate() {
        for seed in 4..=6u64 {
            let docs = corpus(seed, 100);
            // The source to retract: every third shard.
            let (gone, rest): (Vec<_>, Vec<_>) = docs
                .iter()
                .cloned()
                .partition(|(doc, _)| (doc >> 32) % 3 == 0);
            let st = stages(dir.path(), near);
            let job = Job::new(&dir.path().join(format!("m{m}-s{seed}")), near, 2, true);
            // Source `gone` is ingested before `a`, each in file order.
            job.add("a", "s", &rest);
            job.add("gone", "s", &gone);
            job.run(Work::Ingest);
            let all: Vec<_> = placed("s", &gone)
                .into_iter()
                .chain(placed("s", &rest))
                .collect();
            let before = job.kept();
            assert_eq!(before, batch_kept(&st, &all), "method {m}, seed {seed}");
            job.run(Work::Retract {
                source: "gone".into(),
                file: None,
            });
            let after = job.kept();
            assert_eq!(
                after,
                batch_kept(&st, &placed("s", &rest)),
                "method {m}, seed {seed}: after retraction"
            );
            readmitted += after.difference(&before).count();
            // The same texts again, as new files after every other.
            job.add("a", "z", &gone);
            job.run(Work::Ingest);
            let again: Vec<_> = placed("s", &rest)
                .into_iter()
                .chain(placed("z", &gone))
                .collect();
            assert_eq!(
                job.kept(),
                batch_kept(&st, &again),
                "method {m}, seed {seed}: after re-adding"
            );
        }
    }
    // Documents dropped only because of the retracted ones came back.
    assert!(readmitted > 5, "{readmitted} documents re-admitted");
}

#[test]
fn compaction_leaves_every_answer_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    for (m, near) in NEAR.iter().enumerate() {
        let docs = corpus(7 + m as u64, 150);
        let (gone, rest): (Vec<_>, Vec<_>) = docs
            .iter()
            .cloned()
            .partition(|(doc, _)| (doc >> 32) % 4 == 1);
        let plain = Job::new(&dir.path().join(format!("plain{m}")), near, 2, false);
        let compacted = Job::new(&dir.path().join(format!("compacted{m}")), near, 2, false);
        // Four appends, then compaction of one job only, a retraction and an append.
        for chunk in rest.chunks(30) {
            for job in [&plain, &compacted] {
                job.add("a", "s", chunk);
                job.run(Work::Ingest);
            }
        }
        let outcome = compact(&compacted.config).unwrap();
        assert_eq!((outcome.segments_before, outcome.segments_after), (4, 1));
        for job in [&plain, &compacted] {
            job.add("gone", "s", &gone);
            job.run(Work::Ingest);
            job.run(Work::Retract {
                source: "gone".into(),
                file: None,
            });
            job.add("a", "z", &gone[..gone.len() / 2]);
            job.run(Work::Ingest);
        }
        assert_eq!(plain.bytes(), compacted.bytes(), "method {m}");
        // Compacting after the retraction too changes nothing.
        compact(&compacted.config).unwrap();
        for job in [&plain, &compacted] {
            job.add("a", "zz", &gone[gone.len() / 2..]);
            job.run(Work::Ingest);
        }
        assert_eq!(
            plain.bytes(),
            compacted.bytes(),
            "method {m}: compacted twice"
        );
    }
}

#[test]
fn a_corrupt_or_truncated_index_segment_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let docs = corpus(9, 40);
    let job = Job::new(dir.path(), NEAR[1], 1, false);
    job.add("a", "s", &docs[..20]);
    job.run(Work::Ingest);
    let options = RunOptions {
        workers: 1,
        ..RunOptions::default()
    };
    let segment = dir.path().join("state/epochs/000001");
    job.add("a", "s", &docs[20..]);
    // One byte flipped inside the first (only) block of the digests: every new document's
    // exact probe reads it (bucket probes are mostly ruled out by the Bloom filter first).
    let run_file = segment.join("exact.run");
    let good = std::fs::read(&run_file).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 1;
    std::fs::write(&run_file, &bad).unwrap();
    let err = run(&job.config, &options, Work::Ingest)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&*run_file.to_string_lossy()) && err.contains("checksum"),
        "{err}"
    );
    assert!(
        !dir.path().join("out/epoch-000002").exists(),
        "nothing is committed"
    );
    // A file cut short is refused when the index is opened.
    std::fs::write(&run_file, &good[..good.len() - 1]).unwrap();
    let err = run(&job.config, &options, Work::Ingest)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&*run_file.to_string_lossy()), "{err}");
    // Made whole again, the append goes through and equals the batch answer.
    std::fs::write(&run_file, &good).unwrap();
    job.run(Work::Ingest);
    let st = stages(dir.path(), NEAR[1]);
    assert_eq!(job.kept(), batch_kept(&st, &placed("s", &docs)));
}
