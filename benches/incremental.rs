//! `steel bench incremental`: the cost of an append against the cost of everything.
//!
//! The corpus is the converted text samples replicated with random edits until it reaches
//! the asked size, in `files` JSONL files: per copy of a document, 10% are exact copies, 20%
//! near copies (a few characters changed) and 70% heavily edited (every 4th character
//! replaced, so no longer near-duplicates). Then, each `steel run` in its own process (so
//! its peak memory is its own):
//! 1. the full run over every file (fresh state), then `steel clean` with the same recipe over
//!    the same files, in turn, `rounds` times (this machine's speed drifts from one minute to
//!    the next, so the two are compared by their medians, taken side by side);
//! 2. a run over all files but the last 1% (fresh state), then the append of that 1%.
//!
//! Reported: each round's full run and clean, then the median full run's docs/s and MB/s (per
//! core too) with its ratio to the median clean, the append's wall time as a share of the
//! median full run's, peak memory per indexed document (from the runs' manifests) and the
//! index's bytes on disk per document.

use crate::edits::{Rng, edit};
use crate::line::BenchLine;
use crate::samples::text_sample_texts;
use anyhow::{Context, Result, bail};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use steel_dataflow::pipeline::state::{EpochSummary, Manifest};

#[derive(Clone, Debug)]
pub struct IncrementalBenchOptions {
    /// The `steel` binary to run.
    pub exe: PathBuf,
    pub samples: PathBuf,
    pub recipe: PathBuf,
    pub work: PathBuf,
    pub megabytes: u64,
    pub files: usize,
    pub workers: usize,
    /// Full runs and cleans, in turn: this machine's speed drifts between runs, so each
    /// ratio is of medians taken side by side.
    pub rounds: usize,
}

fn corpus(options: &IncrementalBenchOptions) -> Result<Vec<PathBuf>> {
    let dir = options
        .work
        .join(format!("corpus-{}mb-{}", options.megabytes, options.files));
    let files: Vec<PathBuf> = (0..options.files)
        .map(|i| dir.join(format!("part-{i:05}.jsonl")))
        .collect();
    if files.iter().all(|f| f.exists()) {
        return Ok(files);
    }
    let texts = text_sample_texts(&options.samples, &options.work)?;
    std::fs::create_dir_all(&dir).context("creating the corpus directory")?;
    let target = options.megabytes << 20;
    let per_file = target / options.files as u64;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut written = 0u64;
    let mut docs = texts.iter().cycle();
    for path in &files {
        let mut out = BufWriter::new(std::fs::File::create(path).context("writing corpus")?);
        let mut bytes = 0;
        while bytes < per_file {
            let text = docs.next().expect("cycled");
            let edited = match rng.next_u64() % 10 {
                0 => text.clone(),
                1 | 2 => edit(text, &mut rng, 97, 3),
                _ => edit(text, &mut rng, 4, usize::MAX),
            };
            let mut line = serde_json::to_vec(&serde_json::json!({ "text": edited }))?;
            line.push(b'\n');
            out.write_all(&line).context("writing corpus")?;
            bytes += line.len() as u64;
        }
        out.flush().context("writing corpus")?;
        written += bytes;
    }
    eprintln!(
        "bench incremental: corpus of {:.0} MB in {}",
        written as f64 / 1e6,
        dir.display()
    );
    Ok(files)
}

/// A job directory whose source is a directory of links to `files`.
fn job(options: &IncrementalBenchOptions, name: &str, files: &[PathBuf]) -> Result<PathBuf> {
    let job = options.work.join(name);
    if job.exists() {
        std::fs::remove_dir_all(&job).context("clearing a job")?;
    }
    let raw = job.join("raw");
    std::fs::create_dir_all(&raw).context("creating a job")?;
    link(files, &raw)?;
    let recipe = std::path::absolute(&options.recipe).context("the recipe path")?;
    let toml = format!(
        "state = \"state\"\noutput = \"out\"\nworkers = {}\n[[source]]\nname = \"bench\"\nformat = \"text\"\npath = \"raw/*.jsonl\"\n[clean]\nrecipe = \"{}\"\n",
        options.workers,
        recipe.display()
    );
    std::fs::write(job.join("pipeline.toml"), toml).context("writing a job")?;
    Ok(job)
}

fn link(files: &[PathBuf], raw: &Path) -> Result<()> {
    for file in files {
        let target = std::path::absolute(file).context("a corpus path")?;
        std::os::unix::fs::symlink(&target, raw.join(file.file_name().expect("named")))
            .context("linking a corpus file")?;
    }
    Ok(())
}

/// One `steel run` of a job: its wall time, what its epoch read, and the state's summary of
/// the epoch.
struct Run {
    seconds: f64,
    docs: u64,
    bytes: u64,
    summary: EpochSummary,
    /// The index's bytes on disk after the run.
    index_bytes: u64,
}

