//! `steel bench convert`: conversion throughput over the real samples, next to a floor.
//!
//! The floor is the least any converter must do: read every record with the same readers,
//! parse it as JSON and write it back out, on one thread, with no format logic. Steel's
//! conversion (format logic, NFKC, the reject checks, sharded output) is then timed on the
//! same files at each requested thread count in the same run.

use crate::convert::{ConvertError, ConvertOptions, convert, plan_files};
use crate::input::read::read_file;
use crate::input::{BatchLimits, RawBody};
use crate::pack::{PackError, PackOptions, pack};
use crate::sources::FormatChoice;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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

/// One JSON line of benchmark output.
#[derive(Clone, Debug, Serialize)]
pub struct BenchLine {
    pub bench: &'static str,
    /// `floor` (parse and write back) or `steel` (the real conversion).
    pub case: &'static str,
    pub threads: usize,
    pub files: usize,
    pub docs: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub docs_per_s: f64,
    pub mb_per_s: f64,
    /// Throughput relative to the floor (1.0 for the floor itself).
    pub vs_floor: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("benchmark I/O on `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("cannot build a {threads}-thread pool: {reason}")]
    Pool { threads: usize, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn bench_convert(options: &ConvertBenchOptions) -> Result<Vec<BenchLine>, BenchError> {
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
    let line = |case, threads, docs: u64, seconds: f64| BenchLine {
        bench: "convert",
        case,
        threads,
        files: inputs.len(),
        docs,
        bytes,
        seconds,
        docs_per_s: docs as f64 / seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
        vs_floor: floor_seconds / seconds,
    };
    let mut lines = vec![line("floor", 1, docs, floor_seconds)];

    for &threads in &options.threads {
        let output = options.work.join(format!("out-{threads}"));
        if output.exists() {
            std::fs::remove_dir_all(&output).map_err(io_error(&output))?;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| BenchError::Pool {
                threads,
                reason: e.to_string(),
            })?;
        let convert_options = ConvertOptions::new(FormatChoice::Auto, &output);
        let start = Instant::now();
        let summary = pool.install(|| convert(&input_args, &convert_options))?;
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
fn replicate(samples: &Path, dir: &Path, copies: usize) -> Result<Vec<PathBuf>, BenchError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_error(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(samples)
        .map_err(io_error(samples))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    sources.sort();
    let mut made = Vec::new();
    for copy in 0..copies {
        for source in &sources {
            let name = source.file_name().unwrap_or_default().to_string_lossy();
            let target = dir.join(format!("copy-{copy:03}-{name}"));
            std::fs::copy(source, &target).map_err(io_error(&target))?;
            made.push(target);
        }
    }
    Ok(made)
}

/// Read every record, parse it, write it back as one JSON line: the floor. Returns the
/// number of records.
fn floor(inputs: &[String], output: &Path) -> Result<u64, BenchError> {
    let (plans, _) = plan_files(inputs, FormatChoice::Auto)?;
    let file = File::create(output).map_err(io_error(output))?;
    let mut out = BufWriter::new(file);
    let mut docs = 0u64;
    let mut write_error = None;
    for plan in &plans {
        let mut write = |batch: Vec<crate::input::RawRecord>| {
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
        .map_err(ConvertError::from)?;
        if let Some(error) = write_error.take() {
            return Err(BenchError::Io {
                path: output.to_path_buf(),
                source: error,
            });
        }
    }
    out.flush().map_err(io_error(output))?;
    Ok(docs)
}

#[derive(Clone, Debug)]
pub struct PackBenchOptions {
    pub samples: PathBuf,
    pub tokenizer: PathBuf,
    pub work: PathBuf,
    /// The converted samples are copied this many times to make the input.
    pub copies: usize,
    pub threads: Vec<usize>,
}

/// One JSON line of `steel bench pack`.
#[derive(Clone, Debug, Serialize)]
pub struct PackBenchLine {
    pub bench: &'static str,
    pub case: &'static str,
    pub threads: usize,
    pub docs: u64,
    /// UTF-8 bytes of document text tokenised.
    pub text_bytes: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub mb_per_s: f64,
}

/// Convert the samples, copy the unified shard `copies` times, then tokenise and pack it all
/// with the given tokenizer at each thread count.
pub fn bench_pack(options: &PackBenchOptions) -> Result<Vec<PackBenchLine>, BenchError> {
    let converted = options.work.join("converted");
    if options.work.exists() {
        std::fs::remove_dir_all(&options.work).map_err(io_error(&options.work))?;
    }
    let samples = vec![options.samples.display().to_string()];
    convert(
        &samples,
        &ConvertOptions::new(FormatChoice::Auto, &converted),
    )?;
    let input = options.work.join("input");
    std::fs::create_dir_all(&input).map_err(io_error(&input))?;
    for copy in 0..options.copies {
        let target = input.join(format!("copy-{copy:03}.jsonl"));
        std::fs::copy(converted.join("part-00000.jsonl"), &target).map_err(io_error(&target))?;
    }
    let inputs = vec![input.display().to_string()];
    let mut lines = Vec::new();
    for &threads in &options.threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| BenchError::Pool {
                threads,
                reason: e.to_string(),
            })?;
        let mut pack_options = PackOptions::new(
            &options.tokenizer,
            options.work.join(format!("chunks-{threads}")),
        );
        pack_options.chunk_blocks = 64;
        let start = Instant::now();
        let summary = pool.install(|| pack(&inputs, &pack_options))?;
        let seconds = start.elapsed().as_secs_f64();
        lines.push(PackBenchLine {
            bench: "pack",
            case: "steel",
            threads,
            docs: summary.docs_packed,
            text_bytes: summary.text_bytes,
            tokens: summary.tokens,
            seconds,
            tokens_per_s: summary.tokens as f64 / seconds,
            mb_per_s: summary.text_bytes as f64 / 1e6 / seconds,
        });
    }
    Ok(lines)
}
