//! `steel`: the one command line of the Steel pipeline. It parses arguments, calls the
//! library crates and prints their summaries; all logic lives in the crates.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use steel_dataflow::bench::{ConvertBenchOptions, bench_convert};
use steel_dataflow::convert::{ConvertOptions, convert};
use steel_dataflow::demo_data::{DemoDataOptions, generate};
use steel_dataflow::output::OutputFormat;
use steel_dataflow::sources::FormatChoice;

#[derive(Parser)]
#[command(
    name = "steel",
    version,
    about = "Raw text to a trained checkpoint: Steel-LLM's pipeline as one fast, incremental tool"
)]
struct Cli {
    /// Worker threads for parallel stages (default: every core).
    #[arg(long, short = 't', global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Step 1: convert source files of any Steel format to unified {"text", "meta"} shards.
    Convert(ConvertArgs),
    /// Generate a synthetic corpus with planted duplicates and junk, plus its ground truth.
    DemoData(DemoDataArgs),
    /// Run every stage that exists end to end on generated data and say what it did.
    Demo(DemoArgs),
    /// Throughput benchmarks; each prints JSON lines.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args)]
struct ConvertArgs {
    /// Source format: auto (decide per file from its fields), text, wanjuan, wiki, baike,
    /// baidu-qa, belle, belle-multiturn, moss, firefly, zhihu, starcoder.
    #[arg(long, short = 'f', value_parser = clap::value_parser!(FormatChoice))]
    format: FormatChoice,
    /// Directory for the shards, rejects.jsonl and summary.json; must be empty or absent.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// The field the `text` format reads.
    #[arg(long, default_value = "text")]
    field: String,
    /// Shard file format: jsonl or parquet.
    #[arg(long, default_value = "jsonl", value_parser = clap::value_parser!(OutputFormat))]
    output_format: OutputFormat,
    /// Close a shard before it grows past this many MB.
    #[arg(long, default_value_t = 256)]
    shard_mb: u64,
    /// Fail the run once more than N records are rejected.
    #[arg(long)]
    max_rejects: Option<u64>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Input files, directories (read recursively) or globs: .jsonl, .ndjson, .json (array
    /// or lines), each optionally .gz or .zst compressed, and .parquet.
    #[arg(required = true)]
    inputs: Vec<String>,
}

#[derive(Args)]
struct DemoDataArgs {
    /// Number of documents.
    #[arg(long, default_value_t = 2000)]
    docs: usize,
    /// Random seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of JSONL files to split the corpus into.
    #[arg(long, default_value_t = 4)]
    files: usize,
    /// Output directory (corpus/ and truth.jsonl are written in it).
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Working directory (default: a new directory under the system temp dir). Must be
    /// empty or absent.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Number of generated documents.
    #[arg(long, default_value_t = 2000)]
    docs: usize,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Conversion throughput over replicated real samples, next to a parse-and-write floor.
    Convert(BenchConvertArgs),
}

#[derive(Args)]
struct BenchConvertArgs {
    /// Directory of sample files.
    #[arg(long, default_value = "../shared/data/steel-samples")]
    samples: PathBuf,
    /// Scratch directory for replicated inputs and outputs.
    #[arg(long, default_value = "target/bench-convert")]
    work: PathBuf,
    /// Copies of each sample file in the input.
    #[arg(long, default_value_t = 10)]
    copies: usize,
    /// Thread counts to measure, comma separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads_list: Vec<usize>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(threads) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("setting up the thread pool")?;
    }
    match cli.command {
        Command::Convert(args) => run_convert(args),
        Command::DemoData(args) => run_demo_data(args),
        Command::Demo(args) => run_demo(args),
        Command::Bench(BenchCommand::Convert(args)) => run_bench_convert(args),
    }
}

fn run_convert(args: ConvertArgs) -> Result<()> {
    let mut options = ConvertOptions::new(args.format, &args.output);
    options.text_field = args.field;
    options.output_format = args.output_format;
    options.shard_bytes = args.shard_mb.max(1) << 20;
    options.max_rejects = args.max_rejects;
    options.progress = true;
    let summary = convert(&args.inputs, &options).context("steel convert failed")?;
    eprintln!("{summary}");
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

fn run_demo_data(args: DemoDataArgs) -> Result<()> {
    let options = DemoDataOptions {
        docs: args.docs,
        seed: args.seed,
        files: args.files,
        output: args.output,
    };
    let summary = generate(&options)
        .with_context(|| format!("writing the demo corpus to {}", options.output.display()))?;
    eprintln!(
        "{} docs in {} files ({} originals, {} exact duplicates, {} near-duplicates, {} junk); truth: {}",
        summary.docs,
        summary.files.len(),
        summary.originals,
        summary.exact_dups,
        summary.near_dups,
        summary.junk,
        summary.truth
    );
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

fn run_demo(args: DemoArgs) -> Result<()> {
    let dir = args
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("steel-demo-{}", std::process::id())));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!(
            "demo directory {} is not empty; give an empty or new one",
            dir.display()
        );
    }
    eprintln!("steel demo in {}", dir.display());

    eprintln!("\n== 1. generate a synthetic corpus (steel demo-data)");
    let data_dir = dir.join("data");
    let options = DemoDataOptions {
        docs: args.docs,
        seed: 42,
        files: 4,
        output: data_dir.clone(),
    };
    let generated = generate(&options).context("generating the demo corpus")?;
    eprintln!(
        "{} docs: {} originals, {} exact duplicates, {} near-duplicates, {} junk (truth: {})",
        generated.docs,
        generated.originals,
        generated.exact_dups,
        generated.near_dups,
        generated.junk,
        generated.truth
    );

    eprintln!("\n== 2. convert to unified documents (steel convert --format auto)");
    let converted_dir = dir.join("converted");
    let inputs = vec![data_dir.join("corpus").display().to_string()];
    let summary = convert(
        &inputs,
        &ConvertOptions::new(FormatChoice::Auto, &converted_dir),
    )
    .context("converting the demo corpus")?;
    eprintln!("{summary}");

    eprintln!("\n== done. Later stages (clean, dedup, pack, train) join this demo as they land.");
    eprintln!("everything is in {}", dir.display());
    Ok(())
}

fn run_bench_convert(args: BenchConvertArgs) -> Result<()> {
    let options = ConvertBenchOptions {
        samples: args.samples,
        work: args.work,
        copies: args.copies,
        threads: args.threads_list,
    };
    for line in bench_convert(&options).context("steel bench convert failed")? {
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}
