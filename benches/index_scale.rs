//! `steel bench index`: the cost of appending the same shard to ever larger indexes.
//!
//! For each size N, a state directory is made whose index holds N synthetic documents (one
//! segment written by the real segment writer: random digests, random MinHash band keys and
//! sketches, so no new document matches them and every probe does its full work), then the
//! same shard of real documents (the converted text samples, each copy heavily edited) is
//! appended by `steel run` in its own process. Size 0 is the baseline: what the shard itself
//! needs.
//!
//! Reported per size: the append's wall time (and its ratio to the smallest nonzero size's),
//! its peak RSS (VmHWM, as `/usr/bin/time -f %M` reports it) and the bytes of it per indexed
//! document beyond the baseline's, and the index's bytes on disk per document.

use crate::edits::{Rng, edit};
use crate::incremental::steel_run;
use crate::line::BenchLine;
use crate::samples::text_sample_texts;
use anyhow::{Context, Result, bail};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use steel_dataflow::pipeline::config::PipelineConfig;
use steel_dataflow::pipeline::graph::doc_id;
use steel_dataflow::pipeline::segment::{SegmentEntry, SegmentWriter, Status};
use steel_dataflow::pipeline::stages::Stages;
use steel_dataflow::pipeline::state::{
    EpochSummary, FileEntry, HashedLines, Manifest, PipelineIdentity, StateDir,
};

#[derive(Clone, Debug)]
pub struct IndexScaleOptions {
    /// The `steel` binary to run.
    pub exe: PathBuf,
    pub samples: PathBuf,
    pub recipe: PathBuf,
    pub work: PathBuf,
    /// Indexed documents before the append, one index per size.
    pub sizes: Vec<u64>,
    /// Documents of the appended shard.
    pub shard_docs: usize,
    pub workers: usize,
}

pub fn bench_index_scale(
    options: &IndexScaleOptions,
    emit: &mut dyn FnMut(&BenchLine),
) -> Result<()> {
    let shard = shard(options)?;
    let mut sizes = options.sizes.clone();
    if !sizes.contains(&0) {
        sizes.insert(0, 0);
    }
    let mut baseline_rss = None;
    let mut first_seconds = None;
    for size in sizes {
        let job = job(options, size)?;
        let built = Instant::now();
        let disk = build_index(&job, size)?;
        let build_seconds = built.elapsed().as_secs_f64();
        std::os::unix::fs::symlink(&shard, job.join("raw/shard.jsonl"))
            .context("linking the shard")?;
        let (seconds, summary) = append(options, &job)?;
        let rss = summary.peak_rss;
        let baseline = *baseline_rss.get_or_insert(rss);
        let mut line = BenchLine::new("index", format!("append to {size} docs"), seconds)
            .with("index_docs", size)
            .with("shard_docs", options.shard_docs)
            .with("workers", options.workers)
            .with("build_seconds", build_seconds)
            .with("peak_rss_mb", rss as f64 / 1e6);
        if size > 0 {
            let first = *first_seconds.get_or_insert(seconds);
            line = line
                .with("seconds_vs_smallest", seconds / first)
                .with(
                    "rss_bytes_per_indexed_doc",
                    (rss as f64 - baseline as f64) / size as f64,
                )
                .with("disk_bytes_per_doc", disk as f64 / size as f64);
        }
        emit(&line);
        std::fs::remove_dir_all(&job).context("removing the job")?;
    }
    Ok(())
}

/// The appended shard: real texts, each copy heavily edited (so they are new documents).
fn shard(options: &IndexScaleOptions) -> Result<PathBuf> {
    let path = options
        .work
        .join(format!("shard-{}.jsonl", options.shard_docs));
    if path.exists() {
        return Ok(path);
    }
    let texts = text_sample_texts(&options.samples, &options.work)?;
    let mut rng = Rng(0x5eed_0000_1dec_0001);
    let mut out = BufWriter::new(std::fs::File::create(&path).context("writing the shard")?);
    for text in texts.iter().cycle().take(options.shard_docs) {
        let edited = edit(text, &mut rng, 4, usize::MAX);
        let line = serde_json::json!({ "text": edited });
        writeln!(out, "{line}").context("writing the shard")?;
    }
    out.flush().context("writing the shard")?;
    Ok(path)
}

