//! A parquet file that is corrupt part-way (a row group whose data page no longer
//! decompresses) does not stop a run: that row group's rows are rejected as `read_error`,
//! naming the row group and its rows, and every other row group and file still converts.

use polars::prelude::*;
use serde_json::Value;
use std::fs::File;
use std::path::Path;
use steel_dataflow::clean::recipe::Recipe;
use steel_dataflow::clean::run::{CleanOptions, clean};
use steel_dataflow::convert::{ConvertOptions, convert};
use steel_dataflow::reject::RejectCode;

const GROUPS: usize = 4;
const ROWS: usize = 50;
const BROKEN_GROUP: usize = 1;

/// `GROUPS` row groups of `ROWS` varied texts in a snappy-compressed `text` column.
fn write_parquet(path: &Path) -> Vec<String> {
    let texts: Vec<String> = (0..GROUPS * ROWS)
        .map(|i| {
            format!(
                "document {i}: {} {}",
                (i * 7919) % 10007,
                "词".repeat(i % 13)
            )
        })
        .collect();
    let column = Column::new("text".into(), texts.clone());
    let mut frame = DataFrame::new(texts.len(), vec![column]).unwrap();
    ParquetWriter::new(File::create(path).unwrap())
        .with_compression(ParquetCompression::Snappy)
        .with_row_group_size(Some(ROWS))
        .finish(&mut frame)
        .unwrap();
    texts
}

/// Overwrite 16 bytes in the middle of row group `group`'s column chunk (its data, not the
/// footer), so that its pages no longer decompress.
fn corrupt_row_group(path: &Path, group: usize) {
    let mut reader = ParquetReader::new(File::open(path).unwrap());
    let metadata = reader.get_metadata().unwrap().clone();
    assert_eq!(metadata.row_groups.len(), GROUPS, "the test file's layout");
    let range = metadata.row_groups[group]
        .byte_ranges_iter()
        .next()
        .unwrap();
    let middle = (range.start + (range.end - range.start) / 2) as usize;
    let mut bytes = std::fs::read(path).unwrap();
    bytes[middle..middle + 16].fill(0xFF);
    std::fs::write(path, bytes).unwrap();
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `text` of every line of the JSONL shards in `dir`, in shard order.
fn shard_texts(dir: &Path) -> Vec<String> {
    let mut shards: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    shards.sort();
    shards
        .iter()
        .flat_map(|s| lines(s))
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_corrupt_parquet_row_group_is_quarantined_and_the_rest_of_the_run_converts() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("a.parquet");
    let texts = write_parquet(&parquet);
    corrupt_row_group(&parquet, BROKEN_GROUP);
    let jsonl = dir.path().join("b.jsonl");
    std::fs::write(
        &jsonl,
        "{\"text\": \"after one\"}\n{\"text\": \"after two\"}\n",
    )
    .unwrap();
    let inputs = [parquet.display().to_string(), jsonl.display().to_string()];

    for format in ["text", "auto"] {
        let out = dir.path().join(format!("out-{format}"));
        let options = ConvertOptions::new(format.parse().unwrap(), &out);
        let summary =
            convert(&inputs, &options).expect("a corrupt row group does not stop the run");

        // Every row of the other row groups, then the next file, in order.
        let broken = BROKEN_GROUP * ROWS..(BROKEN_GROUP + 1) * ROWS;
        let mut expected: Vec<String> = texts
            .iter()
            .enumerate()
            .filter(|(i, _)| !broken.contains(i))
            .map(|(_, t)| t.clone())
            .collect();
        expected.extend(["after one".to_string(), "after two".to_string()]);
        assert_eq!(shard_texts(&out), expected);

        assert_eq!(
            (summary.docs_in, summary.docs_out, summary.rejected),
            (202, 152, 50)
        );
        assert_eq!(summary.docs_in, summary.docs_out + summary.rejected);
        assert_eq!(
            summary.reject_reasons.get(&RejectCode::ReadError),
            Some(&50)
        );
        assert_eq!(
            (summary.files[0].docs_in, summary.files[0].docs_out),
            (200, 150)
        );
        assert_eq!(summary.files[0].rejected, 50);
        assert_eq!(summary.files[0].unreadable_row_groups, 1);
        assert_eq!(summary.files[1].docs_out, 2);
        let written: Value =
            serde_json::from_slice(&std::fs::read(out.join("_summary.json")).unwrap()).unwrap();
        assert_eq!(written["reject_reasons"]["read_error"], 50);
        assert_eq!(written["files"][0]["unreadable_row_groups"], 1);

        let rejects = lines(&out.join("_rejects.jsonl"));
        assert_eq!(rejects.len(), 50);
        let rows: Vec<u64> = rejects.iter().map(|r| r["row"].as_u64().unwrap()).collect();
        assert_eq!(rows, (50..100).collect::<Vec<u64>>());
        for reject in &rejects {
            assert_eq!(reject["reason"], "read_error");
            assert_eq!(reject["file"], inputs[0].as_str());
        }
        let detail = rejects[0]["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("row group 1 of 4 (rows 50 to 99) cannot be read: "),
            "{detail}"
        );
        assert!(detail.contains("snap"), "{detail}");
    }
}

#[test]
fn clean_rejects_a_corrupt_parquet_row_group_and_keeps_the_other_rows() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("a.parquet");
    let texts = write_parquet(&parquet);
    corrupt_row_group(&parquet, BROKEN_GROUP);
    let recipe = Recipe::parse("process:\n  - text_length_filter:\n      min_len: 1\n").unwrap();
    let out = dir.path().join("clean");
    let report = clean(
        &[parquet.display().to_string()],
        &recipe,
        &CleanOptions::new("recipe.yaml", &out),
    )
    .expect("a corrupt row group does not stop the run");
    // clean counts documents in and records rejected apart: 150 + 50 rows.
    assert_eq!(
        (report.docs_in, report.docs_out, report.rejected),
        (150, 150, 50)
    );
    assert_eq!(report.reject_reasons.get("read_error"), Some(&50));
    let kept = shard_texts(&out);
    assert_eq!(kept.len(), 150);
    assert_eq!(kept[..50], texts[..50]);
    assert_eq!(kept[50..], texts[100..]);
    let rejects = lines(&out.join("_rejects.jsonl"));
    assert_eq!(rejects.len(), 50);
    assert_eq!(rejects[0]["row"], 50);
    assert_eq!(rejects[0]["reason"], "read_error");
}
