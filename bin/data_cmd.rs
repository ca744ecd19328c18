//! The data commands: `convert`, `demo-data`, `clean`, `lm train`, `pack`, `tokenizer train`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use steel_dataflow::clean::filters::Resources;
use steel_dataflow::clean::lm::Unit;
use steel_dataflow::clean::lm::train::train_documents;
use steel_dataflow::clean::recipe::Recipe;
use steel_dataflow::clean::run::{CleanOptions, clean};
use steel_dataflow::convert::{ConvertOptions, convert};
use steel_dataflow::demo_data::{DemoDataOptions, DemoDataSummary, generate};
use steel_dataflow::output::OutputFormat;
use steel_dataflow::pack::tokenizer::{read_texts, train};
use steel_dataflow::pack::{PackOptions, PackOutcome, PackSummary, pack};
use steel_dataflow::sources::FormatChoice;

#[derive(Args)]
pub struct ConvertArgs {
    /// Source format: auto (decide per file from its fields), text, wanjuan, wiki, baike,
    /// baidu-qa, belle, belle-multiturn, moss, firefly, zhihu, starcoder.
    #[arg(long, short = 'f', value_parser = clap::value_parser!(FormatChoice))]
    format: FormatChoice,
    /// Directory for the shards, _rejects.jsonl and _summary.json; must be empty or absent.
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
pub struct DemoDataArgs {
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
pub struct CleanArgs {
    /// A data-juicer recipe (YAML with a `process:` list), e.g. recipes/steel_text.yaml
    /// (Steel-LLM's own, shipped with Steel).
    #[arg(long)]
    recipe: PathBuf,
    /// Directory for the cleaned shards, report.json, report.txt and _rejects.jsonl; must be
    /// empty or absent.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Print the summary as one JSON object on stdout (the table goes to report.txt).
    #[arg(long)]
    json: bool,
    /// Keep up to N examples per operator in the report (removed documents, or before/after
    /// for mappers).
    #[arg(long, default_value_t = 3)]
    trace: usize,
    /// ARPA model for perplexity_filter entries without `model_path` (build one with
    /// `steel lm train`).
    #[arg(long)]
    lm_model: Option<PathBuf>,
    /// tokenizer.json for alphanumeric_filter with `tokenization: true`.
    #[arg(long)]
    hf_tokenizer: Option<PathBuf>,
    /// Close a shard before it grows past this many MB.
    #[arg(long, default_value_t = 256)]
    shard_mb: u64,
    /// Unified documents (the output of `steel convert`): .jsonl/.json (optionally .gz or
    /// .zst) or .parquet files, directories or globs.
    #[arg(required = true)]
    inputs: Vec<String>,
}

#[derive(Subcommand)]
pub enum LmCommand {
    /// Train a character (or word) n-gram model with modified Kneser-Ney smoothing and write
    /// it as ARPA.
    Train(LmTrainArgs),
}

#[derive(Args)]
pub struct LmTrainArgs {
    /// Model order (n of the n-grams), 1 to 6.
    #[arg(long, default_value_t = 3)]
    order: usize,
    /// The ARPA file to write.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// What the model's tokens are: char (every non-space character) or word.
    #[arg(long, default_value = "char")]
    unit: String,
    /// Reference corpus: unified documents (their `text` field), one sentence per document.
    #[arg(required = true)]
    inputs: Vec<String>,
}

#[derive(Args)]
pub struct PackArgs {
    /// A tokenizer.json (e.g. Qwen1.5's), or one `steel tokenizer train` made.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Chunk directory. Packing into one that has a manifest packs only inputs not packed
    /// before, as new epochs of chunks.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Tokens per training block (B); a chunk holds (B + 1) * K tokens.
    #[arg(long, default_value_t = 2048)]
    block_size: u64,
    /// Blocks per chunk (K).
    #[arg(long, default_value_t = 1024)]
    chunk_blocks: u64,
    /// Token appended to every document.
    #[arg(long, default_value = "<|im_end|>")]
    eos: String,
    /// Token that fills the tail of the last chunk.
    #[arg(long, default_value = "<|endoftext|>")]
    pad: String,
    /// Epoch of the first new chunks (default: one past the directory's last).
    #[arg(long)]
    epoch: Option<u64>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Unified document files, directories or globs (the output of `steel convert`), or a
    /// `steel run` output directory (its new epochs are packed in order, tombstones applied).
    #[arg(required = true)]
    inputs: Vec<String>,
}

#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE with the Qwen special tokens, for small experiments.
    Train(TokenizerTrainArgs),
}

#[derive(Args)]
pub struct TokenizerTrainArgs {
    /// Vocabulary size, special tokens included.
    #[arg(long)]
    vocab_size: usize,
    /// Where to write tokenizer.json.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Unified document files, directories or globs (their `text` field is read).
    #[arg(required = true)]
    inputs: Vec<String>,
}

pub fn run_convert(args: ConvertArgs) -> Result<()> {
    let mut options = ConvertOptions::new(args.format, &args.output);
    options.text_field = args.field;
    options.output_format = args.output_format;
    options.shard_bytes = args.shard_mb.max(1) << 20;
    options.max_rejects = args.max_rejects;
    options.progress = true;
    let summary = convert(&args.inputs, &options).context("steel convert failed")?;
    eprintln!("{summary}");
    for empty in &summary.empty_files {
        eprintln!("skipped (empty: nothing to convert): {empty}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

pub fn run_demo_data(args: DemoDataArgs) -> Result<()> {
    let options = DemoDataOptions {
        docs: args.docs,
        seed: args.seed,
        files: args.files,
        output: args.output,
    };
    let summary = generate(&options)
        .with_context(|| format!("writing the demo corpus to {}", options.output.display()))?;
    print_demo_data_summary(&summary);
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

pub fn print_demo_data_summary(summary: &DemoDataSummary) {
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
}

/// `threads`: the global `--threads`, which wins over the recipe's `np`.
pub fn run_clean(args: CleanArgs, threads: Option<usize>) -> Result<()> {
    let recipe = Recipe::load(&args.recipe)?;
    let mut options = CleanOptions::new(&args.recipe, &args.output);
    options.trace = args.trace;
    options.shard_bytes = args.shard_mb << 20;
    options.progress = !args.json;
    options.resources = Resources {
        lm_model: args.lm_model,
        hf_tokenizer: args.hf_tokenizer,
    };
    let run = || clean(&args.inputs, &recipe, &options);
    let report = match (threads, recipe.np) {
        (None, Some(np)) => rayon::ThreadPoolBuilder::new()
            .num_threads(np)
            .build()
            .context("setting up the thread pool")?
            .install(run),
        _ => run(),
    }
    .context("steel clean failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&report.brief())?);
    } else {
        eprintln!("{report}");
    }
    Ok(())
}

pub fn run_lm_train(args: LmTrainArgs) -> Result<()> {
    let unit = Unit::parse(&args.unit)?;
    let (arpa, documents) = train_documents(&args.inputs, args.order, unit)?;
    std::fs::write(&args.output, arpa)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "wrote {} ({}-gram {} model from {} documents)",
        args.output.display(),
        args.order,
        args.unit,
        documents
    );
    Ok(())
}

pub fn run_pack(args: PackArgs) -> Result<()> {
    let mut options = PackOptions::new(&args.tokenizer, &args.output);
    options.block_size = args.block_size;
    options.chunk_blocks = args.chunk_blocks;
    options.eos = args.eos;
    options.pad = args.pad;
    options.epoch = args.epoch;
    options.progress = true;
    let outcome = pack(&args.inputs, &options).context("steel pack failed")?;
    print_pack_outcome(&outcome);
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    }
    Ok(())
}

pub fn print_pack_outcome(outcome: &PackOutcome) {
    for summary in &outcome.epochs {
        print_pack_summary(summary);
    }
    for changed in &outcome.changed {
        eprintln!("not packed: {}: {}", changed.path, changed.reason);
    }
    if outcome.nothing_new {
        eprintln!(
            "nothing new: {} inputs were packed before",
            outcome.known_inputs
        );
    }
    eprintln!("manifest: {}", outcome.manifest);
}

fn print_pack_summary(summary: &PackSummary) {
    eprintln!(
        "epoch {} ({}): {} files, {} docs in, {} packed, {} rejected; {} tokens + {} padding in {} chunks, {:.2}s ({:.0} tokens/s); rejects: {}",
        summary.epoch,
        summary.unit,
        summary.files,
        summary.docs_in,
        summary.docs_packed,
        summary.rejected,
        summary.tokens,
        summary.padding,
        summary.chunks.len(),
        summary.seconds,
        summary.tokens as f64 / summary.seconds.max(1e-9),
        summary.rejects_file
    );
    let retraction = &summary.retraction;
    if summary.tombstones > 0 {
        eprintln!(
            "  {} tombstones: {} documents taken out with {} chunks, {} tokens of their other documents packed again; {} not in these chunks",
            summary.tombstones,
            retraction.docs_removed,
            retraction.chunks.len(),
            retraction.tokens_repacked,
            summary.tombstones_unmatched
        );
    }
}

pub fn run_tokenizer_train(args: TokenizerTrainArgs) -> Result<()> {
    let texts = read_texts(&args.inputs).context("reading training texts")?;
    let count = texts.len();
    train(texts, args.vocab_size, &args.output).context("training the tokenizer")?;
    eprintln!(
        "trained a {}-token byte-level BPE on {count} texts: {}",
        args.vocab_size,
        args.output.display()
    );
    Ok(())
}