fn job(options: &IndexScaleOptions, size: u64) -> Result<PathBuf> {
    let job = options.work.join(format!("index-{size}"));
    if job.exists() {
        std::fs::remove_dir_all(&job).context("clearing a job")?;
    }
    std::fs::create_dir_all(job.join("raw")).context("creating a job")?;
    let recipe = std::path::absolute(&options.recipe).context("the recipe path")?;
    let toml = format!(
        "state = \"state\"\noutput = \"out\"\nworkers = {}\ncompact = false\n[[source]]\nname = \"bench\"\nformat = \"text\"\npath = \"raw/*.jsonl\"\n[clean]\nrecipe = \"{}\"\n",
        options.workers,
        recipe.display()
    );
    std::fs::write(job.join("pipeline.toml"), toml).context("writing a job")?;
    Ok(job)
}

/// Commit an epoch whose index segment holds `size` synthetic documents; the index's bytes.
fn build_index(job: &Path, size: u64) -> Result<u64> {
    if size == 0 {
        return Ok(0);
    }
    let config = PipelineConfig::load(&job.join("pipeline.toml"))?;
    let stages = Stages::build(&config).map_err(anyhow::Error::msg)?;
    let Some(near) = stages.near() else {
        bail!("the recipe has no near-duplicate deduplicator");
    };
    let settings = stages.settings_id(&config).map_err(anyhow::Error::msg)?;
    let identity = PipelineIdentity {
        state: config.manifest_name(&config.state),
        output: config.manifest_name(&config.output),
    };
    let (state, mut manifest): (StateDir, Manifest) =
        StateDir::open(&config.state, &settings, &identity, &["bench".into()])?;
    let dir = state.epoch_dir(1).with_extension("tmp");
    std::fs::create_dir_all(&dir).context("creating the segment")?;
    let key_words = stages.sketch_start() + stages.sketch_words();
    let mut writer = SegmentWriter::create(&dir, 0, stages.sketch_words())?;
    let mut rng = Rng(0x1dec_5ca1_e000_0001);
    let mut key = vec![0u64; key_words];
    for row in 0..size {
        let exact = [rng.next_u64(), rng.next_u64()];
        key.iter_mut().for_each(|w| *w = rng.next_u64());
        let buckets = near.buckets(&key);
        writer.push(
            doc_id(1, row as u32),
            &exact,
            &key[stages.sketch_start()..],
            &buckets,
            Status::Kept,
        )?;
    }
    let (docs, bytes) = writer.finish()?;
    let dups_hash = HashedLines::create(&dir.join("dups.jsonl"))?.finish()?;
    std::fs::rename(&dir, state.epoch_dir(1)).context("committing the segment")?;
    manifest.files.push(FileEntry {
        shard: 1,
        source: "bench".into(),
        path: format!("synthetic/{size}.jsonl"),
        size: 0,
        hash: "0".into(),
        modified: None,
        epoch: 1,
        docs: size,
        rejected: 0,
        retracted_in: None,
        first_ordinal: 0,
        passed: docs,
    });
    manifest.segments.push(SegmentEntry {
        dir: "epochs/000001".into(),
        first_epoch: 1,
        last_epoch: 1,
        base: 0,
        docs,
        bytes,
    });
    manifest.epochs.push(EpochSummary {
        epoch: 1,
        kind: "synthetic".into(),
        dups_hash,
        index_docs: size,
        ..EpochSummary::default()
    });
    state.commit(&manifest)?;
    Ok(bytes)
}

/// Append the shard with `steel run` in its own process: wall seconds and its epoch summary.
fn append(options: &IndexScaleOptions, job: &Path) -> Result<(f64, EpochSummary)> {
    let (seconds, _, manifest) = steel_run(&options.exe, job)?;
    let summary = manifest.epochs.last().cloned().context("no epoch")?;
    Ok((seconds, summary))
}
