//! `steel bench convert`: conversion throughput over the real samples, next to a floor.
//!
//! The floor is the least any converter must do: read every record with the same readers,
//! parse it as JSON and write it back out, on one thread, with no format logic. Steel's
//! conversion (format logic, NFKC, the reject checks, sharded output) is then timed on the
//! same files at each requested thread count in the same run.

use crate::line::BenchLine;
use crate::pool;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use steel_dataflow::convert::{ConvertOptions, convert, plan_files};
use steel_dataflow::input::read::read_file;
use steel_dataflow::input::{BatchLimits, RawBody, RawRecord};
use steel_dataflow::sources::FormatChoice;

#[derive(Clone, Debug)]
pub struct ConvertBenchOptions {
    /// A directory of sample files (all formats `auto` recognises).
    pub samples: PathBuf,
    /// Scratch space: the replicated inputs and the outputs go here.
    pub work: PathBuf,
    /// Each sample file is copied this many times to make the input.
    pub copies: usize,
    pub threads: Vec<usize>,
}

/// Lines `floor` (parse and write back, one thread) and `steel` (the real conversion, per
/// thread count), each with its throughput relative to the floor (`vs_floor`).
pub fn bench_convert(options: &ConvertBenchOptions) -> Result<Vec<BenchLine>> {
    let input_dir = options.work.join("input");
    let inputs = replicate(&options.samples, &input_dir, options.copies)?;
    let bytes: u64 = inputs
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let input_args: Vec<String> = vec![input_dir.display().to_string()];

    let floor_path = options.work.join("floor.jsonl");
    let start = Instant::now();
    let docs = floor(&input_args, &floor_path)?;
    let floor_seconds = start.elapsed().as_secs_f64();
    let line = |case, threads: usize, docs: u64, seconds: f64| {
        BenchLine::new("convert", case, seconds)
            .with("threads", threads)
            .with("files", inputs.len())
            .with("docs", docs)
            .with("bytes", bytes)
            .with("docs_per_s", docs as f64 / seconds)
            .with("mb_per_s", bytes as f64 / 1e6 / seconds)
            .with("vs_floor", floor_seconds / seconds)
    };
    let mut lines = vec![line("floor", 1, docs, floor_seconds)];

    for &threads in &options.threads {
        let output = options.work.join(format!("out-{threads}"));
        if output.exists() {
            std::fs::remove_dir_all(&output)
                .with_context(|| format!("clearing {}", output.display()))?;
        }
        let convert_options = ConvertOptions::new(FormatChoice::Auto, &output);
        let start = Instant::now();
        let summary = pool(threads)?.install(|| convert(&input_args, &convert_options))?;
        lines.push(line(
            "steel",
            threads,
            summary.docs_in,
            start.elapsed().as_secs_f64(),
        ));
    }
    Ok(lines)
}

/// Copy every file of `samples` `copies` times into `dir` (`name` becomes `copy-003-name`).
fn replicate(samples: &Path, dir: &Path, copies: usize) -> Result<Vec<PathBuf>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(samples)
        .with_context(|| format!("reading {}", samples.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    sources.sort();
    let mut made = Vec::new();
    for copy in 0..copies {
        for source in &sources {
            let name = source.file_name().unwrap_or_default().to_string_lossy();
            let target = dir.join(format!("copy-{copy:03}-{name}"));
            std::fs::copy(source, &target)
                .with_context(|| format!("writing {}", target.display()))?;
            made.push(target);
        }
    }
    Ok(made)
}

/// Read every record, parse it, write it back as one JSON line: the floor. Returns the
/// number of records.
fn floor(inputs: &[String], output: &Path) -> Result<u64> {
    let (plans, _) = plan_files(inputs, FormatChoice::Auto)?;
    let file = File::create(output).with_context(|| format!("writing {}", output.display()))?;
    let mut out = BufWriter::new(file);
    let mut docs = 0u64;
    let mut write_error = None;
    for plan in &plans {
        let mut write = |batch: Vec<RawRecord>| {
            for record in batch {
                docs += 1;
                let value: serde_json::Value = match record.body {
                    RawBody::Json(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
                    RawBody::Row(row) => row
                        .to_record()
                        .map(serde_json::Value::Object)
                        .unwrap_or_default(),
                    RawBody::Broken(..) => serde_json::Value::Null,
                };
                let written = serde_json::to_writer(&mut out, &value)
                    .map_err(std::io::Error::other)
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(error) = written {
                    write_error = Some(error);
                    return false;
                }
            }
            true
        };
        read_file(
            &plan.path,
            plan.kind,
            BatchLimits::default(),
            Arc::default(),
            &mut write,
        )
        .with_context(|| format!("reading {}", plan.path.display()))?;
        if let Some(error) = write_error.take() {
            return Err(error).with_context(|| format!("writing {}", output.display()));
        }
    }
    out.flush()
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(docs)
}
