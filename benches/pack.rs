//! `steel bench pack`: tokenisation and packing throughput at each thread count, an appended
//! 1% packed into the same directory next to the full pack, then the training loader serving
//! every block of the packed chunks once.

use crate::line::BenchLine;
use crate::pool;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use steel_dataflow::convert::{ConvertOptions, convert};
use steel_dataflow::pack::{PackOptions, pack};
use steel_dataflow::sources::FormatChoice;
use steel_trainer::data::{DataSource, Loader};

#[derive(Clone, Debug)]
pub struct PackBenchOptions {
    pub samples: PathBuf,
    pub tokenizer: PathBuf,
    pub work: PathBuf,
    /// The converted samples are copied this many times to make the input.
    pub copies: usize,
    pub threads: Vec<usize>,
}

/// Convert the samples, copy the unified shard `copies` times, then tokenise and pack it all
/// with the given tokenizer at each thread count (`work/chunks-N`).
pub fn bench_pack(options: &PackBenchOptions) -> Result<Vec<BenchLine>> {
    let converted = options.work.join("converted");
    if options.work.exists() {
        std::fs::remove_dir_all(&options.work)
            .with_context(|| format!("clearing {}", options.work.display()))?;
    }
    let samples = vec![options.samples.display().to_string()];
    convert(
        &samples,
        &ConvertOptions::new(FormatChoice::Auto, &converted),
    )?;
    let input = options.work.join("input");
    std::fs::create_dir_all(&input).with_context(|| format!("creating {}", input.display()))?;
    for copy in 0..options.copies {
        let target = input.join(format!("copy-{copy:03}.jsonl"));
        std::fs::copy(converted.join("part-00000.jsonl"), &target)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    let inputs = vec![input.display().to_string()];
    let mut lines = Vec::new();
    for &threads in &options.threads {
        let mut pack_options = PackOptions::new(
            &options.tokenizer,
            options.work.join(format!("chunks-{threads}")),
        );
        pack_options.chunk_blocks = 64;
        let start = Instant::now();
        let outcome = pool(threads)?.install(|| pack(&inputs, &pack_options))?;
        let seconds = start.elapsed().as_secs_f64();
        let summary = outcome.epochs.first().context("nothing was packed")?;
        lines.push(
            BenchLine::new("pack", "steel", seconds)
                .with("threads", threads)
                .with("docs", summary.docs_packed)
                .with("text_bytes", summary.text_bytes)
                .with("tokens", summary.tokens)
                .with("tokens_per_s", summary.tokens as f64 / seconds)
                .with("mb_per_s", summary.text_bytes as f64 / 1e6 / seconds),
        );
        if threads == *options.threads.last().expect("at least one thread count") {
            lines.extend(bench_append(
                &input,
                &inputs,
                &pack_options,
                threads,
                seconds,
            )?);
        }
    }
    Ok(lines)
}

/// Add a file of 1% of the input's documents to `input` and pack `inputs` again into the
/// same directory: only the new file is packed. Its time next to the full pack's, and the
/// time of packing once more with nothing new (the fixed cost: loading the tokenizer,
/// reading the manifest, looking at every input).
fn bench_append(
    input: &Path,
    inputs: &[String],
    options: &PackOptions,
    threads: usize,
    full_seconds: f64,
) -> Result<Vec<BenchLine>> {
    let first = input.join("copy-000.jsonl");
    let text =
        std::fs::read_to_string(&first).with_context(|| format!("reading {}", first.display()))?;
    let copies = std::fs::read_dir(input)?.count();
    let lines: Vec<&str> = text.lines().collect();
    let take = (lines.len() * copies).div_ceil(100);
    let appended: String = lines
        .iter()
        .cycle()
        .take(take)
        .map(|l| format!("{l}\n"))
        .collect();
    let target = input.join("append-1pct.jsonl");
    std::fs::write(&target, appended).with_context(|| format!("writing {}", target.display()))?;
    let timed = || -> Result<(f64, steel_dataflow::pack::PackOutcome)> {
        let start = Instant::now();
        let outcome = pool(threads)?.install(|| pack(inputs, options))?;
        Ok((start.elapsed().as_secs_f64(), outcome))
    };
    let (seconds, outcome) = timed()?;
    let summary = outcome
        .epochs
        .first()
        .context("the append was not packed")?;
    let (idle_seconds, idle) = timed()?;
    anyhow::ensure!(idle.nothing_new, "a second pack found something new");
    Ok(vec![
        BenchLine::new("pack", "steel-append-1pct", seconds)
            .with("threads", threads)
            .with("docs", summary.docs_packed)
            .with("files_packed", summary.files)
            .with("inputs_known", outcome.known_inputs)
            .with("vs_full_pack", seconds / full_seconds)
            .with(
                "vs_full_pack_less_fixed_cost",
                (seconds - idle_seconds) / full_seconds,
            ),
        BenchLine::new("pack", "steel-nothing-new", idle_seconds)
            .with("threads", threads)
            .with("inputs_known", idle.known_inputs)
            .with("vs_full_pack", idle_seconds / full_seconds),
    ])
}

/// Serve one epoch of the chunk directory `dir` (opening and hash-checking every chunk on
/// the way).
pub fn bench_loader(dir: &Path, block_size: u64) -> Result<BenchLine> {
    let sources = [DataSource {
        dir: dir.to_path_buf(),
        weight: 1.0,
    }];
    let start = Instant::now();
    let mut loader = Loader::open(&sources, block_size, 0, 0, 1)?;
    let blocks = loader.blocks_in_epoch() as u64;
    let mut checksum = 0u64;
    for _ in 0..blocks {
        checksum = checksum.wrapping_add(loader.next_block()?[0] as u64);
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(checksum);
    Ok(BenchLine::new("loader", "steel", seconds)
        .with("blocks", blocks)
        .with("block_size", block_size)
        .with("blocks_per_s", blocks as f64 / seconds)
        .with("tokens_per_s", (blocks * (block_size + 1)) as f64 / seconds))
}
