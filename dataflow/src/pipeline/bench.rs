//! `steel bench incremental`: the cost of an append against the cost of everything.
//!
//! The corpus is the converted text samples replicated with random edits until it reaches
//! the asked size, in `files` JSONL files: per copy of a document, 10% are exact copies, 20%
//! near copies (a few characters changed) and 70% heavily edited (every 4th character
//! replaced, so no longer near-duplicates). Then, each `steel run` in its own process:
//! 1. the full run over every file (fresh state);
//! 2. a run over all files but the last 1% (fresh state), then the append of that 1%.
//!
//! Reported: the full run's docs/s and MB/s, the append's wall time as a share of the full
//! run's, and peak memory per million indexed documents (from the runs' manifests).

use crate::clean::bench::converted_text_samples;
use serde::Serialize;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct IncrementalBenchOptions {
    /// The `steel` binary to run (each run in its own process, so memory is its own).
    pub exe: PathBuf,
    pub samples: PathBuf,
    pub recipe: PathBuf,
    pub work: PathBuf,
    pub megabytes: u64,
    pub files: usize,
    pub workers: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct IncrementalBenchLine {
    pub bench: &'static str,
    pub case: String,
    pub workers: usize,
    pub files: usize,
    pub docs: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub docs_per_s: f64,
    pub mb_per_s: f64,
    pub index_docs: u64,
    pub peak_rss_mb: f64,
    pub peak_rss_mb_per_million_docs: f64,
    /// For the append: its wall time over the full run's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_of_full: Option<f64>,
}

fn fail(what: &str) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A seeded xorshift generator for the edits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn edit(text: &str, rng: &mut Rng, every: usize, limit: usize) -> String {
    let mut edits = 0;
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % every == every - 1 && edits < limit && !c.is_whitespace() {
                edits += 1;
                char::from_u32(0x4e00 + (rng.next() % 0x5000) as u32).unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

/// Make (or reuse) the corpus; returns its files in order.
fn corpus(options: &IncrementalBenchOptions) -> Result<Vec<PathBuf>, String> {
    let dir = options
        .work
        .join(format!("corpus-{}mb-{}", options.megabytes, options.files));
    let files: Vec<PathBuf> = (0..options.files)
        .map(|i| dir.join(format!("part-{i:05}.jsonl")))
        .collect();
    if files.iter().all(|f| f.exists()) {
        return Ok(files);
    }
    let unified =
        converted_text_samples(&options.samples, &options.work).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(&unified).map_err(fail("reading the converted samples"))?;
    let texts: Vec<String> = BufReader::new(file)
        .lines()
        .map(|l| {
            let line = l.map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            Ok(v["text"].as_str().unwrap_or_default().to_string())
        })
        .collect::<Result<_, String>>()?;
    std::fs::create_dir_all(&dir).map_err(fail("creating the corpus directory"))?;
    let target = options.megabytes << 20;
    let per_file = target / options.files as u64;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut written = 0u64;
    let mut docs = texts.iter().cycle();
    for path in &files {
        let mut out = BufWriter::new(std::fs::File::create(path).map_err(fail("writing corpus"))?);
        let mut bytes = 0;
        while bytes < per_file {
            let text = docs.next().expect("cycled");
            let edited = match rng.next() % 10 {
                0 => text.clone(),
                1 | 2 => edit(text, &mut rng, 97, 3),
                _ => edit(text, &mut rng, 4, usize::MAX),
            };
            let mut line =
                serde_json::to_vec(&serde_json::json!({ "text": edited })).expect("serialises");
            line.push(b'\n');
            out.write_all(&line).map_err(fail("writing corpus"))?;
            bytes += line.len() as u64;
        }
        out.flush().map_err(fail("writing corpus"))?;
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
fn job(
    options: &IncrementalBenchOptions,
    name: &str,
    files: &[PathBuf],
) -> Result<PathBuf, String> {
    let job = options.work.join(name);
    if job.exists() {
        std::fs::remove_dir_all(&job).map_err(fail("clearing a job"))?;
    }
    let raw = job.join("raw");
    std::fs::create_dir_all(&raw).map_err(fail("creating a job"))?;
    link(files, &raw)?;
    let recipe = std::path::absolute(&options.recipe).map_err(fail("the recipe path"))?;
    let toml = format!(
        "state = \"state\"\noutput = \"out\"\nworkers = {}\n[[source]]\nname = \"bench\"\nformat = \"text\"\npath = \"raw/*.jsonl\"\n[clean]\nrecipe = \"{}\"\n",
        options.workers,
        recipe.display()
    );
    std::fs::write(job.join("pipeline.toml"), toml).map_err(fail("writing a job"))?;
    Ok(job)
}

fn link(files: &[PathBuf], raw: &Path) -> Result<(), String> {
    for file in files {
        let target = std::path::absolute(file).map_err(fail("a corpus path"))?;
        std::os::unix::fs::symlink(&target, raw.join(file.file_name().expect("named")))
            .map_err(fail("linking a corpus file"))?;
    }
    Ok(())
}

/// Run `steel run` on `job`; the last epoch's report and manifest summary.
fn run(
    options: &IncrementalBenchOptions,
    job: &Path,
) -> Result<(f64, serde_json::Value, serde_json::Value), String> {
    let start = Instant::now();
    let out = Command::new(&options.exe)
        .current_dir(job)
        .args(["run", "pipeline.toml", "--json"])
        .output()
        .map_err(fail("starting steel run"))?;
    let seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "steel run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let outcome: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(job.join("state/manifest.json")).map_err(fail("reading the manifest"))?,
    )
    .map_err(|e| e.to_string())?;
    let epoch = manifest["epochs"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or_default();
    Ok((seconds, outcome["epochs"][0].clone(), epoch))
}

fn line(
    case: &str,
    options: &IncrementalBenchOptions,
    files: usize,
    (seconds, report, summary): &(f64, serde_json::Value, serde_json::Value),
    share_of_full: Option<f64>,
) -> IncrementalBenchLine {
    let docs: u64 = report["files"].as_array().map_or(0, |f| {
        f.iter().map(|f| f["docs"].as_u64().unwrap_or(0)).sum()
    });
    let bytes = report["bytes_in"].as_u64().unwrap_or(0);
    let index_docs = summary["index_docs"].as_u64().unwrap_or(0);
    let rss = summary["peak_rss"].as_u64().unwrap_or(0) as f64 / 1e6;
    IncrementalBenchLine {
        bench: "incremental",
        case: case.into(),
        workers: options.workers,
        files,
        docs,
        bytes,
        seconds: *seconds,
        docs_per_s: docs as f64 / seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
        index_docs,
        peak_rss_mb: rss,
        peak_rss_mb_per_million_docs: rss / (index_docs.max(1) as f64 / 1e6),
        share_of_full,
    }
}

pub fn bench_incremental(
    options: &IncrementalBenchOptions,
    emit: &mut dyn FnMut(&IncrementalBenchLine),
) -> Result<(), String> {
    let files = corpus(options)?;
    let append = (files.len() / 100).max(1);
    let (base, new) = files.split_at(files.len() - append);

    let full_job = job(options, "full", &files)?;
    let full = run(options, &full_job)?;
    emit(&line("full run", options, files.len(), &full, None));

    let inc_job = job(options, "incremental", base)?;
    let before = run(options, &inc_job)?;
    emit(&line("first 99%", options, base.len(), &before, None));
    link(new, &inc_job.join("raw"))?;
    let appended = run(options, &inc_job)?;
    emit(&line(
        "append 1%",
        options,
        new.len(),
        &appended,
        Some(appended.0 / full.0),
    ));
    Ok(())
}
