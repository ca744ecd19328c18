//! The same inputs and settings give byte-identical outputs whatever the thread count, and
//! parquet output holds exactly what JSONL output holds.

mod common;

use common::{read_docs, samples};
use std::collections::BTreeMap;
use std::path::Path;
use steel_dataflow::convert::{ConvertOptions, SUMMARY_FILE, convert, plan_files};
use steel_dataflow::doc::UnifiedDoc;
use steel_dataflow::input::BatchLimits;
use steel_dataflow::input::read::read_file;
use steel_dataflow::input::{RawBody, RawRecord};
use steel_dataflow::output::OutputFormat;
use steel_dataflow::sources::FormatChoice;

/// Convert the samples on `threads` threads with small batches and shards, so the parallel
/// stage and shard rotation are exercised many times.
fn convert_on(threads: usize, output: &Path, format: OutputFormat) {
    let mut options = ConvertOptions::new(FormatChoice::Auto, output);
    options.batch = BatchLimits {
        bytes: 64 << 10,
        records: 37,
    };
    options.shard_bytes = 1 << 20;
    options.output_format = format;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let summary = pool
        .install(|| convert(&[samples().display().to_string()], &options))
        .unwrap();
    assert_eq!(summary.threads, threads);
}

/// Every output file but the summary (which records timing and thread count), by name.
fn output_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != SUMMARY_FILE)
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn one_and_two_threads_write_identical_jsonl_bytes() {
    let dir = tempfile::tempdir().unwrap();
    convert_on(1, &dir.path().join("t1"), OutputFormat::Jsonl);
    convert_on(2, &dir.path().join("t2"), OutputFormat::Jsonl);
    let one = output_files(&dir.path().join("t1"));
    let two = output_files(&dir.path().join("t2"));
    assert!(
        one.len() > 5,
        "expected several shards, got {:?}",
        one.keys()
    );
    assert_eq!(
        one.keys().collect::<Vec<_>>(),
        two.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &one {
        assert!(
            bytes == &two[name],
            "{name} differs between 1 and 2 threads"
        );
    }
}

#[test]
fn one_and_two_threads_write_identical_parquet_bytes() {
    let dir = tempfile::tempdir().unwrap();
    convert_on(1, &dir.path().join("t1"), OutputFormat::Parquet);
    convert_on(2, &dir.path().join("t2"), OutputFormat::Parquet);
    let one = output_files(&dir.path().join("t1"));
    let two = output_files(&dir.path().join("t2"));
    assert!(one.keys().any(|name| name.ends_with(".parquet")));
    assert_eq!(one, two);
}

#[test]
fn parquet_output_holds_exactly_the_jsonl_documents() {
    let dir = tempfile::tempdir().unwrap();
    convert_on(2, &dir.path().join("jsonl"), OutputFormat::Jsonl);
    convert_on(2, &dir.path().join("parquet"), OutputFormat::Parquet);
    let from_jsonl = read_docs(&dir.path().join("jsonl"));

    // Read the parquet shards back with the project's own parquet reader.
    let pattern = dir
        .path()
        .join("parquet")
        .join("*.parquet")
        .display()
        .to_string();
    let (plans, _) = plan_files(&[pattern], "text".parse().unwrap()).unwrap();
    let mut from_parquet: Vec<UnifiedDoc> = Vec::new();
    for plan in &plans {
        let mut collect = |batch: Vec<RawRecord>| {
            for record in batch {
                let RawBody::Row(row) = record.body else {
                    panic!("parquet gives rows")
                };
                let object = row.to_record().unwrap();
                from_parquet
                    .push(serde_json::from_value(serde_json::Value::Object(object)).unwrap());
            }
            true
        };
        read_file(
            &plan.path,
            plan.kind,
            BatchLimits::default(),
            Default::default(),
            &mut collect,
        )
        .unwrap();
    }
    assert_eq!(from_jsonl.len(), 5740);
    assert!(
        from_jsonl == from_parquet,
        "parquet and JSONL shards differ"
    );
}
