//! The real text samples (`../shared/data/steel-samples`) as benchmark input.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use steel_dataflow::convert::{ConvertOptions, convert};
use steel_dataflow::sources::FormatChoice;

/// The sample files that hold text (StarCoder's code has its own recipe).
pub const TEXT_SAMPLES: &[&str] = &[
    "sky_web.jsonl",
    "wiki_cn.json",
    "baidu_baike.jsonl",
    "belle_instruction.jsonl",
    "firefly.jsonl",
    "zhihu_qa.parquet",
];

/// The text samples converted to one unified JSONL file under `work/converted` (made once,
/// then reused); its path.
pub fn converted_text_samples(samples: &Path, work: &Path) -> Result<PathBuf> {
    let converted = work.join("converted");
    let unified = converted.join("part-00000.jsonl");
    if !unified.exists() {
        let inputs: Vec<String> = TEXT_SAMPLES
            .iter()
            .map(|f| samples.join(f).display().to_string())
            .collect();
        convert(
            &inputs,
            &ConvertOptions::new(FormatChoice::Auto, &converted),
        )?;
    }
    Ok(unified)
}

/// The converted text samples' texts, in file order.
pub fn text_sample_texts(samples: &Path, work: &Path) -> Result<Vec<String>> {
    let unified = converted_text_samples(samples, work)?;
    let file = std::fs::File::open(&unified).context("reading the converted samples")?;
    BufReader::new(file)
        .lines()
        .map(|l| {
            let doc: steel_dataflow::doc::UnifiedDoc = serde_json::from_str(&l?)?;
            Ok(doc.text)
        })
        .collect()
}