/// `steel run --json` on `job` in its own process: its wall seconds, its outcome (the JSON
/// it printed) and the state's manifest after it.
pub fn steel_run(exe: &Path, job: &Path) -> Result<(f64, serde_json::Value, Manifest)> {
    let start = Instant::now();
    let out = Command::new(exe)
        .current_dir(job)
        .args(["run", "pipeline.toml", "--json"])
        .output()
        .context("starting steel run")?;
    let seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("steel run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let path = job.join("state/manifest.json");
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    Ok((seconds, outcome, manifest))
}

/// Run `steel run` on `job` in its own process.
fn run(options: &IncrementalBenchOptions, job: &Path) -> Result<Run> {
    let (seconds, outcome, manifest) = steel_run(&options.exe, job)?;
    let report = &outcome["epochs"][0];
    let docs = report["files"].as_array().map_or(0, |files| {
        files.iter().map(|f| f["docs"].as_u64().unwrap_or(0)).sum()
    });
    let Some(summary) = manifest.epochs.last() else {
        bail!("steel run in {} committed no epoch", job.display());
    };
    Ok(Run {
        seconds,
        docs,
        bytes: report["bytes_in"].as_u64().unwrap_or(0),
        summary: summary.clone(),
        index_bytes: manifest.segments.iter().map(|s| s.bytes).sum(),
    })
}

/// `steel clean` with the same recipe over the same files, in its own process: the
/// throughput the full run is measured against. Its wall seconds.
fn clean(options: &IncrementalBenchOptions, files: &[PathBuf]) -> Result<f64> {
    let out = options.work.join("clean-out");
    if out.exists() {
        std::fs::remove_dir_all(&out).context("clearing the clean output")?;
    }
    let start = Instant::now();
    let result = Command::new(&options.exe)
        .arg("--threads")
        .arg(options.workers.to_string())
        .arg("clean")
        .arg("--recipe")
        .arg(&options.recipe)
        .arg("-o")
        .arg(&out)
        .arg("--json")
        .args(files)
        .output()
        .context("starting steel clean")?;
    let seconds = start.elapsed().as_secs_f64();
    if !result.status.success() {
        bail!(
            "steel clean failed: {}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    Ok(seconds)
}

/// The middle value (the upper middle of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn line(
    case: &str,
    options: &IncrementalBenchOptions,
    files: usize,
    run: &Run,
    share_of_full: Option<f64>,
) -> BenchLine {
    let (docs, bytes) = (run.docs, run.bytes);
    let index_docs = run.summary.index_docs;
    let rss = run.summary.peak_rss as f64 / 1e6;
    let line = BenchLine::new("incremental", case, run.seconds)
        .with("workers", options.workers)
        .with("files", files)
        .with("docs", docs)
        .with("bytes", bytes)
        .with("docs_per_s", docs as f64 / run.seconds)
        .with("mb_per_s", bytes as f64 / 1e6 / run.seconds)
        .with("index_docs", index_docs)
        .with(
            "index_bytes_per_doc",
            run.index_bytes as f64 / index_docs.max(1) as f64,
        )
        .with(
            "mb_per_s_per_core",
            bytes as f64 / 1e6 / run.seconds / options.workers as f64,
        )
        .with("peak_rss_mb", rss)
        .with(
            "peak_rss_bytes_per_indexed_doc",
            run.summary.peak_rss as f64 / index_docs.max(1) as f64,
        );
    match share_of_full {
        // For the append: its wall time over the full run's.
        Some(share) => line.with("share_of_full", share),
        None => line,
    }
}

pub fn bench_incremental(
    options: &IncrementalBenchOptions,
    emit: &mut dyn FnMut(&BenchLine),
) -> Result<()> {
    let files = corpus(options)?;
    let append = (files.len() / 100).max(1);
    let (base, new) = files.split_at(files.len() - append);

    // Full runs (each from a fresh state) and cleans in turn; the median full run stands
    // for all of them.
    let (mut fulls, mut cleans) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let full_job = job(options, "full", &files)?;
        let full = run(options, &full_job)?;
        emit(&line("full run", options, files.len(), &full, None).with("round", round));
        let seconds = clean(options, &files)?;
        emit(
            &BenchLine::new("incremental", "steel clean, same files", seconds)
                .with("round", round)
                .with("workers", options.workers)
                .with("files", files.len())
                .with("bytes", full.bytes)
                .with("mb_per_s", full.bytes as f64 / 1e6 / seconds),
        );
        fulls.push(full);
        cleans.push(seconds);
    }
    fulls.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let full = fulls.swap_remove(fulls.len() / 2);
    let clean_seconds = median(cleans);
    emit(
        &line("full run, median", options, files.len(), &full, None)
            .with("rounds", options.rounds)
            .with("clean_seconds", clean_seconds)
            .with("full_run_vs_clean", clean_seconds / full.seconds),
    );

    let inc_job = job(options, "incremental", base)?;
    let before = run(options, &inc_job)?;
    emit(&line("first 99%", options, base.len(), &before, None));
    link(new, &inc_job.join("raw"))?;
    let appended = run(options, &inc_job)?;
    let share = appended.seconds / full.seconds;
    emit(&line(
        "append 1%",
        options,
        new.len(),
        &appended,
        Some(share),
    ));
    Ok(())
}
